//! Replaying a recorded series through the detector, as `gantry detect replay FILE.csv`
//! does: the CSV reader and the loop a server would run.
//!
//! **The file** holds `timestamp,value` lines: Unix seconds (whole numbers) and a number,
//! in increasing time order, with an optional header line first (`timestamp,value`, any
//! words). Blank lines are skipped, and so is a line with an empty value (a missing slot,
//! as Graphite's CSV writes it). Everything else that is wrong is an error naming the line:
//! a timestamp that is not a whole number or looks like milliseconds (above 10¹¹, the year
//! 5138 in seconds), a value that is not a number or is NaN or infinite, a timestamp that
//! repeats or goes back in time.
//!
//! **With change times** ([`replay`] with `changes`), each change `c` is watched the way a
//! server watches one: the before window is the slots of the `before_window_secs` before
//! `c` (those that end by `c`), the after window grows by one slot per flush from `c` (slots
//! that start at or after `c`; a slot that straddles `c` belongs to neither), and at each
//! flush [`crate::verdict::compare`] runs with the next look number, up to `watch_secs`
//! after `c`. The first regression wins; without one, the last look is reported, so every
//! change gets exactly one [`Verdict`]. There is no seasonal baseline in a replay
//! (`expected_ratio = 1`).
//!
//! **Without change times**, the replay is a rolling comparison: at each flush, the last
//! `before_window_secs` of data against the same length before it. Every boundary between
//! the two windows is a new hypothesis (not a new look at the same one), tested once at
//! `alpha / (window / step)`: that spreads `alpha` over the boundaries one window holds, so
//! false verdicts stay at most about `alpha` per window's length of data. After a verdict,
//! the next boundary considered is at its time, so one level shift gives one verdict.

use std::f64::consts::PI;
use std::num::NonZeroU32;

use serde::{Deserialize, Serialize};

use crate::series::{between, present, values, Point};
use crate::verdict::{compare, Comparison, Config, Direction};

/// Timestamps above this are taken for milliseconds.
pub const MILLISECONDS_ABOVE: i64 = 100_000_000_000;

/// What is wrong with a replay's input. Line numbers count from 1, blank lines included.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum ReplayError {
    #[error("no data: expected lines of `timestamp,value` (Unix seconds, then a number)")]
    Empty,
    #[error("line {line}: expected two fields, `timestamp,value`; found {found}")]
    Fields { line: usize, found: usize },
    #[error("line {line}: timestamp '{text}' is not a whole number of Unix seconds")]
    Timestamp { line: usize, text: String },
    #[error(
        "line {line}: timestamp {timestamp} looks like milliseconds; give Unix seconds (divide by 1000)"
    )]
    Milliseconds { line: usize, timestamp: i64 },
    #[error("line {line}: value '{text}' is not a number")]
    Value { line: usize, text: String },
    #[error(
        "line {line}: value '{text}' is not a finite number; leave the value empty for a missing slot"
    )]
    NotFinite { line: usize, text: String },
    #[error(
        "line {line}: timestamp {timestamp} comes before {previous} (line {previous_line}); sort the file by time"
    )]
    Unsorted {
        line: usize,
        timestamp: i64,
        previous: i64,
        previous_line: usize,
    },
    #[error(
        "line {line}: timestamp {timestamp} repeats line {previous_line}; keep one value per slot"
    )]
    Duplicate {
        line: usize,
        timestamp: i64,
        previous_line: usize,
    },
    #[error("change at {change_at} is outside the data, which runs from {first} to {last}")]
    ChangeOutsideData {
        change_at: i64,
        first: i64,
        last: i64,
    },
    #[error("invalid detection settings: {0}")]
    Config(String),
}

/// Reads a `timestamp,value` CSV (see the module doc) into points, in time order, with
/// missing values left out.
pub fn parse_csv(text: &str) -> Result<Vec<Point>, ReplayError> {
    let mut points = Vec::new();
    let mut previous: Option<(i64, usize)> = None;
    let mut first_line = true;
    // A byte-order mark (spreadsheets write one) is not part of the first field.
    let text = text.strip_prefix('\u{feff}').unwrap_or(text);
    for (index, raw) in text.lines().enumerate() {
        let line = index + 1;
        let raw = raw.trim();
        if raw.is_empty() {
            continue;
        }
        let fields: Vec<&str> = raw.split(',').map(str::trim).collect();
        let could_be_header = std::mem::replace(&mut first_line, false);
        if could_be_header && fields.iter().all(|f| f.parse::<f64>().is_err()) {
            continue;
        }
        let [time_text, value_text] = fields[..] else {
            return Err(ReplayError::Fields {
                line,
                found: fields.len(),
            });
        };
        let t: i64 = time_text.parse().map_err(|_| ReplayError::Timestamp {
            line,
            text: time_text.to_string(),
        })?;
        if t > MILLISECONDS_ABOVE {
            return Err(ReplayError::Milliseconds { line, timestamp: t });
        }
        if let Some((previous, previous_line)) = previous {
            if t == previous {
                return Err(ReplayError::Duplicate {
                    line,
                    timestamp: t,
                    previous_line,
                });
            }
            if t < previous {
                return Err(ReplayError::Unsorted {
                    line,
                    timestamp: t,
                    previous,
                    previous_line,
                });
            }
        }
        previous = Some((t, line));
        if value_text.is_empty() {
            continue;
        }
        let v: f64 = value_text.parse().map_err(|_| ReplayError::Value {
            line,
            text: value_text.to_string(),
        })?;
        if !v.is_finite() {
            return Err(ReplayError::NotFinite {
                line,
                text: value_text.to_string(),
            });
        }
        points.push(Point { t, v });
    }
    if points.is_empty() {
        return Err(ReplayError::Empty);
    }
    Ok(points)
}

/// One result of a replay.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Verdict {
    /// When a server would have known: the end of the after window's last slot.
    pub at: i64,
    /// The change watched; `None` in a rolling comparison.
    pub change_at: Option<i64>,
    /// Where the after window starts: the change, or the rolling boundary.
    pub after_from: i64,
    pub comparison: Comparison,
}

/// Runs the detector over `points` (slots of `step` seconds) as a server would (see the
/// module doc): one verdict per change in `changes`, in their order, or with no changes the
/// regressions a rolling comparison finds.
pub fn replay(
    points: &[Point],
    step: NonZeroU32,
    changes: &[i64],
    direction: Direction,
    config: &Config,
) -> Result<Vec<Verdict>, ReplayError> {
    config.check().map_err(ReplayError::Config)?;
    let mut series = present(points);
    series.sort_by_key(|p| p.t);
    let (Some(first), Some(last)) = (series.first(), series.last()) else {
        return Err(ReplayError::Empty);
    };
    let (first, last) = (first.t, last.t);
    let step = i64::from(step.get());
    if changes.is_empty() {
        return Ok(rolling(&series, step, direction, config));
    }
    changes
        .iter()
        .map(|&change_at| {
            if change_at < first || change_at > last {
                return Err(ReplayError::ChangeOutsideData {
                    change_at,
                    first,
                    last,
                });
            }
            Ok(watch(&series, step, change_at, direction, config))
        })
        .collect()
}

/// One change, flush by flush, until the first regression or the end of the watch.
fn watch(
    series: &[Point],
    step: i64,
    change_at: i64,
    direction: Direction,
    config: &Config,
) -> Verdict {
    let window = i64::from(config.before_window_secs);
    let watch = i64::from(config.watch_secs);
    // Slots [t, t + step) that end by the change, and that start at it and end by the
    // watch's end.
    let before = values(between(
        series,
        change_at.saturating_sub(window),
        change_at.saturating_sub(step).saturating_add(1),
    ));
    let after_slots = between(
        series,
        change_at,
        change_at
            .saturating_add(watch)
            .saturating_sub(step)
            .saturating_add(1),
    );
    let mut look: u32 = 0;
    let mut last = None;
    for (index, slot) in after_slots.iter().enumerate() {
        let after = values(&after_slots[..=index]);
        let comparison = compare(
            &before,
            &after,
            1.0,
            direction,
            config,
            look.saturating_add(1),
        );
        if comparison.counts_as_look() {
            look = look.saturating_add(1);
        }
        let verdict = Verdict {
            at: slot.t.saturating_add(step),
            change_at: Some(change_at),
            after_from: change_at,
            comparison,
        };
        if verdict.comparison.is_regression {
            return verdict;
        }
        last = Some(verdict);
    }
    last.unwrap_or_else(|| Verdict {
        at: change_at,
        change_at: Some(change_at),
        after_from: change_at,
        comparison: compare(&before, &[], 1.0, direction, config, 1),
    })
}

/// The last window against the one before it, at every flush.
fn rolling(series: &[Point], step: i64, direction: Direction, config: &Config) -> Vec<Verdict> {
    let window = i64::from(config.before_window_secs);
    let boundaries_per_window = (window / step).max(1) as f64;
    // compare() tests look 1 at alpha·6/π²; undo that factor so each boundary gets exactly
    // alpha / boundaries_per_window (kept below 1, which only a huge alpha would reach).
    let per_boundary = Config {
        alpha: (config.alpha / boundaries_per_window * PI * PI / 6.0).min(1.0 - f64::EPSILON),
        ..config.clone()
    };
    let Some(first) = series.first().map(|p| p.t) else {
        return Vec::new();
    };
    let mut verdicts = Vec::new();
    let mut next_boundary = i64::MIN;
    for slot in series {
        let end = slot.t.saturating_add(step);
        let boundary = end.saturating_sub(window);
        if boundary.saturating_sub(window) < first || boundary < next_boundary {
            continue;
        }
        let before = values(between(
            series,
            boundary.saturating_sub(window),
            boundary.saturating_sub(step).saturating_add(1),
        ));
        let after = values(between(series, boundary, slot.t.saturating_add(1)));
        let comparison = compare(&before, &after, 1.0, direction, &per_boundary, 1);
        if comparison.is_regression {
            verdicts.push(Verdict {
                at: end,
                change_at: None,
                after_from: boundary,
                comparison,
            });
            next_boundary = end;
        }
    }
    verdicts
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::verdict::{Movement, Outcome};

    fn parsed(text: &str) -> Result<Vec<(i64, f64)>, String> {
        parse_csv(text)
            .map(|points| points.iter().map(|p| (p.t, p.v)).collect())
            .map_err(|e| e.to_string())
    }

    #[test]
    fn csv_accepted() {
        let cases: &[(&str, &[(i64, f64)])] = &[
            (
                "1700000000,1.5\n1700000060,2\n",
                &[(1_700_000_000, 1.5), (1_700_000_060, 2.0)],
            ),
            ("timestamp,value\n10,1\n20,2", &[(10, 1.0), (20, 2.0)]),
            (
                "time , requests\r\n10 , 1e3\r\n\r\n20,-2.5\r\n",
                &[(10, 1000.0), (20, -2.5)],
            ),
            // An empty value is a missing slot.
            ("10,1\n20,\n30,3\n", &[(10, 1.0), (30, 3.0)]),
            ("\n\n10,0\n", &[(10, 0.0)]),
            ("\u{feff}10,7\n", &[(10, 7.0)]),
        ];
        for &(text, expected) in cases {
            assert_eq!(parsed(text), Ok(expected.to_vec()), "{text:?}");
        }
    }

    #[test]
    fn csv_refused() {
        let cases = [
            ("", "no data"),
            ("timestamp,value\n", "no data"),
            ("10,\n20,\n", "no data"),
            ("10,1\n20\n", "line 2: expected two fields, `timestamp,value`; found 1"),
            ("10,1,2\n", "line 1: expected two fields, `timestamp,value`; found 3"),
            ("10,1\nnoon,2\n", "line 2: timestamp 'noon' is not a whole number of Unix seconds"),
            ("10.5,1\n", "line 1: timestamp '10.5' is not a whole number"),
            (
                "t,v\n1700000000000,1\n",
                "line 2: timestamp 1700000000000 looks like milliseconds; give Unix seconds (divide by 1000)",
            ),
            ("10,1\n20,lots\n", "line 2: value 'lots' is not a number"),
            ("10,1\n\n20,NaN\n", "line 3: value 'NaN' is not a finite number; leave the value empty for a missing slot"),
            ("10,inf\n", "line 1: value 'inf' is not a finite number"),
            (
                "10,1\n30,1\n20,1\n",
                "line 3: timestamp 20 comes before 30 (line 2); sort the file by time",
            ),
            ("10,1\n20,1\n20,2\n", "line 3: timestamp 20 repeats line 2"),
            // A header is only ever the first line.
            ("10,1\ntimestamp,value\n", "line 2: timestamp 'timestamp' is not a whole number"),
        ];
        for (text, message) in cases {
            match parsed(text) {
                Err(error) => assert!(error.starts_with(message), "{text:?}: {error}"),
                Ok(points) => panic!("{text:?} was accepted: {points:?}"),
            }
        }
    }

    /// Two hours of one-minute slots around 100 with a deterministic wobble, multiplied by
    /// `factor` from `from` on.
    fn series(start: i64, from: i64, factor: f64) -> Vec<Point> {
        (0..120)
            .map(|i| {
                let t = start + 60 * i;
                let wobble =
                    [0.0, 3.0, -2.0, 5.0, -4.0, 1.0, -1.0, 2.0, -3.0, 4.0][(i % 10) as usize];
                let level = if t >= from { 100.0 * factor } else { 100.0 };
                Point::new(t, level + wobble * factor)
            })
            .collect()
    }

    fn step() -> NonZeroU32 {
        NonZeroU32::new(60).expect("non-zero")
    }

    #[test]
    fn replays_with_change_times() {
        let start = 1_700_000_000;
        let change = start + 3600;
        let config = Config::default();
        let halved = series(start, change, 0.5);
        let steady = series(start, change, 1.0);
        let dead = series(start, change, 0.0);
        let mid_slot = change + 30;
        // (series, change, direction, (verdict time, outcome, movement, before and after sizes))
        type Case<'a> = (
            &'a [Point],
            i64,
            Direction,
            (i64, Outcome, Movement, usize, usize),
        );
        let cases: &[Case] = &[
            // Found at the third flush after the change (three after points are the minimum).
            (
                &halved,
                change,
                Direction::Drop,
                (change + 180, Outcome::Regression, Movement::Drop, 30, 3),
            ),
            // Watched for the whole hour without a verdict: the 60th flush is reported.
            (
                &steady,
                change,
                Direction::Drop,
                (
                    change + 3600,
                    Outcome::NotSignificant,
                    steady_movement(&steady, change),
                    30,
                    60,
                ),
            ),
            (
                &halved,
                change,
                Direction::Rise,
                (
                    change + 3600,
                    Outcome::NotSignificant,
                    Movement::Drop,
                    30,
                    60,
                ),
            ),
            (
                &dead,
                change,
                Direction::Either,
                (change + 180, Outcome::Regression, Movement::Drop, 30, 3),
            ),
            // A change in the middle of a slot: that slot is in neither window.
            (
                &halved,
                mid_slot,
                Direction::Drop,
                (
                    mid_slot + 30 + 180,
                    Outcome::Regression,
                    Movement::Drop,
                    29,
                    3,
                ),
            ),
        ];
        for &(points, change_at, direction, (at, outcome, movement, before_len, after_len)) in cases
        {
            let verdicts = replay(points, step(), &[change_at], direction, &config).expect("valid");
            let [verdict] = &verdicts[..] else {
                panic!("{verdicts:?}");
            };
            let got = &verdict.comparison;
            assert_eq!(
                (
                    verdict.at,
                    got.outcome,
                    got.movement,
                    got.before_len,
                    got.after_len
                ),
                (at, outcome, movement, before_len, after_len),
                "{direction:?} at {change_at}: {verdict:?}"
            );
            assert_eq!(verdict.change_at, Some(change_at));
        }
        let halved_verdict = &replay(&halved, step(), &[change], Direction::Drop, &config)
            .expect("valid")[0]
            .comparison;
        assert!(
            (halved_verdict.effect + 0.5).abs() < 0.05,
            "{halved_verdict:?}"
        );
        assert_eq!(halved_verdict.look, 1);
    }

    fn steady_movement(points: &[Point], change: i64) -> Movement {
        let before = values(between(points, change - 1800, change));
        let after = values(between(points, change, change + 3600));
        compare(
            &before,
            &after,
            1.0,
            Direction::Either,
            &Config::default(),
            1,
        )
        .movement
    }

    #[test]
    fn several_changes_and_refusals() {
        let start = 1_700_000_000;
        let change = start + 3600;
        let halved = series(start, change, 0.5);
        let config = Config::default();
        let verdicts = replay(
            &halved,
            step(),
            &[start + 2400, change],
            Direction::Drop,
            &config,
        )
        .expect("valid");
        let found: Vec<bool> = verdicts
            .iter()
            .map(|v| v.comparison.is_regression)
            .collect();
        // The earlier change is watched into the drop: its after window is mixed, and it too
        // is found, later, once the halved slots outweigh the steady ones.
        assert_eq!(found, [true, true]);
        assert!(verdicts[0].at > change + 180);

        let last = start + 119 * 60;
        let cases = [
            (
                start - 1,
                ReplayError::ChangeOutsideData {
                    change_at: start - 1,
                    first: start,
                    last,
                },
            ),
            (
                last + 1,
                ReplayError::ChangeOutsideData {
                    change_at: last + 1,
                    first: start,
                    last,
                },
            ),
        ];
        for (change_at, expected) in cases {
            assert_eq!(
                replay(&halved, step(), &[change_at], Direction::Drop, &config),
                Err(expected)
            );
        }
        assert_eq!(
            replay(&[], step(), &[], Direction::Drop, &config),
            Err(ReplayError::Empty)
        );
        let bad = Config {
            alpha: 2.0,
            ..Config::default()
        };
        assert!(matches!(
            replay(&halved, step(), &[change], Direction::Drop, &bad),
            Err(ReplayError::Config(_))
        ));
        // The change at the very first slot has no before window.
        let verdicts = replay(&halved, step(), &[start], Direction::Drop, &config).expect("valid");
        assert_eq!(verdicts[0].comparison.outcome, Outcome::TooFewPoints);
    }

    #[test]
    fn rolling_comparison() {
        let start = 1_700_000_000;
        let change = start + 3600;
        let config = Config::default();
        let cases = [
            (series(start, change, 0.5), Direction::Drop, vec![change]),
            (series(start, change, 1.0), Direction::Either, vec![]),
            (series(start, change, 0.5), Direction::Rise, vec![]),
            (series(start, change, 2.0), Direction::Rise, vec![change]),
        ];
        for (points, direction, boundaries) in cases {
            let verdicts = replay(&points, step(), &[], direction, &config).expect("valid");
            assert!(verdicts.iter().all(|v| v.change_at.is_none()));
            let got: Vec<i64> = verdicts.iter().map(|v| v.after_from).collect();
            // The level shift is found once. A rolling comparison cannot place it better than
            // the window: the boundary found is one whose after window is mostly past it.
            assert_eq!(got.len(), boundaries.len(), "{direction:?}: {verdicts:?}");
            for (got, expected) in got.iter().zip(&boundaries) {
                assert!(
                    (*expected - 900..=*expected).contains(got),
                    "{direction:?}: boundary {got}, shift at {expected}"
                );
            }
        }
    }
}
