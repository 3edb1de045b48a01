//! Server-side session state, keyed by a hash of the cookie's session key so that a copy of the
//! database does not hand out live sessions.

use diesel::prelude::*;

use crate::db::schema::sessions;
use crate::db::{AnyConnection, engine_query, now};

/// A live session's state and when it expires.
pub fn load(conn: &mut AnyConnection, id: &str) -> QueryResult<Option<(String, i64)>> {
    let t = now();
    engine_query!(conn, |c| sessions::table
        .filter(sessions::id.eq(id))
        .filter(sessions::expires_at.gt(t))
        .select((sessions::state, sessions::expires_at))
        .first(c)
        .optional())
}

/// A new session; `user_id` is its signed-in user, if any.
pub fn insert(
    conn: &mut AnyConnection,
    id: &str,
    state: &str,
    expires_at: i64,
    user_id: Option<i64>,
) -> QueryResult<usize> {
    diesel::insert_into(sessions::table)
        .values((
            sessions::id.eq(id),
            sessions::state.eq(state),
            sessions::expires_at.eq(expires_at),
            sessions::user_id.eq(user_id),
        ))
        .execute(conn)
}

/// Updates a live session; 0 when it expired or was deleted meanwhile.
pub fn update(
    conn: &mut AnyConnection,
    id: &str,
    state: &str,
    expires_at: i64,
    user_id: Option<i64>,
) -> QueryResult<usize> {
    diesel::update(sessions::table.filter(sessions::id.eq(id)).filter(sessions::expires_at.gt(now())))
        .set((sessions::state.eq(state), sessions::expires_at.eq(expires_at), sessions::user_id.eq(user_id)))
        .execute(conn)
}

/// Ends every session of a user (a password reset, a disabled account).
pub fn delete_of_user(conn: &mut AnyConnection, user_id: i64) -> QueryResult<usize> {
    diesel::delete(sessions::table.filter(sessions::user_id.eq(user_id))).execute(conn)
}

pub fn touch(conn: &mut AnyConnection, id: &str, expires_at: i64) -> QueryResult<usize> {
    diesel::update(sessions::table.filter(sessions::id.eq(id))).set(sessions::expires_at.eq(expires_at)).execute(conn)
}

pub fn delete(conn: &mut AnyConnection, id: &str) -> QueryResult<usize> {
    diesel::delete(sessions::table.filter(sessions::id.eq(id))).execute(conn)
}

pub fn purge_expired(conn: &mut AnyConnection) -> QueryResult<usize> {
    diesel::delete(sessions::table.filter(sessions::expires_at.le(now()))).execute(conn)
}
