//! What pages read from the database, kept for the next request: values that stay exact
//! because they are reused only while the database is unchanged ([`UntilChanged`]), and
//! figures that cost a scan of the inventory and may be a few seconds old once it changed
//! ([`ShortLived`]: the Endpoints list's filter choices and match counts). Pages rendered from
//! such values are kept the same way, with the per-view values put in at each view ([`Rendered`]).

use std::collections::HashMap;
use std::hash::Hash;
use std::sync::{Arc, Mutex, Weak};
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
        self.get_until(key, version).map(|(v, _)| v)
    }

    /// [`Self::get`], and until when the value may be used if the database stays at `version`:
    /// `None` while it is exact (read at this version), else the end of its [`Self::TTL`]. A
    /// value kept with another that reuses it keeps that deadline too.
    pub fn get_until(&self, key: &K, version: Option<u64>) -> Option<(V, Option<Instant>)> {
        let entries = self.entries.lock().unwrap_or_else(|e| e.into_inner());
        let (at, read_at, v) = entries.get(key).filter(|(at, read_at, _)| Self::fresh(*at, *read_at, version))?;
        let exact = read_at.is_some() && *read_at == version;
        Some((v.clone(), if exact { None } else { Some(*at + Self::TTL) }))
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
    /// The reads under way, by key, with the version each reads at ([`Self::get_or_turn`]).
    reading: Mutex<HashMap<K, ReadAt<V>>>,
}

/// A read under way and the version it reads at.
type ReadAt<V> = (u64, Weak<ReadUnderWay<V>>);

/// A read under way: its reader holds it to write and puts the value it read in it; the
/// requests waiting for that read ask to read it, which lets them all go on at once when the
/// reader is done.
type ReadUnderWay<V> = tokio::sync::RwLock<Option<V>>;

/// The right to read a value that [`UntilChanged::get_or_turn`] did not find, held until the
/// read ends: requests for the same key at the same version wait meanwhile, then take the value
/// handed over ([`UntilChanged::end_read`]) or, without one (the read failed or found nothing),
/// read on their own.
pub struct ReadTurn<V>(tokio::sync::OwnedRwLockWriteGuard<Option<V>>);

impl<V> ReadTurn<V> {
    /// Gives the value read to the requests waiting for this read, whether it is kept or not:
    /// it was read after their version was, so it is as exact for them as for the reader (one
    /// too large to keep is then read once, not once more by each of them).
    fn hand_over(mut self, value: V) {
        *self.0 = Some(value);
    }
}

impl<K: Eq + Hash + Clone, V: Clone> UntilChanged<K, V> {
    /// At most `capacity` entries: beyond it, those of older versions go first, then
    /// everything.
    pub fn new(capacity: usize) -> Self {
        UntilChanged { entries: Mutex::new(HashMap::new()), capacity, reading: Mutex::new(HashMap::new()) }
    }

    pub fn get(&self, key: &K, version: u64) -> Option<V> {
        let entries = self.entries.lock().unwrap_or_else(|e| e.into_inner());
        entries.get(key).filter(|(v, _)| *v == version).map(|(_, value)| value.clone())
    }

    /// The value kept for `key` at `version`, or the turn to read it (`Err(Some(turn))`, held
    /// until the value is kept). Right after a commit every request for a page misses at once:
    /// the first reads while the others at the same version wait, then find what it kept, so
    /// the read is paid once, not once per waiting request (at a million endpoints a list read
    /// takes seconds). Only the same key at the same version waits: a request that saw a later
    /// commit starts its own read at once. When there is nothing to wait for and no turn to
    /// take, the request reads on its own, as it would have without turns (`Err(None)`): the
    /// read it waited for handed nothing over (it failed or found nothing), a read of a later
    /// version is under way (versions only grow), or there is no version.
    pub async fn get_or_turn(&self, key: &K, version: Option<u64>) -> Result<V, Option<ReadTurn<V>>> {
        self.get_or_turn_if(key, version, |_| true).await
    }

    /// [`Self::get_or_turn`] for values that may stop being usable before the next commit
    /// (a list page shown with a count read earlier): a kept value that `usable` refuses is
    /// read again as a missing one would be, once for all the requests that want it. A value
    /// handed over by a read is taken as it is: it is as old as the reader's own response.
    pub async fn get_or_turn_if(
        &self,
        key: &K,
        version: Option<u64>,
        usable: impl Fn(&V) -> bool,
    ) -> Result<V, Option<ReadTurn<V>>> {
        let Some(version) = version else { return Err(None) };
        let kept = || self.get(key, version).filter(&usable);
        if let Some(kept) = kept() {
            return Ok(kept);
        }
        let under_way = {
            let mut reading = self.reading.lock().unwrap_or_else(|e| e.into_inner());
            // Looked up again with the reads locked: a read that keeps its value and ends
            // meanwhile has kept it before it ended, so it is found here or waited for below.
            if let Some(kept) = kept() {
                return Ok(kept);
            }
            match reading.get(key).and_then(|(v, read)| Some((*v, read.upgrade()?))) {
                Some((v, read)) if v == version => read,
                Some((v, _)) if v > version => return Err(None),
                _ => {
                    // A new read (the first, or one of a later version than the one under way,
                    // whose waiters go on waiting for it). Ended reads are dropped first, so
                    // the map holds the reads under way and those ended since the last began.
                    reading.retain(|_, (_, read)| read.strong_count() > 0);
                    let read = Arc::new(ReadUnderWay::default());
                    reading.insert(key.clone(), (version, Arc::downgrade(&read)));
                    return Err(Some(ReadTurn(read.try_write_owned().expect("a new lock is free"))));
                }
            }
        };
        let handed = under_way.read().await.clone();
        handed.or_else(kept).ok_or(None)
    }

    /// Ends a read that [`Self::get_or_turn`] missed: keeps `value` as read at `version` if
    /// there is one and `keep` allows (a value may be too large to keep; asked only when there
    /// is a version), then hands it to the requests waiting for this read either way. Kept
    /// first: a request that looks for the value between the two finds it kept, since the turn
    /// is still held ([`Self::get_or_turn_if`]).
    pub fn end_read(
        &self,
        key: K,
        version: Option<u64>,
        value: V,
        keep: impl FnOnce(&K, &V) -> bool,
        turn: Option<ReadTurn<V>>,
    ) {
        match (version.filter(|_| keep(&key, &value)), turn) {
            (Some(v), Some(turn)) => {
                self.put(key, v, value.clone());
                turn.hand_over(value);
            }
            (Some(v), None) => self.put(key, v, value),
            (None, Some(turn)) => turn.hand_over(value),
            (None, None) => {}
        }
    }

    /// Keeps `value` as read at `version`, unless a value read at a later version is kept
    /// (versions only grow: the earlier one could never be served again).
    pub fn put(&self, key: K, version: u64, value: V) {
        let mut entries = self.entries.lock().unwrap_or_else(|e| e.into_inner());
        if entries.len() >= self.capacity && !entries.contains_key(&key) {
            entries.retain(|_, (v, _)| *v >= version);
            if entries.len() >= self.capacity {
                entries.clear();
            }
        }
        if entries.get(&key).is_none_or(|(kept_at, _)| *kept_at <= version) {
            entries.insert(key, (version, value));
        }
    }
}

/// Whether `value` holds at most about `limit` bytes, told by the length of its debug text, which
/// writes out every string it holds (escaped, so never shorter), and stopped as soon as it passes
/// `limit`: nothing is built, and a huge value costs no more than a small one. Used to keep out
/// of a cache the rare value that holds hundreds of kilobytes.
pub fn debug_fits(value: &impl std::fmt::Debug, limit: usize) -> bool {
    struct Counter(usize, usize);
    impl std::fmt::Write for Counter {
        fn write_str(&mut self, s: &str) -> std::fmt::Result {
            self.0 += s.len();
            if self.0 > self.1 { Err(std::fmt::Error) } else { Ok(()) }
        }
    }
    let mut counter = Counter(0, limit);
    std::fmt::write(&mut counter, format_args!("{value:?}")).is_ok() && counter.0 <= limit
}

/// A value each view of a page gets its own of, rendered into a kept page as a stand-in and
/// put in per view ([`Rendered`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PerView {
    /// The person's CSRF token (one per session).
    CsrfToken,
    /// The idempotency key of the page's action forms (new at every view, so that two views
    /// never share an action).
    FormKey,
}

impl PerView {
    const ALL: [PerView; 2] = [PerView::CsrfToken, PerView::FormKey];

    /// The stand-in rendered in its place: random for the process (page data cannot spell it,
    /// and would only ever show the viewer their own value if it did), lowercase letters and
    /// digits, so that no escaping (HTML, attribute, JSON, URL) changes it.
    pub fn stand_in(self) -> &'static str {
        static STAND_INS: std::sync::LazyLock<[String; 2]> =
            std::sync::LazyLock::new(|| [0, 1].map(|_| format!("ea{}", hex::encode(rand::random::<[u8; 16]>()))));
        &STAND_INS[self as usize]
    }
}

/// A page rendered once with [`PerView`] stand-ins and kept while the database is unchanged
/// ([`UntilChanged`]): a view then costs a copy with its own values put in, not a rendering.
pub struct Rendered {
    /// The text, cut where a stand-in was: each part is followed by that value (the last by none).
    parts: Vec<(String, Option<PerView>)>,
    len: usize,
}

impl Rendered {
    /// The largest page kept: a summary is a few kilobytes; one with many long history rows may
    /// be hundreds and is rendered at each view rather than kept.
    pub const KEPT_AT_MOST: usize = 64 * 1024;

    /// Cuts a page rendered with the stand-ins of [`PerView`] where they are.
    pub fn new(mut text: &str) -> Self {
        let mut parts = Vec::new();
        let len = text.len();
        loop {
            let next = PerView::ALL
                .into_iter()
                .filter_map(|v| text.find(v.stand_in()).map(|at| (at, v)))
                .min_by_key(|(at, _)| *at);
            let Some((at, value)) = next else { break };
            parts.push((text[..at].to_owned(), Some(value)));
            text = &text[at + value.stand_in().len()..];
        }
        parts.push((text.to_owned(), None));
        Rendered { parts, len }
    }

    /// The page's length in bytes, with the stand-ins.
    pub fn bytes(&self) -> usize {
        self.len
    }

    /// The page as this view shows it: `csrf_token` and `form_key` where their stand-ins were.
    /// They go in as they are, so they must need no escaping anywhere (as `auth::random_token`'s
    /// letters, digits, `-` and `_`).
    pub fn fill(&self, csrf_token: &str, form_key: &str) -> String {
        debug_assert!(
            [csrf_token, form_key]
                .iter()
                .all(|v| v.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_'))
        );
        let mut page = String::with_capacity(self.len + 4 * (csrf_token.len() + form_key.len()));
        for (text, value) in &self.parts {
            page.push_str(text);
            match value {
                Some(PerView::CsrfToken) => page.push_str(csrf_token),
                Some(PerView::FormKey) => page.push_str(form_key),
                None => {}
            }
        }
        page
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(askama::Template)]
    #[template(
        source = r#"<body hx-headers='{"X-CSRF-Token": "{{ csrf }}"}'><form><input name="csrf_token" value="{{ csrf }}"><input name="key" value="{{ key }}-scan">{{ name }}</form><a href="/x?t={{ csrf|urlencode }}">{{ key }}</a></body>"#,
        ext = "html"
    )]
    struct Page<'a> {
        csrf: &'a str,
        key: &'a str,
        name: &'a str,
    }

    #[test]
    fn a_kept_rendering_filled_in_is_the_page_rendered_with_those_values() {
        use askama::Template;
        let (csrf, key) = ("Zx-9_aB", "k3y-_Q");
        let name = "<script>alert(1)</script> & \"ea\"";
        let direct = Page { csrf, key, name }.render().unwrap();
        let stand_ins =
            Page { csrf: PerView::CsrfToken.stand_in(), key: PerView::FormKey.stand_in(), name }.render().unwrap();
        let kept = Rendered::new(&stand_ins);
        assert_eq!(kept.fill(csrf, key), direct);
        assert_eq!(kept.parts.len(), 6, "three stand-ins for the token and two for the key, cut at each");
        // Another view: its own values, nothing of the first.
        let other = kept.fill("other-token", "other-key");
        assert!(!other.contains(csrf) && !other.contains(key) && other.contains("other-token"));
        assert_ne!(PerView::CsrfToken.stand_in(), PerView::FormKey.stand_in());
    }

    #[test]
    fn the_debug_length_counts_every_byte_of_the_strings_held_and_stops_at_the_limit() {
        #[derive(Debug)]
        #[allow(dead_code)] // read only through Debug
        struct Row {
            id: i64,
            text: String,
            rows: Vec<String>,
        }
        let row = Row { id: 7, text: "x".repeat(100_000), rows: vec!["<\"é\">".repeat(1_000); 50] };
        let held = 100_000 + 50 * "<\"é\">".len() * 1_000;
        let debug_text = format!("{row:?}").len();
        assert!(debug_text >= held, "{debug_text} < {held}");
        assert!(debug_fits(&row, debug_text) && !debug_fits(&row, debug_text - 1) && !debug_fits(&row, held - 1));
        assert!(debug_fits(&"", 2) && !debug_fits(&"", 1), "an empty string's debug text is its two quotes");
        // It stops writing as soon as the limit is passed.
        struct Endless;
        impl std::fmt::Debug for Endless {
            fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                for _ in 0..1_000 {
                    f.write_str("abcd")?;
                }
                panic!("went on writing past the limit");
            }
        }
        assert!(!debug_fits(&Endless, 64));
    }

    #[test]
    fn a_page_without_stand_ins_is_kept_as_it_is() {
        assert_eq!(Rendered::new("<p>plain</p>").fill("t", "k"), "<p>plain</p>");
        assert_eq!(Rendered::new("").fill("t", "k"), "");
    }

    /// How the reads of [`misses_at_once`] end.
    #[derive(Clone, Copy, PartialEq)]
    enum Read {
        /// Kept, and handed to the waiters.
        Kept,
        /// Handed to the waiters, not kept (too large).
        HandedOver,
        /// The read with this number fails.
        Fails(usize),
    }

    /// Eight requests at once for one value at `version`, whose read takes 20 ms and ends as
    /// `read` says; returns what each got, and how many read with a turn and without one.
    async fn misses_at_once(cache: &Arc<UntilChanged<u8, u32>>, version: u64, read: Read) -> (Vec<u32>, usize, usize) {
        use std::sync::atomic::{AtomicUsize, Ordering};
        let reads = Arc::new(AtomicUsize::new(0));
        let turns = Arc::new(AtomicUsize::new(0));
        let tasks: Vec<_> = (0..8)
            .map(|_| {
                let (cache, reads, turns) = (cache.clone(), reads.clone(), turns.clone());
                tokio::spawn(async move {
                    match cache.get_or_turn(&1, Some(version)).await {
                        Ok(kept) => kept,
                        Err(turn) => {
                            turns.fetch_add(usize::from(turn.is_some()), Ordering::SeqCst);
                            let n = reads.fetch_add(1, Ordering::SeqCst);
                            tokio::time::sleep(Duration::from_millis(20)).await;
                            if read == Read::Fails(n) {
                                return 0;
                            }
                            cache.end_read(1, Some(version), version as u32, |_, _| read == Read::Kept, turn);
                            version as u32
                        }
                    }
                })
            })
            .collect();
        let mut got = Vec::new();
        for t in tasks {
            got.push(t.await.unwrap());
        }
        got.sort();
        let (reads, turns) = (reads.load(Ordering::SeqCst), turns.load(Ordering::SeqCst));
        (got, turns, reads - turns)
    }

    /// A value read at an earlier version may be used until its time is up, and a page kept
    /// with it no longer (`get_until`); one read at this version, until the next commit.
    #[test]
    fn a_short_lived_value_tells_until_when_it_may_be_used_unless_it_is_exact() {
        let cache = ShortLived::new(4);
        cache.put(1, Some(5), "read at 5");
        assert_eq!(cache.get_until(&1, Some(5)), Some(("read at 5", None)), "exact at its version");
        let (value, until) = cache.get_until(&1, Some(6)).expect("within its time after a commit");
        assert_eq!(value, "read at 5");
        let until = until.expect("not exact at a later version: it has a deadline");
        assert!(until > Instant::now() && until <= Instant::now() + ShortLived::<i32, &str>::TTL);
        cache.put(2, None, "no version");
        assert!(cache.get_until(&2, None).unwrap().1.is_some(), "without a version only the time counts");
    }

    #[tokio::test]
    async fn requests_that_miss_together_read_once_and_read_on_their_own_if_that_read_failed() {
        let cache = Arc::new(UntilChanged::<u8, u32>::new(4));
        let within = |f| tokio::time::timeout(Duration::from_secs(5), f);
        assert_eq!(within(misses_at_once(&cache, 5, Read::Kept)).await.unwrap(), (vec![5; 8], 1, 0));
        // A value too large to keep is handed to those that waited for its read.
        assert_eq!(within(misses_at_once(&cache, 6, Read::HandedOver)).await.unwrap(), (vec![6; 8], 1, 0));
        assert_eq!(cache.get(&1, 6), None, "not kept");
        // The read at 7 fails: the seven that waited for it read on their own.
        let failed = within(misses_at_once(&cache, 7, Read::Fails(0))).await.unwrap();
        assert_eq!(failed, ([0].into_iter().chain([7; 7]).collect(), 1, 7));
        // Without a version nothing is kept, so no turn is taken; the reads ended are forgotten
        // when the next begins.
        assert!(matches!(cache.get_or_turn(&1, None).await, Err(None)));
        assert!(matches!(cache.get_or_turn(&2, Some(7)).await, Err(Some(_))));
        assert_eq!(cache.reading.lock().unwrap().keys().collect::<Vec<_>>(), [&2], "the reads of key 1 ended");
    }

    /// A list page kept with a count that has since run out (`get_or_turn_if`): read again
    /// once, by the request that takes the turn, while the others wait for it (the fourth
    /// review: each read on its own, a count and a list each).
    #[tokio::test]
    async fn a_kept_value_no_longer_usable_is_read_again_once_for_all() {
        let cache = UntilChanged::<u8, u32>::new(4);
        let usable = |v: &u32| *v != 50;
        cache.put(1, 5, 50);
        let turn = cache.get_or_turn_if(&1, Some(5), usable).await;
        let Err(Some(turn)) = turn else { panic!("a value refused is read again, with the turn") };
        let waiter = tokio::time::timeout(Duration::from_millis(100), cache.get_or_turn_if(&1, Some(5), usable)).await;
        assert!(waiter.is_err(), "another request waits for that read");
        cache.end_read(1, Some(5), 51, |_, _| true, Some(turn));
        assert_eq!(cache.get_or_turn_if(&1, Some(5), usable).await.ok(), Some(51));
    }

    #[tokio::test]
    async fn an_older_read_neither_displaces_a_newer_one_nor_its_value() {
        let cache = UntilChanged::<u8, u32>::new(4);
        let newer = cache.get_or_turn(&1, Some(6)).await;
        assert!(matches!(newer, Err(Some(_))));
        // A request that read version 5 before the read at 6 began: it reads on its own, at once,
        // and the read at 6 stays the one later requests at 6 wait for.
        let older = tokio::time::timeout(Duration::from_millis(100), cache.get_or_turn(&1, Some(5))).await;
        assert!(matches!(older, Ok(Err(None))));
        let same = tokio::time::timeout(Duration::from_millis(100), cache.get_or_turn(&1, Some(6))).await;
        assert!(same.is_err(), "a request at 6 waits for the read at 6");
        // Kept in the order the reads end: the older value never replaces the newer.
        cache.put(1, 6, 60);
        cache.put(1, 5, 50);
        assert_eq!((cache.get(&1, 6), cache.get(&1, 5)), (Some(60), None));
        drop(newer);
    }

    #[tokio::test]
    async fn a_request_that_saw_a_later_commit_does_not_wait_for_an_older_read() {
        let wait = |f| tokio::time::timeout(Duration::from_millis(100), f);
        let cache = UntilChanged::<u8, u32>::new(4);
        let older = cache.get_or_turn(&1, Some(5)).await;
        assert!(matches!(older, Err(Some(_))), "the first read at 5 has the turn");
        // A read at 6 while the one at 5 is under way: its own turn at once.
        let newer = wait(cache.get_or_turn(&1, Some(6))).await;
        assert!(matches!(newer, Ok(Err(Some(_)))));
        // Another request at 6 waits for that read, not for the one at 5, which ends first.
        drop(older);
        assert!(wait(cache.get_or_turn(&1, Some(6))).await.is_err(), "it waits while the read at 6 is under way");
        // Once it ended without keeping anything, the next request at 6 reads.
        drop(newer);
        assert!(matches!(wait(cache.get_or_turn(&1, Some(6))).await, Ok(Err(Some(_)))));
    }

    #[tokio::test]
    async fn a_reader_that_went_away_lets_its_waiters_go_on() {
        let cache = Arc::new(UntilChanged::<u8, u32>::new(4));
        let reader = {
            let cache = cache.clone();
            tokio::spawn(async move {
                let _turn = cache.get_or_turn(&1, Some(5)).await;
                std::future::pending::<()>().await
            })
        };
        tokio::task::yield_now().await;
        let waiter = {
            let cache = cache.clone();
            tokio::spawn(async move { matches!(cache.get_or_turn(&1, Some(5)).await, Err(None)) })
        };
        tokio::task::yield_now().await;
        assert!(!waiter.is_finished(), "it waits for the reader");
        reader.abort();
        assert!(tokio::time::timeout(Duration::from_secs(1), waiter).await.unwrap().unwrap());
    }

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
