//! The always-on watch on the server: at every detector round, each key metric of each
//! service is judged against its own recent past moved along its seasons
//! (`gantry_detect::watch`), change or no change, so a shift nobody announced (a failing
//! dependency, a change made outside Gantry) is found too. Its verdicts name no change
//! (`comparison = "watch"`); the incident they open ranks its suspects from the change log
//! as any incident does. A watch verdict is attributed to the service's last environment
//! (its production): key metric targets are the service's, whatever its environments.
//!
//! The watch runs while no change of the service is in its watch window: a change is judged
//! by the comparisons that name it (and, during a rollout, halt it). One verdict per
//! episode: the watch stays quiet for an hour after any verdict on the metric (its own or a
//! change's).

use std::num::NonZeroU32;

use chrono::{DateTime, TimeDelta, Utc};
use gantry_core::detect::{BadDirection, DetectConfig, KeyMetric};
use gantry_detect::series::Point;
use gantry_detect::watch::{watch, Season, WatchConfig, WatchRule, Watched};

use super::{record, Found, SEASONS};
use crate::state::AppState;

/// What a watch verdict's `comparison` says.
pub const WATCH: &str = "watch";

/// The metric's values over `[from, until)` as slots at the answer's step, NaN where
/// missing, summed over the target's series.
async fn slots(
    state: &AppState,
    target: &str,
    from: DateTime<Utc>,
    until: DateTime<Utc>,
) -> Result<(Vec<Point>, NonZeroU32), String> {
    let (points, step) = super::values(state, target, from, until).await?;
    let step = NonZeroU32::new(u32::try_from(step).unwrap_or(10)).unwrap_or(NonZeroU32::MIN);
    let s = i64::from(step.get());
    let (from, until) = (from.timestamp(), until.timestamp());
    let first = from - from.rem_euclid(s);
    let mut out = Vec::new();
    let mut known = points.iter().peekable();
    let mut t = first;
    while t < until {
        while known.next_if(|(pt, _)| *pt < t).is_some() {}
        let v = match known.peek() {
            Some((pt, v)) if *pt == t => *v,
            _ => f64::NAN,
        };
        out.push(Point::new(t, v));
        t += s;
    }
    Ok((out, step))
}

/// Watches every key metric of a service once.
pub async fn watch_service(
    state: &AppState,
    service: &str,
    config: &DetectConfig,
    now: DateTime<Utc>,
) -> Result<(), String> {
    let Some(environment) = state
        .store
        .get_service(service)
        .await
        .map_err(|e| e.to_string())?
        .and_then(|s| s.environments.last().cloned())
    else {
        return Ok(());
    };
    let settings = WatchConfig::default();
    for metric in &config.metrics {
        watch_metric(state, service, &environment, metric, &settings, now).await?;
    }
    Ok(())
}

async fn watch_metric(
    state: &AppState,
    service: &str,
    environment: &str,
    metric: &KeyMetric,
    settings: &WatchConfig,
    now: DateTime<Utc>,
) -> Result<(), String> {
    let hold = TimeDelta::seconds(i64::from(settings.hold_secs));
    let last_verdict_at = state
        .store
        .list_verdicts(Some(service), None, true, Some(now - hold), 50)
        .await
        .map_err(|e| e.to_string())?
        .into_iter()
        .filter(|v| v.metric == metric.name)
        .map(|v| v.at.timestamp())
        .max();
    if last_verdict_at.is_some() {
        // Quiet for the hold: nothing to read.
        return Ok(());
    }
    // The step the recent series is read at decides the span; ask for it at 10 s first and
    // use whatever the store answers.
    let guess = NonZeroU32::new(10).unwrap_or(NonZeroU32::MIN);
    let span = TimeDelta::seconds(settings.recent_secs(guess));
    let (recent, step) = slots(
        state,
        &metric.target,
        now - span - TimeDelta::seconds(10),
        now,
    )
    .await?;
    if recent.iter().all(|p| !p.v.is_finite()) {
        return Ok(());
    }
    let (before, after) = settings.season_span(step);
    let mut seasons_points = Vec::new();
    for (_, back) in SEASONS {
        let at = now - back;
        let (points, season_step) = slots(
            state,
            &metric.target,
            at - TimeDelta::seconds(before),
            at + TimeDelta::seconds(after),
        )
        .await?;
        seasons_points.push((back.num_seconds(), season_step, points));
    }
    let seasons: Vec<Season<'_>> = seasons_points
        .iter()
        .map(|(back, step, points)| Season {
            back_secs: *back,
            step: *step,
            points,
        })
        .collect();
    let watched = Watched {
        recent: &recent,
        step,
        seasons: &seasons,
        now: now.timestamp(),
        direction: super::direction(metric.direction),
        // A metric whose drop is bad is taken for a rate of events: the drop-to-zero rule
        // applies to it (it needs seven expected events per slot to fire at all).
        counts: matches!(metric.direction, BadDirection::Drop | BadDirection::Either),
        last_verdict_at,
    };
    let Some(verdict) = watch(&watched, settings) else {
        return Ok(());
    };
    let baselines = SEASONS
        .iter()
        .filter(|(_, back)| verdict.baselines.contains(&back.num_seconds()))
        .map(|(name, _)| name.to_string())
        .collect();
    let found = Found {
        how: WATCH,
        start: DateTime::from_timestamp(verdict.from, 0).unwrap_or(now),
        comparison: verdict.comparison.clone(),
        expected: verdict.expected_ratio,
        baselines,
    };
    if verdict.rule == WatchRule::Zero {
        tracing::warn!(service, metric = %metric.name, "detect: the metric dropped to zero");
    }
    record(state, service, environment, metric, None, None, &found, now).await;
    Ok(())
}
