//! Gantry's feature flags: Unleash's feature model ([`model`]), an evaluation [`Engine`]
//! that gives the same answers as Unleash's SDKs (checked against Unleash's client
//! specification by [`conformance`]), the rules a definition must pass to be written
//! ([`validate`]), and an importer for Django waffle's flags ([`waffle`]).
//!
//! Invariant: no I/O, no async, no clock, no randomness of its own, no HTTP, no SQL. The
//! server, the CLI and SDKs call in with the document, the context, `now` and an RNG;
//! evaluation never panics and never fails: what it cannot understand does not match.

pub mod conformance;
mod constraint;
pub mod debt;
pub mod edit;
mod engine;
mod error;
mod hash;
mod lenient;
pub mod model;
mod net;
mod strategy;
pub mod validate;
mod variant;
pub mod waffle;

pub use constraint::{MAX_REGEX_LEN, REGEX_SIZE_LIMIT};
pub use engine::{Engine, Evaluation, Reason, VariantResult};
pub use error::Invalid;
pub use model::{
    ClientFeature, ClientFeatures, Constraint, Context, Dependency, EnvironmentDefinition,
    Operator, Override, Payload, Segment, Strategy, Variant, WeightType,
};
pub use strategy::KNOWN_STRATEGIES;
pub use validate::{validate_definition, validate_flag_name, validate_segment};
