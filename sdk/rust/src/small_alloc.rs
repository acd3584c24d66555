//! A small-block cache in front of the module's allocator.
//!
//! A module call allocates a handful of short-lived small blocks (every string the host
//! hands over is allocated in the guest through `cabi_realloc`, and freed when the
//! module drops it). On `wasm32-wasip2` each of those went through Rust's `System`
//! allocator into wasi-libc's dlmalloc and back: some 400 instructions per block
//! allocated and freed, about 5% of a digest-auth registration (docs/performance.md).
//!
//! [`SmallCache`] keeps freed blocks of up to [`MAX_SMALL`] bytes on one free list per
//! 16-byte size class and hands them out again, so the steady state of a module call
//! allocates without reaching dlmalloc at all. It is bounded: a list holds at most
//! [`MAX_CACHED`] blocks; beyond that, blocks go back to the backing allocator. Larger
//! blocks, and blocks aligned to more than 16 bytes, pass straight through.
//!
//! A module instance runs on one thread (wasm32-wasip2 has no threads), so the lists
//! need no locking: the type is `Sync` (and can be a global allocator) only on `wasm32`
//! targets without atomics.

use std::alloc::{GlobalAlloc, Layout};
use std::cell::UnsafeCell;
use std::ptr;

/// Largest block size (bytes) the cache keeps.
pub const MAX_SMALL: usize = 256;
/// Size-class granularity and the alignment of every cached block.
const GRANULE: usize = 16;
/// Number of size classes: 16, 32, ... [`MAX_SMALL`] bytes.
const CLASSES: usize = MAX_SMALL / GRANULE;
/// Most blocks kept per size class (at most 64 × 256 bytes per class, 136 KiB in all).
pub const MAX_CACHED: u32 = 64;

/// One size class: a singly linked list threaded through the free blocks themselves.
#[derive(Clone, Copy)]
struct Class {
    head: *mut u8,
    len: u32,
}

/// A bounded cache of small free blocks in front of the allocator `A`.
pub struct SmallCache<A> {
    backing: A,
    classes: UnsafeCell<[Class; CLASSES]>,
}

// SAFETY: without threads (wasm32 without the atomics feature) nothing can share the
// cache between threads. Elsewhere the type is not `Sync`, so it cannot be a global
// allocator there (tests use it as a local value).
#[cfg(all(target_arch = "wasm32", not(target_feature = "atomics")))]
#[allow(unsafe_code)]
unsafe impl<A: Sync> Sync for SmallCache<A> {}

impl<A> SmallCache<A> {
    /// An empty cache in front of `backing`.
    pub const fn new(backing: A) -> Self {
        SmallCache {
            backing,
            classes: UnsafeCell::new(
                [Class {
                    head: ptr::null_mut(),
                    len: 0,
                }; CLASSES],
            ),
        }
    }
}

/// The size class of a layout the cache serves, or `None` for one it passes through.
#[inline]
fn class_of(layout: Layout) -> Option<usize> {
    if layout.size() == 0 || layout.size() > MAX_SMALL || layout.align() > GRANULE {
        return None;
    }
    Some((layout.size() - 1) / GRANULE)
}

/// The layout every block of `class` is allocated with from the backing allocator.
#[inline]
fn class_layout(class: usize) -> Layout {
    // (class + 1) * 16 <= MAX_SMALL, a power-of-two alignment: always valid.
    Layout::from_size_align((class + 1) * GRANULE, GRANULE).unwrap_or(Layout::new::<u8>())
}

#[allow(unsafe_code)]
// SAFETY (whole impl): a cached block was allocated by `backing` with its class's
// layout, is at least 16 bytes and 16-aligned, so it can hold the next-pointer, and is
// owned by the cache alone from `dealloc` until `alloc` hands it out again.
unsafe impl<A: GlobalAlloc> GlobalAlloc for SmallCache<A> {
    #[inline]
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        let Some(class) = class_of(layout) else {
            return unsafe { self.backing.alloc(layout) };
        };
        let classes = unsafe { &mut *self.classes.get() };
        let c = &mut classes[class];
        if c.head.is_null() {
            return unsafe { self.backing.alloc(class_layout(class)) };
        }
        let block = c.head;
        c.head = unsafe { block.cast::<*mut u8>().read() };
        c.len -= 1;
        block
    }

    #[inline]
    unsafe fn dealloc(&self, block: *mut u8, layout: Layout) {
        let Some(class) = class_of(layout) else {
            return unsafe { self.backing.dealloc(block, layout) };
        };
        let classes = unsafe { &mut *self.classes.get() };
        let c = &mut classes[class];
        if c.len >= MAX_CACHED {
            return unsafe { self.backing.dealloc(block, class_layout(class)) };
        }
        unsafe { block.cast::<*mut u8>().write(c.head) };
        c.head = block;
        c.len += 1;
    }

    #[inline]
    unsafe fn realloc(&self, block: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        let Ok(new_layout) = Layout::from_size_align(new_size, layout.align()) else {
            return ptr::null_mut();
        };
        match (class_of(layout), class_of(new_layout)) {
            // Neither is cached: the backing allocator may grow it in place.
            (None, None) => unsafe { self.backing.realloc(block, layout, new_size) },
            // Same class: the block is already big enough.
            (Some(a), Some(b)) if a == b => block,
            _ => {
                let new = unsafe { self.alloc(new_layout) };
                if !new.is_null() {
                    let n = layout.size().min(new_size);
                    unsafe {
                        ptr::copy_nonoverlapping(block, new, n);
                        self.dealloc(block, layout);
                    }
                }
                new
            }
        }
    }
}

#[cfg(test)]
#[allow(unsafe_code)]
mod tests {
    use super::*;
    use std::alloc::System;
    use std::cell::Cell;

    /// Counts what reaches the backing allocator.
    #[derive(Default)]
    struct Counting {
        allocs: Cell<usize>,
        frees: Cell<usize>,
    }
    unsafe impl Sync for Counting {}
    unsafe impl GlobalAlloc for Counting {
        unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
            self.allocs.set(self.allocs.get() + 1);
            unsafe { System.alloc(layout) }
        }
        unsafe fn dealloc(&self, p: *mut u8, layout: Layout) {
            self.frees.set(self.frees.get() + 1);
            unsafe { System.dealloc(p, layout) }
        }
    }

    fn layout(size: usize, align: usize) -> Layout {
        Layout::from_size_align(size, align).unwrap()
    }

    #[test]
    fn classes() {
        assert_eq!(class_of(layout(1, 1)), Some(0));
        assert_eq!(class_of(layout(16, 8)), Some(0));
        assert_eq!(class_of(layout(17, 1)), Some(1));
        assert_eq!(class_of(layout(256, 16)), Some(15));
        assert_eq!(class_of(layout(257, 1)), None);
        assert_eq!(class_of(layout(8, 32)), None);
        assert_eq!(class_of(layout(0, 1)), None);
    }

    #[test]
    fn freed_blocks_are_reused_within_their_class() {
        let a = SmallCache::new(Counting::default());
        unsafe {
            let p = a.alloc(layout(20, 1));
            p.write_bytes(0xab, 20);
            a.dealloc(p, layout(20, 1));
            // 17..=32 bytes share the class: the same block comes back.
            let q = a.alloc(layout(32, 8));
            assert_eq!(p, q);
            assert_eq!(q as usize % GRANULE, 0);
            // Another class does not take it.
            let r = a.alloc(layout(40, 1));
            assert_ne!(r, q);
            a.dealloc(q, layout(32, 8));
            a.dealloc(r, layout(40, 1));
        }
        assert_eq!(a.backing.allocs.get(), 2);
        assert_eq!(a.backing.frees.get(), 0);
    }

    #[test]
    fn the_cache_is_bounded_and_large_blocks_pass_through() {
        let a = SmallCache::new(Counting::default());
        let n = MAX_CACHED as usize + 10;
        unsafe {
            let blocks: Vec<*mut u8> = (0..n).map(|_| a.alloc(layout(64, 8))).collect();
            for &b in &blocks {
                a.dealloc(b, layout(64, 8));
            }
            assert_eq!(a.backing.frees.get(), 10);
            let big = a.alloc(layout(4096, 8));
            a.dealloc(big, layout(4096, 8));
        }
        assert_eq!(a.backing.allocs.get(), n + 1);
        assert_eq!(a.backing.frees.get(), 11);
    }

    #[test]
    fn realloc_keeps_the_bytes_across_classes_and_sizes() {
        let a = SmallCache::new(Counting::default());
        unsafe {
            let mut p = a.alloc(layout(10, 1));
            for i in 0..10 {
                p.add(i).write(i as u8);
            }
            let mut size = 10;
            for new_size in [12, 30, 200, 1000, 5000, 100, 7] {
                p = a.realloc(p, layout(size, 1), new_size);
                assert!(!p.is_null());
                for i in 0..10.min(new_size) {
                    assert_eq!(
                        p.add(i).read(),
                        i as u8,
                        "byte {i} after {size} -> {new_size}"
                    );
                }
                size = new_size;
            }
            a.dealloc(p, layout(size, 1));
        }
    }
}
