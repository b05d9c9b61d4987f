//! Replays every committed corpus and regression input through its target's body, so a
//! crash once found stays fixed, and checks that `fuzz/` agrees with the target list.

use std::fs;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::path::{Path, PathBuf};
use std::time::Instant;

/// The most a target's committed corpus may hold.
const CORPUS_LIMIT_BYTES: u64 = 2 * 1024 * 1024;

fn fuzz_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../fuzz")
}

fn inputs(dir: &Path) -> Vec<PathBuf> {
    let Ok(entries) = fs::read_dir(dir) else {
        return Vec::new();
    };
    let mut files: Vec<PathBuf> = entries
        .filter_map(|entry| entry.ok().map(|e| e.path()))
        .filter(|path| path.is_file())
        .collect();
    files.sort();
    files
}

#[test]
fn every_corpus_and_regression_input_runs_clean() {
    let mut failures = Vec::new();
    let mut total = 0usize;
    for target in gantry_fuzz::targets() {
        let started = Instant::now();
        let mut count = 0usize;
        for kind in ["corpus", "regressions"] {
            for file in inputs(&fuzz_dir().join(kind).join(target.name)) {
                let data = fs::read(&file).expect("read a committed fuzz input");
                count += 1;
                if catch_unwind(AssertUnwindSafe(|| (target.run)(&data))).is_err() {
                    failures.push(format!("{}: {}", target.name, file.display()));
                }
            }
        }
        total += count;
        eprintln!(
            "{}: {count} inputs in {:.2} s",
            target.name,
            started.elapsed().as_secs_f64()
        );
    }
    assert!(total > 0, "no committed fuzz input was found under fuzz/");
    assert!(
        failures.is_empty(),
        "inputs that panic:\n{}",
        failures.join("\n")
    );
}

#[test]
fn every_target_has_a_wrapper_a_seed_corpus_within_its_limit_and_a_cargo_entry() {
    let manifest = fs::read_to_string(fuzz_dir().join("Cargo.toml")).expect("fuzz/Cargo.toml");
    let mut problems = Vec::new();
    let mut names = Vec::new();
    for target in gantry_fuzz::targets() {
        names.push(target.name);
        let wrapper = fuzz_dir()
            .join("fuzz_targets")
            .join(format!("{}.rs", target.name));
        match fs::read_to_string(&wrapper) {
            Ok(text) if text.contains(&format!("::{}(data)", target.name)) => {}
            _ => problems.push(format!(
                "{}: no wrapper calling it at {}",
                target.name,
                wrapper.display()
            )),
        }
        if !manifest.contains(&format!("name = \"{}\"", target.name)) {
            problems.push(format!("{}: no [[bin]] in fuzz/Cargo.toml", target.name));
        }
        let corpus = inputs(&fuzz_dir().join("corpus").join(target.name));
        if corpus.is_empty() {
            problems.push(format!("{}: empty seed corpus", target.name));
        }
        let bytes: u64 = corpus
            .iter()
            .filter_map(|f| f.metadata().ok())
            .map(|m| m.len())
            .sum();
        if bytes > CORPUS_LIMIT_BYTES {
            problems.push(format!("{}: corpus holds {bytes} bytes; the limit is {CORPUS_LIMIT_BYTES} (run cargo fuzz cmin)", target.name));
        }
        let module = Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("../..")
            .join(target.module);
        if !module.is_file() {
            problems.push(format!(
                "{}: module {} does not exist",
                target.name, target.module
            ));
        }
        for path in target.reaches {
            if !Path::new(env!("CARGO_MANIFEST_DIR"))
                .join("../..")
                .join(path)
                .exists()
            {
                problems.push(format!(
                    "{}: reaches {path}, which does not exist",
                    target.name
                ));
            }
        }
    }
    let mut sorted = names.clone();
    sorted.sort();
    sorted.dedup();
    if sorted.len() != names.len() {
        problems.push("two targets share a name".to_string());
    }
    for wrapper in inputs(&fuzz_dir().join("fuzz_targets")) {
        let stem = wrapper
            .file_stem()
            .and_then(|s| s.to_str())
            .unwrap_or_default()
            .to_string();
        if !names.contains(&stem.as_str()) {
            problems.push(format!(
                "fuzz/fuzz_targets/{stem}.rs has no target in gantry-fuzz"
            ));
        }
    }
    assert!(problems.is_empty(), "{}", problems.join("\n"));
}
