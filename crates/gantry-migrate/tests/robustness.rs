//! No input makes the splitter, classifier, backfill parser, linter or planner panic:
//! thousands of generated scripts built from the fragments that matter to them (quotes,
//! dollar quotes, comments, delimiters, multi-byte characters, keywords), in every dialect,
//! and the splitter's ranges always match its texts.

use gantry_migrate::layout::Migration;
use gantry_migrate::{
    classify, lint_text, needs_own_transaction, parse_backfill, plan_script, split, Dialect, Phase,
};

const FRAGMENTS: &[&str] = &[
    "'",
    "''",
    "\"",
    "`",
    "[",
    "]",
    "$$",
    "$a$",
    "$1",
    "a$b",
    "/*",
    "*/",
    "--",
    "-- x\n",
    "#",
    "\n",
    " ",
    "\t",
    ";",
    ";;",
    "//",
    "DELIMITER //\n",
    "DELIMITER ;\n",
    "delimiter $$\n",
    "é",
    "日本",
    "\\",
    "E'",
    "e'\\''",
    "(",
    ")",
    ",",
    "=",
    "CREATE",
    "TABLE",
    "INDEX",
    "CONCURRENTLY",
    "UNIQUE",
    "ON",
    "t",
    "users",
    "(a)",
    "ALTER",
    "ADD",
    "COLUMN",
    "DROP",
    "RENAME",
    "TO",
    "TYPE",
    "bigint",
    "text",
    "varchar(10)",
    "NOT NULL",
    "DEFAULT",
    "now()",
    "random()",
    "CONSTRAINT",
    "CHECK (a > 0)",
    "NOT VALID",
    "VALIDATE",
    "FOREIGN KEY",
    "REFERENCES",
    "BEGIN",
    "ATOMIC",
    "END",
    "CASE",
    "WHEN",
    "THEN",
    "TRIGGER",
    "FUNCTION",
    "UPDATE",
    "SET",
    "WHERE",
    "DELETE",
    "FROM",
    "ALGORITHM=NOCOPY",
    "ALGORITHM=INPLACE",
    "LOCK=NONE",
    "REINDEX",
    "VACUUM",
    "/*!40101 ",
    "/*+ ",
    "0001",
    "x\r\n",
    "\u{feff}",
];

/// A small deterministic generator (no dependency, same cases every run).
struct Lcg(u64);

impl Lcg {
    fn next(&mut self) -> usize {
        self.0 = self
            .0
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        (self.0 >> 33) as usize
    }
}

#[test]
fn generated_scripts_never_panic() {
    let mut rng = Lcg(0x5eed);
    for _ in 0..3000 {
        let len = rng.next() % 40;
        let mut sql = String::new();
        for _ in 0..len {
            sql.push_str(FRAGMENTS[rng.next() % FRAGMENTS.len()]);
            if rng.next().is_multiple_of(3) {
                sql.push(' ');
            }
        }
        for dialect in [Dialect::Postgres, Dialect::MySql, Dialect::Sqlite] {
            if let Ok(statements) = split(dialect, &sql) {
                for s in &statements {
                    assert_eq!(&sql[s.range.clone()], s.text, "{dialect} {sql:?}");
                    assert!(!s.text.trim().is_empty());
                    let _ = needs_own_transaction(dialect, s);
                }
                let _ = classify(dialect, &statements);
            }
            let _ = parse_backfill(dialect, &sql);
            let _ = lint_text(dialect, Phase::Expand, "x.sql", &sql);
            if let Ok(m) = Migration::from_source(dialect, Phase::Expand, "0001_x.sql", &sql, None)
            {
                let _ = plan_script(dialect, Phase::Expand, &[&m], "gantry_schema_expand", "ci");
                let _ = gantry_migrate::lint(dialect, Phase::Expand, &m);
            }
        }
    }
}

#[test]
fn deep_nesting_is_an_error_not_a_crash() {
    let deep = format!("SELECT {}1{}", "(".repeat(5000), ")".repeat(5000));
    for dialect in [Dialect::Postgres, Dialect::MySql, Dialect::Sqlite] {
        let statements = split(dialect, &deep).unwrap_or_default();
        let findings = classify(dialect, &statements);
        assert_eq!(findings[0].rule, "unparsable-statement", "{dialect}");
    }
}
