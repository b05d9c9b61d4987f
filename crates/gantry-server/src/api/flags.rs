//! `/api/v1/flags…` and `/api/v1/services/{service}/segments…`: feature flags as people and
//! CI manage them. Every change of behaviour is a change in the log, written in the same
//! transaction; reads carry an `ETag` (the flag's version) and writes honour `If-Match`.

use std::collections::BTreeMap;

use axum::extract::{Path, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use chrono::{DateTime, Utc};
use gantry_core::ScopeName;
use gantry_flags::edit::{self, Edit, Target};
use gantry_flags::model::{Constraint, EnvironmentDefinition, Payload};
use gantry_store::{FlagRecord, FlagSchedule, FlagWrite, SegmentRecord};
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use crate::auth::Caller;
use crate::error::{ApiError, ApiResult, ErrorBody};
use crate::extract::{Json, Query};
use crate::flags::ops::{self, Actor, EnvChange};
use crate::state::AppState;

pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(create_flag, list_flags))
        .routes(routes!(stale_flags))
        .routes(routes!(get_flag, patch_flag))
        .routes(routes!(put_environment))
        .routes(routes!(enable_flag))
        .routes(routes!(disable_flag))
        .routes(routes!(set_rollout))
        .routes(routes!(add_target))
        .routes(routes!(set_variant))
        .routes(routes!(archive_flag))
        .routes(routes!(restore_flag))
        .routes(routes!(create_schedule, list_schedules))
        .routes(routes!(cancel_schedule))
        .routes(routes!(create_segment, list_segments))
        .routes(routes!(put_segment, delete_segment))
}

/// A flag as the API shows it.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct FlagView {
    pub service: String,
    pub name: String,
    /// `release`, `experiment`, `operational`, `kill-switch` or `permission`.
    #[serde(rename = "type")]
    pub flag_type: String,
    pub description: Option<String>,
    pub owner: Option<String>,
    pub created_at: DateTime<Utc>,
    pub created_by: String,
    pub archived_at: Option<DateTime<Utc>>,
    /// What the `ETag` names; send it back as `If-Match`.
    pub version: i64,
    /// Days a flag of this type is expected to live (`null`: for good).
    pub expected_lifetime_days: Option<i64>,
    /// Per environment: the definition and who last changed it.
    pub environments: BTreeMap<String, EnvironmentView>,
}

#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct EnvironmentView {
    /// enabled, strategies (with constraints and segments), variants, dependencies.
    #[schema(value_type = Object)]
    pub definition: serde_json::Value,
    pub updated_at: DateTime<Utc>,
    pub updated_by: String,
}

impl FlagView {
    pub fn of(flag: &FlagRecord) -> FlagView {
        FlagView {
            service: flag.service.clone(),
            name: flag.name.clone(),
            flag_type: flag.flag_type.clone(),
            description: flag.description.clone(),
            owner: flag.owner.clone(),
            created_at: flag.created_at,
            created_by: flag.created_by.clone(),
            archived_at: flag.archived_at,
            version: flag.version,
            expected_lifetime_days: edit::expected_lifetime_days(&flag.flag_type),
            environments: flag
                .environments
                .iter()
                .map(|(env, e)| {
                    (
                        env.clone(),
                        EnvironmentView {
                            definition: serde_json::from_str(&e.definition)
                                .unwrap_or(serde_json::Value::Null),
                            updated_at: e.updated_at,
                            updated_by: e.updated_by.clone(),
                        },
                    )
                })
                .collect(),
        }
    }
}

/// The flag with its `ETag`.
fn with_etag<T: Serialize>(status: StatusCode, version: i64, body: T) -> Response {
    let mut response = (status, axum::Json(body)).into_response();
    if let Ok(value) = HeaderValue::from_str(&format!("\"{version}\"")) {
        response
            .headers_mut()
            .insert(axum::http::header::ETAG, value);
    }
    response
}

/// The version an `If-Match` header names (`"7"`, `W/"7"` or `7`), if any.
fn if_match(headers: &HeaderMap) -> ApiResult<Option<i64>> {
    let Some(value) = headers.get(axum::http::header::IF_MATCH) else {
        return Ok(None);
    };
    let text = value.to_str().unwrap_or("").trim();
    // `"N"` or `W/"N"`, as the ETags this API gives out (the OpenAPI document's pattern).
    let digits = text
        .strip_prefix("W/")
        .unwrap_or(text)
        .strip_prefix('"')
        .and_then(|t| t.strip_suffix('"'))
        .filter(|d| (1..=18).contains(&d.len()) && d.bytes().all(|b| b.is_ascii_digit()));
    digits
        .and_then(|d| d.parse().ok())
        .map(Some)
        .ok_or_else(|| {
            ApiError::invalid(format!(
            "If-Match '{text}' is not an ETag this API gave out; send the ETag of the last read"
        ))
        })
}

/// Whether the caller may read the flags of `service`: `read` or `flags` covering it.
fn require_read(caller: &Caller, service: &str) -> ApiResult<()> {
    ops::require_read(&caller.0, service)
}

/// A flag to create.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct NewFlag {
    pub service: String,
    pub name: String,
    /// `release` (default), `experiment`, `operational`, `kill-switch` or `permission`.
    #[serde(rename = "type", default)]
    pub flag_type: Option<String>,
    pub description: Option<String>,
    pub owner: Option<String>,
}

/// Create a flag of a service (off in every environment).
#[utoipa::path(
    post,
    path = "/api/v1/flags",
    tag = "flags",
    request_body = NewFlag,
    responses(
        (status = 201, body = FlagView),
        (status = 400, body = ErrorBody),
        (status = 404, description = "Unknown service", body = ErrorBody),
        (status = 409, description = "The service has a flag of that name", body = ErrorBody),
    ),
    security(("bearer" = [])),
    extensions(("x-gantry-scope" = json!("flags"))),
)]
pub async fn create_flag(
    State(state): State<AppState>,
    caller: Caller,
    Json(new): Json<NewFlag>,
) -> ApiResult<Response> {
    gantry_core::names::validate_name("service", &new.service)?;
    caller.require(ScopeName::Flags, Some(&new.service), None)?;
    gantry_flags::validate::validate_flag_name(&new.name)?;
    let flag_type = new.flag_type.unwrap_or_else(|| "release".into());
    edit::validate_flag_type(&flag_type)?;
    check_text("description", new.description.as_deref(), 2000)?;
    check_text("owner", new.owner.as_deref(), 200)?;
    let now = Utc::now();
    let flag = FlagRecord {
        service: new.service.clone(),
        name: new.name.clone(),
        flag_type: flag_type.clone(),
        description: new.description,
        owner: new.owner,
        created_at: now,
        created_by: caller.name().to_string(),
        archived_at: None,
        version: 1,
        environments: BTreeMap::new(),
    };
    let actor = Actor {
        name: caller.name(),
        if_match: None,
        note: None,
    };
    let change = ops::flag_change(
        &new.service,
        None,
        &actor,
        format!("{}: created ({flag_type})", new.name),
        serde_json::json!({"flag": new.name, "type": flag_type}),
        now,
    );
    let stored = state
        .metrics
        .time_store("create_flag", state.store.create_flag(&flag, &change))
        .await?;
    state.flag_sets.invalidate(&stored.service);
    Ok(with_etag(
        StatusCode::CREATED,
        stored.version,
        FlagView::of(&stored),
    ))
}

fn check_text(field: &str, text: Option<&str>, max: usize) -> ApiResult<()> {
    match text {
        Some(t) if t.len() > max => Err(ApiError::invalid(format!(
            "{field} is {} bytes; the limit is {max}",
            t.len()
        ))),
        _ => Ok(()),
    }
}

#[derive(Debug, Default, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct ListParams {
    /// Only this service's flags.
    service: Option<String>,
    /// `true`: only archived flags; `false` (default): only live ones.
    archived: Option<bool>,
}

/// List flags.
#[utoipa::path(
    get,
    path = "/api/v1/flags",
    tag = "flags",
    params(ListParams),
    responses((status = 200, body = Vec<FlagView>)),
    security(("bearer" = [])),
    extensions(("x-gantry-scope" = json!("read|flags"))),
)]
pub async fn list_flags(
    State(state): State<AppState>,
    caller: Caller,
    Query(params): Query<ListParams>,
) -> ApiResult<axum::Json<Vec<FlagView>>> {
    if let Some(service) = &params.service {
        require_read(&caller, service)?;
    } else if !caller.0.holds_somewhere(ScopeName::Read)
        && !caller.0.holds_somewhere(ScopeName::Flags)
    {
        return Err(ApiError::forbidden(format!(
            "token '{}' lacks the scope read or flags needed to list flags",
            caller.name()
        )));
    }
    let flags = state
        .metrics
        .time_store(
            "list_flags",
            state.store.list_flags(
                params.service.as_deref(),
                Some(params.archived.unwrap_or(false)),
            ),
        )
        .await?;
    Ok(axum::Json(
        flags
            .iter()
            .filter(|f| require_read(&caller, &f.service).is_ok())
            .map(FlagView::of)
            .collect(),
    ))
}

/// A flag with what its SDKs reported.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct FlagDetail {
    #[serde(flatten)]
    pub flag: FlagView,
    /// SDK instances of the service that registered, newest first.
    pub sdks: Vec<SdkView>,
    /// Per environment: evaluations SDKs reported and this server counted, last 90 days.
    pub usage: BTreeMap<String, UsageView>,
}

#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct UsageView {
    pub yes: i64,
    pub no: i64,
    /// The start of the newest hour with an evaluation.
    pub last_evaluated: DateTime<Utc>,
}

#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct SdkView {
    pub environment: String,
    pub app_name: String,
    pub instance_id: String,
    pub sdk_version: Option<String>,
    pub last_seen_at: DateTime<Utc>,
}

/// Show a flag, every environment's definition, and the SDKs that registered.
#[utoipa::path(
    get,
    path = "/api/v1/flags/{service}/{name}",
    tag = "flags",
    params(("service" = String, Path), ("name" = String, Path)),
    responses((status = 200, body = FlagDetail, headers(("ETag" = String))), (status = 404, body = ErrorBody)),
    security(("bearer" = [])),
    extensions(("x-gantry-scope" = json!("read|flags"))),
)]
pub async fn get_flag(
    State(state): State<AppState>,
    caller: Caller,
    Path((service, name)): Path<(String, String)>,
) -> ApiResult<Response> {
    require_read(&caller, &service)?;
    let flag = ops::read_flag(state.store.as_ref(), &service, &name).await?;
    let mut sdks: Vec<SdkView> = state
        .store
        .sdk_clients(&service)
        .await?
        .into_iter()
        .map(|c| SdkView {
            environment: c.environment,
            app_name: c.app_name,
            instance_id: c.instance_id,
            sdk_version: c.sdk_version,
            last_seen_at: c.last_seen_at,
        })
        .collect();
    sdks.sort_by_key(|s| std::cmp::Reverse(s.last_seen_at));
    let usage = crate::flags::usage::of_flag(&state, &service, &name)
        .await?
        .into_iter()
        .map(|u| {
            (
                u.environment,
                UsageView {
                    yes: u.yes,
                    no: u.no,
                    last_evaluated: u.hour,
                },
            )
        })
        .collect();
    Ok(with_etag(
        StatusCode::OK,
        flag.version,
        FlagDetail {
            flag: FlagView::of(&flag),
            sdks,
            usage,
        },
    ))
}

/// New metadata; fields left out keep their value.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct FlagPatch {
    #[serde(rename = "type")]
    pub flag_type: Option<String>,
    pub description: Option<String>,
    pub owner: Option<String>,
}

/// Change a flag's type, description or owner.
#[utoipa::path(
    patch,
    path = "/api/v1/flags/{service}/{name}",
    tag = "flags",
    params(("service" = String, Path), ("name" = String, Path), ("If-Match" = Option<String>, Header)),
    request_body = FlagPatch,
    responses((status = 200, body = FlagView), (status = 404, body = ErrorBody), (status = 412, body = ErrorBody)),
    security(("bearer" = [])),
    extensions(("x-gantry-scope" = json!("flags"))),
)]
pub async fn patch_flag(
    State(state): State<AppState>,
    caller: Caller,
    headers: HeaderMap,
    Path((service, name)): Path<(String, String)>,
    Json(patch): Json<FlagPatch>,
) -> ApiResult<Response> {
    caller.require(ScopeName::Flags, Some(&service), None)?;
    let expected = if_match(&headers)?;
    if let Some(t) = &patch.flag_type {
        edit::validate_flag_type(t)?;
    }
    check_text("description", patch.description.as_deref(), 2000)?;
    check_text("owner", patch.owner.as_deref(), 200)?;
    let flag = ops::read_flag(state.store.as_ref(), &service, &name).await?;
    let write = FlagWrite::Meta {
        flag_type: patch.flag_type.unwrap_or(flag.flag_type.clone()),
        description: patch.description.or(flag.description.clone()),
        owner: patch.owner.or(flag.owner.clone()),
    };
    let stored = state
        .store
        .write_flag(
            &service,
            &name,
            expected.unwrap_or(flag.version),
            &write,
            caller.name(),
            Utc::now(),
            None,
        )
        .await?;
    state.flag_sets.invalidate(&service);
    Ok(with_etag(
        StatusCode::OK,
        stored.version,
        FlagView::of(&stored),
    ))
}

/// What a per-environment write returns: the change it recorded, and the flag.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct FlagWritten {
    /// The id of the change in the log.
    #[schema(value_type = String)]
    pub change: ulid::Ulid,
    pub flag: FlagView,
}

async fn change_env(
    state: &AppState,
    caller: &Caller,
    headers: &HeaderMap,
    service: &str,
    name: &str,
    environment: &str,
    change: EnvChange,
) -> ApiResult<Response> {
    caller.require(ScopeName::Flags, Some(service), Some(environment))?;
    let actor = Actor {
        name: caller.name(),
        if_match: if_match(headers)?,
        note: None,
    };
    let (flag, change) = ops::change_environment(
        state.store.as_ref(),
        &state.flag_sets,
        service,
        name,
        environment,
        &change,
        &actor,
    )
    .await?;
    Ok(with_etag(
        StatusCode::OK,
        flag.version,
        FlagWritten {
            change,
            flag: FlagView::of(&flag),
        },
    ))
}

/// Set the whole definition of a flag in one environment.
#[utoipa::path(
    put,
    path = "/api/v1/flags/{service}/{name}/environments/{env}",
    tag = "flags",
    params(("service" = String, Path), ("name" = String, Path), ("env" = String, Path), ("If-Match" = Option<String>, Header)),
    request_body(content = Object, description = "enabled, strategies, variants, dependencies (Unleash's model)"),
    responses((status = 200, body = FlagWritten), (status = 400, body = ErrorBody), (status = 404, body = ErrorBody), (status = 409, description = "The flag is archived", body = ErrorBody), (status = 412, body = ErrorBody)),
    security(("bearer" = [])),
    extensions(("x-gantry-scope" = json!("flags"))),
)]
pub async fn put_environment(
    State(state): State<AppState>,
    caller: Caller,
    headers: HeaderMap,
    Path((service, name, env)): Path<(String, String, String)>,
    Json(definition): Json<serde_json::Value>,
) -> ApiResult<Response> {
    let definition: EnvironmentDefinition = serde_path_to_error::deserialize(definition)
        .map_err(|e| ApiError::invalid(format!("{}: {}", e.path(), e.inner())))?;
    change_env(
        &state,
        &caller,
        &headers,
        &service,
        &name,
        &env,
        EnvChange::Replace(definition),
    )
    .await
}

/// Turn a flag on in one environment (its strategies then decide for whom).
#[utoipa::path(
    post,
    path = "/api/v1/flags/{service}/{name}/environments/{env}/enable",
    tag = "flags",
    params(("service" = String, Path), ("name" = String, Path), ("env" = String, Path), ("If-Match" = Option<String>, Header)),
    responses((status = 200, body = FlagWritten), (status = 404, body = ErrorBody), (status = 409, description = "The flag is archived", body = ErrorBody), (status = 412, body = ErrorBody)),
    security(("bearer" = [])),
    extensions(("x-gantry-scope" = json!("flags"))),
)]
pub async fn enable_flag(
    State(state): State<AppState>,
    caller: Caller,
    headers: HeaderMap,
    Path((service, name, env)): Path<(String, String, String)>,
) -> ApiResult<Response> {
    change_env(
        &state,
        &caller,
        &headers,
        &service,
        &name,
        &env,
        EnvChange::Edit(Edit::Enable),
    )
    .await
}

/// Turn a flag off in one environment, for everyone.
#[utoipa::path(
    post,
    path = "/api/v1/flags/{service}/{name}/environments/{env}/disable",
    tag = "flags",
    params(("service" = String, Path), ("name" = String, Path), ("env" = String, Path), ("If-Match" = Option<String>, Header)),
    responses((status = 200, body = FlagWritten), (status = 404, body = ErrorBody), (status = 409, description = "The flag is archived", body = ErrorBody), (status = 412, body = ErrorBody)),
    security(("bearer" = [])),
    extensions(("x-gantry-scope" = json!("flags"))),
)]
pub async fn disable_flag(
    State(state): State<AppState>,
    caller: Caller,
    headers: HeaderMap,
    Path((service, name, env)): Path<(String, String, String)>,
) -> ApiResult<Response> {
    change_env(
        &state,
        &caller,
        &headers,
        &service,
        &name,
        &env,
        EnvChange::Edit(Edit::Disable),
    )
    .await
}

/// A percentage rollout. Named `FlagRollout` in the document: the rollouts' `Rollout` would
/// otherwise replace it there.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(as = FlagRollout)]
pub struct Rollout {
    /// 0 to 100.
    #[schema(maximum = 100)]
    pub percent: u32,
    /// `default` (userId, then sessionId, then random), `userId`, `sessionId`, `random` or
    /// any context field; kept when left out.
    pub stickiness: Option<String>,
}

/// Set the percentage of the flag's one unconstrained flexibleRollout (created when absent).
#[utoipa::path(
    put,
    path = "/api/v1/flags/{service}/{name}/environments/{env}/rollout",
    tag = "flags",
    params(("service" = String, Path), ("name" = String, Path), ("env" = String, Path), ("If-Match" = Option<String>, Header)),
    request_body = Rollout,
    responses((status = 200, body = FlagWritten), (status = 400, body = ErrorBody), (status = 409, description = "Several unconstrained rollouts", body = ErrorBody), (status = 412, body = ErrorBody)),
    security(("bearer" = [])),
    extensions(("x-gantry-scope" = json!("flags"))),
)]
pub async fn set_rollout(
    State(state): State<AppState>,
    caller: Caller,
    headers: HeaderMap,
    Path((service, name, env)): Path<(String, String, String)>,
    Json(rollout): Json<Rollout>,
) -> ApiResult<Response> {
    let edit = Edit::Rollout {
        percent: rollout.percent,
        stickiness: rollout.stickiness,
    };
    change_env(
        &state,
        &caller,
        &headers,
        &service,
        &name,
        &env,
        EnvChange::Edit(edit),
    )
    .await
    .map_err(|e| {
        if e.message
            .contains("unconstrained flexibleRollout strategies")
        {
            ApiError::new(StatusCode::CONFLICT, "conflict", e.message)
        } else {
            e
        }
    })
}

/// Who a targeting strategy turns the flag on for: exactly one of the fields.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct TargetBody {
    pub users: Option<Vec<String>>,
    /// Matched against the context property `groups`.
    pub groups: Option<Vec<String>>,
    /// Any Unleash constraint (contextName, operator, values or value, inverted, caseInsensitive).
    #[schema(value_type = Option<Object>)]
    pub constraint: Option<Constraint>,
}

/// Add a strategy that turns the flag on for some users, groups or a constraint.
#[utoipa::path(
    post,
    path = "/api/v1/flags/{service}/{name}/environments/{env}/targets",
    tag = "flags",
    params(("service" = String, Path), ("name" = String, Path), ("env" = String, Path), ("If-Match" = Option<String>, Header)),
    request_body = TargetBody,
    responses((status = 200, body = FlagWritten), (status = 400, body = ErrorBody), (status = 409, description = "The flag is archived", body = ErrorBody), (status = 412, body = ErrorBody)),
    security(("bearer" = [])),
    extensions(("x-gantry-scope" = json!("flags"))),
)]
pub async fn add_target(
    State(state): State<AppState>,
    caller: Caller,
    headers: HeaderMap,
    Path((service, name, env)): Path<(String, String, String)>,
    Json(body): Json<TargetBody>,
) -> ApiResult<Response> {
    let target = match (body.users, body.groups, body.constraint) {
        (Some(users), None, None) => Target::Users(users),
        (None, Some(groups), None) => Target::Groups(groups),
        (None, None, Some(constraint)) => Target::Constraint(constraint),
        _ => {
            return Err(ApiError::invalid(
                "send exactly one of users, groups or constraint",
            ))
        }
    };
    change_env(
        &state,
        &caller,
        &headers,
        &service,
        &name,
        &env,
        EnvChange::Edit(Edit::Target(target)),
    )
    .await
}

/// A variant to add, replace or remove.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct VariantBody {
    pub name: String,
    /// A fixed weight in thousandths; left out, the variant shares what fixed ones leave.
    pub weight: Option<u32>,
    /// `{type: string|json|number|csv, value}`.
    #[schema(value_type = Option<Object>)]
    pub payload: Option<Payload>,
    #[serde(default)]
    pub remove: bool,
}

/// Add, replace or remove one variant of a flag in one environment.
#[utoipa::path(
    post,
    path = "/api/v1/flags/{service}/{name}/environments/{env}/variants",
    tag = "flags",
    params(("service" = String, Path), ("name" = String, Path), ("env" = String, Path), ("If-Match" = Option<String>, Header)),
    request_body = VariantBody,
    responses((status = 200, body = FlagWritten), (status = 400, body = ErrorBody), (status = 409, description = "The flag is archived", body = ErrorBody), (status = 412, body = ErrorBody)),
    security(("bearer" = [])),
    extensions(("x-gantry-scope" = json!("flags"))),
)]
pub async fn set_variant(
    State(state): State<AppState>,
    caller: Caller,
    headers: HeaderMap,
    Path((service, name, env)): Path<(String, String, String)>,
    Json(body): Json<VariantBody>,
) -> ApiResult<Response> {
    let edit = Edit::Variant {
        name: body.name,
        weight: body.weight,
        payload: body.payload,
        remove: body.remove,
    };
    change_env(
        &state,
        &caller,
        &headers,
        &service,
        &name,
        &env,
        EnvChange::Edit(edit),
    )
    .await
}

async fn archive_or_restore(
    state: &AppState,
    caller: &Caller,
    headers: &HeaderMap,
    service: &str,
    name: &str,
    archive: bool,
) -> ApiResult<Response> {
    caller.require(ScopeName::Flags, Some(service), None)?;
    let expected = if_match(headers)?;
    let flag = ops::read_flag(state.store.as_ref(), service, name).await?;
    if flag.archived_at.is_some() == archive {
        return Err(ApiError::new(
            StatusCode::CONFLICT,
            "conflict",
            format!(
                "flag '{service}/{name}' is {} already",
                if archive { "archived" } else { "live" }
            ),
        ));
    }
    let actor = Actor {
        name: caller.name(),
        if_match: expected,
        note: None,
    };
    let verb = if archive { "archived" } else { "restored" };
    let now = Utc::now();
    let change = ops::flag_change(
        service,
        None,
        &actor,
        format!("{name}: {verb}"),
        serde_json::json!({"flag": name}),
        now,
    );
    let write = if archive {
        FlagWrite::Archive
    } else {
        FlagWrite::Restore
    };
    let stored = state
        .store
        .write_flag(
            service,
            name,
            expected.unwrap_or(flag.version),
            &write,
            caller.name(),
            now,
            Some(&change),
        )
        .await?;
    state.flag_sets.invalidate(service);
    Ok(with_etag(
        StatusCode::OK,
        stored.version,
        FlagWritten {
            change: change.id,
            flag: FlagView::of(&stored),
        },
    ))
}

/// Archive a flag: SDKs no longer see it; its history stays.
#[utoipa::path(
    post,
    path = "/api/v1/flags/{service}/{name}/archive",
    tag = "flags",
    params(("service" = String, Path), ("name" = String, Path), ("If-Match" = Option<String>, Header)),
    responses((status = 200, body = FlagWritten), (status = 404, body = ErrorBody), (status = 409, body = ErrorBody), (status = 412, body = ErrorBody)),
    security(("bearer" = [])),
    extensions(("x-gantry-scope" = json!("flags"))),
)]
pub async fn archive_flag(
    State(state): State<AppState>,
    caller: Caller,
    headers: HeaderMap,
    Path((service, name)): Path<(String, String)>,
) -> ApiResult<Response> {
    archive_or_restore(&state, &caller, &headers, &service, &name, true).await
}

/// Restore an archived flag.
#[utoipa::path(
    post,
    path = "/api/v1/flags/{service}/{name}/restore",
    tag = "flags",
    params(("service" = String, Path), ("name" = String, Path), ("If-Match" = Option<String>, Header)),
    responses((status = 200, body = FlagWritten), (status = 404, body = ErrorBody), (status = 409, body = ErrorBody), (status = 412, body = ErrorBody)),
    security(("bearer" = [])),
    extensions(("x-gantry-scope" = json!("flags"))),
)]
pub async fn restore_flag(
    State(state): State<AppState>,
    caller: Caller,
    headers: HeaderMap,
    Path((service, name)): Path<(String, String)>,
) -> ApiResult<Response> {
    archive_or_restore(&state, &caller, &headers, &service, &name, false).await
}

/// A change to run later, once, in one environment.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct NewSchedule {
    pub environment: String,
    /// `enable`, `disable` or `rollout` (with `percent`).
    pub action: String,
    pub percent: Option<u32>,
    /// RFC 3339, or `+DURATION` from now (`+2h`). Must be in the future.
    pub at: String,
}

#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct ScheduleView {
    #[schema(value_type = String)]
    pub id: ulid::Ulid,
    pub service: String,
    pub flag: String,
    pub environment: String,
    #[schema(value_type = Object)]
    pub action: serde_json::Value,
    pub run_at: DateTime<Utc>,
    pub created_by: String,
    /// `pending`, `done`, `failed` or `cancelled`.
    pub state: String,
    pub ran_at: Option<DateTime<Utc>>,
    #[schema(value_type = Option<String>)]
    pub change: Option<ulid::Ulid>,
    pub error: Option<String>,
}

impl ScheduleView {
    fn of(s: &FlagSchedule) -> ScheduleView {
        ScheduleView {
            id: s.id,
            service: s.service.clone(),
            flag: s.name.clone(),
            environment: s.environment.clone(),
            action: serde_json::from_str(&s.action).unwrap_or(serde_json::Value::Null),
            run_at: s.run_at,
            created_by: s.created_by.clone(),
            state: s.state.clone(),
            ran_at: s.ran_at,
            change: s.change_id,
            error: s.error.clone(),
        }
    }
}

/// Schedule an enable, disable or rollout of a flag in one environment.
#[utoipa::path(
    post,
    path = "/api/v1/flags/{service}/{name}/schedules",
    tag = "flags",
    params(("service" = String, Path), ("name" = String, Path)),
    request_body = NewSchedule,
    responses((status = 201, body = ScheduleView), (status = 400, body = ErrorBody), (status = 404, body = ErrorBody)),
    security(("bearer" = [])),
    extensions(("x-gantry-scope" = json!("flags"))),
)]
pub async fn create_schedule(
    State(state): State<AppState>,
    caller: Caller,
    Path((service, name)): Path<(String, String)>,
    Json(new): Json<NewSchedule>,
) -> ApiResult<(StatusCode, axum::Json<ScheduleView>)> {
    gantry_core::names::validate_name("environment", &new.environment)?;
    caller.require(ScopeName::Flags, Some(&service), Some(&new.environment))?;
    let edit = match (new.action.as_str(), new.percent) {
        ("enable", None) => Edit::Enable,
        ("disable", None) => Edit::Disable,
        ("rollout", Some(percent)) if percent <= 100 => Edit::Rollout {
            percent,
            stickiness: None,
        },
        ("rollout", _) => {
            return Err(ApiError::invalid(
                "percent: a rollout needs a percentage from 0 to 100",
            ))
        }
        (other, _) => {
            return Err(ApiError::invalid(format!(
                "action: '{other}' is not enable, disable or rollout (percent only with rollout)"
            )))
        }
    };
    let now = Utc::now();
    let run_at = crate::flags::schedule::parse_at(&new.at, now)?;
    let schedule = FlagSchedule {
        id: ulid::Ulid::new(),
        service: service.clone(),
        name: name.clone(),
        environment: new.environment,
        action: serde_json::to_string(&edit).map_err(|_| ApiError::internal())?,
        run_at,
        created_by: caller.name().to_string(),
        created_at: now,
        state: "pending".into(),
        ran_at: None,
        change_id: None,
        error: None,
    };
    state.store.insert_flag_schedule(&schedule).await?;
    Ok((StatusCode::CREATED, axum::Json(ScheduleView::of(&schedule))))
}

/// A flag's schedules, soonest first.
#[utoipa::path(
    get,
    path = "/api/v1/flags/{service}/{name}/schedules",
    tag = "flags",
    params(("service" = String, Path), ("name" = String, Path)),
    responses((status = 200, body = Vec<ScheduleView>), (status = 400, body = ErrorBody), (status = 404, body = ErrorBody)),
    security(("bearer" = [])),
    extensions(("x-gantry-scope" = json!("read|flags"))),
)]
pub async fn list_schedules(
    State(state): State<AppState>,
    caller: Caller,
    Path((service, name)): Path<(String, String)>,
) -> ApiResult<axum::Json<Vec<ScheduleView>>> {
    gantry_core::names::validate_name("service", &service)?;
    gantry_flags::validate::validate_flag_name(&name)?;
    require_read(&caller, &service)?;
    ops::read_flag(state.store.as_ref(), &service, &name).await?;
    let schedules = state
        .store
        .list_flag_schedules(&service, Some(&name))
        .await?;
    Ok(axum::Json(schedules.iter().map(ScheduleView::of).collect()))
}

/// Cancel a pending schedule.
#[utoipa::path(
    delete,
    path = "/api/v1/flags/{service}/{name}/schedules/{id}",
    tag = "flags",
    params(("service" = String, Path), ("name" = String, Path), ("id" = String, Path)),
    responses((status = 204), (status = 404, body = ErrorBody), (status = 409, body = ErrorBody)),
    security(("bearer" = [])),
    extensions(("x-gantry-scope" = json!("flags"))),
)]
pub async fn cancel_schedule(
    State(state): State<AppState>,
    caller: Caller,
    Path((service, name, id)): Path<(String, String, String)>,
) -> ApiResult<StatusCode> {
    let id: ulid::Ulid = id
        .parse()
        .map_err(|_| ApiError::invalid(format!("'{id}' is not a schedule id")))?;
    let schedule = state
        .store
        .get_flag_schedule(id)
        .await?
        .filter(|s| s.service == service && s.name == name)
        .ok_or_else(|| {
            ApiError::not_found(format!("flag '{service}/{name}' has no schedule {id}"))
        })?;
    caller.require(
        ScopeName::Flags,
        Some(&service),
        Some(&schedule.environment),
    )?;
    if !state
        .store
        .finish_flag_schedule(id, "cancelled", Utc::now(), None, None)
        .await?
    {
        return Err(ApiError::new(
            StatusCode::CONFLICT,
            "conflict",
            format!("schedule {id} is {} already", schedule.state),
        ));
    }
    Ok(StatusCode::NO_CONTENT)
}

/// A segment: named constraints a service's flags share.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct SegmentView {
    pub id: i64,
    pub service: String,
    pub name: String,
    pub description: Option<String>,
    #[schema(value_type = Vec<Object>)]
    pub constraints: Vec<Constraint>,
    pub version: i64,
    pub updated_at: DateTime<Utc>,
    pub updated_by: String,
}

impl SegmentView {
    fn of(s: &SegmentRecord) -> SegmentView {
        SegmentView {
            id: s.id,
            service: s.service.clone(),
            name: s.name.clone(),
            description: s.description.clone(),
            constraints: serde_json::from_str(&s.constraints).unwrap_or_default(),
            version: s.version,
            updated_at: s.updated_at,
            updated_by: s.updated_by.clone(),
        }
    }
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct SegmentBody {
    /// Only when creating (`POST`), where it is required; a `PUT` names the segment in its
    /// path and does not read this.
    pub name: Option<String>,
    pub description: Option<String>,
    #[schema(value_type = Vec<Object>)]
    pub constraints: Vec<Constraint>,
}

fn segment_record(
    service: &str,
    name: &str,
    body: &SegmentBody,
    actor: &str,
) -> ApiResult<SegmentRecord> {
    gantry_flags::validate::validate_segment(&gantry_flags::model::Segment {
        id: 0,
        name: Some(name.to_string()),
        description: body.description.clone(),
        constraints: body.constraints.clone(),
    })?;
    Ok(SegmentRecord {
        id: 0,
        service: service.to_string(),
        name: name.to_string(),
        description: body.description.clone(),
        constraints: serde_json::to_string(&body.constraints).map_err(|_| ApiError::internal())?,
        version: 0,
        updated_at: Utc::now(),
        updated_by: actor.to_string(),
    })
}

/// Create a segment of a service.
#[utoipa::path(
    post,
    path = "/api/v1/services/{service}/segments",
    tag = "flags",
    params(("service" = String, Path)),
    request_body = SegmentBody,
    responses((status = 201, body = SegmentView), (status = 400, body = ErrorBody), (status = 409, body = ErrorBody)),
    security(("bearer" = [])),
    extensions(("x-gantry-scope" = json!("flags"))),
)]
pub async fn create_segment(
    State(state): State<AppState>,
    caller: Caller,
    Path(service): Path<String>,
    Json(body): Json<SegmentBody>,
) -> ApiResult<Response> {
    caller.require(ScopeName::Flags, Some(&service), None)?;
    let name = body
        .name
        .clone()
        .ok_or_else(|| ApiError::invalid("name: a new segment needs a name"))?;
    gantry_flags::validate::validate_flag_name(&name)?;
    let record = segment_record(&service, &name, &body, caller.name())?;
    let stored = state.store.put_segment(&record, None).await?;
    state.flag_sets.invalidate(&service);
    Ok(with_etag(
        StatusCode::CREATED,
        stored.version,
        SegmentView::of(&stored),
    ))
}

/// A service's segments.
#[utoipa::path(
    get,
    path = "/api/v1/services/{service}/segments",
    tag = "flags",
    params(("service" = String, Path)),
    responses((status = 200, body = Vec<SegmentView>), (status = 400, body = ErrorBody)),
    security(("bearer" = [])),
    extensions(("x-gantry-scope" = json!("read|flags"))),
)]
pub async fn list_segments(
    State(state): State<AppState>,
    caller: Caller,
    Path(service): Path<String>,
) -> ApiResult<axum::Json<Vec<SegmentView>>> {
    gantry_core::names::validate_name("service", &service)?;
    require_read(&caller, &service)?;
    let segments = state.store.list_segments(&service).await?;
    Ok(axum::Json(segments.iter().map(SegmentView::of).collect()))
}

/// Replace a segment's constraints (needs `If-Match`).
#[utoipa::path(
    put,
    path = "/api/v1/services/{service}/segments/{name}",
    tag = "flags",
    params(("service" = String, Path), ("name" = String, Path), ("If-Match" = Option<String>, Header)),
    request_body = SegmentBody,
    responses((status = 200, body = SegmentView), (status = 400, body = ErrorBody), (status = 412, body = ErrorBody)),
    security(("bearer" = [])),
    extensions(("x-gantry-scope" = json!("flags"))),
)]
pub async fn put_segment(
    State(state): State<AppState>,
    caller: Caller,
    headers: HeaderMap,
    Path((service, name)): Path<(String, String)>,
    Json(body): Json<SegmentBody>,
) -> ApiResult<Response> {
    caller.require(ScopeName::Flags, Some(&service), None)?;
    let expected = match if_match(&headers)? {
        Some(v) => v,
        None => state
            .store
            .list_segments(&service)
            .await?
            .into_iter()
            .find(|s| s.name == name)
            .map(|s| s.version)
            .ok_or_else(|| {
                ApiError::not_found(format!("service '{service}' has no segment named '{name}'"))
            })?,
    };
    let record = segment_record(&service, &name, &body, caller.name())?;
    let stored = state.store.put_segment(&record, Some(expected)).await?;
    state.flag_sets.invalidate(&service);
    Ok(with_etag(
        StatusCode::OK,
        stored.version,
        SegmentView::of(&stored),
    ))
}

/// Delete a segment no flag uses.
#[utoipa::path(
    delete,
    path = "/api/v1/services/{service}/segments/{name}",
    tag = "flags",
    params(("service" = String, Path), ("name" = String, Path)),
    responses((status = 204), (status = 404, body = ErrorBody), (status = 409, body = ErrorBody)),
    security(("bearer" = [])),
    extensions(("x-gantry-scope" = json!("flags"))),
)]
pub async fn delete_segment(
    State(state): State<AppState>,
    caller: Caller,
    Path((service, name)): Path<(String, String)>,
) -> ApiResult<StatusCode> {
    caller.require(ScopeName::Flags, Some(&service), None)?;
    state.store.delete_segment(&service, &name).await?;
    state.flag_sets.invalidate(&service);
    Ok(StatusCode::NO_CONTENT)
}

#[derive(Debug, Default, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct StaleParams {
    /// Only this service's flags.
    service: Option<String>,
    /// The window, in days (default 30): fully on or off, or not evaluated, for longer.
    days: Option<u32>,
}

/// A flag that should be cleaned up, with every reason.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct StaleFlag {
    pub service: String,
    pub name: String,
    #[serde(rename = "type")]
    pub flag_type: String,
    pub owner: Option<String>,
    pub reasons: Vec<String>,
}

/// Flag debt: flags past their expected lifetime, fully on or off everywhere for long, or
/// evaluated by no SDK within the window.
#[utoipa::path(
    get,
    path = "/api/v1/flags/stale",
    tag = "flags",
    params(StaleParams),
    responses((status = 200, body = Vec<StaleFlag>)),
    security(("bearer" = [])),
    extensions(("x-gantry-scope" = json!("read|flags"))),
)]
pub async fn stale_flags(
    State(state): State<AppState>,
    caller: Caller,
    Query(params): Query<StaleParams>,
) -> ApiResult<axum::Json<Vec<StaleFlag>>> {
    if let Some(service) = &params.service {
        require_read(&caller, service)?;
    } else if !caller.0.holds_somewhere(ScopeName::Read)
        && !caller.0.holds_somewhere(ScopeName::Flags)
    {
        return Err(ApiError::forbidden(format!(
            "token '{}' lacks the scope read or flags needed to list stale flags",
            caller.name()
        )));
    }
    let days = params.days.unwrap_or(30);
    if days == 0 || days > 3650 {
        return Err(ApiError::invalid("days: a window of 1 to 3650 days"));
    }
    let now = Utc::now();
    let flags = state
        .store
        .list_flags(params.service.as_deref(), Some(false))
        .await?;
    let mut services: Vec<&str> = flags.iter().map(|f| f.service.as_str()).collect();
    services.dedup();
    let since = now - chrono::TimeDelta::days(i64::from(days));
    let mut last_used: std::collections::HashMap<(String, String), DateTime<Utc>> =
        std::collections::HashMap::new();
    for service in services {
        if require_read(&caller, service).is_err() {
            continue;
        }
        for usage in state.store.flag_usage_since(service, since).await? {
            let slot = last_used
                .entry((usage.service.clone(), usage.name.clone()))
                .or_insert(usage.hour);
            *slot = (*slot).max(usage.hour);
        }
    }
    let mut out = Vec::new();
    for flag in flags
        .iter()
        .filter(|f| require_read(&caller, &f.service).is_ok())
    {
        let environments = flag
            .environments
            .iter()
            .filter_map(|(env, e)| {
                let definition: EnvironmentDefinition = serde_json::from_str(&e.definition).ok()?;
                Some((env.as_str(), definition, e.updated_at))
            })
            .collect();
        let facts = gantry_flags::debt::FlagFacts {
            name: &flag.name,
            flag_type: &flag.flag_type,
            created_at: flag.created_at,
            environments,
            last_evaluated: last_used
                .get(&(flag.service.clone(), flag.name.clone()))
                .copied(),
        };
        let reasons = gantry_flags::debt::stale_reasons(&facts, now, days);
        if !reasons.is_empty() {
            out.push(StaleFlag {
                service: flag.service.clone(),
                name: flag.name.clone(),
                flag_type: flag.flag_type.clone(),
                owner: flag.owner.clone(),
                reasons,
            });
        }
    }
    Ok(axum::Json(out))
}
