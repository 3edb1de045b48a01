//! Events: what changed in the inventory (e.g. an endpoint's profile), newest first.

use diesel::prelude::*;

use crate::db::batch::{execute_values, row};
use crate::db::schema::events;
use crate::db::{AnyConnection, now};

#[derive(Debug, Clone, Queryable, Selectable)]
#[diesel(table_name = events)]
pub struct Event {
    pub id: i64,
    pub at: i64,
    pub endpoint_id: Option<i64>,
    pub kind: String,
    pub message: String,
}

pub fn record(conn: &mut AnyConnection, endpoint_id: Option<i64>, kind: &str, message: &str) -> QueryResult<usize> {
    record_many(conn, kind, &[(endpoint_id, message.to_owned())])
}

/// Records events of one kind: (endpoint, message).
pub fn record_many(conn: &mut AnyConnection, kind: &str, events: &[(Option<i64>, String)]) -> QueryResult<usize> {
    let at = now();
    let rows: Vec<_> = events.iter().map(|(id, message)| row![at, *id, kind, message]).collect();
    execute_values(conn, "INSERT INTO events (at, endpoint_id, kind, message)", "", &rows)
}

pub fn recent(conn: &mut AnyConnection, kind: &str, limit: i64) -> QueryResult<Vec<Event>> {
    events::table
        .filter(events::kind.eq(kind))
        .order(events::id.desc())
        .limit(limit)
        .select(Event::as_select())
        .load(conn)
}
