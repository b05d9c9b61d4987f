//! Gantry's store against whisper: the points in `fixtures/whisper.json`, written in order at
//! the same "now", must fetch exactly what whisper 1.1.10 fetched for the same windows
//! (archive chosen, window alignment, rollups with each method and xFilesFactor, last write
//! wins). `scripts/compat/whisper` regenerates the fixture from whisper itself.

use gantry_tsdb::config::{AggregationRule, RetentionRule};
use gantry_tsdb::{Aggregation, Tsdb, TsdbConfig};

#[test]
fn fetches_what_whisper_fetches() {
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/whisper.json");
    let fixture: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap();
    let now = fixture["now"].as_i64().unwrap();
    let dir = tempfile::tempdir().unwrap();
    let tsdb = Tsdb::open(
        dir.path(),
        TsdbConfig {
            fsync_interval_secs: 3600.0,
            retention: vec![RetentionRule {
                pattern: ".*".into(),
                retentions: fixture["retentions"].as_str().unwrap().into(),
            }],
            aggregation: vec![AggregationRule {
                pattern: r"\.last$".into(),
                method: Aggregation::Last,
                x_files_factor: 0.5,
            }],
            ..TsdbConfig::default()
        },
    )
    .unwrap();
    // Whisper applies and propagates each point as it arrives; so do we, a point per flush.
    for point in fixture["points"].as_array().unwrap() {
        let name = point[0].as_str().unwrap();
        tsdb.write([(name, point[1].as_i64().unwrap(), point[2].as_f64().unwrap())]);
        tsdb.flush_at(now).unwrap();
    }
    let mut differences = Vec::new();
    let answers = fixture["answers"].as_array().unwrap();
    for answer in answers {
        let name = answer["name"].as_str().unwrap();
        let (from, until) = (
            answer["from"].as_i64().unwrap(),
            answer["until"].as_i64().unwrap(),
        );
        let got = tsdb.fetch(name, from, until, now).unwrap().unwrap();
        let expected: Vec<Option<f64>> = answer["values"]
            .as_array()
            .unwrap()
            .iter()
            .map(|v| v.as_f64())
            .collect();
        let window = (
            answer["start"].as_i64().unwrap(),
            answer["end"].as_i64().unwrap(),
            answer["step"].as_i64().unwrap(),
        );
        if (got.start, got.end, i64::from(got.step)) != window {
            differences.push(format!(
                "{name} [{from}, {until}]: window {:?}, whisper {window:?}",
                (got.start, got.end, got.step)
            ));
            continue;
        }
        for (i, (g, e)) in got.values.iter().zip(&expected).enumerate() {
            let same = match (g, e) {
                (Some(g), Some(e)) => (g - e).abs() <= 1e-9 * e.abs().max(1.0),
                (None, None) => true,
                _ => false,
            };
            if !same {
                differences.push(format!(
                    "{name} at {}: Gantry {g:?}, whisper {e:?}",
                    window.0 + i as i64 * window.2
                ));
            }
        }
    }
    assert!(
        differences.is_empty(),
        "{} differences from whisper:\n{}",
        differences.len(),
        differences.join("\n")
    );
    println!("{} windows match whisper 1.1.10", answers.len());
}
