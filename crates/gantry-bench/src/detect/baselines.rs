//! The two baselines the detector is measured against, both alerting in the metric's bad
//! direction only, as an alerting system notifies (once when the condition starts to hold,
//! again only after it cleared and the detector's hold passed), tuned on the training seeds
//! to the most recall that raises no more false alerts than the detector did there.
//!
//! - **Static threshold**: per series, the `q` quantile of its raw 10 s values over the
//!   first week (the low tail for a drop series, the high tail `1 − q` for a rise series;
//!   `q = 0` is the extreme), moved out by a factor `1 + m` (divided by it below,
//!   multiplied above: with trends of up to 20 % a week, a quantile alone soon lies inside
//!   the data); an alert when `n` present samples in a row lie beyond it.
//! - **Holt–Winters**: `holtWintersConfidenceBands(metric, delta)` as gantry-render
//!   evaluates it (graphite-web's defaults: a 7-day bootstrap, a 1-day season, α = γ = 0.1,
//!   β = 0.0035), rendered for the last hour every time a 10-minute slot completes. With
//!   the default retention a read reaching back 7 days comes from the 10-minute archive, so
//!   that is the resolution the bands have. An alert when the newest `n` complete slots all
//!   lie beyond the band on the bad side. The analysis is gantry-render's own
//!   [`holt_winters_analysis`], run on the bench's slots directly.

use super::corpus::{SeriesSpec, START, STEP, WATCH_FROM, WEEK};
use super::store::Stored;
use gantry_detect::Direction;

/// The static threshold's settings.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct StaticParams {
    pub quantile: f64,
    pub margin: f64,
    pub points: usize,
}

/// The Holt–Winters baseline's settings.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct HwParams {
    pub delta: f64,
    pub points: usize,
}

/// The grids `--train` searches.
pub const STATIC_QUANTILES: [f64; 5] = [0.0, 1e-5, 1e-4, 1e-3, 1e-2];
pub const STATIC_MARGINS: [f64; 8] = [0.0, 0.1, 0.25, 0.5, 1.0, 2.0, 4.0, 9.0];
pub const STATIC_POINTS: [usize; 5] = [1, 2, 3, 6, 30];
/// The band at a slot includes that slot's own deviation (`d ≥ γ·|actual − forecast|`,
/// γ = 0.1), so no slot lies 10 deviations out: a delta of 10 never alerts.
pub const HW_DELTAS: [f64; 13] = [
    2.0, 3.0, 4.0, 5.0, 6.0, 7.0, 8.0, 8.5, 9.0, 9.5, 9.8, 9.9, 10.0,
];
pub const HW_POINTS: [usize; 3] = [1, 2, 3];

/// Alert times from `(time, condition)` in order, as an alerting system notifies: once when
/// the condition starts to hold, and again only after it has cleared and the hold since
/// the last alert has passed (a threshold crossed for hours is one alert, not one an hour).
fn alerts(states: impl Iterator<Item = (i64, bool)>, hold: i64) -> Vec<i64> {
    let mut out: Vec<i64> = Vec::new();
    let mut firing = false;
    for (t, holds) in states {
        if !holds {
            firing = false;
        } else if !firing && out.last().is_none_or(|&last| t - last >= hold) {
            out.push(t);
            firing = true;
        }
    }
    out
}

/// The static threshold's alerts on one series, for each of `params`.
pub fn static_alerts(
    spec: &SeriesSpec,
    store: &Stored,
    params: &[StaticParams],
    hold: i64,
) -> Vec<Vec<i64>> {
    let raw = &store.stored[0];
    let week = (WEEK / STEP) as usize;
    let mut history: Vec<f64> = raw[..week]
        .iter()
        .map(|p| p.v)
        .filter(|v| v.is_finite())
        .collect();
    history.sort_by(f64::total_cmp);
    let drop = spec.direction() == Direction::Drop;
    let from = ((WATCH_FROM - START) / STEP) as usize;
    params
        .iter()
        .map(|p| {
            if history.is_empty() {
                return Vec::new();
            }
            let q = if drop { p.quantile } else { 1.0 - p.quantile };
            let rank = ((q * history.len() as f64) as usize).min(history.len() - 1);
            let threshold = if drop {
                history[rank] / (1.0 + p.margin)
            } else {
                history[rank] * (1.0 + p.margin)
            };
            let mut run = 0;
            let candidates = raw[from..].iter().filter_map(|point| {
                if !point.v.is_finite() {
                    return None;
                }
                let beyond = if drop {
                    point.v < threshold
                } else {
                    point.v > threshold
                };
                run = if beyond { run + 1 } else { 0 };
                Some((point.t, run >= p.points))
            });
            alerts(candidates, hold)
        })
        .collect()
}

/// The newest slots of one Holt–Winters rendering: (value, forecast, deviation), oldest
/// first.
type Rendered = Vec<(f64, f64, f64)>;

/// Renders the bands every time a 10-minute slot completes in the watched period; for
/// each, the slot's newest raw sample time and the last `keep` slots.
pub fn hw_renderings(store: &Stored, keep: usize) -> Vec<(i64, Rendered)> {
    let coarse = store.archives.len() - 1;
    let step = i64::from(store.archives[coarse].step);
    let season = (86_400 / step) as usize;
    let slots = &store.stored[coarse];
    let mut out = Vec::new();
    let first = (WATCH_FROM - START + step - 1) / step;
    for slot in slots.iter().skip(first as usize).map(|p| p.t) {
        let now = slot + step;
        // holtWintersConfidenceBands over the last hour reads its 7-day bootstrap too.
        let (points, read_step) = store.read(now - 3600 - WEEK, now, now, false);
        debug_assert_eq!(read_step, step);
        let Some(last) = points.last() else { continue };
        if last.t != slot {
            continue;
        }
        let values: Vec<Option<f64>> = points
            .iter()
            .map(|p| p.v.is_finite().then_some(p.v))
            .collect();
        let (predictions, deviations) = holt_winters_analysis(&values, season);
        let n = values.len();
        let rendered: Rendered = (n.saturating_sub(keep)..n)
            .map(|i| {
                (
                    values[i].unwrap_or(f64::NAN),
                    predictions[i].unwrap_or(f64::NAN),
                    deviations[i].unwrap_or(f64::NAN),
                )
            })
            .collect();
        out.push((slot + step - STEP, rendered));
    }
    out
}

/// The Holt–Winters alerts for each of `params`, from [`hw_renderings`].
pub fn hw_alerts(
    spec: &SeriesSpec,
    renderings: &[(i64, Rendered)],
    params: &[HwParams],
    hold: i64,
) -> Vec<Vec<i64>> {
    let drop = spec.direction() == Direction::Drop;
    params
        .iter()
        .map(|p| {
            let candidates = renderings.iter().map(|(at, rendered)| {
                if rendered.len() < p.points {
                    return (*at, false);
                }
                let outside = rendered[rendered.len() - p.points..]
                    .iter()
                    .all(|&(v, f, d)| {
                        // NaN anywhere (a missing slot, no forecast) is not outside.
                        if drop {
                            v < f - p.delta * d
                        } else {
                            v > f + p.delta * d
                        }
                    });
                (*at, outside)
            });
            alerts(candidates, hold)
        })
        .collect()
}

pub use gantry_render::holt_winters_analysis;

#[cfg(test)]
mod tests {
    use super::super::corpus::plan;
    use super::*;
    use gantry_render::{evaluate, Context, RenderError, Series, SeriesSource};

    /// The store's 10-minute archive of one series, served as a render source the way the
    /// server serves a store read.
    struct Source<'a>(&'a Stored, i64);

    impl SeriesSource for Source<'_> {
        fn find(&self, _: &str, from: i64, until: i64) -> Result<Vec<Series>, RenderError> {
            let (points, step) = self.0.read(from, until, self.1, false);
            let start = points.first().map_or(from, |p| p.t);
            let mut values: Vec<Option<f64>> = points
                .iter()
                .map(|p| p.v.is_finite().then_some(p.v))
                .collect();
            // The slot still filling, as the store answers it: nothing yet.
            values.push(None);
            let end = start + values.len() as i64 * step;
            Ok(vec![Series::new("x", start, end, step, values)])
        }
        fn find_by_tags(&self, _: &[String], _: i64, _: i64) -> Result<Vec<Series>, RenderError> {
            Ok(Vec::new())
        }
        fn events(&self, _: &[String], _: i64, _: i64) -> Result<Vec<i64>, RenderError> {
            Ok(Vec::new())
        }
    }

    #[test]
    fn same_bands_as_gantry_render() {
        let specs = plan(0);
        for spec in [&specs[0], &specs[3]] {
            let store = Stored::new(spec, &spec.generate());
            let renderings = hw_renderings(&store, 3);
            for (at, rendered) in renderings.iter().step_by(97).take(12) {
                let now = at + STEP;
                let ctx = Context {
                    from: now - 3600,
                    until: now,
                    now,
                    source: &Source(&store, now),
                };
                let bands = evaluate("holtWintersConfidenceBands(x, 3)", &ctx).expect("renders");
                let [lower, upper] = &bands[..] else {
                    panic!("{bands:?}")
                };
                // The last value is the slot still filling; the three before are ours.
                let n = lower.values.len();
                for (k, &(_, f, d)) in rendered.iter().enumerate() {
                    let i = n - 1 - rendered.len() + k;
                    let expect_lower = (f.is_finite() && d.is_finite()).then_some(f - 3.0 * d);
                    let expect_upper = (f.is_finite() && d.is_finite()).then_some(f + 3.0 * d);
                    assert_eq!(
                        lower.values[i],
                        expect_lower,
                        "{} at {at}, slot {k}",
                        spec.name()
                    );
                    assert_eq!(
                        upper.values[i],
                        expect_upper,
                        "{} at {at}, slot {k}",
                        spec.name()
                    );
                }
            }
        }
    }

    #[test]
    fn alerts_once_per_episode() {
        // (times and whether the condition holds, alerts)
        type Case<'a> = (&'a [(i64, bool)], &'a [i64]);
        let cases: &[Case] = &[
            // Held for two hours: one alert.
            (&[(0, true), (10, true), (3600, true), (7200, true)], &[0]),
            // Cleared and back after the hold: a second one.
            (&[(0, true), (10, false), (3600, true)], &[0, 3600]),
            // Cleared and back within the hold: none until the hold passed.
            (
                &[(0, true), (10, false), (20, true), (3700, true)],
                &[0, 3700],
            ),
            (&[(0, true), (10, false), (20, true), (30, false)], &[0]),
        ];
        for &(states, expected) in cases {
            assert_eq!(alerts(states.iter().copied(), 3600), expected, "{states:?}");
        }
    }
}
