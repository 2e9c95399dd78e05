//! The shared suite of [`AdvisorySyncStore`](crate::AdvisorySyncStore).
//!
//! Sources cannot be deleted through the trait, so the test uses URLs of
//! its own and looks only at those.

use super::*;
use crate::AdvisorySourceRow;

/// Every test of this suite, by name, in the order [`super::run_all`] runs them.
pub const TESTS: &[(&str, SuiteTest)] = &[(
    "advisory_sources_record_attempts_successes_and_validators",
    |store| {
        Box::pin(advisory_sources_record_attempts_successes_and_validators(
            store,
        ))
    },
)];

async fn mine(store: &dyn MetaStore) -> Vec<AdvisorySourceRow> {
    store
        .advisory_sources()
        .await
        .unwrap()
        .into_iter()
        .filter(|row| row.url.starts_with("https://suite-sync."))
        .collect()
}

/// A failure first creates the row with its error only; a success records
/// its time, count and validators and clears the error; a later failure
/// keeps the success and validators; a success without validators (304)
/// keeps the stored ones; sources are listed by URL.
pub async fn advisory_sources_record_attempts_successes_and_validators(store: &dyn MetaStore) {
    let zip = "https://suite-sync.example/b/all.zip";
    let record = "https://suite-sync.example/a/record.json";
    store
        .record_advisory_sync_failure(zip, NOW, "connection refused")
        .await
        .unwrap();
    assert_eq!(
        mine(store).await,
        vec![AdvisorySourceRow {
            url: zip.into(),
            last_attempt_at: Some(NOW),
            last_error: Some("connection refused".into()),
            ..AdvisorySourceRow::default()
        }]
    );

    store
        .record_advisory_sync_success(zip, NOW + 10, 42, Some((Some("\"v1\""), None)))
        .await
        .unwrap();
    store
        .record_advisory_sync_success(
            record,
            NOW + 11,
            1,
            Some((None, Some("Fri, 04 Dec 2026 12:00:00 GMT"))),
        )
        .await
        .unwrap();
    let synced = AdvisorySourceRow {
        url: zip.into(),
        last_attempt_at: Some(NOW + 10),
        last_success_at: Some(NOW + 10),
        records_changed: 42,
        last_error: None,
        etag: Some("\"v1\"".into()),
        last_modified: None,
    };
    let other = AdvisorySourceRow {
        url: record.into(),
        last_attempt_at: Some(NOW + 11),
        last_success_at: Some(NOW + 11),
        records_changed: 1,
        last_error: None,
        etag: None,
        last_modified: Some("Fri, 04 Dec 2026 12:00:00 GMT".into()),
    };
    assert_eq!(mine(store).await, vec![other.clone(), synced.clone()]);

    store
        .record_advisory_sync_failure(zip, NOW + 20, "HTTP 503")
        .await
        .unwrap();
    let failed = AdvisorySourceRow {
        last_attempt_at: Some(NOW + 20),
        last_error: Some("HTTP 503".into()),
        ..synced.clone()
    };
    assert_eq!(mine(store).await, vec![other.clone(), failed]);

    // Not modified: the validators stay, the count is of this sync.
    store
        .record_advisory_sync_success(zip, NOW + 30, 0, None)
        .await
        .unwrap();
    let unchanged = AdvisorySourceRow {
        last_attempt_at: Some(NOW + 30),
        last_success_at: Some(NOW + 30),
        records_changed: 0,
        ..synced
    };
    assert_eq!(mine(store).await, vec![other, unchanged]);
}
