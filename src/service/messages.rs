//! Messages: room messages, direct messages and their removal.

use broodlink_protocol::{Event, MessageRemovedEvent, RemoveResult, SendResult};

use super::commit::{Enqueued, Pending};
use super::{check_optional_text, now_ms, Caller, Linkspace, REASON_MAX};
use crate::error::{ServiceError, ServiceResult};
use crate::hub::Audience;

impl Pending {
    fn from_caller(
        caller: &Caller<'_>,
        room_id: String,
        content: String,
        to_agent_id: Option<String>,
        client_msg_id: Option<String>,
    ) -> Pending {
        Pending {
            client_msg_id,
            room_id,
            sender_id: caller.agent_id().to_owned(),
            sender_name: caller.identity.display_name.clone(),
            content,
            to_agent_id,
            session_id: caller.session.id,
        }
    }
}

impl Linkspace {
    pub async fn message_send(
        &self,
        caller: &Caller<'_>,
        room_id: String,
        content: String,
        client_msg_id: Option<String>,
        enqueued: Option<&Enqueued>,
    ) -> ServiceResult<SendResult> {
        self.check_content(&content)?;
        check_client_msg_id(client_msg_id.as_deref())?;
        // Refuse early what would be refused at commit, with the error that fits.
        if !self.is_lobby(&room_id) {
            match self.hub.membership(&room_id, caller.agent_id()) {
                None => return Err(ServiceError::RoomNotFound),
                Some(false) => {
                    // Outsiders of a private room learn nothing about it.
                    let room = self.store.room_views(caller.agent_id(), Some(&room_id)).await?.pop();
                    return Err(match room {
                        Some(room) if self.may_see(caller, &room) => ServiceError::NotAMember,
                        _ => ServiceError::RoomNotFound,
                    });
                }
                Some(true) => {}
            }
        }
        self.committer.commit(Pending::from_caller(caller, room_id, content, None, client_msg_id), enqueued).await
    }

    pub async fn message_dm(
        &self,
        caller: &Caller<'_>,
        to_agent_id: String,
        content: String,
        client_msg_id: Option<String>,
        enqueued: Option<&Enqueued>,
    ) -> ServiceResult<SendResult> {
        self.check_content(&content)?;
        check_client_msg_id(client_msg_id.as_deref())?;
        if self.store.agent(&to_agent_id).await?.is_none() {
            return Err(ServiceError::AgentNotFound);
        }
        let lobby = self.lobby_id.clone();
        self.committer
            .commit(Pending::from_caller(caller, lobby, content, Some(to_agent_id), client_msg_id), enqueued)
            .await
    }

    pub async fn message_remove(
        &self,
        caller: &Caller<'_>,
        message_id: String,
        reason: Option<String>,
    ) -> ServiceResult<RemoveResult> {
        let reason = check_optional_text("reason", reason, REASON_MAX)?;
        let _guard = self.write_as(caller).await?;
        let message = self.store.message(&message_id).await?.ok_or(ServiceError::MessageNotFound)?;
        let me = caller.agent_id();
        let is_sender = message.sender_id == me;
        // A DM exists only for its two parties (and the controller); a room message for
        // those who may read the room.
        let visible = match &message.to_agent_id {
            Some(to) => is_sender || to == me || caller.is_controller(),
            None => {
                self.is_lobby(&message.room_id)
                    || is_sender
                    || caller.is_controller()
                    || self.hub.membership(&message.room_id, me) == Some(true)
            }
        };
        if !visible {
            return Err(ServiceError::MessageNotFound);
        }
        let owns_room = message.to_agent_id.is_none()
            && self.store.room(&message.room_id).await?.is_some_and(|room| room.owner_id == me);
        if !(is_sender || owns_room || caller.is_controller()) {
            return Err(ServiceError::Forbidden(
                "only the sender, the room's owner or the controller may remove a message",
            ));
        }
        if message.removed_by.is_some() {
            return Err(ServiceError::AlreadyRemoved);
        }
        self.store.mark_removed(&message_id, me, reason.as_deref(), now_ms()).await?;

        let event = Event::MessageRemoved(MessageRemovedEvent {
            message_id: message_id.clone(),
            room_id: message.room_id.clone(),
            removed_by: me.to_owned(),
            reason,
        });
        match &message.to_agent_id {
            Some(to) => self.hub.send(Audience::Agents(&[&message.sender_id, to]), &event, None),
            None if self.is_lobby(&message.room_id) => self.hub.send(Audience::Everyone, &event, None),
            None => self.hub.send(Audience::Room(&message.room_id, &[&message.sender_id]), &event, None),
        }
        Ok(RemoveResult { ok: true, message_id, room_id: message.room_id })
    }

    /// Content must be 1 to `maxMessageLength` Unicode scalar values.
    fn check_content(&self, content: &str) -> ServiceResult<()> {
        if content.is_empty() {
            return Err(ServiceError::InvalidParams("`content` must not be empty".into()));
        }
        let max = self.config.max_message_length;
        // Cheap bound first: a string has at least len/4 characters.
        if content.len() > max as usize && content.chars().count() > max as usize {
            return Err(ServiceError::MessageTooLong(max));
        }
        Ok(())
    }
}

/// Longest `clientMsgId` accepted (a UUID is 36).
const CLIENT_MSG_ID_MAX: usize = 128;

fn check_client_msg_id(id: Option<&str>) -> ServiceResult<()> {
    match id {
        Some(id) if id.is_empty() || id.chars().count() > CLIENT_MSG_ID_MAX => {
            Err(ServiceError::InvalidParams(format!("`clientMsgId` must be 1 to {CLIENT_MSG_ID_MAX} characters")))
        }
        _ => Ok(()),
    }
}
