//! The detector as the server runs it, flush by flush, on one series:
//!
//! 1. **Each change**, for 60 minutes from it, exactly as `gantry-server`'s
//!    `detect::compare_change` does: the values after the change (the slot still filling
//!    left out) against the 30 minutes before it, scaled by `seasonal_ratio` of the same
//!    windows a day and a week back (read at whatever resolution the store keeps for those
//!    ages), `compare` with `look` = the number of after values, the metric's
//!    `min_shift` 0.2, alpha 0.01. The first regression of a change ends its watch.
//! 2. **The always-on watch** (`gantry_detect::watch`) at every flush, on per-second rates,
//!    with the same two seasons.
//!
//! One verdict per metric and episode: after any verdict, neither runs on that metric
//! for the watch's `hold_secs` (the server would not raise a second alarm on a metric
//! that has one open). A verdict's time is the newest raw sample it used.

use std::num::NonZeroU32;

use gantry_detect::hodges_lehmann::log_floor;
use gantry_detect::mann_whitney::{mann_whitney, Alternative};
use gantry_detect::verdict::{compare, look_alpha, seasonal_ratio, Config, Direction};
use gantry_detect::watch::{watch, Season, WatchConfig, WatchRule, Watched};

use super::corpus::{SeriesSpec, DAY, SLOTS, START, STEP, WATCH_FROM, WEEK};
use super::store::Stored;

/// The server's before window and seasons (`gantry-server` `detect.rs`).
const BEFORE: i64 = 30 * 60;
const SEASONS: [i64; 2] = [DAY, WEEK];
/// How long a change is watched (the `[detect]` table's `watch = "60m"`).
pub const CHANGE_WATCH: i64 = 60 * 60;

/// Where a verdict came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Source {
    Change,
    Watch,
    Zero,
}

#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Found {
    /// The newest raw sample the verdict used.
    pub at: i64,
    pub source: Source,
    pub effect: f64,
    /// The window (watch) or after values (change) it judged, and its p-value.
    pub window: i64,
    pub p_value: f64,
    pub expected_ratio: f64,
}

/// What to run: the parts can be switched off to see what each contributes.
#[derive(Debug, Clone)]
pub struct DetectorOptions {
    pub watch: WatchConfig,
    pub changes: bool,
    pub always_on: bool,
}

/// The server's `window`: finite values with `from ≤ t < until`.
fn window(points: &[gantry_detect::Point], from: i64, until: i64) -> Vec<f64> {
    let start = points.partition_point(|p| p.t < from);
    points[start..]
        .iter()
        .take_while(|p| p.t < until)
        .map(|p| p.v)
        .filter(|v| v.is_finite())
        .collect()
}

/// One look at one change whose after window ends with the slot at `newest`, as the
/// server's `compare_change` makes it at `now = newest + 2 steps`; `Some(effect)` for a
/// regression.
fn change_look(
    store: &Stored,
    start: i64,
    newest: i64,
    direction: Direction,
) -> Option<(f64, f64, f64)> {
    let now = newest + 2 * STEP;
    let (points, step) = store.read(start - BEFORE, now, now, false);
    let before = window(points, start - BEFORE, start);
    let after = window(points, start, now - step);
    if after.is_empty() {
        return None;
    }
    let mut seasonal_before = Vec::new();
    let mut seasonal_after = Vec::new();
    for back in SEASONS {
        let (p, _) = store.read(start - BEFORE - back, now - back, now, false);
        seasonal_before.push(window(p, start - BEFORE - back, start - back));
        seasonal_after.push(window(p, start - back, now - step - back));
    }
    let b: Vec<&[f64]> = seasonal_before.iter().map(Vec::as_slice).collect();
    let a: Vec<&[f64]> = seasonal_after.iter().map(Vec::as_slice).collect();
    let expected = seasonal_ratio(&b, &a).map_or(1.0, |r| r.ratio);
    let look = after.len() as u32;
    let config = Config::default();
    // compare() tests first on its rank test; checking that p-value here first (the same
    // numbers through the same public functions) skips the Hodges–Lehmann work of the
    // looks that cannot be regressions, and changes no outcome.
    let scaled: Vec<f64> = before.iter().map(|v| v * expected).collect();
    if scaled.len() < config.min_points || after.len() < config.min_points {
        return None;
    }
    let floor = log_floor(&scaled, &after);
    let log = |values: &[f64]| -> Vec<f64> { values.iter().map(|v| v.max(floor).ln()).collect() };
    let side = match direction {
        Direction::Drop => Alternative::Less,
        _ => Alternative::Greater,
    };
    let test = mann_whitney(&log(&scaled), &log(&after), side)?;
    if test.p_value > look_alpha(config.alpha, look) {
        return None;
    }
    let comparison = compare(&before, &after, expected, direction, &config, look);
    comparison
        .is_regression
        .then_some((comparison.effect, comparison.p_value, expected))
}

/// Runs the detector over the watched period of one series.
pub fn run(spec: &SeriesSpec, store: &Stored, options: &DetectorOptions) -> Vec<Found> {
    let direction = spec.direction();
    let config = &options.watch;
    let hold = i64::from(config.hold_secs);
    let step = NonZeroU32::new(STEP as u32).expect("a step");
    let horizon = config.recent_secs(step) + STEP;
    let (span_before, span_after) = config.season_span(step);
    let changes: Vec<i64> = spec
        .events
        .iter()
        .filter(|e| e.is_change())
        .map(|e| e.t0)
        .collect();
    let mut change_done = vec![false; changes.len()];
    let mut found: Vec<Found> = Vec::new();
    let mut last: Option<i64> = None;
    let first = ((WATCH_FROM - START) / STEP) as usize;
    for i in first..SLOTS {
        let newest = START + i as i64 * STEP;
        if last.is_some_and(|at| newest - at < hold) {
            continue;
        }
        let mut verdict = None;
        if options.changes {
            for (c, &start) in changes.iter().enumerate() {
                if change_done[c] || newest < start || newest >= start + CHANGE_WATCH {
                    continue;
                }
                if let Some((effect, p_value, expected_ratio)) =
                    change_look(store, start, newest, direction)
                {
                    change_done[c] = true;
                    verdict = Some(Found {
                        at: newest,
                        source: Source::Change,
                        effect,
                        window: newest + STEP - start,
                        p_value,
                        expected_ratio,
                    });
                    break;
                }
            }
        }
        if verdict.is_none() && options.always_on {
            let now = newest + STEP;
            let (recent, _) = store.read(now - horizon, now, now, true);
            let mut seasons = [Season {
                back_secs: 0,
                step,
                points: &[],
            }; 2];
            for (season, back) in seasons.iter_mut().zip(SEASONS) {
                let (points, season_step) =
                    store.read(now - back - span_before, now - back + span_after, now, true);
                *season = Season {
                    back_secs: back,
                    step: NonZeroU32::new(season_step as u32).expect("a step"),
                    points,
                };
            }
            let input = Watched {
                recent,
                step,
                seasons: &seasons,
                now,
                direction,
                counts: spec.kind.counts(),
                last_verdict_at: last,
            };
            if let Some(v) = watch(&input, config) {
                verdict = Some(Found {
                    at: v.at,
                    source: match v.rule {
                        WatchRule::Shift => Source::Watch,
                        WatchRule::Zero => Source::Zero,
                    },
                    effect: v.comparison.effect,
                    window: v.window_secs,
                    p_value: v.comparison.p_value,
                    expected_ratio: v.expected_ratio,
                });
            }
        }
        if let Some(v) = verdict {
            last = Some(newest);
            found.push(v);
        }
    }
    found
}
