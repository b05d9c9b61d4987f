//! The render API against answers graphite-web 1.1.10 itself gave for the same stored data.
//!
//! `scripts/compat/graphite-web` fed a seeded dataset through carbon-cache into whisper
//! files, asked graphite-web's `/render` for every target in the fixture and recorded the
//! answers, with every time an offset from a base instant aligned to the hour. Here the
//! same points go over Graphite plaintext to the real server, shifted to a base taken from
//! the current time the same way, and every target must come back as graphite-web gave it:
//! the same series in the same order, the same names and tags, the same timestamps, and
//! values equal to 1e-9 relative.

use std::io::Write;
use std::net::TcpStream;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use serde_json::Value;

use crate::harness::{Options, Server};

const FIXTURE: &str = concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/tests/it/fixtures/graphite_web_render.json"
);

fn load_fixture() -> Option<Value> {
    match std::fs::read_to_string(FIXTURE) {
        Ok(text) => Some(serde_json::from_str(&text).expect("fixture is JSON")),
        Err(e) => {
            assert!(
                std::env::var("CI").as_deref() != Ok("true"),
                "{FIXTURE}: {e}; regenerate it with scripts/compat/graphite-web"
            );
            eprintln!("skipping: {FIXTURE}: {e} (scripts/compat/graphite-web writes it)");
            None
        }
    }
}

/// The name as a render target: tagged series through `seriesByTag`.
fn raw_target(name: &str) -> String {
    let mut parts = name.split(';');
    let metric = parts.next().unwrap_or_default();
    let exprs: Vec<String> = std::iter::once(format!("'name={metric}'"))
        .chain(parts.map(|p| format!("'{p}'")))
        .collect();
    if exprs.len() == 1 {
        name.to_string()
    } else {
        format!("seriesByTag({})", exprs.join(","))
    }
}

fn render(server: &Server, token: &str, params: &[(&str, String)]) -> Result<Value, String> {
    let url = reqwest::Url::parse_with_params(&format!("{}/render", server.url()), params)
        .expect("render URL");
    let reply = reqwest::blocking::Client::new()
        .get(url)
        .bearer_auth(token)
        .timeout(Duration::from_secs(30))
        .send()
        .expect("render request");
    let status = reply.status().as_u16();
    let text = reply.text().unwrap_or_default();
    if status != 200 {
        return Err(format!("HTTP {status}: {text}"));
    }
    serde_json::from_str(&text).map_err(|e| format!("{e}: {text}"))
}

fn close(a: &Value, b: &Value) -> bool {
    match (a.as_f64(), b.as_f64()) {
        (Some(x), Some(y)) => x == y || (x - y).abs() <= 1e-9 * x.abs().max(y.abs()),
        _ => a == b,
    }
}

/// Every difference between graphite-web's answer (`want`, times as offsets) and Gantry's.
fn differences(want: &[Value], got: &[Value], base: i64) -> Vec<String> {
    let names = |list: &[Value]| -> Vec<String> {
        list.iter()
            .map(|s| s["target"].as_str().unwrap_or_default().to_string())
            .collect()
    };
    let mut out = Vec::new();
    if names(want) != names(got) {
        out.push(format!(
            "series: graphite-web {:?}, gantry {:?}",
            names(want),
            names(got)
        ));
    }
    for (w, g) in want.iter().zip(got) {
        let series = w["target"].as_str().unwrap_or_default();
        let empty = serde_json::json!({});
        let (wt, gt) = (
            w.get("tags").unwrap_or(&empty),
            g.get("tags").unwrap_or(&empty),
        );
        if wt != gt {
            out.push(format!("{series}: tags: graphite-web {wt}, gantry {gt}"));
        }
        let wp = w["datapoints"].as_array().expect("datapoints");
        let gp = g["datapoints"].as_array().expect("datapoints");
        let wts: Vec<i64> = wp.iter().map(|p| p[1].as_i64().unwrap() + base).collect();
        let gts: Vec<i64> = gp.iter().map(|p| p[1].as_i64().unwrap_or(0)).collect();
        if wts != gts {
            out.push(format!(
                "{series}: timestamps: graphite-web {} points from base{:+}, gantry {} points from base{:+}",
                wts.len(),
                wts.first().map_or(0, |t| t - base),
                gts.len(),
                gts.first().map_or(0, |t| t - base),
            ));
            continue;
        }
        for (a, b) in wp.iter().zip(gp) {
            if !close(&a[0], &b[0]) {
                out.push(format!(
                    "{series} at base{:+}: graphite-web {}, gantry {}",
                    a[1], a[0], b[0]
                ));
            }
        }
    }
    out
}

#[test]
fn render_matches_graphite_web() {
    let Some(fixture) = load_fixture() else {
        return;
    };
    let alignment = fixture["base_alignment"].as_i64().expect("base_alignment");
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64;
    let base = now / alignment * alignment;
    let points = fixture["points"].as_array().expect("points");
    let cases = fixture["cases"].as_array().expect("cases");

    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("gantry.toml");
    std::fs::write(&config, "[storage]\nfsync_interval_secs = 0.2\n").unwrap();
    let server = Server::start_with(Options {
        extra_args: vec!["--config".into(), config.display().to_string()],
        ..Default::default()
    });
    let token = server.admin_token();
    let status = server.http().get("/api/v1/status").body;
    let graphite = status["listeners"]["graphite"]
        .as_str()
        .unwrap_or_else(|| panic!("graphite listener in {status}"))
        .to_string();

    // The points, shifted to this run's base, over plaintext.
    let mut expected = std::collections::BTreeMap::<String, usize>::new();
    let mut lines = String::new();
    let mut oldest = 0;
    for p in points {
        let (name, offset, value) = (
            p[0].as_str().unwrap(),
            p[1].as_i64().unwrap(),
            p[2].as_f64().unwrap(),
        );
        *expected.entry(name.to_string()).or_default() += 1;
        oldest = oldest.min(offset);
        lines.push_str(&format!("{name} {value} {}\n", base + offset));
    }
    let mut tcp = TcpStream::connect(&graphite).unwrap();
    tcp.write_all(lines.as_bytes()).unwrap();
    drop(tcp);

    // Queryable when every series shows all its points (one per 10 s slot).
    let deadline = Instant::now() + Duration::from_secs(30);
    let mut pending: Vec<(String, usize)> = expected.into_iter().collect();
    while !pending.is_empty() {
        pending.retain(|(name, count)| {
            let body = render(
                &server,
                &token,
                &[
                    ("target", raw_target(name)),
                    ("from", (base + oldest - 60).to_string()),
                    ("until", (base + 1).to_string()),
                    ("format", "json".into()),
                ],
            )
            .unwrap_or_else(|e| panic!("{name}: {e}"));
            let stored = body
                .as_array()
                .into_iter()
                .flatten()
                .flat_map(|s| s["datapoints"].as_array().cloned().unwrap_or_default())
                .filter(|p| !p[0].is_null())
                .count();
            stored < *count
        });
        assert!(
            Instant::now() < deadline,
            "never stored every point of {pending:?}"
        );
        if !pending.is_empty() {
            std::thread::sleep(Duration::from_millis(200));
        }
    }

    let mut failures = Vec::new();
    for case in cases {
        let target = case["target"].as_str().unwrap();
        let (from, until) = (
            case["from"].as_i64().unwrap(),
            case["until"].as_i64().unwrap(),
        );
        let mut params = vec![
            ("target", target.to_string()),
            ("from", (base + from).to_string()),
            ("until", (base + until).to_string()),
            ("format", "json".to_string()),
        ];
        let mut label = format!("{target} [base{from:+}, base{until:+}]");
        if let Some(mdp) = case.get("maxDataPoints").and_then(Value::as_i64) {
            params.push(("maxDataPoints", mdp.to_string()));
            label.push_str(&format!(" maxDataPoints={mdp}"));
        }
        let want = case["output"].as_array().expect("output");
        match render(&server, &token, &params) {
            Err(e) => failures.push(format!("{label}: {e}")),
            Ok(got) => {
                let diffs = differences(want, got.as_array().map_or(&[][..], |v| v), base);
                if !diffs.is_empty() {
                    let shown = diffs.len().min(6);
                    failures.push(format!(
                        "{label}: {} difference(s)\n    {}{}",
                        diffs.len(),
                        diffs[..shown].join("\n    "),
                        if diffs.len() > shown { "\n    ..." } else { "" }
                    ));
                }
            }
        }
    }
    assert!(
        failures.is_empty(),
        "{} of {} targets differ from graphite-web 1.1.10:\n  {}",
        failures.len(),
        cases.len(),
        failures.join("\n  ")
    );
}
