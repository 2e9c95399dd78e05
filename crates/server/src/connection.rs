//! What the accept loop ([`crate::run`]) enforces on each connection: the
//! total and per-address caps, and the idle and header timeouts (the body
//! timeout is the request body's, see `serve`).
//!
//! **Caps.** A connection beyond `max_connections`, or beyond
//! `max_connections_per_address` from one client address, is answered
//! `503` with `Retry-After` and closed at once, and counted in
//! `berth_connections_refused{reason}`. Trusted proxies are exempt from the
//! per-address cap (every client behind them shares their address); the
//! total cap holds for everyone. So one address holding idle sockets can
//! take at most its share, never the slots of others.
//!
//! **Timeouts.** hyper's own header-read timer starts as soon as a
//! connection waits for a request, so it would close a kept-alive
//! connection after `header_timeout` however long `idle_timeout` is; and it
//! has no idle timer of its own. Both are enforced here instead, on the
//! connection's reads ([`TimedIo`]), from what the service tells it
//! ([`Activity`]): while no request is in flight a connection may wait
//! `idle_timeout` for the first byte of the next request, and from that
//! byte `header_timeout` for the request to reach the service; while a
//! request is in flight no read deadline applies here (a request body has
//! its own, `body_timeout`, between two of its reads, so a slow upload
//! that keeps progressing is fine, and a response being written is never
//! cut off by a read timer).

use std::collections::HashMap;
use std::future::Future;
use std::io;
use std::net::IpAddr;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::time::{Instant, Sleep};

/// Why a connection was refused.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Refusal {
    /// `max_connections` are open.
    Total,
    /// `max_connections_per_address` are open from this address.
    Address,
}

impl Refusal {
    pub fn label(self) -> &'static str {
        match self {
            Refusal::Total => "total",
            Refusal::Address => "address",
        }
    }
}

/// The open connections, counted in total and per client address.
#[derive(Debug)]
pub struct ConnectionLimits {
    max_total: usize,
    max_per_address: usize,
    trusted_proxies: Vec<ipnet::IpNet>,
    open: Mutex<OpenConnections>,
}

#[derive(Debug, Default)]
struct OpenConnections {
    total: usize,
    per_address: HashMap<IpAddr, usize>,
}

impl ConnectionLimits {
    pub fn new(
        max_total: usize,
        max_per_address: usize,
        trusted_proxies: Vec<ipnet::IpNet>,
    ) -> Arc<ConnectionLimits> {
        Arc::new(ConnectionLimits {
            max_total,
            max_per_address,
            trusted_proxies,
            open: Mutex::new(OpenConnections::default()),
        })
    }

    /// Admits a connection from `peer`, or says why not. The slot is held
    /// until the returned [`ConnectionSlot`] is dropped.
    pub fn admit(self: &Arc<Self>, peer: IpAddr) -> Result<ConnectionSlot, Refusal> {
        let exempt = self.trusted_proxies.iter().any(|net| net.contains(&peer));
        let mut open = self.lock();
        if open.total >= self.max_total {
            return Err(Refusal::Total);
        }
        let from_peer = open.per_address.get(&peer).copied().unwrap_or(0);
        if !exempt && from_peer >= self.max_per_address {
            return Err(Refusal::Address);
        }
        open.total += 1;
        *open.per_address.entry(peer).or_insert(0) += 1;
        Ok(ConnectionSlot {
            limits: Arc::clone(self),
            peer,
        })
    }

    /// Connections open now.
    pub fn open(&self) -> usize {
        self.lock().total
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, OpenConnections> {
        self.open
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}

/// One admitted connection; dropping it frees the slot.
#[derive(Debug)]
pub struct ConnectionSlot {
    limits: Arc<ConnectionLimits>,
    peer: IpAddr,
}

impl Drop for ConnectionSlot {
    fn drop(&mut self) {
        let mut open = self.limits.lock();
        open.total -= 1;
        if let Some(count) = open.per_address.get_mut(&self.peer) {
            *count -= 1;
            if *count == 0 {
                open.per_address.remove(&self.peer);
            }
        }
    }
}

/// The answer to a refused connection: HTTP/1.1, since the request has not
/// been read (an HTTP/2 client sees a closed connection).
pub const REFUSAL_RESPONSE: &[u8] = b"HTTP/1.1 503 Service Unavailable\r\n\
    content-type: application/json\r\nretry-after: 1\r\nconnection: close\r\n\
    content-length: 74\r\n\r\n\
    {\"errors\":[{\"code\":\"UNAVAILABLE\",\"message\":\"too many open connections\"}]}";

/// Answers a refused connection with [`REFUSAL_RESPONSE`] and closes it,
/// giving the client at most a second to take the answer.
pub async fn refuse<I>(mut io: I)
where
    I: AsyncWrite + Unpin,
{
    use tokio::io::AsyncWriteExt;
    let _ = tokio::time::timeout(Duration::from_secs(1), async {
        io.write_all(REFUSAL_RESPONSE).await?;
        io.shutdown().await
    })
    .await;
}

/// Requests in flight on one connection, as the service sees them.
#[derive(Debug, Default)]
pub struct Activity {
    in_flight: AtomicUsize,
    /// Advanced each time the connection becomes idle, so its reader knows a
    /// new wait for a request has begun.
    idle_periods: AtomicU64,
    /// The reader that saw a request in flight and must be woken when the
    /// connection becomes idle, to start the idle deadline: hyper may poll
    /// for the next request before the response's body is dropped.
    waiting_reader: Mutex<Option<std::task::Waker>>,
}

impl Activity {
    /// Marks a request in flight until the guard is dropped (with the
    /// response's body, or the request's future if it never answered).
    pub fn begin(self: &Arc<Self>) -> RequestGuard {
        self.in_flight.fetch_add(1, Ordering::SeqCst);
        RequestGuard {
            activity: Arc::clone(self),
        }
    }
}

/// A request in flight; see [`Activity::begin`].
#[derive(Debug)]
pub struct RequestGuard {
    activity: Arc<Activity>,
}

impl Drop for RequestGuard {
    fn drop(&mut self) {
        if self.activity.in_flight.fetch_sub(1, Ordering::SeqCst) == 1 {
            self.activity.idle_periods.fetch_add(1, Ordering::SeqCst);
            let waker = self
                .activity
                .waiting_reader
                .lock()
                .unwrap_or_else(|poisoned| poisoned.into_inner())
                .take();
            if let Some(waker) = waker {
                waker.wake();
            }
        }
    }
}

/// A connection's IO with the idle and header deadlines on its reads.
pub struct TimedIo<I> {
    inner: I,
    activity: Arc<Activity>,
    idle_timeout: Duration,
    header_timeout: Duration,
    /// The idle period the deadline below belongs to.
    period: u64,
    /// Whether a byte of the next request has arrived in this period.
    request_started: bool,
    deadline: Option<Instant>,
    timer: Pin<Box<Sleep>>,
}

impl<I> TimedIo<I> {
    pub fn new(
        inner: I,
        activity: Arc<Activity>,
        idle_timeout: Duration,
        header_timeout: Duration,
    ) -> TimedIo<I> {
        TimedIo {
            inner,
            activity,
            idle_timeout,
            header_timeout,
            period: 0,
            request_started: false,
            deadline: None,
            timer: Box::pin(tokio::time::sleep(Duration::ZERO)),
        }
    }

    fn set_deadline(&mut self, deadline: Instant) {
        if self.deadline != Some(deadline) {
            self.deadline = Some(deadline);
            self.timer.as_mut().reset(deadline);
        }
    }
}

impl<I: AsyncRead + Unpin> AsyncRead for TimedIo<I> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let before = buf.filled().len();
        let result = Pin::new(&mut self.inner).poll_read(cx, buf);
        if self.activity.in_flight.load(Ordering::SeqCst) > 0 {
            // A request is in flight: its body has its own timeout. Be
            // woken when it ends, to start the idle deadline then.
            self.deadline = None;
            self.request_started = false;
            if result.is_pending() {
                *self
                    .activity
                    .waiting_reader
                    .lock()
                    .unwrap_or_else(|poisoned| poisoned.into_inner()) = Some(cx.waker().clone());
                // The request may have ended meanwhile, with nobody to wake.
                if self.activity.in_flight.load(Ordering::SeqCst) == 0 {
                    cx.waker().wake_by_ref();
                }
            }
            return result;
        }
        let period = self.activity.idle_periods.load(Ordering::SeqCst);
        if period != self.period {
            self.period = period;
            self.request_started = false;
            self.deadline = None;
        }
        match result {
            Poll::Ready(Ok(())) if buf.filled().len() > before => {
                if !self.request_started {
                    self.request_started = true;
                    let deadline = Instant::now() + self.header_timeout;
                    self.set_deadline(deadline);
                }
                Poll::Ready(Ok(()))
            }
            Poll::Ready(other) => Poll::Ready(other),
            Poll::Pending => {
                if self.deadline.is_none() {
                    let deadline = Instant::now() + self.idle_timeout;
                    self.set_deadline(deadline);
                }
                match self.timer.as_mut().poll(cx) {
                    Poll::Ready(()) => {
                        let what = if self.request_started {
                            "request headers not received in time"
                        } else {
                            "connection idle for too long"
                        };
                        Poll::Ready(Err(io::Error::new(io::ErrorKind::TimedOut, what)))
                    }
                    Poll::Pending => Poll::Pending,
                }
            }
        }
    }
}

impl<I: AsyncWrite + Unpin> AsyncWrite for TimedIo<I> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.inner).poll_write(cx, buf)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.inner).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn caps_per_address_and_in_total() {
        let limits = ConnectionLimits::new(4, 2, vec!["10.0.0.0/8".parse().unwrap()]);
        let a: IpAddr = "192.0.2.1".parse().unwrap();
        let b: IpAddr = "192.0.2.2".parse().unwrap();
        let proxy: IpAddr = "10.0.0.1".parse().unwrap();
        let first = limits.admit(a).unwrap();
        let _second = limits.admit(a).unwrap();
        assert_eq!(limits.admit(a).unwrap_err(), Refusal::Address);
        let _other = limits.admit(b).unwrap();
        // The proxy is exempt from the per-address cap, not from the total.
        let _p1 = limits.admit(proxy).unwrap();
        assert_eq!(limits.admit(proxy).unwrap_err(), Refusal::Total);
        assert_eq!(limits.admit(b).unwrap_err(), Refusal::Total);
        drop(first);
        assert_eq!(limits.open(), 3);
        let _again = limits.admit(a).unwrap();
        assert_eq!(limits.open(), 4);
    }
}
