//! Monitors on the server: applying monitor files (a `config` change with the diff; new
//! heartbeats get a key, shown once and stored as a digest), heartbeat pings, and the
//! evaluator (`evaluate`) that runs the monitors in shards by service, each under its
//! lease. The rules are in `gantry-monitors`; the HTTP routes in `api/monitors.rs`.

pub mod evaluate;
pub mod logs;

use std::collections::{BTreeMap, BTreeSet};

use chrono::Utc;
use gantry_core::{ChangeKind, ChangeStatus};
use gantry_monitors::{diff, Check, DiffLine, Limits, Monitor, MonitorFile};
use gantry_store::Store;
use rand::RngCore;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use utoipa::ToSchema;

use crate::error::ApiError;
use crate::state::AppState;

/// The limits a monitor file is checked against: intervals no shorter than a StatsD flush.
pub fn limits(state: &AppState) -> Limits {
    Limits {
        flush_interval_secs: state.config.statsd.flush_interval_secs,
        ..Limits::default()
    }
}

/// Limits for reading back what was stored (it was checked when applied).
fn stored_limits() -> Limits {
    Limits {
        flush_interval_secs: 0.0,
        ..Limits::default()
    }
}

/// Every stored monitor file, parsed, by source.
pub async fn files(store: &dyn Store) -> Result<BTreeMap<String, MonitorFile>, ApiError> {
    let mut out = BTreeMap::new();
    for record in store.list_monitor_files().await? {
        match MonitorFile::parse(&record.text, &record.source, &stored_limits()) {
            Ok(file) => {
                out.insert(record.source, file);
            }
            Err(e) => {
                tracing::error!(source = %record.source, error = %e, "a stored monitor file cannot be read")
            }
        }
    }
    Ok(out)
}

/// Every monitor of every file.
pub async fn all(store: &dyn Store) -> Result<Vec<Monitor>, ApiError> {
    Ok(files(store)
        .await?
        .into_values()
        .flat_map(|f| f.monitors().to_vec())
        .collect())
}

/// Longest interval, window, period, grace or timeout of a monitor.
const MAX_DURATION: std::time::Duration = std::time::Duration::from_secs(30 * 86_400);

/// Every monitor's stored state (one document per monitor, under the series `""`), by name.
pub async fn stored_states(
    store: &dyn Store,
) -> Result<std::collections::HashMap<String, gantry_monitors::MonitorState>, ApiError> {
    Ok(store
        .monitor_states(None)
        .await?
        .into_iter()
        .filter(|r| r.series == evaluate::SINGLE)
        .filter_map(|r| serde_json::from_str(&r.doc).ok().map(|s| (r.monitor, s)))
        .collect())
}

/// What `apply` did (or, dry, would do).
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct Applied {
    /// `+ name`, `- name`, `~ name: key old → new`.
    pub diff: Vec<String>,
    /// The `config` change recorded; none when nothing changed or on a dry run.
    #[schema(value_type = Option<String>)]
    pub change_id: Option<ulid::Ulid>,
    /// New heartbeats' ping keys, shown this once: `[name, key]`.
    #[schema(value_type = Vec<Vec<String>>)]
    pub ping_keys: Vec<(String, String)>,
}

fn diff_text(lines: &[DiffLine]) -> Vec<String> {
    lines.iter().map(|l| l.to_string()).collect()
}

/// A new 256-bit ping key and its digest.
fn new_key() -> (String, String) {
    let mut bytes = [0u8; 32];
    rand::thread_rng().fill_bytes(&mut bytes);
    let key: String = bytes.iter().map(|b| format!("{b:02x}")).collect();
    let digest = key_digest(&key);
    (key, digest)
}

/// How a ping key is stored.
pub fn key_digest(key: &str) -> String {
    Sha256::digest(key.as_bytes())
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// Applies the monitor file `text` as `source` (replacing what that source held).
pub async fn apply(
    state: &AppState,
    actor: &str,
    source: &str,
    file_name: &str,
    text: &str,
    dry_run: bool,
) -> Result<Applied, ApiError> {
    gantry_core::names::validate_name("source", source)?;
    let file = MonitorFile::parse(text, file_name, &limits(state))
        .map_err(|e| ApiError::invalid(e.to_string()))?;
    // Durations past a month are a mistake, and would overflow the evaluator's clock.
    for m in file.monitors() {
        let longest = match &m.check {
            Check::Threshold(t) => t.interval.max(t.window),
            Check::Heartbeat(h) => h.period.max(h.grace).max(h.max_runtime.unwrap_or_default()),
            Check::Http(h) => h.interval.max(h.timeout),
        };
        if longest > MAX_DURATION {
            return Err(ApiError::invalid(format!(
                "{file_name}: monitor '{}': durations are at most 30 days",
                m.name
            )));
        }
    }
    let store = state.store.as_ref();
    let mut existing = files(store).await?;
    let old = existing
        .remove(source)
        .unwrap_or_else(|| MonitorFile::new(Vec::new()));
    // Names are unique across every file.
    let elsewhere: BTreeMap<&str, &str> = existing
        .iter()
        .flat_map(|(src, f)| {
            f.monitors()
                .iter()
                .map(move |m| (m.name.as_str(), src.as_str()))
        })
        .collect();
    for m in file.monitors() {
        if let Some(other) = elsewhere.get(m.name.as_str()) {
            // The file is well formed; it collides with what another file holds.
            return Err(ApiError::new(
                axum::http::StatusCode::CONFLICT,
                "conflict",
                format!(
                    "{file_name}: monitor '{}' is already defined by the monitor file '{other}'; names are unique across files",
                    m.name
                ),
            ));
        }
    }
    let changes = diff(&old, &file);
    let mut applied = Applied {
        diff: diff_text(&changes),
        change_id: None,
        ping_keys: Vec::new(),
    };
    if dry_run || changes.is_empty() {
        return Ok(applied);
    }
    let now = Utc::now();
    let canonical = file.to_toml();
    store
        .put_monitor_file(source, &canonical, actor, now)
        .await?;
    // Keys for heartbeats that have none.
    let keyed: BTreeSet<String> = store.heartbeat_monitors().await?.into_iter().collect();
    for m in file.monitors() {
        if matches!(m.check, Check::Heartbeat(_)) && !keyed.contains(&m.name) {
            let (key, digest) = new_key();
            store.put_heartbeat_key(&m.name, &digest, now).await?;
            applied.ping_keys.push((m.name.clone(), key));
        }
    }
    // What left every file is forgotten: keys, pings, states.
    let kept: BTreeSet<&str> = file.monitors().iter().map(|m| m.name.as_str()).collect();
    let gone: Vec<String> = old
        .monitors()
        .iter()
        .map(|m| m.name.clone())
        .filter(|n| !kept.contains(n.as_str()))
        .collect();
    if !gone.is_empty() {
        store.forget_monitors(&gone).await?;
    }
    let services: BTreeSet<&str> = file.monitors().iter().map(|m| m.service.as_str()).collect();
    let service = (services.len() == 1)
        .then(|| services.iter().next().map(|s| s.to_string()))
        .flatten();
    let new = gantry_core::NewChange {
        kind: Some(ChangeKind::Config.as_str().to_string()),
        service,
        summary: Some(format!(
            "monitors of {source} applied ({} changed)",
            changes.len()
        )),
        description: Some(applied.diff.join("\n").chars().take(60_000).collect()),
        status: Some(ChangeStatus::Succeeded),
        started_at: Some(now),
        finished_at: Some(now),
        metadata: Some(serde_json::json!({"monitors": source})),
        ..gantry_core::NewChange::default()
    };
    let valid = new.validate(now)?;
    let change = crate::api::changes::from_valid(valid, actor);
    store.insert_change(&change).await?;
    applied.change_id = Some(change.id);
    Ok(applied)
}

/// A new key for a heartbeat (the old one stops working at once).
pub async fn rotate_key(state: &AppState, name: &str) -> Result<String, ApiError> {
    let monitors = all(state.store.as_ref()).await?;
    let is_heartbeat = monitors
        .iter()
        .any(|m| m.name == name && matches!(m.check, Check::Heartbeat(_)));
    if !is_heartbeat {
        return Err(ApiError::not_found(format!(
            "no heartbeat monitor named '{name}'"
        )));
    }
    let (key, digest) = new_key();
    state
        .store
        .put_heartbeat_key(name, &digest, Utc::now())
        .await?;
    Ok(key)
}

/// Records a ping for the heartbeat whose key this is; `None` when no heartbeat has it.
pub async fn ping(
    store: &dyn Store,
    key: &str,
    kind: &str,
    exit_code: Option<i32>,
    body: &str,
) -> Result<Option<String>, ApiError> {
    let Some(monitor) = store.heartbeat_by_digest(&key_digest(key)).await? else {
        return Ok(None);
    };
    store
        .insert_ping(&gantry_store::NewPing {
            monitor: monitor.clone(),
            at: Utc::now(),
            kind: kind.to_string(),
            exit_code,
            body: body.to_string(),
        })
        .await?;
    Ok(Some(monitor))
}
