//! How the process hands memory back to the system (glibc on Linux; a no-op
//! elsewhere). An identity provider idles most of the time between bursts of
//! sign-ins, and each argon2 hash takes its whole memory cost (19 MiB by
//! default) at once: left to glibc's defaults, those blocks stay resident
//! for good after the first sign-in of each thread.

/// Allocations from this size up are mapped on their own and unmapped when
/// freed, so an argon2 block never stays behind in a heap.
pub const MMAP_THRESHOLD_BYTES: i32 = 128 * 1024;

/// Fixes glibc's mmap threshold at `MMAP_THRESHOLD_BYTES`. glibc raises the
/// threshold to the size of any mapped block freed, after which argon2's
/// blocks come from the heaps and are never returned. Call once, first thing
/// in `main`, before threads start.
pub fn fix_mmap_threshold() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: mallopt only changes allocator parameters; it is called before
    // any other thread exists.
    unsafe {
        libc::mallopt(libc::M_MMAP_THRESHOLD, MMAP_THRESHOLD_BYTES);
    }
}

/// Returns the free pages of every heap to the system (glibc's
/// `malloc_trim`).
pub fn release_free_memory() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: malloc_trim only releases memory the allocator holds free.
    unsafe {
        libc::malloc_trim(0);
    }
}

/// When free heap pages are first returned after start-up (the HTTP workers
/// build their routing tables in the first moments), and how often after.
const FIRST_TRIM: std::time::Duration = std::time::Duration::from_secs(1);
const TRIM_INTERVAL: std::time::Duration = std::time::Duration::from_secs(60);

/// Returns free heap pages to the system `FIRST_TRIM` after start-up and
/// every `TRIM_INTERVAL` after, from a thread of its own, so the memory of a
/// burst (start-up, a storm of sign-ins) does not stay resident once idle.
pub fn spawn_trimmer() {
    let spawned = std::thread::Builder::new()
        .name("memory-trim".to_owned())
        .spawn(|| {
            std::thread::sleep(FIRST_TRIM);
            loop {
                release_free_memory();
                std::thread::sleep(TRIM_INTERVAL);
            }
        });
    if let Err(e) = spawned {
        tracing::warn!(error = %e, "memory trimming thread not started");
    }
}
