//! The shared suite of [`AuditStore`](crate::AuditStore).

use super::*;
use crate::{AuditQuery, NewAuditRecord};

/// Every test of this suite, by name, in the order [`super::run_all`] runs them.
pub const TESTS: &[(&str, SuiteTest)] = &[(
    "audit_records_are_stored_once_filtered_and_expired",
    |store| Box::pin(audit_records_are_stored_once_filtered_and_expired(store)),
)];

fn record(
    at: Timestamp,
    actor: &str,
    action: &str,
    namespace: &str,
    position: i64,
) -> NewAuditRecord {
    NewAuditRecord {
        at,
        actor_kind: "user".to_string(),
        actor_name: Some(actor.to_string()),
        actor_address: Some("192.0.2.7".to_string()),
        action: action.to_string(),
        namespace: Some(namespace.to_string()),
        resource: Some(format!("{namespace}/app:v1")),
        outcome: "ok".to_string(),
        detail: serde_json::json!({ "n": position }),
        event_position: Some(position),
    }
}

pub async fn audit_records_are_stored_once_filtered_and_expired(store: &dyn MetaStore) {
    // Times far in the past, so that records of other suite tests (none
    // write any today) and of this one never mix.
    let base = 1_000;
    let ns = "suite-audit";
    let records = [
        record(base, "alice", "tag.moved", ns, -1001),
        record(base + 10, "bob", "tag.deleted", ns, -1002),
        record(
            base + 20,
            "alice",
            "tag.deleted",
            "suite-audit-other",
            -1003,
        ),
    ];
    assert_eq!(store.record_audit(&records).await.unwrap(), 3);
    // Copied again (the consumer handed the batch twice): nothing new.
    assert_eq!(store.record_audit(&records).await.unwrap(), 0);

    let query = |since: Option<Timestamp>,
                 actor: Option<&str>,
                 namespace: Option<&str>,
                 action: Option<&str>| AuditQuery {
        since,
        actor: actor.map(str::to_string),
        namespace: namespace.map(str::to_string),
        action: action.map(str::to_string),
        before_id: None,
        limit: 100,
    };
    let positions = |found: Vec<crate::AuditRecord>| -> Vec<i64> {
        found
            .into_iter()
            .filter(|r| r.record.at < base + 100)
            .map(|r| r.record.event_position.unwrap())
            .collect()
    };
    let all = store
        .list_audit(&query(Some(base), None, None, None))
        .await
        .unwrap();
    assert_eq!(
        positions(all.clone()),
        vec![-1003, -1002, -1001],
        "newest first"
    );
    assert_eq!(all[2].record, records[0], "stored as given");
    assert_eq!(
        positions(
            store
                .list_audit(&query(Some(base), Some("alice"), None, None))
                .await
                .unwrap()
        ),
        vec![-1003, -1001]
    );
    assert_eq!(
        positions(
            store
                .list_audit(&query(Some(base), None, Some(ns), None))
                .await
                .unwrap()
        ),
        vec![-1002, -1001]
    );
    assert_eq!(
        positions(
            store
                .list_audit(&query(Some(base), Some("alice"), None, Some("tag.deleted")))
                .await
                .unwrap()
        ),
        vec![-1003]
    );
    assert_eq!(
        positions(
            store
                .list_audit(&query(Some(base + 10), None, None, None))
                .await
                .unwrap()
        ),
        vec![-1003, -1002]
    );
    // Pages by id.
    let mut page = query(Some(base), None, None, None);
    page.limit = 1;
    let first = store.list_audit(&page).await.unwrap();
    page.before_id = Some(first[0].id);
    let second = store.list_audit(&page).await.unwrap();
    assert_eq!(
        (positions(first), positions(second)),
        (vec![-1003], vec![-1002])
    );

    // Records of no event (refused requests) are all kept.
    let mut refused = record(base + 30, "mallory", "request.refused", ns, 0);
    refused.event_position = None;
    assert_eq!(
        store
            .record_audit(&[refused.clone(), refused.clone()])
            .await
            .unwrap(),
        2
    );
    let found = store
        .list_audit(&query(Some(base), Some("mallory"), None, None))
        .await
        .unwrap();
    assert_eq!(found.len(), 2);
    assert_eq!(found[0].record, refused);

    // Retention deletes by age.
    assert_eq!(store.delete_audit_before(base + 10, 100).await.unwrap(), 1);
    assert_eq!(store.delete_audit_before(base + 100, 100).await.unwrap(), 4);
    assert_eq!(
        positions(
            store
                .list_audit(&query(Some(base), None, None, None))
                .await
                .unwrap()
        ),
        Vec::<i64>::new()
    );
}
