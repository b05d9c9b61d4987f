//! Retention and aggregation rules, as carbon's `storage-schemas.conf` and
//! `storage-aggregation.conf` express them: the first rule whose pattern (a regular
//! expression) matches a series name wins, when the series is created.

use serde::{Deserialize, Serialize};

use crate::TsdbError;

/// One archive: a value every `step` seconds, kept for `points` steps.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Archive {
    pub step: u32,
    pub points: u32,
}

impl Archive {
    pub fn retention(&self) -> i64 {
        i64::from(self.step) * i64::from(self.points)
    }
}

/// How a coarser archive's slot is made from the finer one's.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Aggregation {
    Average,
    Sum,
    Min,
    Max,
    Last,
}

impl Aggregation {
    pub(crate) fn code(self) -> u8 {
        self as u8
    }

    pub(crate) fn from_code(code: u8) -> Option<Aggregation> {
        [
            Aggregation::Average,
            Aggregation::Sum,
            Aggregation::Min,
            Aggregation::Max,
            Aggregation::Last,
        ]
        .into_iter()
        .find(|a| a.code() == code)
    }

    /// What folding no value gives: the start of a running aggregate.
    pub(crate) fn identity(self) -> f64 {
        match self {
            // The start the standard library's float sum uses, so a running sum is that sum.
            Aggregation::Average | Aggregation::Sum => std::iter::empty::<f64>().sum(),
            Aggregation::Min => f64::INFINITY,
            Aggregation::Max => f64::NEG_INFINITY,
            Aggregation::Last => f64::NAN,
        }
    }

    /// Takes the next known value (in time order) into a running aggregate.
    pub(crate) fn fold(self, acc: f64, value: f64) -> f64 {
        match self {
            Aggregation::Average | Aggregation::Sum => acc + value,
            Aggregation::Min => acc.min(value),
            Aggregation::Max => acc.max(value),
            Aggregation::Last => value,
        }
    }

    /// The aggregate of `count` values folded into `acc`; `None` for none.
    pub(crate) fn finish(self, acc: f64, count: u32) -> Option<f64> {
        (count > 0).then(|| match self {
            Aggregation::Average => acc / f64::from(count),
            _ => acc,
        })
    }
}

/// `[[retention]]` in the `[storage]` config section.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct RetentionRule {
    /// A regular expression matched against the series name.
    pub pattern: String,
    /// Archives, finest first: `10s:6h,1m:7d,10m:5y` (step:duration; units s, m/min, h, d,
    /// w, y; a bare number of points is also accepted, as in carbon: `60:1440`).
    pub retentions: String,
}

/// `[[aggregation]]` in the `[storage]` config section.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct AggregationRule {
    pub pattern: String,
    pub method: Aggregation,
    /// Share of a coarse slot's finer values that must be known for it to get a value.
    pub x_files_factor: f64,
}

/// The `[storage]` config section.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct TsdbConfig {
    /// Seconds between durable flushes; a crash loses at most this much.
    pub fsync_interval_secs: f64,
    /// Most series the store will hold; new ones beyond are refused and counted.
    pub max_series: u64,
    /// Most new series per minute; beyond, new ones are refused and counted.
    pub max_new_series_per_minute: u64,
    /// Memory for the storage engine's block cache, in bytes; 0 (the default) leaves
    /// caching to the operating system's page cache. The engine's cache keeps bookkeeping
    /// for up to half a million evicted blocks beyond this size (tens of MB once warm),
    /// and reads measured no faster with it (docs/decisions/0005-no-engine-block-cache.md).
    pub cache_bytes: u64,
    /// Points queued in memory before the next flush starts early; writers over it are
    /// asked to wait (`Tsdb::has_room`), so memory stays bounded under any send rate.
    pub max_queued_points: u64,
    /// Seconds between checkpoints, which write flushed points into the store's blocks.
    /// Until then a flush is durable as one log record and the points are held in memory
    /// (about 40 bytes a slot written), so a flush writes little however many series it has.
    pub checkpoint_interval_secs: f64,
    /// Slot writes held in memory before a checkpoint starts early.
    pub max_pending_writes: u64,
    /// Retention rules, first match wins; the defaults follow after any given here.
    pub retention: Vec<RetentionRule>,
    /// Aggregation rules, first match wins; the defaults follow after any given here.
    pub aggregation: Vec<AggregationRule>,
}

impl Default for TsdbConfig {
    fn default() -> Self {
        TsdbConfig {
            fsync_interval_secs: 1.0,
            max_series: 1_000_000,
            max_new_series_per_minute: 100_000,
            cache_bytes: 0,
            max_queued_points: 1_000_000,
            checkpoint_interval_secs: 300.0,
            max_pending_writes: 2_000_000,
            retention: Vec::new(),
            aggregation: Vec::new(),
        }
    }
}

/// StatsD's recommended schema for everything: 10 s for 6 hours, 1 min for 7 days, 10 min
/// for 5 years.
pub const DEFAULT_RETENTIONS: &str = "10s:6h,1m:7d,10m:5y";

/// StatsD's recommended aggregation rules.
pub fn default_aggregation() -> Vec<AggregationRule> {
    let rule = |pattern: &str, method, x_files_factor| AggregationRule {
        pattern: pattern.to_string(),
        method,
        x_files_factor,
    };
    vec![
        rule(r"\.lower$", Aggregation::Min, 0.1),
        rule(r"\.upper(_\d+)?$", Aggregation::Max, 0.1),
        rule(r"\.sum$", Aggregation::Sum, 0.0),
        rule(r"\.count$", Aggregation::Sum, 0.0),
        rule(r"^stats_counts\.", Aggregation::Sum, 0.0),
        rule(".*", Aggregation::Average, 0.3),
    ]
}

/// Parses `10s:6h,1m:7d` into archives, finest first, checking whisper's rules: each step
/// divides the next, and each archive covers more time than the one before.
pub fn parse_retentions(text: &str) -> Result<Vec<Archive>, TsdbError> {
    let bad = |why: String| TsdbError::Config(format!("retentions '{text}': {why}"));
    let mut archives = Vec::new();
    for part in text.split(',').map(str::trim) {
        let (step, span) = part
            .split_once(':')
            .ok_or_else(|| bad(format!("'{part}' is not step:duration")))?;
        let step = duration_secs(step).ok_or_else(|| bad(format!("'{step}' is not a duration")))?;
        if step == 0 {
            return Err(bad(format!("'{part}' has a step of 0")));
        }
        let points = match span.parse::<u64>() {
            Ok(points) => points,
            Err(_) => {
                duration_secs(span).ok_or_else(|| bad(format!("'{span}' is not a duration")))?
                    / step
            }
        };
        let step = u32::try_from(step).map_err(|_| bad("step too long".into()))?;
        let points = u32::try_from(points).map_err(|_| bad("too many points".into()))?;
        if step == 0 || points == 0 {
            return Err(bad(format!("'{part}' keeps nothing")));
        }
        archives.push(Archive { step, points });
    }
    for pair in archives.windows(2) {
        if pair[1].step <= pair[0].step || pair[1].step % pair[0].step != 0 {
            return Err(bad("each step must be a multiple of the one before".into()));
        }
        if pair[1].retention() <= pair[0].retention() {
            return Err(bad(
                "each archive must keep more time than the one before".into()
            ));
        }
    }
    if archives.is_empty() {
        return Err(bad("no archives".into()));
    }
    Ok(archives)
}

/// Seconds in `10s`, `5m`, `5min`, `6h`, `7d`, `2w`, `5y`, or a bare number of seconds.
fn duration_secs(text: &str) -> Option<u64> {
    let digits = text.bytes().take_while(u8::is_ascii_digit).count();
    let amount: u64 = text[..digits].parse().ok()?;
    let unit = &text[digits..];
    let seconds = match unit {
        "" | "s" | "sec" | "secs" | "second" | "seconds" => 1,
        "m" | "min" | "mins" | "minute" | "minutes" => 60,
        "h" | "hour" | "hours" => 3600,
        "d" | "day" | "days" => 86_400,
        "w" | "week" | "weeks" => 7 * 86_400,
        "y" | "year" | "years" => 365 * 86_400,
        _ => return None,
    };
    amount.checked_mul(seconds)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn retentions() {
        assert_eq!(
            parse_retentions(DEFAULT_RETENTIONS).unwrap(),
            vec![
                Archive {
                    step: 10,
                    points: 2160
                },
                Archive {
                    step: 60,
                    points: 10_080
                },
                Archive {
                    step: 600,
                    points: 262_800
                },
            ]
        );
        assert_eq!(
            parse_retentions("60:1440").unwrap(),
            vec![Archive {
                step: 60,
                points: 1440
            }]
        );
        for bad in [
            "",
            "10s",
            "10x:1d",
            "10s:6h,15s:7d",
            "10s:6h,1m:1h",
            "0s:1h",
        ] {
            assert!(parse_retentions(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn running_aggregates() {
        let run = |method: Aggregation, values: &[f64]| {
            let acc = values
                .iter()
                .fold(method.identity(), |acc, &v| method.fold(acc, v));
            method.finish(acc, values.len() as u32)
        };
        let v = [1.0, 5.0, 3.0];
        assert_eq!(run(Aggregation::Average, &v), Some(3.0));
        assert_eq!(run(Aggregation::Sum, &v), Some(9.0));
        assert_eq!(run(Aggregation::Min, &v), Some(1.0));
        assert_eq!(run(Aggregation::Max, &v), Some(5.0));
        assert_eq!(run(Aggregation::Last, &v), Some(3.0));
        assert_eq!(run(Aggregation::Sum, &[]), None);
        // A running sum is the standard library's sum, signed zeros included.
        for values in [
            &[-0.0][..],
            &[0.0, -0.0],
            &[0.1, 0.2, 0.3],
            &[1e308, 1e308, -1e308],
        ] {
            let sum: f64 = values.iter().sum();
            assert_eq!(
                run(Aggregation::Sum, values).map(f64::to_bits),
                Some(sum.to_bits())
            );
        }
    }
}
