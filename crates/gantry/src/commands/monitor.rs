//! `gantry monitor …`: monitors kept as TOML in version control. `apply` prints the diff,
//! then one `ping-key NAME KEY` line per new heartbeat (the only time a key is shown);
//! `list` and `show` print states; `rotate-key` prints a heartbeat's new key.

use std::path::PathBuf;

use anyhow::Context;
use clap::{Args, Subcommand};

use crate::output::{print_json, print_table};
use crate::GlobalArgs;

#[derive(Debug, Subcommand)]
pub enum MonitorCommand {
    /// Apply a monitor file: prints the diff, then `ping-key NAME KEY` for each new heartbeat.
    Apply(ApplyArgs),
    /// Monitors and their states.
    List,
    /// One monitor: its series and recent transitions.
    Show(NameArg),
    /// Give a heartbeat a new ping key; prints it (the old one stops working).
    RotateKey(NameArg),
}

#[derive(Debug, Args)]
pub struct ApplyArgs {
    file: PathBuf,
    /// What the file is applied as, replacing what that source held [default: the file's
    /// name without extension].
    #[arg(long)]
    source: Option<String>,
    /// Only check the file and show the diff.
    #[arg(long)]
    dry_run: bool,
}

#[derive(Debug, Args)]
pub struct NameArg {
    name: String,
}

pub async fn run(global: &GlobalArgs, command: MonitorCommand) -> anyhow::Result<()> {
    let client = crate::credentials::client(global)?;
    match command {
        MonitorCommand::Apply(a) => {
            let text = std::fs::read_to_string(&a.file)
                .with_context(|| format!("cannot read {}", a.file.display()))?;
            let file_name = a.file.display().to_string();
            let source = match a.source {
                Some(s) => s,
                None => a
                    .file
                    .file_stem()
                    .map(|s| s.to_string_lossy().into_owned())
                    .unwrap_or_else(|| "monitors".into()),
            };
            let applied = client
                .apply_monitors(&source, &file_name, &text, a.dry_run)
                .await?;
            if global.json {
                return print_json(&applied);
            }
            let diff = applied["diff"].as_array().cloned().unwrap_or_default();
            if diff.is_empty() {
                println!("no change");
            }
            for line in diff {
                println!("{}", line.as_str().unwrap_or_default());
            }
            if let Some(change) = applied["change_id"].as_str() {
                eprintln!("monitor: recorded change {change}");
            }
            for pair in applied["ping_keys"].as_array().cloned().unwrap_or_default() {
                println!(
                    "ping-key {} {}",
                    pair[0].as_str().unwrap_or_default(),
                    pair[1].as_str().unwrap_or_default()
                );
            }
        }
        MonitorCommand::List => {
            let list = client.monitors(None).await?;
            if global.json {
                return print_json(&list);
            }
            let rows: Vec<Vec<String>> = list
                .as_array()
                .cloned()
                .unwrap_or_default()
                .iter()
                .map(|m| {
                    vec![
                        m["name"].as_str().unwrap_or_default().to_string(),
                        m["kind"].as_str().unwrap_or_default().to_string(),
                        m["state"].as_str().unwrap_or_default().to_string(),
                        m["service"].as_str().unwrap_or("-").to_string(),
                        m["environment"].as_str().unwrap_or("-").to_string(),
                        m["series"].as_array().map_or(0, |s| s.len()).to_string(),
                    ]
                })
                .collect();
            print_table(
                &["NAME", "KIND", "STATE", "SERVICE", "ENV", "SERIES"],
                &rows,
            );
        }
        MonitorCommand::Show(a) => {
            let m = client.monitors(Some(&a.name)).await?;
            if global.json {
                return print_json(&m);
            }
            println!(
                "{} ({}) is {}",
                m["name"].as_str().unwrap_or_default(),
                m["kind"].as_str().unwrap_or_default(),
                m["state"].as_str().unwrap_or_default()
            );
            let rows: Vec<Vec<String>> = m["series"]
                .as_array()
                .cloned()
                .unwrap_or_default()
                .iter()
                .map(|s| {
                    vec![
                        s["series"]
                            .as_str()
                            .map(|x| if x.is_empty() { "-" } else { x })
                            .unwrap_or("-")
                            .to_string(),
                        s["state"].as_str().unwrap_or_default().to_string(),
                        s["latest"].as_str().unwrap_or_default().to_string(),
                        s["value"]
                            .as_f64()
                            .map(|v| v.to_string())
                            .unwrap_or_else(|| "-".into()),
                        s["since"].as_str().unwrap_or("-").to_string(),
                        if s["flapping"] == true {
                            "flapping".into()
                        } else {
                            String::new()
                        },
                    ]
                })
                .collect();
            print_table(&["SERIES", "STATE", "LATEST", "VALUE", "SINCE", ""], &rows);
            println!();
            let rows: Vec<Vec<String>> = m["transitions"]
                .as_array()
                .cloned()
                .unwrap_or_default()
                .iter()
                .map(|t| {
                    vec![
                        t["at"].as_str().unwrap_or_default().to_string(),
                        t["series"]
                            .as_str()
                            .map(|x| if x.is_empty() { "-" } else { x })
                            .unwrap_or("-")
                            .to_string(),
                        format!(
                            "{} -> {}{}",
                            t["from"].as_str().unwrap_or_default(),
                            t["to"].as_str().unwrap_or_default(),
                            if t["hard"] == true { "" } else { " (soft)" }
                        ),
                    ]
                })
                .collect();
            print_table(&["AT", "SERIES", "CHANGE"], &rows);
        }
        MonitorCommand::RotateKey(a) => {
            let k = client.rotate_ping_key(&a.name).await?;
            if global.json {
                return print_json(&k);
            }
            println!(
                "ping-key {} {}",
                a.name,
                k["key"].as_str().unwrap_or_default()
            );
        }
    }
    Ok(())
}
