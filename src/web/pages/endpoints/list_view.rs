//! One page of the Endpoints list as the page, its CSV export and the JSON API read it: its
//! rows, how many endpoints match, the filter choices, and what of them is kept between views.

use std::sync::Arc;
use std::time::Instant;

use crate::db::models::endpoint_list::{self, EndpointPage, EndpointQuery};
use crate::db::models::endpoints::Endpoint;
use crate::error::AppError;
use crate::web::AppState;
use crate::web::cache::{ShortLived, UntilChanged};

/// The list's filter choices: every source, OS and profile in the inventory.
#[derive(Debug, Clone, Default)]
pub struct Facets {
    pub(super) sources: Vec<String>,
    pub(super) oses: Vec<String>,
    pub(super) profiles: Vec<String>,
    /// Defender's machine tags (the most common, see `defender_machines::distinct_tags`).
    pub(super) tags: Vec<String>,
}

/// The list's figures that cost a scan of the inventory, kept while the database is unchanged
/// and briefly after (see [`ShortLived`]): the filter choices (three scans of the table per view
/// at 100,000 endpoints, several times the page itself) and how many endpoints match each filter
/// (a paged view counts once). A count is reused only while this instance has written nothing
/// since ([`crate::db::writes_committed`]), so an upload or a sync shows at once; another
/// instance's writes within [`ShortLived::TTL`].
///
/// A whole page (its rows and count) is kept until the next commit ([`UntilChanged`]), or, when
/// its count was one read at an earlier version, no longer than that count may be used.
///
/// What is kept is bounded in bytes, whatever the rows hold (an endpoint's fields come from
/// uploads and from Defender): a page of rows whose debug text passes
/// [`ListCache::PAGE_KEPT_AT_MOST`], or a query longer than [`ListCache::KEY_KEPT_AT_MOST`], is
/// read at each view instead.
pub struct ListCache {
    facets: ShortLived<(), Arc<Facets>>,
    counts: ShortLived<(u64, String), i64>,
    pages: UntilChanged<String, KeptPage>,
}

/// A kept page, how many endpoints match, and until when that count may be shown if it was
/// not read at the page's version ([`ShortLived::get_until`]).
type KeptPage = (Arc<EndpointPage>, i64, Option<Instant>);

impl ListCache {
    /// 128 pages of 256 KiB: 32 MiB at most. The JSON API's default page of 100 ordinary
    /// endpoints takes less than half of it, the web page's 50 less than a quarter; 500 rows,
    /// the most a page may ask for, are read at each view.
    pub const PAGE_KEPT_AT_MOST: usize = 256 * 1024;
    /// How many pages are kept.
    const PAGES_KEPT: usize = 128;
    /// The filters and position as kept keys: the search text is 256 characters at most, the
    /// other filters name a source, OS or profile as stored.
    pub const KEY_KEPT_AT_MOST: usize = 1024;

    /// Whether a page may be kept: its query and its rows are small enough, the rows' own size
    /// in memory and the text they hold (their debug text, which also stands for the strings'
    /// allocations: it names every field) within [`Self::PAGE_KEPT_AT_MOST`].
    fn may_keep(key: &str, page: &KeptPage) -> bool {
        let rows = page.0.items.capacity() * std::mem::size_of::<Endpoint>();
        let text = Self::PAGE_KEPT_AT_MOST.saturating_sub(rows);
        key.len() <= Self::KEY_KEPT_AT_MOST && text > 0 && crate::web::cache::debug_fits(&page.0.items, text)
    }
}

impl Default for ListCache {
    fn default() -> Self {
        ListCache {
            facets: ShortLived::new(1),
            counts: ShortLived::new(256),
            pages: UntilChanged::new(Self::PAGES_KEPT),
        }
    }
}

/// One page of the list, how many endpoints match, and (when asked for) the filter choices, in
/// one trip to the database.
pub async fn list_view(
    state: &AppState,
    query: EndpointQuery,
    with_facets: bool,
) -> Result<(Arc<EndpointPage>, i64, Option<Arc<Facets>>), AppError> {
    let cache = &state.list_cache;
    let version = crate::web::cache::data_version(&state.db).await;
    let page_key = format!("{query:?}");
    let count_shown = |(_, _, until): &KeptPage| until.is_none_or(|t| Instant::now() < t);
    let (known_page, turn) = match cache.pages.get_or_turn_if(&page_key, version, count_shown).await {
        Ok(kept) => (Some(kept), None),
        Err(turn) => (None, turn),
    };
    let known_facets = if with_facets { cache.facets.get(&(), version) } else { None };
    if let Some((page, total, _)) = known_page
        && (known_facets.is_some() || !with_facets)
    {
        return Ok((page, total, known_facets));
    }
    let count_key = (crate::db::writes_committed(), query.filter_key());
    let known_count = cache.counts.get_until(&count_key, version);
    let (read_facets_now, count_now) = (with_facets && known_facets.is_none(), known_count.is_none());
    let (page, counted, read_facets) = state
        .db
        .run(move |c| {
            let read_facets = if read_facets_now {
                Some(Arc::new(Facets {
                    sources: endpoint_list::distinct_sources(c)?,
                    oses: endpoint_list::distinct_os(c)?,
                    profiles: endpoint_list::distinct_profiles(c)?,
                    tags: crate::db::models::defender_machines::distinct_tags(c, 200)?,
                }))
            } else {
                None
            };
            let counted = if count_now { Some(endpoint_list::count(c, &query)?) } else { None };
            Ok((endpoint_list::list(c, &query)?, counted, read_facets))
        })
        .await?;
    // Only what this request read is kept: putting back a kept value would renew it, and under
    // steady traffic it would never expire.
    if let Some(n) = counted.filter(|_| count_key.1.len() <= ListCache::KEY_KEPT_AT_MOST) {
        cache.counts.put(count_key, version, n);
    }
    if let Some(f) = &read_facets {
        cache.facets.put((), version, f.clone());
    }
    let (total, total_until) = match (counted, known_count) {
        (Some(n), _) => (n, None),
        (None, Some((n, until))) => (n, until),
        (None, None) => (0, None),
    };
    let page = Arc::new(page);
    let keep = |key: &String, kept: &KeptPage| ListCache::may_keep(key, kept);
    cache.pages.end_read(page_key, version, (page.clone(), total, total_until), keep, turn);
    Ok((page, total, read_facets.or(known_facets)))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn endpoint(id: i64, user_agent: &str) -> Endpoint {
        Endpoint {
            id,
            mac: Some("aa:bb:cc:dd:ee:01".into()),
            mac_vendor: "Dell Inc.".into(),
            ip: "10.0.0.1".into(),
            hostname: "pc1".into(),
            fqdn: "pc1.corp.example".into(),
            os_name: "Windows".into(),
            os_version: "11".into(),
            os_build: "22631".into(),
            dhcp_vendor_class: "MSFT 5.0".into(),
            dhcp_params: "1,3,6,15,31,33,43,44,46,47,119,121,249,252".into(),
            user_agent: user_agent.into(),
            profile: "Windows_11".into(),
            match_score: 4,
            risk_level: 2,
            sources: "defender,dhcp".into(),
            custom_data: "{}".into(),
            first_seen: 1,
            last_seen: 2,
            created_at: 1,
            updated_at: 2,
            other_profiles: r#"[{"name":"Windows","score":"Medium"},{"name":"Dell Laptop","score":"Low"}]"#.into(),
            profile_reason: "assigned by the defender integration".into(),
        }
    }

    fn page(rows: usize, user_agent: &str) -> KeptPage {
        let items = (0..rows as i64).map(|id| endpoint(id, user_agent)).collect();
        (Arc::new(EndpointPage { items, next: None }), rows as i64, None)
    }

    /// A fourth review of the kept pages (issue 23): 256 list pages of 500 rows with long
    /// fields held about a gigabyte; every page was kept, whatever its size.
    #[test]
    fn a_list_page_is_kept_only_if_its_rows_and_query_are_small() {
        let ordinary = "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko)";
        assert!(ListCache::may_keep("an API page", &page(100, ordinary)));
        let within = |rows: usize, share: usize| {
            let items = page(rows, ordinary).0.items.clone();
            let text = ListCache::PAGE_KEPT_AT_MOST / share - items.capacity() * std::mem::size_of::<Endpoint>();
            crate::web::cache::debug_fits(&items, text)
        };
        assert!(within(100, 2), "the API's default page takes less than half the bound");
        assert!(within(50, 4), "the web page's less than a quarter");
        let long = "\u{10348}".repeat(1024);
        assert!(!ListCache::may_keep("long fields", &page(100, &long)));
        assert!(!ListCache::may_keep("most rows", &page(500, ordinary)));
        assert!(!ListCache::may_keep(&"q".repeat(ListCache::KEY_KEPT_AT_MOST + 1), &page(1, ordinary)));
    }
}
