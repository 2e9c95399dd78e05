//! The shared suite of what every method promises: readiness and
//! concurrent use.

use super::*;

/// Every test of this suite, by name, in the order [`super::run_all`] runs them.
pub const TESTS: &[(&str, SuiteTest)] = &[
    ("store_is_ready", |store| Box::pin(store_is_ready(store))),
    ("concurrent_writers_all_succeed", |store| {
        Box::pin(concurrent_writers_all_succeed(store))
    }),
];

pub async fn store_is_ready(store: &dyn MetaStore) {
    store.check_ready().await.expect("a fresh store is ready");
}

pub async fn concurrent_writers_all_succeed(store: &dyn MetaStore) {
    const WRITERS: usize = 20;
    let repos = [
        repository("suite-concurrent/one"),
        repository("suite-concurrent/two"),
    ];
    // Each writer links its own layer and a shared one, then pushes a manifest
    // referencing both, so writers contend for the same rows and the same lock.
    let shared = digest_of("suite-concurrent shared layer");
    let writer = |number: usize| {
        let repo = &repos[number % repos.len()];
        let shared = &shared;
        async move {
            let layer = digest_of(&format!("suite-concurrent layer {number}"));
            store.link_blob(&at(NOW), repo, shared, 6).await?;
            store.link_blob(&at(NOW), repo, &layer, 7).await?;
            let manifest = image(
                &format!("suite-concurrent image {number}"),
                &[shared, &layer],
            );
            let tag = tag(&format!("t{number:02}"));
            store
                .put_manifest(&at(NOW), repo, &manifest, Some(&tag))
                .await?;
            let found = store.manifest_by_tag(repo, &tag).await?;
            assert_eq!(
                found,
                Some(manifest.record),
                "writer {number} reads its own write"
            );
            Ok::<(), MetaError>(())
        }
    };
    let results = join_all((0..WRITERS).map(writer)).await;
    for (number, result) in results.into_iter().enumerate() {
        result.unwrap_or_else(|error| panic!("writer {number} failed: {error:?}"));
    }

    for (position, repo) in repos.iter().enumerate() {
        let expected: Vec<Tag> = (0..WRITERS)
            .filter(|number| number % repos.len() == position)
            .map(|number| tag(&format!("t{number:02}")))
            .collect();
        assert_eq!(list_tags(store, repo).await, Some(expected));
    }

    for number in 0..WRITERS {
        let repo = &repos[number % repos.len()];
        let manifest = digest_of(&format!("suite-concurrent image {number}"));
        assert_eq!(
            delete(store, repo, &manifest).await,
            tags(&[&format!("t{number:02}")])
        );
        let layer = digest_of(&format!("suite-concurrent layer {number}"));
        assert!(store.unlink_blob(&at(NOW), repo, &layer).await.unwrap());
    }
    for repo in &repos {
        assert!(store.unlink_blob(&at(NOW), repo, &shared).await.unwrap());
        assert_clean(store, repo, &[]).await;
    }
}
