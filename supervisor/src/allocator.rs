//! How berthd uses glibc's malloc: a long-lived daemon's memory should come back after a
//! burst of work (a pull inflates and writes hundreds of megabytes through 1 MiB buffers on
//! several threads).
//!
//! glibc's defaults work against that. Each thread that allocates may get its own arena (up
//! to 8 per core), and every freed buffer stays in its arena; and the mmap threshold rises to
//! the size of the largest buffer freed, so after the first pull even 1 MiB buffers come from
//! the arenas instead of fresh mappings that a free hands back. Measured: RSS grew pull after
//! pull and never came down (see `berth-bench-pull`'s long-lived scenario).

#![allow(unsafe_code)]

/// Allocations from this size up are their own mappings, unmapped when freed. Setting it also
/// stops glibc from raising it.
const MMAP_THRESHOLD: i32 = 128 * 1024;
/// Arenas at most: two cores' worth of concurrent allocators without contention.
const ARENA_MAX: i32 = 2;

/// Sets the allocator up for berthd. Call first thing in `main`, before any thread starts.
pub fn tune() {
    #[cfg(target_env = "gnu")]
    // SAFETY: mallopt only changes malloc's parameters; it is called before other threads run.
    unsafe {
        libc::mallopt(libc::M_ARENA_MAX, ARENA_MAX);
        libc::mallopt(libc::M_MMAP_THRESHOLD, MMAP_THRESHOLD);
    }
}

/// Hands the free memory of every arena back to the kernel (after a pull, a collection).
pub fn release_free_memory() {
    #[cfg(target_env = "gnu")]
    // SAFETY: malloc_trim is thread-safe and only returns unused pages.
    unsafe {
        libc::malloc_trim(0);
    }
}
