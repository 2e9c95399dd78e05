//! Blob bodies handed from the file to the socket by `sendfile(2)`, on plain
//! HTTP/1 connections (issue 11: a blob GET should cost at most 100 µs of
//! server CPU per MiB).
//!
//! hyper writes response bodies itself: every byte of a body is a `Bytes`
//! it passes to the connection's `poll_write_vectored`. Serving a blob from
//! a memory map costs the kernel's copy from the map into the socket plus
//! the page faults on the map; `sendfile` costs neither. So a blob body on
//! such a connection is a run of **placeholders**: `Bytes` that point into
//! one reserved, never-written region of address space ([`Placeholder`]).
//! When the body yields a placeholder it first queues, on the connection's
//! [`FileQueue`], the file region those bytes stand for. The connection's
//! I/O ([`SendfileIo`]) recognises a placeholder by its address and sends
//! the queued region in its place; every other byte it writes as it is.
//!
//! What keeps this exact:
//! - hyper writes a connection's frames in the order the bodies yield them,
//!   one response after another, so the queue's front is always the region
//!   of the placeholder being written. The offset within the placeholder
//!   (hyper advances past what each write reported) is checked against the
//!   region's progress; any disagreement fails the connection, it never
//!   sends other bytes.
//! - A placeholder is never given to anything that copies bytes: only
//!   HTTP/1 connections get a queue (HTTP/2 frames and may copy a body's
//!   data), hyper is told to write vectored (its other strategy copies
//!   bodies into its buffer), and TLS connections get none (they encrypt
//!   what they are handed). The placeholder region is readable zeros, so a
//!   mistake here would send zeros rather than crash; the tests pull every
//!   size through real sockets and compare digests.
//! - The file is a committed blob, which nothing writes or truncates
//!   ([`berth_registry::FileRegion`]), or one still being written (a
//!   pull-through fetch), of which a placeholder only ever stands for bytes
//!   its [`berth_registry::Growing`] said are written. A file that ends
//!   early fails the connection.
//!
//! A cold blob's disk reads happen inside `sendfile`, on the runtime thread,
//! as they did in the page faults of the memory map this replaces; the body
//! asks the kernel for sequential readahead when it starts.

use std::collections::VecDeque;
use std::io::{self, IoSlice};
use std::os::fd::AsRawFd;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::task::{Context, Poll};

use berth_registry::{BlobBody, FileRegion};
use bytes::Bytes;
use http_body::{Body as HttpBody, Frame, SizeHint};
use tokio::io::{AsyncRead, AsyncWrite, Interest, ReadBuf};
use tokio::net::TcpStream;

/// The most one placeholder stands for. Larger frames mean fewer trips
/// through hyper per blob; the socket takes what it has room for per call
/// either way. The placeholder region costs address space, not memory.
const WINDOW: usize = 4 * 1024 * 1024;

/// Bytes sent by `sendfile` since the process started: lets tests tell the
/// path was taken, and shows in a profile-free way that it is.
static SENT: AtomicU64 = AtomicU64::new(0);

/// Bytes handed to sockets by `sendfile` so far, in this process.
pub fn bytes_sent() -> u64 {
    SENT.load(Ordering::Relaxed)
}

/// The reserved region placeholders point into: an anonymous, read-only
/// map of zero pages that nothing ever writes, so it occupies no memory.
struct Placeholder {
    start: usize,
}

impl Placeholder {
    fn get() -> &'static Placeholder {
        static REGION: OnceLock<Placeholder> = OnceLock::new();
        REGION.get_or_init(|| {
            // SAFETY: a fresh anonymous mapping, never unmapped; the kernel
            // chooses the address.
            let start = unsafe {
                libc::mmap(
                    std::ptr::null_mut(),
                    WINDOW,
                    libc::PROT_READ,
                    libc::MAP_PRIVATE | libc::MAP_ANONYMOUS | libc::MAP_NORESERVE,
                    -1,
                    0,
                )
            };
            assert!(
                start != libc::MAP_FAILED,
                "reserving {WINDOW} bytes of address space failed: {}",
                io::Error::last_os_error()
            );
            Placeholder {
                start: start as usize,
            }
        })
    }

    /// A placeholder standing for `len` (at most [`WINDOW`]) bytes.
    fn bytes(&self, len: usize) -> Bytes {
        debug_assert!(len <= WINDOW);
        // SAFETY: the region is mapped readable for the life of the process
        // and never written, so a `'static` shared slice of it is valid.
        Bytes::from_static(unsafe { std::slice::from_raw_parts(self.start as *const u8, len) })
    }

    /// Where `buf` starts within the region, if it lies in it.
    fn offset_of(&self, buf: &[u8]) -> Option<usize> {
        let at = (buf.as_ptr() as usize).checked_sub(self.start)?;
        (at < WINDOW && !buf.is_empty()).then_some(at)
    }
}

/// One placeholder's file bytes, in the order they will be written.
struct Region {
    file: Arc<std::fs::File>,
    /// Where the placeholder's bytes start in the file.
    offset: u64,
    len: u64,
    /// Bytes of it already sent.
    sent: u64,
}

/// A connection's regions to send, queued by its bodies and taken by its
/// I/O. Cloned into each request of a connection that can send files.
#[derive(Clone, Default)]
pub struct FileQueue(Arc<Mutex<VecDeque<Region>>>);

impl FileQueue {
    fn lock(&self) -> std::sync::MutexGuard<'_, VecDeque<Region>> {
        // A panic elsewhere cannot leave the queue half-updated: each
        // change is one push or one field update.
        self.0
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}

/// The response body for `blob`: its file sent by `sendfile` when the
/// request's connection has a [`FileQueue`] and the store has the blob in a
/// file, its stream otherwise.
pub fn blob_body(blob: BlobBody, request: &http::request::Parts) -> axum::body::Body {
    match (blob.file, request.extensions.get::<FileQueue>()) {
        (Some(region), Some(queue)) if blob.len > 0 => {
            // A growing file was just written: its pages are cached.
            let ready = if region.growing.is_none() {
                advise_sequential(&region, blob.len);
                blob.len
            } else {
                0
            };
            axum::body::Body::new(FileBody {
                region,
                remaining: blob.len,
                len: blob.len,
                ready,
                waiting: None,
                queue: queue.clone(),
            })
        }
        _ => axum::body::Body::from_stream(blob.stream),
    }
}

/// Asks the kernel to read ahead generously: the whole region is about to
/// be read once, in order. Only a hint; failure changes nothing.
fn advise_sequential(region: &FileRegion, len: u64) {
    // SAFETY: a plain system call on a descriptor the region keeps open.
    unsafe {
        libc::posix_fadvise(
            region.file.as_raw_fd(),
            region.offset as libc::off_t,
            len as libc::off_t,
            libc::POSIX_FADV_SEQUENTIAL,
        );
    }
}

/// A blob body of placeholders (see the module's documentation).
struct FileBody {
    /// The bytes not yet yielded: their file and where they start.
    region: FileRegion,
    remaining: u64,
    /// The body's whole length.
    len: u64,
    /// How many of them may be yielded now: all of a committed blob's; of
    /// a growing file's, those its last `readable` answer allowed.
    ready: u64,
    /// A growing file's wait for more readable bytes.
    waiting: Option<futures::future::BoxFuture<'static, io::Result<u64>>>,
    queue: FileQueue,
}

impl FileBody {
    /// Waits, for a growing file, until more of it may be yielded.
    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        while self.ready == 0 {
            let Some(growing) = &self.region.growing else {
                return Poll::Ready(Err(io::Error::other(
                    "a committed blob's body ran out of bytes",
                )));
            };
            let yielded = self.len - self.remaining;
            let waiting = self.waiting.get_or_insert_with(|| growing.more(yielded));
            let readable = std::task::ready!(waiting.as_mut().poll(cx))?;
            self.waiting = None;
            self.ready = (readable - yielded).min(self.remaining);
        }
        Poll::Ready(Ok(()))
    }
}

impl HttpBody for FileBody {
    type Data = Bytes;
    type Error = io::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, io::Error>>> {
        if self.remaining == 0 {
            return Poll::Ready(None);
        }
        if let Err(error) = std::task::ready!(self.poll_ready(cx)) {
            return Poll::Ready(Some(Err(error)));
        }
        let len = self.ready.min(WINDOW as u64);
        let region = Region {
            file: Arc::clone(&self.region.file),
            offset: self.region.offset,
            len,
            sent: 0,
        };
        self.queue.lock().push_back(region);
        self.region.offset += len;
        self.remaining -= len;
        self.ready -= len;
        Poll::Ready(Some(Ok(Frame::data(
            Placeholder::get().bytes(len as usize),
        ))))
    }

    fn is_end_stream(&self) -> bool {
        self.remaining == 0
    }

    fn size_hint(&self) -> SizeHint {
        SizeHint::with_exact(self.remaining)
    }
}

/// A plain TCP connection whose placeholders are sent from their files.
pub struct SendfileIo {
    stream: TcpStream,
    queue: FileQueue,
}

impl SendfileIo {
    /// The connection, and the queue its requests' bodies use.
    pub fn new(stream: TcpStream) -> (SendfileIo, FileQueue) {
        let queue = FileQueue::default();
        (
            SendfileIo {
                stream,
                queue: queue.clone(),
            },
            queue,
        )
    }

    /// Sends the front region's bytes that the placeholder slice `buf`,
    /// `at` bytes into its placeholder, stands for.
    fn poll_send_region(
        &mut self,
        cx: &mut Context<'_>,
        buf: &[u8],
        at: usize,
    ) -> Poll<io::Result<usize>> {
        let mut queue = self.queue.lock();
        let Some(region) = queue.front_mut() else {
            return Poll::Ready(Err(desync("no file region is queued for it")));
        };
        if at as u64 != region.sent || buf.len() as u64 > region.len - region.sent {
            return Poll::Ready(Err(desync("it is not where its region's progress is")));
        }
        let socket = self.stream.as_raw_fd();
        let file = region.file.as_raw_fd();
        loop {
            std::task::ready!(self.stream.poll_write_ready(cx))?;
            let result = self.stream.try_io(Interest::WRITABLE, || {
                let mut offset = (region.offset + region.sent) as libc::off_t;
                // SAFETY: both descriptors are open for the duration of the
                // call (the region and the stream own them).
                let sent = unsafe { libc::sendfile(socket, file, &mut offset, buf.len()) };
                if sent < 0 {
                    Err(io::Error::last_os_error())
                } else {
                    Ok(sent as usize)
                }
            });
            match result {
                Ok(0) => {
                    return Poll::Ready(Err(io::Error::new(
                        io::ErrorKind::UnexpectedEof,
                        "a blob's file ended before its recorded length",
                    )))
                }
                Ok(sent) => {
                    region.sent += sent as u64;
                    if region.sent == region.len {
                        queue.pop_front();
                    }
                    SENT.fetch_add(sent as u64, Ordering::Relaxed);
                    return Poll::Ready(Ok(sent));
                }
                Err(error) if error.kind() == io::ErrorKind::WouldBlock => continue,
                Err(error) if error.kind() == io::ErrorKind::Interrupted => continue,
                Err(error) => return Poll::Ready(Err(error)),
            }
        }
    }
}

/// What the accept loop gets from its listener, and how it serves it: a
/// plain TCP stream gets [`SendfileIo`] and a [`FileQueue`], a TLS stream
/// (which must encrypt every byte it sends) stays as it is, with none.
pub trait Transport: Sized {
    type Io: AsyncRead + AsyncWrite + Unpin + Send + 'static;

    /// The connection's I/O, and its queue when it may send files
    /// (`enabled`, from `[server] sendfile`).
    fn prepare(self, enabled: bool) -> (Self::Io, Option<FileQueue>);
}

impl Transport for TcpStream {
    type Io = SendfileIo;

    fn prepare(self, enabled: bool) -> (SendfileIo, Option<FileQueue>) {
        let (io, queue) = SendfileIo::new(self);
        (io, enabled.then_some(queue))
    }
}

impl Transport for tokio_rustls::server::TlsStream<TcpStream> {
    type Io = Self;

    fn prepare(self, _enabled: bool) -> (Self, Option<FileQueue>) {
        (self, None)
    }
}

fn desync(why: &str) -> io::Error {
    io::Error::other(format!(
        "a blob body's placeholder cannot be sent: {why}; the connection is closed rather than send other bytes"
    ))
}

impl AsyncRead for SendfileIo {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        Pin::new(&mut self.stream).poll_read(cx, buf)
    }
}

impl AsyncWrite for SendfileIo {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        match Placeholder::get().offset_of(buf) {
            Some(at) => self.poll_send_region(cx, buf, at),
            None => Pin::new(&mut self.stream).poll_write(cx, buf),
        }
    }

    /// Writes the bytes before the first placeholder as they are, or, when
    /// a placeholder comes first, sends its region. hyper calls again for
    /// the rest.
    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        let placeholder = Placeholder::get();
        let Some(first) = bufs.iter().position(|buf| !buf.is_empty()) else {
            return Pin::new(&mut self.stream).poll_write_vectored(cx, bufs);
        };
        if let Some(at) = placeholder.offset_of(&bufs[first]) {
            return self.poll_send_region(cx, &bufs[first], at);
        }
        let end = bufs[first..]
            .iter()
            .position(|buf| placeholder.offset_of(buf).is_some())
            .map_or(bufs.len(), |i| first + i);
        Pin::new(&mut self.stream).poll_write_vectored(cx, &bufs[first..end])
    }

    fn is_write_vectored(&self) -> bool {
        true
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.stream).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.stream).poll_shutdown(cx)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn placeholders_are_recognised_by_address_only() {
        let placeholder = Placeholder::get();
        let whole = placeholder.bytes(WINDOW);
        assert_eq!(placeholder.offset_of(&whole), Some(0));
        assert_eq!(placeholder.offset_of(&whole[10..20]), Some(10));
        assert_eq!(
            placeholder.offset_of(&whole[WINDOW - 1..]),
            Some(WINDOW - 1)
        );
        // Zeros elsewhere are ordinary bytes, as is an empty slice.
        let zeros = vec![0u8; 4096];
        assert_eq!(placeholder.offset_of(&zeros), None);
        assert_eq!(placeholder.offset_of(&whole[5..5]), None);
    }
}
