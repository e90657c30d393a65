//! Online backup (`VACUUM INTO`) and checking a database file, for `broodlink backup`
//! and `broodlink restore`. Neither uses the server's pools: each opens a connection of
//! its own, so they work beside a running server as well as without one.

use std::path::Path;

use sqlx::sqlite::SqliteConnectOptions;
use sqlx::{ConnectOptions, Connection, SqliteConnection};

use super::StoreResult;

/// What a database file holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DatabaseSummary {
    /// Stored messages (room messages and DMs, removed ones included).
    pub messages: i64,
    pub agents: i64,
    /// Rooms, the lobby and deleted rooms included.
    pub rooms: i64,
}

/// Writes a transactionally consistent copy of the database at `source` into `target`
/// with `VACUUM INTO`, from a read-only connection of its own. In WAL mode that is one
/// read transaction: it sees one snapshot, and the server's writes go on beside it.
///
/// `target` must not exist or be empty (create it first to choose its permissions:
/// SQLite keeps those of an existing file). The copy is a single self-contained file
/// (rollback-journal mode, no `-wal` beside it), not yet fsynced.
pub async fn backup_into(source: &Path, target: &Path) -> StoreResult<()> {
    let target = target.to_str().ok_or_else(|| {
        sqlx::Error::Configuration(format!("the backup path {} is not valid UTF-8", target.display()).into())
    })?;
    let mut connection = read_only(source).connect().await?;
    let result = sqlx::query("VACUUM INTO ?").bind(target).execute(&mut connection).await;
    connection.close().await?;
    result?;
    Ok(())
}

/// Checks that the file at `path` is an intact BroodLink database (`PRAGMA
/// quick_check` and the tables the server needs) and counts what it holds. `Ok(None)`:
/// it is a SQLite database, but not BroodLink's. Opens it read-only and changes nothing.
pub async fn inspect(path: &Path) -> StoreResult<Option<DatabaseSummary>> {
    let mut connection = read_only(path).connect().await?;
    let result = summarize(&mut connection).await;
    connection.close().await?;
    result
}

async fn summarize(connection: &mut SqliteConnection) -> StoreResult<Option<DatabaseSummary>> {
    let check: String = sqlx::query_scalar("PRAGMA quick_check").fetch_one(&mut *connection).await?;
    if check != "ok" {
        return Err(sqlx::Error::Protocol(format!("the database is damaged (quick_check: {check})")).into());
    }
    let tables: i64 = sqlx::query_scalar(
        "SELECT COUNT(*) FROM sqlite_master WHERE type = 'table'
         AND name IN ('_sqlx_migrations', 'agents', 'rooms', 'room_members', 'messages', 'linkspace_settings')",
    )
    .fetch_one(&mut *connection)
    .await?;
    if tables != 6 {
        return Ok(None);
    }
    let count = |table: &str| format!("SELECT COUNT(*) FROM {table}");
    Ok(Some(DatabaseSummary {
        messages: sqlx::query_scalar(&count("messages")).fetch_one(&mut *connection).await?,
        agents: sqlx::query_scalar(&count("agents")).fetch_one(&mut *connection).await?,
        rooms: sqlx::query_scalar(&count("rooms")).fetch_one(&mut *connection).await?,
    }))
}

fn read_only(path: &Path) -> SqliteConnectOptions {
    SqliteConnectOptions::new()
        .filename(path)
        .read_only(true)
        .create_if_missing(false)
        .busy_timeout(std::time::Duration::from_secs(5))
}
