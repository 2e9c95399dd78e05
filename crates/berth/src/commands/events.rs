//! `berth events tail`: the event stream (every change, in order), read on
//! the database directly like `berth admin`, with the same configuration
//! (`--data-dir`, `--config`, …); servers may be running.
//!
//! Without `--consumer` it reads from where `--since` says (default: the
//! last few events) and remembers nothing. With `--consumer NAME` it is a
//! durable consumer like any other (`berth_registry::ConsumerRunner`): it
//! starts where the last run under that name stopped, records what it
//! printed, and only one reader at a time (on any machine) holds the name.

use std::io::Write;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use berth_registry::{
    ConsumerError, ConsumerOptions, ConsumerRunner, Event, EventConsumer, EventCursor, Registry,
};
use time::format_description::well_known::Rfc3339;
use time::OffsetDateTime;
use tokio_util::sync::CancellationToken;

use crate::cli::{EventOutput as Output, EventsCommand, TailArgs};
use crate::config::{Environment, Loaded};
use crate::wiring;

/// How many events `tail` prints by default, like tail(1)'s lines.
const DEFAULT_LAST: i64 = 20;

/// How often `--follow` looks for new events once it has caught up.
const FOLLOW_INTERVAL: Duration = Duration::from_millis(250);

/// Events read per batch.
const BATCH: usize = 500;

pub fn run(command: EventsCommand, env: &Environment) -> ExitCode {
    let EventsCommand::Tail(args) = command;
    let args = &args;
    super::run_offline(&args.config, env, |loaded| async move {
        tail(&loaded, args).await
    })
}

async fn tail(loaded: &Loaded, args: &TailArgs) -> Result<(), String> {
    let mut signals = super::ShutdownSignals::install()?;
    let opened = wiring::open_registry(loaded, wiring::StorageCheck::OpenOnly, None).await?;
    let registry = opened.registry;
    let stop = CancellationToken::new();
    let interrupt = {
        let stop = stop.clone();
        tokio::spawn(async move {
            signals.recv().await;
            stop.cancel();
        })
    };
    let result = match &args.consumer {
        Some(name) => durable(&registry, name, args, &stop).await,
        None => ephemeral(&registry, args, &stop).await,
    };
    interrupt.abort();
    result
}

/// The position to start after, from `--since`.
async fn since(registry: &Registry, since: &str) -> Result<i64, String> {
    if let Ok(position) = since.parse::<i64>() {
        return Ok(position.max(0));
    }
    let ago = humantime::parse_duration(since)
        .map_err(|_| format!("--since {since:?}: a position or a duration such as 1h"))?;
    let at = OffsetDateTime::now_utc().unix_timestamp() - ago.as_secs() as i64;
    registry
        .event_position_before(at)
        .await
        .map_err(|e| format!("reading events: {e}"))
}

async fn ephemeral(
    registry: &Registry,
    args: &TailArgs,
    stop: &CancellationToken,
) -> Result<(), String> {
    let start = match &args.since {
        Some(text) => since(registry, text).await?,
        None => {
            let last = registry
                .last_event_position()
                .await
                .map_err(|e| format!("reading events: {e}"))?;
            (last - DEFAULT_LAST).max(0)
        }
    };
    let printer = Printer {
        output: args.output,
    };
    let mut cursor = EventCursor::after(start);
    while !stop.is_cancelled() {
        let page = registry
            .read_events(&cursor, BATCH)
            .await
            .map_err(|e| format!("reading events: {e}"))?;
        cursor = page.next;
        if !printer.print(&page.events) {
            return Ok(());
        }
        if page.events.len() < BATCH {
            // Caught up (a gap may hold back what follows it, briefly).
            if !args.follow && page.pending.is_empty() {
                return Ok(());
            }
            tokio::select! {
                _ = stop.cancelled() => {}
                _ = tokio::time::sleep(FOLLOW_INTERVAL) => {}
            }
        }
    }
    Ok(())
}

async fn durable(
    registry: &Registry,
    name: &str,
    args: &TailArgs,
    stop: &CancellationToken,
) -> Result<(), String> {
    let start_after = match &args.since {
        Some(text) => since(registry, text).await?,
        None => 0,
    };
    let runner = ConsumerRunner::new(
        registry.clone(),
        name,
        Arc::new(Printer {
            output: args.output,
        }),
        ConsumerOptions {
            batch_size: BATCH,
            poll_interval: FOLLOW_INTERVAL,
            start_after,
            ..ConsumerOptions::default()
        },
    );
    if args.follow {
        runner.run(stop.clone()).await;
        return Ok(());
    }
    // Until caught up, then give the name back to whoever reads next.
    let result = loop {
        match runner.run_once().await {
            Ok(pass) if pass.lease_busy => {
                break Err(format!("consumer {name:?} is being read elsewhere"));
            }
            Ok(pass) if pass.handled == 0 => break Ok(()),
            Ok(_) if stop.is_cancelled() => break Ok(()),
            Ok(_) => {}
            Err(e) => break Err(e.to_string()),
        }
    };
    runner.release().await;
    result
}

/// Prints events to standard output.
struct Printer {
    output: Output,
}

impl Printer {
    /// Prints `events`; `false` once standard output is gone (a closed pipe).
    fn print(&self, events: &[Event]) -> bool {
        let mut out = std::io::stdout().lock();
        for event in events {
            let line = match self.output {
                Output::Json => json(event).to_string(),
                Output::Text => text(event),
            };
            if writeln!(out, "{line}").is_err() {
                return false;
            }
        }
        out.flush().is_ok()
    }
}

#[async_trait::async_trait]
impl EventConsumer for Printer {
    async fn handle(&self, events: &[Event]) -> Result<(), ConsumerError> {
        if self.print(events) {
            Ok(())
        } else {
            Err("standard output is closed".into())
        }
    }
}

fn time_text(at: i64) -> String {
    OffsetDateTime::from_unix_timestamp(at)
        .ok()
        .and_then(|t| t.format(&Rfc3339).ok())
        .unwrap_or_else(|| at.to_string())
}

/// The JSON form, one object per event: the schema scripts read.
fn json(event: &Event) -> serde_json::Value {
    serde_json::json!({
        "position": event.position,
        "at": time_text(event.at),
        "kind": event.kind.as_str(),
        "namespace": event.namespace,
        "repository": event.repository.as_ref().map(|r| r.as_str()),
        "digest": event.digest.as_ref().map(|d| d.as_str()),
        "tag": event.tag.as_ref().map(|t| t.as_str()),
        "actor": {
            "kind": event.actor.kind.as_str(),
            "name": event.actor.name,
            "address": event.actor.address.map(|a| a.to_string()),
        },
        "detail": event.detail,
    })
}

/// The text form: position, time, kind, actor, what changed, detail.
fn text(event: &Event) -> String {
    let mut subject = event
        .repository
        .as_ref()
        .map(|r| r.to_string())
        .or_else(|| event.namespace.clone())
        .unwrap_or_else(|| "-".to_string());
    if let Some(tag) = &event.tag {
        subject.push(':');
        subject.push_str(tag.as_str());
    }
    if let Some(digest) = &event.digest {
        subject.push('@');
        subject.push_str(digest.as_str());
    }
    let detail = match &event.detail {
        serde_json::Value::Object(map) if map.is_empty() => String::new(),
        other => format!(" {other}"),
    };
    format!(
        "{} {} {} {} {}{}",
        event.position,
        time_text(event.at),
        event.kind,
        event.actor,
        subject,
        detail
    )
}
