//! The shared suite of [`ImmutabilityStore`](crate::ImmutabilityStore), and
//! of the tag writes of [`ManifestStore`](crate::ManifestStore) it guards.

use berth_oci::TagPattern;

use super::events::events_after;
use super::*;
use crate::{EventKind, ImmutableRule};

/// Every test of this suite, by name, in the order [`super::run_all`] runs them.
pub const TESTS: &[(&str, SuiteTest)] = &[
    ("immutable_rules_are_added_listed_and_removed", |store| {
        Box::pin(immutable_rules_are_added_listed_and_removed(store))
    }),
    (
        "immutable_tags_are_created_but_never_moved_or_deleted",
        |store| Box::pin(immutable_tags_are_created_but_never_moved_or_deleted(store)),
    ),
    (
        "racing_pushes_of_a_new_immutable_tag_have_one_winner",
        |store| Box::pin(racing_pushes_of_a_new_immutable_tag_have_one_winner(store)),
    ),
];

fn rule(namespace: &str, repository: Option<&str>, pattern: &str) -> ImmutableRule {
    ImmutableRule {
        namespace: namespace.to_string(),
        repository: repository.map(self::repository),
        pattern: TagPattern::parse(pattern).expect("test patterns are valid"),
        author: "suite".to_string(),
        created_at: NOW,
    }
}

async fn add(store: &dyn MetaStore, rule: &ImmutableRule) {
    store
        .add_immutable_rule(&at(NOW), rule)
        .await
        .expect("add_immutable_rule succeeds");
}

async fn remove(store: &dyn MetaStore, rule: &ImmutableRule) -> Option<ImmutableRule> {
    store
        .remove_immutable_rule(
            &at(NOW),
            &rule.namespace,
            rule.repository.as_ref(),
            &rule.pattern,
        )
        .await
        .expect("remove_immutable_rule succeeds")
}

/// Asserts that `result` is the refusal of `tag` by `rule`.
fn assert_refused<T: std::fmt::Debug>(
    result: Result<T, MetaError>,
    tag: &str,
    rule: &ImmutableRule,
) {
    match result {
        Err(MetaError::ImmutableTag {
            tag: refused,
            rule: by,
        }) => {
            assert_eq!(refused.as_str(), tag);
            assert_eq!(*by, *rule);
        }
        other => panic!("expected {tag} refused by {rule}, got {other:?}"),
    }
}

pub async fn immutable_rules_are_added_listed_and_removed(store: &dyn MetaStore) {
    let name = "suite-immutable-rules";
    let missing = store
        .add_immutable_rule(&at(NOW), &rule(name, None, "v*"))
        .await;
    assert!(
        matches!(missing, Err(MetaError::NotFound)),
        "a rule needs its namespace: {missing:?}"
    );
    store
        .create_namespace(&at(NOW), &namespace(name, Visibility::Private), None)
        .await
        .unwrap();
    let from = store.last_event_position().await.unwrap();
    let whole = rule(name, None, "v*");
    let release = rule(name, None, "release-?");
    let app = rule(name, Some("suite-immutable-rules/app"), "*");
    // Added out of order; listed by namespace, repository, pattern.
    for rule in [&app, &whole, &release] {
        add(store, rule).await;
    }
    let again = store.add_immutable_rule(&at(NOW), &whole).await;
    assert!(
        matches!(again, Err(MetaError::AlreadyExists)),
        "got {again:?}"
    );
    let expected = vec![release.clone(), whole.clone(), app.clone()];
    assert_eq!(
        store.list_immutable_rules(Some(name)).await.unwrap(),
        expected
    );
    let everywhere: Vec<ImmutableRule> = store
        .list_immutable_rules(None)
        .await
        .unwrap()
        .into_iter()
        .filter(|rule| rule.namespace == name)
        .collect();
    assert_eq!(everywhere, expected);
    assert_eq!(app.scope(), "suite-immutable-rules/app");
    assert_eq!(whole.scope(), name);

    assert_eq!(remove(store, &whole).await, Some(whole.clone()));
    assert_eq!(remove(store, &whole).await, None);
    // A namespace-wide rule and a repository's are different rules.
    let not_app = rule(name, None, "*");
    assert_eq!(remove(store, &not_app).await, None);
    assert_eq!(
        store.list_immutable_rules(Some(name)).await.unwrap(),
        vec![release.clone(), app.clone()]
    );

    let events: Vec<(EventKind, String, String)> = events_after(store, from)
        .await
        .into_iter()
        .filter(|e| e.namespace.as_deref() == Some(name))
        .map(|e| {
            (
                e.kind,
                e.detail["scope"].as_str().unwrap_or_default().to_string(),
                e.detail["pattern"].as_str().unwrap_or_default().to_string(),
            )
        })
        .collect();
    let event = |kind, scope: &str, pattern: &str| (kind, scope.to_string(), pattern.to_string());
    assert_eq!(
        events,
        vec![
            event(EventKind::ImmutableRuleAdded, app.scope(), "*"),
            event(EventKind::ImmutableRuleAdded, name, "v*"),
            event(EventKind::ImmutableRuleAdded, name, "release-?"),
            event(EventKind::ImmutableRuleRemoved, name, "v*"),
        ]
    );

    // Rules go with their namespace.
    store.delete_namespace(&at(NOW), name).await.unwrap();
    assert_eq!(
        store.list_immutable_rules(Some(name)).await.unwrap(),
        vec![]
    );
}

pub async fn immutable_tags_are_created_but_never_moved_or_deleted(store: &dyn MetaStore) {
    let name = "suite-immutable";
    let app = repository("suite-immutable/app");
    let other = repository("suite-immutable/other");
    let layer = digest_of("suite-immutable layer");
    let first = image("suite-immutable first", &[&layer]);
    let second = image("suite-immutable second", &[&layer]);
    for repo in [&app, &other] {
        link(store, repo, &layer, 4).await;
        put(store, repo, &first, Some(&tag("v1"))).await;
        put(store, repo, &first, Some(&tag("latest"))).await;
        put(store, repo, &first, Some(&tag("stable"))).await;
    }
    let versions = rule(name, None, "v*");
    let stable = rule(name, Some("suite-immutable/app"), "stable");
    add(store, &versions).await;
    add(store, &stable).await;
    let from = store.last_event_position().await.unwrap();

    // Moving an immutable tag is refused, and stores nothing: not even the
    // new manifest.
    assert_refused(
        store
            .put_manifest(&at(NOW), &app, &second, Some(&tag("v1")))
            .await,
        "v1",
        &versions,
    );
    assert_refused(
        store
            .put_manifest(&at(NOW), &app, &second, Some(&tag("stable")))
            .await,
        "stable",
        &stable,
    );
    assert_eq!(
        store
            .manifest_by_digest(&app, &second.record.digest)
            .await
            .unwrap(),
        None
    );
    assert_eq!(
        store.last_event_position().await.unwrap(),
        from,
        "a refused push writes no event"
    );
    // Deleting one is refused too, by tag or with its manifest.
    assert_refused(
        store.delete_tag(&at(NOW), &app, &tag("v1")).await,
        "v1",
        &versions,
    );
    assert_refused(
        store
            .delete_manifest(&at(NOW), &app, &first.record.digest, false)
            .await,
        "stable",
        &stable,
    );
    // So is deleting the whole repository: the step that would take the
    // tag with its manifest deletes nothing.
    assert_refused(
        store.delete_repository_step(&at(NOW), &app, 100).await,
        "stable",
        &stable,
    );
    assert_eq!(store.last_event_position().await.unwrap(), from);

    // Pushing the same digest again, creating a new immutable tag and
    // moving a mutable one all succeed.
    put(store, &app, &first, Some(&tag("v1"))).await;
    put(store, &app, &second, Some(&tag("v2"))).await;
    put(store, &app, &second, Some(&tag("latest"))).await;
    assert!(store
        .delete_tag(&at(NOW), &app, &tag("latest"))
        .await
        .unwrap());
    // A repository's rule holds only there.
    put(store, &other, &second, Some(&tag("stable"))).await;
    assert!(store
        .delete_tag(&at(NOW), &other, &tag("stable"))
        .await
        .unwrap());
    let moved: Vec<(String, Option<String>)> = events_after(store, from)
        .await
        .into_iter()
        .filter(|e| e.kind == EventKind::TagMoved)
        .map(|e| {
            (
                e.tag
                    .as_ref()
                    .map(|t| t.as_str().to_string())
                    .unwrap_or_default(),
                e.detail["previous"].as_str().map(str::to_string),
            )
        })
        .collect();
    assert_eq!(
        moved,
        vec![
            ("v2".to_string(), None),
            ("latest".to_string(), Some(first.record.digest.to_string())),
            ("stable".to_string(), Some(first.record.digest.to_string())),
        ]
    );

    // Once the rules are gone, so are the refusals.
    assert_eq!(remove(store, &versions).await, Some(versions.clone()));
    assert_eq!(remove(store, &stable).await, Some(stable.clone()));
    for repo in [&app, &other] {
        for manifest in [&first, &second] {
            if store
                .manifest_by_digest(repo, &manifest.record.digest)
                .await
                .unwrap()
                .is_some()
            {
                delete(store, repo, &manifest.record.digest).await;
            }
        }
        assert_clean(store, repo, &[&first.record.digest, &second.record.digest]).await;
        delete_repository(store, repo).await;
    }
    store.delete_namespace(&at(NOW), name).await.unwrap();
}

pub async fn racing_pushes_of_a_new_immutable_tag_have_one_winner(store: &dyn MetaStore) {
    // Pushes of different images to one immutable tag that does not exist
    // yet, all at once (on PostgreSQL, on separate connections): one creates
    // it, every other is refused, and the tag points at the winner's image.
    const PUSHERS: usize = 6;
    let name = "suite-immutable-race";
    let repo = repository("suite-immutable-race/app");
    let layer = digest_of("suite-immutable-race layer");
    link(store, &repo, &layer, 4).await;
    let versions = rule(name, None, "v*");
    add(store, &versions).await;
    let manifests: Vec<NewManifest> = (0..PUSHERS)
        .map(|number| image(&format!("suite-immutable-race {number}"), &[&layer]))
        .collect();
    let release = tag("v1.0.0");
    let pushes = manifests.iter().map(|manifest| {
        let (repo, release) = (&repo, &release);
        async move {
            store
                .put_manifest(&at(NOW), repo, manifest, Some(release))
                .await
        }
    });
    let mut winners = Vec::new();
    for (number, result) in join_all(pushes).await.into_iter().enumerate() {
        match result {
            Ok(()) => winners.push(number),
            refused => assert_refused(refused, "v1.0.0", &versions),
        }
    }
    assert_eq!(winners.len(), 1, "exactly one push creates the tag");
    let winner = &manifests[winners[0]];
    assert_eq!(
        store
            .manifest_by_tag(&repo, &release)
            .await
            .unwrap()
            .map(|m| m.digest),
        Some(winner.record.digest.clone())
    );
    assert_eq!(remove(store, &versions).await, Some(versions.clone()));
    delete(store, &repo, &winner.record.digest).await;
    assert_clean(store, &repo, &[&winner.record.digest]).await;
    delete_repository(store, &repo).await;
    store.delete_namespace(&at(NOW), name).await.unwrap();
}
