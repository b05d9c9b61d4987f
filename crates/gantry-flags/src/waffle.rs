//! Django waffle's vocabulary mapped onto Unleash's, for importing a
//! `manage.py dumpdata waffle` JSON dump.
//!
//! | waffle | Gantry definition |
//! | --- | --- |
//! | `Flag.everyone` = yes | `default` strategy (nothing else matters, as in waffle) |
//! | `Flag.everyone` = no | off in the environment; the other criteria kept as strategies |
//! | `Flag.testing` | `default` with constraint `testing IN ["true"]`: the caller sets the context property `testing` to `true` when waffle's testing cookie or query parameter is present |
//! | `Flag.users` | `userWithId`, ids or user names as the dump gives them ([`WaffleImport::user_keys`]) |
//! | `Flag.groups` | `default` with a `REGEX` constraint on the context property `groups`, which the caller fills with the user's group keys, comma-separated ([`WaffleImport::group_keys`]) |
//! | `Flag.percent` | `flexibleRollout`, stickiness `default`, rounded to a whole percent |
//! | `Flag.superusers`, `staff`, `authenticated`, `languages`, `rollout` | not imported: listed in [`WaffleImport::not_imported`] |
//! | `Switch` | a kill switch: `default` strategy, on when `active` |
//! | `Sample` | `gradualRolloutRandom` with the sample's percent |
//!
//! waffle's criteria are alternatives (any one lets a user in), as Unleash strategies
//! are. A flag with no criteria left after mapping is imported switched off: in Unleash a
//! flag that is on with no strategies is on for everyone.

use std::collections::HashSet;

use serde::Serialize;
use serde_json::{Map, Value};

use crate::constraint::MAX_REGEX_LEN;
use crate::error::Invalid;
use crate::model::{Constraint, EnvironmentDefinition, Operator, Strategy};
use crate::validate::validate_flag_name;

/// The context property the testing criterion reads.
pub const TESTING_PROPERTY: &str = "testing";
/// The context property the groups criterion reads: group keys, comma-separated.
pub const GROUPS_PROPERTY: &str = "groups";

/// The flag's type in Unleash's vocabulary.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum FlagKind {
    KillSwitch,
    Release,
}

impl FlagKind {
    pub fn as_str(self) -> &'static str {
        match self {
            FlagKind::KillSwitch => "kill-switch",
            FlagKind::Release => "release",
        }
    }
}

/// Which waffle model an imported flag came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum WaffleModel {
    Flag,
    Switch,
    Sample,
}

/// How the dump refers to users or groups.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum KeyKind {
    /// Database ids (a plain dump).
    PrimaryKeys,
    /// User names or group names (`dumpdata --natural-foreign`).
    NaturalKeys,
    /// Both kinds in one dump.
    Mixed,
}

impl KeyKind {
    fn with(current: Option<KeyKind>, seen: KeyKind) -> Option<KeyKind> {
        match current {
            None => Some(seen),
            Some(k) if k == seen => Some(k),
            Some(_) => Some(KeyKind::Mixed),
        }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ImportedFlag {
    pub name: String,
    pub kind: FlagKind,
    pub model: WaffleModel,
    pub definition: EnvironmentDefinition,
    /// waffle's `note`, a description.
    pub note: String,
}

/// Something about a flag that the import could not carry over.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct NotImported {
    pub flag: String,
    /// waffle's attribute name (`superusers`, `languages`, `users`, …), or `name` when
    /// the whole flag was skipped.
    pub attribute: String,
    pub detail: String,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct WaffleImport {
    pub flags: Vec<ImportedFlag>,
    pub not_imported: Vec<NotImported>,
    /// How `userWithId` strategies name users; `None` when no flag lists users.
    pub user_keys: Option<KeyKind>,
    /// How the `groups` property must name groups; `None` when no flag lists groups.
    pub group_keys: Option<KeyKind>,
}

/// Maps the waffle objects of a `dumpdata` JSON dump; objects of other models are
/// ignored. Fails only when the text is not a dump or a waffle object lacks its name.
pub fn import_dumpdata(text: &str) -> Result<WaffleImport, Invalid> {
    let dump: Value = serde_json::from_str(text).map_err(|e| Invalid::Document {
        what: "Django dumpdata JSON",
        message: e.to_string(),
    })?;
    let Value::Array(objects) = dump else {
        return Err(Invalid::Document {
            what: "Django dumpdata JSON",
            message: "expected a list of objects".into(),
        });
    };
    let mut import = Importer::default();
    for (i, object) in objects.iter().enumerate() {
        let path = format!("[{i}]");
        let Some(object) = object.as_object() else {
            return Err(Invalid::field(path, "not an object"));
        };
        let model = match object.get("model").and_then(Value::as_str) {
            Some("waffle.flag") => WaffleModel::Flag,
            Some("waffle.switch") => WaffleModel::Switch,
            Some("waffle.sample") => WaffleModel::Sample,
            _ => continue,
        };
        let Some(fields) = object.get("fields").and_then(Value::as_object) else {
            return Err(Invalid::field(
                format!("{path}.fields"),
                "missing or not an object",
            ));
        };
        let Some(name) = fields.get("name").and_then(Value::as_str) else {
            return Err(Invalid::field(
                format!("{path}.fields.name"),
                "missing or not a string",
            ));
        };
        import.object(model, name, fields);
    }
    Ok(WaffleImport {
        flags: import.flags,
        not_imported: import.not_imported,
        user_keys: import.user_keys,
        group_keys: import.group_keys,
    })
}

#[derive(Default)]
struct Importer {
    flags: Vec<ImportedFlag>,
    not_imported: Vec<NotImported>,
    user_keys: Option<KeyKind>,
    group_keys: Option<KeyKind>,
    names: HashSet<String>,
}

fn bool_field(fields: &Map<String, Value>, name: &str) -> bool {
    fields.get(name).and_then(Value::as_bool).unwrap_or(false)
}

fn str_field<'a>(fields: &'a Map<String, Value>, name: &str) -> &'a str {
    fields.get(name).and_then(Value::as_str).unwrap_or("")
}

/// Django writes decimals as strings (`"12.5"`); accept numbers too.
fn percent_field(fields: &Map<String, Value>) -> Option<f64> {
    match fields.get("percent")? {
        Value::Number(n) => n.as_f64(),
        Value::String(s) => s.trim().parse().ok(),
        _ => None,
    }
    .filter(|p: &f64| p.is_finite())
}

fn looks_like_uuid(text: &str) -> bool {
    let groups: Vec<&str> = text.split('-').collect();
    groups.iter().map(|g| g.len()).eq([8, 4, 4, 4, 12])
        && groups
            .iter()
            .all(|g| g.bytes().all(|b| b.is_ascii_hexdigit()))
}

fn default_strategy(constraints: Vec<Constraint>) -> Strategy {
    Strategy {
        name: "default".into(),
        constraints,
        ..Strategy::default()
    }
}

fn with_parameters(name: &str, parameters: &[(&str, String)]) -> Strategy {
    Strategy {
        name: name.into(),
        parameters: parameters
            .iter()
            .map(|(k, v)| ((*k).to_owned(), v.clone()))
            .collect(),
        ..Strategy::default()
    }
}

/// `(?:^|,)\s*(?:a|b)\s*(?:,|$)` over as few patterns as the length limit allows.
pub(crate) fn group_patterns(groups: &[String]) -> Vec<String> {
    let (head, tail) = (r"(?:^|,)\s*(?:", r")\s*(?:,|$)");
    let mut patterns = Vec::new();
    let mut alternatives: Vec<String> = Vec::new();
    let mut len = head.len() + tail.len();
    for g in groups {
        let escaped = regex::escape(g);
        if !alternatives.is_empty() && len + escaped.len() + 1 > MAX_REGEX_LEN {
            patterns.push(format!("{head}{}{tail}", alternatives.join("|")));
            alternatives.clear();
            len = head.len() + tail.len();
        }
        len += escaped.len() + 1;
        alternatives.push(escaped);
    }
    if !alternatives.is_empty() {
        patterns.push(format!("{head}{}{tail}", alternatives.join("|")));
    }
    patterns
}

impl Importer {
    fn skip(&mut self, flag: &str, attribute: &str, detail: impl Into<String>) {
        self.not_imported.push(NotImported {
            flag: flag.to_owned(),
            attribute: attribute.to_owned(),
            detail: detail.into(),
        });
    }

    fn object(&mut self, model: WaffleModel, name: &str, fields: &Map<String, Value>) {
        if let Err(e) = validate_flag_name(name) {
            self.skip(name, "name", format!("not imported: {e}"));
            return;
        }
        if !self.names.insert(name.to_owned()) {
            self.skip(
                name,
                "name",
                "not imported: an earlier object has the same name",
            );
            return;
        }
        let (kind, definition) = match model {
            WaffleModel::Flag => (FlagKind::Release, self.flag(name, fields)),
            WaffleModel::Switch => (
                FlagKind::KillSwitch,
                EnvironmentDefinition {
                    enabled: bool_field(fields, "active"),
                    strategies: vec![default_strategy(Vec::new())],
                    ..EnvironmentDefinition::default()
                },
            ),
            WaffleModel::Sample => {
                let percent = self.whole_percent(name, percent_field(fields).unwrap_or(0.0));
                let definition = EnvironmentDefinition {
                    enabled: true,
                    strategies: vec![with_parameters(
                        "gradualRolloutRandom",
                        &[("percentage", percent.to_string())],
                    )],
                    ..EnvironmentDefinition::default()
                };
                (FlagKind::Release, definition)
            }
        };
        self.flags.push(ImportedFlag {
            name: name.to_owned(),
            kind,
            model,
            definition,
            note: str_field(fields, "note").to_owned(),
        });
    }

    /// Unleash percentages are whole numbers; say so when waffle's was not.
    fn whole_percent(&mut self, name: &str, percent: f64) -> u32 {
        let clamped = percent.clamp(0.0, 100.0);
        let whole = clamped.round();
        if whole != percent {
            self.skip(
                name,
                "percent",
                format!("{percent} % imported as {whole} %"),
            );
        }
        // `whole` is a whole number in 0..=100, so the cast is exact.
        whole as u32
    }

    fn flag(&mut self, name: &str, fields: &Map<String, Value>) -> EnvironmentDefinition {
        let everyone = fields.get("everyone").and_then(Value::as_bool);
        if everyone == Some(true) {
            return EnvironmentDefinition {
                enabled: true,
                strategies: vec![default_strategy(Vec::new())],
                ..EnvironmentDefinition::default()
            };
        }
        for (attribute, why) in [
            ("superusers", "superusers are let in by waffle (its default); Gantry's context has no superuser field"),
            ("staff", "staff are let in by waffle; Gantry's context has no staff field"),
            ("authenticated", "signed-in users are let in by waffle; Gantry's context has no such field"),
        ] {
            if bool_field(fields, attribute) {
                self.skip(name, attribute, why);
            }
        }
        let languages = str_field(fields, "languages").trim();
        if !languages.is_empty() {
            self.skip(
                name,
                "languages",
                format!("languages '{languages}' are not imported"),
            );
        }
        if bool_field(fields, "rollout") {
            self.skip(
                name,
                "rollout",
                "waffle's rollout mode has no equivalent; the percentage is sticky on userId or sessionId instead",
            );
        }

        let mut strategies = Vec::new();
        if bool_field(fields, "testing") {
            strategies.push(default_strategy(vec![Constraint {
                context_name: TESTING_PROPERTY.into(),
                operator: Operator::In,
                values: vec!["true".into()],
                value: None,
                inverted: false,
                case_insensitive: false,
            }]));
        }
        let users = self.keys(name, "users", fields, true);
        if !users.is_empty() {
            strategies.push(with_parameters(
                "userWithId",
                &[("userIds", users.join(","))],
            ));
        }
        let groups = self.keys(name, "groups", fields, false);
        for pattern in group_patterns(&groups) {
            strategies.push(default_strategy(vec![Constraint {
                context_name: GROUPS_PROPERTY.into(),
                operator: Operator::Regex,
                values: Vec::new(),
                value: Some(pattern),
                inverted: false,
                case_insensitive: false,
            }]));
        }
        if let Some(percent) = percent_field(fields) {
            let percent = self.whole_percent(name, percent);
            if percent > 0 {
                strategies.push(with_parameters(
                    "flexibleRollout",
                    &[
                        ("rollout", percent.to_string()),
                        ("stickiness", "default".into()),
                        ("groupId", name.to_owned()),
                    ],
                ));
            }
        }
        EnvironmentDefinition {
            enabled: everyone.is_none() && !strategies.is_empty(),
            strategies,
            ..EnvironmentDefinition::default()
        }
    }

    /// The keys a `users` or `groups` list holds, each as text; records which kind of key
    /// the dump uses.
    fn keys(
        &mut self,
        name: &str,
        attribute: &str,
        fields: &Map<String, Value>,
        users: bool,
    ) -> Vec<String> {
        let Some(list) = fields.get(attribute).and_then(Value::as_array) else {
            return Vec::new();
        };
        let mut keys = Vec::new();
        for item in list {
            let (key, kind) = match item {
                Value::Number(n) => (n.to_string(), KeyKind::PrimaryKeys),
                Value::String(s) if looks_like_uuid(s) => (s.clone(), KeyKind::PrimaryKeys),
                Value::String(s) => (s.clone(), KeyKind::NaturalKeys),
                Value::Array(parts) => match parts.as_slice() {
                    [Value::String(s)] => (s.clone(), KeyKind::NaturalKeys),
                    [Value::Number(n)] => (n.to_string(), KeyKind::NaturalKeys),
                    _ => {
                        self.skip(
                            name,
                            attribute,
                            format!("natural key {item} has more than one part"),
                        );
                        continue;
                    }
                },
                other => {
                    self.skip(name, attribute, format!("{other} is not a key"));
                    continue;
                }
            };
            if key.contains(',') || key.trim() != key || key.is_empty() {
                self.skip(
                    name,
                    attribute,
                    format!("'{key}' cannot be listed (commas, surrounding spaces or empty)"),
                );
                continue;
            }
            if users {
                self.user_keys = KeyKind::with(self.user_keys, kind);
            } else {
                self.group_keys = KeyKind::with(self.group_keys, kind);
            }
            keys.push(key);
        }
        keys
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::engine::Engine;
    use crate::model::{ClientFeatures, Context};
    use crate::validate::validate_definition;
    use chrono::{TimeZone, Utc};
    use rand::rngs::StdRng;
    use rand::SeedableRng;
    use serde_json::json;

    fn flag(name: &str, fields: Value) -> Value {
        let mut all = json!({
            "name": name, "everyone": null, "percent": null, "testing": false,
            "superusers": false, "staff": false, "authenticated": false, "languages": "",
            "rollout": false, "note": "", "created": "2024-01-01T00:00:00Z",
            "modified": "2024-01-01T00:00:00Z", "users": [], "groups": []
        });
        if let (Some(all), Some(fields)) = (all.as_object_mut(), fields.as_object()) {
            all.extend(fields.clone());
        }
        json!({"model": "waffle.flag", "pk": 1, "fields": all})
    }

    fn import(objects: Value) -> WaffleImport {
        let out = import_dumpdata(&objects.to_string()).expect("imports");
        for f in &out.flags {
            assert_eq!(
                validate_definition(&f.definition, &[]),
                Ok(()),
                "{} is valid",
                f.name
            );
        }
        out
    }

    fn engine(out: &WaffleImport) -> Engine {
        let features = out
            .flags
            .iter()
            .map(|f| {
                let mut feature = f.definition.to_client_feature(&f.name);
                feature.r#type = Some(f.kind.as_str().into());
                feature
            })
            .collect();
        Engine::new(ClientFeatures {
            version: 2,
            features,
            ..ClientFeatures::default()
        })
    }

    fn is_on(e: &Engine, flag: &str, ctx: Context) -> bool {
        let now = Utc
            .with_ymd_and_hms(2024, 1, 1, 0, 0, 0)
            .single()
            .expect("valid");
        e.is_enabled(flag, &ctx, now, &mut StdRng::seed_from_u64(1))
    }

    fn strategy_names(out: &WaffleImport, flag: &str) -> Vec<String> {
        out.flags
            .iter()
            .find(|f| f.name == flag)
            .map(|f| {
                f.definition
                    .strategies
                    .iter()
                    .map(|s| s.name.clone())
                    .collect()
            })
            .unwrap_or_default()
    }

    #[test]
    fn a_small_dump() {
        let out = import(json!([
            {"model": "auth.user", "pk": 5, "fields": {"username": "alice"}},
            flag("everyone-on", json!({"everyone": true, "superusers": true, "note": "all in"})),
            flag("everyone-off", json!({"everyone": false, "users": [5]})),
            flag("nothing", json!({})),
            flag("testers", json!({"testing": true})),
            flag("by-id", json!({"users": [5, 7], "groups": [2]})),
            flag("half", json!({"percent": "50.0", "rollout": true})),
            flag("odd-percent", json!({"percent": "12.5"})),
            flag("picky", json!({"superusers": true, "staff": true, "authenticated": true, "languages": "en,nb"})),
            {"model": "waffle.switch", "pk": 1, "fields": {"name": "kill.payments", "active": true, "note": "off in outages"}},
            {"model": "waffle.switch", "pk": 2, "fields": {"name": "dormant", "active": false}},
            {"model": "waffle.sample", "pk": 1, "fields": {"name": "sampled", "percent": "25.0"}},
            flag("bad name!", json!({"everyone": true})),
            {"model": "waffle.switch", "pk": 3, "fields": {"name": "half", "active": true}}
        ]));

        let names: Vec<(&str, FlagKind, bool)> = out
            .flags
            .iter()
            .map(|f| (f.name.as_str(), f.kind, f.definition.enabled))
            .collect();
        assert_eq!(
            names,
            [
                ("everyone-on", FlagKind::Release, true),
                ("everyone-off", FlagKind::Release, false),
                ("nothing", FlagKind::Release, false),
                ("testers", FlagKind::Release, true),
                ("by-id", FlagKind::Release, true),
                ("half", FlagKind::Release, true),
                ("odd-percent", FlagKind::Release, true),
                ("picky", FlagKind::Release, false),
                ("kill.payments", FlagKind::KillSwitch, true),
                ("dormant", FlagKind::KillSwitch, false),
                ("sampled", FlagKind::Release, true),
            ]
        );
        assert_eq!(out.flags[0].note, "all in");
        assert_eq!(strategy_names(&out, "everyone-on"), ["default"]);
        assert_eq!(strategy_names(&out, "everyone-off"), ["userWithId"]);
        assert_eq!(strategy_names(&out, "by-id"), ["userWithId", "default"]);
        assert_eq!(strategy_names(&out, "half"), ["flexibleRollout"]);
        assert_eq!(strategy_names(&out, "sampled"), ["gradualRolloutRandom"]);
        assert_eq!(out.user_keys, Some(KeyKind::PrimaryKeys));
        assert_eq!(out.group_keys, Some(KeyKind::PrimaryKeys));

        let skipped: Vec<(&str, &str)> = out
            .not_imported
            .iter()
            .map(|n| (n.flag.as_str(), n.attribute.as_str()))
            .collect();
        assert_eq!(
            skipped,
            [
                ("half", "rollout"),
                ("odd-percent", "percent"),
                ("picky", "superusers"),
                ("picky", "staff"),
                ("picky", "authenticated"),
                ("picky", "languages"),
                ("bad name!", "name"),
                ("half", "name"),
            ]
        );
        assert_eq!(out.not_imported[1].detail, "12.5 % imported as 13 %");

        let e = engine(&out);
        let cases = [
            ("everyone-on", Context::default(), true),
            ("everyone-off", Context::default().with_user_id("5"), false),
            ("nothing", Context::default().with_user_id("5"), false),
            ("testers", Context::default(), false),
            (
                "testers",
                Context::default().with_property("testing", "true"),
                true,
            ),
            ("by-id", Context::default().with_user_id("7"), true),
            ("by-id", Context::default().with_user_id("8"), false),
            (
                "by-id",
                Context::default().with_property("groups", "1, 2,3"),
                true,
            ),
            (
                "by-id",
                Context::default().with_property("groups", "12,22"),
                false,
            ),
            ("kill.payments", Context::default(), true),
            ("dormant", Context::default(), false),
        ];
        for (flag, ctx, expected) in cases {
            assert_eq!(is_on(&e, flag, ctx.clone()), expected, "{flag} for {ctx:?}");
        }
    }

    #[test]
    fn natural_keys() {
        let out = import(json!([
            flag(
                "named",
                json!({
                    "users": [["alice"], ["bob"], ["x", "y"], ["comma,user"]],
                    "groups": [["editors"], ["a.b (c)"], "plain"]
                })
            ),
            flag(
                "uuid",
                json!({"users": ["0b6e3cbb-8f0e-4b8e-9d7a-3f3f3f3f3f3f"]})
            )
        ]));
        assert_eq!(out.user_keys, Some(KeyKind::Mixed));
        assert_eq!(out.group_keys, Some(KeyKind::NaturalKeys));
        let e = engine(&out);
        let cases = [
            ("named", Context::default().with_user_id("bob"), true),
            ("named", Context::default().with_user_id("x"), false),
            (
                "named",
                Context::default().with_property("groups", "staff,a.b (c)"),
                true,
            ),
            (
                "named",
                Context::default().with_property("groups", "a.b (cc)"),
                false,
            ),
            (
                "named",
                Context::default().with_property("groups", "editorsX"),
                false,
            ),
            (
                "uuid",
                Context::default().with_user_id("0b6e3cbb-8f0e-4b8e-9d7a-3f3f3f3f3f3f"),
                true,
            ),
        ];
        for (flag, ctx, expected) in cases {
            assert_eq!(is_on(&e, flag, ctx.clone()), expected, "{flag} for {ctx:?}");
        }
        let skipped: Vec<&str> = out
            .not_imported
            .iter()
            .map(|n| n.attribute.as_str())
            .collect();
        assert_eq!(skipped, ["users", "users"]);
    }

    #[test]
    fn many_groups_split_over_several_patterns() {
        let groups: Vec<String> = (0..300).map(|i| format!("group-number-{i}")).collect();
        let out = import(json!([flag("crowd", json!({"groups": groups}))]));
        let strategies = &out.flags[0].definition.strategies;
        assert!(strategies.len() > 1, "{} strategies", strategies.len());
        let e = engine(&out);
        for g in ["group-number-0", "group-number-150", "group-number-299"] {
            assert!(
                is_on(&e, "crowd", Context::default().with_property("groups", g)),
                "{g}"
            );
        }
        assert!(!is_on(
            &e,
            "crowd",
            Context::default().with_property("groups", "group-number-300")
        ));
    }

    #[test]
    fn refusals() {
        let cases = [
            (
                "not json",
                "not a valid Django dumpdata JSON: expected ident at line 1 column 2",
            ),
            (
                "{}",
                "not a valid Django dumpdata JSON: expected a list of objects",
            ),
            ("[1]", "[0]: not an object"),
            (
                r#"[{"model": "waffle.flag"}]"#,
                "[0].fields: missing or not an object",
            ),
            (
                r#"[{"model": "waffle.flag", "fields": {"name": 3}}]"#,
                "[0].fields.name: missing or not a string",
            ),
        ];
        for (text, expected) in cases {
            assert_eq!(
                import_dumpdata(text).map(|_| ()).map_err(|e| e.to_string()),
                Err(expected.to_owned()),
                "{text}"
            );
        }
        let empty = import_dumpdata("[]").expect("an empty dump");
        assert!(empty.flags.is_empty() && empty.user_keys.is_none());
    }
}
