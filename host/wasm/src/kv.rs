//! The key-value store behind `weir:sip/kv`: the [`KvStore`] trait and the bounded,
//! in-memory [`MemoryKv`] now live in `weir-store` (ADR 0006); this module re-exports
//! them so the rest of the runtime is unchanged.
//!
//! The host namespaces every module as `"<tenant>/<module>"`; a module passes only the
//! key, so it can never name another namespace.

pub use weir_store::{KvError, KvLimits, KvStore, MemoryKv};
