//! The render functions, each following graphite-web 1.1.x: its output names (`%g`
//! formatting included), its tags, its handling of nulls, steps and time ranges.

use std::collections::BTreeMap;

use gantry_graphite::target::{parse, Expr};
use regex::Regex;

use crate::eval::Args;
use crate::series::{normalize, tags_from_name, Consolidation, Normalized};
use crate::time::parse_time_offset;
use crate::{RenderError, Series, MAX_NAME_BYTES};

type R = Result<Vec<Series>, RenderError>;

/// Runs the function `args` calls.
pub(crate) fn run(a: &Args<'_, '_>) -> R {
    match a.name() {
        "aliasSub" => alias_sub(a),
        "constantLine" => constant_line(a),
        "alias" => {
            let name = a.string(1)?;
            Ok(map_each(a.series(0)?, |s| s.name = name.clone()))
        }
        "aliasByNode" | "aliasByTags" => alias_by_node(a),
        "aliasByMetric" => Ok(map_each(a.series(0)?, |s| s.name = substr_last(&s.name))),
        "sumSeries" => aggregate_lists(a, "sum"),
        "averageSeries" => aggregate_lists(a, "average"),
        "maxSeries" => aggregate_lists(a, "max"),
        "minSeries" => aggregate_lists(a, "min"),
        "diffSeries" => aggregate_lists(a, "diff"),
        "divideSeries" => divide_series(a),
        "asPercent" => as_percent(a),
        "countSeries" => count_series(a),
        "sumSeriesWithWildcards" => sum_with_wildcards(a),
        "groupByNode" => group_by_node(a),
        "groupByTags" => group_by_tags(a),
        "percentileOfSeries" => percentile_of_series(a),
        "scale" => {
            let f = a.number(1)?;
            Ok(map_each(a.series(0)?, |s| {
                s.set_tag("scale", py_float(f));
                rename(s, format!("scale({},{})", s.name, fmt_g(f)));
                for v in s.values.iter_mut() {
                    *v = v.map(|x| x * f);
                }
            }))
        }
        "offset" => {
            let f = a.number(1)?;
            Ok(map_each(a.series(0)?, |s| {
                s.set_tag("offset", py_float(f));
                rename(s, format!("offset({},{})", s.name, fmt_g(f)));
                for v in s.values.iter_mut() {
                    *v = v.map(|x| x + f);
                }
            }))
        }
        "scaleToSeconds" => {
            let secs = a.number(1)?;
            Ok(map_each(a.series(0)?, |s| {
                s.set_tag("scaleToSeconds", py_float(secs));
                rename(s, format!("scaleToSeconds({},{})", s.name, secs.trunc()));
                let factor = secs / s.step as f64;
                for v in s.values.iter_mut() {
                    *v = v.map(|x| round6(x * factor));
                }
            }))
        }
        "perSecond" | "nonNegativeDerivative" => non_negative(a),
        "derivative" => Ok(derive_each(a.series(0)?, "derivative", |values| {
            let mut prev: Option<f64> = None;
            values
                .iter()
                .map(|&v| {
                    let out = match (prev, v) {
                        (Some(p), Some(x)) => Some(x - p),
                        _ => None,
                    };
                    prev = v;
                    out
                })
                .collect()
        })),
        "integral" => Ok(derive_each(a.series(0)?, "integral", |values| {
            let mut current = 0.0;
            values
                .iter()
                .map(|v| {
                    v.map(|x| {
                        current += x;
                        current
                    })
                })
                .collect()
        })),
        "movingAverage" => moving_average(a),
        "summarize" => summarize(a),
        "hitcount" => hitcount(a),
        "timeShift" => time_shift(a),
        "timeStack" => time_stack(a),
        "highestCurrent" => highest(a, "current", true),
        "highestAverage" => highest(a, "average", true),
        "lowestCurrent" => highest(a, "current", false),
        "limit" => {
            let n = a.number(1)?;
            let mut list = a.series(0)?;
            list.truncate(n.max(0.0) as usize);
            Ok(list)
        }
        "sortByMaxima" => {
            let mut list = a.series(0)?;
            let key = |s: &Series| agg("max", &s.values).unwrap_or(f64::NEG_INFINITY);
            list.sort_by(|x, y| key(y).total_cmp(&key(x)));
            Ok(list)
        }
        "exclude" => {
            let pattern = a.string(1)?;
            let re = a.ev.regex(&pattern).map_err(|e| {
                a.error(1, format!("pattern is not a valid regular expression: {e}"))
            })?;
            Ok(a.series(0)?
                .into_iter()
                .filter(|s| !re.is_match(&s.name))
                .collect())
        }
        "removeBelowValue" => {
            let n = a.number(1)?;
            Ok(map_each(a.series(0)?, |s| {
                rename(s, format!("removeBelowValue({}, {})", s.name, fmt_g(n)));
                for v in s.values.iter_mut() {
                    if v.is_some_and(|x| x < n) {
                        *v = None;
                    }
                }
            }))
        }
        "keepLastValue" => keep_last_value(a),
        "transformNull" => transform_null(a),
        "consolidateBy" => {
            let func = a.string(1)?;
            let c = Consolidation::parse(&func).ok_or_else(|| {
                a.error(
                    1,
                    format!(
                        "consolidationFunc must be one of sum, average, avg_zero, min, max, first, last (got '{func}')"
                    ),
                )
            })?;
            Ok(map_each(a.series(0)?, |s| {
                s.consolidation = c;
                s.set_tag("consolidateBy", func.clone());
                rename(s, format!("consolidateBy({},\"{}\")", s.name, func));
            }))
        }
        "drawAsInfinite" => Ok(map_each(a.series(0)?, |s| {
            s.set_tag("drawAsInfinite", "1");
            s.name = format!("drawAsInfinite({})", s.name);
        })),
        "nPercentile" => n_percentile(a),
        "holtWintersForecast" => holt_winters(a, false),
        "holtWintersConfidenceBands" => holt_winters(a, true),
        "seriesByTag" => series_by_tag(a),
        "events" => events(a),
        other => Err(RenderError::UnknownFunction {
            name: other.to_string(),
            position: a.call.pos,
        }),
    }
}

// ---- helpers ----

fn map_each(mut list: Vec<Series>, mut f: impl FnMut(&mut Series)) -> Vec<Series> {
    for s in &mut list {
        f(s);
    }
    list
}

/// Renames and makes the new name the path expression (graphite-web's in-place functions).
fn rename(s: &mut Series, name: String) {
    s.path_expression = name.clone();
    s.name = name;
}

fn derive_each(
    list: Vec<Series>,
    func: &str,
    f: impl Fn(&[Option<f64>]) -> Vec<Option<f64>>,
) -> Vec<Series> {
    list.into_iter()
        .map(|mut s| {
            s.set_tag(func, "1");
            let values = f(&s.values);
            s.derive(format!("{func}({})", s.name), values)
        })
        .collect()
}

fn round6(x: f64) -> f64 {
    let r = (x * 1e6).round() / 1e6;
    if r.is_finite() {
        r
    } else {
        x
    }
}

/// Python's `%g`.
pub(crate) fn fmt_g(x: f64) -> String {
    if x == 0.0 {
        return if x.is_sign_negative() {
            "-0".into()
        } else {
            "0".into()
        };
    }
    if !x.is_finite() {
        return if x.is_nan() {
            "nan".into()
        } else if x > 0.0 {
            "inf".into()
        } else {
            "-inf".into()
        };
    }
    let sci = format!("{x:.5e}");
    let (mantissa, exp) = sci.split_once('e').unwrap_or((&sci, "0"));
    let exp: i32 = exp.parse().unwrap_or(0);
    if !(-4..6).contains(&exp) {
        let m = trim_zeros(mantissa);
        format!("{m}e{}{:02}", if exp < 0 { '-' } else { '+' }, exp.abs())
    } else {
        let decimals = (5 - exp).max(0) as usize;
        trim_zeros(&format!("{x:.decimals$}"))
    }
}

fn trim_zeros(s: &str) -> String {
    if s.contains('.') {
        s.trim_end_matches('0').trim_end_matches('.').to_string()
    } else {
        s.to_string()
    }
}

/// Python's `str()` of a number argument: integers as written without a fraction.
pub(crate) fn py_num(x: f64) -> String {
    if x.fract() == 0.0 && x.abs() < 1e16 {
        format!("{}", x as i64)
    } else {
        format!("{x}")
    }
}

/// Python's `str(float)`: graphite-web turns `float` parameters into floats, so `2`
/// becomes `2.0` in tags and names built with `str()`.
pub(crate) fn py_float(x: f64) -> String {
    if x.fract() == 0.0 && x.abs() < 1e16 {
        format!("{x:.1}")
    } else {
        format!("{x}")
    }
}

fn non_null(values: &[Option<f64>]) -> Vec<f64> {
    values.iter().flatten().copied().collect()
}

/// graphite-web's aggregation functions (its `safe*`): `None` for an unknown name or when
/// there is nothing to aggregate.
pub(crate) fn agg(func: &str, row: &[Option<f64>]) -> Option<f64> {
    let func = match func {
        "avg" => "average",
        "total" => "sum",
        "current" => "last",
        "rangeOf" => "range",
        f => f.strip_suffix("Series").unwrap_or(f),
    };
    // The common ones without collecting the values first (aggregating a few hundred
    // series over ten thousand rows would allocate a vector per row); the same operations
    // in the same order as below, so the same results to the bit.
    let present = || row.iter().flatten().copied();
    match func {
        "sum" => return present().next().is_some().then(|| present().sum::<f64>()),
        "average" => {
            let count = present().count();
            return (count > 0).then(|| present().sum::<f64>() / count as f64);
        }
        "min" => {
            return present()
                .next()
                .is_some()
                .then(|| present().fold(f64::INFINITY, f64::min))
        }
        "max" => {
            return present()
                .next()
                .is_some()
                .then(|| present().fold(f64::NEG_INFINITY, f64::max))
        }
        "last" => return present().last(),
        "count" => return Some(present().count() as f64),
        _ => {}
    }
    let v = non_null(row);
    match func {
        "count" => return Some(v.len() as f64),
        "avg_zero" => {
            return (!row.is_empty())
                .then(|| row.iter().map(|x| x.unwrap_or(0.0)).sum::<f64>() / row.len() as f64)
        }
        "multiply" => {
            return if row.iter().any(Option::is_none) || row.is_empty() {
                None
            } else {
                Some(v.iter().product())
            }
        }
        _ => {}
    }
    if v.is_empty() {
        return None;
    }
    let sum = || v.iter().sum::<f64>();
    let max = || v.iter().copied().fold(f64::NEG_INFINITY, f64::max);
    let min = || v.iter().copied().fold(f64::INFINITY, f64::min);
    Some(match func {
        "average" => sum() / v.len() as f64,
        "sum" => sum(),
        "min" => min(),
        "max" => max(),
        "last" => v[v.len() - 1],
        "diff" => v[0] - v[1..].iter().sum::<f64>(),
        "median" => {
            let mut s = v.clone();
            s.sort_by(f64::total_cmp);
            let mid = s.len() / 2;
            if s.len() & 1 == 0 {
                (s[mid - 1] + s[mid]) / 2.0
            } else {
                s[mid]
            }
        }
        "stddev" => {
            let avg = sum() / v.len() as f64;
            (v.iter().map(|x| (x - avg) * (x - avg)).sum::<f64>() / v.len() as f64).sqrt()
        }
        "range" => max() - min(),
        _ => return None,
    })
}

fn is_agg(func: &str) -> bool {
    matches!(
        func.strip_suffix("Series").unwrap_or(func),
        "average"
            | "avg"
            | "avg_zero"
            | "median"
            | "sum"
            | "total"
            | "min"
            | "max"
            | "diff"
            | "stddev"
            | "count"
            | "range"
            | "rangeOf"
            | "multiply"
            | "last"
            | "current"
    )
}

fn check_agg(a: &Args<'_, '_>, i: usize, func: &str) -> Result<(), RenderError> {
    if is_agg(func) {
        Ok(())
    } else {
        Err(a.error(
            i,
            format!("unsupported aggregation function '{func}' (use average, sum, min, max, last, median, diff, stddev, count, range or multiply)"),
        ))
    }
}

fn format_path_expressions(list: &[&Series]) -> String {
    let mut seen: std::collections::HashSet<&str> = std::collections::HashSet::new();
    let mut distinct: Vec<&str> = Vec::new();
    for s in list {
        if seen.insert(&s.path_expression) {
            distinct.push(&s.path_expression);
        }
    }
    distinct.join(",")
}

/// graphite-web's `aggregate`: one series over all, on their common step.
fn aggregate(list: &[&Series], func: &str) -> Option<Series> {
    let func = func.strip_suffix("Series").unwrap_or(func);
    let n = normalize(list)?;
    let name = format!("{func}Series({})", format_path_expressions(list));
    let values = columns(&n, func).unwrap_or_else(|| {
        let mut row = Vec::with_capacity(list.len());
        (0..n.rows())
            .map(|i| {
                n.fill_row(i, &mut row);
                if row.iter().any(Option::is_some) {
                    agg(func, &row)
                } else {
                    None
                }
            })
            .collect()
    });
    let mut tags = list[0].tags.clone();
    for s in list {
        tags.retain(|k, v| s.tags.get(k) == Some(v));
    }
    tags.entry("name".into()).or_insert_with(|| name.clone());
    tags.insert("aggregatedBy".into(), func.to_string());
    let mut out = Series::new(name, n.start, n.end, n.step, values);
    out.tags = tags;
    Some(out)
}

/// `agg` of every row for the aggregations that fold one value at a time, computed a
/// series at a time (each series read in order, not a hundred series gathered per row):
/// the same operations in the same order per row as `agg`, so the same results to the bit.
/// `None` for the others.
fn columns(n: &Normalized<'_>, func: &str) -> Option<Vec<Option<f64>>> {
    // `agg`'s names for the same aggregations.
    let func = match func {
        "avg" => "average",
        "total" => "sum",
        "current" => "last",
        f => f,
    };
    // What `agg` starts each fold at (for a sum, what `Iterator::sum` starts at).
    let (start, op): (f64, fn(f64, f64) -> f64) = match func {
        "sum" | "average" => (std::iter::empty::<f64>().sum(), |a, v| a + v),
        "min" => (f64::INFINITY, f64::min),
        "max" => (f64::NEG_INFINITY, f64::max),
        "count" | "last" => (0.0, |_, v| v),
        _ => return None,
    };
    let rows = n.rows();
    let mut acc = vec![start; rows];
    let mut counts = vec![0u32; rows];
    for column in &n.values {
        for ((acc, count), value) in acc.iter_mut().zip(counts.iter_mut()).zip(column.iter()) {
            if let Some(v) = *value {
                *count += 1;
                *acc = op(*acc, v);
            }
        }
    }
    Some(
        acc.into_iter()
            .zip(counts)
            .map(|(acc, count)| {
                (count > 0).then(|| match func {
                    "average" => acc / f64::from(count),
                    "count" => f64::from(count),
                    _ => acc,
                })
            })
            .collect(),
    )
}

fn all_series(a: &Args<'_, '_>, from: usize) -> R {
    let mut all = Vec::new();
    for (k, e) in a.rest(from).iter().enumerate() {
        all.extend(a.series_expr(from, e, from + k + 1)?);
    }
    Ok(all)
}

fn aggregate_lists(a: &Args<'_, '_>, func: &str) -> R {
    let all = all_series(a, 0)?;
    let refs: Vec<&Series> = all.iter().collect();
    Ok(aggregate(&refs, func).into_iter().collect())
}

/// A node (integer, Python indexing) of the first path of a name, or else a tag.
fn node_or_tag(s: &Series, n: &Expr, path: Option<&str>) -> String {
    if let Expr::Number { value, .. } = n {
        if value.fract() == 0.0 {
            let base = path.unwrap_or(&s.name);
            let base = base.split(';').next().unwrap_or(base);
            let nodes: Vec<&str> = base.split('.').collect();
            let i = *value as i64;
            let idx = if i < 0 { nodes.len() as i64 + i } else { i };
            if idx >= 0 && (idx as usize) < nodes.len() {
                return nodes[idx as usize].to_string();
            }
            return s.tags.get(&py_num(*value)).cloned().unwrap_or_default();
        }
    }
    let key = match n {
        Expr::String { value, .. } => value.clone(),
        Expr::Path { path, .. } => path.clone(),
        Expr::Number { value, .. } => py_num(*value),
        _ => String::new(),
    };
    s.tags.get(&key).cloned().unwrap_or_default()
}

/// The first path inside a function-wrapped name (graphite-web's `_getFirstPathExpression`).
fn first_path_expression(name: &str) -> Option<String> {
    let mut expr = parse(name).ok()?;
    loop {
        match expr {
            Expr::Path { path, .. } => return Some(path),
            Expr::Call(mut c) if !c.args.is_empty() => expr = c.args.swap_remove(0),
            _ => return None,
        }
    }
}

fn agg_key(s: &Series, nodes: &[Expr]) -> String {
    let path = if s.name.ends_with(')') {
        first_path_expression(&s.name)
    } else {
        None
    };
    nodes
        .iter()
        .map(|n| node_or_tag(s, n, path.as_deref()))
        .collect::<Vec<_>>()
        .join(".")
}

fn check_nodes<'c>(a: &Args<'_, 'c>, i: usize) -> Result<&'c [Expr], RenderError> {
    let nodes = a.rest(i);
    for (k, n) in nodes.iter().enumerate() {
        if !matches!(n, Expr::Number { .. } | Expr::String { .. }) {
            return Err(a.error_at(
                i,
                n,
                i + k + 1,
                "a node must be an integer or a tag name in quotes".into(),
            ));
        }
    }
    Ok(nodes)
}

// ---- functions ----

fn alias_sub(a: &Args<'_, '_>) -> R {
    let search = a.string(1)?;
    let replace = a.string(2)?;
    let re =
        a.ev.regex(&search)
            .map_err(|e| a.error(1, format!("search is not a valid regular expression: {e}")))?;
    let replace = python_replacement(&replace);
    let mut list = a.series(0)?;
    for s in &mut list {
        s.name = replace_all_bounded(&re, &s.name, &replace).ok_or_else(|| {
            a.error(
                2,
                format!("replace makes a series name longer than {MAX_NAME_BYTES} bytes"),
            )
        })?;
    }
    Ok(list)
}

/// `re.replace_all(name, replace)` (with `$` references), or `None` as soon as the result
/// could grow beyond [`MAX_NAME_BYTES`]: each match may copy the whole name once per
/// reference in `replace`, so the result is checked before every expansion.
fn replace_all_bounded(re: &Regex, name: &str, replace: &str) -> Option<String> {
    let references = replace.matches('$').count();
    let most_per_match = replace
        .len()
        .saturating_add(references.saturating_mul(name.len()));
    let mut out = String::new();
    let mut last = 0;
    for caps in re.captures_iter(name) {
        let Some(whole) = caps.get(0) else { continue };
        out.push_str(&name[last..whole.start()]);
        if out.len().saturating_add(most_per_match) > MAX_NAME_BYTES {
            return None;
        }
        caps.expand(replace, &mut out);
        last = whole.end();
    }
    out.push_str(&name[last..]);
    (out.len() <= MAX_NAME_BYTES).then_some(out)
}

/// Python's `\1` / `\g<name>` replacement syntax in the regex crate's (`${1}`, `$$`).
fn python_replacement(r: &str) -> String {
    let mut out = String::new();
    let chars: Vec<char> = r.chars().collect();
    let mut i = 0;
    while i < chars.len() {
        let c = chars[i];
        if c == '$' {
            out.push_str("$$");
        } else if c == '\\' && i + 1 < chars.len() {
            let n = chars[i + 1];
            if n.is_ascii_digit() {
                let mut j = i + 1;
                let mut digits = String::new();
                while j < chars.len() && chars[j].is_ascii_digit() && digits.len() < 2 {
                    digits.push(chars[j]);
                    j += 1;
                }
                out.push_str(&format!("${{{digits}}}"));
                i = j;
                continue;
            }
            if n == 'g' && chars.get(i + 2) == Some(&'<') {
                if let Some(end) = chars[i + 3..].iter().position(|&c| c == '>') {
                    let group: String = chars[i + 3..i + 3 + end].iter().collect();
                    out.push_str(&format!("${{{group}}}"));
                    i = i + 4 + end;
                    continue;
                }
            }
            match n {
                'n' => out.push('\n'),
                't' => out.push('\t'),
                '\\' => out.push('\\'),
                other => {
                    out.push('\\');
                    out.push(other);
                }
            }
            i += 2;
            continue;
        } else {
            out.push(c);
        }
        i += 1;
    }
    out
}

fn constant_line(a: &Args<'_, '_>) -> R {
    let value = a.number(0)?;
    let (start, end) = (a.ev.from, a.ev.until);
    let step = (end - start) / 2;
    let mut s = Series::new(py_float(value), start, end, step, vec![Some(value); 3]);
    s.path_expression = format!("constantLine({})", py_float(value));
    Ok(vec![s])
}

fn alias_by_node(a: &Args<'_, '_>) -> R {
    let nodes = check_nodes(a, 1)?;
    Ok(map_each(a.series(0)?, |s| s.name = agg_key(s, nodes)))
}

/// graphite-web's `substr(…, -1, 0)` as `aliasByMetric` uses it.
fn substr_last(name: &str) -> String {
    let left = name.rfind('(').map_or(0, |i| i + 1);
    let right = name.find(')').unwrap_or(name.len());
    let clean = if right > left { &name[left..right] } else { "" };
    let last = clean.rsplit('.').next().unwrap_or("");
    match last.find(',') {
        Some(i) => last[..i].to_string(),
        None => last.to_string(),
    }
}

fn divide_series(a: &Args<'_, '_>) -> R {
    let dividends = a.series(0)?;
    let divisors = a.series(1)?;
    if divisors.is_empty() {
        return Ok(map_each(dividends, |s| {
            rename(s, format!("divideSeries({},MISSING)", s.name));
            s.values.iter_mut().for_each(|v| *v = None);
        }));
    }
    if divisors.len() > 1 {
        return Err(a.error(
            1,
            format!(
                "divisorSeries must be exactly one series (got {})",
                divisors.len()
            ),
        ));
    }
    let divisor = &divisors[0];
    // Each quotient is as long as the longer of its dividend and the divisor.
    a.ev.reserve((dividends.len() as u64).saturating_mul(divisor.values.len() as u64))?;
    Ok(dividends
        .iter()
        .filter_map(|d| {
            let n = normalize(&[d, divisor])?;
            let values = (0..n.rows())
                .map(|i| {
                    match (
                        n.values[0].get(i).copied().flatten(),
                        n.values[1].get(i).copied().flatten(),
                    ) {
                        (Some(x), Some(y)) if y != 0.0 => Some(x / y),
                        _ => None,
                    }
                })
                .collect();
            Some(Series::new(
                format!("divideSeries({},{})", d.name, divisor.name),
                n.start,
                n.end,
                n.step,
                values,
            ))
        })
        .collect())
}

fn percent(v: Option<f64>, total: Option<f64>) -> Option<f64> {
    match (v, total) {
        (Some(x), Some(t)) if t != 0.0 => Some(x / t * 100.0),
        _ => None,
    }
}

fn zip_longest(a: &[Option<f64>], b: &[Option<f64>]) -> Vec<(Option<f64>, Option<f64>)> {
    (0..a.len().max(b.len()))
        .map(|i| (a.get(i).copied().flatten(), b.get(i).copied().flatten()))
        .collect()
}

fn as_percent(a: &Args<'_, '_>) -> R {
    let list = a.series(0)?;
    if !a.rest(2).is_empty() {
        return Err(a.error(2, "grouping by nodes is not supported yet".into()));
    }
    if list.is_empty() {
        return Ok(Vec::new());
    }
    // graphite-web consolidates the list to its common step first; the results keep each
    // series' own start, end and step.
    let refs: Vec<&Series> = list.iter().collect();
    let Some(norm) = normalize(&refs) else {
        return Ok(Vec::new());
    };
    let total_expr = a.expr(1);
    let (total_values, total_text): (Vec<Option<f64>>, String) = match total_expr {
        None | Some((Expr::None { .. }, _)) => (
            {
                let mut row = Vec::with_capacity(norm.values.len());
                (0..norm.rows())
                    .map(|i| {
                        norm.fill_row(i, &mut row);
                        agg("sum", &row)
                    })
                    .collect()
            },
            format!("sumSeries({})", format_path_expressions(&refs)),
        ),
        Some((Expr::Number { value, .. }, _)) => {
            (vec![Some(*value); list[0].values.len()], py_num(*value))
        }
        Some((e, n)) => {
            let total = a.series_expr(1, e, n)?;
            // Each percentage is as long as the longer of its series and its total.
            let longest = total.iter().map(|t| t.values.len()).max().unwrap_or(0);
            a.ev.reserve((list.len() as u64).saturating_mul(longest as u64))?;
            if total.len() != 1 && total.len() != list.len() {
                return Err(a.error(1, format!("total must be missing, a number, one series or as many series as seriesList ({}), got {}", list.len(), total.len())));
            }
            if total.len() == list.len() && total.len() != 1 {
                let mut l = list.clone();
                let mut t = total;
                l.sort_by(|x, y| x.name.cmp(&y.name));
                t.sort_by(|x, y| x.name.cmp(&y.name));
                return Ok(l
                    .iter()
                    .zip(&t)
                    .filter_map(|(s1, s2)| {
                        let n = normalize(&[s1, s2])?;
                        let values = zip_longest(&n.values[0], &n.values[1])
                            .into_iter()
                            .map(|(v, t)| percent(v, t))
                            .collect();
                        Some(Series::new(
                            format!("asPercent({},{})", s1.name, s2.name),
                            n.start,
                            n.end,
                            n.step,
                            values,
                        ))
                    })
                    .collect());
            }
            let mut both: Vec<&Series> = list.iter().collect();
            both.push(&total[0]);
            let Some(n) = normalize(&both) else {
                return Ok(Vec::new());
            };
            let last = n.values.len() - 1;
            let out = list
                .iter()
                .enumerate()
                .map(|(k, s)| {
                    let values = zip_longest(&n.values[k], &n.values[last])
                        .into_iter()
                        .map(|(v, t)| percent(v, t))
                        .collect();
                    Series::new(
                        format!("asPercent({},{})", s.name, total[0].name),
                        s.start,
                        s.end,
                        s.step,
                        values,
                    )
                })
                .collect();
            return Ok(out);
        }
    };
    Ok(list
        .iter()
        .enumerate()
        .map(|(k, s)| {
            let values = zip_longest(&norm.values[k], &total_values)
                .into_iter()
                .map(|(v, t)| percent(v, t))
                .collect();
            Series::new(
                format!("asPercent({},{})", s.name, total_text),
                s.start,
                s.end,
                s.step,
                values,
            )
        })
        .collect())
}

fn count_series(a: &Args<'_, '_>) -> R {
    if a.rest(0).is_empty() {
        let (start, end) = (a.ev.from, a.ev.until);
        let mut s = Series::new("0", start, end, (end - start) / 2, vec![Some(0.0); 3]);
        s.path_expression = "countSeries()".into();
        return Ok(vec![s]);
    }
    let all = all_series(a, 0)?;
    let refs: Vec<&Series> = all.iter().collect();
    let Some(n) = normalize(&refs) else {
        return Ok(Vec::new());
    };
    let name = format!("countSeries({})", format_path_expressions(&refs));
    let values = vec![Some(all.len() as f64); n.rows()];
    Ok(vec![Series::new(name, n.start, n.end, n.step, values)])
}

/// Groups in first-seen order.
fn group_by<K: Ord + Clone>(
    list: Vec<Series>,
    key: impl Fn(&Series) -> K,
) -> Vec<(K, Vec<Series>)> {
    let mut order: Vec<K> = Vec::new();
    let mut groups: BTreeMap<K, Vec<Series>> = BTreeMap::new();
    for s in list {
        let k = key(&s);
        if !groups.contains_key(&k) {
            order.push(k.clone());
        }
        groups.entry(k).or_default().push(s);
    }
    order
        .into_iter()
        .map(|k| {
            let g = groups.remove(&k).unwrap_or_default();
            (k, g)
        })
        .collect()
}

fn aggregate_groups(groups: Vec<(String, Vec<Series>)>, func: &str) -> Vec<Series> {
    groups
        .into_iter()
        .filter_map(|(key, g)| {
            let refs: Vec<&Series> = g.iter().collect();
            let mut s = aggregate(&refs, func)?;
            s.name = key;
            Some(s)
        })
        .collect()
}

fn sum_with_wildcards(a: &Args<'_, '_>) -> R {
    let mut positions = Vec::new();
    for (k, e) in a.rest(1).iter().enumerate() {
        match e {
            Expr::Number { value, .. } if value.fract() == 0.0 => positions.push(*value as i64),
            _ => return Err(a.error_at(1, e, k + 2, "position must be an integer".into())),
        }
    }
    let groups = group_by(a.series(0)?, |s| {
        s.name
            .split('.')
            .enumerate()
            .filter(|(i, _)| !positions.contains(&(*i as i64)))
            .map(|(_, n)| n)
            .collect::<Vec<_>>()
            .join(".")
    });
    Ok(aggregate_groups(groups, "sum"))
}

fn group_by_node(a: &Args<'_, '_>) -> R {
    let node = match a.expr(1) {
        Some((e @ (Expr::Number { .. } | Expr::String { .. }), _)) => e.clone(),
        _ => {
            return Err(a.error(
                1,
                "nodeNum must be an integer or a tag name in quotes".into(),
            ))
        }
    };
    let callback = a.opt_string(2)?.unwrap_or_else(|| "average".into());
    check_agg(a, 2, &callback)?;
    let nodes = [node];
    let groups = group_by(a.series(0)?, |s| agg_key(s, &nodes));
    Ok(aggregate_groups(groups, &callback))
}

fn group_by_tags(a: &Args<'_, '_>) -> R {
    let callback = a.string(1)?;
    check_agg(a, 1, &callback)?;
    let mut tags = Vec::new();
    for (k, e) in a.rest(2).iter().enumerate() {
        match e {
            Expr::String { value, .. } => tags.push(value.clone()),
            _ => return Err(a.error_at(2, e, k + 3, "tags must be quoted tag names".into())),
        }
    }
    let list = a.series(0)?;
    let has_name = tags.iter().any(|t| t == "name");
    let names: std::collections::BTreeSet<String> = list
        .iter()
        .map(|s| s.tags.get("name").cloned().unwrap_or_default())
        .collect();
    let common = if names.len() == 1 {
        names.into_iter().next().unwrap_or_default()
    } else {
        callback.clone()
    };
    let groups = group_by(list, |s| {
        let mut parts: Vec<String> = tags
            .iter()
            .filter(|t| *t != "name")
            .map(|t| format!("{t}={}", s.tags.get(t).map_or("", String::as_str)))
            .collect();
        parts.sort();
        let head = if has_name {
            s.tags.get("name").cloned().unwrap_or_default()
        } else {
            common.clone()
        };
        std::iter::once(head)
            .chain(parts)
            .collect::<Vec<_>>()
            .join(";")
    });
    Ok(aggregate_groups(groups, &callback)
        .into_iter()
        .map(|mut s| {
            s.path_expression = s.name.clone();
            s.tags = tags_from_name(&s.name);
            s
        })
        .collect())
}

/// graphite-web's `_getPercentile`.
fn get_percentile(points: &[Option<f64>], n: f64, interpolate: bool) -> Option<f64> {
    let mut sorted = non_null(points);
    if sorted.is_empty() {
        return None;
    }
    sorted.sort_by(f64::total_cmp);
    let fractional = n / 100.0 * (sorted.len() as f64 + 1.0);
    let mut rank = fractional.trunc() as usize;
    let fraction = fractional - fractional.trunc();
    if !interpolate {
        rank += fraction.ceil() as usize;
    }
    let mut p = if rank == 0 {
        sorted[0]
    } else if rank > sorted.len() {
        sorted[sorted.len() - 1]
    } else {
        sorted[rank - 1]
    };
    if interpolate && rank != sorted.len() {
        let next = sorted.get(rank).copied().unwrap_or(p);
        p += fraction * (next - p);
    }
    Some(p)
}

fn percentile_of_series(a: &Args<'_, '_>) -> R {
    let n = a.number(1)?;
    if n <= 0.0 {
        return Err(a.error(1, "n must be greater than 0".into()));
    }
    let interpolate = a.boolean(2, false)?;
    let list = a.series(0)?;
    let refs: Vec<&Series> = list.iter().collect();
    let Some(norm) = normalize(&refs) else {
        return Ok(Vec::new());
    };
    let name = format!(
        "percentileOfSeries({},{})",
        list[0].path_expression,
        fmt_g(n)
    );
    let values = (0..norm.rows())
        .map(|i| get_percentile(&norm.row(i), n, interpolate))
        .collect();
    Ok(vec![Series::new(
        name, norm.start, norm.end, norm.step, values,
    )])
}

fn n_percentile(a: &Args<'_, '_>) -> R {
    let n = a.number(1)?;
    if n <= 0.0 {
        return Err(a.error(1, "n must be greater than 0".into()));
    }
    let mut out = Vec::new();
    for mut s in a.series(0)? {
        let Some(p) = get_percentile(&s.values, n, false) else {
            continue;
        };
        s.set_tag("nPercentile", py_float(n));
        // As many points as the series' range holds at its step (none without a step).
        let count = if s.step > 0 {
            (s.end.saturating_sub(s.start) / s.step).max(0) as u64
        } else {
            0
        };
        a.ev.reserve(count)?;
        out.push(s.derive(
            format!("nPercentile({}, {})", s.name, fmt_g(n)),
            vec![Some(p); count as usize],
        ));
    }
    Ok(out)
}

fn non_negative(a: &Args<'_, '_>) -> R {
    let per_second = a.name() == "perSecond";
    let max = a.opt_number(1)?;
    let min = a.opt_number(2)?;
    let func = a.name().to_string();
    Ok(a.series(0)?
        .into_iter()
        .map(|mut s| {
            let mut prev: Option<f64> = None;
            let step = s.step as f64;
            let values = s
                .values
                .iter()
                .map(|&v| {
                    // graphite-web compares a null point against maxValue/minValue and
                    // fails; here a null point never passes those checks.
                    let (delta, next) = match v {
                        Some(x) if max.is_some_and(|m| x > m) || min.is_some_and(|m| x < m) => {
                            (None, None)
                        }
                        None => (None, None),
                        Some(x) => match prev {
                            None => (None, Some(x)),
                            Some(p) if x >= p => (Some(x - p), Some(x)),
                            Some(p) => match (max, min) {
                                (Some(m), _) => {
                                    (Some(m + 1.0 + x - p - min.unwrap_or(0.0)), Some(x))
                                }
                                (None, Some(m)) => (Some(x - m), Some(x)),
                                _ => (None, Some(x)),
                            },
                        },
                    };
                    prev = next;
                    if per_second {
                        delta.map(|d| round6(d / step))
                    } else {
                        delta
                    }
                })
                .collect();
            s.set_tag(&func, "1");
            s.derive(format!("{func}({})", s.name), values)
        })
        .collect())
}

/// The evaluation's range moved by `delta` seconds, or an error about parameter `i` when
/// that leaves the times an `i64` holds.
fn shifted_range(a: &Args<'_, '_>, i: usize, delta: i64) -> Result<(i64, i64), RenderError> {
    match (a.ev.from.checked_add(delta), a.ev.until.checked_add(delta)) {
        (Some(from), Some(until)) => Ok((from, until)),
        _ => Err(a.error(
            i,
            format!("{} moves the time range too far", a.def.params[i].name),
        )),
    }
}

/// A time offset argument in seconds, or an error naming the parameter.
fn interval(a: &Args<'_, '_>, i: usize, text: &str) -> Result<i64, RenderError> {
    parse_time_offset(text).map_err(|e| {
        a.error(
            i,
            format!(
                "{} must be a time string like '5min': {e}",
                a.def.params[i].name
            ),
        )
    })
}

fn moving_average(a: &Args<'_, '_>) -> R {
    let window = match a.expr(1) {
        Some((Expr::Number { value, .. }, _)) if *value >= 0.0 && value.fract() == 0.0 => {
            Err(*value as i64)
        }
        Some((Expr::String { value, .. }, _)) if parse_time_offset(value).is_ok() => {
            Ok(value.clone())
        }
        _ => {
            return Err(a.error(
                1,
                "windowSize must be a number or a time string like '5min'".into(),
            ))
        }
    };
    let xff = a.opt_number(2)?;
    let list = a.series(0)?;
    if list.is_empty() {
        return Ok(list);
    }
    let too_large = || a.error(1, "windowSize reaches too far back".into());
    let preview = match &window {
        Ok(text) => interval(a, 1, text)?.abs(),
        Err(points) => list
            .iter()
            .map(|s| s.step)
            .max()
            .unwrap_or(0)
            .checked_mul(*points)
            .ok_or_else(too_large)?,
    };
    let from = a.ev.from.checked_sub(preview).ok_or_else(too_large)?;
    let preview_list = a.series_over(0, from, a.ev.until)?;
    // Each value averages a window of points: the work is the windows' points.
    let work = preview_list.iter().fold(0u64, |sum, s| {
        let points = match &window {
            Ok(_) if s.step > 0 => (preview / s.step) as u64,
            Ok(_) => 0,
            Err(p) => *p as u64,
        };
        let windows = (s.values.len() as u64).saturating_sub(points);
        sum.saturating_add(windows.saturating_mul(points.max(1)))
    });
    a.ev.charge_points(work)?;
    Ok(preview_list
        .into_iter()
        .map(|mut s| {
            let (name, points, tag) = match &window {
                Ok(text) => (
                    format!("movingAverage({},\"{text}\")", s.name),
                    if s.step > 0 {
                        (preview / s.step) as usize
                    } else {
                        0
                    },
                    text.clone(),
                ),
                Err(p) => (
                    format!("movingAverage({},{p})", s.name),
                    *p as usize,
                    p.to_string(),
                ),
            };
            s.set_tag("movingAverage", tag);
            let factor = xff.unwrap_or(s.x_files_factor);
            let mut values = Vec::new();
            for i in (points + 1)..=s.values.len() {
                let window = &s.values[i - points..i];
                let nn = non_null(window);
                let ok = !nn.is_empty() && nn.len() as f64 / points as f64 >= factor;
                values.push(if ok {
                    Some(nn.iter().sum::<f64>() / nn.len() as f64)
                } else {
                    None
                });
            }
            let mut out = s.derive(name, values);
            out.start = s.start + preview;
            out
        })
        .collect())
}

fn summarize(a: &Args<'_, '_>) -> R {
    let text = a.string(1)?;
    let interval = interval(a, 1, &text)?;
    if interval <= 0 {
        return Err(a.error(
            1,
            "intervalString must be a positive time string like '5min'".into(),
        ));
    }
    let func = a.opt_string(2)?.unwrap_or_else(|| "sum".into());
    check_agg(a, 2, &func)?;
    let align_to_from = a.boolean(3, false)?;
    let mut out = Vec::new();
    for mut s in a.series(0)? {
        let (start, mut end) = if align_to_from {
            (s.start, s.end)
        } else {
            (
                s.start - s.start.rem_euclid(interval),
                s.end - s.end.rem_euclid(interval) + interval,
            )
        };
        // One value per interval from start to end.
        a.ev.reserve((end.saturating_sub(start) / interval).max(0) as u64 + 1)?;
        let (values, aligned_end) = summarize_values(&s, &func, interval, start, end);
        if align_to_from {
            end = aligned_end;
        }
        s.set_tag("summarize", text.clone());
        s.set_tag("summarizeFunction", func.clone());
        let name = format!(
            "summarize({}, \"{text}\", \"{func}\"{})",
            s.name,
            if align_to_from { ", true" } else { "" }
        );
        let mut summarized = s.derive(name, values);
        summarized.start = start;
        summarized.end = end;
        summarized.step = interval;
        out.push(summarized);
    }
    Ok(out)
}

/// graphite-web's `_summarizeValues`.
fn summarize_values(
    s: &Series,
    func: &str,
    interval: i64,
    start: i64,
    end: i64,
) -> (Vec<Option<f64>>, i64) {
    let count = if s.step > 0 {
        ((s.end - s.start) / s.step).max(0) as usize
    } else {
        0
    };
    let n = count.min(s.values.len());
    let interval_points = interval as f64 / s.step as f64;
    let mut out = Vec::new();
    let mut i = 0;
    let mut t = start;
    while t < end {
        let mut first = i;
        let mut non_null = 0usize;
        while i < n && s.start + i as i64 * s.step < t + interval {
            let ts = s.start + i as i64 * s.step;
            if ts <= t {
                first = i;
            }
            if ts >= t && s.values[i].is_some() {
                non_null += 1;
            }
            i += 1;
        }
        if non_null > 0 && non_null as f64 / interval_points >= s.x_files_factor {
            out.push(agg(func, &s.values[first..i]));
        } else {
            out.push(None);
        }
        t += interval;
    }
    (out, t)
}

fn hitcount(a: &Args<'_, '_>) -> R {
    let text = a.string(1)?;
    let interval = interval(a, 1, &text)?;
    if interval <= 0 {
        return Err(a.error(
            1,
            "intervalString must be a positive time string like '5min'".into(),
        ));
    }
    let align = a.boolean(2, false)?;
    let mut list = a.series(0)?;
    if align {
        let from = a.ev.from;
        let aligned = if interval >= 86_400 {
            from - from.rem_euclid(86_400)
        } else if interval >= 3600 {
            from - from.rem_euclid(3600)
        } else if interval >= 60 {
            from - from.rem_euclid(60)
        } else {
            from
        };
        list = a.series_over(0, aligned, a.ev.until)?;
        for s in &mut list {
            let count = (s.end - s.start).div_euclid(interval);
            s.end = s.start + count * interval + interval;
        }
    }
    let mut out = Vec::new();
    for mut s in list {
        let buckets_n = ((s.end - s.start) as f64 / interval as f64).ceil().max(0.0) as u64;
        a.ev.reserve(buckets_n)?;
        out.push({
            let buckets_n = buckets_n as usize;
            let step = s.step;
            let mut buckets: Vec<Vec<f64>> = vec![Vec::new(); buckets_n];
            let new_start = s.end - buckets_n as i64 * interval;
            for (i, v) in s.values.iter().enumerate() {
                let Some(v) = *v else { continue };
                let t0 = s.start + i as i64 * step;
                let (sb, sm) = (
                    (t0 - new_start).div_euclid(interval),
                    (t0 - new_start).rem_euclid(interval),
                );
                let t1 = t0 + step;
                let (mut eb, mut em) = (
                    (t1 - new_start).div_euclid(interval),
                    (t1 - new_start).rem_euclid(interval),
                );
                if eb >= buckets_n as i64 {
                    eb = buckets_n as i64 - 1;
                    em = interval;
                }
                let mut push = |b: i64, x: f64| {
                    if b >= 0 {
                        if let Some(bucket) = buckets.get_mut(b as usize) {
                            bucket.push(x);
                        }
                    }
                };
                if sb == eb {
                    push(sb, v * (em - sm) as f64);
                } else {
                    push(sb, v * (interval - sm) as f64);
                    for j in sb + 1..eb {
                        push(j, v * interval as f64);
                    }
                    if em > 0 {
                        push(eb, v * em as f64);
                    }
                }
            }
            let values = buckets
                .iter()
                .map(|b| (!b.is_empty()).then(|| b.iter().sum()))
                .collect();
            s.set_tag("hitcount", text.clone());
            let name = format!(
                "hitcount({}, \"{text}\"{})",
                s.name,
                if align { ", true" } else { "" }
            );
            let mut counted = s.derive(name, values);
            counted.start = new_start;
            counted.step = interval;
            counted
        });
    }
    Ok(out)
}

fn time_shift(a: &Args<'_, '_>) -> R {
    let mut text = a.string(1)?;
    if text.starts_with(|c: char| c.is_ascii_digit()) {
        text.insert(0, '-');
    }
    let delta = interval(a, 1, &text)?;
    let reset_end = a.boolean(2, true)?;
    let list = a.series(0)?;
    let Some(first) = list.first() else {
        return Ok(Vec::new());
    };
    let (from, until) = shifted_range(a, 1, delta)?;
    let shifted = a.series_over(0, from, until)?;
    Ok(shifted
        .into_iter()
        .map(|mut s| {
            s.set_tag("timeShift", text.clone());
            s.name = format!("timeShift({}, \"{text}\")", s.name);
            s.end = if reset_end {
                first.end
            } else {
                s.end - s.start + first.start
            };
            s.start = first.start;
            s
        })
        .collect())
}

fn time_stack(a: &Args<'_, '_>) -> R {
    let mut unit = a.opt_string(1)?.unwrap_or_else(|| "1d".into());
    if unit.starts_with(|c: char| c.is_ascii_digit()) {
        unit.insert(0, '-');
    }
    let delta = interval(a, 1, &unit)?;
    let start = a.opt_number(2)?.unwrap_or(0.0) as i64;
    let end = a.opt_number(3)?.unwrap_or(7.0) as i64;
    if end.saturating_sub(start) > 1000 {
        return Err(a.error(
            3,
            format!("timeShiftEnd - timeShiftStart must be at most 1000 (got {start}..{end})"),
        ));
    }
    let list = a.series(0)?;
    let Some(first) = list.first() else {
        return Ok(Vec::new());
    };
    let mut out = Vec::new();
    for shift in start..end {
        let d = delta
            .checked_mul(shift)
            .ok_or_else(|| a.error(1, "timeShiftUnit times the shift is too far".into()))?;
        let (from, until) = shifted_range(a, 1, d)?;
        for mut s in a.series_over(0, from, until)? {
            s.set_tag("timeShiftUnit", unit.clone());
            s.set_tag("timeShift", shift.to_string());
            let name = format!("timeShift({}, {unit}, {shift})", s.name);
            rename(&mut s, name);
            s.start = first.start;
            s.end = first.end;
            out.push(s);
        }
    }
    Ok(out)
}

fn highest(a: &Args<'_, '_>, func: &str, descending: bool) -> R {
    let n = a.number(1)?;
    let mut list = a.series(0)?;
    let key = |s: &Series| agg(func, &s.values).unwrap_or(f64::NEG_INFINITY);
    if descending {
        list.sort_by(|x, y| key(y).total_cmp(&key(x)));
    } else {
        list.sort_by(|x, y| key(x).total_cmp(&key(y)));
    }
    list.truncate(n.max(0.0) as usize);
    Ok(list)
}

fn keep_last_value(a: &Args<'_, '_>) -> R {
    let limit = a.opt_number(1)?.unwrap_or(f64::INFINITY);
    Ok(map_each(a.series(0)?, |s| {
        rename(s, format!("keepLastValue({})", s.name));
        let mut nones = 0usize;
        let mut last: Option<f64> = None;
        let len = s.values.len();
        for i in 0..len {
            match s.values[i] {
                None => nones += 1,
                Some(v) => {
                    if nones > 0 && nones as f64 <= limit {
                        if let Some(l) = last {
                            s.values[i - nones..i].iter_mut().for_each(|x| *x = Some(l));
                        }
                    }
                    nones = 0;
                    last = Some(v);
                }
            }
        }
        if nones > 0 && nones as f64 <= limit {
            if let Some(l) = last {
                s.values[len - nones..]
                    .iter_mut()
                    .for_each(|x| *x = Some(l));
            }
        }
    }))
}

fn transform_null(a: &Args<'_, '_>) -> R {
    let given = a.opt_number(1)?;
    let default = given.unwrap_or(0.0);
    // graphite-web's default is the integer 0 (tag "0"); a given value is a float ("0.0").
    let default_tag = given.map_or_else(|| "0".to_string(), py_float);
    let reference = a.opt_series(2)?.filter(|r| !r.is_empty());
    let defaults: Option<Vec<Option<f64>>> = reference.map(|r| {
        let len = r.iter().map(|s| s.values.len()).max().unwrap_or(0);
        (0..len)
            .map(|i| {
                r.iter()
                    .any(|s| s.values.get(i).copied().flatten().is_some())
                    .then_some(default)
            })
            .collect()
    });
    let list = a.series(0)?;
    if let Some(d) = &defaults {
        // Each series is extended to the reference's length.
        a.ev.reserve((list.len() as u64).saturating_mul(d.len() as u64))?;
    }
    Ok(map_each(list, |s| {
        s.set_tag("transformNull", default_tag.clone());
        match &defaults {
            Some(d) => {
                s.set_tag("referenceSeries", "1");
                rename(
                    s,
                    format!(
                        "transformNull({},{},referenceSeries)",
                        s.name,
                        fmt_g(default)
                    ),
                );
                s.values = zip_longest(&s.values, d)
                    .into_iter()
                    .map(|(v, d)| v.or(d))
                    .collect();
            }
            None => {
                rename(s, format!("transformNull({},{})", s.name, fmt_g(default)));
                s.values
                    .iter_mut()
                    .for_each(|v| *v = Some(v.unwrap_or(default)));
            }
        }
    }))
}

fn holt_winters(a: &Args<'_, '_>, bands: bool) -> R {
    let (delta, bi, si) = if bands {
        (a.opt_number(1)?.unwrap_or(3.0), 2, 3)
    } else {
        (0.0, 1, 2)
    };
    let bootstrap_text = a.opt_string(bi)?.unwrap_or_else(|| "7d".into());
    let bootstrap = interval(a, bi, &bootstrap_text)?;
    let season_text = a.opt_string(si)?.unwrap_or_else(|| "1d".into());
    let season = interval(a, si, &season_text)?;
    a.series(0)?;
    let (from, _) = shifted_range(a, bi, bootstrap.saturating_neg())?;
    let preview = a.series_over(0, from, a.ev.until)?;
    let mut out = Vec::new();
    for mut s in preview {
        if s.step <= 0 {
            continue;
        }
        let (predictions, deviations) =
            holt_winters_analysis(&s.values, (season / s.step) as usize);
        s.set_tag("holtWintersForecast", "1");
        s.set_tag("holtWintersDeviation", "1");
        if bands {
            s.set_tag("holtWintersConfidenceUpper", "1");
            s.set_tag("holtWintersConfidenceLower", "1");
        }
        let skip = ((bootstrap / s.step) as usize).min(predictions.len());
        let start = s.start + bootstrap;
        let make = |name: String, values: Vec<Option<f64>>| {
            let mut r = s.derive(name, values);
            r.start = start;
            r
        };
        if !bands {
            out.push(make(
                format!("holtWintersForecast({})", s.name),
                predictions[skip..].to_vec(),
            ));
            continue;
        }
        let (mut lower, mut upper) = (Vec::new(), Vec::new());
        for (f, d) in predictions[skip..].iter().zip(&deviations[skip..]) {
            match (f, d) {
                (Some(f), Some(d)) => {
                    upper.push(Some(f + delta * d));
                    lower.push(Some(f - delta * d));
                }
                _ => {
                    upper.push(None);
                    lower.push(None);
                }
            }
        }
        let path = s.path_expression.clone();
        let mut lo = make(format!("holtWintersConfidenceLower({})", s.name), lower);
        let mut up = make(format!("holtWintersConfidenceUpper({})", s.name), upper);
        lo.path_expression = path.clone();
        up.path_expression = path;
        out.push(lo);
        out.push(up);
    }
    Ok(out)
}

/// graphite-web's `holtWintersAnalysis` (alpha = gamma = 0.1, beta = 0.0035): predictions
/// and deviations. Public for the detection benchmark's Holt–Winters baseline.
pub fn holt_winters_analysis(
    series: &[Option<f64>],
    season: usize,
) -> (Vec<Option<f64>>, Vec<Option<f64>>) {
    let (alpha, gamma, beta) = (0.1, 0.1, 0.0035);
    let mut intercepts: Vec<Option<f64>> = Vec::new();
    let mut slopes: Vec<f64> = Vec::new();
    let mut seasonals: Vec<f64> = Vec::new();
    let mut predictions: Vec<Option<f64>> = Vec::new();
    let mut deviations: Vec<f64> = Vec::new();
    let last_of = |v: &[f64], i: usize| {
        if i >= season {
            v.get(i - season).copied().unwrap_or(0.0)
        } else {
            0.0
        }
    };
    let mut next_pred: Option<f64> = None;
    for (i, actual) in series.iter().enumerate() {
        let Some(actual) = *actual else {
            intercepts.push(None);
            slopes.push(0.0);
            seasonals.push(0.0);
            predictions.push(next_pred);
            deviations.push(0.0);
            next_pred = None;
            continue;
        };
        let (last_intercept, last_slope, prediction) = if i == 0 {
            (actual, 0.0, Some(actual))
        } else {
            let li = intercepts.last().copied().flatten().unwrap_or(actual);
            (li, slopes.last().copied().unwrap_or(0.0), next_pred)
        };
        let last_seasonal = last_of(&seasonals, i);
        let next_last_seasonal = last_of(&seasonals, i + 1);
        let last_dev = last_of(&deviations, i);
        let intercept =
            alpha * (actual - last_seasonal) + (1.0 - alpha) * (last_intercept + last_slope);
        let slope = beta * (intercept - last_intercept) + (1.0 - beta) * last_slope;
        let seasonal = gamma * (actual - intercept) + (1.0 - gamma) * last_seasonal;
        next_pred = Some(intercept + slope + next_last_seasonal);
        let deviation =
            gamma * (actual - prediction.unwrap_or(0.0)).abs() + (1.0 - gamma) * last_dev;
        intercepts.push(Some(intercept));
        slopes.push(slope);
        seasonals.push(seasonal);
        predictions.push(prediction);
        deviations.push(deviation);
    }
    (predictions, deviations.into_iter().map(Some).collect())
}

fn series_by_tag(a: &Args<'_, '_>) -> R {
    let mut exprs = Vec::new();
    for (k, e) in a.rest(0).iter().enumerate() {
        match e {
            Expr::String { value, .. } => exprs.push(value.clone()),
            _ => {
                return Err(a.error_at(
                    0,
                    e,
                    k + 1,
                    "tagExpressions must be quoted, like 'name=cpu.load' or 'host=~web.*'".into(),
                ))
            }
        }
    }
    let text = a.ev.call_text(a.call);
    let mut found = a.ev.source.find_by_tags(&exprs, a.ev.from, a.ev.until)?;
    for s in &mut found {
        s.path_expression = text.clone();
    }
    found.sort_by(|x, y| x.name.cmp(&y.name));
    Ok(found)
}

fn events(a: &Args<'_, '_>) -> R {
    let mut tags = Vec::new();
    for (k, e) in a.rest(0).iter().enumerate() {
        match e {
            Expr::String { value, .. } => tags.push(value.clone()),
            _ => return Err(a.error_at(0, e, k + 1, "tags must be quoted strings".into())),
        }
    }
    let name = format!("events(\"{}\")", tags.join("\", \""));
    let query: Vec<String> = if tags.len() == 1 && tags[0] == "*" {
        Vec::new()
    } else {
        tags
    };
    let (start, end) = (a.ev.from, a.ev.until);
    let points = end.saturating_sub(start).max(0) as u64;
    // One point a second over the whole range.
    a.ev.reserve(points)?;
    let points = points as usize;
    let mut values: Vec<Option<f64>> = vec![None; points];
    for when in a.ev.source.events(&query, start, end)? {
        let offset = when - start;
        if offset >= 0 && (offset as usize) < points {
            let v = &mut values[offset as usize];
            *v = Some(v.unwrap_or(0.0) + 1.0);
        }
    }
    let mut s = Series::new(name, start, end, 1, values);
    s.consolidation = Consolidation::Sum;
    Ok(vec![s])
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The series-at-a-time aggregations give what `agg` gives row by row, to the bit:
    /// nulls, NaN, infinities, negative zero and series of different lengths included.
    #[test]
    fn columns_match_rows_bit_for_bit() {
        let list = [
            Series::new(
                "a",
                0,
                60,
                10,
                vec![Some(1.5), None, Some(-0.0), Some(f64::NAN), Some(0.1), None],
            ),
            Series::new(
                "b",
                0,
                60,
                10,
                vec![
                    Some(2.25),
                    None,
                    Some(-0.0),
                    Some(3.0),
                    Some(0.2),
                    Some(f64::INFINITY),
                ],
            ),
            Series::new("c", 0, 40, 10, vec![None, None, Some(0.0), Some(-7.5)]),
        ];
        let refs: Vec<&Series> = list.iter().collect();
        let n = normalize(&refs).unwrap();
        for func in [
            "sum", "average", "avg", "min", "max", "count", "last", "total", "current",
        ] {
            let by_columns = columns(&n, func).unwrap();
            let by_rows: Vec<Option<f64>> = (0..n.rows())
                .map(|i| {
                    let row = n.row(i);
                    row.iter()
                        .any(Option::is_some)
                        .then(|| agg(func, &row))
                        .flatten()
                })
                .collect();
            let bits =
                |v: &[Option<f64>]| v.iter().map(|x| x.map(f64::to_bits)).collect::<Vec<_>>();
            assert_eq!(bits(&by_columns), bits(&by_rows), "{func}");
        }
        assert!(columns(&n, "median").is_none());
    }

    #[test]
    fn python_g_format() {
        for (x, want) in [
            (2.0, "2"),
            (-0.5, "-0.5"),
            (0.1, "0.1"),
            (123456.0, "123456"),
            (1234567.0, "1.23457e+06"),
            (0.0001, "0.0001"),
            (0.00001, "1e-05"),
            (1.5, "1.5"),
            (90.0, "90"),
        ] {
            assert_eq!(fmt_g(x), want, "{x}");
        }
    }

    #[test]
    fn python_replacements() {
        assert_eq!(python_replacement(r"host-\1"), "host-${1}");
        assert_eq!(python_replacement(r"\g<x>$"), "${x}$$");
    }

    #[test]
    fn percentiles_follow_graphite_web() {
        let v = |xs: &[f64]| xs.iter().map(|x| Some(*x)).collect::<Vec<_>>();
        // 5 points: rank = ceil(0.5 * 6) = 3 → 3rd smallest.
        assert_eq!(
            get_percentile(&v(&[5.0, 1.0, 4.0, 2.0, 3.0]), 50.0, false),
            Some(3.0)
        );
        // 4 points, 50th: fractional rank 2.5 → 3 without interpolation.
        assert_eq!(
            get_percentile(&v(&[1.0, 2.0, 3.0, 4.0]), 50.0, false),
            Some(3.0)
        );
        // … and 2 + 0.5 * (3 - 2) with it.
        assert_eq!(
            get_percentile(&v(&[1.0, 2.0, 3.0, 4.0]), 50.0, true),
            Some(2.5)
        );
        assert_eq!(get_percentile(&[None], 50.0, false), None);
    }
}
