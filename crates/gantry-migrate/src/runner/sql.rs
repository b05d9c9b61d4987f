//! The runner's connection to the target database, per dialect: the runner lock, the
//! version tables, and sending statements one at a time with lock timeouts. Errors come
//! back as text the caller redacts; nothing here prints.

use std::str::FromStr;
use std::time::Duration;

use std::collections::BTreeMap;

use chrono::Utc;
use sqlx::mysql::{MySqlConnectOptions, MySqlConnection};
use sqlx::postgres::{PgConnectOptions, PgConnection};
use sqlx::sqlite::{SqliteConnectOptions, SqliteConnection};
use sqlx::{ConnectOptions, Connection as _, Row};

use super::state::{AppliedRow, Progress};
use super::{redact, Event, Options, RunError};
use crate::layout::Migration;
use crate::split::{Dialect, Statement};

/// The holder table: who runs migrations on this database, since when.
const HOLDER_TABLE: &str = "gantry_migrate_holder";

/// Why a statement (or transaction) did not go through.
#[derive(Debug)]
pub enum Failure {
    /// It waited for a lock longer than `lock_timeout`: retry later.
    LockTimeout(String),
    /// Statement `index` of the migration failed.
    Statement {
        index: usize,
        message: String,
    },
    Database(String),
}

/// A connection to the database migrations run on, and (PostgreSQL, MariaDB) a second one
/// that holds the runner lock for as long as the runner lives.
pub enum Connection {
    Postgres {
        conn: PgConnection,
        lock: PgConnection,
    },
    MySql {
        conn: MySqlConnection,
        lock: MySqlConnection,
    },
    Sqlite {
        conn: SqliteConnection,
    },
}

/// An integer column, whatever width the database gave it.
fn int<R: Row>(row: &R, index: usize) -> Result<i64, sqlx::Error>
where
    usize: sqlx::ColumnIndex<R>,
    i64: for<'r> sqlx::Decode<'r, R::Database> + sqlx::Type<R::Database>,
    i32: for<'r> sqlx::Decode<'r, R::Database> + sqlx::Type<R::Database>,
{
    row.try_get::<i64, _>(index)
        .or_else(|_| row.try_get::<i32, _>(index).map(i64::from))
}

/// A bound value.
pub(super) enum Arg<'a> {
    Str(&'a str),
    Int(i64),
}

macro_rules! bind_all {
    ($query:expr, $args:expr) => {{
        let mut q = $query;
        for a in $args {
            q = match a {
                Arg::Str(s) => q.bind(*s),
                Arg::Int(i) => q.bind(*i),
            };
        }
        q
    }};
}

/// `?` placeholders as PostgreSQL's `$1`, `$2`, ….
pub(super) fn numbered(sql: &str) -> String {
    let mut out = String::with_capacity(sql.len() + 8);
    let mut n = 0;
    for c in sql.chars() {
        if c == '?' {
            n += 1;
            out.push('$');
            out.push_str(&n.to_string());
        } else {
            out.push(c);
        }
    }
    out
}

/// A table name from configuration, checked to be a plain identifier so it can be written
/// into SQL.
pub(super) fn table_name(name: &str) -> Result<&str, String> {
    let ok = !name.is_empty()
        && name.len() <= 63
        && name
            .chars()
            .next()
            .is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
        && name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_');
    if ok {
        Ok(name)
    } else {
        Err(format!(
            "version table '{name}' is not a plain identifier (letters, digits, _; at most 63)"
        ))
    }
}

/// A lock not granted in time (55P03), or a deadlock the database broke (40P01): the
/// statement did nothing and may be retried.
pub(super) fn is_pg_lock_timeout(e: &sqlx::Error) -> bool {
    e.as_database_error()
        .and_then(|d| d.code())
        .is_some_and(|c| c == "55P03" || c == "40P01")
}

/// A lock wait timeout (1205) or a deadlock victim (1213): rolled back, may be retried.
pub(super) fn is_mysql_lock_timeout(e: &sqlx::Error) -> bool {
    e.as_database_error()
        .and_then(|d| d.try_downcast_ref::<sqlx::mysql::MySqlDatabaseError>())
        .is_some_and(|m| m.number() == 1205 || m.number() == 1213)
}

fn is_sqlite_busy(e: &sqlx::Error) -> bool {
    e.as_database_error()
        .and_then(|d| d.code())
        .is_some_and(|c| c == "5" || c == "6" || c.starts_with("SQLITE_BUSY"))
}

/// The index a `CREATE INDEX CONCURRENTLY` statement names, for cleaning up after it.
fn concurrent_index_name(text: &str) -> Option<String> {
    let words: Vec<&str> = text.split_whitespace().collect();
    let upper: Vec<String> = words.iter().map(|w| w.to_ascii_uppercase()).collect();
    let at = upper.iter().position(|w| w == "CONCURRENTLY")?;
    if !upper.iter().take(at).any(|w| w == "INDEX")
        || upper.first().map(String::as_str) != Some("CREATE")
    {
        return None;
    }
    let mut i = at + 1;
    if upper.get(i).map(String::as_str) == Some("IF") {
        i += 3;
    }
    let name = words.get(i)?;
    if upper[i] == "ON" {
        return None;
    }
    Some(name.trim_matches('"').to_string())
}

impl Connection {
    /// Connects (twice for PostgreSQL and MariaDB: one connection holds the lock).
    pub async fn open(url: &str) -> Result<Connection, RunError> {
        let fail = |e: sqlx::Error| {
            RunError::Connect(format!(
                "cannot connect to the target database: {}",
                redact(&e.to_string(), url)
            ))
        };
        if url.starts_with("postgres://") || url.starts_with("postgresql://") {
            let options = PgConnectOptions::from_str(url)
                .map_err(fail)?
                .application_name("gantry-migrate")
                .disable_statement_logging();
            Ok(Connection::Postgres {
                conn: options.connect().await.map_err(fail)?,
                lock: options.connect().await.map_err(fail)?,
            })
        } else if url.starts_with("mysql://") || url.starts_with("mariadb://") {
            let url = url.replacen("mariadb://", "mysql://", 1);
            let options = MySqlConnectOptions::from_str(&url)
                .map_err(fail)?
                .disable_statement_logging();
            Ok(Connection::MySql {
                conn: options.connect().await.map_err(fail)?,
                lock: options.connect().await.map_err(fail)?,
            })
        } else if url.starts_with("sqlite:") {
            let options = SqliteConnectOptions::from_str(url)
                .map_err(fail)?
                .busy_timeout(Duration::from_millis(0))
                .disable_statement_logging();
            Ok(Connection::Sqlite {
                conn: options.connect().await.map_err(fail)?,
            })
        } else {
            Err(RunError::Connect(
                "the target database URL must start with postgres://, mysql:// (or mariadb://) or sqlite:".into(),
            ))
        }
    }

    pub fn dialect(&self) -> Dialect {
        match self {
            Connection::Postgres { .. } => Dialect::Postgres,
            Connection::MySql { .. } => Dialect::MySql,
            Connection::Sqlite { .. } => Dialect::Sqlite,
        }
    }

    pub(super) async fn exec(&mut self, sql: &str, args: &[Arg<'_>]) -> Result<u64, sqlx::Error> {
        Ok(match self {
            Connection::Postgres { conn, .. } => {
                let sql = numbered(sql);
                bind_all!(sqlx::query(&sql), args)
                    .execute(&mut *conn)
                    .await?
                    .rows_affected()
            }
            Connection::MySql { conn, .. } => bind_all!(sqlx::query(sql), args)
                .execute(&mut *conn)
                .await?
                .rows_affected(),
            Connection::Sqlite { conn } => bind_all!(sqlx::query(sql), args)
                .execute(&mut *conn)
                .await?
                .rows_affected(),
        })
    }

    /// [`Connection::exec`] for callers that report errors as text and need no row count.
    async fn exec_text(&mut self, sql: &str, args: &[Arg<'_>]) -> Result<(), String> {
        self.exec(sql, args)
            .await
            .map(drop)
            .map_err(|e| e.to_string())
    }

    /// Runs one statement exactly as written (no prepared statement, no parameters).
    pub(super) async fn raw(&mut self, text: &str) -> Result<(), sqlx::Error> {
        match self {
            Connection::Postgres { conn, .. } => {
                sqlx::raw_sql(text).execute(&mut *conn).await.map(drop)
            }
            Connection::MySql { conn, .. } => {
                sqlx::raw_sql(text).execute(&mut *conn).await.map(drop)
            }
            Connection::Sqlite { conn } => sqlx::raw_sql(text).execute(&mut *conn).await.map(drop),
        }
    }

    /// Takes the runner lock for `database` or says who holds it. On PostgreSQL the key
    /// names the schema too: version tables live in the schema, so each schema is migrated
    /// apart.
    pub async fn lock(&mut self, database: &str, holder: &str, url: &str) -> Result<(), RunError> {
        let key = format!("gantry-migrate:{database}");
        let db = |e: sqlx::Error| RunError::Database(redact(&e.to_string(), url));
        self.raw(&format!(
            "CREATE TABLE IF NOT EXISTS {HOLDER_TABLE} (name VARCHAR(200) PRIMARY KEY, holder VARCHAR(255) NOT NULL, since VARCHAR(40) NOT NULL)"
        ))
        .await
        .map_err(db)?;
        let got = match self {
            Connection::Postgres { lock, .. } => sqlx::query_scalar::<_, bool>(
                "SELECT pg_try_advisory_lock(hashtextextended($1 || ':' || current_schema(), 0))",
            )
            .bind(&key)
            .fetch_one(&mut *lock)
            .await
            .map_err(db)?,
            Connection::MySql { lock, .. } => {
                // MySQL lock names are at most 64 characters and global to the server:
                // the schema's name keeps two databases' runners apart.
                let got: Option<i64> =
                    sqlx::query_scalar("SELECT GET_LOCK(LEFT(CONCAT(?, ':', DATABASE()), 64), 0)")
                        .bind(&key)
                        .fetch_one(&mut *lock)
                        .await
                        .map_err(db)?;
                got == Some(1)
            }
            // SQLite takes its write lock per migration (BEGIN IMMEDIATE).
            Connection::Sqlite { .. } => true,
        };
        if !got {
            let held: Option<(String, String)> = match self {
                Connection::Postgres { conn, .. } => sqlx::query_as(&numbered(&format!(
                    "SELECT holder, since FROM {HOLDER_TABLE} WHERE name = ?"
                )))
                .bind(&key)
                .fetch_optional(&mut *conn)
                .await
                .map_err(db)?,
                Connection::MySql { conn, .. } => sqlx::query_as(&format!(
                    "SELECT holder, since FROM {HOLDER_TABLE} WHERE name = ?"
                ))
                .bind(&key)
                .fetch_optional(&mut *conn)
                .await
                .map_err(db)?,
                Connection::Sqlite { .. } => None,
            };
            return Err(RunError::Locked {
                database: database.to_string(),
                holder: held.map_or_else(
                    || "holder unknown".to_string(),
                    |(h, since)| format!("held by {h} since {since}"),
                ),
            });
        }
        let since = Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Secs, true);
        self.exec(
            &format!("DELETE FROM {HOLDER_TABLE} WHERE name = ?"),
            &[Arg::Str(&key)],
        )
        .await
        .map_err(db)?;
        self.exec(
            &format!("INSERT INTO {HOLDER_TABLE} (name, holder, since) VALUES (?, ?, ?)"),
            &[Arg::Str(&key), Arg::Str(holder), Arg::Str(&since)],
        )
        .await
        .map_err(db)?;
        Ok(())
    }

    /// Gives the runner lock back and closes.
    pub async fn unlock(&mut self, database: &str, holder: &str) {
        let key = format!("gantry-migrate:{database}");
        let _ = self
            .exec(
                &format!("DELETE FROM {HOLDER_TABLE} WHERE name = ? AND holder = ?"),
                &[Arg::Str(&key), Arg::Str(holder)],
            )
            .await;
        match self {
            Connection::Postgres { lock, .. } => {
                let _ = sqlx::query(
                    "SELECT pg_advisory_unlock(hashtextextended($1 || ':' || current_schema(), 0))",
                )
                .bind(&key)
                .execute(&mut *lock)
                .await;
            }
            Connection::MySql { lock, .. } => {
                let _ = sqlx::query("SELECT RELEASE_LOCK(LEFT(CONCAT(?, ':', DATABASE()), 64))")
                    .bind(&key)
                    .execute(&mut *lock)
                    .await;
            }
            Connection::Sqlite { .. } => {}
        }
    }

    /// The phase's version table and its progress table, as the plan script makes them.
    pub async fn ensure_version_table(&mut self, table: &str) -> Result<(), String> {
        let table = table_name(table)?;
        for ddl in crate::plan::version_table_ddl(self.dialect(), table) {
            self.raw(&ddl).await.map_err(|e| e.to_string())?;
        }
        Ok(())
    }

    fn progress_name(table: &str) -> String {
        crate::plan::progress_table(table)
    }

    /// `CURRENT_TIMESTAMP` as the progress table stores it.
    fn now_sql(&self) -> &'static str {
        match self.dialect() {
            Dialect::Postgres => "clock_timestamp()",
            Dialect::MySql => "CURRENT_TIMESTAMP(6)",
            Dialect::Sqlite => "strftime('%Y-%m-%dT%H:%M:%fZ', 'now')",
        }
    }

    pub async fn applied(&mut self, table: &str) -> Result<Vec<AppliedRow>, String> {
        let table = table_name(table)?;
        let sql = format!(
            "SELECT version, description, checksum, applied_by, duration_ms, statements FROM {table} ORDER BY version"
        );
        macro_rules! read {
            ($conn:expr) => {{
                let rows = sqlx::query(&sql)
                    .fetch_all(&mut *$conn)
                    .await
                    .map_err(|e| e.to_string())?;
                rows.iter()
                    .map(|r| {
                        Ok(AppliedRow {
                            version: int(r, 0)? as u32,
                            description: r.try_get(1)?,
                            checksum: r.try_get(2)?,
                            applied_by: r.try_get(3)?,
                            duration_ms: int(r, 4)?,
                            statements: int(r, 5)? as usize,
                        })
                    })
                    .collect::<Result<Vec<_>, sqlx::Error>>()
                    .map_err(|e| e.to_string())
            }};
        }
        match self {
            Connection::Postgres { conn, .. } => read!(conn),
            Connection::MySql { conn, .. } => read!(conn),
            Connection::Sqlite { conn } => read!(conn),
        }
    }

    /// The progress rows of migrations run statement by statement, by version.
    pub async fn progress(&mut self, table: &str) -> Result<BTreeMap<u32, Progress>, String> {
        let progress = Self::progress_name(table_name(table)?);
        let sql = format!(
            "SELECT version, statement_index, checksum, state FROM {progress} ORDER BY version, statement_index"
        );
        macro_rules! read {
            ($conn:expr) => {{
                let rows = sqlx::query(&sql)
                    .fetch_all(&mut *$conn)
                    .await
                    .map_err(|e| e.to_string())?;
                let mut out: BTreeMap<u32, Progress> = BTreeMap::new();
                for r in &rows {
                    let version = int(r, 0).map_err(|e| e.to_string())? as u32;
                    let index = int(r, 1).map_err(|e| e.to_string())? as usize;
                    let checksum: String = r.try_get(2).map_err(|e| e.to_string())?;
                    let state: String = r.try_get(3).map_err(|e| e.to_string())?;
                    let entry = out.entry(version).or_default();
                    if state == "done" {
                        entry.done.push((index, checksum.trim().to_string()));
                    } else {
                        entry.started = Some(index);
                    }
                }
                Ok(out)
            }};
        }
        match self {
            Connection::Postgres { conn, .. } => read!(conn),
            Connection::MySql { conn, .. } => read!(conn),
            Connection::Sqlite { conn } => read!(conn),
        }
    }

    pub async fn insert_row(&mut self, table: &str, row: &AppliedRow) -> Result<(), String> {
        let table = table_name(table)?;
        self.exec_text(
            &format!(
                "INSERT INTO {table} (version, description, checksum, applied_by, duration_ms, statements) VALUES (?, ?, ?, ?, ?, ?)"
            ),
            &[
                Arg::Int(i64::from(row.version)),
                Arg::Str(&row.description),
                Arg::Str(&row.checksum),
                Arg::Str(&row.applied_by),
                Arg::Int(row.duration_ms),
                Arg::Int(row.statements as i64),
            ],
        )
        .await
    }

    pub async fn set_checksum(
        &mut self,
        table: &str,
        version: u32,
        checksum: &str,
    ) -> Result<(), String> {
        let table = table_name(table)?;
        self.exec_text(
            &format!("UPDATE {table} SET checksum = ? WHERE version = ?"),
            &[Arg::Str(checksum), Arg::Int(i64::from(version))],
        )
        .await
    }

    /// When the newest version of `table` was applied, as RFC 3339 (UTC).
    pub async fn newest_applied_at(&mut self, table: &str) -> Result<Option<String>, String> {
        let table = table_name(table)?;
        let text: Option<String> = match self {
            Connection::Postgres { conn, .. } => sqlx::query_scalar(&format!(
                "SELECT to_char(max(applied_at) AT TIME ZONE 'UTC', 'YYYY-MM-DD\"T\"HH24:MI:SS.US\"Z\"') FROM {table}"
            ))
            .fetch_one(&mut *conn)
            .await
            .map_err(|e| e.to_string())?,
            Connection::MySql { conn, .. } => {
                sqlx::raw_sql("SET time_zone = '+00:00'")
                    .execute(&mut *conn)
                    .await
                    .map_err(|e| e.to_string())?;
                sqlx::query_scalar(&format!(
                    "SELECT DATE_FORMAT(MAX(applied_at), '%Y-%m-%dT%H:%i:%s.%fZ') FROM {table}"
                ))
                .fetch_one(&mut *conn)
                .await
                .map_err(|e| e.to_string())?
            }
            Connection::Sqlite { conn } => {
                sqlx::query_scalar(&format!("SELECT MAX(applied_at) FROM {table}"))
                    .fetch_one(&mut *conn)
                    .await
                    .map_err(|e| e.to_string())?
            }
        };
        Ok(text)
    }

    /// The single integer primary-key column of `table`, or why a keyset walk cannot use it.
    pub async fn integer_primary_key(&mut self, table: &str) -> Result<String, String> {
        let columns: Vec<(String, String)> = match self {
            Connection::Postgres { conn, .. } => sqlx::query_as(
                "SELECT a.attname::text, format_type(a.atttypid, a.atttypmod) FROM pg_index i \
                 JOIN pg_attribute a ON a.attrelid = i.indrelid AND a.attnum = ANY(i.indkey) \
                 WHERE i.indrelid = to_regclass($1) AND i.indisprimary",
            )
            .bind(table)
            .fetch_all(&mut *conn)
            .await
            .map_err(|e| e.to_string())?,
            Connection::MySql { conn, .. } => sqlx::query_as(
                "SELECT k.COLUMN_NAME, c.DATA_TYPE FROM information_schema.KEY_COLUMN_USAGE k \
                 JOIN information_schema.COLUMNS c ON c.TABLE_SCHEMA = k.TABLE_SCHEMA AND c.TABLE_NAME = k.TABLE_NAME AND c.COLUMN_NAME = k.COLUMN_NAME \
                 WHERE k.TABLE_SCHEMA = DATABASE() AND k.TABLE_NAME = ? AND k.CONSTRAINT_NAME = 'PRIMARY'",
            )
            .bind(table)
            .fetch_all(&mut *conn)
            .await
            .map_err(|e| e.to_string())?,
            Connection::Sqlite { conn } => {
                let rows = sqlx::query("SELECT name, type, pk FROM pragma_table_info(?) WHERE pk > 0")
                    .bind(table)
                    .fetch_all(&mut *conn)
                    .await
                    .map_err(|e| e.to_string())?;
                rows.iter()
                    .map(|r| Ok((r.try_get::<String, _>(0)?, r.try_get::<String, _>(1)?)))
                    .collect::<Result<_, sqlx::Error>>()
                    .map_err(|e| e.to_string())?
            }
        };
        match columns.as_slice() {
            [] => Err(format!(
                "table {table} has no primary key; a backfill walks the primary key in batches, so add one (or run the UPDATE yourself)"
            )),
            [(name, kind)] if kind.to_ascii_lowercase().contains("int") => Ok(name.clone()),
            [(name, kind)] => Err(format!(
                "table {table}'s primary key {name} is {kind}; backfills walk integer keys"
            )),
            _ => Err(format!(
                "table {table} has a primary key of {} columns; backfills walk a one-column key",
                columns.len()
            )),
        }
    }

    /// The key that ends the next batch of `size` rows after `last` (`None`: no rows left).
    pub async fn next_upper(
        &mut self,
        table: &str,
        pk: &str,
        last: i64,
        size: u32,
    ) -> Result<Option<i64>, String> {
        let pg = matches!(self, Connection::Postgres { .. });
        let shape = |sql: String| if pg { numbered(&sql) } else { sql };
        // Keys come back as 64-bit integers whatever width the column has.
        let as_i64 = |e: &str| match self.dialect() {
            Dialect::Postgres => format!("CAST({e} AS BIGINT)"),
            Dialect::MySql => format!("CAST({e} AS SIGNED)"),
            Dialect::Sqlite => e.to_string(),
        };
        let first = shape(format!(
            "SELECT {} FROM {table} WHERE {pk} > ? ORDER BY {pk} LIMIT 1 OFFSET {}",
            as_i64(pk),
            size.saturating_sub(1)
        ));
        let max = shape(format!(
            "SELECT {} FROM {table} WHERE {pk} > ?",
            as_i64(&format!("MAX({pk})"))
        ));
        macro_rules! q {
            ($conn:expr, $sql:expr) => {{
                sqlx::query_scalar::<_, Option<i64>>(&$sql)
                    .bind(last)
                    .fetch_optional(&mut *$conn)
                    .await
                    .map(|v| v.flatten())
                    .map_err(|e| e.to_string())
            }};
        }
        let upper = match self {
            Connection::Postgres { conn, .. } => q!(conn, first)?,
            Connection::MySql { conn, .. } => q!(conn, first)?,
            Connection::Sqlite { conn } => q!(conn, first)?,
        };
        if upper.is_some() {
            return Ok(upper);
        }
        match self {
            Connection::Postgres { conn, .. } => q!(conn, max),
            Connection::MySql { conn, .. } => q!(conn, max),
            Connection::Sqlite { conn } => q!(conn, max),
        }
    }

    /// Runs the backfill's UPDATE over the keys in `(last, upper]`; returns the rows changed.
    pub async fn update_range(
        &mut self,
        update: &str,
        pk: &str,
        last: i64,
        upper: i64,
    ) -> Result<u64, Failure> {
        let sql = format!("{update} AND {pk} > ? AND {pk} <= ?");
        match self.exec(&sql, &[Arg::Int(last), Arg::Int(upper)]).await {
            Ok(rows) => Ok(rows),
            Err(e) if is_pg_lock_timeout(&e) || is_mysql_lock_timeout(&e) || is_sqlite_busy(&e) => {
                Err(Failure::LockTimeout(e.to_string()))
            }
            Err(e) => Err(Failure::Statement {
                index: 0,
                message: e.to_string(),
            }),
        }
    }

    fn backfill_table(table: &str) -> String {
        format!("{table}_backfill")
    }

    /// The backfill progress of `version`: the last key done and the rows updated.
    pub async fn backfill_state(
        &mut self,
        table: &str,
        version: u32,
    ) -> Result<Option<(i64, i64)>, String> {
        let state = Self::backfill_table(table_name(table)?);
        self.raw(&format!(
            "CREATE TABLE IF NOT EXISTS {state} (version BIGINT PRIMARY KEY, last_key BIGINT NOT NULL, rows_updated BIGINT NOT NULL)"
        ))
        .await
        .map_err(|e| e.to_string())?;
        let sql = format!("SELECT last_key, rows_updated FROM {state} WHERE version = ?");
        let sql = if matches!(self, Connection::Postgres { .. }) {
            numbered(&sql)
        } else {
            sql
        };
        macro_rules! q {
            ($conn:expr) => {{
                sqlx::query_as::<_, (i64, i64)>(&sql)
                    .bind(i64::from(version))
                    .fetch_optional(&mut *$conn)
                    .await
                    .map_err(|e| e.to_string())
            }};
        }
        match self {
            Connection::Postgres { conn, .. } => q!(conn),
            Connection::MySql { conn, .. } => q!(conn),
            Connection::Sqlite { conn } => q!(conn),
        }
    }

    /// Stores how far the backfill of `version` got (after each committed batch).
    pub async fn save_backfill(
        &mut self,
        table: &str,
        version: u32,
        last_key: i64,
        rows: i64,
    ) -> Result<(), String> {
        let state = Self::backfill_table(table_name(table)?);
        self.exec(
            &format!("DELETE FROM {state} WHERE version = ?"),
            &[Arg::Int(i64::from(version))],
        )
        .await
        .map_err(|e| e.to_string())?;
        self.exec_text(
            &format!("INSERT INTO {state} (version, last_key, rows_updated) VALUES (?, ?, ?)"),
            &[
                Arg::Int(i64::from(version)),
                Arg::Int(last_key),
                Arg::Int(rows),
            ],
        )
        .await
    }

    /// A throttle probe's value: the first column of the first row, as a number.
    pub async fn probe(&mut self, query: &str) -> Result<f64, String> {
        macro_rules! q {
            ($conn:expr) => {{
                let row = sqlx::query(query)
                    .fetch_one(&mut *$conn)
                    .await
                    .map_err(|e| e.to_string())?;
                row.try_get::<f64, _>(0)
                    .or_else(|_| row.try_get::<i64, _>(0).map(|v| v as f64))
                    .or_else(|_| row.try_get::<i32, _>(0).map(f64::from))
                    .or_else(|_| {
                        row.try_get::<Option<i64>, _>(0)
                            .map(|v| v.unwrap_or(0) as f64)
                    })
                    .map_err(|e| format!("the probe's first column is not a number: {e}"))
            }};
        }
        match self {
            Connection::Postgres { conn, .. } => q!(conn),
            Connection::MySql { conn, .. } => q!(conn),
            Connection::Sqlite { conn } => q!(conn),
        }
    }

    /// Whether a DDL statement's effect is in the catalog (MariaDB/MySQL, where DDL commits
    /// on its own): `None` when the statement is not one whose effect the catalog shows
    /// plainly (one table, column or index created or dropped).
    pub async fn effect_visible(&mut self, text: &str) -> Result<Option<bool>, String> {
        if self.dialect() != Dialect::MySql {
            return Ok(None);
        }
        let Some(effect) = ddl_effect(text) else {
            return Ok(None);
        };
        let (sql, args): (&str, Vec<&str>) = match &effect {
            Effect::Table(t, _) => (
                "SELECT COUNT(*) FROM information_schema.TABLES WHERE TABLE_SCHEMA = DATABASE() AND TABLE_NAME = ?",
                vec![t.as_str()],
            ),
            Effect::Column(t, c, _) => (
                "SELECT COUNT(*) FROM information_schema.COLUMNS WHERE TABLE_SCHEMA = DATABASE() AND TABLE_NAME = ? AND COLUMN_NAME = ?",
                vec![t.as_str(), c.as_str()],
            ),
            Effect::Index(t, i) => (
                "SELECT COUNT(*) FROM information_schema.STATISTICS WHERE TABLE_SCHEMA = DATABASE() AND TABLE_NAME = ? AND INDEX_NAME = ?",
                vec![t.as_str(), i.as_str()],
            ),
        };
        let Connection::MySql { conn, .. } = self else {
            return Ok(None);
        };
        let mut q = sqlx::query_scalar::<_, i64>(sql);
        for a in args {
            q = q.bind(a);
        }
        let count = q.fetch_one(&mut *conn).await.map_err(|e| e.to_string())?;
        let present = count > 0;
        Ok(Some(match effect {
            Effect::Table(_, created) | Effect::Column(_, _, created) => present == created,
            Effect::Index(..) => present,
        }))
    }

    /// Indexes a failed `CONCURRENTLY` left behind (PostgreSQL).
    pub async fn invalid_indexes(&mut self) -> Result<Vec<String>, String> {
        match self {
            Connection::Postgres { conn, .. } => sqlx::query_scalar(
                "SELECT indexrelid::regclass::text FROM pg_index WHERE NOT indisvalid ORDER BY 1",
            )
            .fetch_all(&mut *conn)
            .await
            .map_err(|e| e.to_string()),
            _ => Ok(Vec::new()),
        }
    }

    /// Runs a whole migration in one transaction with its version row (PostgreSQL,
    /// SQLite); rolled back on any failure.
    pub async fn run_transaction(
        &mut self,
        m: &Migration,
        table: &str,
        options: &Options,
        started: std::time::Instant,
        progress: &mut (dyn FnMut(Event) + Send),
    ) -> Result<(), Failure> {
        let table = table_name(table).map_err(Failure::Database)?;
        let dialect = self.dialect();
        let begin = match dialect {
            Dialect::Sqlite => "BEGIN IMMEDIATE".to_string(),
            _ => "BEGIN".to_string(),
        };
        if let Err(e) = self.raw(&begin).await {
            return Err(if is_sqlite_busy(&e) {
                Failure::LockTimeout(e.to_string())
            } else {
                Failure::Database(e.to_string())
            });
        }
        let result = async {
            if dialect == Dialect::Postgres {
                let ms = options.lock_timeout.as_millis();
                self.raw(&format!("SET LOCAL lock_timeout = '{ms}ms'"))
                    .await
                    .map_err(|e| Failure::Database(e.to_string()))?;
                self.raw("SET LOCAL statement_timeout = 0")
                    .await
                    .map_err(|e| Failure::Database(e.to_string()))?;
            }
            for (index, s) in m.statements.iter().enumerate() {
                progress(Event::Statement {
                    version: m.version,
                    index,
                    line: s.line,
                });
                if let Err(e) = self.raw(&s.text).await {
                    return Err(if is_pg_lock_timeout(&e) || is_sqlite_busy(&e) {
                        Failure::LockTimeout(e.to_string())
                    } else {
                        Failure::Statement {
                            index,
                            message: e.to_string(),
                        }
                    });
                }
            }
            let duration = started.elapsed().as_millis() as i64;
            let row = AppliedRow::done(m, &options.applied_by, duration, m.statements.len());
            self.insert_row(table, &row)
                .await
                .map_err(Failure::Database)
        }
        .await;
        match result {
            Ok(()) => self
                .raw("COMMIT")
                .await
                .map_err(|e| Failure::Database(e.to_string())),
            Err(e) => {
                let _ = self.raw("ROLLBACK").await;
                Err(e)
            }
        }
    }

    /// Marks statement `index` started, before it is sent.
    pub async fn mark_started(
        &mut self,
        table: &str,
        version: u32,
        index: usize,
        checksum: &str,
    ) -> Result<(), String> {
        let progress = Self::progress_name(table_name(table)?);
        let now = self.now_sql();
        self.exec(
            &format!("DELETE FROM {progress} WHERE version = ? AND statement_index = ?"),
            &[Arg::Int(i64::from(version)), Arg::Int(index as i64)],
        )
        .await
        .map_err(|e| e.to_string())?;
        self.exec_text(
            &format!(
                "INSERT INTO {progress} (version, statement_index, checksum, state, started_at) VALUES (?, ?, ?, 'started', {now})"
            ),
            &[Arg::Int(i64::from(version)), Arg::Int(index as i64), Arg::Str(checksum)],
        )
        .await
    }

    /// Forgets that statement `index` started (it failed with an answer: not committed).
    pub async fn clear_started(
        &mut self,
        table: &str,
        version: u32,
        index: usize,
    ) -> Result<(), String> {
        let progress = Self::progress_name(table_name(table)?);
        self.exec_text(
            &format!("DELETE FROM {progress} WHERE version = ? AND statement_index = ? AND state = 'started'"),
            &[Arg::Int(i64::from(version)), Arg::Int(index as i64)],
        )
        .await
    }

    /// Marks statement `index` done, once it returned.
    pub async fn mark_done(
        &mut self,
        table: &str,
        version: u32,
        index: usize,
    ) -> Result<(), String> {
        let progress = Self::progress_name(table_name(table)?);
        let now = self.now_sql();
        self.exec_text(
            &format!(
                "UPDATE {progress} SET state = 'done', finished_at = {now} WHERE version = ? AND statement_index = ?"
            ),
            &[Arg::Int(i64::from(version)), Arg::Int(index as i64)],
        )
        .await
    }

    /// Runs one statement outside a migration transaction: with a lock timeout, or (for
    /// `CONCURRENTLY`) without one, dropping the invalid index a failure leaves.
    pub async fn run_alone(
        &mut self,
        s: &Statement,
        own_transaction: bool,
        options: &Options,
    ) -> Result<(), Failure> {
        let db = |e: sqlx::Error| Failure::Database(e.to_string());
        match self.dialect() {
            Dialect::Postgres => {
                let timeout = if own_transaction {
                    "0".to_string()
                } else {
                    format!("'{}ms'", options.lock_timeout.as_millis())
                };
                self.raw(&format!("SET lock_timeout = {timeout}"))
                    .await
                    .map_err(db)?;
                self.raw("SET statement_timeout = 0").await.map_err(db)?;
            }
            Dialect::MySql => {
                let secs = options.lock_timeout.as_secs().max(1);
                self.raw(&format!(
                    "SET SESSION lock_wait_timeout = {secs}, SESSION innodb_lock_wait_timeout = {secs}"
                ))
                .await
                .map_err(db)?;
            }
            Dialect::Sqlite => {}
        }
        match self.raw(&s.text).await {
            Ok(()) => Ok(()),
            Err(e) if is_pg_lock_timeout(&e) || is_mysql_lock_timeout(&e) || is_sqlite_busy(&e) => {
                Err(Failure::LockTimeout(e.to_string()))
            }
            Err(e) => {
                if self.dialect() == Dialect::Postgres {
                    if let Some(index) = concurrent_index_name(&s.text) {
                        self.drop_if_invalid(&index).await;
                    }
                }
                Err(Failure::Statement {
                    index: 0,
                    message: e.to_string(),
                })
            }
        }
    }

    async fn drop_if_invalid(&mut self, index: &str) {
        let Connection::Postgres { conn, .. } = self else {
            return;
        };
        let invalid: Option<bool> = sqlx::query_scalar(
            "SELECT NOT indisvalid FROM pg_index WHERE indexrelid = to_regclass($1)",
        )
        .bind(index)
        .fetch_optional(&mut *conn)
        .await
        .ok()
        .flatten();
        if invalid == Some(true) {
            let quoted = format!("\"{}\"", index.replace('"', "\"\""));
            let _ = sqlx::raw_sql(&format!("DROP INDEX CONCURRENTLY IF EXISTS {quoted}"))
                .execute(&mut *conn)
                .await;
        }
    }

    /// Closes the connections.
    pub async fn close(self) {
        match self {
            Connection::Postgres { conn, lock } => {
                let _ = conn.close().await;
                let _ = lock.close().await;
            }
            Connection::MySql { conn, lock } => {
                let _ = conn.close().await;
                let _ = lock.close().await;
            }
            Connection::Sqlite { conn } => {
                let _ = conn.close().await;
            }
        }
    }
}

/// What a DDL statement leaves in the catalog: a table or column there (`true`) or gone
/// (`false`), or an index there.
#[derive(Debug, PartialEq, Eq)]
enum Effect {
    Table(String, bool),
    Column(String, String, bool),
    Index(String, String),
}

/// Reads the effect of the plain DDL shapes (one operation, unqualified names); `None` for
/// anything else, which the runner then asks a person about.
fn ddl_effect(text: &str) -> Option<Effect> {
    // `, ALGORITHM=…, LOCK=…` say how, not what.
    let text: String = text
        .split(',')
        .filter(|part| {
            let part = part.trim_start().to_ascii_uppercase();
            !(part.starts_with("ALGORITHM") || part.starts_with("LOCK"))
        })
        .collect::<Vec<_>>()
        .join(",");
    if text.contains(',') && !text.to_ascii_uppercase().starts_with("CREATE TABLE") {
        return None;
    }
    let words: Vec<String> = text
        .split(|c: char| c.is_whitespace() || c == '(' || c == ';')
        .filter(|w| !w.is_empty())
        .map(|w| w.trim_matches('`').to_string())
        .collect();
    let upper: Vec<String> = words.iter().map(|w| w.to_ascii_uppercase()).collect();
    let up: Vec<&str> = upper.iter().map(String::as_str).collect();
    let name = |i: usize| -> Option<String> {
        let n = words.get(i)?;
        (!n.contains('.') && !n.is_empty()).then(|| n.clone())
    };
    match up.as_slice() {
        ["CREATE", "TABLE", "IF", "NOT", "EXISTS", ..] => Some(Effect::Table(name(5)?, true)),
        ["CREATE", "TABLE", ..] => Some(Effect::Table(name(2)?, true)),
        ["DROP", "TABLE", "IF", "EXISTS", _] => Some(Effect::Table(name(4)?, false)),
        ["DROP", "TABLE", _] => Some(Effect::Table(name(2)?, false)),
        ["CREATE", "INDEX", _, "ON", ..] => Some(Effect::Index(name(4)?, name(2)?)),
        ["CREATE", "UNIQUE", "INDEX", _, "ON", ..] => Some(Effect::Index(name(5)?, name(3)?)),
        ["ALTER", "TABLE", _, "ADD", "INDEX" | "KEY", ..] => {
            Some(Effect::Index(name(2)?, name(5)?))
        }
        ["ALTER", "TABLE", _, "ADD", "COLUMN", ..] => {
            Some(Effect::Column(name(2)?, name(5)?, true))
        }
        ["ALTER", "TABLE", _, "DROP", "COLUMN", _] => {
            Some(Effect::Column(name(2)?, name(5)?, false))
        }
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ddl_effects() {
        let t = |s: &str, b| Some(Effect::Table(s.into(), b));
        for (sql, expected) in [
            (
                "CREATE TABLE a (id BIGINT PRIMARY KEY, b INT)",
                t("a", true),
            ),
            ("create table if not exists `a`(id int)", t("a", true)),
            ("DROP TABLE a", t("a", false)),
            ("DROP TABLE IF EXISTS a", t("a", false)),
            (
                "ALTER TABLE users ADD COLUMN email VARCHAR(200)",
                Some(Effect::Column("users".into(), "email".into(), true)),
            ),
            (
                "ALTER TABLE users DROP COLUMN email",
                Some(Effect::Column("users".into(), "email".into(), false)),
            ),
            (
                "CREATE INDEX ix ON users (email)",
                Some(Effect::Index("users".into(), "ix".into())),
            ),
            (
                "ALTER TABLE users ADD INDEX ix (email), ALGORITHM=INPLACE, LOCK=NONE",
                Some(Effect::Index("users".into(), "ix".into())),
            ),
            ("ALTER TABLE users ADD COLUMN a INT, ADD COLUMN b INT", None),
            ("CREATE TABLE other.a (id INT)", None),
            ("INSERT INTO a VALUES (1)", None),
        ] {
            assert_eq!(ddl_effect(sql), expected, "{sql}");
        }
    }

    #[test]
    fn concurrent_index_names() {
        for (sql, name) in [
            (
                "CREATE INDEX CONCURRENTLY users_email ON users (email)",
                Some("users_email"),
            ),
            (
                "create unique index concurrently if not exists \"ix\" on t (a)",
                Some("ix"),
            ),
            ("CREATE INDEX CONCURRENTLY ON t (a)", None),
            ("CREATE INDEX ix ON t (a)", None),
        ] {
            assert_eq!(concurrent_index_name(sql).as_deref(), name, "{sql}");
        }
    }

    #[test]
    fn placeholders_and_table_names() {
        assert_eq!(numbered("a = ? AND b = ?"), "a = $1 AND b = $2");
        assert!(table_name("gantry_schema_expand").is_ok());
        for bad in ["", "1x", "a;drop", "a b", &"x".repeat(64)] {
            assert!(table_name(bad).is_err(), "{bad}");
        }
    }
}
