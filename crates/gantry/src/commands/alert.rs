//! `gantry alert list` (open alerts and the delivery state of their notifications) and
//! `gantry silence …` (silences and weekly maintenance windows that hold notifications).

use anyhow::bail;
use chrono::Utc;
use clap::{Args, Subcommand};
use serde_json::{json, Value};

use crate::output::{print_json, print_table};
use crate::GlobalArgs;

#[derive(Debug, Subcommand)]
pub enum AlertCommand {
    /// Open alerts, then notification deliveries newest first with their state, attempts
    /// and last error.
    List(AlertListArgs),
}

#[derive(Debug, Args)]
pub struct AlertListArgs {
    #[arg(long)]
    service: Option<String>,
    #[arg(long)]
    env: Option<String>,
    /// Deliveries in this state only.
    #[arg(long, value_parser = ["pending", "delivered", "failed"])]
    state: Option<String>,
    /// At most this many deliveries.
    #[arg(long, default_value_t = 50)]
    limit: u32,
}

#[derive(Debug, Subcommand)]
pub enum SilenceCommand {
    /// Hold the notifications of matching alerts until a time; prints the silence's id.
    Add(SilenceAddArgs),
    /// A weekly maintenance window holding matching alerts' notifications; prints its id.
    Maintenance(MaintenanceArgs),
    /// Silences and maintenance windows in force or to come.
    List(SilenceListArgs),
    /// End a silence or maintenance window now.
    Expire(ExpireArgs),
}

/// Which alerts: exactly one of a monitor, a service (and environment) or a label.
#[derive(Debug, Args)]
#[group(required = true, multiple = false, id = "matcher")]
pub struct MatcherArgs {
    /// The alerts of one monitor (`host:NAME` for a host's liveness).
    #[arg(long, group = "matcher")]
    monitor: Option<String>,
    /// The alerts of a service's monitors (with --env, in one environment).
    #[arg(long, group = "matcher")]
    service: Option<String>,
    /// The alerts of monitors labelled KEY=VALUE.
    #[arg(long, group = "matcher")]
    label: Option<String>,
}

#[derive(Debug, Args)]
pub struct SilenceAddArgs {
    #[command(flatten)]
    matcher: MatcherArgs,
    /// With --service: only this environment.
    #[arg(long, requires = "service")]
    env: Option<String>,
    /// How long from now (or from --starts), e.g. 2h, 30m, 1d.
    #[arg(
        long = "for",
        conflicts_with = "until",
        required_unless_present = "until"
    )]
    duration: Option<String>,
    /// When it ends (RFC 3339, epoch seconds).
    #[arg(long)]
    until: Option<String>,
    /// When it begins (RFC 3339, epoch seconds) [default: now].
    #[arg(long)]
    starts: Option<String>,
    /// Why: whoever wonders later why no one was told reads it.
    #[arg(long)]
    reason: String,
}

#[derive(Debug, Args)]
pub struct MaintenanceArgs {
    #[command(flatten)]
    matcher: MatcherArgs,
    /// With --service: only this environment.
    #[arg(long, requires = "service")]
    env: Option<String>,
    /// Days it opens on, comma-separated: mon,tue,…,sun.
    #[arg(long, value_delimiter = ',', required = true)]
    weekdays: Vec<String>,
    /// When it opens, HH:MM in UTC.
    #[arg(long)]
    start: String,
    /// How long it stays open, e.g. 3h (at most 7d).
    #[arg(long)]
    duration: String,
    #[arg(long)]
    reason: String,
}

#[derive(Debug, Args)]
pub struct SilenceListArgs {
    /// Include silences that ended or were expired.
    #[arg(long)]
    all: bool,
}

#[derive(Debug, Args)]
pub struct ExpireArgs {
    id: String,
}

fn matcher(m: &MatcherArgs, env: Option<&str>) -> anyhow::Result<Value> {
    if let Some(name) = &m.monitor {
        return Ok(json!({"monitor": {"name": name}}));
    }
    if let Some(service) = &m.service {
        return Ok(json!({"service": {"service": service, "environment": env}}));
    }
    if let Some(label) = &m.label {
        let Some((key, value)) = label.split_once('=') else {
            bail!("--label '{label}' should be KEY=VALUE, e.g. team=checkout");
        };
        return Ok(json!({"label": {"key": key.trim(), "value": value.trim()}}));
    }
    bail!("give one of --monitor, --service or --label")
}

fn time(field: &str, text: &str) -> anyhow::Result<chrono::DateTime<Utc>> {
    gantry_core::time::parse_api_time(field, text, Utc::now()).map_err(|e| anyhow::anyhow!(e.0))
}

fn duration(field: &str, text: &str) -> anyhow::Result<std::time::Duration> {
    gantry_core::time::parse_duration(field, text).map_err(|e| anyhow::anyhow!(e.0))
}

fn text(v: &Value) -> String {
    match v {
        Value::Null => "-".into(),
        Value::String(s) if s.is_empty() => "-".into(),
        Value::String(s) => s.clone(),
        other => other.to_string(),
    }
}

fn describe_matcher(m: &Value) -> String {
    if let Some(name) = m["monitor"]["name"].as_str() {
        return format!("monitor {name}");
    }
    if let Some(service) = m["service"]["service"].as_str() {
        return match m["service"]["environment"].as_str() {
            Some(env) => format!("service {service}@{env}"),
            None => format!("service {service}"),
        };
    }
    format!(
        "label {}={}",
        m["label"]["key"].as_str().unwrap_or_default(),
        m["label"]["value"].as_str().unwrap_or_default()
    )
}

pub async fn alert(global: &GlobalArgs, command: AlertCommand) -> anyhow::Result<()> {
    let client = crate::credentials::client(global)?;
    match command {
        AlertCommand::List(a) => {
            let mut query = vec![("limit", a.limit.to_string())];
            if let Some(s) = a.service {
                query.push(("service", s));
            }
            if let Some(e) = a.env {
                query.push(("environment", e));
            }
            if let Some(s) = a.state {
                query.push(("state", s));
            }
            let answer = client.alerts(&query).await?;
            if global.json {
                return print_json(&answer);
            }
            let alerts = answer["alerts"].as_array().cloned().unwrap_or_default();
            if alerts.is_empty() {
                println!("no open alerts");
            } else {
                let rows: Vec<Vec<String>> = alerts
                    .iter()
                    .map(|a| {
                        vec![
                            text(&a["monitor"]),
                            text(&a["series"]),
                            text(&a["state"]),
                            text(&a["value"]),
                            format!("{}@{}", text(&a["service"]), text(&a["environment"])),
                            text(&a["started_at"]),
                            if a["flapping"] == true {
                                "flapping".into()
                            } else {
                                String::new()
                            },
                        ]
                    })
                    .collect();
                print_table(
                    &["MONITOR", "SERIES", "STATE", "VALUE", "WHERE", "SINCE", ""],
                    &rows,
                );
            }
            println!();
            let deliveries = answer["deliveries"].as_array().cloned().unwrap_or_default();
            if deliveries.is_empty() {
                println!("no deliveries");
                return Ok(());
            }
            let rows: Vec<Vec<String>> = deliveries
                .iter()
                .map(|d| {
                    let when = match d["state"].as_str() {
                        Some("pending") => format!("next {}", text(&d["next_attempt_at"])),
                        Some("delivered") => text(&d["delivered_at"]),
                        _ => text(&d["last_attempt_at"]),
                    };
                    vec![
                        text(&d["receiver"]),
                        text(&d["state"]),
                        text(&d["attempts"]),
                        when,
                        text(&d["summary"]),
                        text(&d["last_error"]),
                    ]
                })
                .collect();
            print_table(
                &[
                    "RECEIVER",
                    "STATE",
                    "ATTEMPTS",
                    "WHEN",
                    "SUMMARY",
                    "LAST ERROR",
                ],
                &rows,
            );
        }
    }
    Ok(())
}

pub async fn silence(global: &GlobalArgs, command: SilenceCommand) -> anyhow::Result<()> {
    let client = crate::credentials::client(global)?;
    match command {
        SilenceCommand::Add(a) => {
            let starts = a
                .starts
                .as_deref()
                .map(|t| time("--starts", t))
                .transpose()?;
            let ends = match (&a.duration, &a.until) {
                (Some(d), _) => {
                    let d = chrono::Duration::from_std(duration("--for", d)?)?;
                    starts.unwrap_or_else(Utc::now) + d
                }
                (None, Some(u)) => time("--until", u)?,
                (None, None) => bail!("give --for or --until"),
            };
            let body = json!({
                "matcher": matcher(&a.matcher, a.env.as_deref())?,
                "starts_at": starts,
                "ends_at": ends,
                "reason": a.reason,
            });
            let created = client.create_silence(&body).await?;
            if global.json {
                return print_json(&created);
            }
            println!("{}", text(&created["id"]));
        }
        SilenceCommand::Maintenance(a) => {
            let body = json!({
                "matcher": matcher(&a.matcher, a.env.as_deref())?,
                "weekdays": a.weekdays,
                "start": a.start,
                "duration_secs": duration("--duration", &a.duration)?.as_secs(),
                "reason": a.reason,
            });
            let created = client.create_maintenance_window(&body).await?;
            if global.json {
                return print_json(&created);
            }
            println!("{}", text(&created["id"]));
        }
        SilenceCommand::List(a) => {
            let list = client.silences(a.all).await?;
            if global.json {
                return print_json(&list);
            }
            let rows: Vec<Vec<String>> = list
                .as_array()
                .cloned()
                .unwrap_or_default()
                .iter()
                .map(|s| {
                    let when = if s["kind"] == "maintenance" {
                        format!(
                            "{} {} for {} s",
                            s["weekdays"]
                                .as_array()
                                .map(|d| d.iter().map(text).collect::<Vec<_>>().join(","))
                                .unwrap_or_default(),
                            text(&s["start"]),
                            text(&s["duration_secs"])
                        )
                    } else {
                        format!("{} → {}", text(&s["starts_at"]), text(&s["ends_at"]))
                    };
                    let state = if s["expired_at"].is_string() {
                        "expired"
                    } else if s["active"] == true {
                        "active"
                    } else {
                        "waiting"
                    };
                    vec![
                        text(&s["id"]),
                        text(&s["kind"]),
                        describe_matcher(&s["matcher"]),
                        when,
                        state.into(),
                        text(&s["created_by"]),
                        text(&s["reason"]),
                    ]
                })
                .collect();
            print_table(
                &["ID", "KIND", "MATCHES", "WHEN", "STATE", "BY", "REASON"],
                &rows,
            );
        }
        SilenceCommand::Expire(a) => {
            let v = client.expire_silence(&a.id).await?;
            if global.json {
                return print_json(&v);
            }
            println!("expired {}", text(&v["id"]));
        }
    }
    Ok(())
}
