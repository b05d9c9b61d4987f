//! A realtime-write probe: SERIES series each get one point per FLUSH_SECS, as a StatsD
//! flush writes them, for FLUSHES flushes; prints the store's time per point.
//!
//! `cargo run --release -p gantry-tsdb --example realtime` (SERIES=50000 FLUSHES=60).

use std::time::{Instant, SystemTime, UNIX_EPOCH};

fn setting(name: &str, default: i64) -> i64 {
    std::env::var(name)
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(default)
}

fn main() {
    let (series, flushes, step) = (
        setting("SERIES", 50_000),
        setting("FLUSHES", 60),
        setting("FLUSH_SECS", 10),
    );
    let dir = tempfile::tempdir().expect("temp dir");
    let tsdb =
        gantry_tsdb::Tsdb::open(dir.path(), gantry_tsdb::TsdbConfig::default()).expect("open");
    let names: Vec<String> = (0..series)
        .map(|i| format!("stats.timers.svc{:02}.ep{:04}.upper_90", i % 40, i / 40))
        .collect();
    let start = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs() as i64);
    let start = start - start % 600;
    let mut busy = 0.0;
    for flush in 0..flushes {
        let now = start + flush * step;
        let batch: Vec<(&str, i64, f64)> = names
            .iter()
            .enumerate()
            .map(|(i, n)| (n.as_str(), now, (i as i64 + flush) as f64 % 97.0))
            .collect();
        let started = Instant::now();
        tsdb.write(batch);
        tsdb.flush_at(now).expect("flush");
        busy += started.elapsed().as_secs_f64();
    }
    println!(
        "RESULT tsdb_realtime series={series} flushes={flushes} us_per_point={:.2}",
        busy * 1e6 / (series * flushes) as f64
    );
}
