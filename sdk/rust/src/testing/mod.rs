//! The native test harness: unit-test a module with plain `cargo test`, no host needed.
//!
//! Off wasm, [`Message`] is backed by an in-memory message built from SIP text, which
//! follows the host's rules (case-insensitive names, compact forms, protected headers,
//! a size limit), and [`log`](crate::log), [`kv`](crate::kv), [`clock`](crate::clock),
//! [`system`](crate::system), [`subscribers`](crate::subscribers),
//! [`connections`](crate::connections), [`timers`](crate::timers),
//! [`requests`](crate::requests), [`transactions`](crate::transactions),
//! [`location`](crate::location), [`http`](crate::http) and [`files`](crate::files) are
//! thread-local mocks that apply the host's checks. Nothing is ever sent and no event
//! arrives by itself: a test reads what the module asked for ([`sent_requests`],
//! [`timers`], [`added_branches`], ...) and calls
//! [`Module::on_event`] with the event it wants to check. Each
//! test runs on its own thread, so each starts clean; call [`reset`] to start over within
//! a test.
//!
//! ```
//! use weir_sdk::{testing, Message, Module, NoConfig, Error, Verdict};
//!
//! struct Tag;
//! impl Module for Tag {
//!     type Config = NoConfig;
//!     fn init(_: NoConfig) -> Result<Self, Error> { Ok(Tag) }
//!     fn on_request(&self, msg: &mut Message) -> Result<Verdict, Error> {
//!         msg.set_header("Subject", "tagged")?;
//!         Ok(Verdict::Continue)
//!     }
//! }
//!
//! let tag: Tag = testing::init(testing::json!({}))?;
//! let mut msg = testing::request(
//!     "MESSAGE sip:bob@example.com SIP/2.0\r\n\
//!      Via: SIP/2.0/UDP 192.0.2.1;branch=z9hG4bK1\r\n\
//!      s: old\r\n\
//!      Call-ID: 1@192.0.2.1\r\n\
//!      CSeq: 1 MESSAGE\r\n\
//!      \r\n",
//! );
//! assert_eq!(tag.on_request(&mut msg)?, Verdict::Continue);
//! assert_eq!(
//!     testing::serialize(&msg),
//!     "MESSAGE sip:bob@example.com SIP/2.0\r\n\
//!      Via: SIP/2.0/UDP 192.0.2.1;branch=z9hG4bK1\r\n\
//!      Subject: tagged\r\n\
//!      Call-ID: 1@192.0.2.1\r\n\
//!      CSeq: 1 MESSAGE\r\n\
//!      Content-Length: 0\r\n\
//!      \r\n",
//! );
//! # Ok::<(), Error>(())
//! ```
//!
//! Only available off wasm (`#[cfg(not(target_arch = "wasm32"))]`).

use std::time::Duration;

use serde_json::Value;

use crate::__private::bindings::weir::sip::types::{
    Address as WitAddress, Param, ParamValue, Transport as WitTransport,
};
use crate::log::Level;
use crate::transactions::State;
use crate::{Address, BranchTarget, Error, KvError, Message, Module, Transport};

pub(crate) mod mem;
pub(crate) mod mock;

pub use mem::ParseError;
/// Build the `params` for [`init`]: `testing::json!({ "keep": ["User-Agent"] })`.
pub use serde_json::json;
/// The type [`json!`] builds (so a plugin needs no `serde_json` dependency of its own).
pub use serde_json::Value as JsonValue;

// === messages ===

/// Parse a message from SIP text (CRLF or LF line ends, head ended by an empty line).
///
/// Defaults for what the text cannot say: source `192.0.2.1:5060`, transport UDP,
/// listener `"default"`, the host's size limit of 64 KiB (change them with [`set_source`],
/// [`set_transport`], [`set_listener`], [`set_max_size`]).
pub fn parse(text: &str) -> Result<Message<'static>, ParseError> {
    mem::MemMessage::parse(text).map(Message::from_mem)
}

/// Parse a request from SIP text.
///
/// # Panics
/// If the text is not a request (this is a test helper: a bad fixture is a failed test).
#[track_caller]
pub fn request(text: &str) -> Message<'static> {
    match parse(text) {
        Ok(msg) if msg.is_request() => msg,
        Ok(_) => panic!("testing::request: the text is a reply"),
        Err(err) => panic!("testing::request: {err}"),
    }
}

/// Parse a reply from SIP text.
///
/// # Panics
/// If the text is not a reply.
#[track_caller]
pub fn reply(text: &str) -> Message<'static> {
    match parse(text) {
        Ok(msg) if !msg.is_request() => msg,
        Ok(_) => panic!("testing::reply: the text is a request"),
        Err(err) => panic!("testing::reply: {err}"),
    }
}

/// The message as the host would write it after the edits so far: CRLF line ends, and a
/// Content-Length matching the body (fixed in place, or appended if the message has none).
pub fn serialize(msg: &Message<'_>) -> String {
    msg.mem().serialize()
}

/// Set the address the message came from.
pub fn set_source(msg: &mut Message<'_>, source: Address) {
    msg.mem_mut().source = WitAddress {
        ip: source.ip,
        port: source.port,
    };
}

/// Set the transport the message arrived on.
pub fn set_transport(msg: &mut Message<'_>, transport: Transport) {
    msg.mem_mut().transport = match transport {
        Transport::Udp => WitTransport::Udp,
        Transport::Tcp => WitTransport::Tcp,
        Transport::Tls => WitTransport::Tls,
        Transport::Ws => WitTransport::Ws,
        Transport::Wss => WitTransport::Wss,
    };
}

/// Make the request look as a failure chain sees it: hook [`Hook::Failure`](crate::Hook)
/// with `status` as the failed leg's best final status.
pub fn set_failure(msg: &mut Message<'_>, status: u16) {
    let m = msg.mem_mut();
    m.hook = crate::__private::bindings::weir::sip::types::Hook::Failure;
    m.failure_status = status;
}

/// Make the request look as a branch-failure chain sees it: hook
/// [`Hook::BranchFailure`](crate::Hook) with `status` as the failed branch's final status.
pub fn set_branch_failure(msg: &mut Message<'_>, status: u16) {
    let m = msg.mem_mut();
    m.hook = crate::__private::bindings::weir::sip::types::Hook::BranchFailure;
    m.failure_status = status;
}

/// Mark the request's transaction as cancelled upstream.
pub fn set_cancelled(msg: &mut Message<'_>, cancelled: bool) {
    msg.mem_mut().cancelled = cancelled;
}

/// Set the stream connection the message arrived on (0, the default, means UDP).
pub fn set_connection(msg: &mut Message<'_>, id: u64) {
    msg.mem_mut().connection = id;
}

/// Set the id of the request's transaction, as on a stateful route (0, the default,
/// means stateless). Pair it with [`set_tx_state`] for [`transactions`](crate::transactions).
pub fn set_transaction(msg: &mut Message<'_>, id: u64) {
    msg.mem_mut().transaction = id;
}

/// Set the name of the listener the message arrived on.
pub fn set_listener(msg: &mut Message<'_>, listener: &str) {
    msg.mem_mut().listener = listener.to_string();
}

/// Set the size limit (bytes of the serialized message) past which an edit that grows
/// the message fails with [`EditError::TooLarge`](crate::EditError::TooLarge).
pub fn set_max_size(msg: &mut Message<'_>, bytes: usize) {
    msg.mem_mut().max_size = bytes;
}

// === modules ===

/// Build a module from params the way the host does: `params` is the module's `params`
/// table as JSON; nested objects are flattened into dotted keys and values typed as the
/// host types TOML values, then the SDK's `init` path decodes them into `M::Config` and
/// calls [`Module::init`]. The error is the text `weir check` would report.
pub fn init<M: Module>(params: Value) -> Result<M, Error> {
    crate::params::instantiate::<M>(flatten(params)?)
}

/// The error text of building a module from `params` (see [`init`]): for testing config
/// validation.
///
/// # Panics
/// If `init` succeeds.
#[track_caller]
pub fn init_err<M: Module>(params: Value) -> String {
    match init::<M>(params) {
        Ok(_) => panic!("testing::init_err: init succeeded"),
        Err(err) => err.to_string(),
    }
}

fn flatten(params: Value) -> Result<Vec<Param>, Error> {
    let Value::Object(table) = params else {
        return Err(Error::new("testing::init: params must be a JSON object"));
    };
    let mut out = Vec::new();
    flatten_into(&mut out, "", table)?;
    Ok(out)
}

fn flatten_into(
    out: &mut Vec<Param>,
    prefix: &str,
    table: serde_json::Map<String, Value>,
) -> Result<(), Error> {
    for (key, value) in table {
        let key = if prefix.is_empty() {
            key
        } else {
            format!("{prefix}.{key}")
        };
        let unsupported =
            |what: &str| Error::new(format!("param `{key}`: {what} is not a param value"));
        let value = match value {
            Value::Object(inner) => {
                flatten_into(out, &key, inner)?;
                continue;
            }
            Value::String(s) => ParamValue::Text(s),
            Value::Bool(b) => ParamValue::Boolean(b),
            Value::Number(n) => match (n.as_i64(), n.as_f64()) {
                (Some(i), _) => ParamValue::Integer(i),
                (None, Some(f)) if !n.is_u64() => ParamValue::Float(f),
                _ => return Err(unsupported("an integer beyond i64")),
            },
            Value::Array(items) => {
                if items.iter().all(Value::is_string) {
                    ParamValue::TextList(
                        items
                            .into_iter()
                            .filter_map(|v| v.as_str().map(str::to_string))
                            .collect(),
                    )
                } else if items.iter().all(Value::is_i64) {
                    ParamValue::IntegerList(items.iter().filter_map(Value::as_i64).collect())
                } else {
                    return Err(unsupported(
                        "a list that is neither all text nor all integers",
                    ));
                }
            }
            Value::Null => return Err(unsupported("null")),
        };
        out.push(Param { key, value });
    }
    Ok(())
}

// === logs ===

/// One line written through [`log`](crate::log).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LogLine {
    /// Its severity.
    pub level: Level,
    /// Its text.
    pub message: String,
}

/// Every line logged on this thread so far (since the last [`take_logs`] or [`reset`]).
pub fn logs() -> Vec<LogLine> {
    mock::with(|s| s.logs.clone())
}

/// Every line logged on this thread so far, clearing the record.
pub fn take_logs() -> Vec<LogLine> {
    mock::with(|s| std::mem::take(&mut s.logs))
}

// === clock ===

/// Set the mock wall clock (milliseconds since the Unix epoch). It starts at
/// 1 700 000 000 000 and only moves when told to.
pub fn set_now_ms(ms: u64) {
    mock::with(|s| s.now_ms = ms);
}

/// Move both mock clocks forward; kv entries expire accordingly.
pub fn advance(by: Duration) {
    let ms = u64::try_from(by.as_millis()).unwrap_or(u64::MAX);
    let ns = u64::try_from(by.as_nanos()).unwrap_or(u64::MAX);
    mock::with(|s| {
        s.now_ms = s.now_ms.saturating_add(ms);
        s.mono_ns = s.mono_ns.saturating_add(ns);
    });
}

// === system ===

/// Set what [`system::load`](crate::system::load) returns on this thread (both figures
/// are 0 until then).
pub fn set_load(load: crate::system::Load) {
    mock::with(|s| s.load = load);
}

// === kv ===

/// Make every kv call fail with `error` (or work again with `None`), to test a module's
/// handling of store failures. The mock enforces no size limits of its own.
pub fn fail_kv(error: Option<KvError>) {
    mock::with(|s| s.kv_error = error);
}

// === subscribers and connections ===

/// Put a subscriber into this thread's subscriber store (replacing one with the same
/// username and domain), for [`subscribers::lookup`](crate::subscribers::lookup).
pub fn add_subscriber(credentials: crate::subscribers::Credentials) {
    mock::with(|s| {
        s.subscribers.insert(
            (credentials.username.clone(), credentials.domain.clone()),
            credentials,
        )
    });
}

/// Remove a subscriber; true if it existed.
pub fn remove_subscriber(username: &str, domain: &str) -> bool {
    mock::with(|s| {
        s.subscribers
            .remove(&(username.to_string(), domain.to_string()))
            .is_some()
    })
}

/// Make every subscriber lookup fail with `error` (or work again with `None`).
pub fn fail_subscribers(error: Option<KvError>) {
    mock::with(|s| s.subscribers_error = error);
}

/// Every connection binding on this thread (as made through
/// [`connections::bind`](crate::connections::bind)), sorted by connection id.
pub fn connection_identities() -> Vec<(u64, String)> {
    let mut all: Vec<(u64, String)> =
        mock::with(|s| s.connections.iter().map(|(k, v)| (*k, v.clone())).collect());
    all.sort();
    all
}

// === timers ===

/// The module's running timers, in the order started: (name, interval as the host got
/// it, in whole milliseconds).
pub fn timers() -> Vec<(String, Duration)> {
    mock::with(|s| s.timers.clone())
}

// === requests ===

/// Every SIP request sent through [`requests::send`](crate::requests::send) on this
/// thread: (id, request, tag), in order. Ids count from 1, shared with [`http_requests`].
pub fn sent_requests() -> Vec<(u64, crate::requests::Request, String)> {
    mock::with(|s| s.sent.clone())
}

/// Make every following [`requests::send`](crate::requests::send) fail with this message
/// (as when the module has too many requests in flight), or work again with `None`.
pub fn fail_requests(error: Option<String>) {
    mock::with(|s| s.requests_error = error);
}

// === http ===

/// Every HTTP request sent through [`http::send`](crate::http::send) on this thread:
/// (id, request, tag), in order. Ids count from 1, shared with [`sent_requests`].
pub fn http_requests() -> Vec<(u64, crate::http::Request, String)> {
    mock::with(|s| s.http_sent.clone())
}

/// Grant the URL prefix `prefix` (as `http_allow` in the config does): like the host,
/// [`http::send`](crate::http::send) refuses URLs not under a granted prefix, and
/// nothing is granted until this is called.
pub fn grant_http(prefix: &str) {
    mock::with(|s| s.http_allow.push(prefix.to_string()));
}

/// Make every following granted [`http::send`](crate::http::send) fail with this message,
/// or work again with `None`.
pub fn fail_http(error: Option<String>) {
    mock::with(|s| s.http_error = error);
}

// === transactions ===

/// Set the state of transaction `id`; every transaction not set is [`State::Gone`].
pub fn set_tx_state(id: u64, state: State) {
    mock::with(|s| s.tx_states.insert(id, state));
}

/// Every branch added on this thread, by
/// [`transactions::add_branch`](crate::transactions::add_branch) and
/// [`append_contacts`](crate::transactions::append_contacts): (transaction id, target),
/// in order. Adding to a transaction that is not [`State::Pending`] fails, as in the host.
pub fn added_branches() -> Vec<(u64, BranchTarget)> {
    mock::with(|s| s.branches.clone())
}

/// Every successful [`transactions::append_contacts`](crate::transactions::append_contacts)
/// call: (transaction id, AOR, contact). The mock forks the transaction to each of the
/// AOR's bindings ([`set_bindings`]) whose contact is not yet one of its branches (and
/// is `contact`, when given), recording those in [`added_branches`].
pub fn appended() -> Vec<(u64, String, Option<String>)> {
    mock::with(|s| s.appended.clone())
}

/// The transactions watched with [`transactions::watch`](crate::transactions::watch), in
/// the order first watched.
pub fn watched() -> Vec<u64> {
    mock::with(|s| s.watched.clone())
}

// === location ===

/// Set the bindings [`location::lookup`](crate::location::lookup) returns for `aor`
/// (compared exactly as given), replacing earlier ones; an empty list removes them.
pub fn set_bindings(aor: &str, bindings: Vec<crate::location::Binding>) {
    mock::with(|s| {
        if bindings.is_empty() {
            s.bindings.remove(aor);
        } else {
            s.bindings.insert(aor.to_string(), bindings);
        }
    });
}

/// Make every location lookup (and
/// [`append_contacts`](crate::transactions::append_contacts)) fail with this message, as
/// when the proxy runs no registrar, or work again with `None`.
pub fn fail_location(error: Option<String>) {
    mock::with(|s| s.location_error = error);
}

// === files ===

/// Grant a file named `name` with this content. The first call gives version 1, and
/// each call bumps the version, as the host does when the file changes on disk.
pub fn set_file(name: &str, content: impl AsRef<[u8]>) {
    mock::with(|s| {
        let entry = s.files.entry(name.to_string()).or_insert((0, Vec::new()));
        entry.0 += 1;
        entry.1 = content.as_ref().to_vec();
    });
}

/// Clear this thread's logs, kv store, subscribers, connection bindings, timers, sent
/// requests, grants, transactions, bindings and files, and put the clocks, the load
/// figures and the request ids back to their start.
pub fn reset() {
    mock::reset();
}

#[cfg(test)]
mod tests;
