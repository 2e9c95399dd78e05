//! Logs: `tracing` to stderr, as text or JSON.
//!
//! Text is coloured only when stderr is a terminal and `NO_COLOR` is unset
//! or empty (<https://no-color.org>): log files, pipes and journald get
//! plain lines, which grep and log shippers read without escape codes.

use std::io::IsTerminal;

use crate::config::values::LogFormat;
use crate::config::{Config, Environment, Loaded};

/// Installs the process's log subscriber.
pub fn init(config: &Config, env: &Environment) {
    let filter = tracing_subscriber::EnvFilter::new(&config.server.log.0);
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    match config.server.log_format {
        LogFormat::Text => builder
            .with_ansi(use_colour(
                std::io::stderr().is_terminal(),
                env.get("NO_COLOR"),
            ))
            .init(),
        LogFormat::Json => builder.json().init(),
    }
}

/// Logs what the configuration's loading noticed but did not refuse.
pub fn report_warnings(loaded: &Loaded) {
    for warning in &loaded.warnings {
        tracing::warn!("{warning}");
    }
}

/// Whether text logs are coloured: on a terminal, unless `NO_COLOR` is set
/// (`Environment::get` already treats an empty variable as unset).
fn use_colour(stderr_is_terminal: bool, no_color: Option<&str>) -> bool {
    stderr_is_terminal && no_color.is_none()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn colour_only_on_a_terminal_without_no_color() {
        let cases = [
            (true, &[][..], true),
            (true, &[("NO_COLOR", "1")][..], false),
            (true, &[("NO_COLOR", "")][..], true),
            (false, &[][..], false),
            (false, &[("NO_COLOR", "1")][..], false),
        ];
        for (terminal, vars, expected) in cases {
            let env = Environment::from_pairs(vars.iter().copied());
            assert_eq!(
                use_colour(terminal, env.get("NO_COLOR")),
                expected,
                "{terminal} {vars:?}"
            );
        }
    }
}
