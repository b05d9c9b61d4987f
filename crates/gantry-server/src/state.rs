//! What every handler shares: the store, the configuration, self-metrics and the shutdown
//! signal. Nothing here may hold state that two servers on one database could disagree on.

use std::net::SocketAddr;
use std::sync::{Arc, OnceLock};

use chrono::{DateTime, Utc};
use gantry_store::Store;
use tokio_util::sync::CancellationToken;

use crate::config::ServerConfig;
use crate::metrics::Metrics;

#[derive(Clone)]
pub struct AppState(Arc<Inner>);

pub struct Inner {
    pub store: Arc<dyn Store>,
    /// The embedded time-series store (metrics).
    pub tsdb: Arc<gantry_tsdb::Tsdb>,
    /// What the metrics listeners received.
    pub ingest: Arc<crate::ingest::IngestStats>,
    /// Where the metrics listeners listen.
    pub listeners: OnceLock<crate::ingest::Bound>,
    /// Where received points go (the store, and forwarding).
    pub sink: OnceLock<crate::ingest::Sink>,
    /// The remote Graphite API renders also read from, if configured.
    pub remote: Option<crate::remote_read::RemoteRead>,
    pub config: ServerConfig,
    pub metrics: Metrics,
    /// Cancelled when the server begins to shut down; streams end on it.
    pub shutdown: CancellationToken,
    pub started_at: DateTime<Utc>,
    /// The address the HTTP listener actually bound (port 0 resolved).
    pub http_addr: OnceLock<SocketAddr>,
    /// Where build artifacts are kept.
    pub artifacts: crate::ship::artifacts::Artifacts,
    /// Wakes agents' long polls and the orchestrator.
    pub bell: Arc<crate::ship::bell::Bell>,
    /// This process's name as a lease holder (rollouts it drives).
    pub holder: String,
    /// Flag sets in memory (evaluation never reads the database) and the SDK token cache.
    pub flag_sets: Arc<crate::flags::FlagSets>,
    /// Evaluations this server made, written once a minute.
    pub flag_usage: Arc<crate::flags::usage::Usage>,
    /// Log-watch counts agents reported, written once per flush interval.
    pub log_counts: crate::monitors::logs::LogCounts,
    /// Failed authentications per client address (`auth_failures`).
    pub auth_failures: crate::auth_failures::AuthFailures,
}

impl AppState {
    pub fn new(
        store: Arc<dyn Store>,
        tsdb: Arc<gantry_tsdb::Tsdb>,
        config: ServerConfig,
    ) -> AppState {
        // A bad remote URL is refused by `ServerConfig::load`; here it could only disable.
        let remote = crate::remote_read::RemoteRead::new(&config.metrics.remote_read)
            .ok()
            .flatten();
        let artifacts = crate::ship::artifacts_for(&config, &store);
        AppState(Arc::new(Inner {
            artifacts,
            bell: Arc::new(crate::ship::bell::Bell::new()),
            holder: format!("server-{}", ulid::Ulid::new()),
            flag_sets: Arc::new(crate::flags::FlagSets::new(store.clone())),
            flag_usage: Arc::default(),
            log_counts: Default::default(),
            auth_failures: Default::default(),
            remote,
            store,
            tsdb,
            ingest: Arc::default(),
            listeners: OnceLock::new(),
            sink: OnceLock::new(),
            config,
            metrics: Metrics::default(),
            shutdown: CancellationToken::new(),
            started_at: Utc::now(),
            http_addr: OnceLock::new(),
        }))
    }
}

impl std::ops::Deref for AppState {
    type Target = Inner;
    fn deref(&self) -> &Inner {
        &self.0
    }
}
