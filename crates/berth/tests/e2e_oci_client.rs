//! End to end with the `oci-client` crate (the Rust client of the ORAS
//! project) over plain HTTP: chunked and monolithic pushes, pulls by tag and
//! by digest, cross-repository mounts, a multi-platform index, and an
//! artifact with a `subject` found through the referrers API.
//!
//! The crate needs no external tool, so these tests never skip.

mod support;

use std::collections::BTreeMap;

use oci_client::client::{ClientConfig, ClientProtocol, Config, ImageLayer};
use oci_client::manifest::{
    ImageIndexEntry, OciDescriptor, OciImageIndex, OciImageManifest, IMAGE_LAYER_MEDIA_TYPE,
    OCI_IMAGE_INDEX_MEDIA_TYPE, OCI_IMAGE_MEDIA_TYPE,
};
use oci_client::secrets::RegistryAuth;
use oci_client::{Client, Reference};
use serde_json::json;

use support::oci::{random_bytes, sha256_digest, tar_archive, unique_repo, OCI_EMPTY};
use support::TestRegistry;

const SIGNATURE_TYPE: &str = "application/vnd.berth.test.signature.v1+json";
const SBOM_TYPE: &str = "application/vnd.berth.test.sbom.v1+json";

fn client(monolithic: bool) -> Client {
    Client::new(ClientConfig {
        protocol: ClientProtocol::Http,
        use_monolithic_push: monolithic,
        ..Default::default()
    })
}

fn reference(text: &str) -> Reference {
    text.parse()
        .unwrap_or_else(|e| panic!("bad reference {text}: {e}"))
}

/// Layers of random content. The last one is over 9 MiB, so a chunked push
/// (4 MiB chunks in oci-client) sends it as three `PATCH`es with
/// `Content-Range`, the last chunk shorter than the others.
fn random_layers(sizes: &[usize]) -> Vec<ImageLayer> {
    sizes
        .iter()
        .enumerate()
        .map(|(i, &size)| {
            ImageLayer::oci_v1(
                tar_archive(&[(&format!("file-{i}"), &random_bytes(size))]),
                None,
            )
        })
        .collect()
}

fn image_config(architecture: &str, layers: &[ImageLayer]) -> Config {
    let config = json!({
        "architecture": architecture,
        "os": "linux",
        "config": { "Labels": { "org.berth.test": "oci-client" } },
        "rootfs": { "type": "layers", "diff_ids": layers.iter().map(|l| l.sha256_digest()).collect::<Vec<_>>() }
    });
    Config::oci_v1(serde_json::to_vec(&config).unwrap(), None)
}

/// Asserts that `pulled` holds exactly the layers of `pushed`. `Client::pull`
/// downloads layers concurrently and returns them in completion order, so
/// they are compared by content, not by position.
fn assert_same_layers(pulled: &[ImageLayer], pushed: &[ImageLayer]) {
    let mut pulled: Vec<String> = pulled.iter().map(|l| sha256_digest(&l.data)).collect();
    let mut pushed: Vec<String> = pushed.iter().map(ImageLayer::sha256_digest).collect();
    pulled.sort();
    pushed.sort();
    assert_eq!(pulled, pushed, "pulled layers differ from pushed layers");
}

/// Pulls every layer of `manifest` from `image` one by one and compares
/// each with what was pushed.
async fn assert_layers_pull_back(
    client: &Client,
    image: &Reference,
    manifest: &OciImageManifest,
    layers: &[ImageLayer],
) {
    assert_eq!(manifest.layers.len(), layers.len());
    for (descriptor, layer) in manifest.layers.iter().zip(layers) {
        assert_eq!(descriptor.digest, layer.sha256_digest());
        assert_eq!(descriptor.size as usize, layer.data.len());
        let mut pulled = Vec::new();
        client
            .pull_blob(image, descriptor, &mut pulled)
            .await
            .expect("pull blob");
        assert!(pulled == layer.data, "blob {} differs", descriptor.digest);
    }
}

#[tokio::test]
async fn oci_client_pushes_in_chunks_and_pulls_back_by_tag_and_by_digest() {
    let registry = TestRegistry::start();
    let repo = unique_repo("oci-client");
    let tagged = reference(&format!("{}/{repo}:v1", registry.addr));
    let client = client(false);
    let layers = random_layers(&[1024, 64 * 1024, 9 * 1024 * 1024 + 123]);
    let config = image_config("amd64", &layers);

    client
        .push(
            &tagged,
            &layers,
            config.clone(),
            &RegistryAuth::Anonymous,
            None,
        )
        .await
        .expect("push");

    // The whole image, by tag: same layers, same config.
    let image = client
        .pull(
            &tagged,
            &RegistryAuth::Anonymous,
            vec![IMAGE_LAYER_MEDIA_TYPE],
        )
        .await
        .expect("pull");
    assert_same_layers(&image.layers, &layers);
    assert!(image.config.data == config.data, "config differs");
    let digest = image
        .digest
        .clone()
        .expect("pull reports the manifest digest");

    // The raw manifest by tag and by digest: identical bytes whose sha256
    // is the digest the registry reports, in GET and in HEAD.
    let (by_tag, tag_digest) = client
        .pull_manifest_raw(&tagged, &RegistryAuth::Anonymous, &[OCI_IMAGE_MEDIA_TYPE])
        .await
        .expect("manifest by tag");
    assert_eq!(sha256_digest(&by_tag), digest);
    assert_eq!(tag_digest, digest);
    let pinned = reference(&format!("{}/{repo}@{digest}", registry.addr));
    let (by_digest, _) = client
        .pull_manifest_raw(&pinned, &RegistryAuth::Anonymous, &[OCI_IMAGE_MEDIA_TYPE])
        .await
        .expect("manifest by digest");
    assert!(
        by_digest == by_tag,
        "manifest by digest differs from manifest by tag"
    );
    assert_eq!(
        client
            .fetch_manifest_digest(&tagged, &RegistryAuth::Anonymous)
            .await
            .expect("HEAD manifest"),
        digest
    );

    let (manifest, _) = client
        .pull_image_manifest(&pinned, &RegistryAuth::Anonymous)
        .await
        .expect("parse manifest");
    assert_eq!(manifest.config.digest, config.sha256_digest());
    assert_layers_pull_back(&client, &pinned, &manifest, &layers).await;

    for layer in &layers {
        assert!(client
            .blob_exists(&tagged, &layer.sha256_digest())
            .await
            .expect("HEAD blob"));
    }
    let absent = sha256_digest(b"never pushed");
    assert!(!client
        .blob_exists(&tagged, &absent)
        .await
        .expect("HEAD absent blob"));

    let tags = client
        .list_tags(&tagged, &RegistryAuth::Anonymous, None, None)
        .await
        .expect("tags");
    assert_eq!(tags.name, repo);
    assert_eq!(tags.tags, vec!["v1".to_string()]);
}

#[tokio::test]
async fn oci_client_pushes_monolithically_and_mounts_blobs_across_repositories() {
    let registry = TestRegistry::start();
    let source = reference(&format!(
        "{}/{}:v1",
        registry.addr,
        unique_repo("oci-client-mono")
    ));
    let target = reference(&format!(
        "{}/{}:copy",
        registry.addr,
        unique_repo("oci-client-mount")
    ));
    let client = client(true);
    let layers = random_layers(&[4096, 2 * 1024 * 1024]);
    let config = image_config("amd64", &layers);
    client
        .push(
            &source,
            &layers,
            config.clone(),
            &RegistryAuth::Anonymous,
            None,
        )
        .await
        .expect("monolithic push");

    // A blob is only reachable through a repository it was pushed or
    // mounted into.
    for layer in &layers {
        assert!(!client
            .blob_exists(&target, &layer.sha256_digest())
            .await
            .expect("HEAD blob"));
    }
    // Mounting every blob then pushing the same manifest bytes makes the
    // image complete in the target repository without uploading data.
    for digest in layers
        .iter()
        .map(ImageLayer::sha256_digest)
        .chain([config.sha256_digest()])
    {
        client
            .mount_blob(&target, &source, &digest)
            .await
            .expect("mount blob");
        assert!(client
            .blob_exists(&target, &digest)
            .await
            .expect("HEAD mounted blob"));
    }
    let (manifest_bytes, digest) = client
        .pull_manifest_raw(&source, &RegistryAuth::Anonymous, &[OCI_IMAGE_MEDIA_TYPE])
        .await
        .expect("manifest");
    client
        .push_manifest_raw(
            &target,
            manifest_bytes.clone(),
            OCI_IMAGE_MEDIA_TYPE.parse().unwrap(),
        )
        .await
        .expect("push manifest into the target");
    let image = client
        .pull(
            &target,
            &RegistryAuth::Anonymous,
            vec![IMAGE_LAYER_MEDIA_TYPE],
        )
        .await
        .expect("pull");
    assert_eq!(image.digest.as_deref(), Some(digest.as_str()));
    assert_same_layers(&image.layers, &layers);
}

#[tokio::test]
async fn oci_client_pushes_a_multi_platform_index_and_resolves_each_platform() {
    let registry = TestRegistry::start();
    let repo = unique_repo("oci-client-index");
    let client = client(false);
    let mut entries = Vec::new();
    let mut pushed = BTreeMap::new();
    for architecture in ["amd64", "arm64"] {
        let image = reference(&format!("{}/{repo}:{architecture}", registry.addr));
        let layers = random_layers(&[2048, 8192]);
        client
            .push(
                &image,
                &layers,
                image_config(architecture, &layers),
                &RegistryAuth::Anonymous,
                None,
            )
            .await
            .expect("push platform image");
        let (bytes, digest) = client
            .pull_manifest_raw(&image, &RegistryAuth::Anonymous, &[OCI_IMAGE_MEDIA_TYPE])
            .await
            .expect("platform manifest");
        entries.push(json!({
            "mediaType": OCI_IMAGE_MEDIA_TYPE,
            "digest": digest,
            "size": bytes.len(),
            "platform": { "architecture": architecture, "os": "linux" }
        }));
        pushed.insert(architecture, (digest, layers));
    }
    let index: OciImageIndex = serde_json::from_value(json!({
        "schemaVersion": 2,
        "mediaType": OCI_IMAGE_INDEX_MEDIA_TYPE,
        "manifests": entries
    }))
    .unwrap();
    let multi = reference(&format!("{}/{repo}:multi", registry.addr));
    client
        .push_manifest_list(&multi, &RegistryAuth::Anonymous, index)
        .await
        .expect("push index");

    let (index_bytes, index_digest) = client
        .pull_manifest_raw(
            &multi,
            &RegistryAuth::Anonymous,
            &[OCI_IMAGE_INDEX_MEDIA_TYPE],
        )
        .await
        .expect("index");
    assert_eq!(sha256_digest(&index_bytes), index_digest);

    // A client resolving the index for each platform gets that platform's
    // manifest, and knows the index digest it came from.
    for architecture in ["amd64", "arm64"] {
        let resolver = move |entries: &[ImageIndexEntry]| {
            entries
                .iter()
                .find(|e| {
                    e.platform
                        .as_ref()
                        .is_some_and(|p| p.architecture.to_string() == architecture)
                })
                .map(|e| e.digest.clone())
        };
        let platform_client = Client::new(ClientConfig {
            protocol: ClientProtocol::Http,
            platform_resolver: Some(Box::new(resolver)),
            ..Default::default()
        });
        let (manifest, digest, list_digest) = platform_client
            .pull_image_manifest_and_list_digest(&multi, &RegistryAuth::Anonymous)
            .await
            .expect("resolve platform");
        let (expected_digest, layers) = &pushed[architecture];
        assert_eq!(&digest, expected_digest);
        assert_eq!(list_digest.as_deref(), Some(index_digest.as_str()));
        assert_layers_pull_back(&platform_client, &multi, &manifest, layers).await;
    }
}

/// An artifact manifest per image-spec 1.1: `artifactType`, the empty
/// config, one layer, and a `subject`.
fn artifact_manifest(
    artifact_type: &str,
    layer: &ImageLayer,
    empty: &Config,
    subject: OciDescriptor,
) -> OciImageManifest {
    OciImageManifest {
        media_type: Some(OCI_IMAGE_MEDIA_TYPE.to_string()),
        artifact_type: Some(artifact_type.to_string()),
        config: OciDescriptor {
            media_type: OCI_EMPTY.to_string(),
            digest: empty.sha256_digest(),
            size: empty.data.len() as i64,
            ..Default::default()
        },
        layers: vec![OciDescriptor {
            media_type: layer.media_type.clone(),
            digest: layer.sha256_digest(),
            size: layer.data.len() as i64,
            ..Default::default()
        }],
        subject: Some(subject),
        annotations: Some(BTreeMap::from([(
            "org.berth.test.kind".to_string(),
            artifact_type.to_string(),
        )])),
        ..Default::default()
    }
}

#[tokio::test]
async fn oci_client_pushes_artifacts_with_a_subject_and_lists_them_as_referrers() {
    let registry = TestRegistry::start();
    let repo = unique_repo("oci-client-referrers");
    let client = client(false);

    // The subject: an ordinary image.
    let image = reference(&format!("{}/{repo}:v1", registry.addr));
    let layers = random_layers(&[1024]);
    client
        .push(
            &image,
            &layers,
            image_config("amd64", &layers),
            &RegistryAuth::Anonymous,
            None,
        )
        .await
        .expect("push image");
    let (subject_bytes, subject_digest) = client
        .pull_manifest_raw(&image, &RegistryAuth::Anonymous, &[OCI_IMAGE_MEDIA_TYPE])
        .await
        .expect("subject manifest");
    let subject = OciDescriptor {
        media_type: OCI_IMAGE_MEDIA_TYPE.to_string(),
        digest: subject_digest.clone(),
        size: subject_bytes.len() as i64,
        ..Default::default()
    };

    // Two artifacts of different types refer to it. The signature goes
    // through the client's own push; the SBOM is put raw so the test can
    // read the `OCI-Subject` header, which the client does not expose.
    let empty = Config::new(b"{}".to_vec(), OCI_EMPTY.to_string(), None);
    let signature_layer = ImageLayer::new(
        b"signed by berth e2e".to_vec(),
        "application/vnd.berth.test.sig".into(),
        None,
    );
    let signature = artifact_manifest(SIGNATURE_TYPE, &signature_layer, &empty, subject.clone());
    let signature_ref = reference(&format!("{}/{repo}:signature", registry.addr));
    client
        .push(
            &signature_ref,
            std::slice::from_ref(&signature_layer),
            empty.clone(),
            &RegistryAuth::Anonymous,
            Some(signature),
        )
        .await
        .expect("push signature artifact");
    let (signature_bytes, signature_digest) = client
        .pull_manifest_raw(
            &signature_ref,
            &RegistryAuth::Anonymous,
            &[OCI_IMAGE_MEDIA_TYPE],
        )
        .await
        .expect("signature manifest");

    let sbom_layer = ImageLayer::new(
        br#"{"packages":[]}"#.to_vec(),
        "application/spdx+json".into(),
        None,
    );
    client
        .push_blob(&image, sbom_layer.data.clone(), &sbom_layer.sha256_digest())
        .await
        .expect("push sbom blob");
    let sbom_bytes =
        serde_json::to_vec(&artifact_manifest(SBOM_TYPE, &sbom_layer, &empty, subject)).unwrap();
    let sbom_digest = sha256_digest(&sbom_bytes);
    let http = reqwest::Client::new();
    let response = http
        .put(format!(
            "http://{}/v2/{repo}/manifests/{sbom_digest}",
            registry.addr
        ))
        .header("Content-Type", OCI_IMAGE_MEDIA_TYPE)
        .body(sbom_bytes.clone())
        .send()
        .await
        .expect("PUT sbom manifest");
    assert_eq!(response.status().as_u16(), 201);
    // The spec's signal that the registry processed the subject, so that
    // clients need not maintain the referrers tag schema themselves.
    assert_eq!(
        response
            .headers()
            .get("oci-subject")
            .and_then(|v| v.to_str().ok()),
        Some(subject_digest.as_str())
    );

    // Unfiltered, both artifacts are listed, each with its artifact type,
    // size and annotations copied from its manifest.
    let pinned = reference(&format!("{}/{repo}@{subject_digest}", registry.addr));
    let referrers = client
        .pull_referrers(&pinned, None)
        .await
        .expect("referrers");
    assert_eq!(
        referrers.media_type.as_deref(),
        Some(OCI_IMAGE_INDEX_MEDIA_TYPE)
    );
    let mut listed: Vec<(String, Option<String>, i64)> = referrers
        .manifests
        .iter()
        .map(|m| (m.digest.clone(), m.artifact_type.clone(), m.size))
        .collect();
    listed.sort();
    let mut expected = vec![
        (
            signature_digest.clone(),
            Some(SIGNATURE_TYPE.to_string()),
            signature_bytes.len() as i64,
        ),
        (
            sbom_digest.clone(),
            Some(SBOM_TYPE.to_string()),
            sbom_bytes.len() as i64,
        ),
    ];
    expected.sort();
    assert_eq!(listed, expected);
    for entry in &referrers.manifests {
        assert_eq!(entry.media_type, OCI_IMAGE_MEDIA_TYPE);
        let kind = entry
            .annotations
            .as_ref()
            .and_then(|a| a.get("org.berth.test.kind"));
        assert_eq!(kind, entry.artifact_type.as_ref());
    }

    // Filtered by artifact type, through the client and raw, where the
    // registry must say it applied the filter.
    let filtered = client
        .pull_referrers(&pinned, Some(SBOM_TYPE))
        .await
        .expect("filtered referrers");
    let digests: Vec<&str> = filtered
        .manifests
        .iter()
        .map(|m| m.digest.as_str())
        .collect();
    assert_eq!(digests, [sbom_digest.as_str()]);
    // `+` is percent-encoded, as clients encode query values; a bare `+`
    // would read as a space to a form decoder.
    let response = http
        .get(format!(
            "http://{}/v2/{repo}/referrers/{subject_digest}?artifactType={}",
            registry.addr,
            SBOM_TYPE.replace('+', "%2B")
        ))
        .send()
        .await
        .expect("GET referrers");
    assert_eq!(response.status().as_u16(), 200);
    assert_eq!(
        response
            .headers()
            .get("oci-filters-applied")
            .and_then(|v| v.to_str().ok()),
        Some("artifactType")
    );
    let body: serde_json::Value = response.json().await.expect("referrers JSON");
    assert_eq!(body["manifests"].as_array().map(Vec::len), Some(1));
    assert_eq!(body["manifests"][0]["digest"], sbom_digest.as_str());

    // The artifact itself pulls back with its layer intact.
    let (manifest, _) = client
        .pull_image_manifest(&signature_ref, &RegistryAuth::Anonymous)
        .await
        .expect("artifact");
    assert_eq!(manifest.artifact_type.as_deref(), Some(SIGNATURE_TYPE));
    assert_eq!(
        manifest.subject.as_ref().map(|s| s.digest.as_str()),
        Some(subject_digest.as_str())
    );
    assert_layers_pull_back(&client, &signature_ref, &manifest, &[signature_layer]).await;

    // A subject with no referrers still answers 200 with an empty index.
    let lonely = reference(&format!("{}/{repo}@{signature_digest}", registry.addr));
    assert!(client
        .pull_referrers(&lonely, None)
        .await
        .expect("empty referrers")
        .manifests
        .is_empty());
}
