//! `/api/v1/builds`: a build is made once (uploaded, or registered by URL and digest) and
//! the same bytes are promoted through every environment.

use axum::body::Body;
use axum::extract::{Path, Request, State};
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use chrono::Utc;
use gantry_core::http::parse_range;
use gantry_core::names::validate_name;
use gantry_core::ship::{validate_sha256, validate_version, Build};
use gantry_core::ScopeName;
use gantry_store::BuildQuery;
use serde::Deserialize;
use ulid::Ulid;
use utoipa::IntoParams;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use crate::auth::Caller;
use crate::error::{ApiError, ApiResult, ErrorBody};
use crate::extract::Query;
use crate::ship::artifacts::ArtifactError;
use crate::state::AppState;
use gantry_core::ship::{BuildView, FirstDeployed};

/// Routes with short bodies.
pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(list_builds))
        .routes(routes!(get_build))
}

/// Routes that move artifact bytes: no body limit but the artifact limit, no request timeout.
pub fn transfer_router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(push_build))
        .routes(routes!(download_artifact))
}

#[derive(Debug, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct PushParams {
    pub service: String,
    pub version: String,
    /// The commit the build was made from.
    pub commit: Option<String>,
    /// When that commit was made (RFC 3339 or epoch seconds): lead time starts here.
    pub commit_time: Option<String>,
    /// Register a build agents fetch from this URL instead of uploading it (needs `sha256`).
    pub url: Option<String>,
    /// The artifact's SHA-256 (lowercase hex). Required with `url`; checked against an upload.
    pub sha256: Option<String>,
    /// The artifact's size in bytes, with `url`.
    pub size: Option<u64>,
}

/// Push a build: the body is the artifact (a `.tar.gz`), streamed; or register one by URL.
#[utoipa::path(
    post,
    path = "/api/v1/builds",
    tag = "builds",
    params(PushParams),
    request_body(content = inline(super::Binary), content_type = "application/octet-stream"),
    responses(
        (status = 201, body = Build),
        (status = 400, body = ErrorBody),
        (status = 409, description = "The service has this version already", body = ErrorBody),
        (status = 413, description = "Over [ship] max_artifact_bytes", body = ErrorBody),
    ),
    security(("bearer" = [])),
    extensions(("x-gantry-scope" = json!("deploy"))),
)]
pub async fn push_build(
    State(state): State<AppState>,
    caller: Caller,
    Query(p): Query<PushParams>,
    request: Request,
) -> ApiResult<(StatusCode, axum::Json<Build>)> {
    validate_name("service", &p.service)?;
    caller.require(ScopeName::Deploy, Some(&p.service), None)?;
    validate_version(&p.version)?;
    if let Some(c) = &p.commit {
        if c.is_empty() || c.len() > 128 || c.chars().any(char::is_whitespace) {
            return Err(ApiError::invalid(format!(
                "commit '{c}' is not a commit id"
            )));
        }
    }
    let commit_time = p
        .commit_time
        .as_deref()
        .map(|t| gantry_core::time::parse_api_time("commit_time", t, Utc::now()))
        .transpose()?;
    let limit = state.config.ship.max_artifact_bytes;
    let (sha256, size, url) = if let Some(url) = p.url.clone() {
        let sha = p.sha256.clone().ok_or_else(|| {
            ApiError::invalid("a build registered by url needs sha256 (the artifact's digest)")
        })?;
        validate_sha256(&sha)?;
        let parsed = reqwest::Url::parse(&url)
            .map_err(|e| ApiError::invalid(format!("url '{url}' is not a URL: {e}")))?;
        if !matches!(parsed.scheme(), "http" | "https") {
            return Err(ApiError::invalid(format!(
                "url '{url}' must be http or https"
            )));
        }
        if p.size.is_some_and(|s| s > limit) {
            return Err(too_large(limit));
        }
        (sha, p.size.unwrap_or(0), Some(url))
    } else {
        if let Some(sha) = &p.sha256 {
            validate_sha256(sha)?;
        }
        let declared = request
            .headers()
            .get(header::CONTENT_LENGTH)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.parse::<u64>().ok());
        let mut body = request.into_body().into_data_stream();
        if declared.is_some_and(|n| n > limit) {
            drain(&mut body).await;
            return Err(too_large(limit));
        }
        let stored = state.artifacts.put(&mut body, limit).await;
        let (sha, size) = match stored {
            Ok(s) => s,
            Err(e) => {
                drain(&mut body).await;
                return Err(artifact_error(e));
            }
        };
        if let Some(expected) = &p.sha256 {
            if *expected != sha {
                forget_blob(&state, &sha).await;
                return Err(ApiError::invalid(format!(
                    "the uploaded artifact's sha256 is {sha}, not {expected} as declared; nothing was stored"
                )));
            }
        }
        (sha, size, None)
    };
    let build = Build {
        id: Ulid::new(),
        service: p.service.clone(),
        version: p.version.clone(),
        sha256,
        size,
        url,
        commit: p.commit.clone(),
        commit_time,
        created_by: caller.name().to_string(),
        created_at: Utc::now(),
    };
    if let Err(e) = state.store.insert_build(&build).await {
        if build.url.is_none() {
            forget_blob(&state, &build.sha256).await;
        }
        return Err(e.into());
    }
    tracing::info!(build = %build.id, service = %build.service, version = %build.version, size = build.size, "build pushed");
    apply_retention(&state, &build.service).await;
    Ok((StatusCode::CREATED, axum::Json(build)))
}

/// Reads what is left of a refused upload (up to 16 MiB), so the client finishes sending
/// and reads the answer instead of seeing its connection reset.
async fn drain(body: &mut axum::body::BodyDataStream) {
    use futures::StreamExt;
    let mut left: usize = 16 * 1024 * 1024;
    while let Some(Ok(chunk)) = body.next().await {
        left = left.saturating_sub(chunk.len());
        if left == 0 {
            break;
        }
    }
}

fn too_large(limit: u64) -> ApiError {
    ApiError::new(
        StatusCode::PAYLOAD_TOO_LARGE,
        "payload_too_large",
        format!("the artifact is larger than this server accepts ({limit} bytes; [ship] max_artifact_bytes)"),
    )
}

fn artifact_error(e: ArtifactError) -> ApiError {
    match e {
        ArtifactError::TooLarge { limit } => too_large(limit),
        ArtifactError::Cut { .. } | ArtifactError::Empty => ApiError::invalid(e.to_string()),
        ArtifactError::Store(s) => s.into(),
        ArtifactError::Io(io) => {
            tracing::error!(error = %io, "artifact storage failed");
            ApiError::internal()
        }
    }
}

/// Deletes stored bytes no build refers to.
async fn forget_blob(state: &AppState, sha: &str) {
    let users = state
        .store
        .find_builds(&BuildQuery {
            sha256: Some(sha.to_string()),
            limit: 1,
            ..Default::default()
        })
        .await;
    if matches!(users, Ok(ref u) if u.is_empty()) {
        if let Err(e) = state.artifacts.delete(sha).await {
            tracing::warn!(error = %e, sha, "cannot delete an unused artifact");
        }
    }
}

/// Keeps the newest `keep_builds` builds of a service, and every build in use.
async fn apply_retention(state: &AppState, service: &str) {
    let keep = state.config.ship.keep_builds.max(1);
    let result = async {
        let builds = state
            .store
            .find_builds(&BuildQuery {
                service: Some(service.to_string()),
                limit: 10_000,
                ..Default::default()
            })
            .await?;
        if builds.len() <= keep {
            return Ok::<_, gantry_store::StoreError>(());
        }
        let mut in_use = state.store.builds_in_use(service).await?;
        for host in state.store.list_hosts(None).await? {
            if let Some(r) = host.releases.get(service) {
                in_use.extend(r.build_id);
            }
        }
        for old in builds.iter().skip(keep) {
            if in_use.contains(&old.id) {
                continue;
            }
            state.store.delete_build(old.id).await?;
            tracing::info!(build = %old.id, service, version = %old.version, "build deleted by retention");
            if old.url.is_none() {
                forget_blob(state, &old.sha256).await;
            }
        }
        Ok(())
    }
    .await;
    if let Err(e) = result {
        tracing::warn!(error = %e, service, "build retention failed");
    }
}

#[derive(Debug, Default, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct ListParams {
    pub service: Option<String>,
    /// At most this many, newest first (default 50).
    /// (Any unsigned 32-bit number is taken; the server clamps it.)
    #[param(value_type = Option<u64>, maximum = 4294967295_u64)]
    pub limit: Option<u32>,
}

/// List builds, newest first.
#[utoipa::path(
    get,
    path = "/api/v1/builds",
    tag = "builds",
    params(ListParams),
    responses((status = 200, body = Vec<Build>)),
    security(("bearer" = [])),
    extensions(("x-gantry-scope" = json!("read"))),
)]
pub async fn list_builds(
    State(state): State<AppState>,
    caller: Caller,
    Query(p): Query<ListParams>,
) -> ApiResult<axum::Json<Vec<Build>>> {
    match &p.service {
        Some(s) => caller.require(ScopeName::Read, Some(s), None)?,
        None => caller.require_somewhere(ScopeName::Read)?,
    }
    let mut builds = state
        .store
        .find_builds(&BuildQuery {
            service: p.service.clone(),
            limit: p.limit.unwrap_or(50).min(1000),
            ..Default::default()
        })
        .await?;
    builds.retain(|b| caller.0.allows(ScopeName::Read, Some(&b.service), None));
    Ok(axum::Json(builds))
}

#[derive(Debug, Default, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct ShowParams {
    /// The service, so that a version can name the build.
    pub service: Option<String>,
}

/// Show a build: by version (with `service`), by id, or by a unique id prefix.
#[utoipa::path(
    get,
    path = "/api/v1/builds/{build}",
    tag = "builds",
    params(("build" = String, Path), ShowParams),
    responses((status = 200, body = BuildView), (status = 404, body = ErrorBody), (status = 409, description = "The prefix matches several builds", body = ErrorBody)),
    security(("bearer" = [])),
    extensions(("x-gantry-scope" = json!("read"))),
)]
pub async fn get_build(
    State(state): State<AppState>,
    caller: Caller,
    Path(reference): Path<String>,
    Query(p): Query<ShowParams>,
) -> ApiResult<axum::Json<BuildView>> {
    caller.require_somewhere(ScopeName::Read)?;
    let build = resolve(&state, p.service.as_deref(), &reference).await?;
    caller.require(ScopeName::Read, Some(&build.service), None)?;
    let mut environments: Vec<FirstDeployed> = Vec::new();
    for d in state.store.build_deployments(build.id).await? {
        if !environments.iter().any(|e| e.environment == d.environment) {
            environments.push(FirstDeployed {
                environment: d.environment,
                first_at: d.at,
            });
        }
    }
    Ok(axum::Json(BuildView {
        build,
        environments,
    }))
}

/// Finds the build `reference` names: an exact version of `service` first, then an exact
/// id, then a unique id prefix (of that service's builds, when given).
pub async fn resolve(state: &AppState, service: Option<&str>, reference: &str) -> ApiResult<Build> {
    if let Some(service) = service {
        let by_version = state
            .store
            .find_builds(&BuildQuery {
                service: Some(service.to_string()),
                version: Some(reference.to_string()),
                limit: 1,
                ..Default::default()
            })
            .await?;
        if let Some(b) = by_version.into_iter().next() {
            return Ok(b);
        }
    }
    if let Ok(id) = reference.parse::<Ulid>() {
        if let Some(b) = state.store.get_build(id).await? {
            if service.is_some_and(|s| s != b.service) {
                // Within the service asked about, there is no such build.
                return Err(ApiError::not_found(format!(
                    "build {} is a build of {}, not of {}",
                    b.id,
                    b.service,
                    service.unwrap_or_default()
                )));
            }
            return Ok(b);
        }
    }
    let looks_like_prefix = reference.len() >= 4
        && reference.len() < 26
        && reference.chars().all(|c| c.is_ascii_alphanumeric());
    if looks_like_prefix {
        let found = state
            .store
            .find_builds(&BuildQuery {
                service: service.map(str::to_string),
                id_prefix: Some(reference.to_string()),
                limit: 5,
                ..Default::default()
            })
            .await?;
        match found.len() {
            0 => {}
            1 => return Ok(found.into_iter().next().unwrap_or_else(|| unreachable!())),
            _ => {
                let names: Vec<String> = found
                    .iter()
                    .map(|b| format!("{} ({} {})", b.id, b.service, b.version))
                    .collect();
                return Err(ApiError::new(
                    StatusCode::CONFLICT,
                    "ambiguous",
                    format!(
                        "'{reference}' matches several builds: {}; give more of the id",
                        names.join(", ")
                    ),
                ));
            }
        }
    }
    Err(ApiError::not_found(match service {
        Some(s) => format!("no build of {s} has version or id '{reference}'"),
        None => format!("no build has id '{reference}' (give --service to find it by version)"),
    }))
}

/// Download a build's artifact; `Range: bytes=N-` resumes a cut download.
#[utoipa::path(
    get,
    path = "/api/v1/builds/{id}/artifact",
    tag = "builds",
    params(("id" = String, Path)),
    responses(
        (status = 200, content_type = "application/octet-stream", body = inline(super::Binary)),
        (status = 206, description = "The rest, from the requested offset"),
        (status = 404, body = ErrorBody),
        (status = 416, description = "The offset is past the end", body = ErrorBody),
    ),
    security(("bearer" = [])),
    extensions(("x-gantry-scope" = json!("agent|read|deploy"))),
)]
pub async fn download_artifact(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
    headers: HeaderMap,
) -> ApiResult<Response> {
    let id: Ulid = id
        .parse()
        .map_err(|_| ApiError::invalid(format!("'{id}' is not a build id")))?;
    let build = state
        .store
        .get_build(id)
        .await?
        .ok_or_else(|| ApiError::not_found(format!("no build {id}")))?;
    let allowed = caller.0.holds_somewhere(ScopeName::Agent)
        || caller.0.allows(ScopeName::Read, Some(&build.service), None)
        || caller
            .0
            .allows(ScopeName::Deploy, Some(&build.service), None);
    if !allowed {
        return Err(ApiError::forbidden(format!(
            "token '{}' may not download builds of {}",
            caller.name(),
            build.service
        )));
    }
    if build.url.is_some() {
        return Err(ApiError::not_found(format!(
            "build {id} is registered by URL; fetch it from {}",
            build.url.unwrap_or_default()
        )));
    }
    let size = state
        .artifacts
        .size(&build.sha256)
        .await
        .map_err(artifact_error)?
        .ok_or_else(|| {
            ApiError::not_found(format!(
                "the artifact of build {id} is missing from {} storage",
                state.artifacts.kind()
            ))
        })?;
    let start = match headers.get(header::RANGE).and_then(|v| v.to_str().ok()) {
        None => None,
        Some(range) => Some(parse_range(range).ok_or_else(|| {
            ApiError::invalid(format!("Range '{range}' is not supported; send bytes=N-"))
        })?),
    };
    if let Some(start) = start {
        if start >= size {
            return Err(ApiError::new(
                StatusCode::RANGE_NOT_SATISFIABLE,
                "range_not_satisfiable",
                format!("offset {start} is past the artifact's end ({size} bytes)"),
            ));
        }
    }
    let from = start.unwrap_or(0);
    let stream = state
        .artifacts
        .read(&build.sha256, from)
        .await
        .map_err(artifact_error)?;
    let mut response = Response::new(Body::from_stream(stream));
    let h = response.headers_mut();
    h.insert(
        header::CONTENT_TYPE,
        header::HeaderValue::from_static("application/octet-stream"),
    );
    h.insert(
        header::ACCEPT_RANGES,
        header::HeaderValue::from_static("bytes"),
    );
    h.insert(header::CONTENT_LENGTH, (size - from).into());
    if let Ok(v) = header::HeaderValue::from_str(&build.sha256) {
        h.insert("x-gantry-sha256", v);
    }
    if start.is_some() {
        if let Ok(v) = header::HeaderValue::from_str(&format!("bytes {from}-{}/{size}", size - 1)) {
            h.insert(header::CONTENT_RANGE, v);
        }
        *response.status_mut() = StatusCode::PARTIAL_CONTENT;
    }
    Ok(response.into_response())
}

#[cfg(test)]
mod tests {
    #[test]
    fn ranges() {
        assert_eq!(super::parse_range("bytes=100-"), Some(100));
        assert_eq!(super::parse_range("bytes=0-"), Some(0));
        assert_eq!(super::parse_range("bytes=0-10"), None);
        assert_eq!(super::parse_range("items=1-"), None);
    }
}
