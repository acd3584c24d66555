//! Weir's proxy core: route selection, module chains and RFC 3261 §16 request
//! forwarding, stateless (§16.11) for now.
//!
//! This crate decides what happens to each message the transports hand over: it parses
//! and sanity-checks it, answers what must be answered locally (400/483/482/513, OPTIONS
//! keep-alives to the proxy itself), selects the route, folds the route's module chain
//! into one verdict, and forwards with Via, Max-Forwards, Record-Route and Route handled
//! as §16 says. Only this crate writes Via, branch and Max-Forwards; modules see a view
//! and return verdicts. It never blocks: the per-message path is synchronous, and the
//! rare work that must wait (DNS) is spawned on the runtime.
#![forbid(unsafe_code)]
#![deny(missing_docs)]
#![cfg_attr(test, allow(clippy::unwrap_used, clippy::expect_used))]

mod chain;
mod ident;
mod location;
mod request;
mod resolve;
mod response;
mod services;
mod stateful;
mod stats;
mod uac;

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::atomic::AtomicU64;
use std::sync::{Arc, Mutex, Weak};

use bytes::Bytes;
use weir_config::{Config, Route};
use weir_message::{Limits, Message, Uri};
use weir_transaction::{IdHash, TransactionTable, TxId};
use weir_transport::{Destination, Handler, Inbound, ListenerId, Transport, Transports};
use weir_wasm::ModuleRegistry;

pub use ident::Identity;
pub use services::ModuleServices;
pub use stats::{Stats, StatsSnapshot};

// === Core ===

/// The proxy: shared by every transport thread and task.
pub struct Core {
    me: Weak<Core>,
    routes: Vec<Route>,
    /// Each route's next-hop groups, parsed once.
    next_hops: Vec<Vec<Vec<Uri>>>,
    /// Transactions of stateful routes.
    tsx: Arc<TransactionTable>,
    /// Whether any route is stateful (responses then go to the table first).
    has_stateful: bool,
    /// What a stateful transaction needs for failover, by transaction.
    tx_ctx: Mutex<HashMap<TxId, Arc<stateful::TxCtx>, IdHash>>,
    /// Makes stateful branches unique.
    branch_seq: AtomicU64,
    /// The registrar and location service, when configured.
    registrar: Option<Arc<weir_registrar::Registrar>>,
    /// Modules told of registrar binding events (`[events] binding`).
    binding_modules: Vec<weir_config::ChainEntry>,
    /// Lookup targets of live transactions, for `unregister_on`.
    lookup_branches: Mutex<HashMap<TxId, location::LookupBranches, IdHash>>,
    /// Transactions modules keep pending (verdict `wait`).
    parked: Mutex<HashMap<TxId, stateful::Parked, IdHash>>,
    /// `parked.len()`, read without the lock on the per-transaction path.
    parked_len: std::sync::atomic::AtomicUsize,
    /// Module-originated requests in flight.
    uac: uac::Uac,
    /// The module services, once attached.
    services: std::sync::OnceLock<Weak<ModuleServices>>,
    registry: Arc<ModuleRegistry>,
    transports: Arc<Transports>,
    ident: Identity,
    limits: Limits,
    server_header: String,
    udp_mtu: usize,
    runtime: tokio::runtime::Handle,
    stats: Stats,
    /// Dropped with the core: the timer thread then stops.
    _timer_stop: tokio::sync::oneshot::Sender<()>,
}

impl std::fmt::Debug for Core {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Core")
            .field("routes", &self.routes.len())
            .finish_non_exhaustive()
    }
}

/// The context a message was received in.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Rx {
    pub src: SocketAddr,
    pub listener: ListenerId,
    pub transport: Transport,
    /// The stream connection it arrived on (0: UDP, or not known).
    pub conn: u64,
}

impl Core {
    /// Build the core over bound transports and loaded modules. Call
    /// [`Transports::start`] with it (as a [`Handler`]) to begin serving. Must be called
    /// inside a tokio runtime.
    pub fn new(
        config: &Config,
        transports: Arc<Transports>,
        registry: Arc<ModuleRegistry>,
        registrar: Option<Arc<weir_registrar::Registrar>>,
    ) -> Arc<Core> {
        let ident = Identity::new(transports.listeners(), &config.proxy.aliases);
        let (timer_stop, stopped) = tokio::sync::oneshot::channel();
        let core = Arc::new_cyclic(|me| Core {
            me: me.clone(),
            routes: config.routes.clone(),
            next_hops: config
                .routes
                .iter()
                .map(|r| {
                    r.next_hops
                        .iter()
                        .map(|g| g.iter().filter_map(|h| Uri::parse(h).ok()).collect())
                        .collect()
                })
                .collect(),
            tsx: Arc::new(TransactionTable::new(stateful::table_config(config))),
            has_stateful: config
                .routes
                .iter()
                .any(|r| r.mode == weir_config::Mode::Stateful),
            tx_ctx: Mutex::new(HashMap::default()),
            branch_seq: AtomicU64::new(1),
            registrar,
            binding_modules: config.events.binding.clone(),
            lookup_branches: Mutex::new(HashMap::default()),
            parked: Mutex::new(HashMap::default()),
            parked_len: std::sync::atomic::AtomicUsize::new(0),
            uac: uac::Uac::default(),
            services: std::sync::OnceLock::new(),
            registry,
            transports,
            ident,
            limits: Limits {
                max_message_size: config.proxy.max_message_size,
                ..Limits::default()
            },
            server_header: config.proxy.server_header.clone(),
            udp_mtu: config.proxy.udp_mtu,
            runtime: tokio::runtime::Handle::current(),
            stats: Stats::default(),
            _timer_stop: timer_stop,
        });
        if core.has_stateful {
            start_timers(&core, stopped);
        }
        core
    }

    /// Transactions alive now (stateful routes).
    pub fn transactions(&self) -> usize {
        self.tsx.len()
    }

    /// Counters.
    pub fn stats(&self) -> &Stats {
        &self.stats
    }

    /// The transports this core sends through.
    pub fn transports(&self) -> &Arc<Transports> {
        &self.transports
    }

    /// Send serialised bytes; false (and counted) on failure.
    pub(crate) fn send_bytes(&self, dest: Destination, listener: ListenerId, data: Bytes) -> bool {
        match self.transports.send(dest, listener, data) {
            Ok(()) => true,
            Err(e) => {
                stats::inc(&self.stats.send_failed);
                tracing::debug!(dest = %dest.addr, error = %e, "send failed");
                false
            }
        }
    }
}

/// A message in wire form. `write_to` reserves its own estimate (the lines' lengths
/// plus 128 bytes): a typical message then takes a block glibc serves from its
/// per-thread cache or small bins, where a fixed body + 1 KiB always asked for a large
/// block, whose slow path consolidates the fast bins first.
pub(crate) fn serialize(msg: &Message) -> Bytes {
    let mut out = Vec::new();
    msg.write_to(&mut out);
    Bytes::from(out)
}

impl Handler for Core {
    fn on_message(&self, msg: Inbound) {
        let rx = Rx {
            src: msg.src,
            listener: msg.listener,
            transport: msg.transport,
            conn: msg.conn,
        };
        match Message::parse_bytes(&msg.data, &self.limits) {
            Ok(m) if m.is_request() => self.on_request(m, rx),
            Ok(m) => self.on_response(m, rx),
            Err(e) => self.on_parse_error(e, rx),
        }
    }
}

/// The transaction timers run on a thread of their own (`weir-timer`), on a
/// single-threaded runtime that has nothing else to do, as Kamailio has a timer
/// process: a wake-up is one futex wait ending, not a worker of the shared runtime
/// leaving epoll and looking for work to steal from the others. What the timers
/// produce is carried out there, synchronously, as on a receive thread; whatever that
/// starts asynchronously goes to the shared runtime (`Core::runtime`). The thread ends
/// when the core is dropped. Should the thread or its runtime fail to start, the
/// timers run on the shared runtime instead.
fn start_timers(core: &Arc<Core>, stopped: tokio::sync::oneshot::Receiver<()>) {
    let timers = timer_task(core);
    let shared = core.runtime.clone();
    let spawned = std::thread::Builder::new()
        .name("weir-timer".into())
        .spawn(move || {
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_time()
                .build();
            match rt {
                Ok(rt) => rt.block_on(async move {
                    tokio::select! {
                        () = timers => {}
                        _ = stopped => {}
                    }
                }),
                Err(e) => {
                    tracing::warn!(error = %e, "no timer runtime: timers run on the shared one");
                    shared.spawn(timers);
                }
            }
        });
    if let Err(e) = spawned {
        // The closure, and the task in it, were dropped: make it again.
        tracing::warn!(error = %e, "no timer thread: timers run on the shared runtime");
        core.runtime.spawn(timer_task(core));
    }
}

/// The timer driver over the core's table, carrying out what it produces while the
/// core lives.
fn timer_task(core: &Arc<Core>) -> impl std::future::Future<Output = ()> + Send + 'static {
    let me = Arc::downgrade(core);
    weir_transaction::run_timers(core.tsx.clone(), move |out| {
        if let Some(core) = me.upgrade() {
            core.execute(out);
        }
    })
}
