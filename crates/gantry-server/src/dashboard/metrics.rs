//! `/ui/metrics`: a target box (globs and functions, with the render engine's positioned
//! errors), a graph with a line at every change, time ranges in the URL, drag to zoom and a
//! legend with the values under the cursor; `/ui/metrics/data` feeds the graph (through the
//! same evaluation as `/render`). With JavaScript off the page still lists each series'
//! last, lowest and highest value.

use axum::extract::{Query, State};
use axum::response::{IntoResponse, Response};
use chrono::Utc;
use gantry_core::{ChangeQuery, ScopeName};
use maud::{html, Markup};
use serde::{Deserialize, Serialize};

use super::session::Viewer;
use super::sparkline::human;
use super::view::{self, Nav, UiError, UiResult};
use crate::state::AppState;

/// The time ranges offered; any Graphite time works in the URL.
const RANGES: [&str; 6] = ["-1h", "-6h", "-24h", "-2d", "-7d", "-30d"];

#[derive(Debug, Default, Clone, Deserialize)]
pub struct GraphQuery {
    /// Render targets, one per line (or `target` repeated).
    pub target: Option<String>,
    pub from: Option<String>,
    pub until: Option<String>,
    /// Draw only this service's changes (all the viewer may read otherwise).
    pub service: Option<String>,
    /// Points wanted (the graph's width).
    pub points: Option<usize>,
}

impl GraphQuery {
    fn targets(&self) -> Vec<String> {
        self.target
            .as_deref()
            .unwrap_or("")
            .lines()
            .map(str::trim)
            .filter(|t| !t.is_empty())
            .map(str::to_string)
            .collect()
    }

    fn from(&self) -> &str {
        self.from
            .as_deref()
            .filter(|s| !s.is_empty())
            .unwrap_or("-6h")
    }

    fn until(&self) -> &str {
        self.until
            .as_deref()
            .filter(|s| !s.is_empty())
            .unwrap_or("now")
    }

    /// This query as a `/ui/metrics/data` URL.
    pub fn data_url(&self) -> String {
        let mut q = form_urlencoded::Serializer::new(String::new());
        q.append_pair("target", self.target.as_deref().unwrap_or(""));
        q.append_pair("from", self.from());
        q.append_pair("until", self.until());
        if let Some(s) = &self.service {
            q.append_pair("service", s);
        }
        format!("/ui/metrics/data?{}", q.finish())
    }
}

/// A change drawn on a graph.
#[derive(Debug, Serialize)]
struct Marker {
    at: i64,
    kind: String,
    summary: String,
    actor: String,
    url: String,
}

#[derive(Debug, Serialize)]
struct GraphData {
    /// Seconds since the epoch of each point.
    times: Vec<i64>,
    series: Vec<SeriesData>,
    changes: Vec<Marker>,
}

#[derive(Debug, Serialize)]
struct SeriesData {
    name: String,
    values: Vec<Option<f64>>,
}

/// Evaluates a query: the series (on one time axis) and the changes in its range.
async fn evaluate(
    state: &AppState,
    viewer: &Viewer,
    q: &GraphQuery,
) -> Result<(Vec<gantry_render::Series>, Vec<Marker>), UiError> {
    let now = Utc::now();
    let bad =
        |e: gantry_core::Invalid| UiError::new(axum::http::StatusCode::BAD_REQUEST, e.to_string());
    let from = gantry_core::time::parse_graphite_time("from", q.from(), now).map_err(bad)?;
    let until = gantry_core::time::parse_graphite_time("until", q.until(), now).map_err(bad)?;
    if from >= until {
        return Err(UiError::new(
            axum::http::StatusCode::BAD_REQUEST,
            "from must be before until",
        ));
    }
    let series = crate::api::graphite::evaluate_targets(
        state,
        q.targets(),
        from.timestamp(),
        until.timestamp(),
        now.timestamp(),
    )
    .await
    .map_err(|e| UiError::new(axum::http::StatusCode::BAD_REQUEST, e))?;
    let series = gantry_render::consolidate(&series, q.points.unwrap_or(800).clamp(10, 4000));
    let changes = state
        .store
        .list_changes(&ChangeQuery {
            service: q.service.clone().filter(|s| !s.is_empty()),
            since: Some(from),
            until: Some(until),
            limit: 500,
            ..Default::default()
        })
        .await?;
    let markers = changes
        .into_iter()
        .filter(|c| {
            viewer.allows(
                ScopeName::Read,
                c.service.as_deref(),
                c.environment.as_deref(),
            )
        })
        .map(|c| Marker {
            at: c.started_at.timestamp(),
            kind: c.kind.as_str().to_string(),
            summary: c.summary,
            actor: c.actor,
            url: format!("/ui/changes/{}", c.id),
        })
        .collect();
    Ok((series, markers))
}

/// Metrics are read with `read` held somewhere, as the Graphite API's readers need.
fn may_read_metrics(viewer: &Viewer) -> Result<(), UiError> {
    if viewer.grant.holds_somewhere(ScopeName::Read) {
        return Ok(());
    }
    Err(UiError::forbidden(format!(
        "token '{}' lacks the scope read needed to read metrics",
        viewer.grant.token_name
    )))
}

/// `GET /ui/metrics/data`: JSON for the graph.
pub async fn data(
    State(state): State<AppState>,
    viewer: Viewer,
    Query(q): Query<GraphQuery>,
) -> Response {
    if let Err(e) = may_read_metrics(&viewer) {
        return (
            e.status,
            axum::Json(serde_json::json!({ "error": e.message })),
        )
            .into_response();
    }
    match evaluate(&state, &viewer, &q).await {
        Ok((series, changes)) => {
            let (start, step, len) = series
                .first()
                .map_or((0, 1, 0), |s| (s.start, s.step.max(1), s.values.len()));
            let times = (0..len as i64).map(|i| start + i * step).collect();
            let series = series
                .into_iter()
                .map(|s| SeriesData {
                    name: s.name,
                    values: s
                        .values
                        .into_iter()
                        .map(|v| v.filter(|v| v.is_finite()))
                        .collect(),
                })
                .collect();
            axum::Json(GraphData {
                times,
                series,
                changes,
            })
            .into_response()
        }
        Err(e) => (
            e.status,
            axum::Json(serde_json::json!({ "error": e.message })),
        )
            .into_response(),
    }
}

/// A graph of `q`: a canvas app.js draws. `zoom`: dragging a range puts it in the URL.
pub fn graph(q: &GraphQuery, label: &str, zoom: bool) -> Markup {
    html! {
        figure.graph {
            div.plot data-graph=(q.data_url()) data-zoom-url[zoom] role="img" aria-label=(label) {}
            figcaption { (label) }
        }
    }
}

/// `GET /ui/metrics`.
pub async fn page(
    State(state): State<AppState>,
    viewer: Viewer,
    Query(q): Query<GraphQuery>,
) -> UiResult {
    may_read_metrics(&viewer)?;
    let targets = q.targets();
    let result = if targets.is_empty() {
        None
    } else {
        Some(evaluate(&state, &viewer, &q).await)
    };
    let grafana = &state.config.dashboard.grafana_url;
    let body = html! {
        h1 { "Metrics" }
        form.stack method="get" action="/ui/metrics" {
            label for="target" { "Targets (one per line: globs and Graphite functions)" }
            textarea #target name="target" rows="3" spellcheck="false" placeholder="sumSeries(stats.shop.*.requests)" { (q.target.as_deref().unwrap_or("")) }
            div.row {
                label { "From "
                    select name="from" {
                        @for r in RANGES { option value=(r) selected[q.from() == r] { (r.trim_start_matches('-')) } }
                        @if !RANGES.contains(&q.from()) { option value=(q.from()) selected { (q.from()) } }
                    }
                }
                label { "Until " input type="text" name="until" value=(q.until()) size="10"; }
                button type="submit" { "Draw" }
            }
        }
        @match &result {
            None => p.hint { "Type a target, such as " code { "stats_counts.shop.checkout" } " or " code { "movingAverage(stats.timers.shop.*.mean, 10)" } "." },
            Some(Err(e)) => p.error role="alert" { (e.message) },
            Some(Ok((series, markers))) => {
                @if series.is_empty() {
                    p.muted { "No series match." }
                } @else {
                    (graph(&q, &format!("{} series, {} changes drawn", series.len(), markers.len()), true))
                    table.grid.small {
                        caption.sr-only { "Series summary" }
                        thead { tr { th scope="col" { "Series" } th scope="col" { "Last" } th scope="col" { "Lowest" } th scope="col" { "Highest" } } }
                        tbody {
                            @for s in series {
                                @let known: Vec<f64> = s.values.iter().flatten().copied().filter(|v| v.is_finite()).collect();
                                tr {
                                    th scope="row" { (s.name) }
                                    td { (known.last().map_or("—".into(), |v| human(*v))) }
                                    td { (known.iter().copied().reduce(f64::min).map_or("—".into(), human)) }
                                    td { (known.iter().copied().reduce(f64::max).map_or("—".into(), human)) }
                                }
                            }
                        }
                    }
                }
                @if !grafana.is_empty() {
                    p { a href=(grafana_link(grafana, &targets, q.from(), q.until())) rel="noopener noreferrer" { "Open in Grafana" } }
                }
            },
        }
    };
    Ok(view::page(Some(&viewer), "Metrics", Nav::Metrics, body))
}

/// Grafana's Explore with these targets over this range.
fn grafana_link(base: &str, targets: &[String], from: &str, until: &str) -> String {
    let to_grafana = |t: &str| match t.strip_prefix('-') {
        Some(rest) => format!("now-{rest}"),
        None => t.to_string(),
    };
    let queries: Vec<serde_json::Value> = targets
        .iter()
        .enumerate()
        .map(|(i, t)| serde_json::json!({ "refId": ((b'A' + (i % 26) as u8) as char).to_string(), "target": t }))
        .collect();
    let left = serde_json::json!({
        "queries": queries,
        "range": { "from": to_grafana(from), "to": to_grafana(until) },
    });
    let encoded: String = form_urlencoded::byte_serialize(left.to_string().as_bytes()).collect();
    format!("{}/explore?left={encoded}", base.trim_end_matches('/'))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn grafana_links_carry_targets_and_range() {
        let link = grafana_link("https://g.example/", &["a.b".into()], "-6h", "now");
        assert!(
            link.starts_with("https://g.example/explore?left="),
            "{link}"
        );
        let decoded: String = form_urlencoded::parse(link.split_once('?').unwrap().1.as_bytes())
            .map(|(_, v)| v.into_owned())
            .collect();
        let v: serde_json::Value = serde_json::from_str(&decoded).unwrap();
        assert_eq!(v["queries"][0]["target"], "a.b");
        assert_eq!(v["range"]["from"], "now-6h");
    }

    #[test]
    fn targets_are_lines() {
        let q = GraphQuery {
            target: Some("a.b\n\n  sum(c.*) \n".into()),
            ..Default::default()
        };
        assert_eq!(q.targets(), vec!["a.b".to_string(), "sum(c.*)".to_string()]);
    }
}
