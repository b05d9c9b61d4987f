//! Backfill declarations: a companion file `NNNN_name.backfill.sql` next to migration
//! NNNN holds exactly one `UPDATE table SET … WHERE pred`. The runner walks the table's
//! primary key in keyset batches, running the SET on each range of rows still matching
//! `pred`, one commit per batch, then makes a final pass over rows still matching it; so
//! the file must be that one statement and nothing else (no FROM, joins, alias, RETURNING,
//! ORDER BY or LIMIT), with a WHERE saying which rows still need filling.
//!
//! [`check_backfill`] adds what the runner cannot fix: rows the running release writes
//! after their batch need a default or a sync trigger, so it says when the migration gives
//! the column neither.

use serde::Serialize;
use sqlparser::ast::{self, AssignmentTarget, TableFactor};
use sqlparser::dialect::{MySqlDialect, PostgreSqlDialect, SQLiteDialect};
use sqlparser::parser::Parser;

use crate::checksum::file_checksum;
use crate::classify::{self, Class, Finding, Severity};
use crate::split::{self, split, Dialect, Kind, SplitError, Statement};

/// A parsed backfill declaration.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Backfill {
    /// The file it came from (set by [`crate::layout`]; empty when parsed from text alone).
    pub path: String,
    /// The table, as written (`schema.table` included).
    pub table: String,
    /// The text between `SET` and `WHERE`, as written.
    pub set_clause_text: String,
    /// The text after `WHERE`, as written.
    pub predicate_text: String,
    /// The columns the SET assigns, as written (without quotes).
    pub columns_set: Vec<String>,
    /// The whole statement, as written.
    pub text: String,
    /// 1-based position of the statement in its file.
    pub line: usize,
    pub column: usize,
    /// SHA-256 of the file (see [`crate::checksum`]).
    pub checksum: String,
}

/// Why a backfill file is refused. Positions are 1-based, in the file.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum BackfillError {
    #[error(transparent)]
    Split(#[from] SplitError),
    #[error(
        "the file holds no statement: write one `UPDATE table SET column = … WHERE pred`, \
         where pred matches the rows still to fill"
    )]
    Empty,
    #[error(
        "line {line}, column {column}: a second statement; a backfill file holds exactly one \
         UPDATE (put other statements in the migration itself)"
    )]
    TooMany { line: usize, column: usize },
    #[error("line {line}, column {column}: {message}; write one `UPDATE table SET … WHERE pred`")]
    Parse {
        line: usize,
        column: usize,
        message: String,
    },
    #[error(
        "line {line}, column {column}: found {found}; a backfill file holds one \
         `UPDATE table SET … WHERE pred`"
    )]
    NotUpdate {
        line: usize,
        column: usize,
        found: String,
    },
    #[error(
        "line {line}, column {column}: the UPDATE has no WHERE; add one matching the rows still \
         to fill (for example `WHERE email IS NULL`): the runner batches on it and makes a \
         final pass over rows still matching it"
    )]
    NoWhere { line: usize, column: usize },
    #[error(
        "line {line}, column {column}: a backfill UPDATE cannot have {what}; the runner adds \
         its own primary-key ranges, so write `UPDATE table SET … WHERE pred` on the one table"
    )]
    Unsupported {
        line: usize,
        column: usize,
        what: &'static str,
    },
}

/// Parses a backfill file's text.
pub fn parse_backfill(dialect: Dialect, text: &str) -> Result<Backfill, BackfillError> {
    let normalized = crate::checksum::normalize(text);
    let statements = split(dialect, &normalized)?;
    let Some(stmt) = statements.first() else {
        return Err(BackfillError::Empty);
    };
    if let Some(second) = statements.get(1) {
        return Err(BackfillError::TooMany {
            line: second.line,
            column: second.column,
        });
    }
    let (line, column) = (stmt.line, stmt.column);
    let parsed = match dialect {
        Dialect::Postgres => Parser::parse_sql(&PostgreSqlDialect {}, &stmt.text),
        Dialect::MySql => Parser::parse_sql(&MySqlDialect {}, &stmt.text),
        Dialect::Sqlite => Parser::parse_sql(&SQLiteDialect {}, &stmt.text),
    };
    let parsed = match parsed {
        Ok(parsed) => parsed,
        Err(error) => {
            let (message, line, column) = classify::locate_parser_error(&error.to_string(), stmt);
            return Err(BackfillError::Parse {
                line,
                column,
                message,
            });
        }
    };
    let update = match parsed.as_slice() {
        [ast::Statement::Update(update)] => update,
        [other] => {
            let found = other.to_string();
            let found: Vec<&str> = found.split_whitespace().take(2).collect();
            return Err(BackfillError::NotUpdate {
                line,
                column,
                found: format!("`{} …`", found.join(" ")),
            });
        }
        _ => return Err(BackfillError::TooMany { line, column }),
    };
    let unsupported = |what| BackfillError::Unsupported { line, column, what };
    if update.from.is_some() {
        return Err(unsupported("a FROM clause"));
    }
    if !update.table.joins.is_empty() {
        return Err(unsupported("a join"));
    }
    if update.returning.is_some() {
        return Err(unsupported("RETURNING"));
    }
    if !update.order_by.is_empty() {
        return Err(unsupported("ORDER BY"));
    }
    if update.limit.is_some() {
        return Err(unsupported("LIMIT"));
    }
    let table = match &update.table.relation {
        TableFactor::Table {
            name, alias: None, ..
        } => name.to_string(),
        TableFactor::Table { alias: Some(_), .. } => return Err(unsupported("a table alias")),
        _ => return Err(unsupported("anything but a table name")),
    };
    if update.selection.is_none() {
        return Err(BackfillError::NoWhere { line, column });
    }
    let mut columns_set = Vec::new();
    for assignment in &update.assignments {
        let names = match &assignment.target {
            AssignmentTarget::ColumnName(name) => vec![name],
            AssignmentTarget::Tuple(names) => names.iter().collect(),
        };
        for name in names {
            columns_set.push(classify::last_name(name));
        }
    }
    let (set_clause_text, predicate_text) =
        set_and_where(dialect, &stmt.text).ok_or(BackfillError::NoWhere { line, column })?;
    Ok(Backfill {
        path: String::new(),
        table,
        set_clause_text,
        predicate_text,
        columns_set,
        text: stmt.text.clone(),
        line,
        column,
        checksum: file_checksum(text),
    })
}

/// The text of the SET list and of the WHERE predicate, found as the first `SET` and the
/// following `WHERE` outside parentheses, strings and comments.
fn set_and_where(dialect: Dialect, text: &str) -> Option<(String, String)> {
    let tokens = split::tokens(dialect, text)?;
    let mut depth = 0i32;
    let mut set_end = None;
    let mut where_at = None;
    for token in &tokens {
        let slice = &text[token.start..token.end];
        match token.kind {
            Kind::Punct if slice == "(" => depth += 1,
            Kind::Punct if slice == ")" => depth -= 1,
            Kind::Word if depth == 0 => {
                if set_end.is_none() && slice.eq_ignore_ascii_case("SET") {
                    set_end = Some(token.end);
                } else if set_end.is_some() && slice.eq_ignore_ascii_case("WHERE") {
                    where_at = Some((token.start, token.end));
                    break;
                }
            }
            _ => {}
        }
    }
    let set_end = set_end?;
    let (where_start, where_end) = where_at?;
    Some((
        text[set_end..where_start].trim().to_string(),
        text[where_end..].trim().to_string(),
    ))
}

/// Findings about a migration's backfill: for every column it sets, the migration should
/// give that column a default or create a trigger on the table, or rows the running
/// release writes after their batch keep the old value (NULL for a new column).
pub fn check_backfill(
    dialect: Dialect,
    statements: &[Statement],
    backfill: &Backfill,
) -> Vec<Finding> {
    let facts = classify::schema_facts(dialect, statements);
    let table = classify::last_part(&backfill.table);
    if facts.new_tables.contains(&table) || facts.triggers.contains(&table) {
        return Vec::new();
    }
    backfill
        .columns_set
        .iter()
        .filter(|column| {
            !facts
                .defaults
                .contains(&(table.clone(), column.to_lowercase()))
        })
        .map(|column| Finding {
            file: (!backfill.path.is_empty()).then(|| backfill.path.clone()),
            statement_index: 0,
            line: backfill.line,
            column: backfill.column,
            class: Class::Advice,
            severity: Severity::Warning,
            rule: "backfill-needs-default-or-trigger",
            message: format!(
                "the backfill sets {}.{column}, but this migration gives it no default and \
                 creates no trigger on {}: rows the running release writes after their batch \
                 keep the old value",
                backfill.table, backfill.table
            ),
            advice: Some(format!(
                "in the migration, add `ALTER TABLE {} ALTER COLUMN {column} SET DEFAULT …` or \
                 a trigger that sets {column} on INSERT and UPDATE (ignore this if an earlier \
                 migration did)",
                backfill.table
            )),
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use Dialect::{MySql, Postgres, Sqlite};

    /// Parses `sql` and compares (table, set, predicate, columns).
    fn check(dialect: Dialect, sql: &str, expected: (&str, &str, &str, &[&str])) {
        let got = match parse_backfill(dialect, sql) {
            Ok(b) => b,
            Err(e) => panic!("{dialect} {sql:?}: {e}"),
        };
        assert_eq!(
            (
                got.table.as_str(),
                got.set_clause_text.as_str(),
                got.predicate_text.as_str(),
                got.columns_set
                    .iter()
                    .map(String::as_str)
                    .collect::<Vec<_>>()
            ),
            (expected.0, expected.1, expected.2, expected.3.to_vec()),
            "{dialect}: {sql:?}"
        );
    }

    fn check_error(dialect: Dialect, sql: &str, needle: &str) {
        match parse_backfill(dialect, sql) {
            Ok(b) => panic!("{dialect} {sql:?}: expected an error, got {b:?}"),
            Err(e) => assert!(e.to_string().contains(needle), "{sql:?}: {e}"),
        }
    }

    #[test]
    fn accepted() {
        type Expected<'a> = (&'a str, &'a str, &'a str, &'a [&'a str]);
        let cases: &[(Dialect, &str, Expected)] = &[
            (
                Postgres,
                "UPDATE users SET email_lower = lower(email) WHERE email_lower IS NULL;",
                ("users", "email_lower = lower(email)", "email_lower IS NULL", &["email_lower"]),
            ),
            (
                Postgres,
                "-- fill\nupdate public.users\n  set a = 1, \"B\" = (select max(x) from t where t.id = users.id)\n  where a is null or \"B\" is null\n",
                (
                    "public.users",
                    "a = 1, \"B\" = (select max(x) from t where t.id = users.id)",
                    "a is null or \"B\" is null",
                    &["a", "B"],
                ),
            ),
            (
                Postgres,
                "UPDATE t SET note = 'where; set' WHERE note IS NULL",
                ("t", "note = 'where; set'", "note IS NULL", &["note"]),
            ),
            (
                MySql,
                "UPDATE `orders` SET `total_cents` = total * 100 WHERE total_cents IS NULL",
                ("`orders`", "`total_cents` = total * 100", "total_cents IS NULL", &["total_cents"]),
            ),
            (
                Sqlite,
                "UPDATE t SET a = 1 WHERE a IS NULL;",
                ("t", "a = 1", "a IS NULL", &["a"]),
            ),
        ];
        for (dialect, sql, expected) in cases {
            check(*dialect, sql, *expected);
        }
    }

    #[test]
    fn refused() {
        let cases: &[(Dialect, &str, &str)] = &[
            (Postgres, "", "holds no statement"),
            (Postgres, "-- nothing\n", "holds no statement"),
            (Postgres, "UPDATE t SET a = 1", "has no WHERE"),
            (
                Postgres,
                "UPDATE t SET a = 1 WHERE a IS NULL;\nUPDATE t SET b = 2 WHERE b IS NULL;",
                "line 2, column 1: a second statement",
            ),
            (
                Postgres,
                "DELETE FROM t WHERE a IS NULL",
                "found `DELETE FROM …`",
            ),
            (
                Postgres,
                "ALTER TABLE t ADD COLUMN a int",
                "found `ALTER TABLE …`",
            ),
            (
                Postgres,
                "UPDATE t SET a = u.a FROM u WHERE u.id = t.id",
                "a FROM clause",
            ),
            (
                Postgres,
                "UPDATE t AS x SET a = 1 WHERE x.a IS NULL",
                "a table alias",
            ),
            (
                Postgres,
                "UPDATE t SET a = 1 WHERE a IS NULL RETURNING id",
                "RETURNING",
            ),
            (
                MySql,
                "UPDATE t SET a = 1 WHERE a IS NULL ORDER BY id LIMIT 10",
                "ORDER BY",
            ),
            (
                MySql,
                "UPDATE t SET a = 1 WHERE a IS NULL LIMIT 10",
                "LIMIT",
            ),
            (
                MySql,
                "UPDATE t JOIN u ON u.id = t.id SET t.a = u.a WHERE t.a IS NULL",
                "a join",
            ),
            (
                Postgres,
                "UPDATE t SET = 1 WHERE a IS NULL",
                "line 1, column 14: Expected: identifier",
            ),
            (
                Postgres,
                "\n  UPDATE t SET a = 'x WHERE a IS NULL",
                "line 2, column 20: unterminated",
            ),
        ];
        for (dialect, sql, needle) in cases {
            check_error(*dialect, sql, needle);
        }
    }

    #[test]
    fn backfill_needs_default_or_trigger() {
        // The issue: "Rows the running release writes after their batch need a default or
        // a sync trigger: the classifier says so."
        let backfill = match parse_backfill(
            Postgres,
            "UPDATE users SET email_lower = lower(email) WHERE email_lower IS NULL",
        ) {
            Ok(b) => b,
            Err(e) => panic!("{e}"),
        };
        let cases: &[(&str, bool)] = &[
            ("ALTER TABLE users ADD COLUMN email_lower text;", true),
            ("ALTER TABLE users ADD COLUMN email_lower text DEFAULT '';", false),
            (
                "ALTER TABLE users ADD COLUMN email_lower text;\nALTER TABLE users ALTER COLUMN email_lower SET DEFAULT '';",
                false,
            ),
            (
                "ALTER TABLE users ADD COLUMN email_lower text;\nCREATE TRIGGER sync BEFORE INSERT OR UPDATE ON users FOR EACH ROW EXECUTE FUNCTION f();",
                false,
            ),
            ("CREATE TABLE users (id bigint primary key, email_lower text);", false),
            // A default on another table does not count.
            ("ALTER TABLE other ADD COLUMN email_lower text DEFAULT '';", true),
        ];
        for (migration, expect) in cases {
            let statements = match split(Postgres, migration) {
                Ok(s) => s,
                Err(e) => panic!("{e}"),
            };
            let findings = check_backfill(Postgres, &statements, &backfill);
            assert_eq!(!findings.is_empty(), *expect, "{migration}: {findings:?}");
            for f in findings {
                assert_eq!(f.rule, "backfill-needs-default-or-trigger");
                assert_eq!(f.severity, Severity::Warning);
            }
        }
    }
}
