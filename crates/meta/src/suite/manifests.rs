//! The shared suite of [`ManifestStore`](crate::ManifestStore).

use super::*;

/// Every test of this suite, by name, in the order [`super::run_all`] runs them.
pub const TESTS: &[(&str, SuiteTest)] = &[
    (
        "put_manifest_with_missing_references_stores_nothing",
        |store| Box::pin(put_manifest_with_missing_references_stores_nothing(store)),
    ),
    (
        "put_manifest_with_wrong_blob_sizes_stores_nothing",
        |store| Box::pin(put_manifest_with_wrong_blob_sizes_stores_nothing(store)),
    ),
    ("manifests_are_found_by_tag_and_digest", |store| {
        Box::pin(manifests_are_found_by_tag_and_digest(store))
    }),
    ("re_putting_a_manifest_only_moves_the_tag", |store| {
        Box::pin(re_putting_a_manifest_only_moves_the_tag(store))
    }),
    ("delete_manifest_removes_its_tags", |store| {
        Box::pin(delete_manifest_removes_its_tags(store))
    }),
    ("index_children_cannot_be_deleted_while_listed", |store| {
        Box::pin(index_children_cannot_be_deleted_while_listed(store))
    }),
    ("delete_tag_leaves_the_manifest", |store| {
        Box::pin(delete_tag_leaves_the_manifest(store))
    }),
    ("tags_are_listed_in_byte_order_and_paged", |store| {
        Box::pin(tags_are_listed_in_byte_order_and_paged(store))
    }),
    (
        "referrers_are_filtered_by_subject_and_artifact_type",
        |store| Box::pin(referrers_are_filtered_by_subject_and_artifact_type(store)),
    ),
    (
        "racing_reference_checks_and_deletions_never_both_win",
        |store| Box::pin(racing_reference_checks_and_deletions_never_both_win(store)),
    ),
    ("racing_pushes_of_one_manifest_all_succeed", |store| {
        Box::pin(racing_pushes_of_one_manifest_all_succeed(store))
    }),
];

pub async fn put_manifest_with_wrong_blob_sizes_stores_nothing(store: &dyn MetaStore) {
    let repo = repository("suite-sizes/app");
    let config = digest_of("suite-sizes config");
    let layer = digest_of("suite-sizes layer");
    link(store, &repo, &config, 3).await;
    link(store, &repo, &layer, 5).await;
    let sized = |payload: &str, sizes: &[(&Digest, u64)]| {
        let mut manifest = image(payload, &[&config, &layer]);
        manifest.blob_sizes = sizes.iter().map(|(d, s)| ((*d).clone(), *s)).collect();
        manifest
    };
    let latest = tag("latest");
    let mismatch = |digest: &Digest, declared, stored| crate::SizeMismatch {
        digest: digest.clone(),
        declared,
        stored,
    };
    // (manifest, the mismatches reported, in declaration order)
    let refused = [
        (
            sized("suite-sizes layer", &[(&config, 3), (&layer, 6)]),
            vec![mismatch(&layer, 6, 5)],
        ),
        (
            sized("suite-sizes both", &[(&config, 0), (&layer, u64::MAX)]),
            vec![mismatch(&config, 0, 3), mismatch(&layer, u64::MAX, 5)],
        ),
        (
            sized(
                "suite-sizes twice",
                &[(&config, 3), (&layer, 5), (&layer, 4)],
            ),
            vec![mismatch(&layer, 4, 5)],
        ),
    ];
    let before = store.last_event_position().await.unwrap();
    for (manifest, expected) in &refused {
        match store
            .put_manifest(&at(NOW), &repo, manifest, Some(&latest))
            .await
        {
            Err(MetaError::BlobSizeMismatch(found)) => assert_eq!(&found, expected),
            other => panic!("expected BlobSizeMismatch, got {other:?}"),
        }
        assert_eq!(
            store
                .manifest_by_digest(&repo, &manifest.record.digest)
                .await
                .unwrap(),
            None,
            "a refused manifest is not stored"
        );
    }
    assert_eq!(store.manifest_by_tag(&repo, &latest).await.unwrap(), None);
    assert_eq!(
        store.last_event_position().await.unwrap(),
        before,
        "a refused manifest writes no event"
    );

    let right = sized("suite-sizes right", &[(&config, 3), (&layer, 5)]);
    put(store, &repo, &right, Some(&latest)).await;
    assert_eq!(
        delete(store, &repo, &right.record.digest).await,
        vec![latest]
    );
    delete_repository(store, &repo).await;
    store
        .delete_namespace(&at(NOW), "suite-sizes")
        .await
        .unwrap();
}

pub async fn put_manifest_with_missing_references_stores_nothing(store: &dyn MetaStore) {
    let repo = repository("suite-missing/app");
    let elsewhere = repository("suite-missing/elsewhere");
    let config = digest_of("suite-missing config");
    let layer = digest_of("suite-missing layer");
    let manifest = image("suite-missing image", &[&config, &layer, &config]);
    let latest = tag("latest");

    // Nothing linked, in a repository that does not exist yet: both blobs are
    // reported, each once, and not even the repository is created.
    match store
        .put_manifest(&at(NOW), &repo, &manifest, Some(&latest))
        .await
    {
        Err(MetaError::MissingBlobs(missing)) => {
            assert_eq!(missing, vec![config.clone(), layer.clone()])
        }
        other => panic!("expected MissingBlobs, got {other:?}"),
    }
    assert_eq!(
        list_tags(store, &repo).await,
        None,
        "a refused push creates no repository"
    );

    // A blob linked only in another repository does not count.
    link(store, &elsewhere, &layer, 5).await;
    link(store, &repo, &config, 3).await;
    match store
        .put_manifest(&at(NOW), &repo, &manifest, Some(&latest))
        .await
    {
        Err(MetaError::MissingBlobs(missing)) => assert_eq!(missing, vec![layer.clone()]),
        other => panic!("expected MissingBlobs, got {other:?}"),
    }
    assert_eq!(
        store
            .manifest_by_digest(&repo, &manifest.record.digest)
            .await
            .unwrap(),
        None
    );
    assert_eq!(store.manifest_by_tag(&repo, &latest).await.unwrap(), None);
    assert_eq!(list_tags(store, &repo).await, Some(Vec::new()));

    link(store, &repo, &layer, 5).await;
    put(store, &repo, &manifest, Some(&latest)).await;

    // An index whose children are not all stored is refused the same way.
    let absent = digest_of("suite-missing absent child");
    let incomplete = index("suite-missing index", &[&manifest.record.digest, &absent]);
    let index_tag = tag("index");
    match store
        .put_manifest(&at(NOW), &repo, &incomplete, Some(&index_tag))
        .await
    {
        Err(MetaError::MissingManifests(missing)) => assert_eq!(missing, vec![absent.clone()]),
        other => panic!("expected MissingManifests, got {other:?}"),
    }
    assert_eq!(
        store
            .manifest_by_digest(&repo, &incomplete.record.digest)
            .await
            .unwrap(),
        None
    );
    assert_eq!(list_tags(store, &repo).await, Some(tags(&["latest"])));

    // The refused index left no child rows behind: the image can be deleted.
    assert_eq!(
        delete(store, &repo, &manifest.record.digest).await,
        tags(&["latest"])
    );
    assert!(store.unlink_blob(&at(NOW), &repo, &config).await.unwrap());
    assert!(store.unlink_blob(&at(NOW), &repo, &layer).await.unwrap());
    assert!(store
        .unlink_blob(&at(NOW), &elsewhere, &layer)
        .await
        .unwrap());
    assert_clean(
        store,
        &repo,
        &[&manifest.record.digest, &incomplete.record.digest],
    )
    .await;
}

pub async fn manifests_are_found_by_tag_and_digest(store: &dyn MetaStore) {
    let repo = repository("suite-get/app");
    let other = repository("suite-get/other");
    let subject = digest_of("suite-get subject");
    let mut manifest = image("suite-get image", &[]);
    manifest.record.artifact_type = Some(SBOM_TYPE.to_string());
    manifest.record.subject = Some(subject);
    manifest.record.annotations = Some(r#"{"org.example":"yes"}"#.to_string());
    let v1 = tag("v1");
    put(store, &repo, &manifest, Some(&v1)).await;
    // The other repository exists but holds nothing under the same names.
    put(
        store,
        &other,
        &image("suite-get other image", &[]),
        Some(&tag("v2")),
    )
    .await;

    let digest = &manifest.record.digest;
    let v2 = tag("v2");
    let unknown = digest_of("suite-get unknown");
    let absent = repository("suite-get/absent");
    /// How a case looks the manifest up.
    #[derive(Debug)]
    enum Lookup<'a> {
        Tag(&'a Tag),
        Digest(&'a Digest),
    }
    let cases: Vec<(&RepoName, Lookup, Option<&ManifestRecord>)> = vec![
        (&repo, Lookup::Tag(&v1), Some(&manifest.record)),
        (&repo, Lookup::Digest(digest), Some(&manifest.record)),
        (&repo, Lookup::Tag(&v2), None),
        (&repo, Lookup::Digest(&unknown), None),
        (&other, Lookup::Tag(&v1), None),
        (&other, Lookup::Digest(digest), None),
        (&absent, Lookup::Tag(&v1), None),
        (&absent, Lookup::Digest(digest), None),
    ];
    for (repo, lookup, expected) in cases {
        let found = match lookup {
            Lookup::Tag(tag) => store.manifest_by_tag(repo, tag).await.unwrap(),
            Lookup::Digest(digest) => store.manifest_by_digest(repo, digest).await.unwrap(),
        };
        assert_eq!(found.as_ref(), expected, "{repo} {lookup:?}");
    }

    assert_eq!(delete(store, &repo, digest).await, tags(&["v1"]));
    let other_digest = digest_of("suite-get other image");
    assert_eq!(delete(store, &other, &other_digest).await, tags(&["v2"]));
    assert_clean(store, &repo, &[digest]).await;
    assert_clean(store, &other, &[&other_digest]).await;
}

pub async fn re_putting_a_manifest_only_moves_the_tag(store: &dyn MetaStore) {
    let repo = repository("suite-reput/app");
    let layer = digest_of("suite-reput layer");
    link(store, &repo, &layer, 9).await;
    let first = image("suite-reput first", &[&layer]);
    let second = image("suite-reput second", &[&layer]);
    let latest = tag("latest");

    put(store, &repo, &first, Some(&latest)).await;
    put(store, &repo, &second, Some(&latest)).await;
    assert_eq!(
        store.manifest_by_tag(&repo, &latest).await.unwrap(),
        Some(second.record.clone()),
        "the tag follows the newest push"
    );
    assert_eq!(
        store
            .manifest_by_digest(&repo, &first.record.digest)
            .await
            .unwrap(),
        Some(first.record.clone()),
        "moving a tag leaves the old manifest"
    );

    // Re-putting the first manifest moves the tag back and changes nothing
    // else: not the stored fields, and its references are not checked again.
    assert!(store.unlink_blob(&at(NOW), &repo, &layer).await.unwrap());
    let mut again = first.clone();
    again.record.annotations = Some(r#"{"ignored":"true"}"#.to_string());
    put(store, &repo, &again, Some(&latest)).await;
    put(store, &repo, &again, None).await;
    assert_eq!(
        store.manifest_by_tag(&repo, &latest).await.unwrap(),
        Some(first.record.clone())
    );
    assert_eq!(list_tags(store, &repo).await, Some(tags(&["latest"])));

    assert_eq!(
        delete(store, &repo, &first.record.digest).await,
        tags(&["latest"])
    );
    assert_eq!(
        delete(store, &repo, &second.record.digest).await,
        Vec::<Tag>::new()
    );
    assert_clean(store, &repo, &[&first.record.digest, &second.record.digest]).await;
}

pub async fn delete_manifest_removes_its_tags(store: &dyn MetaStore) {
    let repo = repository("suite-delete/app");
    let other = repository("suite-delete/other");
    let layer = digest_of("suite-delete layer");
    link(store, &repo, &layer, 4).await;
    let doomed = image("suite-delete doomed", &[&layer]);
    let kept = image("suite-delete kept", &[&layer]);
    for name in ["b", "a", "c"] {
        put(store, &repo, &doomed, Some(&tag(name))).await;
    }
    put(store, &repo, &kept, Some(&tag("kept"))).await;
    // The same manifest in another repository is a separate copy.
    put(
        store,
        &other,
        &image("suite-delete doomed", &[]),
        Some(&tag("a")),
    )
    .await;

    assert_eq!(
        delete(store, &repo, &doomed.record.digest).await,
        tags(&["a", "b", "c"])
    );
    assert_eq!(list_tags(store, &repo).await, Some(tags(&["kept"])));
    assert_eq!(store.manifest_by_tag(&repo, &tag("a")).await.unwrap(), None);
    assert_eq!(
        store
            .manifest_by_digest(&repo, &doomed.record.digest)
            .await
            .unwrap(),
        None
    );
    assert_eq!(
        store.manifest_by_tag(&other, &tag("a")).await.unwrap(),
        Some(image("suite-delete doomed", &[]).record),
        "deleting in one repository leaves the other's copy"
    );
    assert_eq!(
        store.linked_blob_size(&repo, &layer).await.unwrap(),
        Some(4),
        "deleting a manifest leaves its blobs to garbage collection"
    );

    // Deleting what is not there is not an error.
    let absent = store
        .delete_manifest(&at(NOW), &repo, &doomed.record.digest, false)
        .await
        .unwrap();
    assert_eq!(absent, None);
    let no_repository = store
        .delete_manifest(
            &at(NOW),
            &repository("suite-delete/absent"),
            &doomed.record.digest,
            false,
        )
        .await
        .unwrap();
    assert_eq!(no_repository, None);

    assert_eq!(
        delete(store, &repo, &kept.record.digest).await,
        tags(&["kept"])
    );
    assert_eq!(
        delete(store, &other, &doomed.record.digest).await,
        tags(&["a"])
    );
    assert!(store.unlink_blob(&at(NOW), &repo, &layer).await.unwrap());
    assert_clean(store, &repo, &[&doomed.record.digest, &kept.record.digest]).await;
    assert_clean(store, &other, &[&doomed.record.digest]).await;
}

pub async fn index_children_cannot_be_deleted_while_listed(store: &dyn MetaStore) {
    let repo = repository("suite-index/app");
    let other = repository("suite-index/other");
    let amd64 = image("suite-index amd64", &[]);
    let arm64 = image("suite-index arm64", &[]);
    put(store, &repo, &amd64, None).await;
    put(store, &repo, &arm64, None).await;
    // The child listed twice (as some tools do for platform variants) is
    // stored once and still protected.
    let index = index(
        "suite-index index",
        &[
            &amd64.record.digest,
            &arm64.record.digest,
            &amd64.record.digest,
        ],
    );
    put(store, &repo, &index, Some(&tag("multi"))).await;
    assert_eq!(
        store.manifest_by_tag(&repo, &tag("multi")).await.unwrap(),
        Some(index.record.clone())
    );

    for child in [&amd64, &arm64] {
        match store
            .delete_manifest(&at(NOW), &repo, &child.record.digest, false)
            .await
        {
            Err(MetaError::ManifestReferenced(parent)) => assert_eq!(parent, index.record.digest),
            other => panic!("expected ManifestReferenced, got {other:?}"),
        }
        assert_eq!(
            store
                .manifest_by_digest(&repo, &child.record.digest)
                .await
                .unwrap(),
            Some(child.record.clone()),
            "a refused deletion deletes nothing"
        );
    }

    // The same child in another repository is not protected by this index.
    put(store, &other, &amd64, Some(&tag("solo"))).await;
    assert_eq!(
        delete(store, &other, &amd64.record.digest).await,
        tags(&["solo"])
    );

    assert_eq!(
        delete(store, &repo, &index.record.digest).await,
        tags(&["multi"])
    );
    assert_eq!(
        delete(store, &repo, &amd64.record.digest).await,
        Vec::<Tag>::new()
    );
    assert_eq!(
        delete(store, &repo, &arm64.record.digest).await,
        Vec::<Tag>::new()
    );
    assert_clean(
        store,
        &repo,
        &[
            &index.record.digest,
            &amd64.record.digest,
            &arm64.record.digest,
        ],
    )
    .await;
}

pub async fn delete_tag_leaves_the_manifest(store: &dyn MetaStore) {
    let repo = repository("suite-untag/app");
    let manifest = image("suite-untag image", &[]);
    put(store, &repo, &manifest, Some(&tag("old"))).await;
    put(store, &repo, &manifest, Some(&tag("new"))).await;

    assert!(store
        .delete_tag(&at(NOW), &repo, &tag("old"))
        .await
        .unwrap());
    assert!(
        !store
            .delete_tag(&at(NOW), &repo, &tag("old"))
            .await
            .unwrap(),
        "the tag is gone already"
    );
    assert!(!store
        .delete_tag(&at(NOW), &repository("suite-untag/absent"), &tag("new"))
        .await
        .unwrap());
    assert_eq!(list_tags(store, &repo).await, Some(tags(&["new"])));
    assert_eq!(
        store.manifest_by_tag(&repo, &tag("old")).await.unwrap(),
        None
    );
    assert_eq!(
        store
            .manifest_by_digest(&repo, &manifest.record.digest)
            .await
            .unwrap(),
        Some(manifest.record.clone())
    );

    assert!(store
        .delete_tag(&at(NOW), &repo, &tag("new"))
        .await
        .unwrap());
    assert_eq!(
        store
            .manifest_by_digest(&repo, &manifest.record.digest)
            .await
            .unwrap(),
        Some(manifest.record.clone()),
        "an untagged manifest stays until it is deleted"
    );
    assert_eq!(
        delete(store, &repo, &manifest.record.digest).await,
        Vec::<Tag>::new()
    );
    assert_clean(store, &repo, &[&manifest.record.digest]).await;
}

pub async fn tags_are_listed_in_byte_order_and_paged(store: &dyn MetaStore) {
    let repo = repository("suite-tags/app");
    let manifest = image("suite-tags image", &[]);
    // Byte order puts digits, then upper case, then '_', then lower case;
    // within "a…", the separators '-' < '.' < '_' sort before letters.
    let sorted = ["0", "A", "B", "_x", "a", "a-b", "a.b", "a_b", "ab"];
    for name in ["ab", "B", "a.b", "_x", "a", "0", "a_b", "A", "a-b"] {
        put(store, &repo, &manifest, Some(&tag(name))).await;
    }

    let cases: &[(Option<&str>, usize, &[&str])] = &[
        (None, 100, &sorted),
        (None, usize::MAX, &sorted),
        (None, 3, &["0", "A", "B"]),
        (None, 0, &[]),
        (Some("B"), 2, &["_x", "a"]),
        // `after` need not be a tag that exists.
        (Some("Z"), 2, &["_x", "a"]),
        (Some("a"), 100, &["a-b", "a.b", "a_b", "ab"]),
        (Some("a."), 100, &["a.b", "a_b", "ab"]),
        (Some("ab"), 100, &[]),
        (Some("zzz"), 100, &[]),
    ];
    for &(after, limit, expected) in cases {
        let listed = store.list_tags(&repo, after, limit).await.unwrap();
        assert_eq!(
            listed,
            Some(tags(expected)),
            "after {after:?}, limit {limit}"
        );
    }

    // Paging two at a time visits every tag once, in order.
    let mut paged: Vec<Tag> = Vec::new();
    loop {
        let after = paged.last().map(|tag| tag.as_str().to_string());
        let page = store
            .list_tags(&repo, after.as_deref(), 2)
            .await
            .unwrap()
            .unwrap();
        if page.is_empty() {
            break;
        }
        paged.extend(page);
    }
    assert_eq!(paged, tags(&sorted));

    assert_eq!(
        list_tags(store, &repository("suite-tags/absent")).await,
        None
    );
    let untagged = repository("suite-tags/untagged");
    put(store, &untagged, &manifest, None).await;
    assert_eq!(list_tags(store, &untagged).await, Some(Vec::new()));

    let mut removed = delete(store, &repo, &manifest.record.digest).await;
    removed.sort_by(|a, b| a.as_str().as_bytes().cmp(b.as_str().as_bytes()));
    assert_eq!(removed, tags(&sorted));
    assert_eq!(
        delete(store, &untagged, &manifest.record.digest).await,
        Vec::<Tag>::new()
    );
    assert_clean(store, &repo, &[&manifest.record.digest]).await;
}

pub async fn referrers_are_filtered_by_subject_and_artifact_type(store: &dyn MetaStore) {
    let repo = repository("suite-referrers/app");
    let other = repository("suite-referrers/other");
    let subject = image("suite-referrers subject", &[]);
    let subject_digest = &subject.record.digest;
    put(store, &repo, &subject, Some(&tag("v1"))).await;

    let signature = referrer("suite-referrers signature", subject_digest, SIGNATURE_TYPE);
    let second_signature = referrer(
        "suite-referrers signature 2",
        subject_digest,
        SIGNATURE_TYPE,
    );
    let sbom = referrer("suite-referrers sbom", subject_digest, SBOM_TYPE);
    // Noise: a referrer of another subject, and one of this subject in
    // another repository, which must not leak into this repository's list.
    let unrelated = referrer(
        "suite-referrers unrelated",
        &digest_of("elsewhere"),
        SIGNATURE_TYPE,
    );
    let foreign = referrer("suite-referrers foreign", subject_digest, SIGNATURE_TYPE);
    for manifest in [&signature, &second_signature, &sbom, &unrelated] {
        put(store, &repo, manifest, None).await;
    }
    put(store, &other, &foreign, None).await;

    let as_referrer = |manifest: &NewManifest| Referrer {
        digest: manifest.record.digest.clone(),
        media_type: manifest.record.media_type.clone(),
        size: manifest.record.payload.len() as u64,
        artifact_type: manifest.record.artifact_type.clone(),
        annotations: manifest.record.annotations.clone(),
    };
    let sorted = |manifests: &[&NewManifest]| {
        let mut referrers: Vec<Referrer> = manifests.iter().map(|m| as_referrer(m)).collect();
        referrers.sort_by(|a, b| a.digest.as_str().cmp(b.digest.as_str()));
        referrers
    };
    let absent = repository("suite-referrers/absent");
    let cases: Vec<(&RepoName, &Digest, Option<&str>, Vec<Referrer>)> = vec![
        (
            &repo,
            subject_digest,
            None,
            sorted(&[&signature, &second_signature, &sbom]),
        ),
        (
            &repo,
            subject_digest,
            Some(SIGNATURE_TYPE),
            sorted(&[&signature, &second_signature]),
        ),
        (&repo, subject_digest, Some(SBOM_TYPE), sorted(&[&sbom])),
        (
            &repo,
            subject_digest,
            Some("application/vnd.example.none"),
            Vec::new(),
        ),
        (&repo, &signature.record.digest, None, Vec::new()),
        (&other, subject_digest, None, sorted(&[&foreign])),
        (&absent, subject_digest, None, Vec::new()),
    ];
    let all = |repo, subject, artifact_type| {
        store.referrers(repo, subject, artifact_type, None, usize::MAX, usize::MAX)
    };
    for (repo, subject, artifact_type, expected) in cases {
        let listed = all(repo, subject, artifact_type).await.unwrap();
        assert_eq!(listed, expected, "{repo} {subject} {artifact_type:?}");
    }

    // Pages of two: each starts strictly after the last digest of the one
    // before, with and without the filter.
    for (artifact_type, expected) in [
        (None, sorted(&[&signature, &second_signature, &sbom])),
        (
            Some(SIGNATURE_TYPE),
            sorted(&[&signature, &second_signature]),
        ),
    ] {
        let mut paged = Vec::new();
        let mut after: Option<Digest> = None;
        for _ in 0..expected.len() + 1 {
            let page = store
                .referrers(
                    &repo,
                    subject_digest,
                    artifact_type,
                    after.as_ref(),
                    2,
                    usize::MAX,
                )
                .await
                .unwrap();
            assert!(page.len() <= 2);
            let Some(last) = page.last() else { break };
            after = Some(last.digest.clone());
            paged.extend(page);
        }
        assert_eq!(paged, expected, "{artifact_type:?}");
    }

    // Annotations longer than the cap are left out, nothing else is; the
    // stored annotations are `{"test":"<payload>"}`.
    let annotation_bytes =
        |manifest: &NewManifest| manifest.record.annotations.as_ref().unwrap().len();
    let cap = annotation_bytes(&signature);
    assert!(annotation_bytes(&sbom) < cap && annotation_bytes(&second_signature) > cap);
    let capped = store
        .referrers(&repo, subject_digest, None, None, usize::MAX, cap)
        .await
        .unwrap();
    let expected: Vec<Referrer> = sorted(&[&signature, &second_signature, &sbom])
        .into_iter()
        .map(|mut referrer| {
            if referrer.digest == second_signature.record.digest {
                referrer.annotations = None;
            }
            referrer
        })
        .collect();
    assert_eq!(capped, expected);
    // The cap counts bytes, not characters.
    let accented_subject = digest_of("suite-referrers accented subject");
    let accented = referrer("suite-referrers ééé", &accented_subject, SBOM_TYPE);
    put(store, &repo, &accented, None).await;
    let characters = accented
        .record
        .annotations
        .as_ref()
        .unwrap()
        .chars()
        .count();
    let listed = store
        .referrers(&repo, &accented_subject, None, None, usize::MAX, characters)
        .await
        .unwrap();
    assert_eq!(listed.len(), 1);
    assert_eq!(listed[0].annotations, None, "3 characters over in bytes");
    assert_eq!(
        delete(store, &repo, &accented.record.digest).await,
        Vec::<Tag>::new()
    );

    // Referrers may outlive their subject, as the spec allows.
    assert_eq!(delete(store, &repo, subject_digest).await, tags(&["v1"]));
    let orphans = all(&repo, subject_digest, None).await.unwrap();
    assert_eq!(orphans, sorted(&[&signature, &second_signature, &sbom]));

    for manifest in [&signature, &second_signature, &sbom, &unrelated] {
        assert_eq!(
            delete(store, &repo, &manifest.record.digest).await,
            Vec::<Tag>::new()
        );
    }
    assert_eq!(
        delete(store, &other, &foreign.record.digest).await,
        Vec::<Tag>::new()
    );
    assert!(all(&repo, subject_digest, None).await.unwrap().is_empty());
    assert_clean(store, &repo, &[subject_digest]).await;
}

pub async fn racing_reference_checks_and_deletions_never_both_win(store: &dyn MetaStore) {
    // A push that checks its references races a deletion of one of them. The
    // two must behave as if one ran entirely before the other: either the push
    // wins (and the deletion is refused or merely unlinks), or the deletion
    // wins and the push is refused as incomplete. Anything else, such as a
    // database error from a constraint the check should have caught, fails.
    const ROUNDS: usize = 12;
    let repo = repository("suite-race/app");
    for round in 0..ROUNDS {
        // An index pushed while its only child is deleted.
        let child = image(&format!("suite-race child {round}"), &[]);
        put(store, &repo, &child, None).await;
        let parent = index(
            &format!("suite-race index {round}"),
            &[&child.record.digest],
        );
        let change = at(NOW);
        let (pushed, deleted) = futures::join!(
            store.put_manifest(&change, &repo, &parent, None),
            store.delete_manifest(&change, &repo, &child.record.digest, false),
        );
        match (pushed, deleted) {
            (Ok(()), Err(MetaError::ManifestReferenced(by))) => {
                assert_eq!(by, parent.record.digest, "round {round}");
                assert_eq!(
                    delete(store, &repo, &parent.record.digest).await,
                    Vec::<Tag>::new()
                );
                assert_eq!(
                    delete(store, &repo, &child.record.digest).await,
                    Vec::<Tag>::new()
                );
            }
            (Err(MetaError::MissingManifests(missing)), Ok(Some(_))) => {
                assert_eq!(missing, vec![child.record.digest.clone()], "round {round}");
            }
            other => panic!("round {round}: index push against child deletion gave {other:?}"),
        }

        // An image pushed while its only layer is unlinked.
        let layer = digest_of(&format!("suite-race layer {round}"));
        link(store, &repo, &layer, 8).await;
        let manifest = image(&format!("suite-race image {round}"), &[&layer]);
        let change = at(NOW);
        let (pushed, unlinked) = futures::join!(
            store.put_manifest(&change, &repo, &manifest, None),
            store.unlink_blob(&change, &repo, &layer),
        );
        assert!(
            unlinked.expect("unlink_blob succeeds"),
            "round {round}: the link existed"
        );
        match pushed {
            Ok(()) => assert_eq!(
                delete(store, &repo, &manifest.record.digest).await,
                Vec::<Tag>::new()
            ),
            Err(MetaError::MissingBlobs(missing)) => {
                assert_eq!(missing, vec![layer.clone()], "round {round}")
            }
            Err(other) => panic!("round {round}: image push against unlink gave {other:?}"),
        }
        assert_eq!(store.linked_blob_size(&repo, &layer).await.unwrap(), None);
        assert_clean(
            store,
            &repo,
            &[
                &child.record.digest,
                &parent.record.digest,
                &manifest.record.digest,
            ],
        )
        .await;
    }
}

pub async fn racing_pushes_of_one_manifest_all_succeed(store: &dyn MetaStore) {
    // Clients retrying a push, or several pushing the same image, store one
    // manifest at once under different tags: all succeed, as if in turn.
    const PUSHERS: usize = 8;
    let repo = repository("suite-same/app");
    let layer = digest_of("suite-same layer");
    link(store, &repo, &layer, 2).await;
    let manifest = image("suite-same image", &[&layer]);
    let names: Vec<String> = (0..PUSHERS).map(|number| format!("p{number}")).collect();
    let pushes = names.iter().map(|name| {
        let tag = tag(name);
        let (repo, manifest) = (&repo, &manifest);
        async move {
            store
                .put_manifest(&at(NOW), repo, manifest, Some(&tag))
                .await
        }
    });
    for (number, result) in join_all(pushes).await.into_iter().enumerate() {
        result.unwrap_or_else(|error| panic!("pusher {number} failed: {error:?}"));
    }
    let all: Vec<&str> = names.iter().map(String::as_str).collect();
    assert_eq!(list_tags(store, &repo).await, Some(tags(&all)));
    assert_eq!(
        delete(store, &repo, &manifest.record.digest).await,
        tags(&all)
    );
    assert!(store.unlink_blob(&at(NOW), &repo, &layer).await.unwrap());
    assert_clean(store, &repo, &[&manifest.record.digest]).await;
}
