//! The machines a Defender sync has fetched and not yet imported, staged page by page so that
//! the sync's memory does not grow with the tenant (migration 000009). One sync runs at a time
//! (an instance's own guard, and the sync lease across instances), so the table is its own.

use diesel::prelude::*;

use crate::db::AnyConnection;
use crate::db::schema::defender_sync_staging as staged;

/// One fetched machine: where it came in the fetch, the keys that group a device's several
/// records, and the record itself (JSON).
#[derive(Debug, Clone, Insertable, Queryable, Selectable)]
#[diesel(table_name = staged)]
pub struct StagedMachine {
    pub seq: i64,
    pub machine_id: String,
    pub mac_key: String,
    pub name_key: String,
    pub merged_into: String,
    pub record: String,
}

/// Rows per INSERT: well under both engines' limits on bound parameters.
const INSERT_ROWS: usize = 500;

pub fn clear(conn: &mut AnyConnection) -> QueryResult<usize> {
    diesel::delete(staged::table).execute(conn)
}

/// Multi-row INSERTs: a fetched page of 10,000 machines in 20 statements. (The multi-backend
/// connection has no multi-row INSERT of its own, so each engine's connection runs it.)
pub fn insert(conn: &mut AnyConnection, machines: &[StagedMachine]) -> QueryResult<()> {
    for chunk in machines.chunks(INSERT_ROWS) {
        let rows = diesel::insert_into(staged::table).values(chunk);
        match conn {
            AnyConnection::Sqlite(c) => rows.execute(c)?,
            AnyConnection::Postgresql(c) => rows.execute(c)?,
        };
    }
    Ok(())
}

/// The staged machines with `from <= seq < to`, in order.
pub fn range(conn: &mut AnyConnection, from: i64, to: i64) -> QueryResult<Vec<StagedMachine>> {
    staged::table
        .filter(staged::seq.ge(from).and(staged::seq.lt(to)))
        .order(staged::seq.asc())
        .select(StagedMachine::as_select())
        .load(conn)
}

/// The staged machines that may be older records of another one: merged by Defender, or
/// sharing their first MAC or their DNS name with another staged machine. A small share of a
/// tenant, found by the database rather than by holding every machine in memory.
pub fn duplicate_candidates(conn: &mut AnyConnection) -> QueryResult<Vec<StagedMachine>> {
    use diesel::dsl::count_star;
    let (dup_macs, dup_names) = diesel::alias!(staged as dup_macs, staged as dup_names);
    let shared_mac = dup_macs
        .filter(dup_macs.field(staged::mac_key).ne(""))
        .group_by(dup_macs.field(staged::mac_key))
        .having(count_star().gt(1))
        .select(dup_macs.field(staged::mac_key));
    let shared_name = dup_names
        .filter(dup_names.field(staged::name_key).ne(""))
        .group_by(dup_names.field(staged::name_key))
        .having(count_star().gt(1))
        .select(dup_names.field(staged::name_key));
    staged::table
        .filter(
            staged::merged_into.ne("").or(staged::mac_key.eq_any(shared_mac)).or(staged::name_key.eq_any(shared_name)),
        )
        .order(staged::seq.asc())
        .select(StagedMachine::as_select())
        .load(conn)
}
