//! A read probe (not the end-to-end benchmark, which goes through /render): SERIES
//! random-walk series × DAYS days of 10 s points, written as history and compacted, then
//! ROUNDS reads of every series over the last DAYS days (the 1 min archive by default
//! retention), timed per round as `/render` of a sum over them would read them.
//!
//! `cargo run --release -p gantry-tsdb --example fetch` (SERIES=100 DAYS=7 ROUNDS=50).

use std::time::{Instant, SystemTime, UNIX_EPOCH};

fn setting(name: &str, default: i64) -> i64 {
    std::env::var(name)
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(default)
}

fn main() {
    let (series, days, rounds) = (
        setting("SERIES", 100),
        setting("DAYS", 7),
        setting("ROUNDS", 50),
    );
    let dir = tempfile::tempdir().expect("temp dir");
    let tsdb =
        gantry_tsdb::Tsdb::open(dir.path(), gantry_tsdb::TsdbConfig::default()).expect("open");
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs() as i64);
    let names: Vec<String> = (0..series)
        .map(|i| format!("servers.web{i:03}.cpu.user"))
        .collect();
    let start = now - days * 86_400;
    // A random walk between 0 and 100 per series (xorshift, so the probe needs no crate).
    let mut state = 0x9e37_79b9_7f4a_7c15u64;
    let mut levels = vec![50.0f64; names.len()];
    for step in 0..days * 8640 {
        let t = start + step * 10;
        let batch: Vec<(&str, i64, f64)> = names
            .iter()
            .zip(levels.iter_mut())
            .map(|(name, level)| {
                state ^= state << 13;
                state ^= state >> 7;
                state ^= state << 17;
                let delta = (state % 1000) as f64 / 1000.0 - 0.5;
                *level = (*level + delta).clamp(0.0, 100.0);
                (name.as_str(), t, *level)
            })
            .collect();
        while !tsdb.has_room() {
            std::thread::sleep(std::time::Duration::from_millis(1));
        }
        tsdb.write(batch);
    }
    tsdb.flush_at(now).expect("flush");
    tsdb.compact_all(now).expect("compact");
    let mut times = Vec::new();
    let mut slots = 0;
    for _ in 0..rounds {
        let started = Instant::now();
        for name in &names {
            let fetched = tsdb
                .fetch(name, now - days * 86_400, now, now)
                .expect("fetch")
                .expect("series");
            slots += fetched.values.len();
        }
        times.push(started.elapsed().as_secs_f64() * 1000.0);
    }
    times.sort_by(f64::total_cmp);
    println!(
        "RESULT tsdb_fetch series={series} days={days} slots_per_round={} p50_ms={:.2} max_ms={:.2}",
        slots / rounds.max(1) as usize,
        times[times.len() / 2],
        times[times.len() - 1]
    );
}
