//! Evaluations this server made (OFREP, the frontend API), counted in memory per flag,
//! environment and hour and written at most once a minute, so counting costs evaluation
//! nothing but a map update. SDKs that evaluate locally report their own counts.

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use chrono::{DateTime, DurationRound, TimeDelta, Utc};
use gantry_store::{FlagUsage, Store};
use tokio_util::sync::CancellationToken;

/// How often counts are written.
pub const FLUSH_INTERVAL: Duration = Duration::from_secs(60);

/// How long usage is kept.
pub const RETENTION_DAYS: i64 = 90;

type Key = (String, String, String, DateTime<Utc>);

#[derive(Default)]
struct Counts {
    yes: i64,
    no: i64,
    variants: BTreeMap<String, i64>,
}

/// Per environment: the evaluations of flag `name` of `service` in the last
/// [`RETENTION_DAYS`] (what SDKs reported and servers counted) and the newest hour with one.
pub async fn of_flag(
    state: &crate::state::AppState,
    service: &str,
    name: &str,
) -> Result<Vec<FlagUsage>, gantry_store::StoreError> {
    let since = Utc::now() - TimeDelta::days(RETENTION_DAYS);
    let mut usage = state.store.flag_usage_since(service, since).await?;
    usage.retain(|u| u.name == name);
    Ok(usage)
}

#[derive(Default)]
pub struct Usage {
    pending: Mutex<HashMap<Key, Counts>>,
}

/// The start of the hour `at` is in.
pub fn hour_of(at: DateTime<Utc>) -> DateTime<Utc> {
    at.duration_trunc(TimeDelta::hours(1)).unwrap_or(at)
}

impl Usage {
    pub fn count(
        &self,
        service: &str,
        environment: &str,
        flag: &str,
        enabled: bool,
        variant: Option<&str>,
    ) {
        let Ok(mut pending) = self.pending.lock() else {
            return;
        };
        let key = (
            service.to_string(),
            environment.to_string(),
            flag.to_string(),
            hour_of(Utc::now()),
        );
        let counts = pending.entry(key).or_default();
        if enabled {
            counts.yes += 1;
        } else {
            counts.no += 1;
        }
        if let Some(variant) = variant {
            *counts.variants.entry(variant.to_string()).or_insert(0) += 1;
        }
    }

    fn take(&self) -> Vec<FlagUsage> {
        let Ok(mut pending) = self.pending.lock() else {
            return Vec::new();
        };
        pending
            .drain()
            .map(|((service, environment, name, hour), c)| FlagUsage {
                service,
                environment,
                name,
                hour,
                yes: c.yes,
                no: c.no,
                variants: c.variants,
            })
            .collect()
    }

    /// Writes what was counted; on failure the counts are kept for the next try.
    pub async fn flush(&self, store: &dyn Store) {
        let batch = self.take();
        if batch.is_empty() {
            return;
        }
        if let Err(e) = store.add_flag_usage(&batch).await {
            tracing::warn!(error = %e, rows = batch.len(), "cannot write flag usage; keeping it for the next try");
            if let Ok(mut pending) = self.pending.lock() {
                for u in batch {
                    let counts = pending
                        .entry((u.service, u.environment, u.name, u.hour))
                        .or_default();
                    counts.yes += u.yes;
                    counts.no += u.no;
                    for (variant, n) in u.variants {
                        *counts.variants.entry(variant).or_insert(0) += n;
                    }
                }
            }
        }
    }

    /// Writes counts every [`FLUSH_INTERVAL`]; prunes usage older than [`RETENTION_DAYS`]
    /// once an hour. At shutdown it stops without writing: the server writes the last counts
    /// itself, after serving and before it closes the store (a write from here could race
    /// the close and be lost).
    pub async fn run(self: Arc<Self>, store: Arc<dyn Store>, shutdown: CancellationToken) {
        let mut ticks = 0u64;
        loop {
            tokio::select! {
                _ = shutdown.cancelled() => return,
                _ = tokio::time::sleep(FLUSH_INTERVAL) => {}
            }
            self.flush(store.as_ref()).await;
            if ticks.is_multiple_of(60) {
                let before = Utc::now() - TimeDelta::days(RETENTION_DAYS);
                if let Err(e) = store.prune_flag_usage(before).await {
                    tracing::warn!(error = %e, "cannot prune old flag usage");
                }
            }
            ticks += 1;
        }
    }
}
