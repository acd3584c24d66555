//! Load figures of the machine and of the proxy, sampled by the host in the background
//! (about once a second): a call is cheap, but the figures move slowly. For modules that
//! adapt to load, such as a rate limiter that sheds more when the CPU is busy.
//!
//! ```
//! use weir_sdk::system;
//!
//! let load = system::load();
//! if load.cpu > 0.9 || load.rx_queue_bytes > 1 << 20 {
//!     // shed work
//! }
//! # assert_eq!(load, system::Load::default());
//! ```
//!
//! A host that cannot measure a figure (off Linux, say) reports 0 for it. In the native
//! harness both are 0 until [`testing::set_load`](crate::testing::set_load) says
//! otherwise.

#[cfg(target_arch = "wasm32")]
use crate::__private::bindings::weir::sip::system as backend;
#[cfg(not(target_arch = "wasm32"))]
use crate::testing::mock::system as backend;

/// One sample of the host's load figures.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct Load {
    /// Busy share of all CPUs over the host's last sample period, 0.0 (idle) to 1.0.
    pub cpu: f32,
    /// Bytes waiting in the kernel's receive queues of the proxy's UDP sockets: traffic
    /// that has arrived but that the proxy has not read yet.
    pub rx_queue_bytes: u64,
}

/// The host's latest sample.
pub fn load() -> Load {
    let l = backend::get_load();
    Load {
        cpu: l.cpu,
        rx_queue_bytes: l.rx_queue_bytes,
    }
}
