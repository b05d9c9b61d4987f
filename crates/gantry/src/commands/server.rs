//! `gantry server`.

use std::net::SocketAddr;
use std::path::PathBuf;

use clap::Args;
use gantry_server::config::Listen;
use gantry_server::{Overrides, ServerConfig};

/// Flags win over the config file; each flag is also an environment variable.
#[derive(Debug, Args)]
pub struct ServerArgs {
    /// Directory for the SQLite database and the first admin token [default: ./gantry-data]
    #[arg(long, env = "GANTRY_DATA_DIR")]
    data_dir: Option<PathBuf>,
    /// Address for the HTTP API; port 0 picks a free port [default: 127.0.0.1:7070]
    #[arg(long, env = "GANTRY_LISTEN")]
    listen: Option<SocketAddr>,
    /// sqlite://PATH or postgres://USER@HOST/DB [default: SQLite in the data directory]
    #[arg(long, env = "GANTRY_DATABASE_URL", hide_env_values = true)]
    database_url: Option<String>,
    /// TOML configuration file (see docs/configuration.md); flags override it.
    #[arg(long, env = "GANTRY_CONFIG")]
    config: Option<PathBuf>,
    /// Serve HTTPS with this PEM certificate chain (needs --tls-key).
    #[arg(long, env = "GANTRY_TLS_CERT")]
    tls_cert: Option<PathBuf>,
    /// PEM private key for --tls-cert.
    #[arg(long, env = "GANTRY_TLS_KEY")]
    tls_key: Option<PathBuf>,
    /// StatsD over UDP and TCP, or `off` [default: 127.0.0.1:8125]
    #[arg(long, env = "GANTRY_STATSD_LISTEN")]
    statsd_listen: Option<Listen>,
    /// Graphite plaintext over TCP and UDP, or `off` [default: 127.0.0.1:2003]
    #[arg(long, env = "GANTRY_GRAPHITE_LISTEN")]
    graphite_listen: Option<Listen>,
    /// Print the effective configuration (file, flags and defaults) as TOML, and exit.
    #[arg(long)]
    print_config: bool,
    /// Graphite pickle over TCP, or `off` [default: 127.0.0.1:2004]
    #[arg(long, env = "GANTRY_PICKLE_LISTEN")]
    pickle_listen: Option<Listen>,
}

pub async fn run(args: ServerArgs) -> anyhow::Result<()> {
    let config = ServerConfig::load(
        args.config.as_deref(),
        Overrides {
            data_dir: args.data_dir,
            listen: args.listen,
            database_url: args.database_url,
            tls_cert: args.tls_cert,
            tls_key: args.tls_key,
            statsd_listen: args.statsd_listen,
            graphite_listen: args.graphite_listen,
            pickle_listen: args.pickle_listen,
        },
    )?;
    if args.print_config {
        print!("{}", config.to_toml());
        return Ok(());
    }
    gantry_server::run(config).await
}
