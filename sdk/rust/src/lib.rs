//! The Rust SDK for Weir routing modules.
//!
//! A Weir module is a WebAssembly component (`wasm32-wasip2`) that the proxy calls for
//! each SIP request (and, optionally, each reply) passing through a route's chain. This
//! crate owns everything between the WIT contract (`weir:sip@0.1.0`, world `module`) and
//! the module author: typed config, a typed [`Message`], [`Verdict`]s, the host
//! capabilities ([`log`], [`kv`], [`clock`], [`system`], [`subscribers`],
//! [`connections`]), the proxy's services with their asynchronous [`Event`]s
//! ([`timers`], [`requests`], [`transactions`], [`location`], [`http`], [`files`]) and a
//! native test harness ([`testing`]).
//! Plugin code never sees raw bindings, `unsafe` or the canonical ABI.
//!
//! What it must never do: edit behind the module's back, panic on host input, or depend
//! on host crates (it builds for `wasm32-wasip2`, and natively for tests).
//!
//! # Writing a module
//!
//! ```
//! use weir_sdk::{export_module, log, Error, Message, Module, Status, Verdict};
//!
//! #[derive(serde::Deserialize)]
//! #[serde(deny_unknown_fields)]
//! struct Config {
//!     /// Requests whose R-URI host is this domain are refused.
//!     blocked_domain: String,
//! }
//!
//! struct Block {
//!     suffix: String,
//! }
//!
//! impl Module for Block {
//!     type Config = Config;
//!
//!     fn init(config: Config) -> Result<Self, Error> {
//!         Ok(Self { suffix: format!("@{}", config.blocked_domain) })
//!     }
//!
//!     fn on_request(&self, msg: &mut Message) -> Result<Verdict, Error> {
//!         if msg.request_uri().ends_with(&self.suffix) {
//!             log::info!("refusing {} to {}", msg.method(), msg.request_uri());
//!             return Ok(Verdict::reply(Status::FORBIDDEN));
//!         }
//!         msg.add_header("X-Checked", "block")?;
//!         Ok(Verdict::Continue)
//!     }
//! }
//!
//! export_module!(Block);
//!
//! // The same module, unit-tested natively with `cargo test`:
//! use weir_sdk::testing;
//!
//! let block: Block = testing::init(testing::json!({ "blocked_domain": "spam.example" }))?;
//! let mut msg = testing::request(
//!     "INVITE sip:bob@spam.example SIP/2.0\r\n\
//!      Via: SIP/2.0/UDP 192.0.2.1;branch=z9hG4bK1\r\n\
//!      Call-ID: a@b\r\nCSeq: 1 INVITE\r\n\r\n",
//! );
//! assert_eq!(block.on_request(&mut msg)?, Verdict::reply(403));
//! assert!(testing::logs()[0].message.contains("refusing INVITE"));
//! # Ok::<(), weir_sdk::Error>(())
//! ```
//!
//! `docs/plugin-guide.md` in the repository walks through layout, building and testing.
//!
//! # Targets
//!
//! On `wasm32` the [`Message`] and the capabilities call the host through the WIT
//! imports, and [`export_module!`] generates the component exports. On every other
//! target the same types are backed by the in-memory harness in [`testing`], and
//! [`export_module!`] only checks that the type implements [`Module`].

#![deny(missing_docs)]

// Lets the generated bindings (and the macros) name this crate `weir_sdk` from inside too.
extern crate self as weir_sdk;

pub mod clock;
pub mod connections;
mod convert;
mod error;
pub mod files;
pub mod http;
pub mod kv;
pub mod location;
pub mod log;
mod message;
pub mod names;
mod params;
pub mod requests;
pub mod small_alloc;
pub mod subscribers;
pub mod system;
#[cfg(not(target_arch = "wasm32"))]
pub mod testing;
pub mod timers;
pub mod transactions;
mod types;
mod verdict;

/// Small blocks freed by the module are kept for reuse instead of going back to
/// wasi-libc's dlmalloc each time ([`small_alloc`]). A module that wants its own global
/// allocator builds the SDK with `default-features = false`.
#[cfg(all(
    target_arch = "wasm32",
    not(target_feature = "atomics"),
    feature = "small-alloc"
))]
#[global_allocator]
static ALLOCATOR: small_alloc::SmallCache<std::alloc::System> =
    small_alloc::SmallCache::new(std::alloc::System);

pub use error::{Context, EditError, Error, HostError, KvError};
pub use message::{HeaderSet, HeaderSetValues, Message};
pub use params::{ApplyTo, NoConfig};
pub use types::{
    Address, BindingChange, BindingEvent, BranchTarget, Event, Header, Hook, HttpOutcome,
    SipResponse, Transport,
};
pub use verdict::{Reply, Status, Verdict, Wait};

/// A Weir routing module: one instance per component instance, driven by the host.
///
/// Instances are single-threaded: the host never calls one instance concurrently, so
/// `&self` plus `Cell`/`RefCell` is enough for per-instance state. Anything that must be
/// shared between instances (which the host may create and drop at will) belongs in
/// [`kv`].
pub trait Module: Sized + 'static {
    /// The module's params, decoded from the route config's `params` table.
    ///
    /// Nested tables arrive as dotted keys (`limits.burst`) and are nested again before
    /// decoding, so a nested struct field works as expected. Use
    /// `#[serde(deny_unknown_fields)]` to refuse misspelt keys, and [`NoConfig`] when the
    /// module takes no params.
    type Config: serde::de::DeserializeOwned;

    /// Build the instance from its config. Called once, before any message; an error
    /// refuses the config (`weir check` reports it).
    fn init(config: Self::Config) -> Result<Self, Error>;

    /// Look at (and possibly edit) a request. An error applies the chain entry's
    /// `on_error` policy (by default the request is answered with 500).
    fn on_request(&self, msg: &mut Message) -> Result<Verdict, Error>;

    /// Look at (and possibly edit) a reply passing through a reply chain.
    /// [`Verdict::Continue`] passes it on, [`Verdict::Drop`] discards it; the host
    /// treats other verdicts as `Continue`. The default passes every reply on unchanged.
    fn on_reply(&self, msg: &mut Message) -> Result<Verdict, Error> {
        let _ = msg;
        Ok(Verdict::Continue)
    }

    /// A registrar binding was added, refreshed, removed or expired. Called only for
    /// modules listed in the config's `[events] binding`; the default ignores it. An
    /// error is logged by the host and changes nothing else.
    fn on_binding(&self, event: &BindingEvent) -> Result<(), Error> {
        let _ = event;
        Ok(())
    }

    /// An asynchronous event of the module: one of its [`timers`] fired, a SIP request
    /// ([`requests::send`]) or HTTP request ([`http::send`]) it sent has its outcome, or
    /// a transaction it [watches](transactions::watch) ended. Events arrive on any
    /// instance of the module (one at a time per timer), so keep what they update in
    /// [`kv`] when other instances need it. The default ignores them. An error is
    /// logged by the host and changes nothing else.
    fn on_event(&self, event: &Event) -> Result<(), Error> {
        let _ = event;
        Ok(())
    }
}

/// Export a [`Module`] implementation as the component's `weir:sip/handler`.
///
/// Invoke it once per crate, at item level, with the module type:
///
/// ```
/// # use weir_sdk::{Error, Message, Module, NoConfig, Verdict};
/// struct Noop;
/// impl Module for Noop {
///     type Config = NoConfig;
///     fn init(_: NoConfig) -> Result<Self, Error> { Ok(Noop) }
///     fn on_request(&self, _: &mut Message) -> Result<Verdict, Error> { Ok(Verdict::Continue) }
/// }
/// weir_sdk::export_module!(Noop);
/// ```
///
/// On `wasm32` this generates the `init`, `on-request`, `on-reply`, `on-binding` and
/// `on-event` exports: `init` decodes the params into `Module::Config`, calls
/// [`Module::init`] and keeps the instance for the component instance's lifetime; the
/// other exports call it and turn errors into the WIT error string. On other targets it expands to a compile-time check only, so the
/// crate still builds (and tests) natively.
#[macro_export]
macro_rules! export_module {
    ($module:ty) => {
        #[cfg(target_arch = "wasm32")]
        // The generated ABI shims are `unsafe extern "C"` functions: that is the point of
        // this macro, so the plugin crate's `unsafe_code` lint must not see them.
        #[allow(unsafe_code)]
        const _: () = {
            struct __WeirExport;

            impl $crate::__private::Guest for __WeirExport {
                fn init(
                    params: ::std::vec::Vec<$crate::__private::WitParam>,
                ) -> ::std::result::Result<(), ::std::string::String> {
                    $crate::__private::init::<$module>(params)
                }

                fn on_request(
                    msg: &$crate::__private::WitMessage,
                ) -> ::std::result::Result<$crate::__private::WitVerdict, ::std::string::String>
                {
                    $crate::__private::on_request(msg)
                }

                fn on_reply(
                    msg: &$crate::__private::WitMessage,
                ) -> ::std::result::Result<$crate::__private::WitVerdict, ::std::string::String>
                {
                    $crate::__private::on_reply(msg)
                }

                fn on_binding(
                    event: $crate::__private::WitBindingEvent,
                ) -> ::std::result::Result<(), ::std::string::String> {
                    $crate::__private::on_binding(event)
                }

                fn on_event(
                    event: $crate::__private::WitEvent,
                ) -> ::std::result::Result<(), ::std::string::String> {
                    $crate::__private::on_event(event)
                }
            }

            $crate::__private::bindings::__export!(
                __WeirExport with_types_in $crate::__private::bindings
            );
        };

        #[cfg(not(target_arch = "wasm32"))]
        const _: fn() = $crate::__private::assert_module::<$module>;
    };
}

/// Support for the macros; not part of the API.
#[doc(hidden)]
pub mod __private {
    pub use wit_bindgen;

    /// Bindings generated from `wit/` (world `module`). Generated on every target: the
    /// import stubs compile natively, which keeps the WIT<->SDK conversions testable.
    #[allow(missing_docs, unsafe_code)]
    pub mod bindings {
        wit_bindgen::generate!({
            world: "module",
            path: "../../wit",
            pub_export_macro: true,
            export_macro_name: "__export",
            default_bindings_module: "weir_sdk::__private::bindings",
            runtime_path: "weir_sdk::__private::wit_bindgen::rt",
        });
    }

    pub use bindings::exports::weir::sip::handler::Guest;
    pub use bindings::weir::sip::message::Message as WitMessage;
    pub use bindings::weir::sip::types::{
        BindingEvent as WitBindingEvent, Event as WitEvent, Param as WitParam,
        Verdict as WitVerdict,
    };

    #[cfg(target_arch = "wasm32")]
    pub use crate::convert::glue::{init, on_binding, on_event, on_reply, on_request};

    /// Compile-time check used by `export_module!` off wasm.
    pub fn assert_module<M: crate::Module>() {}
}
