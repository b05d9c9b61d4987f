//! The online table rebuild (the shadow-table swap), for PostgreSQL and MariaDB/MySQL: a
//! shadow table with the new shape and its indexes, kept in step with triggers (upserts and
//! deletes) while rows are copied in keyset batches that lock their source rows, then the
//! names swapped in one short lock. The old table is kept until `--drop-old`.
//!
//! Every step can be run again: a shadow table or trigger that exists is reused, the copy
//! inserts ignoring rows already there, so an interrupted rebuild resumes by running it
//! again; `abort` removes the shadow table and triggers.

use std::time::Duration;

use sqlx::Row;

use super::sql::{
    is_mysql_lock_timeout, is_pg_lock_timeout, numbered, table_name, Arg, Connection,
};
use super::{redact, Event, RunError, Runner};
use crate::split::Dialect;

/// What a rebuild did.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct RebuildReport {
    pub rows_copied: u64,
    pub batches: u64,
    pub old_table: String,
    pub duration_ms: u64,
}

/// The names a rebuild of `table` uses.
struct Names {
    table: String,
    shadow: String,
    old: String,
    trigger: String,
}

impl Names {
    fn of(table: &str) -> Result<Names, RunError> {
        let table = table_name(table).map_err(RunError::Refused)?.to_string();
        let names = Names {
            shadow: format!("_gantry_new_{table}"),
            old: format!("_gantry_old_{table}"),
            trigger: format!("_gantry_sync_{table}"),
            table,
        };
        if names.trigger.len() + 4 > 64 {
            return Err(RunError::Refused(format!(
                "table name {} is too long for the shadow table's names (at most 46 characters)",
                names.table
            )));
        }
        Ok(names)
    }
}

/// How a rebuild ends.
#[derive(Debug, Clone, Copy, Default)]
pub struct RebuildOptions {
    /// Drop the old table once the swap is done (kept by default).
    pub drop_old: bool,
    /// Re-create foreign keys of other tables that point at the table on the new table
    /// (`NOT VALID` in the swap, validated after it); PostgreSQL only.
    pub repoint_foreign_keys: bool,
}

/// A foreign key a rebuild moves: `table` holds it.
#[derive(Debug, Clone)]
struct ForeignKey {
    table: String,
    /// Quoted as an identifier.
    name: String,
    /// `FOREIGN KEY (…) REFERENCES …`, as PostgreSQL prints it.
    definition: String,
    /// Its columns (the table's own keys only).
    columns: Vec<String>,
}

#[derive(Debug, Default)]
struct ForeignKeys {
    /// The table's own.
    outgoing: Vec<ForeignKey>,
    /// Of other tables, pointing at it (only with --repoint-foreign-keys).
    incoming: Vec<ForeignKey>,
}

impl Runner {
    /// Refuses an `alter` the classifier calls an error for `phase` (unless `force`): a
    /// rebuild is gated like the statement `ALTER TABLE table alter`.
    pub fn check_rebuild(
        &self,
        phase: crate::layout::Phase,
        table: &str,
        alter: &str,
        force: bool,
    ) -> Result<(), RunError> {
        let statement = format!("ALTER TABLE {table} {alter}");
        let statements = crate::split::split(self.dialect(), &statement)
            .map_err(|e| RunError::Refused(format!("--alter: {e}")))?;
        let findings = crate::classify::check_phase(
            phase,
            crate::classify::classify(self.dialect(), &statements),
        );
        match findings
            .iter()
            .find(|f| f.severity == crate::classify::Severity::Error)
        {
            Some(f) if !force => Err(RunError::Refused(format!(
                "--alter: {} ({}); nothing was run. Use the right --phase, or --force --reason \"…\"",
                f.message, f.rule
            ))),
            _ => Ok(()),
        }
    }

    /// Rebuilds `table` with `alter` (what follows `ALTER TABLE t`) applied, online.
    pub async fn rebuild(
        &mut self,
        table: &str,
        alter: &str,
        how: RebuildOptions,
        progress: &mut (dyn FnMut(Event) + Send),
    ) -> Result<RebuildReport, RunError> {
        let RebuildOptions {
            drop_old,
            repoint_foreign_keys,
        } = how;
        let started = std::time::Instant::now();
        let dialect = self.dialect();
        if dialect == Dialect::Sqlite {
            return Err(RunError::Refused(
                "SQLite has no online rebuild: its ALTER TABLE rewrites under one write lock anyway".into(),
            ));
        }
        let upper = alter.to_ascii_uppercase();
        if upper.split_whitespace().any(|w| w == "RENAME") {
            return Err(RunError::Refused(
                "--alter renames a column: a rebuild copies columns by name, so rename in an expand/contract pair instead".into(),
            ));
        }
        let n = Names::of(table)?;
        let pk = self
            .conn
            .integer_primary_key(&n.table)
            .await
            .map_err(RunError::Refused)?;
        self.refuse_dependents(&n, repoint_foreign_keys).await?;
        let keys = self.foreign_keys(&n, repoint_foreign_keys).await?;
        // The shadow table, with the new shape and the old table's indexes.
        let exists = self.table_exists(&n.shadow).await?;
        if !exists {
            let create = match dialect {
                Dialect::Postgres => {
                    format!("CREATE TABLE {} (LIKE {} INCLUDING ALL)", n.shadow, n.table)
                }
                _ => format!("CREATE TABLE {} LIKE {}", n.shadow, n.table),
            };
            self.run(&create).await?;
            self.run(&format!("ALTER TABLE {} {alter}", n.shadow))
                .await?;
        }
        let columns = self.common_columns(&n).await?;
        // The table's own foreign keys, which LIKE leaves out: on the shadow, NOT VALID (the
        // rows copied come from a table that satisfies them), validated after the swap.
        let carried = self.carry_foreign_keys(&n, &keys.outgoing).await?;
        if !columns.iter().any(|c| c == &pk) {
            return Err(RunError::Refused(format!(
                "--alter drops or changes the primary key {pk}; a rebuild keeps it"
            )));
        }
        self.create_triggers(&n, &pk, &columns).await?;
        // The copy, in keyset batches that lock their source rows while they are read.
        let list = columns.join(", ");
        let copy = match dialect {
            Dialect::Postgres => format!(
                "INSERT INTO {shadow} ({list}) SELECT {list} FROM {table} WHERE {pk} > ? AND {pk} <= ? FOR KEY SHARE ON CONFLICT DO NOTHING",
                shadow = n.shadow,
                table = n.table
            ),
            _ => format!(
                "INSERT IGNORE INTO {shadow} ({list}) SELECT {list} FROM {table} WHERE {pk} > ? AND {pk} <= ? LOCK IN SHARE MODE",
                shadow = n.shadow,
                table = n.table
            ),
        };
        let mut report = RebuildReport {
            old_table: n.old.clone(),
            ..RebuildReport::default()
        };
        let mut last = i64::MIN;
        loop {
            self.checkpoint(progress).await?;
            let upper = self
                .conn
                .next_upper(&n.table, &pk, last, self.options.backfill_batch)
                .await
                .map_err(|e| self.db_err(e))?;
            let Some(upper) = upper else {
                break;
            };
            let mut attempt = 0;
            let copied = loop {
                attempt += 1;
                match self
                    .conn
                    .exec(&copy, &[Arg::Int(last), Arg::Int(upper)])
                    .await
                {
                    Ok(n) => break n,
                    Err(e)
                        if (is_pg_lock_timeout(&e) || is_mysql_lock_timeout(&e))
                            && attempt <= self.options.lock_retries =>
                    {
                        self.wait_retry(0, attempt, e.to_string(), progress).await;
                    }
                    Err(e) => return Err(self.db_err(e.to_string())),
                }
            };
            report.rows_copied += copied;
            report.batches += 1;
            last = upper;
            progress(Event::Backfill {
                version: 0,
                last_key: last,
                rows: report.rows_copied as i64,
            });
        }
        let analyze = match dialect {
            Dialect::Postgres => format!("ANALYZE {}", n.shadow),
            _ => format!("ANALYZE TABLE {}", n.shadow),
        };
        self.run(&analyze).await?;
        self.swap(&n, &keys.incoming, &carried).await?;
        // Validation scans the referencing rows under a lock that lets reads and writes go on.
        for name in &carried {
            self.run(&format!(
                "ALTER TABLE {} VALIDATE CONSTRAINT {name}",
                n.table
            ))
            .await?;
        }
        for fk in &keys.incoming {
            self.run(&format!(
                "ALTER TABLE {} VALIDATE CONSTRAINT {}",
                fk.table, fk.name
            ))
            .await?;
        }
        if drop_old {
            self.run(&format!("DROP TABLE {}", n.old)).await?;
        }
        report.duration_ms = started.elapsed().as_millis() as u64;
        Ok(report)
    }

    /// Removes what an unfinished rebuild of `table` made (the shadow table and triggers).
    pub async fn abort_rebuild(&mut self, table: &str) -> Result<(), RunError> {
        let n = Names::of(table)?;
        self.drop_triggers(&n, &n.table).await?;
        self.run(&format!("DROP TABLE IF EXISTS {}", n.shadow))
            .await
    }

    async fn run(&mut self, sql: &str) -> Result<(), RunError> {
        self.conn
            .raw(sql)
            .await
            .map_err(|e| RunError::Database(redact(&e.to_string(), &self.url)))
    }

    async fn strings(&mut self, sql: &str, args: &[&str]) -> Result<Vec<String>, RunError> {
        let pg = self.dialect() == Dialect::Postgres;
        let sql = if pg { numbered(sql) } else { sql.to_string() };
        macro_rules! q {
            ($conn:expr) => {{
                let mut q = sqlx::query(&sql);
                for a in args {
                    q = q.bind(*a);
                }
                match q.fetch_all(&mut *$conn).await {
                    Ok(rows) => rows
                        .iter()
                        .map(|r| r.try_get::<String, _>(0).map_err(|e| e.to_string()))
                        .collect::<Result<Vec<_>, String>>(),
                    Err(e) => Err(e.to_string()),
                }
            }};
        }
        let result = match &mut self.conn {
            Connection::Postgres { conn, .. } => q!(conn),
            Connection::MySql { conn, .. } => q!(conn),
            Connection::Sqlite { conn } => q!(conn),
        };
        result.map_err(|e| self.db_err(e))
    }

    async fn table_exists(&mut self, table: &str) -> Result<bool, RunError> {
        let sql = match self.dialect() {
            Dialect::Postgres => "SELECT to_regclass(?)::text WHERE to_regclass(?) IS NOT NULL",
            _ => "SELECT TABLE_NAME FROM information_schema.TABLES WHERE TABLE_SCHEMA = DATABASE() AND TABLE_NAME = ? AND TABLE_NAME = ?",
        };
        Ok(!self.strings(sql, &[table, table]).await?.is_empty())
    }

    /// Refuses what a swap would break: foreign keys pointing at the table (unless
    /// `repoint`, PostgreSQL), a foreign key of the table on itself, (MariaDB) foreign keys of
    /// its own, and (PostgreSQL) views or row-level policies on it.
    async fn refuse_dependents(&mut self, n: &Names, repoint: bool) -> Result<(), RunError> {
        let pg = self.dialect() == Dialect::Postgres;
        if repoint && !pg {
            return Err(RunError::Refused(
                "--repoint-foreign-keys is for PostgreSQL (re-created NOT VALID, then validated); MariaDB/MySQL has no NOT VALID, so move the foreign keys in an expand/contract pair".into(),
            ));
        }
        let mut checks: Vec<(&str, &str)> = Vec::new();
        if pg {
            if !repoint {
                checks.push((
                    "foreign keys reference it, and a swap would leave them on the old table (--repoint-foreign-keys moves them to the new one)",
                    "SELECT conname::text FROM pg_constraint WHERE confrelid = to_regclass(?) AND contype = 'f'",
                ));
            }
            checks.extend([
                ("a foreign key of the table references the table itself, which a swap cannot move", "SELECT conname::text FROM pg_constraint WHERE conrelid = to_regclass(?) AND confrelid = conrelid AND contype = 'f'"),
                ("views depend on it, and a swap would leave them on the old table", "SELECT DISTINCT v.relname::text FROM pg_depend d JOIN pg_rewrite r ON r.oid = d.objid JOIN pg_class v ON v.oid = r.ev_class WHERE d.refobjid = to_regclass(?) AND v.oid <> d.refobjid"),
                ("row-level policies are on it, and a swap would leave them on the old table", "SELECT polname::text FROM pg_policy WHERE polrelid = to_regclass(?)"),
            ]);
        } else {
            checks.extend([
                (
                    "foreign keys reference it, and a swap would leave them on the old table",
                    "SELECT CONSTRAINT_NAME FROM information_schema.REFERENTIAL_CONSTRAINTS WHERE CONSTRAINT_SCHEMA = DATABASE() AND REFERENCED_TABLE_NAME = ?",
                ),
                (
                    "it has foreign keys of its own, which CREATE TABLE … LIKE does not copy on MariaDB/MySQL and which cannot be carried to a shadow table (their names are unique per schema); drop them in a contract migration first, or change the table in an expand/contract pair",
                    "SELECT CONSTRAINT_NAME FROM information_schema.REFERENTIAL_CONSTRAINTS WHERE CONSTRAINT_SCHEMA = DATABASE() AND TABLE_NAME = ?",
                ),
            ]);
        }
        for (what, sql) in checks {
            let found = self.strings(sql, &[&n.table]).await?;
            if !found.is_empty() {
                return Err(RunError::Refused(format!(
                    "cannot rebuild {}: {what} ({})",
                    n.table,
                    found.join(", ")
                )));
            }
        }
        Ok(())
    }

    /// The foreign keys a PostgreSQL rebuild moves: the table's own (carried to the shadow)
    /// and, when `repoint`, those of other tables pointing at it (re-created at the swap).
    async fn foreign_keys(&mut self, n: &Names, repoint: bool) -> Result<ForeignKeys, RunError> {
        let mut keys = ForeignKeys::default();
        if self.dialect() != Dialect::Postgres {
            return Ok(keys);
        }
        let own = self
            .strings(
                "SELECT quote_ident(conname) || chr(9) || pg_get_constraintdef(c.oid) || chr(9) || \
                 array_to_string(ARRAY(SELECT attname::text FROM pg_attribute a WHERE a.attrelid = c.conrelid AND a.attnum = ANY(c.conkey)), ',') \
                 FROM pg_constraint c WHERE conrelid = to_regclass(?) AND contype = 'f' AND confrelid <> conrelid ORDER BY conname",
                &[&n.table],
            )
            .await?;
        for row in own {
            let mut parts = row.splitn(3, '\t');
            if let (Some(name), Some(definition), Some(columns)) =
                (parts.next(), parts.next(), parts.next())
            {
                keys.outgoing.push(ForeignKey {
                    table: n.table.clone(),
                    name: name.to_string(),
                    definition: definition.to_string(),
                    columns: columns.split(',').map(str::to_string).collect(),
                });
            }
        }
        if repoint {
            let pointing = self
                .strings(
                    "SELECT conrelid::regclass::text || chr(9) || quote_ident(conname) || chr(9) || pg_get_constraintdef(oid) \
                     FROM pg_constraint WHERE confrelid = to_regclass(?) AND contype = 'f' AND confrelid <> conrelid ORDER BY 1",
                    &[&n.table],
                )
                .await?;
            for row in pointing {
                let mut parts = row.splitn(3, '\t');
                if let (Some(table), Some(name), Some(definition)) =
                    (parts.next(), parts.next(), parts.next())
                {
                    keys.incoming.push(ForeignKey {
                        table: table.to_string(),
                        name: name.to_string(),
                        definition: definition.to_string(),
                        columns: Vec::new(),
                    });
                }
            }
        }
        Ok(keys)
    }

    /// Adds the table's own foreign keys to the shadow table (`NOT VALID`), those whose
    /// columns it still has and that it lacks (a resumed rebuild added them before);
    /// returns the names to validate after the swap.
    async fn carry_foreign_keys(
        &mut self,
        n: &Names,
        keys: &[ForeignKey],
    ) -> Result<Vec<String>, RunError> {
        if keys.is_empty() {
            return Ok(Vec::new());
        }
        let columns = self.common_columns(n).await?;
        let present = self
            .strings(
                "SELECT quote_ident(conname) FROM pg_constraint WHERE conrelid = to_regclass(?) AND contype = 'f'",
                &[&n.shadow],
            )
            .await?;
        let mut carried = Vec::new();
        for fk in keys {
            if !fk.columns.iter().all(|c| columns.contains(c)) {
                continue;
            }
            if !present.contains(&fk.name) {
                self.run(&format!(
                    "ALTER TABLE {} ADD CONSTRAINT {} {} NOT VALID",
                    n.shadow, fk.name, fk.definition
                ))
                .await?;
            }
            carried.push(fk.name.clone());
        }
        Ok(carried)
    }

    /// Columns both tables have, generated ones left out (the database computes them).
    async fn common_columns(&mut self, n: &Names) -> Result<Vec<String>, RunError> {
        let sql = match self.dialect() {
            Dialect::Postgres => "SELECT column_name::text FROM information_schema.columns WHERE table_schema = current_schema() AND table_name = ? AND is_generated = 'NEVER' ORDER BY ordinal_position",
            _ => "SELECT COLUMN_NAME FROM information_schema.COLUMNS WHERE TABLE_SCHEMA = DATABASE() AND TABLE_NAME = ? AND EXTRA NOT LIKE '%GENERATED%' ORDER BY ORDINAL_POSITION",
        };
        let old = self.strings(sql, &[&n.table]).await?;
        let new = self.strings(sql, &[&n.shadow]).await?;
        Ok(old.into_iter().filter(|c| new.contains(c)).collect())
    }

    async fn create_triggers(
        &mut self,
        n: &Names,
        pk: &str,
        columns: &[String],
    ) -> Result<(), RunError> {
        let list = columns.join(", ");
        match self.dialect() {
            Dialect::Postgres => {
                let values: Vec<String> = columns.iter().map(|c| format!("NEW.{c}")).collect();
                let sets: Vec<String> = columns
                    .iter()
                    .filter(|c| *c != pk)
                    .map(|c| format!("{c} = EXCLUDED.{c}"))
                    .collect();
                let on_conflict = if sets.is_empty() {
                    "DO NOTHING".to_string()
                } else {
                    format!("DO UPDATE SET {}", sets.join(", "))
                };
                self.run(&format!(
                    "CREATE OR REPLACE FUNCTION {trigger}() RETURNS trigger LANGUAGE plpgsql AS $gantry$ \
                     BEGIN \
                       IF TG_OP = 'DELETE' OR (TG_OP = 'UPDATE' AND OLD.{pk} IS DISTINCT FROM NEW.{pk}) THEN \
                         DELETE FROM {shadow} WHERE {pk} = OLD.{pk}; \
                       END IF; \
                       IF TG_OP = 'DELETE' THEN RETURN OLD; END IF; \
                       INSERT INTO {shadow} ({list}) VALUES ({values}) ON CONFLICT ({pk}) {on_conflict}; \
                       RETURN NEW; \
                     END $gantry$",
                    trigger = n.trigger,
                    shadow = n.shadow,
                    values = values.join(", "),
                ))
                .await?;
                self.run(&format!(
                    "DROP TRIGGER IF EXISTS {t} ON {table}",
                    t = n.trigger,
                    table = n.table
                ))
                .await?;
                self.run(&format!(
                    "CREATE TRIGGER {t} AFTER INSERT OR UPDATE OR DELETE ON {table} FOR EACH ROW EXECUTE FUNCTION {t}()",
                    t = n.trigger,
                    table = n.table
                ))
                .await
            }
            _ => {
                let values: Vec<String> = columns.iter().map(|c| format!("NEW.{c}")).collect();
                let values = values.join(", ");
                self.drop_triggers(n, &n.table).await?;
                self.run(&format!(
                    "CREATE TRIGGER {t}_ins AFTER INSERT ON {table} FOR EACH ROW REPLACE INTO {shadow} ({list}) VALUES ({values})",
                    t = n.trigger,
                    table = n.table,
                    shadow = n.shadow
                ))
                .await?;
                self.run(&format!(
                    "CREATE TRIGGER {t}_upd AFTER UPDATE ON {table} FOR EACH ROW BEGIN \
                     DELETE FROM {shadow} WHERE {pk} = OLD.{pk}; \
                     REPLACE INTO {shadow} ({list}) VALUES ({values}); END",
                    t = n.trigger,
                    table = n.table,
                    shadow = n.shadow
                ))
                .await?;
                self.run(&format!(
                    "CREATE TRIGGER {t}_del AFTER DELETE ON {table} FOR EACH ROW DELETE FROM {shadow} WHERE {pk} = OLD.{pk}",
                    t = n.trigger,
                    table = n.table,
                    shadow = n.shadow
                ))
                .await
            }
        }
    }

    async fn drop_triggers(&mut self, n: &Names, on: &str) -> Result<(), RunError> {
        match self.dialect() {
            Dialect::Postgres => {
                self.run(&format!("DROP TRIGGER IF EXISTS {} ON {on}", n.trigger))
                    .await?;
                self.run(&format!("DROP FUNCTION IF EXISTS {}()", n.trigger))
                    .await
            }
            _ => {
                for suffix in ["ins", "upd", "del"] {
                    self.run(&format!("DROP TRIGGER IF EXISTS {}_{suffix}", n.trigger))
                        .await?;
                }
                Ok(())
            }
        }
    }

    /// Swaps the names in one short lock (retried like any statement), dropping the
    /// triggers with it; PostgreSQL also moves the ownership of the old table's sequences.
    async fn swap(
        &mut self,
        n: &Names,
        incoming: &[ForeignKey],
        carried: &[String],
    ) -> Result<(), RunError> {
        let ms = self.options.lock_timeout.as_millis();
        let mut attempt = 0;
        loop {
            attempt += 1;
            let result = match self.dialect() {
                Dialect::Postgres => {
                    let owned = self
                        .strings(
                            "SELECT s.relname::text || ' ' || a.attname::text FROM pg_depend d \
                             JOIN pg_class s ON s.oid = d.objid AND s.relkind = 'S' \
                             JOIN pg_attribute a ON a.attrelid = d.refobjid AND a.attnum = d.refobjsubid \
                             WHERE d.refobjid = to_regclass(?) AND d.deptype IN ('a', 'i')",
                            &[&n.table],
                        )
                        .await?;
                    let mut script = format!(
                        "BEGIN; SET LOCAL lock_timeout = '{ms}ms'; \
                         LOCK TABLE {table}, {shadow} IN ACCESS EXCLUSIVE MODE; \
                         DROP TRIGGER IF EXISTS {trigger} ON {table}; \
                         ALTER TABLE {table} RENAME TO {old}; \
                         ALTER TABLE {shadow} RENAME TO {table}; ",
                        table = n.table,
                        shadow = n.shadow,
                        trigger = n.trigger,
                        old = n.old
                    );
                    for pair in owned {
                        if let Some((sequence, column)) = pair.split_once(' ') {
                            script.push_str(&format!(
                                "ALTER SEQUENCE {sequence} OWNED BY {table}.{column}; ",
                                table = n.table
                            ));
                        }
                    }
                    // Keys pointing at the table followed it to its old name: point them at
                    // the new table, unchecked until validated after the commit.
                    for fk in incoming {
                        script.push_str(&format!(
                            "ALTER TABLE {child} DROP CONSTRAINT {name}, ADD CONSTRAINT {name} {definition} NOT VALID; ",
                            child = fk.table,
                            name = fk.name,
                            definition = fk.definition
                        ));
                    }
                    // The old table is frozen: its own keys would only block deletes of the
                    // rows it still references.
                    for name in carried {
                        script.push_str(&format!(
                            "ALTER TABLE {old} DROP CONSTRAINT IF EXISTS {name}; ",
                            old = n.old
                        ));
                    }
                    script.push_str(&format!("DROP FUNCTION IF EXISTS {}(); COMMIT;", n.trigger));
                    let r = self.conn.raw(&script).await;
                    if r.is_err() {
                        let _ = self.conn.raw("ROLLBACK").await;
                    }
                    r
                }
                _ => {
                    let secs = self.options.lock_timeout.as_secs().max(1);
                    let _ = self
                        .conn
                        .raw(&format!("SET SESSION lock_wait_timeout = {secs}"))
                        .await;
                    let r = self
                        .conn
                        .raw(&format!(
                            "RENAME TABLE {table} TO {old}, {shadow} TO {table}",
                            table = n.table,
                            old = n.old,
                            shadow = n.shadow
                        ))
                        .await;
                    if r.is_ok() {
                        // The triggers moved with the old table, which takes no writes now.
                        self.drop_triggers(n, &n.old).await?;
                    }
                    r
                }
            };
            match result {
                Ok(()) => return Ok(()),
                Err(e)
                    if (is_pg_lock_timeout(&e) || is_mysql_lock_timeout(&e))
                        && attempt <= self.options.lock_retries =>
                {
                    let wait = Duration::from_millis(100 * u64::from(attempt.min(50)));
                    tokio::time::sleep(wait).await;
                }
                Err(e) => return Err(self.db_err(e.to_string())),
            }
        }
    }
}
