//! Notifications on the server: alerts grouped into notifications (`gantry-monitors`'
//! [`Grouper`], one per monitor shard, run by the evaluator under the shard's lease and
//! stored after every round so another server continues it), silences and maintenance windows that hold them
//! ([`silences`]), one delivery row per notification and receiver, and the worker every
//! server runs to send them ([`deliver`]) by webhook or e-mail ([`send`], [`message`]).
//! Receivers are the server's `[notify]` configuration ([`config`]).

pub mod config;
pub mod deliver;
pub mod message;
pub mod send;
pub mod silences;

use chrono::{DateTime, Utc};
use gantry_monitors::{in_maintenance, is_held, AlertSubject, Grouper, Transition};
use gantry_store::NewDelivery;
use ulid::Ulid;

use crate::error::ApiError;
use crate::state::AppState;

/// The name a shard's grouper is stored under.
fn state_name(shard: u32) -> String {
    format!("alerts/{shard}")
}

/// What the evaluator tells the grouper after a round.
#[derive(Debug, Clone)]
pub enum AlertEvent {
    /// A transition of a series (soft ones are ignored by the grouper).
    Transition(AlertSubject, Transition),
    /// A series started or stopped flapping.
    Flapping(AlertSubject, bool),
}

/// The grouper as the evaluator holds it: loaded from the store when this server takes
/// the lease, saved with the deliveries each round queues.
#[derive(Default)]
pub struct Grouping {
    grouper: Option<Grouper>,
    /// What was last stored, so an unchanged grouper is not written every second.
    saved: Option<String>,
}

impl Grouping {
    /// Forgets the grouper; the next round reads the stored one (after the lease was
    /// lost, or a write failed).
    pub fn reset(&mut self) {
        self.grouper = None;
        self.saved = None;
    }

    /// Feeds a round's events to the grouper, asks it what is due, queues a delivery per
    /// notification and receiver, and stores the grouper with them in one transaction.
    /// On a failed write the grouper is dropped, so the next round starts again from what
    /// was stored and nothing said is lost.
    pub async fn round(
        &mut self,
        state: &AppState,
        shard: u32,
        events: Vec<AlertEvent>,
        now: DateTime<Utc>,
    ) -> Result<(), ApiError> {
        let result = self.try_round(state, &state_name(shard), events, now).await;
        if result.is_err() {
            self.reset();
        }
        result
    }

    async fn try_round(
        &mut self,
        state: &AppState,
        name: &str,
        events: Vec<AlertEvent>,
        now: DateTime<Utc>,
    ) -> Result<(), ApiError> {
        let timings = state.config.notify.timings();
        let grouper = match &mut self.grouper {
            Some(g) => g,
            None => {
                let stored = state.store.notify_state(name).await?;
                let mut g = match stored.as_deref().map(serde_json::from_str::<Grouper>) {
                    Some(Ok(g)) => g,
                    Some(Err(e)) => {
                        tracing::error!(error = %e, "notify: the stored alert groups cannot be read; starting with none");
                        Grouper::new(timings)
                    }
                    None => Grouper::new(timings),
                };
                g.set_timings(timings);
                self.saved = stored;
                self.grouper.insert(g)
            }
        };
        for event in &events {
            match event {
                AlertEvent::Transition(subject, t) => grouper.record(subject, t),
                AlertEvent::Flapping(subject, on) => grouper.set_flapping(subject, *on),
            }
        }
        let mut deliveries = Vec::new();
        if grouper.next_due().is_some_and(|due| due <= now) {
            let holds = silences::in_force(state.store.as_ref(), now).await?;
            let due = grouper.due(now, |alert| {
                is_held(alert, &holds.silences, now) || in_maintenance(alert, &holds.windows, now)
            });
            for n in due {
                let doc = serde_json::to_string(&n)
                    .map_err(|e| internal(format!("cannot write a notification: {e}")))?;
                let summary = message::summary(&n);
                for receiver in state.config.notify.receivers() {
                    if receiver.wants(&n.group.service, &n.group.environment) {
                        deliveries.push(NewDelivery {
                            id: Ulid::new(),
                            notification_id: n.id.clone(),
                            receiver: receiver.name().to_string(),
                            service: n.group.service.clone(),
                            environment: n.group.environment.clone(),
                            summary: summary.clone(),
                            doc: doc.clone(),
                            created_at: now,
                        });
                    }
                }
                tracing::info!(notification = %n.id, receivers = deliveries.iter().filter(|d| d.notification_id == n.id).count(), "notify: {summary}");
            }
        }
        let doc = serde_json::to_string(&*grouper)
            .map_err(|e| internal(format!("cannot write the alert groups: {e}")))?;
        if self.saved.as_deref() != Some(doc.as_str()) || !deliveries.is_empty() {
            state
                .store
                .save_notify_round(name, &doc, &deliveries, now)
                .await?;
            self.saved = Some(doc);
        }
        Ok(())
    }
}

/// The alerts open now, as the stored groupers hold them (what `gantry alert list` shows
/// above the deliveries).
pub async fn open_alerts(state: &AppState) -> Result<Vec<gantry_monitors::Alert>, ApiError> {
    let mut out = Vec::new();
    for shard in 0..crate::monitors::evaluate::SHARDS {
        let Some(text) = state.store.notify_state(&state_name(shard)).await? else {
            continue;
        };
        let grouper: Grouper = serde_json::from_str(&text)
            .map_err(|e| internal(format!("the stored alert groups cannot be read: {e}")))?;
        out.extend(grouper.alerts().cloned());
    }
    Ok(out)
}

/// Logs what went wrong and answers the generic 500 (internals stay in the log).
fn internal(what: String) -> ApiError {
    tracing::error!("notify: {what}");
    ApiError::internal()
}
