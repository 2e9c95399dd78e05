//! The `berth` binary: the command line, configuration, wiring of concrete
//! backends, background jobs and signals.
//!
//! # Layout
//!
//! - `cli`: the command line (clap), server commands and client commands.
//! - `client`: what the client commands share to talk to a registry
//!   (logins, the token exchange, output).
//! - `commands/`: one module per command (`serve`, `gc`, `admin`, `events`,
//!   `config`); `commands::run` dispatches.
//! - `config/`: every configuration key declared once (`config/keys.rs`),
//!   read from defaults, the TOML file, `BERTH_*` variables and flags; with
//!   `node` (the node's name) it is the package's library (`lib.rs`), so
//!   that the fuzz targets can reach it.
//! - `wiring`: the concrete backends opened, checked at start-up and handed
//!   on as trait objects.
//! - `tasks`: the set of background jobs a server starts and joins.
//! - `upstream`: the HTTP client of other registries (the pull-through
//!   cache's upstreams), which `replication` extends into a replication
//!   remote; `webhooks`: webhook deliveries and the outbound-call checks.
//! - `logging`, `files` (modes of what is kept on disk), `memory`
//!   (allocator settings), `legacy_signing_key` (the key file of older
//!   installs).
//!
//! **Architecture Invariant:** this is the only crate that names concrete
//! backends (`FsBlobStore`, `SqliteMetaStore`, `PostgresMetaStore`,
//! `S3BlobStore`, all in `wiring`) and the only one that installs signal
//! handlers or reads the environment (once, in `main`, into an
//! `Environment` handed down).

use std::process::ExitCode;

use berth::{config, node};
use clap::Parser;

mod advisory_fetch;
mod cli;
mod client;
mod commands;
mod files;
mod legacy_signing_key;
mod limits;
mod logging;
mod memory;
mod replication;
mod tasks;
mod upstream;
mod webhooks;
mod wiring;

fn main() -> ExitCode {
    memory::tune_malloc();
    let cli = cli::Cli::parse();
    let env = config::Environment::from_process();
    commands::run(cli.command, &env)
}
