//! The HTTP routes, one module per resource. Handlers are thin: they check the caller's
//! scope, parse, call the store (or a domain function) and shape the answer.

pub mod agent;
pub mod alerts;
pub mod builds;
pub mod changes;
pub mod events;
pub mod flags;
pub mod graphite;
pub mod hosts;
pub mod incidents;
pub mod metrics_admin;
pub mod migrate;
pub mod monitors;
pub mod report;
pub mod rollouts;
pub mod services;
pub mod system;
pub mod tokens;
pub mod unleash;
pub mod verdicts;

use crate::error::ApiError;

/// Raw bytes (a build's artifact), which the document describes as a binary string.
#[derive(utoipa::ToSchema)]
#[schema(value_type = String, format = Binary)]
pub struct Binary(pub Vec<u8>);

/// Parses a path or query id as a ULID.
pub(crate) fn parse_id(what: &str, raw: &str) -> Result<ulid::Ulid, ApiError> {
    raw.parse().map_err(|_| {
        ApiError::invalid(format!(
            "'{raw}' is not a {what} id (ids are 26-character ULIDs)"
        ))
    })
}

/// The `Last-Event-ID` header of a stream request, as a sequence number; `what` names what
/// the number counts in the error.
pub(crate) fn last_event_id(
    headers: &axum::http::HeaderMap,
    what: &str,
) -> Result<Option<i64>, ApiError> {
    match headers.get("last-event-id") {
        None => Ok(None),
        Some(v) => v
            .to_str()
            .ok()
            .and_then(|s| s.trim().parse::<i64>().ok())
            .map(Some)
            .ok_or_else(|| ApiError::invalid(format!("Last-Event-ID must be {what}"))),
    }
}
