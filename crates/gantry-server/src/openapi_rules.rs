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
/// Graphite's `from`/`until` (`parse_graphite_time`): epoch seconds (any digits but eight),
/// `now`, `-6h`,
/// `now-1d`, `today`, `yesterday`, `YYYYMMDD`, `HH:MM_YYYYMMDD`; graphite-web reads more
/// (`noon`, `MM/DD/YY`, unit names), which the server reads too.
pub const GRAPHITE_TIME_PATTERN: &str = "^([0-9]{1,7}|[0-9]{9,11}|[01][0-9]{11}|2[0-4][0-9]{10}|now|today|yesterday|(now)?[-+][1-9][0-9]{0,3}(s|min|h|d|w)|(19|20)[0-9]{2}(0[1-9]|1[0-2])(0[1-9]|1[0-9]|2[0-8])|([01][0-9]|2[0-3]):[0-5][0-9]_(19|20)[0-9]{2}(0[1-9]|1[0-2])(0[1-9]|1[0-9]|2[0-8]))$";
/// An ETag this API gives out (a revision number), strong or weak, quoted.
pub const ETAG_PATTERN: &str = "^(W/)?\"[0-9]{1,18}\"$";
/// A duration as `parse_duration` (humantime) reads it: numbers with units, `30d`, `1h 30m`.
pub const DURATION_PATTERN: &str = "^ *([0-9]{1,4} *(nsec|ns|usec|us|msec|ms|seconds|second|sec|s|minutes|minute|min|m|hours|hour|hr|h|days|day|d|weeks|week|w|months|month|M|years|year|y) *){1,3}$";
/// A flag schedule's `at` (`flags::schedule::parse_at`): RFC 3339, or `+DURATION` from now.
pub const SCHEDULE_AT_PATTERN: &str = "^((19|20)[0-9]{2}-(0[1-9]|1[0-2])-(0[1-9]|1[0-9]|2[0-8])T([01][0-9]|2[0-3]):[0-5][0-9]:[0-5][0-9](\\.[0-9]{1,6})?(Z|[+-](0[0-9]|1[0-2]):[0-5][0-9])|[+][1-9][0-9]{0,5}(s|m|h|d|w))$";
/// A change listing's `cursor` as `Cursor::encode` writes it: `MICROS.ULID`.
pub const CURSOR_PATTERN: &str = "^-?[0-9]{1,18}[.][0-7][0-9A-HJKMNP-TV-Za-hjkmnp-tv-z]{25}$";
/// A build version (`validate_version`): printable ASCII without spaces, `/` or `\`.
pub const VERSION_PATTERN: &str = "^[!-.0-\\[\\]-~]+$";
/// The characters Rust's `char::is_whitespace` (and so `str::trim`) counts as space, as a
/// regular expression class body; written out because `\s` differs between regex dialects.
pub(crate) const SPACE: &str =
    "\\t\\n\\x0b\\x0c\\r \\x85\\xa0\\u1680\\u2000-\\u200a\\u2028\\u2029\\u202f\\u205f\\u3000";

/// One seriesByTag expression: `tag=value`, `tag!=value`, `tag=~regex`, `tag!=~regex` (the
/// pattern states the literal forms; a regex after `=~` is read as graphite-web reads it).
pub const TAG_EXPRESSION_PATTERN: &str = "^[A-Za-z0-9_.-]+!?=[A-Za-z0-9_.-]*$";

pub(crate) fn name() -> Value {
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

/// Text that is not only space (the handlers trim it), of at most `max` characters.
fn text(max: usize) -> Value {
    let mut schema = not_blank();
    merge(&mut schema, json!({"minLength": 1, "maxLength": max}));
    schema
}

/// Text that holds something other than space.
pub(crate) fn not_blank() -> Value {
    json!({"pattern": not_blank_pattern()})
}

/// The pattern of [`not_blank`]: one character that is not space, anywhere.
fn not_blank_pattern() -> String {
    format!("[^{SPACE}]")
}

/// One word without space (a commit id, a role).
fn word(max: usize) -> Value {
    json!({"minLength": 1, "maxLength": max, "pattern": format!("^[^{SPACE}]+$")})
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
const CHANGE_STATUSES: &[&str] = &[
    "in_progress",
    "succeeded",
    "failed",
    "rolled_back",
    "cancelled",
];
/// `gantry_flags::edit::FLAG_TYPES`.
const FLAG_TYPES: &[&str] = &[
    "release",
    "experiment",
    "operational",
    "kill-switch",
    "permission",
];
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
        || one_of(&["pause", "resume", "abort"]),
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
        || json!({"type": "string", "format": "etag", "pattern": ETAG_PATTERN}),
    ),
    // The names in paths: services, environments, flags and segments.
    ("service", "path", &[], name),
    ("env", "path", &[], name),
    (
        "name",
        "path",
        &[
            "/api/v1/flags/*",
            "/api/v1/services/{service}/segments/{name}",
        ],
        flag_name,
    ),
    (
        "name",
        "path",
        &[
            "/api/v1/services/{name}",
            "/api/v1/services/{name}/deploy-config",
        ],
        name,
    ),
    ("source", "path", &["/api/v1/monitors/files/{source}"], name),
    ("status", "query", &["/api/v1/changes"], || {
        one_of(CHANGE_STATUSES)
    }),
    (
        "service",
        "query",
        &["/api/v1/changes", "/api/v1/changes/stream"],
        name,
    ),
    (
        "environment",
        "query",
        &["/api/v1/changes", "/api/v1/changes/stream"],
        name,
    ),
    (
        "cursor",
        "query",
        &["/api/v1/changes"],
        || json!({"pattern": CURSOR_PATTERN}),
    ),
    ("set", "query", &["/events/get_data"], || {
        one_of(&["intersection", "union"])
    }),
    ("format", "query", &["/render"], || one_of(&["json", "csv"])),
    ("format", "query", &["/metrics/find"], || {
        one_of(&["treejson", "completer"])
    }),
    (
        "version",
        "query",
        &["POST /api/v1/builds"],
        || json!({"minLength": 1, "maxLength": 128, "pattern": VERSION_PATTERN}),
    ),
    ("commit", "query", &["POST /api/v1/builds"], || word(128)),
    (
        "url",
        "query",
        &["POST /api/v1/builds"],
        || json!({"pattern": "^https?://[A-Za-z0-9-]+([.][A-Za-z0-9-]+)*(:[0-9]{1,4})?(/[A-Za-z0-9._~-]*)*$"}),
    ),
    ("commit_time", "query", &["POST /api/v1/builds"], api_time),
    (
        "sha256",
        "query",
        &["POST /api/v1/builds"],
        || json!({"pattern": "^[0-9a-f]{64}$"}),
    ),
    // graphite-web reads any number; at most what a screen could ask for in 32 bits.
    (
        "maxDataPoints",
        "query",
        &["/render"],
        || json!({"type": "number", "format": "double", "minimum": 1, "maximum": 2_147_483_647}),
    ),
    // A render target: the pattern states metric paths and globs; the function grammar is
    // not a regular language, so the description names it. A blank target is skipped.
    ("target", "query", &["/render"], || {
        json!({
            "description": "A metric path or glob, as the pattern states, or any expression of the render grammar (functions as `GET /functions` lists them), which no pattern can state",
            "items": {"type": "string", "pattern": "^([A-Za-z_*][A-Za-z0-9_*-]*([.][A-Za-z0-9_*-]+)*)?$"},
        })
    }),
    // The regex crate's syntax, which is not JSON Schema's (ECMA-262) `regex`.
    (
        "filter",
        "query",
        &["/tags"],
        || json!({"format": "rust-regex"}),
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
    ("NewFlag/name", flag_name),
    ("NewFlag/description", || json!({"maxLength": 2000})),
    ("NewFlag/owner", || json!({"maxLength": 200})),
    ("FlagPatch/description", || json!({"maxLength": 2000})),
    ("FlagPatch/owner", || json!({"maxLength": 200})),
    ("SegmentBody/constraints/items", constraint),
    ("TargetBody/constraint", || {
        let mut c = constraint();
        c["type"] = json!(["object", "null"]);
        c
    }),
    (
        "VariantBody/name",
        || json!({"minLength": 1, "pattern": not_blank_pattern()}),
    ),
    ("VariantBody/weight", || json!({"maximum": 1000})),
    ("VariantBody/payload", payload),
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
    ("NewSchedule/at", || json!({"pattern": SCHEDULE_AT_PATTERN})),
    ("NewGraphiteEvent/what", non_empty),
    (
        "NewGraphiteEvent/when",
        || json!({"minimum": 0, "maximum": 253_402_300_799u64}),
    ),
    ("AgentHello/running/items", ulid),
    ("HostRelease/build_id", ulid),
    ("LogCount/service", name),
    ("LogCount/name", name),
    ("NewFlag/type", flag_type),
    ("FlagPatch/type", flag_type),
    // An SDK scope (client, frontend) is alone on its token.
    ("NewToken/scopes", || {
        json!({
            "minItems": 1,
            "if": {"contains": {"pattern": "^(client|frontend):"}},
            "then": {"maxItems": 1},
        })
    }),
    (
        "NewToken/expires_in",
        || json!({"pattern": DURATION_PATTERN}),
    ),
    (
        "IncidentEdit/postmortem",
        || json!({"pattern": "^https?://", "maxLength": 2000}),
    ),
    ("NewChange/summary", || json!({"type": "string"})),
    ("Size/unit", || json!({"minLength": 1, "maxLength": 32})),
    (
        "CommitRange/from",
        || json!({"minLength": 1, "maxLength": 128, "pattern": "^[A-Za-z0-9._/-]+$"}),
    ),
    (
        "CommitRange/to",
        || json!({"minLength": 1, "maxLength": 128, "pattern": "^[A-Za-z0-9._/-]+$"}),
    ),
    ("NewChange/links", || json!({"maxItems": 50})),
    (
        "Link/url",
        || json!({"maxLength": 2048, "pattern": format!("^https?://[^{SPACE}]*$")}),
    ),
    ("Link/title", || json!({"maxLength": 200})),
    ("Size/value", || json!({"minimum": 0})),
    ("NewService/environments", || json!({"uniqueItems": true})),
    ("Enrollment/roles/items", name),
    // The host's token is named `host.NAME`, itself a name of at most 64 characters.
    ("Enrollment/name", || json!({"maxLength": 59})),
    ("NewIncident/title", || text(200)),
    ("IncidentEdit/title", || text(200)),
    ("NewNote/text", || text(10_000)),
    ("NewSilence/matcher", matcher),
    ("NewSilence/reason", || text(1000)),
    ("NewWindow/matcher", matcher),
    ("NewWindow/reason", || text(1000)),
    ("NewWindow/weekdays", || json!({"minItems": 1})),
    (
        "NewWindow/weekdays/items",
        || json!({"pattern": weekday_pattern()}),
    ),
    (
        "NewWindow/start",
        || json!({"pattern": "^([01]?[0-9]|2[0-3]):[0-5]?[0-9]$"}),
    ),
    (
        "NewWindow/duration_secs",
        || json!({"minimum": 1, "maximum": 604_800}),
    ),
    (
        "ToggleCounts/variants/additionalProperties",
        || json!({"minimum": 0}),
    ),
];

/// Rules of a whole component schema (`required`, conditions between fields), merged into it.
const SCHEMAS: &[PropertyRule] = &[
    // `summary` is required of every kind, and a change in progress has not finished.
    ("NewChange", || {
        json!({
            "required": ["summary"],
            "if": {"required": ["status"], "properties": {"status": {"const": "in_progress"}}},
            "then": {"properties": {"finished_at": {"type": "null"}}},
        })
    }),
    // An edit changes something.
    ("IncidentEdit", || {
        any_given(&["title", "severity", "impact_started_at", "postmortem"])
    }),
    // A patch changes something: one of its fields is given (a null is no change).
    ("ChangePatch", || {
        any_given(&["status", "finished_at", "description"])
    }),
    // Exactly one of the three.
    ("TargetBody", || {
        let only = |field: &str| {
            let others: Vec<&str> = ["users", "groups", "constraint"]
                .into_iter()
                .filter(|f| *f != field)
                .collect();
            json!({
                "required": [field],
                "properties": {field: {"not": {"type": "null"}}},
                "not": {"anyOf": others.iter().map(|o| json!({
                    "required": [o], "properties": {*o: {"not": {"type": "null"}}}
                })).collect::<Vec<_>>()},
            })
        };
        json!({"oneOf": [only("users"), only("groups"), only("constraint")]})
    }),
    // A finished migration has a finished status.
    ("MigrationRecord", || {
        json!({
            "if": {"properties": {"status": {"const": "in_progress"}}, "required": ["status"]},
            "then": {"properties": {"finished_at": {"type": "null"}}},
        })
    }),
    // A rollout is a deploy unless `kind` says otherwise; a deploy names its build, a
    // promote the environment it takes the build from, a rollback neither.
    ("NewRollout", || {
        let absent = json!({"type": "null"});
        let kind_is = |kinds: Value| json!({"properties": {"kind": {"enum": kinds}}});
        json!({"allOf": [
            {
                "if": {"anyOf": [{"not": {"required": ["kind"]}}, kind_is(json!(["deploy", null]))]},
                "then": {"required": ["build"], "properties": {"build": {"type": "string"}, "from": absent}},
            },
            {
                "if": {"required": ["kind"], "properties": {"kind": {"const": "promote"}}},
                "then": {"required": ["from"], "properties": {"from": {"type": "string"}, "build": absent}},
            },
            {
                "if": {"required": ["kind"], "properties": {"kind": {"const": "rollback"}}},
                "then": {"properties": {"from": absent, "build": absent}},
            },
        ]})
    }),
    // A rollout schedule gives its percent; the others give none.
    ("NewSchedule", || {
        json!({
            "if": {"properties": {"action": {"const": "rollout"}}},
            "then": {"required": ["percent"], "properties": {"percent": {"type": "integer", "maximum": 100}}},
            "else": {"properties": {"percent": {"type": "null"}}},
        })
    }),
];

/// At least one of `fields` is given, and not as `null` (which reads as absent).
fn any_given(fields: &[&str]) -> Value {
    let given = |f: &&str| json!({"required": [f], "properties": {*f: {"not": {"type": "null"}}}});
    json!({"anyOf": fields.iter().map(given).collect::<Vec<_>>()})
}

/// A flag's or segment's name (`gantry_flags::validate::validate_flag_name`).
fn flag_name() -> Value {
    json!({"minLength": 1, "maxLength": 64, "pattern": "^[A-Za-z0-9._-]+$"})
}

/// A number as the flag engine reads one (a finite `f64`, space around it allowed).
fn number_text() -> String {
    format!("^[{SPACE}]*[+-]?([0-9]{{1,15}}[.]?[0-9]{{0,6}}|[.][0-9]{{1,6}})([eE][+-]?[0-9]{{1,2}})?[{SPACE}]*$")
}

/// An Unleash constraint (`gantry_flags::model::Constraint`) as the engine checks it: the
/// operator decides what `value` or `values` must hold.
fn constraint() -> Value {
    let rfc3339 = "^[0-9]{4}-(0[1-9]|1[0-2])-(0[1-9]|1[0-9]|2[0-8])T([01][0-9]|2[0-3]):[0-5][0-9]:[0-5][0-9](\\.[0-9]{1,9})?(Z|[+-]([01][0-9]|2[0-3]):[0-5][0-9])$";
    let numeric = "(0|[1-9][0-9]{0,9})";
    let pre = "(0|[1-9][0-9]{0,9}|[0-9]*[A-Za-z-][0-9A-Za-z-]*)";
    let semver = format!(
        "^{numeric}\\.{numeric}\\.{numeric}(-{pre}(\\.{pre})*)?(\\+[0-9A-Za-z-]+(\\.[0-9A-Za-z-]+)*)?$"
    );
    let octet = "(25[0-5]|2[0-4][0-9]|1[0-9][0-9]|[1-9]?[0-9])";
    let ipv4 = format!("^{octet}(\\.{octet}){{3}}(/([0-9]|[12][0-9]|3[0-2]))?$");
    let value_for = |ops: &[&str], value: Value| {
        json!({
            "if": {"required": ["operator"], "properties": {"operator": {"enum": ops}}},
            "then": {"required": ["value"], "properties": {"value": value}},
        })
    };
    json!({
        "type": "object",
        "required": ["contextName", "operator"],
        "properties": {
            "contextName": {"type": "string", "minLength": 1, "pattern": not_blank_pattern()},
            "operator": {"enum": [
                "IN", "NOT_IN", "STR_CONTAINS", "STR_STARTS_WITH", "STR_ENDS_WITH",
                "NUM_EQ", "NUM_GT", "NUM_GTE", "NUM_LT", "NUM_LTE", "DATE_AFTER", "DATE_BEFORE",
                "SEMVER_EQ", "SEMVER_GT", "SEMVER_GTE", "SEMVER_LT", "SEMVER_LTE", "REGEX",
                "IN_CIDR",
            ]},
            "values": {"type": ["array", "null"], "maxItems": 1000, "items": {"type": "string"}},
            // Read leniently, as Unleash's SDKs do: any JSON value but null is read as text.
            "value": {},
            "inverted": {"type": "boolean"},
            "caseInsensitive": {"type": "boolean"},
        },
        "allOf": [
            value_for(&["NUM_EQ", "NUM_GT", "NUM_GTE", "NUM_LT", "NUM_LTE"],
                json!({"type": ["string", "number"], "pattern": number_text()})),
            value_for(&["DATE_AFTER", "DATE_BEFORE"], json!({"type": "string", "pattern": rfc3339})),
            value_for(&["SEMVER_EQ", "SEMVER_GT", "SEMVER_GTE", "SEMVER_LT", "SEMVER_LTE"],
                json!({"type": "string", "pattern": semver})),
            value_for(&["REGEX"], json!({"type": ["string", "number", "boolean"], "format": "regex", "maxLength": 1024})),
            {
                "if": {"required": ["operator"], "properties": {"operator": {"const": "IN_CIDR"}}},
                "then": {"properties": {"values": {"items": {"pattern": ipv4}}}},
            },
        ],
    })
}

/// A variant's payload (`gantry_flags::model::Payload`): `json` holds JSON text (stated
/// here for scalars and empty containers), `number` a number.
fn payload() -> Value {
    let json_text = format!(
        "^[{SPACE}]*(-?(0|[1-9][0-9]{{0,15}})([.][0-9]{{1,6}})?|true|false|null|\"[A-Za-z0-9 ]*\"|\\[\\]|\\{{\\}})[{SPACE}]*$"
    );
    json!({
        "type": ["object", "null"],
        "required": ["type", "value"],
        "properties": {
            "type": {"enum": ["string", "json", "number", "csv"]},
            // Read leniently, as Unleash's SDKs do: any JSON value is read as text.
            "value": {},
        },
        "allOf": [
            {
                "if": {"properties": {"type": {"const": "json"}}},
                "then": {"properties": {"value": {"not": {"type": "null"}, "pattern": json_text}}},
            },
            {
                "if": {"properties": {"type": {"const": "number"}}},
                "then": {"properties": {"value": {"type": ["string", "number"], "pattern": number_text()}}},
            },
        ],
    })
}

fn flag_type() -> Value {
    let mut words: Vec<Value> = FLAG_TYPES.iter().map(|t| json!(t)).collect();
    words.push(Value::Null);
    json!({"enum": words})
}

/// `chrono::Weekday`'s names, as it reads them: three letters or the whole name, any case.
fn weekday_pattern() -> String {
    let any_case = |word: &str| -> String {
        word.chars()
            .map(|c| format!("[{}{}]", c.to_ascii_uppercase(), c.to_ascii_lowercase()))
            .collect()
    };
    let days = [
        ("mon", "day"),
        ("tue", "sday"),
        ("wed", "nesday"),
        ("thu", "rsday"),
        ("fri", "day"),
        ("sat", "urday"),
        ("sun", "day"),
    ]
    .iter()
    .map(|(short, rest)| format!("{}({})?", any_case(short), any_case(rest)))
    .collect::<Vec<_>>()
    .join("|");
    format!("^({days})$")
}

/// A silence's or window's matcher (`gantry_monitors::silence::Matcher`): one monitor (or
/// a host's liveness, `host:NAME`), a service's monitors, or a label.
fn matcher() -> Value {
    let nonempty = json!({"type": "string", "minLength": 1});
    let monitor_name = json!({
        "type": "string",
        "pattern": "^(host:)?[A-Za-z0-9][A-Za-z0-9._-]{0,63}$",
    });
    let mut name_or_null = name();
    name_or_null["type"] = json!(["string", "null"]);
    let mut service = name();
    service["type"] = json!("string");
    json!({
        "type": "object",
        "minProperties": 1,
        "maxProperties": 1,
        "properties": {
            "monitor": {
                "type": "object",
                "additionalProperties": false,
                "required": ["name"],
                "properties": {"name": monitor_name},
            },
            "service": {
                "type": "object",
                "additionalProperties": false,
                "required": ["service"],
                "properties": {"service": service, "environment": name_or_null},
            },
            "label": {
                "type": "object",
                "additionalProperties": false,
                "required": ["key", "value"],
                "properties": {"key": nonempty, "value": nonempty},
            },
        },
        "additionalProperties": false,
    })
}

/// The document a server on default settings serves, with an artifact limit of 1 MiB.
#[cfg(test)]
pub(crate) async fn served_document_for_tests() -> Value {
    let dir = tempfile::tempdir().expect("a temporary directory");
    let store = gantry_store::SqliteStore::open(&dir.path().join("gantry.db"), Default::default())
        .await
        .expect("a store");
    let tsdb = gantry_tsdb::Tsdb::open(&dir.path().join("metrics"), Default::default())
        .expect("a metrics store");
    let state = crate::AppState::new(
        std::sync::Arc::new(store),
        tsdb,
        crate::ServerConfig::default(),
    );
    let (_, generated) = crate::app::routes(&state);
    serde_json::from_str(&document_json(&generated, 1 << 20)).expect("the document is JSON")
}

/// States the rules above in `doc`, the document as JSON (as served: some keywords used
/// here, `not` and `contentSchema`, have no place in utoipa's types).
pub fn apply(doc: &mut Value) {
    apply_parameters(doc);
    required_parameters(doc);
    apply_properties(doc);
    apply_schemas(doc);
    cause(doc);
    retry_body(doc);
    new_segment(doc);
    stream_events(doc);
    object_bodies(doc);
    crate::openapi_toml::apply(doc);
}

/// The document as served at `/api/v1/openapi.json`: utoipa's, with the rules above and this
/// server's artifact limit (`[ship] max_artifact_bytes`) as the most a build may declare.
pub fn document_json(doc: &OpenApiDoc, max_artifact_bytes: u64) -> String {
    let mut value = serde_json::to_value(doc).expect("the OpenAPI document is JSON");
    apply(&mut value);
    // An uploaded artifact is not empty (with `url`, the body is not read).
    if let Some(body) = value.pointer_mut(
        "/paths/~1api~1v1~1builds/post/requestBody/content/application~1octet-stream/schema",
    ) {
        merge(body, json!({"minLength": 1}));
    }
    if let Some(size) = parameter_mut(&mut value, "POST /api/v1/builds", "size") {
        merge(&mut size["schema"], json!({"maximum": max_artifact_bytes}));
    }
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
                    let on_path = |rule: &&str| match rule.strip_suffix('*') {
                        Some(prefix) => path.starts_with(prefix),
                        None => *rule == path || *rule == labelled,
                    };
                    if *rule_name != name
                        || *rule_in != location
                        || !(rule_paths.is_empty() || rule_paths.iter().any(on_path))
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

/// Parameters the Rust side reads as optional to name them in its own error, but that the
/// operation needs: (operation, parameter).
const REQUIRED_PARAMETERS: &[(&str, &str)] = &[("DELETE /api/v1/metrics", "pattern")];

fn required_parameters(doc: &mut Value) {
    for (operation, name) in REQUIRED_PARAMETERS {
        if let Some(parameter) = parameter_mut(doc, operation, name) {
            parameter["required"] = json!(true);
        }
    }
}

/// The parameter `name` of `operation` (`METHOD /path`) in `doc`.
fn parameter_mut<'a>(doc: &'a mut Value, operation: &str, name: &str) -> Option<&'a mut Value> {
    let (method, path) = operation.split_once(' ')?;
    let pointer = format!(
        "/paths/{}/{}/parameters",
        path.replace('~', "~0").replace('/', "~1"),
        method.to_lowercase()
    );
    doc.pointer_mut(&pointer)?
        .as_array_mut()?
        .iter_mut()
        .find(|p| p.get("name").and_then(Value::as_str) == Some(name))
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

fn apply_schemas(doc: &mut Value) {
    for (schema, keywords) in SCHEMAS {
        if let Some(target) = doc.pointer_mut(&format!("/components/schemas/{schema}")) {
            let mut keywords = keywords();
            // `required` adds to what the type already requires.
            if let (Some(Value::Array(more)), Some(Value::Array(had))) =
                (keywords.get("required").cloned(), target.get("required"))
            {
                let mut all = had.clone();
                all.extend(more.into_iter().filter(|f| !had.contains(f)));
                keywords["required"] = Value::Array(all);
            }
            merge(target, keywords);
        }
    }
}

/// A confirmed cause: a change by its id, or what else it was (not only space).
fn cause(doc: &mut Value) {
    if let Some(Value::Array(kinds)) = doc.pointer_mut("/components/schemas/Cause/oneOf") {
        for kind in kinds {
            if let Some(change) = kind.pointer_mut("/properties/change") {
                merge(change, ulid());
            }
            if let Some(what) = kind.pointer_mut("/properties/what") {
                merge(
                    what,
                    json!({"minLength": 1, "pattern": not_blank_pattern()}),
                );
            }
        }
    }
}

/// A new segment is named in its body (`PUT` names it in the path and ignores the body's).
fn new_segment(doc: &mut Value) {
    if let Some(schema) = doc.pointer_mut(
        "/paths/~1api~1v1~1services~1{service}~1segments/post/requestBody/content/application~1json/schema",
    ) {
        let mut named = flag_name();
        named["type"] = json!("string");
        *schema = json!({
            "allOf": [
                {"$ref": "#/components/schemas/SegmentBody"},
                {"required": ["name"], "properties": {"name": named}},
            ],
        });
    }
}

/// A retry's body is optional; when sent it is an object, and `assume_done` and `rerun`
/// exclude each other.
fn retry_body(doc: &mut Value) {
    if let Some(schema) = doc.pointer_mut(
        "/paths/~1api~1v1~1migrate~1jobs~1{id}~1retry/post/requestBody/content/application~1json/schema",
    ) {
        *schema = json!({
            "allOf": [{"$ref": "#/components/schemas/RetryOptions"}],
            "not": {
                "required": ["assume_done", "rerun"],
                "properties": {"assume_done": {"const": true}, "rerun": {"const": true}},
            },
        });
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

#[cfg(test)]
mod tests {
    use super::*;

    fn matches(pattern: &str, text: &str) -> bool {
        regex::Regex::new(pattern).unwrap().is_match(text)
    }

    /// The patterns hold what the server writes and reads, and refuse what it refuses.
    #[test]
    fn patterns_agree_with_the_readers() {
        let cursor = gantry_core::Cursor {
            started_at_micros: 1_796_667_460_778_975,
            id: ulid::Ulid::new(),
        }
        .encode();
        assert!(matches(CURSOR_PATTERN, &cursor), "{cursor}");
        assert!(gantry_core::Cursor::decode(&cursor).is_ok());

        let weekdays = weekday_pattern();
        for day in [
            "Mon",
            "monday",
            "TUE",
            "Wednesday",
            "thu",
            "Fri",
            "saturday",
            "Sun",
        ] {
            assert!(matches(&weekdays, day), "{day}");
            assert!(day.parse::<chrono::Weekday>().is_ok(), "{day}");
        }
        for day in ["", "Mo", "Mondays", "Sunday "] {
            assert!(!matches(&weekdays, day), "{day}");
            assert!(day.parse::<chrono::Weekday>().is_err(), "{day}");
        }

        for version in ["1.2.3", "v2", "2026-12-07_1", "a+b"] {
            assert!(matches(VERSION_PATTERN, version), "{version}");
            assert!(
                gantry_core::ship::validate_version(version).is_ok(),
                "{version}"
            );
        }
        for version in ["a/b", "a\\b", "a b", "é"] {
            assert!(!matches(VERSION_PATTERN, version), "{version}");
            assert!(
                gantry_core::ship::validate_version(version).is_err(),
                "{version}"
            );
        }

        for duration in ["30d", "12h", "1h 30m", " 90s "] {
            assert!(matches(DURATION_PATTERN, duration), "{duration}");
            assert!(
                gantry_core::time::parse_duration("x", duration).is_ok(),
                "{duration}"
            );
        }
        assert!(!matches(DURATION_PATTERN, "soon"));

        let text = text(10)
            .get("pattern")
            .and_then(Value::as_str)
            .unwrap()
            .to_string();
        assert!(matches(&text, " a "));
        for blank in ["", " ", "\t\n", "\u{a0}\u{3000}"] {
            assert!(!matches(&text, blank), "{blank:?}");
            assert!(blank.trim().is_empty());
        }
    }

    #[tokio::test]
    async fn the_served_document_states_the_rules() {
        let doc = served_document_for_tests().await;
        let size = doc
            .pointer("/paths/~1api~1v1~1builds/post/parameters")
            .and_then(Value::as_array)
            .and_then(|ps| ps.iter().find(|p| p["name"] == "size"))
            .unwrap();
        assert_eq!(size["schema"]["maximum"], 1 << 20);
        let delete = doc
            .pointer("/paths/~1api~1v1~1metrics/delete/parameters")
            .and_then(Value::as_array)
            .and_then(|ps| ps.iter().find(|p| p["name"] == "pattern"))
            .unwrap();
        assert_eq!(delete["required"], true);
        let change = &doc["components"]["schemas"]["NewChange"];
        let required = change["required"].as_array().unwrap();
        assert!(required.contains(&json!("kind")) && required.contains(&json!("summary")));
        assert!(doc
            .pointer("/paths/~1api~1v1~1migrate~1jobs~1{id}~1retry/post/requestBody")
            .is_some());
    }
}
