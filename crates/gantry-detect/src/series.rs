//! Time series as the detector reads them: `(unix seconds, value)` points at their stored
//! resolution, missing slots as NaN (what a whisper-style read returns for a slot nobody
//! wrote).
//!
//! The tests compare levels, so a window is first made comparable across resolutions with
//! [`to_rate`]: a StatsD counter stored as its count per slot (`stats.counters.X.count`)
//! becomes events per second, `count / step`. Values that already are per-second rates or
//! levels (`.rate`, gauges, timer means) are kept as they are.

use std::num::NonZeroU32;

use serde::{Deserialize, Serialize};

/// One slot of a series: its start, in Unix seconds, and its value (NaN when missing).
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct Point {
    /// Start of the slot, Unix seconds.
    pub t: i64,
    /// The slot's value; NaN (or any non-finite value) means missing.
    pub v: f64,
}

impl Point {
    pub fn new(t: i64, v: f64) -> Point {
        Point { t, v }
    }
}

/// The points whose value is a finite number, in their order: missing (NaN) and infinite
/// values dropped.
pub fn present(points: &[Point]) -> Vec<Point> {
    points.iter().copied().filter(|p| p.v.is_finite()).collect()
}

/// The finite values of `points`, in their order.
pub fn values(points: &[Point]) -> Vec<f64> {
    points
        .iter()
        .map(|p| p.v)
        .filter(|v| v.is_finite())
        .collect()
}

/// A window read at its stored resolution (`step_secs` per slot) as per-second rates,
/// missing slots dropped.
///
/// With `is_counter_total`, each value is the number of events counted in its slot (a
/// StatsD count per flush, or per coarser slot when the archive sums them), and the rate is
/// `value / step_secs`. Otherwise the value is already a rate or a level and is kept.
pub fn to_rate(points: &[Point], step_secs: NonZeroU32, is_counter_total: bool) -> Vec<Point> {
    let step = f64::from(step_secs.get());
    points
        .iter()
        .filter(|p| p.v.is_finite())
        .map(|p| Point {
            t: p.t,
            v: if is_counter_total { p.v / step } else { p.v },
        })
        .collect()
}

/// The points of a time-sorted series with `from ≤ t < until`.
pub fn between(points: &[Point], from: i64, until: i64) -> &[Point] {
    let start = points.partition_point(|p| p.t < from);
    let end = points.partition_point(|p| p.t < until).max(start);
    &points[start..end]
}

/// The step of a time-sorted series: the smallest gap between consecutive timestamps.
/// `None` with fewer than two points or a gap beyond `u32` seconds.
pub fn infer_step(points: &[Point]) -> Option<NonZeroU32> {
    let gap = points
        .windows(2)
        .filter_map(|w| w[1].t.checked_sub(w[0].t))
        .filter(|&gap| gap > 0)
        .min()?;
    NonZeroU32::new(u32::try_from(gap).ok()?)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn points(pairs: &[(i64, f64)]) -> Vec<Point> {
        pairs.iter().map(|&(t, v)| Point::new(t, v)).collect()
    }

    fn step(secs: u32) -> NonZeroU32 {
        NonZeroU32::new(secs).expect("non-zero step")
    }

    #[test]
    fn rates() {
        let window = points(&[(0, 50.0), (10, f64::NAN), (20, 0.0), (30, 25.0)]);
        let cases = [
            // StatsD counts per 10 s flush: events per second.
            (10, true, vec![(0, 5.0), (20, 0.0), (30, 2.5)]),
            // The same numbers as rates already: only the missing slot goes.
            (10, false, vec![(0, 50.0), (20, 0.0), (30, 25.0)]),
            // A 60 s archive summing counts.
            (
                60,
                true,
                vec![(0, 50.0 / 60.0), (20, 0.0), (30, 25.0 / 60.0)],
            ),
        ];
        for (secs, is_counter_total, expected) in cases {
            assert_eq!(
                to_rate(&window, step(secs), is_counter_total),
                points(&expected),
                "step {secs}, counter total {is_counter_total}"
            );
        }
    }

    #[test]
    fn missing_values_dropped() {
        let window = points(&[(0, 1.0), (1, f64::NAN), (2, f64::INFINITY), (3, -2.0)]);
        assert_eq!(present(&window), points(&[(0, 1.0), (3, -2.0)]));
        assert_eq!(values(&window), vec![1.0, -2.0]);
    }

    #[test]
    fn windows_by_time() {
        let series = points(&[(0, 0.0), (60, 1.0), (120, 2.0), (180, 3.0)]);
        let cases = [
            ((0, 120), vec![0, 60]),
            ((60, 61), vec![60]),
            ((61, 120), vec![]),
            ((-100, 1000), vec![0, 60, 120, 180]),
            ((200, 100), vec![]),
        ];
        for ((from, until), expected) in cases {
            let got: Vec<i64> = between(&series, from, until).iter().map(|p| p.t).collect();
            assert_eq!(got, expected, "[{from}, {until})");
        }
    }

    #[test]
    fn steps() {
        let cases: [(&[i64], Option<u32>); 4] = [
            (&[0, 60, 120, 300], Some(60)),
            (&[0, 10], Some(10)),
            (&[0], None),
            (&[5, 5], None),
        ];
        for (times, expected) in cases {
            let series: Vec<Point> = times.iter().map(|&t| Point::new(t, 1.0)).collect();
            assert_eq!(
                infer_step(&series).map(NonZeroU32::get),
                expected,
                "{times:?}"
            );
        }
    }
}
