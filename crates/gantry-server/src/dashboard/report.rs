//! `/ui/report`: the meta-metrics for a period (MTTD, MTTR, DORA's five, change failure by
//! kind, incidents by severity and cause) with their counts and definitions, per bucket
//! too; computed by `report::report`, the same as `gantry report` and `/api/v1/report`.

use axum::extract::{Query, State};
use chrono::Utc;
use gantry_core::report::{Rate, Stat};
use gantry_core::ScopeName;
use maud::{html, Markup};
use serde::Deserialize;

use super::service::span;
use super::session::Viewer;
use super::view::{self, non_empty, time, Nav, UiError, UiResult};
use crate::state::AppState;

#[derive(Debug, Default, Deserialize)]
pub struct ReportQuery {
    pub service: Option<String>,
    pub environment: Option<String>,
    /// RFC 3339, epoch seconds or a duration ago (`90d`).
    pub since: Option<String>,
    pub until: Option<String>,
    /// `day`, `week` or `month`.
    pub by: Option<String>,
}

fn stat(s: &Stat) -> Markup {
    let f = |v: Option<f64>| v.map_or("—".to_string(), |v| span(v.round() as i64));
    html! {
        @if s.n == 0 { span.muted { "n = 0" } }
        @else { "mean " (f(s.mean_s)) ", median " (f(s.median_s)) ", p90 " (f(s.p90_s)) " " span.muted { "(n = " (s.n) ")" } }
    }
}

fn rate(r: &Rate) -> Markup {
    html! {
        @match r.rate {
            Some(v) => { (format!("{:.1} %", v * 100.0)) " " span.muted { "(" (r.count) " of " (r.of) ")" } }
            None => span.muted { "no changes" },
        }
    }
}

/// `GET /ui/report`.
pub async fn page(
    State(state): State<AppState>,
    viewer: Viewer,
    Query(q): Query<ReportQuery>,
) -> UiResult {
    let now = Utc::now();
    let time_of =
        |field: &str, v: &Option<String>| -> Result<Option<chrono::DateTime<Utc>>, UiError> {
            non_empty(v)
                .map(|s| gantry_core::time::parse_api_time(field, s, now))
                .transpose()
                .map_err(|e| UiError::new(axum::http::StatusCode::BAD_REQUEST, e.to_string()))
        };
    let scope = crate::report::Scope::new(
        non_empty(&q.service).map(str::to_string),
        non_empty(&q.environment).map(str::to_string),
        time_of("since", &q.since)?,
        time_of("until", &q.until)?,
        non_empty(&q.by),
    )?;
    viewer.require(
        ScopeName::Read,
        scope.service.as_deref(),
        Some(&scope.environment),
    )?;
    let r = crate::report::report(&state, &scope).await?;
    let by = non_empty(&q.by).unwrap_or("week");
    let body = html! {
        h1 { "Report" }
        form.filters method="get" action="/ui/report" {
            label { "Service " input type="text" name="service" placeholder="every service" value=[scope.service.as_deref()]; }
            label { "Environment " input type="text" name="environment" value=(scope.environment); }
            label { "Since " input type="text" name="since" placeholder="90d" value=[non_empty(&q.since)]; }
            label { "Until " input type="text" name="until" placeholder="now" value=[non_empty(&q.until)]; }
            label { "Buckets "
                select name="by" {
                    @for b in ["day", "week", "month"] { option value=(b) selected[by == b] { (b) } }
                }
            }
            button type="submit" { "Show" }
        }
        p { "From " (time(r.since)) " to " (time(r.until)) " in " strong { (scope.environment) } "." }
        table.grid {
            caption.sr-only { "Figures for the period" }
            tbody {
                tr { th scope="row" { "Time to detect (MTTD)" } td { (stat(&r.mttd)) } }
                tr { th scope="row" { "Time to resolve (MTTR, from detection)" } td { (stat(&r.mttr)) } }
                tr { th scope="row" { "Time to resolve (from impact)" } td { (stat(&r.mttr_from_impact)) } }
                tr { th scope="row" { "Deployments" } td { (r.deployments) " " span.muted { (format!("({:.2} a day)", r.deployments_per_day)) } } }
                tr { th scope="row" { "Lead time for changes" } td { (stat(&r.lead_time)) } }
                tr { th scope="row" { "Change failure rate" } td { (rate(&r.change_fail_rate)) } }
                tr { th scope="row" { "Failed deployment recovery time" } td { (stat(&r.recovery_time)) } }
                tr { th scope="row" { "Rework rate" } td { (rate(&r.rework_rate)) } }
                tr { th scope="row" { "Incidents" } td { (r.incidents) } }
                tr { th scope="row" { "Share caused by changes" } td { (rate(&r.share_caused_by_changes)) } }
            }
        }
        div.graphs {
            section {
                h2 { "Change failure by kind" }
                @if r.change_failure_by_kind.is_empty() { p.muted { "No changes in the period." } }
                @else { ul { @for (k, v) in &r.change_failure_by_kind { li { (k) ": " (rate(v)) } } } }
            }
            section {
                h2 { "Incidents by severity" }
                @if r.incidents_by_severity.is_empty() { p.muted { "None." } }
                @else { ul { @for (k, v) in &r.incidents_by_severity { li { (k) ": " (v) } } } }
            }
            section {
                h2 { "Incidents by cause" }
                @if r.incidents_by_cause.is_empty() { p.muted { "None." } }
                @else { ul { @for (k, v) in &r.incidents_by_cause { li { (k) ": " (v) } } } }
            }
        }
        h2 { "By " (by) }
        div.scroll { table.grid {
            thead { tr {
                th scope="col" { "From" } th scope="col" { "Deployments" } th scope="col" { "Change failure" }
                th scope="col" { "Lead time" } th scope="col" { "Incidents" } th scope="col" { "MTTD" } th scope="col" { "MTTR" }
            } }
            tbody {
                @for b in &r.buckets {
                    tr {
                        td { (time(b.start)) }
                        td { (b.deployments) }
                        td { (rate(&b.change_fail_rate)) }
                        td { (stat(&b.lead_time)) }
                        td { (b.incidents) }
                        td { (stat(&b.mttd)) }
                        td { (stat(&b.mttr)) }
                    }
                }
            }
        } }
        details {
            summary { "Definitions" }
            ul { @for d in &r.definitions { li { (d) } } }
        }
    };
    Ok(view::page(Some(&viewer), "Report", Nav::Report, body))
}
