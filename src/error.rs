//! What can go wrong in a call, as types; [`ServiceError::code`] is the one place
//! they map to protocol error codes. Storage details never reach a client.

use broodlink_protocol::ErrorCode;
use jsonrpsee::types::ErrorObjectOwned;

use crate::store::StoreError;

#[derive(Debug, thiserror::Error)]
pub enum ServiceError {
    #[error("Authentication required: call auth first")]
    AuthRequired,
    #[error("Invalid API key")]
    AuthFailed,
    #[error("Forbidden: {0}")]
    Forbidden(&'static str),
    #[error("Agent has been banned")]
    Banned,
    #[error("Room not found")]
    RoomNotFound,
    #[error("Not a member of this room")]
    NotAMember,
    #[error("Already a member of this room")]
    AlreadyAMember,
    #[error("Private room requires an invitation first")]
    NotInvited,
    #[error("Agent not found")]
    AgentNotFound,
    #[error("The lobby cannot be modified or deleted")]
    CannotModifyLobby,
    #[error("Maximum room count reached ({0})")]
    RoomLimit(u32),
    #[error("Message exceeds maxMessageLength ({0} characters)")]
    MessageTooLong(u32),
    #[error("Message not found")]
    MessageNotFound,
    #[error("Message was already removed")]
    AlreadyRemoved,
    #[error("Document not found: {0}")]
    DocumentNotFound(String),
    #[error("Cannot update a static document: {0}")]
    ReadOnlyDocument(String),
    #[error("Rate limit exceeded: retry in {} ms", RetryAfter::from(*.0).retry_after_ms)]
    RateLimited(std::time::Duration),
    #[error("Too many connections for this agent (limit {0}): close one of its other connections first")]
    ConnectionLimit(u32),
    #[error("Invalid params: {0}")]
    InvalidParams(String),
    #[error("the server is shutting down")]
    ShuttingDown,
    #[error("the message could not be stored")]
    CommitFailed,
    #[error(transparent)]
    Store(#[from] StoreError),
}

pub type ServiceResult<T> = Result<T, ServiceError>;

impl ServiceError {
    pub fn code(&self) -> ErrorCode {
        match self {
            ServiceError::AuthRequired => ErrorCode::AuthRequired,
            ServiceError::AuthFailed => ErrorCode::AuthFailed,
            ServiceError::Forbidden(_) => ErrorCode::Forbidden,
            ServiceError::Banned => ErrorCode::AgentBanned,
            ServiceError::RoomNotFound => ErrorCode::RoomNotFound,
            ServiceError::NotAMember => ErrorCode::NotAMember,
            ServiceError::AlreadyAMember => ErrorCode::AlreadyAMember,
            ServiceError::NotInvited => ErrorCode::NotInvited,
            ServiceError::AgentNotFound => ErrorCode::AgentNotFound,
            ServiceError::CannotModifyLobby => ErrorCode::CannotModifyLobby,
            ServiceError::RoomLimit(_) => ErrorCode::RoomLimit,
            ServiceError::MessageTooLong(_) => ErrorCode::MessageTooLong,
            ServiceError::MessageNotFound => ErrorCode::MessageNotFound,
            ServiceError::AlreadyRemoved => ErrorCode::AlreadyRemoved,
            ServiceError::DocumentNotFound(_) => ErrorCode::DocumentNotFound,
            ServiceError::ReadOnlyDocument(_) => ErrorCode::ReadOnlyDocument,
            ServiceError::InvalidParams(_) => ErrorCode::InvalidParams,
            ServiceError::RateLimited(_) => ErrorCode::RateLimited,
            ServiceError::ConnectionLimit(_) => ErrorCode::ConnectionLimit,
            ServiceError::Store(_) | ServiceError::ShuttingDown | ServiceError::CommitFailed => {
                ErrorCode::InternalError
            }
        }
    }
}

impl From<ServiceError> for ErrorObjectOwned {
    fn from(err: ServiceError) -> Self {
        let code = err.code();
        if let ServiceError::Store(inner) = &err {
            tracing::error!(error = %inner, "storage failure");
            return code.into_error();
        }
        if let ServiceError::RateLimited(wait) = &err {
            return ErrorObjectOwned::owned(code.code(), err.to_string(), Some(RetryAfter::from(*wait)));
        }
        code.with_message(err.to_string())
    }
}

/// The `data` of a 4080 error.
#[derive(serde::Serialize)]
#[serde(rename_all = "camelCase")]
pub struct RetryAfter {
    pub retry_after_ms: u64,
}

impl From<std::time::Duration> for RetryAfter {
    fn from(wait: std::time::Duration) -> Self {
        // Rounded up: retrying after exactly this long succeeds.
        let ms = wait.as_micros().div_ceil(1000);
        RetryAfter { retry_after_ms: u64::try_from(ms).unwrap_or(u64::MAX) }
    }
}
