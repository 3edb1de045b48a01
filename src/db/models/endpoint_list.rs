//! The Endpoints page's listing as a read model of the `endpoints` table: its filters, its sort
//! keys, keyset paging by cursor (stable while rows change, no OFFSET scans), the count and the
//! filter choices.

use diesel::prelude::*;

use super::endpoints::Endpoint;
use crate::db::AnyConnection;
use crate::db::schema::{endpoint_ips, endpoint_sources, endpoints};
use crate::domain::coverage::GapKind;

type Backend = <AnyConnection as diesel::Connection>::Backend;

/// The columns the endpoint list can be sorted by.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum SortKey {
    #[default]
    LastSeen,
    FirstSeen,
    Hostname,
    Ip,
    Risk,
}

impl SortKey {
    pub const ALL: [SortKey; 5] =
        [SortKey::LastSeen, SortKey::FirstSeen, SortKey::Hostname, SortKey::Ip, SortKey::Risk];

    pub fn as_str(self) -> &'static str {
        match self {
            SortKey::LastSeen => "last_seen",
            SortKey::FirstSeen => "first_seen",
            SortKey::Hostname => "hostname",
            SortKey::Ip => "ip",
            SortKey::Risk => "risk",
        }
    }

    pub fn parse(s: &str) -> Option<SortKey> {
        Self::ALL.into_iter().find(|k| k.as_str() == s)
    }

    /// The endpoints column it sorts by.
    fn column(self) -> &'static str {
        match self {
            SortKey::LastSeen => "last_seen",
            SortKey::FirstSeen => "first_seen",
            SortKey::Hostname => "hostname",
            SortKey::Ip => "ip",
            SortKey::Risk => "risk_level",
        }
    }

    fn is_numeric(self) -> bool {
        matches!(self, SortKey::LastSeen | SortKey::FirstSeen | SortKey::Risk)
    }
}

/// Where the previous page ended: the sort value of its last row and that row's id.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CursorValue {
    Int(i64),
    Text(String),
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Cursor {
    pub value: CursorValue,
    pub id: i64,
}

impl Cursor {
    /// `value~id`; the id follows the last `~` so that text values may contain one.
    pub fn encode(&self) -> String {
        match &self.value {
            CursorValue::Int(v) => format!("{v}~{}", self.id),
            CursorValue::Text(v) => format!("{v}~{}", self.id),
        }
    }

    pub fn decode(s: &str, key: SortKey) -> Option<Cursor> {
        let (value, id) = s.rsplit_once('~')?;
        let id = id.parse().ok()?;
        let value =
            if key.is_numeric() { CursorValue::Int(value.parse().ok()?) } else { CursorValue::Text(value.to_owned()) };
        Some(Cursor { value, id })
    }

    fn of(e: &Endpoint, key: SortKey) -> Cursor {
        let value = match key {
            SortKey::LastSeen => CursorValue::Int(e.last_seen),
            SortKey::FirstSeen => CursorValue::Int(e.first_seen),
            SortKey::Risk => CursorValue::Int(e.risk_level.into()),
            SortKey::Hostname => CursorValue::Text(e.hostname.clone()),
            SortKey::Ip => CursorValue::Text(e.ip.clone()),
        };
        Cursor { value, id: e.id }
    }
}

/// A search of the inventory. Every filter is optional.
#[derive(Debug, Clone, Default)]
pub struct EndpointQuery {
    /// A MAC, an IP address, or the start of a host name, MAC or IP.
    pub search: Option<String>,
    pub source: Option<String>,
    pub os: Option<String>,
    pub risk: Option<i16>,
    pub profile: Option<String>,
    /// Only the endpoints a Defender machine created because it matched no network endpoint.
    pub defender_unmatched: bool,
    /// Only the endpoints with an EDR coverage gap (of one kind, or any).
    pub coverage: Option<CoverageFilter>,
    /// Only the endpoints whose live Defender machine carries this tag (exactly).
    pub tag: Option<String>,
    pub sort: SortKey,
    pub descending: bool,
    pub after: Option<Cursor>,
    pub limit: i64,
}

impl EndpointQuery {
    /// The filters alone (not the sort or the page), as a key: equal keys match the same rows.
    pub fn filter_key(&self) -> String {
        format!(
            "{:?}",
            (
                &self.search,
                &self.source,
                &self.os,
                self.risk,
                &self.profile,
                self.defender_unmatched,
                self.coverage,
                &self.tag
            )
        )
    }
}

/// The coverage filter of the list: any gap, or gaps of one kind.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CoverageFilter {
    AnyGap,
    Kind(GapKind),
}

pub struct EndpointPage {
    pub items: Vec<Endpoint>,
    /// Present when there is a next page.
    pub next: Option<Cursor>,
}

/// Rows after the cursor `(v, id)` in the sort order, as one row-value comparison
/// `(column, id) < (v, id)` that both engines answer with a seek in the (column, id) index.
/// Written as `column < v OR (column = v AND id < ...)`, SQLite walked the sort index from its
/// start; with a redundant `column <= v` it still stepped over every row that ties with v, and
/// ties are many: an ingest batch shares its last-seen second, a risk level tens of thousands.
fn after_cursor(q: BoxedEndpoints<'static>, key: SortKey, cursor: &Cursor, desc: bool) -> BoxedEndpoints<'static> {
    use diesel::dsl::sql;
    use diesel::sql_types::{BigInt, Bool, SmallInt, Text};
    let head = format!("(endpoints.{}, endpoints.id) {} (", key.column(), if desc { "<" } else { ">" });
    let id = cursor.id;
    match &cursor.value {
        CursorValue::Int(v) if key == SortKey::Risk => {
            let v = i16::try_from(*v).unwrap_or(i16::MAX);
            q.filter(sql::<Bool>(&head).bind::<SmallInt, _>(v).sql(", ").bind::<BigInt, _>(id).sql(")"))
        }
        CursorValue::Int(v) => {
            q.filter(sql::<Bool>(&head).bind::<BigInt, _>(*v).sql(", ").bind::<BigInt, _>(id).sql(")"))
        }
        CursorValue::Text(v) => {
            q.filter(sql::<Bool>(&head).bind::<Text, _>(v.clone()).sql(", ").bind::<BigInt, _>(id).sql(")"))
        }
    }
}

macro_rules! order_by {
    ($q:ident, $col:expr, $desc:expr) => {
        if $desc { $q.order(($col.desc(), endpoints::id.desc())) } else { $q.order(($col.asc(), endpoints::id.asc())) }
    };
}

type BoxedEndpoints<'a> = endpoints::BoxedQuery<'a, Backend>;

fn filtered(query: &EndpointQuery) -> BoxedEndpoints<'static> {
    let mut q = endpoints::table.into_boxed::<Backend>();
    if let Some(s) = query.search.as_deref().map(str::trim).filter(|s| !s.is_empty()) {
        let s = s.to_lowercase();
        if let Some(mac) = crate::domain::mac::normalize_mac(&s) {
            q = q.filter(endpoints::mac.eq(mac));
        } else if let Ok(ip) = s.parse::<std::net::IpAddr>() {
            let ip = ip.to_string();
            let holders = endpoint_ips::table.filter(endpoint_ips::ip.eq(ip.clone())).select(endpoint_ips::endpoint_id);
            q = q.filter(endpoints::ip.eq(ip).or(endpoints::id.eq_any(holders)));
        } else {
            // Prefix ranges rather than LIKE, so that both engines use the indexes.
            let end = format!("{s}\u{10FFFF}");
            q = q.filter(
                endpoints::hostname
                    .ge(s.clone())
                    .and(endpoints::hostname.lt(end.clone()))
                    .or(endpoints::mac.ge(s.clone()).and(endpoints::mac.lt(end.clone())))
                    .or(endpoints::ip.ge(s).and(endpoints::ip.lt(end))),
            );
        }
    }
    if let Some(source) = &query.source {
        q = with_source(q, source);
    }
    if query.defender_unmatched {
        use diesel::sql_types::{Bool, Text};
        q = q.filter(
            diesel::dsl::sql::<Bool>(
                "EXISTS (SELECT 1 FROM defender_machines d WHERE d.endpoint_id = endpoints.id AND NOT d.stale \
                 AND d.match_note LIKE ",
            )
            .bind::<Text, _>(format!("{}%", super::defender_machines::UNMATCHED))
            .sql(")"),
        );
    }
    if let Some(coverage) = query.coverage {
        q = with_coverage_gap(
            q,
            match coverage {
                CoverageFilter::AnyGap => None,
                CoverageFilter::Kind(k) => Some(k),
            },
        );
    }
    if let Some(tag) = &query.tag {
        q = with_tag(q, tag);
    }
    if let Some(os) = &query.os {
        q = q.filter(endpoints::os_name.eq(os.clone()));
    }
    if let Some(risk) = query.risk {
        q = q.filter(endpoints::risk_level.eq(risk));
    }
    if let Some(profile) = &query.profile {
        q = q.filter(endpoints::profile.eq(profile.clone()));
    }
    q
}

/// Only the endpoints a source reported. A correlated EXISTS is one primary-key probe per
/// candidate row, so the scan of the sort index stops after a page of matches; `id IN (SELECT
/// ...)` built the set of every endpoint of the source (half the inventory for Defender) on each
/// request first.
pub(super) fn with_source(q: BoxedEndpoints<'static>, source: &str) -> BoxedEndpoints<'static> {
    use diesel::sql_types::{Bool, Text};
    q.filter(
        diesel::dsl::sql::<Bool>(
            "EXISTS (SELECT 1 FROM endpoint_sources s WHERE s.endpoint_id = endpoints.id AND s.source = ",
        )
        .bind::<Text, _>(source.to_owned())
        .sql(")"),
    )
}

/// Only the endpoints with an EDR coverage gap: of a kind, or (`None`) any.
pub(super) fn with_coverage_gap(q: BoxedEndpoints<'static>, kind: Option<GapKind>) -> BoxedEndpoints<'static> {
    use diesel::sql_types::{Bool, Text};
    let gaps = "EXISTS (SELECT 1 FROM coverage_gaps g WHERE g.endpoint_id = endpoints.id";
    match kind {
        None => q.filter(diesel::dsl::sql::<Bool>(gaps).sql(")")),
        Some(k) => q.filter(diesel::dsl::sql::<Bool>(gaps).sql(" AND g.kind = ").bind::<Text, _>(k.as_str()).sql(")")),
    }
}

/// Only the endpoints whose live Defender machine carries the tag (exactly).
pub(super) fn with_tag(q: BoxedEndpoints<'static>, tag: &str) -> BoxedEndpoints<'static> {
    use diesel::sql_types::{Bool, Text};
    q.filter(
        diesel::dsl::sql::<Bool>(
            "EXISTS (SELECT 1 FROM defender_machines d JOIN defender_machine_tags t ON t.machine_id = d.machine_id \
             WHERE d.endpoint_id = endpoints.id AND NOT d.stale AND t.tag = ",
        )
        .bind::<Text, _>(tag.to_owned())
        .sql(")"),
    )
}

/// One page of the list, by keyset pagination so that deep pages cost what the first does.
pub fn list(conn: &mut AnyConnection, query: &EndpointQuery) -> QueryResult<EndpointPage> {
    let mut q = filtered(query);
    let desc = query.descending;
    if let Some(c) = &query.after {
        q = after_cursor(q, query.sort, c, desc);
    }
    q = match query.sort {
        SortKey::LastSeen => order_by!(q, endpoints::last_seen, desc),
        SortKey::FirstSeen => order_by!(q, endpoints::first_seen, desc),
        SortKey::Risk => order_by!(q, endpoints::risk_level, desc),
        SortKey::Hostname => order_by!(q, endpoints::hostname, desc),
        SortKey::Ip => order_by!(q, endpoints::ip, desc),
    };
    let limit = query.limit.clamp(1, 500);
    let mut items: Vec<Endpoint> = q.limit(limit + 1).select(Endpoint::as_select()).load(conn)?;
    let next = if items.len() as i64 > limit {
        items.truncate(limit as usize);
        items.last().map(|e| Cursor::of(e, query.sort))
    } else {
        None
    };
    // Pages are kept (`web::pages::endpoints::ListCache`): without the room the load left.
    items.shrink_to_fit();
    Ok(EndpointPage { items, next })
}

/// How many endpoints match the filters (the cursor and sort do not matter).
pub fn count(conn: &mut AnyConnection, query: &EndpointQuery) -> QueryResult<i64> {
    filtered(query).count().get_result(conn)
}

/// The distinct values of a column, for the filter drop-downs.
pub fn distinct_os(conn: &mut AnyConnection) -> QueryResult<Vec<String>> {
    endpoints::table
        .filter(endpoints::os_name.ne(""))
        .select(endpoints::os_name)
        .distinct()
        .order(endpoints::os_name.asc())
        .limit(200)
        .load(conn)
}

pub fn distinct_sources(conn: &mut AnyConnection) -> QueryResult<Vec<String>> {
    endpoint_sources::table.select(endpoint_sources::source).distinct().order(endpoint_sources::source.asc()).load(conn)
}

pub fn distinct_profiles(conn: &mut AnyConnection) -> QueryResult<Vec<String>> {
    endpoints::table
        .filter(endpoints::profile.ne(""))
        .select(endpoints::profile)
        .distinct()
        .order(endpoints::profile.asc())
        .limit(500)
        .load(conn)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cursors_round_trip() {
        let c = Cursor { value: CursorValue::Text("a~b".into()), id: 7 };
        assert_eq!(Cursor::decode(&c.encode(), SortKey::Hostname), Some(c));
        assert_eq!(Cursor::decode("x~1", SortKey::LastSeen), None);
    }
}
