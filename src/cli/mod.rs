//! The `broodlink` command line: one module per group of commands.

mod backup;
mod control;
mod install;
mod serve;

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Args, Parser, Subcommand, ValueEnum};

use crate::instance::{Instance, NetOverrides};

#[derive(Parser)]
#[command(name = "broodlink", version, about = "Self-hosted WebSocket server for AI agent communication")]
#[command(arg_required_else_help = true)]
pub struct Cli {
    #[command(flatten)]
    location: Location,
    #[command(subcommand)]
    command: Command,
}

/// Where the instance's files are (every command takes these).
#[derive(Args)]
struct Location {
    /// Data directory [default: ~/.broodlink]
    #[arg(long, env = "BROODLINK_DATA_DIR", value_name = "DIR", global = true)]
    data_dir: Option<PathBuf>,
    /// Config file [default: <data-dir>/broodlink.json]
    #[arg(long, value_name = "FILE", global = true)]
    config: Option<PathBuf>,
}

/// Network overrides; they beat the config file.
#[derive(Args, Clone)]
struct Net {
    /// Bind address (overrides the config file)
    #[arg(long, env = "BROODLINK_HOST", value_name = "ADDR")]
    host: Option<String>,
    /// Port (overrides the config file)
    #[arg(long, env = "BROODLINK_PORT", value_name = "PORT")]
    port: Option<u16>,
}

impl Net {
    fn overrides(&self) -> NetOverrides {
        NetOverrides { host: self.host.clone(), port: self.port }
    }
}

#[derive(Clone, Copy, Default, ValueEnum)]
enum LogFormat {
    /// Human-readable lines
    #[default]
    Text,
    /// One JSON object per line
    Json,
}

#[derive(Subcommand)]
enum Command {
    /// Start the server in the background (first run: set up the data directory and print the controller key)
    Serve {
        /// Run in this terminal instead, logging to stderr
        #[arg(short, long)]
        foreground: bool,
        #[command(flatten)]
        net: Net,
        /// Log format
        #[arg(long, value_enum, default_value_t)]
        log_format: LogFormat,
        /// Read the key for a new controller from the first line of stdin (how `serve`
        /// hands an in-memory server, which only its own process can set up, the key it prints)
        #[arg(long, hide = true, requires = "foreground")]
        controller_key_stdin: bool,
    },
    /// Stop the running server (SIGTERM, then wait for it to exit)
    Stop {
        /// Kill it (SIGKILL) if it has not exited within the timeout
        #[arg(long)]
        force: bool,
        /// Seconds to wait for a graceful exit
        #[arg(long, default_value_t = 10)]
        timeout: u64,
    },
    /// Stop the server if it runs, then start it in the background
    Restart {
        #[command(flatten)]
        net: Net,
    },
    /// Show whether the server runs: pid, address, uptime, agents, lock (exit code 0 only when running)
    Status {
        /// Print the status as JSON
        #[arg(long)]
        json: bool,
    },
    /// Lock the server: refuse new connections and new sessions (connected agents stay)
    Lock,
    /// Unlock the server
    Unlock,
    /// Disconnect every agent except the controller
    Kick,
    /// Set up without starting the server, or write the client libraries
    #[command(subcommand)]
    Install(InstallTarget),
    /// Update the installed binary the way it was installed
    Update {
        /// Print what would run without running it
        #[arg(long)]
        dry_run: bool,
    },
    /// Manage the controller's API key
    #[command(subcommand, name = "controller-key")]
    ControllerKey(ControllerKeyCommand),
    /// Write a consistent copy of the database to FILE (works while the server runs)
    Backup {
        /// The backup file to create (0600)
        #[arg(value_name = "FILE")]
        file: PathBuf,
        /// Replace FILE if it exists
        #[arg(long)]
        force: bool,
    },
    /// Replace the database with a backup (the server must be stopped; the old database is kept aside)
    Restore {
        /// A file written by `broodlink backup`
        #[arg(value_name = "FILE")]
        file: PathBuf,
    },
    /// Load generator: measure a running server (send, fanout, connections, history) and check its correctness
    Bench(crate::bench::BenchArgs),
}

#[derive(Subcommand)]
enum InstallTarget {
    /// Full first-run setup (data directory, config, database, controller key) without starting
    Server,
    /// Write the Python and TypeScript client libraries to <data-dir>/clients/
    Clients,
}

#[derive(Subcommand)]
enum ControllerKeyCommand {
    /// Issue a new controller key, print it once, invalidate the old one and disconnect its sessions
    Rotate,
}

pub fn main() -> ExitCode {
    let cli = Cli::parse();
    let instance = Instance::resolve(cli.location.data_dir, cli.location.config);
    match cli.command {
        Command::Serve { foreground: true, net, log_format, controller_key_stdin } => {
            serve::foreground(&instance, &net.overrides(), log_format, controller_key_stdin)
        }
        Command::Serve { foreground: false, net, log_format, .. } => {
            serve::background(&instance, &net.overrides(), log_format)
        }
        Command::Stop { force, timeout } => control::stop(&instance, force, timeout),
        Command::Restart { net } => match control::stop(&instance, false, 10) {
            code if code == ExitCode::SUCCESS => serve::background(&instance, &net.overrides(), LogFormat::Text),
            code => code,
        },
        Command::Status { json } => control::status(&instance, json),
        Command::Lock => control::simple(&instance, crate::admin::Command::Lock),
        Command::Unlock => control::simple(&instance, crate::admin::Command::Unlock),
        Command::Kick => control::simple(&instance, crate::admin::Command::Kick),
        Command::Install(InstallTarget::Server) => install::server(&instance),
        Command::Install(InstallTarget::Clients) => install::clients(&instance),
        Command::Update { dry_run } => install::update(dry_run),
        Command::ControllerKey(ControllerKeyCommand::Rotate) => control::rotate_controller_key(&instance),
        Command::Backup { file, force } => backup::backup(&instance, &file, force),
        Command::Restore { file } => backup::restore(&instance, &file),
        Command::Bench(args) => crate::bench::main(args, &instance),
    }
}

/// Prints an error the way every command does and returns failure.
fn fail(message: impl std::fmt::Display) -> ExitCode {
    eprintln!("error: {message}");
    ExitCode::FAILURE
}

fn runtime() -> Result<tokio::runtime::Runtime, ExitCode> {
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .map_err(|e| fail(format!("cannot start the async runtime: {e}")))
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
