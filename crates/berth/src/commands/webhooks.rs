//! `berth webhook …` and `berth audit`: webhooks and the audit trail
//! through the management API (`/api/v1`), with the login `berth login`
//! stored.

use reqwest::Method;
use serde_json::{json, Value};

use crate::cli::{ClientArgs, ClientWebhookCommand};
use crate::client::error::ClientError;
use crate::client::output::{Output, OutputFormat};
use crate::client::session::{segment, Session};
use crate::client::Profile;
use crate::config::Environment;

/// The registry-token scopes managing the webhooks of `scope` needs: the
/// namespace's `manage_settings`, or, for `*`, an administrator's.
fn scopes(scope: &str) -> Vec<String> {
    if scope == "*" {
        vec!["registry:users:*".to_string()]
    } else {
        vec![format!("namespace:{scope}:manage_settings")]
    }
}

fn text(value: &Value) -> String {
    match value {
        Value::String(text) => text.clone(),
        Value::Null => "-".to_string(),
        other => other.to_string(),
    }
}

fn date_time(value: &Value) -> String {
    value
        .as_i64()
        .and_then(|at| time::OffsetDateTime::from_unix_timestamp(at).ok())
        .and_then(|at| {
            at.format(&time::format_description::well_known::Rfc3339)
                .ok()
        })
        .unwrap_or_else(|| "-".to_string())
}

/// The webhooks the caller may manage.
fn list(session: &mut Session) -> Result<Vec<Value>, ClientError> {
    let list = session.call(
        Method::GET,
        "/api/v1/webhooks",
        None,
        &["registry:catalog:*".to_string()],
        "listing webhooks",
    )?;
    Ok(list["webhooks"].as_array().cloned().unwrap_or_default())
}

/// The scope of webhook `id`, from the listing (the API addresses a
/// webhook by its scope and id, so that the scope decides who may).
fn scope_of(session: &mut Session, id: i64) -> Result<String, ClientError> {
    list(session)?
        .iter()
        .find(|webhook| webhook["id"].as_i64() == Some(id))
        .and_then(|webhook| webhook["scope"].as_str().map(str::to_string))
        .ok_or_else(|| {
            ClientError::Usage(format!(
                "no webhook {id} that you may manage (see `berth webhook list`)"
            ))
        })
}

pub fn webhook(
    args: ClientArgs,
    command: ClientWebhookCommand,
    env: &Environment,
) -> Result<(), ClientError> {
    let mut session = Profile::load(env)?.session(args.registry.as_deref())?;
    let output = Output::new(args.output, args.quiet, args.format.as_deref(), env)?;
    match command {
        ClientWebhookCommand::Add {
            scope,
            url,
            events,
            secret,
        } => {
            let mut body = json!({"scope": scope, "url": url, "events": events});
            if let Some(secret) = secret {
                body["secret"] = json!(secret);
            }
            let created = session.call(
                Method::POST,
                "/api/v1/webhooks",
                Some(&body),
                &scopes(&scope),
                "adding a webhook",
            )?;
            output.done(
                &created,
                &format!(
                    "Webhook {} sends {} events of {scope} to {url}.",
                    created["id"],
                    events.join(", ")
                ),
            );
        }
        ClientWebhookCommand::List { scope } => {
            let webhooks: Vec<Value> = list(&mut session)?
                .into_iter()
                .filter(|webhook| scope.as_deref().is_none_or(|s| webhook["scope"] == s))
                .collect();
            output.list(
                &webhooks,
                &["id", "scope", "url", "events", "signed", "created by"],
                |webhook, _| {
                    let events: Vec<String> = webhook["events"]
                        .as_array()
                        .into_iter()
                        .flatten()
                        .map(text)
                        .collect();
                    vec![
                        text(&webhook["id"]),
                        text(&webhook["scope"]),
                        text(&webhook["url"]),
                        events.join(","),
                        if webhook["signed"] == true {
                            "yes"
                        } else {
                            "no"
                        }
                        .to_string(),
                        text(&webhook["created_by"]),
                    ]
                },
                |webhook| webhook["url"].as_str().unwrap_or(""),
            )?;
        }
        ClientWebhookCommand::Rm { id } => {
            let scope = scope_of(&mut session, id)?;
            session.call(
                Method::DELETE,
                &format!("/api/v1/webhooks/{}/{id}", segment(&scope)),
                None,
                &scopes(&scope),
                "removing a webhook",
            )?;
            if output.format == OutputFormat::Table && !output.quiet {
                println!("Removed webhook {id}.");
            }
        }
        ClientWebhookCommand::Deliveries { id } => {
            let scope = scope_of(&mut session, id)?;
            let log = session.call(
                Method::GET,
                &format!("/api/v1/webhooks/{}/{id}/deliveries", segment(&scope)),
                None,
                &scopes(&scope),
                "reading a webhook's deliveries",
            )?;
            let deliveries = log["deliveries"].as_array().cloned().unwrap_or_default();
            output.list(
                &deliveries,
                &[
                    "event",
                    "kind",
                    "state",
                    "attempts",
                    "status",
                    "updated",
                    "last error",
                ],
                |delivery, _| {
                    vec![
                        text(&delivery["event"]),
                        text(&delivery["event_kind"]),
                        text(&delivery["state"]),
                        text(&delivery["attempts"]),
                        text(&delivery["last_status"]),
                        date_time(&delivery["updated_at"]),
                        text(&delivery["last_error"]),
                    ]
                },
                |delivery| delivery["state"].as_str().unwrap_or(""),
            )?;
        }
    }
    Ok(())
}

/// What `berth audit` asks for.
pub struct AuditFilter {
    pub since: Option<std::time::Duration>,
    pub actor: Option<String>,
    pub namespace: Option<String>,
    pub action: Option<String>,
    pub limit: u64,
}

pub fn audit(args: ClientArgs, filter: AuditFilter, env: &Environment) -> Result<(), ClientError> {
    let mut session = Profile::load(env)?.session(args.registry.as_deref())?;
    let output = Output::new(args.output, args.quiet, args.format.as_deref(), env)?;
    if !(1..=1000).contains(&filter.limit) {
        return Err(ClientError::Usage(
            "--limit: between 1 and 1000 records".to_string(),
        ));
    }
    let mut query: Vec<(&str, String)> = vec![("limit", filter.limit.to_string())];
    if let Some(since) = filter.since {
        let now = time::OffsetDateTime::now_utc().unix_timestamp();
        query.push(("since", (now - since.as_secs() as i64).max(0).to_string()));
    }
    for (name, value) in [
        ("actor", filter.actor),
        ("namespace", filter.namespace),
        ("action", filter.action),
    ] {
        if let Some(value) = value {
            query.push((name, value));
        }
    }
    let query = url::form_urlencoded::Serializer::new(String::new())
        .extend_pairs(&query)
        .finish();
    let page = session.call(
        Method::GET,
        &format!("/api/v1/audit?{query}"),
        None,
        &["registry:users:*".to_string()],
        "reading the audit trail",
    )?;
    let records = page["records"].as_array().cloned().unwrap_or_default();
    output.list(
        &records,
        &["time", "actor", "address", "action", "resource", "outcome"],
        |record, _| {
            let actor = &record["actor"];
            let who = match actor["name"].as_str() {
                Some(name) => format!("{}:{name}", text(&actor["kind"])),
                None => text(&actor["kind"]),
            };
            vec![
                date_time(&record["at"]),
                who,
                text(&actor["address"]),
                text(&record["action"]),
                text(&record["resource"]),
                text(&record["outcome"]),
            ]
        },
        |record| record["action"].as_str().unwrap_or(""),
    )?;
    Ok(())
}
