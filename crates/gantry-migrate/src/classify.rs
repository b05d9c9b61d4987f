//! The classifier: statements in, findings out. Each statement is parsed alone with
//! `sqlparser` in its dialect and sorted into a [`Class`]:
//! - **expand-safe**: backward compatible with the running release and cheap on locks;
//! - **contract-only**: breaks the running release (drops, renames, tightening), so it waits
//!   for the contract phase;
//! - **lock risk**: compatible, but it can block reads or writes (a table rewrite, a plain
//!   index build, a scan under an exclusive lock); the finding says why and what to write
//!   instead;
//! - **advice**: something to know (a style rule, a default the backfill needs);
//! - **unknown**: the parser could not read it, or Gantry does not know the kind of
//!   statement: never taken as safe;
//! - **invalid**: it has no place in a migration file (`BEGIN`, `COMMIT`).
//!
//! The PostgreSQL rules follow squawk's (named as squawk names them); the MySQL/MariaDB
//! rule `mysql-alter-without-algorithm-lock` asks for an explicit online algorithm so the
//! server refuses instead of silently copying a table. Every statement gets at least one
//! finding, so a statement the classifier said nothing about cannot exist.
//!
//! Pure: no I/O, no database. Positions are the file's (1-based line and column).

use std::collections::{HashMap, HashSet};
use std::fmt;

use serde::{Deserialize, Serialize};
use sqlparser::ast::{
    self, AlterColumnOperation, AlterTableAlgorithm, AlterTableLock, AlterTableOperation,
    AlterTypeOperation, CharacterLength, ColumnDef, ColumnOption, DataType, Expr, FunctionArg,
    FunctionArgExpr, FunctionArguments, ObjectName, ObjectType, TableConstraint, TableFactor,
    TimezoneInfo,
};
use sqlparser::dialect::{MySqlDialect, PostgreSqlDialect, SQLiteDialect};
use sqlparser::parser::Parser;

use crate::layout::Phase;
use crate::split::{self, Dialect, Kind, Statement};

/// What a statement is to a zero-downtime deploy.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Class {
    ExpandSafe,
    ContractOnly,
    LockRisk,
    Advice,
    Unknown,
    Invalid,
}

impl Class {
    /// The kebab-case name used in output.
    pub fn name(self) -> &'static str {
        match self {
            Class::ExpandSafe => "expand-safe",
            Class::ContractOnly => "contract-only",
            Class::LockRisk => "lock-risk",
            Class::Advice => "advice",
            Class::Unknown => "unknown",
            Class::Invalid => "invalid",
        }
    }
}

/// How much a finding matters; ordered `Info < Warning < Error`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Severity {
    Info,
    Warning,
    Error,
}

impl Severity {
    pub fn name(self) -> &'static str {
        match self {
            Severity::Info => "info",
            Severity::Warning => "warning",
            Severity::Error => "error",
        }
    }
}

impl fmt::Display for Severity {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// One thing the classifier found about one statement.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Finding {
    /// The file it is in, when known (set by [`crate::lint`]).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub file: Option<String>,
    /// Index of the statement in its file (0-based).
    pub statement_index: usize,
    /// 1-based line in the file.
    pub line: usize,
    /// 1-based column in the file.
    pub column: usize,
    pub class: Class,
    /// Set from the class by [`classify`] and for the phase by [`check_phase`].
    pub severity: Severity,
    /// The rule's name (squawk's name where squawk has the rule).
    pub rule: &'static str,
    /// What is wrong or what the statement is.
    pub message: String,
    /// The safe rewrite, or what to do next.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub advice: Option<String>,
}

impl fmt::Display for Finding {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if let Some(file) = &self.file {
            write!(f, "{file}:")?;
        }
        write!(
            f,
            "{}:{}: {} [{}] {}",
            self.line, self.column, self.severity, self.rule, self.message
        )?;
        if let Some(advice) = &self.advice {
            write!(f, " ({advice})")?;
        }
        Ok(())
    }
}

/// The severity a class has before a phase is known.
fn default_severity(class: Class) -> Severity {
    match class {
        Class::ExpandSafe | Class::Advice => Severity::Info,
        Class::ContractOnly | Class::LockRisk => Severity::Warning,
        Class::Unknown | Class::Invalid => Severity::Error,
    }
}

/// Sets each finding's severity for a migration of `phase`: a contract-only statement in
/// an expand migration is an error that says where it belongs; in a contract migration it
/// is information. Lock risks are warnings; unknown and invalid statements are errors.
pub fn check_phase(phase: Phase, findings: Vec<Finding>) -> Vec<Finding> {
    findings
        .into_iter()
        .map(|mut f| {
            match f.class {
                Class::ContractOnly => match phase {
                    Phase::Expand => {
                        f.severity = Severity::Error;
                        f.message = format!(
                            "contract-only statement in an expand migration: {}",
                            f.message
                        );
                        let moved = "move it to a contract migration \
                                     (migrations/<database>/contract/), which runs once the \
                                     new release is stable, or apply with --force --reason";
                        f.advice = Some(match f.advice.take() {
                            Some(advice) => format!("{moved}; {advice}"),
                            None => moved.to_string(),
                        });
                    }
                    Phase::Contract => f.severity = Severity::Info,
                },
                Class::ExpandSafe => f.severity = Severity::Info,
                Class::LockRisk => f.severity = Severity::Warning,
                Class::Unknown | Class::Invalid => f.severity = Severity::Error,
                Class::Advice => {}
            }
            f
        })
        .collect()
}

/// Whether `stmt` cannot run inside a transaction block, so the runner (and the plan)
/// run it alone: PostgreSQL's `CREATE/DROP INDEX CONCURRENTLY`, `REINDEX … CONCURRENTLY`,
/// `VACUUM`, `ALTER TYPE … ADD VALUE` (before PostgreSQL 12; always run alone here),
/// `DETACH PARTITION … CONCURRENTLY`, `CREATE/DROP DATABASE`, `ALTER SYSTEM`; SQLite's
/// `VACUUM`. MySQL commits DDL implicitly, so nothing there needs it.
pub fn needs_own_transaction(dialect: Dialect, stmt: &Statement) -> bool {
    let words = split::words(dialect, &stmt.text);
    let w: Vec<&str> = words.iter().map(String::as_str).collect();
    match dialect {
        Dialect::Postgres => match w.as_slice() {
            ["CREATE", "INDEX", "CONCURRENTLY", ..]
            | ["CREATE", "UNIQUE", "INDEX", "CONCURRENTLY", ..]
            | ["DROP", "INDEX", "CONCURRENTLY", ..]
            | ["VACUUM", ..]
            | ["CREATE", "DATABASE", ..]
            | ["DROP", "DATABASE", ..]
            | ["CREATE", "TABLESPACE", ..]
            | ["DROP", "TABLESPACE", ..]
            | ["ALTER", "SYSTEM", ..] => true,
            ["REINDEX", rest @ ..] => rest.iter().take(6).any(|w| *w == "CONCURRENTLY"),
            ["ALTER", "TYPE", rest @ ..] => rest.windows(2).any(|p| p == ["ADD", "VALUE"]),
            ["ALTER", "TABLE", rest @ ..] => {
                rest.contains(&"DETACH") && rest.contains(&"CONCURRENTLY")
            }
            _ => false,
        },
        Dialect::Sqlite => w.first() == Some(&"VACUUM"),
        Dialect::MySql => false,
    }
}

/// Classifies the statements of one migration file, in order. Statements are read
/// together: an index on a table the same file creates is no lock risk, and a `VALIDATE
/// CONSTRAINT` is one only next to other DDL in the same transaction.
pub fn classify(dialect: Dialect, statements: &[Statement]) -> Vec<Finding> {
    let parsed: Vec<Parsed> = statements.iter().map(|s| parse(dialect, s)).collect();
    let mut ctx = Context::new(dialect, statements, &parsed);
    for (index, (stmt, parsed)) in statements.iter().zip(&parsed).enumerate() {
        ctx.current = Some(Current {
            index,
            line: stmt.line,
            column: stmt.column,
        });
        let before = ctx.findings.len();
        match parsed {
            Parsed::Ast { statement, nocopy } => ctx.statement(statement, *nocopy),
            Parsed::Keywords(kind) => ctx.keywords(*kind, &stmt.text),
            Parsed::Error {
                message,
                line,
                column,
            } => {
                ctx.findings.push(Finding {
                    file: None,
                    statement_index: index,
                    line: *line,
                    column: *column,
                    class: Class::Unknown,
                    severity: Severity::Error,
                    rule: "unparsable-statement",
                    message: format!("Gantry cannot read this statement: {message}"),
                    advice: Some(
                        "fix the syntax; if the database accepts it, Gantry cannot tell \
                         whether it is safe: check it by hand and apply with --force --reason"
                            .into(),
                    ),
                });
            }
        }
        if ctx.findings.len() == before {
            ctx.push(
                Class::Unknown,
                "unclassified-statement",
                "Gantry does not classify this statement".into(),
                Some("check it by hand and apply with --force --reason".into()),
            );
        }
    }
    ctx.findings
}

/// A statement as the parser left it.
enum Parsed {
    Ast {
        statement: Box<ast::Statement>,
        /// A MariaDB `ALGORITHM=NOCOPY` read as `INPLACE` (sqlparser knows no NOCOPY).
        nocopy: bool,
    },
    /// Not parsed, but recognised by its leading keywords (never as safe).
    Keywords(KeywordKind),
    Error {
        message: String,
        line: usize,
        column: usize,
    },
}

#[derive(Clone, Copy)]
enum KeywordKind {
    /// PostgreSQL `DROP INDEX CONCURRENTLY` (sqlparser 0.64 does not read it).
    DropIndexConcurrently,
    /// PostgreSQL `REINDEX`.
    Reindex { concurrently: bool },
    /// `CREATE TRIGGER` with a body sqlparser does not read.
    CreateTrigger,
    /// `BEGIN`, `START TRANSACTION`, `COMMIT`, `ROLLBACK` as sqlparser could not read them.
    Transaction,
}

fn parse(dialect: Dialect, stmt: &Statement) -> Parsed {
    let (text, nocopy) = match dialect {
        Dialect::MySql => match mysql_nocopy(&stmt.text) {
            Some(text) => (text, true),
            None => (stmt.text.clone(), false),
        },
        _ => (stmt.text.clone(), false),
    };
    let result = match dialect {
        Dialect::Postgres => Parser::parse_sql(&PostgreSqlDialect {}, &text),
        Dialect::MySql => Parser::parse_sql(&MySqlDialect {}, &text),
        Dialect::Sqlite => Parser::parse_sql(&SQLiteDialect {}, &text),
    };
    match result {
        Ok(mut statements) if statements.len() == 1 => Parsed::Ast {
            statement: Box::new(statements.remove(0)),
            nocopy,
        },
        Ok(statements) => match recognise(dialect, &stmt.text) {
            Some(kind) => Parsed::Keywords(kind),
            None => Parsed::Error {
                message: format!(
                    "it reads as {} statements; end each with the terminator",
                    statements.len()
                ),
                line: stmt.line,
                column: stmt.column,
            },
        },
        Err(error) => match recognise(dialect, &stmt.text) {
            Some(kind) => Parsed::Keywords(kind),
            None => {
                let (message, line, column) = locate_parser_error(&error.to_string(), stmt);
                Parsed::Error {
                    message,
                    line,
                    column,
                }
            }
        },
    }
}

/// The parser's message without its prefix and position, and the position in the file.
pub(crate) fn locate_parser_error(raw: &str, stmt: &Statement) -> (String, usize, usize) {
    let message = raw
        .strip_prefix("sql parser error: ")
        .or_else(|| raw.strip_prefix("sql tokenizer error: "))
        .unwrap_or(raw);
    let Some(at) = message.rfind(" at Line: ") else {
        return (message.to_string(), stmt.line, stmt.column);
    };
    let position = &message[at + " at Line: ".len()..];
    let mut parts = position.split(", Column: ");
    let line: Option<usize> = parts.next().and_then(|l| l.trim().parse().ok());
    let column: Option<usize> = parts.next().and_then(|c| {
        let digits: String = c.chars().take_while(char::is_ascii_digit).collect();
        digits.parse().ok()
    });
    match (line, column) {
        (Some(l), Some(c)) if l >= 1 && c >= 1 => {
            let file_line = stmt.line + l - 1;
            let file_column = if l == 1 { stmt.column + c - 1 } else { c };
            (message[..at].to_string(), file_line, file_column)
        }
        _ => (message.to_string(), stmt.line, stmt.column),
    }
}

/// A statement sqlparser cannot read, recognised by its leading keywords.
fn recognise(dialect: Dialect, text: &str) -> Option<KeywordKind> {
    let words = split::words(dialect, text);
    let w: Vec<&str> = words.iter().map(String::as_str).collect();
    match (dialect, w.as_slice()) {
        (Dialect::Postgres, ["DROP", "INDEX", "CONCURRENTLY", ..]) => {
            Some(KeywordKind::DropIndexConcurrently)
        }
        (Dialect::Postgres, ["REINDEX", rest @ ..]) => Some(KeywordKind::Reindex {
            concurrently: rest.iter().take(6).any(|w| *w == "CONCURRENTLY"),
        }),
        (_, ["CREATE", rest @ ..]) if rest.iter().take(6).any(|w| *w == "TRIGGER") => {
            Some(KeywordKind::CreateTrigger)
        }
        (_, ["BEGIN" | "COMMIT" | "ROLLBACK" | "END", ..] | ["START", "TRANSACTION", ..]) => {
            Some(KeywordKind::Transaction)
        }
        _ => None,
    }
}

/// MariaDB's `ALGORITHM = NOCOPY`, which sqlparser does not know, rewritten as `INPLACE`
/// (the same promise for the checks here); `None` when there is none.
fn mysql_nocopy(text: &str) -> Option<String> {
    let tokens = split::tokens(Dialect::MySql, text)?;
    let mut replace = Vec::new();
    for (i, token) in tokens.iter().enumerate() {
        if token.kind != Kind::Word || !text[token.start..token.end].eq_ignore_ascii_case("NOCOPY")
        {
            continue;
        }
        let mut j = i;
        if j > 0 && &text[tokens[j - 1].start..tokens[j - 1].end] == "=" {
            j -= 1;
        }
        if j > 0 && text[tokens[j - 1].start..tokens[j - 1].end].eq_ignore_ascii_case("ALGORITHM") {
            replace.push(token.start..token.end);
        }
    }
    if replace.is_empty() {
        return None;
    }
    let mut out = String::with_capacity(text.len() + replace.len());
    let mut last = 0;
    for range in replace {
        out.push_str(&text[last..range.start]);
        out.push_str("INPLACE");
        last = range.end;
    }
    out.push_str(&text[last..]);
    Some(out)
}

#[derive(Clone, Copy)]
struct Current {
    index: usize,
    line: usize,
    column: usize,
}

struct Context {
    dialect: Dialect,
    findings: Vec<Finding>,
    current: Option<Current>,
    /// Tables this file creates (without IF NOT EXISTS), by lower-cased last name part.
    new_tables: HashSet<String>,
    /// Column types this file declares: (table, column) → type.
    column_types: HashMap<(String, String), DataType>,
    /// DDL statements that share the file's transaction (PostgreSQL), besides VALIDATEs.
    transactional_ddl: usize,
    /// The file holds BEGIN/COMMIT of its own.
    has_transaction_control: bool,
}

impl Context {
    fn new(dialect: Dialect, statements: &[Statement], parsed: &[Parsed]) -> Self {
        let mut transactional_ddl = 0;
        let mut has_transaction_control = false;
        for (stmt, parsed) in statements.iter().zip(parsed) {
            let own = needs_own_transaction(dialect, stmt);
            match parsed {
                Parsed::Ast { statement, .. } => {
                    if is_transaction_control(statement) {
                        has_transaction_control = true;
                    } else if !own && is_ddl(statement) && !is_validate_only(statement) {
                        transactional_ddl += 1;
                    }
                }
                Parsed::Keywords(KeywordKind::Transaction) => has_transaction_control = true,
                Parsed::Keywords(_) | Parsed::Error { .. } => {
                    if !own {
                        transactional_ddl += 1;
                    }
                }
            }
        }
        Context {
            dialect,
            findings: Vec::new(),
            current: None,
            new_tables: HashSet::new(),
            column_types: HashMap::new(),
            transactional_ddl,
            has_transaction_control,
        }
    }

    fn is_pg(&self) -> bool {
        self.dialect == Dialect::Postgres
    }

    /// Adds a finding for the current statement, once per (rule, class).
    fn push(&mut self, class: Class, rule: &'static str, message: String, advice: Option<String>) {
        let Some(current) = self.current else {
            return;
        };
        if self
            .findings
            .iter()
            .any(|f| f.statement_index == current.index && f.rule == rule && f.class == class)
        {
            return;
        }
        self.findings.push(Finding {
            file: None,
            statement_index: current.index,
            line: current.line,
            column: current.column,
            class,
            severity: default_severity(class),
            rule,
            message,
            advice,
        });
    }

    fn safe(&mut self, rule: &'static str, message: String) {
        self.push(Class::ExpandSafe, rule, message, None);
    }

    fn contract(&mut self, rule: &'static str, message: String, advice: &str) {
        self.push(Class::ContractOnly, rule, message, Some(advice.to_string()));
    }

    fn lock(&mut self, rule: &'static str, message: String, advice: &str) {
        self.push(Class::LockRisk, rule, message, Some(advice.to_string()));
    }

    fn advice(&mut self, rule: &'static str, message: String, advice: &str) {
        self.push(Class::Advice, rule, message, Some(advice.to_string()));
    }

    fn unknown(&mut self, rule: &'static str, message: String) {
        self.push(
            Class::Unknown,
            rule,
            message,
            Some("check it by hand and apply with --force --reason".into()),
        );
    }

    fn keywords(&mut self, kind: KeywordKind, text: &str) {
        match kind {
            KeywordKind::DropIndexConcurrently => self.contract(
                "ban-drop-index",
                "drops an index (read by its keywords; sqlparser cannot parse DROP INDEX \
                 CONCURRENTLY): queries of the running release may depend on it"
                    .into(),
                "drop it in the contract phase, once no release uses it",
            ),
            KeywordKind::Reindex { concurrently: true } => self.advice(
                "reindex-concurrently",
                "rebuilds an index concurrently (read by its keywords): it blocks no reads \
                 or writes, and runs outside a transaction"
                    .into(),
                "if it fails it leaves an INVALID index behind: drop it and run again",
            ),
            KeywordKind::Reindex {
                concurrently: false,
            } => self.lock(
                "require-concurrent-reindex",
                "REINDEX without CONCURRENTLY blocks writes to the table (and reads that use \
                 the index) while the index is rebuilt"
                    .into(),
                "use REINDEX … CONCURRENTLY (PostgreSQL 12+), which runs outside a transaction",
            ),
            KeywordKind::CreateTrigger => {
                let table = trigger_table(self.dialect, text);
                self.create_trigger(table.as_deref());
            }
            KeywordKind::Transaction => self.transaction_nesting(),
        }
    }

    fn transaction_nesting(&mut self) {
        self.push(
            Class::Invalid,
            "transaction-nesting",
            "transaction control in a migration file: Gantry runs each migration in its own \
             transaction where the database allows it, and statements that cannot run in \
             one alone"
                .into(),
            Some("remove BEGIN/COMMIT/ROLLBACK from the file".into()),
        );
    }

    /// `table`: the trigger's table key, when known.
    fn create_trigger(&mut self, table: Option<&str>) {
        if let Some(table) = table {
            if self.new_tables.contains(table) {
                self.safe(
                    "create-trigger-on-new-table",
                    format!("creates a trigger on {table}, which this file creates"),
                );
                return;
            }
        }
        let lock = match self.dialect {
            Dialect::Postgres => {
                "takes a SHARE ROW EXCLUSIVE lock on the table, which blocks \
                                  writes and waits behind long queries"
            }
            Dialect::MySql => {
                "takes a metadata lock on the table, which waits behind long \
                               transactions and blocks every query queued after it"
            }
            Dialect::Sqlite => "takes the database's write lock",
        };
        self.lock(
            "create-trigger",
            format!("creating a trigger {lock}; every write then pays for the trigger"),
            "create the trigger function first, keep the trigger cheap, and let the runner's \
             short lock timeout and retries take the lock (never a long lock wait)",
        );
    }

    fn statement(&mut self, statement: &ast::Statement, nocopy: bool) {
        use ast::Statement as S;
        match statement {
            S::CreateTable(create) => {
                let key = table_key(&create.name);
                self.safe("create-table", format!("creates table {}", create.name));
                for column in &create.columns {
                    self.type_style(&column.data_type, &create.name, &column.name.value);
                    self.column_types.insert(
                        (key.clone(), column.name.value.to_lowercase()),
                        column.data_type.clone(),
                    );
                }
                if !create.if_not_exists {
                    self.new_tables.insert(key);
                }
            }
            S::CreateVirtualTable {
                name,
                if_not_exists,
                ..
            } => {
                self.safe("create-table", format!("creates virtual table {name}"));
                if !if_not_exists {
                    self.new_tables.insert(table_key(name));
                }
            }
            S::AlterTable(alter) => self.alter_table(alter, nocopy),
            S::CreateIndex(index) => self.create_index(index, nocopy),
            S::Drop {
                object_type, names, ..
            } => self.drop(*object_type, names),
            S::DropFunction(_) | S::DropProcedure { .. } => self.contract(
                "ban-drop-function",
                "drops a function or procedure the running release may call".into(),
                "drop it in the contract phase, once no release calls it",
            ),
            S::DropTrigger(_) => self.contract(
                "ban-drop-trigger",
                "drops a trigger: rows the running release writes stop being kept in step".into(),
                "drop it in the contract phase, once no release needs it",
            ),
            S::DropDomain(_) => self.contract(
                "ban-drop-domain",
                "drops a domain columns may use".into(),
                "drop it in the contract phase",
            ),
            S::DropExtension(_) => self.contract(
                "ban-drop-extension",
                "drops an extension whose types and functions the running release may use".into(),
                "drop it in the contract phase",
            ),
            S::DropPolicy(_) => self.contract(
                "ban-drop-policy",
                "drops a row-level security policy".into(),
                "drop it in the contract phase",
            ),
            S::RenameTable(_) => self.renaming_table(),
            S::AlterIndex { .. } => {
                self.safe("rename-index", "renames an index (a catalog change)".into())
            }
            S::CreateView(view) => {
                if view.or_replace || view.or_alter {
                    self.replace_view_function(&format!("view {}", view.name));
                } else {
                    self.safe("create-view", format!("creates view {}", view.name));
                }
            }
            S::AlterView(view) => self.replace_view_function(&format!("view {}", view.name)),
            S::CreateFunction(function) => {
                if function.or_replace || function.or_alter {
                    self.replace_view_function(&format!("function {}", function.name));
                } else {
                    self.safe(
                        "create-function",
                        format!("creates function {}", function.name),
                    );
                }
            }
            S::CreateProcedure { or_alter, name, .. } => {
                if *or_alter {
                    self.replace_view_function(&format!("procedure {name}"));
                } else {
                    self.safe("create-function", format!("creates procedure {name}"));
                }
            }
            S::CreateTrigger(trigger) => self.create_trigger(Some(&table_key(&trigger.table_name))),
            S::Insert(_) => self.safe("data-change", "inserts rows".into()),
            S::Update(update) => {
                let table = relation_name(&update.table.relation);
                self.data_change("update", "UPDATE", table, update.selection.is_some());
            }
            S::Delete(delete) => {
                let from = match &delete.from {
                    ast::FromTable::WithFromKeyword(t) | ast::FromTable::WithoutKeyword(t) => t,
                };
                let table = from.first().and_then(|t| relation_name(&t.relation));
                self.data_change("delete", "DELETE", table, delete.selection.is_some());
            }
            S::Truncate(_) => self.contract(
                "ban-truncate",
                "empties tables the running release reads and writes".into(),
                "truncate in the contract phase, once no release uses the rows",
            ),
            S::CreateExtension(_)
            | S::CreateSchema { .. }
            | S::CreateSequence { .. }
            | S::CreateType { .. }
            | S::CreateDomain(_)
            | S::CreateRole(_)
            | S::CreatePolicy(_)
            | S::CreateUser(_) => self.safe("create-object", "creates a new object".into()),
            S::Comment { .. } => self.safe("comment", "sets a comment (a catalog change)".into()),
            S::Grant(_) => self.safe("grant", "grants privileges".into()),
            S::Revoke(_) => self.contract(
                "ban-revoke",
                "revokes privileges the running release may need".into(),
                "revoke in the contract phase",
            ),
            S::Set(_) | S::Pragma { .. } => {
                self.safe("session-setting", "changes a setting".into())
            }
            S::Query(_) => self.safe("query", "reads data".into()),
            S::Analyze(_) => self.safe("maintenance", "updates planner statistics".into()),
            S::Vacuum(vacuum) => {
                if vacuum.full {
                    self.lock(
                        "vacuum-full",
                        "VACUUM FULL rewrites the table under an ACCESS EXCLUSIVE lock, \
                         blocking reads and writes"
                            .into(),
                        "use plain VACUUM, or `gantry migrate rebuild` for an online rewrite",
                    );
                } else {
                    self.safe("maintenance", "vacuums (runs outside a transaction)".into());
                }
            }
            S::AlterType(alter) => match &alter.operation {
                AlterTypeOperation::AddValue(_) => self.safe(
                    "add-enum-value",
                    format!(
                        "adds a value to type {} (runs outside a transaction)",
                        alter.name
                    ),
                ),
                AlterTypeOperation::Rename(_) => self.contract(
                    "renaming-type",
                    format!(
                        "renames type {}: the running release uses the old name",
                        alter.name
                    ),
                    "create the new type, move columns in steps, drop the old one in contract",
                ),
                AlterTypeOperation::RenameValue(_) => self.contract(
                    "renaming-enum-value",
                    format!(
                        "renames a value of type {}: the running release writes the old value",
                        alter.name
                    ),
                    "add the new value in expand, move rows, and stop using the old one",
                ),
            },
            S::StartTransaction { .. }
            | S::Commit { .. }
            | S::Rollback { .. }
            | S::Savepoint { .. }
            | S::ReleaseSavepoint { .. } => self.transaction_nesting(),
            S::Lock(_) | S::LockTables { .. } => self.lock(
                "explicit-lock",
                "locks tables explicitly: every query on them waits until the migration \
                 commits"
                    .into(),
                "remove the LOCK; the statements take the locks they need",
            ),
            other => {
                let kind = statement_kind(other);
                self.unknown(
                    "unclassified-statement",
                    format!("Gantry does not classify {kind} statements"),
                );
            }
        }
    }

    fn replace_view_function(&mut self, what: &str) {
        self.advice(
            "ban-replace-view-function",
            format!(
                "replaces {what} in place: the running release sees the new definition at once"
            ),
            "keep the definition compatible with the running release, or create a new name \
             and drop the old one in the contract phase",
        );
    }

    fn renaming_table(&mut self) {
        self.contract(
            "renaming-table",
            "renames a table: the running release still uses the old name".into(),
            "create the new table (or a view under the new name), write to both, move \
             readers, and drop the old name in the contract phase",
        );
    }

    fn data_change(&mut self, rule: &str, verb: &str, table: Option<&ObjectName>, has_where: bool) {
        let new = table.is_some_and(|t| self.new_tables.contains(&table_key(t)));
        if has_where || new {
            self.safe("data-change", format!("{} rows", verb.to_lowercase()));
            return;
        }
        let name = table.map_or_else(|| "the table".to_string(), ToString::to_string);
        let (rule, message) = if rule == "update" {
            (
                "update-without-where",
                format!(
                    "UPDATE without WHERE on {name}: one long transaction locks every row it \
                     touches until it commits"
                ),
            )
        } else {
            (
                "delete-without-where",
                format!(
                    "DELETE without WHERE on {name}: it removes every row the running release \
                     reads, in one long transaction"
                ),
            )
        };
        self.lock(
            rule,
            message,
            "move it to a companion NNNN_name.backfill.sql file (`UPDATE … SET … WHERE pred`): \
             Gantry runs it in primary-key batches with one commit each",
        );
    }

    fn drop(&mut self, object_type: ObjectType, names: &[ObjectName]) {
        let list = names
            .iter()
            .map(ToString::to_string)
            .collect::<Vec<_>>()
            .join(", ");
        match object_type {
            ObjectType::Table => self.contract(
                "ban-drop-table",
                format!("drops table {list}: the running release may still read or write it"),
                "drop it in the contract phase, once no release uses it",
            ),
            ObjectType::Index => {
                self.contract(
                    "ban-drop-index",
                    format!("drops index {list}: queries of the running release may depend on it"),
                    "drop it in the contract phase, once no release uses it",
                );
                if self.is_pg() {
                    self.lock(
                        "require-concurrent-index-deletion",
                        format!(
                            "DROP INDEX {list} without CONCURRENTLY takes an ACCESS EXCLUSIVE \
                             lock on the table"
                        ),
                        "use DROP INDEX CONCURRENTLY (it runs outside a transaction)",
                    );
                }
            }
            ObjectType::View | ObjectType::MaterializedView => self.contract(
                "ban-drop-view",
                format!("drops view {list}: the running release may read it"),
                "drop it in the contract phase",
            ),
            ObjectType::Schema => self.contract(
                "ban-drop-schema",
                format!("drops schema {list} and what it holds"),
                "drop it in the contract phase",
            ),
            ObjectType::Database => self.contract(
                "ban-drop-database",
                format!("drops database {list}"),
                "drop databases outside migrations",
            ),
            ObjectType::Sequence => self.contract(
                "ban-drop-sequence",
                format!("drops sequence {list}: defaults of the running release may use it"),
                "drop it in the contract phase",
            ),
            ObjectType::Type => self.contract(
                "ban-drop-type",
                format!("drops type {list}"),
                "drop it in the contract phase",
            ),
            _ => self.contract(
                "ban-drop-object",
                format!("drops {list}: the running release may use it"),
                "drop it in the contract phase",
            ),
        }
    }

    fn create_index(&mut self, index: &ast::CreateIndex, nocopy: bool) {
        let table = &index.table_name;
        let new = self.new_tables.contains(&table_key(table));
        let name = index
            .name
            .as_ref()
            .map_or_else(|| "an index".to_string(), |n| format!("index {n}"));
        if new {
            self.safe(
                "create-index-on-new-table",
                format!("creates {name} on {table}, which this file creates"),
            );
            return;
        }
        match self.dialect {
            Dialect::Postgres => {
                if index.concurrently {
                    if self.has_transaction_control {
                        self.push(
                            Class::Invalid,
                            "ban-concurrent-index-creation-in-transaction",
                            "CREATE INDEX CONCURRENTLY cannot run inside a transaction block"
                                .into(),
                            Some("remove BEGIN/COMMIT from the file".into()),
                        );
                    }
                    self.safe(
                        "create-index-concurrently",
                        format!("creates {name} on {table} concurrently (outside a transaction)"),
                    );
                } else {
                    self.lock(
                        "require-concurrent-index-creation",
                        format!(
                            "CREATE INDEX without CONCURRENTLY blocks writes to {table} while \
                             {name} is built"
                        ),
                        "use CREATE INDEX CONCURRENTLY (it runs outside a transaction; if it \
                         fails, the INVALID index it leaves is dropped)",
                    );
                }
            }
            Dialect::MySql => {
                let (algorithm, lock) = algorithm_and_lock(&index.alter_options);
                match mysql_online(algorithm, lock, nocopy) {
                    Ok(how) => self.safe(
                        "create-index-online",
                        format!("creates {name} on {table} online ({how})"),
                    ),
                    Err(why) => self.mysql_lock(&format!("CREATE INDEX on {table}"), &why, true),
                }
            }
            Dialect::Sqlite => self.safe("create-index", format!("creates {name} on {table}")),
        }
    }

    fn mysql_lock(&mut self, what: &str, why: &str, index: bool) {
        let clause = if index {
            "ALGORITHM=INPLACE LOCK=NONE"
        } else {
            ", ALGORITHM=INPLACE, LOCK=NONE"
        };
        self.lock(
            "mysql-alter-without-algorithm-lock",
            format!("{what} {why}: MySQL/MariaDB may copy the table and block writes"),
            &format!(
                "end it with `{clause}` (or ALGORITHM=INSTANT, or ALGORITHM=NOCOPY on MariaDB): \
                 the server then refuses instead of copying; if it refuses, use \
                 `gantry migrate rebuild`"
            ),
        );
    }

    fn alter_table(&mut self, alter: &ast::AlterTable, nocopy: bool) {
        let table = &alter.name;
        let key = table_key(table);
        let new = self.new_tables.contains(&key);
        let mut changes = 0;
        for op in &alter.operations {
            if matches!(
                op,
                AlterTableOperation::Algorithm { .. } | AlterTableOperation::Lock { .. }
            ) {
                continue;
            }
            changes += 1;
            if new {
                if let AlterTableOperation::AddColumn { column_def, .. } = op {
                    self.column_types.insert(
                        (key.clone(), column_def.name.value.to_lowercase()),
                        column_def.data_type.clone(),
                    );
                }
                self.safe(
                    "alter-new-table",
                    format!("alters {table}, which this file creates"),
                );
            } else {
                self.alter_operation(table, &key, op);
            }
        }
        if self.dialect == Dialect::MySql && !new && changes > 0 {
            let (algorithm, lock) = algorithm_and_lock(&alter.operations);
            if let Err(why) = mysql_online(algorithm, lock, nocopy) {
                self.mysql_lock(&format!("ALTER TABLE {table}"), &why, false);
            }
        }
    }

    fn alter_operation(&mut self, table: &ObjectName, key: &str, op: &AlterTableOperation) {
        use AlterTableOperation as Op;
        match op {
            Op::AddColumn { column_def, .. } => self.add_column(table, key, column_def),
            Op::AddConstraint {
                constraint,
                not_valid,
            } => self.add_constraint(table, constraint, *not_valid),
            Op::DropConstraint { name, .. } => self.contract(
                "ban-drop-constraint",
                format!("drops constraint {name} on {table}: rows of the new release may break what the old one relies on"),
                "drop it in the contract phase",
            ),
            Op::DropPrimaryKey { .. } | Op::DropForeignKey { .. } => self.contract(
                "ban-drop-constraint",
                format!("drops a key of {table}"),
                "drop it in the contract phase",
            ),
            Op::DropColumn { column_names, .. } => {
                let names = column_names
                    .iter()
                    .map(|c| c.value.as_str())
                    .collect::<Vec<_>>()
                    .join(", ");
                self.contract(
                    "ban-drop-column",
                    format!("drops column {names} of {table}: the running release still reads or writes it"),
                    "stop using the column in a release first, then drop it in the contract phase",
                );
            }
            Op::DropIndex { name } => self.contract(
                "ban-drop-index",
                format!("drops index {name} of {table}: queries of the running release may depend on it"),
                "drop it in the contract phase",
            ),
            Op::RenameColumn {
                old_column_name,
                new_column_name,
            } => self.renaming_column(table, &old_column_name.value, &new_column_name.value),
            Op::RenameTable { .. } => self.renaming_table(),
            Op::RenameConstraint { .. } => {
                self.safe("rename-constraint", "renames a constraint (a catalog change)".into())
            }
            Op::ChangeColumn {
                old_name,
                new_name,
                data_type,
                options,
                ..
            } => {
                if !old_name.value.eq_ignore_ascii_case(&new_name.value) {
                    self.renaming_column(table, &old_name.value, &new_name.value);
                }
                self.type_change(table, key, &old_name.value, data_type);
                self.mysql_not_null(table, &old_name.value, options);
            }
            Op::ModifyColumn {
                col_name,
                data_type,
                options,
                ..
            } => {
                self.type_change(table, key, &col_name.value, data_type);
                self.mysql_not_null(table, &col_name.value, options);
            }
            Op::AlterColumn { column_name, op } => {
                self.alter_column(table, key, &column_name.value, op)
            }
            Op::ValidateConstraint { name } => {
                if self.is_pg() && self.transactional_ddl > 0 {
                    self.lock(
                        "validate-constraint-with-ddl",
                        format!(
                            "VALIDATE CONSTRAINT {name} runs in the same transaction as other \
                             DDL in this file, so the table scan happens while their ACCESS \
                             EXCLUSIVE locks are held"
                        ),
                        "put the VALIDATE in a migration of its own (after the backfill), where \
                         it only takes a SHARE UPDATE EXCLUSIVE lock",
                    );
                } else {
                    self.safe(
                        "validate-constraint",
                        format!("validates constraint {name} (SHARE UPDATE EXCLUSIVE: reads and writes go on)"),
                    );
                }
            }
            other => self.unknown(
                "unclassified-operation",
                format!("Gantry does not classify `ALTER TABLE {table} {other}`"),
            ),
        }
    }

    /// MySQL's `MODIFY`/`CHANGE … NOT NULL` sets NOT NULL on an existing column.
    fn mysql_not_null(&mut self, table: &ObjectName, column: &str, options: &[ColumnOption]) {
        if options.iter().any(|o| matches!(o, ColumnOption::NotNull)) {
            self.contract(
                "adding-not-nullable-field",
                format!(
                    "makes {table}.{column} NOT NULL: the running release may still write NULL"
                ),
                "backfill, and set NOT NULL in the contract phase once every release writes a value",
            );
        }
    }

    fn renaming_column(&mut self, table: &ObjectName, old: &str, new: &str) {
        self.contract(
            "renaming-column",
            format!(
                "renames column {old} of {table} to {new}: the running release still uses {old}"
            ),
            "add the new column, write to both (a trigger), backfill, move readers, and drop \
             the old column in the contract phase",
        );
    }

    fn alter_column(
        &mut self,
        table: &ObjectName,
        key: &str,
        column: &str,
        op: &AlterColumnOperation,
    ) {
        match op {
            AlterColumnOperation::SetNotNull => self.contract(
                "adding-not-nullable-field",
                format!(
                    "SET NOT NULL on {table}.{column}: the running release may still write NULL, \
                     and the check scans the table under an ACCESS EXCLUSIVE lock"
                ),
                &format!(
                    "in expand add `ALTER TABLE {table} ADD CONSTRAINT {column}_not_null CHECK \
                     ({column} IS NOT NULL) NOT VALID`, backfill, then `VALIDATE CONSTRAINT` in a \
                     migration of its own; on PostgreSQL 12+ SET NOT NULL then uses the \
                     validated check instead of a scan"
                ),
            ),
            AlterColumnOperation::DropNotNull => self.advice(
                "ban-drop-not-null",
                format!("DROP NOT NULL on {table}.{column}: once the new release writes NULL there, the running (or a rolled-back) release may not expect it"),
                "make sure every release that may run reads NULL safely",
            ),
            AlterColumnOperation::SetDefault { .. } => self.safe(
                "set-default",
                format!("sets the default of {table}.{column} (a catalog change; existing rows keep their values)"),
            ),
            AlterColumnOperation::DropDefault => self.contract(
                "ban-drop-default",
                format!("drops the default of {table}.{column}: inserts of the running release that leave it out get NULL (or fail)"),
                "drop it in the contract phase, once every release sets the column",
            ),
            AlterColumnOperation::SetDataType { data_type, .. } => {
                self.type_change(table, key, column, data_type)
            }
            other => self.unknown(
                "unclassified-operation",
                format!("Gantry does not classify `ALTER COLUMN {column} {other}` on {table}"),
            ),
        }
    }

    fn type_change(&mut self, table: &ObjectName, key: &str, column: &str, new_type: &DataType) {
        let known = self
            .column_types
            .get(&(key.to_string(), column.to_lowercase()));
        if let Some(old) = known {
            if is_widening(old, new_type) {
                let message = format!(
                    "widens {table}.{column} from {old} to {new_type} (a catalog change, no rewrite)"
                );
                self.column_types
                    .insert((key.to_string(), column.to_lowercase()), new_type.clone());
                self.safe("widen-column-type", message);
                return;
            }
        }
        self.contract(
            "changing-column-type",
            format!(
                "changes the type of {table}.{column} to {new_type}: the running release may \
                 read or write values the new type refuses"
            ),
            "add a column of the new type, keep both in step with a trigger, backfill, move \
             readers, drop the old column in the contract phase (or `gantry migrate rebuild`); \
             widening varchar(n) to varchar(m > n) or text is a catalog change",
        );
        if self.is_pg() {
            self.lock(
                "changing-column-type",
                format!(
                    "changing {table}.{column} to {new_type} rewrites the table and its indexes \
                     under an ACCESS EXCLUSIVE lock (int to bigint too), unless it widens a \
                     varchar"
                ),
                "use a new column with a sync trigger and a backfill, or `gantry migrate rebuild`",
            );
        }
    }

    fn add_column(&mut self, table: &ObjectName, key: &str, column: &ColumnDef) {
        let name = &column.name.value;
        self.column_types.insert(
            (key.to_string(), name.to_lowercase()),
            column.data_type.clone(),
        );
        self.type_style(&column.data_type, table, name);

        let mut not_null = false;
        let mut default: Option<&Expr> = None;
        let mut generated_stored = false;
        let mut identity = is_serial(&column.data_type);
        let mut auto_increment = false;
        for option in &column.options {
            match &option.option {
                ColumnOption::NotNull => not_null = true,
                ColumnOption::Default(expr) => default = Some(expr),
                ColumnOption::Generated {
                    generation_expr,
                    generation_expr_mode,
                    ..
                } => match generation_expr {
                    None => identity = true,
                    Some(_) => {
                        generated_stored = !matches!(
                            generation_expr_mode,
                            Some(ast::GeneratedExpressionMode::Virtual)
                        ) || self.is_pg();
                    }
                },
                ColumnOption::Identity(_) => identity = true,
                ColumnOption::DialectSpecific(tokens)
                    if tokens.iter().any(|t| {
                        let t = t.to_string();
                        t.eq_ignore_ascii_case("AUTO_INCREMENT")
                            || t.eq_ignore_ascii_case("AUTOINCREMENT")
                    }) =>
                {
                    auto_increment = true;
                }
                ColumnOption::PrimaryKey(_) => {
                    not_null = true;
                    if self.is_pg() {
                        self.lock(
                            "adding-serial-primary-key-field",
                            format!("adding {table}.{name} as a PRIMARY KEY builds its index under an ACCESS EXCLUSIVE lock"),
                            "add the column, build a unique index CONCURRENTLY, then `ADD CONSTRAINT … PRIMARY KEY USING INDEX …`",
                        );
                    }
                }
                ColumnOption::Unique(_) if self.is_pg() => {
                    self.lock(
                            "disallowed-unique-constraint",
                            format!("adding {table}.{name} as UNIQUE builds its index under an ACCESS EXCLUSIVE lock"),
                            "add the column, build a unique index CONCURRENTLY, then `ADD CONSTRAINT … UNIQUE USING INDEX …`",
                        );
                }
                ColumnOption::ForeignKey(_) if self.is_pg() => {
                    self.lock(
                            "adding-foreign-key-constraint",
                            format!("adding {table}.{name} with REFERENCES locks the referenced table against writes while the key is checked"),
                            "add the column, then `ADD CONSTRAINT … FOREIGN KEY … NOT VALID` and `VALIDATE CONSTRAINT` in a later migration",
                        );
                }
                ColumnOption::Check(_) if self.is_pg() => {
                    self.lock(
                            "constraint-missing-not-valid",
                            format!("adding {table}.{name} with a CHECK scans the table under an ACCESS EXCLUSIVE lock"),
                            "add the column, then `ADD CONSTRAINT … CHECK (…) NOT VALID` and `VALIDATE CONSTRAINT` in a later migration",
                        );
                }
                _ => {}
            }
        }

        if self.is_pg() && (identity || generated_stored) {
            let what = if generated_stored {
                "a stored generated column"
            } else {
                "an identity or serial column (its default, nextval(), is volatile)"
            };
            self.lock(
                "adding-field-with-default",
                format!("adding {table}.{name} as {what} rewrites the table under an ACCESS EXCLUSIVE lock"),
                "add a plain nullable column, fill it with a backfill file, and keep it in step with a trigger",
            );
        } else if let Some(expr) = default {
            match (self.dialect, non_volatile(expr)) {
                (Dialect::Postgres, Err(function)) => self.lock(
                    "adding-field-with-default",
                    format!(
                        "adding {table}.{name} with DEFAULT {expr} rewrites the table under an \
                         ACCESS EXCLUSIVE lock: {function} is volatile (or not on Gantry's list \
                         of non-volatile built-ins)"
                    ),
                    &format!(
                        "add the column without a default, then `ALTER TABLE {table} ALTER COLUMN \
                         {name} SET DEFAULT {expr}`, and fill existing rows with a backfill file"
                    ),
                ),
                _ => self.safe(
                    "add-column-with-default",
                    format!("adds {table}.{name} with DEFAULT {expr} (no rewrite)"),
                ),
            }
        }
        let has_value = default.is_some() || identity || generated_stored || auto_increment;
        if not_null && !has_value {
            self.contract(
                "adding-required-field",
                format!(
                    "adds {table}.{name} as NOT NULL without a default: inserts of the running \
                     release leave it out and fail"
                ),
                "add it nullable (or with a non-volatile DEFAULT), backfill, and set NOT NULL in \
                 the contract phase",
            );
        } else if default.is_none() && !identity && !generated_stored {
            let how = if auto_increment {
                "with AUTO_INCREMENT values"
            } else {
                "as a nullable column (a catalog change)"
            };
            self.safe("add-column", format!("adds {table}.{name} {how}"));
        }
    }

    fn add_constraint(
        &mut self,
        table: &ObjectName,
        constraint: &TableConstraint,
        not_valid: bool,
    ) {
        match self.dialect {
            Dialect::Postgres => match constraint {
                TableConstraint::Check(_) => {
                    if not_valid {
                        self.safe("add-constraint-not-valid", format!("adds a CHECK to {table} NOT VALID (no scan; new rows are checked)"));
                    } else {
                        self.lock(
                            "constraint-missing-not-valid",
                            format!("adding a CHECK to {table} without NOT VALID scans the table under an ACCESS EXCLUSIVE lock"),
                            "add it with NOT VALID, then run `VALIDATE CONSTRAINT` in a later migration (SHARE UPDATE EXCLUSIVE only)",
                        );
                    }
                }
                TableConstraint::ForeignKey(_) => {
                    if not_valid {
                        self.safe("add-constraint-not-valid", format!("adds a FOREIGN KEY to {table} NOT VALID (no scan; new rows are checked)"));
                    } else {
                        self.lock(
                            "adding-foreign-key-constraint",
                            format!("adding a FOREIGN KEY to {table} without NOT VALID scans it while both tables are locked against writes"),
                            "add it with NOT VALID, then run `VALIDATE CONSTRAINT` in a later migration",
                        );
                    }
                }
                TableConstraint::Unique(_) => self.lock(
                    "disallowed-unique-constraint",
                    format!("adding a UNIQUE constraint to {table} builds its index under an ACCESS EXCLUSIVE lock, blocking reads and writes"),
                    "`CREATE UNIQUE INDEX CONCURRENTLY …` first, then `ADD CONSTRAINT … UNIQUE USING INDEX …`",
                ),
                TableConstraint::PrimaryKey(_) => self.lock(
                    "adding-serial-primary-key-field",
                    format!("adding a PRIMARY KEY to {table} builds its index under an ACCESS EXCLUSIVE lock, blocking reads and writes"),
                    "`CREATE UNIQUE INDEX CONCURRENTLY …` first, then `ADD CONSTRAINT … PRIMARY KEY USING INDEX …`",
                ),
                TableConstraint::UniqueUsingIndex(_) | TableConstraint::PrimaryKeyUsingIndex(_) => self.safe(
                    "add-constraint-using-index",
                    format!("adds a constraint to {table} using an existing index (a catalog change)"),
                ),
                TableConstraint::Exclude(_) => self.lock(
                    "adding-exclusion-constraint",
                    format!("adding an EXCLUDE constraint to {table} builds its index under an ACCESS EXCLUSIVE lock"),
                    "there is no online form: run it in a quiet window, or `gantry migrate rebuild`",
                ),
                other => self.unknown(
                    "unclassified-operation",
                    format!("Gantry does not classify `ADD {other}` on {table}"),
                ),
            },
            Dialect::MySql => match constraint {
                TableConstraint::Index(_)
                | TableConstraint::Unique(_)
                | TableConstraint::FulltextOrSpatial(_)
                | TableConstraint::PrimaryKey(_) => {
                    self.safe("add-index", format!("adds an index or key to {table}"))
                }
                _ => self.safe("add-constraint", format!("adds a constraint to {table}")),
            },
            Dialect::Sqlite => self.unknown(
                "unclassified-operation",
                format!("SQLite cannot add a constraint to {table} with ALTER TABLE"),
            ),
        }
    }

    /// squawk's type rules for PostgreSQL columns (advice only).
    fn type_style(&mut self, data_type: &DataType, table: &ObjectName, column: &str) {
        if !self.is_pg() {
            return;
        }
        let (rule, message, advice) = match data_type {
            DataType::Char(Some(_)) | DataType::Character(Some(_)) => (
                "ban-char-field",
                format!("{table}.{column} is {data_type}: char(n) pads with spaces"),
                "use text (with a CHECK on length if needed)",
            ),
            DataType::Varchar(Some(CharacterLength::IntegerLength { .. }))
            | DataType::CharacterVarying(Some(CharacterLength::IntegerLength { .. })) => (
                "prefer-text-field",
                format!(
                    "{table}.{column} is {data_type}: changing the limit later needs a migration"
                ),
                "use text with a CHECK (char_length(…) <= n) added NOT VALID",
            ),
            DataType::Timestamp(_, TimezoneInfo::None | TimezoneInfo::WithoutTimeZone) => (
                "prefer-timestamptz",
                format!("{table}.{column} is timestamp without time zone"),
                "use timestamptz",
            ),
            DataType::Int(_) | DataType::Integer(_) | DataType::Int4(_) => (
                "prefer-bigint-over-int",
                format!("{table}.{column} is a 32-bit integer: ids and counters outgrow it"),
                "use bigint",
            ),
            DataType::SmallInt(_) | DataType::Int2(_) => (
                "prefer-bigint-over-smallint",
                format!("{table}.{column} is a 16-bit integer"),
                "use bigint",
            ),
            _ if is_serial(data_type) => (
                "prefer-identity",
                format!("{table}.{column} is {data_type}"),
                "use bigint GENERATED BY DEFAULT AS IDENTITY",
            ),
            _ => return,
        };
        self.advice(rule, message, advice);
    }
}

fn is_transaction_control(statement: &ast::Statement) -> bool {
    use ast::Statement as S;
    matches!(
        statement,
        S::StartTransaction { .. }
            | S::Commit { .. }
            | S::Rollback { .. }
            | S::Savepoint { .. }
            | S::ReleaseSavepoint { .. }
    )
}

/// Whether a statement changes the schema (takes schema locks), as opposed to reading or
/// writing rows or setting the session.
fn is_ddl(statement: &ast::Statement) -> bool {
    use ast::Statement as S;
    !matches!(
        statement,
        S::Query(_)
            | S::Insert(_)
            | S::Update(_)
            | S::Delete(_)
            | S::Set(_)
            | S::Pragma { .. }
            | S::Comment { .. }
            | S::Analyze(_)
    ) && !is_transaction_control(statement)
}

fn is_validate_only(statement: &ast::Statement) -> bool {
    match statement {
        ast::Statement::AlterTable(alter) => {
            !alter.operations.is_empty()
                && alter
                    .operations
                    .iter()
                    .all(|op| matches!(op, AlterTableOperation::ValidateConstraint { .. }))
        }
        _ => false,
    }
}

/// The kind of a statement for messages: its Display's leading words.
fn statement_kind(statement: &ast::Statement) -> String {
    let text = statement.to_string();
    let words: Vec<&str> = text.split_whitespace().take(2).collect();
    words.join(" ")
}

fn relation_name(relation: &TableFactor) -> Option<&ObjectName> {
    match relation {
        TableFactor::Table { name, .. } => Some(name),
        _ => None,
    }
}

/// A table's key for "created in this file": its last name part, lower-cased.
pub(crate) fn table_key(name: &ObjectName) -> String {
    name.0.last().and_then(|part| part.as_ident()).map_or_else(
        || name.to_string().to_lowercase(),
        |i| i.value.to_lowercase(),
    )
}

fn is_serial(data_type: &DataType) -> bool {
    match data_type {
        DataType::Custom(name, _) => {
            let n = table_key(name);
            matches!(
                n.as_str(),
                "serial" | "serial2" | "serial4" | "serial8" | "smallserial" | "bigserial"
            )
        }
        _ => false,
    }
}

/// varchar(n) → varchar(m ≥ n), varchar → text: a catalog-only change in PostgreSQL.
fn is_widening(old: &DataType, new: &DataType) -> bool {
    fn varchar(t: &DataType) -> Option<Option<u64>> {
        match t {
            DataType::Varchar(len) | DataType::CharacterVarying(len) => Some(match len {
                Some(CharacterLength::IntegerLength { length, .. }) => Some(*length),
                Some(CharacterLength::Max) | None => None,
            }),
            DataType::Text => Some(None),
            _ => None,
        }
    }
    match (varchar(old), varchar(new)) {
        (Some(Some(n)), Some(Some(m))) => m >= n && !matches!(new, DataType::Text),
        (Some(_), Some(None)) => true,
        _ => false,
    }
}

/// Built-in functions whose value does not change per row: PostgreSQL 11+ stores such a
/// default once instead of rewriting the table. Everything else is taken as volatile.
const NON_VOLATILE: &[&str] = &[
    "now",
    "current_timestamp",
    "current_date",
    "current_time",
    "localtime",
    "localtimestamp",
    "transaction_timestamp",
    "statement_timestamp",
    "current_user",
    "session_user",
    "current_role",
    "current_schema",
    "current_catalog",
    "user",
    "lower",
    "upper",
    "coalesce",
    "nullif",
    "greatest",
    "least",
    "abs",
    "round",
    "make_date",
    "make_interval",
    "to_jsonb",
    "jsonb_build_object",
    "jsonb_build_array",
    "json_build_object",
    "json_build_array",
    "array_fill",
];

/// `Ok` when `expr` is a constant or non-volatile built-in; `Err` names what is not.
fn non_volatile(expr: &Expr) -> Result<(), String> {
    match expr {
        Expr::Value(_) | Expr::TypedString { .. } => Ok(()),
        Expr::Cast { expr, .. } | Expr::Nested(expr) | Expr::UnaryOp { expr, .. } => {
            non_volatile(expr)
        }
        Expr::Collate { expr, .. } => non_volatile(expr),
        Expr::BinaryOp { left, right, .. } => {
            non_volatile(left)?;
            non_volatile(right)
        }
        Expr::Interval(interval) => non_volatile(&interval.value),
        Expr::Array(array) => array.elem.iter().try_for_each(non_volatile),
        Expr::Identifier(ident) => {
            let name = ident.value.to_lowercase();
            if NON_VOLATILE.contains(&name.as_str()) {
                Ok(())
            } else {
                Err(ident.value.clone())
            }
        }
        Expr::Function(function) => {
            let name = table_key(&function.name);
            if !NON_VOLATILE.contains(&name.as_str()) {
                return Err(format!("{}()", function.name));
            }
            match &function.args {
                FunctionArguments::None => Ok(()),
                FunctionArguments::Subquery(_) => Err(format!("{}(subquery)", function.name)),
                FunctionArguments::List(list) => list.args.iter().try_for_each(|arg| match arg {
                    FunctionArg::Named { arg, .. }
                    | FunctionArg::ExprNamed { arg, .. }
                    | FunctionArg::Unnamed(arg) => match arg {
                        FunctionArgExpr::Expr(expr) => non_volatile(expr),
                        _ => Err(format!("{}(*)", function.name)),
                    },
                }),
            }
        }
        other => Err(other.to_string()),
    }
}

fn algorithm_and_lock(
    ops: &[AlterTableOperation],
) -> (Option<&AlterTableAlgorithm>, Option<&AlterTableLock>) {
    let mut algorithm = None;
    let mut lock = None;
    for op in ops {
        match op {
            AlterTableOperation::Algorithm { algorithm: a, .. } => algorithm = Some(a),
            AlterTableOperation::Lock { lock: l, .. } => lock = Some(l),
            _ => {}
        }
    }
    (algorithm, lock)
}

/// `Ok(how)` when an explicit ALGORITHM and LOCK make MySQL/MariaDB refuse rather than
/// copy; `Err(why)` otherwise.
fn mysql_online(
    algorithm: Option<&AlterTableAlgorithm>,
    lock: Option<&AlterTableLock>,
    nocopy: bool,
) -> Result<String, String> {
    let lock_ok = matches!(lock, Some(AlterTableLock::None));
    match algorithm {
        None if lock_ok => Err("has LOCK=NONE but no ALGORITHM".into()),
        None => Err("has no explicit ALGORITHM and LOCK".into()),
        Some(AlterTableAlgorithm::Copy) => {
            Err("has ALGORITHM=COPY, which copies the table and blocks writes".into())
        }
        Some(AlterTableAlgorithm::Default) => {
            Err("has ALGORITHM=DEFAULT, which lets the server choose to copy".into())
        }
        Some(AlterTableAlgorithm::Instant) => match lock {
            None | Some(AlterTableLock::None | AlterTableLock::Default) => {
                Ok("ALGORITHM=INSTANT".into())
            }
            Some(other) => Err(format!("has LOCK={other}, which blocks writes")),
        },
        Some(AlterTableAlgorithm::Inplace) => {
            let algorithm = if nocopy { "NOCOPY" } else { "INPLACE" };
            if lock_ok {
                Ok(format!("ALGORITHM={algorithm}, LOCK=NONE"))
            } else {
                match lock {
                    Some(other) => Err(format!(
                        "has ALGORITHM={algorithm} with LOCK={other}, which blocks writes"
                    )),
                    None => Err(format!("has ALGORITHM={algorithm} but no LOCK=NONE")),
                }
            }
        }
    }
}

/// The last part of a name as written, without quotes (`public."Users"` → `Users`).
pub(crate) fn last_name(name: &ObjectName) -> String {
    name.0
        .last()
        .and_then(|part| part.as_ident())
        .map_or_else(|| name.to_string(), |i| i.value.clone())
}

/// The key of a table named in text (`public."Users"`, `` `orders` ``): its last
/// dot-separated part outside quotes, unquoted and lower-cased, as [`table_key`] makes it.
pub(crate) fn last_part(text: &str) -> String {
    let mut part = String::new();
    let mut quote: Option<char> = None;
    for c in text.chars() {
        match quote {
            Some(q) if c == q => quote = None,
            Some(_) => part.push(c),
            None => match c {
                '"' | '`' => quote = Some(c),
                '[' => quote = Some(']'),
                '.' => part.clear(),
                c if c.is_whitespace() => {}
                c => part.push(c),
            },
        }
    }
    part.to_lowercase()
}

/// What a migration's statements declare that a backfill relies on.
#[derive(Debug, Default)]
pub(crate) struct Facts {
    /// Tables the statements create.
    pub(crate) new_tables: HashSet<String>,
    /// Tables the statements create a trigger on.
    pub(crate) triggers: HashSet<String>,
    /// (table, column) pairs given a default.
    pub(crate) defaults: HashSet<(String, String)>,
}

/// Reads tables created, triggers created and defaults set from `statements`.
pub(crate) fn schema_facts(dialect: Dialect, statements: &[Statement]) -> Facts {
    let mut facts = Facts::default();
    for stmt in statements {
        match parse(dialect, stmt) {
            Parsed::Ast { statement, .. } => match *statement {
                ast::Statement::CreateTable(create) => {
                    let key = table_key(&create.name);
                    for column in &create.columns {
                        if column
                            .options
                            .iter()
                            .any(|o| matches!(o.option, ColumnOption::Default(_)))
                        {
                            facts
                                .defaults
                                .insert((key.clone(), column.name.value.to_lowercase()));
                        }
                    }
                    facts.new_tables.insert(key);
                }
                ast::Statement::AlterTable(alter) => {
                    let key = table_key(&alter.name);
                    for op in &alter.operations {
                        match op {
                            AlterTableOperation::AddColumn { column_def, .. }
                                if column_def
                                    .options
                                    .iter()
                                    .any(|o| matches!(o.option, ColumnOption::Default(_))) =>
                            {
                                facts
                                    .defaults
                                    .insert((key.clone(), column_def.name.value.to_lowercase()));
                            }
                            AlterTableOperation::AlterColumn {
                                column_name,
                                op: AlterColumnOperation::SetDefault { .. },
                            } => {
                                facts
                                    .defaults
                                    .insert((key.clone(), column_name.value.to_lowercase()));
                            }
                            _ => {}
                        }
                    }
                }
                ast::Statement::CreateTrigger(trigger) => {
                    facts.triggers.insert(table_key(&trigger.table_name));
                }
                _ => {}
            },
            Parsed::Keywords(KeywordKind::CreateTrigger) => {
                if let Some(table) = trigger_table(dialect, &stmt.text) {
                    facts.triggers.insert(table);
                }
            }
            Parsed::Keywords(_) | Parsed::Error { .. } => {}
        }
    }
    facts
}

/// The table of a `CREATE TRIGGER … ON table …` read by its tokens.
fn trigger_table(dialect: Dialect, text: &str) -> Option<String> {
    let tokens = split::tokens(dialect, text)?;
    let on = tokens
        .iter()
        .position(|t| t.kind == Kind::Word && text[t.start..t.end].eq_ignore_ascii_case("ON"))?;
    let mut name = String::new();
    let mut i = on + 1;
    while let Some(token) = tokens.get(i) {
        if !matches!(token.kind, Kind::Word | Kind::Quoted) {
            break;
        }
        name.push_str(&text[token.start..token.end]);
        match tokens.get(i + 1) {
            Some(next) if &text[next.start..next.end] == "." => {
                name.push('.');
                i += 2;
            }
            _ => break,
        }
    }
    (!name.is_empty()).then(|| last_part(&name))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::split::split;
    use Dialect::{MySql, Postgres, Sqlite};

    fn class_tag(class: Class) -> &'static str {
        match class {
            Class::ExpandSafe => "safe",
            Class::ContractOnly => "contract",
            Class::LockRisk => "lock",
            Class::Advice => "advice",
            Class::Unknown => "unknown",
            Class::Invalid => "invalid",
        }
    }

    /// Splits and classifies `sql`; compares the findings as sorted `class:rule` strings.
    fn check(dialect: Dialect, sql: &str, expected: &[&str]) {
        let statements = match split(dialect, sql) {
            Ok(s) => s,
            Err(e) => panic!("{dialect} {sql:?}: {e}"),
        };
        let findings = classify(dialect, &statements);
        let mut got: Vec<String> = findings
            .iter()
            .map(|f| format!("{}:{}", class_tag(f.class), f.rule))
            .collect();
        got.sort();
        let mut want: Vec<String> = expected.iter().map(ToString::to_string).collect();
        want.sort();
        assert_eq!(got, want, "{dialect}: {sql}\n{findings:#?}");
        // Every statement has a finding; none is silently safe.
        for index in 0..statements.len() {
            assert!(findings.iter().any(|f| f.statement_index == index), "{sql}");
        }
    }

    /// (the rule the case is about, as squawk or Gantry names it; dialect; SQL; findings)
    type Case = (&'static str, Dialect, &'static str, &'static [&'static str]);

    const CASES: &[Case] = &[
        // --- adding-field-with-default (squawk; PostgreSQL rewrites for volatile defaults)
        ("adding-field-with-default", Postgres, "ALTER TABLE t ADD COLUMN a double precision DEFAULT random()", &["lock:adding-field-with-default"]),
        ("adding-field-with-default", Postgres, "ALTER TABLE t ADD COLUMN id uuid DEFAULT gen_random_uuid()", &["lock:adding-field-with-default"]),
        ("adding-field-with-default", Postgres, "ALTER TABLE t ADD COLUMN at timestamptz DEFAULT clock_timestamp()", &["lock:adding-field-with-default"]),
        ("adding-field-with-default", Postgres, "ALTER TABLE t ADD COLUMN a text DEFAULT my_function()", &["lock:adding-field-with-default"]),
        ("adding-field-with-default", Postgres, "ALTER TABLE t ADD COLUMN a bigint DEFAULT 1 + (random() * 10)::bigint", &["lock:adding-field-with-default"]),
        ("adding-field-with-default", Postgres, "ALTER TABLE t ADD COLUMN n bigserial", &["lock:adding-field-with-default", "advice:prefer-identity"]),
        ("adding-field-with-default", Postgres, "ALTER TABLE t ADD COLUMN n bigint GENERATED ALWAYS AS IDENTITY", &["lock:adding-field-with-default"]),
        ("adding-field-with-default", Postgres, "ALTER TABLE t ADD COLUMN n bigint GENERATED ALWAYS AS (a * 2) STORED", &["lock:adding-field-with-default"]),
        ("adding-field-with-default", Postgres, "ALTER TABLE t ADD COLUMN a bigint DEFAULT 10", &["safe:add-column-with-default"]),
        ("adding-field-with-default", Postgres, "ALTER TABLE t ADD COLUMN a timestamptz DEFAULT now()", &["safe:add-column-with-default"]),
        ("adding-field-with-default", Postgres, "ALTER TABLE t ADD COLUMN a timestamptz DEFAULT CURRENT_TIMESTAMP", &["safe:add-column-with-default"]),
        ("adding-field-with-default", Postgres, "ALTER TABLE t ADD COLUMN a date DEFAULT CURRENT_DATE", &["safe:add-column-with-default"]),
        ("adding-field-with-default", Postgres, "ALTER TABLE t ADD COLUMN a jsonb NOT NULL DEFAULT '{}'::jsonb", &["safe:add-column-with-default"]),
        ("adding-field-with-default", Postgres, "ALTER TABLE t ADD COLUMN a bigint DEFAULT -1", &["safe:add-column-with-default"]),
        ("adding-field-with-default", Postgres, "ALTER TABLE t ADD COLUMN a interval DEFAULT interval '1 day'", &["safe:add-column-with-default"]),
        ("adding-field-with-default", Postgres, "ALTER TABLE t ADD COLUMN a text DEFAULT lower('X') || 'y'", &["safe:add-column-with-default"]),
        ("adding-field-with-default", Postgres, "ALTER TABLE t ADD COLUMN a boolean DEFAULT true", &["safe:add-column-with-default"]),
        ("adding-field-with-default", MySql, "ALTER TABLE t ADD COLUMN a double DEFAULT (rand()), ALGORITHM=INPLACE, LOCK=NONE", &["safe:add-column-with-default"]),
        ("adding-field-with-default", Sqlite, "ALTER TABLE t ADD COLUMN a REAL DEFAULT 0", &["safe:add-column-with-default"]),
        // --- adding-required-field (squawk): NOT NULL without a default breaks inserts
        ("adding-required-field", Postgres, "ALTER TABLE t ADD COLUMN a text NOT NULL", &["contract:adding-required-field"]),
        ("adding-required-field", Postgres, "ALTER TABLE t ADD COLUMN a text NOT NULL DEFAULT ''", &["safe:add-column-with-default"]),
        ("adding-required-field", Postgres, "ALTER TABLE t ADD COLUMN a text", &["safe:add-column"]),
        ("adding-required-field", MySql, "ALTER TABLE t ADD COLUMN a varchar(10) NOT NULL, ALGORITHM=INSTANT", &["contract:adding-required-field"]),
        ("adding-required-field", MySql, "ALTER TABLE t ADD COLUMN a varchar(10) NOT NULL DEFAULT '', ALGORITHM=INSTANT", &["safe:add-column-with-default"]),
        ("adding-required-field", MySql, "ALTER TABLE t ADD COLUMN id bigint NOT NULL AUTO_INCREMENT, ALGORITHM=INPLACE, LOCK=NONE", &["safe:add-column"]),
        ("adding-required-field", Sqlite, "ALTER TABLE t ADD COLUMN a TEXT NOT NULL", &["contract:adding-required-field"]),
        ("adding-required-field", Sqlite, "ALTER TABLE t ADD COLUMN a TEXT NOT NULL DEFAULT ''", &["safe:add-column-with-default"]),
        // --- adding-not-nullable-field (squawk): SET NOT NULL on an existing column
        ("adding-not-nullable-field", Postgres, "ALTER TABLE t ALTER COLUMN a SET NOT NULL", &["contract:adding-not-nullable-field"]),
        ("adding-not-nullable-field", Postgres, "ALTER TABLE t ADD CONSTRAINT a_not_null CHECK (a IS NOT NULL) NOT VALID", &["safe:add-constraint-not-valid"]),
        ("adding-not-nullable-field", Postgres, "CREATE TABLE n (a text); ALTER TABLE n ALTER COLUMN a SET NOT NULL", &["safe:create-table", "safe:alter-new-table"]),
        ("adding-not-nullable-field", MySql, "ALTER TABLE t MODIFY a varchar(10) NOT NULL, ALGORITHM=INPLACE, LOCK=NONE", &["contract:adding-not-nullable-field", "contract:changing-column-type"]),
        ("adding-not-nullable-field", MySql, "ALTER TABLE t MODIFY a varchar(10) NULL, ALGORITHM=INPLACE, LOCK=NONE", &["contract:changing-column-type"]),
        // --- require-concurrent-index-creation (squawk)
        ("require-concurrent-index-creation", Postgres, "CREATE INDEX i ON t (a)", &["lock:require-concurrent-index-creation"]),
        ("require-concurrent-index-creation", Postgres, "CREATE UNIQUE INDEX i ON t (a)", &["lock:require-concurrent-index-creation"]),
        ("require-concurrent-index-creation", Postgres, "CREATE INDEX CONCURRENTLY i ON t (a)", &["safe:create-index-concurrently"]),
        ("require-concurrent-index-creation", Postgres, "CREATE UNIQUE INDEX CONCURRENTLY IF NOT EXISTS i ON t (a)", &["safe:create-index-concurrently"]),
        ("require-concurrent-index-creation", Postgres, "CREATE TABLE n (a text); CREATE INDEX i ON n (a)", &["safe:create-table", "safe:create-index-on-new-table"]),
        ("require-concurrent-index-creation", Postgres, "CREATE TABLE IF NOT EXISTS n (a text); CREATE INDEX i ON n (a)", &["safe:create-table", "lock:require-concurrent-index-creation"]),
        ("require-concurrent-index-creation", Sqlite, "CREATE INDEX i ON t (a)", &["safe:create-index"]),
        // --- mysql-alter-without-algorithm-lock (Gantry): explicit online algorithm or a warning
        ("mysql-alter-without-algorithm-lock", MySql, "CREATE INDEX i ON t (a)", &["lock:mysql-alter-without-algorithm-lock"]),
        ("mysql-alter-without-algorithm-lock", MySql, "CREATE INDEX i ON t (a) ALGORITHM=INPLACE LOCK=NONE", &["safe:create-index-online"]),
        ("mysql-alter-without-algorithm-lock", MySql, "CREATE INDEX i ON t (a) ALGORITHM=INPLACE", &["lock:mysql-alter-without-algorithm-lock"]),
        ("mysql-alter-without-algorithm-lock", MySql, "ALTER TABLE t ADD COLUMN a int", &["safe:add-column", "lock:mysql-alter-without-algorithm-lock"]),
        ("mysql-alter-without-algorithm-lock", MySql, "ALTER TABLE t ADD INDEX i (a), ALGORITHM=INPLACE, LOCK=NONE", &["safe:add-index"]),
        ("mysql-alter-without-algorithm-lock", MySql, "ALTER TABLE t ADD INDEX i (a), ALGORITHM=NOCOPY, LOCK=NONE", &["safe:add-index"]),
        ("mysql-alter-without-algorithm-lock", MySql, "ALTER TABLE t ADD INDEX i (a), ALGORITHM=NOCOPY", &["safe:add-index", "lock:mysql-alter-without-algorithm-lock"]),
        ("mysql-alter-without-algorithm-lock", MySql, "ALTER TABLE t ADD COLUMN a int, ALGORITHM=INSTANT", &["safe:add-column"]),
        ("mysql-alter-without-algorithm-lock", MySql, "ALTER TABLE t ADD COLUMN a int, ALGORITHM=COPY, LOCK=NONE", &["safe:add-column", "lock:mysql-alter-without-algorithm-lock"]),
        ("mysql-alter-without-algorithm-lock", MySql, "ALTER TABLE t ADD COLUMN a int, ALGORITHM=INPLACE, LOCK=SHARED", &["safe:add-column", "lock:mysql-alter-without-algorithm-lock"]),
        ("mysql-alter-without-algorithm-lock", MySql, "ALTER TABLE t ADD COLUMN a int, LOCK=NONE", &["safe:add-column", "lock:mysql-alter-without-algorithm-lock"]),
        ("mysql-alter-without-algorithm-lock", MySql, "CREATE TABLE n (a int); ALTER TABLE n ADD INDEX i (a)", &["safe:create-table", "safe:alter-new-table"]),
        ("mysql-alter-without-algorithm-lock", Postgres, "ALTER TABLE t ADD COLUMN a text", &["safe:add-column"]),
        // --- require-concurrent-index-deletion (squawk); ban-drop-index
        ("require-concurrent-index-deletion", Postgres, "DROP INDEX i", &["contract:ban-drop-index", "lock:require-concurrent-index-deletion"]),
        ("require-concurrent-index-deletion", Postgres, "DROP INDEX CONCURRENTLY IF EXISTS i", &["contract:ban-drop-index"]),
        ("ban-drop-index", MySql, "DROP INDEX i ON t", &["contract:ban-drop-index"]),
        ("ban-drop-index", MySql, "ALTER TABLE t DROP INDEX i, ALGORITHM=INPLACE, LOCK=NONE", &["contract:ban-drop-index"]),
        ("ban-drop-index", Sqlite, "DROP INDEX i", &["contract:ban-drop-index"]),
        // --- changing-column-type (squawk)
        ("changing-column-type", Postgres, "ALTER TABLE t ALTER COLUMN a TYPE bigint", &["contract:changing-column-type", "lock:changing-column-type"]),
        ("changing-column-type", Postgres, "ALTER TABLE t ALTER COLUMN a SET DATA TYPE text", &["contract:changing-column-type", "lock:changing-column-type"]),
        ("changing-column-type", Postgres, "ALTER TABLE t ADD COLUMN a varchar(10); ALTER TABLE t ALTER COLUMN a TYPE varchar(20)", &["safe:add-column", "advice:prefer-text-field", "safe:widen-column-type"]),
        ("changing-column-type", Postgres, "ALTER TABLE t ADD COLUMN a varchar(10); ALTER TABLE t ALTER COLUMN a TYPE text", &["safe:add-column", "advice:prefer-text-field", "safe:widen-column-type"]),
        ("changing-column-type", Postgres, "ALTER TABLE t ADD COLUMN a varchar(20); ALTER TABLE t ALTER COLUMN a TYPE varchar(10)", &["safe:add-column", "advice:prefer-text-field", "contract:changing-column-type", "lock:changing-column-type"]),
        ("changing-column-type", MySql, "ALTER TABLE t MODIFY a bigint, ALGORITHM=INPLACE, LOCK=NONE", &["contract:changing-column-type"]),
        ("changing-column-type", MySql, "ALTER TABLE t ALTER COLUMN a SET DEFAULT 1, ALGORITHM=INSTANT", &["safe:set-default"]),
        // --- ban-drop-column (squawk)
        ("ban-drop-column", Postgres, "ALTER TABLE t DROP COLUMN a", &["contract:ban-drop-column"]),
        ("ban-drop-column", MySql, "ALTER TABLE t DROP COLUMN a, ALGORITHM=INSTANT", &["contract:ban-drop-column"]),
        ("ban-drop-column", Postgres, "ALTER TABLE t ADD COLUMN a text", &["safe:add-column"]),
        ("ban-drop-column", MySql, "ALTER TABLE t ADD COLUMN a int, ALGORITHM=INSTANT", &["safe:add-column"]),
        ("ban-drop-column", Sqlite, "ALTER TABLE t DROP COLUMN a", &["contract:ban-drop-column"]),
        ("ban-drop-column", Sqlite, "ALTER TABLE t ADD COLUMN a TEXT", &["safe:add-column"]),
        // --- ban-drop-table (squawk)
        ("ban-drop-table", Postgres, "DROP TABLE t", &["contract:ban-drop-table"]),
        ("ban-drop-table", MySql, "DROP TABLE IF EXISTS t", &["contract:ban-drop-table"]),
        ("ban-drop-table", Sqlite, "DROP TABLE t", &["contract:ban-drop-table"]),
        ("ban-drop-table", Postgres, "CREATE TABLE t (id bigint PRIMARY KEY)", &["safe:create-table"]),
        ("ban-drop-table", MySql, "CREATE TABLE t (id bigint PRIMARY KEY)", &["safe:create-table"]),
        ("ban-drop-table", Sqlite, "CREATE TABLE t (id INTEGER PRIMARY KEY)", &["safe:create-table"]),
        // --- renaming-column (squawk)
        ("renaming-column", Postgres, "ALTER TABLE t RENAME COLUMN a TO b", &["contract:renaming-column"]),
        ("renaming-column", MySql, "ALTER TABLE t RENAME COLUMN a TO b, ALGORITHM=INSTANT", &["contract:renaming-column"]),
        ("renaming-column", MySql, "ALTER TABLE t CHANGE a b bigint, ALGORITHM=INPLACE, LOCK=NONE", &["contract:renaming-column", "contract:changing-column-type"]),
        ("renaming-column", MySql, "ALTER TABLE t CHANGE a a bigint, ALGORITHM=INPLACE, LOCK=NONE", &["contract:changing-column-type"]),
        ("renaming-column", Sqlite, "ALTER TABLE t RENAME COLUMN a TO b", &["contract:renaming-column"]),
        ("renaming-column", Sqlite, "ALTER TABLE t ADD COLUMN b TEXT", &["safe:add-column"]),
        ("renaming-column", Postgres, "ALTER TABLE t RENAME CONSTRAINT a TO b", &["safe:rename-constraint"]),
        // --- renaming-table (squawk)
        ("renaming-table", Postgres, "ALTER TABLE t RENAME TO u", &["contract:renaming-table"]),
        ("renaming-table", MySql, "RENAME TABLE t TO u", &["contract:renaming-table"]),
        ("renaming-table", Sqlite, "ALTER TABLE t RENAME TO u", &["contract:renaming-table"]),
        ("renaming-table", MySql, "ALTER TABLE t RENAME COLUMN a TO b, ALGORITHM=INSTANT", &["contract:renaming-column"]),
        ("renaming-table", Sqlite, "ALTER TABLE t RENAME COLUMN a TO b", &["contract:renaming-column"]),
        ("renaming-table", Postgres, "ALTER INDEX i RENAME TO j", &["safe:rename-index"]),
        // --- disallowed-unique-constraint (squawk)
        ("disallowed-unique-constraint", Postgres, "ALTER TABLE t ADD CONSTRAINT u UNIQUE (a)", &["lock:disallowed-unique-constraint"]),
        ("disallowed-unique-constraint", Postgres, "ALTER TABLE t ADD COLUMN a text UNIQUE", &["safe:add-column", "lock:disallowed-unique-constraint"]),
        ("disallowed-unique-constraint", Postgres, "ALTER TABLE t ADD CONSTRAINT u UNIQUE USING INDEX i", &["safe:add-constraint-using-index"]),
        ("disallowed-unique-constraint", MySql, "ALTER TABLE t ADD UNIQUE INDEX u (a), ALGORITHM=INPLACE, LOCK=NONE", &["safe:add-index"]),
        // --- adding-serial-primary-key-field (squawk)
        ("adding-serial-primary-key-field", Postgres, "ALTER TABLE t ADD CONSTRAINT pk PRIMARY KEY (id)", &["lock:adding-serial-primary-key-field"]),
        ("adding-serial-primary-key-field", Postgres, "ALTER TABLE t ADD COLUMN id bigserial PRIMARY KEY", &["lock:adding-serial-primary-key-field", "lock:adding-field-with-default", "advice:prefer-identity"]),
        ("adding-serial-primary-key-field", Postgres, "ALTER TABLE t ADD CONSTRAINT pk PRIMARY KEY USING INDEX i", &["safe:add-constraint-using-index"]),
        // --- constraint-missing-not-valid (squawk)
        ("constraint-missing-not-valid", Postgres, "ALTER TABLE t ADD CONSTRAINT c CHECK (a > 0)", &["lock:constraint-missing-not-valid"]),
        ("constraint-missing-not-valid", Postgres, "ALTER TABLE t ADD CONSTRAINT c CHECK (a > 0) NOT VALID", &["safe:add-constraint-not-valid"]),
        ("constraint-missing-not-valid", Postgres, "ALTER TABLE t ADD COLUMN a bigint CHECK (a > 0)", &["safe:add-column", "lock:constraint-missing-not-valid"]),
        // --- adding-foreign-key-constraint (squawk)
        ("adding-foreign-key-constraint", Postgres, "ALTER TABLE t ADD CONSTRAINT fk FOREIGN KEY (u) REFERENCES users (id)", &["lock:adding-foreign-key-constraint"]),
        ("adding-foreign-key-constraint", Postgres, "ALTER TABLE t ADD CONSTRAINT fk FOREIGN KEY (u) REFERENCES users (id) NOT VALID", &["safe:add-constraint-not-valid"]),
        ("adding-foreign-key-constraint", Postgres, "ALTER TABLE t ADD COLUMN u bigint REFERENCES users (id)", &["safe:add-column", "lock:adding-foreign-key-constraint"]),
        ("adding-foreign-key-constraint", Postgres, "CREATE TABLE n (u bigint); ALTER TABLE n ADD CONSTRAINT fk FOREIGN KEY (u) REFERENCES users (id)", &["safe:create-table", "safe:alter-new-table"]),
        ("adding-foreign-key-constraint", MySql, "ALTER TABLE t ADD CONSTRAINT fk FOREIGN KEY (u) REFERENCES users (id), ALGORITHM=INPLACE, LOCK=NONE", &["safe:add-constraint"]),
        // --- validate-constraint-with-ddl (squawk's constraint-missing-not-valid, second half)
        ("validate-constraint-with-ddl", Postgres, "ALTER TABLE t ADD CONSTRAINT c CHECK (a > 0) NOT VALID; ALTER TABLE t VALIDATE CONSTRAINT c", &["safe:add-constraint-not-valid", "lock:validate-constraint-with-ddl"]),
        ("validate-constraint-with-ddl", Postgres, "ALTER TABLE t VALIDATE CONSTRAINT c", &["safe:validate-constraint"]),
        ("validate-constraint-with-ddl", Postgres, "UPDATE t SET a = 1 WHERE a IS NULL; ALTER TABLE t VALIDATE CONSTRAINT c", &["safe:data-change", "safe:validate-constraint"]),
        ("validate-constraint-with-ddl", Postgres, "CREATE INDEX CONCURRENTLY i ON t (a); ALTER TABLE t VALIDATE CONSTRAINT c", &["safe:create-index-concurrently", "safe:validate-constraint"]),
        // --- ban-drop-default, ban-drop-constraint, ban-drop-not-null (squawk)
        ("ban-drop-default", Postgres, "ALTER TABLE t ALTER COLUMN a DROP DEFAULT", &["contract:ban-drop-default"]),
        ("ban-drop-default", MySql, "ALTER TABLE t ALTER COLUMN a DROP DEFAULT, ALGORITHM=INSTANT", &["contract:ban-drop-default"]),
        ("ban-drop-default", MySql, "ALTER TABLE t ALTER COLUMN a SET DEFAULT 1, ALGORITHM=INSTANT", &["safe:set-default"]),
        ("ban-drop-default", Postgres, "ALTER TABLE t ALTER COLUMN a SET DEFAULT random()", &["safe:set-default"]),
        ("ban-drop-constraint", Postgres, "ALTER TABLE t DROP CONSTRAINT c", &["contract:ban-drop-constraint"]),
        ("ban-drop-constraint", MySql, "ALTER TABLE t DROP FOREIGN KEY fk, ALGORITHM=INPLACE, LOCK=NONE", &["contract:ban-drop-constraint"]),
        ("ban-drop-not-null", Postgres, "ALTER TABLE t ALTER COLUMN a DROP NOT NULL", &["advice:ban-drop-not-null"]),
        // --- transaction-nesting, ban-concurrent-index-creation-in-transaction (squawk)
        ("transaction-nesting", Postgres, "BEGIN; ALTER TABLE t ADD COLUMN a text; COMMIT;", &["invalid:transaction-nesting", "safe:add-column", "invalid:transaction-nesting"]),
        ("transaction-nesting", MySql, "START TRANSACTION; INSERT INTO t VALUES (1); COMMIT", &["invalid:transaction-nesting", "safe:data-change", "invalid:transaction-nesting"]),
        ("transaction-nesting", Sqlite, "BEGIN; INSERT INTO t VALUES (1); COMMIT", &["invalid:transaction-nesting", "safe:data-change", "invalid:transaction-nesting"]),
        ("transaction-nesting", Postgres, "ALTER TABLE t ADD COLUMN a text; INSERT INTO t (a) VALUES ('x')", &["safe:add-column", "safe:data-change"]),
        ("transaction-nesting", MySql, "INSERT INTO t VALUES (1)", &["safe:data-change"]),
        ("transaction-nesting", Sqlite, "INSERT INTO t VALUES (1)", &["safe:data-change"]),
        ("ban-concurrent-index-creation-in-transaction", Postgres, "CREATE INDEX CONCURRENTLY i ON t (a)", &["safe:create-index-concurrently"]),
        ("ban-concurrent-index-creation-in-transaction", Postgres, "BEGIN; CREATE INDEX CONCURRENTLY i ON t (a); COMMIT", &["invalid:transaction-nesting", "invalid:ban-concurrent-index-creation-in-transaction", "safe:create-index-concurrently", "invalid:transaction-nesting"]),
        // --- require-concurrent-reindex (squawk)
        ("require-concurrent-reindex", Postgres, "REINDEX INDEX i", &["lock:require-concurrent-reindex"]),
        ("require-concurrent-reindex", Postgres, "REINDEX INDEX CONCURRENTLY i", &["advice:reindex-concurrently"]),
        // --- ban-truncate and the other drops (squawk's ban-drop-*)
        ("ban-truncate", Postgres, "TRUNCATE t", &["contract:ban-truncate"]),
        ("ban-truncate", MySql, "TRUNCATE TABLE t", &["contract:ban-truncate"]),
        ("ban-drop-view", Postgres, "DROP VIEW v", &["contract:ban-drop-view"]),
        ("ban-drop-view", MySql, "DROP VIEW v", &["contract:ban-drop-view"]),
        ("ban-drop-view", Sqlite, "DROP VIEW v", &["contract:ban-drop-view"]),
        ("ban-drop-function", Postgres, "DROP FUNCTION f()", &["contract:ban-drop-function"]),
        ("ban-drop-trigger", Postgres, "DROP TRIGGER tr ON t", &["contract:ban-drop-trigger"]),
        ("ban-drop-trigger", MySql, "DROP TRIGGER tr", &["contract:ban-drop-trigger"]),
        ("ban-drop-trigger", Sqlite, "DROP TRIGGER tr", &["contract:ban-drop-trigger"]),
        ("ban-drop-sequence", Postgres, "DROP SEQUENCE s", &["contract:ban-drop-sequence"]),
        ("ban-drop-type", Postgres, "DROP TYPE mood", &["contract:ban-drop-type"]),
        ("ban-drop-schema", Postgres, "DROP SCHEMA s", &["contract:ban-drop-schema"]),
        ("ban-drop-database", Postgres, "DROP DATABASE d", &["contract:ban-drop-database"]),
        ("ban-drop-extension", Postgres, "DROP EXTENSION pg_trgm", &["contract:ban-drop-extension"]),
        // --- ban-replace-view-function (squawk); create view and function are expand-safe
        ("ban-replace-view-function", Postgres, "CREATE OR REPLACE VIEW v AS SELECT 1", &["advice:ban-replace-view-function"]),
        ("ban-replace-view-function", Postgres, "CREATE VIEW v AS SELECT 1", &["safe:create-view"]),
        ("ban-replace-view-function", MySql, "CREATE OR REPLACE VIEW v AS SELECT 1", &["advice:ban-replace-view-function"]),
        ("ban-replace-view-function", MySql, "CREATE VIEW v AS SELECT 1", &["safe:create-view"]),
        ("ban-replace-view-function", Sqlite, "CREATE VIEW v AS SELECT 1", &["safe:create-view"]),
        ("ban-replace-view-function", Postgres, "CREATE OR REPLACE FUNCTION f() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN NEW.a := 1; RETURN NEW; END $$", &["advice:ban-replace-view-function"]),
        ("ban-replace-view-function", Postgres, "CREATE FUNCTION f() RETURNS integer LANGUAGE sql AS $$ SELECT 1 $$", &["safe:create-function"]),
        // --- create-trigger (Gantry): the lock a trigger takes
        ("create-trigger", Postgres, "CREATE TRIGGER tr BEFORE INSERT ON t FOR EACH ROW EXECUTE FUNCTION f()", &["lock:create-trigger"]),
        ("create-trigger", Postgres, "CREATE TABLE n (a text); CREATE TRIGGER tr BEFORE INSERT ON n FOR EACH ROW EXECUTE FUNCTION f()", &["safe:create-table", "safe:create-trigger-on-new-table"]),
        ("create-trigger", MySql, "CREATE TRIGGER tr BEFORE INSERT ON t FOR EACH ROW SET NEW.a = 1", &["lock:create-trigger"]),
        ("create-trigger", MySql, "DELIMITER //\nCREATE TRIGGER tr BEFORE INSERT ON t FOR EACH ROW BEGIN SET NEW.a = 1; END//", &["lock:create-trigger"]),
        ("create-trigger", Sqlite, "CREATE TRIGGER tr AFTER INSERT ON t BEGIN UPDATE u SET a = 1; END", &["lock:create-trigger"]),
        ("create-trigger", MySql, "CREATE TABLE n (a int); CREATE TRIGGER tr BEFORE INSERT ON n FOR EACH ROW SET NEW.a = 1", &["safe:create-table", "safe:create-trigger-on-new-table"]),
        ("create-trigger", Sqlite, "CREATE TABLE n (a TEXT); CREATE TRIGGER tr AFTER INSERT ON n BEGIN UPDATE u SET a = 1; END", &["safe:create-table", "safe:create-trigger-on-new-table"]),
        // --- update-without-where / delete-without-where (Gantry): long transactions
        ("update-without-where", Postgres, "UPDATE t SET a = 1", &["lock:update-without-where"]),
        ("update-without-where", Postgres, "UPDATE t SET a = 1 WHERE a IS NULL", &["safe:data-change"]),
        ("update-without-where", Postgres, "CREATE TABLE n (a text); UPDATE n SET a = 'x'", &["safe:create-table", "safe:data-change"]),
        ("update-without-where", MySql, "UPDATE t SET a = 1", &["lock:update-without-where"]),
        ("update-without-where", MySql, "UPDATE t SET a = 1 WHERE id < 10", &["safe:data-change"]),
        ("update-without-where", Sqlite, "UPDATE t SET a = 1", &["lock:update-without-where"]),
        ("update-without-where", Sqlite, "INSERT INTO t (a) VALUES (1)", &["safe:data-change"]),
        ("delete-without-where", Postgres, "DELETE FROM t", &["lock:delete-without-where"]),
        ("delete-without-where", Postgres, "DELETE FROM t WHERE id = 1", &["safe:data-change"]),
        ("delete-without-where", MySql, "DELETE FROM t", &["lock:delete-without-where"]),
        ("delete-without-where", MySql, "DELETE FROM t WHERE id = 1", &["safe:data-change"]),
        ("delete-without-where", Sqlite, "DELETE FROM t WHERE id = 1", &["safe:data-change"]),
        // --- squawk's type rules (advice, PostgreSQL)
        ("prefer-timestamptz", Postgres, "CREATE TABLE n (at timestamp)", &["safe:create-table", "advice:prefer-timestamptz"]),
        ("prefer-timestamptz", Postgres, "CREATE TABLE n (at timestamptz)", &["safe:create-table"]),
        ("prefer-timestamptz", MySql, "CREATE TABLE n (at timestamp)", &["safe:create-table"]),
        ("ban-char-field", Postgres, "CREATE TABLE n (code char(3))", &["safe:create-table", "advice:ban-char-field"]),
        ("ban-char-field", Postgres, "CREATE TABLE n (code text)", &["safe:create-table"]),
        ("prefer-text-field", Postgres, "ALTER TABLE t ADD COLUMN name varchar(100)", &["safe:add-column", "advice:prefer-text-field"]),
        ("prefer-text-field", Postgres, "ALTER TABLE t ADD COLUMN name text", &["safe:add-column"]),
        ("prefer-text-field", MySql, "ALTER TABLE t ADD COLUMN name varchar(100), ALGORITHM=INSTANT", &["safe:add-column"]),
        ("prefer-bigint-over-int", Postgres, "CREATE TABLE n (id int PRIMARY KEY)", &["safe:create-table", "advice:prefer-bigint-over-int"]),
        ("prefer-bigint-over-int", Postgres, "CREATE TABLE n (id bigint PRIMARY KEY)", &["safe:create-table"]),
        ("prefer-bigint-over-smallint", Postgres, "CREATE TABLE n (n smallint)", &["safe:create-table", "advice:prefer-bigint-over-smallint"]),
        ("prefer-bigint-over-smallint", Postgres, "CREATE TABLE n (n bigint)", &["safe:create-table"]),
        ("prefer-identity", Postgres, "CREATE TABLE n (id serial PRIMARY KEY)", &["safe:create-table", "advice:prefer-identity"]),
        ("prefer-identity", Postgres, "CREATE TABLE n (id bigint GENERATED BY DEFAULT AS IDENTITY PRIMARY KEY)", &["safe:create-table"]),
        // --- maintenance
        ("vacuum-full", Postgres, "VACUUM FULL t", &["lock:vacuum-full"]),
        ("vacuum-full", Postgres, "VACUUM t", &["safe:maintenance"]),
        ("add-enum-value", Postgres, "ALTER TYPE mood ADD VALUE 'meh'", &["safe:add-enum-value"]),
        ("renaming-type", Postgres, "ALTER TYPE mood RENAME TO feeling", &["contract:renaming-type"]),
        ("explicit-lock", Postgres, "LOCK TABLE t IN ACCESS EXCLUSIVE MODE", &["lock:explicit-lock"]),
        ("explicit-lock", MySql, "LOCK TABLES t WRITE", &["lock:explicit-lock"]),
        ("create-object", Postgres, "CREATE EXTENSION IF NOT EXISTS pg_trgm", &["safe:create-object"]),
        ("create-object", Postgres, "CREATE TYPE mood AS ENUM ('sad', 'ok')", &["safe:create-object"]),
        ("create-object", Postgres, "CREATE SEQUENCE s", &["safe:create-object"]),
        ("comment", Postgres, "COMMENT ON TABLE t IS 'x'", &["safe:comment"]),
        ("session-setting", Postgres, "SET search_path TO app", &["safe:session-setting"]),
        ("session-setting", Sqlite, "PRAGMA foreign_keys = 1", &["safe:session-setting"]),
        // --- unknown: never safe
        ("unparsable-statement", Postgres, "ALTER TABLE t FROBNICATE", &["unknown:unparsable-statement"]),
        ("unparsable-statement", MySql, "ALTER TABLE t FROBNICATE", &["unknown:unparsable-statement"]),
        ("unparsable-statement", Sqlite, "ALTER TABLE t FROBNICATE", &["unknown:unparsable-statement"]),
        ("unclassified-statement", Postgres, "LISTEN channel", &["unknown:unclassified-statement"]),
        ("unclassified-operation", Postgres, "ALTER TABLE t ENABLE ROW LEVEL SECURITY", &["unknown:unclassified-operation"]),
    ];

    #[test]
    fn rules() {
        for (rule, dialect, sql, expected) in CASES {
            // Each case cites a rule that is either expected or a negative case for it.
            assert!(!rule.is_empty());
            check(*dialect, sql, expected);
        }
    }

    /// Every rule that has a positive case also has a negative case (a case about it where
    /// it is not expected), for each dialect it fires in.
    #[test]
    fn every_rule_has_a_negative_case() {
        let fired = |rule: &str, expected: &[&str]| {
            expected
                .iter()
                .any(|e| e.split_once(':').is_some_and(|(_, r)| r == rule))
        };
        let exempt = [
            // Always a finding of their own kind; no statement "almost" matches them.
            "unparsable-statement",
            "unclassified-statement",
            "unclassified-operation",
            "ban-drop-function",
            "ban-drop-sequence",
            "ban-drop-type",
            "ban-drop-schema",
            "ban-drop-database",
            "ban-drop-extension",
            "ban-truncate",
            "ban-drop-view",
            "ban-drop-trigger",
            "ban-drop-index",
            "ban-drop-constraint",
            "ban-drop-not-null",
            "explicit-lock",
            "renaming-type",
            "add-enum-value",
            "create-object",
            "comment",
            "session-setting",
        ];
        let mut missing = Vec::new();
        for (rule, dialect, _, expected) in CASES {
            if exempt.contains(rule) || !fired(rule, expected) {
                continue;
            }
            let negative = CASES
                .iter()
                .any(|(r, d, _, e)| r == rule && d == dialect && !fired(rule, e));
            if !negative {
                missing.push(format!("{rule} in {dialect}"));
            }
        }
        missing.dedup();
        assert!(missing.is_empty(), "no negative case for: {missing:?}");
    }

    #[test]
    fn unknown_positions_point_into_the_file() {
        let sql = "ALTER TABLE t ADD COLUMN a text;\n\n  ALTER TABLE t\n    FROBNICATE;";
        let statements = split(Postgres, sql).unwrap_or_default();
        let findings = classify(Postgres, &statements);
        let f = findings
            .iter()
            .find(|f| f.rule == "unparsable-statement")
            .cloned();
        let f = f.unwrap_or_else(|| panic!("{findings:?}"));
        assert_eq!((f.statement_index, f.line, f.column), (1, 4, 5), "{f:?}");
        assert_eq!(f.severity, Severity::Error);
        assert!(f.message.contains("Expected"), "{}", f.message);

        let statements = split(
            Postgres,
            "select 1; ALTER TABLE t ADD COLUMN a FOO BAR BAZ;",
        )
        .unwrap_or_default();
        let findings = classify(Postgres, &statements);
        let f = &findings[1];
        assert_eq!((f.rule, f.line), ("unparsable-statement", 1), "{f:?}");
        assert!(f.column > 11, "{f:?}");
    }

    #[test]
    fn advice_says_how() {
        let statements = split(
            Postgres,
            "ALTER TABLE users ALTER COLUMN email SET NOT NULL",
        )
        .unwrap_or_default();
        let f = &classify(Postgres, &statements)[0];
        let advice = f.advice.clone().unwrap_or_default();
        assert!(
            advice.contains("CHECK (email IS NOT NULL) NOT VALID"),
            "{advice}"
        );
        assert!(advice.contains("VALIDATE CONSTRAINT"), "{advice}");
        assert!(advice.contains("PostgreSQL 12+"), "{advice}");
    }

    #[test]
    fn phase_check() {
        let statements = split(
            Postgres,
            "DROP TABLE t; CREATE INDEX i ON t (a); CREATE TABLE n (id bigint); SELECT x FROM",
        )
        .unwrap_or_default();
        let findings = classify(Postgres, &statements);
        let expand: Vec<(&str, Severity)> = check_phase(Phase::Expand, findings.clone())
            .iter()
            .map(|f| (f.rule, f.severity))
            .collect();
        assert_eq!(
            expand,
            vec![
                ("ban-drop-table", Severity::Error),
                ("require-concurrent-index-creation", Severity::Warning),
                ("create-table", Severity::Info),
                ("unparsable-statement", Severity::Error),
            ]
        );
        let contract: Vec<Severity> = check_phase(Phase::Contract, findings)
            .iter()
            .map(|f| f.severity)
            .collect();
        assert_eq!(
            contract,
            vec![
                Severity::Info,
                Severity::Warning,
                Severity::Info,
                Severity::Error
            ]
        );
    }

    #[test]
    fn own_transaction() {
        let cases: &[(Dialect, &str, bool)] = &[
            (Postgres, "CREATE INDEX CONCURRENTLY i ON t (a)", true),
            (
                Postgres,
                "create unique index concurrently i on t (a)",
                true,
            ),
            (Postgres, "DROP INDEX CONCURRENTLY i", true),
            (Postgres, "REINDEX INDEX CONCURRENTLY i", true),
            (Postgres, "REINDEX (VERBOSE) TABLE CONCURRENTLY t", true),
            (Postgres, "VACUUM ANALYZE t", true),
            (Postgres, "ALTER TYPE mood ADD VALUE 'meh'", true),
            (
                Postgres,
                "ALTER TYPE mood ADD VALUE IF NOT EXISTS 'meh' AFTER 'ok'",
                true,
            ),
            (
                Postgres,
                "ALTER TABLE p DETACH PARTITION c CONCURRENTLY",
                true,
            ),
            (Postgres, "CREATE INDEX i ON t (a)", false),
            (Postgres, "REINDEX INDEX i", false),
            (Postgres, "ALTER TYPE mood RENAME VALUE 'a' TO 'b'", false),
            (Postgres, "SELECT 'CREATE INDEX CONCURRENTLY'", false),
            (Postgres, "/* CREATE INDEX CONCURRENTLY */ SELECT 1", false),
            (
                MySql,
                "CREATE INDEX i ON t (a) ALGORITHM=INPLACE LOCK=NONE",
                false,
            ),
            (Sqlite, "VACUUM", true),
            (Sqlite, "CREATE INDEX i ON t (a)", false),
        ];
        for (dialect, sql, expected) in cases {
            assert_eq!(
                needs_own_transaction(*dialect, &Statement::from_text(sql)),
                *expected,
                "{dialect}: {sql}"
            );
        }
    }

    #[test]
    fn nocopy_rewrite() {
        assert_eq!(
            mysql_nocopy("ALTER TABLE t ADD INDEX i (a), ALGORITHM = nocopy, LOCK=NONE").as_deref(),
            Some("ALTER TABLE t ADD INDEX i (a), ALGORITHM = INPLACE, LOCK=NONE")
        );
        assert_eq!(mysql_nocopy("SELECT 'ALGORITHM=NOCOPY'"), None);
        assert_eq!(mysql_nocopy("SELECT nocopy FROM t"), None);
    }

    #[test]
    fn names() {
        assert_eq!(last_part("public.\"Users\""), "users");
        assert_eq!(last_part("`db`.`or.ders`"), "or.ders");
        assert_eq!(last_part("t"), "t");
    }
}
