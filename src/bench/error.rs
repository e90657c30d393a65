//! What can stop a benchmark run (as opposed to a failed correctness check, which is
//! a result: see [`super::stats::Checks`]).

use std::time::Duration;

/// An error that ends a scenario before it has figures to report.
#[derive(Debug, thiserror::Error)]
pub enum BenchError {
    #[error("no controller key: pass --controller-key or set BROODLINK_CONTROLLER_KEY")]
    NoControllerKey,
    #[error("{0}")]
    InvalidArgs(String),
    #[error("cannot start the async runtime: {0}")]
    Runtime(#[source] std::io::Error),
    #[error("cannot connect to {url}: {source}")]
    Connect {
        url: String,
        #[source]
        source: Box<tungstenite::Error>,
    },
    #[error("connecting to {url} timed out after {timeout:?}")]
    ConnectTimeout { url: String, timeout: Duration },
    #[error("cannot send `{method}`: {source}")]
    Write {
        method: &'static str,
        #[source]
        source: Box<tungstenite::Error>,
    },
    #[error("cannot encode `{method}`: {source}")]
    Encode {
        method: &'static str,
        #[source]
        source: serde_json::Error,
    },
    #[error("the server closed the connection ({reason}) before answering `{method}`")]
    Closed { method: &'static str, reason: String },
    #[error("`{method}` got no answer within {timeout:?}")]
    Timeout { method: &'static str, timeout: Duration },
    #[error("`{method}` failed: error {code}: {message}{}", limit_hint(*code))]
    Rpc { method: &'static str, code: i64, message: String },
    #[error("`{method}` returned an unexpected result: {source}")]
    Decode {
        method: &'static str,
        #[source]
        source: serde_json::Error,
    },
    #[error("cannot read the server's memory from {path}: {source}")]
    Proc {
        path: String,
        #[source]
        source: std::io::Error,
    },
    #[error("interrupted")]
    Interrupted,
}

/// What to change when the server's own protections throttle the load.
fn limit_hint(code: i64) -> &'static str {
    match code {
        4080 => " (the server's rate limits throttle this load: for a benchmark, set limits.callsPerSecond and limits.sendsPerSecond to 0 in its broodlink.json)",
        4081 => " (raise limits.maxConnectionsPerAgent in the server's broodlink.json, or spread the connections over more --agents)",
        _ => "",
    }
}

impl BenchError {
    /// The JSON-RPC error code, when the server answered with an error.
    pub fn rpc_code(&self) -> Option<i64> {
        match self {
            BenchError::Rpc { code, .. } => Some(*code),
            _ => None,
        }
    }

    /// Whether the connection is gone, so further calls on it are pointless.
    pub fn is_fatal(&self) -> bool {
        matches!(self, BenchError::Closed { .. } | BenchError::Write { .. })
    }
}
