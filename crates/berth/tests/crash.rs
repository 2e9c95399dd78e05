//! Crashes of the real `berth serve`: SIGKILL while requests are in flight,
//! then a restart on the same data, and what clients find afterwards.

mod support;

use std::io::Write;
use std::net::TcpStream;
use std::path::Path;
use std::time::{Duration, Instant};

use support::http::{request, RequestBody};
use support::TestRegistry;

/// How long a test waits for the server to reach a state it polls for.
const POLL_LIMIT: Duration = Duration::from_secs(20);

/// Upload sessions whose write lease is held, read from the SQLite database
/// of `data_dir` on the side (WAL lets a reader in while the server writes).
async fn leased_uploads(data_dir: &Path) -> i64 {
    use sqlx::ConnectOptions;
    let mut connection = sqlx::sqlite::SqliteConnectOptions::new()
        .filename(data_dir.join("berth.db"))
        .read_only(true)
        .connect()
        .await
        .expect("open the server's database read-only");
    sqlx::query_scalar("SELECT count(*) FROM uploads WHERE lease_holder IS NOT NULL")
        .fetch_one(&mut connection)
        .await
        .expect("count leased uploads")
}

/// Opens an upload session and returns its `Location`.
fn start_session(addr: &str, repository: &str) -> String {
    let r = request(
        addr,
        "POST",
        &format!("/v2/{repository}/blobs/uploads/"),
        &[],
        RequestBody::Empty,
    );
    assert_eq!(r.status, 202, "{}", String::from_utf8_lossy(&r.body));
    r.header("location").expect("a Location").to_string()
}

/// Sends a PATCH announcing `data.len()` bytes but only the first half of
/// them, and returns the connection with the request still in flight.
fn half_sent_patch(addr: &str, location: &str, data: &[u8]) -> TcpStream {
    let mut stream = TcpStream::connect(addr).expect("connect");
    let head = format!(
        "PATCH {location} HTTP/1.1\r\nHost: {addr}\r\nContent-Type: application/octet-stream\r\n\
         Content-Range: 0-{}\r\nContent-Length: {}\r\n\r\n",
        data.len() - 1,
        data.len()
    );
    stream.write_all(head.as_bytes()).expect("send the head");
    stream
        .write_all(&data[..data.len() / 2])
        .expect("send half of the body");
    stream.flush().expect("flush");
    stream
}

/// A chunk was being written when the server was killed: its session's
/// write lease died with the process. After a restart the client resends
/// the chunk and finishes the upload at once. (Each process used to take a
/// new random node name, so the restarted server saw a lease of a stranger
/// and answered 416 "being written by another request" for five minutes.)
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn upload_in_flight_at_sigkill_goes_on_after_restart() {
    if support::is_external_registry() {
        support::record_skip(
            "upload_in_flight_at_sigkill_goes_on_after_restart",
            "kills its own server",
        );
        return;
    }
    let mut registry = TestRegistry::start();
    let data_dir = registry
        .data_dir
        .as_ref()
        .expect("local")
        .path()
        .to_path_buf();
    let data = support::oci::random_bytes(256 * 1024);
    let digest = support::oci::sha256_digest(&data);

    let location = start_session(&registry.addr, "crash/lease");
    let in_flight = half_sent_patch(&registry.addr, &location, &data);
    let deadline = Instant::now() + POLL_LIMIT;
    while leased_uploads(&data_dir).await == 0 {
        assert!(
            Instant::now() < deadline,
            "the server never took the upload's lease"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    registry.kill();
    drop(in_flight);
    registry.restart(&[]);

    let addr = registry.addr.clone();
    let (patch, put, get) = tokio::task::spawn_blocking(move || {
        let range = format!("0-{}", data.len() - 1);
        let patch = request(
            &addr,
            "PATCH",
            &location,
            &[("Content-Range", &range)],
            RequestBody::Bytes(&data),
        );
        let put = request(
            &addr,
            "PUT",
            &format!("{location}?digest={digest}"),
            &[],
            RequestBody::Empty,
        );
        let get = request(
            &addr,
            "GET",
            &format!("/v2/crash/lease/blobs/{digest}"),
            &[],
            RequestBody::Empty,
        );
        (patch, put, get.body == data)
    })
    .await
    .expect("client");
    assert_eq!(
        patch.status,
        202,
        "PATCH after the restart: {}",
        String::from_utf8_lossy(&patch.body)
    );
    assert_eq!(
        put.status,
        201,
        "PUT after the restart: {}",
        String::from_utf8_lossy(&put.body)
    );
    assert!(get, "the blob reads back as sent");
}
