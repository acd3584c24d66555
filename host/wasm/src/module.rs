//! A loaded module: its pre-linked component, its pool of instances, its counters.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::Duration;

use wasmtime::component::Resource;
use wasmtime::{Store, Trap};
use weir_message::{is_valid_header_name, is_valid_header_value, names_equal, Message, Uri};
use weir_metrics::{CachePadded, Counter, STRIPES};

use crate::bindings::weir::sip::types::{
    Param as WitParam, Reply as WitReply, Verdict as WitVerdict,
};
use crate::bindings::{Module, ModulePre};
use crate::call::{CallContext, ModuleFailure, ModuleStats, Verdict};
use crate::error::chain;
use crate::host::auth::AuthState;
use crate::host::imports::cut;
use crate::host::message::MESSAGE_REP;
use crate::host::services::{check_branch, Grants, ServiceState};
use crate::host::{placeholder_message, Ctx, ModuleIdent};
use crate::kv::KvStore;
use crate::spec::ModuleLimits;
use crate::watchdog::{CallSlot, Watchdog};
use crate::MAX_MESSAGE_BYTES;

/// Most headers in a module's reply.
const MAX_REPLY_HEADERS: usize = 32;
/// Longest reason phrase of a module's reply.
const MAX_REASON: usize = 256;
/// Most forward targets.
const MAX_TARGETS: usize = 16;
/// Longest forward target.
const MAX_TARGET_LEN: usize = 2048;
/// Longest `wait` of a verdict.
const MAX_WAIT_MS: u32 = 300_000;
/// Longest module error message kept.
const MAX_ERROR_MESSAGE: usize = 1024;

/// How a load found the module's compiled code.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CacheOutcome {
    /// No cache directory configured: compiled.
    Disabled,
    /// Loaded from the cache.
    Hit,
    /// Not in the cache (or unusable): compiled and written.
    Miss,
}

/// Facts about how a module was loaded.
#[derive(Clone, Copy, Debug)]
pub struct LoadInfo {
    /// Where the compiled code came from.
    pub cache: CacheOutcome,
    /// Reading the component and compiling it, or loading it from the cache.
    pub code_time: Duration,
    /// Linking, instantiating the first instance and running its `init`.
    pub start_time: Duration,
    /// Size of the component file.
    pub component_bytes: u64,
}

/// A module ready to be called: compiled, linked, `init` accepted its params.
///
/// Calls take an idle instance from the module's pool (creating one only when the
/// pool is empty, up to `max_instances`) and give it back afterwards. An instance that
/// trapped, timed out or ran out of memory is dropped instead and replaced lazily.
/// Hold it in an `Arc`: a call in progress keeps the module alive across a swap.
pub struct LoadedModule {
    ident: Arc<ModuleIdent>,
    pre: ModulePre<Ctx>,
    params: Vec<WitParam>,
    limits: ModuleLimits,
    kv: Arc<dyn KvStore>,
    auth: Arc<AuthState>,
    services: Arc<ServiceState>,
    grants: Arc<Grants>,
    /// Per thread slot ([`weir_metrics::thread_slot`]): the instance that thread used
    /// last. Tried first; `idle` holds the rest.
    affine: [Affine; STRIPES],
    idle: Mutex<Vec<Instance>>,
    live: AtomicUsize,
    counters: Counters,
    info: LoadInfo,
    watchdog: Arc<Watchdog>,
}

struct Instance {
    store: Store<Ctx>,
    bindings: Module,
    /// The deadline of the call the instance is running, for the watchdog.
    slot: CallSlot,
}

#[derive(Default)]
struct Counters {
    calls: Counter,
    errors: Counter,
    bad_verdicts: Counter,
    traps: Counter,
    timeouts: Counter,
    oom: Counter,
    busy: Counter,
    instances_created: Counter,
    instances_replaced: Counter,
}

/// The instance a thread last gave back, alone on its cache line: the thread takes it
/// again on its next call, so an instance's memory stays in one core's cache instead of
/// moving between the receive threads with every call.
type Affine = CachePadded<Mutex<Option<Instance>>>;

/// Why a fresh instance could not be made.
pub(crate) enum StartFailure {
    /// `init` returned an error.
    Refused(String),
    /// Instantiation or `init` trapped, timed out or ran out of memory.
    Failed(ModuleFailure),
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Hook {
    Request,
    Reply,
}

pub(crate) struct ModuleParts {
    pub(crate) ident: Arc<ModuleIdent>,
    pub(crate) pre: ModulePre<Ctx>,
    pub(crate) params: Vec<WitParam>,
    pub(crate) limits: ModuleLimits,
    pub(crate) kv: Arc<dyn KvStore>,
    pub(crate) auth: Arc<AuthState>,
    pub(crate) services: Arc<ServiceState>,
    pub(crate) grants: Arc<Grants>,
    pub(crate) info: LoadInfo,
    pub(crate) watchdog: Arc<Watchdog>,
}

impl LoadedModule {
    /// Builds the module and its first instance (which runs `init`).
    pub(crate) fn start(parts: ModuleParts) -> Result<LoadedModule, StartFailure> {
        parts.watchdog.bound(parts.limits.timeout);
        let module = LoadedModule {
            ident: parts.ident,
            pre: parts.pre,
            params: parts.params,
            limits: parts.limits,
            kv: parts.kv,
            auth: parts.auth,
            services: parts.services,
            grants: parts.grants,
            affine: std::array::from_fn(|_| Affine::default()),
            idle: Mutex::new(Vec::new()),
            live: AtomicUsize::new(1),
            counters: Counters::default(),
            info: parts.info,
            watchdog: parts.watchdog,
        };
        let first = module.instantiate()?;
        module.put_idle(first);
        Ok(module)
    }

    pub(crate) fn set_start_time(&mut self, t: Duration) {
        self.info.start_time = t;
    }

    /// Module name.
    pub fn name(&self) -> &str {
        &self.ident.name
    }

    /// Owning tenant.
    pub fn tenant(&self) -> &str {
        &self.ident.tenant
    }

    /// `"<tenant>/<name>"`: the module's kv namespace, and a registry key that two
    /// tenants cannot collide on.
    pub fn qualified_name(&self) -> &str {
        &self.ident.qualified
    }

    /// The limits it runs under.
    pub fn limits(&self) -> &ModuleLimits {
        &self.limits
    }

    /// How it was loaded.
    pub fn load_info(&self) -> LoadInfo {
        self.info
    }

    /// Runs the module's `on-request` on `msg`, whose edits apply in place.
    ///
    /// Synchronous and bounded by the module's timeout and memory limit; never
    /// blocks on IO or on a runtime, and may be called from any thread, including
    /// tokio workers. On failure `msg` is as it was before the call.
    pub fn on_request(
        &self,
        msg: &mut Message,
        ctx: &CallContext<'_>,
    ) -> Result<Verdict, ModuleFailure> {
        self.call(Hook::Request, msg, ctx)
    }

    /// Runs the module's `on-reply` on `msg`, like [`on_request`](Self::on_request).
    /// Only `Continue` and `Drop` come back: the WIT treats other verdicts of a reply
    /// hook as `continue`.
    pub fn on_reply(
        &self,
        msg: &mut Message,
        ctx: &CallContext<'_>,
    ) -> Result<Verdict, ModuleFailure> {
        self.call(Hook::Reply, msg, ctx)
    }

    /// Runs the module's `on-binding` with a registrar event. Bounded like
    /// [`on_request`](Self::on_request); a module that ignores events returns at once.
    pub fn on_binding(&self, event: &crate::call::BindingEvent) -> Result<(), ModuleFailure> {
        use crate::bindings::weir::sip::types::{
            BindingChange as WitChange, BindingEvent as WitEvent, Header as WitHeader,
        };
        use crate::call::BindingChange;
        let wit = WitEvent {
            change: match event.change {
                BindingChange::Added => WitChange::Added,
                BindingChange::Refreshed => WitChange::Refreshed,
                BindingChange::Removed => WitChange::Removed,
                BindingChange::Expired => WitChange::Expired,
            },
            aor: event.aor.clone(),
            contact: event.contact.clone(),
            expires_at_ms: event.expires_at_ms,
            instance: event.instance.clone(),
            params: event
                .params
                .iter()
                .map(|(n, v)| WitHeader {
                    name: n.clone(),
                    value: v.clone(),
                })
                .collect(),
        };
        self.call_without_message(|store, bindings| {
            bindings.weir_sip_handler().call_on_binding(store, &wit)
        })
    }

    /// Runs the module's `on-event` (a timer fired, a request it sent ended, a
    /// watched transaction ended). Bounded like [`on_request`](Self::on_request).
    pub fn on_event(&self, event: &crate::services::Event) -> Result<(), ModuleFailure> {
        let wit = to_wit_event(event);
        self.call_without_message(|store, bindings| {
            bindings.weir_sip_handler().call_on_event(store, &wit)
        })
    }

    /// One bounded call of an export that takes no message (`on-binding`,
    /// `on-event`): message accessors fail inside it; its error string becomes
    /// [`ModuleFailure::Error`].
    fn call_without_message(
        &self,
        export: impl FnOnce(&mut Store<Ctx>, &Module) -> wasmtime::Result<Result<(), String>>,
    ) -> Result<(), ModuleFailure> {
        let mut inst = self.begin()?;
        inst.store.data_mut().begin_event();
        let Instance {
            store,
            bindings,
            slot,
        } = &mut inst;
        let raw = slot.watch(store, self.limits.timeout, |store| export(store, bindings));
        inst.store.data_mut().end_event();
        let outcome = match raw {
            Ok(Ok(())) => Ok(()),
            Ok(Err(message)) => Err(ModuleFailure::Error(
                cut(&message, MAX_ERROR_MESSAGE).to_owned(),
            )),
            Err(e) => Err(classify(&inst.store, &e)),
        };
        self.settle(inst, outcome.as_ref().err());
        outcome
    }

    /// Current counters.
    pub fn stats(&self) -> ModuleStats {
        let c = &self.counters;
        let get = Counter::get;
        ModuleStats {
            calls: get(&c.calls),
            errors: get(&c.errors),
            bad_verdicts: get(&c.bad_verdicts),
            traps: get(&c.traps),
            timeouts: get(&c.timeouts),
            oom: get(&c.oom),
            busy: get(&c.busy),
            instances_created: get(&c.instances_created),
            instances_replaced: get(&c.instances_replaced),
            idle_instances: self
                .idle
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .len()
                + self
                    .affine
                    .iter()
                    .filter(|a| a.0.lock().unwrap_or_else(PoisonError::into_inner).is_some())
                    .count(),
            live_instances: self.live.load(Ordering::Relaxed),
        }
    }

    fn call(
        &self,
        hook: Hook,
        msg: &mut Message,
        cx: &CallContext<'_>,
    ) -> Result<Verdict, ModuleFailure> {
        let mut inst = self.begin()?;

        let original = std::mem::replace(msg, placeholder_message());
        inst.store.data_mut().begin_call(original, cx);
        let handler = inst.bindings.weir_sip_handler();
        let this = Resource::new_borrow(MESSAGE_REP);
        let raw = inst
            .slot
            .watch(&mut inst.store, self.limits.timeout, |store| match hook {
                Hook::Request => handler.call_on_request(store, this),
                Hook::Reply => handler.call_on_reply(store, this),
            });
        let outcome = match raw {
            Ok(Ok(verdict)) => check_verdict(hook, verdict),
            Ok(Err(message)) => Err(ModuleFailure::Error(
                cut(&message, MAX_ERROR_MESSAGE).to_owned(),
            )),
            Err(e) => Err(classify(&inst.store, &e)),
        };
        if let (Ok(_), Some(vars)) = (&outcome, cx.vars) {
            let call = &inst.store.data().call;
            if call.vars_dirty {
                vars.borrow_mut().clone_from(&call.vars);
            }
        }
        match inst.store.data_mut().end_call(outcome.is_ok()) {
            Some(m) => *msg = m,
            // Only host code moves the message; this cannot happen.
            None => tracing::error!(
                module = %self.ident.name,
                tenant = %self.ident.tenant,
                "message lost in a module call"
            ),
        }

        self.settle(inst, outcome.as_ref().err());
        outcome
    }

    /// Before a call: count it and take an instance (a busy pool counts as a failure).
    fn begin(&self) -> Result<Instance, ModuleFailure> {
        self.counters.calls.inc();
        self.checkout().inspect_err(|failure| self.count(failure))
    }

    /// After a call: count a failure, and return the instance to the pool unless the
    /// failure may have left it broken (trap, timeout, out of memory).
    fn settle(&self, inst: Instance, failure: Option<&ModuleFailure>) {
        match failure {
            Some(
                failure @ (ModuleFailure::Trap(_)
                | ModuleFailure::Timeout
                | ModuleFailure::OutOfMemory),
            ) => {
                self.count(failure);
                self.discard(inst, failure);
            }
            Some(failure) => {
                self.count(failure);
                self.checkin(inst);
            }
            None => self.checkin(inst),
        }
    }

    /// An idle instance, or a fresh one if the pool is empty and the module may have
    /// one more.
    fn checkout(&self) -> Result<Instance, ModuleFailure> {
        if let Some(inst) = self.affine_slot().and_then(|mut a| a.take()) {
            return Ok(inst);
        }
        if let Some(inst) = self
            .idle
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .pop()
        {
            return Ok(inst);
        }
        // One left with another thread (which may never call again) before a new one.
        if let Some(inst) = self
            .affine
            .iter()
            .find_map(|a| crate::try_lock(&a.0).and_then(|mut a| a.take()))
        {
            return Ok(inst);
        }
        let mut live = self.live.load(Ordering::Relaxed);
        loop {
            if live >= self.limits.max_instances {
                return Err(ModuleFailure::Busy);
            }
            match self.live.compare_exchange_weak(
                live,
                live + 1,
                Ordering::AcqRel,
                Ordering::Relaxed,
            ) {
                Ok(_) => break,
                Err(now) => live = now,
            }
        }
        self.instantiate().map_err(|f| {
            self.live.fetch_sub(1, Ordering::AcqRel);
            let failure = match f {
                StartFailure::Refused(message) => {
                    ModuleFailure::Error(format!("init: {}", cut(&message, MAX_ERROR_MESSAGE)))
                }
                StartFailure::Failed(failure) => failure,
            };
            tracing::warn!(
                module = %self.ident.name,
                tenant = %self.ident.tenant,
                reason = %failure,
                "new instance failed to start"
            );
            failure
        })
    }

    fn checkin(&self, inst: Instance) {
        let inst = match self.affine_slot() {
            Some(mut a) if a.is_none() => {
                *a = Some(inst);
                return;
            }
            _ => inst,
        };
        self.put_idle(inst);
    }

    /// Into the shared pool.
    fn put_idle(&self, inst: Instance) {
        self.idle
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .push(inst);
    }

    /// The calling thread's affine slot, locked (uncontended unless more threads than
    /// slots call this module).
    fn affine_slot(&self) -> Option<MutexGuard<'_, Option<Instance>>> {
        self.affine
            .get(weir_metrics::thread_slot())
            .map(|a| a.0.lock().unwrap_or_else(PoisonError::into_inner))
    }

    fn discard(&self, inst: Instance, why: &ModuleFailure) {
        drop(inst);
        self.live.fetch_sub(1, Ordering::AcqRel);
        self.counters.instances_replaced.inc();
        tracing::warn!(
            module = %self.ident.name,
            tenant = %self.ident.tenant,
            reason = %why,
            "module instance discarded; a fresh one replaces it on demand"
        );
    }

    fn count(&self, failure: &ModuleFailure) {
        let c = &self.counters;
        let counter = match failure {
            ModuleFailure::Trap(_) => &c.traps,
            ModuleFailure::Timeout => &c.timeouts,
            ModuleFailure::OutOfMemory => &c.oom,
            ModuleFailure::Error(_) => &c.errors,
            ModuleFailure::Busy => &c.busy,
            ModuleFailure::BadVerdict(_) => &c.bad_verdicts,
        };
        counter.inc();
    }

    /// A new instance with `init` run, bounded by ten times the call timeout.
    fn instantiate(&self) -> Result<Instance, StartFailure> {
        let ctx = Ctx::new(
            self.ident.clone(),
            self.kv.clone(),
            self.auth.clone(),
            self.services.clone(),
            self.grants.clone(),
            self.limits.memory_bytes,
        )
        .map_err(|e| StartFailure::Failed(ModuleFailure::Trap(chain(&e))))?;
        let mut store = Store::new(self.pre.engine(), ctx);
        store.limiter(|ctx| &mut ctx.limiter);
        let slot = self.watchdog.slot();
        let watched = slot.share();
        store.epoch_deadline_callback(move |_| Ok(watched.on_epoch()));
        // Instantiation and `init` together: ten call timeouts.
        let budget = self.limits.timeout.saturating_mul(10);
        let started = slot.watch(&mut store, budget, |store| {
            self.pre.instantiate(&mut *store).and_then(|bindings| {
                let init = bindings
                    .weir_sip_handler()
                    .call_init(&mut *store, &self.params)?;
                Ok((bindings, init))
            })
        });
        store.data_mut().wasi.flush_all(&self.ident);
        match started {
            Ok((bindings, Ok(()))) => {
                self.counters.instances_created.inc();
                Ok(Instance {
                    store,
                    bindings,
                    slot,
                })
            }
            Ok((_, Err(message))) => Err(StartFailure::Refused(message)),
            Err(e) => Err(StartFailure::Failed(classify(&store, &e))),
        }
    }
}

impl std::fmt::Debug for LoadedModule {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LoadedModule")
            .field("module", &self.ident.qualified)
            .field("limits", &self.limits)
            .field("info", &self.info)
            .finish_non_exhaustive()
    }
}

/// What a failed guest call was: a refused memory growth wins over the trap it
/// causes, an epoch interrupt is a timeout, anything else a trap.
fn classify(store: &Store<Ctx>, e: &wasmtime::Error) -> ModuleFailure {
    if store.data().limiter.memory_exhausted {
        return ModuleFailure::OutOfMemory;
    }
    match e.downcast_ref::<Trap>() {
        Some(Trap::Interrupt) => ModuleFailure::Timeout,
        Some(trap) => ModuleFailure::Trap(trap.to_string()),
        // A host function refused (e.g. a WASI call that is not available): the
        // root cause says which.
        None => {
            let root = e.chain().last().map(|c| c.to_string()).unwrap_or_default();
            tracing::debug!(error = %chain(e), "guest call failed");
            ModuleFailure::Trap(cut(&root, 512).to_owned())
        }
    }
}

fn check_verdict(hook: Hook, verdict: WitVerdict) -> Result<Verdict, ModuleFailure> {
    match verdict {
        WitVerdict::Continue => Ok(Verdict::Continue),
        WitVerdict::Drop => Ok(Verdict::Drop),
        // The reply hook passes anything but `drop` on.
        WitVerdict::Reply(_) | WitVerdict::Forward(_) | WitVerdict::Wait(_)
            if hook == Hook::Reply =>
        {
            Ok(Verdict::Continue)
        }
        WitVerdict::Reply(reply) => check_reply(reply),
        WitVerdict::Forward(targets) => check_forward(targets),
        WitVerdict::Wait(w) => check_wait(w),
    }
}

fn to_wit_event(e: &crate::services::Event) -> crate::bindings::weir::sip::types::Event {
    use crate::bindings::weir::sip::types::{
        Event as W, Header as WitHeader, HttpOutcome, HttpResponse as WitHttpResponse, SipResponse,
    };
    use crate::services::Event;
    let hs = |h: &[(String, String)]| -> Vec<WitHeader> {
        h.iter()
            .map(|(name, value)| WitHeader {
                name: name.clone(),
                value: value.clone(),
            })
            .collect()
    };
    match e {
        Event::Timer(name) => W::Timer(name.clone()),
        Event::Response {
            id,
            tag,
            status,
            reason,
            headers,
        } => W::Response(SipResponse {
            id: *id,
            tag: tag.clone(),
            status: *status,
            reason: reason.clone(),
            headers: hs(headers),
        }),
        Event::Http { id, tag, response } => W::HttpResponse(HttpOutcome {
            id: *id,
            tag: tag.clone(),
            response: match response {
                Ok(r) => Ok(WitHttpResponse {
                    status: r.status,
                    headers: hs(&r.headers),
                    body: r.body.clone(),
                }),
                Err(why) => Err(why.clone()),
            },
        }),
        Event::TransactionDone(id) => W::TransactionDone(*id),
    }
}

fn bad(why: String) -> Result<Verdict, ModuleFailure> {
    Err(ModuleFailure::BadVerdict(why))
}

fn check_reply(reply: WitReply) -> Result<Verdict, ModuleFailure> {
    if !(100..=699).contains(&reply.code) {
        return bad(format!("reply code {} is outside 100..=699", reply.code));
    }
    if reply.reason.len() > MAX_REASON || !is_valid_header_value(&reply.reason) {
        return bad("reply reason is too long or contains CR, LF or NUL".into());
    }
    if reply.headers.len() > MAX_REPLY_HEADERS {
        return bad(format!(
            "reply has {} headers, more than {MAX_REPLY_HEADERS}",
            reply.headers.len()
        ));
    }
    let mut size = 0usize;
    let mut headers = Vec::with_capacity(reply.headers.len());
    for h in reply.headers {
        if !is_valid_header_name(&h.name) || !is_valid_header_value(&h.value) {
            return bad(format!(
                "reply header `{}` is not a valid header",
                cut(&h.name, 64)
            ));
        }
        // The host copies these from the request (RFC 3261 8.2.6). Compared in
        // place: no lowercase copy per header.
        if ["via", "cseq", "call-id", "content-length", "from", "to"]
            .iter()
            .any(|owned| names_equal(&h.name, owned))
        {
            return bad(format!("reply header `{}` is host-owned", h.name));
        }
        size += h.name.len() + h.value.len() + 4;
        headers.push((h.name, h.value));
    }
    if size > MAX_MESSAGE_BYTES {
        return bad("reply headers are too large".into());
    }
    Ok(Verdict::Reply {
        code: reply.code,
        reason: reply.reason,
        headers,
    })
}

fn check_wait(w: crate::bindings::weir::sip::types::WaitSpec) -> Result<Verdict, ModuleFailure> {
    if w.timeout_ms == 0 || w.timeout_ms > MAX_WAIT_MS {
        return bad(format!("wait timeout-ms must be 1 to {MAX_WAIT_MS}"));
    }
    if !(400..=699).contains(&w.code) {
        return bad(format!("wait code {} is outside 400..=699", w.code));
    }
    if w.branches.len() > MAX_TARGETS {
        return bad(format!("wait has more than {MAX_TARGETS} branches"));
    }
    let mut branches = Vec::with_capacity(w.branches.len());
    for b in w.branches {
        branches.push(check_branch(b).map_err(ModuleFailure::BadVerdict)?);
    }
    Ok(Verdict::Wait {
        branches,
        timeout: Duration::from_millis(u64::from(w.timeout_ms)),
        code: w.code,
    })
}

fn check_forward(targets: Vec<String>) -> Result<Verdict, ModuleFailure> {
    if targets.is_empty() || targets.len() > MAX_TARGETS {
        return bad(format!(
            "forward needs 1 to {MAX_TARGETS} targets, got {}",
            targets.len()
        ));
    }
    for t in &targets {
        if t.len() > MAX_TARGET_LEN {
            return bad(format!("forward target of {} bytes is too long", t.len()));
        }
        if let Err(e) = Uri::parse(t) {
            return bad(format!(
                "forward target `{}` does not parse: {e}",
                cut(t, 128)
            ));
        }
    }
    Ok(Verdict::Forward(targets))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::bindings::weir::sip::types::Header as WitHeader;

    fn reply(code: u16, headers: &[(&str, &str)]) -> WitVerdict {
        WitVerdict::Reply(WitReply {
            code,
            reason: String::new(),
            headers: headers
                .iter()
                .map(|(n, v)| WitHeader {
                    name: (*n).into(),
                    value: (*v).into(),
                })
                .collect(),
        })
    }

    #[test]
    fn reply_codes_and_headers_are_checked() {
        assert!(check_verdict(Hook::Request, reply(403, &[("X-Why", "no")])).is_ok());
        for code in [0, 99, 700] {
            assert!(matches!(
                check_verdict(Hook::Request, reply(code, &[])),
                Err(ModuleFailure::BadVerdict(_))
            ));
        }
        for name in ["Via", "v", "To", "Call-ID", "Bad Name"] {
            assert!(
                matches!(
                    check_verdict(Hook::Request, reply(486, &[(name, "x")])),
                    Err(ModuleFailure::BadVerdict(_))
                ),
                "{name}"
            );
        }
        assert!(matches!(
            check_verdict(Hook::Request, reply(486, &[("X-A", "a\r\nb")])),
            Err(ModuleFailure::BadVerdict(_))
        ));
    }

    #[test]
    fn reply_hook_turns_reply_and_forward_into_continue() {
        assert_eq!(
            check_verdict(Hook::Reply, reply(0, &[])),
            Ok(Verdict::Continue)
        );
        assert_eq!(
            check_verdict(Hook::Reply, WitVerdict::Forward(vec![])),
            Ok(Verdict::Continue)
        );
        assert_eq!(
            check_verdict(Hook::Reply, WitVerdict::Drop),
            Ok(Verdict::Drop)
        );
    }

    #[test]
    fn forward_targets_must_parse() {
        let ok = check_verdict(
            Hook::Request,
            WitVerdict::Forward(vec!["sip:10.0.0.1:5060;transport=tcp".into()]),
        );
        assert_eq!(
            ok,
            Ok(Verdict::Forward(vec![
                "sip:10.0.0.1:5060;transport=tcp".into()
            ]))
        );
        for targets in [
            vec![],
            vec!["not a uri".to_string()],
            vec!["x".repeat(3000)],
        ] {
            assert!(matches!(
                check_verdict(Hook::Request, WitVerdict::Forward(targets)),
                Err(ModuleFailure::BadVerdict(_))
            ));
        }
    }
}
