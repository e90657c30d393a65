//! Privacy under concurrency, randomized.
//!
//! Eight participants (four of them on two connections) and the controller join,
//! leave, send, DM, kick, invite, toggle visibility, rename, create and delete rooms
//! concurrently for a few seconds. Then every event every connection received is
//! checked against room membership *at commit time*.
//!
//! # How membership at commit time is known from outside
//!
//! Every change of a room's membership (`room.create`, `room.join`, `room.leave`,
//! `room.kick`, `room.delete`) and every message commit runs under the linkspace's one
//! write lock, and fans its events out inside that critical section, right after it
//! updated the hub (`src/service/rooms.rs`, `src/service/commit.rs`). Fan-out pushes the
//! frame synchronously into each recipient connection's single FIFO queue
//! (`Session::push`), and the writer task sends that queue in order. So any one
//! connection receives the events of those changes in the order the server applied them.
//!
//! The *observer* is a second connection of the controller agent that only listens. The
//! controller is a member of every room from its creation (rooms the controller creates)
//! or from its first change (a participant that creates a room waits until the
//! controller has joined it, and only then lets anyone else know the room exists; the
//! controller's join must report `memberCount: 2`) until its deletion, and it can be
//! neither kicked nor does it leave. Every one of those changes has the controller in
//! its audience (`room.joined`/`room.left`/`message`/`room.visibilityChanged`/
//! `room.updated` go to the room's members, `room.deleted` to the members and the
//! controller; a kick's `kicked` goes to the kicked agent only, but it is followed by
//! `room.left` to the room). So the observer's stream, per room, is the total order of
//! that room's membership changes and messages, and replaying it gives the member set
//! at each message's commit. A room whose stream does not start that way, or an
//! acknowledged message the observer never got, fails the test (see `replay` and the
//! completeness checks): the replay is then not known to be the server's order.
//!
//! # What is checked, for every connection
//!
//! - a `message` of room R with seq s reaches a connection only if its agent was a
//!   member of R when s committed (by the observer's replay) — and only if the
//!   connection itself, by its own `room.joined`/`room.left`/`kicked` events, is in R;
//! - nothing about R (message, join, leave, update, visibility, deletion) after the
//!   connection's own `kicked` from R, until its own `room.joined` of R;
//! - a `dm` only to its recipient; a private room's `room.created` only to its owner and
//!   the controller; no connection gets its own message back;
//! - no message twice; seqs strictly increasing per room (and for DMs) per connection;
//! - each connection's events about a room are a subsequence of the observer's (same
//!   events, same order);
//! - completeness: every member's every connection (except the sending one) got each
//!   message, every connection got each lobby message, the recipient's connections got
//!   each DM, and every acknowledged room message reached the observer.
//!
//! The seed is printed; `BROODLINK_RACE_SEED=<seed>` replays the same choices (the
//! interleaving is up to the scheduler), `BROODLINK_RACE_SECS` sets the duration.

use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use serde_json::{json, Value};
use tokio::sync::{mpsc, oneshot};

use crate::harness::*;

const PARTICIPANTS: usize = 8;
/// Participants 1..=TWO_CONNECTIONS hold a second connection.
const TWO_CONNECTIONS: usize = 4;
/// The workload creates rooms only while fewer are live.
const LIVE_ROOMS: usize = 8;
const CTRL: usize = 0;

/// A room the workload knows about. Only rooms the controller is already in are listed.
#[derive(Clone)]
struct RoomEntry {
    id: String,
    owner: usize,
    deleted: bool,
}

#[derive(Default)]
struct Registry {
    rooms: Vec<RoomEntry>,
}

impl Registry {
    fn live(&self) -> Vec<RoomEntry> {
        self.rooms.iter().filter(|r| !r.deleted).cloned().collect()
    }

    fn mark_deleted(&mut self, id: &str) {
        if let Some(room) = self.rooms.iter_mut().find(|r| r.id == id) {
            room.deleted = true;
        }
    }
}

/// What a message was sent to.
#[derive(Clone, Debug)]
enum Target {
    Room(String),
    Lobby,
    Dm(usize),
}

/// A message acknowledged to its sender.
#[derive(Clone, Debug)]
struct Sent {
    seq: i64,
    conn: usize,
    target: Target,
}

/// Everything one workload connection did and received.
struct ConnRecord {
    conn: usize,
    agent: usize,
    events: Vec<Value>,
    sent: Vec<Sent>,
    closed: bool,
    /// `method → (ok, error code → count)`.
    calls: BTreeMap<&'static str, (usize, BTreeMap<i64, usize>)>,
    /// Answers outside what the spec allows for the call.
    unexpected: Vec<String>,
    /// Sends refused though this connection's own events, as far as it had read them,
    /// said it was in the room: its membership changed before it heard (the race the
    /// test is after, though some of these were only unread events).
    raced_sends: usize,
}

/// What a connection knows from its own events: the rooms it is in and who else is.
#[derive(Default)]
struct View {
    me: String,
    member_of: HashSet<String>,
    members: HashMap<String, HashSet<String>>,
    /// Rooms it was invited to (and may not have joined yet).
    invited: HashSet<String>,
    /// Owners of the rooms it heard created.
    owners: HashMap<String, String>,
}

impl View {
    fn absorb(&mut self, frame: &Value) {
        let p = &frame["params"];
        let room = p["roomId"].as_str().unwrap_or_default().to_owned();
        let agent = p["agentId"].as_str().unwrap_or_default();
        match frame["method"].as_str().unwrap_or_default() {
            "room.created" => {
                let owner = p["ownerId"].as_str().unwrap_or_default().to_owned();
                if owner == self.me {
                    self.member_of.insert(room.clone());
                }
                self.owners.insert(room.clone(), owner.clone());
                self.members.insert(room, HashSet::from([owner]));
            }
            "room.joined" => {
                if agent == self.me {
                    self.member_of.insert(room.clone());
                }
                self.members.entry(room).or_default().insert(agent.to_owned());
            }
            "room.left" => {
                if agent == self.me {
                    self.member_of.remove(&room);
                    self.members.remove(&room);
                } else if let Some(m) = self.members.get_mut(&room) {
                    m.remove(agent);
                }
            }
            "room.invited" => {
                self.invited.insert(room);
            }
            "kicked" => {
                self.member_of.remove(&room);
                self.invited.remove(&room);
            }
            "room.deleted" => {
                self.member_of.remove(&room);
                self.members.remove(&room);
            }
            _ => {}
        }
    }
}

/// One workload connection's loop state.
struct Worker {
    conn: usize,
    agent: usize,
    client: Client,
    rng: StdRng,
    view: View,
    ids: Arc<Vec<String>>,
    lobby: String,
    registry: Arc<Mutex<Registry>>,
    record: ConnRecord,
    counter: usize,
}

impl Worker {
    fn new(
        conn: usize,
        agent: usize,
        client: Client,
        seed: u64,
        ids: Arc<Vec<String>>,
        registry: Arc<Mutex<Registry>>,
    ) -> Worker {
        let lobby = client.lobby_id();
        let view = View { me: ids[agent].clone(), ..View::default() };
        Worker {
            conn,
            agent,
            client,
            rng: StdRng::seed_from_u64(seed ^ (conn as u64 + 1).wrapping_mul(0x9E37_79B9_7F4A_7C15)),
            view,
            ids,
            lobby,
            registry,
            record: ConnRecord {
                conn,
                agent,
                events: Vec::new(),
                sent: Vec::new(),
                closed: false,
                calls: BTreeMap::new(),
                unexpected: Vec::new(),
                raced_sends: 0,
            },
            counter: 0,
        }
    }

    /// Calls `method`; an error whose code is not in `allowed` is recorded as unexpected.
    /// Events that arrived meanwhile are moved to the record (and the view).
    async fn call(&mut self, method: &'static str, params: Value, allowed: &[i64]) -> Option<Value> {
        let answer = self.client.call(method, params.clone()).await;
        for frame in self.client.drain_buffered_events() {
            self.view.absorb(&frame);
            self.record.events.push(frame);
        }
        let tally = self.record.calls.entry(method).or_default();
        match answer {
            Ok(result) => {
                tally.0 += 1;
                Some(result)
            }
            Err(e) => {
                *tally.1.entry(e.code).or_default() += 1;
                if !allowed.contains(&e.code) {
                    self.record.unexpected.push(format!("conn {} {method} {params}: {e:?}", self.conn));
                }
                None
            }
        }
    }

    fn content(&mut self) -> String {
        self.counter += 1;
        format!("c{} #{}", self.conn, self.counter)
    }

    /// A published room: mostly a live one, sometimes any (maybe deleted).
    fn any_room(&mut self) -> Option<String> {
        let registry = self.registry.lock().unwrap();
        let pool: Vec<&RoomEntry> = if self.rng.random_bool(0.9) {
            registry.rooms.iter().filter(|r| !r.deleted).collect()
        } else {
            registry.rooms.iter().collect()
        };
        (!pool.is_empty()).then(|| pool[self.rng.random_range(0..pool.len())].id.clone())
    }

    /// A published room it is in. (Not any room it is in: the other connection of a
    /// room's creator is in it before the controller is, and must wait too.)
    fn room_i_am_in(&mut self) -> Option<String> {
        let published: HashSet<String> = self.registry.lock().unwrap().rooms.iter().map(|r| r.id.clone()).collect();
        let mut rooms: Vec<&String> = self.view.member_of.iter().filter(|r| published.contains(*r)).collect();
        rooms.sort();
        (!rooms.is_empty()).then(|| rooms[self.rng.random_range(0..rooms.len())].clone())
    }

    /// A live room it is not in, preferably one it was invited to.
    fn room_i_am_not_in(&mut self) -> Option<String> {
        let prefer_invited = self.rng.random_bool(0.5);
        let candidates: Vec<String> = {
            let registry = self.registry.lock().unwrap();
            let outside = registry.live().into_iter().map(|r| r.id).filter(|id| !self.view.member_of.contains(id));
            let outside: Vec<String> = outside.collect();
            let invited: Vec<String> = outside.iter().filter(|id| self.view.invited.contains(*id)).cloned().collect();
            if prefer_invited && !invited.is_empty() {
                invited
            } else {
                outside
            }
        };
        (!candidates.is_empty()).then(|| candidates[self.rng.random_range(0..candidates.len())].clone())
    }

    fn room_i_own(&mut self) -> Option<String> {
        let owned: Vec<String> = {
            let registry = self.registry.lock().unwrap();
            registry.live().into_iter().filter(|r| r.owner == self.agent || self.agent == CTRL).map(|r| r.id).collect()
        };
        (!owned.is_empty()).then(|| owned[self.rng.random_range(0..owned.len())].clone())
    }

    fn random_participant(&mut self) -> usize {
        self.rng.random_range(1..=PARTICIPANTS)
    }

    /// A member of `room` other than the controller (and, mostly, other than the room's
    /// owner: an owner kicked from its private room can no longer see it to manage it),
    /// as far as this connection knows; else any participant.
    fn member_to_kick(&mut self, room: &str) -> String {
        let ctrl = self.ids[CTRL].clone();
        let spare = if self.rng.random_bool(0.9) { self.view.owners.get(room).cloned() } else { None };
        let mut known: Vec<String> = self
            .view
            .members
            .get(room)
            .map(|m| m.iter().filter(|a| **a != ctrl && Some(*a) != spare.as_ref()).cloned().collect())
            .unwrap_or_default();
        known.sort();
        if !known.is_empty() && self.rng.random_bool(0.85) {
            return known[self.rng.random_range(0..known.len())].clone();
        }
        let p = self.random_participant();
        self.ids[p].clone()
    }

    async fn send(&mut self, room: String) {
        let content = self.content();
        let believed_member = self.view.member_of.contains(&room);
        let allowed: &[i64] = &[4010, 4011];
        match self.call("message.send", json!({ "roomId": room, "content": content }), allowed).await {
            Some(result) => {
                let seq = result["seq"].as_i64().expect("seq");
                self.record.sent.push(Sent { seq, conn: self.conn, target: Target::Room(room) });
            }
            None if believed_member => self.record.raced_sends += 1,
            None => {}
        }
    }

    async fn send_lobby(&mut self) {
        let content = self.content();
        let lobby = self.lobby.clone();
        if let Some(result) = self.call("message.send", json!({ "roomId": lobby, "content": content }), &[]).await {
            let seq = result["seq"].as_i64().expect("seq");
            self.record.sent.push(Sent { seq, conn: self.conn, target: Target::Lobby });
        }
    }

    async fn dm(&mut self) {
        let mut to = self.rng.random_range(0..=PARTICIPANTS);
        if to == self.agent {
            to = (to + 1) % (PARTICIPANTS + 1);
        }
        let content = self.content();
        let params = json!({ "toAgentId": self.ids[to], "content": content });
        if let Some(result) = self.call("message.dm", params, &[]).await {
            let seq = result["seq"].as_i64().expect("seq");
            self.record.sent.push(Sent { seq, conn: self.conn, target: Target::Dm(to) });
        }
    }

    /// The owner's (or the controller's) moves on one of its rooms.
    async fn moderate(&mut self) {
        let Some(room) = self.room_i_own() else { return };
        match self.rng.random_range(0..100) {
            0..=49 => {
                let target = self.member_to_kick(&room);
                let mut params = json!({ "roomId": room, "agentId": target });
                if self.rng.random_bool(0.3) {
                    params["reason"] = json!("race");
                }
                self.call("room.kick", params, &[4010, 4011]).await;
            }
            50..=69 => {
                let visibility = if self.rng.random_bool(0.5) { "public" } else { "private" };
                self.call("room.visibility", json!({ "roomId": room, "visibility": visibility }), &[4010]).await;
            }
            70..=84 => {
                // Someone outside the room, as far as this connection knows.
                let mut p = self.random_participant();
                for _ in 0..3 {
                    if !self.view.members.get(&room).is_some_and(|m| m.contains(&self.ids[p])) {
                        break;
                    }
                    p = self.random_participant();
                }
                let params = json!({ "roomId": room, "agentId": self.ids[p] });
                self.call("room.invite", params, &[4010, 4012]).await;
            }
            85..=94 => {
                let name = self.content();
                self.call("room.update", json!({ "roomId": room, "name": name }), &[4010]).await;
            }
            _ => {
                if self.registry.lock().unwrap().live().len() > 3
                    && self.call("room.delete", json!({ "roomId": room }), &[4010]).await.is_some()
                {
                    self.registry.lock().unwrap().mark_deleted(&room);
                }
            }
        }
    }

    /// Creates a room; the controller joins it before anyone else hears of it.
    async fn create(&mut self, ctrl: &mpsc::Sender<JoinRequest>) {
        if self.registry.lock().unwrap().live().len() >= LIVE_ROOMS {
            return;
        }
        let visibility = if self.rng.random_bool(0.5) { "public" } else { "private" };
        let name = self.content();
        let Some(result) = self.call("room.create", json!({ "name": name, "visibility": visibility }), &[]).await
        else {
            return;
        };
        let id = result["room"]["roomId"].as_str().expect("roomId").to_owned();
        let (reply, joined) = oneshot::channel();
        ctrl.send(JoinRequest { room: id.clone(), reply }).await.expect("controller serves joins");
        joined.await.expect("controller answers");
        self.registry.lock().unwrap().rooms.push(RoomEntry { id, owner: self.agent, deleted: false });
    }

    /// A participant connection's loop.
    async fn run_participant(mut self, until: Instant, ctrl: mpsc::Sender<JoinRequest>) -> Self {
        while Instant::now() < until {
            match self.rng.random_range(0..100) {
                0..=29 => {
                    let room = if self.rng.random_bool(0.9) { self.room_i_am_in() } else { None };
                    if let Some(room) = room.or_else(|| self.any_room()) {
                        self.send(room).await;
                    }
                }
                30..=33 => self.send_lobby().await,
                34..=41 => self.dm().await,
                42..=59 => {
                    let room = if self.rng.random_bool(0.8) { self.room_i_am_not_in() } else { None };
                    if let Some(room) = room.or_else(|| self.any_room()) {
                        self.call("room.join", json!({ "roomId": room }), &[4010, 4012, 4013]).await;
                    }
                }
                60..=69 => {
                    let room = if self.rng.random_bool(0.8) { self.room_i_am_in() } else { None };
                    if let Some(room) = room.or_else(|| self.any_room()) {
                        self.call("room.leave", json!({ "roomId": room }), &[4010, 4011]).await;
                    }
                }
                70..=95 => self.moderate().await,
                _ => self.create(&ctrl).await,
            }
        }
        self
    }

    /// The controller's command connection: serves the joins of new rooms, and
    /// moderates, talks and creates rooms meanwhile. After `until`, it serves joins until
    /// every participant has stopped.
    async fn run_controller(mut self, until: Instant, mut joins: mpsc::Receiver<JoinRequest>) -> Self {
        loop {
            while let Ok(request) = joins.try_recv() {
                self.serve_join(request).await;
            }
            if Instant::now() >= until {
                break;
            }
            match self.rng.random_range(0..100) {
                0..=44 => self.moderate().await,
                45..=69 => {
                    if let Some(room) = self.any_room() {
                        let content = self.content();
                        // The controller is in every published room: only deletion refuses it.
                        let params = json!({ "roomId": room, "content": content });
                        if let Some(result) = self.call("message.send", params, &[4010]).await {
                            let seq = result["seq"].as_i64().expect("seq");
                            self.record.sent.push(Sent { seq, conn: self.conn, target: Target::Room(room) });
                        }
                    }
                }
                70..=79 => self.dm().await,
                80..=84 => self.send_lobby().await,
                _ => {
                    if self.registry.lock().unwrap().live().len() < LIVE_ROOMS {
                        let visibility = if self.rng.random_bool(0.5) { "public" } else { "private" };
                        let name = self.content();
                        let params = json!({ "name": name, "visibility": visibility });
                        if let Some(result) = self.call("room.create", params, &[]).await {
                            let id = result["room"]["roomId"].as_str().expect("roomId").to_owned();
                            self.registry.lock().unwrap().rooms.push(RoomEntry { id, owner: CTRL, deleted: false });
                        }
                    }
                }
            }
        }
        while let Some(request) = joins.recv().await {
            self.serve_join(request).await;
        }
        self
    }

    async fn serve_join(&mut self, request: JoinRequest) {
        let room = request.room;
        match self.call("room.join", json!({ "roomId": room }), &[]).await {
            Some(result) if result["room"]["memberCount"] == 2 => {}
            other => self
                .record
                .unexpected
                .push(format!("the controller's join of new room {room} must find only the owner there: {other:?}")),
        }
        let _ = request.reply.send(());
    }

    /// After the workload: keeps reading until every connection has stopped calling,
    /// then syncs, so every event of every call is in.
    async fn finish(mut self, active: Arc<AtomicUsize>) -> ConnRecord {
        active.fetch_sub(1, Ordering::SeqCst);
        self.record.events.extend(listen_until_idle(&mut self.client, &active).await);
        self.record.closed = self.client.closed;
        self.record
    }
}

struct JoinRequest {
    room: String,
    reply: oneshot::Sender<()>,
}

/// Reads events while any connection is still calling, then syncs and takes the rest.
async fn listen_until_idle(client: &mut Client, active: &AtomicUsize) -> Vec<Value> {
    let mut events = Vec::new();
    while active.load(Ordering::SeqCst) > 0 && !client.closed {
        if let Some(event) = client.next_event_within(Duration::from_millis(20)).await {
            events.push(event);
        }
    }
    if !client.closed {
        events.extend(client.take_all_events().await);
    }
    events
}

// ---- the analysis ----

/// What the observer's stream says about rooms.
#[derive(Default)]
struct Replay {
    /// Members of the message's room when it committed, by seq (room messages).
    members_at: HashMap<i64, BTreeSet<String>>,
    /// Room of each room message the observer saw.
    room_of: HashMap<i64, String>,
    /// The observer's events about each room, in order (`method` and `params`).
    per_room: HashMap<String, Vec<Value>>,
    membership_changes: usize,
    rooms: usize,
    /// Messages whose room's previous event was a membership change.
    messages_next_to_a_change: usize,
}

fn room_event(frame: &Value) -> Option<String> {
    let method = frame["method"].as_str()?;
    matches!(
        method,
        "message"
            | "room.created"
            | "room.joined"
            | "room.left"
            | "room.deleted"
            | "room.visibilityChanged"
            | "room.updated"
    )
    .then(|| frame["params"]["roomId"].as_str().map(str::to_owned))
    .flatten()
}

fn strip(frame: &Value) -> Value {
    json!({ "method": frame["method"], "params": frame["params"] })
}

/// Replays the observer's stream. A room is analysed only if the observer saw it from
/// its creation with the controller in it from its first change on; otherwise
/// membership at commit time is not known from outside, and that is a failure.
fn replay(observer: &[Value], ctrl_id: &str, lobby: &str, problems: &mut Vec<String>) -> Replay {
    let mut out = Replay::default();
    let mut members: HashMap<String, BTreeSet<String>> = HashMap::new();
    let mut deleted: HashSet<String> = HashSet::new();
    for frame in observer {
        let Some(room) = room_event(frame) else { continue };
        if room == lobby {
            continue;
        }
        let p = &frame["params"];
        let method = frame["method"].as_str().unwrap_or_default();
        let history = out.per_room.entry(room.clone()).or_default();
        history.push(strip(frame));
        if method == "room.created" {
            out.rooms += 1;
            members.insert(room.clone(), BTreeSet::from([p["ownerId"].as_str().unwrap_or_default().to_owned()]));
            continue;
        }
        let Some(set) = members.get_mut(&room) else {
            problems.push(format!("observer: {frame} about room {room} before its room.created"));
            continue;
        };
        if history.len() == 2 && !set.contains(ctrl_id) {
            // The room was created by a participant: the next change must be the
            // controller's own join, or the observer missed what happened in between.
            if !(method == "room.joined" && p["agentId"] == ctrl_id) {
                problems.push(format!(
                    "observer: room {room}'s first change after creation is not the controller's join: {frame}"
                ));
            }
        }
        if deleted.contains(&room) {
            problems.push(format!("observer: {frame} after room.deleted"));
        }
        let agent = p["agentId"].as_str().unwrap_or_default().to_owned();
        match method {
            "room.joined" => {
                out.membership_changes += 1;
                if !set.insert(agent) {
                    problems.push(format!("observer: {frame} for a member"));
                }
            }
            "room.left" => {
                out.membership_changes += 1;
                if !set.remove(&agent) {
                    problems.push(format!("observer: {frame} for a non-member"));
                }
            }
            "room.deleted" => {
                out.membership_changes += 1;
                set.clear();
                deleted.insert(room.clone());
            }
            "message" => {
                let seq = p["message"]["seq"].as_i64().unwrap_or(-1);
                let sender = p["message"]["senderId"].as_str().unwrap_or_default();
                let previous = history.len().checked_sub(2).map(|i| history[i]["method"].clone());
                if previous.is_some_and(|m| m == "room.joined" || m == "room.left") {
                    out.messages_next_to_a_change += 1;
                }
                if !set.contains(ctrl_id) {
                    problems.push(format!("observer: message {seq} in {room} while the controller is not a member"));
                }
                if !set.contains(sender) {
                    problems.push(format!("message {seq} in {room} committed from a non-member {sender}"));
                }
                out.members_at.insert(seq, set.clone());
                out.room_of.insert(seq, room.clone());
            }
            _ => {}
        }
    }
    out
}

/// A receiver's per-connection checks; violations go to `problems`.
struct Receiver<'a> {
    label: String,
    conn: usize,
    agent_id: &'a str,
    is_controller: bool,
}

struct Context<'a> {
    replay: &'a Replay,
    lobby: &'a str,
    /// seq → the acknowledged send.
    sent: &'a HashMap<i64, Sent>,
    ids: &'a [String],
}

#[derive(Default)]
struct Totals {
    events: usize,
    messages_checked: usize,
    dms_checked: usize,
    kicked_events: usize,
}

fn check_receiver(
    who: &Receiver<'_>,
    events: &[Value],
    cx: &Context<'_>,
    totals: &mut Totals,
    problems: &mut Vec<String>,
) -> HashSet<i64> {
    let mut member_of: HashSet<String> = HashSet::new();
    // Rooms this connection was kicked from and has not rejoined since.
    let mut kicked: HashSet<String> = HashSet::new();
    let mut seen: HashSet<i64> = HashSet::new();
    let mut last_seq: HashMap<String, i64> = HashMap::new();
    let mut last_dm = i64::MIN;
    let mut per_room: HashMap<String, Vec<Value>> = HashMap::new();
    let mut fail = |what: String| problems.push(format!("{}: {what}", who.label));

    for frame in events {
        totals.events += 1;
        let method = frame["method"].as_str().unwrap_or_default();
        let p = &frame["params"];
        let room = p["roomId"].as_str().unwrap_or_default().to_owned();
        let about_kicked =
            |room: &str| if kicked.contains(room) { " (after its own kick, before rejoining)" } else { "" };
        if let Some(r) = room_event(frame) {
            if r != cx.lobby {
                per_room.entry(r).or_default().push(strip(frame));
            }
        }
        match method {
            "message" => {
                totals.messages_checked += 1;
                let seq = p["message"]["seq"].as_i64().unwrap_or(-1);
                if p["message"]["roomId"] != p["roomId"] {
                    fail(format!(
                        "message {seq}: roomId {} but message.roomId {}",
                        p["roomId"], p["message"]["roomId"]
                    ));
                }
                if !seen.insert(seq) {
                    fail(format!("message {seq} received twice"));
                }
                match cx.sent.get(&seq) {
                    Some(sent) if sent.conn == who.conn => fail(format!("its own message {seq} came back as an event")),
                    Some(Sent { target: Target::Dm(_), .. }) => fail(format!("DM {seq} arrived as a room message")),
                    Some(_) => {}
                    None => fail(format!("message {seq} that no one was told was sent")),
                }
                if room != cx.lobby {
                    match cx.replay.members_at.get(&seq) {
                        None => fail(format!("message {seq} in {room}, which the observer never saw")),
                        Some(members) if !members.contains(who.agent_id) => fail(format!(
                            "PRIVACY: message {seq} in {room} but its agent was not a member when it committed{}",
                            about_kicked(&room)
                        )),
                        Some(_) => {}
                    }
                    if !member_of.contains(&room) {
                        fail(format!(
                            "message {seq} in {room} while not a member by its own events{}",
                            about_kicked(&room)
                        ));
                    }
                }
                let last = last_seq.entry(room.clone()).or_insert(i64::MIN);
                if seq <= *last {
                    fail(format!("message {seq} in {room} after {last}: seqs must increase"));
                }
                *last = seq;
            }
            "dm" => {
                totals.dms_checked += 1;
                let seq = p["seq"].as_i64().unwrap_or(-1);
                if p["toAgentId"] != who.agent_id {
                    fail(format!("PRIVACY: DM {seq} meant for {}", p["toAgentId"]));
                }
                if !seen.insert(seq) {
                    fail(format!("DM {seq} received twice"));
                }
                match cx.sent.get(&seq) {
                    Some(Sent { target: Target::Dm(to), conn, .. }) => {
                        if cx.ids[*to] != who.agent_id {
                            fail(format!("PRIVACY: DM {seq} sent to {} reached it", cx.ids[*to]));
                        }
                        if *conn == who.conn {
                            fail(format!("its own DM {seq} came back"));
                        }
                    }
                    other => fail(format!("DM {seq} that matches no acknowledged DM: {other:?}")),
                }
                if seq <= last_dm {
                    fail(format!("DM {seq} after {last_dm}: seqs must increase"));
                }
                last_dm = seq;
            }
            "kicked" => {
                totals.kicked_events += 1;
                if !member_of.remove(&room) {
                    fail(format!("kicked from {room}, which it was not in"));
                }
                kicked.insert(room);
            }
            "room.left" if p["agentId"] == who.agent_id => {
                // After `kicked`, the kicked agent also gets the room's `room.left`.
                let was_member = member_of.remove(&room);
                if !was_member && !kicked.contains(&room) {
                    fail(format!("room.left of itself from {room}, which it was not in"));
                }
            }
            "room.joined" if p["agentId"] == who.agent_id => {
                if !member_of.insert(room.clone()) {
                    fail(format!("room.joined of itself to {room}, which it was already in"));
                }
                kicked.remove(&room);
            }
            "room.created" => {
                if p["ownerId"] == who.agent_id {
                    member_of.insert(room);
                } else if p["visibility"] == "private" && !who.is_controller {
                    fail(format!("PRIVACY: room.created of someone else's private room {room}"));
                }
            }
            "room.deleted" => {
                if !member_of.remove(&room) && !who.is_controller {
                    fail(format!("room.deleted of {room}, which it was not in{}", about_kicked(&room)));
                }
            }
            "room.joined" | "room.left" | "room.visibilityChanged" | "room.updated" => {
                if !member_of.contains(&room) {
                    fail(format!("{method} of {room}, which it was not in{}: {p}", about_kicked(&room)));
                }
            }
            "room.invited" => {
                if who.is_controller {
                    fail(format!("room.invited to the controller, which the workload never invites: {p}"));
                }
            }
            "presence" => {}
            other => fail(format!("unexpected event {other}: {p}")),
        }
    }

    // Same events, same order as the observer, room by room.
    for (room, mine) in per_room {
        let Some(theirs) = cx.replay.per_room.get(&room) else {
            fail(format!("{} events about {room}, a room the observer never heard of", mine.len()));
            continue;
        };
        let mut at = 0;
        for event in &mine {
            match theirs[at..].iter().position(|e| e == event) {
                Some(offset) => at += offset + 1,
                None => {
                    fail(format!("{event} about {room} is not in the observer's stream in this order"));
                    break;
                }
            }
        }
    }
    seen
}

fn seed() -> u64 {
    match std::env::var("BROODLINK_RACE_SEED") {
        Ok(seed) => seed.parse().expect("BROODLINK_RACE_SEED is a u64"),
        Err(_) => rand::rng().random(),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn messages_and_events_reach_only_members_at_commit_time_under_concurrent_churn() {
    let seed = seed();
    let secs: f64 = std::env::var("BROODLINK_RACE_SECS").ok().and_then(|s| s.parse().ok()).unwrap_or(3.0);
    eprintln!("privacy_race: seed {seed} (rerun with BROODLINK_RACE_SEED={seed}), {secs} s");
    let started = Instant::now();

    // Commits fsynced at checkpoints only: more operations, hence more interleavings, per
    // second; what is checked does not depend on durability.
    let server = TestServer::start_with(|c| {
        c.max_rooms = 1000;
        c.synchronous = broodlink::store::Durability::Normal;
    })
    .await;
    let mut ctrl = server.controller().await;
    let mut observer = server.controller().await;
    let lobby = ctrl.lobby_id();

    // Agents: 0 is the controller, 1..=PARTICIPANTS participants.
    let mut ids = vec![ctrl.agent_id()];
    let mut clients: Vec<(usize, Client)> = Vec::new();
    for p in 1..=PARTICIPANTS {
        let agent = server.participant(&mut ctrl, &format!("P{p}")).await;
        ids.push(agent.id.clone());
        if p <= TWO_CONNECTIONS {
            let mut second = Client::connect(&server.url()).await;
            second.auth(&agent.key).await;
            clients.push((p, second));
        }
        clients.push((p, agent.client));
    }
    let ids = Arc::new(ids);
    ctrl.clear_events().await;
    observer.clear_events().await;
    for (_, client) in clients.iter_mut() {
        client.clear_events().await;
    }
    let connections = clients.len() + 2;

    let registry = Arc::new(Mutex::new(Registry::default()));
    let mut ctrl_worker = Worker::new(0, CTRL, ctrl, seed, ids.clone(), registry.clone());
    let mut workers: Vec<Worker> = clients
        .into_iter()
        .enumerate()
        .map(|(n, (agent, client))| Worker::new(n + 1, agent, client, seed, ids.clone(), registry.clone()))
        .collect();

    // Starting rooms: two of the controller's, and one per two-connection participant
    // (the controller joins those before anything else happens in them).
    for visibility in ["public", "private"] {
        let name = ctrl_worker.content();
        let result = ctrl_worker
            .call("room.create", json!({ "name": name, "visibility": visibility }), &[])
            .await
            .expect("room.create");
        let id = result["room"]["roomId"].as_str().unwrap().to_owned();
        registry.lock().unwrap().rooms.push(RoomEntry { id, owner: CTRL, deleted: false });
    }
    for (n, worker) in workers.iter_mut().filter(|w| w.conn % 2 == 0).take(TWO_CONNECTIONS).enumerate() {
        let visibility = if n % 2 == 0 { "public" } else { "private" };
        let name = worker.content();
        let result = worker
            .call("room.create", json!({ "name": name, "visibility": visibility }), &[])
            .await
            .expect("room.create");
        let id = result["room"]["roomId"].as_str().unwrap().to_owned();
        let (reply, _answer) = oneshot::channel();
        ctrl_worker.serve_join(JoinRequest { room: id.clone(), reply }).await;
        registry.lock().unwrap().rooms.push(RoomEntry { id, owner: worker.agent, deleted: false });
    }

    // The race.
    let active = Arc::new(AtomicUsize::new(workers.len() + 1));
    let observing = {
        let active = active.clone();
        tokio::spawn(async move {
            let events = listen_until_idle(&mut observer, &active).await;
            (events, observer.closed)
        })
    };
    let until = Instant::now() + Duration::from_secs_f64(secs);
    let (joins_tx, joins_rx) = mpsc::channel(64);
    let mut tasks = Vec::new();
    {
        let active = active.clone();
        tasks.push(tokio::spawn(async move { ctrl_worker.run_controller(until, joins_rx).await.finish(active).await }));
    }
    for worker in workers {
        let active = active.clone();
        let joins = joins_tx.clone();
        tasks.push(tokio::spawn(async move {
            let worker = worker.run_participant(until, joins).await;
            worker.finish(active).await
        }));
    }
    drop(joins_tx);
    let mut records = Vec::new();
    for task in tasks {
        records.push(task.await.expect("worker task"));
    }
    let (observed, observer_closed) = observing.await.expect("observer task");
    let race_time = started.elapsed();

    // ---- checks ----
    let mut problems: Vec<String> = Vec::new();
    if observer_closed {
        problems.push("the observer's connection was closed (slow consumer?): nothing can be checked soundly".into());
    }
    for record in &records {
        if record.closed {
            problems.push(format!("conn {} was closed by the server", record.conn));
        }
        problems.extend(record.unexpected.iter().cloned());
    }
    let replay = replay(&observed, &ids[CTRL], &lobby, &mut problems);
    let sent: HashMap<i64, Sent> = records.iter().flat_map(|r| r.sent.iter().cloned()).map(|s| (s.seq, s)).collect();
    let cx = Context { replay: &replay, lobby: &lobby, sent: &sent, ids: &ids };
    let mut totals = Totals::default();

    // Every connection, the observer included (connection number `usize::MAX`).
    let mut received: Vec<(usize, usize, HashSet<i64>)> = Vec::new();
    for record in &records {
        let who = Receiver {
            label: format!("conn {} (P{})", record.conn, record.agent),
            conn: record.conn,
            agent_id: &ids[record.agent],
            is_controller: record.agent == CTRL,
        };
        let seen = check_receiver(&who, &record.events, &cx, &mut totals, &mut problems);
        received.push((record.conn, record.agent, seen));
    }
    let observer_who =
        Receiver { label: "observer".into(), conn: usize::MAX, agent_id: &ids[CTRL], is_controller: true };
    let seen = check_receiver(&observer_who, &observed, &cx, &mut totals, &mut problems);
    received.push((usize::MAX, CTRL, seen));

    // Completeness: exactly the members at commit, every connection but the sender's.
    let mut deliveries = 0usize;
    let mut room_messages = 0usize;
    let mut lobby_messages = 0usize;
    let mut dms = 0usize;
    for s in sent.values() {
        let should_get = |agent: usize| -> bool {
            match &s.target {
                Target::Lobby => true,
                Target::Dm(to) => *to == agent,
                Target::Room(_) => replay.members_at.get(&s.seq).is_some_and(|m| m.contains(&ids[agent])),
            }
        };
        match &s.target {
            Target::Lobby => lobby_messages += 1,
            Target::Dm(_) => dms += 1,
            Target::Room(room) => {
                room_messages += 1;
                if replay.room_of.get(&s.seq) != Some(room) {
                    problems.push(format!("acknowledged message {} in {room} never reached the observer", s.seq));
                }
            }
        }
        for (conn, agent, seen) in &received {
            if *conn != s.conn && should_get(*agent) {
                deliveries += 1;
                if !seen.contains(&s.seq) {
                    problems.push(format!("conn {conn} (P{agent}) missed message {} ({:?})", s.seq, s.target));
                }
            }
        }
    }

    let mut calls: BTreeMap<&str, (usize, BTreeMap<i64, usize>)> = BTreeMap::new();
    for record in &records {
        for (method, (ok, errors)) in &record.calls {
            let entry = calls.entry(method).or_default();
            entry.0 += ok;
            for (code, n) in errors {
                *entry.1.entry(*code).or_default() += n;
            }
        }
    }
    let calls: Vec<String> = calls.iter().map(|(m, (ok, errs))| format!("{m} {ok} ok {errs:?}")).collect();
    eprintln!(
        "privacy_race: seed {seed}: {connections} connections, {} rooms, {:.1?} in all\n  calls: {}\n  committed: {room_messages} room messages, {lobby_messages} lobby messages, {dms} DMs; \
         observer saw {} membership changes ({} messages right after one), connections got {} `kicked`, {} sends refused to a sender that had not yet read that it was out\n  checked: {} events, {} message events against membership at commit, {} DM events, {deliveries} expected deliveries",
        replay.rooms,
        race_time,
        calls.join(", "),
        replay.membership_changes,
        replay.messages_next_to_a_change,
        totals.kicked_events,
        records.iter().map(|r| r.raced_sends).sum::<usize>(),
        totals.events,
        totals.messages_checked,
        totals.dms_checked,
    );
    assert!(
        problems.is_empty(),
        "seed {seed} (rerun with BROODLINK_RACE_SEED={seed}): {} problem(s), the first ones:\n{}",
        problems.len(),
        problems.iter().take(30).cloned().collect::<Vec<_>>().join("\n")
    );
}

/// The checks above are only worth something if they fail: a synthetic run where Bob
/// gets a message from before he joined, one after his kick, and one twice.
#[test]
fn race_checks_flag_messages_outside_membership_after_a_kick_and_twice() {
    let ids: Vec<String> = ["ctrl", "alice", "bob"].map(str::to_owned).to_vec();
    let ev = |method: &str, params: Value| json!({ "jsonrpc": "2.0", "method": method, "params": params });
    let msg = |seq: i64| {
        ev("message", json!({ "roomId": "R", "message": { "roomId": "R", "seq": seq, "senderId": "alice" } }))
    };
    let created = ev("room.created", json!({ "roomId": "R", "ownerId": "alice", "visibility": "public", "name": "r" }));
    let bob_joined = ev("room.joined", json!({ "roomId": "R", "agentId": "bob" }));
    let bob_left = ev("room.left", json!({ "roomId": "R", "agentId": "bob" }));
    let observer = vec![
        created.clone(),
        ev("room.joined", json!({ "roomId": "R", "agentId": "ctrl" })),
        msg(1),
        bob_joined.clone(),
        msg(2),
        bob_left.clone(),
        msg(3),
    ];
    let sent: HashMap<i64, Sent> =
        (1..=3).map(|seq| (seq, Sent { seq, conn: 1, target: Target::Room("R".into()) })).collect();
    let mut problems = Vec::new();
    let replay = replay(&observer, "ctrl", "lobby", &mut problems);
    assert!(problems.is_empty(), "{problems:?}");
    let cx = Context { replay: &replay, lobby: "lobby", sent: &sent, ids: &ids };
    let bob = Receiver { label: "bob".into(), conn: 2, agent_id: "bob", is_controller: false };
    let kicked = ev("kicked", json!({ "roomId": "R", "reason": "out" }));

    let honest = vec![created.clone(), bob_joined.clone(), msg(2), kicked.clone(), bob_left.clone()];
    check_receiver(&bob, &honest, &cx, &mut Totals::default(), &mut problems);
    assert!(problems.is_empty(), "{problems:?}");

    let leaky = vec![created, msg(1), bob_joined, msg(2), kicked, bob_left, msg(3), msg(2)];
    check_receiver(&bob, &leaky, &cx, &mut Totals::default(), &mut problems);
    let has = |needle: &str| problems.iter().any(|p| p.contains(needle));
    assert!(has("PRIVACY: message 1 in R but its agent was not a member when it committed"), "{problems:#?}");
    assert!(
        has("PRIVACY: message 3 in R but its agent was not a member when it committed (after its own kick"),
        "{problems:#?}"
    );
    assert!(has("message 2 received twice"), "{problems:#?}");
    assert!(has("message 2 in R after 3: seqs must increase"), "{problems:#?}");
    assert!(has("is not in the observer's stream in this order"), "{problems:#?}");
}
