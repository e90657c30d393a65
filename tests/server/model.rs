//! A state-machine property test of rooms, visibility and membership.
//!
//! Proptest generates sequences of operations by the controller and three participants
//! (create, join, leave, invite, kick, visibility, update, delete, take ownership,
//! send, info, history). Each operation is applied to a real server over the harness
//! and to a small model of what `docs/BEHAVIOUR.md` and `PROTOCOL.md` say should
//! happen. After every step the test asserts that:
//!
//! - the result or error code matches the model (and results carrying a room match the
//!   model's view of that room for the caller);
//! - every agent's `room.list` matches the model (which rooms it may see, and each
//!   room's owner, visibility, member count, `isMember` and `isInvited`);
//! - every agent received exactly the events the model says it should for that step
//!   (`presence` aside), in order.
//!
//! One fresh server per case (starting it and connecting the four agents takes about
//! 0.1 s), on a current-thread runtime built inside the case, since proptest's closures
//! are synchronous.
//! `PROPTEST_CASES` overrides the number of cases and `PROPTEST_RNG_SEED` fixes the
//! seed; a failure is shrunk and printed (no regression file is written).

use std::collections::BTreeSet;

use proptest::prelude::*;
use proptest::test_runner::Config as ProptestConfig;
use serde_json::{json, Map, Value};

use crate::harness::*;

const CTRL: usize = 0;
const AGENTS: usize = 4;
const NAMES: [&str; AGENTS] = ["Controller", "P1", "P2", "P3"];
const LOBBY_NAME: &str = "Lobby";
/// Small, so that sequences reach the limit (and deleting a room frees a place).
const MAX_ROOMS: u32 = 4;
const UNKNOWN_ROOM: &str = "00000000-0000-4000-8000-000000000000";
const UNKNOWN_AGENT: &str = "11111111-1111-4111-8111-111111111111";

// ---- operations ----

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Vis {
    Public,
    Private,
}

impl Vis {
    fn as_str(self) -> &'static str {
        match self {
            Vis::Public => "public",
            Vis::Private => "private",
        }
    }
}

/// A room as the generator names it, resolved against the model when the operation
/// runs (so shrinking keeps sequences meaningful): the nth room created so far (deleted
/// ones included), the nth live room the actor is a member of, or owns (any live room
/// for the controller). The last two fall back to `Nth` when there is none.
#[derive(Debug, Clone, Copy)]
enum RoomSel {
    Lobby,
    Unknown,
    Nth(usize),
    Joined(usize),
    Owned(usize),
}

/// An agent as the generator names it: one of the four, the nth member of the room
/// the operation is about (falling back to `Agent`), or an id that names no agent.
#[derive(Debug, Clone, Copy)]
enum Target {
    Agent(usize),
    Member(usize),
    Unknown,
}

#[derive(Debug, Clone)]
enum Op {
    /// `visibility: None` leaves the default; `blank_name` sends "   " (-32602).
    Create {
        actor: usize,
        visibility: Option<Vis>,
        description: Option<&'static str>,
        blank_name: bool,
    },
    Join {
        actor: usize,
        room: RoomSel,
    },
    Leave {
        actor: usize,
        room: RoomSel,
    },
    Invite {
        actor: usize,
        room: RoomSel,
        target: Target,
    },
    Kick {
        actor: usize,
        room: RoomSel,
        target: Target,
        reason: bool,
    },
    Visibility {
        actor: usize,
        room: RoomSel,
        visibility: Vis,
    },
    /// Neither a new name nor a description → -32602. `Some("")` clears the description.
    Update {
        actor: usize,
        room: RoomSel,
        rename: bool,
        description: Option<&'static str>,
    },
    Delete {
        actor: usize,
        room: RoomSel,
    },
    TakeOwnership {
        actor: usize,
        room: RoomSel,
    },
    Send {
        actor: usize,
        room: RoomSel,
    },
    Info {
        actor: usize,
        room: RoomSel,
    },
    History {
        actor: usize,
        room: RoomSel,
    },
}

fn actor() -> impl Strategy<Value = usize> {
    0..AGENTS
}

fn room_sel() -> impl Strategy<Value = RoomSel> {
    prop_oneof![
        4 => (0..6usize).prop_map(RoomSel::Nth),
        3 => (0..4usize).prop_map(RoomSel::Joined),
        3 => (0..4usize).prop_map(RoomSel::Owned),
        1 => Just(RoomSel::Lobby),
        1 => Just(RoomSel::Unknown),
    ]
}

fn target() -> impl Strategy<Value = Target> {
    prop_oneof![
        5 => (0..AGENTS).prop_map(Target::Agent),
        4 => (0..4usize).prop_map(Target::Member),
        1 => Just(Target::Unknown),
    ]
}

fn vis() -> impl Strategy<Value = Vis> {
    prop_oneof![Just(Vis::Public), Just(Vis::Private)]
}

fn create() -> impl Strategy<Value = Op> {
    (actor(), prop::option::of(vis()), prop::option::of(Just("about")), prop::bool::weighted(0.05)).prop_map(
        |(actor, visibility, description, blank_name)| Op::Create { actor, visibility, description, blank_name },
    )
}

/// A sequence: one to three rooms created first (so most operations have rooms to act
/// on), then up to 27 operations of any kind.
fn ops() -> impl Strategy<Value = Vec<Op>> {
    (prop::collection::vec(create(), 1..=3), prop::collection::vec(op(), 0..=27)).prop_map(|(mut first, rest)| {
        first.extend(rest);
        first
    })
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        3 => create(),
        4 => (actor(), room_sel()).prop_map(|(actor, room)| Op::Join { actor, room }),
        2 => (actor(), room_sel()).prop_map(|(actor, room)| Op::Leave { actor, room }),
        3 => (actor(), room_sel(), target()).prop_map(|(actor, room, target)| Op::Invite { actor, room, target }),
        3 => (actor(), room_sel(), target(), any::<bool>())
            .prop_map(|(actor, room, target, reason)| Op::Kick { actor, room, target, reason }),
        3 => (actor(), room_sel(), vis()).prop_map(|(actor, room, visibility)| Op::Visibility { actor, room, visibility }),
        1 => (actor(), room_sel(), any::<bool>(), prop::option::of(prop_oneof![Just("new words"), Just("")]))
            .prop_map(|(actor, room, rename, description)| Op::Update { actor, room, rename, description }),
        1 => (actor(), room_sel()).prop_map(|(actor, room)| Op::Delete { actor, room }),
        1 => (actor(), room_sel()).prop_map(|(actor, room)| Op::TakeOwnership { actor, room }),
        3 => (actor(), room_sel()).prop_map(|(actor, room)| Op::Send { actor, room }),
        1 => (actor(), room_sel()).prop_map(|(actor, room)| Op::Info { actor, room }),
        1 => (actor(), room_sel()).prop_map(|(actor, room)| Op::History { actor, room }),
    ]
}

// ---- the model ----

struct MRoom {
    id: String,
    name: String,
    description: Option<String>,
    owner: usize,
    visibility: Vis,
    /// In the order they joined.
    members: Vec<usize>,
    invited: BTreeSet<usize>,
    deleted: bool,
    created_at: i64,
    /// `(sender, content)`, oldest first.
    messages: Vec<(usize, String)>,
}

/// A room reference resolved against the model.
#[derive(Debug, Clone, Copy)]
enum Res {
    Lobby,
    Unknown,
    Room(usize),
}

struct Model {
    ids: Vec<String>,
    lobby: String,
    rooms: Vec<MRoom>,
    lobby_messages: Vec<(usize, String)>,
}

/// What the model expects each agent to receive for one step: `(method, params)`.
type Expected = Vec<Vec<(String, Value)>>;

impl Model {
    fn resolve(&self, sel: RoomSel, actor: usize) -> Res {
        let live = |keep: &dyn Fn(&MRoom) -> bool| -> Vec<usize> {
            (0..self.rooms.len()).filter(|&i| !self.rooms[i].deleted && keep(&self.rooms[i])).collect()
        };
        let pick = |candidates: Vec<usize>, n: usize| match candidates.len() {
            0 => self.resolve(RoomSel::Nth(n), actor),
            len => Res::Room(candidates[n % len]),
        };
        match sel {
            RoomSel::Lobby => Res::Lobby,
            RoomSel::Unknown => Res::Unknown,
            RoomSel::Nth(_) if self.rooms.is_empty() => Res::Unknown,
            RoomSel::Nth(i) => Res::Room(i % self.rooms.len()),
            RoomSel::Joined(n) => pick(live(&|r| r.members.contains(&actor)), n),
            RoomSel::Owned(n) => pick(live(&|r| r.owner == actor || actor == CTRL), n),
        }
    }

    /// Resolves a target against the room `res` the operation is about.
    fn target(&self, target: Target, res: Res) -> Target {
        match (target, res) {
            (Target::Member(n), Res::Room(i)) if !self.rooms[i].members.is_empty() => {
                Target::Agent(self.rooms[i].members[n % self.rooms[i].members.len()])
            }
            (Target::Member(n), _) => Target::Agent(n % AGENTS),
            (other, _) => other,
        }
    }

    fn room_id(&self, res: Res) -> String {
        match res {
            Res::Lobby => self.lobby.clone(),
            Res::Unknown => UNKNOWN_ROOM.to_owned(),
            Res::Room(i) => self.rooms[i].id.clone(),
        }
    }

    /// The id of a resolved target.
    fn agent_id(&self, target: Target) -> String {
        match target {
            Target::Agent(a) => self.ids[a].clone(),
            Target::Member(_) | Target::Unknown => UNKNOWN_AGENT.to_owned(),
        }
    }

    /// BEHAVIOUR.md: public, or the agent is a member or holds an invitation; the
    /// controller sees every room (deleted ones too, for reading).
    fn visible(&self, i: usize, a: usize) -> bool {
        let r = &self.rooms[i];
        a == CTRL || (!r.deleted && (r.visibility == Vis::Public || r.members.contains(&a) || r.invited.contains(&a)))
    }

    /// A live room the agent may see (`None`: the lobby), else 4010.
    fn live(&self, res: Res, a: usize) -> Result<Option<usize>, i64> {
        match res {
            Res::Unknown => Err(4010),
            Res::Lobby => Ok(None),
            Res::Room(i) if self.rooms[i].deleted || !self.visible(i, a) => Err(4010),
            Res::Room(i) => Ok(Some(i)),
        }
    }

    /// The owner methods: 4010 for what the caller may not see, 4030 for the lobby,
    /// 4003 unless the caller owns the room or is the controller.
    fn owned(&self, res: Res, a: usize) -> Result<usize, i64> {
        let i = self.live(res, a)?.ok_or(4030)?;
        if self.rooms[i].owner != a && a != CTRL {
            return Err(4003);
        }
        Ok(i)
    }

    fn live_count(&self) -> usize {
        self.rooms.iter().filter(|r| !r.deleted).count()
    }

    /// The `Room` object the agent should be shown (without `createdAt`).
    fn room_view(&self, i: usize, a: usize) -> Value {
        let r = &self.rooms[i];
        strip_nulls(json!({
            "roomId": r.id,
            "name": r.name,
            "description": r.description,
            "ownerId": self.ids[r.owner],
            "ownerName": NAMES[r.owner],
            "visibility": r.visibility.as_str(),
            "isLobby": false,
            "memberCount": r.members.len(),
            "isMember": r.members.contains(&a),
            "isInvited": r.invited.contains(&a),
        }))
    }

    fn lobby_view(&self) -> Value {
        json!({
            "roomId": self.lobby,
            "name": LOBBY_NAME,
            "ownerId": self.ids[CTRL],
            "visibility": "public",
            "isLobby": true,
            "memberCount": AGENTS,
            "isMember": true,
        })
    }

    /// `room.list` for agent `a`: the lobby, then the live rooms it may see.
    fn list(&self, a: usize) -> Vec<Value> {
        let mut rooms = vec![self.lobby_view()];
        let mut visible: Vec<usize> =
            (0..self.rooms.len()).filter(|&i| !self.rooms[i].deleted && self.visible(i, a)).collect();
        visible.sort_by(|&x, &y| {
            (self.rooms[x].created_at, &self.rooms[x].id).cmp(&(self.rooms[y].created_at, &self.rooms[y].id))
        });
        rooms.extend(visible.into_iter().map(|i| {
            let mut view = self.room_view(i, a);
            view["createdAt"] = json!(self.rooms[i].created_at);
            view
        }));
        rooms
    }
}

/// The model, and the first difference found between a successful result's content and
/// the model's (reported once the step is done).
struct Checked {
    model: Model,
    mismatch: Option<String>,
}

impl std::ops::Deref for Checked {
    type Target = Model;
    fn deref(&self) -> &Model {
        &self.model
    }
}

impl std::ops::DerefMut for Checked {
    fn deref_mut(&mut self) -> &mut Model {
        &mut self.model
    }
}

impl Checked {
    fn expect(&mut self, what: &str, actual: &Value, expected: &Value) {
        if self.mismatch.is_none() && strip_nulls(actual.clone()) != strip_nulls(expected.clone()) {
            self.mismatch = Some(format!("{what}: expected {expected}, got {actual}"));
        }
    }

    /// Checks a result's `room` against the model's view for `a`.
    fn expect_room(&mut self, actual: &Value, i: usize, a: usize) {
        let mut room = actual["room"].clone();
        if let Some(obj) = room.as_object_mut() {
            obj.remove("createdAt");
        }
        let expected = self.room_view(i, a);
        self.expect("result room", &room, &expected);
    }

    fn apply(&mut self, step: usize, op: &Op, real: &Result<Value, RpcError>) -> Result<Expected, String> {
        let mut events: Expected = vec![Vec::new(); AGENTS];
        let outcome = self.step(step, op, real.as_ref().ok(), &mut events);
        let checked = match (outcome, real) {
            (Err(code), Err(e)) if e.code == code => Ok(events),
            (Err(code), Err(e)) => Err(format!("expected error {code}, got {e:?}")),
            (Err(code), Ok(result)) => Err(format!("expected error {code}, got result {result}")),
            (Ok(()), Err(e)) => Err(format!("expected success, got {e:?}")),
            (Ok(()), Ok(_)) => Ok(events),
        };
        match (checked, self.mismatch.take()) {
            (Ok(_), Some(mismatch)) => Err(mismatch),
            (checked, _) => checked,
        }
    }

    /// Sends `(method, params)` to each agent in `to` once, in that order.
    fn tell(events: &mut Expected, to: &[usize], method: &str, params: Value) {
        let mut seen = BTreeSet::new();
        for &a in to {
            if seen.insert(a) {
                events[a].push((method.to_owned(), strip_nulls(params.clone())));
            }
        }
    }

    /// The model's side of one step. `result` is the server's result, when it succeeded
    /// (room ids, seqs and times come from it). Returns the expected error code, if any.
    fn step(&mut self, step: usize, op: &Op, result: Option<&Value>, events: &mut Expected) -> Result<(), i64> {
        let null = Value::Null;
        let result = result.unwrap_or(&null);
        match *op {
            Op::Create { actor, visibility, description, blank_name } => {
                if blank_name {
                    return Err(-32602);
                }
                if self.live_count() >= MAX_ROOMS as usize {
                    return Err(4040);
                }
                let vis = visibility.unwrap_or(Vis::Public);
                let id = result["room"]["roomId"].as_str().unwrap_or_default().to_owned();
                let created_at = result["room"]["createdAt"].as_i64().unwrap_or_default();
                self.rooms.push(MRoom {
                    id: id.clone(),
                    name: format!("room-{step}"),
                    description: description.map(str::to_owned),
                    owner: actor,
                    visibility: vis,
                    members: vec![actor],
                    // The creator of a private room holds an invitation.
                    invited: if vis == Vis::Private { BTreeSet::from([actor]) } else { BTreeSet::new() },
                    deleted: false,
                    created_at,
                    messages: Vec::new(),
                });
                let i = self.rooms.len() - 1;
                self.expect_room(result, i, actor);
                let event = json!({
                    "roomId": id, "name": format!("room-{step}"), "ownerId": self.ids[actor],
                    "visibility": vis.as_str(), "description": description,
                });
                let to: Vec<usize> = match vis {
                    Vis::Public => (0..AGENTS).collect(),
                    Vis::Private => vec![actor, CTRL],
                };
                Self::tell(events, &to, "room.created", event);
            }
            Op::Join { actor, room } => {
                let i = match self.resolve(room, actor) {
                    Res::Unknown => return Err(4010),
                    Res::Lobby => return Err(4012),
                    Res::Room(i) => i,
                };
                let r = &self.rooms[i];
                if r.deleted {
                    return Err(4010);
                }
                if r.members.contains(&actor) {
                    return Err(4012);
                }
                // A private room answers 4013, not 4010, even to those who may not see it.
                if r.visibility == Vis::Private && !r.invited.contains(&actor) && actor != CTRL {
                    return Err(4013);
                }
                self.rooms[i].members.push(actor);
                self.expect_room(result, i, actor);
                let r = &self.rooms[i];
                let event = json!({ "roomId": r.id, "agentId": self.ids[actor], "displayName": NAMES[actor] });
                let to = r.members.clone();
                Self::tell(events, &to, "room.joined", event);
            }
            Op::Leave { actor, room } => {
                let i = self.live(self.resolve(room, actor), actor)?.ok_or(4030)?;
                if !self.rooms[i].members.contains(&actor) {
                    return Err(4011);
                }
                // Leaving keeps any invitation.
                self.rooms[i].members.retain(|&m| m != actor);
                let id = self.rooms[i].id.clone();
                self.expect("result", result, &json!({ "ok": true, "roomId": id }));
                let mut to = self.rooms[i].members.clone();
                to.push(actor);
                Self::tell(events, &to, "room.left", json!({ "roomId": id, "agentId": self.ids[actor] }));
            }
            Op::Invite { actor, room, target } => {
                let res = self.resolve(room, actor);
                let i = self.owned(res, actor)?;
                let Target::Agent(t) = self.target(target, res) else { return Err(4020) };
                if self.rooms[i].members.contains(&t) {
                    return Err(4012);
                }
                self.rooms[i].invited.insert(t);
                let r = &self.rooms[i];
                let expected = json!({ "ok": true, "roomId": r.id, "agentId": self.ids[t] });
                let event = json!({
                    "roomId": r.id, "name": r.name, "byAgentId": self.ids[actor], "byDisplayName": NAMES[actor],
                });
                self.expect("result", result, &expected);
                Self::tell(events, &[t], "room.invited", event);
            }
            Op::Kick { actor, room, target, reason } => {
                let res = self.resolve(room, actor);
                let i = self.owned(res, actor)?;
                let target = self.target(target, res);
                if matches!(target, Target::Agent(CTRL)) {
                    return Err(4003);
                }
                let t = match target {
                    Target::Agent(t) if self.rooms[i].members.contains(&t) => t,
                    _ => return Err(4011),
                };
                let r = &mut self.rooms[i];
                r.members.retain(|&m| m != t);
                // In a private room the kick revokes the invitation.
                if r.visibility == Vis::Private {
                    r.invited.remove(&t);
                }
                let id = r.id.clone();
                let mut to = r.members.clone();
                to.push(t);
                let reason =
                    if reason { "spamming".to_owned() } else { format!("removed from the room by {}", NAMES[actor]) };
                self.expect("result", result, &json!({ "ok": true, "roomId": id, "agentId": self.ids[t] }));
                Self::tell(events, &[t], "kicked", json!({ "roomId": id, "reason": reason }));
                Self::tell(events, &to, "room.left", json!({ "roomId": id, "agentId": self.ids[t] }));
            }
            Op::Visibility { actor, room, visibility } => {
                let i = self.owned(self.resolve(room, actor), actor)?;
                let r = &mut self.rooms[i];
                if r.visibility != visibility {
                    r.visibility = visibility;
                    // Going private marks every current member invited.
                    if visibility == Vis::Private {
                        let members = r.members.clone();
                        r.invited.extend(members);
                    }
                    let event = json!({ "roomId": r.id, "visibility": visibility.as_str() });
                    let to = r.members.clone();
                    Self::tell(events, &to, "room.visibilityChanged", event);
                }
                self.expect_room(result, i, actor);
            }
            Op::Update { actor, room, rename, description } => {
                if !rename && description.is_none() {
                    return Err(-32602);
                }
                let i = self.owned(self.resolve(room, actor), actor)?;
                let r = &mut self.rooms[i];
                if rename {
                    r.name = format!("renamed-{step}");
                }
                match description {
                    Some("") => r.description = None,
                    Some(d) => r.description = Some(d.to_owned()),
                    None => {}
                }
                let event = json!({ "roomId": r.id, "name": r.name, "description": r.description });
                let to = r.members.clone();
                Self::tell(events, &to, "room.updated", event);
                self.expect_room(result, i, actor);
            }
            Op::Delete { actor, room } => {
                let i = self.owned(self.resolve(room, actor), actor)?;
                let r = &mut self.rooms[i];
                let mut to = std::mem::take(&mut r.members);
                to.push(CTRL);
                r.deleted = true;
                r.owner = CTRL;
                r.invited.clear();
                let id = r.id.clone();
                self.expect("result", result, &json!({ "ok": true, "roomId": id }));
                Self::tell(events, &to, "room.deleted", json!({ "roomId": id }));
            }
            Op::TakeOwnership { actor, room } => {
                if actor != CTRL {
                    return Err(4003);
                }
                let i = self.live(self.resolve(room, actor), actor)?.ok_or(4030)?;
                let ctrl_id = self.ids[CTRL].clone();
                let r = &mut self.rooms[i];
                let previous = r.owner;
                let was_member = r.members.contains(&CTRL);
                r.owner = CTRL;
                if !was_member {
                    r.members.push(CTRL);
                    let event = json!({ "roomId": r.id, "agentId": ctrl_id, "displayName": NAMES[CTRL] });
                    let to = r.members.clone();
                    Self::tell(events, &to, "room.joined", event);
                }
                let r = &self.rooms[i];
                if previous != CTRL {
                    let event = json!({
                        "roomId": r.id, "newOwnerId": self.ids[CTRL], "previousOwnerId": self.ids[previous],
                    });
                    let mut to = r.members.clone();
                    to.push(previous);
                    Self::tell(events, &to, "room.ownerChanged", event);
                }
                self.expect_room(result, i, actor);
            }
            Op::Send { actor, room } => {
                let content = format!("msg-{step}");
                let (room_id, to) = match self.resolve(room, actor) {
                    Res::Unknown => return Err(4010),
                    Res::Lobby => {
                        self.lobby_messages.push((actor, content.clone()));
                        (self.lobby.clone(), (0..AGENTS).collect::<Vec<_>>())
                    }
                    Res::Room(i) => {
                        // Deleted rooms take no messages, not even the controller's.
                        if self.rooms[i].deleted || !self.visible(i, actor) {
                            return Err(4010);
                        }
                        if !self.rooms[i].members.contains(&actor) {
                            return Err(4011);
                        }
                        self.rooms[i].messages.push((actor, content.clone()));
                        (self.rooms[i].id.clone(), self.rooms[i].members.clone())
                    }
                };
                let seq = result["seq"].clone();
                if !seq.is_i64() || result["messageId"].as_str().is_none() {
                    self.expect("result", result, &json!({ "messageId": "…", "seq": "…", "timestamp": "…" }));
                }
                let event = json!({
                    "roomId": room_id, "senderId": self.ids[actor], "senderName": NAMES[actor],
                    "content": content, "seq": seq,
                });
                // Every member's connections except the sending one (one connection each here).
                let to: Vec<usize> = to.into_iter().filter(|&m| m != actor).collect();
                Self::tell(events, &to, "message", event);
            }
            Op::Info { actor, room } => match self.resolve(room, actor) {
                Res::Unknown => return Err(4010),
                Res::Lobby => {
                    let mut members: Vec<String> = ids_of(&result["members"]);
                    members.sort();
                    let mut expected = self.ids.clone();
                    expected.sort();
                    self.expect("lobby members", &json!(members), &json!(expected));
                    let lobby = pick(&result["room"], &self.lobby_view());
                    let expected = self.lobby_view();
                    self.expect("lobby room", &lobby, &expected);
                }
                Res::Room(i) => {
                    if !self.visible(i, actor) {
                        return Err(4010);
                    }
                    self.expect_room(result, i, actor);
                    let expected: Vec<String> = self.rooms[i].members.iter().map(|&m| self.ids[m].clone()).collect();
                    let members = in_join_order(&result["members"], &expected);
                    self.expect("members (in join order)", &json!(members), &json!(expected));
                }
            },
            Op::History { actor, room } => {
                let messages = match self.resolve(room, actor) {
                    Res::Unknown => return Err(4010),
                    Res::Lobby => self.lobby_messages.clone(),
                    Res::Room(i) => {
                        if !self.visible(i, actor) {
                            return Err(4010);
                        }
                        if !self.rooms[i].members.contains(&actor) && actor != CTRL {
                            return Err(4011);
                        }
                        self.rooms[i].messages.clone()
                    }
                };
                let expected: Vec<Value> =
                    messages.iter().map(|(s, c)| json!({ "senderId": self.ids[*s], "content": c })).collect();
                let actual: Vec<Value> = result["messages"]
                    .as_array()
                    .map(|ms| {
                        ms.iter().map(|m| json!({ "senderId": m["senderId"], "content": m["content"] })).collect()
                    })
                    .unwrap_or_default();
                self.expect("history", &json!(actual), &json!(expected));
                self.expect("hasMore", &result["hasMore"], &json!(false));
            }
        }
        Ok(())
    }
}

/// The method and params of one operation, resolved against the model.
fn request(model: &Model, step: usize, op: &Op) -> (usize, &'static str, Value) {
    let room = |sel: RoomSel, actor: usize| model.room_id(model.resolve(sel, actor));
    let agent =
        |target: Target, sel: RoomSel, actor: usize| model.agent_id(model.target(target, model.resolve(sel, actor)));
    match *op {
        Op::Create { actor, visibility, description, blank_name } => {
            let name = if blank_name { "   ".to_owned() } else { format!("room-{step}") };
            let mut params = json!({ "name": name });
            if let Some(v) = visibility {
                params["visibility"] = json!(v.as_str());
            }
            if let Some(d) = description {
                params["description"] = json!(d);
            }
            (actor, "room.create", params)
        }
        Op::Join { actor, room: r } => (actor, "room.join", json!({ "roomId": room(r, actor) })),
        Op::Leave { actor, room: r } => (actor, "room.leave", json!({ "roomId": room(r, actor) })),
        Op::Invite { actor, room: r, target } => {
            (actor, "room.invite", json!({ "roomId": room(r, actor), "agentId": agent(target, r, actor) }))
        }
        Op::Kick { actor, room: r, target, reason } => {
            let mut params = json!({ "roomId": room(r, actor), "agentId": agent(target, r, actor) });
            if reason {
                params["reason"] = json!("spamming");
            }
            (actor, "room.kick", params)
        }
        Op::Visibility { actor, room: r, visibility } => {
            (actor, "room.visibility", json!({ "roomId": room(r, actor), "visibility": visibility.as_str() }))
        }
        Op::Update { actor, room: r, rename, description } => {
            let mut params = json!({ "roomId": room(r, actor) });
            if rename {
                params["name"] = json!(format!("renamed-{step}"));
            }
            if let Some(d) = description {
                params["description"] = json!(d);
            }
            (actor, "room.update", params)
        }
        Op::Delete { actor, room: r } => (actor, "room.delete", json!({ "roomId": room(r, actor) })),
        Op::TakeOwnership { actor, room: r } => (actor, "room.takeOwnership", json!({ "roomId": room(r, actor) })),
        Op::Send { actor, room: r } => {
            (actor, "message.send", json!({ "roomId": room(r, actor), "content": format!("msg-{step}") }))
        }
        Op::Info { actor, room: r } => (actor, "room.info", json!({ "roomId": room(r, actor) })),
        Op::History { actor, room: r } => (actor, "room.history", json!({ "roomId": room(r, actor) })),
    }
}

// ---- comparing ----

/// Drops `null` members of objects (fields that are "not always present" may be
/// omitted or `null`).
fn strip_nulls(value: Value) -> Value {
    match value {
        Value::Object(obj) => {
            Value::Object(obj.into_iter().filter(|(_, v)| !v.is_null()).map(|(k, v)| (k, strip_nulls(v))).collect())
        }
        Value::Array(items) => Value::Array(items.into_iter().map(strip_nulls).collect()),
        other => other,
    }
}

/// The fields of `actual` that `like` has.
fn pick(actual: &Value, like: &Value) -> Value {
    let mut out = Map::new();
    if let Some(keys) = like.as_object() {
        for key in keys.keys() {
            out.insert(key.clone(), actual.get(key).cloned().unwrap_or(Value::Null));
        }
    }
    Value::Object(out)
}

fn ids_of(members: &Value) -> Vec<String> {
    members
        .as_array()
        .map(|ms| ms.iter().map(|m| m["agentId"].as_str().unwrap_or_default().to_owned()).collect())
        .unwrap_or_default()
}

/// The member ids of a `room.info` result, checked for `joinedAt` order. Members who
/// joined in the same millisecond may come in any order: those runs are put in the
/// order of `expected` (the model's join order) before comparing.
fn in_join_order(members: &Value, expected: &[String]) -> Vec<String> {
    let Some(members) = members.as_array() else { return vec!["<no members array>".into()] };
    let mut rows: Vec<(i64, String)> = members
        .iter()
        .map(|m| (m["joinedAt"].as_i64().unwrap_or(i64::MIN), m["agentId"].as_str().unwrap_or_default().to_owned()))
        .collect();
    if rows.windows(2).any(|w| w[0].0 > w[1].0) {
        return vec![format!("<members not in joinedAt order: {members:?}>")];
    }
    let rank = |id: &str| expected.iter().position(|e| e == id).unwrap_or(usize::MAX);
    rows.sort_by_key(|(at, id)| (*at, rank(id)));
    rows.into_iter().map(|(_, id)| id).collect()
}

/// An agent's events as `(method, params)`, `presence` left out; `message` events
/// reduced to what the model knows (room, sender, content, seq).
fn normalize(frames: Vec<Value>) -> Vec<(String, Value)> {
    frames
        .into_iter()
        .filter(|f| f["method"] != "presence")
        .map(|f| {
            let method = f["method"].as_str().unwrap_or_default().to_owned();
            let params = if method == "message" {
                let m = &f["params"]["message"];
                let room = if f["params"]["roomId"] == m["roomId"] {
                    f["params"]["roomId"].clone()
                } else {
                    json!("<roomId differs>")
                };
                json!({
                    "roomId": room, "senderId": m["senderId"], "senderName": m["senderName"],
                    "content": m["content"], "seq": m["seq"],
                })
            } else {
                f["params"].clone()
            };
            (method, strip_nulls(params))
        })
        .collect()
}

/// `room.list` as the model compares it: rooms after the lobby sorted by
/// `(createdAt, roomId)` (rooms created in the same millisecond have no defined order),
/// after checking `createdAt` never decreases.
fn normalize_list(result: &Value, lobby_like: &Value) -> Vec<Value> {
    let rooms = result["rooms"].as_array().cloned().unwrap_or_default();
    let mut out = Vec::new();
    let mut rest = Vec::new();
    for (n, room) in rooms.into_iter().enumerate() {
        if n == 0 {
            out.push(pick(&room, lobby_like));
        } else {
            rest.push(strip_nulls(room));
        }
    }
    if rest.windows(2).any(|w| w[0]["createdAt"].as_i64() > w[1]["createdAt"].as_i64()) {
        return vec![json!({ "error": "room.list is not oldest first", "rooms": rest })];
    }
    rest.sort_by(|x, y| {
        (x["createdAt"].as_i64(), x["roomId"].as_str()).cmp(&(y["createdAt"].as_i64(), y["roomId"].as_str()))
    });
    out.extend(rest);
    out
}

// ---- running a case ----

#[derive(Default)]
struct Figures {
    ops: usize,
    errors: usize,
    events: usize,
    /// Per method: `(successes, errors)`.
    by_method: std::collections::BTreeMap<&'static str, (usize, usize)>,
    /// Starting the server and connecting the four agents.
    setup: std::time::Duration,
    /// Per `(method, error code)`.
    by_code: std::collections::BTreeMap<(&'static str, i64), usize>,
}

async fn run_case(ops: &[Op]) -> Result<Figures, String> {
    let started = std::time::Instant::now();
    let server = TestServer::start_with(|c| c.max_rooms = MAX_ROOMS).await;
    let mut clients = vec![server.controller().await];
    for name in &NAMES[1..] {
        let agent = server.participant(&mut clients[0], name).await;
        clients.push(agent.client);
    }
    for client in clients.iter_mut() {
        client.clear_events().await;
    }
    let ids: Vec<String> = clients.iter().map(Client::agent_id).collect();
    let lobby = clients[0].lobby_id();
    let mut model =
        Checked { model: Model { ids, lobby, rooms: Vec::new(), lobby_messages: Vec::new() }, mismatch: None };
    let mut figures = Figures { setup: started.elapsed(), ..Figures::default() };

    for (step, op) in ops.iter().enumerate() {
        let fail = |what: String| format!("step {step} {op:?}: {what}");
        let (actor, method, params) = request(&model, step, op);
        let real = clients[actor].call(method, params.clone()).await;
        figures.ops += 1;
        figures.errors += usize::from(real.is_err());
        let tally = figures.by_method.entry(method).or_default();
        match &real {
            Ok(_) => tally.0 += 1,
            Err(e) => {
                tally.1 += 1;
                *figures.by_code.entry((method, e.code)).or_default() += 1;
            }
        }
        let expected = model.apply(step, op, &real).map_err(|e| fail(format!("{method} {params}: {e}")))?;

        for (a, client) in clients.iter_mut().enumerate() {
            // `room.list` also syncs: every event this step caused has arrived before its answer.
            let list = client.ok("room.list", json!({})).await;
            let wanted = model.list(a);
            let actual = normalize_list(&list, &wanted[0]);
            if actual != wanted {
                return Err(fail(format!(
                    "room.list of {}:\n  expected {}\n  got      {}",
                    NAMES[a],
                    json!(wanted),
                    json!(actual)
                )));
            }
            let got = normalize(client.drain_buffered_events());
            figures.events += got.len();
            if got != expected[a] {
                return Err(fail(format!(
                    "events of {}:\n  expected {:?}\n  got      {:?}",
                    NAMES[a], expected[a], got
                )));
            }
        }
    }
    Ok(figures)
}

fn config() -> ProptestConfig {
    let cases = std::env::var("PROPTEST_CASES").ok().and_then(|c| c.parse().ok()).unwrap_or(24);
    // No regression files in the source tree: a failure prints its shrunk case.
    ProptestConfig { cases, failure_persistence: None, ..ProptestConfig::default() }
}

#[test]
fn rooms_visibility_membership_and_events_follow_the_spec_model() {
    let started = std::time::Instant::now();
    let totals = std::sync::Mutex::new((0usize, Figures::default()));
    let mut runner = proptest::test_runner::TestRunner::new(config());
    let outcome = runner.run(&ops(), |ops| {
        let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().expect("runtime");
        let figures = runtime.block_on(run_case(&ops)).map_err(TestCaseError::fail)?;
        let mut totals = totals.lock().unwrap();
        totals.0 += 1;
        totals.1.ops += figures.ops;
        totals.1.errors += figures.errors;
        totals.1.events += figures.events;
        totals.1.setup += figures.setup;
        for (method, (ok, err)) in figures.by_method {
            let tally = totals.1.by_method.entry(method).or_default();
            tally.0 += ok;
            tally.1 += err;
        }
        for (key, n) in figures.by_code {
            *totals.1.by_code.entry(key).or_default() += n;
        }
        Ok(())
    });
    let (cases, figures) = &*totals.lock().unwrap();
    let by_method: Vec<String> =
        figures.by_method.iter().map(|(m, (ok, err))| format!("{m} {ok} ok/{err} err")).collect();
    eprintln!(
        "model: {cases} case runs (shrinking included), {} operations ({} answered with an error), {} events compared, in {:.1?} (server start + 4 agents: {:.1?} per case)\n  {}",
        figures.ops,
        figures.errors,
        figures.events,
        started.elapsed(),
        figures.setup / (*cases).max(1) as u32,
        by_method.join(", ")
    );
    if std::env::var_os("BROODLINK_MODEL_CODES").is_some() {
        eprintln!("  error codes: {:?}", figures.by_code);
    }
    if let Err(e) = outcome {
        panic!("{e}");
    }
}
