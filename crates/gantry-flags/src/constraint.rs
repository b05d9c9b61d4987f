//! Constraints compiled once (numbers, dates, versions, regexes and CIDR ranges parsed,
//! long `IN` lists hashed) and evaluated without allocating, with Unleash's semantics:
//!
//! - a missing context field matches nothing, except `NOT_IN`, which it satisfies;
//! - a context value that does not parse as the operator's type matches nothing;
//! - `inverted` flips the result, including those two cases;
//! - `caseInsensitive` applies to the `STR_*` operators and `REGEX`; Unleash ignores it for
//!   `IN` and `NOT_IN`, and so does Gantry;
//! - list values are trimmed and empty ones dropped, as the Node SDK does;
//! - a constraint this engine cannot understand (an unknown operator, or a constraint
//!   value that does not parse) is false whether inverted or not: a broken rule must not
//!   let everyone in.

use std::cmp::Ordering;

use chrono::{DateTime, Utc};

use crate::model::{Constraint, Context, Operator};
use crate::net::{parse_ip, IpRange};

/// Regex patterns longer than this are refused when written and never compiled.
pub const MAX_REGEX_LEN: usize = 1024;
/// The compiled size a regex may take (regex crate `size_limit`): enough for any sane
/// pattern, small enough that one flag cannot take the server's memory.
pub const REGEX_SIZE_LIMIT: usize = 256 * 1024;
/// Up to this many values a linear scan beats hashing the context value.
const SCAN_LIMIT: usize = 8;

/// A context field resolved once by name, so evaluation does no string matching on
/// field names.
#[derive(Debug, Clone)]
pub(crate) enum Field {
    UserId,
    SessionId,
    RemoteAddress,
    Environment,
    AppName,
    CurrentTime,
    Property(Box<str>),
}

impl Field {
    pub(crate) fn new(name: &str) -> Field {
        match name {
            "userId" => Field::UserId,
            "sessionId" => Field::SessionId,
            "remoteAddress" => Field::RemoteAddress,
            "environment" => Field::Environment,
            "appName" => Field::AppName,
            "currentTime" => Field::CurrentTime,
            other => Field::Property(other.into()),
        }
    }

    fn name(&self) -> &str {
        match self {
            Field::UserId => "userId",
            Field::SessionId => "sessionId",
            Field::RemoteAddress => "remoteAddress",
            Field::Environment => "environment",
            Field::AppName => "appName",
            Field::CurrentTime => "currentTime",
            Field::Property(name) => name,
        }
    }

    /// Same lookup as [`Context::get`]: the top-level field, else the property.
    pub(crate) fn get<'c>(&self, ctx: &'c Context) -> Option<&'c str> {
        let top = match self {
            Field::UserId => ctx.user_id.as_deref(),
            Field::SessionId => ctx.session_id.as_deref(),
            Field::RemoteAddress => ctx.remote_address.as_deref(),
            Field::Environment => ctx.environment.as_deref(),
            Field::AppName => ctx.app_name.as_deref(),
            Field::CurrentTime => ctx.current_time.as_deref(),
            Field::Property(_) => None,
        };
        top.or_else(|| ctx.properties.get(self.name()).map(String::as_str))
    }
}

#[derive(Debug, Clone, Copy)]
enum Cmp {
    Eq,
    Gt,
    Gte,
    Lt,
    Lte,
}

impl Cmp {
    fn holds(self, ordering: Option<Ordering>) -> bool {
        match (self, ordering) {
            (_, None) => false,
            (Cmp::Eq, Some(o)) => o == Ordering::Equal,
            (Cmp::Gt, Some(o)) => o == Ordering::Greater,
            (Cmp::Gte, Some(o)) => o != Ordering::Less,
            (Cmp::Lt, Some(o)) => o == Ordering::Less,
            (Cmp::Lte, Some(o)) => o != Ordering::Greater,
        }
    }
}

#[derive(Debug, Clone, Copy)]
enum StrOp {
    StartsWith,
    EndsWith,
    Contains,
}

impl StrOp {
    fn test(self, hay: &str, needle: &str) -> bool {
        match self {
            StrOp::StartsWith => hay.starts_with(needle),
            StrOp::EndsWith => hay.ends_with(needle),
            StrOp::Contains => hay.contains(needle),
        }
    }

    /// `needle` is already lower case; `hay` is ASCII, so its lower case is too and an
    /// ASCII-insensitive comparison is exact.
    fn test_ascii_ignore_case(self, hay: &str, needle: &str) -> bool {
        let (hay, needle) = (hay.as_bytes(), needle.as_bytes());
        if needle.len() > hay.len() {
            return false;
        }
        match self {
            StrOp::StartsWith => hay[..needle.len()].eq_ignore_ascii_case(needle),
            StrOp::EndsWith => hay[hay.len() - needle.len()..].eq_ignore_ascii_case(needle),
            StrOp::Contains => hay
                .windows(needle.len())
                .any(|w| w.eq_ignore_ascii_case(needle)),
        }
    }
}

#[derive(Debug, Clone)]
enum Values {
    Few(Vec<Box<str>>),
    Many(foldhash::HashSet<Box<str>>),
}

impl Values {
    fn new(values: Vec<Box<str>>) -> Values {
        if values.len() <= SCAN_LIMIT {
            Values::Few(values)
        } else {
            Values::Many(values.into_iter().collect())
        }
    }

    fn contains(&self, value: &str) -> bool {
        match self {
            Values::Few(values) => values.iter().any(|v| &**v == value),
            Values::Many(values) => values.contains(value),
        }
    }
}

#[derive(Debug, Clone)]
enum Test {
    In(Values),
    NotIn(Values),
    Str {
        op: StrOp,
        values: Vec<Box<str>>,
        ignore_case: bool,
    },
    Num(Cmp, f64),
    Date {
        after: bool,
        at: DateTime<Utc>,
    },
    Semver(Cmp, semver::Version),
    Regex(regex::Regex),
    Cidr(Vec<IpRange>),
    /// Unknown operator or unparseable constraint value.
    Broken,
}

/// One constraint, ready to evaluate.
#[derive(Debug, Clone)]
pub(crate) struct Compiled {
    field: Field,
    inverted: bool,
    test: Test,
}

/// What went wrong turning a constraint's value into something to compare against;
/// validation reports it, the engine makes the constraint false.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum ValueError {
    UnknownOperator,
    MissingValue,
    NotANumber(String),
    NotADate(String),
    NotASemver(String),
    RegexTooLong(usize),
    BadRegex(String),
}

impl std::fmt::Display for ValueError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            ValueError::UnknownOperator => f.write_str("unknown operator"),
            ValueError::MissingValue => f.write_str("this operator needs a `value`"),
            ValueError::NotANumber(v) => write!(f, "'{v}' is not a number"),
            ValueError::NotADate(v) => write!(f, "'{v}' is not an RFC 3339 date-time"),
            ValueError::NotASemver(v) => write!(f, "'{v}' is not a semantic version"),
            ValueError::RegexTooLong(len) => {
                write!(f, "regex is {len} bytes, more than {MAX_REGEX_LEN}")
            }
            ValueError::BadRegex(e) => write!(f, "regex does not compile: {e}"),
        }
    }
}

/// A finite number, JavaScript `Number()` style minus its oddities (no hex, no empty
/// string as 0): surrounding spaces are allowed.
pub(crate) fn parse_number(text: &str) -> Option<f64> {
    let n: f64 = text.trim().parse().ok()?;
    n.is_finite().then_some(n)
}

pub(crate) fn parse_date(text: &str) -> Option<DateTime<Utc>> {
    DateTime::parse_from_rfc3339(text.trim())
        .ok()
        .map(|d| d.with_timezone(&Utc))
}

pub(crate) fn parse_semver(text: &str) -> Option<semver::Version> {
    semver::Version::parse(text.trim()).ok()
}

pub(crate) fn compile_regex(pattern: &str, ignore_case: bool) -> Result<regex::Regex, ValueError> {
    if pattern.len() > MAX_REGEX_LEN {
        return Err(ValueError::RegexTooLong(pattern.len()));
    }
    regex::RegexBuilder::new(pattern)
        .case_insensitive(ignore_case)
        .size_limit(REGEX_SIZE_LIMIT)
        .dfa_size_limit(REGEX_SIZE_LIMIT)
        .build()
        .map_err(|e| ValueError::BadRegex(e.to_string()))
}

fn clean_values(values: &[String]) -> impl Iterator<Item = &str> {
    values.iter().map(|v| v.trim()).filter(|v| !v.is_empty())
}

/// The comparison a constraint makes, or why it cannot make one.
fn compile_test(c: &Constraint) -> Result<Test, ValueError> {
    let value = || c.value.as_deref().ok_or(ValueError::MissingValue);
    let number = |cmp| {
        let v = value()?;
        parse_number(v)
            .map(|n| Test::Num(cmp, n))
            .ok_or_else(|| ValueError::NotANumber(v.to_owned()))
    };
    let date = |after| {
        let v = value()?;
        parse_date(v)
            .map(|at| Test::Date { after, at })
            .ok_or_else(|| ValueError::NotADate(v.to_owned()))
    };
    let version = |cmp| {
        let v = value()?;
        parse_semver(v)
            .map(|s| Test::Semver(cmp, s))
            .ok_or_else(|| ValueError::NotASemver(v.to_owned()))
    };
    let strings = |op| {
        let values: Vec<Box<str>> = clean_values(&c.values)
            .map(|v| {
                if c.case_insensitive {
                    v.to_lowercase().into()
                } else {
                    v.into()
                }
            })
            .collect();
        Ok(Test::Str {
            op,
            values,
            ignore_case: c.case_insensitive,
        })
    };
    match &c.operator {
        Operator::In => Ok(Test::In(Values::new(
            clean_values(&c.values).map(Into::into).collect(),
        ))),
        Operator::NotIn => Ok(Test::NotIn(Values::new(
            clean_values(&c.values).map(Into::into).collect(),
        ))),
        Operator::StrStartsWith => strings(StrOp::StartsWith),
        Operator::StrEndsWith => strings(StrOp::EndsWith),
        Operator::StrContains => strings(StrOp::Contains),
        Operator::NumEq => number(Cmp::Eq),
        Operator::NumGt => number(Cmp::Gt),
        Operator::NumGte => number(Cmp::Gte),
        Operator::NumLt => number(Cmp::Lt),
        Operator::NumLte => number(Cmp::Lte),
        Operator::DateAfter => date(true),
        Operator::DateBefore => date(false),
        Operator::SemverEq => version(Cmp::Eq),
        Operator::SemverGt => version(Cmp::Gt),
        Operator::SemverGte => version(Cmp::Gte),
        Operator::SemverLt => version(Cmp::Lt),
        Operator::SemverLte => version(Cmp::Lte),
        Operator::Regex => compile_regex(value()?, c.case_insensitive).map(Test::Regex),
        // Entries that are not addresses are skipped, as Unleash's reference SDKs do.
        Operator::InCidr => Ok(Test::Cidr(
            clean_values(&c.values).filter_map(IpRange::parse).collect(),
        )),
        Operator::Unknown(_) => Err(ValueError::UnknownOperator),
    }
}

/// Checks a constraint's value the way the engine will read it.
pub(crate) fn check_value(c: &Constraint) -> Result<(), ValueError> {
    compile_test(c).map(|_| ())
}

impl Compiled {
    pub(crate) fn new(c: &Constraint) -> Compiled {
        Compiled {
            field: Field::new(&c.context_name),
            inverted: c.inverted,
            test: compile_test(c).unwrap_or(Test::Broken),
        }
    }

    pub(crate) fn matches(&self, ctx: &Context, now: DateTime<Utc>) -> bool {
        let value = self.field.get(ctx);
        let result = match &self.test {
            Test::Broken => return false,
            Test::In(values) => value.is_some_and(|v| values.contains(v)),
            Test::NotIn(values) => !value.is_some_and(|v| values.contains(v)),
            Test::Str {
                op,
                values,
                ignore_case,
            } => value.is_some_and(|v| str_matches(*op, v, values, *ignore_case)),
            Test::Num(cmp, n) => value
                .and_then(parse_number)
                .is_some_and(|v| cmp.holds(v.partial_cmp(n))),
            Test::Date { after, at } => {
                let time = match (&self.field, value) {
                    (_, Some(v)) => parse_date(v),
                    // Only the clock field defaults to the evaluation's instant.
                    (Field::CurrentTime, None) => Some(now),
                    (_, None) => None,
                };
                time.is_some_and(|t| if *after { t > *at } else { t < *at })
            }
            Test::Semver(cmp, version) => value
                .and_then(parse_semver)
                .is_some_and(|v| cmp.holds(Some(v.cmp_precedence(version)))),
            Test::Regex(regex) => value.is_some_and(|v| regex.is_match(v)),
            Test::Cidr(ranges) => value
                .and_then(parse_ip)
                .is_some_and(|ip| ranges.iter().any(|r| r.contains(ip))),
        };
        result != self.inverted
    }
}

fn str_matches(op: StrOp, hay: &str, needles: &[Box<str>], ignore_case: bool) -> bool {
    if !ignore_case {
        return needles.iter().any(|n| op.test(hay, n));
    }
    if hay.is_ascii() {
        return needles.iter().any(|n| op.test_ascii_ignore_case(hay, n));
    }
    // Full Unicode lower-casing needs a copy; only non-ASCII values pay for it.
    let lower = hay.to_lowercase();
    needles.iter().any(|n| op.test(&lower, n))
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;
    use serde_json::json;

    fn now() -> DateTime<Utc> {
        Utc.with_ymd_and_hms(2024, 6, 1, 12, 0, 0)
            .single()
            .expect("valid")
    }

    /// `constraint` is the JSON of one constraint; `context` the JSON of a context.
    fn check(constraint: serde_json::Value, context: serde_json::Value, expected: bool) {
        let c: Constraint = serde_json::from_value(constraint.clone()).expect("constraint");
        let ctx: Context = serde_json::from_value(context.clone()).expect("context");
        assert_eq!(
            Compiled::new(&c).matches(&ctx, now()),
            expected,
            "{constraint} on {context}"
        );
    }

    fn op(operator: &str, field: &str, values: &[&str]) -> serde_json::Value {
        json!({"contextName": field, "operator": operator, "values": values})
    }

    fn op1(operator: &str, field: &str, value: &str) -> serde_json::Value {
        json!({"contextName": field, "operator": operator, "value": value})
    }

    fn with(mut c: serde_json::Value, key: &str) -> serde_json::Value {
        c[key] = json!(true);
        c
    }

    fn prop(name: &str, value: &str) -> serde_json::Value {
        json!({"properties": {name: value}})
    }

    #[test]
    fn in_and_not_in() {
        let many: Vec<String> = (0..50).map(|i| format!("v{i}")).collect();
        let many: Vec<&str> = many.iter().map(String::as_str).collect();
        let cases = [
            (
                op("IN", "userId", &["1", "2"]),
                json!({"userId": "2"}),
                true,
            ),
            (
                op("IN", "userId", &["1", "2"]),
                json!({"userId": "3"}),
                false,
            ),
            (op("IN", "userId", &["1", "2"]), json!({}), false),
            (op("IN", "userId", &[]), json!({"userId": "1"}), false),
            (op("IN", "userId", &[" 1 "]), json!({"userId": "1"}), true),
            (op("IN", "userId", &[""]), json!({"userId": ""}), false),
            (op("IN", "plan", &["pro"]), prop("plan", "pro"), true),
            (op("IN", "userId", &["u"]), prop("userId", "u"), true),
            (op("IN", "x", &many), prop("x", "v42"), true),
            (op("IN", "x", &many), prop("x", "v50"), false),
            (op("NOT_IN", "userId", &["1"]), json!({"userId": "2"}), true),
            (
                op("NOT_IN", "userId", &["1"]),
                json!({"userId": "1"}),
                false,
            ),
            (op("NOT_IN", "userId", &["1"]), json!({}), true),
            (op("NOT_IN", "userId", &[]), json!({}), true),
            (op("NOT_IN", "x", &many), prop("x", "v7"), false),
            (
                with(op("IN", "userId", &["1"]), "inverted"),
                json!({"userId": "1"}),
                false,
            ),
            (
                with(op("IN", "userId", &["1"]), "inverted"),
                json!({}),
                true,
            ),
            (
                with(op("NOT_IN", "userId", &["1"]), "inverted"),
                json!({}),
                false,
            ),
            // Unleash ignores caseInsensitive for IN.
            (
                with(op("IN", "userId", &["ABC"]), "caseInsensitive"),
                json!({"userId": "abc"}),
                false,
            ),
        ];
        for (c, ctx, expected) in cases {
            check(c, ctx, expected);
        }
    }

    #[test]
    fn string_operators() {
        let ci = |c| with(c, "caseInsensitive");
        let cases = [
            (
                op("STR_STARTS_WITH", "e", &["ab", "cd"]),
                prop("e", "cdx"),
                true,
            ),
            (op("STR_STARTS_WITH", "e", &["ab"]), prop("e", "xab"), false),
            (op("STR_STARTS_WITH", "e", &["AB"]), prop("e", "abc"), false),
            (
                ci(op("STR_STARTS_WITH", "e", &["AB"])),
                prop("e", "aBc"),
                true,
            ),
            (
                op("STR_ENDS_WITH", "e", &[".com"]),
                prop("e", "a@b.com"),
                true,
            ),
            (
                op("STR_ENDS_WITH", "e", &[".com"]),
                prop("e", "a@b.COM"),
                false,
            ),
            (
                ci(op("STR_ENDS_WITH", "e", &[".com"])),
                prop("e", "a@b.COM"),
                true,
            ),
            (
                ci(op("STR_ENDS_WITH", "e", &["verylongsuffix"])),
                prop("e", "x"),
                false,
            ),
            (op("STR_CONTAINS", "e", &["mid"]), prop("e", "amidst"), true),
            (
                op("STR_CONTAINS", "e", &["mid"]),
                prop("e", "aMIDst"),
                false,
            ),
            (
                ci(op("STR_CONTAINS", "e", &["MiD"])),
                prop("e", "aMIDst"),
                true,
            ),
            (
                ci(op("STR_CONTAINS", "e", &["ØL"])),
                prop("e", "godt øl"),
                true,
            ),
            (
                ci(op("STR_STARTS_WITH", "e", &["日本"])),
                prop("e", "日本語"),
                true,
            ),
            (
                ci(op("STR_CONTAINS", "e", &["ø"])),
                prop("e", "ascii only"),
                false,
            ),
            (op("STR_CONTAINS", "e", &["x"]), json!({}), false),
            (
                with(op("STR_CONTAINS", "e", &["x"]), "inverted"),
                json!({}),
                true,
            ),
            (
                with(op("STR_CONTAINS", "e", &["x"]), "inverted"),
                prop("e", "axe"),
                false,
            ),
            (op("STR_CONTAINS", "e", &[""]), prop("e", "anything"), false),
        ];
        for (c, ctx, expected) in cases {
            check(c, ctx, expected);
        }
    }

    #[test]
    fn number_operators() {
        let cases = [
            (op1("NUM_EQ", "n", "12"), prop("n", "12.0"), true),
            (op1("NUM_EQ", "n", "12.0"), prop("n", "12"), true),
            (op1("NUM_EQ", "n", "12"), prop("n", "13"), false),
            (op1("NUM_GT", "n", "12"), prop("n", "13"), true),
            (op1("NUM_GT", "n", "12"), prop("n", "12"), false),
            (op1("NUM_GTE", "n", "12"), prop("n", "12"), true),
            (op1("NUM_GTE", "n", "12"), prop("n", "11.9"), false),
            (op1("NUM_LT", "n", "-1"), prop("n", "-1.5"), true),
            (op1("NUM_LT", "n", "12"), prop("n", "12"), false),
            (op1("NUM_LTE", "n", "12"), prop("n", "12"), true),
            (op1("NUM_LTE", "n", "12"), prop("n", " 1e1 "), true),
            (op1("NUM_EQ", "n", "12"), prop("n", "twelve"), false),
            (op1("NUM_EQ", "n", "12"), prop("n", ""), false),
            (op1("NUM_EQ", "n", "12"), prop("n", "NaN"), false),
            (op1("NUM_GT", "n", "12"), prop("n", "inf"), false),
            (op1("NUM_EQ", "n", "12"), json!({}), false),
            (
                with(op1("NUM_EQ", "n", "12"), "inverted"),
                prop("n", "13"),
                true,
            ),
            (
                with(op1("NUM_EQ", "n", "12"), "inverted"),
                prop("n", "x"),
                true,
            ),
            // A broken constraint value is false even inverted.
            (op1("NUM_EQ", "n", "twelve"), prop("n", "12"), false),
            (
                with(op1("NUM_EQ", "n", "twelve"), "inverted"),
                prop("n", "12"),
                false,
            ),
            (op("NUM_EQ", "n", &["12"]), prop("n", "12"), false),
        ];
        for (c, ctx, expected) in cases {
            check(c, ctx, expected);
        }
    }

    #[test]
    fn date_operators() {
        let at = "2024-06-01T12:00:00.000Z";
        let cases = [
            (
                op1("DATE_AFTER", "currentTime", at),
                json!({"currentTime": "2024-06-01T12:00:01Z"}),
                true,
            ),
            (
                op1("DATE_AFTER", "currentTime", at),
                json!({"currentTime": at}),
                false,
            ),
            (
                op1("DATE_BEFORE", "currentTime", at),
                json!({"currentTime": at}),
                false,
            ),
            (
                op1("DATE_BEFORE", "currentTime", at),
                json!({"currentTime": "2024-06-01T11:59:59Z"}),
                true,
            ),
            (
                op1("DATE_BEFORE", "currentTime", at),
                json!({"currentTime": "2024-06-01T13:59:59+02:00"}),
                true,
            ),
            // No currentTime: the engine's `now`, which here is exactly `at`.
            (
                op1("DATE_AFTER", "currentTime", "2024-06-01T11:00:00Z"),
                json!({}),
                true,
            ),
            (
                op1("DATE_BEFORE", "currentTime", "2024-06-01T11:00:00Z"),
                json!({}),
                false,
            ),
            (
                op1("DATE_AFTER", "currentTime", at),
                json!({"currentTime": "yesterday"}),
                false,
            ),
            (
                op1("DATE_AFTER", "signup", "2024-01-01T00:00:00Z"),
                prop("signup", "2024-02-01T00:00:00Z"),
                true,
            ),
            (
                op1("DATE_AFTER", "signup", "2024-01-01T00:00:00Z"),
                json!({}),
                false,
            ),
            (
                with(
                    op1("DATE_AFTER", "signup", "2024-01-01T00:00:00Z"),
                    "inverted",
                ),
                json!({}),
                true,
            ),
            (
                op1("DATE_AFTER", "currentTime", "not a date"),
                json!({}),
                false,
            ),
        ];
        for (c, ctx, expected) in cases {
            check(c, ctx, expected);
        }
    }

    #[test]
    fn semver_operators() {
        let v = |s: &str| prop("version", s);
        let cases = [
            (op1("SEMVER_EQ", "version", "1.2.2"), v("1.2.2"), true),
            (
                op1("SEMVER_EQ", "version", "1.2.2"),
                v("1.2.2+build.5"),
                true,
            ),
            (
                op1("SEMVER_GT", "version", "1.2.2"),
                v("1.2.2+build.5"),
                false,
            ),
            (op1("SEMVER_GT", "version", "1.2.2"), v("1.10.0"), true),
            (op1("SEMVER_GTE", "version", "1.2.2"), v("1.2.2"), true),
            (
                op1("SEMVER_LT", "version", "2.0.0-alpha.1"),
                v("1.9.1-beta.1"),
                true,
            ),
            (
                op1("SEMVER_LT", "version", "2.0.0-alpha.3"),
                v("2.0.0-alpha.10"),
                false,
            ),
            (
                op1("SEMVER_GT", "version", "2.0.0-alpha"),
                v("2.0.0-alpha.1"),
                true,
            ),
            (op1("SEMVER_GT", "version", "2.0.0-rc"), v("2.0.0"), true),
            (op1("SEMVER_LTE", "version", "1.2.2"), v("1.2.3"), false),
            (op1("SEMVER_EQ", "version", "2.0.0"), v("v2.0.0"), false),
            (op1("SEMVER_EQ", "version", "2.0.0"), v("2.0"), false),
            (op1("SEMVER_EQ", "version", "2.0.0"), json!({}), false),
            (
                with(op1("SEMVER_EQ", "version", "2.0.0"), "inverted"),
                v("junk"),
                true,
            ),
            (op1("SEMVER_EQ", "version", "v2.0.0"), v("2.0.0"), false),
        ];
        for (c, ctx, expected) in cases {
            check(c, ctx, expected);
        }
    }

    #[test]
    fn regex_operator() {
        let cases = [
            (
                op1("REGEX", "userId", "^user\\d{3}$"),
                json!({"userId": "user123"}),
                true,
            ),
            (
                op1("REGEX", "userId", "^user\\d{3}$"),
                json!({"userId": "user12"}),
                false,
            ),
            (
                op1("REGEX", "userId", "cat"),
                json!({"userId": "concatenate"}),
                true,
            ),
            (
                op1("REGEX", "userId", "^abc$"),
                json!({"userId": "ABC"}),
                false,
            ),
            (
                with(op1("REGEX", "userId", "^abc$"), "caseInsensitive"),
                json!({"userId": "ABC"}),
                true,
            ),
            (
                with(op1("REGEX", "userId", "^abc$"), "inverted"),
                json!({"userId": "xyz"}),
                true,
            ),
            (
                op1("REGEX", "userId", "(unclosed"),
                json!({"userId": "(unclosed"}),
                false,
            ),
            (
                with(op1("REGEX", "userId", "(unclosed"), "inverted"),
                json!({"userId": "x"}),
                false,
            ),
            (
                op1("REGEX", "userId", "^(a)\\1$"),
                json!({"userId": "aa"}),
                false,
            ),
            (op1("REGEX", "userId", "."), json!({}), false),
            (
                op1("REGEX", "userId", &"a".repeat(MAX_REGEX_LEN + 1)),
                json!({"userId": "a"}),
                false,
            ),
        ];
        for (c, ctx, expected) in cases {
            check(c, ctx, expected);
        }
    }

    #[test]
    fn cidr_operator() {
        let ip = |s: &str| json!({"remoteAddress": s});
        let cases = [
            (
                op("IN_CIDR", "remoteAddress", &["127.0.0.1"]),
                ip("127.0.0.1"),
                true,
            ),
            (
                op("IN_CIDR", "remoteAddress", &["127.0.0.1"]),
                ip("127.0.0.2"),
                false,
            ),
            (
                op(
                    "IN_CIDR",
                    "remoteAddress",
                    &["127.invalid", "192.168.1.0/24"],
                ),
                ip("192.168.1.42"),
                true,
            ),
            (
                op("IN_CIDR", "remoteAddress", &["127.invalid"]),
                ip("127.0.0.1"),
                false,
            ),
            (
                op("IN_CIDR", "remoteAddress", &["2001:db8::/32"]),
                ip("2001:db8:0:1::42"),
                true,
            ),
            (
                op("IN_CIDR", "remoteAddress", &["2001:db8::/32"]),
                ip("2001:db9::1"),
                false,
            ),
            (
                op("IN_CIDR", "remoteAddress", &["10.0.0.0/8"]),
                ip("not an ip"),
                false,
            ),
            (
                op("IN_CIDR", "remoteAddress", &["10.0.0.0/8"]),
                json!({}),
                false,
            ),
        ];
        for (c, ctx, expected) in cases {
            check(c, ctx, expected);
        }
    }

    #[test]
    fn an_unknown_operator_never_matches() {
        let c = op1("NOT_A_VALID_OPERATOR", "x", "1");
        check(c.clone(), prop("x", "1"), false);
        check(with(c, "inverted"), prop("x", "1"), false);
    }
}
