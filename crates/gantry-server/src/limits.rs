//! Limits on clients that hold resources without using them: connections past a cap, a
//! request head or body that trickles in, a response nobody reads, a metrics connection
//! that sends nothing. Each is a `[limits]` key (docs/configuration.md); what it refuses is
//! counted and logged (rate-limited), and the server keeps serving everyone else.
//!
//! - HTTP: [`Acceptor`] holds one permit of `max_connections` per connection (a connection
//!   past the cap is closed at once, before any TLS handshake) and [`Guarded`] closes a new
//!   connection that sends nothing for `header_read_timeout_secs`, and one whose writes make
//!   no progress for `sse_write_stall_secs` (a client that never reads its change stream);
//!   hyper closes one whose request head takes longer than `header_read_timeout_secs` (an
//!   idle keep-alive connection included), and [`stall_body`] fails a request whose body
//!   stops arriving for `body_read_timeout_secs`.
//! - Metrics TCP ports (StatsD, Graphite plaintext, pickle): [`MetricsLimit`], a cap of
//!   `metrics_max_connections` per port and an idle timeout of `metrics_idle_timeout_secs`.
//! - At start-up [`raise_open_files`] lifts the soft open-files limit to the hard one, since
//!   each connection holds a descriptor.

use std::future::Future;
use std::io;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use axum::body::Body;
use axum::extract::Request;
use serde::{Deserialize, Serialize};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::TcpStream;
use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use tokio::time::Sleep;

use crate::ingest::RateLimitedLog;
use crate::metrics::{connection_closed, ConnectionsClosed};

/// The `[limits]` section.
#[derive(Debug, Clone, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct LimitsConfig {
    /// Most HTTP connections open at once; one past it is closed as soon as it is accepted.
    pub max_connections: usize,
    /// Most connections open at once on each metrics TCP port (StatsD, Graphite, pickle).
    pub metrics_max_connections: usize,
    /// Longest time a client may take to send a request's head (the request line and
    /// headers), counted from when the connection is ready for it: an idle keep-alive
    /// connection is closed after it too.
    pub header_read_timeout_secs: u64,
    /// Longest pause while a request's body arrives; past it the request fails.
    pub body_read_timeout_secs: u64,
    /// Longest a response may wait for the client to read it (a change stream's client that
    /// stopped reading); past it the connection is closed.
    pub sse_write_stall_secs: u64,
    /// A metrics TCP connection that sends nothing for this long is closed.
    pub metrics_idle_timeout_secs: u64,
}

impl Default for LimitsConfig {
    fn default() -> Self {
        LimitsConfig {
            max_connections: 10_000,
            metrics_max_connections: 10_000,
            header_read_timeout_secs: 30,
            body_read_timeout_secs: 60,
            sse_write_stall_secs: 60,
            metrics_idle_timeout_secs: 600,
        }
    }
}

impl LimitsConfig {
    /// Every limit must be above zero (a zero would refuse everything).
    pub fn validate(&self) -> Result<(), String> {
        let keys = [
            ("max_connections", self.max_connections as u64),
            (
                "metrics_max_connections",
                self.metrics_max_connections as u64,
            ),
            ("header_read_timeout_secs", self.header_read_timeout_secs),
            ("body_read_timeout_secs", self.body_read_timeout_secs),
            ("sse_write_stall_secs", self.sse_write_stall_secs),
            ("metrics_idle_timeout_secs", self.metrics_idle_timeout_secs),
        ];
        for (key, value) in keys {
            if value == 0 {
                return Err(format!("limits.{key} must be greater than 0"));
            }
        }
        Ok(())
    }
}

static REFUSED_LOG: RateLimitedLog = RateLimitedLog::new();

/// The HTTP acceptor: a connection past the cap is closed at once; the others go through
/// `inner` (the TLS handshake, when the server serves TLS) and then carry their permit, the
/// first-request and the write-stall limits.
#[derive(Clone)]
pub struct Acceptor<A> {
    inner: A,
    permits: Arc<Semaphore>,
    first_request: Duration,
    stall: Duration,
    closed: ConnectionsClosed,
}

impl<A> Acceptor<A> {
    pub fn new(inner: A, config: &LimitsConfig, closed: ConnectionsClosed) -> Acceptor<A> {
        Acceptor {
            inner,
            permits: Arc::new(Semaphore::new(config.max_connections)),
            first_request: Duration::from_secs(config.header_read_timeout_secs),
            stall: Duration::from_secs(config.sse_write_stall_secs),
            closed,
        }
    }
}

impl<A, S> axum_server::accept::Accept<TcpStream, S> for Acceptor<A>
where
    A: axum_server::accept::Accept<TcpStream, S> + Clone + Send + Sync + 'static,
    A::Future: Send + 'static,
    A::Stream: Send + 'static,
    A::Service: Send + 'static,
    S: Send + 'static,
{
    type Stream = Guarded<A::Stream>;
    type Service = A::Service;
    type Future = futures::future::BoxFuture<'static, io::Result<(Self::Stream, Self::Service)>>;

    fn accept(&self, stream: TcpStream, service: S) -> Self::Future {
        let Ok(permit) = self.permits.clone().try_acquire_owned() else {
            connection_closed(&self.closed, "http", "limit");
            if REFUSED_LOG.allow() {
                tracing::warn!(
                    peer = ?stream.peer_addr().ok(),
                    "closing an HTTP connection: limits.max_connections are open"
                );
            }
            return Box::pin(std::future::ready(Err(io::Error::other(
                "too many connections",
            ))));
        };
        let accepted = self.inner.accept(stream, service);
        let (first_request, stall, closed) = (self.first_request, self.stall, self.closed.clone());
        Box::pin(async move {
            let (stream, service) = accepted.await?;
            let guarded = Guarded {
                inner: stream,
                _permit: permit,
                first_request: Some(Box::pin(tokio::time::sleep(first_request))),
                stall,
                waiting: None,
                closed,
            };
            Ok((guarded, service))
        })
    }
}

/// A connection holding its permit. Until its first bytes arrive it waits at most the
/// header timeout (hyper's own header timeout starts only once it knows the protocol, which
/// takes a first read); its writes fail once they have waited `stall` for the client to
/// read.
pub struct Guarded<T> {
    inner: T,
    _permit: OwnedSemaphorePermit,
    first_request: Option<Pin<Box<Sleep>>>,
    stall: Duration,
    waiting: Option<Pin<Box<Sleep>>>,
    closed: ConnectionsClosed,
}

impl<T> Guarded<T> {
    /// After a write came back pending: whether it has now waited too long.
    fn stalled(&mut self, cx: &mut Context<'_>) -> bool {
        let stall = self.stall;
        let waiting = self
            .waiting
            .get_or_insert_with(|| Box::pin(tokio::time::sleep(stall)));
        if waiting.as_mut().poll(cx).is_ready() {
            self.waiting = None;
            connection_closed(&self.closed, "http", "stalled");
            return true;
        }
        false
    }

    fn written<R>(
        &mut self,
        cx: &mut Context<'_>,
        result: Poll<io::Result<R>>,
    ) -> Poll<io::Result<R>> {
        match result {
            Poll::Pending if self.stalled(cx) => Poll::Ready(Err(io::Error::new(
                io::ErrorKind::TimedOut,
                "the client stopped reading (limits.sse_write_stall_secs)",
            ))),
            Poll::Pending => Poll::Pending,
            ready => {
                self.waiting = None;
                ready
            }
        }
    }
}

impl<T: AsyncRead + Unpin> AsyncRead for Guarded<T> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let before = buf.filled().len();
        let result = Pin::new(&mut self.inner).poll_read(cx, buf);
        if let Some(first) = self.first_request.as_mut() {
            match &result {
                Poll::Ready(Ok(())) if buf.filled().len() > before => self.first_request = None,
                Poll::Pending if first.as_mut().poll(cx).is_ready() => {
                    self.first_request = None;
                    connection_closed(&self.closed, "http", "idle");
                    return Poll::Ready(Err(io::Error::new(
                        io::ErrorKind::TimedOut,
                        "no request arrived (limits.header_read_timeout_secs)",
                    )));
                }
                _ => {}
            }
        }
        result
    }
}

impl<T: AsyncWrite + Unpin> AsyncWrite for Guarded<T> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let result = Pin::new(&mut self.inner).poll_write(cx, buf);
        self.written(cx, result)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        let result = Pin::new(&mut self.inner).poll_write_vectored(cx, bufs);
        self.written(cx, result)
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let result = Pin::new(&mut self.inner).poll_flush(cx);
        self.written(cx, result)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}

/// Middleware: a request body that stops arriving for `stall` fails (the extractor reading
/// it answers 400 naming the limit) instead of holding its task forever.
pub fn stall_body(stall: Duration) -> impl Fn(Request) -> Request + Clone {
    move |request: Request| {
        request.map(|inner| {
            Body::new(StallBody {
                inner,
                stall,
                waiting: None,
            })
        })
    }
}

/// A request body whose frames may not pause longer than `stall`.
struct StallBody {
    inner: Body,
    stall: Duration,
    waiting: Option<Pin<Box<Sleep>>>,
}

impl http_body::Body for StallBody {
    type Data = axum::body::Bytes;
    type Error = axum::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<http_body::Frame<Self::Data>, Self::Error>>> {
        match Pin::new(&mut self.inner).poll_frame(cx) {
            Poll::Pending => {
                let stall = self.stall;
                let waiting = self
                    .waiting
                    .get_or_insert_with(|| Box::pin(tokio::time::sleep(stall)));
                if waiting.as_mut().poll(cx).is_pending() {
                    return Poll::Pending;
                }
                self.waiting = None;
                Poll::Ready(Some(Err(axum::Error::new(io::Error::new(
                    io::ErrorKind::TimedOut,
                    format!(
                        "the request body stopped arriving for {} s (limits.body_read_timeout_secs)",
                        stall.as_secs()
                    ),
                )))))
            }
            ready => {
                self.waiting = None;
                ready
            }
        }
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> http_body::SizeHint {
        self.inner.size_hint()
    }
}

/// One metrics TCP port's limits: a connection past the cap is closed at once, and reads
/// wait at most the idle timeout.
#[derive(Clone)]
pub struct MetricsLimit {
    /// `statsd`, `graphite` or `pickle`.
    listener: &'static str,
    permits: Arc<Semaphore>,
    pub idle: Duration,
    closed: ConnectionsClosed,
}

impl MetricsLimit {
    pub fn new(
        listener: &'static str,
        config: &LimitsConfig,
        closed: ConnectionsClosed,
    ) -> MetricsLimit {
        MetricsLimit {
            listener,
            permits: Arc::new(Semaphore::new(config.metrics_max_connections)),
            idle: Duration::from_secs(config.metrics_idle_timeout_secs),
            closed,
        }
    }

    /// A permit for a new connection, or `None` (counted and logged) when the port is full.
    pub fn admit(&self) -> Option<OwnedSemaphorePermit> {
        let permit = self.permits.clone().try_acquire_owned().ok();
        if permit.is_none() {
            connection_closed(&self.closed, self.listener, "limit");
            if REFUSED_LOG.allow() {
                tracing::warn!(
                    listener = self.listener,
                    "closing a metrics connection: limits.metrics_max_connections are open"
                );
            }
        }
        permit
    }

    /// Counts a connection closed for sending nothing for the idle timeout.
    pub fn idle_closed(&self) {
        connection_closed(&self.closed, self.listener, "idle");
    }
}

/// Connections the kernel queues for a listener before the server accepts them. The
/// standard library's 128 overflows when many clients connect at once (agents after a
/// restart): the ones past it wait for the handshake to be retried, seconds later.
pub const LISTEN_BACKLOG: i32 = 4096;

/// A non-blocking TCP listener on `addr` with [`LISTEN_BACKLOG`].
pub fn tcp_listener(addr: std::net::SocketAddr) -> io::Result<std::net::TcpListener> {
    use socket2::{Domain, Socket, Type};
    let socket = Socket::new(Domain::for_address(addr), Type::STREAM, None)?;
    #[cfg(unix)]
    socket.set_reuse_address(true)?;
    socket.bind(&addr.into())?;
    socket.listen(LISTEN_BACKLOG)?;
    socket.set_nonblocking(true)?;
    Ok(socket.into())
}

/// Raises the soft limit on open files to the hard one (each connection holds a
/// descriptor); returns the limit now in force.
pub fn raise_open_files() -> io::Result<libc::rlim_t> {
    let mut limit = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit writes one rlimit into the struct it is given.
    if unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut limit) } != 0 {
        return Err(io::Error::last_os_error());
    }
    if limit.rlim_cur < limit.rlim_max {
        let raised = libc::rlimit {
            rlim_cur: limit.rlim_max,
            rlim_max: limit.rlim_max,
        };
        // SAFETY: setrlimit reads the rlimit it is given.
        if unsafe { libc::setrlimit(libc::RLIMIT_NOFILE, &raised) } != 0 {
            return Err(io::Error::last_os_error());
        }
        limit = raised;
    }
    Ok(limit.rlim_cur)
}

#[cfg(test)]
mod tests {
    use super::*;
    use http_body::Body as _;

    #[test]
    fn a_zero_limit_is_refused() {
        assert_eq!(LimitsConfig::default().validate(), Ok(()));
        let config = LimitsConfig {
            sse_write_stall_secs: 0,
            ..LimitsConfig::default()
        };
        assert!(config
            .validate()
            .unwrap_err()
            .contains("sse_write_stall_secs"));
    }

    #[test]
    fn the_open_files_limit_is_raised_to_the_hard_one() {
        let now = raise_open_files().unwrap();
        let mut limit = libc::rlimit {
            rlim_cur: 0,
            rlim_max: 0,
        };
        // SAFETY: as in raise_open_files.
        assert_eq!(
            unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut limit) },
            0
        );
        assert_eq!(limit.rlim_cur, limit.rlim_max);
        assert_eq!(now, limit.rlim_cur);
    }

    #[tokio::test]
    async fn an_empty_body_reads_as_empty_however_often_it_is_polled() {
        let request = stall_body(Duration::from_secs(1))(Request::new(Body::empty()));
        let mut body = request.into_body();
        assert!(http_body::Body::is_end_stream(&body));
        for _ in 0..3 {
            assert!(
                futures::future::poll_fn(|cx| Pin::new(&mut body).poll_frame(cx))
                    .await
                    .is_none()
            );
        }
    }

    #[tokio::test]
    async fn a_body_that_stops_arriving_fails() {
        let (tx, rx) = tokio::sync::mpsc::channel::<Result<axum::body::Bytes, io::Error>>(1);
        tx.send(Ok(axum::body::Bytes::from_static(b"abc")))
            .await
            .unwrap();
        let body = Body::from_stream(tokio_stream::wrappers::ReceiverStream::new(rx));
        let request = stall_body(Duration::from_millis(100))(Request::new(body));
        let read = axum::body::to_bytes(request.into_body(), 1024).await;
        let err = read.unwrap_err().to_string();
        assert!(err.contains("body_read_timeout_secs"), "{err}");
        drop(tx);
    }
}
