//! Talking to a running server: `stop`, `status`, `lock`/`unlock`/`kick`, and
//! `controller-key rotate`.

use std::process::ExitCode;
use std::time::{Duration, Instant};

use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;

use super::{fail, runtime};
use crate::admin::{self, AdminError, Command, Status};
use crate::instance::{process_alive, Instance, NetOverrides};

/// `status` exits with this when no server runs (the LSB convention).
const NOT_RUNNING: u8 = 3;

pub fn stop(instance: &Instance, force: bool, timeout: u64) -> ExitCode {
    let Some(pid) = instance.running_pid() else {
        println!("BroodLink is not running (data directory {})", instance.data_dir.display());
        return ExitCode::SUCCESS;
    };
    if let Err(e) = kill(Pid::from_raw(pid), Signal::SIGTERM) {
        return fail(format!("cannot signal pid {pid}: {e}"));
    }
    if !wait_for_exit(pid, Duration::from_secs(timeout)) {
        if !force {
            return fail(format!(
                "the server (pid {pid}) did not stop within {timeout}s; run `broodlink stop --force` to kill it"
            ));
        }
        let _ = kill(Pid::from_raw(pid), Signal::SIGKILL);
        if !wait_for_exit(pid, Duration::from_secs(5)) {
            return fail(format!("the server (pid {pid}) survived SIGKILL"));
        }
    }
    // A graceful exit removes these itself; a killed server leaves them behind.
    let _ = std::fs::remove_file(instance.pid_file());
    let _ = std::fs::remove_file(instance.admin_socket());
    println!("BroodLink stopped (pid {pid})");
    ExitCode::SUCCESS
}

fn wait_for_exit(pid: i32, timeout: Duration) -> bool {
    let deadline = Instant::now() + timeout;
    while process_alive(pid) {
        if Instant::now() > deadline {
            return false;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    true
}

pub fn status(instance: &Instance, json: bool) -> ExitCode {
    match admin::request(&instance.admin_socket(), Command::Status) {
        Ok(reply) => {
            let Ok(status) = serde_json::from_value::<Status>(reply["status"].clone()) else {
                return fail("the server sent a status this command does not understand");
            };
            if json {
                println!("{}", serde_json::json!({ "running": true, "status": status }));
            } else {
                println!("BroodLink is running");
                println!("  pid:       {}", status.pid);
                println!("  address:   {}", status.url);
                println!("  uptime:    {}", uptime(status.uptime_ms));
                println!("  agents:    {} online ({} connections)", status.online_agents, status.connections);
                println!("  locked:    {}", if status.locked { "yes" } else { "no" });
                println!("  data dir:  {}", instance.data_dir.display());
            }
            ExitCode::SUCCESS
        }
        Err(AdminError::NotRunning(_)) => {
            let stale = instance.pid_file().exists() && instance.running_pid().is_none();
            if json {
                println!("{}", serde_json::json!({ "running": false }));
            } else {
                println!("BroodLink is not running (data directory {})", instance.data_dir.display());
                if stale {
                    println!("  removed a stale pid file");
                }
            }
            ExitCode::from(NOT_RUNNING)
        }
        Err(e) => fail(format!("the server is not answering: {e}")),
    }
}

/// `lock`, `unlock`, `kick`.
pub fn simple(instance: &Instance, command: Command) -> ExitCode {
    match admin::request(&instance.admin_socket(), command) {
        Ok(reply) => {
            match command {
                Command::Lock => println!("BroodLink is locked: new connections are refused"),
                Command::Unlock => println!("BroodLink is unlocked"),
                Command::Kick => println!("disconnected {} agent(s)", reply["kicked"]),
                Command::Status | Command::RotateControllerKey => {}
            }
            ExitCode::SUCCESS
        }
        Err(e) => fail(not_running_hint(instance, e)),
    }
}

pub fn rotate_controller_key(instance: &Instance) -> ExitCode {
    let key = match admin::request(&instance.admin_socket(), Command::RotateControllerKey) {
        Ok(reply) => reply["apiKey"].as_str().unwrap_or_default().to_owned(),
        Err(AdminError::NotRunning(_)) if instance.running_pid().is_some() => {
            return fail("a server process is running but its admin socket does not answer; stop it first");
        }
        Err(AdminError::NotRunning(_)) => match rotate_offline(instance) {
            Ok(key) => key,
            Err(code) => return code,
        },
        Err(e) => return fail(e),
    };
    println!("New controller API key (shown only this once; the old key no longer works):");
    println!();
    println!("    {key}");
    ExitCode::SUCCESS
}

/// With no server running, rotate directly in the database.
fn rotate_offline(instance: &Instance) -> Result<String, ExitCode> {
    let config = instance.config(&NetOverrides::default()).map_err(fail)?;
    if config.in_memory() {
        return Err(fail(format!(
            "no server is running, and its database is \":memory:\" (see `database` in {}), so there is no \
             controller to rotate: `broodlink serve` prints a new key each time it starts",
            instance.config_file.display()
        )));
    }
    if !config.database.exists() {
        return Err(fail(format!(
            "no database at {}; run `broodlink install server` or `broodlink serve` first",
            config.database.display()
        )));
    }
    let runtime = runtime()?;
    runtime.block_on(async {
        let store = crate::store::Store::open(&config.database, config.synchronous).await.map_err(fail)?;
        let opened = crate::service::Linkspace::open(config, store, Some(instance.data_dir.join("docs")), None)
            .await
            .map_err(fail)?;
        let key = opened.linkspace.rotate_controller_key().await.map_err(fail);
        opened.linkspace.close().await;
        key
    })
}

fn not_running_hint(instance: &Instance, error: AdminError) -> String {
    match error {
        AdminError::NotRunning(_) => format!(
            "no BroodLink server is running for {} (start it with `broodlink serve`)",
            instance.data_dir.display()
        ),
        other => other.to_string(),
    }
}

fn uptime(ms: i64) -> String {
    let s = ms / 1000;
    match s {
        s if s < 60 => format!("{s}s"),
        s if s < 3600 => format!("{}m {}s", s / 60, s % 60),
        s if s < 86400 => format!("{}h {}m", s / 3600, (s % 3600) / 60),
        s => format!("{}d {}h", s / 86400, (s % 86400) / 3600),
    }
}
