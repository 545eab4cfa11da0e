//! One diesel codebase over PostgreSQL and SQLite.
//!
//! The backend is chosen from the URL scheme; every call runs on the blocking
//! pool so the async workers never wait on the database.

pub mod audit;
pub mod changes;
pub mod clients;
pub mod keys;
pub mod policies;
pub mod revoked_tokens;
pub mod schema;
pub mod tenants;
pub mod users;

use std::sync::Arc;
use std::time::Duration;

use diesel::connection::SimpleConnection;
use diesel::prelude::*;
use diesel::r2d2::{self, ManageConnection, Pool};
use diesel::{PgConnection, SqliteConnection};
use diesel_migrations::{EmbeddedMigrations, MigrationHarness, embed_migrations};

use super::StoreError;

const POSTGRES_MIGRATIONS: EmbeddedMigrations = embed_migrations!("migrations/postgres");
const SQLITE_MIGRATIONS: EmbeddedMigrations = embed_migrations!("migrations/sqlite");

/// A connection to either backend; diesel queries run on it unchanged.
#[derive(diesel::MultiConnection)]
pub enum DbConnection {
    Postgres(PgConnection),
    Sqlite(SqliteConnection),
}

/// Which database a URL names.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    Postgres,
    Sqlite,
}

impl Backend {
    /// Where a URL points, without credentials (for messages).
    pub fn describe(url: &str) -> String {
        match url.strip_prefix("sqlite://") {
            Some(path) => format!("sqlite://{path}"),
            None => {
                let rest = url.split_once("://").map_or(url, |(_, r)| r);
                let host = rest.rsplit_once('@').map_or(rest, |(_, h)| h);
                let host = host.split('?').next().unwrap_or(host);
                format!("postgres://{host}")
            }
        }
    }

    pub fn from_url(url: &str) -> Result<Self, String> {
        if url.starts_with("postgres://") || url.starts_with("postgresql://") {
            Ok(Self::Postgres)
        } else if let Some(path) = url.strip_prefix("sqlite://") {
            if path.is_empty() {
                Err("sqlite:// needs a file path".to_owned())
            } else {
                Ok(Self::Sqlite)
            }
        } else {
            Err("expected postgres://... or sqlite://path".to_owned())
        }
    }
}

/// Opens connections of the backend the URL names, with SQLite tuned for
/// concurrent use (WAL, busy timeout, foreign keys).
pub struct Manager {
    url: String,
    backend: Backend,
}

/// Leaves the URL (and the password it may hold) out.
impl std::fmt::Debug for Manager {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Manager")
            .field("backend", &self.backend)
            .finish_non_exhaustive()
    }
}

/// A PostgreSQL URL with libpq's network timeouts set unless the URL sets
/// them: connecting gives up after `timeout`, and a connection whose sent
/// data stays unacknowledged for 10 s (a silent partition) is closed.
fn with_network_timeouts(url: &str, timeout: Duration) -> String {
    let mut url = url.to_owned();
    let connect = timeout.as_secs().max(1);
    for (key, value) in [
        ("connect_timeout", connect.to_string()),
        ("tcp_user_timeout", "10000".to_owned()),
    ] {
        if !url.contains(&format!("{key}=")) {
            let sep = if url.contains('?') { '&' } else { '?' };
            url = format!("{url}{sep}{key}={value}");
        }
    }
    url
}

impl ManageConnection for Manager {
    type Connection = DbConnection;
    type Error = r2d2::Error;

    fn connect(&self) -> Result<DbConnection, r2d2::Error> {
        match self.backend {
            Backend::Postgres => Ok(DbConnection::Postgres(PgConnection::establish(&self.url)?)),
            Backend::Sqlite => {
                let path = self.url.trim_start_matches("sqlite://");
                let mut conn = SqliteConnection::establish(path)?;
                conn.batch_execute(
                    "PRAGMA busy_timeout = 10000; PRAGMA journal_mode = WAL; \
                     PRAGMA synchronous = NORMAL; PRAGMA foreign_keys = ON;",
                )?;
                Ok(DbConnection::Sqlite(conn))
            }
        }
    }

    fn is_valid(&self, conn: &mut DbConnection) -> Result<(), r2d2::Error> {
        conn.batch_execute("SELECT 1")
            .map_err(r2d2::Error::QueryError)
    }

    fn has_broken(&self, _conn: &mut DbConnection) -> bool {
        std::thread::panicking()
    }
}

/// A handle to the database pool.
#[derive(Clone)]
pub struct Db {
    pool: Pool<Manager>,
    backend: Backend,
    /// How long a PostgreSQL call (connection wait plus statement) may take
    /// before the request answers 503; the network can stall a call forever.
    call_timeout: Duration,
    /// SQLite allows one writer: write transactions queue here instead of
    /// failing with SQLITE_BUSY on a lock upgrade.
    writer: Arc<tokio::sync::Mutex<()>>,
}

impl Db {
    /// Connects (creating the SQLite file and its folder when needed).
    /// A request that waits longer than `timeout` for a connection fails
    /// with `Unavailable` (503), so an outage answers fast.
    pub fn connect(url: &str, pool_size: u32, timeout: Duration) -> Result<Self, StoreError> {
        let backend = Backend::from_url(url).map_err(|e| StoreError::other(anyhow::anyhow!(e)))?;
        if backend == Backend::Sqlite {
            let path = std::path::Path::new(url.trim_start_matches("sqlite://"));
            if let Some(parent) = path.parent()
                && !parent.as_os_str().is_empty()
            {
                std::fs::create_dir_all(parent).map_err(StoreError::other)?;
            }
        }
        let manager = Manager {
            url: match backend {
                Backend::Postgres => with_network_timeouts(url, timeout),
                Backend::Sqlite => url.to_owned(),
            },
            backend,
        };
        let pool = Pool::builder()
            .max_size(pool_size)
            .min_idle(Some(1))
            .connection_timeout(timeout)
            .test_on_check_out(true)
            .build(manager)
            .map_err(|e| StoreError::Unavailable("database", e.into()))?;
        Ok(Self {
            pool,
            backend,
            call_timeout: timeout * 2,
            writer: Arc::new(tokio::sync::Mutex::new(())),
        })
    }

    pub fn backend(&self) -> Backend {
        self.backend
    }

    fn checkout(&self) -> Result<r2d2::PooledConnection<Manager>, StoreError> {
        self.pool
            .get()
            .map_err(|e| StoreError::Unavailable("database", e.into()))
    }

    /// Runs `f` with a pooled connection on the blocking pool.
    pub async fn run<T, F>(&self, f: F) -> Result<T, StoreError>
    where
        T: Send + 'static,
        F: FnOnce(&mut DbConnection) -> Result<T, StoreError> + Send + 'static,
    {
        let db = self.clone();
        let call = crate::telemetry::spawn_blocking(move || {
            let mut conn = db.checkout()?;
            f(&mut conn)
        });
        let joined = match self.backend {
            Backend::Postgres => tokio::time::timeout(self.call_timeout, call)
                .await
                .map_err(|_| {
                    StoreError::Unavailable(
                        "database",
                        anyhow::anyhow!("no answer within {:?}", self.call_timeout),
                    )
                })?,
            // A local file cannot stall on the network.
            Backend::Sqlite => call.await,
        };
        joined.map_err(StoreError::other)?
    }

    /// Runs `f` inside one transaction: all of it is written, or none.
    pub async fn transaction<T, F>(&self, f: F) -> Result<T, StoreError>
    where
        T: Send + 'static,
        F: FnOnce(&mut DbConnection) -> Result<T, StoreError> + Send + 'static,
    {
        let _guard = match self.backend {
            Backend::Sqlite => Some(self.writer.clone().lock_owned().await),
            Backend::Postgres => None,
        };
        self.run(move |conn| match conn {
            // A deferred SQLite transaction that reads and then writes fails
            // at once (SQLITE_BUSY, no busy wait) if another connection wrote
            // in between: take the write lock up front.
            DbConnection::Sqlite(_) => {
                conn.batch_execute("BEGIN IMMEDIATE")?;
                let outcome = f(conn).and_then(|value| {
                    conn.batch_execute("COMMIT")?;
                    Ok(value)
                });
                if outcome.is_err() {
                    // Also after a failed COMMIT: the connection goes back to
                    // the pool outside any transaction.
                    let _ = conn.batch_execute("ROLLBACK");
                }
                outcome
            }
            DbConnection::Postgres(_) => conn.transaction(f),
        })
        .await
    }

    /// Applies the pending migrations of this backend.
    pub fn migrate(&self) -> Result<usize, StoreError> {
        let mut conn = self.checkout()?;
        let applied = match &mut *conn {
            DbConnection::Postgres(c) => {
                // Several instances may start at once: one migrates, the others wait.
                c.batch_execute("SELECT pg_advisory_lock(7355608)")?;
                let result = c
                    .run_pending_migrations(POSTGRES_MIGRATIONS)
                    .map(|v| v.len());
                c.batch_execute("SELECT pg_advisory_unlock(7355608)")?;
                result
            }
            DbConnection::Sqlite(c) => c.run_pending_migrations(SQLITE_MIGRATIONS).map(|v| v.len()),
        };
        applied.map_err(|e| StoreError::Other(anyhow::anyhow!("migration failed: {e}")))
    }

    /// Checks that the database answers.
    pub async fn ping(&self) -> Result<(), StoreError> {
        self.run(|conn| {
            conn.batch_execute("SELECT 1")?;
            Ok(())
        })
        .await
    }
}

/// Current time as stored: UTC without offset, microsecond precision on both backends.
pub fn now() -> chrono::NaiveDateTime {
    let now = chrono::Utc::now().naive_utc();
    chrono::Timelike::with_nanosecond(&now, now.and_utc().timestamp_subsec_micros() * 1000)
        .unwrap_or(now)
}

/// Serialises read-modify-write transactions on one entity (`key`, such as
/// `client:{tenant}:{id}`) across instances for the rest of the caller's
/// transaction: a PostgreSQL advisory lock; SQLite transactions begin
/// immediately and hold its single writer already.
pub fn lock_entity(conn: &mut DbConnection, key: &str) -> Result<(), StoreError> {
    if let DbConnection::Postgres(pg) = conn {
        diesel::sql_query("SELECT pg_advisory_xact_lock(hashtext($1))")
            .bind::<diesel::sql_types::Text, _>(key)
            .execute(pg)?;
    }
    Ok(())
}

/// Makes the opaque cursor of `list` (a name such as `users`) that resumes
/// after `position`.
pub fn encode_cursor(list: &str, position: &str) -> String {
    use base64::Engine;
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(format!("{list}\n{position}"))
}

/// The position in a cursor that [`encode_cursor`] made for `list`;
/// anything else (garbage, another list's cursor) is `InvalidCursor`.
pub fn decode_cursor(list: &str, cursor: &str) -> Result<String, StoreError> {
    use base64::Engine;
    let bytes = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(cursor)
        .map_err(|_| StoreError::InvalidCursor)?;
    let text = String::from_utf8(bytes).map_err(|_| StoreError::InvalidCursor)?;
    match text.split_once('\n') {
        Some((name, position)) if name == list && !position.is_empty() => Ok(position.to_owned()),
        _ => Err(StoreError::InvalidCursor),
    }
}

/// The position a list resumes after, when the request gave a cursor.
/// An empty cursor is the first page.
pub fn cursor_position(list: &str, cursor: Option<&str>) -> Result<Option<String>, StoreError> {
    cursor
        .filter(|c| !c.is_empty())
        .map(|c| decode_cursor(list, c))
        .transpose()
}

/// A page of a listing.
#[derive(Debug, Clone)]
pub struct Page<T> {
    pub items: Vec<T>,
    pub next_cursor: Option<String>,
}

impl<T> Page<T> {
    /// Builds a page from `limit + 1` fetched rows.
    /// A page of `list` from up to `limit + 1` rows (one more than shown
    /// tells whether a next page exists).
    pub fn from_rows(
        list: &str,
        mut rows: Vec<T>,
        limit: usize,
        key: impl Fn(&T) -> String,
    ) -> Self {
        let next_cursor = if rows.len() > limit {
            rows.truncate(limit);
            rows.last().map(|r| encode_cursor(list, &key(r)))
        } else {
            None
        };
        Self {
            items: rows,
            next_cursor,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::with_network_timeouts;
    use std::time::Duration;

    #[test]
    fn postgres_urls_get_network_timeouts_unless_they_set_them() {
        let t = Duration::from_millis(2500);
        assert_eq!(
            with_network_timeouts("postgres://u@db/app", t),
            "postgres://u@db/app?connect_timeout=2&tcp_user_timeout=10000"
        );
        assert_eq!(
            with_network_timeouts("postgres://u@db/app?sslmode=require&connect_timeout=9", t),
            "postgres://u@db/app?sslmode=require&connect_timeout=9&tcp_user_timeout=10000"
        );
    }
}
