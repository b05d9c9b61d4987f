//! The series model (graphite-web's `TimeSeries`): values on a fixed step, a name, tags, a
//! consolidation function, and the helpers every render function shares: graphite-web's
//! tag parsing of names, consolidation of runs of points (its `valuesPerPoint` iteration),
//! and normalisation of several series onto one step (least common multiple).

use std::collections::BTreeMap;
use std::fmt;

/// How runs of points are combined into one (graphite-web's `consolidationFunc`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Consolidation {
    Average,
    /// Like `Average`, but nulls count as zero.
    AvgZero,
    Sum,
    Min,
    Max,
    First,
    Last,
}

impl Consolidation {
    /// graphite-web's name for it (`average`, `sum`, …).
    pub fn as_str(self) -> &'static str {
        match self {
            Consolidation::Average => "average",
            Consolidation::AvgZero => "avg_zero",
            Consolidation::Sum => "sum",
            Consolidation::Min => "min",
            Consolidation::Max => "max",
            Consolidation::First => "first",
            Consolidation::Last => "last",
        }
    }

    /// Parses graphite-web's names (`avg` is `average`).
    pub fn parse(name: &str) -> Option<Consolidation> {
        Some(match name {
            "average" | "avg" => Consolidation::Average,
            "avg_zero" => Consolidation::AvgZero,
            "sum" => Consolidation::Sum,
            "min" => Consolidation::Min,
            "max" => Consolidation::Max,
            "first" => Consolidation::First,
            "last" => Consolidation::Last,
            _ => return None,
        })
    }

    fn apply(self, buf: &[f64]) -> f64 {
        match self {
            Consolidation::Average | Consolidation::AvgZero => {
                buf.iter().sum::<f64>() / buf.len() as f64
            }
            Consolidation::Sum => buf.iter().sum(),
            Consolidation::Min => buf.iter().copied().fold(f64::INFINITY, f64::min),
            Consolidation::Max => buf.iter().copied().fold(f64::NEG_INFINITY, f64::max),
            Consolidation::First => buf[0],
            Consolidation::Last => buf[buf.len() - 1],
        }
    }
}

impl fmt::Display for Consolidation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// One series. `values[i]` is at `start + i * step` (epoch seconds); `end` is exclusive
/// as graphite-web's `TimeSeries` has it (`end - start == len * step` for stored data).
#[derive(Debug, Clone, PartialEq)]
pub struct Series {
    /// graphite-web's output name, e.g. `sumSeries(a.*)`.
    pub name: String,
    /// `name` plus the `;k=v` tags of a tagged name (graphite-web's `series.tags`).
    pub tags: BTreeMap<String, String>,
    pub start: i64,
    pub end: i64,
    pub step: i64,
    pub values: Vec<Option<f64>>,
    /// Used when points are combined: by normalisation and by `maxDataPoints`.
    pub consolidation: Consolidation,
    /// The path expression (or function text) this series came from.
    pub path_expression: String,
    /// Fraction of non-null points a consolidated point needs (0 = any one point).
    pub x_files_factor: f64,
}

impl Series {
    /// A series whose tags are parsed from its name as graphite-web does.
    pub fn new(
        name: impl Into<String>,
        start: i64,
        end: i64,
        step: i64,
        values: Vec<Option<f64>>,
    ) -> Series {
        let name = name.into();
        Series {
            tags: tags_from_name(&name),
            path_expression: name.clone(),
            name,
            start,
            end,
            step,
            values,
            consolidation: Consolidation::Average,
            x_files_factor: 0.0,
        }
    }

    /// A copy with other values, keeping tags, consolidation and factor (graphite-web's
    /// `series.copy(name=…, values=…)`); the path expression becomes the new name.
    pub(crate) fn derive(&self, name: String, values: Vec<Option<f64>>) -> Series {
        Series {
            path_expression: name.clone(),
            name,
            tags: self.tags.clone(),
            start: self.start,
            end: self.end,
            step: self.step,
            values,
            consolidation: self.consolidation,
            x_files_factor: self.x_files_factor,
        }
    }

    pub(crate) fn set_tag(&mut self, key: &str, value: impl Into<String>) {
        self.tags.insert(key.to_string(), value.into());
    }

    /// The values read `values_per_point` at a time, as graphite-web iterates a consolidated
    /// series: each run gives its consolidation (or null when it has no non-null point or
    /// fewer than `x_files_factor` of them); a partial last run counts against the full run.
    pub fn consolidated_values(&self, values_per_point: usize) -> Vec<Option<f64>> {
        if values_per_point <= 1 {
            return self.values.clone();
        }
        let vpp = values_per_point as f64;
        let mut out = Vec::with_capacity(self.values.len() / values_per_point + 1);
        let mut buf = Vec::with_capacity(values_per_point);
        for chunk in self.values.chunks(values_per_point) {
            buf.clear();
            let mut non_null = 0usize;
            for v in chunk {
                match v {
                    Some(x) => {
                        buf.push(*x);
                        non_null += 1;
                    }
                    None if self.consolidation == Consolidation::AvgZero => buf.push(0.0),
                    None => {}
                }
            }
            if non_null > 0 && non_null as f64 / vpp >= self.x_files_factor {
                out.push(Some(self.consolidation.apply(&buf)));
            } else {
                out.push(None);
            }
        }
        out
    }
}

/// graphite-web's tags for a series name: `{name}` for function-looking names
/// (`sumSeries(…)`), otherwise the carbon form `metric;k=v;…` parsed, falling back to
/// `{name}` when that is not valid.
pub fn tags_from_name(name: &str) -> BTreeMap<String, String> {
    let only_name = || BTreeMap::from([("name".to_string(), name.to_string())]);
    if looks_like_call(name) {
        return only_name();
    }
    parse_carbon_tags(name).unwrap_or_else(only_name)
}

/// `^[a-z]+[(].+[)]$`, case-insensitive.
fn looks_like_call(name: &str) -> bool {
    let letters = name.bytes().take_while(u8::is_ascii_alphabetic).count();
    letters > 0
        && name.len() >= letters + 3
        && name.as_bytes()[letters] == b'('
        && name.ends_with(')')
}

fn parse_carbon_tags(path: &str) -> Option<BTreeMap<String, String>> {
    let mut segments = path.split(';');
    let metric = segments.next().filter(|m| !m.is_empty())?;
    let mut tags = BTreeMap::new();
    for segment in segments {
        let (tag, value) = segment.split_once('=')?;
        if tag.is_empty()
            || value.is_empty()
            || tag.contains(['!', '^', '='])
            || value.starts_with('~')
        {
            return None;
        }
        tags.insert(tag.to_string(), value.to_string());
    }
    let name = metric.trim_start_matches('~');
    if name.is_empty() {
        return None;
    }
    tags.insert("name".to_string(), name.to_string());
    Some(tags)
}

fn gcd(a: i64, b: i64) -> i64 {
    if b == 0 {
        a
    } else {
        gcd(b, a % b)
    }
}

/// The least common multiple, `i64::MAX` when it is larger (steps that far apart leave one
/// point at most either way).
pub(crate) fn lcm(a: i64, b: i64) -> i64 {
    if a == b || a == 0 || b == 0 {
        return a.max(b);
    }
    (a / gcd(a, b)).saturating_mul(b)
}

/// Series on one step: the least common multiple of theirs, each consolidated to it.
pub(crate) struct Normalized<'a> {
    pub start: i64,
    pub end: i64,
    pub step: i64,
    /// Consolidated values, one per input series, in input order (a series already on the
    /// common step is borrowed, not copied).
    pub values: Vec<std::borrow::Cow<'a, [Option<f64>]>>,
}

impl Normalized<'_> {
    /// The longest row count (graphite-web zips with `zip_longest`).
    pub fn rows(&self) -> usize {
        self.values.iter().map(|v| v.len()).max().unwrap_or(0)
    }

    /// Row `i` across all series, missing points as null.
    pub fn row(&self, i: usize) -> Vec<Option<f64>> {
        let mut row = Vec::with_capacity(self.values.len());
        self.fill_row(i, &mut row);
        row
    }

    /// Row `i` into `row` (cleared first), so a loop over rows allocates once.
    pub fn fill_row(&self, i: usize, row: &mut Vec<Option<f64>>) {
        row.clear();
        row.extend(self.values.iter().map(|v| v.get(i).copied().flatten()));
    }
}

/// graphite-web's `normalize`: `None` for no series.
pub(crate) fn normalize<'a>(list: &[&'a Series]) -> Option<Normalized<'a>> {
    let first = list.first()?;
    let step = list.iter().map(|s| s.step).fold(first.step, lcm);
    let start = list.iter().map(|s| s.start).min().unwrap_or(first.start);
    let mut end = list.iter().map(|s| s.end).max().unwrap_or(first.end);
    if step > 0 {
        end -= (end - start) % step;
    }
    let values = list
        .iter()
        .map(|s| {
            let vpp = if s.step > 0 { step / s.step } else { 1 };
            if vpp <= 1 {
                std::borrow::Cow::Borrowed(s.values.as_slice())
            } else {
                std::borrow::Cow::Owned(s.consolidated_values(vpp as usize))
            }
        })
        .collect();
    Some(Normalized {
        start,
        end,
        step,
        values,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tags_follow_graphite_web() {
        let check = |name: &str, expected: &[(&str, &str)]| {
            let want: BTreeMap<String, String> = expected
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect();
            assert_eq!(tags_from_name(name), want, "{name}");
        };
        check("a.b", &[("name", "a.b")]);
        check(
            "a.b;dc=eu;host=x",
            &[("name", "a.b"), ("dc", "eu"), ("host", "x")],
        );
        check("sumSeries(a;b=c)", &[("name", "sumSeries(a;b=c)")]);
        check("a;broken", &[("name", "a;broken")]);
        check("~a;x=y", &[("name", "a"), ("x", "y")]);
    }

    #[test]
    fn consolidation_counts_a_partial_run_against_a_full_one() {
        let mut s = Series::new("a", 0, 50, 10, vec![Some(1.0), None, Some(3.0), None, None]);
        assert_eq!(s.consolidated_values(2), vec![Some(1.0), Some(3.0), None]);
        s.x_files_factor = 0.5;
        s.values[4] = Some(5.0);
        // The last run holds one of two points: 1/2 >= 0.5.
        assert_eq!(
            s.consolidated_values(2),
            vec![Some(1.0), Some(3.0), Some(5.0)]
        );
        s.x_files_factor = 0.6;
        assert_eq!(s.consolidated_values(2), vec![None, None, None]);
    }
}
