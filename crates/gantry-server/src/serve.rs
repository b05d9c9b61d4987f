//! `gantry server`: binds the listener, opens the store, and runs until SIGTERM or ctrl-c,
//! then shuts down gracefully: stop accepting, end streams, give requests in flight a bound
//! to finish, close the store.

use std::fs::{File, OpenOptions};
use std::io::Write;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use anyhow::{bail, Context};
use chrono::Utc;
use gantry_core::{Scope, ScopeName, TokenInfo};
use gantry_store::{Store, StoreOptions};

use crate::app::app;
use crate::config::ServerConfig;
use crate::state::AppState;

/// The file, in the data directory, holding the first admin token.
pub const ADMIN_TOKEN_FILE: &str = "admin.token";

/// Runs the server until a shutdown signal.
pub async fn run(config: ServerConfig) -> anyhow::Result<()> {
    // Both rustls users (the listener and sqlx) need a process-wide crypto provider.
    let _ = rustls::crypto::ring::default_provider().install_default();

    std::fs::create_dir_all(&config.data_dir).with_context(|| {
        format!(
            "cannot create the data directory {}",
            config.data_dir.display()
        )
    })?;
    // A missing secret stops the server now rather than at the first alert.
    config
        .notify
        .check_secrets()
        .map_err(|e| anyhow::anyhow!("the [notify] section: {e}"))?;
    let url = config.store_url();
    let _lock = if url.starts_with("sqlite://") {
        Some(lock_data_dir(&config.data_dir)?)
    } else {
        None
    };
    let store: Arc<dyn Store> = Arc::from(
        gantry_store::open(
            &url,
            StoreOptions {
                auto_create_services: config.auto_create_services,
                max_connections: config.database_max_connections,
            },
        )
        .await
        .with_context(|| format!("cannot open the store {}", gantry_store::redact_url(&url)))?,
    );
    let schema = store.schema_status();
    tracing::info!(
        store = store.backend().as_str(),
        schema_found = schema.found,
        schema_version = schema.current,
        migrations_applied = ?schema.applied,
        "store ready"
    );
    if schema.current > gantry_store::SCHEMA_VERSION {
        tracing::warn!(
            schema_version = schema.current,
            known = gantry_store::SCHEMA_VERSION,
            "the database schema is newer than this gantry; running in compatibility mode — upgrade soon"
        );
    }
    bootstrap_admin_token(store.as_ref(), &config.data_dir).await?;
    let metrics_dir = config.data_dir.join("metrics");
    let tsdb = gantry_tsdb::Tsdb::open(&metrics_dir, config.storage.clone())
        .with_context(|| format!("cannot open the metrics store in {}", metrics_dir.display()))?;

    // Each connection holds a descriptor.
    match crate::limits::raise_open_files() {
        Ok(limit) => tracing::info!(open_files = limit, "open-files limit"),
        Err(e) => tracing::warn!(error = %e, "cannot raise the open-files limit"),
    }
    let listener = crate::limits::tcp_listener(config.listen).with_context(|| {
        format!(
            "cannot listen on {} (set another address with --listen or GANTRY_LISTEN)",
            config.listen
        )
    })?;
    let addr = listener.local_addr()?;
    let tls = match &config.tls {
        Some(tls) => Some(
            axum_server::tls_rustls::RustlsConfig::from_pem_file(&tls.cert, &tls.key)
                .await
                .with_context(|| {
                    format!(
                        "cannot load TLS certificate {} and key {}",
                        tls.cert.display(),
                        tls.key.display()
                    )
                })?,
        ),
        None => None,
    };
    let grace = Duration::from_secs(config.shutdown_grace_secs);
    let retention = Duration::from_secs(config.stream_retention_secs);
    let (statsd_listen, graphite_listen, pickle_listen, statsd) = (
        config.statsd_listen,
        config.graphite_listen,
        config.pickle_listen,
        config.statsd.clone(),
    );
    let state = AppState::new(store.clone(), tsdb.clone(), config);
    let _ = state.http_addr.set(addr);
    let forward = crate::forward::Forwarders::start(
        &state.config.metrics.forward,
        &state.config.data_dir,
        state.shutdown.clone(),
    )
    .await?;
    let sink = crate::ingest::Sink {
        tsdb: tsdb.clone(),
        forward,
    };
    let _ = state.sink.set(sink.clone());
    let (bound, aggregator) = crate::ingest::start(
        statsd_listen,
        graphite_listen,
        pickle_listen,
        statsd,
        sink,
        state.ingest.clone(),
        (
            &state.config.limits,
            state.metrics.connections_closed.clone(),
        ),
        state.shutdown.clone(),
    )
    .await?;
    for (protocol, listening) in [
        ("statsd", bound.statsd),
        ("graphite", bound.graphite),
        ("pickle", bound.pickle),
    ] {
        if let Some(at) = listening {
            tracing::info!(protocol, addr = %at, "metrics listener ready");
        }
    }
    let _ = state.listeners.set(bound);
    tokio::spawn(expire_metrics(tsdb.clone(), state.shutdown.clone()));
    tokio::spawn(record_own_metrics(state.clone()));
    let handle = axum_server::Handle::new();
    tokio::spawn(shutdown_on_signal(state.clone(), handle.clone(), grace));
    tokio::spawn(prune_stream(
        store.clone(),
        retention,
        state.shutdown.clone(),
    ));
    start_shipping(&state).await;
    start_flags(&state);

    tracing::info!(addr = %addr, tls = tls.is_some(), "listening");
    #[cfg(feature = "dashboard")]
    {
        let scheme = if tls.is_some() { "https" } else { "http" };
        let admin_file = state.config.data_dir.join(ADMIN_TOKEN_FILE);
        tracing::info!(
            url = %format!("{scheme}://{addr}/"),
            admin_token = %admin_file.display(),
            "dashboard ready: sign in with a token (on a new server, the admin token is in this file)"
        );
    }
    // Evaluations counted since the last write go to the store before it closes.
    let flag_usage = state.flag_usage.clone();
    let limits = state.config.limits.clone();
    let closed = state.metrics.connections_closed.clone();
    let service = app(state).into_make_service_with_connect_info::<SocketAddr>();
    // Idle keep-alive connections and slow heads are closed after the header timeout.
    let http1 = |builder: &mut hyper_util::server::conn::auto::Builder<_>| {
        builder
            .http1()
            .timer(hyper_util::rt::TokioTimer::new())
            .header_read_timeout(Duration::from_secs(limits.header_read_timeout_secs));
    };
    let served = match tls {
        Some(tls) => {
            let mut server = axum_server::from_tcp_rustls(listener, tls)
                .map(|tls| crate::limits::Acceptor::new(tls, &limits, closed))
                .handle(handle);
            http1(server.http_builder());
            server.serve(service).await
        }
        None => {
            let mut server = axum_server::from_tcp(listener)
                .acceptor(crate::limits::Acceptor::new(
                    axum_server::accept::DefaultAcceptor,
                    &limits,
                    closed,
                ))
                .handle(handle);
            http1(server.http_builder());
            server.serve(service).await
        }
    };
    flag_usage.flush(store.as_ref()).await;
    store.close().await;
    if let Some(aggregator) = aggregator {
        let _ = aggregator.await;
    }
    if let Err(e) = tsdb.close() {
        tracing::error!(error = %e, "cannot flush metrics at shutdown");
    }
    served.context("the HTTP server failed")?;
    tracing::info!("stopped");
    Ok(())
}

/// One server per SQLite data directory: a second would corrupt nothing (SQLite locks) but
/// would race on the admin token and confuse operators.
fn lock_data_dir(dir: &Path) -> anyhow::Result<File> {
    let path = dir.join("gantry.lock");
    let file = OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(&path)
        .with_context(|| format!("cannot open {}", path.display()))?;
    if file.try_lock().is_err() {
        bail!(
            "another gantry server is using the data directory {}; stop it or use another --data-dir",
            dir.display()
        );
    }
    Ok(file)
}

/// On a store with no token at all, creates the first admin token and writes it to
/// `<data-dir>/admin.token` (mode 0600). The file is written before the token is stored
/// and moved into place after, so a crash in between never leaves a token nobody has.
async fn bootstrap_admin_token(store: &dyn Store, data_dir: &Path) -> anyhow::Result<()> {
    let path = data_dir.join(ADMIN_TOKEN_FILE);
    let pending = data_dir.join(format!("{ADMIN_TOKEN_FILE}.pending"));
    let secret = gantry_core::token::generate_secret();
    write_private(&pending, &secret)?;
    let info = TokenInfo {
        name: "admin".into(),
        scopes: vec![Scope::new(ScopeName::Admin)],
        created_at: Utc::now(),
        expires_at: None,
        created_by: "gantry server".into(),
    };
    let created = store
        .bootstrap_admin_token(&info, &gantry_core::token::digest(&secret))
        .await;
    match created {
        Ok(true) => {
            std::fs::rename(&pending, &path)
                .with_context(|| format!("cannot move the admin token into {}", path.display()))?;
            tracing::info!(path = %path.display(), "created the first admin token; it is in this file (mode 0600)");
            Ok(())
        }
        Ok(false) => {
            let _ = std::fs::remove_file(&pending);
            Ok(())
        }
        Err(e) => {
            let _ = std::fs::remove_file(&pending);
            Err(e).context("cannot create the first admin token")
        }
    }
}

fn write_private(path: &PathBuf, secret: &str) -> anyhow::Result<()> {
    let mut options = OpenOptions::new();
    options.write(true).create(true).truncate(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        options.mode(0o600);
    }
    let mut file = options
        .open(path)
        .with_context(|| format!("cannot write {}", path.display()))?;
    file.write_all(secret.as_bytes())?;
    file.write_all(b"\n")?;
    file.sync_all()?;
    Ok(())
}

async fn shutdown_on_signal(state: AppState, handle: axum_server::Handle, grace: Duration) {
    let ctrl_c = tokio::signal::ctrl_c();
    #[cfg(unix)]
    let terminate = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending().await,
        }
    };
    #[cfg(not(unix))]
    let terminate = std::future::pending::<()>();
    tokio::select! {
        _ = ctrl_c => {}
        _ = terminate => {}
    }
    tracing::info!(
        grace_secs = grace.as_secs(),
        "shutting down: no new connections, closing streams"
    );
    state.shutdown.cancel();
    handle.graceful_shutdown(Some(grace));
}

/// Writes Gantry's own ingest counters into the store every 10 s, as `gantry.*` series
/// (exempt from the cardinality caps), so a graph shows what was refused and dropped.
async fn record_own_metrics(state: AppState) {
    let mut every = tokio::time::interval(Duration::from_secs(10));
    loop {
        tokio::select! {
            _ = every.tick() => {}
            _ = state.shutdown.cancelled() => return,
        }
        let load =
            |c: &std::sync::atomic::AtomicU64| c.load(std::sync::atomic::Ordering::Relaxed) as f64;
        let (ingest, tsdb) = (&state.ingest, state.tsdb.stats());
        let now = Utc::now().timestamp();
        let values = [
            ("gantry.tsdb.series", state.tsdb.series_count() as f64),
            ("gantry.tsdb.series_rejected", load(&tsdb.series_rejected)),
            ("gantry.tsdb.points_written", load(&tsdb.points_written)),
            (
                "gantry.tsdb.pending_writes",
                state.tsdb.pending_writes() as f64,
            ),
            (
                "gantry.tsdb.points_out_of_range",
                load(&tsdb.points_out_of_range),
            ),
            ("gantry.statsd.bad_lines", load(&ingest.statsd_bad_lines)),
            (
                "gantry.statsd.kernel_drops",
                load(&ingest.statsd_kernel_drops),
            ),
            ("gantry.graphite.points", load(&ingest.graphite_points)),
            (
                "gantry.graphite.bad_lines",
                load(&ingest.graphite_bad_lines),
            ),
        ];
        state
            .tsdb
            .write(values.iter().map(|(name, value)| (*name, now, *value)));
    }
}

/// Drops metric blocks past their archive's retention, hourly.
async fn expire_metrics(
    tsdb: Arc<gantry_tsdb::Tsdb>,
    shutdown: tokio_util::sync::CancellationToken,
) {
    let mut every = tokio::time::interval(Duration::from_secs(3600));
    loop {
        tokio::select! {
            _ = every.tick() => {}
            _ = shutdown.cancelled() => return,
        }
        let tsdb = tsdb.clone();
        let expired =
            tokio::task::spawn_blocking(move || tsdb.expire(Utc::now().timestamp())).await;
        match expired {
            Ok(Ok(0)) => {}
            Ok(Ok(n)) => tracing::info!(blocks = n, "expired old metric blocks"),
            Ok(Err(e)) => tracing::warn!(error = %e, "cannot expire old metric blocks"),
            Err(_) => {}
        }
    }
}

/// Deletes stream events past their retention, monitors' old pings and transitions, and
/// ended notification deliveries, hourly. Any server may do it; it is idempotent, so servers
/// sharing a database need not coordinate.
async fn prune_stream(
    store: Arc<dyn Store>,
    retention: Duration,
    shutdown: tokio_util::sync::CancellationToken,
) {
    let mut every = tokio::time::interval(Duration::from_secs(3600));
    loop {
        tokio::select! {
            _ = every.tick() => {}
            _ = shutdown.cancelled() => return,
        }
        let Ok(retention) = chrono::Duration::from_std(retention) else {
            return;
        };
        match store.prune_events(Utc::now() - retention).await {
            Ok(0) => {}
            Ok(n) => tracing::info!(events = n, "pruned old change-stream events"),
            Err(e) => tracing::warn!(error = %e, "cannot prune change-stream events"),
        }
        // Monitors' history: pings (each heartbeat keeps its newest 200 whatever their age)
        // and transitions 90 days; deliveries that ended 30 days.
        let now = Utc::now();
        let history = store
            .prune_monitor_history(
                now - chrono::Duration::days(90),
                200,
                now - chrono::Duration::days(90),
            )
            .await;
        match history {
            Ok(0) => {}
            Ok(n) => tracing::info!(rows = n, "pruned old pings and monitor transitions"),
            Err(e) => tracing::warn!(error = %e, "cannot prune monitors' history"),
        }
        match store
            .prune_deliveries(now - chrono::Duration::days(30))
            .await
        {
            Ok(0) => {}
            Ok(n) => tracing::info!(deliveries = n, "pruned old notification deliveries"),
            Err(e) => tracing::warn!(error = %e, "cannot prune notification deliveries"),
        }
        match store.prune_sessions(now).await {
            Ok(0) => {}
            Ok(n) => tracing::info!(sessions = n, "pruned ended dashboard sessions"),
            Err(e) => tracing::warn!(error = %e, "cannot prune dashboard sessions"),
        }
    }
}

/// The shipping side: artifact storage ready, agents' wake-ups, and the orchestrator.
/// The flag side: the follower that keeps flag sets and the SDK token cache in step with
/// the store, usage batches, and scheduled flips.
fn start_flags(state: &AppState) {
    tokio::spawn(state.flag_sets.clone().follow(state.shutdown.clone()));
    tokio::spawn(
        state
            .flag_usage
            .clone()
            .run(state.store.clone(), state.shutdown.clone()),
    );
    tokio::spawn(crate::flags::schedule::run(
        state.store.clone(),
        state.flag_sets.clone(),
        state.holder.clone(),
        state.shutdown.clone(),
    ));
    crate::migrate::executor::start(state);
    tokio::spawn(crate::monitors::evaluate::run(
        state.clone(),
        state.shutdown.clone(),
    ));
    tokio::spawn(crate::notify::deliver::run(
        state.clone(),
        state.shutdown.clone(),
    ));
    tokio::spawn(crate::monitors::logs::run(
        state.clone(),
        state.shutdown.clone(),
    ));
}

async fn start_shipping(state: &AppState) {
    if let crate::ship::artifacts::Artifacts::Local(dir) = &state.artifacts {
        // Uploads cut by a crash are never visible; drop their leftovers.
        let _ = tokio::fs::remove_dir_all(dir.join("tmp")).await;
    }
    tracing::info!(storage = state.artifacts.kind(), "artifact storage ready");
    tokio::spawn(state.bell.clone().follow(state.store.subscribe_ship()));
    let orchestrator = std::sync::Arc::new(crate::ship::orchestrator::Orchestrator {
        store: state.store.clone(),
        bell: state.bell.clone(),
        config: state.config.ship.clone(),
        gates: vec![std::sync::Arc::new(crate::detect::RegressionGate {
            store: state.store.clone(),
            flush: std::time::Duration::from_secs_f64(
                state.config.statsd.flush_interval_secs.max(0.1),
            ),
        })],
        holder: state.holder.clone(),
    });
    tokio::spawn(orchestrator.run(state.shutdown.clone()));
    tokio::spawn(crate::detect::run(state.clone(), state.shutdown.clone()));
}
