//! Starting and stopping a server: open the data directory and database, bind, serve
//! until told to stop, then say goodbye to every connection and close the database.
//! Tests use this directly (on `127.0.0.1:0`); the CLI wraps it.

use std::future::Future;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use tokio::net::TcpListener;
use tokio::sync::mpsc;

use crate::config::Config;
use crate::datadir;
use crate::dispatch::Dispatcher;
use crate::rpc::Rpc;
use crate::service::Linkspace;
use crate::store::{Store, StoreError};
use crate::transport::{self, Transport};
use broodlink_protocol::BroodLinkApiServer;

/// How long shutdown waits for connections to flush their goodbyes.
const SHUTDOWN_GRACE: Duration = Duration::from_secs(5);

/// Why the server could not start. Each says what to do about it.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    #[error("cannot prepare the data directory {path}: {source} (check its permissions or pass --data-dir)")]
    DataDir { path: PathBuf, source: std::io::Error },
    #[error("cannot open the database {path}: {source}")]
    Database { path: PathBuf, source: StoreError },
    #[error(
        "tailscale.enabled is set, but binding to the Tailscale interface is not supported by this build yet; \
         set \"tailscale\": {{\"enabled\": false}} and \"host\" to your Tailscale address instead"
    )]
    TailscaleUnsupported,
    #[error("cannot listen on {addr}: {source} (is another server using that port? stop it or pass --port)")]
    Bind { addr: String, source: std::io::Error },
}

pub struct Server {
    linkspace: Arc<Linkspace>,
    listener: TcpListener,
    max_request_bytes: usize,
    /// The controller's API key, only on the run that created the controller.
    pub new_controller_key: Option<String>,
}

impl Server {
    /// Opens the database named by `config` (creating the controller and lobby on first
    /// run) and binds the listener. `data_dir` is where `docs/` lives; `None` (tests
    /// with `":memory:"`) uses the built-in docs.
    pub async fn open(config: Config, data_dir: Option<&Path>) -> Result<Server, StartError> {
        // Never fall back to a wider bind than the operator asked for.
        if config.tailscale.enabled {
            return Err(StartError::TailscaleUnsupported);
        }
        let database = config.database.clone();
        let db_error = |source| StartError::Database { path: database.clone(), source };
        if let Some(parent) = database.parent().filter(|p| !p.as_os_str().is_empty()) {
            if database.as_os_str() != ":memory:" {
                std::fs::create_dir_all(parent)
                    .map_err(|source| StartError::DataDir { path: parent.to_owned(), source })?;
            }
        }
        let store = Store::open(&database).await.map_err(db_error)?;
        if database.as_os_str() != ":memory:" {
            datadir::restrict_database(&database)
                .map_err(|source| StartError::DataDir { path: database.clone(), source })?;
        }
        let addr = format!("{}:{}", config.host, config.port);
        let listener = TcpListener::bind(&addr).await.map_err(|source| StartError::Bind { addr, source })?;
        // A message may be 4 bytes per character, JSON-escaped up to 6: leave room for
        // that plus the envelope.
        let max_request_bytes = (config.max_message_length as usize).saturating_mul(6).max(1 << 20) + 64 * 1024;
        let docs_dir = data_dir.map(|d| d.join("docs"));
        let opened = Linkspace::open(config, store, docs_dir).await.map_err(db_error)?;
        Ok(Server {
            linkspace: opened.linkspace,
            listener,
            max_request_bytes,
            new_controller_key: opened.new_controller_key,
        })
    }

    pub fn local_addr(&self) -> SocketAddr {
        // A bound listener always has an address.
        self.listener.local_addr().unwrap_or_else(|_| SocketAddr::from(([0, 0, 0, 0], 0)))
    }

    /// Serves until `shutdown` resolves; then tells every connection
    /// `disconnected {reason: "server shutting down"}`, waits (bounded) for them to
    /// close, and closes the database.
    pub async fn run(self, shutdown: impl Future<Output = ()> + Send + 'static) -> std::io::Result<()> {
        let (alive_tx, mut alive_rx) = mpsc::channel::<()>(1);
        let dispatcher = Dispatcher::new(Rpc::new(self.linkspace.clone()).into_rpc(), self.max_request_bytes);
        let transport =
            Arc::new(Transport::new(self.linkspace.clone(), dispatcher, self.max_request_bytes * 2, alive_tx));
        let app = transport::router(transport.clone()).into_make_service_with_connect_info::<SocketAddr>();
        axum::serve(self.listener, app).with_graceful_shutdown(shutdown).await?;

        tracing::info!("shutting down");
        self.linkspace.close_all("server shutting down");
        drop(transport);
        let _ = tokio::time::timeout(SHUTDOWN_GRACE, alive_rx.recv()).await;
        self.linkspace.close().await;
        Ok(())
    }
}
