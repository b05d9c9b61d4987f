//! How StatsD aggregates and names what it flushes; the `[statsd]` section of Gantry's
//! configuration. Defaults are Etsy's.

use serde::{Deserialize, Serialize};

/// Settings of the StatsD engine. Field names are the config keys.
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct StatsdConfig {
    /// Seconds between flushes; counters' rates are per second of this interval.
    pub flush_interval_secs: f64,
    /// Percentiles computed for timers; a negative one is taken from the top (`lower_top10`).
    pub percent_thresholds: Vec<f64>,
    /// Etsy's default names (`stats.k`, `stats_counts.k`, `stats.timers.k.*`); `false` for
    /// `stats.counters.k.rate`/`.count`.
    pub legacy_namespace: bool,
    /// First path element of every name (non-legacy layout only, as in Etsy).
    pub global_prefix: String,
    pub prefix_counter: String,
    pub prefix_timer: String,
    pub prefix_gauge: String,
    pub prefix_set: String,
    /// Appended to every name (before any tags).
    pub global_suffix: String,
    /// Clean keys as Etsy does: whitespace to `_`, `/` to `-`, drop anything but
    /// `[A-Za-z0-9_.;=-]`.
    pub key_name_sanitize: bool,
    /// Also flush counters' raw counts (`stats_counts.k`).
    pub flush_counts: bool,
    /// Treat `h` and `d` as timers (DogStatsD's meaning) instead of counters (Etsy's).
    pub histograms_as_timers: bool,
    /// Forget every key that saw nothing since the last flush (sets all four below).
    pub delete_idle_stats: bool,
    pub delete_counters: bool,
    pub delete_timers: bool,
    pub delete_sets: bool,
    pub delete_gauges: bool,
    /// With `delete_gauges`: flushes a gauge may stay idle before it is forgotten.
    pub gauges_max_ttl: u32,
    /// Timer histograms: the first entry whose `metric` occurs in a key gives its bins.
    pub histogram: Vec<HistogramBins>,
}

/// Histogram bins for timers whose key contains `metric`.
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct HistogramBins {
    pub metric: String,
    /// Upper bounds (exclusive), ascending; `inf` (as a string) for the last open bin.
    pub bins: Vec<Bin>,
}

/// One histogram bin's upper bound.
#[derive(Debug, Clone, Copy, PartialEq, Deserialize, Serialize)]
#[serde(untagged)]
pub enum Bin {
    Below(f64),
    Infinite(InfiniteBin),
}

/// The string `inf`.
#[derive(Debug, Clone, Copy, PartialEq, Deserialize, Serialize)]
pub enum InfiniteBin {
    #[serde(rename = "inf")]
    Inf,
}

impl Default for StatsdConfig {
    fn default() -> Self {
        StatsdConfig {
            flush_interval_secs: 10.0,
            percent_thresholds: vec![90.0],
            legacy_namespace: true,
            global_prefix: "stats".into(),
            prefix_counter: "counters".into(),
            prefix_timer: "timers".into(),
            prefix_gauge: "gauges".into(),
            prefix_set: "sets".into(),
            global_suffix: String::new(),
            key_name_sanitize: true,
            flush_counts: true,
            histograms_as_timers: false,
            delete_idle_stats: false,
            delete_counters: false,
            delete_timers: false,
            delete_sets: false,
            delete_gauges: false,
            gauges_max_ttl: 1,
            histogram: Vec::new(),
        }
    }
}

impl StatsdConfig {
    pub(crate) fn deletes(&self) -> (bool, bool, bool, bool) {
        let all = self.delete_idle_stats;
        (
            all || self.delete_counters,
            all || self.delete_timers,
            all || self.delete_sets,
            all || self.delete_gauges,
        )
    }
}
