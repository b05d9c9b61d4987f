//! The rules a flag definition, a segment and a flag name must pass to be written.
//!
//! The engine tolerates anything a foreign document holds; what Gantry itself writes is
//! held to more: every strategy and operator known, every constraint value parseable,
//! regexes bounded, percentages whole numbers from 0 to 100 (Unleash SDKs built on
//! Yggdrasil read anything else as "never"), variant weights that add up. The first
//! problem found is returned, naming the field (`strategies[0].constraints[1].operator`).

use std::collections::HashSet;

use crate::constraint::{check_value, ValueError};
use crate::error::Invalid;
use crate::model::{
    Constraint, Dependency, EnvironmentDefinition, Segment, Strategy, Variant, WeightType,
};
use crate::net::IpRange;
use crate::strategy::KNOWN_STRATEGIES;

/// Longest flag name accepted: what an OFREP key may be, so every flag can be evaluated there.
pub const MAX_FLAG_NAME_LEN: usize = 64;
/// Most values one constraint or one override may list.
pub const MAX_CONSTRAINT_VALUES: usize = 1000;
/// Variant weights are thousandths of the traffic.
pub const TOTAL_WEIGHT: u32 = 1000;
/// Payload types Unleash knows.
pub const PAYLOAD_TYPES: [&str; 4] = ["string", "json", "number", "csv"];

/// A flag name: 1 to 100 characters, each an ASCII letter, digit, `.`, `_` or `-`.
pub fn validate_flag_name(name: &str) -> Result<(), Invalid> {
    check_flag_name(name, "name")
}

fn check_flag_name(name: &str, path: &str) -> Result<(), Invalid> {
    if name.is_empty() {
        return Err(Invalid::field(path, "must not be empty"));
    }
    if name.len() > MAX_FLAG_NAME_LEN {
        return Err(Invalid::field(
            path,
            format!(
                "{} characters, more than {MAX_FLAG_NAME_LEN}",
                name.chars().count()
            ),
        ));
    }
    if let Some(bad) = name
        .chars()
        .find(|c| !(c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-')))
    {
        return Err(Invalid::field(
            path,
            format!(
                "'{}' is not allowed (only ASCII letters, digits, '.', '_' and '-')",
                bad.escape_debug()
            ),
        ));
    }
    Ok(())
}

/// One flag's definition in one environment, against the segments that exist.
pub fn validate_definition(
    def: &EnvironmentDefinition,
    segments: &[Segment],
) -> Result<(), Invalid> {
    let segment_ids: HashSet<i64> = segments.iter().map(|s| s.id).collect();
    for (i, s) in def.strategies.iter().enumerate() {
        check_strategy(s, &format!("strategies[{i}]"), &segment_ids)?;
    }
    check_variants(&def.variants, "variants")?;
    check_dependencies(&def.dependencies)?;
    Ok(())
}

/// A segment: every constraint valid.
pub fn validate_segment(segment: &Segment) -> Result<(), Invalid> {
    for (i, c) in segment.constraints.iter().enumerate() {
        check_constraint(c, &format!("constraints[{i}]"))?;
    }
    Ok(())
}

/// A percentage as every Unleash SDK reads it: plain decimal digits, 0 to 100.
fn check_percentage(s: &Strategy, name: &str, path: &str) -> Result<(), Invalid> {
    let path = format!("{path}.parameters.{name}");
    let Some(text) = s.parameters.get(name) else {
        return Err(Invalid::field(
            path,
            "required (a whole number from 0 to 100)",
        ));
    };
    let whole = !text.is_empty() && text.len() <= 3 && text.bytes().all(|b| b.is_ascii_digit());
    match text.parse::<u32>() {
        Ok(n) if whole && n <= 100 => Ok(()),
        _ => Err(Invalid::field(
            path,
            format!("'{text}' is not a whole number from 0 to 100"),
        )),
    }
}

fn check_strategy(s: &Strategy, path: &str, segment_ids: &HashSet<i64>) -> Result<(), Invalid> {
    match s.name.as_str() {
        "flexibleRollout" => check_percentage(s, "rollout", path)?,
        "gradualRolloutUserId" | "gradualRolloutSessionId" | "gradualRolloutRandom" => {
            check_percentage(s, "percentage", path)?
        }
        "remoteAddress" => {
            let ips = s.parameters.get("IPs").map(String::as_str).unwrap_or("");
            for ip in ips.split(',').map(str::trim).filter(|ip| !ip.is_empty()) {
                if IpRange::parse(ip).is_none() {
                    return Err(Invalid::field(
                        format!("{path}.parameters.IPs"),
                        format!("'{ip}' is not an IP address or CIDR range"),
                    ));
                }
            }
        }
        name if KNOWN_STRATEGIES.contains(&name) => {}
        name => {
            return Err(Invalid::field(
                format!("{path}.name"),
                format!(
                    "unknown strategy '{name}' (known: {})",
                    KNOWN_STRATEGIES.join(", ")
                ),
            ))
        }
    }
    for (i, c) in s.constraints.iter().enumerate() {
        check_constraint(c, &format!("{path}.constraints[{i}]"))?;
    }
    for (i, id) in s.segments.iter().enumerate() {
        if !segment_ids.contains(id) {
            return Err(Invalid::field(
                format!("{path}.segments[{i}]"),
                format!("no segment with id {id}"),
            ));
        }
    }
    check_variants(&s.variants, &format!("{path}.variants"))
}

fn check_constraint(c: &Constraint, path: &str) -> Result<(), Invalid> {
    if c.context_name.trim().is_empty() {
        return Err(Invalid::field(
            format!("{path}.contextName"),
            "must not be empty",
        ));
    }
    if c.values.len() > MAX_CONSTRAINT_VALUES {
        return Err(Invalid::field(
            format!("{path}.values"),
            format!(
                "{} values, more than {MAX_CONSTRAINT_VALUES}",
                c.values.len()
            ),
        ));
    }
    if c.operator == crate::model::Operator::InCidr {
        for (i, v) in c.values.iter().enumerate() {
            if IpRange::parse(v).is_none() {
                return Err(Invalid::field(
                    format!("{path}.values[{i}]"),
                    format!("'{v}' is not an IP address or CIDR range"),
                ));
            }
        }
    }
    match check_value(c) {
        Ok(()) => Ok(()),
        Err(ValueError::UnknownOperator) => Err(Invalid::field(
            format!("{path}.operator"),
            format!("unknown operator '{}'", c.operator),
        )),
        Err(e) => Err(Invalid::field(format!("{path}.value"), e.to_string())),
    }
}

fn check_variants(variants: &[Variant], path: &str) -> Result<(), Invalid> {
    if variants.is_empty() {
        return Ok(());
    }
    let mut names = HashSet::new();
    for (i, v) in variants.iter().enumerate() {
        let at = format!("{path}[{i}]");
        if v.name.trim().is_empty() {
            return Err(Invalid::field(format!("{at}.name"), "must not be empty"));
        }
        if !names.insert(v.name.as_str()) {
            return Err(Invalid::field(
                format!("{at}.name"),
                format!("duplicate variant name '{}'", v.name),
            ));
        }
        if v.weight > TOTAL_WEIGHT {
            return Err(Invalid::field(
                format!("{at}.weight"),
                format!(
                    "{} is more than {TOTAL_WEIGHT} (weights are thousandths)",
                    v.weight
                ),
            ));
        }
        if let Some(p) = &v.payload {
            check_payload(&p.r#type, &p.value, &format!("{at}.payload"))?;
        }
        for (j, o) in v.overrides.iter().enumerate() {
            let at = format!("{at}.overrides[{j}]");
            if o.context_name.trim().is_empty() {
                return Err(Invalid::field(
                    format!("{at}.contextName"),
                    "must not be empty",
                ));
            }
            if o.values.len() > MAX_CONSTRAINT_VALUES {
                return Err(Invalid::field(
                    format!("{at}.values"),
                    format!(
                        "{} values, more than {MAX_CONSTRAINT_VALUES}",
                        o.values.len()
                    ),
                ));
            }
        }
    }
    let fixed: Vec<&Variant> = variants
        .iter()
        .filter(|v| v.weight_type == Some(WeightType::Fix))
        .collect();
    let fixed_total = fixed.iter().fold(0u32, |t, v| t.saturating_add(v.weight));
    if fixed_total > TOTAL_WEIGHT {
        return Err(Invalid::field(
            path,
            format!("fixed weights total {fixed_total}, more than {TOTAL_WEIGHT}"),
        ));
    }
    if fixed.len() == variants.len() && fixed_total != TOTAL_WEIGHT {
        return Err(Invalid::field(
            path,
            format!(
                "all weights are fixed and total {fixed_total}; they must total {TOTAL_WEIGHT}"
            ),
        ));
    }
    Ok(())
}

fn check_payload(kind: &str, value: &str, path: &str) -> Result<(), Invalid> {
    let bad = |message: String| Err(Invalid::field(format!("{path}.value"), message));
    match kind {
        "json" if serde_json::from_str::<serde_json::Value>(value).is_err() => {
            bad(format!("'{value}' is not JSON"))
        }
        "number" if crate::constraint::parse_number(value).is_none() => {
            bad(format!("'{value}' is not a number"))
        }
        k if PAYLOAD_TYPES.contains(&k) => Ok(()),
        k => Err(Invalid::field(
            format!("{path}.type"),
            format!(
                "unknown payload type '{k}' (known: {})",
                PAYLOAD_TYPES.join(", ")
            ),
        )),
    }
}

fn check_dependencies(dependencies: &[Dependency]) -> Result<(), Invalid> {
    let mut parents = HashSet::new();
    for (i, d) in dependencies.iter().enumerate() {
        let path = format!("dependencies[{i}]");
        check_flag_name(&d.feature, &format!("{path}.feature"))?;
        if !parents.insert(d.feature.as_str()) {
            return Err(Invalid::field(
                format!("{path}.feature"),
                format!("'{}' is listed twice", d.feature),
            ));
        }
        if d.enabled == Some(false) && d.variants.as_ref().is_some_and(|v| !v.is_empty()) {
            return Err(Invalid::field(
                format!("{path}.variants"),
                "variants can only be required of a parent that must be enabled",
            ));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn definition(value: serde_json::Value) -> EnvironmentDefinition {
        serde_json::from_value(value).expect("definition")
    }

    fn segments() -> Vec<Segment> {
        vec![Segment {
            id: 1,
            ..Segment::default()
        }]
    }

    /// `Ok(())` or the expected error's text.
    fn check(def: serde_json::Value, expected: Result<(), &str>) {
        let got =
            validate_definition(&definition(def.clone()), &segments()).map_err(|e| e.to_string());
        assert_eq!(got, expected.map_err(str::to_owned), "{def}");
    }

    fn with_constraint(c: serde_json::Value) -> serde_json::Value {
        json!({"enabled": true, "strategies": [{"name": "default"}, {"name": "default", "constraints": [
            {"contextName": "ok", "operator": "IN", "values": ["a"]}, c]}]})
    }

    fn with_variants(v: serde_json::Value) -> serde_json::Value {
        json!({"enabled": true, "variants": v})
    }

    fn fix(name: &str, weight: u32) -> serde_json::Value {
        json!({"name": name, "weight": weight, "weightType": "fix"})
    }

    fn var(name: &str) -> serde_json::Value {
        json!({"name": name, "weight": 0, "weightType": "variable"})
    }

    #[test]
    fn flag_names() {
        let long = "a".repeat(MAX_FLAG_NAME_LEN);
        let too_long = "a".repeat(MAX_FLAG_NAME_LEN + 1);
        let cases = [
            ("checkout.new-flow_2", Ok(())),
            (long.as_str(), Ok(())),
            ("", Err("name: must not be empty")),
            (too_long.as_str(), Err("name: 65 characters, more than 64")),
            (
                "has space",
                Err("name: ' ' is not allowed (only ASCII letters, digits, '.', '_' and '-')"),
            ),
            (
                "Hellø",
                Err("name: 'ø' is not allowed (only ASCII letters, digits, '.', '_' and '-')"),
            ),
            (
                "a/b",
                Err("name: '/' is not allowed (only ASCII letters, digits, '.', '_' and '-')"),
            ),
        ];
        for (name, expected) in cases {
            assert_eq!(
                validate_flag_name(name).map_err(|e| e.to_string()),
                expected.map_err(str::to_owned),
                "{name:?}"
            );
        }
    }

    #[test]
    fn strategies() {
        let flexible = |rollout: serde_json::Value| json!({"enabled": true, "strategies": [{"name": "flexibleRollout", "parameters": {"rollout": rollout, "stickiness": "tenantId"}}]});
        let cases = [
            (json!({}), Ok(())),
            (json!({"enabled": true, "strategies": [{"name": "default"}]}), Ok(())),
            (flexible(json!("0")), Ok(())),
            (flexible(json!("100")), Ok(())),
            (flexible(json!(50)), Ok(())),
            (flexible(json!("101")), Err("strategies[0].parameters.rollout: '101' is not a whole number from 0 to 100")),
            (flexible(json!("-1")), Err("strategies[0].parameters.rollout: '-1' is not a whole number from 0 to 100")),
            (flexible(json!("50.5")), Err("strategies[0].parameters.rollout: '50.5' is not a whole number from 0 to 100")),
            (flexible(json!("half")), Err("strategies[0].parameters.rollout: 'half' is not a whole number from 0 to 100")),
            (flexible(json!("")), Err("strategies[0].parameters.rollout: '' is not a whole number from 0 to 100")),
            (
                json!({"strategies": [{"name": "flexibleRollout"}]}),
                Err("strategies[0].parameters.rollout: required (a whole number from 0 to 100)"),
            ),
            (
                json!({"strategies": [{"name": "gradualRolloutRandom", "parameters": {"percentage": "1000"}}]}),
                Err("strategies[0].parameters.percentage: '1000' is not a whole number from 0 to 100"),
            ),
            (
                json!({"strategies": [{"name": "default"}, {"name": "fancy"}]}),
                Err("strategies[1].name: unknown strategy 'fancy' (known: default, userWithId, gradualRolloutUserId, gradualRolloutSessionId, gradualRolloutRandom, flexibleRollout, remoteAddress, applicationHostname)"),
            ),
            (
                json!({"strategies": [{"name": "remoteAddress", "parameters": {"IPs": "10.0.0.0/8, 2001:db8::/32, 1.2.3.4"}}]}),
                Ok(()),
            ),
            (
                json!({"strategies": [{"name": "remoteAddress", "parameters": {"IPs": "10.0.0.0/8, 192.invalid"}}]}),
                Err("strategies[0].parameters.IPs: '192.invalid' is not an IP address or CIDR range"),
            ),
            (json!({"strategies": [{"name": "default", "segments": [1]}]}), Ok(())),
            (
                json!({"strategies": [{"name": "default", "segments": [1, 7]}]}),
                Err("strategies[0].segments[1]: no segment with id 7"),
            ),
            (
                json!({"strategies": [{"name": "default", "variants": [fix("a", 500), fix("a", 500)]}]}),
                Err("strategies[0].variants[1].name: duplicate variant name 'a'"),
            ),
        ];
        for (def, expected) in cases {
            check(def, expected);
        }
    }

    #[test]
    fn constraints() {
        let c = |op: &str, value: &str| json!({"contextName": "x", "operator": op, "value": value});
        let thousand: Vec<String> = (0..MAX_CONSTRAINT_VALUES).map(|i| i.to_string()).collect();
        let too_many: Vec<String> = (0..=MAX_CONSTRAINT_VALUES).map(|i| i.to_string()).collect();
        let cases = [
            (c("NUM_GT", "1.5"), Ok(())),
            (c("DATE_AFTER", "2024-01-01T00:00:00.000Z"), Ok(())),
            (c("SEMVER_LT", "2.0.0-rc.1"), Ok(())),
            (c("REGEX", "^user\\d+$"), Ok(())),
            (json!({"contextName": "x", "operator": "IN", "values": thousand}), Ok(())),
            (
                json!({"contextName": "x", "operator": "FOO", "values": []}),
                Err("strategies[1].constraints[1].operator: unknown operator 'FOO'"),
            ),
            (
                json!({"contextName": " ", "operator": "IN", "values": []}),
                Err("strategies[1].constraints[1].contextName: must not be empty"),
            ),
            (
                json!({"contextName": "x", "operator": "IN", "values": too_many}),
                Err("strategies[1].constraints[1].values: 1001 values, more than 1000"),
            ),
            (c("NUM_EQ", "twelve"), Err("strategies[1].constraints[1].value: 'twelve' is not a number")),
            (c("NUM_EQ", "NaN"), Err("strategies[1].constraints[1].value: 'NaN' is not a number")),
            (
                json!({"contextName": "x", "operator": "NUM_EQ", "values": ["1"]}),
                Err("strategies[1].constraints[1].value: this operator needs a `value`"),
            ),
            (
                c("DATE_BEFORE", "next tuesday"),
                Err("strategies[1].constraints[1].value: 'next tuesday' is not an RFC 3339 date-time"),
            ),
            (
                c("SEMVER_EQ", "v1.2.3"),
                Err("strategies[1].constraints[1].value: 'v1.2.3' is not a semantic version"),
            ),
            (
                c("REGEX", &"a".repeat(1025)),
                Err("strategies[1].constraints[1].value: regex is 1025 bytes, more than 1024"),
            ),
            (
                json!({"contextName": "x", "operator": "IN_CIDR", "values": ["10.0.0.0/8", "nope"]}),
                Err("strategies[1].constraints[1].values[1]: 'nope' is not an IP address or CIDR range"),
            ),
        ];
        for (constraint, expected) in cases {
            check(with_constraint(constraint), expected);
        }
        // Compile errors carry the regex crate's message, which is not ours to pin.
        for pattern in ["(unclosed", "^(?=a)b$", "^(a)\\1$", "a{1000}{1000}"] {
            let got = validate_definition(&definition(with_constraint(c("REGEX", pattern))), &[]);
            let message = got.expect_err(pattern).to_string();
            assert!(
                message.starts_with("strategies[1].constraints[1].value: regex does not compile"),
                "{pattern}: {message}"
            );
        }
    }

    #[test]
    fn variants() {
        let cases = [
            (with_variants(json!([])), Ok(())),
            (with_variants(json!([fix("a", 1000)])), Ok(())),
            (with_variants(json!([fix("a", 300), var("b"), var("c")])), Ok(())),
            (with_variants(json!([var("a"), var("b")])), Ok(())),
            (with_variants(json!([{"name": "untyped", "weight": 1000}])), Ok(())),
            (
                with_variants(json!([fix("a", 600), fix("b", 500), var("c")])),
                Err("variants: fixed weights total 1100, more than 1000"),
            ),
            (
                with_variants(json!([fix("a", 300), fix("b", 300)])),
                Err("variants: all weights are fixed and total 600; they must total 1000"),
            ),
            (
                with_variants(json!([fix("a", 500), var("b"), var("a")])),
                Err("variants[2].name: duplicate variant name 'a'"),
            ),
            (with_variants(json!([var("")])), Err("variants[0].name: must not be empty")),
            (
                with_variants(json!([{"name": "a", "weight": 1001, "weightType": "variable"}])),
                Err("variants[0].weight: 1001 is more than 1000 (weights are thousandths)"),
            ),
            (
                with_variants(json!([{"name": "a", "weight": 1000, "weightType": "fix", "payload": {"type": "json", "value": "{\"a\": 1}"}}])),
                Ok(()),
            ),
            (
                with_variants(json!([{"name": "a", "weight": 1000, "weightType": "fix", "payload": {"type": "json", "value": "{oops"}}])),
                Err("variants[0].payload.value: '{oops' is not JSON"),
            ),
            (
                with_variants(json!([{"name": "a", "weight": 1000, "weightType": "fix", "payload": {"type": "number", "value": "x1"}}])),
                Err("variants[0].payload.value: 'x1' is not a number"),
            ),
            (
                with_variants(json!([{"name": "a", "weight": 1000, "weightType": "fix", "payload": {"type": "xml", "value": "<a/>"}}])),
                Err("variants[0].payload.type: unknown payload type 'xml' (known: string, json, number, csv)"),
            ),
            (
                with_variants(json!([{"name": "a", "weight": 1000, "weightType": "fix", "overrides": [{"contextName": "", "values": ["1"]}]}])),
                Err("variants[0].overrides[0].contextName: must not be empty"),
            ),
        ];
        for (def, expected) in cases {
            check(def, expected);
        }
    }

    #[test]
    fn dependencies() {
        let deps = |d: serde_json::Value| json!({"enabled": true, "dependencies": d});
        let cases = [
            (deps(json!([{"feature": "parent"}, {"feature": "other", "enabled": false}])), Ok(())),
            (deps(json!([{"feature": "parent", "variants": ["a"]}])), Ok(())),
            (deps(json!([{"feature": ""}])), Err("dependencies[0].feature: must not be empty")),
            (
                deps(json!([{"feature": "p"}, {"feature": "p"}])),
                Err("dependencies[1].feature: 'p' is listed twice"),
            ),
            (
                deps(json!([{"feature": "p", "enabled": false, "variants": ["a"]}])),
                Err("dependencies[0].variants: variants can only be required of a parent that must be enabled"),
            ),
        ];
        for (def, expected) in cases {
            check(def, expected);
        }
    }

    #[test]
    fn segments_are_checked_alone() {
        let good: Segment = serde_json::from_value(json!({"id": 3, "constraints": [
            {"contextName": "plan", "operator": "IN", "values": ["pro"]}]}))
        .expect("segment");
        assert_eq!(validate_segment(&good), Ok(()));
        let bad: Segment = serde_json::from_value(json!({"id": 3, "constraints": [
            {"contextName": "plan", "operator": "IN", "values": ["pro"]},
            {"contextName": "age", "operator": "NUM_GT", "value": "old"}]}))
        .expect("segment");
        let err = validate_segment(&bad).expect_err("refused");
        assert_eq!(err.path(), Some("constraints[1].value"));
        assert_eq!(
            err.to_string(),
            "constraints[1].value: 'old' is not a number"
        );
    }
}
