//! Failed sign-ins by key (user name and address, or user name alone), shared by every
//! instance. The lock-out policy is in `web::pages::login::LoginThrottle`.

use diesel::prelude::*;
use diesel::result::{DatabaseErrorKind, Error};

use crate::db::AnyConnection;
use crate::db::schema::login_failures as lf;

/// (key, failures, last failure) of those keys that have failures.
pub fn get(conn: &mut AnyConnection, keys: &[String]) -> QueryResult<Vec<(String, i32, i64)>> {
    lf::table.filter(lf::key.eq_any(keys)).select((lf::key, lf::failures, lf::last_at)).load(conn)
}

/// Counts one failure at `now`; a count whose last failure is older than `window_secs` starts
/// again from one. The increment is one UPDATE, so that instances counting at the same moment
/// lose no failure.
pub fn record(conn: &mut AnyConnection, key: &str, now: i64, window_secs: i64) -> QueryResult<()> {
    diesel::update(lf::table.filter(lf::key.eq(key)).filter(lf::last_at.lt(now - window_secs)))
        .set(lf::failures.eq(0))
        .execute(conn)?;
    let increment = |conn: &mut AnyConnection| {
        diesel::update(lf::table.filter(lf::key.eq(key)))
            .set((lf::failures.eq(lf::failures + 1), lf::last_at.eq(now)))
            .execute(conn)
    };
    if increment(conn)? > 0 {
        return Ok(());
    }
    match diesel::insert_into(lf::table)
        .values((lf::key.eq(key), lf::failures.eq(1), lf::last_at.eq(now)))
        .execute(conn)
    {
        // Another instance inserted the first failure meanwhile: count on top of it.
        Err(Error::DatabaseError(DatabaseErrorKind::UniqueViolation, _)) => increment(conn).map(|_| ()),
        other => other.map(|_| ()),
    }
}

pub fn clear(conn: &mut AnyConnection, key: &str) -> QueryResult<usize> {
    diesel::delete(lf::table.filter(lf::key.eq(key))).execute(conn)
}

/// Forgets failures last seen before `before` (they no longer count).
pub fn purge(conn: &mut AnyConnection, before: i64) -> QueryResult<usize> {
    diesel::delete(lf::table.filter(lf::last_at.lt(before))).execute(conn)
}
