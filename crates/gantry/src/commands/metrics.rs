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
}

pub async fn run(global: &GlobalArgs, command: MetricsCommand) -> anyhow::Result<()> {
    let client = client(global)?;
    let (names, deleted) = match command {
        MetricsCommand::List { pattern } => (client.list_series(pattern.as_deref()).await?, false),
        MetricsCommand::Delete { pattern } => (client.delete_series(&pattern).await?, true),
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
