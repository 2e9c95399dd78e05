//! The shared suite of [`UploadStore`](crate::UploadStore).

use super::*;

/// Every test of this suite, by name, in the order [`super::run_all`] runs them.
pub const TESTS: &[(&str, SuiteTest)] = &[
    (
        "upload_leases_exclude_other_holders_until_expiry",
        |store| Box::pin(upload_leases_exclude_other_holders_until_expiry(store)),
    ),
    (
        "a_node_releases_the_upload_leases_of_its_earlier_life",
        |store| Box::pin(a_node_releases_the_upload_leases_of_its_earlier_life(store)),
    ),
    ("uploads_are_claimed_unless_another_lease_runs", |store| {
        Box::pin(uploads_are_claimed_unless_another_lease_runs(store))
    }),
    ("uploads_without_records_are_reported", |store| {
        Box::pin(uploads_without_records_are_reported(store))
    }),
    ("expired_uploads_are_listed_oldest_first", |store| {
        Box::pin(expired_uploads_are_listed_oldest_first(store))
    }),
    (
        "live_uploads_are_counted_per_repository_and_principal",
        |store| Box::pin(live_uploads_are_counted_per_repository_and_principal(store)),
    ),
];

pub async fn upload_leases_exclude_other_holders_until_expiry(store: &dyn MetaStore) {
    let repo = repository("suite-uploads/app");
    let other = repository("suite-uploads/other");
    let id = "suite-uploads-1";
    let created = upload(id, &repo, NOW);
    store.create_upload(&at(NOW), &created).await.unwrap();

    assert_eq!(
        store.get_upload(&repo, id).await.unwrap(),
        Some(created.clone())
    );
    assert_eq!(
        store.get_upload(&other, id).await.unwrap(),
        None,
        "uploads belong to one repository"
    );
    assert_eq!(
        store
            .get_upload(&repo, "suite-uploads-absent")
            .await
            .unwrap(),
        None
    );

    // Steps of (holder, now, expected outcome) against a 30-second lease.
    #[derive(Debug)]
    enum Outcome {
        Locked,
        Busy,
    }
    let steps: &[(&str, Timestamp, Outcome)] = &[
        ("alice", NOW, Outcome::Locked),
        ("bob", NOW + 10, Outcome::Busy),
        // The holder may renew its own lease, which now runs to NOW + 40.
        ("alice", NOW + 10, Outcome::Locked),
        ("bob", NOW + 39, Outcome::Busy),
        // At the expiry second the lease is over and another holder takes it.
        ("bob", NOW + 40, Outcome::Locked),
        ("alice", NOW + 41, Outcome::Busy),
    ];
    for (holder, now, expected) in steps {
        let result = store.lock_upload(&repo, id, holder, *now, 30).await;
        match (expected, result) {
            (Outcome::Locked, Ok(record)) => assert_eq!(record, created),
            (Outcome::Busy, Err(MetaError::UploadBusy)) => {}
            (expected, result) => {
                panic!("{holder} at {now}: expected {expected:?}, got {result:?}")
            }
        }
    }

    // Alice lost the lease, so her write is refused and the progress kept.
    match store
        .update_upload(id, "alice", "alice's progress", NOW + 42)
        .await
    {
        Err(MetaError::UploadBusy) => {}
        other => panic!("expected UploadBusy, got {other:?}"),
    }
    // Alice releasing what she no longer holds leaves Bob's lease in place.
    store.unlock_upload(id, "alice").await.unwrap();
    assert!(matches!(
        store.lock_upload(&repo, id, "alice", NOW + 43, 30).await,
        Err(MetaError::UploadBusy)
    ));

    // Bob's update stores progress, moves `updated_at` and releases the lease.
    store
        .update_upload(id, "bob", "bob's progress", NOW + 44)
        .await
        .unwrap();
    let updated = store
        .get_upload(&repo, id)
        .await
        .unwrap()
        .expect("upload exists");
    assert_eq!(updated.progress, "bob's progress");
    assert_eq!(updated.updated_at, NOW + 44);
    assert_eq!(updated.created_at, NOW);
    match store.update_upload(id, "bob", "again", NOW + 45).await {
        Err(MetaError::UploadBusy) => {}
        other => panic!("an update without the lease must fail, got {other:?}"),
    }

    // A lease that expired but was not taken still lets its holder write.
    store
        .lock_upload(&repo, id, "alice", NOW + 50, 5)
        .await
        .unwrap();
    store
        .update_upload(id, "alice", "late but fine", NOW + 100)
        .await
        .unwrap();

    // Unlocking releases without touching progress.
    store
        .lock_upload(&repo, id, "alice", NOW + 101, 30)
        .await
        .unwrap();
    store.unlock_upload(id, "alice").await.unwrap();
    let record = store
        .lock_upload(&repo, id, "bob", NOW + 102, 30)
        .await
        .unwrap();
    assert_eq!(record.progress, "late but fine");
    assert_eq!(record.updated_at, NOW + 100);
    store.unlock_upload(id, "bob").await.unwrap();

    let absent = "suite-uploads-absent";
    assert!(matches!(
        store.lock_upload(&repo, absent, "bob", NOW, 30).await,
        Err(MetaError::UploadNotFound)
    ));
    assert!(matches!(
        store.lock_upload(&other, id, "bob", NOW, 30).await,
        Err(MetaError::UploadNotFound)
    ));
    assert!(matches!(
        store.update_upload(absent, "bob", "{}", NOW).await,
        Err(MetaError::UploadNotFound)
    ));
    store.unlock_upload(absent, "bob").await.unwrap();

    assert!(store.delete_upload(id).await.unwrap());
    assert!(!store.delete_upload(id).await.unwrap());
    assert_eq!(store.get_upload(&repo, id).await.unwrap(), None);
}

pub async fn uploads_are_claimed_unless_another_lease_runs(store: &dyn MetaStore) {
    let repo = repository("suite-uploads/claim");
    let other = repository("suite-uploads/claim-other");
    let free = upload("suite-claim-free", &repo, NOW);
    let leased = upload("suite-claim-leased", &repo, NOW);
    for record in [&free, &leased] {
        store.create_upload(&at(NOW), record).await.unwrap();
    }
    store
        .lock_upload(&repo, &leased.id, "alice", NOW, 30)
        .await
        .unwrap();

    // Steps of (repository, upload, now, expected outcome); a claim that
    // succeeds returns the record as it stood and deletes it.
    #[derive(Debug)]
    enum Outcome {
        Claimed(UploadRecord),
        Busy,
        NotFound,
    }
    let steps: Vec<(&RepoName, &str, Timestamp, Outcome)> = vec![
        (&other, &free.id, NOW, Outcome::NotFound),
        (&repo, "suite-claim-absent", NOW, Outcome::NotFound),
        (&repo, &free.id, NOW, Outcome::Claimed(free.clone())),
        // Claimed means gone: a second claim finds nothing.
        (&repo, &free.id, NOW, Outcome::NotFound),
        (&repo, &leased.id, NOW + 29, Outcome::Busy),
        // At its expiry second the lease no longer protects the session.
        (
            &repo,
            &leased.id,
            NOW + 30,
            Outcome::Claimed(leased.clone()),
        ),
        (&repo, &leased.id, NOW + 31, Outcome::NotFound),
    ];
    for (repository, id, now, expected) in steps {
        let result = store.claim_upload(repository, id, now).await;
        match (&expected, result) {
            (Outcome::Claimed(record), Ok(claimed)) => assert_eq!(&claimed, record),
            (Outcome::Busy, Err(MetaError::UploadBusy)) => {}
            (Outcome::NotFound, Err(MetaError::UploadNotFound)) => {}
            (expected, result) => {
                panic!("claiming {id} at {now}: expected {expected:?}, got {result:?}")
            }
        }
    }
    for record in [&free, &leased] {
        assert_eq!(store.get_upload(&repo, &record.id).await.unwrap(), None);
        assert!(matches!(
            store
                .lock_upload(&repo, &record.id, "bob", NOW + 40, 30)
                .await,
            Err(MetaError::UploadNotFound)
        ));
    }
}

pub async fn expired_uploads_are_listed_oldest_first(store: &dyn MetaStore) {
    // Timestamps far before NOW, which every other test uses, so uploads
    // other tests might leave behind cannot appear here.
    let repo = repository("suite-expired/app");
    let other = repository("suite-expired/other");
    let uploads = [
        upload("suite-expired-b", &repo, 30),
        upload("suite-expired-a", &other, 10),
        upload("suite-expired-c", &repo, 20),
        upload("suite-expired-d", &repo, 20),
    ];
    for upload in &uploads {
        store.create_upload(&at(NOW), upload).await.unwrap();
    }
    let [b, a, c, d] = &uploads;

    let cases: &[(Timestamp, usize, Vec<&UploadRecord>)] = &[
        (10, 100, vec![]),
        (11, 100, vec![a]),
        // Equal times are ordered by id, so pages are stable.
        (30, 100, vec![a, c, d]),
        (31, 100, vec![a, c, d, b]),
        (31, 2, vec![a, c]),
        (31, 0, vec![]),
    ];
    for (before, limit, expected) in cases {
        let listed = store.expired_uploads(*before, *limit).await.unwrap();
        let expected: Vec<UploadRecord> = expected.iter().map(|&upload| upload.clone()).collect();
        assert_eq!(listed, expected, "before {before}, limit {limit}");
    }

    for upload in &uploads {
        assert!(store.delete_upload(&upload.id).await.unwrap());
    }
    assert!(store.expired_uploads(31, 100).await.unwrap().is_empty());
}

pub async fn live_uploads_are_counted_per_repository_and_principal(store: &dyn MetaStore) {
    let one = repository("suite-live/one");
    let two = repository("suite-live/two");
    let opened = |id: &str, repo: &RepoName, updated_at: Timestamp, principal: Option<&str>| {
        let mut record = upload(id, repo, updated_at);
        record.principal = principal.map(str::to_string);
        record
    };
    let sessions = [
        opened("suite-live-1", &one, NOW, Some("alice")),
        opened("suite-live-2", &one, NOW - 10, Some("alice")),
        opened("suite-live-3", &one, NOW, None),
        opened("suite-live-4", &two, NOW, Some("alice")),
        opened("suite-live-5", &two, NOW, Some("bob")),
        // Older than the cut-off below: expired, so not counted.
        opened("suite-live-6", &one, NOW - 100, Some("alice")),
    ];
    for session in &sessions {
        store.create_upload(&at(NOW), session).await.unwrap();
    }
    let stored = store
        .get_upload(&one, "suite-live-1")
        .await
        .unwrap()
        .unwrap();
    assert_eq!(stored.principal.as_deref(), Some("alice"));
    let count = |repo, principal, since| store.count_live_uploads(repo, principal, since);
    let live = |in_repository, of_principal| crate::LiveUploads {
        in_repository,
        of_principal,
    };
    let since = NOW - 50;
    assert_eq!(count(&one, Some("alice"), since).await.unwrap(), live(3, 3));
    assert_eq!(count(&two, Some("bob"), since).await.unwrap(), live(2, 1));
    assert_eq!(count(&one, None, since).await.unwrap(), live(3, 0));
    assert_eq!(count(&one, Some("carol"), since).await.unwrap(), live(3, 0));
    assert_eq!(
        count(&one, Some("alice"), NOW - 100).await.unwrap(),
        live(4, 4)
    );
    assert_eq!(count(&one, Some("alice"), NOW).await.unwrap(), live(2, 2));
    let absent = repository("suite-live/absent");
    assert_eq!(
        count(&absent, Some("alice"), since).await.unwrap(),
        live(0, 3)
    );
    // A finished (deleted) session no longer counts.
    assert!(store.delete_upload("suite-live-4").await.unwrap());
    assert_eq!(count(&two, Some("alice"), since).await.unwrap(), live(1, 2));
    for session in &sessions[..] {
        store.delete_upload(&session.id).await.unwrap();
    }
    assert_eq!(count(&one, Some("alice"), 0).await.unwrap(), live(0, 0));

    // Opening a session checks the same counts as it inserts: refused, it
    // writes nothing and says which count was full. (id, repository,
    // principal, caps per repository and per principal, expected.)
    let three = repository("suite-live/three");
    let four = repository("suite-live/four");
    let opening = crate::UploadOpening::Opened;
    let full = |r, p| crate::UploadOpening::Full(live(r, p));
    type Case<'a> = (
        &'a str,
        &'a RepoName,
        Option<&'a str>,
        u64,
        u64,
        crate::UploadOpening,
    );
    let cases: &[Case] = &[
        ("suite-open-1", &one, Some("alice"), 1, 1, opening),
        ("suite-open-2", &one, Some("bob"), 1, 5, full(1, 0)),
        ("suite-open-3", &two, Some("alice"), 5, 1, full(0, 1)),
        // Anonymous sessions have no principal to count.
        ("suite-open-4", &two, None, 5, 0, opening),
        // A new repository is created with its first session.
        ("suite-open-5", &three, Some("alice"), 5, 2, opening),
        ("suite-open-6", &four, Some("alice"), 5, 2, full(0, 2)),
    ];
    for &(id, repo, principal, per_repository, per_principal, expected) in cases {
        let caps = crate::UploadCaps {
            per_repository,
            per_principal,
            since,
        };
        let record = opened(id, repo, NOW, principal);
        let got = store.open_upload(&at(NOW), &record, &caps).await.unwrap();
        assert_eq!(got, expected, "{id}");
        let stored = store.get_upload(repo, id).await.unwrap();
        assert_eq!(stored.is_some(), expected == opening, "{id}");
    }
    for &(id, ..) in cases {
        store.delete_upload(id).await.unwrap();
    }

    delete_repository(store, &three).await;
    delete_repository(store, &one).await;
    delete_repository(store, &two).await;
    store
        .delete_namespace(&at(NOW), "suite-live")
        .await
        .unwrap();
}

pub async fn a_node_releases_the_upload_leases_of_its_earlier_life(store: &dyn MetaStore) {
    let repo = repository("suite-release/app");
    // (upload, holder of its lease, released by the prefix "node-1/")
    let cases: &[(&str, Option<&str>, bool)] = &[
        ("suite-release-a", Some("node-1/a1"), true),
        ("suite-release-b", Some("node-1/b2"), true),
        // Another node whose name starts with the same characters.
        ("suite-release-c", Some("node-10/c3"), false),
        ("suite-release-d", Some("node-2/d4"), false),
        // Characters that `LIKE` would treat as patterns match themselves.
        ("suite-release-e", Some("node_1/e5"), false),
        ("suite-release-f", None, false),
    ];
    for (id, holder, _) in cases {
        store
            .create_upload(&at(NOW), &upload(id, &repo, NOW))
            .await
            .unwrap();
        if let Some(holder) = holder {
            store
                .lock_upload(&repo, id, holder, NOW, 300)
                .await
                .unwrap();
        }
    }
    let expected = cases.iter().filter(|(_, _, released)| *released).count();
    assert_eq!(
        store.release_upload_leases("node-1/").await.unwrap(),
        expected as u64
    );
    for (id, holder, released) in cases {
        // The leases run for 300 seconds; only a released one (or none)
        // lets another holder in now.
        let taken = store.lock_upload(&repo, id, "other", NOW + 1, 30).await;
        match (holder, released, taken) {
            (None, _, Ok(_)) | (Some(_), true, Ok(_)) => {}
            (Some(_), false, Err(MetaError::UploadBusy)) => {}
            (holder, released, taken) => {
                panic!("{id} held by {holder:?} (released: {released}): lock gave {taken:?}")
            }
        }
        let record = store.get_upload(&repo, id).await.unwrap().expect("kept");
        assert_eq!(record, upload(id, &repo, NOW), "progress is untouched");
    }
    assert_eq!(store.release_upload_leases("node-1/").await.unwrap(), 0);
    for (id, _, _) in cases {
        assert!(store.delete_upload(id).await.unwrap());
    }
}

pub async fn uploads_without_records_are_reported(store: &dyn MetaStore) {
    let repo = repository("suite-unknown-uploads/app");
    let known = ["suite-unknown-uploads-a", "suite-unknown-uploads-b"];
    for id in known {
        store
            .create_upload(&at(NOW), &upload(id, &repo, NOW))
            .await
            .unwrap();
    }
    let ids = |names: &[&str]| names.iter().map(|n| n.to_string()).collect::<Vec<_>>();
    let cases: &[(&[&str], &[&str])] = &[
        (&[], &[]),
        (&known, &[]),
        (
            &[
                "suite-unknown-uploads-y",
                "suite-unknown-uploads-a",
                "suite-unknown-uploads-x",
                "suite-unknown-uploads-y",
                "suite-unknown-uploads-b",
            ],
            &["suite-unknown-uploads-y", "suite-unknown-uploads-x"],
        ),
    ];
    for (asked, expected) in cases {
        assert_eq!(
            store.unknown_uploads(&ids(asked)).await.unwrap(),
            ids(expected),
            "asked {asked:?}"
        );
    }
    for id in known {
        assert!(store.delete_upload(id).await.unwrap());
    }
    assert_eq!(
        store.unknown_uploads(&ids(&known)).await.unwrap(),
        ids(&known)
    );
}
