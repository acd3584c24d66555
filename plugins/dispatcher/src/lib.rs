//! `dispatcher`: Kamailio's dispatcher (load balancing over destination sets) for Weir.
//!
//! The module ([`module`], exported as the component) runs Kamailio's `ds_select_dst` /
//! `ds_select_domain` in the request chain, `ds_next_dst` + `ds_mark_dst` in the failure
//! chain and OPTIONS keepalives on a timer; see README.md. The logic under it is pure,
//! with Kamailio's semantics and numbers:
//! * [`list`]: the list file (`setid uri [flags [priority [attrs]]]`) and set order;
//! * [`hash`]: the bit-exact `ds_get_hash` and the keys of the hash algorithms;
//! * [`algo`]: the selection algorithms and the failover list;
//! * [`health`]: destination state, keepalive thresholds and `ds_mark_dst`.
//!
//! Shared state (round-robin cursors, destination states, call loads) is passed in by
//! the caller, so every function there is deterministic; the module keeps it in the
//! host's kv store.

pub mod algo;
pub mod hash;
pub mod health;
pub mod list;
pub mod load;
pub mod module;

pub use module::{Config, Dispatcher};

weir_sdk::export_module!(Dispatcher);

// The test harness exists off wasm only. (Two attributes, not `all(test, ..)`:
// clippy's allow-unwrap-in-tests only recognises a plain `cfg(test)`.)
#[cfg(test)]
#[cfg(not(target_arch = "wasm32"))]
mod tests;
