//! The `#[rpc]` trait's implementation: one line per method, from the call's
//! extensions (which carry the connection's [`Session`]) to the [`Linkspace`].
//! The dispatcher has already checked authentication and the method's declared
//! permission; anything that depends on the params is checked by the linkspace.

use std::sync::Arc;

use broodlink_protocol::*;
use jsonrpsee::core::{async_trait, RpcResult};
use jsonrpsee::types::ErrorObjectOwned;
use jsonrpsee::Extensions;

use crate::error::ServiceError;
use crate::service::{Caller, Enqueued, Linkspace};
use crate::session::Session;

pub struct Rpc {
    linkspace: Arc<Linkspace>,
}

impl Rpc {
    pub fn new(linkspace: Arc<Linkspace>) -> Rpc {
        Rpc { linkspace }
    }
}

fn session(ext: &Extensions) -> Result<&Arc<Session>, ErrorObjectOwned> {
    // The transport inserts the session into every call's extensions.
    ext.get::<Arc<Session>>().ok_or_else(|| ErrorCode::InternalError.into_error())
}

fn caller(ext: &Extensions) -> Result<Caller<'_>, ErrorObjectOwned> {
    let session = session(ext)?;
    let identity = session.identity().ok_or(ServiceError::AuthRequired)?;
    Ok(Caller { session, identity })
}

#[async_trait]
impl BroodLinkApiServer for Rpc {
    async fn auth(&self, ext: &Extensions, api_key: String, display_name: Option<String>) -> RpcResult<AuthResult> {
        Ok(self.linkspace.auth(session(ext)?, api_key, display_name).await?)
    }

    async fn invite_agent(&self, ext: &Extensions, display_name: String) -> RpcResult<AgentInviteResult> {
        Ok(self.linkspace.agent_invite(&caller(ext)?, display_name).await?)
    }

    async fn revoke_agent(
        &self,
        ext: &Extensions,
        agent_id: String,
        reason: Option<String>,
    ) -> RpcResult<AgentActionResult> {
        Ok(self.linkspace.agent_revoke(&caller(ext)?, agent_id, reason).await?)
    }

    async fn list_agents(&self, ext: &Extensions) -> RpcResult<AgentListResult> {
        Ok(self.linkspace.agent_list(&caller(ext)?).await?)
    }

    async fn kick_agent(
        &self,
        ext: &Extensions,
        agent_id: String,
        reason: Option<String>,
    ) -> RpcResult<AgentActionResult> {
        Ok(self.linkspace.agent_kick(&caller(ext)?, agent_id, reason).await?)
    }

    async fn ban_agent(
        &self,
        ext: &Extensions,
        agent_id: String,
        reason: Option<String>,
    ) -> RpcResult<AgentActionResult> {
        Ok(self.linkspace.agent_ban(&caller(ext)?, agent_id, reason).await?)
    }

    async fn unban_agent(&self, ext: &Extensions, agent_id: String) -> RpcResult<AgentActionResult> {
        Ok(self.linkspace.agent_unban(&caller(ext)?, agent_id).await?)
    }

    async fn create_room(
        &self,
        ext: &Extensions,
        name: String,
        visibility: Option<Visibility>,
        description: Option<String>,
    ) -> RpcResult<RoomResult> {
        Ok(self.linkspace.room_create(&caller(ext)?, name, visibility, description).await?)
    }

    async fn list_rooms(&self, ext: &Extensions) -> RpcResult<RoomListResult> {
        Ok(self.linkspace.room_list(&caller(ext)?).await?)
    }

    async fn join_room(&self, ext: &Extensions, room_id: String) -> RpcResult<RoomResult> {
        Ok(self.linkspace.room_join(&caller(ext)?, room_id).await?)
    }

    async fn leave_room(&self, ext: &Extensions, room_id: String) -> RpcResult<RoomActionResult> {
        Ok(self.linkspace.room_leave(&caller(ext)?, room_id).await?)
    }

    async fn room_info(&self, ext: &Extensions, room_id: String) -> RpcResult<RoomInfoResult> {
        Ok(self.linkspace.room_info(&caller(ext)?, room_id).await?)
    }

    async fn room_history(
        &self,
        ext: &Extensions,
        room_id: String,
        limit: Option<u32>,
        before: Option<i64>,
        before_seq: Option<i64>,
        after_seq: Option<i64>,
    ) -> RpcResult<HistoryResult> {
        let query = RoomHistoryParams { room_id, limit, before, before_seq, after_seq };
        Ok(self.linkspace.room_history(&caller(ext)?, query).await?)
    }

    async fn invite_to_room(
        &self,
        ext: &Extensions,
        room_id: String,
        agent_id: String,
    ) -> RpcResult<RoomMemberActionResult> {
        Ok(self.linkspace.room_invite(&caller(ext)?, room_id, agent_id).await?)
    }

    async fn kick_from_room(
        &self,
        ext: &Extensions,
        room_id: String,
        agent_id: String,
        reason: Option<String>,
    ) -> RpcResult<RoomMemberActionResult> {
        Ok(self.linkspace.room_kick(&caller(ext)?, room_id, agent_id, reason).await?)
    }

    async fn set_room_visibility(
        &self,
        ext: &Extensions,
        room_id: String,
        visibility: Visibility,
    ) -> RpcResult<RoomResult> {
        Ok(self.linkspace.room_visibility(&caller(ext)?, room_id, visibility).await?)
    }

    async fn delete_room(&self, ext: &Extensions, room_id: String) -> RpcResult<RoomActionResult> {
        Ok(self.linkspace.room_delete(&caller(ext)?, room_id).await?)
    }

    async fn take_room_ownership(&self, ext: &Extensions, room_id: String) -> RpcResult<RoomResult> {
        Ok(self.linkspace.room_take_ownership(&caller(ext)?, room_id).await?)
    }

    async fn update_room(
        &self,
        ext: &Extensions,
        room_id: String,
        name: Option<String>,
        description: Option<String>,
    ) -> RpcResult<RoomResult> {
        Ok(self.linkspace.room_update(&caller(ext)?, room_id, name, description).await?)
    }

    async fn send_message(
        &self,
        ext: &Extensions,
        room_id: String,
        content: String,
        client_msg_id: Option<String>,
    ) -> RpcResult<SendResult> {
        let caller = caller(ext)?;
        Ok(self.linkspace.message_send(&caller, room_id, content, client_msg_id, ext.get::<Enqueued>()).await?)
    }

    async fn send_dm(
        &self,
        ext: &Extensions,
        to_agent_id: String,
        content: String,
        client_msg_id: Option<String>,
    ) -> RpcResult<SendResult> {
        let caller = caller(ext)?;
        Ok(self.linkspace.message_dm(&caller, to_agent_id, content, client_msg_id, ext.get::<Enqueued>()).await?)
    }

    async fn remove_message(
        &self,
        ext: &Extensions,
        message_id: String,
        reason: Option<String>,
    ) -> RpcResult<RemoveResult> {
        Ok(self.linkspace.message_remove(&caller(ext)?, message_id, reason).await?)
    }

    async fn set_motd(&self, ext: &Extensions, content: Option<String>) -> RpcResult<MotdResult> {
        Ok(self.linkspace.lobby_set_motd(&caller(ext)?, content).await?)
    }

    async fn get_motd(&self, ext: &Extensions) -> RpcResult<MotdResult> {
        caller(ext)?;
        Ok(self.linkspace.lobby_get_motd().await?)
    }

    async fn list_docs(&self, ext: &Extensions) -> RpcResult<DocListResult> {
        Ok(self.linkspace.docs_list(&caller(ext)?).await?)
    }

    async fn get_doc(&self, ext: &Extensions, name: String) -> RpcResult<DocResult> {
        Ok(self.linkspace.docs_get(&caller(ext)?, name).await?)
    }

    async fn update_doc(
        &self,
        ext: &Extensions,
        name: String,
        content: String,
        version: Option<String>,
    ) -> RpcResult<DocUpdateResult> {
        Ok(self.linkspace.docs_update(&caller(ext)?, name, content, version).await?)
    }

    async fn ping(&self, _ext: &Extensions) -> RpcResult<PingResult> {
        Ok(PingResult { timestamp: crate::service::now_ms() })
    }
}
