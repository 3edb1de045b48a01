//! The data version ([`super::Db::data_version`]): a number that changes whenever anything is
//! committed to the database, by any connection of any process, read on connections of its own
//! that never write. Long because each engine's way of telling (a watcher, a listener, shared
//! reads, the commit counter) is here with its tests: they hold one guarantee together.
//!
//! - **SQLite**: `PRAGMA data_version`, which a connection sees change with every commit of the
//!   other connections. A thread of this process reads it every few milliseconds on a connection
//!   of its own ([`SqliteWatcher`]) and moves the epoch on each change, and this process's own
//!   commits move it at once, as they return ([`count_commits`]), as on PostgreSQL below: a
//!   request reads two atomics. Another process's commit (the command line's) shows within the
//!   watcher's poll. While the watcher is not trusted, a request reads the version itself on one
//!   of a few observers, so that request threads seldom wait for one another.
//! - **PostgreSQL**, while listening: every table tells `ea_data_changed` of its commits
//!   (statement triggers, migration 000042), and a thread of this process listens
//!   ([`VersionObservers::listen`]) and moves the epoch on each notification; this process's own
//!   commits move it at once, as they return ([`count_commits`]), so a person's next page shows
//!   their change and a request costs no trip to the server. Another instance's commit shows
//!   within the listener's poll (milliseconds; issue 23's Q3 allows a second). The listener is
//!   trusted only while its connection answered a query within the last second: a silent one
//!   (a firewall that lost the flow) never blocks the requests, which read the snapshot then.
//! - **PostgreSQL**, when not listening (the listener's connection failed, and until it listens
//!   again): the server's current snapshot (`pg_current_snapshot()`: the oldest running
//!   transaction, the next transaction id, the ones in progress). A transaction that writes gets
//!   an id; while it runs it is in the list, and its commit takes it out; one that began and
//!   committed between two reads moved the next id on. So two equal snapshots mean nothing was
//!   committed in between, by this process, another instance, or a `psql` session. (A commit to
//!   another database of the same server changes it too: a needless re-read, never a stale
//!   page.) Each read is a trip to the server, so the requests that arrive while one is on its
//!   way share the next one (see [`Shared`]), and wait for it without holding their worker
//!   thread: the read runs on a blocking thread, and a worker serves other requests meanwhile.

use std::hash::{Hash, Hasher};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering::SeqCst};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use diesel::connection::{Instrumentation, InstrumentationEvent, SimpleConnection};
use diesel::{Connection, PgConnection, RunQueryDsl, SqliteConnection};

/// The PostgreSQL channel that every table's changes are told on (migration 000042).
const CHANNEL: &str = "ea_data_changed";

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
    /// PostgreSQL: the commits of this handle's pooled connections ([`count_commits`]), in
    /// every version it reads: a commit moves it on as soon as it returns.
    local_commits: Arc<AtomicU64>,
    /// PostgreSQL: the listener hears every commit (see [`VersionObservers::listen`]); the
    /// snapshot is read only while it does not, or has not proved itself alive lately.
    listening: AtomicBool,
    started: Instant,
    /// When the listener last proved its connection alive, in ms since `started`.
    alive_at_ms: AtomicU64,
    /// SQLite: the watcher's thread, ended and waited for when the observers go.
    sqlite_watcher: Mutex<Option<std::thread::JoinHandle<()>>>,
}

impl Drop for VersionObservers {
    fn drop(&mut self) {
        let watcher = self.sqlite_watcher.get_mut().unwrap_or_else(|e| e.into_inner()).take();
        // The last handle may be the watcher's own, taken for a moment on its thread.
        if let Some(thread) = watcher.filter(|t| t.thread().id() != std::thread::current().id()) {
            thread.thread().unpark();
            let _ = thread.join();
        }
    }
}

/// The listener's connection, owned by its thread.
struct Listener {
    url: String,
    conn: Option<PgConnection>,
    failed_at: Option<Instant>,
    /// `LISTEN` was run on `conn`.
    listening: bool,
    checked_at: Instant,
}

/// What one look at the listener's connection found.
struct Heard {
    /// Something may have been committed that nothing kept has seen.
    changed: bool,
    listening: bool,
    /// The connection answered a query just now.
    alive: bool,
}

/// What hears of commits on the listener's thread ([`VersionObservers::listen`]).
trait Hear: Send + 'static {
    /// One look: what changed since the last one.
    fn hear(&mut self) -> Heard;
}

impl Hear for Listener {
    fn hear(&mut self) -> Heard {
        Listener::hear(self)
    }
}

/// SQLite's listener: `PRAGMA data_version` on a connection of its own, read every
/// [`VersionObservers::LISTEN_POLL`]. It changes with every commit of every other connection,
/// the pool's and another process's (the command line's) alike; this process's own commits
/// move the version at once anyway ([`count_commits`]). A failed read stops the trust in it
/// until a read succeeds again, and the requests read the version themselves meanwhile.
struct SqliteWatcher {
    url: String,
    conn: Option<SqliteConnection>,
    failed_at: Option<Instant>,
    last: Option<i64>,
}

impl SqliteWatcher {
    fn new(url: &str) -> Self {
        SqliteWatcher { url: url.to_owned(), conn: None, failed_at: None, last: None }
    }
}

impl Hear for SqliteWatcher {
    fn hear(&mut self) -> Heard {
        if self.conn.is_none() && self.failed_at.is_none_or(|at| at.elapsed() >= ObserverConnection::REOPEN_AFTER) {
            self.conn = SqliteConnection::establish(&self.url)
                .ok()
                .and_then(|mut c| c.batch_execute("PRAGMA busy_timeout = 15000;").is_ok().then_some(c));
            self.failed_at = self.conn.is_none().then(Instant::now);
        }
        let Some(c) = self.conn.as_mut() else { return Heard { changed: false, listening: false, alive: false } };
        match SqliteDataVersion.get_result::<i64>(c) {
            Ok(seen) => {
                // The first look counts as a change: nothing says what came before it.
                let changed = self.last != Some(seen);
                self.last = Some(seen);
                Heard { changed, listening: true, alive: true }
            }
            Err(_) => {
                (self.conn, self.failed_at, self.last) = (None, Some(Instant::now()), None);
                Heard { changed: true, listening: false, alive: false }
            }
        }
    }
}

impl Listener {
    /// How often the listener proves its connection alive with a query, and how long requests
    /// trust it after the last proof.
    const CHECK_EVERY: Duration = Duration::from_millis(250);
    const TRUSTED_FOR: Duration = Duration::from_secs(1);

    fn new(url: &str) -> Self {
        Listener { url: url.to_owned(), conn: None, failed_at: None, listening: false, checked_at: Instant::now() }
    }

    /// (Re)opens the connection and runs `LISTEN` when needed, proves it alive now and then,
    /// and takes the notifications that arrived. Any change of state counts as a change: what
    /// was committed before it listened, or while it was cut off, is in no notification.
    fn hear(&mut self) -> Heard {
        if self.conn.is_none() && self.failed_at.is_none_or(|at| at.elapsed() >= ObserverConnection::REOPEN_AFTER) {
            self.conn = PgConnection::establish(&self.url).ok();
            self.failed_at = self.conn.is_none().then(Instant::now);
            self.listening = false;
        }
        let Some(c) = self.conn.as_mut() else { return Heard { changed: false, listening: false, alive: false } };
        let (mut changed, mut alive, mut ok) = (false, false, true);
        if !self.listening {
            // Named, so that an administrator looking at `pg_stat_activity` knows it.
            ok = c.batch_execute(&format!("SET application_name = 'ea-data-listener'; LISTEN {CHANNEL}")).is_ok();
            (self.listening, changed, alive) = (ok, ok, ok);
            self.checked_at = Instant::now();
        }
        if ok && self.checked_at.elapsed() >= Self::CHECK_EVERY {
            ok = c.batch_execute("SELECT 1").is_ok();
            alive = ok;
            self.checked_at = Instant::now();
        }
        if ok {
            for notification in c.notifications_iter() {
                match notification {
                    Ok(_) => changed = true,
                    Err(_) => {
                        ok = false;
                        break;
                    }
                }
            }
        }
        if !ok {
            (self.conn, self.failed_at, self.listening, changed, alive) =
                (None, Some(Instant::now()), false, true, false);
        }
        Heard { changed, listening: self.listening, alive }
    }
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
        Ok(Self {
            observers,
            epoch: AtomicU64::new(0),
            shared: None,
            local_commits: Arc::default(),
            listening: AtomicBool::new(false),
            started: Instant::now(),
            alive_at_ms: AtomicU64::new(0),
            sqlite_watcher: Mutex::default(),
        })
    }

    /// One PostgreSQL observer: the reads are shared, so one is never in use twice at once.
    /// Listening (on a connection of its own) starts with [`VersionObservers::listen`].
    pub(super) fn postgres(conn: PgConnection, url: &str) -> Self {
        let conn = ObserverConnection::Postgres { url: url.to_owned(), conn: Some(conn), failed_at: None };
        Self {
            observers: vec![Mutex::new(Observer::new(conn))],
            epoch: AtomicU64::new(0),
            shared: Some(Arc::default()),
            local_commits: Arc::default(),
            listening: AtomicBool::new(false),
            started: Instant::now(),
            alive_at_ms: AtomicU64::new(0),
            sqlite_watcher: Mutex::default(),
        }
    }

    /// The counter the pool's connections count their commits in ([`count_commits`]).
    pub(super) fn local_commits(&self) -> Arc<AtomicU64> {
        self.local_commits.clone()
    }

    /// How often the listener looks for notifications (and so how late another instance's
    /// commit may show).
    const LISTEN_POLL: Duration = Duration::from_millis(5);

    /// A thread that hears of every commit, on a connection of its own, for as long as these
    /// observers live: on PostgreSQL it listens on [`CHANNEL`], on SQLite it watches
    /// `PRAGMA data_version` ([`SqliteWatcher`]).
    pub(super) fn listen(self: &Arc<Self>, target: &super::DatabaseTarget) -> anyhow::Result<()> {
        match target {
            super::DatabaseTarget::Postgres { url } => self.listen_with(Listener::new(url)).map(drop),
            super::DatabaseTarget::Sqlite { .. } => {
                // Waited for when the observers go (see `Drop`): SQLite's last connection to a
                // file may remove its WAL as it closes, and whoever dropped the handle may copy or
                // remove the file next. (A PostgreSQL listener may be stuck on a silent server.)
                let thread = self.listen_with(SqliteWatcher::new(&target.diesel_url()))?;
                *self.sqlite_watcher.lock().unwrap_or_else(|e| e.into_inner()) = Some(thread);
                Ok(())
            }
        }
    }

    fn listen_with(self: &Arc<Self>, mut listener: impl Hear) -> anyhow::Result<std::thread::JoinHandle<()>> {
        let observers = Arc::downgrade(self);
        Ok(std::thread::Builder::new().name("ea-data-listener".into()).spawn(move || {
            loop {
                // The trip to the server is made holding nothing of the observers: a listener
                // stuck on a silent connection keeps neither them nor any request waiting.
                // Trust runs from before the look: a look that stalled (a starved thread, a slow
                // server) must not lend its late answer a fresh second.
                let looked_at = Instant::now();
                let heard = listener.hear();
                let Some(o) = observers.upgrade() else { return };
                o.take(heard, looked_at);
                drop(o);
                std::thread::park_timeout(Self::LISTEN_POLL);
            }
        })?)
    }

    /// What the listener heard. Leaving the listening state comes before the epoch moves, and
    /// entering it after, so that no request pairs an epoch with a listener that missed a commit.
    fn take(&self, heard: Heard, looked_at: Instant) {
        if !heard.listening {
            self.listening.store(false, SeqCst);
        }
        if heard.alive {
            let at = looked_at.saturating_duration_since(self.started).as_millis() as u64;
            self.alive_at_ms.fetch_max(at, SeqCst);
        }
        if heard.changed {
            self.epoch.fetch_add(1, SeqCst);
        }
        if heard.listening {
            self.listening.store(true, SeqCst);
        }
    }

    /// Whether requests may answer from the epoch alone: the listener listens and proved its
    /// connection alive within [`Listener::TRUSTED_FOR`]. A silent connection (a firewall that
    /// dropped the flow, a frozen server) ends that within a second, and requests read the
    /// snapshot on the observer's own connection until the listener is heard again.
    fn trusting_listener(&self) -> bool {
        self.listening.load(SeqCst)
            && (self.started.elapsed().as_millis() as u64).saturating_sub(self.alive_at_ms.load(SeqCst))
                <= Listener::TRUSTED_FOR.as_millis() as u64
    }

    /// The current data version, or `None` if it could not be read (then nothing kept may be
    /// reused). Every version counts this process's commits as well, so that the epoch read by
    /// the listener and the one read now never give one number twice.
    pub(super) async fn read(self: &Arc<Self>) -> Option<u64> {
        if self.trusting_listener() {
            return Some(self.epoch.load(SeqCst) + self.local_commits.load(SeqCst));
        }
        let epoch = match &self.shared {
            Some(shared) => {
                let observers = self.clone();
                shared.read(move || observers.read_now()).await
            }
            // A read inside the process: quicker than handing it to another thread.
            None => self.read_now(),
        };
        epoch.map(|epoch| epoch + self.local_commits.load(SeqCst))
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
                        (*conn, *failed_at) = (None, Some(Instant::now()));
                        None
                    }
                }
            }
        }
    }
}

/// Counts the commits of a pooled connection in `commits` when they return: the top-level
/// `COMMIT` of a transaction that ran a statement that may write, and such a statement outside
/// a transaction (anything but a read, a setting or transaction control; a `WITH` counts, to be
/// safe). A transaction that only read (SQLite's pages read in one, for a consistent snapshot)
/// changed nothing: counting it would end the use of what it just read.
pub(super) fn count_commits(conn: &mut impl Connection, commits: Arc<AtomicU64>) {
    conn.set_instrumentation(CommitCounter { commits, depth: 0, writing: false, wrote: false, beginning: false });
}

struct CommitCounter {
    commits: Arc<AtomicU64>,
    depth: u32,
    /// The statement running outside a transaction may write, or is the `COMMIT` of one that
    /// wrote.
    writing: bool,
    /// The transaction running ran a statement that may write.
    wrote: bool,
    /// The statement running begins a transaction or savepoint (told of before it runs).
    beginning: bool,
}

impl Instrumentation for CommitCounter {
    fn on_connection_event(&mut self, event: InstrumentationEvent<'_>) {
        match event {
            InstrumentationEvent::BeginTransaction { depth, .. } => {
                self.depth = depth.get();
                if self.depth == 1 {
                    self.wrote = false;
                }
            }
            // Told before the `COMMIT` (or `RELEASE`, `ROLLBACK`) runs, which then runs at the
            // depth it leaves.
            InstrumentationEvent::CommitTransaction { depth, .. }
            | InstrumentationEvent::RollbackTransaction { depth, .. } => self.depth = depth.get() - 1,
            InstrumentationEvent::StartQuery { query, .. } => {
                let head = statement_head(query);
                self.beginning = matches!(head.as_str(), "BEGIN" | "START" | "SAVEPOINT");
                if self.depth == 0 {
                    self.writing =
                        if matches!(head.as_str(), "COMMIT" | "END") { self.wrote } else { may_write(&head) };
                } else if may_write(&head) {
                    self.wrote = true;
                }
            }
            InstrumentationEvent::FinishQuery { error, .. } => {
                // A transaction (or savepoint) that failed to begin (SQLite busy past its
                // timeout) was counted in by the event before it: the statements after it run at
                // the depth before, and a write among them commits on its own.
                if std::mem::take(&mut self.beginning) && error.is_some() {
                    self.depth = self.depth.saturating_sub(1);
                }
                if std::mem::take(&mut self.writing) {
                    self.commits.fetch_add(1, SeqCst);
                }
            }
            _ => {}
        }
    }
}

/// The first word of a statement, upper case: only so much of it is written out (a query's
/// text is followed by its binds, which may be thousands).
fn statement_head(query: &dyn std::fmt::Display) -> String {
    struct Head(String);
    impl std::fmt::Write for Head {
        fn write_str(&mut self, s: &str) -> std::fmt::Result {
            for ch in s.chars() {
                if ch.is_ascii_alphabetic() {
                    self.0.push(ch.to_ascii_uppercase());
                } else if !self.0.is_empty() || !ch.is_whitespace() && ch != '(' {
                    return Err(std::fmt::Error);
                }
            }
            Ok(())
        }
    }
    let mut head = Head(String::new());
    let _ = std::fmt::write(&mut head, format_args!("{query}"));
    head.0
}

fn may_write(head: &str) -> bool {
    const READS: &[&str] = &[
        "SELECT",
        "SHOW",
        "SET",
        "RESET",
        "BEGIN",
        "START",
        "ROLLBACK",
        "SAVEPOINT",
        "RELEASE",
        "LISTEN",
        "UNLISTEN",
        "EXPLAIN",
        "VALUES",
        "TABLE",
        "FETCH",
    ];
    !READS.contains(&head)
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

    #[test]
    fn a_statement_counts_as_a_write_unless_it_only_reads() {
        let head = |sql: &str| statement_head(&sql);
        assert_eq!(head("  select * from x"), "SELECT");
        assert_eq!(head("(SELECT 1) UNION (SELECT 2)"), "SELECT");
        assert_eq!(head("INSERT INTO x VALUES ($1) -- binds: [1]"), "INSERT");
        assert!(may_write("COMMIT") && may_write("INSERT") && may_write("WITH") && may_write(""));
        assert!(!may_write("SELECT") && !may_write("ROLLBACK") && !may_write("SET"));
    }

    /// SQLite's pages read in a transaction (one snapshot): its commit changed nothing, and
    /// counting it would end the use of what was just read. A transaction that wrote counts
    /// once, as does a write outside one.
    #[test]
    fn only_commits_that_may_have_written_are_counted() {
        use diesel::sql_types::BigInt;
        let commits = Arc::new(AtomicU64::new(0));
        let mut c = SqliteConnection::establish(":memory:").unwrap();
        c.batch_execute("CREATE TABLE t (x INTEGER)").unwrap();
        count_commits(&mut c, commits.clone());
        let read = |c: &mut SqliteConnection| diesel::sql_query("SELECT count(*) AS n FROM t").execute(c).map(|_| ());
        c.transaction(|c| read(c)).unwrap();
        read(&mut c).unwrap();
        assert_eq!(commits.load(SeqCst), 0, "reads, in a transaction or not");
        c.transaction(|c| {
            read(c)?;
            diesel::sql_query("INSERT INTO t VALUES (1)").execute(c)?;
            read(c)
        })
        .unwrap();
        assert_eq!(commits.load(SeqCst), 1, "a transaction that wrote");
        diesel::sql_query("UPDATE t SET x = 2").execute(&mut c).unwrap();
        assert_eq!(commits.load(SeqCst), 2, "a write outside a transaction");
        c.transaction(|c| read(c)).unwrap();
        assert_eq!(commits.load(SeqCst), 2, "the next read-only transaction starts afresh");
        let _: Vec<i64> = diesel::select(diesel::dsl::sql::<BigInt>("1")).load(&mut c).unwrap();
        assert_eq!(commits.load(SeqCst), 2);
    }

    /// Review of the SQLite watcher (low): a `BEGIN IMMEDIATE` that fails (another process
    /// holds the write lock past the busy timeout) left the counter inside a transaction, and
    /// the connection's later writes outside one (a sign-out's delete) went uncounted.
    #[test]
    fn a_write_after_a_transaction_that_failed_to_begin_is_counted() {
        use diesel::connection::AnsiTransactionManager;
        let dir = tempfile::tempdir().unwrap();
        let url = dir.path().join("t.db").to_string_lossy().into_owned();
        let mut holder = SqliteConnection::establish(&url).unwrap();
        holder.batch_execute("PRAGMA journal_mode = WAL; CREATE TABLE t (x INTEGER)").unwrap();
        let mut c = SqliteConnection::establish(&url).unwrap();
        c.batch_execute("PRAGMA busy_timeout = 0").unwrap();
        let commits = Arc::new(AtomicU64::new(0));
        count_commits(&mut c, commits.clone());
        holder.batch_execute("BEGIN IMMEDIATE").unwrap();
        assert!(AnsiTransactionManager::begin_transaction_sql(&mut c, "BEGIN IMMEDIATE").is_err());
        holder.batch_execute("ROLLBACK").unwrap();
        diesel::sql_query("INSERT INTO t VALUES (1)").execute(&mut c).unwrap();
        assert_eq!(commits.load(SeqCst), 1, "the write committed on its own");
    }

    /// The same review (low): trust in the listener ran from when its answer was taken, so a
    /// look that stalled for most of a second lent a stale answer a fresh second.
    #[test]
    fn trust_in_the_listener_runs_from_before_its_look() {
        let observers = VersionObservers::sqlite(SqliteConnection::establish(":memory:").unwrap(), ":memory:").unwrap();
        let heard = || Heard { changed: false, listening: true, alive: true };
        observers.take(heard(), Instant::now());
        assert!(observers.trusting_listener(), "a fresh look is trusted");
        // A look begun at once whose answer came over a second later.
        let looked_at = Instant::now();
        std::thread::sleep(Listener::TRUSTED_FOR + Duration::from_millis(60));
        observers.take(heard(), looked_at);
        assert!(!observers.trusting_listener(), "an answer from a look over a second ago is not trusted");
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
