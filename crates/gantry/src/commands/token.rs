//! `gantry token …` and `gantry whoami`.

use clap::{Args, Subcommand};
use gantry_core::{NewToken, Scope};

use crate::credentials::client;
use crate::output::{opt_time, print_json, print_table, time};
use crate::GlobalArgs;

#[derive(Debug, Subcommand)]
pub enum TokenCommand {
    /// Create a token; prints the secret, which is shown only this once.
    Create(CreateArgs),
    /// List active tokens (never their secrets).
    List,
    /// Revoke a token by name.
    Revoke { name: String },
}

#[derive(Debug, Args)]
pub struct CreateArgs {
    /// A name for the token; it becomes the actor of the changes recorded with it.
    name: String,
    /// Comma-separated scopes: read, write, deploy, flags, migrate, admin, agent; narrow one
    /// with :SERVICE and/or @ENV, e.g. deploy:shop@stage.
    #[arg(long, value_delimiter = ',', required = true)]
    scopes: Vec<Scope>,
    /// Lifetime, e.g. 30d or 12h [default: no expiry]
    #[arg(long)]
    expires: Option<String>,
}

pub async fn run(global: &GlobalArgs, command: TokenCommand) -> anyhow::Result<()> {
    let client = client(global)?;
    match command {
        TokenCommand::Create(args) => {
            let created = client
                .create_token(&NewToken {
                    name: args.name,
                    scopes: args.scopes,
                    expires_in: args.expires,
                })
                .await?;
            if global.json {
                return print_json(&created);
            }
            println!("{}", created.token);
            eprintln!(
                "created token '{}' with scopes {}; store it now, it is not shown again",
                created.info.name,
                Scope::format_list(&created.info.scopes)
            );
        }
        TokenCommand::List => {
            let tokens = client.list_tokens().await?;
            if global.json {
                return print_json(&tokens);
            }
            let rows: Vec<Vec<String>> = tokens
                .iter()
                .map(|t| {
                    vec![
                        t.name.clone(),
                        Scope::format_list(&t.scopes),
                        time(t.created_at),
                        opt_time(t.expires_at),
                        t.created_by.clone(),
                    ]
                })
                .collect();
            print_table(
                &["NAME", "SCOPES", "CREATED", "EXPIRES", "CREATED BY"],
                &rows,
            );
        }
        TokenCommand::Revoke { name } => {
            client.revoke_token(&name).await?;
            eprintln!("revoked token '{name}'");
        }
    }
    Ok(())
}

pub async fn whoami(global: &GlobalArgs) -> anyhow::Result<()> {
    let source = crate::credentials::resolve(global)?.map(|(_, source)| source);
    let me = client(global)?.whoami().await?;
    if global.json {
        let mut value = serde_json::to_value(&me)?;
        if let Some(obj) = value.as_object_mut() {
            obj.insert("token_source".into(), source.clone().into());
        }
        return print_json(&value);
    }
    println!("{}  {}", me.name, me.scopes.join(","));
    eprintln!(
        "token from {}",
        source.as_deref().unwrap_or("nowhere (no token)")
    );
    Ok(())
}
