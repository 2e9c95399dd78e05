//! A minimal blocking HTTP/1.1 client over `TcpStream`, for end-to-end tests
//! that must control exactly what goes on the wire (streamed bodies of many
//! gigabytes, chunked transfer encoding) without buffering.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;

/// A response: status, headers (lower-cased names) and body.
pub struct HttpResponse {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

impl HttpResponse {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    }
}

/// The body of a request.
pub enum RequestBody<'a> {
    Empty,
    Bytes(&'a [u8]),
    /// Streamed with `Transfer-Encoding: chunked`, read piece by piece.
    Stream(&'a mut dyn Read),
}

/// Sends one request on a fresh connection and reads the whole response.
pub fn request(
    addr: &str,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: RequestBody<'_>,
) -> HttpResponse {
    try_request(addr, method, path, headers, body)
        .unwrap_or_else(|error| panic!("{method} {path} on {addr}: {error}"))
}

/// [`request`], returning a failure to connect, send or read (a server that
/// was killed) as an error instead of panicking.
pub fn try_request(
    addr: &str,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: RequestBody<'_>,
) -> std::io::Result<HttpResponse> {
    try_request_within(None, addr, method, path, headers, body)
}

/// [`try_request`] that gives up (`TimedOut`/`WouldBlock`) when the server
/// stays silent for `limit` at any point, so a hanging server fails a test
/// instead of stalling it.
pub fn try_request_within(
    limit: Option<std::time::Duration>,
    addr: &str,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: RequestBody<'_>,
) -> std::io::Result<HttpResponse> {
    let mut stream = TcpStream::connect(addr)?;
    stream.set_read_timeout(limit)?;
    stream.set_write_timeout(limit)?;
    let mut head = format!("{method} {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n");
    for (k, v) in headers {
        head.push_str(&format!("{k}: {v}\r\n"));
    }
    match &body {
        RequestBody::Empty => head.push_str("Content-Length: 0\r\n"),
        RequestBody::Bytes(b) => head.push_str(&format!("Content-Length: {}\r\n", b.len())),
        RequestBody::Stream(_) => head.push_str("Transfer-Encoding: chunked\r\n"),
    }
    head.push_str("\r\n");
    stream.write_all(head.as_bytes())?;
    match body {
        RequestBody::Empty => {}
        RequestBody::Bytes(b) => stream.write_all(b)?,
        RequestBody::Stream(reader) => {
            let mut buf = vec![0u8; 1 << 20];
            loop {
                let n = reader.read(&mut buf)?;
                if n == 0 {
                    break;
                }
                stream.write_all(format!("{n:x}\r\n").as_bytes())?;
                stream.write_all(&buf[..n])?;
                stream.write_all(b"\r\n")?;
            }
            stream.write_all(b"0\r\n\r\n")?;
        }
    }
    read_response(stream, method == "HEAD")
}

fn read_response(stream: TcpStream, head_only: bool) -> std::io::Result<HttpResponse> {
    let broken =
        |what: &str| std::io::Error::new(std::io::ErrorKind::InvalidData, what.to_string());
    let mut reader = BufReader::new(stream);
    let mut line = String::new();
    if reader.read_line(&mut line)? == 0 {
        return Err(std::io::ErrorKind::UnexpectedEof.into());
    }
    let status: u16 = line
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .ok_or_else(|| broken("no status code"))?;
    let mut headers = Vec::new();
    loop {
        line.clear();
        if reader.read_line(&mut line)? == 0 {
            return Err(std::io::ErrorKind::UnexpectedEof.into());
        }
        let trimmed = line.trim_end();
        if trimmed.is_empty() {
            break;
        }
        if let Some((k, v)) = trimmed.split_once(':') {
            headers.push((k.trim().to_ascii_lowercase(), v.trim().to_string()));
        }
    }
    let mut body = Vec::new();
    if !head_only {
        let chunked = headers
            .iter()
            .any(|(k, v)| k == "transfer-encoding" && v.contains("chunked"));
        if chunked {
            loop {
                line.clear();
                reader.read_line(&mut line)?;
                let size =
                    usize::from_str_radix(line.trim(), 16).map_err(|_| broken("bad chunk size"))?;
                if size == 0 {
                    break;
                }
                let mut chunk = vec![0u8; size + 2];
                reader.read_exact(&mut chunk)?;
                body.extend_from_slice(&chunk[..size]);
            }
        } else {
            reader.read_to_end(&mut body)?;
        }
    }
    Ok(HttpResponse {
        status,
        headers,
        body,
    })
}

/// A reader producing `len` deterministic pseudo-random bytes without
/// holding them in memory, so tests can stream gigabytes.
pub struct PatternReader {
    remaining: u64,
    state: u64,
}

impl PatternReader {
    pub fn new(len: u64, seed: u64) -> PatternReader {
        PatternReader {
            remaining: len,
            state: seed | 1,
        }
    }
}

impl Read for PatternReader {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let n = buf.len().min(self.remaining as usize) & !7;
        let n = if n == 0 {
            buf.len().min(self.remaining as usize)
        } else {
            n
        };
        for chunk in buf[..n].chunks_mut(8) {
            // xorshift64: fast, deterministic, and incompressible enough.
            self.state ^= self.state << 13;
            self.state ^= self.state >> 7;
            self.state ^= self.state << 17;
            let bytes = self.state.to_le_bytes();
            chunk.copy_from_slice(&bytes[..chunk.len()]);
        }
        self.remaining -= n as u64;
        Ok(n)
    }
}
