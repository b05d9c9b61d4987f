//! Flags' SQL (flags, their environments, segments, the flag set's revisions, schedules,
//! SDK registrations and usage), written once and instantiated per database like
//! `queries.rs`. Every write that changes what SDKs evaluate bumps the global revision and
//! the service's, and announces it, in the transaction that writes.

macro_rules! flag_queries {
    ($db:ty, $changes:path) => {
        use std::collections::BTreeMap;

        use chrono::{DateTime, Utc};
        use gantry_core::Change;
        use sqlx::{Pool, QueryBuilder, Row};
        use ulid::Ulid;

        use crate::flags::{
            FlagEnvironmentRecord, FlagRecord, FlagSchedule, FlagSnapshot, FlagState, FlagUsage,
            FlagWrite, SdkClient, SegmentRecord, FLAGS_CHANNEL,
        };
        use crate::queries::Dialect;
        use crate::{from_micros, micros, Result, StoreError};
        use $changes as changes;

        type Db = $db;
        type DbRow = <$db as sqlx::Database>::Row;

        fn corrupt(what: &str, e: impl std::fmt::Display) -> StoreError {
            StoreError::Corrupt(format!("{what}: {e}"))
        }

        fn is_unique_violation(e: &sqlx::Error) -> bool {
            matches!(e, sqlx::Error::Database(d) if d.is_unique_violation())
        }

        const FLAG_COLUMNS: &str = "service, name, flag_type, description, owner, created_at, created_by, archived_at, version";

        fn flag_from_row(row: &DbRow) -> Result<FlagRecord> {
            let archived_at: Option<i64> = row.try_get("archived_at")?;
            Ok(FlagRecord {
                service: row.try_get("service")?,
                name: row.try_get("name")?,
                flag_type: row.try_get("flag_type")?,
                description: row.try_get("description")?,
                owner: row.try_get("owner")?,
                created_at: from_micros(row.try_get("created_at")?)?,
                created_by: row.try_get("created_by")?,
                archived_at: archived_at.map(from_micros).transpose()?,
                version: row.try_get("version")?,
                environments: BTreeMap::new(),
            })
        }

        /// Fills in each flag's environments (flags are of `service` when it is given).
        async fn attach_environments<'e, E>(executor: E, service: Option<&str>, flags: &mut [FlagRecord]) -> Result<()>
        where
            E: sqlx::Executor<'e, Database = Db>,
        {
            if flags.is_empty() {
                return Ok(());
            }
            let mut sql = QueryBuilder::<Db>::new(
                "SELECT service, name, environment, definition, updated_at, updated_by FROM flag_environments",
            );
            if let Some(service) = service {
                sql.push(" WHERE service = ").push_bind(service.to_string());
            }
            let rows = sql.build().fetch_all(executor).await?;
            let index: std::collections::HashMap<(String, String), usize> = flags
                .iter()
                .enumerate()
                .map(|(i, f)| ((f.service.clone(), f.name.clone()), i))
                .collect();
            for row in &rows {
                let key: (String, String) = (row.try_get("service")?, row.try_get("name")?);
                if let Some(&i) = index.get(&key) {
                    flags[i].environments.insert(
                        row.try_get("environment")?,
                        FlagEnvironmentRecord {
                            definition: row.try_get("definition")?,
                            updated_at: from_micros(row.try_get("updated_at")?)?,
                            updated_by: row.try_get("updated_by")?,
                        },
                    );
                }
            }
            Ok(())
        }

        /// Bumps the global revision and the service's, and announces it to other servers.
        async fn bump_revision(tx: &mut sqlx::Transaction<'_, Db>, dialect: &Dialect, service: &str) -> Result<i64> {
            let revision: i64 = sqlx::query_scalar(
                "UPDATE flag_state SET revision = revision + 1 WHERE id = 1 RETURNING revision",
            )
            .fetch_one(&mut **tx)
            .await?;
            sqlx::query(
                "INSERT INTO flag_revisions (service, revision) VALUES ($1, $2) \
                 ON CONFLICT (service) DO UPDATE SET revision = excluded.revision",
            )
            .bind(service)
            .bind(revision)
            .execute(&mut **tx)
            .await?;
            if let Some(notify) = dialect.notify {
                sqlx::query(notify)
                    .bind(FLAGS_CHANNEL)
                    .bind(format!("f:{revision}"))
                    .execute(&mut **tx)
                    .await?;
            }
            Ok(revision)
        }

        pub(crate) async fn flag_state(pool: &Pool<Db>) -> Result<FlagState> {
            let row = sqlx::query("SELECT database_id, revision, token_revision FROM flag_state WHERE id = 1")
                .fetch_one(pool)
                .await?;
            Ok(FlagState {
                database_id: row.try_get("database_id")?,
                revision: row.try_get("revision")?,
                token_revision: row.try_get("token_revision")?,
            })
        }

        pub(crate) async fn flag_revisions(pool: &Pool<Db>) -> Result<Vec<(String, i64)>> {
            Ok(sqlx::query_as("SELECT service, revision FROM flag_revisions ORDER BY service")
                .fetch_all(pool)
                .await?)
        }

        /// What a write returns: the flag as stored and the change event's seq (for
        /// SQLite's in-process wake-up).
        pub(crate) struct Written {
            pub flag: FlagRecord,
            pub seq: Option<i64>,
        }

        pub(crate) async fn create_flag(
            pool: &Pool<Db>,
            dialect: &Dialect,
            channel: &str,
            flag: &FlagRecord,
            change: &Change,
        ) -> Result<Written> {
            let mut tx = pool.begin().await?;
            if sqlx::query("SELECT 1 FROM services WHERE name = $1")
                .bind(&flag.service)
                .fetch_optional(&mut *tx)
                .await?
                .is_none()
            {
                return Err(StoreError::NotFound(format!(
                    "no service named '{}'; create it first with `gantry service create {}`",
                    flag.service, flag.service
                )));
            }
            let inserted = sqlx::query(&format!(
                "INSERT INTO flags ({FLAG_COLUMNS}) VALUES ($1, $2, $3, $4, $5, $6, $7, NULL, 1)"
            ))
            .bind(&flag.service)
            .bind(&flag.name)
            .bind(&flag.flag_type)
            .bind(&flag.description)
            .bind(&flag.owner)
            .bind(micros(flag.created_at))
            .bind(&flag.created_by)
            .execute(&mut *tx)
            .await;
            match inserted {
                Err(e) if is_unique_violation(&e) => {
                    return Err(StoreError::Conflict(format!(
                        "service '{}' already has a flag named '{}'",
                        flag.service, flag.name
                    )))
                }
                Err(e) => return Err(e.into()),
                Ok(_) => {}
            }
            for (environment, env) in &flag.environments {
                insert_environment(&mut tx, &flag.service, &flag.name, environment, env).await?;
            }
            bump_revision(&mut tx, dialect, &flag.service).await?;
            let seq = changes::record_change_in(&mut tx, dialect, channel, change, false).await?;
            tx.commit().await?;
            let mut stored = flag.clone();
            stored.version = 1;
            stored.archived_at = None;
            Ok(Written { flag: stored, seq: Some(seq) })
        }

        async fn insert_environment(
            tx: &mut sqlx::Transaction<'_, Db>,
            service: &str,
            name: &str,
            environment: &str,
            env: &FlagEnvironmentRecord,
        ) -> Result<()> {
            sqlx::query(
                "INSERT INTO flag_environments (service, name, environment, definition, updated_at, updated_by) \
                 VALUES ($1, $2, $3, $4, $5, $6) \
                 ON CONFLICT (service, name, environment) DO UPDATE SET definition = excluded.definition, \
                 updated_at = excluded.updated_at, updated_by = excluded.updated_by",
            )
            .bind(service)
            .bind(name)
            .bind(environment)
            .bind(&env.definition)
            .bind(micros(env.updated_at))
            .bind(&env.updated_by)
            .execute(&mut **tx)
            .await?;
            Ok(())
        }

        async fn read_flag<'e, E>(executor: E, service: &str, name: &str) -> Result<Option<FlagRecord>>
        where
            E: sqlx::Executor<'e, Database = Db>,
        {
            let row = sqlx::query(&format!("SELECT {FLAG_COLUMNS} FROM flags WHERE service = $1 AND name = $2"))
                .bind(service)
                .bind(name)
                .fetch_optional(executor)
                .await?;
            row.as_ref().map(flag_from_row).transpose()
        }

        pub(crate) async fn get_flag(pool: &Pool<Db>, service: &str, name: &str) -> Result<Option<FlagRecord>> {
            let mut conn = pool.acquire().await?;
            let Some(flag) = read_flag(&mut *conn, service, name).await? else {
                return Ok(None);
            };
            let mut flags = [flag];
            let rows = sqlx::query(
                "SELECT environment, definition, updated_at, updated_by FROM flag_environments WHERE service = $1 AND name = $2",
            )
            .bind(service)
            .bind(name)
            .fetch_all(&mut *conn)
            .await?;
            for row in &rows {
                flags[0].environments.insert(
                    row.try_get("environment")?,
                    FlagEnvironmentRecord {
                        definition: row.try_get("definition")?,
                        updated_at: from_micros(row.try_get("updated_at")?)?,
                        updated_by: row.try_get("updated_by")?,
                    },
                );
            }
            let [flag] = flags;
            Ok(Some(flag))
        }

        pub(crate) async fn list_flags(
            pool: &Pool<Db>,
            service: Option<&str>,
            archived: Option<bool>,
        ) -> Result<Vec<FlagRecord>> {
            let mut conn = pool.acquire().await?;
            let mut sql = QueryBuilder::<Db>::new(format!("SELECT {FLAG_COLUMNS} FROM flags WHERE 1 = 1"));
            if let Some(service) = service {
                sql.push(" AND service = ").push_bind(service.to_string());
            }
            match archived {
                Some(true) => {
                    sql.push(" AND archived_at IS NOT NULL");
                }
                Some(false) => {
                    sql.push(" AND archived_at IS NULL");
                }
                None => {}
            }
            sql.push(" ORDER BY service, name");
            let rows = sql.build().fetch_all(&mut *conn).await?;
            let mut flags = rows.iter().map(flag_from_row).collect::<Result<Vec<_>>>()?;
            attach_environments(&mut *conn, service, &mut flags).await?;
            Ok(flags)
        }

        /// Applies one write if the flag is still at `expected_version`: `NotFound` when
        /// there is no such flag, `Stale` when another write came first (nothing changed).
        #[allow(clippy::too_many_arguments)]
        pub(crate) async fn write_flag(
            pool: &Pool<Db>,
            dialect: &Dialect,
            channel: &str,
            service: &str,
            name: &str,
            expected_version: i64,
            write: &FlagWrite,
            actor: &str,
            now: DateTime<Utc>,
            change: Option<&Change>,
        ) -> Result<Written> {
            let mut tx = pool.begin().await?;
            let bumped = sqlx::query("UPDATE flags SET version = version + 1 WHERE service = $1 AND name = $2 AND version = $3")
                .bind(service)
                .bind(name)
                .bind(expected_version)
                .execute(&mut *tx)
                .await?;
            if bumped.rows_affected() == 0 {
                return Err(match read_flag(&mut *tx, service, name).await? {
                    None => StoreError::NotFound(format!("service '{service}' has no flag named '{name}'")),
                    Some(current) => StoreError::Stale(format!(
                        "flag '{service}/{name}' changed since it was read (version {expected_version}, now {}); read it again and retry",
                        current.version
                    )),
                });
            }
            match write {
                FlagWrite::Meta { flag_type, description, owner } => {
                    sqlx::query("UPDATE flags SET flag_type = $1, description = $2, owner = $3 WHERE service = $4 AND name = $5")
                        .bind(flag_type)
                        .bind(description)
                        .bind(owner)
                        .bind(service)
                        .bind(name)
                        .execute(&mut *tx)
                        .await?;
                }
                FlagWrite::Environment { environment, definition } => {
                    let env = FlagEnvironmentRecord {
                        definition: definition.clone(),
                        updated_at: now,
                        updated_by: actor.to_string(),
                    };
                    insert_environment(&mut tx, service, name, environment, &env).await?;
                }
                FlagWrite::Archive | FlagWrite::Restore => {
                    let archived = matches!(write, FlagWrite::Archive).then_some(micros(now));
                    sqlx::query("UPDATE flags SET archived_at = $1 WHERE service = $2 AND name = $3")
                        .bind(archived)
                        .bind(service)
                        .bind(name)
                        .execute(&mut *tx)
                        .await?;
                }
            }
            // Every write shows in what SDKs receive (the type and description are in the
            // client document too).
            bump_revision(&mut tx, dialect, service).await?;
            let seq = match change {
                Some(change) => Some(changes::record_change_in(&mut tx, dialect, channel, change, false).await?),
                None => None,
            };
            let mut flag = read_flag(&mut *tx, service, name)
                .await?
                .ok_or_else(|| corrupt("flag", "vanished inside its own write"))?;
            attach_environments(&mut *tx, Some(service), std::slice::from_mut(&mut flag)).await?;
            tx.commit().await?;
            Ok(Written { flag, seq })
        }

        // ---- segments ----

        const SEGMENT_COLUMNS: &str = "id, service, name, description, constraints, version, updated_at, updated_by";

        fn segment_from_row(row: &DbRow) -> Result<SegmentRecord> {
            Ok(SegmentRecord {
                id: row.try_get("id")?,
                service: row.try_get("service")?,
                name: row.try_get("name")?,
                description: row.try_get("description")?,
                constraints: row.try_get("constraints")?,
                version: row.try_get("version")?,
                updated_at: from_micros(row.try_get("updated_at")?)?,
                updated_by: row.try_get("updated_by")?,
            })
        }

        /// Creates a segment (`expected_version` `None`) or replaces one by name if it is
        /// still at that version.
        pub(crate) async fn put_segment(
            pool: &Pool<Db>,
            dialect: &Dialect,
            segment: &SegmentRecord,
            expected_version: Option<i64>,
        ) -> Result<SegmentRecord> {
            let mut tx = pool.begin().await?;
            match expected_version {
                None => {
                    if sqlx::query("SELECT 1 FROM services WHERE name = $1")
                        .bind(&segment.service)
                        .fetch_optional(&mut *tx)
                        .await?
                        .is_none()
                    {
                        return Err(StoreError::NotFound(format!("no service named '{}'", segment.service)));
                    }
                    let inserted = sqlx::query(
                        "INSERT INTO flag_segments (service, name, description, constraints, version, updated_at, updated_by) \
                         VALUES ($1, $2, $3, $4, 1, $5, $6)",
                    )
                    .bind(&segment.service)
                    .bind(&segment.name)
                    .bind(&segment.description)
                    .bind(&segment.constraints)
                    .bind(micros(segment.updated_at))
                    .bind(&segment.updated_by)
                    .execute(&mut *tx)
                    .await;
                    match inserted {
                        Err(e) if is_unique_violation(&e) => {
                            return Err(StoreError::Conflict(format!(
                                "service '{}' already has a segment named '{}'",
                                segment.service, segment.name
                            )))
                        }
                        Err(e) => return Err(e.into()),
                        Ok(_) => {}
                    }
                }
                Some(version) => {
                    let done = sqlx::query(
                        "UPDATE flag_segments SET description = $1, constraints = $2, version = version + 1, updated_at = $3, updated_by = $4 \
                         WHERE service = $5 AND name = $6 AND version = $7",
                    )
                    .bind(&segment.description)
                    .bind(&segment.constraints)
                    .bind(micros(segment.updated_at))
                    .bind(&segment.updated_by)
                    .bind(&segment.service)
                    .bind(&segment.name)
                    .bind(version)
                    .execute(&mut *tx)
                    .await?;
                    if done.rows_affected() == 0 {
                        let exists = sqlx::query("SELECT 1 FROM flag_segments WHERE service = $1 AND name = $2")
                            .bind(&segment.service)
                            .bind(&segment.name)
                            .fetch_optional(&mut *tx)
                            .await?
                            .is_some();
                        return Err(if exists {
                            StoreError::Stale(format!(
                                "segment '{}/{}' changed since it was read; read it again and retry",
                                segment.service, segment.name
                            ))
                        } else {
                            StoreError::NotFound(format!("service '{}' has no segment named '{}'", segment.service, segment.name))
                        });
                    }
                }
            }
            bump_revision(&mut tx, dialect, &segment.service).await?;
            let row = sqlx::query(&format!("SELECT {SEGMENT_COLUMNS} FROM flag_segments WHERE service = $1 AND name = $2"))
                .bind(&segment.service)
                .bind(&segment.name)
                .fetch_one(&mut *tx)
                .await?;
            let stored = segment_from_row(&row)?;
            tx.commit().await?;
            Ok(stored)
        }

        pub(crate) async fn list_segments(pool: &Pool<Db>, service: &str) -> Result<Vec<SegmentRecord>> {
            let rows = sqlx::query(&format!("SELECT {SEGMENT_COLUMNS} FROM flag_segments WHERE service = $1 ORDER BY name"))
                .bind(service)
                .fetch_all(pool)
                .await?;
            rows.iter().map(segment_from_row).collect()
        }

        /// Deletes a segment; `Conflict` naming a flag whose definition still uses it.
        pub(crate) async fn delete_segment(pool: &Pool<Db>, dialect: &Dialect, service: &str, name: &str) -> Result<()> {
            let mut tx = pool.begin().await?;
            let id: Option<i64> = sqlx::query_scalar("SELECT id FROM flag_segments WHERE service = $1 AND name = $2")
                .bind(service)
                .bind(name)
                .fetch_optional(&mut *tx)
                .await?;
            let Some(id) = id else {
                return Err(StoreError::NotFound(format!("service '{service}' has no segment named '{name}'")));
            };
            let rows = sqlx::query("SELECT name, environment, definition FROM flag_environments WHERE service = $1")
                .bind(service)
                .fetch_all(&mut *tx)
                .await?;
            for row in &rows {
                let definition: String = row.try_get("definition")?;
                let value: serde_json::Value = serde_json::from_str(&definition).map_err(|e| corrupt("flag definition", e))?;
                let uses = value["strategies"].as_array().is_some_and(|strategies| {
                    strategies.iter().any(|s| {
                        s["segments"].as_array().is_some_and(|ids| ids.iter().any(|v| v.as_i64() == Some(id)))
                    })
                });
                if uses {
                    let flag: String = row.try_get("name")?;
                    let environment: String = row.try_get("environment")?;
                    return Err(StoreError::Conflict(format!(
                        "segment '{name}' is used by flag '{flag}' in {environment}; remove it from that flag first"
                    )));
                }
            }
            sqlx::query("DELETE FROM flag_segments WHERE id = $1").bind(id).execute(&mut *tx).await?;
            bump_revision(&mut tx, dialect, service).await?;
            tx.commit().await?;
            Ok(())
        }

        /// Everything one service's flag set is built from, read in one snapshot.
        pub(crate) async fn flag_snapshot(pool: &Pool<Db>, dialect: &Dialect, service: &str) -> Result<FlagSnapshot> {
            let mut tx = pool.begin().await?;
            if let Some(isolation) = dialect.snapshot_isolation {
                sqlx::query(isolation).execute(&mut *tx).await?;
            }
            let revision: Option<i64> = sqlx::query_scalar("SELECT revision FROM flag_revisions WHERE service = $1")
                .bind(service)
                .fetch_optional(&mut *tx)
                .await?;
            let rows = sqlx::query(&format!("SELECT {FLAG_COLUMNS} FROM flags WHERE service = $1 ORDER BY name"))
                .bind(service)
                .fetch_all(&mut *tx)
                .await?;
            let mut flags = rows.iter().map(flag_from_row).collect::<Result<Vec<_>>>()?;
            attach_environments(&mut *tx, Some(service), &mut flags).await?;
            let rows = sqlx::query(&format!("SELECT {SEGMENT_COLUMNS} FROM flag_segments WHERE service = $1 ORDER BY id"))
                .bind(service)
                .fetch_all(&mut *tx)
                .await?;
            let segments = rows.iter().map(segment_from_row).collect::<Result<Vec<_>>>()?;
            tx.commit().await?;
            Ok(FlagSnapshot {
                revision: revision.unwrap_or(0),
                flags,
                segments,
            })
        }

        // ---- schedules ----

        const SCHEDULE_COLUMNS: &str = "id, service, name, environment, action, run_at, created_by, created_at, state, ran_at, change_id, error";

        fn schedule_from_row(row: &DbRow) -> Result<FlagSchedule> {
            let id: String = row.try_get("id")?;
            let ran_at: Option<i64> = row.try_get("ran_at")?;
            let change_id: Option<String> = row.try_get("change_id")?;
            Ok(FlagSchedule {
                id: id.parse().map_err(|e| corrupt("schedule id", e))?,
                service: row.try_get("service")?,
                name: row.try_get("name")?,
                environment: row.try_get("environment")?,
                action: row.try_get("action")?,
                run_at: from_micros(row.try_get("run_at")?)?,
                created_by: row.try_get("created_by")?,
                created_at: from_micros(row.try_get("created_at")?)?,
                state: row.try_get("state")?,
                ran_at: ran_at.map(from_micros).transpose()?,
                change_id: change_id
                    .map(|c| c.parse::<Ulid>().map_err(|e| corrupt("schedule change id", e)))
                    .transpose()?,
                error: row.try_get("error")?,
            })
        }

        pub(crate) async fn insert_flag_schedule(pool: &Pool<Db>, s: &FlagSchedule) -> Result<()> {
            let mut tx = pool.begin().await?;
            if sqlx::query("SELECT 1 FROM flags WHERE service = $1 AND name = $2")
                .bind(&s.service)
                .bind(&s.name)
                .fetch_optional(&mut *tx)
                .await?
                .is_none()
            {
                return Err(StoreError::NotFound(format!("service '{}' has no flag named '{}'", s.service, s.name)));
            }
            sqlx::query(&format!(
                "INSERT INTO flag_schedules ({SCHEDULE_COLUMNS}) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, NULL, NULL, NULL)"
            ))
            .bind(s.id.to_string())
            .bind(&s.service)
            .bind(&s.name)
            .bind(&s.environment)
            .bind(&s.action)
            .bind(micros(s.run_at))
            .bind(&s.created_by)
            .bind(micros(s.created_at))
            .bind(&s.state)
            .execute(&mut *tx)
            .await?;
            tx.commit().await?;
            Ok(())
        }

        pub(crate) async fn list_flag_schedules(
            pool: &Pool<Db>,
            service: &str,
            name: Option<&str>,
        ) -> Result<Vec<FlagSchedule>> {
            let mut sql = QueryBuilder::<Db>::new(format!("SELECT {SCHEDULE_COLUMNS} FROM flag_schedules WHERE service = "));
            sql.push_bind(service.to_string());
            if let Some(name) = name {
                sql.push(" AND name = ").push_bind(name.to_string());
            }
            sql.push(" ORDER BY run_at, id");
            let rows = sql.build().fetch_all(pool).await?;
            rows.iter().map(schedule_from_row).collect()
        }

        pub(crate) async fn get_flag_schedule(pool: &Pool<Db>, id: Ulid) -> Result<Option<FlagSchedule>> {
            let row = sqlx::query(&format!("SELECT {SCHEDULE_COLUMNS} FROM flag_schedules WHERE id = $1"))
                .bind(id.to_string())
                .fetch_optional(pool)
                .await?;
            row.as_ref().map(schedule_from_row).transpose()
        }

        pub(crate) async fn due_flag_schedules(pool: &Pool<Db>, now: DateTime<Utc>, limit: u32) -> Result<Vec<FlagSchedule>> {
            let rows = sqlx::query(&format!(
                "SELECT {SCHEDULE_COLUMNS} FROM flag_schedules WHERE state = 'pending' AND run_at <= $1 ORDER BY run_at, id LIMIT $2"
            ))
            .bind(micros(now))
            .bind(i64::from(limit))
            .fetch_all(pool)
            .await?;
            rows.iter().map(schedule_from_row).collect()
        }

        /// Ends a pending schedule (`done`, `failed` or `cancelled`); `false` when it was no
        /// longer pending (another server ran it, or someone cancelled it).
        pub(crate) async fn finish_flag_schedule(
            pool: &Pool<Db>,
            id: Ulid,
            state: &str,
            ran_at: DateTime<Utc>,
            change_id: Option<Ulid>,
            error: Option<&str>,
        ) -> Result<bool> {
            let done = sqlx::query(
                "UPDATE flag_schedules SET state = $1, ran_at = $2, change_id = $3, error = $4 WHERE id = $5 AND state = 'pending'",
            )
            .bind(state)
            .bind(micros(ran_at))
            .bind(change_id.map(|c| c.to_string()))
            .bind(error)
            .bind(id.to_string())
            .execute(pool)
            .await?;
            Ok(done.rows_affected() == 1)
        }

        // ---- SDK registrations and usage ----

        pub(crate) async fn register_sdk_client(pool: &Pool<Db>, c: &SdkClient) -> Result<()> {
            let strategies = serde_json::to_string(&c.strategies).map_err(|e| corrupt("strategies", e))?;
            sqlx::query(
                "INSERT INTO sdk_clients (service, environment, app_name, instance_id, sdk_version, strategies, started_at, interval_ms, first_seen_at, last_seen_at) \
                 VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10) \
                 ON CONFLICT (service, environment, app_name, instance_id) DO UPDATE SET sdk_version = excluded.sdk_version, \
                 strategies = excluded.strategies, started_at = excluded.started_at, interval_ms = excluded.interval_ms, \
                 last_seen_at = excluded.last_seen_at",
            )
            .bind(&c.service)
            .bind(&c.environment)
            .bind(&c.app_name)
            .bind(&c.instance_id)
            .bind(&c.sdk_version)
            .bind(strategies)
            .bind(c.started_at.map(micros))
            .bind(c.interval_ms)
            .bind(micros(c.first_seen_at))
            .bind(micros(c.last_seen_at))
            .execute(pool)
            .await?;
            Ok(())
        }

        pub(crate) async fn sdk_clients(pool: &Pool<Db>, service: &str) -> Result<Vec<SdkClient>> {
            let rows = sqlx::query(
                "SELECT service, environment, app_name, instance_id, sdk_version, strategies, started_at, interval_ms, first_seen_at, last_seen_at \
                 FROM sdk_clients WHERE service = $1 ORDER BY environment, app_name, instance_id",
            )
            .bind(service)
            .fetch_all(pool)
            .await?;
            rows.iter()
                .map(|row| {
                    let strategies: String = row.try_get("strategies")?;
                    let started_at: Option<i64> = row.try_get("started_at")?;
                    Ok(SdkClient {
                        service: row.try_get("service")?,
                        environment: row.try_get("environment")?,
                        app_name: row.try_get("app_name")?,
                        instance_id: row.try_get("instance_id")?,
                        sdk_version: row.try_get("sdk_version")?,
                        strategies: serde_json::from_str(&strategies).map_err(|e| corrupt("strategies", e))?,
                        started_at: started_at.map(from_micros).transpose()?,
                        interval_ms: row.try_get("interval_ms")?,
                        first_seen_at: from_micros(row.try_get("first_seen_at")?)?,
                        last_seen_at: from_micros(row.try_get("last_seen_at")?)?,
                    })
                })
                .collect()
        }

        /// Adds counts to each (flag, environment, hour) row, creating it when needed; flags
        /// that do not exist are skipped. One transaction for the batch.
        pub(crate) async fn add_flag_usage(pool: &Pool<Db>, dialect: &Dialect, usage: &[FlagUsage]) -> Result<u64> {
            let mut tx = pool.begin().await?;
            let mut stored = 0;
            for u in usage {
                let exists = sqlx::query("SELECT 1 FROM flags WHERE service = $1 AND name = $2")
                    .bind(&u.service)
                    .bind(&u.name)
                    .fetch_optional(&mut *tx)
                    .await?
                    .is_some();
                if !exists {
                    continue;
                }
                let key_sql = format!(
                    "SELECT variants FROM flag_usage WHERE service = $1 AND environment = $2 AND name = $3 AND hour = $4{}",
                    dialect.for_update
                );
                let existing: Option<String> = sqlx::query_scalar(&key_sql)
                    .bind(&u.service)
                    .bind(&u.environment)
                    .bind(&u.name)
                    .bind(micros(u.hour))
                    .fetch_optional(&mut *tx)
                    .await?;
                let mut variants: BTreeMap<String, i64> = match &existing {
                    Some(text) => serde_json::from_str(text).map_err(|e| corrupt("flag usage variants", e))?,
                    None => BTreeMap::new(),
                };
                for (variant, count) in &u.variants {
                    let slot = variants.entry(variant.clone()).or_insert(0);
                    *slot = slot.saturating_add(*count);
                }
                let variants = serde_json::to_string(&variants).map_err(|e| corrupt("flag usage variants", e))?;
                sqlx::query(
                    "INSERT INTO flag_usage (service, environment, name, hour, yes, no, variants) VALUES ($1, $2, $3, $4, $5, $6, $7) \
                     ON CONFLICT (service, environment, name, hour) DO UPDATE SET yes = flag_usage.yes + excluded.yes, \
                     no = flag_usage.no + excluded.no, variants = excluded.variants",
                )
                .bind(&u.service)
                .bind(&u.environment)
                .bind(&u.name)
                .bind(micros(u.hour))
                .bind(u.yes)
                .bind(u.no)
                .bind(variants)
                .execute(&mut *tx)
                .await?;
                stored += 1;
            }
            tx.commit().await?;
            Ok(stored)
        }

        /// Per flag and environment of a service: the newest hour with any evaluation and
        /// the counts since `since`.
        pub(crate) async fn flag_usage_since(
            pool: &Pool<Db>,
            service: &str,
            since: DateTime<Utc>,
        ) -> Result<Vec<FlagUsage>> {
            let rows = sqlx::query(
                "SELECT environment, name, MAX(hour) AS hour, CAST(SUM(yes) AS BIGINT) AS yes, CAST(SUM(no) AS BIGINT) AS no FROM flag_usage \
                 WHERE service = $1 AND hour >= $2 GROUP BY environment, name ORDER BY name, environment",
            )
            .bind(service)
            .bind(micros(since))
            .fetch_all(pool)
            .await?;
            rows.iter()
                .map(|row| {
                    Ok(FlagUsage {
                        service: service.to_string(),
                        environment: row.try_get("environment")?,
                        name: row.try_get("name")?,
                        hour: from_micros(row.try_get("hour")?)?,
                        yes: row.try_get::<Option<i64>, _>("yes")?.unwrap_or(0),
                        no: row.try_get::<Option<i64>, _>("no")?.unwrap_or(0),
                        variants: BTreeMap::new(),
                    })
                })
                .collect()
        }

        pub(crate) async fn prune_flag_usage(pool: &Pool<Db>, before: DateTime<Utc>) -> Result<u64> {
            let done = sqlx::query("DELETE FROM flag_usage WHERE hour < $1")
                .bind(micros(before))
                .execute(pool)
                .await?;
            Ok(done.rows_affected())
        }
    };
}

pub(crate) use flag_queries;
