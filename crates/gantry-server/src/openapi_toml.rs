//! The TOML bodies in the OpenAPI document: a service file (`PUT
//! /api/v1/services/{name}/deploy-config`) and a monitor file (`PUT
//! /api/v1/monitors/files/{source}`) go on the wire as TOML text, and the document states
//! their tables and keys as the schemas `ServiceFile` and `MonitorFile` under
//! `application/toml`: a client (or schemathesis, through scripts/check-api.hooks.py) builds
//! the table and writes it as TOML.
//!
//! What the schemas state is what the parsers refuse with 400 (`DeployConfig::parse_toml`,
//! `DetectConfig::parse`, `gantry_monitors::parse_logs`, `MonitorFile::parse` and the
//! server's 30-day limit on monitor durations). Rules between values that JSON Schema cannot
//! state are in the descriptions: names unique in a list, a threshold's `critical` on the
//! bad side of `warning`, an HTTP check's `timeout` at most its `interval`, and the service
//! file's `name` being the service in the path. Two value kinds are wider than any pattern:
//! a render target (a grammar, not a regular language) carries the format
//! `graphite-target`, a regular expression (the regex crate's syntax) the format
//! `rust-regex`; the patterns given for durations, URLs and globs state forms that are always
//! read, a part of what is.

use serde_json::{json, Map, Value};

use crate::openapi_rules::{name, not_blank, SPACE};

/// A humantime duration from the flush interval (10 s by default) up to 30 days: the
/// threshold's `window` and `interval`, the HTTP check's `interval`.
const CHECK_INTERVAL: &str =
    "^([1-9][0-9]{1,5}s|[1-9][0-9]{0,3}m|[1-9][0-9]?h|([1-9]|[12][0-9]|30)d)$";
/// A heartbeat's `period`: one minute to 30 days.
const HEARTBEAT_PERIOD: &str =
    "^([6-9][0-9]s|[1-9][0-9]{2,5}s|[1-9][0-9]{0,3}m|[1-9][0-9]?h|([1-9]|[12][0-9]|30)d)$";
/// A heartbeat's `grace`: zero to 30 days.
const GRACE: &str =
    "^((0|[1-9][0-9]{0,5})s|(0|[1-9][0-9]{0,3})m|(0|[1-9][0-9]?)h|([0-9]|[12][0-9]|30)d)$";
/// A positive duration up to 30 days: a heartbeat's `max_runtime`, an HTTP check's `timeout`.
const POSITIVE_DURATION: &str =
    "^([1-9][0-9]{0,5}s|[1-9][0-9]{0,3}m|[1-9][0-9]?h|([1-9]|[12][0-9]|30)d)$";
/// `[detect] watch`: zero to 24 hours.
const WATCH: &str = "^((0|[1-9][0-9]{0,3})s|(0|[1-9][0-9]{0,2})m|([0-9]|1[0-9]|2[0-4])h|[01]d)$";
/// An `http://` or `https://` URL with a host and no credentials. The host's last label
/// starts with a letter: one that is a number makes the host an IPv4 address (WHATWG).
const HTTP_URL: &str =
    "^https?://([a-z0-9]([a-z0-9-]{0,30}[a-z0-9])?[.]){0,4}[a-z]([a-z0-9-]{0,30}[a-z0-9])?(:[1-9][0-9]{0,3})?(/[A-Za-z0-9._~-]{0,20}){0,4}$";
/// A `shared` entry: a relative path without `.`, `..` or empty components; a trailing `/`
/// makes it a directory.
const SHARED_PATH: &str =
    "^[A-Za-z0-9_-][A-Za-z0-9_.-]{0,40}(/[A-Za-z0-9_-][A-Za-z0-9_.-]{0,40}){0,5}/?$";
/// A `[[logs]]` glob relative to the service's directory, with `*` and `?`: no component
/// starts with a `.` (wildcards never match a leading `.`, so none can match `..`).
const LOG_GLOB: &str =
    "^[A-Za-z0-9_*?-][A-Za-z0-9_.*?-]{0,40}(/[A-Za-z0-9_*?-][A-Za-z0-9_.*?-]{0,40}){0,5}$";
/// The largest integer TOML holds (a signed 64-bit one).
const TOML_INT_MAX: i64 = i64::MAX;

/// Sets the TOML bodies' schemas in `doc`.
pub fn apply(doc: &mut Value) {
    let bodies = [
        (
            "/paths/~1api~1v1~1services~1{name}~1deploy-config/put/requestBody/content/application~1toml/schema",
            "ServiceFile",
            service_file(),
        ),
        (
            "/paths/~1api~1v1~1monitors~1files~1{source}/put/requestBody/content/application~1toml/schema",
            "MonitorFile",
            monitor_file(),
        ),
    ];
    for (pointer, component, schema) in bodies {
        let Some(body) = doc.pointer_mut(pointer) else {
            continue;
        };
        *body = json!({"$ref": format!("#/components/schemas/{component}")});
        if let Some(Value::Object(schemas)) = doc.pointer_mut("/components/schemas") {
            schemas.insert(component.to_string(), schema);
        }
    }
}

fn int(minimum: i64, maximum: i64) -> Value {
    json!({"type": "integer", "minimum": minimum, "maximum": maximum})
}

fn string(keywords: Value) -> Value {
    let mut schema = json!({"type": "string"});
    if let (Value::Object(schema), Value::Object(keywords)) = (&mut schema, keywords) {
        schema.extend(keywords);
    }
    schema
}

fn pattern(pattern: &str, description: &str) -> Value {
    json!({"type": "string", "pattern": pattern, "description": description})
}

fn object(required: &[&str], properties: Map<String, Value>, description: &str) -> Value {
    json!({
        "type": "object",
        "description": description,
        "required": required,
        "additionalProperties": false,
        "properties": properties,
    })
}

fn props(pairs: Vec<(&str, Value)>) -> Map<String, Value> {
    pairs
        .into_iter()
        .map(|(key, value)| (key.to_string(), value))
        .collect()
}

/// Text without NUL characters.
const NO_NUL: &str = "^[^\\x00]*$";

/// A hook (`gantry_core::deploy::Hook`): an argument vector, or a table with `argv` or
/// `shell` and an optional `timeout_secs`.
fn hook() -> Value {
    let argv = json!({
        "type": "array",
        "minItems": 1,
        "description": "Program and arguments; the program (the first) is not empty, and no argument holds a NUL character",
        "items": string(json!({"pattern": NO_NUL})),
        "prefixItems": [string(json!({"minLength": 1, "pattern": NO_NUL}))],
    });
    let timeout = int(1, TOML_INT_MAX);
    let shell = string(json!({
        "description": "A command line for /bin/sh -c: not only space, no NUL character",
        "pattern": format!("^[^\\x00]*[^{SPACE}\\x00][^\\x00]*$"),
    }));
    json!({
        "oneOf": [
            argv.clone(),
            object(&["argv"], props(vec![("argv", argv), ("timeout_secs", timeout.clone())]), "A program run without a shell"),
            object(&["shell"], props(vec![("shell", shell), ("timeout_secs", timeout)]), "A command line run by /bin/sh"),
        ]
    })
}

fn health() -> Value {
    let mut schema = object(
        &[],
        props(vec![
            ("command", hook()),
            (
                "url",
                pattern(HTTP_URL, "An http:// or https:// URL with a host"),
            ),
            ("expect_status", int(100, 599)),
            (
                "expect_body",
                json!({"type": "string", "description": "A substring of a healthy answer's body (url checks only)"}),
            ),
            ("timeout_secs", int(1, TOML_INT_MAX)),
            ("retries", int(0, i64::from(u32::MAX))),
            ("interval_secs", int(0, TOML_INT_MAX)),
        ]),
        "How the agent tells that a release is healthy: `command` or `url`, not both",
    );
    schema["oneOf"] = json!([
        {"required": ["command"], "not": {"anyOf": [{"required": ["url"]}, {"required": ["expect_body"]}]}},
        {"required": ["url"], "not": {"required": ["command"]}},
    ]);
    schema
}

fn detect() -> Value {
    let metric = object(
        &["name", "target", "direction"],
        props(vec![
            ("name", string(name())),
            ("target", string(not_blank())),
            ("direction", json!({"enum": ["drop", "rise", "either"]})),
            (
                "min_shift",
                json!({"type": "number", "exclusiveMinimum": 0, "maximum": 10}),
            ),
            (
                "per_host",
                string(
                    json!({"pattern": "\\$host", "description": "A render target per host, with $host where the host's name goes"}),
                ),
            ),
        ]),
        "A key metric; names are unique in the table",
    );
    object(
        &["metric"],
        props(vec![
            (
                "watch",
                pattern(
                    WATCH,
                    "How long after a change it stays a suspect: at most 24h",
                ),
            ),
            (
                "metric",
                json!({"type": "array", "minItems": 1, "maxItems": gantry_core::detect::MAX_METRICS, "items": metric}),
            ),
        ]),
        "The key metrics regression detection watches (written as a [detect] table)",
    )
}

fn log_watch() -> Value {
    object(
        &["name", "glob", "regex"],
        props(vec![
            ("name", string(name())),
            (
                "glob",
                pattern(LOG_GLOB, "Files relative to the service's directory"),
            ),
            (
                "regex",
                string(json!({"format": "rust-regex", "maxLength": 1000})),
            ),
        ]),
        "A log watch (a [[logs]] table); names are unique among the service's watches",
    )
}

/// The service file: the deploy configuration with the `[detect]` and `[[logs]]` parts.
fn service_file() -> Value {
    let hooks = [
        "before_switch",
        "after_switch",
        "restart",
        "drain",
        "undrain",
    ]
    .into_iter()
    .map(|key| (key, hook()))
    .collect();
    object(
        &["name"],
        props(vec![
            ("name", string(name())),
            ("roles", json!({"type": "array", "minItems": 1, "items": string(name())})),
            ("keep_releases", int(1, i64::from(u32::MAX))),
            ("shared", json!({
                "type": "array",
                "uniqueItems": true,
                "description": "Paths relative to the release; an entry appears once (`a` and `a/` are one entry)",
                "items": pattern(SHARED_PATH, "A relative path; a trailing / makes a directory"),
            })),
            ("hooks", object(&[], props(hooks), "The deploy's hooks, in the order the agent runs them: drain, before_switch, restart, after_switch, undrain")),
            ("health", health()),
            ("detect", detect()),
            // No `logs = []`: log watches are written as [[logs]] tables, and an empty array
            // of tables cannot be (leave the key out).
            ("logs", json!({"type": "array", "minItems": 1, "maxItems": gantry_monitors::logs::MAX_LOG_WATCHES, "items": log_watch()})),
        ]),
        "A service file as the app's repository keeps it, written as TOML: `name` is the service in the path; `[detect]` is its own table and log watches are [[logs]] tables, which the server keeps apart from the deploy configuration agents read",
    )
}

/// The keys every monitor has.
fn common() -> Vec<(&'static str, Value)> {
    vec![
        ("name", string(name())),
        ("service", string(name())),
        ("environment", string(name())),
        (
            "labels",
            json!({
                "type": "object",
                "maxProperties": 20,
                "propertyNames": {"pattern": "^[A-Za-z_][A-Za-z0-9_-]{0,63}$"},
                "additionalProperties": string(json!({"minLength": 1, "maxLength": 256, "pattern": "^[^\\x00-\\x1f\\x7f-\\x9f]+$"})),
            }),
        ),
    ]
}

fn monitor(kind: &str, required: &[&str], more: Vec<(&'static str, Value)>) -> Value {
    let mut properties = common();
    properties.extend(more);
    let mut all = vec!["name", "service", "environment"];
    all.extend_from_slice(required);
    json!({
        "type": "array",
        "maxItems": 1000,
        "items": object(&all, props(properties), &format!("A {kind} monitor; names are unique across the file's monitors of every kind, and across files")),
    })
}

/// The monitor file: `[[threshold]]`, `[[heartbeat]]` and `[[http]]` tables.
fn monitor_file() -> Value {
    let interval = || {
        pattern(CHECK_INTERVAL, "At least the metrics flush interval ([statsd] flush_interval, 10 s by default), at most 30 days")
    };
    let evaluations = int(1, 1000);
    // A TOML integer (64 bits) or a float.
    let threshold_value =
        json!({"anyOf": [int(i64::MIN, i64::MAX), {"type": "number", "not": {"type": "integer"}}]});
    let mut threshold = monitor(
        "threshold",
        &["target"],
        vec![
            (
                "target",
                string(
                    json!({"format": "graphite-target", "minLength": 1, "description": "A render target that selects series (a path or a function call, not a constant)"}),
                ),
            ),
            (
                "reduce",
                json!({"enum": ["avg", "min", "max", "last", "sum"]}),
            ),
            ("window", interval()),
            ("direction", json!({"enum": ["above", "below"]})),
            ("warning", threshold_value.clone()),
            ("critical", threshold_value),
            ("interval", interval()),
            ("for", evaluations.clone()),
            ("missing", json!({"enum": ["unknown", "ok", "critical"]})),
        ],
    );
    threshold["items"]["anyOf"] = json!([{"required": ["warning"]}, {"required": ["critical"]}]);
    threshold["items"]["description"] = json!("A threshold monitor: warning, critical or both; with direction `above` critical is at least warning, with `below` at most. Names are unique across the file's monitors of every kind, and across files");
    let heartbeat = monitor(
        "heartbeat",
        &["period", "grace"],
        vec![
            ("period", pattern(HEARTBEAT_PERIOD, "One minute to 30 days")),
            ("grace", pattern(GRACE, "Up to 30 days")),
            (
                "max_runtime",
                pattern(POSITIVE_DURATION, "Positive, up to 30 days"),
            ),
        ],
    );
    let mut http = monitor(
        "http",
        &["url"],
        vec![
            (
                "url",
                pattern(
                    HTTP_URL,
                    "An http:// or https:// URL with a host and no user name or password",
                ),
            ),
            ("method", json!({"enum": ["GET", "HEAD", "POST"]})),
            ("expect_status", int(100, 599)),
            ("body_contains", string(json!({"minLength": 1}))),
            (
                "body_matches",
                string(json!({"format": "rust-regex", "maxLength": 1000})),
            ),
            (
                "timeout",
                pattern(POSITIVE_DURATION, "Positive, at most the interval"),
            ),
            ("interval", interval()),
            ("for", evaluations),
        ],
    );
    http["items"]["description"] = json!("An HTTP check: `timeout` is at most `interval`. Names are unique across the file's monitors of every kind, and across files");
    json!({
        "type": "object",
        "additionalProperties": false,
        "description": "A monitor file, written as TOML: arrays of [[threshold]], [[heartbeat]] and [[http]] tables. An empty file holds no monitor",
        "properties": {"threshold": threshold, "heartbeat": heartbeat, "http": http},
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn matches(pattern: &str, text: &str) -> bool {
        regex::Regex::new(pattern).unwrap().is_match(text)
    }

    /// Every duration a pattern states (a number of one unit) lies within its bounds.
    #[test]
    fn duration_patterns_state_only_durations_in_their_bounds() {
        let cases = [
            (CHECK_INTERVAL, 10, 30 * 86_400),
            (HEARTBEAT_PERIOD, 60, 30 * 86_400),
            (GRACE, 0, 30 * 86_400),
            (POSITIVE_DURATION, 1, 30 * 86_400),
            (WATCH, 0, 86_400),
        ];
        for (pattern, least, most) in cases {
            let mut stated = 0;
            for (unit, seconds) in [("s", 1u64), ("m", 60), ("h", 3600), ("d", 86_400)] {
                // Every number up to 3,000, those around the bound in this unit, and the
                // powers of ten the patterns' digit counts turn on.
                let edge = most / seconds;
                let powers = (1..=7).flat_map(|k| [10u64.pow(k) - 1, 10u64.pow(k)]);
                let numbers = (0..3000)
                    .chain([edge.saturating_sub(1), edge, edge + 1])
                    .chain(powers);
                for n in numbers {
                    let text = format!("{n}{unit}");
                    if !matches(pattern, &text) {
                        continue;
                    }
                    stated += 1;
                    let parsed = gantry_core::time::parse_duration("d", &text).unwrap();
                    assert_eq!(parsed.as_secs(), n * seconds, "{text}");
                    assert!(
                        (least..=most).contains(&(n * seconds)),
                        "{pattern} states {text}, outside {least}..={most} s"
                    );
                }
            }
            assert!(stated > 100, "{pattern} states few durations");
        }
    }

    #[test]
    fn urls_globs_and_shared_paths_the_patterns_state_are_read() {
        for url in [
            "http://a",
            "https://shop.example.com:8080/health/x",
            "http://1-2.b9/a.b~c",
        ] {
            assert!(url::Url::parse(url).is_ok(), "{url}");
            assert!(matches(HTTP_URL, url), "{url}");
        }
        for bad in [
            "ftp://a",
            "http://",
            "http://user@a",
            "http://a b",
            "http://b.0.0.a.1",
        ] {
            assert!(!matches(HTTP_URL, bad), "{bad}");
        }
        for glob in ["log/*.log", "a", "-x/y?z", "_/a.b.*", "*/*", "?"] {
            assert!(matches(LOG_GLOB, glob), "{glob}");
            assert_eq!(gantry_monitors::logs::check_glob(glob), Ok(()), "{glob}");
        }
        for bad in ["../a", "a/..", ".*", "/abs", "a//b", ".."] {
            assert!(!matches(LOG_GLOB, bad), "{bad}");
        }
        for shared in ["log/", "config/database.yml", "a.b/c-d_e"] {
            assert!(matches(SHARED_PATH, shared), "{shared}");
        }
        for bad in ["/abs", "a/../b", "./a", "a//b", ".", "..", "a/."] {
            assert!(!matches(SHARED_PATH, bad), "{bad}");
        }
    }

    /// The schemas reach the two operations, and the service file states every key of the
    /// deploy configuration.
    #[tokio::test]
    async fn the_toml_bodies_are_described() {
        let doc = crate::openapi_rules::served_document_for_tests().await;
        for (path, component) in [
            ("/api/v1/services/{name}/deploy-config", "ServiceFile"),
            ("/api/v1/monitors/files/{source}", "MonitorFile"),
        ] {
            let schema =
                &doc["paths"][path]["put"]["requestBody"]["content"]["application/toml"]["schema"];
            assert_eq!(
                schema["$ref"],
                format!("#/components/schemas/{component}"),
                "{path}"
            );
            assert_eq!(doc["components"]["schemas"][component]["type"], "object");
        }
        let file = &doc["components"]["schemas"]["ServiceFile"]["properties"];
        let config = doc["components"]["schemas"]["DeployConfig"]["properties"]
            .as_object()
            .unwrap();
        for key in config.keys() {
            assert!(file.get(key).is_some(), "ServiceFile lacks {key}");
        }
        let hooks = doc["components"]["schemas"]["Hooks"]["properties"]
            .as_object()
            .unwrap();
        for key in hooks.keys() {
            assert!(
                file["hooks"]["properties"].get(key).is_some(),
                "ServiceFile lacks hooks.{key}"
            );
        }
    }
}
