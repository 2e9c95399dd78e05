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
    assert_eq!(push_image_to(h, "pub/app").await, 1);
}

/// Pushes a Debian 12 image with `libexample 1.2-3` as `REPOSITORY:v1`
/// and indexes it; returns how many images the workers indexed (none when
/// the same image was indexed for another repository already).
async fn push_image_to(h: &Harness, repository: &str) -> usize {
    let registry = &h.state.registry;
    let repo = RepoName::parse(repository).unwrap();
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
    workers.run_once(10).await.unwrap()
}

/// A test advisory written for this file: `libexample` fixed in
/// `1.2-3+deb12u1`, critical.
const RECORD: &str = r#"{"records": [{"id": "TEST-DEB-1", "modified": "2026-01-01T00:00:00Z",
    "aliases": ["CVE-2099-0001"], "summary": "libexample overflows",
    "severity": [{"type": "CVSS_V3", "score": "CVSS:3.1/AV:N/AC:L/PR:N/UI:N/S:U/C:H/I:H/A:H"}],
    "affected": [{"package": {"ecosystem": "Debian:12", "name": "libexample"},
      "ranges": [{"type": "ECOSYSTEM", "events": [{"introduced": "0"}, {"fixed": "1.2-3+deb12u1"}]}]}]}]}"#;

/// Imports [`RECORD`] over the API, as root.
async fn import_record(h: &Harness) {
    let imported = h
        .call(
            "POST",
            "/api/v1/advisories",
            Some(&basic("root", PASSWORD)),
            RECORD,
        )
        .await;
    assert_eq!(imported.status, 200, "{}", imported.text());
}

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

/// A console request: a GET, or a form's POST from this site, with the
/// session cookie.
async fn console(
    h: &Harness,
    method: &str,
    uri: &str,
    cookie: Option<&str>,
    form: &[(&str, &str)],
) -> support::Answer {
    let mut builder = axum::http::Request::builder()
        .method(method)
        .uri(uri)
        .header("host", support::HOST)
        .header("sec-fetch-site", "same-origin")
        .header("content-type", "application/x-www-form-urlencoded");
    if let Some(cookie) = cookie {
        builder = builder.header("cookie", format!("berth_session={cookie}"));
    }
    let body = serde_urlencoded::to_string(form).unwrap();
    h.send(builder.body(axum::body::Body::from(body)).unwrap())
        .await
}

/// Signs `user` in to the console; returns the cookie and the CSRF token.
async fn console_session(h: &Harness, user: &str) -> (String, String) {
    let answer = console(
        h,
        "POST",
        "/sign-in",
        None,
        &[("username", user), ("password", PASSWORD)],
    )
    .await;
    assert_eq!(answer.status, 303, "{}", answer.text());
    let cookie = answer.header("set-cookie");
    let cookie = cookie
        .split(';')
        .next()
        .unwrap()
        .strip_prefix("berth_session=")
        .unwrap()
        .to_string();
    let page = console(h, "GET", "/tokens", Some(&cookie), &[])
        .await
        .text();
    let token = regex::Regex::new(r#"name="csrf" value="([0-9a-f]{64})""#)
        .unwrap()
        .captures(&page)
        .unwrap()[1]
        .to_string();
    (cookie, token)
}

/// The status of `pub/app:v1`'s vulnerability report, through the API.
async fn status_of_v1(h: &Harness) -> String {
    h.call(
        "GET",
        "/api/v1/images/pub%2Fapp:v1/vulnerabilities",
        Some(&basic("reader", PASSWORD)),
        "",
    )
    .await
    .json()["status"]
        .as_str()
        .unwrap()
        .to_string()
}

/// The console's exemption form's fields.
fn exemption<'a>(csrf: &'a str, image: &'a str, scope: &'a str) -> Vec<(&'a str, &'a str)> {
    vec![
        ("scope", scope),
        ("issue", "TEST-DEB-1"),
        ("reason", "not reachable in this image"),
        ("expires", "30d"),
        ("back", image),
        ("csrf", csrf),
    ]
}

#[tokio::test]
async fn the_console_exempts_a_finding_and_the_verdict_updates() {
    let h = Harness::new().await;
    push_image(&h).await;
    import_record(&h).await;
    assert_eq!(status_of_v1(&h).await, "1 issue");
    let (owner, owner_csrf) = console_session(&h, "owner").await;
    let (reader, reader_csrf) = console_session(&h, "reader").await;
    let (root, _) = console_session(&h, "root").await;
    let image = "/repositories/pub/app/-/images/v1";
    let form_path = format!("{image}/exempt/TEST-DEB-1");

    // The owner is offered the form; a reader is not.
    let page = console(&h, "GET", image, Some(&owner), &[]).await.text();
    assert!(page.contains("1 issue"), "{page}");
    assert!(page.contains(&format!("href=\"{form_path}\"")), "{page}");
    let page = console(&h, "GET", image, Some(&reader), &[]).await.text();
    assert!(!page.contains("/exempt/"), "{page}");
    // The form offers the scopes the caller may change: the whole registry
    // to administrators only.
    let form = console(&h, "GET", &form_path, Some(&owner), &[]).await;
    assert_eq!(form.status, 200, "{}", form.text());
    let text = form.text();
    for scope in [
        "value=\"pub/app@sha256:",
        "value=\"pub/app:v1\"",
        "value=\"pub/app\"",
        "value=\"pub\"",
    ] {
        assert!(text.contains(scope), "{scope}: {text}");
    }
    assert!(!text.contains("value=\"*\""), "{text}");
    assert!(text.contains("libexample"), "{text}");
    let form = console(&h, "GET", &form_path, Some(&root), &[])
        .await
        .text();
    assert!(form.contains("value=\"*\""), "{form}");

    for (cookie, form, status) in [
        (&reader, exemption(&reader_csrf, image, "pub/app:v1"), 403),
        (&owner, exemption("", image, "pub/app:v1"), 403),
        (&owner, exemption(&owner_csrf, image, "*"), 403),
        (&owner, exemption(&owner_csrf, image, "pub/app:"), 400),
    ] {
        let answer = console(&h, "POST", "/exemptions", Some(cookie), &form).await;
        assert_eq!(answer.status, status, "{form:?}: {}", answer.text());
    }
    assert_eq!(
        status_of_v1(&h).await,
        "1 issue",
        "refused forms exempt nothing"
    );
    let made = console(
        &h,
        "POST",
        "/exemptions",
        Some(&owner),
        &exemption(&owner_csrf, image, "pub/app:v1"),
    )
    .await;
    assert_eq!(made.status, 303, "{}", made.text());
    assert_eq!(made.header("location"), image);
    assert_eq!(status_of_v1(&h).await, "No issues");
    let page = console(&h, "GET", image, Some(&owner), &[]).await.text();
    assert!(page.contains("No issues"), "{page}");
    let all = console(&h, "GET", &format!("{image}?all=true"), Some(&owner), &[])
        .await
        .text();
    assert!(
        all.contains("Exempted") && all.contains("TEST-DEB-1"),
        "{all}"
    );

    // The namespace's exemptions, with a remove button for its owners.
    let list = console(&h, "GET", "/namespaces/pub/exemptions", Some(&owner), &[]).await;
    assert_eq!(list.status, 200, "{}", list.text());
    assert!(
        list.text().contains("Remove TEST-DEB-1 in pub/app:v1"),
        "{}",
        list.text()
    );
    let list = console(&h, "GET", "/namespaces/pub/exemptions", Some(&reader), &[])
        .await
        .text();
    assert!(
        list.contains("TEST-DEB-1") && !list.contains("Remove TEST-DEB-1"),
        "{list}"
    );
    let removed = console(
        &h,
        "POST",
        "/exemptions/remove",
        Some(&owner),
        &[
            ("scope", "pub/app:v1"),
            ("issue", "TEST-DEB-1"),
            ("back", "/namespaces/pub/exemptions"),
            ("csrf", &owner_csrf),
        ],
    )
    .await;
    assert_eq!(removed.status, 303, "{}", removed.text());
    assert_eq!(status_of_v1(&h).await, "1 issue");
}

/// The figure and chart of the overview and of a namespace's page.
fn images_with_issues(page: &str) -> String {
    let pattern =
        regex::Regex::new(r#"id="images-with-issues"[^>]*>\s*(?:<strong>(\d+)</strong>)?"#)
            .unwrap();
    let captures = pattern
        .captures(page)
        .unwrap_or_else(|| panic!("no images-with-issues figure: {page}"));
    captures.get(1).map_or("0", |m| m.as_str()).to_string()
}

/// The scan worker records an image's finding counts from the index it has
/// just stored (not read back): with the advisory imported first, the
/// overview counts the image as soon as its one scan is done. No refresh
/// round could have counted it, since a refresh only takes rows that exist.
#[tokio::test]
async fn an_image_scanned_after_the_advisory_is_counted_by_its_scan() {
    let h = Harness::new().await;
    import_record(&h).await;
    let (owner, _) = console_session(&h, "owner").await;
    let page = console(&h, "GET", "/", Some(&owner), &[]).await.text();
    assert_eq!(images_with_issues(&page), "0", "{page}");

    assert_eq!(push_image_to(&h, "pub/app").await, 1);
    let summary = h
        .call(
            "GET",
            "/api/v1/vulnerabilities/summary?namespace=pub",
            Some(&basic("owner", PASSWORD)),
            "",
        )
        .await;
    assert_eq!(summary.status, 200, "{}", summary.text());
    let body = summary.json();
    assert_eq!(body["images_with_issues"], 1, "{body}");
    assert_eq!(body["findings"]["critical"], 1, "{body}");
    assert_eq!(body["total_findings"], 1, "{body}");
    let page = console(&h, "GET", "/", Some(&owner), &[]).await.text();
    assert_eq!(images_with_issues(&page), "1", "{page}");
}

#[tokio::test]
async fn the_overview_counts_images_with_findings_by_severity_for_those_who_see_them() {
    let h = Harness::new().await;
    assert_eq!(push_image_to(&h, "pub/app").await, 1);
    assert_eq!(push_image_to(&h, "priv/app").await, 0, "indexed once");
    let workers = ScanWorkers::new(
        h.state.registry.clone(),
        Indexer::default(),
        ScanOptions::default(),
    );
    let (owner, _) = console_session(&h, "owner").await;
    let (stranger, _) = console_session(&h, "stranger").await;
    // Indexed, no advisory yet: no image has findings.
    let page = console(&h, "GET", "/", Some(&owner), &[]).await.text();
    assert_eq!(images_with_issues(&page), "0", "{page}");

    // An import makes the stored counts stale; the workers' next round
    // assesses the images again.
    import_record(&h).await;
    assert_eq!(workers.run_once(10).await.unwrap(), 0);

    // (who, page, images with issues): a member of both namespaces sees
    // both images; a stranger and an anonymous visitor only the public one.
    for (cookie, path, expected) in [
        (Some(&owner), "/", "2"),
        (Some(&stranger), "/", "1"),
        (None, "/", "1"),
        (Some(&owner), "/namespaces/priv", "1"),
        (Some(&owner), "/namespaces/pub", "1"),
    ] {
        let answer = console(&h, "GET", path, cookie.map(String::as_str), &[]).await;
        assert_eq!(answer.status, 200, "{path}: {}", answer.text());
        let page = answer.text();
        assert_eq!(images_with_issues(&page), expected, "{path} {cookie:?}");
        // The chart names every severity with its number, for screen
        // readers as well as in the picture.
        let critical = if expected == "2" {
            "critical: 2"
        } else {
            "critical: 1"
        };
        assert!(page.contains(critical), "{path}: {page}");
        assert!(
            page.contains("high: 0; medium: 0; low: 0; unknown: 0"),
            "{page}"
        );
        assert!(page.contains("<desc>"), "{page}");
    }

    // The API answers what the console shows, to those who may see it:
    // (caller, query, status, images with issues, namespaces listed).
    let summary = |who: Option<&'static str>, query: &'static str| {
        let h = &h;
        async move {
            let credentials = who.map(|user| basic(user, PASSWORD));
            h.call(
                "GET",
                &format!("/api/v1/vulnerabilities/summary{query}"),
                credentials.as_deref(),
                "",
            )
            .await
        }
    };
    for (who, query, status, images, namespaces) in [
        (None, "", 401, 0, &[][..]),
        (Some("stranger"), "", 200, 1, &["pub"][..]),
        (Some("stranger"), "?namespace=pub", 200, 1, &["pub"][..]),
        (Some("stranger"), "?namespace=priv", 403, 0, &[][..]),
        (Some("reader"), "", 200, 2, &["priv", "pub"][..]),
        (Some("reader"), "?namespace=priv", 200, 1, &["priv"][..]),
        (Some("root"), "", 200, 2, &["priv", "pub"][..]),
        (Some("root"), "?namespace=none-such", 404, 0, &[][..]),
        (Some("root"), "?namespace=Bad", 400, 0, &[][..]),
        (Some("root"), "?severity=high", 400, 0, &[][..]),
    ] {
        let answer = summary(who, query).await;
        assert_eq!(answer.status, status, "{who:?} {query}: {}", answer.text());
        if status != 200 {
            continue;
        }
        let body = answer.json();
        assert_eq!(
            body["images_with_issues"], images,
            "{who:?} {query}: {body}"
        );
        assert_eq!(body["findings"]["critical"], images, "{body}");
        assert_eq!(body["findings"]["high"], 0, "{body}");
        assert_eq!(body["total_findings"], images, "{body}");
        let listed: Vec<&str> = body["namespaces"]
            .as_array()
            .unwrap()
            .iter()
            .map(|n| n["namespace"].as_str().unwrap())
            .collect();
        assert_eq!(listed, namespaces, "{who:?} {query}: {body}");
        assert_eq!(body["namespaces"][0]["images_with_issues"], 1, "{body}");
        assert_eq!(body["namespaces"][0]["findings"]["critical"], 1, "{body}");
    }

    // An exemption of the namespace marks its counts stale; the next round
    // leaves its image out.
    let (root, root_csrf) = console_session(&h, "root").await;
    let made = console(
        &h,
        "POST",
        "/exemptions",
        Some(&root),
        &exemption(&root_csrf, "/namespaces/priv/exemptions", "priv"),
    )
    .await;
    assert_eq!(made.status, 303, "{}", made.text());
    workers.run_once(10).await.unwrap();
    let page = console(&h, "GET", "/", Some(&owner), &[]).await.text();
    assert_eq!(images_with_issues(&page), "1", "{page}");
    let page = console(&h, "GET", "/namespaces/priv", Some(&owner), &[])
        .await
        .text();
    assert_eq!(images_with_issues(&page), "0", "{page}");
    let priv_summary = summary(Some("owner"), "?namespace=priv").await.json();
    assert_eq!(priv_summary["images_with_issues"], 0, "{priv_summary}");
    assert_eq!(priv_summary["namespaces"], serde_json::json!([]));

    // A deleted image (in the trash) is not counted, before any refresh.
    let owner_basic = basic("owner", PASSWORD);
    let digest = h
        .call("GET", "/v2/pub/app/manifests/v1", Some(&owner_basic), "")
        .await
        .header("docker-content-digest");
    let deleted = h
        .call(
            "DELETE",
            &format!("/v2/pub/app/manifests/{digest}"),
            Some(&owner_basic),
            "",
        )
        .await;
    assert!(deleted.status < 300, "{}", deleted.text());
    let page = console(&h, "GET", "/", Some(&owner), &[]).await.text();
    assert_eq!(images_with_issues(&page), "0", "{page}");
    let all = summary(Some("owner"), "").await.json();
    assert_eq!(all["images_with_issues"], 0, "{all}");
}

/// The `(scope, issue)` of every exemption `user` lists through the API
/// (`query` added to each request), following `next_cursor`, and the
/// number of pages read.
async fn list_all_exemptions(
    h: &Harness,
    user: &str,
    query: &str,
) -> (Vec<(String, String)>, usize) {
    let mut seen = Vec::new();
    let mut cursor: Option<String> = None;
    for page in 1..=50 {
        let mut uri = format!("/api/v1/exemptions?limit=2{query}");
        if let Some(cursor) = &cursor {
            uri.push_str(&format!("&cursor={cursor}"));
        }
        let answer = h.call("GET", &uri, Some(&basic(user, PASSWORD)), "").await;
        assert_eq!(answer.status, 200, "{uri}: {}", answer.text());
        let body = answer.json();
        for exemption in body["exemptions"].as_array().unwrap() {
            seen.push((
                exemption["scope"].as_str().unwrap().to_string(),
                exemption["issue"].as_str().unwrap().to_string(),
            ));
        }
        match body["next_cursor"].as_str() {
            Some(next) => cursor = Some(next.to_string()),
            None => return (seen, page),
        }
    }
    panic!("more than 50 pages of exemptions");
}

#[tokio::test]
async fn exemptions_are_listed_a_page_at_a_time_per_namespace_for_those_who_see_it() {
    let h = Harness::new().await;
    let root = basic("root", PASSWORD);
    let made = [
        ("*", "ISSUE-0"),
        ("priv/app", "ISSUE-P"),
        ("pub", "ISSUE-1"),
        ("pub", "ISSUE-2"),
        ("pub/app:v1", "ISSUE-3"),
    ];
    for (scope, issue) in made {
        let body = serde_json::json!({"scope": scope, "issue": issue, "reason": "test"});
        let added = h
            .call("POST", "/api/v1/exemptions", Some(&root), &body.to_string())
            .await;
        assert_eq!(added.status, 201, "{}", added.text());
    }
    let pairs = |indexes: &[usize]| -> Vec<(String, String)> {
        indexes
            .iter()
            .map(|&i| (made[i].0.to_string(), made[i].1.to_string()))
            .collect()
    };
    // (user, query, what they list)
    let cases = [
        ("root", "", pairs(&[0, 1, 2, 3, 4])),
        // A stranger sees the registry-wide ones and the public
        // namespace's, not the private namespace's.
        ("stranger", "", pairs(&[0, 2, 3, 4])),
        ("reader", "&namespace=priv", pairs(&[0, 1])),
        ("reader", "&namespace=pub", pairs(&[0, 2, 3, 4])),
        ("stranger", "&namespace=pub", pairs(&[0, 2, 3, 4])),
    ];
    for (user, query, expected) in cases {
        let (seen, pages) = list_all_exemptions(&h, user, query).await;
        assert_eq!(seen, expected, "{user} {query}");
        assert!(pages >= expected.len() / 2, "{user} {query}: {pages} pages");
    }
    // A private namespace's exemptions are not listed for a stranger.
    let refused = h
        .call(
            "GET",
            "/api/v1/exemptions?namespace=priv",
            Some(&basic("stranger", PASSWORD)),
            "",
        )
        .await;
    assert!(
        matches!(refused.status, 403 | 404),
        "{}: {}",
        refused.status,
        refused.text()
    );
    // Malformed queries name the parameter.
    for (query, names) in [
        ("limit=0", "limit"),
        ("limit=1001", "limit"),
        ("cursor=bm90LWEtY3Vyc29y", "cursor"),
        ("namespace=Not%20A%20Name", "namespace"),
        ("colour=blue", "colour"),
    ] {
        let answer = h
            .call(
                "GET",
                &format!("/api/v1/exemptions?{query}"),
                Some(&root),
                "",
            )
            .await;
        assert_eq!(answer.status, 400, "{query}: {}", answer.text());
        assert!(answer.text().contains(names), "{query}: {}", answer.text());
    }

    // The console's page of a namespace lists a page of 100 and links to
    // the next one.
    for n in 0..120 {
        let body = serde_json::json!({"scope": "pub/app", "issue": format!("BULK-{n:03}"), "reason": "test"});
        let added = h
            .call("POST", "/api/v1/exemptions", Some(&root), &body.to_string())
            .await;
        assert_eq!(added.status, 201, "{}", added.text());
    }
    let (cookie, _) = console_session(&h, "owner").await;
    let first = console(&h, "GET", "/namespaces/pub/exemptions", Some(&cookie), &[])
        .await
        .text();
    let next = regex::Regex::new(r#"href="(/namespaces/pub/exemptions\?cursor=[^"]+)""#)
        .unwrap()
        .captures(&first)
        .unwrap_or_else(|| panic!("no next page link: {first}"))[1]
        .replace("&amp;", "&");
    assert!(first.contains("BULK-000") && !first.contains("BULK-119"));
    assert!(!first.contains("ISSUE-P"), "another namespace's exemption");
    let second = console(&h, "GET", &next, Some(&cookie), &[]).await.text();
    assert!(
        second.contains("BULK-119") && !second.contains("BULK-000"),
        "{second}"
    );
    assert!(!second.contains("/namespaces/pub/exemptions?cursor="));
}
