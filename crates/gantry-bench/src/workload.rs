//! The benchmark's synthetic world: which services, environments and kinds exist, and how a
//! loaded change or a recorded one is made up. Pure (the caller passes the random source
//! and the clock), so a seed gives the same data every run.

use chrono::{DateTime, Duration, Utc};
use gantry_core::{Change, ChangeKind, ChangeStatus};
use rand::Rng;
use ulid::Ulid;

/// The environments every service deploys to.
pub const ENVIRONMENTS: [&str; 3] = ["dev", "stage", "prod"];

/// The kinds of change the benchmark records.
pub const KINDS: [ChangeKind; 4] = [
    ChangeKind::Deploy,
    ChangeKind::Rollback,
    ChangeKind::Flag,
    ChangeKind::Config,
];

/// Longest a loaded change runs, in seconds.
const MAX_RUN_SECS: i64 = 600;

/// The name of service number `index`: `svc000`, `svc001`, … (at least three digits, so
/// names sort in number order up to 1000 services).
pub fn service_name(index: u32) -> String {
    format!("svc{index:03}")
}

/// A random service among the first `services`.
pub fn random_service(rng: &mut impl Rng, services: u32) -> String {
    service_name(rng.gen_range(0..services))
}

/// What a change is about, picked at random: kind, service, environment, and a summary
/// that reads like the ones people write.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Subject {
    pub kind: ChangeKind,
    pub service: String,
    pub environment: &'static str,
    pub summary: String,
}

impl Subject {
    pub fn random(rng: &mut impl Rng, services: u32) -> Subject {
        let kind = KINDS[rng.gen_range(0..KINDS.len())];
        let service = random_service(rng, services);
        let environment = ENVIRONMENTS[rng.gen_range(0..ENVIRONMENTS.len())];
        let summary = format!("{kind} {service} to {environment}");
        Subject {
            kind,
            service,
            environment,
            summary,
        }
    }

    /// The body of `POST /api/v1/changes` recording this subject now.
    pub fn to_request_body(&self) -> serde_json::Value {
        serde_json::json!({
            "kind": self.kind.as_str(),
            "service": self.service,
            "environment": self.environment,
            "summary": self.summary,
        })
    }
}

/// A finished change of the past: started uniformly within the `window` before `now`,
/// run for up to ten minutes, recorded by `bench`. Its id carries its start time, as if it
/// had been recorded when it started.
pub fn historical_change(
    rng: &mut impl Rng,
    services: u32,
    now: DateTime<Utc>,
    window: Duration,
) -> Change {
    let window_micros = window.num_microseconds().unwrap_or(i64::MAX).max(1);
    let started_at = now - Duration::microseconds(rng.gen_range(0..window_micros));
    let finished_at = started_at + Duration::seconds(rng.gen_range(1..=MAX_RUN_SECS));
    let subject = Subject::random(rng, services);
    let id_time = u64::try_from(started_at.timestamp_millis()).unwrap_or(0);
    Change {
        id: Ulid::from_parts(id_time, rng.gen()),
        kind: subject.kind,
        service: Some(subject.service),
        environment: Some(subject.environment.to_string()),
        actor: "bench".to_string(),
        summary: subject.summary,
        description: None,
        status: ChangeStatus::Succeeded,
        started_at,
        finished_at: Some(finished_at),
        size: None,
        commit_range: None,
        links: Vec::new(),
        metadata: serde_json::Map::new(),
        history: None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use gantry_core::NewChange;
    use rand::rngs::StdRng;
    use rand::SeedableRng;

    #[test]
    fn service_names() {
        assert_eq!(service_name(0), "svc000");
        assert_eq!(service_name(42), "svc042");
        assert_eq!(service_name(199), "svc199");
    }

    #[test]
    fn historical_changes_stay_in_their_window_and_are_valid() {
        let now = Utc::now();
        let window = Duration::days(90);
        let mut rng = StdRng::seed_from_u64(7);
        for _ in 0..2000 {
            let c = historical_change(&mut rng, 200, now, window);
            assert!(c.started_at <= now && c.started_at > now - window, "{c:?}");
            assert!(c.finished_at.unwrap() > c.started_at);
            let service = c.service.as_deref().unwrap();
            assert!(("svc000"..="svc199").contains(&service), "{service}");
            assert!(ENVIRONMENTS.contains(&c.environment.as_deref().unwrap()));
            assert!(KINDS.contains(&c.kind));
            assert_eq!(
                c.summary,
                format!(
                    "{} {service} to {}",
                    c.kind,
                    c.environment.as_deref().unwrap()
                )
            );
            assert_eq!(c.id.timestamp_ms(), c.started_at.timestamp_millis() as u64);
        }
    }

    #[test]
    fn a_seed_gives_the_same_data() {
        let now = Utc::now();
        let mut a = StdRng::seed_from_u64(3);
        let mut b = StdRng::seed_from_u64(3);
        for _ in 0..10 {
            assert_eq!(
                historical_change(&mut a, 200, now, Duration::days(90)),
                historical_change(&mut b, 200, now, Duration::days(90))
            );
        }
    }

    #[test]
    fn request_bodies_pass_the_servers_rules() {
        let mut rng = StdRng::seed_from_u64(11);
        for _ in 0..200 {
            let body = Subject::random(&mut rng, 200).to_request_body();
            let new: NewChange = serde_json::from_value(body).unwrap();
            new.validate(Utc::now()).unwrap();
        }
    }
}
