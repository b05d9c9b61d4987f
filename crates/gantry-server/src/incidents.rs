//! Incidents on the server: opening one (by hand now; alerts and verdicts later) with its
//! suspects ranked from the change log, moving its clocks, notes, the confirmed cause, and
//! the remedies that act through the same functions people use: a rollback through
//! `ship::rollouts`, a flag turned off through `flags::ops`. Each remedy is a change linked to
//! the incident and a line of its timeline. The HTTP routes are in `api/incidents.rs`.

use chrono::{DateTime, Utc};
use gantry_core::incident::{
    advance_incident, rank_suspects, state_of, Cause, Incident, IncidentState, NewIncident,
    Severity, Source, Step, TimelineEntry,
};
use gantry_core::ship::{NewRollout, RolloutKind};
use gantry_core::{Change, ChangeKind, ChangeQuery, Grant, ScopeName};
use gantry_store::{NewTimelineEntry, Store, StoreError};
use ulid::Ulid;

use crate::error::ApiError;
use crate::ship::rollouts::Actor;
use crate::state::AppState;

/// Most suspects kept with an incident.
const MAX_SUSPECTS: usize = 20;

fn entry(kind: &str, actor: &str, text: String, change: Option<Ulid>) -> NewTimelineEntry {
    NewTimelineEntry {
        at: Utc::now(),
        kind: kind.to_string(),
        actor: actor.to_string(),
        text,
        change,
    }
}

fn conflict(message: String) -> ApiError {
    ApiError::new(axum::http::StatusCode::CONFLICT, "conflict", message)
}

/// The changes of `service` in `environment` in the day before `at`, newest first.
async fn recent_changes(
    state: &AppState,
    service: &str,
    environment: &str,
    at: DateTime<Utc>,
) -> Result<Vec<Change>, StoreError> {
    let query = ChangeQuery {
        service: Some(service.to_string()),
        since: Some(at - gantry_core::incident::SUSPECT_LOOKBACK),
        until: Some(at),
        limit: 500,
        ..ChangeQuery::default()
    };
    let mut changes = state.store.list_changes(&query).await?;
    changes.retain(|c| c.environment.as_deref().is_none_or(|e| e == environment));
    Ok(changes)
}

/// Opens an incident for `actor` with its suspects ranked.
pub async fn open(
    state: &AppState,
    actor: &str,
    new: NewIncident,
    source: Source,
) -> Result<Incident, ApiError> {
    gantry_core::names::validate_name("service", &new.service)?;
    gantry_core::names::validate_name("environment", &new.environment)?;
    let title = new.title.trim();
    if title.is_empty() || title.chars().count() > 200 {
        return Err(ApiError::invalid("title: 1 to 200 characters"));
    }
    let now = Utc::now();
    if new.impact_started_at.is_some_and(|t| t > now) {
        return Err(ApiError::invalid(
            "impact_started_at is in the future; give when users were first hurt",
        ));
    }
    let services = vec![new.service.clone()];
    let environments = vec![new.environment.clone()];
    let changes = recent_changes(state, &new.service, &new.environment, now).await?;
    let mut suspects = rank_suspects(&changes, &services, &environments, now);
    suspects.truncate(MAX_SUSPECTS);
    let severity = new.severity.unwrap_or(match source {
        Source::Verdict { .. } => Severity::Sev2,
        _ => Severity::Sev3,
    });
    let mut incident = Incident {
        id: Ulid::new(),
        title: title.to_string(),
        severity,
        services,
        environments,
        state: IncidentState::Open,
        source,
        opened_by: actor.to_string(),
        impact_started_at: new.impact_started_at.unwrap_or(now),
        detected_at: now,
        acknowledged_at: None,
        mitigated_at: None,
        resolved_at: None,
        suspects,
        cause: None,
        postmortem: None,
        updated_at: now,
        version: 1,
    };
    incident.state = state_of(&incident);
    let mut timeline = vec![entry(
        "opened",
        actor,
        format!("opened: {} ({})", incident.title, incident.severity),
        None,
    )];
    if let Some(top) = incident.suspects.first() {
        timeline.push(entry(
            "change",
            "gantry",
            format!(
                "top suspect: {} {} (score {:.3})",
                top.kind, top.summary, top.score
            ),
            Some(top.change),
        ));
    }
    state.store.insert_incident(&incident, &timeline).await?;
    Ok(incident)
}

/// Reads an incident or answers 404.
pub async fn load(store: &dyn Store, id: Ulid) -> Result<Incident, ApiError> {
    store
        .get_incident(id)
        .await?
        .ok_or_else(|| ApiError::not_found(format!("no incident {id}")))
}

/// Applies `edit` to the incident as read, writing it with `timeline` (retried when another
/// write came first).
async fn write<F>(store: &dyn Store, id: Ulid, mut edit: F) -> Result<Incident, ApiError>
where
    F: FnMut(&mut Incident) -> Result<Vec<NewTimelineEntry>, ApiError>,
{
    for _ in 0..5 {
        let mut incident = load(store, id).await?;
        let timeline = edit(&mut incident)?;
        incident.state = state_of(&incident);
        incident.updated_at = Utc::now();
        match store.update_incident(&incident, &timeline).await {
            Ok(written) => return Ok(written),
            Err(StoreError::Stale(_)) => continue,
            Err(e) => return Err(e.into()),
        }
    }
    Err(conflict(format!("incident {id} kept changing; try again")))
}

/// Acknowledges, mitigates or resolves.
pub async fn step(
    state: &AppState,
    actor: &str,
    id: Ulid,
    step: Step,
) -> Result<Incident, ApiError> {
    let what = match step {
        Step::Acknowledge => "acknowledged",
        Step::Mitigate => "mitigated",
        Step::Resolve => "resolved",
    };
    write(state.store.as_ref(), id, |incident| {
        // The step is one of three words; what advance refuses is the incident's state.
        advance_incident(incident, step.clone(), Utc::now()).map_err(|e| conflict(e.0))?;
        Ok(vec![entry("action", actor, what.to_string(), None)])
    })
    .await
}

/// A note on the timeline.
pub async fn note(
    state: &AppState,
    actor: &str,
    id: Ulid,
    text: &str,
) -> Result<Incident, ApiError> {
    let text = text.trim();
    if text.is_empty() || text.chars().count() > 10_000 {
        return Err(ApiError::invalid("note: 1 to 10000 characters"));
    }
    write(state.store.as_ref(), id, |_| {
        Ok(vec![entry("note", actor, text.to_string(), None)])
    })
    .await
}

/// Names the confirmed cause: a change (which must exist) or what else it was.
pub async fn set_cause(
    state: &AppState,
    actor: &str,
    id: Ulid,
    cause: Cause,
) -> Result<Incident, ApiError> {
    let text = match &cause {
        Cause::Change { change } => {
            let c = state
                .store
                .get_change(*change)
                .await?
                .ok_or_else(|| ApiError::not_found(format!("no change {change}")))?;
            format!("cause: {} {} ({})", c.kind.as_str(), c.summary, c.id)
        }
        Cause::NotAChange { what } => {
            if what.trim().is_empty() {
                return Err(ApiError::invalid(
                    "cause: say what it was when it was not a change",
                ));
            }
            format!("cause: not a change: {what}")
        }
    };
    let change = match &cause {
        Cause::Change { change } => Some(*change),
        Cause::NotAChange { .. } => None,
    };
    write(state.store.as_ref(), id, |incident| {
        incident.cause = Some(cause.clone());
        Ok(vec![entry("action", actor, text.clone(), change)])
    })
    .await
}

/// What a person may correct: severity, title, when the impact started, the postmortem.
#[derive(Debug, Clone, Default, serde::Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct IncidentEdit {
    pub title: Option<String>,
    pub severity: Option<Severity>,
    #[serde(default, deserialize_with = "gantry_core::time::deserialize_api_time")]
    #[schema(value_type = Option<String>)]
    pub impact_started_at: Option<DateTime<Utc>>,
    pub postmortem: Option<String>,
}

pub async fn edit(
    state: &AppState,
    actor: &str,
    id: Ulid,
    edit: IncidentEdit,
) -> Result<Incident, ApiError> {
    if let Some(url) = &edit.postmortem {
        if !(url.starts_with("https://") || url.starts_with("http://"))
            || url.chars().count() > 2000
        {
            return Err(ApiError::invalid("postmortem: an http(s) URL"));
        }
    }
    write(state.store.as_ref(), id, |incident| {
        let mut said = Vec::new();
        if let Some(title) = &edit.title {
            let title = title.trim();
            if title.is_empty() || title.chars().count() > 200 {
                return Err(ApiError::invalid("title: 1 to 200 characters"));
            }
            incident.title = title.to_string();
            said.push(format!("title: {title}"));
        }
        if let Some(severity) = edit.severity {
            said.push(format!("severity {} → {severity}", incident.severity));
            incident.severity = severity;
        }
        if let Some(at) = edit.impact_started_at {
            if at > incident.detected_at {
                return Err(ApiError::invalid(
                    "impact_started_at is after the incident was detected",
                ));
            }
            incident.impact_started_at = at;
            said.push(format!("impact started at {}", at.to_rfc3339()));
        }
        if let Some(url) = &edit.postmortem {
            incident.postmortem = Some(url.clone());
            said.push(format!("postmortem: {url}"));
        }
        if said.is_empty() {
            return Err(ApiError::invalid(
                "nothing to change: give title, severity, impact_started_at or postmortem",
            ));
        }
        Ok(vec![entry("action", actor, said.join("; "), None)])
    })
    .await
}

/// The incident's timeline: what was recorded with it, and every change of its services
/// and environments from an hour before the impact to its resolution, in time order.
pub async fn timeline(
    state: &AppState,
    incident: &Incident,
) -> Result<Vec<TimelineEntry>, ApiError> {
    let mut out = state.store.incident_timeline(incident.id).await?;
    let recorded: std::collections::HashSet<Ulid> = out.iter().filter_map(|e| e.change).collect();
    let from = incident.impact_started_at - chrono::TimeDelta::hours(1);
    let until = incident.resolved_at.unwrap_or_else(Utc::now);
    for service in &incident.services {
        let query = ChangeQuery {
            service: Some(service.clone()),
            since: Some(from),
            until: Some(until),
            limit: 200,
            ..ChangeQuery::default()
        };
        for c in state.store.list_changes(&query).await? {
            let in_env = c
                .environment
                .as_ref()
                .is_none_or(|e| incident.environments.contains(e));
            if !in_env || c.kind == ChangeKind::Note || recorded.contains(&c.id) {
                continue;
            }
            out.push(TimelineEntry {
                seq: 0,
                at: c.started_at,
                kind: "change".into(),
                actor: c.actor.clone(),
                text: format!("{} {} ({})", c.kind.as_str(), c.summary, c.status),
                change: Some(c.id),
            });
        }
    }
    out.sort_by(|a, b| a.at.cmp(&b.at).then(a.seq.cmp(&b.seq)));
    Ok(out)
}

/// The actor a remedy acts as: the person, `via` the incident (the orchestrator, the
/// incident's clocks and the report find the remedy by it, whichever way the person came).
fn remedy_actor(actor: &str, id: Ulid) -> Actor {
    Actor {
        name: actor.to_string(),
        via: Some(format!("incident {id}")),
    }
}

/// Whether `grant` may read `incident`: read on one of its services in one of its
/// environments.
pub fn may_read(grant: &Grant, incident: &Incident) -> bool {
    incident.services.iter().any(|s| {
        incident
            .environments
            .iter()
            .any(|e| grant.allows(ScopeName::Read, Some(s), Some(e)))
    })
}

/// Incident actions other than the remedies need `deploy` or `flags` on every service of
/// the incident, in each of its environments.
pub fn require_either(
    grant: &Grant,
    services: &[String],
    environments: &[String],
) -> Result<(), ApiError> {
    for s in services {
        for e in environments {
            if !grant.allows(ScopeName::Deploy, Some(s), Some(e))
                && !grant.allows(ScopeName::Flags, Some(s), Some(e))
            {
                return Err(ApiError::forbidden(format!(
                    "token '{}' needs deploy or flags covering {s}@{e} to act on this incident",
                    grant.token_name
                )));
            }
        }
    }
    Ok(())
}

/// A remedy needs `scope` on every service of the incident in each of its environments.
pub fn require_each(grant: &Grant, scope: ScopeName, incident: &Incident) -> Result<(), ApiError> {
    for s in &incident.services {
        for e in &incident.environments {
            crate::auth::require(grant, scope, Some(s), Some(e))?;
        }
    }
    Ok(())
}

/// `ack`, `mitigate` or `resolve` (need `deploy` or `flags`); `rollback` (needs `deploy`)
/// and `flag-off` (needs `flags`), which return the change the remedy made. The API and
/// the dashboard both act through here.
pub async fn act(
    state: &AppState,
    grant: &Grant,
    id: Ulid,
    action: &str,
) -> Result<(Incident, Option<Ulid>), ApiError> {
    let incident = load(state.store.as_ref(), id).await?;
    let step = match action {
        "ack" => Some(Step::Acknowledge),
        "mitigate" => Some(Step::Mitigate),
        "resolve" => Some(Step::Resolve),
        "rollback" | "flag-off" => None,
        other => {
            return Err(ApiError::not_found(format!(
                "no incident action '{other}'; use ack, mitigate, resolve, rollback or flag-off"
            )))
        }
    };
    let actor = grant.token_name.as_str();
    if let Some(step) = step {
        require_either(grant, &incident.services, &incident.environments)?;
        return Ok((self::step(state, actor, incident.id, step).await?, None));
    }
    let (incident, change) = if action == "rollback" {
        require_each(grant, ScopeName::Deploy, &incident)?;
        rollback(state, actor, incident.id).await?
    } else {
        require_each(grant, ScopeName::Flags, &incident)?;
        flag_off(state, actor, incident.id).await?
    };
    Ok((incident, Some(change)))
}

/// Rolls back the incident's top deploy suspect when it is what runs now (a rollback
/// rollout to the build before it) or halts it when it is the active rollout; `409`
/// otherwise. Returns the incident and the change the remedy made.
pub async fn rollback(
    state: &AppState,
    actor: &str,
    id: Ulid,
) -> Result<(Incident, Ulid), ApiError> {
    let incident = load(state.store.as_ref(), id).await?;
    if incident.resolved_at.is_some() {
        return Err(conflict(format!("incident {id} is resolved")));
    }
    let suspect = incident
        .suspects
        .iter()
        .find(|s| s.kind == ChangeKind::Deploy.as_str() || s.kind == ChangeKind::Rollback.as_str())
        .ok_or_else(|| {
            conflict(format!(
                "incident {id} has no deploy among its suspects; nothing to roll back"
            ))
        })?;
    let (service, environment) = match (&suspect.service, &suspect.environment) {
        (Some(s), Some(e)) => (s.clone(), e.clone()),
        _ => {
            return Err(conflict(
                "the suspect deploy names no service and environment".into(),
            ))
        }
    };
    let change = state
        .store
        .get_change(suspect.change)
        .await?
        .ok_or_else(|| conflict(format!("the suspect change {} is gone", suspect.change)))?;
    let rollout_id: Option<Ulid> = change
        .metadata
        .get("rollout")
        .and_then(|v| v.as_str())
        .and_then(|s| s.parse().ok());
    let Some(rollout_id) = rollout_id else {
        return Err(conflict(format!(
            "the suspect change {} was not made by a rollout",
            change.id
        )));
    };
    let remedy = remedy_actor(actor, id);
    // The suspect still rolling out: halt it (abort rolls back what it reached).
    if let Some(active) = state.store.active_rollout(&service, &environment).await? {
        if active.id == rollout_id {
            crate::ship::rollouts::control(
                state,
                &remedy,
                &active,
                crate::ship::rollouts::RolloutAction::Abort,
            )
            .await?;
            let text = format!(
                "halted the suspect rollout {} (its change {})",
                active.id, change.id
            );
            let incident = write(state.store.as_ref(), id, |_| {
                Ok(vec![entry("action", actor, text.clone(), Some(change.id))])
            })
            .await?;
            return Ok((incident, change.id));
        }
        return Err(conflict(format!(
            "rollout {} of {service} in {environment} is in progress; it is not the suspect, so wait for it or abort it first",
            active.id
        )));
    }
    let current = state.store.deployments(&service, &environment, 1).await?;
    if current.first().map(|d| d.rollout_id) != Some(rollout_id) {
        return Err(conflict(format!(
            "the suspect deploy ({}) is not what {service} runs in {environment} now; roll back by hand if that is still wanted",
            change.summary
        )));
    }
    let rollout = crate::ship::rollouts::start(
        state,
        &remedy,
        NewRollout {
            kind: Some(RolloutKind::Rollback),
            service: service.clone(),
            environment: environment.clone(),
            ..NewRollout::default()
        },
    )
    .await?;
    let text = format!(
        "rollback of {service} in {environment} started (rollout {}) against {}",
        rollout.id, change.summary
    );
    let incident = write(state.store.as_ref(), id, |_| {
        Ok(vec![entry(
            "action",
            actor,
            text.clone(),
            Some(rollout.change_id),
        )])
    })
    .await?;
    Ok((incident, rollout.change_id))
}

/// Turns off the flag of the incident's top flag suspect, in the suspect's environment;
/// the mitigation time is recorded at once (flag sets follow within seconds).
pub async fn flag_off(
    state: &AppState,
    actor: &str,
    id: Ulid,
) -> Result<(Incident, Ulid), ApiError> {
    let incident = load(state.store.as_ref(), id).await?;
    if incident.resolved_at.is_some() {
        return Err(conflict(format!("incident {id} is resolved")));
    }
    let suspect = incident
        .suspects
        .iter()
        .find(|s| s.kind == ChangeKind::Flag.as_str() && s.environment.is_some())
        .ok_or_else(|| {
            conflict(format!(
                "incident {id} has no flag change in an environment among its suspects"
            ))
        })?;
    let change = state
        .store
        .get_change(suspect.change)
        .await?
        .ok_or_else(|| conflict(format!("the suspect change {} is gone", suspect.change)))?;
    let (Some(service), Some(environment), Some(flag)) = (
        change.service.clone(),
        change.environment.clone(),
        change
            .metadata
            .get("flag")
            .and_then(|v| v.as_str())
            .map(str::to_string),
    ) else {
        return Err(conflict(format!(
            "the suspect change {} names no flag and environment",
            change.id
        )));
    };
    let name = format!("{actor} (incident {id})");
    let via = format!("incident {id}");
    let (_, change_id) = crate::flags::ops::change_environment_via(
        state,
        &service,
        &flag,
        &environment,
        &crate::flags::ops::EnvChange::Edit(gantry_flags::edit::Edit::Disable),
        &crate::flags::ops::Actor {
            name: &name,
            if_match: None,
            note: Some(format!("kill switch from incident {id}")),
        },
        &via,
    )
    .await?;
    let text = format!("turned flag {service}/{flag} off in {environment}");
    let incident = write(state.store.as_ref(), id, |incident| {
        if incident.mitigated_at.is_none() {
            advance_incident(incident, Step::Mitigate, Utc::now()).map_err(|e| conflict(e.0))?;
        }
        Ok(vec![entry("action", actor, text.clone(), Some(change_id))])
    })
    .await?;
    Ok((incident, change_id))
}

/// How long an open incident takes in the alerts of its service and environment.
const ALERT_JOIN: chrono::TimeDelta = chrono::TimeDelta::minutes(30);

/// A monitor went hard CRITICAL: joins the open incident of its service and environment
/// opened in the last 30 minutes (a line on its timeline), or opens one (SEV3, source
/// `alert`). Returns the incident's id.
pub async fn alert(
    state: &AppState,
    monitor: &str,
    service: &str,
    environment: &str,
    what: &str,
) -> Result<Ulid, ApiError> {
    let now = Utc::now();
    let recent = state
        .store
        .list_incidents(Some(now - ALERT_JOIN), true, 100)
        .await?;
    let joined = recent.iter().find(|i| {
        i.services.iter().any(|s| s == service) && i.environments.iter().any(|e| e == environment)
    });
    let text = format!("alert: {monitor} is CRITICAL: {what}");
    if let Some(incident) = joined {
        let id = incident.id;
        write(state.store.as_ref(), id, |_| {
            Ok(vec![entry("alert", "gantry", text.clone(), None)])
        })
        .await?;
        return Ok(id);
    }
    let incident = open(
        state,
        "gantry",
        NewIncident {
            title: format!("{monitor} is CRITICAL: {what}")
                .chars()
                .take(200)
                .collect(),
            service: service.to_string(),
            environment: environment.to_string(),
            severity: None,
            impact_started_at: None,
        },
        Source::Alert {
            monitor: monitor.to_string(),
        },
    )
    .await?;
    Ok(incident.id)
}

/// A rollout an incident started ended: the incident is mitigated when it succeeded.
pub async fn remedy_finished(
    store: &dyn Store,
    incident: Ulid,
    rollout: &gantry_core::ship::Rollout,
) {
    // A remedy rollout that succeeded, or the suspect halted for this incident whose hosts
    // all went back (it ends `aborted`; `failed` when its rollback failed too).
    let halted_here = rollout
        .aborted_by
        .as_deref()
        .is_some_and(|a| a.contains(&format!("(incident {incident})")));
    let ok = rollout.state == gantry_core::ship::RolloutState::Succeeded
        || (halted_here && rollout.state == gantry_core::ship::RolloutState::Aborted);
    let text = format!("rollout {} ended {}", rollout.id, rollout.state);
    let result = write(store, incident, |i| {
        if ok && i.mitigated_at.is_none() && i.resolved_at.is_none() {
            advance_incident(i, Step::Mitigate, Utc::now()).map_err(|e| conflict(e.0))?;
        }
        Ok(vec![entry(
            "action",
            "gantry",
            text.clone(),
            Some(rollout.change_id),
        )])
    })
    .await;
    if let Err(e) = result {
        tracing::warn!(incident = %incident, error = %e.message, "cannot record the end of an incident's remedy");
    }
}
