//! `/ui/hosts`: hosts per environment with their state (online, lost, new, maintenance),
//! facts, what each service runs there and the last heartbeat; maintenance on and off.

use std::collections::HashMap;

use axum::extract::{Path, Query, State};
use axum::http::HeaderMap;
use axum::response::{IntoResponse, Redirect, Response};
use gantry_core::ship::Host;
use gantry_core::ScopeName;
use maud::{html, Markup};
use serde::Deserialize;
use ulid::Ulid;

use super::session::{check_post, is_htmx, Viewer};
use super::view::{self, badge, empty, time_or_dash, Nav, UiError, UiResult};
use crate::state::AppState;

#[derive(Debug, Default, Deserialize)]
pub struct HostsQuery {
    pub environment: Option<String>,
    /// Only this host.
    pub host: Option<String>,
}

/// Versions of the builds hosts report, looked up once per page.
async fn versions(state: &AppState, hosts: &[Host]) -> HashMap<Ulid, String> {
    let mut out = HashMap::new();
    for id in hosts
        .iter()
        .flat_map(|h| h.releases.values())
        .filter_map(|r| r.build_id)
    {
        if out.contains_key(&id) {
            continue;
        }
        if let Ok(Some(b)) = state.store.get_build(id).await {
            out.insert(id, b.version);
        }
    }
    out
}

fn row(viewer: &Viewer, h: &Host, versions: &HashMap<Ulid, String>) -> Markup {
    let may = viewer.allows(ScopeName::Deploy, None, Some(&h.environment));
    html! {
        tr id=(format!("host-{}", h.name)) {
            th scope="row" { (h.name) }
            td { (h.environment) }
            td {
                (badge(h.status.as_str()))
                @if h.maintenance { " " span.badge.s-busy { "maintenance" } }
            }
            td { (time_or_dash(h.last_seen_at)) }
            td.small {
                @if h.facts.os.is_empty() { span.muted { "—" } }
                @else { (h.facts.os) "/" (h.facts.arch) ", agent " (h.facts.agent_version) }
                @if !h.roles.is_empty() { br; "roles: " (h.roles.join(", ")) }
            }
            td.small {
                @if h.releases.is_empty() { span.muted { "nothing yet" } }
                @for (service, r) in &h.releases {
                    div {
                        a href=(format!("/ui/services/{service}")) { (service) } " "
                        (r.build_id.and_then(|id| versions.get(&id)).map_or(r.release.as_str(), |v| v.as_str()))
                    }
                }
            }
            td {
                @if may {
                    form method="post" action=(format!("/ui/hosts/{}/maintenance", h.name))
                        hx-post=(format!("/ui/hosts/{}/maintenance", h.name)) hx-target="closest tr" hx-swap="outerHTML" {
                        input type="hidden" name="_csrf" value=(viewer.csrf);
                        input type="hidden" name="on" value=(if h.maintenance { "false" } else { "true" });
                        button type="submit" {
                            @if h.maintenance { "End maintenance" } @else { "Maintenance" }
                            span.sr-only { " for " (h.name) }
                        }
                    }
                }
            }
        }
    }
}

/// `GET /ui/hosts`.
pub async fn page(
    State(state): State<AppState>,
    viewer: Viewer,
    Query(q): Query<HostsQuery>,
) -> UiResult {
    let env = q.environment.as_deref().filter(|e| !e.is_empty());
    let mut hosts = state.store.list_hosts(env).await?;
    hosts.retain(|h| {
        viewer.allows(ScopeName::Read, None, Some(&h.environment))
            && q.host
                .as_deref()
                .is_none_or(|n| n.is_empty() || h.name == n)
    });
    for h in &mut hosts {
        crate::api::hosts::with_status(&state, h);
    }
    let envs = state.store.list_environments().await?;
    let versions = versions(&state, &hosts).await;
    let body = html! {
        h1 { "Hosts" }
        form.filters method="get" action="/ui/hosts" {
            label { "Environment "
                select name="environment" {
                    option value="" { "all" }
                    @for e in &envs { option value=(e) selected[env == Some(e.as_str())] { (e) } }
                }
            }
            button type="submit" { "Show" }
        }
        @if hosts.is_empty() {
            (empty("No hosts here yet.", html! {
                "Enroll one with " code { "gantry host enroll web-1 --env prod > web-1.token" }
                ", then run " code { "gantry agent --env prod --server http://…:7070 --token-file web-1.token" } " on it."
            }))
        } @else {
            div.scroll {
                table.grid {
                    caption.sr-only { "Hosts" }
                    thead { tr {
                        th scope="col" { "Host" } th scope="col" { "Environment" } th scope="col" { "State" }
                        th scope="col" { "Last heartbeat" } th scope="col" { "Facts" } th scope="col" { "Runs" }
                        th scope="col" { span.sr-only { "Actions" } }
                    } }
                    tbody { @for h in &hosts { (row(&viewer, h, &versions)) } }
                }
            }
        }
    };
    Ok(view::page(Some(&viewer), "Hosts", Nav::Hosts, body))
}

#[derive(Debug, Deserialize)]
pub struct MaintenanceForm {
    #[serde(rename = "_csrf")]
    csrf: Option<String>,
    on: String,
}

/// `POST /ui/hosts/{name}/maintenance` (`on=true|false`): answers the new row to htmx, a
/// redirect to the hosts page otherwise.
pub async fn maintenance(
    State(state): State<AppState>,
    viewer: Viewer,
    headers: HeaderMap,
    Path(name): Path<String>,
    axum::Form(form): axum::Form<MaintenanceForm>,
) -> Result<Response, UiError> {
    check_post(&viewer, &headers, form.csrf.as_deref())?;
    let on = match form.on.as_str() {
        "true" | "on" => true,
        "false" | "off" => false,
        other => {
            return Err(UiError::new(
                axum::http::StatusCode::BAD_REQUEST,
                format!("on must be true or false, not '{other}'"),
            ))
        }
    };
    let host = crate::api::hosts::load(&state, &name).await?;
    viewer.require(ScopeName::Deploy, None, Some(&host.environment))?;
    let host = crate::ship::hosts::set_maintenance(&state, &name, on).await?;
    if is_htmx(&headers) {
        let versions = versions(&state, std::slice::from_ref(&host)).await;
        return Ok(row(&viewer, &host, &versions).into_response());
    }
    Ok(Redirect::to(&format!("/ui/hosts?environment={}", host.environment)).into_response())
}
