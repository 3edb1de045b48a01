//! The `risk_history` table: per endpoint and day, its overall risk, Defender exposure and alert
//! levels and vulnerability count, one row per change (see the migration
//! `2026-12-06-000022_risk_history`). An endpoint's value on a day is its latest row on or
//! before that day.

use std::collections::HashMap;

use diesel::prelude::*;
use diesel::sql_types::{BigInt, Integer, SmallInt};

use crate::db::AnyConnection;
use crate::db::batch::{execute_values, row};
use crate::db::models::endpoints::IdSlice;
use crate::db::schema::{defender_machines, endpoints, risk_factors, risk_history};

/// What is recorded of an endpoint on a day.
#[derive(Debug, Clone, PartialEq, Eq, Queryable, Selectable)]
#[diesel(table_name = risk_history)]
pub struct HistoryRow {
    pub endpoint_id: i64,
    pub day: i32,
    pub risk: i16,
    pub exposure: i16,
    pub alert: i16,
    pub vulns: i32,
    pub why: String,
}

impl HistoryRow {
    /// Whether it records the same values as `other` (whatever the day).
    pub fn same_values(&self, other: &HistoryRow) -> bool {
        (self.risk, self.exposure, self.alert, self.vulns, &self.why)
            == (other.risk, other.exposure, other.alert, other.vulns, &other.why)
    }
}

/// The values now of the endpoints of `slice`, as rows of `day`: the overall level; the levels of the risk
/// factors named `exposure_source` and `alert_source` (0 without one); the vulnerabilities of
/// its live Defender machines; the summary of its highest factor.
pub fn current(
    conn: &mut AnyConnection,
    day: i32,
    exposure_source: &str,
    alert_source: &str,
    slice: IdSlice,
) -> QueryResult<Vec<HistoryRow>> {
    let levels: Vec<(i64, i16)> = endpoints::table
        .filter(endpoints::id.gt(slice.after).and(endpoints::id.le(slice.upto)))
        .select((endpoints::id, endpoints::risk_level))
        .load(conn)?;
    let factors: Vec<(i64, String, i16, String)> = risk_factors::table
        .filter(risk_factors::endpoint_id.gt(slice.after).and(risk_factors::endpoint_id.le(slice.upto)))
        .select((risk_factors::endpoint_id, risk_factors::source, risk_factors::level, risk_factors::summary))
        .load(conn)?;
    let vulns: Vec<(Option<i64>, i32)> = defender_machines::table
        .filter(defender_machines::endpoint_id.gt(slice.after).and(defender_machines::endpoint_id.le(slice.upto)))
        .filter(defender_machines::stale.eq(false))
        .select((defender_machines::endpoint_id, defender_machines::vuln_count))
        .load(conn)?;
    let mut rows: HashMap<i64, HistoryRow> = levels
        .into_iter()
        .map(|(id, risk)| {
            let row = HistoryRow { endpoint_id: id, day, risk, exposure: 0, alert: 0, vulns: 0, why: String::new() };
            (id, row)
        })
        .collect();
    // The highest factor explains the level; ties go to the first source by name, as the Risk
    // tab lists them.
    let mut top: HashMap<i64, (i16, String, String)> = HashMap::new();
    for (id, source, level, summary) in factors {
        let Some(r) = rows.get_mut(&id) else { continue };
        if source == exposure_source {
            r.exposure = level;
        } else if source == alert_source {
            r.alert = level;
        }
        let better = top.get(&id).is_none_or(|(l, s, _)| level > *l || (level == *l && source < *s));
        if level > 0 && better {
            top.insert(id, (level, source, summary));
        }
    }
    for (id, n) in vulns {
        if let Some(r) = id.and_then(|id| rows.get_mut(&id)) {
            r.vulns += n;
        }
    }
    for (id, (_, source, summary)) in top {
        if let Some(r) = rows.get_mut(&id) {
            r.why = clip(&format!("{source}: {summary}"), 200);
        }
    }
    let mut out: Vec<HistoryRow> = rows.into_values().collect();
    out.sort_by_key(|r| r.endpoint_id);
    Ok(out)
}

fn clip(s: &str, max: usize) -> String {
    match s.char_indices().nth(max) {
        Some((i, _)) => format!("{}…", &s[..i]),
        None => s.to_owned(),
    }
}

/// The latest row of each endpoint of `slice`.
pub fn latest(conn: &mut AnyConnection, slice: IdSlice) -> QueryResult<HashMap<i64, HistoryRow>> {
    // The bounds are integers of our own, written into the text: the one way to bind them that
    // both engines' placeholders (`?`, `$1`) accept.
    let IdSlice { after, upto } = slice;
    let rows: Vec<HistoryRow> = diesel::sql_query(format!(
        "SELECT h.endpoint_id, h.day, h.risk, h.exposure, h.alert, h.vulns, h.why FROM risk_history h \
         JOIN (SELECT endpoint_id, MAX(day) AS day FROM risk_history \
         WHERE endpoint_id > {after} AND endpoint_id <= {upto} GROUP BY endpoint_id) m \
         ON m.endpoint_id = h.endpoint_id AND m.day = h.day"
    ))
    .load::<LatestRow>(conn)?
    .into_iter()
    .map(HistoryRow::from)
    .collect();
    Ok(rows.into_iter().map(|r| (r.endpoint_id, r)).collect())
}

#[derive(QueryableByName)]
struct LatestRow {
    #[diesel(sql_type = BigInt)]
    endpoint_id: i64,
    #[diesel(sql_type = Integer)]
    day: i32,
    #[diesel(sql_type = SmallInt)]
    risk: i16,
    #[diesel(sql_type = SmallInt)]
    exposure: i16,
    #[diesel(sql_type = SmallInt)]
    alert: i16,
    #[diesel(sql_type = Integer)]
    vulns: i32,
    #[diesel(sql_type = diesel::sql_types::Text)]
    why: String,
}

impl From<LatestRow> for HistoryRow {
    fn from(r: LatestRow) -> Self {
        Self {
            endpoint_id: r.endpoint_id,
            day: r.day,
            risk: r.risk,
            exposure: r.exposure,
            alert: r.alert,
            vulns: r.vulns,
            why: r.why,
        }
    }
}

/// Inserts these rows, replacing a row of the same endpoint and day.
pub fn upsert(conn: &mut AnyConnection, rows: &[HistoryRow]) -> QueryResult<usize> {
    let values: Vec<_> = rows
        .iter()
        .map(|r| row![r.endpoint_id, i64::from(r.day), r.risk, r.exposure, r.alert, i64::from(r.vulns), r.why.as_str()])
        .collect();
    execute_values(
        conn,
        "INSERT INTO risk_history (endpoint_id, day, risk, exposure, alert, vulns, why)",
        "ON CONFLICT (endpoint_id, day) DO UPDATE SET risk = excluded.risk, exposure = excluded.exposure, \
         alert = excluded.alert, vulns = excluded.vulns, why = excluded.why",
        &values,
    )
}

/// Deletes these (endpoint, day) rows.
pub fn delete(conn: &mut AnyConnection, rows: &[(i64, i32)]) -> QueryResult<usize> {
    let mut n = 0;
    for (id, day) in rows {
        n += diesel::delete(risk_history::table.find((*id, *day))).execute(conn)?;
    }
    Ok(n)
}

/// An endpoint's rows, newest first.
pub fn of_endpoint(conn: &mut AnyConnection, endpoint_id: i64, limit: i64) -> QueryResult<Vec<HistoryRow>> {
    risk_history::table
        .filter(risk_history::endpoint_id.eq(endpoint_id))
        .order(risk_history::day.desc())
        .limit(limit)
        .select(HistoryRow::as_select())
        .load(conn)
}

/// Records how many endpoints have each overall level at the end of `day` (replacing the day's
/// earlier count).
pub fn record_day_counts(conn: &mut AnyConnection, day: i32, counts: [i64; 5]) -> QueryResult<usize> {
    let [none, low, medium, high, critical] = counts;
    execute_values(
        conn,
        "INSERT INTO risk_day_counts (day, none_count, low_count, medium_count, high_count, critical_count)",
        "ON CONFLICT (day) DO UPDATE SET none_count = excluded.none_count, low_count = excluded.low_count, \
         medium_count = excluded.medium_count, high_count = excluded.high_count, \
         critical_count = excluded.critical_count",
        &[row![i64::from(day), none, low, medium, high, critical]],
    )
}

/// Endpoints per overall level at the end of each day from `from` to `to`: `(day, [None, Low,
/// Medium, High, Critical])`. A day without a count of its own (the product was not running)
/// carries the previous day's; days before the first count are zeros.
pub fn level_counts_per_day(conn: &mut AnyConnection, from: i32, to: i32) -> QueryResult<Vec<(i32, [i64; 5])>> {
    use crate::db::schema::risk_day_counts as d;
    type Counted = (i32, i64, i64, i64, i64, i64);
    let columns = (d::day, d::none_count, d::low_count, d::medium_count, d::high_count, d::critical_count);
    let before: Option<Counted> =
        d::table.filter(d::day.lt(from)).order(d::day.desc()).select(columns).first(conn).optional()?;
    let within: Vec<Counted> =
        d::table.filter(d::day.ge(from)).filter(d::day.le(to)).order(d::day.asc()).select(columns).load(conn)?;
    let counts = |r: &Counted| [r.1, r.2, r.3, r.4, r.5];
    let mut current = before.as_ref().map(counts).unwrap_or_default();
    let mut within = within.iter().peekable();
    let mut out = Vec::with_capacity((to - from + 1).max(0) as usize);
    for day in from..=to {
        if let Some(r) = within.next_if(|r| r.0 == day) {
            current = counts(r);
        }
        out.push((day, current));
    }
    Ok(out)
}

/// The endpoints whose overall level rose most since the end of day `since`: (endpoint, host
/// name, level then, level now), the largest rise first. "Then" is the latest row on or before
/// `since`, or for an endpoint first recorded after it, its first row.
pub fn risers(conn: &mut AnyConnection, since: i32, limit: usize) -> QueryResult<Vec<(i64, String, i16, i16)>> {
    // Only an endpoint with an earlier row, or a second row this week, can have risen: one whose
    // only row of the week is its first ever (a whole inventory, the week it arrived) is "then"
    // and "now" at once, and is left in the database.
    let changed: Vec<i64> = diesel::sql_query(format!(
        "SELECT w.endpoint_id FROM (SELECT endpoint_id, COUNT(*) AS n FROM risk_history WHERE day > {since} \
         GROUP BY endpoint_id) w WHERE w.n > 1 OR EXISTS (SELECT 1 FROM risk_history b \
         WHERE b.endpoint_id = w.endpoint_id AND b.day <= {since})"
    ))
    .load::<EndpointId>(conn)?
    .into_iter()
    .map(|r| r.endpoint_id)
    .collect();
    let mut out = Vec::new();
    for chunk in changed.chunks(5_000) {
        // The rows of the week, and each endpoint's latest row on or before `since` (not its
        // whole history).
        let mut rows: Vec<(i64, i32, i16)> = risk_history::table
            .filter(risk_history::endpoint_id.eq_any(chunk.to_vec()))
            .filter(risk_history::day.gt(since))
            .select((risk_history::endpoint_id, risk_history::day, risk_history::risk))
            .load(conn)?;
        let before: Vec<LatestRow> = diesel::sql_query(format!(
            "SELECT h.endpoint_id, h.day, h.risk, h.exposure, h.alert, h.vulns, h.why FROM risk_history h \
             JOIN (SELECT endpoint_id, MAX(day) AS day FROM risk_history WHERE day <= {since} \
             AND endpoint_id IN ({}) GROUP BY endpoint_id) m ON m.endpoint_id = h.endpoint_id AND m.day = h.day",
            crate::db::batch::id_list(chunk)
        ))
        .load(conn)?;
        rows.extend(before.into_iter().map(|r| (r.endpoint_id, r.day, r.risk)));
        rows.sort_unstable_by_key(|r| (r.0, r.1));
        // Rows come by endpoint, oldest first: the first one seen sets "then" unless a later
        // one is still on or before `since`; the last one is "now".
        let mut levels: HashMap<i64, (i16, i16)> = HashMap::new();
        for (id, day, risk) in rows {
            levels
                .entry(id)
                .and_modify(|(then, now)| {
                    if day <= since {
                        *then = risk;
                    }
                    *now = risk;
                })
                .or_insert((risk, risk));
        }
        out.extend(
            levels.into_iter().filter(|(_, (then, now))| now > then).map(|(id, (t, n))| (id, String::new(), t, n)),
        );
    }
    out.sort_by(|a, b| (b.3 - b.2).cmp(&(a.3 - a.2)).then(b.3.cmp(&a.3)).then(a.0.cmp(&b.0)));
    out.truncate(limit);
    let ids: Vec<i64> = out.iter().map(|r| r.0).collect();
    let names: HashMap<i64, String> = endpoints::table
        .filter(endpoints::id.eq_any(ids))
        .select((endpoints::id, endpoints::hostname))
        .load::<(i64, String)>(conn)?
        .into_iter()
        .collect();
    for r in &mut out {
        r.1 = names.get(&r.0).cloned().unwrap_or_default();
    }
    Ok(out)
}

/// Deletes the rows older than `cutoff` that a later row on or before `cutoff` supersedes: what
/// each endpoint was at `cutoff` stays known, everything before it goes (the daily counts too).
pub fn prune(conn: &mut AnyConnection, cutoff: i32) -> QueryResult<usize> {
    use crate::db::schema::risk_day_counts as d;
    diesel::delete(d::table.filter(d::day.lt(cutoff))).execute(conn)?;
    // By slices of endpoints, so that a retention cut after a long time (millions of rows) never
    // holds the write lock for long. `cutoff` and the ids are numbers of ours, written as
    // literals.
    let ids: Vec<i64> = risk_history::table
        .filter(risk_history::day.lt(cutoff))
        .select(risk_history::endpoint_id)
        .distinct()
        .load(conn)?;
    let mut deleted = 0;
    for chunk in ids.chunks(500) {
        deleted += diesel::sql_query(format!(
            "DELETE FROM risk_history WHERE endpoint_id IN ({ids}) AND day < {cutoff} AND EXISTS \
             (SELECT 1 FROM risk_history n WHERE n.endpoint_id = risk_history.endpoint_id \
             AND n.day > risk_history.day AND n.day <= {cutoff})",
            ids = crate::db::batch::id_list(chunk)
        ))
        .execute(conn)?;
    }
    Ok(deleted)
}

/// Rows stored (for the benchmark's size report).
pub fn count(conn: &mut AnyConnection) -> QueryResult<i64> {
    risk_history::table.count().get_result(conn)
}

#[derive(QueryableByName)]
struct EndpointId {
    #[diesel(sql_type = BigInt)]
    endpoint_id: i64,
}

#[derive(QueryableByName)]
struct Bytes {
    #[diesel(sql_type = BigInt)]
    n: i64,
}

/// The bytes the table and its index take on disk (for the benchmark): SQLite's `dbstat`
/// pages, PostgreSQL's total relation size.
pub fn storage_bytes(conn: &mut AnyConnection) -> QueryResult<i64> {
    let sql = match conn {
        AnyConnection::Sqlite(_) => {
            "SELECT CAST(COALESCE(SUM(pgsize), 0) AS BIGINT) AS n FROM dbstat \
             WHERE name IN ('risk_history', 'risk_history_day')"
        }
        AnyConnection::Postgresql(_) => "SELECT pg_total_relation_size('risk_history') AS n",
    };
    Ok(diesel::sql_query(sql).get_result::<Bytes>(conn)?.n)
}
