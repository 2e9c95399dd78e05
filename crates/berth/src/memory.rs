//! Allocator settings that keep a long-running server's resident memory
//! close to what it uses.

use tokio_util::sync::CancellationToken;

/// Makes glibc serve every allocation of 1 MiB or more with its own memory
/// map, returned to the system when freed, and keep up to 8 MiB of freed
/// memory at the top of a heap for the next allocations.
///
/// By default glibc raises the map threshold each time such a block is
/// freed (up to 32 MiB), after which large buffers come from the heap and
/// stay resident: after a burst of concurrent uploads the server kept
/// hundreds of megabytes it no longer used. Large allocations are rare on
/// the request path (request bodies arrive in 64 KiB reads), so the system
/// calls this costs are few.
///
/// Fixing the map threshold also fixes the trim threshold at its 128 KiB
/// default, so a heap gave back its top as soon as that much was free, and
/// the next buffers touched fresh pages: streaming a blob from upstream
/// while storing it took a page fault (and the kernel's zeroing) for every
/// 4 KiB received, about a tenth of a cold pull's CPU (docs/performance.md).
/// 8 MiB holds a stream's working set (a write batch of up to 512 KiB, the
/// connection's read buffers, what its readers have yet to send) with room
/// to spare, and bounds what a heap keeps; resident memory still comes
/// back, as [`return_freed_memory`] trims every heap every ten seconds
/// whatever this threshold.
pub fn tune_malloc() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: mallopt only changes allocator tuning; it is called first
    // thing in `main`, before any other thread exists.
    unsafe {
        libc::mallopt(libc::M_MMAP_THRESHOLD, 1024 * 1024);
        libc::mallopt(libc::M_TRIM_THRESHOLD, 8 * 1024 * 1024);
    }
}

/// Every ten seconds, hands memory the allocator holds but no longer uses
/// back to the system (`malloc_trim`), until `token` is cancelled.
///
/// Request bodies arrive in 64 KiB pieces, which glibc serves from its heaps;
/// after a burst of concurrent uploads (each holding up to one S3 part of
/// such pieces) the freed pieces are scattered through the heaps, and glibc
/// only shrinks a heap from its top, so the server would keep its peak
/// memory indefinitely. `malloc_trim` releases free pages anywhere in the
/// heaps; it takes the allocator's locks briefly, so it runs on the blocking
/// pool and rarely.
pub async fn return_freed_memory(token: CancellationToken) {
    let mut ticks = tokio::time::interval(std::time::Duration::from_secs(10));
    ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = ticks.tick() => {}
            () = token.cancelled() => return,
        }
        #[cfg(all(target_os = "linux", target_env = "gnu"))]
        // SAFETY: malloc_trim has no preconditions; it only returns free
        // pages to the system.
        let _ = tokio::task::spawn_blocking(|| unsafe { libc::malloc_trim(0) }).await;
    }
}
