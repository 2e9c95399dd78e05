//! The accept loop's limits (issue 11, Medium: no idle, header-to-body or
//! body-read timeouts and no connection cap, so 1,100 idle sockets starved
//! every real client), through raw sockets against `berth_server::run` on
//! port 0. Timeouts are configured small; the tests only assert that a
//! connection is closed within a generous bound, never how fast.

mod support;

use std::net::{IpAddr, SocketAddr};
use std::time::Duration;

use berth_oci::Algorithm;
use berth_server::ServerSettings;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpSocket, TcpStream};

/// How long a test waits for the server to close a connection: far beyond
/// the configured timeouts, so a loaded machine does not fail it.
const BOUND: Duration = Duration::from_secs(20);

struct Server {
    address: SocketAddr,
    _dir: tempfile::TempDir,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    task: tokio::task::JoinHandle<std::io::Result<()>>,
}

impl Server {
    async fn start(settings: ServerSettings) -> Server {
        let (dir, state, listener) = support::listening(settings).await;
        let address = listener.local_addr().unwrap();
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let task = tokio::spawn(berth_server::run(listener, state, async {
            let _ = stopped.await;
        }));
        Server {
            address,
            _dir: dir,
            stop: Some(stop),
            task,
        }
    }

    async fn connect(&self) -> TcpStream {
        TcpStream::connect(self.address).await.unwrap()
    }

    /// A connection from another loopback address (Linux answers all of 127/8).
    async fn connect_from(&self, local: &str) -> TcpStream {
        let socket = TcpSocket::new_v4().unwrap();
        socket
            .bind(SocketAddr::new(local.parse::<IpAddr>().unwrap(), 0))
            .unwrap();
        socket.connect(self.address).await.unwrap()
    }

    async fn stop(mut self) {
        let _ = self.stop.take().unwrap().send(());
        tokio::time::timeout(BOUND, self.task)
            .await
            .expect("the server stops")
            .unwrap()
            .unwrap();
    }
}

/// Reads until the server closes the connection (or resets it), returning
/// what it sent; fails if it stays open for [`BOUND`].
async fn read_until_closed(stream: &mut TcpStream) -> Vec<u8> {
    let mut received = Vec::new();
    let mut buffer = [0u8; 4096];
    loop {
        match tokio::time::timeout(BOUND, stream.read(&mut buffer)).await {
            Err(_) => panic!(
                "still open after {BOUND:?}; received {:?}",
                String::from_utf8_lossy(&received)
            ),
            Ok(Ok(0)) | Ok(Err(_)) => return received,
            Ok(Ok(n)) => received.extend_from_slice(&buffer[..n]),
        }
    }
}

/// Sends one request and reads its answer's head and `Content-Length` body.
async fn exchange(stream: &mut TcpStream, request: &str) -> String {
    stream.write_all(request.as_bytes()).await.unwrap();
    let mut received = Vec::new();
    let mut buffer = [0u8; 4096];
    loop {
        let n = tokio::time::timeout(BOUND, stream.read(&mut buffer))
            .await
            .expect("an answer")
            .unwrap();
        assert!(
            n > 0,
            "closed before answering: {:?}",
            String::from_utf8_lossy(&received)
        );
        received.extend_from_slice(&buffer[..n]);
        let text = String::from_utf8_lossy(&received).into_owned();
        if let Some(end) = text.find("\r\n\r\n") {
            if received.len() >= end + 4 + support::content_length(&text[..end]) {
                return text;
            }
        }
    }
}

const HEALTHZ: &str = "GET /healthz HTTP/1.1\r\nhost: test\r\n\r\n";

fn settings() -> ServerSettings {
    ServerSettings {
        idle_timeout: Duration::from_secs(60),
        header_timeout: Duration::from_secs(60),
        body_timeout: Duration::from_secs(60),
        ..ServerSettings::default()
    }
}

/// A connection that sends nothing, and a kept-alive one after its
/// answer, are closed after `idle_timeout`, although `header_timeout` is
/// long; headers that stop coming are cut off after `header_timeout`,
/// although `idle_timeout` is long.
#[tokio::test]
async fn idle_connections_and_dribbled_headers_are_closed() {
    let idle = Server::start(ServerSettings {
        idle_timeout: Duration::from_millis(300),
        ..settings()
    })
    .await;
    let mut silent = idle.connect().await;
    assert_eq!(read_until_closed(&mut silent).await, b"");
    let mut kept_alive = idle.connect().await;
    let answer = exchange(&mut kept_alive, HEALTHZ).await;
    assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
    let answer = exchange(&mut kept_alive, HEALTHZ).await;
    assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
    assert_eq!(read_until_closed(&mut kept_alive).await, b"");
    idle.stop().await;

    let header = Server::start(ServerSettings {
        header_timeout: Duration::from_millis(300),
        ..settings()
    })
    .await;
    let mut dribbling = header.connect().await;
    dribbling
        .write_all(b"GET /healthz HTTP/1.1\r\nhost: te")
        .await
        .unwrap();
    let answer = read_until_closed(&mut dribbling).await;
    assert!(
        answer.is_empty() || answer.starts_with(b"HTTP/1.1 408"),
        "{:?}",
        String::from_utf8_lossy(&answer)
    );
    header.stop().await;
}

/// A client that stops sending mid-body is cut off after `body_timeout`;
/// one sending slowly but steadily (pauses shorter than the timeout) is not.
#[tokio::test]
async fn a_stalled_body_is_cut_off_and_a_slow_one_is_not() {
    let server = Server::start(ServerSettings {
        body_timeout: Duration::from_millis(400),
        ..settings()
    })
    .await;
    let piece = [b'x'; 16];
    let digest = Algorithm::Sha256.digest_of(&piece.repeat(8));
    let head = format!(
        "POST /v2/test/slow/blobs/uploads/?digest={digest} HTTP/1.1\r\nhost: test\r\n\
         content-type: application/octet-stream\r\ncontent-length: {}\r\n\r\n",
        piece.len() * 8
    );
    let mut slow = server.connect().await;
    slow.write_all(head.as_bytes()).await.unwrap();
    for _ in 0..8 {
        tokio::time::sleep(Duration::from_millis(100)).await;
        slow.write_all(&piece).await.unwrap();
    }
    let answer = exchange(&mut slow, "").await;
    assert!(answer.starts_with("HTTP/1.1 201"), "{answer}");

    let mut stalled = server.connect().await;
    stalled.write_all(head.as_bytes()).await.unwrap();
    stalled.write_all(&piece).await.unwrap();
    let answer = read_until_closed(&mut stalled).await;
    assert!(
        !String::from_utf8_lossy(&answer).starts_with("HTTP/1.1 201"),
        "{:?}",
        String::from_utf8_lossy(&answer)
    );
    server.stop().await;
}

/// One address holding its share of connections gets `503` for more, at
/// once, while another address is served; the total cap holds too.
#[tokio::test]
async fn one_address_cannot_take_every_connection() {
    let server = Server::start(ServerSettings {
        max_connections: 8,
        max_connections_per_address: 3,
        ..settings()
    })
    .await;
    let mut held = Vec::new();
    for _ in 0..3 {
        let mut stream = server.connect_from("127.0.0.5").await;
        let answer = exchange(&mut stream, HEALTHZ).await;
        assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
        held.push(stream);
    }
    let mut refused = server.connect_from("127.0.0.5").await;
    let answer = String::from_utf8_lossy(&read_until_closed(&mut refused).await).into_owned();
    assert!(answer.starts_with("HTTP/1.1 503"), "{answer}");
    assert!(
        answer.to_ascii_lowercase().contains("retry-after: 1"),
        "{answer}"
    );
    let mut other = server.connect_from("127.0.0.6").await;
    let answer = exchange(&mut other, HEALTHZ).await;
    assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
    // Eight in all: three more from a third address and one from a fourth,
    // then the total is reached.
    for from in ["127.0.0.7", "127.0.0.7", "127.0.0.7", "127.0.0.11"] {
        let mut stream = server.connect_from(from).await;
        let answer = exchange(&mut stream, HEALTHZ).await;
        assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
        held.push(stream);
    }
    let mut beyond = server.connect_from("127.0.0.8").await;
    let answer = String::from_utf8_lossy(&read_until_closed(&mut beyond).await).into_owned();
    assert!(answer.starts_with("HTTP/1.1 503"), "{answer}");
    // Closing one frees its slot.
    drop(held.pop());
    let mut after = None;
    for _ in 0..200 {
        let mut stream = server.connect_from("127.0.0.8").await;
        stream.write_all(HEALTHZ.as_bytes()).await.unwrap();
        let mut first = [0u8; 12];
        if tokio::time::timeout(BOUND, stream.read_exact(&mut first))
            .await
            .is_ok_and(|r| r.is_ok())
            && first.starts_with(b"HTTP/1.1 200")
        {
            after = Some(());
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert!(after.is_some(), "a freed slot is used again");
    let metrics = exchange(&mut other, "GET /metrics HTTP/1.1\r\nhost: test\r\n\r\n").await;
    assert!(
        metrics.contains("berth_connections_refused_total{reason=\"address\"} 1"),
        "{metrics}"
    );
    server.stop().await;
}

/// The probe's case: 1,100 idle sockets from one address, and a real
/// client at another address still pushes and pulls.
#[tokio::test]
async fn a_client_pushes_while_1100_idle_sockets_are_open() {
    let server = Server::start(settings()).await;
    let mut idle = Vec::new();
    for _ in 0..1100 {
        idle.push(server.connect_from("127.0.0.9").await);
    }
    let mut client = server.connect_from("127.0.0.10").await;
    let blob = b"a layer";
    let digest = Algorithm::Sha256.digest_of(blob);
    let push = format!(
        "POST /v2/test/busy/blobs/uploads/?digest={digest} HTTP/1.1\r\nhost: test\r\n\
         content-type: application/octet-stream\r\ncontent-length: {}\r\n\r\n{}",
        blob.len(),
        std::str::from_utf8(blob).unwrap()
    );
    let answer = exchange(&mut client, &push).await;
    assert!(answer.starts_with("HTTP/1.1 201"), "{answer}");
    let pull = format!("GET /v2/test/busy/blobs/{digest} HTTP/1.1\r\nhost: test\r\n\r\n");
    let answer = exchange(&mut client, &pull).await;
    assert!(
        answer.starts_with("HTTP/1.1 200") && answer.ends_with("a layer"),
        "{answer}"
    );
    drop(idle);
    server.stop().await;
}
