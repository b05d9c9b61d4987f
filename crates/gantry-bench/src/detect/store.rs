//! The corpus as the store keeps it under the default retention, and reads as the store
//! answers them.
//!
//! gantry-tsdb's defaults (`gantry_tsdb::config::DEFAULT_RETENTIONS`, `10s:6h,1m:7d,10m:5y`,
//! and `default_aggregation()`) are used as they are: the archives, and the aggregation
//! rule each metric name gets (`stats_counts.…` sums with an `xFilesFactor` of 0, a timer's
//! `.mean` averages with 0.3). The rollup itself is written here because gantry-tsdb keeps
//! its running aggregate private (`Aggregation::fold` is crate-internal); it follows the
//! store's documented rule (whisper's): a coarse slot gets the aggregate of the finer
//! archive's known slots within it when the share known is at least the `xFilesFactor`
//! (and at least one is), else nothing; each archive rolls up from the one before it
//! (10 s → 1 min → 10 min). Points arrive in time order, so every finer slot is final
//! before the store ever reads the coarse slot here.
//!
//! A read picks its archive with the store's own `gantry_tsdb::whisper::read_window` (the
//! finest archive whose retention covers the start of the range, aligned the way whisper
//! aligns), so a detector reading the last hour gets 10 s slots, a day back 1 min slots and
//! a week back 10 min slots. Only slots that ended by the read's `now` are answered.

use gantry_detect::Point;
use gantry_tsdb::config::{
    default_aggregation, parse_retentions, Aggregation, Archive, DEFAULT_RETENTIONS,
};
use gantry_tsdb::whisper::read_window;

use super::corpus::{SeriesSpec, SLOTS, START, STEP};

/// One series in the store: each archive's slots from [`START`] (NaN where the store has
/// nothing), as stored and as per-second rates (counts divided by the slot's length).
pub struct Stored {
    pub archives: Vec<Archive>,
    pub stored: Vec<Vec<Point>>,
    pub rates: Vec<Vec<Point>>,
}

/// The aggregation rule the store gives `name`: the first default rule that matches.
pub fn aggregation_of(name: &str) -> (Aggregation, f64) {
    default_aggregation()
        .into_iter()
        .find(|rule| {
            regex::Regex::new(&rule.pattern)
                .map(|re| re.is_match(name))
                .unwrap_or(false)
        })
        // The store keeps the factor as an f32 (so 3 of 10 slots miss 0.3).
        .map_or((Aggregation::Average, 0.5), |rule| {
            (rule.method, f64::from(rule.x_files_factor as f32))
        })
}

/// The aggregate of the known values of one coarse slot, by the store's rule.
pub fn aggregate(method: Aggregation, values: &[f64]) -> Option<f64> {
    let known: Vec<f64> = values.iter().copied().filter(|v| v.is_finite()).collect();
    let last = *known.last()?;
    Some(match method {
        Aggregation::Average => known.iter().sum::<f64>() / known.len() as f64,
        Aggregation::Sum => known.iter().sum(),
        Aggregation::Min => known.iter().copied().fold(f64::INFINITY, f64::min),
        Aggregation::Max => known.iter().copied().fold(f64::NEG_INFINITY, f64::max),
        Aggregation::Last => last,
    })
}

/// Rolls a finer archive's slots (from [`START`]) into slots `ratio` times as long.
pub fn rollup(finer: &[f64], ratio: usize, method: Aggregation, x_files_factor: f64) -> Vec<f64> {
    finer
        .chunks(ratio)
        .map(|chunk| {
            let known = chunk.iter().filter(|v| v.is_finite()).count();
            if known == 0 || (known as f64 / ratio as f64) < x_files_factor {
                return f64::NAN;
            }
            aggregate(method, chunk).unwrap_or(f64::NAN)
        })
        .collect()
}

impl Stored {
    /// Stores a series' raw 10 s values under the default retention.
    pub fn new(spec: &SeriesSpec, raw: &[f64]) -> Stored {
        assert_eq!(raw.len(), SLOTS);
        let archives = parse_retentions(DEFAULT_RETENTIONS).expect("the default retentions parse");
        assert_eq!(i64::from(archives[0].step), STEP);
        let (aggregation, x_files_factor) = aggregation_of(&spec.name());
        let mut levels = vec![raw.to_vec()];
        for pair in archives.windows(2) {
            let ratio = (pair[1].step / pair[0].step) as usize;
            let finer = levels.last().expect("one level at least");
            levels.push(rollup(finer, ratio, aggregation, x_files_factor));
        }
        let counts = spec.kind.counts();
        let points = |values: &[f64], step: u32, per_second: bool| -> Vec<Point> {
            let divide = if per_second { f64::from(step) } else { 1.0 };
            values
                .iter()
                .enumerate()
                .map(|(i, v)| Point::new(START + i as i64 * i64::from(step), v / divide))
                .collect()
        };
        let stored = levels
            .iter()
            .zip(&archives)
            .map(|(v, a)| points(v, a.step, false))
            .collect();
        let rates = levels
            .iter()
            .zip(&archives)
            .map(|(v, a)| points(v, a.step, counts))
            .collect();
        Stored {
            archives,
            stored,
            rates,
        }
    }

    /// What a read of `[from, until)` at `now` answers: the slots of the archive the store
    /// picks that ended by `now`, and that archive's step. `rates` picks per-second rates.
    pub fn read(&self, from: i64, until: i64, now: i64, rates: bool) -> (&[Point], i64) {
        let Some(window) = read_window(&self.archives, now, from, until) else {
            return (&[], STEP);
        };
        let step = i64::from(window.step);
        let slots = if rates {
            &self.rates[window.archive]
        } else {
            &self.stored[window.archive]
        };
        let index = |t: i64| -> usize {
            let i = (t - START).div_euclid(step) + i64::from((t - START).rem_euclid(step) != 0);
            i.clamp(0, slots.len() as i64) as usize
        };
        // Slots that ended by now: t + step ≤ now.
        let end = index(window.end.min(now - step + 1));
        let start = index(window.start).min(end);
        (&slots[start..end], step)
    }
}

#[cfg(test)]
mod tests {
    use super::super::corpus::{plan, DAY, WEEK};
    use super::*;

    #[test]
    fn reads_by_age() {
        let spec = &plan(2)[3];
        let raw = spec.generate();
        let store = Stored::new(spec, &raw);
        let now = START + 10 * DAY + 1234;
        // (from, until, expected step)
        let cases = [
            (now - 3600, now, 10),
            (now - 6 * 3600, now, 10),
            (now - DAY - 1800, now - DAY + 900, 60),
            (now - WEEK - 3600, now - WEEK + 900, 600),
        ];
        for (from, until, step) in cases {
            let (points, got) = store.read(from, until, now, true);
            assert_eq!(got, step, "{from}..{until}");
            let first = points.first().expect("slots");
            let last = points.last().expect("slots");
            // Aligned like whisper: from the slot after the one holding `from`.
            assert_eq!(first.t, from - from.rem_euclid(step) + step);
            assert!(last.t + step <= now.min(until + step), "{last:?}");
            assert!(points.windows(2).all(|w| w[1].t - w[0].t == step));
        }
        // Nothing that has not ended by now.
        let (points, _) = store.read(now - 600, now + 600, now, false);
        assert_eq!(
            points.last().map(|p| p.t),
            Some(now - now.rem_euclid(10) - 10)
        );
        // A minute is the sum of its six flushes (counts), as the store rolls up.
        let minute = ((now - DAY - START) / 60) as usize;
        let sum: f64 = raw[minute * 6..minute * 6 + 6]
            .iter()
            .filter(|v| v.is_finite())
            .sum();
        assert_eq!(store.stored[1][minute].v, sum);
        assert_eq!(store.rates[1][minute].v, sum / 60.0);
    }

    #[test]
    fn rules_by_name() {
        let cases = [
            ("stats_counts.bench.s003.requests", (Aggregation::Sum, 0.0)),
            (
                "stats.timers.bench.s000.mean",
                (Aggregation::Average, f64::from(0.3_f32)),
            ),
            (
                "stats.timers.bench.s000.upper",
                (Aggregation::Max, f64::from(0.1_f32)),
            ),
        ];
        for (name, expected) in cases {
            assert_eq!(aggregation_of(name), expected, "{name}");
        }
    }

    #[test]
    fn rollups() {
        let nan = f64::NAN;
        let finer = [1.0, 2.0, nan, nan, nan, nan, 4.0, nan, nan, nan, nan, nan];
        let show = |v: Vec<f64>| -> Vec<Option<f64>> {
            v.into_iter().map(|x| x.is_finite().then_some(x)).collect()
        };
        // (method, xff, expected per 6 slots)
        let cases = [
            (Aggregation::Sum, 0.0, vec![Some(3.0), Some(4.0)]),
            (Aggregation::Average, 0.3, vec![Some(1.5), None]),
            (Aggregation::Average, 0.0, vec![Some(1.5), Some(4.0)]),
            (Aggregation::Max, 0.1, vec![Some(2.0), Some(4.0)]),
        ];
        for (method, xff, expected) in cases {
            assert_eq!(
                show(rollup(&finer, 6, method, xff)),
                expected,
                "{method:?} {xff}"
            );
        }
    }
}
