//! Host side of the `weir:sip/module` world: the data every store carries and the
//! linker that holds the host functions.
//!
//! Imports are defined by hand (`func_wrap` with [`WasmStr`](wasmtime::component::WasmStr)
//! and [`WasmList`](wasmtime::component::WasmList) parameters) rather than through
//! `bindgen!`'s `Host` traits: the guest's strings and lists stay in its memory until
//! the host has checked their length, and lookups never copy them at all.

use std::net::{Ipv4Addr, SocketAddr};
use std::sync::Arc;

use bytes::Bytes;
use wasmtime::component::Linker;
use wasmtime::{Engine, ResourceLimiter, StoreLimits, StoreLimitsBuilder};
use weir_message::{Headers, Message, StartLine, Text};

use crate::call::{CallContext, Transport};
use crate::kv::KvStore;

pub(crate) mod auth;
pub(crate) mod imports;
pub(crate) mod message;
pub(crate) mod services;
pub(crate) mod system;
pub(crate) mod undo;
pub(crate) mod wasi;

/// Log lines (`log` import plus stdout/stderr lines) a module may emit per call;
/// further lines are dropped.
pub(crate) const LOG_LINES_PER_CALL: u32 = 32;

/// Who a store belongs to; shared by all instances of a module.
#[derive(Debug)]
pub(crate) struct ModuleIdent {
    pub(crate) name: String,
    pub(crate) tenant: String,
    /// `"<tenant>/<name>"`: the kv namespace and the module's display name.
    pub(crate) qualified: String,
}

/// Data of one store (one instance).
pub(crate) struct Ctx {
    pub(crate) ident: Arc<ModuleIdent>,
    pub(crate) kv: Arc<dyn KvStore>,
    /// Subscriber store and connection identities (`subscribers`, `connections`).
    pub(crate) auth: Arc<auth::AuthState>,
    /// The proxy's services (timers, requests, transactions, location, http).
    pub(crate) services: Arc<services::ServiceState>,
    /// What the config grants this module (http prefixes, files).
    pub(crate) grants: Arc<services::Grants>,
    pub(crate) limiter: Limiter,
    pub(crate) call: CallState,
    pub(crate) wasi: wasi::WasiState,
}

/// What the store knows about the call in progress.
pub(crate) struct CallState {
    /// The message being processed; moved in for the call, taken back after.
    pub(crate) msg: Option<Message>,
    /// Inverses of the call's edits, to roll back to the message as it was if the
    /// call fails. Kept across calls so it does not allocate once warm.
    pub(crate) undo: Vec<undo::Undo>,
    pub(crate) source: SocketAddr,
    pub(crate) transport: Transport,
    /// Reused across calls so copying the listener name does not allocate.
    pub(crate) listener: String,
    pub(crate) hook: crate::call::Hook,
    pub(crate) failure_status: u16,
    pub(crate) cancelled: bool,
    /// The stream connection the message arrived on; 0 for UDP.
    pub(crate) connection: u64,
    /// The request's transaction (stateful routes); 0 otherwise.
    pub(crate) transaction: u64,
    /// The processing's variables, copied in for the call and back after it.
    pub(crate) vars: crate::call::Vars,
    /// A `set-var` succeeded during the call.
    pub(crate) vars_dirty: bool,
    pub(crate) log_budget: u32,
}

impl Ctx {
    pub(crate) fn new(
        ident: Arc<ModuleIdent>,
        kv: Arc<dyn KvStore>,
        auth: Arc<auth::AuthState>,
        services: Arc<services::ServiceState>,
        grants: Arc<services::Grants>,
        memory_bytes: usize,
    ) -> wasmtime::Result<Ctx> {
        Ok(Ctx {
            ident,
            kv,
            auth,
            services,
            grants,
            limiter: Limiter::new(memory_bytes),
            call: CallState {
                msg: None,
                undo: Vec::new(),
                source: SocketAddr::from((Ipv4Addr::UNSPECIFIED, 0)),
                transport: Transport::Udp,
                listener: String::new(),
                hook: crate::call::Hook::Request,
                failure_status: 0,
                cancelled: false,
                connection: 0,
                transaction: 0,
                vars: crate::call::Vars::default(),
                vars_dirty: false,
                log_budget: LOG_LINES_PER_CALL,
            },
            wasi: wasi::WasiState::new()?,
        })
    }

    /// Moves `msg` into the store for a call.
    pub(crate) fn begin_call(&mut self, msg: Message, cx: &CallContext<'_>) {
        let call = &mut self.call;
        call.msg = Some(msg);
        call.undo.clear();
        call.source = cx.source;
        call.transport = cx.transport;
        call.listener.clear();
        call.listener.push_str(cx.listener);
        call.hook = cx.hook;
        call.failure_status = cx.failure_status;
        call.cancelled = cx.cancelled;
        call.connection = cx.connection;
        call.transaction = cx.transaction;
        call.vars.clear();
        call.vars_dirty = false;
        if let Some(v) = cx.vars {
            call.vars.clone_from(&v.borrow());
        }
        call.log_budget = LOG_LINES_PER_CALL;
        self.limiter.memory_exhausted = false;
    }

    /// Takes the message back: as edited if `keep_edits`, else as it was before
    /// the call.
    /// Prepare for a call without a message (`on-binding`): message accessors fail.
    pub(crate) fn begin_event(&mut self) {
        self.call.msg = None;
        self.call.undo.clear();
        self.call.log_budget = LOG_LINES_PER_CALL;
    }

    /// After a call without a message.
    pub(crate) fn end_event(&mut self) {
        self.wasi.flush_all(&self.ident);
    }

    pub(crate) fn end_call(&mut self, keep_edits: bool) -> Option<Message> {
        self.wasi.flush_all(&self.ident);
        let mut msg = self.call.msg.take();
        if let (false, Some(m)) = (keep_edits, msg.as_mut()) {
            undo::rollback(m, &mut self.call.undo);
        }
        self.call.undo.clear();
        msg
    }
}

/// A message that owns no heap memory, left in the caller's place while the real
/// one is inside a store.
pub(crate) fn placeholder_message() -> Message {
    Message {
        start: StartLine::Response {
            code: 0,
            reason: Text::new(),
        },
        headers: Headers::new(),
        body: Bytes::new(),
    }
}

// === Limiter ===

/// [`StoreLimits`] that also remembers whether a memory growth was refused, so a
/// trap that follows is reported as out-of-memory rather than a plain trap.
pub(crate) struct Limiter {
    inner: StoreLimits,
    pub(crate) memory_exhausted: bool,
}

impl Limiter {
    fn new(memory_bytes: usize) -> Limiter {
        Limiter {
            inner: StoreLimitsBuilder::new()
                .memory_size(memory_bytes)
                // A Rust or C component has a handful of core instances, tables and
                // memories; these bounds only stop pathological components.
                .instances(32)
                .tables(32)
                .memories(4)
                .table_elements(100_000)
                .trap_on_grow_failure(true)
                .build(),
            memory_exhausted: false,
        }
    }
}

impl ResourceLimiter for Limiter {
    fn memory_growing(
        &mut self,
        current: usize,
        desired: usize,
        maximum: Option<usize>,
    ) -> wasmtime::Result<bool> {
        let verdict = self.inner.memory_growing(current, desired, maximum);
        if !matches!(verdict, Ok(true)) {
            self.memory_exhausted = true;
        }
        verdict
    }

    fn memory_grow_failed(&mut self, error: wasmtime::Error) -> wasmtime::Result<()> {
        self.memory_exhausted = true;
        self.inner.memory_grow_failed(error)
    }

    fn table_growing(
        &mut self,
        current: usize,
        desired: usize,
        maximum: Option<usize>,
    ) -> wasmtime::Result<bool> {
        self.inner.table_growing(current, desired, maximum)
    }

    fn table_grow_failed(&mut self, error: wasmtime::Error) -> wasmtime::Result<()> {
        self.inner.table_grow_failed(error)
    }

    fn instances(&self) -> usize {
        self.inner.instances()
    }

    fn tables(&self) -> usize {
        self.inner.tables()
    }

    fn memories(&self) -> usize {
        self.inner.memories()
    }
}

// === Linker ===

/// The linker shared by all modules: `weir:sip/*` imports and the WASI shim. Each
/// module's load adds trapping stubs for the WASI functions the shim leaves out.
pub(crate) fn linker(engine: &Engine) -> wasmtime::Result<Linker<Ctx>> {
    let mut linker = Linker::new(engine);
    message::add_to_linker(&mut linker)?;
    imports::add_to_linker(&mut linker)?;
    system::add_to_linker(&mut linker)?;
    auth::add_to_linker(&mut linker)?;
    services::add_to_linker(&mut linker)?;
    wasi::add_to_linker(&mut linker)?;
    Ok(linker)
}
