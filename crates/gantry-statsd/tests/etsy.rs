//! Gantry's StatsD engine against Etsy's statsd 0.9.0: the datagrams in
//! `fixtures/etsy/input.jsonl`, flushed with `fixtures/etsy/config.json`, must give exactly
//! the `(name, value)` points Etsy flushed for them (`fixtures/etsy/expected.txt`).
//! `scripts/compat/etsy-statsd` regenerates the fixtures from a real Etsy run.

use std::collections::BTreeMap;
use std::path::Path;

use gantry_statsd::{parse, Aggregator, StatsdConfig};

/// Names whose values depend on timing in Etsy's run; the script leaves them out.
const VOLATILE: [&str; 4] = [
    "processing_time",
    "calculationtime",
    "graphiteStats",
    "timestamp_lag",
];

fn fixture(name: &str) -> String {
    let path = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures/etsy")
        .join(name);
    std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

#[test]
fn flushes_what_etsy_flushes() {
    let config: StatsdConfig = serde_json::from_str(&fixture("config.json")).unwrap();
    let interval = config.flush_interval_secs as i64;
    let mut aggregator = Aggregator::new(config);
    // Etsy had flushed once before the datagrams arrived; so do we.
    aggregator.flush(1_000_000);
    let input = fixture("input.jsonl");
    for line in input.lines() {
        let packet: String = serde_json::from_str(line).unwrap();
        let mut samples = Vec::new();
        let counts = parse(
            packet.as_bytes(),
            aggregator.config(),
            &mut samples,
            &mut Vec::new(),
        );
        aggregator.record_packet(&counts);
        aggregator.add_all(&samples);
    }
    let ours: BTreeMap<String, f64> = aggregator
        .flush(1_000_000 + interval)
        .into_iter()
        .filter(|p| !VOLATILE.iter().any(|v| p.name.contains(v)))
        .map(|p| (p.name, p.value))
        .collect();
    let expected: BTreeMap<String, f64> = fixture("expected.txt")
        .lines()
        .map(|l| {
            let (name, value) = l.rsplit_once(' ').unwrap();
            (name.to_string(), value.parse().unwrap())
        })
        .collect();
    assert!(
        expected.len() > 100,
        "a real fixture: {} points",
        expected.len()
    );

    let mut differences = Vec::new();
    for (name, want) in &expected {
        match ours.get(name) {
            None => differences.push(format!("missing  {name} (Etsy: {want})")),
            Some(got) if (got - want).abs() > 1e-9 * want.abs().max(1.0) => {
                differences.push(format!("differs  {name}: Gantry {got}, Etsy {want}"))
            }
            Some(_) => {}
        }
    }
    for (name, got) in &ours {
        if !expected.contains_key(name) {
            differences.push(format!("extra    {name} (Gantry: {got})"));
        }
    }
    assert!(
        differences.is_empty(),
        "{} of {} points differ from Etsy's:\n{}",
        differences.len(),
        expected.len(),
        differences.join("\n")
    );
    println!("{} points match Etsy's statsd 0.9.0", expected.len());
}
