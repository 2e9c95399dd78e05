//! End to end with ORAS (`oras` from PyPI, the oras-py SDK, which has no
//! command line of its own): artifacts pushed with an artifact type, one
//! chunked; artifacts attached to an image with `subject`; discovery
//! through the referrers API with and without an `artifactType` filter;
//! and pulls compared byte for byte.
//!
//! oras-py is driven by a small Python script that the test writes to a
//! temp dir, one subcommand per step, printing JSON for the test to check.

mod support;

use std::path::Path;
use std::process::Command;

use serde_json::{json, Value};
use support::oci::{
    make_image, random_bytes, sha256_digest, unique_repo, OCI_EMPTY, OCI_INDEX, OCI_MANIFEST,
};
use support::registry_http::RegistryHttp;
use support::{require_python_module, run, TestRegistry};

/// The artifact type of the standalone SBOM, given the pre-1.1 ORAS way:
/// as the media type of the manifest's config.
const SBOM_TYPE: &str = "application/vnd.berth.test.sbom.v1+json";
/// The artifact type of the signature that refers to the image, again as
/// the config media type (what `oras-py`'s `push` can express).
const SIGNATURE_TYPE: &str = "application/vnd.berth.test.signature.v1+json";
/// The artifact type of the attestation that refers to the image, given the
/// image-spec 1.1 way: an explicit `artifactType` with the empty config.
const ATTESTATION_TYPE: &str = "application/vnd.berth.test.attestation.v1+json";

const SCRIPT: &str = r#"
import json, os, sys
import oras.client, oras.oci, oras.defaults

command, addr, target = sys.argv[1], sys.argv[2], sys.argv[3]
client = oras.client.OrasClient(hostname=addr, insecure=True)

def reply(response):
    # The manifest PUT's answer is what the test checks: status, digest and
    # the OCI-Subject header a registry sends when it processed a subject.
    print(json.dumps({
        "status": response.status_code,
        "digest": response.headers.get("Docker-Content-Digest"),
        "subject": response.headers.get("OCI-Subject"),
        "location": response.headers.get("Location"),
    }))

if command == "push":
    # argv: files (path:mediaType, relative to the working directory), the
    # config (path:mediaType), chunked or not, then an optional subject as
    # mediaType,digest,size.
    files = sys.argv[4].split(",")
    subject = None
    if len(sys.argv) > 7:
        media_type, digest, size = sys.argv[7].split(",")
        subject = oras.oci.Subject(mediaType=media_type, digest=digest, size=int(size))
    reply(client.push(
        target=target,
        files=files,
        manifest_config=sys.argv[5],
        manifest_annotations={"org.berth.test.pushed-by": "oras-py"},
        subject=subject,
        do_chunked=sys.argv[6] == "chunked",
        chunk_size=64 * 1024,
        quiet=True,
    ))
elif command == "push-artifact":
    # An image-spec 1.1 artifact: explicit artifactType, the empty config,
    # one layer, a subject; assembled from oras-py's own upload steps
    # because its push() has no artifactType parameter.
    path, media_type, artifact_type = sys.argv[4], sys.argv[5], sys.argv[6]
    subject_type, subject_digest, subject_size = sys.argv[7].split(",")
    container = client.get_container(target)
    layer = oras.oci.NewLayer(path, media_type=media_type)
    layer["annotations"] = {oras.defaults.annotation_title: os.path.basename(path)}
    response = client.upload_blob(path, container, layer)
    assert response.status_code in (200, 201, 202), response.status_code
    with open("empty.json", "w") as f:
        f.write("{}")
    config = {"mediaType": "application/vnd.oci.empty.v1+json", "digest": oras.defaults.blank_config_hash, "size": 2}
    response = client.upload_blob("empty.json", container, config)
    assert response.status_code in (200, 201, 202), response.status_code
    manifest = oras.oci.NewManifest()
    manifest["mediaType"] = "application/vnd.oci.image.manifest.v1+json"
    manifest["artifactType"] = artifact_type
    manifest["config"] = config
    manifest["layers"] = [layer]
    manifest["subject"] = {"mediaType": subject_type, "digest": subject_digest, "size": int(subject_size)}
    manifest["annotations"] = {"org.berth.test.pushed-by": "oras-py"}
    reply(client.upload_manifest(manifest, container))
elif command == "pull":
    files = client.pull(target=target, outdir=sys.argv[4])
    print(json.dumps({"files": sorted(os.path.basename(f) for f in files)}))
elif command == "tags":
    print(json.dumps({"tags": client.get_tags(target)}))
else:
    sys.exit("unknown command " + command)
"#;

struct Oras {
    python: std::path::PathBuf,
    /// Holds the script, the files pushed and the files pulled.
    work: tempfile::TempDir,
    addr: String,
}

impl Oras {
    fn new(python: std::path::PathBuf, addr: &str) -> Oras {
        let work = tempfile::tempdir().unwrap();
        std::fs::write(work.path().join("oras_driver.py"), SCRIPT).unwrap();
        Oras {
            python,
            work,
            addr: addr.to_string(),
        }
    }

    fn dir(&self) -> &Path {
        self.work.path()
    }

    fn write(&self, name: &str, bytes: &[u8]) {
        std::fs::write(self.dir().join(name), bytes).unwrap();
    }

    /// Runs one subcommand of the driver and parses its JSON output.
    fn run(&self, args: &[&str]) -> Value {
        let out = run(Command::new(&self.python)
            .arg(self.dir().join("oras_driver.py"))
            .args(&args[..1])
            .arg(&self.addr)
            .args(&args[1..])
            .current_dir(self.dir()));
        serde_json::from_str(out.trim().lines().last().unwrap_or_default())
            .unwrap_or_else(|e| panic!("oras driver printed no JSON ({e}): {out}"))
    }
}

/// Reads a manifest back by digest and checks that its bytes hash to it.
fn manifest_by_digest(http: &RegistryHttp, repo: &str, digest: &str) -> (Vec<u8>, Value) {
    let reply = http
        .get_manifest(repo, digest)
        .expect_status(200, "GET artifact manifest");
    assert_eq!(
        sha256_digest(&reply.body),
        digest,
        "manifest bytes do not hash to their digest"
    );
    let json = reply.json();
    (reply.body, json)
}

#[test]
fn oras_pushes_artifacts_attaches_referrers_and_pulls_them_back() {
    let Some(python) = require_python_module(
        "oras",
        "oras_pushes_artifacts_attaches_referrers_and_pulls_them_back",
    ) else {
        return;
    };
    let registry = TestRegistry::start();
    let http = RegistryHttp::new(&registry.addr);
    let oras = Oras::new(python, &registry.addr);
    let repo = unique_repo("oras");
    let target = |reference: &str| format!("{}/{repo}{reference}", registry.addr);

    // A standalone artifact: an SBOM, pushed in 64 KiB chunks (the file is
    // larger than one chunk and not a multiple of it).
    let sbom = random_bytes(200 * 1024 + 17);
    oras.write("sbom.spdx.json", &sbom);
    oras.write("sbom-config.json", br#"{"generator":"berth e2e"}"#);
    let pushed = oras.run(&[
        "push",
        &target(":sbom"),
        "sbom.spdx.json:application/spdx+json",
        &format!("sbom-config.json:{SBOM_TYPE}"),
        "chunked",
    ]);
    assert_eq!(pushed["status"], 201, "{pushed}");
    let sbom_digest = pushed["digest"]
        .as_str()
        .expect("Docker-Content-Digest on manifest PUT")
        .to_string();
    let (_, sbom_manifest) = manifest_by_digest(&http, &repo, &sbom_digest);
    assert_eq!(sbom_manifest["config"]["mediaType"], SBOM_TYPE);
    assert_eq!(
        sbom_manifest["layers"][0]["digest"],
        sha256_digest(&sbom).as_str()
    );

    // The subject: an ordinary image.
    let image = make_image("amd64", &[4096], &[]);
    http.push_image(&repo, "v1", &image);
    let subject = format!(
        "{OCI_MANIFEST},{},{}",
        image.manifest.digest,
        image.manifest.bytes.len()
    );

    // Two artifacts refer to it: a signature through oras-py's `push`
    // (artifact type as config media type, monolithic upload) and an
    // attestation with an explicit `artifactType`.
    let signature = b"signature of the image, by berth e2e\n".to_vec();
    oras.write("image.sig", &signature);
    oras.write("signature-config.json", br#"{"signer":"berth e2e"}"#);
    let pushed = oras.run(&[
        "push",
        &target(":signature"),
        "image.sig:application/vnd.berth.test.sig",
        &format!("signature-config.json:{SIGNATURE_TYPE}"),
        "monolithic",
        &subject,
    ]);
    assert_eq!(pushed["status"], 201, "{pushed}");
    let signature_digest = pushed["digest"].as_str().unwrap().to_string();
    // OCI-Subject tells the client the registry indexed the subject, so it
    // need not maintain the referrers tag schema itself.
    assert_eq!(
        pushed["subject"],
        image.manifest.digest.as_str(),
        "OCI-Subject header"
    );

    let attestation = br#"{"predicateType":"https://berth.test/e2e","subject":[]}"#.to_vec();
    oras.write("attestation.json", &attestation);
    let pushed = oras.run(&[
        "push-artifact",
        &target(":attestation"),
        "attestation.json",
        "application/vnd.in-toto+json",
        ATTESTATION_TYPE,
        &subject,
    ]);
    assert_eq!(pushed["status"], 201, "{pushed}");
    let attestation_digest = pushed["digest"].as_str().unwrap().to_string();
    assert_eq!(
        pushed["subject"],
        image.manifest.digest.as_str(),
        "OCI-Subject header"
    );
    let (attestation_bytes, attestation_manifest) =
        manifest_by_digest(&http, &repo, &attestation_digest);
    assert_eq!(attestation_manifest["artifactType"], ATTESTATION_TYPE);
    assert_eq!(attestation_manifest["config"]["mediaType"], OCI_EMPTY);
    let (signature_bytes, _) = manifest_by_digest(&http, &repo, &signature_digest);

    // Discovery: both referrers, each described by its manifest's media
    // type, digest, size, annotations, and artifact type (the explicit one,
    // else the config media type). The standalone SBOM is not a referrer.
    let reply = http
        .referrers(&repo, &image.manifest.digest, None)
        .expect_status(200, "referrers");
    assert_eq!(reply.header("content-type").as_deref(), Some(OCI_INDEX));
    let index = reply.json();
    assert_eq!(index["schemaVersion"], 2);
    assert_eq!(index["mediaType"], OCI_INDEX);
    let mut listed: Vec<Value> = index["manifests"].as_array().expect("manifests").clone();
    listed.sort_by_key(|d| d["digest"].as_str().unwrap().to_string());
    let annotations = json!({ "org.berth.test.pushed-by": "oras-py" });
    let mut expected = vec![
        json!({
            "mediaType": OCI_MANIFEST,
            "digest": signature_digest,
            "size": signature_bytes.len(),
            "artifactType": SIGNATURE_TYPE,
            "annotations": annotations,
        }),
        json!({
            "mediaType": OCI_MANIFEST,
            "digest": attestation_digest,
            "size": attestation_bytes.len(),
            "artifactType": ATTESTATION_TYPE,
            "annotations": annotations,
        }),
    ];
    expected.sort_by_key(|d| d["digest"].as_str().unwrap().to_string());
    assert_eq!(listed, expected);

    // Filtered by artifact type, with the header saying the filter applied.
    let reply = http
        .referrers(&repo, &image.manifest.digest, Some(ATTESTATION_TYPE))
        .expect_status(200, "filtered");
    assert_eq!(
        reply.header("oci-filters-applied").as_deref(),
        Some("artifactType")
    );
    let filtered = reply.json();
    let digests: Vec<&str> = filtered["manifests"]
        .as_array()
        .unwrap()
        .iter()
        .map(|d| d["digest"].as_str().unwrap())
        .collect();
    assert_eq!(digests, [attestation_digest.as_str()]);
    let reply = http
        .referrers(
            &repo,
            &image.manifest.digest,
            Some("application/vnd.berth.none"),
        )
        .expect_status(200, "none");
    assert_eq!(reply.json()["manifests"], json!([]));

    // Pull the standalone artifact by tag and a referrer by digest: the
    // files come back under their titles with identical bytes.
    let out = oras.dir().join("pulled-sbom");
    let pulled = oras.run(&["pull", &target(":sbom"), out.to_str().unwrap()]);
    assert_eq!(pulled["files"], json!(["sbom.spdx.json"]));
    assert!(
        std::fs::read(out.join("sbom.spdx.json")).unwrap() == sbom,
        "pulled SBOM differs"
    );
    let out = oras.dir().join("pulled-signature");
    let pulled = oras.run(&[
        "pull",
        &target(&format!("@{signature_digest}")),
        out.to_str().unwrap(),
    ]);
    assert_eq!(pulled["files"], json!(["image.sig"]));
    assert!(
        std::fs::read(out.join("image.sig")).unwrap() == signature,
        "pulled signature differs"
    );
    let out = oras.dir().join("pulled-attestation");
    oras.run(&["pull", &target(":attestation"), out.to_str().unwrap()]);
    assert!(
        std::fs::read(out.join("attestation.json")).unwrap() == attestation,
        "pulled attestation differs"
    );

    let mut tags: Vec<String> = oras.run(&["tags", &target("")])["tags"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t.as_str().unwrap().to_string())
        .collect();
    tags.sort();
    assert_eq!(tags, ["attestation", "sbom", "signature", "v1"]);
}
