//! A loopback HTTP proxy that breaks one blob download in the middle, so a
//! test can watch how a client resumes it (docker retries with `Range:
//! bytes=N-`) and check what the registry answers. It handles requests
//! without bodies only (the pull side of the protocol: GET and HEAD) and
//! closes every connection after one exchange, which real clients accept.

use std::io::{Read, Write};
use std::net::{Shutdown, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::Duration;

/// One request that went through the proxy, and the registry's answer.
#[derive(Clone, Debug)]
pub struct Exchange {
    pub method: String,
    pub path: String,
    /// The request's `Range` header, if any.
    pub range: Option<String>,
    pub status: u16,
    /// The answer's `Content-Range` header, if any.
    pub content_range: Option<String>,
    /// Whether the proxy cut this answer's body short.
    pub cut: bool,
}

/// State shared between the proxy's threads and the test.
struct Shared {
    upstream: String,
    /// The path suffix of the next GET to cut short; taken when used, so
    /// exactly one download breaks.
    cut_next: Mutex<Option<String>>,
    exchanges: Mutex<Vec<Exchange>>,
    stopping: AtomicBool,
}

/// A running proxy; dropping it stops accepting connections.
pub struct CuttingProxy {
    /// `127.0.0.1:PORT`, to use as the registry host in image references.
    pub addr: String,
    shared: Arc<Shared>,
    acceptor: Option<JoinHandle<()>>,
}

impl CuttingProxy {
    /// Listens on a free loopback port and forwards to `upstream`
    /// (`HOST:PORT`).
    pub fn start(upstream: &str) -> CuttingProxy {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind proxy");
        let addr = listener.local_addr().expect("proxy address").to_string();
        let shared = Arc::new(Shared {
            upstream: upstream.to_string(),
            cut_next: Mutex::new(None),
            exchanges: Mutex::new(Vec::new()),
            stopping: AtomicBool::new(false),
        });
        let acceptor_shared = Arc::clone(&shared);
        let acceptor = std::thread::spawn(move || {
            for client in listener.incoming() {
                if acceptor_shared.stopping.load(Ordering::SeqCst) {
                    return;
                }
                let Ok(client) = client else { continue };
                let shared = Arc::clone(&acceptor_shared);
                std::thread::spawn(move || handle(client, &shared));
            }
        });
        CuttingProxy {
            addr,
            shared,
            acceptor: Some(acceptor),
        }
    }

    /// Makes the next GET whose path ends with `path_suffix` deliver only
    /// half of its body before the connection closes.
    pub fn cut_next_get(&self, path_suffix: &str) {
        *self.shared.cut_next.lock().expect("cut lock") = Some(path_suffix.to_string());
    }

    /// Every exchange so far, in the order they completed.
    pub fn exchanges(&self) -> Vec<Exchange> {
        self.shared
            .exchanges
            .lock()
            .expect("exchanges lock")
            .clone()
    }
}

impl Drop for CuttingProxy {
    fn drop(&mut self) {
        self.shared.stopping.store(true, Ordering::SeqCst);
        // The acceptor blocks in accept(); one connection wakes it to see
        // the flag. Connection threads end on their own with their client.
        let _ = TcpStream::connect(&self.addr);
        if let Some(acceptor) = self.acceptor.take() {
            let _ = acceptor.join();
        }
    }
}

const METHODS: &[&str] = &[
    "GET ", "HEAD ", "POST ", "PUT ", "PATCH ", "DELETE ", "OPTIONS ",
];

fn handle(mut client: TcpStream, shared: &Shared) {
    let _ = client.set_read_timeout(Some(Duration::from_secs(30)));
    let Some(head) = read_head(&mut client) else {
        return;
    };
    // docker first tries TLS on every registry; like any HTTP server, answer
    // the ClientHello with an HTTP error so that it falls back to plain HTTP.
    if !METHODS
        .iter()
        .any(|method| head.starts_with(method.as_bytes()))
    {
        let _ = client.write_all(
            b"HTTP/1.1 400 Bad Request\r\nContent-Length: 0\r\nConnection: close\r\n\r\n",
        );
        return;
    }
    let head = String::from_utf8_lossy(&head).into_owned();
    let mut lines = head.split("\r\n");
    let request_line = lines.next().unwrap_or_default().to_string();
    let mut parts = request_line.split(' ');
    let method = parts.next().unwrap_or_default().to_string();
    let path = parts.next().unwrap_or_default().to_string();
    let headers: Vec<(String, String)> = lines
        .filter_map(|line| line.split_once(':'))
        .map(|(name, value)| (name.trim().to_string(), value.trim().to_string()))
        .collect();
    let range = header(&headers, "range");

    let Ok(mut upstream) = TcpStream::connect(&shared.upstream) else {
        return;
    };
    let mut forwarded = format!("{request_line}\r\n");
    for (name, value) in &headers {
        if !name.eq_ignore_ascii_case("connection") && !name.eq_ignore_ascii_case("keep-alive") {
            forwarded.push_str(&format!("{name}: {value}\r\n"));
        }
    }
    // One exchange per upstream connection, so its answer ends at EOF.
    forwarded.push_str("Connection: close\r\n\r\n");
    if upstream.write_all(forwarded.as_bytes()).is_err() {
        return;
    }
    let mut answer = Vec::new();
    if upstream.read_to_end(&mut answer).is_err() {
        return;
    }
    let Some(split) = answer.windows(4).position(|w| w == b"\r\n\r\n") else {
        return;
    };
    let answer_head = String::from_utf8_lossy(&answer[..split]).into_owned();
    let body = &answer[split + 4..];
    let mut answer_lines = answer_head.split("\r\n");
    let status_line = answer_lines.next().unwrap_or_default().to_string();
    let status = status_line
        .split(' ')
        .nth(1)
        .and_then(|code| code.parse().ok())
        .unwrap_or(0);
    let answer_headers: Vec<(String, String)> = answer_lines
        .filter_map(|line| line.split_once(':'))
        .map(|(name, value)| (name.trim().to_string(), value.trim().to_string()))
        .collect();

    let cut = method == "GET" && body.len() > 1 && {
        let mut cut_next = shared.cut_next.lock().expect("cut lock");
        let matches = cut_next
            .as_deref()
            .is_some_and(|suffix| path.ends_with(suffix));
        if matches {
            *cut_next = None;
        }
        matches
    };
    let mut reply = format!("{status_line}\r\n");
    for (name, value) in &answer_headers {
        if !name.eq_ignore_ascii_case("connection") && !name.eq_ignore_ascii_case("keep-alive") {
            reply.push_str(&format!("{name}: {value}\r\n"));
        }
    }
    reply.push_str("Connection: close\r\n\r\n");
    let sent_body = if cut { &body[..body.len() / 2] } else { body };
    let _ = client.write_all(reply.as_bytes());
    let _ = client.write_all(sent_body);
    let _ = client.flush();
    let _ = client.shutdown(Shutdown::Both);

    shared
        .exchanges
        .lock()
        .expect("exchanges lock")
        .push(Exchange {
            method,
            path,
            range,
            status,
            content_range: header(&answer_headers, "content-range"),
            cut,
        });
}

fn header(headers: &[(String, String)], name: &str) -> Option<String> {
    headers
        .iter()
        .find(|(n, _)| n.eq_ignore_ascii_case(name))
        .map(|(_, v)| v.clone())
}

/// Reads up to the end of the request head. Returns what was read when the
/// peer stops early or sends something that is not HTTP (a TLS ClientHello
/// has no blank line), so the caller can still tell what it got.
fn read_head(client: &mut TcpStream) -> Option<Vec<u8>> {
    let mut head = Vec::new();
    let mut byte = [0u8; 1];
    while !head.ends_with(b"\r\n\r\n") {
        match client.read(&mut byte) {
            Ok(1) => head.push(byte[0]),
            _ => break,
        }
        if head.len() > 64 * 1024 || (head.len() >= 8 && !head.is_ascii()) {
            break;
        }
    }
    (!head.is_empty()).then_some(head)
}
