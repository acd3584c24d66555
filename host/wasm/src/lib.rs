//! # weir-wasm: the WebAssembly module runtime of Weir
//!
//! Routing modules are WebAssembly components targeting the `weir:sip/module` world
//! (`wit/`). This crate owns everything between a parsed SIP message and a module:
//!
//! - the wasmtime [`Engine`](wasmtime::Engine) (Cranelift, epoch interruption, no
//!   concurrency support) and the watchdog thread that moves its epoch when a call
//!   is past its deadline ([`Runtime`]);
//! - compiling a component once, with an on-disk cache of compiled code keyed by the
//!   component's content and the engine's compatibility hash;
//! - a pool of pre-initialised instances per module ([`LoadedModule`]), so a message
//!   never pays for compilation or instantiation;
//! - the host side of the WIT imports: the `message` resource over the
//!   [`weir_message::Message`] being processed, `log`, `clock`, `kv` namespaced per
//!   tenant and module ([`KvStore`], [`MemoryKv`]), and `system` (CPU load and the bytes
//!   queued on the process's UDP sockets, sampled from `/proc` by one background thread
//!   started on first use), `subscribers` (digest credentials from the subscriber store
//!   set with [`Runtime::set_subscribers`]) and `connections` (identities bound to stream
//!   connections, [`ConnectionIdentities`]);
//! - a minimal, non-blocking WASI shim for what Rust std guests import (random, clocks,
//!   an empty environment, stdout/stderr into `tracing`);
//! - the [`ModuleRegistry`] that lets a module be swapped atomically.
//!
//! What it must never do: let a guest take the host down (traps, timeouts and runaway
//! memory become a [`ModuleFailure`] and a fresh instance), block on or enter a tokio
//! runtime on the call path, give a guest the host's filesystem, sockets, environment or
//! stdio, let one module read another namespace's keys, or copy a guest-controlled
//! length before checking it. It does no IO except reading components, its cache and
//! (for `system`) `/proc`.
//!
//! ```
//! use std::sync::Arc;
//! use weir_wasm::{KvLimits, KvStore, MemoryKv, ModuleRegistry};
//!
//! // The store a Runtime is built with; modules see it through `weir:sip/kv`,
//! // each under its own "<tenant>/<module>" namespace.
//! let kv = MemoryKv::new(KvLimits::default());
//! assert_eq!(kv.incr("acme/rate-limit", "hits", 1, None).unwrap(), 1);
//! assert_eq!(kv.get("other/rate-limit", "hits").unwrap(), None);
//!
//! let registry = ModuleRegistry::new();
//! assert!(registry.get("acme/rate-limit").is_none());
//! # let _ = Arc::new(registry);
//! ```
//!
//! Loading and calling a module (needs a built component):
//!
//! ```no_run
//! # fn main() -> Result<(), Box<dyn std::error::Error>> {
//! use weir_wasm::*;
//! let runtime = Runtime::new(RuntimeConfig::default(), MemoryKv::new(KvLimits::default()))?;
//! let module = runtime.load(&ModuleSpec::new("auth", "acme", "auth.wasm"))?;
//! let mut msg = weir_message::Message::parse(b"OPTIONS sip:a@b SIP/2.0\r\n\r\n", &Default::default())?;
//! let ctx = CallContext::new("192.0.2.1:5060".parse()?, Transport::Udp, "udp0");
//! match module.on_request(&mut msg, &ctx) {
//!     Ok(Verdict::Continue) => { /* next module */ }
//!     Ok(other) => println!("{other:?}"),
//!     Err(failure) => println!("module failed: {failure}"),
//! }
//! # Ok(()) }
//! ```

#![deny(unsafe_code)]
#![deny(missing_docs)]

mod bindings;
mod cache;
mod call;
mod error;
mod host;
mod kv;
mod module;
mod registry;
mod runtime;
mod services;
mod spec;
mod watchdog;

pub use call::{
    BindingChange, BindingEvent, CallContext, Hook, ModuleFailure, ModuleStats, Transport, Vars,
    Verdict, MAX_VARS, MAX_VAR_NAME, MAX_VAR_VALUE,
};
pub use error::{Error, WasmError};
pub use host::auth::{ConnectionIdentities, DEFAULT_CONNECTION_IDENTITIES, MAX_IDENTITY};
pub use kv::{KvError, KvLimits, KvStore, MemoryKv};
pub use module::{CacheOutcome, LoadInfo, LoadedModule};
pub use registry::ModuleRegistry;
pub use runtime::Runtime;
pub use services::{
    BranchTarget, Event, HttpRequest, HttpResponse, LocationBinding, OutgoingRequest, Services,
    TxState,
};
pub use spec::{ModuleLimits, ModuleSpec, Param, ParamValue, RuntimeConfig};

/// Largest size, in bytes, a message may grow to through a module's edits.
pub const MAX_MESSAGE_BYTES: usize = 64 * 1024;

/// `m` locked if no one holds it (a poisoned lock is taken as it is: every per-thread
/// slot guarded this way is whole between statements), `None` if someone does.
fn try_lock<T>(m: &std::sync::Mutex<T>) -> Option<std::sync::MutexGuard<'_, T>> {
    match m.try_lock() {
        Ok(g) => Some(g),
        Err(std::sync::TryLockError::Poisoned(p)) => Some(p.into_inner()),
        Err(std::sync::TryLockError::WouldBlock) => None,
    }
}

#[cfg(test)]
mod tests {
    fn send_sync<T: Send + Sync>() {}

    #[test]
    fn shared_types_are_send_and_sync() {
        send_sync::<crate::Runtime>();
        send_sync::<crate::LoadedModule>();
        send_sync::<crate::ModuleRegistry>();
        send_sync::<crate::MemoryKv>();
    }
}
