//! `berth replication …`: replication rules through the management API
//! (`/api/v1/replications`, administrators), with the login `berth login`
//! stored.

use std::time::{Duration, Instant};

use reqwest::Method;
use serde_json::{json, Value};

use crate::cli::{ClientArgs, ClientReplicationCommand};
use crate::client::error::ClientError;
use crate::client::output::{cell, cell_time, Output, OutputFormat};
use crate::client::session::{segment, Session};
use crate::client::Profile;
use crate::config::Environment;

/// The registry-token scope of an administrator.
fn scopes() -> Vec<String> {
    vec!["registry:users:*".to_string()]
}

/// The longest `run --wait` waits.
const MAX_WAIT: Duration = Duration::from_secs(24 * 3600);
/// How often `run --wait` looks.
const WAIT_POLL: Duration = Duration::from_millis(250);
/// The longest credentials file read.
const MAX_CREDENTIALS: u64 = 4096;

/// Reads the credentials file: `user:password` or a token, one line.
fn read_credentials(path: &std::path::Path) -> Result<String, ClientError> {
    let unreadable = |e: std::io::Error| {
        ClientError::Local(format!(
            "cannot read the credentials file {}: {e}",
            path.display()
        ))
    };
    let size = std::fs::metadata(path).map_err(unreadable)?.len();
    if size > MAX_CREDENTIALS {
        return Err(ClientError::Usage(format!(
            "{}: a credentials file holds one line of at most {MAX_CREDENTIALS} bytes",
            path.display()
        )));
    }
    let content = std::fs::read_to_string(path).map_err(unreadable)?;
    let line = content.trim_end_matches(['\n', '\r']);
    if line.is_empty() || line.contains('\n') {
        return Err(ClientError::Usage(format!(
            "{}: a credentials file holds one line, `user:password` or a token",
            path.display()
        )));
    }
    Ok(line.to_string())
}

/// The run's row of a table.
fn run_row(run: &Value) -> Vec<String> {
    vec![
        cell(&run["id"]),
        cell(&run["trigger"]),
        cell(&run["status"]),
        cell_time(&run["started_at"]),
        cell(&run["images_copied"]),
        cell(&run["images_skipped"]),
        cell(&run["blobs_copied"]),
        cell(&run["bytes"]),
        cell(&run["error"]),
    ]
}

const RUN_HEADERS: [&str; 9] = [
    "run", "trigger", "status", "started", "copied", "skipped", "blobs", "bytes", "error",
];

fn details(session: &mut Session, name: &str) -> Result<Value, ClientError> {
    session.call(
        Method::GET,
        &format!("/api/v1/replications/{}", segment(name)),
        None,
        &scopes(),
        "reading a replication rule",
    )
}

pub fn replication(
    args: ClientArgs,
    command: ClientReplicationCommand,
    env: &Environment,
) -> Result<(), ClientError> {
    let mut session = Profile::load(env)?.session(args.registry.as_deref())?;
    let output = Output::new(args.output, args.quiet, args.format.as_deref(), env)?;
    match command {
        ClientReplicationCommand::Add {
            name,
            target,
            source,
            creds_file,
            repos,
            tags,
            on_push,
            every,
        } => {
            let (direction, url) = match (target, source) {
                (Some(url), None) => ("push", url),
                (None, Some(url)) => ("pull", url),
                _ => {
                    return Err(ClientError::Usage(
                        "give one of --target URL (push) and --source URL (pull)".into(),
                    ))
                }
            };
            let mut body = json!({
                "name": name,
                "direction": direction,
                "url": url,
                "repositories": repos,
                "on_push": on_push,
            });
            if let Some(tags) = &tags {
                body["tags"] = json!(tags);
            }
            if let Some(every) = every {
                body["interval_secs"] = json!(Duration::from(every).as_secs());
            }
            if let Some(path) = &creds_file {
                body["credentials"] = json!(read_credentials(path)?);
            }
            let created = session.call(
                Method::POST,
                "/api/v1/replications",
                Some(&body),
                &scopes(),
                "adding a replication rule",
            )?;
            let way = if direction == "push" { "to" } else { "from" };
            output.done(
                &created,
                &format!(
                    "Replication {name} copies {repos}{} {way} {url}.",
                    tags.map(|t| format!(" (tags {t})")).unwrap_or_default()
                ),
            );
        }
        ClientReplicationCommand::List => {
            let list = session.call(
                Method::GET,
                "/api/v1/replications",
                None,
                &scopes(),
                "listing replication rules",
            )?;
            let rules = list["replications"].as_array().cloned().unwrap_or_default();
            output.list(
                &rules,
                &[
                    "name",
                    "direction",
                    "url",
                    "repos",
                    "tags",
                    "on push",
                    "every",
                    "last run",
                ],
                |rule, _| {
                    let last = &rule["last_run"];
                    vec![
                        cell(&rule["name"]),
                        cell(&rule["direction"]),
                        cell(&rule["url"]),
                        cell(&rule["repositories"]),
                        cell(&rule["tags"]),
                        if rule["on_push"] == true { "yes" } else { "no" }.to_string(),
                        rule["interval_secs"]
                            .as_u64()
                            .map(|secs| {
                                humantime::format_duration(Duration::from_secs(secs)).to_string()
                            })
                            .unwrap_or_else(|| "-".to_string()),
                        if last.is_null() {
                            "-".to_string()
                        } else {
                            format!(
                                "{} {}",
                                cell(&last["status"]),
                                cell_time(&last["started_at"])
                            )
                        },
                    ]
                },
                |rule| rule["name"].as_str().unwrap_or(""),
            )?;
        }
        ClientReplicationCommand::Run { name, wait } => {
            let run = session.call(
                Method::POST,
                &format!("/api/v1/replications/{}/run", segment(&name)),
                None,
                &scopes(),
                "running a replication rule",
            )?;
            if !wait {
                output.done(
                    &run,
                    &format!(
                        "Started run {} of {name}: see berth replication status {name}.",
                        run["id"]
                    ),
                );
                return Ok(());
            }
            let id = run["id"].clone();
            let started = Instant::now();
            let finished = loop {
                let rule = details(&mut session, &name)?;
                let found = rule["runs"]
                    .as_array()
                    .and_then(|runs| runs.iter().find(|r| r["id"] == id).cloned());
                match found {
                    Some(run) if run["status"] != "running" => break run,
                    // Pushed out of the history by later runs: done.
                    None => break run.clone(),
                    Some(_) if started.elapsed() > MAX_WAIT => {
                        return Err(ClientError::Local(format!(
                            "run {id} of {name} is still running; see berth replication status \
                             {name}"
                        )))
                    }
                    Some(_) => std::thread::sleep(WAIT_POLL),
                }
            };
            output.done(
                &finished,
                &format!(
                    "Run {id} of {name} {}: {} images copied, {} skipped, {} blobs ({} bytes).",
                    cell(&finished["status"]),
                    cell(&finished["images_copied"]),
                    cell(&finished["images_skipped"]),
                    cell(&finished["blobs_copied"]),
                    cell(&finished["bytes"]),
                ),
            );
            if finished["status"] == "failed" {
                return Err(ClientError::Local(format!(
                    "run {id} of {name} failed: {}",
                    cell(&finished["error"])
                )));
            }
        }
        ClientReplicationCommand::Status { name } => {
            let rule = details(&mut session, &name)?;
            if output.format == OutputFormat::Table && !output.quiet {
                println!(
                    "{} {} {} repos {} tags {} on push {}",
                    cell(&rule["name"]),
                    if rule["direction"] == "push" {
                        "to"
                    } else {
                        "from"
                    },
                    cell(&rule["url"]),
                    cell(&rule["repositories"]),
                    cell(&rule["tags"]),
                    if rule["on_push"] == true { "yes" } else { "no" },
                );
                let pending = rule["pending_deletes"].as_u64().unwrap_or(0);
                if pending > 0 {
                    println!(
                        "{pending} deleted tag(s) not yet deleted on the remote; every run tries \
                         again:"
                    );
                    for entry in rule["oldest_pending_deletes"]
                        .as_array()
                        .into_iter()
                        .flatten()
                    {
                        println!(
                            "  {}:{} since {}, {} attempt(s): {}",
                            cell(&entry["repository"]),
                            cell(&entry["tag"]),
                            cell_time(&entry["since"]),
                            cell(&entry["attempts"]),
                            cell(&entry["error"])
                        );
                    }
                }
            }
            if output.format == OutputFormat::Json {
                output.done(&rule, "");
                return Ok(());
            }
            let runs = rule["runs"].as_array().cloned().unwrap_or_default();
            output.list(
                &runs,
                &RUN_HEADERS,
                |run, _| run_row(run),
                |run| run["status"].as_str().unwrap_or(""),
            )?;
        }
        ClientReplicationCommand::Rm { name } => {
            session.call(
                Method::DELETE,
                &format!("/api/v1/replications/{}", segment(&name)),
                None,
                &scopes(),
                "removing a replication rule",
            )?;
            if output.format == OutputFormat::Table && !output.quiet {
                println!("Removed replication {name}.");
            }
        }
    }
    Ok(())
}
