//! The proxy side of the module services ([`weir_wasm::Services`]): module timers,
//! module-originated SIP requests, transaction control, location lookups and outbound
//! HTTP. Created before the modules load (their `init` may start timers), attached to
//! the [`Core`] once it exists; timers registered before that start at attach.
//!
//! Events go back to the module by its registry name, so a module swapped meanwhile
//! gets them in its new version. They are delivered on runtime tasks, never from inside
//! the guest call that caused them.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, OnceLock, Weak};
use std::time::Duration;

use weir_registrar::Lookup;
use weir_store::now_ms;
use weir_transaction::{IdHash, TxId};
use weir_wasm::{
    BranchTarget, Event, HttpRequest, HttpResponse, LocationBinding, OutgoingRequest, Services,
    TxState,
};

use crate::stats::inc;
use crate::Core;

/// Most timers per module.
const MAX_TIMERS: usize = 16;
/// Most SIP requests in flight per module.
const MAX_REQUESTS: usize = 1024;
/// Most HTTP requests in flight per module.
const MAX_HTTP: usize = 256;
/// Most modules watching one transaction.
const MAX_WATCHERS: usize = 8;

#[derive(Debug, Clone, Copy)]
struct TimerSlot {
    every: Duration,
    /// Changes when the timer is cancelled or re-created, so an old task stops.
    generation: u64,
}

/// What modules asked of the proxy; shared by every module through the wasm runtime.
pub struct ModuleServices {
    core: OnceLock<Weak<Core>>,
    timers: Mutex<HashMap<(String, String), TimerSlot>>,
    generation: AtomicU64,
    next_id: AtomicU64,
    /// In-flight SIP and HTTP requests per module.
    in_flight: Mutex<HashMap<String, (usize, usize)>>,
    /// Modules to tell when a transaction ends.
    watchers: Mutex<HashMap<TxId, Vec<String>, IdHash>>,
    /// `watchers.len()`, read without the lock on the per-transaction path.
    watched: std::sync::atomic::AtomicUsize,
    http: weir_http::Client,
}

impl std::fmt::Debug for ModuleServices {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ModuleServices").finish_non_exhaustive()
    }
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    // Every critical section leaves the data whole: a poisoned lock is still usable.
    m.lock().unwrap_or_else(|p| p.into_inner())
}

impl ModuleServices {
    /// Services not attached to a proxy yet: timers are recorded, everything else
    /// fails until [`attach`](Self::attach).
    pub fn new() -> Arc<ModuleServices> {
        Arc::new(ModuleServices {
            core: OnceLock::new(),
            timers: Mutex::new(HashMap::new()),
            generation: AtomicU64::new(1),
            next_id: AtomicU64::new(1),
            in_flight: Mutex::new(HashMap::new()),
            watchers: Mutex::new(HashMap::default()),
            watched: std::sync::atomic::AtomicUsize::new(0),
            http: weir_http::Client::new(weir_http::ClientConfig::default()),
        })
    }

    /// Serve `core`'s modules from now on: start the timers registered so far. Call
    /// inside the tokio runtime, once.
    pub fn attach(self: &Arc<Self>, core: &Arc<Core>) {
        if self.core.set(Arc::downgrade(core)).is_err() {
            return;
        }
        let _ = core.services.set(Arc::downgrade(self));
        let timers: Vec<_> = lock(&self.timers)
            .iter()
            .map(|(k, s)| (k.clone(), s.generation))
            .collect();
        for ((module, name), generation) in timers {
            self.spawn_timer(core, module, name, generation);
        }
    }

    fn core(&self) -> Option<Arc<Core>> {
        self.core.get().and_then(Weak::upgrade)
    }

    fn next_id(&self) -> u64 {
        self.next_id.fetch_add(1, Ordering::Relaxed)
    }

    fn spawn_timer(
        self: &Arc<Self>,
        core: &Arc<Core>,
        module: String,
        name: String,
        generation: u64,
    ) {
        let me = Arc::downgrade(self);
        core.runtime.spawn(async move {
            loop {
                let every = {
                    let Some(s) = me.upgrade() else { return };
                    let slot = lock(&s.timers)
                        .get(&(module.clone(), name.clone()))
                        .copied();
                    match slot {
                        Some(t) if t.generation == generation => t.every,
                        _ => return,
                    }
                };
                tokio::time::sleep(every).await;
                let Some(s) = me.upgrade() else { return };
                let live = lock(&s.timers)
                    .get(&(module.clone(), name.clone()))
                    .is_some_and(|t| t.generation == generation);
                if !live {
                    return;
                }
                s.deliver(&module, &Event::Timer(name.clone()));
            }
        });
    }

    /// Hand `event` to `module` (its current version). Failures are logged and counted.
    fn deliver(&self, module: &str, event: &Event) {
        let Some(core) = self.core() else { return };
        let outcome = match core.registry.get(module) {
            Some(m) => m.on_event(event),
            None => Err(weir_wasm::ModuleFailure::Error(format!(
                "module {module} is not loaded"
            ))),
        };
        match outcome {
            Ok(()) => inc(&core.stats.module_events),
            Err(failure) => {
                inc(&core.stats.module_failures);
                tracing::warn!(module, failure = %failure, "module event failed");
            }
        }
    }

    fn take_slot(&self, module: &str, http: bool) -> Result<(), String> {
        let mut m = lock(&self.in_flight);
        let e = m.entry(module.to_string()).or_insert((0, 0));
        let (n, max) = if http {
            (&mut e.1, MAX_HTTP)
        } else {
            (&mut e.0, MAX_REQUESTS)
        };
        if *n >= max {
            return Err(format!("more than {max} requests in flight"));
        }
        *n += 1;
        Ok(())
    }

    fn give_slot(&self, module: &str, http: bool) {
        let mut m = lock(&self.in_flight);
        if let Some(e) = m.get_mut(module) {
            let n = if http { &mut e.1 } else { &mut e.0 };
            *n = n.saturating_sub(1);
            if *e == (0, 0) {
                m.remove(module);
            }
        }
    }

    /// A transaction ended: tell the modules watching it.
    pub(crate) fn transaction_ended(self: &Arc<Self>, tx: TxId) {
        if self.watched.load(Ordering::Relaxed) == 0 {
            return;
        }
        let removed = {
            let mut w = lock(&self.watchers);
            let r = w.remove(&tx);
            self.watched.store(w.len(), Ordering::Relaxed);
            r
        };
        let Some(modules) = removed else {
            return;
        };
        let Some(core) = self.core() else { return };
        let me = self.clone();
        core.runtime.spawn(async move {
            for m in modules {
                me.deliver(&m, &Event::TransactionDone(tx.as_u64()));
            }
        });
    }

    /// Whether some module watches `tx` (its context is then kept for later branches).
    pub(crate) fn is_watched(&self, tx: TxId) -> bool {
        self.watched.load(Ordering::Relaxed) > 0 && lock(&self.watchers).contains_key(&tx)
    }
}

impl Services for ModuleServices {
    fn timer_every(&self, module: &str, name: &str, every: Duration) -> Result<(), String> {
        let key = (module.to_string(), name.to_string());
        let generation = {
            let mut timers = lock(&self.timers);
            if let Some(t) = timers.get_mut(&key) {
                // Running already (another instance's init): only re-time it.
                t.every = every;
                return Ok(());
            }
            if timers.keys().filter(|(m, _)| m == module).count() >= MAX_TIMERS {
                return Err(format!("a module may have at most {MAX_TIMERS} timers"));
            }
            let generation = self.generation.fetch_add(1, Ordering::Relaxed);
            timers.insert(key.clone(), TimerSlot { every, generation });
            generation
        };
        // Before attach the timer waits in the table; attach starts it.
        if let (Some(core), Some(me)) = (self.core(), self.me()) {
            me.spawn_timer(&core, key.0, key.1, generation);
        }
        Ok(())
    }

    fn timer_cancel(&self, module: &str, name: &str) -> bool {
        lock(&self.timers)
            .remove(&(module.to_string(), name.to_string()))
            .is_some()
    }

    fn send_request(&self, module: &str, req: OutgoingRequest, tag: String) -> Result<u64, String> {
        let core = self.core().ok_or("the proxy is not running yet")?;
        let me = self.me().ok_or("the proxy is stopping")?;
        self.take_slot(module, false)?;
        let id = self.next_id();
        let module = module.to_string();
        inc(&core.stats.module_requests);
        core.uac_send(id, req, move |(status, reason, headers)| {
            me.give_slot(&module, false);
            me.deliver(
                &module,
                &Event::Response {
                    id,
                    tag,
                    status,
                    reason,
                    headers,
                },
            );
        });
        Ok(id)
    }

    fn tx_state(&self, tx: u64) -> TxState {
        let Some(core) = self.core() else {
            return TxState::Gone;
        };
        let tx = TxId::from_u64(tx);
        match (core.tsx.is_answered(tx), core.tsx.is_cancelled(tx)) {
            (None, _) | (_, None) => TxState::Gone,
            (_, Some(true)) => TxState::Cancelled,
            (Some(true), _) => TxState::Answered,
            (Some(false), Some(false)) => TxState::Pending,
        }
    }

    fn add_branch(&self, tx: u64, target: BranchTarget) -> Result<(), String> {
        let core = self.core().ok_or("the proxy is not running yet")?;
        core.add_branches(TxId::from_u64(tx), vec![target])
    }

    fn append_contacts(&self, tx: u64, aor: &str, contact: Option<&str>) -> Result<u32, String> {
        let core = self.core().ok_or("the proxy is not running yet")?;
        core.append_contacts(TxId::from_u64(tx), aor, contact)
    }

    fn watch(&self, module: &str, tx: u64) -> bool {
        let Some(core) = self.core() else {
            return false;
        };
        let id = TxId::from_u64(tx);
        if core.tsx.is_cancelled(id).is_none() {
            return false;
        }
        let mut w = lock(&self.watchers);
        let list = w.entry(id).or_default();
        if !list.iter().any(|m| m == module) {
            if list.len() >= MAX_WATCHERS {
                return false;
            }
            list.push(module.to_string());
        }
        self.watched.store(w.len(), Ordering::Relaxed);
        true
    }

    fn location(&self, aor: &str) -> Result<Vec<LocationBinding>, String> {
        let core = self.core().ok_or("the proxy is not running yet")?;
        let registrar = core
            .registrar
            .as_ref()
            .ok_or("no registrar in this proxy")?;
        match registrar.lookup(aor, now_ms()) {
            Lookup::Found(targets) => Ok(targets
                .into_iter()
                .map(|t| LocationBinding {
                    contact: t.uri,
                    destination: t.destination,
                    path: t.route,
                    instance: t.instance,
                    q: t.q,
                    expires_at_ms: t.expires_at_ms,
                    params: t.params,
                })
                .collect()),
            Lookup::NotFound | Lookup::NoBinding => Ok(Vec::new()),
            Lookup::Error(e) => Err(format!("location store: {e}")),
        }
    }

    fn http_send(&self, module: &str, req: HttpRequest, tag: String) -> Result<u64, String> {
        let core = self.core().ok_or("the proxy is not running yet")?;
        let me = self.me().ok_or("the proxy is stopping")?;
        self.take_slot(module, true)?;
        let id = self.next_id();
        let module = module.to_string();
        let client = self.http.clone();
        inc(&core.stats.module_http_requests);
        core.runtime.spawn(async move {
            let mut r = weir_http::HttpRequest::new(req.method, req.url);
            r.headers = req.headers;
            r.body = req.body;
            let response = match tokio::time::timeout(req.timeout, client.send(r)).await {
                Ok(Ok(resp)) => Ok(HttpResponse {
                    status: resp.status,
                    headers: resp.headers,
                    body: resp.body,
                }),
                Ok(Err(e)) => Err(e.to_string()),
                Err(_) => Err("timed out".to_string()),
            };
            me.give_slot(&module, true);
            me.deliver(&module, &Event::Http { id, tag, response });
        });
        Ok(id)
    }
}

impl ModuleServices {
    /// This object as an `Arc` (through the core, which holds it weakly).
    fn me(&self) -> Option<Arc<ModuleServices>> {
        self.core()
            .and_then(|c| c.services.get().and_then(Weak::upgrade))
    }
}
