//! How far did the level move? The Hodges–Lehmann shift estimate and its distribution-free
//! 95 % confidence interval, on the raw scale and on a log scale (a ratio).
//!
//! With the `M = n₁n₂` pairwise differences `D = after_j − before_i` sorted,
//! `D₍₁₎ ≤ … ≤ D₍M₎`, the estimate is their median. The interval comes from the same
//! statistic as the Mann–Whitney test: for the true shift `Δ`, the number of differences
//! above `Δ` has the null distribution of `U`, so
//!
//! ```text
//! [D₍k₎, D₍M+1−k₎]  covers Δ with probability ≥ 1 − 2·P(U ≤ k − 1)
//! ```
//!
//! and `k` is the largest rank with `P(U ≤ k − 1) ≤ 2.5 %`. `P` is the exact untied
//! distribution of `U` for the groups' sizes when [`mod@crate::mann_whitney`] would use the exact
//! test (smaller group below 20, larger at most 50), otherwise the normal approximation
//! with continuity correction: `k = ⌊n₁n₂/2 − 1.96·√(n₁n₂(N+1)/12) + ½⌋`. When even
//! `k = 1` is too wide a bet (3 vs 3 and smaller: `P(U = 0) = 1/C(N, n₁) > 2.5 %`), the
//! interval is unbounded, `(−∞, +∞)`: such groups cannot show anything. Tied values use
//! the same ranks (the usual practice; the coverage is then approximate).
//!
//! On the log scale ([`hodges_lehmann_ratio`]), the differences are of `ln(value)`, so the
//! shift is multiplicative: `ratio = exp(estimate)`, interval `[exp(lower), exp(upper)]`;
//! `ratio − 1` is the relative change that the minimum shift (20 % by default) is measured
//! in. A log needs positive values, and rates are often 0: values below a **floor** are
//! raised to it first, with the floor at 1/1000 of the mean of the positive values of both
//! groups ([`log_floor`]). That keeps the estimate independent of the metric's unit
//! (multiply every value by `c` and the ratio is unchanged) and makes a drop to zero read
//! as about −99.9 %, not −∞. Negative values are treated as zero: the log scale is for
//! quantities that cannot go below it (rates, counts, durations).

use serde::{Deserialize, Serialize};

use crate::mann_whitney::{binomial, exact_applies, untied_counts};
use crate::normal::Z_95;

/// The floor of [`log_floor`], as a fraction of the mean positive value.
pub const LOG_FLOOR_FRACTION: f64 = 1e-3;

/// A shift `after − before` with its 95 % interval. `lower` may be −∞ and `upper` +∞ when
/// the groups are too small for a finite interval.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct Shift {
    pub estimate: f64,
    pub lower: f64,
    pub upper: f64,
    /// Whether the interval's ranks come from the exact distribution.
    pub exact: bool,
}

/// A multiplicative shift `after / before` with its 95 % interval; `lower` may be 0 and
/// `upper` +∞ when the groups are too small for a finite interval.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct Ratio {
    pub ratio: f64,
    pub lower: f64,
    pub upper: f64,
    /// Whether the interval's ranks come from the exact distribution.
    pub exact: bool,
    /// Values below this were raised to it before taking logs.
    pub floor: f64,
}

/// The Hodges–Lehmann shift of `after` relative to `before` (median of `after_j − before_i`)
/// with its distribution-free 95 % interval. `None` when a group is empty or holds a value
/// that is not finite.
pub fn hodges_lehmann(before: &[f64], after: &[f64]) -> Option<Shift> {
    if before.is_empty() || after.is_empty() {
        return None;
    }
    if !before.iter().chain(after).all(|v| v.is_finite()) {
        return None;
    }
    let mut differences: Vec<f64> = after
        .iter()
        .flat_map(|a| before.iter().map(move |b| a - b))
        .collect();
    let count = differences.len();
    // One selection splits the differences at the (upper) median; the other order
    // statistics are then looked for only in the half that holds them.
    let middle = count / 2;
    let (below, &mut median_high, above) =
        differences.select_nth_unstable_by(middle, f64::total_cmp);
    let estimate = if count % 2 == 1 {
        median_high
    } else {
        let median_low = below.iter().copied().fold(f64::NEG_INFINITY, f64::max);
        median_low / 2.0 + median_high / 2.0
    };
    let mut nth = |index: usize| -> f64 {
        match index.cmp(&middle) {
            std::cmp::Ordering::Less => order_statistic(below, index),
            std::cmp::Ordering::Equal => median_high,
            std::cmp::Ordering::Greater => order_statistic(above, index - middle - 1),
        }
    };
    let (n1, n2) = (before.len(), after.len());
    let (lower, upper) = match interval_rank(n1, n2) {
        Some(k) => (nth(k - 1), nth(count - k)),
        None => (f64::NEG_INFINITY, f64::INFINITY),
    };
    Some(Shift {
        estimate,
        lower,
        upper,
        exact: exact_applies(n1, n2),
    })
}

/// The Hodges–Lehmann shift on the log scale: `after ≈ ratio × before`. Values below
/// [`log_floor`] are raised to it first. `None` as for [`hodges_lehmann`].
pub fn hodges_lehmann_ratio(before: &[f64], after: &[f64]) -> Option<Ratio> {
    if !before.iter().chain(after).all(|v| v.is_finite()) {
        return None;
    }
    let floor = log_floor(before, after);
    let log = |values: &[f64]| -> Vec<f64> { values.iter().map(|v| v.max(floor).ln()).collect() };
    let shift = hodges_lehmann(&log(before), &log(after))?;
    Some(Ratio {
        ratio: shift.estimate.exp(),
        lower: shift.lower.exp(),
        upper: shift.upper.exp(),
        exact: shift.exact,
        floor,
    })
}

/// The smallest value taken as it is on the log scale: [`LOG_FLOOR_FRACTION`] of the mean of
/// the positive finite values of both groups, or 1 when there are none (then every value
/// sits at the floor and the ratio is 1).
pub fn log_floor(before: &[f64], after: &[f64]) -> f64 {
    let (sum, count) = before
        .iter()
        .chain(after)
        .filter(|v| v.is_finite() && **v > 0.0)
        .fold((0.0, 0_usize), |(sum, count), v| (sum + v, count + 1));
    if count == 0 {
        return 1.0;
    }
    let floor = LOG_FLOOR_FRACTION * (sum / count as f64);
    // A mean of subnormal values could round the floor to 0; the log needs it positive.
    floor.max(f64::MIN_POSITIVE)
}

/// The `index`-th smallest value (0-based), reordering `values`.
fn order_statistic(values: &mut [f64], index: usize) -> f64 {
    *values.select_nth_unstable_by(index, f64::total_cmp).1
}

/// The 1-based rank `k` of the 95 % interval `[D₍k₎, D₍M+1−k₎]` for groups of `n1` and `n2`
/// values, or `None` when no finite interval reaches 95 %.
pub(crate) fn interval_rank(n1: usize, n2: usize) -> Option<usize> {
    let pairs = n1 * n2;
    let (a, b) = (n1 as f64, n2 as f64);
    let sd = (a * b * (a + b + 1.0) / 12.0).sqrt();
    if exact_applies(n1, n2) {
        // The largest k with P(U ≤ k − 1) ≤ 1/40: walk the lower tail until it passes 1/40.
        // It passes well before μ − σ (where the tail holds about 16 %), so count that far
        // first and the whole lower half only if that was not enough.
        let total = u128::from(binomial(n1 + n2, n1.min(n2)));
        let near = ((a * b / 2.0 - sd).ceil().max(0.0) as usize).min(pairs / 2);
        for max_u in [near, pairs / 2] {
            let mut cumulative: u128 = 0;
            for (u, &count) in untied_counts(n1, n2, max_u).iter().enumerate() {
                cumulative += u128::try_from(count).unwrap_or(0);
                if cumulative * 40 > total {
                    return (u >= 1).then_some(u);
                }
            }
        }
        None
    } else {
        let k = (a * b / 2.0 - Z_95 * sd + 0.5).floor();
        (k >= 1.0).then_some(k as usize)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn check_shift(before: &[f64], after: &[f64], expect: (f64, f64, f64)) {
        let got = hodges_lehmann(before, after).expect("valid groups");
        assert_eq!(
            (got.estimate, got.lower, got.upper),
            expect,
            "{before:?} vs {after:?}"
        );
    }

    #[test]
    fn shifts() {
        let ten: Vec<f64> = (0..10).map(f64::from).collect();
        let ten_plus_five: Vec<f64> = ten.iter().map(|v| v + 5.0).collect();
        let inf = f64::INFINITY;
        // (before, after, (estimate, lower, upper))
        type Case<'a> = (&'a [f64], &'a [f64], (f64, f64, f64));
        let cases: &[Case] = &[
            // Differences 1,2,2,3,3,3,4,4,5: median 3; 3 vs 3 has no finite 95 % interval.
            (&[1.0, 2.0, 3.0], &[4.0, 5.0, 6.0], (3.0, -inf, inf)),
            // 4 vs 4: k = 1, the interval is [min, max] of the differences.
            (
                &[0.0, 1.0, 2.0, 3.0],
                &[10.0, 11.0, 12.0, 13.0],
                (10.0, 7.0, 13.0),
            ),
            // 10 vs 10 shifted by 5: differences 5 + (j − i); k = 24 gives D₍24₎ = 2 and
            // D₍77₎ = 8 (counted: 21 differences ≤ 1, 28 ≤ 2; 72 ≤ 7, 79 ≤ 8).
            (&ten, &ten_plus_five, (5.0, 2.0, 8.0)),
            // Even count, median between the middle two: differences −1, 0, 1, 2.
            (&[0.0, 1.0], &[0.0, 2.0], (0.5, -inf, inf)),
            // A single pair.
            (&[4.0], &[1.5], (-2.5, -inf, inf)),
        ];
        for &(before, after, expect) in cases {
            check_shift(before, after, expect);
        }
    }

    #[test]
    fn interval_ranks() {
        // Exact ranks from the U distribution enumerated in Python; normal ones from the
        // formula (20 vs 20 → 128 matches the tabulated two-sided 5 % critical U of 127).
        let cases = [
            ((2, 2), None),
            ((3, 3), None),
            ((4, 3), None),
            ((4, 4), Some(1)),
            ((5, 5), Some(3)),
            ((10, 10), Some(24)),
            ((2, 19), Some(3)),
            ((3, 19), Some(8)),
            ((19, 19), Some(114)),
            ((5, 30), Some(34)),
            ((20, 20), Some(128)),
            ((25, 25), Some(211)),
            ((30, 60), Some(671)),
            ((2, 100), Some(19)),
        ];
        for ((n1, n2), expected) in cases {
            assert_eq!(interval_rank(n1, n2), expected, "{n1} vs {n2}");
            assert_eq!(interval_rank(n2, n1), expected, "{n2} vs {n1}");
        }
    }

    #[test]
    fn ratios() {
        let hundreds = [100.0, 101.0, 99.0, 100.0, 102.0, 98.0];
        let halves: Vec<f64> = hundreds.iter().map(|v| v / 2.0).collect();
        let zeros = [0.0; 6];
        let cases: &[(&[f64], &[f64], f64)] = &[
            (&hundreds, &halves, 0.5),
            (&halves, &hundreds, 2.0),
            (&hundreds, &hundreds, 1.0),
            // All zero after: the floor is 1/1000 of the mean positive value (100 here).
            (&hundreds, &zeros, 0.1 / 100.0),
            // Nothing positive anywhere: nothing moved.
            (&zeros, &zeros, 1.0),
        ];
        for &(before, after, expected) in cases {
            let got = hodges_lehmann_ratio(before, after).expect("valid groups");
            assert!(
                (got.ratio - expected).abs() < 1e-12 * expected,
                "{before:?} vs {after:?}: {got:?}"
            );
            assert!(got.lower <= got.ratio && got.ratio <= got.upper, "{got:?}");
        }
    }

    #[test]
    fn ratio_ignores_the_unit() {
        let before = [3.0, 0.0, 4.0, 5.0, 4.0, 2.0, 0.0, 3.0];
        let after = [1.0, 0.0, 2.0, 1.0, 0.0, 2.0, 1.0];
        let base = hodges_lehmann_ratio(&before, &after).expect("valid");
        for scale in [1e-6, 0.25, 60.0, 1e9] {
            let scaled =
                |values: &[f64]| -> Vec<f64> { values.iter().map(|v| v * scale).collect() };
            let got = hodges_lehmann_ratio(&scaled(&before), &scaled(&after)).expect("valid");
            for (a, b) in [
                (got.ratio, base.ratio),
                (got.lower, base.lower),
                (got.upper, base.upper),
            ] {
                assert!(
                    (a - b).abs() <= 1e-9 * b,
                    "scale {scale}: {got:?} vs {base:?}"
                );
            }
        }
    }

    #[test]
    fn agrees_with_sorting_every_difference() {
        // A small linear congruential generator for test data; heavy ties on even cases.
        let mut state = 12_345_u64;
        let mut next = |spread: u64| -> f64 {
            state = state
                .wrapping_mul(6_364_136_223_846_793_005)
                .wrapping_add(1_442_695_040_888_963_407);
            ((state >> 33) % spread) as f64
        };
        for case in 0..300 {
            let (n1, n2) = (1 + case % 23, 1 + (case * 7) % 31);
            let spread = if case % 2 == 0 { 5 } else { 1_000_000 };
            let before: Vec<f64> = (0..n1).map(|_| next(spread)).collect();
            let after: Vec<f64> = (0..n2).map(|_| next(spread)).collect();
            let mut sorted: Vec<f64> = after
                .iter()
                .flat_map(|a| before.iter().map(move |b| a - b))
                .collect();
            sorted.sort_by(f64::total_cmp);
            let m = sorted.len();
            let median = if m % 2 == 1 {
                sorted[m / 2]
            } else {
                sorted[m / 2 - 1] / 2.0 + sorted[m / 2] / 2.0
            };
            let (lower, upper) = match interval_rank(n1, n2) {
                Some(k) => (sorted[k - 1], sorted[m - k]),
                None => (f64::NEG_INFINITY, f64::INFINITY),
            };
            check_shift(&before, &after, (median, lower, upper));
        }
    }

    #[test]
    fn refuses_empty_and_non_finite_groups() {
        assert_eq!(hodges_lehmann(&[], &[1.0]), None);
        assert_eq!(hodges_lehmann(&[1.0], &[f64::NAN]), None);
        assert_eq!(hodges_lehmann_ratio(&[1.0], &[]), None);
        assert_eq!(hodges_lehmann_ratio(&[f64::INFINITY], &[1.0]), None);
    }
}
