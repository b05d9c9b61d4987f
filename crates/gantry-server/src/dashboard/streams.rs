//! The live pages' Server-Sent Events, authenticated by the session cookie (a browser's
//! EventSource cannot send a bearer token). They share their code with the API's streams
//! (`api::changes::follow_events`, `ship::watch::follow`) and send HTML fragments, rows with
//! ids that the page puts in place. Each re-checks its session every 15 s and, when it was
//! signed out or its token revoked, sends `event: signed-out` and ends. Resume with
//! `Last-Event-ID` or `?after=`.

use std::convert::Infallible;
use std::time::Duration;

use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::sse::{Event, KeepAlive, Sse};
use axum::response::{IntoResponse, Response};
use futures::StreamExt as _;
use gantry_core::ScopeName;
use serde::Deserialize;

use super::changes::Filters;
use super::session::{self, NoViewer, Viewer};
use super::view::UiError;
use crate::state::AppState;

/// The stream's viewer, or the status to answer: 401 when signed out (an EventSource gets
/// no page to be redirected to).
async fn stream_viewer(state: &AppState, headers: &HeaderMap) -> Result<Viewer, UiError> {
    match session::viewer(state, headers, false).await {
        Ok(v) => Ok(v),
        Err(NoViewer::Failed(e)) => Err(e),
        Err(NoViewer::SignedOut { .. }) => Err(UiError::new(
            StatusCode::UNAUTHORIZED,
            "signed out: sign in again",
        )),
    }
}

/// `events` until the request's session ends (checked every [`crate::auth::RECHECK`]), then
/// `event: signed-out`, so the page stops following and says why instead of reconnecting.
fn until_signed_out<S>(
    events: S,
    state: AppState,
    headers: HeaderMap,
) -> impl futures::Stream<Item = Result<Event, Infallible>> + Send
where
    S: futures::Stream<Item = Result<Event, Infallible>> + Send + 'static,
{
    use std::sync::atomic::{AtomicBool, Ordering};
    let ended = std::sync::Arc::new(AtomicBool::new(false));
    let flag = ended.clone();
    let check = move || {
        let (state, headers, flag) = (state.clone(), headers.clone(), flag.clone());
        async move {
            let signed_out = matches!(
                session::viewer(&state, &headers, false).await,
                Err(NoViewer::SignedOut { .. })
            );
            flag.store(signed_out, Ordering::Relaxed);
            !signed_out
        }
    };
    let last = futures::stream::once(async move {
        ended
            .load(Ordering::Relaxed)
            .then(|| Ok(Event::default().event("signed-out").data("signed out")))
    })
    .filter_map(std::future::ready);
    crate::auth::until_revoked(events, check).chain(last)
}

fn resume_point(headers: &HeaderMap, after: Option<i64>) -> Result<Option<i64>, UiError> {
    crate::api::last_event_id(headers, "an event id")
        .map(|id| id.or(after))
        .map_err(UiError::from)
}

#[derive(Debug, Default, Deserialize)]
pub struct ChangeStreamQuery {
    after: Option<i64>,
    #[serde(flatten)]
    filters: Filters,
}

/// `GET /ui/stream/changes`: `event: created|updated`, `data:` the change's table row.
pub async fn changes(
    State(state): State<AppState>,
    headers: HeaderMap,
    Query(q): Query<ChangeStreamQuery>,
) -> Response {
    let viewer = match stream_viewer(&state, &headers).await {
        Ok(v) => v,
        Err(e) => return e.into_response(),
    };
    let start = match resume_point(&headers, q.after) {
        Ok(Some(seq)) => seq,
        Ok(None) => match state.store.last_event_seq().await {
            Ok(seq) => seq,
            Err(e) => return super::view::UiError::from(e).into_response(),
        },
        Err(e) => return e.into_response(),
    };
    let filters = q.filters;
    let events = crate::api::changes::follow_events(state.clone(), start)
        .filter(move |e| {
            let c = &e.change;
            std::future::ready(
                viewer.allows(
                    ScopeName::Read,
                    c.service.as_deref(),
                    c.environment.as_deref(),
                ) && filters.admits(c),
            )
        })
        .map(|e| {
            Ok::<_, Infallible>(
                Event::default()
                    .event(e.kind.as_str())
                    .id(e.seq.to_string())
                    .data(super::changes::row(&e.change).into_string()),
            )
        });
    // Browsers drop an event without data; this one says where the stream starts.
    let ready = Event::default()
        .event("ready")
        .id(start.to_string())
        .data("ready");
    let events = futures::stream::once(std::future::ready(Ok(ready))).chain(events);
    let events = until_signed_out(events, state, headers);
    Sse::new(events)
        .keep_alive(KeepAlive::new().interval(Duration::from_secs(15)))
        .into_response()
}

#[derive(Debug, Default, Deserialize)]
pub struct RolloutStreamQuery {
    after: Option<i64>,
    /// The page of hosts the tab shows: only its rows are sent.
    page: Option<usize>,
}

/// `GET /ui/stream/rollouts/{id}`: `event: update`, `data:` the rollout's summary and the
/// rows of the hosts that changed (only those on the tab's page of hosts); `event: end` once
/// the rollout has finished (or was deleted).
pub async fn rollout(
    State(state): State<AppState>,
    headers: HeaderMap,
    Path(id): Path<String>,
    Query(q): Query<RolloutStreamQuery>,
) -> Response {
    let viewer = match stream_viewer(&state, &headers).await {
        Ok(v) => v,
        Err(e) => return e.into_response(),
    };
    let rollout = match super::rollout::load(&state, &viewer, &id).await {
        Ok(r) => r,
        Err(e) => return e.into_response(),
    };
    let after = match resume_point(&headers, q.after) {
        Ok(a) => a,
        Err(e) => return e.into_response(),
    };
    let page = q.page.unwrap_or(0);
    let all_tasks = match state.store.rollout_tasks(rollout.id).await {
        Ok(t) => t,
        Err(e) => return super::view::UiError::from(e).into_response(),
    };
    let shown: std::collections::HashSet<ulid::Ulid> = super::rollout::page_of(&all_tasks, page)
        .iter()
        .map(|t| t.id)
        .collect();
    let v = viewer.clone();
    let mut all: std::collections::HashMap<ulid::Ulid, gantry_core::ship::Task> =
        all_tasks.into_iter().map(|t| (t.id, t)).collect();
    let finished = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let saw_end = finished.clone();
    let updates = crate::ship::watch::follow(state.clone(), rollout.id, after).map(move |u| {
        if u.rollout.state.is_final() {
            finished.store(true, std::sync::atomic::Ordering::Relaxed);
        }
        for t in &u.tasks {
            all.insert(t.id, t.clone());
        }
        let every: Vec<_> = all.values().cloned().collect();
        let rows: Vec<_> = u
            .tasks
            .iter()
            .filter(|t| shown.contains(&t.id))
            .cloned()
            .collect();
        let html = super::rollout::update_fragment(&v, &u.rollout, &every, &rows);
        Ok::<_, Infallible>(
            Event::default()
                .event("update")
                .id(u.seq.to_string())
                .data(html.into_string()),
        )
    });
    // After the update showing the rollout finished: `end` (with data: browsers drop an
    // event without), so the page stops following
    // instead of reconnecting to a stream that has nothing more to say. (A stream cut by
    // shutdown sends none: the page reconnects to the next server.)
    let end = futures::stream::once(async move {
        saw_end
            .load(std::sync::atomic::Ordering::Relaxed)
            .then(|| Ok(Event::default().event("end").data("finished")))
    })
    .filter_map(std::future::ready);
    let updates = updates.chain(end);
    let updates = until_signed_out(updates, state, headers);
    Sse::new(updates)
        .keep_alive(KeepAlive::new().interval(Duration::from_secs(15)))
        .into_response()
}
