//! Figures that cost a scan of the inventory to compute and may be a few seconds old: the
//! Endpoints list's filter choices and how many endpoints match a filter. Results themselves
//! (the rows of a page) are never kept here.

use std::collections::HashMap;
use std::hash::Hash;
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// A small map whose entries are forgotten [`ShortLived::TTL`] after they were computed.
pub struct ShortLived<K, V> {
    entries: Mutex<HashMap<K, (Instant, V)>>,
    capacity: usize,
}

impl<K: Eq + Hash, V: Clone> ShortLived<K, V> {
    /// Long enough that paging through a list or a burst of views reuses one scan; short
    /// enough that a new OS, profile or endpoint shows up while the user is still looking.
    pub const TTL: Duration = Duration::from_secs(10);

    /// At most `capacity` entries: beyond it, expired ones go first, then everything (a burst
    /// of distinct filters then costs what it would without the cache, never more memory).
    pub fn new(capacity: usize) -> Self {
        ShortLived { entries: Mutex::new(HashMap::new()), capacity }
    }

    pub fn get(&self, key: &K) -> Option<V> {
        let entries = self.entries.lock().unwrap_or_else(|e| e.into_inner());
        entries.get(key).filter(|(at, _)| at.elapsed() < Self::TTL).map(|(_, v)| v.clone())
    }

    pub fn put(&self, key: K, value: V) {
        let mut entries = self.entries.lock().unwrap_or_else(|e| e.into_inner());
        if entries.len() >= self.capacity && !entries.contains_key(&key) {
            entries.retain(|_, (at, _)| at.elapsed() < Self::TTL);
            if entries.len() >= self.capacity {
                entries.clear();
            }
        }
        entries.insert(key, (Instant::now(), value));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keeps_at_most_its_capacity() {
        let cache = ShortLived::new(2);
        cache.put(1, "a");
        cache.put(2, "b");
        assert_eq!(cache.get(&1), Some("a"));
        cache.put(2, "c");
        assert_eq!((cache.get(&1), cache.get(&2)), (Some("a"), Some("c")));
        cache.put(3, "d");
        assert_eq!((cache.get(&1), cache.get(&3)), (None, Some("d")));
    }
}
