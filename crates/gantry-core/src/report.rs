//! The report: what change costs, from the records. Gantry's incident figures (time to
//! detect, time to resolve) and DORA's five (change lead time, deployment frequency, change
//! fail rate, failed deployment recovery time, deployment rework rate), for a period and per
//! bucket, plus change failure by kind and incidents by severity and cause. Pure: the server
//! gathers the facts, this computes, so the definitions live in one place and are tested as
//! data.

use std::collections::BTreeMap;

use chrono::{DateTime, Datelike, Duration, TimeZone, Utc};
use serde::{Deserialize, Serialize};
use ulid::Ulid;
use utoipa::ToSchema;

use crate::incident::{Cause, Incident};
use crate::Invalid;

/// The definitions, as the report prints them.
pub const DEFINITIONS: &[&str] = &[
    "MTTD: impact start -> detected, over incidents detected in the period.",
    "MTTR: detected -> resolved (and impact start -> resolved), over incidents resolved in the period.",
    "Percentiles are nearest-rank; n is the count behind each figure.",
    "A deployment is a deploy or promote that reached at least one host (its first switch is in the period).",
    "Change lead time: the build's commit time -> its first switch in the environment, for builds first running there in the period.",
    "Change fail rate: deployments that caused an incident or were rolled back by a gate, over deployments.",
    "Failed deployment recovery time: first switch -> the incident mitigated (or the gate's rollback done).",
    "Deployment rework rate: rollouts (deploy, promote or rollback) made as an incident's remedy, over all rollouts that reached a host.",
    "Cause rule: an incident's confirmed cause when named; otherwise the last change of its services in its environments before it was detected (notes never count).",
];

/// How the period is cut.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum Bucket {
    Day,
    Week,
    Month,
}

impl std::str::FromStr for Bucket {
    type Err = Invalid;
    fn from_str(s: &str) -> Result<Bucket, Invalid> {
        match s {
            "day" => Ok(Bucket::Day),
            "week" => Ok(Bucket::Week),
            "month" => Ok(Bucket::Month),
            other => Err(Invalid::new(format!(
                "by '{other}': expected day, week or month"
            ))),
        }
    }
}

impl Bucket {
    /// The start of the bucket holding `t` (weeks start on Monday, UTC).
    pub fn start_of(self, t: DateTime<Utc>) -> DateTime<Utc> {
        let day = Utc
            .with_ymd_and_hms(t.year(), t.month(), t.day(), 0, 0, 0)
            .single()
            .unwrap_or(t);
        match self {
            Bucket::Day => day,
            Bucket::Week => day - Duration::days(i64::from(t.weekday().num_days_from_monday())),
            Bucket::Month => Utc
                .with_ymd_and_hms(t.year(), t.month(), 1, 0, 0, 0)
                .single()
                .unwrap_or(day),
        }
    }

    fn next(self, start: DateTime<Utc>) -> DateTime<Utc> {
        match self {
            Bucket::Day => start + Duration::days(1),
            Bucket::Week => start + Duration::days(7),
            Bucket::Month => {
                let (y, m) = if start.month() == 12 {
                    (start.year() + 1, 1)
                } else {
                    (start.year(), start.month() + 1)
                };
                Utc.with_ymd_and_hms(y, m, 1, 0, 0, 0)
                    .single()
                    .unwrap_or(start + Duration::days(31))
            }
        }
    }
}

/// A rollout that reached at least one host.
#[derive(Debug, Clone, PartialEq)]
pub struct RolloutFact {
    pub rollout: Ulid,
    pub change: Ulid,
    pub build: Ulid,
    pub service: String,
    pub environment: String,
    /// `deploy`, `promote` or `rollback`.
    pub kind: String,
    /// The first host's switch.
    pub first_switch: DateTime<Utc>,
    pub finished_at: Option<DateTime<Utc>>,
    /// The build's commit time, when it was given.
    pub commit_time: Option<DateTime<Utc>>,
    /// Whether this is the build's first rollout to reach the environment.
    pub first_of_build: bool,
    /// Halted by a gate and rolled back.
    pub gate_rolled_back: bool,
    /// Made as an incident's remedy.
    pub remedy_of: Option<Ulid>,
}

/// A change, as the cause rule and the failure-by-kind figures see it.
#[derive(Debug, Clone, PartialEq)]
pub struct ChangeFact {
    pub id: Ulid,
    pub kind: String,
    pub service: Option<String>,
    pub environment: Option<String>,
    pub started_at: DateTime<Utc>,
}

/// Everything the report is computed from.
#[derive(Debug, Clone)]
pub struct Facts {
    pub since: DateTime<Utc>,
    pub until: DateTime<Utc>,
    pub bucket: Bucket,
    /// Incidents detected or resolved in the period.
    pub incidents: Vec<Incident>,
    /// Rollouts that reached a host, first switch in the period.
    pub rollouts: Vec<RolloutFact>,
    /// Changes (not notes) from a while before the period to its end: the cause rule looks
    /// back before an incident.
    pub changes: Vec<ChangeFact>,
}

/// A duration figure.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct Stat {
    pub n: usize,
    pub mean_s: Option<f64>,
    pub median_s: Option<f64>,
    pub p90_s: Option<f64>,
}

impl Stat {
    /// From durations in seconds.
    pub fn of(mut values: Vec<f64>) -> Stat {
        values.retain(|v| v.is_finite());
        if values.is_empty() {
            return Stat::default();
        }
        values.sort_by(f64::total_cmp);
        let n = values.len();
        let rank = |p: f64| values[((p * n as f64).ceil() as usize).clamp(1, n) - 1];
        Stat {
            n,
            mean_s: Some(round(values.iter().sum::<f64>() / n as f64)),
            median_s: Some(round(rank(0.5))),
            p90_s: Some(round(rank(0.9))),
        }
    }
}

fn round(x: f64) -> f64 {
    (x * 10.0).round() / 10.0
}

/// A share.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct Rate {
    pub count: usize,
    pub of: usize,
    /// `count / of`, `None` when `of` is 0.
    pub rate: Option<f64>,
}

impl Rate {
    fn new(count: usize, of: usize) -> Rate {
        Rate {
            count,
            of,
            rate: (of > 0).then(|| (count as f64 / of as f64 * 1000.0).round() / 1000.0),
        }
    }
}

/// One bucket's figures.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct BucketFigures {
    pub start: DateTime<Utc>,
    pub deployments: usize,
    pub change_fail_rate: Rate,
    pub lead_time: Stat,
    pub incidents: usize,
    pub mttd: Stat,
    pub mttr: Stat,
}

/// The report.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct Report {
    pub since: DateTime<Utc>,
    pub until: DateTime<Utc>,
    pub definitions: Vec<String>,
    pub mttd: Stat,
    pub mttr: Stat,
    pub mttr_from_impact: Stat,
    pub lead_time: Stat,
    pub deployments: usize,
    pub deployments_per_day: f64,
    pub change_fail_rate: Rate,
    pub recovery_time: Stat,
    pub rework_rate: Rate,
    /// Per change kind: changes in the period, and how many caused an incident.
    pub change_failure_by_kind: BTreeMap<String, Rate>,
    pub incidents: usize,
    pub incidents_by_severity: BTreeMap<String, usize>,
    /// By the cause's change kind, `not a change`, or `unknown` (no change before it).
    pub incidents_by_cause: BTreeMap<String, usize>,
    pub share_caused_by_changes: Rate,
    pub buckets: Vec<BucketFigures>,
}

fn secs(from: DateTime<Utc>, to: DateTime<Utc>) -> f64 {
    (to - from).num_milliseconds() as f64 / 1000.0
}

/// What the cause rule blames an incident on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Blame {
    Change(Ulid),
    /// Its cause is named as not a change.
    NotAChange,
    /// No change came before it.
    Unknown,
}

/// The cause rule: the confirmed cause when named, else the last change of the incident's
/// services in its environments before it was detected (notes never count).
pub fn cause_of(incident: &Incident, changes: &[ChangeFact]) -> Blame {
    match &incident.cause {
        Some(Cause::Change { change }) => return Blame::Change(*change),
        Some(Cause::NotAChange { .. }) => return Blame::NotAChange,
        None => {}
    }
    changes
        .iter()
        .filter(|c| c.kind != "note" && c.started_at <= incident.detected_at)
        .filter(|c| {
            c.service
                .as_ref()
                .is_some_and(|s| incident.services.contains(s))
        })
        .filter(|c| {
            c.environment
                .as_ref()
                .is_none_or(|e| incident.environments.contains(e))
        })
        .max_by_key(|c| (c.started_at, c.id))
        .map_or(Blame::Unknown, |c| Blame::Change(c.id))
}

/// Computes the report from the facts.
pub fn compute(facts: &Facts) -> Report {
    let in_period = |t: DateTime<Utc>| t >= facts.since && t < facts.until;
    let detected: Vec<&Incident> = facts
        .incidents
        .iter()
        .filter(|i| in_period(i.detected_at))
        .collect();
    let resolved: Vec<&Incident> = facts
        .incidents
        .iter()
        .filter(|i| i.resolved_at.is_some_and(in_period))
        .collect();
    let mttd_of = |list: &[&Incident]| {
        Stat::of(
            list.iter()
                .map(|i| secs(i.impact_started_at, i.detected_at).max(0.0))
                .collect(),
        )
    };
    let mttr_of = |list: &[&Incident]| {
        Stat::of(
            list.iter()
                .filter_map(|i| i.resolved_at.map(|r| secs(i.detected_at, r).max(0.0)))
                .collect(),
        )
    };

    // Causes, once per incident.
    let causes: BTreeMap<Ulid, Blame> = facts
        .incidents
        .iter()
        .map(|i| (i.id, cause_of(i, &facts.changes)))
        .collect();
    let caused_by = |change: Ulid| -> Vec<&Incident> {
        facts
            .incidents
            .iter()
            .filter(|i| causes.get(&i.id) == Some(&Blame::Change(change)))
            .collect()
    };

    let reached: Vec<&RolloutFact> = facts
        .rollouts
        .iter()
        .filter(|r| in_period(r.first_switch))
        .collect();
    let deployments: Vec<&RolloutFact> = reached
        .iter()
        .copied()
        .filter(|r| r.kind == "deploy" || r.kind == "promote")
        .collect();
    let failed = |r: &RolloutFact| r.gate_rolled_back || !caused_by(r.change).is_empty();
    let lead = |list: &[&RolloutFact]| {
        Stat::of(
            list.iter()
                .filter(|r| r.first_of_build)
                .filter_map(|r| r.commit_time.map(|c| secs(c, r.first_switch).max(0.0)))
                .collect(),
        )
    };
    let recovery: Vec<f64> = deployments
        .iter()
        .filter(|r| failed(r))
        .filter_map(|r| {
            let by_incident = caused_by(r.change)
                .iter()
                .filter_map(|i| i.mitigated_at)
                .min();
            let by_gate = r.finished_at.filter(|_| r.gate_rolled_back);
            let end = match (by_incident, by_gate) {
                (Some(a), Some(b)) => Some(a.min(b)),
                (a, b) => a.or(b),
            };
            end.map(|e| secs(r.first_switch, e).max(0.0))
        })
        .collect();
    let days = (secs(facts.since, facts.until) / 86_400.0).max(1.0 / 24.0);

    let mut by_kind: BTreeMap<String, Rate> = BTreeMap::new();
    for c in facts
        .changes
        .iter()
        .filter(|c| in_period(c.started_at) && c.kind != "note")
    {
        let entry = by_kind.entry(c.kind.clone()).or_default();
        entry.of += 1;
        if !caused_by(c.id).is_empty() {
            entry.count += 1;
        }
    }
    for rate in by_kind.values_mut() {
        *rate = Rate::new(rate.count, rate.of);
    }
    let mut by_severity: BTreeMap<String, usize> = BTreeMap::new();
    let mut by_cause: BTreeMap<String, usize> = BTreeMap::new();
    let mut by_change = 0;
    for i in &detected {
        *by_severity
            .entry(i.severity.as_str().to_string())
            .or_default() += 1;
        let key = match causes.get(&i.id) {
            Some(Blame::NotAChange) => "not a change".to_string(),
            Some(Blame::Change(change)) => {
                by_change += 1;
                facts
                    .changes
                    .iter()
                    .find(|c| c.id == *change)
                    .map(|c| c.kind.clone())
                    .unwrap_or_else(|| "change".to_string())
            }
            _ => "unknown".to_string(),
        };
        *by_cause.entry(key).or_default() += 1;
    }

    // Buckets over the period.
    let mut buckets = Vec::new();
    let mut start = facts.bucket.start_of(facts.since);
    while start < facts.until && buckets.len() < 1000 {
        let end = facts.bucket.next(start);
        let inb = |t: DateTime<Utc>| t >= start.max(facts.since) && t < end.min(facts.until);
        let deps: Vec<&RolloutFact> = deployments
            .iter()
            .copied()
            .filter(|r| inb(r.first_switch))
            .collect();
        let det: Vec<&Incident> = detected
            .iter()
            .copied()
            .filter(|i| inb(i.detected_at))
            .collect();
        let res: Vec<&Incident> = resolved
            .iter()
            .copied()
            .filter(|i| i.resolved_at.is_some_and(inb))
            .collect();
        buckets.push(BucketFigures {
            start,
            deployments: deps.len(),
            change_fail_rate: Rate::new(deps.iter().filter(|r| failed(r)).count(), deps.len()),
            lead_time: lead(&deps),
            incidents: det.len(),
            mttd: mttd_of(&det),
            mttr: mttr_of(&res),
        });
        start = end;
    }

    Report {
        since: facts.since,
        until: facts.until,
        definitions: DEFINITIONS.iter().map(|d| d.to_string()).collect(),
        mttd: mttd_of(&detected),
        mttr: mttr_of(&resolved),
        mttr_from_impact: Stat::of(
            resolved
                .iter()
                .filter_map(|i| i.resolved_at.map(|r| secs(i.impact_started_at, r).max(0.0)))
                .collect(),
        ),
        lead_time: lead(&deployments),
        deployments: deployments.len(),
        deployments_per_day: (deployments.len() as f64 / days * 100.0).round() / 100.0,
        change_fail_rate: Rate::new(
            deployments.iter().filter(|r| failed(r)).count(),
            deployments.len(),
        ),
        recovery_time: Stat::of(recovery),
        rework_rate: Rate::new(
            reached.iter().filter(|r| r.remedy_of.is_some()).count(),
            reached.len(),
        ),
        change_failure_by_kind: by_kind,
        incidents: detected.len(),
        incidents_by_severity: by_severity,
        incidents_by_cause: by_cause,
        share_caused_by_changes: Rate::new(by_change, detected.len()),
        buckets,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::incident::{IncidentState, Severity, Source};

    fn t(h: f64) -> DateTime<Utc> {
        DateTime::from_timestamp(1_767_225_600 + (h * 3600.0) as i64, 0).unwrap()
        // 2026-01-01 00:00 UTC
    }

    fn incident(
        impact: f64,
        detected: f64,
        mitigated: Option<f64>,
        resolved: Option<f64>,
    ) -> Incident {
        Incident {
            id: Ulid::new(),
            title: "x".into(),
            severity: Severity::Sev2,
            services: vec!["shop".into()],
            environments: vec!["prod".into()],
            state: IncidentState::Open,
            source: Source::Manual,
            opened_by: "ann".into(),
            impact_started_at: t(impact),
            detected_at: t(detected),
            acknowledged_at: None,
            mitigated_at: mitigated.map(t),
            resolved_at: resolved.map(t),
            suspects: vec![],
            cause: None,
            postmortem: None,
            updated_at: t(detected),
            version: 1,
        }
    }

    fn rollout(kind: &str, at: f64, commit: Option<f64>) -> RolloutFact {
        RolloutFact {
            rollout: Ulid::new(),
            change: Ulid::new(),
            build: Ulid::new(),
            service: "shop".into(),
            environment: "prod".into(),
            kind: kind.into(),
            first_switch: t(at),
            finished_at: Some(t(at + 0.1)),
            commit_time: commit.map(t),
            first_of_build: true,
            gate_rolled_back: false,
            remedy_of: None,
        }
    }

    fn change_of(r: &RolloutFact) -> ChangeFact {
        ChangeFact {
            id: r.change,
            kind: if r.kind == "rollback" {
                "rollback".into()
            } else {
                "deploy".into()
            },
            service: Some(r.service.clone()),
            environment: Some(r.environment.clone()),
            started_at: r.first_switch,
        }
    }

    #[test]
    fn stats_use_nearest_rank() {
        let s = Stat::of(vec![
            10.0, 20.0, 30.0, 40.0, 50.0, 60.0, 70.0, 80.0, 90.0, 100.0,
        ]);
        assert_eq!(
            (s.n, s.mean_s, s.median_s, s.p90_s),
            (10, Some(55.0), Some(50.0), Some(90.0))
        );
        let one = Stat::of(vec![7.0]);
        assert_eq!((one.median_s, one.p90_s), (Some(7.0), Some(7.0)));
        assert_eq!(Stat::of(vec![]), Stat::default());
    }

    #[test]
    fn a_worked_period() {
        // Three deploys on day 1 (one breaks things), a gate rollback on day 2, a remedy.
        let good = rollout("deploy", 1.0, Some(0.0));
        let bad = rollout("deploy", 5.0, Some(4.0));
        let mut gated = rollout("deploy", 30.0, None);
        gated.gate_rolled_back = true;
        gated.finished_at = Some(t(30.25));
        let mut remedy = rollout("rollback", 5.5, None);
        let mut broken = incident(5.0, 5.25, Some(5.75), Some(6.0));
        remedy.remedy_of = Some(broken.id);
        let flag = ChangeFact {
            id: Ulid::new(),
            kind: "flag".into(),
            service: Some("shop".into()),
            environment: Some("prod".into()),
            started_at: t(40.0),
        };
        let flag_incident = incident(40.5, 41.0, None, None);
        let mut traffic = incident(50.0, 50.5, Some(51.0), Some(52.0));
        traffic.cause = Some(Cause::NotAChange {
            what: "a crawler".into(),
        });
        broken.severity = Severity::Sev1;
        let facts = Facts {
            since: t(0.0),
            until: t(72.0),
            bucket: Bucket::Day,
            incidents: vec![broken.clone(), flag_incident, traffic],
            rollouts: vec![good.clone(), bad.clone(), gated.clone(), remedy.clone()],
            changes: vec![
                change_of(&good),
                change_of(&bad),
                change_of(&gated),
                change_of(&remedy),
                flag,
            ],
        };
        let r = compute(&facts);
        assert_eq!(r.deployments, 3);
        assert_eq!(r.deployments_per_day, 1.0);
        // bad (caused the SEV1 by the cause rule) and gated.
        assert_eq!((r.change_fail_rate.count, r.change_fail_rate.of), (2, 3));
        // Lead time: 1 h each for the two builds with a commit time.
        assert_eq!((r.lead_time.n, r.lead_time.median_s), (2, Some(3600.0)));
        // MTTD: 15 min, 30 min, 30 min; MTTR over the two resolved: 45 min, 90 min.
        assert_eq!((r.mttd.n, r.mttd.median_s), (3, Some(1800.0)));
        assert_eq!(
            (r.mttr.n, r.mttr.mean_s, r.mttr.median_s, r.mttr.p90_s),
            (2, Some(4050.0), Some(2700.0), Some(5400.0))
        );
        // Recovery: bad 5.0 → mitigated 5.75 (45 min); gated 30.0 → rolled back 30.25.
        assert_eq!(
            (r.recovery_time.n, r.recovery_time.median_s),
            (2, Some(900.0))
        );
        assert_eq!(
            (r.rework_rate.count, r.rework_rate.of, r.rework_rate.rate),
            (1, 4, Some(0.25))
        );
        let kinds: Vec<(&str, usize, usize)> = r
            .change_failure_by_kind
            .iter()
            .map(|(k, v)| (k.as_str(), v.count, v.of))
            .collect();
        assert_eq!(
            kinds,
            vec![("deploy", 1, 3), ("flag", 1, 1), ("rollback", 0, 1)]
        );
        let causes: Vec<(&str, usize)> = r
            .incidents_by_cause
            .iter()
            .map(|(k, v)| (k.as_str(), *v))
            .collect();
        assert_eq!(
            causes,
            vec![("deploy", 1), ("flag", 1), ("not a change", 1)]
        );
        assert_eq!(
            (
                r.share_caused_by_changes.count,
                r.share_caused_by_changes.of
            ),
            (2, 3)
        );
        assert_eq!(r.incidents_by_severity.get("SEV1"), Some(&1));
        let days: Vec<(usize, usize, usize)> = r
            .buckets
            .iter()
            .map(|b| (b.deployments, b.change_fail_rate.count, b.incidents))
            .collect();
        assert_eq!(days, vec![(2, 1, 1), (1, 1, 1), (0, 0, 1)]);
    }

    #[test]
    fn an_empty_period_has_n_zero_everywhere() {
        let r = compute(&Facts {
            since: t(0.0),
            until: t(24.0 * 90.0),
            bucket: Bucket::Month,
            incidents: vec![],
            rollouts: vec![],
            changes: vec![],
        });
        assert_eq!(
            (r.mttd.n, r.mttr.n, r.deployments, r.incidents),
            (0, 0, 0, 0)
        );
        assert_eq!(r.change_fail_rate.rate, None);
        assert_eq!(r.buckets.len(), 3);
        assert_eq!(r.buckets[0].start, t(0.0));
    }

    #[test]
    fn buckets_start_on_day_monday_and_first_of_month() {
        let wed = DateTime::parse_from_rfc3339("2026-12-09T15:30:00Z")
            .unwrap()
            .with_timezone(&Utc);
        let at = |s: &str| DateTime::parse_from_rfc3339(s).unwrap().with_timezone(&Utc);
        assert_eq!(Bucket::Day.start_of(wed), at("2026-12-09T00:00:00Z"));
        assert_eq!(Bucket::Week.start_of(wed), at("2026-12-07T00:00:00Z"));
        assert_eq!(Bucket::Month.start_of(wed), at("2026-12-01T00:00:00Z"));
        assert_eq!(
            Bucket::Month.next(at("2026-12-01T00:00:00Z")),
            at("2027-01-01T00:00:00Z")
        );
    }
}
