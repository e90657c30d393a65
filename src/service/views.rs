//! Turning stored rows into the protocol's types, as a given caller sees them.

use broodlink_protocol::{AgentInfo, Message, Role, Room, Visibility};

use super::{Caller, Linkspace};
use crate::error::{ServiceError, ServiceResult};
use crate::store::{AgentRow, MessageRow, RoomViewRow};

pub(super) const REMOVED_CONTENT: &str = "[removed]";

impl Linkspace {
    /// A room as the caller sees it, if it exists, is live (or the caller is the
    /// controller) and the caller may see it.
    pub(super) async fn visible_room(&self, caller: &Caller<'_>, room_id: &str) -> ServiceResult<RoomViewRow> {
        let row = self.store.room_views(caller.agent_id(), Some(room_id)).await?.into_iter().next();
        match row {
            Some(row) if self.may_see(caller, &row) => Ok(row),
            _ => Err(ServiceError::RoomNotFound),
        }
    }

    /// Live, and public, or the caller is a member or invitee, or the controller.
    pub(super) fn may_see(&self, caller: &Caller<'_>, row: &RoomViewRow) -> bool {
        if caller.is_controller() {
            return true;
        }
        row.deleted_at.is_none() && (row.visibility == "public" || row.is_member || row.is_invited)
    }

    pub(super) async fn room_view(&self, row: RoomViewRow) -> ServiceResult<Room> {
        let (member_count, is_member) = if row.is_lobby {
            (self.store.count_agents().await? as u64, true)
        } else {
            (self.hub.member_count(&row.id) as u64, row.is_member)
        };
        Ok(Room {
            room_id: row.id,
            name: row.name,
            description: row.description,
            owner_id: row.owner_id,
            owner_name: row.owner_name,
            visibility: Visibility::parse(&row.visibility).unwrap_or_default(),
            is_lobby: row.is_lobby,
            member_count,
            is_member,
            is_invited: row.is_invited,
            created_at: row.created_at,
        })
    }

    /// Reads a room back after a change and renders it for the caller.
    pub(super) async fn current_room(&self, caller: &Caller<'_>, room_id: &str) -> ServiceResult<Room> {
        let row = self.store.room_views(caller.agent_id(), Some(room_id)).await?.into_iter().next();
        self.room_view(row.ok_or(ServiceError::RoomNotFound)?).await
    }

    pub(super) fn agent_info(&self, row: AgentRow) -> AgentInfo {
        let online = self.hub.is_online(&row.id);
        AgentInfo {
            online,
            // Stored when an agent goes offline; while it is online it is seen now.
            last_seen: if online { Some(super::now_ms()) } else { row.last_seen },
            agent_id: row.id,
            display_name: row.display_name,
            role: role_of(&row.role),
            banned: row.banned,
        }
    }
}

pub(super) fn role_of(stored: &str) -> Role {
    Role::parse(stored).unwrap_or(Role::Participant)
}

/// A stored message as history and events show it: removed ones read `[removed]`.
pub(super) fn message_view(row: MessageRow) -> Message {
    let removed = row.removed_by.is_some();
    Message {
        message_id: row.id,
        room_id: row.room_id,
        sender_id: row.sender_id,
        sender_name: row.sender_name,
        content: if removed { REMOVED_CONTENT.to_owned() } else { row.content },
        timestamp: row.timestamp,
        seq: row.seq,
        to_agent_id: row.to_agent_id,
        removed,
        removed_by: row.removed_by,
        reason: row.removed_reason,
    }
}
