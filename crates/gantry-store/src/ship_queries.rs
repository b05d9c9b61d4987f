//! Shipping's SQL (builds, artifacts, deploy configs, hosts, rollouts, tasks, deployments),
//! written once and instantiated per database like `queries.rs`.

/// Rows per multi-row statement for tasks (8 columns each).
pub(crate) const TASK_ROWS_PER_STATEMENT: usize = 500;

macro_rules! ship_queries {
    ($db:ty) => {
        use std::collections::BTreeMap;

        use chrono::{DateTime, Utc};
        use gantry_core::ship::{Build, Host, HostFacts, HostRelease, Rollout, Task};
        use sqlx::{Pool, QueryBuilder, Row};
        use ulid::Ulid;

        use crate::ship_queries::TASK_ROWS_PER_STATEMENT;
        use crate::{
            from_micros, micros, BuildQuery, Deployment, DeployConfigRecord, Result, ShipSignal,
            StoreError,
        };

        type Db = $db;
        type DbRow = <$db as sqlx::Database>::Row;

        fn corrupt(what: &str, e: impl std::fmt::Display) -> StoreError {
            StoreError::Corrupt(format!("{what}: {e}"))
        }

        fn is_unique_violation(e: &sqlx::Error) -> bool {
            matches!(e, sqlx::Error::Database(d) if d.is_unique_violation())
        }

        fn json<T: serde::Serialize>(what: &str, v: &T) -> Result<String> {
            serde_json::to_string(v).map_err(|e| corrupt(what, e))
        }

        fn from_json<T: serde::de::DeserializeOwned>(what: &str, s: &str) -> Result<T> {
            serde_json::from_str(s).map_err(|e| corrupt(what, e))
        }

        /// Sends a ship signal to every server (PostgreSQL `NOTIFY` inside the transaction;
        /// a no-op on SQLite, whose store signals in-process after commit).
        async fn notify(tx: &mut sqlx::Transaction<'_, Db>, notify_sql: Option<&str>, signal: &ShipSignal) -> Result<()> {
            if let Some(sql) = notify_sql {
                for payload in signal.payloads() {
                    sqlx::query(sql).bind(crate::SHIP_CHANNEL).bind(payload).execute(&mut **tx).await?;
                }
            }
            Ok(())
        }

        // ---- builds ----

        const BUILD_COLUMNS: &str = "id, service, version, sha256, size, url, commit_sha, commit_time, created_by, created_at";

        fn build_from_row(row: &DbRow) -> Result<Build> {
            let id: String = row.try_get("id")?;
            let size: i64 = row.try_get("size")?;
            let commit_time: Option<i64> = row.try_get("commit_time")?;
            Ok(Build {
                id: id.parse().map_err(|e| corrupt("build id", e))?,
                service: row.try_get("service")?,
                version: row.try_get("version")?,
                sha256: row.try_get("sha256")?,
                size: size as u64,
                url: row.try_get("url")?,
                commit: row.try_get("commit_sha")?,
                commit_time: commit_time.map(from_micros).transpose()?,
                created_by: row.try_get("created_by")?,
                created_at: from_micros(row.try_get("created_at")?)?,
            })
        }

        pub(crate) async fn insert_build(pool: &Pool<Db>, b: &Build) -> Result<()> {
            let result = sqlx::query(&format!(
                "INSERT INTO builds ({BUILD_COLUMNS}) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10)"
            ))
            .bind(b.id.to_string())
            .bind(&b.service)
            .bind(&b.version)
            .bind(&b.sha256)
            .bind(b.size as i64)
            .bind(&b.url)
            .bind(&b.commit)
            .bind(b.commit_time.map(micros))
            .bind(&b.created_by)
            .bind(micros(b.created_at))
            .execute(pool)
            .await;
            match result {
                Ok(_) => Ok(()),
                Err(e) if is_unique_violation(&e) => Err(StoreError::Conflict(format!(
                    "service '{}' already has a build of version '{}'; versions are immutable, push a new one",
                    b.service, b.version
                ))),
                Err(e) => Err(e.into()),
            }
        }

        pub(crate) async fn get_build(pool: &Pool<Db>, id: Ulid) -> Result<Option<Build>> {
            sqlx::query(&format!("SELECT {BUILD_COLUMNS} FROM builds WHERE id = $1"))
                .bind(id.to_string())
                .fetch_optional(pool)
                .await?
                .map(|r| build_from_row(&r))
                .transpose()
        }

        pub(crate) async fn find_builds(pool: &Pool<Db>, q: &BuildQuery) -> Result<Vec<Build>> {
            let mut sql = QueryBuilder::<Db>::new(format!("SELECT {BUILD_COLUMNS} FROM builds WHERE 1 = 1"));
            if let Some(service) = &q.service {
                sql.push(" AND service = ").push_bind(service.clone());
            }
            if let Some(version) = &q.version {
                sql.push(" AND version = ").push_bind(version.clone());
            }
            if let Some(prefix) = &q.id_prefix {
                // ULIDs are Crockford base32 upper case: a prefix is a range.
                let upper = prefix.to_ascii_uppercase();
                sql.push(" AND id >= ").push_bind(upper.clone());
                sql.push(" AND id < ").push_bind(format!("{upper}\u{7f}"));
            }
            if let Some(sha) = &q.sha256 {
                sql.push(" AND sha256 = ").push_bind(sha.clone());
            }
            sql.push(" ORDER BY id DESC LIMIT ").push_bind(i64::from(q.limit.max(1)));
            let rows = sql.build().fetch_all(pool).await?;
            rows.iter().map(build_from_row).collect()
        }

        pub(crate) async fn delete_build(pool: &Pool<Db>, id: Ulid) -> Result<()> {
            sqlx::query("DELETE FROM builds WHERE id = $1").bind(id.to_string()).execute(pool).await?;
            Ok(())
        }

        // ---- blobs kept in the database ----

        pub(crate) async fn blob_size(pool: &Pool<Db>, sha: &str) -> Result<Option<(u64, u32)>> {
            let row: Option<(i64, i32)> = sqlx::query_as("SELECT size, chunks FROM blobs WHERE sha256 = $1")
                .bind(sha)
                .fetch_optional(pool)
                .await?;
            Ok(row.map(|(s, c)| (s as u64, c as u32)))
        }

        pub(crate) async fn put_blob_chunk(pool: &Pool<Db>, key: &str, n: u32, data: &[u8]) -> Result<()> {
            sqlx::query("INSERT INTO blob_chunks (blob_key, n, data) VALUES ($1, $2, $3)")
                .bind(key)
                .bind(n as i32)
                .bind(data)
                .execute(pool)
                .await?;
            Ok(())
        }

        /// Makes the chunks under `key` the blob `sha` in one transaction; when the blob
        /// exists already (a concurrent upload of the same bytes), drops the chunks instead.
        pub(crate) async fn commit_blob(pool: &Pool<Db>, key: &str, sha: &str, size: u64, chunks: u32, now: DateTime<Utc>) -> Result<()> {
            let mut tx = pool.begin().await?;
            let inserted = sqlx::query("INSERT INTO blobs (sha256, size, chunks, created_at) VALUES ($1, $2, $3, $4) ON CONFLICT (sha256) DO NOTHING")
                .bind(sha)
                .bind(size as i64)
                .bind(chunks as i32)
                .bind(micros(now))
                .execute(&mut *tx)
                .await?
                .rows_affected();
            if inserted == 1 {
                sqlx::query("UPDATE blob_chunks SET blob_key = $1 WHERE blob_key = $2")
                    .bind(sha)
                    .bind(key)
                    .execute(&mut *tx)
                    .await?;
            } else {
                sqlx::query("DELETE FROM blob_chunks WHERE blob_key = $1").bind(key).execute(&mut *tx).await?;
            }
            tx.commit().await?;
            Ok(())
        }

        pub(crate) async fn drop_blob_chunks(pool: &Pool<Db>, key: &str) -> Result<()> {
            sqlx::query("DELETE FROM blob_chunks WHERE blob_key = $1").bind(key).execute(pool).await?;
            Ok(())
        }

        pub(crate) async fn blob_chunk(pool: &Pool<Db>, sha: &str, n: u32) -> Result<Option<Vec<u8>>> {
            Ok(sqlx::query_scalar("SELECT data FROM blob_chunks WHERE blob_key = $1 AND n = $2")
                .bind(sha)
                .bind(n as i32)
                .fetch_optional(pool)
                .await?)
        }

        pub(crate) async fn delete_blob(pool: &Pool<Db>, sha: &str) -> Result<()> {
            let mut tx = pool.begin().await?;
            sqlx::query("DELETE FROM blobs WHERE sha256 = $1").bind(sha).execute(&mut *tx).await?;
            sqlx::query("DELETE FROM blob_chunks WHERE blob_key = $1").bind(sha).execute(&mut *tx).await?;
            tx.commit().await?;
            Ok(())
        }

        // ---- deploy configs ----

        pub(crate) async fn put_deploy_config(pool: &Pool<Db>, service: &str, config: &str, actor: &str, now: DateTime<Utc>) -> Result<Option<String>> {
            let mut tx = pool.begin().await?;
            let old: Option<String> = sqlx::query_scalar("SELECT config FROM deploy_configs WHERE service = $1")
                .bind(service)
                .fetch_optional(&mut *tx)
                .await?;
            sqlx::query(
                "INSERT INTO deploy_configs (service, config, updated_by, updated_at) VALUES ($1, $2, $3, $4) \
                 ON CONFLICT (service) DO UPDATE SET config = excluded.config, updated_by = excluded.updated_by, updated_at = excluded.updated_at",
            )
            .bind(service)
            .bind(config)
            .bind(actor)
            .bind(micros(now))
            .execute(&mut *tx)
            .await?;
            tx.commit().await?;
            Ok(old)
        }

        pub(crate) async fn get_deploy_config(pool: &Pool<Db>, service: &str) -> Result<Option<DeployConfigRecord>> {
            let row = sqlx::query("SELECT service, config, updated_by, updated_at FROM deploy_configs WHERE service = $1")
                .bind(service)
                .fetch_optional(pool)
                .await?;
            row.map(|r| {
                Ok(DeployConfigRecord {
                    service: r.try_get("service")?,
                    config: r.try_get("config")?,
                    updated_by: r.try_get("updated_by")?,
                    updated_at: from_micros(r.try_get("updated_at")?)?,
                })
            })
            .transpose()
        }

        // ---- hosts ----

        const HOST_COLUMNS: &str = "name, environment, roles, enrolled_at, last_seen_at, facts, releases, maintenance";

        /// A host row; `status` is filled in by the caller, who knows the clock and policy.
        fn host_from_row(row: &DbRow) -> Result<Host> {
            let roles: String = row.try_get("roles")?;
            let last_seen: Option<i64> = row.try_get("last_seen_at")?;
            let facts: String = row.try_get("facts")?;
            let releases: String = row.try_get("releases")?;
            let maintenance: i32 = row.try_get("maintenance")?;
            Ok(Host {
                name: row.try_get("name")?,
                environment: row.try_get("environment")?,
                roles: roles.split(',').filter(|r| !r.is_empty()).map(str::to_string).collect(),
                enrolled_at: from_micros(row.try_get("enrolled_at")?)?,
                last_seen_at: last_seen.map(from_micros).transpose()?,
                facts: from_json::<HostFacts>("host facts", &facts)?,
                releases: from_json::<BTreeMap<String, HostRelease>>("host releases", &releases)?,
                maintenance: maintenance != 0,
                status: gantry_core::ship::HostStatus::New,
            })
        }

        pub(crate) async fn enroll_host(pool: &Pool<Db>, name: &str, environment: &str, roles: &[String], now: DateTime<Utc>) -> Result<()> {
            sqlx::query(&format!(
                "INSERT INTO hosts ({HOST_COLUMNS}) VALUES ($1, $2, $3, $4, NULL, '{{}}', '{{}}', 0) \
                 ON CONFLICT (name) DO UPDATE SET environment = excluded.environment, roles = excluded.roles"
            ))
            .bind(name)
            .bind(environment)
            .bind(roles.join(","))
            .bind(micros(now))
            .execute(pool)
            .await?;
            Ok(())
        }

        pub(crate) async fn get_host(pool: &Pool<Db>, name: &str) -> Result<Option<Host>> {
            sqlx::query(&format!("SELECT {HOST_COLUMNS} FROM hosts WHERE name = $1"))
                .bind(name)
                .fetch_optional(pool)
                .await?
                .map(|r| host_from_row(&r))
                .transpose()
        }

        pub(crate) async fn list_hosts(pool: &Pool<Db>, environment: Option<&str>) -> Result<Vec<Host>> {
            let mut sql = QueryBuilder::<Db>::new(format!("SELECT {HOST_COLUMNS} FROM hosts"));
            if let Some(env) = environment {
                sql.push(" WHERE environment = ").push_bind(env.to_string());
            }
            sql.push(" ORDER BY name");
            let rows = sql.build().fetch_all(pool).await?;
            rows.iter().map(host_from_row).collect()
        }

        pub(crate) async fn host_seen(pool: &Pool<Db>, name: &str, facts: &HostFacts, releases: &BTreeMap<String, HostRelease>, now: DateTime<Utc>) -> Result<()> {
            let done = sqlx::query("UPDATE hosts SET last_seen_at = $1, facts = $2, releases = $3 WHERE name = $4")
                .bind(micros(now))
                .bind(json("host facts", facts)?)
                .bind(json("host releases", releases)?)
                .bind(name)
                .execute(pool)
                .await?
                .rows_affected();
            if done == 0 {
                return Err(StoreError::NotFound(format!("host '{name}' is not enrolled")));
            }
            Ok(())
        }

        pub(crate) async fn set_host_maintenance(pool: &Pool<Db>, name: &str, on: bool) -> Result<()> {
            let done = sqlx::query("UPDATE hosts SET maintenance = $1 WHERE name = $2")
                .bind(i32::from(on))
                .bind(name)
                .execute(pool)
                .await?
                .rows_affected();
            if done == 0 {
                return Err(StoreError::NotFound(format!("host '{name}' is not enrolled")));
            }
            Ok(())
        }

        pub(crate) async fn delete_host(pool: &Pool<Db>, name: &str) -> Result<()> {
            let done = sqlx::query("DELETE FROM hosts WHERE name = $1").bind(name).execute(pool).await?.rows_affected();
            if done == 0 {
                return Err(StoreError::NotFound(format!("host '{name}' is not enrolled")));
            }
            Ok(())
        }

        // ---- rollouts and tasks ----

        async fn insert_tasks(tx: &mut sqlx::Transaction<'_, Db>, tasks: &[Task]) -> Result<()> {
            for chunk in tasks.chunks(TASK_ROWS_PER_STATEMENT) {
                let docs: Vec<String> = chunk.iter().map(|t| json("task", t)).collect::<Result<_>>()?;
                let mut sql = QueryBuilder::<Db>::new("INSERT INTO tasks (id, rollout_id, host, service, state, doc, updated_at) ");
                sql.push_values(chunk.iter().zip(docs), |mut row, (t, doc)| {
                    row.push_bind(t.id.to_string())
                        .push_bind(t.rollout_id.map(|r| r.to_string()))
                        .push_bind(t.host.clone())
                        .push_bind(t.service.clone())
                        .push_bind(t.state.as_str())
                        .push_bind(doc)
                        .push_bind(micros(t.updated_at));
                });
                sql.build().execute(&mut **tx).await?;
            }
            Ok(())
        }

        async fn update_tasks(tx: &mut sqlx::Transaction<'_, Db>, tasks: &[&Task]) -> Result<()> {
            for t in tasks {
                sqlx::query("UPDATE tasks SET state = $1, doc = $2, updated_at = $3 WHERE id = $4")
                    .bind(t.state.as_str())
                    .bind(json("task", t)?)
                    .bind(micros(t.updated_at))
                    .bind(t.id.to_string())
                    .execute(&mut **tx)
                    .await?;
            }
            Ok(())
        }

        /// Commits a transaction that wrote `tasks`, waking the hosts of those now pending
        /// (in the transaction on PostgreSQL); returns those hosts.
        async fn commit_dispatch<'t>(
            mut tx: sqlx::Transaction<'_, Db>,
            notify_sql: Option<&str>,
            tasks: impl Iterator<Item = &'t Task>,
        ) -> Result<Vec<String>> {
            let mut hosts: Vec<String> = tasks
                .filter(|t| t.state == gantry_core::ship::TaskState::Pending)
                .map(|t| t.host.clone())
                .collect();
            hosts.sort();
            hosts.dedup();
            if !hosts.is_empty() {
                notify(&mut tx, notify_sql, &ShipSignal::Dispatched(hosts.clone())).await?;
            }
            tx.commit().await?;
            Ok(hosts)
        }

        /// Inserts a rollout and its tasks. `Conflict` naming the holder when the service
        /// already has an active rollout in that environment.
        pub(crate) async fn insert_rollout(pool: &Pool<Db>, notify_sql: Option<&str>, r: &Rollout, tasks: &[Task]) -> Result<Vec<String>> {
            let mut tx = pool.begin().await?;
            let result = sqlx::query(
                "INSERT INTO rollouts (id, service, environment, state, active, doc, created_at, updated_at) VALUES ($1, $2, $3, $4, $5, $6, $7, $8)",
            )
            .bind(r.id.to_string())
            .bind(&r.service)
            .bind(&r.environment)
            .bind(r.state.as_str())
            .bind(i32::from(!r.state.is_final()))
            .bind(json("rollout", r)?)
            .bind(micros(r.created_at))
            .bind(micros(r.updated_at))
            .execute(&mut *tx)
            .await;
            match result {
                Ok(_) => {}
                Err(e) if is_unique_violation(&e) => {
                    drop(tx);
                    let holder = active_rollout(pool, &r.service, &r.environment).await?;
                    return Err(StoreError::Conflict(match holder {
                        Some(h) => format!(
                            "{} is being deployed to {} by rollout {} ({} of {} by {}, since {}); wait for it, or `gantry rollout abort {}`",
                            r.service, r.environment, h.id, h.kind, h.version, h.created_by,
                            h.created_at.to_rfc3339_opts(chrono::SecondsFormat::Secs, true), h.id
                        ),
                        None => format!("{} in {} has another rollout in progress", r.service, r.environment),
                    }));
                }
                Err(e) => return Err(e.into()),
            }
            insert_tasks(&mut tx, tasks).await?;
            commit_dispatch(tx, notify_sql, tasks.iter()).await
        }

        fn rollout_from_row(row: &DbRow) -> Result<Rollout> {
            let doc: String = row.try_get("doc")?;
            let mut r: Rollout = from_json("rollout", &doc)?;
            r.control = row.try_get("control")?;
            Ok(r)
        }

        /// Records a person's request for the driving server to apply on its next tick.
        pub(crate) async fn control_rollout(pool: &Pool<Db>, id: Ulid, control: &str) -> Result<()> {
            let done = sqlx::query("UPDATE rollouts SET control = $1 WHERE id = $2 AND active = 1")
                .bind(control)
                .bind(id.to_string())
                .execute(pool)
                .await?
                .rows_affected();
            if done == 0 {
                return Err(StoreError::Conflict(format!("rollout {id} is not active (it has finished)")));
            }
            Ok(())
        }

        pub(crate) async fn get_rollout(pool: &Pool<Db>, id: Ulid) -> Result<Option<Rollout>> {
            sqlx::query("SELECT doc, control FROM rollouts WHERE id = $1")
                .bind(id.to_string())
                .fetch_optional(pool)
                .await?
                .map(|r| rollout_from_row(&r))
                .transpose()
        }

        pub(crate) async fn active_rollout(pool: &Pool<Db>, service: &str, environment: &str) -> Result<Option<Rollout>> {
            sqlx::query("SELECT doc, control FROM rollouts WHERE service = $1 AND environment = $2 AND active = 1")
                .bind(service)
                .bind(environment)
                .fetch_optional(pool)
                .await?
                .map(|r| rollout_from_row(&r))
                .transpose()
        }

        pub(crate) async fn list_rollouts(pool: &Pool<Db>, service: Option<&str>, environment: Option<&str>, active_only: bool, limit: u32) -> Result<Vec<Rollout>> {
            let mut sql = QueryBuilder::<Db>::new("SELECT doc, control FROM rollouts WHERE 1 = 1");
            if let Some(s) = service {
                sql.push(" AND service = ").push_bind(s.to_string());
            }
            if let Some(e) = environment {
                sql.push(" AND environment = ").push_bind(e.to_string());
            }
            if active_only {
                sql.push(" AND active = 1");
            }
            sql.push(" ORDER BY id DESC LIMIT ").push_bind(i64::from(limit.max(1)));
            let rows = sql.build().fetch_all(pool).await?;
            rows.iter().map(rollout_from_row).collect()
        }

        /// Writes a tick's outcome in one transaction: the rollout, the tasks it changed,
        /// the tasks it created, and (when it left the environment on a build) a deployment.
        pub(crate) async fn save_rollout(
            pool: &Pool<Db>,
            notify_sql: Option<&str>,
            r: &Rollout,
            changed: &[&Task],
            new: &[Task],
            deployment: Option<&Deployment>,
        ) -> Result<Vec<String>> {
            let mut tx = pool.begin().await?;
            // A request made since the tick read the rollout stays for the next tick.
            let mut doc = r.clone();
            doc.control = None;
            sqlx::query("UPDATE rollouts SET state = $1, active = $2, doc = $3, updated_at = $4, control = CASE WHEN control = $6 THEN NULL ELSE control END WHERE id = $5")
                .bind(r.state.as_str())
                .bind(i32::from(!r.state.is_final()))
                .bind(json("rollout", &doc)?)
                .bind(micros(r.updated_at))
                .bind(r.id.to_string())
                .bind(r.control.clone().unwrap_or_default())
                .execute(&mut *tx)
                .await?;
            update_tasks(&mut tx, changed).await?;
            insert_tasks(&mut tx, new).await?;
            if let Some(d) = deployment {
                insert_deployment(&mut tx, d).await?;
            }
            commit_dispatch(tx, notify_sql, changed.iter().copied().chain(new.iter())).await
        }

        fn task_from_row(row: &DbRow) -> Result<Task> {
            let doc: String = row.try_get("doc")?;
            from_json("task", &doc)
        }

        pub(crate) async fn rollout_tasks(pool: &Pool<Db>, rollout: Ulid) -> Result<Vec<Task>> {
            let rows = sqlx::query("SELECT doc FROM tasks WHERE rollout_id = $1 ORDER BY id")
                .bind(rollout.to_string())
                .fetch_all(pool)
                .await?;
            rows.iter().map(task_from_row).collect()
        }

        /// A host's tasks, newest first; only `pending`/`running` ones when `open_only`.
        pub(crate) async fn host_tasks(pool: &Pool<Db>, host: &str, open_only: bool, limit: u32) -> Result<Vec<Task>> {
            let mut sql = QueryBuilder::<Db>::new("SELECT doc FROM tasks WHERE host = ");
            sql.push_bind(host.to_string());
            if open_only {
                sql.push(" AND state IN ('pending', 'running')");
            }
            sql.push(" ORDER BY id DESC LIMIT ").push_bind(i64::from(limit.max(1)));
            let rows = sql.build().fetch_all(pool).await?;
            rows.iter().map(task_from_row).collect()
        }

        pub(crate) async fn get_task(pool: &Pool<Db>, id: Ulid) -> Result<Option<Task>> {
            sqlx::query("SELECT doc FROM tasks WHERE id = $1")
                .bind(id.to_string())
                .fetch_optional(pool)
                .await?
                .map(|r| task_from_row(&r))
                .transpose()
        }

        /// Stores an agent's report on its own task (the caller has applied it). Only an
        /// open task can change, so a late report on a finished or cancelled task is ignored.
        pub(crate) async fn report_task(pool: &Pool<Db>, notify_sql: Option<&str>, task: &Task) -> Result<bool> {
            let mut tx = pool.begin().await?;
            let done = sqlx::query("UPDATE tasks SET state = $1, doc = $2, updated_at = $3 WHERE id = $4 AND host = $5 AND state IN ('pending', 'running')")
                .bind(task.state.as_str())
                .bind(json("task", task)?)
                .bind(micros(task.updated_at))
                .bind(task.id.to_string())
                .bind(&task.host)
                .execute(&mut *tx)
                .await?
                .rows_affected();
            if done == 1 {
                if let Some(r) = task.rollout_id {
                    notify(&mut tx, notify_sql, &ShipSignal::Reported(r)).await?;
                }
            }
            tx.commit().await?;
            Ok(done == 1)
        }

        /// Inserts tasks outside a rollout (a returning host converging).
        pub(crate) async fn insert_loose_tasks(pool: &Pool<Db>, tasks: &[Task]) -> Result<()> {
            let mut tx = pool.begin().await?;
            insert_tasks(&mut tx, tasks).await?;
            tx.commit().await?;
            Ok(())
        }

        // ---- deployments ----

        async fn insert_deployment(tx: &mut sqlx::Transaction<'_, Db>, d: &Deployment) -> Result<()> {
            sqlx::query("INSERT INTO deployments (service, environment, at, rollout_id, build_id) VALUES ($1, $2, $3, $4, $5) ON CONFLICT DO NOTHING")
                .bind(&d.service)
                .bind(&d.environment)
                .bind(micros(d.at))
                .bind(d.rollout_id.to_string())
                .bind(d.build_id.to_string())
                .execute(&mut **tx)
                .await?;
            Ok(())
        }

        fn deployment_from_row(row: &DbRow) -> Result<Deployment> {
            let rollout: String = row.try_get("rollout_id")?;
            let build: String = row.try_get("build_id")?;
            Ok(Deployment {
                service: row.try_get("service")?,
                environment: row.try_get("environment")?,
                at: from_micros(row.try_get("at")?)?,
                rollout_id: rollout.parse().map_err(|e| corrupt("deployment rollout", e))?,
                build_id: build.parse().map_err(|e| corrupt("deployment build", e))?,
            })
        }

        /// The builds an environment was left on, newest first.
        pub(crate) async fn deployments(pool: &Pool<Db>, service: &str, environment: &str, limit: u32) -> Result<Vec<Deployment>> {
            let rows = sqlx::query("SELECT service, environment, at, rollout_id, build_id FROM deployments WHERE service = $1 AND environment = $2 ORDER BY at DESC, rollout_id DESC LIMIT $3")
                .bind(service)
                .bind(environment)
                .bind(i64::from(limit.max(1)))
                .fetch_all(pool)
                .await?;
            rows.iter().map(deployment_from_row).collect()
        }

        /// When each environment first ran a build (lead time), oldest first.
        pub(crate) async fn build_deployments(pool: &Pool<Db>, build: Ulid) -> Result<Vec<Deployment>> {
            let rows = sqlx::query("SELECT service, environment, at, rollout_id, build_id FROM deployments WHERE build_id = $1 ORDER BY at")
                .bind(build.to_string())
                .fetch_all(pool)
                .await?;
            rows.iter().map(deployment_from_row).collect()
        }

        /// Builds deployed somewhere (any environment's newest deployment, or in an active
        /// rollout): retention never deletes these.
        pub(crate) async fn builds_in_use(pool: &Pool<Db>, service: &str) -> Result<Vec<Ulid>> {
            let rows: Vec<String> = sqlx::query_scalar(
                "SELECT d.build_id FROM deployments d WHERE d.service = $1 AND d.at = (SELECT MAX(at) FROM deployments d2 WHERE d2.service = d.service AND d2.environment = d.environment) \
                 UNION SELECT t.doc FROM tasks t WHERE t.service = $1 AND t.state IN ('planned', 'pending', 'running')",
            )
            .bind(service)
            .fetch_all(pool)
            .await?;
            let mut out = Vec::new();
            for s in rows {
                if let Ok(id) = s.parse::<Ulid>() {
                    out.push(id);
                } else if let Ok(task) = serde_json::from_str::<Task>(&s) {
                    out.push(task.build_id);
                    out.extend(task.from_build);
                }
            }
            Ok(out)
        }
    };
}

pub(crate) use ship_queries;
