//! Fills a data directory's SQLite metadata store with many repositories
//! and images, for the management API's listing benchmark (issue 12: with
//! 10,000 repositories and 100,000 images, an image-list page within 10 ms
//! of server time, p99 within 20 ms under 64 concurrent clients).
//!
//! ```sh
//! cargo run --release -p berth-registry --example listing_fixture -- \
//!     --data-dir /tmp/listing --repositories 10000 --images 100000
//! ```
//!
//! `bench/listing.sh` runs it, then serves the directory with `berth serve
//! --auth` and measures with `berth-bench --scenario api_listing`. The
//! images are written through the metadata contract (as a push writes
//! them: links, manifests, tags, events), with their configurations'
//! facts already stored as after a first listing, so the blob store is
//! never read; pull counts are recorded as the statistics flush does.
//! Repositories are spread over 100 namespaces; sizes, push times and pull
//! counts vary so that every sort order has work to do.
//!
//! For the console's page timings (issue 14: 100,000 tags), `--tags-per-image
//! N` gives each tagged image N tags, and `--findings-every N` stores
//! vulnerability finding counts for every N-th image, as the scan workers
//! would (`bench/console.sh`).

use std::path::PathBuf;
use std::time::Instant;

use berth_meta::sqlite::SqliteMetaStore;
use berth_meta::{
    Actor, BlobLinkStore, Change, FindingCountStore, ImageFindings, ImageStore, ManifestRecord,
    ManifestStore, NewManifest, PullCount, PullStatsStore, SeverityCounts,
};
use berth_oci::{Algorithm, RepoName, Tag};

const NOW: i64 = 1_800_000_000;

fn arg(name: &str) -> Option<String> {
    let args: Vec<String> = std::env::args().collect();
    args.iter()
        .position(|a| a == name)
        .and_then(|at| args.get(at + 1))
        .cloned()
}

fn number(name: &str, default: usize) -> usize {
    arg(name).map_or(default, |value| value.parse().expect("a number"))
}

#[tokio::main]
async fn main() {
    let data_dir = PathBuf::from(arg("--data-dir").expect("--data-dir DIR"));
    let repositories = number("--repositories", 10_000).max(1);
    let images = number("--images", 100_000);
    let tags_per_image = number("--tags-per-image", 1).max(1);
    let findings_every = number("--findings-every", 0);
    std::fs::create_dir_all(&data_dir).unwrap();
    let meta = SqliteMetaStore::open(&data_dir.join("berth.db"))
        .await
        .unwrap();
    let started = Instant::now();
    let config = Algorithm::Sha256.digest_of(b"listing fixture config");
    let mut pulls = Vec::new();
    for i in 0..images {
        let r = i % repositories;
        let repository =
            RepoName::parse(&format!("ns-{:02}/app-{r:05}", r % 100)).expect("a valid name");
        let change = Change::new(Actor::system("listing-fixture"), NOW - (images - i) as i64);
        // Each image has its own layer, of a size that varies per image.
        let layer = Algorithm::Sha256.digest_of(format!("layer {i}").as_bytes());
        let layer_size = 1_000 + (i as u64 * 7_919) % 1_000_000;
        if i < repositories {
            meta.link_blob(&change, &repository, &config, 500)
                .await
                .unwrap();
        }
        meta.link_blob(&change, &repository, &layer, layer_size)
            .await
            .unwrap();
        let payload = format!(
            r#"{{"schemaVersion":2,"mediaType":"application/vnd.oci.image.manifest.v1+json","config":{{"mediaType":"application/vnd.oci.image.config.v1+json","digest":"{config}","size":500}},"layers":[{{"mediaType":"application/vnd.oci.image.layer.v1.tar+gzip","digest":"{layer}","size":{layer_size}}}]}}"#
        );
        let record = ManifestRecord {
            digest: Algorithm::Sha256.digest_of(payload.as_bytes()),
            media_type: "application/vnd.oci.image.manifest.v1+json".to_string(),
            artifact_type: None,
            subject: None,
            annotations: None,
            payload: payload.into_bytes(),
        };
        let digest = record.digest.clone();
        let manifest = NewManifest {
            record,
            blobs: vec![config.clone(), layer],
            blob_sizes: Vec::new(),
            children: Vec::new(),
        };
        // Four images in five are tagged.
        let tag = (i % 5 != 0).then(|| Tag::parse(&format!("v{}", i / repositories)).unwrap());
        meta.put_manifest(&change, &repository, &manifest, tag.as_ref())
            .await
            .unwrap();
        if let Some(tag) = &tag {
            // More tags on the same image: putting it again only adds the tag.
            for k in 1..tags_per_image {
                let extra = Tag::parse(&format!("{tag}-{k}")).unwrap();
                meta.put_manifest(&change, &repository, &manifest, Some(&extra))
                    .await
                    .unwrap();
            }
        }
        if findings_every > 0 && i % findings_every == 0 {
            let n = i as u64;
            meta.record_image_findings(&ImageFindings {
                repository: repository.clone(),
                manifest: digest.clone(),
                generation: 0,
                counts: SeverityCounts {
                    critical: n % 3,
                    high: n % 5,
                    medium: n % 7,
                    low: 1,
                    unknown: 0,
                },
                assessed_at: NOW,
            })
            .await
            .unwrap();
        }
        let created = time::OffsetDateTime::from_unix_timestamp(NOW - 86_400 - i as i64 * 60)
            .unwrap()
            .format(&time::format_description::well_known::Rfc3339)
            .unwrap();
        meta.set_image_facts(
            &repository,
            &digest,
            &format!(
                r#"{{"created":"{created}","platform":{{"os":"linux","architecture":"amd64"}}}}"#
            ),
        )
        .await
        .unwrap();
        if i % 3 == 0 {
            pulls.push(PullCount {
                repository,
                digest,
                pulls: (i as u64 * 31) % 1_000,
                last_pulled_at: NOW - (i as i64 % 86_400),
                actor: berth_meta::Actor::anonymous(),
                warning: None,
            });
        }
        if pulls.len() == 1_000 {
            meta.record_pulls(&pulls, false).await.unwrap();
            pulls.clear();
        }
        if (i + 1) % 10_000 == 0 {
            eprintln!("{} images, {:.0} s", i + 1, started.elapsed().as_secs_f64());
        }
    }
    meta.record_pulls(&pulls, false).await.unwrap();
    println!(
        "{images} images in {repositories} repositories written in {:.1} s",
        started.elapsed().as_secs_f64()
    );
}
