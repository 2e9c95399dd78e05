//! The web console through `app(state).oneshot(...)`, without sockets:
//! the security headers of every page, sign-in and its cookie, CSRF
//! refusals, sessions that end (signed out, expired, idle, user disabled),
//! who sees which namespace, error pages in HTML, and the pages' content
//! (pull commands, a token's secret shown once).

mod support;

use axum::body::Body;
use axum::http::Request;
use berth_auth::store::issue_session;
use support::{Answer, Harness, HOST, PASSWORD};
use time::{Duration, OffsetDateTime};

/// A form's fields, or a request's extra headers.
type Fields<'a> = &'a [(&'a str, &'a str)];

const CSP: &str = "default-src 'self'; frame-ancestors 'none'; form-action 'self'; base-uri 'none'";

/// A browser's request: a GET, or a form's POST from this site, with the
/// session cookie when given.
async fn browse(
    h: &Harness,
    method: &str,
    uri: &str,
    cookie: Option<&str>,
    form: &[(&str, &str)],
    extra: &[(&str, &str)],
) -> Answer {
    let mut builder = Request::builder()
        .method(method)
        .uri(uri)
        .header("host", HOST);
    if method == "POST" {
        builder = builder.header("content-type", "application/x-www-form-urlencoded");
        let own_site = extra
            .iter()
            .any(|(name, _)| *name == "no-fetch-site" || *name == "sec-fetch-site");
        if !own_site {
            builder = builder.header("sec-fetch-site", "same-origin");
        }
    }
    if let Some(cookie) = cookie {
        builder = builder.header("cookie", format!("berth_session={cookie}"));
    }
    for (name, value) in extra {
        if *name != "no-fetch-site" {
            builder = builder.header(*name, *value);
        }
    }
    let body = serde_urlencoded::to_string(form).unwrap();
    h.send(builder.body(Body::from(body)).unwrap()).await
}

async fn get(h: &Harness, uri: &str, cookie: Option<&str>) -> Answer {
    browse(h, "GET", uri, cookie, &[], &[]).await
}

/// Signs `user` in; returns the session cookie's value.
async fn sign_in(h: &Harness, user: &str) -> String {
    let answer = browse(
        h,
        "POST",
        "/sign-in",
        None,
        &[("username", user), ("password", PASSWORD), ("next", "/")],
        &[],
    )
    .await;
    assert_eq!(answer.status, 303, "sign-in of {user}: {}", answer.text());
    let cookie = answer.header("set-cookie");
    cookie
        .split(';')
        .next()
        .and_then(|pair| pair.strip_prefix("berth_session="))
        .unwrap_or_else(|| panic!("no session cookie in {cookie}"))
        .to_string()
}

/// The CSRF token in the forms of the page at `uri`.
async fn csrf(h: &Harness, uri: &str, cookie: &str) -> String {
    let page = get(h, uri, Some(cookie)).await;
    let pattern = regex::Regex::new(r#"name="csrf" value="([0-9a-f]{64})""#).unwrap();
    pattern
        .captures(&page.text())
        .unwrap_or_else(|| panic!("no CSRF token on {uri}: {}", page.text()))[1]
        .to_string()
}

fn assert_html(answer: &Answer, context: &str) {
    assert_eq!(
        answer.header("content-type"),
        "text/html; charset=utf-8",
        "{context}"
    );
    let text = answer.text();
    assert!(text.starts_with("<!DOCTYPE html>"), "{context}: {text}");
    // The policy forbids inline script and style: none may be written.
    assert!(!text.contains("style="), "{context}: a style attribute");
    assert!(!text.contains("<style"), "{context}: a style element");
    let scripts = regex::Regex::new(r"<script[^>]*>").unwrap();
    for tag in scripts.find_iter(&text) {
        assert!(
            tag.as_str().contains(" src="),
            "{context}: inline {}",
            tag.as_str()
        );
    }
}

fn assert_secure_headers(answer: &Answer, context: &str) {
    assert_eq!(answer.header("content-security-policy"), CSP, "{context}");
    assert_eq!(
        answer.header("x-content-type-options"),
        "nosniff",
        "{context}"
    );
    assert_eq!(answer.header("x-frame-options"), "DENY", "{context}");
    assert_eq!(answer.header("referrer-policy"), "same-origin", "{context}");
}

async fn harness_with_images() -> (Harness, String) {
    let h = Harness::new().await;
    let digest = h.push_image("pub/app", "v1", "one").await;
    h.push_image("pub/app", "v2", "two").await;
    h.push_image("priv/secret", "v1", "three").await;
    (h, digest)
}

#[tokio::test]
async fn every_page_is_html_with_the_security_headers() {
    let (h, digest) = harness_with_images().await;
    let root = sign_in(&h, "root").await;
    let by_digest = format!("/repositories/pub/app/-/images/{digest}");
    let pages = [
        ("/", 200),
        ("/namespaces", 200),
        ("/namespaces/pub", 200),
        ("/namespaces/priv", 200),
        ("/repositories/pub/app", 200),
        ("/repositories/pub/app?tagged=false", 200),
        ("/repositories/pub/app/-/images/v1", 200),
        (by_digest.as_str(), 200),
        ("/tokens", 200),
        ("/admin/users", 200),
        ("/nowhere", 404),
        ("/repositories/pub/app/-/images/missing", 404),
    ];
    for (uri, status) in pages {
        let answer = get(&h, uri, Some(&root)).await;
        assert_eq!(answer.status, status, "{uri}: {}", answer.text());
        assert_html(&answer, uri);
        assert_secure_headers(&answer, uri);
        assert_eq!(answer.header("cache-control"), "no-store", "{uri}");
    }
    // Anonymous visitors: the sign-in page, the public pages, and the
    // redirects to sign in carry the headers too.
    for (uri, status) in [
        ("/", 200),
        ("/sign-in", 200),
        ("/namespaces/pub", 200),
        ("/namespaces/priv", 303),
        ("/tokens", 303),
    ] {
        let answer = get(&h, uri, None).await;
        assert_eq!(answer.status, status, "anonymous {uri}: {}", answer.text());
        assert_secure_headers(&answer, uri);
        if status == 200 {
            assert_html(&answer, uri);
        }
    }
    for asset in ["/static/console.css", "/static/console.js"] {
        let answer = get(&h, asset, None).await;
        assert_eq!(answer.status, 200, "{asset}");
        assert_secure_headers(&answer, asset);
        assert!(
            answer.header("cache-control").contains("max-age"),
            "{asset}"
        );
    }
    // The other surfaces keep their own answers.
    assert_eq!(get(&h, "/healthz", None).await.text(), "ok");
    let api = get(&h, "/api/v1/nowhere", None).await;
    assert_eq!(api.header("content-type"), "application/json");
}

#[tokio::test]
async fn error_pages_are_html_a_person_reads() {
    let (h, _) = harness_with_images().await;
    let stranger = sign_in(&h, "stranger").await;
    for (method, uri, status, words) in [
        ("GET", "/nowhere", 404, "Not found"),
        ("GET", "/namespaces/priv", 403, "Not allowed"),
        ("GET", "/repositories/priv/secret", 403, "Not allowed"),
        ("GET", "/sign-out", 405, "Not possible here"),
    ] {
        let answer = browse(&h, method, uri, Some(&stranger), &[], &[]).await;
        assert_eq!(answer.status, status, "{uri}: {}", answer.text());
        assert_html(&answer, uri);
        assert!(answer.text().contains(words), "{uri}: {}", answer.text());
        assert!(
            !answer.text().contains("\"code\""),
            "{uri}: JSON in the page"
        );
    }
}

#[tokio::test]
async fn signing_in_sets_a_strict_http_only_cookie() {
    let h = Harness::new().await;
    let answer = browse(
        &h,
        "POST",
        "/sign-in",
        None,
        &[
            ("username", "reader"),
            ("password", PASSWORD),
            ("next", "/namespaces"),
        ],
        &[],
    )
    .await;
    assert_eq!(answer.status, 303, "{}", answer.text());
    assert_eq!(answer.header("location"), "/namespaces");
    let cookie = answer.header("set-cookie");
    for attribute in ["HttpOnly", "SameSite=Strict", "Path=/", "Max-Age="] {
        assert!(cookie.contains(attribute), "{attribute} in {cookie}");
    }
    assert!(!cookie.contains("Secure"), "plain HTTP: {cookie}");
    assert!(cookie.starts_with("berth_session=berth_cs_"), "{cookie}");

    // A wrong password: the page says so, and no cookie is set.
    let wrong = browse(
        &h,
        "POST",
        "/sign-in",
        None,
        &[("username", "reader"), ("password", "wrong"), ("next", "/")],
        &[],
    )
    .await;
    assert_eq!(wrong.status, 401);
    assert!(wrong.header("set-cookie").is_empty());
    assert!(wrong.text().contains("Wrong user name or password"));
    // Another site's `next` is not followed.
    let elsewhere = browse(
        &h,
        "POST",
        "/sign-in",
        None,
        &[
            ("username", "reader"),
            ("password", PASSWORD),
            ("next", "//evil.example/"),
        ],
        &[],
    )
    .await;
    assert_eq!(elsewhere.header("location"), "/");
    // An access token's secret signs nobody in to the console.
    let robot = browse(
        &h,
        "POST",
        "/sign-in",
        None,
        &[("username", "robot"), ("password", &h.robot)],
        &[],
    )
    .await;
    assert_eq!(robot.status, 401, "{}", robot.text());

    // Each attempt is in the audit trail, the refused ones too (the form
    // carries no Authorization header for the refusals layer to see), and
    // no password is.
    h.state.registry.flush_accesses().await.unwrap();
    let trail = h
        .state
        .registry
        .audit(&berth_registry::AuditQuery {
            limit: 100,
            ..Default::default()
        })
        .await
        .unwrap();
    let attempts: Vec<(String, String, String)> = trail
        .iter()
        .rev()
        .filter(|r| r.record.resource.as_deref() == Some("POST /sign-in"))
        .map(|r| {
            (
                r.record.actor_name.clone().unwrap_or_default(),
                r.record.action.clone(),
                r.record.outcome.clone(),
            )
        })
        .collect();
    let row = |user: &str, action: &str, outcome: &str| {
        (user.to_string(), action.to_string(), outcome.to_string())
    };
    assert_eq!(
        attempts,
        vec![
            row("reader", "session.started", "ok"),
            row("reader", "request.refused", "refused 401"),
            row("reader", "session.started", "ok"),
            row("robot", "request.refused", "refused 401"),
        ]
    );
    let text = format!("{trail:?}");
    assert!(
        !text.contains(PASSWORD) && !text.contains(&h.robot),
        "{text}"
    );
}

#[tokio::test]
async fn forms_without_the_right_csrf_token_or_origin_are_refused() {
    let (h, _) = harness_with_images().await;
    let owner = sign_in(&h, "owner").await;
    let token = csrf(&h, "/repositories/pub/app/-/images/v1", &owner).await;
    let delete = "/repositories/pub/app/-/tags/v1/delete";
    let wrong = "0".repeat(64);
    let refused: [(Fields, Fields); 5] = [
        (&[], &[]),
        (&[("csrf", &wrong)], &[]),
        // The right token from another site.
        (&[("csrf", &token)], &[("sec-fetch-site", "cross-site")]),
        (
            &[("csrf", &token)],
            &[("no-fetch-site", ""), ("origin", "https://evil.example")],
        ),
        (&[("csrf", &token)], &[("no-fetch-site", "")]),
    ];
    for (form, headers) in refused {
        let answer = browse(&h, "POST", delete, Some(&owner), form, headers).await;
        assert_eq!(
            answer.status,
            403,
            "{form:?} {headers:?}: {}",
            answer.text()
        );
        assert_html(&answer, delete);
    }
    let still = h
        .call(
            "GET",
            "/v2/pub/app/manifests/v1",
            Some(&support::basic("root", PASSWORD)),
            "",
        )
        .await;
    assert_eq!(still.status, 200, "the refused forms deleted nothing");

    // With the token, from this site (Origin naming this host will do for
    // browsers that send no Sec-Fetch-Site), the tag goes.
    let origin = format!("http://{HOST}");
    let answer = browse(
        &h,
        "POST",
        delete,
        Some(&owner),
        &[("csrf", &token)],
        &[
            ("no-fetch-site", ""),
            ("origin", &origin),
            ("content-type", "application/x-www-form-urlencoded"),
        ],
    )
    .await;
    assert_eq!(answer.status, 303, "{}", answer.text());
    assert_eq!(
        answer.header("location"),
        "/repositories/pub/app?untagged=v1"
    );
    let gone = h
        .call(
            "GET",
            "/v2/pub/app/manifests/v1",
            Some(&support::basic("root", PASSWORD)),
            "",
        )
        .await;
    assert_eq!(gone.status, 404);
    // A reader may not delete, whatever the token.
    let reader = sign_in(&h, "reader").await;
    let token = csrf(&h, "/repositories/pub/app/-/images/v2", &reader).await;
    let answer = browse(
        &h,
        "POST",
        "/repositories/pub/app/-/tags/v2/delete",
        Some(&reader),
        &[("csrf", &token)],
        &[],
    )
    .await;
    assert_eq!(answer.status, 403, "{}", answer.text());
}

#[tokio::test]
async fn ended_sessions_are_anonymous() {
    let h = Harness::new().await;
    // Signed out: the cookie no longer works.
    let reader = sign_in(&h, "reader").await;
    assert_eq!(get(&h, "/tokens", Some(&reader)).await.status, 200);
    let token = csrf(&h, "/tokens", &reader).await;
    let out = browse(
        &h,
        "POST",
        "/sign-out",
        Some(&reader),
        &[("csrf", &token)],
        &[],
    )
    .await;
    assert_eq!(out.status, 303);
    assert!(out.header("set-cookie").contains("Max-Age=0"));
    let after = get(&h, "/tokens", Some(&reader)).await;
    assert_eq!(after.status, 303, "signed out");
    assert!(after.header("location").starts_with("/sign-in"));

    // Past the absolute limit, and idle too long.
    let now = OffsetDateTime::now_utc();
    let (expired, record) = issue_session("reader", now - Duration::days(8), Duration::days(7));
    h.store()
        .create_session(record, now - Duration::days(9))
        .await
        .unwrap();
    let (idle, record) = issue_session("reader", now - Duration::hours(9), Duration::days(7));
    h.store()
        .create_session(record, now - Duration::days(9))
        .await
        .unwrap();
    for cookie in [expired.expose(), idle.expose()] {
        let answer = get(&h, "/tokens", Some(cookie)).await;
        assert_eq!(answer.status, 303, "an ended session signs nobody in");
    }

    // A disabled user's session stops working at once.
    let bystander = sign_in(&h, "bystander").await;
    assert_eq!(get(&h, "/tokens", Some(&bystander)).await.status, 200);
    let change = berth_auth::change_at(&berth_auth::Actor::system("test"), now);
    berth_auth::admin::set_disabled(h.store().as_ref(), "bystander", true, &change)
        .await
        .unwrap();
    assert_eq!(get(&h, "/tokens", Some(&bystander)).await.status, 303);
}

#[tokio::test]
async fn visitors_see_only_the_namespaces_they_may() {
    let (h, _) = harness_with_images().await;
    let link = |ns: &str| format!("href=\"/namespaces/{ns}\"");
    // Anonymous: the public one only.
    let anonymous = get(&h, "/namespaces", None).await;
    assert!(anonymous.text().contains(&link("pub")));
    assert!(!anonymous.text().contains(&link("priv")));
    let overview = get(&h, "/", None).await.text();
    assert!(!overview.contains("priv/secret"), "{overview}");
    let private = get(&h, "/repositories/priv/secret", None).await;
    assert_eq!(private.status, 303);
    assert_eq!(
        private.header("location"),
        "/sign-in?next=%2Frepositories%2Fpriv%2Fsecret"
    );
    // A signed-in user who is no member of the private one.
    let stranger = sign_in(&h, "stranger").await;
    let listed = get(&h, "/namespaces", Some(&stranger)).await.text();
    assert!(listed.contains(&link("pub")));
    assert!(!listed.contains(&link("priv")));
    assert!(!get(&h, "/", Some(&stranger))
        .await
        .text()
        .contains("priv/secret"));
    // A reader of it sees it and its repository, but not its members (that
    // takes managing them).
    let reader = sign_in(&h, "reader").await;
    assert!(get(&h, "/namespaces", Some(&reader))
        .await
        .text()
        .contains(&link("priv")));
    let page = get(&h, "/namespaces/priv", Some(&reader)).await.text();
    assert!(page.contains("priv/secret"), "{page}");
    assert!(!page.contains("Members"), "{page}");
    let owner = sign_in(&h, "owner").await;
    let page = get(&h, "/namespaces/priv", Some(&owner)).await.text();
    assert!(
        page.contains("Members") && page.contains("maintainer"),
        "{page}"
    );

    // Without access control everything is visible, and there is no
    // signing in.
    let open = Harness::new().await.without_access_control();
    open.push_image("priv/secret", "v1", "x").await;
    let listed = get(&open, "/namespaces", None).await.text();
    assert!(listed.contains(&link("priv")), "{listed}");
    assert_eq!(
        get(&open, "/repositories/priv/secret", None).await.status,
        200
    );
    let tokens = get(&open, "/tokens", None).await;
    assert_eq!(tokens.status, 404);
    assert_html(&tokens, "/tokens without access control");
}

#[tokio::test]
async fn the_image_page_shows_pull_commands_and_tokens_show_their_secret_once() {
    let (h, digest) = harness_with_images().await;
    let owner = sign_in(&h, "owner").await;
    let page = get(&h, "/repositories/pub/app/-/images/v1", Some(&owner))
        .await
        .text();
    for command in [
        format!("docker pull {HOST}/pub/app:v1"),
        format!("podman pull {HOST}/pub/app:v1"),
        format!("docker pull {HOST}/pub/app@{digest}"),
    ] {
        assert!(page.contains(&command), "{command}: {page}");
    }
    assert!(page.contains("data-copy="), "copy buttons");
    assert!(page.contains("Delete tag v1"), "owners may delete");
    let listing = get(&h, "/repositories/pub/app", Some(&owner)).await.text();
    assert!(listing.contains("linux/amd64"), "{listing}");
    // "Go to tag" goes to the tag's page, or says what is wrong.
    let jump = get(&h, "/repositories/pub/app?tag=v2", Some(&owner)).await;
    assert_eq!(jump.status, 303);
    assert_eq!(jump.header("location"), "/repositories/pub/app/-/images/v2");
    let bad = get(&h, "/repositories/pub/app?tag=no%20tag", Some(&owner)).await;
    assert_eq!(bad.status, 400);
    assert!(bad.text().contains("is not a tag"), "{}", bad.text());

    let token = csrf(&h, "/tokens", &owner).await;
    let created = browse(
        &h,
        "POST",
        "/tokens",
        Some(&owner),
        &[
            ("csrf", &token),
            ("name", "ci-pull"),
            ("scopes", "pub:pull"),
            ("expires", "30d"),
        ],
        &[],
    )
    .await;
    assert_eq!(created.status, 200, "{}", created.text());
    let text = created.text();
    let secret = regex::Regex::new(r"berth_at_[A-Za-z0-9]{43}").unwrap();
    let secret = secret
        .find(&text)
        .expect("the secret is shown")
        .as_str()
        .to_string();
    assert!(
        text.contains(&format!("docker login {HOST} -u ci-pull")),
        "{text}"
    );
    assert!(text.contains("kubernetes.io/dockerconfigjson"), "{text}");
    // The token logs in on /v2/.
    let v2 = h
        .call(
            "GET",
            "/v2/pub/app/tags/list",
            Some(&support::basic("ci-pull", &secret)),
            "",
        )
        .await;
    assert_eq!(v2.status, 200, "{}", v2.text());
    // Listed afterwards without its secret; revoked by its creator.
    let listed = get(&h, "/tokens", Some(&owner)).await.text();
    assert!(listed.contains("ci-pull") && !listed.contains(&secret));
    let revoke = browse(
        &h,
        "POST",
        "/tokens/ci-pull/revoke",
        Some(&owner),
        &[("csrf", &token)],
        &[],
    )
    .await;
    assert_eq!(revoke.status, 303, "{}", revoke.text());
    let v2 = h
        .call(
            "GET",
            "/v2/pub/app/tags/list",
            Some(&support::basic("ci-pull", &secret)),
            "",
        )
        .await;
    assert_eq!(v2.status, 401);
    // A scope the caller may not grant is refused with a page.
    let reader = sign_in(&h, "reader").await;
    let token = csrf(&h, "/tokens", &reader).await;
    let refused = browse(
        &h,
        "POST",
        "/tokens",
        Some(&reader),
        &[("csrf", &token), ("name", "x"), ("scopes", "priv:pull")],
        &[],
    )
    .await;
    assert_eq!(refused.status, 403, "{}", refused.text());
}

#[tokio::test]
async fn administrators_disable_and_enable_users() {
    let h = Harness::new().await;
    let root = sign_in(&h, "root").await;
    let page = get(&h, "/admin/users", Some(&root)).await;
    assert_eq!(page.status, 200, "{}", page.text());
    assert!(page.text().contains("Disable bystander"), "{}", page.text());
    assert!(get(&h, "/", Some(&root))
        .await
        .text()
        .contains("href=\"/admin/users\""));
    // Others may not, and do not see the link.
    let reader = sign_in(&h, "reader").await;
    assert_eq!(get(&h, "/admin/users", Some(&reader)).await.status, 403);
    assert!(!get(&h, "/", Some(&reader))
        .await
        .text()
        .contains("/admin/users"));

    let bystander = sign_in(&h, "bystander").await;
    let token = csrf(&h, "/admin/users", &root).await;
    let disable = browse(
        &h,
        "POST",
        "/admin/users/bystander/disable",
        Some(&root),
        &[("csrf", &token)],
        &[],
    )
    .await;
    assert_eq!(disable.status, 303, "{}", disable.text());
    // Their session ends, and they cannot sign in.
    assert_eq!(get(&h, "/tokens", Some(&bystander)).await.status, 303);
    let again = browse(
        &h,
        "POST",
        "/sign-in",
        None,
        &[("username", "bystander"), ("password", PASSWORD)],
        &[],
    )
    .await;
    assert_eq!(again.status, 401);
    let page = get(&h, "/admin/users", Some(&root)).await.text();
    assert!(page.contains("Enable bystander"), "{page}");
    let enable = browse(
        &h,
        "POST",
        "/admin/users/bystander/enable",
        Some(&root),
        &[("csrf", &token)],
        &[],
    )
    .await;
    assert_eq!(enable.status, 303, "{}", enable.text());
    sign_in(&h, "bystander").await;
}

#[tokio::test]
async fn a_repository_is_paged_by_keyset() {
    let h = Harness::new().await;
    for i in 0..52 {
        h.push_image("pub/many", &format!("t{i}"), &format!("seed-{i}"))
            .await;
    }
    let first = get(&h, "/repositories/pub/many", None).await.text();
    let link = regex::Regex::new(
        r#"href="(/repositories/pub/many\?tagged=true&amp;cursor=[^"]+)">Next page"#,
    )
    .unwrap();
    let next = link
        .captures(&first)
        .unwrap_or_else(|| panic!("no next page: {first}"))[1]
        .replace("&amp;", "&");
    let rows = |page: &str| page.matches("<tr>").count() - 1;
    assert_eq!(rows(&first), 50);
    let second = get(&h, &next, None).await;
    assert_eq!(second.status, 200, "{}", second.text());
    assert_eq!(rows(&second.text()), 2);
    assert!(!second.text().contains("Next page"));
    // Every tag is on exactly one of the pages (pushes in the same second
    // are ordered by digest, so which page holds which is not asserted).
    let tag = regex::Regex::new(r">(t[0-9]+)</a>").unwrap();
    let mut seen: Vec<String> = [first.as_str(), second.text().as_str()]
        .iter()
        .flat_map(|page| {
            tag.captures_iter(page)
                .map(|c| c[1].to_string())
                .collect::<Vec<_>>()
        })
        .collect();
    seen.sort();
    let mut all: Vec<String> = (0..52).map(|i| format!("t{i}")).collect();
    all.sort();
    assert_eq!(seen, all);
}

#[tokio::test]
async fn the_cookie_is_secure_when_the_browser_came_over_https() {
    let mut h = Harness::new().await;
    h.state = h.state.clone().with_settings(berth_server::ServerSettings {
        trusted_proxies: vec!["10.0.0.0/8".parse().unwrap()],
        ..Default::default()
    });
    let body =
        serde_urlencoded::to_string([("username", "reader"), ("password", PASSWORD)]).unwrap();
    let mut request = Request::builder()
        .method("POST")
        .uri("/sign-in")
        .header("host", "berth-internal:5000")
        .header("x-forwarded-proto", "https")
        .header("x-forwarded-host", "registry.example")
        .header("sec-fetch-site", "same-origin")
        .header("content-type", "application/x-www-form-urlencoded")
        .body(Body::from(body))
        .unwrap();
    let proxy: std::net::SocketAddr = "10.0.0.2:50000".parse().unwrap();
    request
        .extensions_mut()
        .insert(axum::extract::ConnectInfo(proxy));
    let answer = h.send(request).await;
    assert_eq!(answer.status, 303, "{}", answer.text());
    let cookie = answer.header("set-cookie");
    assert!(cookie.contains("; Secure"), "{cookie}");
}

/// Posts `form` (with the session's CSRF token) to `uri` as `cookie`.
async fn post(h: &Harness, uri: &str, cookie: &str, form: Fields<'_>) -> Answer {
    let token = csrf(h, "/tokens", cookie).await;
    let mut fields: Vec<(&str, &str)> = form.to_vec();
    fields.push(("csrf", &token));
    browse(h, "POST", uri, Some(cookie), &fields, &[]).await
}

/// `GET` on the management API as `user`.
async fn api_get(h: &Harness, uri: &str, user: &str) -> serde_json::Value {
    let answer = h
        .call("GET", uri, Some(&support::basic(user, PASSWORD)), "")
        .await;
    assert_eq!(answer.status, 200, "{uri}: {}", answer.text());
    answer.json()
}

#[tokio::test]
async fn the_lifecycle_page_shows_each_form_to_those_it_is_for() {
    let (h, _) = harness_with_images().await;
    let quota_form = "action=\"/namespaces/pub/quota\"";
    let retention_form = "action=\"/namespaces/pub/retention\"";
    let rule_form = "action=\"/namespaces/pub/immutable\"";
    // Anonymous visitors see a public namespace's lifecycle, no forms; a
    // private one sends them to sign in.
    let page = get(&h, "/namespaces/pub/lifecycle", None).await;
    assert_eq!(page.status, 200, "{}", page.text());
    assert_html(&page, "lifecycle");
    assert!(page.text().contains("Storage"), "{}", page.text());
    assert!(!page.text().contains(retention_form));
    assert_eq!(
        get(&h, "/namespaces/priv/lifecycle", None).await.status,
        303
    );
    assert_eq!(get(&h, "/namespaces/priv/trash", None).await.status, 303);
    let stranger = sign_in(&h, "stranger").await;
    assert_eq!(
        get(&h, "/namespaces/priv/lifecycle", Some(&stranger))
            .await
            .status,
        403
    );
    for (user, quota, retention) in [
        ("reader", false, false),
        ("owner", false, true),
        ("root", true, true),
    ] {
        let cookie = sign_in(&h, user).await;
        let page = get(&h, "/namespaces/pub/lifecycle", Some(&cookie)).await;
        assert_eq!(page.status, 200, "{user}: {}", page.text());
        let text = page.text();
        assert_eq!(text.contains(quota_form), quota, "{user}: {text}");
        assert_eq!(text.contains(retention_form), retention, "{user}: {text}");
        assert_eq!(text.contains(rule_form), retention, "{user}: {text}");
        let trash = get(&h, "/namespaces/pub/trash", Some(&cookie)).await;
        assert_eq!(trash.status, 200, "{user}: {}", trash.text());
        assert_html(&trash, "trash");
    }
}

#[tokio::test]
async fn quotas_set_in_the_console_are_the_apis() {
    let (h, _) = harness_with_images().await;
    let owner = sign_in(&h, "owner").await;
    let root = sign_in(&h, "root").await;
    let limits: Fields = &[("storage", "10GB"), ("traffic", "unlimited")];
    // Limits are the administrator's, as on the API; and a form without
    // the CSRF token changes nothing.
    let refused = post(&h, "/namespaces/pub/quota", &owner, limits).await;
    assert_eq!(refused.status, 403, "{}", refused.text());
    let no_token = browse(
        &h,
        "POST",
        "/namespaces/pub/quota",
        Some(&root),
        limits,
        &[],
    )
    .await;
    assert_eq!(no_token.status, 403, "{}", no_token.text());
    let quota = api_get(&h, "/api/v1/quotas/pub", "root").await;
    assert_eq!(quota["storage"]["limit"], serde_json::Value::Null);

    let set = post(&h, "/namespaces/pub/quota", &root, limits).await;
    assert_eq!(set.status, 303, "{}", set.text());
    assert!(set
        .header("location")
        .starts_with("/namespaces/pub/lifecycle?done=quota"));
    let quota = api_get(&h, "/api/v1/quotas/pub", "root").await;
    assert_eq!(quota["storage"]["limit"], 10_000_000_000u64, "{quota}");
    assert_eq!(
        quota["traffic"]["limit"],
        serde_json::Value::Null,
        "{quota}"
    );
    assert_eq!(quota["traffic"]["default"], false, "{quota}");
    let page = get(&h, "/namespaces/pub/lifecycle?done=quota", Some(&root)).await;
    assert!(page.text().contains("of 10.0 GB"), "{}", page.text());
    assert!(page.text().contains("<meter"), "{}", page.text());
    // An empty field keeps its limit; `default` clears it.
    let cleared = post(
        &h,
        "/namespaces/pub/quota",
        &root,
        &[("storage", "default"), ("traffic", "")],
    )
    .await;
    assert_eq!(cleared.status, 303, "{}", cleared.text());
    let quota = api_get(&h, "/api/v1/quotas/pub", "root").await;
    assert_eq!(
        quota["storage"]["limit"],
        serde_json::Value::Null,
        "{quota}"
    );
    // A size that is none is a page saying what to write.
    let bad = post(
        &h,
        "/namespaces/pub/quota",
        &root,
        &[("storage", "ten gigs")],
    )
    .await;
    assert_eq!(bad.status, 400);
    assert_html(&bad, "bad quota");
    assert!(bad.text().contains("is not a size"), "{}", bad.text());
}

#[tokio::test]
async fn retention_is_set_previewed_run_and_its_images_restored_from_the_trash() {
    let (h, _) = harness_with_images().await;
    let owner = sign_in(&h, "owner").await;
    let reader = sign_in(&h, "reader").await;
    let policy: Fields = &[
        ("keep", "1"),
        ("untagged", "delete"),
        ("min_age", ""),
        ("keep_tags", ""),
    ];
    let refused = post(&h, "/namespaces/pub/retention", &reader, policy).await;
    assert_eq!(refused.status, 403, "{}", refused.text());
    let set = post(&h, "/namespaces/pub/retention", &owner, policy).await;
    assert_eq!(set.status, 303, "{}", set.text());
    let policies = api_get(&h, "/api/v1/retention-policies", "owner").await;
    assert_eq!(policies["policies"][0]["namespace"], "pub", "{policies}");
    assert_eq!(policies["policies"][0]["keep"], 1, "{policies}");
    assert_eq!(policies["policies"][0]["untagged"], "delete", "{policies}");
    let bad = post(
        &h,
        "/namespaces/pub/retention",
        &owner,
        &[("keep", "1"), ("min_age", "soon")],
    )
    .await;
    assert_eq!(bad.status, 400, "{}", bad.text());

    // The preview lists what would go and deletes nothing.
    let preview = post(
        &h,
        "/namespaces/pub/retention/run",
        &owner,
        &[("dry_run", "true")],
    )
    .await;
    assert_eq!(preview.status, 200, "{}", preview.text());
    assert!(
        preview.text().contains("Would go to the trash: 1 images"),
        "{}",
        preview.text()
    );
    let images = api_get(&h, "/api/v1/repositories/pub%2Fapp/images", "owner").await;
    assert_eq!(images["images"].as_array().unwrap().len(), 2, "{images}");
    let run = post(
        &h,
        "/namespaces/pub/retention/run",
        &owner,
        &[("dry_run", "false")],
    )
    .await;
    // A run answers with a redirect, so that reloading its page does not
    // run the policy again; the page it leads to says what it did.
    assert_eq!(run.status, 303, "{}", run.text());
    let location = run.header("location");
    assert!(
        location.starts_with("/namespaces/pub/lifecycle?done=retention-run&trashed=1&"),
        "{location}"
    );
    let after = get(&h, &location, Some(&owner)).await;
    assert_eq!(after.status, 200, "{}", after.text());
    assert!(
        after.text().contains("Went to the trash: 1 images; 1 stay"),
        "{}",
        after.text()
    );
    let images = api_get(&h, "/api/v1/repositories/pub%2Fapp/images", "owner").await;
    assert_eq!(images["images"].as_array().unwrap().len(), 1, "{images}");

    // The trash lists it; a reader may not restore it, the owner may.
    let trash = api_get(&h, "/api/v1/trash?namespace=pub", "owner").await;
    let entry = &trash["entries"][0];
    let digest = entry["digest"].as_str().unwrap().to_string();
    let tag = entry["tags"][0].as_str().unwrap().to_string();
    let page = get(&h, "/namespaces/pub/trash", Some(&owner)).await;
    let restore = format!("/repositories/pub/app/-/images/{digest}/restore");
    assert!(page.text().contains(&restore), "{}", page.text());
    assert!(!get(&h, "/namespaces/pub/trash", Some(&reader))
        .await
        .text()
        .contains(&restore));
    let refused = post(&h, &restore, &reader, &[]).await;
    assert_eq!(refused.status, 403, "{}", refused.text());
    // The restore answers with a redirect to the trash page with its
    // notice, so that a reload does not post it again.
    let restored = post(&h, &restore, &owner, &[]).await;
    assert_eq!(restored.status, 303, "{}", restored.text());
    let location = restored.header("location");
    assert!(
        location.starts_with("/namespaces/pub/trash?restored=pub%2Fapp%40sha256%3A"),
        "{location}"
    );
    let restored = get(&h, &location, Some(&owner)).await;
    assert_eq!(restored.status, 200, "{}", restored.text());
    assert_html(&restored, "restored");
    let text = restored.text();
    assert!(text.contains("is back"), "{text}");
    assert!(
        text.contains(&format!("Tags restored: <code>{tag}</code>")),
        "{text}"
    );
    let back = h
        .call(
            "GET",
            &format!("/v2/pub/app/manifests/{tag}"),
            Some(&support::basic("root", PASSWORD)),
            "",
        )
        .await;
    assert_eq!(back.status, 200);
    // Removing the policy.
    let removed = post(&h, "/namespaces/pub/retention/remove", &owner, &[]).await;
    assert_eq!(removed.status, 303, "{}", removed.text());
    let policies = api_get(&h, "/api/v1/retention-policies", "owner").await;
    assert_eq!(
        policies["policies"].as_array().unwrap().len(),
        0,
        "{policies}"
    );
}

#[tokio::test]
async fn images_deleted_in_the_console_wait_in_the_trash_and_tags_can_be_made_immutable() {
    let (h, digest) = harness_with_images().await;
    let owner = sign_in(&h, "owner").await;
    let reader = sign_in(&h, "reader").await;
    // An immutable rule: a reader may not add one; the owner adds it, the
    // API lists it, and the tag cannot be deleted any more.
    let rule: Fields = &[("scope", "pub/app"), ("tags", "v*")];
    let refused = post(&h, "/namespaces/pub/immutable", &reader, rule).await;
    assert_eq!(refused.status, 403, "{}", refused.text());
    let elsewhere = post(
        &h,
        "/namespaces/pub/immutable",
        &owner,
        &[("scope", "priv/secret"), ("tags", "v*")],
    )
    .await;
    assert_eq!(elsewhere.status, 400, "{}", elsewhere.text());
    let added = post(&h, "/namespaces/pub/immutable", &owner, rule).await;
    assert_eq!(added.status, 303, "{}", added.text());
    let rules = api_get(&h, "/api/v1/immutable-rules", "owner").await;
    assert_eq!(rules["rules"][0]["scope"], "pub/app", "{rules}");
    assert_eq!(rules["rules"][0]["tags"], "v*", "{rules}");
    let page = get(&h, "/namespaces/pub/lifecycle", Some(&owner)).await;
    assert!(
        page.text().contains("Remove v* in pub/app"),
        "{}",
        page.text()
    );
    let delete = format!("/repositories/pub/app/-/images/{digest}/delete");
    let denied = post(&h, &delete, &owner, &[]).await;
    assert_eq!(denied.status, 403, "{}", denied.text());
    assert!(
        denied.text().contains("v*"),
        "the rule is named: {}",
        denied.text()
    );
    let removed = post(&h, "/namespaces/pub/immutable/remove", &owner, rule).await;
    assert_eq!(removed.status, 303, "{}", removed.text());
    let rules = api_get(&h, "/api/v1/immutable-rules", "owner").await;
    assert_eq!(rules["rules"].as_array().unwrap().len(), 0, "{rules}");

    // Deleting the image: a reader may not; the owner does, and it is gone
    // from /v2/ and waits in the trash.
    let refused = post(&h, &delete, &reader, &[]).await;
    assert_eq!(refused.status, 403, "{}", refused.text());
    let deleted = post(&h, &delete, &owner, &[]).await;
    assert_eq!(deleted.status, 303, "{}", deleted.text());
    let location = deleted.header("location");
    assert!(
        location.starts_with("/repositories/pub/app?deleted="),
        "{location}"
    );
    let notice = get(&h, &location, Some(&owner)).await;
    assert!(
        notice.text().contains("/namespaces/pub/trash"),
        "{}",
        notice.text()
    );
    let gone = h
        .call(
            "GET",
            &format!("/v2/pub/app/manifests/{digest}"),
            Some(&support::basic("root", PASSWORD)),
            "",
        )
        .await;
    assert_eq!(gone.status, 404);
    let trash = get(&h, "/namespaces/pub/trash", Some(&owner)).await;
    assert!(trash.text().contains(&digest[..19]), "{}", trash.text());
}

#[tokio::test]
async fn administrators_see_the_settings_and_owners_set_the_pull_policy() {
    let (mut h, _) = harness_with_images().await;
    h.state = h
        .state
        .clone()
        .with_configuration_listing("[auth]\nkey_encryption_key = \"***\"  # file\n".into());
    let root = sign_in(&h, "root").await;
    let owner = sign_in(&h, "owner").await;
    let reader = sign_in(&h, "reader").await;
    let page = get(&h, "/admin/settings", Some(&root)).await;
    assert_eq!(page.status, 200, "{}", page.text());
    assert_html(&page, "settings");
    let text = page.text();
    for shown in [
        "Effective configuration",
        "key_encryption_key = &quot;***&quot;",
        "Default storage per namespace",
        "/namespaces/pub/exemptions#policy",
    ] {
        assert!(text.contains(shown), "{shown}: {text}");
    }
    assert!(get(&h, "/", Some(&root))
        .await
        .text()
        .contains("href=\"/admin/settings\""));
    assert_eq!(get(&h, "/admin/settings", Some(&owner)).await.status, 403);
    assert_eq!(get(&h, "/admin/settings", None).await.status, 303);

    // The pull policy: the namespace's owners set it, as on the API.
    let policy: Fields = &[
        ("mode", "block"),
        ("severity", "high"),
        ("block_unscanned", "true"),
    ];
    let refused = post(&h, "/namespaces/pub/vulnerability-policy", &reader, policy).await;
    assert_eq!(refused.status, 403, "{}", refused.text());
    let bad = post(
        &h,
        "/namespaces/pub/vulnerability-policy",
        &owner,
        &[("mode", "loud")],
    )
    .await;
    assert_eq!(bad.status, 400, "{}", bad.text());
    let set = post(&h, "/namespaces/pub/vulnerability-policy", &owner, policy).await;
    assert_eq!(set.status, 303, "{}", set.text());
    let seen = api_get(&h, "/api/v1/namespaces/pub/vulnerability-policy", "reader").await;
    assert_eq!(seen["mode"], "block", "{seen}");
    assert_eq!(seen["severity"], "high", "{seen}");
    assert_eq!(seen["block_unscanned"], true, "{seen}");
    let page = get(&h, "/namespaces/pub/exemptions?done=policy", Some(&owner)).await;
    assert_eq!(page.status, 200, "{}", page.text());
    assert!(
        page.text().contains("The pull policy is set."),
        "{}",
        page.text()
    );
    assert!(!get(&h, "/namespaces/pub/exemptions", Some(&reader))
        .await
        .text()
        .contains("action=\"/namespaces/pub/vulnerability-policy\""));
}

#[tokio::test]
async fn signing_out_everywhere_ends_every_session_of_the_user() {
    let h = Harness::new().await;
    // A user's own: two browsers, one button, both signed out.
    let first = sign_in(&h, "owner").await;
    let second = sign_in(&h, "owner").await;
    let page = get(&h, "/account", Some(&first)).await;
    assert_eq!(page.status, 200, "{}", page.text());
    assert_html(&page, "account");
    assert!(
        page.text().contains("Sign out everywhere"),
        "{}",
        page.text()
    );
    assert_eq!(get(&h, "/account", None).await.status, 303);
    let no_token = browse(
        &h,
        "POST",
        "/account/sign-out-everywhere",
        Some(&first),
        &[],
        &[],
    )
    .await;
    assert_eq!(no_token.status, 403);
    let done = post(&h, "/account/sign-out-everywhere", &first, &[]).await;
    assert_eq!(done.status, 303, "{}", done.text());
    assert_eq!(done.header("location"), "/sign-in");
    assert!(
        done.header("set-cookie").contains("Max-Age=0"),
        "{}",
        done.header("set-cookie")
    );
    for cookie in [&first, &second] {
        assert_eq!(get(&h, "/tokens", Some(cookie)).await.status, 303);
    }
    // An administrator's, on a user's row: the user's sessions end, and
    // they may sign in again (unlike disabling).
    let root = sign_in(&h, "root").await;
    let bystander = sign_in(&h, "bystander").await;
    let users = get(&h, "/admin/users", Some(&root)).await.text();
    assert!(users.contains("Sign bystander out everywhere"), "{users}");
    let reader = sign_in(&h, "reader").await;
    let refused = post(&h, "/admin/users/bystander/sign-out", &reader, &[]).await;
    assert_eq!(refused.status, 403, "{}", refused.text());
    assert_eq!(get(&h, "/tokens", Some(&bystander)).await.status, 200);
    let done = post(&h, "/admin/users/bystander/sign-out", &root, &[]).await;
    assert_eq!(done.status, 303, "{}", done.text());
    assert_eq!(done.header("location"), "/admin/users?signed-out=bystander");
    assert_eq!(get(&h, "/tokens", Some(&bystander)).await.status, 303);
    assert_eq!(
        get(&h, "/tokens", Some(&root)).await.status,
        200,
        "only theirs"
    );
    sign_in(&h, "bystander").await;
    let nobody = post(&h, "/admin/users/nobody/sign-out", &root, &[]).await;
    assert_eq!(nobody.status, 404, "{}", nobody.text());
}

/// The tags a tag listing page shows, in order.
fn listed_tags(page: &str) -> Vec<String> {
    let row =
        regex::Regex::new(r#"<td class="mono"><a href="/repositories/pub/app/-/images/([^"]+)">"#)
            .unwrap();
    row.captures_iter(page)
        .map(|c| c[1].to_string())
        .filter(|reference| !reference.starts_with("sha256:"))
        .collect()
}

#[tokio::test]
async fn a_repositorys_tags_are_searched_sorted_and_paged() {
    let h = Harness::new().await;
    // 55 tags of one image, pushed in order, and a larger image's tag last.
    let mut names: Vec<String> = (0..55).map(|i| format!("t{i:03}")).collect();
    for name in &names {
        h.push_image("pub/app", name, "shared").await;
    }
    h.push_image("pub/app", "big", "a larger image's seed")
        .await;
    names.push("big".to_string());
    let owner = sign_in(&h, "owner").await;

    // By name: two pages whose next link carries the cursor.
    let first = get(&h, "/repositories/pub/app?sort=name", Some(&owner)).await;
    assert_eq!(first.status, 200, "{}", first.text());
    assert_html(&first, "tags");
    let text = first.text();
    let mut shown = listed_tags(&text);
    assert_eq!(shown.len(), 50, "{text}");
    let next =
        regex::Regex::new(r#"<a href="(/repositories/pub/app\?[^"]*cursor=[^"]+)">Next page"#)
            .unwrap()
            .captures(&text)
            .unwrap_or_else(|| panic!("a next page: {text}"))[1]
            .replace("&amp;", "&");
    let second = get(&h, &next, Some(&owner)).await;
    assert_eq!(second.status, 200, "{}", second.text());
    shown.extend(listed_tags(&second.text()));
    let mut by_name = names.clone();
    by_name.sort();
    assert_eq!(shown, by_name);

    // A substring, and the newest first.
    let found = get(&h, "/repositories/pub/app?q=t05", Some(&owner))
        .await
        .text();
    assert_eq!(
        listed_tags(&found),
        ["t050", "t051", "t052", "t053", "t054"]
    );
    let newest = get(&h, "/repositories/pub/app?sort=newest&q=t", Some(&owner))
        .await
        .text();
    assert_eq!(
        listed_tags(&newest).first().map(String::as_str),
        Some("t054"),
        "{newest}"
    );
    let largest = get(&h, "/repositories/pub/app?sort=size", Some(&owner))
        .await
        .text();
    assert_eq!(
        listed_tags(&largest).first().map(String::as_str),
        Some("big"),
        "{largest}"
    );
    let none = get(&h, "/repositories/pub/app?q=zzz", Some(&owner))
        .await
        .text();
    assert!(none.contains("No tags contain"), "{none}");

    // A sort that is none, and a cursor of another sort, are refused.
    let bad = get(&h, "/repositories/pub/app?sort=colour", Some(&owner)).await;
    assert_eq!(bad.status, 400, "{}", bad.text());
    assert_html(&bad, "bad sort");
    let other_sort = next.replace("sort=name", "sort=newest");
    assert_eq!(get(&h, &other_sort, Some(&owner)).await.status, 400);
    // Those who may not pull are sent to sign in, or refused.
    h.push_image("priv/secret", "v1", "private").await;
    assert_eq!(
        get(&h, "/repositories/priv/secret?q=v", None).await.status,
        303
    );
}

/// The days of a usage-history table on a page: (date, value) of the
/// visually hidden table captioned `caption`.
fn hidden_table(page: &str, caption: &str) -> Vec<(String, String)> {
    let start = page
        .find(&format!("<caption>{caption}</caption>"))
        .unwrap_or_else(|| panic!("no table {caption}: {page}"));
    let table = &page[start..page[start..].find("</table>").unwrap() + start];
    regex::Regex::new(r"<tr><td>([0-9-]+)</td><td>([^<]*)</td></tr>")
        .unwrap()
        .captures_iter(table)
        .map(|c| (c[1].to_string(), c[2].to_string()))
        .collect()
}

#[tokio::test]
async fn usage_over_30_days_is_charted_for_those_who_see_the_namespace() {
    let (h, digest) = harness_with_images().await;
    // Two pulls of pub/app today, counted and flushed as a node does.
    for _ in 0..2 {
        let pulled = h
            .call(
                "GET",
                &format!("/v2/pub/app/manifests/{digest}"),
                Some(&support::basic("reader", PASSWORD)),
                "",
            )
            .await;
        assert_eq!(pulled.status, 200, "{}", pulled.text());
    }
    h.state.registry.flush_pulls().await.unwrap();
    let today = OffsetDateTime::now_utc().date().to_string();

    // The totals, added up from the repositories' figures: the namespace's
    // in the API, and the overview's pulls card.
    assert_eq!(
        api_get(&h, "/api/v1/namespaces/pub", "reader").await["pulls"],
        2
    );
    let reader = sign_in(&h, "reader").await;
    let overview = get(&h, "/", Some(&reader)).await.text();
    assert!(
        overview.contains(r#"<span class="value">2</span>pulls"#),
        "{overview}"
    );

    // The API: a day per entry, oldest first, today last with its pulls and
    // the storage held now; for those who may see the namespace.
    let history = api_get(&h, "/api/v1/namespaces/pub/usage-history?days=7", "reader").await;
    let days = history["days"].as_array().unwrap();
    assert_eq!(days.len(), 7, "{history}");
    let last = &days[6];
    assert_eq!(last["date"], today.as_str());
    assert_eq!(last["pulls"], 2, "{history}");
    assert!(last["storage_bytes"].as_u64().unwrap() > 0, "{history}");
    assert_eq!(days[0]["pulls"], 0);
    assert_eq!(
        api_get(&h, "/api/v1/namespaces/pub/usage-history", "reader").await["days"]
            .as_array()
            .unwrap()
            .len(),
        30
    );
    for (uri, user, status) in [
        ("/api/v1/namespaces/pub/usage-history?days=0", "reader", 400),
        (
            "/api/v1/namespaces/pub/usage-history?days=401",
            "reader",
            400,
        ),
        (
            "/api/v1/namespaces/pub/usage-history?weeks=1",
            "reader",
            400,
        ),
        ("/api/v1/namespaces/priv/usage-history", "stranger", 403),
        ("/api/v1/namespaces/priv/usage-history", "reader", 200),
    ] {
        let answer = h
            .call("GET", uri, Some(&support::basic(user, PASSWORD)), "")
            .await;
        assert_eq!(answer.status, status, "{uri} as {user}: {}", answer.text());
    }

    // The console: the namespace page and the overview chart the same
    // figures, with every day in a table for screen readers.
    let reader = sign_in(&h, "reader").await;
    let page = get(&h, "/namespaces/pub", Some(&reader)).await;
    assert_eq!(page.status, 200);
    assert_html(&page, "/namespaces/pub");
    let text = page.text();
    let pulls = hidden_table(&text, "Pulls per day");
    assert_eq!(pulls.len(), 30, "{text}");
    assert_eq!(pulls[29], (today.clone(), "2".to_string()));
    assert!(text.contains("Storage per day"), "{text}");
    let overview = get(&h, "/", Some(&reader)).await.text();
    let pulls = hidden_table(&overview, "Pulls per day");
    assert_eq!(pulls[29], (today.clone(), "2".to_string()));
    // Anonymous visitors see the public namespace's figures; the private
    // namespace's page sends them to sign in.
    let anonymous = get(&h, "/namespaces/pub", None).await.text();
    assert_eq!(hidden_table(&anonymous, "Pulls per day")[29].1, "2");
    assert_eq!(get(&h, "/namespaces/priv", None).await.status, 303);
}

/// A remote that never answers, for runs started from the console.
struct Unreachable;

impl berth_registry::RemoteConnector for Unreachable {
    fn connect(
        &self,
        _rule: &berth_registry::ReplicationRule,
    ) -> Result<std::sync::Arc<dyn berth_registry::RemoteRegistry>, String> {
        Err("the remote is unreachable".into())
    }
}

fn replication_form<'a>(csrf: &'a str, name: &'a str) -> Vec<(&'a str, &'a str)> {
    vec![
        ("csrf", csrf),
        ("name", name),
        ("direction", "push"),
        ("url", "https://dr.example/"),
        ("credentials", "robot:s3cret-pass"),
        ("repositories", "priv/**"),
        ("tags", "v*"),
        ("interval", "3600"),
        ("on_push", "true"),
    ]
}

#[tokio::test]
async fn administrators_create_run_and_delete_replication_rules() {
    let mut h = Harness::new().await;
    let replicator = berth_registry::Replicator::new(
        h.state.registry.clone(),
        std::sync::Arc::new(Unreachable),
        berth_registry::ReplicationOptions::default(),
    );
    h.state = h.state.clone().with_replicator(replicator);
    let root = sign_in(&h, "root").await;
    let owner = sign_in(&h, "owner").await;
    let token = csrf(&h, "/admin/replications", &root).await;
    let owner_token = csrf(&h, "/tokens", &owner).await;

    // Who sees the pages: administrators; others are refused, anonymous
    // visitors sent to sign in. The navigation links them for
    // administrators only.
    for (cookie, status) in [(Some(&root), 200), (Some(&owner), 403), (None, 303)] {
        let page = get(&h, "/admin/replications", cookie.map(String::as_str)).await;
        assert_eq!(page.status, status, "{cookie:?}: {}", page.text());
        if status != 303 {
            assert_html(&page, "/admin/replications");
        }
    }
    assert!(get(&h, "/", Some(&root))
        .await
        .text()
        .contains("href=\"/admin/replications\""));
    assert!(!get(&h, "/", Some(&owner))
        .await
        .text()
        .contains("href=\"/admin/replications\""));

    // Refused forms: no CSRF token, an owner's, a bad field.
    let mut bad = replication_form(&token, "bad");
    bad.retain(|(k, _)| *k != "url");
    bad.push(("url", "ftp://dr.example"));
    for (cookie, form, status) in [
        (&root, replication_form("", "to-dr"), 403),
        (&owner, replication_form(&owner_token, "to-dr"), 403),
        (&root, bad, 400),
    ] {
        let answer = browse(&h, "POST", "/admin/replications", Some(cookie), &form, &[]).await;
        assert_eq!(answer.status, status, "{form:?}: {}", answer.text());
    }
    assert!(h
        .state
        .registry
        .replication_rules()
        .await
        .unwrap()
        .is_empty());

    // Created: the rule is the API's, its credentials stored and never shown.
    let created = browse(
        &h,
        "POST",
        "/admin/replications",
        Some(&root),
        &replication_form(&token, "to-dr"),
        &[],
    )
    .await;
    assert_eq!(created.status, 303, "{}", created.text());
    assert_eq!(created.header("location"), "/admin/replications/to-dr");
    let rule = api_get(&h, "/api/v1/replications/to-dr", "root").await;
    assert_eq!(rule["authenticated"], true, "{rule}");
    assert_eq!(rule["repositories"], "priv/**");
    assert_eq!(rule["interval_secs"], 3600);
    assert_eq!(rule["on_push"], true);
    for path in ["/admin/replications", "/admin/replications/to-dr"] {
        let page = get(&h, path, Some(&root)).await;
        assert_eq!(page.status, 200);
        assert_html(&page, path);
        let text = page.text();
        assert!(
            text.contains("priv/**") && text.contains("on push, every 1 h"),
            "{text}"
        );
        assert!(!text.contains("s3cret"), "{text}");
    }
    let again = browse(
        &h,
        "POST",
        "/admin/replications",
        Some(&root),
        &replication_form(&token, "to-dr"),
        &[],
    )
    .await;
    assert_eq!(again.status, 409, "{}", again.text());
    assert_eq!(
        get(&h, "/admin/replications/none", Some(&root))
            .await
            .status,
        404
    );

    // Run now: without the token refused; with it, a run is recorded and
    // listed with its error once it fails.
    let run = "/admin/replications/to-dr/run";
    let refused = browse(&h, "POST", run, Some(&root), &[("csrf", "")], &[]).await;
    assert_eq!(refused.status, 403);
    let started = browse(&h, "POST", run, Some(&root), &[("csrf", &token)], &[]).await;
    assert_eq!(started.status, 303, "{}", started.text());
    assert_eq!(
        started.header("location"),
        "/admin/replications/to-dr?started=1"
    );
    let mut page = String::new();
    for _ in 0..100 {
        page = get(&h, "/admin/replications/to-dr", Some(&root))
            .await
            .text();
        if page.contains("unreachable") {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    assert!(
        page.contains("manual") && page.contains("unreachable"),
        "{page}"
    );
    let runs = api_get(&h, "/api/v1/replications/to-dr", "root").await;
    assert_eq!(runs["runs"].as_array().unwrap().len(), 1, "{runs}");

    // Delete: an owner may not; an administrator's removes the rule.
    let delete = "/admin/replications/to-dr/delete";
    let refused = browse(
        &h,
        "POST",
        delete,
        Some(&owner),
        &[("csrf", &owner_token)],
        &[],
    )
    .await;
    assert_eq!(refused.status, 403);
    let deleted = browse(&h, "POST", delete, Some(&root), &[("csrf", &token)], &[]).await;
    assert_eq!(deleted.status, 303, "{}", deleted.text());
    assert!(h
        .state
        .registry
        .replication_rules()
        .await
        .unwrap()
        .is_empty());
    let list = get(&h, "/admin/replications?deleted=to-dr", Some(&root))
        .await
        .text();
    assert!(list.contains("No rules yet"), "{list}");
}

/// Issue 12: the namespace list is paged as the API pages it (50 a page),
/// and anonymous visitors page through the public namespaces only.
#[tokio::test]
async fn the_namespace_list_is_paged() {
    let h = Harness::new().await;
    let root = support::basic("root", support::PASSWORD);
    for i in 0..52 {
        let answer = h
            .call(
                "POST",
                "/api/v1/namespaces",
                Some(&root),
                &format!(r#"{{"name":"many-{i:02}","visibility":"public"}}"#),
            )
            .await;
        assert_eq!(answer.status, 201, "{}", answer.text());
    }
    let link = regex::Regex::new(r#"href="(/namespaces\?cursor=[^"]+)">Next page"#).unwrap();
    let listed = regex::Regex::new(r#"href="/namespaces/([a-z0-9-]+)""#).unwrap();
    let mut seen = Vec::new();
    let mut uri = "/namespaces".to_string();
    for _ in 0..5 {
        let page = get(&h, &uri, None).await;
        assert_eq!(page.status, 200, "{}", page.text());
        let text = page.text();
        let names: Vec<String> = listed
            .captures_iter(&text)
            .map(|c| c[1].to_string())
            .collect();
        assert!(names.len() <= 50, "{names:?}");
        seen.extend(names);
        match link.captures(&text) {
            Some(next) => uri = next[1].replace("&amp;", "&"),
            None => break,
        }
    }
    let mut expected: Vec<String> = (0..52).map(|i| format!("many-{i:02}")).collect();
    expected.push("pub".to_string());
    assert_eq!(seen, expected);
}
