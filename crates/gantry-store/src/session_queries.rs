//! Dashboard sessions' SQL, written once and instantiated per database like
//! `notify_queries.rs`. Each operation is one statement; revoking a token deletes its
//! sessions in the revocation's own transaction (`queries.rs`).

macro_rules! session_queries {
    ($db:ty) => {
        use chrono::{DateTime, Utc};
        use sqlx::{Pool, Row};

        use crate::{from_micros, micros, Result, SessionRecord, StoreError};

        type Db = $db;
        type DbRow = <$db as sqlx::Database>::Row;

        const SESSION_COLUMNS: &str =
            "id_digest, token_name, token_digest, csrf_secret, created_at, last_seen_at, idle_expires_at, expires_at, user_agent";

        fn session(row: &DbRow) -> Result<SessionRecord> {
            Ok(SessionRecord {
                id_digest: row.try_get("id_digest")?,
                token_name: row.try_get("token_name")?,
                token_digest: row.try_get("token_digest")?,
                csrf_secret: row.try_get("csrf_secret")?,
                created_at: from_micros(row.try_get("created_at")?)?,
                last_seen_at: from_micros(row.try_get("last_seen_at")?)?,
                idle_expires_at: from_micros(row.try_get("idle_expires_at")?)?,
                expires_at: from_micros(row.try_get("expires_at")?)?,
                user_agent: row.try_get("user_agent")?,
            })
        }

        /// Stores a new session; `Conflict` (nothing written) when its id digest is taken.
        pub(crate) async fn create_session(pool: &Pool<Db>, s: &SessionRecord) -> Result<()> {
            let done = sqlx::query(&format!(
                "INSERT INTO dashboard_sessions ({SESSION_COLUMNS}) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)"
            ))
            .bind(&s.id_digest)
            .bind(&s.token_name)
            .bind(&s.token_digest)
            .bind(&s.csrf_secret)
            .bind(micros(s.created_at))
            .bind(micros(s.last_seen_at))
            .bind(micros(s.idle_expires_at))
            .bind(micros(s.expires_at))
            .bind(&s.user_agent)
            .execute(pool)
            .await;
            match done {
                Ok(_) => Ok(()),
                Err(sqlx::Error::Database(d)) if d.is_unique_violation() => {
                    Err(StoreError::Conflict("a session with this id already exists".to_string()))
                }
                Err(e) => Err(e.into()),
            }
        }

        pub(crate) async fn get_session(pool: &Pool<Db>, id_digest: &str) -> Result<Option<SessionRecord>> {
            let row = sqlx::query(&format!("SELECT {SESSION_COLUMNS} FROM dashboard_sessions WHERE id_digest = $1"))
                .bind(id_digest)
                .fetch_optional(pool)
                .await?;
            row.as_ref().map(session).transpose()
        }

        pub(crate) async fn touch_session(
            pool: &Pool<Db>,
            id_digest: &str,
            last_seen_at: DateTime<Utc>,
            idle_expires_at: DateTime<Utc>,
        ) -> Result<bool> {
            let done = sqlx::query(
                "UPDATE dashboard_sessions SET last_seen_at = $1, idle_expires_at = $2 WHERE id_digest = $3",
            )
            .bind(micros(last_seen_at))
            .bind(micros(idle_expires_at))
            .bind(id_digest)
            .execute(pool)
            .await?;
            Ok(done.rows_affected() == 1)
        }

        pub(crate) async fn delete_session(pool: &Pool<Db>, id_digest: &str) -> Result<bool> {
            let done = sqlx::query("DELETE FROM dashboard_sessions WHERE id_digest = $1")
                .bind(id_digest)
                .execute(pool)
                .await?;
            Ok(done.rows_affected() == 1)
        }

        pub(crate) async fn delete_token_sessions(pool: &Pool<Db>, token_name: &str) -> Result<u64> {
            Ok(sqlx::query("DELETE FROM dashboard_sessions WHERE token_name = $1")
                .bind(token_name)
                .execute(pool)
                .await?
                .rows_affected())
        }

        /// Every session, newest first (then by id digest, so the order is total).
        pub(crate) async fn list_sessions(pool: &Pool<Db>) -> Result<Vec<SessionRecord>> {
            let rows = sqlx::query(&format!(
                "SELECT {SESSION_COLUMNS} FROM dashboard_sessions ORDER BY created_at DESC, id_digest DESC"
            ))
            .fetch_all(pool)
            .await?;
            rows.iter().map(session).collect()
        }

        /// Deletes sessions idle past their idle expiry or past their absolute expiry at
        /// `now` (an expiry equal to `now` has passed).
        pub(crate) async fn prune_sessions(pool: &Pool<Db>, now: DateTime<Utc>) -> Result<u64> {
            Ok(sqlx::query("DELETE FROM dashboard_sessions WHERE idle_expires_at <= $1 OR expires_at <= $1")
                .bind(micros(now))
                .execute(pool)
                .await?
                .rows_affected())
        }
    };
}

pub(crate) use session_queries;
