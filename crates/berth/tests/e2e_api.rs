//! The management API against its own OpenAPI document: schemathesis (from
//! PyPI) reads `/api/v1/openapi.json` from a real `berth serve --auth` and
//! sends requests generated from it, valid and invalid, as an
//! administrator. The run fails on any 5xx, any status the document does
//! not list, any body that does not match its schema, and any invalid input
//! that is accepted.
//!
//! Two of schemathesis's checks are left out, each for a reason:
//! - `positive_data_acceptance` expects every schema-valid request to
//!   succeed, but a valid request may still name a namespace that does not
//!   exist or a token that was revoked;
//! - `ignored_auth` replays successful requests with wrong credentials, and
//!   the login throttle answers a stream of those with 429 by design; every
//!   operation's answer to missing and wrong credentials is checked instead
//!   by the authorization matrix (`crates/server/tests/api_matrix.rs`).
//!
//! The operations that change credentials are left out: `change_own_password`
//! (a wrong current password counts as a failed login, by design, so that a
//! stolen token cannot guess the password through it), `set_user_password`,
//! `update_user` and `delete_user` (the stateful phase feeds them the names
//! `GET /api/v1/users` lists, the fuzzer's own among them). Either way the
//! fuzzer would lock itself out and every later request would be a 401 or
//! 429. Their answers are checked by the authorization matrix and by
//! `api_router.rs` (`disabled_users_lose_every_credential_at_once`,
//! `users_change_their_own_password`, `bad_requests_say_what_was_wrong`).
//!
//! The number of examples per operation is bounded (`BERTH_SCHEMATHESIS_EXAMPLES`,
//! 10 by default) and the seed fixed (`BERTH_SCHEMATHESIS_SEED`), so a run
//! takes a minute or two and a failure replays; set either to explore more.

mod support;

use std::io::Read;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use support::{is_external_registry, record_skip, require_tool, TestRegistry};

const ADMIN: &str = "fuzzer";
const ADMIN_PASSWORD: &str = "fuzzer-password-1";

/// Loaded by the Python that runs schemathesis (as `sitecustomize`, from
/// `PYTHONPATH`). CPython 3.11.7, the Python this machine's PyPI tools run
/// on, has a bug (python/cpython#106905, fixed in 3.11.8): `ast.parse` of a
/// large file can raise `SystemError: AST constructor recursion depth
/// mismatch` depending on how deep the caller's stack is. Hypothesis parses
/// schemathesis's sources that way only to print a lambda's description, and
/// already treats a `SyntaxError` there as "no description"; this turns that
/// one `SystemError` into a `SyntaxError` so that the run goes on. It changes
/// nothing on any other Python, and nothing schemathesis sends or checks.
const PYTHON_3_11_7_AST_FIX: &str = r#"
import sys
if sys.version_info[:3] == (3, 11, 7):
    import ast
    _parse = ast.parse
    def _parse_or_syntax_error(*args, **kwargs):
        try:
            return _parse(*args, **kwargs)
        except SystemError as error:
            if "recursion depth mismatch" in str(error):
                raise SyntaxError(str(error)) from error
            raise
    ast.parse = _parse_or_syntax_error
"#;

/// How long the whole schemathesis run may take before the test fails.
const RUN_DEADLINE: Duration = Duration::from_secs(600);

/// Runs `berth admin ARGS --data-dir DIR`, with `stdin` as its input.
fn admin(registry: &TestRegistry, args: &[&str], stdin: &str) {
    use std::io::Write;
    let dir = registry.data_dir.as_ref().expect("a local registry").path();
    let mut child = Command::new(support::berth_binary())
        .arg("admin")
        .args(args)
        .arg("--data-dir")
        .arg(dir)
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("run berth admin");
    child
        .stdin
        .take()
        .unwrap()
        .write_all(stdin.as_bytes())
        .unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(
        out.status.success(),
        "berth admin {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

#[test]
fn schemathesis_finds_nothing_wrong_with_the_management_api() {
    let test = "e2e_api::schemathesis";
    if is_external_registry() {
        record_skip(test, "needs a local registry it can administer");
        return;
    }
    let Some(schemathesis) = require_tool("schemathesis", test) else {
        return;
    };
    let registry = TestRegistry::start_with(&["--auth"]);
    admin(
        &registry,
        &["user", "create", ADMIN, "--admin", "--password-stdin"],
        ADMIN_PASSWORD,
    );
    // Something for the generated paths to find: the document's example
    // name is `team-a`.
    admin(&registry, &["namespace", "create", "team-a"], "");
    admin(&registry, &["member", "add", "team-a", ADMIN, "owner"], "");

    let examples = std::env::var("BERTH_SCHEMATHESIS_EXAMPLES").unwrap_or_else(|_| "10".into());
    let seed = std::env::var("BERTH_SCHEMATHESIS_SEED").unwrap_or_else(|_| "20261203".into());
    // Its reports and its caches (schemathesis's, hypothesis's) go in a
    // directory of the test's own, not in the source tree it would
    // otherwise run in.
    let work = tempfile::tempdir().unwrap();
    std::fs::write(work.path().join("sitecustomize.py"), PYTHON_3_11_7_AST_FIX).unwrap();
    let mut child = Command::new(schemathesis)
        .current_dir(work.path())
        .env("PYTHONPATH", work.path())
        .arg("run")
        .arg(format!("{}/api/v1/openapi.json", registry.url()))
        .args(["--auth", &format!("{ADMIN}:{ADMIN_PASSWORD}")])
        .args(["--checks", "all"])
        .args(["--exclude-checks", "positive_data_acceptance,ignored_auth"])
        .args([
            "--exclude-operation-id",
            "change_own_password",
            "--exclude-operation-id",
            "set_user_password",
            "--exclude-operation-id",
            "update_user",
            "--exclude-operation-id",
            "delete_user",
        ])
        .args(["--max-examples", &examples])
        .args(["--seed", &seed])
        .args(["--workers", "2"])
        .args(["--request-timeout", "30"])
        .env("NO_COLOR", "1")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start schemathesis");

    // Read its output while it runs, so a full pipe cannot stall it.
    let mut stdout = child.stdout.take().unwrap();
    let reader = std::thread::spawn(move || {
        let mut text = String::new();
        let _ = stdout.read_to_string(&mut text);
        text
    });
    let started = Instant::now();
    let status = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break status;
        }
        if started.elapsed() > RUN_DEADLINE {
            let _ = child.kill();
            let _ = child.wait();
            panic!("schemathesis ran for longer than {RUN_DEADLINE:?}");
        }
        std::thread::sleep(Duration::from_millis(200));
    };
    let output = reader.join().unwrap();
    let mut errors = String::new();
    let _ = child.stderr.take().unwrap().read_to_string(&mut errors);
    assert!(
        status.success(),
        "schemathesis found problems ({status}):\n{output}\n{errors}"
    );
    // A run that tested nothing passes too; make sure every operation of
    // the document was tested.
    let count = |label: &str| {
        output
            .lines()
            .find_map(|line| line.trim().strip_prefix(label))
            .and_then(|rest| rest.split('/').next())
            .and_then(|n| n.trim().parse::<u32>().ok())
            .unwrap_or_else(|| panic!("no {label:?} line in:\n{output}"))
    };
    assert!(count("Selected:") >= 12, "{output}");
    assert_eq!(count("Tested:"), count("Selected:"), "{output}");
    eprintln!("{output}");
}
