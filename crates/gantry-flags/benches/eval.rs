//! The engine's hot path, one evaluation per iteration: (a) a flag that is simply on,
//! (b) a `flexibleRollout` behind two constraints (`IN` on a property, `STR_STARTS_WITH`
//! on `userId`), (c) a flag choosing among four weighted variants. Target: well under a
//! microsecond each, with no allocation.
//!
//! Run: `cargo bench -p gantry-flags --bench eval`.

use std::hint::black_box;

use chrono::{TimeZone, Utc};
use criterion::{criterion_group, criterion_main, Criterion};
use gantry_flags::{ClientFeatures, Context, Engine};
use rand::rngs::StdRng;
use rand::SeedableRng;

fn engine() -> Engine {
    let doc: ClientFeatures = serde_json::from_value(serde_json::json!({
        "version": 2,
        "features": [
            {"name": "on.off", "enabled": true, "strategies": [{"name": "default"}]},
            {"name": "rollout.constrained", "enabled": true, "strategies": [{
                "name": "flexibleRollout",
                "parameters": {"rollout": "50", "stickiness": "default", "groupId": "rollout.constrained"},
                "constraints": [
                    {"contextName": "country", "operator": "IN", "values": ["no", "se", "dk", "fi"]},
                    {"contextName": "userId", "operator": "STR_STARTS_WITH", "values": ["user-"]}
                ]
            }]},
            {"name": "four.variants", "enabled": true, "strategies": [{"name": "default"}], "variants": [
                {"name": "red", "weight": 250, "payload": {"type": "string", "value": "r"}},
                {"name": "green", "weight": 250, "payload": {"type": "string", "value": "g"}},
                {"name": "blue", "weight": 250, "payload": {"type": "string", "value": "b"}},
                {"name": "yellow", "weight": 250, "payload": {"type": "string", "value": "y"}}
            ]}
        ]
    }))
    .expect("a valid document");
    Engine::new(doc)
}

fn eval(c: &mut Criterion) {
    let engine = engine();
    let ctx = Context::default()
        .with_user_id("user-12345")
        .with_session_id("session-abc")
        .with_property("country", "se");
    let now = Utc
        .with_ymd_and_hms(2024, 6, 1, 12, 0, 0)
        .single()
        .expect("a valid time");
    let mut rng = StdRng::seed_from_u64(1);
    for (bench, flag) in [
        ("a_on_off", "on.off"),
        ("b_flexible_rollout_two_constraints", "rollout.constrained"),
        ("c_four_weighted_variants", "four.variants"),
    ] {
        c.bench_function(bench, |b| {
            b.iter(|| engine.evaluate(black_box(flag), black_box(&ctx), now, &mut rng))
        });
    }
}

criterion_group!(benches, eval);
criterion_main!(benches);
