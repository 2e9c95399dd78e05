//! Password hashing off the async workers, within a bound.
//!
//! An argon2 verification costs tens of milliseconds of one core and 19 MiB
//! ([`crate::password`]). Run on the async worker threads, 32 concurrent bad
//! logins held every worker, so health checks and blob streams stalled
//! behind them (issue 11: `/healthz` at a 113 ms median). Here each hash
//! runs on the blocking pool, and a [`HashingPool`] bounds the attempts in
//! flight:
//!
//! - at most `running` hashes at once (by default half the cores, at least
//!   one, so logins never take the whole machine),
//! - at most `waiting` more attempts queue for a turn, each for at most
//!   `max_wait`,
//! - anything beyond is refused at once with [`Busy`], which the server
//!   answers with `429` and `Retry-After`, before any hashing.
//!
//! A hash that has started always finishes and keeps its turn until then,
//! even when the client that asked for it has gone, so the bound holds
//! whatever clients do.

use std::sync::Arc;
use std::time::Duration;

use tokio::sync::Semaphore;

/// No turn to hash was free within the bound: retry after this long.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Busy(pub Duration);

/// How long a refused attempt is told to wait: a few hash times, long
/// enough for the queue to have moved.
pub const BUSY_RETRY_AFTER: Duration = Duration::from_secs(1);

/// The bound on password hashing; one per server, shared by every login.
#[derive(Debug)]
pub struct HashingPool {
    /// Attempts admitted: hashing or waiting for a turn.
    admitted: Arc<Semaphore>,
    /// Turns to hash.
    running: Arc<Semaphore>,
    /// How long an admitted attempt waits for a turn.
    max_wait: Duration,
    /// `running + waiting`: the admitted attempts at most.
    capacity: usize,
}

impl HashingPool {
    /// A pool of `running` turns, `waiting` places in the queue, and
    /// `max_wait` in it at most.
    pub fn new(running: usize, waiting: usize, max_wait: Duration) -> HashingPool {
        let running = running.max(1);
        HashingPool {
            admitted: Arc::new(Semaphore::new(running + waiting)),
            running: Arc::new(Semaphore::new(running)),
            max_wait,
            capacity: running + waiting,
        }
    }

    /// The default for this machine: half its cores hash (at least one),
    /// four attempts per turn queue for up to a second.
    pub fn for_this_machine() -> HashingPool {
        let cores = std::thread::available_parallelism().map_or(1, usize::from);
        let running = (cores / 2).max(1);
        HashingPool::new(running, 4 * running, Duration::from_secs(1))
    }

    /// Runs `work` (a hash) on the blocking pool when a turn is free.
    /// A panic in `work` is resumed here.
    pub async fn run<T, F>(&self, work: F) -> Result<T, Busy>
    where
        T: Send + 'static,
        F: FnOnce() -> T + Send + 'static,
    {
        let admitted = Arc::clone(&self.admitted)
            .try_acquire_owned()
            .map_err(|_| Busy(BUSY_RETRY_AFTER))?;
        let turn = tokio::time::timeout(self.max_wait, Arc::clone(&self.running).acquire_owned())
            .await
            .map_err(|_| Busy(BUSY_RETRY_AFTER))?
            .expect("the pool's semaphores are never closed");
        let task = tokio::task::spawn_blocking(move || {
            // Both permits go with the work, so an abandoned attempt still
            // counts until its hash is done.
            let _held = (admitted, turn);
            work()
        });
        match task.await {
            Ok(value) => Ok(value),
            Err(error) => std::panic::resume_unwind(error.into_panic()),
        }
    }

    /// Attempts hashing or waiting now, for tests and metrics.
    pub fn in_flight(&self) -> usize {
        self.capacity - self.admitted.available_permits()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::mpsc;

    /// A job that runs until told to finish.
    fn held(
        pool: &Arc<HashingPool>,
    ) -> (mpsc::Sender<()>, tokio::task::JoinHandle<Result<u32, Busy>>) {
        let (finish, wait) = mpsc::channel::<()>();
        let pool = Arc::clone(pool);
        let job = tokio::spawn(async move {
            pool.run(move || {
                let _ = wait.recv();
                7
            })
            .await
        });
        (finish, job)
    }

    async fn until_in_flight(pool: &HashingPool, count: usize) {
        // Polled with a bound; the job may run on another worker thread.
        for _ in 0..5000 {
            if pool.in_flight() == count {
                return;
            }
            tokio::time::sleep(Duration::from_millis(1)).await;
        }
        panic!("in flight: {} instead of {count}", pool.in_flight());
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn attempts_beyond_the_queue_are_refused_at_once() {
        let pool = Arc::new(HashingPool::new(1, 1, Duration::from_secs(60)));
        let (finish_first, first) = held(&pool);
        until_in_flight(&pool, 1).await;
        let (finish_second, second) = held(&pool);
        until_in_flight(&pool, 2).await;
        // Running one, waiting one: a third is refused without waiting.
        assert_eq!(pool.run(|| 0).await, Err(Busy(BUSY_RETRY_AFTER)));
        finish_first.send(()).unwrap();
        assert_eq!(first.await.unwrap(), Ok(7));
        finish_second.send(()).unwrap();
        assert_eq!(second.await.unwrap(), Ok(7));
        assert_eq!(pool.in_flight(), 0);
        assert_eq!(pool.run(|| 1).await, Ok(1));
    }

    /// An attempt admitted to the queue waits at most `max_wait` for a turn,
    /// then is refused; the running hash is not disturbed.
    #[tokio::test]
    async fn waiting_is_bounded() {
        let pool = Arc::new(HashingPool::new(1, 4, Duration::from_millis(50)));
        let (finish, first) = held(&pool);
        until_in_flight(&pool, 1).await;
        assert_eq!(pool.run(|| 0).await, Err(Busy(BUSY_RETRY_AFTER)));
        assert_eq!(pool.in_flight(), 1);
        finish.send(()).unwrap();
        assert_eq!(first.await.unwrap(), Ok(7));
    }

    #[test]
    fn at_least_one_turn() {
        let pool = HashingPool::new(0, 0, Duration::ZERO);
        assert_eq!(pool.running.available_permits(), 1);
        assert!(HashingPool::for_this_machine().running.available_permits() >= 1);
    }
}
