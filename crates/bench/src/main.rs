//! `berth-bench`: measures any OCI registry over HTTP with the scenarios of
//! issue 7, and the machine's own limits, printing one `name: value unit`
//! line per figure.
//!
//! # Layout
//!
//! - `client`: one keep-alive HTTP/1.1 connection per worker, on hyper.
//! - `content`: seeded pseudo-random blobs and small OCI images.
//! - `registry`: the Distribution API calls, done the way real clients do.
//! - `rate`: the closed-loop request-rate generator with HDR histograms.
//! - `scenarios`: setup and measurement of each scenario.
//! - `procfs`: CPU and memory of the server and of the benchmark itself.
//! - `hardware`: sha256, loopback TCP and fsync'd disk limits (`hw`).
//! - `compare`: medians and ratios of several rounds (`compare`).
//!
//! The tool never depends on a Berth crate: it must measure Berth and CNCF
//! Distribution through exactly the same code.

mod client;
mod compare;
mod content;
mod hardware;
mod procfs;
mod rate;
mod registry;
mod scenarios;

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use clap::{Args, Parser, Subcommand};

use crate::client::Target;
use crate::procfs::Process;
use crate::scenarios::{Context, Report, Scenario, Sizes};

#[derive(Parser)]
#[command(
    name = "berth-bench",
    about = "Benchmarks an OCI registry, or this machine's limits (`hw`)."
)]
#[command(args_conflicts_with_subcommands = true)]
struct Cli {
    #[command(subcommand)]
    command: Option<Command>,
    #[command(flatten)]
    run: RunArgs,
}

#[derive(Subcommand)]
enum Command {
    /// Measures the machine: sha256 on one core, loopback TCP, fsync'd disk writes.
    Hw(HardwareArgs),
    /// Prints medians and ratios of two files of figures (as bench/run.sh does).
    Compare(CompareArgs),
}

#[derive(Args)]
struct RunArgs {
    /// The registry, as `http://HOST:PORT`. Repeat it for several nodes of
    /// one registry: setup goes through the first, clients round-robin.
    #[arg(long = "url", value_name = "URL")]
    urls: Vec<String>,
    /// A scenario to run (repeatable); all of them when absent.
    #[arg(long = "scenario", value_name = "NAME", value_parser = Scenario::parse)]
    scenarios: Vec<Scenario>,
    /// Tiny sizes and 1 s durations: checks that everything works, measures nothing.
    #[arg(long)]
    quick: bool,
    /// The registry's process id, to report its CPU seconds and peak RSS per
    /// scenario. Repeat it for several nodes: CPU is summed, RSS is the largest
    /// node's, and each node's own figures follow as `.node1`, `.node2`, ...
    #[arg(long = "pid", value_name = "PID")]
    pids: Vec<u32>,
    /// A service the registry depends on, as `NAME=PID` (repeatable): the CPU
    /// seconds of that process and its descendants are reported per scenario
    /// as `SCENARIO.NAME_cpu`, e.g. `--watch postgres=PID` for the database.
    #[arg(long = "watch", value_name = "NAME=PID", value_parser = parse_watch)]
    watched: Vec<(String, u32)>,
    /// Connections of the request-rate scenarios (default 64, or 8 with --quick).
    #[arg(long)]
    connections: Option<usize>,
    /// Clients of `push_small`, each pushing one image at a time (default 16,
    /// or 4 with --quick). Fewer clients than cores leave the server room,
    /// so that its per-image latency shows what else it is doing.
    #[arg(long)]
    push_clients: Option<usize>,
    /// Seconds each request-rate scenario runs (default 10, or 1 with --quick).
    #[arg(long)]
    duration: Option<f64>,
    /// Threads of the load generator (default: one per CPU).
    #[arg(long)]
    threads: Option<usize>,
    /// Also measure the machine (as `hw`) before the scenarios.
    #[arg(long)]
    hardware: bool,
    /// Where `--hardware` measures disk writes.
    #[arg(long, default_value_os_t = std::env::temp_dir())]
    dir: PathBuf,
}

#[derive(Args)]
struct HardwareArgs {
    /// The directory whose disk is measured (use the registry's data directory).
    #[arg(long, default_value_os_t = std::env::temp_dir())]
    dir: PathBuf,
    /// Smaller sizes, for a fast check.
    #[arg(long)]
    quick: bool,
}

#[derive(Args)]
struct CompareArgs {
    /// Figures of the reference registry (the denominator of the ratio).
    a: PathBuf,
    /// Figures of the registry being compared (the numerator).
    b: PathBuf,
    #[arg(long, default_value = "Distribution")]
    a_label: String,
    #[arg(long, default_value = "Berth")]
    b_label: String,
    /// Figures of `berth-bench hw` runs, summarized in a second table.
    #[arg(long)]
    hardware: Option<PathBuf>,
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let outcome = match cli.command {
        Some(Command::Hw(args)) => hardware::run(&args.dir, args.quick),
        Some(Command::Compare(args)) => compare::run(
            &args.a,
            &args.a_label,
            &args.b,
            &args.b_label,
            args.hardware.as_deref(),
        ),
        None => run_scenarios(cli.run),
    };
    match outcome {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("error: {error}");
            ExitCode::FAILURE
        }
    }
}

fn run_scenarios(args: RunArgs) -> client::Result<()> {
    if args.urls.is_empty() {
        return Err("--url is required (or use the `hw` or `compare` subcommand)".into());
    }
    if args.hardware {
        hardware::run(&args.dir, args.quick)?;
    }
    let mut runtime = tokio::runtime::Builder::new_multi_thread();
    if let Some(threads) = args.threads {
        runtime.worker_threads(threads.max(1));
    }
    let runtime = runtime.enable_all().build()?;
    runtime.block_on(async {
        let mut sizes = if args.quick {
            Sizes::quick()
        } else {
            Sizes::full()
        };
        if let Some(connections) = args.connections {
            sizes.rate_connections = connections.max(1);
        }
        if let Some(clients) = args.push_clients {
            sizes.small_parallel = clients.max(1);
        }
        if let Some(seconds) = args.duration {
            sizes.rate_duration = Duration::from_secs_f64(seconds.max(0.01));
        }
        let mut targets = Vec::with_capacity(args.urls.len());
        for url in &args.urls {
            targets.push(Target::from_url(url).await?);
        }
        let context = Context {
            targets,
            sizes,
            nonce: run_nonce(),
            servers: args.pids.iter().copied().map(Process::Pid).collect(),
            watched: args.watched,
            load_threads: args.threads.unwrap_or_else(hardware::available_threads),
        };
        let scenarios = if args.scenarios.is_empty() {
            Scenario::ALL.to_vec()
        } else {
            args.scenarios
        };
        let mut report = Report::default();
        let mut failed = Vec::new();
        // A failing scenario does not stop the others: the figures of the
        // rest are still worth having, and the exit status reports the failure.
        for scenario in scenarios {
            if let Err(error) = scenarios::run(&context, scenario, &mut report).await {
                eprintln!("error: {}: {error}", scenario.name());
                failed.push(scenario.name());
            }
        }
        report_vmhwm(&context.servers, &mut report);
        if failed.is_empty() {
            Ok(())
        } else {
            Err(format!("failed scenarios: {}", failed.join(", ")).into())
        }
    })
}

/// Parses `--watch NAME=PID`. The name becomes part of figure names, so it is
/// kept to characters that `compare` and shell tools read as one word.
fn parse_watch(value: &str) -> Result<(String, u32), String> {
    let (name, pid) = value
        .split_once('=')
        .ok_or_else(|| format!("expected NAME=PID, got {value:?}"))?;
    let valid_name = !name.is_empty()
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-');
    if !valid_name {
        return Err(format!("{name:?}: a name of letters, digits, '_' or '-'"));
    }
    let pid = pid
        .parse()
        .map_err(|_| format!("{pid:?} is not a process id"))?;
    Ok((name.to_string(), pid))
}

/// Reports `server_vmhwm`, the peak RSS since start of the largest node, and
/// with several nodes each node's as `server_vmhwm.node1`, ...
fn report_vmhwm(servers: &[Process], report: &mut Report) {
    let peaks: Vec<Option<f64>> = servers
        .iter()
        .map(|process| {
            process
                .status_bytes("VmHWM")
                .ok()
                .map(|hwm| hwm as f64 / 1_000_000.0)
        })
        .collect();
    if let Some(largest) = peaks.iter().flatten().copied().reduce(f64::max) {
        report.figure("server_vmhwm", largest, "MB");
    }
    if peaks.len() > 1 {
        for (index, peak) in peaks.iter().enumerate() {
            if let Some(peak) = peak {
                report.figure(&format!("server_vmhwm.node{}", index + 1), *peak, "MB");
            }
        }
    }
}

/// Differs on every run (time and process id), so measured pushes never
/// repeat content an earlier run already stored.
fn run_nonce() -> u64 {
    let nanos = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_nanos() as u64)
        .unwrap_or(0);
    nanos ^ (u64::from(std::process::id()) << 32)
}
