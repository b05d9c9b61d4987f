//! The bodies of Gantry's fuzz targets.
//!
//! Each target is a plain function over bytes that must not panic, hang or allocate without
//! bound, whatever the bytes are; where the input has a shape, the function reads it through
//! `arbitrary::Unstructured`. Where a property exists (a printed render target parses to the
//! same tree, a decoded block re-encodes to the same values), the function asserts it.
//!
//! `fuzz/` (its own workspace, excluded from this one) holds only the `fuzz_target!`
//! wrappers that call these functions; `tests/replay.rs` runs every committed corpus and
//! regression input through them as an ordinary test. `scripts/fuzz` runs them under
//! libFuzzer.

pub mod control;
pub mod metrics;

/// One fuzz target.
#[derive(Debug)]
pub struct Target {
    /// The target's name: its `fuzz/fuzz_targets/<name>.rs`, `fuzz/corpus/<name>/` and
    /// `fuzz/regressions/<name>/`.
    pub name: &'static str,
    /// The body: must not panic on any input.
    pub run: fn(&[u8]),
    /// The repository paths whose code the target reaches (besides its own module): a change
    /// under any of them restarts the target's fuzzing minutes (`scripts/hardening-report`).
    pub reaches: &'static [&'static str],
    /// Whether the target reaches `unsafe` code, and so also runs under AddressSanitizer.
    pub reaches_unsafe: bool,
    /// The module file that holds the body.
    pub module: &'static str,
}

/// Every target, metrics first.
pub fn targets() -> impl Iterator<Item = &'static Target> {
    metrics::TARGETS.iter().chain(control::TARGETS.iter())
}

/// The target called `name`.
pub fn target(name: &str) -> Option<&'static Target> {
    targets().find(|t| t.name == name)
}
