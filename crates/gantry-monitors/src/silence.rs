//! Silences and maintenance windows: rules that hold an alert's notifications for a time.
//!
//! A **silence** is one span of time (`starts_at`, optional, to `ends_at`) for the alerts
//! it matches, with a reason people will read later. A **maintenance window** recurs: the
//! same hours on given weekdays, in UTC. Both match alerts the same way: by monitor name,
//! by service (and environment), or by a label. A held alert still changes state and is
//! still recorded; only its notifications wait.

use std::time::Duration;

use chrono::{DateTime, Datelike, Days, NaiveTime, Utc, Weekday};
use gantry_core::names::validate_name;
use gantry_core::Invalid;

use crate::alerts::Alert;

/// Longest reason accepted, in characters.
pub const MAX_REASON_CHARS: usize = 1000;
/// Longest maintenance window: a week (it recurs weekly).
pub const MAX_WINDOW: Duration = Duration::from_secs(7 * 86_400);

/// Which alerts a silence or maintenance window holds.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case", deny_unknown_fields)]
pub enum Matcher {
    /// The alerts of one monitor.
    Monitor { name: String },
    /// The alerts of a service's monitors, in one environment or in all.
    Service {
        service: String,
        environment: Option<String>,
    },
    /// The alerts of monitors with the label `key = value`.
    Label { key: String, value: String },
}

impl Matcher {
    pub fn matches(&self, alert: &Alert) -> bool {
        match self {
            Matcher::Monitor { name } => alert.monitor == *name,
            Matcher::Service {
                service,
                environment,
            } => {
                alert.service == *service
                    && environment.as_ref().is_none_or(|e| alert.environment == *e)
            }
            Matcher::Label { key, value } => alert.labels.get(key) == Some(value),
        }
    }

    fn validate(&self) -> Result<(), Invalid> {
        match self {
            Matcher::Monitor { name } => validate_name("monitor", name),
            Matcher::Service {
                service,
                environment,
            } => {
                validate_name("service", service)?;
                environment
                    .as_deref()
                    .map_or(Ok(()), |e| validate_name("environment", e))
            }
            Matcher::Label { key, value } => {
                if key.is_empty() || value.is_empty() {
                    Err(Invalid::new(
                        "a label matcher needs a key and a value (team = checkout)",
                    ))
                } else {
                    Ok(())
                }
            }
        }
    }
}

/// A one-off hold.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Silence {
    pub matcher: Matcher,
    /// When it begins; now when absent.
    pub starts_at: Option<DateTime<Utc>>,
    /// When it ends (exclusive).
    pub ends_at: DateTime<Utc>,
    /// Why, for whoever wonders later why no one was told.
    pub reason: String,
}

impl Silence {
    /// The rules a new silence must pass: it has not already ended, it starts before it
    /// ends, it says why, and its matcher names valid things.
    pub fn validate(&self, now: DateTime<Utc>) -> Result<(), Invalid> {
        if self.ends_at <= now {
            return Err(Invalid::new(format!(
                "ends_at {} is not in the future: a silence that has already ended would hold \
                 nothing",
                self.ends_at.to_rfc3339()
            )));
        }
        if let Some(starts_at) = self.starts_at {
            if starts_at >= self.ends_at {
                return Err(Invalid::new(format!(
                    "starts_at {} is not before ends_at {}",
                    starts_at.to_rfc3339(),
                    self.ends_at.to_rfc3339()
                )));
            }
        }
        validate_reason(&self.reason)?;
        self.matcher.validate()
    }

    /// Whether the silence is in force at `now`: from `starts_at` (inclusive) to
    /// `ends_at` (exclusive).
    pub fn is_active(&self, now: DateTime<Utc>) -> bool {
        self.starts_at.is_none_or(|s| s <= now) && now < self.ends_at
    }

    /// Whether the silence holds `alert` at `now`.
    pub fn holds(&self, alert: &Alert, now: DateTime<Utc>) -> bool {
        self.is_active(now) && self.matcher.matches(alert)
    }
}

/// Whether any silence holds `alert` at `now`.
pub fn is_held(alert: &Alert, silences: &[Silence], now: DateTime<Utc>) -> bool {
    silences.iter().any(|s| s.holds(alert, now))
}

/// A weekly hold: `duration` from `start` (UTC) on each of `weekdays`. A window may run
/// past midnight (Sunday 23:00 for 3 hours holds until Monday 02:00).
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MaintenanceWindow {
    pub matcher: Matcher,
    pub weekdays: Vec<Weekday>,
    /// Time of day the window opens, in UTC.
    pub start: NaiveTime,
    pub duration: Duration,
    pub reason: String,
}

impl MaintenanceWindow {
    /// The rules a window must pass: at least one weekday, a duration from a second to a
    /// week, a reason, a valid matcher.
    pub fn validate(&self) -> Result<(), Invalid> {
        if self.weekdays.is_empty() {
            return Err(Invalid::new(
                "weekdays is empty: give the days the window opens, e.g. [\"Sun\"]",
            ));
        }
        if self.duration < Duration::from_secs(1) || self.duration > MAX_WINDOW {
            return Err(Invalid::new(
                "duration must be from 1 second to 7 days; for a one-off hold use a silence",
            ));
        }
        validate_reason(&self.reason)?;
        self.matcher.validate()
    }

    /// Whether the window is open at `now`: some opening on one of its weekdays, today or
    /// up to seven days back, began at or before `now` and has not yet closed.
    pub fn is_active(&self, now: DateTime<Utc>) -> bool {
        let Ok(duration) = chrono::Duration::from_std(self.duration) else {
            return false;
        };
        (0..=7u64).any(|days_back| {
            let Some(day) = now.date_naive().checked_sub_days(Days::new(days_back)) else {
                return false;
            };
            if !self.weekdays.contains(&day.weekday()) {
                return false;
            }
            let opens = day.and_time(self.start).and_utc();
            opens <= now
                && opens
                    .checked_add_signed(duration)
                    .is_some_and(|closes| now < closes)
        })
    }

    pub fn holds(&self, alert: &Alert, now: DateTime<Utc>) -> bool {
        self.is_active(now) && self.matcher.matches(alert)
    }
}

/// Whether any maintenance window holds `alert` at `now`.
pub fn in_maintenance(alert: &Alert, windows: &[MaintenanceWindow], now: DateTime<Utc>) -> bool {
    windows.iter().any(|w| w.holds(alert, now))
}

fn validate_reason(reason: &str) -> Result<(), Invalid> {
    if reason.trim().is_empty() {
        return Err(Invalid::new(
            "reason is empty: say why, for whoever wonders later why no one was told",
        ));
    }
    if reason.chars().count() > MAX_REASON_CHARS {
        return Err(Invalid::new(format!(
            "reason is longer than {MAX_REASON_CHARS} characters"
        )));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use super::*;
    use crate::state::State;

    fn at(text: &str) -> DateTime<Utc> {
        match DateTime::parse_from_rfc3339(text) {
            Ok(t) => t.with_timezone(&Utc),
            Err(e) => panic!("{text}: {e}"),
        }
    }

    fn alert() -> Alert {
        Alert {
            monitor: "checkout-errors".into(),
            series: "stats.shop.web1.errors".into(),
            service: "shop".into(),
            environment: "prod".into(),
            labels: BTreeMap::from([("team".to_string(), "checkout".to_string())]),
            state: State::Critical,
            value: Some(12.0),
            started_at: at("2025-06-01T12:00:00Z"),
            resolved_at: None,
            flapping: false,
        }
    }

    fn silence(matcher: Matcher) -> Silence {
        Silence {
            matcher,
            starts_at: None,
            ends_at: at("2025-06-01T14:00:00Z"),
            reason: "deploying the new payment provider".into(),
        }
    }

    fn monitor(name: &str) -> Matcher {
        Matcher::Monitor { name: name.into() }
    }

    fn service(service: &str, environment: Option<&str>) -> Matcher {
        Matcher::Service {
            service: service.into(),
            environment: environment.map(String::from),
        }
    }

    fn label(key: &str, value: &str) -> Matcher {
        Matcher::Label {
            key: key.into(),
            value: value.into(),
        }
    }

    #[test]
    fn matchers() {
        let cases = [
            (monitor("checkout-errors"), true),
            (monitor("checkout-latency"), false),
            (service("shop", None), true),
            (service("shop", Some("prod")), true),
            (service("shop", Some("stage")), false),
            (service("blog", None), false),
            (label("team", "checkout"), true),
            (label("team", "search"), false),
            (label("tier", "checkout"), false),
        ];
        for (matcher, expected) in cases {
            assert_eq!(matcher.matches(&alert()), expected, "{matcher:?}");
        }
    }

    #[test]
    fn silences_hold_within_their_time() {
        let now = at("2025-06-01T13:00:00Z");
        let mut later = silence(monitor("checkout-errors"));
        later.starts_at = Some(at("2025-06-01T13:30:00Z"));
        let cases = [
            (silence(monitor("checkout-errors")), now, true),
            (silence(monitor("other")), now, false),
            // ends_at is exclusive.
            (
                silence(monitor("checkout-errors")),
                at("2025-06-01T14:00:00Z"),
                false,
            ),
            (later.clone(), now, false),
            (later.clone(), at("2025-06-01T13:30:00Z"), true),
        ];
        for (silence, now, expected) in cases {
            assert_eq!(
                is_held(&alert(), std::slice::from_ref(&silence), now),
                expected,
                "{silence:?} at {now}"
            );
        }
        assert!(!is_held(&alert(), &[], now));
        assert!(is_held(
            &alert(),
            &[
                silence(monitor("other")),
                silence(label("team", "checkout"))
            ],
            now
        ));
    }

    #[test]
    fn silence_validation() {
        let now = at("2025-06-01T13:00:00Z");
        assert_eq!(silence(monitor("checkout-errors")).validate(now), Ok(()));

        let mut ended = silence(monitor("x"));
        ended.ends_at = at("2025-06-01T12:59:59Z");
        let mut ends_now = silence(monitor("x"));
        ends_now.ends_at = now;
        let mut backwards = silence(monitor("x"));
        backwards.starts_at = Some(at("2025-06-01T15:00:00Z"));
        let mut no_reason = silence(monitor("x"));
        no_reason.reason = "  ".into();
        let cases = [
            (
                ended,
                "ends_at 2025-06-01T12:59:59+00:00 is not in the future",
            ),
            (ends_now, "is not in the future"),
            (
                backwards,
                "starts_at 2025-06-01T15:00:00+00:00 is not before ends_at",
            ),
            (no_reason, "reason is empty"),
            (silence(monitor("a b")), "monitor 'a b' is not a valid name"),
            (
                silence(service("shop", Some(""))),
                "environment must not be empty",
            ),
            (silence(label("team", "")), "needs a key and a value"),
        ];
        for (silence, expected) in cases {
            match silence.validate(now) {
                Ok(()) => panic!("{silence:?}: accepted"),
                Err(e) => assert!(e.0.contains(expected), "{e}"),
            }
        }
    }

    fn window(weekdays: &[Weekday], start: &str, hours: u64) -> MaintenanceWindow {
        MaintenanceWindow {
            matcher: service("shop", None),
            weekdays: weekdays.to_vec(),
            start: match NaiveTime::parse_from_str(start, "%H:%M") {
                Ok(t) => t,
                Err(e) => panic!("{start}: {e}"),
            },
            duration: Duration::from_secs(hours * 3600),
            reason: "weekly database maintenance".into(),
        }
    }

    #[test]
    fn maintenance_windows_recur_weekly() {
        // 2025-06-01 is a Sunday.
        let sunday_night = window(&[Weekday::Sun], "23:00", 3);
        let cases = [
            ("2025-06-01T22:59:59Z", false),
            ("2025-06-01T23:00:00Z", true),
            ("2025-06-02T01:59:59Z", true), // past midnight, into Monday
            ("2025-06-02T02:00:00Z", false),
            ("2025-06-08T23:30:00Z", true),  // the next Sunday
            ("2025-06-04T23:30:00Z", false), // a Wednesday
        ];
        for (now, expected) in cases {
            assert_eq!(sunday_night.is_active(at(now)), expected, "{now}");
        }
        let weekdays = window(&[Weekday::Mon, Weekday::Fri], "06:00", 1);
        assert!(weekdays.is_active(at("2025-06-06T06:30:00Z")));
        assert!(!weekdays.is_active(at("2025-06-05T06:30:00Z")));
        let week_long = window(&[Weekday::Sun], "00:00", 7 * 24);
        assert!(week_long.is_active(at("2025-06-07T23:59:59Z")));

        let now = at("2025-06-01T23:30:00Z");
        assert!(in_maintenance(
            &alert(),
            std::slice::from_ref(&sunday_night),
            now
        ));
        let mut other = sunday_night;
        other.matcher = service("blog", None);
        assert!(!in_maintenance(&alert(), &[other], now));
    }

    #[test]
    fn maintenance_window_validation() {
        assert_eq!(window(&[Weekday::Sun], "02:00", 2).validate(), Ok(()));
        let mut too_long = window(&[Weekday::Sun], "02:00", 8 * 24);
        too_long.reason = "x".into();
        let cases = [
            (window(&[], "02:00", 2), "weekdays is empty"),
            (
                window(&[Weekday::Sun], "02:00", 0),
                "duration must be from 1 second",
            ),
            (too_long, "to 7 days"),
        ];
        for (window, expected) in cases {
            match window.validate() {
                Ok(()) => panic!("{window:?}: accepted"),
                Err(e) => assert!(e.0.contains(expected), "{e}"),
            }
        }
    }
}
