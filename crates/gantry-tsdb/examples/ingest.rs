//! A quick ingest probe (not the end-to-end benchmark, which goes through the
//! Graphite listener): SERIES series × DAYS days of 10 s points written as history, in
//! time-major batches as a Graphite sender would (waiting while the store's queue is full, as
//! the listeners do), then bytes on disk per point sent.
//!
//! `cargo run --release -p gantry-tsdb --example ingest` (SERIES=1000 DAYS=1 to vary).

use std::time::{Instant, SystemTime, UNIX_EPOCH};

fn main() {
    let series: i64 = std::env::var("SERIES")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(1000);
    let days: i64 = std::env::var("DAYS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(1);
    let dir = tempfile::tempdir().expect("temp dir");
    let tsdb =
        gantry_tsdb::Tsdb::open(dir.path(), gantry_tsdb::TsdbConfig::default()).expect("open");
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs() as i64);
    let names: Vec<String> = (0..series)
        .map(|i| format!("bench.host{:04}.cpu", i))
        .collect();
    let steps = days * 8640;
    let start = now - days * 86_400;
    let started = Instant::now();
    let mut sent = 0u64;
    // One batch per simulated minute of all series.
    for minute in 0..steps / 6 {
        let mut batch = Vec::with_capacity((series * 6) as usize);
        for (i, name) in names.iter().enumerate() {
            for s in 0..6 {
                let t = start + (minute * 6 + s) * 10;
                let value = 50.0 + ((t / 10 + i as i64) % 17) as f64;
                batch.push((name.as_str(), t, value));
            }
        }
        sent += batch.len() as u64;
        // As the TCP listeners do: wait while the store's queue is full (its flusher
        // thread applies it), so flushes are the size the server's are.
        while !tsdb.has_room() {
            std::thread::sleep(std::time::Duration::from_millis(1));
        }
        tsdb.write(batch);
    }
    tsdb.flush_at(now).expect("flush");
    let elapsed = started.elapsed().as_secs_f64();
    tsdb.close().expect("close");
    // What the issue measures: the store after compaction (expired, folded, merged).
    tsdb.compact_all(now).expect("compact");
    drop(tsdb);
    // fjall removes journals whose data is in segments in the background.
    std::thread::sleep(std::time::Duration::from_secs(2));
    let bytes: u64 = walk(dir.path());
    if std::env::var_os("SHOW_FILES").is_some() {
        let _ = std::process::Command::new("find")
            .arg(dir.path())
            .args(["-type", "f", "-size", "+100k", "-ls"])
            .status();
    }
    println!(
        "RESULT tsdb_ingest series={series} points={sent} ingest_pps={:.0} bytes_per_point={:.3}",
        sent as f64 / elapsed,
        bytes as f64 / sent as f64
    );
}

/// Bytes a file takes on disk (fjall preallocates its journal sparsely, so the apparent
/// length overstates it).
fn allocated(metadata: &std::fs::Metadata) -> u64 {
    #[cfg(unix)]
    {
        use std::os::unix::fs::MetadataExt;
        metadata.blocks() * 512
    }
    #[cfg(not(unix))]
    {
        metadata.len()
    }
}

/// Bytes on disk under `dir`.
fn walk(dir: &std::path::Path) -> u64 {
    std::fs::read_dir(dir)
        .map(|entries| {
            entries
                .filter_map(Result::ok)
                .map(|e| {
                    let p = e.path();
                    if p.is_dir() {
                        walk(&p)
                    } else {
                        e.metadata().map_or(0, |m| allocated(&m))
                    }
                })
                .sum()
        })
        .unwrap_or(0)
}
