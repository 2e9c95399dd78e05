//! The Vulnerability Advisor through the HTTP layer, without sockets: an
//! image pushed and indexed (consumer and workers run once), advisories
//! imported over the API, the report, a `block` policy refusing the pull
//! with 403 `DENIED` naming the finding, `warn` serving it with the
//! warning header, and an exemption lifting the block.

mod support;

use std::io::Write;
use std::sync::Arc;

use berth_oci::{Algorithm, Reference, RepoName, Tag};
use berth_registry::advisor::{Indexer, ScanOnPush, ScanOptions, ScanWorkers};
use berth_registry::{Actor, ConsumerOptions, ConsumerRunner};
use bytes::Bytes;
use support::{basic, Harness, PASSWORD};

fn layer(files: &[(&str, &[u8])]) -> Vec<u8> {
    let mut builder = tar::Builder::new(Vec::new());
    for (path, contents) in files {
        let mut header = tar::Header::new_gnu();
        header.set_size(contents.len() as u64);
        header.set_mode(0o644);
        header.set_cksum();
        builder.append_data(&mut header, path, *contents).unwrap();
    }
    let mut gzip = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    gzip.write_all(&builder.into_inner().unwrap()).unwrap();
    gzip.finish().unwrap()
}

/// Pushes a Debian 12 image with `libexample 1.2-3` as `pub/app:v1`.
async fn push_image(h: &Harness) {
    let registry = &h.state.registry;
    let repo = RepoName::parse("pub/app").unwrap();
    let actor = Actor::user("owner");
    let base = layer(&[
        (
            "etc/os-release",
            b"ID=debian\nVERSION_ID=\"12\"\nVERSION_CODENAME=bookworm\n",
        ),
        (
            "var/lib/dpkg/status",
            b"Package: libexample\nStatus: install ok installed\nVersion: 1.2-3\nArchitecture: amd64\n\n",
        ),
    ]);
    let config = br#"{"architecture":"amd64","os":"linux"}"#.to_vec();
    let mut digests = Vec::new();
    for blob in [&config, &base] {
        let digest = Algorithm::Sha256.digest_of(blob);
        let bytes = Bytes::from(blob.clone());
        registry
            .upload_monolithic(
                &actor,
                &repo,
                &digest,
                Box::pin(futures::stream::once(async move { Ok(bytes) })),
            )
            .await
            .unwrap();
        digests.push(digest);
    }
    let manifest = serde_json::json!({
        "schemaVersion": 2,
        "mediaType": "application/vnd.oci.image.manifest.v1+json",
        "config": {"mediaType": "application/vnd.oci.image.config.v1+json",
                   "digest": digests[0].as_str(), "size": config.len()},
        "layers": [{"mediaType": "application/vnd.oci.image.layer.v1.tar+gzip",
                    "digest": digests[1].as_str(), "size": base.len()}],
    });
    registry
        .put_manifest(
            &actor,
            &repo,
            &Reference::Tag(Tag::parse("v1").unwrap()),
            &[],
            Some("application/vnd.oci.image.manifest.v1+json"),
            serde_json::to_vec(&manifest).unwrap(),
        )
        .await
        .unwrap();
    let runner = ConsumerRunner::new(
        registry.clone(),
        ScanOnPush::NAME,
        Arc::new(ScanOnPush::new(registry.clone())),
        ConsumerOptions::default(),
    );
    runner.run_once().await.unwrap();
    let workers = ScanWorkers::new(registry.clone(), Indexer::default(), ScanOptions::default());
    assert_eq!(workers.run_once(10).await.unwrap(), 1);
}

/// A test advisory written for this file: `libexample` fixed in
/// `1.2-3+deb12u1`, critical.
const RECORD: &str = r#"{"records": [{"id": "TEST-DEB-1", "modified": "2026-01-01T00:00:00Z",
    "aliases": ["CVE-2099-0001"], "summary": "libexample overflows",
    "severity": [{"type": "CVSS_V3", "score": "CVSS:3.1/AV:N/AC:L/PR:N/UI:N/S:U/C:H/I:H/A:H"}],
    "affected": [{"package": {"ecosystem": "Debian:12", "name": "libexample"},
      "ranges": [{"type": "ECOSYSTEM", "events": [{"introduced": "0"}, {"fixed": "1.2-3+deb12u1"}]}]}]}]}"#;

#[tokio::test]
async fn a_block_policy_refuses_the_pull_naming_the_finding_until_it_is_exempted() {
    let h = Harness::new().await;
    let root = basic("root", PASSWORD);
    let owner = basic("owner", PASSWORD);
    let reader = basic("reader", PASSWORD);
    push_image(&h).await;

    let report = h
        .call(
            "GET",
            "/api/v1/images/pub%2Fapp:v1/vulnerabilities",
            Some(&reader),
            "",
        )
        .await;
    assert_eq!(report.status, 200, "{}", report.text());
    assert_eq!(report.json()["status"], "No issues");

    let imported = h
        .call("POST", "/api/v1/advisories", Some(&root), RECORD)
        .await;
    assert_eq!(imported.status, 200, "{}", imported.text());
    assert_eq!(imported.json()["added"], 1);
    // Importing the same record again changes nothing.
    let again = h
        .call("POST", "/api/v1/advisories", Some(&root), RECORD)
        .await;
    assert_eq!(again.json()["unchanged"], 1);

    let report = h
        .call(
            "GET",
            "/api/v1/images/pub%2Fapp:v1/vulnerabilities",
            Some(&reader),
            "",
        )
        .await
        .json();
    assert_eq!(report["status"], "1 issue");
    let finding = &report["images"][0]["findings"][0];
    assert_eq!(finding["advisory"], "TEST-DEB-1");
    assert_eq!(finding["installed_version"], "1.2-3");
    assert_eq!(finding["fixed_version"], "1.2-3+deb12u1");
    assert_eq!(finding["severity"], "critical");
    let sbom = h
        .call(
            "GET",
            "/api/v1/images/pub%2Fapp:v1/sbom/cyclonedx",
            Some(&reader),
            "",
        )
        .await;
    assert_eq!(sbom.status, 200);
    assert_eq!(sbom.json()["specVersion"], "1.6");
    // The web console's image page shows the same report.
    let page = h
        .call("GET", "/repositories/pub/app/-/images/v1", None, "")
        .await;
    assert_eq!(page.status, 200, "{}", page.text());
    for shown in [
        "Vulnerabilities",
        "1 issue",
        "TEST-DEB-1",
        "critical",
        "1.2-3+deb12u1",
    ] {
        assert!(page.text().contains(shown), "{shown}: {}", page.text());
    }

    // (policy body, expected pull status, what the answer must carry)
    let cases = [
        (
            r#"{"mode":"block","severity":"high"}"#,
            403,
            "CVE-2099-0001",
        ),
        (r#"{"mode":"warn","severity":"high"}"#, 200, "CVE-2099-0001"),
        (
            r#"{"mode":"block","severity":"critical"}"#,
            403,
            "berth exemption add",
        ),
        (r#"{"mode":"off"}"#, 200, ""),
    ];
    for (policy, status, carries) in cases {
        let set = h
            .call(
                "PUT",
                "/api/v1/namespaces/pub/vulnerability-policy",
                Some(&owner),
                policy,
            )
            .await;
        assert_eq!(set.status, 200, "{policy}: {}", set.text());
        let pull = h
            .call("GET", "/v2/pub/app/manifests/v1", Some(&reader), "")
            .await;
        assert_eq!(pull.status, status, "{policy}: {}", pull.text());
        match status {
            403 => {
                let error = &pull.json()["errors"][0];
                assert_eq!(error["code"], "DENIED", "{policy}: {}", pull.text());
                let message = error["message"].as_str().unwrap_or_default();
                assert!(message.contains(carries), "{policy}: {message}");
            }
            _ if !carries.is_empty() => {
                let warning = pull.header("berth-vulnerability-warning");
                assert!(warning.contains(carries), "{policy}: {warning}");
            }
            _ => assert!(pull.headers.get("berth-vulnerability-warning").is_none()),
        }
    }

    // An exemption of the tag (by alias) lifts the block.
    let blocked = h
        .call(
            "PUT",
            "/api/v1/namespaces/pub/vulnerability-policy",
            Some(&owner),
            r#"{"mode":"block","severity":"any"}"#,
        )
        .await;
    assert_eq!(blocked.status, 200);
    let exempt = h
        .call(
            "POST",
            "/api/v1/exemptions",
            Some(&owner),
            r#"{"scope":"pub/app:v1","issue":"CVE-2099-0001","reason":"not reachable"}"#,
        )
        .await;
    assert_eq!(exempt.status, 201, "{}", exempt.text());
    let pull = h
        .call("GET", "/v2/pub/app/manifests/v1", Some(&reader), "")
        .await;
    assert_eq!(pull.status, 200, "{}", pull.text());
    let report = h
        .call(
            "GET",
            "/api/v1/images/pub%2Fapp:v1/vulnerabilities",
            Some(&reader),
            "",
        )
        .await
        .json();
    assert_eq!(report["status"], "No issues");
    assert_eq!(report["images"][0]["exempted"][0]["advisory"], "TEST-DEB-1");
    let listed = h
        .call("GET", "/api/v1/exemptions", Some(&reader), "")
        .await
        .json();
    assert_eq!(listed["exemptions"][0]["scope"], "pub/app:v1");
    let removed = h
        .call(
            "DELETE",
            "/api/v1/exemptions/pub%2Fapp:v1/CVE-2099-0001",
            Some(&owner),
            "",
        )
        .await;
    assert_eq!(removed.status, 204, "{}", removed.text());
    let pull = h
        .call("GET", "/v2/pub/app/manifests/v1", Some(&reader), "")
        .await;
    assert_eq!(pull.status, 403);
}
