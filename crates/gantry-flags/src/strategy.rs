//! Activation strategies compiled once: Unleash's built-in strategies with their
//! parameters parsed, constraints and the constraints of referenced segments inlined.
//!
//! Parameters are read as the Node SDK reads them: a percentage that is not a number
//! never matches, lists are comma-separated and trimmed, invalid addresses in `IPs` are
//! skipped. An unknown strategy never matches, and neither does one that refers to a
//! segment the document lacks.

use std::collections::HashMap;

use chrono::{DateTime, Utc};
use rand::{Rng, RngCore};

use crate::constraint::{self, parse_number, Field};
use crate::hash;
use crate::model::{Context, Segment, Strategy};
use crate::net::{parse_ip, IpRange};
use crate::variant::{self, Seed, Stickiness};

/// Every strategy name the engine (and so validation) knows.
pub const KNOWN_STRATEGIES: [&str; 8] = [
    "default",
    "userWithId",
    "gradualRolloutUserId",
    "gradualRolloutSessionId",
    "gradualRolloutRandom",
    "flexibleRollout",
    "remoteAddress",
    "applicationHostname",
];

#[derive(Debug, Clone)]
enum Kind {
    Always,
    UserIds(Vec<Box<str>>),
    Rollout {
        percentage: f64,
        stickiness: Stickiness,
        group: Box<str>,
    },
    Addresses(Vec<IpRange>),
    /// Lower case; compared with the context property `hostname`.
    Hostnames(Vec<Box<str>>),
    Never,
}

/// What a match of this strategy says about why a flag is on, for the reason.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Shape {
    /// Matches every context: an unconstrained `default` or a 100 % rollout that any
    /// context can be bucketed by.
    Everyone,
    /// A percentage below 100 decided.
    Split,
    /// Constraints, segments, listed users, addresses or hosts decided.
    Targeted,
}

#[derive(Debug, Clone)]
pub(crate) struct Compiled {
    kind: Kind,
    constraints: Vec<constraint::Compiled>,
    /// Refers to a segment the document does not have.
    missing_segment: bool,
    pub(crate) shape: Shape,
    pub(crate) variants: Option<variant::Set>,
}

fn list(text: Option<&String>) -> impl Iterator<Item = &str> {
    text.map(String::as_str)
        .unwrap_or("")
        .split(',')
        .map(str::trim)
        .filter(|s| !s.is_empty())
}

/// A non-empty `groupId` parameter, else `fallback`.
fn group<'a>(s: &'a Strategy, fallback: &'a str) -> &'a str {
    s.parameters
        .get("groupId")
        .map(String::as_str)
        .filter(|g| !g.is_empty())
        .unwrap_or(fallback)
}

fn percentage(s: &Strategy, name: &str) -> Option<f64> {
    s.parameters.get(name).and_then(|p| parse_number(p))
}

fn rollout(percentage: Option<f64>, stickiness: Stickiness, group: &str) -> Kind {
    match percentage {
        Some(percentage) => Kind::Rollout {
            percentage,
            stickiness,
            group: group.into(),
        },
        None => Kind::Never,
    }
}

fn kind(s: &Strategy, feature: &str) -> Kind {
    let params = &s.parameters;
    match s.name.as_str() {
        "default" => Kind::Always,
        "userWithId" => Kind::UserIds(list(params.get("userIds")).map(Into::into).collect()),
        "gradualRolloutUserId" => rollout(
            percentage(s, "percentage"),
            Stickiness::Field(Field::UserId),
            group(s, ""),
        ),
        "gradualRolloutSessionId" => rollout(
            percentage(s, "percentage"),
            Stickiness::Field(Field::SessionId),
            group(s, ""),
        ),
        "gradualRolloutRandom" => rollout(percentage(s, "percentage"), Stickiness::Random, ""),
        "flexibleRollout" => rollout(
            percentage(s, "rollout"),
            Stickiness::new(params.get("stickiness").map(String::as_str)),
            group(s, feature),
        ),
        "remoteAddress" => {
            Kind::Addresses(list(params.get("IPs")).filter_map(IpRange::parse).collect())
        }
        "applicationHostname" => Kind::Hostnames(
            list(params.get("hostNames"))
                .map(|h| h.to_lowercase().into())
                .collect(),
        ),
        _ => Kind::Never,
    }
}

impl Compiled {
    pub(crate) fn new(s: &Strategy, feature: &str, segments: &HashMap<i64, &Segment>) -> Compiled {
        let kind = kind(s, feature);
        let mut missing_segment = false;
        let mut constraints: Vec<constraint::Compiled> = s
            .constraints
            .iter()
            .map(constraint::Compiled::new)
            .collect();
        for id in &s.segments {
            match segments.get(id) {
                Some(segment) => {
                    constraints.extend(segment.constraints.iter().map(constraint::Compiled::new))
                }
                None => missing_segment = true,
            }
        }
        let shape = match &kind {
            Kind::Rollout { percentage, .. } if *percentage < 100.0 => Shape::Split,
            _ if !constraints.is_empty() => Shape::Targeted,
            Kind::Always => Shape::Everyone,
            Kind::Rollout {
                stickiness: Stickiness::Default | Stickiness::Random,
                ..
            } => Shape::Everyone,
            _ => Shape::Targeted,
        };
        // Strategy variants are sticky on their first variant's stickiness, else the
        // strategy's, and hashed within the strategy's group (Node SDK's order).
        let stickiness = s
            .variants
            .first()
            .and_then(|v| v.stickiness.as_deref())
            .or_else(|| s.parameters.get("stickiness").map(String::as_str));
        let variants =
            variant::Set::new(&s.variants, Stickiness::new(stickiness), group(s, feature));
        Compiled {
            kind,
            constraints,
            missing_segment,
            shape,
            variants,
        }
    }

    /// Constraints first: they are cheap, and a strategy they rule out must not draw from
    /// the RNG.
    pub(crate) fn matches(&self, ctx: &Context, now: DateTime<Utc>, rng: &mut dyn RngCore) -> bool {
        !self.missing_segment
            && self.constraints.iter().all(|c| c.matches(ctx, now))
            && self.kind_matches(ctx, rng)
    }

    fn kind_matches(&self, ctx: &Context, rng: &mut dyn RngCore) -> bool {
        match &self.kind {
            Kind::Always => true,
            Kind::Never => false,
            Kind::UserIds(ids) => ctx
                .user_id
                .as_deref()
                .is_some_and(|user| ids.iter().any(|id| &**id == user)),
            Kind::Addresses(ranges) => ctx
                .remote_address
                .as_deref()
                .and_then(parse_ip)
                .is_some_and(|ip| ranges.iter().any(|r| r.contains(ip))),
            Kind::Hostnames(hosts) => ctx.properties.get("hostname").is_some_and(|host| {
                let host = host.trim();
                if host.is_ascii() {
                    hosts.iter().any(|h| h.eq_ignore_ascii_case(host))
                } else {
                    let host = host.to_lowercase();
                    hosts.iter().any(|h| **h == *host)
                }
            }),
            Kind::Rollout {
                percentage,
                stickiness,
                group,
            } => {
                // Parsing let through finite numbers only, so this is the whole check.
                if *percentage <= 0.0 {
                    return false;
                }
                let bucket = match stickiness.seed(ctx) {
                    Seed::Missing => return false,
                    // Every bucket is at most 100: no need to hash or draw.
                    _ if *percentage >= 100.0 => return true,
                    Seed::Value(value) => hash::normalized(group, value, hash::STRATEGY_SEED, 100),
                    Seed::Random => rng.gen_range(1..=100),
                };
                f64::from(bucket) <= *percentage
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;
    use rand::rngs::StdRng;
    use rand::SeedableRng;
    use serde_json::json;

    fn compile(strategy: serde_json::Value) -> Compiled {
        let s: Strategy = serde_json::from_value(strategy).expect("strategy");
        let segment: Segment = serde_json::from_value(json!({
            "id": 1,
            "constraints": [{"contextName": "plan", "operator": "IN", "values": ["pro"]}]
        }))
        .expect("segment");
        let segments: HashMap<i64, &Segment> = [(1, &segment)].into_iter().collect();
        Compiled::new(&s, "the.feature", &segments)
    }

    fn check(strategy: serde_json::Value, ctx: serde_json::Value, expected: bool) {
        let compiled = compile(strategy.clone());
        let context: Context = serde_json::from_value(ctx.clone()).expect("context");
        let now = Utc
            .with_ymd_and_hms(2024, 1, 1, 0, 0, 0)
            .single()
            .expect("valid");
        let mut rng = StdRng::seed_from_u64(3);
        assert_eq!(
            compiled.matches(&context, now, &mut rng),
            expected,
            "{strategy} on {ctx}"
        );
    }

    fn flexible(rollout: &str, stickiness: &str, group: &str) -> serde_json::Value {
        json!({"name": "flexibleRollout", "parameters": {"rollout": rollout, "stickiness": stickiness, "groupId": group}})
    }

    #[test]
    fn builtin_strategies() {
        let user_ids = json!({"name": "userWithId", "parameters": {"userIds": "123, 222 ,88"}});
        let ips = json!({"name": "remoteAddress", "parameters": {"IPs": "192.168.0.1, 192.invalid, 10.0.0.0/8, 2001:db8::/32"}});
        let hosts =
            json!({"name": "applicationHostname", "parameters": {"hostNames": "Web-1, web-2"}});
        let cases = [
            (json!({"name": "default"}), json!({}), true),
            (json!({"name": "someCustomStrategy"}), json!({}), false),
            (user_ids.clone(), json!({"userId": "222"}), true),
            (user_ids.clone(), json!({"userId": "88"}), true),
            (user_ids.clone(), json!({"userId": "22"}), false),
            (user_ids, json!({}), false),
            (
                json!({"name": "userWithId", "parameters": {}}),
                json!({"userId": ""}),
                false,
            ),
            (ips.clone(), json!({"remoteAddress": "192.168.0.1"}), true),
            (ips.clone(), json!({"remoteAddress": "10.200.3.4"}), true),
            (ips.clone(), json!({"remoteAddress": "2001:db8:1::5"}), true),
            (ips.clone(), json!({"remoteAddress": "192.168.0.2"}), false),
            (ips.clone(), json!({"remoteAddress": "garbage"}), false),
            (ips, json!({}), false),
            (
                hosts.clone(),
                json!({"properties": {"hostname": "WEB-1"}}),
                true,
            ),
            (
                hosts.clone(),
                json!({"properties": {"hostname": "web-3"}}),
                false,
            ),
            (hosts, json!({}), false),
        ];
        for (s, ctx, expected) in cases {
            check(s, ctx, expected);
        }
    }

    #[test]
    fn rollouts() {
        // Buckets from the Unleash specification files 03, 04 and 10.
        let by_user = |p: &str| json!({"name": "gradualRolloutUserId", "parameters": {"percentage": p, "groupId": "AB12A"}});
        let by_session = |p: &str| json!({"name": "gradualRolloutSessionId", "parameters": {"percentage": p, "groupId": "AB12A"}});
        let random =
            |p: &str| json!({"name": "gradualRolloutRandom", "parameters": {"percentage": p}});
        let cases = [
            (by_user("100"), json!({"userId": "123"}), true),
            (by_user("100"), json!({}), false),
            (by_user("50"), json!({"userId": "122"}), true),
            (by_user("50"), json!({"userId": "155"}), false),
            (by_user("0"), json!({"userId": "122"}), false),
            (by_user("fifty"), json!({"userId": "122"}), false),
            (by_session("50"), json!({"sessionId": "122"}), true),
            (by_session("50"), json!({"sessionId": "155"}), false),
            (by_session("100"), json!({"userId": "1"}), false),
            (random("100"), json!({}), true),
            (random("0"), json!({}), false),
            (
                flexible("10", "default", "Feature.flexibleRollout.10"),
                json!({"userId": "174"}),
                true,
            ),
            (
                flexible("10", "default", "Feature.flexibleRollout.10"),
                json!({"userId": "499"}),
                false,
            ),
            (
                flexible("10", "default", "Feature.flexibleRollout.10"),
                json!({"sessionId": "174"}),
                true,
            ),
            (
                flexible("55", "userId", "Feature.flexibleRollout.userId.55"),
                json!({"userId": "25"}),
                true,
            ),
            (
                flexible("55", "userId", "Feature.flexibleRollout.userId.55"),
                json!({"sessionId": "25"}),
                false,
            ),
            (flexible("100", "userId", "g"), json!({}), false),
            (flexible("100", "default", "g"), json!({}), true),
            (flexible("100", "random", "g"), json!({}), true),
            (
                flexible(
                    "50",
                    "customField",
                    "Feature.flexible.rollout.custom.stickiness_50",
                ),
                json!({"properties": {"customField": "388"}}),
                true,
            ),
            (
                flexible(
                    "50",
                    "customField",
                    "Feature.flexible.rollout.custom.stickiness_50",
                ),
                json!({"properties": {"customField": "402"}}),
                false,
            ),
            (flexible("50", "customField", "g"), json!({}), false),
            (flexible("0", "random", "g"), json!({}), false),
            (
                json!({"name": "flexibleRollout", "parameters": {"rollout": 100}}),
                json!({"userId": "1"}),
                true,
            ),
            (
                json!({"name": "flexibleRollout", "parameters": {}}),
                json!({"userId": "1"}),
                false,
            ),
        ];
        for (s, ctx, expected) in cases {
            check(s, ctx, expected);
        }
    }

    #[test]
    fn flexible_rollout_groups_by_feature_name_by_default() {
        // With no groupId the hash group is the feature's name.
        let named = compile(flexible("50", "userId", "the.feature"));
        let unnamed = compile(
            json!({"name": "flexibleRollout", "parameters": {"rollout": "50", "stickiness": "userId"}}),
        );
        let now = Utc
            .with_ymd_and_hms(2024, 1, 1, 0, 0, 0)
            .single()
            .expect("valid");
        let mut rng = StdRng::seed_from_u64(3);
        for i in 0..200 {
            let ctx = Context::default().with_user_id(i.to_string());
            assert_eq!(
                named.matches(&ctx, now, &mut rng),
                unnamed.matches(&ctx, now, &mut rng),
                "user {i}"
            );
        }
    }

    #[test]
    fn random_rollouts_hit_about_their_percentage() {
        let s =
            compile(json!({"name": "gradualRolloutRandom", "parameters": {"percentage": "30"}}));
        let now = Utc
            .with_ymd_and_hms(2024, 1, 1, 0, 0, 0)
            .single()
            .expect("valid");
        let mut rng = StdRng::seed_from_u64(11);
        let ctx = Context::default();
        let hits = (0..10_000)
            .filter(|_| s.matches(&ctx, now, &mut rng))
            .count();
        assert!((2_700..3_300).contains(&hits), "{hits}");
    }

    #[test]
    fn constraints_and_segments_apply_to_every_strategy() {
        let with = |mut s: serde_json::Value, key: &str, v: serde_json::Value| {
            s[key] = v;
            s
        };
        let only_dev = json!([{"contextName": "environment", "operator": "IN", "values": ["dev"]}]);
        let cases = [
            (
                with(json!({"name": "default"}), "constraints", only_dev.clone()),
                json!({"environment": "dev"}),
                true,
            ),
            (
                with(json!({"name": "default"}), "constraints", only_dev.clone()),
                json!({"environment": "prod"}),
                false,
            ),
            (
                with(flexible("100", "default", "g"), "constraints", only_dev),
                json!({"environment": "prod"}),
                false,
            ),
            (
                with(json!({"name": "default"}), "segments", json!([1])),
                json!({"properties": {"plan": "pro"}}),
                true,
            ),
            (
                with(json!({"name": "default"}), "segments", json!([1])),
                json!({"properties": {"plan": "free"}}),
                false,
            ),
            (
                with(json!({"name": "default"}), "segments", json!([1, 404])),
                json!({"properties": {"plan": "pro"}}),
                false,
            ),
        ];
        for (s, ctx, expected) in cases {
            check(s, ctx, expected);
        }
    }

    #[test]
    fn shapes() {
        let cases = [
            (json!({"name": "default"}), Shape::Everyone),
            (json!({"name": "default", "segments": [1]}), Shape::Targeted),
            (flexible("100", "default", "g"), Shape::Everyone),
            (flexible("100", "userId", "g"), Shape::Targeted),
            (flexible("99", "default", "g"), Shape::Split),
            (
                json!({"name": "userWithId", "parameters": {"userIds": "1"}}),
                Shape::Targeted,
            ),
            (
                json!({"name": "gradualRolloutRandom", "parameters": {"percentage": "100"}}),
                Shape::Everyone,
            ),
        ];
        for (s, expected) in cases {
            assert_eq!(compile(s.clone()).shape, expected, "{s}");
        }
    }
}
