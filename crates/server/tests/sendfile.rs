//! Blob GETs sent from the file by `sendfile` (issue 11), through real
//! sockets against `berth_server::run` on port 0 with a filesystem store:
//! every byte arrives, in order, for whole blobs and ranges of every size
//! around the store's and the placeholders' windows, for responses
//! pipelined on one connection with other answers between them, and over
//! HTTP/2, which must not take the path.

mod support;

use berth_oci::Algorithm;
use berth_server::{Sendfile, ServerSettings};
use support::blob_http::{get, read_response, Server};
use tokio::io::AsyncWriteExt;
use tokio::net::TcpStream;

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
        sendfile: Sendfile::Never,
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
