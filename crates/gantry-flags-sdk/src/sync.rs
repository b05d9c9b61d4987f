//! The background tasks: fetching the client document, following the event stream (with
//! polling while it is down), registering, and reporting usage.
//!
//! Nothing here can take the flags in use away: a failed fetch leaves them as they are
//! and is recorded in the channel's [`Health`](crate::health::Health), which logs each
//! outage once.

use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, Utc};
use eventsource_stream::Eventsource;
use futures::{Stream, StreamExt};
use reqwest::header::{self, HeaderMap, HeaderValue};
use reqwest::{StatusCode, Url};
use serde::Serialize;
use tokio::task::JoinHandle;
use tokio::time::Instant;

use crate::client::{Inner, Source};
use crate::{document, Config, Error, SDK_VERSION};

/// The largest client document the client accepts.
const MAX_DOCUMENT: usize = 64 << 20;
/// The most the stream may send between two blank lines (one event).
const MAX_EVENT: usize = 1 << 20;
/// The server sends a keep-alive comment every 15 s; a stream silent this long is dead.
const STREAM_IDLE: Duration = Duration::from_secs(45);
/// First and largest delay before reconnecting the stream.
const BACKOFF_BASE: Duration = Duration::from_millis(500);
const BACKOFF_CAP: Duration = Duration::from_secs(30);
/// A stream that delivered events for this long was healthy: the next reconnect starts
/// the backoff again. (A stream cut right after its first event keeps backing off, so a
/// proxy that drops streams cannot make the client reconnect in a tight loop.)
const STREAM_STABLE: Duration = Duration::from_secs(30);
/// The client-specification version sent, so the server gives segments by id.
const CLIENT_SPEC: &str = "5.0.0";

/// The HTTP side of a client: one connection pool, the four endpoints.
pub(crate) struct Http {
    client: reqwest::Client,
    features: Url,
    stream: Url,
    register: Url,
    pub(crate) metrics: Url,
    timeout: Duration,
}

impl Http {
    pub(crate) fn new(config: &Config, url: &str) -> Result<Http, Error> {
        let base = Url::parse(url.trim())
            .map_err(|e| Error::Config(format!("server URL {url:?}: {e}")))?;
        if !matches!(base.scheme(), "http" | "https") || base.cannot_be_a_base() {
            return Err(Error::Config(format!(
                "server URL {url:?}: not an http(s) URL"
            )));
        }
        let endpoint = |path: &str| {
            let mut u = base.clone();
            u.set_path(&format!("{}{path}", base.path().trim_end_matches('/')));
            u.set_query(None);
            u
        };
        let mut headers = HeaderMap::new();
        let mut auth = HeaderValue::from_str(config.token.trim())
            .map_err(|_| Error::Config("the token cannot be sent as an HTTP header".into()))?;
        auth.set_sensitive(true);
        headers.insert(header::AUTHORIZATION, auth);
        headers.insert("unleash-client-spec", HeaderValue::from_static(CLIENT_SPEC));
        headers.insert("unleash-sdk", HeaderValue::from_static(SDK_VERSION));
        // Informative only: names that cannot be headers are still in the JSON bodies.
        if let Ok(v) = HeaderValue::from_str(&config.app_name) {
            headers.insert("unleash-appname", v);
        }
        if let Ok(v) = HeaderValue::from_str(&config.instance_id) {
            headers.insert("unleash-instanceid", v);
        }
        let client = reqwest::Client::builder()
            .default_headers(headers)
            .user_agent(SDK_VERSION)
            .connect_timeout(config.request_timeout.min(Duration::from_secs(10)))
            .build()
            .map_err(|e| {
                Error::Config(format!("cannot build the HTTP client: {}", describe(&e)))
            })?;
        Ok(Http {
            client,
            features: endpoint("/api/client/features"),
            stream: endpoint("/api/client/stream"),
            register: endpoint("/api/client/register"),
            metrics: endpoint("/api/client/metrics"),
            timeout: config.request_timeout,
        })
    }

    /// POSTs `body` as JSON; any 2xx is success.
    pub(crate) async fn post<T: Serialize + ?Sized>(
        &self,
        url: &Url,
        body: &T,
    ) -> Result<(), Error> {
        let response = self
            .client
            .post(url.clone())
            .timeout(self.timeout)
            .json(body)
            .send()
            .await
            .map_err(unreachable)?;
        check(response.status())
    }
}

fn check(status: StatusCode) -> Result<(), Error> {
    match status {
        s if s.is_success() => Ok(()),
        StatusCode::UNAUTHORIZED | StatusCode::FORBIDDEN => {
            Err(Error::Unauthorized(status.as_u16()))
        }
        s => Err(Error::Status(s.as_u16())),
    }
}

fn unreachable(e: reqwest::Error) -> Error {
    Error::Unreachable(describe(&e))
}

/// An error and its causes, `outer: inner: innermost` (reqwest's own text omits them).
fn describe(e: &dyn std::error::Error) -> String {
    let mut text = e.to_string();
    let mut source = e.source();
    while let Some(cause) = source {
        text.push_str(": ");
        text.push_str(&cause.to_string());
        source = cause.source();
    }
    text
}

/// Starts the sync task and the metrics task on `runtime`.
pub(crate) fn spawn(inner: &Arc<Inner>, runtime: &tokio::runtime::Handle) -> Vec<JoinHandle<()>> {
    let sync = {
        let inner = Arc::clone(inner);
        runtime.spawn(async move {
            let cancel = inner.cancel.clone();
            tokio::select! {
                _ = cancel.cancelled() => {}
                _ = follow(&inner) => {}
            }
        })
    };
    let metrics = {
        let inner = Arc::clone(inner);
        runtime.spawn(async move { report(&inner).await })
    };
    vec![sync, metrics]
}

/// Fetches the client document once; true when the server answered usefully (a new
/// document, or 304).
pub(crate) async fn fetch(inner: &Inner) -> bool {
    let Some(http) = &inner.http else {
        return false;
    };
    let result = fetch_once(inner, http).await;
    let mut state = inner.state();
    match result {
        Ok(()) => {
            state.features.succeeded();
            true
        }
        Err(e) => {
            state.features_failed(&e);
            false
        }
    }
}

async fn fetch_once(inner: &Inner, http: &Http) -> Result<(), Error> {
    let etag = inner.state().etag.clone();
    let mut request = http.client.get(http.features.clone()).timeout(http.timeout);
    if let Some(etag) = etag.and_then(|e| HeaderValue::from_str(&e).ok()) {
        request = request.header(header::IF_NONE_MATCH, etag);
    }
    let mut response = request.send().await.map_err(unreachable)?;
    if response.status() == StatusCode::NOT_MODIFIED {
        return Ok(());
    }
    check(response.status())?;
    let etag = response
        .headers()
        .get(header::ETAG)
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned);
    let mut body = Vec::new();
    while let Some(chunk) = response.chunk().await.map_err(unreachable)? {
        if body.len() + chunk.len() > MAX_DOCUMENT {
            return Err(Error::Document(format!("larger than {MAX_DOCUMENT} bytes")));
        }
        body.extend_from_slice(&chunk);
    }
    let document = document::load_bytes(&body)?;
    inner.install(document, Source::Server, etag);
    Ok(())
}

/// Keeps the flags current: fetch, then follow the stream (or poll).
async fn follow(inner: &Inner) {
    let refresh = inner.config.refresh_interval;
    let mut last_fetch = Instant::now();
    fetch(inner).await;
    if !inner.config.stream {
        loop {
            tokio::time::sleep(refresh).await;
            fetch(inner).await;
        }
    }
    let mut backoff = Backoff::default();
    loop {
        let spoke_at = stream(inner, &mut last_fetch).await;
        inner.state().streaming = false;
        if let Some(spoke_at) = spoke_at {
            if spoke_at.elapsed() >= STREAM_STABLE {
                backoff.reset();
            }
            // Updates may have been missed since the stream broke.
            fetch(inner).await;
            last_fetch = Instant::now();
        }
        // Poll every refresh interval until it is time to reconnect.
        let reconnect = Instant::now() + backoff.next_delay();
        loop {
            let poll = last_fetch + refresh;
            if reconnect <= poll {
                tokio::time::sleep_until(reconnect).await;
                break;
            }
            tokio::time::sleep_until(poll).await;
            fetch(inner).await;
            last_fetch = Instant::now();
        }
    }
}

/// Follows the event stream until it ends or breaks; fetches on each `ready` and
/// `updated` event. Returns when the stream delivered its first event, if it did.
async fn stream(inner: &Inner, last_fetch: &mut Instant) -> Option<Instant> {
    let http = inner.http.as_ref()?;
    let request = http
        .client
        .get(http.stream.clone())
        .header(header::ACCEPT, "text/event-stream")
        .header(header::CACHE_CONTROL, "no-cache");
    let response = match tokio::time::timeout(http.timeout, request.send()).await {
        Err(_) => Err(Error::Unreachable(
            "no answer from the stream within the request timeout".into(),
        )),
        Ok(sent) => sent.map_err(unreachable),
    };
    let response = match response.and_then(|r| check(r.status()).map(|()| r)) {
        Ok(r) => r,
        Err(e) => {
            inner.state().stream_failed(&e);
            return None;
        }
    };
    let mut events = Box::pin(guard(Box::pin(response.bytes_stream()), STREAM_IDLE).eventsource());
    let mut spoke: Option<Instant> = None;
    // Set when a fetch the stream asked for failed: retry it every refresh interval.
    let mut retry: Option<Instant> = None;
    loop {
        let event = tokio::select! {
            event = events.next() => event,
            () = sleep_until_some(retry) => {
                retry = refetch(inner, last_fetch).await;
                continue;
            }
        };
        match event {
            None => {
                inner
                    .state()
                    .stream_failed(&Error::Unreachable("the stream ended".into()));
                return spoke;
            }
            Some(Err(e)) => {
                let detail = match e {
                    eventsource_stream::EventStreamError::Transport(t) => t.to_string(),
                    eventsource_stream::EventStreamError::Utf8(_) => {
                        "the stream is not UTF-8".into()
                    }
                    eventsource_stream::EventStreamError::Parser(_) => {
                        "the stream is not server-sent events".into()
                    }
                };
                inner.state().stream_failed(&Error::Unreachable(detail));
                return spoke;
            }
            Some(Ok(event)) => {
                if event.event != "ready" && event.event != "updated" {
                    continue;
                }
                if spoke.is_none() {
                    spoke = Some(Instant::now());
                    let mut state = inner.state();
                    state.streaming = true;
                    state.stream.succeeded();
                }
                retry = refetch(inner, last_fetch).await;
            }
        }
    }
}

/// Fetches; on failure, the time to try again.
async fn refetch(inner: &Inner, last_fetch: &mut Instant) -> Option<Instant> {
    let ok = fetch(inner).await;
    *last_fetch = Instant::now();
    (!ok).then(|| *last_fetch + inner.config.refresh_interval)
}

async fn sleep_until_some(at: Option<Instant>) {
    match at {
        Some(at) => tokio::time::sleep_until(at).await,
        None => std::future::pending().await,
    }
}

/// Why the stream's body was cut.
#[derive(Debug)]
enum StreamCut {
    Idle,
    TooLarge,
    Transport(String),
}

impl fmt::Display for StreamCut {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            StreamCut::Idle => write!(f, "the stream was silent for {}s", STREAM_IDLE.as_secs()),
            StreamCut::TooLarge => write!(f, "an event of more than {MAX_EVENT} bytes"),
            StreamCut::Transport(e) => f.write_str(e),
        }
    }
}

/// The stream's body, cut when it is silent for `idle` or sends more than [`MAX_EVENT`]
/// bytes without a blank line (the parser would otherwise buffer without bound).
fn guard<S, B>(body: S, idle: Duration) -> impl Stream<Item = Result<B, StreamCut>>
where
    S: Stream<Item = reqwest::Result<B>> + Unpin,
    B: AsRef<[u8]>,
{
    struct Cut<S> {
        body: S,
        /// Bytes since the last blank line.
        pending: usize,
        /// Whether the last byte seen ended a line (`\r` is skipped).
        after_newline: bool,
        done: bool,
    }
    let start = Cut {
        body,
        pending: 0,
        after_newline: true,
        done: false,
    };
    futures::stream::unfold(start, move |mut cut| async move {
        if cut.done {
            return None;
        }
        let item = match tokio::time::timeout(idle, cut.body.next()).await {
            Err(_) => Err(StreamCut::Idle),
            Ok(None) => return None,
            Ok(Some(Err(e))) => Err(StreamCut::Transport(describe(&e))),
            Ok(Some(Ok(chunk))) => {
                for &b in chunk.as_ref() {
                    match b {
                        b'\r' => {}
                        b'\n' if cut.after_newline => cut.pending = 0,
                        b'\n' => cut.after_newline = true,
                        _ => {
                            cut.after_newline = false;
                            cut.pending += 1;
                        }
                    }
                }
                if cut.pending > MAX_EVENT {
                    Err(StreamCut::TooLarge)
                } else {
                    Ok(chunk)
                }
            }
        };
        cut.done = item.is_err();
        Some((item, cut))
    })
}

/// Capped exponential backoff with jitter: each delay is drawn between half and all of
/// `BASE × 2^attempt`, capped at `CAP`.
#[derive(Debug, Default)]
struct Backoff {
    attempt: u32,
}

impl Backoff {
    fn next_delay(&mut self) -> Duration {
        let ceiling = BACKOFF_BASE
            .saturating_mul(1u32 << self.attempt.min(16))
            .min(BACKOFF_CAP);
        self.attempt = self.attempt.saturating_add(1);
        let half = ceiling / 2;
        half + half.mul_f64(rand::random::<f64>())
    }

    fn reset(&mut self) {
        self.attempt = 0;
    }
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct Registration<'a> {
    app_name: &'a str,
    instance_id: &'a str,
    sdk_version: &'static str,
    strategies: &'a [&'a str],
    started: DateTime<Utc>,
    /// The metrics interval, in milliseconds.
    interval: u64,
    #[serde(skip_serializing_if = "Option::is_none")]
    environment: Option<&'a str>,
}

async fn register(inner: &Inner) -> Result<(), Error> {
    let Some(http) = &inner.http else {
        return Ok(());
    };
    let body = Registration {
        app_name: &inner.config.app_name,
        instance_id: &inner.config.instance_id,
        sdk_version: SDK_VERSION,
        strategies: &gantry_flags::KNOWN_STRATEGIES,
        started: inner.started,
        interval: u64::try_from(inner.config.metrics_interval.as_millis()).unwrap_or(u64::MAX),
        environment: inner.config.environment.as_deref(),
    };
    let sent = http.post(&http.register, &body).await;
    let mut state = inner.state();
    match &sent {
        Ok(()) => {
            state.reports.succeeded();
        }
        Err(e) => state.reports_failed(e),
    }
    sent
}

/// Registers (retrying at each interval until it succeeds), reports usage every metrics
/// interval, and once more when the client stops.
async fn report(inner: &Inner) {
    if !inner.config.send_metrics {
        return;
    }
    let cancel = inner.cancel.clone();
    let every = inner.config.metrics_interval;
    let mut registered = tokio::select! {
        _ = cancel.cancelled() => false,
        sent = register(inner) => sent.is_ok(),
    };
    let mut ticks = tokio::time::interval_at(Instant::now() + every, every);
    ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    while !cancel.is_cancelled() {
        tokio::select! {
            _ = cancel.cancelled() => break,
            _ = ticks.tick() => {}
        }
        if !registered {
            registered = register(inner).await.is_ok();
        }
        let _ = inner.flush_metrics().await;
    }
    let _ = inner.flush_metrics().await;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_grows_to_its_cap_with_jitter_and_resets() {
        let mut b = Backoff::default();
        let first = b.next_delay();
        assert!(
            first >= BACKOFF_BASE / 2 && first <= BACKOFF_BASE,
            "{first:?}"
        );
        for _ in 0..40 {
            let d = b.next_delay();
            assert!(d <= BACKOFF_CAP, "{d:?}");
        }
        let late = b.next_delay();
        assert!(late >= BACKOFF_CAP / 2, "{late:?}");
        b.reset();
        assert!(b.next_delay() <= BACKOFF_BASE);
    }

    #[test]
    fn endpoints_keep_a_base_path() {
        let http = Http::new(
            &Config::new("https://x.example/gantry/?q=1", "t", "a"),
            "https://x.example/gantry/?q=1",
        )
        .expect("valid");
        assert_eq!(
            http.features.as_str(),
            "https://x.example/gantry/api/client/features"
        );
        assert_eq!(
            http.metrics.as_str(),
            "https://x.example/gantry/api/client/metrics"
        );
        for bad in ["ftp://x", "mailto:a@b", "nonsense"] {
            assert!(
                Http::new(&Config::new(bad, "t", "a"), bad).is_err(),
                "{bad}"
            );
        }
        assert!(Http::new(&Config::new("http://x", "bad\ntoken", "a"), "http://x").is_err());
    }

    #[tokio::test]
    async fn the_guard_cuts_oversized_events_and_silence() {
        let chunks: Vec<reqwest::Result<Vec<u8>>> = vec![
            Ok(b": keep-alive\n\n".to_vec()),
            Ok(vec![b'x'; MAX_EVENT / 2]),
            Ok(b"\n".to_vec()),
            Ok(vec![b'y'; MAX_EVENT / 2 + 10]),
        ];
        let got: Vec<_> = guard(futures::stream::iter(chunks), STREAM_IDLE)
            .collect()
            .await;
        assert_eq!(got.len(), 4);
        assert!(got[..3].iter().all(Result::is_ok));
        assert!(matches!(got[3], Err(StreamCut::TooLarge)));

        let chunks: Vec<reqwest::Result<Vec<u8>>> = vec![
            Ok(vec![b'x'; MAX_EVENT / 2]),
            Ok(b"\r\n\r\n".to_vec()),
            Ok(vec![b'y'; MAX_EVENT / 2 + 10]),
        ];
        let got: Vec<_> = guard(futures::stream::iter(chunks), STREAM_IDLE)
            .collect()
            .await;
        assert!(
            got.iter().all(Result::is_ok),
            "a blank line resets the count"
        );

        let silent = futures::stream::pending::<reqwest::Result<Vec<u8>>>();
        let got: Vec<_> = guard(silent, Duration::from_millis(20)).collect().await;
        assert!(matches!(got.as_slice(), [Err(StreamCut::Idle)]));
    }
}
