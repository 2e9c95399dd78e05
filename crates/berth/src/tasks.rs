//! The background jobs of a process, started and joined in one place.
//!
//! Every job (upload purge, garbage collection, key reload, memory return,
//! and those to come: event consumers, retention, the scanner) is started
//! with [`TaskSet::spawn`], which hands it the set's cancellation token.
//! [`TaskSet::shutdown`] cancels the token and waits for every job up to a
//! deadline; a job still running then is aborted and named, so a job that
//! ignores its token cannot keep the process from exiting.

use std::future::Future;

use tokio::task::JoinHandle;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

/// Background jobs sharing one cancellation token.
#[derive(Default)]
pub struct TaskSet {
    cancel: CancellationToken,
    tasks: Vec<(&'static str, JoinHandle<()>)>,
}

impl TaskSet {
    /// Starts `job` with the set's token; `name` is how a job that misses
    /// the shutdown deadline is reported.
    pub fn spawn<F, Fut>(&mut self, name: &'static str, job: F)
    where
        F: FnOnce(CancellationToken) -> Fut,
        Fut: Future<Output = ()> + Send + 'static,
    {
        let handle = tokio::spawn(job(self.cancel.clone()));
        self.tasks.push((name, handle));
    }

    /// Tells every job to stop, without waiting (shutdown begins; the
    /// jobs wind down while requests in flight finish).
    pub fn cancel(&self) {
        self.cancel.cancel();
    }

    /// Cancels every job and waits for each until `deadline`. Returns the
    /// names of the jobs that had not finished by then (they are aborted)
    /// or that panicked.
    pub async fn shutdown(self, deadline: Instant) -> Vec<&'static str> {
        self.cancel.cancel();
        let mut unfinished = Vec::new();
        for (name, mut handle) in self.tasks {
            match tokio::time::timeout_at(deadline, &mut handle).await {
                Ok(Ok(())) => {}
                Ok(Err(error)) => {
                    tracing::error!(job = name, %error, "background job failed");
                    unfinished.push(name);
                }
                Err(_) => {
                    handle.abort();
                    unfinished.push(name);
                }
            }
        }
        unfinished
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    /// Jobs that honour their token finish; one that ignores it is aborted
    /// at the deadline and named. Time is paused, so the deadline passes
    /// without waiting for it.
    #[tokio::test(start_paused = true)]
    async fn shutdown_joins_jobs_and_aborts_those_past_the_deadline() {
        let mut tasks = TaskSet::default();
        let (finished_tx, mut finished_rx) = tokio::sync::mpsc::unbounded_channel();
        for name in ["purge", "gc"] {
            let finished = finished_tx.clone();
            tasks.spawn(name, move |cancel| async move {
                cancel.cancelled().await;
                finished.send(name).unwrap();
            });
        }
        let (dropped_tx, dropped_rx) = tokio::sync::oneshot::channel::<()>();
        tasks.spawn("stuck", move |_cancel| async move {
            let _dropped_when_aborted = dropped_tx;
            std::future::pending::<()>().await;
        });
        let deadline = Instant::now() + Duration::from_secs(30);
        let unfinished = tasks.shutdown(deadline).await;
        assert_eq!(unfinished, vec!["stuck"]);
        assert!(Instant::now() >= deadline);
        let mut finished = vec![
            finished_rx.recv().await.unwrap(),
            finished_rx.recv().await.unwrap(),
        ];
        finished.sort();
        assert_eq!(finished, vec!["gc", "purge"]);
        // The aborted job was dropped, not left running.
        assert!(dropped_rx.await.is_err());
    }

    #[tokio::test(start_paused = true)]
    async fn a_set_whose_jobs_stop_at_once_returns_before_the_deadline() {
        let mut tasks = TaskSet::default();
        tasks.spawn("quick", |cancel| async move { cancel.cancelled().await });
        let start = Instant::now();
        let unfinished = tasks.shutdown(start + Duration::from_secs(30)).await;
        assert!(unfinished.is_empty());
        assert!(Instant::now() < start + Duration::from_secs(30));
    }
}
