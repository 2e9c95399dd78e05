//! `berth gc`: one garbage-collection pass, its report on stdout.

use std::process::ExitCode;

use berth_registry::GcOptions;
use tokio_util::sync::CancellationToken;

use crate::cli::GcArgs;
use crate::config::Environment;
use crate::{logging, wiring};

/// The exit status when another process holds the collection lease.
const EXIT_LEASE_BUSY: u8 = 3;

pub fn run(args: &GcArgs, env: &Environment) -> ExitCode {
    let loaded = match super::load_config(&args.config, env) {
        Ok(loaded) => loaded,
        Err(code) => return code,
    };
    logging::init(&loaded.config, env);
    logging::report_warnings(&loaded);
    let runtime = match super::runtime(true) {
        Ok(runtime) => runtime,
        Err(code) => return code,
    };
    let result = runtime.block_on(async {
        let mut signals = super::ShutdownSignals::install()?;
        let opened = wiring::open_registry(&loaded, wiring::StorageCheck::OpenOnly, None).await?;
        let cancel = CancellationToken::new();
        let interrupt = {
            let cancel = cancel.clone();
            tokio::spawn(async move {
                signals.recv().await;
                cancel.cancel();
            })
        };
        let options = GcOptions {
            dry_run: args.dry_run,
            sweep_orphans: args.sweep_orphans,
            cancel,
        };
        let report = opened
            .registry
            .collect_garbage(&options)
            .await
            .map_err(|e| format!("garbage collection failed: {e}"));
        interrupt.abort();
        report
    });
    match result {
        Ok(report) => {
            println!("{report}");
            if report.lease_busy {
                ExitCode::from(EXIT_LEASE_BUSY)
            } else {
                ExitCode::SUCCESS
            }
        }
        Err(error) => super::fail(error),
    }
}
