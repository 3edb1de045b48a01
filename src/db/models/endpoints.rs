//! The endpoint inventory: endpoints, their IP addresses, the sources that reported them, and
//! the history of their changes. Observations are merged here: by MAC when the observation has
//! one, otherwise by the endpoint that last held the IP address. The Endpoints page's listing
//! is a read model of its own (`endpoint_list.rs`).
//!
//! Long because the inventory is written four ways (merged observations, Defender's batch
//! import, the review queue, re-modeled profiles), and the writes that keep its tables consistent
//! with each other belong together.

use diesel::prelude::*;

use crate::db::batch::{execute_values, row, update_by_id};
use crate::db::models::events;
use crate::db::schema::{endpoint_history, endpoint_ips, endpoint_sources, endpoints};
use crate::db::{AnyConnection, engine_query, now};
use crate::domain::observations::Observation;

#[derive(Debug, Clone, Queryable, Selectable)]
#[diesel(table_name = endpoints)]
pub struct Endpoint {
    pub id: i64,
    pub mac: Option<String>,
    pub mac_vendor: String,
    pub ip: String,
    pub hostname: String,
    pub fqdn: String,
    pub os_name: String,
    pub os_version: String,
    pub os_build: String,
    pub dhcp_vendor_class: String,
    pub dhcp_params: String,
    pub user_agent: String,
    pub profile: String,
    pub match_score: i16,
    pub risk_level: i16,
    pub sources: String,
    pub custom_data: String,
    pub first_seen: i64,
    pub last_seen: i64,
    pub created_at: i64,
    pub updated_at: i64,
    /// The other matching profiles, as JSON `[{"name": ..., "score": ...}]`.
    pub other_profiles: String,
    /// Why the profile was chosen (the rule that matched, or the integration that assigned it).
    pub profile_reason: String,
}

#[derive(Debug, Clone, Queryable, Selectable)]
#[diesel(table_name = endpoint_ips)]
pub struct EndpointIp {
    pub endpoint_id: i64,
    pub ip: String,
    pub first_seen: i64,
    pub last_seen: i64,
}

#[derive(Debug, Clone, Queryable, Selectable)]
#[diesel(table_name = endpoint_history)]
pub struct HistoryEntry {
    pub id: i64,
    pub endpoint_id: i64,
    pub at: i64,
    pub field: String,
    pub old_value: String,
    pub new_value: String,
    pub source: String,
}

/// What one batch of observations did to the inventory.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct MergeCounts {
    pub created: usize,
    pub updated: usize,
}

/// The outcome of a merge: the counts, and the endpoints touched (to be re-modeled).
pub struct Merged {
    pub counts: MergeCounts,
    pub touched: Vec<i64>,
}

/// Merges a batch of validated observations (run it in a transaction: all of it lands, or none).
pub fn apply_observations(
    conn: &mut AnyConnection,
    observations: &[Observation],
    source: &str,
    vendor_for_mac: impl Fn(&str) -> Option<String>,
) -> QueryResult<Merged> {
    let mut counts = MergeCounts::default();
    let mut touched = Vec::with_capacity(observations.len());
    let mut later = Later::default();
    for o in observations {
        let (id, created) = apply_one(conn, o, source, &vendor_for_mac, &mut later)?;
        touched.push(id);
        if created {
            counts.created += 1;
        } else {
            counts.updated += 1;
        }
    }
    // Written last, in a statement each: nothing in the batch reads them.
    record_history_many(conn, &later.history)?;
    let seen: Vec<(i64, i64, i64)> = later.seen.into_iter().map(|(id, (first, last))| (id, first, last)).collect();
    upsert_sources(conn, source, &seen)?;
    touched.sort_unstable();
    touched.dedup();
    Ok(Merged { counts, touched })
}

/// What a batch of observations writes after its endpoints: their history, and when the
/// source saw each endpoint first and last in the batch.
#[derive(Default)]
struct Later<'a> {
    history: Vec<Change<'a>>,
    seen: std::collections::HashMap<i64, (i64, i64)>,
}

fn find_for_observation(conn: &mut AnyConnection, o: &Observation) -> QueryResult<Option<Endpoint>> {
    match (&o.mac, &o.ip) {
        (Some(mac), _) => {
            endpoints::table.filter(endpoints::mac.eq(mac)).select(Endpoint::as_select()).first(conn).optional()
        }
        (None, Some(ip)) => endpoints::table
            .filter(endpoints::ip.eq(ip))
            .order(endpoints::last_seen.desc())
            .select(Endpoint::as_select())
            .first(conn)
            .optional(),
        (None, None) => Ok(None),
    }
}

/// Returns the endpoint's id and whether it was created.
fn apply_one<'a>(
    conn: &mut AnyConnection,
    o: &Observation,
    source: &'a str,
    vendor_for_mac: &impl Fn(&str) -> Option<String>,
    later: &mut Later<'a>,
) -> QueryResult<(i64, bool)> {
    let t = now();
    let (id, created) = match find_for_observation(conn, o)? {
        None => {
            let vendor = o.mac.as_deref().and_then(vendor_for_mac).unwrap_or_default();
            let values = (
                endpoints::mac.eq(&o.mac),
                endpoints::mac_vendor.eq(vendor),
                endpoints::ip.eq(o.ip.clone().unwrap_or_default()),
                endpoints::hostname.eq(o.hostname.clone().unwrap_or_default()),
                endpoints::fqdn.eq(o.fqdn.clone().unwrap_or_default()),
                endpoints::dhcp_vendor_class.eq(o.dhcp_vendor_class.clone().unwrap_or_default()),
                endpoints::dhcp_params.eq(o.dhcp_params.clone().unwrap_or_default()),
                endpoints::user_agent.eq(o.user_agent.clone().unwrap_or_default()),
                endpoints::sources.eq(source),
                endpoints::first_seen.eq(o.seen_at),
                endpoints::last_seen.eq(o.seen_at),
                endpoints::created_at.eq(t),
                endpoints::updated_at.eq(t),
            );
            let id = crate::db::insert_returning_id!(conn, endpoints::table, values, endpoints::id)?;
            let (ip, hostname) = (o.ip.as_deref().unwrap_or(""), o.hostname.as_deref().unwrap_or(""));
            record_created(conn, &[(id, hostname, o.mac.as_deref(), ip, source)])?;
            (id, true)
        }
        Some(e) => {
            update_from_observation(conn, &e, o, source, t, &mut later.history)?;
            (e.id, false)
        }
    };
    if let Some(ip) = &o.ip {
        upsert_ip(conn, id, ip, o.seen_at)?;
    }
    let seen = later.seen.entry(id).or_insert((o.seen_at, o.seen_at));
    *seen = (seen.0.min(o.seen_at), seen.1.max(o.seen_at));
    Ok((id, created))
}

fn update_from_observation<'a>(
    conn: &mut AnyConnection,
    e: &Endpoint,
    o: &Observation,
    source: &'a str,
    t: i64,
    history: &mut Vec<Change<'a>>,
) -> QueryResult<()> {
    // An observation older than what we know may add facts but must not roll the current ones back.
    let newer = o.seen_at >= e.last_seen;
    let pick = |new: &Option<String>, old: &str| -> String {
        match new {
            Some(v) if newer || old.is_empty() => v.clone(),
            _ => old.to_owned(),
        }
    };
    let ip = pick(&o.ip, &e.ip);
    let hostname = pick(&o.hostname, &e.hostname);
    let fqdn = pick(&o.fqdn, &e.fqdn);
    let vendor_class = pick(&o.dhcp_vendor_class, &e.dhcp_vendor_class);
    let params = pick(&o.dhcp_params, &e.dhcp_params);
    let user_agent = pick(&o.user_agent, &e.user_agent);
    let sources = merged_sources(&e.sources, source);
    let changed = ip != e.ip
        || hostname != e.hostname
        || fqdn != e.fqdn
        || vendor_class != e.dhcp_vendor_class
        || params != e.dhcp_params
        || user_agent != e.user_agent
        || sources != e.sources;
    for (field, old, new) in [("ip", &e.ip, &ip), ("hostname", &e.hostname, &hostname)] {
        if old != new && !old.is_empty() {
            history.push(Change { endpoint_id: e.id, field, old: old.clone(), new: new.clone(), source });
        }
    }
    let last_seen = e.last_seen.max(o.seen_at);
    let first_seen = e.first_seen.min(o.seen_at);
    if changed || last_seen != e.last_seen || first_seen != e.first_seen {
        diesel::update(endpoints::table.find(e.id))
            .set((
                endpoints::ip.eq(ip),
                endpoints::hostname.eq(hostname),
                endpoints::fqdn.eq(fqdn),
                endpoints::dhcp_vendor_class.eq(vendor_class),
                endpoints::dhcp_params.eq(params),
                endpoints::user_agent.eq(user_agent),
                endpoints::sources.eq(sources),
                endpoints::first_seen.eq(first_seen),
                endpoints::last_seen.eq(last_seen),
                endpoints::updated_at.eq(t),
            ))
            .execute(conn)?;
    }
    Ok(())
}

/// The endpoint's sources as a sorted comma list, for display.
pub fn merged_sources(existing: &str, source: &str) -> String {
    let mut all: Vec<&str> = existing.split(',').filter(|s| !s.is_empty()).collect();
    if !all.contains(&source) {
        all.push(source);
        all.sort_unstable();
    }
    all.join(",")
}

/// A change of one of an endpoint's fields, for its history.
#[derive(Debug, Clone, PartialEq)]
pub struct Change<'a> {
    pub endpoint_id: i64,
    pub field: &'a str,
    pub old: String,
    pub new: String,
    pub source: &'a str,
}

pub fn record_history_many(conn: &mut AnyConnection, changes: &[Change<'_>]) -> QueryResult<usize> {
    let at = now();
    let rows: Vec<_> = changes.iter().map(|c| row![c.endpoint_id, at, c.field, &c.old, &c.new, c.source]).collect();
    execute_values(
        conn,
        "INSERT INTO endpoint_history (endpoint_id, at, field, old_value, new_value, source)",
        "",
        &rows,
    )
}

fn upsert_ip(conn: &mut AnyConnection, endpoint_id: i64, ip: &str, seen: i64) -> QueryResult<()> {
    let existing: Option<(i64, i64)> = endpoint_ips::table
        .find((endpoint_id, ip))
        .select((endpoint_ips::first_seen, endpoint_ips::last_seen))
        .first(conn)
        .optional()?;
    match existing {
        None => {
            diesel::insert_into(endpoint_ips::table)
                .values((
                    endpoint_ips::endpoint_id.eq(endpoint_id),
                    endpoint_ips::ip.eq(ip),
                    endpoint_ips::first_seen.eq(seen),
                    endpoint_ips::last_seen.eq(seen),
                ))
                .execute(conn)?;
        }
        Some((first, last)) if seen > last || seen < first => {
            diesel::update(endpoint_ips::table.find((endpoint_id, ip)))
                .set((endpoint_ips::first_seen.eq(first.min(seen)), endpoint_ips::last_seen.eq(last.max(seen))))
                .execute(conn)?;
        }
        Some(_) => {}
    }
    Ok(())
}

pub fn upsert_source(conn: &mut AnyConnection, endpoint_id: i64, source: &str, seen: i64) -> QueryResult<()> {
    upsert_sources(conn, source, &[(endpoint_id, seen, seen)]).map(drop)
}

/// Records that `source` saw these endpoints, (endpoint, first, last): a new row for an
/// endpoint it had not reported, a later `last_seen` for one it had; an earlier time changes
/// nothing. One endpoint at most once.
pub fn upsert_sources(conn: &mut AnyConnection, source: &str, seen: &[(i64, i64, i64)]) -> QueryResult<usize> {
    let rows: Vec<_> = seen.iter().map(|&(id, first, last)| row![id, source, first, last]).collect();
    execute_values(
        conn,
        "INSERT INTO endpoint_sources (endpoint_id, source, first_seen, last_seen)",
        "ON CONFLICT (endpoint_id, source) DO UPDATE SET last_seen = excluded.last_seen \
         WHERE excluded.last_seen > endpoint_sources.last_seen",
        &rows,
    )
}

impl Endpoint {
    /// How pages name the endpoint: its host name, else its address, else its MAC.
    pub fn title(&self) -> String {
        [&self.hostname, &self.ip]
            .into_iter()
            .find(|s| !s.is_empty())
            .cloned()
            .or_else(|| self.mac.clone())
            .unwrap_or_else(|| format!("Endpoint {}", self.id))
    }
}

pub fn find(conn: &mut AnyConnection, id: i64) -> QueryResult<Option<Endpoint>> {
    engine_query!(conn, |c| endpoints::table.find(id).select(Endpoint::as_select()).first(c).optional())
}

/// The endpoints with these ids that exist.
pub fn find_many(conn: &mut AnyConnection, ids: &[i64]) -> QueryResult<Vec<Endpoint>> {
    if ids.is_empty() {
        return Ok(Vec::new());
    }
    endpoints::table.filter(endpoints::id.eq_any(ids)).select(Endpoint::as_select()).load(conn)
}

/// What a batch of machines from an integration may match, read in a few queries: the
/// endpoints holding one of these MACs, FQDNs or host names, or one of these IP addresses
/// with a last sighting in `seen` (inclusive).
#[derive(Debug, Default)]
pub struct MatchKeys {
    pub macs: Vec<String>,
    pub fqdns: Vec<String>,
    pub hostnames: Vec<String>,
    pub ips: Vec<String>,
    pub seen: (i64, i64),
}

pub fn match_candidates(conn: &mut AnyConnection, keys: &MatchKeys) -> QueryResult<Vec<Endpoint>> {
    let mut found: Vec<Endpoint> = Vec::new();
    if !keys.macs.is_empty() {
        found.extend(
            endpoints::table.filter(endpoints::mac.eq_any(&keys.macs)).select(Endpoint::as_select()).load(conn)?,
        );
    }
    if !keys.fqdns.is_empty() {
        found.extend(
            endpoints::table.filter(endpoints::fqdn.eq_any(&keys.fqdns)).select(Endpoint::as_select()).load(conn)?,
        );
    }
    if !keys.hostnames.is_empty() {
        found.extend(
            endpoints::table
                .filter(endpoints::hostname.eq_any(&keys.hostnames))
                .select(Endpoint::as_select())
                .load(conn)?,
        );
    }
    if !keys.ips.is_empty() {
        found.extend(
            endpoints::table
                .filter(endpoints::ip.eq_any(&keys.ips))
                .filter(endpoints::last_seen.between(keys.seen.0, keys.seen.1))
                .select(Endpoint::as_select())
                .load(conn)?,
        );
    }
    let mut seen = std::collections::HashSet::new();
    found.retain(|e| seen.insert(e.id));
    Ok(found)
}

/// Ids for `n` endpoints that this write transaction is about to insert with
/// [`insert_many`], so that rows of other tables can name them before one statement inserts
/// them all. PostgreSQL takes them from the table's sequence (ids taken and not used leave a
/// gap, as a rolled-back insert does). SQLite's transaction holds the write lock, so nothing
/// else gives out ids meanwhile; the column is AUTOINCREMENT, which never gives an id twice,
/// so the next is past both the highest id there and the highest ever given.
pub fn reserve_ids(conn: &mut AnyConnection, n: usize) -> QueryResult<Vec<i64>> {
    #[derive(QueryableByName)]
    struct Id {
        #[diesel(sql_type = diesel::sql_types::BigInt)]
        id: i64,
    }
    if n == 0 {
        return Ok(Vec::new());
    }
    match conn {
        AnyConnection::Postgresql(c) => {
            let ids: Vec<Id> = diesel::sql_query(
                "SELECT nextval(pg_get_serial_sequence('endpoints', 'id')) AS id FROM generate_series(1, $1)",
            )
            .bind::<diesel::sql_types::BigInt, _>(n as i64)
            .load(c)?;
            Ok(ids.into_iter().map(|i| i.id).collect())
        }
        AnyConnection::Sqlite(c) => {
            let next: Vec<Id> = diesel::sql_query(
                "SELECT MAX(COALESCE((SELECT seq FROM sqlite_sequence WHERE name = 'endpoints'), 0), \
                 COALESCE((SELECT MAX(id) FROM endpoints), 0)) + 1 AS id",
            )
            .load(c)?;
            let first = next.first().map_or(1, |i| i.id);
            Ok((first..first + n as i64).collect())
        }
    }
}

/// Inserts whole endpoints, ids included (from [`reserve_ids`]).
pub fn insert_many(conn: &mut AnyConnection, list: &[&Endpoint]) -> QueryResult<usize> {
    let rows: Vec<_> = list
        .iter()
        .map(|e| {
            row![
                e.id,
                e.mac.as_deref(),
                &e.mac_vendor,
                &e.ip,
                &e.hostname,
                &e.fqdn,
                &e.os_name,
                &e.os_version,
                &e.os_build,
                &e.dhcp_vendor_class,
                &e.dhcp_params,
                &e.user_agent,
                &e.profile,
                e.match_score,
                e.risk_level,
                &e.sources,
                &e.custom_data,
                e.first_seen,
                e.last_seen,
                e.created_at,
                e.updated_at,
                &e.other_profiles,
                &e.profile_reason,
            ]
        })
        .collect();
    let inserted = execute_values(
        conn,
        "INSERT INTO endpoints (id, mac, mac_vendor, ip, hostname, fqdn, os_name, os_version, os_build, \
         dhcp_vendor_class, dhcp_params, user_agent, profile, match_score, risk_level, sources, custom_data, \
         first_seen, last_seen, created_at, updated_at, other_profiles, profile_reason)",
        "",
        &rows,
    )?;
    let created: Vec<_> =
        list.iter().map(|e| (e.id, e.hostname.as_str(), e.mac.as_deref(), e.ip.as_str(), e.sources.as_str())).collect();
    record_created(conn, &created)?;
    Ok(inserted)
}

/// The `endpoint.created` events of new endpoints (id, host name, MAC, IP, sources), on the
/// connection of their insert, so in its transaction (the outbox, `db::models::events`). Each
/// of the three ways an endpoint is created (observations, a Defender import, a review) calls it.
fn record_created(conn: &mut AnyConnection, created: &[(i64, &str, Option<&str>, &str, &str)]) -> QueryResult<usize> {
    let events: Vec<events::NewEvent> = created
        .iter()
        .map(|&(id, hostname, mac, ip, sources)| {
            let name = [hostname, mac.unwrap_or(""), ip].into_iter().find(|n| !n.is_empty()).unwrap_or("an endpoint");
            let data = serde_json::json!({ "hostname": hostname, "mac": mac, "ip": ip, "sources": sources });
            (Some(id), format!("New endpoint {name}"), data)
        })
        .collect();
    events::record_with(conn, events::kinds::ENDPOINT_CREATED, &events)
}

/// Writes what an integration's import sets of these endpoints: what it reports (OS, names,
/// address, last seen, sources, `updated_at`) and what modeling made of it (profile outcome,
/// overall risk). One endpoint at most once.
pub fn update_imported_many(conn: &mut AnyConnection, list: &[&Endpoint]) -> QueryResult<usize> {
    let rows: Vec<_> = list
        .iter()
        .map(|e| {
            row![
                e.id,
                &e.os_name,
                &e.os_version,
                &e.os_build,
                &e.hostname,
                &e.fqdn,
                &e.ip,
                e.last_seen,
                &e.sources,
                e.updated_at,
                &e.profile,
                e.match_score,
                &e.other_profiles,
                &e.profile_reason,
                e.risk_level,
            ]
        })
        .collect();
    update_by_id(
        conn,
        "endpoints",
        "os_name = v.column2, os_version = v.column3, os_build = v.column4, hostname = v.column5, \
         fqdn = v.column6, ip = v.column7, last_seen = v.column8, sources = v.column9, updated_at = v.column10, \
         profile = v.column11, match_score = v.column12, other_profiles = v.column13, profile_reason = v.column14, \
         risk_level = v.column15",
        &rows,
    )
}

/// What modeling decided for an endpoint: its profile, the match score, the other matching
/// profiles (JSON) and the reason.
#[derive(Debug, Clone, PartialEq)]
pub struct ProfileOutcome {
    pub id: i64,
    pub profile: String,
    pub score: i16,
    pub others: String,
    pub reason: String,
}

pub fn set_profiles_many(conn: &mut AnyConnection, outcomes: &[ProfileOutcome]) -> QueryResult<usize> {
    let rows: Vec<_> = outcomes.iter().map(|o| row![o.id, &o.profile, o.score, &o.others, &o.reason]).collect();
    update_by_id(
        conn,
        "endpoints",
        "profile = v.column2, match_score = v.column3, other_profiles = v.column4, profile_reason = v.column5",
        &rows,
    )
}

pub fn ips(conn: &mut AnyConnection, id: i64) -> QueryResult<Vec<EndpointIp>> {
    engine_query!(conn, |c| endpoint_ips::table
        .filter(endpoint_ips::endpoint_id.eq(id))
        .order(endpoint_ips::last_seen.desc())
        .limit(100)
        .select(EndpointIp::as_select())
        .load(c))
}

pub fn history(conn: &mut AnyConnection, id: i64, limit: i64) -> QueryResult<Vec<HistoryEntry>> {
    engine_query!(conn, |c| endpoint_history::table
        .filter(endpoint_history::endpoint_id.eq(id))
        .order(endpoint_history::id.desc())
        .limit(limit)
        .select(HistoryEntry::as_select())
        .load(c))
}

/// Up to `limit` endpoints after the id `after`, by id (a re-model walks every endpoint so).
pub fn page_after(conn: &mut AnyConnection, after: i64, limit: i64) -> QueryResult<Vec<Endpoint>> {
    endpoints::table
        .filter(endpoints::id.gt(after))
        .order(endpoints::id.asc())
        .limit(limit)
        .select(Endpoint::as_select())
        .load(conn)
}

/// When each endpoint first seen at `since` or later was first seen.
/// How many endpoints were first seen on each of `days` UTC days from the one starting at
/// `from` (Unix seconds): one range count per day on the `first_seen` index, so that a
/// million endpoints are counted, never read.
pub fn first_seen_per_day(conn: &mut AnyConnection, from: i64, days: i64) -> QueryResult<Vec<i64>> {
    (0..days)
        .map(|d| {
            let start = from + d * 86_400;
            endpoints::table
                .filter(endpoints::first_seen.ge(start))
                .filter(endpoints::first_seen.lt(start + 86_400))
                .count()
                .get_result(conn)
        })
        .collect()
}

/// Endpoints per source (network, defender, ...).
pub fn count_by_source(conn: &mut AnyConnection) -> QueryResult<Vec<(String, i64)>> {
    endpoint_sources::table
        .group_by(endpoint_sources::source)
        .select((endpoint_sources::source, diesel::dsl::count_star()))
        .load(conn)
}

/// How many sources other than `source` know the endpoint.
pub fn count_other_sources(conn: &mut AnyConnection, endpoint_id: i64, source: &str) -> QueryResult<i64> {
    endpoint_sources::table
        .filter(endpoint_sources::endpoint_id.eq(endpoint_id))
        .filter(endpoint_sources::source.ne(source))
        .count()
        .get_result(conn)
}

/// Removes a source from an endpoint, and the endpoint's list of sources with it.
pub fn remove_source(conn: &mut AnyConnection, endpoint_id: i64, source: &str) -> QueryResult<()> {
    diesel::delete(
        endpoint_sources::table
            .filter(endpoint_sources::endpoint_id.eq(endpoint_id))
            .filter(endpoint_sources::source.eq(source)),
    )
    .execute(conn)?;
    let sources: Vec<String> = endpoint_sources::table
        .filter(endpoint_sources::endpoint_id.eq(endpoint_id))
        .select(endpoint_sources::source)
        .order(endpoint_sources::source.asc())
        .load(conn)?;
    diesel::update(endpoints::table.find(endpoint_id)).set(endpoints::sources.eq(sources.join(","))).execute(conn)?;
    Ok(())
}

/// A new endpoint from what one source alone reported; its id.
pub struct NewEndpoint<'a> {
    pub ip: &'a str,
    pub hostname: &'a str,
    pub fqdn: &'a str,
    pub os_name: &'a str,
    pub os_version: &'a str,
    pub source: &'a str,
    pub first_seen: i64,
    pub last_seen: i64,
}

pub fn insert_one(conn: &mut AnyConnection, e: &NewEndpoint<'_>) -> QueryResult<i64> {
    let t = now();
    let values = (
        endpoints::ip.eq(e.ip),
        endpoints::hostname.eq(e.hostname),
        endpoints::fqdn.eq(e.fqdn),
        endpoints::os_name.eq(e.os_name),
        endpoints::os_version.eq(e.os_version),
        endpoints::sources.eq(e.source),
        endpoints::first_seen.eq(e.first_seen),
        endpoints::last_seen.eq(e.last_seen),
        endpoints::created_at.eq(t),
        endpoints::updated_at.eq(t),
    );
    let id = crate::db::insert_returning_id!(conn, endpoints::table, values, endpoints::id)?;
    record_created(conn, &[(id, e.hostname, None, e.ip, e.source)])?;
    Ok(id)
}

pub fn delete(conn: &mut AnyConnection, id: i64) -> QueryResult<usize> {
    diesel::delete(endpoints::table.find(id)).execute(conn)
}

/// For the endpoints among `ids` that have a MAC, their host name changes since `since`:
/// (endpoint id, old name, new name).
pub fn hostname_changes_since(
    conn: &mut AnyConnection,
    ids: &[i64],
    since: i64,
) -> QueryResult<Vec<(i64, String, String)>> {
    endpoint_history::table
        .inner_join(endpoints::table)
        .filter(endpoint_history::endpoint_id.eq_any(ids.to_vec()))
        .filter(endpoint_history::field.eq("hostname"))
        .filter(endpoint_history::at.ge(since))
        .filter(endpoints::mac.is_not_null())
        .select((endpoint_history::endpoint_id, endpoint_history::old_value, endpoint_history::new_value))
        .load(conn)
}

/// A slice of the inventory by id: the endpoints with `after < id <= upto`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct IdSlice {
    pub after: i64,
    pub upto: i64,
}

/// The next `size` endpoints after id `after`, as a slice; None past the last one.
pub fn slice_after(conn: &mut AnyConnection, after: i64, size: i64) -> QueryResult<Option<IdSlice>> {
    let after_it = endpoints::table.filter(endpoints::id.gt(after));
    let last =
        after_it.order(endpoints::id.asc()).select(endpoints::id).offset(size - 1).first::<i64>(conn).optional()?;
    let upto = match last {
        Some(upto) => Some(upto),
        None => after_it.select(diesel::dsl::max(endpoints::id)).first::<Option<i64>>(conn)?,
    };
    Ok(upto.map(|upto| IdSlice { after, upto }))
}

/// Runs `f` over the whole inventory, [`PASS_SLICE`] endpoints at a time in id order, each slice
/// in a write transaction of its own: a pass over a million endpoints neither holds them all in
/// memory nor keeps every other writer waiting for its whole length.
pub fn in_slices(
    conn: &mut AnyConnection,
    mut f: impl FnMut(&mut AnyConnection, IdSlice) -> QueryResult<()>,
) -> QueryResult<()> {
    let mut after = i64::MIN;
    while let Some(slice) = slice_after(conn, after, PASS_SLICE)? {
        conn.write_transaction(|c| f(c, slice))?;
        after = slice.upto;
    }
    Ok(())
}

/// Endpoints per slice of a whole-inventory pass ([`in_slices`]).
pub const PASS_SLICE: i64 = 20_000;

pub fn count_all(conn: &mut AnyConnection) -> QueryResult<i64> {
    endpoints::table.count().get_result(conn)
}

/// Every endpoint's id, in order (for the benchmarks).
pub fn all_ids(conn: &mut AnyConnection) -> QueryResult<Vec<i64>> {
    endpoints::table.select(endpoints::id).order(endpoints::id).load(conn)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sources_merge_sorted_without_repeats() {
        assert_eq!(merged_sources("", "network"), "network");
        assert_eq!(merged_sources("network", "csv"), "csv,network");
        assert_eq!(merged_sources("csv,network", "network"), "csv,network");
    }
}
