//! In-memory stores: the bounded [`MemoryKv`](kv::MemoryKv) (also the read side of the
//! embedded store) and [`MemorySubscribers`](subscribers::MemorySubscribers).

pub mod kv;
pub mod subscribers;
