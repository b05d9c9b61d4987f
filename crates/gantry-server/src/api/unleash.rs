//! The flag SDK protocols: Unleash's client API (`/api/client/…`), its frontend API
//! (`/api/frontend…`), OpenFeature's remote evaluation protocol (`/ofrep/v1/…`) and the
//! flag stream. Every route takes an SDK token (`client:S@E` or `frontend:S@E`) whose
//! service and environment decide what is served; the request never names them.
//! Evaluation reads the in-memory flag set, never the database.

use std::collections::BTreeMap;
use std::convert::Infallible;
use std::net::SocketAddr;
use std::time::Duration;

use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::sse::{Event, KeepAlive, Sse};
use axum::response::{IntoResponse, Response};
use chrono::{DateTime, Utc};
use futures::{Stream, StreamExt};
use gantry_core::ScopeName;
use gantry_flags::model::{ClientFeatures, Context, Payload};
use gantry_flags::{Evaluation, Reason};
use gantry_store::{FlagUsage, SdkClient};
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use crate::error::{ApiError, ApiResult, ErrorBody};
use crate::extract::{Peer, Query};
use crate::flags::tokens::SdkCaller;
use crate::flags::FlagSet;
use crate::state::AppState;

const CLIENT: &[ScopeName] = &[ScopeName::Client];
const FRONTEND: &[ScopeName] = &[ScopeName::Frontend];
const EITHER: &[ScopeName] = &[ScopeName::Client, ScopeName::Frontend];

/// Longest flag key OFREP evaluates.
pub const MAX_OFREP_KEY: usize = 64;

pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(client_features))
        .routes(routes!(client_register))
        .routes(routes!(client_metrics))
        .routes(routes!(frontend_get, frontend_post, frontend_options))
        .routes(routes!(frontend_metrics, frontend_metrics_options))
        .routes(routes!(frontend_register, frontend_register_options))
        .routes(routes!(ofrep_one, ofrep_one_options))
        .routes(routes!(ofrep_bulk, ofrep_bulk_options))
}

/// The flag stream lives as long as the SDK wants.
pub fn stream_router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new().routes(routes!(client_stream))
}

async fn sdk(
    state: &AppState,
    headers: &HeaderMap,
    kinds: &[ScopeName],
) -> ApiResult<std::sync::Arc<SdkCaller>> {
    state.flag_sets.tokens.authorize(headers, kinds).await
}

async fn flag_set(state: &AppState, caller: &SdkCaller) -> ApiResult<std::sync::Arc<FlagSet>> {
    Ok(state
        .flag_sets
        .get(&caller.service, &caller.environment)
        .await?)
}

fn not_modified(headers: &HeaderMap, etag: &str) -> bool {
    headers
        .get(header::IF_NONE_MATCH)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| {
            v.split(',')
                .any(|t| t.trim().trim_start_matches("W/") == etag)
        })
}

fn respond(status: StatusCode, etag: &str, content_type: &'static str, body: Bytes) -> Response {
    let mut response = (status, body).into_response();
    let headers = response.headers_mut();
    headers.insert(header::CONTENT_TYPE, HeaderValue::from_static(content_type));
    if let Ok(v) = HeaderValue::from_str(etag) {
        headers.insert(header::ETAG, v);
    }
    response
}

fn not_modified_response(etag: &str) -> Response {
    let mut response = StatusCode::NOT_MODIFIED.into_response();
    if let Ok(v) = HeaderValue::from_str(etag) {
        response.headers_mut().insert(header::ETAG, v);
    }
    response
}

#[derive(Debug, Default, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct FeaturesParams {
    /// Only flags of this project (Gantry: the token's service; another gives none).
    project: Option<String>,
    /// Only flags whose name starts with this.
    #[serde(rename = "namePrefix")]
    name_prefix: Option<String>,
}

/// Whether the SDK announced a client-specification version that knows segments (4.2.0
/// and later); older ones get each segment's constraints inlined.
fn supports_segments(headers: &HeaderMap) -> bool {
    let Some(version) = headers
        .get("unleash-client-spec")
        .and_then(|v| v.to_str().ok())
    else {
        return false;
    };
    let parts: Vec<u64> = version
        .trim()
        .split(['.', '-'])
        .take(2)
        .map(|p| p.parse().unwrap_or(0))
        .collect();
    matches!(parts.as_slice(), [major, minor] if (*major, *minor) >= (4, 2))
}

/// Every flag of the token's service in its environment: Unleash's client document.
#[utoipa::path(
    get,
    path = "/api/client/features",
    tag = "flag-sdks",
    params(FeaturesParams),
    responses(
        (status = 200, description = "Unleash's version-2 client document", body = Object, headers(("ETag" = String))),
        (status = 304, description = "Unchanged since the If-None-Match ETag"),
        (status = 401, body = ErrorBody),
        (status = 403, description = "Not a client token", body = ErrorBody),
    ),
    security(("sdk" = [])),
    extensions(("x-gantry-scope" = json!("client"))),
)]
pub async fn client_features(
    State(state): State<AppState>,
    headers: HeaderMap,
    Query(params): Query<FeaturesParams>,
) -> ApiResult<Response> {
    let caller = sdk(&state, &headers, CLIENT).await?;
    let set = flag_set(&state, &caller).await?;
    let segments = supports_segments(&headers);
    let filtered = params.project.is_some() || params.name_prefix.is_some();
    let shape = format!(
        "features|{segments}|{}|{}",
        params.project.as_deref().unwrap_or("\u{0}"),
        params.name_prefix.as_deref().unwrap_or("\u{0}")
    );
    let etag = set.etag(shape.as_bytes());
    if not_modified(&headers, &etag) {
        return Ok(not_modified_response(&etag));
    }
    let body = if !filtered {
        if segments {
            set.body_segments.clone()
        } else {
            set.body_inlined.clone()
        }
    } else {
        let mut document: ClientFeatures = if segments {
            set.document.clone()
        } else {
            crate::flags::sets::inline_segments(&set.document, &set.environment, &set.service)
        };
        document.features.retain(|f| {
            params.project.as_ref().is_none_or(|p| p == &set.service)
                && params
                    .name_prefix
                    .as_ref()
                    .is_none_or(|prefix| f.name.starts_with(prefix.as_str()))
        });
        if let Some(serde_json::Value::Object(query)) = &mut document.query {
            if let Some(prefix) = &params.name_prefix {
                query.insert("namePrefix".into(), prefix.clone().into());
            }
        }
        Bytes::from(serde_json::to_vec(&document).map_err(|_| ApiError::internal())?)
    };
    Ok(respond(StatusCode::OK, &etag, "application/json", body))
}

/// An SDK's registration, as Unleash SDKs send it; unknown fields are ignored.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct Registration {
    pub app_name: Option<String>,
    pub instance_id: Option<String>,
    pub sdk_version: Option<String>,
    #[serde(default)]
    pub strategies: Vec<String>,
    /// When the SDK started (RFC 3339); a time in another form is ignored, as SDKs differ.
    pub started: Option<String>,
    /// Milliseconds between metrics reports.
    #[serde(default, deserialize_with = "optional_count")]
    pub interval: Option<i64>,
}

fn parse_body<T: serde::de::DeserializeOwned>(body: &Bytes) -> ApiResult<T> {
    serde_json::from_slice(body)
        .map_err(|e| ApiError::invalid(format!("the body is not valid: {e}")))
}

fn short(field: &str, value: Option<String>, default: &str) -> ApiResult<String> {
    let value = value.unwrap_or_else(|| default.to_string());
    if value.len() > 256 {
        return Err(ApiError::invalid(format!(
            "{field} is longer than 256 bytes"
        )));
    }
    Ok(value)
}

async fn register(state: &AppState, caller: &SdkCaller, body: &Bytes) -> ApiResult<StatusCode> {
    let r: Registration = parse_body(body)?;
    let now = Utc::now();
    if r.strategies.len() > 100 {
        return Err(ApiError::invalid("strategies: more than 100 names"));
    }
    state
        .store
        .register_sdk_client(&SdkClient {
            service: caller.service.clone(),
            environment: caller.environment.clone(),
            app_name: short("appName", r.app_name, "unknown")?,
            instance_id: short("instanceId", r.instance_id, "unknown")?,
            sdk_version: r.sdk_version.map(|v| v.chars().take(256).collect()),
            strategies: r
                .strategies
                .into_iter()
                .map(|s| s.chars().take(100).collect())
                .collect(),
            started_at: r
                .started
                .as_deref()
                .and_then(|t| DateTime::parse_from_rfc3339(t).ok())
                .map(|t| t.with_timezone(&Utc)),
            interval_ms: r.interval,
            first_seen_at: now,
            last_seen_at: now,
        })
        .await?;
    Ok(StatusCode::ACCEPTED)
}

/// Register an SDK instance (Unleash's client API).
#[utoipa::path(
    post,
    path = "/api/client/register",
    tag = "flag-sdks",
    request_body = Registration,
    responses((status = 202), (status = 400, body = ErrorBody), (status = 403, body = ErrorBody)),
    security(("sdk" = [])),
    extensions(("x-gantry-scope" = json!("client"))),
)]
pub async fn client_register(
    State(state): State<AppState>,
    headers: HeaderMap,
    body: Bytes,
) -> ApiResult<StatusCode> {
    let caller = sdk(&state, &headers, CLIENT).await?;
    register(&state, &caller, &body).await
}

/// One flag's counts in a metrics report.
#[derive(Debug, Deserialize, ToSchema)]
pub struct ToggleCounts {
    #[serde(default, deserialize_with = "count")]
    #[schema(minimum = 0)]
    pub yes: i64,
    #[serde(default, deserialize_with = "count")]
    #[schema(minimum = 0)]
    pub no: i64,
    #[serde(default, deserialize_with = "variant_counts")]
    pub variants: BTreeMap<String, i64>,
}

/// A count: a whole number, written `3` or `3.0` (JSON does not tell them apart).
fn count<'de, D: serde::Deserializer<'de>>(deserializer: D) -> Result<i64, D::Error> {
    let n = serde_json::Number::deserialize(deserializer)?;
    whole(&n).ok_or_else(|| serde::de::Error::custom(format!("{n} is not a whole number")))
}

fn optional_count<'de, D: serde::Deserializer<'de>>(
    deserializer: D,
) -> Result<Option<i64>, D::Error> {
    match Option::<serde_json::Number>::deserialize(deserializer)? {
        None => Ok(None),
        Some(n) => whole(&n)
            .map(Some)
            .ok_or_else(|| serde::de::Error::custom(format!("{n} is not a whole number"))),
    }
}

fn whole(n: &serde_json::Number) -> Option<i64> {
    n.as_i64().or_else(|| {
        n.as_f64()
            .filter(|f| f.fract() == 0.0 && f.abs() < 9.0e15)
            .map(|f| f as i64)
    })
}

fn variant_counts<'de, D: serde::Deserializer<'de>>(
    deserializer: D,
) -> Result<BTreeMap<String, i64>, D::Error> {
    BTreeMap::<String, serde_json::Number>::deserialize(deserializer)?
        .into_iter()
        .map(|(name, n)| match whole(&n) {
            Some(v) => Ok((name, v)),
            None => Err(serde::de::Error::custom(format!(
                "variants.{name}: {n} is not a whole number"
            ))),
        })
        .collect()
}

/// A metrics bucket is a JSON object; serde would also read a struct from an array
/// (`[start, stop, toggles]`), which no SDK sends.
fn bucket_object<'de, D: serde::Deserializer<'de>>(deserializer: D) -> Result<Bucket, D::Error> {
    let value = serde_json::Value::deserialize(deserializer)?;
    if !value.is_object() {
        return Err(serde::de::Error::custom("bucket must be a JSON object"));
    }
    Bucket::deserialize(value).map_err(serde::de::Error::custom)
}

#[derive(Debug, Deserialize, ToSchema)]
pub struct Bucket {
    /// When the period counted began (RFC 3339); a time in another form counts as now.
    pub start: Option<String>,
    pub stop: Option<String>,
    #[serde(default)]
    pub toggles: BTreeMap<String, ToggleCounts>,
}

/// A metrics report, as Unleash SDKs send it; unknown fields are ignored.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct MetricsReport {
    pub app_name: Option<String>,
    pub instance_id: Option<String>,
    #[serde(deserialize_with = "bucket_object")]
    pub bucket: Bucket,
}

/// Most flags one report may count (beyond, the report is refused whole).
const MAX_TOGGLES_PER_REPORT: usize = 10_000;

async fn metrics(state: &AppState, caller: &SdkCaller, body: &Bytes) -> ApiResult<StatusCode> {
    let report: MetricsReport = parse_body(body)?;
    if report.bucket.toggles.len() > MAX_TOGGLES_PER_REPORT {
        return Err(ApiError::invalid(format!(
            "bucket.toggles: {} flags in one report; the limit is {MAX_TOGGLES_PER_REPORT}",
            report.bucket.toggles.len()
        )));
    }
    let start = report
        .bucket
        .start
        .as_deref()
        .and_then(|t| DateTime::parse_from_rfc3339(t).ok())
        .map_or_else(Utc::now, |t| t.with_timezone(&Utc));
    let hour = crate::flags::usage::hour_of(start);
    let mut usage = Vec::with_capacity(report.bucket.toggles.len());
    for (name, counts) in report.bucket.toggles {
        if counts.yes < 0 || counts.no < 0 {
            return Err(ApiError::invalid(format!(
                "bucket.toggles.{name}: yes and no must not be negative"
            )));
        }
        if let Some((variant, _)) = counts.variants.iter().find(|(_, n)| **n < 0) {
            return Err(ApiError::invalid(format!(
                "bucket.toggles.{name}.variants.{variant}: a count must not be negative"
            )));
        }
        usage.push(FlagUsage {
            service: caller.service.clone(),
            environment: caller.environment.clone(),
            name,
            hour,
            yes: counts.yes,
            no: counts.no,
            variants: counts.variants,
        });
    }
    state.store.add_flag_usage(&usage).await?;
    Ok(StatusCode::ACCEPTED)
}

/// Report how often flags were evaluated (Unleash's client API).
#[utoipa::path(
    post,
    path = "/api/client/metrics",
    tag = "flag-sdks",
    request_body = MetricsReport,
    responses((status = 202), (status = 400, body = ErrorBody), (status = 403, body = ErrorBody), (status = 413, body = ErrorBody)),
    security(("sdk" = [])),
    extensions(("x-gantry-scope" = json!("client"))),
)]
pub async fn client_metrics(
    State(state): State<AppState>,
    headers: HeaderMap,
    body: Bytes,
) -> ApiResult<StatusCode> {
    let caller = sdk(&state, &headers, CLIENT).await?;
    metrics(&state, &caller, &body).await
}

/// Server-Sent Events: `ready` with the flag set's revision, then `updated` with each new
/// one; SDKs fetch `/api/client/features` when told.
#[utoipa::path(
    get,
    path = "/api/client/stream",
    tag = "flag-sdks",
    responses((status = 200, description = "text/event-stream"), (status = 403, body = ErrorBody)),
    security(("sdk" = [])),
    extensions(("x-gantry-scope" = json!("client"))),
)]
pub async fn client_stream(
    State(state): State<AppState>,
    headers: HeaderMap,
) -> ApiResult<Sse<impl Stream<Item = Result<Event, Infallible>>>> {
    let caller = sdk(&state, &headers, CLIENT).await?;
    let set = flag_set(&state, &caller).await?;
    let sets = state.flag_sets.clone();
    let wake = sets.subscribe();
    let start = set.revision;
    struct Follow {
        state: AppState,
        caller: std::sync::Arc<SdkCaller>,
        sent: i64,
        wake: tokio::sync::watch::Receiver<u64>,
    }
    let updates = futures::stream::unfold(
        Follow {
            state: state.clone(),
            caller,
            sent: start,
            wake,
        },
        |mut f| async move {
            loop {
                if f.wake.changed().await.is_err() {
                    return None;
                }
                let Ok(set) = flag_set(&f.state, &f.caller).await else {
                    continue;
                };
                if set.revision > f.sent {
                    f.sent = set.revision;
                    let data = serde_json::json!({"revision": set.revision, "etag": set.etag(b"")})
                        .to_string();
                    let event = Event::default()
                        .event("updated")
                        .id(set.revision.to_string())
                        .data(data);
                    return Some((Ok(event), f));
                }
            }
        },
    )
    .take_until(state.shutdown.clone().cancelled_owned());
    let ready = Event::default()
        .event("ready")
        .id(start.to_string())
        .data(serde_json::json!({"revision": start, "etag": set.etag(b"")}).to_string());
    let events = futures::stream::once(std::future::ready(Ok(ready))).chain(updates);
    // A revoked SDK token's stream ends within the re-check interval, as every stream's
    // does (a database hiccup keeps it open).
    let events = crate::auth::until_revoked(events, move || {
        let (state, headers) = (state.clone(), headers.clone());
        async move {
            match sdk(&state, &headers, CLIENT).await {
                Ok(_) => true,
                Err(e) => e.status.is_server_error(),
            }
        }
    });
    Ok(Sse::new(events).keep_alive(KeepAlive::new().interval(Duration::from_secs(15))))
}

// ---- frontend API ----

fn cors(state: &AppState, headers: &HeaderMap, mut response: Response) -> Response {
    let origin = headers.get(header::ORIGIN).and_then(|v| v.to_str().ok());
    let allowed = origin.filter(|o| {
        state
            .config
            .flags
            .frontend_cors_origins
            .iter()
            .any(|a| a == "*" || a == o)
    });
    if let Some(origin) = allowed {
        let h = response.headers_mut();
        if let Ok(v) = HeaderValue::from_str(origin) {
            h.insert(header::ACCESS_CONTROL_ALLOW_ORIGIN, v);
        }
        h.insert(header::VARY, HeaderValue::from_static("Origin"));
        h.insert(
            header::ACCESS_CONTROL_EXPOSE_HEADERS,
            HeaderValue::from_static("ETag"),
        );
        h.insert(
            header::ACCESS_CONTROL_ALLOW_METHODS,
            HeaderValue::from_static("GET, POST, OPTIONS"),
        );
        let requested = headers
            .get(header::ACCESS_CONTROL_REQUEST_HEADERS)
            .and_then(|v| v.to_str().ok())
            .unwrap_or("");
        // Unleash's browser SDKs send `unleash-*` headers of their own; allow those by name.
        let mut allow = vec![
            "authorization".to_string(),
            "if-none-match".to_string(),
            "content-type".to_string(),
        ];
        allow.extend(
            requested
                .split(',')
                .map(|h| h.trim().to_ascii_lowercase())
                .filter(|h| h.starts_with("unleash-") && h.len() < 64),
        );
        if let Ok(v) = HeaderValue::from_str(&allow.join(", ")) {
            h.insert(header::ACCESS_CONTROL_ALLOW_HEADERS, v);
        }
        h.insert(
            header::ACCESS_CONTROL_MAX_AGE,
            HeaderValue::from_static("600"),
        );
    }
    response
}

fn preflight(state: &AppState, headers: &HeaderMap) -> Response {
    cors(state, headers, StatusCode::NO_CONTENT.into_response())
}

/// A toggle as the frontend API gives it (only flags on for the context are listed).
#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct FrontendToggle {
    pub name: String,
    pub enabled: bool,
    #[schema(value_type = Object)]
    pub variant: serde_json::Value,
    pub impression_data: bool,
}

fn frontend_answer(
    state: &AppState,
    headers: &HeaderMap,
    caller: &SdkCaller,
    set: &FlagSet,
    ctx: &Context,
) -> Response {
    let now = Utc::now();
    let mut rng = rand::thread_rng();
    let mut toggles = Vec::new();
    for (name, e) in set.engine.evaluate_all(ctx, now, &mut rng) {
        state.flag_usage.count(
            &caller.service,
            &caller.environment,
            name,
            e.enabled,
            e.variant.enabled.then_some(e.variant.name),
        );
        if e.enabled {
            toggles.push(FrontendToggle {
                name: name.to_string(),
                enabled: true,
                variant: serde_json::to_value(e.variant).unwrap_or_default(),
                impression_data: false,
            });
        }
    }
    let body = serde_json::to_vec(&serde_json::json!({"toggles": toggles})).unwrap_or_default();
    let context_bytes = serde_json::to_vec(ctx).unwrap_or_default();
    let etag = set.etag(&context_bytes);
    let response = if not_modified(headers, &etag) {
        not_modified_response(&etag)
    } else {
        respond(StatusCode::OK, &etag, "application/json", Bytes::from(body))
    };
    cors(state, headers, response)
}

/// Context fields Unleash keeps at the top level; everything else is a property.
const TOP_LEVEL: [&str; 6] = [
    "userId",
    "sessionId",
    "remoteAddress",
    "environment",
    "appName",
    "currentTime",
];

/// A context from query parameters (`userId=…&properties[plan]=pro` or `plan=pro`).
fn context_from_query(query: Option<&str>, peer: Option<SocketAddr>) -> Context {
    let mut ctx = Context::default();
    for (key, value) in form_urlencoded::parse(query.unwrap_or("").as_bytes()) {
        set_field(&mut ctx, &key, value.into_owned());
    }
    if ctx.remote_address.is_none() {
        ctx.remote_address = peer.map(|p| p.ip().to_string());
    }
    ctx
}

fn set_field(ctx: &mut Context, key: &str, value: String) {
    match key {
        "userId" => ctx.user_id = Some(value),
        "sessionId" => ctx.session_id = Some(value),
        "remoteAddress" => ctx.remote_address = Some(value),
        "environment" => ctx.environment = Some(value),
        "appName" => ctx.app_name = Some(value),
        "currentTime" => ctx.current_time = Some(value),
        _ => {
            let name = key
                .strip_prefix("properties[")
                .and_then(|k| k.strip_suffix(']'))
                .unwrap_or(key);
            ctx.properties.insert(name.to_string(), value);
        }
    }
}

/// Evaluate every flag for a context given as query parameters (Unleash's frontend API).
#[utoipa::path(
    get,
    path = "/api/frontend",
    tag = "flag-sdks",
    responses((status = 200, description = "{toggles: [...]}: the flags on for the context", body = Object), (status = 403, body = ErrorBody)),
    security(("sdk" = [])),
    extensions(("x-gantry-scope" = json!("frontend"))),
)]
pub async fn frontend_get(
    State(state): State<AppState>,
    headers: HeaderMap,
    Peer(peer): Peer,
    uri: axum::http::Uri,
) -> Response {
    let result = async {
        let caller = sdk(&state, &headers, FRONTEND).await?;
        let set = flag_set(&state, &caller).await?;
        let ctx = context_from_query(uri.query(), peer);
        Ok::<_, ApiError>(frontend_answer(&state, &headers, &caller, &set, &ctx))
    }
    .await;
    result.unwrap_or_else(|e| cors(&state, &headers, e.into_response()))
}

/// Evaluate every flag for a context in the body (`{"context": {...}}`).
#[utoipa::path(
    post,
    path = "/api/frontend",
    tag = "flag-sdks",
    request_body(content = Option<Object>, description = "`{\"context\": {...}}`; no body is an empty context"),
    responses((status = 200, body = Object), (status = 400, body = ErrorBody), (status = 403, body = ErrorBody)),
    security(("sdk" = [])),
    extensions(("x-gantry-scope" = json!("frontend"))),
)]
pub async fn frontend_post(
    State(state): State<AppState>,
    headers: HeaderMap,
    Peer(peer): Peer,
    body: Bytes,
) -> Response {
    let result = async {
        let caller = sdk(&state, &headers, FRONTEND).await?;
        let set = flag_set(&state, &caller).await?;
        let value: serde_json::Value = if body.iter().all(u8::is_ascii_whitespace) {
            serde_json::json!({})
        } else {
            parse_body(&body)?
        };
        let context = match &value {
            serde_json::Value::Object(map) => {
                map.get("context").cloned().unwrap_or_else(|| value.clone())
            }
            _ => {
                return Err(ApiError::invalid(
                    "the body must be a JSON object with a context",
                ))
            }
        };
        let ctx = context_from_json(&context, peer).map_err(ApiError::invalid)?;
        Ok::<_, ApiError>(frontend_answer(&state, &headers, &caller, &set, &ctx))
    }
    .await;
    result.unwrap_or_else(|e| cors(&state, &headers, e.into_response()))
}

#[utoipa::path(options, path = "/api/frontend", tag = "flag-sdks", responses((status = 204)), extensions(("x-gantry-scope" = json!("public"))))]
pub async fn frontend_options(State(state): State<AppState>, headers: HeaderMap) -> Response {
    preflight(&state, &headers)
}

/// Report browser SDK usage (Unleash's frontend API).
#[utoipa::path(
    post,
    path = "/api/frontend/client/metrics",
    tag = "flag-sdks",
    request_body = MetricsReport,
    responses((status = 202), (status = 400, body = ErrorBody), (status = 403, body = ErrorBody)),
    security(("sdk" = [])),
    extensions(("x-gantry-scope" = json!("frontend"))),
)]
pub async fn frontend_metrics(
    State(state): State<AppState>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let result = async {
        let caller = sdk(&state, &headers, FRONTEND).await?;
        metrics(&state, &caller, &body).await
    }
    .await;
    cors(&state, &headers, result.into_response())
}

#[utoipa::path(options, path = "/api/frontend/client/metrics", tag = "flag-sdks", responses((status = 204)), extensions(("x-gantry-scope" = json!("public"))))]
pub async fn frontend_metrics_options(
    State(state): State<AppState>,
    headers: HeaderMap,
) -> Response {
    preflight(&state, &headers)
}

/// Register a browser SDK instance (Unleash's frontend API).
#[utoipa::path(
    post,
    path = "/api/frontend/client/register",
    tag = "flag-sdks",
    request_body = Registration,
    responses((status = 202), (status = 400, body = ErrorBody), (status = 403, body = ErrorBody)),
    security(("sdk" = [])),
    extensions(("x-gantry-scope" = json!("frontend"))),
)]
pub async fn frontend_register(
    State(state): State<AppState>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let result = async {
        let caller = sdk(&state, &headers, FRONTEND).await?;
        register(&state, &caller, &body).await
    }
    .await;
    cors(&state, &headers, result.into_response())
}

#[utoipa::path(options, path = "/api/frontend/client/register", tag = "flag-sdks", responses((status = 204)), extensions(("x-gantry-scope" = json!("public"))))]
pub async fn frontend_register_options(
    State(state): State<AppState>,
    headers: HeaderMap,
) -> Response {
    preflight(&state, &headers)
}

// ---- OFREP ----

/// An OFREP error: `{key, errorCode, errorDetails}`.
#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct OfrepError {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub key: Option<String>,
    /// `FLAG_NOT_FOUND`, `INVALID_CONTEXT`, `PARSE_ERROR`, `GENERAL`.
    pub error_code: &'static str,
    pub error_details: String,
}

fn ofrep_error(
    status: StatusCode,
    key: Option<&str>,
    code: &'static str,
    details: impl Into<String>,
) -> Response {
    (
        status,
        axum::Json(OfrepError {
            key: key.map(str::to_string),
            error_code: code,
            error_details: details.into(),
        }),
    )
        .into_response()
}

/// An `ApiError` from auth or the store (401, 403, 503), in OFREP's error shape.
fn ofrep_from(e: ApiError, key: Option<&str>) -> Response {
    let mut response = ofrep_error(e.status, key, "GENERAL", e.message);
    if e.status == StatusCode::UNAUTHORIZED {
        response.headers_mut().insert(
            header::WWW_AUTHENTICATE,
            HeaderValue::from_static("Bearer realm=\"gantry\""),
        );
    }
    response
}

/// Reads an OFREP context into Unleash's: `targetingKey` is the user id; `userId`,
/// `sessionId`, `environment`, `appName`, `currentTime` and `remoteAddress` stay top-level
/// (the address defaults to the peer's); anything else is a property, numbers and booleans
/// as strings. A nested object or a list names its key in the error.
pub fn context_from_json(
    value: &serde_json::Value,
    peer: Option<SocketAddr>,
) -> Result<Context, String> {
    let mut ctx = Context::default();
    match value {
        serde_json::Value::Null => {}
        serde_json::Value::Object(map) => {
            for (key, v) in map {
                let text = match v {
                    serde_json::Value::Null => continue,
                    serde_json::Value::String(s) => s.clone(),
                    serde_json::Value::Number(n) => n.to_string(),
                    serde_json::Value::Bool(b) => b.to_string(),
                    serde_json::Value::Object(inner) if key == "properties" => {
                        for (name, p) in inner {
                            let text = match p {
                                serde_json::Value::Null => continue,
                                serde_json::Value::String(s) => s.clone(),
                                serde_json::Value::Number(n) => n.to_string(),
                                serde_json::Value::Bool(b) => b.to_string(),
                                _ => {
                                    return Err(format!(
                                        "context.properties.{name} is a nested value; context values must be strings, numbers or booleans"
                                    ))
                                }
                            };
                            ctx.properties.insert(name.clone(), text);
                        }
                        continue;
                    }
                    _ => {
                        return Err(format!(
                            "context.{key} is a nested value; context values must be strings, numbers or booleans"
                        ))
                    }
                };
                if key == "targetingKey" {
                    if ctx.user_id.is_none() {
                        ctx.user_id = Some(text);
                    }
                } else if TOP_LEVEL.contains(&key.as_str()) {
                    set_field(&mut ctx, key, text);
                } else {
                    ctx.properties.insert(key.clone(), text);
                }
            }
            // An explicit userId wins over targetingKey.
            if let Some(serde_json::Value::String(user)) = map.get("userId") {
                ctx.user_id = Some(user.clone());
            }
        }
        _ => return Err("context must be a JSON object".into()),
    }
    if ctx.remote_address.is_none() {
        ctx.remote_address = peer.map(|p| p.ip().to_string());
    }
    Ok(ctx)
}

/// The context of an OFREP request body (`{"context": {...}}`; none is an empty one).
fn ofrep_context(
    body: &Bytes,
    peer: Option<SocketAddr>,
) -> Result<Context, (&'static str, String)> {
    if body.iter().all(u8::is_ascii_whitespace) {
        return context_from_json(&serde_json::Value::Null, peer)
            .map_err(|e| ("INVALID_CONTEXT", e));
    }
    let value: serde_json::Value = serde_json::from_slice(body)
        .map_err(|e| ("PARSE_ERROR", format!("the body is not valid JSON: {e}")))?;
    let serde_json::Value::Object(map) = value else {
        return Err(("PARSE_ERROR", "the body must be a JSON object".into()));
    };
    context_from_json(map.get("context").unwrap_or(&serde_json::Value::Null), peer)
        .map_err(|e| ("INVALID_CONTEXT", e))
}

/// One evaluation in OFREP's shape.
fn ofrep_success(key: &str, e: &Evaluation<'_>) -> serde_json::Value {
    let reason = match e.reason {
        Reason::Static => "STATIC",
        Reason::TargetingMatch => "TARGETING_MATCH",
        Reason::Split => "SPLIT",
        Reason::Default => "DEFAULT",
        Reason::Disabled => "DISABLED",
    };
    if e.variant.enabled {
        let value = e
            .variant
            .payload
            .map_or_else(|| e.variant.name.into(), payload_value);
        serde_json::json!({"key": key, "reason": reason, "variant": e.variant.name, "value": value, "metadata": {}})
    } else {
        let variant = if e.enabled { "on" } else { "off" };
        serde_json::json!({"key": key, "reason": reason, "variant": variant, "value": e.enabled, "metadata": {}})
    }
}

/// A payload as the JSON value its type says.
fn payload_value(p: &Payload) -> serde_json::Value {
    match p.r#type.as_str() {
        "json" => serde_json::from_str(&p.value).unwrap_or_else(|_| p.value.clone().into()),
        "number" => p
            .value
            .trim()
            .parse::<f64>()
            .ok()
            .and_then(serde_json::Number::from_f64)
            .map_or_else(|| p.value.clone().into(), serde_json::Value::Number),
        _ => p.value.clone().into(),
    }
}

/// An OFREP error answer for a key that cannot name a flag.
fn bad_key(key: &str) -> Option<Response> {
    if key.is_empty() || key.len() > MAX_OFREP_KEY {
        return Some(ofrep_error(
            StatusCode::BAD_REQUEST,
            Some(&key.chars().take(MAX_OFREP_KEY).collect::<String>()),
            "PARSE_ERROR",
            format!("key: a flag key is 1 to {MAX_OFREP_KEY} characters"),
        ));
    }
    None
}

/// Evaluate one flag (OpenFeature Remote Evaluation Protocol).
#[utoipa::path(
    post,
    path = "/ofrep/v1/evaluate/flags/{key}",
    tag = "flag-sdks",
    params(("key" = String, Path)),
    request_body(content = Option<Object>, description = "`{\"context\": {...}}`; no body is an empty context"),
    responses(
        (status = 200, description = "{key, reason, variant, value, metadata}", body = Object),
        (status = 400, body = OfrepError),
        (status = 404, description = "FLAG_NOT_FOUND", body = OfrepError),
    ),
    security(("sdk" = [])),
    extensions(("x-gantry-scope" = json!("client|frontend"))),
)]
pub async fn ofrep_one(
    State(state): State<AppState>,
    headers: HeaderMap,
    Peer(peer): Peer,
    Path(key): Path<String>,
    body: Bytes,
) -> Response {
    if let Some(response) = bad_key(&key) {
        return cors(&state, &headers, response);
    }
    let response = async {
        let caller = sdk(&state, &headers, EITHER)
            .await
            .map_err(|e| ofrep_from(e, Some(&key)))?;
        let set = flag_set(&state, &caller)
            .await
            .map_err(|e| ofrep_from(e, Some(&key)))?;
        let ctx = ofrep_context(&body, peer).map_err(|(code, details)| {
            ofrep_error(StatusCode::BAD_REQUEST, Some(&key), code, details)
        })?;
        let mut rng = rand::thread_rng();
        let Some(e) = set.engine.evaluate(&key, &ctx, Utc::now(), &mut rng) else {
            return Err(ofrep_error(
                StatusCode::NOT_FOUND,
                Some(&key),
                "FLAG_NOT_FOUND",
                format!(
                    "service '{}' has no flag '{key}' in {}",
                    caller.service, caller.environment
                ),
            ));
        };
        state.flag_usage.count(
            &caller.service,
            &caller.environment,
            &key,
            e.enabled,
            e.variant.enabled.then_some(e.variant.name),
        );
        Ok::<_, Response>(axum::Json(ofrep_success(&key, &e)).into_response())
    }
    .await
    .unwrap_or_else(|r| r);
    cors(&state, &headers, response)
}

#[utoipa::path(options, path = "/ofrep/v1/evaluate/flags/{key}", tag = "flag-sdks", params(("key" = String, Path)), responses((status = 204)), extensions(("x-gantry-scope" = json!("public"))))]
pub async fn ofrep_one_options(State(state): State<AppState>, headers: HeaderMap) -> Response {
    preflight(&state, &headers)
}

/// Evaluate every flag (OFREP bulk); `If-None-Match` with the last `ETag` gives 304.
#[utoipa::path(
    post,
    path = "/ofrep/v1/evaluate/flags",
    tag = "flag-sdks",
    request_body(content = Option<Object>, description = "`{\"context\": {...}}`; no body is an empty context"),
    responses(
        (status = 200, description = "{flags: [...]}", body = Object, headers(("ETag" = String))),
        (status = 304, description = "Unchanged"),
        (status = 400, body = OfrepError),
    ),
    security(("sdk" = [])),
    extensions(("x-gantry-scope" = json!("client|frontend"))),
)]
pub async fn ofrep_bulk(
    State(state): State<AppState>,
    headers: HeaderMap,
    Peer(peer): Peer,
    body: Bytes,
) -> Response {
    let response = async {
        let caller = sdk(&state, &headers, EITHER)
            .await
            .map_err(|e| ofrep_from(e, None))?;
        let set = flag_set(&state, &caller)
            .await
            .map_err(|e| ofrep_from(e, None))?;
        let ctx = ofrep_context(&body, peer)
            .map_err(|(code, details)| ofrep_error(StatusCode::BAD_REQUEST, None, code, details))?;
        let etag = set.etag(&serde_json::to_vec(&ctx).unwrap_or_default());
        if not_modified(&headers, &etag) {
            return Ok(not_modified_response(&etag));
        }
        let mut rng = rand::thread_rng();
        let flags: Vec<serde_json::Value> = set
            .engine
            .evaluate_all(&ctx, Utc::now(), &mut rng)
            .iter()
            .map(|(name, e)| {
                state.flag_usage.count(
                    &caller.service,
                    &caller.environment,
                    name,
                    e.enabled,
                    e.variant.enabled.then_some(e.variant.name),
                );
                ofrep_success(name, e)
            })
            .collect();
        let body = serde_json::to_vec(&serde_json::json!({"flags": flags})).unwrap_or_default();
        Ok::<_, Response>(respond(
            StatusCode::OK,
            &etag,
            "application/json",
            Bytes::from(body),
        ))
    }
    .await
    .unwrap_or_else(|r| r);
    cors(&state, &headers, response)
}

#[utoipa::path(options, path = "/ofrep/v1/evaluate/flags", tag = "flag-sdks", responses((status = 204)), extensions(("x-gantry-scope" = json!("public"))))]
pub async fn ofrep_bulk_options(State(state): State<AppState>, headers: HeaderMap) -> Response {
    preflight(&state, &headers)
}
