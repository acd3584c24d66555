//! The transaction table: bounded, sharded by key hash, called synchronously from the
//! proxy's receive threads and from the timer task.

use std::collections::HashMap;

use hashbrown::HashTable;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};

use tokio::time::Instant;
use weir_message::{Message, Method};

use crate::build::{local_reply, CANCELING_REASON, NO_MORE_BRANCHES_REASON};
use crate::cell::{AckMatch, Cell, ClientRef, Fx};
use crate::config::{TableConfig, TimerConfig};
use crate::driver::{TimerClock, Wheel};
use crate::error::{Error, Result};
use crate::key::{BranchSuffix, ClientKey, IdHash, Peer, PeerHash, ServerKey, TxId};

// === Types ===

/// Something the caller must do after a table call: send a message, or react to an
/// event. Timers are not among them: the table queues those itself (see
/// [`run_timers`](crate::run_timers)).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Output {
    /// Send this response upstream, to where its top Via says (the request came from
    /// `to`).
    Response {
        /// Transaction.
        tx: TxId,
        /// The peer the request came from (listener and transport to answer on).
        to: Peer,
        /// The response (shared with the server transaction, which keeps the last
        /// one for retransmission).
        response: Arc<Message>,
    },
    /// Send this request on a branch: the forwarded request, its retransmission, our
    /// ACK of a non-2xx final, or the branch's CANCEL.
    Request {
        /// Transaction.
        tx: TxId,
        /// Branch index.
        branch: usize,
        /// Where the branch goes.
        to: Peer,
        /// The request (shared with the client transaction, which keeps it for
        /// retransmission and for its ACK and CANCEL).
        request: Arc<Message>,
    },
    /// A branch ended without success (a final >= 300, or a timeout: 408, or 487 once
    /// cancelled). Kamailio's `tm:branch-failure` event: a module may react, e.g. add
    /// a branch to another flow on 430/477.
    BranchFailure {
        /// Transaction.
        tx: TxId,
        /// Branch index.
        branch: usize,
        /// The branch's final status.
        code: u16,
        /// It was a local timeout.
        timeout: bool,
    },
    /// Every branch failed and the failure hook was armed
    /// ([`TransactionTable::arm_failure`]): run the failure chain, then call
    /// [`TransactionTable::forward`] (a new serial leg), [`TransactionTable::reply`] or
    /// [`TransactionTable::relay_best`].
    Failure {
        /// Transaction.
        tx: TxId,
        /// Status of the best final so far.
        code: u16,
    },
    /// The transaction is over and was removed from the table.
    Terminated {
        /// Transaction.
        tx: TxId,
    },
}

/// What the table did with a request.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum RequestOutcome {
    /// A new transaction: route the request, then [`TransactionTable::forward`],
    /// [`TransactionTable::reply`] or [`TransactionTable::release`].
    New(TxId),
    /// A retransmission of a live request: absorbed (the last response, if any, is in
    /// the outputs).
    Retransmission(TxId),
    /// The ACK of a non-2xx final: hop-by-hop, absorbed.
    AckAbsorbed(TxId),
    /// Not for the table: an ACK of a 2xx (or of nothing we know). Forward it
    /// statelessly, end to end.
    Stateless,
    /// A CANCEL found its INVITE: answered 200, the branches are being cancelled.
    Cancelled {
        /// The INVITE's transaction.
        invite: TxId,
    },
    /// A CANCEL found no INVITE: answered 481, and remembered for `wt_timer` so the
    /// INVITE, should it arrive late, is answered 487.
    CancelUnmatched,
    /// An INVITE whose CANCEL came first: answered 487, not to be routed.
    CancelledBeforeArrival(TxId),
}

/// Result of [`TransactionTable::on_request`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Handled {
    /// What happened.
    pub outcome: RequestOutcome,
    /// What to send now.
    pub outputs: Vec<Output>,
}

/// A response that passed its client transaction: run the reply chain over
/// `response` (our Via is already removed), then hand it back with
/// [`TransactionTable::relay`]. Finals must be relayed; a provisional the chain drops
/// may simply not be.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct BranchResponse {
    /// Transaction.
    pub tx: TxId,
    /// Branch index.
    pub branch: usize,
    /// The response.
    pub response: Message,
}

/// What the table did with a response.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ResponseOutcome {
    /// No client transaction matches: the caller may relay it statelessly (§16.7 and
    /// RFC 6026 for a 2xx whose transaction ended).
    Unmatched(Message),
    /// A retransmission, or the answer to our CANCEL: nothing more to do.
    Absorbed,
    /// For the reply chain, then [`TransactionTable::relay`].
    Branch(BranchResponse),
}

/// One branch to fork to: the request exactly as it should leave (our Via on top, with
/// a branch unique to this target) and where it goes.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Target {
    /// The request.
    pub request: Message,
    /// Its destination.
    pub to: Peer,
}

struct Tombstone {
    call_id: String,
    cseq: u32,
    until: Instant,
}

/// One entry of a shard's server index.
#[derive(Clone, Copy)]
struct ServerEntry {
    hash: u64,
    tx: TxId,
}

/// Whether a server index entry is that of the transaction keyed `key` (of hash
/// `hash`): the key is compared in the entry's cell.
fn keyed<'a>(
    cells: &'a HashMap<TxId, Box<Cell>, IdHash>,
    key: &'a ServerKey,
    hash: u64,
) -> impl Fn(&ServerEntry) -> bool + 'a {
    move |e| e.hash == hash && cells.get(&e.tx).is_some_and(|c| c.key == *key)
}

struct Shard {
    /// This shard's index (part of every id it hands out).
    index: usize,
    next_seq: u64,
    /// Boxed: a cell is some 870 bytes, and the map's buckets stay small (fewer cache
    /// lines per probe, a pointer moved on insert, remove and rehash).
    cells: HashMap<TxId, Box<Cell>, IdHash>,
    /// Server transactions by the hash of their key ([`ServerKey::table_hash`]); the key
    /// itself is compared in the cell, so the index holds no copy of it and a reap
    /// removes the entry by id, without hashing or comparing strings.
    server: HashTable<ServerEntry>,
    client: HashMap<ClientKey, ClientRef, PeerHash>,
    tombstones: HashMap<ServerKey, Tombstone, PeerHash>,
    /// The timer queue of this shard's transactions.
    wheel: Wheel,
}

/// All live transactions.
pub struct TransactionTable {
    cfg: Arc<TableConfig>,
    shards: Box<[Mutex<Shard>]>,
    len: AtomicUsize,
    clock: TimerClock,
    /// Random per table; part of every To tag we generate.
    tag_seed: u32,
}

impl std::fmt::Debug for TransactionTable {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TransactionTable")
            .field("len", &self.len())
            .field("capacity", &self.cfg.capacity)
            .finish_non_exhaustive()
    }
}

/// 32 random bits from the standard library's per-process hash keys (no RNG dependency
/// for a tag that only needs to differ between runs).
fn random_u32() -> u32 {
    use std::hash::{BuildHasher, Hasher};
    let mut h = std::collections::hash_map::RandomState::new().build_hasher();
    h.write_u64(0x5765_6972);
    // Truncation intended: 32 bits are enough to tell runs apart.
    (h.finish() & 0xffff_ffff) as u32
}

// === Shard ===

impl Shard {
    fn alloc_id(&mut self) -> TxId {
        self.next_seq = self.next_seq.wrapping_add(1);
        TxId::new(self.index, self.next_seq)
    }

    /// The live server transaction whose key is `key` (of hash `hash`).
    fn server_tx(&self, key: &ServerKey, hash: u64) -> Option<TxId> {
        self.server
            .find(hash, keyed(&self.cells, key, hash))
            .map(|e| e.tx)
    }

    /// Index `tx` under `key` (of hash `hash`), before its cell is in `cells`. A live
    /// transaction with the same key (which the caller did not match as a
    /// retransmission) gives the key up to the new one, as a map insert would.
    fn index_server(&mut self, key: &ServerKey, hash: u64, tx: TxId) {
        let Shard { server, cells, .. } = self;
        match server.find_mut(hash, keyed(cells, key, hash)) {
            Some(e) => e.tx = tx,
            None => {
                server.insert_unique(hash, ServerEntry { hash, tx }, |e| e.hash);
            }
        }
    }

    /// A request matching a live server transaction: the last reply goes out again.
    fn retransmission(
        &mut self,
        key: &ServerKey,
        hash: u64,
        req: &Message,
        now: Instant,
        len: &AtomicUsize,
        fx: &mut Fx,
    ) -> Option<TxId> {
        let tx = self.server_tx(key, hash)?;
        if let Some(c) = self.cells.get_mut(&tx) {
            c.on_retransmission(req, now, fx);
        }
        self.reap(tx, len, fx);
        Some(tx)
    }

    /// Remove `tx` if all its machines are over; the removed cell is the caller's to
    /// drop (the timer driver frees them after releasing the lock).
    fn reap(&mut self, tx: TxId, len: &AtomicUsize, fx: &mut Fx) -> Option<Box<Cell>> {
        if !self.cells.get(&tx).is_some_and(|c| c.is_done()) {
            return None;
        }
        let mut cell = self.cells.remove(&tx)?;
        // By id: when a newer transaction took the key over, its entry stays.
        if let Ok(entry) = self.server.find_entry(cell.key_hash, |e| e.tx == tx) {
            entry.remove();
        }
        len.fetch_sub(1, Ordering::AcqRel);
        fx.dead_keys
            .extend(cell.take_client_keys().map(|k| (k, tx)));
        fx.out.push(Output::Terminated { tx });
        tracing::trace!(%tx, "transaction removed");
        Some(cell)
    }

    /// Queue the deadlines collected under this shard's lock; the earliest is kept in
    /// `fx` to wake the driver with once the lock is released.
    fn queue_timers(&mut self, fx: &mut Fx) {
        for (at, tx) in fx.timers.drain(..) {
            self.wheel.push(at, tx);
            fx.earliest = Some(fx.earliest.map_or(at, |e| e.min(at)));
        }
    }

    /// A live memory of a CANCEL that came before this INVITE? It is used up.
    fn take_tombstone(&mut self, key: &ServerKey, req: &Message, now: Instant) -> bool {
        let Some(t) = self.tombstones.get(key) else {
            return false;
        };
        let hit = t.until > now
            && Some(t.call_id.as_str()) == req.call_id()
            && req.cseq().is_ok_and(|c| c.seq == t.cseq);
        if hit || t.until <= now {
            self.tombstones.remove(key);
        }
        hit
    }

    fn remember_cancel(
        &mut self,
        key: ServerKey,
        req: &Message,
        until: Instant,
        now: Instant,
        cap: usize,
    ) {
        if self.tombstones.len() >= cap {
            self.tombstones.retain(|_, t| t.until > now);
        }
        if self.tombstones.len() >= cap {
            // Full of live entries: this race goes unprotected rather than unbounded.
            return;
        }
        let Ok(cseq) = req.cseq() else { return };
        self.tombstones.insert(
            key,
            Tombstone {
                call_id: req.call_id().unwrap_or_default().to_string(),
                cseq: cseq.seq,
                until,
            },
        );
    }
}

// === TransactionTable ===

impl TransactionTable {
    /// An empty table.
    pub fn new(cfg: TableConfig) -> TransactionTable {
        let n = cfg.shards.clamp(1, 1 << TxId::SHARD_BITS);
        let clock = TimerClock::new(cfg.timer_resolution);
        TransactionTable {
            shards: (0..n)
                .map(|index| {
                    Mutex::new(Shard {
                        index,
                        next_seq: 0,
                        cells: HashMap::default(),
                        server: HashTable::new(),
                        client: HashMap::default(),
                        tombstones: HashMap::default(),
                        wheel: Wheel::new(clock.base()),
                    })
                })
                .collect(),
            clock,
            cfg: Arc::new(cfg),
            len: AtomicUsize::new(0),
            tag_seed: random_u32(),
        }
    }

    /// Live transactions (the gauge to export).
    pub fn len(&self) -> usize {
        self.len.load(Ordering::Acquire)
    }

    /// No live transactions.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The configured capacity.
    pub fn capacity(&self) -> usize {
        self.cfg.capacity
    }

    /// The configuration.
    pub fn config(&self) -> &TableConfig {
        &self.cfg
    }

    /// The clock of the table's timers ([`run_timers`](crate::run_timers) sleeps on it).
    pub(crate) fn clock(&self) -> &TimerClock {
        &self.clock
    }

    /// When the timer driver wakes next: the earliest queued deadline on the
    /// resolution grid.
    pub fn next_wake(&self) -> Option<Instant> {
        (0..self.shards.len())
            .filter_map(|i| self.lock(i).wheel.next_deadline())
            .min()
            .map(|at| self.clock.wake_at(at))
    }

    /// Entries in the server index.
    #[cfg(test)]
    pub(crate) fn server_entries(&self) -> usize {
        (0..self.shards.len())
            .map(|i| self.lock(i).server.len())
            .sum()
    }

    /// Client keys in the index (those of branches that do not name their
    /// transaction, see [`BranchSuffix`]).
    #[cfg(test)]
    pub(crate) fn indexed_client_keys(&self) -> usize {
        (0..self.shards.len())
            .map(|i| self.lock(i).client.len())
            .sum()
    }

    /// Entries in the timer queues, stale ones included (at most about two per live
    /// transaction once swept).
    pub fn timer_entries(&self) -> usize {
        (0..self.shards.len())
            .map(|i| self.lock(i).wheel.len())
            .sum()
    }

    /// Fire the transactions due at `now` (called by [`run_timers`](crate::run_timers)):
    /// per shard, in batches under its lock, then what they produced to `sink`. The
    /// transactions that ended are freed after the lock is released (`dead`, empty
    /// between calls, keeps its room), not while the receive threads wait for it.
    // Boxed cells: the table and `dead` move a pointer, not the 870-byte cell.
    #[allow(clippy::vec_box)]
    pub(crate) fn fire_due(
        &self,
        now: Instant,
        due: &mut Vec<(Instant, TxId)>,
        dead: &mut Vec<Box<Cell>>,
        sink: &mut impl FnMut(Vec<Output>),
    ) {
        /// Transactions fired per hold of a shard lock.
        const BATCH: usize = 128;
        for i in 0..self.shards.len() {
            loop {
                let mut fx = Fx::default();
                let more = {
                    let mut guard = self.lock(i);
                    let shard = &mut *guard;
                    let more = shard.wheel.pop_due(now, BATCH, due);
                    for (at, tx) in due.drain(..) {
                        if let Some(c) = shard.cells.get_mut(&tx) {
                            c.fire(at, now, &mut fx);
                            dead.extend(shard.reap(tx, &self.len, &mut fx));
                        }
                    }
                    shard.queue_timers(&mut fx);
                    let Shard { wheel, cells, .. } = shard;
                    wheel.compact(cells.len(), |at, tx| {
                        cells.get(&tx).is_some_and(|c| c.queued_at() == Some(at))
                    });
                    more
                };
                dead.clear();
                // The driver looks for its next wake-up after this pass: what it
                // queued itself needs no notification (which would only wake it
                // again at once, for nothing).
                fx.earliest = None;
                let out = self.settle(fx);
                if !out.is_empty() {
                    sink(out);
                }
                if !more {
                    break;
                }
            }
        }
    }

    fn shard_of(&self, hash: u64) -> usize {
        // Shard count <= 256: the modulo fits in usize.
        (hash % self.shards.len() as u64) as usize
    }

    fn lock(&self, i: usize) -> MutexGuard<'_, Shard> {
        // There is at least one shard, so the modulo keeps the index in bounds; ids
        // and hashes map below `len` anyway. A poisoned shard is still consistent
        // (every mutation completes before anything can panic), so keep using it.
        self.shards[i % self.shards.len()]
            .lock()
            .unwrap_or_else(|e| e.into_inner())
    }

    fn reserve(&self) -> Result<()> {
        let cap = self.cfg.capacity;
        self.len
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |n| {
                (n < cap).then_some(n + 1)
            })
            .map(|_| ())
            .map_err(|_| Error::Full { capacity: cap })
    }

    /// Create a cell for `req` in `shard` (locked by the caller); `hash` is the key's
    /// [`ServerKey::table_hash`].
    #[allow(clippy::too_many_arguments)]
    fn create(
        &self,
        shard: &mut Shard,
        key: ServerKey,
        hash: u64,
        req: &Message,
        from: Peer,
        now: Instant,
        fx: &mut Fx,
    ) -> Result<TxId> {
        self.reserve()?;
        let id = shard.alloc_id();
        shard.index_server(&key, hash, id);
        let mut cell = Box::new(Cell::new(
            id,
            key,
            req,
            from,
            self.cfg.clone(),
            self.tag_seed,
            now,
            fx,
        ));
        cell.key_hash = hash;
        shard.cells.insert(id, cell);
        Ok(id)
    }

    /// Perform what was collected under a lock: index updates, timers; return outputs.
    fn settle(&self, fx: Fx) -> Vec<Output> {
        for (k, r) in fx.new_keys {
            self.lock(self.shard_of(k.shard_hash())).client.insert(k, r);
        }
        for (k, tx) in fx.dead_keys {
            let mut s = self.lock(self.shard_of(k.shard_hash()));
            if s.client.get(&k).is_some_and(|r| r.tx == tx) {
                s.client.remove(&k);
            }
        }
        if let Some(at) = fx.earliest {
            self.clock.queued(at);
        }
        fx.out
    }

    /// Run `f` on a live transaction, reaping it afterwards if it is over.
    fn with_cell<T>(
        &self,
        tx: TxId,
        f: impl FnOnce(&mut Cell, &mut Fx) -> Result<T>,
    ) -> Result<(T, Vec<Output>)> {
        let mut fx = Fx::default();
        let r = {
            let mut shard = self.lock(tx.shard());
            let cell = shard.cells.get_mut(&tx).ok_or(Error::NotFound)?;
            let r = f(cell, &mut fx);
            shard.reap(tx, &self.len, &mut fx);
            shard.queue_timers(&mut fx);
            r
        };
        let out = self.settle(fx);
        r.map(|v| (v, out))
    }

    /// A request arrived from `from`. Retransmissions are absorbed, ACKs of non-2xx
    /// finals absorbed, CANCELs answered and applied; a new request gets a transaction
    /// (and, for INVITE, a 100). `Err(Full)` asks for a stateless 503.
    pub fn on_request(&self, req: &Message, from: Peer, now: Instant) -> Result<Handled> {
        let method = req
            .method()
            .ok_or(Error::WrongKind("response where a request was expected"))?
            .clone();
        let key = ServerKey::of(req)?;
        let hash = key.table_hash();
        let si = self.shard_of(key.shard_hash());
        let mut fx = Fx::default();
        let outcome = {
            let mut shard = self.lock(si);
            let shard = &mut *shard;
            let outcome = match method {
                Method::Ack => Ok(self.on_ack(shard, &key, hash, req, now, &mut fx)),
                Method::Cancel => self.on_cancel(shard, key, hash, req, from, now, &mut fx),
                _ => self.on_other(shard, key, hash, req, from, now, &mut fx),
            };
            shard.queue_timers(&mut fx);
            outcome
        };
        // Settled even on error: whatever was created must get its timers.
        let outputs = self.settle(fx);
        outcome.map(|outcome| Handled { outcome, outputs })
    }

    fn on_ack(
        &self,
        shard: &mut Shard,
        key: &ServerKey,
        hash: u64,
        req: &Message,
        now: Instant,
        fx: &mut Fx,
    ) -> RequestOutcome {
        let Some(tx) = shard.server_tx(key, hash) else {
            return RequestOutcome::Stateless;
        };
        let m = shard.cells.get_mut(&tx).map(|c| c.on_ack(req, now, fx));
        shard.reap(tx, &self.len, fx);
        match m {
            Some(AckMatch::Absorbed) => RequestOutcome::AckAbsorbed(tx),
            _ => RequestOutcome::Stateless,
        }
    }

    /// Any request but ACK and CANCEL.
    #[allow(clippy::too_many_arguments)]
    fn on_other(
        &self,
        shard: &mut Shard,
        key: ServerKey,
        hash: u64,
        req: &Message,
        from: Peer,
        now: Instant,
        fx: &mut Fx,
    ) -> Result<RequestOutcome> {
        if let Some(tx) = shard.retransmission(&key, hash, req, now, &self.len, fx) {
            return Ok(RequestOutcome::Retransmission(tx));
        }
        let invite = req.method() == Some(&Method::Invite);
        if invite && shard.take_tombstone(&key, req, now) {
            let tx = self.create(shard, key, hash, req, from, now, fx)?;
            if let Some(c) = shard.cells.get_mut(&tx) {
                c.reply_cancelled(now, fx);
            }
            shard.reap(tx, &self.len, fx);
            tracing::debug!(%tx, "INVITE arrived after its CANCEL: 487");
            return Ok(RequestOutcome::CancelledBeforeArrival(tx));
        }
        let tx = self.create(shard, key, hash, req, from, now, fx)?;
        if invite && self.cfg.auto_inv_100 {
            if let Some(c) = shard.cells.get_mut(&tx) {
                c.send_trying(now, fx);
            }
        }
        Ok(RequestOutcome::New(tx))
    }

    #[allow(clippy::too_many_arguments)]
    fn on_cancel(
        &self,
        shard: &mut Shard,
        key: ServerKey,
        hash: u64,
        req: &Message,
        from: Peer,
        now: Instant,
        fx: &mut Fx,
    ) -> Result<RequestOutcome> {
        // A retransmitted CANCEL gets its answer again.
        if let Some(tx) = shard.retransmission(&key, hash, req, now, &self.len, fx) {
            return Ok(RequestOutcome::Retransmission(tx));
        }
        let ikey = key.with_method(Method::Invite);
        let invite = shard
            .server_tx(&ikey, ikey.table_hash())
            .filter(|tx| shard.cells.get(tx).is_some_and(|c| c.is_invite()));
        let Some(inv) = invite else {
            // "Fast hang-up": answer 481 and remember, so a late INVITE gets 487.
            let until = now + self.cfg.timers.wt_timer;
            let cap = (self.cfg.max_cancel_memory / self.shards.len()).max(1);
            shard.remember_cancel(ikey, req, until, now, cap);
            let tx = self.create(shard, key, hash, req, from, now, fx)?;
            if let Some(c) = shard.cells.get_mut(&tx) {
                // The CANCEL transaction has no branches: answering it is all it does.
                // A fresh cell has sent nothing, so this cannot fail.
                let _ = c.reply(481, "", &[], now, fx);
            }
            shard.reap(tx, &self.len, fx);
            return Ok(RequestOutcome::CancelUnmatched);
        };
        let (pending, to_tag) = shard
            .cells
            .get(&inv)
            .map(|c| (c.has_pending_branches(), c.to_tag()))
            .unwrap_or_default();
        let reason = if pending {
            CANCELING_REASON
        } else {
            NO_MORE_BRANCHES_REASON
        };
        // §9.2: the 200 to the CANCEL carries the To tag of the INVITE's response.
        match self.create(shard, key, hash, req, from, now, fx) {
            Ok(tx) => {
                if let Some(c) = shard.cells.get_mut(&tx) {
                    c.set_to_tag(to_tag);
                    let _ = c.reply(200, reason, &[], now, fx);
                }
                shard.reap(tx, &self.len, fx);
            }
            // Full: answer without a transaction; a retransmitted CANCEL finds the
            // INVITE again and is answered again.
            Err(Error::Full { .. }) => fx.out.push(Output::Response {
                tx: inv,
                to: from,
                response: Arc::new(local_reply(
                    req,
                    200,
                    reason,
                    &to_tag,
                    self.cfg.server_header.as_deref(),
                )),
            }),
            Err(e) => return Err(e),
        }
        let e2e_reason = req.headers.get("Reason").map(str::to_string);
        if let Some(c) = shard.cells.get_mut(&inv) {
            c.cancel(e2e_reason, now, fx);
        }
        shard.reap(inv, &self.len, fx);
        Ok(RequestOutcome::Cancelled { invite: inv })
    }

    /// Fork `tx` to `targets` (one client transaction each). Allowed while no final has
    /// gone upstream, the request was not cancelled and no 6xx arrived; after
    /// [`Output::Failure`] this starts a new serial leg.
    pub fn forward(&self, tx: TxId, targets: Vec<Target>, now: Instant) -> Result<Vec<Output>> {
        let mut keys = Vec::with_capacity(targets.len());
        for t in &targets {
            let k = ClientKey::of_request(&t.request)?;
            // A branch naming `tx` is checked against its siblings by the cell alone.
            if BranchSuffix::tx_of(&k.branch) != Some(tx)
                && self
                    .lock(self.shard_of(k.shard_hash()))
                    .client
                    .contains_key(&k)
            {
                return Err(Error::BadBranch);
            }
            keys.push(k);
        }
        self.with_cell(tx, |c, fx| c.forward(targets, keys, now, fx))
            .map(|(_, out)| out)
    }

    /// The request of branch `branch` could not be sent (e.g. its TCP connection was
    /// refused): the branch ends at once with a local 477 (RFC 3261 §16.9, §18.4;
    /// Kamailio's status for a send error),
    /// with [`Output::BranchFailure`] and, if it was the last, the usual completion.
    /// A branch that already ended is left alone.
    pub fn transport_error(&self, tx: TxId, branch: usize, now: Instant) -> Result<Vec<Output>> {
        self.with_cell(tx, |c, fx| {
            c.on_transport_error(branch, now, fx);
            Ok(())
        })
        .map(|(_, out)| out)
    }

    /// Answer `tx` locally (`t_reply`): the table builds the reply from the request
    /// (with its To tag) and adds `headers`. A final CANCELs pending INVITE branches.
    pub fn reply(
        &self,
        tx: TxId,
        code: u16,
        reason: &str,
        headers: &[(String, String)],
        now: Instant,
    ) -> Result<Vec<Output>> {
        self.with_cell(tx, |c, fx| c.reply(code, reason, headers, now, fx))
            .map(|(_, out)| out)
    }

    /// After [`Output::Failure`]: send the best final of the last leg upstream.
    pub fn relay_best(&self, tx: TxId, now: Instant) -> Result<Vec<Output>> {
        self.with_cell(tx, |c, fx| c.finish(now, fx))
            .map(|(_, out)| out)
    }

    /// Arm the failure hook (`t_on_failure`): when every branch of the current leg has
    /// failed, [`Output::Failure`] is emitted instead of the final going upstream. It
    /// fires once; arm it again before each new leg.
    pub fn arm_failure(&self, tx: TxId) -> Result<()> {
        self.with_cell(tx, |c, _| {
            c.arm_failure();
            Ok(())
        })
        .map(|_| ())
    }

    /// Override the timers of one transaction (`t_set_fr`, `t_set_retr`,
    /// `t_set_max_lifetime`); running timers keep their deadlines.
    pub fn set_timers(&self, tx: TxId, timers: TimerConfig) -> Result<()> {
        self.with_cell(tx, |c, fx| {
            c.set_timers(timers, fx);
            Ok(())
        })
        .map(|_| ())
    }

    /// A copy of the request as sent on `branch` of `tx` (for a branch-failure hook),
    /// with the peer the transaction's request came from; `None` if either is gone (a
    /// branch that answered 2xx no longer keeps its request).
    pub fn branch_request(&self, tx: TxId, branch: usize) -> Option<(Message, Peer)> {
        self.lock(tx.shard())
            .cells
            .get(&tx)
            .and_then(|c| c.branch_request(branch))
    }

    /// How many branches `tx` has had (0 if it is gone).
    pub fn branch_count(&self, tx: TxId) -> usize {
        self.lock(tx.shard())
            .cells
            .get(&tx)
            .map_or(0, |c| c.branch_count())
    }

    /// Whether `tx` was cancelled upstream (`t_is_canceled`); `None` if it is gone.
    pub fn is_cancelled(&self, tx: TxId) -> Option<bool> {
        self.lock(tx.shard())
            .cells
            .get(&tx)
            .map(|c| c.is_cancelled())
    }

    /// Whether a final response went upstream for `tx`; `None` if it is gone.
    pub fn is_answered(&self, tx: TxId) -> Option<bool> {
        self.lock(tx.shard())
            .cells
            .get(&tx)
            .map(|c| c.is_answered())
    }

    /// Forget a new transaction the TU will not answer (a chain's `drop`). Its
    /// retransmissions will then be treated as new requests, as a stateless drop would.
    pub fn release(&self, tx: TxId) -> Result<Vec<Output>> {
        self.with_cell(tx, |c, _| c.release()).map(|(_, out)| out)
    }

    /// A response arrived. Step 1: its client transaction (retransmissions absorbed,
    /// our ACK of a non-2xx final sent, a CANCEL owed on the first provisional sent).
    pub fn on_response(&self, resp: Message, now: Instant) -> (ResponseOutcome, Vec<Output>) {
        match ClientKey::of_response(&resp) {
            Ok(key) => self.on_keyed_response(resp, key, now),
            Err(_) => (ResponseOutcome::Unmatched(resp), Vec::new()),
        }
    }

    /// [`TransactionTable::on_response`] for a caller that already has the response's
    /// key (`key` must be [`ClientKey::of_response`] of `resp`).
    pub fn on_keyed_response(
        &self,
        resp: Message,
        key: ClientKey,
        now: Instant,
    ) -> (ResponseOutcome, Vec<Output>) {
        // A branch that names its transaction: matched there, with no index lookup.
        let resp = match BranchSuffix::tx_of(&key.branch) {
            Some(tx) => match self.direct_response(tx, &key, resp, now) {
                Ok(done) => return done,
                Err(resp) => resp,
            },
            None => resp,
        };
        let found = self
            .lock(self.shard_of(key.shard_hash()))
            .client
            .get(&key)
            .copied();
        let Some(r) = found else {
            return (ResponseOutcome::Unmatched(resp), Vec::new());
        };
        let res = self.with_cell(r.tx, |c, fx| {
            Ok(c.on_branch_response(r.branch, r.role, resp, now, fx))
        });
        match res {
            Ok((Some(response), out)) => (
                ResponseOutcome::Branch(BranchResponse {
                    tx: r.tx,
                    branch: r.branch,
                    response,
                }),
                out,
            ),
            Ok((None, out)) => (ResponseOutcome::Absorbed, out),
            // The transaction ended between the index lookup and now.
            Err(_) => (ResponseOutcome::Absorbed, Vec::new()),
        }
    }

    /// [`TransactionTable::on_keyed_response`] for a branch that names `tx`; the
    /// response back if `tx` is gone or has no such branch (for the index, then the
    /// stateless path).
    // The response goes back by value, as it came: it is moved either way (`Ok` moves it
    // into the outcome), and boxing it would add an allocation per response.
    #[allow(clippy::result_large_err)]
    fn direct_response(
        &self,
        tx: TxId,
        key: &ClientKey,
        resp: Message,
        now: Instant,
    ) -> std::result::Result<(ResponseOutcome, Vec<Output>), Message> {
        let mut fx = Fx::default();
        let (branch, response) = {
            let mut shard = self.lock(tx.shard());
            let Some(cell) = shard.cells.get_mut(&tx) else {
                return Err(resp);
            };
            let Some((branch, role)) = cell.find_branch(key) else {
                return Err(resp);
            };
            let response = cell.on_branch_response(branch, role, resp, now, &mut fx);
            shard.reap(tx, &self.len, &mut fx);
            shard.queue_timers(&mut fx);
            (branch, response)
        };
        let out = self.settle(fx);
        Ok(match response {
            Some(response) => (
                ResponseOutcome::Branch(BranchResponse {
                    tx,
                    branch,
                    response,
                }),
                out,
            ),
            None => (ResponseOutcome::Absorbed, out),
        })
    }

    /// Step 2: the response (after the reply chain) goes through the response context:
    /// provisionals and 2xx up at once, finals collected, siblings CANCELled.
    pub fn relay(&self, br: BranchResponse, now: Instant) -> Vec<Output> {
        self.with_cell(br.tx, |c, fx| {
            c.relay(br.branch, br.response, now, fx);
            Ok(())
        })
        .map(|(_, out)| out)
        .unwrap_or_default()
    }

    /// Both steps with no reply chain in between.
    pub fn on_response_relay(&self, resp: Message, now: Instant) -> (ResponseOutcome, Vec<Output>) {
        let (outcome, mut out) = self.on_response(resp, now);
        if let ResponseOutcome::Branch(br) = &outcome {
            out.extend(self.relay(br.clone(), now));
        }
        (outcome, out)
    }
}
