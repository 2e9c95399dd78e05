//! A minimal keep-alive HTTP/1.1 client built directly on hyper's connection
//! API.
//!
//! The benchmark owns its connections instead of using a pooled client
//! (reqwest, hyper-util's legacy client): every worker holds exactly one
//! connection for its whole life, so the number of connections the server sees
//! is the number the scenario asks for, and no pool bookkeeping runs on the
//! request path of the load generator.

use std::net::SocketAddr;

use bytes::Bytes;
use http::header::{HeaderValue, HOST, USER_AGENT};
use http::{Method, Request, Response, StatusCode};
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper::client::conn::http1::SendRequest;
use hyper_util::rt::TokioIo;
use tokio::net::TcpStream;

/// Every error is reported to the user as text and ends the scenario, so one
/// boxed error type is all the tool needs.
pub type Error = Box<dyn std::error::Error + Send + Sync>;
pub type Result<T> = std::result::Result<T, Error>;

/// Request bodies are always fully in memory: blobs are generated up front so
/// that producing bytes never shows up in the measured time.
pub type Body = Full<Bytes>;

/// The registry under test: where to connect and what to put in `Host`.
#[derive(Clone, Debug)]
pub struct Target {
    /// Resolved once, so no request pays for a name lookup.
    pub addr: SocketAddr,
    /// hyper's connection API sends exactly the headers it is given, and Go's
    /// HTTP server rejects HTTP/1.1 requests without `Host`, so every request
    /// carries this value.
    pub host: HeaderValue,
}

impl Target {
    /// Parses `http://HOST:PORT` (a trailing slash or `/v2/` is tolerated).
    pub async fn from_url(url: &str) -> Result<Target> {
        let rest = url.strip_prefix("http://").ok_or_else(|| {
            format!("{url}: only http:// URLs are supported (the tool does not speak TLS)")
        })?;
        let authority = rest.split(['/', '?']).next().unwrap_or_default();
        if authority.is_empty() {
            return Err(format!("{url}: the URL has no host").into());
        }
        let with_port = if authority.contains(':') {
            authority.to_string()
        } else {
            format!("{authority}:80")
        };
        let addr = tokio::net::lookup_host(with_port.as_str())
            .await?
            .next()
            .ok_or_else(|| format!("cannot resolve {authority}"))?;
        Ok(Target {
            addr,
            host: HeaderValue::from_str(authority)?,
        })
    }

    /// Starts a request with the headers every request needs.
    pub fn request(&self, method: Method, path_and_query: &str) -> http::request::Builder {
        Request::builder()
            .method(method)
            .uri(path_and_query)
            .header(HOST, self.host.clone())
            .header(USER_AGENT, HeaderValue::from_static("berth-bench"))
    }
}

/// One keep-alive connection, reopened transparently when the server closed it
/// while it was idle.
pub struct Connection {
    target: Target,
    sender: SendRequest<Body>,
}

impl Connection {
    pub async fn open(target: &Target) -> Result<Connection> {
        Ok(Connection {
            target: target.clone(),
            sender: handshake(target, None).await?,
        })
    }

    /// Opens a connection from the local address `local` (e.g. one of the
    /// many loopback addresses), so the server sees that client address.
    pub async fn open_from(target: &Target, local: std::net::IpAddr) -> Result<Connection> {
        Ok(Connection {
            target: target.clone(),
            sender: handshake(target, Some(local)).await?,
        })
    }

    pub fn target(&self) -> &Target {
        &self.target
    }

    /// Sends one request and returns the response with its body unread.
    pub async fn send(&mut self, request: Request<Body>) -> Result<Response<Incoming>> {
        // A request cannot be replayed once hyper has taken it, so a closed
        // connection is detected before sending, where reconnecting is safe.
        if self.sender.ready().await.is_err() {
            self.reconnect().await?;
        }
        Ok(self.sender.send_request(request).await?)
    }

    /// Replaces the connection after an error left it unusable.
    pub async fn reconnect(&mut self) -> Result<()> {
        self.sender = handshake(&self.target, None).await?;
        Ok(())
    }

    /// Sends a request and reads the whole response body into memory.
    pub async fn fetch(
        &mut self,
        request: Request<Body>,
    ) -> Result<(http::response::Parts, Bytes)> {
        let response = self.send(request).await?;
        let (parts, body) = response.into_parts();
        let bytes = body.collect().await?.to_bytes();
        Ok((parts, bytes))
    }
}

/// Reads a response body to its end without keeping it, returning its length.
/// Large pulls go through here, so the load generator never holds a blob.
pub async fn drain(mut body: Incoming) -> Result<u64> {
    let mut length = 0u64;
    while let Some(frame) = body.frame().await {
        if let Ok(data) = frame?.into_data() {
            length += data.len() as u64;
        }
    }
    Ok(length)
}

/// Turns an unexpected response into an error that names the request, the
/// status and the start of the body (the registry's error JSON).
pub fn unexpected(what: &str, status: StatusCode, body: &[u8]) -> Error {
    let shown = &body[..body.len().min(300)];
    format!(
        "{what}: unexpected status {status}: {}",
        String::from_utf8_lossy(shown)
    )
    .into()
}

async fn handshake(target: &Target, local: Option<std::net::IpAddr>) -> Result<SendRequest<Body>> {
    let stream = match local {
        None => TcpStream::connect(target.addr).await?,
        Some(local) => {
            let socket = if local.is_ipv4() {
                tokio::net::TcpSocket::new_v4()?
            } else {
                tokio::net::TcpSocket::new_v6()?
            };
            socket.bind(std::net::SocketAddr::new(local, 0))?;
            socket.connect(target.addr).await?
        }
    };
    // Small requests (HEAD, manifest GET) must not wait for Nagle's algorithm.
    stream.set_nodelay(true)?;
    let (sender, connection) = hyper::client::conn::http1::Builder::new()
        .handshake(TokioIo::new(stream))
        .await?;
    // The connection future does the socket IO; it ends when the sender is
    // dropped or the server closes, and its error then surfaces on the sender.
    tokio::spawn(async move {
        let _ = connection.await;
    });
    Ok(sender)
}
