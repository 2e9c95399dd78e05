//! A Berth server on a loopback port with a filesystem store, and the raw
//! HTTP/1 requests the blob-sending tests make of it: monolithic pushes and
//! GETs read off the socket, so that every byte the server wrote is seen.

use std::net::SocketAddr;

use berth_oci::Algorithm;
use berth_server::{Sendfile, ServerSettings};
use tokio::io::{AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::TcpStream;

pub struct Server {
    pub address: SocketAddr,
    _dir: tempfile::TempDir,
}

impl Server {
    /// A server that sends blobs by `sendfile` to every client: these
    /// tests' clients are on loopback, where the default copies instead.
    pub async fn start() -> Server {
        Server::start_with(ServerSettings {
            sendfile: Sendfile::Always,
            ..ServerSettings::default()
        })
        .await
    }

    pub async fn start_with(settings: ServerSettings) -> Server {
        let (dir, state, listener) = super::listening(settings).await;
        let address = listener.local_addr().unwrap();
        tokio::spawn(berth_server::run(listener, state, std::future::pending()));
        Server { address, _dir: dir }
    }

    pub async fn connect(&self) -> BufReader<TcpStream> {
        BufReader::new(TcpStream::connect(self.address).await.unwrap())
    }

    /// Stores `data` as a blob of `team/app` by a monolithic upload.
    pub async fn push(&self, data: &[u8]) -> String {
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
pub async fn read_response(connection: &mut BufReader<TcpStream>) -> (u16, String, Vec<u8>) {
    let head = super::read_head(connection).await;
    let status = head[9..12].parse().unwrap();
    let mut body = vec![0u8; super::content_length(&head)];
    connection.read_exact(&mut body).await.unwrap();
    (status, head, body)
}

/// Sends `GET path` with `headers` (each ending in CRLF) and reads the
/// answer: its status and body.
pub async fn get(
    connection: &mut BufReader<TcpStream>,
    path: &str,
    headers: &str,
) -> (u16, Vec<u8>) {
    let request = format!("GET {path} HTTP/1.1\r\nHost: x\r\n{headers}\r\n");
    connection
        .get_mut()
        .write_all(request.as_bytes())
        .await
        .unwrap();
    let (status, _, body) = read_response(connection).await;
    (status, body)
}
