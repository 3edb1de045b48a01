//! Risk over time: a daily record per endpoint of its overall risk, Defender exposure and alert
//! levels and vulnerability count — what Defender's own APIs do not keep (they answer with the
//! current state only). Written after each Defender sync and every hour by the supervisor; only
//! changes are stored (the table holds a row per change, and a day's row is updated in place
//! until the day ends), and rows older than the retention are pruned down to the state at the
//! cutoff.

use crate::db::models::endpoints;
use crate::db::models::risk_history::{self, HistoryRow};
use crate::db::{AnyConnection, DbResult as QueryResult};
use crate::defender::import::{ALERTS_SOURCE, EXPOSURE_SOURCE};

/// The day (since 1970-01-01 UTC) of a time in Unix seconds.
pub fn day_of(t: i64) -> i32 {
    t.div_euclid(86_400) as i32
}

/// Records every endpoint's values for the day of `now` where they differ from its latest row,
/// a slice of the inventory at a time (`endpoints::in_slices`); returns how many rows were
/// written.
pub fn snapshot(conn: &mut AnyConnection, now: i64) -> QueryResult<usize> {
    let day = day_of(now);
    let (mut counts, mut written) = ([0i64; 5], 0);
    endpoints::in_slices(conn, |c, slice| {
        let latest = risk_history::latest(c, slice)?;
        let current = risk_history::current(c, day, EXPOSURE_SOURCE, ALERTS_SOURCE, slice)?;
        for row in &current {
            counts[row.risk.clamp(0, 4) as usize] += 1;
        }
        let changed: Vec<HistoryRow> = current
            .into_iter()
            .filter(|row| latest.get(&row.endpoint_id).is_none_or(|last| !last.same_values(row)))
            .collect();
        for chunk in changed.chunks(2_000) {
            written += risk_history::upsert(c, chunk)?;
        }
        Ok(())
    })?;
    risk_history::record_day_counts(conn, day, counts)?;
    Ok(written)
}

/// Forgets what is older than `keep_days`, keeping what each endpoint was at the cutoff.
pub fn prune(conn: &mut AnyConnection, now: i64, keep_days: i64) -> QueryResult<usize> {
    risk_history::prune(conn, day_of(now) - keep_days as i32)
}
