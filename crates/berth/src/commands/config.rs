//! `berth config check`: validates the configuration as `berth serve`
//! would and prints every key, its value and where the value came from.

use std::process::ExitCode;

use crate::config::{reference, ConfigArgs, Environment};

pub fn check(args: &ConfigArgs, env: &Environment) -> ExitCode {
    let loaded = match super::load_config(args, env) {
        Ok(loaded) => loaded,
        Err(code) => return code,
    };
    for warning in &loaded.warnings {
        eprintln!("warning: {warning}");
    }
    // What only `serve` refuses is reported here too, since this is how an
    // operator checks a configuration before starting a server with it.
    if let Some(problem) = loaded.config.exposure_problem() {
        eprintln!("error: berth serve would refuse to start: {problem}");
        print!("{}", reference::check_listing(&loaded));
        return ExitCode::from(super::EXIT_CONFIG);
    }
    println!("# configuration is valid");
    print!("{}", reference::check_listing(&loaded));
    ExitCode::SUCCESS
}
