//! The shared suite of [`NamespaceStore`](crate::NamespaceStore).

use super::*;
use crate::{Actor, NamespaceReach, NamespaceUsage, PullCount};

/// Every test of this suite, by name, in the order [`super::run_all`] runs them.
pub const TESTS: &[(&str, SuiteTest)] = &[
    ("namespaces_are_created_with_their_owner", |store| {
        Box::pin(namespaces_are_created_with_their_owner(store))
    }),
    ("repositories_create_their_namespace", |store| {
        Box::pin(repositories_create_their_namespace(store))
    }),
    ("namespaces_are_listed_in_byte_order_and_paged", |store| {
        Box::pin(namespaces_are_listed_in_byte_order_and_paged(store))
    }),
    ("namespace_pages_hold_what_their_reach_covers", |store| {
        Box::pin(namespace_pages_hold_what_their_reach_covers(store))
    }),
    ("namespace_usage_counts_each_blob_once", |store| {
        Box::pin(namespace_usage_counts_each_blob_once(store))
    }),
    ("namespaces_are_deleted_only_when_empty", |store| {
        Box::pin(namespaces_are_deleted_only_when_empty(store))
    }),
];

pub async fn namespaces_are_created_with_their_owner(store: &dyn MetaStore) {
    store
        .create_user(&at(NOW), &user("as-ns-owner"))
        .await
        .unwrap();
    store
        .create_namespace(
            &at(NOW),
            &namespace("as-ns-team", Visibility::Private),
            Some("as-ns-owner"),
        )
        .await
        .unwrap();
    store
        .create_namespace(&at(NOW), &namespace("as-ns-free", Visibility::Public), None)
        .await
        .unwrap();
    assert!(matches!(
        store
            .create_namespace(&at(NOW), &namespace("as-ns-team", Visibility::Public), None)
            .await,
        Err(MetaError::AlreadyExists)
    ));
    // An unknown owner creates nothing, not even the namespace.
    assert!(matches!(
        store
            .create_namespace(
                &at(NOW),
                &namespace("as-ns-orphan", Visibility::Private),
                Some("as-ns-nobody")
            )
            .await,
        Err(MetaError::NotFound)
    ));
    assert_eq!(store.get_namespace("as-ns-orphan").await.unwrap(), None);
    assert_eq!(
        store
            .member_role("as-ns-team", "as-ns-owner")
            .await
            .unwrap()
            .as_deref(),
        Some("owner")
    );
    store
        .set_visibility(&at(NOW), "as-ns-team", Visibility::Public)
        .await
        .unwrap();
    assert_eq!(
        store.get_namespace("as-ns-team").await.unwrap(),
        Some(namespace("as-ns-team", Visibility::Public))
    );
    assert!(matches!(
        store
            .set_visibility(&at(NOW), "as-ns-nothing", Visibility::Public)
            .await,
        Err(MetaError::NotFound)
    ));
}

pub async fn repositories_create_their_namespace(store: &dyn MetaStore) {
    // A first write anywhere in a namespace creates it, private and without
    // members, as of that write; so does an upload or a manifest.
    let layer = digest_of("suite-nsimplicit layer");
    link(store, &repository("suite-nsimplicit/app/api"), &layer, 3).await;
    let created = store.get_namespace("suite-nsimplicit").await.unwrap();
    assert_eq!(
        created,
        Some(namespace("suite-nsimplicit", Visibility::Private))
    );
    assert!(store
        .list_members("suite-nsimplicit")
        .await
        .unwrap()
        .is_empty());
    store
        .create_upload(
            &at(NOW),
            &upload(
                "suite-nsimplicit-upload",
                &repository("suite-nsupload"),
                NOW,
            ),
        )
        .await
        .unwrap();
    assert!(store
        .get_namespace("suite-nsupload")
        .await
        .unwrap()
        .is_some());

    // An existing namespace keeps what it was created with.
    store
        .create_namespace(
            &at(NOW),
            &namespace("suite-nsexisting", Visibility::Public),
            None,
        )
        .await
        .unwrap();
    let repo = repository("suite-nsexisting/app");
    link(store, &repo, &layer, 3).await;
    assert_eq!(
        store.get_namespace("suite-nsexisting").await.unwrap(),
        Some(namespace("suite-nsexisting", Visibility::Public))
    );
    assert_eq!(
        store
            .list_namespace_repositories("suite-nsexisting", None, 10)
            .await
            .unwrap(),
        vec![repo.clone()]
    );

    for repo in [
        repository("suite-nsimplicit/app/api"),
        repository("suite-nsupload"),
        repo,
    ] {
        delete_repository(store, &repo).await;
    }
    for name in ["suite-nsimplicit", "suite-nsupload", "suite-nsexisting"] {
        store.delete_namespace(&at(NOW), name).await.unwrap();
    }
}

pub async fn namespaces_are_listed_in_byte_order_and_paged(store: &dyn MetaStore) {
    // Byte order puts "B" before "a" and "x-" before "x0" (b'-' < b'0').
    let names = [
        "suite-nslist-B",
        "suite-nslist-a",
        "suite-nslist-x-",
        "suite-nslist-x0",
    ];
    for name in names.iter().rev() {
        store
            .create_namespace(&at(NOW), &namespace(name, Visibility::Private), None)
            .await
            .unwrap();
    }
    let mut listed = Vec::new();
    let mut after: Option<String> = Some("suite-nslist".to_string());
    for _ in 0..10 {
        let page = store
            .list_namespaces(after.as_deref(), 3)
            .await
            .unwrap()
            .into_iter()
            .filter(|n| n.name.starts_with("suite-nslist-"))
            .collect::<Vec<_>>();
        let Some(last) = page.last() else {
            break;
        };
        after = Some(last.name.clone());
        listed.extend(page.into_iter().map(|n| n.name));
    }
    assert_eq!(listed, names);
    for name in names {
        store.delete_namespace(&at(NOW), name).await.unwrap();
    }
}

/// Every page of `reach` for `user` from the suite's names, `limit` at a
/// time: (name, role) pairs. Other tests' namespaces sort before or after
/// the prefix, so the walk starts at it and ends at the first name past it.
async fn walk_namespace_pages(
    store: &dyn MetaStore,
    reach: NamespaceReach<'_>,
    user: Option<&str>,
    limit: usize,
) -> Vec<(String, Option<String>)> {
    const PREFIX: &str = "suite-nspage-";
    let mut listed = Vec::new();
    let mut after = PREFIX.to_string();
    for _ in 0..20 {
        let page = store
            .namespace_page(reach, user, Some(&after), limit)
            .await
            .unwrap();
        assert!(page.len() <= limit);
        let full = page.len() == limit;
        let Some(last) = page.last() else {
            break;
        };
        after = last.namespace.name.clone();
        let mut past = false;
        for entry in page {
            if entry.namespace.name.starts_with(PREFIX) {
                listed.push((entry.namespace.name, entry.role));
            } else {
                past = true;
            }
        }
        if past || !full {
            break;
        }
    }
    listed
}

pub async fn namespace_pages_hold_what_their_reach_covers(store: &dyn MetaStore) {
    store
        .create_user(&at(NOW), &user("suite-nspage-user"))
        .await
        .unwrap();
    let namespaces = [
        ("suite-nspage-a", Visibility::Private, Some("reader")),
        ("suite-nspage-b", Visibility::Public, None),
        ("suite-nspage-c", Visibility::Private, None),
        ("suite-nspage-d", Visibility::Public, Some("owner")),
        ("suite-nspage-e", Visibility::Private, Some("writer")),
        ("suite-nspage-f", Visibility::Private, None),
        ("suite-nspage-g", Visibility::Public, None),
    ];
    for (name, visibility, role) in namespaces {
        store
            .create_namespace(&at(NOW), &namespace(name, visibility), None)
            .await
            .unwrap();
        if let Some(role) = role {
            store
                .set_member(&at(NOW), name, "suite-nspage-user", role)
                .await
                .unwrap();
        }
    }
    let expected = |keep: &dyn Fn(Visibility, Option<&str>) -> bool, with_roles: bool| {
        namespaces
            .iter()
            .filter(|(_, visibility, role)| keep(*visibility, *role))
            .map(|(name, _, role)| {
                (
                    name.to_string(),
                    role.filter(|_| with_roles).map(str::to_string),
                )
            })
            .collect::<Vec<_>>()
    };
    let user = Some("suite-nspage-user");
    // Page sizes that cut both ranges of a member's page at every place.
    for limit in [1, 2, 3, 100] {
        assert_eq!(
            walk_namespace_pages(store, NamespaceReach::All, user, limit).await,
            expected(&|_, _| true, true),
            "everything, limit {limit}"
        );
        assert_eq!(
            walk_namespace_pages(store, NamespaceReach::PublicOrMemberOf(user), user, limit).await,
            expected(
                &|visibility, role| visibility == Visibility::Public || role.is_some(),
                true
            ),
            "a member's, limit {limit}"
        );
        assert_eq!(
            walk_namespace_pages(store, NamespaceReach::PublicOrMemberOf(None), None, limit).await,
            expected(&|visibility, _| visibility == Visibility::Public, false),
            "anonymous, limit {limit}"
        );
        // Roles are the asking user's, whatever the reach.
        assert_eq!(
            walk_namespace_pages(store, NamespaceReach::All, None, limit).await,
            expected(&|_, _| true, false),
            "everything for a robot, limit {limit}"
        );
    }
    // One namespace with the user's role, as access control reads it.
    for (name, visibility, role) in namespaces {
        for asking in [user, None, Some("suite-nspage-nobody")] {
            let entry = store
                .namespace_with_role(name, asking)
                .await
                .unwrap()
                .unwrap();
            assert_eq!(entry.namespace, namespace(name, visibility));
            let role = role.filter(|_| asking == user).map(str::to_string);
            assert_eq!(entry.role, role, "{name} for {asking:?}");
        }
    }
    assert_eq!(
        store
            .namespace_with_role("suite-nspage-none", user)
            .await
            .unwrap(),
        None
    );
    for (name, _, _) in namespaces {
        store.delete_namespace(&at(NOW), name).await.unwrap();
    }
}

pub async fn namespace_usage_counts_each_blob_once(store: &dyn MetaStore) {
    let one = repository("suite-nsusage/one");
    let two = repository("suite-nsusage/two");
    let shared = digest_of("suite-nsusage shared");
    let own = digest_of("suite-nsusage own");
    link(store, &one, &shared, 100).await;
    link(store, &two, &shared, 100).await;
    link(store, &two, &own, 7).await;
    let first = image("suite-nsusage first", &[&shared]);
    let second = image("suite-nsusage second", &[&shared, &own]);
    put(store, &one, &first, Some(&tag("latest"))).await;
    put(store, &two, &second, Some(&tag("latest"))).await;
    put(store, &two, &second, Some(&tag("v1"))).await;
    // Pulls add up over the namespace's repositories.
    let pull = |repo: &RepoName, digest: &Digest, pulls| PullCount {
        repository: repo.clone(),
        digest: digest.clone(),
        pulls,
        last_pulled_at: NOW,
        actor: Actor::anonymous(),
        warning: None,
    };
    store
        .record_pulls(
            &[
                pull(&one, &first.record.digest, 2),
                pull(&two, &second.record.digest, 3),
            ],
            false,
        )
        .await
        .unwrap();
    // Unlinked but still referenced by a manifest: still stored, still counted.
    assert!(store.unlink_blob(&at(NOW), &two, &own).await.unwrap());
    // Another namespace holding the same blob does not count here.
    let elsewhere = repository("suite-nsusage-other/app");
    link(store, &elsewhere, &own, 7).await;

    assert_eq!(
        store.namespace_usage("suite-nsusage").await.unwrap(),
        Some(NamespaceUsage {
            repositories: 2,
            images: 2,
            tags: 3,
            // The blobs once each, and the two manifests' own bytes.
            storage_bytes: 107
                + first.record.payload.len() as u64
                + second.record.payload.len() as u64,
            pulls: 5,
        })
    );
    assert_eq!(
        store.namespace_usage("suite-nsusage-other").await.unwrap(),
        Some(NamespaceUsage {
            repositories: 1,
            images: 0,
            tags: 0,
            storage_bytes: 7,
            pulls: 0,
        })
    );
    assert_eq!(
        store.namespace_usage("suite-nsusage-none").await.unwrap(),
        None
    );
    // Several at once, from one statement: the same figures, by name, the
    // missing one left out.
    let batch = store
        .namespaces_usage(&["suite-nsusage-other", "suite-nsusage-none", "suite-nsusage"])
        .await
        .unwrap();
    let mut expected = Vec::new();
    for name in ["suite-nsusage", "suite-nsusage-other"] {
        expected.push((
            name.to_string(),
            store.namespace_usage(name).await.unwrap().unwrap(),
        ));
    }
    assert_eq!(batch, expected);
    assert_eq!(store.namespaces_usage(&[]).await.unwrap(), vec![]);

    for repo in [&one, &two, &elsewhere] {
        delete_repository(store, repo).await;
    }
    assert_eq!(
        store.namespace_usage("suite-nsusage").await.unwrap(),
        Some(NamespaceUsage::default())
    );
    store
        .delete_namespace(&at(NOW), "suite-nsusage")
        .await
        .unwrap();
    store
        .delete_namespace(&at(NOW), "suite-nsusage-other")
        .await
        .unwrap();
}

pub async fn namespaces_are_deleted_only_when_empty(store: &dyn MetaStore) {
    store
        .create_user(&at(NOW), &user("as-nsdel-owner"))
        .await
        .unwrap();
    store
        .create_namespace(
            &at(NOW),
            &namespace("suite-nsdel", Visibility::Public),
            Some("as-nsdel-owner"),
        )
        .await
        .unwrap();
    let repo = repository("suite-nsdel/app");
    link(store, &repo, &digest_of("suite-nsdel layer"), 1).await;
    assert!(matches!(
        store.delete_namespace(&at(NOW), "suite-nsdel").await,
        Err(MetaError::NamespaceNotEmpty)
    ));
    assert!(store.get_namespace("suite-nsdel").await.unwrap().is_some());

    delete_repository(store, &repo).await;
    store
        .delete_namespace(&at(NOW), "suite-nsdel")
        .await
        .unwrap();
    assert_eq!(store.get_namespace("suite-nsdel").await.unwrap(), None);
    // Its memberships went with it: a namespace of the same name made later
    // starts without members.
    assert!(store.list_members("suite-nsdel").await.unwrap().is_empty());
    assert!(matches!(
        store.delete_namespace(&at(NOW), "suite-nsdel").await,
        Err(MetaError::NotFound)
    ));
}
