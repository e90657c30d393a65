//! The linkspace: the rules of the protocol. Each submodule handles one area of
//! methods; all of them check permissions, write through the [`Store`], update the
//! [`Hub`] and fan events out — in that order, so an event never announces anything
//! that is not committed.
//!
//! Every state change runs under one write lock. SQLite has a single writer anyway, and
//! holding the lock from the permission check to the fan-out makes each change atomic
//! with respect to the others: a message is delivered exactly to the members at its
//! commit, and every recipient sees a room's messages in `seq` order.

mod agents;
mod auth;
mod commit;
mod docs;
mod lobby;
mod messages;
mod rooms;
mod views;

use std::net::IpAddr;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use broodlink_protocol::{DisconnectedEvent, Event, PresenceEvent, Role};
use tokio::sync::{Mutex, MutexGuard};

use crate::config::Config;
use crate::error::{ServiceError, ServiceResult};
use crate::hub::{Audience, Hub};
use crate::keys;
use crate::limits::Limiter;
use crate::session::{Identity, Session};
use crate::store::{AgentRow, RoomRow, Store, StoreResult};

pub use commit::Enqueued;
pub use docs::PARTICIPANT_GUIDE;

/// The default texts of the editable docs: `(CONSTITUTION.md, CONTROLLER.md)`.
pub fn docs_defaults() -> (&'static str, &'static str) {
    (docs::DEFAULT_CONSTITUTION, docs::DEFAULT_CONTROLLER)
}

/// Allocates `seq` and timestamps; owned by the write lock.
struct Clock {
    last_seq: i64,
    last_timestamp: i64,
}

impl Clock {
    /// The next message's `seq` and timestamp. Timestamps never go backwards, so
    /// paging by time and by `seq` agree even if the system clock steps back.
    fn tick(&mut self) -> (i64, i64) {
        self.last_seq += 1;
        self.last_timestamp = self.last_timestamp.max(now_ms());
        (self.last_seq, self.last_timestamp)
    }
}

pub struct Linkspace {
    pub(crate) store: Store,
    pub(crate) hub: Hub,
    pub(crate) config: Config,
    /// `<data-dir>/docs`, where `CONTROLLER.md` is read from on each request.
    pub(crate) docs_dir: Option<PathBuf>,
    pub(crate) lobby_id: String,
    pub(crate) controller_id: String,
    /// Set by `broodlink lock`: new connections and new `auth`s are refused.
    locked: AtomicBool,
    write: Mutex<Clock>,
    committer: commit::Committer,
    /// Failed `auth` calls by remote address.
    auth_failures: Limiter<IpAddr>,
}

/// What opening a linkspace produced.
pub struct Opened {
    pub linkspace: Arc<Linkspace>,
    /// The controller's key, only when this run created the controller.
    pub new_controller_key: Option<String>,
}

impl Linkspace {
    /// Opens the store and makes sure the controller, the lobby and the constitution
    /// exist; loads room memberships into the hub. A controller created now gets
    /// `controller_key`, or a new key when that is `None`.
    pub async fn open(
        config: Config,
        store: Store,
        docs_dir: Option<PathBuf>,
        controller_key: Option<String>,
    ) -> StoreResult<Opened> {
        let now = now_ms();
        let (controller, new_controller_key) = match store.controller().await? {
            Some(controller) => (controller, None),
            None => {
                let key = controller_key.unwrap_or_else(|| keys::generate(Role::Controller));
                let controller = AgentRow {
                    id: new_id(),
                    display_name: "Controller".into(),
                    role: Role::Controller.as_str().into(),
                    banned: false,
                    created_at: now,
                    last_seen: None,
                };
                store.insert_agent(&controller, &keys::hash(&key)).await?;
                (controller, Some(key))
            }
        };
        let lobby = match store.lobby().await? {
            Some(lobby) => {
                if lobby.name != config.lobby.name {
                    store.update_room(&lobby.id, &config.lobby.name, lobby.description.as_deref()).await?;
                }
                lobby
            }
            None => {
                let lobby = RoomRow {
                    id: new_id(),
                    name: config.lobby.name.clone(),
                    description: None,
                    owner_id: controller.id.clone(),
                    visibility: "public".into(),
                    is_lobby: true,
                    created_at: now,
                    deleted_at: None,
                };
                store.insert_room(&lobby).await?;
                lobby
            }
        };
        docs::seed_constitution(&store, docs_dir.as_deref()).await?;

        let hub = Hub::default();
        for room in store.live_rooms().await? {
            if !room.is_lobby {
                hub.set_members(&room.id, std::iter::empty());
            }
        }
        for member in store.memberships().await? {
            if member.is_member {
                hub.add_member(&member.room_id, &member.agent_id);
            }
        }
        let clock = Clock { last_seq: store.max_seq().await?, last_timestamp: store.max_timestamp().await? };
        let per_minute = config.limits.auth_failures_per_minute;
        let auth_failures = Limiter::new(f64::from(per_minute) / 60.0, per_minute);
        let linkspace = Arc::new_cyclic(|this| Linkspace {
            store,
            hub,
            config,
            docs_dir,
            lobby_id: lobby.id,
            controller_id: controller.id,
            locked: AtomicBool::new(false),
            write: Mutex::new(clock),
            committer: commit::Committer::start(this.clone()),
            auth_failures,
        });
        Ok(Opened { linkspace, new_controller_key })
    }

    /// Takes the write lock (see the module docs).
    async fn write(&self) -> MutexGuard<'_, Clock> {
        self.write.lock().await
    }

    /// Takes the write lock for a caller's change, unless the caller's connection was
    /// closed (kicked, banned, revoked) while it waited: such a change must not land.
    async fn write_as(&self, caller: &Caller<'_>) -> ServiceResult<MutexGuard<'_, Clock>> {
        let guard = self.write().await;
        if caller.session.is_closed() {
            return Err(ServiceError::Forbidden("this connection is being closed"));
        }
        Ok(guard)
    }

    /// A connection ended: forget it, and announce the agent offline if it was its last.
    pub async fn connection_closed(&self, session: &Session) {
        let _guard = self.write().await;
        if let Some(agent_id) = self.hub.disconnect(session.id) {
            self.went_offline(&agent_id, session.identity().map(|i| i.display_name.clone())).await;
        }
    }

    /// Closes every connection of an agent with `disconnected {reason}`. Returns how
    /// many were closed. Caller holds the write lock.
    async fn disconnect_agent(&self, agent_id: &str, reason: &str) -> u32 {
        let sessions = self.hub.take_agent(agent_id);
        let event = DisconnectedEvent { reason: reason.to_owned(), retry: false };
        let frame = crate::hub::frame(&Event::Disconnected(event));
        for session in &sessions {
            session.disconnect(frame.clone(), 1000, reason);
        }
        if let Some(first) = sessions.first() {
            self.went_offline(agent_id, first.identity().map(|i| i.display_name.clone())).await;
        }
        sessions.len() as u32
    }

    async fn went_offline(&self, agent_id: &str, display_name: Option<String>) {
        if let Err(e) = self.store.set_last_seen(agent_id, now_ms()).await {
            tracing::warn!(error = %e, "could not record last_seen");
        }
        let event = Event::Presence(PresenceEvent {
            agent_id: agent_id.to_owned(),
            display_name: display_name.unwrap_or_default(),
            online: false,
        });
        self.hub.send(Audience::Everyone, &event, None);
    }

    /// Tells every connection the server is going away (`retry: true`, close status
    /// 1001) and closes it.
    pub async fn close_all(&self, reason: &str) {
        // Under the write lock, so no `auth` completes half-way through.
        let _guard = self.write().await;
        let frame =
            crate::hub::frame(&Event::Disconnected(DisconnectedEvent { reason: reason.to_owned(), retry: true }));
        for session in self.hub.take_all() {
            session.disconnect(frame.clone(), 1001, reason);
        }
    }

    /// Closes the database.
    pub async fn close(&self) {
        self.store.close().await;
    }

    pub fn online_agents(&self) -> usize {
        self.hub.online_count()
    }

    pub fn connection_count(&self) -> usize {
        self.hub.connection_count()
    }

    pub fn is_locked(&self) -> bool {
        self.locked.load(Ordering::Acquire)
    }

    pub fn set_locked(&self, locked: bool) {
        self.locked.store(locked, Ordering::Release);
    }

    /// Disconnects every online agent except the controller (`broodlink kick`).
    /// Returns how many agents were disconnected.
    pub async fn kick_participants(&self, reason: &str) -> u32 {
        let _guard = self.write().await;
        let agents = self.hub.online_agents(&self.controller_id);
        for agent_id in &agents {
            self.disconnect_agent(agent_id, reason).await;
        }
        agents.len() as u32
    }

    /// Issues a new controller key, invalidates the old one and disconnects the
    /// controller's sessions (they used the old key). Returns the new key.
    pub async fn rotate_controller_key(&self) -> StoreResult<String> {
        let _guard = self.write().await;
        let key = keys::generate(Role::Controller);
        self.store.set_key_hash(&self.controller_id, &keys::hash(&key)).await?;
        self.disconnect_agent(&self.controller_id, "controller key rotated").await;
        Ok(key)
    }

    fn is_lobby(&self, room_id: &str) -> bool {
        room_id == self.lobby_id
    }
}

/// The caller of a method: its connection and the agent it authenticated as.
pub struct Caller<'a> {
    pub session: &'a Arc<Session>,
    pub identity: &'a Identity,
}

impl Caller<'_> {
    pub fn agent_id(&self) -> &str {
        &self.identity.agent_id
    }

    pub fn is_controller(&self) -> bool {
        self.identity.is_controller()
    }

    fn require_controller(&self) -> ServiceResult<()> {
        if self.is_controller() {
            Ok(())
        } else {
            Err(ServiceError::Forbidden("only the controller may do this"))
        }
    }
}

pub fn now_ms() -> i64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_millis() as i64).unwrap_or(0)
}

pub fn new_id() -> String {
    uuid::Uuid::new_v4().to_string()
}

/// A new message id: a UUID that grows with time (version 7), so the unique index on
/// message ids is appended to instead of written at a random page per message.
pub fn new_message_id() -> String {
    uuid::Uuid::now_v7().to_string()
}

/// Checks a required name-like text: trimmed, 1 to `max` characters.
fn check_text(field: &str, value: &str, max: usize) -> ServiceResult<String> {
    let trimmed = value.trim();
    if trimmed.is_empty() {
        return Err(ServiceError::InvalidParams(format!("`{field}` must not be empty")));
    }
    if trimmed.chars().count() > max {
        return Err(ServiceError::InvalidParams(format!("`{field}` must be at most {max} characters")));
    }
    Ok(trimmed.to_owned())
}

/// Checks an optional free text: at most `max` characters; empty means none.
fn check_optional_text(field: &str, value: Option<String>, max: usize) -> ServiceResult<Option<String>> {
    match value {
        Some(v) if v.chars().count() > max => {
            Err(ServiceError::InvalidParams(format!("`{field}` must be at most {max} characters")))
        }
        Some(v) if v.trim().is_empty() => Ok(None),
        other => Ok(other),
    }
}

const NAME_MAX: usize = 100;
const DESCRIPTION_MAX: usize = 1000;
const REASON_MAX: usize = 500;
