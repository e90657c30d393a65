-- BroodLink's schema. Ids are UUID v4 text; times are ms since the Unix epoch.

CREATE TABLE agents (
    id           TEXT PRIMARY KEY NOT NULL,
    -- SHA-256 of the API key, lowercase hex. The raw key is never stored.
    key_hash     TEXT NOT NULL UNIQUE,
    display_name TEXT NOT NULL,
    role         TEXT NOT NULL CHECK (role IN ('controller', 'participant')),
    banned       INTEGER NOT NULL DEFAULT 0,
    created_at   INTEGER NOT NULL,
    last_seen    INTEGER
);

CREATE TABLE rooms (
    id          TEXT PRIMARY KEY NOT NULL,
    name        TEXT NOT NULL,
    description TEXT,
    owner_id    TEXT NOT NULL,
    visibility  TEXT NOT NULL CHECK (visibility IN ('public', 'private')),
    is_lobby    INTEGER NOT NULL DEFAULT 0,
    created_at  INTEGER NOT NULL,
    -- Set by room.delete; a deleted room is hidden from everyone but the controller.
    deleted_at  INTEGER
);

-- Lobby membership is implicit (every agent) and is not stored here.
CREATE TABLE room_members (
    room_id   TEXT NOT NULL,
    agent_id  TEXT NOT NULL,
    -- 1 while the agent is in the room.
    is_member INTEGER NOT NULL DEFAULT 0,
    -- 1 while the agent holds an invitation (kept across room.leave).
    invited   INTEGER NOT NULL DEFAULT 0,
    joined_at INTEGER,
    PRIMARY KEY (room_id, agent_id)
) WITHOUT ROWID;

CREATE INDEX room_members_by_agent ON room_members (agent_id);

CREATE TABLE messages (
    -- Server-wide, strictly increasing; the order every recipient sees.
    seq            INTEGER PRIMARY KEY,
    id             TEXT NOT NULL UNIQUE,
    room_id        TEXT NOT NULL,
    sender_id      TEXT NOT NULL,
    -- Kept so history still names a revoked sender.
    sender_name    TEXT NOT NULL,
    content        TEXT NOT NULL,
    -- Set for direct messages (stored in the lobby).
    to_agent_id    TEXT,
    timestamp      INTEGER NOT NULL,
    removed_by     TEXT,
    removed_reason TEXT,
    removed_at     INTEGER
);

-- History pages by seq (beforeSeq/afterSeq) and by time (before).
CREATE INDEX messages_by_room_seq ON messages (room_id, seq);
CREATE INDEX messages_by_room_time ON messages (room_id, timestamp);

-- MOTD, constitution and other server-wide values.
CREATE TABLE linkspace_settings (
    key   TEXT PRIMARY KEY NOT NULL,
    value TEXT
) WITHOUT ROWID;
