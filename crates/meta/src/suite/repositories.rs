//! The shared suite of [`RepositoryStore`](crate::RepositoryStore).

use super::*;

/// Every test of this suite, by name, in the order [`super::run_all`] runs them.
pub const TESTS: &[(&str, SuiteTest)] =
    &[
        ("repositories_are_listed_in_byte_order_and_paged", |store| {
            Box::pin(repositories_are_listed_in_byte_order_and_paged(store))
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
                store.create_upload(&upload(&id, &repo, NOW)).await.unwrap();
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
            0 => assert!(store.unlink_blob(&repo, &blob, NOW).await.unwrap()),
            1 => assert_eq!(
                delete(store, &repo, &manifest.record.digest).await,
                Vec::<Tag>::new()
            ),
            _ => {}
        }
        assert_clean(store, &repo, &[&manifest.record.digest]).await;
    }
}
