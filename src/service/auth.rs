//! `auth`: binding a connection to an agent, and presence.

use std::sync::Arc;

use broodlink_protocol::{AuthResult, LobbyRef};

use super::views::role_of;
use super::{check_text, Linkspace, NAME_MAX};
use crate::error::{ServiceError, ServiceResult};
use crate::hub::Audience;
use crate::keys;
use crate::session::{Identity, Session};

impl Linkspace {
    pub async fn auth(
        &self,
        session: &Arc<Session>,
        api_key: String,
        display_name: Option<String>,
    ) -> ServiceResult<AuthResult> {
        if session.identity().is_some() {
            return Err(ServiceError::Forbidden("this connection is already authenticated"));
        }
        if self.is_locked() {
            return Err(ServiceError::Forbidden("the server is locked: it accepts no new sessions"));
        }
        let display_name = display_name.map(|n| check_text("displayName", &n, NAME_MAX)).transpose()?;
        let key_hash = keys::hash(&api_key);

        // Guessing keys from one address is slowed down before any key is looked at.
        // Every attempt takes a token up front (so attempts in flight at once count
        // too) and a right key gives it back.
        let address = session.remote.ip();
        self.auth_failures.take(&address).map_err(ServiceError::RateLimited)?;
        // A wrong key is refused before the write lock: guessing keys must not slow
        // down everyone else's commits.
        match self.store.agent_by_key_hash(&key_hash).await {
            Ok(Some(_)) => self.auth_failures.give_back(&address),
            Ok(None) => return Err(ServiceError::AuthFailed),
            Err(e) => {
                self.auth_failures.give_back(&address);
                return Err(e.into());
            }
        }
        // Again under the write lock, so a concurrent ban or revoke cannot slip between
        // the key check and the connection going live.
        let motd = self.store.setting(super::lobby::MOTD).await?;
        let _guard = self.write().await;
        if session.is_closed() {
            return Err(ServiceError::Forbidden("this connection is being closed"));
        }
        let agent = self.store.agent_by_key_hash(&key_hash).await?.ok_or(ServiceError::AuthFailed)?;
        if agent.banned {
            return Err(ServiceError::Banned);
        }
        let most = self.config.limits.max_connections_per_agent;
        if self.hub.connections_of(&agent.id) >= most as usize {
            return Err(ServiceError::ConnectionLimit(most));
        }
        let identity = Identity {
            agent_id: agent.id.clone(),
            role: role_of(&agent.role),
            display_name: display_name.unwrap_or(agent.display_name),
        };
        // Events for this connection wait until its `auth` response has been sent.
        session.hold_events();
        if !session.authenticate(identity.clone()) {
            session.discard_held();
            return Err(ServiceError::Forbidden("this connection is already authenticated"));
        }
        for presence in self.hub.presence_frames(&agent.id) {
            session.push(presence);
        }
        if let Some(online) = self.hub.connect(session.clone(), &agent.id) {
            self.hub.send_frame(Audience::Everyone, online, Some(session.id));
        }
        // No write here: `lastSeen` of an online agent is "now" (see `agent_info`), and
        // it is stored when the agent goes offline. An fsync per `auth` would cap how
        // fast a fleet can connect.

        Ok(AuthResult {
            status: "ok".into(),
            agent_id: identity.agent_id,
            role: identity.role,
            display_name: identity.display_name,
            lobby: LobbyRef { room_id: self.lobby_id.clone(), name: self.config.lobby.name.clone() },
            motd,
        })
    }
}
