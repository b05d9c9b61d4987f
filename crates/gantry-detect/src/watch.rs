//! The always-on watch: has a key metric regressed in the last few minutes, change or no
//! change?
//!
//! [`crate::verdict`] judges a metric after a change; a shift nobody announced (a
//! dependency failing, a quota hit, a change made outside Gantry) goes unseen there. The
//! watch runs at every flush on every key metric and asks whether the newest slots lie
//! beyond what the metric's own recent past, moved along its season, expects.
//!
//! # One evaluation
//!
//! At `now`, for each recent window of `k` slots (the configured [`WatchConfig::windows`],
//! 1, 2, 5, 10 and 15 minutes of 10 s slots by default; only slots that ended by `now`
//! count):
//!
//! - **after**: the values of the window `[now − k·step, now)`; it needs at least
//!   `min_present` of its slots (and [`MIN_BASELINE_POINTS`]);
//! - **reference**: the values of the `reference_secs` before the window; for a window of
//!   fewer than [`EXACT_BELOW`] slots only its newest [`EXACT_MAX`] values, so the rank test
//!   is exact (a handful of slots against hundreds would only get the normal approximation,
//!   which cannot reach small p-values: 6 slots all below 180 others get `p ≈ 1.6·10⁻⁵`
//!   from it, while the exact test of 6 against 50 gives `1/C(56, 6) ≈ 3.1·10⁻⁸`);
//! - **seasonal drift**: each seasonal baseline (the same times a day and a week back, as
//!   [`Season`]s, at whatever resolution the store keeps them) is smoothed by a quadratic
//!   in time, fitted by least squares to its slots (at their centres) around the
//!   baseline's windows, from `season_margin_secs` before the earliest reference to
//!   `season_margin_secs` after `now`. The reference is expected to have moved by
//!   `Δₚ = ln(f̄ₚ(after) / f̄ₚ(reference))`, `f̄` the curve's mean over the slots of each
//!   group. Only the shape of the season is used, never its level (last week's traffic
//!   sets nothing but the drift), and the curve follows a daily trough or peak that a
//!   straight line would cut. The drift used is the one **least favourable to a verdict**
//!   of no drift at all and each baseline's (for a drop, the lowest of 0 and every `Δₚ`;
//!   for a rise, the highest), and `expected = reference × e^Δ`. So the season only ever
//!   makes a verdict harder: a falling evening excuses a fall, but a rising morning does
//!   not turn a flat metric into a drop; a baseline that holds an incident of its own (a
//!   drop that ended a day ago reads as a steep rise) cannot make a false verdict; and a
//!   sparse count (values of 0, 1, 2) is never scaled in the direction that would break
//!   its ties in favour of a verdict (a reference of 1s scaled to 0.99 would rank below
//!   every 1 after it: a "rise" from nothing). A baseline needs [`MIN_CURVE_POINTS`]
//!   slots and positive fitted means.
//!
//! The window is then judged by the rules of [`crate::verdict`] (the one-sided
//! Mann–Whitney test of after against expected on the log scale, the Hodges–Lehmann shift
//! at least `min_shift`, its 95 % interval beyond `min_shift / 2`), at the alpha below.
//! The smallest window that finds a regression gives the verdict, so a large shift is
//! reported from a minute of data and a small one waits for the evidence of a longer
//! window. A cheap screen comes first and is part of the rule: the ratio of the window's
//! mean to the expected mean must already be beyond `screen · min_shift` in the tested
//! direction, and their difference beyond `screen` times the normal quantile of the
//! test's alpha, in standard errors from the reference's spread (the rank test only runs
//! when both hold; it seldom could pass otherwise, and the watch stays at about a
//! microsecond an evaluation).
//!
//! **Drop to zero**, for metrics of counted events ([`Watched::counts`]): the rule of
//! [`crate::zero`] on the last two slots, with the expected events per slot from the
//! reference before them, moved by the seasonal drift: it fires within two flushes, and
//! only when at least seven events per slot were expected.
//!
//! # Multiple testing: a budget per metric and day
//!
//! A watch tests every flush of every day: at a 10 s step, 8,640 evaluations a day, each
//! with several windows. The rule: **one day's tests share `alpha_per_day`** (Bonferroni),
//!
//! ```text
//! α_test = alpha_per_day · step / 86 400 / windows      (10 s, 5 windows, 0.003: 6.9·10⁻⁸)
//! ```
//!
//! so by the union bound the expected number of false verdicts from noise is at most
//! `alpha_per_day` per metric and day, whatever the step. Consecutive evaluations share
//! almost all their data, and the windows are nested, so the bound is loose: the real rate
//! is far lower. The drop-to-zero rule adds at most `e⁻¹⁴ ≈ 8.3·10⁻⁷` per evaluation
//! (under 1 % a day at 10 s, see [`crate::zero`]). [`Direction::Either`] tests each side at
//! half the alpha.
//!
//! # One verdict per episode
//!
//! A shift stays visible for as long as the reference has not caught up with it, so once a
//! metric got a verdict (from the watch or from a change's comparison: the caller passes
//! the newest in [`Watched::last_verdict_at`]), the watch is quiet for `hold_secs`. By then
//! the reference lies within the new level and the shift is no longer news.
//!
//! # Calling it
//!
//! At every flush, for each key metric (`step` its finest stored step, 10 s):
//!
//! ```text
//! recent  = read [now − config.recent_secs(step) − step, now)            (10 s slots)
//! (b, a)  = config.season_span(step)
//! seasons = for back in [1 day, 7 days]: read [now − back − b, now − back + a)
//!           (whatever resolution the store answers; Season { back_secs, step, points })
//! watch(&Watched { recent, step, seasons, now, direction, counts, last_verdict_at }, &config)
//! ```
//!
//! Counts go in as per-second rates ([`crate::series::to_rate`], each read by its own
//! step). A slot still filling is left out by itself (`t + step > now`). On `Some`,
//! record the verdict and keep its time as the metric's `last_verdict_at`; so does a
//! change's regression on that metric.
//!
//! The defaults were tuned on the training seeds (0–9) of `scripts/bench/detect`
//! (docs/bench/detect.md); the report seeds (100–109) were not used for tuning.

use std::num::NonZeroU32;

use serde::{Deserialize, Serialize};

use crate::hodges_lehmann::log_floor;
use crate::mann_whitney::{mann_whitney, Alternative, EXACT_BELOW, EXACT_MAX};
use crate::series::Point;
use crate::verdict::{
    judge_logs_at, Comparison, Direction, Movement, Outcome, MIN_BASELINE_POINTS,
};
use crate::zero::{dropped_to_zero, ZERO_FLUSHES};

/// Seconds in a day, the period `alpha_per_day` is spent over.
pub const DAY_SECS: f64 = 86_400.0;

/// A seasonal curve needs at least this many slots.
pub const MIN_CURVE_POINTS: usize = 5;

/// Watch settings. The defaults came from the training seeds of `scripts/bench/detect`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct WatchConfig {
    /// Expected false verdicts per metric and day from noise, at most (union bound over
    /// every test of a day; 0 < alpha_per_day < 1).
    pub alpha_per_day: f64,
    /// The smallest relative shift worth a verdict (0.15 = 15 %).
    pub min_shift: f64,
    /// The recent windows, in slots of the recent series' step, smallest first.
    pub windows: Vec<u32>,
    /// How long a reference is taken before each window.
    pub reference_secs: u32,
    /// The seasonal curves are fitted from this long before the earliest reference to
    /// this long after `now`.
    pub season_margin_secs: u32,
    /// After a verdict on the metric, none for this long.
    pub hold_secs: u32,
    /// The share of a window's (and of its reference's) slots that must have a value.
    pub min_present: f64,
    /// The screen: the ratio of means must be beyond `screen · min_shift`, and their
    /// difference beyond `screen` times the test's normal quantile in standard errors,
    /// before the rank test runs.
    pub screen: f64,
}

impl Default for WatchConfig {
    fn default() -> WatchConfig {
        // Tuned on the training seeds 0–9 of scripts/bench/detect (docs/bench/detect.md):
        // alpha_per_day 0.01 → 0.003 and a fifth window (10 minutes) halved the false
        // verdicts there (65 → 33) and found as many events; min_shift, other windows and
        // the reference's length mattered little.
        WatchConfig {
            alpha_per_day: 0.003,
            min_shift: 0.15,
            windows: vec![6, 12, 30, 60, 90],
            reference_secs: 30 * 60,
            season_margin_secs: 15 * 60,
            hold_secs: 60 * 60,
            min_present: 0.5,
            screen: 0.5,
        }
    }
}

impl WatchConfig {
    /// Whether the settings can be used, and what to fix when not.
    pub fn check(&self) -> Result<(), String> {
        if !(self.alpha_per_day > 0.0 && self.alpha_per_day < 1.0) {
            return Err(format!(
                "alpha_per_day must be between 0 and 1 (exclusive), got {}",
                self.alpha_per_day
            ));
        }
        if !(self.min_shift.is_finite() && self.min_shift >= 0.0) {
            return Err(format!(
                "min_shift must be a fraction of 0 or more (0.15 = 15 %), got {}",
                self.min_shift
            ));
        }
        if self.windows.is_empty() || self.windows.contains(&0) {
            return Err("windows must list at least one window of 1 slot or more".to_string());
        }
        if self.reference_secs == 0 {
            return Err("reference_secs must be at least 1".to_string());
        }
        if !(0.0..=1.0).contains(&self.min_present) || !self.screen.is_finite() {
            return Err(format!(
                "min_present must be a share between 0 and 1 (got {}), screen a number (got {})",
                self.min_present, self.screen
            ));
        }
        Ok(())
    }

    /// The alpha of one test (one window at one evaluation) for a series of `step`
    /// seconds: `alpha_per_day · step / 86 400 / windows` (see the module doc).
    pub fn test_alpha(&self, step: NonZeroU32) -> f64 {
        let evaluations_per_day = DAY_SECS / f64::from(step.get());
        self.alpha_per_day / evaluations_per_day / self.windows.len().max(1) as f64
    }

    /// How far back from `now` the recent series must reach: the largest window and its
    /// reference.
    pub fn recent_secs(&self, step: NonZeroU32) -> i64 {
        let largest = i64::from(self.windows.iter().copied().max().unwrap_or(1));
        largest * i64::from(step.get()) + i64::from(self.reference_secs)
    }

    /// The span a seasonal baseline must cover, relative to `now − back`: from
    /// `recent_secs + season_margin_secs` before it to `season_margin_secs` after.
    pub fn season_span(&self, step: NonZeroU32) -> (i64, i64) {
        let margin = i64::from(self.season_margin_secs);
        (self.recent_secs(step) + margin, margin)
    }
}

/// A seasonal baseline: the metric `back_secs` earlier (a day, a week), at whatever
/// resolution the store keeps it for that age, covering [`WatchConfig::season_span`]
/// around `now − back_secs`.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Season<'a> {
    pub back_secs: i64,
    /// The step of `points`: slot `t` covers `[t, t + step)`.
    pub step: NonZeroU32,
    /// Slots, oldest first, in the same unit as the recent values (per-second rates for
    /// counts); NaN for missing.
    pub points: &'a [Point],
}

/// What the watch is given at one evaluation of one metric.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Watched<'a> {
    /// The metric's slots at its finest stored step, oldest first, covering at least
    /// [`WatchConfig::recent_secs`] before `now` (NaN for missing). Counts should be
    /// per-second rates ([`crate::series::to_rate`]).
    pub recent: &'a [Point],
    /// The step of `recent`: slot `t` covers `[t, t + step)`.
    pub step: NonZeroU32,
    /// Seasonal baselines (typically a day and a week back).
    pub seasons: &'a [Season<'a>],
    /// The evaluation time: slots that ended by now (`t + step ≤ now`) are used.
    pub now: i64,
    pub direction: Direction,
    /// The values are rates of counted events, `events per slot / step`: the drop-to-zero
    /// rule applies.
    pub counts: bool,
    /// The newest verdict on this metric from anything (the watch, a change's comparison).
    pub last_verdict_at: Option<i64>,
}

/// Which rule gave a watch verdict.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum WatchRule {
    /// A recent window against its seasonally moved reference.
    Shift,
    /// Two empty slots where at least seven events per slot were expected.
    Zero,
}

/// A regression the watch found, with what it was judged against.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct WatchVerdict {
    pub rule: WatchRule,
    /// The newest slot used (its start).
    pub at: i64,
    /// The start of the recent window.
    pub from: i64,
    /// Length of the recent window.
    pub window_secs: i64,
    /// `e^Δ`: the seasonal drift the reference was scaled by.
    pub expected_ratio: f64,
    /// The baselines that gave a drift (their `back_secs`), in the order given.
    pub baselines: Vec<i64>,
    /// Effect, interval, p-value, the alpha tested at and the group sizes (`before_len` is
    /// the reference, `after_len` the window); `look` is 1. For [`WatchRule::Zero`] the
    /// effect is −100 %, the interval a point and the p-value the Poisson chance
    /// `e^(−2λ)` of two empty slots.
    pub comparison: Comparison,
}

/// Sums over a group of slots: count, Σ value, Σ value², Σ x, Σ x² (`x` the slot's
/// centre relative to `now`, in hours).
#[derive(Debug, Clone, Copy, Default, PartialEq)]
struct Group {
    n: usize,
    sum: f64,
    sum_squares: f64,
    x: f64,
    x_squares: f64,
}

impl Group {
    fn minus(&self, other: &Group) -> Group {
        Group {
            n: self.n - other.n,
            sum: self.sum - other.sum,
            sum_squares: self.sum_squares - other.sum_squares,
            x: self.x - other.x,
            x_squares: self.x_squares - other.x_squares,
        }
    }

    fn mean(&self) -> f64 {
        self.sum / self.n as f64
    }

    /// The spread of the values (population variance).
    fn variance(&self) -> f64 {
        let mean = self.mean();
        (self.sum_squares / self.n as f64 - mean * mean).max(0.0)
    }

    /// Means of `x` and `x²`.
    fn times(&self) -> (f64, f64) {
        (self.x / self.n as f64, self.x_squares / self.n as f64)
    }
}

/// One window's groups, gathered in one pass from the newest slot back.
#[derive(Debug, Clone, Copy)]
struct Pair {
    /// The window's start.
    from: i64,
    /// The oldest time its reference may reach.
    reference_from: i64,
    /// The most values its reference may hold.
    cap: usize,
    /// All values from the newest back to the window's start, once passed.
    after: Option<Group>,
    reference: Option<Group>,
}

/// Gathers the after and reference groups of every pair from the finite slots of
/// `points` before `until`, newest first, stopping once every reference is complete.
fn gather(points: &[Point], step: i64, now: i64, until: i64, pairs: &mut [Pair]) {
    let end = points.partition_point(|p| p.t < until);
    // Where the walk changes something: a window's start (the after group is complete
    // and its reference opens) or a reference's start (it is complete), newest first.
    let mut stops: Vec<(i64, usize, bool)> = pairs
        .iter()
        .enumerate()
        .flat_map(|(i, p)| [(p.from, i, true), (p.reference_from, i, false)])
        .collect();
    stops.sort_by_key(|stop| std::cmp::Reverse(stop.0));
    let mut next = 0;
    let mut next_stop = stops.first().map_or(i64::MIN, |s| s.0);
    // References that close on a count: (count at which they close, pair).
    let mut counted: Vec<(usize, usize)> = Vec::new();
    let mut close_at = usize::MAX;
    // The running group, in locals so the loop keeps them in registers.
    let (mut n, mut sum, mut squares, mut xs, mut x_squares) = (0_usize, 0.0, 0.0, 0.0, 0.0);
    let offset = (step as f64 / 2.0 - now as f64) / 3600.0;
    let group = |n, sum, sum_squares, x, x_squares| Group {
        n,
        sum,
        sum_squares,
        x,
        x_squares,
    };
    for p in points[..end].iter().rev() {
        if !p.v.is_finite() {
            continue;
        }
        if p.t < next_stop {
            let all = group(n, sum, squares, xs, x_squares);
            while next < stops.len() && p.t < stops[next].0 {
                let (_, i, opens) = stops[next];
                let pair = &mut pairs[i];
                if opens {
                    pair.after = Some(all);
                    if pair.cap != usize::MAX {
                        counted.push((n + pair.cap, i));
                        close_at = close_at.min(n + pair.cap);
                    }
                } else if let (Some(after), None) = (&pair.after, &pair.reference) {
                    pair.reference = Some(all.minus(after));
                }
                next += 1;
            }
            if next == stops.len() {
                break;
            }
            next_stop = stops[next].0;
        }
        let x = p.t as f64 * (1.0 / 3600.0) + offset;
        n += 1;
        sum += p.v;
        squares += p.v * p.v;
        xs += x;
        x_squares += x * x;
        if n >= close_at {
            let all = group(n, sum, squares, xs, x_squares);
            for &(at, i) in &counted {
                let pair = &mut pairs[i];
                if let (true, Some(after), None) = (n >= at, &pair.after, &pair.reference) {
                    pair.reference = Some(all.minus(after));
                }
            }
            counted.retain(|&(at, _)| n < at);
            close_at = counted
                .iter()
                .map(|&(at, _)| at)
                .min()
                .unwrap_or(usize::MAX);
        }
    }
    let all = group(n, sum, squares, xs, x_squares);
    for pair in pairs.iter_mut() {
        let after = *pair.after.get_or_insert(all);
        pair.reference.get_or_insert(all.minus(&after));
    }
}

/// The finite values of `points` in `[from, until)`; with `newest`, only the last that many.
fn values_between(points: &[Point], from: i64, until: i64, newest: usize) -> Vec<f64> {
    let end = points.partition_point(|p| p.t < until);
    let mut values: Vec<f64> = points[..end]
        .iter()
        .rev()
        .take_while(|p| p.t >= from)
        .map(|p| p.v)
        .filter(|v| v.is_finite())
        .take(newest)
        .collect();
    values.reverse();
    values
}

/// The centre of slot `t` relative to `origin`, in hours.
fn hours(t: i64, step: i64, origin: i64) -> f64 {
    ((t - origin) as f64 + step as f64 / 2.0) / 3600.0
}

/// A season's level as `a + b·x + c·x²`, `x` in hours from the season's `now`.
#[derive(Debug, Clone, Copy, PartialEq)]
struct Curve {
    back: i64,
    coefficients: [f64; 3],
}

impl Curve {
    /// The least-squares quadratic through the finite slots of `season` in
    /// `[now − back − before, now − back + after)`, when it has [`MIN_CURVE_POINTS`].
    fn fit(season: &Season<'_>, now: i64, (before, after): (i64, i64)) -> Option<Curve> {
        let origin = now.checked_sub(season.back_secs)?;
        let step = i64::from(season.step.get());
        let points = season.points;
        let start = points.partition_point(|p| p.t < origin - before);
        // Σ xᵏ for k = 0..4 and Σ xᵏ·v for k = 0..2.
        let (mut xs, mut xv) = ([0.0_f64; 5], [0.0_f64; 3]);
        for p in points[start..].iter().take_while(|p| p.t < origin + after) {
            if !p.v.is_finite() {
                continue;
            }
            let x = hours(p.t, step, origin);
            let mut power = 1.0;
            for k in 0..5 {
                xs[k] += power;
                if k < 3 {
                    xv[k] += power * p.v;
                }
                power *= x;
            }
        }
        if xs[0] < MIN_CURVE_POINTS as f64 {
            return None;
        }
        let matrix = [
            [xs[0], xs[1], xs[2]],
            [xs[1], xs[2], xs[3]],
            [xs[2], xs[3], xs[4]],
        ];
        let coefficients = solve3(matrix, xv)?;
        Some(Curve {
            back: season.back_secs,
            coefficients,
        })
    }

    /// The curve's mean over the slots of a group.
    fn mean(&self, group: &Group) -> f64 {
        let [a, b, c] = self.coefficients;
        let (x, x2) = group.times();
        a + b * x + c * x2
    }

    /// `f̄(after) / f̄(reference)`, when both are positive.
    fn drift(&self, reference: &Group, after: &Group) -> Option<f64> {
        let (r, a) = (self.mean(reference), self.mean(after));
        (r > 0.0 && a > 0.0)
            .then(|| a / r)
            .filter(|d| d.is_finite())
    }
}

/// Solves `m·c = v` by Cramer's rule; `None` when `m` is (nearly) singular.
fn solve3(m: [[f64; 3]; 3], v: [f64; 3]) -> Option<[f64; 3]> {
    let det = |m: &[[f64; 3]; 3]| {
        m[0][0] * (m[1][1] * m[2][2] - m[1][2] * m[2][1])
            - m[0][1] * (m[1][0] * m[2][2] - m[1][2] * m[2][0])
            + m[0][2] * (m[1][0] * m[2][1] - m[1][1] * m[2][0])
    };
    let d = det(&m);
    let scale = m[0][0] * m[1][1] * m[2][2];
    if d.is_nan() || d.abs() <= 1e-12 * scale.abs() {
        return None;
    }
    let mut out = [0.0; 3];
    for (column, value) in out.iter_mut().enumerate() {
        let mut replaced = m;
        for row in 0..3 {
            replaced[row][column] = v[row];
        }
        *value = det(&replaced) / d;
    }
    out.iter().all(|c| c.is_finite()).then_some(out)
}

/// The drift (as a ratio, `e^Δ`) least favourable to a verdict on `side`, of no drift at
/// all and each curve's.
fn drift(curves: &[Curve], side: Alternative, reference: &Group, after: &Group) -> f64 {
    let drifts = curves.iter().filter_map(|c| c.drift(reference, after));
    match side {
        Alternative::Less => drifts.fold(1.0, f64::min),
        Alternative::Greater => drifts.fold(1.0, f64::max),
    }
}

/// Judges the newest slots of a metric (see the module doc). `None` when nothing
/// regressed, when the metric is in a verdict's hold, or when the input or the settings
/// cannot be used.
pub fn watch(input: &Watched<'_>, config: &WatchConfig) -> Option<WatchVerdict> {
    config.check().ok()?;
    let now = input.now;
    if let Some(last) = input.last_verdict_at {
        if last <= now && now - last < i64::from(config.hold_secs) {
            return None;
        }
    }
    let step = i64::from(input.step.get());
    let reference = i64::from(config.reference_secs);
    // Slots that ended by now: t + step ≤ now.
    let until = now - step + 1;
    let span = config.season_span(input.step);
    let curves: Vec<Curve> = input
        .seasons
        .iter()
        .filter_map(|season| Curve::fit(season, now, span))
        .collect();
    let alpha = config.test_alpha(input.step);
    if input.counts && input.direction != Direction::Rise {
        if let Some(found) = zero_rule(input, config, &curves, alpha) {
            return Some(found);
        }
    }
    let mut pairs: Vec<Pair> = config
        .windows
        .iter()
        .map(|&k| {
            let from = now - i64::from(k) * step;
            Pair {
                from,
                reference_from: from - reference,
                cap: if (k as usize) < EXACT_BELOW {
                    EXACT_MAX
                } else {
                    usize::MAX
                },
                after: None,
                reference: None,
            }
        })
        .collect();
    gather(input.recent, step, now, until, &mut pairs);
    let sides: &[(Alternative, f64)] = match input.direction {
        Direction::Drop => &[(Alternative::Less, 1.0)],
        Direction::Rise => &[(Alternative::Greater, 1.0)],
        Direction::Either => &[(Alternative::Less, 0.5), (Alternative::Greater, 0.5)],
    };
    // The normal quantile of each side's alpha, for the screen.
    let z_alpha = upper_quantile(alpha * sides[0].1);
    for (pair, &k) in pairs.iter().zip(&config.windows) {
        let (Some(after), Some(before)) = (pair.after, pair.reference) else {
            continue;
        };
        let reference_slots = (reference / step).min(pair.cap as i64);
        let needed_after = (config.min_present * f64::from(k)).ceil() as usize;
        let needed_before = (config.min_present * reference_slots as f64).ceil() as usize;
        if after.n < MIN_BASELINE_POINTS.max(needed_after)
            || before.n < MIN_BASELINE_POINTS.max(needed_before)
            || before.mean().is_nan()
            || before.mean() <= 0.0
        {
            continue;
        }
        for &(side, share) in sides {
            let ratio = drift(&curves, side, &before, &after);
            if !screen(config, side, z_alpha, ratio, &before, &after) {
                continue;
            }
            let spent = alpha * share;
            if let Some(comparison) =
                judge_window(input.recent, pair, until, ratio, side, config, spent)
            {
                return Some(WatchVerdict {
                    rule: WatchRule::Shift,
                    at: input.recent[..input.recent.partition_point(|p| p.t < until)]
                        .iter()
                        .rev()
                        .find(|p| p.v.is_finite())
                        .map_or(pair.from, |p| p.t),
                    from: pair.from,
                    window_secs: i64::from(k) * step,
                    expected_ratio: ratio,
                    baselines: curves.iter().map(|c| c.back).collect(),
                    comparison,
                });
            }
        }
    }
    None
}

/// The rank rules on one window against its reference scaled by `ratio`: the comparison
/// when it is a regression.
fn judge_window(
    points: &[Point],
    pair: &Pair,
    until: i64,
    ratio: f64,
    side: Alternative,
    config: &WatchConfig,
    spent: f64,
) -> Option<Comparison> {
    let expected: Vec<f64> = values_between(points, pair.reference_from, pair.from, pair.cap)
        .into_iter()
        .map(|v| v * ratio)
        .collect();
    let after = values_between(points, pair.from, until, usize::MAX);
    let floor = log_floor(&expected, &after);
    let log = |values: &[f64]| -> Vec<f64> { values.iter().map(|v| v.max(floor).ln()).collect() };
    let (expected, after) = (log(&expected), log(&after));
    let test = mann_whitney(&expected, &after, side)?;
    if test.p_value > spent {
        return None;
    }
    let tested = match side {
        Alternative::Less => Direction::Drop,
        Alternative::Greater => Direction::Rise,
    };
    let comparison = judge_logs_at(&expected, &after, tested, config.min_shift, spent, 1);
    comparison.is_regression.then_some(comparison)
}

/// The screen (see the module doc): the ratio of the window's mean to the expected mean
/// is beyond `screen · min_shift`, and their difference is beyond `screen` times the
/// normal quantile of the test's alpha, in standard errors of the reference's spread.
fn screen(
    config: &WatchConfig,
    side: Alternative,
    z_alpha: f64,
    ratio: f64,
    before: &Group,
    after: &Group,
) -> bool {
    let expected = before.mean() * ratio;
    let moved = after.mean() / expected;
    let error =
        (before.variance() * ratio * ratio * (1.0 / after.n as f64 + 1.0 / before.n as f64)).sqrt();
    let z = (after.mean() - expected) / error;
    let (shift, threshold) = (config.screen * config.min_shift, config.screen * z_alpha);
    match side {
        Alternative::Less => moved <= (-shift).exp() && (z.is_nan() || z <= -threshold),
        Alternative::Greater => moved >= shift.exp() && (z.is_nan() || z >= threshold),
    }
}

/// `z` with `P(Z ≥ z) ≈ p` (p in (0, ½]), by Abramowitz and Stegun's 26.2.23 (error
/// below 4.5·10⁻⁴): enough for a screen.
fn upper_quantile(p: f64) -> f64 {
    let t = (-2.0 * p.clamp(1e-300, 0.5).ln()).sqrt();
    t - (2.515_517 + 0.802_853 * t + 0.010_328 * t * t)
        / (1.0 + 1.432_788 * t + 0.189_269 * t * t + 0.001_308 * t * t * t)
}

/// Drop to zero over the last two slots (see the module doc).
fn zero_rule(
    input: &Watched<'_>,
    config: &WatchConfig,
    curves: &[Curve],
    alpha: f64,
) -> Option<WatchVerdict> {
    let step = i64::from(input.step.get());
    let flushes = ZERO_FLUSHES as i64;
    let from = input.now - flushes * step;
    let until = input.now - step + 1;
    // The last two slots, both present and empty: a missing slot is not an empty one.
    let recent = values_between(input.recent, from, until, usize::MAX);
    if recent.len() != ZERO_FLUSHES || !recent.iter().all(|&v| v == 0.0) {
        return None;
    }
    let mut pair = [Pair {
        from,
        reference_from: from - i64::from(config.reference_secs),
        cap: usize::MAX,
        after: None,
        reference: None,
    }];
    gather(input.recent, step, input.now, until, &mut pair);
    let (Some(after), Some(before)) = (pair[0].after, pair[0].reference) else {
        return None;
    };
    if before.n < MIN_BASELINE_POINTS {
        return None;
    }
    let ratio = drift(curves, Alternative::Less, &before, &after);
    let expected_events = before.mean() * ratio * step as f64;
    let counts: Vec<f64> = recent.iter().map(|v| v * step as f64).collect();
    if !dropped_to_zero(expected_events, &counts) {
        return None;
    }
    Some(WatchVerdict {
        rule: WatchRule::Zero,
        at: from + (flushes - 1) * step,
        from,
        window_secs: flushes * step,
        expected_ratio: ratio,
        baselines: curves.iter().map(|c| c.back).collect(),
        comparison: Comparison {
            outcome: Outcome::Regression,
            is_regression: true,
            movement: Movement::Drop,
            effect: -1.0,
            effect_lower: -1.0,
            effect_upper: -1.0,
            p_value: (-(flushes as f64) * expected_events).exp(),
            alpha,
            exact: true,
            before_len: before.n,
            after_len: ZERO_FLUSHES,
            look: 1,
        },
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// SplitMix64 with Box–Muller, and Knuth's Poisson: deterministic noise.
    struct Noise(u64);

    impl Noise {
        fn uniform(&mut self) -> f64 {
            self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
            let mut z = self.0;
            z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
            z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
            (((z ^ (z >> 31)) >> 11) + 1) as f64 / (1_u64 << 53) as f64
        }

        fn normal(&mut self) -> f64 {
            let (u1, u2) = (self.uniform(), self.uniform());
            (-2.0 * u1.ln()).sqrt() * (2.0 * std::f64::consts::PI * u2).cos()
        }

        fn poisson(&mut self, mean: f64) -> f64 {
            let limit = (-mean).exp();
            let (mut k, mut product) = (0.0, self.uniform());
            while product > limit {
                k += 1.0;
                product *= self.uniform();
            }
            k
        }
    }

    const NOW: i64 = 1_700_000_000;
    const STEP: i64 = 10;

    fn step() -> NonZeroU32 {
        NonZeroU32::new(STEP as u32).expect("non-zero")
    }

    /// What a series looks like: its level at `t` (seconds before now, negative) and
    /// its noise.
    #[derive(Clone, Copy)]
    enum Shape {
        /// Level 100 with 5 % log-normal noise, times `factor` in the last `secs`.
        Shifted { factor: f64, secs: i64 },
        /// Level 100, falling linearly to `end` (a multiple) at now over the last hour.
        Ramp { end: f64 },
        /// Poisson counts per slot with this mean, as per-second rates, zero in the last
        /// `secs`.
        Counts { mean: f64, zero_secs: i64 },
    }

    /// One hour of 10 s slots ending at `NOW` (the last slot ended at `NOW`).
    fn series(shape: Shape, seed: u64) -> Vec<Point> {
        let mut noise = Noise(seed);
        (0..360)
            .map(|i| {
                let t = NOW - 3600 + i * STEP;
                let before_now = NOW - t;
                let v = match shape {
                    Shape::Shifted { factor, secs } => {
                        let level = if before_now <= secs {
                            100.0 * factor
                        } else {
                            100.0
                        };
                        level * (0.05 * noise.normal()).exp()
                    }
                    Shape::Ramp { end } => {
                        let level =
                            100.0 * (1.0 + (end - 1.0) * (3600 - before_now) as f64 / 3600.0);
                        level * (0.05 * noise.normal()).exp()
                    }
                    Shape::Counts { mean, zero_secs } => {
                        let count = noise.poisson(mean);
                        if before_now <= zero_secs {
                            0.0
                        } else {
                            count / STEP as f64
                        }
                    }
                };
                Point::new(t, v)
            })
            .collect()
    }

    /// A day-back season at 1-minute slots with the same shape as `Ramp { end }` (or flat
    /// for 1.0), extending past its `now`.
    fn season(end: f64) -> Vec<Point> {
        season_at(NOW, end)
    }

    fn season_at(now: i64, end: f64) -> Vec<Point> {
        let origin = now - 86_400;
        (0..120)
            .map(|i| {
                let t = origin - origin.rem_euclid(60) - 5400 + i * 60;
                let before_now = origin - (t + 30);
                let progress = ((3600 - before_now) as f64 / 3600.0).clamp(0.0, 1.0);
                let level = if before_now > 3600 {
                    100.0
                } else {
                    100.0 * (1.0 + (end - 1.0) * progress)
                };
                // After its now, the season goes on the same way.
                let level = if before_now < 0 {
                    100.0 * (1.0 + (end - 1.0) * (1.0 + (-before_now) as f64 / 3600.0))
                } else {
                    level
                };
                Point::new(t, level)
            })
            .collect()
    }

    fn input<'a>(
        recent: &'a [Point],
        seasons: &'a [Season<'a>],
        direction: Direction,
        counts: bool,
    ) -> Watched<'a> {
        Watched {
            recent,
            step: step(),
            seasons,
            now: NOW,
            direction,
            counts,
            last_verdict_at: None,
        }
    }

    #[test]
    fn verdicts() {
        use Direction::{Drop, Either, Rise};
        let flat_season = season(1.0);
        let falling_season = season(0.5);
        let rising_season = season(2.0);
        let day = |points: &'static [Point]| {
            [Season {
                back_secs: 86_400,
                step: NonZeroU32::new(60).expect("non-zero"),
                points,
            }]
        };
        let flat: &'static [Point] = Box::leak(flat_season.into_boxed_slice());
        let falling: &'static [Point] = Box::leak(falling_season.into_boxed_slice());
        let rising: &'static [Point] = Box::leak(rising_season.into_boxed_slice());
        // (shape, season, direction, counts, expected (rule, window seconds) or none)
        type Case = (
            Shape,
            Option<&'static [Point]>,
            Direction,
            bool,
            Option<(WatchRule, i64)>,
        );
        let cases: Vec<Case> = vec![
            // Nothing happened.
            (
                Shape::Shifted {
                    factor: 1.0,
                    secs: 0,
                },
                Some(flat),
                Drop,
                false,
                None,
            ),
            (
                Shape::Shifted {
                    factor: 1.0,
                    secs: 0,
                },
                None,
                Either,
                false,
                None,
            ),
            // Halved for the last minute: found from the smallest window.
            (
                Shape::Shifted {
                    factor: 0.5,
                    secs: 60,
                },
                Some(flat),
                Drop,
                false,
                Some((WatchRule::Shift, 60)),
            ),
            (
                Shape::Shifted {
                    factor: 0.5,
                    secs: 60,
                },
                None,
                Drop,
                false,
                Some((WatchRule::Shift, 60)),
            ),
            (
                Shape::Shifted {
                    factor: 0.5,
                    secs: 60,
                },
                Some(flat),
                Either,
                false,
                Some((WatchRule::Shift, 60)),
            ),
            // Bad only if a drop is bad.
            (
                Shape::Shifted {
                    factor: 0.5,
                    secs: 60,
                },
                Some(flat),
                Rise,
                false,
                None,
            ),
            // Five minutes up: the smallest window's reference holds most of the rise, the
            // window that covers it finds it.
            (
                Shape::Shifted {
                    factor: 1.5,
                    secs: 300,
                },
                Some(flat),
                Rise,
                false,
                Some((WatchRule::Shift, 300)),
            ),
            // Only the last 30 s: too few slots for the smallest window yet.
            (
                Shape::Shifted {
                    factor: 0.5,
                    secs: 30,
                },
                Some(flat),
                Drop,
                false,
                None,
            ),
            // A real 8 % drop: below the minimum shift, however long.
            (
                Shape::Shifted {
                    factor: 0.92,
                    secs: 900,
                },
                Some(flat),
                Drop,
                false,
                None,
            ),
            // A 25 % drop 15 minutes old: the small windows' references lie within it, the
            // 5-minute window's reaches back before it.
            (
                Shape::Shifted {
                    factor: 0.75,
                    secs: 900,
                },
                Some(flat),
                Drop,
                false,
                Some((WatchRule::Shift, 300)),
            ),
            // The evening: the metric halves over the hour, and so did yesterday.
            (Shape::Ramp { end: 0.5 }, Some(falling), Drop, false, None),
            // The same fall without a season to excuse it: a drop.
            (
                Shape::Ramp { end: 0.5 },
                Some(flat),
                Drop,
                false,
                Some((WatchRule::Shift, 300)),
            ),
            // Yesterday doubled over the hour and today stayed flat: the season never makes a
            // verdict easier.
            (
                Shape::Shifted {
                    factor: 1.0,
                    secs: 0,
                },
                Some(rising),
                Drop,
                false,
                None,
            ),
            // A busy count (20 a slot) went silent for two slots.
            (
                Shape::Counts {
                    mean: 20.0,
                    zero_secs: 20,
                },
                Some(flat),
                Drop,
                true,
                Some((WatchRule::Zero, 20)),
            ),
            // One silent slot is not enough; a quiet count (5 a slot) may be silent by chance.
            (
                Shape::Counts {
                    mean: 20.0,
                    zero_secs: 10,
                },
                Some(flat),
                Drop,
                true,
                None,
            ),
            (
                Shape::Counts {
                    mean: 5.0,
                    zero_secs: 20,
                },
                Some(flat),
                Drop,
                true,
                None,
            ),
            // Silence is no rise.
            (
                Shape::Counts {
                    mean: 20.0,
                    zero_secs: 20,
                },
                Some(flat),
                Rise,
                true,
                None,
            ),
        ];
        for (i, &(shape, season, direction, counts, expected)) in cases.iter().enumerate() {
            let recent = series(shape, 7 + i as u64);
            let seasons = season.map(day);
            let seasons: &[Season] = seasons.as_ref().map_or(&[], |s| s.as_slice());
            let got = watch(
                &input(&recent, seasons, direction, counts),
                &WatchConfig::default(),
            );
            assert_eq!(
                got.as_ref().map(|v| (v.rule, v.window_secs)),
                expected,
                "case {i}: {got:?}"
            );
            if let Some(v) = got {
                assert_eq!(v.at, NOW - STEP, "case {i}");
                assert!(v.comparison.is_regression && v.comparison.p_value <= v.comparison.alpha);
                assert_eq!(
                    v.baselines,
                    if season.is_some() {
                        vec![86_400]
                    } else {
                        vec![]
                    }
                );
            }
        }
    }

    #[test]
    fn verdict_details() {
        let recent = series(
            Shape::Shifted {
                factor: 0.5,
                secs: 60,
            },
            3,
        );
        let got = watch(
            &input(&recent, &[], Direction::Drop, false),
            &WatchConfig::default(),
        )
        .expect("a verdict");
        assert!((got.comparison.effect + 0.5).abs() < 0.05, "{got:?}");
        assert!(got.comparison.effect_upper < -0.075);
        assert_eq!((got.from, got.window_secs), (NOW - 60, 60));
        assert_eq!(
            (got.comparison.before_len, got.comparison.after_len),
            (EXACT_MAX, 6)
        );
        assert!(got.comparison.exact);
        assert_eq!(got.expected_ratio, 1.0);
        // In the hold of an earlier verdict: quiet; after it: found again.
        for (last, found) in [(NOW - 600, false), (NOW - 3600, true), (NOW + 3600, true)] {
            let watched = Watched {
                last_verdict_at: Some(last),
                ..input(&recent, &[], Direction::Drop, false)
            };
            assert_eq!(
                watch(&watched, &WatchConfig::default()).is_some(),
                found,
                "{last}"
            );
        }
    }

    #[test]
    fn missing_slots() {
        let mut recent = series(
            Shape::Shifted {
                factor: 0.5,
                secs: 120,
            },
            5,
        );
        // The last 2 minutes missing: nothing to judge.
        for p in recent.iter_mut().rev().take(12) {
            p.v = f64::NAN;
        }
        assert_eq!(
            watch(
                &input(&recent, &[], Direction::Drop, false),
                &WatchConfig::default()
            ),
            None
        );
        // Half of each window missing still counts.
        let mut recent = series(
            Shape::Shifted {
                factor: 0.5,
                secs: 120,
            },
            5,
        );
        for p in recent.iter_mut().rev().step_by(2) {
            p.v = f64::NAN;
        }
        let got = watch(
            &input(&recent, &[], Direction::Drop, false),
            &WatchConfig::default(),
        );
        assert_eq!(got.map(|v| v.window_secs), Some(120));
        // No data at all, or no settings that work.
        assert_eq!(
            watch(
                &input(&[], &[], Direction::Drop, false),
                &WatchConfig::default()
            ),
            None
        );
        let bad = WatchConfig {
            windows: vec![],
            ..WatchConfig::default()
        };
        assert_eq!(
            watch(&input(&recent, &[], Direction::Drop, false), &bad),
            None
        );
    }

    #[test]
    fn sparse_ties_are_not_a_rise() {
        // A sparse count (about 0.15 a slot: mostly 0, some 1) under a season that fell by a
        // few per cent: scaling the reference down would rank every 1 after it above the
        // reference's 1s. Watched at every flush for 12 hours, it gives no verdict.
        let mut noise = Noise(41);
        let points: Vec<Point> = (0..(12 * 360 + 360))
            .map(|i| Point::new(NOW - 3600 + i * STEP, noise.poisson(0.15) / STEP as f64))
            .collect();
        let mut verdicts = 0;
        for i in 360..points.len() {
            let now = points[i].t + STEP;
            let falling = season_at(now, 0.95);
            let seasons = [Season {
                back_secs: 86_400,
                step: NonZeroU32::new(60).expect("non-zero"),
                points: &falling,
            }];
            let watched = Watched {
                now,
                ..input(&points[i - 300..=i], &seasons, Direction::Rise, true)
            };
            verdicts += usize::from(watch(&watched, &WatchConfig::default()).is_some());
        }
        assert_eq!(verdicts, 0);
    }

    #[test]
    fn noise_over_days() {
        // Noise only, at every flush of two days, on a rough level series and a sparse count:
        // the union bound allows 0.003 false verdicts a day each; none happen.
        for (seed, counts) in [(51, false), (52, true)] {
            let mut noise = Noise(seed);
            let slots = 2 * 8640 + 360;
            let points: Vec<Point> = (0..slots)
                .map(|i| {
                    let v = if counts {
                        noise.poisson(3.0) / STEP as f64
                    } else {
                        100.0 * (0.5 * noise.normal()).exp()
                    };
                    Point::new(NOW + i * STEP, v)
                })
                .collect();
            let mut verdicts = 0;
            for i in 360..points.len() {
                let from = i.saturating_sub(300);
                let watched = Watched {
                    recent: &points[from..=i],
                    step: step(),
                    seasons: &[],
                    now: points[i].t + STEP,
                    direction: Direction::Either,
                    counts,
                    last_verdict_at: None,
                };
                verdicts += usize::from(watch(&watched, &WatchConfig::default()).is_some());
            }
            assert_eq!(verdicts, 0, "counts {counts}");
        }
    }

    #[test]
    fn alpha_per_test() {
        let config = WatchConfig::default();
        let cases = [(10, 0.003 / 8640.0 / 5.0), (60, 0.003 / 1440.0 / 5.0)];
        for (secs, expected) in cases {
            let got = config.test_alpha(NonZeroU32::new(secs).expect("non-zero"));
            assert!((got / expected - 1.0).abs() < 1e-12, "{secs}: {got}");
        }
        assert_eq!(config.recent_secs(step()), 900 + 1800);
        assert_eq!(config.season_span(step()), (2700 + 900, 900));
        for z in [1.0_f64, 3.0, 5.0, 7.0] {
            let p = crate::normal::upper_tail(z);
            assert!((upper_quantile(p) - z).abs() < 1e-3, "{z}");
        }
    }

    #[test]
    fn invalid_configs() {
        let cases = [
            WatchConfig {
                alpha_per_day: 0.0,
                ..WatchConfig::default()
            },
            WatchConfig {
                alpha_per_day: 1.0,
                ..WatchConfig::default()
            },
            WatchConfig {
                min_shift: f64::NAN,
                ..WatchConfig::default()
            },
            WatchConfig {
                windows: vec![6, 0],
                ..WatchConfig::default()
            },
            WatchConfig {
                reference_secs: 0,
                ..WatchConfig::default()
            },
            WatchConfig {
                min_present: 1.5,
                ..WatchConfig::default()
            },
        ];
        for config in cases {
            assert!(config.check().is_err(), "{config:?}");
        }
        assert_eq!(WatchConfig::default().check(), Ok(()));
    }

    #[test]
    fn curves() {
        // An exact quadratic is recovered, and its drift between two groups is the ratio
        // of its means over them.
        let f = |x: f64| 50.0 + 20.0 * x - 8.0 * x * x;
        let origin = NOW - 86_400;
        let points: Vec<Point> = (-60..=15)
            .map(|i| {
                let t = origin + i * 60;
                Point::new(t, f(((t - origin) as f64 + 30.0) / 3600.0))
            })
            .collect();
        let season = Season {
            back_secs: 86_400,
            step: NonZeroU32::new(60).expect("non-zero"),
            points: &points,
        };
        let curve = Curve::fit(&season, NOW, (3600, 900)).expect("fits");
        for (got, expected) in curve.coefficients.iter().zip([50.0, 20.0, -8.0]) {
            assert!((got - expected).abs() < 1e-6, "{:?}", curve.coefficients);
        }
        let group = |x: f64| Group {
            n: 1,
            sum: 0.0,
            sum_squares: 0.0,
            x,
            x_squares: x * x,
        };
        let drift = curve.drift(&group(-0.5), &group(-0.1)).expect("positive");
        assert!((drift - f(-0.1) / f(-0.5)).abs() < 1e-9);
        // Too few slots.
        let short = Season {
            points: &points[..4],
            ..season
        };
        assert_eq!(Curve::fit(&short, NOW, (3600, 900)), None);
    }
}
