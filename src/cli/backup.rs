//! `backup FILE`: a consistent copy of the database, taken while the server runs (or
//! not); `restore FILE`: put such a copy in place of the database while it is stopped.

use std::fs;
use std::io;
use std::os::unix::fs::{MetadataExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use tokio::runtime::Runtime;

use super::{fail, runtime};
use crate::admin;
use crate::instance::{Instance, NetOverrides};
use crate::store::{self, DatabaseSummary};

pub fn backup(instance: &Instance, file: &Path, force: bool) -> ExitCode {
    let runtime = match runtime() {
        Ok(runtime) => runtime,
        Err(code) => return code,
    };
    match try_backup(&runtime, instance, file, force) {
        Ok(()) => ExitCode::SUCCESS,
        Err(message) => fail(message),
    }
}

pub fn restore(instance: &Instance, file: &Path) -> ExitCode {
    let runtime = match runtime() {
        Ok(runtime) => runtime,
        Err(code) => return code,
    };
    match try_restore(&runtime, instance, file) {
        Ok(()) => ExitCode::SUCCESS,
        Err(message) => fail(message),
    }
}

fn try_backup(runtime: &Runtime, instance: &Instance, file: &Path, force: bool) -> Result<(), String> {
    let database = database(instance)?;
    if !database.exists() {
        return Err(format!(
            "there is no database at {} yet, so there is nothing to back up; run `broodlink serve` or \
             `broodlink install server` first (or pass the --data-dir/--config of the instance to back up)",
            database.display()
        ));
    }
    let target = absolute(file);
    let Some(name) = target.file_name().map(|n| n.to_string_lossy().into_owned()) else {
        return Err(format!(
            "{} is not a file name; give the backup file's path, e.g. ./broodlink-backup.db",
            file.display()
        ));
    };
    let folder = target.parent().unwrap_or(Path::new("/")).to_owned();
    if !folder.is_dir() {
        return Err(format!(
            "the folder {} does not exist; create it first (mkdir -p {}) or choose another path",
            folder.display(),
            folder.display()
        ));
    }
    if target.is_dir() {
        return Err(format!(
            "{} is a folder; give a file name inside it, e.g. {}",
            target.display(),
            target.join("broodlink-backup.db").display()
        ));
    }
    if is_database_file(&database, &target) {
        return Err(format!("{} is the live database itself; choose another path for the backup", target.display()));
    }
    if target.exists() && !force {
        return Err(format!("{} already exists; choose another name, or pass --force to replace it", target.display()));
    }

    // Written beside the target under a temporary name, then renamed: the target is
    // never a half-written file, and an existing one stays intact if anything fails.
    let partial = folder.join(format!(".{name}.partial-{}", std::process::id()));
    create_private(&partial).map_err(|e| format!("cannot create a file in {}: {e}", folder.display()))?;
    let written = write_backup(runtime, &database, &partial);
    let placed = written.and_then(|summary| {
        place(&partial, &target, force)?;
        Ok(summary)
    });
    let summary = match placed {
        Ok(summary) => summary,
        Err(message) => {
            let _ = fs::remove_file(&partial);
            return Err(message);
        }
    };

    let size = fs::metadata(&target).map(|m| m.len()).unwrap_or(0);
    println!("Backed up {} to {}", database.display(), target.display());
    println!("  size:      {} ({size} bytes)", human_size(size));
    print_summary(&summary);
    println!("Restore it with `broodlink restore {}` while the server is stopped.", target.display());
    Ok(())
}

/// `VACUUM INTO` the (empty, 0600) file `partial`, check the copy and fsync it.
fn write_backup(runtime: &Runtime, database: &Path, partial: &Path) -> Result<DatabaseSummary, String> {
    let summary = runtime.block_on(async {
        store::backup_into(database, partial)
            .await
            .map_err(|e| format!("cannot back up {}: {e}", database.display()))?;
        store::inspect(partial).await.map_err(|e| format!("the backup failed its check: {e}"))
    })?;
    let Some(summary) = summary else {
        return Err(format!("{} is not a BroodLink database; check `database` in the config", database.display()));
    };
    // SQLite keeps the mode of the file it was given; make sure anyway (keys' hashes are inside).
    fs::set_permissions(partial, fs::Permissions::from_mode(0o600))
        .and_then(|()| fs::File::open(partial)?.sync_all())
        .map_err(|e| format!("cannot write {}: {e}", partial.display()))?;
    Ok(summary)
}

/// Moves `partial` to `target`: replacing it only with `force`, never clobbering a
/// file that appeared meanwhile otherwise.
fn place(partial: &Path, target: &Path, force: bool) -> Result<(), String> {
    let exists = || format!("{} already exists; choose another name, or pass --force to replace it", target.display());
    let cannot = |e: io::Error| format!("cannot write {}: {e}", target.display());
    if force {
        fs::rename(partial, target).map_err(cannot)?;
    } else {
        // A hard link fails if the target exists (atomically); then drop the temporary name.
        match fs::hard_link(partial, target) {
            Ok(()) => {
                let _ = fs::remove_file(partial);
            }
            Err(e) if e.kind() == io::ErrorKind::AlreadyExists => return Err(exists()),
            // A file system without hard links.
            Err(_) if target.exists() => return Err(exists()),
            Err(_) => fs::rename(partial, target).map_err(cannot)?,
        }
    }
    sync_dir(target);
    Ok(())
}

fn try_restore(runtime: &Runtime, instance: &Instance, file: &Path) -> Result<(), String> {
    let database = database(instance)?;
    let source = absolute(file);
    if !source.is_file() {
        return Err(format!("there is no backup file at {}", source.display()));
    }
    if is_database_file(&database, &source) {
        return Err(format!("{} is the database itself; give the path of a backup", source.display()));
    }
    if let Ok(reply) = admin::request(&instance.admin_socket(), admin::Command::Status) {
        return Err(format!(
            "BroodLink is running (pid {}) for {}; stop it with `broodlink stop`, then run the restore again",
            reply["status"]["pid"],
            instance.data_dir.display()
        ));
    }
    if let Some(pid) = instance.running_pid() {
        return Err(format!(
            "a BroodLink server process (pid {pid}) is running for {}; stop it with `broodlink stop`, \
             then run the restore again",
            instance.data_dir.display()
        ));
    }
    let summary = runtime
        .block_on(store::inspect(&source))
        .map_err(|e| format!("{} is not a usable backup: {e}", source.display()))?
        .ok_or_else(|| format!("{} is a SQLite database, but not a BroodLink backup", source.display()))?;

    // A restore onto a new machine sets up the data directory (config, docs) first.
    instance.prepare().map_err(|e| {
        format!(
            "cannot prepare the data directory {}: {e} (check its permissions or pass --data-dir)",
            instance.data_dir.display()
        )
    })?;
    let folder = database.parent().unwrap_or(Path::new("/")).to_owned();
    fs::create_dir_all(&folder).map_err(|e| format!("cannot create {}: {e}", folder.display()))?;
    let name = database.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
    let incoming = folder.join(format!(".{name}.restoring-{}", std::process::id()));
    let copied = create_private(&incoming)
        .and_then(|mut out| {
            io::copy(&mut fs::File::open(&source)?, &mut out)?;
            out.sync_all()
        })
        .map_err(|e| format!("cannot copy {} to {}: {e}", source.display(), incoming.display()));
    if let Err(message) = copied {
        let _ = fs::remove_file(&incoming);
        return Err(message);
    }

    // The current database goes aside with its WAL (so it stays openable as it was);
    // its -shm is only an index of that WAL. A stale -wal left beside the restored file
    // would be replayed into it.
    let kept = match set_aside(&database) {
        Ok(kept) => kept,
        Err(message) => {
            let _ = fs::remove_file(&incoming);
            return Err(message);
        }
    };
    if let Err(e) = fs::rename(&incoming, &database) {
        let _ = fs::remove_file(&incoming);
        // Put the previous database back where it was.
        if let Some(kept) = &kept {
            let _ = fs::rename(with_suffix(kept, "-wal"), with_suffix(&database, "-wal"));
            let _ = fs::rename(kept, &database);
        }
        return Err(format!("cannot move the backup to {}: {e}; the database was left as it was", database.display()));
    }
    sync_dir(&database);

    println!("Restored {} into {}", source.display(), database.display());
    print_summary(&summary);
    if let Some(kept) = kept {
        println!("The previous database was kept as {} (delete it once you no longer need it).", kept.display());
    }
    println!("Start the server with `broodlink serve`.");
    Ok(())
}

/// Renames the database and its `-wal` to `<db>.before-restore-<time>[-wal]` and
/// removes its `-shm`. Returns the new name, or `None` when there was no database.
fn set_aside(database: &Path) -> Result<Option<PathBuf>, String> {
    if !database.exists() {
        for suffix in ["-wal", "-shm", "-journal"] {
            let _ = fs::remove_file(with_suffix(database, suffix));
        }
        return Ok(None);
    }
    let seconds = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_secs()).unwrap_or(0);
    let kept = with_suffix(database, &format!(".before-restore-{seconds}"));
    let rename = |from: &Path, to: &Path| {
        fs::rename(from, to).map_err(|e| format!("cannot move {} to {}: {e}", from.display(), to.display()))
    };
    rename(database, &kept)?;
    for suffix in ["-wal", "-journal"] {
        let file = with_suffix(database, suffix);
        if file.exists() {
            rename(&file, &with_suffix(&kept, suffix))?;
        }
    }
    match fs::remove_file(with_suffix(database, "-shm")) {
        Err(e) if e.kind() != io::ErrorKind::NotFound => {
            return Err(format!("cannot remove {}: {e}", with_suffix(database, "-shm").display()));
        }
        _ => {}
    }
    Ok(Some(kept))
}

/// The configured database file; an in-memory one cannot be backed up or restored.
fn database(instance: &Instance) -> Result<PathBuf, String> {
    let config = instance.config(&NetOverrides::default()).map_err(|e| e.to_string())?;
    if config.in_memory() {
        return Err(format!(
            "the database is \":memory:\" (see `database` in {}): it lives only inside the server process \
             and is gone when it stops, so a backup or restore is impossible; set `database` to a file \
             (e.g. \"./broodlink.db\") to keep one",
            instance.config_file.display()
        ));
    }
    // Without the `./` a relative `database` leaves when joined to the data directory.
    Ok(absolute(&config.database))
}

/// Whether `path` is the database file or one of its `-wal`/`-shm`/`-journal` files.
fn is_database_file(database: &Path, path: &Path) -> bool {
    let Ok(meta) = fs::metadata(path) else { return false };
    ["", "-wal", "-shm", "-journal"].iter().any(|suffix| {
        fs::metadata(with_suffix(database, suffix)).is_ok_and(|m| m.dev() == meta.dev() && m.ino() == meta.ino())
    })
}

fn with_suffix(path: &Path, suffix: &str) -> PathBuf {
    let mut name = path.as_os_str().to_owned();
    name.push(suffix);
    PathBuf::from(name)
}

/// Creates a new, empty file readable by its owner only.
fn create_private(path: &Path) -> io::Result<fs::File> {
    fs::OpenOptions::new().write(true).create_new(true).mode(0o600).open(path)
}

/// Makes a rename in `path`'s folder durable (best effort).
fn sync_dir(path: &Path) {
    if let Some(folder) = path.parent() {
        let _ = fs::File::open(folder).and_then(|dir| dir.sync_all());
    }
}

fn absolute(path: &Path) -> PathBuf {
    std::path::absolute(path).unwrap_or_else(|_| path.to_owned())
}

fn print_summary(summary: &DatabaseSummary) {
    println!("  messages:  {}", summary.messages);
    println!("  agents:    {}", summary.agents);
    println!("  rooms:     {} (lobby and deleted rooms included)", summary.rooms);
}

fn human_size(bytes: u64) -> String {
    const UNITS: [&str; 4] = ["B", "KiB", "MiB", "GiB"];
    let mut value = bytes as f64;
    let mut unit = 0;
    while value >= 1024.0 && unit < UNITS.len() - 1 {
        value /= 1024.0;
        unit += 1;
    }
    if unit == 0 {
        format!("{bytes} B")
    } else {
        format!("{value:.1} {}", UNITS[unit])
    }
}
