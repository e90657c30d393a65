//! All SQL lives here. The rest of the server sees typed rows and methods named after
//! what they do, so another backend (PostgreSQL) can replace this module without
//! touching the handlers.
//!
//! Writes are issued by the service while it holds its write lock, so the store itself
//! does not need to order them; reads may run concurrently from the pool.

mod backup;
mod rows;

use std::path::Path;
use std::str::FromStr;

use sqlx::sqlite::{SqliteConnectOptions, SqliteJournalMode, SqlitePoolOptions, SqliteSynchronous};
use sqlx::{Connection, SqlitePool};

pub use backup::{backup_into, inspect, DatabaseSummary};
pub use rows::*;

/// A storage failure. Clients only ever see "internal error" for these; the details
/// go to the log.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("database error: {0}")]
    Sql(#[from] sqlx::Error),
    #[error("database migration failed: {0}")]
    Migrate(#[from] sqlx::migrate::MigrateError),
    #[error("encoding rows as JSON: {0}")]
    Json(#[from] serde_json::Error),
}

pub type StoreResult<T> = Result<T, StoreError>;

/// When a commit counts as done (SQLite's `synchronous` in WAL mode).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Durability {
    /// Every commit is fsynced before it is acknowledged: an acknowledged message
    /// survives a power loss.
    #[default]
    Full,
    /// Commits are fsynced at checkpoints: an acknowledged message survives a crash of
    /// the server process, but the last commits before a power loss may be lost.
    Normal,
}

/// Which page of a room's history to read.
#[derive(Debug, Clone, Default)]
pub struct HistoryQuery {
    pub room_id: String,
    pub limit: u32,
    pub before_time: Option<i64>,
    pub before_seq: Option<i64>,
    pub after_seq: Option<i64>,
    /// In the lobby: only DMs this agent sent or received (room messages always
    /// show). `None` shows every DM (the controller's view).
    pub dm_viewer: Option<String>,
}

/// The SQLite database: one connection for writes (the service serializes them, so
/// SQLite never has to arbitrate), a pool for reads (WAL lets them run beside a write).
#[derive(Clone)]
pub struct Store {
    writer: SqlitePool,
    reader: SqlitePool,
}

impl Store {
    /// Opens (creating if needed) the database at `path`, or an in-memory one for
    /// `":memory:"`, in WAL mode, and applies the migrations.
    pub async fn open(path: &Path, durability: Durability) -> StoreResult<Store> {
        let in_memory = path.as_os_str() == ":memory:";
        let options = if in_memory {
            SqliteConnectOptions::from_str("sqlite::memory:")?
        } else {
            SqliteConnectOptions::new().filename(path).create_if_missing(true)
        }
        .journal_mode(SqliteJournalMode::Wal)
        .synchronous(match durability {
            Durability::Full => SqliteSynchronous::Full,
            Durability::Normal => SqliteSynchronous::Normal,
        })
        .foreign_keys(false)
        .busy_timeout(std::time::Duration::from_secs(5));
        let writer = pool(options.clone(), 1).await?;
        sqlx::migrate!("./migrations").run(&writer).await?;
        // An in-memory database exists per connection, so readers must share the writer's.
        let reader = if in_memory { writer.clone() } else { pool(options.read_only(true), 4).await? };
        Ok(Store { writer, reader })
    }

    /// Closes every connection, waiting for in-flight queries.
    pub async fn close(&self) {
        self.reader.close().await;
        self.writer.close().await;
    }

    // ---- agents ----

    pub async fn insert_agent(&self, agent: &AgentRow, key_hash: &str) -> StoreResult<()> {
        sqlx::query(
            "INSERT INTO agents (id, key_hash, display_name, role, banned, created_at, last_seen)
             VALUES (?, ?, ?, ?, ?, ?, ?)",
        )
        .bind(&agent.id)
        .bind(key_hash)
        .bind(&agent.display_name)
        .bind(&agent.role)
        .bind(agent.banned)
        .bind(agent.created_at)
        .bind(agent.last_seen)
        .execute(&self.writer)
        .await?;
        Ok(())
    }

    pub async fn agent_by_key_hash(&self, key_hash: &str) -> StoreResult<Option<AgentRow>> {
        Ok(sqlx::query_as::<_, AgentRow>(&format!("{AGENT_COLUMNS} WHERE key_hash = ?"))
            .bind(key_hash)
            .fetch_optional(&self.reader)
            .await?)
    }

    pub async fn agent(&self, id: &str) -> StoreResult<Option<AgentRow>> {
        Ok(sqlx::query_as::<_, AgentRow>(&format!("{AGENT_COLUMNS} WHERE id = ?"))
            .bind(id)
            .fetch_optional(&self.reader)
            .await?)
    }

    pub async fn agents(&self) -> StoreResult<Vec<AgentRow>> {
        Ok(sqlx::query_as::<_, AgentRow>(&format!("{AGENT_COLUMNS} ORDER BY created_at, id"))
            .fetch_all(&self.reader)
            .await?)
    }

    pub async fn controller(&self) -> StoreResult<Option<AgentRow>> {
        Ok(sqlx::query_as::<_, AgentRow>(&format!(
            "{AGENT_COLUMNS} WHERE role = 'controller' ORDER BY created_at LIMIT 1"
        ))
        .fetch_optional(&self.reader)
        .await?)
    }

    pub async fn count_agents(&self) -> StoreResult<i64> {
        Ok(sqlx::query_scalar("SELECT COUNT(*) FROM agents").fetch_one(&self.reader).await?)
    }

    /// Replaces an agent's key (by its hash).
    pub async fn set_key_hash(&self, id: &str, key_hash: &str) -> StoreResult<()> {
        sqlx::query("UPDATE agents SET key_hash = ? WHERE id = ?")
            .bind(key_hash)
            .bind(id)
            .execute(&self.writer)
            .await?;
        Ok(())
    }

    pub async fn set_banned(&self, id: &str, banned: bool) -> StoreResult<()> {
        sqlx::query("UPDATE agents SET banned = ? WHERE id = ?").bind(banned).bind(id).execute(&self.writer).await?;
        Ok(())
    }

    pub async fn set_last_seen(&self, id: &str, at: i64) -> StoreResult<()> {
        sqlx::query("UPDATE agents SET last_seen = ? WHERE id = ?").bind(at).bind(id).execute(&self.writer).await?;
        Ok(())
    }

    /// Deletes an agent and its memberships and invitations, and gives the rooms it
    /// owned to `new_owner`, in one transaction. Its messages stay.
    pub async fn delete_agent(&self, id: &str, new_owner: &str) -> StoreResult<()> {
        let mut tx = self.writer.begin().await?;
        sqlx::query("DELETE FROM room_members WHERE agent_id = ?").bind(id).execute(&mut *tx).await?;
        sqlx::query("UPDATE rooms SET owner_id = ? WHERE owner_id = ?")
            .bind(new_owner)
            .bind(id)
            .execute(&mut *tx)
            .await?;
        sqlx::query("DELETE FROM agents WHERE id = ?").bind(id).execute(&mut *tx).await?;
        tx.commit().await?;
        Ok(())
    }

    // ---- rooms ----

    pub async fn insert_room(&self, room: &RoomRow) -> StoreResult<()> {
        sqlx::query(
            "INSERT INTO rooms (id, name, description, owner_id, visibility, is_lobby, created_at, deleted_at)
             VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
        )
        .bind(&room.id)
        .bind(&room.name)
        .bind(&room.description)
        .bind(&room.owner_id)
        .bind(&room.visibility)
        .bind(room.is_lobby)
        .bind(room.created_at)
        .bind(room.deleted_at)
        .execute(&self.writer)
        .await?;
        Ok(())
    }

    /// Creates a room with its creator as first member, in one transaction.
    pub async fn create_room(&self, room: &RoomRow) -> StoreResult<()> {
        let mut tx = self.writer.begin().await?;
        sqlx::query(
            "INSERT INTO rooms (id, name, description, owner_id, visibility, is_lobby, created_at)
             VALUES (?, ?, ?, ?, ?, 0, ?)",
        )
        .bind(&room.id)
        .bind(&room.name)
        .bind(&room.description)
        .bind(&room.owner_id)
        .bind(&room.visibility)
        .bind(room.created_at)
        .execute(&mut *tx)
        .await?;
        sqlx::query(
            "INSERT INTO room_members (room_id, agent_id, is_member, invited, joined_at)
             VALUES (?, ?, 1, ?, ?)",
        )
        .bind(&room.id)
        .bind(&room.owner_id)
        // The creator of a private room holds an invitation, so it can leave and rejoin.
        .bind(room.visibility == "private")
        .bind(room.created_at)
        .execute(&mut *tx)
        .await?;
        tx.commit().await?;
        Ok(())
    }

    pub async fn lobby(&self) -> StoreResult<Option<RoomRow>> {
        Ok(sqlx::query_as::<_, RoomRow>(&format!("{ROOM_COLUMNS} WHERE is_lobby = 1 LIMIT 1"))
            .fetch_optional(&self.reader)
            .await?)
    }

    /// A room by id, deleted or not.
    pub async fn room(&self, id: &str) -> StoreResult<Option<RoomRow>> {
        Ok(sqlx::query_as::<_, RoomRow>(&format!("{ROOM_COLUMNS} WHERE id = ?"))
            .bind(id)
            .fetch_optional(&self.reader)
            .await?)
    }

    /// Every live (not deleted) room, oldest first, lobby included.
    pub async fn live_rooms(&self) -> StoreResult<Vec<RoomRow>> {
        Ok(sqlx::query_as::<_, RoomRow>(&format!(
            "{ROOM_COLUMNS} WHERE deleted_at IS NULL ORDER BY is_lobby DESC, created_at, id"
        ))
        .fetch_all(&self.reader)
        .await?)
    }

    /// Rooms as `viewer` sees them: every live room (lobby first, then oldest first),
    /// or the one room `only` (deleted or not).
    pub async fn room_views(&self, viewer: &str, only: Option<&str>) -> StoreResult<Vec<RoomViewRow>> {
        let filter = if only.is_some() { "r.id = ?" } else { "r.deleted_at IS NULL" };
        let sql = format!(
            "SELECT r.id, r.name, r.description, r.owner_id, COALESCE(a.display_name, '') AS owner_name,
                    r.visibility, r.is_lobby, r.created_at, r.deleted_at,
                    COALESCE(m.is_member, 0) AS is_member, COALESCE(m.invited, 0) AS is_invited
             FROM rooms r
             LEFT JOIN agents a ON a.id = r.owner_id
             LEFT JOIN room_members m ON m.room_id = r.id AND m.agent_id = ?
             WHERE {filter}
             ORDER BY r.is_lobby DESC, r.created_at, r.id"
        );
        let mut query = sqlx::query_as::<_, RoomViewRow>(&sql).bind(viewer);
        if let Some(id) = only {
            query = query.bind(id);
        }
        Ok(query.fetch_all(&self.reader).await?)
    }

    pub async fn count_live_rooms_excluding_lobby(&self) -> StoreResult<i64> {
        Ok(sqlx::query_scalar("SELECT COUNT(*) FROM rooms WHERE is_lobby = 0 AND deleted_at IS NULL")
            .fetch_one(&self.reader)
            .await?)
    }

    pub async fn update_room(&self, id: &str, name: &str, description: Option<&str>) -> StoreResult<()> {
        sqlx::query("UPDATE rooms SET name = ?, description = ? WHERE id = ?")
            .bind(name)
            .bind(description)
            .bind(id)
            .execute(&self.writer)
            .await?;
        Ok(())
    }

    /// Changes visibility; going private marks every current member invited (in the
    /// same transaction), so they can leave and rejoin.
    pub async fn set_visibility(&self, id: &str, visibility: &str) -> StoreResult<()> {
        let mut tx = self.writer.begin().await?;
        sqlx::query("UPDATE rooms SET visibility = ? WHERE id = ?").bind(visibility).bind(id).execute(&mut *tx).await?;
        if visibility == "private" {
            sqlx::query("UPDATE room_members SET invited = 1 WHERE room_id = ? AND is_member = 1")
                .bind(id)
                .execute(&mut *tx)
                .await?;
        }
        tx.commit().await?;
        Ok(())
    }

    /// Makes `owner_id` the owner and a member.
    pub async fn take_ownership(&self, id: &str, owner_id: &str, now: i64) -> StoreResult<()> {
        let mut tx = self.writer.begin().await?;
        sqlx::query("UPDATE rooms SET owner_id = ? WHERE id = ?").bind(owner_id).bind(id).execute(&mut *tx).await?;
        upsert_member(&mut tx, id, owner_id, now).await?;
        tx.commit().await?;
        Ok(())
    }

    /// Soft-deletes a room: removes every membership and invitation and gives it to
    /// `new_owner`. Messages stay.
    pub async fn delete_room(&self, id: &str, new_owner: &str, now: i64) -> StoreResult<()> {
        let mut tx = self.writer.begin().await?;
        sqlx::query("UPDATE rooms SET deleted_at = ?, owner_id = ? WHERE id = ?")
            .bind(now)
            .bind(new_owner)
            .bind(id)
            .execute(&mut *tx)
            .await?;
        sqlx::query("DELETE FROM room_members WHERE room_id = ?").bind(id).execute(&mut *tx).await?;
        tx.commit().await?;
        Ok(())
    }

    // ---- membership ----

    pub async fn membership(&self, room_id: &str, agent_id: &str) -> StoreResult<Option<MemberRow>> {
        Ok(sqlx::query_as::<_, MemberRow>(
            "SELECT room_id, agent_id, is_member, invited, joined_at FROM room_members
             WHERE room_id = ? AND agent_id = ?",
        )
        .bind(room_id)
        .bind(agent_id)
        .fetch_optional(&self.reader)
        .await?)
    }

    /// Every membership or invitation of every live room.
    pub async fn memberships(&self) -> StoreResult<Vec<MemberRow>> {
        Ok(sqlx::query_as::<_, MemberRow>(
            "SELECT m.room_id, m.agent_id, m.is_member, m.invited, m.joined_at
             FROM room_members m JOIN rooms r ON r.id = m.room_id
             WHERE r.deleted_at IS NULL",
        )
        .fetch_all(&self.reader)
        .await?)
    }

    /// The members of a room, in the order they joined, with their agent rows.
    pub async fn members(&self, room_id: &str) -> StoreResult<Vec<(MemberRow, AgentRow)>> {
        let rows = sqlx::query_as::<_, MemberWithAgent>(
            "SELECT m.room_id, m.agent_id, m.is_member, m.invited, m.joined_at,
                    a.id, a.display_name, a.role, a.banned, a.created_at, a.last_seen
             FROM room_members m JOIN agents a ON a.id = m.agent_id
             WHERE m.room_id = ? AND m.is_member = 1
             ORDER BY m.joined_at, a.id",
        )
        .bind(room_id)
        .fetch_all(&self.reader)
        .await?;
        Ok(rows.into_iter().map(MemberWithAgent::split).collect())
    }

    /// Adds a member (keeping any invitation).
    pub async fn add_member(&self, room_id: &str, agent_id: &str, now: i64) -> StoreResult<()> {
        let mut tx = self.writer.begin().await?;
        upsert_member(&mut tx, room_id, agent_id, now).await?;
        tx.commit().await?;
        Ok(())
    }

    /// Removes a member; `keep_invitation` decides whether it may rejoin a private room.
    pub async fn remove_member(&self, room_id: &str, agent_id: &str, keep_invitation: bool) -> StoreResult<()> {
        let sql = if keep_invitation {
            "UPDATE room_members SET is_member = 0, joined_at = NULL WHERE room_id = ? AND agent_id = ?"
        } else {
            "UPDATE room_members SET is_member = 0, invited = 0, joined_at = NULL WHERE room_id = ? AND agent_id = ?"
        };
        sqlx::query(sql).bind(room_id).bind(agent_id).execute(&self.writer).await?;
        Ok(())
    }

    pub async fn invite(&self, room_id: &str, agent_id: &str) -> StoreResult<()> {
        sqlx::query(
            "INSERT INTO room_members (room_id, agent_id, is_member, invited) VALUES (?, ?, 0, 1)
             ON CONFLICT (room_id, agent_id) DO UPDATE SET invited = 1",
        )
        .bind(room_id)
        .bind(agent_id)
        .execute(&self.writer)
        .await?;
        Ok(())
    }

    // ---- messages ----

    pub async fn max_seq(&self) -> StoreResult<i64> {
        let max: Option<i64> = sqlx::query_scalar("SELECT MAX(seq) FROM messages").fetch_one(&self.reader).await?;
        Ok(max.unwrap_or(0))
    }

    pub async fn max_timestamp(&self) -> StoreResult<i64> {
        let max: Option<i64> =
            sqlx::query_scalar("SELECT MAX(timestamp) FROM messages").fetch_one(&self.reader).await?;
        Ok(max.unwrap_or(0))
    }

    /// Stores a batch of messages in one commit (one fsync), skipping each message whose
    /// sender already stored one under its `client_msg_id` (a retry), and reads back the
    /// messages the skipped ones retry. With `lobby` = `(lobby id, keep)`, prunes the
    /// lobby's room messages beyond the newest `keep` in the same commit.
    pub async fn insert_messages(&self, messages: &[MessageRow], lobby: Option<(&str, u32)>) -> StoreResult<Inserted> {
        let mut connection = self.writer.acquire().await?;
        let Some((lobby_id, keep)) = lobby else {
            // One statement commits atomically by itself.
            return insert_batch(&mut connection, messages).await;
        };
        // The lobby keeps only its newest `keep` room messages (DMs are not subject to
        // it); trimming in the same transaction keeps the limit exact, and trimming after
        // the read-back keeps a retry's original readable.
        let mut tx = connection.begin().await?;
        let inserted = insert_batch(&mut tx, messages).await?;
        sqlx::query(
            "DELETE FROM messages WHERE room_id = ?1 AND to_agent_id IS NULL AND seq < (
                 SELECT seq FROM messages WHERE room_id = ?1 AND to_agent_id IS NULL
                 ORDER BY seq DESC LIMIT 1 OFFSET ?2)",
        )
        .bind(lobby_id)
        .bind(i64::from(keep.max(1)) - 1)
        .execute(&mut *tx)
        .await?;
        tx.commit().await?;
        Ok(inserted)
    }

    pub async fn message(&self, id: &str) -> StoreResult<Option<MessageRow>> {
        Ok(sqlx::query_as::<_, MessageRow>(&format!("{MESSAGE_COLUMNS} WHERE id = ?"))
            .bind(id)
            .fetch_optional(&self.reader)
            .await?)
    }

    pub async fn mark_removed(&self, id: &str, by: &str, reason: Option<&str>, at: i64) -> StoreResult<()> {
        sqlx::query("UPDATE messages SET removed_by = ?, removed_reason = ?, removed_at = ? WHERE id = ?")
            .bind(by)
            .bind(reason)
            .bind(at)
            .bind(id)
            .execute(&self.writer)
            .await?;
        Ok(())
    }

    /// One page of history, oldest first, and whether more lie beyond it.
    pub async fn history(&self, q: &HistoryQuery) -> StoreResult<(Vec<MessageRow>, bool)> {
        let mut sql = format!("{MESSAGE_COLUMNS} WHERE room_id = ?");
        if q.before_time.is_some() {
            // Timestamps never decrease as `seq` grows, so "older than T" is "before the
            // first message at or after T", found in the server-wide time index; the
            // room's (room_id, seq) index then serves the page.
            sql.push_str(
                " AND seq < IFNULL((SELECT seq FROM messages WHERE timestamp >= ? ORDER BY timestamp, seq LIMIT 1), \
                 9223372036854775807)",
            );
        }
        if q.before_seq.is_some() {
            sql.push_str(" AND seq < ?");
        }
        if q.after_seq.is_some() {
            sql.push_str(" AND seq > ?");
        }
        if q.dm_viewer.is_some() {
            sql.push_str(" AND (to_agent_id IS NULL OR to_agent_id = ? OR sender_id = ?)");
        }
        // Catching up (afterSeq) reads forwards from the gap; paging reads backwards
        // from the newest. Either way one extra row tells whether more exist.
        let ascending = q.after_seq.is_some();
        sql.push_str(if ascending { " ORDER BY seq ASC LIMIT ?" } else { " ORDER BY seq DESC LIMIT ?" });
        // The page comes back as one JSON array: sqlx hands rows over one at a time,
        // copying every value, which cost more than the rest of a 500-row page together.
        // The fields are in `MessageRow`'s order (serde reads a struct from an array in
        // that order).
        let sql = format!(
            "SELECT json_group_array(json_array(seq, id, room_id, sender_id, sender_name, content, to_agent_id, \
             timestamp, removed_by, removed_reason, client_msg_id)), COUNT(*) FROM ({sql})"
        );

        let mut query = sqlx::query_as::<_, (String, i64)>(&sql).bind(&q.room_id);
        for value in [q.before_time, q.before_seq, q.after_seq].into_iter().flatten() {
            query = query.bind(value);
        }
        if let Some(viewer) = &q.dm_viewer {
            query = query.bind(viewer).bind(viewer);
        }
        let (page, found) = query.bind(i64::from(q.limit) + 1).fetch_one(&self.reader).await?;
        let mut rows: Vec<MessageRow> = serde_json::from_str(&page)?;
        // SQLite aggregates in the inner query's order, but does not promise to; a sort
        // of rows already in order (either way) is one pass.
        rows.sort_by_key(|row| row.seq);
        let has_more = found > i64::from(q.limit);
        if has_more {
            // The extra row is the oldest of a backwards page, the newest of a forwards one.
            if ascending {
                rows.pop();
            } else {
                rows.remove(0);
            }
        }
        Ok((rows, has_more))
    }

    // ---- settings ----

    pub async fn setting(&self, key: &str) -> StoreResult<Option<String>> {
        let value: Option<Option<String>> = sqlx::query_scalar("SELECT value FROM linkspace_settings WHERE key = ?")
            .bind(key)
            .fetch_optional(&self.reader)
            .await?;
        Ok(value.flatten())
    }

    /// Sets several settings in one transaction (`None` stores NULL).
    pub async fn set_settings(&self, values: &[(&str, Option<&str>)]) -> StoreResult<()> {
        let mut tx = self.writer.begin().await?;
        for (key, value) in values {
            sqlx::query(
                "INSERT INTO linkspace_settings (key, value) VALUES (?, ?)
                 ON CONFLICT (key) DO UPDATE SET value = excluded.value",
            )
            .bind(key)
            .bind(value)
            .execute(&mut *tx)
            .await?;
        }
        tx.commit().await?;
        Ok(())
    }
}

async fn pool(options: SqliteConnectOptions, size: u32) -> StoreResult<SqlitePool> {
    Ok(SqlitePoolOptions::new()
        .max_connections(size)
        .min_connections(1)
        .idle_timeout(None)
        .max_lifetime(None)
        .connect_with(options)
        .await?)
}

async fn upsert_member(
    tx: &mut sqlx::Transaction<'_, sqlx::Sqlite>,
    room_id: &str,
    agent_id: &str,
    now: i64,
) -> StoreResult<()> {
    sqlx::query(
        "INSERT INTO room_members (room_id, agent_id, is_member, invited, joined_at) VALUES (?, ?, 1, 0, ?)
         ON CONFLICT (room_id, agent_id) DO UPDATE SET is_member = 1,
             joined_at = CASE WHEN is_member = 1 THEN joined_at ELSE excluded.joined_at END",
    )
    .bind(room_id)
    .bind(agent_id)
    .bind(now)
    .execute(&mut **tx)
    .await?;
    Ok(())
}

/// What inserting a batch of messages did.
pub struct Inserted {
    /// The `seq`s of the rows stored; the rest were retries (their client id was taken).
    pub seqs: std::collections::HashSet<i64>,
    /// The stored messages the skipped rows retry; `None` if reading them back failed
    /// (the new rows are stored all the same).
    pub originals: Option<Vec<ClientMsgRow>>,
}

/// One INSERT for the whole batch, over a JSON array: every statement is a round trip to
/// sqlx's worker thread (0.15–0.3 ms measured, more than SQLite takes to insert hundreds
/// of rows). Retries are skipped by the conflict on the client-id index, so the usual
/// batch (no retries) needs no lookup, and `RETURNING` says which rows went in.
async fn insert_batch(connection: &mut sqlx::SqliteConnection, messages: &[MessageRow]) -> StoreResult<Inserted> {
    let rows: Vec<_> = messages
        .iter()
        .map(|m| {
            (
                m.seq,
                &m.id,
                &m.room_id,
                &m.sender_id,
                &m.sender_name,
                &m.content,
                &m.to_agent_id,
                m.timestamp,
                &m.client_msg_id,
            )
        })
        .collect();
    let seqs: std::collections::HashSet<i64> = sqlx::query_scalar(
        "INSERT INTO messages (seq, id, room_id, sender_id, sender_name, content, to_agent_id, timestamp,
                               client_msg_id)
         SELECT value->>0, value->>1, value->>2, value->>3, value->>4, value->>5, value->>6, value->>7, value->>8
         FROM json_each(?) WHERE true
         ON CONFLICT (client_msg_id, sender_id) WHERE client_msg_id IS NOT NULL DO NOTHING
         RETURNING seq",
    )
    .bind(serde_json::to_string(&rows)?)
    .fetch_all(&mut *connection)
    .await?
    .into_iter()
    .collect();
    let skipped: Vec<&str> =
        messages.iter().filter(|m| !seqs.contains(&m.seq)).filter_map(|m| m.client_msg_id.as_deref()).collect();
    if skipped.is_empty() {
        return Ok(Inserted { seqs, originals: Some(Vec::new()) });
    }
    // Of any sender: the caller matches senders.
    let originals = sqlx::query_as::<_, ClientMsgRow>(
        "SELECT client_msg_id, sender_id, id, seq, timestamp FROM messages
         WHERE client_msg_id IN (SELECT value FROM json_each(?))",
    )
    .bind(serde_json::to_string(&skipped)?)
    .fetch_all(&mut *connection)
    .await
    .inspect_err(|e| tracing::error!(error = %e, "reading back retried messages failed"))
    .ok();
    Ok(Inserted { seqs, originals })
}
