//! The rows the store reads and writes.

use sqlx::FromRow;

pub(super) const AGENT_COLUMNS: &str = "SELECT id, display_name, role, banned, created_at, last_seen FROM agents";
pub(super) const ROOM_COLUMNS: &str =
    "SELECT id, name, description, owner_id, visibility, is_lobby, created_at, deleted_at FROM rooms";
pub(super) const MESSAGE_COLUMNS: &str = "SELECT seq, id, room_id, sender_id, sender_name, content, to_agent_id, \
     timestamp, removed_by, removed_reason, client_msg_id FROM messages";

#[derive(Debug, Clone, FromRow)]
pub struct AgentRow {
    pub id: String,
    pub display_name: String,
    /// `controller` or `participant`.
    pub role: String,
    pub banned: bool,
    pub created_at: i64,
    pub last_seen: Option<i64>,
}

#[derive(Debug, Clone, FromRow)]
pub struct RoomRow {
    pub id: String,
    pub name: String,
    pub description: Option<String>,
    pub owner_id: String,
    /// `public` or `private`.
    pub visibility: String,
    pub is_lobby: bool,
    pub created_at: i64,
    pub deleted_at: Option<i64>,
}

#[derive(Debug, Clone, FromRow)]
pub struct MemberRow {
    pub room_id: String,
    pub agent_id: String,
    pub is_member: bool,
    pub invited: bool,
    pub joined_at: Option<i64>,
}

#[derive(Debug, Clone, FromRow, serde::Deserialize)]
pub struct MessageRow {
    pub seq: i64,
    pub id: String,
    pub room_id: String,
    pub sender_id: String,
    pub sender_name: String,
    pub content: String,
    pub to_agent_id: Option<String>,
    pub timestamp: i64,
    pub removed_by: Option<String>,
    pub removed_reason: Option<String>,
    /// Selected with the row rather than defaulted: a column sqlx cannot find costs a
    /// formatted error per row, which showed up in profiles of 500-row history pages.
    pub client_msg_id: Option<String>,
}

/// A stored message found by the id its client gave it.
#[derive(Debug, Clone, FromRow)]
pub struct ClientMsgRow {
    pub client_msg_id: String,
    pub sender_id: String,
    pub id: String,
    pub seq: i64,
    pub timestamp: i64,
}

#[derive(FromRow)]
pub(super) struct MemberWithAgent {
    room_id: String,
    agent_id: String,
    is_member: bool,
    invited: bool,
    joined_at: Option<i64>,
    id: String,
    display_name: String,
    role: String,
    banned: bool,
    created_at: i64,
    last_seen: Option<i64>,
}

impl MemberWithAgent {
    pub(super) fn split(self) -> (MemberRow, AgentRow) {
        (
            MemberRow {
                room_id: self.room_id,
                agent_id: self.agent_id,
                is_member: self.is_member,
                invited: self.invited,
                joined_at: self.joined_at,
            },
            AgentRow {
                id: self.id,
                display_name: self.display_name,
                role: self.role,
                banned: self.banned,
                created_at: self.created_at,
                last_seen: self.last_seen,
            },
        )
    }
}

/// A room joined with its owner's name and one viewer's membership.
#[derive(Debug, Clone, FromRow)]
pub struct RoomViewRow {
    pub id: String,
    pub name: String,
    pub description: Option<String>,
    pub owner_id: String,
    pub owner_name: String,
    pub visibility: String,
    pub is_lobby: bool,
    pub created_at: i64,
    pub deleted_at: Option<i64>,
    pub is_member: bool,
    pub is_invited: bool,
}
