//! `gantry server` configuration: a TOML file, overridden by flags and environment
//! variables. Every key is documented here and in `docs/configuration.md`; an unknown key is
//! an error that names the key and the file.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

/// Everything `gantry server` can be told. Field names are the TOML keys.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct ServerConfig {
    /// Directory for the SQLite database, the first admin token and other local state.
    pub data_dir: PathBuf,
    /// Address the HTTP API listens on. Port 0 picks a free port (logged at start-up).
    pub listen: SocketAddr,
    /// `sqlite://PATH` or `postgres://USER@HOST/DB`; default SQLite in `data_dir`.
    pub database_url: Option<String>,
    /// Record changes naming unregistered services, registering them on first use.
    pub auto_create_services: bool,
    /// Serve `/metrics` to non-loopback clients without a token.
    pub metrics_public: bool,
    /// Connections to PostgreSQL.
    pub database_max_connections: u32,
    /// Longest time a short (non-streaming) request may take.
    pub request_timeout_secs: u64,
    /// Largest JSON request body, in bytes.
    pub max_body_bytes: usize,
    /// On SIGTERM or ctrl-c: how long requests in flight may take to finish.
    pub shutdown_grace_secs: u64,
    /// How long change-stream events are kept for clients that reconnect.
    pub stream_retention_secs: u64,
    /// Serve HTTPS with this certificate and key.
    pub tls: Option<TlsConfig>,
    /// StatsD over UDP and TCP (same port), or `off`.
    pub statsd_listen: Listen,
    /// Graphite plaintext over TCP and UDP (same port), or `off`.
    pub graphite_listen: Listen,
    /// Graphite pickle over TCP, or `off`.
    pub pickle_listen: Listen,
    /// How StatsD aggregates and names what it flushes (Etsy's defaults).
    pub statsd: gantry_statsd::StatsdConfig,
    /// The embedded time-series store: retention and aggregation rules, durability, caps.
    pub storage: gantry_tsdb::TsdbConfig,
    /// Who may read without a token.
    pub auth: AuthConfig,
    /// Beyond one machine: `[metrics.forward]`.
    pub metrics: MetricsConfig,
    /// Builds, artifacts, agents and rollouts.
    pub ship: crate::ship::ShipConfig,
    /// Feature flags: `[flags]`.
    pub flags: FlagsConfig,
    /// Migrations: `[migrate]`.
    pub migrate: MigrateConfig,
    /// Where alerts are sent (`[notify]`).
    pub notify: crate::notify::config::NotifyConfig,
    /// The web dashboard: `[dashboard]`.
    pub dashboard: DashboardConfig,
    /// Connections and slow clients: `[limits]`.
    pub limits: crate::limits::LimitsConfig,
}

/// The `[dashboard]` section.
#[derive(Debug, Clone, Default, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct DashboardConfig {
    /// Grafana's base URL (`https://grafana.example.com`): the metrics page links each
    /// target to Grafana's Explore view. Empty: no link.
    pub grafana_url: String,
    /// When the session cookie carries `Secure` (and is named `__Host-gantry`): `auto`
    /// when this server serves TLS itself, `always` behind a TLS-terminating proxy.
    pub secure_cookies: SecureCookies,
}

/// `[dashboard] secure_cookies`.
#[derive(Debug, Clone, Copy, Default, Deserialize, Serialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum SecureCookies {
    #[default]
    Auto,
    Always,
}

/// The `[migrate]` section.
#[derive(Debug, Clone, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct MigrateConfig {
    /// How long a deployment must have run before the contract gate opens.
    pub contract_bake_secs: u64,
    /// The databases `gantry migrate … --via-server` may name: `[migrate.databases.NAME]`.
    pub databases: std::collections::BTreeMap<String, MigrateDatabase>,
}

impl Default for MigrateConfig {
    fn default() -> Self {
        MigrateConfig {
            contract_bake_secs: 86_400,
            databases: Default::default(),
        }
    }
}

/// A database the server runs migration jobs for.
#[derive(Debug, Clone, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct MigrateDatabase {
    /// The environment variable holding the database's URL. The URL is never printed or
    /// stored; a server without the variable never runs this database's jobs.
    pub url_env: String,
    /// The services that use the database: the contract gate looks at each, and a token
    /// needs `migrate` on every one of them in `environment` to submit or control a job.
    pub services: Vec<String>,
    pub environment: String,
    /// Probes checked before each statement and batch; any over its maximum, failing, or
    /// slower than 2 s holds the job.
    #[serde(default)]
    pub throttle: Vec<ThrottleProbe>,
    /// The version tables (defaults `gantry_schema_expand`, `gantry_schema_contract`).
    #[serde(default = "default_expand_table")]
    pub expand_table: String,
    #[serde(default = "default_contract_table")]
    pub contract_table: String,
}

fn default_expand_table() -> String {
    "gantry_schema_expand".into()
}

fn default_contract_table() -> String {
    "gantry_schema_contract".into()
}

/// `[[migrate.databases.NAME.throttle]]`.
#[derive(Debug, Clone, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct ThrottleProbe {
    /// A query answering one number, e.g. replication lag in seconds.
    pub query: String,
    /// The most it may answer.
    pub max: f64,
    /// Ask another database (a replica) whose URL this variable holds; default the
    /// database being migrated.
    pub url_env: Option<String>,
}

/// The `[flags]` section.
#[derive(Debug, Clone, Default, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct FlagsConfig {
    /// Origins browsers may call the frontend API and OFREP from (CORS), e.g.
    /// `["https://shop.example.com"]`; `"*"` allows any. Empty: no cross-origin calls.
    pub frontend_cors_origins: Vec<String>,
}

/// The `[metrics]` section.
#[derive(Debug, Clone, Default, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct MetricsConfig {
    /// Send every stored point on to Graphite plaintext destinations too.
    pub forward: crate::forward::ForwardConfig,
    /// Read graphs from a graphite-web-compatible cluster instead of, or with, the store.
    pub remote_read: crate::remote_read::RemoteReadConfig,
}

/// The `[auth]` section.
#[derive(Debug, Clone, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct AuthConfig {
    /// Serve the Graphite read endpoints (`/render`, `/metrics/*`, `/tags*`, `/functions`,
    /// `/events/get_data`) without a token, for a trusted network.
    pub anonymous_read: bool,
    /// Answer 429 to an address past 20 refused credentials a minute (`auth_failures`).
    /// Off only for a test that sends bad credentials on purpose (scripts/check-api).
    pub limit_failed_auth: bool,
}

impl Default for AuthConfig {
    fn default() -> AuthConfig {
        AuthConfig {
            anonymous_read: false,
            limit_failed_auth: true,
        }
    }
}

/// A listener address, or `off`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Listen {
    Off,
    On(SocketAddr),
}

impl std::str::FromStr for Listen {
    type Err = String;
    fn from_str(s: &str) -> Result<Listen, String> {
        if s.eq_ignore_ascii_case("off") {
            return Ok(Listen::Off);
        }
        s.parse()
            .map(Listen::On)
            .map_err(|_| format!("'{s}' is not an address such as 127.0.0.1:8125, or off"))
    }
}

impl std::fmt::Display for Listen {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Listen::Off => f.write_str("off"),
            Listen::On(addr) => write!(f, "{addr}"),
        }
    }
}

impl Serialize for Listen {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for Listen {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Listen, D::Error> {
        let text = String::deserialize(deserializer)?;
        text.parse().map_err(serde::de::Error::custom)
    }
}

/// PEM files for the HTTP listener.
#[derive(Debug, Clone, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct TlsConfig {
    /// Certificate chain, PEM.
    pub cert: PathBuf,
    /// Private key, PEM.
    pub key: PathBuf,
}

impl Default for ServerConfig {
    fn default() -> Self {
        ServerConfig {
            data_dir: PathBuf::from("gantry-data"),
            listen: SocketAddr::from(([127, 0, 0, 1], 7070)),
            database_url: None,
            auto_create_services: true,
            metrics_public: false,
            database_max_connections: 16,
            request_timeout_secs: 30,
            max_body_bytes: 512 * 1024,
            shutdown_grace_secs: 10,
            stream_retention_secs: 7 * 86_400,
            tls: None,
            statsd_listen: Listen::On(SocketAddr::from(([127, 0, 0, 1], 8125))),
            graphite_listen: Listen::On(SocketAddr::from(([127, 0, 0, 1], 2003))),
            pickle_listen: Listen::On(SocketAddr::from(([127, 0, 0, 1], 2004))),
            statsd: gantry_statsd::StatsdConfig::default(),
            storage: gantry_tsdb::TsdbConfig::default(),
            auth: AuthConfig::default(),
            metrics: MetricsConfig::default(),
            ship: crate::ship::ShipConfig::default(),
            flags: FlagsConfig::default(),
            migrate: MigrateConfig::default(),
            notify: Default::default(),
            dashboard: DashboardConfig::default(),
            limits: crate::limits::LimitsConfig::default(),
        }
    }
}

/// Values given on the command line or in the environment; each wins over the file.
#[derive(Debug, Clone, Default)]
pub struct Overrides {
    pub data_dir: Option<PathBuf>,
    pub listen: Option<SocketAddr>,
    pub database_url: Option<String>,
    pub tls_cert: Option<PathBuf>,
    pub tls_key: Option<PathBuf>,
    pub statsd_listen: Option<Listen>,
    pub graphite_listen: Option<Listen>,
    pub pickle_listen: Option<Listen>,
}

#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("cannot read config file {path}: {source}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("config file {path}: {message}")]
    Parse { path: PathBuf, message: String },
    #[error("{0}")]
    Invalid(String),
}

impl ServerConfig {
    /// Reads `file` (if any), then applies `overrides`.
    pub fn load(file: Option<&Path>, overrides: Overrides) -> Result<ServerConfig, ConfigError> {
        let mut config = match file {
            None => ServerConfig::default(),
            Some(path) => {
                let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
                    path: path.to_path_buf(),
                    source,
                })?;
                ServerConfig::parse(&text).map_err(|message| ConfigError::Parse {
                    path: path.to_path_buf(),
                    message,
                })?
            }
        };
        if let Some(dir) = overrides.data_dir {
            config.data_dir = dir;
        }
        if let Some(listen) = overrides.listen {
            config.listen = listen;
        }
        if let Some(url) = overrides.database_url {
            config.database_url = Some(url);
        }
        if let Some(listen) = overrides.statsd_listen {
            config.statsd_listen = listen;
        }
        if let Some(listen) = overrides.graphite_listen {
            config.graphite_listen = listen;
        }
        if let Some(listen) = overrides.pickle_listen {
            config.pickle_listen = listen;
        }
        match (overrides.tls_cert, overrides.tls_key) {
            (Some(cert), Some(key)) => config.tls = Some(TlsConfig { cert, key }),
            (None, None) => {}
            _ => {
                return Err(ConfigError::Invalid(
                    "--tls-cert and --tls-key go together: give both or neither".into(),
                ))
            }
        }
        config.validate()?;
        Ok(config)
    }

    /// Parses TOML text; the error names the unknown or mistyped key and its line.
    pub fn parse(text: &str) -> Result<ServerConfig, String> {
        toml::from_str(text).map_err(|e| {
            let message = e.message().to_string();
            match e.span() {
                Some(span) => {
                    let line = text[..span.start.min(text.len())].matches('\n').count() + 1;
                    format!("line {line}: {message}")
                }
                None => message,
            }
        })
    }

    fn validate(&self) -> Result<(), ConfigError> {
        let positive = [
            ("request_timeout_secs", self.request_timeout_secs),
            ("shutdown_grace_secs", self.shutdown_grace_secs),
            ("stream_retention_secs", self.stream_retention_secs),
        ];
        for (key, value) in positive {
            if value == 0 {
                return Err(ConfigError::Invalid(format!(
                    "{key} must be greater than 0"
                )));
            }
        }
        if self.statsd.flush_interval_secs.is_nan() || self.statsd.flush_interval_secs < 0.1 {
            return Err(ConfigError::Invalid(
                "statsd.flush_interval_secs must be at least 0.1".into(),
            ));
        }
        if self.storage.checkpoint_interval_secs.is_nan()
            || self.storage.checkpoint_interval_secs <= 0.0
        {
            return Err(ConfigError::Invalid(
                "storage.checkpoint_interval_secs must be greater than 0".into(),
            ));
        }
        if self.storage.fsync_interval_secs.is_nan() || self.storage.fsync_interval_secs <= 0.0 {
            return Err(ConfigError::Invalid(
                "storage.fsync_interval_secs must be greater than 0".into(),
            ));
        }
        let remote = &self.metrics.remote_read.url;
        let is_http = remote.starts_with("http://") || remote.starts_with("https://");
        if !remote.is_empty() && !is_http {
            return Err(ConfigError::Invalid(format!(
                "metrics.remote_read.url '{remote}' must start with http:// or https://"
            )));
        }
        self.notify.validate().map_err(ConfigError::Invalid)?;
        self.limits.validate().map_err(ConfigError::Invalid)?;
        let grafana = &self.dashboard.grafana_url;
        let is_http = grafana.starts_with("http://") || grafana.starts_with("https://");
        if !grafana.is_empty() && !is_http {
            return Err(ConfigError::Invalid(format!(
                "dashboard.grafana_url '{grafana}' must start with http:// or https://"
            )));
        }
        for (name, db) in &self.migrate.databases {
            let key = format!("migrate.databases.{name}");
            gantry_core::names::validate_name(&key, name)
                .map_err(|e| ConfigError::Invalid(e.to_string()))?;
            if db.url_env.trim().is_empty() {
                return Err(ConfigError::Invalid(format!(
                    "{key}.url_env must name the environment variable holding the URL"
                )));
            }
            if db.services.is_empty() {
                return Err(ConfigError::Invalid(format!(
                    "{key}.services must list the services that use the database"
                )));
            }
            for service in &db.services {
                gantry_core::names::validate_name(&format!("{key}.services"), service)
                    .map_err(|e| ConfigError::Invalid(e.to_string()))?;
            }
            gantry_core::names::validate_name(&format!("{key}.environment"), &db.environment)
                .map_err(|e| ConfigError::Invalid(e.to_string()))?;
            if db
                .throttle
                .iter()
                .any(|p| p.max.is_nan() || p.query.trim().is_empty())
            {
                return Err(ConfigError::Invalid(format!(
                    "{key}.throttle: each probe needs a query and a number max"
                )));
            }
        }
        if self.max_body_bytes < 1024 {
            return Err(ConfigError::Invalid(
                "max_body_bytes must be at least 1024".into(),
            ));
        }
        Ok(())
    }

    /// The configuration as TOML: every key with its value (defaults included), the
    /// reference `gantry server --print-config` prints.
    pub fn to_toml(&self) -> String {
        toml::to_string(self)
            .unwrap_or_else(|e| format!("# cannot render the configuration: {e}\n"))
    }

    /// The store URL: the configured one, or SQLite in the data directory.
    pub fn store_url(&self) -> String {
        self.database_url
            .clone()
            .unwrap_or_else(|| format!("sqlite://{}", self.data_dir.join("gantry.db").display()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_bind_loopback() {
        let c = ServerConfig::default();
        assert_eq!(c.listen.to_string(), "127.0.0.1:7070");
        assert!(c.store_url().starts_with("sqlite://gantry-data/"));
    }

    #[test]
    fn parses_every_key() {
        let c = ServerConfig::parse(
            r#"
            data_dir = "/var/lib/gantry"
            listen = "0.0.0.0:8080"
            database_url = "postgres://gantry@db/gantry"
            auto_create_services = false
            metrics_public = true
            database_max_connections = 4
            request_timeout_secs = 5
            max_body_bytes = 4096
            shutdown_grace_secs = 3
            stream_retention_secs = 60
            statsd_listen = "off"
            graphite_listen = "127.0.0.1:0"
            pickle_listen = "127.0.0.1:0"
            [statsd]
            flush_interval_secs = 1
            percent_thresholds = [90, 99]
            [storage]
            fsync_interval_secs = 0.5
            [[storage.retention]]
            pattern = "^stats\\."
            retentions = "10s:1d"
            [tls]
            cert = "c.pem"
            key = "k.pem"
            "#,
        )
        .unwrap();
        assert_eq!(c.listen.port(), 8080);
        assert!(!c.auto_create_services);
        assert_eq!(c.statsd_listen, Listen::Off);
        assert_eq!(c.statsd.percent_thresholds, vec![90.0, 99.0]);
        assert_eq!(c.storage.retention[0].retentions, "10s:1d");
        assert_eq!(c.tls.unwrap().key, PathBuf::from("k.pem"));
    }

    #[test]
    fn migrate_databases_are_read_and_checked() {
        let c = ServerConfig::parse(
            r#"
            [migrate.databases.shop]
            url_env = "SHOP_DB"
            services = ["shop", "shop-worker"]
            environment = "prod"
            [[migrate.databases.shop.throttle]]
            query = "SELECT 1"
            max = 10
            url_env = "SHOP_REPLICA"
            "#,
        )
        .unwrap();
        let db = &c.migrate.databases["shop"];
        assert_eq!(db.services, ["shop", "shop-worker"]);
        assert_eq!(db.throttle[0].url_env.as_deref(), Some("SHOP_REPLICA"));
        assert_eq!(db.expand_table, "gantry_schema_expand");
        let err = ServerConfig::parse(
            "[migrate.databases.shop]\nurl_env = \"X\"\nservices = []\nenvironment = \"prod\"",
        )
        .unwrap()
        .validate()
        .unwrap_err()
        .to_string();
        assert!(err.contains("migrate.databases.shop.services"), "{err}");
        let err = ServerConfig::parse(
            "[migrate.databases.shop]\nurl = \"postgres://x\"\nservices = [\"a\"]\nenvironment = \"prod\"",
        )
        .unwrap_err();
        assert!(err.contains("url"), "{err}");
    }

    #[test]
    fn unknown_and_mistyped_keys_are_named() {
        let err =
            ServerConfig::parse("listen = \"127.0.0.1:1\"\nlisten_addr = \"x\"\n").unwrap_err();
        assert!(
            err.contains("line 2") && err.contains("listen_addr"),
            "{err}"
        );
        let err = ServerConfig::parse("request_timeout_secs = \"ten\"").unwrap_err();
        assert!(
            err.contains("line 1") && err.contains("invalid type"),
            "{err}"
        );
        let err = ServerConfig::parse("[tls]\ncert = \"a\"\nkee = \"b\"").unwrap_err();
        assert!(err.contains("kee"), "{err}");
        let err = ServerConfig::parse("[statsd]\nflush_interval = 5").unwrap_err();
        assert!(
            err.contains("flush_interval") && err.contains("line 2"),
            "{err}"
        );
        let err = ServerConfig::parse("statsd_listen = \"everywhere\"").unwrap_err();
        assert!(err.contains("'everywhere' is not an address"), "{err}");
    }

    #[test]
    fn flags_win_and_tls_needs_both() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("gantry.toml");
        std::fs::write(&file, "listen = \"127.0.0.1:1\"\n").unwrap();
        let c = ServerConfig::load(
            Some(&file),
            Overrides {
                listen: Some("127.0.0.1:2".parse().unwrap()),
                ..Overrides::default()
            },
        )
        .unwrap();
        assert_eq!(c.listen.port(), 2);
        let err = ServerConfig::load(
            None,
            Overrides {
                tls_cert: Some("c".into()),
                ..Overrides::default()
            },
        )
        .unwrap_err();
        assert!(err.to_string().contains("--tls-key"));
        std::fs::write(&file, "colour = \"blue\"\n").unwrap();
        let err = ServerConfig::load(Some(&file), Overrides::default())
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("gantry.toml") && err.contains("colour"),
            "{err}"
        );
    }
}

#[cfg(test)]
mod reference {
    use super::*;

    /// `--print-config` is a valid config file, and docs/configuration.md documents every
    /// key it prints, so the reference cannot fall behind the code.
    #[test]
    fn the_reference_covers_every_key() {
        let mut config = ServerConfig::default();
        config.migrate.databases.insert(
            "shop".into(),
            MigrateDatabase {
                url_env: "SHOP_DATABASE_URL".into(),
                services: vec!["shop".into()],
                environment: "prod".into(),
                throttle: vec![ThrottleProbe {
                    query: "SELECT 1".into(),
                    max: 5.0,
                    url_env: Some("SHOP_REPLICA_URL".into()),
                }],
                expand_table: default_expand_table(),
                contract_table: default_contract_table(),
            },
        );
        use crate::notify::config::{
            EmailReceiver, SmtpConfig, SmtpTls, WebhookFormat, WebhookReceiver,
        };
        config.notify.smtp = Some(SmtpConfig {
            host: "smtp.example.com".into(),
            port: Some(587),
            tls: SmtpTls::Starttls,
            username: Some("gantry".into()),
            password_file: Some("/etc/gantry/smtp-password".into()),
            from: "Gantry <gantry@example.com>".into(),
            timeout_secs: 10,
        });
        config.notify.webhooks.push(WebhookReceiver {
            name: "ops-chat".into(),
            url: "https://chat.example.com/hooks/T0001".into(),
            format: WebhookFormat::Slack,
            secret_file: Some("/etc/gantry/webhook-secret".into()),
            services: vec!["shop".into()],
            environments: vec!["prod".into()],
            timeout_secs: 10,
        });
        config.notify.emails.push(EmailReceiver {
            name: "oncall".into(),
            to: vec!["oncall@example.com".into()],
            services: Vec::new(),
            environments: vec!["prod".into()],
        });
        let printed = config.to_toml();
        let reparsed = ServerConfig::parse(&printed).unwrap();
        assert_eq!(reparsed.to_toml(), printed);
        let doc_path =
            std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../docs/configuration.md");
        let doc = std::fs::read_to_string(&doc_path).unwrap();
        let mut missing = Vec::new();
        for line in printed.lines() {
            let line = line.trim();
            if let Some(table) = line.strip_prefix('[') {
                if !doc.contains(&format!("[{table}")) {
                    missing.push(line.to_string());
                }
            } else if let Some((key, _)) = line.split_once(" = ") {
                let documented =
                    doc.contains(&format!("{key} =")) || doc.contains(&format!("# {key} ="));
                if !documented {
                    missing.push(key.to_string());
                }
            }
        }
        assert!(
            missing.is_empty(),
            "docs/configuration.md lacks: {missing:?}"
        );
    }
}
