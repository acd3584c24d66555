//! Periodic timers of the module. A timer belongs to the module, not to one instance:
//! every `interval` the host calls [`Module::on_event`](crate::Module::on_event) with
//! [`Event::Timer`](crate::Event::Timer) and the timer's name on one instance of the
//! module, never two ticks of one timer at once. Start timers in
//! [`Module::init`](crate::Module::init): starting a timer that runs already (from
//! another instance's `init`) only updates its interval. Delivery is asynchronous and
//! best effort: a busy proxy may tick late, never early.
//!
//! ```
//! use std::time::Duration;
//! use weir_sdk::{testing, timers, Error, Event, Message, Module, NoConfig, Verdict};
//!
//! struct Prober;
//!
//! impl Module for Prober {
//!     type Config = NoConfig;
//!     fn init(_: NoConfig) -> Result<Self, Error> {
//!         timers::every("probe", Duration::from_secs(10))?;
//!         Ok(Prober)
//!     }
//!     fn on_request(&self, _: &mut Message) -> Result<Verdict, Error> {
//!         Ok(Verdict::Continue)
//!     }
//!     fn on_event(&self, event: &Event) -> Result<(), Error> {
//!         if let Event::Timer(name) = event {
//!             weir_sdk::log::debug!("timer {name} fired");
//!         }
//!         Ok(())
//!     }
//! }
//!
//! let p: Prober = testing::init(testing::json!({}))?;
//! assert_eq!(testing::timers(), vec![("probe".to_string(), Duration::from_secs(10))]);
//! p.on_event(&Event::Timer("probe".into()))?; // what the host does every 10 s
//! assert!(timers::cancel("probe"));
//! assert!(testing::timers().is_empty());
//! # Ok::<(), Error>(())
//! ```
//!
//! In the native harness timers never fire by themselves: a test calls `on_event` with
//! the tick, and [`testing::timers`](crate::testing::timers) lists the running timers.

use std::time::Duration;

#[cfg(target_arch = "wasm32")]
use crate::__private::bindings::weir::sip::timers as backend;
#[cfg(not(target_arch = "wasm32"))]
use crate::testing::mock::timers as backend;
use crate::Error;

/// Longest timer name, in bytes.
pub const MAX_NAME: usize = 64;
/// Shortest interval.
pub const MIN_INTERVAL: Duration = Duration::from_millis(10);
/// Longest interval: one day.
pub const MAX_INTERVAL: Duration = Duration::from_secs(86_400);
/// Most timers of one module.
pub const MAX_TIMERS: usize = 16;

/// Start the timer `name` (1 to [`MAX_NAME`] bytes), firing every `interval`
/// ([`MIN_INTERVAL`] to [`MAX_INTERVAL`], rounded up to whole milliseconds), or re-time
/// it if it runs already. Fails with a [`HostError`](crate::HostError) when the name or
/// interval is out of bounds or the module has [`MAX_TIMERS`] timers already.
pub fn every(name: &str, interval: Duration) -> Result<(), Error> {
    crate::error::host(
        "timers.every",
        backend::every(name, crate::types::millis_u32(interval)),
    )
}

/// Stop the timer `name`; true if it was running.
pub fn cancel(name: &str) -> bool {
    backend::cancel(name)
}
