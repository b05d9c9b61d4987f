//! Regression detection's SQL (each service's `[detect]` table, its `[[logs]]` entries and
//! verdicts), written once
//! and instantiated per database like `monitor_queries.rs`. The store does not read what
//! it keeps for detection: a config is TOML text kept as written, and a verdict is JSON
//! text the detection crate writes (`doc`) beside the columns lists filter on, which the
//! caller fills. Verdicts are append-only and read newest first by `at` (then id). A
//! change, and a rollout, has at most one regression verdict per metric: partial unique
//! indexes keep the rule, so two servers judging together cannot both record one.

macro_rules! detect_queries {
    ($db:ty) => {
        use chrono::{DateTime, Utc};
        use sqlx::{Pool, QueryBuilder, Row};
        use ulid::Ulid;

        use crate::queries::Dialect;
        use crate::{from_micros, micros, DetectConfigRecord, Result, StoreError, VerdictRecord};

        type Db = $db;
        type DbRow = <$db as sqlx::Database>::Row;

        fn corrupt(what: &str, e: impl std::fmt::Display) -> StoreError {
            StoreError::Corrupt(format!("{what}: {e}"))
        }

        fn is_unique_violation(e: &sqlx::Error) -> bool {
            matches!(e, sqlx::Error::Database(d) if d.is_unique_violation())
        }

        // ---- configs ----

        /// Inserts, replaces or (`text` being `None`) deletes the service's config,
        /// returning the text it replaced. The row is locked between reading the old text
        /// and writing the new (PostgreSQL; SQLite has a single writer), so two writers
        /// never both report replacing the same text.
        async fn put_section(
            pool: &Pool<Db>,
            dialect: &Dialect,
            table: &str,
            service: &str,
            text: Option<&str>,
            actor: &str,
            now: DateTime<Utc>,
        ) -> Result<Option<String>> {
            let Some(text) = text else {
                return Ok(sqlx::query_scalar(&format!("DELETE FROM {table} WHERE service = $1 RETURNING text"))
                    .bind(service)
                    .fetch_optional(pool)
                    .await?);
            };
            let mut tx = pool.begin().await?;
            let inserted = sqlx::query(&format!(
                "INSERT INTO {table} (service, text, updated_by, updated_at) VALUES ($1, $2, $3, $4) \
                 ON CONFLICT (service) DO NOTHING",
            ))
            .bind(service)
            .bind(text)
            .bind(actor)
            .bind(micros(now))
            .execute(&mut *tx)
            .await?;
            if inserted.rows_affected() == 1 {
                tx.commit().await?;
                return Ok(None);
            }
            let old: String =
                sqlx::query_scalar(&format!("SELECT text FROM {table} WHERE service = $1{}", dialect.for_update))
                    .bind(service)
                    .fetch_one(&mut *tx)
                    .await?;
            sqlx::query(&format!("UPDATE {table} SET text = $1, updated_by = $2, updated_at = $3 WHERE service = $4"))
                .bind(text)
                .bind(actor)
                .bind(micros(now))
                .bind(service)
                .execute(&mut *tx)
                .await?;
            tx.commit().await?;
            Ok(Some(old))
        }

        async fn list_sections(pool: &Pool<Db>, table: &str) -> Result<Vec<DetectConfigRecord>> {
            let rows = sqlx::query(&format!("SELECT service, text, updated_by, updated_at FROM {table} ORDER BY service"))
                .fetch_all(pool)
                .await?;
            rows.iter()
                .map(|row| {
                    Ok(DetectConfigRecord {
                        service: row.try_get("service")?,
                        text: row.try_get("text")?,
                        updated_by: row.try_get("updated_by")?,
                        updated_at: from_micros(row.try_get("updated_at")?)?,
                    })
                })
                .collect()
        }

        /// The service's `[detect]` table: see [`put_section`].
        pub(crate) async fn put_detect_config(
            pool: &Pool<Db>,
            dialect: &Dialect,
            service: &str,
            text: Option<&str>,
            actor: &str,
            now: DateTime<Utc>,
        ) -> Result<Option<String>> {
            put_section(pool, dialect, "detect_configs", service, text, actor, now).await
        }

        pub(crate) async fn list_detect_configs(pool: &Pool<Db>) -> Result<Vec<DetectConfigRecord>> {
            list_sections(pool, "detect_configs").await
        }

        /// The service's `[[logs]]` entries: see [`put_section`].
        pub(crate) async fn put_log_watches(
            pool: &Pool<Db>,
            dialect: &Dialect,
            service: &str,
            text: Option<&str>,
            actor: &str,
            now: DateTime<Utc>,
        ) -> Result<Option<String>> {
            put_section(pool, dialect, "log_watch_configs", service, text, actor, now).await
        }

        pub(crate) async fn list_log_watches(pool: &Pool<Db>) -> Result<Vec<DetectConfigRecord>> {
            list_sections(pool, "log_watch_configs").await
        }

        // ---- verdicts ----

        const VERDICT_COLUMNS: &str = "id, service, environment, metric, change_id, rollout_id, at, regression, doc";

        fn parse_id(what: &str, id: String) -> Result<Ulid> {
            id.parse().map_err(|e| corrupt(&format!("verdict {what} '{id}'"), e))
        }

        fn verdict_from_row(row: &DbRow) -> Result<VerdictRecord> {
            let change: Option<String> = row.try_get("change_id")?;
            let rollout: Option<String> = row.try_get("rollout_id")?;
            Ok(VerdictRecord {
                id: parse_id("id", row.try_get("id")?)?,
                service: row.try_get("service")?,
                environment: row.try_get("environment")?,
                metric: row.try_get("metric")?,
                change_id: change.map(|c| parse_id("change id", c)).transpose()?,
                rollout_id: rollout.map(|r| parse_id("rollout id", r)).transpose()?,
                at: from_micros(row.try_get("at")?)?,
                regression: row.try_get("regression")?,
                doc: row.try_get("doc")?,
            })
        }

        /// Stores the verdict. `Conflict` (nothing written) when its id is taken, or when
        /// it is a regression and its change or rollout already has a regression verdict
        /// for the metric (the partial unique indexes decide; the message says which).
        pub(crate) async fn insert_verdict(pool: &Pool<Db>, verdict: &VerdictRecord) -> Result<()> {
            let id = verdict.id.to_string();
            let change = verdict.change_id.map(|c| c.to_string());
            let rollout = verdict.rollout_id.map(|r| r.to_string());
            let written = sqlx::query(&format!(
                "INSERT INTO verdicts ({VERDICT_COLUMNS}) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)"
            ))
            .bind(&id)
            .bind(&verdict.service)
            .bind(&verdict.environment)
            .bind(&verdict.metric)
            .bind(&change)
            .bind(&rollout)
            .bind(micros(verdict.at))
            .bind(verdict.regression)
            .bind(&verdict.doc)
            .execute(pool)
            .await;
            match written {
                Ok(_) => Ok(()),
                Err(e) if is_unique_violation(&e) => Err(StoreError::Conflict(
                    conflict_message(pool, verdict, &id, change.as_deref(), rollout.as_deref()).await?,
                )),
                Err(e) => Err(e.into()),
            }
        }

        /// Says which stored verdict an insert collided with (verdicts are never deleted,
        /// so it is still there).
        async fn conflict_message(
            pool: &Pool<Db>,
            verdict: &VerdictRecord,
            id: &str,
            change: Option<&str>,
            rollout: Option<&str>,
        ) -> Result<String> {
            let taken: Option<String> = sqlx::query_scalar("SELECT id FROM verdicts WHERE id = $1")
                .bind(id)
                .fetch_optional(pool)
                .await?;
            if taken.is_some() {
                return Ok(format!("verdict {id} is already stored"));
            }
            for (what, column, value) in [("change", "change_id", change), ("rollout", "rollout_id", rollout)] {
                let Some(value) = value else { continue };
                let existing: Option<String> = sqlx::query_scalar(&format!(
                    "SELECT id FROM verdicts WHERE {column} = $1 AND metric = $2 AND regression"
                ))
                .bind(value)
                .bind(&verdict.metric)
                .fetch_optional(pool)
                .await?;
                if let Some(existing) = existing {
                    return Ok(format!(
                        "{what} {value} already has a regression verdict for metric '{}' (verdict {existing}); \
                         a {what} has at most one per metric",
                        verdict.metric
                    ));
                }
            }
            Ok(format!("verdict {id} collides with a stored verdict"))
        }

        /// Verdicts newest first by `at` (then id): of the service and of the environment
        /// when given, regressions only when `regression_only`, at or after `since` when
        /// given, at most `limit`.
        pub(crate) async fn list_verdicts(
            pool: &Pool<Db>,
            service: Option<&str>,
            environment: Option<&str>,
            regression_only: bool,
            since: Option<DateTime<Utc>>,
            limit: u32,
        ) -> Result<Vec<VerdictRecord>> {
            let mut sql = QueryBuilder::<Db>::new(format!("SELECT {VERDICT_COLUMNS} FROM verdicts WHERE 1 = 1"));
            if let Some(service) = service {
                sql.push(" AND service = ").push_bind(service.to_string());
            }
            if let Some(environment) = environment {
                sql.push(" AND environment = ").push_bind(environment.to_string());
            }
            if regression_only {
                sql.push(" AND regression");
            }
            if let Some(since) = since {
                sql.push(" AND at >= ").push_bind(micros(since));
            }
            sql.push(" ORDER BY at DESC, id DESC LIMIT ").push_bind(i64::from(limit));
            let rows = sql.build().fetch_all(pool).await?;
            rows.iter().map(verdict_from_row).collect()
        }

        pub(crate) async fn get_verdict(pool: &Pool<Db>, id: Ulid) -> Result<Option<VerdictRecord>> {
            sqlx::query(&format!("SELECT {VERDICT_COLUMNS} FROM verdicts WHERE id = $1"))
                .bind(id.to_string())
                .fetch_optional(pool)
                .await?
                .map(|r| verdict_from_row(&r))
                .transpose()
        }

        /// Regression verdicts of the rollout, of the change, or of either when both are
        /// given (none when neither is), newest first by `at` (then id).
        pub(crate) async fn regressions_of(
            pool: &Pool<Db>,
            rollout: Option<Ulid>,
            change: Option<Ulid>,
        ) -> Result<Vec<VerdictRecord>> {
            let mut of = Vec::new();
            if let Some(rollout) = rollout {
                of.push(("rollout_id", rollout.to_string()));
            }
            if let Some(change) = change {
                of.push(("change_id", change.to_string()));
            }
            if of.is_empty() {
                return Ok(Vec::new());
            }
            let mut sql = QueryBuilder::<Db>::new(format!("SELECT {VERDICT_COLUMNS} FROM verdicts WHERE regression AND ("));
            for (i, (column, value)) in of.into_iter().enumerate() {
                if i > 0 {
                    sql.push(" OR ");
                }
                sql.push(column).push(" = ").push_bind(value);
            }
            sql.push(") ORDER BY at DESC, id DESC");
            let rows = sql.build().fetch_all(pool).await?;
            rows.iter().map(verdict_from_row).collect()
        }
    };
}

pub(crate) use detect_queries;
