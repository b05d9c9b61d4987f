//! Change-aware regression detection on the server. While this server holds the lease
//! `detect`, every flush interval, for each service with a `[detect]` table and each change
//! of that service still in its watch window (deploys, rollbacks, flag flips, migrations,
//! config changes in an environment), each key metric is compared:
//! - after the change against the 30 minutes before it, scaled by the seasonal ratio of the
//!   same windows one day and one week earlier (`gantry_detect::verdict`);
//! - during a rollout with a `per_host` target, hosts on the new build (each from one flush
//!   after it took traffic again) against hosts not yet on it, over the same times
//!   (`gantry_detect::canary`).
//!
//! A regression is stored as a verdict (at most one per change or rollout and metric), opens
//! an incident naming the change, and fails the rollout's `regression` gate, which halts and
//! rolls it back. The statistics are `gantry-detect`'s; this module reads the data through
//! the same source as `/render` and writes the results.

use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, TimeDelta, Utc};
use gantry_core::detect::{BadDirection, DetectConfig, KeyMetric, Verdict};
use gantry_core::incident::{NewIncident, Source};
use gantry_core::ship::{GateOutcome, Rollout};
use gantry_core::{Change, ChangeKind, ChangeQuery};
use gantry_detect::canary::{compare_hosts, HostWindow};
use gantry_detect::verdict::{compare, seasonal_ratio, Comparison, Config, Direction, Movement};
use gantry_store::{Store, VerdictRecord};
use tokio_util::sync::CancellationToken;
use ulid::Ulid;

use crate::ship::orchestrator::{Gate, GateContext};
use crate::state::AppState;

const LEASE: &str = "detect";
const LEASE_TTL: Duration = Duration::from_secs(30);
/// The window before a change its after window is compared with.
const BEFORE: TimeDelta = TimeDelta::minutes(30);
/// Seasonal baselines: the same windows this long before.
const SEASONS: [(&str, TimeDelta); 2] = [("1d", TimeDelta::days(1)), ("7d", TimeDelta::days(7))];

/// The services' `[detect]` tables.
pub async fn configs(store: &dyn Store) -> Vec<(String, DetectConfig)> {
    match store.list_detect_configs().await {
        Ok(records) => records
            .into_iter()
            .filter_map(|r| match DetectConfig::parse(&r.text, &r.service) {
                Ok(c) => Some((r.service, c)),
                Err(e) => {
                    tracing::error!(service = %r.service, error = %e, "a stored [detect] table cannot be read");
                    None
                }
            })
            .collect(),
        Err(e) => {
            tracing::warn!(error = %e, "detect: cannot read the configurations");
            Vec::new()
        }
    }
}

/// Runs until shutdown.
pub async fn run(state: AppState, shutdown: CancellationToken) {
    let every = Duration::from_secs_f64(state.config.statsd.flush_interval_secs.max(1.0));
    loop {
        tokio::select! {
            _ = shutdown.cancelled() => break,
            _ = tokio::time::sleep(every) => {}
        }
        let now = Utc::now();
        match state
            .store
            .try_acquire_lease(LEASE, &state.holder, LEASE_TTL, now)
            .await
        {
            Ok(true) => {}
            _ => continue,
        }
        for (service, config) in configs(state.store.as_ref()).await {
            if let Err(e) = watch_service(&state, &service, &config, now).await {
                tracing::warn!(service = %service, error = %e, "detect: a round failed");
            }
        }
    }
    let _ = state.store.release_lease(LEASE, &state.holder).await;
}

fn direction(d: BadDirection) -> Direction {
    match d {
        BadDirection::Drop => Direction::Drop,
        BadDirection::Rise => Direction::Rise,
        BadDirection::Either => Direction::Either,
    }
}

/// The values of `target` over `[from, until)`, all series summed slot by slot, missing
/// slots dropped, and the step.
async fn values(
    state: &AppState,
    target: &str,
    from: DateTime<Utc>,
    until: DateTime<Utc>,
) -> Result<(Vec<(i64, f64)>, i64), String> {
    let series = crate::api::graphite::evaluate_targets(
        state,
        vec![target.to_string()],
        from.timestamp(),
        until.timestamp(),
        Utc::now().timestamp(),
    )
    .await?;
    let Some(first) = series.first() else {
        return Ok((Vec::new(), 10));
    };
    let step = first.step.max(1);
    let mut sums: std::collections::BTreeMap<i64, f64> = std::collections::BTreeMap::new();
    for s in &series {
        for (i, v) in s.values.iter().enumerate() {
            if let Some(v) = v.filter(|v| v.is_finite()) {
                *sums.entry(s.start + i as i64 * s.step).or_default() += v;
            }
        }
    }
    Ok((sums.into_iter().collect(), step))
}

fn window(points: &[(i64, f64)], from: i64, until: i64) -> Vec<f64> {
    points
        .iter()
        .filter(|(t, _)| *t >= from && *t < until)
        .map(|(_, v)| *v)
        .collect()
}

/// When the change really took effect: a rollout's first host switch, else its start.
async fn effective_start(
    state: &AppState,
    change: &Change,
) -> Option<(DateTime<Utc>, Option<Rollout>)> {
    let rollout_id: Option<Ulid> = change
        .metadata
        .get("rollout")
        .and_then(|v| v.as_str())
        .and_then(|s| s.parse().ok());
    let Some(id) = rollout_id else {
        return Some((change.started_at, None));
    };
    let rollout = state.store.get_rollout(id).await.ok().flatten()?;
    let tasks = state.store.rollout_tasks(id).await.ok()?;
    let first = tasks.iter().filter_map(|t| t.switched_at).min()?;
    Some((first, Some(rollout)))
}

async fn watch_service(
    state: &AppState,
    service: &str,
    config: &DetectConfig,
    now: DateTime<Utc>,
) -> Result<(), String> {
    let watch = TimeDelta::seconds(config.watch_secs as i64);
    let query = ChangeQuery {
        service: Some(service.to_string()),
        since: Some(now - watch - TimeDelta::days(1)),
        limit: 200,
        ..ChangeQuery::default()
    };
    let changes = state
        .store
        .list_changes(&query)
        .await
        .map_err(|e| e.to_string())?;
    for change in changes {
        let Some(environment) = change.environment.clone() else {
            continue;
        };
        // A rollback is a return to what ran before, usually from a regression: judging it
        // against the bad period would call the recovery a regression.
        if matches!(change.kind, ChangeKind::Note | ChangeKind::Rollback) {
            continue;
        }
        let ended = change.finished_at.unwrap_or(now);
        if now - ended > watch {
            continue;
        }
        let Some((start, rollout)) = effective_start(state, &change).await else {
            continue;
        };
        let already: Vec<String> = state
            .store
            .regressions_of(rollout.as_ref().map(|r| r.id), Some(change.id))
            .await
            .map_err(|e| e.to_string())?
            .into_iter()
            .map(|v| v.metric)
            .collect();
        for metric in &config.metrics {
            if already.contains(&metric.name) {
                continue;
            }
            let found = match compare_change(state, metric, start, now).await? {
                Some(f) if f.comparison.is_regression => Some(f),
                _ => match (&rollout, &metric.per_host) {
                    (Some(r), Some(per_host)) if !r.state.is_final() => {
                        compare_rollout(state, metric, per_host, r, now)
                            .await?
                            .filter(|c| c.is_regression)
                            .map(|comparison| Found {
                                how: "hosts",
                                start,
                                comparison,
                                expected: 1.0,
                                baselines: Vec::new(),
                            })
                    }
                    _ => None,
                },
            };
            if let Some(found) = found {
                record(
                    state,
                    service,
                    &environment,
                    metric,
                    &change,
                    rollout.as_ref(),
                    &found,
                    now,
                )
                .await;
            }
        }
    }
    Ok(())
}

fn config_of(metric: &KeyMetric) -> Config {
    Config {
        min_shift: metric.min_shift,
        ..Config::default()
    }
}

/// After the change against before it, seasonally expected.
async fn compare_change(
    state: &AppState,
    metric: &KeyMetric,
    start: DateTime<Utc>,
    now: DateTime<Utc>,
) -> Result<Option<Found>, String> {
    let (points, step) = values(state, &metric.target, start - BEFORE, now).await?;
    let (s, n) = (start.timestamp(), now.timestamp());
    let before = window(&points, s - BEFORE.num_seconds(), s);
    // The slot still filling is left out.
    let after = window(&points, s, n - step);
    if after.is_empty() {
        return Ok(None);
    }
    let mut seasonal_before = Vec::new();
    let mut seasonal_after = Vec::new();
    for (_, back) in SEASONS {
        let (p, _) = values(state, &metric.target, start - BEFORE - back, now - back).await?;
        seasonal_before.push(window(
            &p,
            s - BEFORE.num_seconds() - back.num_seconds(),
            s - back.num_seconds(),
        ));
        seasonal_after.push(window(
            &p,
            s - back.num_seconds(),
            n - step - back.num_seconds(),
        ));
    }
    let b: Vec<&[f64]> = seasonal_before.iter().map(Vec::as_slice).collect();
    let a: Vec<&[f64]> = seasonal_after.iter().map(Vec::as_slice).collect();
    let seasonal = seasonal_ratio(&b, &a);
    let expected = seasonal.as_ref().map_or(1.0, |r| r.ratio);
    let baselines = seasonal
        .map(|r| {
            r.used
                .iter()
                .filter_map(|&i| SEASONS.get(i))
                .map(|(n, _)| n.to_string())
                .collect()
        })
        .unwrap_or_default();
    let look = after.len() as u32;
    Ok(Some(Found {
        how: "change",
        start,
        comparison: compare(
            &before,
            &after,
            expected,
            direction(metric.direction),
            &config_of(metric),
            look,
        ),
        expected,
        baselines,
    }))
}

/// A comparison and what it was expected against.
struct Found {
    how: &'static str,
    /// When the change took effect (the first host's switch for a rollout).
    start: DateTime<Utc>,
    comparison: Comparison,
    expected: f64,
    baselines: Vec<String>,
}

/// During a rollout: hosts on the new build (each from one flush after it served again)
/// against hosts not yet on it, over the same times.
async fn compare_rollout(
    state: &AppState,
    metric: &KeyMetric,
    per_host: &str,
    rollout: &Rollout,
    now: DateTime<Utc>,
) -> Result<Option<Comparison>, String> {
    let tasks = state
        .store
        .rollout_tasks(rollout.id)
        .await
        .map_err(|e| e.to_string())?;
    let flush = TimeDelta::milliseconds((state.config.statsd.flush_interval_secs * 1000.0) as i64);
    let mut splits: Vec<(String, Option<DateTime<Utc>>)> = Vec::new();
    for t in tasks
        .iter()
        .filter(|t| t.purpose == gantry_core::ship::TaskPurpose::Deploy)
    {
        splits.push((t.host.clone(), t.undrained_at.map(|u| u + flush)));
    }
    let mut new_splits: Vec<DateTime<Utc>> = splits.iter().filter_map(|(_, s)| *s).collect();
    new_splits.sort();
    // Hosts not yet on the new build are split where the new ones were, in the middle.
    let Some(&median) = new_splits.get(new_splits.len() / 2) else {
        return Ok(None);
    };
    let from = rollout.created_at - BEFORE;
    let mut new_hosts = Vec::new();
    let mut old_hosts = Vec::new();
    for (host, split) in &splits {
        let target = per_host.replace("$host", host);
        let (points, step) = values(state, &target, from, now).await?;
        let at = split.unwrap_or(median).timestamp();
        let w = HostWindow {
            before: window(&points, from.timestamp(), at),
            after: window(&points, at, now.timestamp() - step),
        };
        if split.is_some() {
            new_hosts.push(w);
        } else {
            old_hosts.push(w);
        }
    }
    if new_hosts.is_empty() || old_hosts.is_empty() {
        return Ok(None);
    }
    let look = new_hosts.iter().map(|h| h.after.len()).max().unwrap_or(0) as u32;
    Ok(Some(compare_hosts(
        &new_hosts,
        &old_hosts,
        direction(metric.direction),
        &config_of(metric),
        look,
    )))
}

#[allow(clippy::too_many_arguments)]
async fn record(
    state: &AppState,
    service: &str,
    environment: &str,
    metric: &KeyMetric,
    change: &Change,
    rollout: Option<&Rollout>,
    found: &Found,
    now: DateTime<Utc>,
) {
    let (how, c) = (found.how, &found.comparison);
    let movement = match c.movement {
        Movement::Drop => "drop",
        Movement::Rise => "rise",
        Movement::Flat => "flat",
    };
    let summary = format!(
        "{} {} {:+.0}% (95% {:+.0}%..{:+.0}%, p={:.1e}) after {} {}{}",
        metric.name,
        movement,
        c.effect * 100.0,
        c.effect_lower * 100.0,
        c.effect_upper * 100.0,
        c.p_value,
        change.kind.as_str(),
        change.summary,
        if how == "hosts" {
            " (new hosts against old)"
        } else {
            ""
        }
    );
    let verdict = Verdict {
        id: Ulid::new(),
        service: service.to_string(),
        environment: environment.to_string(),
        metric: metric.name.clone(),
        target: metric.target.clone(),
        comparison: how.to_string(),
        change_id: Some(change.id),
        rollout_id: rollout.map(|r| r.id),
        at: now,
        regression: true,
        movement: movement.to_string(),
        effect: c.effect,
        effect_lower: c.effect_lower,
        effect_upper: c.effect_upper,
        p_value: c.p_value,
        alpha: c.alpha,
        look: c.look,
        before_n: c.before_len,
        after_n: c.after_len,
        expected_ratio: found.expected,
        baselines: found.baselines.clone(),
        summary: summary.chars().take(500).collect(),
    };
    let record = VerdictRecord {
        id: verdict.id,
        service: verdict.service.clone(),
        environment: verdict.environment.clone(),
        metric: verdict.metric.clone(),
        change_id: verdict.change_id,
        rollout_id: verdict.rollout_id,
        at: now,
        regression: true,
        doc: serde_json::to_string(&verdict).unwrap_or_default(),
    };
    if let Err(e) = state.store.insert_verdict(&record).await {
        // Another look already recorded it.
        tracing::debug!(error = %e, "detect: verdict not stored");
        return;
    }
    tracing::warn!(service, environment, metric = %metric.name, verdict = %verdict.id, "regression detected");
    // Users were hurt from when the change took effect (a rollout's first host switch).
    let impact = found.start;
    let opened = crate::incidents::open(
        state,
        "gantry",
        NewIncident {
            title: verdict.summary.chars().take(200).collect(),
            service: service.to_string(),
            environment: environment.to_string(),
            severity: None,
            impact_started_at: Some(impact.min(now)),
        },
        Source::Verdict {
            verdict: verdict.id,
        },
    )
    .await;
    if let Err(e) = opened {
        tracing::warn!(error = %e.message, verdict = %verdict.id, "detect: cannot open the incident");
    }
}

/// The rollout gate of regression detection: fails when a regression verdict names the
/// rollout or its change; waits, at the end of a bake, while the first host to serve the new
/// build has served for less than three flushes (too little to compare); passes otherwise.
pub struct RegressionGate {
    pub store: Arc<dyn Store>,
    pub flush: Duration,
}

#[async_trait::async_trait]
impl Gate for RegressionGate {
    fn name(&self) -> &str {
        "regression"
    }

    async fn check(&self, cx: &GateContext<'_>) -> GateOutcome {
        let r = cx.rollout;
        // A rollback returns to a known build; failing it would send hosts back to the
        // build it leaves.
        if r.kind == gantry_core::ship::RolloutKind::Rollback {
            return GateOutcome::Pass;
        }
        match self
            .store
            .regressions_of(Some(r.id), Some(r.change_id))
            .await
        {
            Ok(found) => {
                if let Some(v) = found.first() {
                    let summary = serde_json::from_str::<Verdict>(&v.doc)
                        .map(|d| d.summary)
                        .unwrap_or_default();
                    return GateOutcome::Fail {
                        reason: format!("{} {summary}", v.id),
                    };
                }
            }
            Err(e) => {
                return GateOutcome::Wait {
                    reason: format!("cannot read verdicts: {e}"),
                }
            }
        }
        let baked = r.bake_until.is_some_and(|t| t <= cx.now);
        if !baked {
            return GateOutcome::Pass;
        }
        let watched = configs(self.store.as_ref())
            .await
            .iter()
            .any(|(s, _)| *s == r.service);
        if watched {
            let first = cx.tasks.iter().filter_map(|t| t.undrained_at).min();
            let enough = TimeDelta::from_std(self.flush * 3).unwrap_or(TimeDelta::seconds(30));
            if first.is_none_or(|f| cx.now - f < enough) {
                return GateOutcome::Wait {
                    reason: "too little data yet since the first host served the new build".into(),
                };
            }
        }
        GateOutcome::Pass
    }
}
