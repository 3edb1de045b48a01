//! Events: what changed in the inventory (e.g. an endpoint's profile), newest first.

use diesel::prelude::*;

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
    diesel::insert_into(events::table)
        .values((
            events::at.eq(now()),
            events::endpoint_id.eq(endpoint_id),
            events::kind.eq(kind),
            events::message.eq(message),
        ))
        .execute(conn)
}

pub fn recent(conn: &mut AnyConnection, kind: &str, limit: i64) -> QueryResult<Vec<Event>> {
    events::table
        .filter(events::kind.eq(kind))
        .order(events::id.desc())
        .limit(limit)
        .select(Event::as_select())
        .load(conn)
}
