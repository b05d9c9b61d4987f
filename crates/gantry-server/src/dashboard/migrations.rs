//! `/ui/migrations`: the migration jobs the server runs (`--via-server`): state, database,
//! phase, who asked and when, live; and each configured database's contract gate.
//! `/ui/migrations/{id}`: one job with its log's tail, and pause, resume, abort and retry
//! for a person with `migrate` on every service of its database (through
//! `migrate::jobs::control_by`, the API's rule). A job's page follows it while it runs.

use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Redirect, Response};
use gantry_core::migrate_job::{control_job, Job, JobAction, JobKind, JobLogLine, JobState};
use gantry_core::{ChangeKind, ScopeName};
use maud::{html, Markup};
use serde::Deserialize;

use super::session::{check_post, CsrfForm, Viewer};
use super::view::{
    self, badge, empty, non_empty, short, time, time_or_dash, Nav, UiError, UiResult,
};
use crate::error::ApiError;
use crate::migrate::jobs::{self, RetryOptions};
use crate::state::AppState;

/// Jobs listed at most.
const LIST_LIMIT: u32 = 200;
/// Log lines shown on a job's page.
const LOG_LINES: usize = 200;
/// How often a page re-reads jobs that have not ended.
const POLL: &str = "every 5s";

/// The list's filters; all live in the URL.
#[derive(Debug, Default, Clone, Deserialize)]
pub struct JobsQuery {
    pub database: Option<String>,
    pub state: Option<String>,
}

impl JobsQuery {
    fn database(&self) -> Option<&str> {
        non_empty(&self.database)
    }

    fn states(&self) -> Result<Vec<JobState>, UiError> {
        match non_empty(&self.state) {
            None => Ok(Vec::new()),
            Some(s) => Ok(vec![s
                .parse::<JobState>()
                .map_err(|e| UiError::from(ApiError::from(e)))?]),
        }
    }

    fn filtered(&self) -> bool {
        self.database().is_some() || non_empty(&self.state).is_some()
    }

    fn query(&self) -> String {
        let mut q = form_urlencoded::Serializer::new(String::new());
        if let Some(d) = self.database() {
            q.append_pair("database", d);
        }
        if let Some(s) = non_empty(&self.state) {
            q.append_pair("state", s);
        }
        q.finish()
    }

    /// The jobs table's own URL, with these filters.
    fn table_href(&self) -> String {
        let q = self.query();
        if q.is_empty() {
            "/ui/migrations/table".to_string()
        } else {
            format!("/ui/migrations/table?{q}")
        }
    }
}

/// What a job does, in a few words: its phase, or the table it rebuilds.
fn what(job: &Job) -> String {
    match job.kind {
        JobKind::Apply => job.spec.phase.clone(),
        JobKind::Rebuild => format!("rebuild {}", job.spec.table.as_deref().unwrap_or("?")),
    }
}

/// The state's word, and what a person asked of the server running it.
fn state_words(job: &Job) -> Markup {
    html! {
        (badge(job.state.as_str()))
        @if let Some(c) = &job.control { " " span.small { "(" (c) " asked)" } }
    }
}

/// The jobs the viewer may read with these filters.
async fn readable(state: &AppState, viewer: &Viewer, q: &JobsQuery) -> Result<Vec<Job>, UiError> {
    let mut found = state
        .store
        .list_migrate_jobs(q.database(), &q.states()?, LIST_LIMIT)
        .await?;
    found.retain(|j| jobs::readable_by(&viewer.grant, j));
    Ok(found)
}

/// The jobs table, re-read while a job shown has not ended and when a migration change
/// comes.
fn table(q: &JobsQuery, found: &[Job]) -> Markup {
    let running = found.iter().any(|j| !j.state.is_final());
    let trigger = if running {
        format!("{POLL}, sse:created throttle:2s, sse:updated throttle:2s")
    } else {
        "sse:created throttle:2s, sse:updated throttle:2s".to_string()
    };
    html! {
        div #jobs-table hx-get=(q.table_href()) hx-trigger=(trigger) hx-swap="outerHTML" {
            @if found.is_empty() && !q.filtered() {
                (empty("No migration jobs yet.", html! {
                    "Have the server run one with "
                    code { "gantry migrate apply --phase expand --db shop --via-server" }
                    " (the database named in the server's " code { "[migrate.databases]" } ")."
                }))
            } @else if found.is_empty() {
                p.muted { "No job matches these filters. " a href="/ui/migrations" { "Show every job" } }
            } @else {
                div.scroll {
                    table.grid {
                        caption.sr-only { "Migration jobs, newest first" }
                        thead { tr {
                            th scope="col" { "Job" } th scope="col" { "Database" } th scope="col" { "Phase" }
                            th scope="col" { "Environment" } th scope="col" { "State" } th scope="col" { "Requested" }
                            th scope="col" { "Finished" }
                        } }
                        tbody {
                            @for j in found {
                                tr id=(format!("job-{}", j.id)) {
                                    th scope="row" { a href=(format!("/ui/migrations/{}", j.id)) { code { (short(&j.id.to_string())) } } }
                                    td { (j.database) }
                                    td { (what(j)) }
                                    td { (j.environment) }
                                    td { (state_words(j)) }
                                    td { (time(j.created_at)) " by " (j.requested_by) }
                                    td { (time_or_dash(j.finished_at)) }
                                }
                            }
                        }
                    }
                }
            }
        }
    }
}

/// The contract gate of each configured database whose services the viewer may all read.
async fn gates(state: &AppState, viewer: &Viewer) -> Result<Markup, UiError> {
    let databases = &state.config.migrate.databases;
    if databases.is_empty() {
        return Ok(html! {
            p.hint {
                "No database is set up for jobs the server runs: add a "
                code { "[migrate.databases.NAME]" } " (its " code { "url_env" } ", "
                code { "services" } " and " code { "environment" } ") to the server's configuration."
            }
        });
    }
    let mut rows = Vec::new();
    for (name, db) in databases {
        if !db
            .services
            .iter()
            // The gate answers those who may migrate, as the API's gate does.
            .all(|s| viewer.allows(ScopeName::Migrate, Some(s), Some(&db.environment)))
        {
            continue;
        }
        let (decision, expanded_at) = jobs::gate_now(state, name, db).await?;
        rows.push((name, db, decision, expanded_at));
    }
    Ok(html! {
        @if rows.is_empty() {
            p.muted { "Your token may migrate none of the configured databases' services, so no gate is shown." }
        } @else {
            div.scroll {
                table.grid aria-labelledby="gate-h" {
                    thead { tr {
                        th scope="col" { "Database" } th scope="col" { "Environment" } th scope="col" { "Services" }
                        th scope="col" { "Newest expand" } th scope="col" { "Contract gate" } th scope="col" { "Why" }
                    } }
                    tbody {
                        @for (name, db, decision, expanded_at) in &rows {
                            tr {
                                th scope="row" { (name) }
                                td { (db.environment) }
                                td {
                                    @for (i, s) in db.services.iter().enumerate() {
                                        @if i > 0 { ", " }
                                        a href=(format!("/ui/services/{s}")) { (s) }
                                    }
                                }
                                td { (time_or_dash(*expanded_at)) }
                                td { (badge(if decision.open { "gate_open" } else { "gate_closed" })) }
                                td.small {
                                    (decision.reason)
                                    @if let Some(at) = decision.opens_at { br; "Opens " (time(at)) }
                                }
                            }
                        }
                    }
                }
            }
            p.hint {
                "The newest expand is the newest succeeded expand migration of the database in the change log; "
                "a contract job checks the database's own version table again when it runs."
            }
        }
    })
}

/// `GET /ui/migrations`.
pub async fn page(
    State(state): State<AppState>,
    viewer: Viewer,
    Query(q): Query<JobsQuery>,
) -> UiResult {
    // The stream starts where this page's read did, so nothing in between is missed.
    let seq = state.store.last_event_seq().await?;
    let found = readable(&state, &viewer, &q).await?;
    let gates = gates(&state, &viewer).await?;
    let databases: Vec<&String> = state.config.migrate.databases.keys().collect();
    let chosen_state = non_empty(&q.state);
    let stream = form_urlencoded::Serializer::new(String::new())
        .append_pair("after", &seq.to_string())
        .append_pair("kind", ChangeKind::Migration.as_str())
        .finish();
    let body = html! {
        div.heading {
            h1 { "Migrations" }
            (view::live_badge())
        }
        form.filters method="get" action="/ui/migrations" {
            label { "Database "
                input type="text" name="database" list="databases" value=[q.database()];
            }
            datalist #databases { @for d in &databases { option value=(d) {} } }
            label { "State "
                select name="state" {
                    option value="" { "any" }
                    @for s in JobState::ALL {
                        option value=(s.as_str()) selected[chosen_state == Some(s.as_str())] { (s.as_str()) }
                    }
                }
            }
            button type="submit" { "Filter" }
            @if q.filtered() { " " a href="/ui/migrations" { "Clear" } }
        }
        div hx-ext="sse" sse-connect=(format!("/ui/stream/changes?{stream}")) {
            (table(&q, &found))
        }
        h2 #gate-h { "Contract gates" }
        (gates)
    };
    Ok(view::page(
        Some(&viewer),
        "Migrations",
        Nav::Migrations,
        body,
    ))
}

/// `GET /ui/migrations/table`: the jobs table alone, for the live refresh.
pub async fn table_fragment(
    State(state): State<AppState>,
    viewer: Viewer,
    Query(q): Query<JobsQuery>,
) -> UiResult {
    let found = readable(&state, &viewer, &q).await?;
    Ok(table(&q, &found))
}

/// The job `id`, if the viewer may read it (the API's rule).
async fn load(state: &AppState, viewer: &Viewer, id: &str) -> Result<Job, UiError> {
    let id = crate::api::parse_id("job", id)?;
    let job = state.store.get_migrate_job(id).await?.ok_or_else(|| {
        UiError::not_found(format!(
            "no migration job {id}; the migrations page lists them"
        ))
    })?;
    if !jobs::readable_by(&viewer.grant, &job) {
        viewer.require(
            ScopeName::Read,
            job.services.first().map(String::as_str),
            Some(&job.environment),
        )?;
    }
    Ok(job)
}

/// Whether the viewer may pause, resume, abort or retry `job`: `migrate` on every service
/// of its database, in its environment.
fn may_control(viewer: &Viewer, job: &Job) -> bool {
    job.services
        .iter()
        .all(|s| viewer.allows(ScopeName::Migrate, Some(s), Some(&job.environment)))
}

/// The part of a job's page that changes while it runs: state, controls and the log's
/// tail. Re-read every few seconds until the job ends.
fn live(viewer: &Viewer, job: &Job, log: &[JobLogLine], cut: bool) -> Markup {
    let actions: Vec<JobAction> = if may_control(viewer, job) {
        [
            JobAction::Pause,
            JobAction::Resume,
            JobAction::Abort,
            JobAction::Retry,
        ]
        .into_iter()
        .filter(|a| control_job(job, *a).is_ok())
        .collect()
    } else {
        Vec::new()
    };
    html! {
        div #job-live
            hx-get=[(!job.state.is_final()).then(|| format!("/ui/migrations/{}/live", job.id))]
            hx-trigger=[(!job.state.is_final()).then_some(POLL)]
            hx-swap=[(!job.state.is_final()).then_some("outerHTML")] {
            section aria-labelledby="state-h" {
                h2 #state-h { "State" }
                p.big { (state_words(job)) }
                dl.facts {
                    dt { "Started" } dd { (time_or_dash(job.started_at)) }
                    dt { "Finished" } dd { (time_or_dash(job.finished_at)) }
                    dt { "Updated" } dd { (time(job.updated_at)) }
                    dt { "Run by" } dd { (job.holder.as_deref().unwrap_or("no server now")) }
                }
                @if let Some(e) = &job.error { p.error { (e) } }
                @if !actions.is_empty() {
                    div.actions {
                        @for a in &actions {
                            form method="post" action=(format!("/ui/migrations/{}/{}", job.id, a.as_str())) {
                                input type="hidden" name="_csrf" value=(viewer.csrf);
                                button type="submit" class=(if *a == JobAction::Abort { "danger" } else { "" }) {
                                    (capitalized(a.as_str())) span.sr-only { " the job" }
                                }
                            }
                        }
                    }
                }
            }
            h2 #log-h { "Log" }
            @if cut {
                p.small {
                    "The last " (LOG_LINES) " lines; " code { "gantry migrate watch " (job.id) } " follows the whole log."
                }
            }
            @if log.is_empty() {
                p.muted { "Nothing logged yet." }
            } @else {
                div.scroll {
                    table.grid aria-labelledby="log-h" {
                        thead { tr { th scope="col" { "Time" } th scope="col" { "Line" } } }
                        tbody {
                            @for l in log {
                                tr { td { (time(l.at)) } td { (l.text) } }
                            }
                        }
                    }
                }
            }
        }
    }
}

fn capitalized(word: &str) -> String {
    let mut chars = word.chars();
    chars.next().map_or_else(String::new, |c| {
        c.to_uppercase().chain(chars).collect::<String>()
    })
}

/// `GET /ui/migrations/{id}`.
pub async fn show(
    State(state): State<AppState>,
    viewer: Viewer,
    Path(id): Path<String>,
) -> UiResult {
    let job = load(&state, &viewer, &id).await?;
    let (log, cut) = jobs::log_tail(&state, job.id, LOG_LINES).await?;
    let title = format!("{} {}", job.database, what(&job));
    let body = html! {
        h1 { "Migration job: " (title) }
        dl.facts {
            dt { "Database" } dd { (job.database) }
            dt { "Kind" } dd { (match job.kind { JobKind::Apply => "apply", JobKind::Rebuild => "rebuild" }) }
            @if job.kind == JobKind::Rebuild {
                dt { "Alter" } dd { code { (job.spec.alter.as_deref().unwrap_or("")) } }
            }
            dt { "Environment" } dd { (job.environment) }
            dt { "Services" } dd {
                @for (i, s) in job.services.iter().enumerate() {
                    @if i > 0 { ", " }
                    a href=(format!("/ui/services/{s}")) { (s) }
                }
            }
            dt { "Requested" } dd { (time(job.created_at)) " by " (job.requested_by) }
            dt { "Files" } dd { (job.spec.files.len()) }
            @if job.spec.force {
                dt { "Forced" } dd { (job.spec.reason.as_deref().unwrap_or("")) }
            }
            dt { "Change" } dd { a href=(format!("/ui/changes/{}", job.change_id)) { (short(&job.change_id.to_string())) } }
            dt { "Id" } dd { code { (job.id) } }
        }
        (live(&viewer, &job, &log, cut))
        @if let Some(report) = &job.report {
            details {
                summary { "Report" }
                pre.output { (serde_json::to_string_pretty(report).unwrap_or_default()) }
            }
        }
    };
    Ok(view::page(Some(&viewer), &title, Nav::Migrations, body))
}

/// `GET /ui/migrations/{id}/live`: the changing part of a job's page.
pub async fn live_fragment(
    State(state): State<AppState>,
    viewer: Viewer,
    Path(id): Path<String>,
) -> UiResult {
    let job = load(&state, &viewer, &id).await?;
    let (log, cut) = jobs::log_tail(&state, job.id, LOG_LINES).await?;
    Ok(live(&viewer, &job, &log, cut))
}

/// `POST /ui/migrations/{id}/{pause|resume|abort|retry}` (a retry runs the files the job
/// holds again; to send fixed files, `gantry migrate retry JOB --dir DIR`).
pub async fn control(
    State(state): State<AppState>,
    viewer: Viewer,
    headers: HeaderMap,
    Path((id, action)): Path<(String, String)>,
    axum::Form(form): axum::Form<CsrfForm>,
) -> Result<Response, UiError> {
    check_post(&viewer, &headers, form.csrf.as_deref())?;
    let job = load(&state, &viewer, &id).await?;
    for service in &job.services {
        viewer.require(ScopeName::Migrate, Some(service), Some(&job.environment))?;
    }
    let action: JobAction = action.parse().map_err(|e| {
        UiError::new(
            StatusCode::NOT_FOUND,
            ApiError::from(e).message + "; the job's page has the actions it allows",
        )
    })?;
    jobs::control_by(
        &state,
        &viewer.grant,
        Some("dashboard"),
        job.id,
        action,
        RetryOptions::default(),
    )
    .await?;
    Ok(Redirect::to(&format!("/ui/migrations/{}", job.id)).into_response())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn action_words_are_capitalized() {
        assert_eq!(capitalized("pause"), "Pause");
        assert_eq!(capitalized(""), "");
    }

    #[test]
    fn the_list_keeps_its_filters() {
        let q = JobsQuery {
            database: Some("shop".into()),
            state: Some("running".into()),
        };
        assert_eq!(q.query(), "database=shop&state=running");
        assert_eq!(q.states().unwrap(), vec![JobState::Running]);
        let bad = JobsQuery {
            database: None,
            state: Some("sleeping".into()),
        };
        assert_eq!(bad.states().unwrap_err().status, StatusCode::BAD_REQUEST);
    }
}
