//! `/api/v1/agent/*`: what host agents call. Agents only make outbound requests: a long
//! poll that is also the heartbeat (it carries the host's facts and current releases and
//! returns the tasks to run), and a report per task step. The host is the one the token is
//! bound to, never one named in the request, so an agent cannot act as another host.

use std::time::Duration;

use axum::extract::{Path, State};
use chrono::Utc;
use gantry_core::deploy::DeployConfig;
use gantry_core::ship::{
    host_of_token, AgentHello, AgentTask, AgentWork, Host, Task, TaskPurpose, TaskReport, TaskState,
};
use gantry_core::ScopeName;
use serde::Deserialize;
use ulid::Ulid;
use utoipa::IntoParams;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use crate::auth::Caller;
use crate::error::{ApiError, ApiResult, ErrorBody};
use crate::extract::{Json, Query};
use crate::state::AppState;

/// The long poll: no request timeout (it ends itself within `heartbeat_secs`).
pub fn poll_router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new().routes(routes!(poll))
}

pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new().routes(routes!(report))
}

/// The host the caller's token is bound to.
async fn host_of(state: &AppState, caller: &Caller) -> ApiResult<Host> {
    let name = host_of_token(caller.name()).ok_or_else(|| {
        ApiError::forbidden(format!(
            "token '{}' is not a host token; agents use the token `gantry host enroll` prints",
            caller.name()
        ))
    })?;
    let host = crate::api::hosts::load(state, name).await?;
    caller.require(ScopeName::Agent, None, Some(&host.environment))?;
    Ok(host)
}

#[derive(Debug, Default, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct PollParams {
    /// Longest wait for work, in seconds (at most the server's heartbeat interval).
    pub wait: Option<u64>,
    /// The agent has just started: check every service it should run is on the
    /// environment's current build, and send tasks to converge it otherwise.
    pub starting: Option<bool>,
}

/// Heartbeat and wait for work.
#[utoipa::path(
    post,
    path = "/api/v1/agent/poll",
    tag = "agent",
    params(PollParams),
    request_body = AgentHello,
    responses((status = 200, body = AgentWork), (status = 403, body = ErrorBody)),
    security(("bearer" = [])),
    extensions(("x-gantry-scope" = json!("agent"))),
)]
pub async fn poll(
    State(state): State<AppState>,
    caller: Caller,
    Query(p): Query<PollParams>,
    Json(hello): Json<AgentHello>,
) -> ApiResult<axum::Json<AgentWork>> {
    let host = host_of(&state, &caller).await?;
    hello.validate()?;
    let heartbeat = state.config.ship.heartbeat_secs.max(1);
    let wait = Duration::from_secs(p.wait.unwrap_or(heartbeat).min(heartbeat));
    let now = Utc::now();
    state
        .store
        .host_seen(&host.name, &hello.facts, &hello.releases, now)
        .await?;
    state
        .log_counts
        .record(&host.name, &hello, now.timestamp(), |name| {
            crate::monitors::logs::step_of(&state, name)
        });
    let logs = crate::monitors::logs::watches_for(&state, hello.releases.keys()).await?;
    let bell = state.bell.host(&host.name);
    // A host that just started, or was lost and is back, converges to its environment.
    let returning = host.status != gantry_core::ship::HostStatus::Online;
    if (p.starting == Some(true) || returning) && !host.maintenance {
        converge(&state, &host, &hello).await?;
    }
    let deadline = tokio::time::Instant::now() + wait;
    loop {
        // Register interest before reading, so a ring between the read and the wait counts.
        let notified = bell.notified();
        let mut tasks = open_tasks(&state, &host.name).await?;
        tasks.retain(|t| !hello.running.contains(&t.task.id));
        if !tasks.is_empty() || tokio::time::Instant::now() >= deadline {
            let maintenance = state
                .store
                .get_host(&host.name)
                .await?
                .is_some_and(|h| h.maintenance);
            return Ok(axum::Json(AgentWork {
                tasks,
                heartbeat_secs: heartbeat,
                maintenance,
                logs,
            }));
        }
        tokio::select! {
            _ = notified => {}
            _ = tokio::time::sleep_until(deadline) => {}
            _ = state.shutdown.cancelled() => {}
        }
        if state.shutdown.is_cancelled() {
            return Ok(axum::Json(AgentWork {
                tasks: Vec::new(),
                heartbeat_secs: heartbeat,
                maintenance: host.maintenance,
                logs,
            }));
        }
    }
}

/// The host's open tasks, oldest first, with what the agent needs to run them.
async fn open_tasks(state: &AppState, host: &str) -> ApiResult<Vec<AgentTask>> {
    let mut tasks = state.store.host_tasks(host, true, 50).await?;
    tasks.reverse();
    let mut out = Vec::with_capacity(tasks.len());
    for task in tasks {
        out.push(agent_task(state, task).await?);
    }
    Ok(out)
}

pub async fn deploy_config(state: &AppState, service: &str) -> ApiResult<DeployConfig> {
    match state.store.get_deploy_config(service).await? {
        Some(record) => DeployConfig::parse_toml(&record.config).map_err(|e| {
            tracing::error!(service, error = %e, "stored deploy config does not parse");
            ApiError::internal()
        }),
        None => Ok(DeployConfig::parse_toml(&format!("name = \"{service}\""))?),
    }
}

async fn agent_task(state: &AppState, task: Task) -> ApiResult<AgentTask> {
    let build = state.store.get_build(task.build_id).await?.ok_or_else(|| {
        ApiError::not_found(format!(
            "build {} of task {} is gone",
            task.build_id, task.id
        ))
    })?;
    let config = deploy_config(state, &task.service).await?;
    let (artifact_url, artifact_on_server) = match &build.url {
        Some(url) => (url.clone(), false),
        None => (format!("/api/v1/builds/{}/artifact", build.id), true),
    };
    Ok(AgentTask {
        task,
        sha256: build.sha256,
        size: build.size,
        artifact_url,
        artifact_on_server,
        config,
    })
}

/// A host that was away (or is new) is brought to each environment's current build of the
/// services its roles run, unless a rollout of that service is under way there.
async fn converge(state: &AppState, host: &Host, hello: &AgentHello) -> ApiResult<()> {
    let now = Utc::now();
    let mut new = Vec::new();
    let open = state.store.host_tasks(&host.name, true, 50).await?;
    for service in state.store.list_services().await? {
        let name = service.name;
        if open.iter().any(|t| t.service == name) {
            continue;
        }
        let Some(current) = state
            .store
            .deployments(&name, &host.environment, 1)
            .await?
            .into_iter()
            .next()
        else {
            continue;
        };
        let config = deploy_config(state, &name).await?;
        if !host.has_role(config.roles.as_deref()) {
            continue;
        }
        let running = hello.releases.get(&name).and_then(|r| r.build_id);
        if running == Some(current.build_id) {
            continue;
        }
        if state
            .store
            .active_rollout(&name, &host.environment)
            .await?
            .is_some()
        {
            continue;
        }
        let Some(build) = state.store.get_build(current.build_id).await? else {
            continue;
        };
        let from = match running {
            Some(id) => state.store.get_build(id).await?,
            None => None,
        };
        tracing::info!(host = %host.name, service = %name, version = %build.version, "host converges to its environment's build");
        new.push(Task {
            id: Ulid::new(),
            rollout_id: None,
            host: host.name.clone(),
            service: name.clone(),
            environment: host.environment.clone(),
            purpose: TaskPurpose::Converge,
            wave: 0,
            build_id: build.id,
            version: build.version.clone(),
            from_build: from.as_ref().map(|b| b.id),
            from_version: from.map(|b| b.version),
            state: TaskState::Pending,
            step: None,
            output: String::new(),
            error: None,
            created_at: now,
            updated_at: now,
            switched_at: None,
            undrained_at: None,
        });
    }
    if !new.is_empty() {
        state.store.insert_loose_tasks(&new).await?;
    }
    Ok(())
}

/// Report a task's progress: the step it is on, its last output, and how it ended.
#[utoipa::path(
    post,
    path = "/api/v1/agent/tasks/{id}",
    tag = "agent",
    params(("id" = String, Path)),
    request_body = TaskReport,
    responses(
        (status = 200, body = Task),
        (status = 403, body = ErrorBody),
        (status = 404, body = ErrorBody),
        (status = 409, description = "The task is no longer open (finished or cancelled)", body = ErrorBody),
    ),
    security(("bearer" = [])),
    extensions(("x-gantry-scope" = json!("agent"))),
)]
pub async fn report(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
    Json(r): Json<TaskReport>,
) -> ApiResult<axum::Json<Task>> {
    let host = host_of(&state, &caller).await?;
    let id: Ulid = id
        .parse()
        .map_err(|_| ApiError::invalid(format!("'{id}' is not a task id")))?;
    let mut task = state
        .store
        .get_task(id)
        .await?
        .filter(|t| t.host == host.name)
        .ok_or_else(|| ApiError::not_found(format!("host {} has no task {id}", host.name)))?;
    r.validate()?;
    task.apply_report(r, Utc::now());
    if !state.store.report_task(&task).await? {
        return Err(ApiError::new(
            axum::http::StatusCode::CONFLICT,
            "not_open",
            format!("task {id} is no longer open; it was finished or cancelled"),
        ));
    }
    Ok(axum::Json(task))
}
