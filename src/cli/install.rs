//! `install server`, `install clients` and `update`.

use std::path::Path;
use std::process::ExitCode;

use super::{fail, print_controller_key, runtime};
use crate::instance::{Instance, NetOverrides};
use crate::server;

pub fn server(instance: &Instance) -> ExitCode {
    if let Err(e) = instance.prepare() {
        return fail(format!("cannot prepare the data directory {}: {e}", instance.data_dir.display()));
    }
    let config = match instance.config(&NetOverrides::default()) {
        Ok(config) => config,
        Err(e) => return fail(e),
    };
    if config.in_memory() {
        // A controller made here would vanish with this process.
        println!(
            "The database is \":memory:\" (see `database` in {}): there is nothing to set up ahead; \
             `broodlink serve` creates the controller and prints its key each time it starts",
            instance.config_file.display()
        );
    } else {
        let url = super::serve::url_for(&config);
        let created = match runtime() {
            Ok(runtime) => runtime.block_on(server::bootstrap(config, &instance.data_dir)),
            Err(code) => return code,
        };
        match created {
            Ok(Some(key)) => print_controller_key(&key, &url, &instance.data_dir),
            Ok(None) => println!("BroodLink was already set up in {}", instance.data_dir.display()),
            Err(e) => return fail(e),
        }
    }
    if let Err(e) = write_clients(instance) {
        return fail(format!("cannot write {}: {e}", instance.clients_dir().display()));
    }
    println!("Edit {} if needed, then run `broodlink serve`", instance.config_file.display());
    ExitCode::SUCCESS
}

pub fn clients(instance: &Instance) -> ExitCode {
    match write_clients(instance) {
        Ok(count) => {
            println!("wrote {count} files to {}", instance.clients_dir().display());
            ExitCode::SUCCESS
        }
        Err(e) => fail(format!("cannot write {}: {e}", instance.clients_dir().display())),
    }
}

/// Writes the client libraries embedded in this binary to `<data-dir>/clients/`.
pub fn write_clients(instance: &Instance) -> std::io::Result<usize> {
    let root = instance.clients_dir();
    for (path, contents) in crate::embedded_clients::FILES {
        let target = root.join(path);
        if let Some(parent) = target.parent() {
            std::fs::create_dir_all(parent)?;
        }
        std::fs::write(&target, contents)?;
    }
    Ok(crate::embedded_clients::FILES.len())
}

pub fn update(dry_run: bool) -> ExitCode {
    let exe = match std::env::current_exe() {
        Ok(exe) => exe,
        Err(e) => return fail(format!("cannot find this program's path: {e}")),
    };
    let cargo_home = std::env::var_os("CARGO_HOME")
        .map(std::path::PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|home| Path::new(&home).join(".cargo")));
    let installed_by_cargo = cargo_home.is_some_and(|home| exe.starts_with(home.join("bin")));
    if !installed_by_cargo {
        return fail(format!(
            "this broodlink ({}) was not installed with `cargo install`, so it cannot update itself. \
             In a source checkout run `git pull && cargo build --release`; to install it run \
             `cargo install --path . --locked --force` from the checkout",
            exe.display()
        ));
    }
    let args = ["install", "broodlink", "--locked", "--force"];
    println!("running: cargo {}", args.join(" "));
    if dry_run {
        return ExitCode::SUCCESS;
    }
    match std::process::Command::new("cargo").args(args).status() {
        Ok(status) if status.success() => ExitCode::SUCCESS,
        Ok(status) => fail(format!("`cargo {}` failed ({status})", args.join(" "))),
        Err(e) => fail(format!("cannot run cargo: {e}; run `cargo {}` yourself", args.join(" "))),
    }
}
