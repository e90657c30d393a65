//! Fuzzes the frame → dispatch path: each input is a short conversation of text frames
//! handed to `Dispatcher::frame`, the same call the WebSocket reader makes, on sessions
//! of a real linkspace (in-memory SQLite, built once per process).
//!
//! Input format (one frame per line, so seeds are readable JSON lines):
//! - a line that is exactly `c`, `p` or `u` opens a new session and makes it the
//!   current one: authenticated as the controller, as the invited participant, or not
//!   at all. Earlier sessions stay connected (they receive events) until the input ends.
//!   Frames before any marker go to an unauthenticated session.
//! - any other non-empty line is one text frame (lossy UTF-8, as the WebSocket layer
//!   only delivers valid UTF-8). Before it is sent these placeholders are replaced, so
//!   inputs can name things whose ids are random: `$LOBBY`, `$CONTROLLER` and
//!   `$PARTICIPANT` (agent ids), `$CKEY` and `$PKEY` (their API keys), and `$ROOM`,
//!   `$AGENT`, `$MSG` (the last `roomId`, `agentId`, `messageId` seen in any response
//!   or event of this input).
//!
//! Checked: nothing panics; every response and every event is valid JSON shaped as a
//! JSON-RPC response (or batch of them) or notification; a response carries an id of
//! its request(s) or `null`; a single request with an `id` on an open session always
//! gets a response.
//!
//! The server's limits are lowered (20 rooms, messages of 200 characters, history pages
//! and lobby history of 20) so that inputs of a few KiB reach them. The state (rooms,
//! messages, agents) carries over from input to input, like a long-running server; it
//! is rebuilt every `RESET_EVERY` inputs. A crash may therefore depend on earlier
//! inputs; replaying the crash file alone usually reproduces it, since most of what an
//! input needs it creates itself.

#![no_main]

use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, OnceLock};

use broodlink::config::{Config, LobbyConfig};
use broodlink::dispatch::Dispatcher;
use broodlink::rpc::Rpc;
use broodlink::service::Linkspace;
use broodlink::outbox::Outbound;
use broodlink::session::Session;
use broodlink::store::{Durability, Store};
use broodlink_protocol::BroodLinkApiServer;
use libfuzzer_sys::fuzz_target;
use serde_json::{json, Value};
use tokio::runtime::Runtime;

/// Inputs after which the linkspace is replaced by a fresh one: often enough that
/// memory stays bounded and the room limit is rarely what every `room.create` meets,
/// rarely enough that opening one (a few milliseconds) costs next to nothing.
const RESET_EVERY: u64 = 1_000;
/// Sessions one input may open; more markers reuse the last one.
const MAX_SESSIONS: usize = 8;
/// The transport's outbound queue size (`limits.outboundQueueFrames`), so the
/// slow-consumer rule triggers as it would on a real connection.
const OUTBOUND_QUEUE: usize = 1024;

/// The process-wide harness: one runtime, one linkspace at a time.
struct Harness {
    runtime: Runtime,
    server: Mutex<Option<Server>>,
    inputs: AtomicU64,
    next_session: AtomicU64,
    /// `BROODLINK_FUZZ_TRACE=1`: print every frame in and out (for replaying an input).
    trace: bool,
}

/// A linkspace with its dispatcher and the agents every input may act as.
struct Server {
    linkspace: Arc<Linkspace>,
    dispatcher: Dispatcher,
    controller_key: String,
    controller_id: String,
    lobby_id: String,
    participant_key: String,
    participant_id: String,
    /// Print every frame and its response (`BROODLINK_FUZZ_TRACE=1`).
    trace: bool,
}

/// One fake connection: the session the dispatcher sees (its outbox is what the
/// writer would drain).
struct Connection {
    session: Arc<Session>,
}

impl Connection {
    /// Checks every frame queued for this connection so far.
    fn drain(&self, seen: &mut Seen) {
        while let Some(items) = self.session.outbox().try_take(usize::MAX) {
            items.into_iter().for_each(|item| check_outbound(item, seen));
        }
    }
}

/// The ids an input's later frames may refer to.
#[derive(Default)]
struct Seen {
    room: Option<String>,
    agent: Option<String>,
    message: Option<String>,
}

#[derive(Clone, Copy, PartialEq)]
enum As {
    Nobody,
    Controller,
    Participant,
}

fn harness() -> &'static Harness {
    static HARNESS: OnceLock<Harness> = OnceLock::new();
    HARNESS.get_or_init(|| {
        // One thread: spawned tasks (the message committer) run only inside `block_on`,
        // so each input is handled to completion before the next one starts.
        let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().expect("tokio runtime");
        Harness {
            runtime,
            server: Mutex::new(None),
            inputs: AtomicU64::new(0),
            next_session: AtomicU64::new(1),
            trace: std::env::var_os("BROODLINK_FUZZ_TRACE").is_some_and(|v| v == "1"),
        }
    })
}

impl Harness {
    fn connect(&self) -> Connection {
        let id = self.next_session.fetch_add(1, Ordering::Relaxed);
        let remote = SocketAddr::from(([127, 0, 0, 1], 40000));
        Connection { session: Arc::new(Session::new(id, remote, OUTBOUND_QUEUE)) }
    }

    /// Opens a fresh linkspace, authenticates as its controller and invites the
    /// participant.
    async fn open(&self) -> Server {
        // Limits small enough for short inputs to reach them.
        let mut config = Config {
            database: ":memory:".into(),
            synchronous: Durability::Normal,
            max_rooms: 20,
            max_message_length: 200,
            max_history_per_room: 20,
            lobby: LobbyConfig { history_limit: 20, ..LobbyConfig::default() },
            ..Config::default()
        };
        // Rate limits would answer most of a fuzzer's calls with 4080 and hide the
        // methods behind them; they have tests of their own.
        config.limits.unlimited_rates();
        let limits = config.limits.clone();
        let max_request_bytes = broodlink::server::max_request_bytes(&config);
        let store = Store::open(&config.database, config.synchronous).await.expect("in-memory store");
        let opened = Linkspace::open(config, store, None, None).await.expect("linkspace");
        let controller_key = opened.new_controller_key.expect("a new database creates the controller");
        let linkspace = opened.linkspace;
        let dispatcher = Dispatcher::new(Rpc::new(linkspace.clone()).into_rpc(), max_request_bytes, &limits);
        let mut server = Server {
            linkspace,
            dispatcher,
            controller_key,
            controller_id: String::new(),
            lobby_id: String::new(),
            participant_key: String::new(),
            participant_id: String::new(),
            trace: self.trace,
        };
        let mut setup = self.connect();
        let auth = server.auth(&mut setup, As::Controller).await.expect("controller authenticates");
        server.controller_id = auth["agentId"].as_str().expect("agentId").to_owned();
        server.lobby_id = auth["lobby"]["roomId"].as_str().expect("lobby roomId").to_owned();
        server.invite_participant(&mut setup).await;
        server.close(setup).await;
        server
    }
}

impl Server {
    /// One frame through the dispatcher, then the session's events as the transport
    /// would release them; every frame produced is checked.
    async fn frame(&self, conn: &mut Connection, text: &str, seen: &mut Seen) -> Option<Value> {
        let open = !conn.session.is_closed();
        let response = self.dispatcher.frame(&conn.session, text).await;
        if self.trace {
            let id = conn.session.id;
            eprintln!("[conn {id}] -> {text}\n[conn {id}] <- {}", shorten(response.as_deref()));
        }
        let request = serde_json::from_str::<Value>(text).ok();
        let parsed = response.as_deref().and_then(|r| check_response(request.as_ref(), text, r));
        if open && response.is_none() && matches!(&request, Some(Value::Object(map)) if map.contains_key("id")) {
            panic!("no response to a request with an id\nrequest: {text}");
        }
        // Events held during `auth` are released after its response, as the transport
        // does; the queue is drained meanwhile (the writer task would).
        let release = conn.session.release_held();
        tokio::pin!(release);
        loop {
            tokio::select! {
                biased;
                _ = &mut release => break,
                Some(items) = conn.session.outbox().take(usize::MAX) => {
                    items.into_iter().for_each(|item| check_outbound(item, seen));
                }
            }
        }
        if let Some(value) = &parsed {
            seen.update(value);
        }
        parsed
    }

    /// Authenticates `conn`; returns the result, or `None` if `auth` was refused.
    async fn auth(&self, conn: &mut Connection, who: As) -> Option<Value> {
        let key = match who {
            As::Nobody => return None,
            As::Controller => &self.controller_key,
            As::Participant => &self.participant_key,
        };
        let request = json!({ "jsonrpc": "2.0", "id": 0, "method": "auth", "params": { "apiKey": key } });
        let response = self.frame(conn, &request.to_string(), &mut Seen::default()).await?;
        response.get("result").cloned()
    }

    /// Invites a new participant through `controller` (an authenticated controller
    /// session) and remembers its key.
    async fn invite_participant(&mut self, controller: &mut Connection) {
        let request =
            json!({ "jsonrpc": "2.0", "id": 0, "method": "agent.invite", "params": { "displayName": "Fuzz" } });
        let response = self.frame(controller, &request.to_string(), &mut Seen::default()).await;
        let result = response.as_ref().and_then(|r| r.get("result")).expect("agent.invite succeeds");
        self.participant_key = result["apiKey"].as_str().expect("apiKey").to_owned();
        self.participant_id = result["agentId"].as_str().expect("agentId").to_owned();
    }

    /// Opens a session as `who`. The controller must always get in; a participant
    /// that an earlier input banned or revoked is replaced by a new one.
    async fn session(&mut self, harness: &Harness, who: As) -> Connection {
        let mut conn = harness.connect();
        if who == As::Nobody || self.auth(&mut conn, who).await.is_some() {
            return conn;
        }
        assert!(who == As::Participant, "the controller could not authenticate");
        let mut controller = harness.connect();
        self.auth(&mut controller, As::Controller).await.expect("controller authenticates");
        self.invite_participant(&mut controller).await;
        self.close(controller).await;
        self.auth(&mut conn, who).await.expect("a newly invited participant authenticates");
        conn
    }

    /// The connection ends, as when its socket closes.
    async fn close(&self, conn: Connection) {
        self.linkspace.connection_closed(&conn.session).await;
        conn.drain(&mut Seen::default());
    }

    /// Replaces the placeholders in `text` (see the module docs).
    fn substitute(&self, text: &str, seen: &Seen) -> String {
        if !text.contains('$') {
            return text.to_owned();
        }
        let room = seen.room.as_deref().unwrap_or(&self.lobby_id);
        let agent = seen.agent.as_deref().unwrap_or(&self.participant_id);
        let message = seen.message.as_deref().unwrap_or("");
        text.replace("$LOBBY", &self.lobby_id)
            .replace("$CONTROLLER", &self.controller_id)
            .replace("$PARTICIPANT", &self.participant_id)
            .replace("$CKEY", &self.controller_key)
            .replace("$PKEY", &self.participant_key)
            .replace("$ROOM", room)
            .replace("$AGENT", agent)
            .replace("$MSG", message)
    }
}

impl Seen {
    /// Remembers the last `roomId`, `agentId` and `messageId` anywhere in `value`.
    fn update(&mut self, value: &Value) {
        match value {
            Value::Object(map) => {
                for (key, value) in map {
                    let slot = match key.as_str() {
                        "roomId" => Some(&mut self.room),
                        "agentId" => Some(&mut self.agent),
                        "messageId" => Some(&mut self.message),
                        _ => None,
                    };
                    match (slot, value) {
                        (Some(slot), Value::String(id)) => *slot = Some(id.clone()),
                        _ => self.update(value),
                    }
                }
            }
            Value::Array(items) => items.iter().for_each(|item| self.update(item)),
            _ => {}
        }
    }
}

/// A response frame must be JSON, and one JSON-RPC response or a non-empty array of
/// them, carrying only ids the request(s) had, or `null` (when the id could not be
/// read). Ids are not checked when the harness cannot parse the request (deeper than
/// serde_json's recursion limit, which the dispatcher's borrowing parse may not hit).
///
/// JSON is checked with serde's `IgnoredAny`, which reads the grammar only: `Value`
/// also refuses numbers beyond `f64` (`1e400`), which JSON allows and the server echoes
/// in an `id` as sent. Such a response gets no shape checks (and yields `None`).
fn check_response(request: Option<&Value>, text: &str, response: &str) -> Option<Value> {
    if let Err(e) = serde_json::from_str::<serde::de::IgnoredAny>(response) {
        panic!("response is not JSON: {e}\nrequest: {text}\nresponse: {response}");
    }
    let value: Value = serde_json::from_str(response).ok()?;
    let ids: Option<Vec<&Value>> = request.map(|request| match request {
        Value::Array(items) => items.iter().filter_map(|item| item.get("id")).collect(),
        single => single.get("id").into_iter().collect(),
    });
    match &value {
        Value::Array(items) => {
            assert!(!items.is_empty(), "empty batch response\nrequest: {text}");
            items.iter().for_each(|item| check_response_object(ids.as_deref(), text, item));
        }
        item => check_response_object(ids.as_deref(), text, item),
    }
    Some(value)
}

fn check_response_object(ids: Option<&[&Value]>, text: &str, item: &Value) {
    let shaped = item.get("jsonrpc") == Some(&json!("2.0"))
        && match (item.get("result"), item.get("error")) {
            (Some(_), None) => true,
            (None, Some(error)) => error["code"].is_i64() && error["message"].is_string(),
            _ => false,
        };
    assert!(shaped, "malformed JSON-RPC response\nrequest: {text}\nresponse: {item}");
    let id = item.get("id").unwrap_or_else(|| panic!("response without an id\nrequest: {text}\nresponse: {item}"));
    let known = id.is_null() || ids.is_none_or(|ids| ids.contains(&id));
    assert!(known, "response id not from the request\nrequest: {text}\nresponse: {item}");
}

/// An event frame must be a JSON-RPC notification.
fn check_outbound(item: Outbound, seen: &mut Seen) {
    let Outbound::Frame(frame) = item else { return };
    let value: Value =
        serde_json::from_str(frame.as_str()).unwrap_or_else(|e| panic!("event is not JSON: {e}\nevent: {frame}"));
    let shaped =
        value.get("jsonrpc") == Some(&json!("2.0")) && value["method"].is_string() && value.get("id").is_none();
    assert!(shaped, "malformed event\nevent: {value}");
    seen.update(&value);
}

/// A response for the trace, cut to a readable length.
fn shorten(response: Option<&str>) -> &str {
    let Some(response) = response else { return "(no response)" };
    match response.char_indices().nth(400) {
        Some((end, _)) => &response[..end],
        None => response,
    }
}

fn run(data: &[u8]) {
    let harness = harness();
    let mut slot = harness.server.lock().unwrap_or_else(|e| e.into_inner());
    harness.runtime.block_on(async {
        if harness.inputs.fetch_add(1, Ordering::Relaxed).is_multiple_of(RESET_EVERY) {
            if let Some(old) = slot.take() {
                old.linkspace.close().await;
            }
        }
        if slot.is_none() {
            *slot = Some(harness.open().await);
        }
        let Some(server) = slot.as_mut() else { unreachable!() };

        let mut connections: Vec<Connection> = Vec::new();
        let mut seen = Seen::default();
        for line in data.split(|&b| b == b'\n') {
            let who = match line {
                b"" => continue,
                b"c" => Some(As::Controller),
                b"p" => Some(As::Participant),
                b"u" => Some(As::Nobody),
                _ => None,
            };
            if let Some(who) = who {
                if connections.len() < MAX_SESSIONS {
                    let conn = server.session(harness, who).await;
                    connections.push(conn);
                }
                continue;
            }
            if connections.is_empty() {
                connections.push(harness.connect());
            }
            let text = server.substitute(&String::from_utf8_lossy(line), &seen);
            let Some(conn) = connections.last_mut() else { unreachable!() };
            server.frame(conn, &text, &mut seen).await;
            // Events that reached the other sessions.
            for other in &connections {
                other.drain(&mut seen);
            }
        }
        for conn in connections {
            server.close(conn).await;
        }
    });
}

fuzz_target!(|data: &[u8]| run(data));
