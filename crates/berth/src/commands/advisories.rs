//! `berth advisories import PATH|URL`: stores OSV advisories in the
//! registry's database, read on the database directly like `berth admin`,
//! with the same configuration (`--data-dir`, `--config`, …); servers may
//! be running, and see the new advisories at their next assessment.
//!
//! A PATH is a directory of OSV JSON/YAML records (searched recursively),
//! one record, or an ecosystem's `all.zip` as osv.dev publishes them. A URL
//! (`https://…/all.zip` or one record) is downloaded to a temporary file
//! first, with the scheduled sync's bounds. The import is incremental: a
//! record replaces a stored one only if its `modified` is newer, and
//! withdrawn records are removed.
//!
//! `berth advisories status` shows the configured sources of the scheduled
//! sync (`[scanner] advisory_urls`) with their stored state.

use std::path::Path;
use std::process::ExitCode;

use berth_registry::advisory_sync::{AdvisoryFetcher, Fetched};
use berth_registry::Actor;
use berth_scanner::Advisory;

use crate::cli::{AdvisoriesCommand, ImportArgs, StatusArgs};
use crate::client::output::{json_line, or_dash, render_table, OutputFormat};
use crate::config::{Environment, Loaded};
use crate::wiring;

pub fn run(command: AdvisoriesCommand, env: &Environment) -> ExitCode {
    match command {
        AdvisoriesCommand::Import(args) => {
            let args = &args;
            super::run_offline(&args.config, env, |loaded| async move {
                import(&loaded, args).await
            })
        }
        AdvisoriesCommand::Status(args) => {
            let args = &args;
            super::run_offline(&args.config, env, |loaded| async move {
                status(&loaded, args).await
            })
        }
    }
}

/// A source as `-o json` prints it: the API's fields, with times in RFC
/// 3339 as every `-o json` of the CLI has them.
#[derive(serde::Serialize)]
struct SourceStatus {
    url: String,
    last_attempt_at: Option<String>,
    last_success_at: Option<String>,
    records_changed: u64,
    last_error: Option<String>,
}

/// Seconds since the epoch in RFC 3339 (UTC).
fn rfc3339(at: Option<i64>) -> Option<String> {
    let at = time::OffsetDateTime::from_unix_timestamp(at?).ok()?;
    at.format(&time::format_description::well_known::Rfc3339)
        .ok()
}

async fn status(loaded: &Loaded, args: &StatusArgs) -> Result<(), String> {
    let opened = wiring::open_registry(loaded, wiring::StorageCheck::OpenOnly, None).await?;
    let urls = wiring::advisory_urls(&loaded.config);
    let rows = berth_registry::advisory_sync::source_status(&opened.registry, &urls)
        .await
        .map_err(|e| format!("reading the advisory sources: {e}"))?;
    let sources: Vec<SourceStatus> = rows
        .into_iter()
        .map(|row| SourceStatus {
            url: crate::advisory_fetch::redact(&row.url),
            last_attempt_at: rfc3339(row.last_attempt_at),
            last_success_at: rfc3339(row.last_success_at),
            records_changed: row.records_changed,
            last_error: row.last_error,
        })
        .collect();
    match args.output {
        OutputFormat::Json => print!("{}", json_line(&sources)),
        OutputFormat::Table if sources.is_empty() => println!(
            "no advisory sources configured ([scanner] advisory_urls); import files with `berth advisories import PATH`"
        ),
        OutputFormat::Table => {
            let rows: Vec<Vec<String>> = sources
                .iter()
                .map(|source| {
                    vec![
                        source.url.clone(),
                        or_dash(source.last_attempt_at.as_deref()),
                        or_dash(source.last_success_at.as_deref()),
                        source.records_changed.to_string(),
                        or_dash(source.last_error.as_deref()),
                    ]
                })
                .collect();
            print!(
                "{}",
                render_table(
                    &["url", "last attempt", "last success", "changed", "last error"],
                    &rows,
                    false
                )
            );
        }
    }
    Ok(())
}

async fn import(loaded: &Loaded, args: &ImportArgs) -> Result<(), String> {
    let source = &args.source;
    let mut advisories = Vec::new();
    let mut problems: Vec<(String, String)> = Vec::new();
    if source.starts_with("https://") || source.starts_with("http://") {
        // Held in memory, not written anywhere: an ecosystem's all.zip is
        // tens of megabytes. Bounded as the scheduled sync's downloads are.
        let fetcher = crate::advisory_fetch::HttpFetcher::new(Default::default())?;
        let bytes = match fetcher.fetch(source, &Default::default()).await? {
            Fetched::Body { bytes, .. } => bytes,
            Fetched::NotModified => return Err(format!("{source} answered 304 Not Modified")),
        };
        let (records, skipped) = berth_registry::advisory_sync::parse_source(source, &bytes)?;
        advisories.extend(records);
        problems.extend(skipped);
    } else {
        let path = Path::new(source);
        let mut record =
            |name: &str, result: Result<Advisory, berth_scanner::osv::OsvError>| match result {
                Ok(advisory) => advisories.push(advisory),
                Err(error) => problems.push((name.to_string(), error.to_string())),
            };
        berth_scanner::osv::read_path(path, &mut record)
            .map_err(|e| format!("reading {}: {e}", path.display()))?;
    }
    for (name, problem) in problems.iter().take(10) {
        eprintln!("skipped {name}: {problem}");
    }
    if problems.len() > 10 {
        eprintln!("… and {} more records skipped", problems.len() - 10);
    }
    let opened = wiring::open_registry(loaded, wiring::StorageCheck::OpenOnly, None).await?;
    // A whole ecosystem is tens of thousands of records and minutes of
    // work: a progress bar on a terminal, moved as each batch is stored
    // (one import, so each image whose findings change is told once).
    let progress = crate::client::output::progress(advisories.len() as u64, "advisories", false);
    let counts = opened
        .registry
        .import_advisories_with_progress(
            &Actor::system("advisories-import"),
            &advisories,
            &|stored| progress.inc(stored as u64),
        )
        .await
        .map_err(|e| format!("storing advisories: {e}"))?;
    progress.finish_and_clear();
    println!(
        "imported {} records from {source}: {} added, {} updated, {} unchanged, {} withdrawn removed, {} skipped",
        advisories.len(),
        counts.added,
        counts.updated,
        counts.unchanged,
        counts.removed,
        problems.len(),
    );
    Ok(())
}
