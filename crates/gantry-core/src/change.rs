//! The change log's record: one event that changed production, its validation and its
//! status rules.

use std::fmt;
use std::str::FromStr;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use ulid::Ulid;
use utoipa::ToSchema;

use crate::names::validate_name;
use crate::Invalid;

/// Longest accepted `summary`, in characters.
pub const MAX_SUMMARY_CHARS: usize = 500;
/// Largest accepted `metadata` object, in bytes of its JSON encoding.
pub const MAX_METADATA_BYTES: usize = 64 * 1024;
/// Largest accepted `description`, in bytes.
pub const MAX_DESCRIPTION_BYTES: usize = 64 * 1024;
/// Most links one change may carry.
pub const MAX_LINKS: usize = 50;
/// Default and largest page size of a change listing.
pub const DEFAULT_LIMIT: u32 = 100;
pub const MAX_LIMIT: u32 = 1000;

/// What kind of event changed production. New kinds are added here as pillars land; an
/// unknown kind is refused rather than stored as free text, so reports can count them.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
#[non_exhaustive]
pub enum ChangeKind {
    Deploy,
    Rollback,
    Flag,
    Migration,
    Config,
    Note,
}

impl ChangeKind {
    pub const ALL: [ChangeKind; 6] = [
        ChangeKind::Deploy,
        ChangeKind::Rollback,
        ChangeKind::Flag,
        ChangeKind::Migration,
        ChangeKind::Config,
        ChangeKind::Note,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            ChangeKind::Deploy => "deploy",
            ChangeKind::Rollback => "rollback",
            ChangeKind::Flag => "flag",
            ChangeKind::Migration => "migration",
            ChangeKind::Config => "config",
            ChangeKind::Note => "note",
        }
    }
}

/// Where a change stands. `in_progress` is the only open state; the others are finished.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum ChangeStatus {
    InProgress,
    Succeeded,
    Failed,
    RolledBack,
    Cancelled,
}

impl ChangeStatus {
    pub const ALL: [ChangeStatus; 5] = [
        ChangeStatus::InProgress,
        ChangeStatus::Succeeded,
        ChangeStatus::Failed,
        ChangeStatus::RolledBack,
        ChangeStatus::Cancelled,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            ChangeStatus::InProgress => "in_progress",
            ChangeStatus::Succeeded => "succeeded",
            ChangeStatus::Failed => "failed",
            ChangeStatus::RolledBack => "rolled_back",
            ChangeStatus::Cancelled => "cancelled",
        }
    }

    pub fn is_finished(self) -> bool {
        self != ChangeStatus::InProgress
    }

    /// A finished change may be re-classified (a `succeeded` deploy later found bad becomes
    /// `rolled_back`), but it never becomes `in_progress` again: that would reopen history.
    pub fn check_transition(self, to: ChangeStatus) -> Result<(), Invalid> {
        if self.is_finished() && to == ChangeStatus::InProgress {
            return Err(Invalid::new(format!(
                "status cannot go from {self} back to in_progress: a finished change stays finished; record a new change instead"
            )));
        }
        Ok(())
    }
}

macro_rules! str_enum {
    ($ty:ident, $what:literal) => {
        impl fmt::Display for $ty {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(self.as_str())
            }
        }

        impl FromStr for $ty {
            type Err = Invalid;
            fn from_str(s: &str) -> Result<Self, Invalid> {
                $ty::ALL
                    .into_iter()
                    .find(|v| v.as_str() == s)
                    .ok_or_else(|| {
                        let expected: Vec<&str> = $ty::ALL.iter().map(|v| v.as_str()).collect();
                        Invalid::new(format!(
                            concat!("unknown ", $what, " '{}'; expected one of {}"),
                            s,
                            expected.join(", ")
                        ))
                    })
            }
        }
    };
}
str_enum!(ChangeKind, "kind");
str_enum!(ChangeStatus, "status");

/// How big a change was, in a unit the team chooses (`commits`, `files`, `lines`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct Size {
    pub value: f64,
    pub unit: String,
}

/// The commits a change ships, `from` exclusive, `to` inclusive, as `git log from..to` reads.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CommitRange {
    pub from: String,
    pub to: String,
}

impl FromStr for CommitRange {
    type Err = Invalid;
    /// Parses `a..b` (git's notation).
    fn from_str(s: &str) -> Result<Self, Invalid> {
        match s.split_once("..") {
            Some((from, to)) if !from.is_empty() && !to.is_empty() && !to.starts_with('.') => {
                Ok(CommitRange {
                    from: from.to_string(),
                    to: to.to_string(),
                })
            }
            _ => Err(Invalid::new(format!(
                "commit range '{s}' is not of the form FROM..TO"
            ))),
        }
    }
}

/// A link from a change to where people read more: the pull request, the CI run, the runbook.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct Link {
    #[serde(default)]
    pub title: String,
    pub url: String,
}

/// One recorded change, as the API returns it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct Change {
    /// ULID set by the server.
    #[schema(value_type = String, example = "01JDQ4Y3V7W2J8X1B2C3D4E5F6")]
    pub id: Ulid,
    pub kind: ChangeKind,
    pub service: Option<String>,
    pub environment: Option<String>,
    /// Name of the token that recorded the change.
    pub actor: String,
    pub summary: String,
    pub description: Option<String>,
    pub status: ChangeStatus,
    pub started_at: DateTime<Utc>,
    pub finished_at: Option<DateTime<Utc>>,
    pub size: Option<Size>,
    pub commit_range: Option<CommitRange>,
    pub links: Vec<Link>,
    #[schema(value_type = Object)]
    pub metadata: serde_json::Map<String, serde_json::Value>,
    /// Every update, oldest first. Present on `GET /api/v1/changes/{id}`, omitted in lists.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub history: Option<Vec<ChangeHistoryEntry>>,
}

impl Change {
    /// The tags a change carries on graphs and in tag queries: its kind, service and
    /// environment, then any `labels` (strings) from its metadata, without repeats.
    pub fn tags(&self) -> Vec<String> {
        let mut tags = vec![self.kind.as_str().to_string()];
        tags.extend(self.service.iter().cloned());
        tags.extend(self.environment.iter().cloned());
        if let Some(serde_json::Value::Array(labels)) = self.metadata.get("labels") {
            tags.extend(labels.iter().filter_map(|l| l.as_str().map(str::to_string)));
        }
        let mut seen = std::collections::HashSet::new();
        tags.retain(|t| seen.insert(t.clone()));
        tags
    }
}

/// One update of a change: who, when, and the fields it set.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct ChangeHistoryEntry {
    pub at: DateTime<Utc>,
    pub actor: String,
    #[schema(value_type = Object)]
    pub fields: serde_json::Map<String, serde_json::Value>,
}

/// The body of `POST /api/v1/changes`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct NewChange {
    #[schema(value_type = String)]
    pub kind: Option<String>,
    pub service: Option<String>,
    pub environment: Option<String>,
    pub summary: Option<String>,
    pub description: Option<String>,
    pub status: Option<ChangeStatus>,
    /// RFC 3339, epoch seconds (a number or a string), or a duration ago (`10m`); default now.
    #[serde(default, deserialize_with = "crate::time::deserialize_api_time")]
    #[schema(value_type = Option<String>)]
    pub started_at: Option<DateTime<Utc>>,
    /// Same formats as `started_at`; only with a finished status.
    #[serde(default, deserialize_with = "crate::time::deserialize_api_time")]
    #[schema(value_type = Option<String>)]
    pub finished_at: Option<DateTime<Utc>>,
    pub size: Option<Size>,
    pub commit_range: Option<CommitRange>,
    #[serde(default)]
    pub links: Vec<Link>,
    #[schema(value_type = Option<Object>)]
    pub metadata: Option<serde_json::Value>,
}

/// A new change that passed every rule, with server-side defaults filled in.
#[derive(Debug, Clone, PartialEq)]
pub struct ValidNewChange {
    pub kind: ChangeKind,
    pub service: Option<String>,
    pub environment: Option<String>,
    pub summary: String,
    pub description: Option<String>,
    pub status: ChangeStatus,
    pub started_at: DateTime<Utc>,
    pub finished_at: Option<DateTime<Utc>>,
    pub size: Option<Size>,
    pub commit_range: Option<CommitRange>,
    pub links: Vec<Link>,
    pub metadata: serde_json::Map<String, serde_json::Value>,
}

impl ValidNewChange {
    /// The change as recorded by `actor` under `id`.
    pub fn into_change(self, id: ulid::Ulid, actor: &str) -> Change {
        Change {
            id,
            kind: self.kind,
            service: self.service,
            environment: self.environment,
            actor: actor.to_string(),
            summary: self.summary,
            description: self.description,
            status: self.status,
            started_at: self.started_at,
            finished_at: self.finished_at,
            size: self.size,
            commit_range: self.commit_range,
            links: self.links,
            metadata: self.metadata,
            history: None,
        }
    }
}

impl NewChange {
    /// Applies every rule of a new change. `now` is the server's clock, the default start.
    ///
    /// A change recorded as already finished without a `finished_at` is an instant: it
    /// finishes when it started (a note, or a change recorded after the fact).
    pub fn validate(self, now: DateTime<Utc>) -> Result<ValidNewChange, Invalid> {
        let kind: ChangeKind = match self.kind.as_deref() {
            None => return Err(Invalid::new("kind is required")),
            Some(k) => k.parse()?,
        };
        let summary = self
            .summary
            .ok_or_else(|| Invalid::new("summary is required"))?;
        validate_summary(&summary)?;
        if let Some(service) = &self.service {
            validate_name("service", service)?;
        }
        if let Some(environment) = &self.environment {
            validate_name("environment", environment)?;
        }
        if let Some(description) = &self.description {
            validate_description(description)?;
        }
        let metadata = match self.metadata {
            None | Some(serde_json::Value::Null) => serde_json::Map::new(),
            Some(serde_json::Value::Object(map)) => map,
            Some(other) => {
                return Err(Invalid::new(format!(
                    "metadata must be a JSON object, not {}",
                    json_type_name(&other)
                )))
            }
        };
        let metadata_len = serde_json::to_string(&metadata).map_or(usize::MAX, |s| s.len());
        if metadata_len > MAX_METADATA_BYTES {
            return Err(Invalid::new(format!(
                "metadata is {metadata_len} bytes of JSON; the limit is {MAX_METADATA_BYTES}"
            )));
        }
        if let Some(size) = &self.size {
            if !size.value.is_finite() || size.value < 0.0 {
                return Err(Invalid::new("size.value must be a finite number ≥ 0"));
            }
            if size.unit.is_empty() || size.unit.len() > 32 {
                return Err(Invalid::new("size.unit must be 1 to 32 characters"));
            }
        }
        if let Some(range) = &self.commit_range {
            validate_commit(&range.from, "commit_range.from")?;
            validate_commit(&range.to, "commit_range.to")?;
        }
        validate_links(&self.links)?;
        let status = self.status.unwrap_or(ChangeStatus::Succeeded);
        let started_at = self.started_at.unwrap_or(now);
        let finished_at = match (self.finished_at, status.is_finished()) {
            (Some(_), false) => {
                return Err(Invalid::new(
                    "finished_at is set but status is in_progress; give a finished status",
                ))
            }
            (Some(f), true) => Some(f),
            (None, true) => Some(started_at),
            (None, false) => None,
        };
        check_order(started_at, finished_at)?;
        Ok(ValidNewChange {
            kind,
            service: self.service,
            environment: self.environment,
            summary,
            description: self.description,
            status,
            started_at,
            finished_at,
            size: self.size,
            commit_range: self.commit_range,
            links: self.links,
            metadata,
        })
    }
}

/// The body of `PATCH /api/v1/changes/{id}`: the fields that may change after recording.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ChangePatch {
    pub status: Option<ChangeStatus>,
    /// RFC 3339, epoch seconds, or a duration ago; default now when finishing.
    #[serde(default, deserialize_with = "crate::time::deserialize_api_time")]
    #[schema(value_type = Option<String>)]
    pub finished_at: Option<DateTime<Utc>>,
    pub description: Option<String>,
}

impl ChangePatch {
    pub fn is_empty(&self) -> bool {
        self.status.is_none() && self.finished_at.is_none() && self.description.is_none()
    }

    /// What can be told of the patch alone: it changes something, and its description is
    /// one a change may have. What [`ChangePatch::apply`] refuses beyond this depends on the
    /// change as stored (its status, when it started).
    pub fn check(&self) -> Result<(), Invalid> {
        if self.is_empty() {
            return Err(Invalid::new(
                "nothing to update: give status, finished_at or description",
            ));
        }
        if let Some(description) = &self.description {
            validate_description(description)?;
        }
        Ok(())
    }

    /// Applies the patch to `change` in place, returning the fields as they were set (the
    /// history entry). Moving to a finished status without `finished_at` finishes it `now`.
    pub fn apply(
        &self,
        change: &mut Change,
        now: DateTime<Utc>,
    ) -> Result<serde_json::Map<String, serde_json::Value>, Invalid> {
        self.check()?;
        let mut fields = serde_json::Map::new();
        if let Some(description) = &self.description {
            change.description = Some(description.clone());
            fields.insert("description".into(), description.clone().into());
        }
        let status = self.status.unwrap_or(change.status);
        change.status.check_transition(status)?;
        if self.finished_at.is_some() && !status.is_finished() {
            return Err(Invalid::new(
                "finished_at is set but the change is in_progress; give a finished status too",
            ));
        }
        let finished_at = match (self.finished_at, change.finished_at) {
            (Some(f), _) => Some(f),
            (None, Some(f)) => Some(f),
            (None, None) if status.is_finished() => Some(now.max(change.started_at)),
            (None, None) => None,
        };
        check_order(change.started_at, finished_at)?;
        if status != change.status || self.status.is_some() {
            fields.insert("status".into(), status.as_str().into());
        }
        if finished_at != change.finished_at || self.finished_at.is_some() {
            if let Some(f) = finished_at {
                fields.insert("finished_at".into(), rfc3339(f).into());
            }
        }
        change.status = status;
        change.finished_at = finished_at;
        Ok(fields)
    }
}

fn check_order(started: DateTime<Utc>, finished: Option<DateTime<Utc>>) -> Result<(), Invalid> {
    match finished {
        Some(f) if f < started => Err(Invalid::new(format!(
            "finished_at {} is before started_at {}",
            rfc3339(f),
            rfc3339(started)
        ))),
        _ => Ok(()),
    }
}

fn validate_summary(summary: &str) -> Result<(), Invalid> {
    let chars = summary.chars().count();
    if summary.trim().is_empty() {
        return Err(Invalid::new("summary must not be empty"));
    }
    if chars > MAX_SUMMARY_CHARS {
        return Err(Invalid::new(format!(
            "summary is {chars} characters; the limit is {MAX_SUMMARY_CHARS} (put the rest in description)"
        )));
    }
    if summary.contains(['\n', '\r']) {
        return Err(Invalid::new(
            "summary must be one line (put the rest in description)",
        ));
    }
    Ok(())
}

fn validate_description(description: &str) -> Result<(), Invalid> {
    if description.len() > MAX_DESCRIPTION_BYTES {
        return Err(Invalid::new(format!(
            "description is {} bytes; the limit is {MAX_DESCRIPTION_BYTES}",
            description.len()
        )));
    }
    Ok(())
}

fn validate_commit(commit: &str, field: &str) -> Result<(), Invalid> {
    let ok = !commit.is_empty()
        && commit.len() <= 128
        && commit
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-' | '/'));
    if ok {
        Ok(())
    } else {
        Err(Invalid::new(format!(
            "{field} '{commit}' is not a commit: use a sha, tag or branch name"
        )))
    }
}

fn validate_links(links: &[Link]) -> Result<(), Invalid> {
    if links.len() > MAX_LINKS {
        return Err(Invalid::new(format!(
            "{} links given; the limit is {MAX_LINKS}",
            links.len()
        )));
    }
    for (i, link) in links.iter().enumerate() {
        let scheme_ok = link.url.starts_with("https://") || link.url.starts_with("http://");
        if !scheme_ok || link.url.len() > 2048 || link.url.contains(char::is_whitespace) {
            return Err(Invalid::new(format!(
                "links[{i}].url '{}' is not an http(s) URL",
                link.url.chars().take(80).collect::<String>()
            )));
        }
        if link.title.len() > 200 {
            return Err(Invalid::new(format!(
                "links[{i}].title is longer than 200 bytes"
            )));
        }
    }
    Ok(())
}

fn json_type_name(value: &serde_json::Value) -> &'static str {
    match value {
        serde_json::Value::Null => "null",
        serde_json::Value::Bool(_) => "a boolean",
        serde_json::Value::Number(_) => "a number",
        serde_json::Value::String(_) => "a string",
        serde_json::Value::Array(_) => "an array",
        serde_json::Value::Object(_) => "an object",
    }
}

/// RFC 3339 with microseconds and `Z`, the one way Gantry writes a time.
pub fn rfc3339(t: DateTime<Utc>) -> String {
    t.to_rfc3339_opts(chrono::SecondsFormat::Micros, true)
}

/// Filters of a change listing. Times bound `started_at`: `since` inclusive, `until` exclusive.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct ChangeQuery {
    pub service: Option<String>,
    pub environment: Option<String>,
    pub kind: Option<ChangeKind>,
    pub status: Option<ChangeStatus>,
    pub since: Option<DateTime<Utc>>,
    pub until: Option<DateTime<Utc>>,
    pub limit: u32,
    pub cursor: Option<Cursor>,
}

/// Position after the last change of a page: lists are ordered by `(started_at, id)`
/// descending, so the next page holds what sorts strictly below this pair.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Cursor {
    pub started_at_micros: i64,
    pub id: Ulid,
}

impl Cursor {
    pub fn after(change: &Change) -> Cursor {
        Cursor {
            started_at_micros: change.started_at.timestamp_micros(),
            id: change.id,
        }
    }

    /// A token for the next page: callers pass back what they were given. Its form,
    /// `MICROS.ULID` (the last change's start in epoch microseconds, then its id), is
    /// stated in the OpenAPI document so that a client can tell a cursor from garbage.
    pub fn encode(&self) -> String {
        format!("{}.{}", self.started_at_micros, self.id)
    }

    pub fn decode(s: &str) -> Result<Cursor, Invalid> {
        let bad = || Invalid::new(format!("cursor '{s}' is not one this server gave out"));
        let (micros, id) = s.split_once('.').ok_or_else(bad)?;
        let digits = micros.strip_prefix('-').unwrap_or(micros);
        if digits.is_empty() || digits.len() > 18 || !digits.bytes().all(|b| b.is_ascii_digit()) {
            return Err(bad());
        }
        Ok(Cursor {
            started_at_micros: micros.parse().map_err(|_| bad())?,
            id: id.parse().map_err(|_| bad())?,
        })
    }
}

/// One page of a change listing.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct ChangePage {
    pub items: Vec<Change>,
    /// Pass as `cursor` to get the next page; absent on the last page.
    pub next_cursor: Option<String>,
}

/// Whether a stream event announces a new change or an update of one.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum ChangeEventKind {
    Created,
    Updated,
}

impl ChangeEventKind {
    pub fn as_str(self) -> &'static str {
        match self {
            ChangeEventKind::Created => "created",
            ChangeEventKind::Updated => "updated",
        }
    }
}

/// An entry of the change stream. `seq` increases in commit order across every server
/// sharing the store, so a reader resuming after `seq` misses nothing.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct ChangeEvent {
    pub seq: i64,
    pub kind: ChangeEventKind,
    pub change: Change,
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;

    fn now() -> DateTime<Utc> {
        Utc.with_ymd_and_hms(2026, 11, 1, 12, 0, 0).unwrap()
    }

    fn minimal() -> NewChange {
        NewChange {
            kind: Some("deploy".into()),
            service: Some("shop".into()),
            environment: Some("prod".into()),
            summary: Some("Deploy shop 1.2.3".into()),
            ..NewChange::default()
        }
    }

    fn check_invalid(change: NewChange, expected_fragment: &str) {
        let err = change.validate(now()).unwrap_err();
        assert!(
            err.0.contains(expected_fragment),
            "expected '{expected_fragment}' in '{err}'"
        );
    }

    #[test]
    fn defaults_make_an_instant_succeeded_change() {
        let valid = minimal().validate(now()).unwrap();
        assert_eq!(valid.status, ChangeStatus::Succeeded);
        assert_eq!(valid.started_at, now());
        assert_eq!(valid.finished_at, Some(now()));
        assert!(valid.metadata.is_empty());
    }

    #[test]
    fn in_progress_has_no_finish() {
        let mut c = minimal();
        c.status = Some(ChangeStatus::InProgress);
        assert_eq!(c.validate(now()).unwrap().finished_at, None);
    }

    #[test]
    fn invalid_new_changes() {
        type Mutation = Box<dyn Fn(&mut NewChange)>;
        let cases: Vec<(Mutation, &str)> = vec![
            (Box::new(|c| c.kind = None), "kind is required"),
            (
                Box::new(|c| c.kind = Some("deploi".into())),
                "unknown kind 'deploi'; expected one of deploy",
            ),
            (Box::new(|c| c.summary = None), "summary is required"),
            (
                Box::new(|c| c.summary = Some(" ".into())),
                "summary must not be empty",
            ),
            (
                Box::new(|c| c.summary = Some("x".repeat(501))),
                "summary is 501 characters; the limit is 500",
            ),
            (Box::new(|c| c.summary = Some("a\nb".into())), "one line"),
            (
                Box::new(|c| c.service = Some("a b".into())),
                "service 'a b' is not a valid name",
            ),
            (
                Box::new(|c| c.environment = Some("".into())),
                "environment must not be empty",
            ),
            (
                Box::new(|c| c.metadata = Some(serde_json::json!([1]))),
                "metadata must be a JSON object, not an array",
            ),
            (
                Box::new(|c| c.metadata = Some(serde_json::json!("x"))),
                "not a string",
            ),
            (
                Box::new(|c| c.metadata = Some(serde_json::json!({"k": "x".repeat(70_000)}))),
                "the limit is 65536",
            ),
            (
                Box::new(|c| {
                    c.started_at = Some(now());
                    c.finished_at = Some(now() - chrono::Duration::seconds(1));
                }),
                "is before started_at",
            ),
            (
                Box::new(|c| {
                    c.status = Some(ChangeStatus::InProgress);
                    c.finished_at = Some(now());
                }),
                "finished_at is set but status is in_progress",
            ),
            (
                Box::new(|c| {
                    c.links = vec![Link {
                        title: "x".into(),
                        url: "javascript:alert(1)".into(),
                    }]
                }),
                "links[0].url",
            ),
            (
                Box::new(|c| {
                    c.commit_range = Some(CommitRange {
                        from: "a b".into(),
                        to: "c".into(),
                    })
                }),
                "commit_range.from",
            ),
            (
                Box::new(|c| {
                    c.size = Some(Size {
                        value: f64::NAN,
                        unit: "commits".into(),
                    })
                }),
                "size.value",
            ),
        ];
        for (mutate, expected) in cases {
            let mut c = minimal();
            mutate(&mut c);
            check_invalid(c, expected);
        }
    }

    fn recorded(status: ChangeStatus) -> Change {
        Change {
            id: Ulid::new(),
            kind: ChangeKind::Deploy,
            service: None,
            environment: None,
            actor: "ci".into(),
            summary: "s".into(),
            description: None,
            status,
            started_at: now(),
            finished_at: status.is_finished().then(now),
            size: None,
            commit_range: None,
            links: vec![],
            metadata: Default::default(),
            history: None,
        }
    }

    #[test]
    fn patch_finishes_now() {
        let mut change = recorded(ChangeStatus::InProgress);
        let later = now() + chrono::Duration::minutes(3);
        let patch = ChangePatch {
            status: Some(ChangeStatus::Succeeded),
            ..Default::default()
        };
        let fields = patch.apply(&mut change, later).unwrap();
        assert_eq!(change.finished_at, Some(later));
        assert_eq!(fields["status"], "succeeded");
        assert_eq!(fields["finished_at"], rfc3339(later));
    }

    #[test]
    fn patch_never_reopens() {
        for status in ChangeStatus::ALL.into_iter().filter(|s| s.is_finished()) {
            let mut change = recorded(status);
            let patch = ChangePatch {
                status: Some(ChangeStatus::InProgress),
                ..Default::default()
            };
            let err = patch.apply(&mut change, now()).unwrap_err();
            assert!(err.0.contains("back to in_progress"), "{err}");
            assert_eq!(change.status, status, "a refused patch changes nothing");
        }
    }

    #[test]
    fn patch_reclassifies_finished() {
        let mut change = recorded(ChangeStatus::Succeeded);
        let patch = ChangePatch {
            status: Some(ChangeStatus::RolledBack),
            ..Default::default()
        };
        patch.apply(&mut change, now()).unwrap();
        assert_eq!(change.status, ChangeStatus::RolledBack);
    }

    #[test]
    fn empty_patch_is_refused() {
        let err = ChangePatch::default()
            .apply(&mut recorded(ChangeStatus::InProgress), now())
            .unwrap_err();
        assert!(err.0.contains("nothing to update"));
    }

    #[test]
    fn api_times_in_bodies() {
        let parse = |body: &str| serde_json::from_str::<NewChange>(body);
        let t = |body: &str| parse(body).unwrap().started_at.unwrap().timestamp();
        assert_eq!(
            t(r#"{"started_at": "2023-11-14T22:13:20Z"}"#),
            1_700_000_000
        );
        assert_eq!(t(r#"{"started_at": 1700000000}"#), 1_700_000_000);
        assert_eq!(t(r#"{"started_at": "1700000000"}"#), 1_700_000_000);
        assert!((Utc::now().timestamp() - 600 - t(r#"{"started_at": "10m"}"#)).abs() < 5);
        assert_eq!(parse(r#"{"started_at": null}"#).unwrap().started_at, None);
        assert_eq!(parse("{}").unwrap().started_at, None);
        let err = parse(r#"{"started_at": "yesterday"}"#)
            .unwrap_err()
            .to_string();
        assert!(err.contains("'yesterday' is not a time"), "{err}");
        assert!(parse(r#"{"started_at": -5}"#).is_err());
    }

    #[test]
    fn cursor_round_trip_and_garbage() {
        let c = Cursor {
            started_at_micros: 1_700_000_000_123_456,
            id: Ulid::new(),
        };
        assert_eq!(Cursor::decode(&c.encode()).unwrap(), c);
        for garbage in [
            "",
            "abc",
            "!!!",
            "1.x",
            "+1.01ARZ3NDEKTSV4RRFFQ69G5FAV",
            "1234567890123456789.01ARZ3NDEKTSV4RRFFQ69G5FAV",
            // The form of earlier versions.
            "MTcwMDAwMDAwMDEyMzQ1NjowMUFSWjNOREVLVFNWNFJSRkZRNjlHNUZBVg",
        ] {
            assert!(Cursor::decode(garbage).is_err(), "{garbage}");
        }
    }

    #[test]
    fn commit_ranges() {
        assert_eq!(
            "abc..def".parse::<CommitRange>().unwrap(),
            CommitRange {
                from: "abc".into(),
                to: "def".into()
            }
        );
        for bad in ["abc", "..def", "abc..", "a...b"] {
            assert!(bad.parse::<CommitRange>().is_err(), "{bad}");
        }
    }

    #[test]
    fn kinds_and_statuses_round_trip() {
        for kind in ChangeKind::ALL {
            assert_eq!(kind.as_str().parse::<ChangeKind>().unwrap(), kind);
            assert_eq!(serde_json::to_value(kind).unwrap(), kind.as_str());
        }
        for status in ChangeStatus::ALL {
            assert_eq!(status.as_str().parse::<ChangeStatus>().unwrap(), status);
            assert_eq!(serde_json::to_value(status).unwrap(), status.as_str());
        }
    }
}
