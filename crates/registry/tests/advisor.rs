//! The Vulnerability Advisor through the registry: scan on push (the
//! consumer queues tagged images, the workers index them, layers shared
//! between images are read once), assessment against imported advisories,
//! exemptions, and a worker that dies mid-scan, on SQLite and the
//! filesystem with a fixed clock.

mod support;

use std::io::Write;
use std::sync::atomic::Ordering;
use std::sync::Arc;

use berth_meta::{AdvisorStore, ExemptionRow, FinishedScan, IndexState, ManifestStore};
use berth_oci::Digest;
use berth_registry::advisor::{ScanOnPush, ScanOptions, ScanStatus, ScanWorkers};
use berth_registry::{ConsumerOptions, ConsumerRunner, Registry};
use berth_scanner::Indexer;
use support::{actor, push_index, repo, tag, Harness, START};

/// A gzip-compressed tar layer holding `files` (path, contents).
fn layer(files: &[(&str, &[u8])]) -> Vec<u8> {
    let mut builder = tar::Builder::new(Vec::new());
    for (path, contents) in files {
        let mut header = tar::Header::new_gnu();
        header.set_size(contents.len() as u64);
        header.set_mode(0o644);
        header.set_cksum();
        builder.append_data(&mut header, path, *contents).unwrap();
    }
    let tar = builder.into_inner().unwrap();
    let mut gzip = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    gzip.write_all(&tar).unwrap();
    gzip.finish().unwrap()
}

const OS_RELEASE: &[u8] =
    b"PRETTY_NAME=\"Debian GNU/Linux 12 (bookworm)\"\nID=debian\nVERSION_ID=\"12\"\nVERSION_CODENAME=bookworm\n";

fn dpkg_status(packages: &[(&str, &str)]) -> Vec<u8> {
    packages
        .iter()
        .map(|(name, version)| {
            format!(
                "Package: {name}\nStatus: install ok installed\nVersion: {version}\nArchitecture: amd64\n\n"
            )
        })
        .collect::<String>()
        .into_bytes()
}

/// A layer of a Debian 12 root holding `packages` (name, version): its
/// `os-release` and dpkg status.
fn debian_layer(packages: &[(&str, &str)]) -> Vec<u8> {
    layer(&[
        ("etc/os-release", OS_RELEASE),
        ("var/lib/dpkg/status", &dpkg_status(packages)),
    ])
}

/// Test advisories written for this file (ids of no published database):
/// one fixed in a later version of `libexample`, one without a fix for
/// `toolexample`, and one for another Debian release, which must not match.
fn advisories() -> Vec<berth_scanner::Advisory> {
    let records = [
        r#"{"id": "TEST-DEB-1", "modified": "2026-01-01T00:00:00Z", "aliases": ["CVE-2099-0001"],
            "summary": "libexample overflows",
            "severity": [{"type": "CVSS_V3", "score": "CVSS:3.1/AV:N/AC:L/PR:N/UI:N/S:U/C:H/I:H/A:H"}],
            "affected": [{"package": {"ecosystem": "Debian:12", "name": "libexample"},
              "ranges": [{"type": "ECOSYSTEM", "events": [{"introduced": "0"}, {"fixed": "1.2-3+deb12u1"}]}]}]}"#,
        r#"{"id": "TEST-DEB-2", "modified": "2026-01-01T00:00:00Z", "aliases": ["CVE-2099-0002"],
            "summary": "toolexample has no fix",
            "affected": [{"package": {"ecosystem": "Debian:12", "name": "toolexample"},
              "ranges": [{"type": "ECOSYSTEM", "events": [{"introduced": "0"}]}]}]}"#,
        r#"{"id": "TEST-DEB-3", "modified": "2026-01-01T00:00:00Z",
            "summary": "libexample on Debian 11 only",
            "affected": [{"package": {"ecosystem": "Debian:11", "name": "libexample"},
              "ranges": [{"type": "ECOSYSTEM", "events": [{"introduced": "0"}, {"fixed": "9"}]}]}]}"#,
    ];
    records
        .iter()
        .map(|record| berth_scanner::osv::parse_json(record.as_bytes()).unwrap())
        .collect()
}

fn scan_on_push(registry: &Registry) -> ConsumerRunner {
    ConsumerRunner::new(
        registry.clone(),
        ScanOnPush::NAME,
        Arc::new(ScanOnPush::new(registry.clone())),
        ConsumerOptions::default(),
    )
}

fn workers(registry: &Registry) -> ScanWorkers {
    ScanWorkers::new(
        registry.clone(),
        Indexer::default(),
        ScanOptions {
            lease: std::time::Duration::from_secs(60),
            ..ScanOptions::default()
        },
    )
}

/// A finding as (advisory, installed version, fixed version).
type FindingFacts<'a> = (&'a str, &'a str, Option<&'a str>);

fn advisory_ids(findings: &[berth_scanner::Finding]) -> Vec<FindingFacts<'_>> {
    findings
        .iter()
        .map(|f| {
            (
                f.advisory.as_str(),
                f.installed_version.as_str(),
                f.fixed_version.as_deref(),
            )
        })
        .collect()
}

#[tokio::test]
async fn pushed_images_are_indexed_once_and_assessed_against_stored_advisories() {
    let h = Harness::new().await;
    let app = repo("team/app");
    let other = repo("other/tool");
    let base = debian_layer(&[("libexample", "1.2-3"), ("toolexample", "0.9-1")]);
    let extra = layer(&[("srv/app/README", b"the application")]);
    let image = h
        .push_image(&app, &tag("v1"), "app", &[&base, &extra])
        .await;
    // The same base layer under another repository, and an index listing
    // the first image: the base layer is read once, the image indexed once.
    let tool = h.push_image(&other, &tag("v1"), "tool", &[&base]).await;
    push_index(&h.registry, &app, &tag("multi"), &[&image.digest]).await;

    let image_state = |digest: Digest| {
        let meta = h.meta.clone();
        async move {
            meta.image_index(&digest)
                .await
                .unwrap()
                .map(|row| row.state)
        }
    };
    assert_eq!(image_state(image.digest.clone()).await, None);
    scan_on_push(&h.registry).run_once().await.unwrap();
    assert_eq!(h.meta.scan_queue_depth().await.unwrap(), 2);
    assert_eq!(
        image_state(image.digest.clone()).await,
        Some(IndexState::Queued)
    );
    let status = h
        .registry
        .assess_image(&app, None, &image.digest, false)
        .await
        .unwrap()
        .status;
    assert_eq!(status, ScanStatus::Scanning);

    let workers = workers(&h.registry);
    assert_eq!(workers.run_once(10).await.unwrap(), 2);
    assert_eq!(workers.stats().layers_indexed.load(Ordering::SeqCst), 2);
    assert_eq!(h.meta.scan_queue_depth().await.unwrap(), 0);
    assert_eq!(
        image_state(image.digest.clone()).await,
        Some(IndexState::Done)
    );
    assert_eq!(
        image_state(tool.digest.clone()).await,
        Some(IndexState::Done)
    );

    // Indexed, and no advisories yet: no findings.
    let before = h
        .registry
        .assess_image(&app, None, &image.digest, true)
        .await
        .unwrap();
    assert_eq!(before.status, ScanStatus::Indexed { partial: None });
    assert!(before.findings.is_empty());
    let report = before.report.unwrap();
    assert_eq!(report.distribution.unwrap().id, "debian");
    assert_eq!(report.packages.len(), 2);

    // Importing advisories changes the verdict without reading a layer.
    let counts = h
        .registry
        .import_advisories(&actor(), &advisories())
        .await
        .unwrap();
    assert_eq!(counts.added, 3);
    let cases: [(bool, Vec<FindingFacts>, usize); 2] = [
        // By default only findings with a published fix count.
        (
            false,
            vec![("TEST-DEB-1", "1.2-3", Some("1.2-3+deb12u1"))],
            1,
        ),
        (
            true,
            vec![
                ("TEST-DEB-1", "1.2-3", Some("1.2-3+deb12u1")),
                ("TEST-DEB-2", "0.9-1", None),
            ],
            0,
        ),
    ];
    for (all, expected, unfixed) in cases {
        for (repository, digest) in [(&app, &image.digest), (&other, &tool.digest)] {
            let assessment = h
                .registry
                .assess_image(repository, None, digest, all)
                .await
                .unwrap();
            assert_eq!(advisory_ids(&assessment.findings), expected, "all={all}");
            assert_eq!(assessment.unfixed, unfixed);
        }
    }
    // Assessing read no layer.
    assert_eq!(workers.stats().layers_indexed.load(Ordering::SeqCst), 2);

    // An exemption by alias for the repository removes the finding there
    // only; an expired one removes nothing.
    let exemption = |scope: &str, expires_at| ExemptionRow {
        scope: scope.to_string(),
        advisory: "CVE-2099-0001".to_string(),
        reason: "not reachable".to_string(),
        author: "tester".to_string(),
        created_at: START,
        expires_at,
    };
    let change = berth_meta::Change::new(actor(), START);
    h.meta
        .set_exemption(&change, &exemption("team/app", None))
        .await
        .unwrap();
    h.meta
        .set_exemption(&change, &exemption("other", Some(START)))
        .await
        .unwrap();
    let exempted = h
        .registry
        .assess_image(&app, None, &image.digest, false)
        .await
        .unwrap();
    assert!(exempted.findings.is_empty());
    assert_eq!(advisory_ids(&exempted.exempted)[0].0, "TEST-DEB-1");
    let still = h
        .registry
        .assess_image(&other, None, &tool.digest, false)
        .await
        .unwrap();
    assert_eq!(advisory_ids(&still.findings)[0].0, "TEST-DEB-1");

    // Retagging the indexed image queues nothing: it is indexed once.
    h.registry
        .put_manifest(
            &actor(),
            &app,
            &tag("v2"),
            &[],
            Some("application/vnd.oci.image.manifest.v1+json"),
            support::manifest_json(
                (&image.blobs[0], br#"{"image":"app"}"#.len()),
                &[
                    (image.blobs[1].clone(), base.len()),
                    (image.blobs[2].clone(), extra.len()),
                ],
            ),
        )
        .await
        .unwrap();
    scan_on_push(&h.registry).run_once().await.unwrap();
    assert_eq!(h.meta.scan_queue_depth().await.unwrap(), 0);

    // A digest nobody tagged was never queued.
    let untagged = h
        .registry
        .assess_image(&app, None, &image.blobs[0], false)
        .await
        .unwrap();
    assert_eq!(untagged.status, ScanStatus::NotScanned);
}

#[tokio::test]
async fn a_job_of_a_worker_that_died_is_taken_over_after_its_lease() {
    let h = Harness::new().await;
    let app = repo("team/app");
    let base = debian_layer(&[("libexample", "1.2-3")]);
    let image = h.push_image(&app, &tag("v1"), "app", &[&base]).await;
    scan_on_push(&h.registry).run_once().await.unwrap();

    // A worker of another node takes the job and dies without finishing.
    let dead = h
        .meta
        .take_scan("dead-node/scan-0", h.now(), 60)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(dead.manifest, image.digest);
    let workers = workers(&h.registry);
    assert_eq!(workers.run_once(10).await.unwrap(), 0);
    h.advance(60);
    assert_eq!(workers.run_once(10).await.unwrap(), 1);
    assert_eq!(
        h.meta
            .image_index(&image.digest)
            .await
            .unwrap()
            .unwrap()
            .state,
        IndexState::Done
    );
    // The dead worker, back, cannot overwrite the result.
    let late = h
        .meta
        .finish_scan(
            "dead-node/scan-0",
            &image.digest,
            &FinishedScan {
                state: &IndexState::Partial("late".to_string()),
                layers: &[],
                package_keys: &[],
                new_layer_indexes: &[],
            },
            h.now(),
        )
        .await;
    assert!(matches!(late, Err(berth_meta::MetaError::LeaseLost)));
}

#[tokio::test]
async fn images_without_a_known_system_or_packages_are_unsupported() {
    let h = Harness::new().await;
    let app = repo("team/static");
    let only_files = layer(&[("bin/tool", b"\x7fELF not really")]);
    let image = h
        .push_image(&app, &tag("v1"), "static", &[&only_files])
        .await;
    scan_on_push(&h.registry).run_once().await.unwrap();
    workers(&h.registry).run_once(10).await.unwrap();
    let assessment = h
        .registry
        .assess_image(&app, None, &image.digest, false)
        .await
        .unwrap();
    assert!(
        matches!(assessment.status, ScanStatus::UnsupportedOs(_)),
        "got {:?}",
        assessment.status
    );
}

/// The layers indexed before one that cannot be read are kept when the
/// job goes back to the queue, so the next attempt reads only the rest;
/// the finished indexing stores the rest with the image's state.
#[tokio::test]
async fn layers_read_before_a_failure_are_not_read_again() {
    use berth_storage::BlobStore;
    let h = Harness::new().await;
    let app = repo("team/app");
    let base = debian_layer(&[("libexample", "1.2-3")]);
    let files = layer(&[("srv/app", b"an application")]);
    let image = h
        .push_image(&app, &tag("v1"), "app", &[&base, &files])
        .await;
    let (base_digest, files_digest) = (&image.blobs[1], &image.blobs[2]);
    h.blobs.delete_blob(files_digest).await.unwrap();
    scan_on_push(&h.registry).run_once().await.unwrap();
    let workers = workers(&h.registry);
    assert_eq!(workers.run_once(10).await.unwrap(), 1);
    assert_eq!(workers.stats().failures.load(Ordering::SeqCst), 1);
    assert!(h.meta.layer_index(base_digest).await.unwrap().is_some());
    assert_eq!(h.meta.layer_index(files_digest).await.unwrap(), None);
    assert_eq!(workers.stats().layers_indexed.load(Ordering::SeqCst), 1);

    // The layer's bytes come back; the job, due again, reads only it.
    h.push_blob(&app, &files).await;
    h.advance(60);
    assert_eq!(workers.run_once(10).await.unwrap(), 1);
    assert_eq!(workers.stats().finished.load(Ordering::SeqCst), 1);
    assert_eq!(workers.stats().layers_indexed.load(Ordering::SeqCst), 2);
    assert!(h.meta.layer_index(files_digest).await.unwrap().is_some());
    let index = h.meta.image_index(&image.digest).await.unwrap().unwrap();
    assert_eq!(index.state, IndexState::Done);
    assert_eq!(index.layers, [base_digest.clone(), files_digest.clone()]);
}

#[tokio::test]
async fn a_namespace_policy_blocks_or_warns_on_pulls_of_vulnerable_images() {
    use berth_meta::{PolicyMode, PolicyRow};
    use berth_registry::advisor::PullVerdict;

    let h = Harness::new().await;
    let app = repo("team/app");
    let base = debian_layer(&[("libexample", "1.2-3"), ("toolexample", "0.9-1")]);
    let image = h.push_image(&app, &tag("v1"), "app", &[&base]).await;
    scan_on_push(&h.registry).run_once().await.unwrap();
    workers(&h.registry).run_once(10).await.unwrap();
    // A second image is queued, and no worker runs to index it.
    let unscanned = h
        .push_image(&app, &tag("new"), "new", &[b"not scanned yet".as_slice()])
        .await;
    scan_on_push(&h.registry).run_once().await.unwrap();
    h.registry
        .import_advisories(&actor(), &advisories())
        .await
        .unwrap();
    let v1 = berth_oci::Tag::parse("v1").unwrap();
    let new = berth_oci::Tag::parse("new").unwrap();
    let record = h
        .meta
        .manifest_by_digest(&app, &image.digest)
        .await
        .unwrap()
        .unwrap();
    let unscanned_record = h
        .meta
        .manifest_by_digest(&app, &unscanned.digest)
        .await
        .unwrap()
        .unwrap();
    let verdict = |tag: berth_oci::Tag, record: berth_meta::ManifestRecord| {
        let registry = h.registry.clone();
        let app = app.clone();
        async move {
            registry
                .pull_verdict(&app, Some(&tag), &record)
                .await
                .unwrap()
        }
    };
    assert_eq!(
        verdict(v1.clone(), record.clone()).await,
        PullVerdict::Allow
    );

    // Through the registry, as the API sets it: a policy set through this
    // node applies at once (its per-namespace cache is refreshed).
    let set = |mode, severity: &str, block_unscanned| {
        let registry = h.registry.clone();
        let policy = PolicyRow {
            namespace: "team".to_string(),
            mode,
            severity: severity.to_string(),
            block_unscanned,
            attach_sbom: true,
            updated_at: START,
        };
        async move {
            registry
                .set_vulnerability_policy(&actor(), &policy)
                .await
                .unwrap()
        }
    };
    // (mode, threshold, block unscanned) -> verdict on v1, on the unscanned image
    set(PolicyMode::Block, "high", false).await;
    let PullVerdict::Block(message) = verdict(v1.clone(), record.clone()).await else {
        panic!("a critical fixable finding is blocked at high");
    };
    assert!(
        message.contains("CVE-2099-0001 (critical) in libexample 1.2-3, fixed in 1.2-3+deb12u1"),
        "{message}"
    );
    assert!(
        message.contains("berth exemption add --scope team/app --issue CVE-2099-0001"),
        "{message}"
    );
    // The finding without a fix does not count.
    assert!(!message.contains("CVE-2099-0002"), "{message}");
    assert_eq!(
        verdict(new.clone(), unscanned_record.clone()).await,
        PullVerdict::Allow
    );

    set(PolicyMode::Block, "high", true).await;
    let PullVerdict::Block(message) = verdict(new.clone(), unscanned_record.clone()).await else {
        panic!("unscanned images are blocked when the policy says so");
    };
    assert!(message.contains("not been scanned"), "{message}");

    set(PolicyMode::Warn, "critical", false).await;
    assert!(matches!(
        verdict(v1.clone(), record.clone()).await,
        PullVerdict::Warn(_)
    ));

    // An exemption for the tag lifts the block.
    set(PolicyMode::Block, "any", false).await;
    h.meta
        .set_exemption(
            &berth_meta::Change::new(actor(), START),
            &ExemptionRow {
                scope: "team/app:v1".to_string(),
                advisory: "TEST-DEB-1".to_string(),
                reason: "patched in place".to_string(),
                author: "tester".to_string(),
                created_at: START,
                expires_at: None,
            },
        )
        .await
        .unwrap();
    assert_eq!(verdict(v1, record).await, PullVerdict::Allow);

    set(PolicyMode::Off, "any", true).await;
    assert_eq!(verdict(new, unscanned_record).await, PullVerdict::Allow);
}

/// Each indexed image gets its SBOM attached as an OCI referrer (a
/// CycloneDX document naming its packages, stored by `system:scanner`),
/// once however often it is indexed; a namespace whose policy turns SBOMs
/// off gets none.
#[tokio::test]
async fn indexed_images_get_their_sbom_attached_once_as_a_referrer() {
    use berth_meta::{PolicyMode, PolicyRow};
    use futures::TryStreamExt;

    const CYCLONEDX: &str = "application/vnd.cyclonedx+json";
    let h = Harness::new().await;
    let app = repo("team/app");
    let quiet = repo("quiet/app");
    let base = debian_layer(&[("libexample", "1.2-3")]);
    let image = h.push_image(&app, &tag("v1"), "app", &[&base]).await;
    let other = h.push_image(&quiet, &tag("v1"), "quiet", &[&base]).await;
    h.registry
        .set_vulnerability_policy(
            &actor(),
            &PolicyRow {
                namespace: "quiet".to_string(),
                mode: PolicyMode::Off,
                severity: "critical".to_string(),
                block_unscanned: false,
                attach_sbom: false,
                updated_at: START,
            },
        )
        .await
        .unwrap();
    scan_on_push(&h.registry).run_once().await.unwrap();
    let workers = workers(&h.registry);
    assert_eq!(workers.run_once(10).await.unwrap(), 2);

    let sboms = |repository: berth_oci::RepoName, digest: Digest| {
        let registry = h.registry.clone();
        async move {
            registry
                .referrers(&repository, &digest, Some(CYCLONEDX), None)
                .await
                .unwrap()
                .descriptors
                .iter()
                .map(|d| serde_json::from_slice::<serde_json::Value>(d).unwrap())
                .collect::<Vec<_>>()
        }
    };
    let attached = sboms(app.clone(), image.digest.clone()).await;
    assert_eq!(attached.len(), 1, "{attached:?}");
    assert_eq!(attached[0]["artifactType"], CYCLONEDX);
    assert!(attached[0]["annotations"]["io.berth.sbom.generator"]
        .as_str()
        .is_some_and(|g| g.starts_with("berth ")));
    assert!(sboms(quiet.clone(), other.digest.clone()).await.is_empty());

    // The artifact names the image as its subject; its layer is the
    // CycloneDX document of the image's packages.
    let sbom_digest = Digest::parse(attached[0]["digest"].as_str().unwrap()).unwrap();
    let manifest = h
        .registry
        .get_manifest(&app, &berth_oci::Reference::Digest(sbom_digest))
        .await
        .unwrap();
    let manifest: serde_json::Value = serde_json::from_slice(&manifest.payload).unwrap();
    assert_eq!(manifest["subject"]["digest"], image.digest.as_str());
    let document_digest = Digest::parse(manifest["layers"][0]["digest"].as_str().unwrap()).unwrap();
    let body = h
        .registry
        .read_blob(&app, &document_digest, None)
        .await
        .unwrap();
    let bytes: Vec<u8> = body
        .stream
        .map_ok(|chunk| chunk.to_vec())
        .try_concat()
        .await
        .unwrap();
    let document: serde_json::Value = serde_json::from_slice(&bytes).unwrap();
    assert_eq!(document["bomFormat"], "CycloneDX");
    let names: Vec<&str> = document["components"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|c| c["name"].as_str())
        .collect();
    assert!(names.contains(&"libexample"), "{names:?}");

    // Indexed again on request: still one SBOM.
    assert_eq!(
        h.registry
            .queue_scans(&[(app.clone(), image.digest.clone())], true)
            .await
            .unwrap(),
        1
    );
    assert_eq!(workers.run_once(10).await.unwrap(), 1);
    assert_eq!(sboms(app, image.digest).await.len(), 1);
}

/// The `vulnerabilities.changed` events since `from`, as (repository,
/// manifest, advisories named).
async fn verdict_changes(h: &Harness, from: i64) -> Vec<(String, String, serde_json::Value)> {
    use berth_meta::{EventCursor, EventKind, EventStore};
    let page = h
        .meta
        .read_events(&EventCursor::after(from), 1000)
        .await
        .unwrap();
    page.events
        .into_iter()
        .filter(|e| e.kind == EventKind::VulnerabilitiesChanged)
        .map(|e| {
            (
                e.repository.unwrap().to_string(),
                e.digest.unwrap().to_string(),
                e.detail["advisories"].clone(),
            )
        })
        .collect()
}

/// An import tells of exactly the indexed images whose findings it
/// changed, once per repository holding each, naming the advisories that
/// changed them: not of an advisory for another release, not of one
/// imported again unchanged; a withdrawal is a change too. No layer is
/// read again.
#[tokio::test]
async fn imports_tell_of_the_images_whose_findings_they_change() {
    use berth_meta::EventStore;
    let h = Harness::new().await;
    let app = repo("team/app");
    let copy = repo("team/copy");
    let other = repo("team/other");
    let base = debian_layer(&[("libexample", "1.2-3"), ("toolexample", "0.9-1")]);
    let unrelated = debian_layer(&[("zlib1g", "1:1.2.13.dfsg-1")]);
    let image = h.push_image(&app, &tag("v1"), "app", &[&base]).await;
    h.push_image(&copy, &tag("v1"), "app", &[&base]).await;
    h.push_image(&other, &tag("v1"), "other", &[&unrelated])
        .await;
    scan_on_push(&h.registry).run_once().await.unwrap();
    let workers = workers(&h.registry);
    assert_eq!(workers.run_once(10).await.unwrap(), 2);
    let layers_read = workers.stats().layers_indexed.load(Ordering::SeqCst);

    let from = h.meta.last_event_position().await.unwrap();
    h.registry
        .import_advisories(&actor(), &advisories())
        .await
        .unwrap();
    let digest = image.digest.to_string();
    let both = serde_json::json!(["TEST-DEB-1", "TEST-DEB-2"]);
    assert_eq!(
        verdict_changes(&h, from).await,
        vec![
            ("team/app".to_string(), digest.clone(), both.clone()),
            ("team/copy".to_string(), digest.clone(), both),
        ]
    );

    // The same records again, and a newer record for Debian 11: nothing
    // changes for a Debian 12 image.
    let from = h.meta.last_event_position().await.unwrap();
    let mut again = advisories();
    again[2].modified += time::Duration::days(1);
    let counts = h
        .registry
        .import_advisories(&actor(), &again)
        .await
        .unwrap();
    assert_eq!((counts.updated, counts.unchanged), (1, 2));
    assert_eq!(verdict_changes(&h, from).await, vec![]);

    // A newer TEST-DEB-1 with a later fix: the finding changes, and that
    // is told (the record as it was is compared, not the new one twice).
    let from = h.meta.last_event_position().await.unwrap();
    let mut newer = advisories().remove(0);
    newer.modified += time::Duration::days(1);
    let fixed = serde_json::json!("1.2-3+deb12u2");
    let mut record = serde_json::to_value(&newer).unwrap();
    let text = record
        .to_string()
        .replace("1.2-3+deb12u1", fixed.as_str().unwrap());
    record = serde_json::from_str(&text).unwrap();
    let newer: berth_scanner::Advisory = serde_json::from_value(record).unwrap();
    h.registry
        .import_advisories(&actor(), &[newer])
        .await
        .unwrap();
    let one = serde_json::json!(["TEST-DEB-1"]);
    assert_eq!(
        verdict_changes(&h, from).await,
        vec![
            ("team/app".to_string(), digest.clone(), one.clone()),
            ("team/copy".to_string(), digest.clone(), one),
        ]
    );

    // Withdrawn: the finding goes, and that is told.
    let mut withdrawn = advisories().remove(1);
    withdrawn.modified += time::Duration::days(1);
    withdrawn.withdrawn = Some(withdrawn.modified);
    let from = h.meta.last_event_position().await.unwrap();
    h.registry
        .import_advisories(&actor(), &[withdrawn])
        .await
        .unwrap();
    let gone = serde_json::json!(["TEST-DEB-2"]);
    assert_eq!(
        verdict_changes(&h, from).await,
        vec![
            ("team/app".to_string(), digest.clone(), gone.clone()),
            ("team/copy".to_string(), digest, gone),
        ]
    );
    assert_eq!(
        workers.stats().layers_indexed.load(Ordering::SeqCst),
        layers_read,
        "no layer was read again"
    );
}

/// A source for the sync tests: one OSV record at `GOOD` (with an ETag, and
/// "not modified" to a request naming it), an error anywhere else; counts
/// the fetches.
struct FakeSource {
    fetches: std::sync::atomic::AtomicUsize,
}

const GOOD: &str = "https://osv.example/npm/record.json";
const BAD: &str = "https://unreachable.example/all.zip";

#[async_trait::async_trait]
impl berth_registry::advisory_sync::AdvisoryFetcher for FakeSource {
    async fn fetch(
        &self,
        url: &str,
        validators: &berth_registry::advisory_sync::Validators,
    ) -> Result<berth_registry::advisory_sync::Fetched, String> {
        use berth_registry::advisory_sync::{Fetched, Validators};
        self.fetches.fetch_add(1, Ordering::SeqCst);
        if url != GOOD {
            return Err("connection refused".to_string());
        }
        if validators.etag.as_deref() == Some("\"v1\"") {
            return Ok(Fetched::NotModified);
        }
        let record = r#"{"id": "TEST-SYNC-1", "modified": "2026-01-01T00:00:00Z",
            "affected": [{"package": {"ecosystem": "npm", "name": "left-pad"},
              "ranges": [{"type": "ECOSYSTEM", "events": [{"introduced": "0"}, {"fixed": "1.3.0"}]}]}]}"#;
        Ok(Fetched::Body {
            bytes: record.as_bytes().to_vec(),
            validators: Validators {
                etag: Some("\"v1\"".to_string()),
                last_modified: None,
            },
        })
    }
}

/// The scheduled sync on two nodes sharing a database: while another node
/// holds the lease nothing is downloaded (and "sync now" is busy); a pass
/// syncs every due source, records a failure without stopping, and
/// releases the lease; a source is due once per interval whichever node
/// asks; the stored ETag makes the next download a "not modified".
#[tokio::test]
async fn the_sync_runs_on_one_node_at_a_time_once_per_interval() {
    use berth_meta::JobLeaseStore;
    use berth_registry::advisory_sync::{AdvisorySync, SYNC_JOB};
    let h = Harness::new().await;
    let node_b = Registry::with_clock(
        h.blobs.clone(),
        h.meta.clone(),
        berth_registry::RegistryConfig {
            node_name: "node-b".to_string(),
            ..support::config()
        },
        berth_registry::Clock::Fixed(h.clock.clone()),
    );
    assert_ne!(h.registry.config().node_name, "node-b");
    let source = Arc::new(FakeSource {
        fetches: Default::default(),
    });
    let urls = vec![GOOD.to_string(), BAD.to_string()];
    let hour = std::time::Duration::from_secs(3600);
    let a = AdvisorySync::new(h.registry.clone(), source.clone(), urls.clone(), hour);
    let b = AdvisorySync::new(node_b, source.clone(), urls, hour);
    let fetches = || source.fetches.load(Ordering::SeqCst);

    // Node B holds the lease (a pass of its own): node A waits.
    assert!(h
        .meta
        .acquire_job_lease(SYNC_JOB, "node-b", h.now(), 3600)
        .await
        .unwrap());
    assert_eq!(a.sync_due().await.unwrap(), vec![]);
    assert!(matches!(
        a.sync_now().await,
        Err(berth_registry::RegistryError::AdvisorySyncBusy)
    ));
    assert_eq!(fetches(), 0);
    h.meta.release_job_lease(SYNC_JOB, "node-b").await.unwrap();

    let outcomes = a.sync_due().await.unwrap();
    assert_eq!(fetches(), 2);
    assert_eq!(outcomes[0].changed, Some(1));
    assert_eq!(outcomes[1].error.as_deref(), Some("connection refused"));
    assert_eq!(h.registry.advisory_data().await.unwrap().count, 1);
    // Released after the pass.
    assert!(h
        .meta
        .acquire_job_lease(SYNC_JOB, "someone", h.now(), 1)
        .await
        .unwrap());
    h.meta.release_job_lease(SYNC_JOB, "someone").await.unwrap();

    // Nothing is due before the interval ends, on either node.
    h.advance(3599);
    assert_eq!(a.sync_due().await.unwrap(), vec![]);
    assert_eq!(b.sync_due().await.unwrap(), vec![]);
    assert_eq!(fetches(), 2);

    // Then node B syncs both; the good source answers "not modified".
    h.advance(1);
    let outcomes = b.sync_due().await.unwrap();
    assert_eq!(fetches(), 4);
    assert!(outcomes[0].not_modified);
    assert_eq!(outcomes[0].changed, Some(0));
    let status = a.status().await.unwrap();
    assert_eq!(status[0].last_success_at, Some(h.now()));
    assert_eq!(status[0].etag.as_deref(), Some("\"v1\""));
    assert_eq!(status[1].last_success_at, None);
    assert_eq!(status[1].last_attempt_at, Some(h.now()));
    assert_eq!(status[1].last_error.as_deref(), Some("connection refused"));
}

/// An image indexed before the store kept package keys (simulated: its
/// keys forgotten) is invisible to new advisories until the workers'
/// backfill records its keys from the stored layer indexes, without
/// reading a layer or changing its state; then an import tells of it.
/// An image whose layer index is gone is queued to be indexed again.
#[tokio::test]
async fn images_indexed_before_package_keys_become_assessable_again() {
    use berth_meta::EventStore;
    let h = Harness::new().await;
    let app = repo("team/app");
    let base = debian_layer(&[("libexample", "1.2-3"), ("toolexample", "0.9-1")]);
    let image = h.push_image(&app, &tag("v1"), "app", &[&base]).await;
    scan_on_push(&h.registry).run_once().await.unwrap();
    let workers = workers(&h.registry);
    assert_eq!(workers.run_once(10).await.unwrap(), 1);
    let layers_read = workers.stats().layers_indexed.load(Ordering::SeqCst);
    h.meta.forget_image_packages(&image.digest).await.unwrap();

    // Before the backfill, an import that affects the image cannot tell.
    let mut records = advisories();
    let from = h.meta.last_event_position().await.unwrap();
    h.registry
        .import_advisories(&actor(), &records[..1])
        .await
        .unwrap();
    assert_eq!(verdict_changes(&h, from).await, vec![]);

    // The backfill records the image's keys (no layer read, still done).
    assert_eq!(workers.run_once(10).await.unwrap(), 0);
    assert_eq!(
        workers.stats().layers_indexed.load(Ordering::SeqCst),
        layers_read
    );
    let row = h.meta.image_index(&image.digest).await.unwrap().unwrap();
    assert_eq!(row.state, IndexState::Done);
    assert_eq!(
        h.meta.images_without_package_keys(None, 10).await.unwrap(),
        vec![]
    );
    let from = h.meta.last_event_position().await.unwrap();
    records.truncate(2);
    h.registry
        .import_advisories(&actor(), &records[1..])
        .await
        .unwrap();
    assert_eq!(
        verdict_changes(&h, from).await,
        vec![(
            "team/app".to_string(),
            image.digest.to_string(),
            serde_json::json!(["TEST-DEB-2"])
        )]
    );

    // Without its layer's stored index, the image is indexed again.
    let other = h
        .push_image(&repo("team/other"), &tag("v1"), "other", &[&base])
        .await;
    scan_on_push(&h.registry).run_once().await.unwrap();
    assert_eq!(workers.run_once(10).await.unwrap(), 1);
    h.meta.forget_image_packages(&other.digest).await.unwrap();
    let row = h.meta.image_index(&other.digest).await.unwrap().unwrap();
    let mut backfill = berth_registry::advisor::Backfill::Start;
    h.meta.forget_layer_index(&row.layers[0]).await.unwrap();
    assert!(workers.backfill_step("test", &mut backfill).await.unwrap());
    assert_eq!(backfill, berth_registry::advisor::Backfill::Done);
    assert_eq!(
        h.meta
            .image_index(&other.digest)
            .await
            .unwrap()
            .unwrap()
            .state,
        IndexState::Queued
    );
}
