//! The controller's agent management: invite, list, kick, ban, unban, revoke.

use broodlink_protocol::{
    AgentActionResult, AgentInviteResult, AgentListResult, Event, Role, RoomLeftEvent, RoomOwnerChangedEvent,
};

use super::{check_optional_text, check_text, new_id, now_ms, Caller, Linkspace, NAME_MAX, REASON_MAX};
use crate::error::{ServiceError, ServiceResult};
use crate::hub::Audience;
use crate::keys;
use crate::store::AgentRow;

impl Linkspace {
    pub async fn agent_invite(&self, caller: &Caller<'_>, display_name: String) -> ServiceResult<AgentInviteResult> {
        caller.require_controller()?;
        let display_name = check_text("displayName", &display_name, NAME_MAX)?;
        let api_key = keys::generate(Role::Participant);
        let agent = AgentRow {
            id: new_id(),
            display_name,
            role: Role::Participant.as_str().into(),
            banned: false,
            created_at: now_ms(),
            last_seen: None,
        };
        let _guard = self.write_as(caller).await?;
        self.store.insert_agent(&agent, &keys::hash(&api_key)).await?;
        Ok(AgentInviteResult { agent_id: agent.id, display_name: agent.display_name, api_key, role: Role::Participant })
    }

    pub async fn agent_list(&self, caller: &Caller<'_>) -> ServiceResult<AgentListResult> {
        caller.require_controller()?;
        let agents = self.store.agents().await?.into_iter().map(|row| self.agent_info(row)).collect();
        Ok(AgentListResult { agents })
    }

    pub async fn agent_kick(
        &self,
        caller: &Caller<'_>,
        agent_id: String,
        reason: Option<String>,
    ) -> ServiceResult<AgentActionResult> {
        let reason =
            check_optional_text("reason", reason, REASON_MAX)?.unwrap_or_else(|| "kicked by the controller".into());
        let _guard = self.write_as(caller).await?;
        self.moderation_target(caller, &agent_id).await?;
        let disconnected = self.disconnect_agent(&agent_id, &reason).await;
        Ok(AgentActionResult { ok: true, agent_id, disconnected })
    }

    pub async fn agent_ban(
        &self,
        caller: &Caller<'_>,
        agent_id: String,
        reason: Option<String>,
    ) -> ServiceResult<AgentActionResult> {
        let reason =
            check_optional_text("reason", reason, REASON_MAX)?.unwrap_or_else(|| "banned by the controller".into());
        let _guard = self.write_as(caller).await?;
        self.moderation_target(caller, &agent_id).await?;
        self.store.set_banned(&agent_id, true).await?;
        let disconnected = self.disconnect_agent(&agent_id, &reason).await;
        Ok(AgentActionResult { ok: true, agent_id, disconnected })
    }

    pub async fn agent_unban(&self, caller: &Caller<'_>, agent_id: String) -> ServiceResult<AgentActionResult> {
        let _guard = self.write_as(caller).await?;
        self.moderation_target(caller, &agent_id).await?;
        self.store.set_banned(&agent_id, false).await?;
        Ok(AgentActionResult { ok: true, agent_id, disconnected: 0 })
    }

    /// Deletes the agent; its rooms pass to the controller and its memberships end.
    pub async fn agent_revoke(
        &self,
        caller: &Caller<'_>,
        agent_id: String,
        reason: Option<String>,
    ) -> ServiceResult<AgentActionResult> {
        let reason =
            check_optional_text("reason", reason, REASON_MAX)?.unwrap_or_else(|| "revoked by the controller".into());
        let _guard = self.write_as(caller).await?;
        self.moderation_target(caller, &agent_id).await?;
        let owned: Vec<String> = self
            .store
            .live_rooms()
            .await?
            .into_iter()
            .filter(|room| room.owner_id == agent_id && !room.is_lobby)
            .map(|room| room.id)
            .collect();
        let rooms = self.hub.rooms_of(&agent_id);
        self.store.delete_agent(&agent_id, &self.controller_id).await?;

        let disconnected = self.disconnect_agent(&agent_id, &reason).await;
        self.hub.remove_agent_everywhere(&agent_id);
        for room_id in rooms {
            let event = Event::RoomLeft(RoomLeftEvent { room_id: room_id.clone(), agent_id: agent_id.clone() });
            self.hub.send(Audience::Room(&room_id, &[]), &event, None);
        }
        for room_id in owned {
            let event = Event::RoomOwnerChanged(RoomOwnerChangedEvent {
                room_id: room_id.clone(),
                new_owner_id: self.controller_id.clone(),
                previous_owner_id: agent_id.clone(),
            });
            self.hub.send(Audience::Room(&room_id, &[&self.controller_id]), &event, None);
        }
        Ok(AgentActionResult { ok: true, agent_id, disconnected })
    }

    /// The agent a controller action targets: it must exist and not be the controller.
    async fn moderation_target(&self, caller: &Caller<'_>, agent_id: &str) -> ServiceResult<AgentRow> {
        caller.require_controller()?;
        let agent = self.store.agent(agent_id).await?.ok_or(ServiceError::AgentNotFound)?;
        if agent.role == Role::Controller.as_str() {
            return Err(ServiceError::Forbidden("the controller cannot be kicked, banned or revoked"));
        }
        Ok(agent)
    }
}
