//! The timer driver: a deadline queue the table fills, and a tokio task that fires due
//! timers back into the table.
//!
//! The queue keeps at most one entry per timer that matters, the earliest: re-arming a
//! timer for *later* (timer C on every provisional) adds nothing; when the old entry
//! fires early the machine re-announces its real deadline (see
//! [`Action::CancelTimer`](crate::Action::CancelTimer)). A cancelled timer is forgotten
//! (its heap entry is skipped when it comes up, instead of waking its transaction for
//! nothing), and a fired timer the machine no longer has armed is ignored anyway. So the
//! heaps grow with live transactions, not with message rates; stale entries are swept
//! out once they outnumber live ones.
//!
//! The queue is sharded like the table (a transaction's timers live in the shard of its
//! id), so the receive threads arming timers for different transactions, and the timer
//! task draining them, do not all meet on one lock.

use std::cmp::Reverse;
use std::collections::{BTreeMap, BinaryHeap, HashMap};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};

use tokio::sync::Notify;
use tokio::time::Instant;

use crate::action::Timer;
use crate::key::{IdHash, TxId};
use crate::table::{Output, TransactionTable};

/// Which timer of which part of a transaction.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Slot {
    /// The server transaction.
    Server(Timer),
    /// Branch `n`'s client transaction.
    Branch(u16, Timer),
    /// The client transaction of branch `n`'s CANCEL.
    Cancel(u16, Timer),
    /// The whole transaction's `max_inv_lifetime` / `max_noninv_lifetime`.
    Lifetime,
}

/// A timer of one transaction.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct TimerId {
    /// The transaction.
    pub tx: TxId,
    /// Which timer.
    pub slot: Slot,
}

/// Below this many entries (per shard), stale ones are left to expire.
const COMPACT_MIN: usize = 1024;

/// Shards of a queue made with [`TimerQueue::default`] (the table's default).
const DEFAULT_SHARDS: usize = 16;

/// The driver is awake (or about to look at the queue): every new deadline notifies it.
const AWAKE: u64 = u64::MAX;

/// A timer change collected under a transaction's lock: queue it for a deadline, or
/// (`None`) it was cancelled.
pub(crate) type TimerOp = (TimerId, Option<Instant>);

/// Deadlines are nanoseconds after [`TimerQueue::base`]; `at >> BUCKET_SHIFT` is the
/// far bucket of a deadline (about 1.07 s each).
const BUCKET_SHIFT: u32 = 30;

/// One second-sized bucket of far deadlines, unordered, with its earliest.
#[derive(Debug)]
struct Bucket {
    min: u64,
    entries: Vec<(u64, TimerId)>,
}

/// One shard of the queue, in two tiers. The heap holds the deadlines before
/// `horizon` (the next second or two: retransmissions, and what moved in from the
/// buckets); later ones (`fr_timer`, lifetimes, `wt_timer`) wait unordered in
/// per-second buckets, and most of them are cancelled or forgotten before their bucket
/// comes near, so they never pay for a place in the heap. The heap stays small enough
/// to stay in the cache.
#[derive(Debug, Default)]
struct Queue {
    /// 24-byte entries: (deadline, timer).
    heap: BinaryHeap<Reverse<(u64, TimerId)>>,
    /// Deadlines at or after `horizon`, by bucket.
    far: BTreeMap<u64, Bucket>,
    /// Entries in `far`.
    far_len: usize,
    /// Deadlines before this are in `heap`; a multiple of the bucket size.
    horizon: u64,
    /// Earliest deadline queued per live timer; an entry not found here is stale and
    /// skipped when it comes up. Timer ids are ours (sequence numbers), not a peer's,
    /// so a fast non-keyed hash is safe here.
    scheduled: HashMap<TimerId, u64, IdHash>,
}

impl Queue {
    fn push(&mut self, at: u64, id: TimerId) {
        if at < self.horizon {
            self.heap.push(Reverse((at, id)));
            return;
        }
        let b = self.far.entry(at >> BUCKET_SHIFT).or_insert(Bucket {
            min: at,
            entries: Vec::new(),
        });
        b.min = b.min.min(at);
        b.entries.push((at, id));
        self.far_len += 1;
    }

    /// Move the buckets that `now` reached (and the next one) into the heap, dropping
    /// their stale entries on the way.
    fn advance(&mut self, now: u64) {
        let limit = (now >> BUCKET_SHIFT).saturating_add(2);
        if self.horizon >> BUCKET_SHIFT >= limit {
            return;
        }
        self.horizon = limit << BUCKET_SHIFT;
        while let Some(entry) = self.far.first_entry() {
            if *entry.key() >= limit {
                break;
            }
            let bucket = entry.remove();
            self.far_len -= bucket.entries.len();
            for (at, id) in bucket.entries {
                if self.scheduled.get(&id) == Some(&at) {
                    self.heap.push(Reverse((at, id)));
                }
            }
        }
    }

    fn next_deadline(&self) -> Option<u64> {
        let near = self.heap.peek().map(|Reverse((at, _))| *at);
        let far = self.far.first_key_value().map(|(_, b)| b.min);
        near.into_iter().chain(far).min()
    }

    fn entries(&self) -> usize {
        self.heap.len() + self.far_len
    }

    /// Drop stale entries once they outnumber live ones.
    fn compact(&mut self) {
        if self.entries() <= COMPACT_MIN || self.entries() <= 2 * self.scheduled.len() {
            return;
        }
        let Queue {
            heap,
            far,
            far_len,
            scheduled,
            ..
        } = self;
        heap.retain(|Reverse((at, id))| scheduled.get(id) == Some(at));
        far.retain(|_, b| {
            b.entries.retain(|(at, id)| scheduled.get(id) == Some(at));
            b.min = b
                .entries
                .iter()
                .map(|(at, _)| *at)
                .min()
                .unwrap_or(u64::MAX);
            !b.entries.is_empty()
        });
        *far_len = far.values().map(|b| b.entries.len()).sum();
    }

    fn pop_due(&mut self, now: u64, due: &mut Vec<TimerId>) {
        self.advance(now);
        while let Some(Reverse((at, id))) = self.heap.peek().copied() {
            if at > now {
                break;
            }
            self.heap.pop();
            // An entry superseded by an earlier one for the same timer is stale.
            if self.scheduled.get(&id) == Some(&at) {
                self.scheduled.remove(&id);
                due.push(id);
            }
        }
    }
}

/// Deadlines waiting to fire, earliest first.
#[derive(Debug)]
pub struct TimerQueue {
    shards: Box<[Mutex<Queue>]>,
    /// The deadline the driver sleeps until, in nanoseconds after `base`; [`AWAKE`]
    /// while it is running. Only a deadline earlier than this needs to wake it.
    armed: AtomicU64,
    base: Instant,
    notify: Notify,
}

impl Default for TimerQueue {
    fn default() -> TimerQueue {
        TimerQueue::new(DEFAULT_SHARDS)
    }
}

impl TimerQueue {
    /// An empty queue with `shards` locks (at least one). A transaction's timers go to
    /// shard `id % shards`, so with as many shards as the table, one per table shard.
    pub fn new(shards: usize) -> TimerQueue {
        TimerQueue {
            shards: (0..shards.max(1))
                .map(|_| Mutex::new(Queue::default()))
                .collect(),
            armed: AtomicU64::new(AWAKE),
            base: Instant::now(),
            notify: Notify::new(),
        }
    }

    fn lock(&self, i: usize) -> MutexGuard<'_, Queue> {
        self.shards[i % self.shards.len()]
            .lock()
            .unwrap_or_else(|e| e.into_inner())
    }

    fn shard_of(&self, tx: TxId) -> usize {
        tx.shard() % self.shards.len()
    }

    fn ticks(&self, at: Instant) -> u64 {
        u64::try_from(at.saturating_duration_since(self.base).as_nanos()).unwrap_or(AWAKE - 1)
    }

    fn instant(&self, ticks: u64) -> Instant {
        self.base + std::time::Duration::from_nanos(ticks)
    }

    /// Queue `id` to fire at `at`, unless it is already queued to fire no later.
    pub fn schedule(&self, id: TimerId, at: Instant) {
        self.apply(&[(id, Some(at))]);
    }

    /// Queue or cancel several timers, in order, taking each shard's lock once per run
    /// of timers in it (a transaction's timers all share one shard). A cancelled timer
    /// is forgotten, so its heap entry is skipped instead of fired for nothing.
    pub(crate) fn apply(&self, ops: &[TimerOp]) {
        let mut earliest: Option<u64> = None;
        let mut held: Option<(usize, MutexGuard<'_, Queue>)> = None;
        for &(id, at) in ops {
            let si = self.shard_of(id.tx);
            let q = match &mut held {
                Some((i, q)) if *i == si => q,
                _ => {
                    drop(held.take());
                    &mut held.insert((si, self.lock(si))).1
                }
            };
            let Some(at) = at else {
                q.scheduled.remove(&id);
                continue;
            };
            let at = self.ticks(at);
            if q.scheduled.get(&id).is_some_and(|s| *s <= at) {
                continue;
            }
            q.scheduled.insert(id, at);
            q.push(at, id);
            earliest = Some(earliest.map_or(at, |e| e.min(at)));
        }
        if let Some((_, mut q)) = held {
            q.compact();
        }
        // Read after the pushes: either the driver's scan saw them, or it had not
        // published its deadline yet (still AWAKE) and this wakes it.
        if let Some(at) = earliest {
            if at < self.armed.load(Ordering::SeqCst) {
                self.notify.notify_one();
            }
        }
    }

    /// Forget the timers of a transaction that ended. Their heap entries become stale;
    /// a shard's heap is rebuilt once stale entries outnumber live ones, so its size
    /// follows the live timers rather than everything scheduled in the last
    /// `max_inv_lifetime`.
    pub fn forget(&self, ids: &[TimerId]) {
        let mut held: Option<(usize, MutexGuard<'_, Queue>)> = None;
        for id in ids {
            let si = self.shard_of(id.tx);
            let q = match &mut held {
                Some((i, q)) if *i == si => q,
                _ => {
                    if let Some((_, mut q)) = held.take() {
                        q.compact();
                    }
                    &mut held.insert((si, self.lock(si))).1
                }
            };
            q.scheduled.remove(id);
        }
        if let Some((_, mut q)) = held {
            q.compact();
        }
    }

    /// Remove and return every timer due at `now`.
    pub fn pop_due(&self, now: Instant) -> Vec<TimerId> {
        let mut due = Vec::new();
        self.pop_due_into(now, &mut due);
        due
    }

    /// [`TimerQueue::pop_due`] into a buffer the caller reuses.
    fn pop_due_into(&self, now: Instant, due: &mut Vec<TimerId>) {
        let now = self.ticks(now);
        for i in 0..self.shards.len() {
            self.lock(i).pop_due(now, due);
        }
    }

    /// The earliest queued deadline.
    pub fn next_deadline(&self) -> Option<Instant> {
        (0..self.shards.len())
            .filter_map(|i| self.lock(i).next_deadline())
            .min()
            .map(|t| self.instant(t))
    }

    /// Timers queued (live ones: stale heap entries are not counted).
    pub fn len(&self) -> usize {
        (0..self.shards.len())
            .map(|i| self.lock(i).scheduled.len())
            .sum()
    }

    /// Entries queued, stale ones included (heap and far buckets).
    pub fn heap_len(&self) -> usize {
        (0..self.shards.len()).map(|i| self.lock(i).entries()).sum()
    }

    /// Whether no timer is queued.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// Fire `table`'s timers as they fall due, passing what each produces to `sink` (send
/// the messages, report the events; never called with nothing). Runs until the task is
/// aborted; spawn it once per table.
pub async fn run_timers<F>(table: Arc<TransactionTable>, mut sink: F)
where
    F: FnMut(Vec<Output>) + Send,
{
    let q = table.timers();
    let mut due = Vec::new();
    loop {
        // Awake: whoever queues a deadline from now on notifies (a permit is kept).
        q.armed.store(AWAKE, Ordering::SeqCst);
        let now = Instant::now();
        q.pop_due_into(now, &mut due);
        for id in due.drain(..) {
            let out = table.on_timer(id, now);
            if !out.is_empty() {
                sink(out);
            }
        }
        let notified = q.notify.notified();
        match q.next_deadline() {
            Some(at) if at <= Instant::now() => continue,
            Some(at) => {
                // Publish the deadline: only an earlier one needs to wake us. One queued
                // between the scan and this store saw AWAKE and left a permit.
                q.armed.store(q.ticks(at), Ordering::SeqCst);
                tokio::select! {
                    () = tokio::time::sleep_until(at) => {}
                    () = notified => {}
                }
            }
            None => notified.await,
        }
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    fn id(n: u64, t: Timer) -> TimerId {
        TimerId {
            tx: TxId::new(0, n),
            slot: Slot::Server(t),
        }
    }

    #[tokio::test(start_paused = true)]
    async fn keeps_the_earliest_entry_per_timer() {
        let q = TimerQueue::default();
        let t0 = Instant::now();
        let s = Duration::from_secs(1);
        q.schedule(id(1, Timer::C), t0 + s * 10);
        // Moved later: nothing new queued (the early fire re-announces).
        q.schedule(id(1, Timer::C), t0 + s * 20);
        assert_eq!(q.heap_len(), 1);
        // Moved earlier: queued; the old entry becomes stale.
        q.schedule(id(1, Timer::C), t0 + s * 5);
        q.schedule(id(2, Timer::G), t0 + s * 7);
        assert_eq!(q.next_deadline(), Some(t0 + s * 5));
        assert_eq!(q.pop_due(t0 + s * 6), [id(1, Timer::C)]);
        assert_eq!(
            q.pop_due(t0 + s * 30),
            [id(2, Timer::G)],
            "stale entry dropped"
        );
        assert!(q.is_empty());
        assert_eq!(q.heap_len(), 0);
    }

    #[tokio::test(start_paused = true)]
    async fn cancelled_timers_are_skipped_and_shards_are_merged() {
        let q = TimerQueue::new(4);
        let t0 = Instant::now();
        let ms = Duration::from_millis(1);
        let a = TimerId {
            tx: TxId::new(1, 7),
            slot: Slot::Branch(0, Timer::A),
        };
        let b = TimerId {
            tx: TxId::new(1, 7),
            slot: Slot::Branch(0, Timer::B),
        };
        // Other shards, one earlier and one later.
        let early = id(3, Timer::G);
        let late = TimerId {
            tx: TxId::new(2, 1),
            slot: Slot::Lifetime,
        };
        q.apply(&[(a, Some(t0 + ms * 500)), (b, Some(t0 + ms * 32_000))]);
        q.schedule(late, t0 + ms * 40_000);
        q.schedule(early, t0 + ms * 100);
        assert_eq!(q.next_deadline(), Some(t0 + ms * 100));
        // A provisional stops timer A; a re-armed timer in the same batch survives.
        q.apply(&[(a, None), (b, None), (b, Some(t0 + ms * 30_000))]);
        assert_eq!(q.len(), 3);
        assert_eq!(q.pop_due(t0 + ms * 1_000), [early]);
        assert_eq!(q.next_deadline(), Some(t0 + ms * 30_000));
        assert_eq!(q.pop_due(t0 + ms * 60_000), [b, late]);
        assert!(q.is_empty());
    }

    #[tokio::test(start_paused = true)]
    async fn far_deadlines_wait_in_buckets_and_fire_on_time() {
        let q = TimerQueue::new(1);
        let t0 = Instant::now();
        let ms = Duration::from_millis(1);
        q.schedule(id(1, Timer::A), t0 + ms * 300);
        q.schedule(id(2, Timer::K), t0 + ms * 2_600);
        q.schedule(id(3, Timer::K), t0 + ms * 2_500);
        q.schedule(id(4, Timer::H), t0 + ms * 120_000);
        assert_eq!(q.pop_due(t0 + ms * 299), []);
        assert_eq!(q.pop_due(t0 + ms * 300), [id(1, Timer::A)]);
        assert_eq!(q.next_deadline(), Some(t0 + ms * 2_500));
        assert_eq!(q.pop_due(t0 + ms * 2_550), [id(3, Timer::K)]);
        // Now inside the near tier: still ordered with what moved in before it.
        q.schedule(id(5, Timer::E), t0 + ms * 2_580);
        assert_eq!(
            q.pop_due(t0 + ms * 2_600),
            [id(5, Timer::E), id(2, Timer::K)]
        );
        assert_eq!(q.next_deadline(), Some(t0 + ms * 120_000));
        assert_eq!(q.pop_due(t0 + ms * 119_999), []);
        assert_eq!(q.pop_due(t0 + ms * 120_000), [id(4, Timer::H)]);
        assert!(q.is_empty());
        assert_eq!(q.heap_len(), 0);
    }

    #[tokio::test(start_paused = true)]
    async fn forgotten_timers_are_compacted_away() {
        let q = TimerQueue::default();
        let t0 = Instant::now();
        let ids: Vec<TimerId> = (0..3000).map(|n| id(n, Timer::H)).collect();
        for i in &ids {
            q.schedule(*i, t0 + Duration::from_secs(30));
        }
        q.schedule(id(9999, Timer::H), t0 + Duration::from_secs(1));
        q.forget(&ids);
        assert_eq!(q.len(), 1);
        assert_eq!(q.heap_len(), 1, "rebuilt once mostly stale");
        assert_eq!(
            q.pop_due(t0 + Duration::from_secs(60)),
            [id(9999, Timer::H)]
        );
    }
}
