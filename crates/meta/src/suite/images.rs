//! The shared suite of [`ImageStore`](crate::ImageStore).

use super::*;
use crate::{
    ImageCursor, ImageSummary, RepositoryCursor, RepositoryQuery, RepositorySort,
    RepositorySummary, TagQuery, TagSort, TaggedFilter,
};

/// Every test of this suite, by name, in the order [`super::run_all`] runs them.
pub const TESTS: &[(&str, SuiteTest)] = &[
    (
        "images_are_listed_newest_first_with_tags_and_sizes",
        |store| Box::pin(images_are_listed_newest_first_with_tags_and_sizes(store)),
    ),
    ("image_facts_are_stored_once", |store| {
        Box::pin(image_facts_are_stored_once(store))
    }),
    (
        "repositories_are_summarized_sorted_searched_and_paged",
        |store| Box::pin(repositories_are_summarized_sorted_searched_and_paged(store)),
    ),
    ("tags_are_listed_sorted_searched_and_paged", |store| {
        Box::pin(tags_are_listed_sorted_searched_and_paged(store))
    }),
];

async fn list(
    store: &dyn MetaStore,
    repo: &RepoName,
    filter: TaggedFilter,
    after: Option<&ImageCursor>,
    limit: usize,
) -> Option<Vec<ImageSummary>> {
    store
        .list_images(repo, filter, after, limit)
        .await
        .expect("list_images succeeds")
}

fn digests(images: &[ImageSummary]) -> Vec<Digest> {
    images.iter().map(|i| i.digest.clone()).collect()
}

/// Two images sharing a layer, an index of both, a third image pushed
/// later: sizes count each distinct blob once (an index's, its children's),
/// the order is newest push first then digest descending, pages follow
/// their cursor, and the tag filter chooses.
pub async fn images_are_listed_newest_first_with_tags_and_sizes(store: &dyn MetaStore) {
    let repo = repository("suite-images/app");
    let config_a = digest_of("suite-images config a");
    let config_b = digest_of("suite-images config b");
    let shared = digest_of("suite-images shared layer");
    let own = digest_of("suite-images own layer");
    for (digest, size) in [
        (&config_a, 10),
        (&config_b, 20),
        (&shared, 300),
        (&own, 4000),
    ] {
        link(store, &repo, digest, size).await;
    }
    let amd64 = image("suite-images amd64", &[&config_a, &shared]);
    let arm64 = image("suite-images arm64", &[&config_b, &shared, &own]);
    let both = index(
        "suite-images index",
        &[&amd64.record.digest, &arm64.record.digest],
    );
    let later = image("suite-images later", &[&config_a, &own]);
    let at_time = |time| Change::new(Actor::system("suite"), time);
    for (manifest, tag_name, time) in [
        (&amd64, None, NOW),
        (&arm64, None, NOW),
        (&both, Some("multi"), NOW + 1),
        (&later, Some("latest"), NOW + 2),
    ] {
        store
            .put_manifest(&at_time(time), &repo, manifest, tag_name.map(tag).as_ref())
            .await
            .unwrap();
    }
    store
        .put_manifest(&at(NOW + 3), &repo, &later, Some(&tag("v1")))
        .await
        .unwrap();

    let all = list(store, &repo, TaggedFilter::Any, None, 100)
        .await
        .unwrap();
    let mut same_second = vec![amd64.record.digest.clone(), arm64.record.digest.clone()];
    same_second.sort();
    same_second.reverse();
    let expected = [
        vec![later.record.digest.clone(), both.record.digest.clone()],
        same_second,
    ]
    .concat();
    assert_eq!(
        digests(&all),
        expected,
        "newest first, then digest descending"
    );
    let by_digest = |digest: &Digest| all.iter().find(|i| &i.digest == digest).unwrap();
    // (image, size, tags, pushed at)
    let table: [(&NewManifest, u64, Vec<Tag>, Timestamp); 4] = [
        (&amd64, 10 + 300, vec![], NOW),
        (&arm64, 20 + 300 + 4000, vec![], NOW),
        (&both, 10 + 20 + 300 + 4000, tags(&["multi"]), NOW + 1),
        (&later, 10 + 4000, tags(&["latest", "v1"]), NOW + 2),
    ];
    for (manifest, size, tag_names, pushed_at) in table {
        let found = by_digest(&manifest.record.digest);
        assert_eq!(found.size, size, "{}", manifest.record.digest);
        assert_eq!(found.tags, tag_names, "{}", manifest.record.digest);
        assert_eq!(found.pushed_at, pushed_at, "{}", manifest.record.digest);
        assert_eq!(found.manifest_size, manifest.record.payload.len() as u64);
        assert_eq!(found.media_type, manifest.record.media_type);
        assert_eq!(found.facts, None);
        let one = store
            .image(&repo, &manifest.record.digest)
            .await
            .unwrap()
            .unwrap();
        assert_eq!(&one, found);
    }

    // Pages of one follow their cursors to the same order, and end.
    let mut paged = Vec::new();
    let mut cursor: Option<ImageCursor> = None;
    for _ in 0..10 {
        let page = list(store, &repo, TaggedFilter::Any, cursor.as_ref(), 1)
            .await
            .unwrap();
        let Some(last) = page.last() else { break };
        cursor = Some(ImageCursor {
            pushed_at: last.pushed_at,
            digest: last.digest.clone(),
        });
        paged.extend(digests(&page));
    }
    assert_eq!(paged, expected);

    let tagged = list(store, &repo, TaggedFilter::Tagged, None, 100)
        .await
        .unwrap();
    assert_eq!(digests(&tagged), expected[..2]);
    let untagged = list(store, &repo, TaggedFilter::Untagged, None, 100)
        .await
        .unwrap();
    assert_eq!(digests(&untagged), expected[2..]);

    let missing = repository("suite-images/none");
    assert_eq!(
        list(store, &missing, TaggedFilter::Any, None, 10).await,
        None
    );
    assert_eq!(
        store.image(&missing, &later.record.digest).await.unwrap(),
        None
    );
    assert_eq!(
        store.image(&repo, &digest_of("not stored")).await.unwrap(),
        None
    );

    delete(store, &repo, &later.record.digest).await;
    delete(store, &repo, &both.record.digest).await;
    delete(store, &repo, &amd64.record.digest).await;
    delete(store, &repo, &arm64.record.digest).await;
    assert_eq!(
        list(store, &repo, TaggedFilter::Any, None, 100).await,
        Some(Vec::new())
    );
    assert_clean(
        store,
        &repo,
        &[
            &amd64.record.digest,
            &arm64.record.digest,
            &both.record.digest,
        ],
    )
    .await;
}

pub async fn image_facts_are_stored_once(store: &dyn MetaStore) {
    let repo = repository("suite-image-facts/app");
    let config = digest_of("suite-image-facts config");
    link(store, &repo, &config, 7).await;
    let manifest = image("suite-image-facts", &[&config]);
    let digest = &manifest.record.digest;
    put(store, &repo, &manifest, Some(&tag("latest"))).await;
    assert!(store
        .set_image_facts(&repo, digest, r#"{"os":"linux"}"#)
        .await
        .unwrap());
    assert!(!store
        .set_image_facts(&repo, digest, r#"{"os":"windows"}"#)
        .await
        .unwrap());
    let found = store.image(&repo, digest).await.unwrap().unwrap();
    assert_eq!(found.facts.as_deref(), Some(r#"{"os":"linux"}"#));
    assert!(!store
        .set_image_facts(&repo, &digest_of("absent"), "{}")
        .await
        .unwrap());
    assert!(!store
        .set_image_facts(&repository("suite-image-facts/none"), digest, "{}")
        .await
        .unwrap());
    delete(store, &repo, digest).await;
    assert_clean(store, &repo, &[digest]).await;
}

/// Three repositories of one namespace, and one of another: counts, sizes
/// and last pushes; each order, paged; the substring search, whose `_` is
/// a character and not a wildcard; the namespace filter.
pub async fn repositories_are_summarized_sorted_searched_and_paged(store: &dyn MetaStore) {
    let big = repository("suite-rs/big");
    let small = repository("suite-rs/small_one");
    let linked = repository("suite-rs/smallxone");
    let other = repository("suite-rs-other/big");
    let config = digest_of("suite-rs config");
    let layer = digest_of("suite-rs layer");
    link(store, &big, &config, 10).await;
    link(store, &big, &layer, 1000).await;
    link(store, &small, &config, 10).await;
    link(store, &linked, &layer, 1000).await;
    link(store, &linked, &config, 10).await;
    link(store, &other, &config, 10).await;
    let big_image = image("suite-rs big", &[&config, &layer]);
    let small_image = image("suite-rs small", &[&config]);
    store
        .put_manifest(&at(NOW + 5), &big, &big_image, Some(&tag("a")))
        .await
        .unwrap();
    store
        .put_manifest(&at(NOW + 6), &big, &big_image, Some(&tag("b")))
        .await
        .unwrap();
    store
        .put_manifest(&at(NOW + 1), &small, &small_image, None)
        .await
        .unwrap();
    let list =
        |sort, contains: Option<&str>, after: Option<RepositoryCursor>, limit| RepositoryQuery {
            namespaces: Some(vec!["suite-rs".to_string()]),
            contains: contains.map(str::to_string),
            sort,
            after,
            limit,
        };
    let names = |rows: &[RepositorySummary]| -> Vec<String> {
        rows.iter().map(|r| r.name.as_str().to_string()).collect()
    };
    let by_name = store
        .list_repository_summaries(&list(RepositorySort::Name, None, None, 100))
        .await
        .unwrap();
    assert_eq!(
        by_name,
        vec![
            RepositorySummary {
                name: big.clone(),
                tags: 2,
                images: 1,
                size: 1010,
                last_push: Some(NOW + 6),
                pulls: 0,
                last_pull: None,
            },
            RepositorySummary {
                name: small.clone(),
                tags: 0,
                images: 1,
                size: 10,
                last_push: Some(NOW + 1),
                pulls: 0,
                last_pull: None,
            },
            RepositorySummary {
                name: linked.clone(),
                tags: 0,
                images: 0,
                size: 1010,
                last_push: None,
                pulls: 0,
                last_pull: None,
            },
        ]
    );
    // (sort, expected order)
    let orders = [
        (
            RepositorySort::Name,
            vec!["suite-rs/big", "suite-rs/small_one", "suite-rs/smallxone"],
        ),
        (
            RepositorySort::Size,
            vec!["suite-rs/smallxone", "suite-rs/big", "suite-rs/small_one"],
        ),
        (
            RepositorySort::LastPush,
            vec!["suite-rs/big", "suite-rs/small_one", "suite-rs/smallxone"],
        ),
    ];
    for (sort, expected) in orders {
        let all = store
            .list_repository_summaries(&list(sort, None, None, 100))
            .await
            .unwrap();
        assert_eq!(names(&all), expected, "{sort:?}");
        let mut paged = Vec::new();
        let mut after = None;
        for _ in 0..10 {
            let page = store
                .list_repository_summaries(&list(sort, None, after, 1))
                .await
                .unwrap();
            let Some(last) = page.last() else { break };
            after = Some(RepositoryCursor {
                key: last.sort_key(sort),
                name: last.name.clone(),
            });
            paged.extend(names(&page));
        }
        assert_eq!(paged, expected, "{sort:?} paged");
    }
    // (search, expected)
    let searches = [
        ("small", vec!["suite-rs/small_one", "suite-rs/smallxone"]),
        ("l_o", vec!["suite-rs/small_one"]),
        ("%", vec![]),
        ("big", vec!["suite-rs/big"]),
    ];
    for (text, expected) in searches {
        let found = store
            .list_repository_summaries(&list(RepositorySort::Name, Some(text), None, 100))
            .await
            .unwrap();
        assert_eq!(names(&found), expected, "{text:?}");
    }
    let everywhere = store
        .list_repository_summaries(&RepositoryQuery {
            namespaces: None,
            contains: Some("suite-rs".to_string()),
            sort: RepositorySort::Name,
            after: None,
            limit: 100,
        })
        .await
        .unwrap();
    assert_eq!(
        names(&everywhere),
        [
            "suite-rs-other/big",
            "suite-rs/big",
            "suite-rs/small_one",
            "suite-rs/smallxone"
        ]
    );
    // The figures follow later changes: an unlinked blob leaves the size;
    // a deleted tag does not un-push (last push never goes back); a tag
    // moved later is a push; the orders follow.
    assert!(store
        .unlink_blob(&at(NOW + 7), &linked, &layer)
        .await
        .unwrap());
    assert!(store
        .delete_tag(&at(NOW + 8), &big, &tag("b"))
        .await
        .unwrap());
    store
        .put_manifest(&at(NOW + 9), &small, &small_image, Some(&tag("c")))
        .await
        .unwrap();
    let summary = |rows: &[RepositorySummary], name: &RepoName| -> (u64, Option<i64>) {
        let row = rows.iter().find(|r| &r.name == name).expect("listed");
        (row.size, row.last_push)
    };
    let after = store
        .list_repository_summaries(&list(RepositorySort::Size, None, None, 100))
        .await
        .unwrap();
    assert_eq!(
        names(&after),
        ["suite-rs/big", "suite-rs/smallxone", "suite-rs/small_one"]
    );
    assert_eq!(summary(&after, &big), (1010, Some(NOW + 6)));
    assert_eq!(summary(&after, &linked), (10, None));
    assert_eq!(summary(&after, &small), (10, Some(NOW + 9)));
    let latest = store
        .list_repository_summaries(&list(RepositorySort::LastPush, None, None, 100))
        .await
        .unwrap();
    assert_eq!(
        names(&latest),
        ["suite-rs/small_one", "suite-rs/big", "suite-rs/smallxone"]
    );
    // Counts: an image in the trash is not counted (its tags went with it),
    // one restored is again; one expired from the trash stays uncounted.
    let counts = |rows: &[RepositorySummary], name: &RepoName| -> (u64, u64) {
        let row = rows.iter().find(|r| &r.name == name).expect("listed");
        (row.images, row.tags)
    };
    let read = || async {
        store
            .list_repository_summaries(&list(RepositorySort::Name, None, None, 100))
            .await
            .unwrap()
    };
    assert_eq!(counts(&read().await, &small), (1, 1));
    store
        .trash_manifest(&at(NOW + 10), &small, &small_image.record.digest, true)
        .await
        .unwrap()
        .expect("trashed");
    assert_eq!(counts(&read().await, &small), (0, 0));
    store
        .restore_manifest(&at(NOW + 11), &small, &small_image.record.digest)
        .await
        .unwrap()
        .expect("restored");
    assert_eq!(counts(&read().await, &small), (1, 1));
    store
        .trash_manifest(&at(NOW + 12), &small, &small_image.record.digest, true)
        .await
        .unwrap()
        .expect("trashed again");
    let expired = store
        .expired_trash(NOW + 13, None, 10)
        .await
        .unwrap()
        .into_iter()
        .find(|entry| entry.repository == small)
        .expect("in the trash");
    store
        .expire_trash(
            &at(NOW + 13),
            &expired.repository,
            &expired.digest,
            NOW + 13,
        )
        .await
        .unwrap()
        .expect("expired");
    assert_eq!(counts(&read().await, &small), (0, 0));
    assert_eq!(
        store
            .namespace_usage("suite-rs")
            .await
            .unwrap()
            .map(|u| (u.images, u.tags)),
        Some((1, 1)),
        "the namespace adds up its repositories"
    );
    for repo in [&big, &small, &linked, &other] {
        delete_repository(store, repo).await;
    }
    let gone = store
        .list_repository_summaries(&list(RepositorySort::Name, None, None, 100))
        .await
        .unwrap();
    assert_eq!(gone, Vec::new());
}

async fn tagged(store: &dyn MetaStore, repo: &RepoName, query: &TagQuery) -> Vec<String> {
    store
        .list_tagged_images(repo, query)
        .await
        .expect("list_tagged_images succeeds")
        .expect("the repository exists")
        .iter()
        .map(|row| row.tag.as_str().to_string())
        .collect()
}

/// Three images of different sizes under five tags pushed at different
/// times: each sort orders them as its contract says, a substring (with
/// `%` and `_` taken literally) chooses, rows carry their image, and pages
/// of any size follow their cursors to every tag exactly once.
pub async fn tags_are_listed_sorted_searched_and_paged(store: &dyn MetaStore) {
    let repo = repository("suite-tags/app");
    let mut images = Vec::new();
    for (i, size) in [100u64, 2000, 30000].into_iter().enumerate() {
        let config = digest_of(&format!("suite-tags config {i}"));
        let layer = digest_of(&format!("suite-tags layer {i}"));
        link(store, &repo, &config, 10).await;
        link(store, &repo, &layer, size).await;
        images.push((
            image(&format!("suite-tags image {i}"), &[&config, &layer]),
            10 + size,
        ));
    }
    // (image, tag, pushed at)
    for (i, name, time) in [
        (0, "v1.0", NOW),
        (1, "v1.1", NOW + 1),
        (2, "v2.0", NOW + 2),
        (0, "stable", NOW + 3),
        (2, "latest", NOW + 4),
    ] {
        store
            .put_manifest(&at(time), &repo, &images[i].0, Some(&tag(name)))
            .await
            .unwrap();
    }
    let query = |sort, contains: Option<&str>, limit| TagQuery {
        contains: contains.map(str::to_string),
        sort,
        after: None,
        limit,
    };
    let expected: [(TagSort, Vec<&str>); 4] = [
        (
            TagSort::Name,
            vec!["latest", "stable", "v1.0", "v1.1", "v2.0"],
        ),
        (
            TagSort::Newest,
            vec!["latest", "stable", "v2.0", "v1.1", "v1.0"],
        ),
        (
            TagSort::Oldest,
            vec!["v1.0", "v1.1", "v2.0", "stable", "latest"],
        ),
        // Largest image first; an image's tags by name, descending.
        (
            TagSort::Size,
            vec!["v2.0", "latest", "v1.1", "v1.0", "stable"],
        ),
    ];
    for (sort, order) in &expected {
        assert_eq!(
            tagged(store, &repo, &query(*sort, None, 100)).await,
            *order,
            "{sort:?}"
        );
        for page_size in [1, 2, 3] {
            let mut paged = Vec::new();
            let mut request = query(*sort, None, page_size);
            for _ in 0..10 {
                let page = store
                    .list_tagged_images(&repo, &request)
                    .await
                    .unwrap()
                    .unwrap();
                let Some(last) = page.last() else { break };
                request.after = Some(last.cursor(*sort));
                paged.extend(page.iter().map(|row| row.tag.as_str().to_string()));
            }
            assert_eq!(paged, *order, "{sort:?} in pages of {page_size}");
        }
    }
    for (contains, sort, found) in [
        ("v1", TagSort::Name, vec!["v1.0", "v1.1"]),
        ("v1", TagSort::Size, vec!["v1.1", "v1.0"]),
        ("a", TagSort::Newest, vec!["latest", "stable"]),
        ("%", TagSort::Name, vec![]),
        ("_", TagSort::Name, vec![]),
        ("nothing", TagSort::Oldest, vec![]),
    ] {
        assert_eq!(
            tagged(store, &repo, &query(sort, Some(contains), 100)).await,
            found,
            "{contains:?} {sort:?}"
        );
    }
    let rows = store
        .list_tagged_images(&repo, &query(TagSort::Name, Some("latest"), 10))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(rows.len(), 1);
    assert_eq!(rows[0].image.digest, images[2].0.record.digest);
    assert_eq!(rows[0].image.size, images[2].1);
    assert_eq!(rows[0].updated_at, NOW + 4);
    assert_eq!(
        store
            .list_tagged_images(
                &repository("suite-tags/none"),
                &query(TagSort::Name, None, 10)
            )
            .await
            .unwrap(),
        None
    );

    for (manifest, _) in &images {
        delete(store, &repo, &manifest.record.digest).await;
    }
    assert!(tagged(store, &repo, &query(TagSort::Size, None, 100))
        .await
        .is_empty());
    let digests: Vec<&Digest> = images.iter().map(|(m, _)| &m.record.digest).collect();
    assert_clean(store, &repo, &digests).await;
}
