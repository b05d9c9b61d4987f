//! The input rules the handlers enforce, stated in the OpenAPI document where the Rust types
//! alone say less (a `String` that must be a name, a ULID, a time, one of a few words).
//! [`document_json`] applies them once to the finished document, as served (see `app::app`):
//!
//! - [`PARAMETERS`]: a parameter by name and location, on every operation or on the paths
//!   listed (`/path`, or `METHOD /path` for one operation), gets the schema keywords given
//!   (merged into its schema);
//! - [`PROPERTIES`]: a property of a component schema (`Schema/property`, `/items` for an
//!   array's items) gets the keywords given;
//! - [`stream_events`]: the text/event-stream answers describe their events (`event`, `id`,
//!   `data`), the first (`ready`) included;
//! - [`object_bodies`]: an optional JSON body typed `object` or `null` (the SDKs' contexts)
//!   is an object when sent: no body is the empty one, a JSON `null` is refused, and context
//!   values are strings, numbers or booleans (nested values are refused).
//!
//! Only rules the server refuses with 400 belong here: a rule stated here and not enforced
//! would make the document promise a refusal the server does not give.

use serde_json::{json, Value};
use utoipa::openapi::OpenApi as OpenApiDoc;

/// gantry-core's names (`names::validate_name`): 1 to 64 of ASCII letters, digits, `.`, `_`,
/// `-`, starting with a letter or digit.
pub const NAME_PATTERN: &str = "^[A-Za-z0-9][A-Za-z0-9._-]*$";
/// A ULID as the `ulid` crate reads it: 26 Crockford base-32 characters, the first 0 to 7.
pub const ULID_PATTERN: &str = "^[0-7][0-9A-HJKMNP-TV-Za-hjkmnp-tv-z]{25}$";
/// `parse_api_time`: RFC 3339, epoch seconds, or a duration ago (`7d`, `-36h`). The pattern
/// states a part of what is read (dates up to the 28th, for one) that is always read.
pub const API_TIME_PATTERN: &str = "^((19|20)[0-9]{2}-(0[1-9]|1[0-2])-(0[1-9]|1[0-9]|2[0-8])T([01][0-9]|2[0-3]):[0-5][0-9]:[0-5][0-9](\\.[0-9]{1,6})?(Z|[+-](0[0-9]|1[0-2]):[0-5][0-9])|[0-9]{1,11}(\\.[0-9]{1,6})?|-?[1-9][0-9]{0,3}[smhd])$";
/// Graphite's `from`/`until` (`parse_graphite_time`): epoch seconds, `now`, `-6h`,
/// `now-1d`, `today`, `yesterday`, `YYYYMMDD`, `HH:MM_YYYYMMDD`; graphite-web reads more
/// (`noon`, `MM/DD/YY`, unit names), which the server reads too.
pub const GRAPHITE_TIME_PATTERN: &str = "^([0-9]{9,10}|now|today|yesterday|(now)?[-+][1-9][0-9]{0,3}(s|min|h|d|w)|(19|20)[0-9]{2}(0[1-9]|1[0-2])(0[1-9]|1[0-9]|2[0-8])|([01][0-9]|2[0-3]):[0-5][0-9]_(19|20)[0-9]{2}(0[1-9]|1[0-2])(0[1-9]|1[0-9]|2[0-8]))$";
/// An ETag this API gives out (a revision number), strong or weak, quoted.
pub const ETAG_PATTERN: &str = "^(W/)?\"[0-9]{1,18}\"$";
/// One seriesByTag expression: `tag=value`, `tag!=value`, `tag=~regex`, `tag!=~regex` (the
/// pattern states the literal forms; a regex after `=~` is read as graphite-web reads it).
pub const TAG_EXPRESSION_PATTERN: &str = "^[A-Za-z0-9_.-]+!?=[A-Za-z0-9_.-]*$";

fn name() -> Value {
    json!({"minLength": 1, "maxLength": 64, "pattern": NAME_PATTERN})
}

fn ulid() -> Value {
    json!({"minLength": 26, "maxLength": 26, "pattern": ULID_PATTERN})
}

fn api_time() -> Value {
    json!({"pattern": API_TIME_PATTERN})
}

/// A time in a JSON body (`deserialize_api_time`): a string as [`API_TIME_PATTERN`], or a
/// number of epoch seconds.
fn body_time() -> Value {
    json!({
        "type": ["string", "number", "null"],
        "pattern": API_TIME_PATTERN,
        "minimum": 0,
        "maximum": 253_402_300_799u64,
    })
}

fn graphite_time() -> Value {
    json!({"pattern": GRAPHITE_TIME_PATTERN})
}

fn one_of(words: &[&str]) -> Value {
    json!({"enum": words})
}

fn non_empty() -> Value {
    json!({"minLength": 1})
}

const CHANGE_KINDS: &[&str] = &["deploy", "rollback", "flag", "migration", "config", "note"];
const JOB_STATES: &str = "(queued|running|paused|succeeded|failed|interrupted|aborted)";

/// (parameter, location, paths (empty: every path), keywords).
type ParameterRule = (
    &'static str,
    &'static str,
    &'static [&'static str],
    fn() -> Value,
);

const PARAMETERS: &[ParameterRule] = &[
    // Every `{id}` of this API is a ULID.
    ("id", "path", &[], ulid),
    (
        "action",
        "path",
        &["/api/v1/incidents/{id}/{action}"],
        || one_of(&["ack", "mitigate", "resolve", "rollback", "flag-off"]),
    ),
    (
        "action",
        "path",
        &["/api/v1/migrate/jobs/{id}/{action}"],
        || one_of(&["pause", "resume", "abort", "retry"]),
    ),
    (
        "action",
        "path",
        &["/api/v1/rollouts/{id}/{action}"],
        || one_of(&["pause", "resume", "abort"]),
    ),
    (
        "If-Match",
        "header",
        &[],
        || json!({"type": "string", "pattern": ETAG_PATTERN}),
    ),
    ("since", "query", &[], api_time),
    (
        "until",
        "query",
        &[
            "/api/v1/changes",
            "/api/v1/incidents",
            "/api/v1/report",
            "/api/v1/verdicts",
        ],
        api_time,
    ),
    (
        "until",
        "query",
        &["/events/get_data", "/render"],
        graphite_time,
    ),
    (
        "from",
        "query",
        &["/events/get_data", "/render"],
        graphite_time,
    ),
    ("state", "query", &["/api/v1/alerts"], || {
        one_of(&["pending", "delivered", "failed"])
    }),
    (
        "state",
        "query",
        &["/api/v1/migrate/jobs"],
        || json!({"pattern": format!("^({JOB_STATES}(,{JOB_STATES})*)?$")}),
    ),
    (
        "kind",
        "query",
        &["/api/v1/changes", "/api/v1/changes/stream"],
        || one_of(CHANGE_KINDS),
    ),
    (
        "limit",
        "query",
        &["/api/v1/changes"],
        || json!({"pattern": "^([1-9][0-9]{0,2}|1000)$"}),
    ),
    ("by", "query", &["/api/v1/report"], || {
        one_of(&["day", "week", "month"])
    }),
    (
        "service",
        "query",
        &["/api/v1/report", "POST /api/v1/builds"],
        name,
    ),
    ("environment", "query", &["/api/v1/report"], name),
    (
        "days",
        "query",
        &["/api/v1/flags/stale"],
        || json!({"minimum": 1, "maximum": 3650}),
    ),
    ("pattern", "query", &["DELETE /api/v1/metrics"], non_empty),
    ("query", "query", &["/metrics/find"], non_empty),
    (
        "expr",
        "query",
        &[],
        || json!({"minItems": 1, "items": {"type": "string", "pattern": TAG_EXPRESSION_PATTERN}}),
    ),
];

/// (`Schema/property[/items]`, keywords).
type PropertyRule = (&'static str, fn() -> Value);

const PROPERTIES: &[PropertyRule] = &[
    ("NewChange/kind", || one_of(CHANGE_KINDS)),
    ("NewChange/service", name),
    ("NewChange/environment", name),
    ("NewChange/summary", non_empty),
    ("NewChange/started_at", body_time),
    ("NewChange/finished_at", body_time),
    ("ChangePatch/finished_at", body_time),
    ("NewFlag/service", name),
    ("NewFlag/name", name),
    ("NewService/name", name),
    ("NewService/environments/items", name),
    ("Enrollment/name", name),
    ("Enrollment/environment", name),
    ("NewIncident/service", name),
    ("NewIncident/environment", name),
    ("NewIncident/title", non_empty),
    ("NewIncident/impact_started_at", body_time),
    ("IncidentEdit/impact_started_at", body_time),
    ("MigrationRecord/service", name),
    ("MigrationRecord/environment", name),
    ("MigrationRecord/summary", non_empty),
    ("GateRequest/services/items", name),
    ("GateRequest/environment", name),
    ("NewJob/database", name),
    ("NewRollout/service", name),
    ("NewRollout/environment", name),
    ("NewToken/name", name),
    ("NewToken/scopes/items", || {
        let n = "[A-Za-z0-9][A-Za-z0-9._-]{0,63}";
        json!({"pattern": format!(
            "^((read|write|deploy|flags|migrate|agent)(:{n})?(@{n})?|admin|(client|frontend):{n}@{n})$"
        )})
    }),
    ("NewSchedule/action", || {
        one_of(&["enable", "disable", "rollout"])
    }),
    ("NewSchedule/environment", name),
    ("NewGraphiteEvent/what", non_empty),
    (
        "ToggleCounts/variants/additionalProperties",
        || json!({"minimum": 0}),
    ),
];

/// States the rules above in `doc`, the document as JSON (as served: some keywords used
/// here, `not` and `contentSchema`, have no place in utoipa's types).
pub fn apply(doc: &mut Value) {
    apply_parameters(doc);
    apply_properties(doc);
    stream_events(doc);
    object_bodies(doc);
}

/// The document as served at `/api/v1/openapi.json`: utoipa's, with the rules above.
pub fn document_json(doc: &OpenApiDoc) -> String {
    let mut value = serde_json::to_value(doc).expect("the OpenAPI document is JSON");
    apply(&mut value);
    value.to_string()
}

fn merge(target: &mut Value, keywords: Value) {
    if let (Value::Object(target), Value::Object(keywords)) = (target, keywords) {
        for (key, value) in keywords {
            target.insert(key, value);
        }
    }
}

fn apply_parameters(doc: &mut Value) {
    let Some(paths) = doc.get_mut("paths").and_then(Value::as_object_mut) else {
        return;
    };
    for (path, item) in paths.iter_mut() {
        let Some(item) = item.as_object_mut() else {
            continue;
        };
        for (method, operation) in item.iter_mut() {
            let labelled = format!("{} {path}", method.to_uppercase());
            let Some(parameters) = operation
                .get_mut("parameters")
                .and_then(Value::as_array_mut)
            else {
                continue;
            };
            for parameter in parameters {
                let (Some(name), Some(location)) = (
                    parameter
                        .get("name")
                        .and_then(Value::as_str)
                        .map(str::to_owned),
                    parameter
                        .get("in")
                        .and_then(Value::as_str)
                        .map(str::to_owned),
                ) else {
                    continue;
                };
                for (rule_name, rule_in, rule_paths, keywords) in PARAMETERS {
                    if *rule_name != name
                        || *rule_in != location
                        || !(rule_paths.is_empty()
                            || rule_paths.contains(&path.as_str())
                            || rule_paths.contains(&labelled.as_str()))
                    {
                        continue;
                    }
                    if let Some(schema) = parameter.get_mut("schema") {
                        merge(schema, keywords());
                    }
                }
            }
        }
    }
}

fn apply_properties(doc: &mut Value) {
    for (at, keywords) in PROPERTIES {
        let mut parts = at.split('/');
        let (Some(schema), Some(property)) = (parts.next(), parts.next()) else {
            continue;
        };
        let mut pointer = format!("/components/schemas/{schema}/properties/{property}");
        for rest in parts {
            pointer.push('/');
            pointer.push_str(rest);
        }
        if let Some(target) = doc.pointer_mut(&pointer) {
            merge(target, keywords());
        }
    }
}

/// Each stream's `text/event-stream` answer as the events it sends: `event`, `id` and `data`
/// (the JSON of the operation's own schema), after a first `ready` event with an empty `data`
/// where the stream sends one.
fn stream_events(doc: &mut Value) {
    let Some(paths) = doc.get_mut("paths").and_then(Value::as_object_mut) else {
        return;
    };
    for item in paths.values_mut() {
        let Some(item) = item.as_object_mut() else {
            continue;
        };
        for operation in item.values_mut() {
            let Some(media) = operation.pointer_mut("/responses/200/content/text~1event-stream")
            else {
                continue;
            };
            let Some(data) = media.get("schema").cloned() else {
                continue;
            };
            if data.get("$ref").is_none() {
                continue;
            }
            let id = json!({"type": "string", "pattern": "^-?[0-9]+$"});
            media["schema"] = json!({
                "oneOf": [
                    {
                        "description": "The first event: where the stream starts (`id`), no data",
                        "type": "object",
                        "required": ["event"],
                        "properties": {
                            "event": {"const": "ready"},
                            "id": id,
                            "data": {"type": "string"},
                        },
                    },
                    {
                        "type": "object",
                        "required": ["event", "data"],
                        "properties": {
                            "event": {"type": "string", "not": {"const": "ready"}},
                            "id": id,
                            "data": {
                                "type": "string",
                                "contentMediaType": "application/json",
                                "contentSchema": data,
                            },
                        },
                    },
                ],
            });
        }
    }
}

/// An optional JSON body the Rust side takes as `Option<Object>` is documented as `object`
/// or `null`; the server reads no body as an empty one and refuses a JSON `null` (or any
/// other non-object), so when sent it is an object.
fn object_bodies(doc: &mut Value) {
    let Some(paths) = doc.get_mut("paths").and_then(Value::as_object_mut) else {
        return;
    };
    for (path, item) in paths.iter_mut() {
        let ofrep = path.starts_with("/ofrep/");
        let Some(item) = item.as_object_mut() else {
            continue;
        };
        for operation in item.values_mut() {
            let Some(schema) =
                operation.pointer_mut("/requestBody/content/application~1json/schema")
            else {
                continue;
            };
            if schema.get("type") == Some(&json!(["object", "null"])) {
                *schema = sdk_context(ofrep);
            }
        }
    }
}

/// The body of the SDKs' evaluation routes: `{"context": {...}}` (the rest unread) or the
/// context itself; a context's values (and those of its `properties`) are strings, numbers
/// or booleans. OFREP reads only `{"context": {...}}`.
fn sdk_context(ofrep: bool) -> Value {
    let scalar = json!({"type": ["string", "number", "boolean", "null"]});
    // `properties` holds more of them; a scalar there is read as a property of that name.
    let properties = json!({
        "type": ["object", "string", "number", "boolean", "null"],
        "additionalProperties": scalar,
    });
    let context = json!({
        "type": ["object", "null"],
        "properties": {"properties": properties},
        "additionalProperties": scalar,
    });
    if ofrep {
        return json!({"type": "object", "properties": {"context": context}});
    }
    // With a `context`, the rest of the body is not read.
    json!({
        "type": "object",
        "anyOf": [
            {"required": ["context"], "properties": {"context": context}},
            context,
        ],
    })
}
