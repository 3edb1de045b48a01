//! What pages read from the database, kept for the next request: values that stay exact
//! because they are reused only while the database is unchanged ([`UntilChanged`]), and
//! figures that cost a scan of the inventory and may be a few seconds old once it changed
//! ([`ShortLived`]: the Endpoints list's filter choices and match counts).

use std::collections::HashMap;
use std::hash::Hash;
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// A small map whose entries are kept while the database is at the data version they were
/// read at, and for [`ShortLived::TTL`] after they were read whatever changed since. (When the
/// data version could not be read, only the second.) A sync commits several times a second: the
/// figures are then read again every few seconds, not after every commit.
pub struct ShortLived<K, V> {
    entries: Mutex<HashMap<K, ShortLivedEntry<V>>>,
    capacity: usize,
}

/// When a value was read, and the data version it was read at.
type ShortLivedEntry<V> = (Instant, Option<u64>, V);

impl<K: Eq + Hash, V: Clone> ShortLived<K, V> {
    /// Long enough that paging through a list or a burst of views reuses one scan; short
    /// enough that a new OS, profile or endpoint shows up while the user is still looking.
    pub const TTL: Duration = Duration::from_secs(10);

    /// At most `capacity` entries: beyond it, expired ones go first, then everything (a burst
    /// of distinct filters then costs what it would without the cache, never more memory).
    pub fn new(capacity: usize) -> Self {
        ShortLived { entries: Mutex::new(HashMap::new()), capacity }
    }

    /// The value of `key` if it is still to be used with the database at `version`.
    pub fn get(&self, key: &K, version: Option<u64>) -> Option<V> {
        let entries = self.entries.lock().unwrap_or_else(|e| e.into_inner());
        entries.get(key).filter(|(at, read_at, _)| Self::fresh(*at, *read_at, version)).map(|(_, _, v)| v.clone())
    }

    /// Keeps a value read with the database at `version`.
    pub fn put(&self, key: K, version: Option<u64>, value: V) {
        let mut entries = self.entries.lock().unwrap_or_else(|e| e.into_inner());
        if entries.len() >= self.capacity && !entries.contains_key(&key) {
            entries.retain(|_, (at, read_at, _)| Self::fresh(*at, *read_at, version));
            if entries.len() >= self.capacity {
                entries.clear();
            }
        }
        entries.insert(key, (Instant::now(), version, value));
    }

    fn fresh(at: Instant, read_at: Option<u64>, now: Option<u64>) -> bool {
        at.elapsed() < Self::TTL || (read_at.is_some() && read_at == now)
    }
}

tokio::task_local! {
    /// The database's data version for this page request, read at its first use (see
    /// [`data_version`]).
    static REQUEST_DATA_VERSION: std::cell::OnceCell<Option<u64>>;
}

/// The data version to check kept values against ([`crate::db::Db::data_version`]): within a
/// page request (GET or HEAD, see [`read_data_version_once`]) it is read at the first use and
/// reused by the later ones: such a request writes nothing before its reads, so that version is
/// current for all of them (the session and the page), and reading it once spares a trip per
/// request. Elsewhere it is read now.
pub async fn data_version(db: &crate::db::Db) -> Option<u64> {
    match REQUEST_DATA_VERSION.try_with(|v| v.get().copied()) {
        Ok(Some(read)) => read,
        Ok(None) => {
            let version = db.data_version().await;
            // Another use within the request may have read it meanwhile: the first read stands.
            REQUEST_DATA_VERSION.with(|v| *v.get_or_init(|| version))
        }
        Err(_) => db.data_version().await,
    }
}

/// Middleware: lets a page request read the data version once (outside the session
/// middleware, whose load is its first use). A request that reads nothing kept (a static
/// file, a health check) never reads it.
pub async fn read_data_version_once(
    req: actix_web::dev::ServiceRequest,
    next: actix_web::middleware::Next<impl actix_web::body::MessageBody + 'static>,
) -> Result<actix_web::dev::ServiceResponse<impl actix_web::body::MessageBody>, actix_web::Error> {
    use actix_web::http::Method;
    if !matches!(*req.method(), Method::GET | Method::HEAD) {
        return next.call(req).await;
    }
    REQUEST_DATA_VERSION.scope(std::cell::OnceCell::new(), next.call(req)).await
}

/// Values read from the database, each kept with the data version it was read at
/// ([`crate::db::Db::data_version`]) and served only while the database is still at that
/// version: any commit, of any connection or process, ends their use. What a page shows is
/// then what the database holds, while a page viewed again between two commits (most views:
/// even a sync commits a few times a second) costs no query.
pub struct UntilChanged<K, V> {
    entries: Mutex<HashMap<K, (u64, V)>>,
    capacity: usize,
}

impl<K: Eq + Hash, V: Clone> UntilChanged<K, V> {
    /// At most `capacity` entries: beyond it, those of older versions go first, then
    /// everything.
    pub fn new(capacity: usize) -> Self {
        UntilChanged { entries: Mutex::new(HashMap::new()), capacity }
    }

    pub fn get(&self, key: &K, version: u64) -> Option<V> {
        let entries = self.entries.lock().unwrap_or_else(|e| e.into_inner());
        entries.get(key).filter(|(v, _)| *v == version).map(|(_, value)| value.clone())
    }

    pub fn put(&self, key: K, version: u64, value: V) {
        let mut entries = self.entries.lock().unwrap_or_else(|e| e.into_inner());
        if entries.len() >= self.capacity && !entries.contains_key(&key) {
            entries.retain(|_, (v, _)| *v == version);
            if entries.len() >= self.capacity {
                entries.clear();
            }
        }
        entries.insert(key, (version, value));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn serves_a_value_only_at_the_version_it_was_read_at() {
        let cache = UntilChanged::new(2);
        cache.put("page", 7, "old");
        assert_eq!(cache.get(&"page", 7), Some("old"));
        assert_eq!(cache.get(&"page", 8), None);
        cache.put("page", 8, "new");
        assert_eq!((cache.get(&"page", 7), cache.get(&"page", 8)), (None, Some("new")));
        // Full: the entries of other versions make room first.
        cache.put("a", 8, "a");
        cache.put("b", 9, "b");
        assert_eq!((cache.get(&"page", 8), cache.get(&"a", 8), cache.get(&"b", 9)), (None, None, Some("b")));
    }

    #[test]
    fn keeps_at_most_its_capacity() {
        let cache = ShortLived::new(2);
        cache.put(1, None, "a");
        cache.put(2, None, "b");
        assert_eq!(cache.get(&1, None), Some("a"));
        cache.put(2, None, "c");
        assert_eq!((cache.get(&1, None), cache.get(&2, None)), (Some("a"), Some("c")));
        cache.put(3, None, "d");
        assert_eq!((cache.get(&1, None), cache.get(&3, None)), (None, Some("d")));
    }

    #[test]
    fn a_short_lived_value_outlives_its_time_while_the_database_is_unchanged() {
        let cache = ShortLived::new(2);
        let long_ago = Instant::now() - ShortLived::<u8, u8>::TTL - Duration::from_secs(1);
        cache.entries.lock().unwrap().insert(1, (long_ago, Some(7), 10));
        cache.entries.lock().unwrap().insert(2, (long_ago, None, 20));
        assert_eq!(cache.get(&1, Some(7)), Some(10), "same version: still used");
        assert_eq!(cache.get(&1, Some(8)), None, "changed since, and older than its time");
        assert_eq!(cache.get(&2, None), None, "no version: its time alone");
        cache.put(3, Some(8), 30);
        assert_eq!(cache.get(&3, Some(9)), Some(30), "changed since, but within its time");
    }
}
