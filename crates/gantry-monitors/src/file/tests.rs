//! Tests of the monitor file: every rule and every bad input, one case each, as data.

use super::*;

const FILE: &str = "monitors.toml";

fn parse(text: &str) -> Result<MonitorFile, FileError> {
    MonitorFile::parse(text, FILE, &Limits::default())
}

fn parsed(text: &str) -> MonitorFile {
    match parse(text) {
        Ok(file) => file,
        Err(e) => panic!("{e}\n--- in ---\n{text}"),
    }
}

/// A monitor section from default lines, each `key = value` replaced by an override with
/// the same key, removed by an override with an empty value, or appended when new. The
/// header is line 1 and the default lines follow in order, so line numbers are known.
fn section(header: &str, defaults: &[(&str, &str)], overrides: &[(&str, &str)]) -> String {
    let mut lines: Vec<(String, String)> = defaults
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
    for (key, value) in overrides {
        match lines.iter_mut().find(|(k, _)| k == key) {
            Some(line) => line.1 = value.to_string(),
            None => lines.push((key.to_string(), value.to_string())),
        }
    }
    let mut out = format!("[[{header}]]\n");
    for (key, value) in lines {
        if !value.is_empty() {
            out.push_str(&format!("{key} = {value}\n"));
        }
    }
    out
}

/// Lines: 1 header, 2 name, 3 service, 4 environment, 5 target, 6 warning, 7 critical.
fn threshold(overrides: &[(&str, &str)]) -> String {
    section(
        "threshold",
        &[
            ("name", "\"checkout-errors\""),
            ("service", "\"shop\""),
            ("environment", "\"prod\""),
            ("target", "\"sumSeries(stats.shop.*.errors)\""),
            ("warning", "5.0"),
            ("critical", "10.0"),
        ],
        overrides,
    )
}

/// Lines: 1 header, 2 name, 3 service, 4 environment, 5 period, 6 grace.
fn heartbeat(overrides: &[(&str, &str)]) -> String {
    section(
        "heartbeat",
        &[
            ("name", "\"nightly-export\""),
            ("service", "\"shop\""),
            ("environment", "\"prod\""),
            ("period", "\"1d\""),
            ("grace", "\"30m\""),
        ],
        overrides,
    )
}

/// Lines: 1 header, 2 name, 3 service, 4 environment, 5 url.
fn http(overrides: &[(&str, &str)]) -> String {
    section(
        "http",
        &[
            ("name", "\"shop-health\""),
            ("service", "\"shop\""),
            ("environment", "\"prod\""),
            ("url", "\"https://shop.example.com/health\""),
        ],
        overrides,
    )
}

/// One bad input: the error's kind, line, and words its message must contain.
struct Bad {
    what: &'static str,
    text: String,
    kind: ErrorKind,
    line: usize,
    says: &'static [&'static str],
}

fn bad(
    what: &'static str,
    text: String,
    kind: ErrorKind,
    line: usize,
    says: &'static [&'static str],
) -> Bad {
    Bad {
        what,
        text,
        kind,
        line,
        says,
    }
}

fn check_bad(cases: Vec<Bad>, limits: &Limits) {
    for case in cases {
        let error = match MonitorFile::parse(&case.text, FILE, limits) {
            Ok(_) => panic!("{}: accepted\n{}", case.what, case.text),
            Err(e) => e,
        };
        let shown = error.to_string();
        assert_eq!(error.kind, case.kind, "{}: {shown}", case.what);
        assert_eq!(error.line, Some(case.line), "{}: {shown}", case.what);
        assert_eq!(error.file, FILE, "{}", case.what);
        for words in case.says {
            assert!(
                shown.contains(words),
                "{}: {shown:?} lacks {words:?}",
                case.what
            );
        }
    }
}

#[test]
fn bad_thresholds() {
    use ErrorKind::*;
    let cases = vec![
        bad(
            "unknown key",
            threshold(&[("critcal", "12.0")]),
            UnknownKey,
            8,
            &[
                "monitors.toml:8: threshold \"checkout-errors\": unknown key 'critcal'",
                "did you mean 'critical'?",
            ],
        ),
        bad(
            "unknown section",
            threshold(&[]).replace("[[threshold]]", "[[thresholds]]"),
            UnknownKey,
            1,
            &["unknown key 'thresholds'", "did you mean 'threshold'?"],
        ),
        bad(
            "missing key",
            threshold(&[("target", "")]),
            MissingKey,
            1,
            &["threshold \"checkout-errors\": the required key 'target' is missing"],
        ),
        bad(
            "target that does not parse",
            threshold(&[("target", "\"sumSeries(stats.shop.*.errors\"")]),
            InvalidTarget,
            5,
            &["target \"sumSeries(stats.shop.*.errors\" is not a Graphite render target"],
        ),
        bad(
            "target that is a constant",
            threshold(&[("target", "\"42\"")]),
            InvalidTarget,
            5,
            &["target \"42\" is a constant"],
        ),
        bad(
            "threshold that is a string",
            threshold(&[("warning", "\"5\"")]),
            NotANumber,
            6,
            &["warning must be a number", "got the string \"5\""],
        ),
        bad(
            "threshold that is not finite",
            threshold(&[("critical", "nan")]),
            NotANumber,
            7,
            &["critical must be a number", "NaN is not a finite number"],
        ),
        bad(
            "threshold that is a boolean",
            threshold(&[("critical", "true")]),
            NotANumber,
            7,
            &["critical must be a number", "got boolean"],
        ),
        bad(
            "critical below warning, direction above",
            threshold(&[("warning", "10.0"), ("critical", "5.0")]),
            ThresholdOrder,
            7,
            &[
                "critical (5) is below warning (10)",
                "direction = \"above\"",
                "at least",
            ],
        ),
        bad(
            "critical above warning, direction below",
            threshold(&[("direction", "\"below\"")]),
            ThresholdOrder,
            7,
            &[
                "critical (10) is above warning (5)",
                "direction = \"below\"",
                "at most",
            ],
        ),
        bad(
            "no threshold",
            threshold(&[("warning", ""), ("critical", "")]),
            NoThreshold,
            2,
            &["neither warning nor critical is set"],
        ),
        bad(
            "for = 0",
            threshold(&[("for", "0")]),
            ZeroFor,
            8,
            &["for = 0", "at least 1 evaluation"],
        ),
        bad(
            "for below 0",
            threshold(&[("for", "-2")]),
            ZeroFor,
            8,
            &["for = -2"],
        ),
        bad(
            "for too large",
            threshold(&[("for", "5000")]),
            InvalidValue,
            8,
            &["for = 5000", "at most 1000"],
        ),
        bad(
            "interval shorter than the flush interval",
            threshold(&[("interval", "\"5s\"")]),
            IntervalTooShort,
            8,
            &["interval \"5s\" is shorter than the metrics flush interval (10s)"],
        ),
        bad(
            "window shorter than the flush interval",
            threshold(&[("window", "\"2s\"")]),
            IntervalTooShort,
            8,
            &["window \"2s\" is shorter than the metrics flush interval"],
        ),
        bad(
            "duration that does not parse",
            threshold(&[("window", "\"5 minutes please\"")]),
            InvalidDuration,
            8,
            &["window '5 minutes please' is not a duration"],
        ),
        bad(
            "duration of zero",
            threshold(&[("interval", "\"0s\"")]),
            InvalidDuration,
            8,
            &["interval is zero"],
        ),
        bad(
            "duration that is a number",
            threshold(&[("window", "300")]),
            WrongType,
            8,
            &["window: invalid type: integer `300`, expected a string"],
        ),
        bad(
            "reduce that is not one of the words",
            threshold(&[("reduce", "\"mean\"")]),
            WrongType,
            8,
            &["reduce: unknown value `mean`, expected one of `avg`"],
        ),
        bad(
            "missing that is not one of the words",
            threshold(&[("missing", "\"zero\"")]),
            WrongType,
            8,
            &["missing: unknown value `zero`"],
        ),
        bad(
            "invalid monitor name",
            threshold(&[("name", "\"checkout errors\"")]),
            InvalidName,
            2,
            &["threshold \"checkout errors\": name 'checkout errors' is not a valid name"],
        ),
        bad(
            "invalid service name",
            threshold(&[("service", "\"\"")]),
            InvalidName,
            3,
            &["service must not be empty"],
        ),
        bad(
            "invalid label key",
            threshold(&[("labels", "{ \"team name\" = \"checkout\" }")]),
            InvalidName,
            8,
            &["label key \"team name\" is not a valid label key"],
        ),
        bad(
            "label key with a dot",
            threshold(&[("labels", "{ \"team.name\" = \"checkout\" }")]),
            InvalidName,
            8,
            &["label key \"team.name\""],
        ),
        bad(
            "empty label value",
            threshold(&[("labels", "{ team = \"\" }")]),
            InvalidValue,
            8,
            &["label team's value is empty"],
        ),
        bad(
            "label value that is a number",
            threshold(&[("labels", "{ team = 5 }")]),
            WrongType,
            8,
            &["team: invalid type: integer `5`, expected a string"],
        ),
        bad(
            "syntax error",
            threshold(&[("critical", "")]) + "critical =\n",
            Syntax,
            7,
            &["monitors.toml:7: "],
        ),
    ];
    check_bad(cases, &Limits::default());
}

#[test]
fn bad_heartbeats() {
    use ErrorKind::*;
    let cases = vec![
        bad(
            "period that does not parse",
            heartbeat(&[("period", "\"daily\"")]),
            InvalidDuration,
            5,
            &["heartbeat \"nightly-export\": period 'daily' is not a duration"],
        ),
        bad(
            "period under a minute",
            heartbeat(&[("period", "\"30s\"")]),
            InvalidDuration,
            5,
            &["period \"30s\" is shorter than a minute", "[[http]]"],
        ),
        bad(
            "grace that does not parse",
            heartbeat(&[("grace", "\"a while\"")]),
            InvalidDuration,
            6,
            &["grace 'a while' is not a duration"],
        ),
        bad(
            "max_runtime of zero",
            heartbeat(&[("max_runtime", "\"0s\"")]),
            InvalidDuration,
            7,
            &["max_runtime is zero"],
        ),
        bad(
            "missing grace",
            heartbeat(&[("grace", "")]),
            MissingKey,
            1,
            &["the required key 'grace' is missing"],
        ),
        bad(
            "a threshold key in a heartbeat",
            heartbeat(&[("critical", "3")]),
            UnknownKey,
            7,
            &["heartbeat \"nightly-export\": unknown key 'critical'"],
        ),
    ];
    check_bad(cases, &Limits::default());
}

#[test]
fn bad_http_checks() {
    use ErrorKind::*;
    let long_regex = format!("\"{}\"", "a".repeat(104));
    let cases = vec![
        bad(
            "timeout longer than the interval",
            http(&[("interval", "\"1m\""), ("timeout", "\"2m\"")]),
            TimeoutTooLong,
            7,
            &["timeout \"2m\" is longer than the interval (1m)"],
        ),
        bad(
            "interval shorter than the flush interval",
            http(&[("interval", "\"1s\"")]),
            IntervalTooShort,
            6,
            &["interval \"1s\" is shorter than the metrics flush interval"],
        ),
        bad(
            "URL that is not http",
            http(&[("url", "\"ftp://shop.example.com/health\"")]),
            InvalidUrl,
            5,
            &["url \"ftp://shop.example.com/health\" uses ftp:, not http: or https:"],
        ),
        bad(
            "not a URL",
            http(&[("url", "\"shop.example.com/health\"")]),
            InvalidUrl,
            5,
            &["url \"shop.example.com/health\" is not a URL"],
        ),
        bad(
            "URL with credentials",
            http(&[("url", "\"https://admin:hunter2@shop.example.com/\"")]),
            InvalidUrl,
            5,
            &[
                "url \"https://…@shop.example.com/\" carries a user name or password",
                "version control",
            ],
        ),
        bad(
            "invalid regex",
            http(&[("body_matches", "\"status: (up\"")]),
            InvalidRegex,
            6,
            &["http \"shop-health\": body_matches is not a valid regular expression"],
        ),
        bad(
            "regex too long",
            http(&[("body_matches", &long_regex)]),
            RegexTooLarge,
            6,
            &["body_matches is 104 characters long; the limit is 100"],
        ),
        bad(
            "regex too large once compiled",
            http(&[("body_matches", "\"\\\\w{1000}\\\\w{1000}\"")]),
            RegexTooLarge,
            6,
            &["body_matches compiles to more than 65536 bytes"],
        ),
        bad(
            "status out of range",
            http(&[("expect_status", "700")]),
            InvalidValue,
            6,
            &["expect_status = 700 is not an HTTP status"],
        ),
        bad(
            "empty body_contains",
            http(&[("body_contains", "\"\"")]),
            InvalidValue,
            6,
            &["body_contains is empty"],
        ),
        bad(
            "method not allowed",
            http(&[("method", "\"DELETE\"")]),
            WrongType,
            6,
            &["method: unknown value `DELETE`, expected one of `GET`, `HEAD`, `POST`"],
        ),
        bad(
            "for = 0",
            http(&[("for", "0")]),
            ZeroFor,
            6,
            &["http \"shop-health\": for = 0"],
        ),
        bad(
            "timeout of zero",
            http(&[("timeout", "\"0ms\"")]),
            InvalidDuration,
            6,
            &["timeout is zero"],
        ),
    ];
    let limits = Limits {
        max_regex_chars: 100,
        regex_size_limit_bytes: 64 * 1024,
        ..Limits::default()
    };
    check_bad(cases, &limits);
}

#[test]
fn bad_files() {
    use ErrorKind::*;
    // A duplicate name across kinds: the second one is reported, naming the first.
    let duplicate = format!(
        "{}\n{}",
        threshold(&[("name", "\"shop\"")]),
        http(&[("name", "\"shop\"")])
    );
    // An error in the second monitor of a kind names that monitor.
    let second = format!(
        "{}\n{}",
        http(&[]),
        http(&[("name", "\"api-health\""), ("expect", "200")])
    );
    let cases = vec![
        bad(
            "duplicate name across kinds",
            duplicate,
            DuplicateName,
            10,
            &[
                "monitors.toml:10: http \"shop\": name \"shop\" is already used by the threshold at line 2",
            ],
        ),
        bad(
            "unknown key in the second monitor",
            second,
            UnknownKey,
            12,
            &["http \"api-health\": unknown key 'expect'", "did you mean"],
        ),
        bad(
            "a section that is not an array of tables",
            "[threshold]\nname = \"x\"\n".to_string(),
            WrongType,
            1,
            &["expected a sequence"],
        ),
    ];
    check_bad(cases, &Limits::default());

    let limits = Limits {
        max_file_bytes: 100,
        ..Limits::default()
    };
    match MonitorFile::parse(&threshold(&[]), FILE, &limits) {
        Err(e) => {
            assert_eq!(e.kind, TooLarge);
            assert!(e.to_string().contains("the limit is 100"), "{e}");
        }
        Ok(_) => panic!("a file over the size limit was accepted"),
    }
    let limits = Limits {
        max_monitors: 1,
        ..Limits::default()
    };
    match MonitorFile::parse(&format!("{}\n{}", threshold(&[]), http(&[])), FILE, &limits) {
        Err(e) => {
            assert_eq!(e.kind, TooLarge);
            assert!(e.to_string().contains("2 monitors; the limit is 1"), "{e}");
        }
        Ok(_) => panic!("a file over the monitor limit was accepted"),
    }
    let limits = Limits {
        max_labels: 1,
        ..Limits::default()
    };
    let text = threshold(&[("labels", "{ a = \"1\", b = \"2\" }")]);
    match MonitorFile::parse(&text, FILE, &limits) {
        Err(e) => {
            assert_eq!(e.kind, TooLarge);
            assert!(e.to_string().contains("2 labels; the limit is 1"), "{e}");
        }
        Ok(_) => panic!("too many labels accepted"),
    }
}

const EXAMPLE: &str = r#"
[[threshold]]
name = "checkout-errors"
service = "shop"
environment = "prod"
target = "sumSeries(stats.shop.*.errors)"
reduce = "max"
window = "10m"
direction = "above"
warning = 5
critical = 10.5
interval = "1m"
for = 3
missing = "ok"
labels = { team = "checkout", tier = "1" }

[[heartbeat]]
name = "nightly-export"
service = "shop"
environment = "prod"
period = "1d"
grace = "30m"
max_runtime = "2h"

[[http]]
name = "shop-health"
service = "shop"
environment = "prod"
url = "https://shop.example.com/health"
method = "HEAD"
expect_status = 204
body_contains = "ok"
body_matches = '"status":\s*"up"'
timeout = "5s"
interval = "1m"
for = 2
"#;

#[test]
fn the_example_parses_to_its_model() {
    let file = parsed(EXAMPLE);
    let kinds: Vec<MonitorKind> = file.monitors().iter().map(Monitor::kind).collect();
    assert_eq!(
        kinds,
        [
            MonitorKind::Threshold,
            MonitorKind::Heartbeat,
            MonitorKind::Http
        ]
    );
    let Some(Monitor {
        check: Check::Threshold(t),
        labels,
        ..
    }) = file.get("checkout-errors")
    else {
        panic!("no threshold");
    };
    assert_eq!(t.target, "sumSeries(stats.shop.*.errors)");
    assert_eq!(t.reduce, Reduce::Max);
    assert_eq!(t.window, Duration::from_secs(600));
    assert_eq!((t.warning, t.critical), (Some(5.0), Some(10.5)));
    assert_eq!(t.hard_after, 3);
    assert_eq!(t.missing, MissingData::Ok);
    assert_eq!(labels.get("team").map(String::as_str), Some("checkout"));

    let Some(Check::Heartbeat(h)) = file.get("nightly-export").map(|m| &m.check) else {
        panic!("no heartbeat");
    };
    assert_eq!(h.max_runtime, Some(Duration::from_secs(7200)));

    let Some(monitor) = file.get("shop-health") else {
        panic!("no http check");
    };
    assert_eq!(monitor.hard_after(), 2);
    let Check::Http(c) = &monitor.check else {
        panic!("not http");
    };
    assert_eq!(c.method, HttpMethod::Head);
    assert_eq!(c.expect_status, 204);
    assert!(c.body_ok(r#"ok {"status": "up"}"#));
    assert!(!c.body_ok(r#"ok {"status": "down"}"#));
    assert!(!c.body_ok(r#"{"status": "up"}"#));
}

#[test]
fn defaults() {
    let file = parsed(&format!(
        "{}\n{}\n{}",
        threshold(&[]),
        heartbeat(&[]),
        http(&[])
    ));
    let expected = ThresholdCheck {
        target: "sumSeries(stats.shop.*.errors)".into(),
        reduce: Reduce::Avg,
        window: Duration::from_secs(300),
        direction: Direction::Above,
        warning: Some(5.0),
        critical: Some(10.0),
        interval: Duration::from_secs(60),
        hard_after: 1,
        missing: MissingData::Unknown,
    };
    assert_eq!(
        file.get("checkout-errors").map(|m| &m.check),
        Some(&Check::Threshold(expected))
    );
    let expected = HttpCheck {
        url: "https://shop.example.com/health".into(),
        method: HttpMethod::Get,
        expect_status: 200,
        body_contains: None,
        body_matches: None,
        timeout: Duration::from_secs(10),
        interval: Duration::from_secs(60),
        hard_after: 1,
    };
    assert_eq!(
        file.get("shop-health").map(|m| &m.check),
        Some(&Check::Http(expected))
    );
    assert_eq!(file.get("nightly-export").map(Monitor::hard_after), Some(1));
    assert_eq!(parsed("").monitors().len(), 0);
}

#[test]
fn accepted_edge_cases() {
    let ok = [
        ("one threshold only", threshold(&[("warning", "")])),
        ("equal thresholds", threshold(&[("warning", "10.0")])),
        (
            "below with critical lower",
            threshold(&[
                ("direction", "\"below\""),
                ("warning", "10"),
                ("critical", "2"),
            ]),
        ),
        (
            "negative thresholds",
            threshold(&[("warning", "-5"), ("critical", "-1")]),
        ),
        (
            "interval equal to the flush interval",
            threshold(&[("interval", "\"10s\"")]),
        ),
        (
            "a plain path target",
            threshold(&[("target", "\"stats.shop.errors\"")]),
        ),
        (
            "a piped target",
            threshold(&[(
                "target",
                "\"stats.shop.*.errors | sumSeries() | alias('x')\"",
            )]),
        ),
        (
            "timeout equal to the interval",
            http(&[("timeout", "\"1m\"")]),
        ),
        ("no grace", heartbeat(&[("grace", "\"0s\"")])),
        (
            "http",
            http(&[("url", "\"http://10.0.0.5:8080/health?full=1\"")]),
        ),
    ];
    for (what, text) in ok {
        if let Err(e) = parse(&text) {
            panic!("{what}: {e}");
        }
    }
}

#[test]
fn canonical_form_round_trips_and_is_stable() {
    let file = parsed(EXAMPLE);
    let canonical = file.to_toml();
    let again = parsed(&canonical);
    assert_eq!(again, file);
    assert_eq!(again.to_toml(), canonical);

    // Written in another order, with other spellings of the same values: the same file.
    let shuffled = r#"
[[http]]
for = 2
interval = "60s"
timeout = "5000ms"
body_matches = '"status":\s*"up"'
body_contains = "ok"
expect_status = 204
method = "HEAD"
url = "https://shop.example.com/health"
environment = "prod"
service = "shop"
name = "shop-health"

[[heartbeat]]
max_runtime = "120m"
grace = "1800s"
period = "24h"
name = "nightly-export"
service = "shop"
environment = "prod"

[[threshold]]
labels = { tier = "1", team = "checkout" }
missing = "ok"
for = 3
interval = "1m"
critical = 10.5
warning = 5.0
direction = "above"
window = "600s"
reduce = "max"
target = "sumSeries(stats.shop.*.errors)"
environment = "prod"
service = "shop"
name = "checkout-errors"
"#;
    assert_eq!(parsed(shuffled), file);
    assert_eq!(parsed(shuffled).to_toml(), canonical);
}

#[test]
fn canonical_text() {
    let text = format!(
        "{}\n{}\n{}",
        http(&[("timeout", "\"90s\""), ("interval", "\"5m\"")]),
        threshold(&[
            ("name", "\"b-errors\""),
            ("labels", "{ z = \"1\", a = \"2\" }")
        ]),
        threshold(&[
            ("name", "\"a-errors\""),
            ("target", "'alias(x.y, \"quoted\")'")
        ]),
    );
    let expected = r#"[[threshold]]
name = "a-errors"
service = "shop"
environment = "prod"
target = "alias(x.y, \"quoted\")"
reduce = "avg"
window = "5m"
direction = "above"
warning = 5.0
critical = 10.0
interval = "1m"
for = 1
missing = "unknown"

[[threshold]]
name = "b-errors"
service = "shop"
environment = "prod"
target = "sumSeries(stats.shop.*.errors)"
reduce = "avg"
window = "5m"
direction = "above"
warning = 5.0
critical = 10.0
interval = "1m"
for = 1
missing = "unknown"
labels = { a = "2", z = "1" }

[[http]]
name = "shop-health"
service = "shop"
environment = "prod"
url = "https://shop.example.com/health"
method = "GET"
expect_status = 200
timeout = "1m30s"
interval = "5m"
for = 1
"#;
    assert_eq!(parsed(&text).to_toml(), expected);
}

#[test]
fn durations_print_in_their_shortest_exact_form() {
    let cases = [
        (0, "0s"),
        (1_000, "1s"),
        (90_000, "1m30s"),
        (5_400_000, "1h30m"),
        (86_400_000, "1d"),
        (93_784_005, "1d2h3m4s5ms"),
        (1_500, "1s500ms"),
    ];
    for (millis, text) in cases {
        let duration = Duration::from_millis(millis);
        assert_eq!(format_duration(duration), text);
        assert_eq!(parse_duration("d", text).ok(), Some(duration), "{text}");
    }
}

#[test]
fn diffs_by_name() {
    let old = parsed(&format!(
        "{}\n{}\n{}",
        threshold(&[]),
        heartbeat(&[]),
        http(&[("name", "\"old-health\"")])
    ));
    let new = parsed(&format!(
        "{}\n{}\n{}",
        threshold(&[("critical", "12.0"), ("labels", "{ team = \"checkout\" }")]),
        http(&[("name", "\"nightly-export\"")]),
        http(&[])
    ));
    let lines = diff(&old, &new);
    let shown: Vec<String> = lines.iter().map(ToString::to_string).collect();
    assert_eq!(
        shown,
        [
            "~ threshold \"checkout-errors\": critical 10.0 → 12.0; labels (none) → { team = \"checkout\" }",
            "~ http \"nightly-export\": kind heartbeat → http; url (none) → \"https://shop.example.com/health\"; \
             method (none) → \"GET\"; expect_status (none) → 200; timeout (none) → \"10s\"; \
             interval (none) → \"1m\"; for (none) → 1; period \"1d\" → (none); grace \"30m\" → (none)",
            "- http \"old-health\"",
            "+ http \"shop-health\"",
        ]
    );
    assert_eq!(
        lines[0],
        DiffLine::Changed {
            kind: MonitorKind::Threshold,
            name: "checkout-errors".into(),
            changes: vec![
                KeyChange {
                    key: "critical".into(),
                    old: Some("10.0".into()),
                    new: Some("12.0".into()),
                },
                KeyChange {
                    key: "labels".into(),
                    old: None,
                    new: Some("{ team = \"checkout\" }".into()),
                },
            ],
        }
    );
    assert!(diff(&old, &old).is_empty());
    assert!(diff(&old, &parsed(&old.to_toml())).is_empty());
}

#[test]
fn errors_never_repeat_a_password() {
    let text = http(&[("url", "\"https://admin:hunter2@shop.example.com/\"")]);
    match parse(&text) {
        Ok(_) => panic!("credentials accepted"),
        Err(e) => assert!(!e.to_string().contains("hunter2"), "{e}"),
    }
}
