//! The HTTP routes, one module per resource. Handlers are thin: they check the caller's
//! scope, parse, call the store (or a domain function) and shape the answer.

pub mod agent;
pub mod builds;
pub mod changes;
pub mod events;
pub mod flags;
pub mod graphite;
pub mod hosts;
pub mod metrics_admin;
pub mod migrate;
pub mod rollouts;
pub mod services;
pub mod system;
pub mod tokens;
pub mod unleash;

use crate::error::ApiError;

/// Parses a path or query id as a ULID.
pub(crate) fn parse_id(what: &str, raw: &str) -> Result<ulid::Ulid, ApiError> {
    raw.parse().map_err(|_| {
        ApiError::invalid(format!(
            "'{raw}' is not a {what} id (ids are 26-character ULIDs)"
        ))
    })
}
