//! The process's memory allocator: jemalloc, keeping freed pages and asking for huge pages.
//!
//! The ndarray backend allocates a fresh buffer for every intermediate tensor, and at MiniLM's
//! sizes these are tens to hundreds of megabytes (a batch of 64 × 256 tokens: 200 MB of
//! attention scores per layer). glibc serves blocks that large with `mmap` and returns them on
//! free, so every forward pass faulted all of that memory in again, 4 KiB at a time: scoring
//! 64 IMDb rows took 2.9 million page faults and as much system time as arithmetic
//! (docs/benchmarks.md). jemalloc with decay off keeps freed extents for the next batch, and
//! `thp:always` backs them with transparent huge pages where the kernel offers them (its
//! `madvise` mode included). Memory is held at its peak until exit, which a CLI run can afford.
//! `_RJEM_MALLOC_CONF` in the environment overrides this at run time.

#[global_allocator]
static GLOBAL: tikv_jemallocator::Jemalloc = tikv_jemallocator::Jemalloc;

/// jemalloc's compiled-in options (its `malloc_conf`, read as a C string when the allocator
/// starts). `Option<&u8>` has a C pointer's layout; the bytes are NUL-terminated.
#[used]
#[export_name = "_rjem_malloc_conf"]
static MALLOC_CONF: Option<&'static u8> = Some(&b"thp:always,dirty_decay_ms:-1,muzzy_decay_ms:-1\0"[0]);

#[cfg(test)]
mod tests {
    /// jemalloc reads `malloc_conf` by its symbol name: a renamed symbol would leave the
    /// defaults in place without a word.
    #[test]
    fn our_options_are_in_effect() {
        // SAFETY: names of jemalloc options, read with the types its manual gives them.
        let (dirty, thp) = unsafe {
            (
                tikv_jemalloc_ctl::raw::read::<isize>(b"opt.dirty_decay_ms\0").unwrap(),
                std::ffi::CStr::from_ptr(tikv_jemalloc_ctl::raw::read::<*const std::ffi::c_char>(b"opt.thp\0").unwrap()),
            )
        };
        assert_eq!((dirty, thp.to_str().unwrap()), (-1, "always"));
    }
}
