//! `/ui/rollouts/{id}`: a rollout's waves and hosts (each host's step, state and hook
//! output's tail), its gate verdicts and its change, with pause, resume, abort and roll
//! back. Live: the stream sends the summary and the changed host rows. Hosts are shown
//! [`PAGE_SIZE`] to a page, so a 1,000-host rollout stays light.

use axum::extract::{Path, Query, State};
use axum::http::HeaderMap;
use axum::response::{IntoResponse, Redirect, Response};
use gantry_core::ship::{Rollout, Task, TaskState};
use gantry_core::ScopeName;
use maud::{html, Markup};
use serde::Deserialize;

use super::session::{check_post, CsrfForm, Viewer};
use super::view::{self, badge, short, time, time_or_dash, Nav, UiError, UiResult};
use crate::ship::rollouts::RolloutAction;
use crate::state::AppState;

/// Host rows per page.
pub const PAGE_SIZE: usize = 200;
/// Lines of hook output shown per host.
const OUTPUT_LINES: usize = 20;

/// The rollout `id`, if the viewer may read it.
pub async fn load(state: &AppState, viewer: &Viewer, id: &str) -> Result<Rollout, UiError> {
    let id = crate::api::parse_id("rollout", id)?;
    let r = state
        .store
        .get_rollout(id)
        .await?
        .ok_or_else(|| UiError::not_found(format!("no rollout {id}")))?;
    viewer.require(ScopeName::Read, Some(&r.service), Some(&r.environment))?;
    Ok(r)
}

/// Tasks in the order the page shows them: by wave, then host.
fn ordered(tasks: &[Task]) -> Vec<&Task> {
    let mut v: Vec<&Task> = tasks.iter().collect();
    v.sort_by(|a, b| (a.wave, &a.host, a.created_at).cmp(&(b.wave, &b.host, b.created_at)));
    v
}

/// The tasks on page `page` (from 0).
pub fn page_of(tasks: &[Task], page: usize) -> Vec<&Task> {
    ordered(tasks)
        .into_iter()
        .skip(page.saturating_mul(PAGE_SIZE))
        .take(PAGE_SIZE)
        .collect()
}

/// The last `n` lines of `text`.
fn tail(text: &str, n: usize) -> String {
    let lines: Vec<&str> = text.lines().collect();
    lines[lines.len().saturating_sub(n)..].join("\n")
}

/// One host's row.
pub fn row(t: &Task) -> Markup {
    let output = super::view::plain(&tail(&t.output, OUTPUT_LINES));
    html! {
        tr id=(format!("task-{}", t.id)) {
            th scope="row" { a href=(format!("/ui/hosts?host={}", t.host)) { (t.host) } }
            td { (t.wave + 1) }
            td { (t.purpose.as_str()) }
            td { (badge(t.state.as_str())) }
            td { (t.step.as_deref().unwrap_or("—")) }
            td { (t.from_version.as_deref().unwrap_or("—")) " → " (t.version) }
            td { (time(t.updated_at)) }
            td.output-cell {
                @if let Some(e) = &t.error { p.error { (super::view::plain(e)) } }
                @if !output.is_empty() {
                    details {
                        summary { "output" }
                        pre.output { (output) }
                    }
                }
            }
        }
    }
}

/// Counts of each task state in wave `w`.
fn wave_counts(tasks: &[Task], w: usize) -> Vec<(TaskState, usize)> {
    let mut counts: Vec<(TaskState, usize)> = Vec::new();
    for t in tasks.iter().filter(|t| t.wave == w) {
        match counts.iter_mut().find(|(s, _)| *s == t.state) {
            Some((_, n)) => *n += 1,
            None => counts.push((t.state, 1)),
        }
    }
    counts
}

/// The summary: state, wave, reason, bake, counts per wave and the controls.
pub fn summary(viewer: &Viewer, r: &Rollout, tasks: &[Task]) -> Markup {
    let waves = r.spec.waves.len().max(1);
    let may_deploy = viewer.allows(ScopeName::Deploy, Some(&r.service), Some(&r.environment));
    html! {
        section #rollout-summary aria-labelledby="summary-h" {
            h2 #summary-h { "State" }
            p.big { (badge(r.state.as_str())) " wave " (r.wave.min(waves - 1) + 1) " of " (waves) }
            @if let Some(reason) = &r.reason { p.reason { "Reason: " (reason) } }
            @if let Some(until) = r.bake_until { p { "Baking until " (time(until)) } }
            @if let Some(by) = &r.aborted_by { p { "Aborted by " (by) } }
            table.grid.waves {
                caption.sr-only { "Hosts per wave, by state" }
                thead { tr { th scope="col" { "Wave" } th scope="col" { "Hosts" } th scope="col" { "States" } } }
                tbody {
                    @for w in 0..waves {
                        @let counts = wave_counts(tasks, w);
                        tr {
                            th scope="row" { (w + 1) }
                            td { (counts.iter().map(|c| c.1).sum::<usize>()) }
                            td { @for (s, n) in &counts { (badge(s.as_str())) " " (n) " " } }
                        }
                    }
                }
            }
            @if may_deploy && !r.state.is_final() {
                div.actions {
                    @for (action, label) in controls(r.state) {
                        form method="post" action=(format!("/ui/rollouts/{}/{action}", r.id)) {
                            input type="hidden" name="_csrf" value=(viewer.csrf);
                            button type="submit" class=(if action == "abort" { "danger" } else { "" }) { (label) }
                        }
                    }
                }
            }
            @if may_deploy {
                p { a.button href=(format!("/ui/services/{}/confirm?action=rollback&environment={}", r.service, r.environment)) { "Roll back " (r.environment) "…" } }
            }
        }
    }
}

/// The controls a rollout in `state` offers.
fn controls(state: gantry_core::ship::RolloutState) -> Vec<(&'static str, &'static str)> {
    use gantry_core::ship::RolloutState;
    match state {
        RolloutState::Running => vec![("pause", "Pause"), ("abort", "Abort")],
        RolloutState::Paused => vec![("resume", "Resume"), ("abort", "Abort")],
        _ => Vec::new(),
    }
}

/// What the stream sends: the summary and the changed rows; the page puts each element
/// in place by its id.
pub fn update_fragment(viewer: &Viewer, r: &Rollout, all: &[Task], rows: &[Task]) -> Markup {
    html! {
        (summary(viewer, r, all))
        @for t in ordered(rows) { (row(t)) }
    }
}

#[derive(Debug, Default, Deserialize)]
pub struct PageQuery {
    page: Option<usize>,
}

/// `GET /ui/rollouts/{id}`.
pub async fn page(
    State(state): State<AppState>,
    viewer: Viewer,
    Path(id): Path<String>,
    Query(q): Query<PageQuery>,
) -> UiResult {
    let r = load(&state, &viewer, &id).await?;
    let tasks = state.store.rollout_tasks(r.id).await?;
    let page = q.page.unwrap_or(0);
    let pages = tasks.len().div_ceil(PAGE_SIZE).max(1);
    if page >= pages {
        return Err(UiError::not_found(format!(
            "rollout {} has {pages} page(s) of hosts",
            r.id
        )));
    }
    let shown = page_of(&tasks, page);
    let verdicts = state
        .store
        .regressions_of(Some(r.id), Some(r.change_id))
        .await?;
    let title = format!(
        "{} {} {} to {}",
        r.kind.as_str(),
        r.service,
        r.version,
        r.environment
    );
    let body = html! {
        div.heading {
            h1 { (title) }
            @if !r.state.is_final() { (view::live_badge()) }
        }
        dl.facts {
            dt { "Service" } dd { a href=(format!("/ui/services/{}", r.service)) { (r.service) } }
            dt { "Started" } dd { (time(r.created_at)) " by " (r.created_by) }
            dt { "Finished" } dd { (time_or_dash(r.finished_at)) }
            dt { "Waves" } dd { (r.spec.wave_sizes) ", bake " (r.spec.bake_secs) " s" }
            dt { "Change" } dd { a href=(format!("/ui/changes/{}", r.change_id)) { (short(&r.change_id.to_string())) } }
            @if !r.skipped.is_empty() { dt { "Skipped" } dd { (r.skipped.join(", ")) } }
        }
        // A finished rollout's page does not follow its stream; a running one's follows it
        // until the `end` event the stream sends after the last update.
        div hx-ext=[(!r.state.is_final()).then_some("sse")]
            sse-connect=[(!r.state.is_final()).then(|| format!("/ui/stream/rollouts/{}?page={page}", r.id))]
            sse-swap=[(!r.state.is_final()).then_some("update")] data-rows="update" {
            (summary(&viewer, &r, &tasks))
            h2 { "Gate verdicts" }
            @if verdicts.is_empty() {
                p.muted { "No regression found for this rollout." }
            } @else {
                ul.verdicts {
                    @for v in &verdicts {
                        li {
                            (badge("regression")) " " (v.metric) " at " (time(v.at)) ": "
                            (verdict_summary(&v.doc))
                        }
                    }
                }
            }
            h2 #hosts-h { "Hosts" }
            @if tasks.is_empty() {
                p.muted { "This rollout has no hosts." }
            } @else {
                p.small { (tasks.len()) " hosts" @if pages > 1 { ", page " (page + 1) " of " (pages) } }
                div.scroll {
                    table.grid.hosts aria-labelledby="hosts-h" {
                        thead { tr {
                            th scope="col" { "Host" } th scope="col" { "Wave" } th scope="col" { "Purpose" }
                            th scope="col" { "State" } th scope="col" { "Step" } th scope="col" { "Build" }
                            th scope="col" { "Updated" } th scope="col" { "Output" }
                        } }
                        tbody #task-rows { @for t in &shown { (row(t)) } }
                    }
                }
                @if pages > 1 {
                    nav.pager aria-label="Host pages" {
                        @if page > 0 { a href=(format!("/ui/rollouts/{}?page={}", r.id, page - 1)) { "← Previous" } " " }
                        @if page + 1 < pages { a href=(format!("/ui/rollouts/{}?page={}", r.id, page + 1)) { "Next →" } }
                    }
                }
            }
        }
    };
    Ok(view::page(Some(&viewer), &title, Nav::None, body))
}

/// The human summary of a stored verdict document.
fn verdict_summary(doc: &str) -> String {
    serde_json::from_str::<gantry_core::detect::Verdict>(doc)
        .map(|v| v.summary)
        .unwrap_or_else(|_| "(unreadable verdict)".to_string())
}

/// `POST /ui/rollouts/{id}/{pause|resume|abort}`.
pub async fn control(
    State(state): State<AppState>,
    viewer: Viewer,
    headers: HeaderMap,
    Path((id, action)): Path<(String, String)>,
    axum::Form(form): axum::Form<CsrfForm>,
) -> Result<Response, UiError> {
    check_post(&viewer, &headers, form.csrf.as_deref())?;
    let r = load(&state, &viewer, &id).await?;
    viewer.require(ScopeName::Deploy, Some(&r.service), Some(&r.environment))?;
    let action: RolloutAction = action.parse().map_err(UiError::from)?;
    crate::ship::rollouts::control(&state, &viewer.actor(), &r, action).await?;
    Ok(Redirect::to(&format!("/ui/rollouts/{}", r.id)).into_response())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tail_keeps_the_last_lines() {
        assert_eq!(tail("a\nb\nc", 2), "b\nc");
        assert_eq!(tail("a", 5), "a");
        assert_eq!(tail("", 5), "");
    }
}
