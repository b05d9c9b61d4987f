//! A service file's `[detect]` table: the key metrics regression detection watches. It is
//! split from the deploy configuration before that is parsed, and stored apart, so agents
//! (whose parser refuses unknown keys) never see it.
//!
//! ```toml
//! [detect]
//! watch = "60m"              # how long after a change it stays a suspect
//!
//! [[detect.metric]]
//! name = "requests"
//! target = "sumSeries(stats.shop.*.requests)"
//! direction = "drop"         # drop, rise or either
//! min_shift = 0.2            # the smallest relative shift that counts
//! per_host = "stats.shop.$host.requests"   # optional: compare hosts during a rollout
//! ```

use std::time::Duration;

use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use crate::Invalid;

/// A service file split into its parts: what agents get, and what the server keeps apart.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServiceFileParts {
    /// The deploy configuration (agents parse it).
    pub deploy: String,
    /// The `[detect]` table, if any: the server's only.
    pub detect: Option<String>,
    /// The `[[logs]]` entries, if any: sent to agents beside the deploy configuration.
    pub logs: Option<String>,
}

/// The sections split out of a service file, by header name.
const SECTIONS: [&str; 2] = ["detect", "logs"];

/// Splits a service file into the deploy configuration, the `[detect]` table and the
/// `[[logs]]` entries (headers `[detect]`, `[detect.…]`, `[[detect.…]]`, `[[logs]]`,
/// `[logs.…]` and what follows each, up to the next other header). Comments, formatting
/// and line numbers of every part are kept: each part holds the others' lines as blank
/// ones, so an error's line number is the file's.
pub fn split_service_file(text: &str) -> Result<ServiceFileParts, Invalid> {
    let mut parts = [String::new(), String::new(), String::new()];
    // 0: deploy; 1 + i: SECTIONS[i].
    let mut current = 0;
    let mut in_table = false;
    for (i, line) in text.lines().enumerate() {
        let trimmed = line.trim_start();
        if let Some(name) = header_name(trimmed) {
            in_table = true;
            current = SECTIONS
                .iter()
                .position(|s| name == *s || name.starts_with(&format!("{s}.")))
                .map_or(0, |p| p + 1);
        } else if !in_table && trimmed.contains('=') {
            let key = trimmed
                .split('=')
                .next()
                .unwrap_or("")
                .trim()
                .trim_matches('"');
            if key == "detect" || key.starts_with("detect.") {
                return Err(Invalid::new(format!(
                    "line {}: write detection as its own [detect] table, not as a key of the file",
                    i + 1
                )));
            }
            if key == "logs" || key.starts_with("logs.") {
                return Err(Invalid::new(format!(
                    "line {}: write log watches as [[logs]] tables, not as a key of the file",
                    i + 1
                )));
            }
        }
        for (p, part) in parts.iter_mut().enumerate() {
            if p == current {
                part.push_str(line);
            }
            part.push('\n');
        }
    }
    let [deploy, detect, logs] = parts;
    let some = |t: String| (!t.trim().is_empty()).then_some(t);
    Ok(ServiceFileParts {
        deploy,
        detect: some(detect),
        logs: some(logs),
    })
}

/// `[name]` or `[[name]]` (a trailing comment allowed), trimmed; `None` for other lines.
fn header_name(line: &str) -> Option<String> {
    let line = line.split('#').next()?.trim_end();
    let inner = line
        .strip_prefix("[[")
        .and_then(|l| l.strip_suffix("]]"))
        .or_else(|| line.strip_prefix('[').and_then(|l| l.strip_suffix(']')))?;
    Some(inner.trim().replace(['"', ' '], ""))
}

/// Which way a metric going is bad.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum BadDirection {
    Drop,
    Rise,
    Either,
}

/// One key metric.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct KeyMetric {
    pub name: String,
    /// A Graphite render target for the whole service.
    pub target: String,
    pub direction: BadDirection,
    /// The smallest relative shift that counts (default 0.2).
    #[serde(default = "default_min_shift")]
    pub min_shift: f64,
    /// A render target per host, with `$host` where the host's name goes.
    pub per_host: Option<String>,
}

fn default_min_shift() -> f64 {
    0.2
}

/// Longest watch after a change: it bounds the detector's work per flush.
pub const MAX_WATCH: Duration = Duration::from_secs(86_400);
/// Most key metrics of one service.
pub const MAX_METRICS: usize = 20;

/// The `[detect]` table.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct DetectConfig {
    /// How long after a change finishes it stays a suspect, in seconds.
    pub watch_secs: u64,
    pub metrics: Vec<KeyMetric>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct File {
    detect: Table,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Table {
    watch: Option<String>,
    #[serde(default)]
    metric: Vec<KeyMetric>,
}

impl DetectConfig {
    /// Parses the `[detect]` part of the service file `file`; errors name the file, the
    /// line and the key.
    pub fn parse(text: &str, file: &str) -> Result<DetectConfig, Invalid> {
        let parsed: File = toml::from_str(text).map_err(|e| {
            let line = e
                .span()
                .map(|s| text[..s.start.min(text.len())].matches('\n').count() + 1);
            Invalid::new(format!(
                "{file}{}: [detect]: {}",
                line.map(|l| format!(":{l}")).unwrap_or_default(),
                e.message()
            ))
        })?;
        let watch = match parsed.detect.watch.as_deref() {
            None => Duration::from_secs(3600),
            Some(w) => crate::time::parse_duration("detect.watch", w)
                .map_err(|e| Invalid::new(format!("{file}: {}", e.0)))?,
        };
        if watch > MAX_WATCH {
            return Err(Invalid::new(format!(
                "{file}: [detect] watch is at most 24h (a change older than that is not a suspect)"
            )));
        }
        if parsed.detect.metric.len() > MAX_METRICS {
            return Err(Invalid::new(format!(
                "{file}: [detect] names {} metrics; at most {MAX_METRICS}",
                parsed.detect.metric.len()
            )));
        }
        if parsed.detect.metric.is_empty() {
            return Err(Invalid::new(format!(
                "{file}: [detect] names no metric; add [[detect.metric]] tables, or remove [detect]"
            )));
        }
        let mut seen = std::collections::BTreeSet::new();
        for m in &parsed.detect.metric {
            let at = format!("{file}: [[detect.metric]] '{}'", m.name);
            crate::names::validate_name("detect.metric.name", &m.name)
                .map_err(|e| Invalid::new(format!("{file}: {}", e.0)))?;
            if !seen.insert(m.name.clone()) {
                return Err(Invalid::new(format!("{at}: the name is used twice")));
            }
            if m.target.trim().is_empty() {
                return Err(Invalid::new(format!("{at}: target is empty")));
            }
            if !(m.min_shift > 0.0 && m.min_shift <= 10.0) {
                return Err(Invalid::new(format!(
                    "{at}: min_shift {} must be above 0 and at most 10 (a share: 0.2 is 20 %)",
                    m.min_shift
                )));
            }
            if let Some(p) = &m.per_host {
                if !p.contains("$host") {
                    return Err(Invalid::new(format!(
                        "{at}: per_host must say where the host goes with $host"
                    )));
                }
            }
        }
        Ok(DetectConfig {
            watch_secs: watch.as_secs(),
            metrics: parsed.detect.metric,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const FILE: &str = r#"name = "shop"
keep_releases = 5   # [detect] in a comment is not a header

[health]
url = "http://127.0.0.1:8080/health"

[detect]
watch = "30m"

[[detect.metric]]
name = "requests"
target = "sumSeries(stats.shop.*.requests)"
direction = "drop"
per_host = "stats.shop.$host.requests"

[hooks]
restart = ["systemctl", "restart", "shop"]
"#;

    #[test]
    fn the_detect_table_is_split_out_and_the_rest_kept_as_written() {
        let ServiceFileParts {
            deploy,
            detect,
            logs,
        } = split_service_file(FILE).unwrap();
        assert_eq!(logs, None);
        assert!(!deploy.contains("detect.metric") && deploy.contains("[hooks]"));
        assert!(deploy.contains("# [detect] in a comment"));
        assert_eq!(deploy.lines().count(), FILE.lines().count());
        let err = DetectConfig::parse(
            &split_service_file(&FILE.replace("\"drop\"", "\"down\""))
                .unwrap()
                .detect
                .unwrap(),
            "shop.toml",
        )
        .unwrap_err();
        assert!(
            err.0.contains("shop.toml:13"),
            "line of the original file: {err}"
        );
        let detect = detect.unwrap();
        let config = DetectConfig::parse(&detect, "shop.toml").unwrap();
        assert_eq!(config.watch_secs, 1800);
        assert_eq!(config.metrics[0].direction, BadDirection::Drop);
        assert_eq!(config.metrics[0].min_shift, 0.2);
        assert_eq!(split_service_file("name = \"x\"\n").unwrap().detect, None);
    }

    #[test]
    fn log_watches_are_split_out_beside_detect() {
        let text = "name = \"shop\"\n[[logs]]\nname = \"errors\"\nglob = \"log/*.log\"\nregex = \"ERROR\"\n\n[hooks]\nstart = \"bin/start\"\n[[logs]]\nname = \"panics\"\nglob = \"log/*.log\"\nregex = \"panic\"\n[detect]\nwatch = \"1h\"\n";
        let parts = split_service_file(text).unwrap();
        let logs = parts.logs.unwrap();
        assert_eq!(
            logs.lines().count(),
            text.lines().count(),
            "line numbers kept"
        );
        assert!(logs.contains("name = \"errors\"") && logs.contains("name = \"panics\""));
        assert!(
            !logs.contains("hooks") && !logs.contains("detect"),
            "{logs}"
        );
        assert!(parts.deploy.contains("[hooks]") && !parts.deploy.contains("[[logs]]"));
        assert!(parts.detect.unwrap().contains("watch = \"1h\""));
        let err = split_service_file("logs = []\n").unwrap_err();
        assert!(err.0.contains("[[logs]] tables"), "{err}");
    }

    #[test]
    fn bad_detect_tables_are_named() {
        let cases = [
            ("[detect]\n[[detect.metric]]\nname = \"r\"\ntarget = \"a\"\ndirection = \"down\"\n", "shop.toml:5"),
            ("[detect]\nwatchh = \"1m\"\n", "watchh"),
            ("[detect]\n[[detect.metric]]\nname = \"r\"\ntarget = \"a\"\ndirection = \"drop\"\nmin_shift = 0\n", "min_shift"),
            ("[detect]\n[[detect.metric]]\nname = \"r\"\ntarget = \"a\"\ndirection = \"drop\"\nper_host = \"a.b\"\n", "$host"),
            ("[detect]\n", "names no metric"),
            ("[detect]\nwatch = \"2d\"\n[[detect.metric]]\nname = \"r\"\ntarget = \"a\"\ndirection = \"drop\"\n", "at most 24h"),
            ("[detect]\n[[detect.metric]]\nname = \"r\"\ntarget = \"a\"\ndirection = \"drop\"\n[[detect.metric]]\nname = \"r\"\ntarget = \"b\"\ndirection = \"rise\"\n", "used twice"),
        ];
        for (text, needle) in cases {
            let err = DetectConfig::parse(text, "shop.toml").unwrap_err();
            assert!(
                err.0.contains(needle) && err.0.contains("shop.toml"),
                "{text}: {err}"
            );
        }
        let err = split_service_file("detect = { watch = \"1m\" }\n").unwrap_err();
        assert!(err.0.contains("[detect] table"), "{err}");
    }
}

/// What the detector concluded about one key metric after one change (or during one
/// rollout, hosts on the new build against hosts not yet on it).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct Verdict {
    #[schema(value_type = String)]
    pub id: ulid::Ulid,
    pub service: String,
    pub environment: String,
    pub metric: String,
    pub target: String,
    /// `change` (before and after, seasonally expected) or `hosts` (new against old hosts).
    pub comparison: String,
    #[schema(value_type = Option<String>)]
    pub change_id: Option<ulid::Ulid>,
    #[schema(value_type = Option<String>)]
    pub rollout_id: Option<ulid::Ulid>,
    pub at: chrono::DateTime<chrono::Utc>,
    pub regression: bool,
    /// `drop` or `rise`.
    pub movement: String,
    /// The relative shift (−0.5: halved) and its 95 % interval.
    pub effect: f64,
    pub effect_lower: f64,
    pub effect_upper: f64,
    pub p_value: f64,
    /// The alpha this look was tested at (the sequential rule spends it over looks).
    pub alpha: f64,
    pub look: u32,
    pub before_n: usize,
    pub after_n: usize,
    /// What the after window was expected to be, relative to the before window, from the
    /// seasonal baselines used (`1d`, `7d`); 1 when none had enough points.
    pub expected_ratio: f64,
    pub baselines: Vec<String>,
    /// For people: what moved, by how much, after what.
    pub summary: String,
}
