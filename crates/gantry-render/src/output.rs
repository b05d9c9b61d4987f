//! Shaping evaluated series for the render API as graphite-web does: `maxDataPoints`
//! consolidation (with its start nudge so buckets stay aligned between refreshes),
//! JSON datapoints (`[value, timestamp]`, `noNullPoints`), and CSV rows.

use std::collections::BTreeMap;

use serde::Serialize;

use crate::Series;

/// Output options of a render request.
#[derive(Debug, Clone, Copy, Default)]
pub struct RenderOptions {
    pub max_data_points: Option<usize>,
    /// Drop null points, and series left with none.
    pub no_null_points: bool,
}

/// One series in graphite-web's JSON render format.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct JsonSeries {
    pub target: String,
    pub tags: BTreeMap<String, String>,
    pub datapoints: Vec<(Option<f64>, i64)>,
}

/// graphite-web's `maxDataPoints` consolidation of a whole answer: a series with more
/// points than `max_data_points` over the answer's time range is read `valuesPerPoint =
/// ceil(points / max_data_points)` points at a time with its consolidation function; its
/// start moves to the next multiple of the new step (dropping one point fewer than the
/// steps it moved, as graphite-web does). `max_data_points == 1` folds each series into
/// one point. Returned series have the new step; `end` is unchanged.
pub fn consolidate(list: &[Series], max_data_points: usize) -> Vec<Series> {
    let Some(start) = list.iter().map(|s| s.start).min() else {
        return Vec::new();
    };
    let end = list.iter().map(|s| s.end).max().unwrap_or(start);
    let range = (end - start) as f64;
    list.iter()
        .map(|s| {
            let mut s = s.clone();
            if max_data_points == 1 {
                let n = s.values.len().max(1);
                s.values = s.consolidated_values(n);
                s.step *= n as i64;
            } else if s.step > 0 && (max_data_points as f64) < range / s.step as f64 {
                let points = range / s.step as f64;
                let vpp = (points / max_data_points as f64).ceil() as i64;
                let seconds_per_point = vpp * s.step;
                let nudge = seconds_per_point + s.start.rem_euclid(s.step)
                    - s.start.rem_euclid(seconds_per_point);
                s.start += nudge;
                let lose = (nudge / s.step).max(1) as usize - 1;
                s.values.drain(..lose.min(s.values.len()));
                s.values = s.consolidated_values(vpp as usize);
                s.step = seconds_per_point;
            }
            s
        })
        .collect()
}

/// `[value, timestamp]` pairs: values from `start` every `step`, timestamps up to and
/// including `end` (graphite-web zips the two, so the shorter decides).
pub fn to_json_datapoints(series: &Series) -> Vec<(Option<f64>, i64)> {
    let step = series.step.max(1);
    let count = ((series.end - series.start).div_euclid(step) + 1).max(0) as usize;
    series
        .values
        .iter()
        .take(count)
        .enumerate()
        .map(|(i, v)| (v.filter(|x| !x.is_nan()), series.start + i as i64 * step))
        .collect()
}

/// The JSON render answer for a list of series.
pub fn to_json(list: &[Series], options: RenderOptions) -> Vec<JsonSeries> {
    let list = match options.max_data_points {
        Some(m) if m > 0 => consolidate(list, m),
        _ => list.to_vec(),
    };
    list.iter()
        .filter_map(|s| {
            let mut datapoints = to_json_datapoints(s);
            if options.no_null_points {
                datapoints.retain(|p| p.0.is_some());
                if datapoints.is_empty() {
                    return None;
                }
            }
            Some(JsonSeries {
                target: s.name.clone(),
                tags: s.tags.clone(),
                datapoints,
            })
        })
        .collect()
}

/// graphite-web's CSV: `name,YYYY-MM-DD HH:MM:SS,value` per point (UTC), an empty value
/// for null, lines ending in CRLF as Python's csv module writes them.
pub fn to_csv(list: &[Series]) -> String {
    let mut out = String::new();
    for s in list {
        let name = csv_field(&s.name);
        for (i, v) in s.values.iter().enumerate() {
            let t = s.start + i as i64 * s.step;
            let value = v.map(python_float).unwrap_or_default();
            out.push_str(&format!("{name},{},{value}\r\n", utc_datetime(t)));
        }
    }
    out
}

fn csv_field(s: &str) -> String {
    if s.contains([',', '"', '\n', '\r']) {
        format!("\"{}\"", s.replace('"', "\"\""))
    } else {
        s.to_string()
    }
}

/// Python's `str(float)` for ordinary magnitudes (`2.0`, `0.5`).
fn python_float(x: f64) -> String {
    if x.is_nan() {
        "nan".into()
    } else if x.is_infinite() {
        if x > 0.0 { "inf" } else { "-inf" }.into()
    } else if x.fract() == 0.0 && x.abs() < 1e16 {
        format!("{x:.1}")
    } else {
        format!("{x}")
    }
}

/// `YYYY-MM-DD HH:MM:SS` in UTC.
fn utc_datetime(t: i64) -> String {
    let days = t.div_euclid(86_400);
    let secs = t.rem_euclid(86_400);
    // Civil date from days since 1970-01-01 (Howard Hinnant's algorithm).
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    format!(
        "{year:04}-{month:02}-{day:02} {:02}:{:02}:{:02}",
        secs / 3600,
        secs % 3600 / 60,
        secs % 60
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn csv_rows() {
        let s = Series::new(
            "a.b",
            1_700_000_000,
            1_700_000_120,
            60,
            vec![Some(2.0), None],
        );
        assert_eq!(
            to_csv(&[s]),
            "a.b,2023-11-14 22:13:20,2.0\r\na.b,2023-11-14 22:14:20,\r\n"
        );
    }
}
