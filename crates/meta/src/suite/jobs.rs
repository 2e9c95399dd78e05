//! The shared suite of [`JobLeaseStore`](crate::JobLeaseStore).

use super::*;

/// Every test of this suite, by name, in the order [`super::run_all`] runs them.
pub const TESTS: &[(&str, SuiteTest)] = &[
    ("job_leases_exclude_other_holders_until_expiry", |store| {
        Box::pin(job_leases_exclude_other_holders_until_expiry(store))
    }),
    ("racing_job_lease_takers_have_one_winner", |store| {
        Box::pin(racing_job_lease_takers_have_one_winner(store))
    }),
];

pub async fn job_leases_exclude_other_holders_until_expiry(store: &dyn MetaStore) {
    let purge = "suite-jobs purge";
    let collect = "suite-jobs collect";
    // Steps of (holder, job, now, expect taken) against 30-second leases.
    let steps: &[(&str, &str, Timestamp, bool)] = &[
        ("alice", purge, NOW, true),
        ("bob", purge, NOW + 10, false),
        // Leases are per job: Bob may hold another job meanwhile.
        ("bob", collect, NOW + 10, true),
        // The holder renews its own lease, which now runs to NOW + 41.
        ("alice", purge, NOW + 11, true),
        ("bob", purge, NOW + 40, false),
        // At the expiry second the lease is over and another holder takes it.
        ("bob", purge, NOW + 41, true),
        ("alice", purge, NOW + 42, false),
    ];
    for &(holder, job, now, expected) in steps {
        let taken = store.acquire_job_lease(job, holder, now, 30).await.unwrap();
        assert_eq!(taken, expected, "{holder} taking {job:?} at {now}");
    }

    // Alice releasing what she no longer holds leaves Bob's lease in place.
    store.release_job_lease(purge, "alice").await.unwrap();
    assert!(!store
        .acquire_job_lease(purge, "alice", NOW + 43, 30)
        .await
        .unwrap());
    // Once Bob releases it, Alice need not wait for the expiry.
    store.release_job_lease(purge, "bob").await.unwrap();
    assert!(store
        .acquire_job_lease(purge, "alice", NOW + 44, 30)
        .await
        .unwrap());

    // Releasing twice, or a job nobody holds, is harmless.
    store.release_job_lease(purge, "alice").await.unwrap();
    store.release_job_lease(purge, "alice").await.unwrap();
    store
        .release_job_lease("suite-jobs absent", "alice")
        .await
        .unwrap();
    store.release_job_lease(collect, "bob").await.unwrap();

    // Nothing is left behind: both jobs are free even at the earliest time.
    for job in [purge, collect] {
        assert!(store
            .acquire_job_lease(job, "carol", NOW, 30)
            .await
            .unwrap());
        store.release_job_lease(job, "carol").await.unwrap();
    }
}

pub async fn racing_job_lease_takers_have_one_winner(store: &dyn MetaStore) {
    const NODES: usize = 10;
    let job = "suite-jobs race";
    // First for a free lease, then for one that has just expired: whatever
    // the interleaving, exactly one node runs the job.
    for (round, now) in [NOW, NOW + 30].into_iter().enumerate() {
        let holders: Vec<String> = (0..NODES)
            .map(|node| format!("round {round} node {node}"))
            .collect();
        let results = join_all(
            holders
                .iter()
                .map(|holder| store.acquire_job_lease(job, holder, now, 30)),
        )
        .await;
        let winners: Vec<&String> = holders
            .iter()
            .zip(results)
            .filter_map(|(holder, taken)| taken.unwrap().then_some(holder))
            .collect();
        assert_eq!(winners.len(), 1, "round {round}: winners {winners:?}");
    }
    for node in 0..NODES {
        store
            .release_job_lease(job, &format!("round 1 node {node}"))
            .await
            .unwrap();
    }
    assert!(store
        .acquire_job_lease(job, "carol", NOW, 30)
        .await
        .unwrap());
    store.release_job_lease(job, "carol").await.unwrap();
}
