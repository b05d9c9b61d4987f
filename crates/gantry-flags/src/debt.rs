//! Flag debt: which flags should be cleaned up, and why. A flag is stale when it outlived
//! its type's expected lifetime, when it has been fully on or fully off in every
//! environment for longer than the window, or when no SDK evaluated it within the window
//! (a flag younger than the window is never "unused").

use chrono::{DateTime, TimeDelta, Utc};

use crate::edit::{expected_lifetime_days, is_static};
use crate::model::EnvironmentDefinition;

/// What the rules look at for one flag.
#[derive(Debug, Clone)]
pub struct FlagFacts<'a> {
    pub name: &'a str,
    pub flag_type: &'a str,
    pub created_at: DateTime<Utc>,
    /// Each environment's definition and when it last changed.
    pub environments: Vec<(&'a str, EnvironmentDefinition, DateTime<Utc>)>,
    /// The newest hour any SDK or server evaluated it in, within the window.
    pub last_evaluated: Option<DateTime<Utc>>,
}

/// Why `flag` is stale at `now` for a window of `days`; empty when it is not.
pub fn stale_reasons(flag: &FlagFacts<'_>, now: DateTime<Utc>, days: u32) -> Vec<String> {
    let window = TimeDelta::days(i64::from(days));
    let mut reasons = Vec::new();
    if let Some(lifetime) = expected_lifetime_days(flag.flag_type) {
        let age = now - flag.created_at;
        if age > TimeDelta::days(lifetime) {
            reasons.push(format!(
                "past its expected lifetime: a {} flag is expected to live {lifetime} days, this one is {} days old",
                flag.flag_type,
                age.num_days()
            ));
        }
    }
    let old_enough = now - flag.created_at > window;
    let states: Vec<Option<bool>> = flag
        .environments
        .iter()
        .map(|(_, definition, changed)| {
            if now - *changed > window {
                is_static(definition)
            } else {
                None
            }
        })
        .collect();
    if old_enough && states.iter().all(Option::is_some) {
        let on = states.iter().filter(|s| **s == Some(true)).count();
        let text = if flag.environments.is_empty() {
            "off in every environment (never defined)".to_string()
        } else if on == states.len() {
            "fully on in every environment".to_string()
        } else if on == 0 {
            "fully off in every environment".to_string()
        } else {
            "fully on or off in every environment".to_string()
        };
        reasons.push(format!("{text} for more than {days} days"));
    }
    if old_enough && flag.last_evaluated.is_none_or(|at| now - at > window) {
        reasons.push(format!("no SDK evaluated it in the last {days} days"));
    }
    reasons
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(days: i64) -> DateTime<Utc> {
        DateTime::from_timestamp(1_800_000_000, 0).unwrap_or_default() + TimeDelta::days(days)
    }

    fn definition(json: serde_json::Value) -> EnvironmentDefinition {
        serde_json::from_value(json).expect("a definition")
    }

    fn check(flag: FlagFacts<'_>, now: i64, expected: &[&str]) {
        let reasons = stale_reasons(&flag, at(now), 30);
        assert_eq!(reasons.len(), expected.len(), "{reasons:?}");
        for (reason, want) in reasons.iter().zip(expected) {
            assert!(reason.contains(want), "{reason} lacks {want}");
        }
    }

    #[test]
    fn reasons() {
        let on = definition(serde_json::json!({"enabled": true}));
        let rollout = definition(serde_json::json!({"enabled": true,
            "strategies": [{"name": "flexibleRollout", "parameters": {"rollout": "50"}}]}));
        let flag = |flag_type, envs, last| FlagFacts {
            name: "a",
            flag_type,
            created_at: at(0),
            environments: envs,
            last_evaluated: last,
        };
        // Young: nothing, even unused.
        check(
            flag("release", vec![("prod", on.clone(), at(0))], None),
            10,
            &[],
        );
        // Old, static and unused.
        check(
            flag("release", vec![("prod", on.clone(), at(1))], None),
            50,
            &[
                "expected lifetime",
                "fully on in every environment",
                "no SDK evaluated",
            ],
        );
        // A kill switch lives for good; a rollout in progress is not static; recent use.
        check(
            flag(
                "kill-switch",
                vec![("prod", rollout.clone(), at(1))],
                Some(at(49)),
            ),
            50,
            &[],
        );
        // Changed recently: not "fully on for long".
        check(
            flag("permission", vec![("prod", on, at(45))], Some(at(49))),
            50,
            &[],
        );
    }
}
