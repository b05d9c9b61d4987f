//! The Graphite read API that Grafana's Graphite data source calls: `/render`,
//! `/metrics/find`, `/metrics/expand`, `/metrics/index.json`, `/tags…`, `/functions`,
//! `/version`, over the embedded time-series store and (for `events()`) the change log.
//!
//! These need a token with `read` (Bearer, or basic auth with the token as password, which is
//! what Grafana sends) unless `[auth] anonymous_read = true`.

use std::collections::{BTreeMap, BTreeSet};

use axum::body::Bytes;
use axum::extract::{FromRequest, FromRequestParts, Request, State};
use axum::http::header;
use axum::http::request::Parts;
use axum::response::{IntoResponse, Response};
use chrono::Utc;
use gantry_core::time::parse_graphite_time;
use gantry_core::ScopeName;
use gantry_render::{RenderError, RenderOptions, Series, SeriesSource};
use gantry_store::TagMatch;
use serde::Serialize;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use crate::auth::Caller;
use crate::error::{ApiError, ApiResult, ErrorBody};
use crate::remote_read::RemoteMode;
use crate::state::AppState;

pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(render))
        .routes(routes!(find))
        .routes(routes!(expand))
        .routes(routes!(index_json))
        .routes(routes!(tags))
        .routes(routes!(autocomplete_tags))
        .routes(routes!(autocomplete_values))
        .routes(routes!(find_series))
        .routes(routes!(functions))
        .routes(routes!(version))
}

/// A caller allowed to read metrics: any `read` token, or anyone with `anonymous_read`.
pub struct MetricsReader;

impl FromRequestParts<AppState> for MetricsReader {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, ApiError> {
        if state.config.auth.anonymous_read {
            return Ok(MetricsReader);
        }
        let caller = Caller::from_request_parts(parts, state).await?;
        caller.require_somewhere(ScopeName::Read)?;
        Ok(MetricsReader)
    }
}

/// Query string and form body together, as graphite-web reads `request.GET` +
/// `request.POST`: the parameters of every Graphite read endpoint.
pub struct GraphiteParams(Vec<(String, String)>);

impl<S: Send + Sync> FromRequest<S> for GraphiteParams {
    type Rejection = ApiError;

    async fn from_request(request: Request, state: &S) -> Result<Self, ApiError> {
        let mut out: Vec<(String, String)> =
            form_urlencoded::parse(request.uri().query().unwrap_or("").as_bytes())
                .into_owned()
                .collect();
        let is_form = request
            .headers()
            .get(header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .is_some_and(|v| v.starts_with("application/x-www-form-urlencoded"));
        if is_form {
            let body = Bytes::from_request(request, state)
                .await
                .map_err(|e| ApiError::new(e.status(), "invalid_request", e.body_text()))?;
            out.extend(form_urlencoded::parse(&body).into_owned());
        }
        Ok(GraphiteParams(out))
    }
}

fn first<'a>(params: &'a [(String, String)], key: &str) -> Option<&'a str> {
    params
        .iter()
        .find(|(k, _)| k == key)
        .map(|(_, v)| v.as_str())
}

fn all<'a>(params: &'a [(String, String)], key: &str) -> Vec<&'a str> {
    params
        .iter()
        .filter(|(k, _)| k == key)
        .map(|(_, v)| v.as_str())
        .collect()
}

fn flag(params: &[(String, String)], key: &str) -> bool {
    first(params, key).is_some_and(|v| matches!(v, "1" | "true" | "True" | "on"))
}

/// The series source a render reads: the time-series store and the change log.
struct Source {
    state: AppState,
    now: i64,
    runtime: tokio::runtime::Handle,
}

impl Source {
    fn fetch(&self, name: &str, from: i64, until: i64) -> Result<Option<Series>, RenderError> {
        let fetched = self
            .state
            .tsdb
            .fetch(name, from, until, self.now)
            .map_err(|e| RenderError::Source(e.to_string()))?;
        // As graphite-web builds fetched series: consolidated by average, xFilesFactor 0
        // (the storage rule's method only decides how archives roll up).
        Ok(fetched.map(|f| Series::new(name, f.start, f.end, i64::from(f.step), f.values)))
    }

    /// Fetches `names` in order, on every core when there are enough of them (a week of
    /// a hundred series is a few thousand blocks to decompress; a render is one request).
    fn fetch_all(
        &self,
        names: &[String],
        from: i64,
        until: i64,
    ) -> Result<Vec<Series>, RenderError> {
        let threads = if names.len() < PARALLEL_FETCH_FROM {
            1
        } else {
            std::thread::available_parallelism().map_or(1, |n| n.get())
        };
        // Each thread takes the next name until none are left, so a thread the scheduler
        // pauses (another process, the kernel writing back) holds up one series, not half.
        // The calling thread works too.
        let next = std::sync::atomic::AtomicUsize::new(0);
        let work = || {
            let mut out = Vec::new();
            loop {
                let i = next.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                let Some(name) = names.get(i) else {
                    return Ok(out);
                };
                out.extend(self.fetch(name, from, until)?.map(|s| (i, s)));
            }
        };
        let parts: Vec<Result<Vec<(usize, Series)>, RenderError>> = std::thread::scope(|scope| {
            let helpers: Vec<_> = (1..threads).map(|_| scope.spawn(work)).collect();
            let mut parts = vec![work()];
            parts.extend(helpers.into_iter().map(|w| {
                w.join()
                    .unwrap_or_else(|_| Err(RenderError::Source("a fetch thread panicked".into())))
            }));
            parts
        });
        let mut fetched = Vec::with_capacity(names.len());
        for part in parts {
            fetched.extend(part?);
        }
        // In the order asked.
        fetched.sort_unstable_by_key(|(i, _)| *i);
        Ok(fetched.into_iter().map(|(_, s)| s).collect())
    }
}

/// Below this many series a render fetches them on its own thread.
const PARALLEL_FETCH_FROM: usize = 16;

impl SeriesSource for Source {
    fn find(&self, pattern: &str, from: i64, until: i64) -> Result<Vec<Series>, RenderError> {
        let remote = match &self.state.remote {
            Some(remote) => Some((
                remote.mode,
                self.runtime.block_on(remote.find(pattern, from, until))?,
            )),
            None => None,
        };
        let mut out = Vec::new();
        if !matches!(remote, Some((RemoteMode::Replace, _))) {
            // Only names sharing the pattern's literal start can match it.
            let literal = pattern
                .find(['*', '?', '[', '{'])
                .map_or(pattern, |glob| &pattern[..glob]);
            let mut names = self.state.tsdb.names_with_prefix(literal);
            let glob = gantry_render::Glob::try_new(pattern)
                .map_err(|e| RenderError::OverLimit(e.to_string()))?;
            names.retain(|name| glob.matches(name));
            out = self.fetch_all(&names, from, until)?;
        }
        if let Some((_, remote)) = remote {
            // Merged, the local series wins a name both have.
            let local: std::collections::HashSet<String> =
                out.iter().map(|s| s.name.clone()).collect();
            out.extend(remote.into_iter().filter(|s| !local.contains(&s.name)));
            out.sort_by(|a, b| a.name.cmp(&b.name));
        }
        Ok(out)
    }

    fn find_by_tags(
        &self,
        exprs: &[String],
        from: i64,
        until: i64,
    ) -> Result<Vec<Series>, RenderError> {
        let names =
            names_matching_tags(&self.state.tsdb.names(), exprs).map_err(RenderError::Source)?;
        self.fetch_all(&names, from, until)
    }

    fn events(&self, tags: &[String], from: i64, until: i64) -> Result<Vec<i64>, RenderError> {
        let since = chrono::DateTime::from_timestamp(from, 0).unwrap_or_default();
        let until = chrono::DateTime::from_timestamp(until, 0).unwrap_or_default()
            + chrono::Duration::seconds(1);
        let changes = self
            .runtime
            .block_on(self.state.store.changes_by_tags(
                tags,
                TagMatch::All,
                since,
                until,
                crate::api::events::MAX_EVENTS,
            ))
            .map_err(|e| RenderError::Source(e.to_string()))?;
        Ok(changes.iter().map(|c| c.started_at.timestamp()).collect())
    }
}

/// One `seriesByTag` expression: `tag=value`, `tag!=value`, `tag=~regex`, `tag!=~regex`.
struct TagExpr {
    tag: String,
    negate: bool,
    matcher: TagMatcher,
}

enum TagMatcher {
    Equal(String),
    Regex(regex::Regex),
}

impl TagExpr {
    fn parse(expr: &str) -> Result<TagExpr, String> {
        let (tag, negate, rest, is_regex) = if let Some((t, r)) = expr.split_once("!=~") {
            (t, true, r, true)
        } else if let Some((t, r)) = expr.split_once("=~") {
            (t, false, r, true)
        } else if let Some((t, r)) = expr.split_once("!=") {
            (t, true, r, false)
        } else if let Some((t, r)) = expr.split_once('=') {
            (t, false, r, false)
        } else {
            return Err(format!(
                "seriesByTag: '{expr}' is not tag=value, tag!=value, tag=~regex or tag!=~regex"
            ));
        };
        if tag.is_empty() {
            return Err(format!("seriesByTag: '{expr}' has no tag name"));
        }
        let matcher = if is_regex {
            // graphite-web anchors tag regexes at the start.
            TagMatcher::Regex(
                regex::Regex::new(&format!("^(?:{rest})"))
                    .map_err(|e| format!("seriesByTag: '{expr}': {e}"))?,
            )
        } else {
            TagMatcher::Equal(rest.to_string())
        };
        Ok(TagExpr {
            tag: tag.to_string(),
            negate,
            matcher,
        })
    }

    fn matches(&self, tags: &BTreeMap<String, String>) -> bool {
        let value = tags.get(&self.tag).map_or("", String::as_str);
        let hit = match &self.matcher {
            TagMatcher::Equal(want) => value == want,
            TagMatcher::Regex(re) => re.is_match(value),
        };
        hit != self.negate
    }
}

/// Render targets as graphite-web does (`target` repeated, `from`, `until`, `format=json|csv`,
/// `maxDataPoints`, `noNullPoints`), from the query string or a form-encoded body.
#[utoipa::path(
    method(get, post),
    path = "/render",
    tag = "graphite",
    params(
        ("target" = Vec<String>, Query, description = "Render targets (repeatable)"),
        ("from" = Option<String>, Query, description = "Graphite time, default -24h"),
        ("until" = Option<String>, Query, description = "Graphite time, default now"),
        ("format" = Option<String>, Query, description = "json (default) or csv"),
        ("maxDataPoints" = Option<u32>, Query),
        ("noNullPoints" = Option<String>, Query, description = "graphite-web accepts any value here: 1, true, True or on mean yes, anything else (or none) no"),
    ),
    responses(
        (status = 200, description = "`[{target, tags, datapoints: [[value, ts], …]}]`"),
        (status = 400, description = "A bad target, naming the function and position", body = ErrorBody),
    ),
    security(("bearer" = []), ("basic" = [])),
    extensions(("x-gantry-scope" = json!("read"))),
)]
pub async fn render(
    State(state): State<AppState>,
    _reader: MetricsReader,
    GraphiteParams(params): GraphiteParams,
) -> ApiResult<Response> {
    let now = Utc::now();
    let from =
        parse_graphite_time("from", first(&params, "from").unwrap_or("-24h"), now)?.timestamp();
    let until =
        parse_graphite_time("until", first(&params, "until").unwrap_or("now"), now)?.timestamp();
    if from >= until {
        return Err(ApiError::invalid("from must be before until"));
    }
    let targets: Vec<String> = all(&params, "target")
        .into_iter()
        .filter(|t| !t.trim().is_empty())
        .map(str::to_string)
        .collect();
    let csv = match first(&params, "format").unwrap_or("json") {
        "json" => false,
        "csv" => true,
        other => {
            return Err(ApiError::invalid(format!(
                "format '{other}' is not supported; use json or csv"
            )))
        }
    };
    let max_data_points = match first(&params, "maxDataPoints") {
        None | Some("") => None,
        Some(n) => Some(
            n.parse::<f64>()
                .ok()
                .filter(|v| (1.0..=2_147_483_647.0).contains(v))
                .map(|v| v as usize)
                .ok_or_else(|| {
                    ApiError::invalid(format!(
                        "maxDataPoints '{n}' must be a number from 1 to 2147483647"
                    ))
                })?,
        ),
    };
    let options = RenderOptions {
        max_data_points,
        no_null_points: flag(&params, "noNullPoints"),
    };
    let series = evaluate_targets(&state, targets, from, until, now.timestamp())
        .await
        .map_err(ApiError::invalid)?;
    if csv {
        let series = match options.max_data_points {
            Some(n) => gantry_render::consolidate(&series, n),
            None => series,
        };
        return Ok((
            [(header::CONTENT_TYPE, "text/csv")],
            gantry_render::to_csv(&series),
        )
            .into_response());
    }
    Ok(axum::Json(gantry_render::to_json(&series, options)).into_response())
}

/// Evaluates render targets over `[from, until)` through the same source as `/render` (the
/// local store, plus `[metrics.remote_read]`): what monitors, detection and the report
/// read too. The error names the target and what was wrong.
pub async fn evaluate_targets(
    state: &AppState,
    targets: Vec<String>,
    from: i64,
    until: i64,
    now: i64,
) -> Result<Vec<Series>, String> {
    let source = Source {
        state: state.clone(),
        now,
        runtime: tokio::runtime::Handle::current(),
    };
    tokio::task::spawn_blocking(move || -> Result<Vec<Series>, RenderError> {
        let ctx = gantry_render::Context {
            from,
            until,
            now: source.now,
            source: &source,
        };
        let mut series = Vec::new();
        for target in &targets {
            series.extend(gantry_render::evaluate(target, &ctx).map_err(|e| match e {
                RenderError::Source(_) => e,
                other => RenderError::Source(format!("target '{target}': {other}")),
            })?);
        }
        Ok(series)
    })
    .await
    .map_err(|_| "the render task failed".to_string())?
    .map_err(|e| e.to_string())
}

/// Stored names, with the remote's (matching `pattern`, a tree query) when remote reading
/// is configured.
async fn all_names(state: &AppState, pattern: &str) -> ApiResult<Vec<String>> {
    let mut names = match state.remote.as_ref().map(|r| r.mode) {
        Some(RemoteMode::Replace) => Vec::new(),
        _ => state.tsdb.names(),
    };
    if let Some(remote) = &state.remote {
        // The remote expands the query itself; ask for everything below it too.
        let below = format!("{pattern}.*");
        for query in [pattern, below.as_str()] {
            names.extend(
                remote
                    .names(query)
                    .await
                    .map_err(|e| ApiError::invalid(e.to_string()))?,
            );
        }
        names.sort();
        names.dedup();
    }
    Ok(names)
}

/// One node of a `/metrics/find` answer.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
struct Node {
    path: String,
    name: String,
    leaf: bool,
}

/// The distinct nodes at the depth of `pattern` among the stored names: leaves where a name
/// ends there, branches where names continue.
fn find_nodes(names: &[String], pattern: &str) -> Vec<Node> {
    let depth = pattern.split('.').count();
    let mut nodes = BTreeSet::new();
    for name in names {
        let plain = name.split(';').next().unwrap_or(name);
        let parts: Vec<&str> = plain.split('.').collect();
        if parts.len() < depth {
            continue;
        }
        let prefix = parts[..depth].join(".");
        if !gantry_render::glob_match(pattern, &prefix) {
            continue;
        }
        nodes.insert(Node {
            name: parts[depth - 1].to_string(),
            leaf: parts.len() == depth,
            path: prefix,
        });
    }
    nodes.into_iter().collect()
}

#[derive(Serialize)]
struct TreeNode {
    #[serde(rename = "allowChildren")]
    allow_children: u8,
    expandable: u8,
    leaf: u8,
    id: String,
    text: String,
    context: BTreeMap<String, String>,
}

/// Browse the metric tree (`query` a glob; `format` treejson (default) or completer).
#[utoipa::path(
    method(get, post),
    path = "/metrics/find",
    tag = "graphite",
    params(("query" = String, Query), ("format" = Option<String>, Query, description = "treejson or completer")),
    responses((status = 200, description = "Nodes matching the query"), (status = 400, body = ErrorBody)),
    security(("bearer" = []), ("basic" = [])),
    extensions(("x-gantry-scope" = json!("read"))),
)]
pub async fn find(
    State(state): State<AppState>,
    _reader: MetricsReader,
    GraphiteParams(params): GraphiteParams,
) -> ApiResult<Response> {
    let query = first(&params, "query")
        .filter(|q| !q.is_empty())
        .ok_or_else(|| ApiError::invalid("query is required, e.g. query=*"))?;
    let nodes = find_nodes(&all_names(&state, query).await?, query);
    match first(&params, "format").unwrap_or("treejson") {
        "treejson" => Ok(axum::Json(
            nodes
                .into_iter()
                .map(|n| TreeNode {
                    allow_children: u8::from(!n.leaf),
                    expandable: u8::from(!n.leaf),
                    leaf: u8::from(n.leaf),
                    id: n.path,
                    text: n.name,
                    context: BTreeMap::new(),
                })
                .collect::<Vec<_>>(),
        )
        .into_response()),
        "completer" => {
            let metrics: Vec<serde_json::Value> = nodes
                .into_iter()
                .map(|n| {
                    let path = if n.leaf { n.path } else { format!("{}.", n.path) };
                    serde_json::json!({"path": path, "name": n.name, "is_leaf": if n.leaf { "1" } else { "0" }})
                })
                .collect();
            Ok(axum::Json(serde_json::json!({ "metrics": metrics })).into_response())
        }
        other => Err(ApiError::invalid(format!(
            "format '{other}' is not supported; use treejson or completer"
        ))),
    }
}

/// Expand globs into the paths they match (`query` repeatable, `leavesOnly`, `groupByExpr`).
#[utoipa::path(
    method(get, post),
    path = "/metrics/expand",
    tag = "graphite",
    params(("query" = Vec<String>, Query), ("leavesOnly" = Option<String>, Query, description = "graphite-web accepts any value here: 1, true, True or on mean yes, anything else (or none) no"), ("groupByExpr" = Option<String>, Query, description = "graphite-web accepts any value here: 1, true, True or on mean yes, anything else (or none) no")),
    responses((status = 200, description = "`{\"results\": …}`")),
    security(("bearer" = []), ("basic" = [])),
    extensions(("x-gantry-scope" = json!("read"))),
)]
pub async fn expand(
    State(state): State<AppState>,
    _reader: MetricsReader,
    GraphiteParams(params): GraphiteParams,
) -> ApiResult<axum::Json<serde_json::Value>> {
    let leaves_only = flag(&params, "leavesOnly");
    let mut grouped = BTreeMap::new();
    for query in all(&params, "query") {
        let names = all_names(&state, query).await?;
        let found: BTreeSet<String> = find_nodes(&names, query)
            .into_iter()
            .filter(|n| n.leaf || !leaves_only)
            .map(|n| n.path)
            .collect();
        grouped.insert(query.to_string(), found);
    }
    if flag(&params, "groupByExpr") {
        return Ok(axum::Json(serde_json::json!({ "results": grouped })));
    }
    let all: BTreeSet<String> = grouped.into_values().flatten().collect();
    Ok(axum::Json(serde_json::json!({ "results": all })))
}

/// Every metric name (leaves), sorted.
#[utoipa::path(get, path = "/metrics/index.json", tag = "graphite", responses((status = 200, body = Vec<String>)), security(("bearer" = []), ("basic" = [])), extensions(("x-gantry-scope" = json!("read"))))]
pub async fn index_json(
    State(state): State<AppState>,
    _reader: MetricsReader,
) -> axum::Json<Vec<String>> {
    axum::Json(state.tsdb.names())
}

fn tag_index(names: &[String]) -> BTreeMap<String, BTreeSet<String>> {
    let mut index: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    for name in names.iter().filter(|n| n.contains(';')) {
        for (tag, value) in gantry_render::series::tags_from_name(name) {
            index.entry(tag).or_default().insert(value);
        }
    }
    index
}

/// Tags of tagged series (`filter` a regex on tag names).
#[utoipa::path(get, path = "/tags", tag = "graphite", params(("filter" = Option<String>, Query, description = "A regular expression tag names must match")), responses((status = 200, description = "`[{\"tag\": …}]`"), (status = 400, body = ErrorBody)), security(("bearer" = []), ("basic" = [])), extensions(("x-gantry-scope" = json!("read"))))]
pub async fn tags(
    State(state): State<AppState>,
    _reader: MetricsReader,
    GraphiteParams(params): GraphiteParams,
) -> ApiResult<axum::Json<Vec<serde_json::Value>>> {
    let filter = first(&params, "filter")
        .map(|f| regex::Regex::new(f).map_err(|e| ApiError::invalid(format!("filter '{f}': {e}"))))
        .transpose()?;
    Ok(axum::Json(
        tag_index(&state.tsdb.names())
            .into_keys()
            .filter(|t| filter.as_ref().is_none_or(|f| f.is_match(t)))
            .map(|t| serde_json::json!({ "tag": t }))
            .collect(),
    ))
}

/// Names of series matching every `expr` (seriesByTag expressions).
fn names_matching_tags<E: AsRef<str>>(
    names: &[String],
    exprs: &[E],
) -> Result<Vec<String>, String> {
    let matchers = exprs
        .iter()
        .map(|e| TagExpr::parse(e.as_ref()))
        .collect::<Result<Vec<_>, _>>()?;
    Ok(names
        .iter()
        .filter(|n| {
            let tags = gantry_render::series::tags_from_name(n);
            matchers.iter().all(|m| m.matches(&tags))
        })
        .cloned()
        .collect())
}

/// [`names_matching_tags`] for the HTTP endpoints.
fn series_matching(names: &[String], exprs: &[&str]) -> Result<Vec<String>, ApiError> {
    names_matching_tags(names, exprs).map_err(ApiError::invalid)
}

/// Tag names for autocompletion (`tagPrefix`, `expr` repeatable, `limit`).
#[utoipa::path(get, path = "/tags/autoComplete/tags", tag = "graphite", params(("tagPrefix" = Option<String>, Query), ("expr" = Option<Vec<String>>, Query), ("limit" = Option<usize>, Query)), responses((status = 200, body = Vec<String>), (status = 400, body = ErrorBody)), security(("bearer" = []), ("basic" = [])), extensions(("x-gantry-scope" = json!("read"))))]
pub async fn autocomplete_tags(
    State(state): State<AppState>,
    _reader: MetricsReader,
    GraphiteParams(params): GraphiteParams,
) -> ApiResult<axum::Json<Vec<String>>> {
    let names = series_matching(&state.tsdb.names(), &all(&params, "expr"))?;
    let prefix = first(&params, "tagPrefix").unwrap_or("");
    let limit = autocomplete_limit(&params)?;
    Ok(axum::Json(
        tag_index(&names)
            .into_keys()
            .filter(|t| t.starts_with(prefix))
            .take(limit)
            .collect(),
    ))
}

/// `limit` of the autocompletion endpoints: a count, 100 when absent (graphite-web fails
/// on anything else; this names it).
fn autocomplete_limit(params: &[(String, String)]) -> Result<usize, ApiError> {
    match first(params, "limit") {
        None => Ok(100),
        Some(l) => l.parse().map_err(|_| {
            ApiError::invalid(format!(
                "limit '{l}' is not a count (a whole number, 0 or more)"
            ))
        }),
    }
}

/// Values of one tag for autocompletion (`tag`, `valuePrefix`, `expr` repeatable, `limit`).
#[utoipa::path(get, path = "/tags/autoComplete/values", tag = "graphite", params(("tag" = String, Query), ("valuePrefix" = Option<String>, Query), ("expr" = Option<Vec<String>>, Query), ("limit" = Option<usize>, Query)), responses((status = 200, body = Vec<String>), (status = 400, body = ErrorBody)), security(("bearer" = []), ("basic" = [])), extensions(("x-gantry-scope" = json!("read"))))]
pub async fn autocomplete_values(
    State(state): State<AppState>,
    _reader: MetricsReader,
    GraphiteParams(params): GraphiteParams,
) -> ApiResult<axum::Json<Vec<String>>> {
    let tag = first(&params, "tag").ok_or_else(|| ApiError::invalid("tag is required"))?;
    let names = series_matching(&state.tsdb.names(), &all(&params, "expr"))?;
    let prefix = first(&params, "valuePrefix").unwrap_or("");
    let limit = autocomplete_limit(&params)?;
    let values = tag_index(&names).remove(tag).unwrap_or_default();
    Ok(axum::Json(
        values
            .into_iter()
            .filter(|v| v.starts_with(prefix))
            .take(limit)
            .collect(),
    ))
}

/// Series names matching every `expr` (seriesByTag expressions).
#[utoipa::path(method(get, post), path = "/tags/findSeries", tag = "graphite", params(("expr" = Vec<String>, Query)), responses((status = 200, body = Vec<String>), (status = 400, body = ErrorBody)), security(("bearer" = []), ("basic" = [])), extensions(("x-gantry-scope" = json!("read"))))]
pub async fn find_series(
    State(state): State<AppState>,
    _reader: MetricsReader,
    GraphiteParams(params): GraphiteParams,
) -> ApiResult<axum::Json<Vec<String>>> {
    let exprs = all(&params, "expr");
    if exprs.is_empty() {
        return Err(ApiError::invalid("expr is required, e.g. expr=name=cpu"));
    }
    Ok(axum::Json(series_matching(&state.tsdb.names(), &exprs)?))
}

/// The render functions this server implements, in graphite-web's shape.
#[utoipa::path(get, path = "/functions", tag = "graphite", responses((status = 200, description = "An object keyed by function name")), security(("bearer" = []), ("basic" = [])), extensions(("x-gantry-scope" = json!("read"))))]
pub async fn functions(_reader: MetricsReader) -> axum::Json<serde_json::Value> {
    axum::Json(gantry_render::registry::functions_json())
}

/// The graphite-web version whose API this server speaks (Grafana picks features by it).
#[utoipa::path(get, path = "/version", tag = "graphite", responses((status = 200, description = "A version string")), extensions(("x-gantry-scope" = json!("public"))))]
pub async fn version() -> &'static str {
    "1.1.10"
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_nodes_by_depth() {
        let names: Vec<String> = ["a.b.c", "a.b.d", "a.x", "b.c;host=1"]
            .iter()
            .map(|s| s.to_string())
            .collect();
        let found = find_nodes(&names, "a.*");
        assert_eq!(
            found,
            vec![
                Node {
                    path: "a.b".into(),
                    name: "b".into(),
                    leaf: false
                },
                Node {
                    path: "a.x".into(),
                    name: "x".into(),
                    leaf: true
                },
            ]
        );
        assert_eq!(find_nodes(&names, "*").len(), 2);
        assert_eq!(find_nodes(&names, "b.c").len(), 1);
    }

    #[test]
    fn tag_expressions() {
        let tags = gantry_render::series::tags_from_name("cpu;host=web1;dc=eu");
        for (expr, expected) in [
            ("name=cpu", true),
            ("host=web2", false),
            ("host!=web2", true),
            ("host=~web", true),
            ("host!=~web", false),
            ("missing=", true),
        ] {
            assert_eq!(
                TagExpr::parse(expr).unwrap().matches(&tags),
                expected,
                "{expr}"
            );
        }
        assert!(TagExpr::parse("nothing").is_err());
        assert!(TagExpr::parse("host=~(").is_err());
    }
}
