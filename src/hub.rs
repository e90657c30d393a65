//! The in-memory picture of who is online and who is in which room, and the fan-out
//! of events to them. Every event is serialized once; recipients share the bytes.
//!
//! The state sits behind a std `Mutex`: it is only ever held for map operations and
//! non-blocking queue pushes, never across an `.await`.

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex, MutexGuard};

use broodlink_protocol::{Event, PresenceEvent};
use tungstenite::Utf8Bytes;

use crate::session::Session;

#[derive(Default)]
pub struct Hub {
    state: Mutex<HubState>,
}

#[derive(Default)]
struct HubState {
    /// Authenticated connections by session id.
    sessions: HashMap<u64, Arc<Session>>,
    /// Online agents and their connections, in connection order.
    online: HashMap<String, Vec<u64>>,
    /// For each online agent, the `presence {online: true}` frame every new connection
    /// gets, serialized once (it names the agent as its first connection does): a fleet
    /// connecting would otherwise serialize one per online agent per connection.
    presence: HashMap<String, Utf8Bytes>,
    /// Members of every live room except the lobby (whose members are all agents).
    rooms: HashMap<String, HashSet<String>>,
}

/// Who an event goes to.
pub enum Audience<'a> {
    /// Every authenticated connection.
    Everyone,
    /// Every connection of these agents.
    Agents(&'a [&'a str]),
    /// Every connection of the room's current members, and of these other agents
    /// (the agent an event concerns, who may just have left).
    Room(&'a str, &'a [&'a str]),
}

/// Serializes an event as a JSON-RPC notification frame.
pub fn frame(event: &Event) -> Utf8Bytes {
    #[derive(serde::Serialize)]
    struct Notification<'a> {
        jsonrpc: &'static str,
        #[serde(flatten)]
        event: &'a Event,
    }
    // Our own event types always serialize.
    let text = serde_json::to_string(&Notification { jsonrpc: "2.0", event }).unwrap_or_default();
    Utf8Bytes::from(text)
}

impl Hub {
    fn state(&self) -> MutexGuard<'_, HubState> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Loads room memberships at start.
    pub fn set_members(&self, room_id: &str, members: impl IntoIterator<Item = String>) {
        self.state().rooms.insert(room_id.to_owned(), members.into_iter().collect());
    }

    /// Adds an authenticated connection. If it is the agent's first, returns the
    /// `presence {online: true}` frame that announces the agent.
    pub fn connect(&self, session: Arc<Session>, agent_id: &str) -> Option<Utf8Bytes> {
        let mut state = self.state();
        let conns = state.online.entry(agent_id.to_owned()).or_default();
        conns.push(session.id);
        let announce = (conns.len() == 1).then(|| presence_frame(agent_id, &session));
        if let Some(frame) = &announce {
            state.presence.insert(agent_id.to_owned(), frame.clone());
        }
        state.sessions.insert(session.id, session);
        announce
    }

    /// Removes a connection. Returns the agent if this was its last connection.
    pub fn disconnect(&self, session_id: u64) -> Option<String> {
        let mut state = self.state();
        let session = state.sessions.remove(&session_id)?;
        let agent_id = session.identity()?.agent_id.clone();
        let conns = state.online.get_mut(&agent_id)?;
        let was_first = conns.first() == Some(&session_id);
        conns.retain(|id| *id != session_id);
        let Some(&next) = conns.first() else {
            state.online.remove(&agent_id);
            state.presence.remove(&agent_id);
            return Some(agent_id);
        };
        if was_first {
            if let Some(frame) = state.sessions.get(&next).map(|next| presence_frame(&agent_id, next)) {
                state.presence.insert(agent_id, frame);
            }
        }
        None
    }

    /// Removes every connection of an agent and returns them (to be told and closed).
    pub fn take_agent(&self, agent_id: &str) -> Vec<Arc<Session>> {
        let mut state = self.state();
        let ids = state.online.remove(agent_id).unwrap_or_default();
        state.presence.remove(agent_id);
        ids.iter().filter_map(|id| state.sessions.remove(id)).collect()
    }

    /// Removes every connection.
    pub fn take_all(&self) -> Vec<Arc<Session>> {
        let mut state = self.state();
        state.online.clear();
        state.presence.clear();
        state.sessions.drain().map(|(_, s)| s).collect()
    }

    /// How many authenticated connections the agent has.
    pub fn connections_of(&self, agent_id: &str) -> usize {
        self.state().online.get(agent_id).map_or(0, Vec::len)
    }

    pub fn is_online(&self, agent_id: &str) -> bool {
        self.state().online.contains_key(agent_id)
    }

    pub fn online_count(&self) -> usize {
        self.state().online.len()
    }

    /// Whether this authenticated connection is still registered.
    pub fn has_session(&self, session_id: u64) -> bool {
        self.state().sessions.contains_key(&session_id)
    }

    pub fn connection_count(&self) -> usize {
        self.state().sessions.len()
    }

    /// The online agents, except `except`.
    pub fn online_agents(&self, except: &str) -> Vec<String> {
        self.state().online.keys().filter(|agent| agent.as_str() != except).cloned().collect()
    }

    /// The `presence {online: true}` frame of every online agent except `except`.
    pub fn presence_frames(&self, except: &str) -> Vec<Utf8Bytes> {
        let state = self.state();
        state.presence.iter().filter(|(agent, _)| agent.as_str() != except).map(|(_, frame)| frame.clone()).collect()
    }

    /// Whether `agent_id` is a member of a live room: `None` if the hub knows no such
    /// room (deleted or never created). The lobby is not tracked here.
    pub fn membership(&self, room_id: &str, agent_id: &str) -> Option<bool> {
        self.state().rooms.get(room_id).map(|members| members.contains(agent_id))
    }

    /// The number of members of a live room.
    pub fn member_count(&self, room_id: &str) -> usize {
        self.state().rooms.get(room_id).map_or(0, HashSet::len)
    }

    /// The live rooms an agent is a member of.
    pub fn rooms_of(&self, agent_id: &str) -> Vec<String> {
        let state = self.state();
        state.rooms.iter().filter(|(_, m)| m.contains(agent_id)).map(|(r, _)| r.clone()).collect()
    }

    pub fn add_member(&self, room_id: &str, agent_id: &str) {
        self.state().rooms.entry(room_id.to_owned()).or_default().insert(agent_id.to_owned());
    }

    pub fn remove_member(&self, room_id: &str, agent_id: &str) {
        if let Some(members) = self.state().rooms.get_mut(room_id) {
            members.remove(agent_id);
        }
    }

    /// Forgets an agent's memberships everywhere (it was revoked).
    pub fn remove_agent_everywhere(&self, agent_id: &str) {
        for members in self.state().rooms.values_mut() {
            members.remove(agent_id);
        }
    }

    /// Forgets a room and returns who was in it.
    pub fn remove_room(&self, room_id: &str) -> Vec<String> {
        self.state().rooms.remove(room_id).map(|m| m.into_iter().collect()).unwrap_or_default()
    }

    /// Sends an event to an audience, skipping the connection `except`.
    pub fn send(&self, audience: Audience<'_>, event: &Event, except: Option<u64>) {
        self.send_frame(audience, frame(event), except);
    }

    /// Sends an already serialized event frame to an audience, skipping `except`.
    pub fn send_frame(&self, audience: Audience<'_>, bytes: Utf8Bytes, except: Option<u64>) {
        let state = self.state();
        let deliver = |conns: &Vec<u64>| {
            for id in conns {
                if Some(*id) == except {
                    continue;
                }
                if let Some(session) = state.sessions.get(id) {
                    session.push(bytes.clone());
                }
            }
        };
        match audience {
            Audience::Everyone => state.online.values().for_each(deliver),
            Audience::Agents(agents) => {
                let mut seen = HashSet::new();
                for agent in agents {
                    if seen.insert(*agent) {
                        if let Some(conns) = state.online.get(*agent) {
                            deliver(conns);
                        }
                    }
                }
            }
            Audience::Room(room_id, also) => {
                let members = state.rooms.get(room_id);
                let extra = also.iter().copied().filter(|a| !members.is_some_and(|m| m.contains(*a)));
                for agent in members.into_iter().flatten().map(String::as_str).chain(extra) {
                    if let Some(conns) = state.online.get(agent) {
                        deliver(conns);
                    }
                }
            }
        }
    }
}

/// The `presence {online: true}` frame for an agent, named as `session` names it.
fn presence_frame(agent_id: &str, session: &Session) -> Utf8Bytes {
    let display_name = session.identity().map(|who| who.display_name.clone()).unwrap_or_default();
    frame(&Event::Presence(PresenceEvent { agent_id: agent_id.to_owned(), display_name, online: true }))
}
