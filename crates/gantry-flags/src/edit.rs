//! Edits people make to one environment's definition (enable, disable, rollout, targeting,
//! variants), as pure functions from the old definition to the new one, and the one-line
//! summary of what changed that the change log records. The REST API, the CLI, schedules
//! and incidents all go through these, so "what does a rollout to 50 % mean" has one answer.

use std::collections::BTreeMap;
use std::fmt::Write as _;

use serde::{Deserialize, Serialize};

use crate::model::{
    Constraint, EnvironmentDefinition, Operator, Payload, Strategy, Variant, WeightType,
};
use crate::Invalid;

/// The flag types and their expected lifetimes.
pub const FLAG_TYPES: [&str; 5] = [
    "release",
    "experiment",
    "operational",
    "kill-switch",
    "permission",
];

/// How long a flag of this type is expected to live, in days (`None`: for good).
pub fn expected_lifetime_days(flag_type: &str) -> Option<i64> {
    match flag_type {
        "release" | "experiment" => Some(40),
        "operational" => Some(7),
        _ => None,
    }
}

/// Refuses a flag type that is not one of [`FLAG_TYPES`].
pub fn validate_flag_type(flag_type: &str) -> Result<(), Invalid> {
    if FLAG_TYPES.contains(&flag_type) {
        Ok(())
    } else {
        Err(Invalid::field(
            "type",
            format!(
                "'{flag_type}' is not a flag type; expected one of {}",
                FLAG_TYPES.join(", ")
            ),
        ))
    }
}

/// A change to one environment's definition that is not a whole new definition.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case", tag = "action")]
pub enum Edit {
    Enable,
    Disable,
    /// The percentage of the flag's one unconstrained `flexibleRollout` (created when
    /// absent), with its stickiness when given.
    Rollout {
        percent: u32,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        stickiness: Option<String>,
    },
    /// Adds a strategy that turns the flag on for these users, groups or a constraint.
    Target(Target),
    /// Adds or replaces a variant, or removes it.
    Variant {
        name: String,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        weight: Option<u32>,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        payload: Option<Payload>,
        #[serde(default)]
        remove: bool,
    },
}

/// Who a targeting strategy turns the flag on for.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Target {
    Users(Vec<String>),
    /// Members of these groups: the context property `groups` (the user's groups,
    /// comma-separated, as the application sets it) names one of them.
    Groups(Vec<String>),
    Constraint(Constraint),
}

/// Applies `edit` to `old`; a rule the edit breaks is an error naming why.
pub fn apply(old: &EnvironmentDefinition, edit: &Edit) -> Result<EnvironmentDefinition, Invalid> {
    let mut new = old.clone();
    match edit {
        Edit::Enable => new.enabled = true,
        Edit::Disable => new.enabled = false,
        Edit::Rollout {
            percent,
            stickiness,
        } => {
            if *percent > 100 {
                return Err(Invalid::field(
                    "percent",
                    format!("{percent} is not a percentage (0 to 100)"),
                ));
            }
            let unconstrained: Vec<usize> = new
                .strategies
                .iter()
                .enumerate()
                .filter(|(_, s)| {
                    s.name == "flexibleRollout" && s.constraints.is_empty() && s.segments.is_empty()
                })
                .map(|(i, _)| i)
                .collect();
            let strategy = match unconstrained.as_slice() {
                [] => {
                    let mut parameters = BTreeMap::new();
                    parameters.insert("groupId".to_string(), String::new());
                    new.strategies.push(Strategy {
                        name: "flexibleRollout".into(),
                        parameters,
                        ..Strategy::default()
                    });
                    new.strategies.last_mut()
                }
                [one] => new.strategies.get_mut(*one),
                _ => {
                    return Err(Invalid::field(
                        "strategies",
                        format!(
                            "the flag has {} unconstrained flexibleRollout strategies in this environment; set the definition as a whole instead",
                            unconstrained.len()
                        ),
                    ))
                }
            };
            if let Some(strategy) = strategy {
                strategy
                    .parameters
                    .insert("rollout".into(), percent.to_string());
                let stickiness = stickiness
                    .clone()
                    .or_else(|| strategy.parameters.get("stickiness").cloned())
                    .unwrap_or_else(|| "default".into());
                strategy.parameters.insert("stickiness".into(), stickiness);
                // An empty group id means "the flag's name", as Unleash clients read it.
                strategy.parameters.entry("groupId".into()).or_default();
            }
        }
        Edit::Target(target) => match target {
            Target::Users(users) => {
                let users = non_empty("users", users)?;
                new.strategies.push(Strategy {
                    name: "userWithId".into(),
                    parameters: BTreeMap::from([("userIds".to_string(), users.join(","))]),
                    ..Strategy::default()
                });
            }
            // The application puts a user's groups in one comma-separated property, so
            // membership is a pattern over that list (as waffle's imported groups are).
            Target::Groups(groups) => {
                let groups = non_empty("groups", groups)?;
                for pattern in crate::waffle::group_patterns(&groups) {
                    new.strategies.push(Strategy {
                        name: "default".into(),
                        constraints: vec![Constraint {
                            context_name: crate::waffle::GROUPS_PROPERTY.into(),
                            operator: Operator::Regex,
                            values: Vec::new(),
                            value: Some(pattern),
                            inverted: false,
                            case_insensitive: false,
                        }],
                        ..Strategy::default()
                    });
                }
            }
            Target::Constraint(constraint) => new.strategies.push(Strategy {
                name: "default".into(),
                constraints: vec![constraint.clone()],
                ..Strategy::default()
            }),
        },
        Edit::Variant {
            name,
            weight,
            payload,
            remove,
        } => {
            let at = new.variants.iter().position(|v| &v.name == name);
            if *remove {
                let Some(at) = at else {
                    return Err(Invalid::field(
                        "variant",
                        format!("the flag has no variant '{name}' in this environment"),
                    ));
                };
                new.variants.remove(at);
            } else {
                if name.trim().is_empty() {
                    return Err(Invalid::field("variant", "a variant needs a name"));
                }
                let variant = Variant {
                    name: name.clone(),
                    weight: weight.unwrap_or(0),
                    weight_type: Some(if weight.is_some() {
                        WeightType::Fix
                    } else {
                        WeightType::Variable
                    }),
                    stickiness: Some("default".into()),
                    payload: payload.clone(),
                    overrides: Vec::new(),
                };
                match at {
                    Some(at) => new.variants[at] = variant,
                    None => new.variants.push(variant),
                }
            }
            spread_variable_weights(&mut new.variants);
        }
    }
    Ok(new)
}

fn non_empty(field: &str, items: &[String]) -> Result<Vec<String>, Invalid> {
    let items: Vec<String> = items
        .iter()
        .map(|s| s.trim().to_string())
        .filter(|s| !s.is_empty())
        .collect();
    if items.is_empty() {
        return Err(Invalid::field(field, "name at least one"));
    }
    Ok(items)
}

/// Gives the variable-weight variants what the fixed ones leave of 1000, evenly (the
/// first ones take the remainder), as Unleash does when a variant is added or removed.
pub fn spread_variable_weights(variants: &mut [Variant]) {
    let fixed: u32 = variants
        .iter()
        .filter(|v| v.weight_type == Some(WeightType::Fix))
        .map(|v| v.weight)
        .sum();
    let variable: Vec<usize> = variants
        .iter()
        .enumerate()
        .filter(|(_, v)| v.weight_type != Some(WeightType::Fix))
        .map(|(i, _)| i)
        .collect();
    if variable.is_empty() {
        return;
    }
    let left = 1000u32.saturating_sub(fixed);
    let share = left / variable.len() as u32;
    let mut remainder = left % variable.len() as u32;
    for i in variable {
        variants[i].weight = share + u32::from(remainder > 0);
        remainder = remainder.saturating_sub(1);
    }
}

/// The one-line summary of a change of one environment's definition, e.g.
/// `checkout-v2: rollout 10% → 50% in prod`.
pub fn summary(
    flag: &str,
    environment: &str,
    old: Option<&EnvironmentDefinition>,
    new: &EnvironmentDefinition,
) -> String {
    let was_enabled = old.is_some_and(|o| o.enabled);
    let mut parts: Vec<String> = Vec::new();
    if was_enabled != new.enabled {
        parts.push(if new.enabled { "enabled" } else { "disabled" }.to_string());
    }
    let old_rollout = old.and_then(rollout_percent);
    let new_rollout = rollout_percent(new);
    if old_rollout != new_rollout {
        match (old_rollout, new_rollout) {
            (Some(a), Some(b)) => parts.push(format!("rollout {a}% → {b}%")),
            (None, Some(b)) => parts.push(format!("rollout {b}%")),
            (Some(a), None) => parts.push(format!("rollout {a}% removed")),
            (None, None) => {}
        }
    }
    let old_strategies = old.map_or(0, |o| o.strategies.len());
    let old_targeting = old.map_or(0, targeting_count);
    let new_targeting = targeting_count(new);
    if new_targeting > old_targeting {
        parts.push("targeting added".into());
    } else if new_targeting < old_targeting {
        parts.push("targeting removed".into());
    } else if parts.is_empty() && old_strategies != new.strategies.len() {
        parts.push("strategies changed".into());
    }
    let old_variants: Vec<&str> = old.map_or_else(Vec::new, |o| {
        o.variants.iter().map(|v| v.name.as_str()).collect()
    });
    let new_variants: Vec<&str> = new.variants.iter().map(|v| v.name.as_str()).collect();
    if old_variants != new_variants {
        parts.push(format!("variants [{}]", new_variants.join(", ")));
    } else if old.is_some_and(|o| o.variants != new.variants) {
        parts.push("variant weights or payloads changed".into());
    }
    if parts.is_empty() {
        parts.push(if old.is_some_and(|o| o == new) {
            "definition saved unchanged".into()
        } else {
            "definition changed".into()
        });
    }
    let mut out = format!("{flag}: {}", parts.join(", "));
    let _ = write!(out, " in {environment}");
    out
}

/// The percentage of the one unconstrained `flexibleRollout`, if there is exactly one.
pub fn rollout_percent(definition: &EnvironmentDefinition) -> Option<u32> {
    let mut rollouts = definition.strategies.iter().filter(|s| {
        s.name == "flexibleRollout" && s.constraints.is_empty() && s.segments.is_empty()
    });
    let first = rollouts.next()?;
    if rollouts.next().is_some() {
        return None;
    }
    first.parameters.get("rollout")?.trim().parse().ok()
}

fn targeting_count(definition: &EnvironmentDefinition) -> usize {
    definition
        .strategies
        .iter()
        .filter(|s| {
            !s.constraints.is_empty()
                || !s.segments.is_empty()
                || matches!(
                    s.name.as_str(),
                    "userWithId" | "remoteAddress" | "applicationHostname"
                )
        })
        .count()
}

/// Whether the definition turns the flag on for everyone (enabled, with a strategy that
/// matches any context) or off for everyone (disabled): "fully on or off" for flag debt.
pub fn is_static(definition: &EnvironmentDefinition) -> Option<bool> {
    if !definition.enabled {
        return Some(false);
    }
    let everyone = definition.strategies.is_empty()
        || definition.strategies.iter().any(|s| {
            s.constraints.is_empty()
                && s.segments.is_empty()
                && s.disabled != Some(true)
                && match s.name.as_str() {
                    "default" => true,
                    "flexibleRollout" => {
                        s.parameters.get("rollout").map(String::as_str) == Some("100")
                    }
                    "gradualRolloutUserId" | "gradualRolloutSessionId" | "gradualRolloutRandom" => {
                        s.parameters.get("percentage").map(String::as_str) == Some("100")
                    }
                    _ => false,
                }
        });
    everyone.then_some(true)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn definition(json: serde_json::Value) -> EnvironmentDefinition {
        serde_json::from_value(json).expect("a definition")
    }

    fn check(old: serde_json::Value, edit: Edit, expected: Result<serde_json::Value, &str>) {
        let old = definition(old);
        match (apply(&old, &edit), expected) {
            (Ok(new), Ok(expected)) => assert_eq!(new, definition(expected), "{edit:?}"),
            (Err(e), Err(expected)) => assert!(e.to_string().contains(expected), "{edit:?}: {e}"),
            (got, expected) => panic!("{edit:?}: got {got:?}, expected {expected:?}"),
        }
    }

    #[test]
    fn edits() {
        use serde_json::json;
        check(json!({}), Edit::Enable, Ok(json!({"enabled": true})));
        check(json!({"enabled": true}), Edit::Disable, Ok(json!({})));
        check(
            json!({"enabled": true}),
            Edit::Rollout {
                percent: 10,
                stickiness: None,
            },
            Ok(
                json!({"enabled": true, "strategies": [{"name": "flexibleRollout",
                "parameters": {"rollout": "10", "stickiness": "default", "groupId": ""}}]}),
            ),
        );
        check(
            json!({"strategies": [{"name": "flexibleRollout", "parameters": {"rollout": "10", "stickiness": "userId", "groupId": "g"}},
                                  {"name": "flexibleRollout", "parameters": {"rollout": "5"},
                                   "constraints": [{"contextName": "a", "operator": "IN", "values": ["b"]}]}]}),
            Edit::Rollout {
                percent: 50,
                stickiness: None,
            },
            Ok(
                json!({"strategies": [{"name": "flexibleRollout", "parameters": {"rollout": "50", "stickiness": "userId", "groupId": "g"}},
                                     {"name": "flexibleRollout", "parameters": {"rollout": "5"},
                                      "constraints": [{"contextName": "a", "operator": "IN", "values": ["b"]}]}]}),
            ),
        );
        check(
            json!({"strategies": [{"name": "flexibleRollout"}, {"name": "flexibleRollout"}]}),
            Edit::Rollout {
                percent: 50,
                stickiness: None,
            },
            Err("2 unconstrained flexibleRollout"),
        );
        check(
            json!({}),
            Edit::Rollout {
                percent: 101,
                stickiness: None,
            },
            Err("not a percentage"),
        );
        check(
            json!({}),
            Edit::Target(Target::Users(vec!["a".into(), " b ".into()])),
            Ok(json!({"strategies": [{"name": "userWithId", "parameters": {"userIds": "a,b"}}]})),
        );
        check(
            json!({}),
            Edit::Target(Target::Users(vec![" ".into()])),
            Err("users: name at least one"),
        );
        check(
            json!({}),
            Edit::Target(Target::Groups(vec!["beta".into()])),
            Ok(json!({"strategies": [{"name": "default",
                "constraints": [{"contextName": "groups", "operator": "REGEX", "value": r"(?:^|,)\s*(?:beta)\s*(?:,|$)"}]}]})),
        );
        check(
            json!({}),
            Edit::Variant {
                name: "blue".into(),
                weight: None,
                payload: None,
                remove: false,
            },
            Ok(
                json!({"variants": [{"name": "blue", "weight": 1000, "weightType": "variable", "stickiness": "default"}]}),
            ),
        );
        check(
            json!({"variants": [{"name": "blue", "weight": 1000, "weightType": "variable", "stickiness": "default"}]}),
            Edit::Variant {
                name: "red".into(),
                weight: Some(200),
                payload: None,
                remove: false,
            },
            Ok(
                json!({"variants": [{"name": "blue", "weight": 800, "weightType": "variable", "stickiness": "default"},
                                   {"name": "red", "weight": 200, "weightType": "fix", "stickiness": "default"}]}),
            ),
        );
        check(
            json!({}),
            Edit::Variant {
                name: "red".into(),
                weight: None,
                payload: None,
                remove: true,
            },
            Err("no variant 'red'"),
        );
    }

    #[test]
    fn variable_weights_share_what_is_left() {
        let mut variants: Vec<Variant> = (0..3)
            .map(|i| Variant {
                name: format!("v{i}"),
                weight_type: Some(WeightType::Variable),
                ..Variant::default()
            })
            .collect();
        spread_variable_weights(&mut variants);
        let weights: Vec<u32> = variants.iter().map(|v| v.weight).collect();
        assert_eq!(weights, vec![334, 333, 333]);
    }

    #[test]
    fn summaries() {
        use serde_json::json;
        let rollout = |p: u32| {
            definition(
                json!({"enabled": true, "strategies": [{"name": "flexibleRollout", "parameters": {"rollout": p.to_string()}}]}),
            )
        };
        assert_eq!(
            summary("checkout-v2", "prod", Some(&rollout(10)), &rollout(50)),
            "checkout-v2: rollout 10% → 50% in prod"
        );
        assert_eq!(
            summary("a", "stage", None, &rollout(5)),
            "a: enabled, rollout 5% in stage"
        );
        let off = definition(
            json!({"enabled": false, "strategies": [{"name": "flexibleRollout", "parameters": {"rollout": "50"}}]}),
        );
        assert_eq!(
            summary("a", "prod", Some(&rollout(50)), &off),
            "a: disabled in prod"
        );
        assert_eq!(
            summary("a", "prod", Some(&off), &off),
            "a: definition saved unchanged in prod"
        );
    }

    #[test]
    fn static_definitions() {
        use serde_json::json;
        assert_eq!(is_static(&definition(json!({}))), Some(false));
        assert_eq!(is_static(&definition(json!({"enabled": true}))), Some(true));
        assert_eq!(
            is_static(&definition(
                json!({"enabled": true, "strategies": [{"name": "flexibleRollout", "parameters": {"rollout": "100"}}]})
            )),
            Some(true)
        );
        assert_eq!(
            is_static(&definition(
                json!({"enabled": true, "strategies": [{"name": "flexibleRollout", "parameters": {"rollout": "50"}}]})
            )),
            None
        );
    }
}
