//! What changing a flag means, once for every caller (the REST API, schedules, later an
//! incident's flag-off): read, check, apply the pure edit, validate, write with the version
//! read (optimistic concurrency), record the change in the same transaction, and tell this
//! server's flag sets.

use chrono::{DateTime, Utc};
use gantry_core::{Change, ChangeKind, ChangeStatus, Grant, ScopeName};
use gantry_flags::edit::{self, Edit};
use gantry_flags::model::{EnvironmentDefinition, Segment};
use gantry_store::{FlagRecord, FlagWrite, Store, StoreError};
use ulid::Ulid;

use super::FlagSets;
use crate::error::ApiError;
use crate::state::AppState;

/// Largest definition of one flag in one environment, in bytes of JSON: with its previous
/// version it fits in one change's metadata.
pub const MAX_DEFINITION_BYTES: usize = 24 * 1024;

/// How many times a write without `If-Match` is retried when another write came first.
const RETRIES: usize = 3;

/// A change of one environment's definition.
pub enum EnvChange {
    /// The whole definition, as `PUT …/environments/{env}` sends it.
    Replace(EnvironmentDefinition),
    /// An edit of the definition stored.
    Edit(Edit),
}

/// Who asks, and how.
pub struct Actor<'a> {
    /// The token's name (with ` (scheduled)` for a schedule).
    pub name: &'a str,
    /// The version the caller read (`If-Match`); `None` retries on a concurrent write.
    pub if_match: Option<i64>,
    /// Said in the change's description (e.g. how late a schedule ran).
    pub note: Option<String>,
}

/// Whether `grant` may read the flags of `service`: `read` or `flags` (or `admin`) covering
/// the service, in any environment.
pub fn may_read(grant: &Grant, service: &str) -> bool {
    grant.scopes.iter().any(|s| {
        matches!(
            s.name,
            ScopeName::Read | ScopeName::Flags | ScopeName::Admin
        ) && s.service.as_deref().is_none_or(|n| n == service)
    })
}

/// Refuses with 403 unless `grant` may read the flags of `service` ([`may_read`]).
pub fn require_read(grant: &Grant, service: &str) -> Result<(), ApiError> {
    if may_read(grant, service) {
        Ok(())
    } else {
        Err(ApiError::forbidden(format!(
            "token '{}' lacks the scope read:{service} or flags:{service} needed to read its flags",
            grant.token_name
        )))
    }
}

/// The definition stored for `environment`, if any.
pub fn definition_of(
    flag: &FlagRecord,
    environment: &str,
) -> Result<Option<EnvironmentDefinition>, ApiError> {
    flag.environments
        .get(environment)
        .map(|e| {
            serde_json::from_str(&e.definition).map_err(|err| {
                tracing::error!(service = %flag.service, flag = %flag.name, environment, error = %err,
                    "a stored flag definition cannot be read");
                ApiError::internal()
            })
        })
        .transpose()
}

/// Reads a flag or answers 404 naming it.
pub async fn read_flag(
    store: &dyn Store,
    service: &str,
    name: &str,
) -> Result<FlagRecord, ApiError> {
    store.get_flag(service, name).await?.ok_or_else(|| {
        ApiError::not_found(format!("service '{service}' has no flag named '{name}'"))
    })
}

/// Changes one environment's definition of a flag and records the change. Returns the
/// flag as stored and the change's id.
pub async fn change_environment(
    store: &dyn Store,
    sets: &FlagSets,
    service: &str,
    name: &str,
    environment: &str,
    change: &EnvChange,
    actor: &Actor<'_>,
) -> Result<(FlagRecord, Ulid), ApiError> {
    write_environment(store, sets, service, name, environment, change, actor, None).await
}

/// [`change_environment`] for a person who came another way than the API: `via`
/// (`dashboard`) is recorded in the change's metadata.
pub async fn change_environment_via(
    state: &AppState,
    service: &str,
    name: &str,
    environment: &str,
    change: &EnvChange,
    actor: &Actor<'_>,
    via: &str,
) -> Result<(FlagRecord, Ulid), ApiError> {
    write_environment(
        state.store.as_ref(),
        &state.flag_sets,
        service,
        name,
        environment,
        change,
        actor,
        Some(via),
    )
    .await
}

#[allow(clippy::too_many_arguments)]
async fn write_environment(
    store: &dyn Store,
    sets: &FlagSets,
    service: &str,
    name: &str,
    environment: &str,
    change: &EnvChange,
    actor: &Actor<'_>,
    via: Option<&str>,
) -> Result<(FlagRecord, Ulid), ApiError> {
    gantry_core::names::validate_name("environment", environment)?;
    let registered = store
        .get_service(service)
        .await?
        .ok_or_else(|| ApiError::not_found(format!("no service named '{service}'")))?;
    if !registered.environments.is_empty()
        && !registered.environments.iter().any(|e| e == environment)
    {
        return Err(ApiError::not_found(format!(
            "environment '{environment}' is not in service '{service}''s pipeline ({})",
            registered.environments.join(", ")
        )));
    }
    let mut attempt = 0;
    loop {
        attempt += 1;
        let flag = read_flag(store, service, name).await?;
        if flag.archived_at.is_some() {
            return Err(ApiError::new(
                axum::http::StatusCode::CONFLICT,
                "conflict",
                format!("flag '{service}/{name}' is archived; restore it first"),
            ));
        }
        let expected = match actor.if_match {
            Some(version) if version != flag.version => {
                return Err(StoreError::Stale(format!(
                    "flag '{service}/{name}' changed since it was read (version {version}, now {}); read it again and retry",
                    flag.version
                ))
                .into())
            }
            Some(version) => version,
            None => flag.version,
        };
        let old = definition_of(&flag, environment)?;
        let new = match change {
            EnvChange::Replace(definition) => definition.clone(),
            EnvChange::Edit(e) => edit::apply(&old.clone().unwrap_or_default(), e)?,
        };
        check_definition(store, service, name, &new).await?;
        let text = serde_json::to_string(&new).map_err(|_| ApiError::internal())?;
        if text.len() > MAX_DEFINITION_BYTES {
            return Err(ApiError::invalid(format!(
                "the definition is {} bytes of JSON; the limit is {MAX_DEFINITION_BYTES} per environment (use segments for long lists)",
                text.len()
            )));
        }
        let now = Utc::now();
        let mut metadata = serde_json::json!({
            "flag": name,
            "before": old,
            "after": new,
        });
        if let (Some(via), Some(map)) = (via, metadata.as_object_mut()) {
            map.insert("via".into(), via.into());
        }
        let record = flag_change(
            service,
            Some(environment),
            actor,
            edit::summary(name, environment, old.as_ref(), &new),
            metadata,
            now,
        );
        let write = FlagWrite::Environment {
            environment: environment.to_string(),
            definition: text,
        };
        match store
            .write_flag(
                service,
                name,
                expected,
                &write,
                actor.name,
                now,
                Some(&record),
            )
            .await
        {
            Ok(flag) => {
                sets.invalidate(service);
                return Ok((flag, record.id));
            }
            Err(StoreError::Stale(_)) if actor.if_match.is_none() && attempt < RETRIES => continue,
            Err(e) => return Err(e.into()),
        }
    }
}

/// A change of kind `flag` made now.
pub fn flag_change(
    service: &str,
    environment: Option<&str>,
    actor: &Actor<'_>,
    summary: String,
    metadata: serde_json::Value,
    now: DateTime<Utc>,
) -> Change {
    let metadata = match metadata {
        serde_json::Value::Object(map) => map,
        _ => serde_json::Map::new(),
    };
    Change {
        id: Ulid::new(),
        kind: ChangeKind::Flag,
        service: Some(service.to_string()),
        environment: environment.map(str::to_string),
        actor: actor.name.to_string(),
        summary,
        description: actor.note.clone(),
        status: ChangeStatus::Succeeded,
        started_at: now,
        finished_at: Some(now),
        size: None,
        commit_range: None,
        links: Vec::new(),
        metadata,
        history: None,
    }
}

/// The rules a definition must meet before it is written: the engine's own (operators,
/// regexes, weights, segments it names) and the ones that need the service's other flags
/// (a dependency names a flag of the same service that has no parent itself).
async fn check_definition(
    store: &dyn Store,
    service: &str,
    name: &str,
    definition: &EnvironmentDefinition,
) -> Result<(), ApiError> {
    let segments: Vec<Segment> = store
        .list_segments(service)
        .await?
        .into_iter()
        .filter_map(|s| {
            Some(Segment {
                id: s.id,
                name: Some(s.name),
                description: None,
                constraints: serde_json::from_str(&s.constraints).ok()?,
            })
        })
        .collect();
    gantry_flags::validate::validate_definition(definition, &segments)?;
    if definition.dependencies.is_empty() {
        return Ok(());
    }
    let flags = store.list_flags(Some(service), None).await?;
    for (i, dependency) in definition.dependencies.iter().enumerate() {
        if dependency.feature == name {
            return Err(ApiError::invalid(format!(
                "dependencies[{i}].feature: a flag cannot depend on itself"
            )));
        }
        let Some(parent) = flags.iter().find(|f| f.name == dependency.feature) else {
            return Err(ApiError::invalid(format!(
                "dependencies[{i}].feature: service '{service}' has no flag named '{}' (a flag can only depend on a flag of its own service)",
                dependency.feature
            )));
        };
        let parent_has_parent = parent.environments.values().any(|e| {
            serde_json::from_str::<EnvironmentDefinition>(&e.definition)
                .is_ok_and(|d| !d.dependencies.is_empty())
        });
        if parent_has_parent {
            return Err(ApiError::invalid(format!(
                "dependencies[{i}].feature: flag '{}' depends on another flag itself; a parent cannot have a parent",
                dependency.feature
            )));
        }
    }
    Ok(())
}
