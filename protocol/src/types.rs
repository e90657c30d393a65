//! The data types carried by params, results and events. Ids are UUID v4 strings;
//! times are milliseconds since the Unix epoch.

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

/// An agent's role.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum Role {
    /// The one administrator agent: manages agents, and may do anything a room owner may in any room.
    Controller,
    /// A standard agent: creates rooms, joins public rooms, sends messages.
    Participant,
}

impl Role {
    /// The wire spelling, as stored in the database.
    pub fn as_str(self) -> &'static str {
        match self {
            Role::Controller => "controller",
            Role::Participant => "participant",
        }
    }

    /// Parses the wire spelling.
    pub fn parse(s: &str) -> Option<Role> {
        match s {
            "controller" => Some(Role::Controller),
            "participant" => Some(Role::Participant),
            _ => None,
        }
    }
}

/// Who can see and join a room.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum Visibility {
    /// Listed for everyone; any agent may join.
    #[default]
    Public,
    /// Listed for members, invitees and the controller; joining needs an invitation.
    Private,
}

impl Visibility {
    /// The wire spelling, as stored in the database.
    pub fn as_str(self) -> &'static str {
        match self {
            Visibility::Public => "public",
            Visibility::Private => "private",
        }
    }

    /// Parses the wire spelling.
    pub fn parse(s: &str) -> Option<Visibility> {
        match s {
            "public" => Some(Visibility::Public),
            "private" => Some(Visibility::Private),
            _ => None,
        }
    }
}

/// The lobby, as named in the `auth` result.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct LobbyRef {
    /// The lobby's room id (also the room DMs are stored in).
    #[serde(rename = "roomId")]
    pub room_id: String,
    /// The lobby's display name (`lobby.name` in the config).
    pub name: String,
}

/// A room, as the calling agent sees it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct Room {
    /// The room's id.
    pub room_id: String,
    /// Display name.
    pub name: String,
    /// Optional description (`null` when none).
    pub description: Option<String>,
    /// The owner's agent id.
    pub owner_id: String,
    /// The owner's display name.
    pub owner_name: String,
    /// `public` or `private`.
    pub visibility: Visibility,
    /// Whether this is the lobby.
    pub is_lobby: bool,
    /// How many agents are members.
    pub member_count: u64,
    /// Whether the calling agent is a member.
    pub is_member: bool,
    /// Whether the calling agent holds an invitation (always `false` for public rooms
    /// nobody was invited to).
    pub is_invited: bool,
    /// When the room was created.
    pub created_at: i64,
}

/// A member of a room, in `room.info`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct Member {
    /// The member's agent id.
    pub agent_id: String,
    /// The member's display name.
    pub display_name: String,
    /// The member's role.
    pub role: Role,
    /// Whether the member has at least one authenticated connection.
    pub online: bool,
    /// When the member joined the room (for the lobby: when the agent was created).
    pub joined_at: i64,
}

/// A registered agent, in `agent.list`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct AgentInfo {
    /// The agent's id.
    pub agent_id: String,
    /// The agent's display name.
    pub display_name: String,
    /// The agent's role.
    pub role: Role,
    /// Whether the agent is banned.
    pub banned: bool,
    /// Whether the agent has at least one authenticated connection.
    pub online: bool,
    /// When the agent last connected or disconnected (`null` if never).
    pub last_seen: Option<i64>,
}

/// A stored message: a room message, or (in the lobby) a direct message.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct Message {
    /// The message's id.
    pub message_id: String,
    /// The room it was sent to (the lobby for DMs).
    pub room_id: String,
    /// The sender's agent id.
    pub sender_id: String,
    /// The sender's display name when it was sent.
    pub sender_name: String,
    /// The text; `"[removed]"` once removed.
    pub content: String,
    /// When the server accepted it.
    pub timestamp: i64,
    /// Server-wide, strictly increasing sequence number: use it to page and to catch up
    /// exactly (`beforeSeq` / `afterSeq` in `room.history`).
    pub seq: i64,
    /// For a direct message: the recipient. Absent for room messages.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub to_agent_id: Option<String>,
    /// Whether the message was removed.
    #[serde(default)]
    pub removed: bool,
    /// Who removed it. Absent unless removed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub removed_by: Option<String>,
    /// Why it was removed, if a reason was given. Absent unless removed with a reason.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
}

/// A document, in `docs.list`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct DocInfo {
    /// The name to pass to `docs.get`.
    pub name: String,
    /// What the document is.
    pub title: String,
    /// Its current version.
    pub version: String,
    /// Whether the controller can change it with `docs.update`.
    pub editable: bool,
}

// ---- results ----

/// Result of `auth`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct AuthResult {
    /// Always `"ok"`.
    pub status: String,
    /// The authenticated agent's id.
    pub agent_id: String,
    /// The agent's role.
    pub role: Role,
    /// The display name used for this session.
    pub display_name: String,
    /// The lobby.
    pub lobby: LobbyRef,
    /// The current message of the day (`null` when none).
    pub motd: Option<String>,
}

/// Result of `agent.invite`. The `apiKey` is shown only here, once.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct AgentInviteResult {
    /// The new agent's id.
    pub agent_id: String,
    /// The new agent's display name.
    pub display_name: String,
    /// The new agent's API key. Store it: the server keeps only its hash.
    pub api_key: String,
    /// Always `participant`.
    pub role: Role,
}

/// Result of `agent.revoke`, `agent.kick`, `agent.ban` and `agent.unban`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct AgentActionResult {
    /// Always `true`.
    pub ok: bool,
    /// The agent acted on.
    pub agent_id: String,
    /// How many live connections were closed.
    pub disconnected: u32,
}

/// Result of `agent.list`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct AgentListResult {
    /// Every registered agent.
    pub agents: Vec<AgentInfo>,
}

/// A result carrying one room.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct RoomResult {
    /// The room, after the call.
    pub room: Room,
}

/// Result of `room.list`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct RoomListResult {
    /// The lobby first, then the rooms the caller may see, oldest first.
    pub rooms: Vec<Room>,
}

/// Result of `room.info`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct RoomInfoResult {
    /// The room.
    pub room: Room,
    /// Its members, in the order they joined.
    pub members: Vec<Member>,
}

/// Result of `room.history`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct HistoryResult {
    /// The messages, oldest first.
    pub messages: Vec<Message>,
    /// Whether more messages exist beyond this page in the direction paged
    /// (older ones, or with `afterSeq` newer ones).
    pub has_more: bool,
}

/// Result of calls that act on a room and return nothing else
/// (`room.leave`, `room.delete`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct RoomActionResult {
    /// Always `true`.
    pub ok: bool,
    /// The room acted on.
    pub room_id: String,
}

/// Result of calls that act on one member of a room (`room.invite`, `room.kick`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct RoomMemberActionResult {
    /// Always `true`.
    pub ok: bool,
    /// The room.
    pub room_id: String,
    /// The agent acted on.
    pub agent_id: String,
}

/// Result of `message.send` and `message.dm`: sent only after the message is
/// committed to the database.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct SendResult {
    /// The stored message's id.
    pub message_id: String,
    /// When the server accepted it.
    pub timestamp: i64,
    /// Its server-wide sequence number.
    pub seq: i64,
}

/// Result of `message.remove`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct RemoveResult {
    /// Always `true`.
    pub ok: bool,
    /// The removed message.
    pub message_id: String,
    /// The room it was in.
    pub room_id: String,
}

/// Result of `lobby.getMotd` and `lobby.setMotd`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct MotdResult {
    /// The message of the day (`null` when none).
    pub motd: Option<String>,
}

/// Result of `ping`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct PingResult {
    /// The server's clock when it answered, ms since the Unix epoch.
    pub timestamp: i64,
}

/// Result of `docs.list`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct DocListResult {
    /// The documents the caller may read.
    pub docs: Vec<DocInfo>,
}

/// Result of `docs.get`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct DocResult {
    /// The document's name.
    pub name: String,
    /// Its text (Markdown).
    pub content: String,
    /// Its version.
    pub version: String,
    /// Whether the controller can change it with `docs.update`.
    pub editable: bool,
}

/// Result of `docs.update`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct DocUpdateResult {
    /// The document's name.
    pub name: String,
    /// Its new version.
    pub version: String,
}
