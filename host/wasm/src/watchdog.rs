//! The call watchdog: bounds guest calls in time without waking up while nothing runs.
//!
//! Every instance has a [`CallSlot`] holding the deadline of the call it is running (0:
//! none). Calls are compiled with epoch interruption, and each store's epoch callback
//! ([`CallSlot::on_epoch`]) ends its call as a timeout once the call's own deadline has
//! passed and lets it go on otherwise. The watchdog thread advances the engine's epoch
//! only when some call in flight is past its deadline. It sleeps until the earliest
//! deadline of the calls it saw in flight, never longer than one `period` (the shortest
//! module timeout, at most the configured `epoch_tick`), so a call that starts while it
//! sleeps is seen before its deadline; and it parks once a whole period went by without a
//! call, until the next call starts.
//!
//! Against a thread that advanced the epoch every tick whatever happened: no wake-ups at
//! all when no module is called, one per period (not per tick) while modules are called,
//! and a call ends at its deadline instead of up to two ticks after it.

use std::sync::atomic::{AtomicBool, AtomicU64, AtomicU8, Ordering};
use std::sync::{Arc, Mutex, OnceLock, PoisonError, Weak};
use std::thread::{self, Thread};
use std::time::{Duration, Instant};

use wasmtime::{Engine, Store, UpdateDeadline};

/// Calls were made since the watchdog's last look.
const ACTIVE: u8 = 0;
/// No call was made since the watchdog's last look.
const QUIET: u8 = 1;
/// The watchdog is parked: the next call must wake it.
const PARKED: u8 = 2;

/// How soon the watchdog looks again after advancing the epoch for a call past its
/// deadline (which ends at its next epoch check, unless it is inside a host call).
const RECHECK: Duration = Duration::from_millis(5);

struct Shared {
    engine: Engine,
    base: Instant,
    /// Longest sleep while calls are being made, in ns: the configured tick, lowered to
    /// the shortest timeout of the modules loaded ([`Watchdog::bound`]).
    period: AtomicU64,
    state: AtomicU8,
    slots: Mutex<Vec<Weak<AtomicU64>>>,
    stop: AtomicBool,
    thread: OnceLock<Thread>,
    /// Epoch advances so far (for tests).
    advances: AtomicU64,
}

impl Shared {
    fn nanos(&self, at: Instant) -> u64 {
        // At least 1: 0 means "no call" in a slot.
        u64::try_from(at.saturating_duration_since(self.base).as_nanos())
            .unwrap_or(u64::MAX)
            .max(1)
    }

    /// The earliest deadline of the calls in flight, and whether one is past `now`;
    /// slots of dropped instances are forgotten.
    fn scan(&self, now: u64) -> (Option<u64>, bool) {
        let mut slots = self.slots.lock().unwrap_or_else(PoisonError::into_inner);
        let mut earliest: Option<u64> = None;
        let mut overdue = false;
        slots.retain(|w| {
            let Some(slot) = w.upgrade() else {
                return false;
            };
            let d = slot.load(Ordering::SeqCst);
            if d != 0 {
                if d <= now {
                    overdue = true;
                } else {
                    earliest = Some(earliest.map_or(d, |e| e.min(d)));
                }
            }
            true
        });
        (earliest, overdue)
    }

    fn run(&self) {
        while !self.stop.load(Ordering::SeqCst) {
            let now = self.nanos(Instant::now());
            let (earliest, overdue) = self.scan(now);
            if overdue {
                self.engine.increment_epoch();
                self.advances.fetch_add(1, Ordering::Relaxed);
            }
            let period = self.period.load(Ordering::Relaxed);
            let busy = self.state.swap(QUIET, Ordering::SeqCst) == ACTIVE;
            let wait = match earliest {
                Some(d) => Duration::from_nanos((d - now).min(period)),
                None if overdue || busy => Duration::from_nanos(period),
                None => {
                    self.park();
                    continue;
                }
            };
            thread::park_timeout(if overdue { wait.min(RECHECK) } else { wait });
        }
    }

    /// A whole period without a call: sleep until the next one starts (or the watchdog
    /// is stopped).
    fn park(&self) {
        if self
            .state
            .compare_exchange(QUIET, PARKED, Ordering::SeqCst, Ordering::SeqCst)
            .is_err()
        {
            return;
        }
        // A call whose slot was set before the state said PARKED did not wake us: look
        // again (a call after it sees PARKED and does).
        let (earliest, overdue) = self.scan(self.nanos(Instant::now()));
        if earliest.is_some() || overdue {
            let _ = self
                .state
                .compare_exchange(PARKED, ACTIVE, Ordering::SeqCst, Ordering::SeqCst);
            return;
        }
        while self.state.load(Ordering::SeqCst) == PARKED && !self.stop.load(Ordering::SeqCst) {
            thread::park();
        }
    }
}

/// The watchdog of one engine. Shared by the runtime and every loaded module; stops
/// (without being joined) when the last of them is dropped.
pub(crate) struct Watchdog {
    shared: Arc<Shared>,
}

impl Watchdog {
    /// Start the watchdog thread of `engine`; it sleeps at most `tick` at a time while
    /// calls are being made.
    pub(crate) fn start(engine: Engine, tick: Duration) -> std::io::Result<Arc<Watchdog>> {
        let shared = Arc::new(Shared {
            engine,
            base: Instant::now(),
            period: AtomicU64::new(u64::try_from(tick.as_nanos()).unwrap_or(u64::MAX).max(1)),
            state: AtomicU8::new(QUIET),
            slots: Mutex::new(Vec::new()),
            stop: AtomicBool::new(false),
            thread: OnceLock::new(),
            advances: AtomicU64::new(0),
        });
        let run = shared.clone();
        let handle = thread::Builder::new()
            .name("weir-wasm-watch".into())
            .spawn(move || run.run())?;
        let _ = shared.thread.set(handle.thread().clone());
        Ok(Arc::new(Watchdog { shared }))
    }

    /// A module with calls bounded by `timeout` is loaded: the watchdog looks at least
    /// that often while calls are being made, so it sees each call before its deadline.
    pub(crate) fn bound(&self, timeout: Duration) {
        let ns = u64::try_from(timeout.as_nanos()).unwrap_or(u64::MAX).max(1);
        self.shared.period.fetch_min(ns, Ordering::Relaxed);
    }

    /// A slot for a new instance.
    pub(crate) fn slot(&self) -> CallSlot {
        let deadline = Arc::new(AtomicU64::new(0));
        self.shared
            .slots
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .push(Arc::downgrade(&deadline));
        CallSlot {
            deadline,
            shared: self.shared.clone(),
        }
    }

    /// How many times the epoch was advanced.
    #[cfg(test)]
    fn advances(&self) -> u64 {
        self.shared.advances.load(Ordering::Relaxed)
    }

    /// Whether the watchdog thread is parked.
    #[cfg(test)]
    fn parked(&self) -> bool {
        self.shared.state.load(Ordering::SeqCst) == PARKED
    }
}

impl Drop for Watchdog {
    fn drop(&mut self) {
        self.shared.stop.store(true, Ordering::SeqCst);
        if let Some(t) = self.shared.thread.get() {
            t.unpark();
        }
    }
}

/// The deadline of the call an instance is running.
pub(crate) struct CallSlot {
    deadline: Arc<AtomicU64>,
    shared: Arc<Shared>,
}

impl CallSlot {
    /// Run `f`, a guest entry on `store` (the store this slot's callback was given
    /// to), as one call that must end within `budget`.
    pub(crate) fn watch<T, R>(
        &self,
        store: &mut Store<T>,
        budget: Duration,
        f: impl FnOnce(&mut Store<T>) -> R,
    ) -> R {
        store.set_epoch_deadline(1);
        self.begin(budget);
        let r = f(store);
        self.end();
        r
    }

    /// A call starts that must end within `budget`.
    fn begin(&self, budget: Duration) {
        let s = &self.shared;
        self.deadline
            .store(s.nanos(Instant::now() + budget), Ordering::SeqCst);
        // Once per look of the watchdog at most, this thread writes the state.
        if s.state.load(Ordering::SeqCst) != ACTIVE
            && s.state.swap(ACTIVE, Ordering::SeqCst) == PARKED
        {
            if let Some(t) = s.thread.get() {
                t.unpark();
            }
        }
    }

    /// The call ended.
    fn end(&self) {
        self.deadline.store(0, Ordering::SeqCst);
    }

    /// The store's epoch callback: the epoch moved because some call is past its
    /// deadline; this one ends if it is, and waits for the next move otherwise.
    pub(crate) fn on_epoch(&self) -> UpdateDeadline {
        let d = self.deadline.load(Ordering::SeqCst);
        if d != 0 && d <= self.shared.nanos(Instant::now()) {
            UpdateDeadline::Interrupt
        } else {
            UpdateDeadline::Continue(1)
        }
    }

    /// A slot for the store's callback, sharing this one's deadline.
    pub(crate) fn share(&self) -> CallSlot {
        CallSlot {
            deadline: self.deadline.clone(),
            shared: self.shared.clone(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn wait_until(what: &str, f: impl Fn() -> bool) {
        let end = Instant::now() + Duration::from_secs(5);
        while !f() {
            assert!(Instant::now() < end, "timed out waiting for: {what}");
            thread::sleep(Duration::from_millis(1));
        }
    }

    fn engine() -> Engine {
        let mut c = wasmtime::Config::new();
        c.epoch_interruption(true);
        Engine::new(&c).unwrap()
    }

    #[test]
    fn parks_when_idle_and_advances_only_for_a_late_call() {
        let w = Watchdog::start(engine(), Duration::from_millis(20)).unwrap();
        wait_until("parked with nothing to watch", || w.parked());
        let a = w.slot();
        let b = w.slot();
        // Calls within their deadlines: never an advance; quiet again afterwards.
        for _ in 0..20 {
            // Far from its deadline even on a machine that descheduled this thread.
            a.begin(Duration::from_secs(10));
            thread::sleep(Duration::from_millis(2));
            a.end();
        }
        wait_until("parked after the calls", || w.parked());
        assert_eq!(w.advances(), 0);
        // A call past its deadline makes the epoch move; a call in flight beside it
        // goes on, the late one ends.
        b.begin(Duration::from_secs(10));
        let t = Instant::now();
        a.begin(Duration::from_millis(30));
        wait_until("an advance", || w.advances() > 0);
        assert!(
            t.elapsed() >= Duration::from_millis(30),
            "{:?}",
            t.elapsed()
        );
        assert!(matches!(a.on_epoch(), UpdateDeadline::Interrupt));
        assert!(matches!(b.on_epoch(), UpdateDeadline::Continue(1)));
        a.end();
        b.end();
        wait_until("parked again", || w.parked());
    }

    #[test]
    fn a_dropped_watchdog_stops_its_thread_even_when_parked() {
        let w = Watchdog::start(engine(), Duration::from_millis(5)).unwrap();
        wait_until("parked", || w.parked());
        let shared = w.shared.clone();
        drop(w);
        wait_until("the thread gone", || Arc::strong_count(&shared) == 1);
    }
}
