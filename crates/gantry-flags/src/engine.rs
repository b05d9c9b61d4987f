//! The evaluation engine: an Unleash client document compiled once into an immutable
//! snapshot that evaluates a flag for a context without I/O, without a clock (the caller
//! passes `now`) and without randomness of its own (the caller passes the RNG that
//! `random` stickiness and `gradualRolloutRandom` draw from).
//!
//! Order of evaluation, as in Unleash's SDKs: a flag that is off in the environment, or
//! whose dependencies are not met, is off; a flag with no strategies is on; otherwise the
//! first strategy that matches turns it on, and chooses the variant if it has variants of
//! its own, else the flag's variants are chosen from.
//!
//! Where the rules leave room, Gantry decides:
//! - a flag whose strategies are all `disabled: true` is off (Unleash filters disabled
//!   strategies out on the server; an all-disabled list must not mean "on for all");
//! - only one level of dependency is supported, as in Unleash: a parent that has parents
//!   of its own fails the dependency, which also makes cycles fail without recursion.

use std::collections::HashMap;

use chrono::{DateTime, Utc};
use rand::RngCore;
use serde::Serialize;

use crate::model::{ClientFeature, ClientFeatures, Context, Payload, Segment};
use crate::strategy::{self, Shape};
use crate::variant::{self, Chosen, Stickiness};

/// Why a flag evaluated as it did, in OpenFeature's (OFREP) vocabulary.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum Reason {
    /// On for everyone: no strategies, or an unconstrained `default` (or 100 % rollout)
    /// decided, with at most one variant to give.
    Static,
    /// Constraints, segments, listed user ids, addresses or host names decided, or a
    /// variant override named this context.
    TargetingMatch,
    /// A percentage below 100, or a weighted choice among several variants, decided.
    Split,
    /// On in the environment, but no strategy matched: off.
    Default,
    /// Off in the environment, or a dependency is not met.
    Disabled,
}

impl Reason {
    pub fn as_str(self) -> &'static str {
        match self {
            Reason::Static => "STATIC",
            Reason::TargetingMatch => "TARGETING_MATCH",
            Reason::Split => "SPLIT",
            Reason::Default => "DEFAULT",
            Reason::Disabled => "DISABLED",
        }
    }
}

/// The variant a context gets, in the shape Unleash's SDKs return; names and payloads
/// are borrowed from the engine.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct VariantResult<'a> {
    /// [`VariantResult::DISABLED`] when no variant was chosen.
    pub name: &'a str,
    /// Whether a real variant was chosen.
    pub enabled: bool,
    /// Whether the flag itself is on for the context.
    pub feature_enabled: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub payload: Option<&'a Payload>,
}

impl VariantResult<'_> {
    /// The name Unleash gives "no variant".
    pub const DISABLED: &'static str = "disabled";

    /// No variant, for a flag that is (or is not) on.
    pub fn disabled(feature_enabled: bool) -> VariantResult<'static> {
        VariantResult {
            name: VariantResult::DISABLED,
            enabled: false,
            feature_enabled,
            payload: None,
        }
    }
}

/// One flag evaluated for one context.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct Evaluation<'a> {
    pub enabled: bool,
    pub variant: VariantResult<'a>,
    pub reason: Reason,
}

impl Evaluation<'_> {
    fn off(reason: Reason) -> Evaluation<'static> {
        Evaluation {
            enabled: false,
            variant: VariantResult::disabled(false),
            reason,
        }
    }
}

#[derive(Debug, Clone)]
struct Dependency {
    /// Index of the parent; `None` when the document lacks it.
    parent: Option<usize>,
    enabled: bool,
    variants: Vec<Box<str>>,
}

#[derive(Debug, Clone)]
struct Feature {
    enabled: bool,
    /// Whether the document lists any strategy, disabled ones included.
    has_strategies: bool,
    /// The strategies not marked disabled, in document order.
    strategies: Vec<strategy::Compiled>,
    variants: Option<variant::Set>,
    dependencies: Vec<Dependency>,
}

impl Feature {
    fn new(
        f: &ClientFeature,
        segments: &HashMap<i64, &Segment>,
        index: &foldhash::HashMap<Box<str>, usize>,
    ) -> Feature {
        let stickiness = f.variants.first().and_then(|v| v.stickiness.as_deref());
        Feature {
            enabled: f.enabled,
            has_strategies: !f.strategies.is_empty(),
            strategies: f
                .strategies
                .iter()
                .filter(|s| s.disabled != Some(true))
                .map(|s| strategy::Compiled::new(s, &f.name, segments))
                .collect(),
            variants: variant::Set::new(&f.variants, Stickiness::new(stickiness), &f.name),
            dependencies: f
                .dependencies
                .iter()
                .map(|d| Dependency {
                    parent: index.get(d.feature.as_str()).copied(),
                    enabled: d.enabled.unwrap_or(true),
                    variants: d
                        .variants
                        .iter()
                        .flatten()
                        .map(|v| v.as_str().into())
                        .collect(),
                })
                .collect(),
        }
    }
}

/// A compiled, immutable snapshot of one environment's flags. Build one per document
/// (`Engine::new` is where parsing and compiling happen) and share it across threads.
#[derive(Debug, Clone)]
pub struct Engine {
    document: ClientFeatures,
    features: Vec<Feature>,
    /// First feature of each name; a repeated name in a document is ignored.
    index: foldhash::HashMap<Box<str>, usize>,
}

impl Default for Engine {
    fn default() -> Self {
        Engine::new(ClientFeatures::default())
    }
}

impl Engine {
    pub fn new(document: ClientFeatures) -> Engine {
        let segments: HashMap<i64, &Segment> =
            document.segments.iter().map(|s| (s.id, s)).collect();
        let mut index = foldhash::HashMap::default();
        for (i, f) in document.features.iter().enumerate() {
            index.entry(f.name.as_str().into()).or_insert(i);
        }
        let features = document
            .features
            .iter()
            .map(|f| Feature::new(f, &segments, &index))
            .collect();
        Engine {
            document,
            features,
            index,
        }
    }

    /// The document the engine was built from.
    pub fn document(&self) -> &ClientFeatures {
        &self.document
    }

    /// A flag's definition as the document has it.
    pub fn feature(&self, name: &str) -> Option<&ClientFeature> {
        self.index.get(name).map(|&i| &self.document.features[i])
    }

    /// Every flag's name once, in document order.
    pub fn feature_names(&self) -> impl Iterator<Item = &str> + '_ {
        self.document
            .features
            .iter()
            .enumerate()
            .filter(|(i, f)| self.index.get(f.name.as_str()) == Some(i))
            .map(|(_, f)| f.name.as_str())
    }

    pub fn len(&self) -> usize {
        self.index.len()
    }

    pub fn is_empty(&self) -> bool {
        self.index.is_empty()
    }

    /// Evaluates `feature` for `ctx`; `None` when the document has no such flag.
    /// `now` is the time for date constraints when the context has no `currentTime`.
    pub fn evaluate(
        &self,
        feature: &str,
        ctx: &Context,
        now: DateTime<Utc>,
        rng: &mut dyn RngCore,
    ) -> Option<Evaluation<'_>> {
        let &i = self.index.get(feature)?;
        Some(self.eval(&self.features[i], ctx, now, rng))
    }

    /// Whether `feature` is on for `ctx`; an unknown flag is off.
    pub fn is_enabled(
        &self,
        feature: &str,
        ctx: &Context,
        now: DateTime<Utc>,
        rng: &mut dyn RngCore,
    ) -> bool {
        self.evaluate(feature, ctx, now, rng)
            .is_some_and(|e| e.enabled)
    }

    /// The variant `ctx` gets; an unknown flag gives the disabled variant.
    pub fn variant(
        &self,
        feature: &str,
        ctx: &Context,
        now: DateTime<Utc>,
        rng: &mut dyn RngCore,
    ) -> VariantResult<'_> {
        self.evaluate(feature, ctx, now, rng)
            .map_or(VariantResult::disabled(false), |e| e.variant)
    }

    /// Every flag evaluated for `ctx`, in document order (the frontend API's answer).
    pub fn evaluate_all(
        &self,
        ctx: &Context,
        now: DateTime<Utc>,
        rng: &mut dyn RngCore,
    ) -> Vec<(&str, Evaluation<'_>)> {
        self.feature_names()
            .filter_map(|name| Some((name, self.evaluate(name, ctx, now, rng)?)))
            .collect()
    }

    fn eval<'a>(
        &'a self,
        f: &'a Feature,
        ctx: &Context,
        now: DateTime<Utc>,
        rng: &mut dyn RngCore,
    ) -> Evaluation<'a> {
        if !f.enabled || !self.dependencies_met(f, ctx, now, rng) {
            return Evaluation::off(Reason::Disabled);
        }
        let (shape, own_variants) = if f.has_strategies {
            match f.strategies.iter().find(|s| s.matches(ctx, now, rng)) {
                Some(s) => (s.shape, s.variants.as_ref()),
                None => return Evaluation::off(Reason::Default),
            }
        } else {
            (Shape::Everyone, None)
        };
        // A matching strategy with variants decides alone, even when it can give none.
        let chosen = own_variants
            .or(f.variants.as_ref())
            .and_then(|set| set.choose(ctx, rng));
        let reason = match chosen.map(|(_, how)| how) {
            Some(Chosen::Override) => Reason::TargetingMatch,
            Some(Chosen::Split) => Reason::Split,
            Some(Chosen::Only) | None => match shape {
                Shape::Everyone => Reason::Static,
                Shape::Split => Reason::Split,
                Shape::Targeted => Reason::TargetingMatch,
            },
        };
        let variant = match chosen {
            Some((v, _)) => VariantResult {
                name: &v.name,
                enabled: true,
                feature_enabled: true,
                payload: v.payload.as_ref(),
            },
            None => VariantResult::disabled(true),
        };
        Evaluation {
            enabled: true,
            variant,
            reason,
        }
    }

    fn dependencies_met(
        &self,
        f: &Feature,
        ctx: &Context,
        now: DateTime<Utc>,
        rng: &mut dyn RngCore,
    ) -> bool {
        f.dependencies.iter().all(|d| {
            let Some(parent) = d.parent.map(|i| &self.features[i]) else {
                return false;
            };
            // One level only: this is also what stops a cycle from recursing.
            if !parent.dependencies.is_empty() {
                return false;
            }
            let got = self.eval(parent, ctx, now, rng);
            if !d.enabled {
                return !got.enabled;
            }
            got.enabled
                && (d.variants.is_empty() || d.variants.iter().any(|v| **v == *got.variant.name))
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;
    use rand::rngs::StdRng;
    use rand::SeedableRng;
    use serde_json::json;

    fn engine(features: serde_json::Value) -> Engine {
        let doc: ClientFeatures =
            serde_json::from_value(json!({"version": 2, "features": features})).expect("document");
        Engine::new(doc)
    }

    fn now() -> DateTime<Utc> {
        Utc.with_ymd_and_hms(2024, 1, 1, 0, 0, 0)
            .single()
            .expect("valid")
    }

    /// `expected`: (enabled, variant name, reason).
    fn check(e: &Engine, flag: &str, ctx: serde_json::Value, expected: (bool, &str, Reason)) {
        let context: Context = serde_json::from_value(ctx.clone()).expect("context");
        let mut rng = StdRng::seed_from_u64(5);
        let got = e
            .evaluate(flag, &context, now(), &mut rng)
            .expect("known flag");
        assert_eq!(
            (got.enabled, got.variant.name, got.reason),
            expected,
            "{flag} for {ctx}"
        );
        assert_eq!(
            got.variant.feature_enabled, got.enabled,
            "{flag} feature_enabled"
        );
        assert_eq!(
            got.variant.enabled,
            got.variant.name != "disabled",
            "{flag} variant.enabled"
        );
    }

    fn v(name: &str, weight: u32) -> serde_json::Value {
        json!({"name": name, "weight": weight, "payload": {"type": "string", "value": name}})
    }

    #[test]
    fn reasons() {
        let e = engine(json!([
            {"name": "off", "enabled": false, "strategies": [{"name": "default"}]},
            {"name": "no.strategies", "enabled": true},
            {"name": "default", "enabled": true, "strategies": [{"name": "default"}]},
            {"name": "one.variant", "enabled": true, "strategies": [{"name": "default"}], "variants": [v("a", 1000)]},
            {"name": "two.variants", "enabled": true, "strategies": [{"name": "default"}], "variants": [v("a", 500), v("b", 500)]},
            {"name": "override", "enabled": true, "strategies": [{"name": "default"}],
             "variants": [v("a", 500), {"name": "b", "weight": 500, "overrides": [{"contextName": "userId", "values": ["vip"]}]}]},
            {"name": "half", "enabled": true, "strategies": [{"name": "flexibleRollout", "parameters": {"rollout": "50", "groupId": "half"}}]},
            {"name": "users", "enabled": true, "strategies": [{"name": "userWithId", "parameters": {"userIds": "7"}}]},
            {"name": "constrained", "enabled": true, "strategies": [{"name": "default", "constraints": [
                {"contextName": "environment", "operator": "IN", "values": ["dev"]}]}]},
            {"name": "all.disabled", "enabled": true, "strategies": [{"name": "default", "disabled": true}]},
            {"name": "some.disabled", "enabled": true, "strategies": [
                {"name": "default", "disabled": true},
                {"name": "userWithId", "parameters": {"userIds": "7"}}]}
        ]));
        let cases = [
            ("off", json!({}), (false, "disabled", Reason::Disabled)),
            (
                "no.strategies",
                json!({}),
                (true, "disabled", Reason::Static),
            ),
            ("default", json!({}), (true, "disabled", Reason::Static)),
            (
                "one.variant",
                json!({"userId": "1"}),
                (true, "a", Reason::Static),
            ),
            // Bucket of "two.variants:1" is 129 of 1000 (murmur3, seed 86028157).
            (
                "two.variants",
                json!({"userId": "1"}),
                (true, "a", Reason::Split),
            ),
            (
                "override",
                json!({"userId": "vip"}),
                (true, "b", Reason::TargetingMatch),
            ),
            // Bucket of "half:9" is 13, of "half:0" 65 (murmur3, seed 0).
            (
                "half",
                json!({"userId": "9"}),
                (true, "disabled", Reason::Split),
            ),
            (
                "half",
                json!({"userId": "0"}),
                (false, "disabled", Reason::Default),
            ),
            (
                "users",
                json!({"userId": "7"}),
                (true, "disabled", Reason::TargetingMatch),
            ),
            (
                "users",
                json!({"userId": "8"}),
                (false, "disabled", Reason::Default),
            ),
            (
                "constrained",
                json!({"environment": "dev"}),
                (true, "disabled", Reason::TargetingMatch),
            ),
            (
                "all.disabled",
                json!({}),
                (false, "disabled", Reason::Default),
            ),
            (
                "some.disabled",
                json!({}),
                (false, "disabled", Reason::Default),
            ),
            (
                "some.disabled",
                json!({"userId": "7"}),
                (true, "disabled", Reason::TargetingMatch),
            ),
        ];
        for (flag, ctx, expected) in cases {
            check(&e, flag, ctx, expected);
        }
    }

    #[test]
    fn strategy_variants_come_before_flag_variants() {
        let e = engine(json!([
            {"name": "f", "enabled": true, "variants": [v("flag", 1000)], "strategies": [
                {"name": "default", "constraints": [{"contextName": "environment", "operator": "IN", "values": ["dev"]}],
                 "variants": [v("dev", 1000)]},
                {"name": "default", "constraints": [{"contextName": "environment", "operator": "IN", "values": ["qa"]}],
                 "variants": [{"name": "weightless", "weight": 0}]},
                {"name": "default"}
            ]}
        ]));
        check(
            &e,
            "f",
            json!({"environment": "dev"}),
            (true, "dev", Reason::TargetingMatch),
        );
        check(
            &e,
            "f",
            json!({"environment": "qa"}),
            (true, "disabled", Reason::TargetingMatch),
        );
        check(
            &e,
            "f",
            json!({"environment": "prod"}),
            (true, "flag", Reason::Static),
        );
    }

    #[test]
    fn dependencies() {
        let e = engine(json!([
            {"name": "on", "enabled": true},
            {"name": "off", "enabled": false},
            {"name": "coloured", "enabled": true, "variants": [v("red", 1000)]},
            {"name": "dev.only", "enabled": true, "strategies": [{"name": "default", "constraints": [
                {"contextName": "environment", "operator": "IN", "values": ["dev"]}]}]},
            {"name": "needs.on", "enabled": true, "dependencies": [{"feature": "on"}]},
            {"name": "needs.off", "enabled": true, "dependencies": [{"feature": "off", "enabled": false}]},
            {"name": "needs.on.off", "enabled": true, "dependencies": [{"feature": "on", "enabled": false}]},
            {"name": "needs.red", "enabled": true, "dependencies": [{"feature": "coloured", "variants": ["red"]}]},
            {"name": "needs.blue", "enabled": true, "dependencies": [{"feature": "coloured", "variants": ["blue"]}]},
            {"name": "needs.disabled.variant", "enabled": true, "dependencies": [{"feature": "off", "variants": ["disabled"]}]},
            {"name": "needs.dev", "enabled": true, "dependencies": [{"feature": "dev.only"}]},
            {"name": "needs.missing", "enabled": true, "dependencies": [{"feature": "nowhere"}]},
            {"name": "needs.child", "enabled": true, "dependencies": [{"feature": "needs.on"}]},
            {"name": "cycle.a", "enabled": true, "dependencies": [{"feature": "cycle.b"}]},
            {"name": "cycle.b", "enabled": true, "dependencies": [{"feature": "cycle.a"}]},
            {"name": "self", "enabled": true, "dependencies": [{"feature": "self"}]},
            {"name": "off.needs.on", "enabled": false, "dependencies": [{"feature": "on"}]}
        ]));
        let on = (true, "disabled", Reason::Static);
        let off = (false, "disabled", Reason::Disabled);
        let cases = [
            ("needs.on", json!({}), on),
            ("needs.off", json!({}), on),
            ("needs.on.off", json!({}), off),
            ("needs.red", json!({}), on),
            ("needs.blue", json!({}), off),
            ("needs.disabled.variant", json!({}), off),
            ("needs.dev", json!({"environment": "dev"}), on),
            ("needs.dev", json!({"environment": "prod"}), off),
            ("needs.missing", json!({}), off),
            ("needs.child", json!({}), off),
            ("cycle.a", json!({}), off),
            ("cycle.b", json!({}), off),
            ("self", json!({}), off),
            ("off.needs.on", json!({}), off),
        ];
        for (flag, ctx, expected) in cases {
            check(&e, flag, ctx, expected);
        }
    }

    #[test]
    fn unknown_flags_and_convenience_calls() {
        let e = engine(json!([
            {"name": "b", "enabled": true, "variants": [v("x", 1)]},
            {"name": "a", "enabled": false},
            {"name": "b", "enabled": false}
        ]));
        let ctx = Context::default();
        let mut rng = StdRng::seed_from_u64(1);
        assert!(e.evaluate("nope", &ctx, now(), &mut rng).is_none());
        assert!(!e.is_enabled("nope", &ctx, now(), &mut rng));
        assert_eq!(
            e.variant("nope", &ctx, now(), &mut rng),
            VariantResult::disabled(false)
        );
        // The first of a repeated name wins.
        assert!(e.is_enabled("b", &ctx, now(), &mut rng));
        assert_eq!(e.variant("b", &ctx, now(), &mut rng).name, "x");
        assert_eq!(e.feature_names().collect::<Vec<_>>(), ["b", "a"]);
        assert_eq!(e.len(), 2);
        let all: Vec<(&str, bool)> = e
            .evaluate_all(&ctx, now(), &mut rng)
            .into_iter()
            .map(|(n, ev)| (n, ev.enabled))
            .collect();
        assert_eq!(all, [("b", true), ("a", false)]);
        assert_eq!(e.feature("a").map(|f| f.enabled), Some(false));
        assert!(Engine::default().is_empty());
    }

    #[test]
    fn results_serialize_like_unleash_variants() {
        let e = engine(json!([{"name": "f", "enabled": true, "variants": [v("x", 1)]}]));
        let mut rng = StdRng::seed_from_u64(1);
        let got = e
            .evaluate("f", &Context::default(), now(), &mut rng)
            .expect("known");
        assert_eq!(
            serde_json::to_value(got).expect("serializes"),
            json!({
                "enabled": true,
                "variant": {"name": "x", "enabled": true, "feature_enabled": true,
                            "payload": {"type": "string", "value": "x"}},
                "reason": "STATIC"
            })
        );
        assert_eq!(Reason::TargetingMatch.as_str(), "TARGETING_MATCH");
    }

    #[test]
    fn the_engine_is_shareable() {
        fn shareable<T: Send + Sync + 'static>() {}
        shareable::<Engine>();
    }

    /// Tiny deterministic generator so the garbage is the same on every run.
    struct Lcg(u64);

    impl Lcg {
        fn next(&mut self) -> usize {
            self.0 = self
                .0
                .wrapping_mul(6_364_136_223_846_793_005)
                .wrapping_add(1);
            (self.0 >> 33) as usize
        }

        fn coin(&mut self) -> bool {
            self.next() & 1 == 0
        }

        fn pick<'a>(&mut self, options: &[&'a str]) -> &'a str {
            options[self.next() % options.len()]
        }
    }

    #[test]
    fn garbage_documents_never_panic() {
        let strategies = [
            "default",
            "userWithId",
            "gradualRolloutUserId",
            "gradualRolloutSessionId",
            "gradualRolloutRandom",
            "flexibleRollout",
            "remoteAddress",
            "applicationHostname",
            "bogus",
        ];
        let params = [
            "rollout",
            "percentage",
            "groupId",
            "stickiness",
            "userIds",
            "IPs",
            "hostNames",
        ];
        let texts = [
            "",
            "0",
            "50",
            "100",
            "101",
            "-5",
            "1e400",
            "NaN",
            "abc",
            "ø日本🦀",
            "1.2.3",
            "::/0",
            "10.0.0.0/8",
            "(",
            "[[:alpha:]]+",
            "2024-01-01T00:00:00Z",
            ",,,",
            " , ",
            "userId",
            "random",
            "default",
            "sessionId",
        ];
        let operators = [
            "IN",
            "NOT_IN",
            "STR_CONTAINS",
            "STR_STARTS_WITH",
            "STR_ENDS_WITH",
            "NUM_EQ",
            "NUM_GT",
            "NUM_GTE",
            "NUM_LT",
            "NUM_LTE",
            "DATE_AFTER",
            "DATE_BEFORE",
            "SEMVER_EQ",
            "SEMVER_GT",
            "SEMVER_GTE",
            "SEMVER_LT",
            "SEMVER_LTE",
            "REGEX",
            "IN_CIDR",
            "WHAT",
        ];
        let fields = [
            "userId",
            "sessionId",
            "remoteAddress",
            "currentTime",
            "appName",
            "x",
        ];
        let mut g = Lcg(42);
        let mut rng = StdRng::seed_from_u64(9);
        for round in 0..300 {
            let mut features = Vec::new();
            for i in 0..4 {
                let mut strategy_list = Vec::new();
                for _ in 0..(g.next() % 3) {
                    let mut parameters = serde_json::Map::new();
                    for _ in 0..(g.next() % 4) {
                        parameters.insert(g.pick(&params).into(), json!(g.pick(&texts)));
                    }
                    let constraint = json!({
                        "contextName": g.pick(&fields), "operator": g.pick(&operators),
                        "values": [g.pick(&texts), g.pick(&texts)], "value": g.pick(&texts),
                        "inverted": g.coin(), "caseInsensitive": g.coin()
                    });
                    strategy_list.push(json!({
                        "name": g.pick(&strategies), "parameters": parameters,
                        "constraints": [constraint], "segments": [g.next() % 3],
                        "variants": [{"name": g.pick(&texts), "weight": g.next() % 3,
                                      "stickiness": g.pick(&texts)}]
                    }));
                }
                features.push(json!({
                    "name": format!("f{i}"), "enabled": !g.next().is_multiple_of(4),
                    "strategies": strategy_list,
                    "variants": [{"name": "v", "weight": g.next() % 2, "stickiness": g.pick(&texts),
                                  "overrides": [{"contextName": g.pick(&fields), "values": [g.pick(&texts)]}]}],
                    "dependencies": [{"feature": format!("f{}", g.next() % 5),
                                      "enabled": g.coin(), "variants": [g.pick(&texts)]}]
                }));
            }
            let doc = json!({"version": 2, "features": features, "segments": [
                {"id": 1, "constraints": [{"contextName": g.pick(&fields), "operator": g.pick(&operators),
                                           "values": [g.pick(&texts)], "value": g.pick(&texts)}]}]});
            let e = Engine::new(serde_json::from_value(doc).expect("document shape"));
            for _ in 0..5 {
                let ctx: Context = serde_json::from_value(json!({
                    "userId": g.pick(&texts), "sessionId": g.pick(&texts),
                    "remoteAddress": g.pick(&texts), "currentTime": g.pick(&texts),
                    "properties": {"x": g.pick(&texts), "hostname": g.pick(&texts)}
                }))
                .expect("context");
                for name in ["f0", "f1", "f2", "f3"] {
                    let got = e.evaluate(name, &ctx, now(), &mut rng).expect("known");
                    assert_eq!(got.variant.feature_enabled, got.enabled, "round {round}");
                }
            }
        }
    }
}
