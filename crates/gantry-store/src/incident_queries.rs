//! Incidents' SQL (what broke, and each incident's timeline), written once and instantiated
//! per database like `migrate_queries.rs`. An incident is stored whole as JSON (`doc`, what
//! reads return) beside the columns lists filter on (state, severity, detected_at,
//! resolved_at), which every write copies from it; it is written by a compare-and-set on
//! its `version`. Its timeline is append-only, written in the same transaction as the
//! incident, and read by `seq`.

macro_rules! incident_queries {
    ($db:ty) => {
        use chrono::{DateTime, Utc};
        use gantry_core::incident::{Incident, TimelineEntry};
        use sqlx::{Pool, QueryBuilder, Row};
        use ulid::Ulid;

        use crate::{from_micros, micros, NewTimelineEntry, Result, StoreError};

        type Db = $db;
        type DbRow = <$db as sqlx::Database>::Row;
        type DbConnection = <$db as sqlx::Database>::Connection;

        fn corrupt(what: &str, e: impl std::fmt::Display) -> StoreError {
            StoreError::Corrupt(format!("{what}: {e}"))
        }

        /// The incident as stored in `doc`, with the version the row will have.
        fn doc(incident: &Incident, version: i64) -> Result<String> {
            let mut incident = incident.clone();
            incident.version = version;
            serde_json::to_string(&incident).map_err(|e| corrupt("incident doc", e))
        }

        const INCIDENT_COLUMNS: &str = "id, state, severity, detected_at, resolved_at, updated_at, version, doc";

        /// An incident from its row's `doc`, which must agree with the row on the id and
        /// version (the keys lookups and the compare-and-set use).
        fn incident_from_row(row: &DbRow) -> Result<Incident> {
            let id: String = row.try_get("id")?;
            let version: i64 = row.try_get("version")?;
            let doc: String = row.try_get("doc")?;
            let incident: Incident = serde_json::from_str(&doc).map_err(|e| corrupt("incident doc", e))?;
            if incident.id.to_string() != id || incident.version != version {
                return Err(corrupt(
                    "incident doc",
                    format!(
                        "it says incident {} version {}, its row {id} version {version}",
                        incident.id, incident.version
                    ),
                ));
            }
            Ok(incident)
        }

        /// Appends entries in the order given, inside the caller's transaction.
        async fn append_timeline(conn: &mut DbConnection, incident: &str, timeline: &[NewTimelineEntry]) -> Result<()> {
            for entry in timeline {
                sqlx::query(
                    "INSERT INTO incident_timeline (incident_id, at, kind, actor, text, change_id) VALUES ($1, $2, $3, $4, $5, $6)",
                )
                .bind(incident)
                .bind(micros(entry.at))
                .bind(&entry.kind)
                .bind(&entry.actor)
                .bind(&entry.text)
                .bind(entry.change.map(|c| c.to_string()))
                .execute(&mut *conn)
                .await?;
            }
            Ok(())
        }

        pub(crate) async fn insert_incident(pool: &Pool<Db>, incident: &Incident, timeline: &[NewTimelineEntry]) -> Result<()> {
            let id = incident.id.to_string();
            let mut tx = pool.begin().await?;
            sqlx::query(&format!(
                "INSERT INTO incidents ({INCIDENT_COLUMNS}) VALUES ($1, $2, $3, $4, $5, $6, $7, $8)"
            ))
            .bind(&id)
            .bind(incident.state.as_str())
            .bind(incident.severity.as_str())
            .bind(micros(incident.detected_at))
            .bind(incident.resolved_at.map(micros))
            .bind(micros(incident.updated_at))
            .bind(incident.version)
            .bind(doc(incident, incident.version)?)
            .execute(&mut *tx)
            .await?;
            append_timeline(&mut tx, &id, timeline).await?;
            tx.commit().await?;
            Ok(())
        }

        pub(crate) async fn get_incident(pool: &Pool<Db>, id: Ulid) -> Result<Option<Incident>> {
            sqlx::query(&format!("SELECT {INCIDENT_COLUMNS} FROM incidents WHERE id = $1"))
                .bind(id.to_string())
                .fetch_optional(pool)
                .await?
                .map(|r| incident_from_row(&r))
                .transpose()
        }

        /// Incidents newest first by detected_at (then id): detected at or after `since`
        /// when given, without a resolved_at when `open_only`.
        pub(crate) async fn list_incidents(
            pool: &Pool<Db>,
            since: Option<DateTime<Utc>>,
            open_only: bool,
            limit: u32,
        ) -> Result<Vec<Incident>> {
            let mut sql = QueryBuilder::<Db>::new(format!("SELECT {INCIDENT_COLUMNS} FROM incidents WHERE 1 = 1"));
            if let Some(since) = since {
                sql.push(" AND detected_at >= ").push_bind(micros(since));
            }
            if open_only {
                sql.push(" AND resolved_at IS NULL");
            }
            sql.push(" ORDER BY detected_at DESC, id DESC LIMIT ").push_bind(i64::from(limit));
            let rows = sql.build().fetch_all(pool).await?;
            rows.iter().map(incident_from_row).collect()
        }

        /// Writes the incident (and appends `timeline`) if it is still at
        /// `incident.version`: `NotFound` when there is no such incident, `Stale` when
        /// another write came first (nothing written, timeline included). On PostgreSQL the
        /// `UPDATE` holds the row until commit, so one incident's entries commit in `seq`
        /// order (SQLite has a single writer).
        pub(crate) async fn update_incident(
            pool: &Pool<Db>,
            incident: &Incident,
            timeline: &[NewTimelineEntry],
        ) -> Result<Incident> {
            let id = incident.id.to_string();
            let version = incident.version + 1;
            let mut tx = pool.begin().await?;
            let written = sqlx::query(
                "UPDATE incidents SET state = $1, severity = $2, detected_at = $3, resolved_at = $4, updated_at = $5, \
                 doc = $6, version = version + 1 WHERE id = $7 AND version = $8",
            )
            .bind(incident.state.as_str())
            .bind(incident.severity.as_str())
            .bind(micros(incident.detected_at))
            .bind(incident.resolved_at.map(micros))
            .bind(micros(incident.updated_at))
            .bind(doc(incident, version)?)
            .bind(&id)
            .bind(incident.version)
            .execute(&mut *tx)
            .await?;
            if written.rows_affected() == 0 {
                let current: Option<i64> = sqlx::query_scalar("SELECT version FROM incidents WHERE id = $1")
                    .bind(&id)
                    .fetch_optional(&mut *tx)
                    .await?;
                return Err(match current {
                    None => StoreError::NotFound(format!("no incident with id {id}")),
                    Some(current) => StoreError::Stale(format!(
                        "incident {id} changed since it was read (version {}, now {current}); read it again and retry",
                        incident.version
                    )),
                });
            }
            append_timeline(&mut tx, &id, timeline).await?;
            tx.commit().await?;
            let mut stored = incident.clone();
            stored.version = version;
            Ok(stored)
        }

        pub(crate) async fn incident_timeline(pool: &Pool<Db>, id: Ulid) -> Result<Vec<TimelineEntry>> {
            let rows = sqlx::query(
                "SELECT seq, at, kind, actor, text, change_id FROM incident_timeline WHERE incident_id = $1 ORDER BY seq",
            )
            .bind(id.to_string())
            .fetch_all(pool)
            .await?;
            rows.iter()
                .map(|row| {
                    let change: Option<String> = row.try_get("change_id")?;
                    Ok(TimelineEntry {
                        seq: row.try_get("seq")?,
                        at: from_micros(row.try_get("at")?)?,
                        kind: row.try_get("kind")?,
                        actor: row.try_get("actor")?,
                        text: row.try_get("text")?,
                        change: change
                            .map(|c| c.parse().map_err(|e| corrupt("incident timeline change id", e)))
                            .transpose()?,
                    })
                })
                .collect()
        }
    };
}

pub(crate) use incident_queries;
