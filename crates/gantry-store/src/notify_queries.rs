//! Notifications' SQL (the grouper's state, deliveries, silences), written once and
//! instantiated per database like `monitor_queries.rs`. A delivery is claimed by one server
//! at a time: the claim is an `UPDATE` whose `WHERE` repeats the "due and unclaimed"
//! condition, so of two servers claiming at once (PostgreSQL re-checks the condition on the
//! row it waited for) only one gets it; a claim lapses at `claimed_until`, so a server that
//! dies mid-send leaves the delivery to another.

macro_rules! notify_queries {
    ($db:ty) => {
        use chrono::{DateTime, Utc};
        use sqlx::{Pool, QueryBuilder, Row};
        use ulid::Ulid;

        use crate::{
            from_micros, micros, DeliveryOutcome, DeliveryRecord, NewDelivery, Result, SilenceRecord,
            StoreError,
        };

        type Db = $db;
        type DbRow = <$db as sqlx::Database>::Row;

        const DELIVERY_COLUMNS: &str = "id, notification_id, receiver, service, environment, summary, doc, state, \
             attempts, created_at, first_attempt_at, last_attempt_at, next_attempt_at, delivered_at, last_error";
        const SILENCE_COLUMNS: &str =
            "id, kind, doc, created_by, created_at, ends_at, expired_at, expired_by";

        fn ulid(row: &DbRow, column: &str) -> Result<Ulid> {
            let text: String = row.try_get(column)?;
            Ulid::from_string(&text)
                .map_err(|e| StoreError::Corrupt(format!("{column} '{text}' is not a ULID: {e}")))
        }

        fn time(row: &DbRow, column: &str) -> Result<Option<DateTime<Utc>>> {
            row.try_get::<Option<i64>, _>(column)?.map(from_micros).transpose()
        }

        fn delivery(row: &DbRow) -> Result<DeliveryRecord> {
            Ok(DeliveryRecord {
                id: ulid(row, "id")?,
                notification_id: row.try_get("notification_id")?,
                receiver: row.try_get("receiver")?,
                service: row.try_get("service")?,
                environment: row.try_get("environment")?,
                summary: row.try_get("summary")?,
                doc: row.try_get("doc")?,
                state: row.try_get("state")?,
                attempts: u32::try_from(row.try_get::<i64, _>("attempts")?).unwrap_or(u32::MAX),
                created_at: from_micros(row.try_get("created_at")?)?,
                first_attempt_at: time(row, "first_attempt_at")?,
                last_attempt_at: time(row, "last_attempt_at")?,
                next_attempt_at: time(row, "next_attempt_at")?,
                delivered_at: time(row, "delivered_at")?,
                last_error: row.try_get("last_error")?,
            })
        }

        fn silence(row: &DbRow) -> Result<SilenceRecord> {
            Ok(SilenceRecord {
                id: ulid(row, "id")?,
                kind: row.try_get("kind")?,
                doc: row.try_get("doc")?,
                created_by: row.try_get("created_by")?,
                created_at: from_micros(row.try_get("created_at")?)?,
                ends_at: time(row, "ends_at")?,
                expired_at: time(row, "expired_at")?,
                expired_by: row.try_get("expired_by")?,
            })
        }

        // ---- the grouper's state ----

        pub(crate) async fn notify_state(pool: &Pool<Db>, name: &str) -> Result<Option<String>> {
            let row = sqlx::query("SELECT doc FROM notify_state WHERE name = $1")
                .bind(name)
                .fetch_optional(pool)
                .await?;
            row.map(|r| r.try_get("doc").map_err(StoreError::from)).transpose()
        }

        pub(crate) async fn save_notify_round(
            pool: &Pool<Db>,
            name: &str,
            state: &str,
            deliveries: &[NewDelivery],
            now: DateTime<Utc>,
        ) -> Result<()> {
            let mut tx = pool.begin().await?;
            sqlx::query(
                "INSERT INTO notify_state (name, doc, updated_at) VALUES ($1, $2, $3) \
                 ON CONFLICT (name) DO UPDATE SET doc = excluded.doc, updated_at = excluded.updated_at",
            )
            .bind(name)
            .bind(state)
            .bind(micros(now))
            .execute(&mut *tx)
            .await?;
            for d in deliveries {
                sqlx::query(
                    "INSERT INTO notify_deliveries (id, notification_id, receiver, service, environment, summary, doc, \
                     state, attempts, created_at, next_attempt_at) \
                     VALUES ($1, $2, $3, $4, $5, $6, $7, 'pending', 0, $8, $8) \
                     ON CONFLICT (notification_id, receiver) DO NOTHING",
                )
                .bind(d.id.to_string())
                .bind(&d.notification_id)
                .bind(&d.receiver)
                .bind(&d.service)
                .bind(&d.environment)
                .bind(&d.summary)
                .bind(&d.doc)
                .bind(micros(d.created_at))
                .execute(&mut *tx)
                .await?;
            }
            tx.commit().await?;
            Ok(())
        }

        // ---- deliveries ----

        pub(crate) async fn claim_deliveries(
            pool: &Pool<Db>,
            holder: &str,
            now: DateTime<Utc>,
            until: DateTime<Utc>,
            limit: u32,
        ) -> Result<Vec<DeliveryRecord>> {
            // One statement: due and unclaimed (or the claim lapsed), oldest due first.
            let due = "state = 'pending' AND next_attempt_at <= $3 AND (claimed_until IS NULL OR claimed_until < $3)";
            let sql = format!(
                "UPDATE notify_deliveries SET claimed_by = $1, claimed_until = $2 \
                 WHERE {due} AND id IN (SELECT id FROM notify_deliveries WHERE {due} \
                 ORDER BY next_attempt_at, id LIMIT $4) \
                 RETURNING {DELIVERY_COLUMNS}"
            );
            let rows = sqlx::query(&sql)
                .bind(holder)
                .bind(micros(until))
                .bind(micros(now))
                .bind(i64::from(limit))
                .fetch_all(pool)
                .await?;
            let mut out = rows.iter().map(delivery).collect::<Result<Vec<_>>>()?;
            out.sort_by_key(|d| (d.next_attempt_at, d.id));
            Ok(out)
        }

        /// Records an attempt of a delivery this holder claimed; false (nothing written)
        /// when the claim was lost to another server.
        pub(crate) async fn finish_delivery(
            pool: &Pool<Db>,
            id: Ulid,
            holder: &str,
            attempt_at: DateTime<Utc>,
            outcome: &DeliveryOutcome,
        ) -> Result<bool> {
            let (state, next, delivered, error) = match outcome {
                DeliveryOutcome::Delivered => ("delivered", None, Some(micros(attempt_at)), None),
                DeliveryOutcome::Retry { at, error } => ("pending", Some(micros(*at)), None, Some(error.as_str())),
                DeliveryOutcome::Failed { error } => ("failed", None, None, Some(error.as_str())),
            };
            let done = sqlx::query(
                "UPDATE notify_deliveries SET state = $1, attempts = attempts + 1, \
                 first_attempt_at = COALESCE(first_attempt_at, $2), last_attempt_at = $2, \
                 next_attempt_at = $3, delivered_at = $4, last_error = COALESCE($5, last_error), \
                 claimed_by = NULL, claimed_until = NULL \
                 WHERE id = $6 AND claimed_by = $7",
            )
            .bind(state)
            .bind(micros(attempt_at))
            .bind(next)
            .bind(delivered)
            .bind(error)
            .bind(id.to_string())
            .bind(holder)
            .execute(pool)
            .await?;
            Ok(done.rows_affected() == 1)
        }

        pub(crate) async fn list_deliveries(
            pool: &Pool<Db>,
            service: Option<&str>,
            environment: Option<&str>,
            state: Option<&str>,
            limit: u32,
        ) -> Result<Vec<DeliveryRecord>> {
            let mut sql = QueryBuilder::<Db>::new(format!("SELECT {DELIVERY_COLUMNS} FROM notify_deliveries WHERE 1 = 1"));
            if let Some(service) = service {
                sql.push(" AND service = ").push_bind(service.to_string());
            }
            if let Some(environment) = environment {
                sql.push(" AND environment = ").push_bind(environment.to_string());
            }
            if let Some(state) = state {
                sql.push(" AND state = ").push_bind(state.to_string());
            }
            sql.push(" ORDER BY created_at DESC, id DESC LIMIT ").push_bind(i64::from(limit));
            let rows = sql.build().fetch_all(pool).await?;
            rows.iter().map(delivery).collect()
        }

        // ---- silences ----

        pub(crate) async fn insert_silence(pool: &Pool<Db>, s: &SilenceRecord) -> Result<()> {
            sqlx::query(
                "INSERT INTO silences (id, kind, doc, created_by, created_at, ends_at, expired_at, expired_by) \
                 VALUES ($1, $2, $3, $4, $5, $6, NULL, NULL)",
            )
            .bind(s.id.to_string())
            .bind(&s.kind)
            .bind(&s.doc)
            .bind(&s.created_by)
            .bind(micros(s.created_at))
            .bind(s.ends_at.map(micros))
            .execute(pool)
            .await?;
            Ok(())
        }

        /// In force or to come at `now` (not expired by hand, not ended), or all when
        /// `now` is `None`; newest first.
        pub(crate) async fn list_silences(pool: &Pool<Db>, now: Option<DateTime<Utc>>) -> Result<Vec<SilenceRecord>> {
            let mut sql = QueryBuilder::<Db>::new(format!("SELECT {SILENCE_COLUMNS} FROM silences"));
            if let Some(now) = now {
                sql.push(" WHERE expired_at IS NULL AND (ends_at IS NULL OR ends_at > ")
                    .push_bind(micros(now))
                    .push(")");
            }
            sql.push(" ORDER BY created_at DESC, id DESC");
            let rows = sql.build().fetch_all(pool).await?;
            rows.iter().map(silence).collect()
        }

        /// Ends a silence or window now; `None` when there is no such id. Expiring one
        /// already expired changes nothing and returns it as it was.
        pub(crate) async fn expire_silence(
            pool: &Pool<Db>,
            id: Ulid,
            by: &str,
            now: DateTime<Utc>,
        ) -> Result<Option<SilenceRecord>> {
            sqlx::query("UPDATE silences SET expired_at = $1, expired_by = $2 WHERE id = $3 AND expired_at IS NULL")
                .bind(micros(now))
                .bind(by)
                .bind(id.to_string())
                .execute(pool)
                .await?;
            let row = sqlx::query(&format!("SELECT {SILENCE_COLUMNS} FROM silences WHERE id = $1"))
                .bind(id.to_string())
                .fetch_optional(pool)
                .await?;
            row.as_ref().map(silence).transpose()
        }

        /// Deletes deliveries that ended (delivered or failed) before `before`.
        pub(crate) async fn prune_deliveries(pool: &Pool<Db>, before: DateTime<Utc>) -> Result<u64> {
            Ok(sqlx::query(
                "DELETE FROM notify_deliveries WHERE state <> 'pending' AND COALESCE(last_attempt_at, created_at) < $1",
            )
            .bind(micros(before))
            .execute(pool)
            .await?
            .rows_affected())
        }
    };
}

pub(crate) use notify_queries;
