//! `berth advisories import PATH|URL`: stores OSV advisories in the
//! registry's database, read on the database directly like `berth admin`,
//! with the same configuration (`--data-dir`, `--config`, …); servers may
//! be running, and see the new advisories at their next assessment.
//!
//! A PATH is a directory of OSV JSON/YAML records (searched recursively),
//! one record, or an ecosystem's `all.zip` as osv.dev publishes them. A URL
//! (`https://…/all.zip` or one record) is downloaded to a temporary file
//! first. The import is incremental: a record replaces a stored one only
//! if its `modified` is newer, and withdrawn records are removed.

use std::path::Path;
use std::process::ExitCode;

use berth_registry::Actor;
use berth_scanner::Advisory;

use crate::cli::{AdvisoriesCommand, ImportArgs};
use crate::config::{Environment, Loaded};
use crate::wiring;

pub fn run(command: AdvisoriesCommand, env: &Environment) -> ExitCode {
    let AdvisoriesCommand::Import(args) = command;
    let args = &args;
    super::run_offline(&args.config, env, |loaded| async move {
        import(&loaded, args).await
    })
}

/// Advisories stored between two updates of the progress bar.
const IMPORT_SLICE: usize = 1000;

async fn import(loaded: &Loaded, args: &ImportArgs) -> Result<(), String> {
    let source = &args.source;
    let mut advisories = Vec::new();
    let mut problems = Vec::new();
    let mut record =
        |name: &str, result: Result<Advisory, berth_scanner::osv::OsvError>| match result {
            Ok(advisory) => advisories.push(advisory),
            Err(error) => problems.push((name.to_string(), error.to_string())),
        };
    if source.starts_with("https://") || source.starts_with("http://") {
        // Held in memory, not written anywhere: an ecosystem's all.zip is
        // tens of megabytes.
        let bytes = download(source).await?;
        if source.ends_with(".zip") {
            berth_scanner::osv::read_zip(std::io::Cursor::new(bytes), &mut record)
                .map_err(|e| format!("reading {source}: {e}"))?;
        } else {
            record(source, berth_scanner::osv::parse_file(source, &bytes));
        }
    } else {
        let path = Path::new(source);
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
    // work: stored a slice at a time, with a progress bar on a terminal.
    let progress = crate::client::output::progress(advisories.len() as u64, "advisories", false);
    let mut counts = berth_meta::ImportCounts::default();
    for slice in advisories.chunks(IMPORT_SLICE) {
        let stored = opened
            .registry
            .import_advisories(&Actor::system("advisories-import"), slice)
            .await
            .map_err(|e| format!("storing advisories: {e}"))?;
        counts.added += stored.added;
        counts.updated += stored.updated;
        counts.unchanged += stored.unchanged;
        counts.removed += stored.removed;
        progress.inc(slice.len() as u64);
    }
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

/// Downloads `url` into memory.
async fn download(url: &str) -> Result<Vec<u8>, String> {
    let response = reqwest::get(url)
        .await
        .and_then(|response| response.error_for_status())
        .map_err(|e| format!("downloading {url}: {e}"))?;
    let bytes = response
        .bytes()
        .await
        .map_err(|e| format!("downloading {url}: {e}"))?;
    Ok(bytes.to_vec())
}
