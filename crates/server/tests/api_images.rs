//! The image endpoints of the management API through
//! `app(state).oneshot(...)`: listings (sizes, platforms, tags, paging,
//! the tag filter), inspection, server-side tagging into another
//! namespace (an index with its children), untagging, deletion with its
//! events, and the 400s for bad input. Who may call them is
//! `api_matrix.rs`.

mod support;

use berth_meta::EventKind;
use support::{basic, Harness, PASSWORD};

const INDEX: &str = "application/vnd.oci.image.index.v1+json";

fn admin() -> String {
    basic("root", PASSWORD)
}

fn digests(listing: &serde_json::Value) -> Vec<String> {
    listing["images"]
        .as_array()
        .unwrap_or_else(|| panic!("no images in {listing}"))
        .iter()
        .map(|image| image["digest"].as_str().unwrap().to_string())
        .collect()
}

/// Pushes two single-platform images and an index of both to `repository`;
/// returns (amd64, arm64, index) digests.
async fn push_multi_arch(h: &Harness, repository: &str) -> (String, String, String) {
    let amd64 = h.push_image(repository, "amd64", "amd64").await;
    let arm64 = h.push_image(repository, "arm64", "arm64").await;
    let child = |digest: &str, architecture: &str| {
        serde_json::json!({
            "mediaType": "application/vnd.oci.image.manifest.v1+json",
            "digest": digest,
            "size": 0,
            "platform": {"os": "linux", "architecture": architecture},
        })
    };
    // The children's sizes must be their manifests' sizes.
    let size_of = |digest: &str| {
        let digest = digest.to_string();
        async move {
            let answer = h
                .call(
                    "GET",
                    &format!(
                        "/api/v1/repositories/{}/images/{digest}",
                        repository.replace('/', "%2F")
                    ),
                    Some(&admin()),
                    "",
                )
                .await;
            assert_eq!(answer.status, 200, "{}", answer.text());
            answer.json()["manifest_size"].as_u64().unwrap()
        }
    };
    let mut children = vec![child(&amd64, "amd64"), child(&arm64, "arm64")];
    children[0]["size"] = size_of(&amd64).await.into();
    children[1]["size"] = size_of(&arm64).await.into();
    let index = serde_json::json!({
        "schemaVersion": 2,
        "mediaType": INDEX,
        "manifests": children,
    });
    let index = h
        .push_manifest(
            repository,
            "multi",
            INDEX,
            serde_json::to_vec(&index).unwrap(),
        )
        .await;
    (amd64, arm64, index)
}

#[tokio::test]
async fn images_are_listed_with_sizes_platforms_and_tags_and_paged() {
    let h = Harness::new().await;
    let (amd64, arm64, index) = push_multi_arch(&h, "pub/multi").await;
    let listing = h
        .call(
            "GET",
            "/api/v1/repositories/pub%2Fmulti/images?tagged=any",
            Some(&admin()),
            "",
        )
        .await;
    assert_eq!(listing.status, 200, "{}", listing.text());
    let listing = listing.json();
    let mut listed = digests(&listing);
    listed.sort();
    let mut expected = vec![amd64.clone(), arm64.clone(), index.clone()];
    expected.sort();
    assert_eq!(listed, expected);
    let image = |digest: &str| {
        listing["images"]
            .as_array()
            .unwrap()
            .iter()
            .find(|i| i["digest"] == digest)
            .unwrap()
            .clone()
    };
    // Each image: its config and one layer (see `push_image`); the index:
    // both children's blobs, each once.
    let blob_sizes = |seed: &str| {
        let config = format!(
            r#"{{"architecture":"amd64","os":"linux","created":"2026-01-02T03:04:05Z","config":{{"Cmd":["{seed}"]}},"rootfs":{{"type":"layers","diff_ids":[]}}}}"#
        );
        (config.len() + format!("layer of {seed}").len()) as u64
    };
    assert_eq!(image(&amd64)["size"], blob_sizes("amd64"));
    assert_eq!(image(&arm64)["size"], blob_sizes("arm64"));
    assert_eq!(
        image(&index)["size"],
        blob_sizes("amd64") + blob_sizes("arm64")
    );
    assert_eq!(image(&amd64)["tags"], serde_json::json!(["amd64"]));
    assert_eq!(image(&index)["tags"], serde_json::json!(["multi"]));
    assert_eq!(image(&amd64)["created"], "2026-01-02T03:04:05Z");
    assert_eq!(
        image(&amd64)["platforms"],
        serde_json::json!([{"os": "linux", "architecture": "amd64"}])
    );
    assert_eq!(
        image(&index)["platforms"],
        serde_json::json!([
            {"os": "linux", "architecture": "amd64", "digest": amd64},
            {"os": "linux", "architecture": "arm64", "digest": arm64},
        ])
    );
    assert_eq!(image(&index)["media_type"], INDEX);
    assert!(image(&index)["pushed_at"].as_str().unwrap().ends_with('Z'));

    // Pages of one, through their cursors, list the same in the same order.
    let mut paged = Vec::new();
    let mut uri = "/api/v1/repositories/pub%2Fmulti/images?tagged=any&limit=1".to_string();
    for _ in 0..10 {
        let page = h.call("GET", &uri, Some(&admin()), "").await;
        assert_eq!(page.status, 200, "{}", page.text());
        let page = page.json();
        paged.extend(digests(&page));
        match page["next_cursor"].as_str() {
            Some(cursor) => {
                uri = format!(
                    "/api/v1/repositories/pub%2Fmulti/images?tagged=any&limit=1&cursor={cursor}"
                )
            }
            None => break,
        }
    }
    assert_eq!(paged, digests(&listing));

    // Untagging the children leaves them listed only as untagged.
    for tag in ["amd64", "arm64"] {
        let answer = h
            .call(
                "DELETE",
                &format!("/api/v1/repositories/pub%2Fmulti/tags/{tag}"),
                Some(&admin()),
                "",
            )
            .await;
        assert_eq!(answer.status, 204, "{}", answer.text());
    }
    let tagged = h
        .call(
            "GET",
            "/api/v1/repositories/pub%2Fmulti/images",
            Some(&admin()),
            "",
        )
        .await
        .json();
    assert_eq!(digests(&tagged), std::slice::from_ref(&index));
    let untagged = h
        .call(
            "GET",
            "/api/v1/repositories/pub%2Fmulti/images?tagged=false",
            Some(&admin()),
            "",
        )
        .await
        .json();
    let mut untagged = digests(&untagged);
    untagged.sort();
    let mut children = vec![amd64, arm64];
    children.sort();
    assert_eq!(untagged, children);
}

#[tokio::test]
async fn an_image_is_inspected_by_tag_or_digest() {
    let h = Harness::new().await;
    let (amd64, _, index) = push_multi_arch(&h, "priv/inspect").await;
    let by_tag = h
        .call(
            "GET",
            "/api/v1/repositories/priv%2Finspect/images/amd64",
            Some(&admin()),
            "",
        )
        .await;
    assert_eq!(by_tag.status, 200, "{}", by_tag.text());
    let by_digest = h
        .call(
            "GET",
            &format!("/api/v1/repositories/priv%2Finspect/images/{amd64}"),
            Some(&admin()),
            "",
        )
        .await;
    assert_eq!(by_tag.json(), by_digest.json());
    let image = by_tag.json();
    assert_eq!(image["digest"], amd64);
    assert_eq!(image["os"], "linux");
    assert_eq!(image["architecture"], "amd64");
    assert_eq!(image["config"]["cmd"], serde_json::json!(["amd64"]));
    assert_eq!(
        image["config_blob"]["media_type"],
        "application/vnd.oci.image.config.v1+json"
    );
    assert_eq!(image["layers"].as_array().unwrap().len(), 1);
    assert_eq!(image["layers"][0]["size"], "layer of amd64".len() as u64);
    assert_eq!(image["manifest"]["schemaVersion"], 2);
    assert_eq!(image["children"], serde_json::json!([]));

    // A referrer shows under its artifact type.
    let signature = serde_json::json!({
        "schemaVersion": 2,
        "mediaType": "application/vnd.oci.image.manifest.v1+json",
        "artifactType": "application/vnd.example.signature",
        "config": {
            "mediaType": "application/vnd.oci.empty.v1+json",
            "digest": "sha256:44136fa355b3678a1146ad16f7e8649e94fb4fc21fe77e8310c060f61caaff8a",
            "size": 2,
        },
        "layers": [],
        "subject": {
            "mediaType": "application/vnd.oci.image.manifest.v1+json",
            "digest": amd64,
            "size": image["manifest_size"],
        },
    });
    let empty = h
        .send_raw(
            "POST",
            "/v2/priv/inspect/blobs/uploads/?digest=sha256:44136fa355b3678a1146ad16f7e8649e94fb4fc21fe77e8310c060f61caaff8a",
            "application/octet-stream",
            b"{}".to_vec(),
        )
        .await;
    assert_eq!(empty.status, 201, "{}", empty.text());
    let signature = h
        .push_manifest(
            "priv/inspect",
            "sig",
            "application/vnd.oci.image.manifest.v1+json",
            serde_json::to_vec(&signature).unwrap(),
        )
        .await;
    let image = h
        .call(
            "GET",
            "/api/v1/repositories/priv%2Finspect/images/amd64",
            Some(&admin()),
            "",
        )
        .await
        .json();
    assert_eq!(
        image["referrers"]["application/vnd.example.signature"][0]["digest"],
        signature
    );

    let index = h
        .call(
            "GET",
            &format!("/api/v1/repositories/priv%2Finspect/images/{index}"),
            Some(&admin()),
            "",
        )
        .await
        .json();
    assert_eq!(index["children"].as_array().unwrap().len(), 2);
    assert_eq!(index["children"][0]["digest"], amd64);
    assert_eq!(index["children"][0]["platform"]["architecture"], "amd64");
    assert!(index.get("config").is_none());

    let missing = h
        .call(
            "GET",
            "/api/v1/repositories/priv%2Finspect/images/nothing",
            Some(&admin()),
            "",
        )
        .await;
    missing.assert_error("not_found", "an unknown tag");
    let missing = h
        .call(
            "GET",
            "/api/v1/repositories/priv%2Fnone/images",
            Some(&admin()),
            "",
        )
        .await;
    missing.assert_error("not_found", "an unknown repository");
}

/// Tagging an index into another namespace mounts and stores its children
/// there too, so it can be pulled from there through `/v2/`; untagging and
/// deleting go through the same domain path as the OCI API, events included.
#[tokio::test]
async fn images_are_tagged_across_namespaces_untagged_and_deleted() {
    let h = Harness::new().await;
    let (amd64, arm64, index) = push_multi_arch(&h, "pub/src").await;
    let tagged = h
        .call(
            "PUT",
            "/api/v1/repositories/priv%2Fcopy%2Fnested/tags/v1",
            Some(&admin()),
            r#"{"source_repository":"pub/src","source_reference":"multi"}"#,
        )
        .await;
    assert_eq!(tagged.status, 200, "{}", tagged.text());
    assert_eq!(
        tagged.json(),
        serde_json::json!({"repository": "priv/copy/nested", "tag": "v1", "digest": index})
    );
    for digest in [&index, &amd64, &arm64] {
        let pulled = h
            .send_raw(
                "GET",
                &format!("/v2/priv/copy/nested/manifests/{digest}"),
                "application/json",
                Vec::new(),
            )
            .await;
        assert_eq!(pulled.status, 200, "{digest}: {}", pulled.text());
    }
    let child = h
        .call(
            "GET",
            &format!("/api/v1/repositories/priv%2Fcopy%2Fnested/images/{amd64}"),
            Some(&admin()),
            "",
        )
        .await
        .json();
    let layer = child["layers"][0]["digest"].as_str().unwrap().to_string();
    let blob = h
        .send_raw(
            "GET",
            &format!("/v2/priv/copy/nested/blobs/{layer}"),
            "application/json",
            Vec::new(),
        )
        .await;
    assert_eq!(blob.status, 200);
    assert_eq!(blob.body, b"layer of amd64");

    // Tagging by digest within the same repository.
    let again = h
        .call(
            "PUT",
            "/api/v1/repositories/priv%2Fcopy%2Fnested/tags/v2",
            Some(&admin()),
            &format!(r#"{{"source_repository":"priv/copy/nested","source_reference":"{index}"}}"#),
        )
        .await;
    assert_eq!(again.status, 200, "{}", again.text());

    let untag = h
        .call(
            "DELETE",
            "/api/v1/repositories/priv%2Fcopy%2Fnested/tags/v1",
            Some(&admin()),
            "",
        )
        .await;
    assert_eq!(untag.status, 204);
    let untag = h
        .call(
            "DELETE",
            "/api/v1/repositories/priv%2Fcopy%2Fnested/tags/v1",
            Some(&admin()),
            "",
        )
        .await;
    untag.assert_error("not_found", "a tag removed twice");

    // A child an index lists cannot go first.
    let refused = h
        .call(
            "DELETE",
            &format!("/api/v1/repositories/priv%2Fcopy%2Fnested/images/{amd64}"),
            Some(&admin()),
            "",
        )
        .await;
    refused.assert_error("conflict", "deleting a listed child");

    let position = h.state.registry.last_event_position().await.unwrap();
    let deleted = h
        .call(
            "DELETE",
            "/api/v1/repositories/priv%2Fcopy%2Fnested/images/v2",
            Some(&admin()),
            "",
        )
        .await;
    assert_eq!(deleted.status, 200, "{}", deleted.text());
    assert_eq!(deleted.json()["digest"], index);
    let events = h
        .state
        .registry
        .read_events(&berth_meta::EventCursor::after(position), 100)
        .await
        .unwrap();
    let kinds: Vec<EventKind> = events.events.iter().map(|e| e.kind).collect();
    // Deleted into the trash: `manifest.deleted` comes when it expires.
    assert_eq!(kinds, [EventKind::TagDeleted, EventKind::ManifestTrashed]);
    assert_eq!(events.events[1].actor.name.as_deref(), Some("root"));
    let gone = h
        .send_raw(
            "GET",
            &format!("/v2/priv/copy/nested/manifests/{index}"),
            "application/json",
            Vec::new(),
        )
        .await;
    assert_eq!(gone.status, 404);
    // The source is untouched.
    let source = h
        .call(
            "GET",
            "/api/v1/repositories/pub%2Fsrc/images?tagged=any",
            Some(&admin()),
            "",
        )
        .await
        .json();
    assert_eq!(digests(&source).len(), 3);
}

#[tokio::test]
async fn bad_image_requests_are_400_saying_what_was_wrong() {
    let h = Harness::new().await;
    h.push_image("pub/app", "latest", "x").await;
    let cursor_elsewhere = {
        h.push_image("pub/other", "a", "a").await;
        h.push_image("pub/other", "b", "b").await;
        let page = h
            .call(
                "GET",
                "/api/v1/repositories/pub%2Fother/images?limit=1",
                Some(&admin()),
                "",
            )
            .await
            .json();
        page["next_cursor"].as_str().unwrap().to_string()
    };
    // (method, path, body, start of the message)
    let table: Vec<(&str, String, &str, &str)> = vec![
        (
            "GET",
            "/api/v1/repositories/Pub%2Fapp/images".into(),
            "",
            "path parameter repository",
        ),
        (
            "GET",
            "/api/v1/repositories/pub%2F%2Fapp/images".into(),
            "",
            "path parameter repository",
        ),
        (
            "GET",
            "/api/v1/repositories/pub%2Fapp/images/sha256:abc".into(),
            "",
            "path parameter reference",
        ),
        (
            "GET",
            "/api/v1/repositories/pub%2Fapp/images/-x".into(),
            "",
            "path parameter reference",
        ),
        (
            "GET",
            "/api/v1/repositories/pub%2Fapp/images?limit=1001".into(),
            "",
            "query parameter limit",
        ),
        (
            "GET",
            "/api/v1/repositories/pub%2Fapp/images?limit=0".into(),
            "",
            "query parameter limit",
        ),
        (
            "GET",
            "/api/v1/repositories/pub%2Fapp/images?limit=x".into(),
            "",
            "query parameter limit:",
        ),
        (
            "GET",
            "/api/v1/repositories/pub%2Fapp/images?sort=name".into(),
            "",
            "query parameter sort: unknown field",
        ),
        (
            "GET",
            "/api/v1/repositories/pub%2Fapp/images?tagged=maybe".into(),
            "",
            "query parameter tagged: unknown variant",
        ),
        (
            "GET",
            "/api/v1/repositories/pub%2Fapp/images?cursor=nonsense".into(),
            "",
            "query parameter cursor",
        ),
        (
            "GET",
            format!("/api/v1/repositories/pub%2Fapp/images?cursor={cursor_elsewhere}"),
            "",
            "query parameter cursor",
        ),
        (
            "PUT",
            "/api/v1/repositories/pub%2Fapp/tags/a:b".into(),
            r#"{"source_repository":"pub/app","source_reference":"latest"}"#,
            "path parameter tag",
        ),
        (
            "PUT",
            "/api/v1/repositories/pub%2Fapp/tags/v1".into(),
            r#"{"source_repository":"pub/app","source_reference":"latest","x":1}"#,
            "invalid request body: x: unknown field",
        ),
        (
            "PUT",
            "/api/v1/repositories/pub%2Fapp/tags/v1".into(),
            r#"{"source_repository":"pub//app","source_reference":"latest"}"#,
            "invalid request body: source_repository",
        ),
        (
            "PUT",
            "/api/v1/repositories/pub%2Fapp/tags/v1".into(),
            r#"{"source_repository":"pub/app","source_reference":"sha256:0"}"#,
            "invalid request body: source_reference",
        ),
    ];
    for (method, path, body, start) in &table {
        let answer = h.call(method, path, Some(&admin()), body).await;
        answer.assert_error("invalid_request", path);
        let message = answer.json()["message"].as_str().unwrap().to_string();
        assert!(message.starts_with(start), "{path}: {message}");
    }
}

/// Manifest GETs are pulls, HEADs are not; counts appear once the node
/// flushes them, per image and per repository, and repositories sort by
/// them.
#[tokio::test]
async fn pulls_are_counted_per_image_and_repository_after_a_flush() {
    let h = Harness::new().await;
    let pulled = h.push_image("pub/pulled", "latest", "pulled").await;
    let other = h.push_image("pub/pulled", "other", "other").await;
    h.push_image("pub/quiet", "latest", "quiet").await;
    for (method, uri) in [
        ("GET", "/v2/pub/pulled/manifests/latest".to_string()),
        ("GET", format!("/v2/pub/pulled/manifests/{pulled}")),
        ("GET", "/v2/pub/pulled/manifests/latest".to_string()),
        ("HEAD", "/v2/pub/pulled/manifests/latest".to_string()),
        ("HEAD", "/v2/pub/quiet/manifests/latest".to_string()),
    ] {
        let answer = h.call(method, &uri, Some(&admin()), "").await;
        assert_eq!(answer.status, 200, "{method} {uri}: {}", answer.text());
    }
    let listing = || async {
        let answer = h
            .call(
                "GET",
                "/api/v1/repositories/pub%2Fpulled/images",
                Some(&admin()),
                "",
            )
            .await;
        assert_eq!(answer.status, 200, "{}", answer.text());
        let listing = answer.json();
        let figures = |digest: &str| {
            let image = listing["images"]
                .as_array()
                .unwrap()
                .iter()
                .find(|i| i["digest"] == digest)
                .unwrap()
                .clone();
            (
                image["pull_count"].as_u64().unwrap(),
                image["last_pulled"].is_string(),
            )
        };
        (figures(&pulled), figures(&other))
    };
    // Counted in memory only, until the flush.
    assert_eq!(listing().await, ((0, false), (0, false)));
    assert_eq!(h.state.registry.flush_pulls().await.unwrap(), 1);
    assert_eq!(listing().await, ((3, true), (0, false)));

    let repositories = h
        .call(
            "GET",
            "/api/v1/repositories?namespace=pub&sort=pulls",
            Some(&admin()),
            "",
        )
        .await;
    assert_eq!(repositories.status, 200, "{}", repositories.text());
    let figures: Vec<(String, u64, bool)> = repositories.json()["repositories"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| {
            (
                r["name"].as_str().unwrap().to_string(),
                r["pull_count"].as_u64().unwrap(),
                r["last_pull"].is_string(),
            )
        })
        .collect();
    assert_eq!(
        figures,
        vec![
            ("pub/pulled".to_string(), 3, true),
            ("pub/quiet".to_string(), 0, false)
        ]
    );
    // A second flush with nothing counted since stores nothing.
    assert_eq!(h.state.registry.flush_pulls().await.unwrap(), 0);
}

#[tokio::test]
async fn tags_are_listed_searched_sorted_and_paged() {
    let h = Harness::new().await;
    let small = h.push_image("pub/app", "v1.0", "small").await;
    h.push_image("pub/app", "v1.1", "small").await;
    let large = h
        .push_image("pub/app", "v2.0", "a much larger image's seed")
        .await;
    h.push_image("pub/app", "latest", "a much larger image's seed")
        .await;
    let reader = basic("reader", PASSWORD);
    let list = |query: &str| {
        let h = &h;
        let reader = reader.clone();
        let uri = format!("/api/v1/repositories/pub%2Fapp/tags{query}");
        async move { h.call("GET", &uri, Some(&reader), "").await }
    };
    let names = |body: &serde_json::Value| -> Vec<String> {
        body["tags"]
            .as_array()
            .unwrap()
            .iter()
            .map(|row| row["tag"].as_str().unwrap().to_string())
            .collect()
    };
    let all = list("").await;
    assert_eq!(all.status, 200, "{}", all.text());
    let body = all.json();
    assert_eq!(names(&body), ["latest", "v1.0", "v1.1", "v2.0"]);
    assert_eq!(body["tags"][0]["image"]["digest"], large.as_str());
    assert!(body["tags"][0]["tag_pushed_at"].is_string());
    assert!(body.get("next_cursor").is_none(), "{body}");
    assert_eq!(names(&list("?q=v1").await.json()), ["v1.0", "v1.1"]);
    // Pushed within a second or two of each other, so the times may tie:
    // newest first is oldest first reversed, ties by name either way.
    let oldest = names(&list("?sort=oldest").await.json());
    let mut newest = names(&list("?sort=newest").await.json());
    newest.reverse();
    assert_eq!(newest, oldest);
    let by_size = list("?sort=size").await.json();
    assert_eq!(names(&by_size)[..2], ["v2.0", "latest"]);
    assert_eq!(by_size["tags"][3]["image"]["digest"], small.as_str());
    // Pages of one follow their cursor through every tag once.
    let mut paged = Vec::new();
    let mut query = "?sort=oldest&limit=1".to_string();
    for _ in 0..10 {
        let page = list(&query).await.json();
        paged.extend(names(&page));
        let Some(cursor) = page["next_cursor"].as_str() else {
            break;
        };
        query = format!("?sort=oldest&limit=1&cursor={cursor}");
    }
    assert_eq!(paged, oldest);
    // A cursor of another sort, a sort that is none, too long a search.
    let page = list("?sort=oldest&limit=1").await.json();
    let cursor = page["next_cursor"].as_str().unwrap();
    list(&format!("?sort=newest&cursor={cursor}"))
        .await
        .assert_error("invalid_request", "another sort's cursor");
    list("?sort=colour")
        .await
        .assert_error("invalid_request", "no such sort");
    list(&format!("?q={}", "a".repeat(129)))
        .await
        .assert_error("invalid_request", "too long a search");
    let missing = h
        .call(
            "GET",
            "/api/v1/repositories/pub%2Fnone/tags",
            Some(&admin()),
            "",
        )
        .await;
    assert_eq!(missing.status, 404, "{}", missing.text());
}
