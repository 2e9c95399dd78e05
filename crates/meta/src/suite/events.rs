//! The shared suite of [`EventStore`](crate::EventStore): that every change
//! writes its events with it, and that the stream reads back in order.

use super::*;
use crate::{ActorKind, Event, EventCursor, EventKind};

/// Every test of this suite, by name, in the order [`super::run_all`] runs them.
pub const TESTS: &[(&str, SuiteTest)] = &[
    ("registry_changes_write_their_events", |store| {
        Box::pin(registry_changes_write_their_events(store))
    }),
    ("access_control_changes_write_their_events", |store| {
        Box::pin(access_control_changes_write_their_events(store))
    }),
    ("refused_changes_write_no_events", |store| {
        Box::pin(refused_changes_write_no_events(store))
    }),
    ("events_are_read_in_pages_after_a_cursor", |store| {
        Box::pin(events_are_read_in_pages_after_a_cursor(store))
    }),
    ("consumers_hold_leases_and_keep_their_position", |store| {
        Box::pin(consumers_hold_leases_and_keep_their_position(store))
    }),
    ("old_events_are_deleted_in_batches", |store| {
        Box::pin(old_events_are_deleted_in_batches(store))
    }),
    ("subscribers_hear_of_committed_changes", |store| {
        Box::pin(subscribers_hear_of_committed_changes(store))
    }),
];

/// Every event after `from` (other tests' included), read page by page.
///
/// Nothing is in flight in the suite, but deleted events leave holes in
/// the positions, which a PostgreSQL reader passes only once it has seen
/// every transaction of its first sighting end: the page after such a
/// sighting moves on.
pub(crate) async fn events_after(store: &dyn MetaStore, from: i64) -> Vec<Event> {
    let mut cursor = EventCursor::after(from);
    let mut all = Vec::new();
    for _ in 0..1000 {
        let page = store.read_events(&cursor, 7).await.unwrap();
        if page.events.is_empty() && page.pending.is_empty() {
            return all;
        }
        cursor = page.next;
        all.extend(page.events);
    }
    panic!("the stream did not end");
}

/// The events after `from` about namespace `namespace`, as (kind,
/// repository, digest, tag) for compact comparison.
async fn summary(
    store: &dyn MetaStore,
    from: i64,
    namespace: &str,
) -> Vec<(EventKind, Option<String>, Option<Digest>, Option<String>)> {
    events_after(store, from)
        .await
        .into_iter()
        .filter(|e| e.namespace.as_deref() == Some(namespace))
        .map(|e| {
            (
                e.kind,
                e.repository.map(|r| r.to_string()),
                e.digest,
                e.tag.map(|t| t.to_string()),
            )
        })
        .collect()
}

/// The events after `from` whose detail names `key` = `value`.
async fn about(store: &dyn MetaStore, from: i64, key: &str, value: &str) -> Vec<Event> {
    events_after(store, from)
        .await
        .into_iter()
        .filter(|e| e.detail[key] == value)
        .collect()
}

pub async fn registry_changes_write_their_events(store: &dyn MetaStore) {
    use EventKind::*;
    let start = store.last_event_position().await.unwrap();
    let repo = repository("suite-events/app");
    let name = Some("suite-events/app".to_string());
    let layer = digest_of("suite-events layer");
    let actor = Actor::user("suite-events-alice").from_address("192.0.2.7".parse().unwrap());
    let change = Change::new(actor.clone(), NOW + 3);

    store.link_blob(&change, &repo, &layer, 12).await.unwrap();
    let first = image("suite-events first", &[&layer]);
    let second = image("suite-events second", &[&layer]);
    store
        .put_manifest(&change, &repo, &first, Some(&tag("latest")))
        .await
        .unwrap();
    // Storing it again with the same tag changes nothing and says nothing.
    put(store, &repo, &first, Some(&tag("latest"))).await;
    put(store, &repo, &second, Some(&tag("latest"))).await;
    assert!(store
        .delete_tag(&at(NOW), &repo, &tag("latest"))
        .await
        .unwrap());
    put(store, &repo, &first, Some(&tag("old"))).await;
    delete(store, &repo, &first.record.digest).await;
    delete(store, &repo, &second.record.digest).await;
    assert!(store.unlink_blob(&at(NOW), &repo, &layer).await.unwrap());
    let session = upload("suite-events-upload", &repo, NOW);
    store.create_upload(&at(NOW), &session).await.unwrap();
    // The registry deletes a session's record before it finishes the bytes.
    assert!(store.delete_upload(&session.id).await.unwrap());
    store
        .finish_upload(&at(NOW), &repo, &session.id, &layer, 12)
        .await
        .unwrap();
    delete_repository(store, &repo).await;

    let d = |digest: &Digest| Some(digest.clone());
    let t = |name: &str| Some(name.to_string());
    assert_eq!(
        summary(store, start, "suite-events").await,
        vec![
            (NamespaceCreated, None, None, None),
            (RepositoryCreated, name.clone(), None, None),
            (BlobLinked, name.clone(), d(&layer), None),
            (ManifestStored, name.clone(), d(&first.record.digest), None),
            (TagMoved, name.clone(), d(&first.record.digest), t("latest")),
            (ManifestStored, name.clone(), d(&second.record.digest), None),
            (
                TagMoved,
                name.clone(),
                d(&second.record.digest),
                t("latest")
            ),
            (
                TagDeleted,
                name.clone(),
                d(&second.record.digest),
                t("latest")
            ),
            (TagMoved, name.clone(), d(&first.record.digest), t("old")),
            (TagDeleted, name.clone(), d(&first.record.digest), t("old")),
            (ManifestDeleted, name.clone(), d(&first.record.digest), None),
            (
                ManifestDeleted,
                name.clone(),
                d(&second.record.digest),
                None
            ),
            (BlobUnlinked, name.clone(), d(&layer), None),
            (BlobLinked, name.clone(), d(&layer), None),
            (UploadFinished, name.clone(), d(&layer), None),
            (BlobUnlinked, name.clone(), d(&layer), None),
            (RepositoryDeleted, name.clone(), None, None),
        ]
    );

    // Time, actor and detail travel with each event.
    let events: Vec<Event> = events_after(store, start)
        .await
        .into_iter()
        .filter(|e| e.namespace.as_deref() == Some("suite-events"))
        .collect();
    let linked = &events[2];
    assert_eq!((linked.at, &linked.actor), (NOW + 3, &actor));
    assert_eq!(linked.detail, serde_json::json!({"size": 12}));
    assert_eq!(events[0].detail["visibility"], "private");
    assert_eq!(
        events[3].detail,
        serde_json::json!({
            "media_type": IMAGE_MEDIA_TYPE,
            "size": first.record.payload.len(),
        })
    );
    assert_eq!(events[4].detail, serde_json::json!({"previous": null}));
    assert_eq!(
        events[6].detail,
        serde_json::json!({"previous": first.record.digest.as_str()})
    );
    assert_eq!(events[5].actor, Actor::system("suite"));
    assert_eq!(events[14].detail["upload"], "suite-events-upload");
    assert!(events.windows(2).all(|w| w[0].position < w[1].position));
    store
        .delete_namespace(&at(NOW), "suite-events")
        .await
        .unwrap();
}

pub async fn access_control_changes_write_their_events(store: &dyn MetaStore) {
    use EventKind::*;
    let admin = Change::new(Actor::system("admin"), NOW);
    // Another administrator, so that bob, made one below, is not the last
    // and may be disabled and deleted.
    let root = UserRow {
        is_admin: true,
        ..user("as-evroot")
    };
    store.create_user(&admin, &root).await.unwrap();
    let start = store.last_event_position().await.unwrap();
    store
        .create_user(&admin, &user("as-ev-alice"))
        .await
        .unwrap();
    store.create_user(&admin, &user("as-ev-bob")).await.unwrap();
    let alice = Change::new(Actor::user("as-ev-alice"), NOW + 1);
    store
        .create_namespace(
            &alice,
            &namespace("as-ev-team", Visibility::Private),
            Some("as-ev-alice"),
        )
        .await
        .unwrap();
    store
        .set_member(&alice, "as-ev-team", "as-ev-bob", "reader")
        .await
        .unwrap();
    store
        .set_member(&alice, "as-ev-team", "as-ev-bob", "writer")
        .await
        .unwrap();
    // Setting what is already set is no change.
    store
        .set_member(&alice, "as-ev-team", "as-ev-bob", "writer")
        .await
        .unwrap();
    store
        .set_visibility(&alice, "as-ev-team", Visibility::Public)
        .await
        .unwrap();
    store
        .set_visibility(&alice, "as-ev-team", Visibility::Public)
        .await
        .unwrap();
    store
        .remove_member(&alice, "as-ev-team", "as-ev-bob")
        .await
        .unwrap();
    let token = AccessTokenRow {
        name: "as-ev-robot".into(),
        secret_hash: "4".repeat(64),
        scopes: r#"["as-ev-team:pull"]"#.into(),
        created_by: Some("as-ev-alice".into()),
        created_at: NOW,
        expires_at: Some(NOW + 60),
        last_used_at: None,
        revoked_at: None,
    };
    store.create_access_token(&alice, &token).await.unwrap();
    store
        .revoke_access_token(&alice, "as-ev-robot")
        .await
        .unwrap();
    // A second revocation keeps the first time and says nothing.
    store
        .revoke_access_token(&at(NOW + 9), "as-ev-robot")
        .await
        .unwrap();
    store
        .set_password_hash(&admin, "as-ev-bob", "$argon2id$other", false)
        .await
        .unwrap();
    store.set_admin(&admin, "as-ev-bob", true).await.unwrap();
    store.set_disabled(&admin, "as-ev-bob", true).await.unwrap();
    // Disabling a disabled user changes nothing and says nothing.
    store.set_disabled(&admin, "as-ev-bob", true).await.unwrap();
    store
        .set_disabled(&admin, "as-ev-bob", false)
        .await
        .unwrap();
    store.delete_user(&admin, "as-ev-bob").await.unwrap();
    assert_eq!(store.get_user("as-ev-bob").await.unwrap(), None);
    assert!(matches!(
        store.delete_user(&admin, "as-ev-bob").await,
        Err(MetaError::NotFound)
    ));

    let events: Vec<Event> = events_after(store, start)
        .await
        .into_iter()
        .filter(|e| {
            e.namespace.as_deref() == Some("as-ev-team")
                || e.detail["user"]
                    .as_str()
                    .is_some_and(|u| u.starts_with("as-ev-"))
                || e.detail["token"] == "as-ev-robot"
        })
        .collect();
    let kinds: Vec<EventKind> = events.iter().map(|e| e.kind).collect();
    assert_eq!(
        kinds,
        vec![
            UserCreated,
            UserCreated,
            NamespaceCreated,
            MemberSet,
            MemberSet,
            MemberSet,
            NamespaceUpdated,
            MemberRemoved,
            TokenCreated,
            TokenRevoked,
            UserUpdated,
            UserUpdated,
            UserUpdated,
            UserUpdated,
            UserDeleted,
        ]
    );
    assert_eq!(
        events[12].detail,
        serde_json::json!({"user": "as-ev-bob", "disabled": true})
    );
    assert_eq!(
        events[13].detail,
        serde_json::json!({"user": "as-ev-bob", "disabled": false})
    );
    assert_eq!(
        events[0].detail,
        serde_json::json!({"user": "as-ev-alice", "admin": false})
    );
    assert_eq!(events[2].actor.kind, ActorKind::User);
    assert_eq!(
        events[2].detail,
        serde_json::json!({"visibility": "private"})
    );
    assert_eq!(
        events[3].detail,
        serde_json::json!({"user": "as-ev-alice", "role": "owner", "previous": null})
    );
    assert_eq!(
        events[5].detail,
        serde_json::json!({"user": "as-ev-bob", "role": "writer", "previous": "reader"})
    );
    assert_eq!(
        events[6].detail,
        serde_json::json!({"visibility": "public", "previous": "private"})
    );
    assert_eq!(
        events[8].detail,
        serde_json::json!({
            "token": "as-ev-robot",
            "scopes": ["as-ev-team:pull"],
            "expires_at": NOW + 60,
        })
    );
    assert_eq!(
        store
            .get_access_token("as-ev-robot")
            .await
            .unwrap()
            .unwrap()
            .revoked_at,
        Some(NOW + 1)
    );
    // No secret or hash ever reaches an event.
    for event in &events {
        let text = event.detail.to_string();
        assert!(!text.contains("argon2") && !text.contains("4444"), "{text}");
    }
    assert_eq!(about(store, start, "user", "as-ev-bob").await.len(), 9);
}

pub async fn refused_changes_write_no_events(store: &dyn MetaStore) {
    let repo = repository("suite-evrefused/app");
    let layer = digest_of("suite-evrefused layer");
    link(store, &repo, &layer, 1).await;
    let start = store.last_event_position().await.unwrap();

    let missing = image(
        "suite-evrefused image",
        &[&digest_of("suite-evrefused none")],
    );
    assert!(matches!(
        store
            .put_manifest(&at(NOW), &repo, &missing, Some(&tag("t")))
            .await,
        Err(MetaError::MissingBlobs(_))
    ));
    assert!(!store
        .delete_tag(&at(NOW), &repo, &tag("none"))
        .await
        .unwrap());
    assert!(store
        .delete_manifest(&at(NOW), &repo, &missing.record.digest, true)
        .await
        .unwrap()
        .is_none());
    assert!(!store
        .unlink_blob(&at(NOW), &repository("suite-evrefused/none"), &layer)
        .await
        .unwrap());
    assert!(matches!(
        store
            .set_visibility(&at(NOW), "suite-evrefused-none", Visibility::Public)
            .await,
        Err(MetaError::NotFound)
    ));
    assert!(matches!(
        store
            .remove_member(&at(NOW), "suite-evrefused", "nobody")
            .await,
        Err(MetaError::NotFound)
    ));
    assert!(matches!(
        store
            .create_namespace(
                &at(NOW),
                &namespace("suite-evrefused", Visibility::Public),
                None
            )
            .await,
        Err(MetaError::AlreadyExists)
    ));
    // Garbage collection deleting the blob: linking is refused meanwhile.
    assert!(store.unlink_blob(&at(NOW), &repo, &layer).await.unwrap());
    let orphaned = store
        .expired_blobs(NOW + 1, None, usize::MAX)
        .await
        .unwrap()
        .into_iter()
        .filter(|b| b.digest == layer)
        .collect::<Vec<_>>();
    let begun = store
        .begin_blob_deletions(&at(NOW + 2), &orphaned, NOW + 1)
        .await
        .unwrap();
    assert_eq!(begun.len(), 1);
    assert!(matches!(
        store.link_blob(&at(NOW), &repo, &layer, 1).await,
        Err(MetaError::BlobBeingDeleted)
    ));
    store.finish_blob_deletion(&layer).await.unwrap();

    let events = events_after(store, start).await;
    let mine: Vec<EventKind> = events
        .iter()
        .filter(|e| {
            e.namespace.as_deref() == Some("suite-evrefused") || e.digest.as_ref() == Some(&layer)
        })
        .map(|e| e.kind)
        .collect();
    // Only the changes that happened: the unlink and the blob's deletion.
    assert_eq!(mine, vec![EventKind::BlobUnlinked, EventKind::BlobDeleted]);
    delete_repository(store, &repo).await;
    store
        .delete_namespace(&at(NOW), "suite-evrefused")
        .await
        .unwrap();
}

pub async fn events_are_read_in_pages_after_a_cursor(store: &dyn MetaStore) {
    // Later than every other test's changes, so that looking events up by
    // time finds this test's.
    const LATER: Timestamp = NOW + 1_000_000;
    let start = store.last_event_position().await.unwrap();
    let repo = repository("suite-evpages/app");
    for i in 0..5 {
        let digest = digest_of(&format!("suite-evpages {i}"));
        store
            .link_blob(&at(LATER + i), &repo, &digest, 1)
            .await
            .unwrap();
    }
    let last = store.last_event_position().await.unwrap();
    assert!(last > start);

    // Pages of two, each starting after the previous one's cursor.
    let mut cursor = EventCursor::after(start);
    let mut positions = Vec::new();
    for _ in 0..100 {
        let page = store.read_events(&cursor, 2).await.unwrap();
        assert!(page.events.len() <= 2);
        if page.events.is_empty() {
            break;
        }
        assert_eq!(page.next.position, page.events.last().unwrap().position);
        positions.extend(page.events.iter().map(|e| e.position));
        cursor = page.next;
    }
    assert!(positions.windows(2).all(|w| w[0] < w[1]));
    assert_eq!(positions.last(), Some(&last));
    let page = store
        .read_events(&EventCursor::after(last), 10)
        .await
        .unwrap();
    assert!(page.events.is_empty());
    assert_eq!(page.next, EventCursor::after(last));

    // By time: the first event at or after a moment.
    let third = store.first_event_since(LATER + 2).await.unwrap().unwrap();
    let event = store
        .read_events(&EventCursor::after(third - 1), 1)
        .await
        .unwrap()
        .events
        .remove(0);
    assert_eq!(event.at, LATER + 2);
    assert_eq!(event.kind, EventKind::BlobLinked);
    assert_eq!(store.first_event_since(i64::MAX).await.unwrap(), None);

    delete_repository(store, &repo).await;
    store
        .delete_namespace(&at(NOW), "suite-evpages")
        .await
        .unwrap();
}

pub async fn consumers_hold_leases_and_keep_their_position(store: &dyn MetaStore) {
    let name = "suite-consumer";
    // A new consumer starts where it is told, under the first holder.
    assert_eq!(
        store
            .acquire_consumer(name, "node-a", 40, NOW, 30)
            .await
            .unwrap(),
        Some(40)
    );
    assert_eq!(
        store
            .acquire_consumer(name, "node-b", 0, NOW + 29, 30)
            .await
            .unwrap(),
        None,
        "node-a's lease runs until NOW + 30"
    );
    store
        .advance_consumer(name, "node-a", 45, NOW + 1)
        .await
        .unwrap();
    assert!(matches!(
        store.advance_consumer(name, "node-b", 50, NOW + 1).await,
        Err(MetaError::LeaseLost)
    ));
    // A position never goes back.
    store
        .advance_consumer(name, "node-a", 44, NOW + 2)
        .await
        .unwrap();
    // Renewing keeps the position, whatever start is offered.
    assert_eq!(
        store
            .acquire_consumer(name, "node-a", 0, NOW + 10, 30)
            .await
            .unwrap(),
        Some(45)
    );
    // The lease expires; another holder takes over where it stopped, and
    // the old holder can no longer move it.
    assert_eq!(
        store
            .acquire_consumer(name, "node-b", 0, NOW + 40, 30)
            .await
            .unwrap(),
        Some(45)
    );
    assert!(matches!(
        store.advance_consumer(name, "node-a", 60, NOW + 41).await,
        Err(MetaError::LeaseLost)
    ));
    store
        .advance_consumer(name, "node-b", 50, NOW + 41)
        .await
        .unwrap();
    // Released, it is free at once, position kept.
    store.release_consumer(name, "node-b").await.unwrap();
    store.release_consumer(name, "node-a").await.unwrap();
    let row = store
        .list_consumers()
        .await
        .unwrap()
        .into_iter()
        .find(|c| c.name == name)
        .unwrap();
    assert_eq!(
        (row.position, row.holder, row.updated_at),
        (50, None, NOW + 41)
    );
    assert_eq!(
        store
            .acquire_consumer(name, "node-a", 0, NOW + 42, 30)
            .await
            .unwrap(),
        Some(50)
    );
    store.release_consumer(name, "node-a").await.unwrap();
}

pub async fn old_events_are_deleted_in_batches(store: &dyn MetaStore) {
    // Changes long before every other test's, so that retention here
    // deletes only this test's events.
    let repo = repository("suite-evold/app");
    for i in 0..3 {
        let digest = digest_of(&format!("suite-evold {i}"));
        store
            .link_blob(&at(1_000 + i), &repo, &digest, 1)
            .await
            .unwrap();
    }
    let old = |events: Vec<Event>| -> usize {
        events
            .iter()
            .filter(|e| e.namespace.as_deref() == Some("suite-evold"))
            .count()
    };
    // Namespace, repository and three links at 1000..=1002.
    assert_eq!(old(events_after(store, 0).await), 5);
    assert_eq!(store.delete_events_before(1_002, 3).await.unwrap(), 3);
    assert_eq!(old(events_after(store, 0).await), 2);
    assert_eq!(store.delete_events_before(1_002, 3).await.unwrap(), 1);
    assert_eq!(store.delete_events_before(1_002, 3).await.unwrap(), 0);
    let left = events_after(store, 0).await;
    assert_eq!(old(left.clone()), 1);
    assert!(left
        .iter()
        .filter(|e| e.namespace.as_deref() == Some("suite-evold"))
        .all(|e| e.at == 1_002));
    delete_repository(store, &repo).await;
    store
        .delete_namespace(&at(NOW), "suite-evold")
        .await
        .unwrap();
}

pub async fn subscribers_hear_of_committed_changes(store: &dyn MetaStore) {
    let repo = repository("suite-evnotice/app");
    let subscription = store.subscribe().await.unwrap();
    let digest = digest_of("suite-evnotice");
    store.link_blob(&at(NOW), &repo, &digest, 1).await.unwrap();

    // Nothing is in flight, so the settled position is the newest one.
    let last = store.last_event_position().await.unwrap();
    assert_eq!(store.settled_position().await.unwrap(), last);

    // A fence sent after the commit comes back after the change's notice,
    // and an acknowledgement of it after that.
    let others = store.send_fence("suite-evnotice-fence").await.unwrap();
    store.send_ack("suite-evnotice-fence").await.unwrap();
    if subscription.is_none() {
        assert_eq!(others, 0, "nobody to acknowledge without subscriptions");
    }

    // A backend that notifies names the repository after the commit (other
    // tests' notices may come first when they share the database), and the
    // fence after it.
    if let Some(mut subscription) = subscription {
        let mut heard = false;
        let mut fenced = false;
        let mut acked = false;
        for _ in 0..100 {
            let notice =
                tokio::time::timeout(std::time::Duration::from_secs(30), subscription.next())
                    .await
                    .expect("a notice arrives")
                    .unwrap();
            match notice {
                crate::Notice::Changed(repositories) if repositories.contains(&repo) => {
                    heard = true;
                }
                crate::Notice::Fence(token) if token == "suite-evnotice-fence" => {
                    assert!(heard, "the change's notice comes before the fence");
                    fenced = true;
                }
                crate::Notice::Ack(token) if token == "suite-evnotice-fence" => {
                    assert!(fenced, "the fence comes before its acknowledgement");
                    acked = true;
                    break;
                }
                _ => {}
            }
        }
        assert!(
            heard && fenced && acked,
            "notice, fence and acknowledgement arrive"
        );
    }

    delete_repository(store, &repo).await;
    store
        .delete_namespace(&at(NOW), "suite-evnotice")
        .await
        .unwrap();
}
