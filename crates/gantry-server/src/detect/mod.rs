//! Change-aware regression detection on the server. While this server holds the lease
//! `detect`, every flush interval, for each service with a `[detect]` table and each change
//! of that service still in its watch window (deploys, rollbacks, flag flips, migrations,
//! config changes in an environment), each key metric is compared:
//! - after the change against the 30 minutes before it, scaled by the seasonal ratio of the
//!   same windows one day and one week earlier (`gantry_detect::verdict`);
//! - during a rollout with a `per_host` target, hosts on the new build (each from one flush
//!   after it took traffic again) against hosts not yet on it, over the same times: host by
//!   host (`gantry_detect::canary`) when there are hosts enough for that test to reach the
//!   look's alpha, otherwise slot by slot (each new host's values over the old hosts' at the
//!   same times, after against before), so that one canary host can be judged.
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
use gantry_detect::verdict::{
    compare, look_alpha, seasonal_ratio, Comparison, Config, Direction, Movement,
};
use gantry_store::{Store, VerdictRecord};
use tokio_util::sync::CancellationToken;
use ulid::Ulid;

pub mod watch;

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
            // A change in its watch window is judged by the comparisons above, which name
            // it; the always-on watch covers the time no change is watched.
            match watch_service(&state, &service, &config, now).await {
                Ok(false) => {
                    if let Err(e) = watch::watch_service(&state, &service, &config, now).await {
                        tracing::warn!(service = %service, error = %e, "detect: a watch round failed");
                    }
                }
                Ok(true) => {}
                Err(e) => tracing::warn!(service = %service, error = %e, "detect: a round failed"),
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

/// Judges every change of the service still in its watch window; whether there was one.
async fn watch_service(
    state: &AppState,
    service: &str,
    config: &DetectConfig,
    now: DateTime<Utc>,
) -> Result<bool, String> {
    let mut watched = false;
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
        watched = true;
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
                    Some(&change),
                    rollout.as_ref(),
                    &found,
                    now,
                )
                .await;
            }
        }
    }
    Ok(watched)
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
/// against hosts not yet on it, over the same times. Host by host (each host's after/before
/// ratio, [`compare_hosts`]) when the groups are large enough for that test to reach this
/// look's alpha; otherwise (one canary against 19 old hosts can reach p = 1/20 at best, far
/// above any look's alpha) slot by slot ([`compare_slots`]).
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
        let series = HostSeries {
            until: now.timestamp() - step,
            at,
            points,
        };
        if split.is_some() {
            new_hosts.push(series);
        } else {
            old_hosts.push(series);
        }
    }
    if new_hosts.is_empty() || old_hosts.is_empty() {
        return Ok(None);
    }
    let config = config_of(metric);
    let windows = |hosts: &[HostSeries]| -> Vec<HostWindow> {
        hosts
            .iter()
            .map(|h| HostWindow {
                before: window(&h.points, from.timestamp(), h.at),
                after: window(&h.points, h.at, h.until),
            })
            .collect()
    };
    let (new_windows, old_windows) = (windows(&new_hosts), windows(&old_hosts));
    let look = new_windows.iter().map(|h| h.after.len()).max().unwrap_or(0) as u32;
    let usable = |hosts: &[HostWindow]| {
        hosts
            .iter()
            .filter(|h| h.before.len() >= config.min_points && h.after.len() >= config.min_points)
            .count()
    };
    let direction = direction(metric.direction);
    if hosts_can_decide(
        usable(&new_windows),
        usable(&old_windows),
        direction,
        &config,
        look,
    ) {
        return Ok(Some(compare_hosts(
            &new_windows,
            &old_windows,
            direction,
            &config,
            look,
        )));
    }
    Ok(compare_slots(
        &new_hosts,
        &old_hosts,
        from.timestamp(),
        direction,
        &config,
        look,
    ))
}

/// One host's values during a rollout (slot time, value), where its after window starts and
/// where the values end (the slot still filling is left out).
struct HostSeries {
    points: Vec<(i64, f64)>,
    at: i64,
    until: i64,
}

/// Whether the host-by-host test, with `new` and `old` usable hosts, can reach this look's
/// alpha at all: its smallest one-sided p-value is `1 / C(new + old, new)`.
fn hosts_can_decide(
    new: usize,
    old: usize,
    direction: Direction,
    config: &Config,
    look: u32,
) -> bool {
    if new == 0 || old == 0 {
        return false;
    }
    let mut arrangements = 1.0_f64;
    for i in 0..new.min(old) {
        arrangements = arrangements * (new + old - i) as f64 / (i + 1) as f64;
    }
    let alpha = match direction {
        Direction::Either => look_alpha(config.alpha, look) / 2.0,
        Direction::Drop | Direction::Rise => look_alpha(config.alpha, look),
    };
    1.0 / arrangements <= alpha
}

/// The canary test for few hosts, slot by slot: the old hosts' reference at each time is
/// the mean of their values there, each divided by that host's own mean level (so a missing
/// host does not move it); each new host's value at each time is divided by the reference
/// (what hit every host at once cancels out) and by the host's mean of that ratio before its
/// split (so its own level cancels); then every new host's values after its split are
/// compared with those before by the rules of [`compare`] at this look, with nothing to
/// scale (`expected_ratio` 1). `None` when the old hosts have no level.
fn compare_slots(
    new_hosts: &[HostSeries],
    old_hosts: &[HostSeries],
    from: i64,
    direction: Direction,
    config: &Config,
    look: u32,
) -> Option<Comparison> {
    let mut reference: std::collections::BTreeMap<i64, (f64, usize)> =
        std::collections::BTreeMap::new();
    for host in old_hosts {
        let kept: Vec<&(i64, f64)> = host
            .points
            .iter()
            .filter(|(t, _)| *t >= from && *t < host.until)
            .collect();
        if kept.is_empty() {
            continue;
        }
        let level = kept.iter().map(|(_, v)| v).sum::<f64>() / kept.len() as f64;
        if level.is_nan() || level <= 0.0 {
            continue;
        }
        for (t, v) in kept {
            let slot = reference.entry(*t).or_default();
            slot.0 += v / level;
            slot.1 += 1;
        }
    }
    if reference.is_empty() {
        return None;
    }
    let mut before = Vec::new();
    let mut after = Vec::new();
    for host in new_hosts {
        let relative: Vec<(i64, f64)> = host
            .points
            .iter()
            .filter(|(t, _)| *t >= from && *t < host.until)
            .filter_map(|(t, v)| {
                let (sum, n) = reference.get(t)?;
                let r = sum / *n as f64;
                (r > 0.0).then(|| (*t, v / r))
            })
            .collect();
        let host_before: Vec<f64> = relative
            .iter()
            .filter(|(t, _)| *t < host.at)
            .map(|(_, v)| *v)
            .collect();
        if host_before.len() < config.min_points {
            continue;
        }
        let level = host_before.iter().sum::<f64>() / host_before.len() as f64;
        if level.is_nan() || level <= 0.0 {
            continue;
        }
        before.extend(host_before.iter().map(|v| v / level));
        after.extend(
            relative
                .iter()
                .filter(|(t, _)| *t >= host.at)
                .map(|(_, v)| v / level),
        );
    }
    Some(compare(&before, &after, 1.0, direction, config, look))
}

#[allow(clippy::too_many_arguments)]
async fn record(
    state: &AppState,
    service: &str,
    environment: &str,
    metric: &KeyMetric,
    change: Option<&Change>,
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
    // A rollout's change already says what it is ("deploy shop 1.0 → 2.0 to prod").
    let what = match change {
        Some(change) if change.summary.starts_with(change.kind.as_str()) => {
            format!("after {}", change.summary)
        }
        Some(change) => format!("after {} {}", change.kind.as_str(), change.summary),
        None => "with no change in its window".to_string(),
    };
    let summary = format!(
        "{} {} {:+.0}% (95% {:+.0}%..{:+.0}%, p={:.1e}) {}{}",
        metric.name,
        movement,
        c.effect * 100.0,
        c.effect_lower * 100.0,
        c.effect_upper * 100.0,
        c.p_value,
        what,
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
        change_id: change.map(|c| c.id),
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

/// How many flushes after the first host served the new build the detector needs before it
/// can have judged it, with the key metric stored at the flush interval: its after window
/// starts one flush after the host served, the first slot may be partly before that, the
/// window needs `min_points` (3) complete slots and leaves out the one still filling, the
/// points reach the store's reads at its next write flush, and the detector looks once a
/// flush: 1 + 1 + 3 + 1 + 1 + 1.
pub const JUDGE_FLUSHES: u32 = 8;

/// The rollout gate of regression detection: fails when a regression verdict names the
/// rollout or its change; waits, at the end of a bake, while the first host to serve the new
/// build has served for less than [`JUDGE_FLUSHES`] flushes (too little for the detector to
/// have judged it); passes otherwise.
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
            let enough =
                TimeDelta::from_std(self.flush * JUDGE_FLUSHES).unwrap_or(TimeDelta::seconds(80));
            if first.is_none_or(|f| cx.now - f < enough) {
                return GateOutcome::Wait {
                    reason: "too little data yet since the first host served the new build".into(),
                };
            }
        }
        GateOutcome::Pass
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use gantry_detect::verdict::Outcome;

    #[test]
    fn the_host_test_is_used_only_where_it_can_decide() {
        let config = Config::default();
        let drop = Direction::Drop;
        // One canary against 19 old hosts: p = 1/20 at best.
        assert!(!hosts_can_decide(1, 19, drop, &config, 1));
        // Five against fifteen: 1/15504, below the first looks' alpha, not the 20th's.
        assert!(hosts_can_decide(5, 15, drop, &config, 1));
        assert!(!hosts_can_decide(5, 15, drop, &config, 20));
        assert!(!hosts_can_decide(0, 15, drop, &config, 1));
        assert!(!hosts_can_decide(5, 0, drop, &config, 1));
        // Either way halves the alpha.
        assert!(hosts_can_decide(5, 15, drop, &config, 9));
        assert!(!hosts_can_decide(5, 15, Direction::Either, &config, 9));
    }

    /// A host at `level` per slot from t = 0 to 400 (10 s slots), split at 300: after the
    /// split every host follows `evening`, and the canary `change` on top; a little noise.
    fn host(level: f64, change: f64, evening: f64, seed: u64) -> HostSeries {
        let mut x = seed;
        let points = (0..40)
            .map(|i| {
                x = x
                    .wrapping_mul(6364136223846793005)
                    .wrapping_add(1442695040888963407);
                let noise = 0.97 + 0.06 * ((x >> 11) as f64 / (1u64 << 53) as f64);
                let t = i * 10;
                let factor = if t >= 300 { change * evening } else { 1.0 };
                (t, level * factor * noise)
            })
            .collect();
        HostSeries {
            points,
            at: 300,
            until: 400,
        }
    }

    #[test]
    fn one_canary_is_judged_slot_by_slot() {
        let config = Config::default();
        let old: Vec<HostSeries> = (0..19)
            .map(|i| host(10f64.powi(i % 3), 1.0, 0.6, 100 + i as u64))
            .collect();
        let look = 10;
        // Half of what it served, while the old hosts fell to 60 % with the evening.
        let halved = compare_slots(
            &[host(50.0, 0.5, 0.6, 7)],
            &old,
            0,
            Direction::Drop,
            &config,
            look,
        )
        .unwrap();
        assert_eq!(halved.outcome, Outcome::Regression, "{halved:?}");
        assert!((halved.effect + 0.5).abs() < 0.05, "{halved:?}");
        assert_eq!((halved.before_len, halved.after_len), (30, 10));
        // Following the evening like every other host: nothing.
        let same = compare_slots(
            &[host(50.0, 1.0, 0.6, 7)],
            &old,
            0,
            Direction::Drop,
            &config,
            look,
        )
        .unwrap();
        assert_ne!(same.outcome, Outcome::Regression, "{same:?}");
        // 10 % below: real, but under the minimum shift.
        let little = compare_slots(
            &[host(50.0, 0.9, 0.6, 7)],
            &old,
            0,
            Direction::Drop,
            &config,
            look,
        )
        .unwrap();
        assert_ne!(little.outcome, Outcome::Regression, "{little:?}");
        // Two canaries at very different levels, both halved.
        let two = compare_slots(
            &[host(5.0, 0.5, 0.6, 8), host(500.0, 0.5, 0.6, 9)],
            &old,
            0,
            Direction::Drop,
            &config,
            look,
        )
        .unwrap();
        assert_eq!(two.outcome, Outcome::Regression, "{two:?}");
        assert_eq!((two.before_len, two.after_len), (60, 20));
        // No old host with a level: nothing to compare with.
        assert!(compare_slots(
            &[host(50.0, 0.5, 0.6, 7)],
            &[host(0.0, 1.0, 1.0, 1)],
            0,
            Direction::Drop,
            &config,
            look,
        )
        .is_none());
    }
}
