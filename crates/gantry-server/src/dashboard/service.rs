//! `/ui/services/{name}`: the pipeline and the build each environment runs, builds with
//! their lead time, rollouts, changes and the key metrics' graphs with every change drawn;
//! deploy, promote and roll back, each behind a confirmation page showing what would
//! happen (`ship::rollouts::plan`, the same function the API's start runs).

use std::collections::BTreeMap;

use axum::extract::{Path, Query, State};
use axum::http::HeaderMap;
use axum::response::{IntoResponse, Redirect, Response};
use chrono::{DateTime, Utc};
use gantry_core::ship::{NewRollout, RolloutKind};
use gantry_core::{ChangeQuery, ScopeName};
use gantry_store::BuildQuery;
use maud::html;
use serde::Deserialize;

use super::metrics::{graph, GraphQuery};
use super::overview::cell;
use super::session::{check_post, Viewer};
use super::view::{
    self, badge, empty, non_empty, short, time, time_or_dash, Nav, UiError, UiResult,
};
use crate::state::AppState;

async fn load(
    state: &AppState,
    viewer: &Viewer,
    name: &str,
) -> Result<gantry_core::Service, UiError> {
    // A service the token may not read answers as one that does not exist: the page must
    // not tell a narrowed token which services there are.
    let missing = || {
        UiError::not_found(format!(
            "no service named '{name}' that this token may read; the overview lists them"
        ))
    };
    let service = state.store.get_service(name).await?.ok_or_else(missing)?;
    let readable = viewer.allows(ScopeName::Read, Some(name), None)
        || service
            .environments
            .iter()
            .any(|e| viewer.allows(ScopeName::Read, Some(name), Some(e)));
    if !readable {
        return Err(missing());
    }
    Ok(service)
}

/// A duration for people: `3 d 4 h`, `2 h 5 min`, `40 s`.
pub fn span(secs: i64) -> String {
    let s = secs.max(0);
    match s {
        s if s >= 86_400 => format!("{} d {} h", s / 86_400, s % 86_400 / 3600),
        s if s >= 3600 => format!("{} h {} min", s / 3600, s % 3600 / 60),
        s if s >= 60 => format!("{} min", s / 60),
        s => format!("{s} s"),
    }
}

/// `GET /ui/services/{name}`.
pub async fn page(
    State(state): State<AppState>,
    viewer: Viewer,
    Path(name): Path<String>,
) -> UiResult {
    let service = load(&state, &viewer, &name).await?;
    let envs: Vec<String> = service
        .environments
        .iter()
        .filter(|e| viewer.allows(ScopeName::Read, Some(&name), Some(e)))
        .cloned()
        .collect();
    let mut hosts = state.store.list_hosts(None).await?;
    for h in &mut hosts {
        crate::api::hosts::with_status(&state, h);
    }
    let mut cells = Vec::new();
    for e in &envs {
        cells.push((e.clone(), cell(&state, &hosts, &name, e).await?));
    }
    // Builds and the service file's key metrics are the whole service's, as the API reads
    // them: a token narrowed to one environment sees neither.
    let whole = viewer.allows(ScopeName::Read, Some(&name), None);
    let builds = if !whole {
        Vec::new()
    } else {
        state
            .store
            .find_builds(&BuildQuery {
                service: Some(name.clone()),
                limit: 20,
                ..Default::default()
            })
            .await?
    };
    let mut first_runs: Vec<BTreeMap<String, DateTime<Utc>>> = Vec::new();
    for b in &builds {
        let mut firsts = BTreeMap::new();
        for d in state.store.build_deployments(b.id).await? {
            firsts.entry(d.environment).or_insert(d.at);
        }
        first_runs.push(firsts);
    }
    let mut rollouts = state
        .store
        .list_rollouts(Some(&name), None, false, 20)
        .await?;
    rollouts.retain(|r| viewer.allows(ScopeName::Read, Some(&r.service), Some(&r.environment)));
    let mut changes = state
        .store
        .list_changes(&ChangeQuery {
            service: Some(name.clone()),
            limit: 20,
            ..Default::default()
        })
        .await?;
    changes.retain(|c| {
        viewer.allows(
            ScopeName::Read,
            c.service.as_deref(),
            c.environment.as_deref(),
        )
    });
    let detect = match whole {
        true => state.store.list_detect_configs().await?,
        false => Vec::new(),
    };
    let key_metrics = match detect.into_iter().find(|c| c.service == name) {
        Some(c) => gantry_core::detect::DetectConfig::parse(&c.text, &name)
            .map(|d| d.metrics)
            .unwrap_or_default(),
        None => Vec::new(),
    };
    let last_env = envs.last().cloned();
    let body = html! {
        h1 { (name) }
        section aria-labelledby="pipeline-h" {
            h2 #pipeline-h { "Pipeline" }
            @if envs.is_empty() {
                (empty("This service has no environments.", html! {
                    "Give it a pipeline: " code { "gantry service create " (name) " --envs dev,stage,prod" } "."
                }))
            }
            ol.pipeline {
                @for (i, (env, c)) in cells.iter().enumerate() {
                    li class=(if c.failing() { "stage failing" } else if c.busy() { "stage busy" } else { "stage" }) {
                        h3 { (env) }
                        @match &c.version {
                            Some(v) => {
                                p.version { (v) }
                                p.small { (c.on_current) "/" (c.hosts) " hosts" @if let Some(t) = c.since { ", since " (time(t)) } }
                            }
                            None => p.muted { "not deployed" },
                        }
                        @if let Some(r) = &c.last {
                            p.small { "Last: " a href=(format!("/ui/rollouts/{}", r.id)) { (r.kind.as_str()) " " (r.version) } " " (badge(r.state.as_str())) }
                        }
                        @if viewer.allows(ScopeName::Deploy, Some(&name), Some(env)) {
                            div.actions {
                                @if !builds.is_empty() {
                                    form method="get" action=(format!("/ui/services/{name}/confirm")) {
                                        input type="hidden" name="action" value="deploy";
                                        input type="hidden" name="environment" value=(env);
                                        label { span.sr-only { "Build to deploy to " (env) }
                                            select name="build" {
                                                @for b in &builds { option value=(b.id) { (b.version) } }
                                            }
                                        }
                                        button type="submit" { "Deploy…" }
                                    }
                                }
                                @if c.version.is_some() {
                                    a.button href=(format!("/ui/services/{name}/confirm?action=rollback&environment={env}")) { "Roll back…" }
                                }
                                @if i > 0 && cells[i - 1].1.version.is_some() {
                                    @let from = &cells[i - 1].0;
                                    a.button href=(format!("/ui/services/{name}/confirm?action=promote&environment={env}&from={from}")) { "Promote from " (from) "…" }
                                }
                            }
                        }
                    }
                }
            }
        }
        section aria-labelledby="graphs-h" {
            h2 #graphs-h { "Key metrics" }
            @if key_metrics.is_empty() {
                (empty("No key metrics configured.", html! {
                    "Add " code { "[[detect.metric]]" } " entries (name, target, direction) to the service file and "
                    code { "gantry service apply " (name) ".toml" } "; each is graphed here with every change drawn."
                }))
            } @else {
                div.graphs {
                    @for m in key_metrics.iter().take(6) {
                        (graph(&GraphQuery {
                            target: Some(m.target.clone()),
                            from: Some("-24h".into()),
                            until: None,
                            service: Some(name.clone()),
                            points: None,
                        }, &format!("{} ({})", m.name, m.target), false))
                    }
                }
            }
        }
        section aria-labelledby="builds-h" {
            h2 #builds-h { "Builds" }
            @if builds.is_empty() {
                (empty("No builds yet.", html! { "Push one from CI: " code { "gantry build push --service " (name) " --version 1.0.0 app.tar.gz" } "." }))
            } @else {
                div.scroll { table.grid {
                    thead { tr {
                        th scope="col" { "Version" } th scope="col" { "Commit" } th scope="col" { "Built" }
                        @for e in &envs { th scope="col" { "First in " (e) } }
                        th scope="col" { "Lead time" }
                    } }
                    tbody {
                        @for (b, firsts) in builds.iter().zip(&first_runs) {
                            tr {
                                th scope="row" { (b.version) }
                                td { @match &b.commit { Some(c) => code { (short(c)) }, None => span.muted { "—" } } }
                                td { (time(b.created_at)) " by " (b.created_by) }
                                @for e in &envs { td { (time_or_dash(firsts.get(e).copied())) } }
                                td {
                                    @match last_env.as_ref().and_then(|e| firsts.get(e)) {
                                        Some(at) => (span((*at - b.commit_time.unwrap_or(b.created_at)).num_seconds())),
                                        None => span.muted { "not in " (last_env.as_deref().unwrap_or("production")) " yet" },
                                    }
                                }
                            }
                        }
                    }
                } }
                p.hint { "Lead time: from the commit (or the build, without a commit time) to its first run in the last environment." }
            }
        }
        section aria-labelledby="rollouts-h" {
            h2 #rollouts-h { "Rollouts" }
            @if rollouts.is_empty() { p.muted { "No rollouts yet." } }
            @else {
                div.scroll { table.grid {
                    thead { tr { th scope="col" { "Started" } th scope="col" { "Rollout" } th scope="col" { "Environment" } th scope="col" { "State" } th scope="col" { "By" } } }
                    tbody {
                        @for r in &rollouts {
                            tr {
                                td { (time(r.created_at)) }
                                td { a href=(format!("/ui/rollouts/{}", r.id)) { (r.kind.as_str()) " " (r.version) } }
                                td { (r.environment) }
                                td { (badge(r.state.as_str())) }
                                td { (r.created_by) }
                            }
                        }
                    }
                } }
            }
        }
        section aria-labelledby="changes-h" {
            h2 #changes-h { "Changes" }
            @if changes.is_empty() { p.muted { "No changes recorded for " (name) " yet." } }
            @else {
                div.scroll { table.grid {
                    (super::changes::head())
                    tbody { @for c in &changes { (super::changes::row(c)) } }
                } }
                p { a href=(format!("/ui/changes?service={name}")) { "All changes of " (name) } }
            }
        }
    };
    Ok(view::page(Some(&viewer), &name, Nav::None, body))
}

/// What a confirmation asks about.
#[derive(Debug, Default, Clone, Deserialize)]
pub struct ActionQuery {
    pub action: String,
    pub environment: String,
    pub build: Option<String>,
    pub from: Option<String>,
    pub waves: Option<String>,
    pub bake: Option<String>,
}

impl ActionQuery {
    fn new_rollout(&self, service: &str) -> Result<NewRollout, UiError> {
        let kind = match self.action.as_str() {
            "deploy" => RolloutKind::Deploy,
            "promote" => RolloutKind::Promote,
            "rollback" => RolloutKind::Rollback,
            other => {
                return Err(UiError::new(
                    axum::http::StatusCode::BAD_REQUEST,
                    format!("no action '{other}'; use deploy, promote or rollback"),
                ))
            }
        };
        Ok(NewRollout {
            kind: Some(kind),
            service: service.to_string(),
            environment: self.environment.clone(),
            build: if kind == RolloutKind::Deploy {
                non_empty(&self.build).map(str::to_string)
            } else {
                None
            },
            from: if kind == RolloutKind::Promote {
                non_empty(&self.from).map(str::to_string)
            } else {
                None
            },
            waves: non_empty(&self.waves).map(str::to_string),
            bake: non_empty(&self.bake).map(str::to_string),
            ..Default::default()
        })
    }
}

/// `GET /ui/services/{name}/confirm`: what a deploy, promote or rollback would do (the
/// versions, the commit range, the changes recorded between the two builds, the hosts per
/// wave) and the button that starts it.
pub async fn confirm(
    State(state): State<AppState>,
    viewer: Viewer,
    Path(name): Path<String>,
    Query(q): Query<ActionQuery>,
) -> UiResult {
    load(&state, &viewer, &name).await?;
    viewer.require(ScopeName::Deploy, Some(&name), Some(&q.environment))?;
    let new = q.new_rollout(&name)?;
    let plan = crate::ship::rollouts::plan(&state, &viewer.actor(), new).await?;
    let between = match &plan.previous {
        Some(p) if p.id != plan.build.id => {
            let (lo, hi) = if p.created_at <= plan.build.created_at {
                (p.created_at, plan.build.created_at)
            } else {
                (plan.build.created_at, p.created_at)
            };
            let mut list = state
                .store
                .list_changes(&ChangeQuery {
                    service: Some(name.clone()),
                    since: Some(lo),
                    until: Some(hi),
                    limit: 100,
                    ..Default::default()
                })
                .await?;
            list.retain(|c| {
                viewer.allows(
                    ScopeName::Read,
                    c.service.as_deref(),
                    c.environment.as_deref(),
                )
            });
            list
        }
        _ => Vec::new(),
    };
    let waves = plan.rollout.spec.waves.len();
    let verb = match plan.rollout.kind {
        RolloutKind::Deploy => "Deploy",
        RolloutKind::Promote => "Promote",
        RolloutKind::Rollback => "Roll back",
    };
    let title = format!("{verb} {name} in {}?", q.environment);
    let body = html! {
        h1 { (title) }
        dl.facts {
            dt { "Now running" } dd { (plan.previous.as_ref().map_or("nothing", |b| b.version.as_str())) }
            dt { "Will run" } dd { strong { (plan.build.version) } " (build " code { (short(&plan.build.id.to_string())) } ")" }
            @if let Some(r) = &plan.change.commit_range { dt { "Commits" } dd { code { (r.from) ".." (r.to) } } }
            dt { "Waves" } dd { (plan.rollout.spec.wave_sizes) ", bake " (plan.rollout.spec.bake_secs) " s, automatic rollback " (if plan.rollout.spec.auto_rollback { "on" } else { "off" }) }
            @if !plan.rollout.skipped.is_empty() { dt { "Skipped (offline or in maintenance)" } dd { (plan.rollout.skipped.join(", ")) } }
        }
        form.filters method="get" action=(format!("/ui/services/{name}/confirm")) {
            input type="hidden" name="action" value=(q.action);
            input type="hidden" name="environment" value=(q.environment);
            @if let Some(b) = &q.build { input type="hidden" name="build" value=(b); }
            @if let Some(f) = &q.from { input type="hidden" name="from" value=(f); }
            label { "Waves " input type="text" name="waves" value=(plan.rollout.spec.wave_sizes) size="16"; }
            label { "Bake after each wave " input type="text" name="bake" value=(format!("{}s", plan.rollout.spec.bake_secs)) size="6"; }
            button type="submit" { "Show the plan again" }
        }
        h2 { "Hosts per wave" }
        ol.waves-list {
            @for w in 0..waves {
                @let hosts: Vec<&str> = plan.tasks.iter().filter(|t| t.wave == w).map(|t| t.host.as_str()).collect();
                li { strong { "Wave " (w + 1) } " (" (hosts.len()) "): " (hosts.join(", ")) }
            }
        }
        h2 { "Changes recorded between the two builds" }
        @if between.is_empty() { p.muted { "None." } }
        @else {
            div.scroll { table.grid { (super::changes::head()) tbody { @for c in &between { (super::changes::row(c)) } } } }
        }
        form.confirm method="post" action=(format!("/ui/services/{name}/rollouts")) {
            input type="hidden" name="_csrf" value=(viewer.csrf);
            input type="hidden" name="expect_build" value=(plan.build.id);
            input type="hidden" name="action" value=(q.action);
            input type="hidden" name="environment" value=(q.environment);
            @if let Some(b) = &q.build { input type="hidden" name="build" value=(b); }
            @if let Some(f) = &q.from { input type="hidden" name="from" value=(f); }
            @if let Some(w) = &q.waves { input type="hidden" name="waves" value=(w); }
            @if let Some(b) = &q.bake { input type="hidden" name="bake" value=(b); }
            button.primary type="submit" { (verb) " " (plan.build.version) " to " (q.environment) }
            " " a href=(format!("/ui/services/{name}")) { "Cancel" }
        }
    };
    Ok(view::page(Some(&viewer), &title, Nav::None, body))
}

#[derive(Debug, Deserialize)]
pub struct StartForm {
    #[serde(rename = "_csrf")]
    csrf: Option<String>,
    /// The build the confirmation showed: the rollout starts only if it is still the one.
    expect_build: Option<String>,
    #[serde(flatten)]
    action: ActionQuery,
}

/// `POST /ui/services/{name}/rollouts`: starts what the confirmation showed; the change it
/// records says `via: dashboard`.
pub async fn start(
    State(state): State<AppState>,
    viewer: Viewer,
    headers: HeaderMap,
    Path(name): Path<String>,
    axum::Form(form): axum::Form<StartForm>,
) -> Result<Response, UiError> {
    check_post(&viewer, &headers, form.csrf.as_deref())?;
    viewer.require(
        ScopeName::Deploy,
        Some(&name),
        Some(&form.action.environment),
    )?;
    let new = form.action.new_rollout(&name)?;
    let planned = crate::ship::rollouts::plan(&state, &viewer.actor(), new).await?;
    if let Some(expected) = form.expect_build.as_deref() {
        if planned.build.id.to_string() != expected {
            return Err(UiError::new(
                axum::http::StatusCode::CONFLICT,
                format!(
                    "the plan changed since it was shown: it would now install {} {} instead; go back and review it again",
                    name, planned.build.version
                ),
            ));
        }
    }
    let rollout = crate::ship::rollouts::start_plan(&state, planned).await?;
    Ok(Redirect::to(&format!("/ui/rollouts/{}", rollout.id)).into_response())
}
