//! The shared suite of [`RetentionStore`](crate::RetentionStore).

use berth_oci::TagRegex;

use super::events::events_after;
use super::*;
use crate::{EventKind, RetentionCandidate, RetentionPolicy, UntaggedImages};

/// Every test of this suite, by name, in the order [`super::run_all`] runs them.
pub const TESTS: &[(&str, SuiteTest)] = &[
    ("retention_policies_are_set_replaced_and_removed", |store| {
        Box::pin(retention_policies_are_set_replaced_and_removed(store))
    }),
    (
        "retention_candidates_are_a_namespaces_live_manifests",
        |store| Box::pin(retention_candidates_are_a_namespaces_live_manifests(store)),
    ),
];

fn policy(namespace: &str, keep: u32, keep_tags: Option<&str>) -> RetentionPolicy {
    RetentionPolicy {
        namespace: namespace.to_string(),
        keep,
        untagged: UntaggedImages::Delete,
        min_age: 7 * 86_400,
        keep_tags: keep_tags.map(|text| TagRegex::parse(text).expect("test regexes are valid")),
        author: "suite".to_string(),
        updated_at: NOW,
    }
}

pub async fn retention_policies_are_set_replaced_and_removed(store: &dyn MetaStore) {
    let name = "suite-retention-policies";
    let missing = store
        .set_retention_policy(&at(NOW), &policy(name, 3, None))
        .await;
    assert!(
        matches!(missing, Err(MetaError::NotFound)),
        "a policy needs its namespace: {missing:?}"
    );
    store
        .create_namespace(&at(NOW), &namespace(name, Visibility::Private), None)
        .await
        .unwrap();
    let from = store.last_event_position().await.unwrap();
    let first = policy(name, 3, None);
    store.set_retention_policy(&at(NOW), &first).await.unwrap();
    assert_eq!(
        store.list_retention_policies(Some(name)).await.unwrap(),
        vec![first.clone()]
    );
    // Setting again replaces the policy: one per namespace.
    let mut second = policy(name, 10, Some("^v[0-9]+"));
    second.untagged = UntaggedImages::Keep;
    second.min_age = 0;
    store.set_retention_policy(&at(NOW), &second).await.unwrap();
    assert_eq!(
        store.list_retention_policies(Some(name)).await.unwrap(),
        vec![second.clone()]
    );
    let everywhere: Vec<RetentionPolicy> = store
        .list_retention_policies(None)
        .await
        .unwrap()
        .into_iter()
        .filter(|policy| policy.namespace == name)
        .collect();
    assert_eq!(everywhere, vec![second.clone()]);

    assert_eq!(
        store.remove_retention_policy(&at(NOW), name).await.unwrap(),
        Some(second.clone())
    );
    assert_eq!(
        store.remove_retention_policy(&at(NOW), name).await.unwrap(),
        None
    );
    assert_eq!(
        store.list_retention_policies(Some(name)).await.unwrap(),
        vec![]
    );

    let events: Vec<(EventKind, serde_json::Value)> = events_after(store, from)
        .await
        .into_iter()
        .filter(|e| e.namespace.as_deref() == Some(name))
        .map(|e| (e.kind, e.detail))
        .collect();
    let replaced = serde_json::json!({
        "keep": 10, "untagged": "keep", "min_age": 0, "keep_tags": "^v[0-9]+"
    });
    assert_eq!(
        events,
        vec![
            (
                EventKind::RetentionPolicySet,
                serde_json::json!({
                    "keep": 3, "untagged": "delete", "min_age": 604_800, "keep_tags": null
                })
            ),
            (EventKind::RetentionPolicySet, replaced.clone()),
            (EventKind::RetentionPolicyRemoved, replaced),
        ]
    );
}

pub async fn retention_candidates_are_a_namespaces_live_manifests(store: &dyn MetaStore) {
    let name = "suite-retention-candidates";
    let app = repository("suite-retention-candidates/app");
    let web = repository("suite-retention-candidates/web");
    let other = repository("suite-retention-elsewhere/app");
    let layer = digest_of("suite-retention layer");
    for repo in [&app, &web, &other] {
        link(store, repo, &layer, 4).await;
    }
    let old = image("suite-retention old", &[&layer]);
    let multi = image("suite-retention multi", &[&layer]);
    let gone = image("suite-retention gone", &[&layer]);
    let child = image("suite-retention child", &[&layer]);
    let listing = index("suite-retention index", &[&child.record.digest]);
    let signature = referrer("suite-retention sig", &multi.record.digest, SIGNATURE_TYPE);
    put(store, &app, &old, None).await;
    put(store, &app, &multi, Some(&tag("v1"))).await;
    put(store, &app, &multi, Some(&tag("latest"))).await;
    put(store, &app, &signature, None).await;
    put(store, &app, &gone, Some(&tag("gone"))).await;
    store
        .trash_manifest(&at(NOW), &app, &gone.record.digest, false)
        .await
        .unwrap()
        .expect("it was live");
    put(store, &web, &child, None).await;
    put(store, &web, &listing, Some(&tag("multiarch"))).await;
    put(store, &other, &old, Some(&tag("elsewhere"))).await;
    store
        .set_image_facts(&app, &multi.record.digest, r#"{"created":"x"}"#)
        .await
        .unwrap();

    let candidate = |repo: &RepoName, manifest: &NewManifest| RetentionCandidate {
        repository: repo.clone(),
        digest: manifest.record.digest.clone(),
        media_type: manifest.record.media_type.clone(),
        subject: manifest.record.subject.clone(),
        pushed_at: NOW,
        facts: None,
        tags: Vec::new(),
        children: Vec::new(),
        listed: false,
    };
    let mut expected_app = vec![
        candidate(&app, &old),
        RetentionCandidate {
            tags: tags(&["latest", "v1"]),
            facts: Some(r#"{"created":"x"}"#.to_string()),
            ..candidate(&app, &multi)
        },
        candidate(&app, &signature),
    ];
    expected_app.sort_by(|a, b| a.digest.cmp(&b.digest));
    let mut expected_web = vec![
        RetentionCandidate {
            listed: true,
            ..candidate(&web, &child)
        },
        RetentionCandidate {
            tags: tags(&["multiarch"]),
            children: vec![child.record.digest.clone()],
            ..candidate(&web, &listing)
        },
    ];
    expected_web.sort_by(|a, b| a.digest.cmp(&b.digest));
    let expected: Vec<RetentionCandidate> = expected_app.into_iter().chain(expected_web).collect();
    assert_eq!(store.retention_candidates(name).await.unwrap(), expected);

    // Once its index is in the trash, a child is listed no more.
    store
        .trash_manifest(&at(NOW), &web, &listing.record.digest, false)
        .await
        .unwrap()
        .expect("it was live");
    let web_now: Vec<RetentionCandidate> = store
        .retention_candidates(name)
        .await
        .unwrap()
        .into_iter()
        .filter(|c| c.repository == web)
        .collect();
    assert_eq!(web_now, vec![candidate(&web, &child)]);
    assert_eq!(
        store
            .retention_candidates("suite-retention-none")
            .await
            .unwrap(),
        vec![]
    );

    // Leave nothing behind: the trashed ones restored, then every manifest
    // deleted for good.
    for (repo, manifest) in [(&app, &gone), (&web, &listing)] {
        store
            .restore_manifest(&at(NOW), repo, &manifest.record.digest)
            .await
            .unwrap()
            .expect("it is in the trash");
    }
    for (repo, manifest) in [
        (&app, &signature),
        (&app, &multi),
        (&app, &old),
        (&app, &gone),
        (&web, &listing),
        (&web, &child),
        (&other, &old),
    ] {
        store
            .delete_manifest(&at(NOW), repo, &manifest.record.digest, false)
            .await
            .unwrap();
    }
    for repo in [&app, &web, &other] {
        assert_clean(
            store,
            repo,
            &[
                &old.record.digest,
                &gone.record.digest,
                &child.record.digest,
            ],
        )
        .await;
    }
}
