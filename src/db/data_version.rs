//! The data version ([`super::Db::data_version`]): a number that changes whenever anything is
//! committed to the database, by any connection of any process, read on connections of its own
//! that never write.
//!
//! - **SQLite**: `PRAGMA data_version`, which a connection sees change with every commit of the
//!   other connections. A few observers, so that request threads seldom wait for one another.
//! - **PostgreSQL**: the server's current snapshot (`pg_current_snapshot()`: the oldest running
//!   transaction, the next transaction id, the ones in progress). A transaction that writes gets
//!   an id; while it runs it is in the list, and its commit takes it out; one that began and
//!   committed between two reads moved the next id on. So two equal snapshots mean nothing was
//!   committed in between, by this process, another instance, or a `psql` session. (A commit to
//!   another database of the same server changes it too: a needless re-read, never a stale
//!   page.) Each read is a trip to the server, so the requests that arrive while one is on its
//!   way share the next one (see [`Shared`]), and wait for it without holding their worker
//!   thread: the read runs on a blocking thread, and a worker serves other requests meanwhile.

use std::hash::{Hash, Hasher};
use std::sync::atomic::{AtomicU64, Ordering::SeqCst};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use diesel::connection::SimpleConnection;
use diesel::{Connection, PgConnection, RunQueryDsl, SqliteConnection};

/// Reads the data version on connections of their own.
///
/// Each observer numbers what it saw (SQLite's count, or a digest of PostgreSQL's snapshot) in
/// its own way, so those numbers are not comparable. What the observers share is an epoch,
/// moved on whenever one of them sees a change: every observer's first read after a commit
/// sees it (its previous read came before the commit), so any epoch read after a commit is
/// greater than every epoch read before it. A commit may move the epoch once per observer;
/// that costs a re-read, never a stale value.
pub(super) struct VersionObservers {
    observers: Vec<Mutex<Observer>>,
    epoch: AtomicU64,
    /// PostgreSQL: one read at a time, shared by the requests waiting for it.
    shared: Option<Arc<Shared>>,
}

struct Observer {
    conn: ObserverConnection,
    /// What this observer's last read saw.
    last_seen: Option<u64>,
}

enum ObserverConnection {
    Sqlite(SqliteConnection),
    /// `None` after a failed read, until it is opened again (at most once a second).
    Postgres {
        url: String,
        conn: Option<PgConnection>,
        failed_at: Option<Instant>,
    },
}

impl VersionObservers {
    const SQLITE_OBSERVERS: usize = 4;

    pub(super) fn sqlite(first: SqliteConnection, url: &str) -> anyhow::Result<Self> {
        let mut observers = vec![first];
        while observers.len() < Self::SQLITE_OBSERVERS {
            let mut c = SqliteConnection::establish(url).map_err(|e| anyhow::anyhow!("cannot open {url}: {e}"))?;
            c.batch_execute("PRAGMA busy_timeout = 15000;")?;
            observers.push(c);
        }
        let observers =
            observers.into_iter().map(|c| Mutex::new(Observer::new(ObserverConnection::Sqlite(c)))).collect();
        Ok(Self { observers, epoch: AtomicU64::new(0), shared: None })
    }

    /// One PostgreSQL observer: the reads are shared, so one is never in use twice at once.
    pub(super) fn postgres(conn: PgConnection, url: &str) -> Self {
        let conn = ObserverConnection::Postgres { url: url.to_owned(), conn: Some(conn), failed_at: None };
        Self {
            observers: vec![Mutex::new(Observer::new(conn))],
            epoch: AtomicU64::new(0),
            shared: Some(Arc::default()),
        }
    }

    /// The current data version, or `None` if it could not be read (then nothing kept may be
    /// reused).
    pub(super) async fn read(self: &Arc<Self>) -> Option<u64> {
        match &self.shared {
            Some(shared) => {
                let observers = self.clone();
                shared.read(move || observers.read_now()).await
            }
            // A read inside the process: quicker than handing it to another thread.
            None => self.read_now(),
        }
    }

    fn read_now(&self) -> Option<u64> {
        let mut observer = match self.observers.iter().find_map(|o| o.try_lock().ok()) {
            Some(free) => free,
            None => self.observers[0].lock().unwrap_or_else(|e| e.into_inner()),
        };
        let seen = observer.conn.read();
        if seen.is_none() || observer.last_seen != seen {
            observer.last_seen = seen;
            self.epoch.fetch_add(1, SeqCst);
        }
        seen.map(|_| self.epoch.load(SeqCst))
    }
}

impl Observer {
    fn new(conn: ObserverConnection) -> Self {
        Observer { conn, last_seen: None }
    }
}

impl ObserverConnection {
    /// A failed PostgreSQL connection is opened again after this long, not by every request.
    const REOPEN_AFTER: Duration = Duration::from_secs(1);

    fn read(&mut self) -> Option<u64> {
        match self {
            ObserverConnection::Sqlite(c) => SqliteDataVersion.get_result::<i64>(c).ok().map(|v| v as u64),
            ObserverConnection::Postgres { url, conn, failed_at } => {
                if conn.is_none() && failed_at.is_none_or(|at| at.elapsed() >= Self::REOPEN_AFTER) {
                    *conn = PgConnection::establish(url).ok();
                    *failed_at = conn.is_none().then(Instant::now);
                }
                let snapshot = PgSnapshot.get_result::<String>(conn.as_mut()?);
                match snapshot {
                    Ok(text) => {
                        let mut digest = std::collections::hash_map::DefaultHasher::new();
                        text.hash(&mut digest);
                        Some(digest.finish())
                    }
                    Err(_) => {
                        *conn = None;
                        *failed_at = Some(Instant::now());
                        None
                    }
                }
            }
        }
    }
}

/// Reads that waiting requests share. A request may only use a read that *began after it
/// arrived* (an earlier one might predate a commit the request could already have seen), so it
/// waits for the read on its way, if any, and then for the next one, which it starts itself
/// unless another waiter did. Under load one read serves every request that arrived during
/// the previous one, instead of each making its own trip.
///
/// The read runs on a blocking thread and records its own result, so that a request dropped
/// while waiting (its client went away) never leaves the others waiting for a read no one ends.
#[derive(Default)]
struct Shared {
    state: Mutex<SharedState>,
    done: tokio::sync::Notify,
}

#[derive(Default)]
struct SharedState {
    /// Reads begun so far; the number of the last one.
    begun: u64,
    /// The number of the last read that finished, and what it read (reads run one at a time,
    /// so they finish in order).
    finished: u64,
    version: Option<u64>,
    reading: bool,
}

impl Shared {
    async fn read(self: &Arc<Self>, read_now: impl FnOnce() -> Option<u64> + Send + 'static) -> Option<u64> {
        let arrived_after = self.lock().begun;
        let mut read_now = Some(read_now);
        loop {
            // Registered before the state is looked at, so that a read ending in between wakes it.
            let done = self.done.notified();
            tokio::pin!(done);
            done.as_mut().enable();
            {
                let mut state = self.lock();
                if state.finished > arrived_after {
                    return state.version;
                }
                if !state.reading
                    && let Some(read_now) = read_now.take()
                {
                    state.reading = true;
                    state.begun += 1;
                    let mine = state.begun;
                    let shared = self.clone();
                    tokio::task::spawn_blocking(move || {
                        // A read that panicked counts as one that failed: nothing is reused.
                        let version = std::panic::catch_unwind(std::panic::AssertUnwindSafe(read_now)).ok().flatten();
                        let mut state = shared.lock();
                        (state.reading, state.finished, state.version) = (false, mine, version);
                        drop(state);
                        shared.done.notify_waiters();
                    });
                }
            }
            done.await;
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, SharedState> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }
}

/// The queries that read what an observer sees, each as a query of its own type, so that each
/// connection prepares it once and keeps it (diesel prepares raw SQL text again on every call:
/// SQLite's parser was the largest part of reading the version that way).
macro_rules! prepared_once {
    ($name:ident, $backend:ty, $conn:ty, $sql_type:ty, $sql:literal) => {
        #[derive(diesel::query_builder::QueryId)]
        struct $name;

        impl diesel::query_builder::QueryFragment<$backend> for $name {
            fn walk_ast<'b>(
                &'b self,
                mut out: diesel::query_builder::AstPass<'_, 'b, $backend>,
            ) -> diesel::QueryResult<()> {
                out.push_sql($sql);
                Ok(())
            }
        }

        impl diesel::query_builder::Query for $name {
            type SqlType = $sql_type;
        }

        impl RunQueryDsl<$conn> for $name {}
    };
}

prepared_once!(
    SqliteDataVersion,
    diesel::sqlite::Sqlite,
    SqliteConnection,
    diesel::sql_types::BigInt,
    "PRAGMA data_version"
);
prepared_once!(PgSnapshot, diesel::pg::Pg, PgConnection, diesel::sql_types::Text, "SELECT pg_current_snapshot()::text");

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;
    use std::sync::atomic::AtomicUsize;

    #[tokio::test]
    async fn a_request_never_uses_a_read_that_began_before_it_arrived() {
        let shared = Arc::new(Shared::default());
        let reads = Arc::new(AtomicUsize::new(0));
        let (started_tx, started_rx) = std::sync::mpsc::channel();
        let (release_tx, release_rx) = std::sync::mpsc::channel::<()>();
        // A read on its way, answering version 1 once released.
        let first = {
            let (shared, reads) = (shared.clone(), reads.clone());
            tokio::spawn(async move {
                shared
                    .read(move || {
                        reads.fetch_add(1, SeqCst);
                        started_tx.send(()).unwrap();
                        release_rx.recv().unwrap();
                        Some(1)
                    })
                    .await
            })
        };
        tokio::task::spawn_blocking(move || started_rx.recv().unwrap()).await.unwrap();
        // Arriving now, it must not take the 1 of the read already on its way.
        let second = {
            let (shared, reads) = (shared.clone(), reads.clone());
            tokio::spawn(async move {
                shared
                    .read(move || {
                        reads.fetch_add(1, SeqCst);
                        Some(2)
                    })
                    .await
            })
        };
        tokio::time::sleep(Duration::from_millis(50)).await;
        release_tx.send(()).unwrap();
        assert_eq!(first.await.unwrap(), Some(1));
        assert_eq!(second.await.unwrap(), Some(2), "a read of its own, begun after it arrived");
        assert_eq!(reads.load(SeqCst), 2);
    }

    #[tokio::test]
    async fn a_waiter_that_goes_away_leaves_the_read_to_end_for_the_others() {
        let shared = Arc::new(Shared::default());
        let (release_tx, release_rx) = std::sync::mpsc::channel::<()>();
        // The request that starts the read is dropped before the read ends.
        let gone = tokio::spawn({
            let shared = shared.clone();
            async move {
                shared
                    .read(move || {
                        release_rx.recv().unwrap();
                        Some(7)
                    })
                    .await
            }
        });
        tokio::time::sleep(Duration::from_millis(20)).await;
        gone.abort();
        release_tx.send(()).unwrap();
        let next = tokio::time::timeout(Duration::from_secs(5), shared.read(|| Some(8))).await;
        assert_eq!(next.expect("the next request is answered"), Some(8));
    }
}
