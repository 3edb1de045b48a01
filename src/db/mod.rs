//! The database: one connection type over SQLite and PostgreSQL, the pool and embedded
//! migrations. Every query of the product lives under this module: in `models/`, one file per
//! table. Code above it never sees a connection type of a specific engine (nor diesel: it
//! names results [`DbResult`] and errors [`DbError`]); where the SQL of the two engines differs,
//! the model matches on [`AnyConnection`] itself.
//!
//! # The four ways in
//!
//! | Call | Runs on | For |
//! | --- | --- | --- |
//! | [`Db::run`] | the blocking pool, any connection | the default: any statement a request or job needs |
//! | [`Db::read`] | the caller's thread when a SQLite connection is free (else as `run`) | short keyed reads on a page's hot path (the session, an endpoint): no hop to another thread |
//! | [`Db::write`] | this process's queue of writers | short writes a request waits for (sessions), taking turns with the batches below instead of polling SQLite's lock |
//! | [`Db::run_background`] | the same queue, on a thread at the lowest CPU priority | the batches of a sync, an import or a re-model, so that pages stay fast meanwhile |
//!
//! A write that spans statements goes through [`AnyConnection::write_transaction`] whichever
//! way it came in.

pub mod batch;
mod data_version;
pub mod lease;
pub mod models;
pub mod schema;

use std::time::Duration;

use anyhow::Context;
use diesel::connection::SimpleConnection;
use diesel::r2d2::{ConnectionManager, CustomizeConnection, Pool, PooledConnection};
use diesel::{Connection, PgConnection, SqliteConnection};
use diesel_migrations::{EmbeddedMigrations, MigrationHarness, embed_migrations};

use data_version::VersionObservers;

/// What queries answer, for code above the database layer.
pub type DbResult<T> = diesel::QueryResult<T>;
/// Why a query failed.
pub use diesel::result::Error as DbError;

/// Write transactions committed by this process (see [`writes_committed`]).
static WRITES: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);

/// How many write transactions ([`AnyConnection::write_transaction`]: ingest, imports,
/// re-models, reviews) this process has committed: a figure derived from the inventory and kept
/// with this number is still current while it has not moved.
pub fn writes_committed() -> u64 {
    WRITES.load(std::sync::atomic::Ordering::Relaxed)
}

#[derive(diesel::MultiConnection)]
pub enum AnyConnection {
    Postgresql(PgConnection),
    Sqlite(SqliteConnection),
}

impl AnyConnection {
    /// A transaction that writes. On SQLite it takes the write lock when it begins (`BEGIN
    /// IMMEDIATE`), waiting for it under the busy timeout: a deferred transaction that reads
    /// first fails at once with "database is locked" when another connection committed in
    /// between (WAL cannot upgrade a stale snapshot), which a sync's import or a re-model
    /// beside a page's audit entry or an ingest did under load. Nested, it is a savepoint.
    pub fn write_transaction<T, E, F>(&mut self, f: F) -> Result<T, E>
    where
        F: FnOnce(&mut AnyConnection) -> Result<T, E>,
        E: From<diesel::result::Error>,
    {
        use diesel::connection::{AnsiTransactionManager, TransactionManager};
        fn sqlite(c: &mut AnyConnection) -> &mut SqliteConnection {
            match c {
                AnyConnection::Sqlite(c) => c,
                AnyConnection::Postgresql(_) => unreachable!("checked by the caller"),
            }
        }
        let top_level_sqlite = match self {
            AnyConnection::Sqlite(c) => {
                AnsiTransactionManager::transaction_manager_status_mut(c).transaction_depth()?.is_none()
            }
            AnyConnection::Postgresql(_) => false,
        };
        let committed = if top_level_sqlite {
            AnsiTransactionManager::begin_transaction_sql(sqlite(self), "BEGIN IMMEDIATE")?;
            match f(self) {
                Ok(value) => match AnsiTransactionManager::commit_transaction(sqlite(self)) {
                    Ok(()) => Ok(value),
                    Err(e) => {
                        let _ = AnsiTransactionManager::rollback_transaction(sqlite(self));
                        Err(e.into())
                    }
                },
                Err(e) => {
                    let _ = AnsiTransactionManager::rollback_transaction(sqlite(self));
                    Err(e)
                }
            }
        } else {
            self.transaction(f)
        };
        if committed.is_ok() {
            WRITES.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        }
        committed
    }
}

/// Runs a query on the connection of the engine in use rather than through [`AnyConnection`]:
/// `engine_query!(conn, |c| users::table.find(id).select(User::as_select()).first(c))`. The
/// multi-engine connection builds a query's SQL text again on every call (to look its prepared
/// statement up by text); an engine's own connection finds the statement of a fixed-shape query
/// by its type. For the queries every page runs (the session, the endpoint, its Defender
/// machine), that text was a quarter of the page's CPU. `$query` is compiled once per engine.
macro_rules! engine_query {
    ($conn:expr, |$c:ident| $query:expr) => {
        match $conn {
            $crate::db::AnyConnection::Sqlite($c) => $query,
            $crate::db::AnyConnection::Postgresql($c) => $query,
        }
    };
}
pub(crate) use engine_query;

pub type DbPool = Pool<ConnectionManager<AnyConnection>>;
pub type DbConn = PooledConnection<ConnectionManager<AnyConnection>>;

const SQLITE_MIGRATIONS: EmbeddedMigrations = embed_migrations!("migrations/sqlite");
const POSTGRES_MIGRATIONS: EmbeddedMigrations = embed_migrations!("migrations/postgres");

/// Which engine a `DATABASE_URL` selects, and the string diesel needs to open it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DatabaseTarget {
    Sqlite { path: std::path::PathBuf },
    Postgres { url: String },
}

impl DatabaseTarget {
    /// `sqlite://relative/path.db`, `sqlite:///absolute/path.db`, or `postgres://` /
    /// `postgresql://`. A bare path is taken as SQLite, as operators tend to write one.
    pub fn parse(url: &str) -> anyhow::Result<Self> {
        if url.starts_with("postgres://") || url.starts_with("postgresql://") {
            return Ok(Self::Postgres { url: url.to_owned() });
        }
        let path = url.strip_prefix("sqlite://").or_else(|| url.strip_prefix("sqlite:")).unwrap_or(url);
        if path.is_empty() || path.contains("://") {
            anyhow::bail!(
                "DATABASE_URL {url:?} is not understood: use sqlite://PATH (e.g. sqlite://data/endpoint-analytics.db) or postgres://USER@HOST:PORT/DATABASE"
            );
        }
        Ok(Self::Sqlite { path: path.into() })
    }

    pub fn backend_name(&self) -> &'static str {
        match self {
            Self::Sqlite { .. } => "SQLite",
            Self::Postgres { .. } => "PostgreSQL",
        }
    }

    fn diesel_url(&self) -> String {
        match self {
            Self::Sqlite { path } => path.to_string_lossy().into_owned(),
            Self::Postgres { url } => url.clone(),
        }
    }
}

/// Per-connection settings. SQLite: WAL so readers never wait for the sync's writer, a busy
/// timeout so a writer waits instead of failing with "database is locked", and foreign keys
/// (off by default in SQLite).
#[derive(Debug)]
struct ConnectionSetup {
    /// Where the pool's commits are counted ([`data_version::count_commits`]).
    commits: std::sync::Arc<std::sync::atomic::AtomicU64>,
}

impl CustomizeConnection<AnyConnection, diesel::r2d2::Error> for ConnectionSetup {
    fn on_acquire(&self, conn: &mut AnyConnection) -> Result<(), diesel::r2d2::Error> {
        if let AnyConnection::Sqlite(c) = conn {
            // The busy timeout comes first so that the statements after it wait rather than fail.
            // WAL itself is set once, when the database is opened (it is stored in the file).
            c.batch_execute("PRAGMA busy_timeout = 15000; PRAGMA synchronous = NORMAL; PRAGMA foreign_keys = ON;")
                .map_err(diesel::r2d2::Error::QueryError)?;
            // Its commits move this process's data version on as they return.
            data_version::count_commits(c, self.commits.clone());
        }
        if let AnyConnection::Postgresql(c) = conn {
            // Its commits move this process's data version on as they return.
            data_version::count_commits(c, self.commits.clone());
            // Every statement here is short. PostgreSQL compiles a statement it estimates costly
            // to machine code first, which took 20 ms of an import batch's 1 ms statement when
            // the statistics of a growing table were behind.
            c.batch_execute("SET jit = off").map_err(diesel::r2d2::Error::QueryError)?;
        }
        Ok(())
    }
}

/// The shared handle to the database.
#[derive(Clone)]
pub struct Db {
    pool: DbPool,
    target: std::sync::Arc<DatabaseTarget>,
    /// Turns at SQLite's one write lock for the writers that queue here ([`Db::write`],
    /// [`Db::run_background`]), first come first served (see [`Db::write`]).
    write_turns: std::sync::Arc<tokio::sync::Mutex<()>>,
    /// Connections of their own that only ever read the data version ([`Db::data_version`]).
    version_observers: std::sync::Arc<VersionObservers>,
}

impl Db {
    /// Opens (creating the SQLite file and its folder if needed) and checks the database, so
    /// that a wrong URL or an unreachable server is one clear message at start.
    pub fn connect(url: &str, pool_size: u32) -> anyhow::Result<Self> {
        let target = DatabaseTarget::parse(url)?;
        let version_observers = match &target {
            DatabaseTarget::Sqlite { path } => {
                if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
                    std::fs::create_dir_all(dir)
                        .with_context(|| format!("cannot create the database folder {}", dir.display()))?;
                }
                let mut c = SqliteConnection::establish(&target.diesel_url())
                    .map_err(|e| anyhow::anyhow!("cannot open the SQLite database {}: {e}", path.display()))?;
                // WAL lets pages read while a sync writes.
                c.batch_execute("PRAGMA busy_timeout = 15000; PRAGMA journal_mode = WAL;")
                    .map_err(|e| anyhow::anyhow!("cannot use the SQLite database {}: {e}", path.display()))?;
                VersionObservers::sqlite(c, &target.diesel_url())?
            }
            DatabaseTarget::Postgres { url } => {
                // The multi-connection's own establish hides the real error; ask PostgreSQL directly.
                let c = PgConnection::establish(url).map_err(|e| {
                    anyhow::anyhow!("cannot connect to PostgreSQL at {}: {}", redact_url(url), e.to_string().trim())
                })?;
                VersionObservers::postgres(c, url)
            }
        };
        let pool = Pool::builder()
            .max_size(pool_size)
            // A SQLite connection is a file handle that cannot drop; checking each one with a
            // query before every use cost a statement per trip. PostgreSQL's are checked.
            .test_on_check_out(matches!(target, DatabaseTarget::Postgres { .. }))
            .connection_timeout(Duration::from_secs(10))
            .connection_customizer(Box::new(ConnectionSetup { commits: version_observers.local_commits() }))
            .build(ConnectionManager::<AnyConnection>::new(target.diesel_url()))
            .context("cannot build the database connection pool")?;
        let version_observers = std::sync::Arc::new(version_observers);
        version_observers.listen(&target).context("cannot start listening for the database's changes")?;
        Ok(Self { pool, target: std::sync::Arc::new(target), write_turns: Default::default(), version_observers })
    }

    pub fn target(&self) -> &DatabaseTarget {
        &self.target
    }

    /// A number that changes whenever anything is committed to the database, by any connection
    /// of any process: what was read while it was `v` is still what the database holds while it
    /// is `v` (read it before reading the data). How each engine tells is in `src/db/data_version.rs`.
    /// `None` if it could not be read: then nothing read may be reused.
    pub async fn data_version(&self) -> Option<u64> {
        self.version_observers.read().await
    }

    pub fn conn(&self) -> anyhow::Result<DbConn> {
        self.pool.get().context("no database connection available")
    }

    /// Applies the embedded migrations of the selected backend; returns how many ran.
    pub fn migrate(&self) -> anyhow::Result<usize> {
        self.migrate_then(|_| Ok(())).map(|(n, ())| n)
    }

    /// Applies the migrations, then runs `then` (start-up work such as adding the shipped
    /// profiles), with no other instance doing the same meanwhile: instances that start together
    /// on one PostgreSQL database take turns on an advisory lock (the first migrates, the
    /// others find nothing left to do). One process owns a SQLite file.
    pub fn migrate_then<T>(
        &self,
        then: impl FnOnce(&mut AnyConnection) -> anyhow::Result<T>,
    ) -> anyhow::Result<(usize, T)> {
        let mut conn = self.conn()?;
        let lock = lease::key(lease::MIGRATIONS);
        if let AnyConnection::Postgresql(c) = &mut *conn {
            c.batch_execute(&format!("SELECT pg_advisory_lock({lock})")).context("cannot take the migration lock")?;
        }
        let result = (|| {
            let applied = match &mut *conn {
                AnyConnection::Sqlite(c) => c.run_pending_migrations(SQLITE_MIGRATIONS).map(|v| v.len()),
                AnyConnection::Postgresql(c) => c.run_pending_migrations(POSTGRES_MIGRATIONS).map(|v| v.len()),
            }
            .map_err(|e| anyhow::anyhow!("database migration failed: {e}"))?;
            Ok((applied, then(&mut conn)?))
        })();
        if let AnyConnection::Postgresql(c) = &mut *conn {
            // The connection goes back to the pool: its session must not keep the lock.
            if c.batch_execute(&format!("SELECT pg_advisory_unlock({lock})")).is_err() {
                // DISCARD ALL releases every advisory lock of the session as well.
                let _ = c.batch_execute("DISCARD ALL");
            }
        }
        result
    }

    /// Whether every embedded migration has been applied (for readiness checks).
    pub fn migrations_current(&self) -> anyhow::Result<bool> {
        let mut conn = self.conn()?;
        let pending = match &mut *conn {
            AnyConnection::Sqlite(c) => c.pending_migrations(SQLITE_MIGRATIONS).map(|v| v.len()),
            AnyConnection::Postgresql(c) => c.pending_migrations(POSTGRES_MIGRATIONS).map(|v| v.len()),
        }
        .map_err(|e| anyhow::anyhow!("cannot read the migration state: {e}"))?;
        Ok(pending == 0)
    }

    /// Refreshes the statistics the query planner uses, after large changes: SQLite's `PRAGMA
    /// optimize` (cheap when nothing changed), and on PostgreSQL an `ANALYZE` of the tables an
    /// import grows.
    pub async fn optimize(&self) -> anyhow::Result<()> {
        self.analyze(100).await
    }

    /// [`Db::optimize`] while an import writes, from a smaller sample on PostgreSQL (a tenth
    /// of the default, enough to tell the planner how large the tables are and that their keys
    /// are unique). Autovacuum does it only a minute or more later, and until then a prepared
    /// statement keeps the plan made for the table as it was: an import matched each batch of
    /// machines by reading every endpoint, because the plan was made while the table was empty,
    /// and replaced each batch's machine tags by reading every tag (half of a 100,000-machine
    /// import's write phase, until the tags table was analyzed too).
    pub async fn optimize_while_writing(&self) -> anyhow::Result<()> {
        self.analyze(10).await
    }

    async fn analyze(&self, statistics_target: u32) -> anyhow::Result<()> {
        self.run(move |c| {
            match c {
                AnyConnection::Sqlite(c) => c.batch_execute("PRAGMA optimize;")?,
                AnyConnection::Postgresql(c) => c.batch_execute(&format!(
                    "SET default_statistics_target = {statistics_target}; \
                     ANALYZE endpoints, endpoint_history, profile_assignments, risk_factors, defender_machines, \
                     defender_machine_tags; \
                     RESET default_statistics_target;"
                ))?,
            }
            Ok(())
        })
        .await
    }

    /// Runs blocking database work on the blocking thread pool, never on an async worker.
    pub async fn run<T, F>(&self, f: F) -> anyhow::Result<T>
    where
        F: FnOnce(&mut AnyConnection) -> anyhow::Result<T> + Send + 'static,
        T: Send + 'static,
    {
        let pool = self.pool.clone();
        tokio::task::spawn_blocking(move || {
            let mut conn = pool.get().context("no database connection available")?;
            f(&mut conn)
        })
        .await
        .context("database task panicked")?
    }

    /// A short write that a request waits for (a session's state). On SQLite it takes its turn
    /// in this process's queue of writers first: SQLite's own wait for its write lock is a poll
    /// with growing sleeps, which a sync writing batch after batch won every time, so a page
    /// waited seconds for one session update. In the queue it waits at most for the batch
    /// being written. PostgreSQL's writers do not wait for each other.
    pub async fn write<T, F>(&self, f: F) -> anyhow::Result<T>
    where
        F: FnOnce(&mut AnyConnection) -> anyhow::Result<T> + Send + 'static,
        T: Send + 'static,
    {
        let _turn = self.write_turn().await;
        self.run(f).await
    }

    async fn write_turn(&self) -> Option<tokio::sync::MutexGuard<'_, ()>> {
        match *self.target {
            DatabaseTarget::Sqlite { .. } => Some(self.write_turns.lock().await),
            DatabaseTarget::Postgres { .. } => None,
        }
    }

    /// Background writing (a sync's import batch, a re-model batch): its turn among the writers
    /// (see [`Db::write`]), then a thread of its own with a lower CPU priority, so that pages
    /// and API requests take the CPU when they need it and the background work the rest.
    /// Measured with `scripts/bench`: on 2 cores the import otherwise took a whole core from
    /// the pages beside it.
    pub async fn run_background<T, F>(&self, f: F) -> anyhow::Result<T>
    where
        F: FnOnce(&mut AnyConnection) -> anyhow::Result<T> + Send + 'static,
        T: Send + 'static,
    {
        let _turn = self.write_turn().await;
        let pool = self.pool.clone();
        let (tx, rx) = tokio::sync::oneshot::channel();
        std::thread::Builder::new()
            .name("ea-background".into())
            .spawn(move || {
                lower_thread_priority();
                let result = pool.get().context("no database connection available").and_then(|mut c| f(&mut c));
                let _ = tx.send(result);
            })
            .context("cannot start a background thread")?;
        rx.await.context("database task panicked")?
    }

    /// A short read — a few rows found by key, nothing that writes, scans or waits for a lock —
    /// for the pages every request serves. On SQLite it runs on the calling thread when a
    /// connection is free at once: a read from the page cache takes microseconds, while a trip
    /// to the blocking pool and back (two thread wake-ups) cost more than the page's queries
    /// together. WAL readers never wait for the writer. Otherwise (PostgreSQL, a busy pool)
    /// it is [`Db::run`].
    ///
    /// On SQLite, `f`'s queries share one read transaction: the page's parts come from one
    /// snapshot of the database, and the WAL read lock is taken once rather than per statement
    /// (taking and releasing it was a tenth of a page's CPU).
    pub async fn read<T, F>(&self, f: F) -> anyhow::Result<T>
    where
        F: FnOnce(&mut AnyConnection) -> anyhow::Result<T> + Send + 'static,
        T: Send + 'static,
    {
        if !matches!(*self.target, DatabaseTarget::Sqlite { .. }) {
            return self.run(f).await;
        }
        let in_one_snapshot = |c: &mut AnyConnection| c.transaction(f);
        match self.pool.try_get() {
            Some(mut conn) => in_one_snapshot(&mut conn),
            None => self.run(in_one_snapshot).await,
        }
    }
}

/// The nice value of background writing: the lowest priority, so that it runs on the CPU that
/// requests leave (it still gets a share when the CPU is busy for long).
const BACKGROUND_NICE: i32 = 19;

/// [`BACKGROUND_NICE`] for the calling thread (Linux: nice is per thread). Where that is not
/// possible the work runs at normal priority, as it did before; the reason goes to the log once.
fn lower_thread_priority() {
    static WARNED: std::sync::Once = std::sync::Once::new();
    let tid = rustix::thread::gettid();
    if let Err(e) = rustix::process::setpriority_process(Some(tid), BACKGROUND_NICE) {
        WARNED.call_once(|| tracing::warn!(error = %e, "cannot lower the priority of background work"));
    }
}

/// `INSERT ... RETURNING id` on either backend (the multi-connection cannot express RETURNING,
/// so this is the one place that matches on the backend for it).
macro_rules! insert_returning_id {
    ($conn:expr, $table:expr, $values:expr, $id:expr) => {
        match $conn {
            $crate::db::AnyConnection::Sqlite(c) => {
                diesel::insert_into($table).values($values).returning($id).get_result::<i64>(c)
            }
            $crate::db::AnyConnection::Postgresql(c) => {
                diesel::insert_into($table).values($values).returning($id).get_result::<i64>(c)
            }
        }
    };
}
pub(crate) use insert_returning_id;

/// Whether a failure is the database refusing a duplicate of a unique value (a race two
/// writers ran past the same check).
pub fn is_unique_violation(e: &anyhow::Error) -> bool {
    use diesel::result::{DatabaseErrorKind, Error};
    matches!(e.downcast_ref::<Error>(), Some(Error::DatabaseError(DatabaseErrorKind::UniqueViolation, _)))
}

/// Drops the password from a PostgreSQL URL before it is shown in a message.
pub fn redact_url(url: &str) -> String {
    match url::Url::parse(url) {
        Ok(mut u) if u.password().is_some() => {
            let _ = u.set_password(Some("****"));
            u.to_string()
        }
        _ => url.to_owned(),
    }
}

/// The current time as stored in the database: UTC Unix seconds.
pub fn now() -> i64 {
    chrono::Utc::now().timestamp()
}

/// [`now`] by the database server's clock: what instances on several hosts compare times by
/// when one of them must tell that another stopped (their clocks may disagree). On SQLite the
/// database is on this host, and its clock is this one.
pub fn database_now(conn: &mut AnyConnection) -> diesel::QueryResult<i64> {
    use diesel::RunQueryDsl;
    match conn {
        AnyConnection::Sqlite(_) => Ok(now()),
        AnyConnection::Postgresql(c) => diesel::select(diesel::dsl::sql::<diesel::sql_types::BigInt>(
            "CAST(floor(extract(epoch FROM clock_timestamp())) AS BIGINT)",
        ))
        .get_result(c),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn database_urls_select_the_backend() {
        assert_eq!(
            DatabaseTarget::parse("sqlite://data/ea.db").unwrap(),
            DatabaseTarget::Sqlite { path: "data/ea.db".into() }
        );
        assert_eq!(
            DatabaseTarget::parse("sqlite:///var/lib/ea/ea.db").unwrap(),
            DatabaseTarget::Sqlite { path: "/var/lib/ea/ea.db".into() }
        );
        assert!(matches!(DatabaseTarget::parse("postgres://u@127.0.0.1/db").unwrap(), DatabaseTarget::Postgres { .. }));
        assert!(DatabaseTarget::parse("mysql://x").is_err());
    }

    #[test]
    fn passwords_are_redacted_from_urls() {
        assert_eq!(redact_url("postgres://u:secret@h/db"), "postgres://u:****@h/db");
    }
}
