//! Namespaces and whole-repository deletion through the registry's domain
//! API, on SQLite and the filesystem with a fixed clock.

mod support;

use berth_registry::{NamespaceUsage, RegistryError, Visibility};
use support::{actor, repo, tag, Harness, GRACE, UPLOAD_TTL};

#[tokio::test]
async fn a_push_creates_its_namespace_and_usage_counts_each_blob_once() {
    let h = Harness::new().await;
    let api = repo("team/api");
    let web = repo("team/web");
    let first = h
        .push_image(&api, &tag("v1"), "api", &[b"base layer", b"api layer"])
        .await;
    h.push_image(&web, &tag("v1"), "web", &[b"base layer", b"web layer"])
        .await;
    h.push_image(&web, &tag("v2"), "web", &[b"base layer", b"web layer"])
        .await;

    let team = h.registry.namespace("team").await.unwrap();
    assert_eq!(team.visibility, Visibility::Private);
    assert_eq!(team.created_at, h.now());
    let usage = h.registry.namespace_usage("team").await.unwrap();
    let mut manifests = 0;
    for repository in [&api, &web] {
        manifests += h
            .registry
            .get_manifest(repository, &tag("v1"))
            .await
            .unwrap()
            .payload
            .len() as u64;
    }
    let bytes = |layers: &[&[u8]], name: &str| -> u64 {
        layers.iter().map(|l| l.len() as u64).sum::<u64>()
            + format!(r#"{{"image":"{name}"}}"#).len() as u64
    };
    assert_eq!(
        usage,
        NamespaceUsage {
            repositories: 2,
            // web's v1 and v2 are the same manifest.
            images: 2,
            tags: 3,
            // The base layer counts once for the namespace; the two
            // manifests' own bytes count too, as the storage quota counts.
            storage_bytes: bytes(&[b"base layer", b"api layer"], "api")
                + bytes(&[b"web layer"], "web")
                + manifests,
            pulls: 0,
        }
    );
    assert_eq!(first.blobs.len(), 3);
    assert_eq!(
        h.registry
            .namespace_repositories("team", None, 10)
            .await
            .unwrap(),
        vec![api, web]
    );
    assert!(matches!(
        h.registry.namespace_usage("nobody").await,
        Err(RegistryError::NamespaceUnknown)
    ));
}

#[tokio::test]
async fn namespaces_are_created_listed_and_made_public() {
    let h = Harness::new().await;
    h.registry
        .create_namespace(&actor(), "alpha", Visibility::Public, None)
        .await
        .unwrap();
    h.registry
        .create_namespace(&actor(), "beta", Visibility::Private, None)
        .await
        .unwrap();
    assert!(matches!(
        h.registry
            .create_namespace(&actor(), "alpha", Visibility::Private, None)
            .await,
        Err(RegistryError::NamespaceExists)
    ));
    for bad in ["a/b", "", "UPPER", "-dash"] {
        assert!(
            matches!(
                h.registry
                    .create_namespace(&actor(), bad, Visibility::Private, None)
                    .await,
                Err(RegistryError::InvalidParameter(_))
            ),
            "{bad:?}"
        );
    }
    assert!(matches!(
        h.registry
            .create_namespace(&actor(), "gamma", Visibility::Private, Some("nobody"))
            .await,
        Err(RegistryError::InvalidParameter(_))
    ));
    h.registry
        .set_namespace_visibility(&actor(), "beta", Visibility::Public)
        .await
        .unwrap();
    let names: Vec<_> = h
        .registry
        .list_namespaces(None, 10)
        .await
        .unwrap()
        .into_iter()
        .map(|n| (n.name, n.visibility))
        .collect();
    assert_eq!(
        names,
        vec![
            ("alpha".to_string(), Visibility::Public),
            ("beta".to_string(), Visibility::Public)
        ]
    );
    let page = h.registry.list_namespaces(Some("alpha"), 10).await.unwrap();
    assert_eq!(page.len(), 1);
    assert!(matches!(
        h.registry
            .set_namespace_visibility(&actor(), "gamma", Visibility::Public)
            .await,
        Err(RegistryError::NamespaceUnknown)
    ));
}

#[tokio::test]
async fn a_namespace_with_repositories_is_deleted_only_when_forced() {
    let h = Harness::new().await;
    let app = repo("doomed/app");
    let lib = repo("doomed/lib/core");
    let keep = repo("kept/app");
    let image = h
        .push_image(
            &app,
            &tag("latest"),
            "app",
            &[b"shared layer", b"app layer"],
        )
        .await;
    h.push_image(&lib, &tag("latest"), "lib", &[b"lib layer"])
        .await;
    let kept = h
        .push_image(&keep, &tag("latest"), "kept", &[b"shared layer"])
        .await;
    // An open upload in a repository of the namespace: its data goes too.
    let session = h.registry.start_upload(&actor(), &app).await.unwrap();
    h.registry
        .append_chunk(
            &app,
            &session.id,
            None,
            support::stream(b"partial".to_vec()),
        )
        .await
        .unwrap();

    assert_eq!(upload_files(&h), 1);
    assert!(matches!(
        h.registry.delete_namespace(&actor(), "doomed", false).await,
        Err(RegistryError::NamespaceNotEmpty)
    ));
    assert!(h.registry.get_manifest(&app, &tag("latest")).await.is_ok());

    let deleted = h
        .registry
        .delete_namespace(&actor(), "doomed", true)
        .await
        .unwrap();
    assert_eq!(deleted.repositories, vec![app.clone(), lib.clone()]);
    assert!(matches!(
        h.registry.namespace("doomed").await,
        Err(RegistryError::NamespaceUnknown)
    ));
    assert!(matches!(
        h.registry.get_manifest(&app, &tag("latest")).await,
        Err(RegistryError::ManifestUnknown)
    ));
    assert!(matches!(
        h.registry.blob_size(&app, &image.blobs[2]).await,
        Err(RegistryError::BlobUnknown)
    ));
    assert!(matches!(
        h.registry.upload_status(&app, &session.id).await,
        Err(RegistryError::UploadUnknown)
    ));
    assert_eq!(upload_files(&h), 0, "the upload's data was removed");
    assert!(!h
        .registry
        .catalog(None, 100)
        .await
        .unwrap()
        .iter()
        .any(|r| r.namespace() == "doomed"));

    // The bytes go with the next collections after the grace period, except
    // what another namespace still uses.
    h.advance(UPLOAD_TTL + GRACE + 1);
    h.gc().await;
    h.gc().await;
    for blob in &image.blobs {
        assert_eq!(h.stored(blob).await, kept.blobs.contains(blob), "{blob}");
    }
    assert_eq!(h.pull(&keep, &tag("latest")).await.digest, kept.digest);
    h.no_pending_deletions().await;

    assert!(matches!(
        h.registry.delete_namespace(&actor(), "doomed", true).await,
        Err(RegistryError::NamespaceUnknown)
    ));
    assert!(matches!(
        h.registry.delete_repository(&actor(), &app).await,
        Err(RegistryError::NameUnknown)
    ));
}

/// How many upload sessions the filesystem blob store holds data for.
fn upload_files(h: &Harness) -> usize {
    std::fs::read_dir(h.dir.path().join("blobs").join("uploads"))
        .unwrap()
        .count()
}
