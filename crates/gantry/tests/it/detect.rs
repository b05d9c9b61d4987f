//! `gantry detect replay`: the detector over a CSV of a team's own history, through the
//! real binary: a halving after a change is found with its size, noise alone is not, and a
//! bad file is named by line.

use std::process::{Command, Output};

use crate::harness::BIN;

fn replay(dir: &std::path::Path, csv: &str, args: &[&str]) -> Output {
    let file = dir.join("history.csv");
    std::fs::write(&file, csv).unwrap();
    Command::new(BIN)
        .args(["detect", "replay"])
        .arg(&file)
        .args(args)
        .output()
        .unwrap()
}

/// Four hours at a 10 s step around 100/s with a deterministic wobble; from `drop_at` on
/// the level is multiplied by `factor`.
fn series(start: i64, drop_at: i64, factor: f64) -> String {
    let mut out = String::from("timestamp,value\n");
    let mut x: u64 = 42;
    for i in 0..1440 {
        let t = start + i * 10;
        x = x
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        let noise = ((x >> 33) % 21) as f64 - 10.0;
        let level = if t >= drop_at { 100.0 * factor } else { 100.0 };
        out.push_str(&format!("{t},{}\n", level + noise));
    }
    out
}

#[test]
fn replay_finds_a_halving_and_names_bad_lines() {
    let dir = tempfile::tempdir().unwrap();
    let start = 1_767_225_600;
    let change = start + 7200;
    let halved = series(start, change, 0.5);
    let out = replay(
        dir.path(),
        &halved,
        &[
            "--direction",
            "drop",
            "--change-at",
            &change.to_string(),
            "--json",
        ],
    );
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let verdicts: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let v = &verdicts[0];
    assert_eq!(v["comparison"]["is_regression"], true, "{verdicts:#}");
    let effect = v["comparison"]["effect"].as_f64().unwrap();
    assert!((-0.6..=-0.4).contains(&effect), "{effect}");
    // Found within two minutes of the change.
    assert!(v["at"].as_i64().unwrap() - change <= 120, "{v}");

    let text = String::from_utf8_lossy(
        &replay(dir.path(), &halved, &["--change-at", &change.to_string()]).stdout,
    )
    .into_owned();
    assert!(text.contains("Drop -"), "{text}");

    let calm = series(start, i64::MAX, 1.0);
    let out = replay(
        dir.path(),
        &calm,
        &["--change-at", &change.to_string(), "--json"],
    );
    let verdicts: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(
        verdicts[0]["comparison"]["is_regression"], false,
        "{verdicts:#}"
    );

    for (csv, needle) in [
        ("", "no data"),
        ("100,1\n90,2\n", "line 2"),
        ("1767225600000,5\n1767225610000,5\n", "milliseconds"),
        ("100,1\n110,abc\n", "line 2"),
        ("100,1\n110,NaN\n", "line 2"),
    ] {
        let out = replay(dir.path(), csv, &[]);
        assert!(!out.status.success(), "{csv:?}");
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(
            err.contains(needle) && err.contains("history.csv"),
            "{csv:?}: {err}"
        );
    }
    let out = replay(dir.path(), &halved, &["--change-at", "100"]);
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("outside") || err.contains("before the data") || err.contains("change"),
        "{err}"
    );
}
