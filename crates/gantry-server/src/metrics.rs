//! Gantry observing itself: request counts by route and status, errors, and store latency,
//! served in Prometheus text format at `GET /metrics`.

use std::time::Instant;

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::histogram::{exponential_buckets, Histogram};
use prometheus_client::registry::Registry;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct RequestLabels {
    pub method: String,
    /// The route pattern (`/api/v1/changes/{id}`), never the raw path, to bound cardinality.
    pub route: String,
    pub status: u16,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ErrorLabels {
    pub code: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct NotifyLabels {
    /// `delivered`, `retry` or `failed`.
    pub outcome: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ConnectionLabels {
    /// `http`, `statsd`, `graphite` or `pickle`.
    pub listener: String,
    /// `limit` (the listener's connections were all taken), `stalled` (the client stopped
    /// reading) or `idle` (it sent nothing).
    pub reason: String,
}

/// Connections closed by a `[limits]` key (crate::limits).
pub type ConnectionsClosed = Family<ConnectionLabels, Counter>;

/// Counts one connection closed by a limit.
pub fn connection_closed(family: &ConnectionsClosed, listener: &str, reason: &str) {
    family
        .get_or_create(&ConnectionLabels {
            listener: listener.to_string(),
            reason: reason.to_string(),
        })
        .inc();
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct StoreLabels {
    pub operation: String,
}

pub struct Metrics {
    registry: Registry,
    pub requests: Family<RequestLabels, Counter>,
    pub request_seconds: Family<RequestLabels, Histogram>,
    pub errors: Family<ErrorLabels, Counter>,
    pub store_seconds: Family<StoreLabels, Histogram>,
    pub store_errors: Family<StoreLabels, Counter>,
    pub notify_attempts: Family<NotifyLabels, Counter>,
    /// Credentials refused (unknown, expired or revoked), whatever the route.
    pub auth_failures: Counter,
    pub connections_closed: ConnectionsClosed,
}

fn latency_histogram() -> Histogram {
    // 50 µs to ~1.6 s.
    Histogram::new(exponential_buckets(0.000_05, 2.0, 16))
}

impl Default for Metrics {
    fn default() -> Self {
        let mut registry = Registry::with_prefix("gantry");
        let requests = Family::<RequestLabels, Counter>::default();
        registry.register(
            "http_requests",
            "HTTP requests by route and status",
            requests.clone(),
        );
        let request_seconds = Family::<RequestLabels, Histogram>::new_with_constructor(
            latency_histogram as fn() -> Histogram,
        );
        registry.register(
            "http_request_duration_seconds",
            "Time to the response head, by route and status (streams excluded)",
            request_seconds.clone(),
        );
        let errors = Family::<ErrorLabels, Counter>::default();
        registry.register(
            "http_errors",
            "Error responses by error code",
            errors.clone(),
        );
        let store_seconds = Family::<StoreLabels, Histogram>::new_with_constructor(
            latency_histogram as fn() -> Histogram,
        );
        registry.register(
            "store_operation_duration_seconds",
            "Store latency by operation",
            store_seconds.clone(),
        );
        let store_errors = Family::<StoreLabels, Counter>::default();
        registry.register(
            "store_errors",
            "Failed store operations by operation",
            store_errors.clone(),
        );
        let notify_attempts = Family::<NotifyLabels, Counter>::default();
        registry.register(
            "notify_attempts",
            "Notification delivery attempts by outcome",
            notify_attempts.clone(),
        );
        let auth_failures = Counter::default();
        registry.register(
            "auth_failures",
            "Refused credentials (unknown, expired or revoked tokens), counted per request",
            auth_failures.clone(),
        );
        let connections_closed = ConnectionsClosed::default();
        registry.register(
            "connections_closed",
            "Connections closed by a [limits] key, by listener and reason (limit, stalled, idle)",
            connections_closed.clone(),
        );
        Metrics {
            auth_failures,
            connections_closed,
            notify_attempts,
            registry,
            requests,
            request_seconds,
            errors,
            store_seconds,
            store_errors,
        }
    }
}

impl Metrics {
    /// Counts one delivery attempt: `delivered`, `retry` or `failed`.
    pub fn notify_attempt(&self, outcome: &str) {
        self.notify_attempts
            .get_or_create(&NotifyLabels {
                outcome: outcome.to_string(),
            })
            .inc();
    }

    /// The Prometheus text exposition of every metric.
    pub fn render(&self) -> String {
        let mut out = String::new();
        // Writing to a String cannot fail.
        let _ = prometheus_client::encoding::text::encode(&mut out, &self.registry);
        out
    }

    /// Runs a store operation, recording its latency and failure.
    pub async fn time_store<T, E>(
        &self,
        operation: &'static str,
        work: impl std::future::Future<Output = Result<T, E>>,
    ) -> Result<T, E> {
        let started = Instant::now();
        let result = work.await;
        let labels = StoreLabels {
            operation: operation.to_string(),
        };
        self.store_seconds
            .get_or_create(&labels)
            .observe(started.elapsed().as_secs_f64());
        if result.is_err() {
            self.store_errors.get_or_create(&labels).inc();
        }
        result
    }
}

/// What the process's heap allocator reports of itself, in bytes, for `GET /metrics`.
#[derive(Debug, Clone, Copy, Default)]
pub struct AllocatorStats {
    /// Bytes the program holds in live allocations.
    pub allocated: u64,
    /// Bytes in pages the allocator has handed out at least partly (allocated + the free
    /// space inside those pages: fragmentation).
    pub active: u64,
    /// Bytes of the allocator's pages resident in memory (active, its own metadata, and
    /// free pages it has not returned yet).
    pub resident: u64,
    /// Bytes of the allocator's own metadata.
    pub metadata: u64,
}

static ALLOCATOR_STATS: std::sync::OnceLock<fn() -> Option<AllocatorStats>> =
    std::sync::OnceLock::new();

/// Sets how `GET /metrics` reads the allocator's figures: the binary that picks the global
/// allocator knows how to ask it. The first call wins; without one, no allocator figures
/// are served.
pub fn set_allocator_stats(read: fn() -> Option<AllocatorStats>) {
    let _ = ALLOCATOR_STATS.set(read);
}

pub(crate) fn allocator_stats() -> Option<AllocatorStats> {
    ALLOCATOR_STATS.get().and_then(|read| read())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn renders_prometheus_text() {
        let m = Metrics::default();
        m.requests
            .get_or_create(&RequestLabels {
                method: "GET".into(),
                route: "/healthz".into(),
                status: 200,
            })
            .inc();
        let _ = m.time_store("ping", async { Ok::<_, ()>(()) }).await;
        let text = m.render();
        assert!(
            text.contains(
                r#"gantry_http_requests_total{method="GET",route="/healthz",status="200"} 1"#
            ),
            "{text}"
        );
        assert!(
            text.contains(r#"gantry_store_operation_duration_seconds_count{operation="ping"} 1"#),
            "{text}"
        );
    }
}
