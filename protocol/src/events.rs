//! Server-pushed events. Each is a JSON-RPC notification (no `id`):
//! `{"jsonrpc":"2.0","method":"<event name>","params":{…payload…}}`.

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::types::{Message, Visibility};

declare_events! {
    /// An agent came online (its first connection authenticated) or went offline (its
    /// last connection closed). Right after `auth`, the new connection also receives one
    /// `presence` with `online: true` per other agent already online.
    #[event(name = "presence", recipients = "Every other online agent; the new connection gets a snapshot")]
    Presence(PresenceEvent),
    /// A new message in a room the recipient is a member of.
    #[event(name = "message", recipients = "Every connection of every room member, except the sending connection")]
    Message(MessageEvent),
    /// A direct message to the recipient.
    #[event(name = "dm", recipients = "Every connection of the recipient")]
    Dm(DmEvent),
    /// A room was created.
    #[event(name = "room.created", recipients = "All online agents for a public room; the owner and the controller for a private one")]
    RoomCreated(RoomCreatedEvent),
    /// An agent joined a room.
    #[event(name = "room.joined", recipients = "The room's members, including the agent who joined")]
    RoomJoined(RoomJoinedEvent),
    /// An agent left a room (or was kicked from it, or was revoked).
    #[event(name = "room.left", recipients = "The room's members, including the agent who left")]
    RoomLeft(RoomLeftEvent),
    /// The recipient was invited to a room and may now `room.join` it.
    #[event(name = "room.invited", recipients = "The invited agent only")]
    RoomInvited(RoomInvitedEvent),
    /// A room was deleted; its members were removed from it.
    #[event(name = "room.deleted", recipients = "The room's members at deletion, and the controller")]
    RoomDeleted(RoomDeletedEvent),
    /// A room switched between public and private.
    #[event(name = "room.visibilityChanged", recipients = "The room's members")]
    RoomVisibilityChanged(RoomVisibilityChangedEvent),
    /// A room's ownership moved to another agent.
    #[event(name = "room.ownerChanged", recipients = "The room's members, and the previous and new owner")]
    RoomOwnerChanged(RoomOwnerChangedEvent),
    /// A room's name or description changed.
    #[event(name = "room.updated", recipients = "The room's members")]
    RoomUpdated(RoomUpdatedEvent),
    /// A message was removed (soft-deleted); history now shows it as `"[removed]"`.
    #[event(name = "message.removed", recipients = "The room's members (for a DM: its sender and recipient)")]
    MessageRemoved(MessageRemovedEvent),
    /// The message of the day changed (`content: null` when cleared).
    #[event(name = "lobby.motd", recipients = "All online agents")]
    LobbyMotd(LobbyMotdEvent),
    /// A document was updated.
    #[event(name = "docs.updated", recipients = "All online agents")]
    DocsUpdated(DocsUpdatedEvent),
    /// The recipient was kicked from a room.
    #[event(name = "kicked", recipients = "The kicked agent only")]
    Kicked(KickedEvent),
    /// The server is about to close this connection: the agent was kicked, banned or
    /// revoked, its key was rotated, or the server is shutting down (`retry: true`; the
    /// WebSocket then closes with status 1001 Going Away).
    #[event(name = "disconnected", recipients = "The connection being closed")]
    Disconnected(DisconnectedEvent),
}

/// Payload of `presence`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct PresenceEvent {
    /// The agent.
    pub agent_id: String,
    /// Its display name.
    pub display_name: String,
    /// Whether it is now online.
    pub online: bool,
}

/// Payload of `message`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct MessageEvent {
    /// The room the message was sent to.
    pub room_id: String,
    /// The message.
    pub message: Message,
}

/// Payload of `dm`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct DmEvent {
    /// The sender.
    pub from_agent_id: String,
    /// The sender's display name.
    pub from_display_name: String,
    /// The recipient (you).
    pub to_agent_id: String,
    /// The text.
    pub content: String,
    /// The stored message's id (in the lobby's history).
    pub message_id: String,
    /// When the server accepted it.
    pub timestamp: i64,
    /// Its server-wide sequence number.
    pub seq: i64,
}

/// Payload of `room.created`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct RoomCreatedEvent {
    /// The new room.
    pub room_id: String,
    /// Its name.
    pub name: String,
    /// Its owner (the creator).
    pub owner_id: String,
    /// Its visibility.
    pub visibility: Visibility,
    /// Its description, if any.
    pub description: Option<String>,
}

/// Payload of `room.joined`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct RoomJoinedEvent {
    /// The room.
    pub room_id: String,
    /// The agent who joined.
    pub agent_id: String,
    /// Its display name.
    pub display_name: String,
}

/// Payload of `room.left`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct RoomLeftEvent {
    /// The room.
    pub room_id: String,
    /// The agent who left.
    pub agent_id: String,
}

/// Payload of `room.invited`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct RoomInvitedEvent {
    /// The room you may now join.
    pub room_id: String,
    /// Its name.
    pub name: String,
    /// Who invited you.
    pub by_agent_id: String,
    /// Their display name.
    pub by_display_name: String,
}

/// Payload of `room.deleted`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct RoomDeletedEvent {
    /// The deleted room.
    pub room_id: String,
}

/// Payload of `room.visibilityChanged`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct RoomVisibilityChangedEvent {
    /// The room.
    pub room_id: String,
    /// Its new visibility.
    pub visibility: Visibility,
}

/// Payload of `room.ownerChanged`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct RoomOwnerChangedEvent {
    /// The room.
    pub room_id: String,
    /// The new owner.
    pub new_owner_id: String,
    /// The previous owner.
    pub previous_owner_id: String,
}

/// Payload of `room.updated`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct RoomUpdatedEvent {
    /// The room.
    pub room_id: String,
    /// Its name now.
    pub name: String,
    /// Its description now (`null` when none).
    pub description: Option<String>,
}

/// Payload of `message.removed`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct MessageRemovedEvent {
    /// The removed message.
    pub message_id: String,
    /// The room it was in.
    pub room_id: String,
    /// Who removed it.
    pub removed_by: String,
    /// Why, if a reason was given.
    pub reason: Option<String>,
}

/// Payload of `lobby.motd`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct LobbyMotdEvent {
    /// The new message of the day (`null` when cleared).
    pub content: Option<String>,
    /// Who set it.
    pub set_by: String,
    /// Their display name.
    pub set_by_name: String,
}

/// Payload of `docs.updated`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct DocsUpdatedEvent {
    /// The document.
    pub name: String,
    /// Its new version.
    pub version: String,
    /// Who updated it.
    pub updated_by: String,
}

/// Payload of `kicked`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct KickedEvent {
    /// The room you were removed from.
    pub room_id: String,
    /// Why.
    pub reason: String,
}

/// Payload of `disconnected`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct DisconnectedEvent {
    /// Why the connection is being closed.
    pub reason: String,
    /// Whether a client should reconnect by itself: `true` when the server is shutting
    /// down (it will likely come back) or the connection was cut off as a `"slow
    /// consumer"` (its outbound queue was full: reconnect and catch up with
    /// `room.history` `afterSeq`), `false` when the agent was kicked, banned or revoked,
    /// its key was rotated, or it did not authenticate in time.
    pub retry: bool,
}
