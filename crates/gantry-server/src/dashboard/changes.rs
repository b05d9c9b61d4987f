//! `/ui/changes`: the change log with filters in the URL (service, environment, kind,
//! actor, time range), live; `/ui/changes/{id}`: one change with its history.

use axum::extract::{Path, Query, State};
use gantry_core::{Change, ChangeKind, ScopeName};
use maud::{html, Markup};
use serde::Deserialize;

use super::session::Viewer;
use super::view::{
    self, badge, empty, non_empty, short, time, time_or_dash, Nav, UiError, UiResult,
};
use crate::api::changes::ListParams;
use crate::state::AppState;

/// The page's filters; all live in the URL.
#[derive(Debug, Default, Clone, Deserialize)]
pub struct Filters {
    pub service: Option<String>,
    pub environment: Option<String>,
    pub kind: Option<String>,
    pub actor: Option<String>,
    /// `since`/`until`: RFC 3339, epoch seconds or a duration ago (`24h`).
    pub since: Option<String>,
    pub until: Option<String>,
}

impl Filters {
    fn params(&self) -> ListParams {
        ListParams {
            service: non_empty(&self.service).map(str::to_string),
            environment: non_empty(&self.environment).map(str::to_string),
            kind: non_empty(&self.kind).map(str::to_string),
            since: non_empty(&self.since).map(str::to_string),
            until: non_empty(&self.until).map(str::to_string),
            limit: Some("200".into()),
            ..Default::default()
        }
    }

    /// The stream's query: the same filters, so live rows obey them too.
    fn stream_query(&self) -> String {
        let mut q = form_urlencoded::Serializer::new(String::new());
        for (k, v) in [
            ("service", non_empty(&self.service)),
            ("environment", non_empty(&self.environment)),
            ("kind", non_empty(&self.kind)),
            ("actor", non_empty(&self.actor)),
        ] {
            if let Some(v) = v {
                q.append_pair(k, v);
            }
        }
        q.finish()
    }

    /// Whether a change passes the filters a stream can apply (not the time range: a live
    /// change is always "now").
    pub fn admits(&self, c: &Change) -> bool {
        let eq = |f: &Option<String>, v: Option<&str>| non_empty(f).is_none_or(|f| v == Some(f));
        eq(&self.service, c.service.as_deref())
            && eq(&self.environment, c.environment.as_deref())
            && eq(&self.kind, Some(c.kind.as_str()))
            && eq(&self.actor, Some(c.actor.as_str()))
    }
}

/// One row of the change table; the live stream sends the same markup.
pub fn row(c: &Change) -> Markup {
    html! {
        tr id=(format!("change-{}", c.id)) {
            td { (time(c.started_at)) }
            td { (badge(c.kind.as_str())) }
            td.summary { a href=(format!("/ui/changes/{}", c.id)) { (c.summary) } }
            td { (c.service.as_deref().unwrap_or("—")) }
            td { (c.environment.as_deref().unwrap_or("—")) }
            td { (c.actor) }
            td { (badge(c.status.as_str())) }
        }
    }
}

/// The table head of change rows.
pub fn head() -> Markup {
    html! {
        thead { tr {
            th scope="col" { "Started" }
            th scope="col" { "Kind" }
            th scope="col" { "Summary" }
            th scope="col" { "Service" }
            th scope="col" { "Environment" }
            th scope="col" { "Actor" }
            th scope="col" { "Status" }
        } }
    }
}

/// `GET /ui/changes`.
pub async fn page(
    State(state): State<AppState>,
    viewer: Viewer,
    Query(f): Query<Filters>,
) -> UiResult {
    let query = f.params().into_query().map_err(UiError::from)?;
    // Where the page's list ends: its stream starts there, so a change written between
    // this read and the browser's connection still arrives.
    let seq = state.store.last_event_seq().await?;
    let mut items = state.store.list_changes(&query).await?;
    items.retain(|c| {
        viewer.allows(
            ScopeName::Read,
            c.service.as_deref(),
            c.environment.as_deref(),
        ) && f.admits(c)
    });
    let filtered = [
        &f.service,
        &f.environment,
        &f.kind,
        &f.actor,
        &f.since,
        &f.until,
    ]
    .iter()
    .any(|v| non_empty(v).is_some());
    let body = html! {
        div.heading {
            h1 { "Changes" }
            (view::live_badge())
        }
        form.filters method="get" action="/ui/changes" {
            label { "Service " input type="text" name="service" value=[non_empty(&f.service)]; }
            label { "Environment " input type="text" name="environment" value=[non_empty(&f.environment)]; }
            label { "Kind "
                select name="kind" {
                    option value="" { "any" }
                    @for k in ChangeKind::ALL {
                        option value=(k.as_str()) selected[non_empty(&f.kind) == Some(k.as_str())] { (k.as_str()) }
                    }
                }
            }
            label { "Actor " input type="text" name="actor" value=[non_empty(&f.actor)]; }
            label { "Since " input type="text" name="since" placeholder="24h, 7d or a date" value=[non_empty(&f.since)]; }
            label { "Until " input type="text" name="until" placeholder="now" value=[non_empty(&f.until)]; }
            button type="submit" { "Filter" }
            @if filtered { " " a href="/ui/changes" { "Clear" } }
        }
        div hx-ext="sse" sse-connect=(format!("/ui/stream/changes?after={seq}&{}", f.stream_query())) {
            @if items.is_empty() && !filtered {
                (empty("No changes recorded yet.", html! {
                    "Record one with " code { "gantry change record --kind deploy --service shop --env prod --summary \"Deploy shop 1.4.0\"" }
                    "; deploys, rollbacks, flag flips and migrations record their own."
                }))
            }
            div.scroll {
                table.grid.changes {
                    caption.sr-only { "Changes, newest first" }
                    (head())
                    tbody #change-rows sse-swap="created,updated" data-rows="prepend" {
                        @for c in &items { (row(c)) }
                    }
                }
            }
            @if items.is_empty() && filtered {
                p.muted { "No change matches these filters." }
            }
        }
    };
    Ok(view::page(Some(&viewer), "Changes", Nav::Changes, body))
}

/// `GET /ui/changes/{id}`.
pub async fn show(
    State(state): State<AppState>,
    viewer: Viewer,
    Path(id): Path<String>,
) -> UiResult {
    let id = crate::api::parse_id("change", &id)?;
    let c = state
        .store
        .get_change(id)
        .await?
        .ok_or_else(|| UiError::not_found(format!("no change with id {id}")))?;
    viewer.require(
        ScopeName::Read,
        c.service.as_deref(),
        c.environment.as_deref(),
    )?;
    let rollout = c
        .metadata
        .get("rollout")
        .and_then(|v| v.as_str())
        .map(str::to_string);
    let metadata = serde_json::to_string_pretty(&c.metadata).unwrap_or_default();
    let body = html! {
        h1 { (c.summary) }
        dl.facts {
            dt { "Kind" } dd { (badge(c.kind.as_str())) }
            dt { "Status" } dd { (badge(c.status.as_str())) }
            dt { "Service" } dd {
                @match &c.service {
                    Some(s) => a href=(format!("/ui/services/{s}")) { (s) },
                    None => "—",
                }
            }
            dt { "Environment" } dd { (c.environment.as_deref().unwrap_or("—")) }
            dt { "Actor" } dd { (c.actor) }
            dt { "Started" } dd { (time(c.started_at)) }
            dt { "Finished" } dd { (time_or_dash(c.finished_at)) }
            @if let Some(r) = &c.commit_range {
                dt { "Commits" } dd { code { (r.from) ".." (r.to) } }
            }
            @if let Some(r) = &rollout {
                dt { "Rollout" } dd { a href=(format!("/ui/rollouts/{r}")) { (short(r)) } }
            }
            dt { "Id" } dd { code { (c.id) } }
        }
        @if let Some(d) = &c.description {
            h2 { "Description" }
            pre.output { (super::view::plain(d)) }
        }
        @if !c.links.is_empty() {
            h2 { "Links" }
            ul {
                @for l in &c.links {
                    li { a href=(link_target(&l.url)) rel="noopener noreferrer" { (if l.title.is_empty() { &l.url } else { &l.title }) } }
                }
            }
        }
        @if !c.metadata.is_empty() {
            h2 { "Metadata" }
            pre.output { (metadata) }
        }
        @if let Some(history) = c.history.as_ref().filter(|h| !h.is_empty()) {
            h2 { "History" }
            ul.history {
                @for h in history {
                    li {
                        (time(h.at)) " by " (h.actor) ": "
                        code { (serde_json::Value::Object(h.fields.clone()).to_string()) }
                    }
                }
            }
        }
    };
    Ok(view::page(Some(&viewer), &c.summary, Nav::Changes, body))
}

/// A link of a change as the dashboard may follow it: web links as they are, the API's
/// rollout links to the rollout page, anything else (a `javascript:` URL) not at all.
fn link_target(url: &str) -> String {
    if let Some(id) = url.strip_prefix("/api/v1/rollouts/") {
        return format!("/ui/rollouts/{id}");
    }
    if url.starts_with("https://") || url.starts_with("http://") || url.starts_with('/') {
        return url.to_string();
    }
    "#".to_string()
}
