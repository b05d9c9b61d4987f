//! Migration jobs' SQL (the jobs `gantry server` runs detached, and their logs), written
//! once and instantiated per database like `queries.rs`. A job is written whole by a
//! compare-and-set on its `version`; its log is append-only and read by `seq`.

macro_rules! migrate_queries {
    ($db:ty) => {
        use chrono::{DateTime, Utc};
        use gantry_core::migrate_job::{Job, JobKind, JobLogLine, JobSpec, JobState};
        use sqlx::{Pool, QueryBuilder, Row};
        use ulid::Ulid;

        use crate::queries::Dialect;
        use crate::{from_micros, micros, Result, StoreError};

        type Db = $db;
        type DbRow = <$db as sqlx::Database>::Row;

        fn corrupt(what: &str, e: impl std::fmt::Display) -> StoreError {
            StoreError::Corrupt(format!("{what}: {e}"))
        }

        fn json<T: serde::Serialize>(what: &str, v: &T) -> Result<String> {
            serde_json::to_string(v).map_err(|e| corrupt(what, e))
        }

        fn from_json<T: serde::de::DeserializeOwned>(what: &str, s: &str) -> Result<T> {
            serde_json::from_str(s).map_err(|e| corrupt(what, e))
        }

        fn kind_str(kind: JobKind) -> &'static str {
            match kind {
                JobKind::Apply => "apply",
                JobKind::Rebuild => "rebuild",
            }
        }

        fn parse_kind(s: &str) -> Result<JobKind> {
            match s {
                "apply" => Ok(JobKind::Apply),
                "rebuild" => Ok(JobKind::Rebuild),
                other => Err(corrupt("migrate job kind", format!("unknown kind '{other}'"))),
            }
        }

        const JOB_COLUMNS: &str = "id, database, kind, environment, services, change_id, state, control, requested_by, created_at, started_at, finished_at, updated_at, holder, error, report, version, spec";

        /// A job from its row; `files` says whether to keep the spec's migration files
        /// (lists leave them out).
        fn job_from_row(row: &DbRow, files: bool) -> Result<Job> {
            let id: String = row.try_get("id")?;
            let kind: String = row.try_get("kind")?;
            let services: String = row.try_get("services")?;
            let change_id: String = row.try_get("change_id")?;
            let state: String = row.try_get("state")?;
            let started_at: Option<i64> = row.try_get("started_at")?;
            let finished_at: Option<i64> = row.try_get("finished_at")?;
            let report: Option<String> = row.try_get("report")?;
            let spec: String = row.try_get("spec")?;
            let mut spec: JobSpec = from_json("migrate job spec", &spec)?;
            if !files {
                spec.files = Vec::new();
            }
            Ok(Job {
                id: id.parse().map_err(|e| corrupt("migrate job id", e))?,
                database: row.try_get("database")?,
                kind: parse_kind(&kind)?,
                environment: row.try_get("environment")?,
                services: from_json("migrate job services", &services)?,
                change_id: change_id.parse().map_err(|e| corrupt("migrate job change id", e))?,
                state: state.parse::<JobState>().map_err(|e| corrupt("migrate job state", e))?,
                control: row.try_get("control")?,
                requested_by: row.try_get("requested_by")?,
                created_at: from_micros(row.try_get("created_at")?)?,
                started_at: started_at.map(from_micros).transpose()?,
                finished_at: finished_at.map(from_micros).transpose()?,
                updated_at: from_micros(row.try_get("updated_at")?)?,
                holder: row.try_get("holder")?,
                error: row.try_get("error")?,
                report: report.map(|r| from_json("migrate job report", &r)).transpose()?,
                version: row.try_get("version")?,
                spec,
            })
        }

        pub(crate) async fn insert_migrate_job(pool: &Pool<Db>, job: &Job) -> Result<()> {
            sqlx::query(&format!(
                "INSERT INTO migrate_jobs ({JOB_COLUMNS}) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $16, $17, $18)"
            ))
            .bind(job.id.to_string())
            .bind(&job.database)
            .bind(kind_str(job.kind))
            .bind(&job.environment)
            .bind(json("migrate job services", &job.services)?)
            .bind(job.change_id.to_string())
            .bind(job.state.as_str())
            .bind(&job.control)
            .bind(&job.requested_by)
            .bind(micros(job.created_at))
            .bind(job.started_at.map(micros))
            .bind(job.finished_at.map(micros))
            .bind(micros(job.updated_at))
            .bind(&job.holder)
            .bind(&job.error)
            .bind(job.report.as_ref().map(|r| json("migrate job report", r)).transpose()?)
            .bind(job.version)
            .bind(json("migrate job spec", &job.spec)?)
            .execute(pool)
            .await?;
            Ok(())
        }

        pub(crate) async fn get_migrate_job(pool: &Pool<Db>, id: Ulid) -> Result<Option<Job>> {
            sqlx::query(&format!("SELECT {JOB_COLUMNS} FROM migrate_jobs WHERE id = $1"))
                .bind(id.to_string())
                .fetch_optional(pool)
                .await?
                .map(|r| job_from_row(&r, true))
                .transpose()
        }

        /// Jobs newest first, of `database` when given and in `states` when not empty,
        /// without their migration files.
        pub(crate) async fn list_migrate_jobs(
            pool: &Pool<Db>,
            database: Option<&str>,
            states: &[JobState],
            limit: u32,
        ) -> Result<Vec<Job>> {
            let mut sql = QueryBuilder::<Db>::new(format!("SELECT {JOB_COLUMNS} FROM migrate_jobs WHERE 1 = 1"));
            if let Some(database) = database {
                sql.push(" AND database = ").push_bind(database.to_string());
            }
            if !states.is_empty() {
                sql.push(" AND state IN (");
                let mut list = sql.separated(", ");
                for state in states {
                    list.push_bind(state.as_str());
                }
                sql.push(")");
            }
            sql.push(" ORDER BY created_at DESC, id DESC LIMIT ").push_bind(i64::from(limit));
            let rows = sql.build().fetch_all(pool).await?;
            rows.iter().map(|r| job_from_row(r, false)).collect()
        }

        /// Writes the job's mutable fields if it is still at `job.version`: `NotFound` when
        /// there is no such job, `Stale` when another write came first (nothing changed).
        pub(crate) async fn update_migrate_job(pool: &Pool<Db>, job: &Job) -> Result<Job> {
            let mut tx = pool.begin().await?;
            let written = sqlx::query(
                "UPDATE migrate_jobs SET state = $1, control = $2, started_at = $3, finished_at = $4, updated_at = $5, \
                 holder = $6, error = $7, report = $8, spec = $9, version = version + 1 WHERE id = $10 AND version = $11",
            )
            .bind(job.state.as_str())
            .bind(&job.control)
            .bind(job.started_at.map(micros))
            .bind(job.finished_at.map(micros))
            .bind(micros(job.updated_at))
            .bind(&job.holder)
            .bind(&job.error)
            .bind(job.report.as_ref().map(|r| json("migrate job report", r)).transpose()?)
            .bind(json("migrate job spec", &job.spec)?)
            .bind(job.id.to_string())
            .bind(job.version)
            .execute(&mut *tx)
            .await?;
            if written.rows_affected() == 0 {
                let current: Option<i64> = sqlx::query_scalar("SELECT version FROM migrate_jobs WHERE id = $1")
                    .bind(job.id.to_string())
                    .fetch_optional(&mut *tx)
                    .await?;
                return Err(match current {
                    None => StoreError::NotFound(format!("no migration job with id {}", job.id)),
                    Some(current) => StoreError::Stale(format!(
                        "migration job {} changed since it was read (version {}, now {current}); read it again and retry",
                        job.id, job.version
                    )),
                });
            }
            tx.commit().await?;
            let mut stored = job.clone();
            stored.version = job.version + 1;
            Ok(stored)
        }

        /// Appends lines in the order given, in one transaction; the seq of the last (0 for
        /// none). On PostgreSQL the job's row is locked first, so one job's appends commit
        /// in `seq` order and a reader resuming after a seq never skips a line committed
        /// later (SQLite has a single writer).
        pub(crate) async fn append_migrate_log(
            pool: &Pool<Db>,
            dialect: &Dialect,
            job: Ulid,
            lines: &[(DateTime<Utc>, String)],
        ) -> Result<i64> {
            if lines.is_empty() {
                return Ok(0);
            }
            let job = job.to_string();
            let mut tx = pool.begin().await?;
            sqlx::query(&format!("SELECT 1 FROM migrate_jobs WHERE id = $1{}", dialect.for_update))
                .bind(&job)
                .fetch_optional(&mut *tx)
                .await?;
            let mut last = 0;
            for (at, text) in lines {
                last = sqlx::query_scalar("INSERT INTO migrate_job_log (job_id, at, text) VALUES ($1, $2, $3) RETURNING seq")
                    .bind(&job)
                    .bind(micros(*at))
                    .bind(text)
                    .fetch_one(&mut *tx)
                    .await?;
            }
            tx.commit().await?;
            Ok(last)
        }

        pub(crate) async fn migrate_log_after(pool: &Pool<Db>, job: Ulid, after: i64, limit: u32) -> Result<Vec<JobLogLine>> {
            let rows = sqlx::query("SELECT seq, at, text FROM migrate_job_log WHERE job_id = $1 AND seq > $2 ORDER BY seq LIMIT $3")
                .bind(job.to_string())
                .bind(after)
                .bind(i64::from(limit))
                .fetch_all(pool)
                .await?;
            rows.iter()
                .map(|row| {
                    Ok(JobLogLine {
                        seq: row.try_get("seq")?,
                        at: from_micros(row.try_get("at")?)?,
                        text: row.try_get("text")?,
                    })
                })
                .collect()
        }
    };
}

pub(crate) use migrate_queries;
