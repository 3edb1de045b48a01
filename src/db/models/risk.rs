//! Risk factors: one row per endpoint and assessment source.

use std::collections::HashMap;

use diesel::prelude::*;

use crate::db::batch::{delete_pairs, execute_values, id_list, row};
use crate::db::models::events;
use crate::db::schema::{endpoints, risk_factors};
use crate::db::{AnyConnection, engine_query, now};
use crate::domain::risk::RiskLevel;

/// A factor's level, summary and details, as stored.
pub type FactorValue = (i16, String, String);

#[derive(Debug, Clone, Queryable, Selectable)]
#[diesel(table_name = risk_factors)]
pub struct RiskFactorRow {
    pub endpoint_id: i64,
    pub source: String,
    pub level: i16,
    pub summary: String,
    pub details: String,
    pub updated_at: i64,
}

pub fn of(conn: &mut AnyConnection, endpoint_id: i64) -> QueryResult<Vec<RiskFactorRow>> {
    // One row per source (a handful): sorted here rather than in a temporary table of the database.
    let mut rows: Vec<RiskFactorRow> = engine_query!(conn, |c| risk_factors::table
        .filter(risk_factors::endpoint_id.eq(endpoint_id))
        .select(RiskFactorRow::as_select())
        .load(c))?;
    rows.sort_by(|a, b| b.level.cmp(&a.level).then_with(|| a.source.cmp(&b.source)));
    Ok(rows)
}

/// Sets (or, with `None`, clears) one source's factor, then the endpoint's overall level, which
/// is stored for fast filtering and sorting. Writes nothing when nothing changed.
pub fn set(
    conn: &mut AnyConnection,
    endpoint_id: i64,
    source: &str,
    factor: Option<(i16, &str, &str)>,
) -> QueryResult<bool> {
    let factor = factor.map(|(l, s, d)| (l, s.to_owned(), d.to_owned()));
    Ok(set_many(conn, &[(endpoint_id, source, factor)])? > 0)
}

/// Sets or clears many factors, (endpoint, source, factor), each pair at most once, then the
/// overall level of the endpoints whose factors changed; returns how many factors changed.
/// Reads the current factors in one query and writes only the differences.
pub fn set_many(conn: &mut AnyConnection, factors: &[(i64, &str, Option<FactorValue>)]) -> QueryResult<usize> {
    if factors.is_empty() {
        return Ok(0);
    }
    let mut ids: Vec<i64> = factors.iter().map(|f| f.0).collect();
    ids.sort_unstable();
    ids.dedup();
    let mut sources: Vec<&str> = factors.iter().map(|f| f.1).collect();
    sources.sort_unstable();
    sources.dedup();
    let known = of_many(conn, &ids, &sources)?;
    let t = now();
    let (mut upserts, mut deletes, mut changed) = (Vec::new(), Vec::new(), Vec::new());
    for (id, source, factor) in factors {
        let current = known.get(&(*id, (*source).to_owned()));
        match (current, factor) {
            (None, None) => continue,
            (Some(_), None) => deletes.push(row![*id, *source]),
            (Some(c), Some(f)) if c == f => continue,
            (_, Some((level, summary, details))) => upserts.push(row![*id, *source, *level, summary, details, t]),
        }
        changed.push((*id, *source));
    }
    execute_values(
        conn,
        "INSERT INTO risk_factors (endpoint_id, source, level, summary, details, updated_at)",
        "ON CONFLICT (endpoint_id, source) DO UPDATE SET level = excluded.level, summary = excluded.summary, \
         details = excluded.details, updated_at = excluded.updated_at",
        &upserts,
    )?;
    delete_pairs(conn, "risk_factors", (risk_factors::endpoint_id, risk_factors::source), &deletes)?;
    let mut causes: HashMap<i64, Vec<String>> = HashMap::new();
    for (id, source) in &changed {
        causes.entry(*id).or_default().push((*source).to_owned());
    }
    let mut ids: Vec<i64> = causes.keys().copied().collect();
    ids.sort_unstable();
    refresh_overall(conn, &ids, &causes)?;
    Ok(upserts.len() + deletes.len())
}

/// Deletes every factor of these sources and stores again the overall level of the endpoints
/// that had one, naming the deleted sources as the cause of each level that fell; returns how
/// many endpoints' levels moved.
pub fn delete_sources(conn: &mut AnyConnection, sources: &[&str]) -> QueryResult<usize> {
    conn.write_transaction(|conn| {
        let affected: Vec<i64> = risk_factors::table
            .filter(risk_factors::source.eq_any(sources))
            .select(risk_factors::endpoint_id)
            .distinct()
            .load(conn)?;
        diesel::delete(risk_factors::table.filter(risk_factors::source.eq_any(sources))).execute(conn)?;
        let deleted: Vec<String> = sources.iter().map(|s| (*s).to_owned()).collect();
        let causes: HashMap<i64, Vec<String>> = affected.iter().map(|id| (*id, deleted.clone())).collect();
        refresh_overall(conn, &affected, &causes)
    })
}

#[derive(QueryableByName)]
struct Moved {
    #[diesel(sql_type = diesel::sql_types::BigInt)]
    id: i64,
    #[diesel(sql_type = diesel::sql_types::SmallInt)]
    old: i16,
    #[diesel(sql_type = diesel::sql_types::SmallInt)]
    new: i16,
    /// The source and summary of the highest factor now (empty when none is left).
    #[diesel(sql_type = diesel::sql_types::Text)]
    top_source: String,
    #[diesel(sql_type = diesel::sql_types::Text)]
    top_summary: String,
}

/// Stores the overall risk level of these endpoints again: their highest factor (0, None, when
/// they have none). Writes only the endpoints whose level moved, and for each a
/// `risk.level_changed` event (the outbox) with the old and new levels and the factor that
/// caused it: for a level that fell, the sources that changed (`causes`: a factor gone or
/// lower, which only the caller knows); for a level that rose, the highest factor now. Its own
/// transaction (a savepoint in the caller's), so that the levels read are the levels changed.
fn refresh_overall(
    conn: &mut AnyConnection,
    endpoint_ids: &[i64],
    causes: &HashMap<i64, Vec<String>>,
) -> QueryResult<usize> {
    const HIGHEST: &str = "COALESCE((SELECT MAX(level) FROM risk_factors r WHERE r.endpoint_id = endpoints.id), 0)";
    const TOP: &str = "FROM risk_factors r WHERE r.endpoint_id = endpoints.id ORDER BY r.level DESC, r.source LIMIT 1";
    conn.write_transaction(|conn| {
        let mut updated = 0;
        for chunk in endpoint_ids.chunks(1000) {
            let ids = id_list(chunk);
            let moved: Vec<Moved> = diesel::sql_query(format!(
                "SELECT id, risk_level AS old, CAST({HIGHEST} AS SMALLINT) AS new, \
                 COALESCE((SELECT r.source {TOP}), '') AS top_source, COALESCE((SELECT r.summary {TOP}), '') AS top_summary \
                 FROM endpoints WHERE id IN ({ids}) AND risk_level <> {HIGHEST}"
            ))
            .load(conn)?;
            if moved.is_empty() {
                continue;
            }
            let sql =
                format!("UPDATE endpoints SET risk_level = {HIGHEST} WHERE id IN ({ids}) AND risk_level <> {HIGHEST}");
            updated += diesel::sql_query(sql).execute(conn)?;
            let events: Vec<events::NewEvent> = moved
                .into_iter()
                .map(|m| {
                    let factor = match causes.get(&m.id) {
                        Some(sources) if m.new < m.old || m.top_source.is_empty() => sources.join(", "),
                        _ => m.top_source.clone(),
                    };
                    let (old, new) = (RiskLevel::label_of(m.old), RiskLevel::label_of(m.new));
                    let direction = if m.new > m.old { "rose" } else { "fell" };
                    let message = format!("Risk {direction} from {old} to {new} ({factor})");
                    let data = serde_json::json!({
                        "old": old, "new": new, "level": m.old.max(m.new),
                        "factor": factor, "summary": m.top_summary,
                    });
                    (Some(m.id), message, data)
                })
                .collect();
            events::record_with(conn, events::kinds::RISK_CHANGED, &events)?;
        }
        Ok(updated)
    })
}

/// Endpoints per overall risk level.
pub fn level_counts(conn: &mut AnyConnection) -> QueryResult<Vec<(i16, i64)>> {
    endpoints::table
        .group_by(endpoints::risk_level)
        .select((endpoints::risk_level, diesel::dsl::count_star()))
        .load(conn)
}

/// The level of every factor of one source on the endpoints of `slice`, by endpoint.
pub fn levels_of_source(
    conn: &mut AnyConnection,
    source: &str,
    slice: crate::db::models::endpoints::IdSlice,
) -> QueryResult<std::collections::HashMap<i64, i16>> {
    let rows: Vec<(i64, i16)> = risk_factors::table
        .filter(risk_factors::endpoint_id.gt(slice.after).and(risk_factors::endpoint_id.le(slice.upto)))
        .filter(risk_factors::source.eq(source))
        .select((risk_factors::endpoint_id, risk_factors::level))
        .load(conn)?;
    Ok(rows.into_iter().collect())
}

/// The factors of these sources for many endpoints at once, keyed by (endpoint, source).
pub fn of_many(
    conn: &mut AnyConnection,
    endpoint_ids: &[i64],
    sources: &[&str],
) -> QueryResult<std::collections::HashMap<(i64, String), FactorValue>> {
    let rows: Vec<(i64, String, i16, String, String)> = risk_factors::table
        .filter(risk_factors::endpoint_id.eq_any(endpoint_ids.to_vec()))
        .filter(risk_factors::source.eq_any(sources.iter().map(|s| s.to_string()).collect::<Vec<_>>()))
        .select((
            risk_factors::endpoint_id,
            risk_factors::source,
            risk_factors::level,
            risk_factors::summary,
            risk_factors::details,
        ))
        .load(conn)?;
    Ok(rows.into_iter().map(|(id, s, l, su, d)| ((id, s), (l, su, d))).collect())
}
