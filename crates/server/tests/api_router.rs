//! The management API through `app(state).oneshot(...)`: what registry
//! tokens may do there (issue 11), robots, the last owner, listings, bad
//! input, throttling, a server without access control, and the OpenAPI
//! document against the routing table. The authorization matrix is
//! `api_matrix.rs`.

mod support;

use std::collections::BTreeSet;

use axum::body::Body;
use axum::http::Request;
use berth_auth::{Expiry, Role, TokenScope, Visibility};
use berth_server::api::route::Route;
use support::{access_claim, basic, bearer, Harness, PASSWORD};

fn names(listing: &serde_json::Value, key: &str, field: &str) -> Vec<String> {
    listing[key]
        .as_array()
        .unwrap_or_else(|| panic!("no {key} in {listing}"))
        .iter()
        .map(|item| item[field].as_str().unwrap().to_string())
        .collect()
}

/// Issue 11 (High): a registry token issued for `repository:…:pull`, or
/// with `access: []`, could create a never-expiring push and delete robot,
/// make someone an owner and publish a namespace through `/api/v1`,
/// because the API authenticated the bearer and ignored its claim. Each
/// attempt must be refused (401, naming the scope a token would need) and
/// change nothing; a token for exactly that scope may.
#[tokio::test]
async fn registry_tokens_grant_on_the_api_only_what_their_claim_names() {
    let h = Harness::new().await;
    let pull_only = h.token("owner", &["repository:priv/secret:pull"]).await;
    let nothing = h.token("owner", &[]).await;
    assert_eq!(
        access_claim(&pull_only),
        serde_json::json!([{"type": "repository", "name": "priv/secret", "actions": ["pull"]}])
    );
    for token in [&pull_only, &nothing] {
        let auth = bearer(token);
        let robot = h
            .call(
                "POST",
                "/api/v1/tokens",
                Some(&auth),
                r#"{"name":"forever","scopes":["priv:pull,push,delete"]}"#,
            )
            .await;
        robot.assert_error("unauthorized", "create a robot");
        assert_eq!(
            robot.json()["detail"]["scope"],
            "namespace:priv:manage_members"
        );
        assert!(robot
            .header("www-authenticate")
            .contains(r#"scope="namespace:priv:manage_members",error="insufficient_scope""#));
        assert!(h
            .store()
            .get_access_token("forever")
            .await
            .unwrap()
            .is_none());

        let owner = h
            .call(
                "PUT",
                "/api/v1/namespaces/priv/members/stranger",
                Some(&auth),
                r#"{"role":"owner"}"#,
            )
            .await;
        owner.assert_error("unauthorized", "make an owner");
        assert_eq!(
            h.store().member_role("priv", "stranger").await.unwrap(),
            None
        );

        let public = h
            .call(
                "PATCH",
                "/api/v1/namespaces/priv",
                Some(&auth),
                r#"{"visibility":"public"}"#,
            )
            .await;
        public.assert_error("unauthorized", "publish");
        assert_eq!(
            public.json()["detail"]["scope"],
            "namespace:priv:manage_settings"
        );
        let namespace = h.store().get_namespace("priv").await.unwrap().unwrap();
        assert_eq!(namespace.visibility, Visibility::Private);
    }

    // A token for the management scopes does what its claim names, and
    // nothing else.
    let settings = h.token("owner", &["namespace:priv:manage_settings"]).await;
    let settings = bearer(&settings);
    let published = h
        .call(
            "PATCH",
            "/api/v1/namespaces/priv",
            Some(&settings),
            r#"{"visibility":"public"}"#,
        )
        .await;
    assert_eq!(published.status, 200, "{}", published.text());
    assert_eq!(published.json()["visibility"], "public");
    let member = h
        .call(
            "PUT",
            "/api/v1/namespaces/priv/members/stranger",
            Some(&settings),
            r#"{"role":"reader"}"#,
        )
        .await;
    member.assert_error("unauthorized", "settings do not manage members");

    // The token endpoint grants management scopes only to those the policy
    // allows: a reader asking for them gets a token without them.
    let asked = [
        "namespace:priv:pull,manage_members,manage_settings",
        "namespace:brand-new:create",
        "registry:users:*",
        "registry:tokens:*",
    ];
    assert_eq!(
        access_claim(&h.token("reader", &asked).await),
        serde_json::json!([
            {"type": "namespace", "name": "priv", "actions": ["pull"]},
            {"type": "registry", "name": "tokens", "actions": ["*"]},
        ])
    );
    assert_eq!(
        access_claim(&h.token("root", &asked).await),
        serde_json::json!([
            {"type": "namespace", "name": "priv", "actions": ["pull", "manage_members", "manage_settings"]},
            {"type": "namespace", "name": "brand-new", "actions": ["create"]},
            {"type": "registry", "name": "users", "actions": ["*"]},
            {"type": "registry", "name": "tokens", "actions": ["*"]},
        ])
    );
}

/// Robots use the API within their scopes: they list what they may pull,
/// and never create tokens or change members or settings, whatever their
/// scopes, by Basic or by a registry token.
#[tokio::test]
async fn robots_list_what_they_may_pull_and_manage_nothing() {
    let h = Harness::new().await;
    let secret = berth_auth::admin::create_access_token(
        h.store().as_ref(),
        "puller",
        vec![TokenScope::parse("priv/app:pull").unwrap()],
        Expiry::Never,
        Some("owner"),
        None,
        &berth_auth::change_at(
            &berth_auth::Actor::system("test"),
            time::OffsetDateTime::now_utc(),
        ),
    )
    .await
    .unwrap();
    let puller = basic("puller", secret.expose());
    let listed = h.call("GET", "/api/v1/namespaces", Some(&puller), "").await;
    assert_eq!(listed.status, 200);
    assert_eq!(names(&listed.json(), "namespaces", "name"), ["priv", "pub"]);
    assert_eq!(
        listed.json()["namespaces"][0]["role"],
        serde_json::Value::Null
    );
    assert_eq!(
        h.call("GET", "/api/v1/namespaces/priv", Some(&puller), "")
            .await
            .status,
        200
    );

    let robot = basic("robot", &h.robot);
    for (method, path, body) in [
        (
            "POST",
            "/api/v1/tokens",
            r#"{"name":"child","scopes":["priv:pull"]}"#,
        ),
        ("GET", "/api/v1/tokens", ""),
        (
            "PUT",
            "/api/v1/namespaces/priv/members/stranger",
            r#"{"role":"reader"}"#,
        ),
        ("GET", "/api/v1/namespaces/priv/members", ""),
        (
            "PATCH",
            "/api/v1/namespaces/priv",
            r#"{"visibility":"public"}"#,
        ),
        ("POST", "/api/v1/namespaces", r#"{"name":"robot-made"}"#),
    ] {
        let answer = h.call(method, path, Some(&robot), body).await;
        answer.assert_error("forbidden", &format!("robot {method} {path}"));
    }
    assert!(h.store().get_access_token("child").await.unwrap().is_none());

    // Through the token endpoint a robot is granted no management scope.
    let answer = h
        .call(
            "GET",
            "/auth/token?service=berth&scope=namespace:priv:pull,manage_members&scope=registry:tokens:*",
            Some(&robot),
            "",
        )
        .await;
    assert_eq!(
        access_claim(answer.json()["token"].as_str().unwrap()),
        serde_json::json!([{"type": "namespace", "name": "priv", "actions": ["pull"]}])
    );
}

/// Issue 11 (Low): the last owner of a namespace cannot demote or remove
/// themselves; with another owner they can.
#[tokio::test]
async fn a_namespace_keeps_its_last_owner() {
    let h = Harness::new().await;
    let owner = basic("owner", PASSWORD);
    let demote = h
        .call(
            "PUT",
            "/api/v1/namespaces/priv/members/owner",
            Some(&owner),
            r#"{"role":"maintainer"}"#,
        )
        .await;
    demote.assert_error("conflict", "demote the last owner");
    assert!(demote.json()["message"]
        .as_str()
        .unwrap()
        .contains("last owner"));
    h.call(
        "DELETE",
        "/api/v1/namespaces/priv/members/owner",
        Some(&owner),
        "",
    )
    .await
    .assert_error("conflict", "remove the last owner");
    let root = basic("root", PASSWORD);
    h.call(
        "DELETE",
        "/api/v1/namespaces/priv/members/owner",
        Some(&root),
        "",
    )
    .await
    .assert_error("conflict", "administrators keep the rule too");
    assert_eq!(
        h.store().member_role("priv", "owner").await.unwrap(),
        Some(Role::Owner)
    );

    let promoted = h
        .call(
            "PUT",
            "/api/v1/namespaces/priv/members/bystander",
            Some(&owner),
            r#"{"role":"owner"}"#,
        )
        .await;
    assert_eq!(promoted.status, 200);
    let stepped_down = h
        .call(
            "PUT",
            "/api/v1/namespaces/priv/members/owner",
            Some(&owner),
            r#"{"role":"reader"}"#,
        )
        .await;
    assert_eq!(stepped_down.status, 200, "{}", stepped_down.text());
    h.call("GET", "/api/v1/namespaces/priv/members", Some(&owner), "")
        .await
        .assert_error("forbidden", "a reader now");
}

#[tokio::test]
async fn listings_show_what_the_caller_may_see() {
    let h = Harness::new().await;
    let listed = |auth: String| {
        let h = &h;
        async move {
            let answer = h.call("GET", "/api/v1/namespaces", Some(&auth), "").await;
            assert_eq!(answer.status, 200, "{}", answer.text());
            names(&answer.json(), "namespaces", "name")
        }
    };
    assert_eq!(
        listed(basic("stranger", PASSWORD)).await,
        ["pub", "stranger"]
    );
    assert_eq!(
        listed(basic("reader", PASSWORD)).await,
        ["priv", "pub", "reader"]
    );
    // Administrators see every namespace, the users' personal ones too.
    assert_eq!(
        listed(basic("root", PASSWORD)).await,
        [
            "bystander",
            "maintainer",
            "owner",
            "priv",
            "pub",
            "reader",
            "root",
            "stranger",
            "writer"
        ]
    );
    let pull_pub = h.token("reader", &["namespace:pub:pull"]).await;
    assert_eq!(listed(bearer(&pull_pub)).await, ["pub"]);
    let repository = h.token("reader", &["repository:priv/app:pull"]).await;
    assert_eq!(listed(bearer(&repository)).await, ["priv"]);
    assert!(listed(bearer(&h.token("reader", &[]).await))
        .await
        .is_empty());
    // The catalog scope lists what the policy shows, as Basic does (so a
    // client can list names it does not know yet), and sees nothing more:
    // one namespace still needs pull in it.
    let catalog = h.token("reader", &["registry:catalog:*"]).await;
    assert_eq!(listed(bearer(&catalog)).await, ["priv", "pub", "reader"]);
    h.call(
        "GET",
        "/api/v1/namespaces/priv",
        Some(&bearer(&catalog)),
        "",
    )
    .await
    .assert_error(
        "unauthorized",
        "the catalog scope does not show one namespace",
    );

    let reader = basic("reader", PASSWORD);
    let role = h
        .call("GET", "/api/v1/namespaces/priv", Some(&reader), "")
        .await;
    assert_eq!(role.json()["role"], "reader");
    assert_eq!(role.json()["visibility"], "private");

    // Tokens: people see their own, administrators all.
    let owner = basic("owner", PASSWORD);
    let created = h
        .call(
            "POST",
            "/api/v1/tokens",
            Some(&owner),
            r#"{"name":"ci","scopes":["priv:pull,push"],"expires":"30d"}"#,
        )
        .await;
    assert_eq!(created.status, 201, "{}", created.text());
    let body = created.json();
    assert!(body["token"].as_str().unwrap().starts_with("berth_at_"));
    assert_eq!(body["scopes"], serde_json::json!(["priv:pull,push"]));
    assert!(body["expires_at"].is_string());
    let tokens = |auth: String| {
        let h = &h;
        async move {
            let answer = h.call("GET", "/api/v1/tokens", Some(&auth), "").await;
            assert_eq!(answer.status, 200, "{}", answer.text());
            names(&answer.json(), "tokens", "name")
        }
    };
    assert_eq!(tokens(owner.clone()).await, ["ci"]);
    assert!(tokens(reader.clone()).await.is_empty());
    assert_eq!(tokens(basic("root", PASSWORD)).await, ["ci", "robot"]);
    let revoke = h
        .call("DELETE", "/api/v1/tokens/ci", Some(&reader), "")
        .await;
    revoke.assert_error("forbidden", "not the reader's token");
    let missing = h
        .call(
            "DELETE",
            "/api/v1/tokens/nope",
            Some(&basic("root", PASSWORD)),
            "",
        )
        .await;
    missing.assert_error("not_found", "administrators learn it does not exist");
    assert_eq!(
        h.call("DELETE", "/api/v1/tokens/ci", Some(&owner), "")
            .await
            .status,
        204
    );
    let listed = h.call("GET", "/api/v1/tokens", Some(&owner), "").await;
    assert!(listed.json()["tokens"][0]["revoked_at"].is_string());
}

/// Everything wrong with a request's form is a 4xx in the error shape that
/// says what was wrong; nothing is a 500.
#[tokio::test]
async fn bad_requests_say_what_was_wrong() {
    let h = Harness::new().await;
    let root = basic("root", PASSWORD);
    let owner = basic("owner", PASSWORD);
    // (method, path, authorization, body, status, code, part of the message)
    #[rustfmt::skip]
    let table: &[(&str, &str, &str, &str, u16, &str, &str)] = &[
        ("POST", "/api/v1/users", &root, r#"{"name":"x1","password":"long enough","extra":1}"#, 400, "invalid_request", "unknown field `extra`"),
        ("POST", "/api/v1/users", &root, r#"{"name":"x1","password":"long"#, 400, "invalid_request", "malformed JSON"),
        ("POST", "/api/v1/users", &root, r#"{"name":"x1","password":"long enough"} []"#, 400, "invalid_request", "malformed JSON"),
        // A struct's fields in an array, which serde alone would take (schemathesis found it).
        ("PATCH", "/api/v1/users/reader", &root, r#"[null, null]"#, 400, "invalid_request", "a JSON object"),
        ("POST", "/api/v1/users", &root, r#"{"name":"x1","password":"short"}"#, 400, "invalid_request", "password refused"),
        ("POST", "/api/v1/users", &root, r#"{"name":"Not Valid","password":"long enough"}"#, 400, "invalid_request", "name: \"Not Valid\" is not a valid name"),
        ("POST", "/api/v1/users", &root, r#"{"name":"owner","password":"long enough"}"#, 409, "conflict", "already exists"),
        ("POST", "/api/v1/namespaces", &root, r#"{"name":"pub"}"#, 409, "conflict", "already exists"),
        ("PATCH", "/api/v1/namespaces/Bad_Name", &owner, r#"{"visibility":"public"}"#, 400, "invalid_request", "path parameter namespace"),
        ("PATCH", "/api/v1/namespaces/priv", &owner, r#"{"visibility":"hidden"}"#, 400, "invalid_request", "visibility: unknown variant `hidden`"),
        ("PUT", "/api/v1/namespaces/priv/members/stranger", &owner, r#"{"role":"admin"}"#, 400, "invalid_request", "role: unknown variant `admin`"),
        ("PUT", "/api/v1/namespaces/priv/members/nobody", &owner, r#"{"role":"reader"}"#, 404, "not_found", "not found"),
        ("PUT", "/api/v1/namespaces/priv/members/stranger", &owner, "", 415, "unsupported_media_type", "application/json"),
        ("POST", "/api/v1/tokens", &owner, r#"{"name":"t1","scopes":["priv:admin"]}"#, 400, "invalid_request", "scopes[0]: invalid token scope"),
        ("POST", "/api/v1/tokens", &owner, r#"{"name":"t1","scopes":["priv:pull"],"expires":"1000000w"}"#, 400, "invalid_request", "expires: invalid expiry"),
        ("POST", "/api/v1/tokens", &owner, r#"{"name":"robot","scopes":["priv:pull"]}"#, 409, "conflict", "already exists"),
        ("PUT", "/api/v1/quotas/priv", &root, r#"{"storage":9223372036854775808}"#, 400, "invalid_request", "storage: at most 9223372036854775806 bytes, or \"unlimited\""),
        ("PUT", "/api/v1/quotas/priv", &root, r#"{"traffic":"10GB"}"#, 400, "invalid_request", "traffic"),
        ("PUT", "/api/v1/quotas/nope", &root, r#"{"storage":1}"#, 404, "not_found", "namespace unknown"),
        ("GET", "/api/v1/nothing/here", &owner, "", 404, "not_found", "no such API path"),
        ("GET", "/api/v1", &owner, "", 404, "not_found", "no such API path"),
        ("GET", "/api/v1/namespaces/nope", &root, "", 404, "not_found", "no namespace nope"),
        ("GET", "/api/v1/namespaces/nope", &owner, "", 403, "forbidden", "denied"),
        ("DELETE", "/api/v1/users", &root, "", 405, "method_not_allowed", "GET, POST"),
        ("GET", "/api/v1/users", "Weird credentials", "", 401, "unauthorized", "malformed Authorization"),
        ("GET", "/api/v1/users", "Bearer not.a.token", "", 401, "unauthorized", "invalid or expired token"),
    ];
    for (method, path, authorization, body, status, code, message) in table {
        let context = format!("{method} {path} {body}");
        let answer = h.call(method, path, Some(authorization), body).await;
        assert_eq!(answer.status, *status, "{context}: {}", answer.text());
        answer.assert_error(code, &context);
        let text = answer.json()["message"].as_str().unwrap().to_string();
        assert!(text.contains(message), "{context}: {text}");
        assert!(!text.contains("long enough"), "{context}: no secret echoed");
    }
    let not_allowed = h.call("DELETE", "/api/v1/users", Some(&root), "").await;
    assert_eq!(not_allowed.header("allow"), "GET, POST");
    let bad_token = h
        .call("GET", "/api/v1/users", Some("Bearer not.a.token"), "")
        .await;
    assert!(bad_token
        .header("www-authenticate")
        .contains(r#"error="invalid_token""#));
    let malformed = h
        .call("POST", "/api/v1/users", Some(&root), r#"{"name":"x1","#)
        .await;
    assert_eq!(
        malformed.json()["detail"],
        serde_json::json!({"line": 1, "column": 13})
    );

    // A body of another media type, and bodies over the limit, declared or not.
    let request = |content_type: &str, length: Option<usize>, body: Body| {
        let mut builder = Request::builder()
            .method("POST")
            .uri("/api/v1/namespaces")
            .header("authorization", &root)
            .header("content-type", content_type);
        if let Some(length) = length {
            builder = builder.header("content-length", length);
        }
        builder.body(body).unwrap()
    };
    let form = h
        .send(request("text/plain", None, Body::from(r#"{"name":"x2"}"#)))
        .await;
    form.assert_error("unsupported_media_type", "text/plain");
    let big = format!(r#"{{"name":"x2","pad":"{}"}}"#, "x".repeat(70 * 1024));
    let declared = h
        .send(request(
            "application/json",
            Some(big.len()),
            Body::from(big.clone()),
        ))
        .await;
    declared.assert_error("payload_too_large", "declared length");
    let chunks = futures::stream::iter(
        big.into_bytes()
            .chunks(8 * 1024)
            .map(|c| Ok::<_, std::io::Error>(bytes::Bytes::copy_from_slice(c)))
            .collect::<Vec<_>>(),
    );
    let streamed = h
        .send(request(
            "application/json; charset=utf-8",
            None,
            Body::from_stream(chunks),
        ))
        .await;
    streamed.assert_error("payload_too_large", "streamed");
}

#[tokio::test]
async fn failed_logins_are_throttled_with_retry_after() {
    let h = Harness::new().await;
    let wrong = basic("reader", "wrong password");
    for attempt in 0..6 {
        let answer = h.call("GET", "/api/v1/namespaces", Some(&wrong), "").await;
        answer.assert_error("unauthorized", &format!("attempt {attempt}"));
    }
    let throttled = h
        .call(
            "GET",
            "/api/v1/namespaces",
            Some(&basic("reader", PASSWORD)),
            "",
        )
        .await;
    throttled.assert_error("too_many_requests", "locked");
    let seconds: u64 = throttled.header("retry-after").parse().unwrap();
    assert!(seconds >= 1);
    assert_eq!(throttled.json()["detail"]["retry_after_seconds"], seconds);
}

#[tokio::test]
async fn without_access_control_the_api_is_absent_but_documented() {
    let open = Harness::new().await.without_access_control();
    let users = open.call("GET", "/api/v1/users", None, "").await;
    users.assert_error("not_found", "no access control");
    assert!(users.json()["message"].as_str().unwrap().contains("--auth"));
    let document = open.call("GET", "/api/v1/openapi.json", None, "").await;
    assert_eq!(document.status, 200);
    assert_eq!(document.json()["openapi"], "3.1.0");
}

/// The document lists exactly the routed operations, with their
/// parameters, bodies, security, and the shared error answers.
#[tokio::test]
async fn the_openapi_document_covers_every_route() {
    let h = Harness::new().await;
    let answer = h.call("GET", "/api/v1/openapi.json", None, "").await;
    assert_eq!(answer.status, 200);
    assert_eq!(answer.header("content-type"), "application/json");
    let document = answer.json();
    assert_eq!(document["openapi"], "3.1.0");
    let mut documented = BTreeSet::new();
    for (path, item) in document["paths"].as_object().unwrap() {
        for (method, operation) in item.as_object().unwrap() {
            documented.insert((method.to_uppercase(), path.clone()));
            let id = operation["operationId"].as_str().unwrap();
            let route = Route::ALL
                .into_iter()
                .find(|route| route.name() == id)
                .unwrap_or_else(|| panic!("{id} is documented but not routed"));
            assert_eq!(
                route.method_and_path(),
                (method.to_uppercase().parse().unwrap(), path.as_str()),
                "{id}"
            );
            // Every `{param}` of the path is a documented path parameter.
            let params: BTreeSet<String> = operation["parameters"]
                .as_array()
                .map(|params| {
                    params
                        .iter()
                        .filter(|p| p["in"] == "path" && p["required"] == true)
                        .map(|p| p["name"].as_str().unwrap().to_string())
                        .collect()
                })
                .unwrap_or_default();
            let in_path: BTreeSet<String> = path
                .split('/')
                .filter_map(|s| s.strip_prefix('{')?.strip_suffix('}'))
                .map(str::to_string)
                .collect();
            assert_eq!(params, in_path, "{id}");
            assert_eq!(
                operation["requestBody"]["required"] == true,
                route.takes_body(),
                "{id}"
            );
            let responses = operation["responses"].as_object().unwrap();
            assert!(responses.keys().any(|s| s.starts_with('2')), "{id}");
            for (status, response) in responses {
                if !status.starts_with('2') {
                    assert_eq!(
                        response["content"]["application/json"]["schema"]["$ref"],
                        "#/components/schemas/ErrorBody",
                        "{id} {status}"
                    );
                }
            }
            assert_eq!(
                operation["security"].is_array(),
                !route.is_public(),
                "{id}: security"
            );
        }
    }
    let routed: BTreeSet<(String, String)> = Route::ALL
        .into_iter()
        .map(|route| {
            let (method, path) = route.method_and_path();
            (method.to_string(), path.to_string())
        })
        .collect();
    assert_eq!(documented, routed);
    let schemes = &document["components"]["securitySchemes"];
    assert_eq!(schemes["basic"]["scheme"], "basic");
    assert_eq!(schemes["bearer"]["scheme"], "bearer");
}

/// A wrong guess of `secret` of the same shape (so access-token secrets
/// still look like access tokens).
fn wrong_guess(secret: &str, attempt: usize) -> String {
    let keep = secret.len() - 4;
    format!("{}{:04}", &secret[..keep], attempt)
}

/// Sends `attempts` wrong logins for `account` from `peer` (with the
/// forwarded `headers`): each is refused, 401 until the throttle locks,
/// then 429.
async fn guess(
    h: &Harness,
    peer: &str,
    headers: &[(&str, &str)],
    account: &str,
    secret: &str,
    attempts: usize,
) {
    for attempt in 0..attempts {
        let wrong = basic(account, &wrong_guess(secret, attempt));
        let answer = h
            .call_from(peer, "GET", "/v2/", Some(&wrong), headers)
            .await;
        assert!(
            answer.status == 401 || answer.status == 429,
            "guess {attempt} for {account} from {peer} {headers:?}: {}",
            answer.status
        );
    }
}

/// Issue 11 (Medium): the throttle counted failures per account whatever
/// their source, so anyone could keep a user or a robot locked out with a
/// wrong guess every few minutes. Failures now count per (account, source)
/// and per source; logins with a high-entropy access-token secret are not
/// throttled by account at all. The guesser stays throttled.
#[tokio::test]
async fn failed_logins_from_one_address_do_not_lock_the_account_elsewhere() {
    let h = Harness::new().await;
    let (attacker, victim) = ("198.51.100.7:40000", "203.0.113.5:40000");
    guess(&h, attacker, &[], "reader", PASSWORD, 8).await;
    guess(&h, attacker, &[], "robot", &h.robot, 8).await;
    let reader = h
        .call_from(victim, "GET", "/v2/", Some(&basic("reader", PASSWORD)), &[])
        .await;
    assert_eq!(reader.status, 200, "the user from elsewhere");
    let robot = h
        .call_from(victim, "GET", "/v2/", Some(&basic("robot", &h.robot)), &[])
        .await;
    assert_eq!(robot.status, 200, "the robot from elsewhere");
    let guesser = h
        .call_from(
            attacker,
            "GET",
            "/v2/",
            Some(&basic("reader", PASSWORD)),
            &[],
        )
        .await;
    assert_eq!(
        guesser.status, 429,
        "the guesser's own attempts stay locked"
    );
    assert!(guesser.header("retry-after").parse::<u64>().unwrap() >= 1);
}

/// Behind a reverse proxy every connection comes from the proxy: with
/// `trusted_proxies`, the client is the rightmost `X-Forwarded-For` address
/// that is not a trusted proxy; from any other peer the header is ignored,
/// so a client cannot choose the address it is throttled under.
#[tokio::test]
async fn forwarded_addresses_count_only_from_trusted_proxies() {
    let mut h = Harness::new().await;
    h.state = h.state.clone().with_settings(berth_server::ServerSettings {
        trusted_proxies: vec!["10.0.0.0/8".parse().unwrap()],
        ..Default::default()
    });
    let proxy = "10.0.0.2:50000";
    // Through the proxy: a guesser does not lock out a user at another address.
    guess(
        &h,
        proxy,
        &[("x-forwarded-for", "198.51.100.7")],
        "reader",
        PASSWORD,
        8,
    )
    .await;
    let user = h
        .call_from(
            proxy,
            "GET",
            "/v2/",
            Some(&basic("reader", PASSWORD)),
            &[("x-forwarded-for", "203.0.113.9, 10.0.0.3")],
        )
        .await;
    assert_eq!(user.status, 200, "a user behind the proxy");
    // The guesser cannot escape by prepending another address: the proxy
    // appends the real one, and the rightmost untrusted address counts.
    let escape = h
        .call_from(
            proxy,
            "GET",
            "/v2/",
            Some(&basic("reader", PASSWORD)),
            &[("x-forwarded-for", "203.0.113.9, 198.51.100.7")],
        )
        .await;
    assert_eq!(escape.status, 429, "the guesser, whatever it prepends");
    // From a peer that is not a trusted proxy the header means nothing.
    let direct = "192.0.2.50:40000";
    guess(
        &h,
        direct,
        &[("x-forwarded-for", "203.0.113.77")],
        "writer",
        PASSWORD,
        8,
    )
    .await;
    let forged = h
        .call_from(
            direct,
            "GET",
            "/v2/",
            Some(&basic("writer", PASSWORD)),
            &[("x-forwarded-for", "203.0.113.78")],
        )
        .await;
    assert_eq!(forged.status, 429, "a forged header from an untrusted peer");
}

/// The `realm` of a `/v2/` challenge.
fn realm(answer: &support::Answer) -> String {
    let challenge = answer.header("www-authenticate");
    let start = challenge.find("realm=\"").expect("a realm") + "realm=\"".len();
    let end = challenge[start..].find('"').unwrap();
    challenge[start..start + end].to_string()
}

/// Issue 11 (Medium): the challenge realm used the listener's scheme and
/// reflected the client's `Host`, so behind a TLS-terminating proxy docker
/// was sent to an `http://` realm (and sent the password in clear), and a
/// forged `Host` chose where clients send their passwords. The scheme and
/// host a trusted proxy forwards are used; a `Host` that is not a plain
/// host[:port] is never reflected.
#[tokio::test]
async fn the_realm_follows_trusted_proxies_and_never_reflects_a_forged_host() {
    let mut h = Harness::new().await;
    h.state = h.state.clone().with_settings(berth_server::ServerSettings {
        trusted_proxies: vec!["10.0.0.0/8".parse().unwrap()],
        ..Default::default()
    });
    let forwarded = [
        ("host", "berth-internal:5000"),
        ("x-forwarded-proto", "https"),
        ("x-forwarded-host", "registry.example"),
        ("x-forwarded-for", "203.0.113.9"),
    ];
    /// A client address, the headers it sends, and the realm it must get.
    type Case<'a> = (&'a str, &'a [(&'a str, &'a str)], &'a str);
    let cases: &[Case] = &[
        (
            "10.0.0.2:50000",
            &forwarded,
            "https://registry.example/auth/token",
        ),
        (
            "192.0.2.50:40000",
            &forwarded,
            "http://berth-internal:5000/auth/token",
        ),
        ("192.0.2.50:40000", &[], "http://registry.test/auth/token"),
        (
            "192.0.2.50:40000",
            &[("host", "evil.example/phish?x=")],
            "http://localhost/auth/token",
        ),
        (
            "10.0.0.2:50000",
            &[
                ("host", "registry.test"),
                ("x-forwarded-host", "evil.example/phish"),
            ],
            "http://registry.test/auth/token",
        ),
    ];
    for (peer, headers, expected) in cases {
        let answer = h.call_from(peer, "GET", "/v2/", None, headers).await;
        assert_eq!(answer.status, 401, "{peer} {headers:?}");
        assert_eq!(realm(&answer), *expected, "{peer} {headers:?}");
    }
}

/// The event stream records the client behind a trusted proxy as the
/// actor's address, not the proxy.
#[tokio::test]
async fn events_name_the_client_behind_a_trusted_proxy() {
    let mut h = Harness::new().await;
    h.state = h.state.clone().with_settings(berth_server::ServerSettings {
        trusted_proxies: vec!["10.0.0.0/8".parse().unwrap()],
        ..Default::default()
    });
    let mut request = Request::builder()
        .method("POST")
        .uri("/api/v1/namespaces")
        .header("host", support::HOST)
        .header("authorization", basic("root", PASSWORD))
        .header("content-type", "application/json")
        .header("x-forwarded-for", "203.0.113.9")
        .body(Body::from(r#"{"name":"proxied"}"#))
        .unwrap();
    let peer: std::net::SocketAddr = "10.0.0.2:50000".parse().unwrap();
    request
        .extensions_mut()
        .insert(axum::extract::ConnectInfo(peer));
    assert_eq!(h.send(request).await.status, 201);
    let page = h
        .state
        .registry
        .read_events(&berth_meta::EventCursor::after(0), 1000)
        .await
        .unwrap();
    let created = page
        .events
        .iter()
        .rev()
        .find(|event| event.namespace.as_deref() == Some("proxied"))
        .expect("an event about the namespace");
    assert_eq!(created.actor.address, Some("203.0.113.9".parse().unwrap()));
    assert_eq!(created.actor.name.as_deref(), Some("root"));
}

/// `POST /auth/token` with a form, as `docker login` sends it.
async fn post_token(h: &Harness, form: &str) -> support::Answer {
    let request = Request::builder()
        .method("POST")
        .uri("/auth/token")
        .header("host", "registry.test")
        .header("content-type", "application/x-www-form-urlencoded")
        .body(Body::from(form.to_string()))
        .unwrap();
    h.send(request).await
}

/// A refresh token for `user`, from a password login asking for offline access.
async fn refresh_token_of(h: &Harness, user: &str, password: &str) -> String {
    let answer = post_token(
        h,
        &format!(
            "grant_type=password&service=berth&client_id=test&access_type=offline\
             &username={user}&password={password}"
        ),
    )
    .await;
    assert_eq!(answer.status, 200, "{}", answer.text());
    answer.json()["refresh_token"].as_str().unwrap().to_string()
}

/// Exchanges a refresh token; `offline` asks for a new one (rotation).
async fn refresh(h: &Harness, token: &str, offline: bool) -> support::Answer {
    let offline = if offline { "&access_type=offline" } else { "" };
    post_token(
        h,
        &format!(
            "grant_type=refresh_token&service=berth&client_id=test&refresh_token={token}{offline}"
        ),
    )
    .await
}

/// Issue 11: refresh tokens rotate when a client asks for a new one; the
/// old one is dead once the new one is issued, and presenting it again
/// logs out the whole family. A refresh without `access_type=offline`
/// (what docker and `berth` send on every command) leaves the token as it is.
#[tokio::test]
async fn refresh_tokens_rotate_and_a_reused_one_revokes_its_family() {
    let h = Harness::new().await;
    let first = refresh_token_of(&h, "reader", PASSWORD).await;
    for _ in 0..2 {
        let plain = refresh(&h, &first, false).await;
        assert_eq!(plain.status, 200, "{}", plain.text());
        assert!(plain.json().get("refresh_token").is_none());
    }
    let rotated = refresh(&h, &first, true).await;
    assert_eq!(rotated.status, 200, "{}", rotated.text());
    let second = rotated.json()["refresh_token"]
        .as_str()
        .unwrap()
        .to_string();
    assert_ne!(second, first);
    assert_eq!(refresh(&h, &first, false).await.status, 401, "rotated away");
    assert_eq!(refresh(&h, &second, false).await.status, 200);
    // Another login of the same user is a family of its own.
    let other = refresh_token_of(&h, "reader", PASSWORD).await;
    // The stolen first token comes back: the family is revoked.
    assert_eq!(refresh(&h, &first, true).await.status, 401);
    assert_eq!(
        refresh(&h, &second, false).await.status,
        401,
        "family revoked"
    );
    assert_eq!(refresh(&h, &other, false).await.status, 200);
}

/// Issue 11: an administrator disables, enables, demotes, resets and
/// deletes users through the API, and each change takes effect on the
/// credentials the user already holds.
#[tokio::test]
async fn disabled_users_lose_every_credential_at_once() {
    let h = Harness::new().await;
    let admin = basic("root", PASSWORD);
    let refresh_token = refresh_token_of(&h, "writer", PASSWORD).await;
    let jwt = h.token("writer", &["repository:pub/app:pull"]).await;
    let pull = |authorization: String| {
        let h = &h;
        async move { h.call("GET", "/v2/", Some(&authorization), "").await.status }
    };
    assert_eq!(pull(bearer(&jwt)).await, 200);

    let disable = h
        .call(
            "PATCH",
            "/api/v1/users/writer",
            Some(&admin),
            r#"{"disabled":true}"#,
        )
        .await;
    assert_eq!(disable.status, 200, "{}", disable.text());
    assert_eq!(disable.json()["disabled"], true);
    // The registry token issued before is refused at its next use, and
    // so are the password and the refresh token.
    assert_eq!(pull(bearer(&jwt)).await, 401);
    assert_eq!(pull(basic("writer", PASSWORD)).await, 401);
    assert_eq!(refresh(&h, &refresh_token, false).await.status, 401);
    let users = h
        .call("GET", "/api/v1/users", Some(&admin), "")
        .await
        .json();
    let writer = users["users"]
        .as_array()
        .unwrap()
        .iter()
        .find(|u| u["name"] == "writer")
        .unwrap();
    assert_eq!(writer["disabled"], true);

    let enable = h
        .call(
            "PATCH",
            "/api/v1/users/writer",
            Some(&admin),
            r#"{"disabled":false}"#,
        )
        .await;
    assert_eq!(enable.status, 200);
    assert_eq!(pull(basic("writer", PASSWORD)).await, 200);
    assert_eq!(pull(bearer(&jwt)).await, 200);
    // The refresh tokens revoked by disabling stay revoked.
    assert_eq!(refresh(&h, &refresh_token, false).await.status, 401);

    // A password reset revokes the stored logins and replaces the password.
    let stored = refresh_token_of(&h, "writer", PASSWORD).await;
    let reset = h
        .call(
            "PUT",
            "/api/v1/users/writer/password",
            Some(&admin),
            r#"{"password":"a brand new password"}"#,
        )
        .await;
    assert_eq!(reset.status, 204, "{}", reset.text());
    assert_eq!(refresh(&h, &stored, false).await.status, 401);
    assert_eq!(pull(basic("writer", PASSWORD)).await, 401);
    assert_eq!(pull(basic("writer", "a brand new password")).await, 200);

    // The last enabled administrator stays one.
    for (method, path, body) in [
        ("PATCH", "/api/v1/users/root", r#"{"admin":false}"#),
        ("PATCH", "/api/v1/users/root", r#"{"disabled":true}"#),
        ("DELETE", "/api/v1/users/root", ""),
    ] {
        let refused = h.call(method, path, Some(&admin), body).await;
        refused.assert_error("conflict", &format!("{method} {body}"));
    }
    let promote = h
        .call(
            "PATCH",
            "/api/v1/users/owner",
            Some(&admin),
            r#"{"admin":true}"#,
        )
        .await;
    assert_eq!(promote.json()["admin"], true);

    let deleted = h
        .call("DELETE", "/api/v1/users/writer", Some(&admin), "")
        .await;
    assert_eq!(deleted.status, 204, "{}", deleted.text());
    assert_eq!(pull(bearer(&jwt)).await, 401);
    h.call("DELETE", "/api/v1/users/writer", Some(&admin), "")
        .await
        .assert_error("not_found", "deleted twice");
}

/// Issue 11: a user changes their own password given the current one;
/// their stored logins end, and a wrong current password is refused.
#[tokio::test]
async fn users_change_their_own_password() {
    let h = Harness::new().await;
    let stored = refresh_token_of(&h, "reader", PASSWORD).await;
    let change = |current: &str, new: &str| {
        format!(r#"{{"current_password":"{current}","new_password":"{new}"}}"#)
    };
    let me = basic("reader", PASSWORD);
    let wrong = h
        .call(
            "PUT",
            "/api/v1/user/password",
            Some(&me),
            &change("not my password", "whatever it is"),
        )
        .await;
    wrong.assert_error("forbidden", "wrong current password");
    let short = h
        .call(
            "PUT",
            "/api/v1/user/password",
            Some(&me),
            &change(PASSWORD, "short"),
        )
        .await;
    short.assert_error("invalid_request", "too short");
    assert_eq!(refresh(&h, &stored, false).await.status, 200);
    let changed = h
        .call(
            "PUT",
            "/api/v1/user/password",
            Some(&me),
            &change(PASSWORD, "my new passphrase"),
        )
        .await;
    assert_eq!(changed.status, 204, "{}", changed.text());
    assert_eq!(refresh(&h, &stored, false).await.status, 401);
    let namespaces = |auth: String| {
        let h = &h;
        async move {
            h.call("GET", "/api/v1/namespaces", Some(&auth), "")
                .await
                .status
        }
    };
    assert_eq!(namespaces(basic("reader", PASSWORD)).await, 401);
    assert_eq!(namespaces(basic("reader", "my new passphrase")).await, 200);
    // Robots have no password to change.
    let robot = basic("robot", &h.robot);
    let refused = h
        .call(
            "PUT",
            "/api/v1/user/password",
            Some(&robot),
            &change("x", "long enough password"),
        )
        .await;
    refused.assert_error("forbidden", "a robot");
}

/// Issue 11: a robot's rights are its scopes intersected with its
/// creator's current rights, at every use (Basic with its secret, and a
/// registry token naming it); a disabled or deleted creator takes their
/// robots with them; every owner of a namespace sees the robots that reach it.
#[tokio::test]
async fn robots_follow_their_creator_and_are_listed_to_every_owner() {
    let h = Harness::new().await;
    let admin = basic("root", PASSWORD);
    let owner = basic("owner", PASSWORD);
    let created = h
        .call(
            "POST",
            "/api/v1/tokens",
            Some(&owner),
            r#"{"name":"deployer","scopes":["priv:pull,push,delete"]}"#,
        )
        .await;
    assert_eq!(created.status, 201, "{}", created.text());
    let robot = basic("deployer", created.json()["token"].as_str().unwrap());
    let digest = h.push_image("priv/app", "v1", "robot creator").await;
    let status = |method: &'static str, path: String, auth: String| {
        let h = &h;
        async move { h.call(method, &path, Some(&auth), "").await.status }
    };
    let pull = || status("GET", "/v2/priv/app/tags/list".into(), robot.clone());
    let push = || status("POST", "/v2/priv/app/blobs/uploads/".into(), robot.clone());
    assert_eq!(pull().await, 200);
    assert_eq!(push().await, 202);

    // The owner becomes a reader (the maintainer takes over as owner): the
    // robot keeps only pull, through Basic and through a registry token.
    for (user, role) in [("maintainer", "owner"), ("owner", "reader")] {
        let set = h
            .call(
                "PUT",
                &format!("/api/v1/namespaces/priv/members/{user}"),
                Some(&admin),
                &format!(r#"{{"role":"{role}"}}"#),
            )
            .await;
        assert_eq!(set.status, 200, "{}", set.text());
    }
    assert_eq!(pull().await, 200);
    assert_eq!(push().await, 403);
    let deleted = status(
        "DELETE",
        format!("/v2/priv/app/manifests/{digest}"),
        robot.clone(),
    )
    .await;
    assert_eq!(deleted, 403);
    let answer = h
        .call(
            "GET",
            "/auth/token?service=berth&scope=repository:priv/app:pull,push,delete",
            Some(&robot),
            "",
        )
        .await;
    let jwt = answer.json()["token"].as_str().unwrap().to_string();
    assert_eq!(
        access_claim(&jwt),
        serde_json::json!([{"type": "repository", "name": "priv/app", "actions": ["pull"]}])
    );

    // The new owner sees the robot a co-owner made; a reader does not.
    let listed = h
        .call(
            "GET",
            "/api/v1/namespaces/priv/tokens",
            Some(&basic("maintainer", PASSWORD)),
            "",
        )
        .await;
    assert_eq!(listed.status, 200, "{}", listed.text());
    assert_eq!(
        names(&listed.json(), "tokens", "name"),
        ["deployer", "robot"]
    );
    assert_eq!(listed.json()["tokens"][0]["created_by"], "owner");
    let refused = h
        .call("GET", "/api/v1/namespaces/priv/tokens", Some(&owner), "")
        .await;
    refused.assert_error("forbidden", "a reader");

    // A disabled creator's robot is refused at once, by secret and by
    // registry token; enabled again, it works; deleted, never again.
    let disable = |disabled: bool| {
        let h = &h;
        let admin = admin.clone();
        async move {
            let body = format!(r#"{{"disabled":{disabled}}}"#);
            let answer = h
                .call("PATCH", "/api/v1/users/owner", Some(&admin), &body)
                .await;
            assert_eq!(answer.status, 200, "{}", answer.text());
        }
    };
    disable(true).await;
    assert_eq!(pull().await, 401);
    assert_eq!(
        status("GET", "/v2/".into(), bearer(&jwt)).await,
        401,
        "the robot's registry token"
    );
    disable(false).await;
    assert_eq!(pull().await, 200);
    let gone = h
        .call("DELETE", "/api/v1/users/owner", Some(&admin), "")
        .await;
    assert_eq!(gone.status, 204, "{}", gone.text());
    assert_eq!(pull().await, 401);
    assert_eq!(status("GET", "/v2/".into(), bearer(&jwt)).await, 401);
}

/// Webhooks: a namespace's are its owners', registry-wide ones (`*`) an
/// administrator's; bad input is refused naming the field; the secret is
/// sealed at rest and never returned; a webhook is found only in its scope.
#[tokio::test]
async fn webhooks_are_managed_in_their_scope_and_keep_their_secret() {
    use berth_auth::key_encryption::{unseal, KeyEncryptionKey, SEALED_PREFIX};
    let mut h = Harness::new().await;
    let key = KeyEncryptionKey::parse(&"ab".repeat(32)).unwrap();
    h.state = h
        .state
        .clone()
        .with_outbound(berth_server::OutboundSettings {
            key_encryption: Some(key.clone()),
            allow_private: false,
        });
    let owner = basic("owner", PASSWORD);
    let root = basic("root", PASSWORD);
    let stranger = basic("stranger", PASSWORD);
    let body = |scope: &str, url: &str, events: &str| {
        format!(r#"{{"scope":"{scope}","url":"{url}","events":{events},"secret":"hush-hush"}}"#)
    };

    let created = h
        .call(
            "POST",
            "/api/v1/webhooks",
            Some(&owner),
            &body(
                "priv",
                "https://ci.example/hook",
                r#"["push","delete","push"]"#,
            ),
        )
        .await;
    assert_eq!(created.status, 201, "{}", created.text());
    assert!(!created.text().contains("hush-hush"), "{}", created.text());
    let webhook = created.json();
    assert_eq!(webhook["scope"], "priv");
    assert_eq!(webhook["events"], serde_json::json!(["push", "delete"]));
    assert_eq!(webhook["signed"], true);
    assert_eq!(webhook["created_by"], "owner");
    let id = webhook["id"].as_i64().unwrap();
    let stored = h.state.registry.webhook(id).await.unwrap().unwrap();
    let sealed = stored.secret.unwrap();
    assert!(sealed.starts_with(SEALED_PREFIX), "{sealed}");
    assert_eq!(
        unseal(
            Some(&key),
            &berth_server::api::webhooks::secret_binding(&stored.url),
            &sealed
        )
        .unwrap(),
        "hush-hush"
    );

    // Registry-wide webhooks are administrators'.
    h.call(
        "POST",
        "/api/v1/webhooks",
        Some(&owner),
        &body("*", "https://all.example/", r#"["push"]"#),
    )
    .await
    .assert_error("forbidden", "an owner adds a registry-wide webhook");
    let everywhere = h
        .call(
            "POST",
            "/api/v1/webhooks",
            Some(&root),
            &body("*", "https://all.example/", r#"["namespace.created"]"#),
        )
        .await;
    assert_eq!(everywhere.status, 201, "{}", everywhere.text());
    let everywhere_id = everywhere.json()["id"].as_i64().unwrap();

    for (request, field) in [
        (body("priv", "ftp://ci.example/", r#"["push"]"#), "url"),
        (
            body("priv", "https://u:p@ci.example/", r#"["push"]"#),
            "url",
        ),
        (
            body("priv", "https://ci.example/", r#"["pulls"]"#),
            "events",
        ),
        (body("priv", "https://ci.example/", "[]"), "events"),
        (
            body("Not A Name", "https://ci.example/", r#"["push"]"#),
            "scope",
        ),
    ] {
        let refused = h
            .call("POST", "/api/v1/webhooks", Some(&owner), &request)
            .await;
        refused.assert_error("invalid_request", &request);
        assert!(
            refused.text().contains(field),
            "{request}: {}",
            refused.text()
        );
    }

    let listed = |auth: String| {
        let h = &h;
        async move {
            let listing = h.call("GET", "/api/v1/webhooks", Some(&auth), "").await;
            assert_eq!(listing.status, 200, "{}", listing.text());
            assert!(!listing.text().contains("hush-hush"));
            names(&listing.json(), "webhooks", "scope")
        }
    };
    assert_eq!(listed(owner.clone()).await, vec!["priv"]);
    assert_eq!(listed(root.clone()).await, vec!["priv", "*"]);
    assert_eq!(listed(stranger.clone()).await, Vec::<String>::new());
    // A registry token shows only what its claim grants: an administrator's
    // token without `registry:users:*` shows no registry-wide webhook.
    let unclaimed = bearer(&h.token("root", &[]).await);
    assert_eq!(listed(unclaimed).await, Vec::<String>::new());
    let administering = bearer(&h.token("root", &["registry:users:*"]).await);
    assert_eq!(listed(administering).await, vec!["*"]);

    // A webhook is addressed in its own scope only.
    h.call(
        "GET",
        &format!("/api/v1/webhooks/pub/{id}/deliveries"),
        Some(&root),
        "",
    )
    .await
    .assert_error("not_found", "a webhook of priv looked up in pub");
    let log = h
        .call(
            "GET",
            &format!("/api/v1/webhooks/priv/{id}/deliveries"),
            Some(&owner),
            "",
        )
        .await;
    assert_eq!(log.status, 200, "{}", log.text());
    assert_eq!(log.json()["deliveries"], serde_json::json!([]));
    h.call(
        "DELETE",
        &format!("/api/v1/webhooks/%2A/{everywhere_id}"),
        Some(&owner),
        "",
    )
    .await
    .assert_error("forbidden", "an owner removes a registry-wide webhook");

    for (uri, auth) in [
        (format!("/api/v1/webhooks/priv/{id}"), &owner),
        (format!("/api/v1/webhooks/*/{everywhere_id}"), &root),
    ] {
        let removed = h.call("DELETE", &uri, Some(auth), "").await;
        assert_eq!(removed.status, 204, "{uri}: {}", removed.text());
        h.call("DELETE", &uri, Some(auth), "")
            .await
            .assert_error("not_found", "removed twice");
    }
    assert_eq!(listed(root).await, Vec::<String>::new());
}

/// The audit trail answers "who deleted this tag": the audit consumer
/// copies the events, and administrators read them filtered.
#[tokio::test]
async fn the_audit_trail_says_who_deleted_a_tag() {
    use std::sync::Arc;

    use berth_registry::{AuditTrail, ConsumerOptions, ConsumerRunner};
    let h = Harness::new().await;
    let root = basic("root", PASSWORD);
    let owner = basic("owner", PASSWORD);
    h.push_image("priv/app", "v1", "audited").await;
    let untagged = h
        .call(
            "DELETE",
            "/api/v1/repositories/priv%2Fapp/tags/v1",
            Some(&owner),
            "",
        )
        .await;
    assert_eq!(untagged.status, 204, "{}", untagged.text());
    let registry = h.state.registry.clone();
    let runner = ConsumerRunner::new(
        registry.clone(),
        AuditTrail::NAME,
        Arc::new(AuditTrail::new(registry)),
        ConsumerOptions::default(),
    );
    assert!(runner.run_once().await.unwrap().handled > 0);
    // A second pass finds nothing new, and copying is idempotent anyway.
    assert_eq!(runner.run_once().await.unwrap().handled, 0);

    let answer = h
        .call(
            "GET",
            "/api/v1/audit?namespace=priv&action=tag.deleted",
            Some(&root),
            "",
        )
        .await;
    assert_eq!(answer.status, 200, "{}", answer.text());
    let records = answer.json()["records"].as_array().unwrap().clone();
    assert_eq!(records.len(), 1, "{records:?}");
    let record = &records[0];
    assert_eq!(record["resource"], "priv/app:v1");
    assert_eq!(record["actor"]["kind"], "user");
    assert_eq!(record["actor"]["name"], "owner");
    // No socket here, so no client address (the end-to-end test sees one).
    assert!(record["actor"].get("address").is_some(), "{record}");
    assert_eq!(record["outcome"], "ok");

    let by_owner = h
        .call("GET", "/api/v1/audit?actor=owner", Some(&root), "")
        .await
        .json();
    let actions: Vec<&str> = by_owner["records"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["action"].as_str().unwrap())
        .collect();
    assert_eq!(actions, vec!["tag.deleted"]);
    let paged = h
        .call("GET", "/api/v1/audit?limit=1", Some(&root), "")
        .await
        .json();
    let before = paged["next_before"].as_i64().expect("a next page");
    let next = h
        .call(
            "GET",
            &format!("/api/v1/audit?limit=1&before={before}"),
            Some(&root),
            "",
        )
        .await
        .json();
    assert!(next["records"][0]["id"].as_i64().unwrap() < before);

    h.call("GET", "/api/v1/audit", Some(&owner), "")
        .await
        .assert_error("forbidden", "an owner reads the audit trail");
    // That refusal is in the trail too, once flushed, and so is a wrong
    // password (a 401 to presented credentials); a bare challenge is not.
    h.call(
        "GET",
        "/api/v1/users",
        Some(&basic("stranger", "wrong")),
        "",
    )
    .await
    .assert_error("unauthorized", "a wrong password");
    h.call("GET", "/api/v1/users", None, "")
        .await
        .assert_error("unauthorized", "no credentials");
    assert_eq!(h.state.registry.flush_accesses().await.unwrap(), 2);
    let refused = h
        .call(
            "GET",
            "/api/v1/audit?action=request.refused",
            Some(&root),
            "",
        )
        .await
        .json();
    let refused: Vec<(String, String, String)> = refused["records"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| {
            (
                r["actor"]["name"].as_str().unwrap_or("-").to_string(),
                r["resource"].as_str().unwrap().to_string(),
                r["outcome"].as_str().unwrap().to_string(),
            )
        })
        .collect();
    let row = |a: &str, b: &str, c: &str| (a.to_string(), b.to_string(), c.to_string());
    assert_eq!(
        refused,
        vec![
            row("stranger", "GET /api/v1/users", "refused 401"),
            row("owner", "GET /api/v1/audit", "refused 403"),
        ]
    );
    h.call("GET", "/api/v1/audit?limit=0", Some(&root), "")
        .await
        .assert_error("invalid_request", "a limit of 0");
    h.call("GET", "/api/v1/audit?who=owner", Some(&root), "")
        .await
        .assert_error("invalid_request", "an unknown parameter");
}

/// Logins are in the audit trail: a registry token issued to a user (GET
/// with Basic, and the OAuth2 password grant) with what it grants, filed
/// under the one namespace it names; tokens for anonymous callers are not
/// logins, and no token's text is recorded.
#[tokio::test]
async fn the_audit_trail_records_logins() {
    let h = Harness::new().await;
    let root = basic("root", PASSWORD);
    let owner = basic("owner", PASSWORD);
    let issued = h
        .call(
            "GET",
            "/auth/token?service=berth&scope=repository:priv/app:pull,push",
            Some(&owner),
            "",
        )
        .await
        .json();
    let token = issued["token"].as_str().expect("a token").to_string();
    h.call(
        "GET",
        "/auth/token?service=berth&scope=repository:pub/app:pull",
        None,
        "",
    )
    .await
    .json();
    let form = format!(
        "grant_type=password&service=berth&client_id=test&username=owner&password={PASSWORD}\
         &scope=repository:priv/app:pull"
    );
    let posted = post_token(&h, &form).await;
    assert_eq!(posted.status, 200, "{}", posted.text());
    assert_eq!(h.state.registry.flush_accesses().await.unwrap(), 2);

    let trail = h
        .call("GET", "/api/v1/audit?action=token.issued", Some(&root), "")
        .await
        .json();
    let records = trail["records"].as_array().unwrap();
    let logins: Vec<(&str, &str, &str, &str)> = records
        .iter()
        .map(|r| {
            (
                r["actor"]["kind"].as_str().unwrap(),
                r["actor"]["name"].as_str().unwrap(),
                r["namespace"].as_str().unwrap_or("-"),
                r["detail"]["grant"].as_str().unwrap(),
            )
        })
        .collect();
    assert_eq!(
        logins,
        vec![
            ("user", "owner", "priv", "password"),
            ("user", "owner", "priv", "basic"),
        ]
    );
    assert_eq!(
        records[1]["detail"]["access"],
        serde_json::json!([{"type": "repository", "name": "priv/app", "actions": ["pull", "push"]}])
    );
    assert!(
        !trail.to_string().contains(&token),
        "the issued token is never recorded"
    );
    // Filtered by actor, the owner's logins are found, the anonymous one
    // never was.
    let by_actor = h
        .call(
            "GET",
            "/api/v1/audit?actor=owner&action=token.issued",
            Some(&root),
            "",
        )
        .await
        .json();
    assert_eq!(by_actor["records"].as_array().unwrap().len(), 2);
}

/// An administrator sets a namespace's limits, returns one to the default
/// (`null`) leaving the other, and recounts; those who may see the
/// namespace read its quotas, others do not see them listed.
#[tokio::test]
async fn quotas_are_set_read_and_returned_to_the_default() {
    let h = Harness::new().await;
    let root = basic("root", PASSWORD);
    let set = h
        .call(
            "PUT",
            "/api/v1/quotas/priv",
            Some(&root),
            r#"{"storage":1000,"traffic":5000}"#,
        )
        .await;
    assert_eq!(set.status, 200, "{}", set.text());
    let quota = set.json();
    assert_eq!(quota["storage"]["limit"], 1000);
    assert_eq!(quota["traffic"]["limit"], 5000);
    assert_eq!(quota["storage"]["default"], false);
    let cleared = h
        .call(
            "PUT",
            "/api/v1/quotas/priv",
            Some(&root),
            r#"{"storage":null}"#,
        )
        .await
        .json();
    assert_eq!(cleared["storage"]["limit"], serde_json::Value::Null);
    assert_eq!(cleared["traffic"]["limit"], 5000);
    let unlimited = h
        .call(
            "PUT",
            "/api/v1/quotas/priv",
            Some(&root),
            r#"{"traffic":"unlimited"}"#,
        )
        .await
        .json();
    assert_eq!(unlimited["traffic"]["limit"], serde_json::Value::Null);
    assert_eq!(unlimited["traffic"]["default"], false);
    for body in [
        r#"{"traffic":"lots"}"#,
        r#"{"traffic":9223372036854775808}"#,
        r#"{"traffic":-1}"#,
    ] {
        h.call("PUT", "/api/v1/quotas/priv", Some(&root), body)
            .await
            .assert_error("invalid_request", body);
    }
    h.call(
        "PUT",
        "/api/v1/quotas/priv",
        Some(&root),
        r#"{"traffic":5000}"#,
    )
    .await;
    let read = h
        .call(
            "GET",
            "/api/v1/quotas/priv",
            Some(&basic("owner", PASSWORD)),
            "",
        )
        .await;
    assert_eq!(read.status, 200, "{}", read.text());
    assert_eq!(read.json()["traffic"]["limit"], 5000);
    let listed = h
        .call(
            "GET",
            "/api/v1/quotas",
            Some(&basic("stranger", PASSWORD)),
            "",
        )
        .await
        .json();
    let names: Vec<&str> = listed["quotas"]
        .as_array()
        .unwrap()
        .iter()
        .map(|q| q["namespace"].as_str().unwrap())
        .collect();
    assert!(
        names.contains(&"pub") && !names.contains(&"priv"),
        "{names:?}"
    );
    let recount = h
        .call("POST", "/api/v1/quota-recompute", Some(&root), "")
        .await;
    assert_eq!(recount.status, 200, "{}", recount.text());
    assert_eq!(recount.json()["drifted"], 0);
}

/// A connector whose remote is never reachable: runs fail at once, which
/// is all the API needs to show a run's outcome.
struct Unreachable;

impl berth_registry::RemoteConnector for Unreachable {
    fn connect(
        &self,
        _rule: &berth_registry::ReplicationRule,
    ) -> Result<std::sync::Arc<dyn berth_registry::RemoteRegistry>, String> {
        Err("the remote is unreachable".into())
    }
}

#[tokio::test]
async fn replication_rules_are_administered_and_keep_their_credentials() {
    use berth_auth::key_encryption::{unseal, KeyEncryptionKey, SEALED_PREFIX};
    let mut h = Harness::new().await;
    let key = KeyEncryptionKey::parse(&"cd".repeat(32)).unwrap();
    let replicator = berth_registry::Replicator::new(
        h.state.registry.clone(),
        std::sync::Arc::new(Unreachable),
        berth_registry::ReplicationOptions::default(),
    );
    h.state = h
        .state
        .clone()
        .with_outbound(berth_server::OutboundSettings {
            key_encryption: Some(key.clone()),
            allow_private: false,
        })
        .with_replicator(replicator);
    let root = basic("root", PASSWORD);
    let owner = basic("owner", PASSWORD);
    let body = r#"{"name":"to-dr","direction":"push","url":"https://dr.example/","credentials":"robot:s3cret-pass","repositories":"priv/**","tags":"v*","on_push":true,"interval_secs":3600}"#;

    h.call("POST", "/api/v1/replications", Some(&owner), body)
        .await
        .assert_error("forbidden", "an owner creates a replication rule");
    let created = h
        .call("POST", "/api/v1/replications", Some(&root), body)
        .await;
    assert_eq!(created.status, 201, "{}", created.text());
    assert!(!created.text().contains("s3cret"), "{}", created.text());
    let rule = created.json();
    assert_eq!(rule["name"], "to-dr");
    assert_eq!(rule["url"], "https://dr.example");
    assert_eq!(rule["authenticated"], true);
    assert_eq!(rule["repositories"], "priv/**");
    assert_eq!(rule["on_push"], true);
    let stored = h.state.registry.replication_rule("to-dr").await.unwrap();
    let sealed = stored.credentials.unwrap();
    assert!(sealed.starts_with(SEALED_PREFIX), "{sealed}");
    assert_eq!(
        unseal(
            Some(&key),
            &berth_server::api::replications::credentials_binding("to-dr"),
            &sealed
        )
        .unwrap(),
        "robot:s3cret-pass"
    );
    h.call("POST", "/api/v1/replications", Some(&root), body)
        .await
        .assert_error("conflict", "a second rule of the same name");

    for (request, field) in [
        (
            body.replace("https://dr.example/", "ftp://dr.example"),
            "url",
        ),
        (body.replace("priv/**", "priv/a**"), "repositories"),
        (body.replace("\"v*\"", "\"v/1\""), "tags"),
        (body.replace("\"push\"", "\"sideways\""), "direction"),
        (body.replace("3600", "1"), "interval_secs"),
    ] {
        let refused = h
            .call("POST", "/api/v1/replications", Some(&root), &request)
            .await;
        refused.assert_error("invalid_request", &request);
        assert!(
            refused.text().contains(field),
            "{request}: {}",
            refused.text()
        );
    }

    let listed = h.call("GET", "/api/v1/replications", Some(&root), "").await;
    assert_eq!(listed.status, 200, "{}", listed.text());
    assert!(!listed.text().contains("s3cret"));
    assert_eq!(listed.json()["replications"][0]["name"], "to-dr");

    // Run now: 202 with the run, which fails (the remote is unreachable)
    // and says why.
    let started = h
        .call("POST", "/api/v1/replications/to-dr/run", Some(&root), "")
        .await;
    assert_eq!(started.status, 202, "{}", started.text());
    let run_id = started.json()["id"].as_i64().unwrap();
    let mut finished = serde_json::Value::Null;
    for _ in 0..200 {
        let details = h
            .call("GET", "/api/v1/replications/to-dr", Some(&root), "")
            .await
            .json();
        let run = details["runs"][0].clone();
        assert_eq!(run["id"], run_id);
        if run["status"] != "running" {
            finished = run;
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(10)).await;
    }
    assert_eq!(finished["status"], "failed", "{finished}");
    assert_eq!(finished["trigger"], "manual");
    assert!(finished["error"].as_str().unwrap().contains("unreachable"));

    let deleted = h
        .call("DELETE", "/api/v1/replications/to-dr", Some(&root), "")
        .await;
    assert_eq!(deleted.status, 204, "{}", deleted.text());
    h.call("GET", "/api/v1/replications/to-dr", Some(&root), "")
        .await
        .assert_error("not_found", "a deleted rule");
}

/// Every page of `GET /api/v1/namespaces?limit=LIMIT` as `auth` sees it,
/// following `next_cursor` (at most 50 pages): the names in order.
async fn namespace_pages(h: &Harness, auth: &str, limit: usize) -> Vec<String> {
    let mut listed = Vec::new();
    let mut cursor: Option<String> = None;
    for _ in 0..50 {
        let mut uri = format!("/api/v1/namespaces?limit={limit}");
        if let Some(cursor) = &cursor {
            uri.push_str(&format!("&cursor={cursor}"));
        }
        let answer = h.call("GET", &uri, Some(auth), "").await;
        assert_eq!(answer.status, 200, "{uri}: {}", answer.text());
        let page = answer.json();
        let names = names(&page, "namespaces", "name");
        assert!(names.len() <= limit, "{uri}: {names:?}");
        listed.extend(names);
        match page["next_cursor"].as_str() {
            Some(next) => cursor = Some(next.to_string()),
            None => return listed,
        }
    }
    panic!("more than 50 pages of namespaces");
}

/// Issue 12: the namespace listing is paged, and every page size shows the
/// same namespaces as one page (administrators all, members theirs and the
/// public ones, robots what their scopes reach); a page size out of range
/// or another listing's cursor is a 400.
#[tokio::test]
async fn namespace_listings_are_paged_for_every_caller() {
    let h = Harness::new().await;
    let everyone = [
        "bystander",
        "maintainer",
        "owner",
        "priv",
        "pub",
        "reader",
        "root",
        "stranger",
        "writer",
    ];
    let callers: [(&str, String, &[&str]); 4] = [
        ("root", basic("root", PASSWORD), &everyone),
        (
            "reader",
            basic("reader", PASSWORD),
            &["priv", "pub", "reader"],
        ),
        (
            "stranger",
            basic("stranger", PASSWORD),
            &["pub", "stranger"],
        ),
        ("robot", basic("robot", &h.robot), &["priv", "pub"]),
    ];
    for (who, auth, expected) in &callers {
        for limit in [1, 2, 3, 1000] {
            assert_eq!(
                namespace_pages(&h, auth, limit).await,
                *expected,
                "{who}, limit {limit}"
            );
        }
    }
    // A full last page says so by a next page that is empty.
    let root = basic("root", PASSWORD);
    let first = h
        .call("GET", "/api/v1/namespaces?limit=9", Some(&root), "")
        .await
        .json();
    let cursor = first["next_cursor"]
        .as_str()
        .expect("a full page continues");
    let rest = h
        .call(
            "GET",
            &format!("/api/v1/namespaces?limit=9&cursor={cursor}"),
            Some(&root),
            "",
        )
        .await
        .json();
    assert_eq!(names(&rest, "namespaces", "name"), Vec::<String>::new());
    assert!(rest.get("next_cursor").is_none(), "{rest}");
    // Without a limit, the default page holds them all and no cursor.
    let all = h
        .call("GET", "/api/v1/namespaces", Some(&root), "")
        .await
        .json();
    assert_eq!(names(&all, "namespaces", "name"), everyone);
    assert!(all.get("next_cursor").is_none(), "{all}");

    let repositories = h
        .call("GET", "/api/v1/repositories?limit=1", Some(&root), "")
        .await
        .json();
    let repository_cursor = repositories["next_cursor"]
        .as_str()
        .map(str::to_string)
        .unwrap_or_else(|| {
            // The cursor the repository listing writes, should it hold
            // one repository: another listing's all the same.
            use base64::Engine;
            base64::engine::general_purpose::URL_SAFE_NO_PAD
                .encode(r#"{"ns":null,"q":null,"s":"name","k":0,"n":"pub/app"}"#)
        });
    let bad = [
        ("limit=0", "limit"),
        ("limit=1001", "limit"),
        ("limit=ten", "query"),
        ("cursor=not-base64!", "cursor"),
        ("cursor=e30", "cursor"),
        (&*format!("cursor={repository_cursor}"), "cursor"),
        ("sort=name", "sort"),
    ];
    for (query, names_what) in bad {
        let answer = h
            .call(
                "GET",
                &format!("/api/v1/namespaces?{query}"),
                Some(&root),
                "",
            )
            .await;
        assert_eq!(answer.status, 400, "{query}: {}", answer.text());
        assert_eq!(answer.json()["code"], "invalid_request", "{query}");
        assert!(
            answer.json()["message"]
                .as_str()
                .unwrap()
                .contains(names_what),
            "{query}: {}",
            answer.text()
        );
    }
}

/// An administrator's repository listing reads the rows alone (no
/// namespace facts): it must still show exactly what the policy and the
/// caller's token allow, as the filtered listing of everyone else does.
#[tokio::test]
async fn repository_listings_show_administrators_everything_their_token_allows() {
    let h = Harness::new().await;
    for repository in ["pub/app", "priv/app", "stranger/app", "root/app"] {
        h.push_image(repository, "v1", repository).await;
    }
    let listed = |auth: String, query: &'static str| {
        let h = &h;
        async move {
            let answer = h
                .call(
                    "GET",
                    &format!("/api/v1/repositories?{query}"),
                    Some(&auth),
                    "",
                )
                .await;
            assert_eq!(answer.status, 200, "{query}: {}", answer.text());
            names(&answer.json(), "repositories", "name")
        }
    };
    let root = || basic("root", PASSWORD);
    let everything = ["priv/app", "pub/app", "root/app", "stranger/app"];
    assert_eq!(listed(root(), "").await, everything);
    assert_eq!(listed(root(), "sort=size&limit=1000").await.len(), 4);
    assert_eq!(listed(root(), "namespace=priv").await, ["priv/app"]);
    let catalog = h.token("root", &["registry:catalog:*"]).await;
    assert_eq!(listed(bearer(&catalog), "").await, everything);
    // A token without the catalog scope shows what it grants, even to an
    // administrator.
    let one = h.token("root", &["namespace:pub:pull"]).await;
    assert_eq!(listed(bearer(&one), "").await, ["pub/app"]);
    assert_eq!(
        listed(basic("reader", PASSWORD), "").await,
        ["priv/app", "pub/app"]
    );
    assert_eq!(
        listed(basic("stranger", PASSWORD), "").await,
        ["pub/app", "stranger/app"]
    );
}
