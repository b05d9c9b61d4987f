//! `gantry service …`.

use clap::{Args, Subcommand};
use gantry_core::NewService;

use crate::credentials::client;
use crate::output::{print_json, print_table, time};
use crate::GlobalArgs;

#[derive(Debug, Subcommand)]
pub enum ServiceCommand {
    /// Register a service and its pipeline (or set the pipeline of one first seen in a
    /// change); prints its name.
    Create(CreateArgs),
    /// Apply a service's deploy configuration (a TOML file kept in the app's repository;
    /// needs an admin token, because its hooks run on every host). Prints the diff.
    Apply { file: std::path::PathBuf },
    /// List services.
    List,
    /// Show a service.
    Show { name: String },
    /// Delete a service's registration; refused while changes name it, unless --force
    /// (its changes stay in the log either way).
    Delete {
        name: String,
        #[arg(long)]
        force: bool,
    },
}

#[derive(Debug, Args)]
pub struct CreateArgs {
    name: String,
    /// Environments in promotion order, e.g. dev,stage,prod.
    #[arg(long, value_delimiter = ',')]
    envs: Vec<String>,
}

pub async fn run(global: &GlobalArgs, command: ServiceCommand) -> anyhow::Result<()> {
    let client = client(global)?;
    match command {
        ServiceCommand::Create(args) => {
            let service = client
                .create_service(&NewService {
                    name: args.name,
                    environments: args
                        .envs
                        .into_iter()
                        .map(|e| e.trim().to_string())
                        .collect(),
                })
                .await?;
            if global.json {
                return print_json(&service);
            }
            println!("{}", service.name);
        }
        ServiceCommand::Apply { file } => {
            let text = tokio::fs::read_to_string(&file)
                .await
                .map_err(|e| anyhow::anyhow!("cannot read {}: {e}", file.display()))?;
            // Checked here as the server checks it: the deploy config, and [detect] apart.
            let parts = gantry_core::detect::split_service_file(&text)
                .map_err(|e| anyhow::anyhow!("{}: {e}", file.display()))?;
            let parsed = gantry_core::deploy::DeployConfig::parse_toml(&parts.deploy)
                .map_err(|e| anyhow::anyhow!("{}: {e}", file.display()))?;
            if let Some(detect) = &parts.detect {
                gantry_core::detect::DetectConfig::parse(detect, &file.display().to_string())?;
            }
            if let Some(logs) = &parts.logs {
                gantry_monitors::parse_logs(
                    logs,
                    &file.display().to_string(),
                    &gantry_monitors::Limits::default(),
                )?;
            }
            let view = client.apply_deploy_config(&parsed.name, text).await?;
            if global.json {
                return print_json(&view);
            }
            match view.change_id {
                Some(id) => println!("{} applied (change {id})", view.service),
                None => println!("{} unchanged", view.service),
            }
        }
        ServiceCommand::List => {
            let services = client.list_services().await?;
            if global.json {
                return print_json(&services);
            }
            let rows: Vec<Vec<String>> = services
                .iter()
                .map(|s| {
                    vec![
                        s.name.clone(),
                        pipeline(&s.environments),
                        time(s.created_at),
                    ]
                })
                .collect();
            print_table(&["NAME", "PIPELINE", "CREATED"], &rows);
        }
        ServiceCommand::Show { name } => {
            let s = client.get_service(&name).await?;
            if global.json {
                return print_json(&s);
            }
            println!("name      {}", s.name);
            println!("pipeline  {}", pipeline(&s.environments));
            println!("created   {}", time(s.created_at));
        }
        ServiceCommand::Delete { name, force } => {
            client.delete_service(&name, force).await?;
            eprintln!("deleted service '{name}'");
        }
    }
    Ok(())
}

fn pipeline(environments: &[String]) -> String {
    if environments.is_empty() {
        "-".to_string()
    } else {
        environments.join(" → ")
    }
}
