//! The metrics listeners: StatsD (UDP and TCP), Graphite plaintext (TCP and UDP) and pickle
//! (TCP), all writing into the embedded time-series store.
//!
//! StatsD (`statsd`): one receive thread per core on one port (`SO_REUSEPORT`, so the
//! kernel keeps each sender on one thread and a sender's datagrams stay in order), each
//! parsing and aggregating its own datagrams into its own shard, merged at every flush.
//! Nothing a datagram passes through is shared between threads.
//!
//! Bad input never stops a listener: a bad line is counted and logged at a bounded rate, the
//! good lines of the same datagram are kept, a pickle with a forbidden opcode closes only
//! its connection.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

mod statsd;

use anyhow::Context;
use gantry_statsd::StatsdConfig;
use gantry_tsdb::Tsdb;
use tokio::io::AsyncReadExt;
use tokio::net::{TcpListener, TcpStream, UdpSocket};
use tokio_util::sync::CancellationToken;

use crate::config::Listen;
use crate::limits::{LimitsConfig, MetricsLimit};
use crate::metrics::ConnectionsClosed;

/// Counters of what the listeners received, shown at `/metrics`.
#[derive(Debug, Default)]
pub struct IngestStats {
    pub statsd_datagrams: AtomicU64,
    pub statsd_bad_lines: AtomicU64,
    /// Datagrams the kernel dropped on the StatsD port (Linux).
    pub statsd_kernel_drops: AtomicU64,
    pub graphite_points: AtomicU64,
    pub graphite_bad_lines: AtomicU64,
    pub pickle_refused: AtomicU64,
}

/// Where received points go: the embedded store, and any `[metrics.forward]` destinations.
#[derive(Clone)]
pub struct Sink {
    pub tsdb: Arc<Tsdb>,
    pub forward: crate::forward::Forwarders,
}

impl Sink {
    pub fn write(&self, points: &[(&str, i64, f64)]) {
        self.tsdb.write(points.iter().copied());
        self.forward.send(points.iter().copied());
    }
}

/// The addresses the listeners actually bound (port 0 resolved).
#[derive(Debug, Default, Clone)]
pub struct Bound {
    pub statsd: Option<SocketAddr>,
    pub graphite: Option<SocketAddr>,
    pub pickle: Option<SocketAddr>,
}

/// Largest datagram read; bigger ones are cut by the kernel (and counted bad by the parser).
const MAX_DATAGRAM: usize = 65_536;
/// Longest line accepted on a TCP stream.
const MAX_LINE: usize = 65_536;
/// Largest pickle frame accepted.
const MAX_PICKLE_FRAME: usize = 16 * 1024 * 1024;
/// Receive buffer asked of the kernel for UDP sockets.
const UDP_RECEIVE_BUFFER: usize = 16 * 1024 * 1024;

fn unix_now() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs() as i64)
}

/// Logs at most a few messages a minute per kind, counting the rest.
pub struct RateLimitedLog {
    window: Mutex<Option<(Instant, u32)>>,
}

impl RateLimitedLog {
    pub const fn new() -> RateLimitedLog {
        RateLimitedLog {
            window: Mutex::new(None),
        }
    }

    pub fn allow(&self) -> bool {
        let Ok(mut guard) = self.window.lock() else {
            return false;
        };
        let window = guard.get_or_insert_with(|| (Instant::now(), 0));
        if window.0.elapsed() > Duration::from_secs(60) {
            *window = (Instant::now(), 0);
        }
        window.1 += 1;
        window.1 <= 5
    }
}

impl Default for RateLimitedLog {
    fn default() -> Self {
        RateLimitedLog::new()
    }
}

fn udp_socket(addr: SocketAddr, reuse_port: bool, flag: &str) -> anyhow::Result<UdpSocket> {
    use socket2::{Domain, Protocol, Socket, Type};
    let socket = Socket::new(Domain::for_address(addr), Type::DGRAM, Some(Protocol::UDP))?;
    #[cfg(unix)]
    if reuse_port {
        socket.set_reuse_port(true)?;
    }
    let _ = socket.set_recv_buffer_size(UDP_RECEIVE_BUFFER);
    socket.set_nonblocking(true)?;
    socket.bind(&addr.into()).with_context(|| {
        format!("cannot listen on UDP {addr} (set another address with {flag}, or off)")
    })?;
    Ok(UdpSocket::from_std(socket.into())?)
}

/// Accepts connections until shutdown, running `handle` for each on its own task while it
/// holds one of the port's permits; a connection past `limit` is closed at once.
fn spawn_accept_loop<F, Fut>(
    listener: TcpListener,
    shutdown: CancellationToken,
    limit: MetricsLimit,
    handle: F,
) where
    F: Fn(TcpStream, SocketAddr, MetricsLimit) -> Fut + Send + Sync + 'static,
    Fut: std::future::Future<Output = ()> + Send + 'static,
{
    tokio::spawn(async move {
        loop {
            let (stream, peer) = tokio::select! {
                _ = shutdown.cancelled() => return,
                accepted = listener.accept() => match accepted {
                    Ok(a) => a,
                    Err(_) => continue,
                },
            };
            let Some(permit) = limit.admit() else {
                drop(stream);
                continue;
            };
            let connection = handle(stream, peer, limit.clone());
            tokio::spawn(async move {
                connection.await;
                drop(permit);
            });
        }
    });
}

/// Bytes read from a metrics connection at a time.
const CHUNK: usize = 64 * 1024;

/// The next read from a connection into `chunk` (given its room on the first read, so an
/// idle connection holds no buffer); `None` when the peer closed, the read failed, it sent
/// nothing for the idle timeout, or the server is shutting down.
async fn next_chunk(
    stream: &mut TcpStream,
    chunk: &mut Vec<u8>,
    shutdown: &CancellationToken,
    limit: &MetricsLimit,
) -> Option<usize> {
    if chunk.is_empty() {
        tokio::select! {
            _ = shutdown.cancelled() => return None,
            ready = tokio::time::timeout(limit.idle, stream.readable()) => match ready {
                Ok(Ok(())) => chunk.resize(CHUNK, 0),
                Ok(Err(_)) => return None,
                Err(_) => {
                    limit.idle_closed();
                    return None;
                }
            },
        }
    }
    tokio::select! {
        _ = shutdown.cancelled() => None,
        read = tokio::time::timeout(limit.idle, stream.read(chunk)) => match read {
            Ok(Ok(0)) | Ok(Err(_)) => None,
            Ok(Ok(n)) => Some(n),
            Err(_) => {
                limit.idle_closed();
                None
            }
        },
    }
}

/// Waits while the store's write queue is full, so a TCP sender is slowed (its socket is
/// not read, and the kernel's flow control holds it back) rather than memory growing.
/// Everything already read is queued; returns at once on shutdown.
async fn wait_for_room(sink: &Sink, shutdown: &CancellationToken) {
    while !sink.tsdb.has_room() {
        tokio::select! {
            _ = shutdown.cancelled() => return,
            _ = tokio::time::sleep(Duration::from_millis(1)) => {}
        }
    }
}

async fn tcp_listener(addr: SocketAddr, flag: &str) -> anyhow::Result<TcpListener> {
    let listener = crate::limits::tcp_listener(addr).with_context(|| {
        format!("cannot listen on TCP {addr} (set another address with {flag}, or off)")
    })?;
    Ok(TcpListener::from_std(listener)?)
}

/// Starts every configured listener; returns where they listen, and the StatsD aggregator
/// task (await it after shutdown so its last flush reaches the store).
#[allow(clippy::too_many_arguments)]
pub async fn start(
    statsd_listen: Listen,
    graphite_listen: Listen,
    pickle_listen: Listen,
    statsd: StatsdConfig,
    sink: Sink,
    stats: Arc<IngestStats>,
    limits: (&LimitsConfig, ConnectionsClosed),
    shutdown: CancellationToken,
) -> anyhow::Result<(Bound, Option<tokio::task::JoinHandle<()>>)> {
    let (limits, closed) = limits;
    let limit = |listener| MetricsLimit::new(listener, limits, closed.clone());
    let mut bound = Bound::default();
    let mut aggregator = None;
    if let Listen::On(addr) = statsd_listen {
        let (local, task) = statsd::start(
            addr,
            statsd,
            sink.clone(),
            stats.clone(),
            limit("statsd"),
            shutdown.clone(),
        )
        .await?;
        bound.statsd = Some(local);
        aggregator = Some(task);
    }
    if let Listen::On(addr) = graphite_listen {
        bound.graphite = Some(
            start_graphite(
                addr,
                sink.clone(),
                stats.clone(),
                limit("graphite"),
                shutdown.clone(),
            )
            .await?,
        );
    }
    if let Listen::On(addr) = pickle_listen {
        bound.pickle = Some(start_pickle(addr, sink, stats, limit("pickle"), shutdown).await?);
    }
    Ok((bound, aggregator))
}

static GRAPHITE_BAD_LOG: RateLimitedLog = RateLimitedLog::new();

/// Parses plaintext lines, writes the good ones, counts and logs the bad ones.
fn write_plaintext<'a>(lines: impl Iterator<Item = &'a [u8]>, sink: &Sink, stats: &IngestStats) {
    let now = unix_now();
    let mut points = Vec::new();
    for line in lines {
        if line.is_empty() {
            continue;
        }
        match gantry_graphite::plaintext::parse_line_borrowed(line, now) {
            Ok(p) => points.push(p),
            Err(e) => {
                stats.graphite_bad_lines.fetch_add(1, Ordering::Relaxed);
                if GRAPHITE_BAD_LOG.allow() {
                    tracing::warn!(line = %String::from_utf8_lossy(&line[..line.len().min(200)]), reason = %e, "bad Graphite line");
                }
            }
        }
    }
    stats
        .graphite_points
        .fetch_add(points.len() as u64, Ordering::Relaxed);
    let points: Vec<(&str, i64, f64)> = points
        .iter()
        .map(|p| (p.path.as_ref(), p.timestamp, p.value))
        .collect();
    sink.write(&points);
}

async fn start_graphite(
    addr: SocketAddr,
    sink: Sink,
    stats: Arc<IngestStats>,
    limit: MetricsLimit,
    shutdown: CancellationToken,
) -> anyhow::Result<SocketAddr> {
    let tcp = tcp_listener(addr, "--graphite-listen").await?;
    let local = tcp.local_addr()?;
    let udp = udp_socket(local, false, "--graphite-listen")?;
    {
        let (sink, stats, shutdown) = (sink.clone(), stats.clone(), shutdown.clone());
        tokio::spawn(async move {
            let mut buffer = vec![0u8; MAX_DATAGRAM];
            loop {
                tokio::select! {
                    _ = shutdown.cancelled() => return,
                    received = udp.recv_from(&mut buffer) => if let Ok((n, _)) = received {
                        write_plaintext(gantry_graphite::plaintext::split_lines(&buffer[..n]), &sink, &stats);
                    }
                }
            }
        });
    }
    let reads = shutdown.clone();
    spawn_accept_loop(tcp, shutdown, limit, move |mut stream, _, limit| {
        let (sink, stats, shutdown) = (sink.clone(), stats.clone(), reads.clone());
        async move {
            let mut buffer = gantry_graphite::plaintext::LineBuffer::default();
            let mut chunk = Vec::new();
            let mut lines = gantry_graphite::plaintext::Lines::default();
            while let Some(n) = next_chunk(&mut stream, &mut chunk, &shutdown, &limit).await {
                lines.clear();
                let too_long = buffer.push_lines(&chunk[..n], MAX_LINE, &mut lines);
                stats
                    .graphite_bad_lines
                    .fetch_add(too_long as u64, Ordering::Relaxed);
                write_plaintext(lines.iter(), &sink, &stats);
                wait_for_room(&sink, &shutdown).await;
            }
            // A half line left when the client went away is not a point.
            if buffer.has_partial() {
                stats.graphite_bad_lines.fetch_add(1, Ordering::Relaxed);
            }
        }
    });
    Ok(local)
}

async fn start_pickle(
    addr: SocketAddr,
    sink: Sink,
    stats: Arc<IngestStats>,
    limit: MetricsLimit,
    shutdown: CancellationToken,
) -> anyhow::Result<SocketAddr> {
    let tcp = tcp_listener(addr, "--pickle-listen").await?;
    let local = tcp.local_addr()?;
    let reads = shutdown.clone();
    spawn_accept_loop(tcp, shutdown, limit, move |mut stream, peer, limit| {
        let (sink, stats, shutdown) = (sink.clone(), stats.clone(), reads.clone());
        async move {
            let mut frames = gantry_graphite::pickle::FrameBuffer::default();
            let mut chunk = Vec::new();
            while let Some(n) = next_chunk(&mut stream, &mut chunk, &shutdown, &limit).await {
                let mut refused = None;
                let framed = frames.push(&chunk[..n], MAX_PICKLE_FRAME, |payload| {
                    if refused.is_some() {
                        return;
                    }
                    match gantry_graphite::pickle::decode(payload, unix_now()) {
                        Ok(decoded) => {
                            stats
                                .graphite_points
                                .fetch_add(decoded.points.len() as u64, Ordering::Relaxed);
                            stats
                                .graphite_bad_lines
                                .fetch_add(decoded.bad as u64, Ordering::Relaxed);
                            let points: Vec<(&str, i64, f64)> = decoded
                                .points
                                .iter()
                                .map(|p| (p.path.as_str(), p.timestamp, p.value))
                                .collect();
                            sink.write(&points);
                        }
                        Err(e) => refused = Some(e.to_string()),
                    }
                });
                if let Err(len) = framed {
                    refused = Some(format!(
                        "a pickle frame of {len} bytes is over the {MAX_PICKLE_FRAME} byte limit"
                    ));
                }
                if let Some(reason) = refused {
                    stats.pickle_refused.fetch_add(1, Ordering::Relaxed);
                    tracing::error!(%peer, %reason, "closing a pickle connection");
                    return;
                }
                wait_for_room(&sink, &shutdown).await;
            }
        }
    });
    Ok(local)
}
