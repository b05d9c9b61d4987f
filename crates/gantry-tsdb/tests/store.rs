//! The store through its public interface, on real files: whisper's semantics, durability,
//! deletion, retention and the cardinality guard.

use std::io::BufRead;
use std::sync::Arc;

use gantry_tsdb::config::{AggregationRule, RetentionRule};
use gantry_tsdb::{Aggregation, Tsdb, TsdbConfig};

const NOW: i64 = 1_800_000_000;

fn config() -> TsdbConfig {
    TsdbConfig {
        fsync_interval_secs: 3600.0, // tests flush explicitly
        retention: vec![RetentionRule {
            pattern: "^test\\.".into(),
            retentions: "10s:1h,1m:1d".into(),
        }],
        ..TsdbConfig::default()
    }
}

fn open(dir: &std::path::Path) -> Arc<Tsdb> {
    Tsdb::open(dir, config()).unwrap()
}

fn values(tsdb: &Tsdb, name: &str, from: i64, until: i64) -> (i64, u32, Vec<Option<f64>>) {
    let f = tsdb.fetch(name, from, until, NOW).unwrap().unwrap();
    (f.start, f.step, f.values)
}

#[test]
fn writes_read_back_in_their_slots() {
    let dir = tempfile::tempdir().unwrap();
    let tsdb = open(dir.path());
    let base = NOW - 600; // a multiple of 10
    tsdb.write([
        ("test.a", base + 1, 1.0),
        ("test.a", base + 12, 2.0),
        ("test.a", base + 35, 4.0),
    ]);
    tsdb.flush_at(NOW).unwrap();
    let (start, step, vals) = values(&tsdb, "test.a", base - 10, base + 40);
    assert_eq!((start, step), (base, 10));
    assert_eq!(vals, vec![Some(1.0), Some(2.0), None, Some(4.0), None]);
    // Last write wins within a slot, also across flushes.
    tsdb.write([("test.a", base + 3, 9.0)]);
    tsdb.flush_at(NOW).unwrap();
    assert_eq!(values(&tsdb, "test.a", base - 10, base).2[0], Some(9.0));
    assert!(tsdb
        .fetch("test.nope", base, base + 10, NOW)
        .unwrap()
        .is_none());
}

#[test]
fn rollups_follow_aggregation_rules() {
    let dir = tempfile::tempdir().unwrap();
    let tsdb = open(dir.path());
    let minute = NOW - NOW % 60 - 1800;
    for (name, value) in [
        ("test.latency", 10.0),
        ("test.hits.count", 1.0),
        ("test.rt.upper", 5.0),
    ] {
        let points: Vec<(&str, i64, f64)> = (0..6)
            .map(|i| (name, minute + 10 * i, value * (i + 1) as f64))
            .collect();
        tsdb.write(points);
    }
    // Only 1 of 6 slots known: under average's xFilesFactor 0.3, no rollup.
    tsdb.write([("test.sparse", minute, 1.0)]);
    tsdb.flush_at(NOW).unwrap();
    // A window reaching past the 1 h archive reads the 1 min archive.
    let read = |name: &str| {
        let f = tsdb.fetch(name, NOW - 7200, NOW, NOW).unwrap().unwrap();
        assert_eq!(f.step, 60);
        f.values[((minute - f.start) / 60) as usize]
    };
    assert_eq!(read("test.latency"), Some(35.0), "average of 10..60");
    assert_eq!(read("test.hits.count"), Some(21.0), ".count sums");
    assert_eq!(read("test.rt.upper"), Some(30.0), ".upper takes the max");
    assert_eq!(read("test.sparse"), None, "below xFilesFactor");
}

#[test]
fn old_points_land_in_the_coarse_archive_and_ancient_ones_are_dropped() {
    let dir = tempfile::tempdir().unwrap();
    let tsdb = open(dir.path());
    let old = NOW - 3 * 3600;
    let slot = old - old % 60;
    tsdb.write([
        ("test.old", slot + 5, 1.0),
        ("test.old", slot + 25, 7.0),
        ("test.old", NOW - 2 * 86_400, 3.0),
    ]);
    tsdb.flush_at(NOW).unwrap();
    let f = tsdb
        .fetch("test.old", old - 600, old + 600, NOW)
        .unwrap()
        .unwrap();
    assert_eq!(f.step, 60);
    assert_eq!(
        f.values[((slot - f.start) / 60) as usize],
        Some(7.0),
        "whisper: last write wins in the coarse slot"
    );
    assert_eq!(
        tsdb.stats()
            .points_out_of_range
            .load(std::sync::atomic::Ordering::Relaxed),
        1
    );
}

#[test]
fn data_survives_reopening_and_deletes_are_durable() {
    let dir = tempfile::tempdir().unwrap();
    {
        let tsdb = open(dir.path());
        tsdb.write([
            ("test.keep", NOW - 100, 1.0),
            ("test.drop.a", NOW - 100, 2.0),
            ("test.drop.b", NOW - 100, 3.0),
        ]);
        tsdb.flush_at(NOW).unwrap();
        let deleted = tsdb.delete_where(|n| n.starts_with("test.drop.")).unwrap();
        assert_eq!(deleted, vec!["test.drop.a", "test.drop.b"]);
        tsdb.close().unwrap();
    }
    let tsdb = open(dir.path());
    assert_eq!(tsdb.names(), vec!["test.keep"]);
    assert_eq!(
        values(&tsdb, "test.keep", NOW - 110, NOW - 100).2[0],
        Some(1.0)
    );
    // A new series after reopening gets a fresh id and does not collide.
    tsdb.write([("test.new", NOW - 100, 5.0)]);
    tsdb.flush_at(NOW).unwrap();
    assert_eq!(
        values(&tsdb, "test.new", NOW - 110, NOW - 100).2[0],
        Some(5.0)
    );
    assert_eq!(
        values(&tsdb, "test.keep", NOW - 110, NOW - 100).2[0],
        Some(1.0)
    );
}

#[test]
fn cardinality_caps_refuse_new_series_only() {
    let dir = tempfile::tempdir().unwrap();
    let tsdb = Tsdb::open(
        dir.path(),
        TsdbConfig {
            max_series: 2,
            ..config()
        },
    )
    .unwrap();
    assert_eq!(
        tsdb.write([
            ("test.a", NOW - 10, 1.0),
            ("test.b", NOW - 10, 1.0),
            ("test.c", NOW - 10, 1.0)
        ]),
        2
    );
    assert_eq!(
        tsdb.write([
            ("test.a", NOW - 20, 2.0),
            ("gantry.tsdb.series_rejected", NOW - 20, 1.0)
        ]),
        2,
        "existing and own series still work"
    );
    assert_eq!(
        tsdb.stats()
            .series_rejected
            .load(std::sync::atomic::Ordering::Relaxed),
        1
    );
    let per_minute = Tsdb::open(
        tempfile::tempdir().unwrap().path(),
        TsdbConfig {
            max_new_series_per_minute: 1,
            ..config()
        },
    )
    .unwrap();
    assert_eq!(
        per_minute.write([("test.x", NOW - 10, 1.0), ("test.y", NOW - 10, 1.0)]),
        1
    );
}

#[test]
fn expiry_removes_blocks_past_retention() {
    let dir = tempfile::tempdir().unwrap();
    let tsdb = open(dir.path());
    // A full minute, so the 1 min archive gets a rollup block too.
    tsdb.write((0..6).map(|i| ("test.e", NOW - 3000 + 10 * i, 1.0)));
    tsdb.flush_at(NOW).unwrap();
    assert_eq!(tsdb.expire(NOW).unwrap(), 0);
    // Two days later nothing of it is kept in either archive.
    assert_eq!(tsdb.expire(NOW + 2 * 86_400).unwrap(), 2);
    assert!(tsdb
        .fetch("test.e", NOW - 3000, NOW - 2900, NOW)
        .unwrap()
        .unwrap()
        .values
        .iter()
        .all(Option::is_none));
}

#[test]
fn bad_rules_are_named() {
    let dir = tempfile::tempdir().unwrap();
    let bad = TsdbConfig {
        aggregation: vec![AggregationRule {
            pattern: "(".into(),
            method: Aggregation::Sum,
            x_files_factor: 0.0,
        }],
        ..config()
    };
    let err = Tsdb::open(dir.path(), bad).err().unwrap().to_string();
    assert!(err.contains("pattern '('"), "{err}");
}

/// A flush is durable as one log record and read from memory; a checkpoint moves the points
/// into blocks and empties the log; a crash in between loses nothing (the log is replayed
/// at the next open), and none of it changes a value a read returns.
#[test]
fn flushed_points_live_in_the_log_until_a_checkpoint() {
    let dir = tempfile::tempdir().unwrap();
    let windows = |tsdb: &Tsdb| -> Vec<(i64, u32, Vec<Option<f64>>)> {
        let mut out = Vec::new();
        for name in ["test.a", "test.b", "test.c.count"] {
            out.push(values(tsdb, name, NOW - 3000, NOW - 10));
            out.push(values(tsdb, name, NOW - 80_000, NOW - 10));
        }
        out
    };
    let write_round = |tsdb: &Tsdb, round: i64| {
        let mut points = Vec::new();
        for i in 0..300i64 {
            // Out of order within a round, and rewriting the previous round's slots.
            let t = NOW - 3000 + 10 * ((i * 7) % 300);
            points.push(("test.a", t, (round * 1000 + i) as f64));
            points.push(("test.b", t - 600 * round, i as f64 / 3.0));
            points.push(("test.c.count", t, 1.0));
        }
        tsdb.write(points);
        tsdb.flush_at(NOW).unwrap();
    };
    let tsdb = open(dir.path());
    write_round(&tsdb, 0);
    write_round(&tsdb, 1);
    assert_eq!(tsdb.log_records().unwrap(), 2);
    assert!(tsdb.pending_writes() > 0);
    let before = windows(&tsdb);
    assert!(before[0].2.iter().all(Option::is_some));
    // A crash: the store goes away without closing.
    drop(tsdb);
    let tsdb = open(dir.path());
    assert_eq!(tsdb.log_records().unwrap(), 0, "replayed and checkpointed");
    assert_eq!(tsdb.pending_writes(), 0);
    assert_eq!(windows(&tsdb), before, "the same values after the replay");
    write_round(&tsdb, 2);
    let pending = windows(&tsdb);
    tsdb.checkpoint(NOW).unwrap();
    assert_eq!(tsdb.log_records().unwrap(), 0);
    assert_eq!(windows(&tsdb), pending, "a checkpoint changes no value");
    tsdb.close().unwrap();
    drop(tsdb);
    assert_eq!(windows(&open(dir.path())), pending);
}

/// The child half of `sigkill_loses_at_most_the_unflushed_interval`: writes, flushes, says
/// so, then keeps writing without flushing until it is killed.
#[test]
fn crash_child() {
    let Ok(dir) = std::env::var("GANTRY_TSDB_CRASH_DIR") else {
        return;
    };
    let tsdb = open(std::path::Path::new(&dir));
    let points: Vec<(String, i64)> = (0..2000)
        .map(|i| (format!("test.s{}", i % 50), NOW - 3000 + (i / 50) * 10))
        .collect();
    tsdb.write(points.iter().map(|(n, t)| (n.as_str(), *t, 1.0)));
    tsdb.flush_at(NOW).unwrap();
    println!("flushed");
    loop {
        tsdb.write([("test.unflushed", NOW - 10, 1.0)]);
        std::thread::sleep(std::time::Duration::from_millis(1));
    }
}

#[test]
fn sigkill_loses_at_most_the_unflushed_interval() {
    let dir = tempfile::tempdir().unwrap();
    let mut child = std::process::Command::new(std::env::current_exe().unwrap())
        .args([
            "--exact",
            "crash_child",
            "--nocapture",
            "--test-threads",
            "1",
        ])
        .env("GANTRY_TSDB_CRASH_DIR", dir.path())
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let stdout = child.stdout.take().unwrap();
    let flushed = std::io::BufReader::new(stdout)
        .lines()
        .map_while(Result::ok)
        .any(|l| l.contains("flushed"));
    assert!(flushed, "the child flushed");
    child.kill().unwrap();
    child.wait().unwrap();
    let tsdb = open(dir.path());
    assert_eq!(tsdb.series_count(), 50, "every flushed series survived");
    for s in 0..50 {
        let f = tsdb
            .fetch(&format!("test.s{s}"), NOW - 3010, NOW - 3000 + 39 * 10, NOW)
            .unwrap()
            .unwrap();
        assert_eq!(
            f.values.iter().filter(|v| v.is_some()).count(),
            40,
            "series {s}"
        );
    }
}

/// A torn write (garbage at the end of the journal, as a crash mid-write leaves) is
/// detected on start-up and dropped; what was durable before is served, nothing else.
#[test]
fn a_torn_journal_tail_is_dropped() {
    let dir = tempfile::tempdir().unwrap();
    {
        let tsdb = open(dir.path());
        tsdb.write([("test.durable", NOW - 100, 1.0)]);
        tsdb.flush_at(NOW).unwrap();
    }
    let journals = dir.path().join("journals");
    let newest = std::fs::read_dir(&journals)
        .unwrap()
        .filter_map(Result::ok)
        .map(|e| e.path())
        .max()
        .expect("a journal file");
    let mut file = std::fs::OpenOptions::new()
        .append(true)
        .open(&newest)
        .unwrap();
    std::io::Write::write_all(
        &mut file,
        &[
            0xde, 0xad, 0xbe, 0xef, 0x01, 0x02, 0x03, 0x04, 0x55, 0xaa, 0x13,
        ],
    )
    .unwrap();
    drop(file);
    let tsdb = open(dir.path());
    assert_eq!(tsdb.names(), vec!["test.durable"]);
    assert_eq!(
        values(&tsdb, "test.durable", NOW - 110, NOW - 100).2[0],
        Some(1.0)
    );
    // And it keeps working.
    tsdb.write([("test.after", NOW - 100, 2.0)]);
    tsdb.flush_at(NOW).unwrap();
    assert_eq!(
        values(&tsdb, "test.after", NOW - 110, NOW - 100).2[0],
        Some(2.0)
    );
}

/// The store counts its own per-series memory: names and ids in the index, the rollup
/// windows of every series written, the queue.
#[test]
fn memory_of_the_per_series_state_is_counted() {
    let dir = tempfile::tempdir().unwrap();
    let tsdb = open(dir.path());
    assert_eq!(tsdb.memory().series, 0);
    let names: Vec<String> = (0..100).map(|i| format!("test.memory.s{i:03}")).collect();
    tsdb.write(names.iter().map(|n| (n.as_str(), NOW - 100, 1.0)));
    assert!(tsdb.memory().queue >= 100 * 24);
    tsdb.flush_at(NOW).unwrap();
    let memory = tsdb.memory();
    assert_eq!(memory.series, 100);
    let text: usize = names.iter().map(String::len).sum();
    assert!(memory.index >= text + 100 * 16, "{memory:?}");
    // `10s:1h,1m:1d`: one rollup window per series (its place, its 32 bytes).
    assert!(memory.rollup >= 100 * (4 + 32), "{memory:?}");
}

/// The flush log's files, oldest first.
fn log_files(dir: &std::path::Path) -> Vec<std::path::PathBuf> {
    let mut files: Vec<_> = std::fs::read_dir(dir.join("wal"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    files.sort();
    files
}

/// A crash after a checkpoint stored its blocks but before it deleted the flush log's files
/// leaves records the blocks already hold: the next open skips them, so an old value cannot
/// come back over a newer one.
#[test]
fn log_records_a_checkpoint_covered_are_never_replayed() {
    let dir = tempfile::tempdir().unwrap();
    let saved = tempfile::tempdir().unwrap();
    let slot = NOW - 100;
    {
        let tsdb = open(dir.path());
        tsdb.write([("test.v", slot, 1.0)]);
        tsdb.flush_at(NOW).unwrap();
        let files = log_files(dir.path());
        assert_eq!(files.len(), 1);
        for file in &files {
            std::fs::copy(file, saved.path().join(file.file_name().unwrap())).unwrap();
        }
        tsdb.checkpoint(NOW).unwrap();
        assert!(
            log_files(dir.path()).is_empty(),
            "a checkpoint deletes the log"
        );
        tsdb.write([("test.v", slot, 2.0)]);
        tsdb.flush_at(NOW).unwrap();
        tsdb.checkpoint(NOW).unwrap();
    }
    // The first record comes back, as if the crash had kept it.
    for file in std::fs::read_dir(saved.path()).unwrap() {
        let file = file.unwrap().path();
        std::fs::copy(
            &file,
            dir.path().join("wal").join(file.file_name().unwrap()),
        )
        .unwrap();
    }
    let tsdb = open(dir.path());
    assert_eq!(values(&tsdb, "test.v", slot - 10, slot).2[0], Some(2.0));
    assert_eq!(tsdb.log_records().unwrap(), 0);
}

/// A flush cut short by a crash leaves a torn record at the end of the flush log: the next
/// open drops it, keeps what was durable before it, and the store goes on.
#[test]
fn a_torn_flush_log_tail_is_dropped() {
    let dir = tempfile::tempdir().unwrap();
    {
        let tsdb = open(dir.path());
        tsdb.write([("test.durable", NOW - 100, 1.0)]);
        tsdb.flush_at(NOW).unwrap();
    }
    let newest = log_files(dir.path()).pop().expect("a flush log file");
    let mut bytes = std::fs::read(&newest).unwrap();
    bytes.extend_from_slice(&[0x40, 0, 0, 0, 9, 9, 9, 9, 0, 0, 0, 0, 1, 2, 3]);
    std::fs::write(&newest, bytes).unwrap();
    let tsdb = open(dir.path());
    assert_eq!(
        values(&tsdb, "test.durable", NOW - 110, NOW - 100).2[0],
        Some(1.0)
    );
    tsdb.write([("test.after", NOW - 100, 2.0)]);
    tsdb.flush_at(NOW).unwrap();
    drop(tsdb);
    let tsdb = open(dir.path());
    assert_eq!(
        values(&tsdb, "test.after", NOW - 110, NOW - 100).2[0],
        Some(2.0)
    );
}

/// Blocks written while still filling are stored raw (cheap to rewrite each flush);
/// maintenance compresses them once their time is over, without changing a value.
#[test]
fn open_blocks_are_compressed_once_closed() {
    let dir = tempfile::tempdir().unwrap();
    let tsdb = open(dir.path());
    let start = NOW - NOW % 3600 + 60; // a block still open at NOW + 0
    let points: Vec<(&str, i64, f64)> = (0..20)
        .map(|i| ("test.open", start + 10 * i, f64::from(i as u8)))
        .collect();
    tsdb.write(points);
    tsdb.flush_at(start + 200).unwrap();
    let before = tsdb
        .fetch("test.open", start - 10, start + 190, start + 200)
        .unwrap()
        .unwrap();
    let block_end = NOW - NOW % 3600 + 3600;
    assert_eq!(
        tsdb.expire(block_end + 10).unwrap(),
        0,
        "closed, not yet expired"
    );
    let after = tsdb
        .fetch("test.open", start - 10, start + 190, start + 200)
        .unwrap()
        .unwrap();
    assert_eq!(before, after);
    assert_eq!(after.values.iter().flatten().count(), 20);
}

/// `compact_all` folds every delta record (open blocks too) without changing a value.
#[test]
fn compact_all_keeps_every_value() {
    let dir = tempfile::tempdir().unwrap();
    let tsdb = open(dir.path());
    for i in 0..50 {
        tsdb.write([("test.c", NOW - 500 + 10 * i, f64::from(i as u8))]);
        tsdb.flush_at(NOW).unwrap();
    }
    let before = tsdb.fetch("test.c", NOW - 510, NOW, NOW).unwrap().unwrap();
    tsdb.compact_all(NOW).unwrap();
    assert_eq!(
        tsdb.fetch("test.c", NOW - 510, NOW, NOW).unwrap().unwrap(),
        before
    );
    assert_eq!(before.values.iter().flatten().count(), 50);
}

/// Deleted series and folded delta records stay gone when compaction reaches the last
/// level, and overwritten blocks are discarded rather than kept (fjall 2 keeps both unless
/// the store moves its garbage-collection watermark; see `Tsdb::compact`).
#[test]
fn deleted_data_stays_deleted_after_compaction() {
    let dir = tempfile::tempdir().unwrap();
    let names: Vec<String> = (0..200).map(|i| format!("test.s{i:03}")).collect();
    let write_all = |tsdb: &Tsdb, round: u8| {
        for name in &names {
            let points: Vec<(&str, i64, f64)> = (0..300)
                .map(|i| {
                    (
                        name.as_str(),
                        NOW - 3000 + 10 * i,
                        f64::from(round) + i as f64,
                    )
                })
                .collect();
            tsdb.write(points);
        }
        tsdb.flush_at(NOW).unwrap();
    };
    let tsdb = open(dir.path());
    write_all(&tsdb, 0);
    tsdb.compact_all(NOW).unwrap();
    let (series, blocks, first_bytes) = tsdb.stored_records().unwrap();
    assert_eq!(series, 200);
    // Rewrite every slot ten times: delta records folded away, old versions dropped.
    for round in 1..=10 {
        write_all(&tsdb, round);
        tsdb.compact_all(NOW).unwrap();
    }
    let (_, blocks_after, bytes_after) = tsdb.stored_records().unwrap();
    assert_eq!(
        blocks_after, blocks,
        "delta records left or folded ones back"
    );
    assert!(
        bytes_after < first_bytes * 2,
        "{first_bytes} bytes after one round, {bytes_after} after ten rewrites"
    );
    let deleted = tsdb.delete_where(|n| n >= "test.s100").unwrap();
    assert_eq!(deleted.len(), 100);
    tsdb.compact_all(NOW).unwrap();
    let (series, blocks_left, _) = tsdb.stored_records().unwrap();
    assert_eq!(series, 100, "deleted series came back");
    assert_eq!(blocks_left, blocks / 2, "deleted blocks came back");
    let (start, step, vals) = values(&tsdb, "test.s000", NOW - 3000, NOW - 10);
    assert!(!vals.is_empty());
    for (k, value) in vals.iter().enumerate() {
        let i = (start - (NOW - 3000)) / i64::from(step) + k as i64;
        assert_eq!(
            *value,
            Some(10.0 + i as f64),
            "slot {i}: the last round's value"
        );
    }
    // And after a restart, which rebuilds the index from what is stored.
    tsdb.close().unwrap();
    drop(tsdb);
    let tsdb = open(dir.path());
    assert_eq!(
        tsdb.series_count(),
        100,
        "deleted series back after a restart"
    );
    assert!(tsdb
        .fetch("test.s150", NOW - 3000, NOW, NOW)
        .unwrap()
        .is_none());
}

/// Rollups against a model of whisper's propagation: a coarse slot holds the aggregate, in
/// time order, of the finer slots' last values, when enough of them are known. Writes come
/// in order, rewrite the slot just written, go back in time, skip slots, and span flushes,
/// checkpoints and a reopen (which rebuilds the rollup windows from storage). Values are
/// compared to the bit.
#[test]
fn rollups_match_whisper_for_any_write_order() {
    const FINE: [i64; 3] = [10, 60, 600];
    let methods = [
        ("avg", Aggregation::Average, 0.0),
        ("sum", Aggregation::Sum, 0.5),
        ("min", Aggregation::Min, 0.0),
        ("max", Aggregation::Max, 0.3),
        ("last", Aggregation::Last, 0.0),
    ];
    let config = || TsdbConfig {
        fsync_interval_secs: 3600.0,
        retention: vec![RetentionRule {
            pattern: ".*".into(),
            retentions: "10s:1h,1m:6h,10m:1d".into(),
        }],
        aggregation: methods
            .iter()
            .map(|&(suffix, method, x_files_factor)| AggregationRule {
                pattern: format!(r"\.{suffix}$"),
                method,
                x_files_factor,
            })
            .collect(),
        ..TsdbConfig::default()
    };
    let dir = tempfile::tempdir().unwrap();
    let mut tsdb = Tsdb::open(dir.path(), config()).unwrap();
    // The model: every series' last value per 10 s slot.
    let mut model: Vec<std::collections::BTreeMap<i64, f64>> = vec![Default::default(); 20];
    let names: Vec<String> = (0..model.len())
        .map(|i| format!("s{i}.{}", methods[i % methods.len()].0))
        .collect();
    let mut seed = 0x9e37_79b9_7f4a_7c15u64;
    let mut next = move |n: u64| {
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        seed % n
    };
    // Writes stay clear of the 10 s archive's retention edge (an hour before NOW).
    let first = NOW - NOW % 600 - 1800;
    let mut at: Vec<i64> = vec![first; model.len()];
    for round in 0..40 {
        for (series, name) in names.iter().enumerate() {
            let mut batch = Vec::new();
            for _ in 0..next(12) {
                at[series] = match next(10) {
                    0..=4 => at[series] + 10 * (1 + next(3) as i64), // forward, maybe skipping
                    5 | 6 => at[series],                             // the same slot again
                    7 => at[series] - 10 * (1 + next(8) as i64),     // back in time
                    _ => at[series] + 10,
                }
                .clamp(first, NOW - 10);
                let ts = at[series] + next(10) as i64;
                let value = (next(2001) as f64 - 1000.0) / 8.0;
                batch.push((name.as_str(), ts, value));
                model[series].insert(ts - ts % 10, value);
            }
            tsdb.write(batch);
        }
        tsdb.flush_at(NOW).unwrap();
        if round % 10 == 9 {
            tsdb.checkpoint(NOW).unwrap();
        }
        if round == 20 {
            tsdb.close().unwrap();
            drop(tsdb);
            tsdb = Tsdb::open(dir.path(), config()).unwrap();
        }
    }
    let mut compared = 0;
    for (series, name) in names.iter().enumerate() {
        let (_, method, x_files_factor) = methods[series % methods.len()];
        // Each archive's expected slots, built from the finer one's.
        let mut finer: std::collections::BTreeMap<i64, f64> = model[series].clone();
        for level in 1..FINE.len() {
            let (step, ratio) = (FINE[level], FINE[level] / FINE[level - 1]);
            let mut coarse = std::collections::BTreeMap::new();
            let mut slots: Vec<i64> = finer.keys().map(|t| t - t % step).collect();
            slots.dedup();
            for slot in slots {
                let known: Vec<f64> = finer.range(slot..slot + step).map(|(_, &v)| v).collect();
                // Whisper keeps xFilesFactor as a 32-bit float; so does the store.
                if known.len() as f64 / ratio as f64 >= f64::from(x_files_factor as f32) {
                    let aggregate = match method {
                        Aggregation::Average => known.iter().sum::<f64>() / known.len() as f64,
                        Aggregation::Sum => known.iter().sum(),
                        Aggregation::Min => known.iter().copied().fold(f64::INFINITY, f64::min),
                        Aggregation::Max => known.iter().copied().fold(f64::NEG_INFINITY, f64::max),
                        Aggregation::Last => known[known.len() - 1],
                    };
                    coarse.insert(slot, aggregate);
                }
            }
            let from = NOW - [0, 2 * 3600, 12 * 3600][level];
            let fetched = tsdb.fetch(name, from, NOW, NOW).unwrap().unwrap();
            assert_eq!(i64::from(fetched.step), step);
            for (i, got) in fetched.values.iter().enumerate() {
                let slot = fetched.start + i as i64 * step;
                let expected = coarse.get(&slot).copied();
                assert_eq!(
                    got.map(f64::to_bits),
                    expected.map(f64::to_bits),
                    "{name} archive {level} slot {slot}: got {got:?}, expected {expected:?}"
                );
                compared += usize::from(expected.is_some());
            }
            finer = coarse;
        }
    }
    assert!(compared > 200, "only {compared} coarse slots compared");
}
