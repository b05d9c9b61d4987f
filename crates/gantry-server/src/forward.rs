//! `[metrics.forward]`: every point the store receives (after StatsD aggregation) is also
//! sent to Graphite plaintext destinations (go-carbon, carbon-c-relay, VictoriaMetrics), so a
//! team can move to a cluster without changing a client.
//!
//! Each destination has its own task and a bounded on-disk queue: while the destination is
//! down or slow, batches go to the queue (`<data-dir>/forward/<host_port>/`, segment files);
//! when it is back, the queue drains oldest first, then live batches flow again. Nothing is
//! lost within `queue_bytes`; beyond it new batches are dropped and counted. A segment is
//! read back through `gantry_graphite::queue`, which sends only its intact lines: what a
//! crash or a bad disk damaged is skipped and counted as dropped.

use std::collections::VecDeque;
use std::io::Write;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use serde::{Deserialize, Serialize};
use tokio::io::AsyncWriteExt;
use tokio::net::TcpStream;
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

/// The `[metrics.forward]` section.
#[derive(Debug, Clone, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct ForwardConfig {
    /// Graphite plaintext destinations, `host:port`.
    pub destinations: Vec<String>,
    /// Bytes each destination's on-disk queue may hold while it is down.
    pub queue_bytes: u64,
}

impl Default for ForwardConfig {
    fn default() -> Self {
        ForwardConfig {
            destinations: Vec::new(),
            queue_bytes: 1024 * 1024 * 1024,
        }
    }
}

/// What forwarding did, per server (all destinations together).
#[derive(Debug, Default)]
pub struct ForwardStats {
    pub points_sent: AtomicU64,
    pub bytes_queued: AtomicU64,
    /// Points dropped because a queue was full.
    pub points_dropped: AtomicU64,
}

/// One batch: plaintext lines and how many points they hold.
struct Batch {
    text: Vec<u8>,
    points: u64,
}

/// Sends batches to every destination.
#[derive(Clone, Default)]
pub struct Forwarders {
    senders: Vec<mpsc::Sender<Batch>>,
    pub stats: Arc<ForwardStats>,
}

/// Live batches waiting for a destination's task, per destination.
const CHANNEL_BATCHES: usize = 4096;
/// A queue segment is closed at this size.
const SEGMENT_BYTES: u64 = 8 * 1024 * 1024;

impl Forwarders {
    /// Starts one task per destination. Fails on an address that does not resolve.
    pub async fn start(
        config: &ForwardConfig,
        data_dir: &Path,
        shutdown: CancellationToken,
    ) -> anyhow::Result<Forwarders> {
        let stats = Arc::new(ForwardStats::default());
        let mut senders = Vec::new();
        for destination in &config.destinations {
            let addr = tokio::net::lookup_host(destination)
                .await
                .ok()
                .and_then(|mut a| a.next())
                .ok_or_else(|| anyhow::anyhow!("[metrics.forward] destination '{destination}' is not a reachable host:port"))?;
            let dir = data_dir
                .join("forward")
                .join(destination.replace([':', '/', '[', ']'], "_"));
            let queue = DiskQueue::open(&dir, config.queue_bytes)?;
            stats.bytes_queued.fetch_add(queue.bytes, Ordering::Relaxed);
            let (sender, receiver) = mpsc::channel(CHANNEL_BATCHES);
            tokio::spawn(forward(
                addr,
                queue,
                receiver,
                stats.clone(),
                shutdown.clone(),
            ));
            senders.push(sender);
        }
        Ok(Forwarders { senders, stats })
    }

    pub fn is_empty(&self) -> bool {
        self.senders.is_empty()
    }

    /// Queues points for every destination; never waits.
    pub fn send<'a>(&self, points: impl IntoIterator<Item = (&'a str, i64, f64)>) {
        if self.senders.is_empty() {
            return;
        }
        let mut text = Vec::new();
        let count = gantry_graphite::queue::encode(points, &mut text);
        if count == 0 {
            return;
        }
        for sender in &self.senders {
            if sender
                .try_send(Batch {
                    text: text.clone(),
                    points: count,
                })
                .is_err()
            {
                self.stats
                    .points_dropped
                    .fetch_add(count, Ordering::Relaxed);
            }
        }
    }
}

async fn forward(
    addr: SocketAddr,
    mut queue: DiskQueue,
    mut batches: mpsc::Receiver<Batch>,
    stats: Arc<ForwardStats>,
    shutdown: CancellationToken,
) {
    let mut stream: Option<TcpStream> = None;
    let mut retry = tokio::time::interval(Duration::from_secs(1));
    loop {
        tokio::select! {
            _ = shutdown.cancelled() => {
                // What is still in the channel goes to disk, to be sent after a restart.
                while let Ok(batch) = batches.try_recv() {
                    queue.push(&batch.text, batch.points, &stats);
                }
                return;
            }
            received = batches.recv() => {
                let Some(batch) = received else { return };
                let sent = match (&mut stream, queue.is_empty()) {
                    (Some(s), true) => write(s, &batch.text).await,
                    _ => false,
                };
                if sent {
                    stats.points_sent.fetch_add(batch.points, Ordering::Relaxed);
                } else {
                    stream = None;
                    queue.push(&batch.text, batch.points, &stats);
                }
            }
            _ = retry.tick() => {
                if stream.is_none() {
                    stream = tokio::time::timeout(Duration::from_secs(2), TcpStream::connect(addr)).await.ok().and_then(Result::ok);
                    if stream.is_some() {
                        tracing::info!(%addr, queued_bytes = queue.bytes, "forwarding to Graphite destination");
                    }
                }
                if let Some(s) = &mut stream {
                    if !drain(s, &mut queue, &stats).await {
                        tracing::warn!(%addr, queued_bytes = queue.bytes, "Graphite destination unavailable; queueing on disk");
                        stream = None;
                    }
                }
            }
        }
    }
}

/// Writes with a deadline, so a stalled destination counts as down.
async fn write(stream: &mut TcpStream, bytes: &[u8]) -> bool {
    matches!(
        tokio::time::timeout(Duration::from_secs(10), stream.write_all(bytes)).await,
        Ok(Ok(()))
    )
}

/// Sends queued segments oldest first; stops (returning false) at the first failure.
async fn drain(stream: &mut TcpStream, queue: &mut DiskQueue, stats: &ForwardStats) -> bool {
    while let Some((path, bytes)) = queue.oldest() {
        let segment = gantry_graphite::queue::decode(&bytes);
        if segment.skipped > 0 || segment.torn {
            let lost = segment.skipped + u64::from(segment.torn);
            stats.points_dropped.fetch_add(lost, Ordering::Relaxed);
            tracing::warn!(path = %path.display(), lines = lost, "skipping damaged lines of a forward queue segment");
        }
        if !write(stream, &segment.text).await {
            return false;
        }
        stats
            .points_sent
            .fetch_add(segment.points, Ordering::Relaxed);
        queue.remove(&path, bytes.len() as u64, stats);
    }
    true
}

/// Segment files of plaintext lines, oldest first; the newest is appended to.
struct DiskQueue {
    dir: PathBuf,
    max_bytes: u64,
    bytes: u64,
    segments: VecDeque<PathBuf>,
    next: u64,
    /// Whether the newest segment may be appended to: not one found at open, which an
    /// earlier process may have left ending in half a line.
    append_to_newest: bool,
}

impl DiskQueue {
    fn open(dir: &Path, max_bytes: u64) -> anyhow::Result<DiskQueue> {
        std::fs::create_dir_all(dir)?;
        let mut found: Vec<(u64, PathBuf, u64)> = Vec::new();
        for entry in std::fs::read_dir(dir)?.filter_map(Result::ok) {
            let path = entry.path();
            let number = path
                .file_stem()
                .and_then(|s| s.to_str())
                .and_then(|s| s.parse::<u64>().ok());
            if let (Some(n), Ok(meta)) = (number, entry.metadata()) {
                found.push((n, path, meta.len()));
            }
        }
        found.sort();
        let next = found.last().map_or(0, |(n, _, _)| n.saturating_add(1));
        let bytes = found.iter().map(|(_, _, len)| len).sum();
        Ok(DiskQueue {
            dir: dir.to_path_buf(),
            max_bytes,
            bytes,
            segments: found.into_iter().map(|(_, p, _)| p).collect(),
            next,
            append_to_newest: false,
        })
    }

    fn is_empty(&self) -> bool {
        self.segments.is_empty()
    }

    fn push(&mut self, text: &[u8], points: u64, stats: &ForwardStats) {
        if self.bytes + text.len() as u64 > self.max_bytes {
            stats.points_dropped.fetch_add(points, Ordering::Relaxed);
            return;
        }
        let current = match self.segments.back() {
            Some(p)
                if self.append_to_newest
                    && std::fs::metadata(p).map_or(0, |m| m.len()) < SEGMENT_BYTES =>
            {
                p.clone()
            }
            _ => {
                let path = self.dir.join(format!("{:020}.queue", self.next));
                self.next = self.next.saturating_add(1);
                self.segments.push_back(path.clone());
                self.append_to_newest = true;
                path
            }
        };
        let written = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&current)
            .and_then(|mut f| f.write_all(text));
        match written {
            Ok(()) => {
                self.bytes += text.len() as u64;
                stats
                    .bytes_queued
                    .fetch_add(text.len() as u64, Ordering::Relaxed);
            }
            Err(e) => {
                stats.points_dropped.fetch_add(points, Ordering::Relaxed);
                tracing::error!(error = %e, path = %current.display(), "cannot queue forwarded points on disk");
            }
        }
    }

    /// The oldest segment: its path and its bytes (none when it cannot be read).
    fn oldest(&self) -> Option<(PathBuf, Vec<u8>)> {
        let path = self.segments.front()?.clone();
        let bytes = std::fs::read(&path).unwrap_or_default();
        Some((path, bytes))
    }

    fn remove(&mut self, path: &Path, len: u64, stats: &ForwardStats) {
        let _ = std::fs::remove_file(path);
        self.segments.pop_front();
        self.bytes = self.bytes.saturating_sub(len);
        stats.bytes_queued.fetch_sub(
            len.min(stats.bytes_queued.load(Ordering::Relaxed)),
            Ordering::Relaxed,
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A segment an earlier process left ending in half a line is never appended to, and
    /// reading it back sends its whole lines and counts the cut one as dropped.
    #[test]
    fn a_segment_left_by_a_crash_is_not_appended_to() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join(format!("{:020}.queue", 7)), b"a 1 1\nb 2 ").unwrap();
        let stats = ForwardStats::default();
        let mut queue = DiskQueue::open(dir.path(), 1 << 20).unwrap();
        queue.push(b"c 3 3\n", 1, &stats);
        assert_eq!(
            queue.segments.len(),
            2,
            "the new batch went to a segment of its own"
        );
        let (path, bytes) = queue.oldest().unwrap();
        let segment = gantry_graphite::queue::decode(&bytes);
        assert_eq!(&segment.text[..], b"a 1 1\n");
        assert!(segment.torn);
        queue.remove(&path, bytes.len() as u64, &stats);
        let (_, bytes) = queue.oldest().unwrap();
        assert_eq!(bytes, b"c 3 3\n");
        // Later batches of this process share its segment.
        queue.push(b"d 4 4\n", 1, &stats);
        assert_eq!(queue.segments.len(), 1);
    }

    #[test]
    fn the_largest_segment_number_does_not_overflow() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join(format!("{}.queue", u64::MAX)), b"a 1 1\n").unwrap();
        let stats = ForwardStats::default();
        let mut queue = DiskQueue::open(dir.path(), 1 << 20).unwrap();
        queue.push(b"b 2 2\n", 1, &stats);
        queue.push(b"c 3 3\n", 1, &stats);
        assert_eq!(stats.points_dropped.load(Ordering::Relaxed), 0);
    }
}
