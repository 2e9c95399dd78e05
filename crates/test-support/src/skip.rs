//! What a test does when something it needs is not installed.
//!
//! Outside CI a missing tool or service is a loud skip: the test returns
//! early, says so on stderr and appends a line to `target/e2e-skipped.txt`,
//! which `scripts/test.sh` prints at the end. Under `CI=true`, where every
//! tool is installed, a missing one fails the test.

use std::path::PathBuf;
use std::process::{Command, Stdio};

use crate::process::which;

/// Whether the tests run in CI, where every tool and service is installed.
pub fn in_ci() -> bool {
    std::env::var("CI")
        .map(|value| value == "true" || value == "1")
        .unwrap_or(false)
}

/// Records a skipped test in `target/e2e-skipped.txt` and on stderr.
pub fn record_skip(test: &str, why: &str) {
    eprintln!("\n*** SKIPPED {test}: {why} ***\n");
    let path = crate::target_dir().join("e2e-skipped.txt");
    if let Ok(mut file) = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(path)
    {
        use std::io::Write;
        let _ = writeln!(file, "{test}: {why}");
    }
}

/// Reports a missing tool: outside CI, records a loud skip and returns;
/// under `CI=true`, fails the test.
pub fn tool_missing(tool: &str, test: &str) {
    if in_ci() {
        panic!(
            "{test}: required tool {tool:?} is not installed (CI=true: missing tools are failures)"
        );
    }
    record_skip(test, &format!("{tool} is not installed"));
}

/// Finds a tool on `PATH`; `None` (after [`tool_missing`]) when it is absent.
pub fn require_tool(tool: &str, test: &str) -> Option<PathBuf> {
    if let Some(path) = which(tool) {
        return Some(path);
    }
    tool_missing(tool, test);
    None
}

/// Finds `python3` with `module` importable, like [`require_tool`].
pub fn require_python_module(module: &str, test: &str) -> Option<PathBuf> {
    let python = require_tool("python3", test)?;
    let importable = Command::new(&python)
        .arg("-c")
        .arg(format!("import {module}"))
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .map(|status| status.success())
        .unwrap_or(false);
    if importable {
        return Some(python);
    }
    tool_missing(
        &format!("python module {module} (pip install {module})"),
        test,
    );
    None
}
