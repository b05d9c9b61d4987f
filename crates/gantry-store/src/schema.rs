//! Gantry's own schema: versioned, applied at start-up under a database lock.
//!
//! Rules (Gantry eats its own expand/contract cooking):
//! - A migration of release N only *expands* (new tables, new nullable columns, new
//!   indexes), so the binary of release N-1 keeps running against the new schema while a
//!   fleet of servers is upgraded one by one. Dropping what N-1 needs happens in N+1.
//! - Each migration says which oldest schema version a binary must know to run against
//!   the result (`min_binary_version`). A binary that knows less refuses to start and says
//!   which version it needs, instead of corrupting data it does not understand.

use crate::{Result, StoreError};

/// The newest schema version this binary knows.
pub const SCHEMA_VERSION: i64 = 6;

pub(crate) struct Migration {
    pub version: i64,
    /// The oldest binary schema version that can run against the schema after this
    /// migration. Equal to `version` only for a contract step.
    pub min_binary_version: i64,
    pub description: &'static str,
    pub sqlite: &'static str,
    pub postgres: &'static str,
}

pub(crate) const MIGRATIONS: &[Migration] = &[
    Migration {
        version: 1,
        min_binary_version: 1,
        description:
            "changes, history, stream events, tags, services, environments, tokens, leases",
        sqlite: include_str!("schema/0001_sqlite.sql"),
        postgres: include_str!("schema/0001_postgres.sql"),
    },
    Migration {
        version: 2,
        min_binary_version: 1,
        description: "builds, artifacts, deploy configs, hosts, rollouts, tasks, deployments",
        sqlite: include_str!("schema/0002_sqlite.sql"),
        postgres: include_str!("schema/0002_postgres.sql"),
    },
    Migration {
        version: 3,
        min_binary_version: 1,
        description: "flags, segments, flag schedules, client tokens, SDK registrations and usage",
        sqlite: include_str!("schema/0003_sqlite.sql"),
        postgres: include_str!("schema/0003_postgres.sql"),
    },
    Migration {
        version: 4,
        min_binary_version: 1,
        description: "migration jobs and their logs, incidents and their timelines, monitor files, heartbeat keys and pings, monitor states and transitions, detect configs, verdicts",
        sqlite: include_str!("schema/0004_sqlite.sql"),
        postgres: include_str!("schema/0004_postgres.sql"),
    },
    Migration {
        version: 5,
        min_binary_version: 1,
        description: "the alert grouper's state, notification deliveries, silences and maintenance windows, log watches",
        sqlite: include_str!("schema/0005_sqlite.sql"),
        postgres: include_str!("schema/0005_postgres.sql"),
    },
    Migration {
        version: 6,
        min_binary_version: 1,
        description: "dashboard sessions",
        sqlite: include_str!("schema/0006_sqlite.sql"),
        postgres: include_str!("schema/0006_postgres.sql"),
    },
];

/// What start-up found and did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SchemaStatus {
    /// Version the database had before start-up (0 for an empty database).
    pub found: i64,
    /// Version after start-up.
    pub current: i64,
    /// Migrations this start-up applied.
    pub applied: Vec<i64>,
}

/// Decides what to do with a database at `found` (requiring binaries to know at least
/// `found_min_binary`), for a binary that knows `known`. Pure, so it is tested directly.
pub(crate) fn plan(found: i64, found_min_binary: i64, known: i64) -> Result<Vec<i64>> {
    if found > known {
        if found_min_binary > known {
            return Err(StoreError::SchemaTooNew(format!(
                "the database schema is version {found}, which needs a gantry that knows schema version {found_min_binary} or newer; this gantry knows up to version {known}. Upgrade gantry (or point it at another database)"
            )));
        }
        return Ok(Vec::new());
    }
    Ok(MIGRATIONS
        .iter()
        .map(|m| m.version)
        .filter(|&v| v > found && v <= known)
        .collect())
}

pub(crate) fn migration(version: i64) -> &'static Migration {
    MIGRATIONS
        .iter()
        .find(|m| m.version == version)
        .unwrap_or_else(|| unreachable!("plan() only returns known versions"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn migrations_are_numbered_in_order() {
        for (i, m) in MIGRATIONS.iter().enumerate() {
            assert_eq!(m.version, i as i64 + 1, "{}", m.description);
            assert!(m.min_binary_version <= m.version);
        }
        assert_eq!(MIGRATIONS.last().map(|m| m.version), Some(SCHEMA_VERSION));
    }

    #[test]
    fn plans() {
        assert_eq!(plan(0, 0, 1).unwrap(), vec![1]);
        assert_eq!(plan(0, 0, 2).unwrap(), vec![1, 2]);
        assert_eq!(plan(1, 1, 2).unwrap(), vec![2]);
        assert_eq!(plan(1, 1, 1).unwrap(), Vec::<i64>::new());
        assert_eq!(plan(0, 0, 4).unwrap(), vec![1, 2, 3, 4]);
        // A database of the previous release gets only the newest migration.
        assert_eq!(plan(3, 1, 4).unwrap(), vec![4]);
        // A newer schema that keeps older binaries able to run: run without migrating.
        assert_eq!(plan(2, 1, 1).unwrap(), Vec::<i64>::new());
        // A newer schema that older binaries cannot run against: refuse, saying why.
        let err = plan(3, 3, 1).unwrap_err().to_string();
        assert!(err.contains("schema is version 3"), "{err}");
        assert!(err.contains("knows up to version 1"), "{err}");
    }
}
