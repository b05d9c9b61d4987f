//! The SQL both backends share, written once and instantiated per database by a macro.
//!
//! Placeholders are `$1`, `$2`, … which PostgreSQL and (through sqlx) SQLite both read by
//! number. What differs between the backends (the stream's commit-order lock, `NOTIFY`,
//! `FOR UPDATE`) is passed in as [`Dialect`].

/// The few places where SQLite and PostgreSQL need different SQL.
pub(crate) struct Dialect {
    /// Run before appending to `change_events`, held until commit, so events become
    /// visible in `seq` order (PostgreSQL assigns sequence values before commit).
    pub event_lock: Option<&'static str>,
    /// Run after appending an event, with the channel and seq as `$1`, `$2`.
    pub notify: Option<&'static str>,
    /// Serialises first-token creation between servers starting together.
    pub bootstrap_lock: Option<&'static str>,
    /// Appended to a `SELECT` that reads a row the transaction will update.
    pub for_update: &'static str,
    /// Run first in a read transaction that must see one snapshot across statements
    /// (SQLite's read transactions already do).
    pub snapshot_isolation: Option<&'static str>,
}

pub(crate) const CHANGE_COLUMNS: &str = "id, kind, service, environment, actor, summary, description, status, started_at, finished_at, size_value, size_unit, commit_from, commit_to, links, metadata";

macro_rules! queries {
    ($db:ty) => {
        use chrono::{DateTime, Utc};
        use gantry_core::{
            Change, ChangeEvent, ChangeEventKind, ChangeHistoryEntry, ChangePatch, ChangeQuery,
            CommitRange, Invalid, NewService, Service, Size, TokenInfo,
        };
        use sqlx::{Pool, QueryBuilder, Row};
        use ulid::Ulid;

        use crate::queries::{Dialect, CHANGE_COLUMNS};
        use crate::{from_micros, micros, parse_scopes, Result, StoreError, TagMatch, TokenRecord};

        type Db = $db;

        /// Rows per multi-row `INSERT`: 18 columns each stays under both databases'
        /// bind-parameter limits.
        const ROWS_PER_STATEMENT: usize = 500;
        type DbRow = <$db as sqlx::Database>::Row;

        fn corrupt(what: &str, e: impl std::fmt::Display) -> StoreError {
            StoreError::Corrupt(format!("{what}: {e}"))
        }

        fn is_unique_violation(e: &sqlx::Error) -> bool {
            matches!(e, sqlx::Error::Database(d) if d.is_unique_violation())
        }

        pub(crate) fn change_from_row(row: &DbRow) -> Result<Change> {
            let id: String = row.try_get("id")?;
            let kind: String = row.try_get("kind")?;
            let status: String = row.try_get("status")?;
            let size_value: Option<f64> = row.try_get("size_value")?;
            let size_unit: Option<String> = row.try_get("size_unit")?;
            let commit_from: Option<String> = row.try_get("commit_from")?;
            let commit_to: Option<String> = row.try_get("commit_to")?;
            let links: String = row.try_get("links")?;
            let metadata: String = row.try_get("metadata")?;
            let finished_at: Option<i64> = row.try_get("finished_at")?;
            Ok(Change {
                id: id.parse().map_err(|e| corrupt("change id", e))?,
                kind: kind.parse().map_err(|e| corrupt("change kind", e))?,
                service: row.try_get("service")?,
                environment: row.try_get("environment")?,
                actor: row.try_get("actor")?,
                summary: row.try_get("summary")?,
                description: row.try_get("description")?,
                status: status.parse().map_err(|e| corrupt("change status", e))?,
                started_at: from_micros(row.try_get("started_at")?)?,
                finished_at: finished_at.map(from_micros).transpose()?,
                size: match (size_value, size_unit) {
                    (Some(value), Some(unit)) => Some(Size { value, unit }),
                    _ => None,
                },
                commit_range: match (commit_from, commit_to) {
                    (Some(from), Some(to)) => Some(CommitRange { from, to }),
                    _ => None,
                },
                links: serde_json::from_str(&links).map_err(|e| corrupt("change links", e))?,
                metadata: serde_json::from_str(&metadata)
                    .map_err(|e| corrupt("change metadata", e))?,
                history: None,
            })
        }

        async fn append_event(
            tx: &mut sqlx::Transaction<'_, Db>,
            dialect: &Dialect,
            channel: &str,
            kind: ChangeEventKind,
            change: &Change,
            at: DateTime<Utc>,
        ) -> Result<i64> {
            if let Some(lock) = dialect.event_lock {
                sqlx::query(lock).execute(&mut **tx).await?;
            }
            let mut snapshot = change.clone();
            snapshot.history = None;
            let payload = serde_json::to_string(&snapshot).map_err(|e| corrupt("change", e))?;
            let seq: i64 = sqlx::query_scalar(
                "INSERT INTO change_events (kind, change_id, payload, at) VALUES ($1, $2, $3, $4) RETURNING seq",
            )
            .bind(kind.as_str())
            .bind(change.id.to_string())
            .bind(payload)
            .bind(micros(at))
            .fetch_one(&mut **tx)
            .await?;
            if let Some(notify) = dialect.notify {
                sqlx::query(notify)
                    .bind(channel)
                    .bind(seq.to_string())
                    .execute(&mut **tx)
                    .await?;
            }
            Ok(seq)
        }

        /// Registers the services (or checks they exist) and environments `changes` name.
        async fn register_names(
            tx: &mut sqlx::Transaction<'_, Db>,
            changes: &[Change],
            auto_create_services: bool,
            now: i64,
        ) -> Result<()> {
            let mut services: Vec<&String> = changes.iter().filter_map(|c| c.service.as_ref()).collect();
            services.sort();
            services.dedup();
            for chunk in services.chunks(ROWS_PER_STATEMENT) {
                if auto_create_services {
                    let mut sql = QueryBuilder::<Db>::new("INSERT INTO services (name, environments, created_at) ");
                    sql.push_values(chunk, |mut row, name| {
                        row.push_bind((*name).clone()).push_bind("[]").push_bind(now);
                    });
                    sql.push(" ON CONFLICT (name) DO NOTHING");
                    sql.build().execute(&mut **tx).await?;
                } else {
                    let mut sql = QueryBuilder::<Db>::new("SELECT name FROM services WHERE name IN (");
                    let mut list = sql.separated(", ");
                    for name in chunk {
                        list.push_bind((*name).clone());
                    }
                    sql.push(")");
                    let known: Vec<String> = sql.build_query_scalar().fetch_all(&mut **tx).await?;
                    if let Some(missing) = chunk.iter().find(|n| !known.contains(n)) {
                        return Err(Invalid::new(format!(
                            "service '{missing}' is not registered and this server does not create services on first use; run `gantry service create {missing}` first"
                        ))
                        .into());
                    }
                }
            }
            let mut environments: Vec<&String> = changes.iter().filter_map(|c| c.environment.as_ref()).collect();
            environments.sort();
            environments.dedup();
            for chunk in environments.chunks(ROWS_PER_STATEMENT) {
                let mut sql = QueryBuilder::<Db>::new("INSERT INTO environments (name, created_at) ");
                sql.push_values(chunk, |mut row, name| {
                    row.push_bind((*name).clone()).push_bind(now);
                });
                sql.push(" ON CONFLICT (name) DO NOTHING");
                sql.build().execute(&mut **tx).await?;
            }
            Ok(())
        }

        /// Inserts the rows of `changes` and their tags, a few statements per 500 changes.
        async fn insert_rows(tx: &mut sqlx::Transaction<'_, Db>, changes: &[Change], now: i64) -> Result<u64> {
            let mut stored = 0;
            for chunk in changes.chunks(ROWS_PER_STATEMENT) {
                let mut sql = QueryBuilder::<Db>::new(format!("INSERT INTO changes ({CHANGE_COLUMNS}, created_at, updated_at) "));
                let mut rows = Vec::with_capacity(chunk.len());
                for change in chunk {
                    rows.push((
                        change,
                        serde_json::to_string(&change.links).map_err(|e| corrupt("links", e))?,
                        serde_json::to_string(&change.metadata).map_err(|e| corrupt("metadata", e))?,
                    ));
                }
                sql.push_values(&rows, |mut row, (change, links, metadata)| {
                    row.push_bind(change.id.to_string())
                        .push_bind(change.kind.as_str())
                        .push_bind(change.service.clone())
                        .push_bind(change.environment.clone())
                        .push_bind(change.actor.clone())
                        .push_bind(change.summary.clone())
                        .push_bind(change.description.clone())
                        .push_bind(change.status.as_str())
                        .push_bind(micros(change.started_at))
                        .push_bind(change.finished_at.map(micros))
                        .push_bind(change.size.as_ref().map(|s| s.value))
                        .push_bind(change.size.as_ref().map(|s| s.unit.clone()))
                        .push_bind(change.commit_range.as_ref().map(|c| c.from.clone()))
                        .push_bind(change.commit_range.as_ref().map(|c| c.to.clone()))
                        .push_bind(links.clone())
                        .push_bind(metadata.clone())
                        .push_bind(now)
                        .push_bind(now);
                });
                match sql.build().execute(&mut **tx).await {
                    Ok(done) => stored += done.rows_affected(),
                    Err(e) if is_unique_violation(&e) => {
                        let which = if chunk.len() == 1 {
                            format!("a change with id {} already exists", chunk[0].id)
                        } else {
                            "a change with one of these ids already exists".to_string()
                        };
                        return Err(StoreError::Conflict(which));
                    }
                    Err(e) => return Err(e.into()),
                }
                let tags: Vec<(String, i64, String)> = chunk
                    .iter()
                    .flat_map(|c| {
                        let started = micros(c.started_at);
                        let id = c.id.to_string();
                        c.tags().into_iter().map(move |t| (t, started, id.clone()))
                    })
                    .collect();
                for tag_chunk in tags.chunks(ROWS_PER_STATEMENT * 3) {
                    let mut sql = QueryBuilder::<Db>::new("INSERT INTO change_tags (tag, started_at, change_id) ");
                    sql.push_values(tag_chunk, |mut row, (tag, started, id)| {
                        row.push_bind(tag.clone()).push_bind(*started).push_bind(id.clone());
                    });
                    sql.build().execute(&mut **tx).await?;
                }
            }
            Ok(stored)
        }

        /// Records new changes and their `created` events in one transaction (a group
        /// commit); returns each change's event seq, in order.
        pub(crate) async fn insert_changes(
            pool: &Pool<Db>,
            dialect: &Dialect,
            channel: &str,
            changes: &[Change],
            auto_create_services: bool,
        ) -> Result<Vec<i64>> {
            let now = micros(Utc::now());
            let mut tx = pool.begin().await?;
            register_names(&mut tx, changes, auto_create_services, now).await?;
            insert_rows(&mut tx, changes, now).await?;
            if let Some(lock) = dialect.event_lock {
                sqlx::query(lock).execute(&mut *tx).await?;
            }
            let mut seqs = Vec::with_capacity(changes.len());
            for chunk in changes.chunks(ROWS_PER_STATEMENT) {
                let mut payloads = Vec::with_capacity(chunk.len());
                for change in chunk {
                    payloads.push((
                        change.id.to_string(),
                        serde_json::to_string(change).map_err(|e| corrupt("change", e))?,
                    ));
                }
                let mut sql = QueryBuilder::<Db>::new("INSERT INTO change_events (kind, change_id, payload, at) ");
                sql.push_values(&payloads, |mut row, (id, payload)| {
                    row.push_bind(ChangeEventKind::Created.as_str())
                        .push_bind(id.clone())
                        .push_bind(payload.clone())
                        .push_bind(now);
                });
                sql.push(" RETURNING seq, change_id");
                let rows: Vec<(i64, String)> = sql.build_query_as().fetch_all(&mut *tx).await?;
                let by_id: std::collections::HashMap<String, i64> =
                    rows.into_iter().map(|(seq, id)| (id, seq)).collect();
                for (id, _) in &payloads {
                    seqs.push(*by_id.get(id).ok_or_else(|| corrupt("event", "an appended event came back without its seq"))?);
                }
            }
            if let (Some(notify), Some(newest)) = (dialect.notify, seqs.iter().max()) {
                sqlx::query(notify).bind(channel).bind(newest.to_string()).execute(&mut *tx).await?;
            }
            tx.commit().await?;
            Ok(seqs)
        }

        /// Records one change and its `created` event inside a caller's transaction (a
        /// flag write and the change that tells of it commit together). Returns the seq.
        pub(crate) async fn record_change_in(
            tx: &mut sqlx::Transaction<'_, Db>,
            dialect: &Dialect,
            channel: &str,
            change: &Change,
            auto_create_services: bool,
        ) -> Result<i64> {
            let now = Utc::now();
            register_names(tx, std::slice::from_ref(change), auto_create_services, micros(now)).await?;
            insert_rows(tx, std::slice::from_ref(change), micros(now)).await?;
            append_event(tx, dialect, channel, ChangeEventKind::Created, change, now).await
        }

        pub(crate) async fn import_changes(pool: &Pool<Db>, changes: &[Change]) -> Result<u64> {
            let now = micros(Utc::now());
            let mut tx = pool.begin().await?;
            register_names(&mut tx, changes, true, now).await?;
            let stored = insert_rows(&mut tx, changes, now).await?;
            tx.commit().await?;
            Ok(stored)
        }

        async fn history<'e, E>(executor: E, id: &str) -> Result<Vec<ChangeHistoryEntry>>
        where
            E: sqlx::Executor<'e, Database = Db>,
        {
            let rows = sqlx::query(
                "SELECT at, actor, fields FROM change_history WHERE change_id = $1 ORDER BY at",
            )
            .bind(id)
            .fetch_all(executor)
            .await?;
            rows.iter()
                .map(|row| {
                    let fields: String = row.try_get("fields")?;
                    Ok(ChangeHistoryEntry {
                        at: from_micros(row.try_get("at")?)?,
                        actor: row.try_get("actor")?,
                        fields: serde_json::from_str(&fields)
                            .map_err(|e| corrupt("change history", e))?,
                    })
                })
                .collect()
        }

        pub(crate) async fn get_change(pool: &Pool<Db>, id: Ulid) -> Result<Option<Change>> {
            let id = id.to_string();
            let sql = format!("SELECT {CHANGE_COLUMNS} FROM changes WHERE id = $1");
            let Some(row) = sqlx::query(&sql).bind(&id).fetch_optional(pool).await? else {
                return Ok(None);
            };
            let mut change = change_from_row(&row)?;
            change.history = Some(history(pool, &id).await?);
            Ok(Some(change))
        }

        pub(crate) async fn list_changes(pool: &Pool<Db>, q: &ChangeQuery) -> Result<Vec<Change>> {
            let mut sql = QueryBuilder::<Db>::new(format!("SELECT {CHANGE_COLUMNS} FROM changes WHERE 1 = 1"));
            if let Some(service) = &q.service {
                sql.push(" AND service = ").push_bind(service.clone());
            }
            if let Some(environment) = &q.environment {
                sql.push(" AND environment = ").push_bind(environment.clone());
            }
            if let Some(kind) = q.kind {
                sql.push(" AND kind = ").push_bind(kind.as_str());
            }
            if let Some(status) = q.status {
                sql.push(" AND status = ").push_bind(status.as_str());
            }
            if let Some(since) = q.since {
                sql.push(" AND started_at >= ").push_bind(micros(since));
            }
            if let Some(until) = q.until {
                sql.push(" AND started_at < ").push_bind(micros(until));
            }
            if let Some(cursor) = &q.cursor {
                sql.push(" AND (started_at, id) < (")
                    .push_bind(cursor.started_at_micros)
                    .push(", ")
                    .push_bind(cursor.id.to_string())
                    .push(")");
            }
            sql.push(" ORDER BY started_at DESC, id DESC LIMIT ")
                .push_bind(i64::from(q.limit));
            let rows = sql.build().fetch_all(pool).await?;
            rows.iter().map(change_from_row).collect()
        }

        pub(crate) async fn changes_by_tags(
            pool: &Pool<Db>,
            tags: &[String],
            matching: TagMatch,
            since: DateTime<Utc>,
            until: DateTime<Utc>,
            limit: u32,
        ) -> Result<Vec<Change>> {
            let columns = CHANGE_COLUMNS
                .split(", ")
                .map(|c| format!("c.{c}"))
                .collect::<Vec<_>>()
                .join(", ");
            let mut sql = QueryBuilder::<Db>::new(format!("SELECT {columns} FROM changes c"));
            match (tags.split_first(), matching) {
                (None, _) => {
                    sql.push(" WHERE c.started_at >= ").push_bind(micros(since));
                    sql.push(" AND c.started_at < ").push_bind(micros(until));
                }
                (Some((first, rest)), TagMatch::All) => {
                    sql.push(" JOIN change_tags t ON t.change_id = c.id WHERE t.tag = ")
                        .push_bind(first.clone());
                    sql.push(" AND t.started_at >= ").push_bind(micros(since));
                    sql.push(" AND t.started_at < ").push_bind(micros(until));
                    for tag in rest {
                        sql.push(" AND EXISTS (SELECT 1 FROM change_tags o WHERE o.change_id = c.id AND o.tag = ")
                            .push_bind(tag.clone())
                            .push(")");
                    }
                }
                (Some(_), TagMatch::Any) => {
                    sql.push(" WHERE c.id IN (SELECT change_id FROM change_tags WHERE tag IN (");
                    let mut list = sql.separated(", ");
                    for tag in tags {
                        list.push_bind(tag.clone());
                    }
                    sql.push(") AND started_at >= ").push_bind(micros(since));
                    sql.push(" AND started_at < ").push_bind(micros(until));
                    sql.push(")");
                }
            }
            sql.push(" ORDER BY c.started_at DESC, c.id DESC LIMIT ")
                .push_bind(i64::from(limit));
            let rows = sql.build().fetch_all(pool).await?;
            rows.iter().map(change_from_row).collect()
        }

        pub(crate) async fn update_change(
            pool: &Pool<Db>,
            dialect: &Dialect,
            channel: &str,
            id: Ulid,
            patch: &ChangePatch,
            actor: &str,
            now: DateTime<Utc>,
        ) -> Result<(Change, i64)> {
            let id_text = id.to_string();
            let mut tx = pool.begin().await?;
            let sql = format!(
                "SELECT {CHANGE_COLUMNS} FROM changes WHERE id = $1{}",
                dialect.for_update
            );
            let Some(row) = sqlx::query(&sql).bind(&id_text).fetch_optional(&mut *tx).await? else {
                return Err(StoreError::NotFound(format!("no change with id {id}")));
            };
            let mut change = change_from_row(&row)?;
            patch.check()?;
            // The patch is well formed: what apply refuses now collides with the change as
            // stored (a finished status left, a finish before the start).
            let fields = patch
                .apply(&mut change, now)
                .map_err(|e| StoreError::Conflict(e.0))?;
            sqlx::query(
                "UPDATE changes SET status = $1, finished_at = $2, description = $3, updated_at = $4 WHERE id = $5",
            )
            .bind(change.status.as_str())
            .bind(change.finished_at.map(micros))
            .bind(&change.description)
            .bind(micros(now))
            .bind(&id_text)
            .execute(&mut *tx)
            .await?;
            let fields_json = serde_json::Value::Object(fields).to_string();
            sqlx::query(
                "INSERT INTO change_history (change_id, at, actor, fields) VALUES ($1, $2, $3, $4)",
            )
            .bind(&id_text)
            .bind(micros(now))
            .bind(actor)
            .bind(fields_json)
            .execute(&mut *tx)
            .await?;
            change.history = Some(history(&mut *tx, &id_text).await?);
            let seq = append_event(&mut tx, dialect, channel, ChangeEventKind::Updated, &change, now).await?;
            tx.commit().await?;
            Ok((change, seq))
        }

        pub(crate) async fn events_after(pool: &Pool<Db>, after: i64, limit: u32) -> Result<Vec<ChangeEvent>> {
            let rows = sqlx::query(
                "SELECT seq, kind, payload FROM change_events WHERE seq > $1 ORDER BY seq LIMIT $2",
            )
            .bind(after)
            .bind(i64::from(limit))
            .fetch_all(pool)
            .await?;
            rows.iter()
                .map(|row| {
                    let kind: String = row.try_get("kind")?;
                    let payload: String = row.try_get("payload")?;
                    Ok(ChangeEvent {
                        seq: row.try_get("seq")?,
                        kind: match kind.as_str() {
                            "created" => ChangeEventKind::Created,
                            "updated" => ChangeEventKind::Updated,
                            other => return Err(corrupt("event kind", other)),
                        },
                        change: serde_json::from_str(&payload).map_err(|e| corrupt("event payload", e))?,
                    })
                })
                .collect()
        }

        pub(crate) async fn last_event_seq(pool: &Pool<Db>) -> Result<i64> {
            let seq: Option<i64> = sqlx::query_scalar("SELECT MAX(seq) FROM change_events")
                .fetch_one(pool)
                .await?;
            Ok(seq.unwrap_or(0))
        }

        pub(crate) async fn prune_events(pool: &Pool<Db>, before: DateTime<Utc>) -> Result<u64> {
            let done = sqlx::query("DELETE FROM change_events WHERE at < $1")
                .bind(micros(before))
                .execute(pool)
                .await?;
            Ok(done.rows_affected())
        }

        fn service_from_row(row: &DbRow) -> Result<Service> {
            let environments: String = row.try_get("environments")?;
            Ok(Service {
                name: row.try_get("name")?,
                environments: serde_json::from_str(&environments)
                    .map_err(|e| corrupt("service environments", e))?,
                created_at: from_micros(row.try_get("created_at")?)?,
            })
        }

        pub(crate) async fn create_service(pool: &Pool<Db>, new: &NewService, now: DateTime<Utc>) -> Result<Service> {
            let environments = serde_json::to_string(&new.environments).map_err(|e| corrupt("environments", e))?;
            let mut tx = pool.begin().await?;
            for environment in &new.environments {
                sqlx::query(
                    "INSERT INTO environments (name, created_at) VALUES ($1, $2) ON CONFLICT (name) DO NOTHING",
                )
                .bind(environment)
                .bind(micros(now))
                .execute(&mut *tx)
                .await?;
            }
            // A service registered on first use by a change has no pipeline yet: creating it
            // explicitly sets one. Any other existing service is a conflict.
            let row = sqlx::query(
                "INSERT INTO services (name, environments, created_at) VALUES ($1, $2, $3) \
                 ON CONFLICT (name) DO UPDATE SET environments = excluded.environments WHERE services.environments = '[]' \
                 RETURNING name, environments, created_at",
            )
            .bind(&new.name)
            .bind(&environments)
            .bind(micros(now))
            .fetch_optional(&mut *tx)
            .await?;
            let Some(row) = row else {
                return Err(StoreError::Conflict(format!("service '{}' already exists", new.name)));
            };
            let service = service_from_row(&row)?;
            tx.commit().await?;
            Ok(service)
        }

        pub(crate) async fn get_service(pool: &Pool<Db>, name: &str) -> Result<Option<Service>> {
            let row = sqlx::query("SELECT name, environments, created_at FROM services WHERE name = $1")
                .bind(name)
                .fetch_optional(pool)
                .await?;
            row.as_ref().map(service_from_row).transpose()
        }

        pub(crate) async fn list_services(pool: &Pool<Db>) -> Result<Vec<Service>> {
            let rows = sqlx::query("SELECT name, environments, created_at FROM services ORDER BY name")
                .fetch_all(pool)
                .await?;
            rows.iter().map(service_from_row).collect()
        }

        pub(crate) async fn delete_service(pool: &Pool<Db>, name: &str, force: bool) -> Result<()> {
            let mut tx = pool.begin().await?;
            if sqlx::query("SELECT 1 FROM services WHERE name = $1")
                .bind(name)
                .fetch_optional(&mut *tx)
                .await?
                .is_none()
            {
                return Err(StoreError::NotFound(format!("no service named '{name}'")));
            }
            if sqlx::query("SELECT 1 FROM flags WHERE service = $1 LIMIT 1")
                .bind(name)
                .fetch_optional(&mut *tx)
                .await?
                .is_some()
            {
                return Err(StoreError::Conflict(format!(
                    "service '{name}' has feature flags, which keep their history; a service with flags cannot be deleted"
                )));
            }
            if !force {
                let in_use = sqlx::query("SELECT 1 FROM changes WHERE service = $1 LIMIT 1")
                    .bind(name)
                    .fetch_optional(&mut *tx)
                    .await?
                    .is_some();
                if in_use {
                    return Err(StoreError::Conflict(format!(
                        "service '{name}' has changes in the log; delete it with --force (its changes stay in the log)"
                    )));
                }
            }
            sqlx::query("DELETE FROM services WHERE name = $1")
                .bind(name)
                .execute(&mut *tx)
                .await?;
            tx.commit().await?;
            Ok(())
        }

        pub(crate) async fn list_environments(pool: &Pool<Db>) -> Result<Vec<String>> {
            Ok(sqlx::query_scalar("SELECT name FROM environments ORDER BY name")
                .fetch_all(pool)
                .await?)
        }

        fn token_from_row(row: &DbRow) -> Result<TokenRecord> {
            let scopes: String = row.try_get("scopes")?;
            let expires_at: Option<i64> = row.try_get("expires_at")?;
            let revoked_at: Option<i64> = row.try_get("revoked_at")?;
            Ok(TokenRecord {
                info: TokenInfo {
                    name: row.try_get("name")?,
                    scopes: parse_scopes(&scopes)?,
                    created_at: from_micros(row.try_get("created_at")?)?,
                    expires_at: expires_at.map(from_micros).transpose()?,
                    created_by: row.try_get("created_by")?,
                },
                revoked: revoked_at.is_some(),
            })
        }

        /// SDK tokens (`client:`, `frontend:`) live in `client_tokens`, a table binaries that
        /// predate those scope names never read, so they cannot trip over them.
        fn token_table(scopes: &[gantry_core::Scope]) -> &'static str {
            if gantry_core::Scope::is_sdk_set(scopes) {
                "client_tokens"
            } else {
                "tokens"
            }
        }

        async fn insert_token(tx: &mut sqlx::Transaction<'_, Db>, info: &TokenInfo, digest: &str) -> Result<()> {
            let table = token_table(&info.scopes);
            let other = if table == "tokens" { "client_tokens" } else { "tokens" };
            let taken = sqlx::query(&format!("SELECT 1 FROM {other} WHERE name = $1 AND revoked_at IS NULL"))
                .bind(&info.name)
                .fetch_optional(&mut **tx)
                .await?
                .is_some();
            let inserted = if taken {
                Err(None)
            } else {
                sqlx::query(&format!(
                    "INSERT INTO {table} (name, digest, scopes, created_at, expires_at, created_by) VALUES ($1, $2, $3, $4, $5, $6)"
                ))
                .bind(&info.name)
                .bind(digest)
                .bind(gantry_core::Scope::format_list(&info.scopes))
                .bind(micros(info.created_at))
                .bind(info.expires_at.map(micros))
                .bind(&info.created_by)
                .execute(&mut **tx)
                .await
                .map_err(Some)
            };
            match inserted {
                Err(None) => Err(StoreError::Conflict(format!(
                    "a token named '{}' already exists; revoke it first or choose another name",
                    info.name
                ))),
                Err(Some(e)) if is_unique_violation(&e) => Err(StoreError::Conflict(format!(
                    "a token named '{}' already exists; revoke it first or choose another name",
                    info.name
                ))),
                Err(Some(e)) => Err(e.into()),
                Ok(_) => Ok(()),
            }
        }

        pub(crate) async fn create_token(pool: &Pool<Db>, info: &TokenInfo, digest: &str) -> Result<()> {
            let mut tx = pool.begin().await?;
            insert_token(&mut tx, info, digest).await?;
            tx.commit().await?;
            Ok(())
        }

        pub(crate) async fn bootstrap_admin_token(
            pool: &Pool<Db>,
            dialect: &Dialect,
            info: &TokenInfo,
            digest: &str,
        ) -> Result<bool> {
            let mut tx = pool.begin().await?;
            if let Some(lock) = dialect.bootstrap_lock {
                sqlx::query(lock).execute(&mut *tx).await?;
            }
            let tokens: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM tokens")
                .fetch_one(&mut *tx)
                .await?;
            if tokens > 0 {
                return Ok(false);
            }
            insert_token(&mut tx, info, digest).await?;
            tx.commit().await?;
            Ok(true)
        }

        const TOKEN_COLUMNS: &str = "name, scopes, created_at, expires_at, revoked_at, created_by";

        pub(crate) async fn token_by_digest(pool: &Pool<Db>, digest: &str) -> Result<Option<TokenRecord>> {
            for table in ["tokens", "client_tokens"] {
                let sql = format!("SELECT {TOKEN_COLUMNS} FROM {table} WHERE digest = $1");
                if let Some(row) = sqlx::query(&sql).bind(digest).fetch_optional(pool).await? {
                    return token_from_row(&row).map(Some);
                }
            }
            Ok(None)
        }

        pub(crate) async fn list_tokens(pool: &Pool<Db>) -> Result<Vec<TokenInfo>> {
            let sql = format!(
                "SELECT {TOKEN_COLUMNS} FROM tokens WHERE revoked_at IS NULL \
                 UNION ALL SELECT {TOKEN_COLUMNS} FROM client_tokens WHERE revoked_at IS NULL ORDER BY name"
            );
            let rows = sqlx::query(&sql).fetch_all(pool).await?;
            rows.iter().map(|r| token_from_row(r).map(|t| t.info)).collect()
        }

        /// Revokes a token by name and deletes its dashboard sessions, in one transaction.
        /// Revoking an SDK token also bumps the flag state's token revision and announces it
        /// (`t:<revision>` on PostgreSQL), so every server drops the digest from its cache.
        /// Returns that revision for an SDK token.
        pub(crate) async fn revoke_token(pool: &Pool<Db>, dialect: &Dialect, name: &str, now: DateTime<Utc>) -> Result<Option<i64>> {
            const DELETE_SESSIONS: &str = "DELETE FROM dashboard_sessions WHERE token_name = $1";
            let mut tx = pool.begin().await?;
            let done = sqlx::query("UPDATE tokens SET revoked_at = $1 WHERE name = $2 AND revoked_at IS NULL")
                .bind(micros(now))
                .bind(name)
                .execute(&mut *tx)
                .await?;
            if done.rows_affected() == 1 {
                sqlx::query(DELETE_SESSIONS).bind(name).execute(&mut *tx).await?;
                tx.commit().await?;
                return Ok(None);
            }
            let done = sqlx::query("UPDATE client_tokens SET revoked_at = $1 WHERE name = $2 AND revoked_at IS NULL")
                .bind(micros(now))
                .bind(name)
                .execute(&mut *tx)
                .await?;
            if done.rows_affected() == 0 {
                return Err(StoreError::NotFound(format!("no active token named '{name}'")));
            }
            sqlx::query(DELETE_SESSIONS).bind(name).execute(&mut *tx).await?;
            let revision: i64 = sqlx::query_scalar(
                "UPDATE flag_state SET token_revision = token_revision + 1 WHERE id = 1 RETURNING token_revision",
            )
            .fetch_one(&mut *tx)
            .await?;
            if let Some(notify) = dialect.notify {
                sqlx::query(notify)
                    .bind(crate::flags::FLAGS_CHANNEL)
                    .bind(format!("t:{revision}"))
                    .execute(&mut *tx)
                    .await?;
            }
            tx.commit().await?;
            Ok(Some(revision))
        }

        pub(crate) async fn try_acquire_lease(
            pool: &Pool<Db>,
            name: &str,
            holder: &str,
            ttl: std::time::Duration,
            now: DateTime<Utc>,
        ) -> Result<bool> {
            let ttl = chrono::Duration::from_std(ttl)
                .map_err(|_| Invalid::new("lease time-to-live is too long"))?;
            let done = sqlx::query(
                "INSERT INTO leases (name, holder, expires_at) VALUES ($1, $2, $3) \
                 ON CONFLICT (name) DO UPDATE SET holder = excluded.holder, expires_at = excluded.expires_at \
                 WHERE leases.holder = excluded.holder OR leases.expires_at <= $4",
            )
            .bind(name)
            .bind(holder)
            .bind(micros(now + ttl))
            .bind(micros(now))
            .execute(pool)
            .await?;
            Ok(done.rows_affected() == 1)
        }

        pub(crate) async fn release_lease(pool: &Pool<Db>, name: &str, holder: &str) -> Result<()> {
            sqlx::query("DELETE FROM leases WHERE name = $1 AND holder = $2")
                .bind(name)
                .bind(holder)
                .execute(pool)
                .await?;
            Ok(())
        }
    };
}

pub(crate) use queries;
