//! Silences (one span of time) and maintenance windows (weekly): what holds an alert's
//! notifications. Alerts still change state and are recorded, gates and incidents still
//! act; only notifications wait (`gantry_monitors::silence`). This module holds the rules
//! the API and the evaluator share: creating, listing and expiring them, which services a
//! matcher reaches (for scope checks), and the holds in force now.

use std::collections::HashMap;
use std::time::Duration;

use chrono::{DateTime, NaiveTime, Utc, Weekday};
use gantry_monitors::{MaintenanceWindow, Matcher, Silence};
use gantry_store::{SilenceRecord, Store};
use serde::{Deserialize, Serialize};
use ulid::Ulid;
use utoipa::ToSchema;

use crate::error::ApiError;
use crate::monitors::evaluate::HOST_PREFIX;
use crate::state::AppState;

const SILENCE: &str = "silence";
const MAINTENANCE: &str = "maintenance";

/// The body of `POST /api/v1/silences`.
#[derive(Debug, Clone, Deserialize, Serialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct NewSilence {
    /// `{"monitor": {"name": …}}`, `{"service": {"service": …, "environment": …|null}}` or
    /// `{"label": {"key": …, "value": …}}`.
    #[schema(value_type = Object)]
    pub matcher: Matcher,
    /// When it begins; now when absent.
    pub starts_at: Option<DateTime<Utc>>,
    /// When it ends; must be in the future.
    pub ends_at: DateTime<Utc>,
    pub reason: String,
}

/// The body of `POST /api/v1/maintenance-windows`.
#[derive(Debug, Clone, Deserialize, Serialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct NewWindow {
    #[schema(value_type = Object)]
    pub matcher: Matcher,
    /// Days it opens on: `Mon` … `Sun` (or the full names).
    pub weekdays: Vec<String>,
    /// When it opens, `HH:MM` in UTC.
    pub start: String,
    /// How long it stays open, in seconds (up to a week).
    pub duration_secs: u64,
    pub reason: String,
}

/// A silence or maintenance window as the API shows it.
#[derive(Debug, Clone, Deserialize, Serialize, ToSchema)]
pub struct SilenceView {
    pub id: String,
    /// `silence` or `maintenance`.
    pub kind: String,
    #[schema(value_type = Object)]
    pub matcher: Matcher,
    /// A silence's span.
    pub starts_at: Option<DateTime<Utc>>,
    pub ends_at: Option<DateTime<Utc>>,
    /// A window's days, opening time (`HH:MM`, UTC) and length.
    pub weekdays: Option<Vec<String>>,
    pub start: Option<String>,
    pub duration_secs: Option<u64>,
    pub reason: String,
    pub created_by: String,
    pub created_at: DateTime<Utc>,
    pub expired_at: Option<DateTime<Utc>>,
    pub expired_by: Option<String>,
    /// Holding alerts at the time of the answer.
    pub active: bool,
}

/// What a matcher's alerts belong to, for scope checks.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Reach {
    /// A service, in one environment or all.
    Service(String, Option<String>),
    /// A host's liveness, in its environment.
    Environment(String),
    /// Labels may match any monitor: admin's business.
    Everything,
}

/// Holds in force at a moment, parsed.
#[derive(Debug, Default)]
pub struct Holds {
    pub silences: Vec<Silence>,
    pub windows: Vec<MaintenanceWindow>,
}

enum Parsed {
    Silence(Silence),
    Window(MaintenanceWindow),
}

fn parse(record: &SilenceRecord) -> Result<Parsed, String> {
    match record.kind.as_str() {
        SILENCE => serde_json::from_str(&record.doc)
            .map(Parsed::Silence)
            .map_err(|e| e.to_string()),
        MAINTENANCE => serde_json::from_str(&record.doc)
            .map(Parsed::Window)
            .map_err(|e| e.to_string()),
        other => Err(format!("unknown kind '{other}'")),
    }
}

/// The silences and windows not expired by hand and not ended; an unreadable record is
/// logged and left out (it holds nothing rather than stopping every notification).
pub async fn in_force(store: &dyn Store, now: DateTime<Utc>) -> Result<Holds, ApiError> {
    let mut holds = Holds::default();
    for record in store.list_silences(Some(now)).await? {
        match parse(&record) {
            Ok(Parsed::Silence(s)) => holds.silences.push(s),
            Ok(Parsed::Window(w)) => holds.windows.push(w),
            Err(e) => {
                tracing::error!(id = %record.id, error = %e, "notify: a stored silence cannot be read; it holds nothing")
            }
        }
    }
    Ok(holds)
}

fn view(record: &SilenceRecord, now: DateTime<Utc>) -> Result<SilenceView, ApiError> {
    let parsed = parse(record).map_err(|e| {
        tracing::error!(id = %record.id, error = %e, "a stored silence cannot be read");
        ApiError::internal()
    })?;
    let expired = record.expired_at.is_some_and(|t| t <= now);
    let mut v = SilenceView {
        id: record.id.to_string(),
        kind: record.kind.clone(),
        matcher: Matcher::Monitor {
            name: String::new(),
        },
        starts_at: None,
        ends_at: None,
        weekdays: None,
        start: None,
        duration_secs: None,
        reason: String::new(),
        created_by: record.created_by.clone(),
        created_at: record.created_at,
        expired_at: record.expired_at,
        expired_by: record.expired_by.clone(),
        active: false,
    };
    match parsed {
        Parsed::Silence(s) => {
            v.active = !expired && s.is_active(now);
            v.starts_at = Some(s.starts_at.unwrap_or(record.created_at));
            v.ends_at = Some(s.ends_at);
            v.matcher = s.matcher;
            v.reason = s.reason;
        }
        Parsed::Window(w) => {
            v.active = !expired && w.is_active(now);
            v.weekdays = Some(w.weekdays.iter().map(|d| d.to_string()).collect());
            v.start = Some(w.start.format("%H:%M").to_string());
            v.duration_secs = Some(w.duration.as_secs());
            v.matcher = w.matcher;
            v.reason = w.reason;
        }
    }
    Ok(v)
}

/// Which services (and environments) a matcher's alerts belong to. A monitor matcher must
/// name a monitor that exists (or a host's liveness, `host:NAME`).
pub async fn reach(state: &AppState, matcher: &Matcher) -> Result<Reach, ApiError> {
    match matcher {
        Matcher::Service {
            service,
            environment,
        } => Ok(Reach::Service(service.clone(), environment.clone())),
        Matcher::Label { .. } => Ok(Reach::Everything),
        Matcher::Monitor { name } => {
            if let Some(host) = name.strip_prefix(HOST_PREFIX) {
                let hosts = state.store.list_hosts(None).await?;
                return hosts
                    .into_iter()
                    .find(|h| h.name == host)
                    .map(|h| Reach::Environment(h.environment))
                    .ok_or_else(|| ApiError::not_found(format!("no host named '{host}'")));
            }
            let monitors = crate::monitors::all(state.store.as_ref()).await?;
            monitors
                .into_iter()
                .find(|m| m.name == *name)
                .map(|m| Reach::Service(m.service, Some(m.environment)))
                .ok_or_else(|| {
                    ApiError::not_found(format!(
                        "no monitor named '{name}' (`gantry monitor list` shows them)"
                    ))
                })
        }
    }
}

/// Stores a new silence after checking it.
pub async fn create_silence(
    state: &AppState,
    actor: &str,
    new: NewSilence,
    now: DateTime<Utc>,
) -> Result<SilenceView, ApiError> {
    let silence = Silence {
        matcher: new.matcher,
        starts_at: new.starts_at,
        ends_at: new.ends_at,
        reason: new.reason.trim().to_string(),
    };
    silence.validate(now)?;
    let record = SilenceRecord {
        id: Ulid::new(),
        kind: SILENCE.into(),
        doc: to_json(&silence)?,
        created_by: actor.to_string(),
        created_at: now,
        ends_at: Some(silence.ends_at),
        expired_at: None,
        expired_by: None,
    };
    state.store.insert_silence(&record).await?;
    view(&record, now)
}

/// Stores a new maintenance window after checking it.
pub async fn create_window(
    state: &AppState,
    actor: &str,
    new: NewWindow,
    now: DateTime<Utc>,
) -> Result<SilenceView, ApiError> {
    let weekdays = new
        .weekdays
        .iter()
        .map(|d| {
            d.parse::<Weekday>().map_err(|_| {
                ApiError::invalid(format!("weekdays: '{d}' is not a day (Mon, Tue, … Sun)"))
            })
        })
        .collect::<Result<Vec<_>, _>>()?;
    let start = NaiveTime::parse_from_str(&new.start, "%H:%M").map_err(|_| {
        ApiError::invalid(format!(
            "start '{}' is not a time of day as HH:MM (UTC), e.g. 23:00",
            new.start
        ))
    })?;
    let window = MaintenanceWindow {
        matcher: new.matcher,
        weekdays,
        start,
        duration: Duration::from_secs(new.duration_secs),
        reason: new.reason.trim().to_string(),
    };
    window.validate()?;
    let record = SilenceRecord {
        id: Ulid::new(),
        kind: MAINTENANCE.into(),
        doc: to_json(&window)?,
        created_by: actor.to_string(),
        created_at: now,
        ends_at: None,
        expired_at: None,
        expired_by: None,
    };
    state.store.insert_silence(&record).await?;
    view(&record, now)
}

fn to_json<T: Serialize>(value: &T) -> Result<String, ApiError> {
    serde_json::to_string(value).map_err(|e| {
        tracing::error!(error = %e, "cannot write a silence");
        ApiError::internal()
    })
}

/// Silences and windows, newest first: those in force or to come, or every one with
/// `all`. Each with its reach, for the caller to filter by scope.
pub async fn list(
    state: &AppState,
    all: bool,
    now: DateTime<Utc>,
) -> Result<Vec<(SilenceView, Reach)>, ApiError> {
    let records = state
        .store
        .list_silences(if all { None } else { Some(now) })
        .await?;
    // Monitors' services once, not per silence.
    let monitors: HashMap<String, (String, String)> = crate::monitors::all(state.store.as_ref())
        .await?
        .into_iter()
        .map(|m| (m.name, (m.service, m.environment)))
        .collect();
    let mut out = Vec::with_capacity(records.len());
    for record in &records {
        let v = view(record, now)?;
        let reach = match &v.matcher {
            Matcher::Monitor { name } => match monitors.get(name) {
                Some((s, e)) => Reach::Service(s.clone(), Some(e.clone())),
                // A monitor since removed, or a host: only admins see it.
                None => Reach::Everything,
            },
            m => reach(state, m).await?,
        };
        out.push((v, reach));
    }
    Ok(out)
}

/// A silence or window by id, with its reach.
pub async fn get(
    state: &AppState,
    id: Ulid,
    now: DateTime<Utc>,
) -> Result<(SilenceView, Reach), ApiError> {
    let record = state
        .store
        .list_silences(None)
        .await?
        .into_iter()
        .find(|r| r.id == id)
        .ok_or_else(|| ApiError::not_found(format!("no silence or maintenance window {id}")))?;
    let v = view(&record, now)?;
    let reach = reach(state, &v.matcher).await.unwrap_or(Reach::Everything);
    Ok((v, reach))
}

/// Ends a silence or window now. Expiring one already expired changes nothing.
pub async fn expire(
    state: &AppState,
    actor: &str,
    id: Ulid,
    now: DateTime<Utc>,
) -> Result<SilenceView, ApiError> {
    let record = state
        .store
        .expire_silence(id, actor, now)
        .await?
        .ok_or_else(|| ApiError::not_found(format!("no silence or maintenance window {id}")))?;
    view(&record, now)
}
