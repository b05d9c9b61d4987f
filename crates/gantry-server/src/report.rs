//! Gathers the facts the report is computed from (incidents, rollouts that reached a host,
//! changes) for a service or all, in one environment, and hands them to
//! `gantry_core::report::compute`, where the definitions live.

use std::collections::HashMap;

use chrono::{DateTime, Duration, Utc};
use gantry_core::report::{compute, Bucket, ChangeFact, Facts, Report, RolloutFact};
use gantry_core::ship::{RolloutState, TaskPurpose, TaskState};
use gantry_core::{ChangeKind, ChangeQuery};
use gantry_store::StoreError;

use crate::state::AppState;

/// What a report covers.
#[derive(Debug, Clone)]
pub struct Scope {
    pub service: Option<String>,
    pub environment: String,
    pub since: DateTime<Utc>,
    pub until: DateTime<Utc>,
    pub bucket: Bucket,
}

impl Scope {
    /// A report's scope from what a person asked: the environment defaults to `prod`, the
    /// period to the 90 days before `until` (default now), at most three years, in weekly
    /// buckets unless `by` says `day` or `month`. The API and the dashboard both ask here.
    pub fn new(
        service: Option<String>,
        environment: Option<String>,
        since: Option<DateTime<Utc>>,
        until: Option<DateTime<Utc>>,
        by: Option<&str>,
    ) -> Result<Scope, crate::error::ApiError> {
        use crate::error::ApiError;
        let environment = environment.unwrap_or_else(|| "prod".to_string());
        gantry_core::names::validate_name("environment", &environment)?;
        if let Some(s) = &service {
            gantry_core::names::validate_name("service", s)?;
        }
        let until = until.unwrap_or_else(Utc::now);
        let since = match since {
            Some(since) => since,
            None => until
                .checked_sub_signed(Duration::days(90))
                .ok_or_else(|| ApiError::invalid("until is too far in the past"))?,
        };
        if since >= until {
            return Err(ApiError::invalid("since must be before until"));
        }
        if until - since > Duration::days(3 * 366) {
            return Err(ApiError::invalid("the period is at most three years"));
        }
        let bucket: Bucket = by.unwrap_or("week").parse()?;
        Ok(Scope {
            service,
            environment,
            since,
            until,
            bucket,
        })
    }
}

/// How far before the period the cause rule and incidents resolved in it are looked for.
const LOOKBACK_DAYS: i64 = 30;

pub async fn report(state: &AppState, scope: &Scope) -> Result<Report, StoreError> {
    let store = state.store.as_ref();
    let ours = |service: Option<&str>, env: Option<&str>| {
        scope.service.as_deref().is_none_or(|s| service == Some(s))
            && env.is_none_or(|e| e == scope.environment)
    };
    let lookback = scope.since - Duration::days(LOOKBACK_DAYS);

    let incidents: Vec<_> = store
        .list_incidents(Some(lookback), false, 100_000)
        .await?
        .into_iter()
        .filter(|i| {
            // An incident after the period would be blamed on a change before its end.
            i.detected_at < scope.until
                && i.environments.contains(&scope.environment)
                && scope
                    .service
                    .as_ref()
                    .is_none_or(|s| i.services.contains(s))
        })
        .collect();

    let query = ChangeQuery {
        service: scope.service.clone(),
        since: Some(lookback),
        until: Some(scope.until),
        limit: 100_000,
        ..ChangeQuery::default()
    };
    let all_changes = store.list_changes(&query).await?;
    let changes: Vec<ChangeFact> = all_changes
        .iter()
        .filter(|c| c.kind != ChangeKind::Note)
        .filter(|c| ours(c.service.as_deref(), c.environment.as_deref()))
        .map(|c| ChangeFact {
            id: c.id,
            kind: c.kind.as_str().to_string(),
            service: c.service.clone(),
            environment: c.environment.clone(),
            started_at: c.started_at,
        })
        .collect();
    let via: HashMap<ulid::Ulid, ulid::Ulid> = all_changes
        .iter()
        .filter_map(|c| {
            let incident = c
                .metadata
                .get("via")?
                .as_str()?
                .strip_prefix("incident ")?
                .parse()
                .ok()?;
            Some((c.id, incident))
        })
        .collect();

    let mut rollouts = store
        .list_rollouts(
            scope.service.as_deref(),
            Some(&scope.environment),
            false,
            100_000,
        )
        .await?;
    rollouts.retain(|r| r.created_at >= lookback && r.created_at < scope.until);
    rollouts.sort_by_key(|r| r.created_at);
    let mut builds_seen = std::collections::HashSet::new();
    let mut commit_times = HashMap::new();
    let mut facts = Vec::new();
    for r in rollouts {
        let tasks = store.rollout_tasks(r.id).await?;
        // Where a host really switched (a rollback rollout's tasks are deploys of the older
        // build); tasks from before switch times were recorded count from their success.
        let first_switch = tasks
            .iter()
            .filter(|t| t.purpose == TaskPurpose::Deploy)
            .filter_map(|t| {
                t.switched_at
                    .or((t.state == TaskState::Succeeded).then_some(t.updated_at))
            })
            .min();
        let Some(first_switch) = first_switch else {
            continue;
        };
        if let std::collections::hash_map::Entry::Vacant(slot) = commit_times.entry(r.build_id) {
            slot.insert(
                store
                    .get_build(r.build_id)
                    .await?
                    .and_then(|b| b.commit_time),
            );
        }
        let first_of_build = builds_seen.insert(r.build_id);
        facts.push(RolloutFact {
            rollout: r.id,
            change: r.change_id,
            build: r.build_id,
            service: r.service.clone(),
            environment: r.environment.clone(),
            kind: r.kind.to_string(),
            first_switch,
            finished_at: r.finished_at,
            commit_time: commit_times.get(&r.build_id).copied().flatten(),
            first_of_build,
            gate_rolled_back: r.state == RolloutState::RolledBack && r.aborted_by.is_none(),
            remedy_of: via.get(&r.change_id).copied(),
        });
    }
    Ok(compute(&Facts {
        since: scope.since,
        until: scope.until,
        bucket: scope.bucket,
        incidents,
        rollouts: facts,
        changes,
    }))
}
