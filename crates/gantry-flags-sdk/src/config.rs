//! The client's configuration: where the server is, who is asking, how often to refresh
//! and report, and what to start from when the server cannot be reached.

use std::fmt;
use std::path::{Path, PathBuf};
use std::time::Duration;

use gantry_flags::ClientFeatures;

/// The shortest interval or timeout the client accepts; anything shorter is raised to it
/// so a misconfiguration cannot turn into a busy loop.
pub(crate) const MIN_INTERVAL: Duration = Duration::from_millis(10);
/// The longest interval or timeout the client accepts; anything longer is lowered to it
/// (so deadlines computed from it cannot overflow).
pub(crate) const MAX_INTERVAL: Duration = Duration::from_secs(30 * 24 * 3600);

/// How a [`Client`](crate::Client) finds and reports to the Gantry server.
///
/// Built with [`Config::new`] (a server) or [`Config::offline`] (a bootstrap document
/// only), then adjusted with the `with_*` methods:
///
/// ```
/// use gantry_flags_sdk::Config;
/// use std::time::Duration;
///
/// let config = Config::new("https://gantry.example", "client-token", "checkout")
///     .with_environment("production")
///     .with_refresh_interval(Duration::from_secs(30))
///     .with_bootstrap_file("/etc/checkout/flags.json");
/// assert_eq!(config.app_name(), "checkout");
/// ```
#[derive(Clone)]
pub struct Config {
    pub(crate) url: Option<String>,
    pub(crate) token: String,
    pub(crate) app_name: String,
    pub(crate) instance_id: String,
    pub(crate) environment: Option<String>,
    pub(crate) refresh_interval: Duration,
    pub(crate) metrics_interval: Duration,
    pub(crate) request_timeout: Duration,
    pub(crate) stream: bool,
    pub(crate) send_metrics: bool,
    pub(crate) bootstrap_file: Option<PathBuf>,
    pub(crate) bootstrap: Option<ClientFeatures>,
}

impl Config {
    /// A client of the server at `url` (`https://gantry.example`, no path), sending
    /// `token` (a `client:SERVICE@ENV` token) and naming itself `app_name`.
    pub fn new(
        url: impl Into<String>,
        token: impl Into<String>,
        app_name: impl Into<String>,
    ) -> Config {
        Config {
            url: Some(url.into()),
            token: token.into(),
            ..Config::offline(app_name)
        }
    }

    /// A client that never talks to a server: it evaluates its bootstrap document
    /// ([`with_bootstrap_file`](Config::with_bootstrap_file) or
    /// [`with_bootstrap`](Config::with_bootstrap)) and nothing else. For tests,
    /// benchmarks and tools that run without a network.
    pub fn offline(app_name: impl Into<String>) -> Config {
        Config {
            url: None,
            token: String::new(),
            app_name: app_name.into(),
            instance_id: default_instance_id(),
            environment: None,
            refresh_interval: Duration::from_secs(15),
            metrics_interval: Duration::from_secs(60),
            request_timeout: Duration::from_secs(10),
            stream: true,
            send_metrics: true,
            bootstrap_file: None,
            bootstrap: None,
        }
    }

    /// This running instance's name in registrations and metrics; by default
    /// `HOSTNAME-PID` (or a random name when the host name is unknown).
    pub fn with_instance_id(mut self, instance_id: impl Into<String>) -> Config {
        self.instance_id = instance_id.into();
        self
    }

    /// The `environment` context field given to evaluations whose context has none. The
    /// token already chooses which environment's flags are fetched; this only matters to
    /// constraints on `environment`.
    pub fn with_environment(mut self, environment: impl Into<String>) -> Config {
        self.environment = Some(environment.into());
        self
    }

    /// How often to poll while the stream is down, or always when streaming is off
    /// (default 15 s).
    pub fn with_refresh_interval(mut self, interval: Duration) -> Config {
        self.refresh_interval = interval.clamp(MIN_INTERVAL, MAX_INTERVAL);
        self
    }

    /// How often to report flag usage (default 60 s).
    pub fn with_metrics_interval(mut self, interval: Duration) -> Config {
        self.metrics_interval = interval.clamp(MIN_INTERVAL, MAX_INTERVAL);
        self
    }

    /// The most one request may take, body included (default 10 s). The stream is bounded
    /// by it only until its headers arrive.
    pub fn with_request_timeout(mut self, timeout: Duration) -> Config {
        self.request_timeout = timeout.clamp(MIN_INTERVAL, MAX_INTERVAL);
        self
    }

    /// Whether to follow the server's event stream (default true); without it the client
    /// polls every refresh interval.
    pub fn with_stream(mut self, stream: bool) -> Config {
        self.stream = stream;
        self
    }

    /// Whether to register and report usage to the server (default true).
    pub fn with_metrics(mut self, send: bool) -> Config {
        self.send_metrics = send;
        self
    }

    /// A client document (the JSON `GET /api/client/features` answers) to start from
    /// before the server has answered. A file that is missing or invalid is logged and
    /// skipped.
    pub fn with_bootstrap_file(mut self, path: impl AsRef<Path>) -> Config {
        self.bootstrap_file = Some(path.as_ref().to_path_buf());
        self
    }

    /// A client document to start from, given in memory; it wins over a bootstrap file.
    pub fn with_bootstrap(mut self, document: ClientFeatures) -> Config {
        self.bootstrap = Some(document);
        self
    }

    pub fn url(&self) -> Option<&str> {
        self.url.as_deref()
    }

    pub fn app_name(&self) -> &str {
        &self.app_name
    }

    pub fn instance_id(&self) -> &str {
        &self.instance_id
    }

    pub fn environment(&self) -> Option<&str> {
        self.environment.as_deref()
    }

    pub fn refresh_interval(&self) -> Duration {
        self.refresh_interval
    }

    pub fn metrics_interval(&self) -> Duration {
        self.metrics_interval
    }
}

/// Everything but the token, which stays out of logs.
impl fmt::Debug for Config {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Config")
            .field("url", &self.url)
            .field(
                "token",
                &if self.token.is_empty() {
                    ""
                } else {
                    "<redacted>"
                },
            )
            .field("app_name", &self.app_name)
            .field("instance_id", &self.instance_id)
            .field("environment", &self.environment)
            .field("refresh_interval", &self.refresh_interval)
            .field("metrics_interval", &self.metrics_interval)
            .field("request_timeout", &self.request_timeout)
            .field("stream", &self.stream)
            .field("send_metrics", &self.send_metrics)
            .field("bootstrap_file", &self.bootstrap_file)
            .field(
                "bootstrap",
                &self.bootstrap.as_ref().map(|d| d.features.len()),
            )
            .finish()
    }
}

/// `HOSTNAME-PID`, or `gantry-sdk-RANDOM-PID` when the host name cannot be read.
fn default_instance_id() -> String {
    let host = std::env::var("HOSTNAME")
        .ok()
        .or_else(|| std::fs::read_to_string("/proc/sys/kernel/hostname").ok())
        .map(|h| h.trim().to_owned())
        .filter(|h| !h.is_empty() && h.len() <= 200)
        .unwrap_or_else(|| format!("gantry-sdk-{:08x}", rand::random::<u32>()));
    format!("{host}-{}", std::process::id())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_and_setters() {
        let c = Config::new("http://x", "secret", "app");
        assert_eq!(c.url(), Some("http://x"));
        assert_eq!(c.refresh_interval(), Duration::from_secs(15));
        assert_eq!(c.metrics_interval(), Duration::from_secs(60));
        assert!(c.stream && c.send_metrics);
        assert!(c
            .instance_id()
            .ends_with(&format!("-{}", std::process::id())));
        let c = c
            .with_refresh_interval(Duration::ZERO)
            .with_instance_id("i")
            .with_environment("prod");
        assert_eq!(c.refresh_interval(), MIN_INTERVAL);
        let c = c.with_metrics_interval(Duration::MAX);
        assert_eq!(c.metrics_interval(), MAX_INTERVAL);
        assert_eq!((c.instance_id(), c.environment()), ("i", Some("prod")));
        assert_eq!(Config::offline("a").url(), None);
    }

    #[test]
    fn the_token_stays_out_of_debug_output() {
        let text = format!("{:?}", Config::new("http://x", "s3cr3t", "app"));
        assert!(!text.contains("s3cr3t"), "{text}");
        assert!(text.contains("<redacted>"));
    }
}
