//! The embedded store of `kolbak standalone`: one SQLite file that is at once the [`Registry`]
//! (subscriptions and API keys), the [`Queue`] (accepted events waiting for fan-out, deliveries
//! waiting for their next attempt) and the [`DeliveryLog`] (deliveries and their attempts).
//!
//! This module owns opening the file, its connection settings and how blocking SQLite calls are
//! run from async code. The schema lives in `migrations`, the trait implementations in
//! `registry`, `queue` (with the delivery-queue SQL in `deliveries`) and `delivery_log` (with
//! subscription health in `health`), and the row ⇄ struct mapping in `rows`.
//!
//! Two connections share the file, each behind a [`std::sync::Mutex`] and used only from
//! [`tokio::task::spawn_blocking`]: a writer, through which every change goes (SQLite admits one
//! writer at a time anyway), and a reader, so that reads (API-key lookups on every request,
//! listings) never queue behind an event's `fsync`. The file is in WAL mode, so the reader sees
//! each committed write without blocking it.
//!
//! [`Registry`]: crate::Registry
//! [`Queue`]: crate::Queue
//! [`DeliveryLog`]: crate::DeliveryLog

mod deliveries;
mod delivery_log;
mod health;
mod migrations;
mod queue;
mod registry;
mod rows;
mod settings;
#[cfg(test)]
mod test_support;

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use rusqlite::{Connection, Transaction, TransactionBehavior};
use tokio::sync::broadcast;

use crate::error::{Error, Result};
use crate::registry::{Page, RegistryChange};

pub use migrations::SCHEMA_VERSION;
pub use settings::{DATABASE_FILE, EmbeddedStoreConfig};

/// How long a statement waits for another process's lock before failing.
const BUSY_TIMEOUT: Duration = Duration::from_secs(5);
/// Prepared statements kept per connection; comfortably more than the store uses.
const STATEMENT_CACHE: usize = 64;
/// Registry changes buffered for slow watchers before they lag (and must re-read everything).
const CHANGES_CAPACITY: usize = 1024;

/// The embedded store: a SQLite database file implementing [`crate::Registry`], [`crate::Queue`]
/// and [`crate::DeliveryLog`]. Cheap to clone; clones share the connections and the change
/// stream.
#[derive(Clone)]
pub struct SqliteStore {
    inner: Arc<Inner>,
}

struct Inner {
    path: PathBuf,
    writer: Mutex<Connection>,
    reader: Mutex<Connection>,
    changes: broadcast::Sender<RegistryChange>,
}

/// Which connection an operation runs on.
#[derive(Clone, Copy)]
enum Role {
    Writer,
    Reader,
}

impl SqliteStore {
    /// Opens the database at `path`, creating the file (not its directory) when missing, and
    /// brings its schema up to date. Blocks while doing so, so call it at start-up (or from
    /// `spawn_blocking`).
    ///
    /// Fails with [`Error::Configuration`] when the file was written by a newer Kolbak (its
    /// schema version is unknown here), and with [`Error::Storage`] when it cannot be opened or
    /// is not a SQLite database.
    pub fn open(path: &Path) -> Result<SqliteStore> {
        let mut writer = Connection::open(path).map_err(Error::storage)?;
        configure(&writer)?;
        enable_wal(&writer)?;
        migrations::migrate(&mut writer, path)?;

        let reader = Connection::open(path).map_err(Error::storage)?;
        configure(&reader)?;
        reader
            .pragma_update(None, "query_only", true)
            .map_err(Error::storage)?;

        let (changes, _) = broadcast::channel(CHANGES_CAPACITY);
        tracing::debug!(path = %path.display(), "opened SQLite store");
        Ok(SqliteStore {
            inner: Arc::new(Inner {
                path: path.to_owned(),
                writer: Mutex::new(writer),
                reader: Mutex::new(reader),
                changes,
            }),
        })
    }

    /// The database file this store was opened from.
    pub fn path(&self) -> &Path {
        &self.inner.path
    }

    /// Runs `op` on the writer connection on the blocking pool. The operation finishes (and
    /// commits) even if the calling future is dropped.
    async fn write<T, F>(&self, op: F) -> Result<T>
    where
        T: Send + 'static,
        F: FnOnce(&mut Connection) -> Result<T> + Send + 'static,
    {
        self.run(Role::Writer, op).await
    }

    /// Runs `op` on the read-only connection on the blocking pool.
    async fn read<T, F>(&self, op: F) -> Result<T>
    where
        T: Send + 'static,
        F: FnOnce(&mut Connection) -> Result<T> + Send + 'static,
    {
        self.run(Role::Reader, op).await
    }

    async fn run<T, F>(&self, role: Role, op: F) -> Result<T>
    where
        T: Send + 'static,
        F: FnOnce(&mut Connection) -> Result<T> + Send + 'static,
    {
        let inner = Arc::clone(&self.inner);
        tokio::task::spawn_blocking(move || {
            let mutex = match role {
                Role::Writer => &inner.writer,
                Role::Reader => &inner.reader,
            };
            // A panic while the lock was held leaves the connection in an unknown state, so the
            // store refuses further work rather than guessing.
            let mut conn = mutex.lock().map_err(|_| {
                Error::storage(std::io::Error::other(
                    "SQLite connection unusable: a previous operation panicked",
                ))
            })?;
            op(&mut conn)
        })
        .await
        .map_err(Error::storage)?
    }

    /// A sender for registry changes; writes send only after their transaction committed.
    fn notifier(&self) -> broadcast::Sender<RegistryChange> {
        self.inner.changes.clone()
    }
}

impl std::fmt::Debug for SqliteStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SqliteStore")
            .field("path", &self.inner.path)
            .finish_non_exhaustive()
    }
}

/// Per-connection settings.
fn configure(conn: &Connection) -> Result<()> {
    conn.busy_timeout(BUSY_TIMEOUT).map_err(Error::storage)?;
    conn.set_prepared_statement_cache_capacity(STATEMENT_CACHE);
    // FULL: in WAL mode this syncs the log on every commit, so an event is on disk before its
    // 202 and a committed registry change survives power loss.
    conn.pragma_update(None, "synchronous", "FULL")
        .map_err(Error::storage)?;
    conn.pragma_update(None, "foreign_keys", true)
        .map_err(Error::storage)?;
    Ok(())
}

/// Switches the file to write-ahead logging (a persistent property of the file).
fn enable_wal(conn: &Connection) -> Result<()> {
    let mode: String = conn
        .pragma_update_and_check(None, "journal_mode", "WAL", |row| row.get(0))
        .map_err(Error::storage)?;
    if !mode.eq_ignore_ascii_case("wal") {
        return Err(Error::storage(std::io::Error::other(format!(
            "could not switch the database to WAL journal mode (it stays `{mode}`)"
        ))));
    }
    Ok(())
}

/// `SELECT 1`: the connection answers.
fn select_one(conn: &Connection) -> Result<()> {
    conn.prepare_cached("SELECT 1")
        .and_then(|mut s| s.query_row([], |row| row.get::<_, i64>(0)))
        .map(drop)
        .map_err(Error::storage)
}

/// Starts a transaction that holds the write lock from its first statement.
fn immediate(conn: &mut Connection) -> Result<Transaction<'_>> {
    conn.transaction_with_behavior(TransactionBehavior::Immediate)
        .map_err(Error::storage)
}

/// `LIMIT` and `OFFSET` values for `page`.
fn limit_offset(page: Page) -> (i64, i64) {
    (
        i64::from(page.limit),
        i64::try_from(page.offset).unwrap_or(i64::MAX),
    )
}

/// A count from SQL (never negative) as `u64`.
fn count(n: i64) -> u64 {
    u64::try_from(n).unwrap_or_default()
}

/// Sends `change` to every watcher; having none is fine.
fn notify(changes: &broadcast::Sender<RegistryChange>, change: RegistryChange) {
    let _ = changes.send(change);
}

#[cfg(test)]
mod tests {
    use super::*;

    type TestResult = std::result::Result<(), Box<dyn std::error::Error>>;

    #[tokio::test]
    async fn open_sets_durable_connection_settings() -> TestResult {
        let dir = tempfile::tempdir()?;
        let store = SqliteStore::open(&dir.path().join("kolbak.db"))?;
        let settings = store
            .write(|conn| {
                let get = |name: &str| -> Result<String> {
                    conn.query_row(&format!("PRAGMA {name}"), [], |row| {
                        row.get::<_, rusqlite::types::Value>(0)
                    })
                    .map(|v| format!("{v:?}"))
                    .map_err(Error::storage)
                };
                Ok((
                    get("journal_mode")?,
                    get("synchronous")?,
                    get("foreign_keys")?,
                ))
            })
            .await?;
        assert_eq!(
            settings,
            (
                r#"Text("wal")"#.to_owned(),
                "Integer(2)".to_owned(),
                "Integer(1)".to_owned()
            )
        );
        Ok(())
    }

    #[tokio::test]
    async fn reader_connection_cannot_write() -> TestResult {
        let dir = tempfile::tempdir()?;
        let store = SqliteStore::open(&dir.path().join("kolbak.db"))?;
        let result = store
            .read(|conn| {
                conn.execute("DELETE FROM subscriptions", [])
                    .map_err(Error::storage)
            })
            .await;
        assert!(matches!(result, Err(Error::Storage(_))), "{result:?}");
        Ok(())
    }

    #[tokio::test]
    async fn a_file_that_is_not_a_database_is_refused() -> TestResult {
        let dir = tempfile::tempdir()?;
        let path = dir.path().join("kolbak.db");
        std::fs::write(
            &path,
            b"this is not a SQLite database, just some text padding it out",
        )?;
        let result = SqliteStore::open(&path);
        assert!(matches!(result, Err(Error::Storage(_))), "{result:?}");
        Ok(())
    }

    #[tokio::test]
    async fn a_missing_directory_is_an_error() -> TestResult {
        let dir = tempfile::tempdir()?;
        let result = SqliteStore::open(&dir.path().join("absent").join("kolbak.db"));
        assert!(matches!(result, Err(Error::Storage(_))), "{result:?}");
        Ok(())
    }
}
