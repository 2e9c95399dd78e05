//! `berth webhook …` and `berth audit`: webhooks and the audit trail
//! through the management API (`/api/v1`), with the login `berth login`
//! stored.

use reqwest::Method;
use serde_json::{json, Value};

use crate::cli::{ClientArgs, ClientWebhookCommand};
use crate::client::error::ClientError;
use crate::client::output::{cell, cell_time, Output, OutputFormat};
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
            envelope,
        } => {
            let mut body = json!({
                "scope": scope,
                "url": url,
                "events": events,
                "envelope": envelope.as_str(),
            });
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
                &[
                    "id",
                    "scope",
                    "url",
                    "events",
                    "signed",
                    "envelope",
                    "created by",
                ],
                |webhook, _| {
                    let events: Vec<String> = webhook["events"]
                        .as_array()
                        .into_iter()
                        .flatten()
                        .map(cell)
                        .collect();
                    vec![
                        cell(&webhook["id"]),
                        cell(&webhook["scope"]),
                        cell(&webhook["url"]),
                        events.join(","),
                        if webhook["signed"] == true {
                            "yes"
                        } else {
                            "no"
                        }
                        .to_string(),
                        cell(&webhook["envelope"]),
                        cell(&webhook["created_by"]),
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
                        cell(&delivery["event"]),
                        cell(&delivery["event_kind"]),
                        cell(&delivery["state"]),
                        cell(&delivery["attempts"]),
                        cell(&delivery["last_status"]),
                        cell_time(&delivery["updated_at"]),
                        cell(&delivery["last_error"]),
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
    pub limit: Option<u64>,
    /// Every matching record as JSON lines, all pages.
    pub export: bool,
}

/// Records one page of the API holds at most.
const AUDIT_PAGE: u64 = 1000;

pub fn audit(args: ClientArgs, filter: AuditFilter, env: &Environment) -> Result<(), ClientError> {
    let mut session = Profile::load(env)?.session(args.registry.as_deref())?;
    let output = Output::new(args.output, args.quiet, args.format.as_deref(), env)?;
    match filter.limit {
        Some(0) => return Err(ClientError::Usage("--limit: at least 1 record".to_string())),
        Some(limit) if limit > AUDIT_PAGE && !filter.export => {
            return Err(ClientError::Usage(format!(
                "--limit: at most {AUDIT_PAGE} records; use --export for more"
            )))
        }
        _ => {}
    }
    let mut query: Vec<(&str, String)> = Vec::new();
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
    if filter.export {
        return export_audit(&mut session, query, filter.limit);
    }
    query.push(("limit", filter.limit.unwrap_or(100).to_string()));
    let page = audit_page(&mut session, &query, "reading the audit trail")?;
    let records = page["records"].as_array().cloned().unwrap_or_default();
    output.list(
        &records,
        &["time", "actor", "address", "action", "resource", "outcome"],
        |record, _| {
            let actor = &record["actor"];
            let who = match actor["name"].as_str() {
                Some(name) => format!("{}:{name}", cell(&actor["kind"])),
                None => cell(&actor["kind"]),
            };
            vec![
                cell_time(&record["at"]),
                who,
                cell(&actor["address"]),
                cell(&record["action"]),
                cell(&record["resource"]),
                cell(&record["outcome"]),
            ]
        },
        |record| record["action"].as_str().unwrap_or(""),
    )?;
    Ok(())
}

/// One page of the audit trail the API answers for `query`.
fn audit_page(
    session: &mut Session,
    query: &[(&str, String)],
    doing: &str,
) -> Result<Value, ClientError> {
    let query = url::form_urlencoded::Serializer::new(String::new())
        .extend_pairs(query)
        .finish();
    session.call(
        Method::GET,
        &format!("/api/v1/audit?{query}"),
        None,
        &["registry:users:*".to_string()],
        doing,
    )
}

/// `berth audit --export`: every record the filter selects, newest first,
/// one JSON object per line, page after page (`next_before`) until the
/// trail or `limit` ends. Each line is written as its page arrives, so an
/// export of any size holds one page in memory; a reader that stops early
/// (`| head`) ends it quietly.
fn export_audit(
    session: &mut Session,
    filter: Vec<(&str, String)>,
    limit: Option<u64>,
) -> Result<(), ClientError> {
    use std::io::Write;

    let stdout = std::io::stdout();
    let mut out = std::io::BufWriter::new(stdout.lock());
    let mut remaining = limit.unwrap_or(u64::MAX);
    let mut before: Option<i64> = None;
    while remaining > 0 {
        let mut query = filter.clone();
        query.push(("limit", remaining.min(AUDIT_PAGE).to_string()));
        if let Some(before) = before {
            query.push(("before", before.to_string()));
        }
        let page = audit_page(session, &query, "exporting the audit trail")?;
        let records = page["records"].as_array().cloned().unwrap_or_default();
        for record in &records {
            let written = writeln!(out, "{record}");
            if let Err(error) = written {
                return quiet_on_closed_pipe(error);
            }
        }
        remaining = remaining.saturating_sub(records.len() as u64);
        match page["next_before"].as_i64() {
            Some(next) if !records.is_empty() => before = Some(next),
            _ => break,
        }
    }
    out.flush().or_else(quiet_on_closed_pipe)
}

/// A closed standard output (the reader stopped) ends an export quietly;
/// any other write error is reported.
fn quiet_on_closed_pipe(error: std::io::Error) -> Result<(), ClientError> {
    if error.kind() == std::io::ErrorKind::BrokenPipe {
        Ok(())
    } else {
        Err(ClientError::Local(format!(
            "cannot write the export to standard output: {error}: check the disk or the pipe it goes to"
        )))
    }
}
