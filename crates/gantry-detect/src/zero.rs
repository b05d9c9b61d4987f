//! Drop to zero: a counter that stops dead after a change is found within two flushes,
//! before the rank test has enough points.
//!
//! The rule fires when the last [`ZERO_FLUSHES`] (two) flushes each counted exactly zero
//! events, and only when the baseline expects at least [`MIN_EXPECTED_EVENTS`] (seven)
//! events per flush. Why seven: if events arrive as a Poisson process with `λ` expected per
//! flush, one flush is empty by chance with probability `e^(−λ)`, two in a row with
//! `e^(−2λ)`; at `λ = 7` that is `e^(−14) ≈ 8.3·10⁻⁷` per check, so even checking a metric
//! at every 10 s flush of a day (8,640 checks) gives under 1 % chance of one false alarm.
//! A quieter counter goes silent for two flushes often enough by chance; the rank test in
//! [`crate::verdict`] covers it, with more patience.
//!
//! The expectation is the caller's: typically the mean count per flush over the baseline
//! window, times the seasonal ratio ([`expected_events_per_flush`]). A missing flush (NaN:
//! no report at all) is not a zero count and does not fire the rule; nor do negative
//! values.

/// The baseline must expect at least this many events per flush.
pub const MIN_EXPECTED_EVENTS: f64 = 7.0;

/// This many consecutive empty flushes fire the rule.
pub const ZERO_FLUSHES: usize = 2;

/// Whether the counter dropped to zero: the last [`ZERO_FLUSHES`] values of
/// `recent_counts` (events per flush, oldest first) are exactly 0 and
/// `expected_events_per_flush ≥` [`MIN_EXPECTED_EVENTS`].
pub fn dropped_to_zero(expected_events_per_flush: f64, recent_counts: &[f64]) -> bool {
    if expected_events_per_flush.is_nan() || expected_events_per_flush < MIN_EXPECTED_EVENTS {
        return false;
    }
    recent_counts.len() >= ZERO_FLUSHES
        && recent_counts[recent_counts.len() - ZERO_FLUSHES..]
            .iter()
            .all(|&count| count == 0.0)
}

/// The events a flush is expected to count: the mean of the baseline's finite counts per
/// flush, times the seasonal ratio. `None` without a finite count or with a ratio that is
/// not a positive number.
pub fn expected_events_per_flush(baseline_counts: &[f64], expected_ratio: f64) -> Option<f64> {
    if !(expected_ratio.is_finite() && expected_ratio > 0.0) {
        return None;
    }
    let finite: Vec<f64> = baseline_counts
        .iter()
        .copied()
        .filter(|v| v.is_finite())
        .collect();
    if finite.is_empty() {
        return None;
    }
    Some(finite.iter().sum::<f64>() / finite.len() as f64 * expected_ratio)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn drops_to_zero() {
        let nan = f64::NAN;
        let cases: &[(f64, &[f64], bool)] = &[
            (10.0, &[12.0, 0.0, 0.0], true),
            (7.0, &[0.0, 0.0], true),
            // One empty flush is not enough.
            (10.0, &[12.0, 9.0, 0.0], false),
            (10.0, &[0.0], false),
            (10.0, &[], false),
            // Not the last two.
            (10.0, &[0.0, 0.0, 3.0], false),
            // Too quiet to tell from chance.
            (6.9, &[5.0, 0.0, 0.0], false),
            (0.0, &[0.0, 0.0], false),
            (nan, &[0.0, 0.0], false),
            // Missing is not zero.
            (10.0, &[0.0, nan], false),
            (10.0, &[nan, nan], false),
            (10.0, &[-0.0, 0.0], true),
        ];
        for &(expected, recent, fires) in cases {
            assert_eq!(
                dropped_to_zero(expected, recent),
                fires,
                "{expected} {recent:?}"
            );
        }
    }

    #[test]
    fn expectations() {
        let cases: &[(&[f64], f64, Option<f64>)] = &[
            (&[6.0, 8.0, f64::NAN, 10.0], 1.0, Some(8.0)),
            (&[6.0, 8.0, 10.0], 0.5, Some(4.0)),
            (&[], 1.0, None),
            (&[f64::NAN], 1.0, None),
            (&[8.0], 0.0, None),
            (&[8.0], f64::INFINITY, None),
        ];
        for &(baseline, ratio, expected) in cases {
            assert_eq!(
                expected_events_per_flush(baseline, ratio),
                expected,
                "{baseline:?} × {ratio}"
            );
        }
    }

    #[test]
    fn false_alarm_bound() {
        // e^(−2·7): the chance of two empty flushes in a row at the threshold.
        let per_check = (-2.0 * MIN_EXPECTED_EVENTS).exp();
        assert!((per_check - 8.315e-7).abs() < 1e-9, "{per_check}");
        assert!(1.0 - (1.0 - per_check).powi(8640) < 0.01);
    }
}
