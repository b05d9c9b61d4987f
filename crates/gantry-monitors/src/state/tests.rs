//! Tests of evaluations and of the soft/hard machine, as data.

use chrono::TimeZone;

use super::*;
use crate::file::HttpMethod;

fn t0() -> DateTime<Utc> {
    Utc.with_ymd_and_hms(2025, 6, 1, 0, 0, 0)
        .single()
        .unwrap_or(DateTime::<Utc>::MIN_UTC)
}

fn minutes(n: i64) -> DateTime<Utc> {
    t0() + chrono::Duration::minutes(n)
}

fn threshold(direction: Direction, warning: Option<f64>, critical: Option<f64>) -> ThresholdCheck {
    ThresholdCheck {
        target: "stats.shop.errors".into(),
        reduce: Reduce::Avg,
        window: Duration::from_secs(300),
        direction,
        warning,
        critical,
        interval: Duration::from_secs(60),
        hard_after: 1,
        missing: MissingData::Unknown,
    }
}

#[test]
fn reductions() {
    let values = [
        Some(4.0),
        None,
        Some(1.0),
        Some(f64::NAN),
        Some(7.0),
        Some(100.0),
    ];
    let cases = [
        // The last slot (100) is partial: ignored.
        (Reduce::Avg, true, Some(4.0)),
        (Reduce::Min, true, Some(1.0)),
        (Reduce::Max, true, Some(7.0)),
        (Reduce::Last, true, Some(7.0)),
        (Reduce::Sum, true, Some(12.0)),
        // Complete: it counts.
        (Reduce::Max, false, Some(100.0)),
        (Reduce::Last, false, Some(100.0)),
    ];
    for (how, partial, expected) in cases {
        let window = Window {
            values: &values,
            last_is_partial: partial,
        };
        assert_eq!(reduce(how, window), expected, "{how:?} partial={partial}");
    }
    let empty_cases: [&[Option<f64>]; 4] = [&[], &[None, None], &[Some(f64::NAN)], &[Some(3.0)]];
    for values in empty_cases {
        let window = Window {
            values,
            last_is_partial: true,
        };
        assert_eq!(reduce(Reduce::Avg, window), None, "{values:?}");
    }
    // The last known value, not the last slot.
    let window = Window {
        values: &[Some(1.0), Some(2.0), None],
        last_is_partial: false,
    };
    assert_eq!(reduce(Reduce::Last, window), Some(2.0));
}

#[test]
fn threshold_comparisons() {
    use Direction::{Above, Below};
    use State::{Critical as C, Ok as O, Warning as W};
    let cases = [
        (Above, Some(5.0), Some(10.0), 4.0, O),
        (Above, Some(5.0), Some(10.0), 5.0, O), // at the threshold is not above it
        (Above, Some(5.0), Some(10.0), 5.5, W),
        (Above, Some(5.0), Some(10.0), 10.5, C),
        (Above, None, Some(10.0), 7.0, O),
        (Above, Some(5.0), None, 70.0, W),
        (Above, Some(10.0), Some(10.0), 11.0, C),
        (Below, Some(10.0), Some(2.0), 11.0, O),
        (Below, Some(10.0), Some(2.0), 10.0, O),
        (Below, Some(10.0), Some(2.0), 9.0, W),
        (Below, Some(10.0), Some(2.0), 1.0, C),
        (Below, Some(-1.0), Some(-5.0), -3.0, W),
    ];
    for (direction, warning, critical, value, expected) in cases {
        let check = threshold(direction, warning, critical);
        let values = [Some(value)];
        let evaluation = evaluate_threshold(
            &check,
            Window {
                values: &values,
                last_is_partial: false,
            },
        );
        assert_eq!(
            evaluation.state, expected,
            "{direction:?} w={warning:?} c={critical:?} value={value}"
        );
        assert_eq!(evaluation.value, Some(value));
    }
    let check = threshold(Above, Some(5.0), Some(10.0));
    let summary = |value: f64| {
        let values = [Some(value)];
        evaluate_threshold(
            &check,
            Window {
                values: &values,
                last_is_partial: false,
            },
        )
        .summary
    };
    assert_eq!(summary(12.5), "avg 12.5 over 5m is above critical 10");
    assert_eq!(summary(6.0), "avg 6 over 5m is above warning 5");
}

#[test]
fn missing_data_policies() {
    let cases = [
        (MissingData::Unknown, State::Unknown),
        (MissingData::Ok, State::Ok),
        (MissingData::Critical, State::Critical),
    ];
    for (missing, expected) in cases {
        let check = ThresholdCheck {
            missing,
            ..threshold(Direction::Above, Some(1.0), None)
        };
        let evaluation = evaluate_threshold(
            &check,
            Window {
                values: &[None, None],
                last_is_partial: false,
            },
        );
        assert_eq!(evaluation.state, expected, "{missing:?}");
        assert_eq!(evaluation.value, None);
        assert!(
            evaluation.summary.contains("no data over 5m"),
            "{}",
            evaluation.summary
        );
    }
}

#[test]
fn worst_of_states() {
    use State::{Critical as C, Ok as O, Unknown as U, Warning as W};
    let cases: [(&[State], State); 6] = [
        (&[], O),
        (&[O, O], O),
        (&[O, U], U),
        (&[U, W], W),
        (&[W, C, U], C),
        (&[C, U], C),
    ];
    for (states, expected) in cases {
        assert_eq!(State::worst(states.iter().copied()), expected, "{states:?}");
    }
}

fn letter(state: State) -> char {
    match state {
        State::Ok => 'o',
        State::Warning => 'w',
        State::Critical => 'c',
        State::Unknown => 'u',
    }
}

fn state_of(c: char) -> State {
    match c {
        'w' => State::Warning,
        'c' => State::Critical,
        'u' => State::Unknown,
        _ => State::Ok,
    }
}

/// Feeds evaluations written as letters (o w c u) one a minute and writes what each did:
/// `..` nothing, `oc` a soft transition from o to c, `OC` a hard one.
fn trace(hard_after: u32, input: &str) -> String {
    let mut series = SeriesState::new();
    let mut steps = Vec::new();
    for (i, c) in input.chars().enumerate() {
        let evaluation = Evaluation::new(state_of(c), Some(i as f64), "");
        let at = minutes(i as i64);
        let observation = series.observe(&evaluation, hard_after, &FlapThresholds::default(), at);
        steps.push(match observation.transition {
            None => "..".to_string(),
            Some(t) => {
                assert_eq!(t.at, at);
                assert_eq!(t.value, Some(i as f64));
                let pair = format!("{}{}", letter(t.from), letter(t.to));
                if t.hard {
                    pair.to_uppercase()
                } else {
                    pair
                }
            }
        });
    }
    steps.join("|")
}

#[test]
fn soft_and_hard() {
    let cases = [
        // for = 1: every change is hard at once.
        (1, "oco", "..|OC|CO"),
        // 0 counts as 1.
        (0, "oc", "..|OC"),
        // A problem is soft until seen `for` times, then hard.
        (3, "occco", "..|oc|..|OC|co"),
        // Recoveries need `for` evaluations too.
        (3, "cccooo", "oc|..|OC|co|..|CO"),
        // A glitch shorter than `for` never becomes hard.
        (3, "ccc", "oc|..|OC"),
        (3, "cccocc", "oc|..|OC|co|oc|.."),
        (2, "cocococo", "oc|co|oc|co|oc|co|oc|co"),
        // From OK, problems of any mix count together; the last one becomes hard.
        (3, "wcw", "ow|wc|OW"),
        (3, "wuc", "ow|wu|OC"),
        // Between problems, a change of severity needs `for` evaluations in the new state.
        (2, "wwcc", "ow|OW|wc|WC"),
        (2, "wwcwcw", "ow|OW|wc|cw|wc|cw"),
        // UNKNOWN is a state like the others.
        (2, "uuoo", "ou|OU|uo|UO"),
        // A soft detour back to the hard state resets the count.
        (3, "ccoccc", "oc|..|co|oc|..|OC"),
    ];
    for (hard_after, input, expected) in cases {
        assert_eq!(
            trace(hard_after, input),
            expected,
            "for={hard_after} {input}"
        );
    }
}

#[test]
fn series_state_accessors() {
    let mut series = SeriesState::new();
    let flap = FlapThresholds::default();
    let critical = Evaluation::new(State::Critical, Some(12.0), "");
    assert_eq!(series.hard(), State::Ok);
    assert_eq!(series.hard_since(), None);
    series.observe(&critical, 3, &flap, minutes(0));
    series.observe(&critical, 3, &flap, minutes(1));
    assert!(series.is_soft());
    assert_eq!(series.attempts(), 2);
    assert_eq!(
        (series.latest(), series.hard()),
        (State::Critical, State::Ok)
    );
    series.observe(&critical, 3, &flap, minutes(2));
    assert!(!series.is_soft());
    assert_eq!(series.attempts(), 0);
    assert_eq!(series.hard_since(), Some(minutes(2)));
    assert_eq!(series.latest_value(), Some(12.0));
    assert_eq!(series.latest_at(), Some(minutes(2)));
    assert_eq!(series.history().count(), 3);
}

#[test]
fn flapping_series_report_it() {
    let mut series = SeriesState::new();
    let flap = FlapThresholds::default();
    let mut started = None;
    for i in 0..10 {
        let state = if i % 2 == 0 {
            State::Critical
        } else {
            State::Ok
        };
        let observation = series.observe(&Evaluation::new(state, None, ""), 1, &flap, minutes(i));
        if let Some(FlapChange::Started { .. }) = observation.flap {
            started = Some(i);
            break;
        }
    }
    // The history starts with the first evaluation, so the changes are at minutes 1 to 4:
    // three weigh 3.54 of 20 (17.7 %), four 4.67 (23.4 %), above 20 %.
    assert_eq!(started, Some(4));
    assert!(series.is_flapping());
    assert!(series.flap_percent() > 20.0);
}

#[test]
fn several_series_each_keep_a_state() {
    let flap = FlapThresholds::default();
    let check = threshold(Direction::Above, Some(5.0), Some(10.0));
    let missing = missing_data(&check);
    let mut monitor = MonitorState::new();
    let round = |pairs: &[(&str, State)]| -> Vec<(String, Evaluation)> {
        pairs
            .iter()
            .map(|(name, state)| (name.to_string(), Evaluation::new(*state, None, "")))
            .collect()
    };

    // No series at all: "nothing matches" is a series of its own, by the missing rule.
    let changes = monitor.observe(&[], &missing, 1, &flap, minutes(0));
    assert_eq!(changes.len(), 1);
    assert_eq!(changes[0].0, NO_SERIES);
    assert_eq!(monitor.worst(), State::Unknown);

    // Series appear: the stand-in resolves and goes away.
    let changes = monitor.observe(
        &round(&[("web1", State::Ok), ("web2", State::Warning)]),
        &missing,
        1,
        &flap,
        minutes(1),
    );
    let names: Vec<&str> = changes.iter().map(|(n, _)| n.as_str()).collect();
    assert_eq!(names, [NO_SERIES, "web2"]);
    assert!(monitor.get(NO_SERIES).is_none());
    assert_eq!(monitor.worst(), State::Warning);

    // One critical, one gone quiet: the monitor shows the worst.
    monitor.observe(
        &round(&[("web1", State::Critical)]),
        &missing,
        1,
        &flap,
        minutes(2),
    );
    assert_eq!(
        monitor.get("web2").map(SeriesState::hard),
        Some(State::Unknown)
    );
    assert_eq!(monitor.worst(), State::Critical);
    let states: Vec<(&str, State)> = monitor.series().map(|(n, s)| (n, s.hard())).collect();
    assert_eq!(
        states,
        [("web1", State::Critical), ("web2", State::Unknown)]
    );

    // A host taken out of service is forgotten.
    assert!(monitor.forget("web2"));
    assert!(!monitor.forget("web2"));
    monitor.observe(
        &round(&[("web1", State::Ok)]),
        &missing,
        1,
        &flap,
        minutes(3),
    );
    assert_eq!(monitor.worst(), State::Ok);
}

fn heartbeat_check() -> HeartbeatCheck {
    HeartbeatCheck {
        period: Duration::from_secs(86_400),
        grace: Duration::from_secs(30 * 60),
        max_runtime: Some(Duration::from_secs(2 * 3600)),
    }
}

#[test]
fn heartbeats() {
    use PingKind::{Exit, Fail, Start, Success};
    use State::{Critical as C, Ok as O, Warning as W};
    const DAY: i64 = 24 * 60;
    // (what, pings as (kind, minute), now as a minute, expected state, words of the summary)
    type Case = (
        &'static str,
        &'static [(PingKind, i64)],
        i64,
        State,
        &'static str,
    );
    let cases: [Case; 14] = [
        (
            "silent until the first ping",
            &[],
            10 * DAY,
            O,
            "waiting for the first ping",
        ),
        ("within the period", &[(Success, 0)], DAY, O, "on schedule"),
        ("in the grace", &[(Success, 0)], DAY + 30, O, "on schedule"),
        (
            "past period and grace",
            &[(Success, 0)],
            DAY + 31,
            C,
            "no finished run for 1d31m (period 1d, grace 30m)",
        ),
        (
            "a fail ping",
            &[(Success, 0), (Fail, 60)],
            61,
            C,
            "reported a failure",
        ),
        (
            "a nonzero exit code",
            &[(Exit(3), 0)],
            1,
            C,
            "exited with code 3",
        ),
        ("a zero exit code", &[(Exit(0), 0)], 1, O, "on schedule"),
        (
            "a success after a failure",
            &[(Fail, 0), (Success, 5)],
            6,
            O,
            "on schedule",
        ),
        (
            "a late, older failure",
            &[(Success, 5), (Fail, 0)],
            6,
            O,
            "on schedule",
        ),
        (
            "a run within max_runtime",
            &[(Success, 0), (Start, 60)],
            179,
            O,
            "on schedule",
        ),
        (
            "a run past max_runtime",
            &[(Success, 0), (Start, 60)],
            181,
            W,
            "running for 2h1m, longer than max_runtime 2h",
        ),
        (
            "a run that finished",
            &[(Start, 0), (Success, 150)],
            200,
            O,
            "on schedule",
        ),
        (
            "only a start, never finished, past the period",
            &[(Start, 0)],
            DAY + 31,
            C,
            "no finished run",
        ),
        (
            "a start older than the finish",
            &[(Success, 60), (Start, 0)],
            400,
            O,
            "on schedule",
        ),
    ];
    let check = heartbeat_check();
    for (what, pings, now, expected, says) in cases {
        let mut log = HeartbeatLog::default();
        for (kind, at) in pings {
            log.record(&Ping {
                kind: *kind,
                at: minutes(*at),
            });
        }
        let evaluation = evaluate_heartbeat(&check, &log, minutes(now));
        assert_eq!(evaluation.state, expected, "{what}: {}", evaluation.summary);
        assert!(
            evaluation.summary.contains(says),
            "{what}: {}",
            evaluation.summary
        );
    }
    // Without max_runtime a long run is not judged by its length.
    let check = HeartbeatCheck {
        max_runtime: None,
        ..heartbeat_check()
    };
    let mut log = HeartbeatLog::default();
    log.record(&Ping {
        kind: Start,
        at: minutes(0),
    });
    assert_eq!(evaluate_heartbeat(&check, &log, minutes(600)).state, O);
}

#[test]
fn http_results() {
    let check = HttpCheck {
        url: "https://shop.example.com/health".into(),
        method: HttpMethod::Get,
        expect_status: 200,
        body_contains: Some("ok".into()),
        body_matches: None,
        timeout: Duration::from_secs(5),
        interval: Duration::from_secs(60),
        hard_after: 2,
    };
    let result = |status: Option<u16>, body: &str, millis: u64, error: Option<&str>| HttpResult {
        status,
        body_matched: check.body_ok(body),
        elapsed: Duration::from_millis(millis),
        error: error.map(String::from),
    };
    let cases = [
        (
            result(Some(200), "ok", 120, None),
            State::Ok,
            "status 200 in 120ms",
        ),
        (
            result(None, "", 5000, Some("connection refused")),
            State::Critical,
            "GET https://shop.example.com/health: connection refused",
        ),
        (
            result(Some(200), "ok", 5001, None),
            State::Critical,
            "timeout of 5s",
        ),
        (
            result(Some(503), "ok", 20, None),
            State::Critical,
            "status 503, expected 200",
        ),
        (
            result(Some(200), "degraded", 20, None),
            State::Critical,
            "the body does not contain",
        ),
        (result(None, "", 20, None), State::Critical, "no response"),
    ];
    for (result, expected, says) in cases {
        let evaluation = evaluate_http(&check, &result);
        assert_eq!(evaluation.state, expected, "{result:?}");
        assert!(evaluation.summary.contains(says), "{}", evaluation.summary);
        assert_eq!(evaluation.value, Some(result.elapsed.as_secs_f64()));
    }
}

#[test]
fn a_monitor_state_survives_being_stored() {
    let mut ms = MonitorState::new();
    let at = chrono::DateTime::from_timestamp(1_767_225_600, 0).unwrap();
    let flap = FlapThresholds::default();
    let round = vec![
        (
            "web-1".to_string(),
            Evaluation::new(State::Critical, Some(9.0), "over"),
        ),
        (
            "web-2".to_string(),
            Evaluation::new(State::Ok, Some(1.0), "fine"),
        ),
    ];
    let missing = Evaluation::new(State::Unknown, None, "no data");
    ms.observe(&round, &missing, 2, &flap, at);
    let text = serde_json::to_string(&ms).unwrap();
    let back: MonitorState = serde_json::from_str(&text).unwrap();
    assert_eq!(back, ms);
}
