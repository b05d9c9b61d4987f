//! Scheduled flag changes: each runs once, on whichever server holds the lease
//! `flag-schedules`, as a change whose actor is `<token name> (scheduled)`. One that came
//! due while no server ran runs at the next start and its change says how late; one whose
//! flag was archived (or whose edit no longer applies) is recorded `failed`.

use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, Utc};
use gantry_flags::edit::Edit;
use gantry_store::Store;
use tokio_util::sync::CancellationToken;

use super::ops::{self, Actor, EnvChange};
use super::FlagSets;
use crate::error::ApiError;

const LEASE: &str = "flag-schedules";
const LEASE_TTL: Duration = Duration::from_secs(30);
const TICK: Duration = Duration::from_secs(1);
/// A schedule this late (or later) says so in its change.
const LATE: chrono::TimeDelta = chrono::TimeDelta::seconds(5);

/// When a schedule runs: RFC 3339, or `+DURATION` from now. Refuses a time in the past.
pub fn parse_at(text: &str, now: DateTime<Utc>) -> Result<DateTime<Utc>, ApiError> {
    let at = match text.trim().strip_prefix('+') {
        Some(duration) => {
            let d = gantry_core::time::parse_duration("at", duration)?;
            now + chrono::Duration::from_std(d)
                .map_err(|_| ApiError::invalid(format!("at: '{text}' is too far away")))?
        }
        None => DateTime::parse_from_rfc3339(text.trim())
            .map_err(|e| {
                ApiError::invalid(format!(
                    "at: '{text}' is neither RFC 3339 (2026-12-24T18:00:00Z) nor +DURATION (+2h): {e}"
                ))
            })?
            .with_timezone(&Utc),
    };
    if at <= now {
        return Err(ApiError::invalid(format!(
            "at: {} is in the past; schedule a time to come",
            at.to_rfc3339()
        )));
    }
    Ok(at)
}

/// Runs due schedules while this server holds the lease, until shutdown.
pub async fn run(
    store: Arc<dyn Store>,
    sets: Arc<FlagSets>,
    holder: String,
    shutdown: CancellationToken,
) {
    loop {
        if let Err(e) = tick(store.as_ref(), &sets, &holder).await {
            tracing::warn!(error = %e.message, "flag schedules: tick failed");
        }
        tokio::select! {
            _ = shutdown.cancelled() => {
                let _ = store.release_lease(LEASE, &holder).await;
                return;
            }
            _ = tokio::time::sleep(TICK) => {}
        }
    }
}

async fn tick(store: &dyn Store, sets: &FlagSets, holder: &str) -> Result<(), ApiError> {
    let now = Utc::now();
    let due = store.due_flag_schedules(now, 50).await?;
    if due.is_empty()
        || !store
            .try_acquire_lease(LEASE, holder, LEASE_TTL, now)
            .await?
    {
        return Ok(());
    }
    for schedule in due {
        let actor_name = format!("{} (scheduled)", schedule.created_by);
        let late = now - schedule.run_at;
        let note = (late >= LATE).then(|| {
            format!(
                "scheduled for {}, ran {} s late (no server was running)",
                schedule.run_at.to_rfc3339(),
                late.num_seconds()
            )
        });
        let actor = Actor {
            name: &actor_name,
            if_match: None,
            note,
        };
        let outcome = match serde_json::from_str::<Edit>(&schedule.action) {
            Ok(edit) => ops::change_environment(
                store,
                sets,
                &schedule.service,
                &schedule.name,
                &schedule.environment,
                &EnvChange::Edit(edit),
                &actor,
            )
            .await
            .map(|(_, change)| change),
            Err(e) => Err(ApiError::invalid(format!(
                "the stored action cannot be read: {e}"
            ))),
        };
        match outcome {
            Ok(change) => {
                store
                    .finish_flag_schedule(schedule.id, "done", now, Some(change), None)
                    .await?;
            }
            Err(e) if e.status.is_server_error() => return Err(e),
            Err(e) => {
                // Recorded in the log too, so a schedule that did nothing is visible there.
                let summary = format!(
                    "{}: scheduled change in {} failed: {}",
                    schedule.name, schedule.environment, e.message
                );
                let mut change = ops::flag_change(
                    &schedule.service,
                    Some(&schedule.environment),
                    &actor,
                    summary.chars().take(500).collect(),
                    serde_json::json!({"flag": schedule.name, "schedule": schedule.id.to_string()}),
                    now,
                );
                change.status = gantry_core::ChangeStatus::Failed;
                let id = store.insert_change(&change).await.ok().map(|_| change.id);
                store
                    .finish_flag_schedule(schedule.id, "failed", now, id, Some(&e.message))
                    .await?;
            }
        }
    }
    Ok(())
}
