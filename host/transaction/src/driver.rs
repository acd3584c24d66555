//! The timer driver: a deadline queue the table fills, and a tokio task that fires due
//! timers back into the table.
//!
//! The queue keeps at most one entry per timer that matters, the earliest: re-arming a
//! timer for *later* (timer C on every provisional) adds nothing; when the old entry
//! fires early the machine re-announces its real deadline (see
//! [`Action::CancelTimer`](crate::Action::CancelTimer)). Cancelling is free for the same
//! reason: a fired timer the machine no longer has armed is ignored. So the heap grows
//! with live transactions, not with message rates.

use std::cmp::Reverse;
use std::collections::{BinaryHeap, HashMap};
use std::sync::{Arc, Mutex, MutexGuard};

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

/// A timer of one transaction.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct TimerId {
    /// The transaction.
    pub tx: TxId,
    /// Which timer.
    pub slot: Slot,
}

/// Below this many heap entries, stale ones are left to expire.
const COMPACT_MIN: usize = 1024;

#[derive(Debug, Default)]
struct Queue {
    heap: BinaryHeap<Reverse<(Instant, u64, TimerId)>>,
    /// Earliest deadline queued per timer.
    scheduled: HashMap<TimerId, Instant>,
    seq: u64,
}

/// Deadlines waiting to fire, earliest first.
#[derive(Debug, Default)]
pub struct TimerQueue {
    inner: Mutex<Queue>,
    notify: Notify,
}

impl TimerQueue {
    fn lock(&self) -> MutexGuard<'_, Queue> {
        self.inner.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Queue `id` to fire at `at`, unless it is already queued to fire no later.
    pub fn schedule(&self, id: TimerId, at: Instant) {
        let mut q = self.lock();
        if q.scheduled.get(&id).is_some_and(|s| *s <= at) {
            return;
        }
        let earliest = q.heap.peek().is_none_or(|Reverse((t, _, _))| at < *t);
        q.scheduled.insert(id, at);
        q.seq = q.seq.wrapping_add(1);
        let seq = q.seq;
        q.heap.push(Reverse((at, seq, id)));
        drop(q);
        if earliest {
            self.notify.notify_one();
        }
    }

    /// Forget the timers of a transaction that ended. Their heap entries become stale;
    /// the heap is rebuilt once stale entries outnumber live ones, so its size follows
    /// the live timers rather than everything scheduled in the last `max_inv_lifetime`.
    pub fn forget(&self, ids: &[TimerId]) {
        let mut q = self.lock();
        for id in ids {
            q.scheduled.remove(id);
        }
        if q.heap.len() > COMPACT_MIN && q.heap.len() > 2 * q.scheduled.len() {
            let Queue {
                heap, scheduled, ..
            } = &mut *q;
            heap.retain(|Reverse((at, _, id))| scheduled.get(id) == Some(at));
        }
    }

    /// Remove and return every timer due at `now`.
    pub fn pop_due(&self, now: Instant) -> Vec<TimerId> {
        let mut q = self.lock();
        let mut due = Vec::new();
        while let Some(Reverse((at, _, id))) = q.heap.peek().copied() {
            if at > now {
                break;
            }
            q.heap.pop();
            // An entry superseded by an earlier one for the same timer is stale.
            if q.scheduled.get(&id) == Some(&at) {
                q.scheduled.remove(&id);
                due.push(id);
            }
        }
        due
    }

    /// The earliest queued deadline.
    pub fn next_deadline(&self) -> Option<Instant> {
        self.lock().heap.peek().map(|Reverse((at, _, _))| *at)
    }

    /// Timers queued (live ones: stale heap entries are not counted).
    pub fn len(&self) -> usize {
        self.lock().scheduled.len()
    }

    /// Heap entries, stale ones included.
    pub fn heap_len(&self) -> usize {
        self.lock().heap.len()
    }

    /// Whether no timer is queued.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// Fire `table`'s timers as they fall due, passing what they produce to `sink` (send
/// the messages, report the events). Runs until the task is aborted; spawn it once per
/// table.
pub async fn run_timers<F>(table: Arc<TransactionTable>, mut sink: F)
where
    F: FnMut(Output) + Send,
{
    loop {
        let now = Instant::now();
        for id in table.timers().pop_due(now) {
            for o in table.on_timer(id, now) {
                sink(o);
            }
        }
        // Registering interest before reading the deadline means a deadline queued in
        // between still wakes us (Notify keeps one permit).
        let notified = table.timers().notify.notified();
        match table.timers().next_deadline() {
            Some(at) if at <= Instant::now() => continue,
            Some(at) => {
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
