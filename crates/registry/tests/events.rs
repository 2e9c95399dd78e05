//! The event stream through the registry: what a push writes, and the
//! consumer runner's order, leases, at-least-once delivery and retention,
//! on SQLite and the filesystem with a fixed clock.

mod support;

use std::sync::{Arc, Mutex};

use berth_meta::EventStore;

use berth_registry::{
    Actor, ActorKind, Clock, ConsumerError, ConsumerOptions, ConsumerPass, ConsumerRunner, Event,
    EventConsumer, EventKind, Registry,
};
use support::{actor, config, repo, tag, Harness, START};
use tokio_util::sync::CancellationToken;

/// A consumer that keeps what it is handed, and can be told to fail.
#[derive(Default)]
struct Recorder {
    seen: Mutex<Vec<Event>>,
    fail: Mutex<bool>,
}

impl Recorder {
    fn kinds(&self) -> Vec<EventKind> {
        self.seen.lock().unwrap().iter().map(|e| e.kind).collect()
    }

    fn positions(&self) -> Vec<i64> {
        self.seen
            .lock()
            .unwrap()
            .iter()
            .map(|e| e.position)
            .collect()
    }
}

#[async_trait::async_trait]
impl EventConsumer for Recorder {
    async fn handle(&self, events: &[Event]) -> Result<(), ConsumerError> {
        if *self.fail.lock().unwrap() {
            return Err("told to fail".into());
        }
        self.seen.lock().unwrap().extend_from_slice(events);
        Ok(())
    }
}

fn runner(registry: &Registry, recorder: &Arc<Recorder>, batch_size: usize) -> ConsumerRunner {
    ConsumerRunner::new(
        registry.clone(),
        "recorder",
        recorder.clone(),
        ConsumerOptions {
            batch_size,
            ..ConsumerOptions::default()
        },
    )
}

/// A second node on the same database, blob store and clock.
fn second_node(h: &Harness) -> Registry {
    Registry::with_clock(
        h.blobs.clone(),
        h.meta.clone(),
        config(),
        Clock::Fixed(h.clock.clone()),
    )
}

/// One pass of consumer `name` on a second node, handing its events to
/// nobody in particular.
async fn pass_on_second_node(h: &Harness, name: &str) -> ConsumerPass {
    ConsumerRunner::new(
        second_node(h),
        name,
        Arc::new(Recorder::default()),
        ConsumerOptions::default(),
    )
    .run_once()
    .await
    .unwrap()
}

#[tokio::test]
async fn a_push_is_seen_by_a_consumer_in_order_with_its_actor() {
    let h = Harness::new().await;
    let app = repo("team/app");
    let image = h
        .push_image(&app, &tag("v1"), "app", &[b"first layer", b"second layer"])
        .await;
    let recorder = Arc::new(Recorder::default());
    let pass = runner(&h.registry, &recorder, 4).run_once().await.unwrap();

    use EventKind::*;
    let blob_events = [BlobLinked, UploadFinished];
    let mut expected = vec![NamespaceCreated, RepositoryCreated];
    // The config and two layers, each uploaded; then the manifest and its tag.
    for _ in 0..3 {
        expected.extend(blob_events);
    }
    expected.extend([ManifestStored, TagMoved]);
    assert_eq!(recorder.kinds(), expected);
    assert_eq!(pass.handled, expected.len());
    let seen = recorder.seen.lock().unwrap().clone();
    assert!(seen.windows(2).all(|w| w[0].position < w[1].position));
    assert_eq!(pass.position, seen.last().unwrap().position);
    let manifest = &seen[seen.len() - 2];
    assert_eq!(manifest.digest.as_ref(), Some(&image.digest));
    assert_eq!(manifest.repository.as_ref(), Some(&app));
    assert_eq!(manifest.namespace.as_deref(), Some("team"));
    assert_eq!(manifest.actor, actor());
    assert_eq!(manifest.at, START);
    assert_eq!(
        seen.last().unwrap().tag.as_ref().map(|t| t.as_str()),
        Some("v1")
    );

    // Caught up: nothing more, and the position stays.
    let again = runner(&h.registry, &recorder, 4).run_once().await.unwrap();
    assert_eq!((again.handled, again.position), (0, pass.position));

    // Garbage collection's changes are the registry's own.
    h.registry
        .delete_manifest(&actor(), &app, &support::by_digest(&image.digest))
        .await
        .unwrap();
    h.advance(support::UPLOAD_TTL + support::GRACE + 1);
    h.gc().await;
    runner(&h.registry, &recorder, 100)
        .run_once()
        .await
        .unwrap();
    let seen = recorder.seen.lock().unwrap().clone();
    let gc: Vec<&Event> = seen
        .iter()
        .filter(|e| e.actor == Actor::system("gc"))
        .collect();
    assert!(!gc.is_empty());
    assert!(gc
        .iter()
        .all(|e| matches!(e.kind, BlobUnlinked | BlobDeleted)));
    assert_eq!(seen[expected.len()].kind, TagDeleted);
    assert_eq!(seen[expected.len() + 1].kind, ManifestDeleted);
    assert_eq!(seen[expected.len()].actor.kind, ActorKind::User);
}

#[tokio::test]
async fn one_node_at_a_time_handles_a_consumer_and_another_takes_over() {
    let h = Harness::new().await;
    let app = repo("team/app");
    h.push_image(&app, &tag("v1"), "one", &[b"layer one"]).await;
    let first = Arc::new(Recorder::default());
    let second = Arc::new(Recorder::default());
    let other = second_node(&h);

    let pass = runner(&h.registry, &first, 100).run_once().await.unwrap();
    assert!(pass.handled > 0);
    assert!(
        runner(&other, &second, 100)
            .run_once()
            .await
            .unwrap()
            .lease_busy
    );

    // The first node disappears without releasing; once its lease expires
    // the second takes over from the recorded position: nothing is handed
    // out twice, nothing is missed.
    h.push_image(&app, &tag("v2"), "two", &[b"layer two"]).await;
    h.advance(31);
    let taken = runner(&other, &second, 100).run_once().await.unwrap();
    assert!(!taken.lease_busy);
    let first_positions = first.positions();
    let second_positions = second.positions();
    assert!(second_positions[0] > *first_positions.last().unwrap());
    assert_eq!(second.kinds().last(), Some(&EventKind::TagMoved));
    assert!(
        runner(&h.registry, &first, 100)
            .run_once()
            .await
            .unwrap()
            .lease_busy
    );
}

#[tokio::test]
async fn a_lease_is_renewed_once_half_of_it_is_left_and_taken_again_after_a_failure() {
    let h = Harness::new().await;
    let app = repo("team/app");
    let recorder = Arc::new(Recorder::default());
    let runner = runner(&h.registry, &recorder, 100);
    let lease_expires = || async {
        let consumers = h.meta.list_consumers().await.unwrap();
        let row = consumers.iter().find(|row| row.name == "recorder").unwrap();
        row.lease_expires.unwrap()
    };
    // (seconds on, whether a push comes first, the lease's expiry after
    // the pass, counted from the start; the lease runs 30 s)
    let steps: &[(i64, bool, i64)] = &[
        (0, true, 30),
        (5, true, 30),
        (9, false, 30),
        (1, true, 45),
        (29, true, 74),
        (14, false, 74),
        (1, true, 89),
    ];
    let mut pushes = 0;
    let mut at = 0;
    for (on, push, expires) in steps {
        h.advance(*on);
        at += on;
        if *push {
            pushes += 1;
            h.push_image(&app, &tag(&format!("v{pushes}")), "app", &[b"layer"])
                .await;
        }
        let before = recorder.positions().len();
        let pass = runner.run_once().await.unwrap();
        assert!(!pass.lease_busy, "at {at}");
        assert_eq!(pass.handled > 0, *push, "at {at}");
        assert_eq!(recorder.positions().len() - before, pass.handled);
        assert_eq!(lease_expires().await, START + expires, "at {at}");
    }
    // Nothing was handed out twice or missed.
    let positions = recorder.positions();
    assert!(positions.windows(2).all(|pair| pair[0] < pair[1]));
    assert_eq!(
        recorder
            .kinds()
            .iter()
            .filter(|kind| **kind == EventKind::TagMoved)
            .count(),
        pushes
    );

    // A failed pass forgets what it knew: the next one takes the lease
    // again, although most of it is left.
    h.advance(1);
    h.push_image(&app, &tag("again"), "app", &[b"layer"]).await;
    *recorder.fail.lock().unwrap() = true;
    assert!(runner.run_once().await.is_err());
    *recorder.fail.lock().unwrap() = false;
    h.advance(1);
    assert!(runner.run_once().await.unwrap().handled > 0);
    assert_eq!(lease_expires().await, START + at + 2 + 30);

    // Released, the lease is another node's to take at once.
    runner.release().await;
    assert!(!pass_on_second_node(&h, "recorder").await.lease_busy);
}

#[tokio::test]
async fn a_failed_batch_is_handed_over_again() {
    let h = Harness::new().await;
    h.push_image(&repo("team/app"), &tag("v1"), "app", &[b"layer"])
        .await;
    let recorder = Arc::new(Recorder::default());
    let runner = runner(&h.registry, &recorder, 3);
    *recorder.fail.lock().unwrap() = true;
    assert!(runner.run_once().await.is_err());
    assert!(recorder.kinds().is_empty());
    *recorder.fail.lock().unwrap() = false;
    let pass = runner.run_once().await.unwrap();
    assert_eq!(recorder.kinds()[0], EventKind::NamespaceCreated);
    assert_eq!(recorder.positions().len(), pass.handled);
}

#[tokio::test]
async fn a_running_consumer_follows_the_stream_until_cancelled() {
    let h = Harness::new().await;
    let recorder = Arc::new(Recorder::default());
    let running = Arc::new(ConsumerRunner::new(
        h.registry.clone(),
        "follower",
        recorder.clone(),
        ConsumerOptions {
            poll_interval: std::time::Duration::from_millis(10),
            ..ConsumerOptions::default()
        },
    ));
    let shutdown = CancellationToken::new();
    let task = {
        let running = running.clone();
        let shutdown = shutdown.clone();
        tokio::spawn(async move { running.run(shutdown).await })
    };
    h.push_image(&repo("team/app"), &tag("v1"), "app", &[b"layer"])
        .await;
    // Bounded: the runner polls every 10 ms.
    for _ in 0..500 {
        if recorder.kinds().last() == Some(&EventKind::TagMoved) {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(10)).await;
    }
    assert_eq!(recorder.kinds().last(), Some(&EventKind::TagMoved));
    shutdown.cancel();
    tokio::time::timeout(std::time::Duration::from_secs(30), task)
        .await
        .expect("the runner stops when cancelled")
        .unwrap();
    // It gave its lease up: another node takes the consumer at once.
    let pass = pass_on_second_node(&h, "follower").await;
    assert!(!pass.lease_busy);
    assert_eq!(pass.handled, 0);
}

#[tokio::test]
async fn events_older_than_the_retention_are_deleted() {
    let mut config = config();
    config.event_retention = std::time::Duration::from_secs(3600);
    let h = Harness::with_config(config).await;
    h.push_image(&repo("team/old"), &tag("v1"), "old", &[b"old layer"])
        .await;
    let old = h.registry.last_event_position().await.unwrap();
    h.advance(3600);
    h.push_image(&repo("team/new"), &tag("v1"), "new", &[b"new layer"])
        .await;
    assert_eq!(h.registry.purge_old_events().await.unwrap(), 0);
    h.advance(1);
    assert_eq!(h.registry.purge_old_events().await.unwrap(), old as u64);
    let recorder = Arc::new(Recorder::default());
    runner(&h.registry, &recorder, 100)
        .run_once()
        .await
        .unwrap();
    let seen = recorder.seen.lock().unwrap().clone();
    assert!(seen
        .iter()
        .all(|e| e.position > old && e.at == START + 3600));
    assert_eq!(seen[0].repository.as_ref(), Some(&repo("team/new")));
    // Reading from a moment on.
    let before = h
        .registry
        .event_position_before(START + 3600)
        .await
        .unwrap();
    assert_eq!(before, old);
}
