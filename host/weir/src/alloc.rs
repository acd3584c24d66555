//! The process's memory allocator: jemalloc on Linux (ADR 0009).
//!
//! Weir's receive threads allocate a transaction's pieces and the timer thread frees
//! them seconds later; glibc's malloc spent about 12% of Weir's CPU at 2,000 calls/s
//! on that pattern (consolidating fast bins, unlinking chunks, arena locks on the frees
//! from another thread). jemalloc's per-thread caches and size-class slabs cost less
//! per call (`docs/performance.md`, "Allocator").

/// The global allocator.
#[cfg(target_os = "linux")]
#[global_allocator]
static GLOBAL: tikv_jemallocator::Jemalloc = tikv_jemallocator::Jemalloc;

/// jemalloc's options, read once before its first allocation (jemalloc's documented
/// `malloc_conf` hook; this crate's jemalloc prefixes its symbols with `_rjem_`).
/// Unused pages go back to the kernel 30 s after they fall free instead of jemalloc's
/// default 10 s (`dirty_decay_ms`), with `MADV_FREE` only (`muzzy_decay_ms:-1`: the
/// kernel takes them back when it needs memory), so a steady load does not pay a
/// `madvise` for every page it frees and takes again. No background thread. The
/// environment variable `_RJEM_MALLOC_CONF` is read after this and overrides it.
///
/// Exporting a symbol is `unsafe_code` to the compiler because two items of the same
/// name would clash at link time; jemalloc declares this one for the program to set,
/// and nothing else in the process defines it. It is a NUL-terminated C string, read
/// through a thin pointer (an array reference, not a slice).
#[cfg(target_os = "linux")]
#[allow(unsafe_code)]
#[export_name = "_rjem_malloc_conf"]
static MALLOC_CONF: &[u8; 39] = b"dirty_decay_ms:30000,muzzy_decay_ms:-1\0";
