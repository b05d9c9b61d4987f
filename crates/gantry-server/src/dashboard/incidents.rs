//! `/ui/incidents`: open and recent incidents, and every monitor not OK; an incident's page
//! with its clocks, ranked suspects, cause and timeline, and the actions the API offers
//! (acknowledge, mitigate, resolve, a note, the rollback and flag-off remedies), each
//! through `incidents` (the same functions and scope rules as the API). `/ui/monitors`
//! lists every monitor with its series.

use axum::extract::{Path, Query, State};
use axum::http::HeaderMap;
use axum::response::{IntoResponse, Redirect, Response};
use gantry_core::incident::Incident;
use maud::{html, Markup};
use serde::Deserialize;

use super::session::{check_post, CsrfForm, Viewer};
use super::view::{
    self, badge, empty, non_empty, short, time, time_or_dash, Nav, UiError, UiResult,
};
use crate::incidents;
use crate::state::AppState;

#[derive(Debug, Default, Deserialize)]
pub struct ListQuery {
    pub service: Option<String>,
    pub environment: Option<String>,
    /// `open`: unresolved only.
    pub show: Option<String>,
}

fn row(i: &Incident) -> Markup {
    html! {
        tr {
            td { (time(i.detected_at)) }
            td { (badge(i.severity.as_str())) }
            td.summary { a href=(format!("/ui/incidents/{}", i.id)) { (i.title) } }
            td { (i.services.join(", ")) }
            td { (i.environments.join(", ")) }
            td { (badge(i.state.as_str())) }
        }
    }
}

/// The monitors a viewer may read that are not OK, worst first.
async fn alerting(
    state: &AppState,
    viewer: &Viewer,
) -> UiResult<Vec<crate::api::monitors::MonitorView>> {
    let mut views = crate::api::monitors::views(state, &viewer.grant).await?;
    views.retain(|v| v.state != "OK");
    views.sort_by_key(|v| match v.state.as_str() {
        "CRITICAL" => 0,
        "UNKNOWN" => 1,
        _ => 2,
    });
    Ok(views)
}

fn monitor_table(views: &[crate::api::monitors::MonitorView]) -> Markup {
    html! {
        div.scroll { table.grid {
            thead { tr {
                th scope="col" { "Monitor" } th scope="col" { "Kind" } th scope="col" { "Service" }
                th scope="col" { "Environment" } th scope="col" { "State" } th scope="col" { "Series" }
            } }
            tbody {
                @for v in views {
                    tr {
                        th scope="row" { (v.name) }
                        td { (v.kind) }
                        td { (v.service.as_deref().unwrap_or("—")) }
                        td { (v.environment.as_deref().unwrap_or("—")) }
                        td { (badge(&v.state.to_lowercase())) }
                        td.small {
                            @for s in v.series.iter().filter(|s| s.state != "OK").take(5) {
                                div {
                                    (if s.series.is_empty() { "(all)" } else { s.series.as_str() }) ": " (s.state)
                                    @if let Some(since) = s.since { " since " (time(since)) }
                                    @if s.flapping { " (flapping)" }
                                }
                            }
                        }
                    }
                }
            }
        } }
    }
}

/// `GET /ui/incidents`.
pub async fn page(
    State(state): State<AppState>,
    viewer: Viewer,
    Query(q): Query<ListQuery>,
) -> UiResult {
    let open_only = q.show.as_deref() == Some("open");
    let since = chrono::Utc::now() - chrono::Duration::days(90);
    let mut list = state
        .store
        .list_incidents(Some(since), open_only, 5000)
        .await?;
    let (service, environment) = (
        non_empty(&q.service).map(str::to_string),
        non_empty(&q.environment).map(str::to_string),
    );
    list.retain(|i| {
        incidents::may_read(&viewer.grant, i)
            && service.as_ref().is_none_or(|s| i.services.contains(s))
            && environment
                .as_ref()
                .is_none_or(|e| i.environments.contains(e))
    });
    list.truncate(200);
    let (open, closed): (Vec<&Incident>, Vec<&Incident>) =
        list.iter().partition(|i| i.resolved_at.is_none());
    let monitors = alerting(&state, &viewer).await?;
    let title = if open.is_empty() {
        "Incidents".to_string()
    } else {
        format!("({} open) Incidents", open.len())
    };
    let body = html! {
        h1 { "Incidents" }
        form.filters method="get" action="/ui/incidents" {
            label { "Service " input type="text" name="service" value=[service.as_deref()]; }
            label { "Environment " input type="text" name="environment" value=[environment.as_deref()]; }
            label { "Show "
                select name="show" {
                    option value="" { "open and resolved (90 days)" }
                    option value="open" selected[open_only] { "open only" }
                }
            }
            button type="submit" { "Filter" }
        }
        section aria-labelledby="open-h" {
            h2 #open-h { "Open" }
            @if open.is_empty() {
                p.muted { "No open incident." }
            } @else {
                div.scroll { table.grid { (head()) tbody { @for i in &open { (row(i)) } } } }
            }
        }
        section aria-labelledby="alerts-h" {
            h2 #alerts-h { "Monitors not OK" }
            @if monitors.is_empty() {
                p.muted { "Every monitor is OK. " a href="/ui/monitors" { "All monitors" } }
            } @else {
                (monitor_table(&monitors))
                p { a href="/ui/monitors" { "All monitors" } }
            }
        }
        @if !open_only {
            section aria-labelledby="closed-h" {
                h2 #closed-h { "Resolved" }
                @if closed.is_empty() && open.is_empty() {
                    (empty("No incidents in the last 90 days.", html! {
                        "Monitors and regression verdicts open them; open one by hand with "
                        code { "gantry incident open --service shop --env prod --title \"Checkout errors\"" } "."
                    }))
                } @else if closed.is_empty() {
                    p.muted { "None in the last 90 days." }
                } @else {
                    div.scroll { table.grid { (head()) tbody { @for i in &closed { (row(i)) } } } }
                }
            }
        }
    };
    Ok(view::page(Some(&viewer), &title, Nav::Incidents, body))
}

fn head() -> Markup {
    html! {
        thead { tr {
            th scope="col" { "Detected" } th scope="col" { "Severity" } th scope="col" { "Title" }
            th scope="col" { "Services" } th scope="col" { "Environments" } th scope="col" { "State" }
        } }
    }
}

/// `GET /ui/monitors`.
pub async fn monitors(State(state): State<AppState>, viewer: Viewer) -> UiResult {
    let views = crate::api::monitors::views(&state, &viewer.grant).await?;
    let body = html! {
        h1 { "Monitors" }
        @if views.is_empty() {
            (empty("No monitors yet.", html! {
                "Write them in a file and apply it: " code { "gantry monitor apply monitors.toml" } "."
            }))
        } @else {
            (monitor_table(&views))
        }
    };
    Ok(view::page(Some(&viewer), "Monitors", Nav::Incidents, body))
}

async fn readable(state: &AppState, viewer: &Viewer, id: &str) -> UiResult<Incident> {
    let id = crate::api::parse_id("incident", id)?;
    let incident = state
        .store
        .get_incident(id)
        .await?
        .ok_or_else(|| UiError::not_found(format!("no incident {id}")))?;
    if !incidents::may_read(&viewer.grant, &incident) {
        return Err(UiError::forbidden(format!(
            "token '{}' may not read incident {id}",
            viewer.grant.token_name
        )));
    }
    Ok(incident)
}

/// `GET /ui/incidents/{id}`.
pub async fn show(
    State(state): State<AppState>,
    viewer: Viewer,
    Path(id): Path<String>,
) -> UiResult {
    let i = readable(&state, &viewer, &id).await?;
    let timeline = incidents::timeline(&state, &i).await?;
    let may_act = incidents::require_either(&viewer.grant, &i.services, &i.environments).is_ok();
    let may_rollback =
        incidents::require_each(&viewer.grant, gantry_core::ScopeName::Deploy, &i).is_ok();
    let may_flag_off =
        incidents::require_each(&viewer.grant, gantry_core::ScopeName::Flags, &i).is_ok();
    let resolved = i.resolved_at.is_some();
    let action = |name: &str, label: &str, class: &str| {
        html! {
            form method="post" action=(format!("/ui/incidents/{}/{name}", i.id)) {
                input type="hidden" name="_csrf" value=(viewer.csrf);
                button type="submit" class=(class) { (label) }
            }
        }
    };
    let body = html! {
        h1 { (i.title) }
        dl.facts {
            dt { "State" } dd { (badge(i.state.as_str())) }
            dt { "Severity" } dd { (i.severity.as_str()) }
            dt { "Services" } dd { @for s in &i.services { a href=(format!("/ui/services/{s}")) { (s) } " " } }
            dt { "Environments" } dd { (i.environments.join(", ")) }
            dt { "Source" } dd { (format!("{:?}", i.source).to_lowercase()) ", opened by " (i.opened_by) }
            dt { "Impact started" } dd { (time(i.impact_started_at)) }
            dt { "Detected" } dd { (time(i.detected_at)) }
            dt { "Acknowledged" } dd { (time_or_dash(i.acknowledged_at)) }
            dt { "Mitigated" } dd { (time_or_dash(i.mitigated_at)) }
            dt { "Resolved" } dd { (time_or_dash(i.resolved_at)) }
            @if let Some(p) = &i.postmortem { dt { "Postmortem" } dd { (p) } }
            dt { "Cause" } dd {
                @match &i.cause {
                    Some(gantry_core::incident::Cause::Change { change }) => a href=(format!("/ui/changes/{change}")) { "change " (short(&change.to_string())) },
                    Some(gantry_core::incident::Cause::NotAChange { what }) => { "not a change: " (what) },
                    None => span.muted { "not named yet" },
                }
            }
        }
        @if may_act && !resolved {
            div.actions {
                @if i.acknowledged_at.is_none() { (action("ack", "Acknowledge", "")) }
                @if i.mitigated_at.is_none() { (action("mitigate", "Mitigated", "")) }
                (action("resolve", "Resolve", ""))
                @if may_rollback { (action("rollback", "Roll back the top deploy suspect", "danger")) }
                @if may_flag_off { (action("flag-off", "Turn off the top flag suspect", "danger")) }
            }
        }
        h2 { "Suspects" }
        @if i.suspects.is_empty() {
            p.muted { "No change of these services came before it." }
        } @else {
            ol.suspects {
                @for s in &i.suspects {
                    li {
                        a href=(format!("/ui/changes/{}", s.change)) { (s.summary) }
                        " (" (s.kind) ", " (time(s.started_at)) ", score " (format!("{:.2}", s.score)) ")"
                    }
                }
            }
        }
        h2 { "Timeline" }
        ul.history {
            @for e in &timeline {
                li {
                    (time(e.at)) " " (badge(&e.kind)) " " (e.actor) ": " (e.text)
                    @if let Some(c) = e.change { " " a href=(format!("/ui/changes/{c}")) { "(change)" } }
                }
            }
        }
        @if may_act {
            form.stack method="post" action=(format!("/ui/incidents/{}/notes", i.id)) {
                input type="hidden" name="_csrf" value=(viewer.csrf);
                label for="note" { "Add a note" }
                textarea #note name="text" rows="2" required {}
                button type="submit" { "Add note" }
            }
        }
    };
    Ok(view::page(Some(&viewer), &i.title, Nav::Incidents, body))
}

/// `POST /ui/incidents/{id}/{ack|mitigate|resolve|rollback|flag-off}`.
pub async fn act(
    State(state): State<AppState>,
    viewer: Viewer,
    headers: HeaderMap,
    Path((id, action)): Path<(String, String)>,
    axum::Form(form): axum::Form<CsrfForm>,
) -> Result<Response, UiError> {
    check_post(&viewer, &headers, form.csrf.as_deref())?;
    let i = readable(&state, &viewer, &id).await?;
    // A remedy's change says `via: incident <id>` (what ties it to the incident), with the
    // person as its actor.
    incidents::act(&state, &viewer.grant, i.id, &action).await?;
    Ok(Redirect::to(&format!("/ui/incidents/{}", i.id)).into_response())
}

#[derive(Debug, Deserialize)]
pub struct NoteForm {
    #[serde(rename = "_csrf")]
    csrf: Option<String>,
    text: String,
}

/// `POST /ui/incidents/{id}/notes`.
pub async fn note(
    State(state): State<AppState>,
    viewer: Viewer,
    headers: HeaderMap,
    Path(id): Path<String>,
    axum::Form(form): axum::Form<NoteForm>,
) -> Result<Response, UiError> {
    check_post(&viewer, &headers, form.csrf.as_deref())?;
    let i = readable(&state, &viewer, &id).await?;
    incidents::require_either(&viewer.grant, &i.services, &i.environments)?;
    incidents::note(&state, &viewer.grant.token_name, i.id, &form.text).await?;
    Ok(Redirect::to(&format!("/ui/incidents/{}", i.id)).into_response())
}
