//! `/api/v1/changes`: record, list, show, update and stream changes.

use std::convert::Infallible;
use std::time::Duration;

use axum::extract::{Path, State};
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::sse::{Event, KeepAlive, Sse};
use axum::response::IntoResponse;
use chrono::Utc;
use futures::{Stream, StreamExt};
use gantry_core::change::{DEFAULT_LIMIT, MAX_LIMIT};
use gantry_core::time::parse_api_time;
use gantry_core::{
    Change, ChangeEvent, ChangePage, ChangePatch, ChangeQuery, Cursor, NewChange, ScopeName,
    ValidNewChange,
};
use serde::Deserialize;
use ulid::Ulid;
use utoipa::IntoParams;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use super::parse_id;
use crate::auth::Caller;
use crate::error::{ApiError, ApiResult, ErrorBody};
use crate::extract::{Json, Query};
use crate::state::AppState;

pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(record_change, list_changes))
        .routes(routes!(get_change, update_change))
}

/// The change stream: long-lived, so it is routed apart from the request timeout.
pub fn stream_router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new().routes(routes!(stream_changes))
}

/// Record a change.
#[utoipa::path(
    post,
    path = "/api/v1/changes",
    tag = "changes",
    request_body = NewChange,
    responses(
        (status = 201, description = "Recorded", body = Change),
        (status = 400, description = "Invalid change", body = ErrorBody),
        (status = 401, body = ErrorBody),
        (status = 403, description = "Token lacks write for this service/environment", body = ErrorBody),
    ),
    security(("bearer" = [])),
    extensions(("x-gantry-scope" = json!("write"))),
)]
pub async fn record_change(
    State(state): State<AppState>,
    caller: Caller,
    Json(new): Json<NewChange>,
) -> ApiResult<impl IntoResponse> {
    let change = record(&state, &caller, new).await?;
    let location = format!("/api/v1/changes/{}", change.id);
    Ok((
        StatusCode::CREATED,
        [(header::LOCATION, location)],
        axum::Json(change),
    ))
}

/// Records a new change for `caller`: the scope for its service and environment, the
/// rules, a new id, the store. Both ways in (`/api/v1/changes`, Graphite's `/events/`) use it.
pub(crate) async fn record(state: &AppState, caller: &Caller, new: NewChange) -> ApiResult<Change> {
    caller.require(
        ScopeName::Write,
        new.service.as_deref(),
        new.environment.as_deref(),
    )?;
    let valid = new.validate(Utc::now())?;
    let change = from_valid(valid, caller.name());
    state
        .metrics
        .time_store("insert_change", state.store.insert_change(&change))
        .await?;
    Ok(change)
}

/// A change as recorded now by `actor`, with a new id.
pub(crate) fn from_valid(valid: ValidNewChange, actor: &str) -> Change {
    valid.into_change(Ulid::new(), actor)
}

/// Filters of `GET /api/v1/changes`.
#[derive(Debug, Default, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct ListParams {
    pub service: Option<String>,
    /// Also accepted as `env`.
    #[serde(alias = "env")]
    pub environment: Option<String>,
    pub kind: Option<String>,
    pub status: Option<String>,
    /// RFC 3339, epoch seconds, or a duration ago (`7d`). Inclusive.
    pub since: Option<String>,
    /// Same formats as `since`. Exclusive.
    pub until: Option<String>,
    /// 1 to 1000, default 100.
    pub limit: Option<String>,
    /// `next_cursor` of the previous page.
    pub cursor: Option<String>,
}

impl ListParams {
    /// The store query these filters make, or what is wrong with them. The API and the
    /// dashboard's changes page both filter through here.
    pub fn into_query(self) -> Result<ChangeQuery, ApiError> {
        let now = Utc::now();
        let since = self
            .since
            .as_deref()
            .map(|s| parse_api_time("since", s, now))
            .transpose()?;
        let until = self
            .until
            .as_deref()
            .map(|s| parse_api_time("until", s, now))
            .transpose()?;
        if let (Some(since), Some(until)) = (since, until) {
            if since > until {
                return Err(ApiError::invalid(format!(
                    "since ({}) is after until ({})",
                    gantry_core::change::rfc3339(since),
                    gantry_core::change::rfc3339(until)
                )));
            }
        }
        let limit = match self.limit.as_deref() {
            None => DEFAULT_LIMIT,
            Some(raw) => match raw.parse::<u32>() {
                Ok(n) if (1..=MAX_LIMIT).contains(&n) => n,
                _ => {
                    return Err(ApiError::invalid(format!(
                        "limit '{raw}' must be a whole number from 1 to {MAX_LIMIT}"
                    )))
                }
            },
        };
        if let Some(s) = &self.service {
            gantry_core::names::validate_name("service", s)?;
        }
        if let Some(e) = &self.environment {
            gantry_core::names::validate_name("environment", e)?;
        }
        Ok(ChangeQuery {
            service: self.service,
            environment: self.environment,
            kind: self.kind.as_deref().map(str::parse).transpose()?,
            status: self.status.as_deref().map(str::parse).transpose()?,
            since,
            until,
            limit,
            cursor: self.cursor.as_deref().map(Cursor::decode).transpose()?,
        })
    }
}

/// List changes, newest first.
#[utoipa::path(
    get,
    path = "/api/v1/changes",
    tag = "changes",
    params(ListParams),
    responses(
        (status = 200, body = ChangePage),
        (status = 400, body = ErrorBody),
        (status = 401, body = ErrorBody),
        (status = 403, body = ErrorBody),
    ),
    security(("bearer" = [])),
    extensions(("x-gantry-scope" = json!("read"))),
)]
pub async fn list_changes(
    State(state): State<AppState>,
    caller: Caller,
    Query(params): Query<ListParams>,
) -> ApiResult<axum::Json<ChangePage>> {
    let query = params.into_query()?;
    if !caller.0.holds_everywhere(ScopeName::Read) {
        // A token narrowed to a service or environment lists only with matching filters.
        caller.require(
            ScopeName::Read,
            query.service.as_deref(),
            query.environment.as_deref(),
        )?;
    }
    let items = state
        .metrics
        .time_store("list_changes", state.store.list_changes(&query))
        .await?;
    let next_cursor = match items.last() {
        Some(last) if items.len() == query.limit as usize => Some(Cursor::after(last).encode()),
        _ => None,
    };
    Ok(axum::Json(ChangePage { items, next_cursor }))
}

/// Show one change with its history.
#[utoipa::path(
    get,
    path = "/api/v1/changes/{id}",
    tag = "changes",
    params(("id" = String, Path, description = "Change id (ULID)")),
    responses(
        (status = 200, body = Change),
        (status = 400, body = ErrorBody),
        (status = 404, body = ErrorBody),
    ),
    security(("bearer" = [])),
    extensions(("x-gantry-scope" = json!("read"))),
)]
pub async fn get_change(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
) -> ApiResult<axum::Json<Change>> {
    caller.require_somewhere(ScopeName::Read)?;
    let id = parse_id("change", &id)?;
    Ok(axum::Json(
        change_for(&state, &caller, ScopeName::Read, id).await?,
    ))
}

/// Update a change's status, finish time or description. Every update is kept in its
/// history; a finished change never returns to `in_progress`.
#[utoipa::path(
    patch,
    path = "/api/v1/changes/{id}",
    tag = "changes",
    params(("id" = String, Path, description = "Change id (ULID)")),
    request_body = ChangePatch,
    responses(
        (status = 200, body = Change),
        (status = 400, body = ErrorBody),
        (status = 404, body = ErrorBody),
        (status = 409, description = "The patch collides with the change as stored: a finished change moved back to in_progress, a finish before its start", body = ErrorBody),
    ),
    security(("bearer" = [])),
    extensions(("x-gantry-scope" = json!("write"))),
)]
pub async fn update_change(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
    Json(patch): Json<ChangePatch>,
) -> ApiResult<axum::Json<Change>> {
    caller.require_somewhere(ScopeName::Write)?;
    let id = parse_id("change", &id)?;
    if !caller.0.holds_everywhere(ScopeName::Write) {
        change_for(&state, &caller, ScopeName::Write, id).await?;
    }
    let change = state
        .metrics
        .time_store(
            "update_change",
            state
                .store
                .update_change(id, &patch, caller.name(), Utc::now()),
        )
        .await?;
    Ok(axum::Json(change))
}

/// The change `id`, provided the caller holds `scope` for its service and environment.
async fn change_for(
    state: &AppState,
    caller: &Caller,
    scope: ScopeName,
    id: Ulid,
) -> ApiResult<Change> {
    let change = state
        .metrics
        .time_store("get_change", state.store.get_change(id))
        .await?
        .ok_or_else(|| ApiError::not_found(format!("no change with id {id}")))?;
    caller.require(
        scope,
        change.service.as_deref(),
        change.environment.as_deref(),
    )?;
    Ok(change)
}

/// Filters of the change stream.
#[derive(Debug, Default, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct StreamParams {
    /// Start after this event sequence number (as `Last-Event-ID`); default: only new events.
    after: Option<i64>,
    service: Option<String>,
    #[serde(alias = "env")]
    environment: Option<String>,
    kind: Option<String>,
}

/// How often a stream re-reads the table even without a wake-up, bounding the delay after
/// a lost notification.
const STREAM_POLL: Duration = Duration::from_secs(5);
const STREAM_BATCH: u32 = 500;

/// Follow created and updated changes as Server-Sent Events. Each event's `id` is its
/// sequence number: reconnect with `Last-Event-ID` to resume without gaps.
#[utoipa::path(
    get,
    path = "/api/v1/changes/stream",
    tag = "changes",
    params(StreamParams),
    responses(
        (status = 200, description = "First `event: ready` with `id: <start seq>`; then `event: created|updated`, `id: <seq>`, `data: <change JSON>`", content_type = "text/event-stream", body = Change),
        (status = 400, body = ErrorBody),
    ),
    security(("bearer" = [])),
    extensions(("x-gantry-scope" = json!("read"))),
)]
pub async fn stream_changes(
    State(state): State<AppState>,
    caller: Caller,
    headers: HeaderMap,
    Query(params): Query<StreamParams>,
) -> ApiResult<Sse<impl Stream<Item = Result<Event, Infallible>>>> {
    caller.require_somewhere(ScopeName::Read)?;
    let kind: Option<gantry_core::ChangeKind> =
        params.kind.as_deref().map(str::parse).transpose()?;
    if let Some(s) = &params.service {
        gantry_core::names::validate_name("service", s)?;
    }
    if let Some(e) = &params.environment {
        gantry_core::names::validate_name("environment", e)?;
    }
    let last_event_id = super::last_event_id(&headers, "an event sequence number")?;
    let start = match last_event_id.or(params.after) {
        Some(seq) => seq,
        None => state.store.last_event_seq().await?,
    };
    let digest = caller.1.clone();
    let filter = move |event: &ChangeEvent| {
        let c = &event.change;
        caller.0.allows(
            ScopeName::Read,
            c.service.as_deref(),
            c.environment.as_deref(),
        ) && params
            .service
            .as_ref()
            .is_none_or(|s| c.service.as_ref() == Some(s))
            && params
                .environment
                .as_ref()
                .is_none_or(|e| c.environment.as_ref() == Some(e))
            && kind.is_none_or(|k| c.kind == k)
    };
    let check_state = state.clone();
    let events = follow_events(state.clone(), start)
        .filter(move |e| std::future::ready(filter(e)))
        .map(|e| {
            let data = serde_json::to_string(&e.change).unwrap_or_default();
            Ok(Event::default()
                .event(e.kind.as_str())
                .id(e.seq.to_string())
                .data(data))
        });
    let events = crate::auth::until_revoked(events, move || {
        let (state, digest) = (check_state.clone(), digest.clone());
        async move { crate::auth::token_still_valid(&state, &digest).await }
    });
    // First, where this stream starts: a client that loses the connection before any
    // change arrives resumes from here instead of from "now" again.
    let ready = Event::default()
        .event("ready")
        .id(start.to_string())
        .data("");
    let events = futures::stream::once(std::future::ready(Ok(ready))).chain(events);
    Ok(Sse::new(events).keep_alive(KeepAlive::new().interval(Duration::from_secs(15))))
}

/// Every change event after `start`, as they are written, until the server shuts down:
/// woken by the store's notifications, and re-reading every few seconds in case one was
/// lost. The API's stream and the dashboard's share it.
pub fn follow_events(
    state: AppState,
    start: i64,
) -> impl Stream<Item = ChangeEvent> + Send + 'static {
    struct Follow {
        state: AppState,
        cursor: i64,
        wake: tokio::sync::watch::Receiver<i64>,
    }
    let shutdown = state.shutdown.clone();
    let wake = state.store.subscribe();
    let batches = futures::stream::unfold(
        Follow {
            state,
            cursor: start,
            wake,
        },
        |mut f| async move {
            loop {
                match f.state.store.events_after(f.cursor, STREAM_BATCH).await {
                    Ok(events) if !events.is_empty() => {
                        f.cursor = events.last().map_or(f.cursor, |e| e.seq);
                        return Some((events, f));
                    }
                    Ok(_) => {}
                    Err(e) => {
                        tracing::warn!(error = %e, "change stream cannot read events; retrying")
                    }
                }
                tokio::select! {
                    _ = f.wake.changed() => {}
                    _ = tokio::time::sleep(STREAM_POLL) => {}
                }
            }
        },
    );
    batches
        .flat_map(futures::stream::iter)
        .take_until(shutdown.cancelled_owned())
}
