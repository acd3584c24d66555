//! Counters bumped on every message by every receive thread.
//!
//! A plain `AtomicU64` that both receive threads increment moves its cache line from
//! one core to the other on nearly every message, and a struct of such counters puts
//! eight of them on each line, so a proxy bumping three or four per message pays for
//! several line transfers per message that have nothing to do with the message. Kamailio
//! avoids this with one statistics slot per process. A [`Counter`] does the same per
//! thread: it keeps [`STRIPES`] cells, each on its own cache line; a thread adds to the
//! cell of its slot (threads are given slots in turn as they first count), and a read
//! sums the cells. Reads are rare (logs, the admin API, tests) and may see a count a few
//! increments old, as with relaxed atomics.

use std::cell::Cell as TlsCell;
use std::fmt;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};

/// Cells per counter: distinct slots for the first this-many counting threads (receive
/// threads, the async workers, the timer task); later threads share slots, which is
/// still correct, only slower.
pub const STRIPES: usize = 8;

/// A value alone on its cache line (64 bytes): what one thread writes often, kept apart
/// from what the others write. Also for per-thread slots elsewhere (a module's instance
/// per thread, a thread's copy of the module registry).
#[derive(Default)]
#[repr(align(64))]
pub struct CachePadded<T>(pub T);

/// A monotonic counter (or, with [`Counter::sub`], a gauge) that threads update without
/// contending for one cache line.
pub struct Counter {
    cells: [CachePadded<AtomicU64>; STRIPES],
}

impl Default for Counter {
    fn default() -> Counter {
        Counter {
            cells: std::array::from_fn(|_| CachePadded::default()),
        }
    }
}

/// The calling thread's slot, below [`STRIPES`]: threads get slots in turn as they first
/// ask, so the first `STRIPES` threads have one each. Also for other per-thread
/// affinities (a module's instance per receive thread).
pub fn thread_slot() -> usize {
    static NEXT: AtomicUsize = AtomicUsize::new(0);
    thread_local! {
        static SLOT: TlsCell<usize> = const { TlsCell::new(usize::MAX) };
    }
    SLOT.try_with(|s| {
        let mut v = s.get();
        if v == usize::MAX {
            v = NEXT.fetch_add(1, Ordering::Relaxed) % STRIPES;
            s.set(v);
        }
        v
    })
    // A thread tearing down its thread-locals counts in slot 0.
    .unwrap_or(0)
}

impl Counter {
    /// A counter at zero.
    pub fn new() -> Counter {
        Counter::default()
    }

    /// Add one.
    pub fn inc(&self) {
        self.add(1);
    }

    /// Add `n`.
    pub fn add(&self, n: u64) {
        if let Some(c) = self.cells.get(thread_slot()) {
            c.0.fetch_add(n, Ordering::Relaxed);
        }
    }

    /// Subtract `n` (a gauge: what one thread adds another may subtract, so a single
    /// cell may wrap; the sum does not).
    pub fn sub(&self, n: u64) {
        if let Some(c) = self.cells.get(thread_slot()) {
            c.0.fetch_sub(n, Ordering::Relaxed);
        }
    }

    /// The current value: the sum of the cells.
    pub fn get(&self) -> u64 {
        self.cells
            .iter()
            .fold(0u64, |acc, c| acc.wrapping_add(c.0.load(Ordering::Relaxed)))
    }
}

impl fmt::Debug for Counter {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.get())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;

    #[test]
    fn counts_from_many_threads() {
        let c = Arc::new(Counter::new());
        let threads: Vec<_> = (0..STRIPES * 2 + 3)
            .map(|_| {
                let c = c.clone();
                std::thread::spawn(move || {
                    for _ in 0..1000 {
                        c.inc();
                    }
                })
            })
            .collect();
        for t in threads {
            assert!(t.join().is_ok());
        }
        assert_eq!(c.get(), (STRIPES as u64 * 2 + 3) * 1000);
    }

    #[test]
    fn a_gauge_may_go_down_on_another_thread() {
        let c = Arc::new(Counter::new());
        c.add(5);
        let c2 = c.clone();
        assert!(std::thread::spawn(move || c2.sub(3)).join().is_ok());
        assert_eq!(c.get(), 2);
        assert_eq!(format!("{c:?}"), "2");
    }

    #[test]
    fn each_cell_has_its_own_cache_line() {
        assert_eq!(std::mem::align_of::<CachePadded<AtomicU64>>(), 64);
        assert_eq!(std::mem::size_of::<Counter>(), 64 * STRIPES);
    }
}
