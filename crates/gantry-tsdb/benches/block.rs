//! The block codec's inner loops: encoding a complete block (what a checkpoint's fold does)
//! and decoding one (what every `/render` of stored data does, thousands of times for a
//! week of a hundred series). Series shapes as in `scripts/bench/graphite`: a gauge as a
//! random walk with two decimals, a counter as Poisson-like whole numbers, a timer figure
//! log-normal with full precision.
//!
//! Run: `cargo bench -p gantry-tsdb --bench block` (prints time per block and per value).

use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use gantry_tsdb::block;

/// A small deterministic generator (xorshift), so every run encodes the same data.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> f64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        (self.0 >> 11) as f64 / (1u64 << 53) as f64
    }
}

fn shapes(slots: usize) -> Vec<(&'static str, Vec<Option<f64>>)> {
    let mut rng = Rng(0x9e37_79b9_7f4a_7c15);
    let mut level = 40.0f64;
    let gauge = (0..slots)
        .map(|_| {
            level = (level + (rng.next() - 0.5) * 2.0).clamp(0.0, 100.0);
            Some((level * 100.0).round() / 100.0)
        })
        .collect();
    let counter = (0..slots)
        .map(|_| Some((200.0 + (rng.next() - 0.5) * 40.0).round()))
        .collect();
    let timer = (0..slots)
        .map(|_| Some((3.0 + rng.next()).exp() * (1.0 + rng.next() / 10.0)))
        .collect();
    vec![("gauge", gauge), ("counter", counter), ("timer", timer)]
}

fn codec(c: &mut Criterion) {
    let slots = gantry_tsdb::whisper::SLOTS_PER_BLOCK as usize;
    let mut group = c.benchmark_group("block");
    group.throughput(Throughput::Elements(slots as u64));
    for (shape, values) in shapes(slots) {
        let encoded = block::encode(&values, true);
        println!(
            "block/{shape}: {} slots in {} bytes ({:.2} bytes per value)",
            slots,
            encoded.len(),
            encoded.len() as f64 / slots as f64
        );
        group.bench_with_input(BenchmarkId::new("encode", shape), &values, |b, v| {
            b.iter(|| block::encode(v, true))
        });
        let mut out = vec![None; slots];
        group.bench_with_input(BenchmarkId::new("decode", shape), &encoded, |b, e| {
            b.iter(|| block::decode_into(e, &mut out))
        });
    }
    group.finish();
}

criterion_group!(benches, codec);
criterion_main!(benches);
