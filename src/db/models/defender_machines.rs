//! Machines imported from Microsoft Defender, linked to the endpoint each one is, with what the
//! Endpoint Summary's Microsoft Defender subtab shows.

use diesel::prelude::*;

use crate::db::schema::{defender_machine_tags, defender_machines};
use crate::db::{AnyConnection, engine_query, now};

#[derive(Debug, Clone, Default, Queryable, Selectable, Insertable, AsChangeset, PartialEq)]
#[diesel(table_name = defender_machines)]
#[diesel(treat_none_as_null = true)]
// A machine without an endpoint is stored with NULL (the column has no default), which is what
// lets PostgreSQL's COPY take the rows (see `replace_many`).
#[diesel(treat_none_as_default_value = false)]
pub struct DefenderMachine {
    pub machine_id: String,
    pub endpoint_id: Option<i64>,
    pub computer_dns_name: String,
    pub os_platform: String,
    pub os_version: String,
    pub os_build: String,
    /// The Defender client (sensor) version, `agentVersion`; empty when not reported.
    pub agent_version: String,
    pub onboarding_status: String,
    pub health_status: String,
    pub risk_score: String,
    pub exposure_level: String,
    pub last_ip: String,
    /// Normalized MACs, comma-separated.
    pub macs: String,
    pub first_seen: i64,
    pub last_seen: i64,
    pub rbac_group: String,
    /// Defender's machine tags, a JSON array (one row each in `defender_machine_tags` too).
    pub tags: String,
    pub vuln_count: i32,
    pub top_vuln_cve: String,
    pub top_vuln_severity: i16,
    pub top_vuln_description: String,
    pub top_alert_id: String,
    pub top_alert_severity: i16,
    pub top_alert_title: String,
    pub isolated: bool,
    pub stale: bool,
    pub stale_reason: String,
    pub match_note: String,
    pub content_hash: String,
    pub updated_at: i64,
    /// The machine's software vulnerabilities as Defender reports them (see
    /// `defender::machine::VulnerabilityRows`): what a vulnerability delta applies to.
    pub vuln_rows: String,
    /// Beside `isolated`, what Defender's machine actions say of it, as JSON
    /// (`defender::machine::Isolation`): shown, never queried.
    pub isolation: String,
}

impl DefenderMachine {
    /// Its Defender tags. (Rows stored before tags were JSON hold them comma-separated, until
    /// the next sync writes them again.)
    pub fn tag_list(&self) -> Vec<String> {
        if self.tags.is_empty() {
            return Vec::new();
        }
        serde_json::from_str(&self.tags)
            .unwrap_or_else(|_| self.tags.split(", ").map(str::to_owned).filter(|t| !t.is_empty()).collect())
    }
}

pub fn find(conn: &mut AnyConnection, machine_id: &str) -> QueryResult<Option<DefenderMachine>> {
    engine_query!(conn, |c| defender_machines::table
        .find(machine_id)
        .select(DefenderMachine::as_select())
        .first(c)
        .optional())
}

/// The Defender machine of an endpoint: the live (not stale) one, else the last seen. An
/// endpoint has one or a few; they are picked here rather than sorted by the database, which
/// sorted the wide rows in a temporary table on every Endpoint Summary page.
pub fn of_endpoint(conn: &mut AnyConnection, endpoint_id: i64) -> QueryResult<Option<DefenderMachine>> {
    Ok(of_endpoints(conn, &[endpoint_id])?.pop().flatten())
}

/// [`of_endpoint`] for several endpoints in one query, in the order of `endpoint_ids`.
pub fn of_endpoints(conn: &mut AnyConnection, endpoint_ids: &[i64]) -> QueryResult<Vec<Option<DefenderMachine>>> {
    let mut by_endpoint: std::collections::HashMap<i64, DefenderMachine> = Default::default();
    for chunk in endpoint_ids.chunks(500) {
        let machines: Vec<DefenderMachine> = engine_query!(conn, |c| defender_machines::table
            .filter(defender_machines::endpoint_id.eq_any(chunk))
            .select(DefenderMachine::as_select())
            .load(c))?;
        for m in machines {
            let Some(id) = m.endpoint_id else { continue };
            let better = |kept: &DefenderMachine| {
                (m.stale, std::cmp::Reverse(m.last_seen)) < (kept.stale, std::cmp::Reverse(kept.last_seen))
            };
            if by_endpoint.get(&id).is_none_or(better) {
                by_endpoint.insert(id, m);
            }
        }
    }
    Ok(endpoint_ids.iter().map(|id| by_endpoint.remove(id)).collect())
}

/// The stored machines with these ids.
pub fn find_many(conn: &mut AnyConnection, machine_ids: &[&str]) -> QueryResult<Vec<DefenderMachine>> {
    if machine_ids.is_empty() {
        return Ok(Vec::new());
    }
    defender_machines::table
        .filter(defender_machines::machine_id.eq_any(machine_ids))
        .select(DefenderMachine::as_select())
        .load(conn)
}

/// Stores whole machines, replacing those stored before: one DELETE, then the rows (a COPY on
/// PostgreSQL, multi-row INSERTs on SQLite; nothing refers to a machine's row, so replacing it is an
/// update).
pub fn replace_many(conn: &mut AnyConnection, machines: &[DefenderMachine]) -> QueryResult<()> {
    if machines.is_empty() {
        return Ok(());
    }
    let ids: Vec<&str> = machines.iter().map(|m| m.machine_id.as_str()).collect();
    diesel::delete(defender_machines::table.filter(defender_machines::machine_id.eq_any(&ids))).execute(conn)?;
    diesel::delete(defender_machine_tags::table.filter(defender_machine_tags::machine_id.eq_any(&ids)))
        .execute(conn)?;
    match conn {
        // One COPY: no statement of 32,000 values to bind, parse and plan at every batch (it
        // took 3.6 s of a 100,000-machine import's write phase, against 1.6 s for the same rows
        // by INSERT … SELECT).
        AnyConnection::Postgresql(c) => {
            diesel::copy_from(defender_machines::table).from_insertable(machines).execute(c)?;
        }
        // 32 columns (also diesel's limit for a table without its 64-column feature): 1,000
        // rows stay under SQLite's 32,766 bound values.
        AnyConnection::Sqlite(c) => {
            for chunk in machines.chunks(1000) {
                diesel::insert_into(defender_machines::table).values(chunk).execute(c)?;
            }
        }
    }
    let tags: Vec<_> = machines
        .iter()
        .flat_map(|m| {
            m.tag_list().into_iter().map(|tag| {
                (defender_machine_tags::machine_id.eq(m.machine_id.clone()), defender_machine_tags::tag.eq(tag))
            })
        })
        .collect();
    for chunk in tags.chunks(5000) {
        engine_query!(conn, |c| diesel::insert_into(defender_machine_tags::table).values(chunk).execute(c))?;
    }
    Ok(())
}

/// The tags Defender's machines carry, for the filter drop-downs (the most common first, at most
/// `limit`).
pub fn distinct_tags(conn: &mut AnyConnection, limit: i64) -> QueryResult<Vec<String>> {
    use diesel::dsl::count_star;
    let mut tags: Vec<(String, i64)> = defender_machine_tags::table
        .group_by(defender_machine_tags::tag)
        .select((defender_machine_tags::tag, count_star()))
        .order((count_star().desc(), defender_machine_tags::tag.asc()))
        .limit(limit)
        .load(conn)?;
    tags.sort_by(|a, b| a.0.cmp(&b.0));
    Ok(tags.into_iter().map(|(t, _)| t).collect())
}

/// Marks every live machine that the sync just fetched did not report (it is not among the
/// staged machines) as stale: it left Defender. Returns how many.
///
/// `NOT EXISTS`, not `NOT IN`: PostgreSQL runs `NOT IN (subquery)` as an anti-join only when the
/// subquery's rows fit in `work_mem`, and otherwise scans them again for every machine — at
/// 100,000 machines, minutes. `NOT EXISTS` is a hash anti-join there, and on SQLite a probe of
/// the staged machine ids' unique index.
/// How many live (not stale) machines there are, and how many of them the staged listing does
/// not name: what [`mark_missing_stale`] would mark.
pub fn missing_from_staged(conn: &mut AnyConnection) -> QueryResult<(i64, i64)> {
    use crate::db::schema::defender_sync_staging as staged;
    let live = count(conn, false)?;
    let reported = staged::table.filter(staged::machine_id.eq(defender_machines::machine_id));
    let missing = defender_machines::table
        .filter(defender_machines::stale.eq(false))
        .filter(diesel::dsl::not(diesel::dsl::exists(reported)))
        .count()
        .get_result(conn)?;
    Ok((live, missing))
}

pub fn mark_missing_stale(conn: &mut AnyConnection) -> QueryResult<i64> {
    use crate::db::schema::defender_sync_staging as staged;
    let reported = staged::table.filter(staged::machine_id.eq(defender_machines::machine_id));
    let n = diesel::update(
        defender_machines::table
            .filter(defender_machines::stale.eq(false))
            .filter(diesel::dsl::not(diesel::dsl::exists(reported))),
    )
    .set((
        defender_machines::stale.eq(true),
        defender_machines::stale_reason.eq("no longer reported by Microsoft Defender"),
        defender_machines::updated_at.eq(now()),
    ))
    .execute(conn)?;
    Ok(n as i64)
}

/// Links a machine to an endpoint by a person's decision (`note` says which), and forgets what
/// the machine last wrote, so that the next import writes it all to the endpoint.
pub fn link(conn: &mut AnyConnection, machine_id: &str, endpoint_id: i64, note: &str) -> QueryResult<usize> {
    diesel::update(defender_machines::table.find(machine_id))
        .set((
            defender_machines::endpoint_id.eq(Some(endpoint_id)),
            defender_machines::match_note.eq(note),
            defender_machines::content_hash.eq(""),
            defender_machines::updated_at.eq(now()),
        ))
        .execute(conn)
}

/// Machines linked to an endpoint (`live_only`: those that are not stale).
pub fn count_linked(conn: &mut AnyConnection, endpoint_id: i64, live_only: bool) -> QueryResult<i64> {
    let mut q = defender_machines::table.filter(defender_machines::endpoint_id.eq(endpoint_id)).into_boxed();
    if live_only {
        q = q.filter(defender_machines::stale.eq(false));
    }
    q.count().get_result(conn)
}

/// Every machine forgets what it last wrote (the next import writes everything again).
pub fn forget_content_hashes(conn: &mut AnyConnection) -> QueryResult<usize> {
    diesel::update(defender_machines::table).set(defender_machines::content_hash.eq("")).execute(conn)
}

/// Records an isolation or a release that this product's action completed (`details` as in
/// [`DefenderMachine::isolation`]); the next sync reads it back from Defender's machine actions.
pub fn set_isolated(conn: &mut AnyConnection, machine_id: &str, isolated: bool, details: &str) -> QueryResult<usize> {
    diesel::update(defender_machines::table.find(machine_id))
        .set((defender_machines::isolated.eq(isolated), defender_machines::isolation.eq(details)))
        .execute(conn)
}

/// Why an import could not decide which endpoint a machine is: the notes a person must look at
/// start with this (`import`: several endpoints share its name).
pub const AMBIGUOUS: &str = "ambiguous:";
/// A machine that matched no network endpoint and became an endpoint of its own (normal: most
/// machines of a large tenant do).
pub const UNMATCHED: &str = "unmatched:";

use super::lower;

/// A LIKE pattern for values that start with `search`, in lower case (`%` alone when empty).
fn starts_with(search: &str) -> String {
    let s = search.trim().to_lowercase();
    format!("{}%", s.replace('\\', "\\\\").replace('%', "\\%").replace('_', "\\_"))
}

/// The live machines whose note starts with `$prefix` and whose name, address or id starts with
/// the `$pattern` of [`starts_with`].
macro_rules! noted {
    ($prefix:expr, $pattern:expr) => {
        defender_machines::table
            .filter(defender_machines::stale.eq(false))
            .filter(defender_machines::match_note.like(format!("{}%", $prefix)))
            .filter(
                lower(defender_machines::computer_dns_name)
                    .like($pattern.clone())
                    .escape('\\')
                    .or(defender_machines::last_ip.like($pattern.clone()).escape('\\'))
                    .or(lower(defender_machines::machine_id).like($pattern.clone()).escape('\\')),
            )
    };
}

/// One page of the machines a person must decide about (ambiguous matches), by name, and how
/// many there are in all.
pub fn review_queue(
    conn: &mut AnyConnection,
    search: &str,
    offset: i64,
    limit: i64,
) -> QueryResult<(Vec<DefenderMachine>, i64)> {
    let pattern = starts_with(search);
    engine_query!(conn, |c| {
        let total = noted!(AMBIGUOUS, pattern).count().get_result(c)?;
        let page = noted!(AMBIGUOUS, pattern)
            .order((defender_machines::computer_dns_name.asc(), defender_machines::machine_id.asc()))
            .offset(offset)
            .limit(limit)
            .select(DefenderMachine::as_select())
            .load(c)?;
        Ok((page, total))
    })
}

/// How many live machines matched no network endpoint (each became an endpoint of its own).
pub fn count_unmatched(conn: &mut AnyConnection) -> QueryResult<i64> {
    let pattern = starts_with("");
    engine_query!(conn, |c| noted!(UNMATCHED, pattern).count().get_result(c))
}

pub fn count(conn: &mut AnyConnection, stale: bool) -> QueryResult<i64> {
    defender_machines::table.filter(defender_machines::stale.eq(stale)).count().get_result(conn)
}
