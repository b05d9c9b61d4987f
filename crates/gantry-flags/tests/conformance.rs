//! Runs every file of Unleash's client specification (listed in its `index.json`, kept in
//! the workplace's shared folder beside the repository) through the engine: every case
//! must pass. Without the folder the test passes with a note, except in CI, where a
//! missing folder must not pass as a green run.

use std::path::PathBuf;

use chrono::{TimeZone, Utc};
use gantry_flags::conformance::check_spec;
use rand::rngs::StdRng;
use rand::SeedableRng;

fn spec_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../../../shared/conformance/unleash-client-spec")
}

#[test]
fn unleash_client_specification() {
    let dir = spec_dir();
    let index = dir.join("index.json");
    if !index.exists() {
        assert!(
            std::env::var("CI").as_deref() != Ok("true"),
            "the Unleash client specification is missing at {}",
            dir.display()
        );
        eprintln!(
            "note: {} is missing; skipping the Unleash client specification",
            dir.display()
        );
        return;
    }
    let index = std::fs::read_to_string(&index).expect("index.json is readable");
    let files: Vec<String> =
        serde_json::from_str(&index).expect("index.json is a list of file names");
    assert!(!files.is_empty(), "index.json lists no files");

    // Every date case carries its own currentTime; `now` only has to be fixed.
    let now = Utc
        .with_ymd_and_hms(2024, 1, 1, 0, 0, 0)
        .single()
        .expect("a valid time");
    let mut rng = StdRng::seed_from_u64(0x5eed);
    let (mut cases, mut failures) = (0, Vec::new());
    for file in &files {
        let text = std::fs::read_to_string(dir.join(file))
            .unwrap_or_else(|e| panic!("{file} is listed in index.json but unreadable: {e}"));
        let outcome = check_spec(&text, now, &mut rng);
        cases += outcome.cases.len();
        for case in outcome.failures() {
            failures.push(format!(
                "{file}: {} [{}]: expected {}, got {}",
                case.description, case.toggle, case.expected, case.actual
            ));
        }
    }
    assert!(
        failures.is_empty(),
        "{} of {cases} specification cases fail:\n{}",
        failures.len(),
        failures.join("\n")
    );
    eprintln!(
        "Unleash client specification: {} files, all {cases} cases pass",
        files.len()
    );
}
