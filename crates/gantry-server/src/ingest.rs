//! The metrics listeners: StatsD (UDP and TCP), Graphite plaintext (TCP and UDP) and pickle
//! (TCP), all writing into the embedded time-series store.
//!
//! StatsD: receive loops only read datagrams (one loop per core on one port, with
//! `SO_REUSEPORT`, so the kernel keeps each sender on one loop and a sender's datagrams stay
//! in order) and hand them, unparsed, to one aggregator task, which parses them in arrival
//! order (gauges depend on order) and flushes every `flush_interval_secs`. Nothing a datagram
//! passes through takes a lock.
//!
//! Bad input never stops a listener: a bad line is counted and logged at a bounded rate, the
//! good lines of the same datagram are kept, a pickle with a forbidden opcode closes only
//! its connection.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use anyhow::Context;
use gantry_statsd::{Aggregator, StatsdConfig};
use gantry_tsdb::Tsdb;
use tokio::io::AsyncReadExt;
use tokio::net::{TcpListener, TcpStream, UdpSocket};
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use crate::config::Listen;

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

/// Accepts connections until shutdown, running `handle` for each on its own task.
fn spawn_accept_loop<F, Fut>(listener: TcpListener, shutdown: CancellationToken, handle: F)
where
    F: Fn(TcpStream, SocketAddr) -> Fut + Send + Sync + 'static,
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
            tokio::spawn(handle(stream, peer));
        }
    });
}

/// The next read from a connection; `None` when the peer closed, the read failed, or the
/// server is shutting down.
async fn next_chunk(
    stream: &mut TcpStream,
    chunk: &mut [u8],
    shutdown: &CancellationToken,
) -> Option<usize> {
    tokio::select! {
        _ = shutdown.cancelled() => None,
        read = stream.read(chunk) => match read {
            Ok(0) | Err(_) => None,
            Ok(n) => Some(n),
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
    TcpListener::bind(addr).await.with_context(|| {
        format!("cannot listen on TCP {addr} (set another address with {flag}, or off)")
    })
}

/// Starts every configured listener; returns where they listen, and the StatsD aggregator
/// task (await it after shutdown so its last flush reaches the store).
pub async fn start(
    statsd_listen: Listen,
    graphite_listen: Listen,
    pickle_listen: Listen,
    statsd: StatsdConfig,
    sink: Sink,
    stats: Arc<IngestStats>,
    shutdown: CancellationToken,
) -> anyhow::Result<(Bound, Option<tokio::task::JoinHandle<()>>)> {
    let mut bound = Bound::default();
    let mut aggregator = None;
    if let Listen::On(addr) = statsd_listen {
        let (local, task) =
            start_statsd(addr, statsd, sink.clone(), stats.clone(), shutdown.clone()).await?;
        bound.statsd = Some(local);
        aggregator = Some(task);
    }
    if let Listen::On(addr) = graphite_listen {
        bound.graphite =
            Some(start_graphite(addr, sink.clone(), stats.clone(), shutdown.clone()).await?);
    }
    if let Listen::On(addr) = pickle_listen {
        bound.pickle = Some(start_pickle(addr, sink, stats, shutdown).await?);
    }
    Ok((bound, aggregator))
}

async fn start_statsd(
    addr: SocketAddr,
    config: StatsdConfig,
    sink: Sink,
    stats: Arc<IngestStats>,
    shutdown: CancellationToken,
) -> anyhow::Result<(SocketAddr, tokio::task::JoinHandle<()>)> {
    let (datagrams, received) = mpsc::channel::<Vec<u8>>(16_384);
    // The TCP listener first: with port 0 it picks the port the UDP sockets then share.
    let tcp = tcp_listener(addr, "--statsd-listen").await?;
    let local = tcp.local_addr()?;
    let loops = std::thread::available_parallelism()
        .map_or(2, |n| n.get())
        .clamp(1, 8);
    for _ in 0..loops {
        let socket = udp_socket(local, true, "--statsd-listen")?;
        let datagrams = datagrams.clone();
        let shutdown = shutdown.clone();
        tokio::spawn(async move {
            let mut buffer = vec![0u8; MAX_DATAGRAM];
            loop {
                tokio::select! {
                    _ = shutdown.cancelled() => return,
                    received = socket.recv_from(&mut buffer) => match received {
                        Ok((n, _)) => {
                            if datagrams.send(buffer[..n].to_vec()).await.is_err() {
                                return;
                            }
                        }
                        Err(e) => tracing::debug!(error = %e, "statsd receive failed"),
                    }
                }
            }
        });
    }
    serve_statsd_tcp(tcp, datagrams, shutdown.clone());
    let aggregator = tokio::spawn(aggregate(
        received,
        config,
        sink,
        stats,
        local.port(),
        shutdown,
    ));
    Ok((local, aggregator))
}

/// StatsD over TCP: complete lines, a read's worth at a time, are one "datagram".
fn serve_statsd_tcp(
    listener: TcpListener,
    datagrams: mpsc::Sender<Vec<u8>>,
    shutdown: CancellationToken,
) {
    let reads = shutdown.clone();
    spawn_accept_loop(listener, shutdown, move |mut stream, _| {
        let (datagrams, shutdown) = (datagrams.clone(), reads.clone());
        async move {
            let mut buffer = gantry_graphite::plaintext::LineBuffer::default();
            let mut chunk = vec![0u8; 64 * 1024];
            while let Some(n) = next_chunk(&mut stream, &mut chunk, &shutdown).await {
                let mut lines = Vec::new();
                buffer.push(&chunk[..n], MAX_LINE, |line| {
                    if let gantry_graphite::plaintext::Line::Complete(l) = line {
                        lines.extend_from_slice(l);
                        lines.push(b'\n');
                    }
                });
                if !lines.is_empty() && datagrams.send(lines).await.is_err() {
                    return;
                }
            }
        }
    });
}

static STATSD_BAD_LOG: RateLimitedLog = RateLimitedLog::new();

/// Datagrams the kernel dropped on UDP sockets bound to `port` (their receive buffers were
/// full), summed over IPv4 and IPv6; `None` where the OS does not say (not Linux).
fn kernel_udp_drops(port: u16) -> Option<u64> {
    let mut total = None;
    for table in ["/proc/net/udp", "/proc/net/udp6"] {
        let Ok(text) = std::fs::read_to_string(table) else {
            continue;
        };
        for line in text.lines().skip(1) {
            let fields: Vec<&str> = line.split_whitespace().collect();
            let Some(local) = fields.get(1) else { continue };
            let local_port = local
                .rsplit(':')
                .next()
                .and_then(|p| u16::from_str_radix(p, 16).ok());
            if local_port == Some(port) {
                if let Some(drops) = fields.last().and_then(|d| d.parse::<u64>().ok()) {
                    *total.get_or_insert(0) += drops;
                }
            }
        }
    }
    total
}

/// Parses and aggregates datagrams in arrival order; flushes into the store on schedule
/// and once more at shutdown.
async fn aggregate(
    mut datagrams: mpsc::Receiver<Vec<u8>>,
    config: StatsdConfig,
    sink: Sink,
    stats: Arc<IngestStats>,
    port: u16,
    shutdown: CancellationToken,
) {
    let interval = Duration::from_secs_f64(config.flush_interval_secs);
    let mut drops_seen = kernel_udp_drops(port).unwrap_or(0);
    let mut aggregator = Aggregator::new(config);
    let mut ticker = tokio::time::interval_at(tokio::time::Instant::now() + interval, interval);
    let mut bad = Vec::new();
    loop {
        tokio::select! {
            received = datagrams.recv() => {
                let Some(datagram) = received else { break };
                let mut samples = Vec::with_capacity(64);
                bad.clear();
                let counts = gantry_statsd::parse(&datagram, aggregator.config(), &mut samples, &mut bad);
                aggregator.record_packet(&counts);
                aggregator.add_all(&samples);
                stats.statsd_datagrams.fetch_add(1, Ordering::Relaxed);
                if counts.bad > 0 {
                    stats.statsd_bad_lines.fetch_add(counts.bad, Ordering::Relaxed);
                    if let Some(first) = bad.first() {
                        if STATSD_BAD_LOG.allow() {
                            tracing::warn!(line = %first.line, reason = first.reason, "bad StatsD line");
                        }
                    }
                }
            }
            _ = ticker.tick() => {
                // What Etsy cannot see: datagrams lost before any loop read them.
                if let Some(drops) = kernel_udp_drops(port) {
                    aggregator.add_to_counter("statsd.kernel_drops", drops.saturating_sub(drops_seen) as f64);
                    stats.statsd_kernel_drops.fetch_add(drops.saturating_sub(drops_seen), Ordering::Relaxed);
                    drops_seen = drops;
                }
                flush(&mut aggregator, &sink);
            }
            _ = shutdown.cancelled() => break,
        }
    }
    flush(&mut aggregator, &sink);
}

fn flush(aggregator: &mut Aggregator, sink: &Sink) {
    let now = unix_now();
    let points = aggregator.flush(now);
    let points: Vec<(&str, i64, f64)> = points
        .iter()
        .map(|p| (p.name.as_str(), now, p.value))
        .collect();
    sink.write(&points);
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
        match gantry_graphite::plaintext::parse_line(line, now) {
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
        .map(|p| (p.path.as_str(), p.timestamp, p.value))
        .collect();
    sink.write(&points);
}

async fn start_graphite(
    addr: SocketAddr,
    sink: Sink,
    stats: Arc<IngestStats>,
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
                        write_plaintext(buffer[..n].split(|&b| b == b'\n').map(|l| l.strip_suffix(b"\r").unwrap_or(l)), &sink, &stats);
                    }
                }
            }
        });
    }
    let reads = shutdown.clone();
    spawn_accept_loop(tcp, shutdown, move |mut stream, _| {
        let (sink, stats, shutdown) = (sink.clone(), stats.clone(), reads.clone());
        async move {
            let mut buffer = gantry_graphite::plaintext::LineBuffer::default();
            let mut chunk = vec![0u8; 64 * 1024];
            while let Some(n) = next_chunk(&mut stream, &mut chunk, &shutdown).await {
                let mut lines: Vec<Vec<u8>> = Vec::new();
                buffer.push(&chunk[..n], MAX_LINE, |line| match line {
                    gantry_graphite::plaintext::Line::Complete(l) => lines.push(l.to_vec()),
                    gantry_graphite::plaintext::Line::TooLong => {
                        stats.graphite_bad_lines.fetch_add(1, Ordering::Relaxed);
                    }
                });
                write_plaintext(lines.iter().map(Vec::as_slice), &sink, &stats);
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
    shutdown: CancellationToken,
) -> anyhow::Result<SocketAddr> {
    let tcp = tcp_listener(addr, "--pickle-listen").await?;
    let local = tcp.local_addr()?;
    let reads = shutdown.clone();
    spawn_accept_loop(tcp, shutdown, move |mut stream, peer| {
        let (sink, stats, shutdown) = (sink.clone(), stats.clone(), reads.clone());
        async move {
            let mut frames = gantry_graphite::pickle::FrameBuffer::default();
            let mut chunk = vec![0u8; 64 * 1024];
            while let Some(n) = next_chunk(&mut stream, &mut chunk, &shutdown).await {
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_kernel_drops_for_a_bound_port() {
        let socket = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
        let port = socket.local_addr().unwrap().port();
        if cfg!(target_os = "linux") {
            assert_eq!(kernel_udp_drops(port), Some(0));
        }
        drop(socket);
        assert_eq!(kernel_udp_drops(port), None);
    }
}
