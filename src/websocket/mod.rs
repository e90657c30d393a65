//! The server's WebSocket (RFC 6455): the opening handshake over axum's HTTP/1.1
//! (here), the framing (`frame`), and the reader and writer halves of the TCP socket
//! it yields (`stream`).
//!
//! Our own rather than tungstenite's: its per-connection read and write buffers are
//! allocated up front and never shrink, which made them most of an idle connection's
//! memory; ours exist only while bytes are in flight.

mod frame;
mod stream;

use std::future::Future;

use axum::extract::FromRequestParts;
use axum::http::header::{self, HeaderMap, HeaderName, HeaderValue};
use axum::http::request::Parts;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use hyper::upgrade::OnUpgrade;
use hyper_util::rt::TokioIo;
use tokio::net::TcpStream;

pub use frame::{encoded_len, FrameError, Incoming};
pub use stream::{ReadError, Reader, Writer};

/// An open server-side WebSocket, split for a reading and a writing task.
pub struct WebSocket {
    pub reader: Reader,
    pub writer: Writer,
}

/// A request to open a WebSocket, checked and ready to be accepted.
pub struct Upgrade {
    accept: HeaderValue,
    on_upgrade: OnUpgrade,
}

/// Why a request is not a WebSocket opening handshake.
#[derive(Debug, thiserror::Error)]
pub enum NotAnUpgrade {
    #[error("`Connection: upgrade` is missing")]
    Connection,
    #[error("`Upgrade: websocket` is missing")]
    UpgradeHeader,
    #[error("`Sec-WebSocket-Version` must be 13")]
    Version,
    #[error("`Sec-WebSocket-Key` must be 16 bytes in base64")]
    Key,
    #[error("this connection cannot be upgraded")]
    NotUpgradable,
}

impl IntoResponse for NotAnUpgrade {
    fn into_response(self) -> Response {
        let text = format!(
            "BroodLink speaks JSON-RPC 2.0 over WebSocket: connect with a WebSocket client to this URL ({self}).\n"
        );
        // A malformed handshake is a bad request (RFC 6455 §4.2.1); anything else is
        // told which protocol to upgrade to (RFC 9110 §15.5.22, RFC 6455 §4.4).
        let status =
            if matches!(self, NotAnUpgrade::Key) { StatusCode::BAD_REQUEST } else { StatusCode::UPGRADE_REQUIRED };
        let mut response = (status, text).into_response();
        let headers = response.headers_mut();
        headers.insert(header::UPGRADE, HeaderValue::from_static("websocket"));
        headers.insert(header::SEC_WEBSOCKET_VERSION, HeaderValue::from_static("13"));
        response
    }
}

impl<S: Send + Sync> FromRequestParts<S> for Upgrade {
    type Rejection = NotAnUpgrade;

    async fn from_request_parts(parts: &mut Parts, _state: &S) -> Result<Self, Self::Rejection> {
        let headers = &parts.headers;
        if !has_token(headers, header::CONNECTION, "upgrade") {
            return Err(NotAnUpgrade::Connection);
        }
        if !has_token(headers, header::UPGRADE, "websocket") {
            return Err(NotAnUpgrade::UpgradeHeader);
        }
        if headers.get(header::SEC_WEBSOCKET_VERSION).map(HeaderValue::as_bytes) != Some(b"13") {
            return Err(NotAnUpgrade::Version);
        }
        let key =
            headers.get(header::SEC_WEBSOCKET_KEY).filter(|key| is_key(key.as_bytes())).ok_or(NotAnUpgrade::Key)?;
        let accept = HeaderValue::from_str(&tungstenite::handshake::derive_accept_key(key.as_bytes()))
            .map_err(|_| NotAnUpgrade::Key)?;
        let on_upgrade = parts.extensions.remove::<OnUpgrade>().ok_or(NotAnUpgrade::NotUpgradable)?;
        Ok(Upgrade { accept, on_upgrade })
    }
}

impl Upgrade {
    /// Answers `101 Switching Protocols` and, once the connection has switched, runs
    /// `serve` with the WebSocket on a task of its own. Messages longer than
    /// `max_message` bytes close the connection with 1009.
    pub fn accept<F, Fut>(self, max_message: usize, serve: F) -> Response
    where
        F: FnOnce(WebSocket) -> Fut + Send + 'static,
        Fut: Future<Output = ()> + Send + 'static,
    {
        let Upgrade { accept, on_upgrade } = self;
        tokio::spawn(async move {
            // Fails only if the client went away before the switch.
            let Ok(upgraded) = on_upgrade.await else { return };
            // axum serves plain TCP, so the upgraded connection is that TCP stream, and
            // the halves can be owned by two tasks without a lock between them.
            let parts = match upgraded.downcast::<TokioIo<TcpStream>>() {
                Ok(parts) => parts,
                Err(_) => {
                    tracing::error!("an upgraded connection is not a TCP stream; closing it");
                    return;
                }
            };
            let (read, write) = parts.io.into_inner().into_split();
            let reader = Reader::new(read, &parts.read_buf, max_message);
            // The early bytes are a slice of hyper's 8 KiB read buffer: holding them
            // for the life of the connection would hold all of it.
            drop(parts.read_buf);
            serve(WebSocket { reader, writer: Writer::new(write) }).await;
        });
        let mut response = StatusCode::SWITCHING_PROTOCOLS.into_response();
        let headers = response.headers_mut();
        headers.insert(header::CONNECTION, HeaderValue::from_static("upgrade"));
        headers.insert(header::UPGRADE, HeaderValue::from_static("websocket"));
        headers.insert(header::SEC_WEBSOCKET_ACCEPT, accept);
        response
    }
}

/// Whether a comma-separated header holds `token` (case-insensitively), as in
/// `Connection: keep-alive, Upgrade`.
fn has_token(headers: &HeaderMap, name: HeaderName, token: &str) -> bool {
    headers
        .get_all(name)
        .iter()
        .filter_map(|value| value.to_str().ok())
        .flat_map(|value| value.split(','))
        .any(|part| part.trim().eq_ignore_ascii_case(token))
}

/// Whether a `Sec-WebSocket-Key` is 16 bytes in base64: 22 base64 digits and `==`.
fn is_key(key: &[u8]) -> bool {
    let digit = |b: &u8| b.is_ascii_alphanumeric() || *b == b'+' || *b == b'/';
    key.len() == 24 && key[..22].iter().all(digit) && &key[22..] == b"=="
}
