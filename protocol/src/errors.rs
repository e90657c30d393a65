//! Error codes. Every error response is `{"code": <number>, "message": <text>}`,
//! sometimes with a `data` member giving details (for `-32602`, the offending field).

use jsonrpsee::types::ErrorObjectOwned;

declare_errors! {
    /// The frame is not valid JSON. The response's `id` is `null`.
    ParseError = -32700, "Parse Error", "Parse error";
    /// The frame is JSON but not a JSON-RPC 2.0 request (or batch of requests), or
    /// it is larger than the server accepts.
    InvalidRequest = -32600, "Invalid Request", "Invalid request";
    /// No method has this name.
    MethodNotFound = -32601, "Method Not Found", "Method not found";
    /// A param is missing, has the wrong type or an invalid value; the message names it.
    InvalidParams = -32602, "Invalid Params", "Invalid params";
    /// The server failed while handling the call; the connection stays usable.
    InternalError = -32603, "Internal Error", "Internal error";
    /// The connection has not authenticated: call `auth` first.
    AuthRequired = 4001, "Auth Required", "Authentication required";
    /// The API key is not valid (unknown, malformed or revoked).
    AuthFailed = 4002, "Auth Failed", "Invalid API key";
    /// The caller's role or room ownership does not allow this action.
    Forbidden = 4003, "Forbidden", "Insufficient permissions for this action";
    /// The agent has been banned and cannot authenticate.
    AgentBanned = 4004, "Agent Banned", "Agent has been banned";
    /// No live room has this id (or the caller may not see it).
    RoomNotFound = 4010, "Room Not Found", "Room not found";
    /// The caller (or the named agent) is not a member of the room.
    NotAMember = 4011, "Not A Member", "Not a member of this room";
    /// The caller (or the named agent) is already a member of the room.
    AlreadyAMember = 4012, "Already A Member", "Already a member of this room";
    /// The room is private and the caller has no invitation.
    NotInvited = 4013, "Not Invited", "Private room requires an invitation first";
    /// No agent has this id.
    AgentNotFound = 4020, "Agent Not Found", "Agent not found";
    /// The lobby cannot be left, modified, deleted or moderated as a room.
    CannotModifyLobby = 4030, "Cannot Modify Lobby", "The lobby cannot be modified or deleted";
    /// The server already has `maxRooms` live rooms.
    RoomLimit = 4040, "Room Limit", "Maximum room count reached";
    /// The content is longer than `maxMessageLength` characters.
    MessageTooLong = 4050, "Message Too Long", "Message exceeds maxMessageLength";
    /// No message has this id (or the caller may not see it).
    MessageNotFound = 4060, "Message Not Found", "Message not found";
    /// The message was already removed.
    AlreadyRemoved = 4061, "Already Removed", "Message was already removed";
    /// No document has this name (or the caller may not read it).
    DocumentNotFound = 4070, "Document Not Found", "Document not found";
    /// The document is read-only.
    ReadOnlyDocument = 4071, "Read-Only Document", "Cannot update a static document";
    /// Too many calls: the agent's rate limit (`limits.callsPerSecond`, and
    /// `limits.sendsPerSecond` for `message.send` and `message.dm`) or, for `auth`, the
    /// limit on failed attempts from one address (`limits.authFailuresPerMinute`). Any
    /// method may answer it. `data` is `{"retryAfterMs": <integer>}`: the call would be
    /// accepted after that many milliseconds. Nothing was done.
    RateLimited = 4080, "Rate Limited", "Rate limit exceeded";
    /// `auth` would open more connections for this agent than `limits.maxConnectionsPerAgent`.
    /// Close another connection of the agent first.
    ConnectionLimit = 4081, "Connection Limit", "Too many connections for this agent";
}

impl ErrorCode {
    /// An error object with this code and its default message.
    pub fn into_error(self) -> ErrorObjectOwned {
        ErrorObjectOwned::owned::<()>(self.code(), self.message(), None)
    }

    /// An error object with this code and a specific message.
    pub fn with_message(self, message: impl Into<String>) -> ErrorObjectOwned {
        ErrorObjectOwned::owned::<()>(self.code(), message.into(), None)
    }
}

impl From<ErrorCode> for ErrorObjectOwned {
    fn from(code: ErrorCode) -> Self {
        code.into_error()
    }
}
