//! Log lines, tagged by the host with route, module and tenant.
//!
//! ```
//! use weir_sdk::log;
//!
//! let user = "alice";
//! log::info!("registered {user}");
//! log::warn!("retrying in {} ms", 250);
//! log::write(log::Level::Debug, "plain text, no formatting");
//! ```
//!
//! Keep message bodies and credentials out of `info` and above. In the native test
//! harness, lines are kept and can be read with [`testing::logs`](crate::testing::logs).

use std::fmt;

/// Severity of a log line.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Level {
    /// Very detailed tracing.
    Trace,
    /// Debugging detail.
    Debug,
    /// Normal operation worth recording.
    Info,
    /// Something unexpected that the module handled.
    Warn,
    /// A failure.
    Error,
}

/// Write one log line.
pub fn write(level: Level, message: &str) {
    #[cfg(target_arch = "wasm32")]
    crate::__private::bindings::weir::sip::log::log(level.into(), message);
    #[cfg(not(target_arch = "wasm32"))]
    crate::testing::mock::log(level, message);
}

/// Write one log line from format arguments (what the macros call); a literal without
/// arguments is passed without allocating.
pub fn write_fmt(level: Level, args: fmt::Arguments<'_>) {
    match args.as_str() {
        Some(message) => write(level, message),
        None => write(level, &args.to_string()),
    }
}

#[doc(hidden)]
#[macro_export]
macro_rules! __weir_log {
    ($level:ident, $($arg:tt)+) => {
        $crate::log::write_fmt($crate::log::Level::$level, ::std::format_args!($($arg)+))
    };
}

/// Log at trace level, with `format!` arguments: `log::trace!("x = {x}")`.
#[doc(hidden)]
#[macro_export]
macro_rules! __weir_trace {
    ($($arg:tt)+) => { $crate::__weir_log!(Trace, $($arg)+) };
}

/// Log at debug level, with `format!` arguments: `log::debug!("x = {x}")`.
#[doc(hidden)]
#[macro_export]
macro_rules! __weir_debug {
    ($($arg:tt)+) => { $crate::__weir_log!(Debug, $($arg)+) };
}

/// Log at info level, with `format!` arguments: `log::info!("x = {x}")`.
#[doc(hidden)]
#[macro_export]
macro_rules! __weir_info {
    ($($arg:tt)+) => { $crate::__weir_log!(Info, $($arg)+) };
}

/// Log at warn level, with `format!` arguments: `log::warn!("x = {x}")`.
#[doc(hidden)]
#[macro_export]
macro_rules! __weir_warn {
    ($($arg:tt)+) => { $crate::__weir_log!(Warn, $($arg)+) };
}

/// Log at error level, with `format!` arguments: `log::error!("x = {x}")`.
#[doc(hidden)]
#[macro_export]
macro_rules! __weir_error {
    ($($arg:tt)+) => { $crate::__weir_log!(Error, $($arg)+) };
}

#[doc(inline)]
pub use crate::__weir_debug as debug;
#[doc(inline)]
pub use crate::__weir_error as error;
#[doc(inline)]
pub use crate::__weir_info as info;
#[doc(inline)]
pub use crate::__weir_trace as trace;
#[doc(inline)]
pub use crate::__weir_warn as warn;
