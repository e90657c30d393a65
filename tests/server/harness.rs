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
        let server = Server::open(config.clone(), Some(data_dir)).await.expect("server starts");
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
}

impl Client {
    pub async fn connect(url: &str) -> Client {
        let (socket, _) = tokio_tungstenite::connect_async(url).await.expect("websocket connects");
        Client { socket, next_id: 0, events: VecDeque::new(), closed: false, auth_result: Value::Null }
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
                Some(Ok(Message::Close(_))) | None | Some(Err(_)) => {
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
