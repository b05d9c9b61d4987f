//! The time formats Gantry accepts from people and tools.
//!
//! - [`parse_api_time`]: the change API's `since`/`until`: RFC 3339, epoch seconds, or a
//!   duration ago (`7d`, `36h`, `-15m`).
//! - [`parse_graphite_time`]: Graphite's `from`/`until` (`-6h`, `now`, `now-1d`,
//!   `HH:MM_YYYYMMDD`, `YYYYMMDD`, `MM/DD/YY`, `today`, `yesterday`, `midnight`, epoch
//!   seconds), as graphite-web reads them, in UTC.

use chrono::{DateTime, Duration, NaiveDate, NaiveDateTime, NaiveTime, TimeZone, Utc};

use crate::Invalid;

/// Parses `since`/`until` of the change API. `field` names the parameter in errors.
pub fn parse_api_time(field: &str, s: &str, now: DateTime<Utc>) -> Result<DateTime<Utc>, Invalid> {
    let s = s.trim();
    if let Ok(t) = DateTime::parse_from_rfc3339(s) {
        return Ok(t.with_timezone(&Utc));
    }
    if let Some(t) = parse_epoch(s) {
        return Ok(t);
    }
    let ago = s.strip_prefix('-').unwrap_or(s);
    if let Ok(d) = humantime::parse_duration(ago) {
        if let Ok(d) = Duration::from_std(d) {
            if let Some(t) = now.checked_sub_signed(d) {
                return Ok(t);
            }
        }
    }
    Err(Invalid::new(format!(
        "{field} '{s}' is not a time: use RFC 3339 (2026-11-01T12:00:00Z), epoch seconds, or a duration ago such as 7d or 36h"
    )))
}

fn parse_epoch(s: &str) -> Option<DateTime<Utc>> {
    if s.is_empty() || !s.bytes().all(|b| b.is_ascii_digit() || b == b'.') {
        return None;
    }
    let seconds: f64 = s.parse().ok()?;
    if !(0.0..=253_402_300_799.0).contains(&seconds) {
        return None;
    }
    let micros = (seconds * 1e6).round() as i64;
    Utc.timestamp_micros(micros).single()
}

/// Parses a Graphite time reference as graphite-web's `parseATTime` does (in UTC).
pub fn parse_graphite_time(
    field: &str,
    s: &str,
    now: DateTime<Utc>,
) -> Result<DateTime<Utc>, Invalid> {
    let bad = |why: &str| {
        Invalid::new(format!(
            "{field} '{s}' is not a Graphite time{why}: use epoch seconds, -6h, now-1d, HH:MM_YYYYMMDD, YYYYMMDD or today"
        ))
    };
    let text = s.trim().to_ascii_lowercase().replace([',', ' '], "");
    if text.is_empty() {
        return Err(bad(""));
    }
    if text.bytes().all(|b| b.is_ascii_digit()) && text.len() != 8 {
        // Epoch seconds (graphite-web treats all-digit input other than YYYYMMDD as epoch).
        return parse_epoch(&text).ok_or_else(|| bad(""));
    }
    // A reference (`now`, a date, a time of day) and then an offset (`-1d+2h`).
    let (reference, offset) = match text.find(['+', '-']) {
        Some(i) => text.split_at(i),
        None => (text.as_str(), ""),
    };
    let base = parse_reference(reference, now).ok_or_else(|| bad(""))?;
    if offset.is_empty() {
        return Ok(base);
    }
    let delta = parse_offset(offset).ok_or_else(|| bad(" (bad offset)"))?;
    base.checked_add_signed(delta)
        .ok_or_else(|| bad(" (out of range)"))
}

fn parse_reference(reference: &str, now: DateTime<Utc>) -> Option<DateTime<Utc>> {
    if reference.is_empty() || reference == "now" {
        return Some(now);
    }
    let today = now.date_naive();
    let at = |date: NaiveDate, time: NaiveTime| Utc.from_utc_datetime(&date.and_time(time));
    // A time of day may lead: `noon`, `midnight`, `teatime`, `HH:MM` (optionally am/pm), then
    // a date (`_YYYYMMDD` or glued) may follow.
    let (time, rest) = if let Some(rest) = reference.strip_prefix("midnight") {
        (Some(NaiveTime::MIN), rest)
    } else if let Some(rest) = reference.strip_prefix("noon") {
        (NaiveTime::from_hms_opt(12, 0, 0), rest)
    } else if let Some(rest) = reference.strip_prefix("teatime") {
        (NaiveTime::from_hms_opt(16, 0, 0), rest)
    } else if reference.len() >= 5 && reference.as_bytes()[2] == b':' {
        let hour: u32 = reference.get(0..2)?.parse().ok()?;
        let minute: u32 = reference.get(3..5)?.parse().ok()?;
        let mut rest = &reference[5..];
        let mut hour = hour;
        if let Some(r) = rest.strip_prefix("am") {
            rest = r;
            if hour == 12 {
                hour = 0;
            }
        } else if let Some(r) = rest.strip_prefix("pm") {
            rest = r;
            if hour < 12 {
                hour += 12;
            }
        }
        (Some(NaiveTime::from_hms_opt(hour, minute, 0)?), rest)
    } else {
        (None, reference)
    };
    let rest = rest.strip_prefix('_').unwrap_or(rest);
    let date = match rest {
        "" => Some(today),
        "today" => Some(today),
        "yesterday" => today.pred_opt(),
        "tomorrow" => today.succ_opt(),
        _ => parse_date(rest),
    }?;
    let time = match (time, rest) {
        (Some(t), _) => t,
        (None, "") => return None,
        (None, _) => NaiveTime::MIN,
    };
    Some(at(date, time))
}

fn parse_date(s: &str) -> Option<NaiveDate> {
    if s.len() == 8 && s.bytes().all(|b| b.is_ascii_digit()) {
        return NaiveDate::parse_from_str(s, "%Y%m%d").ok();
    }
    for format in ["%m/%d/%y", "%m/%d/%Y"] {
        if let Ok(d) = NaiveDate::parse_from_str(s, format) {
            return Some(d);
        }
    }
    None
}

/// Parses `-6h`, `+1d`, `-5min`, `-2weeks`; units as graphite-web reads them.
fn parse_offset(s: &str) -> Option<Duration> {
    let mut total = Duration::zero();
    let mut rest = s;
    while !rest.is_empty() {
        let sign = match rest.as_bytes()[0] {
            b'-' => -1,
            b'+' => 1,
            _ => return None,
        };
        rest = &rest[1..];
        let digits = rest.bytes().take_while(|b| b.is_ascii_digit()).count();
        if digits == 0 {
            return None;
        }
        let amount: i64 = rest[..digits].parse().ok()?;
        rest = &rest[digits..];
        let unit_len = rest.bytes().take_while(|b| b.is_ascii_alphabetic()).count();
        let unit = &rest[..unit_len];
        rest = &rest[unit_len..];
        let seconds = graphite_unit_seconds(unit)?;
        let step = Duration::try_seconds(sign * amount.checked_mul(seconds)?)?;
        total = total.checked_add(&step)?;
    }
    Some(total)
}

/// Seconds in a Graphite time unit, matched by prefix in graphite-web's order.
pub fn graphite_unit_seconds(unit: &str) -> Option<i64> {
    const TABLE: [(&str, i64); 8] = [
        ("s", 1),
        ("min", 60),
        ("h", 3600),
        ("d", 86_400),
        ("w", 7 * 86_400),
        ("mon", 30 * 86_400),
        ("m", 60),
        ("y", 365 * 86_400),
    ];
    if unit.is_empty() {
        return Some(1);
    }
    TABLE
        .iter()
        .find(|(prefix, _)| unit.starts_with(prefix))
        .map(|&(_, seconds)| seconds)
}

/// Parses a duration given on the command line or in config (`30d`, `90s`, `1h30m`).
pub fn parse_duration(field: &str, s: &str) -> Result<std::time::Duration, Invalid> {
    humantime::parse_duration(s.trim()).map_err(|e| {
        Invalid::new(format!(
            "{field} '{s}' is not a duration ({e}); use e.g. 30s, 15m, 7d"
        ))
    })
}

/// Serde helper for optional API times: a string in any [`parse_api_time`] format (RFC 3339,
/// epoch seconds, a duration ago) or a number of epoch seconds.
pub fn deserialize_api_time<'de, D>(deserializer: D) -> Result<Option<DateTime<Utc>>, D::Error>
where
    D: serde::Deserializer<'de>,
{
    use serde::de::Error;
    #[derive(serde::Deserialize)]
    #[serde(untagged)]
    enum Raw {
        Text(String),
        Seconds(f64),
    }
    let raw: Option<Raw> = serde::Deserialize::deserialize(deserializer)?;
    match raw {
        None => Ok(None),
        Some(Raw::Text(text)) => {
            // The field's name is added by the caller's path; say only what is wrong.
            parse_api_time("time", &text, Utc::now())
                .map(Some)
                .map_err(|_| D::Error::custom(format!(
                    "'{text}' is not a time: use RFC 3339 (2026-11-01T12:00:00Z), epoch seconds, or a duration ago such as 10m"
                )))
        }
        // f64's Display never uses exponent notation, so this is plain digits.
        Some(Raw::Seconds(seconds)) => parse_epoch(&seconds.to_string())
            .map(Some)
            .ok_or_else(|| D::Error::custom(format!("{seconds} is not a time in epoch seconds"))),
    }
}

/// Parses a naive `YYYY-MM-DD HH:MM:SS` as UTC; used where people type times.
pub fn parse_naive_utc(s: &str) -> Option<DateTime<Utc>> {
    NaiveDateTime::parse_from_str(s, "%Y-%m-%d %H:%M:%S")
        .ok()
        .map(|t| Utc.from_utc_datetime(&t))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn now() -> DateTime<Utc> {
        Utc.with_ymd_and_hms(2026, 11, 22, 15, 30, 45).unwrap()
    }

    fn utc(y: i32, mo: u32, d: u32, h: u32, mi: u32, s: u32) -> DateTime<Utc> {
        Utc.with_ymd_and_hms(y, mo, d, h, mi, s).unwrap()
    }

    #[test]
    fn api_times() {
        let cases = [
            ("2026-11-01T12:00:00Z", utc(2026, 11, 1, 12, 0, 0)),
            ("2026-11-01T13:00:00+01:00", utc(2026, 11, 1, 12, 0, 0)),
            ("1700000000", utc(2023, 11, 14, 22, 13, 20)),
            ("7d", now() - Duration::days(7)),
            ("-36h", now() - Duration::hours(36)),
            ("15m", now() - Duration::minutes(15)),
        ];
        for (input, expected) in cases {
            assert_eq!(
                parse_api_time("since", input, now()).unwrap(),
                expected,
                "{input}"
            );
        }
        for bad in [
            "",
            "yesterday-ish",
            "2026-13-01T00:00:00Z",
            "7 parsecs",
            "-1",
        ] {
            let err = parse_api_time("since", bad, now()).unwrap_err();
            assert!(err.0.starts_with("since '"), "{bad}: {err}");
        }
    }

    #[test]
    fn graphite_times() {
        let cases = [
            ("now", now()),
            ("-6h", now() - Duration::hours(6)),
            ("now-1d", now() - Duration::days(1)),
            ("-5min", now() - Duration::minutes(5)),
            ("-5m", now() - Duration::minutes(5)),
            ("-2w", now() - Duration::weeks(2)),
            ("-1mon", now() - Duration::days(30)),
            ("-1y", now() - Duration::days(365)),
            ("-30s", now() - Duration::seconds(30)),
            ("1700000000", utc(2023, 11, 14, 22, 13, 20)),
            ("04:00_20261120", utc(2026, 11, 20, 4, 0, 0)),
            ("20261120", utc(2026, 11, 20, 0, 0, 0)),
            ("11/20/26", utc(2026, 11, 20, 0, 0, 0)),
            ("today", utc(2026, 11, 22, 0, 0, 0)),
            ("yesterday", utc(2026, 11, 21, 0, 0, 0)),
            ("midnight", utc(2026, 11, 22, 0, 0, 0)),
            ("noon yesterday", utc(2026, 11, 21, 12, 0, 0)),
            ("04:00pm_20261120", utc(2026, 11, 20, 16, 0, 0)),
            ("20261120+1h", utc(2026, 11, 20, 1, 0, 0)),
        ];
        for (input, expected) in cases {
            assert_eq!(
                parse_graphite_time("from", input, now()).unwrap(),
                expected,
                "{input}"
            );
        }
        for bad in [
            "",
            "soon",
            "-6parsecs",
            "99:99_20261120",
            "20261340",
            "now-",
            // Offsets beyond what a time can hold, alone and added up.
            "now-100000000000000000s",
            "-9000000000000000s-9000000000000000s",
        ] {
            let err = parse_graphite_time("from", bad, now()).unwrap_err();
            assert!(err.0.starts_with("from '"), "{bad}: {err}");
        }
    }
}
