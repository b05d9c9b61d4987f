//! Who is calling: the token in `Authorization: Bearer <token>` (or, for Grafana, HTTP basic
//! auth with the token as password), looked up by its SHA-256 digest on every request. No
//! cache, so a revocation on any server takes effect everywhere at once.

use axum::extract::FromRequestParts;
use axum::http::request::Parts;
use chrono::Utc;
use gantry_core::{Grant, Scope, ScopeName, TokenInfo};

use crate::error::ApiError;
use crate::state::AppState;

/// The authenticated caller of a request: what its token may do, and the token's digest
/// (so a long-lived stream can check, now and then, that the token still holds).
#[derive(Debug, Clone)]
pub struct Caller(pub Grant, pub TokenDigest);

/// The SHA-256 digest of a token's secret, as the store keys it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TokenDigest(pub String);

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
        require(&self.0, needed, service, environment)
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

/// Refuses with 403, naming the scope needed, unless `grant` holds `needed` for this
/// service and environment. Every transport (API, dashboard) refuses through here.
pub fn require(
    grant: &Grant,
    needed: ScopeName,
    service: Option<&str>,
    environment: Option<&str>,
) -> Result<(), ApiError> {
    if grant.allows(needed, service, environment) {
        return Ok(());
    }
    let wanted = Scope {
        name: needed,
        service: service.map(str::to_string),
        environment: environment.map(str::to_string),
    };
    Err(ApiError::forbidden(format!(
        "token '{}' lacks the scope {wanted} needed here (it has {})",
        grant.token_name,
        Scope::format_list(&grant.scopes)
    )))
}

/// The secret a request carries, if any.
pub fn bearer_secret(parts: &Parts) -> Result<Option<String>, ApiError> {
    let Some(value) = parts.headers.get(axum::http::header::AUTHORIZATION) else {
        return Ok(None);
    };
    let value = value
        .to_str()
        .map_err(|_| ApiError::unauthorized("the Authorization header is not readable text"))?;
    gantry_core::http::bearer_secret(value)
        .map(Some)
        .map_err(|e| ApiError::unauthorized(e.0))
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
        let info = valid_token(state, &digest).await?;
        Ok(Caller(
            Grant {
                token_name: info.name,
                scopes: info.scopes,
            },
            TokenDigest(digest),
        ))
    }
}

/// The token with this digest, provided it is neither revoked nor expired. The API's
/// bearer tokens and the dashboard's sessions both come through here.
pub async fn valid_token(state: &AppState, digest: &str) -> Result<TokenInfo, ApiError> {
    let record = state
        .metrics
        .time_store("token_by_digest", state.store.token_by_digest(digest))
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
    Ok(record.info)
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

/// Ends `stream` once `still_valid` says no: it is asked every [`RECHECK`], so a revoked
/// token or an ended session stops its streams within that time, on every server.
pub fn until_revoked<S, F, Fut>(
    stream: S,
    mut still_valid: F,
) -> impl futures::Stream<Item = S::Item> + Send
where
    S: futures::Stream + Send + 'static,
    S::Item: Send,
    F: FnMut() -> Fut + Send + 'static,
    Fut: std::future::Future<Output = bool> + Send,
{
    use futures::StreamExt as _;
    let ended = async move {
        let mut tick = tokio::time::interval(RECHECK);
        tick.tick().await;
        loop {
            tick.tick().await;
            if !still_valid().await {
                return;
            }
        }
    };
    stream.take_until(Box::pin(ended))
}

/// How often a stream re-checks its token or session.
pub const RECHECK: std::time::Duration = std::time::Duration::from_secs(15);

/// Whether the token with this digest is still valid (neither revoked nor expired). A
/// store error counts as valid: a database hiccup must not drop every stream.
pub async fn token_still_valid(state: &AppState, digest: &TokenDigest) -> bool {
    match valid_token(state, &digest.0).await {
        Ok(_) => true,
        Err(e) => e.status.is_server_error(),
    }
}
