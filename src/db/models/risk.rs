//! Risk factors: one row per endpoint and assessment source.

use diesel::prelude::*;

use crate::db::schema::{endpoints, risk_factors};
use crate::db::{AnyConnection, engine_query, now};

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
    let existing: Option<(i16, String, String)> = risk_factors::table
        .find((endpoint_id, source))
        .select((risk_factors::level, risk_factors::summary, risk_factors::details))
        .first(conn)
        .optional()?;
    let changed = match (&existing, factor) {
        (None, None) => false,
        (Some(_), None) => {
            diesel::delete(risk_factors::table.find((endpoint_id, source))).execute(conn)?;
            true
        }
        (Some((l, s, d)), Some((level, summary, details))) if *l == level && s == summary && d == details => false,
        (Some(_), Some((level, summary, details))) => {
            diesel::update(risk_factors::table.find((endpoint_id, source)))
                .set((
                    risk_factors::level.eq(level),
                    risk_factors::summary.eq(summary),
                    risk_factors::details.eq(details),
                    risk_factors::updated_at.eq(now()),
                ))
                .execute(conn)?;
            true
        }
        (None, Some((level, summary, details))) => {
            diesel::insert_into(risk_factors::table)
                .values((
                    risk_factors::endpoint_id.eq(endpoint_id),
                    risk_factors::source.eq(source),
                    risk_factors::level.eq(level),
                    risk_factors::summary.eq(summary),
                    risk_factors::details.eq(details),
                    risk_factors::updated_at.eq(now()),
                ))
                .execute(conn)?;
            true
        }
    };
    if changed {
        refresh_overall(conn, endpoint_id)?;
    }
    Ok(changed)
}

/// The overall risk is the highest factor (0, None, when there is none).
pub fn refresh_overall(conn: &mut AnyConnection, endpoint_id: i64) -> QueryResult<usize> {
    let max: Option<i16> = risk_factors::table
        .filter(risk_factors::endpoint_id.eq(endpoint_id))
        .select(diesel::dsl::max(risk_factors::level))
        .first(conn)?;
    diesel::update(endpoints::table.find(endpoint_id).filter(endpoints::risk_level.ne(max.unwrap_or(0))))
        .set(endpoints::risk_level.eq(max.unwrap_or(0)))
        .execute(conn)
}

/// Endpoints per overall risk level.
pub fn level_counts(conn: &mut AnyConnection) -> QueryResult<Vec<(i16, i64)>> {
    endpoints::table
        .group_by(endpoints::risk_level)
        .select((endpoints::risk_level, diesel::dsl::count_star()))
        .load(conn)
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
