//! The management API's authorization matrix: every endpoint, called by
//! every kind of caller, on a public and a private namespace, through
//! `app(state).oneshot(...)`. One row per endpoint: adding an endpoint is
//! adding its row (a test fails while an operation of the OpenAPI document
//! has none).
//!
//! Besides the status, every cell checks that a refusal is the JSON error
//! shape with the code its status stands for, that a 401 carries a
//! challenge, and that the status is one the OpenAPI document lists for the
//! operation. Two more callers follow the challenge: the owner's and the
//! administrator's registry tokens without any scope are answered 401
//! naming the scope needed, a token for exactly that scope is fetched from
//! `/auth/token`, and the retry must be answered as the same person's
//! password is.

mod support;

use std::collections::{BTreeSet, HashMap};

use berth_auth::{Role, TokenScope};
use support::{access_claim, basic, bearer, Answer, Harness, PASSWORD};

/// Who calls. The registry tokens are the owner's: the policy would let
/// their holder do everything the owner may, so whatever they are refused,
/// their `access` claim refused.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Caller {
    Anonymous,
    Reader,
    Writer,
    Maintainer,
    Owner,
    Admin,
    /// A user who is a member of neither namespace.
    Stranger,
    /// An access token with pull, push and delete on both namespaces.
    Robot,
    /// The owner's registry token for `repository:elsewhere/app:pull`.
    TokenElsewhere,
    /// The owner's registry token with `access: []`.
    TokenEmpty,
}

const CALLERS: [Caller; 10] = [
    Caller::Anonymous,
    Caller::Reader,
    Caller::Writer,
    Caller::Maintainer,
    Caller::Owner,
    Caller::Admin,
    Caller::Stranger,
    Caller::Robot,
    Caller::TokenElsewhere,
    Caller::TokenEmpty,
];

/// State a row needs before each call, so that every cell sees the same.
#[derive(Clone, Copy)]
enum Setup {
    None,
    /// `bystander` is not a member of the namespace.
    NoBystander,
    /// `bystander` is a reader of the namespace.
    Bystander,
    /// The owner has an access token `victim-{cell}` for the namespace.
    TokenToRevoke,
    /// `{ns}/app` holds an image of its own tagged `c{cell}`.
    Image,
    /// A namespace `{ns}-{cell}` with the members and visibility of `{ns}`
    /// and a repository in it.
    NamespaceToDelete,
    /// A user `doomed-{ns}-{cell}`.
    UserToDelete,
    /// The namespace has a retention policy (keeping every image).
    RetentionPolicy,
}

struct Row {
    /// The operation (`operationId` in the OpenAPI document).
    operation: &'static str,
    method: &'static str,
    /// `{ns}` is the namespace of the column, `{cell}` a number unique to
    /// the cell (for names that must not collide).
    path: &'static str,
    body: &'static str,
    setup: Setup,
    /// Expected statuses, one per caller of [`CALLERS`], on `pub` and on `priv`.
    public: [u16; 10],
    private: [u16; 10],
}

/// Shorthands for the rows below.
const ADMIN_ONLY: [u16; 10] = [401, 403, 403, 403, 403, 200, 403, 403, 403, 403];
const OWNERS: [u16; 10] = [401, 403, 403, 403, 200, 200, 403, 403, 401, 401];
/// Pulling from a repository: every member, and on a public namespace
/// every user; registry tokens need the repository's `pull`.
const READERS_PUBLIC: [u16; 10] = [401, 200, 200, 200, 200, 200, 200, 200, 401, 401];
const READERS_PRIVATE: [u16; 10] = [401, 200, 200, 200, 200, 200, 403, 200, 401, 401];
/// Pushing: writers and up, the robot (it holds `*`).
const WRITERS: [u16; 10] = [401, 403, 200, 200, 200, 200, 403, 200, 401, 401];
/// Deleting: maintainers and up, the robot.
const MAINTAINERS: [u16; 10] = [401, 403, 403, 200, 200, 200, 403, 200, 401, 401];

/// Seeing a namespace (pull in it), on a public and on a private one.
const SEE_PUBLIC: [u16; 10] = [401, 200, 200, 200, 200, 200, 200, 200, 401, 401];
const SEE_PRIVATE: [u16; 10] = [401, 200, 200, 200, 200, 200, 403, 200, 401, 401];
/// Anyone logged in.
const LOGGED_IN: [u16; 10] = [401, 200, 200, 200, 200, 200, 200, 200, 200, 200];

fn with(statuses: [u16; 10], success: u16) -> [u16; 10] {
    statuses.map(|status| if status == 200 { success } else { status })
}

#[rustfmt::skip]
fn rows() -> Vec<Row> {
    //      callers: anon reader writer maint owner admin stranger robot elsewhere empty
    vec![
        Row { operation: "openapi", method: "GET", path: "/api/v1/openapi.json", body: "", setup: Setup::None,
              public: [200; 10], private: [200; 10] },
        Row { operation: "list_users", method: "GET", path: "/api/v1/users", body: "", setup: Setup::None,
              public: ADMIN_ONLY, private: ADMIN_ONLY },
        Row { operation: "create_user", method: "POST", path: "/api/v1/users",
              body: r#"{"name":"user-{cell}","password":"long enough password"}"#, setup: Setup::None,
              public: with(ADMIN_ONLY, 201), private: with(ADMIN_ONLY, 201) },
        Row { operation: "update_user", method: "PATCH", path: "/api/v1/users/bystander",
              body: r#"{"admin":false,"disabled":false}"#, setup: Setup::None,
              public: ADMIN_ONLY, private: ADMIN_ONLY },
        Row { operation: "delete_user", method: "DELETE", path: "/api/v1/users/doomed-{ns}-{cell}",
              body: "", setup: Setup::UserToDelete,
              public: with(ADMIN_ONLY, 204), private: with(ADMIN_ONLY, 204) },
        // The same password again: the callers below keep theirs.
        Row { operation: "set_user_password", method: "PUT", path: "/api/v1/users/bystander/password",
              body: r#"{"password":"router-password"}"#, setup: Setup::None,
              public: with(ADMIN_ONLY, 204), private: with(ADMIN_ONLY, 204) },
        // Every person changes their own password; robots have none.
        Row { operation: "change_own_password", method: "PUT", path: "/api/v1/user/password",
              body: r#"{"current_password":"router-password","new_password":"router-password"}"#,
              setup: Setup::None,
              public: [401, 204, 204, 204, 204, 204, 204, 403, 401, 401],
              private: [401, 204, 204, 204, 204, 204, 204, 403, 401, 401] },
        Row { operation: "list_namespaces", method: "GET", path: "/api/v1/namespaces", body: "", setup: Setup::None,
              public: [401, 200, 200, 200, 200, 200, 200, 200, 200, 200],
              private: [401, 200, 200, 200, 200, 200, 200, 200, 200, 200] },
        Row { operation: "create_namespace", method: "POST", path: "/api/v1/namespaces",
              body: r#"{"name":"ns-{cell}","visibility":"{visibility}"}"#, setup: Setup::None,
              public: with(ADMIN_ONLY, 201), private: with(ADMIN_ONLY, 201) },
        Row { operation: "get_namespace", method: "GET", path: "/api/v1/namespaces/{ns}", body: "", setup: Setup::None,
              public: [401, 200, 200, 200, 200, 200, 200, 200, 401, 401],
              private: [401, 200, 200, 200, 200, 200, 403, 200, 401, 401] },
        Row { operation: "update_namespace", method: "PATCH", path: "/api/v1/namespaces/{ns}",
              body: r#"{"visibility":"{visibility}"}"#, setup: Setup::None,
              public: OWNERS, private: OWNERS },
        Row { operation: "list_members", method: "GET", path: "/api/v1/namespaces/{ns}/members", body: "", setup: Setup::None,
              public: OWNERS, private: OWNERS },
        Row { operation: "set_member", method: "PUT", path: "/api/v1/namespaces/{ns}/members/bystander",
              body: r#"{"role":"reader"}"#, setup: Setup::NoBystander,
              public: OWNERS, private: OWNERS },
        Row { operation: "remove_member", method: "DELETE", path: "/api/v1/namespaces/{ns}/members/bystander",
              body: "", setup: Setup::Bystander,
              public: with(OWNERS, 204), private: with(OWNERS, 204) },
        Row { operation: "list_tokens", method: "GET", path: "/api/v1/tokens", body: "", setup: Setup::None,
              public: [401, 200, 200, 200, 200, 200, 200, 403, 401, 401],
              private: [401, 200, 200, 200, 200, 200, 200, 403, 401, 401] },
        Row { operation: "create_token", method: "POST", path: "/api/v1/tokens",
              body: r#"{"name":"token-{cell}","scopes":["{ns}:pull"]}"#, setup: Setup::None,
              public: with(OWNERS, 201), private: with(OWNERS, 201) },
        Row { operation: "revoke_token", method: "DELETE", path: "/api/v1/tokens/victim-{cell}", body: "",
              setup: Setup::TokenToRevoke,
              public: with(OWNERS, 204), private: with(OWNERS, 204) },
        Row { operation: "list_namespace_tokens", method: "GET", path: "/api/v1/namespaces/{ns}/tokens", body: "", setup: Setup::None,
              public: OWNERS, private: OWNERS },
        Row { operation: "list_images", method: "GET", path: "/api/v1/repositories/{ns}%2Fapp/images?tagged=any",
              body: "", setup: Setup::None, public: READERS_PUBLIC, private: READERS_PRIVATE },
        Row { operation: "list_tags", method: "GET", path: "/api/v1/repositories/{ns}%2Fapp/tags?q=lat&sort=size",
              body: "", setup: Setup::None, public: READERS_PUBLIC, private: READERS_PRIVATE },
        Row { operation: "get_image", method: "GET", path: "/api/v1/repositories/{ns}%2Fapp/images/latest",
              body: "", setup: Setup::None, public: READERS_PUBLIC, private: READERS_PRIVATE },
        Row { operation: "delete_image", method: "DELETE", path: "/api/v1/repositories/{ns}%2Fapp/images/c{cell}",
              body: "", setup: Setup::Image, public: MAINTAINERS, private: MAINTAINERS },
        Row { operation: "tag_image", method: "PUT", path: "/api/v1/repositories/{ns}%2Fcopy/tags/c{cell}",
              body: r#"{"source_repository":"{ns}/app","source_reference":"latest"}"#,
              setup: Setup::None, public: WRITERS, private: WRITERS },
        Row { operation: "list_repositories", method: "GET", path: "/api/v1/repositories?namespace={ns}&sort=size",
              body: "", setup: Setup::None,
              public: [401, 200, 200, 200, 200, 200, 200, 200, 401, 401],
              private: [401, 200, 200, 200, 200, 200, 403, 200, 401, 401] },
        Row { operation: "delete_namespace", method: "DELETE", path: "/api/v1/namespaces/{ns}-{cell}?force=true",
              body: "", setup: Setup::NamespaceToDelete, public: OWNERS, private: OWNERS },
        Row { operation: "untag_image", method: "DELETE", path: "/api/v1/repositories/{ns}%2Fapp/tags/c{cell}",
              body: "", setup: Setup::Image, public: with(MAINTAINERS, 204), private: with(MAINTAINERS, 204) },
        // The image does not exist: whoever may see the namespace learns so.
        Row { operation: "get_vulnerability_report", method: "GET", path: "/api/v1/images/{ns}%2Fapp:v1/vulnerabilities",
              body: "", setup: Setup::None,
              public: with(SEE_PUBLIC, 404), private: with(SEE_PRIVATE, 404) },
        Row { operation: "get_sbom", method: "GET", path: "/api/v1/images/{ns}%2Fapp@sha256:0000000000000000000000000000000000000000000000000000000000000000/sbom/spdx",
              body: "", setup: Setup::None,
              public: with(SEE_PUBLIC, 404), private: with(SEE_PRIVATE, 404) },
        Row { operation: "get_vulnerability_policy", method: "GET", path: "/api/v1/namespaces/{ns}/vulnerability-policy",
              body: "", setup: Setup::None,
              public: SEE_PUBLIC, private: SEE_PRIVATE },
        Row { operation: "set_vulnerability_policy", method: "PUT", path: "/api/v1/namespaces/{ns}/vulnerability-policy",
              body: r#"{"mode":"warn","severity":"high"}"#, setup: Setup::None,
              public: OWNERS, private: OWNERS },
        Row { operation: "list_vulnerability_policies", method: "GET", path: "/api/v1/vulnerability-policies", body: "", setup: Setup::None,
              public: LOGGED_IN, private: LOGGED_IN },
        Row { operation: "get_vulnerability_summary", method: "GET", path: "/api/v1/vulnerabilities/summary?namespace={ns}",
              body: "", setup: Setup::None,
              public: SEE_PUBLIC, private: SEE_PRIVATE },
        Row { operation: "list_exemptions", method: "GET", path: "/api/v1/exemptions", body: "", setup: Setup::None,
              public: LOGGED_IN, private: LOGGED_IN },
        Row { operation: "list_exemptions", method: "GET", path: "/api/v1/exemptions?namespace={ns}", body: "", setup: Setup::None,
              public: SEE_PUBLIC, private: SEE_PRIVATE },
        Row { operation: "add_exemption", method: "POST", path: "/api/v1/exemptions",
              body: r#"{"scope":"{ns}/app:v1","issue":"CVE-2099-{cell}","reason":"not reachable","expires":"30d"}"#, setup: Setup::None,
              public: with(OWNERS, 201), private: with(OWNERS, 201) },
        // Nothing to remove: whoever may change the namespace's settings learns so.
        Row { operation: "remove_exemption", method: "DELETE", path: "/api/v1/exemptions/{ns}%2Fapp/CVE-2099-{cell}",
              body: "", setup: Setup::None,
              public: with(OWNERS, 404), private: with(OWNERS, 404) },
        Row { operation: "get_advisory_data", method: "GET", path: "/api/v1/advisories", body: "", setup: Setup::None,
              public: LOGGED_IN, private: LOGGED_IN },
        Row { operation: "import_advisories", method: "POST", path: "/api/v1/advisories",
              body: r#"{"records":[]}"#, setup: Setup::None,
              public: ADMIN_ONLY, private: ADMIN_ONLY },
        // No sources configured in the harness: an empty list, an empty pass.
        Row { operation: "list_advisory_sources", method: "GET", path: "/api/v1/advisories/sources", body: "", setup: Setup::None,
              public: ADMIN_ONLY, private: ADMIN_ONLY },
        Row { operation: "sync_advisory_sources", method: "POST", path: "/api/v1/advisories/sources/sync", body: "", setup: Setup::None,
              public: ADMIN_ONLY, private: ADMIN_ONLY },
        Row { operation: "list_immutable_rules", method: "GET", path: "/api/v1/immutable-rules", body: "", setup: Setup::None,
              public: LOGGED_IN, private: LOGGED_IN },
        Row { operation: "add_immutable_rule", method: "POST", path: "/api/v1/immutable-rules",
              body: r#"{"scope":"{ns}/app","tags":"v{cell}.*"}"#, setup: Setup::None,
              public: with(OWNERS, 201), private: with(OWNERS, 201) },
        // Nothing to remove: whoever may change the namespace's settings learns so.
        Row { operation: "remove_immutable_rule", method: "DELETE", path: "/api/v1/immutable-rules/{ns}%2Fapp/none-{cell}",
              body: "", setup: Setup::None,
              public: with(OWNERS, 404), private: with(OWNERS, 404) },
        // Webhooks are settings of their namespace.
        Row { operation: "list_webhooks", method: "GET", path: "/api/v1/webhooks", body: "", setup: Setup::None,
              public: LOGGED_IN, private: LOGGED_IN },
        Row { operation: "create_webhook", method: "POST", path: "/api/v1/webhooks",
              body: r#"{"scope":"{ns}","url":"https://hooks.example/{cell}","events":["push"],"secret":"s{cell}"}"#,
              setup: Setup::None,
              public: with(OWNERS, 201), private: with(OWNERS, 201) },
        // Nothing to delete or inspect: whoever may manage the namespace's settings learns so.
        Row { operation: "delete_webhook", method: "DELETE", path: "/api/v1/webhooks/{ns}/999999",
              body: "", setup: Setup::None,
              public: with(OWNERS, 404), private: with(OWNERS, 404) },
        Row { operation: "list_webhook_deliveries", method: "GET", path: "/api/v1/webhooks/{ns}/999999/deliveries",
              body: "", setup: Setup::None,
              public: with(OWNERS, 404), private: with(OWNERS, 404) },
        Row { operation: "list_audit", method: "GET", path: "/api/v1/audit", body: "", setup: Setup::None,
              public: ADMIN_ONLY, private: ADMIN_ONLY },
        Row { operation: "list_trash", method: "GET", path: "/api/v1/trash?namespace={ns}&limit=10", body: "", setup: Setup::None,
              public: SEE_PUBLIC, private: SEE_PRIVATE },
        // Nothing to restore: whoever may delete in the repository learns so.
        Row { operation: "restore_image", method: "POST",
              path: "/api/v1/repositories/{ns}%2Fapp/images/sha256:{cell:064}/restore",
              body: "", setup: Setup::None,
              public: with(MAINTAINERS, 404), private: with(MAINTAINERS, 404) },
        Row { operation: "list_retention_policies", method: "GET", path: "/api/v1/retention-policies", body: "",
              setup: Setup::None, public: LOGGED_IN, private: LOGGED_IN },
        Row { operation: "set_retention_policy", method: "PUT", path: "/api/v1/namespaces/{ns}/retention-policy",
              body: r#"{"keep":1000,"untagged":"keep","min_age":86400,"keep_tags":"^v{cell}"}"#, setup: Setup::None,
              public: OWNERS, private: OWNERS },
        Row { operation: "remove_retention_policy", method: "DELETE", path: "/api/v1/namespaces/{ns}/retention-policy",
              body: "", setup: Setup::RetentionPolicy,
              public: with(OWNERS, 204), private: with(OWNERS, 204) },
        Row { operation: "run_retention_policy", method: "POST", path: "/api/v1/namespaces/{ns}/retention-policy/run",
              body: r#"{"dry_run":true}"#, setup: Setup::RetentionPolicy,
              public: OWNERS, private: OWNERS },
        // Usage is seen with the namespace; limits and recounts are the operator's.
        Row { operation: "list_quotas", method: "GET", path: "/api/v1/quotas", body: "", setup: Setup::None,
              public: LOGGED_IN, private: LOGGED_IN },
        Row { operation: "get_quota", method: "GET", path: "/api/v1/quotas/{ns}", body: "", setup: Setup::None,
              public: SEE_PUBLIC, private: SEE_PRIVATE },
        Row { operation: "get_usage_history", method: "GET", path: "/api/v1/namespaces/{ns}/usage-history?days=7", body: "", setup: Setup::None,
              public: SEE_PUBLIC, private: SEE_PRIVATE },
        Row { operation: "set_quota", method: "PUT", path: "/api/v1/quotas/{ns}",
              body: r#"{"traffic":{cell}000000000}"#, setup: Setup::None,
              public: ADMIN_ONLY, private: ADMIN_ONLY },
        Row { operation: "recompute_quotas", method: "POST", path: "/api/v1/quota-recompute", body: "", setup: Setup::None,
              public: ADMIN_ONLY, private: ADMIN_ONLY },
        // Replication rules reach across namespaces and call out: the operator's.
        Row { operation: "list_replications", method: "GET", path: "/api/v1/replications", body: "", setup: Setup::None,
              public: ADMIN_ONLY, private: ADMIN_ONLY },
        Row { operation: "create_replication", method: "POST", path: "/api/v1/replications",
              body: r#"{"name":"r-{ns}-{cell}","direction":"push","url":"https://r.example","repositories":"{ns}/**","credentials":"u:p{cell}"}"#,
              setup: Setup::None, public: with(ADMIN_ONLY, 201), private: with(ADMIN_ONLY, 201) },
        // Nothing to show, run or delete: the administrator learns so.
        Row { operation: "get_replication", method: "GET", path: "/api/v1/replications/none-{cell}", body: "",
              setup: Setup::None, public: with(ADMIN_ONLY, 404), private: with(ADMIN_ONLY, 404) },
        Row { operation: "run_replication", method: "POST", path: "/api/v1/replications/none-{cell}/run", body: "",
              setup: Setup::None, public: with(ADMIN_ONLY, 404), private: with(ADMIN_ONLY, 404) },
        Row { operation: "delete_replication", method: "DELETE", path: "/api/v1/replications/none-{cell}", body: "",
              setup: Setup::None, public: with(ADMIN_ONLY, 404), private: with(ADMIN_ONLY, 404) },
    ]
}

/// The error code each refusal status stands for.
fn code_of(status: u16) -> &'static str {
    match status {
        400 => "invalid_request",
        401 => "unauthorized",
        403 => "forbidden",
        404 => "not_found",
        405 => "method_not_allowed",
        409 => "conflict",
        413 => "payload_too_large",
        415 => "unsupported_media_type",
        429 => "too_many_requests",
        503 => "unavailable",
        _ => "internal",
    }
}

struct Matrix {
    h: Harness,
    /// Authorization header values per caller.
    credentials: HashMap<&'static str, String>,
    /// Documented statuses per operation, from the OpenAPI document.
    documented: HashMap<String, BTreeSet<u16>>,
}

impl Matrix {
    async fn new() -> Matrix {
        let h = Harness::new().await;
        let mut credentials = HashMap::new();
        for (caller, user) in [
            ("reader", "reader"),
            ("writer", "writer"),
            ("maintainer", "maintainer"),
            ("owner", "owner"),
            ("admin", "root"),
            ("stranger", "stranger"),
        ] {
            credentials.insert(caller, basic(user, PASSWORD));
        }
        credentials.insert("robot", basic("robot", &h.robot));
        let elsewhere = h.token("owner", &["repository:elsewhere/app:pull"]).await;
        let empty = h.token("owner", &[]).await;
        assert_eq!(access_claim(&empty), serde_json::json!([]));
        credentials.insert("elsewhere", bearer(&elsewhere));
        credentials.insert("empty", bearer(&empty));
        credentials.insert("admin-empty", bearer(&h.token("root", &[]).await));
        for namespace in ["pub", "priv"] {
            h.push_image(&format!("{namespace}/app"), "latest", namespace)
                .await;
        }

        let document = h.call("GET", "/api/v1/openapi.json", None, "").await.json();
        let mut documented = HashMap::new();
        for (_, item) in document["paths"].as_object().unwrap() {
            for (_, operation) in item.as_object().unwrap() {
                let statuses = operation["responses"]
                    .as_object()
                    .unwrap()
                    .keys()
                    .map(|status| status.parse().unwrap())
                    .collect();
                documented.insert(
                    operation["operationId"].as_str().unwrap().to_string(),
                    statuses,
                );
            }
        }
        Matrix {
            h,
            credentials,
            documented,
        }
    }

    fn authorization(&self, caller: Caller) -> Option<&str> {
        let key = match caller {
            Caller::Anonymous => return None,
            Caller::Reader => "reader",
            Caller::Writer => "writer",
            Caller::Maintainer => "maintainer",
            Caller::Owner => "owner",
            Caller::Admin => "admin",
            Caller::Stranger => "stranger",
            Caller::Robot => "robot",
            Caller::TokenElsewhere => "elsewhere",
            Caller::TokenEmpty => "empty",
        };
        Some(&self.credentials[key])
    }

    async fn setup(&self, setup: Setup, namespace: &str, cell: usize) {
        let store = self.h.store();
        let change = berth_auth::change_at(
            &berth_auth::Actor::system("test"),
            time::OffsetDateTime::now_utc(),
        );
        match setup {
            Setup::None => {}
            Setup::NoBystander => {
                let _ = store.remove_member(&change, namespace, "bystander").await;
            }
            Setup::Bystander => {
                store
                    .set_member(&change, namespace, "bystander", Role::Reader)
                    .await
                    .unwrap();
            }
            Setup::TokenToRevoke => {
                berth_auth::admin::create_access_token(
                    store.as_ref(),
                    &format!("victim-{cell}"),
                    vec![TokenScope::parse(&format!("{namespace}:pull")).unwrap()],
                    berth_auth::Expiry::Never,
                    Some("owner"),
                    None,
                    &change,
                )
                .await
                .unwrap();
            }
            Setup::NamespaceToDelete => {
                let name = format!("{namespace}-{cell}");
                let visibility = if namespace == "pub" {
                    berth_auth::Visibility::Public
                } else {
                    berth_auth::Visibility::Private
                };
                berth_auth::admin::create_namespace(
                    store.as_ref(),
                    &name,
                    visibility,
                    None,
                    &change,
                )
                .await
                .unwrap();
                for (user, role) in support::MEMBERS {
                    store.set_member(&change, &name, user, role).await.unwrap();
                }
                self.h
                    .push_image(&format!("{name}/app"), "latest", &name)
                    .await;
            }
            Setup::RetentionPolicy => {
                self.h
                    .state
                    .registry
                    .set_retention_policy(
                        &berth_meta::Actor::system("test"),
                        &berth_registry::RetentionPolicy {
                            namespace: namespace.to_string(),
                            keep: 1000,
                            untagged: berth_registry::UntaggedImages::Keep,
                            min_age: 0,
                            keep_tags: None,
                            author: "test".to_string(),
                            updated_at: 0,
                        },
                    )
                    .await
                    .unwrap();
            }
            Setup::UserToDelete => {
                berth_auth::admin::create_user(
                    store.as_ref(),
                    &format!("doomed-{namespace}-{cell}"),
                    &berth_auth::Secret::new(support::PASSWORD),
                    false,
                    &change,
                )
                .await
                .unwrap();
            }
            Setup::Image => {
                self.h
                    .push_image(
                        &format!("{namespace}/app"),
                        &format!("c{cell}"),
                        &format!("{namespace} {cell}"),
                    )
                    .await;
            }
        }
    }

    async fn call(
        &self,
        row: &Row,
        namespace: &str,
        cell: usize,
        authorization: Option<&str>,
    ) -> Answer {
        let visibility = if namespace == "pub" {
            "public"
        } else {
            "private"
        };
        let fill = |text: &str| {
            text.replace("{ns}", namespace)
                .replace("{cell:064}", &format!("{cell:064}"))
                .replace("{cell}", &cell.to_string())
                .replace("{visibility}", visibility)
        };
        self.h
            .call(row.method, &fill(row.path), authorization, &fill(row.body))
            .await
    }

    /// Checks what every answer must be, beyond its status.
    fn check_shape(&self, row: &Row, answer: &Answer, context: &str) {
        let documented = &self.documented[row.operation];
        assert!(
            documented.contains(&answer.status),
            "{context}: {} is not documented for {} ({documented:?})",
            answer.status,
            row.operation
        );
        if answer.status >= 400 {
            answer.assert_error(code_of(answer.status), context);
        }
        if answer.status == 401 {
            assert!(
                answer
                    .header("www-authenticate")
                    .starts_with("Bearer realm="),
                "{context}: a challenge"
            );
        }
    }

    /// Calls with `empty` (a token of the same person with no access), and
    /// when refused for want of a scope, fetches a token for the scope the
    /// answer names and calls again.
    async fn follow_challenge(
        &self,
        row: &Row,
        namespace: &str,
        cell: usize,
        user: &str,
        empty: &str,
    ) -> Answer {
        let first = self.call(row, namespace, cell, Some(empty)).await;
        if first.status != 401 {
            return first;
        }
        let scope = first.json()["detail"]["scope"]
            .as_str()
            .unwrap_or_else(|| panic!("{}: a 401 names the scope: {}", row.operation, first.text()))
            .to_string();
        assert!(
            first
                .header("www-authenticate")
                .contains("error=\"insufficient_scope\""),
            "{}",
            row.operation
        );
        let scopes: Vec<&str> = scope.split(' ').collect();
        let token = self.h.token(user, &scopes).await;
        let granted: Vec<String> = access_claim(&token)
            .as_array()
            .unwrap()
            .iter()
            .map(|entry| {
                format!(
                    "{}:{}:{}",
                    entry["type"].as_str().unwrap(),
                    entry["name"].as_str().unwrap(),
                    entry["actions"]
                        .as_array()
                        .unwrap()
                        .iter()
                        .map(|a| a.as_str().unwrap())
                        .collect::<Vec<_>>()
                        .join(",")
                )
            })
            .collect();
        assert_eq!(
            granted, scopes,
            "{}: the token endpoint grants it",
            row.operation
        );
        self.call(row, namespace, cell, Some(&bearer(&token))).await
    }
}

/// Runs every row on `namespace`; `first_cell` keeps cell numbers apart
/// from the other namespace's, which runs at the same time.
async fn run_rows(matrix: &Matrix, rows: &[Row], namespace: &str, first_cell: usize) {
    let mut cell = first_cell;
    for row in rows {
        let expected = if namespace == "pub" {
            row.public
        } else {
            row.private
        };
        for (caller, expected) in CALLERS.into_iter().zip(expected) {
            cell += 1;
            let context = format!(
                "{} {} on {namespace} by {caller:?}",
                row.method, row.operation
            );
            matrix.setup(row.setup, namespace, cell).await;
            let answer = matrix
                .call(row, namespace, cell, matrix.authorization(caller))
                .await;
            assert_eq!(answer.status, expected, "{context}: {}", answer.text());
            matrix.check_shape(row, &answer, &context);
        }
        // The same people through registry tokens carrying exactly the
        // scope each challenge names.
        for (caller, user, empty) in [
            (Caller::Owner, "owner", "empty"),
            (Caller::Admin, "root", "admin-empty"),
        ] {
            cell += 1;
            let context = format!(
                "{} {} on {namespace} by {caller:?}'s scoped token",
                row.method, row.operation
            );
            let expected = expected[CALLERS.iter().position(|c| *c == caller).unwrap()];
            matrix.setup(row.setup, namespace, cell).await;
            let answer = matrix
                .follow_challenge(row, namespace, cell, user, &matrix.credentials[empty])
                .await;
            assert_eq!(answer.status, expected, "{context}: {}", answer.text());
            matrix.check_shape(row, &answer, &context);
        }
    }
}

// Two worker threads: logins hash passwords, and the two namespaces' runs
// share nothing but the read-only fixtures.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_endpoint_by_every_caller_on_public_and_private_namespaces() {
    let matrix = std::sync::Arc::new(Matrix::new().await);
    let runs: Vec<_> = [("pub", 0), ("priv", 10_000)]
        .into_iter()
        .map(|(namespace, first_cell)| {
            let matrix = std::sync::Arc::clone(&matrix);
            tokio::spawn(async move { run_rows(&matrix, &rows(), namespace, first_cell).await })
        })
        .collect();
    for run in runs {
        run.await.unwrap();
    }
    let rows = rows();
    let operations: BTreeSet<&str> = rows.iter().map(|row| row.operation).collect();
    let documented: BTreeSet<&str> = matrix.documented.keys().map(String::as_str).collect();
    assert_eq!(
        operations, documented,
        "every documented operation has a row"
    );
}
