//! A typed client for Gantry's HTTP API, used by the CLI and (later) the host agent.
//!
//! Invariant: it speaks only the public API (the same JSON any other client sees); it shares
//! wire types with the server through `gantry_core` and nothing else.

use std::time::Duration;

use futures::{Stream, StreamExt, TryStreamExt};
use gantry_core::ship::{
    AgentHello, AgentWork, Build, BuildView, DeployConfigView, Enrolled, Enrollment, Host,
    HostView, Maintenance, NewRollout, Rollout, RolloutView, Task, TaskReport,
};
use gantry_core::token::CreatedToken;
use gantry_core::{
    Change, ChangeEvent, ChangePage, ChangePatch, NewChange, NewService, NewToken, Service,
    TokenInfo,
};
pub use reqwest::{Method, StatusCode};
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};

/// What went wrong talking to the server.
#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    /// The server answered with an error; `message` is its explanation.
    #[error("{message}")]
    Api {
        status: StatusCode,
        code: String,
        message: String,
    },
    /// The server could not be reached or the connection failed.
    #[error("cannot reach the Gantry server at {url}: {reason} (is `gantry server` running? set --url or GANTRY_URL)")]
    Unreachable { url: String, reason: String },
    /// The server's answer was not what this client understands.
    #[error("unexpected answer from the server: {0}")]
    Protocol(String),
    /// The client was set up wrongly.
    #[error("{0}")]
    Config(String),
}

pub type Result<T, E = ClientError> = std::result::Result<T, E>;

/// Filters of a change listing; `None` leaves a filter out.
#[derive(Debug, Clone, Default, Serialize)]
pub struct ChangeFilter {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub service: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub environment: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub kind: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub status: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub since: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub until: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub limit: Option<u32>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub cursor: Option<String>,
}

/// What the change stream delivers.
#[derive(Debug, Clone, PartialEq)]
pub enum StreamItem {
    /// Sent first: the stream starts after `seq`. Resume from here if the connection drops
    /// before any change arrives.
    Ready {
        seq: i64,
    },
    Change(Box<ChangeEvent>),
}

/// What a migration job's log stream delivers.
#[derive(Debug, Clone, PartialEq)]
pub enum JobLogItem {
    Line(gantry_core::migrate_job::JobLogLine),
    /// The job has ended (or is interrupted) and every line was sent.
    End(Box<gantry_core::migrate_job::Job>),
}

/// The caller's identity as the server sees it.
#[derive(Debug, Clone, Deserialize, Serialize)]
pub struct Whoami {
    pub name: String,
    pub scopes: Vec<String>,
}

#[derive(Deserialize)]
struct SeriesList {
    series: Vec<String>,
}

#[derive(Deserialize)]
struct ErrorBody {
    code: String,
    message: String,
}

#[derive(Clone)]
pub struct Client {
    http: reqwest::Client,
    base: String,
    token: Option<String>,
}

impl Client {
    /// A client for the server at `base` (`http://127.0.0.1:7070`), authenticating with
    /// `token` when given.
    pub fn new(base: &str, token: Option<String>) -> Result<Client> {
        let base = base.trim_end_matches('/').to_string();
        if !(base.starts_with("http://") || base.starts_with("https://")) {
            return Err(ClientError::Config(format!(
                "server URL '{base}' must start with http:// or https://"
            )));
        }
        let http = reqwest::Client::builder()
            .connect_timeout(Duration::from_secs(10))
            .user_agent(concat!("gantry/", env!("CARGO_PKG_VERSION")))
            .build()
            .map_err(|e| ClientError::Config(format!("cannot set up HTTP: {e}")))?;
        Ok(Client { http, base, token })
    }

    pub fn base_url(&self) -> &str {
        &self.base
    }

    fn request(&self, method: Method, path: &str) -> reqwest::RequestBuilder {
        let mut request = self.http.request(method, format!("{}{path}", self.base));
        if let Some(token) = &self.token {
            request = request.bearer_auth(token);
        }
        request
    }

    fn unreachable(&self, e: reqwest::Error) -> ClientError {
        let mut reason = e.to_string();
        let mut source = std::error::Error::source(&e);
        while let Some(inner) = source {
            reason = inner.to_string();
            source = inner.source();
        }
        ClientError::Unreachable {
            url: self.base.clone(),
            reason,
        }
    }

    async fn send(&self, request: reqwest::RequestBuilder) -> Result<reqwest::Response> {
        let response = request.send().await.map_err(|e| self.unreachable(e))?;
        if response.status().is_success() {
            return Ok(response);
        }
        let status = response.status();
        let text = response.text().await.unwrap_or_default();
        Err(match serde_json::from_str::<ErrorBody>(&text) {
            Ok(body) => ClientError::Api {
                status,
                code: body.code,
                message: body.message,
            },
            Err(_) => ClientError::Api {
                status,
                code: "http".into(),
                message: format!("the server answered {status}"),
            },
        })
    }

    async fn json<T: DeserializeOwned>(&self, request: reqwest::RequestBuilder) -> Result<T> {
        let response = self.send(request).await?;
        let bytes = response.bytes().await.map_err(|e| self.unreachable(e))?;
        serde_json::from_slice(&bytes).map_err(|e| ClientError::Protocol(e.to_string()))
    }

    pub async fn record_change(&self, change: &NewChange) -> Result<Change> {
        self.json(self.request(Method::POST, "/api/v1/changes").json(change))
            .await
    }

    pub async fn list_changes(&self, filter: &ChangeFilter) -> Result<ChangePage> {
        self.json(self.request(Method::GET, "/api/v1/changes").query(filter))
            .await
    }

    pub async fn get_change(&self, id: &str) -> Result<Change> {
        self.json(self.request(
            Method::GET,
            &format!("/api/v1/changes/{}", path_segment(id)?),
        ))
        .await
    }

    pub async fn update_change(&self, id: &str, patch: &ChangePatch) -> Result<Change> {
        self.json(
            self.request(
                Method::PATCH,
                &format!("/api/v1/changes/{}", path_segment(id)?),
            )
            .json(patch),
        )
        .await
    }

    /// Follows the change stream from after `after` (or from now). The stream ends when
    /// the connection does; callers resume with the last `seq` they saw.
    pub async fn stream_changes(
        &self,
        after: Option<i64>,
        filter: &ChangeFilter,
    ) -> Result<impl Stream<Item = Result<StreamItem>> + use<>> {
        use eventsource_stream::Eventsource;
        let mut request = self
            .request(Method::GET, "/api/v1/changes/stream")
            .query(
                &[
                    ("service", filter.service.as_deref()),
                    ("environment", filter.environment.as_deref()),
                    ("kind", filter.kind.as_deref()),
                ]
                .into_iter()
                .filter_map(|(k, v)| v.map(|v| (k, v)))
                .collect::<Vec<_>>(),
            )
            .header("accept", "text/event-stream");
        if let Some(after) = after {
            request = request.header("last-event-id", after.to_string());
        }
        let response = self.send(request).await?;
        let events = response
            .bytes_stream()
            .eventsource()
            .map_err(|e| ClientError::Protocol(e.to_string()))
            .and_then(|event| async move {
                let seq = event.id.parse::<i64>().map_err(|_| {
                    ClientError::Protocol(format!("event id '{}' is not a number", event.id))
                })?;
                let kind = match event.event.as_str() {
                    "ready" => return Ok(StreamItem::Ready { seq }),
                    "created" => gantry_core::ChangeEventKind::Created,
                    "updated" => gantry_core::ChangeEventKind::Updated,
                    other => return Err(ClientError::Protocol(format!("unknown event '{other}'"))),
                };
                let change: Change = serde_json::from_str(&event.data)
                    .map_err(|e| ClientError::Protocol(e.to_string()))?;
                Ok(StreamItem::Change(Box::new(ChangeEvent {
                    seq,
                    kind,
                    change,
                })))
            })
            .boxed();
        Ok(events)
    }

    pub async fn create_service(&self, service: &NewService) -> Result<Service> {
        self.json(self.request(Method::POST, "/api/v1/services").json(service))
            .await
    }

    pub async fn list_services(&self) -> Result<Vec<Service>> {
        self.json(self.request(Method::GET, "/api/v1/services"))
            .await
    }

    pub async fn get_service(&self, name: &str) -> Result<Service> {
        self.json(self.request(
            Method::GET,
            &format!("/api/v1/services/{}", path_segment(name)?),
        ))
        .await
    }

    pub async fn delete_service(&self, name: &str, force: bool) -> Result<()> {
        let request = self
            .request(
                Method::DELETE,
                &format!("/api/v1/services/{}", path_segment(name)?),
            )
            .query(&[("force", force)]);
        self.send(request).await.map(drop)
    }

    pub async fn create_token(&self, token: &NewToken) -> Result<CreatedToken> {
        self.json(self.request(Method::POST, "/api/v1/tokens").json(token))
            .await
    }

    pub async fn list_tokens(&self) -> Result<Vec<TokenInfo>> {
        self.json(self.request(Method::GET, "/api/v1/tokens")).await
    }

    pub async fn revoke_token(&self, name: &str) -> Result<()> {
        let request = self.request(
            Method::DELETE,
            &format!("/api/v1/tokens/{}", path_segment(name)?),
        );
        self.send(request).await.map(drop)
    }

    /// Names of stored metric series matching a Graphite glob (all when `None`).
    pub async fn list_series(&self, pattern: Option<&str>) -> Result<Vec<String>> {
        let mut request = self.request(Method::GET, "/api/v1/metrics");
        if let Some(p) = pattern {
            request = request.query(&[("pattern", p)]);
        }
        let list: SeriesList = self.json(request).await?;
        Ok(list.series)
    }

    /// Deletes the series matching a Graphite glob; returns their names.
    pub async fn delete_series(&self, pattern: &str) -> Result<Vec<String>> {
        let request = self
            .request(Method::DELETE, "/api/v1/metrics")
            .query(&[("pattern", pattern)]);
        let list: SeriesList = self.json(request).await?;
        Ok(list.series)
    }

    /// Expires, folds and compacts the metrics store; returns the server's answer.
    pub async fn compact_metrics(&self) -> Result<serde_json::Value> {
        self.json(self.request(Method::POST, "/api/v1/metrics/compact"))
            .await
    }

    pub async fn whoami(&self) -> Result<Whoami> {
        self.json(self.request(Method::GET, "/api/v1/whoami")).await
    }

    // ---- shipping ----

    /// Streams an artifact file to the server as a new build.
    pub async fn push_build(&self, file: &std::path::Path, params: &PushBuild) -> Result<Build> {
        let f = tokio::fs::File::open(file)
            .await
            .map_err(|e| ClientError::Config(format!("cannot read {}: {e}", file.display())))?;
        let len = f.metadata().await.map(|m| m.len()).ok();
        let body =
            reqwest::Body::wrap_stream(tokio_util::io::ReaderStream::with_capacity(f, 256 * 1024));
        let mut request = self
            .request(Method::POST, "/api/v1/builds")
            .query(params)
            .header(reqwest::header::CONTENT_TYPE, "application/octet-stream")
            .body(body);
        if let Some(len) = len {
            request = request.header(reqwest::header::CONTENT_LENGTH, len);
        }
        self.json(request).await
    }

    /// Registers a build agents fetch from `params.url` (with `params.sha256`).
    pub async fn register_build(&self, params: &PushBuild) -> Result<Build> {
        self.json(self.request(Method::POST, "/api/v1/builds").query(params))
            .await
    }

    pub async fn list_builds(&self, service: Option<&str>, limit: u32) -> Result<Vec<Build>> {
        let mut request = self
            .request(Method::GET, "/api/v1/builds")
            .query(&[("limit", limit)]);
        if let Some(s) = service {
            request = request.query(&[("service", s)]);
        }
        self.json(request).await
    }

    /// A build by version (with `service`), id or unique id prefix.
    pub async fn get_build(&self, reference: &str, service: Option<&str>) -> Result<BuildView> {
        let mut request = self.request(
            Method::GET,
            &format!("/api/v1/builds/{}", path_segment(reference)?),
        );
        if let Some(s) = service {
            request = request.query(&[("service", s)]);
        }
        self.json(request).await
    }

    /// Applies a service's deploy config (TOML text).
    pub async fn apply_deploy_config(
        &self,
        service: &str,
        toml: String,
    ) -> Result<DeployConfigView> {
        self.json(
            self.request(
                Method::PUT,
                &format!("/api/v1/services/{}/deploy-config", path_segment(service)?),
            )
            .header(reqwest::header::CONTENT_TYPE, "application/toml")
            .body(toml),
        )
        .await
    }

    pub async fn enroll_host(&self, enrollment: &Enrollment) -> Result<Enrolled> {
        self.json(self.request(Method::POST, "/api/v1/hosts").json(enrollment))
            .await
    }

    pub async fn list_hosts(&self, environment: Option<&str>) -> Result<Vec<Host>> {
        let mut request = self.request(Method::GET, "/api/v1/hosts");
        if let Some(e) = environment {
            request = request.query(&[("environment", e)]);
        }
        self.json(request).await
    }

    pub async fn get_host(&self, name: &str) -> Result<HostView> {
        self.json(self.request(
            Method::GET,
            &format!("/api/v1/hosts/{}", path_segment(name)?),
        ))
        .await
    }

    pub async fn set_maintenance(&self, name: &str, on: bool) -> Result<Host> {
        self.json(
            self.request(
                Method::PUT,
                &format!("/api/v1/hosts/{}/maintenance", path_segment(name)?),
            )
            .json(&Maintenance { on }),
        )
        .await
    }

    pub async fn create_rollout(&self, new: &NewRollout) -> Result<Rollout> {
        self.json(self.request(Method::POST, "/api/v1/rollouts").json(new))
            .await
    }

    pub async fn list_rollouts(
        &self,
        service: Option<&str>,
        environment: Option<&str>,
        active: bool,
        limit: u32,
    ) -> Result<Vec<Rollout>> {
        let mut request = self
            .request(Method::GET, "/api/v1/rollouts")
            .query(&[("limit", limit)])
            .query(&[("active", active)]);
        if let Some(s) = service {
            request = request.query(&[("service", s)]);
        }
        if let Some(e) = environment {
            request = request.query(&[("environment", e)]);
        }
        self.json(request).await
    }

    pub async fn get_rollout(&self, id: &str) -> Result<RolloutView> {
        self.json(self.request(
            Method::GET,
            &format!("/api/v1/rollouts/{}", path_segment(id)?),
        ))
        .await
    }

    /// `pause`, `resume` or `abort`.
    pub async fn control_rollout(&self, id: &str, action: &str) -> Result<Rollout> {
        self.json(self.request(
            Method::POST,
            &format!(
                "/api/v1/rollouts/{}/{}",
                path_segment(id)?,
                path_segment(action)?
            ),
        ))
        .await
    }

    // ---- what agents call ----

    /// The heartbeat long poll: waits up to `wait` for tasks.
    pub async fn agent_poll(
        &self,
        hello: &AgentHello,
        wait: Duration,
        starting: bool,
    ) -> Result<AgentWork> {
        self.json(
            self.request(Method::POST, "/api/v1/agent/poll")
                .query(&[("wait", wait.as_secs())])
                .query(&[("starting", starting)])
                .timeout(wait + Duration::from_secs(30))
                .json(hello),
        )
        .await
    }

    pub async fn agent_report(&self, task: &str, report: &TaskReport) -> Result<Task> {
        self.json(
            self.request(
                Method::POST,
                &format!("/api/v1/agent/tasks/{}", path_segment(task)?),
            )
            .timeout(Duration::from_secs(30))
            .json(report),
        )
        .await
    }

    // ---- migrate ----

    /// Whether the contract gate is open for these services in `environment`.
    pub async fn migrate_gate(
        &self,
        services: &[String],
        environment: &str,
        expanded_at: Option<chrono::DateTime<chrono::Utc>>,
    ) -> Result<gantry_core::migrate::GateDecision> {
        let body = serde_json::json!({
            "services": services,
            "environment": environment,
            "expanded_at": expanded_at,
        });
        self.json(
            self.request(Method::POST, "/api/v1/migrate/gate")
                .json(&body),
        )
        .await
    }

    /// Records a migration as a change (kind `migration`).
    pub async fn record_migration(&self, record: &serde_json::Value) -> Result<Change> {
        self.json(
            self.request(Method::POST, "/api/v1/migrate/changes")
                .json(record),
        )
        .await
    }

    // ---- monitors (the server's views, as JSON) ----

    /// Applies (or checks, `dry_run`) a monitor file as `source`.
    pub async fn apply_monitors(
        &self,
        source: &str,
        file_name: &str,
        text: &str,
        dry_run: bool,
    ) -> Result<serde_json::Value> {
        self.json(
            self.request(
                Method::PUT,
                &format!("/api/v1/monitors/files/{}", path_segment(source)?),
            )
            .query(&[
                ("dry_run", dry_run.to_string()),
                ("file", file_name.to_string()),
            ])
            .header("content-type", "application/toml")
            .body(text.to_string()),
        )
        .await
    }

    /// `GET /api/v1/monitors` or, with a name, `GET /api/v1/monitors/{name}`.
    pub async fn monitors(&self, name: Option<&str>) -> Result<serde_json::Value> {
        let path = match name {
            Some(n) => format!("/api/v1/monitors/{}", path_segment(n)?),
            None => "/api/v1/monitors".to_string(),
        };
        self.json(self.request(Method::GET, &path)).await
    }

    pub async fn rotate_ping_key(&self, name: &str) -> Result<serde_json::Value> {
        self.json(self.request(
            Method::POST,
            &format!("/api/v1/monitors/{}/rotate-key", path_segment(name)?),
        ))
        .await
    }

    /// Open alerts and notification deliveries (`GET /api/v1/alerts`).
    pub async fn alerts(&self, query: &[(&str, String)]) -> Result<serde_json::Value> {
        self.json(self.request(Method::GET, "/api/v1/alerts").query(query))
            .await
    }

    /// `POST /api/v1/silences`.
    pub async fn create_silence(&self, body: &serde_json::Value) -> Result<serde_json::Value> {
        self.json(self.request(Method::POST, "/api/v1/silences").json(body))
            .await
    }

    /// `POST /api/v1/maintenance-windows`.
    pub async fn create_maintenance_window(
        &self,
        body: &serde_json::Value,
    ) -> Result<serde_json::Value> {
        self.json(
            self.request(Method::POST, "/api/v1/maintenance-windows")
                .json(body),
        )
        .await
    }

    /// `GET /api/v1/silences` (with `all`, ended ones too).
    pub async fn silences(&self, all: bool) -> Result<serde_json::Value> {
        self.json(
            self.request(Method::GET, "/api/v1/silences")
                .query(&[("all", all.to_string())]),
        )
        .await
    }

    /// `DELETE /api/v1/silences/{id}`: ends a silence or maintenance window now.
    pub async fn expire_silence(&self, id: &str) -> Result<serde_json::Value> {
        self.json(self.request(
            Method::DELETE,
            &format!("/api/v1/silences/{}", path_segment(id)?),
        ))
        .await
    }

    /// Regression verdicts (`GET /api/v1/verdicts`).
    pub async fn verdicts(
        &self,
        query: &[(&str, String)],
    ) -> Result<Vec<gantry_core::detect::Verdict>> {
        self.json(self.request(Method::GET, "/api/v1/verdicts").query(query))
            .await
    }

    // ---- incidents ----

    /// The report (`GET /api/v1/report`).
    pub async fn report(&self, query: &[(&str, String)]) -> Result<gantry_core::report::Report> {
        self.json(self.request(Method::GET, "/api/v1/report").query(query))
            .await
    }

    pub async fn open_incident(
        &self,
        new: &gantry_core::incident::NewIncident,
    ) -> Result<gantry_core::incident::Incident> {
        self.json(self.request(Method::POST, "/api/v1/incidents").json(new))
            .await
    }

    pub async fn list_incidents(
        &self,
        query: &[(&str, String)],
    ) -> Result<Vec<gantry_core::incident::Incident>> {
        self.json(self.request(Method::GET, "/api/v1/incidents").query(query))
            .await
    }

    pub async fn get_incident(&self, id: &str) -> Result<gantry_core::incident::IncidentView> {
        self.json(self.request(
            Method::GET,
            &format!("/api/v1/incidents/{}", path_segment(id)?),
        ))
        .await
    }

    /// `ack`, `mitigate`, `resolve`, `rollback` or `flag-off`.
    pub async fn incident_action(
        &self,
        id: &str,
        action: &str,
    ) -> Result<gantry_core::incident::ActionResult> {
        self.json(self.request(
            Method::POST,
            &format!(
                "/api/v1/incidents/{}/{}",
                path_segment(id)?,
                path_segment(action)?
            ),
        ))
        .await
    }

    /// A note (`POST …/notes`), the cause (`PUT …/cause`) or a correction (`PATCH`).
    pub async fn incident_write(
        &self,
        method: Method,
        id: &str,
        tail: Option<&str>,
        body: &serde_json::Value,
    ) -> Result<gantry_core::incident::Incident> {
        let mut path = format!("/api/v1/incidents/{}", path_segment(id)?);
        if let Some(tail) = tail {
            path.push('/');
            path.push_str(tail);
        }
        self.json(self.request(method, &path).json(body)).await
    }

    /// Queues a migration job (`--via-server`).
    pub async fn submit_migrate_job(
        &self,
        new: &gantry_core::migrate_job::NewJob,
    ) -> Result<gantry_core::migrate_job::Job> {
        self.json(self.request(Method::POST, "/api/v1/migrate/jobs").json(new))
            .await
    }

    /// Migration jobs, newest first; `states` comma-separated.
    pub async fn list_migrate_jobs(
        &self,
        database: Option<&str>,
        states: Option<&str>,
        limit: u32,
    ) -> Result<Vec<gantry_core::migrate_job::Job>> {
        let mut query = vec![("limit", limit.to_string())];
        if let Some(db) = database {
            query.push(("database", db.to_string()));
        }
        if let Some(states) = states {
            query.push(("state", states.to_string()));
        }
        self.json(
            self.request(Method::GET, "/api/v1/migrate/jobs")
                .query(&query),
        )
        .await
    }

    pub async fn get_migrate_job(&self, id: &str) -> Result<gantry_core::migrate_job::Job> {
        self.json(self.request(
            Method::GET,
            &format!("/api/v1/migrate/jobs/{}", path_segment(id)?),
        ))
        .await
    }

    /// `pause`, `resume`, `abort` or `retry` (with `body` for retry).
    pub async fn control_migrate_job(
        &self,
        id: &str,
        action: &str,
        body: Option<&serde_json::Value>,
    ) -> Result<gantry_core::migrate_job::Job> {
        let mut request = self.request(
            Method::POST,
            &format!(
                "/api/v1/migrate/jobs/{}/{}",
                path_segment(id)?,
                path_segment(action)?
            ),
        );
        if let Some(body) = body {
            request = request.json(body);
        }
        self.json(request).await
    }

    /// Follows a job's log from after `after`: its lines, then the job once it has ended.
    /// The stream ends when the connection does; callers resume with the last `seq`.
    pub async fn stream_migrate_log(
        &self,
        id: &str,
        after: i64,
    ) -> Result<impl Stream<Item = Result<JobLogItem>> + use<>> {
        use eventsource_stream::Eventsource;
        let request = self
            .request(
                Method::GET,
                &format!("/api/v1/migrate/jobs/{}/log", path_segment(id)?),
            )
            .query(&[("after", after)])
            .header("accept", "text/event-stream");
        let response = self.send(request).await?;
        let events = response
            .bytes_stream()
            .eventsource()
            .map_err(|e| ClientError::Protocol(e.to_string()))
            .and_then(|event| async move {
                let protocol = |e: serde_json::Error| ClientError::Protocol(e.to_string());
                match event.event.as_str() {
                    "line" => Ok(JobLogItem::Line(
                        serde_json::from_str(&event.data).map_err(protocol)?,
                    )),
                    "end" => Ok(JobLogItem::End(Box::new(
                        serde_json::from_str(&event.data).map_err(protocol)?,
                    ))),
                    other => Err(ClientError::Protocol(format!("unknown event '{other}'"))),
                }
            })
            .boxed();
        Ok(events)
    }

    // ---- flags (documents as JSON: the server's flag views) ----

    /// A request to `/api/v1/…` whose path segments are percent-encoded.
    fn segments_request(
        &self,
        method: Method,
        segments: &[&str],
    ) -> Result<reqwest::RequestBuilder> {
        let mut url = reqwest::Url::parse(&self.base)
            .map_err(|e| ClientError::Config(format!("server URL '{}': {e}", self.base)))?;
        url.path_segments_mut()
            .map_err(|_| {
                ClientError::Config(format!("server URL '{}' cannot take a path", self.base))
            })?
            .pop_if_empty()
            .extend(segments);
        let mut request = self.http.request(method, url);
        if let Some(token) = &self.token {
            request = request.bearer_auth(token);
        }
        Ok(request)
    }

    /// Sends a flag request; returns the body and the `ETag` (the flag's version).
    pub async fn flag_call(
        &self,
        method: Method,
        segments: &[&str],
        query: &[(&str, String)],
        body: Option<&serde_json::Value>,
        if_match: Option<&str>,
    ) -> Result<(serde_json::Value, Option<String>)> {
        let mut request = self.segments_request(method, segments)?.query(query);
        if let Some(body) = body {
            request = request.json(body);
        }
        if let Some(etag) = if_match {
            request = request.header(reqwest::header::IF_MATCH, etag);
        }
        let response = self.send(request).await?;
        let etag = response
            .headers()
            .get(reqwest::header::ETAG)
            .and_then(|v| v.to_str().ok())
            .map(str::to_string);
        if response.status() == StatusCode::NO_CONTENT {
            return Ok((serde_json::Value::Null, etag));
        }
        let bytes = response.bytes().await.map_err(|e| self.unreachable(e))?;
        let value =
            serde_json::from_slice(&bytes).map_err(|e| ClientError::Protocol(e.to_string()))?;
        Ok((value, etag))
    }

    /// A flag and its `ETag`.
    pub async fn get_flag(
        &self,
        service: &str,
        name: &str,
    ) -> Result<(serde_json::Value, Option<String>)> {
        self.flag_call(
            Method::GET,
            &["api", "v1", "flags", service, name],
            &[],
            None,
            None,
        )
        .await
    }

    /// Reads the flag for its `ETag`, then sends `method` to `…/flags/{service}/{name}/{tail…}`
    /// with it as `If-Match`, so a write never overwrites a change made since the read.
    pub async fn flag_write(
        &self,
        method: Method,
        service: &str,
        name: &str,
        tail: &[&str],
        body: Option<&serde_json::Value>,
    ) -> Result<serde_json::Value> {
        let (_, etag) = self.get_flag(service, name).await?;
        let mut segments = vec!["api", "v1", "flags", service, name];
        segments.extend_from_slice(tail);
        self.flag_call(method, &segments, &[], body, etag.as_deref())
            .await
            .map(|(value, _)| value)
    }

    /// The HTTP client and token, for fetching artifacts with resume.
    pub fn http(&self) -> &reqwest::Client {
        &self.http
    }

    pub fn token(&self) -> Option<&str> {
        self.token.as_deref()
    }
}

/// Query of `POST /api/v1/builds`.
#[derive(Debug, Clone, Default, Serialize)]
pub struct PushBuild {
    pub service: String,
    pub version: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub commit: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub commit_time: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub url: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub sha256: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub size: Option<u64>,
}

/// Refuses a path segment that would change the path it is put into.
fn path_segment(s: &str) -> Result<&str> {
    if s.is_empty() || s.contains(['/', '?', '#', '%']) || s == "." || s == ".." {
        return Err(ClientError::Config(format!(
            "'{s}' is not a valid name or id"
        )));
    }
    Ok(s)
}
