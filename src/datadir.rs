//! The data directory: created on first run with the default config and the editable
//! docs, private to the user who runs the server.

use std::fs;
use std::io;
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};

use crate::config::DEFAULT_CONFIG_FILE;
use crate::service::docs_defaults;

/// `~/.broodlink`, the data directory when neither `--data-dir` nor
/// `BROODLINK_DATA_DIR` names one.
pub fn default_data_dir() -> PathBuf {
    std::env::var_os("HOME").map(PathBuf::from).unwrap_or_else(|| PathBuf::from(".")).join(".broodlink")
}

/// Creates what is missing: the directory (0700), `broodlink.json` (when
/// `write_config`), and `docs/CONSTITUTION.md` and `docs/CONTROLLER.md`. Existing
/// files are never overwritten.
pub fn prepare(data_dir: &Path, write_config: bool) -> io::Result<()> {
    create_private_dir(data_dir)?;
    create_private_dir(&data_dir.join("docs"))?;
    if write_config {
        write_new(&data_dir.join("broodlink.json"), DEFAULT_CONFIG_FILE)?;
    }
    let (constitution, controller) = docs_defaults();
    write_new(&data_dir.join("docs/CONSTITUTION.md"), constitution)?;
    write_new(&data_dir.join("docs/CONTROLLER.md"), controller)?;
    Ok(())
}

/// Makes the database files readable by their owner only.
pub fn restrict_database(path: &Path) -> io::Result<()> {
    for suffix in ["", "-wal", "-shm"] {
        let mut file = path.as_os_str().to_owned();
        file.push(suffix);
        match fs::set_permissions(&file, fs::Permissions::from_mode(0o600)) {
            Err(e) if e.kind() != io::ErrorKind::NotFound => return Err(e),
            _ => {}
        }
    }
    Ok(())
}

fn create_private_dir(dir: &Path) -> io::Result<()> {
    if !dir.exists() {
        fs::DirBuilder::new().recursive(true).mode(0o700).create(dir)?;
    }
    // Also for a directory that already existed: it holds keys' hashes and the log.
    fs::set_permissions(dir, fs::Permissions::from_mode(0o700))
}

fn write_new(path: &Path, contents: &str) -> io::Result<()> {
    use io::Write;
    match fs::OpenOptions::new().write(true).create_new(true).mode(0o600).open(path) {
        Ok(mut file) => file.write_all(contents.as_bytes()),
        Err(e) if e.kind() == io::ErrorKind::AlreadyExists => Ok(()),
        Err(e) => Err(e),
    }
}
