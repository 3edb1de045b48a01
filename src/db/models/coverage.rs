//! The `coverage_gaps` table (one row per endpoint with an EDR coverage gap) and the facts the
//! coverage rules (`domain::coverage`) read from the inventory.

use std::collections::HashMap;

use diesel::prelude::*;

use crate::db::AnyConnection;
use crate::db::batch::{execute_values, id_list, row};
use crate::db::models::endpoints::IdSlice;
use crate::db::schema::{coverage_gaps, defender_machines, endpoint_sources, endpoints, profiles};
use crate::domain::coverage::{EndpointFacts, MachineState};

/// The source name Defender's imports record on endpoints: every other source is "the network".
const DEFENDER_SOURCE: &str = "defender";

#[derive(Debug, Clone, PartialEq, Eq, Queryable, Selectable)]
#[diesel(table_name = coverage_gaps)]
pub struct GapRow {
    pub endpoint_id: i64,
    pub kind: String,
    pub detail: String,
    pub since: i64,
}

/// What the coverage rules need of the endpoints of `slice`, in three reads (endpoints with
/// their profile's category, the last non-Defender sighting, the live Defender machines).
pub fn facts(conn: &mut AnyConnection, slice: IdSlice) -> QueryResult<Vec<EndpointFacts>> {
    let rows: Vec<(i64, String, String, Option<String>)> = endpoints::table
        .filter(endpoints::id.gt(slice.after).and(endpoints::id.le(slice.upto)))
        .left_join(profiles::table.on(profiles::name.eq(endpoints::profile)))
        .select((endpoints::id, endpoints::profile, endpoints::os_name, profiles::category.nullable()))
        .load(conn)?;
    let network: HashMap<i64, i64> = endpoint_sources::table
        .filter(endpoint_sources::endpoint_id.gt(slice.after).and(endpoint_sources::endpoint_id.le(slice.upto)))
        .filter(endpoint_sources::source.ne(DEFENDER_SOURCE))
        .group_by(endpoint_sources::endpoint_id)
        .select((endpoint_sources::endpoint_id, diesel::dsl::max(endpoint_sources::last_seen)))
        .load::<(i64, Option<i64>)>(conn)?
        .into_iter()
        .filter_map(|(id, t)| Some((id, t?)))
        .collect();
    let mut machines: HashMap<i64, MachineState> = HashMap::new();
    let live: Vec<(Option<i64>, String, String, i64)> = defender_machines::table
        .filter(defender_machines::endpoint_id.gt(slice.after).and(defender_machines::endpoint_id.le(slice.upto)))
        .filter(defender_machines::stale.eq(false))
        .select((
            defender_machines::endpoint_id,
            defender_machines::onboarding_status,
            defender_machines::health_status,
            defender_machines::last_seen,
        ))
        .load(conn)?;
    for (id, onboarding_status, health_status, last_seen) in live {
        let Some(id) = id else { continue };
        let m = MachineState { onboarding_status, health_status, last_seen };
        // Several live machines on one endpoint: the one Defender saw last speaks for it.
        if machines.get(&id).is_none_or(|known| known.last_seen < m.last_seen) {
            machines.insert(id, m);
        }
    }
    Ok(rows
        .into_iter()
        .map(|(endpoint_id, profile, os_name, category)| EndpointFacts {
            endpoint_id,
            profile,
            profile_category: category.unwrap_or_default(),
            os_name,
            network_last_seen: network.get(&endpoint_id).copied(),
            machine: machines.remove(&endpoint_id),
        })
        .collect())
}

/// The stored gaps of the endpoints of `slice`, by endpoint.
pub fn all(conn: &mut AnyConnection, slice: IdSlice) -> QueryResult<HashMap<i64, GapRow>> {
    let rows: Vec<GapRow> = coverage_gaps::table
        .filter(coverage_gaps::endpoint_id.gt(slice.after).and(coverage_gaps::endpoint_id.le(slice.upto)))
        .select(GapRow::as_select())
        .load(conn)?;
    Ok(rows.into_iter().map(|g| (g.endpoint_id, g)).collect())
}

/// Writes these gaps (new or changed) and removes the gaps of `closed` endpoints.
pub fn apply(conn: &mut AnyConnection, upserts: &[GapRow], closed: &[i64]) -> QueryResult<()> {
    let rows: Vec<_> =
        upserts.iter().map(|g| row![g.endpoint_id, g.kind.as_str(), g.detail.as_str(), g.since]).collect();
    execute_values(
        conn,
        "INSERT INTO coverage_gaps (endpoint_id, kind, detail, since)",
        "ON CONFLICT (endpoint_id) DO UPDATE SET kind = excluded.kind, detail = excluded.detail, since = excluded.since",
        &rows,
    )?;
    for chunk in closed.chunks(1000) {
        diesel::sql_query(format!("DELETE FROM coverage_gaps WHERE endpoint_id IN ({})", id_list(chunk)))
            .execute(conn)?;
    }
    Ok(())
}

/// Gaps per kind.
pub fn counts(conn: &mut AnyConnection) -> QueryResult<HashMap<String, i64>> {
    let rows: Vec<(String, i64)> = coverage_gaps::table
        .group_by(coverage_gaps::kind)
        .select((coverage_gaps::kind, diesel::dsl::count_star()))
        .load(conn)?;
    Ok(rows.into_iter().collect())
}

/// The gaps of these endpoints.
pub fn of_many(conn: &mut AnyConnection, ids: &[i64]) -> QueryResult<HashMap<i64, GapRow>> {
    let rows: Vec<GapRow> = coverage_gaps::table
        .filter(coverage_gaps::endpoint_id.eq_any(ids.to_vec()))
        .select(GapRow::as_select())
        .load(conn)?;
    Ok(rows.into_iter().map(|g| (g.endpoint_id, g)).collect())
}

/// The longest-open gaps of a kind, with their endpoint's name and address.
pub fn oldest(conn: &mut AnyConnection, kind: &str, n: i64) -> QueryResult<Vec<(GapRow, String, String)>> {
    let rows: Vec<(GapRow, String, String)> = coverage_gaps::table
        .inner_join(endpoints::table)
        .filter(coverage_gaps::kind.eq(kind))
        .order((coverage_gaps::since.asc(), coverage_gaps::endpoint_id.asc()))
        .limit(n)
        .select((GapRow::as_select(), endpoints::hostname, endpoints::ip))
        .load(conn)?;
    Ok(rows)
}
