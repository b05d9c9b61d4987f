//! Unleash's client specification as a check: one specification file's text in, every
//! case's verdict out. Each file holds a client document (`state`) and cases that name a
//! flag, a context and the expected answer, either `enabled` (`tests`) or the variant
//! (`variantTests`, compared on `name`, `enabled`, `feature_enabled` and `payload`).
//!
//! Pure like the rest of the crate: the caller reads the files (the CLI, or this crate's
//! `tests/conformance.rs`) and passes `now` and the RNG.

use chrono::{DateTime, Utc};
use rand::RngCore;
use serde::{Deserialize, Serialize};
use serde_json::{json, Value};

use crate::engine::Engine;
use crate::model::{ClientFeatures, Context, Payload};

/// Which answer a case checks.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum CaseKind {
    Enabled,
    Variant,
    /// The file itself, when it cannot be read as a specification.
    File,
}

/// One case's verdict, with both answers as JSON for a readable report.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct CaseOutcome {
    pub kind: CaseKind,
    pub description: String,
    pub toggle: String,
    pub passed: bool,
    pub expected: Value,
    pub actual: Value,
}

/// The verdicts of one specification file.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct FileOutcome {
    /// The file's `name`; empty when the file does not parse.
    pub name: String,
    pub cases: Vec<CaseOutcome>,
}

impl FileOutcome {
    pub fn passed(&self) -> usize {
        self.cases.iter().filter(|c| c.passed).count()
    }

    pub fn failed(&self) -> usize {
        self.cases.len() - self.passed()
    }

    pub fn failures(&self) -> impl Iterator<Item = &CaseOutcome> {
        self.cases.iter().filter(|c| !c.passed)
    }
}

#[derive(Deserialize)]
struct SpecFile {
    name: String,
    state: ClientFeatures,
    #[serde(default)]
    tests: Vec<Value>,
    #[serde(default, rename = "variantTests")]
    variant_tests: Vec<Value>,
}

/// The parts every case has; `expectedResult` is read per kind.
#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct Case {
    #[serde(default)]
    description: String,
    #[serde(default)]
    context: Context,
    toggle_name: String,
    expected_result: Value,
}

#[derive(Deserialize)]
struct ExpectedVariant {
    name: String,
    enabled: bool,
    /// Older files lack it; newer ones spell it either way.
    #[serde(default, alias = "featureEnabled")]
    feature_enabled: Option<bool>,
    #[serde(default)]
    payload: Option<Payload>,
}

/// Evaluates every case of the specification file `text`. A file that is not a
/// specification is one failed case of kind [`CaseKind::File`]; a case that is not
/// well-formed fails alone.
pub fn check_spec(text: &str, now: DateTime<Utc>, rng: &mut dyn RngCore) -> FileOutcome {
    let spec: SpecFile = match serde_json::from_str(text) {
        Ok(spec) => spec,
        Err(e) => {
            return FileOutcome {
                name: String::new(),
                cases: vec![CaseOutcome {
                    kind: CaseKind::File,
                    description: "the file parses as a client specification".into(),
                    toggle: String::new(),
                    passed: false,
                    expected: json!("a client specification document"),
                    actual: json!(e.to_string()),
                }],
            };
        }
    };
    let engine = Engine::new(spec.state);
    let mut cases = Vec::with_capacity(spec.tests.len() + spec.variant_tests.len());
    for raw in &spec.tests {
        cases.push(check_case(&engine, raw, CaseKind::Enabled, now, rng));
    }
    for raw in &spec.variant_tests {
        cases.push(check_case(&engine, raw, CaseKind::Variant, now, rng));
    }
    FileOutcome {
        name: spec.name,
        cases,
    }
}

fn malformed(raw: &Value, kind: CaseKind, message: String) -> CaseOutcome {
    let text = |key: &str| {
        raw.get(key)
            .and_then(Value::as_str)
            .unwrap_or("")
            .to_owned()
    };
    CaseOutcome {
        kind,
        description: text("description"),
        toggle: text("toggleName"),
        passed: false,
        expected: raw.get("expectedResult").cloned().unwrap_or(Value::Null),
        actual: json!(format!("malformed case: {message}")),
    }
}

fn check_case(
    engine: &Engine,
    raw: &Value,
    kind: CaseKind,
    now: DateTime<Utc>,
    rng: &mut dyn RngCore,
) -> CaseOutcome {
    let case = match Case::deserialize(raw) {
        Ok(case) => case,
        Err(e) => return malformed(raw, kind, e.to_string()),
    };
    let (passed, actual) = match kind {
        CaseKind::Variant => {
            let expected = match ExpectedVariant::deserialize(&case.expected_result) {
                Ok(expected) => expected,
                Err(e) => return malformed(raw, kind, e.to_string()),
            };
            let got = engine.variant(&case.toggle_name, &case.context, now, rng);
            let passed = got.name == expected.name
                && got.enabled == expected.enabled
                && expected
                    .feature_enabled
                    .is_none_or(|f| f == got.feature_enabled)
                && got.payload == expected.payload.as_ref();
            (passed, serde_json::to_value(got).unwrap_or(Value::Null))
        }
        CaseKind::Enabled | CaseKind::File => {
            let Some(expected) = case.expected_result.as_bool() else {
                return malformed(raw, kind, "expectedResult is not a boolean".into());
            };
            let got = engine.is_enabled(&case.toggle_name, &case.context, now, rng);
            (got == expected, json!(got))
        }
    };
    CaseOutcome {
        kind,
        description: case.description,
        toggle: case.toggle_name,
        passed,
        expected: case.expected_result,
        actual,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;
    use rand::rngs::StdRng;
    use rand::SeedableRng;

    fn check(text: &str) -> FileOutcome {
        let now = Utc
            .with_ymd_and_hms(2024, 1, 1, 0, 0, 0)
            .single()
            .expect("valid");
        check_spec(text, now, &mut StdRng::seed_from_u64(1))
    }

    #[test]
    fn passing_and_failing_cases_are_reported() {
        let text = json!({
            "name": "mini",
            "state": {"version": 1, "features": [
                {"name": "on", "enabled": true, "strategies": [{"name": "default"}],
                 "variants": [{"name": "v", "weight": 1, "payload": {"type": "string", "value": "p"}}]},
                {"name": "off", "enabled": false, "strategies": []}
            ]},
            "tests": [
                {"description": "on is on", "context": {}, "toggleName": "on", "expectedResult": true},
                {"description": "off is on (wrong)", "context": {}, "toggleName": "off", "expectedResult": true},
                {"description": "no toggle name", "context": {}, "expectedResult": true},
                {"description": "not a boolean", "context": {}, "toggleName": "on", "expectedResult": "yes"}
            ],
            "variantTests": [
                {"description": "variant v", "context": {"userId": "1"}, "toggleName": "on",
                 "expectedResult": {"name": "v", "enabled": true, "feature_enabled": true,
                                    "payload": {"type": "string", "value": "p"}}},
                {"description": "old style, no feature_enabled", "context": {}, "toggleName": "off",
                 "expectedResult": {"name": "disabled", "enabled": false}},
                {"description": "camelCase featureEnabled", "context": {}, "toggleName": "off",
                 "expectedResult": {"name": "disabled", "enabled": false, "featureEnabled": true}},
                {"description": "payload differs", "context": {}, "toggleName": "on",
                 "expectedResult": {"name": "v", "enabled": true, "feature_enabled": true}}
            ]
        })
        .to_string();
        let outcome = check(&text);
        assert_eq!(outcome.name, "mini");
        let verdicts: Vec<(&str, bool)> = outcome
            .cases
            .iter()
            .map(|c| (c.description.as_str(), c.passed))
            .collect();
        assert_eq!(
            verdicts,
            [
                ("on is on", true),
                ("off is on (wrong)", false),
                ("no toggle name", false),
                ("not a boolean", false),
                ("variant v", true),
                ("old style, no feature_enabled", true),
                ("camelCase featureEnabled", false),
                ("payload differs", false),
            ]
        );
        assert_eq!((outcome.passed(), outcome.failed()), (3, 5));
        let wrong = outcome.failures().next().expect("a failure");
        assert_eq!(
            (wrong.expected.clone(), wrong.actual.clone()),
            (json!(true), json!(false))
        );
    }

    #[test]
    fn a_file_that_does_not_parse_is_one_failure() {
        for text in [
            "",
            "{",
            "[]",
            r#"{"name": "x"}"#,
            r#"{"name": "x", "state": {"features": 3}}"#,
        ] {
            let outcome = check(text);
            assert_eq!(outcome.cases.len(), 1, "{text:?}");
            assert_eq!(outcome.cases[0].kind, CaseKind::File);
            assert_eq!(outcome.failed(), 1);
        }
    }
}
