//! The shared suite of [`ReplicationStore`](crate::ReplicationStore).

use super::events::events_after;
use super::*;
use crate::{
    Direction, EventKind, NewReplicationRule, ReplicationRule, RunCounts, RunStatus, RunTrigger,
};

/// Every test of this suite, by name, in the order [`super::run_all`] runs them.
pub const TESTS: &[(&str, SuiteTest)] = &[
    (
        "replication_rules_are_created_listed_and_deleted",
        |store| Box::pin(replication_rules_are_created_listed_and_deleted(store)),
    ),
    ("replication_runs_are_recorded_and_bounded", |store| {
        Box::pin(replication_runs_are_recorded_and_bounded(store))
    }),
    ("pending_deletes_are_counted_bounded_and_cleared", |store| {
        Box::pin(pending_deletes_are_counted_bounded_and_cleared(store))
    }),
];

fn new_rule(name: &str, direction: Direction) -> NewReplicationRule {
    NewReplicationRule {
        name: name.to_string(),
        direction,
        remote_url: "https://remote.example".to_string(),
        credentials: Some("sealed-credentials".to_string()),
        repositories: "team/**".to_string(),
        tags: Some("v*".to_string()),
        on_push: direction == Direction::Push,
        interval_secs: Some(3600),
        enabled: true,
        created_by: "user:suite".to_string(),
    }
}

async fn create(store: &dyn MetaStore, rule: &NewReplicationRule) -> ReplicationRule {
    store
        .create_replication_rule(&at(NOW), rule)
        .await
        .expect("create_replication_rule succeeds")
}

pub async fn replication_rules_are_created_listed_and_deleted(store: &dyn MetaStore) {
    let from = store.last_event_position().await.unwrap();
    let push = create(store, &new_rule("suite-rules-push", Direction::Push)).await;
    let mut anonymous = new_rule("suite-rules-pull", Direction::Pull);
    anonymous.credentials = None;
    anonymous.tags = None;
    anonymous.interval_secs = None;
    let pull = create(store, &anonymous).await;
    assert!(push.id < pull.id);
    assert_eq!(push.name, "suite-rules-push");
    assert_eq!(push.direction, Direction::Push);
    assert_eq!(push.remote_url, "https://remote.example");
    assert_eq!(push.credentials.as_deref(), Some("sealed-credentials"));
    assert_eq!(push.repositories, "team/**");
    assert_eq!(push.tags.as_deref(), Some("v*"));
    assert!(push.on_push && push.enabled);
    assert_eq!(push.interval_secs, Some(3600));
    assert_eq!(push.created_by, "user:suite");
    assert_eq!(push.created_at, NOW);
    assert_eq!(
        (
            pull.credentials.as_deref(),
            pull.tags.as_deref(),
            pull.on_push
        ),
        (None, None, false)
    );
    assert_eq!(pull.interval_secs, None);

    assert!(
        matches!(
            store
                .create_replication_rule(&at(NOW), &new_rule("suite-rules-push", Direction::Pull))
                .await,
            Err(MetaError::AlreadyExists)
        ),
        "a second rule of the same name is refused"
    );
    assert_eq!(
        store.replication_rule("suite-rules-pull").await.unwrap(),
        Some(pull.clone())
    );
    assert_eq!(
        store.replication_rule("suite-rules-none").await.unwrap(),
        None
    );
    let listed: Vec<ReplicationRule> = store
        .list_replication_rules()
        .await
        .unwrap()
        .into_iter()
        .filter(|rule| rule.name.starts_with("suite-rules-"))
        .collect();
    assert_eq!(listed, vec![pull.clone(), push.clone()], "sorted by name");

    assert_eq!(
        store
            .delete_replication_rule(&at(NOW), "suite-rules-push")
            .await
            .unwrap(),
        Some(push.clone())
    );
    assert_eq!(
        store
            .delete_replication_rule(&at(NOW), "suite-rules-push")
            .await
            .unwrap(),
        None
    );
    assert_eq!(
        store
            .delete_replication_rule(&at(NOW), "suite-rules-pull")
            .await
            .unwrap(),
        Some(pull.clone())
    );

    let events: Vec<(EventKind, String, serde_json::Value)> = events_after(store, from)
        .await
        .into_iter()
        .filter(|e| {
            e.detail["name"]
                .as_str()
                .is_some_and(|n| n.starts_with("suite-rules-"))
        })
        .map(|e| {
            (
                e.kind,
                e.detail["name"].as_str().unwrap().to_string(),
                e.detail,
            )
        })
        .collect();
    let kinds: Vec<(EventKind, &str)> = events.iter().map(|(k, n, _)| (*k, n.as_str())).collect();
    assert_eq!(
        kinds,
        vec![
            (EventKind::ReplicationRuleCreated, "suite-rules-push"),
            (EventKind::ReplicationRuleCreated, "suite-rules-pull"),
            (EventKind::ReplicationRuleDeleted, "suite-rules-push"),
            (EventKind::ReplicationRuleDeleted, "suite-rules-pull"),
        ]
    );
    for (_, _, detail) in &events {
        let text = detail.to_string();
        assert!(
            !text.contains("remote.example") && !text.contains("sealed-credentials"),
            "events carry neither the URL nor the credentials: {text}"
        );
    }
}

pub async fn replication_runs_are_recorded_and_bounded(store: &dyn MetaStore) {
    let rule = create(store, &new_rule("suite-runs", Direction::Push)).await;
    let from = store.last_event_position().await.unwrap();
    let first = store
        .start_replication_run(rule.id, RunTrigger::Manual, NOW, 3)
        .await
        .unwrap();
    assert_eq!(first.rule_id, rule.id);
    assert_eq!(first.trigger, RunTrigger::Manual);
    assert_eq!(first.status, RunStatus::Running);
    assert_eq!((first.started_at, first.finished_at), (NOW, None));
    assert_eq!(first.counts, RunCounts::default());

    let counts = RunCounts {
        images_copied: 2,
        images_skipped: 3,
        blobs_copied: 5,
        bytes: 1234,
    };
    let finished = store
        .finish_replication_run(&at(NOW + 5), first.id, RunStatus::Succeeded, counts, None)
        .await
        .unwrap()
        .expect("a running run finishes");
    assert_eq!(finished.status, RunStatus::Succeeded);
    assert_eq!(finished.finished_at, Some(NOW + 5));
    assert_eq!(finished.counts, counts);
    assert_eq!(
        store
            .finish_replication_run(&at(NOW + 6), first.id, RunStatus::Failed, counts, None)
            .await
            .unwrap(),
        None,
        "a finished run is not finished again"
    );

    // Four more runs with a history of three: the oldest finished ones go.
    let mut ids = vec![first.id];
    for (i, trigger) in [RunTrigger::Push, RunTrigger::Schedule, RunTrigger::Manual]
        .into_iter()
        .enumerate()
    {
        let run = store
            .start_replication_run(rule.id, trigger, NOW + 10 + i as i64, 3)
            .await
            .unwrap();
        store
            .finish_replication_run(
                &at(NOW + 10 + i as i64),
                run.id,
                RunStatus::Failed,
                RunCounts::default(),
                Some("remote answered 500"),
            )
            .await
            .unwrap()
            .unwrap();
        ids.push(run.id);
    }
    let running = store
        .start_replication_run(rule.id, RunTrigger::Manual, NOW + 20, 3)
        .await
        .unwrap();
    let runs = store.list_replication_runs(rule.id, 10).await.unwrap();
    let listed: Vec<i64> = runs.iter().map(|run| run.id).collect();
    assert_eq!(
        listed,
        vec![running.id, ids[3], ids[2]],
        "newest first, bounded"
    );
    assert_eq!(runs[1].last_error.as_deref(), Some("remote answered 500"));
    assert_eq!(runs[1].trigger, RunTrigger::Manual);
    assert_eq!(runs[2].trigger, RunTrigger::Schedule);
    assert_eq!(
        store.list_replication_runs(rule.id, 1).await.unwrap(),
        vec![running.clone()]
    );

    let finished: Vec<(String, i64, String)> = events_after(store, from)
        .await
        .into_iter()
        .filter(|e| e.kind == EventKind::ReplicationFinished)
        .filter(|e| e.detail["rule"] == "suite-runs")
        .map(|e| {
            (
                e.detail["status"].as_str().unwrap().to_string(),
                e.detail["run"].as_i64().unwrap(),
                e.detail["images_copied"].to_string(),
            )
        })
        .collect();
    assert_eq!(finished.len(), 4);
    assert_eq!(
        finished[0],
        ("succeeded".to_string(), first.id, "2".to_string())
    );

    // A rule's runs go with it; a run of a deleted rule finishes nothing.
    store
        .delete_replication_rule(&at(NOW), "suite-runs")
        .await
        .unwrap();
    assert_eq!(
        store.list_replication_runs(rule.id, 10).await.unwrap(),
        vec![]
    );
    assert_eq!(
        store
            .finish_replication_run(
                &at(NOW + 30),
                running.id,
                RunStatus::Succeeded,
                counts,
                None
            )
            .await
            .unwrap(),
        None
    );
    assert!(matches!(
        store
            .start_replication_run(rule.id, RunTrigger::Manual, NOW + 30, 3)
            .await,
        Err(MetaError::NotFound)
    ));
}

pub async fn pending_deletes_are_counted_bounded_and_cleared(store: &dyn MetaStore) {
    let rule = create(store, &new_rule("suite-pending", Direction::Push)).await;
    let other = create(store, &new_rule("suite-pending-other", Direction::Push)).await;
    let app = repository("team/app");
    for (i, name) in ["v1", "v2", "v3"].into_iter().enumerate() {
        store
            .record_pending_delete(rule.id, &app, &tag(name), "remote down", NOW + i as i64, 10)
            .await
            .unwrap();
    }
    store
        .record_pending_delete(other.id, &app, &tag("v1"), "refused", NOW, 10)
        .await
        .unwrap();
    // A second failure of the same deletion counts an attempt and keeps
    // the first failure's time.
    store
        .record_pending_delete(rule.id, &app, &tag("v1"), "still down", NOW + 9, 10)
        .await
        .unwrap();
    let pending = store.pending_deletes(rule.id, 10).await.unwrap();
    let seen: Vec<(&str, i64, u64, &str)> = pending
        .iter()
        .map(|p| (p.tag.as_str(), p.since, p.attempts, p.last_error.as_str()))
        .collect();
    assert_eq!(
        seen,
        [
            ("v1", NOW, 2, "still down"),
            ("v2", NOW + 1, 1, "remote down"),
            ("v3", NOW + 2, 1, "remote down"),
        ],
        "oldest first, per rule"
    );
    assert!(pending.iter().all(|p| p.repository == app));
    assert_eq!(store.count_pending_deletes(rule.id).await.unwrap(), 3);
    assert_eq!(store.pending_deletes(rule.id, 2).await.unwrap().len(), 2);

    // Bounded: with room for two, the oldest goes.
    store
        .record_pending_delete(rule.id, &app, &tag("v4"), "remote down", NOW + 3, 2)
        .await
        .unwrap();
    let kept: Vec<String> = store
        .pending_deletes(rule.id, 10)
        .await
        .unwrap()
        .into_iter()
        .map(|p| p.tag.to_string())
        .collect();
    assert_eq!(kept, ["v3", "v4"]);

    store
        .clear_pending_delete(rule.id, &app, &tag("v3"))
        .await
        .unwrap();
    store
        .clear_pending_delete(rule.id, &app, &tag("never"))
        .await
        .unwrap();
    assert_eq!(store.count_pending_deletes(rule.id).await.unwrap(), 1);
    assert_eq!(store.count_pending_deletes(other.id).await.unwrap(), 1);

    // A deleted rule takes its pending deletes along, and records for it
    // are ignored.
    store
        .delete_replication_rule(&at(NOW + 10), "suite-pending")
        .await
        .unwrap()
        .expect("the rule existed");
    assert_eq!(store.count_pending_deletes(rule.id).await.unwrap(), 0);
    store
        .record_pending_delete(rule.id, &app, &tag("v5"), "late", NOW + 11, 10)
        .await
        .unwrap();
    assert!(store.pending_deletes(rule.id, 10).await.unwrap().is_empty());
    store
        .delete_replication_rule(&at(NOW + 12), "suite-pending-other")
        .await
        .unwrap();
}
