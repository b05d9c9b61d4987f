//! Choosing a variant as Unleash does: an override naming the context wins; otherwise the
//! context's stickiness value is hashed (seed 86028157) into 1..=total weight and the
//! variant whose cumulative weight first reaches it is chosen. A context without the
//! stickiness value gets a random bucket from the caller's RNG.

use rand::{Rng, RngCore};

use crate::constraint::Field;
use crate::hash;
use crate::model::{Context, Payload, Variant};

/// Which context value a rollout or a variant choice is sticky on.
#[derive(Debug, Clone)]
pub(crate) enum Stickiness {
    /// `userId`, else `sessionId`, else random.
    Default,
    Random,
    Field(Field),
}

/// The value to hash, or why there is none.
pub(crate) enum Seed<'c> {
    Value(&'c str),
    Random,
    /// A named field absent from the context.
    Missing,
}

impl Stickiness {
    pub(crate) fn new(name: Option<&str>) -> Stickiness {
        match name.map(str::trim) {
            None | Some("") | Some("default") => Stickiness::Default,
            Some("random") => Stickiness::Random,
            Some(field) => Stickiness::Field(Field::new(field)),
        }
    }

    /// Empty strings count as absent, as in the reference SDKs (`userId || sessionId`).
    pub(crate) fn seed<'c>(&self, ctx: &'c Context) -> Seed<'c> {
        let present = |v: Option<&'c str>| v.filter(|v| !v.is_empty());
        match self {
            Stickiness::Default => present(ctx.user_id.as_deref())
                .or_else(|| present(ctx.session_id.as_deref()))
                .map_or(Seed::Random, Seed::Value),
            Stickiness::Random => Seed::Random,
            Stickiness::Field(field) => present(field.get(ctx)).map_or(Seed::Missing, Seed::Value),
        }
    }
}

#[derive(Debug, Clone)]
struct Override {
    field: Field,
    values: Vec<Box<str>>,
}

#[derive(Debug, Clone)]
pub(crate) struct Compiled {
    pub(crate) name: Box<str>,
    pub(crate) payload: Option<Payload>,
    weight: u32,
    overrides: Vec<Override>,
}

/// How a variant was chosen, for the evaluation's reason.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Chosen {
    Override,
    /// By weight, among several variants that can be drawn.
    Split,
    /// The only variant with weight.
    Only,
}

/// A list of variants with what choosing among them needs.
#[derive(Debug, Clone)]
pub(crate) struct Set {
    variants: Vec<Compiled>,
    total: u32,
    drawable: usize,
    stickiness: Stickiness,
    group: Box<str>,
}

impl Set {
    /// `None` for an empty list. `stickiness` is the one the set is sticky on (the first
    /// variant's, or for strategy variants the strategy's); `group` prefixes the hash.
    pub(crate) fn new(variants: &[Variant], stickiness: Stickiness, group: &str) -> Option<Set> {
        if variants.is_empty() {
            return None;
        }
        let compiled: Vec<Compiled> = variants
            .iter()
            .map(|v| Compiled {
                name: v.name.as_str().into(),
                payload: v.payload.clone(),
                weight: v.weight,
                overrides: v
                    .overrides
                    .iter()
                    .map(|o| Override {
                        field: Field::new(&o.context_name),
                        values: o.values.iter().map(|v| v.as_str().into()).collect(),
                    })
                    .collect(),
            })
            .collect();
        Some(Set {
            // Saturating: a document whose weights pass u32 is nonsense, not a reason to
            // panic; its last variants just become unreachable.
            total: compiled
                .iter()
                .fold(0u32, |t, v| t.saturating_add(v.weight)),
            drawable: compiled.iter().filter(|v| v.weight > 0).count(),
            variants: compiled,
            stickiness,
            group: group.into(),
        })
    }

    pub(crate) fn choose(
        &self,
        ctx: &Context,
        rng: &mut dyn RngCore,
    ) -> Option<(&Compiled, Chosen)> {
        if let Some(v) = self.overridden(ctx) {
            return Some((v, Chosen::Override));
        }
        if self.total == 0 {
            return None;
        }
        let target = match self.stickiness.seed(ctx) {
            Seed::Value(value) => {
                hash::normalized(&self.group, value, hash::VARIANT_SEED, self.total)
            }
            Seed::Random | Seed::Missing => rng.gen_range(1..=self.total),
        };
        let how = if self.drawable > 1 {
            Chosen::Split
        } else {
            Chosen::Only
        };
        let mut reached = 0u32;
        self.variants
            .iter()
            .filter(|v| v.weight > 0)
            .find(|v| {
                reached = reached.saturating_add(v.weight);
                reached >= target
            })
            .map(|v| (v, how))
    }

    fn overridden(&self, ctx: &Context) -> Option<&Compiled> {
        self.variants.iter().find(|v| {
            v.overrides.iter().any(|o| {
                o.field
                    .get(ctx)
                    .is_some_and(|value| o.values.iter().any(|x| &**x == value))
            })
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::rngs::StdRng;
    use rand::SeedableRng;
    use serde_json::json;

    fn set(variants: serde_json::Value, stickiness: Option<&str>, group: &str) -> Set {
        let variants: Vec<Variant> = serde_json::from_value(variants).expect("variants");
        Set::new(&variants, Stickiness::new(stickiness), group).expect("not empty")
    }

    fn check(set: &Set, ctx: serde_json::Value, expected: Option<(&str, Chosen)>) {
        let context: Context = serde_json::from_value(ctx.clone()).expect("context");
        let mut rng = StdRng::seed_from_u64(7);
        let got = set
            .choose(&context, &mut rng)
            .map(|(v, how)| (&*v.name, how));
        assert_eq!(got, expected, "{ctx}");
    }

    #[test]
    fn weights_and_overrides() {
        // Buckets from the Unleash specification (08-variants): user 712 → 1, 525 → 2, 537 → 3.
        let d = set(
            json!([
                {"name": "variant1", "weight": 1},
                {"name": "variant2", "weight": 49},
                {"name": "variant3", "weight": 50, "overrides": [{"contextName": "plan", "values": ["gold"]}]}
            ]),
            None,
            "Feature.Variants.D",
        );
        let cases = [
            (json!({"userId": "712"}), Some(("variant1", Chosen::Split))),
            (json!({"userId": "525"}), Some(("variant2", Chosen::Split))),
            (json!({"userId": "537"}), Some(("variant3", Chosen::Split))),
            (
                json!({"sessionId": "712"}),
                Some(("variant1", Chosen::Split)),
            ),
            (
                json!({"userId": "", "sessionId": "712"}),
                Some(("variant1", Chosen::Split)),
            ),
            (
                json!({"userId": "712", "properties": {"plan": "gold"}}),
                Some(("variant3", Chosen::Override)),
            ),
            (
                json!({"userId": "712", "properties": {"plan": "Gold"}}),
                Some(("variant1", Chosen::Split)),
            ),
        ];
        for (ctx, expected) in cases {
            check(&d, ctx, expected);
        }
    }

    #[test]
    fn custom_stickiness_and_random_fallback() {
        let colours = json!([
            {"name": "blue", "weight": 25}, {"name": "red", "weight": 25},
            {"name": "green", "weight": 25}, {"name": "yellow", "weight": 25}
        ]);
        // From the specification's custom-stickiness cases.
        let s = set(
            colours.clone(),
            Some("customField"),
            "Feature.flexible.rollout.custom.stickiness_100",
        );
        check(
            &s,
            json!({"properties": {"customField": "616"}}),
            Some(("blue", Chosen::Split)),
        );
        check(
            &s,
            json!({"properties": {"customField": "503"}}),
            Some(("red", Chosen::Split)),
        );
        check(
            &s,
            json!({"properties": {"customField": "438"}}),
            Some(("green", Chosen::Split)),
        );
        check(
            &s,
            json!({"properties": {"customField": "44"}}),
            Some(("yellow", Chosen::Split)),
        );
        // Without the field, a random bucket: some variant, never none.
        let context = Context::default();
        let mut rng = StdRng::seed_from_u64(1);
        let mut seen = std::collections::BTreeSet::new();
        for _ in 0..200 {
            let (v, _) = s.choose(&context, &mut rng).expect("a variant");
            seen.insert(v.name.to_string());
        }
        assert_eq!(seen.len(), 4, "random draws reach every variant: {seen:?}");
    }

    #[test]
    fn zero_weights() {
        let none = set(
            json!([{"name": "a", "weight": 0}, {"name": "b", "weight": 0}]),
            None,
            "g",
        );
        check(&none, json!({"userId": "1"}), None);
        let over = set(
            json!([{"name": "a", "weight": 0, "overrides": [{"contextName": "userId", "values": ["1"]}]}]),
            None,
            "g",
        );
        check(&over, json!({"userId": "1"}), Some(("a", Chosen::Override)));
        let only = set(
            json!([{"name": "a", "weight": 0}, {"name": "b", "weight": 5}]),
            None,
            "g",
        );
        for user in ["1", "2", "3", "ø"] {
            check(&only, json!({"userId": user}), Some(("b", Chosen::Only)));
        }
        assert!(Set::new(&[], Stickiness::Default, "g").is_none());
    }

    #[test]
    fn huge_weights_do_not_overflow() {
        let big = set(
            json!([{"name": "a", "weight": u32::MAX}, {"name": "b", "weight": u32::MAX}]),
            None,
            "g",
        );
        check(&big, json!({"userId": "1"}), Some(("a", Chosen::Split)));
    }
}
