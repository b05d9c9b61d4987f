//! The client against a tiny local server (axum) that speaks the four endpoints of
//! Gantry's client API and can be told to answer garbage, 500s or a refused token, or to
//! close its port: the client keeps its last good flags through all of it, logs each
//! outage once, recovers, starts offline from a bootstrap file, follows the stream and
//! posts registrations and usage.

use std::io;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering::SeqCst};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::extract::State;
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::sse::{Event, KeepAlive, Sse};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use futures::StreamExt;
use gantry_flags_sdk::{Client, Config, Context, Source};
use serde_json::{json, Value};
use tokio::net::TcpListener;
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;

const TOKEN: &str = "client:shop@prod.secret";

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Mode {
    Serve,
    Garbage,
    Error,
}

struct Shared {
    mode: Mutex<Mode>,
    /// The document served and its ETag (its revision).
    document: Mutex<(Value, u64)>,
    /// Bumped to send `updated` on open streams.
    revision: watch::Sender<u64>,
    /// Cancelled to end every open stream (and, with the port, to close the server).
    streams_end: Mutex<CancellationToken>,
    feature_requests: AtomicUsize,
    not_modified: AtomicUsize,
    streams_opened: AtomicUsize,
    registrations: Mutex<Vec<Value>>,
    reports: Mutex<Vec<Value>>,
}

/// The test server: its shared state survives a restart on the same port.
struct TestServer {
    shared: Arc<Shared>,
    addr: SocketAddr,
    stop: CancellationToken,
    task: Option<tokio::task::JoinHandle<()>>,
}

fn authorized(headers: &HeaderMap) -> bool {
    headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        == Some(TOKEN)
}

async fn features(State(s): State<Arc<Shared>>, headers: HeaderMap) -> Response {
    s.feature_requests.fetch_add(1, SeqCst);
    if !authorized(&headers) {
        return StatusCode::UNAUTHORIZED.into_response();
    }
    let mode = *s.mode.lock().expect("lock");
    match mode {
        Mode::Garbage => (StatusCode::OK, "<html>surprise</html>").into_response(),
        Mode::Error => (StatusCode::INTERNAL_SERVER_ERROR, "boom").into_response(),
        Mode::Serve => {
            let (document, revision) = s.document.lock().expect("lock").clone();
            let etag = format!("\"r{revision}\"");
            let mut response = if headers
                .get(header::IF_NONE_MATCH)
                .and_then(|v| v.to_str().ok())
                == Some(etag.as_str())
            {
                s.not_modified.fetch_add(1, SeqCst);
                StatusCode::NOT_MODIFIED.into_response()
            } else {
                Json(document).into_response()
            };
            if let Ok(v) = HeaderValue::from_str(&etag) {
                response.headers_mut().insert(header::ETAG, v);
            }
            response
        }
    }
}

async fn stream(State(s): State<Arc<Shared>>, headers: HeaderMap) -> Response {
    if !authorized(&headers) {
        return StatusCode::UNAUTHORIZED.into_response();
    }
    s.streams_opened.fetch_add(1, SeqCst);
    let end = s.streams_end.lock().expect("lock").clone();
    let mut revisions = s.revision.subscribe();
    let first = *revisions.borrow_and_update();
    let ready = Event::default()
        .event("ready")
        .data(json!({"revision": first, "etag": "x"}).to_string());
    let updates = futures::stream::unfold(revisions, |mut r| async move {
        r.changed().await.ok()?;
        let revision = *r.borrow_and_update();
        let event = Event::default()
            .event("updated")
            .data(json!({"revision": revision, "etag": "x"}).to_string());
        Some((Ok::<_, std::convert::Infallible>(event), r))
    });
    let events = futures::stream::once(async move { Ok(ready) })
        .chain(updates)
        .take_until(end.cancelled_owned());
    Sse::new(events)
        .keep_alive(KeepAlive::new().interval(Duration::from_secs(15)))
        .into_response()
}

async fn register(
    State(s): State<Arc<Shared>>,
    headers: HeaderMap,
    Json(body): Json<Value>,
) -> StatusCode {
    if !authorized(&headers) {
        return StatusCode::UNAUTHORIZED;
    }
    s.registrations.lock().expect("lock").push(body);
    StatusCode::ACCEPTED
}

async fn metrics(
    State(s): State<Arc<Shared>>,
    headers: HeaderMap,
    Json(body): Json<Value>,
) -> StatusCode {
    if !authorized(&headers) {
        return StatusCode::UNAUTHORIZED;
    }
    s.reports.lock().expect("lock").push(body);
    StatusCode::ACCEPTED
}

/// Every answer closes its connection, so closing the port really cuts the client off.
async fn close_connections(mut response: Response) -> Response {
    response
        .headers_mut()
        .insert(header::CONNECTION, HeaderValue::from_static("close"));
    response
}

impl TestServer {
    async fn start(document: Value) -> TestServer {
        let shared = Arc::new(Shared {
            mode: Mutex::new(Mode::Serve),
            document: Mutex::new((document, 1)),
            revision: watch::Sender::new(1),
            streams_end: Mutex::new(CancellationToken::new()),
            feature_requests: AtomicUsize::new(0),
            not_modified: AtomicUsize::new(0),
            streams_opened: AtomicUsize::new(0),
            registrations: Mutex::new(Vec::new()),
            reports: Mutex::new(Vec::new()),
        });
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let addr = listener.local_addr().expect("address");
        let mut server = TestServer {
            shared,
            addr,
            stop: CancellationToken::new(),
            task: None,
        };
        server.serve(listener);
        server
    }

    fn serve(&mut self, listener: TcpListener) {
        let app = Router::new()
            .route("/api/client/features", get(features))
            .route("/api/client/stream", get(stream))
            .route("/api/client/register", post(register))
            .route("/api/client/metrics", post(metrics))
            .layer(axum::middleware::map_response(close_connections))
            .with_state(Arc::clone(&self.shared));
        self.stop = CancellationToken::new();
        let stop = self.stop.clone();
        self.task = Some(tokio::spawn(async move {
            let _ = axum::serve(listener, app)
                .with_graceful_shutdown(stop.cancelled_owned())
                .await;
        }));
    }

    fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    fn set_mode(&self, mode: Mode) {
        *self.shared.mode.lock().expect("lock") = mode;
    }

    /// Serves `document` from now on and tells open streams.
    fn publish(&self, document: Value) {
        let mut d = self.shared.document.lock().expect("lock");
        d.0 = document;
        d.1 += 1;
        self.shared.revision.send_replace(d.1);
    }

    fn end_streams(&self) {
        let mut end = self.shared.streams_end.lock().expect("lock");
        end.cancel();
        *end = CancellationToken::new();
    }

    /// Closes the port: streams end, the listener goes.
    async fn close(&mut self) {
        self.end_streams();
        self.stop.cancel();
        if let Some(task) = self.task.take() {
            tokio::time::timeout(Duration::from_secs(10), task)
                .await
                .expect("the server stops")
                .expect("the server task");
        }
    }

    /// Opens the same port again.
    async fn reopen(&mut self) {
        let listener = TcpListener::bind(self.addr).await.expect("rebind");
        self.serve(listener);
    }

    fn feature_requests(&self) -> usize {
        self.shared.feature_requests.load(SeqCst)
    }

    fn reports(&self) -> Vec<Value> {
        self.shared.reports.lock().expect("lock").clone()
    }
}

fn document(checkout: bool, read_only: bool) -> Value {
    json!({
        "version": 2,
        "features": [
            {"name": "checkout", "enabled": checkout, "strategies": [{"name": "default"}]},
            {"name": "read-only", "enabled": read_only},
            {"name": "colour", "enabled": true, "variants": [
                {"name": "blue", "weight": 1000, "payload": {"type": "string", "value": "#00f"}}]}
        ]
    })
}

/// Waits until `done` holds, checking every 10 ms; false after `within`.
async fn eventually(within: Duration, mut done: impl FnMut() -> bool) -> bool {
    let until = tokio::time::Instant::now() + within;
    while tokio::time::Instant::now() < until {
        if done() {
            return true;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    done()
}

const PATIENCE: Duration = Duration::from_secs(20);

/// Log lines written on one test's thread. One global subscriber writes each line to
/// the buffer of the thread that logs it (`#[tokio::test]` runs the client's tasks on the
/// test's thread); per-thread subscribers would race on tracing's callsite cache when
/// tests run in parallel.
#[derive(Clone, Default)]
struct Captured(Arc<Mutex<Vec<u8>>>);

thread_local! {
    static SINK: std::cell::RefCell<Option<Captured>> = const { std::cell::RefCell::new(None) };
}

struct ThreadSink;

impl io::Write for ThreadSink {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        SINK.with(|sink| {
            if let Some(c) = &*sink.borrow() {
                c.0.lock().expect("lock").extend_from_slice(buf);
            }
        });
        Ok(buf.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

impl Captured {
    /// Starts capturing this thread's log lines.
    fn start() -> Captured {
        static GLOBAL: std::sync::Once = std::sync::Once::new();
        GLOBAL.call_once(|| {
            let subscriber = tracing_subscriber::fmt()
                .with_ansi(false)
                .with_max_level(tracing::Level::INFO)
                .with_writer(|| ThreadSink)
                .finish();
            let _ = tracing::subscriber::set_global_default(subscriber);
        });
        let captured = Captured::default();
        SINK.with(|sink| *sink.borrow_mut() = Some(captured.clone()));
        captured
    }

    fn lines(&self, level: &str) -> Vec<String> {
        String::from_utf8_lossy(&self.0.lock().expect("lock"))
            .lines()
            .filter(|l| l.contains(level) && l.contains("gantry flags"))
            .map(str::to_owned)
            .collect()
    }
}

fn polling(server: &TestServer) -> Config {
    Config::new(server.url(), TOKEN, "shop")
        .with_instance_id("shop-1")
        .with_stream(false)
        .with_refresh_interval(Duration::from_millis(30))
        .with_request_timeout(Duration::from_secs(5))
}

#[tokio::test]
async fn keeps_the_last_good_flags_through_garbage_errors_and_a_closed_port() {
    let logs = Captured::start();
    let mut server = TestServer::start(document(true, false)).await;
    let client = Client::start(polling(&server).with_metrics(false)).await;
    let ctx = Context::default().with_user_id("u1");

    assert!(client.wait_until_ready(PATIENCE).await);
    assert_eq!(client.status().source, Source::Server);
    assert!(client.is_enabled("checkout", &ctx));
    assert!(!client.is_read_only());
    assert!(
        eventually(PATIENCE, || server.shared.not_modified.load(SeqCst) >= 2).await,
        "polls send If-None-Match and get 304"
    );

    for (mode, problem) in [
        (Mode::Garbage, "not a valid flag document"),
        (Mode::Error, "HTTP 500"),
    ] {
        server.set_mode(mode);
        let seen = server.feature_requests();
        assert!(eventually(PATIENCE, || server.feature_requests() >= seen + 5).await);
        assert!(
            client.is_enabled("checkout", &ctx),
            "{mode:?}: the last good flags stay"
        );
        assert_eq!(client.variant("colour", &ctx).name, "blue");
        let status = client.status();
        assert!(status.ready && status.flags == 3);
        assert!(
            status
                .problem
                .as_deref()
                .is_some_and(|p| p.contains(problem)),
            "{mode:?}: {status:?}"
        );
    }

    server.close().await;
    assert!(
        eventually(PATIENCE, || client
            .status()
            .problem
            .is_some_and(|p| p.contains("could not be reached")))
        .await
    );
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert!(
        client.is_enabled("checkout", &ctx),
        "closed port: the last good flags stay"
    );

    // Back, with new flags.
    server.set_mode(Mode::Serve);
    server.publish(document(false, true));
    server.reopen().await;
    assert!(
        eventually(PATIENCE, || client.is_read_only()).await,
        "recovers"
    );
    assert!(!client.is_enabled("checkout", &ctx));
    assert!(eventually(PATIENCE, || client.status().problem.is_none()).await);

    // One warning per kind of trouble in the whole outage, however many polls failed,
    // and one line for the recovery.
    let warnings = logs.lines("WARN");
    assert_eq!(warnings.len(), 3, "{warnings:#?}");
    assert!(
        warnings[0].contains("not a valid flag document"),
        "{warnings:#?}"
    );
    assert!(warnings[1].contains("HTTP 500"), "{warnings:#?}");
    assert!(
        warnings[2].contains("could not be reached"),
        "{warnings:#?}"
    );
    let recoveries: Vec<_> = logs
        .lines("INFO")
        .into_iter()
        .filter(|l| l.contains("recovered"))
        .collect();
    assert_eq!(recoveries.len(), 1, "{recoveries:#?}");
    client.shutdown().await;
}

#[tokio::test]
async fn starts_offline_from_a_bootstrap_file() {
    let dir = tempfile::tempdir().expect("temp dir");
    let path = dir.path().join("flags.json");
    std::fs::write(&path, document(true, true).to_string()).expect("write");
    // A port nobody listens on.
    let closed = {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
        listener.local_addr().expect("address")
    };
    let client = Client::start(
        Config::new(format!("http://{closed}"), TOKEN, "shop")
            .with_refresh_interval(Duration::from_millis(30))
            .with_bootstrap_file(&path),
    )
    .await;
    // Usable at once, before any network answer.
    assert!(client.ready());
    assert!(client.is_enabled("checkout", &Context::default()));
    assert!(client.is_read_only());
    assert!(
        eventually(PATIENCE, || client
            .status()
            .problem
            .is_some_and(|p| p.contains("could not be reached")))
        .await
    );
    let status = client.status();
    assert_eq!((status.source, status.flags), (Source::Bootstrap, 3));
    assert!(client.is_read_only(), "the bootstrap stays in use");
    client.shutdown().await;

    // A bootstrap file that is garbage is skipped, not fatal.
    std::fs::write(&path, "{not json").expect("write");
    let client = Client::start(Config::offline("shop").with_bootstrap_file(&path)).await;
    assert!(!client.ready());
    assert!(!client.is_enabled("checkout", &Context::default()));
}

#[tokio::test]
async fn registers_and_posts_usage() {
    let server = TestServer::start(document(true, false)).await;
    let client = Client::start(polling(&server).with_environment("prod")).await;
    assert!(client.wait_until_ready(PATIENCE).await);
    let ctx = Context::default().with_user_id("u1");
    for _ in 0..3 {
        assert!(client.is_enabled("checkout", &ctx));
    }
    for _ in 0..2 {
        assert_eq!(client.variant("colour", &ctx).name, "blue");
    }
    assert!(!client.is_enabled("no.such.flag", &ctx));
    client.flush_metrics().await.expect("report accepted");

    let registrations = server.shared.registrations.lock().expect("lock").clone();
    assert!(!registrations.is_empty());
    let r = &registrations[0];
    assert_eq!(
        (r["appName"].as_str(), r["instanceId"].as_str()),
        (Some("shop"), Some("shop-1"))
    );
    assert!(r["sdkVersion"]
        .as_str()
        .is_some_and(|v| v.starts_with("gantry-flags-sdk:")));
    assert!(r["strategies"]
        .as_array()
        .is_some_and(|s| s.contains(&json!("flexibleRollout"))));
    assert_eq!(r["interval"], json!(60_000));
    assert!(r["started"].as_str().is_some_and(|t| t.contains('T')));

    let reports = server.reports();
    assert_eq!(reports.len(), 1, "{reports:#?}");
    let report = &reports[0];
    assert_eq!(
        (report["appName"].as_str(), report["instanceId"].as_str()),
        (Some("shop"), Some("shop-1"))
    );
    let toggles = &report["bucket"]["toggles"];
    assert_eq!(toggles["checkout"], json!({"yes": 3, "no": 0}));
    assert_eq!(
        toggles["colour"],
        json!({"yes": 2, "no": 0, "variants": {"blue": 2}})
    );
    assert_eq!(toggles["no.such.flag"], json!({"yes": 0, "no": 1}));
    assert!(report["bucket"]["start"].as_str() <= report["bucket"]["stop"].as_str());

    // Nothing new: nothing sent.
    client.flush_metrics().await.expect("nothing to send");
    assert_eq!(server.reports().len(), 1);

    // Shutting down sends what is left.
    assert!(!client.is_enabled("read-only", &ctx));
    client.shutdown().await;
    let reports = server.reports();
    assert_eq!(reports.len(), 2, "{reports:#?}");
    assert_eq!(
        reports[1]["bucket"]["toggles"],
        json!({"read-only": {"yes": 0, "no": 1}})
    );
}

#[tokio::test]
async fn reports_on_its_own_and_keeps_counts_the_server_did_not_take() {
    let mut server = TestServer::start(document(true, false)).await;
    let client =
        Client::start(polling(&server).with_metrics_interval(Duration::from_millis(50))).await;
    assert!(client.wait_until_ready(PATIENCE).await);
    server.close().await;
    let ctx = Context::default();
    client.is_enabled("checkout", &ctx);
    assert!(client.flush_metrics().await.is_err(), "the server is gone");
    client.is_enabled("checkout", &ctx);
    server.reopen().await;
    assert!(
        eventually(PATIENCE, || server
            .reports()
            .iter()
            .any(|r| r["bucket"]["toggles"]["checkout"]["yes"] == json!(2)))
        .await,
        "the periodic report carries the counts of the failed one: {:#?}",
        server.reports()
    );
    client.shutdown().await;
}

#[tokio::test]
async fn follows_the_stream_and_reconnects() {
    let server = TestServer::start(document(true, false)).await;
    // Polling every minute: only the stream can bring changes quickly.
    let client = Client::start(
        Config::new(server.url(), TOKEN, "shop")
            .with_refresh_interval(Duration::from_secs(60))
            .with_metrics(false),
    )
    .await;
    assert!(client.wait_until_ready(PATIENCE).await);
    assert!(eventually(PATIENCE, || client.status().streaming).await);
    assert!(
        eventually(PATIENCE, || server.shared.not_modified.load(SeqCst) >= 1).await,
        "the ready event's fetch is answered 304"
    );

    server.publish(document(true, true));
    assert!(
        eventually(PATIENCE, || client.is_read_only()).await,
        "updated"
    );

    // The stream breaks; the client reconnects and catches up.
    server.end_streams();
    server.publish(document(false, true));
    assert!(eventually(PATIENCE, || server.shared.streams_opened.load(SeqCst) >= 2).await);
    assert!(
        eventually(PATIENCE, || !client
            .is_enabled("checkout", &Context::default()))
        .await
    );
    assert!(eventually(PATIENCE, || client.status().streaming).await);
    client.shutdown().await;
}

#[tokio::test]
async fn a_refused_token_is_logged_once_and_never_ready() {
    let logs = Captured::start();
    let server = TestServer::start(document(true, false)).await;
    let client = Client::start(
        Config::new(server.url(), "wrong", "shop")
            .with_refresh_interval(Duration::from_millis(30))
            .with_metrics_interval(Duration::from_millis(30)),
    )
    .await;
    assert!(eventually(PATIENCE, || server.feature_requests() >= 5).await);
    assert!(!client.ready());
    assert!(client
        .status()
        .problem
        .is_some_and(|p| p.contains("refused the token (HTTP 401)")));
    // Fetches, the stream and registrations were all refused, many times: one line.
    let warnings = logs.lines("WARN");
    assert_eq!(warnings.len(), 1, "{warnings:#?}");
    assert!(warnings[0].contains("HTTP 401"), "{warnings:#?}");
    client.shutdown().await;
}
