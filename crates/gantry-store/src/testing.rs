//! Test support: each test gets its own PostgreSQL schema in the machine's database, so
//! tests run in parallel without seeing each other's rows.
//!
//! The database is `GANTRY_TEST_POSTGRES_URL` (default
//! `postgres://postgres@127.0.0.1:5432/test`). Tests that need it fail, naming the URL,
//! when it cannot be reached: `scripts/test` starts or installs PostgreSQL first.

use std::sync::Arc;

use sqlx::Connection;

use crate::{PostgresStore, SqliteStore, Store, StoreOptions};

/// Runs `body` against a fresh SQLite store, then a fresh PostgreSQL schema: the same
/// answers are expected from both.
pub async fn each_backend<F, Fut>(label: &str, body: F)
where
    F: Fn(Arc<dyn Store>) -> Fut,
    Fut: std::future::Future<Output = ()>,
{
    let dir = tempfile::tempdir().expect("a temporary directory");
    let sqlite: Arc<dyn Store> = Arc::new(
        SqliteStore::open(&dir.path().join("g.db"), StoreOptions::default())
            .await
            .expect("a fresh SQLite store opens"),
    );
    body(sqlite.clone()).await;
    sqlite.close().await;
    let url = fresh_postgres_url(label).await;
    let pg: Arc<dyn Store> = Arc::new(
        PostgresStore::open(&url, StoreOptions::default())
            .await
            .expect("a fresh PostgreSQL schema opens"),
    );
    body(pg.clone()).await;
    pg.close().await;
}

/// The database tests use.
pub fn postgres_base_url() -> String {
    std::env::var("GANTRY_TEST_POSTGRES_URL")
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/test".to_string())
}

/// A URL for a new, empty schema (named after `label`) in the test database; every
/// connection made with it uses that schema.
pub async fn fresh_postgres_url(label: &str) -> String {
    let base = postgres_base_url();
    let schema = format!(
        "t_{}_{}",
        label
            .chars()
            .filter(|c| c.is_ascii_alphanumeric() || *c == '_')
            .take(30)
            .collect::<String>()
            .to_ascii_lowercase(),
        ulid::Ulid::new().to_string().to_ascii_lowercase()
    );
    let mut conn = sqlx::PgConnection::connect(&base).await.unwrap_or_else(|e| {
        panic!(
            "cannot connect to the test PostgreSQL at {} ({e}); run scripts/test, which starts it, or set GANTRY_TEST_POSTGRES_URL",
            crate::redact_url(&base)
        )
    });
    sqlx::raw_sql(&format!("CREATE SCHEMA {schema}"))
        .execute(&mut conn)
        .await
        .unwrap_or_else(|e| panic!("cannot create schema {schema}: {e}"));
    let _ = conn.close().await;
    let separator = if base.contains('?') { '&' } else { '?' };
    format!("{base}{separator}options=-c%20search_path%3D{schema}")
}

/// The MariaDB/MySQL server tests use (`GANTRY_TEST_MYSQL_URL`, default
/// `mysql://root@127.0.0.1:3306/test`).
pub fn mysql_base_url() -> String {
    std::env::var("GANTRY_TEST_MYSQL_URL")
        .unwrap_or_else(|_| "mysql://root@127.0.0.1:3306/test".to_string())
}

/// A URL for a new, empty MariaDB/MySQL database named after `label`.
pub async fn fresh_mysql_url(label: &str) -> String {
    let base = mysql_base_url();
    let name = format!(
        "t_{}_{}",
        label
            .chars()
            .filter(|c| c.is_ascii_alphanumeric() || *c == '_')
            .take(20)
            .collect::<String>()
            .to_ascii_lowercase(),
        ulid::Ulid::new().to_string().to_ascii_lowercase()
    );
    let mut conn = sqlx::MySqlConnection::connect(&base).await.unwrap_or_else(|e| {
        panic!(
            "cannot connect to the test MariaDB at {} ({e}); run scripts/test, which starts it, or set GANTRY_TEST_MYSQL_URL",
            crate::redact_url(&base)
        )
    });
    sqlx::raw_sql(&format!("CREATE DATABASE {name}"))
        .execute(&mut conn)
        .await
        .unwrap_or_else(|e| panic!("cannot create database {name}: {e}"));
    let _ = conn.close().await;
    match base.rfind('/') {
        Some(slash) if slash > base.find("://").map_or(0, |i| i + 2) => {
            let (head, tail) = base.split_at(slash);
            let query = tail.find('?').map_or("", |q| &tail[q..]);
            format!("{head}/{name}{query}")
        }
        _ => format!("{base}/{name}"),
    }
}
