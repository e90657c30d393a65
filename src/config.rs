//! `broodlink.json`: every field optional, `//` and `/* */` comments allowed, unknown
//! keys and wrong types rejected with the key's path and the file's name.

use std::path::{Path, PathBuf};

use serde::Deserialize;

/// The server's configuration (the spec's "Configuration" section).
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(default, deny_unknown_fields, rename_all = "camelCase")]
pub struct Config {
    /// Bind address.
    pub host: String,
    /// WebSocket port (0 picks a free one).
    pub port: u16,
    /// SQLite file; relative paths resolve against the config file's folder (or the
    /// data directory). `":memory:"` keeps everything in memory.
    pub database: PathBuf,
    pub tailscale: TailscaleConfig,
    pub lobby: LobbyConfig,
    /// Maximum number of live rooms, excluding the lobby.
    pub max_rooms: u32,
    /// Maximum characters (Unicode scalar values) per message.
    pub max_message_length: u32,
    /// Maximum messages returned by one `room.history` call.
    pub max_history_per_room: u32,
    /// `"full"` (default: an acknowledged message survives a power loss) or `"normal"`
    /// (it survives a crash of the server; faster).
    pub synchronous: crate::store::Durability,
    pub limits: LimitsConfig,
}

/// Protections against clients that misbehave (SECURITY.md lists them with their
/// defaults). Rates of 0 mean unlimited.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(default, deny_unknown_fields, rename_all = "camelCase")]
pub struct LimitsConfig {
    /// Seconds a new connection has to call `auth` before it is closed.
    pub auth_timeout_seconds: u32,
    /// Failed `auth` calls allowed per remote address per minute (and at once); beyond
    /// it `auth` answers 4080 without looking at the key.
    pub auth_failures_per_minute: u32,
    /// Open WebSocket connections, authenticated or not; beyond it new ones are closed
    /// with status 1013 right after the upgrade.
    pub max_connections: u32,
    /// Connections one agent may hold; one more `auth` answers 4081.
    pub max_connections_per_agent: u32,
    /// Calls per second per agent, every method counted (token bucket refill rate)...
    pub calls_per_second: f64,
    /// ...and how many it may make at once.
    pub call_burst: u32,
    /// `message.send` and `message.dm` per second per agent...
    pub sends_per_second: f64,
    /// ...and at once.
    pub send_burst: u32,
    /// Frames queued for one connection before it counts as a slow consumer and is
    /// disconnected (`disconnected {reason: "slow consumer"}`).
    pub outbound_queue_frames: u32,
    /// Seconds between WebSocket pings to an otherwise quiet connection; 0 disables
    /// keepalive.
    pub ping_interval_seconds: u32,
    /// Seconds a connection may stay silent after a ping before it is taken for dead
    /// and closed (presence then goes offline).
    pub pong_timeout_seconds: u32,
}

impl Default for LimitsConfig {
    fn default() -> Self {
        LimitsConfig {
            auth_timeout_seconds: 10,
            auth_failures_per_minute: 10,
            max_connections: 20_000,
            max_connections_per_agent: 32,
            calls_per_second: 200.0,
            call_burst: 400,
            sends_per_second: 100.0,
            send_burst: 200,
            outbound_queue_frames: 1024,
            ping_interval_seconds: 30,
            pong_timeout_seconds: 30,
        }
    }
}

impl LimitsConfig {
    /// No rate limits at all (benchmarks and load tests).
    pub fn unlimited_rates(&mut self) {
        self.auth_failures_per_minute = 0;
        self.calls_per_second = 0.0;
        self.sends_per_second = 0.0;
    }
}

#[derive(Debug, Clone, PartialEq, Default, Deserialize)]
#[serde(default, deny_unknown_fields, rename_all = "camelCase")]
pub struct TailscaleConfig {
    /// Bind only to the Tailscale interface.
    pub enabled: bool,
    /// Interface to bind to; empty auto-detects.
    pub interface_name: String,
}

#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(default, deny_unknown_fields, rename_all = "camelCase")]
pub struct LobbyConfig {
    /// The lobby's display name.
    pub name: String,
    /// How many room messages the lobby keeps (DMs are not counted).
    pub history_limit: u32,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            host: "0.0.0.0".into(),
            port: 18800,
            database: PathBuf::from("./broodlink.db"),
            tailscale: TailscaleConfig::default(),
            lobby: LobbyConfig::default(),
            max_rooms: 100,
            max_message_length: 8192,
            max_history_per_room: 1000,
            synchronous: crate::store::Durability::Full,
            limits: LimitsConfig::default(),
        }
    }
}

impl Default for LobbyConfig {
    fn default() -> Self {
        LobbyConfig { name: "Lobby".into(), history_limit: 500 }
    }
}

/// Why a configuration could not be loaded. Each names the file and says what to fix.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("cannot read config file {path}: {source}")]
    Read { path: PathBuf, source: std::io::Error },
    #[error("invalid config file {path}: {problem} (fix or remove that entry; every key is optional)")]
    Invalid { path: PathBuf, problem: String },
}

impl Config {
    /// Reads `path`, or returns the defaults if `path` does not exist and `optional`.
    pub fn load(path: &Path, optional: bool) -> Result<Config, ConfigError> {
        let text = match std::fs::read_to_string(path) {
            Ok(text) => text,
            Err(e) if optional && e.kind() == std::io::ErrorKind::NotFound => return Ok(Config::default()),
            Err(source) => return Err(ConfigError::Read { path: path.to_owned(), source }),
        };
        let mut config =
            Config::parse(&text).map_err(|problem| ConfigError::Invalid { path: path.to_owned(), problem })?;
        config.database = resolve(path.parent().unwrap_or(Path::new(".")), &config.database);
        Ok(config)
    }

    /// Parses the text of a config file. The error names the offending key.
    pub fn parse(text: &str) -> Result<Config, String> {
        let stripped = strip_comments(text);
        let de = &mut serde_json::Deserializer::from_str(&stripped);
        let config: Config = serde_path_to_error::deserialize(de).map_err(|e| {
            let key = e.path().to_string();
            let inner = e.into_inner();
            // A syntax error has no key, only a position.
            if key == "." || inner.is_syntax() || inner.is_eof() {
                inner.to_string()
            } else {
                format!("key `{key}`: {inner}")
            }
        })?;
        config.validate()?;
        Ok(config)
    }

    fn validate(&self) -> Result<(), String> {
        let positive = [
            ("maxMessageLength", self.max_message_length),
            ("maxHistoryPerRoom", self.max_history_per_room),
            ("lobby.historyLimit", self.lobby.history_limit),
            ("limits.authTimeoutSeconds", self.limits.auth_timeout_seconds),
            ("limits.maxConnections", self.limits.max_connections),
            ("limits.maxConnectionsPerAgent", self.limits.max_connections_per_agent),
            ("limits.callBurst", self.limits.call_burst),
            ("limits.sendBurst", self.limits.send_burst),
            ("limits.outboundQueueFrames", self.limits.outbound_queue_frames),
            ("limits.pongTimeoutSeconds", self.limits.pong_timeout_seconds),
        ];
        for (key, value) in positive {
            if value == 0 {
                return Err(format!("key `{key}`: must be at least 1"));
            }
        }
        let rates = [
            ("limits.callsPerSecond", self.limits.calls_per_second),
            ("limits.sendsPerSecond", self.limits.sends_per_second),
        ];
        for (key, value) in rates {
            if !(value >= 0.0 && value.is_finite()) {
                return Err(format!("key `{key}`: must be a number of at least 0 (0 means unlimited)"));
            }
        }
        if self.lobby.name.trim().is_empty() {
            return Err("key `lobby.name`: must not be empty".into());
        }
        Ok(())
    }
}

/// The `database` value that keeps everything in memory.
pub const IN_MEMORY: &str = ":memory:";

impl Config {
    /// Whether the database lives only in the memory of the process that opens it.
    pub fn in_memory(&self) -> bool {
        self.database.as_os_str() == IN_MEMORY
    }
}

/// Resolves a path from the config against the folder it is relative to.
pub fn resolve(base: &Path, path: &Path) -> PathBuf {
    if path.is_absolute() || path.as_os_str() == IN_MEMORY {
        path.to_owned()
    } else {
        base.join(path)
    }
}

/// Blanks out `//` and `/* */` comments outside strings, keeping every newline so
/// parse errors still point at the right line.
fn strip_comments(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut chars = text.chars().peekable();
    let mut in_string = false;
    while let Some(c) = chars.next() {
        if in_string {
            out.push(c);
            match c {
                '\\' => {
                    if let Some(escaped) = chars.next() {
                        out.push(escaped);
                    }
                }
                '"' => in_string = false,
                _ => {}
            }
            continue;
        }
        match (c, chars.peek()) {
            ('"', _) => {
                in_string = true;
                out.push(c);
            }
            ('/', Some('/')) => {
                for c in chars.by_ref() {
                    if c == '\n' {
                        out.push('\n');
                        break;
                    }
                }
            }
            ('/', Some('*')) => {
                chars.next();
                let mut prev = ' ';
                for c in chars.by_ref() {
                    if c == '\n' {
                        out.push('\n');
                    }
                    if prev == '*' && c == '/' {
                        break;
                    }
                    prev = c;
                }
                out.push(' ');
            }
            _ => out.push(c),
        }
    }
    out
}

/// The commented default written to a new data directory.
pub const DEFAULT_CONFIG_FILE: &str = r#"{
  // BroodLink configuration. Every field is optional; the values shown are the defaults.
  // Command-line flags (--host, --port) override this file.

  // Network
  "host": "0.0.0.0",      // Bind address (use "127.0.0.1" for local only)
  "port": 18800,          // WebSocket port

  // Database (relative paths resolve against this file's folder)
  "database": "./broodlink.db",

  // Tailscale (optional)
  "tailscale": {
    "enabled": false,      // Bind exclusively to the Tailscale interface
    "interfaceName": ""    // Empty auto-detects; or e.g. "tailscale0", "utun4"
  },

  // Lobby settings
  "lobby": {
    "name": "Lobby",       // Display name of the lobby room
    "historyLimit": 500    // Room messages kept in the lobby (DMs are kept)
  },

  // Limits
  "maxRooms": 100,            // Maximum number of rooms (excluding the lobby)
  "maxMessageLength": 8192,   // Maximum characters per message
  "maxHistoryPerRoom": 1000,  // Maximum messages returned per history request

  // Durability: "full" fsyncs every commit before acknowledging it (an acknowledged
  // message survives a power loss); "normal" survives a crash of the server process
  // but may lose the last commits on a power loss, and is faster.
  "synchronous": "full",

  // Protections against misbehaving clients
  // (SECURITY.md explains each; rates of 0 mean unlimited)
  "limits": {
    "authTimeoutSeconds": 10,       // A connection that has not called auth by then is closed
    "authFailuresPerMinute": 10,    // Failed auth calls per remote address, then 4080
    "maxConnections": 20000,        // Open connections in all (raise `ulimit -n` to match)
    "maxConnectionsPerAgent": 32,   // Connections one agent may hold, then auth answers 4081
    "callsPerSecond": 200,          // Calls per agent per second (any method), then 4080...
    "callBurst": 400,               // ...after a burst of this many
    "sendsPerSecond": 100,          // message.send + message.dm per agent per second...
    "sendBurst": 200,               // ...after a burst of this many
    "outboundQueueFrames": 1024,    // Frames queued for a client that does not read, then it is cut off
    "pingIntervalSeconds": 30,      // WebSocket ping to quiet connections (0: never)...
    "pongTimeoutSeconds": 30        // ...and how long a silent one lives after it
  }
}
"#;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn default_file_parses_to_the_defaults() {
        assert_eq!(Config::parse(DEFAULT_CONFIG_FILE).unwrap(), Config::default());
    }

    #[test]
    fn comments_inside_strings_are_kept() {
        let config = Config::parse(r#"{"lobby": {"name": "a // b /* c */"}} // trailing"#).unwrap();
        assert_eq!(config.lobby.name, "a // b /* c */");
    }

    #[test]
    fn unknown_key_is_named() {
        let err = Config::parse(r#"{"lobby": {"nmae": "x"}}"#).unwrap_err();
        assert!(err.contains("lobby.nmae") || err.contains("nmae"), "{err}");
    }

    #[test]
    fn wrong_type_names_the_key() {
        let err = Config::parse(r#"{"port": "eighty"}"#).unwrap_err();
        assert!(err.contains("key `port`"), "{err}");
    }

    #[test]
    fn synchronous_is_full_or_normal() {
        assert_eq!(
            Config::parse(r#"{"synchronous": "normal"}"#).unwrap().synchronous,
            crate::store::Durability::Normal
        );
        let err = Config::parse(r#"{"synchronous": "off"}"#).unwrap_err();
        assert!(err.contains("key `synchronous`"), "{err}");
    }

    #[test]
    fn zero_limit_is_rejected() {
        let err = Config::parse(r#"{"maxMessageLength": 0}"#).unwrap_err();
        assert!(err.contains("maxMessageLength"), "{err}");
    }
}
