//! Integration tests of the `broodlink` command line: they run the real binary on a
//! fresh data directory each, with free ports on 127.0.0.1, and always stop the
//! background servers they start (`broodlink stop --force` in a drop guard).

#[path = "../server/harness.rs"]
mod harness;
mod keys;

mod backup;
mod crash;
mod flood;

use std::io::Read;
use std::net::TcpListener;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use futures_util::StreamExt;
use harness::Client;
use serde_json::{json, Value};
use tokio_tungstenite::tungstenite::Message;

const BIN: &str = env!("CARGO_BIN_EXE_broodlink");
/// No command of these tests may take longer (a hung command fails the test).
const COMMAND_TIMEOUT: Duration = Duration::from_secs(40);
/// "Fails fast": well under `serve`'s own 20 s start-up timeout.
const FAST: Duration = Duration::from_secs(8);

// ---------------------------------------------------------------------------------
// Running the binary
// ---------------------------------------------------------------------------------

/// What a finished command printed and how it exited.
#[derive(Debug)]
struct Run {
    code: Option<i32>,
    stdout: String,
    stderr: String,
    elapsed: Duration,
}

impl Run {
    /// Asserts exit code 0 and returns self.
    #[track_caller]
    fn ok(self) -> Run {
        assert_eq!(self.code, Some(0), "command failed:\n{self}");
        self
    }

    #[track_caller]
    fn code(self, code: i32) -> Run {
        assert_eq!(self.code, Some(code), "unexpected exit code:\n{self}");
        self
    }

    #[track_caller]
    fn failed(self) -> Run {
        assert!(matches!(self.code, Some(c) if c != 0), "command should have failed:\n{self}");
        self
    }

    fn all(&self) -> String {
        format!("{}\n{}", self.stdout, self.stderr)
    }

    /// The URL after "listening on" in `serve`'s output.
    #[track_caller]
    fn url(&self) -> String {
        self.stdout
            .lines()
            .find_map(|line| line.split_once("listening on ").map(|(_, url)| url.trim().to_owned()))
            .unwrap_or_else(|| panic!("no `listening on` line in:\n{self}"))
    }
}

impl std::fmt::Display for Run {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "exit {:?} after {:?}\n--- stdout\n{}--- stderr\n{}",
            self.code, self.elapsed, self.stdout, self.stderr
        )
    }
}

/// The binary with a clean environment: none of our variables, `HOME` pointing at a
/// scratch folder (so `~/.broodlink` is never the real one), and no cargo home that
/// could contain the test binary.
fn broodlink(home: &Path) -> Command {
    let mut command = Command::new(BIN);
    for var in ["BROODLINK_DATA_DIR", "BROODLINK_HOST", "BROODLINK_PORT", "RUST_LOG", "CARGO_HOME"] {
        command.env_remove(var);
    }
    command.env("HOME", home).env("CARGO_HOME", home.join("no-cargo-home"));
    command.stdin(Stdio::null());
    command
}

/// Runs to completion (or fails the test after [`COMMAND_TIMEOUT`]).
fn run(mut command: Command) -> Run {
    let started = Instant::now();
    let description = format!("{command:?}");
    let mut child = command
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("cannot run {description}: {e}"));
    let stdout = drain(child.stdout.take().expect("stdout"));
    let stderr = drain(child.stderr.take().expect("stderr"));
    let status = loop {
        if let Some(status) = child.try_wait().expect("wait") {
            break status;
        }
        if started.elapsed() > COMMAND_TIMEOUT {
            let _ = child.kill();
            let _ = child.wait();
            panic!("{description} did not finish within {COMMAND_TIMEOUT:?}");
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    Run {
        code: status.code(),
        stdout: stdout.join().expect("stdout reader"),
        stderr: stderr.join().expect("stderr reader"),
        elapsed: started.elapsed(),
    }
}

fn drain(mut pipe: impl Read + Send + 'static) -> std::thread::JoinHandle<String> {
    std::thread::spawn(move || {
        let mut bytes = Vec::new();
        let _ = pipe.read_to_end(&mut bytes);
        String::from_utf8_lossy(&bytes).into_owned()
    })
}

/// A free TCP port on 127.0.0.1 (bound, read, released).
fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0").expect("bind").local_addr().expect("addr").port()
}

/// Every controller key (`bl_k_ctrl_` + 48 lowercase hex digits) in `text`.
fn controller_keys(text: &str) -> Vec<String> {
    const PREFIX: &str = "bl_k_ctrl_";
    let mut keys = Vec::new();
    let mut rest = text;
    while let Some(at) = rest.find(PREFIX) {
        let tail = &rest[at + PREFIX.len()..];
        let hex: String = tail.chars().take_while(|c| c.is_ascii_hexdigit()).collect();
        if hex.len() == 48 && hex.chars().all(|c| !c.is_ascii_uppercase()) {
            keys.push(format!("{PREFIX}{hex}"));
        }
        rest = tail;
    }
    keys
}

#[track_caller]
fn one_controller_key(run: &Run) -> String {
    let keys = controller_keys(&run.all());
    assert_eq!(keys.len(), 1, "expected exactly one controller key:\n{run}");
    keys.into_iter().next().unwrap_or_default()
}

#[track_caller]
fn mode(path: &Path) -> u32 {
    std::fs::metadata(path).unwrap_or_else(|e| panic!("{}: {e}", path.display())).permissions().mode() & 0o777
}

// ---------------------------------------------------------------------------------
// One instance: a temp data dir, a port, and a guard that stops its server
// ---------------------------------------------------------------------------------

struct Instance {
    tmp: tempfile::TempDir,
    /// The data directory (not created until a command creates it).
    dir: PathBuf,
    home: PathBuf,
    port: u16,
}

impl Instance {
    fn new() -> Instance {
        let tmp = tempfile::tempdir().expect("temp dir");
        let dir = tmp.path().join("data");
        let home = tmp.path().join("home");
        std::fs::create_dir(&home).expect("home");
        Instance { tmp, dir, home, port: free_port() }
    }

    /// The binary, pointed at this data directory.
    fn command(&self, args: &[&str]) -> Command {
        let mut command = broodlink(&self.home);
        command.arg("--data-dir").arg(&self.dir).args(args);
        command
    }

    fn run(&self, args: &[&str]) -> Run {
        run(self.command(args))
    }

    /// `serve` (background) on 127.0.0.1 and this instance's port.
    fn serve(&self) -> Run {
        let port = self.port.to_string();
        self.run(&["serve", "--host", "127.0.0.1", "--port", &port])
    }

    fn status_json(&self) -> Value {
        let status = self.run(&["status", "--json"]);
        serde_json::from_str(status.stdout.trim())
            .unwrap_or_else(|e| panic!("status --json is not JSON ({e}):\n{status}"))
    }

    fn url(&self) -> String {
        format!("ws://127.0.0.1:{}", self.port)
    }

    fn file(&self, name: &str) -> PathBuf {
        self.dir.join(name)
    }

    fn log(&self) -> String {
        std::fs::read_to_string(self.file("broodlink.log")).unwrap_or_default()
    }

    /// Asserts that no server runs for this data dir and none left a pid file.
    #[track_caller]
    fn assert_not_running(&self) {
        assert!(!self.file("broodlink.pid").exists(), "a pid file was left behind");
        self.run(&["status"]).code(3);
    }
}

impl Drop for Instance {
    fn drop(&mut self) {
        // Never panic here: this also runs while a failed test unwinds.
        let mut command = self.command(&["stop", "--force", "--timeout", "5"]);
        let _ = command.stdout(Stdio::null()).stderr(Stdio::null()).status();
    }
}

/// Connects, authenticates with `key` and returns the client.
async fn authed(url: &str, key: &str) -> Client {
    let mut client = Client::connect(url).await;
    client.auth(key).await;
    client
}

/// Connects and authenticates with `key`, expecting the error `code`.
async fn auth_fails(url: &str, key: &str, code: i64) {
    let mut client = Client::connect(url).await;
    client.err("auth", json!({ "apiKey": key }), code).await;
}

/// Opens a WebSocket and returns the close frame the server answers with at once.
async fn refused(url: &str) -> (u16, String) {
    let (mut socket, _) = tokio_tungstenite::connect_async(url).await.expect("the handshake itself succeeds");
    loop {
        let frame = tokio::time::timeout(Duration::from_secs(5), socket.next())
            .await
            .expect("the server must close a refused connection at once");
        match frame {
            Some(Ok(Message::Close(Some(close)))) => return (u16::from(close.code), close.reason.to_string()),
            Some(Ok(Message::Close(None))) => panic!("closed without a code or reason"),
            Some(Ok(Message::Ping(_) | Message::Pong(_))) => continue,
            Some(Ok(other)) => panic!("a refused connection received {other:?}"),
            Some(Err(e)) => panic!("connection error instead of a close frame: {e}"),
            None => panic!("connection dropped without a close frame"),
        }
    }
}

// ---------------------------------------------------------------------------------
// Help and version
// ---------------------------------------------------------------------------------

const COMMANDS: [&str; 12] = [
    "serve",
    "stop",
    "restart",
    "status",
    "lock",
    "unlock",
    "kick",
    "install",
    "update",
    "controller-key",
    "backup",
    "restore",
];

#[test]
fn no_arguments_prints_the_command_list() {
    let home = tempfile::tempdir().expect("temp dir");
    let out = run(broodlink(home.path())).code(2);
    let text = out.all();
    assert!(text.contains("Usage: broodlink"), "{out}");
    for command in COMMANDS {
        assert!(text.lines().any(|l| l.trim_start().starts_with(command)), "`{command}` missing from:\n{out}");
    }
    assert!(text.contains("--data-dir") && text.contains("BROODLINK_DATA_DIR"), "{out}");
}

#[test]
fn version_prints_the_package_version() {
    let home = tempfile::tempdir().expect("temp dir");
    let mut command = broodlink(home.path());
    command.arg("--version");
    let out = run(command).ok();
    assert_eq!(out.stdout.trim(), format!("broodlink {}", env!("CARGO_PKG_VERSION")));
}

#[test]
fn every_subcommand_has_help() {
    let home = tempfile::tempdir().expect("temp dir");
    let mut cases: Vec<Vec<&str>> = COMMANDS.iter().map(|c| vec![*c]).collect();
    cases.extend([vec!["install", "server"], vec!["install", "clients"], vec!["controller-key", "rotate"]]);
    for args in cases {
        let mut command = broodlink(home.path());
        command.args(&args).arg("--help");
        let out = run(command).ok();
        let usage = format!("Usage: broodlink {}", args.join(" "));
        assert!(out.stdout.contains(&usage), "`{}` --help lacks `{usage}`:\n{out}", args.join(" "));
    }
    // The flags each command documents.
    let mut serve = broodlink(home.path());
    serve.args(["serve", "--help"]);
    let serve = run(serve).ok();
    for flag in [
        "--foreground",
        "--host",
        "--port",
        "--data-dir",
        "--config",
        "--log-format",
        "BROODLINK_PORT",
        "BROODLINK_HOST",
    ] {
        assert!(serve.stdout.contains(flag), "serve --help lacks {flag}:\n{serve}");
    }
    let mut stop = broodlink(home.path());
    stop.args(["stop", "--help"]);
    let stop = run(stop).ok();
    assert!(stop.stdout.contains("--force") && stop.stdout.contains("--timeout"), "{stop}");
}

// ---------------------------------------------------------------------------------
// First run, install, data directory
// ---------------------------------------------------------------------------------

#[tokio::test]
async fn first_serve_prints_one_key_and_returns_once_listening() {
    let bl = Instance::new();
    let first = bl.serve().ok();
    let key = one_controller_key(&first);
    assert_eq!(first.url(), bl.url(), "{first}");
    // `serve` returned, so the server must accept connections right now.
    let mut controller = authed(&bl.url(), &key).await;
    assert_eq!(controller.auth_result["role"], "controller");

    // A second `serve` while it runs: says so, prints no key, starts nothing new.
    let second = bl.serve().ok();
    assert!(second.all().contains("already running"), "{second}");
    assert!(controller_keys(&second.all()).is_empty(), "a second serve printed a key:\n{second}");
    controller.sync().await;
    drop(controller);

    bl.run(&["stop"]).ok();
    bl.assert_not_running();

    // Serving again: no key, and the first key still works.
    let third = bl.serve().ok();
    assert!(controller_keys(&third.all()).is_empty(), "a restart printed a key:\n{third}");
    authed(&bl.url(), &key).await;
}

#[tokio::test]
async fn an_in_memory_server_in_the_background_accepts_the_key_serve_printed_and_keeps_it_out_of_the_log() {
    let bl = Instance::new();
    std::fs::create_dir_all(&bl.dir).expect("data dir");
    std::fs::write(bl.file("broodlink.json"), r#"{ "database": ":memory:" }"#).expect("config");

    // Nothing to set up ahead: a controller made by `install` would vanish with it.
    let install = bl.run(&["install", "server"]).ok();
    assert!(controller_keys(&install.all()).is_empty(), "{install}");
    assert!(install.stdout.contains(":memory:"), "{install}");

    let first = bl.serve().ok();
    let key = one_controller_key(&first);
    let mut controller = authed(&bl.url(), &key).await;
    assert_eq!(controller.auth_result["role"], "controller");
    controller.sync().await;
    drop(controller);
    assert!(controller_keys(&bl.log()).is_empty(), "the key reached the log:\n{}", bl.log());

    // Everything lived in that process: the next start is a new linkspace with a new key.
    bl.run(&["stop"]).ok();
    let second = bl.serve().ok();
    let new_key = one_controller_key(&second);
    assert_ne!(new_key, key);
    auth_fails(&bl.url(), &key, 4002).await;
    authed(&bl.url(), &new_key).await;
    assert!(controller_keys(&bl.log()).is_empty(), "the key reached the log:\n{}", bl.log());
    // The handover flag takes nothing but a controller key (here: an empty stdin).
    let handed = bl.run(&["serve", "--foreground", "--controller-key-stdin"]).failed();
    assert!(handed.stderr.contains("not a controller key"), "{handed}");

    // Stopped, there is no controller left to rotate, and it says why.
    bl.run(&["stop"]).ok();
    let rotate = bl.run(&["controller-key", "rotate"]).failed();
    assert!(rotate.stderr.contains(":memory:") && controller_keys(&rotate.all()).is_empty(), "{rotate}");
}

#[tokio::test]
async fn install_server_sets_up_without_starting_then_serve_uses_it() {
    let bl = Instance::new();
    let install = bl.run(&["install", "server"]).ok();
    let key = one_controller_key(&install);
    for file in ["broodlink.json", "broodlink.db", "docs/CONSTITUTION.md", "docs/CONTROLLER.md"] {
        assert!(bl.file(file).is_file(), "install server did not write {file}");
    }
    assert!(!std::fs::read_to_string(bl.file("docs/CONSTITUTION.md")).unwrap_or_default().trim().is_empty());
    assert!(!std::fs::read_to_string(bl.file("docs/CONTROLLER.md")).unwrap_or_default().trim().is_empty());
    bl.assert_not_running();

    // Running it again changes nothing and prints no key.
    let again = bl.run(&["install", "server"]).ok();
    assert!(controller_keys(&again.all()).is_empty(), "{again}");

    let serve = bl.serve().ok();
    assert!(controller_keys(&serve.all()).is_empty(), "serve after install printed a key:\n{serve}");
    authed(&bl.url(), &key).await;
}

#[test]
fn data_dir_and_its_files_are_private() {
    let bl = Instance::new();
    bl.serve().ok();
    assert_eq!(mode(&bl.dir), 0o700, "data dir");
    assert_eq!(mode(&bl.file("docs")), 0o700, "docs dir");
    for file in ["broodlink.db", "broodlink.json", "broodlink.log", "broodlink.pid", "broodlink.sock"] {
        assert_eq!(mode(&bl.file(file)), 0o600, "{file} must be 0600, is {:o}", mode(&bl.file(file)));
    }
    for file in ["broodlink.db-wal", "broodlink.db-shm"] {
        if bl.file(file).exists() {
            assert_eq!(mode(&bl.file(file)), 0o600, "{file}");
        }
    }
    // Stopping removes the pid file and the admin socket.
    bl.run(&["stop"]).ok();
    assert!(!bl.file("broodlink.pid").exists() && !bl.file("broodlink.sock").exists());
}

#[tokio::test]
async fn doc_edits_in_the_data_dir_are_picked_up() {
    let bl = Instance::new();
    let key = one_controller_key(&bl.serve().ok());
    let mut controller = authed(&bl.url(), &key).await;
    let before = controller.ok("docs.get", json!({ "name": "constitution" })).await;

    // CONTROLLER.md is served as it is, while the server runs.
    std::fs::write(bl.file("docs/CONTROLLER.md"), "# Edited controller guide\n").expect("edit");
    let doc = controller.ok("docs.get", json!({ "name": "controller" })).await;
    assert_eq!(doc["content"], "# Edited controller guide\n");
    drop(controller);

    // CONSTITUTION.md is imported on the next start, as a new version, and logged.
    bl.run(&["stop"]).ok();
    let log_before = bl.log().len();
    std::fs::write(bl.file("docs/CONSTITUTION.md"), "# Edited constitution\n").expect("edit");
    bl.serve().ok();
    let mut controller = authed(&bl.url(), &key).await;
    let after = controller.ok("docs.get", json!({ "name": "constitution" })).await;
    assert_eq!(after["content"], "# Edited constitution\n");
    assert_ne!(after["version"], before["version"], "an edited CONSTITUTION.md must be a new version");
    let log = bl.log();
    let new_lines = &log[log_before..];
    assert!(
        new_lines.contains("CONSTITUTION.md"),
        "the import of the edited CONSTITUTION.md is not in broodlink.log; the log of this start:\n{new_lines}"
    );
}

#[test]
fn install_clients_writes_the_client_libraries() {
    let bl = Instance::new();
    let out = bl.run(&["install", "clients"]).ok();
    let count: usize = out
        .stdout
        .split_whitespace()
        .skip_while(|w| *w != "wrote")
        .nth(1)
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("no `wrote N files` in:\n{out}"));
    assert!(out.stdout.contains(&bl.file("clients").display().to_string()), "{out}");
    assert!(count > 0, "install clients wrote nothing:\n{out}");
    for language in ["python", "typescript"] {
        let folder = bl.file("clients").join(language);
        assert!(count_files(&folder) > 0, "{} is empty or missing", folder.display());
    }
    assert_eq!(count_files(&bl.file("clients")), count, "files on disk vs the count printed");

    // The server refreshes them on start.
    std::fs::remove_dir_all(bl.file("clients")).expect("remove clients");
    bl.serve().ok();
    assert_eq!(count_files(&bl.file("clients")), count, "serve did not rewrite <data-dir>/clients/");
}

fn count_files(dir: &Path) -> usize {
    std::fs::read_dir(dir)
        .map(|entries| {
            entries.filter_map(Result::ok).map(|e| if e.path().is_dir() { count_files(&e.path()) } else { 1 }).sum()
        })
        .unwrap_or(0)
}

// ---------------------------------------------------------------------------------
// The lifecycle
// ---------------------------------------------------------------------------------

#[tokio::test]
async fn lifecycle_serve_status_lock_unlock_kick_stop() {
    let bl = Instance::new();
    let key = one_controller_key(&bl.serve().ok());

    // status: running, pid, address, not locked.
    let status = bl.run(&["status"]).ok();
    let pid: u32 = std::fs::read_to_string(bl.file("broodlink.pid")).expect("pid file").trim().parse().expect("pid");
    assert!(status.stdout.contains(&pid.to_string()), "{status}");
    assert!(status.stdout.contains(&bl.url()), "{status}");
    assert!(status.stdout.lines().any(|l| l.contains("locked") && l.trim_end().ends_with("no")), "{status}");

    // A controller and a participant connect.
    let mut controller = authed(&bl.url(), &key).await;
    let invited = controller.ok("agent.invite", json!({ "displayName": "Worker" })).await;
    let worker_key = invited["apiKey"].as_str().expect("apiKey").to_owned();
    let mut worker = authed(&bl.url(), &worker_key).await;
    let status = bl.status_json();
    assert_eq!(status["running"], true);
    assert_eq!(status["status"]["pid"], pid);
    assert_eq!(status["status"]["onlineAgents"], 2, "{status}");
    assert_eq!(status["status"]["locked"], false);

    // A connection opened before the lock but not yet authenticated.
    let mut pending = Client::connect(&bl.url()).await;

    // lock: new connections are refused with 1013 and a reason; old ones work.
    let lock = bl.run(&["lock"]).ok();
    assert!(lock.stdout.contains("locked"), "{lock}");
    assert_eq!(bl.status_json()["status"]["locked"], true);
    let (code, reason) = refused(&bl.url()).await;
    assert_eq!(code, 1013, "close code of a connection to a locked server (reason {reason:?})");
    assert!(reason.contains("locked"), "close reason: {reason:?}");
    controller.ok("lobby.getMotd", json!({})).await;
    worker.ok("lobby.getMotd", json!({})).await;
    let refused_auth = pending.call("auth", json!({ "apiKey": worker_key })).await;
    assert!(refused_auth.is_err(), "a new auth succeeded on a locked server: {refused_auth:?}");
    assert!(
        bl.run(&["status"]).ok().stdout.lines().any(|l| l.contains("locked") && l.trim_end().ends_with("yes")),
        "status must show the lock"
    );

    // unlock: new connections and sessions work again.
    bl.run(&["unlock"]).ok();
    let mut second_worker = authed(&bl.url(), &worker_key).await;
    second_worker.sync().await;
    drop(second_worker);
    drop(pending);

    // kick: the participant receives `disconnected` and is closed; the controller stays.
    let kick = bl.run(&["kick"]).ok();
    assert!(kick.stdout.contains("disconnected 1 agent"), "one participant was online:\n{kick}");
    let disconnected = worker.event("disconnected").await;
    assert!(disconnected["reason"].as_str().is_some_and(|r| !r.is_empty()), "{disconnected}");
    worker.wait_closed().await;
    assert!(worker.closed);
    controller.ok("lobby.getMotd", json!({})).await;
    controller.clear_events().await;

    // stop: the controller is told the server is shutting down.
    let stop = {
        let command = bl.command(&["stop"]);
        tokio::task::spawn_blocking(move || run(command))
    };
    let goodbye = controller.event("disconnected").await;
    assert_eq!(goodbye["reason"], "server shutting down");
    controller.wait_closed().await;
    stop.await.expect("stop task").ok();
    assert!(!bl.file("broodlink.pid").exists(), "pid file left after stop");
    assert!(!bl.file("broodlink.sock").exists(), "admin socket left after stop");
    let status = bl.run(&["status"]).code(3);
    assert!(status.stdout.contains("not running"), "{status}");
    assert_eq!(bl.status_json(), json!({ "running": false }));

    let log = bl.log();
    for line in ["server started", "lock changed", "operator kicked", "shutting down", "server stopped"] {
        assert!(log.contains(line), "the log lacks `{line}`:\n{log}");
    }
    assert!(!log.contains(&key) && !log.contains(&worker_key), "the log contains an API key:\n{log}");
}

#[test]
fn stop_when_not_running_exits_zero_and_says_so() {
    let bl = Instance::new();
    let out = bl.run(&["stop"]).ok();
    assert!(out.stdout.contains("not running"), "{out}");
    let status = bl.run(&["status"]).code(3);
    assert!(status.stdout.contains("not running"), "{status}");
    for command in ["lock", "unlock", "kick"] {
        let out = bl.run(&[command]).failed();
        assert!(out.stderr.contains("no BroodLink server is running"), "{command}: {out}");
    }
}

#[test]
fn status_removes_a_stale_pid_file() {
    let bl = Instance::new();
    std::fs::create_dir_all(&bl.dir).expect("data dir");
    // A pid that surely is dead: a child we started and reaped.
    let mut child = Command::new("true").spawn().expect("run true");
    let dead = child.id();
    child.wait().expect("wait");
    std::fs::write(bl.file("broodlink.pid"), format!("{dead}\n")).expect("write pid");

    let status = bl.run(&["status"]).code(3);
    assert!(status.stdout.contains("stale"), "{status}");
    assert!(!bl.file("broodlink.pid").exists(), "status left the stale pid file");
    // stop on a stale pid file: not running, exit 0; serve works afterwards.
    std::fs::write(bl.file("broodlink.pid"), format!("{dead}\n")).expect("write pid");
    let stop = bl.run(&["stop"]).ok();
    assert!(stop.stdout.contains("not running"), "{stop}");
    bl.serve().ok();
    bl.run(&["status"]).ok();
}

fn signal(pid: i32, signal: nix::sys::signal::Signal) {
    nix::sys::signal::kill(nix::unistd::Pid::from_raw(pid), signal).expect("signal the server");
}

fn server_pid(bl: &Instance) -> i32 {
    std::fs::read_to_string(bl.file("broodlink.pid")).expect("pid file").trim().parse().expect("pid")
}

#[test]
fn serve_recovers_after_the_server_was_killed() {
    let bl = Instance::new();
    bl.serve().ok();
    let pid = server_pid(&bl);
    signal(pid, nix::sys::signal::Signal::SIGKILL);
    let deadline = Instant::now() + Duration::from_secs(5);
    while nix::sys::signal::kill(nix::unistd::Pid::from_raw(pid), None).is_ok() && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(20));
    }
    // A killed server leaves its pid file and socket behind: status reports it stopped
    // (and cleans the pid file), and serve starts a new one.
    assert!(bl.file("broodlink.pid").exists() && bl.file("broodlink.sock").exists());
    bl.run(&["status"]).code(3);
    assert!(!bl.file("broodlink.pid").exists(), "status left the stale pid file");
    let serve = bl.serve().ok();
    assert!(controller_keys(&serve.all()).is_empty(), "{serve}");
    assert_ne!(server_pid(&bl), pid);
    bl.run(&["status"]).ok();
}

#[test]
fn stop_force_kills_a_server_that_does_not_exit() {
    let bl = Instance::new();
    bl.serve().ok();
    let pid = server_pid(&bl);
    // A stopped process cannot act on SIGTERM.
    signal(pid, nix::sys::signal::Signal::SIGSTOP);
    let polite = bl.run(&["stop", "--timeout", "1"]).failed();
    assert!(polite.stderr.contains("--force"), "stop should suggest --force:\n{polite}");
    assert!(bl.file("broodlink.pid").exists(), "a failed stop removed the pid file of a live server");
    let forced = bl.run(&["stop", "--force", "--timeout", "1"]).ok();
    assert!(forced.stdout.contains("stopped"), "{forced}");
    assert!(!bl.file("broodlink.pid").exists() && !bl.file("broodlink.sock").exists(), "stop --force left files");
    bl.serve().ok();
    bl.run(&["status"]).ok();
}

#[test]
fn restart_brings_the_server_back_with_a_new_pid() {
    let bl = Instance::new();
    bl.serve().ok();
    let before = bl.status_json()["status"]["pid"].clone();
    let port = bl.port.to_string();
    let restart = bl.run(&["restart", "--host", "127.0.0.1", "--port", &port]).ok();
    assert!(controller_keys(&restart.all()).is_empty(), "{restart}");
    let after = bl.status_json();
    assert_eq!(after["running"], true);
    assert_ne!(after["status"]["pid"], before, "restart kept the old process");
    assert_eq!(after["status"]["url"], bl.url());
}

#[test]
fn serve_foreground_runs_until_sigterm_and_cleans_up() {
    let bl = Instance::new();
    let port = bl.port.to_string();
    let mut command =
        bl.command(&["serve", "--foreground", "--host", "127.0.0.1", "--port", &port, "--log-format", "json"]);
    let mut server = Foreground::spawn(&mut command, bl.tmp.path());
    server.wait_running(&bl);
    assert_eq!(bl.status_json()["status"]["url"], bl.url());
    let code = server.terminate();
    assert_eq!(code, Some(0), "foreground server exit after SIGTERM");
    let stdout = server.stdout();
    let stderr = server.stderr();
    assert_eq!(controller_keys(&stdout).len(), 1, "foreground first run prints the key once:\n{stdout}");
    assert!(stdout.contains("listening on"), "{stdout}");
    let json_lines: Vec<Value> = stderr.lines().filter_map(|l| serde_json::from_str(l).ok()).collect();
    assert!(!json_lines.is_empty(), "--log-format json wrote no JSON lines:\n{stderr}");
    assert!(stderr.contains("server started") && stderr.contains("server stopped"), "{stderr}");
    bl.assert_not_running();
}

// ---------------------------------------------------------------------------------
// Failing fast
// ---------------------------------------------------------------------------------

#[test]
fn serve_on_a_busy_port_fails_fast_naming_the_port() {
    let bl = Instance::new();
    let busy = TcpListener::bind("127.0.0.1:0").expect("bind");
    let port = busy.local_addr().expect("addr").port().to_string();
    let out = bl.run(&["serve", "--host", "127.0.0.1", "--port", &port]).failed();
    assert!(out.elapsed < FAST, "serve took {:?} to fail:\n{out}", out.elapsed);
    assert!(out.stderr.contains(&port), "the message does not name port {port}:\n{out}");
    assert!(out.stderr.to_lowercase().contains("in use"), "the message does not say the port is in use:\n{out}");
    assert!(!out.stdout.contains("running in the background"), "{out}");
    bl.assert_not_running();
    drop(busy);
}

#[test]
fn serve_with_a_broken_config_fails_fast_naming_the_key_and_file() {
    let cases = [
        ("bad JSON", r#"{ "port": 1"#, "line"),
        ("unknown key", r#"{ "host": "127.0.0.1", "bogusKey": 1 }"#, "bogusKey"),
        ("wrong type", r#"{ "host": "127.0.0.1", "port": "eighty" }"#, "port"),
        ("nested wrong type", r#"{ "tailscale": { "enabled": "yes" } }"#, "tailscale.enabled"),
        ("nested unknown key", r#"{ "lobby": { "nmae": "x" } }"#, "lobby.nmae"),
    ];
    for (what, text, named) in cases {
        let bl = Instance::new();
        std::fs::create_dir_all(&bl.dir).expect("data dir");
        let file = bl.file("broodlink.json");
        std::fs::write(&file, text).expect("write config");
        let out = bl.serve().failed();
        assert!(out.elapsed < FAST, "{what}: serve took {:?} to fail:\n{out}", out.elapsed);
        assert!(out.stderr.contains(&file.display().to_string()), "{what}: the file is not named:\n{out}");
        assert!(out.stderr.contains(named), "{what}: `{named}` is not named:\n{out}");
        assert!(controller_keys(&out.all()).is_empty(), "{what}: a key was printed:\n{out}");
        bl.assert_not_running();
        // The file is left as the person wrote it.
        assert_eq!(std::fs::read_to_string(&file).expect("config"), text);
    }

    // --config naming a missing file is an error too (it is not silently ignored).
    let bl = Instance::new();
    let missing = bl.tmp.path().join("nope.json");
    let out = bl.run(&["serve", "--config", missing.to_str().expect("utf-8"), "--host", "127.0.0.1"]).failed();
    assert!(out.stderr.contains(&missing.display().to_string()), "{out}");
    bl.assert_not_running();
}

// ---------------------------------------------------------------------------------
// Precedence: flags > env > file > defaults
// ---------------------------------------------------------------------------------

#[test]
fn precedence_is_flags_then_env_then_file_then_defaults() {
    let bl = Instance::new();
    std::fs::create_dir_all(&bl.dir).expect("data dir");
    let (file_port, env_port, flag_port) = (free_port(), free_port(), free_port());
    std::fs::write(bl.file("broodlink.json"), format!(r#"{{ "host": "127.0.0.2", "port": {file_port} }}"#))
        .expect("write config");

    let url_after = |command: Command| -> Value {
        run(command).ok();
        let status = bl.status_json();
        bl.run(&["stop"]).ok();
        status["status"]["url"].clone()
    };

    // The file beats the defaults.
    assert_eq!(url_after(bl.command(&["serve"])), format!("ws://127.0.0.2:{file_port}"), "file");

    // The environment beats the file.
    let mut env = bl.command(&["serve"]);
    env.env("BROODLINK_PORT", env_port.to_string()).env("BROODLINK_HOST", "127.0.0.3");
    assert_eq!(url_after(env), format!("ws://127.0.0.3:{env_port}"), "env");

    // Flags beat the environment.
    let flag_port_text = flag_port.to_string();
    let mut flags = bl.command(&["serve", "--host", "127.0.0.1", "--port", &flag_port_text]);
    flags.env("BROODLINK_PORT", env_port.to_string()).env("BROODLINK_HOST", "127.0.0.3");
    assert_eq!(url_after(flags), format!("ws://127.0.0.1:{flag_port}"), "flags");

    // --config replaces <data-dir>/broodlink.json.
    let other = bl.tmp.path().join("other.json");
    std::fs::write(&other, format!(r#"{{ "host": "127.0.0.1", "port": {env_port} }}"#)).expect("write config");
    let config = bl.command(&["serve", "--config", other.to_str().expect("utf-8")]);
    assert_eq!(url_after(config), format!("ws://127.0.0.1:{env_port}"), "--config");

    // Data directory: --data-dir beats BROODLINK_DATA_DIR, which beats ~/.broodlink.
    let from_env = bl.tmp.path().join("from-env");
    let from_flag = bl.tmp.path().join("from-flag");
    let mut both = broodlink(&bl.home);
    both.arg("--data-dir").arg(&from_flag).args(["install", "server"]).env("BROODLINK_DATA_DIR", &from_env);
    run(both).ok();
    assert!(from_flag.join("broodlink.db").exists() && !from_env.exists(), "--data-dir must beat the env");
    let mut env_only = broodlink(&bl.home);
    env_only.args(["install", "server"]).env("BROODLINK_DATA_DIR", &from_env);
    run(env_only).ok();
    assert!(from_env.join("broodlink.db").exists(), "BROODLINK_DATA_DIR was not used");
    assert!(!bl.home.join(".broodlink").exists());

    // Defaults: ~/.broodlink and port 18800 (install prints the URL without binding it).
    let mut defaults = broodlink(&bl.home);
    defaults.args(["install", "server"]);
    let out = run(defaults).ok();
    assert!(bl.home.join(".broodlink/broodlink.db").exists(), "the default data dir is not ~/.broodlink:\n{out}");
    assert!(out.stdout.contains("ws://127.0.0.1:18800"), "the default port is not 18800:\n{out}");
}

// ---------------------------------------------------------------------------------
// controller-key rotate
// ---------------------------------------------------------------------------------

#[tokio::test]
async fn controller_key_rotate_while_running_replaces_the_key_and_disconnects_the_controller() {
    let bl = Instance::new();
    let old = one_controller_key(&bl.serve().ok());
    let mut controller = authed(&bl.url(), &old).await;

    let rotate = bl.run(&["controller-key", "rotate"]).ok();
    let new = one_controller_key(&rotate);
    assert_ne!(new, old);

    let disconnected = controller.event("disconnected").await;
    assert!(disconnected["reason"].as_str().is_some_and(|r| !r.is_empty()), "{disconnected}");
    controller.wait_closed().await;

    auth_fails(&bl.url(), &old, 4002).await;
    let fresh = authed(&bl.url(), &new).await;
    assert_eq!(fresh.auth_result["role"], "controller");
    assert!(!bl.log().contains(&new), "the new key was logged");
}

#[tokio::test]
async fn controller_key_rotate_while_stopped_takes_effect_on_next_start() {
    let bl = Instance::new();
    let old = one_controller_key(&bl.serve().ok());
    bl.run(&["stop"]).ok();

    let new = one_controller_key(&bl.run(&["controller-key", "rotate"]).ok());
    assert_ne!(new, old);
    bl.assert_not_running();

    let serve = bl.serve().ok();
    assert!(controller_keys(&serve.all()).is_empty(), "{serve}");
    auth_fails(&bl.url(), &old, 4002).await;
    authed(&bl.url(), &new).await;
}

#[test]
fn controller_key_rotate_without_a_database_says_to_set_up_first() {
    let bl = Instance::new();
    let out = bl.run(&["controller-key", "rotate"]).failed();
    assert!(out.stderr.contains("install server") || out.stderr.contains("serve"), "{out}");
    assert!(controller_keys(&out.all()).is_empty(), "{out}");
}

// ---------------------------------------------------------------------------------
// update
// ---------------------------------------------------------------------------------

#[test]
fn update_dry_run_outside_cargo_install_says_what_to_run_and_fails() {
    let home = tempfile::tempdir().expect("temp dir");
    let mut command = broodlink(home.path());
    command.args(["update", "--dry-run"]);
    let out = run(command).failed();
    assert!(out.stderr.contains("not installed with `cargo install`"), "{out}");
    assert!(out.stderr.contains("cargo install --path . --locked --force"), "{out}");
    assert!(out.stderr.contains(BIN), "the message should name this binary:\n{out}");
}

#[test]
fn update_dry_run_of_a_cargo_install_prints_the_cargo_command() {
    // A hard link of the binary in a fake $CARGO_HOME/bin (same file system as target/).
    let cargo_home = tempfile::tempdir_in(env!("CARGO_TARGET_TMPDIR")).expect("temp dir");
    let bin = cargo_home.path().join("bin");
    std::fs::create_dir(&bin).expect("bin");
    let installed = bin.join("broodlink");
    if std::fs::hard_link(BIN, &installed).is_err() {
        std::fs::copy(BIN, &installed).expect("copy the binary");
    }
    let mut command = Command::new(&installed);
    command.args(["update", "--dry-run"]).env_clear().env("CARGO_HOME", cargo_home.path());
    let out = run(command).ok();
    assert!(out.stdout.contains("running: "), "{out}");
    assert!(out.stdout.contains("cargo install broodlink --locked --force"), "{out}");
}

// ---------------------------------------------------------------------------------
// Tailscale
// ---------------------------------------------------------------------------------

#[test]
fn tailscale_with_a_missing_named_interface_refuses_to_start() {
    let bl = Instance::new();
    std::fs::create_dir_all(&bl.dir).expect("data dir");
    std::fs::write(
        bl.file("broodlink.json"),
        format!(r#"{{ "port": {}, "tailscale": {{ "enabled": true, "interfaceName": "blnosuch0" }} }}"#, bl.port),
    )
    .expect("write config");
    let out = bl.run(&["serve"]).failed();
    assert!(out.elapsed < FAST, "{out}");
    assert!(out.stderr.contains("blnosuch0") && out.stderr.contains("tailscale"), "{out}");
    bl.assert_not_running();
}

/// A foreground server started by the test; terminated (and reaped) on drop.
struct Foreground {
    child: Option<Child>,
    stdout: PathBuf,
    stderr: PathBuf,
}

impl Foreground {
    fn spawn(command: &mut Command, dir: &Path) -> Foreground {
        let stdout = dir.join("fg.stdout");
        let stderr = dir.join("fg.stderr");
        let child = command
            .stdout(std::fs::File::create(&stdout).expect("stdout file"))
            .stderr(std::fs::File::create(&stderr).expect("stderr file"))
            .spawn()
            .expect("spawn the foreground server");
        Foreground { child: Some(child), stdout, stderr }
    }

    /// Waits until `status` answers for `bl` (or the process exits: then panics).
    #[track_caller]
    fn wait_running(&mut self, bl: &Instance) {
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            if let Some(status) = self.child.as_mut().and_then(|c| c.try_wait().ok().flatten()) {
                panic!("the foreground server exited ({status}):\n{}\n{}", self.stdout(), self.stderr());
            }
            if bl.run(&["status"]).code == Some(0) {
                return;
            }
            assert!(Instant::now() < deadline, "the foreground server did not start:\n{}", self.stderr());
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// Waits for it to exit by itself (it must: it failed to start).
    fn wait_exit(&mut self) -> Option<i32> {
        let child = self.child.as_mut()?;
        let deadline = Instant::now() + Duration::from_secs(15);
        loop {
            if let Ok(Some(status)) = child.try_wait() {
                self.child = None;
                return status.code();
            }
            if Instant::now() > deadline {
                return None;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// SIGTERM, then waits (SIGKILL after 10 s). Returns the exit code.
    fn terminate(&mut self) -> Option<i32> {
        let child = self.child.as_mut()?;
        let pid = nix::unistd::Pid::from_raw(child.id() as i32);
        let _ = nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGTERM);
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            if let Ok(Some(status)) = child.try_wait() {
                self.child = None;
                return status.code();
            }
            if Instant::now() > deadline {
                let _ = child.kill();
                let _ = child.wait();
                self.child = None;
                return None;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    fn stdout(&self) -> String {
        std::fs::read_to_string(&self.stdout).unwrap_or_default()
    }

    fn stderr(&self) -> String {
        std::fs::read_to_string(&self.stderr).unwrap_or_default()
    }
}

impl Drop for Foreground {
    fn drop(&mut self) {
        self.terminate();
    }
}

/// A network namespace, deleted on drop.
struct Netns(String);

impl Netns {
    /// Creates one, or returns why it cannot (not root, no `ip`, no permission).
    fn create(suffix: &str) -> Result<Netns, String> {
        let uid = Command::new("id").arg("-u").output().map(|o| String::from_utf8_lossy(&o.stdout).trim().to_owned());
        if uid.ok().as_deref() != Some("0") {
            return Err("not running as root".into());
        }
        let name = format!("blcli{}{suffix}", std::process::id());
        match Command::new("ip").args(["netns", "add", &name]).output() {
            Ok(out) if out.status.success() => {}
            Ok(out) => return Err(format!("`ip netns add` failed: {}", String::from_utf8_lossy(&out.stderr).trim())),
            Err(e) => return Err(format!("no `ip` command: {e}")),
        }
        let netns = Netns(name);
        netns.ip(&["link", "set", "lo", "up"])?;
        Ok(netns)
    }

    /// `ip <args>` inside the namespace.
    fn ip(&self, args: &[&str]) -> Result<(), String> {
        let out =
            Command::new("ip").args(["netns", "exec", &self.0, "ip"]).args(args).output().map_err(|e| e.to_string())?;
        if out.status.success() {
            Ok(())
        } else {
            Err(format!("`ip {}` failed: {}", args.join(" "), String::from_utf8_lossy(&out.stderr).trim()))
        }
    }

    /// Adds an interface named `tailscale0` holding 100.100.7.7/32: a dummy if the
    /// kernel has them, else one end of a veth pair (its peer stays in the namespace).
    fn add_tailscale0(&self) -> Result<(), String> {
        if self.ip(&["link", "add", "tailscale0", "type", "dummy"]).is_err() {
            self.ip(&["link", "add", "tailscale0", "type", "veth", "peer", "name", "tspeer0"])?;
            self.ip(&["link", "set", "tspeer0", "up"])?;
        }
        self.ip(&["addr", "add", "100.100.7.7/32", "dev", "tailscale0"])?;
        self.ip(&["link", "set", "tailscale0", "up"])
    }

    /// `command` run inside the namespace.
    fn exec(&self, program: &str) -> Command {
        let mut command = Command::new("ip");
        command.args(["netns", "exec", &self.0, program]);
        command
    }

    /// Whether a TCP connection to `addr:port` from inside the namespace succeeds.
    fn connects(&self, addr: &str, port: u16) -> bool {
        let mut command = self.exec("bash");
        command.args(["-c", &format!("exec 3<>/dev/tcp/{addr}/{port}")]);
        run(command).code == Some(0)
    }

    /// The local addresses listening on `port` inside the namespace (from /proc/net/tcp).
    fn listeners(&self, port: u16) -> Vec<String> {
        let mut command = self.exec("cat");
        command.arg("/proc/net/tcp");
        let table = run(command).ok().stdout;
        let port_hex = format!("{port:04X}");
        table
            .lines()
            .skip(1)
            .filter_map(|line| {
                let fields: Vec<&str> = line.split_whitespace().collect();
                let (addr, state) = (fields.get(1)?, fields.get(3)?);
                let (ip_hex, p) = addr.split_once(':')?;
                (p == port_hex && *state == "0A").then(|| {
                    let n = u32::from_str_radix(ip_hex, 16).unwrap_or_default();
                    std::net::Ipv4Addr::from(n.swap_bytes()).to_string()
                })
            })
            .collect()
    }
}

impl Drop for Netns {
    fn drop(&mut self) {
        let _ = Command::new("ip").args(["netns", "del", &self.0]).output();
    }
}

/// Writes a config enabling Tailscale (auto-detected) on `bl.port`.
fn tailscale_config(bl: &Instance) -> PathBuf {
    std::fs::create_dir_all(&bl.dir).expect("data dir");
    let file = bl.file("broodlink.json");
    std::fs::write(
        &file,
        format!(r#"{{ "host": "127.0.0.1", "port": {}, "tailscale": {{ "enabled": true }} }}"#, bl.port),
    )
    .expect("write config");
    file
}

#[test]
fn tailscale_binds_only_the_tailscale0_address() {
    let netns = match Netns::create("a").and_then(|ns| ns.add_tailscale0().map(|()| ns)) {
        Ok(netns) => netns,
        Err(why) => {
            eprintln!("SKIPPED tailscale_binds_only_the_tailscale0_address: {why}");
            return;
        }
    };
    let bl = Instance::new();
    tailscale_config(&bl);
    let mut command = netns.exec(BIN);
    command.arg("--data-dir").arg(&bl.dir).args(["serve", "--foreground"]);
    for var in ["BROODLINK_DATA_DIR", "BROODLINK_HOST", "BROODLINK_PORT", "RUST_LOG"] {
        command.env_remove(var);
    }
    let mut server = Foreground::spawn(&mut command, bl.tmp.path());
    server.wait_running(&bl);

    let url = bl.status_json()["status"]["url"].clone();
    assert_eq!(url, format!("ws://100.100.7.7:{}", bl.port), "the advertised URL");
    assert_eq!(netns.listeners(bl.port), vec!["100.100.7.7".to_owned()], "listening sockets on the port");
    assert!(netns.connects("100.100.7.7", bl.port), "cannot connect to the Tailscale address");
    assert!(!netns.connects("127.0.0.1", bl.port), "the server also answers on 127.0.0.1 (config host ignored?)");

    assert_eq!(server.terminate(), Some(0));
    bl.assert_not_running();
}

#[test]
fn tailscale_background_serve_advertises_the_tailscale_address() {
    let netns = match Netns::create("c").and_then(|ns| ns.add_tailscale0().map(|()| ns)) {
        Ok(netns) => netns,
        Err(why) => {
            eprintln!("SKIPPED tailscale_background_serve_advertises_the_tailscale_address: {why}");
            return;
        }
    };
    let bl = Instance::new();
    tailscale_config(&bl);
    let mut command = netns.exec(BIN);
    command.arg("--data-dir").arg(&bl.dir).arg("serve");
    for var in ["BROODLINK_DATA_DIR", "BROODLINK_HOST", "BROODLINK_PORT", "RUST_LOG"] {
        command.env_remove(var);
    }
    let out = run(command).ok();
    one_controller_key(&out);
    let expected = format!("ws://100.100.7.7:{}", bl.port);
    assert_eq!(out.url(), expected, "{out}");
    // Every address shown to the person (the first-run box included) is the one that works.
    let shown: Vec<&str> = out.stdout.split_whitespace().filter(|w| w.starts_with("ws://")).collect();
    assert!(
        shown.iter().all(|url| *url == expected),
        "serve advertised {shown:?}, but only {expected} answers:\n{out}"
    );
    assert_eq!(netns.listeners(bl.port), vec!["100.100.7.7".to_owned()]);
}

#[test]
fn tailscale_without_an_interface_refuses_to_start() {
    let netns = match Netns::create("b") {
        Ok(netns) => netns,
        Err(why) => {
            eprintln!("SKIPPED tailscale_without_an_interface_refuses_to_start: {why}");
            return;
        }
    };
    let bl = Instance::new();
    tailscale_config(&bl);
    let mut command = netns.exec(BIN);
    command.arg("--data-dir").arg(&bl.dir).args(["serve", "--foreground"]);
    let mut server = Foreground::spawn(&mut command, bl.tmp.path());
    let code = server.wait_exit();
    assert!(matches!(code, Some(c) if c != 0), "expected a prompt non-zero exit, got {code:?}");
    let stderr = server.stderr();
    assert!(stderr.contains("no Tailscale interface was found"), "{stderr}");
    assert!(stderr.contains("not fall back"), "{stderr}");
    bl.assert_not_running();
}

// ---------------------------------------------------------------------------------
// README
// ---------------------------------------------------------------------------------

#[test]
fn readme_command_line_section_documents_every_command() {
    let readme = std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("README.md")).expect("README.md");
    let section = readme
        .split("## Command line")
        .nth(1)
        .map(|rest| rest.split("\n## ").next().unwrap_or(rest))
        .expect("README has a `## Command line` section");
    let missing: Vec<&str> =
        COMMANDS.iter().copied().filter(|c| !section.contains(&format!("broodlink {c}"))).collect();
    assert!(missing.is_empty(), "README's command line section does not show: {missing:?}");
    assert!(section.contains("BROODLINK_PORT") && section.contains("BROODLINK_HOST"), "env vars not documented");
}
