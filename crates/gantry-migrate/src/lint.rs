//! Lint: everything Gantry can say about a migration before it runs, for people and CI.
//! [`lint`] classifies a migration's statements, sets severities for its phase and checks
//! its backfill; [`lint_text`] does the same for any file (a syntax problem becomes a
//! finding); [`format_table`] and [`format_json`] print the findings. Expand-safe
//! statements are left out: what remains is what someone should read. A CI step fails on
//! any error-level finding ([`has_errors`]).

use crate::backfill::check_backfill;
use crate::classify::{check_phase, classify, Class, Finding, Severity};
use crate::layout::{Migration, Phase};
use crate::split::{split, Dialect};

/// The findings for `migration` run as `phase`: its statements' (without the expand-safe
/// ones) and its backfill's, each naming its file.
pub fn lint(dialect: Dialect, phase: Phase, migration: &Migration) -> Vec<Finding> {
    let mut findings = check_phase(phase, classify(dialect, &migration.statements));
    for f in &mut findings {
        f.file = Some(migration.path.clone());
    }
    if let Some(backfill) = &migration.backfill {
        findings.extend(check_backfill(dialect, &migration.statements, backfill));
    }
    findings.retain(|f| f.class != Class::ExpandSafe);
    findings
}

/// The findings for a file's text, when it may not even split: an unterminated quote or
/// comment is an error finding at its position, an empty file is one at 1:1.
pub fn lint_text(dialect: Dialect, phase: Phase, path: &str, text: &str) -> Vec<Finding> {
    let normalized = crate::checksum::normalize(text);
    let statements = match split(dialect, &normalized) {
        Ok(statements) => statements,
        Err(error) => {
            return vec![Finding {
                file: Some(path.to_string()),
                statement_index: 0,
                line: error.line(),
                column: error.column(),
                class: Class::Unknown,
                severity: Severity::Error,
                rule: "syntax-error",
                message: error.to_string(),
                advice: None,
            }]
        }
    };
    if statements.is_empty() {
        return vec![Finding {
            file: Some(path.to_string()),
            statement_index: 0,
            line: 1,
            column: 1,
            class: Class::Invalid,
            severity: Severity::Error,
            rule: "empty-file",
            message: "the file holds no statement (only whitespace or comments)".into(),
            advice: Some("write the migration or delete the file".into()),
        }];
    }
    let mut findings = check_phase(phase, classify(dialect, &statements));
    for f in &mut findings {
        f.file = Some(path.to_string());
    }
    findings.retain(|f| f.class != Class::ExpandSafe);
    findings
}

/// Whether any finding is an error (a CI step exits 1).
pub fn has_errors(findings: &[Finding]) -> bool {
    findings.iter().any(|f| f.severity == Severity::Error)
}

/// The findings as a table: FILE, LINE:COL, SEVERITY, RULE, MESSAGE, with each finding's
/// advice on the line below, under MESSAGE.
pub fn format_table(findings: &[Finding]) -> String {
    if findings.is_empty() {
        return "no findings\n".to_string();
    }
    let rows: Vec<[String; 5]> = findings
        .iter()
        .map(|f| {
            [
                f.file.clone().unwrap_or_else(|| "-".into()),
                format!("{}:{}", f.line, f.column),
                f.severity.to_string(),
                f.rule.to_string(),
                f.message.clone(),
            ]
        })
        .collect();
    let header = ["FILE", "LINE:COL", "SEVERITY", "RULE", "MESSAGE"];
    let mut widths = header.map(|h| h.chars().count());
    for row in &rows {
        for (w, cell) in widths.iter_mut().zip(row) {
            *w = (*w).max(cell.chars().count());
        }
    }
    let indent: usize = widths[..4].iter().map(|w| w + 2).sum();
    let line = |cells: [&str; 5]| {
        let mut text = String::new();
        for (i, cell) in cells.iter().enumerate() {
            text.push_str(cell);
            if i < 4 {
                text.push_str(&" ".repeat(widths[i] - cell.chars().count() + 2));
            }
        }
        format!("{}\n", text.trim_end())
    };
    let mut out = line(header);
    for (row, f) in rows.iter().zip(findings) {
        out.push_str(&line([&row[0], &row[1], &row[2], &row[3], &row[4]]));
        if let Some(advice) = &f.advice {
            out.push_str(&" ".repeat(indent));
            out.push_str("help: ");
            out.push_str(advice);
            out.push('\n');
        }
    }
    let errors = findings
        .iter()
        .filter(|f| f.severity == Severity::Error)
        .count();
    let warnings = findings
        .iter()
        .filter(|f| f.severity == Severity::Warning)
        .count();
    out.push_str(&format!(
        "{} finding{}: {errors} error{}, {warnings} warning{}\n",
        findings.len(),
        if findings.len() == 1 { "" } else { "s" },
        if errors == 1 { "" } else { "s" },
        if warnings == 1 { "" } else { "s" },
    ));
    out
}

/// The findings as a JSON array (each with file, statement_index, line, column, class,
/// severity, rule, message and advice).
pub fn format_json(findings: &[Finding]) -> String {
    serde_json::to_string_pretty(findings).unwrap_or_else(|_| "[]".to_string())
}

#[cfg(test)]
mod tests {
    use super::*;
    use Dialect::{MySql, Postgres};

    fn migration(dialect: Dialect, phase: Phase, sql: &str, backfill: Option<&str>) -> Migration {
        let path = format!("migrations/app/{phase}/0001_change.sql");
        let backfill = backfill.map(|b| ("migrations/app/expand/0001_fill.backfill.sql", b));
        match Migration::from_source(dialect, phase, &path, sql, backfill) {
            Ok(m) => m,
            Err(e) => panic!("{e}"),
        }
    }

    /// Lints `sql` as `phase` and compares (rule, severity) pairs.
    fn check(
        dialect: Dialect,
        phase: Phase,
        sql: &str,
        backfill: Option<&str>,
        expected: &[(&str, Severity)],
    ) {
        let m = migration(dialect, phase, sql, backfill);
        let got: Vec<(&str, Severity)> = lint(dialect, phase, &m)
            .iter()
            .map(|f| (f.rule, f.severity))
            .collect();
        assert_eq!(got, expected, "{dialect} {phase}: {sql}");
    }

    #[test]
    fn phases_and_backfills() {
        use Severity::{Error, Info, Warning};
        type Case<'a> = (
            Dialect,
            Phase,
            &'a str,
            Option<&'a str>,
            &'a [(&'a str, Severity)],
        );
        let cases: &[Case] = &[
            // ban-drop-column: an error in expand, information in contract.
            (
                Postgres,
                Phase::Expand,
                "ALTER TABLE users DROP COLUMN legacy;",
                None,
                &[("ban-drop-column", Error)],
            ),
            (
                Postgres,
                Phase::Contract,
                "ALTER TABLE users DROP COLUMN legacy;",
                None,
                &[("ban-drop-column", Info)],
            ),
            // Expand-safe statements are not listed.
            (
                Postgres,
                Phase::Expand,
                "ALTER TABLE users ADD COLUMN email text;",
                None,
                &[],
            ),
            // require-concurrent-index-creation: a warning in both phases.
            (
                Postgres,
                Phase::Contract,
                "CREATE INDEX i ON users (email);",
                None,
                &[("require-concurrent-index-creation", Warning)],
            ),
            // Unknown is an error in both phases.
            (
                Postgres,
                Phase::Contract,
                "ALTER TABLE users FROBNICATE;",
                None,
                &[("unparsable-statement", Error)],
            ),
            // The backfill warns without a default or trigger...
            (
                Postgres,
                Phase::Expand,
                "ALTER TABLE users ADD COLUMN email_lower text;",
                Some("UPDATE users SET email_lower = lower(email) WHERE email_lower IS NULL"),
                &[("backfill-needs-default-or-trigger", Warning)],
            ),
            // ...and not with one.
            (
                Postgres,
                Phase::Expand,
                "ALTER TABLE users ADD COLUMN email_lower text DEFAULT '';",
                Some("UPDATE users SET email_lower = lower(email) WHERE email_lower = ''"),
                &[],
            ),
            (
                MySql,
                Phase::Expand,
                "ALTER TABLE users ADD COLUMN email varchar(255);",
                None,
                &[("mysql-alter-without-algorithm-lock", Warning)],
            ),
        ];
        for (dialect, phase, sql, backfill, expected) in cases {
            check(*dialect, *phase, sql, *backfill, expected);
        }
    }

    #[test]
    fn contract_only_in_expand_names_file_line_and_reason() {
        let m = migration(
            Postgres,
            Phase::Expand,
            "-- tidy up\nALTER TABLE users ADD COLUMN a text;\n  ALTER TABLE users RENAME COLUMN a TO b;\n",
            None,
        );
        let findings = lint(Postgres, Phase::Expand, &m);
        assert_eq!(findings.len(), 1);
        let text = findings[0].to_string();
        assert!(
            text.starts_with("migrations/app/expand/0001_change.sql:3:3: error [renaming-column] contract-only statement in an expand migration: renames column a"),
            "{text}"
        );
        assert!(text.contains("move it to a contract migration"), "{text}");
        assert!(has_errors(&findings));
    }

    #[test]
    fn lint_text_reports_what_cannot_split() {
        let f = lint_text(Postgres, Phase::Expand, "a.sql", "select 1;\nselect 'x");
        assert_eq!(
            (f[0].rule, f[0].line, f[0].column, f[0].severity),
            ("syntax-error", 2, 8, Severity::Error)
        );
        let f = lint_text(Postgres, Phase::Expand, "a.sql", "-- nothing\n");
        assert_eq!(f[0].rule, "empty-file");
        let f = lint_text(Postgres, Phase::Expand, "a.sql", "DROP TABLE t;");
        assert_eq!(
            (f[0].rule, f[0].file.as_deref()),
            ("ban-drop-table", Some("a.sql"))
        );
    }

    #[test]
    fn table_and_json() {
        let m = migration(
            Postgres,
            Phase::Expand,
            "CREATE INDEX users_email ON users (email);\nALTER TABLE users DROP COLUMN legacy;\n",
            None,
        );
        let findings = lint(Postgres, Phase::Expand, &m);
        let table = format_table(&findings);
        let lines: Vec<&str> = table.lines().collect();
        assert!(lines[0].starts_with("FILE"), "{table}");
        for column in ["LINE:COL", "SEVERITY", "RULE", "MESSAGE"] {
            assert!(lines[0].contains(column), "{table}");
        }
        let message_at = lines[0].find("MESSAGE").unwrap_or(0);
        assert!(
            lines[1].starts_with("migrations/app/expand/0001_change.sql  1:1"),
            "{table}"
        );
        assert!(
            lines[1].contains("warning") && lines[1].contains("require-concurrent-index-creation"),
            "{table}"
        );
        assert_eq!(lines[2].find("help: "), Some(message_at), "{table}");
        assert!(
            lines[3].contains("2:1")
                && lines[3].contains("error")
                && lines[3].contains("ban-drop-column"),
            "{table}"
        );
        assert_eq!(
            lines.last().copied(),
            Some("2 findings: 1 error, 1 warning")
        );
        assert_eq!(format_table(&[]), "no findings\n");

        let json: serde_json::Value =
            serde_json::from_str(&format_json(&findings)).unwrap_or_default();
        assert_eq!(json[0]["rule"], "require-concurrent-index-creation");
        assert_eq!(json[0]["severity"], "warning");
        assert_eq!(json[0]["class"], "lock-risk");
        assert_eq!(json[0]["line"], 1);
        assert_eq!(json[1]["file"], "migrations/app/expand/0001_change.sql");
        assert_eq!(json[1]["severity"], "error");
        assert_eq!(json[1]["class"], "contract-only");
        assert!(json[1]["advice"]
            .as_str()
            .is_some_and(|a| a.contains("contract")));
    }
}
