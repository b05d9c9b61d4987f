//! Migration jobs: a phase apply or a table rebuild that `gantry server` runs detached
//! (`gantry migrate apply --via-server`), so a dropped session cannot kill it. The wire
//! types, and the rule for what pause, resume, abort and retry do to a job in each state.
//!
//! A job's `state` is what it is; `control` is what a person asked of the server running
//! it, which that server acts on between statements and batches. Where no server is running
//! the job (queued, paused before it started, failed, interrupted), the request takes effect
//! at once in `state`.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use ulid::Ulid;
use utoipa::ToSchema;

use crate::Invalid;

/// Most files one job may carry (both phases of one database).
pub const MAX_JOB_FILES: usize = 2_000;

/// Where a job is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum JobState {
    /// Waiting for the server that holds the database's lease.
    Queued,
    Running,
    /// Held between statements (or batches) by a person.
    Paused,
    Succeeded,
    Failed,
    /// Its server stopped (killed, or lost the lease) mid-job: nothing was recorded as
    /// applied that did not finish; `retry` continues where it stopped.
    Interrupted,
    Aborted,
}

impl JobState {
    pub const ALL: [JobState; 7] = [
        JobState::Queued,
        JobState::Running,
        JobState::Paused,
        JobState::Succeeded,
        JobState::Failed,
        JobState::Interrupted,
        JobState::Aborted,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            JobState::Queued => "queued",
            JobState::Running => "running",
            JobState::Paused => "paused",
            JobState::Succeeded => "succeeded",
            JobState::Failed => "failed",
            JobState::Interrupted => "interrupted",
            JobState::Aborted => "aborted",
        }
    }

    /// Done for good: nothing will change it again but `retry` (failed, interrupted).
    pub fn is_final(self) -> bool {
        matches!(
            self,
            JobState::Succeeded | JobState::Failed | JobState::Interrupted | JobState::Aborted
        )
    }
}

impl std::str::FromStr for JobState {
    type Err = Invalid;
    fn from_str(s: &str) -> Result<JobState, Invalid> {
        JobState::ALL
            .into_iter()
            .find(|x| x.as_str() == s)
            .ok_or_else(|| Invalid::new(format!("unknown job state '{s}'")))
    }
}

impl std::fmt::Display for JobState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// What a job does.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum JobKind {
    /// Apply a phase's pending migrations.
    Apply,
    /// Rebuild one table online (shadow table, swap).
    Rebuild,
}

/// One migration file as the client read it, its path relative to the database's folder
/// (`expand/0001_add_email.sql`, `expand/0001_add_email.backfill.sql`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct JobFile {
    pub path: String,
    pub text: String,
}

/// What to run, as `gantry migrate apply` or `rebuild` was told.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields, default)]
pub struct JobSpec {
    /// `expand` or `contract`.
    pub phase: String,
    /// Every migration file of the database, both phases (drift and the expand-before-
    /// contract rule look at both). Empty in job lists.
    pub files: Vec<JobFile>,
    /// Apply: stop after this version.
    pub to: Option<u32>,
    /// Rebuild: the table, and what follows `ALTER TABLE <table>`.
    pub table: Option<String>,
    pub alter: Option<String>,
    pub drop_old: bool,
    /// Rebuild: move foreign keys that point at the table to the new one (PostgreSQL).
    pub repoint_foreign_keys: bool,
    /// Run what the classifier or the contract gate refuses; `reason` says why.
    pub force: bool,
    pub reason: Option<String>,
    pub out_of_order: bool,
    /// A MariaDB statement found started but not done: count it done, or run it again.
    pub assume_done: bool,
    pub rerun: bool,
    pub lock_timeout_ms: Option<u64>,
    pub lock_retries: Option<u32>,
    /// Rows per backfill or copy batch.
    pub batch: Option<u32>,
}

/// `POST /api/v1/migrate/jobs`.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct NewJob {
    /// A database of the server's `[migrate.databases]`.
    pub database: String,
    pub kind: JobKind,
    pub spec: JobSpec,
}

/// A migration job.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct Job {
    #[schema(value_type = String)]
    pub id: Ulid,
    pub database: String,
    pub kind: JobKind,
    /// The environment and services of the database (from the server's configuration).
    pub environment: String,
    pub services: Vec<String>,
    /// The change (kind `migration`) the job records, `in_progress` until it ends.
    #[schema(value_type = String)]
    pub change_id: Ulid,
    pub state: JobState,
    /// What a person asked of the running job and it has not yet acted on: `pause` or
    /// `abort`.
    pub control: Option<String>,
    pub requested_by: String,
    pub created_at: DateTime<Utc>,
    pub started_at: Option<DateTime<Utc>>,
    pub finished_at: Option<DateTime<Utc>>,
    pub updated_at: DateTime<Utc>,
    /// The server running it, while it runs.
    pub holder: Option<String>,
    pub error: Option<String>,
    /// What it did (versions, statements, rows, duration).
    #[schema(value_type = Object)]
    pub report: Option<serde_json::Value>,
    /// Bumped by every write (compare-and-set between the server and people).
    pub version: i64,
    pub spec: JobSpec,
}

/// One line of a job's log; `seq` orders every log line of the store.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct JobLogLine {
    pub seq: i64,
    pub at: DateTime<Utc>,
    pub text: String,
}

/// What a person can ask of a job.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum JobAction {
    Pause,
    Resume,
    Abort,
    Retry,
}

impl JobAction {
    pub fn as_str(self) -> &'static str {
        match self {
            JobAction::Pause => "pause",
            JobAction::Resume => "resume",
            JobAction::Abort => "abort",
            JobAction::Retry => "retry",
        }
    }
}

impl std::str::FromStr for JobAction {
    type Err = Invalid;
    fn from_str(s: &str) -> Result<JobAction, Invalid> {
        [
            JobAction::Pause,
            JobAction::Resume,
            JobAction::Abort,
            JobAction::Retry,
        ]
        .into_iter()
        .find(|a| a.as_str() == s)
        .ok_or_else(|| {
            Invalid::new(format!(
                "unknown action '{s}': expected pause, resume, abort or retry"
            ))
        })
    }
}

/// The job's new `state` and `control` after `action`, or why it cannot be done now.
/// `started` is whether a server ever began running it (`started_at`): a rebuild that did
/// must be aborted by a server, which removes its shadow table.
pub fn control_job(job: &Job, action: JobAction) -> Result<(JobState, Option<String>), Invalid> {
    use JobState::*;
    let started = job.started_at.is_some();
    let refuse = |what: &str| {
        Err(Invalid::new(format!(
            "job {} is {}: {what}",
            job.id, job.state
        )))
    };
    if job.control.as_deref() == Some("abort")
        && matches!(action, JobAction::Pause | JobAction::Resume)
    {
        return refuse("an abort is pending; it cannot be paused or resumed");
    }
    match (action, job.state) {
        (JobAction::Pause, Queued) => Ok((Paused, None)),
        (JobAction::Pause, Running) => Ok((Running, Some("pause".into()))),
        // A pending resume is taken back.
        (JobAction::Pause, Paused) => Ok((Paused, None)),
        (JobAction::Pause, _) => refuse("only a queued or running job can be paused"),
        (JobAction::Resume, Paused) if job.holder.is_some() => Ok((Paused, Some("resume".into()))),
        (JobAction::Resume, Paused) => Ok((Queued, None)),
        (JobAction::Resume, Running) if job.control.as_deref() == Some("pause") => {
            Ok((Running, None))
        }
        (JobAction::Resume, _) => refuse("only a paused job can be resumed"),
        (JobAction::Abort, Running) => Ok((Running, Some("abort".into()))),
        (JobAction::Abort, Paused) if job.holder.is_some() => Ok((Paused, Some("abort".into()))),
        (JobAction::Abort, Queued | Paused | Failed | Interrupted)
            if started && job.kind == JobKind::Rebuild =>
        {
            // A server takes it up to remove the shadow table and triggers.
            Ok((Queued, Some("abort".into())))
        }
        (JobAction::Abort, Queued | Paused | Failed | Interrupted) => Ok((Aborted, None)),
        (JobAction::Abort, _) => refuse("it has ended"),
        (JobAction::Retry, Failed | Interrupted) => Ok((Queued, None)),
        (JobAction::Retry, _) => refuse("only a failed or interrupted job can be retried"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn job(state: JobState, kind: JobKind, started: bool, held: bool) -> Job {
        let now = Utc::now();
        Job {
            id: Ulid::new(),
            database: "shop".into(),
            kind,
            environment: "prod".into(),
            services: vec!["shop".into()],
            change_id: Ulid::new(),
            state,
            control: None,
            requested_by: "ann".into(),
            created_at: now,
            started_at: started.then_some(now),
            finished_at: None,
            updated_at: now,
            holder: held.then(|| "server-1".to_string()),
            error: None,
            report: None,
            version: 1,
            spec: JobSpec::default(),
        }
    }

    fn after(j: &Job, a: JobAction) -> Result<(JobState, Option<&'static str>), String> {
        control_job(j, a)
            .map(|(s, c)| {
                (
                    s,
                    c.map(|c| match c.as_str() {
                        "pause" => "pause",
                        "resume" => "resume",
                        "abort" => "abort",
                        _ => "?",
                    }),
                )
            })
            .map_err(|e| e.0)
    }

    use JobAction::*;
    use JobKind::*;
    use JobState::*;

    #[test]
    fn pausing_a_queued_job_holds_it_and_a_running_one_is_asked() {
        assert_eq!(
            after(&job(Queued, Apply, false, false), Pause),
            Ok((Paused, None))
        );
        assert_eq!(
            after(&job(Running, Apply, true, true), Pause),
            Ok((Running, Some("pause")))
        );
        assert!(after(&job(Succeeded, Apply, true, false), Pause).is_err());
    }

    #[test]
    fn resuming_goes_back_to_the_queue_or_to_the_server_holding_it() {
        assert_eq!(
            after(&job(Paused, Apply, false, false), Resume),
            Ok((Queued, None))
        );
        assert_eq!(
            after(&job(Paused, Apply, true, true), Resume),
            Ok((Paused, Some("resume")))
        );
        let mut asked = job(Running, Apply, true, true);
        asked.control = Some("pause".into());
        assert_eq!(after(&asked, Resume), Ok((Running, None)));
        let err = after(&job(Failed, Apply, true, false), Resume).unwrap_err();
        assert!(err.contains("is failed"), "{err}");
    }

    #[test]
    fn abort_ends_idle_jobs_at_once_but_a_started_rebuild_goes_to_a_server() {
        assert_eq!(
            after(&job(Queued, Apply, false, false), Abort),
            Ok((Aborted, None))
        );
        assert_eq!(
            after(&job(Failed, Apply, true, false), Abort),
            Ok((Aborted, None))
        );
        assert_eq!(
            after(&job(Interrupted, Rebuild, true, false), Abort),
            Ok((Queued, Some("abort")))
        );
        assert_eq!(
            after(&job(Queued, Rebuild, false, false), Abort),
            Ok((Aborted, None))
        );
        assert_eq!(
            after(&job(Running, Apply, true, true), Abort),
            Ok((Running, Some("abort")))
        );
        assert!(after(&job(Aborted, Apply, true, false), Abort).is_err());
        assert!(after(&job(Succeeded, Apply, true, false), Abort).is_err());
    }

    #[test]
    fn a_pending_abort_is_never_replaced_and_a_pause_takes_back_a_resume() {
        let mut aborting = job(Running, Rebuild, true, true);
        aborting.control = Some("abort".into());
        assert!(after(&aborting, Pause)
            .unwrap_err()
            .contains("abort is pending"));
        assert!(after(&aborting, Resume).is_err());
        let mut queued = job(Queued, Rebuild, true, false);
        queued.control = Some("abort".into());
        assert!(after(&queued, Pause).is_err());
        let mut resuming = job(Paused, Apply, true, true);
        resuming.control = Some("resume".into());
        assert_eq!(after(&resuming, Pause), Ok((Paused, None)));
    }

    #[test]
    fn only_failed_or_interrupted_jobs_are_retried() {
        assert_eq!(
            after(&job(Failed, Apply, true, false), Retry),
            Ok((Queued, None))
        );
        assert_eq!(
            after(&job(Interrupted, Rebuild, true, false), Retry),
            Ok((Queued, None))
        );
        for state in [Queued, Running, Paused, Succeeded, Aborted] {
            assert!(
                after(&job(state, Apply, true, false), Retry).is_err(),
                "{state}"
            );
        }
    }

    #[test]
    fn states_and_actions_read_back_from_their_names() {
        for s in JobState::ALL {
            assert_eq!(s.as_str().parse::<JobState>(), Ok(s));
        }
        assert_eq!("retry".parse::<JobAction>(), Ok(Retry));
        assert!("restart".parse::<JobAction>().is_err());
    }
}
