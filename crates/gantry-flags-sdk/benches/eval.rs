//! Evaluation through the SDK's [`Client`], in process, from a bootstrap document (no
//! server): (a) a flag that is simply on, (b) a `flexibleRollout` behind two constraints,
//! (c) a flag choosing among four weighted variants (`variant`, which returns an owned
//! variant). Each iteration includes what the client adds to the engine: the atomic load
//! of the flag set, the clock, and the usage count.
//!
//! Run: `cargo bench -p gantry-flags-sdk --bench eval`.

use std::hint::black_box;

use criterion::{criterion_group, criterion_main, Criterion};
use gantry_flags_sdk::{load_document, Client, Config, Context};

const DOCUMENT: &str = r#"{
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
}"#;

fn eval(c: &mut Criterion) {
    let document = load_document(DOCUMENT).expect("a valid document");
    let client = futures::executor::block_on(Client::start(
        Config::offline("bench").with_bootstrap(document),
    ));
    let ctx = Context::default()
        .with_user_id("user-12345")
        .with_session_id("session-abc")
        .with_property("country", "se");
    c.bench_function("a_on_off", |b| {
        b.iter(|| client.is_enabled(black_box("on.off"), black_box(&ctx)))
    });
    c.bench_function("b_flexible_rollout_two_constraints", |b| {
        b.iter(|| client.is_enabled(black_box("rollout.constrained"), black_box(&ctx)))
    });
    c.bench_function("c_four_weighted_variants", |b| {
        b.iter(|| client.variant(black_box("four.variants"), black_box(&ctx)))
    });
}

criterion_group!(benches, eval);
criterion_main!(benches);
