//! Polling with deadlines: tests wait for a condition, never for a fixed time.

use std::time::{Duration, Instant};

/// Poll `f` every few milliseconds until it returns `Some`, or give up after `limit`.
pub fn until<T>(limit: Duration, mut f: impl FnMut() -> Option<T>) -> Option<T> {
    let end = Instant::now() + limit;
    loop {
        if let Some(v) = f() {
            return Some(v);
        }
        if Instant::now() >= end {
            return None;
        }
        std::thread::sleep(Duration::from_millis(5));
    }
}

/// Time left until `end` (zero when past).
pub fn left(end: Instant) -> Duration {
    end.saturating_duration_since(Instant::now())
}
