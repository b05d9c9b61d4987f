//! Starting and controlling rollouts: the rules behind `POST /api/v1/rollouts` and
//! `…/{id}/{pause,resume,abort}`, callable by anything that acts on a rollout (a person's
//! token through the API or CLI, a gate, an incident's remedy). Scope checks stay with the
//! caller; these functions decide what to deploy (which build a rollback returns to,
//! whether a promote is allowed), which hosts, in which waves, and record the change.

use std::collections::HashMap;

use axum::http::StatusCode;
use chrono::Utc;
use gantry_core::deploy::DeployConfig;
use gantry_core::ship::{
    Build, HostStatus, NewRollout, Rollout, RolloutKind, RolloutSpec, RolloutState, Task,
    TaskPurpose, TaskState, WaveSize,
};
use gantry_core::{Change, ChangeKind, ChangeStatus, CommitRange, Link};
use ulid::Ulid;

use crate::error::ApiError;
use crate::state::AppState;

const DEFAULT_WAVES: &str = "1,10%,50%,100%";

/// Who acts on a rollout, as its change and log record it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Actor {
    /// A token's name, `gate`, or `incident <id>`.
    pub name: String,
    /// How it came (`api`, `gate <name>`, `incident <id>`); recorded as the change's `via`.
    pub via: Option<String>,
}

impl Actor {
    /// A person or CI, by its token's name.
    pub fn token(name: &str) -> Actor {
        Actor {
            name: name.to_string(),
            via: None,
        }
    }
}

/// What a rollout may be asked.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RolloutAction {
    Pause,
    Resume,
    Abort,
}

impl std::str::FromStr for RolloutAction {
    type Err = ApiError;
    fn from_str(s: &str) -> Result<RolloutAction, ApiError> {
        match s {
            "pause" => Ok(RolloutAction::Pause),
            "resume" => Ok(RolloutAction::Resume),
            "abort" => Ok(RolloutAction::Abort),
            other => Err(ApiError::not_found(format!(
                "no rollout action '{other}'; use pause, resume or abort"
            ))),
        }
    }
}

/// Asks the server driving `rollout` to pause, resume or abort it (on its next tick; abort
/// rolls back what the rollout reached unless it was started without automatic rollback).
pub async fn control(
    state: &AppState,
    actor: &Actor,
    rollout: &Rollout,
    action: RolloutAction,
) -> Result<(), ApiError> {
    let control = match action {
        RolloutAction::Pause => "pause".to_string(),
        RolloutAction::Resume => "resume".to_string(),
        // The rollout records who aborted it, and for what (`ann (incident 01J…)`).
        RolloutAction::Abort => match &actor.via {
            Some(via) => format!("abort:{} ({via})", actor.name),
            None => format!("abort:{}", actor.name),
        },
    };
    state.store.control_rollout(rollout.id, &control).await?;
    state.bell.reported();
    Ok(())
}

/// A rollout worked out but not started: what [`start`] would write. The dashboard shows
/// it before a person confirms.
#[derive(Debug, Clone)]
pub struct Plan {
    pub rollout: Rollout,
    /// One per target host, in wave order.
    pub tasks: Vec<Task>,
    /// The change the rollout records.
    pub change: Change,
    /// The build the environment runs now, if any.
    pub previous: Option<Build>,
    /// The build the rollout installs.
    pub build: Build,
}

/// Starts a deploy, rollback or promote for `actor`: one per service and environment at a
/// time. The caller has checked that the actor may deploy there.
pub async fn start(state: &AppState, actor: &Actor, new: NewRollout) -> Result<Rollout, ApiError> {
    let planned = plan(state, actor, new).await?;
    start_plan(state, planned).await
}

/// Starts a rollout [`plan`] worked out (one a person has seen and confirmed). Refused as
/// [`start`] would be when another rollout took the service and environment since.
pub async fn start_plan(state: &AppState, planned: Plan) -> Result<Rollout, ApiError> {
    let Plan {
        rollout,
        tasks,
        change,
        ..
    } = planned;
    state.store.insert_change(&change).await?;
    if let Err(e) = state.store.insert_rollout(&rollout, &tasks).await {
        // Lost a race for the lock: the change records that this one never started.
        let patch = gantry_core::ChangePatch {
            status: Some(ChangeStatus::Cancelled),
            finished_at: None,
            description: Some(format!("not started: {e}")),
        };
        let _ = state
            .store
            .update_change(change.id, &patch, "gantry", Utc::now())
            .await;
        return Err(e.into());
    }
    tracing::info!(rollout = %rollout.id, service = %rollout.service, environment = %rollout.environment, version = %rollout.version, hosts = tasks.len(), "rollout started");
    state.bell.reported();
    Ok(rollout)
}

/// Works out a deploy, rollback or promote for `actor` without starting it: which build
/// (a rollback returns to the build that ran before the current one; a promote takes what
/// the source environment runs healthily), which hosts in which waves, and the change it
/// records. Refused as [`start`] would refuse it.
pub async fn plan(state: &AppState, actor: &Actor, new: NewRollout) -> Result<Plan, ApiError> {
    gantry_core::names::validate_name("service", &new.service)?;
    gantry_core::names::validate_name("environment", &new.environment)?;
    let kind = new.kind.unwrap_or(RolloutKind::Deploy);
    let conflict = |m: String| ApiError::new(StatusCode::CONFLICT, "conflict", m);
    if let Some(holder) = state
        .store
        .active_rollout(&new.service, &new.environment)
        .await?
    {
        return Err(conflict(format!(
            "{} is being deployed to {} by rollout {} ({} of {} by {}, since {}); wait for it, or `gantry rollout abort {}`",
            new.service,
            new.environment,
            holder.id,
            holder.kind,
            holder.version,
            holder.created_by,
            holder.created_at.to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
            holder.id
        )));
    }
    let history = state
        .store
        .deployments(&new.service, &new.environment, 50)
        .await?;
    let mut reverts = None;
    let build: Build = match kind {
        RolloutKind::Deploy => {
            if new.from.is_some() {
                return Err(ApiError::invalid("from is only for promote"));
            }
            let reference = new.build.as_deref().ok_or_else(|| {
                ApiError::invalid("a deploy needs build (an id, prefix or version)")
            })?;
            let build = crate::api::builds::resolve(state, Some(&new.service), reference).await?;
            if build.service != new.service {
                return Err(ApiError::invalid(format!(
                    "build {} is a build of {}, not of {}",
                    build.id, build.service, new.service
                )));
            }
            build
        }
        RolloutKind::Rollback => {
            if new.build.is_some() || new.from.is_some() {
                return Err(ApiError::invalid(
                    "a rollback takes no build: it returns to the build that ran before the current one",
                ));
            }
            let current = history.first().ok_or_else(|| {
                conflict(format!(
                    "{} has never been deployed successfully to {}; there is nothing to roll back",
                    new.service, new.environment
                ))
            })?;
            let target = history
                .iter()
                .find(|d| d.build_id != current.build_id)
                .ok_or_else(|| {
                    conflict(format!(
                        "{} in {} has no earlier successful build to roll back to",
                        new.service, new.environment
                    ))
                })?;
            reverts = Some(current.rollout_id);
            state
                .store
                .get_build(target.build_id)
                .await?
                .ok_or_else(|| {
                    conflict(format!(
                        "build {} to roll back to was deleted",
                        target.build_id
                    ))
                })?
        }
        RolloutKind::Promote => {
            let from = new.from.as_deref().ok_or_else(|| {
                ApiError::invalid("a promote needs from (the source environment)")
            })?;
            if from == new.environment {
                return Err(ApiError::invalid(
                    "promote from and to the same environment",
                ));
            }
            let last = state
                .store
                .list_rollouts(Some(&new.service), Some(from), false, 1)
                .await?
                .into_iter()
                .next()
                .ok_or_else(|| {
                    conflict(format!("{} has never been deployed to {from}", new.service))
                })?;
            if last.state != RolloutState::Succeeded {
                return Err(conflict(format!(
                    "{from}'s last deploy of {} (rollout {}, {}) is {}, not healthy; promote only what {from} runs successfully",
                    new.service, last.id, last.version, last.state
                )));
            }
            let current = state
                .store
                .deployments(&new.service, from, 1)
                .await?
                .into_iter()
                .next()
                .ok_or_else(|| conflict(format!("{from} runs no build of {}", new.service)))?;
            state
                .store
                .get_build(current.build_id)
                .await?
                .ok_or_else(|| {
                    conflict(format!(
                        "build {} that {from} runs was deleted",
                        current.build_id
                    ))
                })?
        }
    };

    let config: DeployConfig = crate::api::agent::deploy_config(state, &new.service).await?;
    let (default_waves, default_bake) = match kind {
        RolloutKind::Rollback => ("100%", "0s"),
        _ => (DEFAULT_WAVES, "60s"),
    };
    let wave_sizes = new
        .waves
        .clone()
        .unwrap_or_else(|| default_waves.to_string());
    let sizes = WaveSize::parse_list(&wave_sizes)?;
    let bake =
        gantry_core::time::parse_duration("bake", new.bake.as_deref().unwrap_or(default_bake))?;
    let roles = new.roles.clone().or_else(|| config.roles.clone());

    // Targets: the environment's hosts with the roles, not in maintenance; offline ones skipped.
    let now = Utc::now();
    let lost_after = chrono::Duration::seconds(state.config.ship.host_lost_after_secs as i64);
    let mut targets = Vec::new();
    let mut skipped = Vec::new();
    for h in state.store.list_hosts(Some(&new.environment)).await? {
        if !h.has_role(roles.as_deref()) {
            continue;
        }
        let status = gantry_core::ship::Host::status_at(h.last_seen_at, now, lost_after);
        if h.maintenance || status != HostStatus::Online {
            skipped.push(h.name.clone());
        } else {
            targets.push(h);
        }
    }
    if new.require_all == Some(true) && !skipped.is_empty() {
        return Err(conflict(format!(
            "--require-all: these hosts are offline or in maintenance: {}",
            skipped.join(", ")
        )));
    }
    if targets.is_empty() {
        return Err(conflict(format!(
            "no online host in {} runs {}{}{}",
            new.environment,
            new.service,
            roles
                .as_ref()
                .map(|r| format!(" (roles {})", r.join(", ")))
                .unwrap_or_default(),
            if skipped.is_empty() {
                String::new()
            } else {
                format!("; offline or in maintenance: {}", skipped.join(", "))
            }
        )));
    }
    let waves = WaveSize::plan(&sizes, targets.len());
    let spec = RolloutSpec {
        waves: waves.clone(),
        wave_sizes: wave_sizes.clone(),
        bake_secs: bake.as_secs(),
        parallel: new.parallel.unwrap_or(0),
        max_failed: new.max_failed.unwrap_or(0),
        roles: roles.clone(),
        auto_rollback: new.auto_rollback.unwrap_or(true),
        max_analysis_secs: match new.max_analysis.as_deref() {
            Some(text) => gantry_core::time::parse_duration("max_analysis", text)?.as_secs(),
            None => gantry_core::ship::DEFAULT_MAX_ANALYSIS_SECS,
        },
    };

    // What each host runs now, for the commit range and the way back.
    let mut builds: HashMap<Ulid, Option<Build>> = HashMap::new();
    let mut previous: Option<Build> = None;
    if let Some(d) = history.first() {
        previous = state.store.get_build(d.build_id).await?;
        builds.insert(d.build_id, previous.clone());
    }
    let rollout_id = Ulid::new();
    let mut tasks = Vec::with_capacity(targets.len());
    for (i, h) in targets.iter().enumerate() {
        let from_build = h.releases.get(&new.service).and_then(|r| r.build_id);
        let from_version = match from_build {
            Some(id) => {
                if let std::collections::hash_map::Entry::Vacant(slot) = builds.entry(id) {
                    slot.insert(state.store.get_build(id).await?);
                }
                builds
                    .get(&id)
                    .and_then(|b| b.as_ref())
                    .map(|b| b.version.clone())
            }
            None => None,
        };
        let wave = waves.iter().position(|&n| i < n).unwrap_or(waves.len() - 1);
        tasks.push(Task {
            id: Ulid::new(),
            rollout_id: Some(rollout_id),
            host: h.name.clone(),
            service: new.service.clone(),
            environment: new.environment.clone(),
            purpose: TaskPurpose::Deploy,
            wave,
            build_id: build.id,
            version: build.version.clone(),
            from_build: from_version.as_ref().and(from_build),
            from_version,
            state: TaskState::Planned,
            step: None,
            output: String::new(),
            error: None,
            created_at: now,
            updated_at: now,
            switched_at: None,
            undrained_at: None,
        });
    }

    let verb = match kind {
        RolloutKind::Deploy => "deploy",
        RolloutKind::Rollback => "rollback",
        RolloutKind::Promote => "promote",
    };
    let summary = match (&kind, &previous) {
        (RolloutKind::Promote, _) => format!(
            "promote {} {} from {} to {}",
            new.service,
            build.version,
            new.from.as_deref().unwrap_or_default(),
            new.environment
        ),
        (_, Some(p)) => format!(
            "{verb} {} {} → {} to {}",
            new.service, p.version, build.version, new.environment
        ),
        (_, None) => format!(
            "{verb} {} {} to {}",
            new.service, build.version, new.environment
        ),
    };
    let commit_range = match (
        previous.as_ref().and_then(|p| p.commit.clone()),
        build.commit.clone(),
    ) {
        // A rollback ships no new commits; it returns to older ones.
        (Some(from), Some(to)) if from != to && kind != RolloutKind::Rollback => {
            Some(CommitRange { from, to })
        }
        _ => None,
    };
    let mut metadata = serde_json::Map::new();
    metadata.insert("rollout".into(), rollout_id.to_string().into());
    metadata.insert("build".into(), build.id.to_string().into());
    metadata.insert("version".into(), build.version.clone().into());
    if let Some(p) = &previous {
        metadata.insert("previous_build".into(), p.id.to_string().into());
        metadata.insert("previous_version".into(), p.version.clone().into());
    }
    metadata.insert("hosts".into(), targets.len().into());
    metadata.insert("waves".into(), wave_sizes.clone().into());
    if let Some(r) = reverts {
        metadata.insert("reverts_rollout".into(), r.to_string().into());
    }
    if let Some(from) = &new.from {
        metadata.insert("promoted_from".into(), from.clone().into());
    }
    if let Some(via) = &actor.via {
        metadata.insert("via".into(), via.clone().into());
    }
    let change = Change {
        id: Ulid::new(),
        kind: if kind == RolloutKind::Rollback {
            ChangeKind::Rollback
        } else {
            ChangeKind::Deploy
        },
        service: Some(new.service.clone()),
        environment: Some(new.environment.clone()),
        actor: actor.name.clone(),
        summary,
        description: None,
        status: ChangeStatus::InProgress,
        started_at: now,
        finished_at: None,
        size: None,
        commit_range,
        links: vec![Link {
            title: "rollout".into(),
            url: format!("/api/v1/rollouts/{rollout_id}"),
        }],
        metadata,
        history: None,
    };
    let rollout = Rollout {
        id: rollout_id,
        kind,
        service: new.service.clone(),
        environment: new.environment.clone(),
        build_id: build.id,
        version: build.version.clone(),
        change_id: change.id,
        state: RolloutState::Running,
        wave: 0,
        bake_until: None,
        reason: None,
        spec,
        skipped,
        aborted_by: None,
        control: None,
        reverts,
        created_by: actor.name.clone(),
        created_at: now,
        updated_at: now,
        finished_at: None,
    };
    Ok(Plan {
        rollout,
        tasks,
        change,
        previous,
        build,
    })
}
