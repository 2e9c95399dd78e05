//! A loopback HTTP proxy that injects faults between Berth and a service
//! it depends on (the S3 store): it can pass requests through, be down
//! (nothing listens on its port, as when the service is killed), answer
//! slowly, or answer every request with a `500`.
//!
//! Each connection carries one exchange (`Connection: close` both ways),
//! which HTTP clients accept, so switching the fault takes effect on the
//! very next request. Requests must carry their body with `Content-Length`
//! (object_store's do).

use std::io::{Read, Write};
use std::net::{Shutdown, SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

/// What the proxy does to the requests it gets.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Fault {
    /// Passes every exchange through.
    None,
    /// Listens on nothing: connections are refused, exchanges in progress
    /// are cut.
    Down,
    /// Holds every answer back this long (or until the fault changes).
    Slow(Duration),
    /// Answers every request with `500 InternalError`, passing nothing on.
    Fail500,
}

struct Shared {
    upstream: String,
    fault: Mutex<Fault>,
    stopping: AtomicBool,
}

impl Shared {
    fn fault(&self) -> Fault {
        *self.fault.lock().expect("fault lock")
    }
}

/// A running proxy; dropping it stops it.
pub struct FaultProxy {
    /// `127.0.0.1:PORT`.
    pub addr: String,
    shared: Arc<Shared>,
    acceptor: Option<JoinHandle<()>>,
}

impl FaultProxy {
    /// Listens on a free loopback port and forwards to `upstream`
    /// (`HOST:PORT`).
    pub fn start(upstream: &str) -> FaultProxy {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind the proxy");
        let local = listener.local_addr().expect("proxy address");
        let shared = Arc::new(Shared {
            upstream: upstream.to_string(),
            fault: Mutex::new(Fault::None),
            stopping: AtomicBool::new(false),
        });
        let acceptor = {
            let shared = Arc::clone(&shared);
            std::thread::spawn(move || accept_loop(listener, local, &shared))
        };
        FaultProxy {
            addr: local.to_string(),
            shared,
            acceptor: Some(acceptor),
        }
    }

    /// Switches the fault; the next exchange sees it.
    pub fn set(&self, fault: Fault) {
        *self.shared.fault.lock().expect("fault lock") = fault;
    }
}

impl Drop for FaultProxy {
    fn drop(&mut self) {
        self.shared.stopping.store(true, Ordering::SeqCst);
        if let Some(acceptor) = self.acceptor.take() {
            let _ = acceptor.join();
        }
    }
}

/// Accepts while the proxy is up; while it is down, the port is closed
/// (a connection is refused, as by a killed server) and bound again when
/// it comes back.
fn accept_loop(listener: TcpListener, local: SocketAddr, shared: &Arc<Shared>) {
    let mut listener = Some(listener);
    while !shared.stopping.load(Ordering::SeqCst) {
        match (shared.fault(), listener.is_some()) {
            (Fault::Down, true) => listener = None,
            (Fault::Down, false) => {}
            (_, false) => {
                // The port was ours a moment ago; SO_REUSEADDR (set by std on
                // Unix) lets us have it back at once.
                listener = TcpListener::bind(local).ok();
            }
            (_, true) => {}
        }
        let Some(open) = &listener else {
            std::thread::sleep(Duration::from_millis(10));
            continue;
        };
        open.set_nonblocking(true).expect("non-blocking listener");
        match open.accept() {
            Ok((client, _)) => {
                let _ = client.set_nonblocking(false);
                let shared = Arc::clone(shared);
                std::thread::spawn(move || exchange(client, &shared));
            }
            Err(error) if error.kind() == std::io::ErrorKind::WouldBlock => {
                std::thread::sleep(Duration::from_millis(5));
            }
            Err(_) => std::thread::sleep(Duration::from_millis(5)),
        }
    }
}

/// Waits up to `delay`, but no longer than the slow fault lasts.
fn hold_back(delay: Duration, shared: &Shared) {
    let until = Instant::now() + delay;
    while Instant::now() < until && matches!(shared.fault(), Fault::Slow(_)) {
        std::thread::sleep(Duration::from_millis(20));
    }
}

fn exchange(mut client: TcpStream, shared: &Shared) {
    let _ = client.set_read_timeout(Some(Duration::from_secs(60)));
    let Some((head, body)) = read_request(&mut client) else {
        return;
    };
    match shared.fault() {
        Fault::Down => return,
        Fault::Fail500 => {
            let body =
                "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<Error><Code>InternalError</Code>\
                        <Message>injected by the test</Message></Error>";
            let _ = client.write_all(
                format!(
                    "HTTP/1.1 500 Internal Server Error\r\nContent-Type: application/xml\r\n\
                     Content-Length: {}\r\nConnection: close\r\n\r\n{body}",
                    body.len()
                )
                .as_bytes(),
            );
            let _ = client.shutdown(Shutdown::Both);
            return;
        }
        Fault::Slow(delay) => hold_back(delay, shared),
        Fault::None => {}
    }
    let Ok(mut upstream) = TcpStream::connect(&shared.upstream) else {
        return;
    };
    let mut forwarded = String::new();
    for line in head.split("\r\n").filter(|line| !line.is_empty()) {
        let name = line.split(':').next().unwrap_or_default();
        if !name.eq_ignore_ascii_case("connection") && !name.eq_ignore_ascii_case("keep-alive") {
            forwarded.push_str(line);
            forwarded.push_str("\r\n");
        }
    }
    forwarded.push_str("Connection: close\r\n\r\n");
    if upstream.write_all(forwarded.as_bytes()).is_err() || upstream.write_all(&body).is_err() {
        return;
    }
    let mut answer = Vec::new();
    if upstream.read_to_end(&mut answer).is_err() {
        return;
    }
    if shared.fault() == Fault::Down {
        return;
    }
    let _ = client.write_all(&answer);
    let _ = client.flush();
    let _ = client.shutdown(Shutdown::Both);
}

/// Reads a request head and its `Content-Length` body.
fn read_request(client: &mut TcpStream) -> Option<(String, Vec<u8>)> {
    let mut head = Vec::new();
    let mut byte = [0u8; 1];
    while !head.ends_with(b"\r\n\r\n") {
        match client.read(&mut byte) {
            Ok(1) => head.push(byte[0]),
            _ => return None,
        }
        if head.len() > 64 * 1024 {
            return None;
        }
    }
    let head = String::from_utf8_lossy(&head).into_owned();
    let length = head
        .split("\r\n")
        .filter_map(|line| line.split_once(':'))
        .find(|(name, _)| name.trim().eq_ignore_ascii_case("content-length"))
        .and_then(|(_, value)| value.trim().parse::<usize>().ok())
        .unwrap_or(0);
    let mut body = vec![0u8; length];
    client.read_exact(&mut body).ok()?;
    Some((head, body))
}
