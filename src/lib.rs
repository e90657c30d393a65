//! The BroodLink server as a library: `main.rs` is a thin wrapper around [`cli`], and
//! the tests start a [`server::Server`] in-process. See ARCHITECTURE.md for the map.

pub mod admin;
pub mod bench;
pub mod cli;
pub mod config;
pub mod datadir;
pub mod dispatch;
pub mod embedded_clients;
pub mod error;
pub mod hub;
pub mod instance;
pub mod keys;
pub mod limits;
pub mod outbox;
pub mod rpc;
pub mod server;
pub mod service;
pub mod session;
pub mod store;
pub mod tailscale;
pub mod transport;
pub mod websocket;
