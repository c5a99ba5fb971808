//! Hints that bring memory into the processor's cache ahead of its use (issue #17).
//!
//! A 10,000-target fleet is 10,000 targets, manifests, records and parse results, each its own
//! allocation scattered over the heap. A loop that visits them in turn waits on each first read
//! of the next one; asking for the next ones a few iterations early lets those reads overlap the
//! work on the current one. A fetch is only a hint: it reads nothing into the program, cannot
//! fault whatever the address, and nothing computed depends on it.

/// How many items ahead of the one a loop is at it asks for an item's own memory: far enough
/// for the reads to arrive before the item is reached, near enough for them to stay in the
/// cache (the same for every loop; not tuned further).
pub const AHEAD: usize = 8;

/// How many items ahead a loop asks for what an item points to: read from the item's own
/// memory, asked for [`AHEAD`] items before, which has arrived by then.
pub const POINTED_AHEAD: usize = 4;

/// Asks for the whole of `*value` to be brought into the cache, without waiting for it.
pub fn fetch<T>(value: *const T) {
    fetch_bytes(value.cast::<u8>(), std::mem::size_of::<T>());
}

/// Asks for the reference counts of the `Arc` holding `value` to be brought into the cache,
/// for a clone a few items later: in the standard library's layout they lie just before the
/// value (were that to change, the hint would only be wasted).
pub fn fetch_counts<T>(value: &std::sync::Arc<T>) {
    let counts = 2 * std::mem::size_of::<usize>();
    fetch_bytes(std::sync::Arc::as_ptr(value).cast::<u8>().wrapping_sub(counts), counts);
}

/// Asks for the `len` bytes from `start` to be brought into the cache, without waiting for them
/// (x86-64's `prefetcht0`, one per cache line they touch; nothing on other processors).
pub fn fetch_bytes(start: *const u8, len: usize) {
    #[cfg(target_arch = "x86_64")]
    {
        use std::arch::x86_64::{_MM_HINT_T0, _mm_prefetch};
        const LINE: usize = 64;
        if len == 0 {
            return;
        }
        // From the start of the line `start` lies in to the line of the last byte.
        let first = start.wrapping_sub(start as usize % LINE);
        let span = start as usize % LINE + len;
        for offset in (0..span).step_by(LINE) {
            // SAFETY: a prefetch is a hint to the cache: it dereferences nothing and cannot
            // fault, and `wrapping_add` computes the address without claiming it is in bounds.
            unsafe { _mm_prefetch::<_MM_HINT_T0>(first.wrapping_add(offset).cast::<i8>()) };
        }
    }
    #[cfg(not(target_arch = "x86_64"))]
    let _ = (start, len);
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A hint never faults: not for no address, a freed one, one past the end of the address
    /// space's top line, or an empty or unaligned span.
    #[test]
    fn fetching_any_address_is_harmless() {
        let freed = Box::into_raw(Box::new([0u8; 200]));
        // SAFETY: the box was made just above and is freed once.
        drop(unsafe { Box::from_raw(freed) });
        for (start, len) in [
            (std::ptr::null::<u8>(), 4096),
            (freed.cast::<u8>().cast_const(), 200),
            (usize::MAX as *const u8, 64),
            (3 as *const u8, 0),
            (std::ptr::dangling::<u8>(), 130),
        ] {
            fetch_bytes(start, len);
        }
        let shared = std::sync::Arc::new(7u32);
        fetch_counts(&shared);
        fetch(&*shared);
        assert_eq!(*shared, 7, "nothing was written");
    }
}
