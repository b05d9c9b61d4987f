//! The contract gate: when a database's contract phase (drops, renames) may run. For every
//! service of the database, the build deployed in the environment must have been first
//! deployed there after the newest applied expand migration (so it was built for the new
//! schema), at least `bake` ago, and no rollout may be active. A successful rollback writes
//! a deployment too, so going back to a build that needs the old schema shuts the gate.

use std::time::Duration;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

/// What the gate knows of one service in the environment.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServiceDeploys {
    pub service: String,
    /// The build the environment runs and when that build was first deployed there;
    /// `None` when the service was never deployed there.
    pub current: Option<(String, DateTime<Utc>)>,
    /// A rollout of the service in the environment is active.
    pub rollout_active: bool,
}

/// The gate's answer, with the reason for people.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct GateDecision {
    pub open: bool,
    /// Why, naming the deployment and how long is left when it is closed.
    pub reason: String,
    /// When it opens by waiting alone (the bake of the newest deployment), if that is all
    /// that keeps it shut.
    pub opens_at: Option<DateTime<Utc>>,
}

/// Decides the gate for `services` at `now`. `expanded_at` is when the newest expand
/// migration was applied (`None`: none was).
pub fn contract_gate(
    services: &[ServiceDeploys],
    expanded_at: Option<DateTime<Utc>>,
    bake: Duration,
    now: DateTime<Utc>,
) -> GateDecision {
    let closed = |reason: String, opens_at: Option<DateTime<Utc>>| GateDecision {
        open: false,
        reason,
        opens_at,
    };
    if services.is_empty() {
        return closed(
            "the database names no service; list its services in [migrate.databases.NAME]".into(),
            None,
        );
    }
    let bake = chrono::Duration::from_std(bake).unwrap_or(chrono::Duration::MAX);
    let mut latest_open: Option<DateTime<Utc>> = None;
    for s in services {
        if s.rollout_active {
            return closed(
                format!("a rollout of {} is active; wait for it to end", s.service),
                None,
            );
        }
        let Some((build, deployed_at)) = &s.current else {
            return closed(
                format!(
                    "{} was never deployed in this environment, so no build is known to run without the old schema",
                    s.service
                ),
                None,
            );
        };
        if let Some(expanded) = expanded_at {
            if *deployed_at <= expanded {
                return closed(
                    format!(
                        "{} runs build {build}, first deployed {} — before the newest expand migration ({}); deploy a build made for the new schema first",
                        s.service,
                        deployed_at.to_rfc3339(),
                        expanded.to_rfc3339()
                    ),
                    None,
                );
            }
        }
        let opens = *deployed_at + bake;
        if opens > now {
            latest_open = Some(latest_open.map_or(opens, |l| l.max(opens)));
        }
    }
    if let Some(opens) = latest_open {
        let left = (opens - now).num_seconds().max(0);
        return closed(
            format!(
                "the newest deployment is still baking: the gate opens at {} ({} s from now)",
                opens.to_rfc3339(),
                left
            ),
            Some(opens),
        );
    }
    GateDecision {
        open: true,
        reason: "every service runs a build deployed after the newest expand migration, baked, with no rollout active".into(),
        opens_at: None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(h: i64) -> DateTime<Utc> {
        DateTime::from_timestamp(1_800_000_000 + h * 3600, 0).unwrap_or_default()
    }

    fn deploys(service: &str, first: Option<i64>, active: bool) -> ServiceDeploys {
        ServiceDeploys {
            service: service.into(),
            current: first.map(|h| ("b1".to_string(), at(h))),
            rollout_active: active,
        }
    }

    fn check(services: &[ServiceDeploys], expanded: Option<i64>, now: i64, open: bool, says: &str) {
        let d = contract_gate(
            services,
            expanded.map(at),
            Duration::from_secs(86_400),
            at(now),
        );
        assert_eq!(d.open, open, "{d:?}");
        assert!(d.reason.contains(says), "{} lacks {says}", d.reason);
    }

    #[test]
    fn gate() {
        check(
            &[deploys("shop", Some(10), false)],
            Some(5),
            40,
            true,
            "baked",
        );
        check(
            &[deploys("shop", Some(10), false)],
            Some(5),
            20,
            false,
            "still baking",
        );
        check(
            &[deploys("shop", Some(4), false)],
            Some(5),
            40,
            false,
            "before the newest expand",
        );
        check(
            &[deploys("shop", None, false)],
            Some(5),
            40,
            false,
            "never deployed",
        );
        check(
            &[deploys("shop", Some(10), true)],
            Some(5),
            40,
            false,
            "rollout of shop is active",
        );
        check(&[], Some(5), 40, false, "names no service");
        check(
            &[
                deploys("shop", Some(10), false),
                deploys("cart", Some(30), false),
            ],
            Some(5),
            40,
            false,
            "still baking",
        );
        check(&[deploys("shop", Some(10), false)], None, 40, true, "baked");
    }
}
