//! A throw-away PostgreSQL cluster for tests, and one new database per test.
//!
//! One cluster serves every test of a test binary that runs at the same
//! time: starting a server costs a few hundred milliseconds, while a database
//! is created in tens, so tests share the server but never a database and
//! stay isolated while running in parallel. The cluster lives in a temporary
//! directory, listens on a free loopback port and a socket in that directory,
//! and runs with `fsync=off`, since its data dies with the test run anyway.
//!
//! Each test holds a [`ClusterLease`] for as long as it uses its database;
//! when the last lease is dropped the cluster is stopped and its directory
//! removed, and the next test to ask starts a new one. Rust never runs
//! destructors of statics, so counting leases, rather than keeping the
//! cluster in a static until exit, is what guarantees that no `postgres`
//! process outlives `cargo test`, even when tests fail (a panicking test still
//! drops its lease while unwinding).
//!
//! PostgreSQL refuses to run as root, so as root the server binaries run as
//! the `postgres` user (through `runuser`), in a directory handed to it.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, OnceLock};

use sqlx::{Connection, Executor, PgConnection};
use tempfile::TempDir;

use crate::process::{free_port, is_root};
use crate::skip::tool_missing;

/// The operating-system user that runs the server when the tests run as root.
const SERVER_USER: &str = "postgres";

/// How many times to try starting the server, each on a newly chosen port: a
/// free port found by binding port 0 may be taken by someone else before the
/// server binds it.
const START_ATTEMPTS: usize = 5;

/// A database of its own for one test, on the shared cluster.
pub struct TestDatabase {
    /// The URL a PostgreSQL client (Berth's `PostgresMetaStore::connect`) takes.
    pub url: String,
    /// The database's name, for tests that open their own connections.
    pub name: String,
    /// Keeps the cluster running while the test uses the database.
    pub lease: ClusterLease,
}

impl TestDatabase {
    /// Makes every commit in this database wait until its WAL is written
    /// (`synchronous_commit = on`, for sessions opened from now on). The
    /// cluster's default, off, acknowledges commits that a server killed
    /// within the next few hundred milliseconds loses; a test that kills
    /// the server ([`ClusterLease::kill_server`]) and expects what Berth
    /// acknowledged to survive needs this.
    pub async fn commit_durably(&self) {
        let mut admin = PgConnection::connect(&self.lease.cluster.url("postgres"))
            .await
            .expect("connecting to the test cluster's maintenance database");
        admin
            .execute(format!("ALTER DATABASE {} SET synchronous_commit = on", self.name).as_str())
            .await
            .expect("turning synchronous commits on");
        admin.close().await.ok();
    }
}

/// Creates a new, empty database on the shared cluster, starting the cluster
/// if no other test is using it. Returns `None`, having recorded a skip, when
/// PostgreSQL is not installed outside CI.
pub async fn fresh_database(test: &str) -> Option<TestDatabase> {
    /// Numbers databases uniquely within the process, which owns the cluster.
    static NEXT_DATABASE: AtomicUsize = AtomicUsize::new(0);
    let lease = ClusterLease::acquire(test)?;
    let name = format!(
        "berth_test_{}",
        NEXT_DATABASE.fetch_add(1, Ordering::Relaxed)
    );
    let mut admin = PgConnection::connect(&lease.cluster.url("postgres"))
        .await
        .expect("connecting to the test cluster's maintenance database");
    admin
        .execute(format!("CREATE DATABASE {name}").as_str())
        .await
        .expect("creating a test database");
    admin.close().await.ok();
    Some(TestDatabase {
        url: lease.cluster.url(&name),
        name,
        lease,
    })
}

/// A share in the running cluster; the last one dropped stops it.
pub struct ClusterLease {
    cluster: Arc<Cluster>,
}

/// The process-wide cluster and how many leases are out on it.
struct Shared {
    cluster: Option<Arc<Cluster>>,
    leases: usize,
}

static SHARED: Mutex<Shared> = Mutex::new(Shared {
    cluster: None,
    leases: 0,
});

/// Locks [`SHARED`], ignoring poisoning: a test that panicked while holding
/// the lock left the counts consistent (they change only after the fallible
/// start), and the other tests must still be able to stop the cluster.
fn shared() -> MutexGuard<'static, Shared> {
    SHARED
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

impl ClusterLease {
    /// Returns a lease on the running cluster, starting one if needed, or
    /// `None` (skip recorded) if PostgreSQL is not installed.
    pub fn acquire(test: &str) -> Option<ClusterLease> {
        let Some(bin) = server_binaries() else {
            tool_missing("PostgreSQL server (initdb, pg_ctl)", test);
            return None;
        };
        // Held while starting, so tests arriving meanwhile wait for this
        // cluster instead of starting their own.
        let mut shared = shared();
        let cluster = match &shared.cluster {
            Some(cluster) => Arc::clone(cluster),
            None => {
                let cluster = Arc::new(Cluster::start(bin));
                shared.cluster = Some(Arc::clone(&cluster));
                cluster
            }
        };
        shared.leases += 1;
        Some(ClusterLease { cluster })
    }

    /// The cluster's TCP port on 127.0.0.1.
    pub fn port(&self) -> u16 {
        self.cluster.port
    }

    /// A URL for another database on the same cluster.
    pub fn url(&self, database: &str) -> String {
        self.cluster.url(database)
    }
}

impl Drop for ClusterLease {
    fn drop(&mut self) {
        let mut shared = shared();
        shared.leases -= 1;
        if shared.leases == 0 {
            // Dropping the last reference stops the server (see `Cluster`'s
            // `Drop`); this lease still holds one, so take the shared one
            // first and let ours go when this function returns.
            shared.cluster = None;
        }
    }
}

/// A running server in a temporary directory.
struct Cluster {
    /// The directory holding the data directory, the socket and the log;
    /// removed (after the server stops) when the cluster is dropped.
    dir: TempDir,
    /// Where `initdb`, `pg_ctl` and `postgres` are.
    bin: PathBuf,
    port: u16,
}

impl Cluster {
    fn start(bin: PathBuf) -> Cluster {
        let started = std::time::Instant::now();
        let dir = server_directory();
        let data = dir.path().join("data");
        run(Command::new("cp").arg("-a").arg(template(&bin)).arg(&data));
        let log = dir.path().join("server.log");
        for attempt in 1..=START_ATTEMPTS {
            let port = free_port();
            let output = pg_ctl_start(&bin, dir.path(), port);
            if output.status.success() {
                // Shown with `--nocapture`, to see how often a run restarts it.
                eprintln!(
                    "test cluster started on 127.0.0.1:{port} in {} ({:?})",
                    dir.path().display(),
                    started.elapsed()
                );
                return Cluster { dir, bin, port };
            }
            if attempt == START_ATTEMPTS {
                let log = std::fs::read_to_string(&log).unwrap_or_default();
                panic!(
                    "the test cluster did not start: {}\n{log}",
                    describe(&output)
                );
            }
        }
        unreachable!("every failed attempt either retries or panics");
    }

    fn url(&self, database: &str) -> String {
        format!("postgres://postgres@127.0.0.1:{}/{database}", self.port)
    }
}

/// Starts the server of the cluster in `dir` on `port` and waits for it.
fn pg_ctl_start(bin: &Path, dir: &Path, port: u16) -> Output {
    let options = format!(
        "-c listen_addresses=127.0.0.1 -c port={port} -c unix_socket_directories={} \
         -c fsync=off -c synchronous_commit=off -c full_page_writes=off \
         -c max_connections=200",
        dir.display()
    );
    server_command(bin, "pg_ctl", dir)
        .arg("start")
        .arg("--pgdata")
        .arg(dir.join("data"))
        .arg("--log")
        .arg(dir.join("server.log"))
        .arg("--wait")
        .arg("--options")
        .arg(options)
        .output()
        .expect("running pg_ctl start")
}

impl ClusterLease {
    /// Kills the server the way a crash would (`pg_ctl stop -m immediate`:
    /// no checkpoint, every connection dropped; the next start recovers).
    /// Only for a test binary whose other tests do not use the cluster.
    pub fn kill_server(&self) {
        run(
            server_command(&self.cluster.bin, "pg_ctl", self.cluster.dir.path())
                .arg("stop")
                .arg("--pgdata")
                .arg(self.cluster.dir.path().join("data"))
                .args(["--mode", "immediate", "--wait"]),
        );
    }

    /// Starts the server again after [`ClusterLease::kill_server`], on the
    /// same port.
    pub fn restart_server(&self) {
        let output = pg_ctl_start(
            &self.cluster.bin,
            self.cluster.dir.path(),
            self.cluster.port,
        );
        assert!(
            output.status.success(),
            "restarting the test cluster: {}",
            describe(&output)
        );
    }
}

impl Drop for Cluster {
    fn drop(&mut self) {
        // Immediate mode kills the server without a shutdown checkpoint: the
        // data is about to be deleted, and this runs once per test run.
        let status = server_command(&self.bin, "pg_ctl", self.dir.path())
            .arg("stop")
            .arg("--pgdata")
            .arg(self.dir.path().join("data"))
            .args(["--mode", "immediate", "--wait"])
            .output();
        if !matches!(&status, Ok(output) if output.status.success()) {
            eprintln!("stopping the test cluster failed: {status:?}");
        }
    }
}

/// Bumped whenever the `initdb` options below change, so that templates made
/// with the old options are not reused.
const TEMPLATE_FORMAT: u32 = 1;

/// Returns a freshly initialised data directory that every cluster starts as
/// a copy of. It is made once per machine, server version and
/// [`TEMPLATE_FORMAT`], under `target/tmp` (cargo's scratch directory for
/// integration tests),
/// because `initdb` takes one to two seconds and a copy a few tens of
/// milliseconds, and a run with `--test-threads=1` starts a cluster per test.
fn template(bin: &Path) -> PathBuf {
    static TEMPLATE: OnceLock<PathBuf> = OnceLock::new();
    TEMPLATE
        .get_or_init(|| {
            // Debian links the binaries onto PATH; the real directory names
            // the major version.
            let real = std::fs::canonicalize(bin.join("initdb"))
                .ok()
                .and_then(|initdb| initdb.parent().map(Path::to_path_buf))
                .unwrap_or_else(|| bin.to_path_buf());
            let version: String = real
                .display()
                .to_string()
                .chars()
                .map(|c| if c.is_ascii_alphanumeric() { c } else { '_' })
                .collect();
            let name = format!("postgres-template-{TEMPLATE_FORMAT}-{version}");
            let scratch_root = crate::target_dir().join("tmp");
            let template = scratch_root.join(name);
            if template.join("PG_VERSION").is_file() {
                return template;
            }
            // initdb runs in a directory the server user owns, and the result
            // is moved into place in one rename, so a template that exists is
            // complete even when several test binaries make one at once.
            let scratch = server_directory();
            let data = scratch.path().join("data");
            // An ICU locale makes the cluster's default collation linguistic
            // ('a' sorts before 'B'), as on many production servers, so that
            // the suite's byte-order tests prove the schema's COLLATE "C".
            run(server_command(bin, "initdb", scratch.path())
                .arg("--pgdata")
                .arg(&data)
                .args(["--username", "postgres", "--auth", "trust"])
                .args(["--encoding", "UTF8", "--locale", "C.UTF-8"])
                .args(["--locale-provider", "icu", "--icu-locale", "en"])
                .arg("--no-sync"));
            std::fs::create_dir_all(&scratch_root).expect("creating the scratch directory");
            let staging = template.with_extension(format!("partial-{}", std::process::id()));
            run(Command::new("cp").arg("-a").arg(&data).arg(&staging));
            if std::fs::rename(&staging, &template).is_err() {
                // Another test binary put its template in place first.
                std::fs::remove_dir_all(&staging).expect("removing a spare template");
            }
            template
        })
        .clone()
}

/// A new temporary directory the server user may write in.
fn server_directory() -> TempDir {
    let dir = tempfile::Builder::new()
        .prefix("berth-pg-")
        .tempdir()
        .expect("a temporary directory for the test cluster");
    if is_root() {
        run(Command::new("chown")
            .arg(format!("{SERVER_USER}:"))
            .arg(dir.path()));
    }
    dir
}

/// Finds the directory holding `initdb` and `pg_ctl`: on `PATH`, or where
/// Debian installs them (`/usr/lib/postgresql/<version>/bin`, the newest).
fn server_binaries() -> Option<PathBuf> {
    let has_both = |dir: &Path| dir.join("initdb").is_file() && dir.join("pg_ctl").is_file();
    if let Some(path) = std::env::var_os("PATH") {
        if let Some(dir) = std::env::split_paths(&path).find(|dir| has_both(dir)) {
            return Some(dir);
        }
    }
    let mut versions: Vec<(u32, PathBuf)> = std::fs::read_dir("/usr/lib/postgresql")
        .ok()?
        .filter_map(|entry| {
            let entry = entry.ok()?;
            let version = entry.file_name().to_str()?.parse::<u32>().ok()?;
            let bin = entry.path().join("bin");
            has_both(&bin).then_some((version, bin))
        })
        .collect();
    versions.sort();
    versions.pop().map(|(_, bin)| bin)
}

/// A command running one of the server binaries, as the server user if the
/// tests run as root, from `dir` (which that user can enter).
fn server_command(bin: &Path, program: &str, dir: &Path) -> Command {
    let program = bin.join(program);
    let mut command = if is_root() {
        let mut command = Command::new("runuser");
        command.args(["-u", SERVER_USER, "--"]).arg(program);
        command
    } else {
        Command::new(program)
    };
    command.current_dir(dir);
    command
}

/// Runs a set-up command, panicking with its output if it fails.
fn run(command: &mut Command) -> Output {
    let output = command
        .output()
        .unwrap_or_else(|error| panic!("running {command:?}: {error}"));
    assert!(
        output.status.success(),
        "{command:?} failed: {}",
        describe(&output)
    );
    output
}

fn describe(output: &Output) -> String {
    format!(
        "{}\nstdout:\n{}\nstderr:\n{}",
        output.status,
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    )
}
