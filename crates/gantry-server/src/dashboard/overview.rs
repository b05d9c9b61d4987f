//! `/`: every service in every environment: the build it runs, on how many hosts, since
//! when, the last rollout's state, and the key metric's last hours as a sparkline. Live:
//! every change in the log refreshes the table.

use std::collections::HashMap;

use axum::extract::State;
use chrono::Utc;
use gantry_core::ship::{Host, Rollout, RolloutState};
use gantry_core::{ScopeName, Service};
use maud::{html, Markup};

use super::session::Viewer;
use super::view::{self, badge, empty, time, Nav, UiResult};
use crate::state::AppState;

/// One service in one environment.
pub struct Cell {
    pub version: Option<String>,
    pub since: Option<chrono::DateTime<Utc>>,
    /// Hosts running the current build, of the hosts that run the service.
    pub on_current: usize,
    pub hosts: usize,
    pub last: Option<Rollout>,
}

impl Cell {
    pub fn failing(&self) -> bool {
        self.last.as_ref().is_some_and(|r| {
            matches!(
                r.state,
                RolloutState::Failed | RolloutState::RolledBack | RolloutState::Aborted
            )
        })
    }

    pub fn busy(&self) -> bool {
        self.last.as_ref().is_some_and(|r| !r.state.is_final())
    }
}

/// Environments in pipeline order: the pipelines merged so that each keeps its own order
/// (an environment new to the list goes before the next one of its pipeline already there).
pub fn environments(services: &[Service]) -> Vec<String> {
    let mut out: Vec<String> = Vec::new();
    for s in services {
        for (i, e) in s.environments.iter().enumerate() {
            if out.contains(e) {
                continue;
            }
            let before = s.environments[i + 1..]
                .iter()
                .find_map(|next| out.iter().position(|o| o == next));
            match before {
                Some(at) => out.insert(at, e.clone()),
                None => out.push(e.clone()),
            }
        }
    }
    out
}

/// What `service` runs in `environment` now.
pub async fn cell(
    state: &AppState,
    hosts: &[Host],
    service: &str,
    environment: &str,
) -> Result<Cell, gantry_store::StoreError> {
    let current = state
        .store
        .deployments(service, environment, 1)
        .await?
        .into_iter()
        .next();
    let build = match &current {
        Some(d) => state.store.get_build(d.build_id).await?,
        None => None,
    };
    let running: Vec<&Host> = hosts
        .iter()
        .filter(|h| h.environment == environment && h.releases.contains_key(service))
        .collect();
    let on_current = match &current {
        Some(d) => running
            .iter()
            .filter(|h| h.releases.get(service).and_then(|r| r.build_id) == Some(d.build_id))
            .count(),
        None => 0,
    };
    let last = state
        .store
        .list_rollouts(Some(service), Some(environment), false, 1)
        .await?
        .into_iter()
        .next();
    Ok(Cell {
        version: build.map(|b| b.version),
        since: current.map(|d| d.at),
        on_current,
        hosts: running.len(),
        last,
    })
}

/// The key metric of each service: the first `[detect]` metric's target.
async fn key_metrics(state: &AppState) -> HashMap<String, (String, String)> {
    let Ok(configs) = state.store.list_detect_configs().await else {
        return HashMap::new();
    };
    configs
        .into_iter()
        .filter_map(|c| {
            let parsed = gantry_core::detect::DetectConfig::parse(&c.text, &c.service).ok()?;
            let m = parsed.metrics.into_iter().next()?;
            Some((c.service, (m.name, m.target)))
        })
        .collect()
}

/// The last six hours of `target`, at most 60 points.
async fn spark(state: &AppState, target: &str) -> Vec<Option<f64>> {
    let now = Utc::now().timestamp();
    match crate::api::graphite::evaluate_targets(
        state,
        vec![target.to_string()],
        now - 6 * 3600,
        now,
        now,
    )
    .await
    {
        Ok(series) => gantry_render::consolidate(&series, 60)
            .into_iter()
            .next()
            .map(|s| s.values)
            .unwrap_or_default(),
        Err(_) => Vec::new(),
    }
}

/// The table and the tab title (failures counted).
async fn table_and_title(state: &AppState, viewer: &Viewer) -> UiResult<(Markup, String)> {
    let services: Vec<Service> = state
        .store
        .list_services()
        .await?
        .into_iter()
        .filter(|s| {
            viewer.allows(ScopeName::Read, Some(&s.name), None)
                || s.environments
                    .iter()
                    .any(|e| viewer.allows(ScopeName::Read, Some(&s.name), Some(e)))
        })
        .collect();
    let envs = environments(&services);
    let mut hosts = state.store.list_hosts(None).await?;
    for h in &mut hosts {
        crate::api::hosts::with_status(state, h);
    }
    let keys = key_metrics(state).await;
    let mut failing = 0;
    let mut rows = Vec::new();
    for s in &services {
        let mut cells = Vec::new();
        for e in &envs {
            if !s.environments.contains(e)
                || !viewer.allows(ScopeName::Read, Some(&s.name), Some(e))
            {
                cells.push(None);
                continue;
            }
            let c = cell(state, &hosts, &s.name, e).await?;
            if c.failing() {
                failing += 1;
            }
            cells.push(Some((e.clone(), c)));
        }
        let sparkline = match keys.get(&s.name) {
            Some((name, target)) => {
                super::sparkline::svg(&spark(state, target).await, &format!("{} {name}", s.name))
            }
            None => None,
        };
        rows.push((s, cells, sparkline, keys.contains_key(&s.name)));
    }
    let title = if failing > 0 {
        format!("({failing} failing) Overview")
    } else {
        "Overview".to_string()
    };
    let table = html! {
        div #overview-table hx-get="/ui/overview/table" hx-trigger="sse:created throttle:2s, sse:updated throttle:2s" hx-swap="outerHTML" {
            @if services.is_empty() {
                (empty("No services yet.", html! {
                    "Register one with " code { "gantry service create shop --envs dev,stage,prod" }
                    " or record a change naming it: " code { "gantry change record --kind deploy --service shop --env prod --summary \"Deploy shop 1.4.0\"" } "."
                }))
            } @else {
                @if failing > 0 {
                    p.alert role="alert" { (failing) " environment" @if failing != 1 { "s" } " failed their last rollout." }
                }
                div.scroll {
                    table.grid {
                        caption.sr-only { "What each service runs in each environment" }
                        thead { tr {
                            th scope="col" { "Service" }
                            @for e in &envs { th scope="col" { (e) } }
                            th scope="col" { "Key metric (6 h)" }
                        } }
                        tbody {
                            @for (s, cells, sparkline, has_key) in &rows {
                                tr {
                                    th scope="row" { a href=(format!("/ui/services/{}", s.name)) { (s.name) } }
                                    @for c in cells {
                                        @match c {
                                            None => td.na { span.muted { "—" } },
                                            Some((_e, c)) => td class=(cell_class(c)) { (cell_body(c)) },
                                        }
                                    }
                                    td {
                                        @if let Some(svg) = sparkline { (svg) }
                                        @else if *has_key { span.muted { "no data yet" } }
                                        @else { span.muted title="Add a [detect] metric to the service file" { "none configured" } }
                                    }
                                }
                            }
                        }
                    }
                }
                @if rows.iter().all(|r| !r.3) {
                    p.hint {
                        "No key metrics yet: add a " code { "[[detect.metric]]" } " with a "
                        code { "target" } " to a service file and " code { "gantry service apply shop.toml" } "; "
                        "its first metric is drawn here."
                    }
                }
            }
        }
    };
    Ok((table, title))
}

fn cell_class(c: &Cell) -> &'static str {
    if c.failing() {
        "cell failing"
    } else if c.busy() {
        "cell busy"
    } else {
        "cell"
    }
}

fn cell_body(c: &Cell) -> Markup {
    html! {
        @match &c.version {
            Some(v) => {
                div.version { (v) }
                div.small {
                    (c.on_current) "/" (c.hosts) " hosts"
                    @if let Some(since) = c.since { " · since " (time(since)) }
                }
            }
            None => div.muted { "not deployed" },
        }
        @if let Some(r) = &c.last {
            div.small {
                a href=(format!("/ui/rollouts/{}", r.id)) { (r.kind.as_str()) " " (r.version) }
                " " (badge(r.state.as_str()))
            }
        }
    }
}

/// `GET /`.
pub async fn page(State(state): State<AppState>, viewer: Viewer) -> UiResult {
    // The stream starts where this read did, so nothing written in between is missed.
    let seq = state.store.last_event_seq().await?;
    let (table, title) = table_and_title(&state, &viewer).await?;
    Ok(view::page(
        Some(&viewer),
        &title,
        Nav::Overview,
        html! {
            div.heading {
                h1 { "Overview" }
                (view::live_badge())
            }
            div hx-ext="sse" sse-connect=(format!("/ui/stream/changes?after={seq}")) { (table) }
        },
    ))
}

/// `GET /ui/overview/table`: the table alone, for the live refresh (its `<title>` keeps
/// the tab's failure count true).
pub async fn table(State(state): State<AppState>, viewer: Viewer) -> UiResult {
    let (table, title) = table_and_title(&state, &viewer).await?;
    Ok(html! {
        title { (title) " · Gantry" }
        (table)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn service(name: &str, envs: &[&str]) -> Service {
        Service {
            name: name.into(),
            environments: envs.iter().map(|e| e.to_string()).collect(),
            created_at: Utc::now(),
        }
    }

    #[test]
    fn pipelines_merge_in_their_own_order() {
        let merged = environments(&[
            service("search", &["stage", "prod"]),
            service("shop", &["dev", "stage", "prod"]),
            service("batch", &["qa", "prod", "dr"]),
        ]);
        assert_eq!(merged, ["dev", "stage", "qa", "prod", "dr"]);
        assert!(environments(&[]).is_empty());
    }
}
