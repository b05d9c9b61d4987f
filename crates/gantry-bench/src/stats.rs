//! Latency figures from a run's samples: percentiles by the nearest-rank method over a
//! sorted list, which is exact for the few thousand samples a run takes.

use std::time::Duration;

/// The latencies of one kind of request, sorted once.
#[derive(Debug, Clone, PartialEq)]
pub struct Latencies {
    sorted: Vec<Duration>,
}

impl Latencies {
    pub fn new(mut samples: Vec<Duration>) -> Latencies {
        samples.sort_unstable();
        Latencies { sorted: samples }
    }

    pub fn len(&self) -> usize {
        self.sorted.len()
    }

    /// The smallest sample that at least `percent` % of samples do not exceed (nearest
    /// rank), or zero when there are no samples.
    pub fn percentile(&self, percent: f64) -> Duration {
        if self.sorted.is_empty() {
            return Duration::ZERO;
        }
        let rank = (percent / 100.0 * self.sorted.len() as f64).ceil() as usize;
        self.sorted[rank.clamp(1, self.sorted.len()) - 1]
    }

    /// [`Latencies::percentile`] in milliseconds.
    pub fn percentile_ms(&self, percent: f64) -> f64 {
        self.percentile(percent).as_secs_f64() * 1000.0
    }

    pub fn max(&self) -> Duration {
        self.sorted.last().copied().unwrap_or(Duration::ZERO)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ms(values: &[u64]) -> Latencies {
        Latencies::new(values.iter().map(|&v| Duration::from_millis(v)).collect())
    }

    #[track_caller]
    fn check(values: &[u64], percent: f64, expected_ms: u64) {
        assert_eq!(
            ms(values).percentile(percent),
            Duration::from_millis(expected_ms),
            "p{percent} of {values:?}"
        );
    }

    #[test]
    fn nearest_rank() {
        check(&[], 50.0, 0);
        check(&[7], 50.0, 7);
        check(&[7], 99.0, 7);
        check(&[7], 0.0, 7);
        // Unsorted input is sorted first.
        check(&[4, 1, 3, 2], 50.0, 2);
        check(&[4, 1, 3, 2], 75.0, 3);
        check(&[4, 1, 3, 2], 76.0, 4);
        check(&[4, 1, 3, 2], 100.0, 4);
        let hundred: Vec<u64> = (1..=100).collect();
        check(&hundred, 50.0, 50);
        check(&hundred, 99.0, 99);
        check(&hundred, 99.5, 100);
        let thousand: Vec<u64> = (1..=1000).rev().collect();
        check(&thousand, 99.0, 990);
    }

    #[test]
    fn milliseconds_and_max() {
        let l = Latencies::new(vec![
            Duration::from_micros(1500),
            Duration::from_micros(250),
        ]);
        assert_eq!(l.len(), 2);
        assert!((l.percentile_ms(50.0) - 0.25).abs() < 1e-9);
        assert_eq!(l.max(), Duration::from_micros(1500));
    }
}
