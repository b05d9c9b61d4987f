//! Monitors' SQL (their files, heartbeat keys and pings, each series' state and the
//! transitions between states), written once and instantiated per database like
//! `incident_queries.rs`. The store does not read what it keeps for monitors: a state is
//! JSON text the monitors crate writes (`doc`), upserted by monitor and series; pings and
//! transitions are append-only and read newest first by `seq`. A heartbeat key is kept
//! only as its digest, unique across monitors.

macro_rules! monitor_queries {
    ($db:ty) => {
        use chrono::{DateTime, Utc};
        use sqlx::{Pool, QueryBuilder, Row};

        use crate::queries::Dialect;
        use crate::{
            from_micros, micros, MonitorFileRecord, MonitorStateRecord, NewPing, NewTransition, PingRecord, Result,
            StoreError, TransitionRecord,
        };

        type Db = $db;
        type DbConnection = <$db as sqlx::Database>::Connection;

        /// Names bound in one `IN (…)` list, well under either database's limit on bind
        /// parameters.
        const IN_LIST_CHUNK: usize = 500;

        fn is_unique_violation(e: &sqlx::Error) -> bool {
            matches!(e, sqlx::Error::Database(d) if d.is_unique_violation())
        }

        /// Runs `DELETE FROM {table} WHERE {filter} AND {column} IN (…)` for every chunk of
        /// `values`, inside the caller's transaction; `filter` binds nothing or `monitor`.
        async fn delete_in(
            conn: &mut DbConnection,
            table: &str,
            monitor: Option<&str>,
            column: &str,
            values: &[String],
        ) -> Result<()> {
            for chunk in values.chunks(IN_LIST_CHUNK) {
                let mut sql = QueryBuilder::<Db>::new(format!("DELETE FROM {table} WHERE "));
                if let Some(monitor) = monitor {
                    sql.push("monitor = ").push_bind(monitor.to_string()).push(" AND ");
                }
                sql.push(column).push(" IN (");
                let mut list = sql.separated(", ");
                for value in chunk {
                    list.push_bind(value.clone());
                }
                sql.push(")");
                sql.build().execute(&mut *conn).await?;
            }
            Ok(())
        }

        // ---- files ----

        /// Inserts or replaces the file, returning the text it replaced. The row is locked
        /// between reading the old text and writing the new (PostgreSQL; SQLite has a
        /// single writer), so two writers never both report replacing the same text.
        pub(crate) async fn put_monitor_file(
            pool: &Pool<Db>,
            dialect: &Dialect,
            source: &str,
            text: &str,
            actor: &str,
            now: DateTime<Utc>,
        ) -> Result<Option<String>> {
            let mut tx = pool.begin().await?;
            let inserted = sqlx::query(
                "INSERT INTO monitor_files (source, text, updated_by, updated_at) VALUES ($1, $2, $3, $4) \
                 ON CONFLICT (source) DO NOTHING",
            )
            .bind(source)
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
                sqlx::query_scalar(&format!("SELECT text FROM monitor_files WHERE source = $1{}", dialect.for_update))
                    .bind(source)
                    .fetch_one(&mut *tx)
                    .await?;
            sqlx::query("UPDATE monitor_files SET text = $1, updated_by = $2, updated_at = $3 WHERE source = $4")
                .bind(text)
                .bind(actor)
                .bind(micros(now))
                .bind(source)
                .execute(&mut *tx)
                .await?;
            tx.commit().await?;
            Ok(Some(old))
        }

        pub(crate) async fn list_monitor_files(pool: &Pool<Db>) -> Result<Vec<MonitorFileRecord>> {
            let rows = sqlx::query("SELECT source, text, updated_by, updated_at FROM monitor_files ORDER BY source")
                .fetch_all(pool)
                .await?;
            rows.iter()
                .map(|row| {
                    Ok(MonitorFileRecord {
                        source: row.try_get("source")?,
                        text: row.try_get("text")?,
                        updated_by: row.try_get("updated_by")?,
                        updated_at: from_micros(row.try_get("updated_at")?)?,
                    })
                })
                .collect()
        }

        // ---- heartbeats ----

        /// Sets the monitor's key digest, replacing any it had. `Conflict` when another
        /// monitor's key has that digest (nothing written).
        pub(crate) async fn put_heartbeat_key(pool: &Pool<Db>, monitor: &str, digest: &str, now: DateTime<Utc>) -> Result<()> {
            let written = sqlx::query(
                "INSERT INTO heartbeat_keys (monitor, digest, created_at) VALUES ($1, $2, $3) \
                 ON CONFLICT (monitor) DO UPDATE SET digest = excluded.digest, created_at = excluded.created_at",
            )
            .bind(monitor)
            .bind(digest)
            .bind(micros(now))
            .execute(pool)
            .await;
            match written {
                Ok(_) => Ok(()),
                Err(e) if is_unique_violation(&e) => Err(StoreError::Conflict(format!(
                    "the heartbeat key for '{monitor}' is already another monitor's key; make a new one"
                ))),
                Err(e) => Err(e.into()),
            }
        }

        pub(crate) async fn heartbeat_by_digest(pool: &Pool<Db>, digest: &str) -> Result<Option<String>> {
            Ok(sqlx::query_scalar("SELECT monitor FROM heartbeat_keys WHERE digest = $1")
                .bind(digest)
                .fetch_optional(pool)
                .await?)
        }

        /// Monitors with a key, by name.
        pub(crate) async fn heartbeat_monitors(pool: &Pool<Db>) -> Result<Vec<String>> {
            Ok(sqlx::query_scalar("SELECT monitor FROM heartbeat_keys ORDER BY monitor")
                .fetch_all(pool)
                .await?)
        }

        /// Deletes everything kept for these monitors, in one transaction.
        pub(crate) async fn forget_monitors(pool: &Pool<Db>, monitors: &[String]) -> Result<()> {
            if monitors.is_empty() {
                return Ok(());
            }
            let mut tx = pool.begin().await?;
            for table in ["heartbeat_keys", "heartbeat_pings", "monitor_states", "monitor_transitions"] {
                delete_in(&mut tx, table, None, "monitor", monitors).await?;
            }
            tx.commit().await?;
            Ok(())
        }

        pub(crate) async fn insert_ping(pool: &Pool<Db>, ping: &NewPing) -> Result<i64> {
            Ok(sqlx::query_scalar(
                "INSERT INTO heartbeat_pings (monitor, at, kind, exit_code, body) VALUES ($1, $2, $3, $4, $5) RETURNING seq",
            )
            .bind(&ping.monitor)
            .bind(micros(ping.at))
            .bind(&ping.kind)
            .bind(ping.exit_code)
            .bind(&ping.body)
            .fetch_one(pool)
            .await?)
        }

        /// A monitor's pings newest first (by seq), at most `limit`.
        pub(crate) async fn recent_pings(pool: &Pool<Db>, monitor: &str, limit: u32) -> Result<Vec<PingRecord>> {
            let rows = sqlx::query(
                "SELECT seq, monitor, at, kind, exit_code, body FROM heartbeat_pings WHERE monitor = $1 ORDER BY seq DESC LIMIT $2",
            )
            .bind(monitor)
            .bind(i64::from(limit))
            .fetch_all(pool)
            .await?;
            rows.iter()
                .map(|row| {
                    Ok(PingRecord {
                        seq: row.try_get("seq")?,
                        monitor: row.try_get("monitor")?,
                        at: from_micros(row.try_get("at")?)?,
                        kind: row.try_get("kind")?,
                        exit_code: row.try_get("exit_code")?,
                        body: row.try_get("body")?,
                    })
                })
                .collect()
        }

        // ---- states and transitions ----

        /// Upserts the states and appends the transitions in the order given, in one
        /// transaction.
        pub(crate) async fn save_monitor_round(
            pool: &Pool<Db>,
            states: &[MonitorStateRecord],
            transitions: &[NewTransition],
        ) -> Result<()> {
            if states.is_empty() && transitions.is_empty() {
                return Ok(());
            }
            let mut tx = pool.begin().await?;
            for state in states {
                sqlx::query(
                    "INSERT INTO monitor_states (monitor, series, doc, updated_at) VALUES ($1, $2, $3, $4) \
                     ON CONFLICT (monitor, series) DO UPDATE SET doc = excluded.doc, updated_at = excluded.updated_at",
                )
                .bind(&state.monitor)
                .bind(&state.series)
                .bind(&state.doc)
                .bind(micros(state.updated_at))
                .execute(&mut *tx)
                .await?;
            }
            for t in transitions {
                sqlx::query(
                    "INSERT INTO monitor_transitions (monitor, series, from_state, to_state, hard, value, at) \
                     VALUES ($1, $2, $3, $4, $5, $6, $7)",
                )
                .bind(&t.monitor)
                .bind(&t.series)
                .bind(&t.from)
                .bind(&t.to)
                .bind(t.hard)
                // SQLite stores a NaN as NULL; PostgreSQL is made to agree.
                .bind(t.value.filter(|v| !v.is_nan()))
                .bind(micros(t.at))
                .execute(&mut *tx)
                .await?;
            }
            tx.commit().await?;
            Ok(())
        }

        /// States of `monitor` (or every monitor), by monitor then series.
        pub(crate) async fn monitor_states(pool: &Pool<Db>, monitor: Option<&str>) -> Result<Vec<MonitorStateRecord>> {
            let mut sql = QueryBuilder::<Db>::new("SELECT monitor, series, doc, updated_at FROM monitor_states");
            if let Some(monitor) = monitor {
                sql.push(" WHERE monitor = ").push_bind(monitor.to_string());
            }
            sql.push(" ORDER BY monitor, series");
            let rows = sql.build().fetch_all(pool).await?;
            rows.iter()
                .map(|row| {
                    Ok(MonitorStateRecord {
                        monitor: row.try_get("monitor")?,
                        series: row.try_get("series")?,
                        doc: row.try_get("doc")?,
                        updated_at: from_micros(row.try_get("updated_at")?)?,
                    })
                })
                .collect()
        }

        pub(crate) async fn delete_monitor_states(pool: &Pool<Db>, monitor: &str, series: &[String]) -> Result<()> {
            if series.is_empty() {
                return Ok(());
            }
            let mut tx = pool.begin().await?;
            delete_in(&mut tx, "monitor_states", Some(monitor), "series", series).await?;
            tx.commit().await?;
            Ok(())
        }

        /// Transitions of `monitor` (or every monitor) newest first (by seq), at most
        /// `limit`.
        pub(crate) async fn monitor_transitions(
            pool: &Pool<Db>,
            monitor: Option<&str>,
            limit: u32,
        ) -> Result<Vec<TransitionRecord>> {
            let mut sql = QueryBuilder::<Db>::new(
                "SELECT seq, monitor, series, from_state, to_state, hard, value, at FROM monitor_transitions",
            );
            if let Some(monitor) = monitor {
                sql.push(" WHERE monitor = ").push_bind(monitor.to_string());
            }
            sql.push(" ORDER BY seq DESC LIMIT ").push_bind(i64::from(limit));
            let rows = sql.build().fetch_all(pool).await?;
            rows.iter()
                .map(|row| {
                    Ok(TransitionRecord {
                        seq: row.try_get("seq")?,
                        monitor: row.try_get("monitor")?,
                        series: row.try_get("series")?,
                        from: row.try_get("from_state")?,
                        to: row.try_get("to_state")?,
                        hard: row.try_get("hard")?,
                        value: row.try_get("value")?,
                        at: from_micros(row.try_get("at")?)?,
                    })
                })
                .collect()
        }

        // ---- pruning ----

        /// Deletes pings older than `pings_before` beyond each monitor's newest `keep_pings`
        /// (a heartbeat with a long period keeps its last beats), and transitions older than
        /// `transitions_before`. Returns how many rows went.
        pub(crate) async fn prune_monitor_history(
            pool: &Pool<Db>,
            pings_before: DateTime<Utc>,
            keep_pings: u32,
            transitions_before: DateTime<Utc>,
        ) -> Result<u64> {
            let pings = sqlx::query(
                "DELETE FROM heartbeat_pings WHERE at < $1 AND seq NOT IN \
                 (SELECT newest.seq FROM heartbeat_pings newest WHERE newest.monitor = heartbeat_pings.monitor \
                  ORDER BY newest.seq DESC LIMIT $2)",
            )
            .bind(micros(pings_before))
            .bind(i64::from(keep_pings))
            .execute(pool)
            .await?
            .rows_affected();
            let transitions = sqlx::query("DELETE FROM monitor_transitions WHERE at < $1")
                .bind(micros(transitions_before))
                .execute(pool)
                .await?
                .rows_affected();
            Ok(pings + transitions)
        }
    };
}

pub(crate) use monitor_queries;
