//! The monitor evaluator: monitors are split into [`SHARDS`] shards by service, each
//! evaluated by the server holding its lease `monitors/<shard>`: every monitor at its
//! interval (thresholds through the same render source as `/render`, heartbeats from their
//! pings, HTTP checks from the server, host liveness from the agents' heartbeats, in the
//! shard of the empty service), its per-series state advanced by `gantry-monitors`'
//! soft/hard machine, the state and transitions stored, and the shard's alert grouper
//! (`crate::notify`) stored with them, so another server continues where this one stopped.
//! Sharding by service keeps every alert group (service × environment) in one shard, so
//! grouping is exactly as with one evaluator. A server takes free shards in its own order
//! (starting from a place its name picks), so servers starting together share them; shards
//! are not moved between live servers.

use std::collections::HashMap;
use std::time::Duration;

use chrono::{DateTime, Utc};
use gantry_core::ship::HostStatus;
use gantry_monitors::{
    evaluate_heartbeat, evaluate_http, evaluate_threshold, state::missing_data, AlertSubject,
    Check, Evaluation, FlapChange, FlapThresholds, HeartbeatLog, HttpResult, Monitor, MonitorState,
    Ping, PingKind, State, Window,
};
use gantry_store::{MonitorStateRecord, NewTransition};
use tokio_util::sync::CancellationToken;

use crate::notify::{AlertEvent, Grouping};
use crate::state::AppState;

/// How many shards monitors are split into (by service).
pub const SHARDS: u32 = 8;
const LEASE_TTL: Duration = Duration::from_secs(15);
const TICK: Duration = Duration::from_secs(1);
/// Renew the lease within a round once this much time has passed since the last renewal.
const RENEW_WITHIN: Duration = Duration::from_secs(5);
/// How often heartbeats and hosts are looked at.
const HEARTBEAT_EVERY: chrono::TimeDelta = chrono::TimeDelta::seconds(5);
/// The series name of a monitor with one series (heartbeat, HTTP, host).
pub const SINGLE: &str = "";
/// Host liveness monitors are named `host:<name>`.
pub const HOST_PREFIX: &str = "host:";
/// Most bytes of an HTTP check's answer read.
const HTTP_READ_LIMIT: usize = 64 * 1024;

/// Runs until shutdown.
pub async fn run(state: AppState, shutdown: CancellationToken) {
    let http = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build();
    let http = match http {
        Ok(c) => c,
        Err(e) => {
            tracing::error!(error = %e, "monitors: cannot build the HTTP client; HTTP checks are off");
            reqwest::Client::new()
        }
    };
    // Per shard this server holds: when each monitor is next due, and the alert grouper.
    let mut held: HashMap<u32, (HashMap<String, DateTime<Utc>>, Grouping)> = HashMap::new();
    let first = shard_of(&state.holder);
    loop {
        tokio::select! {
            _ = shutdown.cancelled() => break,
            _ = tokio::time::sleep(TICK) => {}
        }
        let mut holding = Vec::new();
        for shard in (0..SHARDS).map(|i| (first + i) % SHARDS) {
            let lease = lease_name(shard);
            match state
                .store
                .try_acquire_lease(&lease, &state.holder, LEASE_TTL, Utc::now())
                .await
            {
                Ok(true) => holding.push(shard),
                Ok(false) => {
                    held.remove(&shard);
                }
                Err(e) => {
                    tracing::warn!(error = %e, lease = %lease, "monitors: cannot take the lease");
                }
            }
        }
        if holding.is_empty() {
            continue;
        }
        // One read of the monitors and of every stored state (monitors' and hosts') for
        // all the shards this server holds.
        let loaded = async {
            let monitors = super::all(state.store.as_ref()).await?;
            let stored = super::stored_states(state.store.as_ref()).await?;
            Ok::<_, crate::error::ApiError>((monitors, stored))
        };
        let (monitors, stored) = match loaded.await {
            Ok(l) => l,
            Err(e) => {
                tracing::warn!(error = %e.message, "monitors: cannot read monitors; retrying");
                continue;
            }
        };
        for shard in holding {
            let (due, grouping) = held.entry(shard).or_default();
            let round = Round {
                shard,
                monitors: &monitors,
                stored: &stored,
            };
            if let Err(e) = tick(&state, &http, &round, due, grouping, Utc::now()).await {
                tracing::warn!(error = %e.message, shard, "monitors: a round failed; retrying");
            }
        }
    }
    for shard in held.keys() {
        let _ = state
            .store
            .release_lease(&lease_name(*shard), &state.holder)
            .await;
    }
}

/// The lease of a shard.
pub fn lease_name(shard: u32) -> String {
    format!("monitors/{shard}")
}

/// The shard of a service's monitors (host liveness: the empty service). FNV-1a, so every
/// server agrees whatever its build.
pub fn shard_of(service: &str) -> u32 {
    let mut hash: u32 = 0x811c_9dc5;
    for b in service.bytes() {
        hash ^= u32::from(b);
        hash = hash.wrapping_mul(0x0100_0193);
    }
    hash % SHARDS
}

/// What one round of a shard works from: every monitor and every stored state, read once
/// for all the shards a server holds.
pub struct Round<'a> {
    pub shard: u32,
    pub monitors: &'a [Monitor],
    pub stored: &'a HashMap<String, MonitorState>,
}

/// One pass over a shard: every monitor of it that is due.
pub async fn tick(
    state: &AppState,
    http: &reqwest::Client,
    round: &Round<'_>,
    due: &mut HashMap<String, DateTime<Utc>>,
    grouping: &mut Grouping,
    now: DateTime<Utc>,
) -> Result<(), crate::error::ApiError> {
    let shard = round.shard;
    let lease = lease_name(shard);
    let monitors = round
        .monitors
        .iter()
        .filter(|m| shard_of(&m.service) == shard);
    let stored = round.stored;
    let mut records = Vec::new();
    let mut transitions = Vec::new();
    let mut alerts = Vec::new();
    // What the grouper hears about this round, once it is stored.
    let mut events = Vec::new();
    let flap = FlapThresholds::default();
    let mut renewed = std::time::Instant::now();
    for m in monitors {
        // A round may be long (HTTP checks wait up to their timeouts): keep the lease, and
        // stop without writing if it was lost, so two servers never write one state.
        if renewed.elapsed() > RENEW_WITHIN {
            if !state
                .store
                .try_acquire_lease(&lease, &state.holder, LEASE_TTL, Utc::now())
                .await?
            {
                return Ok(());
            }
            renewed = std::time::Instant::now();
        }
        let every = m
            .interval()
            .and_then(|d| chrono::TimeDelta::from_std(d).ok())
            .unwrap_or(HEARTBEAT_EVERY);
        if due.get(&m.name).is_some_and(|t| *t > now) {
            continue;
        }
        due.insert(m.name.clone(), now + every);
        let (round, missing) = match evaluate(state, http, m, now).await {
            Ok(r) => r,
            Err(e) => {
                let unknown = Evaluation::new(State::Unknown, None, e);
                (Vec::new(), unknown)
            }
        };
        let mut ms = stored.get(&m.name).cloned().unwrap_or_default();
        let changed = ms.observe(&round, &missing, m.hard_after(), &flap, now);
        for (series, observation) in changed {
            let subject = AlertSubject::new(m, &series);
            if let Some(change) = observation.flap {
                let on = matches!(change, FlapChange::Started { .. });
                events.push(AlertEvent::Flapping(subject.clone(), on));
            }
            if let Some(t) = observation.transition {
                events.push(AlertEvent::Transition(subject, t.clone()));
                if t.hard
                    && t.to == State::Critical
                    && !ms.get(&series).is_some_and(|s| s.is_flapping())
                {
                    let what = match (&series, t.value) {
                        (s, Some(v)) if !s.is_empty() => format!("{s} = {v}"),
                        (s, None) if !s.is_empty() => s.clone(),
                        (_, Some(v)) => format!("{v}"),
                        _ => "no value".to_string(),
                    };
                    alerts.push((
                        m.name.clone(),
                        m.service.clone(),
                        m.environment.clone(),
                        what,
                    ));
                }
                transitions.push(transition(&m.name, series, &t));
            }
        }
        records.push(record(&m.name, &ms, now));
    }
    // Hosts: every enrolled host, from its agent's heartbeats; new and maintenance hosts
    // do not alert.
    if shard == shard_of("") && due.get(HOST_PREFIX).is_none_or(|t| *t <= now) {
        due.insert(HOST_PREFIX.to_string(), now + HEARTBEAT_EVERY);
        let lost_after = chrono::Duration::seconds(state.config.ship.host_lost_after_secs as i64);
        for h in state.store.list_hosts(None).await? {
            let name = format!("{HOST_PREFIX}{}", h.name);
            let status = gantry_core::ship::Host::status_at(h.last_seen_at, now, lost_after);
            let evaluation = if h.maintenance || h.last_seen_at.is_none() {
                Evaluation::new(State::Ok, None, "new or in maintenance")
            } else if status == HostStatus::Online {
                Evaluation::new(State::Ok, None, "heartbeats arriving")
            } else {
                Evaluation::new(
                    State::Critical,
                    None,
                    format!(
                        "no heartbeat from {} for {} s",
                        h.name, state.config.ship.host_lost_after_secs
                    ),
                )
            };
            let mut ms = stored.get(&name).cloned().unwrap_or_default();
            let round = vec![(SINGLE.to_string(), evaluation.clone())];
            // Host liveness belongs to no service: it goes to receivers that do not filter
            // by service.
            let subject = AlertSubject {
                monitor: name.clone(),
                series: SINGLE.to_string(),
                service: String::new(),
                environment: h.environment.clone(),
                labels: Default::default(),
            };
            for (_, observation) in ms.observe(&round, &evaluation, 1, &flap, now) {
                if let Some(change) = observation.flap {
                    let on = matches!(change, FlapChange::Started { .. });
                    events.push(AlertEvent::Flapping(subject.clone(), on));
                }
                if let Some(t) = observation.transition {
                    events.push(AlertEvent::Transition(subject.clone(), t.clone()));
                    transitions.push(transition(&name, SINGLE.to_string(), &t));
                }
            }
            records.push(record(&name, &ms, now));
        }
    }
    if !records.is_empty() || !transitions.is_empty() {
        if !state
            .store
            .try_acquire_lease(&lease, &state.holder, LEASE_TTL, Utc::now())
            .await?
        {
            return Ok(());
        }
        state
            .store
            .save_monitor_round(&records, &transitions)
            .await?;
    }
    // Notifications once the round is stored; the grouper is stored with what it queues.
    if let Err(e) = grouping.round(state, shard, events, now).await {
        tracing::warn!(error = %e.message, "monitors: cannot queue notifications; the next round tries again");
    }
    // Alerts once their round is stored, so a failed write does not repeat them.
    for (monitor, service, environment, what) in alerts {
        if let Err(e) =
            crate::incidents::alert(state, &monitor, &service, &environment, &what).await
        {
            tracing::warn!(monitor = %monitor, error = %e.message, "monitors: cannot open or join an incident");
        }
    }
    Ok(())
}

fn transition(monitor: &str, series: String, t: &gantry_monitors::Transition) -> NewTransition {
    NewTransition {
        monitor: monitor.to_string(),
        series,
        from: t.from.as_str().to_string(),
        to: t.to.as_str().to_string(),
        hard: t.hard,
        value: t.value,
        at: t.at,
    }
}

fn record(monitor: &str, state: &MonitorState, now: DateTime<Utc>) -> MonitorStateRecord {
    MonitorStateRecord {
        monitor: monitor.to_string(),
        series: SINGLE.to_string(),
        doc: serde_json::to_string(state).unwrap_or_default(),
        updated_at: now,
    }
}

/// One monitor's evaluations this round (by series) and what a missing series gets.
async fn evaluate(
    state: &AppState,
    http: &reqwest::Client,
    m: &Monitor,
    now: DateTime<Utc>,
) -> Result<(Vec<(String, Evaluation)>, Evaluation), String> {
    match &m.check {
        Check::Threshold(check) => {
            let window = check.window.as_secs() as i64;
            let until = now.timestamp();
            let series = crate::api::graphite::evaluate_targets(
                state,
                vec![check.target.clone()],
                until - window,
                until,
                until,
            )
            .await
            .map_err(|e| format!("no data on {}: {e}", state.holder))?;
            let round = series
                .iter()
                .map(|s| {
                    let window = Window {
                        values: &s.values,
                        // The newest slot is still being filled.
                        last_is_partial: true,
                    };
                    (s.name.clone(), evaluate_threshold(check, window))
                })
                .collect();
            Ok((round, missing_data(check)))
        }
        Check::Heartbeat(check) => {
            let pings = state
                .store
                .recent_pings(&m.name, 200)
                .await
                .map_err(|e| e.to_string())?;
            let mut log = HeartbeatLog::default();
            for p in pings.iter().rev() {
                let kind = PingKind::from_stored(&p.kind, p.exit_code);
                log.record(&Ping { kind, at: p.at });
            }
            let e = evaluate_heartbeat(check, &log, now);
            Ok((vec![(SINGLE.to_string(), e.clone())], e))
        }
        Check::Http(check) => {
            let started = std::time::Instant::now();
            let method = match check.method {
                gantry_monitors::HttpMethod::Get => reqwest::Method::GET,
                gantry_monitors::HttpMethod::Head => reqwest::Method::HEAD,
                gantry_monitors::HttpMethod::Post => reqwest::Method::POST,
            };
            let answer = http
                .request(method, &check.url)
                .timeout(check.timeout)
                .send()
                .await;
            let result = match answer {
                Err(e) => HttpResult {
                    status: None,
                    body_matched: false,
                    elapsed: started.elapsed(),
                    error: Some(if e.is_timeout() {
                        "timed out".to_string()
                    } else {
                        e.to_string()
                    }),
                },
                Ok(mut response) => {
                    let status = response.status().as_u16();
                    let mut body = Vec::new();
                    while let Ok(Some(chunk)) = response.chunk().await {
                        body.extend_from_slice(&chunk);
                        if body.len() >= HTTP_READ_LIMIT {
                            body.truncate(HTTP_READ_LIMIT);
                            break;
                        }
                    }
                    HttpResult {
                        status: Some(status),
                        body_matched: check.body_ok(&String::from_utf8_lossy(&body)),
                        elapsed: started.elapsed(),
                        error: None,
                    }
                }
            };
            let e = evaluate_http(check, &result);
            Ok((vec![(SINGLE.to_string(), e.clone())], e))
        }
    }
}
