//! The shared suite of [`WebhookStore`](crate::WebhookStore).

use super::events::events_after;
use super::*;
use crate::{
    DeliveryAttempt, DeliveryJob, DeliveryNext, DeliveryState, EventKind, FinishedDelivery,
    NewDelivery, NewWebhook, WebhookEnvelope, WebhookRow,
};

/// Every test of this suite, by name, in the order [`super::run_all`] runs them.
pub const TESTS: &[(&str, SuiteTest)] = &[
    ("webhooks_are_created_listed_and_deleted", |store| {
        Box::pin(webhooks_are_created_listed_and_deleted(store))
    }),
    ("deliveries_are_queued_once_and_leased", |store| {
        Box::pin(deliveries_are_queued_once_and_leased(store))
    }),
    ("deliveries_are_taken_and_finished_in_batches", |store| {
        Box::pin(deliveries_are_taken_and_finished_in_batches(store))
    }),
];

fn new_webhook(namespace: Option<&str>, url: &str) -> NewWebhook {
    NewWebhook {
        namespace: namespace.map(str::to_string),
        url: url.to_string(),
        events: vec!["push".to_string(), "delete".to_string()],
        secret: Some("sealed-secret".to_string()),
        created_by: "user:suite".to_string(),
        envelope: WebhookEnvelope::CloudEvents,
    }
}

async fn create(store: &dyn MetaStore, webhook: &NewWebhook) -> WebhookRow {
    store
        .create_webhook(&at(NOW), webhook)
        .await
        .expect("create_webhook succeeds")
}

fn delivery(webhook: &WebhookRow, position: i64) -> NewDelivery {
    NewDelivery {
        webhook_id: webhook.id,
        event_position: position,
        event_kind: "tag.moved".to_string(),
        payload: format!("{{\"id\":\"{position}\"}}"),
    }
}

pub async fn webhooks_are_created_listed_and_deleted(store: &dyn MetaStore) {
    let name = "suite-webhooks";
    let from = store.last_event_position().await.unwrap();
    assert!(
        matches!(
            store
                .create_webhook(&at(NOW), &new_webhook(Some(name), "http://a.example/"))
                .await,
            Err(MetaError::NotFound)
        ),
        "a webhook of a namespace that does not exist is refused"
    );
    store
        .create_namespace(&at(NOW), &namespace(name, Visibility::Private), None)
        .await
        .unwrap();
    let first = create(store, &new_webhook(Some(name), "http://a.example/hook")).await;
    let second = create(
        store,
        &NewWebhook {
            envelope: WebhookEnvelope::Distribution,
            ..new_webhook(Some(name), "https://b.example/hook")
        },
    )
    .await;
    let everywhere = create(store, &new_webhook(None, "https://c.example/all")).await;
    assert!(first.id < second.id && second.id < everywhere.id);
    assert_eq!(first.namespace.as_deref(), Some(name));
    assert_eq!(first.url, "http://a.example/hook");
    assert_eq!(first.events, vec!["push", "delete"]);
    assert_eq!(first.secret.as_deref(), Some("sealed-secret"));
    assert_eq!(first.created_by, "user:suite");
    assert_eq!(first.created_at, NOW);
    assert_eq!(first.envelope, WebhookEnvelope::CloudEvents);
    assert_eq!(second.envelope, WebhookEnvelope::Distribution);
    assert_eq!(everywhere.namespace, None);

    assert_eq!(
        store.webhook(second.id).await.unwrap(),
        Some(second.clone())
    );
    assert_eq!(
        store.list_webhooks(Some(name)).await.unwrap(),
        vec![first.clone(), second.clone()]
    );
    let all = store.list_webhooks(None).await.unwrap();
    for webhook in [&first, &second, &everywhere] {
        assert!(all.contains(webhook), "{webhook:?} is listed in {all:?}");
    }

    assert_eq!(
        store.delete_webhook(&at(NOW), second.id).await.unwrap(),
        Some(second.clone())
    );
    assert_eq!(
        store.delete_webhook(&at(NOW), second.id).await.unwrap(),
        None
    );
    assert_eq!(store.webhook(second.id).await.unwrap(), None);
    assert_eq!(
        store.delete_webhook(&at(NOW), everywhere.id).await.unwrap(),
        Some(everywhere.clone())
    );

    let events: Vec<(EventKind, Option<String>, i64)> = events_after(store, from)
        .await
        .into_iter()
        .filter(|e| {
            matches!(
                e.kind,
                EventKind::WebhookCreated | EventKind::WebhookDeleted
            )
        })
        .map(|e| (e.kind, e.namespace, e.detail["id"].as_i64().unwrap_or(-1)))
        .collect();
    let ns = Some(name.to_string());
    assert_eq!(
        events,
        vec![
            (EventKind::WebhookCreated, ns.clone(), first.id),
            (EventKind::WebhookCreated, ns.clone(), second.id),
            (EventKind::WebhookCreated, None, everywhere.id),
            (EventKind::WebhookDeleted, ns.clone(), second.id),
            (EventKind::WebhookDeleted, None, everywhere.id),
        ]
    );

    // A namespace's webhooks, and their deliveries, go with it.
    assert_eq!(
        store
            .enqueue_deliveries(&[delivery(&first, 1)], NOW)
            .await
            .unwrap(),
        1
    );
    store.delete_namespace(&at(NOW), name).await.unwrap();
    assert_eq!(store.webhook(first.id).await.unwrap(), None);
    assert_eq!(store.list_deliveries(first.id, 10).await.unwrap(), vec![]);
    assert_eq!(take_delivery(store, "suite", NOW, 60).await.unwrap(), None);
}

pub async fn deliveries_are_queued_once_and_leased(store: &dyn MetaStore) {
    let hook = create(store, &new_webhook(None, "http://queue.example/")).await;
    let other = create(
        store,
        &NewWebhook {
            envelope: WebhookEnvelope::Distribution,
            ..new_webhook(None, "http://other.example/")
        },
    )
    .await;
    let batch = [
        delivery(&hook, 10),
        delivery(&hook, 11),
        delivery(&other, 10),
    ];
    assert_eq!(store.enqueue_deliveries(&batch, NOW).await.unwrap(), 3);
    // The same batch again (a consumer handed it twice) queues nothing.
    assert_eq!(store.enqueue_deliveries(&batch, NOW).await.unwrap(), 0);

    // Nothing is due before it was queued.
    assert_eq!(take_delivery(store, "a", NOW - 1, 60).await.unwrap(), None);
    let first = take_delivery(store, "a", NOW, 60).await.unwrap().unwrap();
    assert_eq!(first.webhook_id, hook.id);
    assert_eq!(first.url, "http://queue.example/");
    assert_eq!(first.secret.as_deref(), Some("sealed-secret"));
    assert_eq!(first.payload, "{\"id\":\"10\"}");
    assert_eq!(first.attempts, 1);
    let second = take_delivery(store, "b", NOW, 60).await.unwrap().unwrap();
    let third = take_delivery(store, "b", NOW, 60).await.unwrap().unwrap();
    assert_eq!(first.envelope, WebhookEnvelope::CloudEvents);
    let of_other = [&second, &third]
        .into_iter()
        .find(|job| job.webhook_id == other.id)
        .expect("the other webhook's delivery is taken");
    assert_eq!(of_other.envelope, WebhookEnvelope::Distribution);
    let mut taken = vec![first.id, second.id, third.id];
    taken.dedup();
    assert_eq!(taken.len(), 3, "three different deliveries are taken");
    assert_eq!(take_delivery(store, "c", NOW, 60).await.unwrap(), None);

    // Only the holder records an attempt.
    let refused = DeliveryAttempt {
        status: None,
        response: None,
        error: Some("connection refused".to_string()),
    };
    assert!(matches!(
        finish_delivery(store, "b", first.id, &refused, DeliveryNext::GiveUp, NOW).await,
        Err(MetaError::LeaseLost)
    ));
    finish_delivery(
        store,
        "a",
        first.id,
        &refused,
        DeliveryNext::RetryAt(NOW + 30),
        NOW,
    )
    .await
    .unwrap();
    assert_eq!(take_delivery(store, "c", NOW + 29, 60).await.unwrap(), None);
    let again = take_delivery(store, "c", NOW + 30, 60)
        .await
        .unwrap()
        .unwrap();
    assert_eq!((again.id, again.attempts), (first.id, 2));
    let answered = DeliveryAttempt {
        status: Some(204),
        response: Some("ok".to_string()),
        error: None,
    };
    finish_delivery(
        store,
        "c",
        first.id,
        &answered,
        DeliveryNext::Delivered,
        NOW + 30,
    )
    .await
    .unwrap();
    // A finished delivery is not finished again, nor taken.
    assert!(matches!(
        finish_delivery(
            store,
            "c",
            first.id,
            &answered,
            DeliveryNext::Delivered,
            NOW + 30
        )
        .await,
        Err(MetaError::LeaseLost)
    ));

    // A lease that expired is another taker's: the holder "b" died.
    let taken_over = take_delivery(store, "d", NOW + 60, 60)
        .await
        .unwrap()
        .unwrap();
    assert!([second.id, third.id].contains(&taken_over.id));
    assert_eq!(taken_over.attempts, 2);
    let server_error = DeliveryAttempt {
        status: Some(500),
        response: Some("boom".to_string()),
        error: Some("the endpoint answered 500".to_string()),
    };
    finish_delivery(
        store,
        "d",
        taken_over.id,
        &server_error,
        DeliveryNext::GiveUp,
        NOW + 60,
    )
    .await
    .unwrap();
    let last = take_delivery(store, "d", NOW + 60, 60)
        .await
        .unwrap()
        .unwrap();
    finish_delivery(
        store,
        "d",
        last.id,
        &answered,
        DeliveryNext::Delivered,
        NOW + 60,
    )
    .await
    .unwrap();
    assert_eq!(
        take_delivery(store, "d", NOW + 3600, 60).await.unwrap(),
        None
    );

    let log = store.list_deliveries(hook.id, 10).await.unwrap();
    assert_eq!(
        log.iter().map(|d| d.event_position).collect::<Vec<_>>(),
        vec![11, 10],
        "newest first"
    );
    let delivered = &log[1];
    assert_eq!(delivered.state, DeliveryState::Delivered);
    assert_eq!(delivered.attempts, 2);
    assert_eq!(delivered.last_status, Some(204));
    assert_eq!(delivered.last_response.as_deref(), Some("ok"));
    assert_eq!(delivered.last_error, None);
    assert_eq!(delivered.event_kind, "tag.moved");
    assert_eq!(delivered.updated_at, NOW + 30);
    assert_eq!(store.list_deliveries(hook.id, 1).await.unwrap().len(), 1);
    let mut states = Vec::new();
    for id in [hook.id, other.id] {
        states.extend(
            store
                .list_deliveries(id, 10)
                .await
                .unwrap()
                .into_iter()
                .map(|d| d.state),
        );
    }
    assert_eq!(
        states
            .iter()
            .filter(|s| **s == DeliveryState::Failed)
            .count(),
        1
    );
    assert_eq!(
        states
            .iter()
            .filter(|s| **s == DeliveryState::Delivered)
            .count(),
        2
    );

    // Retention deletes finished deliveries last updated before the cutoff.
    assert_eq!(
        store
            .delete_finished_deliveries(NOW + 31, 100)
            .await
            .unwrap(),
        1
    );
    assert_eq!(
        store
            .delete_finished_deliveries(NOW + 61, 100)
            .await
            .unwrap(),
        2
    );
    assert_eq!(store.list_deliveries(hook.id, 10).await.unwrap(), vec![]);

    // A delivery of a deleted webhook is dropped.
    store.delete_webhook(&at(NOW), other.id).await.unwrap();
    assert_eq!(
        store
            .enqueue_deliveries(&[delivery(&other, 12)], NOW)
            .await
            .unwrap(),
        0
    );
    store.delete_webhook(&at(NOW), hook.id).await.unwrap();
}

/// One delivery taken (`take_deliveries` with a limit of one).
async fn take_delivery(
    store: &dyn MetaStore,
    holder: &str,
    now: Timestamp,
    lease_secs: i64,
) -> Result<Option<DeliveryJob>, MetaError> {
    Ok(store
        .take_deliveries(holder, now, lease_secs, 1)
        .await?
        .pop())
}

/// One attempt recorded; `LeaseLost` when `finish_deliveries` recorded
/// nothing.
async fn finish_delivery(
    store: &dyn MetaStore,
    holder: &str,
    id: i64,
    attempt: &DeliveryAttempt,
    next: DeliveryNext,
    now: Timestamp,
) -> Result<(), MetaError> {
    let finished = FinishedDelivery {
        id,
        attempt: attempt.clone(),
        next,
    };
    match store.finish_deliveries(holder, &[finished], now).await? {
        1 => Ok(()),
        _ => Err(MetaError::LeaseLost),
    }
}

pub async fn deliveries_are_taken_and_finished_in_batches(store: &dyn MetaStore) {
    let hook = create(store, &new_webhook(None, "http://batch.example/")).await;
    let other = create(store, &new_webhook(None, "http://batch-other.example/")).await;
    let batch: Vec<NewDelivery> = (20..25)
        .map(|position| delivery(if position % 2 == 0 { &hook } else { &other }, position))
        .collect();
    assert_eq!(store.enqueue_deliveries(&batch, NOW).await.unwrap(), 5);
    // Three of five, oldest first, each with its own webhook's address.
    let taken = store.take_deliveries("a", NOW, 60, 3).await.unwrap();
    assert_eq!(taken.len(), 3);
    assert!(taken.windows(2).all(|pair| pair[0].id < pair[1].id));
    for job in &taken {
        let expected = if job.webhook_id == hook.id {
            "http://batch.example/"
        } else {
            "http://batch-other.example/"
        };
        assert_eq!((job.url.as_str(), job.attempts), (expected, 1));
    }
    // Another holder gets the rest, never one of those.
    let rest = store.take_deliveries("b", NOW, 60, 10).await.unwrap();
    assert_eq!(rest.len(), 2);
    assert!(rest.iter().all(|job| taken.iter().all(|t| t.id != job.id)));
    assert!(store
        .take_deliveries("c", NOW, 60, 10)
        .await
        .unwrap()
        .is_empty());
    // One transaction records a holder's attempts; another's are skipped.
    let answered = DeliveryAttempt {
        status: Some(200),
        response: None,
        error: None,
    };
    let finished: Vec<FinishedDelivery> = taken
        .iter()
        .chain(&rest[..1])
        .map(|job| FinishedDelivery {
            id: job.id,
            attempt: answered.clone(),
            next: DeliveryNext::Delivered,
        })
        .collect();
    assert_eq!(
        store.finish_deliveries("a", &finished, NOW).await.unwrap(),
        3
    );
    assert_eq!(store.finish_deliveries("a", &[], NOW).await.unwrap(), 0);
    let states: Vec<(i64, DeliveryState)> = store
        .list_deliveries(hook.id, 10)
        .await
        .unwrap()
        .into_iter()
        .chain(store.list_deliveries(other.id, 10).await.unwrap())
        .map(|row| (row.id, row.state))
        .collect();
    for (id, state) in states {
        let expected = if taken.iter().any(|job| job.id == id) {
            DeliveryState::Delivered
        } else {
            DeliveryState::Pending
        };
        assert_eq!(state, expected, "delivery {id}");
    }
    for webhook in [hook, other] {
        store.delete_webhook(&at(NOW), webhook.id).await.unwrap();
    }
}
