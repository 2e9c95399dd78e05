//! A cold pull through a proxy namespace (issue 16) is sent to its client
//! from the upload's file by `sendfile` while the fetch is still writing
//! it, through a real socket against `berth_server::run` on port 0 with a
//! filesystem store. This file holds one test, so the process-wide count
//! of bytes sent by `sendfile` is this test's alone.

mod support;

use std::sync::Arc;
use std::time::Duration;

use berth_oci::{Algorithm, Digest, Reference, RepoName};
use berth_registry::{
    ByteStream, ProxySettings, Upstream, UpstreamBlob, UpstreamError, UpstreamManifest,
};
use berth_server::{Sendfile, ServerSettings};
use bytes::Bytes;
use tokio::io::{AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::TcpStream;
use tokio::sync::Semaphore;

const MIB: usize = 1024 * 1024;

/// An upstream holding one blob, which it sends in 64 KiB pieces and stops
/// sending after `gate_at` bytes until the test adds a permit to `gate`.
struct GatedUpstream {
    blob: Bytes,
    gate_at: usize,
    gate: Arc<Semaphore>,
}

#[async_trait::async_trait]
impl Upstream for GatedUpstream {
    async fn manifest_digest(
        &self,
        _: &RepoName,
        _: &Reference,
    ) -> Result<Option<Digest>, UpstreamError> {
        Err(UpstreamError::NotFound)
    }

    async fn manifest(
        &self,
        _: &RepoName,
        _: &Reference,
    ) -> Result<UpstreamManifest, UpstreamError> {
        Err(UpstreamError::NotFound)
    }

    async fn blob_size(&self, _: &RepoName, _: &Digest) -> Result<Option<u64>, UpstreamError> {
        Ok(Some(self.blob.len() as u64))
    }

    async fn blob(&self, _: &RepoName, _: &Digest) -> Result<UpstreamBlob, UpstreamError> {
        let (blob, gate_at, gate) = (self.blob.clone(), self.gate_at, self.gate.clone());
        let stream: ByteStream = Box::pin(futures::stream::unfold(0usize, move |at| {
            let (blob, gate) = (blob.clone(), gate.clone());
            async move {
                if at == blob.len() {
                    return None;
                }
                if at == gate_at {
                    gate.acquire().await.expect("the gate stays open").forget();
                }
                let end = (at + 64 * 1024).min(blob.len());
                Some((Ok(blob.slice(at..end)), end))
            }
        }));
        Ok(UpstreamBlob {
            len: Some(self.blob.len() as u64),
            stream,
        })
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cold_pull_is_sent_from_the_upload_file_while_the_fetch_writes_it() {
    let blob = Bytes::from(support::pattern(11, 6 * MIB + 5));
    let digest = Algorithm::Sha256.digest_of(&blob);
    let gate = Arc::new(Semaphore::new(0));
    // `sendfile` for every client: this one is on loopback, where the
    // default copies instead.
    let (_dir, state, listener) = support::listening(ServerSettings {
        sendfile: Sendfile::Always,
        ..ServerSettings::default()
    })
    .await;
    state.registry.attach_upstreams(vec![ProxySettings {
        namespace: "cache".into(),
        tag_ttl: Duration::from_secs(60),
        docker_hub: false,
        max_size: None,
        root: false,
        upstream: Arc::new(GatedUpstream {
            blob: blob.clone(),
            gate_at: 3 * MIB,
            gate: gate.clone(),
        }),
    }]);
    let address = listener.local_addr().unwrap();
    tokio::spawn(berth_server::run(listener, state, std::future::pending()));

    let before = berth_server::sendfile::bytes_sent();
    let mut connection = BufReader::new(TcpStream::connect(address).await.unwrap());
    let request = format!("GET /v2/cache/team/app/blobs/{digest} HTTP/1.1\r\nHost: x\r\n\r\n");
    connection
        .get_mut()
        .write_all(request.as_bytes())
        .await
        .unwrap();
    let head = support::read_head(&mut connection).await;
    assert!(head.starts_with("HTTP/1.1 200"), "{head}");
    assert_eq!(support::content_length(&head), blob.len());

    // The upstream has sent half and waits: the client already gets the
    // bytes written so far, and they come by `sendfile`.
    let mut body = Vec::new();
    read_until(&mut connection, &mut body, MIB, Duration::from_secs(10)).await;
    assert!(
        body.len() >= MIB,
        "only {} bytes arrived while the fetch was held",
        body.len()
    );
    assert!(
        body[..] == blob[..body.len()],
        "the first bytes came back changed"
    );
    let sent = berth_server::sendfile::bytes_sent() - before;
    assert!(
        sent >= MIB as u64,
        "sendfile sent {sent} bytes while the client read the first MiB"
    );
    // The last bytes wait for the digest, which waits for the rest.
    read_until(
        &mut connection,
        &mut body,
        blob.len(),
        Duration::from_millis(300),
    )
    .await;
    assert!(
        body.len() < blob.len(),
        "the whole blob arrived before it was fetched"
    );

    gate.add_permits(1);
    read_until(
        &mut connection,
        &mut body,
        blob.len(),
        Duration::from_secs(10),
    )
    .await;
    assert_eq!(
        body.len(),
        blob.len(),
        "the rest arrives once the fetch goes on"
    );
    assert!(body == blob[..], "the blob came back changed");
    let sent = berth_server::sendfile::bytes_sent() - before;
    assert_eq!(sent, blob.len() as u64, "every byte went by sendfile");
}

/// Reads body bytes into `body` until it holds `len` of them or `within`
/// has passed.
async fn read_until(
    connection: &mut BufReader<TcpStream>,
    body: &mut Vec<u8>,
    len: usize,
    within: Duration,
) {
    let deadline = tokio::time::Instant::now() + within;
    let mut buf = vec![0u8; 256 * 1024];
    while body.len() < len {
        let want = (len - body.len()).min(buf.len());
        // `read` is cancel-safe: a timeout loses no bytes.
        match tokio::time::timeout_at(deadline, connection.read(&mut buf[..want])).await {
            Ok(Ok(0)) => panic!("the connection closed after {} bytes", body.len()),
            Ok(Ok(n)) => body.extend_from_slice(&buf[..n]),
            Ok(Err(error)) => panic!("reading the body: {error}"),
            Err(_) => return,
        }
    }
}
