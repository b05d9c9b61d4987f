//! Incidents: what broke, since when, which changes are suspects, what was done and when.
//! The wire types and the pure rules: how suspects are ranked from the change log, and how
//! acknowledging, mitigating, resolving and naming a cause move an incident's clocks (the
//! report's time to detect and time to resolve are read from them).

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use ulid::Ulid;
use utoipa::ToSchema;

use crate::{Change, ChangeKind, Invalid};

/// How bad: SEV1 (everyone down) to SEV4 (minor).
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize, ToSchema,
)]
pub enum Severity {
    #[serde(rename = "SEV1")]
    Sev1,
    #[serde(rename = "SEV2")]
    Sev2,
    #[serde(rename = "SEV3")]
    Sev3,
    #[serde(rename = "SEV4")]
    Sev4,
}

impl Severity {
    pub const ALL: [Severity; 4] = [
        Severity::Sev1,
        Severity::Sev2,
        Severity::Sev3,
        Severity::Sev4,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Severity::Sev1 => "SEV1",
            Severity::Sev2 => "SEV2",
            Severity::Sev3 => "SEV3",
            Severity::Sev4 => "SEV4",
        }
    }
}

impl std::str::FromStr for Severity {
    type Err = Invalid;
    fn from_str(s: &str) -> Result<Severity, Invalid> {
        Severity::ALL
            .into_iter()
            .find(|x| x.as_str().eq_ignore_ascii_case(s))
            .ok_or_else(|| {
                Invalid::new(format!("severity '{s}': expected SEV1, SEV2, SEV3 or SEV4"))
            })
    }
}

impl std::fmt::Display for Severity {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Where an incident is, from its clocks.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum IncidentState {
    Open,
    Acknowledged,
    Mitigated,
    Resolved,
}

impl IncidentState {
    pub fn as_str(self) -> &'static str {
        match self {
            IncidentState::Open => "open",
            IncidentState::Acknowledged => "acknowledged",
            IncidentState::Mitigated => "mitigated",
            IncidentState::Resolved => "resolved",
        }
    }
}

impl std::fmt::Display for IncidentState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// What opened an incident.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Source {
    /// A person (`gantry incident open`).
    Manual,
    /// A critical alert of a monitor.
    Alert { monitor: String },
    /// A regression verdict of the detector.
    Verdict {
        #[schema(value_type = String)]
        verdict: Ulid,
    },
}

/// The confirmed cause.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Cause {
    Change {
        #[schema(value_type = String)]
        change: Ulid,
    },
    /// Not a change (traffic, a provider, hardware); `what` says what it was.
    NotAChange { what: String },
}

/// A change that may have caused the incident, with its score (`show` prints it).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct Suspect {
    #[schema(value_type = String)]
    pub change: Ulid,
    pub kind: String,
    pub service: Option<String>,
    pub environment: Option<String>,
    pub summary: String,
    pub started_at: DateTime<Utc>,
    /// Kind weight × recency decay; higher is more suspect.
    pub score: f64,
}

/// An incident.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct Incident {
    #[schema(value_type = String)]
    pub id: Ulid,
    pub title: String,
    pub severity: Severity,
    pub services: Vec<String>,
    pub environments: Vec<String>,
    pub state: IncidentState,
    pub source: Source,
    pub opened_by: String,
    /// When users were first hurt: for a regression verdict, when its change took effect
    /// (a rollout's first host switch); for one opened by hand, as given or when it was
    /// opened; for an alert, when it was opened. Editable.
    pub impact_started_at: DateTime<Utc>,
    pub detected_at: DateTime<Utc>,
    pub acknowledged_at: Option<DateTime<Utc>>,
    pub mitigated_at: Option<DateTime<Utc>>,
    pub resolved_at: Option<DateTime<Utc>>,
    /// Ranked, most suspect first.
    pub suspects: Vec<Suspect>,
    pub cause: Option<Cause>,
    pub postmortem: Option<String>,
    pub updated_at: DateTime<Utc>,
    /// Bumped by every write (compare-and-set).
    pub version: i64,
}

/// One entry of an incident's timeline.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct TimelineEntry {
    pub seq: i64,
    pub at: DateTime<Utc>,
    /// `opened`, `alert`, `change`, `note`, `action`.
    pub kind: String,
    pub actor: String,
    pub text: String,
    #[schema(value_type = Option<String>)]
    pub change: Option<Ulid>,
}

/// An incident with its timeline (`GET /api/v1/incidents/{id}`).
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct IncidentView {
    #[serde(flatten)]
    pub incident: Incident,
    /// What was recorded with it, and the changes of its services around it, in time order.
    pub timeline: Vec<TimelineEntry>,
}

/// What an incident action did.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct ActionResult {
    pub incident: Incident,
    /// The change a remedy made (`rollback`, `flag-off`).
    #[schema(value_type = Option<String>)]
    pub change_id: Option<Ulid>,
}

/// `POST /api/v1/incidents`: an incident opened by hand.
#[derive(Debug, Clone, Deserialize, Serialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct NewIncident {
    pub title: String,
    pub service: String,
    pub environment: String,
    /// Default SEV3 for one opened by hand.
    pub severity: Option<Severity>,
    /// When the impact started (RFC 3339, epoch seconds, or a duration ago); default: now.
    #[serde(default, deserialize_with = "crate::time::deserialize_api_time")]
    #[schema(value_type = Option<String>)]
    pub impact_started_at: Option<DateTime<Utc>>,
}

/// How far back the change log is searched for suspects.
pub const SUSPECT_LOOKBACK: chrono::TimeDelta = chrono::TimeDelta::hours(24);
/// A suspect's score halves every this long before the incident opened.
pub const SUSPECT_HALF_LIFE_SECS: f64 = 1800.0;

/// How much a kind of change is suspected, before recency: a deploy most, a note never.
pub fn kind_weight(kind: ChangeKind) -> f64 {
    match kind {
        ChangeKind::Deploy => 1.0,
        ChangeKind::Migration => 0.8,
        ChangeKind::Flag => 0.7,
        ChangeKind::Config => 0.6,
        ChangeKind::Rollback => 0.4,
        ChangeKind::Note => 0.0,
    }
}

/// Ranks `changes` as suspects of an incident on `services` in `environments` opened at
/// `opened_at`: changes of those services and environments (a change without an
/// environment counts for every one) that started within [`SUSPECT_LOOKBACK`] before it,
/// scored `kind_weight × 0.5^(age / half-life)`, most suspect first (ties: newest first).
/// Notes are never suspects.
pub fn rank_suspects(
    changes: &[Change],
    services: &[String],
    environments: &[String],
    opened_at: DateTime<Utc>,
) -> Vec<Suspect> {
    let mut out: Vec<Suspect> = changes
        .iter()
        .filter(|c| c.started_at <= opened_at && opened_at - c.started_at <= SUSPECT_LOOKBACK)
        .filter(|c| c.service.as_ref().is_some_and(|s| services.contains(s)))
        .filter(|c| {
            c.environment
                .as_ref()
                .is_none_or(|e| environments.contains(e))
        })
        .filter_map(|c| {
            let weight = kind_weight(c.kind);
            if weight == 0.0 {
                return None;
            }
            let age = (opened_at - c.started_at).num_milliseconds() as f64 / 1000.0;
            let score = weight * 0.5f64.powf(age / SUSPECT_HALF_LIFE_SECS);
            Some(Suspect {
                change: c.id,
                kind: c.kind.as_str().to_string(),
                service: c.service.clone(),
                environment: c.environment.clone(),
                summary: c.summary.clone(),
                started_at: c.started_at,
                score: (score * 1000.0).round() / 1000.0,
            })
        })
        .collect();
    out.sort_by(|a, b| {
        b.score
            .total_cmp(&a.score)
            .then(b.started_at.cmp(&a.started_at))
    });
    out
}

/// What a person does to an incident's clocks.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Step {
    Acknowledge,
    Mitigate,
    Resolve,
}

/// Moves an incident's clocks for `step` at `now`: mitigating acknowledges too, resolving
/// mitigates too (a problem gone is no longer hurting). Refused when already done, or on a
/// resolved incident.
pub fn advance_incident(
    incident: &mut Incident,
    step: Step,
    now: DateTime<Utc>,
) -> Result<(), Invalid> {
    if incident.resolved_at.is_some() {
        return Err(Invalid::new(format!(
            "incident {} is resolved",
            incident.id
        )));
    }
    let done = |what: &str| {
        Err(Invalid::new(format!(
            "incident {} is already {what}",
            incident.id
        )))
    };
    match step {
        Step::Acknowledge => {
            if incident.acknowledged_at.is_some() {
                return done("acknowledged");
            }
            incident.acknowledged_at = Some(now);
        }
        Step::Mitigate => {
            if incident.mitigated_at.is_some() {
                return done("mitigated");
            }
            incident.acknowledged_at.get_or_insert(now);
            incident.mitigated_at = Some(now);
        }
        Step::Resolve => {
            incident.acknowledged_at.get_or_insert(now);
            incident.mitigated_at.get_or_insert(now);
            incident.resolved_at = Some(now);
        }
    }
    incident.state = state_of(incident);
    incident.updated_at = now;
    Ok(())
}

/// An incident's state from its clocks.
pub fn state_of(incident: &Incident) -> IncidentState {
    if incident.resolved_at.is_some() {
        IncidentState::Resolved
    } else if incident.mitigated_at.is_some() {
        IncidentState::Mitigated
    } else if incident.acknowledged_at.is_some() {
        IncidentState::Acknowledged
    } else {
        IncidentState::Open
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ChangeStatus;

    fn t(s: i64) -> DateTime<Utc> {
        DateTime::from_timestamp(1_700_000_000 + s, 0).unwrap()
    }

    fn change(kind: ChangeKind, service: &str, env: Option<&str>, at: i64) -> Change {
        Change {
            id: Ulid::new(),
            kind,
            service: Some(service.into()),
            environment: env.map(str::to_string),
            actor: "ann".into(),
            summary: format!("{} of {service}", kind.as_str()),
            description: None,
            status: ChangeStatus::Succeeded,
            started_at: t(at),
            finished_at: None,
            size: None,
            commit_range: None,
            links: vec![],
            metadata: Default::default(),
            history: None,
        }
    }

    #[test]
    fn suspects_are_ranked_by_kind_and_recency_and_notes_never_count() {
        let deploy = change(ChangeKind::Deploy, "shop", Some("prod"), -600);
        let flag = change(ChangeKind::Flag, "shop", Some("prod"), -60);
        let old_deploy = change(ChangeKind::Deploy, "shop", Some("prod"), -3 * 3600);
        let note = change(ChangeKind::Note, "shop", Some("prod"), -10);
        let other_env = change(ChangeKind::Deploy, "shop", Some("stage"), -10);
        let other_service = change(ChangeKind::Deploy, "cart", Some("prod"), -10);
        let config = change(ChangeKind::Config, "shop", None, -120);
        let after = change(ChangeKind::Deploy, "shop", Some("prod"), 60);
        let too_old = change(ChangeKind::Deploy, "shop", Some("prod"), -25 * 3600);
        let all = vec![
            deploy.clone(),
            flag.clone(),
            old_deploy.clone(),
            note,
            other_env,
            other_service,
            config.clone(),
            after,
            too_old,
        ];
        let ranked = rank_suspects(&all, &["shop".into()], &["prod".into()], t(0));
        let ids: Vec<Ulid> = ranked.iter().map(|s| s.change).collect();
        // deploy 10 min ago: 1.0 × 0.5^(1/3) = 0.794; flag 1 min ago: 0.7 × 0.977 = 0.684;
        // config 2 min ago: 0.6 × 0.955 = 0.573; deploy 3 h ago: 1.0 × 0.5^6 = 0.016.
        assert_eq!(ids, vec![deploy.id, flag.id, config.id, old_deploy.id]);
        assert_eq!(ranked[0].score, 0.794);
        assert_eq!(ranked[3].score, 0.016);
    }

    fn incident() -> Incident {
        Incident {
            id: Ulid::new(),
            title: "checkout errors".into(),
            severity: Severity::Sev2,
            services: vec!["shop".into()],
            environments: vec!["prod".into()],
            state: IncidentState::Open,
            source: Source::Manual,
            opened_by: "ann".into(),
            impact_started_at: t(0),
            detected_at: t(60),
            acknowledged_at: None,
            mitigated_at: None,
            resolved_at: None,
            suspects: vec![],
            cause: None,
            postmortem: None,
            updated_at: t(60),
            version: 1,
        }
    }

    #[test]
    fn clocks_move_forward_only_and_later_steps_imply_earlier_ones() {
        let mut i = incident();
        advance_incident(&mut i, Step::Mitigate, t(300)).unwrap();
        assert_eq!(
            (i.acknowledged_at, i.mitigated_at, i.state),
            (Some(t(300)), Some(t(300)), IncidentState::Mitigated)
        );
        let err = advance_incident(&mut i, Step::Acknowledge, t(400)).unwrap_err();
        assert!(err.0.contains("already acknowledged"), "{err}");
        advance_incident(&mut i, Step::Resolve, t(900)).unwrap();
        assert_eq!(
            (i.mitigated_at, i.resolved_at, i.state),
            (Some(t(300)), Some(t(900)), IncidentState::Resolved)
        );
        let err = advance_incident(&mut i, Step::Resolve, t(950)).unwrap_err();
        assert!(err.0.contains("is resolved"), "{err}");

        let mut j = incident();
        advance_incident(&mut j, Step::Resolve, t(100)).unwrap();
        assert_eq!(
            (j.acknowledged_at, j.mitigated_at),
            (Some(t(100)), Some(t(100)))
        );
    }

    #[test]
    fn severities_read_back_from_their_names() {
        for s in Severity::ALL {
            assert_eq!(s.as_str().parse::<Severity>(), Ok(s));
        }
        assert_eq!("sev2".parse::<Severity>(), Ok(Severity::Sev2));
        assert!("SEV5".parse::<Severity>().is_err());
        assert_eq!(serde_json::to_string(&Severity::Sev1).unwrap(), "\"SEV1\"");
    }
}
