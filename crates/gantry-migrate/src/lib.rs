//! The pure core of Gantry's zero-downtime expand/contract migrations:
//! - [`layout`]: `migrations/<database>/{expand,contract}/NNNN_name.sql` files and their
//!   companion `NNNN_name.backfill.sql` declarations (the only module that reads files);
//! - [`checksum`]: SHA-256 of a file and of each statement, after CRLF→LF and BOM removal;
//! - [`split`]: Gantry's own statement splitter (quotes, dollar quotes, comments, `DELIMITER`);
//! - [`classify`]: statements in, findings out (expand-safe, contract-only, lock risk,
//!   unknown), rules ported from squawk and extended to MySQL/MariaDB and SQLite;
//! - [`backfill`]: the one `UPDATE … SET … WHERE pred` a backfill file may hold;
//! - [`plan`]: the SQL script a DBA runs as it is with psql, mysql or sqlite3;
//! - [`lint`]: classification, phase check and backfill checks for one migration, as a table
//!   or JSON;
//! - [`runner`]: applies a phase to a real database (PostgreSQL, MariaDB/MySQL, SQLite), one
//!   runner per database, statement by statement with lock timeouts and retries.
//!
//! Invariant: every module but [`runner`] is pure: no I/O except [`layout::load_database`]
//! and [`layout::list_databases`], which read one directory; no database, no async, no
//! clock. The runner is the only part that connects, and it never shows the URL it was
//! given (errors are redacted).

pub mod backfill;
pub mod checksum;
pub mod classify;
pub mod layout;
pub mod lint;
pub mod plan;
pub mod runner;
pub mod split;

pub use backfill::{parse_backfill, Backfill, BackfillError};
pub use classify::{check_phase, classify, needs_own_transaction, Class, Finding, Severity};
pub use layout::{list_databases, load_database, Database, LayoutError, Migration, Phase};
pub use lint::{format_json, format_table, has_errors, lint, lint_text};
pub use plan::plan_script;
pub use split::{split, Dialect, SplitError, Statement};
