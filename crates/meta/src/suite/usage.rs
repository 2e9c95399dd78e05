//! The shared suite of [`UsageHistoryStore`](crate::UsageHistoryStore).

use super::*;
use crate::usage::{DailyUsage, DAY};
use crate::{PullCount, TrafficCount};

/// Every test of this suite, by name, in the order [`super::run_all`] runs them.
pub const TESTS: &[(&str, SuiteTest)] = &[(
    "daily_usage_adds_pulls_and_bytes_and_snapshots_storage",
    |store| {
        Box::pin(daily_usage_adds_pulls_and_bytes_and_snapshots_storage(
            store,
        ))
    },
)];

/// Pull and traffic batches add to their day's row (created with the
/// namespace's storage then); a snapshot sets every namespace's storage
/// of a day and keeps its pulls; the series is read from a day on, oldest
/// first; pruning deletes the days before a cutoff.
pub async fn daily_usage_adds_pulls_and_bytes_and_snapshots_storage(store: &dyn MetaStore) {
    let repo = repository("suite-usage/app");
    let layer = digest_of("suite-usage layer");
    link(store, &repo, &layer, 1000).await;
    let manifest = image("suite-usage one", &[&layer]);
    put(store, &repo, &manifest, None).await;
    let storage = store
        .namespace_usage("suite-usage")
        .await
        .unwrap()
        .unwrap()
        .storage_bytes;
    assert!(storage > 1000, "{storage}");
    // Days far in the past, so that nothing else in a shared store is older.
    let day1 = crate::day_start(1_000_000_000);
    let (day2, day3) = (day1 + DAY, day1 + 2 * DAY);
    let pull = |pulls, at| PullCount {
        repository: repo.clone(),
        digest: manifest.record.digest.clone(),
        pulls,
        last_pulled_at: at,
        actor: crate::Actor::anonymous(),
        warning: None,
    };
    store
        .record_pulls(
            &[pull(2, day1 + 10), pull(3, day2 + 5), pull(1, day1 + 99)],
            false,
        )
        .await
        .unwrap();
    let traffic = |day, bytes| TrafficCount {
        namespace: "suite-usage".to_string(),
        month: day,
        day,
        bytes,
    };
    store
        .record_traffic(&[traffic(day2, 500), traffic(day2, 20)])
        .await
        .unwrap();
    // The storage snapshot of day 2 keeps its pulls; day 3 is new.
    store.snapshot_storage(day2).await.unwrap();
    store.snapshot_storage(day3).await.unwrap();

    let day = |day, pulls, pull_bytes| DailyUsage {
        day,
        storage_bytes: storage,
        pulls,
        pull_bytes,
    };
    assert_eq!(
        store.usage_history("suite-usage", day1).await.unwrap(),
        vec![day(day1, 3, 0), day(day2, 3, 520), day(day3, 0, 0)]
    );
    assert_eq!(
        store.usage_history("suite-usage", day2).await.unwrap(),
        vec![day(day2, 3, 520), day(day3, 0, 0)]
    );
    assert_eq!(
        store.usage_history("suite-absent", day1).await.unwrap(),
        vec![]
    );

    assert!(store.prune_usage_history(day2).await.unwrap() >= 1);
    assert_eq!(
        store.usage_history("suite-usage", 0).await.unwrap(),
        vec![day(day2, 3, 520), day(day3, 0, 0)]
    );
    store.prune_usage_history(day3 + DAY).await.unwrap();
    assert_eq!(store.usage_history("suite-usage", 0).await.unwrap(), vec![]);
    delete(store, &repo, &manifest.record.digest).await;
}
