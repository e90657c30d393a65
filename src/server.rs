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

use crate::admin::{self, AdminServer};
use crate::config::Config;
use crate::datadir;
use crate::dispatch::Dispatcher;
use crate::rpc::Rpc;
use crate::service::Linkspace;
use crate::store::{Store, StoreError};
use crate::tailscale::{self, TailscaleError};
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
    #[error(transparent)]
    Tailscale(#[from] TailscaleError),
    #[error("a BroodLink server is already running for the data directory {0} (see `broodlink status`)")]
    AlreadyRunning(PathBuf),
    #[error("cannot listen on {addr}: {source} (is another server using that port? stop it or pass --port)")]
    Bind { addr: String, source: std::io::Error },
}

/// The address to bind: the configured host, or with Tailscale its interface's
/// address or nothing (never wider).
pub fn bind_host(config: &Config) -> Result<String, StartError> {
    if config.tailscale.enabled {
        Ok(tailscale::select(&tailscale::interfaces()?, &config.tailscale.interface_name)?.to_string())
    } else {
        Ok(config.host.clone())
    }
}

fn bind_addr(host: &str, port: u16) -> String {
    if host.contains(':') {
        format!("[{host}]:{port}")
    } else {
        format!("{host}:{port}")
    }
}

/// Fails fast, before anything is created, if the configured address cannot be bound
/// (port in use, no such address, no Tailscale interface).
pub fn check_bindable(config: &Config) -> Result<(), StartError> {
    let addr = bind_addr(&bind_host(config)?, config.port);
    std::net::TcpListener::bind(&addr).map(drop).map_err(|source| StartError::Bind { addr, source })
}

/// First-run setup without serving: creates the database, the controller and the
/// lobby if missing. Returns the controller's key when this call created it.
pub async fn bootstrap(config: Config, data_dir: &Path) -> Result<Option<String>, StartError> {
    let database = config.database.clone();
    let db_error = |source| StartError::Database { path: database.clone(), source };
    let store = Store::open(&database, config.synchronous).await.map_err(db_error)?;
    let opened = Linkspace::open(config, store, Some(data_dir.join("docs")), None).await.map_err(db_error)?;
    opened.linkspace.close().await;
    datadir::restrict_database(&database).map_err(|source| StartError::DataDir { path: database.clone(), source })?;
    Ok(opened.new_controller_key)
}

pub struct Server {
    linkspace: Arc<Linkspace>,
    listener: TcpListener,
    /// The local admin socket, when the server has a data directory.
    admin: Option<AdminServer>,
    max_request_bytes: usize,
    /// The controller's API key, only on the run that created the controller.
    pub new_controller_key: Option<String>,
}

impl Server {
    /// Opens the database named by `config` (creating the controller and lobby on first
    /// run, the controller with `controller_key` if given) and binds the listener.
    /// `data_dir` is where `docs/` lives; `None` (tests with `":memory:"`) uses the
    /// built-in docs.
    pub async fn open(
        config: Config,
        data_dir: Option<&Path>,
        controller_key: Option<String>,
    ) -> Result<Server, StartError> {
        let host = bind_host(&config)?;
        let admin_path = data_dir.map(|dir| dir.join("broodlink.sock"));
        if let Some(path) = &admin_path {
            if admin::request(path, admin::Command::Status).is_ok() {
                return Err(StartError::AlreadyRunning(data_dir.unwrap_or(Path::new(".")).to_owned()));
            }
        }
        let database = config.database.clone();
        let db_error = |source| StartError::Database { path: database.clone(), source };
        if let Some(parent) = database.parent().filter(|p| !p.as_os_str().is_empty()) {
            if !config.in_memory() {
                std::fs::create_dir_all(parent)
                    .map_err(|source| StartError::DataDir { path: parent.to_owned(), source })?;
            }
        }
        let store = Store::open(&database, config.synchronous).await.map_err(db_error)?;
        if !config.in_memory() {
            datadir::restrict_database(&database)
                .map_err(|source| StartError::DataDir { path: database.clone(), source })?;
        }
        let addr = bind_addr(&host, config.port);
        let listener = TcpListener::bind(&addr).await.map_err(|source| StartError::Bind { addr, source })?;
        let max_request_bytes = max_request_bytes(&config);
        let admin = admin_path
            .map(|path| AdminServer::bind(&path).map_err(|source| StartError::DataDir { path, source }))
            .transpose()?;
        let docs_dir = data_dir.map(|d| d.join("docs"));
        let opened = Linkspace::open(config, store, docs_dir, controller_key).await.map_err(db_error)?;
        Ok(Server {
            linkspace: opened.linkspace,
            listener,
            admin,
            max_request_bytes,
            new_controller_key: opened.new_controller_key,
        })
    }

    pub fn local_addr(&self) -> SocketAddr {
        // A bound listener always has an address.
        self.listener.local_addr().unwrap_or_else(|_| SocketAddr::from(([0, 0, 0, 0], 0)))
    }

    /// The URL agents connect to (loopback when bound to every interface).
    pub fn url(&self) -> String {
        Self::url_of(&self.listener)
    }

    /// Serves until `shutdown` resolves; then tells every connection
    /// `disconnected {reason: "server shutting down"}`, waits (bounded) for them to
    /// close, and closes the database.
    pub async fn run(self, shutdown: impl Future<Output = ()> + Send + 'static) -> std::io::Result<()> {
        let admin =
            self.admin.map(|admin| tokio::spawn(admin.run(self.linkspace.clone(), Self::url_of(&self.listener))));
        let (alive_tx, mut alive_rx) = mpsc::channel::<()>(1);
        let dispatcher = Dispatcher::new(
            Rpc::new(self.linkspace.clone()).into_rpc(),
            self.max_request_bytes,
            &self.linkspace.config.limits,
        );
        let transport =
            Arc::new(Transport::new(self.linkspace.clone(), dispatcher, self.max_request_bytes * 2, alive_tx));
        transport::serve(self.listener, transport::router(transport.clone()), shutdown).await;

        tracing::info!("shutting down");
        self.linkspace.close_all(crate::transport::SHUTDOWN_REASON).await;
        transport.shutdown.send_replace(true);
        drop(transport);
        let _ = tokio::time::timeout(SHUTDOWN_GRACE, alive_rx.recv()).await;
        self.linkspace.close().await;
        if let Some(admin) = admin {
            admin.abort();
            let _ = admin.await;
        }
        Ok(())
    }

    /// The URL agents connect to (loopback when bound to every interface).
    fn url_of(listener: &TcpListener) -> String {
        match listener.local_addr() {
            Ok(addr) if addr.ip().is_unspecified() => format!("ws://127.0.0.1:{}", addr.port()),
            Ok(addr) => format!("ws://{addr}"),
            Err(_) => String::new(),
        }
    }
}

/// The largest request frame the dispatcher parses. A message may be 4 bytes per
/// character, JSON-escaped up to 6: room for that plus the envelope.
pub fn max_request_bytes(config: &Config) -> usize {
    (config.max_message_length as usize).saturating_mul(6).max(1 << 20) + 64 * 1024
}
