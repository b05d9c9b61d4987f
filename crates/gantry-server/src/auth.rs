//! Who is calling: the token in `Authorization: Bearer <token>` (or, for Grafana, HTTP basic
//! auth with the token as password), looked up by its SHA-256 digest on every request. No
//! cache, so a revocation on any server takes effect everywhere at once.

use axum::extract::FromRequestParts;
use axum::http::request::Parts;
use base64::Engine as _;
use chrono::Utc;
use gantry_core::{Grant, Scope, ScopeName};

use crate::error::ApiError;
use crate::state::AppState;

/// The authenticated caller of a request.
#[derive(Debug, Clone)]
pub struct Caller(pub Grant);

impl Caller {
    pub fn name(&self) -> &str {
        &self.0.token_name
    }

    /// Refuses with 403, naming the scope needed, unless the token holds `needed` for this
    /// service and environment.
    pub fn require(
        &self,
        needed: ScopeName,
        service: Option<&str>,
        environment: Option<&str>,
    ) -> Result<(), ApiError> {
        if self.0.allows(needed, service, environment) {
            return Ok(());
        }
        let wanted = Scope {
            name: needed,
            service: service.map(str::to_string),
            environment: environment.map(str::to_string),
        };
        Err(ApiError::forbidden(format!(
            "token '{}' lacks the scope {wanted} needed here (it has {})",
            self.0.token_name,
            Scope::format_list(&self.0.scopes)
        )))
    }

    /// Like [`Caller::require`] without a service or environment: the scope held anywhere.
    pub fn require_somewhere(&self, needed: ScopeName) -> Result<(), ApiError> {
        if self.0.holds_somewhere(needed) {
            return Ok(());
        }
        Err(ApiError::forbidden(format!(
            "token '{}' lacks the scope {needed} needed here (it has {})",
            self.0.token_name,
            Scope::format_list(&self.0.scopes)
        )))
    }
}

/// The secret a request carries, if any.
pub fn bearer_secret(parts: &Parts) -> Result<Option<String>, ApiError> {
    let Some(value) = parts.headers.get(axum::http::header::AUTHORIZATION) else {
        return Ok(None);
    };
    let value = value
        .to_str()
        .map_err(|_| ApiError::unauthorized("the Authorization header is not readable text"))?;
    if let Some(token) = value
        .strip_prefix("Bearer ")
        .or_else(|| value.strip_prefix("bearer "))
    {
        return Ok(Some(token.trim().to_string()));
    }
    if let Some(encoded) = value
        .strip_prefix("Basic ")
        .or_else(|| value.strip_prefix("basic "))
    {
        let decoded = base64::engine::general_purpose::STANDARD
            .decode(encoded.trim())
            .ok()
            .and_then(|bytes| String::from_utf8(bytes).ok())
            .ok_or_else(|| {
                ApiError::unauthorized("the basic auth credentials are not valid base64")
            })?;
        let password = decoded.split_once(':').map_or("", |(_, p)| p);
        if password.is_empty() {
            return Err(ApiError::unauthorized(
                "basic auth needs the token as password (any user name)",
            ));
        }
        return Ok(Some(password.to_string()));
    }
    Err(ApiError::unauthorized(
        "the Authorization header must be `Bearer <token>` (or basic auth with the token as password)",
    ))
}

impl FromRequestParts<AppState> for Caller {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, ApiError> {
        let secret = bearer_secret(parts)?.ok_or_else(|| {
            ApiError::unauthorized(
                "this endpoint needs a token: send Authorization: Bearer <token> (create one with `gantry token create`)",
            )
        })?;
        let digest = gantry_core::token::digest(&secret);
        let record = state
            .metrics
            .time_store("token_by_digest", state.store.token_by_digest(&digest))
            .await?
            .ok_or_else(|| ApiError::unauthorized("the token is not valid"))?;
        if record.revoked {
            return Err(ApiError::unauthorized(format!(
                "token '{}' has been revoked",
                record.info.name
            )));
        }
        if let Some(expires_at) = record.info.expires_at {
            if expires_at <= Utc::now() {
                return Err(ApiError::unauthorized(format!(
                    "token '{}' expired at {}",
                    record.info.name,
                    gantry_core::change::rfc3339(expires_at)
                )));
            }
        }
        Ok(Caller(Grant {
            token_name: record.info.name,
            scopes: record.info.scopes,
        }))
    }
}

/// `Option<Caller>`: `None` when the request carries no credentials at all; a request with
/// bad credentials is still refused.
impl axum::extract::OptionalFromRequestParts<AppState> for Caller {
    type Rejection = ApiError;

    async fn from_request_parts(
        parts: &mut Parts,
        state: &AppState,
    ) -> Result<Option<Self>, ApiError> {
        if parts
            .headers
            .get(axum::http::header::AUTHORIZATION)
            .is_none()
        {
            return Ok(None);
        }
        <Caller as FromRequestParts<AppState>>::from_request_parts(parts, state)
            .await
            .map(Some)
    }
}
