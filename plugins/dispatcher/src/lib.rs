//! `dispatcher`: Kamailio's dispatcher (load balancing over destination sets) for Weir.
//!
//! Phase 1 holds the pure logic, with Kamailio's semantics and numbers:
//! * [`list`]: the list file (`setid uri [flags [priority [attrs]]]`) and set order;
//! * [`hash`]: the bit-exact `ds_get_hash` and the keys of the hash algorithms;
//! * [`algo`]: the selection algorithms and the failover list;
//! * [`health`]: destination state, keepalive thresholds and `ds_mark_dst`.
//!
//! Shared state (round-robin cursors, destination states, call loads) is passed in by
//! the caller, so every function here is deterministic.

pub mod algo;
pub mod hash;
pub mod health;
pub mod list;
