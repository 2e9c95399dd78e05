//! Blob GETs sent from the file by `sendfile` (issue 11), through real
//! sockets against `berth_server::run` on port 0 with a filesystem store:
//! every byte arrives, in order, for whole blobs and ranges of every size
//! around the store's and the placeholders' windows, for responses
//! pipelined on one connection with other answers between them, and over
//! HTTP/2, which must not take the path.

mod support;

use std::net::SocketAddr;

use berth_oci::Algorithm;
use berth_server::ServerSettings;
use tokio::io::{AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::TcpStream;

struct Server {
    address: SocketAddr,
    _dir: tempfile::TempDir,
}

impl Server {
    async fn start() -> Server {
        Server::start_with(ServerSettings::default()).await
    }

    async fn start_with(settings: ServerSettings) -> Server {
        let (dir, state, listener) = support::listening(settings).await;
        let address = listener.local_addr().unwrap();
        tokio::spawn(berth_server::run(listener, state, std::future::pending()));
        Server { address, _dir: dir }
    }

    async fn connect(&self) -> BufReader<TcpStream> {
        BufReader::new(TcpStream::connect(self.address).await.unwrap())
    }

    /// Stores `data` as a blob of `team/app` by a monolithic upload.
    async fn push(&self, data: &[u8]) -> String {
        let digest = Algorithm::Sha256.digest_of(data).to_string();
        let mut connection = self.connect().await;
        let head = format!(
            "POST /v2/team/app/blobs/uploads/?digest={digest} HTTP/1.1\r\nHost: x\r\n\
             Content-Type: application/octet-stream\r\nContent-Length: {}\r\n\r\n",
            data.len()
        );
        connection
            .get_mut()
            .write_all(head.as_bytes())
            .await
            .unwrap();
        connection.get_mut().write_all(data).await.unwrap();
        let (status, _, _) = read_response(&mut connection).await;
        assert_eq!(status, 201, "pushing {} bytes", data.len());
        digest
    }
}

/// Reads one response: its status, its head, and its `Content-Length` body.
async fn read_response(connection: &mut BufReader<TcpStream>) -> (u16, String, Vec<u8>) {
    let head = support::read_head(connection).await;
    let status = head[9..12].parse().unwrap();
    let mut body = vec![0u8; support::content_length(&head)];
    connection.read_exact(&mut body).await.unwrap();
    (status, head, body)
}

/// Sends `GET path` with `headers` (each ending in CRLF) and reads the
/// answer: its status and body.
async fn get(connection: &mut BufReader<TcpStream>, path: &str, headers: &str) -> (u16, Vec<u8>) {
    let request = format!("GET {path} HTTP/1.1\r\nHost: x\r\n{headers}\r\n");
    connection
        .get_mut()
        .write_all(request.as_bytes())
        .await
        .unwrap();
    let (status, _, body) = read_response(connection).await;
    (status, body)
}

const MIB: usize = 1024 * 1024;

#[tokio::test]
async fn whole_blobs_and_ranges_arrive_intact_and_are_sent_from_their_files() {
    let server = Server::start().await;
    let sizes = [
        64 * 1024 - 1,
        64 * 1024,
        MIB + 3,
        4 * MIB,
        4 * MIB + 1,
        9 * MIB + 7,
    ];
    let mut blobs = Vec::new();
    for (seed, size) in sizes.into_iter().enumerate() {
        let data = support::pattern(seed as u32 + 1, size);
        let digest = server.push(&data).await;
        blobs.push((data, digest));
    }
    let before = berth_server::sendfile::bytes_sent();
    let mut connection = server.connect().await;
    let mut expected_sent = 0;
    for (data, digest) in &blobs {
        let (status, body) =
            get(&mut connection, &format!("/v2/team/app/blobs/{digest}"), "").await;
        assert_eq!(status, 200);
        assert!(
            body == *data,
            "the blob of {} bytes came back changed",
            data.len()
        );
        if data.len() >= 64 * 1024 {
            expected_sent += data.len() as u64;
        }
    }
    // Ranges of the largest blob: crossing a placeholder's window, at its
    // end, and the last byte.
    let (data, digest) = blobs.last().unwrap();
    for (start, end) in [
        (5_000_000, 9_000_000),
        (4 * MIB - 1, 8 * MIB + 1),
        (0, 70_000),
        (data.len() - 70_000, data.len()),
    ] {
        let range = format!("Range: bytes={start}-{}\r\n", end - 1);
        let (status, body) = get(
            &mut connection,
            &format!("/v2/team/app/blobs/{digest}"),
            &range,
        )
        .await;
        assert_eq!(status, 206, "range {start}..{end}");
        assert!(
            body == data[start..end],
            "range {start}..{end} came back changed"
        );
        expected_sent += (end - start) as u64;
    }
    // Other tests in this process may send too, so only a lower bound.
    let sent = berth_server::sendfile::bytes_sent() - before;
    assert!(
        sent >= expected_sent,
        "sendfile sent {sent} bytes, fewer than the {expected_sent} of the large reads"
    );
}

#[tokio::test]
async fn pipelined_responses_keep_their_order_with_other_answers_between() {
    let server = Server::start().await;
    let large = support::pattern(7, 5 * MIB + 11);
    let other = support::pattern(8, 2 * MIB + 5);
    let small = support::pattern(9, 1000);
    let (large_digest, other_digest, small_digest) = (
        server.push(&large).await,
        server.push(&other).await,
        server.push(&small).await,
    );
    let missing = Algorithm::Sha256.digest_of(b"never pushed");
    let mut connection = server.connect().await;
    // All requests in one write: hyper reads the next only after the
    // previous answer, so the bodies' regions queue one response at a time.
    let mut requests = String::new();
    for path in [
        format!("/v2/team/app/blobs/{large_digest}"),
        format!("/v2/team/app/blobs/{missing}"),
        format!("/v2/team/app/blobs/{small_digest}"),
        format!("/v2/team/app/blobs/{other_digest}"),
        "/v2/".to_string(),
        format!("/v2/team/app/blobs/{large_digest}"),
    ] {
        requests.push_str(&format!("GET {path} HTTP/1.1\r\nHost: x\r\n\r\n"));
    }
    connection
        .get_mut()
        .write_all(requests.as_bytes())
        .await
        .unwrap();
    let expected: [(u16, Option<&[u8]>); 6] = [
        (200, Some(&large)),
        (404, None),
        (200, Some(&small)),
        (200, Some(&other)),
        (200, None),
        (200, Some(&large)),
    ];
    for (i, (status, body)) in expected.into_iter().enumerate() {
        let (got, head, received) = read_response(&mut connection).await;
        assert_eq!(got, status, "answer {i}: {head}");
        if let Some(body) = body {
            assert!(received == body, "answer {i} came back changed");
        }
    }
    // A HEAD has no body to send and leaves nothing queued behind.
    let request = format!(
        "HEAD /v2/team/app/blobs/{large_digest} HTTP/1.1\r\nHost: x\r\n\r\n\
         GET /v2/team/app/blobs/{other_digest} HTTP/1.1\r\nHost: x\r\n\r\n"
    );
    connection
        .get_mut()
        .write_all(request.as_bytes())
        .await
        .unwrap();
    let head = support::read_head(&mut connection).await;
    assert!(head.starts_with("HTTP/1.1 200"), "{head}");
    let (status, _, received) = read_response(&mut connection).await;
    assert_eq!(status, 200);
    assert!(received == other, "the GET after a HEAD came back changed");
}

#[tokio::test]
async fn http2_gets_the_stream_not_the_file() {
    use http_body_util::BodyExt;
    let server = Server::start().await;
    let data = support::pattern(11, 3 * MIB + 1);
    let digest = server.push(&data).await;
    let tcp = TcpStream::connect(server.address).await.unwrap();
    let (mut sender, connection) = hyper::client::conn::http2::handshake(
        hyper_util::rt::TokioExecutor::new(),
        hyper_util::rt::TokioIo::new(tcp),
    )
    .await
    .unwrap();
    tokio::spawn(connection);
    let request = http::Request::get(format!(
        "http://{}/v2/team/app/blobs/{digest}",
        server.address
    ))
    .body(http_body_util::Empty::<bytes::Bytes>::new())
    .unwrap();
    let response = sender.send_request(request).await.unwrap();
    assert_eq!(response.status(), 200);
    assert_eq!(response.version(), http::Version::HTTP_2);
    let body = response.into_body().collect().await.unwrap().to_bytes();
    assert!(body == data, "the blob came back changed over HTTP/2");
}

#[tokio::test]
async fn with_sendfile_off_blobs_come_from_the_stream() {
    let server = Server::start_with(ServerSettings {
        sendfile: false,
        ..ServerSettings::default()
    })
    .await;
    let data = support::pattern(12, 5 * MIB + 3);
    let digest = server.push(&data).await;
    let mut connection = server.connect().await;
    let (status, body) = get(&mut connection, &format!("/v2/team/app/blobs/{digest}"), "").await;
    assert_eq!(status, 200);
    assert!(body == data, "the blob came back changed");
}
