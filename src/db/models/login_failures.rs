//! Sign-in attempts counted per key (a user name, or a client address), shared by every
//! instance. The policy (how many attempts are free, how the wait grows) is
//! `web::login_guard::LoginThrottle`; this file only keeps the counts atomically.

use diesel::prelude::*;
use diesel::sql_types::BigInt;

use crate::db::AnyConnection;
use crate::db::schema::login_failures as lf;

/// How the wait after an attempt grows: attempts below `free` cost no wait; from there the wait
/// doubles from one second, up to `max_wait_secs`.
#[derive(Debug, Clone, Copy)]
pub struct Growth {
    pub free: u32,
    pub max_wait_secs: i64,
}

impl Growth {
    /// The wait after the `count`-th attempt, in seconds.
    pub fn wait_after(self, count: u32) -> i64 {
        match count.checked_sub(self.free) {
            None => 0,
            Some(doublings) if doublings >= 62 => self.max_wait_secs,
            Some(doublings) => (1i64 << doublings).min(self.max_wait_secs),
        }
    }

    /// The moment the wait ends in milliseconds (0: no wait), as SQL over the stored count
    /// before this attempt (`failures`): the increment and its wait are decided in one
    /// statement, so that attempts racing on any instance are each counted with the wait their
    /// own count earns. No wait is stored as 0 rather than "now": attempts that took their time
    /// before the database in another order are not refused by a few milliseconds.
    fn wait_until_sql(self, now_ms: i64) -> String {
        let exponent_at_max = (self.max_wait_secs.max(1) as u64).next_power_of_two().trailing_zeros();
        format!(
            "CASE WHEN failures + 1 < {free} THEN 0 \
             WHEN failures + 1 - {free} >= {exponent_at_max} THEN {now_ms} + 1000 * {max} \
             ELSE {now_ms} + 1000 * (1 << (failures + 1 - {free})) END",
            free = self.free,
            max = self.max_wait_secs,
        )
    }
}

/// Counts one attempt under `key` at `now_ms` (UTC Unix milliseconds), unless the key must wait:
/// `Ok(())` when counted, `Err(wait_until_ms)` when refused (nothing counted). A count whose last
/// attempt is older than `forget_after_secs` starts again.
pub fn claim(
    conn: &mut AnyConnection,
    key: &str,
    now_ms: i64,
    growth: Growth,
    forget_after_secs: i64,
) -> QueryResult<Result<(), i64>> {
    let now = now_ms / 1000;
    // The key's row, made once. Without a conflict-free insert, two first attempts at once
    // would meet a unique violation, which ends a PostgreSQL transaction.
    let row = (lf::key.eq(key), lf::failures.eq(0), lf::last_at.eq(now), lf::wait_until_ms.eq(0i64));
    match conn {
        AnyConnection::Sqlite(c) => diesel::insert_or_ignore_into(lf::table).values(row).execute(c)?,
        AnyConnection::Postgresql(c) => {
            diesel::insert_into(lf::table).values(row).on_conflict_do_nothing().execute(c)?
        }
    };
    diesel::update(
        lf::table
            .filter(lf::key.eq(key))
            .filter(lf::last_at.lt(now - forget_after_secs))
            .filter(lf::wait_until_ms.le(now_ms)),
    )
    .set(lf::failures.eq(0))
    .execute(conn)?;
    let counted = diesel::update(lf::table.filter(lf::key.eq(key)).filter(lf::wait_until_ms.le(now_ms)))
        .set((
            lf::failures.eq(lf::failures + 1),
            lf::last_at.eq(now),
            lf::wait_until_ms.eq(diesel::dsl::sql::<BigInt>(&growth.wait_until_sql(now_ms))),
        ))
        .execute(conn)?;
    if counted == 1 {
        return Ok(Ok(()));
    }
    let until = lf::table.find(key).select(lf::wait_until_ms).first::<i64>(conn)?;
    Ok(Err(until))
}

/// Takes back one counted attempt (it turned out not to be a guess: the password was right).
pub fn refund(conn: &mut AnyConnection, key: &str) -> QueryResult<usize> {
    diesel::update(lf::table.filter(lf::key.eq(key)).filter(lf::failures.gt(0)))
        .set(lf::failures.eq(lf::failures - 1))
        .execute(conn)
}

/// Forgets a key's attempts and wait.
pub fn clear(conn: &mut AnyConnection, key: &str) -> QueryResult<usize> {
    diesel::delete(lf::table.filter(lf::key.eq(key))).execute(conn)
}

/// (key, attempts, last attempt, wait until in milliseconds) of those keys that have a row.
pub fn get(conn: &mut AnyConnection, keys: &[String]) -> QueryResult<Vec<(String, i32, i64, i64)>> {
    lf::table.filter(lf::key.eq_any(keys)).select((lf::key, lf::failures, lf::last_at, lf::wait_until_ms)).load(conn)
}

/// Forgets keys whose last attempt was before `before` (seconds) and that no longer wait.
pub fn purge(conn: &mut AnyConnection, before: i64) -> QueryResult<usize> {
    diesel::delete(lf::table.filter(lf::last_at.lt(before)).filter(lf::wait_until_ms.lt(before * 1000))).execute(conn)
}

#[cfg(test)]
mod tests {
    use super::Growth;

    #[test]
    fn the_wait_doubles_from_one_second_past_the_free_attempts_up_to_the_longest() {
        let g = Growth { free: 5, max_wait_secs: 900 };
        let waits: Vec<i64> = (1..=16).map(|n| g.wait_after(n)).collect();
        assert_eq!(waits, [0, 0, 0, 0, 1, 2, 4, 8, 16, 32, 64, 128, 256, 512, 900, 900]);
        assert_eq!(g.wait_after(u32::MAX), 900);
    }
}
