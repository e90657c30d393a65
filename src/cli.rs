//! The `broodlink` command line.

use std::net::IpAddr;
use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Args, Parser, Subcommand};

use crate::config::Config;
use crate::datadir;
use crate::server::Server;

#[derive(Parser)]
#[command(name = "broodlink", version, about = "Self-hosted WebSocket server for AI agent communication")]
#[command(arg_required_else_help = true)]
pub struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Start the server (first run: create the data directory and print the controller key)
    Serve(ServeArgs),
}

#[derive(Args)]
struct ServeArgs {
    /// Run in this terminal, logging to stderr (background mode is not built yet)
    #[arg(short, long)]
    foreground: bool,
    #[command(flatten)]
    location: Location,
    /// Bind address (overrides the config file)
    #[arg(long)]
    host: Option<IpAddr>,
    /// Port (overrides the config file)
    #[arg(long)]
    port: Option<u16>,
}

/// Where the instance's files are.
#[derive(Args)]
struct Location {
    /// Data directory [default: ~/.broodlink]
    #[arg(long, env = "BROODLINK_DATA_DIR", value_name = "DIR")]
    data_dir: Option<PathBuf>,
    /// Config file [default: <data-dir>/broodlink.json]
    #[arg(long, value_name = "FILE")]
    config: Option<PathBuf>,
}

pub fn main() -> ExitCode {
    let cli = Cli::parse();
    match cli.command {
        Command::Serve(args) => serve(args),
    }
}

fn serve(args: ServeArgs) -> ExitCode {
    if !args.foreground {
        eprintln!("error: background mode is not available yet; run `broodlink serve --foreground`");
        return ExitCode::FAILURE;
    }
    init_logging();
    let data_dir = args.location.data_dir.unwrap_or_else(datadir::default_data_dir);
    let explicit_config = args.location.config.is_some();
    if let Err(e) = datadir::prepare(&data_dir, !explicit_config) {
        eprintln!(
            "error: cannot prepare the data directory {}: {e} (check its permissions or pass --data-dir)",
            data_dir.display()
        );
        return ExitCode::FAILURE;
    }
    let config_path = args.location.config.unwrap_or_else(|| data_dir.join("broodlink.json"));
    let mut config = match Config::load(&config_path, !explicit_config) {
        Ok(config) => config,
        Err(e) => {
            eprintln!("error: {e}");
            return ExitCode::FAILURE;
        }
    };
    if let Some(host) = args.host {
        config.host = host.to_string();
    }
    if let Some(port) = args.port {
        config.port = port;
    }

    let runtime = match tokio::runtime::Builder::new_multi_thread().enable_all().build() {
        Ok(runtime) => runtime,
        Err(e) => {
            eprintln!("error: cannot start the async runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    runtime.block_on(async move {
        let server = match Server::open(config.clone(), Some(&data_dir)).await {
            Ok(server) => server,
            Err(e) => {
                eprintln!("error: {e}");
                return ExitCode::FAILURE;
            }
        };
        let addr = server.local_addr();
        let url =
            if addr.ip().is_unspecified() { format!("ws://127.0.0.1:{}", addr.port()) } else { format!("ws://{addr}") };
        if let Some(key) = &server.new_controller_key {
            print_controller_key(key, &url, &data_dir);
        }
        // On stdout too, so a person (or a script starting it) sees where to connect.
        println!("BroodLink listening on {url}");
        tracing::info!(%addr, data_dir = %data_dir.display(), "BroodLink listening on {url}");
        match server.run(shutdown_signal()).await {
            Ok(()) => ExitCode::SUCCESS,
            Err(e) => {
                eprintln!("error: server failed: {e}");
                ExitCode::FAILURE
            }
        }
    })
}

fn print_controller_key(key: &str, url: &str, data_dir: &std::path::Path) {
    let rule = "=".repeat(72);
    println!("{rule}");
    println!("BroodLink is set up in {}", data_dir.display());
    println!();
    println!("Controller API key (shown only this once; save it now):");
    println!();
    println!("    {key}");
    println!();
    println!("Give it to your controller agent; it connects to {url}");
    println!("{rule}");
}

fn init_logging() {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    tracing_subscriber::fmt().with_env_filter(filter).with_writer(std::io::stderr).init();
}

async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let terminate = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut signal) => {
                signal.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    tokio::select! {
        _ = ctrl_c => {},
        _ = terminate => {},
    }
}
