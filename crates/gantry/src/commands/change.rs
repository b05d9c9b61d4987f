//! `gantry change …`: the change log from the command line.

use std::time::Duration;

use anyhow::{bail, Context};
use chrono::{DateTime, Utc};
use clap::{Args, Subcommand};
use futures::StreamExt;
use gantry_client::{ChangeFilter, StreamItem};
use gantry_core::{
    Change, ChangeKind, ChangePatch, ChangeStatus, CommitRange, Link, NewChange, Size,
};

use crate::credentials::client;
use crate::output::{opt_time, print_json, print_table, time, truncate};
use crate::GlobalArgs;

#[derive(Debug, Subcommand)]
pub enum ChangeCommand {
    /// Record a change; prints its id.
    Record(RecordArgs),
    /// List changes, newest first.
    List(ListArgs),
    /// Show one change with its history.
    Show {
        /// Change id.
        id: String,
    },
    /// Update a change's status, finish time or description.
    Update(UpdateArgs),
    /// Follow changes as they are recorded and updated (resumes after a dropped connection).
    Watch(WatchArgs),
}

#[derive(Debug, Args)]
pub struct RecordArgs {
    /// deploy, rollback, flag, migration, config or note.
    #[arg(long)]
    kind: ChangeKind,
    /// The service changed.
    #[arg(long)]
    service: Option<String>,
    /// The environment changed (dev, stage, prod, …).
    #[arg(long = "env")]
    environment: Option<String>,
    /// One line, at most 500 characters.
    #[arg(long)]
    summary: String,
    /// Longer text.
    #[arg(long)]
    description: Option<String>,
    /// in_progress, succeeded, failed, rolled_back or cancelled [default: succeeded]
    #[arg(long)]
    status: Option<ChangeStatus>,
    /// When it started: RFC 3339, epoch seconds, or a duration ago (10m) [default: now]
    #[arg(long)]
    started_at: Option<String>,
    /// When it finished (same formats); only with a finished status.
    #[arg(long)]
    finished_at: Option<String>,
    /// Commits shipped, as FROM..TO.
    #[arg(long)]
    commit_range: Option<CommitRange>,
    /// A link: URL, or TITLE=URL. Repeatable.
    #[arg(long = "link")]
    links: Vec<String>,
    /// Metadata as key=value (values are strings). Repeatable.
    #[arg(long = "meta")]
    meta: Vec<String>,
    /// How big the change is, e.g. 12 (see --size-unit).
    #[arg(long)]
    size: Option<f64>,
    /// Unit of --size.
    #[arg(long, default_value = "commits")]
    size_unit: String,
}

#[derive(Debug, Args)]
pub struct ListArgs {
    #[arg(long)]
    service: Option<String>,
    #[arg(long = "env")]
    environment: Option<String>,
    #[arg(long)]
    kind: Option<ChangeKind>,
    #[arg(long)]
    status: Option<ChangeStatus>,
    /// Started at or after: RFC 3339, epoch seconds, or a duration ago (7d).
    #[arg(long)]
    since: Option<String>,
    /// Started before (same formats).
    #[arg(long)]
    until: Option<String>,
    /// How many changes to show (pages through the server's 1,000 per request).
    #[arg(long, default_value_t = 100)]
    limit: u32,
}

#[derive(Debug, Args)]
pub struct UpdateArgs {
    /// Change id.
    id: String,
    #[arg(long)]
    status: Option<ChangeStatus>,
    /// RFC 3339, epoch seconds, or a duration ago [default with a finished status: now]
    #[arg(long)]
    finished_at: Option<String>,
    #[arg(long)]
    description: Option<String>,
}

#[derive(Debug, Args)]
pub struct WatchArgs {
    #[arg(long)]
    service: Option<String>,
    #[arg(long = "env")]
    environment: Option<String>,
    #[arg(long)]
    kind: Option<ChangeKind>,
    /// Start after this event sequence number instead of now.
    #[arg(long)]
    after: Option<i64>,
}

pub async fn run(global: &GlobalArgs, command: ChangeCommand) -> anyhow::Result<()> {
    match command {
        ChangeCommand::Record(args) => record(global, args).await,
        ChangeCommand::List(args) => list(global, args).await,
        ChangeCommand::Show { id } => show(global, &id).await,
        ChangeCommand::Update(args) => update(global, args).await,
        ChangeCommand::Watch(args) => watch(global, args).await,
    }
}

fn parse_time(field: &str, s: &str) -> anyhow::Result<DateTime<Utc>> {
    Ok(gantry_core::time::parse_api_time(field, s, Utc::now())?)
}

fn parse_link(arg: &str) -> Link {
    if arg.starts_with("http://") || arg.starts_with("https://") {
        return Link {
            title: String::new(),
            url: arg.to_string(),
        };
    }
    match arg.split_once('=') {
        Some((title, url)) => Link {
            title: title.to_string(),
            url: url.to_string(),
        },
        None => Link {
            title: String::new(),
            url: arg.to_string(),
        },
    }
}

async fn record(global: &GlobalArgs, args: RecordArgs) -> anyhow::Result<()> {
    let mut metadata = serde_json::Map::new();
    for pair in &args.meta {
        let (key, value) = pair
            .split_once('=')
            .with_context(|| format!("--meta '{pair}' is not of the form key=value"))?;
        if key.is_empty() {
            bail!("--meta '{pair}' has an empty key");
        }
        metadata.insert(
            key.to_string(),
            serde_json::Value::String(value.to_string()),
        );
    }
    let new = NewChange {
        kind: Some(args.kind.to_string()),
        service: args.service,
        environment: args.environment,
        summary: Some(args.summary),
        description: args.description,
        status: args.status,
        started_at: args
            .started_at
            .as_deref()
            .map(|s| parse_time("--started-at", s))
            .transpose()?,
        finished_at: args
            .finished_at
            .as_deref()
            .map(|s| parse_time("--finished-at", s))
            .transpose()?,
        size: args.size.map(|value| Size {
            value,
            unit: args.size_unit,
        }),
        commit_range: args.commit_range,
        links: args.links.iter().map(|l| parse_link(l)).collect(),
        metadata: (!metadata.is_empty()).then_some(serde_json::Value::Object(metadata)),
    };
    let change = client(global)?.record_change(&new).await?;
    if global.json {
        print_json(&change)
    } else {
        println!("{}", change.id);
        Ok(())
    }
}

async fn list(global: &GlobalArgs, args: ListArgs) -> anyhow::Result<()> {
    let client = client(global)?;
    let mut filter = ChangeFilter {
        service: args.service,
        environment: args.environment,
        kind: args.kind.map(|k| k.to_string()),
        status: args.status.map(|s| s.to_string()),
        since: args.since,
        until: args.until,
        limit: None,
        cursor: None,
    };
    let mut changes = Vec::new();
    while changes.len() < args.limit as usize {
        let want =
            (args.limit as usize - changes.len()).min(gantry_core::change::MAX_LIMIT as usize);
        filter.limit = Some(want as u32);
        let page = client.list_changes(&filter).await?;
        changes.extend(page.items);
        match page.next_cursor {
            Some(cursor) => filter.cursor = Some(cursor),
            None => break,
        }
    }
    if global.json {
        return print_json(&changes);
    }
    let rows: Vec<Vec<String>> = changes
        .iter()
        .map(|c| {
            vec![
                c.id.to_string(),
                time(c.started_at),
                c.kind.to_string(),
                c.service.clone().unwrap_or_else(|| "-".into()),
                c.environment.clone().unwrap_or_else(|| "-".into()),
                c.status.to_string(),
                c.actor.clone(),
                truncate(&c.summary, 60),
            ]
        })
        .collect();
    print_table(
        &[
            "ID", "STARTED", "KIND", "SERVICE", "ENV", "STATUS", "ACTOR", "SUMMARY",
        ],
        &rows,
    );
    if changes.is_empty() {
        eprintln!("no changes match");
    }
    Ok(())
}

fn print_change(c: &Change) {
    let field = |name: &str, value: String| println!("{name:<13}{value}");
    field("id", c.id.to_string());
    field("kind", c.kind.to_string());
    field("service", c.service.clone().unwrap_or_else(|| "-".into()));
    field(
        "environment",
        c.environment.clone().unwrap_or_else(|| "-".into()),
    );
    field("status", c.status.to_string());
    field("summary", c.summary.clone());
    field("actor", c.actor.clone());
    field("started", time(c.started_at));
    field("finished", opt_time(c.finished_at));
    if let (Some(finished), true) = (c.finished_at, c.finished_at != Some(c.started_at)) {
        let seconds = (finished - c.started_at).num_seconds();
        field("duration", humantime_seconds(seconds));
    }
    if let Some(size) = &c.size {
        field("size", format!("{} {}", size.value, size.unit));
    }
    if let Some(range) = &c.commit_range {
        field("commits", format!("{}..{}", range.from, range.to));
    }
    for link in &c.links {
        let title = if link.title.is_empty() {
            String::new()
        } else {
            format!("{}: ", link.title)
        };
        field("link", format!("{title}{}", link.url));
    }
    for (key, value) in &c.metadata {
        let text = value
            .as_str()
            .map_or_else(|| value.to_string(), str::to_string);
        field("meta", format!("{key}={text}"));
    }
    if let Some(description) = &c.description {
        println!("\n{description}");
    }
    if let Some(history) = c.history.as_ref().filter(|h| !h.is_empty()) {
        println!("\nhistory:");
        for entry in history {
            let fields: Vec<String> = entry
                .fields
                .iter()
                .map(|(k, v)| {
                    format!(
                        "{k}={}",
                        v.as_str()
                            .map_or_else(|| v.to_string(), |s| truncate(s, 60))
                    )
                })
                .collect();
            println!(
                "  {}  {:<12} {}",
                time(entry.at),
                entry.actor,
                fields.join(" ")
            );
        }
    }
}

fn humantime_seconds(seconds: i64) -> String {
    let s = seconds.max(0);
    match s {
        0..=59 => format!("{s}s"),
        60..=3599 => format!("{}m{}s", s / 60, s % 60),
        _ => format!("{}h{}m", s / 3600, (s % 3600) / 60),
    }
}

async fn show(global: &GlobalArgs, id: &str) -> anyhow::Result<()> {
    let change = client(global)?.get_change(id).await?;
    if global.json {
        return print_json(&change);
    }
    print_change(&change);
    Ok(())
}

async fn update(global: &GlobalArgs, args: UpdateArgs) -> anyhow::Result<()> {
    let patch = ChangePatch {
        status: args.status,
        finished_at: args
            .finished_at
            .as_deref()
            .map(|s| parse_time("--finished-at", s))
            .transpose()?,
        description: args.description,
    };
    if patch.is_empty() {
        bail!("nothing to update: give --status, --finished-at or --description");
    }
    let change = client(global)?.update_change(&args.id, &patch).await?;
    if global.json {
        return print_json(&change);
    }
    eprintln!(
        "updated {}: {} {}",
        change.id, change.status, change.summary
    );
    Ok(())
}

async fn watch(global: &GlobalArgs, args: WatchArgs) -> anyhow::Result<()> {
    let client = client(global)?;
    let filter = ChangeFilter {
        service: args.service,
        environment: args.environment,
        kind: args.kind.map(|k| k.to_string()),
        ..ChangeFilter::default()
    };
    let mut after = args.after;
    let mut backoff = Duration::from_millis(500);
    loop {
        match client.stream_changes(after, &filter).await {
            Ok(mut events) => {
                backoff = Duration::from_millis(500);
                if !global.json {
                    eprintln!("watching changes on {} (ctrl-c to stop)", client.base_url());
                }
                while let Some(event) = events.next().await {
                    let event = match event {
                        Ok(StreamItem::Ready { seq }) => {
                            after = Some(seq);
                            continue;
                        }
                        Ok(StreamItem::Change(e)) => e,
                        Err(e) => {
                            eprintln!("stream interrupted: {e}");
                            break;
                        }
                    };
                    after = Some(event.seq);
                    if global.json {
                        println!("{}", serde_json::to_string(&event)?);
                    } else {
                        let c = &event.change;
                        println!(
                            "{}  {:<7} {}  {:<9} {}@{}  {:<11} {}",
                            time(c.started_at),
                            event.kind.as_str(),
                            c.id,
                            c.kind,
                            c.service.as_deref().unwrap_or("-"),
                            c.environment.as_deref().unwrap_or("-"),
                            c.status,
                            truncate(&c.summary, 60)
                        );
                    }
                }
            }
            // A refusal (bad token, bad filter) will not go away by retrying.
            Err(e @ gantry_client::ClientError::Api { .. }) => return Err(e.into()),
            Err(e) => eprintln!("{e}"),
        }
        eprintln!("reconnecting in {} ms", backoff.as_millis());
        tokio::time::sleep(backoff).await;
        backoff = (backoff * 2).min(Duration::from_secs(10));
    }
}
