//! The migrations folder: `<dir>/<database>/expand/0001_add_email.sql`,
//! `<dir>/<database>/contract/0001_drop_legacy_email.sql`, and optional companions
//! `NNNN_name.backfill.sql` (a backfill for migration NNNN of the same phase).
//!
//! A file name is `NNNN_description.sql`: digits, an underscore, a description of ASCII
//! letters, digits, `_` and `-` (`_` reads as a space). Refused, naming the files: two
//! files with the same number (`0001_a.sql` and `1_b.sql` are both number 1), an empty file
//! (only whitespace or comments), a name that does not match, a backfill without its
//! migration. Hidden files (`.gitkeep`) are ignored; anything else is refused, so a typo in
//! a name never silently skips a migration.
//!
//! [`Migration::from_source`] builds a migration from text alone (pure);
//! [`load_database`] and [`list_databases`] are the only functions of this crate that
//! read files.

use std::collections::BTreeMap;
use std::fmt;
use std::path::Path;

use serde::{Deserialize, Serialize};

use crate::backfill::{parse_backfill, Backfill, BackfillError};
use crate::checksum::{file_checksum, normalize};
use crate::split::{split, Dialect, SplitError, Statement};

/// The two phases of a zero-downtime schema change.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Phase {
    /// Additive, backward-compatible changes, run before the deploy.
    Expand,
    /// Drops, renames and tightening, run once the new release is stable.
    Contract,
}

impl Phase {
    /// Both phases, in the order they run.
    pub const ALL: [Phase; 2] = [Phase::Expand, Phase::Contract];

    /// The phase's folder name and its name on the command line.
    pub fn name(self) -> &'static str {
        match self {
            Phase::Expand => "expand",
            Phase::Contract => "contract",
        }
    }

    /// The phase for `expand` or `contract`.
    pub fn from_name(name: &str) -> Option<Phase> {
        match name {
            "expand" => Some(Phase::Expand),
            "contract" => Some(Phase::Contract),
            _ => None,
        }
    }

    /// The default name of the phase's version table.
    pub fn default_version_table(self) -> &'static str {
        match self {
            Phase::Expand => "gantry_schema_expand",
            Phase::Contract => "gantry_schema_contract",
        }
    }
}

impl fmt::Display for Phase {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// One database's migrations, each phase sorted by version.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Database {
    pub name: String,
    pub expand: Vec<Migration>,
    pub contract: Vec<Migration>,
}

impl Database {
    /// The migrations of `phase`.
    pub fn phase(&self, phase: Phase) -> &[Migration] {
        match phase {
            Phase::Expand => &self.expand,
            Phase::Contract => &self.contract,
        }
    }
}

/// One migration file, read and split.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Migration {
    pub phase: Phase,
    pub version: u32,
    /// From the file name, `_` read as a space.
    pub description: String,
    /// The file's path for display (as the migrations folder was named, plus
    /// `<database>/<phase>/<file>`).
    pub path: String,
    /// The file's text, normalised (no BOM, LF line ends); statement ranges index it.
    pub text: String,
    /// SHA-256 of the normalised text.
    pub checksum: String,
    pub statements: Vec<Statement>,
    pub backfill: Option<Backfill>,
}

impl Migration {
    /// A migration from its path (whose last part is the file name) and text, with an
    /// optional backfill file (path and text). Pure: nothing is read.
    pub fn from_source(
        dialect: Dialect,
        phase: Phase,
        path: &str,
        text: &str,
        backfill: Option<(&str, &str)>,
    ) -> Result<Migration, LayoutError> {
        let file_name = path.rsplit(['/', '\\']).next().unwrap_or(path);
        let name = parse_file_name(file_name).map_err(|reason| LayoutError::BadName {
            path: path.to_string(),
            reason,
        })?;
        if name.backfill {
            return Err(LayoutError::BadName {
                path: path.to_string(),
                reason: "a .backfill.sql file is a companion, not a migration".into(),
            });
        }
        let normalized = normalize(text).into_owned();
        let statements = split(dialect, &normalized).map_err(|source| LayoutError::Split {
            path: path.to_string(),
            source,
        })?;
        if statements.is_empty() {
            return Err(LayoutError::Empty {
                path: path.to_string(),
            });
        }
        let backfill = match backfill {
            None => None,
            Some((backfill_path, backfill_text)) => {
                let mut parsed = parse_backfill(dialect, backfill_text).map_err(|source| {
                    LayoutError::Backfill {
                        path: backfill_path.to_string(),
                        source,
                    }
                })?;
                parsed.path = backfill_path.to_string();
                Some(parsed)
            }
        };
        Ok(Migration {
            phase,
            version: name.version,
            description: name.description,
            path: path.to_string(),
            checksum: file_checksum(&normalized),
            text: normalized,
            statements,
            backfill,
        })
    }
}

/// Why a migrations folder cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum LayoutError {
    #[error("cannot read {path}: {source}")]
    Io {
        path: String,
        #[source]
        source: std::io::Error,
    },
    #[error(
        "no database folder {name:?} in {dir} (found: {}); pass --db with one of them, or \
         create {dir}/{name}/expand/",
        list(.known)
    )]
    UnknownDatabase {
        dir: String,
        name: String,
        known: Vec<String>,
    },
    #[error(
        "{path}: the name does not match NNNN_description.sql ({reason}); rename it, or move \
         it out of the folder"
    )]
    BadName { path: String, reason: String },
    #[error(
        "{path}: unexpected entry; a database folder holds only expand/ and contract/: move it \
         out or rename it"
    )]
    UnexpectedEntry { path: String },
    #[error(
        "{first} and {second} both have number {version}; give one of them the next free \
         number"
    )]
    DuplicateVersion {
        version: u32,
        first: String,
        second: String,
    },
    #[error(
        "{path} is empty (no statement, only whitespace or comments); write the migration or \
         delete the file"
    )]
    Empty { path: String },
    #[error("{path} is not UTF-8 text; save it as UTF-8")]
    NotUtf8 { path: String },
    #[error("{path}: {source}")]
    Split {
        path: String,
        #[source]
        source: SplitError,
    },
    #[error("{path}: {source}")]
    Backfill {
        path: String,
        #[source]
        source: BackfillError,
    },
    #[error(
        "{path} declares a backfill for migration {version}, but {phase}/ has no migration \
         numbered {version}; name it after its migration (NNNN_name.backfill.sql)"
    )]
    OrphanBackfill {
        path: String,
        version: u32,
        phase: Phase,
    },
    #[error(
        "{first} and {second} are both backfills for migration {version}; a migration has at \
         most one: merge them into one UPDATE or give the second its own migration"
    )]
    DuplicateBackfill {
        version: u32,
        first: String,
        second: String,
    },
}

impl LayoutError {
    /// The file the error is about, when there is one.
    pub fn path(&self) -> Option<&str> {
        match self {
            LayoutError::Io { path, .. }
            | LayoutError::BadName { path, .. }
            | LayoutError::UnexpectedEntry { path }
            | LayoutError::Empty { path }
            | LayoutError::NotUtf8 { path }
            | LayoutError::Split { path, .. }
            | LayoutError::Backfill { path, .. }
            | LayoutError::OrphanBackfill { path, .. } => Some(path),
            LayoutError::DuplicateVersion { second, .. }
            | LayoutError::DuplicateBackfill { second, .. } => Some(second),
            LayoutError::UnknownDatabase { .. } => None,
        }
    }
}

fn list(names: &[String]) -> String {
    if names.is_empty() {
        "none".to_string()
    } else {
        names.join(", ")
    }
}

/// A file name taken apart.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FileName {
    pub version: u32,
    pub description: String,
    /// `NNNN_name.backfill.sql`.
    pub backfill: bool,
}

/// Reads `NNNN_description.sql` or `NNNN_description.backfill.sql`; `Err` says what does
/// not match.
pub fn parse_file_name(name: &str) -> Result<FileName, String> {
    let Some(stem) = name.strip_suffix(".sql") else {
        return Err("it does not end in .sql".into());
    };
    let (stem, backfill) = match stem.strip_suffix(".backfill") {
        Some(stem) => (stem, true),
        None => (stem, false),
    };
    let Some((digits, description)) = stem.split_once('_') else {
        return Err("no underscore after the number".into());
    };
    if digits.is_empty() || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return Err("it does not start with a number".into());
    }
    let version: u32 = digits
        .parse()
        .map_err(|_| format!("the number {digits} is too large"))?;
    if description.is_empty() {
        return Err("the description after the underscore is empty".into());
    }
    if let Some(bad) = description
        .chars()
        .find(|c| !(c.is_ascii_alphanumeric() || *c == '_' || *c == '-'))
    {
        return Err(format!(
            "{bad:?} in the description; use letters, digits, `_` and `-`"
        ));
    }
    Ok(FileName {
        version,
        description: description.replace('_', " ").trim().to_string(),
        backfill,
    })
}

/// The database folders in `dir`, sorted; empty when `dir` cannot be read.
pub fn list_databases(dir: &Path) -> Vec<String> {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return Vec::new();
    };
    let mut names: Vec<String> = entries
        .filter_map(Result::ok)
        .filter(|e| e.path().is_dir())
        .filter_map(|e| e.file_name().into_string().ok())
        .filter(|n| !n.starts_with('.'))
        .collect();
    names.sort();
    names
}

/// Reads and splits every migration of `database` in `dir` (both phases, sorted by
/// version). A missing phase folder holds no migrations.
pub fn load_database(
    dir: &Path,
    database: &str,
    dialect: Dialect,
) -> Result<Database, LayoutError> {
    let unknown = || LayoutError::UnknownDatabase {
        dir: dir.display().to_string(),
        name: database.to_string(),
        known: list_databases(dir),
    };
    if database.is_empty() || database.starts_with('.') || database.contains(['/', '\\']) {
        return Err(unknown());
    }
    let db_dir = dir.join(database);
    if !db_dir.is_dir() {
        return Err(unknown());
    }
    for entry in read_dir_sorted(&db_dir)? {
        let (name, path) = entry;
        if name.starts_with('.') || Phase::from_name(&name).is_some_and(|_| path.is_dir()) {
            continue;
        }
        return Err(LayoutError::UnexpectedEntry {
            path: path.display().to_string(),
        });
    }
    let expand = load_phase(&db_dir, Phase::Expand, dialect)?;
    let contract = load_phase(&db_dir, Phase::Contract, dialect)?;
    Ok(Database {
        name: database.to_string(),
        expand,
        contract,
    })
}

fn read_dir_sorted(dir: &Path) -> Result<Vec<(String, std::path::PathBuf)>, LayoutError> {
    let io = |source| LayoutError::Io {
        path: dir.display().to_string(),
        source,
    };
    let mut out = Vec::new();
    for entry in std::fs::read_dir(dir).map_err(io)? {
        let entry = entry.map_err(io)?;
        let path = entry.path();
        let name = entry
            .file_name()
            .into_string()
            .map_err(|_| LayoutError::NotUtf8 {
                path: path.display().to_string(),
            })?;
        out.push((name, path));
    }
    out.sort();
    Ok(out)
}

fn read_text(path: &Path) -> Result<String, LayoutError> {
    let display = path.display().to_string();
    let bytes = std::fs::read(path).map_err(|source| LayoutError::Io {
        path: display.clone(),
        source,
    })?;
    String::from_utf8(bytes).map_err(|_| LayoutError::NotUtf8 { path: display })
}

fn load_phase(
    db_dir: &Path,
    phase: Phase,
    dialect: Dialect,
) -> Result<Vec<Migration>, LayoutError> {
    let phase_dir = db_dir.join(phase.name());
    if !phase_dir.exists() {
        return Ok(Vec::new());
    }
    let mut entries = Vec::new();
    for (name, path) in read_dir_sorted(&phase_dir)? {
        if name.starts_with('.') {
            continue;
        }
        let text = if path.is_dir() {
            None
        } else {
            Some(read_text(&path)?)
        };
        entries.push(Entry {
            name,
            display: path.display().to_string(),
            text,
        });
    }
    build_phase(phase, dialect, entries)
}

/// One entry of a phase folder: a file with its text, or a folder (`text` `None`).
struct Entry {
    name: String,
    display: String,
    text: Option<String>,
}

/// A phase's migrations from its folder's entries (sorted by name): the same checks for a
/// folder on disk and for files sent to the server.
fn build_phase(
    phase: Phase,
    dialect: Dialect,
    entries: Vec<Entry>,
) -> Result<Vec<Migration>, LayoutError> {
    let mut migrations: BTreeMap<u32, (String, String)> = BTreeMap::new();
    let mut backfills: BTreeMap<u32, (String, String)> = BTreeMap::new();
    for entry in entries {
        let Some(text) = entry.text else {
            return Err(LayoutError::BadName {
                path: entry.display,
                reason: "it is a folder".into(),
            });
        };
        let parsed = parse_file_name(&entry.name).map_err(|reason| LayoutError::BadName {
            path: entry.display.clone(),
            reason,
        })?;
        let map = if parsed.backfill {
            &mut backfills
        } else {
            &mut migrations
        };
        if let Some((first, _)) = map.get(&parsed.version) {
            let first = first.clone();
            return Err(if parsed.backfill {
                LayoutError::DuplicateBackfill {
                    version: parsed.version,
                    first,
                    second: entry.display,
                }
            } else {
                LayoutError::DuplicateVersion {
                    version: parsed.version,
                    first,
                    second: entry.display,
                }
            });
        }
        map.insert(parsed.version, (entry.display, text));
    }
    for (version, (display, _)) in &backfills {
        if !migrations.contains_key(version) {
            return Err(LayoutError::OrphanBackfill {
                path: display.clone(),
                version: *version,
                phase,
            });
        }
    }
    let mut out = Vec::with_capacity(migrations.len());
    for (version, (display, text)) in migrations {
        let backfill = backfills
            .get(&version)
            .map(|(path, text)| (path.as_str(), text.as_str()));
        out.push(Migration::from_source(
            dialect, phase, &display, &text, backfill,
        )?);
    }
    Ok(out)
}

/// A database from files given by their paths relative to its folder
/// (`expand/0001_add_email.sql`, `contract/0001_drop_legacy.sql`), as a client sends them
/// to the server: the checks of [`load_database`], nothing read. Paths are shown as
/// `<database>/<path>`.
pub fn database_from_files(
    database: &str,
    dialect: Dialect,
    files: &[(&str, &str)],
) -> Result<Database, LayoutError> {
    let mut expand = Vec::new();
    let mut contract = Vec::new();
    let mut sorted: Vec<&(&str, &str)> = files.iter().collect();
    sorted.sort_by_key(|(path, _)| *path);
    for (path, text) in sorted {
        let display = format!("{database}/{path}");
        let (folder, name) = path.split_once('/').unwrap_or(("", path));
        let entries = match Phase::from_name(folder) {
            Some(Phase::Expand) => &mut expand,
            Some(Phase::Contract) => &mut contract,
            None => return Err(LayoutError::UnexpectedEntry { path: display }),
        };
        entries.push(Entry {
            text: (!name.contains('/')).then(|| text.to_string()),
            name: name.to_string(),
            display,
        });
    }
    Ok(Database {
        name: database.to_string(),
        expand: build_phase(Phase::Expand, dialect, expand)?,
        contract: build_phase(Phase::Contract, dialect, contract)?,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn write(root: &Path, rel: &str, text: &str) {
        let path = root.join(rel);
        if let Some(parent) = path.parent() {
            std::fs::create_dir_all(parent).unwrap();
        }
        std::fs::write(path, text).unwrap();
    }

    /// Lays out `files` under a temp dir, loads database `app`, and checks the outcome:
    /// `Ok(versions of expand, versions of contract)` or `Err(needles in the message)`.
    fn check(files: &[(&str, &str)], expected: Result<(&[u32], &[u32]), &[&str]>) {
        let dir = tempfile::tempdir().unwrap();
        for (rel, text) in files {
            write(dir.path(), rel, text);
        }
        let got = load_database(dir.path(), "app", Dialect::Postgres);
        match (got, expected) {
            (Ok(db), Ok((expand, contract))) => {
                let e: Vec<u32> = db.expand.iter().map(|m| m.version).collect();
                let c: Vec<u32> = db.contract.iter().map(|m| m.version).collect();
                assert_eq!(
                    (e.as_slice(), c.as_slice()),
                    (expand, contract),
                    "{files:?}"
                );
            }
            (Err(e), Err(needles)) => {
                let message = e.to_string();
                for needle in needles {
                    assert!(message.contains(needle), "{message:?} lacks {needle:?}");
                }
            }
            (got, expected) => panic!("{files:?}: got {got:?}, expected {expected:?}"),
        }
    }

    #[test]
    fn layouts() {
        let ok = "ALTER TABLE users ADD COLUMN email text;\n";
        type Case<'a> = (
            &'a [(&'a str, &'a str)],
            Result<(&'a [u32], &'a [u32]), &'a [&'a str]>,
        );
        let cases: &[Case] = &[
            (&[("app/expand/0001_add_email.sql", ok)], Ok((&[1], &[]))),
            (
                &[
                    ("app/expand/0002_b.sql", ok),
                    ("app/expand/0010_c.sql", ok),
                    ("app/expand/0001_a.sql", ok),
                    (
                        "app/contract/0001_drop.sql",
                        "ALTER TABLE users DROP COLUMN legacy;",
                    ),
                    ("app/expand/.gitkeep", ""),
                    ("app/.DS_Store", ""),
                ],
                Ok((&[1, 2, 10], &[1])),
            ),
            (&[("app/contract/0001_a.sql", ok)], Ok((&[], &[1]))),
            (
                &[("app/expand/0001_a.sql", ok), ("app/expand/1_b.sql", ok)],
                Err(&["0001_a.sql", "1_b.sql", "both have number 1"]),
            ),
            (
                &[("app/expand/0001_a.sql", "  \n-- nothing yet\n/* later */\n")],
                Err(&["0001_a.sql is empty"]),
            ),
            (
                &[("app/expand/0001_a.sql", "")],
                Err(&["0001_a.sql is empty"]),
            ),
            (
                &[("app/expand/add_email.sql", ok)],
                Err(&[
                    "add_email.sql",
                    "does not match NNNN_description.sql",
                    "does not start with a number",
                ]),
            ),
            (
                &[("app/expand/v1_add_email.sql", ok)],
                Err(&["v1_add_email.sql", "does not start with a number"]),
            ),
            (
                &[("app/expand/0001_.sql", ok)],
                Err(&["description after the underscore is empty"]),
            ),
            (
                &[("app/expand/0001_add email.sql", ok)],
                Err(&["' ' in the description"]),
            ),
            (
                &[("app/expand/0001_add_email.txt", ok)],
                Err(&["does not end in .sql"]),
            ),
            (&[("app/expand/99999999999_x.sql", ok)], Err(&["too large"])),
            (
                &[("app/expnad/0001_x.sql", ok)],
                Err(&["expnad", "unexpected entry"]),
            ),
            (
                &[("app/expand/0001_a.sql", "select 'unterminated;\n")],
                Err(&["0001_a.sql: line 1, column 8: unterminated single-quoted string"]),
            ),
            (
                &[
                    ("app/expand/0001_add.sql", ok),
                    (
                        "app/expand/0001_add.backfill.sql",
                        "UPDATE users SET email = '' WHERE email IS NULL;",
                    ),
                ],
                Ok((&[1], &[])),
            ),
            (
                &[
                    ("app/expand/0001_add.sql", ok),
                    (
                        "app/expand/0002_fill.backfill.sql",
                        "UPDATE users SET email = '' WHERE email IS NULL;",
                    ),
                ],
                Err(&["0002_fill.backfill.sql", "no migration numbered 2"]),
            ),
            (
                &[
                    ("app/expand/0001_add.sql", ok),
                    (
                        "app/expand/0001_a.backfill.sql",
                        "UPDATE users SET a = 1 WHERE a IS NULL;",
                    ),
                    (
                        "app/expand/1_b.backfill.sql",
                        "UPDATE users SET b = 1 WHERE b IS NULL;",
                    ),
                ],
                Err(&[
                    "0001_a.backfill.sql",
                    "1_b.backfill.sql",
                    "both backfills for migration 1",
                ]),
            ),
            (
                &[
                    ("app/expand/0001_add.sql", ok),
                    (
                        "app/expand/0001_add.backfill.sql",
                        "DELETE FROM users WHERE email IS NULL;",
                    ),
                ],
                Err(&["0001_add.backfill.sql: line 1, column 1: found `DELETE FROM …`"]),
            ),
            (
                &[("app/expand/0001_a.sql/x", ok)],
                Err(&["0001_a.sql", "it is a folder"]),
            ),
        ];
        for (files, expected) in cases {
            check(files, *expected);
        }
    }

    #[test]
    fn migration_fields() {
        let dir = tempfile::tempdir().unwrap();
        write(
            dir.path(),
            "app/expand/0007_add_user_email.sql",
            "\u{feff}-- add it\r\nALTER TABLE users ADD COLUMN email text;\r\nCREATE INDEX CONCURRENTLY users_email ON users (email);\r\n",
        );
        write(
            dir.path(),
            "app/expand/0007_fill.backfill.sql",
            "UPDATE users SET email = '' WHERE email IS NULL",
        );
        let db = load_database(dir.path(), "app", Dialect::Postgres).unwrap();
        let m = &db.expand[0];
        assert_eq!(m.phase, Phase::Expand);
        assert_eq!(m.version, 7);
        assert_eq!(m.description, "add user email");
        assert!(
            m.path.ends_with("app/expand/0007_add_user_email.sql"),
            "{}",
            m.path
        );
        assert!(!m.text.contains('\r') && !m.text.starts_with('\u{feff}'));
        assert_eq!(
            m.checksum,
            crate::checksum::file_checksum(
                "-- add it\nALTER TABLE users ADD COLUMN email text;\nCREATE INDEX CONCURRENTLY users_email ON users (email);\n"
            )
        );
        assert_eq!(m.statements.len(), 2);
        assert_eq!((m.statements[0].line, m.statements[0].column), (2, 1));
        assert_eq!(&m.text[m.statements[1].range.clone()], m.statements[1].text);
        let backfill = m.backfill.as_ref().unwrap();
        assert!(backfill.path.ends_with("0007_fill.backfill.sql"));
        assert_eq!(backfill.table, "users");
        assert_eq!(db.phase(Phase::Contract).len(), 0);
    }

    #[test]
    fn databases() {
        let dir = tempfile::tempdir().unwrap();
        write(dir.path(), "billing/expand/0001_a.sql", "select 1;");
        write(dir.path(), "app/expand/0001_a.sql", "select 1;");
        write(dir.path(), ".hidden/expand/0001_a.sql", "select 1;");
        write(dir.path(), "README.md", "notes");
        assert_eq!(list_databases(dir.path()), vec!["app", "billing"]);
        assert!(list_databases(&dir.path().join("missing")).is_empty());
        for name in ["nope", "", "../app", ".hidden", "app/expand"] {
            let err = load_database(dir.path(), name, Dialect::Postgres).unwrap_err();
            let message = err.to_string();
            assert!(message.contains("found: app, billing"), "{name}: {message}");
            assert!(message.contains("pass --db"), "{message}");
        }
    }

    #[test]
    fn file_names() {
        type Expected<'a> = Result<(u32, &'a str, bool), &'a str>;
        let cases: &[(&str, Expected)] = &[
            ("0001_add_email.sql", Ok((1, "add email", false))),
            ("1_b.sql", Ok((1, "b", false))),
            (
                "0042_drop-legacy_email.sql",
                Ok((42, "drop-legacy email", false)),
            ),
            ("0003_fill_email.backfill.sql", Ok((3, "fill email", true))),
            ("0003.sql", Err("no underscore")),
            ("_x.sql", Err("does not start with a number")),
            ("00a1_x.sql", Err("does not start with a number")),
            ("0001_x.SQL", Err("does not end in .sql")),
            ("0001_x.y.sql", Err("'.' in the description")),
        ];
        for (name, expected) in cases {
            let got = parse_file_name(name);
            match (got, expected) {
                (Ok(f), Ok((v, d, b))) => {
                    assert_eq!(
                        (f.version, f.description.as_str(), f.backfill),
                        (*v, *d, *b)
                    )
                }
                (Err(e), Err(needle)) => assert!(e.contains(needle), "{name}: {e}"),
                (got, _) => panic!("{name}: {got:?}"),
            }
        }
    }

    #[test]
    fn from_source_is_pure() {
        let m = Migration::from_source(
            Dialect::MySql,
            Phase::Contract,
            "x/0002_drop_it.sql",
            "ALTER TABLE t DROP COLUMN c, ALGORITHM=INPLACE, LOCK=NONE;",
            None,
        )
        .unwrap();
        assert_eq!((m.version, m.description.as_str()), (2, "drop it"));
        let err = Migration::from_source(
            Dialect::MySql,
            Phase::Expand,
            "0001_x.backfill.sql",
            "x",
            None,
        )
        .unwrap_err();
        assert!(err.to_string().contains("companion"), "{err}");
    }

    #[test]
    fn files_sent_to_the_server_load_as_the_folder_does() {
        let files = [
            ("expand/0002_b.sql", "ALTER TABLE t ADD COLUMN b int;"),
            ("expand/0001_a.sql", "CREATE TABLE t (id int primary key);"),
            (
                "expand/0002_b.backfill.sql",
                "UPDATE t SET b = 1 WHERE b IS NULL;",
            ),
            ("contract/0001_c.sql", "ALTER TABLE t DROP COLUMN b;"),
        ];
        let dir = tempfile::tempdir().unwrap();
        for (rel, text) in files {
            write(dir.path(), &format!("app/{rel}"), text);
        }
        let on_disk = load_database(dir.path(), "app", Dialect::Postgres).unwrap();
        let sent = database_from_files("app", Dialect::Postgres, &files).unwrap();
        for (a, b) in [
            (&on_disk.expand, &sent.expand),
            (&on_disk.contract, &sent.contract),
        ] {
            let key = |m: &Vec<Migration>| {
                m.iter()
                    .map(|m| (m.version, m.checksum.clone(), m.backfill.is_some()))
                    .collect::<Vec<_>>()
            };
            assert_eq!(key(a), key(b));
        }
        assert_eq!(sent.expand[1].path, "app/expand/0002_b.sql");

        let err = database_from_files(
            "app",
            Dialect::Postgres,
            &[
                ("expand/0001_a.sql", "SELECT 1;"),
                ("expand/1_b.sql", "SELECT 2;"),
            ],
        )
        .unwrap_err();
        assert!(err.to_string().contains("both have number 1"), "{err}");
        let err = database_from_files("app", Dialect::Postgres, &[("notes.txt", "x")]).unwrap_err();
        assert!(err.to_string().contains("app/notes.txt"), "{err}");
        let err = database_from_files("app", Dialect::Postgres, &[("expand/0001_e.sql", " ")])
            .unwrap_err();
        assert!(err.to_string().contains("is empty"), "{err}");
    }
}
