//! The monitor file: monitors kept in version control as TOML and applied with
//! `gantry monitor apply FILE`.
//!
//! ```toml
//! [[threshold]]
//! name = "checkout-errors"          # unique in the file, across kinds
//! service = "shop"
//! environment = "prod"
//! target = "sumSeries(stats.shop.*.errors)"
//! reduce = "avg"                    # avg | min | max | last | sum; default avg
//! window = "5m"                     # default 5m
//! direction = "above"               # above | below: the bad side; default above
//! warning = 5.0                     # warning, critical or both
//! critical = 10.0
//! interval = "1m"                   # default 1m
//! for = 3                           # evaluations before a new state is hard; default 1
//! missing = "unknown"               # unknown | ok | critical; default unknown
//! labels = { team = "checkout" }
//!
//! [[heartbeat]]
//! name = "nightly-export"
//! service = "shop"
//! environment = "prod"
//! period = "1d"
//! grace = "30m"
//! max_runtime = "2h"                # optional
//!
//! [[http]]
//! name = "shop-health"
//! service = "shop"
//! environment = "prod"
//! url = "https://shop.example.com/health"
//! method = "GET"                    # GET | HEAD | POST; default GET
//! expect_status = 200               # default 200
//! body_contains = "ok"              # optional
//! body_matches = "\"status\":\\s*\"up\""  # optional regular expression
//! timeout = "5s"                    # default 10s, at most the interval
//! interval = "1m"
//! for = 2
//! ```
//!
//! Parsing is strict: an unknown key is an error (typos must not silently disable a
//! monitor), and every error names the file, the line, the monitor and the key. A parsed
//! file prints back in one canonical form ([`MonitorFile::to_toml`]: kinds in the order
//! above, monitors by name, every key written, defaults included), which is what the
//! server stores and what [`diff`] compares.

use std::collections::{BTreeMap, HashMap};
use std::fmt;
use std::time::Duration;

use gantry_core::names::validate_name;
use gantry_core::time::parse_duration;
use serde::Deserialize;
use toml::Spanned;

use crate::error::{from_toml, ErrorKind, FileError, Place, Source};
use crate::pattern::{Pattern, PatternError};

/// Limits a file is checked against. The server fills them from its configuration.
#[derive(Debug, Clone, PartialEq)]
pub struct Limits {
    /// Seconds between StatsD flushes. No interval or window may be shorter: a metric
    /// changes at most once a flush, so evaluating faster only repeats the last answer.
    pub flush_interval_secs: f64,
    /// Largest file accepted, in bytes.
    pub max_file_bytes: usize,
    /// Most monitors in one file.
    pub max_monitors: usize,
    /// Most labels on one monitor.
    pub max_labels: usize,
    /// Longest regular expression accepted, in characters.
    pub max_regex_chars: usize,
    /// Largest compiled regular expression, in bytes (the `regex` crate's size limit).
    pub regex_size_limit_bytes: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            flush_interval_secs: 10.0,
            max_file_bytes: 1024 * 1024,
            max_monitors: 1000,
            max_labels: 20,
            max_regex_chars: 1000,
            regex_size_limit_bytes: 1024 * 1024,
        }
    }
}

/// Longest label key and value, in characters.
const MAX_LABEL_KEY: usize = 64;
const MAX_LABEL_VALUE: usize = 256;
/// Most evaluations `for` may ask for.
const MAX_FOR: i64 = 1000;
/// Shortest heartbeat period: pings are HTTP requests from cron jobs; anything more
/// frequent is better watched by an HTTP check.
const MIN_HEARTBEAT_PERIOD: Duration = Duration::from_secs(60);

/// How a window of values becomes one number.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Reduce {
    Avg,
    Min,
    Max,
    /// The newest known value.
    Last,
    Sum,
}

/// Which side of the thresholds is bad.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Direction {
    /// Values above the thresholds are bad (errors, latency).
    Above,
    /// Values below the thresholds are bad (orders, free disk).
    Below,
}

/// What a window with no known value means.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum MissingData {
    /// UNKNOWN: something stopped sending.
    Unknown,
    /// OK: the metric is sparse (errors that are only counted when they happen).
    Ok,
    /// CRITICAL: silence itself is the failure.
    Critical,
}

/// The method of an HTTP check.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Deserialize)]
#[serde(rename_all = "UPPERCASE")]
pub enum HttpMethod {
    Get,
    Head,
    Post,
}

/// The kinds of monitor, which are also the file's section names.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum MonitorKind {
    Threshold,
    Heartbeat,
    Http,
}

impl Reduce {
    pub fn as_str(self) -> &'static str {
        match self {
            Reduce::Avg => "avg",
            Reduce::Min => "min",
            Reduce::Max => "max",
            Reduce::Last => "last",
            Reduce::Sum => "sum",
        }
    }
}

impl Direction {
    pub fn as_str(self) -> &'static str {
        match self {
            Direction::Above => "above",
            Direction::Below => "below",
        }
    }
}

impl MissingData {
    pub fn as_str(self) -> &'static str {
        match self {
            MissingData::Unknown => "unknown",
            MissingData::Ok => "ok",
            MissingData::Critical => "critical",
        }
    }
}

impl HttpMethod {
    pub fn as_str(self) -> &'static str {
        match self {
            HttpMethod::Get => "GET",
            HttpMethod::Head => "HEAD",
            HttpMethod::Post => "POST",
        }
    }
}

impl MonitorKind {
    /// The section name: `threshold`, `heartbeat`, `http`.
    pub fn as_str(self) -> &'static str {
        match self {
            MonitorKind::Threshold => "threshold",
            MonitorKind::Heartbeat => "heartbeat",
            MonitorKind::Http => "http",
        }
    }
}

impl fmt::Display for MonitorKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A parsed, valid monitor file. Monitors are kept in canonical order (by kind, then by
/// name), so two files with the same monitors are equal however they were written.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct MonitorFile {
    monitors: Vec<Monitor>,
}

/// One monitor: what it watches and whose it is.
#[derive(Debug, Clone, PartialEq)]
pub struct Monitor {
    pub name: String,
    pub service: String,
    pub environment: String,
    /// Free labels for routing and silences (`team = "checkout"`).
    pub labels: BTreeMap<String, String>,
    pub check: Check,
}

/// What a monitor checks.
#[derive(Debug, Clone, PartialEq)]
pub enum Check {
    Threshold(ThresholdCheck),
    Heartbeat(HeartbeatCheck),
    Http(HttpCheck),
}

/// A Graphite target reduced over a window and compared with thresholds.
#[derive(Debug, Clone, PartialEq)]
pub struct ThresholdCheck {
    /// A render target; it parses (checked), it is not evaluated here.
    pub target: String,
    pub reduce: Reduce,
    pub window: Duration,
    pub direction: Direction,
    pub warning: Option<f64>,
    pub critical: Option<f64>,
    pub interval: Duration,
    /// `for`: consecutive evaluations before a new state is hard.
    pub hard_after: u32,
    pub missing: MissingData,
}

/// A job that pings Gantry; silence past `period + grace` is the alarm.
#[derive(Debug, Clone, PartialEq)]
pub struct HeartbeatCheck {
    pub period: Duration,
    pub grace: Duration,
    /// A run longer than this since its `start` ping is a WARNING.
    pub max_runtime: Option<Duration>,
}

/// A URL fetched on an interval.
#[derive(Debug, Clone, PartialEq)]
pub struct HttpCheck {
    /// An http or https URL without credentials, as the `url` crate normalises it.
    pub url: String,
    pub method: HttpMethod,
    pub expect_status: u16,
    pub body_contains: Option<String>,
    pub body_matches: Option<Pattern>,
    pub timeout: Duration,
    pub interval: Duration,
    /// `for`: consecutive evaluations before a new state is hard.
    pub hard_after: u32,
}

impl Check {
    pub fn kind(&self) -> MonitorKind {
        match self {
            Check::Threshold(_) => MonitorKind::Threshold,
            Check::Heartbeat(_) => MonitorKind::Heartbeat,
            Check::Http(_) => MonitorKind::Http,
        }
    }
}

impl Monitor {
    pub fn kind(&self) -> MonitorKind {
        self.check.kind()
    }

    /// Consecutive evaluations before a new state is hard. A heartbeat's state follows
    /// from time and pings, not from repeated samples, so it is hard at once.
    pub fn hard_after(&self) -> u32 {
        match &self.check {
            Check::Threshold(t) => t.hard_after,
            Check::Http(h) => h.hard_after,
            Check::Heartbeat(_) => 1,
        }
    }

    /// How often the monitor is evaluated; a heartbeat is evaluated whenever the caller
    /// likes (each ping and a periodic sweep).
    pub fn interval(&self) -> Option<Duration> {
        match &self.check {
            Check::Threshold(t) => Some(t.interval),
            Check::Http(h) => Some(h.interval),
            Check::Heartbeat(_) => None,
        }
    }
}

impl HttpCheck {
    /// Whether a response body satisfies `body_contains` and `body_matches` (both, when
    /// both are given; true when neither is).
    pub fn body_ok(&self, body: &str) -> bool {
        self.body_contains
            .as_deref()
            .is_none_or(|needle| body.contains(needle))
            && self.body_matches.as_ref().is_none_or(|p| p.is_match(body))
    }
}

// ---------------------------------------------------------------------------------------
// The file as serde reads it: every value keeps its span, so a rule broken after parsing
// still points at its line.

type Text = Spanned<String>;
type Labels = Option<Spanned<BTreeMap<String, Text>>>;

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawFile {
    #[serde(default)]
    threshold: Vec<Spanned<RawThreshold>>,
    #[serde(default)]
    heartbeat: Vec<Spanned<RawHeartbeat>>,
    #[serde(default)]
    http: Vec<Spanned<RawHttp>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawThreshold {
    name: Text,
    service: Text,
    environment: Text,
    labels: Labels,
    target: Text,
    reduce: Option<Spanned<Reduce>>,
    window: Option<Text>,
    direction: Option<Spanned<Direction>>,
    warning: Option<Spanned<toml::Value>>,
    critical: Option<Spanned<toml::Value>>,
    interval: Option<Text>,
    #[serde(rename = "for")]
    hard_after: Option<Spanned<i64>>,
    missing: Option<Spanned<MissingData>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawHeartbeat {
    name: Text,
    service: Text,
    environment: Text,
    labels: Labels,
    period: Text,
    grace: Text,
    max_runtime: Option<Text>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawHttp {
    name: Text,
    service: Text,
    environment: Text,
    labels: Labels,
    url: Text,
    method: Option<Spanned<HttpMethod>>,
    expect_status: Option<Spanned<i64>>,
    body_contains: Option<Text>,
    body_matches: Option<Text>,
    timeout: Option<Text>,
    interval: Option<Text>,
    #[serde(rename = "for")]
    hard_after: Option<Spanned<i64>>,
}

/// A second, forgiving reading used only to say which monitor a serde error is in.
#[derive(Deserialize)]
struct LooseFile {
    #[serde(default)]
    threshold: Vec<Spanned<LooseEntry>>,
    #[serde(default)]
    heartbeat: Vec<Spanned<LooseEntry>>,
    #[serde(default)]
    http: Vec<Spanned<LooseEntry>>,
}

#[derive(Deserialize)]
struct LooseEntry {
    name: Option<toml::Value>,
}

/// One raw monitor of any kind, with where it starts.
enum RawMonitor {
    Threshold(RawThreshold),
    Heartbeat(RawHeartbeat),
    Http(RawHttp),
}

impl RawMonitor {
    fn kind(&self) -> MonitorKind {
        match self {
            RawMonitor::Threshold(_) => MonitorKind::Threshold,
            RawMonitor::Heartbeat(_) => MonitorKind::Heartbeat,
            RawMonitor::Http(_) => MonitorKind::Http,
        }
    }

    fn name(&self) -> &Text {
        match self {
            RawMonitor::Threshold(t) => &t.name,
            RawMonitor::Heartbeat(h) => &h.name,
            RawMonitor::Http(h) => &h.name,
        }
    }
}

impl MonitorFile {
    /// Parses and checks a monitor file. `file_name` is only used in messages. The first
    /// broken rule in file order is reported.
    pub fn parse(text: &str, file_name: &str, limits: &Limits) -> Result<MonitorFile, FileError> {
        let source = Source::new(file_name, text);
        if text.len() > limits.max_file_bytes {
            return Err(source.error(
                None,
                ErrorKind::TooLarge,
                format!(
                    "the file is {} bytes long; the limit is {}: split it into several files",
                    text.len(),
                    limits.max_file_bytes
                ),
            ));
        }
        let raw: RawFile =
            toml::from_str(text).map_err(|e| locate(source, from_toml(source, &e)))?;

        let mut entries: Vec<(usize, RawMonitor)> = Vec::new();
        entries.extend(
            raw.threshold
                .into_iter()
                .map(|t| (t.span().start, RawMonitor::Threshold(t.into_inner()))),
        );
        entries.extend(
            raw.heartbeat
                .into_iter()
                .map(|h| (h.span().start, RawMonitor::Heartbeat(h.into_inner()))),
        );
        entries.extend(
            raw.http
                .into_iter()
                .map(|h| (h.span().start, RawMonitor::Http(h.into_inner()))),
        );
        if entries.len() > limits.max_monitors {
            return Err(source.error(
                None,
                ErrorKind::TooLarge,
                format!(
                    "the file has {} monitors; the limit is {}: split it into several files",
                    entries.len(),
                    limits.max_monitors
                ),
            ));
        }
        entries.sort_by_key(|(start, _)| *start);

        let mut seen: HashMap<String, (MonitorKind, usize)> = HashMap::new();
        let mut monitors = Vec::with_capacity(entries.len());
        for (_, raw) in &entries {
            let kind = raw.kind();
            let name = raw.name();
            let place = Place {
                source,
                section: kind.as_str(),
                monitor: Some(name.get_ref()),
            };
            let monitor = match raw {
                RawMonitor::Threshold(t) => threshold(place, t, limits)?,
                RawMonitor::Heartbeat(h) => heartbeat(place, h, limits)?,
                RawMonitor::Http(h) => http(place, h, limits)?,
            };
            let line = source.line_of(name.span().start);
            if let Some((first_kind, first_line)) = seen.get(&monitor.name) {
                return Err(place.error(
                    name.span(),
                    "name",
                    ErrorKind::DuplicateName,
                    format!(
                        "name \"{}\" is already used by the {first_kind} at line {first_line}; \
                         monitor names are unique in a file, across threshold, heartbeat and http",
                        monitor.name
                    ),
                ));
            }
            seen.insert(monitor.name.clone(), (kind, line));
            monitors.push(monitor);
        }
        Ok(MonitorFile::new(monitors))
    }

    /// A file from monitors already checked (by [`MonitorFile::parse`]); they are put in
    /// canonical order. A name twice keeps both: callers that build files by hand check
    /// names themselves.
    pub fn new(mut monitors: Vec<Monitor>) -> MonitorFile {
        monitors.sort_by(|a, b| (a.kind(), &a.name).cmp(&(b.kind(), &b.name)));
        MonitorFile { monitors }
    }

    /// The monitors, by kind and then by name.
    pub fn monitors(&self) -> &[Monitor] {
        &self.monitors
    }

    pub fn get(&self, name: &str) -> Option<&Monitor> {
        self.monitors.iter().find(|m| m.name == name)
    }

    /// The canonical text: kinds in the order threshold, heartbeat, http; monitors by name;
    /// keys in a fixed order with every default written out; durations in their shortest
    /// exact form (`90m` is written `1h30m`). `parse(to_toml(f)) == f`, and the same
    /// monitors always print the same bytes, so stored versions diff cleanly.
    pub fn to_toml(&self) -> String {
        let mut out = String::new();
        for monitor in &self.monitors {
            if !out.is_empty() {
                out.push('\n');
            }
            out.push_str(&format!("[[{}]]\n", monitor.kind()));
            for (key, value) in fields(monitor) {
                out.push_str(&format!("{key} = {value}\n"));
            }
        }
        out
    }
}

/// Attaches the section and monitor to an error serde reported, found by reading the file
/// again loosely and taking the last monitor that starts before the error.
fn locate(source: Source<'_>, mut error: FileError) -> FileError {
    let (Some(line), Ok(loose)) = (error.line, toml::from_str::<LooseFile>(source.text)) else {
        return error;
    };
    let sections = [
        ("threshold", &loose.threshold),
        ("heartbeat", &loose.heartbeat),
        ("http", &loose.http),
    ];
    let mut best: Option<(usize, &str, Option<String>)> = None;
    for (section, entries) in sections {
        for entry in entries {
            let start_line = source.line_of(entry.span().start);
            if start_line <= line && best.as_ref().is_none_or(|(l, _, _)| start_line > *l) {
                let name = match &entry.get_ref().name {
                    Some(toml::Value::String(name)) => Some(name.clone()),
                    _ => None,
                };
                best = Some((start_line, section, name));
            }
        }
    }
    if let Some((_, section, name)) = best {
        error.0.section = Some(section.to_string());
        error.0.monitor = name;
    }
    error
}

fn threshold(place: Place<'_>, raw: &RawThreshold, limits: &Limits) -> Result<Monitor, FileError> {
    let (name, service, environment, labels) = common(
        place,
        &raw.name,
        &raw.service,
        &raw.environment,
        &raw.labels,
        limits,
    )?;

    let target = raw.target.get_ref();
    match gantry_graphite::target::parse(target) {
        Err(e) => {
            return Err(place.error(
                raw.target.span(),
                "target",
                ErrorKind::InvalidTarget,
                format!(
                    "target \"{target}\" is not a Graphite render target: {} (at character {})",
                    e.message, e.position
                ),
            ))
        }
        Ok(gantry_graphite::target::Expr::Path { .. } | gantry_graphite::target::Expr::Call(_)) => {
        }
        Ok(_) => {
            return Err(place.error(
                raw.target.span(),
                "target",
                ErrorKind::InvalidTarget,
                format!(
                    "target \"{target}\" is a constant; a target selects series: a path such as \
                     stats.shop.errors or a function call such as sumSeries(stats.shop.*.errors)"
                ),
            ))
        }
    }

    let reduce = raw.reduce.as_ref().map_or(Reduce::Avg, |r| *r.get_ref());
    let direction = raw
        .direction
        .as_ref()
        .map_or(Direction::Above, |d| *d.get_ref());
    let warning = raw
        .warning
        .as_ref()
        .map(|w| number(place, "warning", w))
        .transpose()?;
    let critical = raw
        .critical
        .as_ref()
        .map(|c| number(place, "critical", c))
        .transpose()?;
    match (warning, critical) {
        (None, None) => {
            return Err(place.error(
                raw.name.span(),
                "",
                ErrorKind::NoThreshold,
                "neither warning nor critical is set: give at least one threshold",
            ))
        }
        (Some(w), Some(c)) => {
            let wrong_side = match direction {
                Direction::Above => c < w,
                Direction::Below => c > w,
            };
            if wrong_side {
                let (side, rule) = match direction {
                    Direction::Above => ("below", "at least"),
                    Direction::Below => ("above", "at most"),
                };
                let span = raw.critical.as_ref().map_or(0..0, Spanned::span);
                return Err(place.error(
                    span,
                    "critical",
                    ErrorKind::ThresholdOrder,
                    format!(
                        "critical ({c}) is {side} warning ({w}): with direction = \"{}\" \
                         critical must be {rule} warning",
                        direction.as_str()
                    ),
                ));
            }
        }
        _ => {}
    }

    let window = match &raw.window {
        Some(w) => at_least_flush(place, "window", w, limits)?,
        None => Duration::from_secs(300),
    };
    let interval = match &raw.interval {
        Some(i) => at_least_flush(place, "interval", i, limits)?,
        None => Duration::from_secs(60),
    };
    let hard_after = evaluations(place, raw.hard_after.as_ref())?;
    let missing = raw
        .missing
        .as_ref()
        .map_or(MissingData::Unknown, |m| *m.get_ref());

    Ok(Monitor {
        name,
        service,
        environment,
        labels,
        check: Check::Threshold(ThresholdCheck {
            target: target.clone(),
            reduce,
            window,
            direction,
            warning,
            critical,
            interval,
            hard_after,
            missing,
        }),
    })
}

fn heartbeat(place: Place<'_>, raw: &RawHeartbeat, limits: &Limits) -> Result<Monitor, FileError> {
    let (name, service, environment, labels) = common(
        place,
        &raw.name,
        &raw.service,
        &raw.environment,
        &raw.labels,
        limits,
    )?;
    let period = duration(place, "period", &raw.period)?;
    if period < MIN_HEARTBEAT_PERIOD {
        return Err(place.error(
            raw.period.span(),
            "period",
            ErrorKind::InvalidDuration,
            format!(
                "period \"{}\" is shorter than a minute; for something checked that often use an \
                 [[http]] check",
                raw.period.get_ref()
            ),
        ));
    }
    let grace = duration(place, "grace", &raw.grace)?;
    let max_runtime = raw
        .max_runtime
        .as_ref()
        .map(|m| positive_duration(place, "max_runtime", m))
        .transpose()?;
    Ok(Monitor {
        name,
        service,
        environment,
        labels,
        check: Check::Heartbeat(HeartbeatCheck {
            period,
            grace,
            max_runtime,
        }),
    })
}

fn http(place: Place<'_>, raw: &RawHttp, limits: &Limits) -> Result<Monitor, FileError> {
    let (name, service, environment, labels) = common(
        place,
        &raw.name,
        &raw.service,
        &raw.environment,
        &raw.labels,
        limits,
    )?;
    let url = http_url(place, &raw.url)?;
    let method = raw
        .method
        .as_ref()
        .map_or(HttpMethod::Get, |m| *m.get_ref());
    let expect_status = match &raw.expect_status {
        None => 200,
        Some(status) => match u16::try_from(*status.get_ref()) {
            Ok(code @ 100..=599) => code,
            _ => {
                return Err(place.error(
                    status.span(),
                    "expect_status",
                    ErrorKind::InvalidValue,
                    format!(
                        "expect_status = {} is not an HTTP status; use one from 100 to 599",
                        status.get_ref()
                    ),
                ))
            }
        },
    };
    let body_contains =
        match &raw.body_contains {
            Some(text) if text.get_ref().is_empty() => return Err(place.error(
                text.span(),
                "body_contains",
                ErrorKind::InvalidValue,
                "body_contains is empty, which every body contains: remove it or give the text \
                 to look for",
            )),
            Some(text) => Some(text.get_ref().clone()),
            None => None,
        };
    let body_matches = raw
        .body_matches
        .as_ref()
        .map(|p| pattern(place, "body_matches", p, limits))
        .transpose()?;
    let interval = match &raw.interval {
        Some(i) => at_least_flush(place, "interval", i, limits)?,
        None => Duration::from_secs(60),
    };
    let timeout = match &raw.timeout {
        Some(t) => {
            let timeout = positive_duration(place, "timeout", t)?;
            if timeout > interval {
                return Err(place.error(
                    t.span(),
                    "timeout",
                    ErrorKind::TimeoutTooLong,
                    format!(
                        "timeout \"{}\" is longer than the interval ({}): checks would overlap; \
                         shorten the timeout or lengthen the interval",
                        t.get_ref(),
                        format_duration(interval)
                    ),
                ));
            }
            timeout
        }
        None => Duration::from_secs(10).min(interval),
    };
    let hard_after = evaluations(place, raw.hard_after.as_ref())?;
    Ok(Monitor {
        name,
        service,
        environment,
        labels,
        check: Check::Http(HttpCheck {
            url,
            method,
            expect_status,
            body_contains,
            body_matches,
            timeout,
            interval,
            hard_after,
        }),
    })
}

/// The keys every monitor has.
fn common(
    place: Place<'_>,
    name: &Text,
    service: &Text,
    environment: &Text,
    labels: &Labels,
    limits: &Limits,
) -> Result<(String, String, String, BTreeMap<String, String>), FileError> {
    let checked = |key: &str, text: &Text| {
        validate_name(key, text.get_ref())
            .map(|()| text.get_ref().clone())
            .map_err(|e| place.error(text.span(), key, ErrorKind::InvalidName, e.0))
    };
    Ok((
        checked("name", name)?,
        checked("service", service)?,
        checked("environment", environment)?,
        monitor_labels(place, labels, limits)?,
    ))
}

fn monitor_labels(
    place: Place<'_>,
    labels: &Labels,
    limits: &Limits,
) -> Result<BTreeMap<String, String>, FileError> {
    let Some(labels) = labels else {
        return Ok(BTreeMap::new());
    };
    if labels.get_ref().len() > limits.max_labels {
        return Err(place.error(
            labels.span(),
            "labels",
            ErrorKind::TooLarge,
            format!(
                "{} labels; the limit is {}",
                labels.get_ref().len(),
                limits.max_labels
            ),
        ));
    }
    let mut out = BTreeMap::new();
    for (key, value) in labels.get_ref() {
        if let Err(why) = label_key(key) {
            return Err(place.error(
                labels.span(),
                "labels",
                ErrorKind::InvalidName,
                format!("label key \"{key}\" {why}"),
            ));
        }
        let text = value.get_ref();
        let why = if text.is_empty() {
            Some("is empty".to_string())
        } else if text.chars().count() > MAX_LABEL_VALUE {
            Some(format!("is longer than {MAX_LABEL_VALUE} characters"))
        } else if text.chars().any(char::is_control) {
            Some("contains a control character (a newline, a tab)".to_string())
        } else {
            None
        };
        if let Some(why) = why {
            return Err(place.error(
                value.span(),
                "labels",
                ErrorKind::InvalidValue,
                format!("label {key}'s value {why}"),
            ));
        }
        out.insert(key.clone(), text.clone());
    }
    Ok(out)
}

/// A label key: ASCII letters, digits, `_` and `-`, starting with a letter or `_`. Unlike
/// a Gantry name it has no `.`, so it is a bare TOML key and a Graphite tag name.
fn label_key(key: &str) -> Result<(), String> {
    let first_ok = key
        .chars()
        .next()
        .is_some_and(|c| c.is_ascii_alphabetic() || c == '_');
    let rest_ok = key
        .chars()
        .all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '-'));
    if key.len() > MAX_LABEL_KEY {
        Err(format!("is longer than {MAX_LABEL_KEY} characters"))
    } else if !first_ok || !rest_ok {
        Err("is not a valid label key: use letters, digits, '_' and '-', starting with a letter or '_'".into())
    } else {
        Ok(())
    }
}

/// A threshold: a TOML integer or a finite float.
fn number(place: Place<'_>, key: &str, value: &Spanned<toml::Value>) -> Result<f64, FileError> {
    let bad = |what: String| {
        Err(place.error(
            value.span(),
            key,
            ErrorKind::NotANumber,
            format!("{key} must be a number, e.g. {key} = 5.0; {what}"),
        ))
    };
    match value.get_ref() {
        toml::Value::Float(f) if f.is_finite() => Ok(*f),
        // Thresholds are compared with measurements, not counted: an integer beyond 2^53
        // rounds, which no threshold notices.
        toml::Value::Integer(i) => Ok(*i as f64),
        toml::Value::Float(f) => bad(format!("{f} is not a finite number")),
        toml::Value::String(s) => bad(format!("got the string \"{s}\" (remove the quotes)")),
        other => bad(format!("got {}", other.type_str())),
    }
}

/// `for`: 1 to [`MAX_FOR`] evaluations, 1 when absent.
fn evaluations(place: Place<'_>, value: Option<&Spanned<i64>>) -> Result<u32, FileError> {
    let Some(value) = value else {
        return Ok(1);
    };
    let n = *value.get_ref();
    if n < 1 {
        return Err(place.error(
            value.span(),
            "for",
            ErrorKind::ZeroFor,
            format!(
                "for = {n}: a state needs at least 1 evaluation to become hard (1 means at once)"
            ),
        ));
    }
    if n > MAX_FOR {
        return Err(place.error(
            value.span(),
            "for",
            ErrorKind::InvalidValue,
            format!("for = {n}: at most {MAX_FOR} evaluations; lengthen the interval instead"),
        ));
    }
    u32::try_from(n).map_err(|_| {
        place.error(
            value.span(),
            "for",
            ErrorKind::InvalidValue,
            format!("for = {n} is too large"),
        )
    })
}

fn duration(place: Place<'_>, key: &str, text: &Text) -> Result<Duration, FileError> {
    parse_duration(key, text.get_ref())
        .map_err(|e| place.error(text.span(), key, ErrorKind::InvalidDuration, e.0))
}

fn positive_duration(place: Place<'_>, key: &str, text: &Text) -> Result<Duration, FileError> {
    let d = duration(place, key, text)?;
    if d.is_zero() {
        return Err(place.error(
            text.span(),
            key,
            ErrorKind::InvalidDuration,
            format!("{key} is zero; give a positive duration such as 30s"),
        ));
    }
    Ok(d)
}

/// An interval or window: positive and not shorter than the flush interval.
fn at_least_flush(
    place: Place<'_>,
    key: &str,
    text: &Text,
    limits: &Limits,
) -> Result<Duration, FileError> {
    let d = positive_duration(place, key, text)?;
    if d.as_secs_f64() < limits.flush_interval_secs {
        return Err(place.error(
            text.span(),
            key,
            ErrorKind::IntervalTooShort,
            format!(
                "{key} \"{}\" is shorter than the metrics flush interval ({}s): metrics change \
                 at most once a flush; use at least {}s",
                text.get_ref(),
                limits.flush_interval_secs,
                limits.flush_interval_secs
            ),
        ));
    }
    Ok(d)
}

fn http_url(place: Place<'_>, text: &Text) -> Result<String, FileError> {
    let raw = text.get_ref();
    let bad =
        |message: String| Err(place.error(text.span(), "url", ErrorKind::InvalidUrl, message));
    let url = match url::Url::parse(raw) {
        Ok(url) => url,
        Err(e) => return bad(format!("url \"{raw}\" is not a URL: {e}")),
    };
    if !matches!(url.scheme(), "http" | "https") {
        return bad(format!(
            "url \"{raw}\" uses {}:, not http: or https:",
            url.scheme()
        ));
    }
    if url.host_str().is_none_or(str::is_empty) {
        return bad(format!("url \"{raw}\" has no host"));
    }
    if !url.username().is_empty() || url.password().is_some() {
        return bad(format!(
            "url \"{}\" carries a user name or password, and this file is kept in version \
             control: remove them",
            redact(&url)
        ));
    }
    Ok(url.to_string())
}

/// A URL with its credentials hidden, for messages: `https://…@host/path`.
fn redact(url: &url::Url) -> String {
    format!("{}://…@{}", url.scheme(), &url[url::Position::BeforeHost..])
}

/// A regular expression under the file's limits.
pub(crate) fn pattern(
    place: Place<'_>,
    key: &str,
    text: &Text,
    limits: &Limits,
) -> Result<Pattern, FileError> {
    Pattern::new(
        text.get_ref(),
        limits.max_regex_chars,
        limits.regex_size_limit_bytes,
    )
    .map_err(|e| {
        let kind = match e {
            PatternError::Invalid(_) => ErrorKind::InvalidRegex,
            PatternError::TooLong { .. } | PatternError::TooLarge { .. } => {
                ErrorKind::RegexTooLarge
            }
        };
        place.error(text.span(), key, kind, format!("{key} {e}"))
    })
}

// ---------------------------------------------------------------------------------------
// The canonical form.

/// A monitor's keys and their canonical TOML values, in the order they are written.
fn fields(monitor: &Monitor) -> Vec<(&'static str, String)> {
    let mut out = vec![
        ("name", quote(&monitor.name)),
        ("service", quote(&monitor.service)),
        ("environment", quote(&monitor.environment)),
    ];
    match &monitor.check {
        Check::Threshold(t) => {
            out.push(("target", quote(&t.target)));
            out.push(("reduce", quote(t.reduce.as_str())));
            out.push(("window", quote(&format_duration(t.window))));
            out.push(("direction", quote(t.direction.as_str())));
            if let Some(w) = t.warning {
                out.push(("warning", float(w)));
            }
            if let Some(c) = t.critical {
                out.push(("critical", float(c)));
            }
            out.push(("interval", quote(&format_duration(t.interval))));
            out.push(("for", t.hard_after.to_string()));
            out.push(("missing", quote(t.missing.as_str())));
        }
        Check::Heartbeat(h) => {
            out.push(("period", quote(&format_duration(h.period))));
            out.push(("grace", quote(&format_duration(h.grace))));
            if let Some(m) = h.max_runtime {
                out.push(("max_runtime", quote(&format_duration(m))));
            }
        }
        Check::Http(h) => {
            out.push(("url", quote(&h.url)));
            out.push(("method", quote(h.method.as_str())));
            out.push(("expect_status", h.expect_status.to_string()));
            if let Some(b) = &h.body_contains {
                out.push(("body_contains", quote(b)));
            }
            if let Some(p) = &h.body_matches {
                out.push(("body_matches", quote(p.as_str())));
            }
            out.push(("timeout", quote(&format_duration(h.timeout))));
            out.push(("interval", quote(&format_duration(h.interval))));
            out.push(("for", h.hard_after.to_string()));
        }
    }
    if !monitor.labels.is_empty() {
        let pairs: Vec<String> = monitor
            .labels
            .iter()
            .map(|(k, v)| format!("{k} = {}", quote(v)))
            .collect();
        out.push(("labels", format!("{{ {} }}", pairs.join(", "))));
    }
    out
}

/// A TOML basic string on one line.
fn quote(text: &str) -> String {
    let mut out = String::with_capacity(text.len() + 2);
    out.push('"');
    for c in text.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            c if c.is_control() => out.push_str(&format!("\\u{:04X}", u32::from(c))),
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

/// A float as TOML writes it: the shortest text that reads back the same, always with a
/// fraction or exponent so it stays a float.
fn float(value: f64) -> String {
    toml::Value::Float(value).to_string()
}

/// A duration in its shortest exact form in days, hours, minutes, seconds and
/// milliseconds (`1d`, `1h30m`, `1s500ms`), which `parse_duration` reads back.
pub fn format_duration(duration: Duration) -> String {
    const UNITS: [(&str, u128); 7] = [
        ("d", 86_400_000_000_000),
        ("h", 3_600_000_000_000),
        ("m", 60_000_000_000),
        ("s", 1_000_000_000),
        ("ms", 1_000_000),
        ("us", 1_000),
        ("ns", 1),
    ];
    let mut rest = duration.as_nanos();
    if rest == 0 {
        return "0s".to_string();
    }
    let mut out = String::new();
    for (unit, nanos) in UNITS {
        let count = rest / nanos;
        if count > 0 {
            out.push_str(&format!("{count}{unit}"));
            rest -= count * nanos;
        }
    }
    out
}

// ---------------------------------------------------------------------------------------
// Diffs between two versions.

/// One line of a diff between two versions of a file, by monitor name.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DiffLine {
    Added {
        kind: MonitorKind,
        name: String,
    },
    Removed {
        kind: MonitorKind,
        name: String,
    },
    /// A monitor kept its name; `changes` lists its keys that differ (`kind` first, when
    /// the monitor changed kind; then in canonical key order).
    Changed {
        kind: MonitorKind,
        name: String,
        changes: Vec<KeyChange>,
    },
}

/// One key of a changed monitor, as canonical TOML values; `None` where the key is absent.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KeyChange {
    pub key: String,
    pub old: Option<String>,
    pub new: Option<String>,
}

impl fmt::Display for DiffLine {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            DiffLine::Added { kind, name } => write!(f, "+ {kind} \"{name}\""),
            DiffLine::Removed { kind, name } => write!(f, "- {kind} \"{name}\""),
            DiffLine::Changed {
                kind,
                name,
                changes,
            } => {
                write!(f, "~ {kind} \"{name}\":")?;
                for (i, change) in changes.iter().enumerate() {
                    let sep = if i == 0 { " " } else { "; " };
                    let old = change.old.as_deref().unwrap_or("(none)");
                    let new = change.new.as_deref().unwrap_or("(none)");
                    write!(f, "{sep}{} {old} → {new}", change.key)?;
                }
                Ok(())
            }
        }
    }
}

/// What changed from `old` to `new`, one line per monitor added, removed or changed,
/// sorted by monitor name. Monitors are matched by name, whatever their kind.
pub fn diff(old: &MonitorFile, new: &MonitorFile) -> Vec<DiffLine> {
    let old_by_name: BTreeMap<&str, &Monitor> =
        old.monitors.iter().map(|m| (m.name.as_str(), m)).collect();
    let new_by_name: BTreeMap<&str, &Monitor> =
        new.monitors.iter().map(|m| (m.name.as_str(), m)).collect();
    let mut names: Vec<&str> = old_by_name
        .keys()
        .chain(new_by_name.keys())
        .copied()
        .collect();
    names.sort_unstable();
    names.dedup();

    let mut out = Vec::new();
    for name in names {
        match (old_by_name.get(name), new_by_name.get(name)) {
            (None, Some(m)) => out.push(DiffLine::Added {
                kind: m.kind(),
                name: name.to_string(),
            }),
            (Some(m), None) => out.push(DiffLine::Removed {
                kind: m.kind(),
                name: name.to_string(),
            }),
            (Some(before), Some(after)) => {
                let changes = key_changes(before, after);
                if !changes.is_empty() {
                    out.push(DiffLine::Changed {
                        kind: after.kind(),
                        name: name.to_string(),
                        changes,
                    });
                }
            }
            (None, None) => {}
        }
    }
    out
}

fn key_changes(before: &Monitor, after: &Monitor) -> Vec<KeyChange> {
    let mut changes = Vec::new();
    if before.kind() != after.kind() {
        changes.push(KeyChange {
            key: "kind".into(),
            old: Some(before.kind().to_string()),
            new: Some(after.kind().to_string()),
        });
    }
    let old_fields = fields(before);
    let new_fields = fields(after);
    let mut keys: Vec<&str> = Vec::new();
    for (key, _) in new_fields.iter().chain(&old_fields) {
        if !keys.contains(key) {
            keys.push(key);
        }
    }
    let lookup = |fields: &[(&str, String)], key: &str| {
        fields
            .iter()
            .find(|(k, _)| *k == key)
            .map(|(_, v)| v.clone())
    };
    for key in keys {
        let old = lookup(&old_fields, key);
        let new = lookup(&new_fields, key);
        if old != new {
            changes.push(KeyChange {
                key: key.to_string(),
                old,
                new,
            });
        }
    }
    changes
}

#[cfg(test)]
mod tests;
