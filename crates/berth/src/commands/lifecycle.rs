//! `berth immutable …`, `berth retention …`, `berth trash …` and `berth quota …`: image
//! lifecycle through the
//! management API (`/api/v1`), with the login `berth login` stored.

use reqwest::Method;
use serde_json::{json, Value};

use crate::cli::{
    ClientArgs, ClientImmutableCommand, ClientRetentionCommand, ClientTrashCommand, LimitArg,
    QuotaArgs, QuotaCommand, UntaggedArg,
};
use crate::client::error::ClientError;
use crate::client::output::{human_size, json_line, Output, OutputFormat};
use crate::client::session::{segment, Session};
use crate::client::Profile;
use crate::config::Environment;

fn session(registry: Option<&str>, env: &Environment) -> Result<Session, ClientError> {
    Profile::load(env)?.session(registry)
}

/// The registry-token scope changing the settings of `scope`'s namespace
/// needs (`team-a/api` → `namespace:team-a:manage_settings`).
fn settings_scope(scope: &str) -> Vec<String> {
    let namespace = scope.split('/').next().unwrap_or(scope);
    vec![format!("namespace:{namespace}:manage_settings")]
}

fn text(value: &Value) -> String {
    value.as_str().unwrap_or("-").to_string()
}

pub fn immutable(
    args: ClientArgs,
    command: ClientImmutableCommand,
    env: &Environment,
) -> Result<(), ClientError> {
    let mut session = session(args.registry.as_deref(), env)?;
    let output = Output::new(args.output, args.quiet, args.format.as_deref(), env)?;
    match command {
        ClientImmutableCommand::Add { scope, tags } => {
            let added = session.call(
                Method::POST,
                "/api/v1/immutable-rules",
                Some(&json!({"scope": scope, "tags": tags})),
                &settings_scope(&scope),
                "adding an immutable-tag rule",
            )?;
            output.done(
                &added,
                &format!("Tags matching {tags} in {scope} are immutable now."),
            );
        }
        ClientImmutableCommand::List { namespace } => {
            let list = session.call(
                Method::GET,
                "/api/v1/immutable-rules",
                None,
                &["registry:catalog:*".to_string()],
                "listing immutable-tag rules",
            )?;
            let rules: Vec<Value> = list["rules"]
                .as_array()
                .into_iter()
                .flatten()
                .filter(|rule| {
                    namespace
                        .as_deref()
                        .is_none_or(|namespace| rule["namespace"] == namespace)
                })
                .cloned()
                .collect();
            output.list(
                &rules,
                &["scope", "tags", "author", "added"],
                |rule, _| {
                    let added = rule["created_at"]
                        .as_i64()
                        .and_then(|at| time::OffsetDateTime::from_unix_timestamp(at).ok())
                        .map(|at| at.date().to_string())
                        .unwrap_or_default();
                    vec![
                        text(&rule["scope"]),
                        text(&rule["tags"]),
                        text(&rule["author"]),
                        added,
                    ]
                },
                |rule| rule["tags"].as_str().unwrap_or(""),
            )?;
        }
        ClientImmutableCommand::Rm { scope, tags } => {
            session.call(
                Method::DELETE,
                &format!(
                    "/api/v1/immutable-rules/{}/{}",
                    segment(&scope),
                    segment(&tags)
                ),
                None,
                &settings_scope(&scope),
                "removing an immutable-tag rule",
            )?;
            if output.format == OutputFormat::Table && !output.quiet {
                println!("Removed the rule {scope} --tags {tags}.");
            }
        }
    }
    Ok(())
}

pub fn trash(
    args: ClientArgs,
    command: ClientTrashCommand,
    env: &Environment,
) -> Result<(), ClientError> {
    let mut session = session(args.registry.as_deref(), env)?;
    let output = Output::new(args.output, args.quiet, args.format.as_deref(), env)?;
    match command {
        ClientTrashCommand::List { restrict } => {
            let path = match &restrict {
                Some(namespace) => format!("/api/v1/trash?namespace={}", segment(namespace)),
                None => "/api/v1/trash".to_string(),
            };
            let entries: Vec<Value> = session.all_pages(
                &path,
                "entries",
                &["registry:catalog:*".to_string()],
                "listing the trash",
            )?;
            output.list(
                &entries,
                &["image", "tags", "deleted", "by", "expires"],
                |entry, output| {
                    let at = |field: &str| {
                        entry[field]
                            .as_str()
                            .and_then(|text| {
                                time::OffsetDateTime::parse(
                                    text,
                                    &time::format_description::well_known::Rfc3339,
                                )
                                .ok()
                            })
                            .map(|at| output.ago(at))
                            .unwrap_or_default()
                    };
                    let tags: Vec<&str> = entry["tags"]
                        .as_array()
                        .into_iter()
                        .flatten()
                        .filter_map(Value::as_str)
                        .collect();
                    vec![
                        format!("{}@{}", text(&entry["repository"]), text(&entry["digest"])),
                        if tags.is_empty() {
                            "-".to_string()
                        } else {
                            tags.join(",")
                        },
                        at("deleted_at"),
                        text(&entry["deleted_by"]),
                        entry["expires_at"]
                            .as_str()
                            .map(|at| at.split('T').next().unwrap_or(at).to_string())
                            .unwrap_or_default(),
                    ]
                },
                |entry| entry["digest"].as_str().unwrap_or(""),
            )?;
        }
    }
    Ok(())
}

/// An age in seconds, as a table shows it: days, or hours under a day
/// (`0s` for none).
fn age(seconds: i64) -> String {
    if seconds <= 0 {
        "0s".to_string()
    } else if seconds >= 86_400 {
        format!("{}d", seconds / 86_400)
    } else {
        format!("{}h", seconds.max(0) / 3600)
    }
}

fn tags_text(item: &Value) -> String {
    let tags: Vec<&str> = item["tags"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(Value::as_str)
        .collect();
    if tags.is_empty() {
        "-".to_string()
    } else {
        tags.join(",")
    }
}

pub fn retention(
    args: ClientArgs,
    command: ClientRetentionCommand,
    env: &Environment,
) -> Result<(), ClientError> {
    let mut session = session(args.registry.as_deref(), env)?;
    let output = Output::new(args.output, args.quiet, args.format.as_deref(), env)?;
    match command {
        ClientRetentionCommand::Set {
            namespace,
            keep,
            untagged,
            min_age,
            keep_tags,
        } => {
            let untagged = match untagged {
                UntaggedArg::Keep => "keep",
                UntaggedArg::Delete => "delete",
            };
            let min_age = min_age.map_or(0, |age| std::time::Duration::from(age).as_secs());
            let mut body = json!({"keep": keep, "untagged": untagged, "min_age": min_age});
            if let Some(keep_tags) = &keep_tags {
                body["keep_tags"] = json!(keep_tags);
            }
            let set = session.call(
                Method::PUT,
                &format!(
                    "/api/v1/namespaces/{}/retention-policy",
                    segment(&namespace)
                ),
                Some(&body),
                &settings_scope(&namespace),
                "setting a retention policy",
            )?;
            output.done(
                &set,
                &format!(
                    "{namespace} keeps the newest {keep} tagged images of each repository (untagged: {untagged}{}{}).",
                    if min_age > 0 { format!(", none younger than {}", age(min_age as i64)) } else { String::new() },
                    keep_tags.map(|k| format!(", tags matching {k} always")).unwrap_or_default(),
                ),
            );
        }
        ClientRetentionCommand::List => {
            let list = session.call(
                Method::GET,
                "/api/v1/retention-policies",
                None,
                &["registry:catalog:*".to_string()],
                "listing retention policies",
            )?;
            let policies: Vec<Value> = list["policies"].as_array().cloned().unwrap_or_default();
            output.list(
                &policies,
                &[
                    "namespace",
                    "keep",
                    "untagged",
                    "min age",
                    "keep tags",
                    "author",
                ],
                |policy, _| {
                    vec![
                        text(&policy["namespace"]),
                        policy["keep"].to_string(),
                        text(&policy["untagged"]),
                        age(policy["min_age"].as_i64().unwrap_or(0)),
                        text(&policy["keep_tags"]),
                        text(&policy["author"]),
                    ]
                },
                |policy| policy["namespace"].as_str().unwrap_or(""),
            )?;
        }
        ClientRetentionCommand::Run { namespace, dry_run } => {
            let report = session.call(
                Method::POST,
                &format!(
                    "/api/v1/namespaces/{}/retention-policy/run",
                    segment(&namespace)
                ),
                Some(&json!({"dry_run": dry_run})),
                &settings_scope(&namespace),
                "running a retention policy",
            )?;
            if output.format == OutputFormat::Json && output.template.is_none() {
                print!("{}", json_line(&report));
                return Ok(());
            }
            let removed: Vec<Value> = report["removed"]
                .as_array()
                .into_iter()
                .flatten()
                .map(|item| {
                    let mut item = item.clone();
                    item["image"] = json!(format!(
                        "{}@{}",
                        text(&item["repository"]),
                        text(&item["digest"])
                    ));
                    item
                })
                .collect();
            output.list(
                &removed,
                &["image", "tags", "age", "why"],
                |item, _| {
                    vec![
                        text(&item["image"]),
                        tags_text(item),
                        age(item["age"].as_i64().unwrap_or(0)),
                        text(&item["reason"]),
                    ]
                },
                |item| item["image"].as_str().unwrap_or(""),
            )?;
            if !output.quiet {
                // The summary and what stays anyway go to stderr, so that
                // stdout is exactly the list of what goes.
                for item in report["skipped"].as_array().into_iter().flatten() {
                    eprintln!(
                        "kept {}@{} ({}): {}",
                        text(&item["repository"]),
                        text(&item["digest"]),
                        tags_text(item),
                        text(&item["skipped"])
                    );
                }
                let count = removed.len();
                let images = if count == 1 { "image" } else { "images" };
                if dry_run {
                    eprintln!("Dry run: {count} {images} would go to the trash, {} kept; nothing changed.", report["kept"]);
                } else {
                    eprintln!(
                        "{count} {images} moved to the trash, {} kept.",
                        report["kept"]
                    );
                }
            }
        }
        ClientRetentionCommand::Rm { namespace } => {
            session.call(
                Method::DELETE,
                &format!(
                    "/api/v1/namespaces/{}/retention-policy",
                    segment(&namespace)
                ),
                None,
                &settings_scope(&namespace),
                "removing a retention policy",
            )?;
            if output.format == OutputFormat::Table && !output.quiet {
                println!("Removed the retention policy of {namespace}.");
            }
        }
    }
    Ok(())
}

/// The JSON a limit option becomes: absent (unchanged), `null` (the
/// default) or bytes.
fn limit_json(limit: LimitArg) -> Value {
    match limit {
        LimitArg::Default => Value::Null,
        LimitArg::Unlimited => json!("unlimited"),
        LimitArg::Bytes(bytes) => json!(bytes),
    }
}

/// A quota figure for a table: `used / limit (percent)`, the limit marked
/// when it is the registry-wide default.
fn figures(figures: &Value) -> Vec<String> {
    let used = figures["used"].as_u64().unwrap_or(0);
    match figures["limit"].as_u64() {
        Some(limit) => {
            let percent = if limit == 0 {
                100.0
            } else {
                used as f64 * 100.0 / limit as f64
            };
            let default = if figures["default"] == true {
                " (default)"
            } else {
                ""
            };
            vec![
                human_size(used),
                format!("{}{default}", human_size(limit)),
                format!("{percent:.0}%"),
            ]
        }
        None => vec![human_size(used), "-".to_string(), "-".to_string()],
    }
}

const QUOTA_HEADERS: [&str; 7] = [
    "namespace",
    "storage",
    "storage limit",
    "used",
    "traffic (month)",
    "traffic limit",
    "used",
];

fn quota_row(quota: &Value) -> Vec<String> {
    let mut row = vec![text(&quota["namespace"])];
    row.extend(figures(&quota["storage"]));
    row.extend(figures(&quota["traffic"]));
    row
}

pub fn quota(args: QuotaArgs, env: &Environment) -> Result<(), ClientError> {
    let mut session = session(args.client.registry.as_deref(), env)?;
    let output = Output::new(
        args.client.output,
        args.client.quiet,
        args.client.format.as_deref(),
        env,
    )?;
    // Limits and recounts are an administrator's, as user administration is.
    let admin = ["registry:users:*".to_string()];
    match args.command {
        Some(QuotaCommand::Set {
            namespace,
            storage,
            traffic,
        }) => {
            if storage.is_none() && traffic.is_none() {
                return Err(ClientError::Usage(
                    "give --storage SIZE, --traffic SIZE or both (a size, `default` or `unlimited`)"
                        .into(),
                ));
            }
            let mut body = serde_json::Map::new();
            if let Some(storage) = storage {
                body.insert("storage".into(), limit_json(storage));
            }
            if let Some(traffic) = traffic {
                body.insert("traffic".into(), limit_json(traffic));
            }
            let quota = session.call(
                Method::PUT,
                &format!("/api/v1/quotas/{}", segment(&namespace)),
                Some(&Value::Object(body)),
                &admin,
                "setting a quota",
            )?;
            let shown = |field: &str| match quota[field]["limit"].as_u64() {
                Some(limit) => human_size(limit),
                None => "unlimited".to_string(),
            };
            output.done(
                &quota,
                &format!(
                    "{namespace}: storage limit {}, traffic limit {} a month.",
                    shown("storage"),
                    shown("traffic")
                ),
            );
        }
        Some(QuotaCommand::Recompute) => {
            let recount = session.call(
                Method::POST,
                "/api/v1/quota-recompute",
                None,
                &admin,
                "recounting storage usage",
            )?;
            let namespaces: Vec<Value> = recount["namespaces"]
                .as_array()
                .into_iter()
                .flatten()
                .cloned()
                .collect();
            match (output.format, output.quiet) {
                (OutputFormat::Json, _) => print!("{}", crate::client::output::json_line(&recount)),
                (OutputFormat::Table, quiet) => {
                    // Drifted namespaces only: none is the expected answer.
                    let drifted: Vec<Value> = namespaces
                        .into_iter()
                        .filter(|d| d["recorded"] != d["actual"])
                        .collect();
                    if quiet {
                        for drift in &drifted {
                            println!("{}", text(&drift["namespace"]));
                        }
                    } else if drifted.is_empty() {
                        println!(
                            "Recounted {} namespaces: no drift.",
                            recount["namespaces"].as_array().map_or(0, Vec::len)
                        );
                    } else {
                        output.list(
                            &drifted,
                            &["namespace", "recorded", "actual", "drift"],
                            |drift, _| {
                                let recorded = drift["recorded"].as_i64().unwrap_or(0);
                                let actual = drift["actual"].as_i64().unwrap_or(0);
                                vec![
                                    text(&drift["namespace"]),
                                    recorded.to_string(),
                                    actual.to_string(),
                                    format!("{:+}", actual - recorded),
                                ]
                            },
                            |drift| drift["namespace"].as_str().unwrap_or(""),
                        )?;
                        println!("Corrected {} namespaces.", drifted.len());
                    }
                }
            }
        }
        Some(QuotaCommand::History { namespace, days }) => {
            let history = session.call(
                Method::GET,
                &format!(
                    "/api/v1/namespaces/{}/usage-history?days={days}",
                    segment(&namespace)
                ),
                None,
                &[format!("namespace:{namespace}:pull")],
                "reading a namespace's usage history",
            )?;
            if output.format == OutputFormat::Json && output.template.is_none() {
                print!("{}", crate::client::output::json_line(&history));
                return Ok(());
            }
            let days: Vec<Value> = history["days"].as_array().cloned().unwrap_or_default();
            output.list(
                &days,
                &["date", "storage", "pulls", "pulled"],
                |day, _| {
                    vec![
                        text(&day["date"]),
                        human_size(day["storage_bytes"].as_u64().unwrap_or(0)),
                        day["pulls"].as_u64().unwrap_or(0).to_string(),
                        human_size(day["pull_bytes"].as_u64().unwrap_or(0)),
                    ]
                },
                |day| day["date"].as_str().unwrap_or(""),
            )?;
        }
        None => {
            let quotas: Vec<Value> = match &args.namespace {
                Some(namespace) => {
                    let quota = session.call(
                        Method::GET,
                        &format!("/api/v1/quotas/{}", segment(namespace)),
                        None,
                        &[format!("namespace:{namespace}:pull")],
                        "reading a quota",
                    )?;
                    // One namespace asked for: one object, as the API
                    // answers it, rather than a list of one.
                    if output.format == OutputFormat::Json && output.template.is_none() {
                        print!("{}", crate::client::output::json_line(&quota));
                        return Ok(());
                    }
                    vec![quota]
                }
                None => session.call(
                    Method::GET,
                    "/api/v1/quotas",
                    None,
                    &["registry:catalog:*".to_string()],
                    "listing quotas",
                )?["quotas"]
                    .as_array()
                    .cloned()
                    .unwrap_or_default(),
            };
            output.list(
                &quotas,
                &QUOTA_HEADERS,
                |quota, _| quota_row(quota),
                |quota| quota["namespace"].as_str().unwrap_or(""),
            )?;
        }
    }
    Ok(())
}
