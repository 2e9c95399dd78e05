//! Allocator settings that keep a long-running server's resident memory
//! close to what it uses.

use tokio_util::sync::CancellationToken;

/// Makes glibc serve every allocation of 1 MiB or more with its own memory
/// map, returned to the system when freed; keep up to 2 MiB of freed memory
/// at the top of a heap, trimmed back to 1 MiB beyond that; and use at most
/// one heap ("arena") per processor the process may run on (at least two).
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
/// A heap now keeps 1 MiB at its top whenever it gives memory back (the top
/// pad), which holds a stream's receive buffers, and gives back only once
/// 2 MiB are free there: a cold pull takes as few page faults as with the
/// 8 MiB threshold this replaced.
///
/// The top of each heap is what [`return_freed_memory`] cannot reach:
/// `malloc_trim` releases free pages inside every heap but shrinks only
/// the main heap from its top. glibc gives each thread that allocates while
/// the others hold their heaps a heap of its own, up to eight per
/// processor, and a burst of uploads runs on dozens of blocking threads;
/// with an 8 MiB threshold the sixteen heaps of a two-processor machine
/// kept 8 MB they no longer used after the benchmark's scenarios, and a
/// later burst came on top of it. One heap per processor is as many as can
/// allocate at the same moment without waiting for each other.
pub fn tune_malloc() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    {
        let arenas = arena_limit(std::thread::available_parallelism().map_or(1, |n| n.get()));
        // SAFETY: mallopt only changes allocator tuning; it is called first
        // thing in `main`, before any other thread exists.
        unsafe {
            libc::mallopt(libc::M_MMAP_THRESHOLD, 1024 * 1024);
            libc::mallopt(libc::M_TRIM_THRESHOLD, 2 * 1024 * 1024);
            libc::mallopt(libc::M_TOP_PAD, 1024 * 1024);
            libc::mallopt(libc::M_ARENA_MAX, arenas);
        }
    }
}

/// How many heaps glibc may make for a process that may run on
/// `processors` processors at once: one each, and at least two, so that the
/// runtime's worker threads on a one-processor machine do not wait for the
/// blocking threads' allocations.
#[cfg(all(target_os = "linux", target_env = "gnu"))]
fn arena_limit(processors: usize) -> i32 {
    i32::try_from(processors.max(2)).unwrap_or(i32::MAX)
}

/// Every ten seconds, hands memory the allocator holds but no longer uses
/// back to the system (`malloc_trim`), until `token` is cancelled.
///
/// Request bodies arrive in 64 KiB pieces, which glibc serves from its heaps;
/// after a burst of concurrent uploads (each holding up to one S3 part of
/// such pieces) the freed pieces are scattered through the heaps, and glibc
/// only shrinks a heap from its top, so the server would keep its peak
/// memory indefinitely. `malloc_trim` releases the free pages inside every
/// heap, though not the top of a thread's heap, which [`tune_malloc`]
/// bounds; it takes the allocator's locks briefly, so it runs on the
/// blocking pool and rarely.
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

#[cfg(all(test, target_os = "linux", target_env = "gnu"))]
mod tests {
    use super::arena_limit;

    #[test]
    fn one_heap_per_processor_and_at_least_two() {
        for (processors, heaps) in [
            (0, 2),
            (1, 2),
            (2, 2),
            (3, 3),
            (64, 64),
            (usize::MAX, i32::MAX),
        ] {
            assert_eq!(arena_limit(processors), heaps, "{processors} processors");
        }
    }
}
