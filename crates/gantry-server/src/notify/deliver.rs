//! The delivery worker, on every server: claims due deliveries (one server per delivery,
//! see the store), sends each on its own task so a receiver that hangs holds up only its
//! own deliveries, and records the outcome: delivered, retried on the schedule of
//! `gantry_monitors::alerts` (10 s, 30 s, 2 min, 10 min, then hourly), or failed after a
//! day. A notification is sent at least once: a server that dies between sending and
//! recording leaves the claim to lapse and another sends it again, with the same
//! idempotency id.

use std::time::Duration;

use chrono::Utc;
use gantry_monitors::{next_attempt, Notification, Retry};
use gantry_store::{DeliveryOutcome, DeliveryRecord};
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;

use super::config::Receiver;
use crate::state::AppState;

const TICK: Duration = Duration::from_secs(1);
/// Deliveries in flight on one server at most.
const IN_FLIGHT: usize = 16;
/// How long a claim lasts: longer than any one attempt may take (the whole attempt is
/// bounded by [`ATTEMPT_LIMIT`]).
const CLAIM_FOR: chrono::TimeDelta = chrono::TimeDelta::minutes(3);
const ATTEMPT_LIMIT: Duration = Duration::from_secs(120);

/// Runs until shutdown.
pub async fn run(state: AppState, shutdown: CancellationToken) {
    let http = match reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .user_agent(concat!("gantry/", env!("CARGO_PKG_VERSION")))
        .build()
    {
        Ok(c) => c,
        Err(e) => {
            tracing::error!(error = %e, "notify: cannot build the HTTP client; webhooks are off");
            return;
        }
    };
    let mut in_flight = JoinSet::new();
    loop {
        tokio::select! {
            _ = shutdown.cancelled() => break,
            _ = tokio::time::sleep(TICK) => {}
        }
        while in_flight.try_join_next().is_some() {}
        let room = IN_FLIGHT.saturating_sub(in_flight.len());
        if room == 0 {
            continue;
        }
        let now = Utc::now();
        let claimed = match state
            .store
            .claim_deliveries(&state.holder, now, now + CLAIM_FOR, room as u32)
            .await
        {
            Ok(c) => c,
            Err(e) => {
                tracing::warn!(error = %e, "notify: cannot claim deliveries");
                continue;
            }
        };
        for delivery in claimed {
            in_flight.spawn(attempt(state.clone(), http.clone(), delivery));
        }
    }
    // Attempts under way finish (each is bounded); what they could not record is sent
    // again by whoever claims it next.
    let _ = tokio::time::timeout(Duration::from_secs(5), async {
        while in_flight.join_next().await.is_some() {}
    })
    .await;
}

/// One attempt of one delivery, and its outcome recorded.
async fn attempt(state: AppState, http: reqwest::Client, d: DeliveryRecord) {
    let result = match tokio::time::timeout(ATTEMPT_LIMIT, send(&state, &http, &d)).await {
        Ok(r) => r,
        Err(_) => Err(format!("no result within {} s", ATTEMPT_LIMIT.as_secs())),
    };
    let now = Utc::now();
    let outcome = match result {
        Ok(()) => DeliveryOutcome::Delivered,
        Err(error) => {
            let first = d.first_attempt_at.unwrap_or(now);
            match next_attempt(first, now, d.attempts.saturating_add(1)) {
                Retry::At(at) => DeliveryOutcome::Retry { at, error },
                Retry::Failed => DeliveryOutcome::Failed { error },
            }
        }
    };
    match &outcome {
        DeliveryOutcome::Delivered => {
            tracing::info!(receiver = %d.receiver, notification = %d.notification_id, "notify: delivered")
        }
        DeliveryOutcome::Retry { at, error } => {
            tracing::warn!(receiver = %d.receiver, notification = %d.notification_id, error = %error, retry_at = %at, "notify: delivery failed; will retry")
        }
        DeliveryOutcome::Failed { error } => {
            tracing::error!(receiver = %d.receiver, notification = %d.notification_id, error = %error, "notify: delivery failed for good")
        }
    }
    state.metrics.notify_attempt(match &outcome {
        DeliveryOutcome::Delivered => "delivered",
        DeliveryOutcome::Retry { .. } => "retry",
        DeliveryOutcome::Failed { .. } => "failed",
    });
    match state
        .store
        .finish_delivery(d.id, &state.holder, now, &outcome)
        .await
    {
        Ok(true) => {}
        Ok(false) => {
            tracing::warn!(delivery = %d.id, "notify: the claim lapsed before the outcome was recorded; another server may send it again")
        }
        Err(e) => {
            tracing::warn!(delivery = %d.id, error = %e, "notify: cannot record a delivery's outcome")
        }
    }
}

async fn send(state: &AppState, http: &reqwest::Client, d: &DeliveryRecord) -> Result<(), String> {
    let n: Notification = serde_json::from_str(&d.doc)
        .map_err(|e| format!("the stored notification cannot be read: {e}"))?;
    let notify = &state.config.notify;
    match notify.receiver(&d.receiver) {
        None => Err(format!(
            "no receiver '{}' in this server's [notify] configuration",
            d.receiver
        )),
        Some(Receiver::Webhook(w)) => super::send::webhook(http, w, &n).await,
        Some(Receiver::Email(e)) => match &notify.smtp {
            Some(smtp) => super::send::email(smtp, e, &n).await,
            None => Err("no [notify.smtp] section on this server".into()),
        },
    }
}
