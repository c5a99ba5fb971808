//! Hints that bring memory into the processor's cache ahead of its use (issue #17).
//!
//! A 10,000-target fleet is 10,000 targets, manifests, records and parse results, each its own
//! allocation scattered over the heap. A loop that visits them in turn waits on each first read
//! of the next one; asking for the next ones a few iterations early lets those reads overlap the
//! work on the current one. A fetch is only a hint: it reads nothing into the program, cannot
//! fault whatever the address, and nothing computed depends on it.

/// Asks for the whole of `*value` to be brought into the cache, without waiting for it.
pub fn fetch<T>(value: *const T) {
    fetch_bytes(value.cast::<u8>(), std::mem::size_of::<T>());
}

/// Asks for the `len` bytes from `start` to be brought into the cache, without waiting for them
/// (x86-64's `prefetcht0`, one per cache line; nothing on other processors).
pub fn fetch_bytes(start: *const u8, len: usize) {
    #[cfg(target_arch = "x86_64")]
    {
        use std::arch::x86_64::{_MM_HINT_T0, _mm_prefetch};
        const LINE: usize = 64;
        for offset in (0..len).step_by(LINE) {
            // SAFETY: a prefetch is a hint to the cache: it dereferences nothing and cannot
            // fault, and `wrapping_add` computes the address without claiming it is in bounds.
            unsafe { _mm_prefetch::<_MM_HINT_T0>(start.wrapping_add(offset).cast::<i8>()) };
        }
    }
    #[cfg(not(target_arch = "x86_64"))]
    let _ = (start, len);
}
