//! Scoring verdicts against a series' events.
//!
//! An event that must be found (a drop, rise or drop to zero after a change, or a shift
//! without one: 20 % or more in the bad direction) is **found** by the first verdict on its
//! series whose newest sample lies within 15 minutes of the event's first shifted sample
//! `t0` (`t0 ≤ at ≤ t0 + 15 min`); its delay is `at − t0`. Later verdicts in that span are
//! **duplicates**, counted neither way. Verdicts during a shift under 20 % (from its `t0`
//! to its end, or 15 minutes, whichever is longer) count neither way either. **Every other
//! verdict is false**. A change with no effect **halted falsely** when any verdict lies
//! within its 60-minute watch.

use super::corpus::{Event, EventKind, SeriesSpec};
use super::detector::CHANGE_WATCH;

/// How long after `t0` a verdict finds an event.
pub const FIND_WITHIN: i64 = 15 * 60;

/// The score of some verdicts on some series.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Tally {
    /// Events that must be found, and those found.
    pub events: usize,
    pub found: usize,
    pub false_verdicts: usize,
    pub duplicates: usize,
    pub ignored: usize,
    /// Delays of the found events, seconds.
    pub delays: Vec<i64>,
    pub no_effect: usize,
    pub halted: usize,
    /// The events not found (for diagnostics) and the false verdicts' times.
    pub missed: Vec<Event>,
    pub false_at: Vec<i64>,
}

impl Tally {
    pub fn add(&mut self, other: Tally) {
        self.events += other.events;
        self.found += other.found;
        self.false_verdicts += other.false_verdicts;
        self.duplicates += other.duplicates;
        self.ignored += other.ignored;
        self.delays.extend(other.delays);
        self.no_effect += other.no_effect;
        self.halted += other.halted;
        self.missed.extend(other.missed);
        self.false_at.extend(other.false_at);
    }
}

/// Scores verdict times (the newest sample each used, in order) on one series.
pub fn score(spec: &SeriesSpec, verdicts: &[i64]) -> Tally {
    let events = &spec.events;
    let mut found = vec![false; events.len()];
    let mut halted = vec![false; events.len()];
    let mut tally = Tally::default();
    for &at in verdicts {
        for (i, e) in events.iter().enumerate() {
            if e.kind == EventKind::NoEffect && e.t0 <= at && at < e.t0 + CHANGE_WATCH {
                halted[i] = true;
            }
        }
        let hit = events
            .iter()
            .position(|e| e.must_find() && e.t0 <= at && at <= e.t0 + FIND_WITHIN);
        match hit {
            Some(i) if !found[i] => {
                found[i] = true;
                tally.found += 1;
                tally.delays.push(at - events[i].t0);
            }
            Some(_) => tally.duplicates += 1,
            None if events
                .iter()
                .any(|e| e.kind == EventKind::Small && e.t0 <= at && at <= e.end + FIND_WITHIN) =>
            {
                tally.ignored += 1
            }
            None => {
                tally.false_verdicts += 1;
                tally.false_at.push(at);
            }
        }
    }
    for (i, e) in events.iter().enumerate() {
        if e.must_find() {
            tally.events += 1;
            if !found[i] {
                tally.missed.push(*e);
            }
        }
        if e.kind == EventKind::NoEffect {
            tally.no_effect += 1;
            tally.halted += usize::from(halted[i]);
        }
    }
    tally
}

/// The nearest-rank percentile of some delays (0 without any).
pub fn percentile(values: &[i64], percent: f64) -> i64 {
    if values.is_empty() {
        return 0;
    }
    let mut sorted = values.to_vec();
    sorted.sort_unstable();
    let rank = (percent / 100.0 * sorted.len() as f64).ceil() as usize;
    sorted[rank.clamp(1, sorted.len()) - 1]
}

#[cfg(test)]
mod tests {
    use super::super::corpus::plan;
    use super::*;

    #[test]
    fn verdicts_scored() {
        let mut spec = plan(0).swap_remove(3);
        let t = 1_700_700_000;
        let event = |kind, t0: i64, end: i64| Event {
            kind,
            t0,
            end,
            factor: 0.5,
        };
        spec.events = vec![
            event(EventKind::Drop, t, t + 3600),
            event(EventKind::NoEffect, t + 20_000, t + 20_000),
            event(EventKind::Small, t + 40_000, t + 42_000),
            event(EventKind::Unannounced, t + 60_000, t + 63_600),
        ];
        // (verdict times, (found, false, duplicates, ignored, halted, delays))
        type Case = (Vec<i64>, (usize, usize, usize, usize, usize, Vec<i64>));
        let cases: Vec<Case> = vec![
            (vec![], (0, 0, 0, 0, 0, vec![])),
            (vec![t + 30, t + 40, t + 900], (1, 0, 2, 0, 0, vec![30])),
            // Before t0, and after the 15 minutes: false.
            (vec![t - 10, t + 901], (0, 2, 0, 0, 0, vec![])),
            (vec![t + 20_000 + 3599], (0, 1, 0, 0, 1, vec![])),
            (vec![t + 20_000 + 3600], (0, 1, 0, 0, 0, vec![])),
            (
                vec![t + 41_000, t + 42_900, t + 42_901],
                (0, 1, 0, 2, 0, vec![]),
            ),
            (vec![t + 60_000, t + 120], (2, 0, 0, 0, 0, vec![0, 120])),
        ];
        for (verdicts, (found, false_verdicts, duplicates, ignored, halted, delays)) in cases {
            let got = score(&spec, &verdicts);
            assert_eq!(
                (
                    got.found,
                    got.false_verdicts,
                    got.duplicates,
                    got.ignored,
                    got.halted,
                    got.delays
                ),
                (found, false_verdicts, duplicates, ignored, halted, delays),
                "{verdicts:?}"
            );
            assert_eq!((got.events, got.no_effect), (2, 1));
        }
    }

    #[test]
    fn percentiles() {
        assert_eq!(percentile(&[], 50.0), 0);
        assert_eq!(percentile(&[30, 10, 20], 50.0), 20);
        assert_eq!(percentile(&[30, 10, 20, 40], 90.0), 40);
    }
}
