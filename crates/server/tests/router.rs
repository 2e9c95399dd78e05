//! Router tests: the whole `/v2` API driven through `app(state).oneshot(...)`,
//! without sockets, on the real filesystem and SQLite backends in a temp dir.

use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::Arc;

use axum::body::Body;
use axum::http::{Request, StatusCode};
use axum::response::Response;
use berth_meta::sqlite::SqliteMetaStore;
use berth_oci::{Algorithm, Digest};
use berth_registry::{Clock, Registry, RegistryConfig};
use berth_server::{app, AppState};
use berth_storage::fs::FsBlobStore;
use http_body_util::BodyExt;
use tower::ServiceExt;

const OCI_MANIFEST: &str = "application/vnd.oci.image.manifest.v1+json";
const OCI_INDEX: &str = "application/vnd.oci.image.index.v1+json";
const DOCKER_MANIFEST: &str = "application/vnd.docker.distribution.manifest.v2+json";

struct Harness {
    _dir: tempfile::TempDir,
    state: AppState,
    clock: Arc<AtomicI64>,
}

impl Harness {
    async fn new() -> Harness {
        Harness::with_config(RegistryConfig::default()).await
    }

    async fn with_config(config: RegistryConfig) -> Harness {
        let dir = tempfile::tempdir().unwrap();
        let blobs = FsBlobStore::open(dir.path().join("data")).unwrap();
        let meta = SqliteMetaStore::open(&dir.path().join("berth.db"))
            .await
            .unwrap();
        let clock = Arc::new(AtomicI64::new(1_700_000_000));
        let registry = Registry::with_clock(
            Arc::new(blobs),
            Arc::new(meta),
            config,
            Clock::Fixed(clock.clone()),
        );
        Harness {
            _dir: dir,
            state: AppState::new(registry),
            clock,
        }
    }

    async fn send(&self, request: Request<Body>) -> Response {
        app(self.state.clone()).oneshot(request).await.unwrap()
    }

    async fn call(
        &self,
        method: &str,
        uri: &str,
        headers: &[(&str, &str)],
        body: Vec<u8>,
    ) -> (Response, Vec<u8>) {
        let mut builder = Request::builder().method(method).uri(uri);
        for (k, v) in headers {
            builder = builder.header(*k, *v);
        }
        let request = builder
            .header("content-length", body.len())
            .body(Body::from(body))
            .unwrap();
        let response = self.send(request).await;
        let (parts, body) = response.into_parts();
        let bytes = body.collect().await.unwrap().to_bytes().to_vec();
        (Response::from_parts(parts, Body::empty()), bytes)
    }

    async fn push_blob(&self, repo: &str, data: &[u8]) -> Digest {
        let digest = Algorithm::Sha256.digest_of(data);
        let (r, _) = self
            .call(
                "POST",
                &format!("/v2/{repo}/blobs/uploads/?digest={digest}"),
                &[],
                data.to_vec(),
            )
            .await;
        assert_eq!(r.status(), StatusCode::CREATED);
        digest
    }

    async fn push_manifest(
        &self,
        repo: &str,
        reference: &str,
        media_type: &str,
        body: &[u8],
    ) -> Response {
        self.call(
            "PUT",
            &format!("/v2/{repo}/manifests/{reference}"),
            &[("content-type", media_type)],
            body.to_vec(),
        )
        .await
        .0
    }
}

fn header<'a>(r: &'a Response, name: &str) -> &'a str {
    r.headers()
        .get(name)
        .map(|v| v.to_str().unwrap())
        .unwrap_or("")
}

fn error_code(body: &[u8]) -> String {
    let v: serde_json::Value =
        serde_json::from_slice(body).unwrap_or_else(|_| panic!("not JSON: {body:?}"));
    v["errors"][0]["code"].as_str().unwrap().to_string()
}

fn image_manifest(
    config: &Digest,
    config_size: usize,
    layers: &[(&Digest, usize)],
    extra: &str,
) -> Vec<u8> {
    let layers: Vec<String> = layers
        .iter()
        .map(|(d, s)| format!(r#"{{"mediaType":"application/vnd.oci.image.layer.v1.tar+gzip","digest":"{d}","size":{s}}}"#))
        .collect();
    format!(
        r#"{{"schemaVersion":2,"mediaType":"{OCI_MANIFEST}","config":{{"mediaType":"application/vnd.oci.image.config.v1+json","digest":"{config}","size":{config_size}}},"layers":[{}]{extra}}}"#,
        layers.join(",")
    )
    .into_bytes()
}

/// Pushes a config and one layer and returns a manifest referencing them.
async fn simple_image(h: &Harness, repo: &str, seed: &str) -> Vec<u8> {
    let config = format!("{{\"seed\":\"{seed}\"}}");
    let layer = format!("layer-{seed}");
    let c = h.push_blob(repo, config.as_bytes()).await;
    let l = h.push_blob(repo, layer.as_bytes()).await;
    image_manifest(&c, config.len(), &[(&l, layer.len())], "")
}

#[tokio::test]
async fn base_endpoint_and_version_header() {
    let h = Harness::new().await;
    for path in ["/v2/", "/v2"] {
        let (r, body) = h.call("GET", path, &[], vec![]).await;
        assert_eq!(r.status(), StatusCode::OK, "{path}");
        assert_eq!(
            header(&r, "docker-distribution-api-version"),
            "registry/2.0"
        );
        assert_eq!(body, b"{}");
        assert!(
            !header(&r, "x-request-id").is_empty(),
            "every response carries a request id"
        );
    }
}

/// A client's `x-request-id` is kept (and echoed) only when it is at most 64
/// bytes of letters, digits and `-_.:`; anything else, which would go into
/// text logs verbatim (log forging, 60 KB ids), is replaced by a fresh id.
#[tokio::test]
async fn request_ids_are_kept_only_when_short_and_plain() {
    let h = Harness::new().await;
    let longest = "a".repeat(64);
    let kept: &[&[u8]] = &[
        b"req-1",
        b"0b0f6a8e-3c39-4d4e-9f0c-2f4a3c1f8d10",
        b"trace.id_7:x",
        longest.as_bytes(),
    ];
    let too_long = "a".repeat(65);
    let huge = "x".repeat(60_000);
    let replaced: &[&[u8]] = &[
        too_long.as_bytes(),
        huge.as_bytes(),
        b"has space",
        b"tab\tinside",
        b"quote\"d",
        b"id method=DELETE",
        b"caf\xc3\xa9",
        b"",
    ];
    let send = |id: &[u8]| {
        let request = Request::builder()
            .uri("/v2/")
            .header(
                "x-request-id",
                axum::http::HeaderValue::from_bytes(id).unwrap(),
            )
            .body(Body::empty())
            .unwrap();
        h.send(request)
    };
    for id in kept {
        let r = send(id).await;
        assert_eq!(header(&r, "x-request-id").as_bytes(), *id);
    }
    for id in replaced {
        let r = send(id).await;
        let echoed = header(&r, "x-request-id");
        assert_ne!(echoed.as_bytes(), *id);
        assert_eq!(echoed.len(), 36, "a generated UUID: {echoed}");
        assert!(
            echoed.bytes().all(|b| b.is_ascii_hexdigit() || b == b'-'),
            "{echoed}"
        );
    }
}

#[tokio::test]
async fn monolithic_blob_push_head_get_and_wrong_digest() {
    let h = Harness::new().await;
    let data = b"hello blob".to_vec();
    let digest = Algorithm::Sha256.digest_of(&data);
    let (r, _) = h
        .call(
            "POST",
            &format!("/v2/a/b/blobs/uploads/?digest={digest}"),
            &[],
            data.clone(),
        )
        .await;
    assert_eq!(r.status(), StatusCode::CREATED);
    assert_eq!(header(&r, "location"), format!("/v2/a/b/blobs/{digest}"));
    assert_eq!(header(&r, "docker-content-digest"), digest.as_str());

    let (r, body) = h
        .call("HEAD", &format!("/v2/a/b/blobs/{digest}"), &[], vec![])
        .await;
    assert_eq!(r.status(), StatusCode::OK);
    assert_eq!(header(&r, "content-length"), data.len().to_string());
    assert_eq!(header(&r, "docker-content-digest"), digest.as_str());
    assert!(body.is_empty());

    let (r, body) = h
        .call("GET", &format!("/v2/a/b/blobs/{digest}"), &[], vec![])
        .await;
    assert_eq!(r.status(), StatusCode::OK);
    assert_eq!(body, data);

    // A body that does not match its digest is refused and never visible.
    let wrong = Algorithm::Sha256.digest_of(b"something else");
    let (r, body) = h
        .call(
            "POST",
            &format!("/v2/a/b/blobs/uploads/?digest={wrong}"),
            &[],
            data.clone(),
        )
        .await;
    assert_eq!(r.status(), StatusCode::BAD_REQUEST);
    assert_eq!(error_code(&body), "DIGEST_INVALID");
    let (r, body) = h
        .call("GET", &format!("/v2/a/b/blobs/{wrong}"), &[], vec![])
        .await;
    assert_eq!(r.status(), StatusCode::NOT_FOUND);
    assert_eq!(error_code(&body), "BLOB_UNKNOWN");
}

#[tokio::test]
async fn chunked_upload_with_out_of_order_chunk_status_and_finish() {
    let h = Harness::new().await;
    let data: Vec<u8> = (0..30u8).collect();
    let digest = Algorithm::Sha256.digest_of(&data);
    let (r, _) = h.call("POST", "/v2/repo/blobs/uploads/", &[], vec![]).await;
    assert_eq!(r.status(), StatusCode::ACCEPTED);
    let location = header(&r, "location").to_string();
    assert!(location.starts_with("/v2/repo/blobs/uploads/"));
    assert_eq!(header(&r, "range"), "0-0");
    assert!(!header(&r, "docker-upload-uuid").is_empty());

    let (r, _) = h
        .call(
            "PATCH",
            &location,
            &[
                ("content-range", "0-9"),
                ("content-type", "application/octet-stream"),
            ],
            data[..10].to_vec(),
        )
        .await;
    assert_eq!(r.status(), StatusCode::ACCEPTED);
    assert_eq!(header(&r, "range"), "0-9");

    // A chunk that does not continue where the upload ends is refused with 416.
    let (r, body) = h
        .call(
            "PATCH",
            &location,
            &[("content-range", "5-14")],
            data[5..15].to_vec(),
        )
        .await;
    assert_eq!(r.status(), StatusCode::RANGE_NOT_SATISFIABLE);
    assert_eq!(error_code(&body), "BLOB_UPLOAD_INVALID");
    assert_eq!(header(&r, "range"), "0-9");

    // A streamed chunk without Content-Range is appended.
    let (r, _) = h.call("PATCH", &location, &[], data[10..20].to_vec()).await;
    assert_eq!(r.status(), StatusCode::ACCEPTED);
    assert_eq!(header(&r, "range"), "0-19");

    let (r, _) = h.call("GET", &location, &[], vec![]).await;
    assert_eq!(r.status(), StatusCode::NO_CONTENT);
    assert_eq!(header(&r, "range"), "0-19");

    // The last chunk travels with the closing PUT.
    let (r, _) = h
        .call(
            "PUT",
            &format!("{location}?digest={digest}"),
            &[],
            data[20..].to_vec(),
        )
        .await;
    assert_eq!(r.status(), StatusCode::CREATED);
    assert_eq!(header(&r, "docker-content-digest"), digest.as_str());

    let (r, body) = h
        .call("GET", &format!("/v2/repo/blobs/{digest}"), &[], vec![])
        .await;
    assert_eq!(r.status(), StatusCode::OK);
    assert_eq!(body, data);

    let (r, body) = h.call("GET", &location, &[], vec![]).await;
    assert_eq!(r.status(), StatusCode::NOT_FOUND);
    assert_eq!(error_code(&body), "BLOB_UPLOAD_UNKNOWN");
}

/// A chunk whose `Content-Range` disagrees with the length of its body is
/// refused with 416 `BLOB_UPLOAD_INVALID`, whether the body is shorter or
/// longer, with or without `Content-Length`, and the session is left as it
/// was: the next correct chunk continues where the last good one ended.
#[tokio::test]
async fn chunk_length_must_match_its_content_range() {
    let h = Harness::new().await;
    let data: Vec<u8> = (0..40u8).collect();
    let digest = Algorithm::Sha256.digest_of(&data);
    let (r, _) = h.call("POST", "/v2/repo/blobs/uploads/", &[], vec![]).await;
    let location = header(&r, "location").to_string();
    let (r, _) = h
        .call(
            "PATCH",
            &location,
            &[("content-range", "0-9")],
            data[..10].to_vec(),
        )
        .await;
    assert_eq!(r.status(), StatusCode::ACCEPTED);

    // Bodies sent with Content-Length: shorter and longer than declared.
    for (range, body) in [("10-19", &data[10..15]), ("10-14", &data[10..20])] {
        let (r, answer) = h
            .call(
                "PATCH",
                &location,
                &[("content-range", range)],
                body.to_vec(),
            )
            .await;
        assert_eq!(r.status(), StatusCode::RANGE_NOT_SATISFIABLE, "{range}");
        assert_eq!(error_code(&answer), "BLOB_UPLOAD_INVALID", "{range}");
        assert_eq!(header(&r, "range"), "0-9", "{range}");
    }
    // The same, streamed without Content-Length.
    for (range, body) in [("10-19", &data[10..15]), ("10-14", &data[10..20])] {
        let chunks: Vec<Result<bytes::Bytes, std::io::Error>> = body
            .chunks(2)
            .map(|c| Ok(bytes::Bytes::copy_from_slice(c)))
            .collect();
        let request = Request::builder()
            .method("PATCH")
            .uri(&location)
            .header("content-range", range)
            .body(Body::from_stream(futures::stream::iter(chunks)))
            .unwrap();
        let r = h.send(request).await;
        assert_eq!(
            r.status(),
            StatusCode::RANGE_NOT_SATISFIABLE,
            "streamed {range}"
        );
    }
    let (r, _) = h.call("GET", &location, &[], vec![]).await;
    assert_eq!(header(&r, "range"), "0-9");

    // A closing PUT whose body disagrees with its Content-Range is refused too.
    let (r, _) = h
        .call(
            "PUT",
            &format!("{location}?digest={digest}"),
            &[("content-range", "10-39")],
            data[10..20].to_vec(),
        )
        .await;
    assert_eq!(r.status(), StatusCode::RANGE_NOT_SATISFIABLE);
    let (r, _) = h
        .call(
            "PATCH",
            &location,
            &[("content-range", "10-19")],
            data[10..20].to_vec(),
        )
        .await;
    assert_eq!(r.status(), StatusCode::ACCEPTED);
    assert_eq!(header(&r, "range"), "0-19");
    let (r, _) = h
        .call(
            "PUT",
            &format!("{location}?digest={digest}"),
            &[("content-range", "20-39")],
            data[20..].to_vec(),
        )
        .await;
    assert_eq!(r.status(), StatusCode::CREATED);
    let (_, body) = h
        .call("GET", &format!("/v2/repo/blobs/{digest}"), &[], vec![])
        .await;
    assert_eq!(body, data);
}

/// Open upload sessions are capped per repository: the next start is
/// refused with 429 `TOOMANYREQUESTS` (monolithic pushes too, since they
/// open a session), other repositories are not affected, and finishing,
/// cancelling or letting sessions expire makes room again.
#[tokio::test]
async fn open_uploads_are_capped_per_repository() {
    let config = RegistryConfig {
        max_uploads_per_repository: 3,
        ..RegistryConfig::default()
    };
    let ttl = config.upload_ttl.as_secs() as i64;
    let h = Harness::with_config(config).await;
    let mut sessions = Vec::new();
    for _ in 0..3 {
        let (r, _) = h
            .call("POST", "/v2/capped/blobs/uploads/", &[], vec![])
            .await;
        assert_eq!(r.status(), StatusCode::ACCEPTED);
        sessions.push(header(&r, "location").to_string());
    }
    let (r, body) = h
        .call("POST", "/v2/capped/blobs/uploads/", &[], vec![])
        .await;
    assert_eq!(r.status(), StatusCode::TOO_MANY_REQUESTS);
    assert_eq!(error_code(&body), "TOOMANYREQUESTS");
    assert!(String::from_utf8_lossy(&body).contains("3 open upload sessions"));
    let data = b"monolithic".to_vec();
    let digest = Algorithm::Sha256.digest_of(&data);
    let (r, _) = h
        .call(
            "POST",
            &format!("/v2/capped/blobs/uploads/?digest={digest}"),
            &[],
            data,
        )
        .await;
    assert_eq!(r.status(), StatusCode::TOO_MANY_REQUESTS);
    let (r, _) = h
        .call("POST", "/v2/other/blobs/uploads/", &[], vec![])
        .await;
    assert_eq!(r.status(), StatusCode::ACCEPTED);

    // Cancelling one makes room for one.
    let (r, _) = h.call("DELETE", &sessions[0], &[], vec![]).await;
    assert_eq!(r.status(), StatusCode::NO_CONTENT);
    let (r, _) = h
        .call("POST", "/v2/capped/blobs/uploads/", &[], vec![])
        .await;
    assert_eq!(r.status(), StatusCode::ACCEPTED);
    let (r, _) = h
        .call("POST", "/v2/capped/blobs/uploads/", &[], vec![])
        .await;
    assert_eq!(r.status(), StatusCode::TOO_MANY_REQUESTS);

    // Sessions idle for longer than the upload TTL no longer count, even
    // before the purge removes them.
    h.clock.fetch_add(ttl + 1, Ordering::SeqCst);
    for _ in 0..3 {
        let (r, _) = h
            .call("POST", "/v2/capped/blobs/uploads/", &[], vec![])
            .await;
        assert_eq!(r.status(), StatusCode::ACCEPTED);
    }
    let (r, _) = h
        .call("POST", "/v2/capped/blobs/uploads/", &[], vec![])
        .await;
    assert_eq!(r.status(), StatusCode::TOO_MANY_REQUESTS);
}

#[tokio::test]
async fn upload_errors_cancel_and_missing_digest() {
    let h = Harness::new().await;
    let (r, _) = h.call("POST", "/v2/repo/blobs/uploads/", &[], vec![]).await;
    let location = header(&r, "location").to_string();

    let (r, body) = h.call("PUT", &location, &[], vec![]).await;
    assert_eq!(r.status(), StatusCode::BAD_REQUEST);
    assert_eq!(error_code(&body), "DIGEST_INVALID");

    let (r, body) = h
        .call(
            "PUT",
            &format!("{location}?digest=sha256:nothex"),
            &[],
            vec![],
        )
        .await;
    assert_eq!(r.status(), StatusCode::BAD_REQUEST);
    assert_eq!(error_code(&body), "DIGEST_INVALID");

    // The wrong digest at the end leaves the session open for a retry.
    let (_, _) = h.call("PATCH", &location, &[], b"abc".to_vec()).await;
    let wrong = Algorithm::Sha256.digest_of(b"abd");
    let (r, body) = h
        .call("PUT", &format!("{location}?digest={wrong}"), &[], vec![])
        .await;
    assert_eq!(r.status(), StatusCode::BAD_REQUEST);
    assert_eq!(error_code(&body), "DIGEST_INVALID");
    let (r, _) = h.call("GET", &location, &[], vec![]).await;
    assert_eq!(r.status(), StatusCode::NO_CONTENT);

    let (r, _) = h.call("DELETE", &location, &[], vec![]).await;
    assert_eq!(r.status(), StatusCode::NO_CONTENT);
    let (r, body) = h.call("DELETE", &location, &[], vec![]).await;
    assert_eq!(r.status(), StatusCode::NOT_FOUND);
    assert_eq!(error_code(&body), "BLOB_UPLOAD_UNKNOWN");

    // An upload id from another repository is unknown here.
    let (r, _) = h.call("POST", "/v2/one/blobs/uploads/", &[], vec![]).await;
    let other = header(&r, "location").replace("/v2/one/", "/v2/two/");
    let (r, _) = h.call("GET", &other, &[], vec![]).await;
    assert_eq!(r.status(), StatusCode::NOT_FOUND);
}

/// RFC 9110 §14: one satisfiable byte range is served as 206 (its end
/// clamped to the blob, however large); a range starting past the end is 416
/// with `Content-Range: bytes */SIZE` and a `RANGE_INVALID` body, and so is
/// one that ends before it starts; a unit other than `bytes`, several ranges
/// or a malformed one are ignored and the whole blob is served.
#[tokio::test]
async fn blob_ranges_table() {
    let h = Harness::new().await;
    let data: Vec<u8> = (0..100u8).collect();
    let digest = h.push_blob("r", &data).await;
    // (Range header, status, served slice, Content-Range, error code)
    type Case<'a> = (
        &'a str,
        StatusCode,
        Option<(usize, usize)>,
        &'a str,
        &'a str,
    );
    const WHOLE: Option<(usize, usize)> = Some((0, 100));
    let cases: &[Case] = &[
        (
            "bytes=0-9",
            StatusCode::PARTIAL_CONTENT,
            Some((0, 10)),
            "bytes 0-9/100",
            "",
        ),
        (
            "bytes=90-",
            StatusCode::PARTIAL_CONTENT,
            Some((90, 100)),
            "bytes 90-99/100",
            "",
        ),
        (
            "bytes=-5",
            StatusCode::PARTIAL_CONTENT,
            Some((95, 100)),
            "bytes 95-99/100",
            "",
        ),
        (
            "bytes=50-500",
            StatusCode::PARTIAL_CONTENT,
            Some((50, 100)),
            "bytes 50-99/100",
            "",
        ),
        // An end past the size, even past 2^64, is clamped.
        (
            "bytes=10-99999999999999999999999",
            StatusCode::PARTIAL_CONTENT,
            Some((10, 100)),
            "bytes 10-99/100",
            "",
        ),
        (
            "bytes=-99999999999999999999999",
            StatusCode::PARTIAL_CONTENT,
            WHOLE,
            "bytes 0-99/100",
            "",
        ),
        (
            " bytes = 5 - 6 ",
            StatusCode::PARTIAL_CONTENT,
            Some((5, 7)),
            "bytes 5-6/100",
            "",
        ),
        (
            "bytes=100-",
            StatusCode::RANGE_NOT_SATISFIABLE,
            None,
            "bytes */100",
            "RANGE_INVALID",
        ),
        (
            "bytes=99999999999999999999999-",
            StatusCode::RANGE_NOT_SATISFIABLE,
            None,
            "bytes */100",
            "RANGE_INVALID",
        ),
        (
            "bytes=-0",
            StatusCode::RANGE_NOT_SATISFIABLE,
            None,
            "bytes */100",
            "RANGE_INVALID",
        ),
        // Ignored: another unit, several ranges, malformed specifiers.
        ("items=0-9", StatusCode::OK, WHOLE, "", ""),
        ("bytes=0-9,20-29", StatusCode::OK, WHOLE, "", ""),
        ("bytes=0-9, 200-", StatusCode::OK, WHOLE, "", ""),
        ("bytes=a-b", StatusCode::OK, WHOLE, "", ""),
        ("bytes=", StatusCode::OK, WHOLE, "", ""),
    ];
    for (range, status, slice, content_range, code) in cases {
        for method in ["GET", "HEAD"] {
            let (r, body) = h
                .call(
                    method,
                    &format!("/v2/r/blobs/{digest}"),
                    &[("range", range)],
                    vec![],
                )
                .await;
            assert_eq!(r.status(), *status, "{method} {range}");
            assert_eq!(
                header(&r, "content-range"),
                *content_range,
                "{method} {range}"
            );
            if let Some((a, b)) = slice {
                assert_eq!(header(&r, "content-length"), (b - a).to_string());
                if method == "GET" {
                    assert_eq!(body, data[*a..*b].to_vec(), "{range}");
                }
            }
            if !code.is_empty() && method == "GET" {
                assert_eq!(error_code(&body), *code, "{range}");
            }
        }
    }
}

#[tokio::test]
async fn blobs_are_isolated_per_repository_and_mountable() {
    let h = Harness::new().await;
    let digest = h.push_blob("src", b"shared layer").await;
    let (r, body) = h
        .call("HEAD", &format!("/v2/dst/blobs/{digest}"), &[], vec![])
        .await;
    assert_eq!(r.status(), StatusCode::NOT_FOUND);
    assert!(body.is_empty());

    // Mounting from a repository that lacks the blob falls back to a session.
    let (r, _) = h
        .call(
            "POST",
            &format!("/v2/dst/blobs/uploads/?mount={digest}&from=elsewhere"),
            &[],
            vec![],
        )
        .await;
    assert_eq!(r.status(), StatusCode::ACCEPTED);
    assert!(header(&r, "location").contains("/blobs/uploads/"));

    let (r, _) = h
        .call(
            "POST",
            &format!("/v2/dst/blobs/uploads/?mount={digest}&from=src"),
            &[],
            vec![],
        )
        .await;
    assert_eq!(r.status(), StatusCode::CREATED);
    assert_eq!(header(&r, "location"), format!("/v2/dst/blobs/{digest}"));
    let (r, body) = h
        .call("GET", &format!("/v2/dst/blobs/{digest}"), &[], vec![])
        .await;
    assert_eq!(r.status(), StatusCode::OK);
    assert_eq!(body, b"shared layer");

    // Deleting from one repository leaves the other's link.
    let (r, _) = h
        .call("DELETE", &format!("/v2/src/blobs/{digest}"), &[], vec![])
        .await;
    assert_eq!(r.status(), StatusCode::ACCEPTED);
    let (r, _) = h
        .call("HEAD", &format!("/v2/src/blobs/{digest}"), &[], vec![])
        .await;
    assert_eq!(r.status(), StatusCode::NOT_FOUND);
    let (r, _) = h
        .call("HEAD", &format!("/v2/dst/blobs/{digest}"), &[], vec![])
        .await;
    assert_eq!(r.status(), StatusCode::OK);
    let (r, body) = h
        .call("DELETE", &format!("/v2/src/blobs/{digest}"), &[], vec![])
        .await;
    assert_eq!(r.status(), StatusCode::NOT_FOUND);
    assert_eq!(error_code(&body), "BLOB_UNKNOWN");
}

/// A manifest whose config or layer descriptor gives a size other than the
/// stored blob's is refused with 400 `MANIFEST_INVALID` naming the blob, and
/// nothing is stored; so is one that lists one blob with two sizes.
#[tokio::test]
async fn descriptor_sizes_must_match_the_blobs() {
    let h = Harness::new().await;
    let config = br#"{"architecture":"arm64"}"#;
    let c = h.push_blob("sized", config).await;
    let l = h.push_blob("sized", b"layer bytes").await;
    let cases: Vec<(&str, Vec<u8>, &Digest)> = vec![
        (
            "layer too large",
            image_manifest(&c, config.len(), &[(&l, 12)], ""),
            &l,
        ),
        (
            "layer too small",
            image_manifest(&c, config.len(), &[(&l, 1)], ""),
            &l,
        ),
        (
            "config",
            image_manifest(&c, config.len() + 1, &[(&l, 11)], ""),
            &c,
        ),
        (
            "one layer, two sizes",
            image_manifest(&c, config.len(), &[(&l, 11), (&l, 10)], ""),
            &l,
        ),
    ];
    for (case, manifest, wrong) in cases {
        let (r, body) = h
            .call(
                "PUT",
                "/v2/sized/manifests/v1",
                &[("content-type", OCI_MANIFEST)],
                manifest,
            )
            .await;
        assert_eq!(r.status(), StatusCode::BAD_REQUEST, "{case}");
        assert_eq!(error_code(&body), "MANIFEST_INVALID", "{case}");
        let text = String::from_utf8_lossy(&body);
        assert!(text.contains(wrong.as_str()), "{case}: {text}");
        let (r, _) = h.call("GET", "/v2/sized/manifests/v1", &[], vec![]).await;
        assert_eq!(r.status(), StatusCode::NOT_FOUND, "{case}: nothing stored");
    }
    let right = image_manifest(&c, config.len(), &[(&l, 11)], "");
    let r = h.push_manifest("sized", "v1", OCI_MANIFEST, &right).await;
    assert_eq!(r.status(), StatusCode::CREATED);
}

/// OCI 1.1's mount without `from`: without access control any repository
/// holding the blob is a source; a blob nobody holds gets an upload session.
#[tokio::test]
async fn mount_without_from_finds_a_source() {
    let h = Harness::new().await;
    let digest = h.push_blob("src/one", b"shared layer").await;
    let (r, _) = h
        .call(
            "POST",
            &format!("/v2/dst/blobs/uploads/?mount={digest}"),
            &[],
            vec![],
        )
        .await;
    assert_eq!(r.status(), StatusCode::CREATED);
    assert_eq!(header(&r, "location"), format!("/v2/dst/blobs/{digest}"));
    assert_eq!(header(&r, "docker-content-digest"), digest.as_str());
    let (r, body) = h
        .call("GET", &format!("/v2/dst/blobs/{digest}"), &[], vec![])
        .await;
    assert_eq!(r.status(), StatusCode::OK);
    assert_eq!(body, b"shared layer");

    let unknown = Algorithm::Sha256.digest_of(b"nobody has this");
    let (r, _) = h
        .call(
            "POST",
            &format!("/v2/dst/blobs/uploads/?mount={unknown}"),
            &[],
            vec![],
        )
        .await;
    assert_eq!(r.status(), StatusCode::ACCEPTED);
    assert!(header(&r, "location").starts_with("/v2/dst/blobs/uploads/"));
}

#[tokio::test]
async fn manifest_push_pull_negotiation_and_validation() {
    let h = Harness::new().await;
    let config = br#"{"architecture":"amd64"}"#;
    let c = Algorithm::Sha256.digest_of(config);
    let l = Algorithm::Sha256.digest_of(b"layer");
    let manifest = image_manifest(&c, config.len(), &[(&l, 5)], "");
    let digest = Algorithm::Sha256.digest_of(&manifest);

    let (r, body) = h
        .call(
            "PUT",
            "/v2/app/manifests/v1",
            &[("content-type", OCI_MANIFEST)],
            manifest.clone(),
        )
        .await;
    assert_eq!(r.status(), StatusCode::BAD_REQUEST);
    assert_eq!(error_code(&body), "MANIFEST_BLOB_UNKNOWN");

    h.push_blob("app", config).await;
    h.push_blob("app", b"layer").await;
    let r = h.push_manifest("app", "v1", OCI_MANIFEST, &manifest).await;
    assert_eq!(r.status(), StatusCode::CREATED);
    assert_eq!(header(&r, "docker-content-digest"), digest.as_str());
    assert_eq!(
        header(&r, "location"),
        format!("/v2/app/manifests/{digest}")
    );

    for reference in ["v1".to_string(), digest.to_string()] {
        let (r, body) = h
            .call(
                "GET",
                &format!("/v2/app/manifests/{reference}"),
                &[("accept", OCI_MANIFEST)],
                vec![],
            )
            .await;
        assert_eq!(r.status(), StatusCode::OK);
        assert_eq!(body, manifest);
        assert_eq!(header(&r, "content-type"), OCI_MANIFEST);
        assert_eq!(header(&r, "docker-content-digest"), digest.as_str());
        let (r, body) = h
            .call(
                "HEAD",
                &format!("/v2/app/manifests/{reference}"),
                &[],
                vec![],
            )
            .await;
        assert_eq!(r.status(), StatusCode::OK);
        assert_eq!(header(&r, "content-length"), manifest.len().to_string());
        assert!(body.is_empty());
    }

    // A client that accepts only Docker manifests does not get an OCI one by tag.
    let (r, body) = h
        .call(
            "GET",
            "/v2/app/manifests/v1",
            &[("accept", DOCKER_MANIFEST)],
            vec![],
        )
        .await;
    assert_eq!(r.status(), StatusCode::NOT_FOUND);
    assert_eq!(error_code(&body), "MANIFEST_UNKNOWN");
    let (r, _) = h
        .call(
            "GET",
            "/v2/app/manifests/v1",
            &[("accept", DOCKER_MANIFEST), ("accept", OCI_MANIFEST)],
            vec![],
        )
        .await;
    assert_eq!(r.status(), StatusCode::OK);

    let cases: Vec<(String, Vec<u8>, StatusCode, &str)> = vec![
        (
            "v2".into(),
            b"{not json".to_vec(),
            StatusCode::BAD_REQUEST,
            "MANIFEST_INVALID",
        ),
        (
            "v2".into(),
            br#"{"schemaVersion":1}"#.to_vec(),
            StatusCode::BAD_REQUEST,
            "MANIFEST_INVALID",
        ),
        (
            Algorithm::Sha256.digest_of(b"x").to_string(),
            manifest.clone(),
            StatusCode::BAD_REQUEST,
            "DIGEST_INVALID",
        ),
        (
            "bad:tag".into(),
            manifest.clone(),
            StatusCode::BAD_REQUEST,
            "DIGEST_INVALID",
        ),
        (
            "-tag".into(),
            manifest.clone(),
            StatusCode::BAD_REQUEST,
            "MANIFEST_INVALID",
        ),
    ];
    for (reference, body, status, code) in cases {
        let (r, b) = h
            .call(
                "PUT",
                &format!("/v2/app/manifests/{reference}"),
                &[("content-type", OCI_MANIFEST)],
                body,
            )
            .await;
        assert_eq!(r.status(), status, "{reference}");
        assert_eq!(error_code(&b), code, "{reference}");
    }

    let (r, body) = h.call("GET", "/v2/app/manifests/nope", &[], vec![]).await;
    assert_eq!(r.status(), StatusCode::NOT_FOUND);
    assert_eq!(error_code(&body), "MANIFEST_UNKNOWN");

    let huge = vec![b' '; 4 * 1024 * 1024 + 10];
    let (r, body) = h
        .call(
            "PUT",
            "/v2/app/manifests/huge",
            &[("content-type", OCI_MANIFEST)],
            huge,
        )
        .await;
    assert_eq!(r.status(), StatusCode::PAYLOAD_TOO_LARGE);
    assert_eq!(error_code(&body), "MANIFEST_INVALID");
}

#[tokio::test]
async fn sha512_blobs_and_manifests() {
    let h = Harness::new().await;
    let data = b"sha512 content".to_vec();
    let digest = Algorithm::Sha512.digest_of(&data);
    let (r, _) = h
        .call(
            "POST",
            &format!("/v2/s/blobs/uploads/?digest={digest}"),
            &[],
            data.clone(),
        )
        .await;
    assert_eq!(r.status(), StatusCode::CREATED);
    let (_, body) = h
        .call("GET", &format!("/v2/s/blobs/{digest}"), &[], vec![])
        .await;
    assert_eq!(body, data);

    let config = b"{}";
    let c = Algorithm::Sha512.digest_of(config);
    h.call(
        "POST",
        &format!("/v2/s/blobs/uploads/?digest={c}"),
        &[],
        config.to_vec(),
    )
    .await;
    let manifest = image_manifest(&c, 2, &[(&digest, data.len())], "");
    let m = Algorithm::Sha512.digest_of(&manifest);
    let r = h
        .push_manifest("s", m.as_str(), OCI_MANIFEST, &manifest)
        .await;
    assert_eq!(r.status(), StatusCode::CREATED);
    assert_eq!(header(&r, "docker-content-digest"), m.as_str());
    let (r, body) = h
        .call("GET", &format!("/v2/s/manifests/{m}"), &[], vec![])
        .await;
    assert_eq!(r.status(), StatusCode::OK);
    assert_eq!(body, manifest);
}

#[tokio::test]
async fn index_requires_children_and_protects_them() {
    let h = Harness::new().await;
    let child = simple_image(&h, "multi", "amd64").await;
    let child_digest = Algorithm::Sha256.digest_of(&child);
    let index = format!(
        r#"{{"schemaVersion":2,"mediaType":"{OCI_INDEX}","manifests":[{{"mediaType":"{OCI_MANIFEST}","digest":"{child_digest}","size":{},"platform":{{"architecture":"amd64","os":"linux"}}}}]}}"#,
        child.len()
    );
    let (r, body) = h
        .call(
            "PUT",
            "/v2/multi/manifests/latest",
            &[("content-type", OCI_INDEX)],
            index.clone().into_bytes(),
        )
        .await;
    assert_eq!(r.status(), StatusCode::BAD_REQUEST);
    assert_eq!(error_code(&body), "MANIFEST_BLOB_UNKNOWN");

    assert_eq!(
        h.push_manifest("multi", child_digest.as_str(), OCI_MANIFEST, &child)
            .await
            .status(),
        StatusCode::CREATED
    );
    let r = h
        .push_manifest("multi", "latest", OCI_INDEX, index.as_bytes())
        .await;
    assert_eq!(r.status(), StatusCode::CREATED);

    // The child cannot be deleted while the index lists it.
    let (r, body) = h
        .call(
            "DELETE",
            &format!("/v2/multi/manifests/{child_digest}"),
            &[],
            vec![],
        )
        .await;
    assert_eq!(r.status(), StatusCode::CONFLICT);
    assert_eq!(error_code(&body), "DENIED");
    let index_digest = Algorithm::Sha256.digest_of(index.as_bytes());
    let (r, _) = h
        .call(
            "DELETE",
            &format!("/v2/multi/manifests/{index_digest}"),
            &[],
            vec![],
        )
        .await;
    assert_eq!(r.status(), StatusCode::ACCEPTED);
    let (r, _) = h
        .call(
            "DELETE",
            &format!("/v2/multi/manifests/{child_digest}"),
            &[],
            vec![],
        )
        .await;
    assert_eq!(r.status(), StatusCode::ACCEPTED);
}

#[tokio::test]
async fn tags_listing_paging_and_deletion() {
    let h = Harness::new().await;
    let manifest = simple_image(&h, "t", "x").await;
    let digest = Algorithm::Sha256.digest_of(&manifest);
    for tag in ["b", "a", "c", "A", "a-1"] {
        assert_eq!(
            h.push_manifest("t", tag, OCI_MANIFEST, &manifest)
                .await
                .status(),
            StatusCode::CREATED
        );
    }
    let tags = |body: &[u8]| -> Vec<String> {
        let v: serde_json::Value = serde_json::from_slice(body).unwrap();
        v["tags"]
            .as_array()
            .unwrap()
            .iter()
            .map(|t| t.as_str().unwrap().to_string())
            .collect()
    };
    let (r, body) = h.call("GET", "/v2/t/tags/list", &[], vec![]).await;
    assert_eq!(r.status(), StatusCode::OK);
    assert_eq!(tags(&body), ["A", "a", "a-1", "b", "c"]);
    assert_eq!(header(&r, "link"), "");

    let (r, body) = h.call("GET", "/v2/t/tags/list?n=2", &[], vec![]).await;
    assert_eq!(tags(&body), ["A", "a"]);
    assert_eq!(
        header(&r, "link"),
        "</v2/t/tags/list?n=2&last=a>; rel=\"next\""
    );
    let (r, body) = h
        .call("GET", "/v2/t/tags/list?n=2&last=a", &[], vec![])
        .await;
    assert_eq!(tags(&body), ["a-1", "b"]);
    assert!(!header(&r, "link").is_empty());
    let (r, body) = h
        .call("GET", "/v2/t/tags/list?n=2&last=b", &[], vec![])
        .await;
    assert_eq!(tags(&body), ["c"]);
    assert_eq!(header(&r, "link"), "");
    let (_, body) = h.call("GET", "/v2/t/tags/list?n=0", &[], vec![]).await;
    assert!(tags(&body).is_empty());

    let (r, body) = h.call("GET", "/v2/unknown/tags/list", &[], vec![]).await;
    assert_eq!(r.status(), StatusCode::NOT_FOUND);
    assert_eq!(error_code(&body), "NAME_UNKNOWN");

    // Deleting a tag keeps the manifest; deleting the manifest takes its tags.
    let (r, _) = h.call("DELETE", "/v2/t/manifests/c", &[], vec![]).await;
    assert_eq!(r.status(), StatusCode::ACCEPTED);
    let (r, _) = h
        .call("GET", &format!("/v2/t/manifests/{digest}"), &[], vec![])
        .await;
    assert_eq!(r.status(), StatusCode::OK);
    let (r, _) = h
        .call("DELETE", &format!("/v2/t/manifests/{digest}"), &[], vec![])
        .await;
    assert_eq!(r.status(), StatusCode::ACCEPTED);
    let (_, body) = h.call("GET", "/v2/t/tags/list", &[], vec![]).await;
    assert!(tags(&body).is_empty());
    let (r, body) = h.call("GET", "/v2/t/manifests/a", &[], vec![]).await;
    assert_eq!(r.status(), StatusCode::NOT_FOUND);
    assert_eq!(error_code(&body), "MANIFEST_UNKNOWN");
    let (r, _) = h
        .call("DELETE", &format!("/v2/t/manifests/{digest}"), &[], vec![])
        .await;
    assert_eq!(r.status(), StatusCode::NOT_FOUND);
}

#[tokio::test]
async fn catalog_is_sorted_and_paged() {
    let h = Harness::new().await;
    for repo in ["zeta", "alpha/one", "alpha", "mid/x/y"] {
        h.push_blob(repo, repo.as_bytes()).await;
    }
    let repos = |body: &[u8]| -> Vec<String> {
        let v: serde_json::Value = serde_json::from_slice(body).unwrap();
        v["repositories"]
            .as_array()
            .unwrap()
            .iter()
            .map(|t| t.as_str().unwrap().to_string())
            .collect()
    };
    let (_, body) = h.call("GET", "/v2/_catalog", &[], vec![]).await;
    assert_eq!(repos(&body), ["alpha", "alpha/one", "mid/x/y", "zeta"]);
    let (r, body) = h.call("GET", "/v2/_catalog?n=3", &[], vec![]).await;
    assert_eq!(repos(&body), ["alpha", "alpha/one", "mid/x/y"]);
    assert_eq!(
        header(&r, "link"),
        "</v2/_catalog?n=3&last=mid%2Fx%2Fy>; rel=\"next\""
    );
    let (_, body) = h
        .call("GET", "/v2/_catalog?n=3&last=mid%2Fx%2Fy", &[], vec![])
        .await;
    assert_eq!(repos(&body), ["zeta"]);
}

#[tokio::test]
async fn referrers_and_subject_header() {
    let h = Harness::new().await;
    let image = simple_image(&h, "ref", "base").await;
    let image_digest = Algorithm::Sha256.digest_of(&image);
    // The subject need not exist yet: the spec lets artifacts arrive first.
    let empty = h.push_blob("ref", b"{}").await;
    let artifact = |kind: &str| {
        format!(
            r#"{{"schemaVersion":2,"mediaType":"{OCI_MANIFEST}","artifactType":"{kind}","config":{{"mediaType":"application/vnd.oci.empty.v1+json","digest":"{empty}","size":2}},"layers":[],"subject":{{"mediaType":"{OCI_MANIFEST}","digest":"{image_digest}","size":{}}},"annotations":{{"org.example":"{kind}"}}}}"#,
            image.len()
        )
        .into_bytes()
    };
    let sig = artifact("application/x-signature");
    let sbom = artifact("application/x-sbom");
    for a in [&sig, &sbom] {
        let d = Algorithm::Sha256.digest_of(a);
        let r = h.push_manifest("ref", d.as_str(), OCI_MANIFEST, a).await;
        assert_eq!(r.status(), StatusCode::CREATED);
        assert_eq!(header(&r, "oci-subject"), image_digest.as_str());
    }
    assert_eq!(
        h.push_manifest("ref", "v1", OCI_MANIFEST, &image)
            .await
            .status(),
        StatusCode::CREATED
    );

    let (r, body) = h
        .call(
            "GET",
            &format!("/v2/ref/referrers/{image_digest}"),
            &[],
            vec![],
        )
        .await;
    assert_eq!(r.status(), StatusCode::OK);
    assert_eq!(header(&r, "content-type"), OCI_INDEX);
    assert_eq!(header(&r, "oci-filters-applied"), "");
    let v: serde_json::Value = serde_json::from_slice(&body).unwrap();
    assert_eq!(v["mediaType"], OCI_INDEX);
    let manifests = v["manifests"].as_array().unwrap();
    assert_eq!(manifests.len(), 2);
    for m in manifests {
        assert_eq!(m["mediaType"], OCI_MANIFEST);
        assert!(m["artifactType"]
            .as_str()
            .unwrap()
            .starts_with("application/x-"));
        assert_eq!(m["annotations"]["org.example"], m["artifactType"]);
    }

    let (r, body) = h
        .call(
            "GET",
            &format!("/v2/ref/referrers/{image_digest}?artifactType=application/x-sbom"),
            &[],
            vec![],
        )
        .await;
    assert_eq!(header(&r, "oci-filters-applied"), "artifactType");
    let v: serde_json::Value = serde_json::from_slice(&body).unwrap();
    assert_eq!(v["manifests"].as_array().unwrap().len(), 1);
    assert_eq!(
        v["manifests"][0]["digest"],
        Algorithm::Sha256.digest_of(&sbom).as_str()
    );
    assert_eq!(v["manifests"][0]["size"], sbom.len());

    // Another repository sees none of them, and a bad digest is refused.
    let (r, body) = h
        .call(
            "GET",
            &format!("/v2/other/referrers/{image_digest}"),
            &[],
            vec![],
        )
        .await;
    assert_eq!(r.status(), StatusCode::OK);
    let v: serde_json::Value = serde_json::from_slice(&body).unwrap();
    assert!(v["manifests"].as_array().unwrap().is_empty());
    let (r, body) = h
        .call("GET", "/v2/ref/referrers/sha256:zz", &[], vec![])
        .await;
    assert_eq!(r.status(), StatusCode::BAD_REQUEST);
    assert_eq!(error_code(&body), "DIGEST_INVALID");
}

/// Issue 11: twenty artifacts with 3.5 MB of annotations each made one
/// referrers answer 70 MB, built whole in memory. Now annotations over the
/// per-descriptor cap are dropped (the descriptor stays), each page is
/// bounded in bytes, pages follow each other through `Link` (keeping the
/// `artifactType` filter), and every referrer is listed exactly once.
#[tokio::test]
async fn referrers_are_paged_and_bounded() {
    let h = Harness::new().await;
    let subject = Algorithm::Sha256.digest_of(b"the subject");
    let empty = h.push_blob("paged", b"{}").await;
    let artifact = |kind: &str, n: usize, annotation: usize| {
        let value = "x".repeat(annotation);
        format!(
            r#"{{"schemaVersion":2,"mediaType":"{OCI_MANIFEST}","artifactType":"{kind}","config":{{"mediaType":"application/vnd.oci.empty.v1+json","digest":"{empty}","size":2}},"layers":[],"subject":{{"mediaType":"{OCI_MANIFEST}","digest":"{subject}","size":100}},"annotations":{{"n":"{n}","v":"{value}"}}}}"#
        )
        .into_bytes()
    };
    // (artifact type, count, annotation bytes, annotations kept)
    let kinds = [
        ("application/x-big", 20, 3_500_000, false),
        ("application/x-mid", 100, 12 * 1024, true),
        ("application/x-small", 5, 10, true),
    ];
    let mut expected: std::collections::BTreeMap<String, (&str, bool)> = Default::default();
    for (kind, count, annotation, kept) in kinds {
        for n in 0..count {
            let manifest = artifact(kind, n, annotation);
            let digest = Algorithm::Sha256.digest_of(&manifest);
            let r = h
                .push_manifest("paged", digest.as_str(), OCI_MANIFEST, &manifest)
                .await;
            assert_eq!(r.status(), StatusCode::CREATED);
            expected.insert(digest.to_string(), (kind, kept));
        }
    }

    // Walks the pages from `first`, checking each, and returns the digests.
    let subject = &subject;
    let expected = &expected;
    let h = &h;
    let walk = |first: String, filtered: bool| async move {
        let mut listed = Vec::new();
        let mut next = Some(first);
        let mut pages = 0;
        while let Some(uri) = next.take() {
            pages += 1;
            assert!(pages <= 100, "too many pages");
            let (r, body) = h.call("GET", &uri, &[], vec![]).await;
            assert_eq!(r.status(), StatusCode::OK, "{uri}");
            assert!(body.len() <= 1024 * 1024, "a page of {} bytes", body.len());
            assert_eq!(header(&r, "content-type"), OCI_INDEX);
            let filter = if filtered { "artifactType" } else { "" };
            assert_eq!(header(&r, "oci-filters-applied"), filter);
            let v: serde_json::Value = serde_json::from_slice(&body).unwrap();
            assert_eq!(v["schemaVersion"], 2);
            for m in v["manifests"].as_array().unwrap() {
                let digest = m["digest"].as_str().unwrap().to_string();
                let (kind, kept) = expected[&digest];
                assert_eq!(m["artifactType"], kind);
                assert_eq!(m["mediaType"], OCI_MANIFEST);
                assert!(m["size"].as_u64().unwrap() > 0);
                assert_eq!(m["annotations"].is_object(), kept, "{digest}");
                listed.push(digest);
            }
            let link = header(&r, "link");
            if !link.is_empty() {
                assert!(link.ends_with(">; rel=\"next\""), "{link}");
                let target = &link[1..link.find('>').unwrap()];
                assert!(target.starts_with(&format!("/v2/paged/referrers/{subject}?")));
                assert_eq!(target.contains("artifactType="), filtered, "{target}");
                next = Some(target.to_string());
            }
        }
        (listed, pages)
    };
    let (listed, pages) = walk(format!("/v2/paged/referrers/{subject}"), false).await;
    assert!(
        pages >= 2,
        "125 descriptors, 1.2 MB of annotations: {pages} page(s)"
    );
    let all: Vec<String> = expected.keys().cloned().collect();
    assert_eq!(listed, all, "every referrer once, in digest order");

    let (listed, _) = walk(
        format!("/v2/paged/referrers/{subject}?artifactType=application/x-mid"),
        true,
    )
    .await;
    let mids: Vec<String> = expected
        .iter()
        .filter(|(_, (kind, _))| *kind == "application/x-mid")
        .map(|(digest, _)| digest.clone())
        .collect();
    assert_eq!(listed, mids);

    let (r, body) = h
        .call(
            "GET",
            &format!("/v2/paged/referrers/{subject}?cursor=not-a-cursor"),
            &[],
            vec![],
        )
        .await;
    assert_eq!(r.status(), StatusCode::BAD_REQUEST);
    assert_eq!(error_code(&body), "UNSUPPORTED");
}

#[tokio::test]
async fn invalid_names_methods_and_paths() {
    let h = Harness::new().await;
    let cases: &[(&str, &str, StatusCode, &str)] = &[
        (
            "GET",
            "/v2/UPPER/tags/list",
            StatusCode::BAD_REQUEST,
            "NAME_INVALID",
        ),
        (
            "GET",
            "/v2/a..b/manifests/latest",
            StatusCode::BAD_REQUEST,
            "NAME_INVALID",
        ),
        (
            "GET",
            "/v2/a/blobs/sha256:123",
            StatusCode::BAD_REQUEST,
            "DIGEST_INVALID",
        ),
        (
            "GET",
            "/v2/a/blobs/md5:d41d8cd98f00b204e9800998ecf8427e",
            StatusCode::BAD_REQUEST,
            "DIGEST_INVALID",
        ),
        (
            "POST",
            "/v2/a/manifests/latest",
            StatusCode::METHOD_NOT_ALLOWED,
            "UNSUPPORTED",
        ),
        (
            "PATCH",
            "/v2/a/tags/list",
            StatusCode::METHOD_NOT_ALLOWED,
            "UNSUPPORTED",
        ),
        (
            "GET",
            "/v2/a/blobs/uploads/not-a-uuid",
            StatusCode::NOT_FOUND,
            "BLOB_UPLOAD_UNKNOWN",
        ),
        (
            "GET",
            "/v2/a/blobs/uploads/0b0f6a8e-3c39-4d4e-9f0c-2f4a3c1f8d10",
            StatusCode::NOT_FOUND,
            "BLOB_UPLOAD_UNKNOWN",
        ),
    ];
    for (method, path, status, code) in cases {
        let (r, body) = h.call(method, path, &[], vec![]).await;
        assert_eq!(r.status(), *status, "{method} {path}");
        assert_eq!(error_code(&body), *code, "{method} {path}");
    }
}

#[tokio::test]
async fn expired_uploads_are_purged() {
    let h = Harness::new().await;
    let (r, _) = h.call("POST", "/v2/p/blobs/uploads/", &[], vec![]).await;
    let old = header(&r, "location").to_string();
    h.call("PATCH", &old, &[], b"partial".to_vec()).await;
    h.clock.fetch_add(23 * 3600, Ordering::SeqCst);
    let (r, _) = h.call("POST", "/v2/p/blobs/uploads/", &[], vec![]).await;
    let young = header(&r, "location").to_string();

    assert_eq!(
        h.state
            .registry
            .purge_expired_uploads()
            .await
            .unwrap()
            .uploads_removed,
        0
    );
    h.clock.fetch_add(2 * 3600, Ordering::SeqCst);
    assert_eq!(
        h.state
            .registry
            .purge_expired_uploads()
            .await
            .unwrap()
            .uploads_removed,
        1
    );
    let (r, _) = h.call("GET", &old, &[], vec![]).await;
    assert_eq!(r.status(), StatusCode::NOT_FOUND);
    let (r, _) = h.call("GET", &young, &[], vec![]).await;
    assert_eq!(r.status(), StatusCode::NO_CONTENT);
}

#[tokio::test]
async fn health_readiness_and_metrics() {
    let h = Harness::new().await;
    let (r, body) = h.call("GET", "/healthz", &[], vec![]).await;
    assert_eq!((r.status(), body.as_slice()), (StatusCode::OK, &b"ok"[..]));
    let (r, body) = h.call("GET", "/readyz", &[], vec![]).await;
    assert_eq!(r.status(), StatusCode::OK);
    let ready: serde_json::Value = serde_json::from_slice(&body).unwrap();
    assert_eq!(
        ready,
        serde_json::json!({"ready": true, "database": {"ready": true}, "storage": {"ready": true}})
    );
    h.push_blob("m", b"metered").await;
    h.call(
        "GET",
        "/v2/m/blobs/sha256:0000000000000000000000000000000000000000000000000000000000000000",
        &[],
        vec![],
    )
    .await;
    let (r, body) = h.call("GET", "/metrics", &[], vec![]).await;
    assert_eq!(r.status(), StatusCode::OK);
    let text = String::from_utf8(body).unwrap();
    assert!(
        text.contains(
            r#"berth_http_requests_total{endpoint="upload_start",method="POST",status="201"} 1"#
        ),
        "{text}"
    );
    assert!(
        text.contains(r#"berth_http_requests_total{endpoint="blob",method="GET",status="404"} 1"#),
        "{text}"
    );
    assert!(
        text.contains("berth_http_request_duration_seconds_bucket"),
        "{text}"
    );
    assert!(text.contains("berth_http_request_bytes_total 7"), "{text}");
}

#[tokio::test]
async fn garbage_collection_is_reported_in_metrics() {
    let h = Harness::new().await;
    let digest = h.push_blob("gc", b"garbage").await;
    let (r, _) = h
        .call("DELETE", &format!("/v2/gc/blobs/{digest}"), &[], vec![])
        .await;
    assert_eq!(r.status(), StatusCode::ACCEPTED);
    h.clock
        .fetch_add(2 * 24 * 3600, std::sync::atomic::Ordering::SeqCst);
    let report = h
        .state
        .registry
        .collect_garbage(&berth_registry::GcOptions::default())
        .await
        .unwrap();
    assert_eq!((report.blobs_removed, report.bytes_reclaimed), (1, 7));
    h.state.metrics.record_gc(&report);
    let (_, body) = h.call("GET", "/metrics", &[], vec![]).await;
    let text = String::from_utf8(body).unwrap();
    assert!(text.contains("berth_gc_bytes_reclaimed_total 7"), "{text}");
    assert!(text.contains("berth_gc_objects_removed_total 1"), "{text}");
    assert!(
        text.contains("berth_gc_pass_duration_seconds_count 1"),
        "{text}"
    );
}

#[tokio::test]
async fn push_by_digest_with_tag_parameters() {
    let h = Harness::new().await;
    let manifest = simple_image(&h, "tp", "tags").await;
    let digest = Algorithm::Sha256.digest_of(&manifest);
    let (r, _) = h
        .call(
            "PUT",
            &format!("/v2/tp/manifests/{digest}?tag=1.0&tag=latest"),
            &[("content-type", OCI_MANIFEST)],
            manifest.clone(),
        )
        .await;
    assert_eq!(r.status(), StatusCode::CREATED);
    let tags: Vec<&str> = r
        .headers()
        .get_all("oci-tag")
        .iter()
        .map(|v| v.to_str().unwrap())
        .collect();
    assert_eq!(tags, ["1.0", "latest"]);
    for tag in ["1.0", "latest"] {
        let (r, body) = h
            .call("GET", &format!("/v2/tp/manifests/{tag}"), &[], vec![])
            .await;
        assert_eq!(r.status(), StatusCode::OK);
        assert_eq!(body, manifest);
    }
    // Tag parameters make no sense on a push by tag, and must be valid tags.
    let cases = [
        "/v2/tp/manifests/v2?tag=other".to_string(),
        format!("/v2/tp/manifests/{digest}?tag=-bad"),
    ];
    for uri in cases {
        let (r, body) = h
            .call(
                "PUT",
                &uri,
                &[("content-type", OCI_MANIFEST)],
                manifest.clone(),
            )
            .await;
        assert_eq!(r.status(), StatusCode::BAD_REQUEST, "{uri}");
        assert_eq!(error_code(&body), "MANIFEST_INVALID", "{uri}");
    }
}

/// Storage quota: the upload completion that would take the namespace
/// beyond its limit is refused with 403 `DENIED` giving the usage, the
/// limit and what the push adds, as is a manifest PUT; a blob the namespace
/// already holds passes at the limit. Traffic quota: once a namespace has
/// served its monthly limit, blob GETs get 429 `TOOMANYREQUESTS` with
/// `Retry-After` at the month's end (UTC), HEADs and other namespaces are
/// unaffected, the counts survive a flush, and the next month starts anew.
#[tokio::test]
async fn storage_and_traffic_quotas_refuse_pushes_and_pulls() {
    let h = Harness::with_config(RegistryConfig {
        default_traffic_limit: Some(20),
        ..RegistryConfig::default()
    })
    .await;
    let registry = h.state.registry.clone();
    let actor = berth_meta::Actor::system("test");
    let first = h.push_blob("quota/app", b"0123456789").await;
    registry
        .set_quota(
            &actor,
            "quota",
            &berth_registry::QuotaUpdate {
                storage_limit: Some(Some(25)),
                traffic_limit: None,
            },
        )
        .await
        .unwrap();
    h.push_blob("quota/app", b"abcdefghij").await;
    let refused = b"klmnopqrst".to_vec();
    let digest = Algorithm::Sha256.digest_of(&refused);
    let (r, body) = h
        .call(
            "POST",
            &format!("/v2/quota/app/blobs/uploads/?digest={digest}"),
            &[],
            refused,
        )
        .await;
    assert_eq!(r.status(), StatusCode::FORBIDDEN);
    assert_eq!(error_code(&body), "DENIED");
    let error: serde_json::Value = serde_json::from_slice(&body).unwrap();
    assert_eq!(
        error["errors"][0]["detail"],
        serde_json::json!({"namespace": "quota", "usage": 20, "limit": 25, "adding": 10})
    );
    // Already held by the namespace: nothing added, so it passes.
    h.push_blob("quota/other", b"0123456789").await;
    let manifest = image_manifest(&first, 10, &[(&first, 10)], "");
    let r = h
        .push_manifest("quota/app", "v1", OCI_MANIFEST, &manifest)
        .await;
    assert_eq!(r.status(), StatusCode::FORBIDDEN);
    assert_eq!(registry.quota("quota").await.unwrap().storage_bytes, 20);

    let blob = format!("/v2/quota/app/blobs/{first}");
    for _ in 0..2 {
        let (r, body) = h.call("GET", &blob, &[], vec![]).await;
        assert_eq!((r.status(), body.len()), (StatusCode::OK, 10));
    }
    let (r, body) = h.call("GET", &blob, &[], vec![]).await;
    assert_eq!(r.status(), StatusCode::TOO_MANY_REQUESTS);
    assert_eq!(error_code(&body), "TOOMANYREQUESTS");
    // 2023-11-14T22:13:20Z to 2023-12-01T00:00:00Z.
    assert_eq!(header(&r, "retry-after"), "1388800");
    let (r, _) = h.call("HEAD", &blob, &[], vec![]).await;
    assert_eq!(r.status(), StatusCode::OK);
    let other = h.push_blob("elsewhere/app", b"elsewhere").await;
    let (r, _) = h
        .call(
            "GET",
            &format!("/v2/elsewhere/app/blobs/{other}"),
            &[],
            vec![],
        )
        .await;
    assert_eq!(r.status(), StatusCode::OK);

    registry.flush_traffic().await.unwrap();
    let status = registry.quota("quota").await.unwrap();
    assert_eq!((status.traffic_bytes, status.traffic_limit), (20, Some(20)));
    assert!(status.traffic_limit_is_default);
    let (r, _) = h.call("GET", &blob, &[], vec![]).await;
    assert_eq!(r.status(), StatusCode::TOO_MANY_REQUESTS);

    h.clock.fetch_add(1_388_800, Ordering::SeqCst);
    let (r, _) = h.call("GET", &blob, &[], vec![]).await;
    assert_eq!(r.status(), StatusCode::OK);

    // `UNLIMITED` as the namespace's own limit exempts it from the default.
    h.call("GET", &blob, &[], vec![]).await;
    let (r, _) = h.call("GET", &blob, &[], vec![]).await;
    assert_eq!(r.status(), StatusCode::TOO_MANY_REQUESTS);
    let status = registry
        .set_quota(
            &actor,
            "quota",
            &berth_registry::QuotaUpdate {
                storage_limit: None,
                traffic_limit: Some(Some(berth_registry::quotas::UNLIMITED)),
            },
        )
        .await
        .unwrap();
    assert_eq!(
        (status.traffic_limit, status.traffic_limit_is_default),
        (None, false)
    );
    let (r, _) = h.call("GET", &blob, &[], vec![]).await;
    assert_eq!(r.status(), StatusCode::OK);
}
