//! `/api/v1/tokens`: create (shown once), list and revoke API tokens. Admin only.

use axum::extract::{Path, State};
use axum::http::StatusCode;
use chrono::Utc;
use gantry_core::names::validate_name;
use gantry_core::token::{digest, generate_secret, CreatedToken};
use gantry_core::{NewToken, ScopeName, TokenInfo};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use crate::auth::Caller;
use crate::error::{ApiError, ApiResult, ErrorBody};
use crate::extract::Json;
use crate::state::AppState;

pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(create_token, list_tokens))
        .routes(routes!(revoke_token))
        .routes(routes!(whoami))
}

/// Create a token. The secret is in this response and nowhere else: the server keeps only
/// its SHA-256 digest.
#[utoipa::path(
    post,
    path = "/api/v1/tokens",
    tag = "tokens",
    request_body = NewToken,
    responses(
        (status = 201, body = CreatedToken),
        (status = 400, body = ErrorBody),
        (status = 409, description = "An active token has this name", body = ErrorBody),
    ),
    security(("bearer" = [])),
    extensions(("x-gantry-scope" = json!("admin"))),
)]
pub async fn create_token(
    State(state): State<AppState>,
    caller: Caller,
    Json(new): Json<NewToken>,
) -> ApiResult<(StatusCode, axum::Json<CreatedToken>)> {
    caller.require(ScopeName::Admin, None, None)?;
    let created = create(&state, caller.name(), new).await?;
    Ok((StatusCode::CREATED, axum::Json(created)))
}

/// Creates a token for `by` (the caller has checked `admin`): the API and the dashboard
/// both create through here. The secret is in the answer and nowhere else.
pub async fn create(state: &AppState, by: &str, new: NewToken) -> ApiResult<CreatedToken> {
    validate_name("token name", &new.name)?;
    if new.scopes.is_empty() {
        return Err(ApiError::invalid(
            "scopes must name at least one scope, e.g. [\"read\"]",
        ));
    }
    let now = Utc::now();
    let expires_at = match new.expires_in.as_deref() {
        None => None,
        Some(text) => {
            let ttl = gantry_core::time::parse_duration("expires_in", text)?;
            let ttl = chrono::Duration::from_std(ttl)
                .map_err(|_| ApiError::invalid(format!("expires_in '{text}' is too long")))?;
            Some(
                now.checked_add_signed(ttl)
                    .ok_or_else(|| ApiError::invalid(format!("expires_in '{text}' is too long")))?,
            )
        }
    };
    let mut scopes = new.scopes;
    scopes.sort();
    scopes.dedup();
    gantry_core::Scope::check_set(&scopes)?;
    let info = TokenInfo {
        name: new.name,
        scopes,
        created_at: now,
        expires_at,
        created_by: by.to_string(),
    };
    let secret = generate_secret();
    state
        .metrics
        .time_store(
            "create_token",
            state.store.create_token(&info, &digest(&secret)),
        )
        .await?;
    tracing::info!(token = %info.name, by = %by, scopes = %gantry_core::Scope::format_list(&info.scopes), "token created");
    Ok(CreatedToken {
        token: secret,
        info,
    })
}

/// List active tokens (never their secrets).
#[utoipa::path(
    get,
    path = "/api/v1/tokens",
    tag = "tokens",
    responses((status = 200, body = Vec<TokenInfo>)),
    security(("bearer" = [])),
    extensions(("x-gantry-scope" = json!("admin"))),
)]
pub async fn list_tokens(
    State(state): State<AppState>,
    caller: Caller,
) -> ApiResult<axum::Json<Vec<TokenInfo>>> {
    caller.require(ScopeName::Admin, None, None)?;
    let tokens = state
        .metrics
        .time_store("list_tokens", state.store.list_tokens())
        .await?;
    Ok(axum::Json(tokens))
}

/// Revoke a token by name; requests with it are refused from then on, on every server.
#[utoipa::path(
    delete,
    path = "/api/v1/tokens/{name}",
    tag = "tokens",
    params(("name" = String, Path)),
    responses((status = 204, description = "Revoked"), (status = 404, body = ErrorBody)),
    security(("bearer" = [])),
    extensions(("x-gantry-scope" = json!("admin"))),
)]
pub async fn revoke_token(
    State(state): State<AppState>,
    caller: Caller,
    Path(name): Path<String>,
) -> ApiResult<StatusCode> {
    caller.require(ScopeName::Admin, None, None)?;
    revoke(&state, caller.name(), &name).await?;
    Ok(StatusCode::NO_CONTENT)
}

/// Revokes the token `name` for `by` (the caller has checked `admin`): requests with it are
/// refused from then on, and its dashboard sessions end, on every server at once.
pub async fn revoke(state: &AppState, by: &str, name: &str) -> ApiResult<()> {
    state
        .metrics
        .time_store("revoke_token", state.store.revoke_token(name, Utc::now()))
        .await?;
    tracing::info!(token = %name, by = %by, "token revoked");
    Ok(())
}

/// The token making this request: its name and scopes.
#[utoipa::path(
    get,
    path = "/api/v1/whoami",
    tag = "tokens",
    responses((status = 200, body = Whoami), (status = 401, body = ErrorBody)),
    security(("bearer" = [])),
    extensions(("x-gantry-scope" = json!("token"))),
)]
pub async fn whoami(caller: Caller) -> axum::Json<Whoami> {
    axum::Json(Whoami {
        name: caller.0.token_name.clone(),
        scopes: caller.0.scopes.iter().map(ToString::to_string).collect(),
    })
}

#[derive(Debug, serde::Serialize, utoipa::ToSchema)]
pub struct Whoami {
    pub name: String,
    pub scopes: Vec<String>,
}
