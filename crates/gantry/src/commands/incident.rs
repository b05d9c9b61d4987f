//! `gantry incident …`: open an incident by hand, list and show incidents (suspects with
//! their scores, the timeline), move their clocks, add notes, name the cause, and the
//! remedies (`rollback`, `flag-off`), each a change linked to the incident.

use anyhow::bail;
use clap::{Args, Subcommand};
use gantry_client::Method;
use gantry_core::incident::{Incident, NewIncident, Severity};

use crate::output::{print_json, print_table};
use crate::GlobalArgs;

#[derive(Debug, Subcommand)]
pub enum IncidentCommand {
    /// Open an incident; prints only its id. Suspects are ranked from the change log.
    Open(OpenArgs),
    /// Incidents, newest first.
    List(ListArgs),
    /// One incident: clocks, ranked suspects with scores, cause, timeline.
    Show(IdArg),
    /// Someone is on it.
    Ack(IdArg),
    /// Users are no longer hurt (acknowledges too).
    Mitigate(IdArg),
    /// It is over (mitigates too).
    Resolve(IdArg),
    /// A note on the timeline.
    Note(NoteArgs),
    /// Name the confirmed cause: a change id, or --not-a-change "what it was".
    Cause(CauseArgs),
    /// Correct the severity, title, impact start or postmortem link.
    Edit(EditArgs),
    /// Roll back the top deploy suspect (or halt it while it rolls out); prints the change id.
    Rollback(IdArg),
    /// Turn off the flag of the top flag suspect; prints the change id.
    FlagOff(IdArg),
}

#[derive(Debug, Args)]
pub struct OpenArgs {
    #[arg(long)]
    service: String,
    #[arg(long)]
    env: String,
    #[arg(long)]
    title: String,
    /// SEV1 to SEV4 [default: SEV3].
    #[arg(long)]
    severity: Option<Severity>,
    /// When users were first hurt (RFC 3339, epoch seconds, or a duration ago such as 15m)
    /// [default: now].
    #[arg(long)]
    impact_started: Option<String>,
}

#[derive(Debug, Args)]
pub struct ListArgs {
    #[arg(long)]
    service: Option<String>,
    #[arg(long)]
    env: Option<String>,
    /// Only incidents not resolved.
    #[arg(long)]
    open: bool,
    /// Detected since (RFC 3339, epoch seconds, or a duration ago such as 30d).
    #[arg(long)]
    since: Option<String>,
    #[arg(long, default_value_t = 50)]
    limit: u32,
}

#[derive(Debug, Args)]
pub struct IdArg {
    id: String,
}

#[derive(Debug, Args)]
pub struct NoteArgs {
    id: String,
    text: String,
}

#[derive(Debug, Args)]
pub struct CauseArgs {
    id: String,
    /// The change that caused it.
    #[arg(
        required_unless_present = "not_a_change",
        conflicts_with = "not_a_change"
    )]
    change: Option<String>,
    /// What it was when it was not a change.
    #[arg(long)]
    not_a_change: Option<String>,
}

#[derive(Debug, Args)]
pub struct EditArgs {
    id: String,
    #[arg(long)]
    title: Option<String>,
    #[arg(long)]
    severity: Option<Severity>,
    #[arg(long)]
    impact_started: Option<String>,
    /// A link to the postmortem.
    #[arg(long)]
    postmortem: Option<String>,
}

fn time(label: &str, text: &str) -> anyhow::Result<chrono::DateTime<chrono::Utc>> {
    gantry_core::time::parse_api_time(label, text, chrono::Utc::now())
        .map_err(|e| anyhow::anyhow!("{}", e.0))
}

fn fmt_time(t: Option<chrono::DateTime<chrono::Utc>>) -> String {
    t.map(|t| t.format("%Y-%m-%d %H:%M:%S").to_string())
        .unwrap_or_else(|| "-".into())
}

fn summary(i: &Incident) -> Vec<String> {
    vec![
        i.id.to_string(),
        i.severity.to_string(),
        i.state.to_string(),
        i.services.join(","),
        i.environments.join(","),
        fmt_time(Some(i.detected_at)),
        i.title.clone(),
    ]
}

pub async fn run(global: &GlobalArgs, command: IncidentCommand) -> anyhow::Result<()> {
    let client = crate::credentials::client(global)?;
    let show_one = |i: &Incident| -> anyhow::Result<()> {
        if global.json {
            return print_json(i);
        }
        println!("incident {} is {}", i.id, i.state);
        Ok(())
    };
    match command {
        IncidentCommand::Open(a) => {
            let new = NewIncident {
                title: a.title,
                service: a.service,
                environment: a.env,
                severity: a.severity,
                impact_started_at: a
                    .impact_started
                    .as_deref()
                    .map(|t| time("--impact-started", t))
                    .transpose()?,
            };
            let incident = client.open_incident(&new).await?;
            if global.json {
                return print_json(&incident);
            }
            println!("{}", incident.id);
            if let Some(top) = incident.suspects.first() {
                eprintln!(
                    "incident: top suspect {} {} (score {:.3})",
                    top.kind, top.summary, top.score
                );
            }
        }
        IncidentCommand::List(a) => {
            let mut query = vec![("limit", a.limit.to_string())];
            if let Some(s) = a.service {
                query.push(("service", s));
            }
            if let Some(e) = a.env {
                query.push(("environment", e));
            }
            if a.open {
                query.push(("open", "true".into()));
            }
            if let Some(since) = a.since {
                query.push(("since", since));
            }
            let list = client.list_incidents(&query).await?;
            if global.json {
                return print_json(&list);
            }
            let rows: Vec<Vec<String>> = list.iter().map(summary).collect();
            print_table(
                &[
                    "ID", "SEV", "STATE", "SERVICES", "ENVS", "DETECTED", "TITLE",
                ],
                &rows,
            );
        }
        IncidentCommand::Show(a) => {
            let view = client.get_incident(&a.id).await?;
            if global.json {
                return print_json(&view);
            }
            let i = &view.incident;
            println!("{} {} {}: {}", i.id, i.severity, i.state, i.title);
            println!(
                "services:     {} in {}",
                i.services.join(", "),
                i.environments.join(", ")
            );
            println!("impact from:  {}", fmt_time(Some(i.impact_started_at)));
            println!("detected:     {}", fmt_time(Some(i.detected_at)));
            println!("acknowledged: {}", fmt_time(i.acknowledged_at));
            println!("mitigated:    {}", fmt_time(i.mitigated_at));
            println!("resolved:     {}", fmt_time(i.resolved_at));
            match &i.cause {
                Some(gantry_core::incident::Cause::Change { change }) => {
                    println!("cause:        change {change}")
                }
                Some(gantry_core::incident::Cause::NotAChange { what }) => {
                    println!("cause:        not a change: {what}")
                }
                None => println!("cause:        not named"),
            }
            if let Some(p) = &i.postmortem {
                println!("postmortem:   {p}");
            }
            println!("\nsuspects:");
            let rows: Vec<Vec<String>> = i
                .suspects
                .iter()
                .map(|s| {
                    vec![
                        format!("{:.3}", s.score),
                        s.kind.clone(),
                        fmt_time(Some(s.started_at)),
                        s.change.to_string(),
                        s.summary.clone(),
                    ]
                })
                .collect();
            print_table(&["SCORE", "KIND", "STARTED", "CHANGE", "SUMMARY"], &rows);
            println!("\ntimeline:");
            let rows: Vec<Vec<String>> = view
                .timeline
                .iter()
                .map(|e| {
                    vec![
                        fmt_time(Some(e.at)),
                        e.kind.clone(),
                        e.actor.clone(),
                        e.text.clone(),
                    ]
                })
                .collect();
            print_table(&["AT", "KIND", "ACTOR", "WHAT"], &rows);
        }
        IncidentCommand::Ack(a) => show_one(&client.incident_action(&a.id, "ack").await?.incident)?,
        IncidentCommand::Mitigate(a) => {
            show_one(&client.incident_action(&a.id, "mitigate").await?.incident)?
        }
        IncidentCommand::Resolve(a) => {
            show_one(&client.incident_action(&a.id, "resolve").await?.incident)?
        }
        IncidentCommand::Rollback(a) => remedy(global, &client, &a.id, "rollback").await?,
        IncidentCommand::FlagOff(a) => remedy(global, &client, &a.id, "flag-off").await?,
        IncidentCommand::Note(a) => {
            let i = client
                .incident_write(
                    Method::POST,
                    &a.id,
                    Some("notes"),
                    &serde_json::json!({"text": a.text}),
                )
                .await?;
            show_one(&i)?
        }
        IncidentCommand::Cause(a) => {
            let body = match (a.change, a.not_a_change) {
                (Some(change), None) => serde_json::json!({"kind": "change", "change": change}),
                (None, Some(what)) => serde_json::json!({"kind": "not_a_change", "what": what}),
                _ => bail!("give a change id or --not-a-change \"what it was\""),
            };
            let i = client
                .incident_write(Method::PUT, &a.id, Some("cause"), &body)
                .await?;
            show_one(&i)?
        }
        IncidentCommand::Edit(a) => {
            let mut body = serde_json::Map::new();
            if let Some(t) = a.title {
                body.insert("title".into(), t.into());
            }
            if let Some(s) = a.severity {
                body.insert("severity".into(), s.as_str().into());
            }
            if let Some(t) = a.impact_started {
                body.insert(
                    "impact_started_at".into(),
                    time("--impact-started", &t)?.to_rfc3339().into(),
                );
            }
            if let Some(p) = a.postmortem {
                body.insert("postmortem".into(), p.into());
            }
            let i = client
                .incident_write(Method::PATCH, &a.id, None, &serde_json::Value::Object(body))
                .await?;
            show_one(&i)?
        }
    }
    Ok(())
}

async fn remedy(
    global: &GlobalArgs,
    client: &gantry_client::Client,
    id: &str,
    action: &str,
) -> anyhow::Result<()> {
    let result = client.incident_action(id, action).await?;
    if global.json {
        return print_json(&result);
    }
    match result.change_id {
        Some(change) => println!("{change}"),
        None => bail!("the server did not say which change the remedy made"),
    }
    Ok(())
}
