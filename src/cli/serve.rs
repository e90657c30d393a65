//! `broodlink serve`: in the foreground, or as a detached background process that
//! `serve` watches until it accepts connections.

use std::io::{Read, Seek, SeekFrom, Write};
use std::os::unix::fs::OpenOptionsExt;
use std::os::unix::process::CommandExt;
use std::process::{Command, ExitCode, Stdio};
use std::time::{Duration, Instant};

use broodlink_protocol::Role;

use super::{fail, print_controller_key, runtime, LogFormat};
use crate::admin;
use crate::config::Config;
use crate::instance::{Instance, NetOverrides, PidFile};
use crate::keys;
use crate::server::{self, Server};

/// How long `serve` waits for the background server to accept connections.
const START_TIMEOUT: Duration = Duration::from_secs(20);

/// Runs the server in this process. With `controller_key_stdin`, a controller created
/// now gets the key on stdin's first line (see [`background`]).
pub fn foreground(
    instance: &Instance,
    net: &NetOverrides,
    log_format: LogFormat,
    controller_key_stdin: bool,
) -> ExitCode {
    init_logging(log_format);
    let config = match prepare(instance, net) {
        Ok(config) => config,
        Err(code) => return code,
    };
    let handed_key = match controller_key_stdin.then(read_handed_key).transpose() {
        Ok(key) => key,
        Err(e) => return fail(e),
    };
    // Whoever handed the key over shows it; printed here it would land in the log.
    let show_new_key = handed_key.is_none();
    let runtime = match runtime() {
        Ok(runtime) => runtime,
        Err(code) => return code,
    };
    runtime.block_on(async move {
        let server = match Server::open(config, Some(&instance.data_dir), handed_key).await {
            Ok(server) => server,
            Err(e) => return fail(e),
        };
        let url = server.url();
        if let Some(key) = server.new_controller_key.as_ref().filter(|_| show_new_key) {
            print_controller_key(key, &url, &instance.data_dir);
        }
        // Before anything can answer on the admin socket: whoever sees the server
        // answering (e.g. `serve` in the background, then `stop`) finds the pid file.
        let _pid = match PidFile::create(&instance.pid_file()) {
            Ok(pid) => pid,
            Err(e) => return fail(format!("cannot write {}: {e}", instance.pid_file().display())),
        };
        if let Err(e) = super::install::write_clients(instance) {
            tracing::warn!("could not refresh {}: {e}", instance.clients_dir().display());
        }
        // On stdout too, so a person (or a script starting it) sees where to connect.
        println!("BroodLink listening on {url}");
        tracing::info!(url = %url, data_dir = %instance.data_dir.display(), pid = std::process::id(), "server started");
        let result = server.run(shutdown_signal()).await;
        tracing::info!("server stopped");
        match result {
            Ok(()) => ExitCode::SUCCESS,
            Err(e) => fail(format!("server failed: {e}")),
        }
    })
}

pub fn background(instance: &Instance, net: &NetOverrides, log_format: LogFormat) -> ExitCode {
    if let Ok(reply) = admin::request(&instance.admin_socket(), admin::Command::Status) {
        let status = &reply["status"];
        println!("BroodLink is already running (pid {}) on {}", status["pid"], status["url"].as_str().unwrap_or("?"));
        return ExitCode::SUCCESS;
    }
    let config = match prepare(instance, net) {
        Ok(config) => config,
        Err(code) => return code,
    };
    // Fail before creating anything (a controller whose key the person would have to
    // catch from an error message) when the server could not listen anyway.
    if let Err(e) = server::check_bindable(&config) {
        return fail(e);
    }
    let log = match std::fs::OpenOptions::new().create(true).append(true).mode(0o600).open(instance.log_file()) {
        Ok(log) => log,
        Err(e) => return fail(format!("cannot open {}: {e}", instance.log_file().display())),
    };
    let log_start = log.metadata().map(|m| m.len()).unwrap_or(0);
    // The set-up below (e.g. importing an edited CONSTITUTION.md) belongs in the log too.
    if let Ok(writer) = log.try_clone() {
        init_logging_to(log_format, std::sync::Mutex::new(writer), false);
    }

    // The controller is created here, in the foreground, so the person sees its key. An
    // in-memory database lives only in the server's own process, so that process sets it
    // up, with a key made here and handed over on its stdin (never in its arguments or
    // environment, which other local users may read).
    let (new_key, handed_key) = if config.in_memory() {
        let key = keys::generate(Role::Controller);
        (Some(key.clone()), Some(key))
    } else {
        let created = match runtime() {
            Ok(runtime) => runtime.block_on(server::bootstrap(config.clone(), &instance.data_dir)),
            Err(code) => return code,
        };
        match created {
            Ok(key) => (key, None),
            Err(e) => return fail(e),
        }
    };
    let mut child = match spawn_detached(instance, net, log_format, log, handed_key.as_deref()) {
        Ok(child) => child,
        Err(e) => return fail(format!("cannot start the server process: {e}")),
    };

    let deadline = Instant::now() + START_TIMEOUT;
    let outcome = loop {
        if let Ok(Some(status)) = child.try_wait() {
            let log = log_tail(instance, log_start);
            break Err(format!("the server exited during start-up ({status}):\n{log}"));
        }
        if let Ok(reply) = admin::request(&instance.admin_socket(), admin::Command::Status) {
            let status = &reply["status"];
            if status["pid"] == child.id() {
                break Ok(status["url"].as_str().unwrap_or("?").to_owned());
            }
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            let log = instance.log_file();
            break Err(format!(
                "the server did not accept connections within {}s; see {}",
                START_TIMEOUT.as_secs(),
                log.display()
            ));
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    // A key stored in a database file is shown whatever happened: it is valid and will
    // never be shown again. An in-memory database's key died with a server that failed.
    if let Some(key) = new_key.filter(|_| outcome.is_ok() || !config.in_memory()) {
        let url = outcome.as_deref().map_or_else(|_| url_for(&config), str::to_owned);
        print_controller_key(&key, &url, &instance.data_dir);
    }
    match outcome {
        Ok(url) => {
            println!("BroodLink is running in the background (pid {})", child.id());
            println!("  listening on {url}");
            println!("  log: {}", instance.log_file().display());
            println!("  stop it with `broodlink stop`");
            ExitCode::SUCCESS
        }
        Err(message) => fail(message),
    }
}

/// Creates the data directory and reads the configuration, reporting either failure.
fn prepare(instance: &Instance, net: &NetOverrides) -> Result<Config, ExitCode> {
    instance.prepare().map_err(|e| {
        fail(format!(
            "cannot prepare the data directory {}: {e} (check its permissions or pass --data-dir)",
            instance.data_dir.display()
        ))
    })?;
    instance.config(net).map_err(fail)
}

/// Starts `broodlink serve --foreground` for this instance in its own session, with its
/// output appended to the log, and `handed_key` (if any) written to its stdin.
fn spawn_detached(
    instance: &Instance,
    net: &NetOverrides,
    log_format: LogFormat,
    log: std::fs::File,
    handed_key: Option<&str>,
) -> std::io::Result<std::process::Child> {
    let exe = std::env::current_exe()?;
    let mut command = Command::new(exe);
    command.arg("serve").arg("--foreground").arg("--data-dir").arg(&instance.data_dir);
    command.arg("--config").arg(&instance.config_file);
    if let Some(host) = &net.host {
        command.arg("--host").arg(host);
    }
    if let Some(port) = net.port {
        command.arg("--port").arg(port.to_string());
    }
    if let LogFormat::Json = log_format {
        command.arg("--log-format").arg("json");
    }
    if handed_key.is_some() {
        command.arg("--controller-key-stdin");
    }
    let stdin = if handed_key.is_some() { Stdio::piped() } else { Stdio::null() };
    command.stdin(stdin).stdout(log.try_clone()?).stderr(log);
    // SAFETY: setsid is async-signal-safe and touches no memory of the parent; it makes
    // the server its own session, detached from this terminal.
    unsafe {
        command.pre_exec(|| nix::unistd::setsid().map(|_| ()).map_err(std::io::Error::from));
    }
    let mut child = command.spawn()?;
    if let (Some(key), Some(mut stdin)) = (handed_key, child.stdin.take()) {
        // One short line fits the pipe's buffer, so this never waits for the child. It
        // fails only if the child has already exited, which the caller reports with the
        // child's own words from the log.
        let _ = writeln!(stdin, "{key}");
    }
    Ok(child)
}

/// The controller key `background` handed over on stdin.
fn read_handed_key() -> Result<String, String> {
    let mut line = String::new();
    std::io::stdin().read_line(&mut line).map_err(|e| format!("cannot read the controller key from stdin: {e}"))?;
    let key = line.trim_end();
    if !keys::is_controller_key(key) {
        return Err("--controller-key-stdin: stdin's first line is not a controller key (bl_k_ctrl_ and 48 \
                    lowercase hex digits); this flag is for `broodlink serve`'s own use"
            .into());
    }
    Ok(key.to_owned())
}

/// What the log gained since `from` (the child's start-up output).
fn log_tail(instance: &Instance, from: u64) -> String {
    let mut text = String::new();
    if let Ok(mut file) = std::fs::File::open(instance.log_file()) {
        let _ = file.seek(SeekFrom::Start(from));
        let _ = file.read_to_string(&mut text);
    }
    text.trim_end().to_owned()
}

/// The URL agents would connect to, from the configuration alone.
pub(super) fn url_for(config: &Config) -> String {
    let host = server::bind_host(config).unwrap_or_else(|_| config.host.clone());
    let host = if host == "0.0.0.0" || host == "::" { "127.0.0.1".to_owned() } else { host };
    format!("ws://{host}:{}", config.port)
}

fn init_logging(format: LogFormat) {
    // Colours only on a terminal: a background server's stderr is the log file.
    let ansi = std::io::IsTerminal::is_terminal(&std::io::stderr());
    init_logging_to(format, std::io::stderr, ansi);
}

fn init_logging_to<W>(format: LogFormat, writer: W, ansi: bool)
where
    W: for<'a> tracing_subscriber::fmt::MakeWriter<'a> + Send + Sync + 'static,
{
    use tracing_subscriber::prelude::*;
    let layer = tracing_subscriber::fmt::layer().with_writer(writer).with_ansi(ansi);
    let layer = match format {
        LogFormat::Text => layer.boxed(),
        LogFormat::Json => layer.json().boxed(),
    };
    let _ = tracing_subscriber::registry().with(log_filter()).with(no_frame_logs()).with(layer).try_init();
}

fn log_filter() -> tracing_subscriber::EnvFilter {
    tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"))
}

/// The WebSocket and JSON-RPC libraries log whole frames and params at debug and trace
/// level, `auth` keys and `agent.invite` results among them. Whatever `RUST_LOG` asks,
/// they log at most `info`, so no level of logging ever writes a key.
fn no_frame_logs() -> tracing_subscriber::filter::FilterFn<impl Fn(&tracing::Metadata<'_>) -> bool> {
    const FRAME_LOGGERS: [&str; 3] = ["tungstenite", "tokio_tungstenite", "jsonrpsee"];
    tracing_subscriber::filter::filter_fn(|meta| {
        *meta.level() <= tracing::Level::INFO || !FRAME_LOGGERS.iter().any(|target| meta.target().starts_with(target))
    })
}

async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
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
