//! What the version tables say against what the files say: applied, pending, drifted or
//! partly applied, and the rules that decide whether a phase may be applied. Pure.

use serde::Serialize;

use crate::layout::{Migration, Phase};

/// One row of a version table: a migration applied whole.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct AppliedRow {
    pub version: u32,
    pub description: String,
    pub checksum: String,
    pub applied_by: String,
    pub duration_ms: i64,
    /// Statements it ran (0 for a baseline: adopted, not run).
    pub statements: usize,
}

impl AppliedRow {
    /// A row for a migration applied whole (`statements` 0 for a baseline).
    pub fn done(
        m: &Migration,
        applied_by: &str,
        duration_ms: i64,
        statements: usize,
    ) -> AppliedRow {
        AppliedRow {
            version: m.version,
            description: m.description.chars().take(255).collect(),
            checksum: m.checksum.clone(),
            applied_by: applied_by.chars().take(255).collect(),
            duration_ms,
            statements,
        }
    }
}

/// The progress table's rows of a migration run statement by statement and not yet
/// applied whole.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize)]
pub struct Progress {
    /// Checksums of the statements done, by index.
    pub done: Vec<(usize, String)>,
    /// A statement started and not known to be done (its runner died).
    pub started: Option<usize>,
}

/// Where one migration stands.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case", tag = "state")]
pub enum MigrationState {
    Pending,
    Applied,
    /// Adopted by `baseline`: recorded, never run here.
    Baseline,
    /// Some statements ran; `started` is one that may or may not have committed.
    Partial {
        done: usize,
        started: Option<usize>,
    },
    /// Applied, but the file changed since: both checksums.
    Drifted {
        applied: String,
        file: String,
    },
}

/// One phase's migrations and their states, in version order.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct PhaseStatus {
    pub phase: Phase,
    pub migrations: Vec<(u32, String, MigrationState)>,
    /// Versions in the table with no file.
    pub missing_files: Vec<u32>,
}

impl PhaseStatus {
    pub fn state_of(&self, version: u32) -> Option<MigrationState> {
        self.migrations
            .iter()
            .find(|(v, _, _)| *v == version)
            .map(|(_, _, s)| s.clone())
    }

    pub fn pending(&self) -> Vec<u32> {
        self.migrations
            .iter()
            .filter(|(_, _, s)| {
                matches!(s, MigrationState::Pending | MigrationState::Partial { .. })
            })
            .map(|(v, _, _)| *v)
            .collect()
    }

    pub fn drifted(&self) -> Vec<u32> {
        self.migrations
            .iter()
            .filter(|(_, _, s)| matches!(s, MigrationState::Drifted { .. }))
            .map(|(v, _, _)| *v)
            .collect()
    }

    fn highest_applied(&self) -> Option<u32> {
        self.migrations
            .iter()
            .filter(|(_, _, s)| {
                matches!(
                    s,
                    MigrationState::Applied
                        | MigrationState::Baseline
                        | MigrationState::Drifted { .. }
                )
            })
            .map(|(v, _, _)| *v)
            .max()
    }
}

/// Both phases of one database, and the invalid indexes a failed `CONCURRENTLY` left.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Status {
    pub database: String,
    pub expand: PhaseStatus,
    pub contract: PhaseStatus,
    pub invalid_indexes: Vec<String>,
}

impl Status {
    pub fn phase(&self, phase: Phase) -> &PhaseStatus {
        match phase {
            Phase::Expand => &self.expand,
            Phase::Contract => &self.contract,
        }
    }
}

/// Compares the files of a phase with its version table's rows and the progress of
/// migrations run statement by statement.
pub fn phase_status(
    phase: Phase,
    files: &[Migration],
    rows: &[AppliedRow],
    progress: &std::collections::BTreeMap<u32, Progress>,
) -> PhaseStatus {
    let mut migrations = Vec::new();
    for m in files {
        let state = match rows.iter().find(|r| r.version == m.version) {
            Some(row) if row.checksum != m.checksum => MigrationState::Drifted {
                applied: row.checksum.clone(),
                file: m.checksum.clone(),
            },
            Some(row) if row.statements == 0 && !m.statements.is_empty() => {
                MigrationState::Baseline
            }
            Some(_) => MigrationState::Applied,
            None => match progress.get(&m.version) {
                None => MigrationState::Pending,
                Some(p) if p.done.is_empty() && p.started.is_none() => MigrationState::Pending,
                Some(p) => {
                    // A partly applied file may change only after its last statement done.
                    let same = p.done.iter().all(|(i, checksum)| {
                        m.statements
                            .get(*i)
                            .is_some_and(|s| s.checksum == *checksum)
                    });
                    if same {
                        MigrationState::Partial {
                            done: p.done.len(),
                            started: p.started,
                        }
                    } else {
                        MigrationState::Drifted {
                            applied: "statements already run".into(),
                            file: m.checksum.clone(),
                        }
                    }
                }
            },
        };
        migrations.push((m.version, m.path.clone(), state));
    }
    let missing_files = rows
        .iter()
        .map(|r| r.version)
        .filter(|v| !files.iter().any(|m| m.version == *v))
        .collect();
    PhaseStatus {
        phase,
        migrations,
        missing_files,
    }
}

/// Whether `phase` may be applied: no drift, nothing pending below the highest applied
/// version (unless `out_of_order`), and for contract, no expand migration pending.
pub fn check_can_apply(phase: Phase, status: &Status, out_of_order: bool) -> Result<(), String> {
    let this = status.phase(phase);
    if let Some((version, path, MigrationState::Drifted { applied, file })) = this
        .migrations
        .iter()
        .find(|(_, _, s)| matches!(s, MigrationState::Drifted { .. }))
    {
        return Err(format!(
            "{path} (version {version}) changed after it was applied: applied checksum {applied}, file checksum {file}; restore the file, or record the change deliberately with `gantry migrate repair`"
        ));
    }
    if !out_of_order {
        if let Some(highest) = this.highest_applied() {
            if let Some((version, path, _)) = this
                .migrations
                .iter()
                .find(|(v, _, s)| *v < highest && matches!(s, MigrationState::Pending))
            {
                return Err(format!(
                    "{path} (version {version}) is pending below the highest applied version {highest}; apply it deliberately with --out-of-order"
                ));
            }
        }
    }
    if phase == Phase::Contract {
        let pending = status.expand.pending();
        if !pending.is_empty() {
            return Err(format!(
                "expand migrations {pending:?} are pending; apply the expand phase before contracting"
            ));
        }
    }
    Ok(())
}
