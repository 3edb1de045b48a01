//! Events: what changed in the inventory (an endpoint created, its profile or risk level, a
//! coverage gap, a Defender sync, a machine action), newest first on the dashboard, and the
//! outbox that destinations (`db::models::destinations`, `src/notify`) deliver from.
//!
//! # The outbox
//!
//! Every event is inserted on the connection of the change it reports, so inside that change's
//! transaction: it exists exactly when the change committed. Each destination keeps a cursor,
//! the (txid, id) of the last event it dealt with, and moves it only after the event was
//! delivered (or filtered out), so a crash re-sends at most the event in flight, under the same
//! id (at-least-once).
//!
//! A plain "last id" cursor would lose events on PostgreSQL: ids come from a sequence when the
//! row is inserted, but become visible when the transaction commits, so id 11 can be seen (and
//! the cursor moved past it) while id 10's transaction is still running. Here each event
//! carries its transaction's id (`txid_current()`), and [`pending`] reads only events of
//! transactions older than the oldest one still running (`txid_snapshot_xmin`): those are all
//! committed or rolled back, so nothing below that horizon can appear any more, and any
//! transaction still to commit has a txid at or above it. Ordering by (txid, id) keeps the
//! cursor sound however ids and commits interleave. SQLite has one writer at a time, so ids
//! become visible in commit order; txid stays 0 and the order is the id's.

use diesel::prelude::*;
use diesel::sql_types::BigInt;

use crate::db::batch::{execute_values, row};
use crate::db::schema::events;
use crate::db::{AnyConnection, now};

/// The kinds of event, as stored and sent.
pub mod kinds {
    pub const ENDPOINT_CREATED: &str = "endpoint.created";
    pub const PROFILE_CHANGED: &str = "profile.changed";
    pub const RISK_CHANGED: &str = "risk.level_changed";
    pub const GAP_OPENED: &str = "coverage.gap_opened";
    pub const GAP_CLOSED: &str = "coverage.gap_closed";
    pub const SYNC_FAILED: &str = "defender.sync_failed";
    pub const ACTION_REQUESTED: &str = "action.requested";
    pub const ACTION_FINISHED: &str = "action.finished";
    /// Every kind a destination may filter on.
    pub const ALL: &[&str] = &[
        ENDPOINT_CREATED,
        PROFILE_CHANGED,
        RISK_CHANGED,
        GAP_OPENED,
        GAP_CLOSED,
        SYNC_FAILED,
        ACTION_REQUESTED,
        ACTION_FINISHED,
    ];
}

#[derive(Debug, Clone, Queryable, Selectable)]
#[diesel(table_name = events)]
pub struct Event {
    pub id: i64,
    pub at: i64,
    pub endpoint_id: Option<i64>,
    pub kind: String,
    pub message: String,
    /// A JSON object: what the event's kind says about it (levels, factor, action…).
    pub data: String,
    pub txid: i64,
}

/// The longest text an event keeps, in characters (its message, and each text in its data):
/// events leave the product as one syslog datagram or one webhook body, and a text from
/// outside (Defender's error, a machine's name) must not make one too large to deliver.
pub const MAX_TEXT: usize = 1_000;

fn bounded(text: &str) -> String {
    match text.char_indices().nth(MAX_TEXT) {
        Some((end, _)) => format!("{}…", &text[..end]),
        None => text.to_owned(),
    }
}

fn bounded_json(value: &serde_json::Value) -> serde_json::Value {
    use serde_json::Value;
    match value {
        Value::String(s) => Value::String(bounded(s)),
        Value::Array(items) => Value::Array(items.iter().map(bounded_json).collect()),
        Value::Object(map) => Value::Object(map.iter().map(|(k, v)| (bounded(k), bounded_json(v))).collect()),
        other => other.clone(),
    }
}

/// An event to record: endpoint, message, data (a JSON object).
pub type NewEvent = (Option<i64>, String, serde_json::Value);

pub fn record(conn: &mut AnyConnection, endpoint_id: Option<i64>, kind: &str, message: &str) -> QueryResult<usize> {
    record_with(conn, kind, &[(endpoint_id, message.to_owned(), serde_json::json!({}))])
}

/// Records events of one kind without data: (endpoint, message).
pub fn record_many(conn: &mut AnyConnection, kind: &str, events: &[(Option<i64>, String)]) -> QueryResult<usize> {
    let with: Vec<NewEvent> = events.iter().map(|(id, m)| (*id, m.clone(), serde_json::json!({}))).collect();
    record_with(conn, kind, &with)
}

/// Records events of one kind with their data. `txid` takes its default: the writing
/// transaction's id on PostgreSQL (see the module's doc), 0 on SQLite.
pub fn record_with(conn: &mut AnyConnection, kind: &str, events: &[NewEvent]) -> QueryResult<usize> {
    let at = now();
    let data: Vec<String> = events.iter().map(|e| bounded_json(&e.2).to_string()).collect();
    let messages: Vec<String> = events.iter().map(|e| bounded(&e.1)).collect();
    let rows: Vec<_> = events
        .iter()
        .zip(messages.iter().zip(&data))
        .map(|((id, _, _), (message, data))| row![at, *id, kind, message, data])
        .collect();
    execute_values(conn, "INSERT INTO events (at, endpoint_id, kind, message, data)", "", &rows)
}

pub fn recent(conn: &mut AnyConnection, kind: &str, limit: i64) -> QueryResult<Vec<Event>> {
    events::table
        .filter(events::kind.eq(kind))
        .order(events::id.desc())
        .limit(limit)
        .select(Event::as_select())
        .load(conn)
}

/// Up to `limit` events after the cursor (txid, id), recorded at or after `since`, in outbox
/// order; on PostgreSQL only those below the horizon of running transactions (module doc).
pub fn pending(conn: &mut AnyConnection, after: (i64, i64), since: i64, limit: i64) -> QueryResult<Vec<Event>> {
    let (txid, id) = after;
    let after_cursor = events::txid.gt(txid).or(events::txid.eq(txid).and(events::id.gt(id)));
    match conn {
        AnyConnection::Sqlite(c) => events::table
            .filter(after_cursor)
            .filter(events::at.ge(since))
            .order((events::txid, events::id))
            .limit(limit)
            .select(Event::as_select())
            .load(c),
        AnyConnection::Postgresql(c) => events::table
            .filter(after_cursor)
            .filter(events::at.ge(since))
            .filter(events::txid.lt(diesel::dsl::sql::<BigInt>("txid_snapshot_xmin(txid_current_snapshot())")))
            .order((events::txid, events::id))
            .limit(limit)
            .select(Event::as_select())
            .load(c),
    }
}

/// Deletes up to `limit` events recorded before `cutoff` that no enabled destination still
/// owes: each such destination's cursor is past the event, or the destination was created
/// after it (it never sends older events; see [`pending`]).
pub fn prune_delivered(conn: &mut AnyConnection, cutoff: i64, limit: i64) -> QueryResult<usize> {
    diesel::sql_query(format!(
        "DELETE FROM events WHERE id IN (SELECT e.id FROM events e WHERE e.at < {cutoff} AND NOT EXISTS ( \
           SELECT 1 FROM destinations d WHERE d.enabled AND d.created_at <= e.at \
           AND (e.txid > d.cursor_txid OR (e.txid = d.cursor_txid AND e.id > d.cursor_id))) \
         ORDER BY e.id LIMIT {limit})"
    ))
    .execute(conn)
}

/// How many events the outbox holds.
pub fn count(conn: &mut AnyConnection) -> QueryResult<i64> {
    events::table.count().get_result(conn)
}
