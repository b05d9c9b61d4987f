//! The [`Client`]: the current flag set behind an atomic pointer, evaluation against it,
//! and the handle on the background tasks that keep it current.

use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::Duration;

use arc_swap::ArcSwap;
use chrono::{DateTime, Utc};
use gantry_flags::{ClientFeatures, Context, Engine, Payload, Reason, VariantResult};
use serde::Serialize;
use tokio::sync::watch;
use tokio::task::JoinHandle;
use tokio_util::sync::{CancellationToken, DropGuard};

use crate::health::{Health, Level, Problem};
use crate::metrics::{Counters, Metrics, Missed, Report, ReportBucket};
use crate::{document, sync, Config, Error, READ_ONLY_FLAG};

/// The variant a context gets, owned. For an unknown flag, or a flag that chose none,
/// `name` is `"disabled"` and `enabled` false.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Variant {
    pub name: String,
    /// Whether a real variant was chosen.
    pub enabled: bool,
    /// Whether the flag itself is on for the context.
    pub feature_enabled: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub payload: Option<Payload>,
}

impl Variant {
    /// "No variant", for a flag that is (or is not) on.
    pub fn disabled(feature_enabled: bool) -> Variant {
        Variant::from(&VariantResult::disabled(feature_enabled))
    }
}

impl From<&VariantResult<'_>> for Variant {
    fn from(v: &VariantResult<'_>) -> Variant {
        Variant {
            name: v.name.to_owned(),
            enabled: v.enabled,
            feature_enabled: v.feature_enabled,
            payload: v.payload.cloned(),
        }
    }
}

/// One flag evaluated for one context: whether it is on, the variant, and why.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Evaluation {
    pub enabled: bool,
    pub variant: Variant,
    pub reason: Reason,
}

impl From<&gantry_flags::Evaluation<'_>> for Evaluation {
    fn from(e: &gantry_flags::Evaluation<'_>) -> Evaluation {
        Evaluation {
            enabled: e.enabled,
            variant: Variant::from(&e.variant),
            reason: e.reason,
        }
    }
}

/// Where the flags in use came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Source {
    /// Nothing loaded yet: every flag is off.
    Empty,
    /// The bootstrap document; the server has not answered yet.
    Bootstrap,
    /// The server.
    Server,
}

/// What the client knows of itself, for health checks and tests.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Status {
    /// A flag set is loaded (from the bootstrap or the server).
    pub ready: bool,
    pub source: Source,
    /// The event stream is connected and has spoken.
    pub streaming: bool,
    /// The current trouble fetching flags (or a configuration that cannot work), if any.
    pub problem: Option<String>,
    /// How many flags the set in use has.
    pub flags: usize,
}

/// A loaded flag set: the engine, its usage counters, and what evaluations must supply
/// for it beyond the caller's context.
pub(crate) struct Snapshot {
    pub(crate) engine: Arc<Engine>,
    pub(crate) counters: Counters,
    reads: document::Reads,
    /// The instant given to the engine when the flags never read the clock (reading
    /// the clock costs more than evaluating a simple flag).
    loaded: DateTime<Utc>,
}

impl Snapshot {
    fn new(document: ClientFeatures) -> Snapshot {
        let reads = document::reads(&document);
        let engine = Engine::new(document);
        Snapshot {
            counters: Counters::new(&engine),
            engine: Arc::new(engine),
            reads,
            loaded: Utc::now(),
        }
    }
}

/// What the background tasks know of the server.
pub(crate) struct SyncState {
    pub(crate) source: Source,
    /// The `ETag` of the document in use, when it came from the server.
    pub(crate) etag: Option<String>,
    pub(crate) streaming: bool,
    pub(crate) features: Health,
    pub(crate) stream: Health,
    pub(crate) reports: Health,
    /// Why the client cannot talk to the server at all.
    pub(crate) config_problem: Option<String>,
}

impl SyncState {
    /// Fetching and reporting talk to one server with one token: a failure one of them
    /// logged already is recorded quietly by the other.
    pub(crate) fn features_failed(&mut self, error: &Error) {
        let quiet = self.reports.failing_with(Problem::of(error));
        self.features.failed(error, quiet);
    }

    pub(crate) fn reports_failed(&mut self, error: &Error) {
        let quiet = self.features.failing_with(Problem::of(error));
        self.reports.failed(error, quiet);
    }

    pub(crate) fn stream_failed(&mut self, error: &Error) {
        self.stream.failed(error, false);
    }
}

pub(crate) struct Inner {
    pub(crate) config: Config,
    snapshot: ArcSwap<Snapshot>,
    pub(crate) metrics: Metrics,
    ready: watch::Sender<bool>,
    state: Mutex<SyncState>,
    pub(crate) cancel: CancellationToken,
    tasks: Mutex<Vec<JoinHandle<()>>>,
    pub(crate) http: Option<sync::Http>,
    pub(crate) started: DateTime<Utc>,
}

impl Inner {
    pub(crate) fn state(&self) -> MutexGuard<'_, SyncState> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Puts a new flag set in use; the old one's usage counts are kept for the report.
    pub(crate) fn install(&self, document: ClientFeatures, source: Source, etag: Option<String>) {
        let old = self.snapshot.swap(Arc::new(Snapshot::new(document)));
        self.metrics.absorb(&old.counters);
        {
            let mut state = self.state();
            state.source = source;
            state.etag = etag;
        }
        self.ready.send_replace(true);
    }

    /// Reports the usage counted so far; counts that could not be sent are kept.
    pub(crate) async fn flush_metrics(&self) -> Result<(), Error> {
        let Some(http) = &self.http else {
            return Ok(());
        };
        if !self.config.send_metrics {
            return Ok(());
        }
        let _sending = self.metrics.sending.lock().await;
        let snapshot = self.snapshot.load_full();
        let Some(bucket) = self.metrics.take(&snapshot.counters) else {
            return Ok(());
        };
        drop(snapshot);
        let report = Report {
            app_name: &self.config.app_name,
            instance_id: &self.config.instance_id,
            environment: self.config.environment.as_deref(),
            bucket: ReportBucket {
                start: bucket.start,
                stop: Utc::now(),
                toggles: &bucket.toggles,
            },
        };
        let sent = http.post(&http.metrics, &report).await;
        let mut state = self.state();
        match sent {
            Ok(()) => {
                state.reports.succeeded();
                Ok(())
            }
            Err(e) => {
                self.metrics.put_back(&bucket);
                state.reports_failed(&e);
                Err(e)
            }
        }
    }

    fn needs_fill(&self, ctx: &Context) -> bool {
        ctx.app_name.is_none() || (ctx.environment.is_none() && self.config.environment.is_some())
    }

    fn fill(&self, ctx: &Context) -> Context {
        let mut ctx = ctx.clone();
        if ctx.app_name.is_none() {
            ctx.app_name = Some(self.config.app_name.clone());
        }
        if ctx.environment.is_none() {
            ctx.environment.clone_from(&self.config.environment);
        }
        ctx
    }
}

/// A feature-flag client: cheap to clone (clones share one flag set and one set of
/// background tasks), safe to share across threads.
///
/// Evaluation reads the flag set in use and never waits for the network; an unknown
/// flag is off. The background tasks stop on [`shutdown`](Client::shutdown) or when the
/// last clone is dropped.
#[derive(Clone)]
pub struct Client {
    inner: Arc<Inner>,
    _stop_on_drop: Arc<DropGuard>,
}

impl std::fmt::Debug for Client {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Client")
            .field("config", &self.inner.config)
            .field("status", &self.status())
            .finish()
    }
}

impl Client {
    /// Starts a client and returns at once, without waiting for the network.
    ///
    /// The bootstrap document, if any, is loaded before this returns, so flags can be
    /// evaluated from it straight away. With a server URL, a background task on the
    /// current tokio runtime registers, fetches, follows the stream and reports usage.
    /// A configuration that cannot work (a bad URL, no tokio runtime) is logged as an
    /// error and shown by [`status`](Client::status); the client then evaluates its
    /// bootstrap document only.
    pub async fn start(config: Config) -> Client {
        let mut config_problem = None;
        let bootstrap = match (&config.bootstrap, &config.bootstrap_file) {
            (Some(document), _) => Some(document.clone()),
            (None, Some(path)) => match document::load_file(path) {
                Ok(document) => Some(document),
                Err(e) => {
                    tracing::warn!("gantry flags: {e}; starting without a bootstrap");
                    None
                }
            },
            (None, None) => None,
        };
        let http = match config
            .url
            .as_deref()
            .map(|url| sync::Http::new(&config, url))
        {
            Some(Ok(http)) => Some(http),
            Some(Err(e)) => {
                tracing::error!("gantry flags: {e}; the client will not contact the server");
                config_problem = Some(e.to_string());
                None
            }
            None => None,
        };
        let cancel = CancellationToken::new();
        let inner = Arc::new(Inner {
            snapshot: ArcSwap::from_pointee(Snapshot::new(ClientFeatures::default())),
            metrics: Metrics::new(),
            ready: watch::Sender::new(false),
            state: Mutex::new(SyncState {
                source: Source::Empty,
                etag: None,
                streaming: false,
                features: Health::new("features", Level::Warn),
                stream: Health::new("stream", Level::Debug),
                reports: Health::new("reports", Level::Warn),
                config_problem: None,
            }),
            cancel: cancel.clone(),
            tasks: Mutex::new(Vec::new()),
            http,
            started: Utc::now(),
            config,
        });
        if let Some(document) = bootstrap {
            inner.install(document, Source::Bootstrap, None);
        }
        if inner.http.is_some() {
            match tokio::runtime::Handle::try_current() {
                Ok(runtime) => {
                    let tasks = sync::spawn(&inner, &runtime);
                    inner
                        .tasks
                        .lock()
                        .unwrap_or_else(PoisonError::into_inner)
                        .extend(tasks);
                }
                Err(_) => {
                    let e = Error::Config(
                        "Client::start needs a tokio runtime to talk to the server".into(),
                    );
                    tracing::error!("gantry flags: {e}");
                    config_problem = Some(e.to_string());
                }
            }
        }
        inner.state().config_problem = config_problem;
        Client {
            inner,
            _stop_on_drop: Arc::new(cancel.drop_guard()),
        }
    }

    /// Evaluates a flag with the set in use and counts the call: `f` sees the engine's
    /// answer (`None` for an unknown flag).
    #[inline]
    fn run<R>(
        &self,
        name: &str,
        ctx: &Context,
        count_variant: bool,
        f: impl FnOnce(Option<&gantry_flags::Evaluation<'_>>) -> R,
    ) -> R {
        let snapshot = self.inner.snapshot.load();
        let filled;
        let ctx = if snapshot.reads.app_or_environment && self.inner.needs_fill(ctx) {
            filled = self.inner.fill(ctx);
            &filled
        } else {
            ctx
        };
        let now = if snapshot.reads.clock {
            Utc::now()
        } else {
            snapshot.loaded
        };
        let got = snapshot
            .engine
            .evaluate(name, ctx, now, &mut rand::thread_rng());
        let enabled = got.as_ref().is_some_and(|e| e.enabled);
        let variant = count_variant.then(|| {
            got.as_ref()
                .map_or(VariantResult::DISABLED, |e| e.variant.name)
        });
        let missed = snapshot.counters.count(name, enabled, variant);
        if missed != Missed::Nothing {
            self.inner
                .metrics
                .count_missed(missed, name, enabled, variant);
        }
        f(got.as_ref())
    }

    /// Whether `name` is on for `ctx`; an unknown flag is off.
    pub fn is_enabled(&self, name: &str, ctx: &Context) -> bool {
        self.run(name, ctx, false, |e| e.is_some_and(|e| e.enabled))
    }

    /// The variant `ctx` gets; an unknown flag gives the disabled variant.
    pub fn variant(&self, name: &str, ctx: &Context) -> Variant {
        self.run(name, ctx, true, |e| {
            e.map_or_else(|| Variant::disabled(false), |e| Variant::from(&e.variant))
        })
    }

    /// Whether `name` is on, its variant and why; `None` for an unknown flag.
    pub fn evaluate(&self, name: &str, ctx: &Context) -> Option<Evaluation> {
        self.run(name, ctx, true, |e| e.map(Evaluation::from))
    }

    /// Whether the service should refuse writes: the flag `read-only`, Gantry's kill
    /// switch, evaluated for an empty context.
    pub fn is_read_only(&self) -> bool {
        self.is_enabled(READ_ONLY_FLAG, &Context::default())
    }

    /// The names of the flags in use, in document order.
    pub fn feature_names(&self) -> Vec<String> {
        self.inner
            .snapshot
            .load()
            .engine
            .feature_names()
            .map(str::to_owned)
            .collect()
    }

    /// The flag set in use (it does not change under the caller; a later call may give a
    /// newer one).
    pub fn engine(&self) -> Arc<Engine> {
        Arc::clone(&self.inner.snapshot.load().engine)
    }

    /// Whether a flag set is loaded, from the bootstrap or the server.
    pub fn ready(&self) -> bool {
        *self.inner.ready.borrow()
    }

    /// Waits until a flag set is loaded or `timeout` passes; returns [`ready`](Client::ready).
    pub async fn wait_until_ready(&self, timeout: Duration) -> bool {
        // Without a tokio runtime there is no timer to wait with (and no task to wait for).
        if self.ready() || tokio::runtime::Handle::try_current().is_err() {
            return self.ready();
        }
        let mut ready = self.inner.ready.subscribe();
        let _ = tokio::time::timeout(timeout, ready.wait_for(|r| *r)).await;
        self.ready()
    }

    pub fn status(&self) -> Status {
        let flags = self.inner.snapshot.load().engine.len();
        let state = self.inner.state();
        Status {
            ready: self.ready(),
            source: state.source,
            streaming: state.streaming,
            problem: state
                .config_problem
                .clone()
                .or_else(|| state.features.problem().map(str::to_owned)),
            flags,
        }
    }

    pub fn config(&self) -> &Config {
        &self.inner.config
    }

    /// Reports the usage counted so far now, rather than at the next metrics interval.
    /// Counts that could not be sent are kept for the next report. Without a server, or
    /// with metrics off, does nothing.
    pub async fn flush_metrics(&self) -> Result<(), Error> {
        self.inner.flush_metrics().await
    }

    /// Stops the background tasks, after a last usage report. Evaluation goes on with the
    /// flags last loaded. Calling it again does nothing.
    pub async fn shutdown(&self) {
        self.inner.cancel.cancel();
        let tasks = std::mem::take(
            &mut *self
                .inner
                .tasks
                .lock()
                .unwrap_or_else(PoisonError::into_inner),
        );
        for task in tasks {
            // The metrics task sends the last report on its way out.
            let _ = task.await;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn document(features: serde_json::Value) -> ClientFeatures {
        serde_json::from_value(json!({"version": 2, "features": features})).expect("document")
    }

    async fn offline(features: serde_json::Value) -> Client {
        Client::start(
            Config::offline("shop")
                .with_environment("prod")
                .with_bootstrap(document(features)),
        )
        .await
    }

    #[tokio::test]
    async fn evaluates_the_bootstrap_without_a_server() {
        let client = offline(json!([
            {"name": "on", "enabled": true},
            {"name": "read-only", "enabled": false},
            {"name": "colour", "enabled": true, "variants": [
                {"name": "blue", "weight": 1000, "payload": {"type": "string", "value": "#00f"}}]}
        ]))
        .await;
        let ctx = Context::default();
        assert!(client.ready() && client.wait_until_ready(Duration::ZERO).await);
        assert!(client.is_enabled("on", &ctx));
        assert!(!client.is_enabled("missing", &ctx));
        assert!(!client.is_read_only());
        assert_eq!(client.variant("missing", &ctx), Variant::disabled(false));
        assert_eq!(client.evaluate("missing", &ctx), None);
        let e = client.evaluate("colour", &ctx).expect("known");
        assert_eq!(e.reason, Reason::Static);
        assert_eq!(e.variant.name, "blue");
        assert_eq!(e.variant.payload.map(|p| p.value), Some("#00f".into()));
        assert_eq!(client.feature_names(), ["on", "read-only", "colour"]);
        let status = client.status();
        assert_eq!(
            (status.source, status.flags, status.problem),
            (Source::Bootstrap, 3, None)
        );
        client
            .flush_metrics()
            .await
            .expect("nothing to send offline");
        client.shutdown().await;
        client.shutdown().await;
        assert!(
            client.is_enabled("on", &ctx),
            "evaluation outlives shutdown"
        );
    }

    #[tokio::test]
    async fn fills_app_name_and_environment_when_the_flags_read_them() {
        let client = offline(json!([
            {"name": "prod.only", "enabled": true, "strategies": [{"name": "default", "constraints": [
                {"contextName": "environment", "operator": "IN", "values": ["prod"]}]}]},
            {"name": "shop.only", "enabled": true, "strategies": [{"name": "default", "constraints": [
                {"contextName": "appName", "operator": "IN", "values": ["shop"]}]}]}
        ]))
        .await;
        let mut ctx = Context::default();
        assert!(client.is_enabled("prod.only", &ctx));
        assert!(client.is_enabled("shop.only", &ctx));
        ctx.environment = Some("dev".into());
        ctx.app_name = Some("other".into());
        assert!(
            !client.is_enabled("prod.only", &ctx),
            "the caller's environment wins"
        );
        assert!(
            !client.is_enabled("shop.only", &ctx),
            "the caller's app name wins"
        );
    }

    #[tokio::test]
    async fn date_constraints_see_the_current_time() {
        let soon = (Utc::now() + chrono::Duration::milliseconds(100)).to_rfc3339();
        let client = offline(json!([
            {"name": "launch", "enabled": true, "strategies": [{"name": "default", "constraints": [
                {"contextName": "currentTime", "operator": "DATE_AFTER", "value": soon}]}]}
        ]))
        .await;
        let ctx = Context::default();
        assert!(!client.is_enabled("launch", &ctx));
        tokio::time::sleep(Duration::from_millis(150)).await;
        assert!(
            client.is_enabled("launch", &ctx),
            "not the time the flags were loaded"
        );
        let mut past = ctx.clone();
        past.current_time = Some("2001-01-01T00:00:00Z".into());
        assert!(
            !client.is_enabled("launch", &past),
            "the caller's currentTime wins"
        );
    }

    #[tokio::test]
    async fn an_unusable_url_is_reported_not_fatal() {
        let client = Client::start(Config::new("not a url", "t", "app")).await;
        assert!(!client.ready());
        assert!(client.status().problem.is_some_and(|p| p.contains("URL")));
        assert!(!client.is_enabled("x", &Context::default()));
    }

    #[test]
    fn without_a_runtime_the_client_still_evaluates_its_bootstrap() {
        let config = Config::new("http://127.0.0.1:9", "t", "app")
            .with_bootstrap(document(json!([{"name": "on", "enabled": true}])));
        let client = futures::executor::block_on(Client::start(config));
        assert!(client.is_enabled("on", &Context::default()));
        assert!(client.status().problem.is_some_and(|p| p.contains("tokio")));
        assert!(futures::executor::block_on(
            client.wait_until_ready(Duration::from_secs(1))
        ));
        let empty = futures::executor::block_on(Client::start(Config::new(
            "http://127.0.0.1:9",
            "t",
            "app",
        )));
        assert!(!futures::executor::block_on(
            empty.wait_until_ready(Duration::from_secs(1))
        ));
        futures::executor::block_on(empty.shutdown());
    }
}
