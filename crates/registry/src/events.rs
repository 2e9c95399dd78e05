//! The event stream, read by consumers: every state change, in order, at
//! least once, with one node at a time handling each consumer's events.
//!
//! A consumer (scan-on-push, webhooks, replication, the audit trail, quota
//! accounting, `berth events tail --consumer`) implements [`EventConsumer`]
//! and is driven by a [`ConsumerRunner`]: the runner takes the consumer's
//! lease in the metadata store, reads the events after the consumer's
//! durable position, hands them over in batches, and moves the position
//! after each batch is handled. A consumer never hooks into the write path,
//! so a slow or failing consumer never slows a push; it only falls behind.
//!
//! Delivery is at least once: a node that dies after handling a batch and
//! before moving the position, or that loses its lease while handling,
//! leaves the batch to be handled again (by itself or another node), so
//! handling must be idempotent. Events are kept for `event_retention`
//! (`Registry::purge_old_events`), so a consumer stopped for longer than
//! that misses what was deleted meanwhile.

use std::sync::Arc;
use std::time::Duration;

use berth_meta::{Event, EventCursor, MetaError, Timestamp};
use tokio::sync::Mutex;
use tokio_util::sync::CancellationToken;

use crate::{Registry, RegistryError};

/// A consumer's error: logged by the runner, which keeps the position where
/// it was and offers the batch again later.
pub type ConsumerError = Box<dyn std::error::Error + Send + Sync>;

/// What a consumer does with the events it is handed.
#[async_trait::async_trait]
pub trait EventConsumer: Send + Sync + 'static {
    /// Handles `events`, which follow each other in the stream's order with
    /// none missing since the previous batch. The same events may come again
    /// (see the module documentation).
    async fn handle(&self, events: &[Event]) -> Result<(), ConsumerError>;
}

/// How a runner reads and leases.
#[derive(Clone, Debug)]
pub struct ConsumerOptions {
    /// Events per batch handed to the consumer.
    pub batch_size: usize,
    /// How long the consumer's lease lasts; the runner renews it between
    /// batches, so a node that dies blocks others at most this long.
    pub lease: Duration,
    /// How long [`ConsumerRunner::run`] waits before looking again once it
    /// has caught up.
    pub poll_interval: Duration,
    /// Where a consumer seen for the first time starts: after this position
    /// (0, the default, is the oldest event kept).
    pub start_after: i64,
}

impl Default for ConsumerOptions {
    fn default() -> Self {
        ConsumerOptions {
            batch_size: 100,
            lease: Duration::from_secs(30),
            poll_interval: Duration::from_secs(1),
            start_after: 0,
        }
    }
}

/// What one pass of a runner did.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ConsumerPass {
    /// Events handed to the consumer and recorded as handled.
    pub handled: usize,
    /// Another node holds the consumer's lease, so this pass did nothing.
    pub lease_busy: bool,
    /// The consumer's position after the pass.
    pub position: i64,
}

/// Batches one pass hands over at most before it returns (and the runner
/// looks at its cancellation token again).
const BATCHES_PER_PASS: usize = 100;

/// Drives one named consumer on this node.
pub struct ConsumerRunner {
    registry: Registry,
    name: String,
    consumer: Arc<dyn EventConsumer>,
    options: ConsumerOptions,
    /// Where this node read up to, and until when it holds the lease.
    state: Mutex<RunnerState>,
}

#[derive(Default)]
struct RunnerState {
    /// Where this node read up to, with the gap it may be waiting at (which
    /// only lives in memory; the durable position is the store's).
    cursor: Option<EventCursor>,
    /// The expiry of the lease this node last took, by the registry's
    /// clock; `None` when it may hold none.
    lease_until: Option<Timestamp>,
}

impl ConsumerRunner {
    pub fn new(
        registry: Registry,
        name: impl Into<String>,
        consumer: Arc<dyn EventConsumer>,
        options: ConsumerOptions,
    ) -> ConsumerRunner {
        ConsumerRunner {
            registry,
            name: name.into(),
            consumer,
            options,
            state: Mutex::default(),
        }
    }

    pub fn name(&self) -> &str {
        &self.name
    }

    fn holder(&self) -> &str {
        &self.registry.config().node_name
    }

    fn lease_secs(&self) -> i64 {
        self.options.lease.as_secs().max(1) as i64
    }

    /// Takes the consumer's lease, or renews it once less than half of it
    /// is left (renewed every pass, it was a commit of its own per pass
    /// while pushes came: 45 for 20 images), and returns the consumer's
    /// position: `None` while another node holds the lease. While this node's lease runs, nobody else
    /// moves the position, so the remembered cursor's is the store's.
    async fn hold_lease(
        &self,
        state: &mut RunnerState,
        cursor: Option<&EventCursor>,
    ) -> Result<Option<i64>, RegistryError> {
        let now = self.registry.now();
        let lease = self.lease_secs();
        if let (Some(until), Some(cursor)) = (state.lease_until, cursor) {
            if until.saturating_sub(now) > lease / 2 {
                return Ok(Some(cursor.position));
            }
        }
        let taken = self
            .registry
            .meta()
            .acquire_consumer(
                &self.name,
                self.holder(),
                self.options.start_after,
                now,
                lease,
            )
            .await;
        // Unknown after a failure: taken again next time.
        state.lease_until = match &taken {
            Ok(Some(_)) => Some(now.saturating_add(lease)),
            _ => None,
        };
        Ok(taken?)
    }

    /// Takes (or renews) the consumer's lease and hands every event after
    /// its position to the consumer, batch by batch (at most a bounded number
    /// of batches), moving the position after each. A consumer error ends
    /// the pass with the position after the last batch handled.
    pub async fn run_once(&self) -> Result<ConsumerPass, RegistryError> {
        let meta = self.registry.meta();
        let mut state = self.state.lock().await;
        // Taken out for the pass: a pass that fails forgets it (and takes
        // the lease again next time).
        let remembered = state.cursor.take();
        let Some(position) = self.hold_lease(&mut state, remembered.as_ref()).await? else {
            return Ok(ConsumerPass {
                lease_busy: true,
                ..ConsumerPass::default()
            });
        };
        // The gap this node was waiting at is worth keeping only if nobody
        // moved the consumer meanwhile.
        let mut cursor = match remembered {
            Some(cursor) if cursor.position == position => cursor,
            _ => EventCursor::after(position),
        };
        let mut pass = ConsumerPass {
            position,
            ..ConsumerPass::default()
        };
        for batch in 0..BATCHES_PER_PASS {
            // Renewed between batches, so a long pass keeps its lease.
            if batch > 0 && self.hold_lease(&mut state, Some(&cursor)).await?.is_none() {
                break;
            }
            let page = meta.read_events(&cursor, self.options.batch_size).await?;
            if page.events.is_empty() {
                cursor = page.next;
                break;
            }
            self.consumer
                .handle(&page.events)
                .await
                .map_err(|error| RegistryError::Consumer(format!("{}: {error}", self.name)))?;
            match meta
                .advance_consumer(
                    &self.name,
                    self.holder(),
                    page.next.position,
                    self.registry.now(),
                )
                .await
            {
                Ok(()) => {}
                // Another node took over (this one was too slow to renew):
                // it starts from the last position recorded, so the batch
                // is handled again there, at least once as promised.
                Err(MetaError::LeaseLost) => {
                    state.lease_until = None;
                    break;
                }
                Err(error) => return Err(error.into()),
            }
            pass.handled += page.events.len();
            pass.position = page.next.position;
            cursor = page.next;
        }
        state.cursor = Some(cursor);
        Ok(pass)
    }

    /// Runs passes until `shutdown` fires, waiting `poll_interval` whenever
    /// a pass found nothing to do (or failed), then gives up the lease so
    /// another node need not wait for it to expire.
    pub async fn run(&self, shutdown: CancellationToken) {
        loop {
            let idle = match self.run_once().await {
                Ok(pass) => pass.handled == 0,
                Err(error) => {
                    tracing::warn!(consumer = %self.name, %error, "event consumer failed");
                    true
                }
            };
            if idle {
                tokio::select! {
                    _ = shutdown.cancelled() => break,
                    _ = tokio::time::sleep(self.options.poll_interval) => {}
                }
            } else if shutdown.is_cancelled() {
                break;
            }
        }
        self.release().await;
    }

    /// Gives up this node's lease on the consumer (keeping its position),
    /// so another node or run need not wait for it to expire.
    pub async fn release(&self) {
        self.state.lock().await.lease_until = None;
        if let Err(error) = self
            .registry
            .meta()
            .release_consumer(&self.name, self.holder())
            .await
        {
            tracing::warn!(consumer = %self.name, %error, "could not release a consumer's lease");
        }
    }
}

/// The job lease name of event retention.
const EVENT_RETENTION_JOB: &str = "event-retention";

/// Events one retention batch deletes.
const RETENTION_BATCH: usize = 1000;

impl Registry {
    /// Reads at most `limit` events after `cursor`: see
    /// [`berth_meta::EventStore::read_events`].
    pub async fn read_events(
        &self,
        cursor: &EventCursor,
        limit: usize,
    ) -> Result<berth_meta::EventPage, RegistryError> {
        Ok(self.meta().read_events(cursor, limit).await?)
    }

    /// The newest event's position, 0 if there is none.
    pub async fn last_event_position(&self) -> Result<i64, RegistryError> {
        Ok(self.meta().last_event_position().await?)
    }

    /// The position just before the first event written at or after `at`:
    /// a cursor there reads from that moment on.
    pub async fn event_position_before(
        &self,
        at: berth_meta::Timestamp,
    ) -> Result<i64, RegistryError> {
        Ok(match self.meta().first_event_since(at).await? {
            Some(position) => position - 1,
            None => self.meta().last_event_position().await?,
        })
    }

    /// Deletes the events older than `event_retention`, in batches; returns
    /// how many.
    pub async fn purge_old_events(&self) -> Result<u64, RegistryError> {
        let before = self.now() - self.config().event_retention.as_secs() as i64;
        let mut deleted = 0;
        loop {
            let batch = self
                .meta()
                .delete_events_before(before, RETENTION_BATCH)
                .await?;
            deleted += batch;
            if batch < RETENTION_BATCH as u64 {
                return Ok(deleted);
            }
        }
    }

    /// Runs [`Registry::purge_old_events`] every `interval` until `shutdown`
    /// fires, on one node at a time (a job lease, as for the upload purge).
    pub async fn run_event_retention(&self, interval: Duration, shutdown: CancellationToken) {
        self.every_interval_under_lease(
            EVENT_RETENTION_JOB,
            "event retention",
            interval,
            shutdown,
            || async {
                match self.purge_old_events().await {
                    Ok(0) => {}
                    Ok(deleted) => tracing::info!(deleted, "deleted old events"),
                    Err(error) => tracing::warn!(%error, "event retention failed"),
                }
            },
        )
        .await
    }
}
