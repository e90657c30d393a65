//! Rooms: create, list, join, leave, info, history, and the owner's operations.

use broodlink_protocol::{
    Event, HistoryResult, KickedEvent, Member, RoomActionResult, RoomCreatedEvent, RoomDeletedEvent, RoomInfoResult,
    RoomInvitedEvent, RoomJoinedEvent, RoomLeftEvent, RoomListResult, RoomMemberActionResult, RoomOwnerChangedEvent,
    RoomResult, RoomUpdatedEvent, RoomVisibilityChangedEvent, Visibility,
};

use super::views::{message_view, role_of};
use super::{
    check_optional_text, check_text, new_id, now_ms, Caller, Linkspace, DESCRIPTION_MAX, NAME_MAX, REASON_MAX,
};
use crate::error::{ServiceError, ServiceResult};
use crate::hub::Audience;
use crate::store::{HistoryQuery, RoomRow, RoomViewRow};

const DEFAULT_HISTORY_LIMIT: u32 = 50;

impl Linkspace {
    pub async fn room_create(
        &self,
        caller: &Caller<'_>,
        name: String,
        visibility: Option<Visibility>,
        description: Option<String>,
    ) -> ServiceResult<RoomResult> {
        let name = check_text("name", &name, NAME_MAX)?;
        let description = check_optional_text("description", description, DESCRIPTION_MAX)?;
        let visibility = visibility.unwrap_or_default();
        let _guard = self.write_as(caller).await?;
        if self.store.count_live_rooms_excluding_lobby().await? >= i64::from(self.config.max_rooms) {
            return Err(ServiceError::RoomLimit(self.config.max_rooms));
        }
        let room = RoomRow {
            id: new_id(),
            name,
            description,
            owner_id: caller.agent_id().to_owned(),
            visibility: visibility.as_str().into(),
            is_lobby: false,
            created_at: now_ms(),
            deleted_at: None,
        };
        self.store.create_room(&room).await?;
        self.hub.set_members(&room.id, [room.owner_id.clone()]);

        let event = Event::RoomCreated(RoomCreatedEvent {
            room_id: room.id.clone(),
            name: room.name.clone(),
            owner_id: room.owner_id.clone(),
            visibility,
            description: room.description.clone(),
        });
        match visibility {
            Visibility::Public => self.hub.send(Audience::Everyone, &event, None),
            Visibility::Private => {
                self.hub.send(Audience::Agents(&[&room.owner_id, &self.controller_id]), &event, None)
            }
        }
        Ok(RoomResult { room: self.current_room(caller, &room.id).await? })
    }

    pub async fn room_list(&self, caller: &Caller<'_>) -> ServiceResult<RoomListResult> {
        let mut rooms = Vec::new();
        for row in self.store.room_views(caller.agent_id(), None).await? {
            if self.may_see(caller, &row) {
                rooms.push(self.room_view(row).await?);
            }
        }
        Ok(RoomListResult { rooms })
    }

    pub async fn room_join(&self, caller: &Caller<'_>, room_id: String) -> ServiceResult<RoomResult> {
        let _guard = self.write_as(caller).await?;
        // A private room the caller may not see exists for `room.join` alone: the
        // specification answers 4013 there, and room ids are unguessable.
        let room = match self.store.room_views(caller.agent_id(), Some(&room_id)).await?.pop() {
            Some(room) if room.deleted_at.is_none() => room,
            _ => return Err(ServiceError::RoomNotFound),
        };
        if room.is_lobby || room.is_member {
            return Err(ServiceError::AlreadyAMember);
        }
        if room.visibility == "private" && !room.is_invited && !caller.is_controller() {
            return Err(ServiceError::NotInvited);
        }
        self.store.add_member(&room_id, caller.agent_id(), now_ms()).await?;
        self.hub.add_member(&room_id, caller.agent_id());
        let event = Event::RoomJoined(RoomJoinedEvent {
            room_id: room_id.clone(),
            agent_id: caller.agent_id().to_owned(),
            display_name: caller.identity.display_name.clone(),
        });
        self.hub.send(Audience::Room(&room_id, &[]), &event, None);
        Ok(RoomResult { room: self.current_room(caller, &room_id).await? })
    }

    pub async fn room_leave(&self, caller: &Caller<'_>, room_id: String) -> ServiceResult<RoomActionResult> {
        let _guard = self.write_as(caller).await?;
        let room = self.live_room(caller, &room_id).await?;
        if room.is_lobby {
            return Err(ServiceError::CannotModifyLobby);
        }
        if !room.is_member {
            return Err(ServiceError::NotAMember);
        }
        self.store.remove_member(&room_id, caller.agent_id(), true).await?;
        self.hub.remove_member(&room_id, caller.agent_id());
        let event = Event::RoomLeft(RoomLeftEvent { room_id: room_id.clone(), agent_id: caller.agent_id().to_owned() });
        self.hub.send(Audience::Room(&room_id, &[caller.agent_id()]), &event, None);
        Ok(RoomActionResult { ok: true, room_id })
    }

    pub async fn room_info(&self, caller: &Caller<'_>, room_id: String) -> ServiceResult<RoomInfoResult> {
        let row = self.visible_room(caller, &room_id).await?;
        let members = if row.is_lobby {
            self.store
                .agents()
                .await?
                .into_iter()
                .map(|agent| Member {
                    online: self.hub.is_online(&agent.id),
                    role: role_of(&agent.role),
                    agent_id: agent.id,
                    display_name: agent.display_name,
                    joined_at: agent.created_at,
                })
                .collect()
        } else {
            self.store
                .members(&room_id)
                .await?
                .into_iter()
                .map(|(member, agent)| Member {
                    online: self.hub.is_online(&agent.id),
                    role: role_of(&agent.role),
                    agent_id: agent.id,
                    display_name: agent.display_name,
                    joined_at: member.joined_at.unwrap_or_default(),
                })
                .collect()
        };
        Ok(RoomInfoResult { room: self.room_view(row).await?, members })
    }

    pub async fn room_history(
        &self,
        caller: &Caller<'_>,
        query: broodlink_protocol::RoomHistoryParams,
    ) -> ServiceResult<HistoryResult> {
        let limit = match query.limit {
            Some(0) => return Err(ServiceError::InvalidParams("`limit` must be at least 1".into())),
            Some(limit) => limit.min(self.config.max_history_per_room),
            None => DEFAULT_HISTORY_LIMIT.min(self.config.max_history_per_room),
        };
        let room = self.visible_room(caller, &query.room_id).await?;
        if !room.is_lobby && !room.is_member && !caller.is_controller() {
            return Err(ServiceError::NotAMember);
        }
        // In the lobby, only the controller (who moderates) reads other agents' DMs.
        let dm_viewer = (room.is_lobby && !caller.is_controller()).then(|| caller.agent_id().to_owned());
        let (rows, has_more) = self
            .store
            .history(&HistoryQuery {
                room_id: query.room_id,
                limit,
                before_time: query.before,
                before_seq: query.before_seq,
                after_seq: query.after_seq,
                dm_viewer,
            })
            .await?;
        Ok(HistoryResult { messages: rows.into_iter().map(message_view).collect(), has_more })
    }

    pub async fn room_invite(
        &self,
        caller: &Caller<'_>,
        room_id: String,
        agent_id: String,
    ) -> ServiceResult<RoomMemberActionResult> {
        let _guard = self.write_as(caller).await?;
        let room = self.owned_room(caller, &room_id).await?;
        let agent = self.store.agent(&agent_id).await?.ok_or(ServiceError::AgentNotFound)?;
        if self.hub.membership(&room_id, &agent_id) == Some(true) {
            return Err(ServiceError::AlreadyAMember);
        }
        self.store.invite(&room_id, &agent.id).await?;
        let event = Event::RoomInvited(RoomInvitedEvent {
            room_id: room_id.clone(),
            name: room.name,
            by_agent_id: caller.agent_id().to_owned(),
            by_display_name: caller.identity.display_name.clone(),
        });
        self.hub.send(Audience::Agents(&[&agent_id]), &event, None);
        Ok(RoomMemberActionResult { ok: true, room_id, agent_id })
    }

    pub async fn room_kick(
        &self,
        caller: &Caller<'_>,
        room_id: String,
        agent_id: String,
        reason: Option<String>,
    ) -> ServiceResult<RoomMemberActionResult> {
        let reason = check_optional_text("reason", reason, REASON_MAX)?
            .unwrap_or_else(|| format!("removed from the room by {}", caller.identity.display_name));
        let _guard = self.write_as(caller).await?;
        let room = self.owned_room(caller, &room_id).await?;
        if agent_id == self.controller_id {
            return Err(ServiceError::Forbidden("the controller cannot be kicked"));
        }
        if self.hub.membership(&room_id, &agent_id) != Some(true) {
            return Err(ServiceError::NotAMember);
        }
        let keep_invitation = room.visibility == "public";
        self.store.remove_member(&room_id, &agent_id, keep_invitation).await?;
        self.hub.remove_member(&room_id, &agent_id);
        let kicked = Event::Kicked(KickedEvent { room_id: room_id.clone(), reason });
        self.hub.send(Audience::Agents(&[&agent_id]), &kicked, None);
        let left = Event::RoomLeft(RoomLeftEvent { room_id: room_id.clone(), agent_id: agent_id.clone() });
        self.hub.send(Audience::Room(&room_id, &[&agent_id]), &left, None);
        Ok(RoomMemberActionResult { ok: true, room_id, agent_id })
    }

    pub async fn room_visibility(
        &self,
        caller: &Caller<'_>,
        room_id: String,
        visibility: Visibility,
    ) -> ServiceResult<RoomResult> {
        let _guard = self.write_as(caller).await?;
        let room = self.owned_room(caller, &room_id).await?;
        if room.visibility != visibility.as_str() {
            self.store.set_visibility(&room_id, visibility.as_str()).await?;
            let event =
                Event::RoomVisibilityChanged(RoomVisibilityChangedEvent { room_id: room_id.clone(), visibility });
            self.hub.send(Audience::Room(&room_id, &[]), &event, None);
        }
        Ok(RoomResult { room: self.current_room(caller, &room_id).await? })
    }

    pub async fn room_delete(&self, caller: &Caller<'_>, room_id: String) -> ServiceResult<RoomActionResult> {
        let _guard = self.write_as(caller).await?;
        self.owned_room(caller, &room_id).await?;
        self.store.delete_room(&room_id, &self.controller_id, now_ms()).await?;
        let members = self.hub.remove_room(&room_id);
        let mut audience: Vec<&str> = members.iter().map(String::as_str).collect();
        audience.push(&self.controller_id);
        let event = Event::RoomDeleted(RoomDeletedEvent { room_id: room_id.clone() });
        self.hub.send(Audience::Agents(&audience), &event, None);
        Ok(RoomActionResult { ok: true, room_id })
    }

    pub async fn room_take_ownership(&self, caller: &Caller<'_>, room_id: String) -> ServiceResult<RoomResult> {
        caller.require_controller()?;
        let _guard = self.write_as(caller).await?;
        let room = self.live_room(caller, &room_id).await?;
        if room.is_lobby {
            return Err(ServiceError::CannotModifyLobby);
        }
        let me = caller.agent_id();
        if room.owner_id != me || !room.is_member {
            self.store.take_ownership(&room_id, me, now_ms()).await?;
            self.hub.add_member(&room_id, me);
        }
        if !room.is_member {
            let event = Event::RoomJoined(RoomJoinedEvent {
                room_id: room_id.clone(),
                agent_id: me.to_owned(),
                display_name: caller.identity.display_name.clone(),
            });
            self.hub.send(Audience::Room(&room_id, &[]), &event, None);
        }
        if room.owner_id != me {
            let event = Event::RoomOwnerChanged(RoomOwnerChangedEvent {
                room_id: room_id.clone(),
                new_owner_id: me.to_owned(),
                previous_owner_id: room.owner_id.clone(),
            });
            self.hub.send(Audience::Room(&room_id, &[&room.owner_id]), &event, None);
        }
        Ok(RoomResult { room: self.current_room(caller, &room_id).await? })
    }

    pub async fn room_update(
        &self,
        caller: &Caller<'_>,
        room_id: String,
        name: Option<String>,
        description: Option<String>,
    ) -> ServiceResult<RoomResult> {
        if name.is_none() && description.is_none() {
            return Err(ServiceError::InvalidParams("give `name`, `description` or both".into()));
        }
        let name = name.map(|n| check_text("name", &n, NAME_MAX)).transpose()?;
        let description = match description {
            // An empty description clears it; absent leaves it unchanged.
            Some(d) => Some(check_optional_text("description", Some(d), DESCRIPTION_MAX)?),
            None => None,
        };
        let _guard = self.write_as(caller).await?;
        let room = self.owned_room(caller, &room_id).await?;
        let name = name.unwrap_or(room.name);
        let description = description.unwrap_or(room.description);
        self.store.update_room(&room_id, &name, description.as_deref()).await?;
        let event = Event::RoomUpdated(RoomUpdatedEvent { room_id: room_id.clone(), name, description });
        self.hub.send(Audience::Room(&room_id, &[]), &event, None);
        Ok(RoomResult { room: self.current_room(caller, &room_id).await? })
    }

    /// A live room the caller may see.
    async fn live_room(&self, caller: &Caller<'_>, room_id: &str) -> ServiceResult<RoomViewRow> {
        let room = self.visible_room(caller, room_id).await?;
        if room.deleted_at.is_some() {
            return Err(ServiceError::RoomNotFound);
        }
        Ok(room)
    }

    /// A live room the caller may manage: not the lobby, and the caller owns it or is
    /// the controller.
    async fn owned_room(&self, caller: &Caller<'_>, room_id: &str) -> ServiceResult<RoomViewRow> {
        let room = self.live_room(caller, room_id).await?;
        if room.is_lobby {
            return Err(ServiceError::CannotModifyLobby);
        }
        if room.owner_id != caller.agent_id() && !caller.is_controller() {
            return Err(ServiceError::Forbidden("only the room's owner or the controller may do this"));
        }
        Ok(room)
    }
}
