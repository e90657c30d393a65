#![allow(dead_code)]

//! Test harness: a real server on a real socket (`127.0.0.1:0`, SQLite file in a temp
//! dir), and a small raw WebSocket JSON-RPC client that buffers events so tests can
//! assert both what arrives and what must not.

use std::collections::VecDeque;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use broodlink::config::Config;
use broodlink::server::Server;
use futures_util::{SinkExt, StreamExt};
use serde_json::{json, Value};
use tokio::net::TcpStream;
use tokio::sync::oneshot;
use tokio::task::JoinHandle;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::{MaybeTlsStream, WebSocketStream};

pub const TIMEOUT: Duration = Duration::from_secs(5);

pub struct TestServer {
    pub addr: SocketAddr,
    pub controller_key: String,
    pub data_dir: PathBuf,
    pub config: Config,
    _dir: Arc<tempfile::TempDir>,
    shutdown: Option<oneshot::Sender<()>>,
    handle: Option<JoinHandle<()>>,
}

impl TestServer {
    pub async fn start() -> TestServer {
        Self::start_with(|_| {}).await
    }

    /// Starts a server on a fresh data dir, with `edit` applied to the config.
    pub async fn start_with(edit: impl FnOnce(&mut Config)) -> TestServer {
        let dir = Arc::new(tempfile::tempdir().expect("temp dir"));
        let data_dir = dir.path().to_owned();
        let mut config = Config { host: "127.0.0.1".into(), port: 0, ..Config::default() };
        config.database = data_dir.join("broodlink.db");
        edit(&mut config);
        broodlink::datadir::prepare(&data_dir, false).expect("prepare data dir");
        let (server, key) = Self::open(&config, &data_dir).await;
        let key = key.expect("first run must create a controller key");
        Self::run(server, config, data_dir, dir, key)
    }

    async fn open(config: &Config, data_dir: &std::path::Path) -> (Server, Option<String>) {
        let server = Server::open(config.clone(), Some(data_dir), None).await.expect("server starts");
        let key = server.new_controller_key.clone();
        (server, key)
    }

    fn run(server: Server, config: Config, data_dir: PathBuf, dir: Arc<tempfile::TempDir>, key: String) -> TestServer {
        let addr = server.local_addr();
        let (tx, rx) = oneshot::channel::<()>();
        let handle = tokio::spawn(async move {
            server
                .run(async {
                    let _ = rx.await;
                })
                .await
                .expect("server runs");
        });
        TestServer { addr, controller_key: key, data_dir, config, _dir: dir, shutdown: Some(tx), handle: Some(handle) }
    }

    /// Stops the server and waits until it has closed the database.
    pub async fn stop(&mut self) {
        if let Some(tx) = self.shutdown.take() {
            let _ = tx.send(());
        }
        if let Some(handle) = self.handle.take() {
            tokio::time::timeout(Duration::from_secs(15), handle)
                .await
                .expect("server stops in time")
                .expect("server task");
        }
    }

    /// Stops the server and starts a new one on the same data dir (on a new port).
    /// Asserts that no new controller key is issued.
    pub async fn restart(mut self) -> TestServer {
        self.stop().await;
        let (server, key) = Self::open(&self.config, &self.data_dir).await;
        assert!(key.is_none(), "a restart must not create a second controller key");
        let dir = self._dir.clone();
        Self::run(server, self.config.clone(), self.data_dir.clone(), dir, self.controller_key.clone())
    }

    pub fn url(&self) -> String {
        format!("ws://{}", self.addr)
    }

    /// A connected, authenticated controller client.
    pub async fn controller(&self) -> Client {
        let mut client = Client::connect(&self.url()).await;
        client.auth(&self.controller_key).await;
        client
    }

    /// Invites a participant through `controller` and connects it.
    pub async fn participant(&self, controller: &mut Client, name: &str) -> Agent {
        let invited = controller.ok("agent.invite", json!({ "displayName": name })).await;
        let key = invited["apiKey"].as_str().expect("apiKey").to_owned();
        let id = invited["agentId"].as_str().expect("agentId").to_owned();
        let mut client = Client::connect(&self.url()).await;
        client.auth(&key).await;
        Agent { id, key, client }
    }
}

impl Drop for TestServer {
    fn drop(&mut self) {
        if let Some(tx) = self.shutdown.take() {
            let _ = tx.send(());
        }
    }
}

/// A participant: its id, its key and a connected client.
pub struct Agent {
    pub id: String,
    pub key: String,
    pub client: Client,
}

/// A JSON-RPC error as received.
#[derive(Debug, Clone)]
pub struct RpcError {
    pub code: i64,
    pub message: String,
    pub data: Value,
}

type Socket = WebSocketStream<MaybeTlsStream<TcpStream>>;

pub struct Client {
    socket: Socket,
    next_id: u64,
    /// Events read while waiting for something else, oldest first.
    events: VecDeque<Value>,
    /// Set once the server closed the connection.
    pub closed: bool,
    pub auth_result: Value,
    /// The close frame's status code and reason, if the server sent one.
    pub close_frame: Option<(u16, String)>,
}

impl Client {
    pub async fn connect(url: &str) -> Client {
        let (socket, _) = tokio_tungstenite::connect_async(url).await.expect("websocket connects");
        Client::from_socket(socket)
    }

    fn from_socket(socket: Socket) -> Client {
        Client {
            socket,
            next_id: 0,
            events: VecDeque::new(),
            closed: false,
            auth_result: Value::Null,
            close_frame: None,
        }
    }

    /// Authenticates; panics on failure. Events the server sends right after `auth`
    /// (presence snapshot) are buffered.
    pub async fn auth(&mut self, key: &str) -> Value {
        let result = self.ok("auth", json!({ "apiKey": key })).await;
        self.auth_result = result.clone();
        result
    }

    pub fn agent_id(&self) -> String {
        self.auth_result["agentId"].as_str().unwrap_or_default().to_owned()
    }

    pub fn lobby_id(&self) -> String {
        self.auth_result["lobby"]["roomId"].as_str().unwrap_or_default().to_owned()
    }

    /// Sends a request and waits for its response.
    pub async fn call(&mut self, method: &str, params: Value) -> Result<Value, RpcError> {
        self.next_id += 1;
        let id = self.next_id;
        let request = json!({ "jsonrpc": "2.0", "id": id, "method": method, "params": params });
        self.send_text(&request.to_string()).await;
        let response = self.response_to(&json!(id)).await;
        into_result(response)
    }

    /// Calls and expects success.
    pub async fn ok(&mut self, method: &str, params: Value) -> Value {
        match self.call(method, params.clone()).await {
            Ok(result) => result,
            Err(e) => panic!("{method} {params} failed: {e:?}"),
        }
    }

    /// Calls and expects an error with this code.
    pub async fn err(&mut self, method: &str, params: Value, code: i64) -> RpcError {
        match self.call(method, params.clone()).await {
            Ok(result) => panic!("{method} {params} succeeded ({result}), expected error {code}"),
            Err(e) => {
                assert_eq!(e.code, code, "{method} {params}: wrong error {e:?}");
                e
            }
        }
    }

    pub async fn send_text(&mut self, text: &str) {
        self.socket.send(Message::text(text.to_owned())).await.expect("send");
    }

    pub async fn send_binary(&mut self, bytes: Vec<u8>) {
        self.socket.send(Message::binary(bytes)).await.expect("send");
    }

    /// The next frame that is not an event (a response or batch), parsed.
    pub async fn next_response(&mut self) -> Value {
        loop {
            let frame = self.read_frame().await.expect("connection closed while waiting for a response");
            if is_event(&frame) {
                self.events.push_back(frame);
            } else {
                return frame;
            }
        }
    }

    async fn response_to(&mut self, id: &Value) -> Value {
        let frame = self.next_response().await;
        assert_eq!(frame.get("id"), Some(id), "unexpected response {frame} while waiting for id {id}");
        frame
    }

    /// Reads one frame (with the test timeout); `None` once the server has closed.
    async fn read_frame(&mut self) -> Option<Value> {
        if self.closed {
            return None;
        }
        loop {
            let message =
                tokio::time::timeout(TIMEOUT, self.socket.next()).await.expect("timed out waiting for a frame");
            match message {
                Some(Ok(Message::Text(text))) => {
                    return Some(serde_json::from_str(text.as_str()).expect("server sent valid JSON"));
                }
                Some(Ok(Message::Close(frame))) => {
                    self.close_frame = frame.map(|f| (u16::from(f.code), f.reason.to_string()));
                    self.closed = true;
                    return None;
                }
                None | Some(Err(_)) => {
                    self.closed = true;
                    return None;
                }
                Some(Ok(_)) => continue,
            }
        }
    }

    /// Waits for the next event with this name and returns its params. Other events
    /// stay buffered.
    pub async fn event(&mut self, name: &str) -> Value {
        if let Some(pos) = self.events.iter().position(|e| e["method"] == name) {
            return self.events.remove(pos).map(|e| e["params"].clone()).unwrap_or_default();
        }
        loop {
            let frame = self.read_frame().await.unwrap_or_else(|| panic!("connection closed while waiting for {name}"));
            if frame["method"] == name {
                return frame["params"].clone();
            }
            if is_event(&frame) {
                self.events.push_back(frame);
            } else {
                panic!("unexpected response {frame} while waiting for event {name}");
            }
        }
    }

    /// Makes sure every event caused by calls that already returned (on any
    /// connection) has arrived: the server queues an event before it answers the call
    /// that caused it, and answers this connection's calls in order.
    pub async fn sync(&mut self) {
        self.ok("lobby.getMotd", json!({})).await;
    }

    /// Asserts that no event with this name has arrived (after a [`Client::sync`]).
    pub async fn assert_no_event(&mut self, name: &str) {
        self.sync().await;
        let found: Vec<&Value> = self.events.iter().filter(|e| e["method"] == name).collect();
        assert!(found.is_empty(), "unexpected {name} event(s): {found:?}");
    }

    /// The buffered events with this name (after a sync), removed from the buffer.
    pub async fn take_events(&mut self, name: &str) -> Vec<Value> {
        self.sync().await;
        let (taken, kept): (Vec<Value>, Vec<Value>) = self.events.drain(..).partition(|e| e["method"] == name);
        self.events = kept.into();
        taken.into_iter().map(|e| e["params"].clone()).collect()
    }

    /// Forgets buffered events.
    pub async fn clear_events(&mut self) {
        self.sync().await;
        self.events.clear();
    }

    /// Waits until the server closes this connection; returns the events that came first.
    pub async fn wait_closed(&mut self) -> Vec<Value> {
        while self.read_frame().await.map(|f| self.events.push_back(f)).is_some() {}
        self.events.drain(..).collect()
    }

    pub async fn close(mut self) {
        let _ = self.socket.close(None).await;
    }
}

fn is_event(frame: &Value) -> bool {
    frame.get("id").is_none() && frame.get("method").is_some()
}

fn into_result(response: Value) -> Result<Value, RpcError> {
    assert_eq!(response["jsonrpc"], "2.0", "response must be JSON-RPC 2.0: {response}");
    if let Some(error) = response.get("error") {
        return Err(RpcError {
            code: error["code"].as_i64().expect("error code"),
            message: error["message"].as_str().unwrap_or_default().to_owned(),
            data: error.get("data").cloned().unwrap_or(Value::Null),
        });
    }
    Ok(response.get("result").cloned().expect("response has a result or an error"))
}

// ---- Connecting from another address, probing, idling; a hand-rolled WebSocket
// client for protocol abuse; process figures. ----

/// A TCP connection to `server` from the local address `local` (port chosen by the
/// kernel). On Linux all of 127/8 is loopback, so `127.0.0.2` is "another machine" as far
/// as per-address limits go.
pub async fn tcp_from(server: SocketAddr, local: std::net::IpAddr) -> std::io::Result<TcpStream> {
    let socket = match local {
        std::net::IpAddr::V4(_) => tokio::net::TcpSocket::new_v4()?,
        std::net::IpAddr::V6(_) => tokio::net::TcpSocket::new_v6()?,
    };
    socket.bind(SocketAddr::new(local, 0))?;
    let stream = socket.connect(server).await?;
    stream.set_nodelay(true)?;
    Ok(stream)
}

impl TestServer {
    /// A connected, unauthenticated client whose connection comes from `local`.
    pub async fn connect_from(&self, local: std::net::IpAddr) -> Client {
        Client::connect_from(&self.url(), self.addr, local).await
    }
}

impl Client {
    /// Connects from the local address `local` (see [`tcp_from`]).
    pub async fn connect_from(url: &str, server: SocketAddr, local: std::net::IpAddr) -> Client {
        let stream = tcp_from(server, local).await.expect("tcp connects");
        let (socket, _) =
            tokio_tungstenite::client_async(url, MaybeTlsStream::Plain(stream)).await.expect("websocket handshake");
        Client::from_socket(socket)
    }

    /// Sends a request and waits for its response; `None` if the server closed the
    /// connection instead (its close frame is then in [`Client::close_frame`]).
    pub async fn try_call(&mut self, method: &str, params: Value) -> Option<Result<Value, RpcError>> {
        if self.closed {
            return None;
        }
        self.next_id += 1;
        let id = self.next_id;
        let request = json!({ "jsonrpc": "2.0", "id": id, "method": method, "params": params });
        if self.socket.send(Message::text(request.to_string())).await.is_err() {
            // The server closed first; its close frame may still be there to read.
            while self.read_frame().await.is_some() {}
            return None;
        }
        loop {
            let frame = self.read_frame().await?;
            if is_event(&frame) {
                self.events.push_back(frame);
            } else {
                assert_eq!(frame.get("id"), Some(&json!(id)), "unexpected response {frame}");
                return Some(into_result(frame));
            }
        }
    }

    /// Sends a request without waiting for its response; returns its id.
    pub async fn send_request(&mut self, method: &str, params: Value) -> u64 {
        self.next_id += 1;
        let id = self.next_id;
        let request = json!({ "jsonrpc": "2.0", "id": id, "method": method, "params": params });
        self.send_text(&request.to_string()).await;
        id
    }

    /// Keeps reading for `duration` without sending anything of its own (reading is what
    /// makes tungstenite answer the server's pings), buffering events. Stops early if the
    /// server closes. Returns how many pings arrived.
    pub async fn read_for(&mut self, duration: Duration) -> usize {
        let deadline = tokio::time::Instant::now() + duration;
        let mut pings = 0;
        while !self.closed {
            match tokio::time::timeout_at(deadline, self.socket.next()).await {
                Err(_) => break,
                Ok(Some(Ok(Message::Text(text)))) => {
                    let frame: Value = serde_json::from_str(text.as_str()).expect("server sent valid JSON");
                    assert!(is_event(&frame), "unexpected response while idle: {frame}");
                    self.events.push_back(frame);
                }
                Ok(Some(Ok(Message::Ping(_)))) => pings += 1,
                Ok(Some(Ok(Message::Close(frame)))) => {
                    self.close_frame = frame.map(|f| (u16::from(f.code), f.reason.to_string()));
                    self.closed = true;
                }
                Ok(None | Some(Err(_))) => self.closed = true,
                Ok(Some(Ok(_))) => {}
            }
        }
        pings
    }

    /// The next event of any kind (`{method, params}`), buffered ones first.
    pub async fn next_event(&mut self) -> Value {
        if let Some(event) = self.events.pop_front() {
            return event;
        }
        let frame = self.read_frame().await.expect("connection closed while waiting for an event");
        assert!(is_event(&frame), "unexpected response {frame} while waiting for an event");
        frame
    }

    /// The buffered events with this name, removed from the buffer (no sync).
    pub fn drain_events(&mut self, name: &str) -> Vec<Value> {
        let (taken, kept): (Vec<Value>, Vec<Value>) = self.events.drain(..).partition(|e| e["method"] == name);
        self.events = kept.into();
        taken.into_iter().map(|e| e["params"].clone()).collect()
    }
}

/// WebSocket opcodes, for [`RawSocket`].
pub mod opcode {
    pub const CONTINUATION: u8 = 0x0;
    pub const TEXT: u8 = 0x1;
    pub const BINARY: u8 = 0x2;
    pub const CLOSE: u8 = 0x8;
    pub const PING: u8 = 0x9;
    pub const PONG: u8 = 0xA;
}

/// A hand-rolled WebSocket client on a plain TCP stream. It does only what it is told:
/// it answers no pings, checks nothing it sends (so frames can be invalid on purpose:
/// bad UTF-8, unmasked, reserved bits) and reads nothing until asked.
pub struct RawSocket {
    stream: TcpStream,
    /// Bytes read and not yet parsed into frames.
    buffer: Vec<u8>,
}

/// A frame as received (the server's frames are not masked).
#[derive(Debug, Clone)]
pub struct RawFrame {
    pub fin: bool,
    pub opcode: u8,
    pub payload: Vec<u8>,
}

impl RawFrame {
    /// A text frame's payload as JSON.
    pub fn json(&self) -> Option<Value> {
        (self.opcode == opcode::TEXT).then(|| serde_json::from_slice(&self.payload).ok()).flatten()
    }

    /// A close frame's status code (1005 if it has none) and reason.
    pub fn close(&self) -> Option<(u16, String)> {
        (self.opcode == opcode::CLOSE).then(|| match self.payload.as_slice() {
            [a, b, reason @ ..] => (u16::from_be_bytes([*a, *b]), String::from_utf8_lossy(reason).into_owned()),
            _ => (1005, String::new()),
        })
    }
}

/// The mask a [`RawSocket`] puts on its frames (any will do; clients must mask).
const MASK: [u8; 4] = [0x5a, 0x13, 0xc7, 0x2e];

/// Encodes one frame: `first` is the first byte (FIN, RSV bits, opcode), `mask` the
/// masking key or `None` to send it unmasked (a protocol violation from a client).
pub fn encode_frame(first: u8, payload: &[u8], mask: Option<[u8; 4]>) -> Vec<u8> {
    let mut out = Vec::with_capacity(payload.len() + 14);
    out.push(first);
    let mask_bit = if mask.is_some() { 0x80 } else { 0 };
    match payload.len() {
        n if n < 126 => out.push(mask_bit | n as u8),
        n if n <= usize::from(u16::MAX) => {
            out.push(mask_bit | 126);
            out.extend_from_slice(&(n as u16).to_be_bytes());
        }
        n => {
            out.push(mask_bit | 127);
            out.extend_from_slice(&(n as u64).to_be_bytes());
        }
    }
    match mask {
        Some(mask) => {
            out.extend_from_slice(&mask);
            out.extend(payload.iter().enumerate().map(|(i, b)| b ^ mask[i % 4]));
        }
        None => out.extend_from_slice(payload),
    }
    out
}

/// Parses one frame off the front of `buffer`: the frame and the bytes it took.
fn parse_frame(buffer: &[u8]) -> Option<(RawFrame, usize)> {
    let [first, second, ..] = *buffer else { return None };
    let (len, mut at) = match second & 0x7f {
        126 => (u64::from(u16::from_be_bytes(buffer.get(2..4)?.try_into().ok()?)), 4),
        127 => (u64::from_be_bytes(buffer.get(2..10)?.try_into().ok()?), 10),
        n => (u64::from(n), 2),
    };
    let mask: Option<[u8; 4]> = if second & 0x80 != 0 {
        let mask = buffer.get(at..at + 4)?.try_into().ok()?;
        at += 4;
        Some(mask)
    } else {
        None
    };
    let end = at.checked_add(usize::try_from(len).ok()?)?;
    let mut payload = buffer.get(at..end)?.to_vec();
    if let Some(mask) = mask {
        payload.iter_mut().enumerate().for_each(|(i, b)| *b ^= mask[i % 4]);
    }
    Some((RawFrame { fin: first & 0x80 != 0, opcode: first & 0x0f, payload }, end))
}

impl RawSocket {
    pub async fn connect(server: SocketAddr) -> std::io::Result<RawSocket> {
        Self::connect_from(server, std::net::Ipv4Addr::LOCALHOST.into()).await
    }

    /// TCP connect from `local`, then the HTTP upgrade.
    pub async fn connect_from(server: SocketAddr, local: std::net::IpAddr) -> std::io::Result<RawSocket> {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let mut stream = tcp_from(server, local).await?;
        let request = format!(
            "GET / HTTP/1.1\r\nHost: {server}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
             Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n"
        );
        stream.write_all(request.as_bytes()).await?;
        let mut buffer = Vec::with_capacity(512);
        loop {
            if let Some(end) = buffer.windows(4).position(|w| w == b"\r\n\r\n") {
                let head = String::from_utf8_lossy(&buffer[..end]).into_owned();
                if !head.starts_with("HTTP/1.1 101") {
                    return Err(std::io::Error::other(format!("upgrade refused: {head}")));
                }
                buffer.drain(..end + 4);
                return Ok(RawSocket { stream, buffer });
            }
            if stream.read_buf(&mut buffer).await? == 0 {
                return Err(std::io::ErrorKind::UnexpectedEof.into());
            }
        }
    }

    /// The TCP stream (for socket options).
    pub fn stream(&self) -> &TcpStream {
        &self.stream
    }

    /// Writes bytes as they are (a hand-made frame, or part of one).
    pub async fn write_raw(&mut self, bytes: &[u8]) -> std::io::Result<()> {
        use tokio::io::AsyncWriteExt;
        self.stream.write_all(bytes).await
    }

    /// Sends one masked, final frame.
    pub async fn send_frame(&mut self, opcode: u8, payload: &[u8]) -> std::io::Result<()> {
        self.write_raw(&encode_frame(0x80 | opcode, payload, Some(MASK))).await
    }

    pub async fn send_text(&mut self, text: &str) -> std::io::Result<()> {
        self.send_frame(opcode::TEXT, text.as_bytes()).await
    }

    /// The next frame; `None` once the server has closed the TCP connection (or reset it).
    /// No timeout: callers add their own.
    pub async fn read_frame(&mut self) -> Option<RawFrame> {
        use tokio::io::AsyncReadExt;
        loop {
            if let Some((frame, used)) = parse_frame(&self.buffer) {
                self.buffer.drain(..used);
                return Some(frame);
            }
            self.buffer.reserve(8 * 1024);
            match self.stream.read_buf(&mut self.buffer).await {
                Ok(0) | Err(_) => return None,
                Ok(_) => {}
            }
        }
    }

    /// The next message: a data frame, or the fragments of one joined (the server
    /// fragments long text), or a control frame. `None` once the server has closed.
    pub async fn read_message(&mut self) -> Option<RawFrame> {
        let mut message: Option<RawFrame> = None;
        loop {
            let frame = self.read_frame().await?;
            if frame.opcode >= opcode::CLOSE {
                return Some(frame);
            }
            match &mut message {
                None => message = Some(frame.clone()),
                Some(started) => started.payload.extend_from_slice(&frame.payload),
            }
            if frame.fin {
                return message.map(|m| RawFrame { fin: true, ..m });
            }
        }
    }

    /// Sends a request and returns the next text message that is not an event (events
    /// and control frames before it are dropped). Panics if the server closes first.
    pub async fn call(&mut self, request: &Value) -> Value {
        self.send_text(&request.to_string()).await.expect("send");
        loop {
            let frame = tokio::time::timeout(TIMEOUT, self.read_message())
                .await
                .expect("timed out waiting for a response")
                .expect("connection closed while waiting for a response");
            if let Some(json) = frame.json() {
                if !is_event(&json) {
                    return json;
                }
            }
        }
    }

    /// Reads every frame until the server closes the connection (or `timeout` passes:
    /// then `None`).
    pub async fn read_to_end(&mut self, timeout: Duration) -> Option<Vec<RawFrame>> {
        let mut frames = Vec::new();
        tokio::time::timeout(timeout, async {
            while let Some(frame) = self.read_frame().await {
                frames.push(frame);
            }
        })
        .await
        .ok()?;
        Some(frames)
    }
}

/// This process's resident memory in bytes (`VmRSS`). The server runs in-process, so
/// this includes it (and every test running at the same time).
pub fn rss_bytes() -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").expect("/proc/self/status");
    let line = status.lines().find(|l| l.starts_with("VmRSS:")).expect("VmRSS line");
    let kib: u64 = line.split_whitespace().nth(1).and_then(|n| n.parse().ok()).expect("VmRSS value");
    kib * 1024
}

/// The `p`-th percentile (0..=100) of some durations.
pub fn percentile(durations: &[Duration], p: f64) -> Duration {
    let mut sorted = durations.to_vec();
    sorted.sort_unstable();
    if sorted.is_empty() {
        return Duration::ZERO;
    }
    let rank = ((p / 100.0) * sorted.len() as f64).ceil() as usize;
    sorted[rank.clamp(1, sorted.len()) - 1]
}

// ---- helpers for tests that read every event (tests/server/privacy_race.rs, model.rs) ----

impl Client {
    /// Every buffered event, whatever its name, in arrival order, as whole frames
    /// (`{jsonrpc, method, params}`), removed from the buffer. Does not sync: only what
    /// has already arrived (call [`Client::take_all_events`] to sync first).
    pub fn drain_buffered_events(&mut self) -> Vec<Value> {
        self.events.drain(..).collect()
    }

    /// Every event that has arrived (after a [`Client::sync`]), in arrival order, as
    /// whole frames, removed from the buffer.
    pub async fn take_all_events(&mut self) -> Vec<Value> {
        self.sync().await;
        self.drain_buffered_events()
    }

    /// For a connection that only listens: the next event (buffered ones first), as a
    /// whole frame, waiting at most `wait`. `None` when nothing came in time or the
    /// server has closed the connection (see [`Client::closed`]).
    pub async fn next_event_within(&mut self, wait: Duration) -> Option<Value> {
        if let Some(event) = self.events.pop_front() {
            return Some(event);
        }
        let deadline = tokio::time::Instant::now() + wait;
        while !self.closed {
            let message = match tokio::time::timeout_at(deadline, self.socket.next()).await {
                Ok(message) => message,
                Err(_) => return None,
            };
            match message {
                Some(Ok(Message::Text(text))) => {
                    let frame: Value = serde_json::from_str(text.as_str()).expect("server sent valid JSON");
                    assert!(is_event(&frame), "unexpected response {frame} on a listening connection");
                    return Some(frame);
                }
                Some(Ok(Message::Close(_))) | None | Some(Err(_)) => self.closed = true,
                Some(Ok(_)) => {}
            }
        }
        None
    }
}

/// This machine's clock, ms since the Unix epoch (the server's timestamps are on it too).
pub fn now_ms() -> i64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_millis() as i64)
}
