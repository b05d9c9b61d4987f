//! gantry-render against graphite-web 1.1.10 itself: every case in
//! `fixtures/graphite_web.json` was produced by graphite-web's evaluator and render
//! functions over the dataset stored in the same file (regenerate it with
//! `scripts/compat/graphite-web-functions`). Each target is evaluated here over an
//! in-memory source that windows data as whisper does, and must give the same series:
//! names, tags, start, end, step and consolidation exactly, values to 1e-9 relative.

use std::collections::BTreeMap;

use gantry_render::{
    evaluate, glob_match, to_json, Context, RenderError, RenderOptions, Series, SeriesSource,
};
use regex::Regex;
use serde_json::Value;

struct Memory {
    series: BTreeMap<String, (i64, i64, Vec<Option<f64>>)>,
    events: Vec<(i64, Vec<String>)>,
}

fn tags_of(name: &str) -> BTreeMap<String, String> {
    let mut parts = name.split(';');
    let mut tags: BTreeMap<String, String> = parts
        .clone()
        .skip(1)
        .filter_map(|p| p.split_once('='))
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
    tags.insert("name".into(), parts.next().unwrap_or_default().to_string());
    tags
}

fn tag_match(expr: &str, tags: &BTreeMap<String, String>) -> bool {
    let re = Regex::new(r"^([^;!=]+)(!?=~?)([^;]*)$").unwrap();
    let c = re
        .captures(expr)
        .expect("a valid tag expression in the fixture");
    let value = tags.get(&c[1]).map_or("", String::as_str);
    let spec = &c[3];
    let matches = |v: &str| Regex::new(&format!("^(?:{spec})")).unwrap().is_match(v);
    match &c[2] {
        "=" => value == spec,
        "!=" => value != spec,
        "=~" => !value.is_empty() && matches(value),
        _ => !matches(value),
    }
}

impl Memory {
    /// whisper's windowing: from and until rounded down to the step, plus one step.
    fn window(&self, name: &str, from: i64, until: i64) -> Series {
        let (start, step, values) = &self.series[name];
        let lo = from - from.rem_euclid(*step) + step;
        let hi = until - until.rem_euclid(*step) + step;
        let vals = (lo..hi)
            .step_by(*step as usize)
            .map(|t| {
                let i = (t - start).div_euclid(*step);
                if i >= 0 {
                    values.get(i as usize).copied().flatten()
                } else {
                    None
                }
            })
            .collect();
        Series::new(name, lo, hi, *step, vals)
    }
}

impl SeriesSource for Memory {
    fn find(&self, pattern: &str, from: i64, until: i64) -> Result<Vec<Series>, RenderError> {
        Ok(self
            .series
            .keys()
            .filter(|n| !n.contains(';') && glob_match(pattern, n))
            .map(|n| self.window(n, from, until))
            .collect())
    }

    fn find_by_tags(
        &self,
        exprs: &[String],
        from: i64,
        until: i64,
    ) -> Result<Vec<Series>, RenderError> {
        Ok(self
            .series
            .keys()
            .filter(|n| exprs.iter().all(|e| tag_match(e, &tags_of(n))))
            .map(|n| self.window(n, from, until))
            .collect())
    }

    fn events(&self, tags: &[String], from: i64, until: i64) -> Result<Vec<i64>, RenderError> {
        Ok(self
            .events
            .iter()
            .filter(|(when, t)| {
                *when >= from && *when <= until && tags.iter().all(|x| t.contains(x))
            })
            .map(|(when, _)| *when)
            .collect())
    }
}

fn load() -> (Value, Memory) {
    let text = std::fs::read_to_string(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/tests/fixtures/graphite_web.json"
    ))
    .expect("the fixture");
    let fixture: Value = serde_json::from_str(&text).expect("the fixture is JSON");
    let mut series = BTreeMap::new();
    for (name, d) in fixture["dataset"].as_object().unwrap() {
        let values = d["values"]
            .as_array()
            .unwrap()
            .iter()
            .map(Value::as_f64)
            .collect();
        series.insert(
            name.clone(),
            (
                d["start"].as_i64().unwrap(),
                d["step"].as_i64().unwrap(),
                values,
            ),
        );
    }
    let events = fixture["events"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| {
            let tags = e["tags"]
                .as_array()
                .unwrap()
                .iter()
                .map(|t| t.as_str().unwrap().to_string())
                .collect();
            (e["when"].as_i64().unwrap(), tags)
        })
        .collect();
    (fixture, Memory { series, events })
}

fn value_of(v: &Value) -> Option<f64> {
    match v {
        Value::String(s) if s == "inf" => Some(f64::INFINITY),
        Value::String(s) if s == "-inf" => Some(f64::NEG_INFINITY),
        v => v.as_f64(),
    }
}

fn close(a: Option<f64>, b: Option<f64>) -> bool {
    match (a, b) {
        (None, None) => true,
        (Some(x), Some(y)) => x == y || (x - y).abs() <= 1e-9 * x.abs().max(y.abs()),
        _ => false,
    }
}

/// Compares one target's output; returns what differs.
fn check(target: &str, got: &[Series], expected: &[Value]) -> Vec<String> {
    let mut problems = Vec::new();
    if got.len() != expected.len() {
        let names: Vec<&str> = got.iter().map(|s| s.name.as_str()).collect();
        let want: Vec<&str> = expected
            .iter()
            .map(|s| s["name"].as_str().unwrap())
            .collect();
        problems.push(format!(
            "{target}: {} series {names:?}, graphite-web gave {} {want:?}",
            got.len(),
            want.len()
        ));
        return problems;
    }
    for (s, e) in got.iter().zip(expected) {
        let mut p = |what: String| problems.push(format!("{target} [{}]: {what}", s.name));
        if s.name != e["name"].as_str().unwrap() {
            p(format!("name {:?}, graphite-web {:?}", s.name, e["name"]));
        }
        let tags: BTreeMap<String, String> = serde_json::from_value(e["tags"].clone()).unwrap();
        if s.tags != tags {
            p(format!("tags {:?}, graphite-web {:?}", s.tags, tags));
        }
        for (what, ours, theirs) in [
            ("start", s.start, &e["start"]),
            ("end", s.end, &e["end"]),
            ("step", s.step, &e["step"]),
        ] {
            if theirs.as_i64() != Some(ours) {
                p(format!("{what} {ours}, graphite-web {theirs}"));
            }
        }
        if s.consolidation.as_str() != e["consolidation"].as_str().unwrap() {
            p(format!(
                "consolidation {}, graphite-web {}",
                s.consolidation, e["consolidation"]
            ));
        }
        let want: Vec<Option<f64>> = e["values"]
            .as_array()
            .unwrap()
            .iter()
            .map(value_of)
            .collect();
        if s.values.len() != want.len() {
            p(format!(
                "{} values, graphite-web {}",
                s.values.len(),
                want.len()
            ));
        } else if let Some(i) = (0..want.len()).find(|&i| !close(s.values[i], want[i])) {
            p(format!(
                "value {i} is {:?}, graphite-web {:?}",
                s.values[i], want[i]
            ));
        }
    }
    problems
}

#[test]
fn targets_match_graphite_web() {
    let (fixture, source) = load();
    let mut problems = Vec::new();
    let cases = fixture["cases"].as_array().unwrap();
    for case in cases {
        let target = case["target"].as_str().unwrap();
        let ctx = Context {
            from: case
                .get("from")
                .unwrap_or(&fixture["from"])
                .as_i64()
                .unwrap(),
            until: case
                .get("until")
                .unwrap_or(&fixture["until"])
                .as_i64()
                .unwrap(),
            now: fixture["until"].as_i64().unwrap(),
            source: &source,
        };
        match evaluate(target, &ctx) {
            Ok(got) => problems.extend(check(target, &got, case["series"].as_array().unwrap())),
            Err(e) => problems.push(format!("{target}: {e}")),
        }
    }
    assert!(
        problems.is_empty(),
        "{} of {} cases differ from graphite-web:\n{}",
        problems.len(),
        cases.len(),
        problems.join("\n")
    );
}

#[test]
fn json_renders_match_graphite_web() {
    let (fixture, source) = load();
    let ctx = Context {
        from: fixture["from"].as_i64().unwrap(),
        until: fixture["until"].as_i64().unwrap(),
        now: fixture["until"].as_i64().unwrap(),
        source: &source,
    };
    let mut problems = Vec::new();
    for case in fixture["renders"].as_array().unwrap() {
        let target = case["target"].as_str().unwrap();
        let options = RenderOptions {
            max_data_points: case["maxDataPoints"].as_u64().map(|m| m as usize),
            no_null_points: case["noNullPoints"].as_bool().unwrap_or(false),
        };
        let got = to_json(&evaluate(target, &ctx).unwrap(), options);
        let want = case["output"].as_array().unwrap();
        let label = format!("{target} {options:?}");
        if got.len() != want.len() {
            problems.push(format!(
                "{label}: {} series, graphite-web {}",
                got.len(),
                want.len()
            ));
            continue;
        }
        for (g, w) in got.iter().zip(want) {
            if g.target != w["target"].as_str().unwrap() {
                problems.push(format!(
                    "{label}: target {}, graphite-web {}",
                    g.target, w["target"]
                ));
            }
            let points = w["datapoints"].as_array().unwrap();
            if g.datapoints.len() != points.len() {
                problems.push(format!(
                    "{label}: {} points, graphite-web {}",
                    g.datapoints.len(),
                    points.len()
                ));
                continue;
            }
            for (i, (gp, wp)) in g.datapoints.iter().zip(points).enumerate() {
                if !close(gp.0, value_of(&wp[0])) || wp[1].as_i64() != Some(gp.1) {
                    problems.push(format!("{label}: point {i} is {gp:?}, graphite-web {wp}"));
                    break;
                }
            }
        }
    }
    assert!(problems.is_empty(), "{}", problems.join("\n"));
}
