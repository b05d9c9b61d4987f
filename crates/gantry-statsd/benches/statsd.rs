//! StatsD's inner loops, per line: parsing datagrams, folding their samples into a receive
//! loop's shard, and an interval's flush. The traffic is `scripts/bench/statsd`'s mix: 10,000
//! keys (60 % counters, a fifth of them sampled, 25 % timers, 10 % gauges, 5 % sets), one key
//! in ten with a DogStatsD tag, in datagrams of about 1,400 bytes.
//!
//! The shard here stays in cache between batches, so `fold` is the floor of what a receive
//! thread pays per line; in the server, where a thread sleeps between batches and other work
//! runs on its core, the same work costs more (the end-to-end figure is
//! `scripts/bench/statsd`'s CPU-seconds per million lines).
//!
//! Run: `cargo bench -p gantry-statsd --bench statsd`.

use std::fmt::Write;
use std::time::{Duration, Instant};

use criterion::{criterion_group, criterion_main, BatchSize, Criterion, Throughput};
use gantry_statsd::{parse, Aggregator, Flushed, Shard, StatsdConfig};

const KEYS: usize = 10_000;
const DATAGRAM_BYTES: usize = 1_400;
const DATAGRAMS: usize = 512;

/// A small deterministic generator (xorshift), so every run parses the same traffic.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }

    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
}

/// One line for key `k`, its kind by the key's position in the key space.
fn line(k: usize, rng: &mut Rng, out: &mut String) {
    let share = k * 100 / KEYS;
    let (service, endpoint) = (k % 40, k / 40);
    let name = format!("app.svc{service:02}.ep{endpoint:03}");
    let _ = match share {
        0..60 => {
            let rate = if rng.below(5) == 0 { "|@0.5" } else { "" };
            write!(out, "{name}.requests:1|c{rate}")
        }
        60..85 => write!(
            out,
            "{name}.latency:{}.{}|ms",
            rng.below(400),
            rng.below(10)
        ),
        85..95 => write!(out, "{name}.queue_depth:{}|g", rng.below(10_000)),
        _ => write!(out, "{name}.users:u{}|s", rng.below(5_000)),
    };
    if k.is_multiple_of(10) {
        let _ = write!(out, "|#region:r{}", k % 3);
    }
}

/// Datagrams of about `DATAGRAM_BYTES`, and how many lines they hold in all.
fn datagrams() -> (Vec<Vec<u8>>, u64) {
    let mut rng = Rng(0x9e37_79b9_7f4a_7c15);
    let mut lines = 0;
    let mut one = String::new();
    let datagrams = (0..DATAGRAMS)
        .map(|_| {
            let mut text = String::new();
            loop {
                one.clear();
                line(rng.below(KEYS as u64) as usize, &mut rng, &mut one);
                if text.len() + 1 + one.len() > DATAGRAM_BYTES {
                    break text.into_bytes();
                }
                if !text.is_empty() {
                    text.push('\n');
                }
                text.push_str(&one);
                lines += 1;
            }
        })
        .collect();
    (datagrams, lines)
}

fn bench(c: &mut Criterion) {
    let config = StatsdConfig::default();
    let (datagrams, lines) = datagrams();
    let mut group = c.benchmark_group("statsd");
    group.throughput(Throughput::Elements(lines));

    let mut samples = Vec::new();
    let mut bad = Vec::new();
    group.bench_function("parse", |b| {
        b.iter(|| {
            for datagram in &datagrams {
                samples.clear();
                parse(datagram, &config, &mut samples, &mut bad);
                std::hint::black_box(&samples);
            }
        })
    });
    drop(samples);

    // Parse and fold, as a receive loop does, into a shard that has seen every key: one
    // interval's worth of traffic per shard (its values absorbed, untimed, before the next).
    let fold = |shard: &mut Shard, datagrams: &[Vec<u8>]| {
        let mut samples = Vec::new();
        for (at, datagram) in datagrams.iter().enumerate() {
            samples.clear();
            let counts = parse(datagram, &config, &mut samples, &mut Vec::new());
            shard.record_packet(&counts);
            shard.add_all(&samples, at as u64);
        }
    };
    let mut shard = Shard::new();
    let mut sink = Aggregator::new(config.clone());
    fold(&mut shard, &datagrams);
    group.bench_function("parse_and_fold", |b| {
        b.iter_custom(|iterations| {
            let mut took = Duration::ZERO;
            for _ in 0..iterations {
                sink.absorb(&mut shard);
                sink.flush(0);
                let start = Instant::now();
                fold(&mut shard, &datagrams);
                took += start.elapsed();
            }
            took
        })
    });
    // The same with cold caches: before each batch of `BATCH` datagrams (what a receive
    // thread gets per wake-up at 50,000 lines/s), other work walks through `EVICT` bytes,
    // as the store's flush and the other threads do between a receive thread's wake-ups.
    const BATCH: usize = 32;
    const EVICT: usize = 4 << 20;
    let mut other = vec![0u64; EVICT / 8];
    group.bench_function("parse_and_fold_cold", |b| {
        b.iter_custom(|iterations| {
            let mut took = Duration::ZERO;
            for _ in 0..iterations {
                sink.absorb(&mut shard);
                sink.flush(0);
                for batch in datagrams.chunks(BATCH) {
                    for (i, word) in other.iter_mut().enumerate() {
                        *word = word.wrapping_add(i as u64);
                    }
                    std::hint::black_box(&other);
                    let start = Instant::now();
                    fold(&mut shard, batch);
                    took += start.elapsed();
                }
            }
            took
        })
    });

    // An interval's flush of the 10,000 keys: the merge of two receive loops' shards, then
    // the points Etsy's graphite backend would write.
    let mut aggregator = Aggregator::new(config.clone());
    let mut flushed = Flushed::default();
    let mut timestamp = 1_800_000_000;
    group.throughput(Throughput::Elements(KEYS as u64));
    group.bench_function("absorb_and_flush_per_key", |b| {
        b.iter_batched(
            || {
                let (mut one, mut two) = (Shard::new(), Shard::new());
                fold(&mut one, &datagrams);
                fold(&mut two, &datagrams);
                [one, two]
            },
            |mut shards| {
                for shard in &mut shards {
                    aggregator.absorb(shard);
                }
                timestamp += 10;
                aggregator.flush_into(timestamp, &mut flushed);
                std::hint::black_box(flushed.len());
            },
            BatchSize::LargeInput,
        )
    });
    group.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
