//! The `[notify]` section: grouping timings, the SMTP server, and the receivers alerts are
//! sent to. Secrets (the SMTP password, webhook signing keys) live in files named here and
//! are read when a notification is sent, so rotating one needs no restart.
//!
//! ```toml
//! [notify]
//! group_wait_secs = 30          # Alertmanager's defaults
//! group_interval_secs = 300
//! repeat_interval_secs = 14400
//!
//! [notify.smtp]
//! host = "smtp.example.com"
//! port = 587                    # default: 587 for starttls, 465 for tls, 25 for none
//! tls = "starttls"              # starttls | tls | none
//! username = "gantry"
//! password_file = "/etc/gantry/smtp-password"
//! from = "Gantry <gantry@example.com>"
//!
//! [[notify.webhooks]]
//! name = "ops-chat"
//! url = "https://chat.example.com/hooks/T0001"
//! format = "slack"              # json | slack
//! secret_file = "/etc/gantry/webhook-secret"   # signs X-Gantry-Signature
//! services = ["shop"]           # default: every service
//! environments = ["prod"]       # default: every environment
//!
//! [[notify.emails]]
//! name = "oncall"
//! to = ["oncall@example.com"]
//! environments = ["prod"]
//! ```

use std::collections::HashSet;
use std::path::PathBuf;
use std::time::Duration;

use gantry_core::names::validate_name;
use gantry_monitors::GroupTimings;
use serde::{Deserialize, Serialize};

/// The `[notify]` section.
#[derive(Debug, Clone, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct NotifyConfig {
    /// How long a new group of alerts waits before its first notification.
    pub group_wait_secs: u64,
    /// How often a group is looked at again once notified.
    pub group_interval_secs: u64,
    /// How long before a group still firing, unchanged, is notified again.
    pub repeat_interval_secs: u64,
    pub smtp: Option<SmtpConfig>,
    pub webhooks: Vec<WebhookReceiver>,
    pub emails: Vec<EmailReceiver>,
}

impl Default for NotifyConfig {
    fn default() -> Self {
        let t = GroupTimings::default();
        NotifyConfig {
            group_wait_secs: t.group_wait.as_secs(),
            group_interval_secs: t.group_interval.as_secs(),
            repeat_interval_secs: t.repeat_interval.as_secs(),
            smtp: None,
            webhooks: Vec::new(),
            emails: Vec::new(),
        }
    }
}

/// `[notify.smtp]`.
#[derive(Debug, Clone, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct SmtpConfig {
    pub host: String,
    /// Default: 587 for `starttls`, 465 for `tls`, 25 for `none`.
    pub port: Option<u16>,
    #[serde(default)]
    pub tls: SmtpTls,
    pub username: Option<String>,
    /// A file holding the password (its trailing newline ignored); needs `username`.
    pub password_file: Option<PathBuf>,
    /// The sender, `Name <address>` or `address`.
    pub from: String,
    /// How long one attempt may take, connection to the end of the message.
    #[serde(default = "ten")]
    pub timeout_secs: u64,
}

/// How the SMTP connection is protected.
#[derive(Debug, Clone, Copy, Default, Deserialize, Serialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum SmtpTls {
    /// Plain connection upgraded with STARTTLS, which the server must offer.
    #[default]
    Starttls,
    /// TLS from the first byte (SMTPS).
    Tls,
    /// No encryption, for a relay on this host or a test sink.
    None,
}

impl SmtpConfig {
    pub fn port(&self) -> u16 {
        self.port.unwrap_or(match self.tls {
            SmtpTls::Starttls => 587,
            SmtpTls::Tls => 465,
            SmtpTls::None => 25,
        })
    }
}

/// What a webhook's body looks like.
#[derive(Debug, Clone, Copy, Default, Deserialize, Serialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum WebhookFormat {
    /// Gantry's own JSON (documented in docs/api.md).
    #[default]
    Json,
    /// `{"text": …}`, which Slack's incoming webhooks and their many look-alikes take.
    Slack,
}

/// `[[notify.webhooks]]`.
#[derive(Debug, Clone, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct WebhookReceiver {
    pub name: String,
    pub url: String,
    #[serde(default)]
    pub format: WebhookFormat,
    /// A file holding the key for `X-Gantry-Signature: sha256=<HMAC of the body>`.
    pub secret_file: Option<PathBuf>,
    #[serde(default)]
    pub services: Vec<String>,
    #[serde(default)]
    pub environments: Vec<String>,
    #[serde(default = "ten")]
    pub timeout_secs: u64,
}

/// `[[notify.emails]]`: sent through `[notify.smtp]`.
#[derive(Debug, Clone, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct EmailReceiver {
    pub name: String,
    pub to: Vec<String>,
    #[serde(default)]
    pub services: Vec<String>,
    #[serde(default)]
    pub environments: Vec<String>,
}

fn ten() -> u64 {
    10
}

/// A receiver, whichever kind.
#[derive(Debug, Clone, Copy)]
pub enum Receiver<'a> {
    Webhook(&'a WebhookReceiver),
    Email(&'a EmailReceiver),
}

impl<'a> Receiver<'a> {
    pub fn name(&self) -> &'a str {
        match self {
            Receiver::Webhook(w) => &w.name,
            Receiver::Email(e) => &e.name,
        }
    }

    /// Whether alerts of this service and environment go to this receiver.
    pub fn wants(&self, service: &str, environment: &str) -> bool {
        let (services, environments) = match self {
            Receiver::Webhook(w) => (&w.services, &w.environments),
            Receiver::Email(e) => (&e.services, &e.environments),
        };
        (services.is_empty() || services.iter().any(|s| s == service))
            && (environments.is_empty() || environments.iter().any(|e| e == environment))
    }
}

impl NotifyConfig {
    pub fn timings(&self) -> GroupTimings {
        GroupTimings {
            group_wait: Duration::from_secs(self.group_wait_secs),
            group_interval: Duration::from_secs(self.group_interval_secs),
            repeat_interval: Duration::from_secs(self.repeat_interval_secs),
        }
    }

    /// Every receiver, webhooks first.
    pub fn receivers(&self) -> impl Iterator<Item = Receiver<'_>> {
        self.webhooks
            .iter()
            .map(Receiver::Webhook)
            .chain(self.emails.iter().map(Receiver::Email))
    }

    pub fn receiver(&self, name: &str) -> Option<Receiver<'_>> {
        self.receivers().find(|r| r.name() == name)
    }

    /// The rules a configuration must pass; the error names the key.
    pub fn validate(&self) -> Result<(), String> {
        for (key, value) in [
            ("group_interval_secs", self.group_interval_secs),
            ("repeat_interval_secs", self.repeat_interval_secs),
        ] {
            if value == 0 {
                return Err(format!("notify.{key} must be greater than 0"));
            }
        }
        let mut names = HashSet::new();
        for r in self.receivers() {
            let (key, services, environments) = match r {
                Receiver::Webhook(w) => ("notify.webhooks", &w.services, &w.environments),
                Receiver::Email(e) => ("notify.emails", &e.services, &e.environments),
            };
            validate_name(&format!("{key}.name"), r.name()).map_err(|e| e.to_string())?;
            if !names.insert(r.name()) {
                return Err(format!(
                    "{key}: the receiver name '{}' is used twice; names are what `gantry alert list` shows",
                    r.name()
                ));
            }
            for s in services {
                validate_name(&format!("{key}.services"), s).map_err(|e| e.to_string())?;
            }
            for e in environments {
                validate_name(&format!("{key}.environments"), e).map_err(|e| e.to_string())?;
            }
        }
        for w in &self.webhooks {
            let key = format!("notify.webhooks '{}'", w.name);
            let url =
                url::Url::parse(&w.url).map_err(|e| format!("{key}: url is not a URL: {e}"))?;
            if !matches!(url.scheme(), "http" | "https") {
                return Err(format!(
                    "{key}: url must start with http:// or https://, not {}:",
                    url.scheme()
                ));
            }
            if w.timeout_secs == 0 || w.timeout_secs > 60 {
                return Err(format!("{key}: timeout_secs must be from 1 to 60"));
            }
        }
        if let Some(smtp) = &self.smtp {
            if smtp.host.trim().is_empty() {
                return Err("notify.smtp.host is empty".into());
            }
            smtp.from
                .parse::<lettre::message::Mailbox>()
                .map_err(|e| format!("notify.smtp.from '{}' is not an address: {e}", smtp.from))?;
            if smtp.username.is_some() != smtp.password_file.is_some() {
                return Err(
                    "notify.smtp: username and password_file go together (give both, or neither)"
                        .into(),
                );
            }
            if smtp.timeout_secs == 0 || smtp.timeout_secs > 300 {
                return Err("notify.smtp.timeout_secs must be from 1 to 300".into());
            }
        }
        for e in &self.emails {
            let key = format!("notify.emails '{}'", e.name);
            if self.smtp.is_none() {
                return Err(format!(
                    "{key}: e-mail receivers need a [notify.smtp] section naming the server"
                ));
            }
            if e.to.is_empty() {
                return Err(format!("{key}: to lists no address"));
            }
            for to in &e.to {
                to.parse::<lettre::message::Mailbox>()
                    .map_err(|err| format!("{key}: '{to}' is not an address: {err}"))?;
            }
        }
        Ok(())
    }

    /// Reads every secret file once, so a missing or unreadable one stops the server at
    /// start rather than at the first alert.
    pub fn check_secrets(&self) -> Result<(), String> {
        let files = self
            .smtp
            .iter()
            .filter_map(|s| {
                s.password_file
                    .as_ref()
                    .map(|p| ("notify.smtp.password_file", p))
            })
            .chain(self.webhooks.iter().filter_map(|w| {
                w.secret_file
                    .as_ref()
                    .map(|p| ("notify.webhooks.secret_file", p))
            }));
        for (key, path) in files {
            let secret = read_secret(path).map_err(|e| format!("{key}: {e}"))?;
            if secret.is_empty() {
                return Err(format!("{key}: {} is empty", path.display()));
            }
        }
        Ok(())
    }
}

/// A secret file's text without its trailing newline.
pub fn read_secret(path: &std::path::Path) -> Result<String, String> {
    std::fs::read_to_string(path)
        .map(|s| s.trim_end_matches(['\n', '\r']).to_string())
        .map_err(|e| format!("cannot read {}: {e}", path.display()))
}
