//! Tests of grouping timings, held alerts and the retry schedule, as timelines.

use chrono::TimeZone;

use super::*;
use crate::silence::{is_held, Matcher, Silence};

fn t0() -> DateTime<Utc> {
    Utc.with_ymd_and_hms(2025, 6, 1, 12, 0, 0)
        .single()
        .unwrap_or(DateTime::<Utc>::MIN_UTC)
}

fn secs(n: i64) -> DateTime<Utc> {
    t0() + chrono::Duration::seconds(n)
}

const M: i64 = 60;
const H: i64 = 3600;

/// What happens to a series of monitor `checkout-errors` (service `shop`) in an
/// environment.
#[derive(Clone, Copy)]
enum Act {
    Hard(State),
    Soft(State),
    Flapping(bool),
}

struct Event {
    at: i64,
    series: &'static str,
    environment: &'static str,
    act: Act,
}

fn ev(at: i64, series: &'static str, act: Act) -> Event {
    Event {
        at,
        series,
        environment: "prod",
        act,
    }
}

fn subject(series: &str, environment: &str) -> AlertSubject {
    AlertSubject {
        monitor: "checkout-errors".into(),
        series: series.into(),
        service: "shop".into(),
        environment: environment.into(),
        labels: BTreeMap::from([("team".to_string(), "checkout".to_string())]),
    }
}

fn short(state: State) -> &'static str {
    match state {
        State::Ok => "O",
        State::Warning => "W",
        State::Critical => "C",
        State::Unknown => "U",
    }
}

/// Runs a timeline: events in order, and `due` called whenever the grouper says it is
/// due, up to `until` seconds. Each notification is written as
/// `<seconds> <environment> #<sequence> [repeat] firing: web1=C web2=W; resolved: web3`.
fn run(events: Vec<Event>, silences: &[Silence], until: i64) -> Vec<String> {
    run_with(events, silences, until, false)
}

/// [`run`], optionally handing the grouper over through JSON before every step, as a
/// server taking over the lease continues from the stored state.
fn run_with(events: Vec<Event>, silences: &[Silence], until: i64, handover: bool) -> Vec<String> {
    let mut grouper = Grouper::new(GroupTimings::default());
    let mut out = Vec::new();
    let mut events = events.into_iter().peekable();
    loop {
        let next_event = events.peek().map(|e| secs(e.at));
        let next_due = grouper.next_due();
        let now = match (next_event, next_due) {
            (Some(e), Some(d)) => e.min(d),
            (Some(e), None) => e,
            (None, Some(d)) => d,
            (None, None) => break,
        };
        if now > secs(until) {
            break;
        }
        if handover {
            let stored = serde_json::to_string(&grouper).expect("a grouper serializes");
            grouper = serde_json::from_str(&stored).expect("a stored grouper reads back");
        }
        // Events at a moment come before the look at groups due then.
        while let Some(event) = events.next_if(|e| secs(e.at) == now) {
            let subject = subject(event.series, event.environment);
            match event.act {
                Act::Hard(to) | Act::Soft(to) => {
                    let transition = Transition {
                        from: State::Ok,
                        to,
                        hard: matches!(event.act, Act::Hard(_)),
                        value: None,
                        at: now,
                    };
                    grouper.record(&subject, &transition);
                }
                Act::Flapping(flapping) => grouper.set_flapping(&subject, flapping),
            }
        }
        for n in grouper.due(now, |alert| is_held(alert, silences, now)) {
            assert_eq!(n.at, now);
            assert_eq!(
                n.id,
                format!(
                    "shop/{}/{}/{}",
                    n.group.environment,
                    n.id.split('/').nth(2).unwrap_or_default(),
                    n.sequence
                )
            );
            let firing: Vec<String> = n
                .firing
                .iter()
                .map(|a| format!("{}={}", a.series, short(a.state)))
                .collect();
            let resolved: Vec<&str> = n.resolved.iter().map(|a| a.series.as_str()).collect();
            out.push(format!(
                "{} {} #{} {}firing: {}; resolved: {}",
                (now - t0()).num_seconds(),
                n.group.environment,
                n.sequence,
                if n.repeat { "repeat " } else { "" },
                firing.join(" "),
                resolved.join(" ")
            ));
        }
    }
    out
}

use Act::{Flapping, Hard, Soft};
use State::{Critical as C, Ok as O, Warning as W};

#[test]
fn group_wait_gathers_alerts_that_fire_together() {
    let got = run(
        vec![
            ev(0, "web1", Hard(C)),
            ev(10, "web2", Hard(W)),
            ev(29, "web3", Soft(C)),
        ],
        &[],
        60,
    );
    assert_eq!(got, ["30 prod #1 firing: web1=C web2=W; resolved: "]);
}

#[test]
fn groups_are_per_service_and_environment() {
    let mut stage = ev(5, "web1", Hard(C));
    stage.environment = "stage";
    let got = run(vec![ev(0, "web1", Hard(C)), stage], &[], 60);
    assert_eq!(
        got,
        [
            "30 prod #1 firing: web1=C; resolved: ",
            "35 stage #1 firing: web1=C; resolved: ",
        ]
    );
}

#[test]
fn changes_wait_for_the_group_interval() {
    let got = run(
        vec![
            ev(0, "web1", Hard(C)),
            ev(60, "web2", Hard(W)), // new alert: next tick at 30 s + 5 min
            ev(6 * M, "web2", Hard(C)), // severity change: the tick after
            ev(20 * M, "web1", Hard(O)), // resolution
            ev(21 * M, "web2", Hard(O)),
        ],
        &[],
        H,
    );
    assert_eq!(
        got,
        [
            "30 prod #1 firing: web1=C; resolved: ",
            "330 prod #2 firing: web1=C web2=W; resolved: ",
            "630 prod #3 firing: web1=C web2=C; resolved: ",
            "1230 prod #4 firing: web2=C; resolved: web1",
            "1530 prod #5 firing: ; resolved: web2",
        ]
    );
}

#[test]
fn unchanged_groups_repeat_every_four_hours() {
    let got = run(vec![ev(0, "web1", Hard(C))], &[], 9 * H);
    // Ticks every 5 min from 30 s; the first at or after 4 h since the last notification.
    assert_eq!(
        got,
        [
            "30 prod #1 firing: web1=C; resolved: ",
            "14430 prod #2 repeat firing: web1=C; resolved: ",
            "28830 prod #3 repeat firing: web1=C; resolved: ",
        ]
    );
}

#[test]
fn a_group_that_resolves_ends_and_a_new_one_starts_over() {
    let mut grouper = Grouper::new(GroupTimings::default());
    let subject = subject("web1", "prod");
    let hard = |to, at| Transition {
        from: O,
        to,
        hard: true,
        value: Some(1.0),
        at,
    };
    grouper.record(&subject, &hard(C, secs(0)));
    let first = grouper.due(secs(30), |_| false);
    grouper.record(&subject, &hard(O, secs(60)));
    let resolved = grouper.due(secs(330), |_| false);
    assert_eq!(grouper.next_due(), None);
    assert_eq!(grouper.alerts().count(), 0);
    grouper.record(&subject, &hard(C, secs(1000)));
    let again = grouper.due(secs(1030), |_| false);

    let ids: Vec<&str> = first
        .iter()
        .chain(&resolved)
        .chain(&again)
        .map(|n| n.id.as_str())
        .collect();
    let start = t0().timestamp_millis();
    assert_eq!(
        ids,
        [
            format!("shop/prod/{start}/1"),
            format!("shop/prod/{start}/2"),
            format!("shop/prod/{}/1", start + 1_000_000),
        ]
    );
    let resolved_alert = &resolved[0].resolved[0];
    assert_eq!(resolved_alert.resolved_at, Some(secs(60)));
    assert_eq!(resolved_alert.started_at, secs(0));
    assert_eq!(
        resolved_alert.id(),
        "checkout-errors/web1@2025-06-01T12:00:00.000Z"
    );
}

#[test]
fn alerts_that_resolve_unseen_are_dropped_quietly() {
    let got = run(
        vec![ev(0, "web1", Hard(C)), ev(20, "web1", Hard(O))],
        &[],
        H,
    );
    assert!(got.is_empty(), "{got:?}");
    // Firing again before the resolution went out: the same alert, open again.
    let got = run(
        vec![
            ev(0, "web1", Hard(C)),
            ev(60, "web1", Hard(O)),
            ev(120, "web1", Hard(W)),
        ],
        &[],
        10 * M,
    );
    assert_eq!(
        got,
        [
            "30 prod #1 firing: web1=C; resolved: ",
            "330 prod #2 firing: web1=W; resolved: ",
        ]
    );
}

fn silence_until(series_monitor: &str, ends_at: i64) -> Silence {
    Silence {
        matcher: Matcher::Monitor {
            name: series_monitor.into(),
        },
        starts_at: None,
        ends_at: secs(ends_at),
        reason: "known issue".into(),
    }
}

#[test]
fn silenced_alerts_wait_for_the_silence_to_end() {
    let silences = [silence_until("checkout-errors", 20 * M)];
    let got = run(vec![ev(0, "web1", Hard(C))], &silences, H);
    // Held until 20 min; told at the first tick after.
    assert_eq!(got, ["1230 prod #1 firing: web1=C; resolved: "]);

    let other = [silence_until("checkout-latency", 20 * M)];
    let got = run(vec![ev(0, "web1", Hard(C))], &other, 10 * M);
    assert_eq!(got, ["30 prod #1 firing: web1=C; resolved: "]);
}

#[test]
fn resolutions_are_not_held() {
    let silences = [Silence {
        starts_at: Some(secs(60)),
        ..silence_until("checkout-errors", 2 * H)
    }];
    let got = run(
        vec![
            ev(0, "web1", Hard(C)),
            ev(2 * M, "web1", Hard(W)), // held: not a change anyone hears of
            ev(30 * M, "web1", Hard(O)),
        ],
        &silences,
        3 * H,
    );
    assert_eq!(
        got,
        [
            "30 prod #1 firing: web1=C; resolved: ",
            "1830 prod #2 firing: ; resolved: web1",
        ]
    );
}

#[test]
fn flapping_alerts_are_held() {
    let got = run(
        vec![
            ev(0, "web1", Hard(C)),
            ev(0, "web2", Hard(C)),
            ev(10, "web2", Flapping(true)),
            ev(20 * M, "web2", Flapping(false)),
        ],
        &[],
        30 * M,
    );
    assert_eq!(
        got,
        [
            "30 prod #1 firing: web1=C; resolved: ",
            "1230 prod #2 firing: web1=C web2=C; resolved: ",
        ]
    );
}

#[test]
fn retry_delays() {
    let cases = [
        (0, 0),
        (1, 10),
        (2, 30),
        (3, 120),
        (4, 600),
        (5, 3600),
        (30, 3600),
    ];
    for (failed, seconds) in cases {
        assert_eq!(
            retry_delay(failed),
            Duration::from_secs(seconds),
            "{failed}"
        );
    }
}

#[test]
fn retries_on_schedule_end_after_a_day() {
    let first = t0();
    let mut last = first;
    let mut attempts = 1;
    while let Retry::At(next) = next_attempt(first, last, attempts) {
        assert!(next > last);
        last = next;
        attempts += 1;
    }

    assert_eq!(attempts, 28);
    assert_eq!(
        last - first,
        chrono::Duration::seconds(23 * H + 12 * M + 40)
    );

    // Attempts that ran late: the next would fall past 24 h, so it fails sooner.
    assert_eq!(
        next_attempt(first, secs(23 * H + 30 * M), 10),
        Retry::Failed
    );
    assert_eq!(next_attempt(first, secs(0), 1), Retry::At(secs(10)));
}

#[test]
fn a_grouper_handed_over_through_json_continues_the_same() {
    let events = || {
        vec![
            ev(0, "web1", Hard(C)),
            ev(10, "web2", Hard(W)),
            ev(100, "web2", Hard(C)),
            ev(200, "web1", Flapping(true)),
            ev(400, "web1", Flapping(false)),
            ev(700, "web2", Hard(O)),
            ev(20_000, "web1", Hard(O)),
        ]
    };
    let silences = [silence_until("web2", 150)];
    let straight = run(events(), &silences, 30_000);
    assert!(straight.len() >= 4, "{straight:#?}");
    assert_eq!(run_with(events(), &silences, 30_000, true), straight);
}
