//! Graphite's events API over the change log, so Grafana's Graphite annotations draw a line
//! for every change: `GET /events/get_data` reads changes as Graphite events, `POST /events/`
//! records one.

use axum::extract::{RawQuery, State};
use axum::http::{HeaderName, HeaderValue};
use axum::response::{IntoResponse, Response};
use chrono::{DateTime, Utc};
use gantry_core::time::parse_graphite_time;
use gantry_core::{Change, ChangeStatus, NewChange, ScopeName};
use gantry_store::TagMatch;
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use crate::auth::Caller;
use crate::error::{ApiError, ApiResult, ErrorBody};
use crate::extract::Json;
use crate::state::AppState;

/// Most events one response carries; the newest are kept.
pub const MAX_EVENTS: u32 = 10_000;
/// Set on a response that was cut at [`MAX_EVENTS`].
pub const TRUNCATED_HEADER: &str = "x-gantry-events-truncated";

pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(get_data))
        .routes(routes!(post_event))
}

/// A change as a Graphite event.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct GraphiteEvent {
    /// The change id.
    pub id: String,
    /// `started_at`, in epoch seconds.
    pub when: f64,
    /// The change's summary.
    pub what: String,
    /// Kind, service, environment, then labels.
    pub tags: Vec<String>,
    /// The change's description.
    pub data: String,
}

impl From<&Change> for GraphiteEvent {
    fn from(c: &Change) -> GraphiteEvent {
        GraphiteEvent {
            id: c.id.to_string(),
            when: c.started_at.timestamp_micros() as f64 / 1e6,
            what: c.summary.clone(),
            tags: c.tags(),
            data: c.description.clone().unwrap_or_default(),
        }
    }
}

/// `kind=deploy`, `service=shop`, `env=prod` select by field; any other tag by its text.
fn normalise_tag(tag: &str) -> String {
    for prefix in ["kind=", "service=", "env=", "environment="] {
        if let Some(value) = tag.strip_prefix(prefix) {
            return value.to_string();
        }
    }
    tag.to_string()
}

struct GetDataParams {
    from: DateTime<Utc>,
    until: DateTime<Utc>,
    tags: Vec<String>,
    matching: TagMatch,
}

fn parse_get_data(raw: Option<&str>, now: DateTime<Utc>) -> Result<GetDataParams, ApiError> {
    let mut from = DateTime::<Utc>::UNIX_EPOCH;
    let mut until = now;
    let mut tags = Vec::new();
    let mut matching = TagMatch::All;
    for (key, value) in form_urlencoded::parse(raw.unwrap_or("").as_bytes()) {
        match key.as_ref() {
            "from" => from = parse_graphite_time("from", &value, now)?,
            "until" => until = parse_graphite_time("until", &value, now)?,
            "tags" => tags.extend(
                value
                    .split([' ', ','])
                    .filter(|t| !t.is_empty())
                    .map(normalise_tag),
            ),
            "set" => {
                matching = match value.as_ref() {
                    "intersection" => TagMatch::All,
                    "union" => TagMatch::Any,
                    other => {
                        return Err(ApiError::invalid(format!(
                            "set '{other}' must be 'intersection' or 'union'"
                        )))
                    }
                }
            }
            // Graphite clients add cache busters and JSONP names; they change nothing here.
            _ => {}
        }
    }
    if from > until {
        return Err(ApiError::invalid(format!(
            "from ({}) is after until ({})",
            gantry_core::change::rfc3339(from),
            gantry_core::change::rfc3339(until)
        )));
    }
    tags.sort();
    tags.dedup();
    Ok(GetDataParams {
        from,
        until,
        tags,
        matching,
    })
}

/// Changes as Graphite events (Grafana annotations). `from`/`until` take Graphite's time
/// formats; `tags` (space-separated or repeated) must all match unless `set=union`. At most
/// 10,000 events, the newest; a cut response carries `X-Gantry-Events-Truncated: true`.
#[utoipa::path(
    get,
    path = "/events/get_data",
    tag = "graphite",
    params(
        ("from" = Option<String>, Query, description = "Graphite time, default the epoch"),
        ("until" = Option<String>, Query, description = "Graphite time, default now"),
        ("tags" = Option<String>, Query, description = "Tags, space-separated or repeated"),
        ("set" = Option<String>, Query, description = "intersection (default) or union"),
    ),
    responses(
        (status = 200, body = Vec<GraphiteEvent>),
        (status = 400, body = ErrorBody),
    ),
    security(("bearer" = []), ("basic" = [])),
    extensions(("x-gantry-scope" = json!("read"))),
)]
pub async fn get_data(
    State(state): State<AppState>,
    caller: Option<Caller>,
    RawQuery(raw): RawQuery,
) -> ApiResult<Response> {
    // Anonymous reads (a trusted network) see every event; a token sees what it may read.
    let caller = match caller {
        Some(caller) => {
            caller.require_somewhere(ScopeName::Read)?;
            Some(caller)
        }
        None if state.config.auth.anonymous_read => None,
        None => {
            return Err(ApiError::unauthorized(
                "this endpoint needs a token: send Authorization: Bearer <token> (create one with `gantry token create`)",
            ))
        }
    };
    let p = parse_get_data(raw.as_deref(), Utc::now())?;
    // `until` is inclusive in Graphite; the store's window is half-open.
    let until = p.until + chrono::Duration::microseconds(1);
    let mut changes = state
        .metrics
        .time_store(
            "changes_by_tags",
            state
                .store
                .changes_by_tags(&p.tags, p.matching, p.from, until, MAX_EVENTS + 1),
        )
        .await?;
    let truncated = changes.len() > MAX_EVENTS as usize;
    changes.truncate(MAX_EVENTS as usize);
    if let Some(caller) = caller.filter(|c| !c.0.holds_everywhere(ScopeName::Read)) {
        changes.retain(|c| {
            caller.0.allows(
                ScopeName::Read,
                c.service.as_deref(),
                c.environment.as_deref(),
            )
        });
    }
    let events: Vec<GraphiteEvent> = changes.iter().rev().map(GraphiteEvent::from).collect();
    let mut response = axum::Json(events).into_response();
    if truncated {
        response.headers_mut().insert(
            HeaderName::from_static(TRUNCATED_HEADER),
            HeaderValue::from_static("true"),
        );
    }
    Ok(response)
}

/// Tags of a posted event: a list, or one string of space- or comma-separated tags.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(untagged)]
pub enum EventTags {
    List(Vec<String>),
    Text(String),
}

/// The body of `POST /events/`, as Graphite takes it.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct NewGraphiteEvent {
    /// One line; becomes the change's summary.
    pub what: String,
    /// `kind=K`, `service=S`, `env=E` set those fields; other tags become labels.
    pub tags: Option<EventTags>,
    /// Epoch seconds; default now.
    pub when: Option<f64>,
    /// Becomes the change's description.
    pub data: Option<String>,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct PostedEvent {
    /// The id of the change recorded.
    pub id: String,
}

impl NewGraphiteEvent {
    fn into_new_change(self) -> Result<NewChange, ApiError> {
        let tags: Vec<String> = match self.tags {
            None => Vec::new(),
            Some(EventTags::List(list)) => list,
            Some(EventTags::Text(text)) => text
                .split([' ', ','])
                .filter(|t| !t.is_empty())
                .map(str::to_string)
                .collect(),
        };
        let mut change = NewChange {
            kind: Some("note".into()),
            summary: Some(self.what),
            description: self.data.filter(|d| !d.is_empty()),
            status: Some(ChangeStatus::Succeeded),
            ..NewChange::default()
        };
        let mut labels = Vec::new();
        for tag in tags {
            if let Some(kind) = tag.strip_prefix("kind=") {
                change.kind = Some(kind.to_string());
            } else if let Some(service) = tag.strip_prefix("service=") {
                change.service = Some(service.to_string());
            } else if let Some(env) = tag
                .strip_prefix("env=")
                .or_else(|| tag.strip_prefix("environment="))
            {
                change.environment = Some(env.to_string());
            } else {
                labels.push(serde_json::Value::String(tag));
            }
        }
        if !labels.is_empty() {
            change.metadata = Some(serde_json::json!({ "labels": labels }));
        }
        if let Some(when) = self.when {
            let micros = (when * 1e6).round();
            // Up to the end of year 9999, as RFC 3339 writes times.
            let started = (when.is_finite() && (0.0..=253_402_300_799.0).contains(&when))
                .then(|| DateTime::from_timestamp_micros(micros as i64))
                .flatten()
                .ok_or_else(|| {
                    ApiError::invalid(format!("when {when} is not a time in epoch seconds"))
                })?;
            change.started_at = Some(started);
        }
        Ok(change)
    }
}

/// Record a change the way Graphite records an event.
#[utoipa::path(
    post,
    path = "/events/",
    tag = "graphite",
    request_body = NewGraphiteEvent,
    responses(
        (status = 200, body = PostedEvent),
        (status = 400, body = ErrorBody),
    ),
    security(("bearer" = []), ("basic" = [])),
    extensions(("x-gantry-scope" = json!("write"))),
)]
pub async fn post_event(
    State(state): State<AppState>,
    caller: Caller,
    Json(event): Json<NewGraphiteEvent>,
) -> ApiResult<axum::Json<PostedEvent>> {
    let change = crate::api::changes::record(&state, &caller, event.into_new_change()?).await?;
    Ok(axum::Json(PostedEvent {
        id: change.id.to_string(),
    }))
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;

    #[test]
    fn get_data_params() {
        let now = Utc.with_ymd_and_hms(2026, 11, 22, 12, 0, 0).unwrap();
        let p = parse_get_data(
            Some("from=-6h&until=now&tags=deploy%20service%3Dshop&tags=prod&_=123"),
            now,
        )
        .unwrap();
        assert_eq!(p.from, now - chrono::Duration::hours(6));
        assert_eq!(p.until, now);
        assert_eq!(p.tags, vec!["deploy", "prod", "shop"]);
        assert_eq!(p.matching, TagMatch::All);
        assert_eq!(
            parse_get_data(Some("set=union"), now).unwrap().matching,
            TagMatch::Any
        );
        for (raw, expected) in [
            ("from=soon", "from 'soon'"),
            ("from=now&until=-1d", "is after until"),
            ("set=xor", "set 'xor'"),
        ] {
            let err = parse_get_data(Some(raw), now).err().unwrap();
            assert!(err.message.contains(expected), "{raw}: {}", err.message);
        }
    }

    #[test]
    fn posted_tags_set_fields_and_labels() {
        let e = NewGraphiteEvent {
            what: "Deploy".into(),
            tags: Some(EventTags::Text(
                "kind=deploy service=shop env=prod hotfix".into(),
            )),
            when: Some(1_700_000_000.5),
            data: Some("details".into()),
        };
        let c = e.into_new_change().unwrap();
        assert_eq!(c.kind.as_deref(), Some("deploy"));
        assert_eq!(c.service.as_deref(), Some("shop"));
        assert_eq!(c.environment.as_deref(), Some("prod"));
        assert_eq!(c.metadata, Some(serde_json::json!({"labels": ["hotfix"]})));
        assert_eq!(
            c.started_at.unwrap().timestamp_micros(),
            1_700_000_000_500_000
        );
        let plain = NewGraphiteEvent {
            what: "x".into(),
            tags: None,
            when: None,
            data: None,
        };
        assert_eq!(
            plain.into_new_change().unwrap().kind.as_deref(),
            Some("note")
        );
        let bad = NewGraphiteEvent {
            what: "x".into(),
            tags: None,
            when: Some(-5.0),
            data: None,
        };
        assert!(bad.into_new_change().is_err());
    }
}
