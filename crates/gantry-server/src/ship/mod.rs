//! Shipping on the server: where artifacts are kept, how agents are woken, and the
//! orchestrator that drives rollouts. The HTTP side is in `api/{builds,hosts,agent,rollouts}.rs`.

pub mod artifacts;
pub mod bell;
pub mod hosts;
pub mod orchestrator;
pub mod rollouts;
pub mod watch;

use std::path::PathBuf;

use serde::{Deserialize, Serialize};

/// The artifact storage the configuration names.
pub fn artifacts_for(
    config: &crate::ServerConfig,
    store: &std::sync::Arc<dyn gantry_store::Store>,
) -> artifacts::Artifacts {
    let local = || {
        artifacts::Artifacts::Local(
            config
                .ship
                .artifact_dir
                .clone()
                .unwrap_or_else(|| config.data_dir.join("artifacts")),
        )
    };
    match config.ship.artifact_storage {
        ArtifactStorage::Local => local(),
        ArtifactStorage::Database => artifacts::Artifacts::Database(store.clone()),
        ArtifactStorage::Auto => match store.backend() {
            gantry_store::Backend::Postgres => artifacts::Artifacts::Database(store.clone()),
            gantry_store::Backend::Sqlite => local(),
        },
    }
}

/// Where artifact bytes are kept.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum ArtifactStorage {
    /// `local` with SQLite, `database` with PostgreSQL (where several servers share it).
    #[default]
    Auto,
    /// A directory on this server (`artifact_dir`).
    Local,
    /// Chunks in the store's database, shared by every server on it.
    Database,
}

/// The `[ship]` section.
#[derive(Debug, Clone, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct ShipConfig {
    /// `auto`, `local` or `database`.
    pub artifact_storage: ArtifactStorage,
    /// Directory for `local` artifact storage; default `<data_dir>/artifacts`.
    pub artifact_dir: Option<PathBuf>,
    /// Largest artifact accepted, in bytes.
    pub max_artifact_bytes: u64,
    /// Builds kept per service; older ones are deleted unless an environment runs them or
    /// an open task installs them.
    pub keep_builds: usize,
    /// Agents poll at least this often, in seconds; each poll is a heartbeat.
    pub heartbeat_secs: u64,
    /// A host whose last heartbeat is older than this, in seconds, is lost: its open tasks
    /// fail and new rollouts skip it.
    pub host_lost_after_secs: u64,
    /// How often the orchestrator looks at active rollouts without a wake-up, in ms.
    pub tick_ms: u64,
}

impl Default for ShipConfig {
    fn default() -> Self {
        ShipConfig {
            artifact_storage: ArtifactStorage::Auto,
            artifact_dir: None,
            max_artifact_bytes: 1024 * 1024 * 1024,
            keep_builds: 20,
            heartbeat_secs: 10,
            host_lost_after_secs: 30,
            tick_ms: 1000,
        }
    }
}
