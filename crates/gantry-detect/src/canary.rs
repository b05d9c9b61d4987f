//! Canary comparison during a rollout: difference in differences between the hosts already
//! on the new build and the hosts not yet on it, over the same two windows.
//!
//! Each host `h` contributes one number, its own change across the windows:
//!
//! ```text
//! rₕ = ln(mean afterₕ / mean beforeₕ)
//! ```
//!
//! so a host's traffic level cancels out (a host with ten times the traffic has the same
//! `rₕ` when nothing changed) and so does whatever hit every host between the windows (the
//! evening, a downstream outage): only how the new hosts' ratios differ from the old hosts'
//! remains. The new group's `rₕ` are compared with the old group's by the same rules as
//! [`crate::verdict::compare`]: the one-sided Mann–Whitney test at this look's alpha, and
//! the Hodges–Lehmann shift of the log ratios (`effect = exp(shift) − 1`, the new hosts'
//! change relative to the old hosts') beyond `min_shift` with its 95 % interval beyond
//! `min_shift / 2`. The [`crate::verdict::Comparison`]'s sizes count hosts.
//!
//! A host is left out when either window has fewer than `min_points` finite values or its
//! before mean is not positive (no level to compare with). A host whose after mean is 0
//! (it stopped serving) is floored at 1/1000 of its before mean, so it reads as a −99.9 %
//! change rather than −∞. Groups need hosts: with 3 new hosts against 3 old ones the
//! smallest possible p is 1/20, so the test cannot reach 1 %; one canary host against `n`
//! old ones can reach `1/(n + 1)` at best.

use serde::{Deserialize, Serialize};

use crate::hodges_lehmann::LOG_FLOOR_FRACTION;
use crate::verdict::{judge_logs, Comparison, Config, Direction};

/// One host's values of a metric over the window before and the window after.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
pub struct HostWindow {
    pub before: Vec<f64>,
    pub after: Vec<f64>,
}

/// Compares the change of the hosts on the new build (`new_hosts`) with the change of the
/// hosts still on the old one (`old_hosts`) at look `look` (alpha spending as in
/// [`crate::verdict`]).
pub fn compare_hosts(
    new_hosts: &[HostWindow],
    old_hosts: &[HostWindow],
    direction: Direction,
    config: &Config,
    look: u32,
) -> Comparison {
    let old = log_ratios(old_hosts, config.min_points);
    let new = log_ratios(new_hosts, config.min_points);
    judge_logs(&old, &new, direction, config, look)
}

/// `ln(mean after / mean before)` of every host with enough values and a positive before mean.
fn log_ratios(hosts: &[HostWindow], min_points: usize) -> Vec<f64> {
    hosts
        .iter()
        .filter_map(|host| {
            let before = mean(&host.before, min_points)?;
            let after = mean(&host.after, min_points)?;
            if before <= 0.0 {
                return None;
            }
            let ratio = after.max(LOG_FLOOR_FRACTION * before) / before;
            Some(ratio.ln()).filter(|r| r.is_finite())
        })
        .collect()
}

fn mean(values: &[f64], min_points: usize) -> Option<f64> {
    let finite: Vec<f64> = values.iter().copied().filter(|v| v.is_finite()).collect();
    if finite.is_empty() || finite.len() < min_points {
        return None;
    }
    Some(finite.iter().sum::<f64>() / finite.len() as f64)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::verdict::{Movement, Outcome};

    /// Hosts with traffic levels spread over three orders of magnitude; each host's after
    /// window is its before level times `change`, with a little host-specific wobble.
    fn hosts(levels: &[f64], change: f64) -> Vec<HostWindow> {
        levels
            .iter()
            .enumerate()
            .map(|(i, &level)| {
                let wobble = 1.0 + 0.02 * ((i % 5) as f64 - 2.0);
                HostWindow {
                    before: vec![level, level * 1.01, level * 0.99, level],
                    after: vec![level * change * wobble; 4],
                }
            })
            .collect()
    }

    fn levels(count: usize, offset: usize) -> Vec<f64> {
        (0..count)
            .map(|i| 10.0_f64.powi(((i + offset) % 4) as i32))
            .collect()
    }

    #[test]
    fn canaries() {
        let config = Config::default();
        let old = hosts(&levels(20, 0), 0.6); // the evening: every old host at 60 %
        let cases = [
            // New hosts follow the evening like the old ones: nothing to see, though every
            // host's traffic differs and all of them fell.
            (
                hosts(&levels(8, 1), 0.6),
                Direction::Drop,
                Outcome::NotSignificant,
            ),
            // New hosts fell to 30 %: half of what the old ones did.
            (
                hosts(&levels(8, 1), 0.3),
                Direction::Drop,
                Outcome::Regression,
            ),
            (
                hosts(&levels(8, 1), 0.3),
                Direction::Either,
                Outcome::Regression,
            ),
            (
                hosts(&levels(8, 1), 0.3),
                Direction::Rise,
                Outcome::NotSignificant,
            ),
            // 10 % below the old hosts: real, but below the minimum shift.
            (
                hosts(&levels(8, 1), 0.54),
                Direction::Drop,
                Outcome::BelowMinShift,
            ),
            // New hosts serving nothing.
            (
                hosts(&levels(8, 1), 0.0),
                Direction::Drop,
                Outcome::Regression,
            ),
            // Too few new hosts to say anything.
            (
                hosts(&levels(2, 1), 0.0),
                Direction::Drop,
                Outcome::TooFewPoints,
            ),
        ];
        for (new, direction, expected) in cases {
            let got = compare_hosts(&new, &old, direction, &config, 1);
            assert_eq!(got.outcome, expected, "{direction:?}: {got:?}");
        }
        let halved = compare_hosts(
            &hosts(&levels(8, 1), 0.3),
            &old,
            Direction::Drop,
            &config,
            1,
        );
        assert_eq!(halved.movement, Movement::Drop);
        assert!((halved.effect + 0.5).abs() < 0.05, "{halved:?}");
        assert_eq!((halved.before_len, halved.after_len), (20, 8));
    }

    #[test]
    fn hosts_left_out() {
        let usable = HostWindow {
            before: vec![1.0, 1.0, 1.0],
            after: vec![1.0, 1.0, 1.0],
        };
        let cases = [
            (usable.clone(), 1),
            (
                HostWindow {
                    before: vec![1.0, 1.0],
                    after: vec![1.0, 1.0, 1.0],
                },
                0,
            ),
            (
                HostWindow {
                    before: vec![1.0, 1.0, f64::NAN],
                    after: vec![1.0, 1.0, 1.0],
                },
                0,
            ),
            (
                HostWindow {
                    before: vec![0.0, 0.0, 0.0],
                    after: vec![1.0, 1.0, 1.0],
                },
                0,
            ),
            (
                HostWindow {
                    before: vec![2.0, 2.0, 2.0],
                    after: vec![0.0, 0.0, 0.0],
                },
                1,
            ),
            (HostWindow::default(), 0),
        ];
        for (host, kept) in cases {
            let ratios = log_ratios(std::slice::from_ref(&host), 3);
            assert_eq!(ratios.len(), kept, "{host:?}");
            assert!(ratios.iter().all(|r| r.is_finite()));
        }
    }
}
