//! The StatsD listener: receive threads over UDP, a TCP listener, and the flusher.
//!
//! Each receive thread owns one UDP socket on the StatsD port (`SO_REUSEPORT`: the kernel
//! hashes each sender to one socket, so one sender's datagrams stay in order) and one
//! [`Shard`]. It reads datagrams in batches (`recvmmsg` on Linux: one system call for
//! every datagram waiting), parses each batch once and folds it into its shard; nothing on
//! that path is shared with another thread. At every flush the flusher bumps a generation
//! number and wakes every thread (a `mio` waker beside its socket, so an idle thread
//! sleeps until a datagram or the flusher comes, never on a timer); each thread then hands
//! its shard over and starts a new one. The flusher merges the shards (gauges in the order
//! their updates arrived, see `gantry_statsd`), adds its own counters and writes the points
//! to the store.
//!
//! StatsD over TCP is rare and per connection: connections pass complete lines to the
//! flusher, which folds them into a shard of its own.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant};

use anyhow::Context;
use gantry_statsd::{Aggregator, Flushed, ParseCounts, Sample, Shard, StatsdConfig};
use tokio::net::TcpListener;
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use crate::limits::MetricsLimit;

use super::{
    next_chunk, spawn_accept_loop, tcp_listener, unix_now, IngestStats, RateLimitedLog, Sink,
    MAX_DATAGRAM, MAX_LINE, UDP_RECEIVE_BUFFER,
};

/// Datagrams one receive call may return.
const BATCH_DATAGRAMS: usize = 32;
/// How long an idle receive thread sleeps before looking for a flush or shutdown on its own.
/// The flusher wakes it for both, so this only bounds a lost wake-up; it is longer than
/// [`HANDOFF_WAIT`] so that one would show as a late shard, not pass unseen.
const IDLE_WAIT: Duration = Duration::from_secs(5);
/// The poll token of a thread's socket; its waker has the other.
const SOCKET: mio::Token = mio::Token(0);
const WAKE: mio::Token = mio::Token(1);
/// After a batch that did not fill, a receive thread lets datagrams gather before reading
/// again: at moderate rates, waking for a few datagrams costs more than parsing them. What
/// a wake-up costs is mostly the thread's tables coming back into cache: the longer the
/// pause, the more lines share that cost (measured at 50,000 lines/s: a 5 ms pause cost
/// 1.43 CPU-seconds per million lines, 20 ms 0.86, 50 ms 0.75–0.82 before keys were looked
/// up by identity; later 42 ms 0.38–0.41, 100 ms 0.28–0.36, 150 ms 0.29–0.33 and 200 ms
/// 0.25–0.31). [`Gather`] picks the pause between these bounds.
const MIN_GATHER: Duration = Duration::from_millis(1);
const MAX_GATHER: Duration = Duration::from_millis(200);
/// A pause is taken in slices this long; after each the thread looks at its socket's
/// buffer and at the flusher, and reads at once when either needs it.
const GATHER_SLICE: Duration = Duration::from_millis(40);
/// The share of the socket's buffer that ends a pause early: traffic would have to jump
/// to dozens of times its rate within one slice to fill the rest.
const GATHER_FILL: f64 = 0.25;
/// Where the buffer cannot be watched (not Linux), a pause never lets more than half of it
/// fill at this many times the rate the thread last saw.
const GATHER_HEADROOM: f64 = 8.0;

/// The pause of a receive thread between reads: it doubles after every pause (from
/// [`MIN_GATHER`] after a quiet spell longer than the pause) up to [`MAX_GATHER`], but is cut short by the
/// flusher, or once the socket's buffer is [`GATHER_FILL`] full (Linux; elsewhere it is
/// bounded by the rate last seen, see [`GATHER_HEADROOM`]). While batches fill, the thread
/// reads again without pausing.
#[derive(Debug)]
struct Gather {
    /// Payload bytes the socket's buffer holds before the kernel drops (half of what
    /// `SO_RCVBUF` reports: the kernel counts its own overhead against the rest).
    budget: f64,
    pause: Duration,
    /// Bytes read since the last pause began (they arrived since then), and when that was.
    bytes: u64,
    since: Instant,
}

impl Gather {
    fn new(socket: &mio::net::UdpSocket) -> Gather {
        let reported = socket2::SockRef::from(socket)
            .recv_buffer_size()
            .unwrap_or(0);
        Gather::with_budget(reported as f64 / 2.0)
    }

    fn with_budget(budget: f64) -> Gather {
        Gather {
            budget,
            pause: MIN_GATHER,
            bytes: 0,
            since: Instant::now(),
        }
    }

    /// A batch of `bytes` was read.
    fn read(&mut self, bytes: usize) {
        self.bytes += bytes as u64;
    }

    /// The socket ran dry and the thread waited `waited` for the next datagram: after a wait
    /// longer than the pause, start short again.
    fn waited(&mut self, waited: Duration) {
        if waited > self.pause {
            self.pause = MIN_GATHER;
            self.bytes = 0;
            self.since = Instant::now();
        }
    }

    /// The pause to take now that a batch did not fill, given `elapsed` since the last one
    /// began (the caller passes the clock's reading, so tests can choose it) and whether the
    /// buffer is watched during the pause.
    fn next(&mut self, elapsed: Duration, watched: bool) -> Duration {
        let rate = self.bytes as f64 / elapsed.as_secs_f64().max(1e-6);
        let safe = if rate > 0.0 && !watched {
            Duration::from_secs_f64((self.budget / (rate * GATHER_HEADROOM)).min(1.0))
        } else {
            MAX_GATHER
        };
        self.pause = (self.pause * 2).min(safe).clamp(MIN_GATHER, MAX_GATHER);
        self.bytes = 0;
        self.pause
    }

    /// Pauses as [`Gather::next`] says, in [`GATHER_SLICE`]s, until the pause is over,
    /// `wanted()` says the flusher needs the thread, or the buffer is [`GATHER_FILL`] full.
    fn pause(&mut self, socket: &mio::net::UdpSocket, wanted: impl Fn() -> bool) {
        let now = Instant::now();
        let watched = buffer_fill(socket).is_some();
        let pause = self.next(now - self.since, watched);
        self.since = now;
        let end = now + pause;
        loop {
            let left = end.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return;
            }
            std::thread::sleep(left.min(GATHER_SLICE));
            if wanted() || buffer_fill(socket).is_some_and(|fill| fill >= GATHER_FILL) {
                return;
            }
        }
    }
}

/// How full the socket's receive buffer is (0 to 1, as the kernel counts it), where the OS
/// says: Linux's `SO_MEMINFO`, one system call.
#[cfg(target_os = "linux")]
fn buffer_fill(socket: &mio::net::UdpSocket) -> Option<f64> {
    use std::os::fd::AsRawFd;
    // `SO_MEMINFO` is 55 where the architecture takes its socket options from asm-generic;
    // the others number it differently, and are not asked.
    const SO_MEMINFO: libc::c_int = 55;
    if !cfg!(any(
        target_arch = "x86_64",
        target_arch = "x86",
        target_arch = "aarch64",
        target_arch = "arm",
        target_arch = "riscv64"
    )) {
        return None;
    }
    let mut info = [0u32; 9];
    let mut len = std::mem::size_of_val(&info) as libc::socklen_t;
    // SAFETY: `info` is writable for `len` bytes, and the kernel writes at most `len`.
    let result = unsafe {
        libc::getsockopt(
            socket.as_raw_fd(),
            libc::SOL_SOCKET,
            SO_MEMINFO,
            info.as_mut_ptr().cast(),
            &mut len,
        )
    };
    let queued = info[libc::SK_MEMINFO_RMEM_ALLOC as usize];
    let size = info[libc::SK_MEMINFO_RCVBUF as usize];
    (result == 0 && size > 0).then(|| f64::from(queued) / f64::from(size))
}

/// Elsewhere the OS does not say; the caller bounds its pause by the traffic rate instead.
#[cfg(not(target_os = "linux"))]
fn buffer_fill(_socket: &mio::net::UdpSocket) -> Option<f64> {
    None
}

/// How long a flush waits for every receive thread's shard (a late one joins the next).
const HANDOFF_WAIT: Duration = Duration::from_secs(1);

static STATSD_BAD_LOG: RateLimitedLog = RateLimitedLog::new();

/// What the flusher asks of the receive threads.
#[derive(Default)]
struct Handoff {
    /// Bumped at every flush: a thread that sees a new value hands its shard over.
    generation: AtomicU64,
    /// Set at shutdown: threads hand their last shard over and exit.
    stop: AtomicBool,
    /// One per receive thread: wakes it from its poll to look at the two above.
    wakers: Vec<mio::Waker>,
}

impl Handoff {
    fn wake_all(&self) {
        for waker in &self.wakers {
            if let Err(e) = waker.wake() {
                tracing::debug!(error = %e, "cannot wake a StatsD receive thread");
            }
        }
    }
}

/// A shard handed over: which thread, for which generation.
struct Handed {
    thread: usize,
    generation: u64,
    shard: Shard,
}

/// Arrival stamps for gauge ordering: nanoseconds since the first call, on a clock that
/// only increases.
fn stamp() -> u64 {
    static START: OnceLock<Instant> = OnceLock::new();
    START.get_or_init(Instant::now).elapsed().as_nanos() as u64
}

/// A UDP socket on the StatsD port for one receive thread, non-blocking (its thread polls).
fn receive_socket(addr: SocketAddr) -> anyhow::Result<mio::net::UdpSocket> {
    use socket2::{Domain, Protocol, Socket, Type};
    let socket = Socket::new(Domain::for_address(addr), Type::DGRAM, Some(Protocol::UDP))?;
    #[cfg(unix)]
    socket.set_reuse_port(true)?;
    let _ = socket.set_recv_buffer_size(UDP_RECEIVE_BUFFER);
    socket.bind(&addr.into()).with_context(|| {
        format!("cannot listen on UDP {addr} (set another address with --statsd-listen, or off)")
    })?;
    socket.set_nonblocking(true)?;
    Ok(mio::net::UdpSocket::from_std(socket.into()))
}

/// What one receive thread waits on: its socket, and a waker for the flusher.
struct Waiting {
    poll: mio::Poll,
    events: mio::Events,
    socket: mio::net::UdpSocket,
}

impl Waiting {
    /// Polls `socket`; the waker returned is the flusher's way to end the poll.
    fn new(mut socket: mio::net::UdpSocket) -> anyhow::Result<(Waiting, mio::Waker)> {
        let poll = mio::Poll::new().context("cannot create a poller for StatsD")?;
        poll.registry()
            .register(&mut socket, SOCKET, mio::Interest::READABLE)
            .context("cannot poll a StatsD socket")?;
        let waker = mio::Waker::new(poll.registry(), WAKE).context("cannot create a waker")?;
        let waiting = Waiting {
            poll,
            events: mio::Events::with_capacity(4),
            socket,
        };
        Ok((waiting, waker))
    }
}

/// Starts the receive threads, the TCP listener and the flusher; returns the bound address
/// and the flusher task (await it after shutdown so its last flush reaches the store).
pub(super) async fn start(
    addr: SocketAddr,
    config: StatsdConfig,
    sink: Sink,
    stats: Arc<IngestStats>,
    limit: MetricsLimit,
    shutdown: CancellationToken,
) -> anyhow::Result<(SocketAddr, tokio::task::JoinHandle<()>)> {
    // The TCP listener first: with port 0 it picks the port the UDP sockets then share.
    let tcp = tcp_listener(addr, "--statsd-listen").await?;
    let local = tcp.local_addr()?;
    let threads = std::thread::available_parallelism()
        .map_or(2, |n| n.get())
        .clamp(1, 8);
    let (handed, shards) = mpsc::unbounded_channel::<Handed>();
    let mut waiting = Vec::with_capacity(threads);
    let mut wakers = Vec::with_capacity(threads);
    let mut returns = Vec::with_capacity(threads);
    let mut returned = Vec::with_capacity(threads);
    for _ in 0..threads {
        let (thread_waiting, waker) = Waiting::new(receive_socket(local)?)?;
        waiting.push(thread_waiting);
        wakers.push(waker);
        let (give_back, take_back) = std::sync::mpsc::channel::<Shard>();
        returns.push(give_back);
        returned.push(take_back);
    }
    let handoff = Arc::new(Handoff {
        wakers,
        ..Handoff::default()
    });
    for (thread, (waiting, returned)) in waiting.into_iter().zip(returned).enumerate() {
        let (config, stats, handoff, handed) = (
            config.clone(),
            stats.clone(),
            handoff.clone(),
            handed.clone(),
        );
        let channels = Channels { handed, returned };
        std::thread::Builder::new()
            .name(format!("statsd-recv-{thread}"))
            .spawn(move || receive_loop(thread, waiting, &config, &stats, &handoff, &channels))
            .context("cannot start a StatsD receive thread")?;
    }
    drop(handed);
    let (lines, tcp_lines) = mpsc::channel::<Vec<u8>>(1024);
    serve_tcp(tcp, lines, limit, shutdown.clone());
    let flusher = tokio::spawn(
        Flusher {
            aggregator: Aggregator::new(config),
            threads,
            handoff,
            shards,
            returns,
            sink,
            stats,
            port: local.port(),
            tcp_shard: Shard::new(),
            flushed: Flushed::default(),
        }
        .run(tcp_lines, shutdown),
    );
    Ok((local, flusher))
}

/// A receive thread's ends of the hand-off: full shards go to the flusher, absorbed ones
/// come back empty for reuse.
struct Channels {
    handed: mpsc::UnboundedSender<Handed>,
    returned: std::sync::mpsc::Receiver<Shard>,
}

/// One receive thread: read a batch, parse it, fold it into the shard; hand the shard
/// over when the flusher asks, and go on with one the flusher gave back (or a new one).
fn receive_loop(
    thread: usize,
    mut waiting: Waiting,
    config: &StatsdConfig,
    stats: &IngestStats,
    handoff: &Handoff,
    channels: &Channels,
) {
    let mut batch = ReceiveBatch::new(BATCH_DATAGRAMS);
    let mut shard = Shard::new();
    // The samples of one batch, its allocation kept from batch to batch.
    let mut samples: Vec<Sample<'static>> = Vec::new();
    let mut gather = Gather::new(&waiting.socket);
    if thread == 0 {
        tracing::debug!(
            buffer_budget_bytes = gather.budget,
            "statsd receive threads"
        );
    }
    let mut seen = handoff.generation.load(Ordering::Acquire);
    loop {
        match batch.receive(&waiting.socket) {
            Ok(count) => {
                let mut batch_samples = reuse(std::mem::take(&mut samples));
                fold(
                    &mut shard,
                    batch.datagrams(count),
                    config,
                    stats,
                    &mut batch_samples,
                );
                samples = reuse(batch_samples);
                gather.read(batch.datagrams(count).map(<[u8]>::len).sum());
                if count < BATCH_DATAGRAMS {
                    gather.pause(&waiting.socket, || {
                        handoff.generation.load(Ordering::Acquire) != seen
                            || handoff.stop.load(Ordering::Acquire)
                    });
                }
            }
            // Drained (the poll is edge-triggered: it reports only what arrives after this).
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {
                let generation = handoff.generation.load(Ordering::Acquire);
                if generation == seen && !handoff.stop.load(Ordering::Acquire) {
                    let waited = Instant::now();
                    if let Err(e) = waiting.poll.poll(&mut waiting.events, Some(IDLE_WAIT)) {
                        if e.kind() != std::io::ErrorKind::Interrupted {
                            tracing::debug!(error = %e, "statsd poll failed");
                            std::thread::sleep(Duration::from_millis(10));
                        }
                    }
                    // Quiet for longer than a pause: traffic starts over, and so does the
                    // pause (a socket that merely ran dry at the end of a full batch keeps
                    // it).
                    gather.waited(waited.elapsed());
                }
            }
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(e) => {
                tracing::debug!(error = %e, "statsd receive failed");
                std::thread::sleep(Duration::from_millis(10));
            }
        }
        let generation = handoff.generation.load(Ordering::Acquire);
        let stopping = handoff.stop.load(Ordering::Acquire);
        if generation != seen || stopping {
            seen = generation;
            let next = channels
                .returned
                .try_recv()
                .unwrap_or_else(|_| shard.sized_like());
            let shard = std::mem::replace(&mut shard, next);
            if channels
                .handed
                .send(Handed {
                    thread,
                    generation,
                    shard,
                })
                .is_err()
                || stopping
            {
                return;
            }
        }
    }
}

/// An empty vector of samples with `samples`' allocation, free of its borrows: a batch's
/// samples borrow the batch's buffers, so the vector is emptied and re-typed between
/// batches (the standard library collects a mapped vector in place when the element
/// layout is the same, which it is here).
fn reuse<'b>(mut samples: Vec<Sample<'_>>) -> Vec<Sample<'b>> {
    samples.clear();
    samples
        .into_iter()
        .map(|_| unreachable!("the vector is empty"))
        .collect()
}

/// Parses datagrams (each once, in order) and folds the samples into `shard` in one pass.
fn fold<'a>(
    shard: &mut Shard,
    datagrams: impl Iterator<Item = &'a [u8]>,
    config: &StatsdConfig,
    stats: &IngestStats,
    samples: &mut Vec<Sample<'a>>,
) {
    let mut bad = Vec::new();
    let mut total = ParseCounts::default();
    let mut packets = 0;
    for datagram in datagrams {
        let counts = gantry_statsd::parse(datagram, config, samples, &mut bad);
        total.lines += counts.lines;
        total.bad += counts.bad;
        packets += 1;
    }
    shard.record_packets(packets, &total);
    shard.add_all(samples, stamp());
    stats.statsd_datagrams.fetch_add(packets, Ordering::Relaxed);
    if total.bad > 0 {
        stats
            .statsd_bad_lines
            .fetch_add(total.bad, Ordering::Relaxed);
        if let Some(first) = bad.first() {
            if STATSD_BAD_LOG.allow() {
                tracing::warn!(line = %first.line, reason = first.reason, "bad StatsD line");
            }
        }
    }
}

/// StatsD over TCP: complete lines, a read's worth at a time, go to the flusher.
fn serve_tcp(
    listener: TcpListener,
    lines: mpsc::Sender<Vec<u8>>,
    limit: MetricsLimit,
    shutdown: CancellationToken,
) {
    let reads = shutdown.clone();
    spawn_accept_loop(listener, shutdown, limit, move |mut stream, _, limit| {
        let (lines, shutdown) = (lines.clone(), reads.clone());
        async move {
            let mut buffer = gantry_graphite::plaintext::LineBuffer::default();
            let mut chunk = Vec::new();
            while let Some(n) = next_chunk(&mut stream, &mut chunk, &shutdown, &limit).await {
                let mut complete = Vec::new();
                buffer.push(&chunk[..n], MAX_LINE, |line| {
                    if let gantry_graphite::plaintext::Line::Complete(l) = line {
                        complete.extend_from_slice(l);
                        complete.push(b'\n');
                    }
                });
                if !complete.is_empty() && lines.send(complete).await.is_err() {
                    return;
                }
            }
        }
    });
}

struct Flusher {
    aggregator: Aggregator,
    threads: usize,
    handoff: Arc<Handoff>,
    shards: mpsc::UnboundedReceiver<Handed>,
    /// Per receive thread: where its absorbed shards go back for reuse.
    returns: Vec<std::sync::mpsc::Sender<Shard>>,
    sink: Sink,
    stats: Arc<IngestStats>,
    port: u16,
    tcp_shard: Shard,
    /// The last flush's points (kept for its memory).
    flushed: Flushed,
}

impl Flusher {
    /// Flushes every `flush_interval_secs`, and once more at shutdown.
    async fn run(mut self, mut tcp_lines: mpsc::Receiver<Vec<u8>>, shutdown: CancellationToken) {
        let interval = Duration::from_secs_f64(self.aggregator.config().flush_interval_secs);
        let mut drops_seen = kernel_udp_drops(self.port).unwrap_or(0);
        let mut ticker = tokio::time::interval_at(tokio::time::Instant::now() + interval, interval);
        loop {
            tokio::select! {
                received = tcp_lines.recv() => {
                    let Some(lines) = received else { continue };
                    let config = self.aggregator.config().clone();
                    let mut samples = Vec::new();
                    fold(&mut self.tcp_shard, std::iter::once(lines.as_slice()), &config, &self.stats, &mut samples);
                }
                handed = self.shards.recv() => {
                    // A shard that missed its flush's wait joins the next flush.
                    if let Some(handed) = handed {
                        self.absorb(handed);
                    }
                }
                _ = ticker.tick() => {
                    self.collect(false).await;
                    // What Etsy cannot see: datagrams lost before any thread read them.
                    if let Some(drops) = kernel_udp_drops(self.port) {
                        let new = drops.saturating_sub(drops_seen);
                        self.aggregator.add_to_counter("statsd.kernel_drops", new as f64);
                        self.stats.statsd_kernel_drops.fetch_add(new, Ordering::Relaxed);
                        drops_seen = drops;
                    }
                    self.flush();
                }
                _ = shutdown.cancelled() => break,
            }
        }
        self.collect(true).await;
        self.flush();
    }

    /// Folds a receive thread's shard in and gives it back to the thread, empty.
    fn absorb(&mut self, mut handed: Handed) {
        self.aggregator.absorb(&mut handed.shard);
        if let Some(back) = self.returns.get(handed.thread) {
            // A thread that has ended no longer needs it.
            let _ = back.send(handed.shard);
        }
    }

    /// Asks every receive thread for its shard (at shutdown: its last one) and merges what
    /// arrives within `HANDOFF_WAIT`.
    async fn collect(&mut self, last: bool) {
        let generation = self.handoff.generation.fetch_add(1, Ordering::AcqRel) + 1;
        if last {
            self.handoff.stop.store(true, Ordering::Release);
        }
        self.handoff.wake_all();
        let mut answered = vec![false; self.threads];
        let deadline = tokio::time::Instant::now() + HANDOFF_WAIT;
        while answered.iter().any(|a| !a) {
            match tokio::time::timeout_at(deadline, self.shards.recv()).await {
                Ok(Some(handed)) => {
                    if handed.generation >= generation {
                        if let Some(slot) = answered.get_mut(handed.thread) {
                            *slot = true;
                        }
                    }
                    self.absorb(handed);
                }
                Ok(None) => break,
                Err(_) => {
                    tracing::warn!(
                        "a StatsD receive thread did not hand its data over in time; it joins the next flush"
                    );
                    break;
                }
            }
        }
        let tcp = std::mem::take(&mut self.tcp_shard);
        if !tcp.is_empty() {
            self.aggregator.merge([tcp]);
        }
    }

    fn flush(&mut self) {
        let now = unix_now();
        self.aggregator.flush_into(now, &mut self.flushed);
        let points: Vec<(&str, i64, f64)> = self
            .flushed
            .iter()
            .map(|(name, value)| (name, now, value))
            .collect();
        self.sink.write(&points);
    }
}

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

/// Buffers for reading many datagrams with one system call.
struct ReceiveBatch {
    buffers: Vec<Box<[u8]>>,
    lengths: Vec<usize>,
    #[cfg(target_os = "linux")]
    iovecs: Vec<libc::iovec>,
    #[cfg(target_os = "linux")]
    headers: Vec<libc::mmsghdr>,
}

impl ReceiveBatch {
    fn new(size: usize) -> ReceiveBatch {
        let mut buffers: Vec<Box<[u8]>> = (0..size)
            .map(|_| vec![0u8; MAX_DATAGRAM].into_boxed_slice())
            .collect();
        #[cfg(target_os = "linux")]
        {
            let mut iovecs: Vec<libc::iovec> = buffers
                .iter_mut()
                .map(|b| libc::iovec {
                    iov_base: b.as_mut_ptr().cast(),
                    iov_len: b.len(),
                })
                .collect();
            let headers = iovecs
                .iter_mut()
                .map(|iov| {
                    // SAFETY: an all-zero msghdr is valid (no name, no control data).
                    let mut header: libc::mmsghdr = unsafe { std::mem::zeroed() };
                    header.msg_hdr.msg_iov = iov;
                    header.msg_hdr.msg_iovlen = 1;
                    header
                })
                .collect();
            ReceiveBatch {
                buffers,
                lengths: vec![0; size],
                iovecs,
                headers,
            }
        }
        #[cfg(not(target_os = "linux"))]
        ReceiveBatch {
            buffers,
            lengths: vec![0; size],
        }
    }

    /// Waits (up to the socket's read timeout) for at least one datagram, then takes every
    /// one already waiting, up to the batch size. Returns how many.
    #[cfg(target_os = "linux")]
    fn receive(&mut self, socket: &mio::net::UdpSocket) -> std::io::Result<usize> {
        use std::os::fd::AsRawFd;
        debug_assert_eq!(self.iovecs.len(), self.headers.len());
        // SAFETY: every header points at one iovec of `self.iovecs`, each covering one
        // buffer of `self.buffers`; neither vector is resized after `new`, so the pointers
        // stay valid, and the kernel writes at most `iov_len` bytes into each buffer.
        let received = unsafe {
            libc::recvmmsg(
                socket.as_raw_fd(),
                self.headers.as_mut_ptr(),
                self.headers.len() as libc::c_uint,
                libc::MSG_WAITFORONE,
                std::ptr::null_mut(),
            )
        };
        if received < 0 {
            return Err(std::io::Error::last_os_error());
        }
        let count = received as usize;
        for (length, header) in self.lengths.iter_mut().zip(&self.headers).take(count) {
            *length = header.msg_len as usize;
        }
        Ok(count)
    }

    #[cfg(not(target_os = "linux"))]
    fn receive(&mut self, socket: &mio::net::UdpSocket) -> std::io::Result<usize> {
        let n = socket.recv(&mut self.buffers[0])?;
        self.lengths[0] = n;
        Ok(1)
    }

    /// The first `count` datagrams of the last receive.
    fn datagrams(&self, count: usize) -> impl Iterator<Item = &[u8]> {
        self.buffers
            .iter()
            .zip(&self.lengths)
            .take(count)
            .map(|(buffer, &length)| &buffer[..length.min(buffer.len())])
    }
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

    #[test]
    fn a_batch_reads_every_waiting_datagram_in_order() {
        let receiver = receive_socket("127.0.0.1:0".parse().unwrap()).unwrap();
        let sender = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
        for i in 0..5 {
            sender
                .send_to(
                    format!("k{i}:1|c").as_bytes(),
                    receiver.local_addr().unwrap(),
                )
                .unwrap();
        }
        std::thread::sleep(Duration::from_millis(50));
        let mut batch = ReceiveBatch::new(BATCH_DATAGRAMS);
        let mut got = Vec::new();
        while got.len() < 5 {
            let count = batch.receive(&receiver).unwrap();
            got.extend(batch.datagrams(count).map(|d| d.to_vec()));
        }
        let expected: Vec<Vec<u8>> = (0..5).map(|i| format!("k{i}:1|c").into_bytes()).collect();
        assert_eq!(got, expected);
        let drained = batch.receive(&receiver).unwrap_err();
        assert_eq!(drained.kind(), std::io::ErrorKind::WouldBlock);
    }

    #[test]
    fn the_pause_doubles_to_its_ceiling_and_starts_over_after_idling() {
        let mut gather = Gather::with_budget(4.0 * 1024.0 * 1024.0);
        let mut pauses = Vec::new();
        for _ in 0..10 {
            gather.read(16_000);
            pauses.push(gather.next(Duration::from_millis(10), true).as_millis());
        }
        assert_eq!(pauses, [2, 4, 8, 16, 32, 64, 128, 200, 200, 200]);
        // Running dry between two datagrams keeps the pause; a quiet spell resets it.
        gather.waited(Duration::from_millis(3));
        assert_eq!(gather.pause, MAX_GATHER);
        gather.waited(Duration::from_secs(2));
        gather.read(100);
        assert_eq!(
            gather.next(Duration::from_secs(1), true),
            Duration::from_millis(2)
        );
    }

    #[test]
    fn an_unwatched_buffer_bounds_the_pause_by_the_rate_seen() {
        // 4 MiB of buffer at 1.6 MB/s (50,000 lines/s): eight times the rate fills half of
        // it in 330 ms, so the ceiling holds; at ten times the traffic, 33 ms.
        let mut gather = Gather::with_budget(4.0 * 1024.0 * 1024.0);
        gather.pause = MAX_GATHER;
        gather.read(1_600_000);
        assert_eq!(gather.next(Duration::from_secs(1), false), MAX_GATHER);
        gather.read(1_600_000);
        assert_eq!(
            gather.next(Duration::from_millis(100), false).as_millis(),
            32
        );
        // Linux's default buffer (208 KiB, reported doubled) at 50,000 lines/s: 16 ms.
        let mut small = Gather::with_budget(212_992.0);
        small.pause = MAX_GATHER;
        small.read(1_600_000);
        assert_eq!(small.next(Duration::from_secs(1), false).as_millis(), 16);
    }

    #[test]
    fn a_pause_ends_when_the_buffer_fills_or_the_flusher_asks() {
        let receiver = receive_socket("127.0.0.1:0".parse().unwrap()).unwrap();
        let addr = receiver.local_addr().unwrap();
        if cfg!(target_os = "linux") {
            assert_eq!(buffer_fill(&receiver), Some(0.0));
        }
        // The flusher is asked after every slice: how many a pause took.
        let slices = std::cell::Cell::new(0);
        let mut gather = Gather::with_budget(1e9);
        gather.pause = MAX_GATHER;
        gather.pause(&receiver, || {
            slices.set(slices.get() + 1);
            true
        });
        assert_eq!(
            slices.get(),
            1,
            "asked for by the flusher: the first slice ends it"
        );
        if cfg!(target_os = "linux") {
            // A quarter of the buffer queued: the first slice ends it too.
            let sender = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
            let datagram = vec![b'x'; 60_000];
            while buffer_fill(&receiver).unwrap() < GATHER_FILL {
                sender.send_to(&datagram, addr).unwrap();
            }
            slices.set(0);
            gather.pause = MAX_GATHER;
            gather.pause(&receiver, || {
                slices.set(slices.get() + 1);
                false
            });
            assert_eq!(slices.get(), 1, "a quarter full: the first slice ends it");
        }
    }

    /// A batch's sample vector is reused across batches: its allocation survives `reuse`.
    #[test]
    fn a_batch_vector_keeps_its_allocation() {
        let text = String::from("a:1|c");
        let mut samples = Vec::with_capacity(1000);
        gantry_statsd::parse(
            text.as_bytes(),
            &StatsdConfig::default(),
            &mut samples,
            &mut Vec::new(),
        );
        assert_eq!(samples.len(), 1);
        let (pointer, capacity) = (samples.as_ptr() as usize, samples.capacity());
        let again: Vec<Sample<'static>> = reuse(samples);
        assert!(again.is_empty());
        assert_eq!(again.capacity(), capacity);
        assert_eq!(again.as_ptr() as usize, pointer);
    }

    /// An idle receive thread sleeps in its poll; the flusher's wake-up, not a timer, makes
    /// it hand its shard over (and exit at shutdown).
    #[test]
    fn the_flusher_wakes_an_idle_receive_thread() {
        let socket = receive_socket("127.0.0.1:0".parse().unwrap()).unwrap();
        let addr = socket.local_addr().unwrap();
        let (waiting, waker) = Waiting::new(socket).unwrap();
        let handoff = Arc::new(Handoff {
            wakers: vec![waker],
            ..Handoff::default()
        });
        let (handed, mut shards) = mpsc::unbounded_channel();
        let (give_back, returned) = std::sync::mpsc::channel();
        let thread = {
            let handoff = handoff.clone();
            std::thread::spawn(move || {
                let stats = IngestStats::default();
                receive_loop(
                    0,
                    waiting,
                    &StatsdConfig::default(),
                    &stats,
                    &handoff,
                    &Channels { handed, returned },
                );
            })
        };
        let sender = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
        sender.send_to(b"woken:1|c", addr).unwrap();
        // Let the thread read it and go back to sleep in its poll.
        std::thread::sleep(Duration::from_millis(300));
        let asked = Instant::now();
        handoff.generation.fetch_add(1, Ordering::AcqRel);
        handoff.wake_all();
        let first = shards.blocking_recv().expect("a shard");
        // Well under IDLE_WAIT: only the wake-up can have ended the poll this soon.
        assert!(asked.elapsed() < IDLE_WAIT - Duration::from_secs(1));
        assert_eq!(first.generation, 1);
        assert!(!first.shard.is_empty());
        // Absorbed and given back, the shard is what the thread fills next.
        let mut aggregator = Aggregator::new(StatsdConfig::default());
        let mut shard = first.shard;
        aggregator.absorb(&mut shard);
        assert!(shard.is_empty());
        give_back.send(shard).unwrap();
        handoff.stop.store(true, Ordering::Release);
        handoff.wake_all();
        let last = shards.blocking_recv().expect("the last shard");
        assert!(last.shard.is_empty());
        thread.join().unwrap();
        assert!(asked.elapsed() < IDLE_WAIT - Duration::from_secs(1));
    }
}
