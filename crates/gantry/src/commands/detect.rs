//! `gantry detect replay FILE.csv`: runs the regression detector over a CSV of
//! `timestamp,value` as a server would (before/after each `--change-at`, flush by flush, or a
//! rolling comparison without one) and prints its verdicts, so a team can tune the detector
//! on its own history. Runs locally; nothing is sent to a server.

use std::path::PathBuf;

use anyhow::Context;
use clap::{Args, Subcommand, ValueEnum};
use gantry_detect::replay::{parse_csv, replay};
use gantry_detect::series::infer_step;
use gantry_detect::verdict::{Config, Direction};

use crate::output::print_json;
use crate::GlobalArgs;

#[derive(Debug, Subcommand)]
pub enum DetectCommand {
    /// Run the detector over a CSV of `timestamp,value` (Unix seconds) and print its verdicts.
    Replay(ReplayArgs),
    /// Regression verdicts the server reached, newest first.
    List(ListArgs),
}

#[derive(Debug, Args)]
pub struct ListArgs {
    #[arg(long)]
    service: Option<String>,
    #[arg(long)]
    env: Option<String>,
    /// Since (RFC 3339, epoch seconds, or a duration ago such as 7d).
    #[arg(long)]
    since: Option<String>,
    #[arg(long, default_value_t = 50)]
    limit: u32,
}

#[derive(Debug, Clone, Copy, ValueEnum)]
pub enum DirectionArg {
    Drop,
    Rise,
    Either,
}

#[derive(Debug, Args)]
pub struct ReplayArgs {
    /// The CSV: one `timestamp,value` per line, sorted by time; an empty value is a missing slot.
    file: PathBuf,
    /// Which way is bad.
    #[arg(long, value_enum, default_value = "either")]
    direction: DirectionArg,
    /// A change to compare before and after (RFC 3339 or Unix seconds); repeatable. Without
    /// one, a rolling comparison.
    #[arg(long = "change-at")]
    change_at: Vec<String>,
    /// The smallest relative shift that counts [default: 0.2].
    #[arg(long)]
    min_shift: Option<f64>,
    /// The test's significance over all looks at one change [default: 0.01].
    #[arg(long)]
    alpha: Option<f64>,
}

pub async fn run(global: &GlobalArgs, command: DetectCommand) -> anyhow::Result<()> {
    match command {
        DetectCommand::Replay(a) => replay_file(global, a),
        DetectCommand::List(a) => {
            let client = crate::credentials::client(global)?;
            let mut query = vec![("limit", a.limit.to_string())];
            if let Some(s) = a.service {
                query.push(("service", s));
            }
            if let Some(e) = a.env {
                query.push(("environment", e));
            }
            if let Some(s) = a.since {
                query.push(("since", s));
            }
            let verdicts = client.verdicts(&query).await?;
            if global.json {
                return print_json(&verdicts);
            }
            let rows: Vec<Vec<String>> = verdicts
                .iter()
                .map(|v| {
                    vec![
                        v.id.to_string(),
                        v.at.format("%Y-%m-%d %H:%M:%S").to_string(),
                        format!("{}@{}", v.service, v.environment),
                        v.metric.clone(),
                        format!("{:+.0}%", v.effect * 100.0),
                        format!("{:.1e}", v.p_value),
                        v.change_id
                            .map(|c| c.to_string())
                            .unwrap_or_else(|| "-".into()),
                        v.summary.clone(),
                    ]
                })
                .collect();
            crate::output::print_table(
                &[
                    "VERDICT", "AT", "WHERE", "METRIC", "EFFECT", "P", "CHANGE", "SUMMARY",
                ],
                &rows,
            );
            Ok(())
        }
    }
}

fn replay_file(global: &GlobalArgs, a: ReplayArgs) -> anyhow::Result<()> {
    let text = std::fs::read_to_string(&a.file)
        .with_context(|| format!("cannot read {}", a.file.display()))?;
    let points = parse_csv(&text).map_err(|e| anyhow::anyhow!("{}: {e}", a.file.display()))?;
    let step = infer_step(&points)
        .ok_or_else(|| anyhow::anyhow!("{}: too few points to tell the step", a.file.display()))?;
    let mut changes = Vec::new();
    for t in &a.change_at {
        let at = gantry_core::time::parse_api_time("--change-at", t, chrono::Utc::now())
            .map_err(|e| anyhow::anyhow!("{}", e.0))?;
        changes.push(at.timestamp());
    }
    let mut config = Config::default();
    if let Some(m) = a.min_shift {
        config.min_shift = m;
    }
    if let Some(alpha) = a.alpha {
        config.alpha = alpha;
    }
    config.check().map_err(|e| anyhow::anyhow!("{e}"))?;
    let direction = match a.direction {
        DirectionArg::Drop => Direction::Drop,
        DirectionArg::Rise => Direction::Rise,
        DirectionArg::Either => Direction::Either,
    };
    let verdicts = replay(&points, step, &changes, direction, &config)
        .map_err(|e| anyhow::anyhow!("{}: {e}", a.file.display()))?;
    if global.json {
        return print_json(&verdicts);
    }
    let when = |t: i64| {
        chrono::DateTime::from_timestamp(t, 0)
            .map(|d| d.format("%Y-%m-%d %H:%M:%S").to_string())
            .unwrap_or_else(|| t.to_string())
    };
    let mut found = 0;
    for v in &verdicts {
        let c = &v.comparison;
        if !c.is_regression {
            if let Some(change) = v.change_at {
                println!(
                    "{}  no regression after the change ({:?})",
                    when(change),
                    c.outcome
                );
            }
            continue;
        }
        found += 1;
        println!(
            "{}  {:?} {:+.1}% (95% {:+.1}%..{:+.1}%)  p={:.2e}  n={}/{}  after {}{}",
            when(v.at),
            c.movement,
            c.effect * 100.0,
            c.effect_lower * 100.0,
            c.effect_upper * 100.0,
            c.p_value,
            c.before_len,
            c.after_len,
            when(v.after_from),
            v.change_at
                .map(|t| format!("  change at {}", when(t)))
                .unwrap_or_default()
        );
    }
    eprintln!(
        "detect: {} points, step {} s, {found} verdict(s)",
        points.len(),
        step
    );
    Ok(())
}
