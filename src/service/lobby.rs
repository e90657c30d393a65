//! The message of the day.

use broodlink_protocol::{Event, LobbyMotdEvent, MotdResult};

use super::{Caller, Linkspace};
use crate::error::{ServiceError, ServiceResult};
use crate::hub::Audience;

pub(super) const MOTD: &str = "motd";
const MOTD_SET_BY: &str = "motd_set_by";

impl Linkspace {
    pub async fn lobby_set_motd(&self, caller: &Caller<'_>, content: Option<String>) -> ServiceResult<MotdResult> {
        caller.require_controller()?;
        let content = content.filter(|c| !c.trim().is_empty());
        if let Some(text) = &content {
            let max = self.config.max_message_length;
            if text.chars().count() > max as usize {
                return Err(ServiceError::MessageTooLong(max));
            }
        }
        let _guard = self.write_as(caller).await?;
        self.store.set_settings(&[(MOTD, content.as_deref()), (MOTD_SET_BY, Some(caller.agent_id()))]).await?;
        let event = Event::LobbyMotd(LobbyMotdEvent {
            content: content.clone(),
            set_by: caller.agent_id().to_owned(),
            set_by_name: caller.identity.display_name.clone(),
        });
        self.hub.send(Audience::Everyone, &event, None);
        Ok(MotdResult { motd: content })
    }

    pub async fn lobby_get_motd(&self) -> ServiceResult<MotdResult> {
        Ok(MotdResult { motd: self.store.setting(MOTD).await? })
    }
}
