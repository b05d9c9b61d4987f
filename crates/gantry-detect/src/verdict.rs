//! The verdict on one change: did a key metric regress after it?
//!
//! [`compare`] takes the values of a window before the change and of the window after it
//! (so far), the seasonal scaling `expected_ratio` (what the metric would have done anyway
//! between the two windows, from [`seasonal_ratio`]), and the direction that is bad for
//! this metric. The before window is scaled to the expectation,
//! `expected = before × expected_ratio`, and a **regression** needs all of:
//!
//! 1. **significance**: the one-sided Mann–Whitney test of after against expected, in the
//!    bad direction, has `p ≤ αₖ`, this look's share of `alpha` (below);
//! 2. **size**: the Hodges–Lehmann relative shift `effect = ratio − 1` (log scale, see
//!    [`mod@crate::hodges_lehmann`]) is at least `min_shift` in the bad direction
//!    (`effect ≤ −0.20` for a drop, `≥ +0.20` for a rise, by default);
//! 3. **certainty about the size**: its 95 % interval lies wholly beyond `min_shift / 2` in
//!    that direction (upper end `≤ −0.10` for a drop, lower end `≥ +0.10` for a rise), so a
//!    noisy window whose estimate happens to cross the line does not fire.
//!
//! Significance alone would flag tiny real shifts on busy metrics; size alone would flag
//! noise on quiet ones. With [`Direction::Either`], the side is the one the estimate points
//! to and the test runs at `αₖ / 2` (two one-sided tests, Bonferroni).
//!
//! # Repeated looks: alpha spending
//!
//! A server evaluates a change at every flush while it watches it, and every evaluation is a
//! new chance of a false alarm: sixty looks at 1 % each would raise far more than 1 % of false
//! verdicts on changes that did nothing. So the `k`-th look (1-based) spends
//!
//! ```text
//! αₖ = alpha · 6 / (π² k²)        Σₖ αₖ = alpha · (6/π²) · Σₖ 1/k² = alpha
//! ```
//!
//! and by the union bound the chance of any false verdict over all looks at one change,
//! however many, stays at most `alpha`. Why this rule: it needs no number of looks fixed in
//! advance (a watch can be extended, a flush can be missed; O'Brien–Fleming bounds need the
//! count), and it spends most early (`α₁ ≈ 0.61·alpha`, `α₂ ≈ 0.15·alpha`), where a big
//! regression shows first. Later looks demand more evidence, which their longer after
//! windows can give: 30 against 60 points reach `p ≈ 10⁻¹⁴`, far below
//! `α₆₀ ≈ 1.7·10⁻⁶` at `alpha = 1 %`. Consecutive looks share most of their data, so the union
//! bound is loose and the real rate is well below `alpha`: in the tests' seeded simulation
//! of noise watched for 18 looks, the test alone (no minimum shift) gave false verdicts on
//! 0.3 % of 1000 changes with spending and 2.4 % at the full alpha on every look. Only looks
//! that had enough points count: the caller advances `look` when
//! [`Comparison::counts_as_look`] (the outcome is neither [`Outcome::TooFewPoints`] nor
//! [`Outcome::InvalidInput`]).
//!
//! # Seasonal baselines
//!
//! [`seasonal_ratio`] takes the same two windows from earlier periods (a day or a week
//! back, say) and returns `exp(median ln(mean afterᵢ / mean beforeᵢ))`: each period's ratio of
//! means (rates average into totals, and a sparse counter's median is often 0), combined by a
//! median on the log scale so that one odd period (an incident last week) does not set the
//! expectation. A period with fewer than [`MIN_BASELINE_POINTS`] values on either side, or
//! a non-positive mean, is skipped; the result names the periods used.

use std::f64::consts::PI;

use serde::{Deserialize, Serialize};

use crate::hodges_lehmann::{hodges_lehmann, log_floor};
use crate::mann_whitney::{mann_whitney, Alternative};

/// A seasonal baseline needs at least this many values on each side.
pub const MIN_BASELINE_POINTS: usize = 3;

/// Which way is bad for a metric.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Direction {
    /// A fall is bad (requests served, orders placed).
    Drop,
    /// A rise is bad (errors, latency).
    Rise,
    /// Either is bad; each side is tested at half the alpha.
    Either,
}

/// Which way the estimate moved.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Movement {
    Drop,
    Rise,
    Flat,
}

/// Why a comparison did or did not find a regression, in the order the rules are checked.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Outcome {
    /// All three rules hold.
    Regression,
    /// The test's p-value is above this look's alpha.
    NotSignificant,
    /// Significant, but the estimated shift is smaller than `min_shift`.
    BelowMinShift,
    /// Large enough, but the 95 % interval reaches back within `min_shift / 2`.
    Uncertain,
    /// A window has fewer than `min_points` values; the look does not count.
    TooFewPoints,
    /// `expected_ratio` is not a positive number or the configuration is invalid (see
    /// [`Config::check`]); the look does not count.
    InvalidInput,
}

/// Detection settings.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Config {
    /// False-verdict budget per change, over all its looks (0 < alpha < 1).
    pub alpha: f64,
    /// The smallest relative shift worth a verdict (0.20 = 20 %).
    pub min_shift: f64,
    /// Each window needs at least this many values.
    pub min_points: usize,
    /// Length of the window before a change (replay and rolling comparisons).
    pub before_window_secs: u32,
    /// How long a change is watched after it (replay).
    pub watch_secs: u32,
}

impl Default for Config {
    fn default() -> Config {
        Config {
            alpha: 0.01,
            min_shift: 0.20,
            min_points: MIN_BASELINE_POINTS,
            before_window_secs: 30 * 60,
            watch_secs: 60 * 60,
        }
    }
}

impl Config {
    /// Whether the settings can be used, and what to fix when not.
    pub fn check(&self) -> Result<(), String> {
        if !(self.alpha > 0.0 && self.alpha < 1.0) {
            return Err(format!(
                "alpha must be between 0 and 1 (exclusive), got {}",
                self.alpha
            ));
        }
        if !(self.min_shift.is_finite() && self.min_shift >= 0.0) {
            return Err(format!(
                "min_shift must be a fraction of 0 or more (0.2 = 20 %), got {}",
                self.min_shift
            ));
        }
        if self.before_window_secs == 0 || self.watch_secs == 0 {
            return Err("before_window_secs and watch_secs must be at least 1".to_string());
        }
        Ok(())
    }
}

/// One evaluation of one change (or one canary), with everything a person needs to judge it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Comparison {
    pub outcome: Outcome,
    /// `outcome == Outcome::Regression`.
    pub is_regression: bool,
    /// Which way the estimate moved.
    pub movement: Movement,
    /// Hodges–Lehmann relative shift of after against expected: `ratio − 1` (−0.5 = halved).
    pub effect: f64,
    /// The 95 % interval of `effect`; −1 and +∞ when the windows are too small for a finite one.
    pub effect_lower: f64,
    pub effect_upper: f64,
    /// One-sided p-value in the tested direction.
    pub p_value: f64,
    /// The alpha this look tested at (`αₖ`, halved for [`Direction::Either`]).
    pub alpha: f64,
    /// Whether the p-value and interval come from exact distributions.
    pub exact: bool,
    /// Values used from each window (finite ones).
    pub before_len: usize,
    pub after_len: usize,
    /// The look this was (1-based).
    pub look: u32,
}

impl Comparison {
    /// A comparison that did not get as far as the statistics.
    fn not_evaluated(outcome: Outcome, before_len: usize, after_len: usize, look: u32) -> Self {
        Comparison {
            outcome,
            is_regression: false,
            movement: Movement::Flat,
            effect: 0.0,
            effect_lower: -1.0,
            effect_upper: f64::INFINITY,
            p_value: 1.0,
            alpha: 0.0,
            exact: false,
            before_len,
            after_len,
            look,
        }
    }

    /// Whether this look counts towards the alpha spent (see the module doc).
    pub fn counts_as_look(&self) -> bool {
        !matches!(self.outcome, Outcome::TooFewPoints | Outcome::InvalidInput)
    }
}

/// `αₖ = alpha · 6 / (π² k²)`: the share of `alpha` that look `k` (1-based; 0 is taken as 1)
/// tests at, so that all looks together spend at most `alpha`.
pub fn look_alpha(alpha: f64, look: u32) -> f64 {
    let k = f64::from(look.max(1));
    alpha * 6.0 / (PI * PI * k * k)
}

/// Compares `after` with `before × expected_ratio` at look `look` (see the module doc for the
/// rules). Values that are not finite are left out of both windows.
pub fn compare(
    before: &[f64],
    after: &[f64],
    expected_ratio: f64,
    direction: Direction,
    config: &Config,
    look: u32,
) -> Comparison {
    let expected: Vec<f64> = before
        .iter()
        .filter(|v| v.is_finite())
        .map(|v| v * expected_ratio)
        .collect();
    let after: Vec<f64> = after.iter().copied().filter(|v| v.is_finite()).collect();
    if !(expected_ratio.is_finite() && expected_ratio > 0.0) {
        return Comparison::not_evaluated(Outcome::InvalidInput, expected.len(), after.len(), look);
    }
    let floor = log_floor(&expected, &after);
    let log = |values: &[f64]| -> Vec<f64> { values.iter().map(|v| v.max(floor).ln()).collect() };
    judge_logs(&log(&expected), &log(&after), direction, config, look)
}

/// The three rules applied to two groups already on the log scale (finite values).
pub(crate) fn judge_logs(
    before: &[f64],
    after: &[f64],
    direction: Direction,
    config: &Config,
    look: u32,
) -> Comparison {
    let (before_len, after_len) = (before.len(), after.len());
    if config.check().is_err() {
        return Comparison::not_evaluated(Outcome::InvalidInput, before_len, after_len, look);
    }
    let min_points = config.min_points.max(1);
    if before_len < min_points || after_len < min_points {
        return Comparison::not_evaluated(Outcome::TooFewPoints, before_len, after_len, look);
    }
    judge_logs_at(
        before,
        after,
        direction,
        config.min_shift,
        look_alpha(config.alpha, look),
        look,
    )
}

/// The three rules on two groups already on the log scale (finite values, enough of them),
/// testing at `spent` (halved for [`Direction::Either`]) rather than at a look's share of
/// a configured alpha.
pub(crate) fn judge_logs_at(
    before: &[f64],
    after: &[f64],
    direction: Direction,
    min_shift: f64,
    spent: f64,
    look: u32,
) -> Comparison {
    let (before_len, after_len) = (before.len(), after.len());
    let Some(shift) = hodges_lehmann(before, after) else {
        return Comparison::not_evaluated(Outcome::InvalidInput, before_len, after_len, look);
    };
    let movement = if shift.estimate < 0.0 {
        Movement::Drop
    } else if shift.estimate > 0.0 {
        Movement::Rise
    } else {
        Movement::Flat
    };
    let (side, alpha) = match direction {
        Direction::Drop => (Alternative::Less, spent),
        Direction::Rise => (Alternative::Greater, spent),
        Direction::Either if movement == Movement::Rise => (Alternative::Greater, spent / 2.0),
        Direction::Either => (Alternative::Less, spent / 2.0),
    };
    let Some(test) = mann_whitney(before, after, side) else {
        return Comparison::not_evaluated(Outcome::InvalidInput, before_len, after_len, look);
    };
    let effect = shift.estimate.exp_m1();
    let effect_lower = shift.lower.exp_m1();
    let effect_upper = shift.upper.exp_m1();
    let outcome = if test.p_value > alpha {
        Outcome::NotSignificant
    } else {
        let (large, certain) = match side {
            Alternative::Less => (effect <= -min_shift, effect_upper <= -min_shift / 2.0),
            Alternative::Greater => (effect >= min_shift, effect_lower >= min_shift / 2.0),
        };
        match (large, certain) {
            (false, _) => Outcome::BelowMinShift,
            (true, false) => Outcome::Uncertain,
            (true, true) => Outcome::Regression,
        }
    };
    Comparison {
        outcome,
        is_regression: outcome == Outcome::Regression,
        movement,
        effect,
        effect_lower,
        effect_upper,
        p_value: test.p_value,
        alpha,
        exact: test.exact,
        before_len,
        after_len,
        look,
    }
}

/// The seasonal expectation and the baselines it came from.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SeasonalRatio {
    /// `expected after / before`, to pass to [`compare`].
    pub ratio: f64,
    /// Indexes of the baselines used, in order.
    pub used: Vec<usize>,
}

/// The seasonal scaling from baselines: `seasonal_before[i]` and `seasonal_after[i]` are the
/// windows of period `i` at the same offsets as the current before and after windows
/// (pairs beyond the shorter list are ignored). `None` when no baseline is usable.
pub fn seasonal_ratio(
    seasonal_before: &[&[f64]],
    seasonal_after: &[&[f64]],
) -> Option<SeasonalRatio> {
    let mut used = Vec::new();
    let mut log_ratios = Vec::new();
    for (index, (before, after)) in seasonal_before.iter().zip(seasonal_after).enumerate() {
        let (Some(before_mean), Some(after_mean)) = (baseline_mean(before), baseline_mean(after))
        else {
            continue;
        };
        if before_mean <= 0.0 || after_mean <= 0.0 {
            continue;
        }
        let log_ratio = (after_mean / before_mean).ln();
        if log_ratio.is_finite() {
            used.push(index);
            log_ratios.push(log_ratio);
        }
    }
    if log_ratios.is_empty() {
        return None;
    }
    log_ratios.sort_by(f64::total_cmp);
    let middle = log_ratios.len() / 2;
    let median = if log_ratios.len() % 2 == 1 {
        log_ratios[middle]
    } else {
        (log_ratios[middle - 1] + log_ratios[middle]) / 2.0
    };
    Some(SeasonalRatio {
        ratio: median.exp(),
        used,
    })
}

/// The mean of a baseline window's finite values, if it has enough of them.
fn baseline_mean(values: &[f64]) -> Option<f64> {
    let finite: Vec<f64> = values.iter().copied().filter(|v| v.is_finite()).collect();
    (finite.len() >= MIN_BASELINE_POINTS).then(|| finite.iter().sum::<f64>() / finite.len() as f64)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// SplitMix64 with Box–Muller: deterministic noise for the simulations.
    struct Noise(u64);

    impl Noise {
        fn next_u64(&mut self) -> u64 {
            self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
            let mut z = self.0;
            z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
            z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
            z ^ (z >> 31)
        }

        /// Uniform in (0, 1].
        fn uniform(&mut self) -> f64 {
            ((self.next_u64() >> 11) + 1) as f64 / (1_u64 << 53) as f64
        }

        fn normal(&mut self) -> f64 {
            let (u1, u2) = (self.uniform(), self.uniform());
            (-2.0 * u1.ln()).sqrt() * (2.0 * PI * u2).cos()
        }

        /// A level with multiplicative noise of the given spread (log-normal).
        fn around(&mut self, level: f64, spread: f64, count: usize) -> Vec<f64> {
            (0..count)
                .map(|_| level * (spread * self.normal()).exp())
                .collect()
        }

        /// Poisson counts with the given mean (Knuth's method; small means only).
        fn counts(&mut self, mean: f64, count: usize) -> Vec<f64> {
            (0..count)
                .map(|_| {
                    let limit = (-mean).exp();
                    let (mut k, mut product) = (0.0, self.uniform());
                    while product > limit {
                        k += 1.0;
                        product *= self.uniform();
                    }
                    k
                })
                .collect()
        }
    }

    fn check(
        before: &[f64],
        after: &[f64],
        expected_ratio: f64,
        direction: Direction,
        config: &Config,
        expect: (Outcome, Movement),
    ) -> Comparison {
        let got = compare(before, after, expected_ratio, direction, config, 1);
        assert_eq!(
            (got.outcome, got.movement),
            expect,
            "{direction:?} {before:?} vs {after:?}: {got:?}"
        );
        assert_eq!(got.is_regression, got.outcome == Outcome::Regression);
        got
    }

    #[test]
    fn verdicts() {
        let mut noise = Noise(1);
        let hundred = noise.around(100.0, 0.05, 30);
        let half = noise.around(50.0, 0.05, 10);
        let ninety = noise.around(90.0, 0.05, 20);
        let same = noise.around(100.0, 0.05, 20);
        let double = noise.around(200.0, 0.05, 5);
        let config = Config::default();
        use Direction::{Drop, Either, Rise};
        use Movement as M;
        use Outcome::*;
        // (before, after, expected ratio, direction, expected answer)
        type Case<'a> = (&'a [f64], &'a [f64], f64, Direction, (Outcome, Movement));
        let cases: &[Case] = &[
            // A clear 50 % drop.
            (&hundred, &half, 1.0, Drop, (Regression, M::Drop)),
            (&hundred, &half, 1.0, Either, (Regression, M::Drop)),
            // Bad only if a rise is bad.
            (&hundred, &half, 1.0, Rise, (NotSignificant, M::Drop)),
            (&hundred, &double, 1.0, Rise, (Regression, M::Rise)),
            (&hundred, &double, 1.0, Drop, (NotSignificant, M::Rise)),
            // A real but small (10 %) drop: significant, below the minimum shift.
            (&hundred, &ninety, 1.0, Drop, (BelowMinShift, M::Drop)),
            // Nothing happened.
            (
                &hundred,
                &same,
                1.0,
                Either,
                (NotSignificant, movement(&hundred, &same, 1.0)),
            ),
            // The season expected the halving (night falls): no regression.
            (
                &hundred,
                &half,
                0.5,
                Drop,
                (NotSignificant, movement(&hundred, &half, 0.5)),
            ),
            // The season expected a doubling and traffic stayed flat: a 50 % drop.
            (&hundred, &same, 2.0, Drop, (Regression, M::Drop)),
            // Too few points, and a nonsense expectation.
            (&hundred, &half[..2], 1.0, Drop, (TooFewPoints, M::Flat)),
            (&hundred[..2], &half, 1.0, Drop, (TooFewPoints, M::Flat)),
            (&hundred, &half, 0.0, Drop, (InvalidInput, M::Flat)),
            (&hundred, &half, f64::NAN, Drop, (InvalidInput, M::Flat)),
        ];
        for &(before, after, expected_ratio, direction, expect) in cases {
            check(before, after, expected_ratio, direction, &config, expect);
        }
        let drop = compare(&hundred, &half, 1.0, Drop, &config, 1);
        assert!((drop.effect + 0.5).abs() < 0.05, "{drop:?}");
        assert!(drop.effect_lower < drop.effect && drop.effect < drop.effect_upper);
        assert_eq!((drop.before_len, drop.after_len), (30, 10));
        assert!(drop.exact);
    }

    /// The movement of the shift estimate, for cases where only its sign is noise.
    fn movement(before: &[f64], after: &[f64], expected_ratio: f64) -> Movement {
        compare(
            before,
            after,
            expected_ratio,
            Direction::Either,
            &Config::default(),
            1,
        )
        .movement
    }

    #[test]
    fn wide_interval_is_uncertain() {
        // A large, significant drop measured on very noisy windows: the interval reaches
        // back past −10 %.
        let mut noise = Noise(5);
        let config = Config {
            alpha: 0.2,
            ..Config::default()
        };
        let mut found = 0;
        for _ in 0..200 {
            let before = noise.around(100.0, 0.8, 12);
            let after = noise.around(60.0, 0.8, 12);
            let got = compare(&before, &after, 1.0, Direction::Drop, &config, 1);
            if got.outcome == Outcome::Uncertain {
                assert!(got.effect <= -0.2 && got.effect_upper > -0.1, "{got:?}");
                found += 1;
            }
        }
        assert!(found > 0, "no uncertain verdict in 200 noisy draws");
    }

    #[test]
    fn tiny_groups_never_significant() {
        // 2 vs 2: the smallest one-sided p is 1/6, whatever the values.
        let config = Config {
            min_points: 2,
            ..Config::default()
        };
        let cases: &[(&[f64], &[f64])] = &[
            (&[100.0, 100.0], &[0.0, 0.0]),
            (&[100.0, 101.0], &[1.0, 2.0]),
            (&[1e9, 2e9], &[1.0, 1.0]),
        ];
        for &(before, after) in cases {
            let got = check(
                before,
                after,
                1.0,
                Direction::Drop,
                &config,
                (Outcome::NotSignificant, Movement::Drop),
            );
            assert!((got.p_value - 1.0 / 6.0).abs() < 1e-12, "{got:?}");
        }
    }

    #[test]
    fn ties_heavy_counts() {
        // Small integer counts per flush: many ties, exact distribution with mid-ranks.
        let before = [
            4.0, 5.0, 3.0, 4.0, 6.0, 4.0, 5.0, 3.0, 4.0, 5.0, 4.0, 6.0, 5.0, 4.0, 3.0,
        ];
        let cases: &[(&[f64], (Outcome, Movement))] = &[
            (
                &[1.0, 2.0, 1.0, 1.0, 2.0, 0.0, 1.0, 2.0],
                (Outcome::Regression, Movement::Drop),
            ),
            (
                &[4.0, 5.0, 4.0, 3.0, 5.0, 4.0, 6.0, 4.0],
                (Outcome::NotSignificant, Movement::Flat),
            ),
            (
                &[3.0, 4.0, 3.0, 4.0, 3.0, 4.0, 3.0, 4.0],
                (Outcome::NotSignificant, Movement::Drop),
            ),
        ];
        for &(after, expect) in cases {
            let got = check(
                &before,
                after,
                1.0,
                Direction::Drop,
                &Config::default(),
                expect,
            );
            assert!(got.exact, "{got:?}");
        }
    }

    #[test]
    fn alpha_spending() {
        let cases = [
            (0, 0.01 * 6.0 / (PI * PI)),
            (1, 0.01 * 6.0 / (PI * PI)),
            (2, 0.01 * 6.0 / (PI * PI) / 4.0),
            (10, 0.01 * 6.0 / (PI * PI) / 100.0),
        ];
        for (look, expected) in cases {
            assert!(
                (look_alpha(0.01, look) - expected).abs() < 1e-18,
                "look {look}"
            );
        }
        let spent: f64 = (1..=1_000_000).map(|k| look_alpha(0.01, k)).sum();
        assert!(spent <= 0.01 && spent > 0.009_999, "{spent}");
    }

    #[test]
    fn invalid_configs() {
        let cases = [
            Config {
                alpha: 0.0,
                ..Config::default()
            },
            Config {
                alpha: 1.0,
                ..Config::default()
            },
            Config {
                alpha: f64::NAN,
                ..Config::default()
            },
            Config {
                min_shift: -0.1,
                ..Config::default()
            },
            Config {
                watch_secs: 0,
                ..Config::default()
            },
        ];
        let values = [1.0, 2.0, 3.0, 4.0];
        for config in cases {
            assert!(config.check().is_err(), "{config:?}");
            let got = compare(&values, &values, 1.0, Direction::Drop, &config, 1);
            assert_eq!(got.outcome, Outcome::InvalidInput, "{config:?}");
        }
        assert_eq!(Config::default().check(), Ok(()));
    }

    #[test]
    fn seasonal_ratios() {
        let ten: &[f64] = &[10.0, 10.0, 10.0];
        let twenty: &[f64] = &[20.0, 20.0, 20.0, f64::NAN];
        let forty: &[f64] = &[40.0, 40.0, 40.0];
        let short: &[f64] = &[10.0, 10.0];
        let zeros: &[f64] = &[0.0, 0.0, 0.0];
        // (seasonal before windows, after windows, expected (ratio, baselines used))
        type Case<'a> = (&'a [&'a [f64]], &'a [&'a [f64]], Option<(f64, &'a [usize])>);
        let cases: &[Case] = &[
            (&[ten], &[twenty], Some((2.0, &[0]))),
            // Two baselines: the geometric mean of 2 and 4.
            (
                &[ten, ten],
                &[twenty, forty],
                Some((8.0_f64.sqrt(), &[0, 1])),
            ),
            // Median of three: the odd period (×4) does not set the expectation.
            (
                &[ten, ten, ten],
                &[twenty, forty, twenty],
                Some((2.0, &[0, 1, 2])),
            ),
            // Too short, or empty, or zero: skipped.
            (&[short, ten], &[twenty, twenty], Some((2.0, &[1]))),
            (&[ten, ten], &[short, forty], Some((4.0, &[1]))),
            (&[zeros, ten], &[twenty, forty], Some((4.0, &[1]))),
            (&[ten], &[zeros], None),
            (&[short], &[twenty], None),
            (&[], &[], None),
        ];
        for &(before, after, expected) in cases {
            let got = seasonal_ratio(before, after);
            match (got, expected) {
                (None, None) => {}
                (Some(got), Some((ratio, used))) => {
                    assert!((got.ratio - ratio).abs() < 1e-12, "{before:?}: {got:?}");
                    assert_eq!(got.used, used, "{before:?}");
                }
                (got, expected) => panic!("{before:?} {after:?}: {got:?}, expected {expected:?}"),
            }
        }
    }

    /// Noise only, watched like a server would, over a shortened watch (20 points before,
    /// then a look at every flush from 3 to 20 points after: 18 looks). Returns how many of
    /// `runs` changes got a false verdict; `spend` false tests every look at the full alpha.
    fn false_verdicts(
        seed: u64,
        runs: usize,
        config: &Config,
        spend: bool,
        draw: &dyn Fn(&mut Noise, usize) -> Vec<f64>,
    ) -> usize {
        let mut noise = Noise(seed);
        let mut alarms = 0;
        for _ in 0..runs {
            let before = draw(&mut noise, 20);
            let after = draw(&mut noise, 20);
            let mut look = 0;
            for len in 1..=after.len() {
                let next = if spend { look + 1 } else { 1 };
                let got = compare(&before, &after[..len], 1.0, Direction::Either, config, next);
                if got.counts_as_look() {
                    look += 1;
                }
                if got.is_regression {
                    alarms += 1;
                    break;
                }
            }
        }
        alarms
    }

    fn rough(noise: &mut Noise, count: usize) -> Vec<f64> {
        noise.around(100.0, 0.5, count)
    }

    fn sparse(noise: &mut Noise, count: usize) -> Vec<f64> {
        noise.counts(3.0, count)
    }

    #[test]
    fn noise_is_not_a_regression() {
        // Noisy levels (±50 % swings), 1000 changes watched for 18 looks each.
        let alarms = false_verdicts(12, 1000, &Config::default(), true, &rough);
        assert!(alarms <= 10, "{alarms} false verdicts in 1000");
    }

    #[test]
    fn sparse_noise_is_not_a_regression() {
        // Sparse counts (mean 3 per flush, heavily tied: the exact test with mid-ranks).
        let alarms = false_verdicts(13, 1000, &Config::default(), true, &sparse);
        assert!(alarms <= 10, "{alarms} false verdicts in 1000");
    }

    #[test]
    fn alpha_spending_bounds_false_verdicts() {
        // The test alone (no minimum shift): alpha spending keeps the false-verdict rate of
        // a change watched for 18 looks within alpha (1 %, so about 10 of 1000, with room
        // for the simulation's own error)...
        let test_only = Config {
            min_shift: 0.0,
            ..Config::default()
        };
        let spent = false_verdicts(21, 1000, &test_only, true, &rough);
        assert!(
            spent <= 15,
            "{spent} false verdicts in 1000 with alpha spending"
        );
        // ...where testing every look at the full alpha would not.
        let unspent = false_verdicts(21, 1000, &test_only, false, &rough);
        assert!(
            unspent > 15,
            "only {unspent} false verdicts in 1000 without spending"
        );
    }

    #[test]
    fn clear_drop_is_found_early() {
        let mut noise = Noise(31);
        let runs = 200;
        let mut first_looks = Vec::new();
        for _ in 0..runs {
            let before = noise.around(100.0, 0.1, 30);
            let after = noise.around(50.0, 0.1, 30);
            let first = (3..=after.len()).zip(1..).find(|&(len, look)| {
                compare(
                    &before,
                    &after[..len],
                    1.0,
                    Direction::Drop,
                    &Config::default(),
                    look,
                )
                .is_regression
            });
            first_looks.push(first.map(|(len, _)| len));
        }
        // Found in every run, within the first few flushes with enough points.
        assert!(
            first_looks.iter().all(|len| matches!(len, Some(3..=5))),
            "{first_looks:?}"
        );
    }
}
