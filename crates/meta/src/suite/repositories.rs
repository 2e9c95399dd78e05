//! The shared suite of [`RepositoryStore`](crate::RepositoryStore).

use super::*;

/// Every test of this suite, by name, in the order [`super::run_all`] runs them.
pub const TESTS: &[(&str, SuiteTest)] = &[
    ("repositories_are_listed_in_byte_order_and_paged", |store| {
        Box::pin(repositories_are_listed_in_byte_order_and_paged(store))
    }),
    ("repositories_are_deleted_step_by_step", |store| {
        Box::pin(repositories_are_deleted_step_by_step(store))
    }),
];

pub async fn repositories_are_listed_in_byte_order_and_paged(store: &dyn MetaStore) {
    const PREFIX: &str = "suite-repos/";
    let sorted: Vec<String> = ["a", "a-b", "a.b", "a/b", "a0", "a__b", "a_b", "ab"]
        .iter()
        .map(|name| format!("{PREFIX}{name}"))
        .collect();
    // Repositories come into being through any of the three kinds of write.
    let blob = digest_of("suite-repos blob");
    let manifest = image("suite-repos image", &[]);
    for (position, name) in ["ab", "a/b", "a", "a_b", "a0", "a.b", "a__b", "a-b"]
        .iter()
        .enumerate()
    {
        let repo = repository(&format!("{PREFIX}{name}"));
        match position % 3 {
            0 => link(store, &repo, &blob, 1).await,
            1 => put(store, &repo, &manifest, None).await,
            _ => {
                let id = format!("suite-repos-{position}");
                store
                    .create_upload(&at(NOW), &upload(&id, &repo, NOW))
                    .await
                    .unwrap();
                assert!(store.delete_upload(&id).await.unwrap());
            }
        }
    }

    // Other tests' repositories may be present, so only names under the
    // prefix count, and listing starts at the prefix's first component.
    let start = repository("suite-repos");
    let under_prefix = |names: Vec<RepoName>| -> Vec<String> {
        names
            .into_iter()
            .map(|name| name.as_str().to_string())
            .take_while(|name| name.starts_with(PREFIX))
            .collect()
    };
    let all = store
        .list_repositories(Some(&start), usize::MAX)
        .await
        .unwrap();
    assert_eq!(under_prefix(all), sorted);

    let cases: &[(&str, usize, &[&str])] = &[
        ("a", 3, &["a-b", "a.b", "a/b"]),
        ("a/b", 2, &["a0", "a__b"]),
        ("a_b", 10, &["ab"]),
    ];
    for &(after, limit, expected) in cases {
        let after = repository(&format!("{PREFIX}{after}"));
        let listed = store.list_repositories(Some(&after), limit).await.unwrap();
        let expected: Vec<String> = expected
            .iter()
            .map(|name| format!("{PREFIX}{name}"))
            .collect();
        assert_eq!(
            under_prefix(listed),
            expected,
            "after {after}, limit {limit}"
        );
    }
    assert!(store.list_repositories(None, 0).await.unwrap().is_empty());

    // Paging three at a time visits every repository once, in order.
    let mut paged: Vec<String> = Vec::new();
    let mut after = start;
    loop {
        let page = store.list_repositories(Some(&after), 3).await.unwrap();
        let Some(last) = page.last().cloned() else {
            break;
        };
        let page_len = page.len();
        let mine = under_prefix(page);
        let done = mine.len() < page_len;
        paged.extend(mine);
        if done {
            break;
        }
        after = last;
    }
    assert_eq!(paged, sorted);

    for (position, name) in ["ab", "a/b", "a", "a_b", "a0", "a.b", "a__b", "a-b"]
        .iter()
        .enumerate()
    {
        let repo = repository(&format!("{PREFIX}{name}"));
        match position % 3 {
            0 => assert!(store.unlink_blob(&at(NOW), &repo, &blob).await.unwrap()),
            1 => assert_eq!(
                delete(store, &repo, &manifest.record.digest).await,
                Vec::<Tag>::new()
            ),
            _ => {}
        }
        assert_clean(store, &repo, &[&manifest.record.digest]).await;
    }
}

pub async fn repositories_are_deleted_step_by_step(store: &dyn MetaStore) {
    let repo = repository("suite-repodel/app");
    let neighbour = repository("suite-repodel/other");
    let shared = digest_of("suite-repodel shared");
    let own = digest_of("suite-repodel own");
    let loose = digest_of("suite-repodel loose");
    for digest in [&shared, &own, &loose] {
        link(store, &repo, digest, 5).await;
    }
    link(store, &neighbour, &shared, 5).await;
    let child = image("suite-repodel child", &[&shared, &own]);
    let parent = index("suite-repodel index", &[&child.record.digest]);
    let signature = referrer("suite-repodel sig", &child.record.digest, SIGNATURE_TYPE);
    put(store, &repo, &child, None).await;
    put(store, &repo, &parent, Some(&tag("latest"))).await;
    put(store, &repo, &signature, Some(&tag("sig"))).await;
    let session = upload("suite-repodel-upload", &repo, NOW);
    store.create_upload(&at(NOW), &session).await.unwrap();

    // One item per step: the index and the referrer (listed by no index)
    // go before the child the index lists, and manifests before links.
    let mut manifests = Vec::new();
    let mut links = Vec::new();
    let uploads = loop {
        assert!(manifests.len() + links.len() <= 6, "more steps than items");
        match store
            .delete_repository_step(&at(NOW + 5), &repo, 1)
            .await
            .unwrap()
        {
            RepositoryDeletion::Progress {
                manifests: deleted,
                links: removed,
            } => {
                assert_eq!(deleted.len() + removed.len(), 1);
                assert!(
                    deleted.is_empty() || links.is_empty(),
                    "a link went before a manifest"
                );
                manifests.extend(deleted);
                links.extend(removed);
            }
            RepositoryDeletion::Deleted { uploads } => break uploads,
            RepositoryDeletion::Missing => panic!("the repository vanished"),
        }
    };
    let child_position = manifests
        .iter()
        .position(|d| *d == child.record.digest)
        .unwrap();
    let parent_position = manifests
        .iter()
        .position(|d| *d == parent.record.digest)
        .unwrap();
    assert!(parent_position < child_position, "{manifests:?}");
    assert_eq!(manifests.len(), 3);
    let mut expected_links = vec![shared.clone(), own.clone(), loose.clone()];
    expected_links.sort();
    links.sort();
    assert_eq!(links, expected_links);
    assert_eq!(uploads, vec![session]);

    // Gone from every listing; a later step finds nothing.
    assert_eq!(
        store
            .delete_repository_step(&at(NOW), &repo, 1)
            .await
            .unwrap(),
        RepositoryDeletion::Missing
    );
    assert!(!store
        .list_repositories(None, usize::MAX)
        .await
        .unwrap()
        .contains(&repo));
    assert_eq!(
        store
            .list_namespace_repositories("suite-repodel", None, 10)
            .await
            .unwrap(),
        vec![neighbour.clone()]
    );
    assert_eq!(list_tags(store, &repo).await, None);
    assert_eq!(store.linked_blob_size(&repo, &own).await.unwrap(), None);

    // What lost its last reference is garbage from the deletion on; the
    // blob the neighbour still links is not.
    let orphaned: Vec<Digest> = store
        .expired_blobs(NOW + 6, None, usize::MAX)
        .await
        .unwrap()
        .into_iter()
        .map(|b| b.digest)
        .filter(|d| [&shared, &own, &loose].contains(&d))
        .collect();
    let mut expected = vec![own.clone(), loose.clone()];
    expected.sort();
    let mut orphaned_sorted = orphaned;
    orphaned_sorted.sort();
    assert_eq!(orphaned_sorted, expected);
    assert!(store
        .expired_blobs(NOW + 5, None, usize::MAX)
        .await
        .unwrap()
        .iter()
        .all(|b| b.digest != own));

    // A repository pushed to again after its deletion starts afresh.
    link(store, &repo, &loose, 5).await;
    assert_eq!(
        store.linked_blob_size(&repo, &loose).await.unwrap(),
        Some(5)
    );
    delete_repository(store, &repo).await;
    delete_repository(store, &neighbour).await;
    store
        .delete_namespace(&at(NOW), "suite-repodel")
        .await
        .unwrap();
}
