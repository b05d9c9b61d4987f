//! Flap detection, as Nagios does it: a series whose state keeps changing is *flapping*,
//! and its notifications are held until it settles.
//!
//! **The measure.** The last [`HISTORY`] (21) evaluated states, oldest first, in slots 0
//! to 20, hold 20 possible changes: change `j` (1 to 20) is between slots `j-1` and `j`.
//! A change that happened counts with weight `0.8 + 0.4 × (j-1)/19`, so from 0.8 for the
//! oldest to 1.2 for the newest, rising linearly; the weights of all 20 sum to 20. The
//! percent state change is `100 × (sum of the weights of the changes that happened) / 20`:
//! 100 % when every evaluation changed state, 6 % for one change just now, 4 % for one
//! change long ago. A history shorter than 21 fills the newest slots; the empty older
//! slots hold no change. Any change of state counts (OK to WARNING, WARNING to CRITICAL),
//! soft or hard.
//!
//! **Hysteresis.** Flapping starts when the percent rises above the high threshold (20 %)
//! and stops only when it falls below the low one (5 %); in between, it stays as it was.

use std::collections::VecDeque;

use crate::state::State;

/// States kept for flap detection.
pub const HISTORY: usize = 21;
/// Weight of the oldest possible change.
pub const OLDEST_WEIGHT: f64 = 0.8;
/// Weight of the newest possible change.
pub const NEWEST_WEIGHT: f64 = 1.2;

/// Where flapping starts and stops, in percent state change.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct FlapThresholds {
    /// Flapping stops when the percent falls below this.
    pub low_percent: f64,
    /// Flapping starts when the percent rises above this.
    pub high_percent: f64,
}

impl Default for FlapThresholds {
    /// Nagios' defaults: 5 % and 20 %.
    fn default() -> Self {
        FlapThresholds {
            low_percent: 5.0,
            high_percent: 20.0,
        }
    }
}

/// Flapping started or stopped, and the percent that decided it.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum FlapChange {
    Started { percent: f64 },
    Stopped { percent: f64 },
}

/// The recent states of one series and whether it is flapping.
#[derive(Debug, Clone, PartialEq, Default, serde::Serialize, serde::Deserialize)]
pub struct FlapDetector {
    states: VecDeque<State>,
    flapping: bool,
}

impl FlapDetector {
    pub fn new() -> Self {
        FlapDetector::default()
    }

    /// Adds the newest evaluated state and says whether flapping started or stopped.
    pub fn record(&mut self, state: State, thresholds: &FlapThresholds) -> Option<FlapChange> {
        if self.states.len() == HISTORY {
            self.states.pop_front();
        }
        self.states.push_back(state);
        let percent = self.percent_state_change();
        if !self.flapping && percent > thresholds.high_percent {
            self.flapping = true;
            Some(FlapChange::Started { percent })
        } else if self.flapping && percent < thresholds.low_percent {
            self.flapping = false;
            Some(FlapChange::Stopped { percent })
        } else {
            None
        }
    }

    pub fn is_flapping(&self) -> bool {
        self.flapping
    }

    /// The states held, oldest first.
    pub fn history(&self) -> impl Iterator<Item = State> + '_ {
        self.states.iter().copied()
    }

    /// The weighted percent state change of the history (see the module doc).
    pub fn percent_state_change(&self) -> f64 {
        let (front, back) = self.states.as_slices();
        let states: Vec<State> = front.iter().chain(back).copied().collect();
        percent_state_change(&states)
    }
}

/// The weighted percent state change of the newest [`HISTORY`] states of `states`
/// (oldest first); see the module doc.
pub fn percent_state_change(states: &[State]) -> f64 {
    let states = &states[states.len().saturating_sub(HISTORY)..];
    // The newest state sits in slot HISTORY-1; a shorter history starts later.
    let first_slot = HISTORY - states.len();
    let weighted: f64 = states
        .windows(2)
        .enumerate()
        .filter(|(_, pair)| pair[0] != pair[1])
        .map(|(i, _)| change_weight(first_slot + i + 1))
        .sum();
    weighted * 100.0 / (HISTORY - 1) as f64
}

/// The weight of change `j` (1 = oldest, 20 = newest).
pub fn change_weight(j: usize) -> f64 {
    let steps = (HISTORY - 2) as f64;
    OLDEST_WEIGHT + (NEWEST_WEIGHT - OLDEST_WEIGHT) * (j.saturating_sub(1)) as f64 / steps
}

#[cfg(test)]
mod tests {
    use super::*;
    use State::{Critical as C, Ok as O, Warning as W};

    /// A history written as text: `o` OK, `w` WARNING, `c` CRITICAL, oldest first.
    fn states(text: &str) -> Vec<State> {
        text.chars()
            .map(|c| match c {
                'w' => W,
                'c' => C,
                _ => O,
            })
            .collect()
    }

    fn close(a: f64, b: f64) -> bool {
        (a - b).abs() < 1e-9
    }

    #[test]
    fn weights_rise_linearly_from_oldest_to_newest() {
        assert!(close(change_weight(1), 0.8));
        assert!(close(change_weight(20), 1.2));
        assert!(close(change_weight(10) - change_weight(9), 0.4 / 19.0));
        let total: f64 = (1..=20).map(change_weight).sum();
        assert!(close(total, 20.0));
    }

    #[test]
    fn percent_state_change_cases() {
        let cases: [(&str, f64); 8] = [
            ("", 0.0),
            ("o", 0.0),
            ("ooooooooooooooooooooo", 0.0),
            // Every evaluation a change: all weights, 100 %.
            ("owowowowowowowowowowo", 100.0),
            // One change, the newest: 1.2 / 20.
            ("oooooooooooooooooooow", 6.0),
            // One change, the oldest: 0.8 / 20.
            ("owwwwwwwwwwwwwwwwwwww", 4.0),
            // A short history fills the newest slots: one change just now is still 6 %.
            ("ow", 6.0),
            // Only the newest 21 count: the leading change falls out of the window.
            ("cooooooooooooooooooooo", 0.0),
        ];
        for (text, expected) in cases {
            let got = percent_state_change(&states(text));
            assert!(close(got, expected), "{text:?}: {got}, expected {expected}");
        }
        // Any change counts, not just to or from OK.
        assert!(close(percent_state_change(&[W, C]), 6.0));
    }

    /// Feeds states one by one; returns the percent after each and where flapping changed.
    fn run(detector: &mut FlapDetector, text: &str) -> Vec<(usize, FlapChange)> {
        let thresholds = FlapThresholds::default();
        states(text)
            .into_iter()
            .enumerate()
            .filter_map(|(i, s)| detector.record(s, &thresholds).map(|c| (i, c)))
            .collect()
    }

    #[test]
    fn starts_above_high_and_stops_below_low() {
        let mut detector = FlapDetector::new();
        // Three recent changes: 1.2 + 1.179 + 1.158 = 3.54, 17.7 %: not yet.
        let changes = run(&mut detector, "oooooooooooooooooowow");
        assert!(changes.is_empty(), "{changes:?}");
        assert!(!detector.is_flapping());
        // A fourth: 4.67, 23.4 %: above 20 %, flapping starts.
        let changes = run(&mut detector, "o");
        assert!(
            matches!(changes.as_slice(), [(0, FlapChange::Started { percent })] if *percent > 20.0),
            "{changes:?}"
        );
        assert!(detector.is_flapping());

        // Settling: the changes age towards the old end and fall out of the window. Between
        // 20 % and 5 % it stays flapping (hysteresis).
        let mut stopped_at = None;
        for i in 0..HISTORY {
            let before = detector.percent_state_change();
            let changes = run(&mut detector, "o");
            let after = detector.percent_state_change();
            if let [(_, FlapChange::Stopped { percent })] = changes.as_slice() {
                assert!(*percent < 5.0);
                stopped_at = Some(i);
                break;
            }
            assert!(
                detector.is_flapping(),
                "stopped at {after} %, from {before} %"
            );
            assert!(after >= 5.0, "still flapping at {after} %");
        }
        assert!(stopped_at.is_some(), "never stopped");
        assert!(!detector.is_flapping());
        // Below 20 % but above 5 %: a detector that is not flapping does not start.
        let changes = run(&mut detector, "ww");
        assert!(changes.is_empty(), "{changes:?}");
    }

    #[test]
    fn stays_flapping_between_the_thresholds() {
        let mut detector = FlapDetector::new();
        run(&mut detector, "owowowowowowowowowowo");
        assert!(detector.is_flapping());
        // Ten quiet evaluations: the ten remaining changes are the older ones, weights
        // 0.8..1.0, about 45 %: still flapping.
        run(&mut detector, "oooooooooo");
        let percent = detector.percent_state_change();
        assert!(percent > 5.0 && percent < 100.0, "{percent}");
        assert!(detector.is_flapping());
    }

    #[test]
    fn custom_thresholds() {
        let thresholds = FlapThresholds {
            low_percent: 1.0,
            high_percent: 5.0,
        };
        let mut detector = FlapDetector::new();
        assert_eq!(detector.record(O, &thresholds), None);
        assert!(matches!(
            detector.record(W, &thresholds),
            Some(FlapChange::Started { .. })
        ));
    }
}
