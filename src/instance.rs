//! One BroodLink instance on disk: its data directory, config file, pid file, log,
//! admin socket and client folder, and how its configuration is resolved
//! (flags > environment > file > defaults).

use std::io;
use std::path::{Path, PathBuf};

use crate::config::{Config, ConfigError};
use crate::datadir;

pub struct Instance {
    pub data_dir: PathBuf,
    pub config_file: PathBuf,
    /// Whether `--config` named the file (then it must exist).
    explicit_config: bool,
}

/// Host and port given on the command line or in the environment.
#[derive(Debug, Clone, Default)]
pub struct NetOverrides {
    pub host: Option<String>,
    pub port: Option<u16>,
}

impl Instance {
    pub fn resolve(data_dir: Option<PathBuf>, config: Option<PathBuf>) -> Instance {
        let data_dir = absolute(data_dir.unwrap_or_else(datadir::default_data_dir));
        let explicit_config = config.is_some();
        let config_file = config.map(absolute).unwrap_or_else(|| data_dir.join("broodlink.json"));
        Instance { data_dir, config_file, explicit_config }
    }

    /// Creates the data directory and its default files where missing.
    pub fn prepare(&self) -> io::Result<()> {
        datadir::prepare(&self.data_dir, !self.explicit_config)
    }

    /// The configuration: the file (or defaults when the default file is absent), with
    /// the overrides applied; a relative `database` resolves against the file's folder.
    pub fn config(&self, net: &NetOverrides) -> Result<Config, ConfigError> {
        let mut config = Config::load(&self.config_file, !self.explicit_config)?;
        if !config.database.is_absolute() && !config.in_memory() {
            config.database = self.data_dir.join(&config.database);
        }
        if let Some(host) = &net.host {
            config.host.clone_from(host);
        }
        if let Some(port) = net.port {
            config.port = port;
        }
        Ok(config)
    }

    pub fn pid_file(&self) -> PathBuf {
        self.data_dir.join("broodlink.pid")
    }

    pub fn log_file(&self) -> PathBuf {
        self.data_dir.join("broodlink.log")
    }

    pub fn admin_socket(&self) -> PathBuf {
        self.data_dir.join("broodlink.sock")
    }

    pub fn clients_dir(&self) -> PathBuf {
        self.data_dir.join("clients")
    }

    /// The pid in the pid file, if that process is alive. A stale pid file (its
    /// process is gone) is removed.
    pub fn running_pid(&self) -> Option<i32> {
        let pid: i32 = std::fs::read_to_string(self.pid_file()).ok()?.trim().parse().ok()?;
        if process_alive(pid) {
            Some(pid)
        } else {
            let _ = std::fs::remove_file(self.pid_file());
            None
        }
    }
}

pub fn process_alive(pid: i32) -> bool {
    nix::sys::signal::kill(nix::unistd::Pid::from_raw(pid), None).is_ok()
}

fn absolute(path: PathBuf) -> PathBuf {
    std::path::absolute(&path).unwrap_or(path)
}

/// The serving process's pid file: written once listening, removed on exit.
pub struct PidFile(PathBuf);

impl PidFile {
    pub fn create(path: &Path) -> io::Result<PidFile> {
        use std::io::Write;
        use std::os::unix::fs::OpenOptionsExt;
        let mut file = std::fs::OpenOptions::new().write(true).create(true).truncate(true).mode(0o600).open(path)?;
        writeln!(file, "{}", std::process::id())?;
        Ok(PidFile(path.to_owned()))
    }
}

impl Drop for PidFile {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.0);
    }
}
