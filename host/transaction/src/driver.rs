//! The timer driver: per table shard, a deadline queue of transactions; and a tokio
//! task that fires due transactions back into the table.
//!
//! A transaction keeps its own armed timers ([`Cell`](crate::cell::Cell) mirrors every
//! machine's) and has at most one entry here that matters: its earliest deadline, as
//! Kamailio's `tm` keeps one timer link per cell rather than one per RFC timer. Arming
//! a timer queues an entry only when it is earlier than the one queued; cancelling
//! queues nothing. When an entry fires, the transaction fires every timer of its own
//! that is due and queues its next deadline. An entry that is no longer the
//! transaction's queued one (superseded, or the transaction ended) is skipped; stale
//! entries are swept once they outnumber live transactions. So the queue costs one
//! entry per transaction, a call about three pushes (its lifetime, its first
//! retransmission, its linger), and no index of timers to keep in step.
//!
//! The queue of a transaction lives in its table shard, under the same lock, so arming
//! a timer takes no other lock, and the driver fires a shard's due transactions in one
//! pass over that shard.
//!
//! The driver wakes on a grid of `resolution` (Kamailio's timer tick, 1/16 s there): a
//! deadline fires at the first grid point at or after it, together with every other
//! deadline due by then. A proxy at 1,000 calls/s has some 4,000 distinct deadlines a
//! second; waking for each cost more than firing them (a context switch and a cold
//! cache per wake-up). With the default 60 ms grid it wakes at most some 17 times a
//! second.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::Notify;
use tokio::time::Instant;

use crate::action::Timer;
use crate::key::TxId;
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

/// Below this many entries (per shard), stale ones are left to expire.
const COMPACT_MIN: usize = 1024;

/// The driver is awake (or about to look at the queue): every new deadline notifies it.
const AWAKE: u64 = u64::MAX;

/// A deadline's far bucket: nanoseconds after the wheel's base, shifted (about 1.07 s
/// each).
const BUCKET_SHIFT: u32 = 30;

/// A deadline's near slot: nanoseconds after the wheel's base, shifted (about 16.8 ms
/// each, below the default 60 ms grid).
const SLOT_SHIFT: u32 = 24;

/// Near slots in the ring: more than the near tier spans (deadlines before the second
/// far bucket after now, under 2^31 ns = 128 slots ahead), so a slot is drained before
/// the ring comes round to it again.
const RING: usize = 256;

/// Where slot number `slot` lives in the ring.
fn ring_index(slot: u64) -> usize {
    // The modulo keeps it below RING, which fits in usize.
    (slot % RING as u64) as usize
}

/// One second-sized bucket of far deadlines, unordered, with its earliest.
#[derive(Debug)]
struct Bucket {
    min: Instant,
    entries: Vec<(Instant, TxId)>,
}

/// The deadline queue of one table shard, in two tiers. The near tier holds the
/// deadlines before `horizon` (the next second or two: retransmissions, and what moved
/// in from the buckets) in a ring of 16.8 ms slots, unordered within a slot: queueing
/// appends to its slot, firing drains slots in order and sorts only the few entries of
/// one slot. (A binary heap here cost a cache miss per level on every pop: the driver
/// and the receive threads take turns on it, and its lower levels are always cold.)
/// Later deadlines (lifetimes, `fr_timer`, `wt_timer`) wait unordered in per-second
/// buckets, and most of them are superseded or their transaction ended before their
/// bucket comes near, so they never pay for a place in the ring.
#[derive(Debug)]
pub(crate) struct Wheel {
    /// Where bucket and slot numbers count from.
    base: Instant,
    /// Near deadlines, by slot number modulo [`RING`].
    near: Box<[Vec<(Instant, TxId)>]>,
    /// Entries in `near`.
    near_len: usize,
    /// Slot number of the first slot not yet drained: every near entry is in slot
    /// `cursor` or later.
    cursor: u64,
    /// Near deadlines further ahead of `cursor` than the ring reaches (only when the
    /// driver has fallen behind by seconds), unordered.
    spill: Vec<(Instant, TxId)>,
    /// Deadlines in bucket `horizon` or later, by bucket.
    far: BTreeMap<u64, Bucket>,
    /// Entries in `far`.
    far_len: usize,
    /// Bucket number of the first deadline not in the near tier.
    horizon: u64,
}

impl Wheel {
    pub(crate) fn new(base: Instant) -> Wheel {
        Wheel {
            base,
            near: (0..RING).map(|_| Vec::new()).collect(),
            near_len: 0,
            cursor: 0,
            spill: Vec::new(),
            far: BTreeMap::new(),
            far_len: 0,
            horizon: 0,
        }
    }

    fn nanos(&self, at: Instant) -> u64 {
        u64::try_from(at.saturating_duration_since(self.base).as_nanos()).unwrap_or(u64::MAX)
    }

    /// Bucket number of a deadline (about 1.07 s each).
    fn bucket(&self, at: Instant) -> u64 {
        self.nanos(at) >> BUCKET_SHIFT
    }

    /// Slot number of a deadline (about 16.8 ms each).
    fn slot(&self, at: Instant) -> u64 {
        self.nanos(at) >> SLOT_SHIFT
    }

    pub(crate) fn push(&mut self, at: Instant, tx: TxId) {
        let bucket = self.bucket(at);
        if bucket < self.horizon {
            self.push_near(at, tx);
            return;
        }
        let b = self.far.entry(bucket).or_insert(Bucket {
            min: at,
            entries: Vec::new(),
        });
        b.min = b.min.min(at);
        b.entries.push((at, tx));
        self.far_len += 1;
    }

    fn push_near(&mut self, at: Instant, tx: TxId) {
        // Already due: the slot being drained.
        let slot = self.slot(at).max(self.cursor);
        if slot - self.cursor >= RING as u64 {
            self.spill.push((at, tx));
            return;
        }
        self.near[ring_index(slot)].push((at, tx));
        self.near_len += 1;
    }

    /// Move the buckets that `now` reached (and the next one) into the near tier.
    fn advance(&mut self, now: Instant) {
        self.horizon = self.horizon.max(self.bucket(now).saturating_add(2));
        while let Some(entry) = self.far.first_entry() {
            if *entry.key() >= self.horizon {
                break;
            }
            let bucket = entry.remove();
            self.far_len -= bucket.entries.len();
            for (at, tx) in bucket.entries {
                self.push_near(at, tx);
            }
        }
        if !self.spill.is_empty() {
            for (at, tx) in std::mem::take(&mut self.spill) {
                self.push_near(at, tx);
            }
        }
    }

    pub(crate) fn next_deadline(&self) -> Option<Instant> {
        let near = (self.near_len > 0)
            .then(|| {
                (self.cursor..self.cursor + RING as u64)
                    .map(|s| &self.near[ring_index(s)])
                    .find(|v| !v.is_empty())
                    .and_then(|v| v.iter().map(|(at, _)| *at).min())
            })
            .flatten();
        let spill = self.spill.iter().map(|(at, _)| *at).min();
        let far = self.far.first_key_value().map(|(_, b)| b.min);
        near.into_iter().chain(spill).chain(far).min()
    }

    /// Entries queued, stale ones included.
    pub(crate) fn len(&self) -> usize {
        self.near_len + self.spill.len() + self.far_len
    }

    /// Move up to `max` entries due at `now` to `due`, earliest first; whether more
    /// may be due.
    pub(crate) fn pop_due(
        &mut self,
        now: Instant,
        mut max: usize,
        due: &mut Vec<(Instant, TxId)>,
    ) -> bool {
        let last = self.slot(now);
        if self.near_len == 0 {
            // Nothing near: skip the empty slots rather than walk them.
            self.cursor = self.cursor.max(last);
        }
        self.advance(now);
        while self.cursor <= last {
            let v = &mut self.near[ring_index(self.cursor)];
            if v.len() > 1 {
                // Latest first, so the earliest come off the end.
                v.sort_unstable_by(|a, b| b.cmp(a));
            }
            while let Some(&e) = v.last() {
                if e.0 > now {
                    break;
                }
                if max == 0 {
                    return true;
                }
                v.pop();
                due.push(e);
                self.near_len -= 1;
                max -= 1;
            }
            if self.cursor == last {
                break;
            }
            // Slots before now's hold nothing that is not due.
            self.cursor += 1;
        }
        false
    }

    /// Drop the entries `live` rejects once the queue is large and more than half
    /// stale (`live_count` live ones at most).
    pub(crate) fn compact(
        &mut self,
        live_count: usize,
        mut live: impl FnMut(Instant, TxId) -> bool,
    ) {
        if self.len() <= COMPACT_MIN || self.len() <= 2 * live_count {
            return;
        }
        for v in self.near.iter_mut() {
            v.retain(|(at, tx)| live(*at, *tx));
        }
        self.near_len = self.near.iter().map(Vec::len).sum();
        self.spill.retain(|(at, tx)| live(*at, *tx));
        self.far.retain(|_, b| {
            b.entries.retain(|(at, tx)| live(*at, *tx));
            if let Some(min) = b.entries.iter().map(|(at, _)| *at).min() {
                b.min = min;
            }
            !b.entries.is_empty()
        });
        self.far_len = self.far.values().map(|b| b.entries.len()).sum();
    }
}

/// The clock of a table's timers: deadlines as nanoseconds after a base, the grid the
/// driver wakes on, and how a receive thread that queued an earlier deadline wakes it.
#[derive(Debug)]
pub(crate) struct TimerClock {
    /// The grid point the driver sleeps until, in nanoseconds after `base`; [`AWAKE`]
    /// while it is running. Only a deadline on an earlier grid point needs to wake it.
    armed: AtomicU64,
    base: Instant,
    /// Grid of wake-ups in nanoseconds; 0: wake at each exact deadline.
    resolution: u64,
    notify: Notify,
}

impl TimerClock {
    /// A clock whose driver wakes on a grid of `resolution` (zero: at each deadline);
    /// a deadline fires at most `resolution` late.
    pub(crate) fn new(resolution: Duration) -> TimerClock {
        TimerClock {
            armed: AtomicU64::new(AWAKE),
            base: Instant::now(),
            resolution: u64::try_from(resolution.as_nanos()).unwrap_or(AWAKE),
            notify: Notify::new(),
        }
    }

    pub(crate) fn ticks(&self, at: Instant) -> u64 {
        u64::try_from(at.saturating_duration_since(self.base).as_nanos()).unwrap_or(AWAKE - 1)
    }

    pub(crate) fn instant(&self, ticks: u64) -> Instant {
        self.base + Duration::from_nanos(ticks)
    }

    /// The grid point a deadline fires at: the first at or after it.
    pub(crate) fn wake_of(&self, at: u64) -> u64 {
        match self.resolution {
            0 => at,
            r => at.div_ceil(r).saturating_mul(r).min(AWAKE - 1),
        }
    }

    /// When the driver wakes to fire a deadline: the first grid point at or after it.
    pub(crate) fn wake_at(&self, at: Instant) -> Instant {
        self.instant(self.wake_of(self.ticks(at)))
    }

    pub(crate) fn base(&self) -> Instant {
        self.base
    }

    /// A deadline was queued: wake the driver if it sleeps past its grid point. Called
    /// after the entry is in its queue: either the driver's scan saw it, or the driver
    /// had not published its wake-up yet (still [`AWAKE`]) and this wakes it.
    pub(crate) fn queued(&self, at: Instant) {
        if self.wake_of(self.ticks(at)) < self.armed.load(Ordering::SeqCst) {
            self.notify.notify_one();
        }
    }
}

/// Fire `table`'s timers as they fall due, passing what each transaction's timers
/// produce to `sink` (send the messages, report the events; never called with
/// nothing). Runs until the task is aborted; spawn it once per table.
pub async fn run_timers<F>(table: Arc<TransactionTable>, mut sink: F)
where
    F: FnMut(Vec<Output>) + Send,
{
    let clock = table.clock();
    let mut due = Vec::new();
    let mut dead = Vec::new();
    loop {
        // Awake: whoever queues a deadline from now on notifies (a permit is kept).
        clock.armed.store(AWAKE, Ordering::SeqCst);
        table.fire_due(Instant::now(), &mut due, &mut dead, &mut sink);
        let notified = clock.notify.notified();
        match table.next_wake() {
            Some(at) if at <= Instant::now() => continue,
            Some(at) => {
                // Publish the wake-up: only a deadline on an earlier grid point needs
                // to wake us. One queued between the scan and this store saw AWAKE and
                // left a permit.
                clock.armed.store(clock.ticks(at), Ordering::SeqCst);
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
    use super::*;

    fn tx(n: u64) -> TxId {
        TxId::new(0, n)
    }

    fn due(w: &mut Wheel, now: Instant) -> Vec<(Instant, TxId)> {
        let mut d = Vec::new();
        w.pop_due(now, usize::MAX, &mut d);
        d
    }

    #[tokio::test(start_paused = true)]
    async fn far_deadlines_wait_in_buckets_and_fire_in_order() {
        let t0 = Instant::now();
        let ms = |n| t0 + Duration::from_millis(n);
        let mut w = Wheel::new(t0);
        w.push(ms(300), tx(1));
        w.push(ms(2_600), tx(2));
        w.push(ms(2_500), tx(3));
        w.push(ms(120_000), tx(4));
        assert_eq!(due(&mut w, ms(299)), []);
        assert_eq!(due(&mut w, ms(300)), [(ms(300), tx(1))]);
        assert_eq!(w.next_deadline(), Some(ms(2_500)));
        assert_eq!(due(&mut w, ms(2_550)), [(ms(2_500), tx(3))]);
        // Now inside the near tier: still ordered with what moved in before it.
        w.push(ms(2_580), tx(5));
        assert_eq!(
            due(&mut w, ms(2_600)),
            [(ms(2_580), tx(5)), (ms(2_600), tx(2))]
        );
        assert_eq!(w.next_deadline(), Some(ms(120_000)));
        assert_eq!(due(&mut w, ms(119_999)), []);
        assert_eq!(due(&mut w, ms(120_000)), [(ms(120_000), tx(4))]);
        assert_eq!(w.len(), 0);
    }

    #[tokio::test(start_paused = true)]
    async fn due_entries_come_out_in_batches() {
        let t0 = Instant::now();
        let mut w = Wheel::new(t0);
        for n in 0..5 {
            w.push(t0 + Duration::from_millis(n), tx(n));
        }
        let mut d = Vec::new();
        let now = t0 + Duration::from_millis(3);
        assert!(w.pop_due(now, 2, &mut d), "more due");
        assert!(!w.pop_due(now, 2, &mut d), "all due taken");
        assert_eq!(
            d.iter().map(|e| e.1).collect::<Vec<_>>(),
            [tx(0), tx(1), tx(2), tx(3)]
        );
        assert_eq!(w.len(), 1);
    }

    #[tokio::test(start_paused = true)]
    async fn entries_of_one_slot_fire_in_order_and_never_early() {
        let t0 = Instant::now();
        let us = |n| t0 + Duration::from_micros(n);
        let mut w = Wheel::new(t0);
        assert_eq!(due(&mut w, t0), []);
        // One 16.8 ms slot, queued out of order.
        for (n, at) in [(1, 9_000), (2, 3_000), (3, 12_000), (4, 3_000)] {
            w.push(us(at), tx(n));
        }
        assert_eq!(w.next_deadline(), Some(us(3_000)));
        assert_eq!(due(&mut w, us(2_999)), []);
        assert_eq!(
            due(&mut w, us(9_000)),
            [(us(3_000), tx(2)), (us(3_000), tx(4)), (us(9_000), tx(1))]
        );
        assert_eq!(w.next_deadline(), Some(us(12_000)));
        // Already past: due at once.
        w.push(us(1_000), tx(5));
        assert_eq!(due(&mut w, us(9_500)), [(us(1_000), tx(5))]);
        assert_eq!(due(&mut w, us(12_000)), [(us(12_000), tx(3))]);
        assert_eq!(w.len(), 0);
    }

    #[tokio::test(start_paused = true)]
    async fn a_driver_seconds_behind_loses_and_reorders_nothing() {
        let t0 = Instant::now();
        let ms = |n| t0 + Duration::from_millis(n);
        let mut w = Wheel::new(t0);
        assert_eq!(due(&mut w, t0), []);
        for n in 0..50 {
            w.push(ms(1_000 + n), tx(n));
        }
        // The driver wakes 4 s late and fires one entry per pass: the ring stays
        // behind (cursor at 1 s) while deadlines are queued 5 s further on, beyond
        // its 4.3 s of slots.
        let mut d = Vec::new();
        assert!(w.pop_due(ms(5_000), 1, &mut d), "more due");
        w.push(ms(6_500), tx(100));
        w.push(ms(5_500), tx(101));
        assert_eq!(w.next_deadline(), Some(ms(1_001)));
        while w.pop_due(ms(5_000), 7, &mut d) {}
        assert_eq!(
            d,
            (0..50).map(|n| (ms(1_000 + n), tx(n))).collect::<Vec<_>>()
        );
        assert_eq!(w.next_deadline(), Some(ms(5_500)));
        assert_eq!(due(&mut w, ms(5_499)), []);
        assert_eq!(
            due(&mut w, ms(6_500)),
            [(ms(5_500), tx(101)), (ms(6_500), tx(100))]
        );
        assert_eq!(w.len(), 0);
    }

    #[tokio::test(start_paused = true)]
    async fn stale_entries_are_compacted_once_they_dominate() {
        let t0 = Instant::now();
        let mut w = Wheel::new(t0);
        for n in 0..3000 {
            w.push(t0 + Duration::from_secs(30), tx(n));
        }
        w.push(t0 + Duration::from_secs(1), tx(9999));
        // Mostly live: left alone.
        w.compact(2_000, |_, t| t == tx(9999));
        assert_eq!(w.len(), 3001);
        w.compact(1, |_, t| t == tx(9999));
        assert_eq!(w.len(), 1, "rebuilt once mostly stale");
        assert_eq!(w.next_deadline(), Some(t0 + Duration::from_secs(1)));
    }

    #[tokio::test(start_paused = true)]
    async fn deadlines_are_due_on_the_next_grid_point() {
        let c = TimerClock::new(Duration::from_millis(20));
        let ms = |n| c.base + Duration::from_millis(n);
        assert_eq!(c.wake_at(ms(507)), ms(520), "507 ms rounds up to 520 ms");
        assert_eq!(c.wake_at(ms(520)), ms(520));
        assert_eq!(c.wake_at(ms(521)), ms(540));
        let exact = TimerClock::new(Duration::ZERO);
        let at = exact.base + Duration::from_nanos(507_000_123);
        assert_eq!(exact.wake_at(at), at);
    }

    #[tokio::test(start_paused = true)]
    async fn only_a_deadline_on_an_earlier_grid_point_wakes_the_driver() {
        let c = TimerClock::new(Duration::from_millis(20));
        let ms = |n| c.base + Duration::from_millis(n);
        // The driver sleeps until 520 ms.
        c.armed.store(c.ticks(ms(520)), Ordering::SeqCst);
        let woken = c.notify.notified();
        tokio::pin!(woken);
        c.queued(ms(505));
        assert!(
            poll_once(woken.as_mut()).is_pending(),
            "505 ms is due at 520 ms: no wake-up"
        );
        c.queued(ms(499));
        assert!(
            poll_once(woken.as_mut()).is_ready(),
            "499 ms is due at 500 ms"
        );
    }

    /// Poll a future once.
    fn poll_once<F: std::future::Future>(f: std::pin::Pin<&mut F>) -> std::task::Poll<F::Output> {
        f.poll(&mut std::task::Context::from_waker(std::task::Waker::noop()))
    }
}
