//! One module per command; [`run`] dispatches the parsed command line.
//!
//! Every command reports its failure once, as one `error: …` line on stderr
//! (never also as a log line), and exits with 2 for an unusable
//! configuration, 1 for any other failure, and 0 on success (`berth gc`
//! adds 3: another process holds the collection lease).
//!
//! Server commands (`serve`, `gc`, `admin`, `events`, `config`) load the
//! configuration and work on the registry's data; client commands, which
//! talk HTTP to a registry, have their modules here too (`login.rs`:
//! login, logout, registry, info; `manage.rs`: namespaces, members, tokens,
//! users; `images.rs`: images and manifests) and share `crate::client`. Their errors are `ClientError`s, whose
//! messages name the cause and the fix, and whose exit status is 2 for
//! misuse and 1 otherwise.

use std::process::ExitCode;

use crate::cli::{Cli, Command, ConfigCommand};
use crate::client::error::ClientError;
use crate::config::{ConfigArgs, Environment, Loaded};

mod admin;
mod advisories;
mod config;
mod events;
mod gc;
mod images;
mod lifecycle;
mod login;
mod manage;
mod replication;
mod serve;
mod va;
mod webhooks;

/// Runs the command and returns the process's exit status.
pub fn run(command: Command, env: &Environment) -> ExitCode {
    match command {
        Command::Serve(args) => serve::run(&args, env),
        Command::Gc(args) => gc::run(&args, env),
        Command::Admin { command } => admin::run(command, env),
        Command::Events { command } => events::run(command, env),
        Command::Advisories { command } => advisories::run(command, env),
        Command::Config {
            command: ConfigCommand::Check(args),
        } => config::check(&args, env),
        Command::Login(args) => client(login::login(args, env)),
        Command::Logout { host } => client(login::logout(host, env)),
        Command::Passwd(args) => client(login::passwd(args, env)),
        Command::Registry { command } => client(login::registry(command, env)),
        Command::Info(args) => client(login::info(args, env)),
        Command::Namespace {
            client: args,
            command,
        } => client(manage::namespace(args, command, env)),
        Command::Image {
            client: args,
            command,
        } => client(images::image(args, command, env)),
        Command::Manifest {
            client: args,
            command,
        } => client(images::manifest(args, command, env)),
        Command::Member {
            client: args,
            command,
        } => client(manage::member(args, command, env)),
        Command::Token {
            client: args,
            command,
        } => client(manage::token(args, command, env)),
        Command::User {
            client: args,
            command,
        } => client(manage::user(args, command, env)),
        Command::Va(args) => client(va::va(args, env)),
        Command::Exemption {
            client: args,
            command,
        } => client(va::exemption(args, command, env)),
        Command::Immutable {
            client: args,
            command,
        } => client(lifecycle::immutable(args, command, env)),
        Command::Retention {
            client: args,
            command,
        } => client(lifecycle::retention(args, command, env)),
        Command::Webhook {
            client: args,
            command,
        } => client(webhooks::webhook(args, command, env)),
        Command::Replication {
            client: args,
            command,
        } => client(replication::replication(args, command, env)),
        Command::Audit {
            client: args,
            since,
            actor,
            namespace,
            action,
            limit,
            export,
        } => client(webhooks::audit(
            args,
            webhooks::AuditFilter {
                since: since.map(Into::into),
                actor,
                namespace,
                action,
                limit,
                export,
            },
            env,
        )),
        Command::Trash {
            client: args,
            command,
        } => client(lifecycle::trash(args, command, env)),
        Command::Quota(args) => client(lifecycle::quota(args, env)),
        Command::Completion { shell } => {
            use clap::CommandFactory;
            clap_complete::generate(shell, &mut Cli::command(), "berth", &mut std::io::stdout());
            ExitCode::SUCCESS
        }
    }
}

/// The exit status of a client command, its error reported once.
fn client(result: Result<(), ClientError>) -> ExitCode {
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("error: {error}");
            ExitCode::from(error.exit_code())
        }
    }
}

/// The exit status of a configuration that cannot be used.
const EXIT_CONFIG: u8 = 2;

/// Loads the configuration, or reports why it cannot be used.
fn load_config(args: &ConfigArgs, env: &Environment) -> Result<Loaded, ExitCode> {
    args.load(env).map_err(|error| {
        eprintln!("error: {error}");
        ExitCode::from(EXIT_CONFIG)
    })
}

/// Runs a command that works on the configured database and storage
/// itself (beside a running server, if any): loads the configuration and
/// prints its warnings, runs `work` on a one-thread runtime, and reports
/// the outcome once.
fn run_offline<F, E>(
    config: &ConfigArgs,
    env: &Environment,
    work: impl FnOnce(Loaded) -> F,
) -> ExitCode
where
    F: std::future::Future<Output = Result<(), E>>,
    E: std::fmt::Display,
{
    let loaded = match load_config(config, env) {
        Ok(loaded) => loaded,
        Err(code) => return code,
    };
    for warning in &loaded.warnings {
        eprintln!("warning: {warning}");
    }
    let runtime = match runtime(false) {
        Ok(runtime) => runtime,
        Err(code) => return code,
    };
    match runtime.block_on(work(loaded)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => fail(error),
    }
}

/// A runtime for a command; `multi_thread` for the server and collection,
/// which serve or stream concurrently, one thread for administration.
fn runtime(multi_thread: bool) -> Result<tokio::runtime::Runtime, ExitCode> {
    let mut builder = if multi_thread {
        tokio::runtime::Builder::new_multi_thread()
    } else {
        tokio::runtime::Builder::new_current_thread()
    };
    builder.enable_all().build().map_err(|error| {
        eprintln!("error: cannot start the async runtime: {error}");
        ExitCode::FAILURE
    })
}

/// Reports a command's failure: once, on stderr.
fn fail(error: impl std::fmt::Display) -> ExitCode {
    eprintln!("error: {error}");
    ExitCode::FAILURE
}

/// SIGINT and SIGTERM, listened for from the moment this is made: a
/// signal that arrives before anyone waits is kept, not lost (and does not
/// kill the process with the default action).
pub struct ShutdownSignals {
    interrupt: tokio::signal::unix::Signal,
    terminate: tokio::signal::unix::Signal,
}

impl ShutdownSignals {
    /// Installs the handlers; call it before telling anyone the process is
    /// ready (`serve` prints its address after this).
    pub fn install() -> Result<ShutdownSignals, String> {
        use tokio::signal::unix::{signal, SignalKind};
        let failed = |e: std::io::Error| format!("cannot install the signal handlers: {e}");
        Ok(ShutdownSignals {
            interrupt: signal(SignalKind::interrupt()).map_err(failed)?,
            terminate: signal(SignalKind::terminate()).map_err(failed)?,
        })
    }

    /// Completes on the next SIGINT or SIGTERM.
    pub async fn recv(&mut self) {
        tokio::select! {
            _ = self.interrupt.recv() => {}
            _ = self.terminate.recv() => {}
        }
    }
}
