//! `gantry metrics …`: the series in the embedded time-series store.

use clap::Subcommand;

use crate::credentials::client;
use crate::output::print_json;
use crate::GlobalArgs;

#[derive(Debug, Subcommand)]
pub enum MetricsCommand {
    /// List stored series, one per line.
    List {
        /// A Graphite glob (`stats.*.cpu`, `web{1,2}.load`); `*` stays within one path
        /// element. All series when absent.
        pattern: Option<String>,
    },
    /// Delete every series matching a glob, with all its data; prints their names.
    Delete {
        /// A Graphite glob over whole names.
        pattern: String,
    },
    /// Expire, fold and compact the store now (it also happens hourly by itself).
    Compact,
}

pub async fn run(global: &GlobalArgs, command: MetricsCommand) -> anyhow::Result<()> {
    let client = client(global)?;
    let (names, deleted) = match command {
        MetricsCommand::List { pattern } => (client.list_series(pattern.as_deref()).await?, false),
        MetricsCommand::Delete { pattern } => (client.delete_series(&pattern).await?, true),
        MetricsCommand::Compact => {
            let answer = client.compact_metrics().await?;
            if global.json {
                return print_json(&answer);
            }
            eprintln!(
                "compacted: {} expired blocks deleted, {} bytes on disk",
                answer["blocks_deleted"], answer["disk_bytes"]
            );
            return Ok(());
        }
    };
    if global.json {
        return print_json(&names);
    }
    for name in &names {
        println!("{name}");
    }
    if deleted {
        eprintln!("deleted {} series", names.len());
    }
    Ok(())
}
