//! Gantry's embedded time-series store: whisper's semantics (retention and aggregation rules
//! by name pattern, fixed-step archives, last write wins within a slot, rollups into coarser
//! archives with `xFilesFactor`, reads from the finest archive covering the range) without
//! whisper's cost (12 bytes a point, one file per series).
//!
//! Storage is an embedded LSM tree (fjall): one partition maps series names to their id and
//! rules, another holds blocks of 360 slots per (series, archive), compressed (see
//! [`block`]). Writes are queued in memory and flushed every `fsync_interval_secs`: a flush
//! is one record synced to the flush log (files of its own, see `wal`), so a crash loses at
//! most that interval, never a series or a block, and its points are held in memory until a
//! checkpoint writes them into blocks. Torn tails of the log and of the engine's journal are
//! detected (checksums) and dropped on start-up. Memory per series is its name, its rules
//! and its rollup windows; blocks live on disk.
//!
//! Invariant: this crate knows nothing of protocols (StatsD, Graphite) or HTTP. It stores
//! `(name, timestamp, value)` and answers windows of values.

pub mod block;
pub mod config;
mod wal;
pub mod whisper;

use std::collections::{BTreeMap, BTreeSet};
use std::hash::BuildHasher;
use std::path::Path;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, OnceLock, RwLock};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use fjall::{AbstractTree, Keyspace, PartitionCreateOptions, PartitionHandle, PersistMode};
use regex::Regex;

pub use config::{Aggregation, Archive, TsdbConfig};
use wal::{Replayed, Wal};
use whisper::{block_of, read_window, slot_start, write_archive, SLOTS_PER_BLOCK};

#[derive(Debug, thiserror::Error)]
pub enum TsdbError {
    #[error("storage configuration: {0}")]
    Config(String),
    #[error("stored metrics data is corrupt: {0}")]
    Corrupt(String),
    #[error("metrics storage failed: {0}")]
    Storage(String),
}

impl From<fjall::Error> for TsdbError {
    fn from(e: fjall::Error) -> Self {
        TsdbError::Storage(e.to_string())
    }
}

impl From<fjall::LsmError> for TsdbError {
    fn from(e: fjall::LsmError) -> Self {
        TsdbError::Storage(e.to_string())
    }
}

pub type Result<T, E = TsdbError> = std::result::Result<T, E>;

/// Values of one series over a window: `values[i]` is at `start + i * step`.
#[derive(Debug, Clone, PartialEq)]
pub struct Fetched {
    pub start: i64,
    pub end: i64,
    pub step: u32,
    pub values: Vec<Option<f64>>,
}

/// Heap bytes of the store's own per-series state (allocated capacity, not just what is
/// used), as [`Tsdb::memory`] counts them.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Memory {
    /// Live series.
    pub series: usize,
    /// Names, ids, rules: the index of every series.
    pub index: usize,
    /// Rollup windows: the running aggregate of the coarse slot each archive is filling.
    pub rollup: usize,
    /// Points queued for the next flush.
    pub queue: usize,
}

/// What the store has done since it opened.
#[derive(Debug, Default)]
pub struct Stats {
    pub points_written: AtomicU64,
    /// Points older than every archive keeps (or too far in the future).
    pub points_out_of_range: AtomicU64,
    /// Points refused because their series would exceed the cardinality caps.
    pub series_rejected: AtomicU64,
    pub series_created: AtomicU64,
    /// Blocks that could not be decoded and were skipped.
    pub blocks_corrupt: AtomicU64,
}

#[derive(Debug, Clone, Copy)]
struct Meta {
    schema: u16,
    aggregation: Aggregation,
    x_files_factor: f32,
}

/// Names, ids and rules of the series. A name is kept once, in one string holding every
/// name back to back, and the lookup table holds only ids: the per-series state lives in a
/// few large allocations, which the allocator can return whole, instead of small ones
/// scattered among a burst's short-lived allocations (that kept pages resident).
#[derive(Default)]
struct Index {
    /// Every name created since open, back to back; `spans[id]` is where one is.
    text: String,
    /// By id: start and end of its name in `text`.
    spans: Vec<(u32, u32)>,
    /// Ids of the live series, by the hash of their name.
    ids: hashbrown::HashTable<u32>,
    hasher: foldhash::fast::RandomState,
    /// By id; `None` once deleted.
    metas: Vec<Option<Meta>>,
    schemas: Vec<Vec<Archive>>,
    /// Series created since the last flush, to persist with it.
    unsaved: Vec<u32>,
    minute: i64,
    created_this_minute: u64,
}

struct Rules {
    retention: Vec<(Regex, Vec<Archive>)>,
    aggregation: Vec<(Regex, Aggregation, f64)>,
}

/// The store. Cheap to share behind an `Arc`; a background thread applies writes.
pub struct Tsdb {
    keyspace: Keyspace,
    series: PartitionHandle,
    blocks: PartitionHandle,
    index: RwLock<Index>,
    /// Points waiting for the next flush, in arrival order: (series id, timestamp, value).
    pending: Mutex<Vec<(u32, i64, f64)>>,
    /// Points in `pending`.
    queued: AtomicU64,
    /// The flusher thread, woken early when the queue is full.
    flusher: OnceLock<std::thread::Thread>,
    rules: Rules,
    config: TsdbConfig,
    stats: Stats,
    /// Serialises flushes (the background one and explicit ones), checkpoints and
    /// maintenance; holds the flush log they append to and truncate.
    flushing: Mutex<Wal>,
    stop: AtomicBool,
    /// Orders delta records; starts at the clock in microseconds so it keeps increasing
    /// across restarts.
    delta_seq: AtomicU64,
    /// Per series, the running aggregate of the coarse slot each archive is rolling up
    /// into, so writes at the head of a series need no reads.
    heads: Mutex<Heads>,
    /// The last flush-log sequence a checkpoint covered ([`CHECKPOINT_KEY`]), and records
    /// of the flush log as it was kept before it moved to files (replayed once at open).
    log: PartitionHandle,
    /// Per series, the slot writes flushed (durable in the log) but not yet in blocks;
    /// sharded by series id so reads of one series wait only for a flush of its shard.
    writes: Vec<Mutex<ShardWrites>>,
    /// Slot writes in `writes` (overwrites of a slot included).
    pending_writes: AtomicU64,
    /// Keys of the log records whose points are in `writes` (or in blocks): what the next
    /// checkpoint removes. Kept here so a checkpoint never reads the records back (a bulk
    /// load's log records are megabytes each and reading them was most of its CPU).
    applied_log: Mutex<Vec<u64>>,
    last_checkpoint: Mutex<Instant>,
    /// Makes a checkpoint stop with an error after its first batch (a crash mid-checkpoint).
    #[cfg(test)]
    cut_checkpoints_short: AtomicBool,
}

/// Shards of [`Tsdb::writes`].
const WRITE_SHARDS: usize = 64;
/// The flush log's directory, inside the store's.
const WAL_DIR: &str = "wal";
/// The key, in the `log` partition, of the last flush-log sequence a checkpoint covered.
const CHECKPOINT_KEY: &[u8] = b"checkpoint";
/// Consecutive series ids share a write shard in runs of this many, so a flush (which goes
/// through its series in id order) takes each shard's lock once a run and walks the
/// shard's table in order instead of jumping around it.
const WRITE_RUN: usize = 64;

/// Where series `id`'s pending writes are: its shard, and its place in the shard.
fn write_place(id: u32) -> (usize, usize) {
    let id = id as usize;
    let run = id / WRITE_RUN;
    (
        run % WRITE_SHARDS,
        run / WRITE_SHARDS * WRITE_RUN + id % WRITE_RUN,
    )
}

/// The series id at `place` of write shard `shard` (the inverse of [`write_place`]).
fn write_id(shard: usize, place: usize) -> u32 {
    let run = place / WRITE_RUN * WRITE_SHARDS + shard;
    (run * WRITE_RUN + place % WRITE_RUN) as u32
}

/// One shard of [`Tsdb::writes`]: the pending writes of its series by place (see
/// [`write_place`]). Dense, because in steady state every active series has pending
/// writes (a table of the same entries by hash was larger, and a flush's lookups in it
/// were cache misses in random order).
#[derive(Default)]
struct ShardWrites(Vec<Writes>);

impl ShardWrites {
    fn get(&self, place: usize) -> Option<&Writes> {
        self.0.get(place)
    }

    fn get_mut(&mut self, place: usize) -> &mut Writes {
        if self.0.len() <= place {
            self.0.resize_with(place + 1, Writes::new);
        }
        &mut self.0[place]
    }

    /// The series with pending writes: (place, writes).
    fn iter(&self) -> impl Iterator<Item = (usize, &Writes)> {
        self.0.iter().enumerate().filter(|(_, w)| !w.is_empty())
    }

    fn remove(&mut self, place: usize) {
        if let Some(writes) = self.0.get_mut(place) {
            *writes = Writes::new();
        }
    }

    /// Empties every series' writes (an empty `Writes` holds no memory); the table keeps
    /// its size for the next flush.
    fn clear(&mut self) {
        self.0.iter_mut().for_each(|writes| *writes = Writes::new());
    }

    /// Frees the table when no series has writes (after a checkpoint, once a burst is
    /// over): an idle store keeps nothing per series here.
    fn release(&mut self) {
        if self.0.iter().all(Writes::is_empty) {
            self.0 = Vec::new();
        }
    }
}

/// The rollup windows of every series: for each archive of a series but its coarsest, the
/// running aggregate of the coarser slot last written. All of them in one vector, for the
/// reason [`Index`] keeps names in one string.
#[derive(Default)]
struct Heads {
    /// By series id: the index of its first window in `windows` (one per archive but the
    /// coarsest, in order); `NO_HEAD` before its first flush (and after it is deleted: the
    /// space is reused on the next open).
    at: Vec<u32>,
    windows: Vec<RollupWindow>,
}

const NO_HEAD: u32 = u32::MAX;

/// One archive's rollup window of one series (see [`Heads`]): what whisper's propagation
/// computes for the coarser slot last written (the aggregate of the finer slots' known
/// values, in time order), kept as it goes instead of as the finer values themselves.
///
/// Writes arrive in time order almost always: a value for a finer slot after the last one
/// known is folded in; a new value for that last slot (a coarse archive's slot is rewritten
/// at every flush until it is over; a point older than the finest archive lands in a
/// coarser one several times a slot) is folded into the aggregate as it stood before it.
/// Anything else (a slot before the last known one, a value removed, the window moving onto
/// a slot that may hold values) reads the finer slots back, as before. Either way the
/// aggregate is the one folding the known values in time order, so the result is the same
/// to the bit.
///
/// Times are kept as unsigned 32-bit seconds ([`Epoch32`]): every slot a store writes lies
/// within its retention of "now" (1970 to 2106 holds them all), and the two ends of the
/// range stand for "before anything" and "never". 32 bytes a window (it was 12 plus eight
/// for each finer slot): with the default rules and the series' place in [`Heads::at`],
/// 68 bytes per series, was 156.
#[derive(Clone, Copy)]
struct RollupWindow {
    /// Start of the coarser slot; 0 before the first write.
    start: Epoch32,
    /// Every slot of the finer archive at or after this is empty, in storage and in the
    /// queue: moving the window to a coarser slot starting there needs no reads.
    clean_from: Epoch32,
    /// How many finer slots of the coarser slot have a value.
    count: u32,
    /// One past the last finer slot (counted from the coarser slot's start) with a value;
    /// 0 for none.
    end: u32,
    /// The aggregate so far (for an average, the sum).
    acc: f64,
    /// `acc` before the value of slot `end - 1` was folded in.
    before_last: f64,
}

/// Epoch seconds in 32 bits, clamped: below 0 reads as 0, beyond `u32::MAX` as `u32::MAX`.
/// Comparisons with an in-range time come out as they would in 64 bits, which is all a
/// rollup window asks of them.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
struct Epoch32(u32);

impl Epoch32 {
    fn of(t: i64) -> Epoch32 {
        Epoch32(t.clamp(0, i64::from(u32::MAX)) as u32)
    }

    fn get(self) -> i64 {
        i64::from(self.0)
    }
}

impl Heads {
    /// Where the windows of series `id` are, made with `clean_from()` (for each archive,
    /// where it is known to be empty from) when it has none yet.
    fn get_or_insert(
        &mut self,
        id: u32,
        archives: &[Archive],
        clean_from: impl FnOnce() -> Result<Vec<i64>>,
    ) -> Result<usize> {
        if let Some(&at) = self.at.get(id as usize) {
            if at != NO_HEAD {
                return Ok(at as usize);
            }
        }
        let clean_from = clean_from()?;
        let at = self.windows.len();
        for &clean_from in clean_from.iter().take(archives.len().saturating_sub(1)) {
            // The first write moves the window (from 0), which sets the rest.
            self.windows.push(RollupWindow {
                start: Epoch32(0),
                clean_from: Epoch32::of(clean_from),
                count: 0,
                end: 0,
                acc: 0.0,
                before_last: 0.0,
            });
        }
        if self.at.len() <= id as usize {
            self.at.resize(id as usize + 1, NO_HEAD);
        }
        self.at[id as usize] = at as u32;
        Ok(at)
    }

    fn remove(&mut self, id: u32) {
        if let Some(at) = self.at.get_mut(id as usize) {
            *at = NO_HEAD;
        }
    }

    /// Gives back what growing by doubling left unused.
    fn shrink_to_fit(&mut self) {
        self.at.shrink_to_fit();
        self.windows.shrink_to_fit();
    }
}

impl RollupWindow {
    /// Records `value` at `slot` of archive `level` (already written to `blocks`) and
    /// returns how many finer slots of the coarser slot at `coarse` have a value, and their
    /// aggregate. Reads the finer slots from `blocks` when the window cannot tell (see
    /// [`RollupWindow`]), and always at the edge of the finer archive's retention (where
    /// whisper's ring may already have overwritten a value).
    #[allow(clippy::too_many_arguments)]
    fn update(
        &mut self,
        aggregation: Aggregation,
        blocks: &mut BlockSet<'_>,
        level: usize,
        higher: Archive,
        lower: Archive,
        coarse: i64,
        slot: i64,
        value: Option<f64>,
        now: i64,
    ) -> Result<(u32, Option<f64>)> {
        let step = i64::from(higher.step);
        // `slot` was just written: nothing else at or after `clean_from` was.
        let fresh = coarse >= self.clean_from.get();
        self.clean_from = self.clean_from.max(Epoch32::of(slot + step));
        let edge = coarse < now - higher.retention() + i64::from(lower.step);
        let moved = self.start.get() != coarse;
        self.start = Epoch32::of(coarse);
        let index = ((slot - coarse) / step) as u32;
        match value {
            _ if moved && fresh && !edge => {
                self.clear(aggregation);
                if let Some(value) = value {
                    self.take(aggregation, index, value);
                }
            }
            Some(value) if !moved && !edge && index >= self.end => {
                self.take(aggregation, index, value)
            }
            Some(value) if !moved && !edge && index + 1 == self.end => {
                self.acc = aggregation.fold(self.before_last, value);
            }
            _ => {
                self.clear(aggregation);
                for i in 0..lower.step / higher.step {
                    if let Some(value) =
                        blocks.known(level, higher, coarse + i64::from(i) * step, now)?
                    {
                        self.take(aggregation, i, value);
                    }
                }
            }
        }
        Ok((self.count, aggregation.finish(self.acc, self.count)))
    }

    fn clear(&mut self, aggregation: Aggregation) {
        (self.count, self.end) = (0, 0);
        self.acc = aggregation.identity();
        self.before_last = self.acc;
    }

    /// Folds in the value of finer slot `index`, after every slot with a value.
    fn take(&mut self, aggregation: Aggregation, index: u32, value: f64) {
        self.before_last = self.acc;
        self.acc = aggregation.fold(self.before_last, value);
        self.count += 1;
        self.end = index + 1;
    }
}

/// What the process runs to hand freed heap memory back to the OS after a checkpoint or
/// maintenance; see [`set_memory_release`].
/// What [`replay_flush_log`] found.
#[doc(hidden)]
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct FlushLogReplay {
    /// Intact records above the checkpoint.
    pub records: usize,
    /// Records whose checksum failed (skipped).
    pub corrupt: usize,
    /// Segments that ended in a record cut short.
    pub torn: usize,
    /// Intact records whose payload is not a flush record (an open skips them too).
    pub undecodable: usize,
    /// Points in the records that decoded.
    pub points: usize,
    /// The sequence the next append would get.
    pub next_seq: u64,
}

/// Reads the flush log in `dir` as an open does after a crash (segments in order, records
/// above `checkpoint` decoded as flush records) without a store to apply them to. Not part
/// of the API: the `tsdb_flush_log` fuzz target runs the crash recovery's reading through
/// it.
#[doc(hidden)]
pub fn replay_flush_log(dir: &Path, checkpoint: u64) -> Result<FlushLogReplay> {
    let mut wal = Wal::open(dir)?;
    let mut out = FlushLogReplay::default();
    let found = wal.replay(checkpoint, |_, bytes| {
        match decode_log(bytes) {
            Ok((_, points)) => out.points += points.len(),
            Err(_) => out.undecodable += 1,
        }
        Ok(())
    })?;
    out.records = found.records;
    out.corrupt = found.corrupt;
    out.torn = found.torn;
    out.next_seq = wal.last_seq().saturating_add(1);
    Ok(out)
}

static MEMORY_RELEASE: OnceLock<fn()> = OnceLock::new();

/// Sets what the store calls after it freed a lot of memory (the flush queue, a
/// checkpoint's pending writes): the binary that picks the global allocator knows how to
/// make that allocator return free pages now (an allocator keeps what a burst freed until
/// its own thread next runs, so an idle server would stay at its peak). The first call
/// wins. Without one, glibc's `malloc_trim` runs (a no-op for other allocators).
pub fn set_memory_release(release: fn()) {
    let _ = MEMORY_RELEASE.set(release);
}

impl Tsdb {
    /// After a burst is over (a checkpoint on the timer, maintenance, compaction): the
    /// per-series vectors shrunk to what they hold, then the allocator's free pages handed
    /// back.
    fn release_memory(&self) {
        if let Ok(mut index) = self.index.write() {
            index.shrink_to_fit();
        }
        if let Ok(mut heads) = self.heads.lock() {
            heads.shrink_to_fit();
        }
        for shard in &self.writes {
            if let Ok(mut shard) = shard.lock() {
                shard.release();
            }
        }
        release_free_memory();
    }
}

fn release_free_memory() {
    if let Some(release) = MEMORY_RELEASE.get() {
        release();
        return;
    }
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: malloc_trim only walks glibc's own arenas; it takes no pointers.
    unsafe {
        libc::malloc_trim(0);
    }
}

fn unix_now() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs() as i64)
}

/// The block number of a block or delta record key (`block_key`, then for a delta a
/// sequence number).
fn block_number(key: &[u8]) -> Option<u64> {
    key.get(5..13)
        .and_then(|b| <[u8; 8]>::try_from(b).ok())
        .map(u64::from_be_bytes)
}

fn block_key(id: u32, archive: usize, block: u64) -> [u8; 13] {
    let mut key = [0u8; 13];
    key[..4].copy_from_slice(&id.to_be_bytes());
    key[4] = archive as u8;
    key[5..].copy_from_slice(&block.to_be_bytes());
    key
}

/// When a block's time is over (epoch seconds).
fn block_end(block: u64, step: u32) -> i64 {
    (block as i64 + 1) * i64::from(step) * SLOTS_PER_BLOCK
}

fn encode_schema(archives: &[Archive]) -> String {
    archives
        .iter()
        .map(|a| format!("{}:{}", a.step, a.points))
        .collect::<Vec<_>>()
        .join(",")
}

impl Tsdb {
    /// Opens (or creates) the store in `dir` and starts its flusher thread.
    pub fn open(dir: &Path, config: TsdbConfig) -> Result<Arc<Tsdb>> {
        let rules = compile(&config)?;
        let keyspace = fjall::Config::new(dir)
            .cache_size(config.cache_bytes)
            // Bounds the write-ahead journal on disk (fjall's default allows 512 MiB).
            .max_journaling_size(64 * 1024 * 1024)
            .open()
            .map_err(|e| {
                TsdbError::Storage(format!(
                    "cannot open metrics storage in {}: {e}",
                    dir.display()
                ))
            })?;
        let series = keyspace.open_partition("series", PartitionCreateOptions::default())?;
        // Blocks carry their own compression (pcodec) and log records live until the next
        // checkpoint: fjall's LZ4 on top cost a fifth of the ingest CPU for little space.
        // Both are only ever read by range or prefix scans, which bloom filters cannot
        // help; their filters would be held in memory for every segment (2.4 MB for
        // 10,000 series over 7 days).
        let uncompressed = || {
            PartitionCreateOptions::default()
                .compression(fjall::CompressionType::None)
                .bloom_filter_bits(None)
        };
        let blocks = keyspace.open_partition("blocks", uncompressed())?;
        let log = keyspace.open_partition("log", uncompressed())?;
        let mut index = Index::default();
        for entry in series.iter() {
            let (name, value) = entry?;
            let name = std::str::from_utf8(&name)
                .map_err(|_| TsdbError::Corrupt("series name is not UTF-8".into()))?;
            let (id, meta_text) = value
                .split_at_checked(4)
                .ok_or_else(|| TsdbError::Corrupt(format!("series {name}")))?;
            let id = u32::from_le_bytes([id[0], id[1], id[2], id[3]]);
            let text = std::str::from_utf8(meta_text)
                .map_err(|_| TsdbError::Corrupt(format!("series {name}")))?;
            let mut parts = text.split('|');
            let (Some(schema), Some(aggregation), Some(xff)) =
                (parts.next(), parts.next(), parts.next())
            else {
                return Err(TsdbError::Corrupt(format!("series {name}: rules '{text}'")));
            };
            let archives = config::parse_retentions(schema)?;
            let aggregation = aggregation
                .parse::<u8>()
                .ok()
                .and_then(Aggregation::from_code)
                .ok_or_else(|| {
                    TsdbError::Corrupt(format!("series {name}: aggregation '{aggregation}'"))
                })?;
            let x_files_factor = xff
                .parse::<f32>()
                .map_err(|_| TsdbError::Corrupt(format!("series {name}: xff")))?;
            let schema = index.intern(archives);
            index.insert(
                name,
                id,
                Meta {
                    schema,
                    aggregation,
                    x_files_factor,
                },
            );
        }
        let tsdb = Arc::new(Tsdb {
            keyspace,
            series,
            blocks,
            index: RwLock::new(index),
            pending: Mutex::new(Vec::new()),
            queued: AtomicU64::new(0),
            flusher: OnceLock::new(),
            rules,
            config,
            stats: Stats::default(),
            flushing: Mutex::new(Wal::open(&dir.join(WAL_DIR))?),
            stop: AtomicBool::new(false),
            heads: Mutex::new(Heads::default()),
            delta_seq: AtomicU64::new(
                SystemTime::now()
                    .duration_since(UNIX_EPOCH)
                    .map_or(0, |d| d.as_micros() as u64),
            ),
            log,
            writes: (0..WRITE_SHARDS)
                .map(|_| Mutex::new(ShardWrites::default()))
                .collect(),
            pending_writes: AtomicU64::new(0),
            applied_log: Mutex::new(Vec::new()),
            last_checkpoint: Mutex::new(Instant::now()),
            #[cfg(test)]
            cut_checkpoints_short: AtomicBool::new(false),
        });
        tsdb.replay(unix_now())?;
        let weak = Arc::downgrade(&tsdb);
        let interval = Duration::from_secs_f64(tsdb.config.fsync_interval_secs.max(0.01));
        let flusher = std::thread::Builder::new()
            .name("tsdb-flush".into())
            .spawn(move || {
                let mut due = Instant::now() + interval;
                loop {
                    // Every interval, or sooner when writers fill the queue (they unpark
                    // this thread).
                    std::thread::park_timeout(due.saturating_duration_since(Instant::now()));
                    let Some(tsdb) = weak.upgrade() else { return };
                    if tsdb.stop.load(Ordering::Relaxed) {
                        return;
                    }
                    if Instant::now() < due && tsdb.has_room() {
                        continue;
                    }
                    due = Instant::now() + interval;
                    if let Err(e) = tsdb.flush_at(unix_now()) {
                        tracing::error!(error = %e, "cannot flush metrics to disk");
                    }
                }
            })
            .map_err(|e| TsdbError::Storage(format!("cannot start the flusher: {e}")))?;
        let _ = tsdb.flusher.set(flusher.thread().clone());
        Ok(tsdb)
    }

    /// The step of the finest archive a series of this name has (or would have, if new),
    /// in seconds: writers that sum events into slots (log-watch counts) need it, since a
    /// second write to a slot replaces the first. `None` when no retention rule matches.
    pub fn finest_step(&self, name: &str) -> Option<u32> {
        self.rules
            .retention
            .iter()
            .find(|(pattern, _)| pattern.is_match(name))
            .and_then(|(_, archives)| archives.first())
            .map(|a| a.step)
    }

    pub fn stats(&self) -> &Stats {
        &self.stats
    }

    /// How many series the store holds.
    pub fn series_count(&self) -> usize {
        self.index.read().map_or(0, |i| i.len())
    }

    /// What the store's per-series state holds in memory (pending writes, which a
    /// checkpoint empties, are not counted).
    pub fn memory(&self) -> Memory {
        let mut memory = Memory::default();
        if let Ok(index) = self.index.read() {
            memory.series = index.len();
            memory.index = index.text.capacity()
                + index.spans.capacity() * std::mem::size_of::<(u32, u32)>()
                + index.metas.capacity() * std::mem::size_of::<Option<Meta>>()
                + index.ids.allocation_size();
        }
        if let Ok(heads) = self.heads.lock() {
            memory.rollup = heads.at.capacity() * std::mem::size_of::<u32>()
                + heads.windows.capacity() * std::mem::size_of::<RollupWindow>();
        }
        if let Ok(queue) = self.pending.lock() {
            memory.queue = queue.capacity() * std::mem::size_of::<(u32, i64, f64)>();
        }
        memory
    }

    /// Bytes the store takes on disk.
    pub fn disk_space(&self) -> u64 {
        self.keyspace.disk_space()
    }

    /// What the LSM tree holds, for tests of its housekeeping: (records in the series
    /// partition, records in the blocks partition, bytes of the blocks partition's files).
    #[doc(hidden)]
    pub fn stored_records(&self) -> Result<(usize, usize, u64)> {
        let mut counts = [0usize; 2];
        for (count, partition) in counts.iter_mut().zip([&self.series, &self.blocks]) {
            for entry in partition.iter() {
                entry?;
                *count += 1;
            }
        }
        Ok((counts[0], counts[1], self.blocks.disk_space()))
    }

    /// Records in the flush log (flushes not yet checkpointed), for tests.
    #[doc(hidden)]
    pub fn log_records(&self) -> Result<usize> {
        let mut count = self
            .flushing
            .lock()
            .map_err(|_| TsdbError::Storage("flush lock poisoned".into()))?
            .records();
        for entry in self.log.iter() {
            if *entry?.0 != *CHECKPOINT_KEY {
                count += 1;
            }
        }
        Ok(count)
    }

    /// Slot writes flushed but not yet written into blocks (held in memory, durable in the
    /// flush log).
    pub fn pending_writes(&self) -> u64 {
        self.pending_writes.load(Ordering::Relaxed)
    }

    /// Writes every flushed point into blocks now and empties the flush log (the flusher
    /// does this every `checkpoint_interval_secs`, and maintenance and `close` do too).
    pub fn checkpoint(&self, now: i64) -> Result<()> {
        let mut wal = self
            .flushing
            .lock()
            .map_err(|_| TsdbError::Storage("flush lock poisoned".into()))?;
        self.checkpoint_locked(&mut wal, now)?;
        self.release_memory();
        Ok(())
    }

    /// Whether the write queue is below `max_queued_points`. Writers that can slow their
    /// senders (TCP listeners) wait while it is not; [`Tsdb::write`] itself never refuses
    /// or drops points for a full queue.
    pub fn has_room(&self) -> bool {
        self.queued.load(Ordering::Relaxed) < self.config.max_queued_points
    }

    /// Queues points; they are durable after the next flush (at most `fsync_interval_secs`).
    /// Returns how many were accepted (the rest hit the cardinality caps).
    pub fn write<'a>(&self, points: impl IntoIterator<Item = (&'a str, i64, f64)>) -> usize {
        let points = points.into_iter();
        let mut accepted: Vec<(u32, i64, f64)> = Vec::with_capacity(points.size_hint().0);
        {
            let mut missing = Vec::new();
            if let Ok(index) = self.index.read() {
                for (name, ts, value) in points {
                    match index.get(name) {
                        Some(id) => accepted.push((id, ts, value)),
                        None => missing.push((name, ts, value)),
                    }
                }
            }
            if !missing.is_empty() {
                let now = unix_now();
                if let Ok(mut index) = self.index.write() {
                    for (name, ts, value) in missing {
                        match self.create(&mut index, name, now) {
                            Some(id) => accepted.push((id, ts, value)),
                            None => {
                                self.stats.series_rejected.fetch_add(1, Ordering::Relaxed);
                            }
                        }
                    }
                }
            }
        }
        let count = accepted.len();
        if let Ok(mut pending) = self.pending.lock() {
            pending.extend_from_slice(&accepted);
            self.queued.fetch_add(count as u64, Ordering::Relaxed);
        }
        if !self.has_room() {
            if let Some(flusher) = self.flusher.get() {
                flusher.unpark();
            }
        }
        count
    }

    fn create(&self, index: &mut Index, name: &str, now: i64) -> Option<u32> {
        if let Some(id) = index.get(name) {
            return Some(id);
        }
        let minute = now / 60;
        if index.minute != minute {
            index.minute = minute;
            index.created_this_minute = 0;
        }
        let own = name.starts_with("gantry.");
        if !own
            && (index.len() as u64 >= self.config.max_series
                || index.created_this_minute >= self.config.max_new_series_per_minute
                // Name offsets are 32-bit (4 GiB of names: far beyond any sane `max_series`).
                || index.text.len() + name.len() > u32::MAX as usize)
        {
            return None;
        }
        let archives = self
            .rules
            .retention
            .iter()
            .find(|(pattern, _)| pattern.is_match(name))
            .map(|(_, a)| a.clone())?;
        let (aggregation, xff) = self
            .rules
            .aggregation
            .iter()
            .find(|(pattern, _, _)| pattern.is_match(name))
            .map(|(_, m, x)| (*m, *x))?;
        let schema = index.intern(archives);
        let id = index.metas.len() as u32;
        index.insert(
            name,
            id,
            Meta {
                schema,
                aggregation,
                x_files_factor: xff as f32,
            },
        );
        index.unsaved.push(id);
        index.created_this_minute += 1;
        self.stats.series_created.fetch_add(1, Ordering::Relaxed);
        Some(id)
    }

    /// Applies every queued point as of `now`: durable at once (one fsynced log record),
    /// visible to reads at once, written into blocks at the next checkpoint.
    pub fn flush_at(&self, now: i64) -> Result<()> {
        let mut wal = self
            .flushing
            .lock()
            .map_err(|_| TsdbError::Storage("flush lock poisoned".into()))?;
        self.flush_locked(Some(&mut wal), now)?;
        if let Some(by_count) = self.checkpoint_due() {
            self.checkpoint_locked(&mut wal, now)?;
            // While writes keep filling `max_pending_writes` the next flush reuses what
            // this one freed (handing it back would only fault it in again, a tenth of
            // the CPU of a bulk load); a checkpoint on the timer means the burst is over.
            if !by_count {
                self.release_memory();
            }
        }
        Ok(())
    }

    /// The flush, with the flush lock held: the points are appended to `wal` (not when
    /// replaying the log itself).
    fn flush_locked(&self, wal: Option<&mut Wal>, now: i64) -> Result<()> {
        let mut pending = {
            let mut pending = self
                .pending
                .lock()
                .map_err(|_| TsdbError::Storage("poisoned".into()))?;
            self.queued.store(0, Ordering::Relaxed);
            std::mem::take(&mut *pending)
        };
        // Grouped by series, each series' points still in arrival order (a stable sort).
        pending.sort_by_key(|p| p.0);
        let (unsaved, metas, schemas) = {
            let mut index = self
                .index
                .write()
                .map_err(|_| TsdbError::Storage("index lock poisoned".into()))?;
            let unsaved: Vec<(Box<str>, u32, Meta)> = std::mem::take(&mut index.unsaved)
                .into_iter()
                .filter_map(|id| {
                    Some((
                        Box::<str>::from(index.name(id)?),
                        id,
                        index.metas[id as usize]?,
                    ))
                })
                .collect();
            // Each series' meta, in the order of its points' group below.
            let metas: Vec<Option<Meta>> = pending
                .chunk_by(|a, b| a.0 == b.0)
                .map(|group| index.metas.get(group[0].0 as usize).copied().flatten())
                .collect();
            (unsaved, metas, index.schemas.clone())
        };
        if pending.is_empty() && unsaved.is_empty() {
            return Ok(());
        }
        let created: std::collections::HashSet<u32> = unsaved.iter().map(|u| u.1).collect();
        let mut batch = self.keyspace.batch();
        let mut added = 0u64;
        for (name, id, meta) in &unsaved {
            let mut value = id.to_le_bytes().to_vec();
            value.extend_from_slice(
                format!(
                    "{}|{}|{}",
                    encode_schema(&schemas[meta.schema as usize]),
                    meta.aggregation.code(),
                    meta.x_files_factor
                )
                .as_bytes(),
            );
            batch.insert(&self.series, name.as_bytes(), value);
        }
        let mut written = 0u64;
        let mut heads = self
            .heads
            .lock()
            .map_err(|_| TsdbError::Storage("heads lock poisoned".into()))?;
        // The shard of the series before, locked: consecutive ids share one.
        let mut locked: Option<(usize, std::sync::MutexGuard<'_, ShardWrites>)> = None;
        for (points, meta) in pending.chunk_by(|a, b| a.0 == b.0).zip(&metas) {
            let id = points[0].0;
            let Some(meta) = meta else { continue };
            let archives = &schemas[meta.schema as usize];
            let (shard, place) = write_place(id);
            let shard = match &mut locked {
                Some((at, guard)) if *at == shard => guard,
                _ => {
                    let guard = self.writes[shard]
                        .lock()
                        .map_err(|_| TsdbError::Storage("write shard lock poisoned".into()))?;
                    &mut locked.insert((shard, guard)).1
                }
            };
            let slot_writes = shard.get_mut(place);
            let mut blocks = BlockSet::view(self, id, std::mem::take(slot_writes));
            // A series created since the last flush has nothing stored; another is empty
            // after its last stored block.
            let first_window = heads.get_or_insert(id, archives, || {
                if created.contains(&id) {
                    Ok(vec![i64::MIN; archives.len()])
                } else {
                    self.stored_until(id, archives)
                }
            })?;
            for &(_, ts, value) in points {
                let Some(a) = write_archive(archives, now, ts) else {
                    self.stats
                        .points_out_of_range
                        .fetch_add(1, Ordering::Relaxed);
                    continue;
                };
                written += 1;
                added += 1;
                // Write, then propagate to coarser archives as whisper does after each write.
                let (mut level, mut slot, mut value) =
                    (a, slot_start(ts, archives[a].step), Some(value));
                blocks.set_blind(level, archives[level].step, slot, value)?;
                while let Some(&lower) = archives.get(level + 1) {
                    let higher = archives[level];
                    let coarse = slot_start(slot, lower.step);
                    let (known, aggregate) = heads.windows[first_window + level].update(
                        meta.aggregation,
                        &mut blocks,
                        level,
                        higher,
                        lower,
                        coarse,
                        slot,
                        value,
                        now,
                    )?;
                    if known == 0
                        || f64::from(known) / f64::from(lower.step / higher.step)
                            < f64::from(meta.x_files_factor)
                    {
                        break;
                    }
                    (level, slot, value) = (level + 1, coarse, aggregate);
                    blocks.set_blind(level, lower.step, slot, value)?;
                    added += 1;
                }
            }
            *slot_writes = blocks.into_pending();
        }
        drop(heads);
        // New series are durable before the record that names them.
        if !unsaved.is_empty() {
            batch.commit()?;
            self.keyspace.persist(PersistMode::SyncAll)?;
        }
        if let Some(wal) = wal {
            let record = FlushRecord::new(now, &pending);
            wal.append(record.len(), |out| record.write(out))?;
        }
        self.pending_writes.fetch_add(added, Ordering::Relaxed);
        self.stats
            .points_written
            .fetch_add(written, Ordering::Relaxed);
        Ok(())
    }

    /// Whether a checkpoint is due: `Some(true)` because `max_pending_writes` are held,
    /// `Some(false)` because `checkpoint_interval_secs` passed.
    fn checkpoint_due(&self) -> Option<bool> {
        let pending = self.pending_writes.load(Ordering::Relaxed);
        if pending == 0 {
            return None;
        }
        if pending >= self.config.max_pending_writes {
            return Some(true);
        }
        self.last_checkpoint
            .lock()
            .map_or(true, |at| {
                at.elapsed().as_secs_f64() >= self.config.checkpoint_interval_secs
            })
            .then_some(false)
    }

    /// Writes every pending slot write into blocks (a small delta record per block, or the
    /// block folded when complete), then stores the last flush-log sequence they cover and
    /// deletes the log files. Reads see the same values before, during and after.
    ///
    /// The blocks go in batches ([`Tsdb::commit_when_full`]), one write shard's series
    /// copied at a time, and the sequence with the last batch. A crash
    /// (or an error) between batches leaves some series' blocks with writes of log records
    /// the stored sequence does not cover yet; the next open replays those records in
    /// order, which writes each slot the same values again and ends in the same state
    /// (decision 0006). Nothing leaves `writes` until the sequence is stored.
    fn checkpoint_locked(&self, wal: &mut Wal, now: i64) -> Result<()> {
        let mut batch = self.keyspace.batch();
        for (at, shard) in self.writes.iter().enumerate() {
            // A copy of one shard's writes at a time: reads of its series keep seeing them
            // until the blocks hold them too.
            let pending: Vec<(u32, Writes)> = shard
                .lock()
                .map_err(|_| TsdbError::Storage("write shard lock poisoned".into()))?
                .iter()
                .map(|(place, w)| (write_id(at, place), w.clone()))
                .collect();
            let index = self
                .index
                .read()
                .map_err(|_| TsdbError::Storage("index lock poisoned".into()))?;
            for (id, writes) in pending {
                let Some(meta) = index.metas.get(id as usize).copied().flatten() else {
                    continue;
                };
                let archives = &index.schemas[meta.schema as usize];
                BlockSet::new(self, id, writes).write_to(&mut batch, archives, now)?;
                if self.commit_when_full(&mut batch)? {
                    #[cfg(test)]
                    if self.cut_checkpoints_short.load(Ordering::Relaxed) {
                        return Err(TsdbError::Storage("checkpoint cut short (test)".into()));
                    }
                }
            }
        }
        // Only flushes and replays (which hold the flush lock, as this does) add to it.
        let mut applied = self
            .applied_log
            .lock()
            .map_err(|_| TsdbError::Storage("log key lock poisoned".into()))?;
        for key in applied.iter() {
            batch.remove(&self.log, key.to_be_bytes());
        }
        batch.insert(&self.log, CHECKPOINT_KEY, wal.last_seq().to_le_bytes());
        batch.commit()?;
        applied.clear();
        drop(applied);
        self.keyspace.persist(PersistMode::SyncAll)?;
        // Every record up to the sequence just stored is in blocks: a crash before this
        // leaves files the next open skips.
        wal.truncate()?;
        // Nothing wrote to `writes` meanwhile (the flush lock is held): all of it is in
        // blocks now.
        for shard in &self.writes {
            if let Ok(mut shard) = shard.lock() {
                shard.clear();
            }
        }
        self.pending_writes.store(0, Ordering::Relaxed);
        if let Ok(mut at) = self.last_checkpoint.lock() {
            *at = Instant::now();
        }
        Ok(())
    }

    /// Commits `batch` and starts a new one once it holds [`BATCH_OPS`] changes; returns
    /// whether it did. One batch for every series held a copy of all pending writes and a
    /// record of every block touched at once, and the allocator keeps its bookkeeping for
    /// that peak for good (decision 0003).
    fn commit_when_full(&self, batch: &mut fjall::Batch) -> Result<bool> {
        if batch.len() < BATCH_OPS {
            return Ok(false);
        }
        std::mem::replace(batch, self.keyspace.batch()).commit()?;
        Ok(true)
    }

    /// Applies the flush-log records a crash left (flushed, not yet checkpointed), then
    /// checkpoints: first any records of the log as the engine kept it (data directories
    /// from before the log moved to files), then the log files above the last checkpoint.
    fn replay(&self, now: i64) -> Result<()> {
        let mut wal = self
            .flushing
            .lock()
            .map_err(|_| TsdbError::Storage("flush lock poisoned".into()))?;
        let mut replayed = 0u64;
        let mut apply = |bytes: &[u8]| -> Result<()> {
            match decode_log(bytes) {
                Ok((flushed_at, points)) => {
                    let count = points.len();
                    if let Ok(mut queue) = self.pending.lock() {
                        queue.extend(points);
                    }
                    self.queued.fetch_add(count as u64, Ordering::Relaxed);
                    self.flush_locked(None, flushed_at)?;
                    replayed += count as u64;
                }
                Err(e) => {
                    self.stats.blocks_corrupt.fetch_add(1, Ordering::Relaxed);
                    tracing::warn!(error = %e, "skipping a corrupt metrics log record");
                }
            }
            Ok(())
        };
        let mut engine_records = 0;
        for entry in self.log.iter() {
            let (key, bytes) = entry?;
            if *key == *CHECKPOINT_KEY {
                continue;
            }
            engine_records += 1;
            apply(&bytes)?;
            match <[u8; 8]>::try_from(&key[..]) {
                Ok(key) => self.remember_log_key(u64::from_be_bytes(key))?,
                // Not a key this store writes: nothing to replay, nothing to keep.
                Err(_) => self.log.remove(key)?,
            }
        }
        let checkpoint = match self.log.get(CHECKPOINT_KEY)? {
            Some(bytes) => <[u8; 8]>::try_from(&bytes[..])
                .map(u64::from_le_bytes)
                .map_err(|_| TsdbError::Corrupt("flush log checkpoint".into()))?,
            None => 0,
        };
        let found = wal.replay(checkpoint, |_, bytes| apply(bytes))?;
        if found.corrupt > 0 || found.torn > 0 {
            self.stats
                .blocks_corrupt
                .fetch_add(found.corrupt as u64, Ordering::Relaxed);
            tracing::warn!(
                corrupt = found.corrupt,
                cut_short = found.torn,
                "skipped flush log records that failed their checksum or were cut short by a crash"
            );
        }
        if replayed > 0 || engine_records > 0 || found != Replayed::default() {
            tracing::info!(points = replayed, "replayed the metrics flush log");
            self.checkpoint_locked(&mut wal, now)?;
            self.release_memory();
        }
        Ok(())
    }

    /// For each archive of a series, the end of its last stored block (`i64::MIN` when it
    /// has none): nothing is stored at or after it.
    fn stored_until(&self, id: u32, archives: &[Archive]) -> Result<Vec<i64>> {
        let mut ends = Vec::with_capacity(archives.len());
        for (a, archive) in archives.iter().enumerate() {
            let mut prefix = [0u8; 5];
            prefix[..4].copy_from_slice(&id.to_be_bytes());
            prefix[4] = a as u8;
            let end = match self.blocks.prefix(prefix).next_back() {
                Some(entry) => {
                    let (key, _) = entry?;
                    let number = block_number(&key)
                        .ok_or_else(|| TsdbError::Corrupt("short block key".into()))?;
                    i64::try_from(number)
                        .ok()
                        .and_then(|b| b.checked_add(1))
                        .and_then(|b| b.checked_mul(i64::from(archive.step) * SLOTS_PER_BLOCK))
                        .unwrap_or(i64::MAX)
                }
                None => i64::MIN,
            };
            ends.push(end);
        }
        Ok(ends)
    }

    /// Values of `name` in `[from, until]` as of `now`, from the finest archive that covers
    /// `from`; `None` when the series does not exist or keeps nothing there.
    pub fn fetch(&self, name: &str, from: i64, until: i64, now: i64) -> Result<Option<Fetched>> {
        let (id, archives) = {
            let index = self
                .index
                .read()
                .map_err(|_| TsdbError::Storage("index lock poisoned".into()))?;
            let Some(id) = index.get(name) else {
                return Ok(None);
            };
            let Some(meta) = index.metas[id as usize] else {
                return Ok(None);
            };
            (id, index.schemas[meta.schema as usize].clone())
        };
        let Some(window) = read_window(&archives, now, from, until) else {
            return Ok(None);
        };
        let archive = archives[window.archive];
        let step = i64::from(window.step);
        // This archive's writes not yet in blocks.
        let (shard, place) = write_place(id);
        let pending: Writes = self.writes[shard]
            .lock()
            .map_err(|_| TsdbError::Storage("write shard lock poisoned".into()))?
            .get(place)
            .map(|w| {
                w.range((window.archive, 0)..=(window.archive, u64::MAX))
                    .map(|(k, v)| (*k, v.clone()))
                    .collect()
            })
            .unwrap_or_default();
        let slots = ((window.end - window.start) / step) as usize;
        let mut values: Vec<Option<f64>> = vec![None; slots];
        // Each stored block of the window in one scan, its records (the base, then its
        // delta records in the order written) applied in place: straight into the answer
        // for a block wholly inside the window (most of them), else into a block of slots
        // from which the part inside is copied.
        let (first, _) = block_of(window.start, window.step);
        let (last, _) = block_of(window.end - step, window.step);
        let span = step * SLOTS_PER_BLOCK;
        let block_len = SLOTS_PER_BLOCK as usize;
        // Where block `number` starts in the answer, in slots, when it lies wholly inside.
        let inside = |number: u64| {
            let at = (number as i64 * span - window.start) / step;
            (at >= 0 && at as usize + block_len <= slots).then_some(at as usize)
        };
        // An edge block's slots, and what of them lies inside the window.
        let mut edge = vec![None; block_len];
        let copy_edge = |values: &mut [Option<f64>], number: u64, edge: &[Option<f64>]| {
            let block_start = number as i64 * span;
            for (i, value) in edge.iter().enumerate() {
                let t = block_start + i as i64 * step;
                if value.is_some() && t >= window.start && t < window.end {
                    values[((t - window.start) / step) as usize] = *value;
                }
            }
        };
        let mut current: Option<u64> = None;
        let start = block_key(id, window.archive, first);
        let end = block_key(id, window.archive, last.saturating_add(1));
        for entry in self.blocks.range(start..end) {
            let (key, bytes) = entry?;
            let Some(number) = block_number(&key) else {
                continue;
            };
            if current != Some(number) {
                if let Some(done) = current.filter(|&n| inside(n).is_none()) {
                    copy_edge(&mut values, done, &edge);
                }
                if inside(number).is_none() {
                    edge.fill(None);
                }
                current = Some(number);
            }
            let target = match inside(number) {
                Some(at) => &mut values[at..at + block_len],
                None => &mut edge[..],
            };
            self.merge_record(id, &key, &bytes, target);
        }
        if let Some(done) = current.filter(|&n| inside(n).is_none()) {
            copy_edge(&mut values, done, &edge);
        }
        // Then the writes not yet in blocks, in the order made.
        for (&(_, number), writes) in &pending {
            let block_start = number as i64 * span;
            for (index, value) in writes.iter() {
                let t = block_start + index as i64 * step;
                if t >= window.start && t < window.end {
                    values[((t - window.start) / step) as usize] = value;
                }
            }
        }
        // Whisper's ring: a slot older than the retention is gone once the slot one
        // retention later has a value (see `BlockSet::known`).
        let stale = now - archive.retention();
        let ringed = values
            .iter()
            .enumerate()
            .take_while(|(i, _)| window.start + *i as i64 * step < stale)
            .any(|(_, v)| v.is_some());
        if ringed {
            let mut blocks = BlockSet::view(self, id, pending);
            for (i, value) in values.iter_mut().enumerate() {
                let slot = window.start + i as i64 * step;
                if slot >= stale {
                    break;
                }
                if value.is_some() {
                    *value = blocks.known(window.archive, archive, slot, now)?;
                }
            }
        }
        Ok(Some(Fetched {
            start: window.start,
            end: window.end,
            step: window.step,
            values,
        }))
    }

    /// Names of all series, sorted.
    pub fn names(&self) -> Vec<String> {
        self.names_with_prefix("")
    }

    /// Names of the series starting with `prefix`, sorted.
    pub fn names_with_prefix(&self, prefix: &str) -> Vec<String> {
        let index = match self.index.read() {
            Ok(i) => i,
            Err(_) => return Vec::new(),
        };
        let mut names: Vec<String> = index
            .iter()
            .filter(|(name, _)| name.starts_with(prefix))
            .map(|(name, _)| name.to_string())
            .collect();
        names.sort_unstable();
        names
    }

    /// Deletes every series whose name satisfies `matches`, with all its data. Returns the
    /// names deleted.
    pub fn delete_where(&self, matches: impl Fn(&str) -> bool) -> Result<Vec<String>> {
        let _guard = self
            .flushing
            .lock()
            .map_err(|_| TsdbError::Storage("flush lock poisoned".into()))?;
        let doomed: Vec<(String, u32)> = {
            let mut index = self
                .index
                .write()
                .map_err(|_| TsdbError::Storage("index lock poisoned".into()))?;
            let doomed: Vec<(String, u32)> = index
                .iter()
                .filter(|(n, _)| matches(n))
                .map(|(n, id)| (n.to_string(), id))
                .collect();
            for (_, id) in &doomed {
                index.remove(*id);
            }
            doomed
        };
        if let Ok(mut pending) = self.pending.lock() {
            let ids: std::collections::HashSet<u32> = doomed.iter().map(|d| d.1).collect();
            let before = pending.len();
            pending.retain(|p| !ids.contains(&p.0));
            self.queued
                .fetch_sub((before - pending.len()) as u64, Ordering::Relaxed);
        }
        if let Ok(mut heads) = self.heads.lock() {
            for (_, id) in &doomed {
                heads.remove(*id);
            }
        }
        for (_, id) in &doomed {
            let (shard, place) = write_place(*id);
            if let Ok(mut shard) = self.writes[shard].lock() {
                shard.remove(place);
            }
        }
        let mut batch = self.keyspace.batch();
        for (name, id) in &doomed {
            batch.remove(&self.series, name.as_bytes());
            for entry in self.blocks.prefix(id.to_be_bytes()) {
                let (key, _) = entry?;
                batch.remove(&self.blocks, key);
            }
        }
        batch.commit()?;
        self.keyspace.persist(PersistMode::SyncAll)?;
        let mut names: Vec<String> = doomed.into_iter().map(|(n, _)| n).collect();
        names.sort_unstable();
        Ok(names)
    }

    /// Deletes blocks wholly older than their archive keeps, and compresses blocks whose
    /// time is over but that were last written while still being filled. Returns how many
    /// blocks were deleted.
    pub fn expire(&self, now: i64) -> Result<u64> {
        self.maintain(now, false)
    }

    /// Everything [`Tsdb::expire`] does, then folds the delta records of blocks still
    /// being filled too, and compacts the files: the smallest the store can be on disk now.
    /// Returns how many blocks were deleted.
    pub fn compact_all(&self, now: i64) -> Result<u64> {
        let deleted = self.maintain(now, true)?;
        self.keyspace.persist(PersistMode::SyncAll)?;
        self.compact()?;
        Ok(deleted)
    }

    fn maintain(&self, now: i64, include_open: bool) -> Result<u64> {
        let mut wal = self
            .flushing
            .lock()
            .map_err(|_| TsdbError::Storage("flush lock poisoned".into()))?;
        // Everything pending into blocks first, so what follows sees every block whole.
        self.checkpoint_locked(&mut wal, now)?;
        let live: Vec<(u32, Vec<Archive>)> = {
            let index = self
                .index
                .read()
                .map_err(|_| TsdbError::Storage("index lock poisoned".into()))?;
            index
                .metas
                .iter()
                .enumerate()
                .filter_map(|(id, m)| {
                    Some((
                        id as u32,
                        index.schemas[m.as_ref()?.schema as usize].clone(),
                    ))
                })
                .collect()
        };
        let mut batch = self.keyspace.batch();
        let mut removed = 0;
        for (id, archives) in live {
            for (a, archive) in archives.iter().enumerate() {
                let span = i64::from(archive.step) * SLOTS_PER_BLOCK;
                let oldest = now - archive.retention();
                // Blocks ending at or before `oldest` hold nothing still kept.
                let first_kept = oldest.div_euclid(span).max(0) as u64;
                let start = block_key(id, a, 0);
                let end = block_key(id, a, first_kept);
                for entry in self.blocks.range(start..end) {
                    let (key, _) = entry?;
                    batch.remove(&self.blocks, key);
                    removed += 1;
                }
                // Blocks whose time is over but still have deltas or a raw base get folded
                // and compressed.
                let current = if include_open {
                    u64::MAX
                } else {
                    now.div_euclid(span).max(0) as u64
                };
                let mut to_fold = BTreeSet::new();
                for entry in self.blocks.range(end..block_key(id, a, current)) {
                    let (key, bytes) = entry?;
                    if key.len() > 13 || block::is_raw(&bytes) {
                        to_fold.extend(block_number(&key));
                    }
                }
                if !to_fold.is_empty() {
                    let mut set = BlockSet::new(self, id, Writes::new());
                    for block in to_fold {
                        set.block(a, block)?;
                    }
                    set.fold_to(&mut batch);
                }
            }
            // Each series' changes are whole in themselves (a fold writes the new base and
            // removes the deltas it took in; an expired block is gone either way).
            self.commit_when_full(&mut batch)?;
        }
        batch.commit()?;
        self.release_memory();
        Ok(removed)
    }

    /// Writes memory tables out and merges each partition's files into one sorted run,
    /// keeping only the newest version of every key and dropping deleted ones (what the
    /// LSM tree does by itself over time; this does it now).
    ///
    /// fjall's own `major_compact` keeps every version newer than its snapshot watermark,
    /// which trails the newest write by up to 100 commits when no snapshot is ever taken;
    /// and merging into the last level drops a tombstone while keeping such a version under
    /// it, so a series deleted, a block expired or a delta record folded in the last 100
    /// commits would come back. This store never reads from a snapshot (every read wants
    /// the newest version), so its compaction keeps the newest version of each key only.
    /// `tests/store.rs` `deleted_data_stays_deleted_after_compaction` guards it.
    pub fn compact(&self) -> Result<()> {
        for partition in [&self.series, &self.blocks, &self.log] {
            partition.rotate_memtable_and_wait()?;
            partition
                .tree
                .major_compact(COMPACTED_FILE_BYTES, NEWEST_VERSION_ONLY)?;
        }
        self.release_memory();
        Ok(())
    }

    /// Merges one stored record of series `id` into a block's slots: a base (a 13-byte
    /// key) replaces them, a delta record (a longer key) changes some. A corrupt one is
    /// counted and skipped. Returns whether it was a delta record.
    fn merge_record(&self, id: u32, key: &[u8], bytes: &[u8], slots: &mut [Option<f64>]) -> bool {
        let delta = key.len() != 13;
        let merged = if delta {
            block::apply_delta(bytes, slots)
        } else {
            block::decode_into(bytes, slots)
        };
        if let Err(e) = merged {
            self.stats.blocks_corrupt.fetch_add(1, Ordering::Relaxed);
            tracing::warn!(error = %e, series = id, "skipping a corrupt metrics block");
        }
        delta
    }

    /// Notes a log record for the next checkpoint to remove (see [`Tsdb::applied_log`]).
    fn remember_log_key(&self, key: u64) -> Result<()> {
        self.applied_log
            .lock()
            .map_err(|_| TsdbError::Storage("log key lock poisoned".into()))?
            .push(key);
        Ok(())
    }

    fn next_delta(&self) -> u64 {
        self.delta_seq.fetch_add(1, Ordering::Relaxed)
    }

    /// Flushes what is queued, writes every pending write into blocks and stops the flusher.
    pub fn close(&self) -> Result<()> {
        self.stop.store(true, Ordering::Relaxed);
        let now = unix_now();
        let mut wal = self
            .flushing
            .lock()
            .map_err(|_| TsdbError::Storage("flush lock poisoned".into()))?;
        self.flush_locked(Some(&mut wal), now)?;
        self.checkpoint_locked(&mut wal, now)
    }
}

impl Index {
    fn intern(&mut self, archives: Vec<Archive>) -> u16 {
        match self.schemas.iter().position(|s| *s == archives) {
            Some(i) => i as u16,
            None => {
                self.schemas.push(archives);
                (self.schemas.len() - 1) as u16
            }
        }
    }

    /// Adds a series (its name not yet in the index).
    fn insert(&mut self, name: &str, id: u32, meta: Meta) {
        let i = id as usize;
        if self.metas.len() <= i {
            self.metas.resize(i + 1, None);
            self.spans.resize(i + 1, (0, 0));
        }
        let start = self.text.len() as u32;
        self.text.push_str(name);
        self.metas[i] = Some(meta);
        self.spans[i] = (start, self.text.len() as u32);
        let hash = self.hasher.hash_one(name);
        let Index {
            ids,
            text,
            spans,
            hasher,
            ..
        } = self;
        ids.insert_unique(hash, id, |&other| {
            hasher.hash_one(spanned(text, spans, other))
        });
    }

    /// Gives back what growing by doubling left unused (the hash table is already as
    /// small as its load factor allows).
    fn shrink_to_fit(&mut self) {
        self.text.shrink_to_fit();
        self.spans.shrink_to_fit();
        self.metas.shrink_to_fit();
        self.unsaved.shrink_to_fit();
    }

    /// The name of a live series.
    fn name(&self, id: u32) -> Option<&str> {
        self.metas.get(id as usize)?.as_ref()?;
        Some(spanned(&self.text, &self.spans, id))
    }

    fn get(&self, name: &str) -> Option<u32> {
        let hash = self.hasher.hash_one(name);
        self.ids
            .find(hash, |&id| spanned(&self.text, &self.spans, id) == name)
            .copied()
    }

    fn len(&self) -> usize {
        self.ids.len()
    }

    /// Live series: (name, id).
    fn iter(&self) -> impl Iterator<Item = (&str, u32)> + '_ {
        self.ids.iter().filter_map(|&id| Some((self.name(id)?, id)))
    }

    /// Forgets a series (its name's bytes stay in `text` until the next open).
    fn remove(&mut self, id: u32) {
        let Some(name) = self.name(id) else { return };
        let hash = self.hasher.hash_one(name);
        if let Ok(entry) = self.ids.find_entry(hash, |&other| other == id) {
            entry.remove();
        }
        if let Some(meta) = self.metas.get_mut(id as usize) {
            *meta = None;
        }
    }
}

/// The name of series `id` in [`Index::text`] (empty for an id never created).
fn spanned<'a>(text: &'a str, spans: &[(u32, u32)], id: u32) -> &'a str {
    spans
        .get(id as usize)
        .and_then(|&(a, b)| text.get(a as usize..b as usize))
        .unwrap_or("")
}

/// A flush's record in the flush log: `now i64 | series u32 | per series: id u32, n u32,
/// n × (ts i64, value f64)`, little-endian. `now` is the flush's, so a replay decides as it
/// did.
struct FlushRecord<'a> {
    now: i64,
    /// How many series `points` holds, counted once.
    series: usize,
    /// Grouped by series id.
    points: &'a [(u32, i64, f64)],
}

impl<'a> FlushRecord<'a> {
    fn new(now: i64, points: &'a [(u32, i64, f64)]) -> FlushRecord<'a> {
        let series = points.chunk_by(|a, b| a.0 == b.0).count();
        FlushRecord {
            now,
            series,
            points,
        }
    }

    /// Bytes [`FlushRecord::write`] writes.
    fn len(&self) -> u64 {
        12 + 8 * self.series as u64 + 16 * self.points.len() as u64
    }

    fn write(&self, out: &mut dyn std::io::Write) -> std::io::Result<()> {
        out.write_all(&self.now.to_le_bytes())?;
        out.write_all(&(self.series as u32).to_le_bytes())?;
        let mut point = [0u8; 16];
        for series in self.points.chunk_by(|a, b| a.0 == b.0) {
            out.write_all(&series[0].0.to_le_bytes())?;
            out.write_all(&(series.len() as u32).to_le_bytes())?;
            for (_, ts, value) in series {
                point[..8].copy_from_slice(&ts.to_le_bytes());
                point[8..].copy_from_slice(&value.to_le_bytes());
                out.write_all(&point)?;
            }
        }
        Ok(())
    }
}

/// A decoded log record: the flush's `now` and its points, grouped by series.
type LogRecord = (i64, Vec<(u32, i64, f64)>);

fn decode_log(bytes: &[u8]) -> Result<LogRecord> {
    let corrupt = || TsdbError::Corrupt("flush log record is cut short".into());
    let mut rest = bytes;
    let mut take = |n: usize| -> Result<&[u8]> {
        let (head, tail) = rest.split_at_checked(n).ok_or_else(corrupt)?;
        rest = tail;
        Ok(head)
    };
    let word = |b: &[u8]| u32::from_le_bytes([b[0], b[1], b[2], b[3]]);
    let eight = |b: &[u8]| [b[0], b[1], b[2], b[3], b[4], b[5], b[6], b[7]];
    let now = i64::from_le_bytes(eight(take(8)?));
    let count = word(take(4)?);
    let mut points = Vec::new();
    for _ in 0..count {
        let id = word(take(4)?);
        let n = word(take(4)?) as usize;
        let body = take(n.checked_mul(16).ok_or_else(corrupt)?)?;
        points.extend(body.chunks_exact(16).map(|c| {
            (
                id,
                i64::from_le_bytes(eight(&c[..8])),
                f64::from_le_bytes(eight(&c[8..])),
            )
        }));
    }
    Ok((now, points))
}

fn compile(config: &TsdbConfig) -> Result<Rules> {
    let regex =
        |p: &str| Regex::new(p).map_err(|e| TsdbError::Config(format!("pattern '{p}': {e}")));
    let mut retention = Vec::new();
    for rule in &config.retention {
        retention.push((
            regex(&rule.pattern)?,
            config::parse_retentions(&rule.retentions)?,
        ));
    }
    retention.push((
        regex(".*")?,
        config::parse_retentions(config::DEFAULT_RETENTIONS)?,
    ));
    let mut aggregation = Vec::new();
    for rule in config
        .aggregation
        .iter()
        .cloned()
        .chain(config::default_aggregation())
    {
        if !(0.0..=1.0).contains(&rule.x_files_factor) {
            return Err(TsdbError::Config(format!(
                "x_files_factor {} must be between 0 and 1",
                rule.x_files_factor
            )));
        }
        aggregation.push((regex(&rule.pattern)?, rule.method, rule.x_files_factor));
    }
    Ok(Rules {
        retention,
        aggregation,
    })
}

/// A block as read: its base merged with its delta records, and what changed since.
struct LoadedBlock {
    slots: Vec<Option<f64>>,
    /// Slots set since loading, by index (the last value set wins).
    changed: BTreeMap<usize, Option<f64>>,
    /// Keys of the delta records merged in, to remove when the block is folded.
    deltas: Vec<fjall::Slice>,
}

impl LoadedBlock {
    fn empty() -> LoadedBlock {
        LoadedBlock {
            slots: vec![None; SLOTS_PER_BLOCK as usize],
            changed: BTreeMap::new(),
            deltas: Vec::new(),
        }
    }
}

/// A block gets at most this many delta records before they are folded into its base.
const FOLD_AFTER: usize = 32;

/// Files written by [`Tsdb::compact`] (fjall's default target for its leveled compaction).
const COMPACTED_FILE_BYTES: u64 = 64 * 1024 * 1024;

/// Checkpoints and maintenance commit their changes once a batch holds this many (see
/// [`Tsdb::commit_when_full`]).
const BATCH_OPS: usize = 4096;

/// A compaction watermark above every sequence number: keep only each key's newest version.
const NEWEST_VERSION_ONLY: u64 = u64::MAX;

/// Slot writes not yet in the blocks partition, by (archive, block).
type Writes = BTreeMap<(usize, u64), SlotWrites>;

/// Writes to the slots of one block in the order made (a later one wins), with a repeated
/// write to the last slot written folded in place (a rollup slot is rewritten at every
/// flush until its coarse slot is over).
#[derive(Debug, Clone, Default)]
struct SlotWrites(Vec<(u16, Option<f64>)>);

impl SlotWrites {
    fn push(&mut self, index: usize, value: Option<f64>) {
        let index = index as u16;
        match self.0.last_mut() {
            Some(last) if last.0 == index => last.1 = value,
            _ => self.0.push((index, value)),
        }
    }

    fn iter(&self) -> impl Iterator<Item = (usize, Option<f64>)> + '_ {
        self.0.iter().map(|&(i, v)| (usize::from(i), v))
    }

    fn touches(&self, index: usize) -> bool {
        self.0.iter().any(|&(i, _)| usize::from(i) == index)
    }

    /// The last value written to each slot.
    fn latest(&self) -> BTreeMap<usize, Option<f64>> {
        self.iter().collect()
    }
}

/// The blocks of one series a flush, read or checkpoint touches, each loaded once.
struct BlockSet<'a> {
    tsdb: &'a Tsdb,
    id: u32,
    loaded: BTreeMap<(usize, u64), LoadedBlock>,
    /// Writes to blocks, merged into a block when it is loaded.
    blind: Writes,
    /// A view (a flush or a read): `blind` is the series' pending writes and stays whole
    /// (loaded blocks are copies with it applied, writes go to both). Otherwise (a
    /// checkpoint or maintenance) loaded blocks take their writes over and are written back.
    view: bool,
}

impl<'a> BlockSet<'a> {
    /// For writing blocks back (checkpoints, maintenance), with `writes` to apply.
    fn new(tsdb: &'a Tsdb, id: u32, writes: Writes) -> BlockSet<'a> {
        BlockSet {
            tsdb,
            id,
            loaded: BTreeMap::new(),
            blind: writes,
            view: false,
        }
    }

    /// For a flush or a read: stored blocks as `pending` (the series' writes since the
    /// last checkpoint) changes them; writes join `pending` (see [`BlockSet::into_pending`]).
    fn view(tsdb: &'a Tsdb, id: u32, pending: Writes) -> BlockSet<'a> {
        BlockSet {
            view: true,
            ..BlockSet::new(tsdb, id, pending)
        }
    }

    /// A view's pending writes, with the ones it made.
    fn into_pending(self) -> Writes {
        self.blind
    }

    /// Reads a block: its base (if any), then its delta records in the order written.
    fn block(&mut self, archive: usize, block: u64) -> Result<&mut LoadedBlock> {
        if !self.loaded.contains_key(&(archive, block)) {
            let mut loaded = LoadedBlock::empty();
            for entry in self.tsdb.blocks.prefix(block_key(self.id, archive, block)) {
                let (key, bytes) = entry?;
                self.apply(&mut loaded, key, &bytes);
            }
            self.insert_loaded(archive, block, loaded);
        }
        self.loaded
            .get_mut(&(archive, block))
            .ok_or_else(|| TsdbError::Storage("block vanished".into()))
    }

    /// Merges one stored record (a base, or a delta record: its key is longer) into a block
    /// being read; a corrupt one is counted and skipped.
    fn apply(&self, loaded: &mut LoadedBlock, key: fjall::Slice, bytes: &[u8]) {
        if self
            .tsdb
            .merge_record(self.id, &key, bytes, &mut loaded.slots)
        {
            loaded.deltas.push(key);
        }
    }

    /// Adds a block just read, with the writes made to it applied (a view keeps them).
    fn insert_loaded(&mut self, archive: usize, block: u64, mut loaded: LoadedBlock) {
        let writes = if self.view {
            self.blind.get(&(archive, block)).cloned()
        } else {
            self.blind.remove(&(archive, block))
        };
        for (index, value) in writes.iter().flat_map(SlotWrites::iter) {
            if let Some(cell) = loaded.slots.get_mut(index) {
                *cell = value;
                loaded.changed.insert(index, value);
            }
        }
        self.loaded.insert((archive, block), loaded);
    }

    fn get(&mut self, archive: usize, step: u32, slot: i64) -> Result<Option<f64>> {
        let (block, index) = block_of(slot, step);
        Ok(self
            .block(archive, block)?
            .slots
            .get(index)
            .copied()
            .flatten())
    }

    /// A slot's value as whisper would see it. Whisper keeps an archive in a ring of
    /// `points` slots, so a slot older than the retention still holds its value until the
    /// slot one retention later is written over it; blocks keep both, so this asks.
    fn known(&mut self, archive: usize, spec: Archive, slot: i64, now: i64) -> Result<Option<f64>> {
        let value = self.get(archive, spec.step, slot)?;
        if value.is_some()
            && slot < now - spec.retention()
            && self
                .get(archive, spec.step, slot + spec.retention())?
                .is_some()
        {
            return Ok(None);
        }
        Ok(value)
    }

    /// Sets a slot without reading its block (a delta record carries the change), unless
    /// the block is read already.
    fn set_blind(
        &mut self,
        archive: usize,
        step: u32,
        slot: i64,
        value: Option<f64>,
    ) -> Result<()> {
        let (block, index) = block_of(slot, step);
        if self.loaded.contains_key(&(archive, block)) {
            return self.set(archive, step, slot, value);
        }
        self.blind
            .entry((archive, block))
            .or_default()
            .push(index, value);
        Ok(())
    }

    fn set(&mut self, archive: usize, step: u32, slot: i64, value: Option<f64>) -> Result<()> {
        let (block, index) = block_of(slot, step);
        let entry = self.block(archive, block)?;
        if let Some(cell) = entry.slots.get_mut(index) {
            *cell = value;
            entry.changed.insert(index, value);
        }
        if self.view {
            self.blind
                .entry((archive, block))
                .or_default()
                .push(index, value);
        }
        Ok(())
    }

    /// Writes changes back. A block still being filled gets a small delta record of the
    /// slots that changed (so a flush writes bytes per point, not a block per point); a
    /// complete block (last slot written, or its time over), or one with `FOLD_AFTER`
    /// deltas, is folded: its base rewritten (compressed once complete) and deltas removed.
    fn write_to(mut self, batch: &mut fjall::Batch, archives: &[Archive], now: i64) -> Result<()> {
        // A blind write to a block's last slot completes it: read it first, to fold it.
        // A block whose time is over but whose last slot is still empty takes deltas like
        // any other (a history load writes such blocks in many flushes; folding at each
        // would read and recompress the block every time); maintenance folds what is left.
        let completing: Vec<(usize, u64)> = self
            .blind
            .iter()
            .filter(|(_, writes)| writes.touches(SLOTS_PER_BLOCK as usize - 1))
            .map(|(key, _)| *key)
            .collect();
        for (archive, block) in completing {
            self.block(archive, block)?;
        }
        for ((archive, block), writes) in std::mem::take(&mut self.blind) {
            let mut key = block_key(self.id, archive, block).to_vec();
            key.extend_from_slice(&self.tsdb.next_delta().to_be_bytes());
            batch.insert(
                &self.tsdb.blocks,
                key,
                block::encode_delta(&writes.latest()),
            );
        }
        for ((archive, block), loaded) in self.loaded {
            if loaded.changed.is_empty() {
                continue;
            }
            let base_key = block_key(self.id, archive, block);
            let complete = loaded.slots.last().is_some_and(Option::is_some)
                || block_end(block, archives[archive].step) <= now;
            if complete || loaded.deltas.len() + 1 >= FOLD_AFTER {
                batch.insert(
                    &self.tsdb.blocks,
                    base_key,
                    block::encode(&loaded.slots, complete),
                );
                for key in loaded.deltas {
                    batch.remove(&self.tsdb.blocks, key);
                }
            } else {
                let mut key = base_key.to_vec();
                key.extend_from_slice(&self.tsdb.next_delta().to_be_bytes());
                batch.insert(&self.tsdb.blocks, key, block::encode_delta(&loaded.changed));
            }
        }
        Ok(())
    }

    /// Folds every loaded block into a compressed base, removing its deltas.
    fn fold_to(self, batch: &mut fjall::Batch) {
        for ((archive, block), loaded) in self.loaded {
            batch.insert(
                &self.tsdb.blocks,
                block_key(self.id, archive, block),
                block::encode(&loaded.slots, true),
            );
            for key in loaded.deltas {
                batch.remove(&self.tsdb.blocks, key);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Series named `test.*` keep `retentions`; flushes only when a test asks.
    fn test_config(retentions: &str) -> TsdbConfig {
        TsdbConfig {
            fsync_interval_secs: 3600.0,
            retention: vec![config::RetentionRule {
                pattern: "^test\\.".into(),
                retentions: retentions.into(),
            }],
            ..TsdbConfig::default()
        }
    }

    /// A data directory from before the flush log moved to files may hold records in the
    /// engine's `log` partition: the next open replays them and removes them.
    #[test]
    fn flush_log_records_kept_by_the_engine_are_replayed_once() {
        let dir = tempfile::tempdir().unwrap();
        let now = 1_800_000_000;
        let config = || test_config("10s:1h");
        {
            let tsdb = Tsdb::open(dir.path(), config()).unwrap();
            tsdb.write([("test.old", now - 100, 1.0)]);
            tsdb.flush_at(now).unwrap();
            tsdb.checkpoint(now).unwrap();
            let id = tsdb.index.read().unwrap().get("test.old").unwrap();
            let mut record = Vec::new();
            let points = [(id, now - 90, 7.0)];
            let flush = FlushRecord::new(now, &points);
            flush.write(&mut record).unwrap();
            assert_eq!(record.len() as u64, flush.len());
            tsdb.log.insert(42u64.to_be_bytes(), record).unwrap();
            assert_eq!(tsdb.log_records().unwrap(), 1);
        }
        let tsdb = Tsdb::open(dir.path(), config()).unwrap();
        let fetched = tsdb
            .fetch("test.old", now - 110, now - 90, now)
            .unwrap()
            .unwrap();
        assert_eq!(fetched.values, vec![Some(1.0), Some(7.0)]);
        assert_eq!(tsdb.log_records().unwrap(), 0);
        assert!(tsdb.log.get(42u64.to_be_bytes()).unwrap().is_none());
    }

    /// A checkpoint commits its blocks in several batches; a crash after some of them (here
    /// an error after the first, then the store dropped unclosed) leaves blocks holding
    /// writes the stored log sequence does not cover. The next open replays those records
    /// over them and every value is what it was before the checkpoint began, rewritten
    /// slots and rollups included.
    #[test]
    fn a_checkpoint_cut_short_between_batches_loses_and_changes_nothing() {
        let dir = tempfile::tempdir().unwrap();
        let now = 1_800_000_000;
        let config = || test_config("10s:1h,1m:1d");
        // Two delta records per series (one block of each archive): two batches' worth.
        let names: Vec<String> = (0..BATCH_OPS)
            .map(|i| match i % 2 {
                0 => format!("test.s{i}"),
                _ => format!("test.s{i}.count"),
            })
            .collect();
        let slot = now - now % 60 - 120;
        // Per series: its 10 s slots around the writes, and its 1 min slots of two hours.
        type Windows = Vec<(Vec<Option<f64>>, Vec<Option<f64>>)>;
        let read_all = |tsdb: &Tsdb| -> Windows {
            names
                .iter()
                .map(|name| {
                    let fine = tsdb
                        .fetch(name, slot - 10, slot + 60, now)
                        .unwrap()
                        .unwrap();
                    let coarse = tsdb.fetch(name, slot - 3600 * 2, slot + 60, now).unwrap();
                    (fine.values, coarse.unwrap().values)
                })
                .collect()
        };
        let expected = {
            let tsdb = Tsdb::open(dir.path(), config()).unwrap();
            // Two flushes; the second rewrites one slot of the first and adds another.
            tsdb.write(
                names
                    .iter()
                    .enumerate()
                    .map(|(i, n)| (n.as_str(), slot, i as f64)),
            );
            tsdb.flush_at(now).unwrap();
            tsdb.write(names.iter().enumerate().flat_map(|(i, n)| {
                [
                    (n.as_str(), slot, -(i as f64)),
                    (n.as_str(), slot + 10, 0.5),
                ]
            }));
            tsdb.flush_at(now).unwrap();
            let before = read_all(&tsdb);
            // test.s3.count: -3 rewrote 3, then 0.5; summed into its minute.
            assert_eq!(before[3].0[..2], [Some(-3.0), Some(0.5)], "{:?}", before[3]);
            assert_eq!(before[3].1.iter().flatten().collect::<Vec<_>>(), [&-2.5]);
            tsdb.cut_checkpoints_short.store(true, Ordering::Relaxed);
            let err = tsdb.checkpoint(now).unwrap_err().to_string();
            assert!(err.contains("cut short"), "{err}");
            let stored = tsdb.blocks.iter().count();
            assert!(
                stored > 0 && stored < 2 * names.len(),
                "some blocks, not all, were stored: {stored}"
            );
            assert_eq!(read_all(&tsdb), before, "reads unchanged after the cut");
            assert_eq!(tsdb.log_records().unwrap(), 2, "the log stays");
            before
        };
        let tsdb = Tsdb::open(dir.path(), config()).unwrap();
        assert_eq!(tsdb.log_records().unwrap(), 0, "replayed and checkpointed");
        assert_eq!(read_all(&tsdb), expected);
        tsdb.close().unwrap();
        drop(tsdb);
        let tsdb = Tsdb::open(dir.path(), config()).unwrap();
        assert_eq!(read_all(&tsdb), expected, "the same after a clean reopen");
    }

    #[test]
    fn epoch32_keeps_every_time_a_window_holds_and_clamps_the_rest() {
        assert_eq!(std::mem::size_of::<RollupWindow>(), 32);
        for t in [0, 1, 1_800_000_000, i64::from(u32::MAX)] {
            assert_eq!(Epoch32::of(t).get(), t);
        }
        assert_eq!(Epoch32::of(i64::MIN), Epoch32(0));
        assert_eq!(Epoch32::of(i64::MAX), Epoch32(u32::MAX));
        assert!(Epoch32::of(1_800_000_000) < Epoch32::of(1_800_000_010));
    }

    #[test]
    fn write_places_are_distinct_dense_and_invertible() {
        let ids = (WRITE_SHARDS * WRITE_RUN * 3 + 17) as u32;
        let mut seen = vec![vec![false; ids as usize]; WRITE_SHARDS];
        let mut most = vec![0; WRITE_SHARDS];
        for id in 0..ids {
            let (shard, place) = write_place(id);
            assert!(!seen[shard][place], "{id} shares a place");
            seen[shard][place] = true;
            most[shard] = most[shard].max(place + 1);
            assert_eq!(write_id(shard, place), id);
        }
        // Dense: every shard's table is about ids / shards long.
        let per_shard = ids as usize / WRITE_SHARDS;
        assert!(most.iter().all(|&m| m <= per_shard + WRITE_RUN), "{most:?}");
        // Runs: consecutive ids share a shard and follow each other in it.
        assert_eq!(write_place(0), (0, 0));
        assert_eq!(write_place(WRITE_RUN as u32 - 1), (0, WRITE_RUN - 1));
        assert_eq!(write_place(WRITE_RUN as u32), (1, 0));
        assert_eq!(
            write_place((WRITE_RUN * WRITE_SHARDS) as u32),
            (0, WRITE_RUN)
        );
    }
}
