//! The wire types of Unleash's client API document (`GET /api/client/features`, version 2),
//! camelCase on the wire, the evaluation [`Context`], and Gantry's per-environment
//! [`EnvironmentDefinition`].
//!
//! Reading is forgiving where real documents are sloppy (see `lenient`): parameters that
//! are numbers, lists that are `null`, an operator this engine does not know. Such a
//! document still loads; the engine evaluates what it cannot understand as "no match".

use std::collections::BTreeMap;
use std::fmt;

use serde::{Deserialize, Deserializer, Serialize, Serializer};

use crate::lenient;

/// The whole document a client fetches: every feature of one environment, and the
/// segments their strategies refer to.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ClientFeatures {
    pub version: u32,
    #[serde(default, deserialize_with = "lenient::null_as_default")]
    pub features: Vec<ClientFeature>,
    #[serde(
        default,
        deserialize_with = "lenient::null_as_default",
        skip_serializing_if = "Vec::is_empty"
    )]
    pub segments: Vec<Segment>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub query: Option<serde_json::Value>,
}

/// One flag as one environment sees it.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ClientFeature {
    pub name: String,
    #[serde(rename = "type", default, skip_serializing_if = "Option::is_none")]
    pub r#type: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
    pub enabled: bool,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stale: Option<bool>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub impression_data: Option<bool>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub project: Option<String>,
    #[serde(default, deserialize_with = "lenient::null_as_default")]
    pub strategies: Vec<Strategy>,
    #[serde(default, deserialize_with = "lenient::null_as_default")]
    pub variants: Vec<Variant>,
    #[serde(
        default,
        deserialize_with = "lenient::null_as_default",
        skip_serializing_if = "Vec::is_empty"
    )]
    pub dependencies: Vec<Dependency>,
}

/// An activation strategy: the flag is on for a context when any strategy is.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Strategy {
    pub name: String,
    /// Always text on the wire per the schema; numbers and booleans are read as text
    /// because some servers send `"rollout": 50`.
    #[serde(default, deserialize_with = "lenient::string_map")]
    pub parameters: BTreeMap<String, String>,
    #[serde(default, deserialize_with = "lenient::null_as_default")]
    pub constraints: Vec<Constraint>,
    #[serde(
        default,
        deserialize_with = "lenient::null_as_default",
        skip_serializing_if = "Vec::is_empty"
    )]
    pub segments: Vec<i64>,
    #[serde(
        default,
        deserialize_with = "lenient::null_as_default",
        skip_serializing_if = "Vec::is_empty"
    )]
    pub variants: Vec<Variant>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub disabled: Option<bool>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sort_order: Option<i64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub title: Option<String>,
}

/// A condition on one context field. A strategy applies only when all its constraints
/// (and those of its segments) hold.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Constraint {
    pub context_name: String,
    pub operator: Operator,
    #[serde(default, deserialize_with = "lenient::null_as_default")]
    pub values: Vec<String>,
    #[serde(
        default,
        deserialize_with = "lenient::opt_string",
        skip_serializing_if = "Option::is_none"
    )]
    pub value: Option<String>,
    #[serde(default)]
    pub inverted: bool,
    #[serde(default)]
    pub case_insensitive: bool,
}

/// A constraint operator. `Unknown` keeps the text of an operator this engine does not
/// know, so such a document still loads and writes back unchanged; the constraint never
/// matches.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Operator {
    In,
    NotIn,
    StrContains,
    StrStartsWith,
    StrEndsWith,
    NumEq,
    NumGt,
    NumGte,
    NumLt,
    NumLte,
    DateAfter,
    DateBefore,
    SemverEq,
    SemverGt,
    SemverGte,
    SemverLt,
    SemverLte,
    Regex,
    InCidr,
    Unknown(String),
}

impl Operator {
    /// Every operator this engine evaluates, in Unleash's spelling.
    pub const KNOWN: [Operator; 19] = [
        Operator::In,
        Operator::NotIn,
        Operator::StrContains,
        Operator::StrStartsWith,
        Operator::StrEndsWith,
        Operator::NumEq,
        Operator::NumGt,
        Operator::NumGte,
        Operator::NumLt,
        Operator::NumLte,
        Operator::DateAfter,
        Operator::DateBefore,
        Operator::SemverEq,
        Operator::SemverGt,
        Operator::SemverGte,
        Operator::SemverLt,
        Operator::SemverLte,
        Operator::Regex,
        Operator::InCidr,
    ];

    /// The operator named by `text`, exactly as Unleash spells it (case matters).
    pub fn parse(text: &str) -> Operator {
        Operator::KNOWN
            .iter()
            .find(|op| op.as_str() == text)
            .cloned()
            .unwrap_or_else(|| Operator::Unknown(text.to_owned()))
    }

    pub fn as_str(&self) -> &str {
        match self {
            Operator::In => "IN",
            Operator::NotIn => "NOT_IN",
            Operator::StrContains => "STR_CONTAINS",
            Operator::StrStartsWith => "STR_STARTS_WITH",
            Operator::StrEndsWith => "STR_ENDS_WITH",
            Operator::NumEq => "NUM_EQ",
            Operator::NumGt => "NUM_GT",
            Operator::NumGte => "NUM_GTE",
            Operator::NumLt => "NUM_LT",
            Operator::NumLte => "NUM_LTE",
            Operator::DateAfter => "DATE_AFTER",
            Operator::DateBefore => "DATE_BEFORE",
            Operator::SemverEq => "SEMVER_EQ",
            Operator::SemverGt => "SEMVER_GT",
            Operator::SemverGte => "SEMVER_GTE",
            Operator::SemverLt => "SEMVER_LT",
            Operator::SemverLte => "SEMVER_LTE",
            Operator::Regex => "REGEX",
            Operator::InCidr => "IN_CIDR",
            Operator::Unknown(text) => text,
        }
    }

    /// Whether the operator compares against the list `values` (rather than `value`).
    pub fn takes_values(&self) -> bool {
        matches!(
            self,
            Operator::In
                | Operator::NotIn
                | Operator::StrContains
                | Operator::StrStartsWith
                | Operator::StrEndsWith
                | Operator::InCidr
        )
    }
}

impl fmt::Display for Operator {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl Serialize for Operator {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(self.as_str())
    }
}

impl<'de> Deserialize<'de> for Operator {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let text = lenient::string(deserializer)?;
        Ok(Operator::parse(&text))
    }
}

/// How a variant's weight is set: `fix` weights are kept as given, `variable` ones share
/// what the fixed ones leave of 1000.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum WeightType {
    Variable,
    Fix,
}

/// A variant of a flag (or of a strategy). `weight` is in thousandths of the traffic.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Variant {
    pub name: String,
    #[serde(default)]
    pub weight: u32,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub weight_type: Option<WeightType>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stickiness: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub payload: Option<Payload>,
    #[serde(
        default,
        deserialize_with = "lenient::null_as_default",
        skip_serializing_if = "Vec::is_empty"
    )]
    pub overrides: Vec<Override>,
}

/// A variant's payload; `type` is `string`, `json`, `number` or `csv`, and the value is
/// always text.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Payload {
    #[serde(rename = "type")]
    pub r#type: String,
    #[serde(deserialize_with = "lenient::string")]
    pub value: String,
}

/// Gives a variant to every context whose `context_name` field is one of `values`,
/// before any weighing.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Override {
    pub context_name: String,
    #[serde(default, deserialize_with = "lenient::null_as_default")]
    pub values: Vec<String>,
}

/// A named, reusable list of constraints that strategies refer to by id.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Segment {
    pub id: i64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
    #[serde(default, deserialize_with = "lenient::null_as_default")]
    pub constraints: Vec<Constraint>,
}

/// A parent flag this flag needs: enabled (the default), disabled (`enabled: false`), or
/// enabled with one of `variants`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Dependency {
    pub feature: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub enabled: Option<bool>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub variants: Option<Vec<String>>,
}

/// What a flag is evaluated for: Unleash's context, `{"userId": "…", "properties": {…}}`.
///
/// Top-level fields win over a property of the same name; any other field a constraint
/// names is looked up in `properties`. The `applicationHostname` strategy reads the
/// property `hostname`, since this engine cannot ask the operating system.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Context {
    #[serde(
        default,
        deserialize_with = "lenient::opt_string",
        skip_serializing_if = "Option::is_none"
    )]
    pub user_id: Option<String>,
    #[serde(
        default,
        deserialize_with = "lenient::opt_string",
        skip_serializing_if = "Option::is_none"
    )]
    pub session_id: Option<String>,
    #[serde(
        default,
        deserialize_with = "lenient::opt_string",
        skip_serializing_if = "Option::is_none"
    )]
    pub remote_address: Option<String>,
    #[serde(
        default,
        deserialize_with = "lenient::opt_string",
        skip_serializing_if = "Option::is_none"
    )]
    pub environment: Option<String>,
    #[serde(
        default,
        deserialize_with = "lenient::opt_string",
        skip_serializing_if = "Option::is_none"
    )]
    pub app_name: Option<String>,
    /// RFC 3339. When absent, date constraints compare the `now` given to the engine.
    #[serde(
        default,
        deserialize_with = "lenient::opt_string",
        skip_serializing_if = "Option::is_none"
    )]
    pub current_time: Option<String>,
    #[serde(
        default,
        deserialize_with = "lenient::string_map",
        skip_serializing_if = "BTreeMap::is_empty"
    )]
    pub properties: BTreeMap<String, String>,
}

impl Context {
    /// The value of the context field a constraint or a stickiness names: a top-level
    /// field by its Unleash name (`userId`, `sessionId`, `remoteAddress`, `environment`,
    /// `appName`, `currentTime`) when set, else the property of that name.
    pub fn get(&self, field: &str) -> Option<&str> {
        let top = match field {
            "userId" => self.user_id.as_deref(),
            "sessionId" => self.session_id.as_deref(),
            "remoteAddress" => self.remote_address.as_deref(),
            "environment" => self.environment.as_deref(),
            "appName" => self.app_name.as_deref(),
            "currentTime" => self.current_time.as_deref(),
            _ => None,
        };
        top.or_else(|| self.properties.get(field).map(String::as_str))
    }

    pub fn with_user_id(mut self, user_id: impl Into<String>) -> Context {
        self.user_id = Some(user_id.into());
        self
    }

    pub fn with_session_id(mut self, session_id: impl Into<String>) -> Context {
        self.session_id = Some(session_id.into());
        self
    }

    pub fn with_remote_address(mut self, address: impl Into<String>) -> Context {
        self.remote_address = Some(address.into());
        self
    }

    pub fn with_property(mut self, name: impl Into<String>, value: impl Into<String>) -> Context {
        self.properties.insert(name.into(), value.into());
        self
    }
}

/// One flag's definition in one environment, as Gantry's API writes it.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", default)]
pub struct EnvironmentDefinition {
    pub enabled: bool,
    #[serde(deserialize_with = "lenient::null_as_default")]
    pub strategies: Vec<Strategy>,
    #[serde(deserialize_with = "lenient::null_as_default")]
    pub variants: Vec<Variant>,
    #[serde(deserialize_with = "lenient::null_as_default")]
    pub dependencies: Vec<Dependency>,
}

impl EnvironmentDefinition {
    /// The flag as the client document carries it; the caller fills `type`,
    /// `description`, `project` and the other descriptive fields.
    pub fn to_client_feature(&self, name: &str) -> ClientFeature {
        ClientFeature {
            name: name.to_owned(),
            enabled: self.enabled,
            strategies: self.strategies.clone(),
            variants: self.variants.clone(),
            dependencies: self.dependencies.clone(),
            ..ClientFeature::default()
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn check_roundtrip(text: serde_json::Value) {
        let doc: ClientFeatures = serde_json::from_value(text.clone()).expect("parses");
        assert_eq!(serde_json::to_value(&doc).expect("serializes"), text);
    }

    #[test]
    fn a_full_document_round_trips() {
        check_roundtrip(json!({
            "version": 2,
            "features": [{
                "name": "checkout.new",
                "type": "release",
                "description": "the new checkout",
                "enabled": true,
                "stale": false,
                "impressionData": true,
                "project": "default",
                "strategies": [{
                    "name": "flexibleRollout",
                    "parameters": {"rollout": "50", "stickiness": "default", "groupId": "g"},
                    "constraints": [{
                        "contextName": "country", "operator": "IN", "values": ["no", "se"],
                        "inverted": false, "caseInsensitive": false
                    }, {
                        "contextName": "version", "operator": "SEMVER_GT", "values": [],
                        "value": "1.2.3", "inverted": true, "caseInsensitive": false
                    }],
                    "segments": [1],
                    "variants": [{"name": "a", "weight": 1000, "weightType": "fix", "stickiness": "default"}],
                    "disabled": false,
                    "sortOrder": 3,
                    "title": "half"
                }],
                "variants": [{
                    "name": "blue", "weight": 500, "weightType": "variable",
                    "payload": {"type": "json", "value": "{\"a\":1}"},
                    "overrides": [{"contextName": "userId", "values": ["7"]}]
                }],
                "dependencies": [{"feature": "parent", "enabled": true, "variants": ["x"]}]
            }],
            "segments": [{"id": 1, "name": "beta", "constraints": []}],
            "query": {"project": ["default"]}
        }));
    }

    #[test]
    fn empty_optional_parts_are_left_out() {
        check_roundtrip(json!({
            "version": 2,
            "features": [{"name": "f", "enabled": false, "strategies": [], "variants": []}]
        }));
    }

    #[test]
    fn an_unknown_operator_keeps_its_text() {
        let c: Constraint = serde_json::from_value(
            json!({"contextName": "x", "operator": "FUTURE_OP", "values": ["1"]}),
        )
        .expect("parses");
        assert_eq!(c.operator, Operator::Unknown("FUTURE_OP".into()));
        assert_eq!(
            serde_json::to_value(&c).expect("serializes")["operator"],
            "FUTURE_OP"
        );
        for op in Operator::KNOWN {
            assert_eq!(Operator::parse(op.as_str()), op);
        }
    }

    #[test]
    fn parameters_and_contexts_are_read_leniently() {
        let s: Strategy = serde_json::from_value(json!({
            "name": "flexibleRollout",
            "parameters": {"rollout": 50, "sticky": true, "gone": null, "ratio": 0.5},
            "constraints": null,
            "variants": null
        }))
        .expect("parses");
        let expected: BTreeMap<String, String> =
            [("rollout", "50"), ("sticky", "true"), ("ratio", "0.5")]
                .into_iter()
                .map(|(k, v)| (k.to_owned(), v.to_owned()))
                .collect();
        assert_eq!(s.parameters, expected);
        assert!(s.constraints.is_empty() && s.variants.is_empty());

        let ctx: Context = serde_json::from_value(json!({
            "userId": 123,
            "sessionId": null,
            "properties": {"plan": "pro", "seats": 5, "missing": null}
        }))
        .expect("parses");
        assert_eq!(ctx.user_id.as_deref(), Some("123"));
        assert_eq!(ctx.session_id, None);
        assert_eq!(ctx.get("seats"), Some("5"));
        assert_eq!(ctx.get("missing"), None);
    }

    #[test]
    fn context_lookup_prefers_top_level_fields() {
        let ctx = Context::default()
            .with_user_id("u1")
            .with_property("userId", "shadowed")
            .with_property("appName", "from-properties")
            .with_property("plan", "pro");
        let cases = [
            ("userId", Some("u1")),
            ("appName", Some("from-properties")),
            ("plan", Some("pro")),
            ("sessionId", None),
            ("nothing", None),
        ];
        for (field, expected) in cases {
            assert_eq!(ctx.get(field), expected, "{field}");
        }
    }

    #[test]
    fn an_environment_definition_becomes_a_client_feature() {
        let def: EnvironmentDefinition = serde_json::from_value(json!({
            "enabled": true,
            "strategies": [{"name": "default"}]
        }))
        .expect("parses");
        let feature = def.to_client_feature("f");
        assert_eq!(feature.name, "f");
        assert!(feature.enabled);
        assert_eq!(feature.strategies.len(), 1);
        assert!(feature.variants.is_empty() && feature.dependencies.is_empty());
    }
}
