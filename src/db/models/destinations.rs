//! Destinations of events (webhooks, syslog receivers), each with its cursor into the outbox
//! (`db::models::events`), and the delivery log: one row per attempt.

use diesel::prelude::*;

use crate::db::schema::{deliveries, destinations};
use crate::db::{AnyConnection, insert_returning_id, now};

#[derive(Debug, Clone, Queryable, Selectable)]
#[diesel(table_name = destinations)]
pub struct Destination {
    pub id: i64,
    pub name: String,
    /// `webhook`, `syslog-udp`, `syslog-tcp` or `syslog-tls`.
    pub kind: String,
    /// The webhook's URL, or the syslog receiver's `host:port`.
    pub url: String,
    /// The webhook's HMAC secret, sealed (`secrets::SecretBox::seal_for`, bound to the URL).
    pub secret_ciphertext: Option<Vec<u8>>,
    /// Comma-separated event kinds; empty: every kind.
    pub event_types: String,
    /// The lowest risk level of an event that carries one (0: any).
    pub min_level: i16,
    pub enabled: bool,
    pub created_at: i64,
    pub updated_at: i64,
    pub cursor_txid: i64,
    pub cursor_id: i64,
    /// Certificate authorities (PEM) a TLS syslog receiver is checked against besides the
    /// public roots; empty: the public roots only.
    pub ca_pem: String,
    /// A syslog message's format: `rfc5424` or `cef` (CEF in the RFC 5424 message).
    pub format: String,
}

/// What an admin sets of a destination, checked (`notify::check`): the columns written on
/// create and on update, listed once.
#[derive(Insertable, AsChangeset)]
#[diesel(table_name = destinations, treat_none_as_null = true)]
pub struct DestinationFields {
    pub name: String,
    pub kind: String,
    pub url: String,
    pub secret_ciphertext: Option<Vec<u8>>,
    pub event_types: String,
    pub min_level: i16,
    pub enabled: bool,
    pub ca_pem: String,
    pub format: String,
}

#[derive(Debug, Clone, Queryable, Selectable)]
#[diesel(table_name = deliveries)]
pub struct Delivery {
    pub id: i64,
    pub destination_id: i64,
    /// `None` for a test event.
    pub event_id: Option<i64>,
    pub at: i64,
    pub attempt: i32,
    /// `delivered` or `failed`.
    pub status: String,
    /// The receiver's HTTP status, or why it could not be reached (never the secret).
    pub detail: String,
}

pub fn list(conn: &mut AnyConnection) -> QueryResult<Vec<Destination>> {
    destinations::table.order(destinations::id).select(Destination::as_select()).load(conn)
}

pub fn find(conn: &mut AnyConnection, id: i64) -> QueryResult<Option<Destination>> {
    destinations::table.find(id).select(Destination::as_select()).first(conn).optional()
}

/// [`find`], locking the row until the transaction ends, for a change computed from what is
/// stored (PostgreSQL; on SQLite the writing transaction already excludes other writers).
pub fn find_for_update(conn: &mut AnyConnection, id: i64) -> QueryResult<Option<Destination>> {
    match conn {
        AnyConnection::Sqlite(_) => find(conn, id),
        AnyConnection::Postgresql(c) => {
            destinations::table.find(id).select(Destination::as_select()).for_update().first(c).optional()
        }
    }
}

pub fn name_taken(conn: &mut AnyConnection, name: &str, other_than: Option<i64>) -> QueryResult<bool> {
    let ids: Vec<i64> = destinations::table.filter(destinations::name.eq(name)).select(destinations::id).load(conn)?;
    Ok(ids.into_iter().any(|id| Some(id) != other_than))
}

pub fn create(conn: &mut AnyConnection, f: &DestinationFields) -> QueryResult<i64> {
    let t = now();
    insert_returning_id!(
        conn,
        destinations::table,
        (f, destinations::created_at.eq(t), destinations::updated_at.eq(t)),
        destinations::id
    )
}

/// Updates what an admin sets; the cursor stays (events already dealt with are not sent again).
pub fn update(conn: &mut AnyConnection, id: i64, f: &DestinationFields) -> QueryResult<bool> {
    Ok(diesel::update(destinations::table.find(id)).set((f, destinations::updated_at.eq(now()))).execute(conn)? > 0)
}

pub fn delete(conn: &mut AnyConnection, id: i64) -> QueryResult<bool> {
    Ok(diesel::delete(destinations::table.find(id)).execute(conn)? > 0)
}

/// Moves the destination's cursor past an event it dealt with (delivered or filtered out);
/// forward only, so that a worker that lost its lease and lags behind cannot move it back.
pub fn advance(conn: &mut AnyConnection, id: i64, cursor: (i64, i64)) -> QueryResult<usize> {
    let (txid, event) = cursor;
    let behind = destinations::cursor_txid
        .lt(txid)
        .or(destinations::cursor_txid.eq(txid).and(destinations::cursor_id.lt(event)));
    diesel::update(destinations::table.find(id).filter(behind))
        .set((destinations::cursor_txid.eq(txid), destinations::cursor_id.eq(event)))
        .execute(conn)
}

/// Records one attempt in the delivery log.
pub fn log(
    conn: &mut AnyConnection,
    destination_id: i64,
    event_id: Option<i64>,
    attempt: i32,
    status: &str,
    detail: &str,
) -> QueryResult<usize> {
    diesel::insert_into(deliveries::table)
        .values((
            deliveries::destination_id.eq(destination_id),
            deliveries::event_id.eq(event_id),
            deliveries::at.eq(now()),
            deliveries::attempt.eq(attempt),
            deliveries::status.eq(status),
            deliveries::detail.eq(detail),
        ))
        .execute(conn)
}

/// The latest attempts of a destination, newest first.
pub fn deliveries_of(conn: &mut AnyConnection, destination_id: i64, limit: i64) -> QueryResult<Vec<Delivery>> {
    deliveries::table
        .filter(deliveries::destination_id.eq(destination_id))
        .order(deliveries::id.desc())
        .limit(limit)
        .select(Delivery::as_select())
        .load(conn)
}

/// Each destination's latest attempt, by destination.
pub fn latest_deliveries(conn: &mut AnyConnection) -> QueryResult<std::collections::HashMap<i64, Delivery>> {
    let latest: Vec<Option<i64>> =
        deliveries::table.group_by(deliveries::destination_id).select(diesel::dsl::max(deliveries::id)).load(conn)?;
    let rows: Vec<Delivery> = deliveries::table
        .filter(deliveries::id.eq_any(latest.into_iter().flatten().collect::<Vec<_>>()))
        .select(Delivery::as_select())
        .load(conn)?;
    Ok(rows.into_iter().map(|d| (d.destination_id, d)).collect())
}

/// Deletes up to `limit` delivery attempts made before `cutoff`.
pub fn prune_deliveries(conn: &mut AnyConnection, cutoff: i64, limit: i64) -> QueryResult<usize> {
    let old: Vec<i64> = deliveries::table
        .filter(deliveries::at.lt(cutoff))
        .order(deliveries::id)
        .limit(limit)
        .select(deliveries::id)
        .load(conn)?;
    diesel::delete(deliveries::table.filter(deliveries::id.eq_any(old))).execute(conn)
}
