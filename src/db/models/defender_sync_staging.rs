//! What a Defender sync has fetched and not yet imported, staged page by page so that the
//! sync's memory does not grow with the tenant (migrations 000009 and 000010): the machines,
//! then their vulnerabilities and active alerts, which the later pages name by machine id. One
//! sync runs at a time (an instance's own guard, and the sync lease across instances), so the
//! tables are its own.

use std::collections::HashMap;

use diesel::prelude::*;

use crate::db::AnyConnection;
use crate::db::schema::defender_sync_alerts as alerts;
use crate::db::schema::defender_sync_staging as staged;
use crate::db::schema::defender_sync_vulnerabilities as vulns;

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
    /// Unix seconds: the newest record of a device is the device.
    pub last_seen: i64,
}

/// What finding a device's older records reads of a staged machine.
#[derive(Debug, Clone, Queryable, Selectable)]
#[diesel(table_name = staged)]
pub struct DeviceKeys {
    pub seq: i64,
    pub machine_id: String,
    pub mac_key: String,
    pub name_key: String,
    pub merged_into: String,
    pub last_seen: i64,
}

/// One (software version, CVE) row of a staged machine, or on a delta sync one record of a
/// change to its rows.
#[derive(Debug, Clone, Default, Insertable, Queryable, Selectable)]
#[diesel(table_name = vulns)]
pub struct StagedVulnerability {
    pub seq: i64,
    /// The order of arrival (it decides nothing: Defender documents no order between records).
    pub ord: i64,
    /// The CVE, as its index in the sync's catalog.
    pub cve: i32,
    /// Defender's "Fixed": the row leaves the machine.
    pub fixed: bool,
    /// The software version, as its index in the sync's list of them.
    pub software: i32,
    /// When the change was found (Unix milliseconds; 0 on a full sync).
    pub event_ms: i64,
    /// The device group the record was reported under (a delta's; empty on a full sync).
    pub rbac_group: String,
}

/// One active alert of a staged machine.
#[derive(Debug, Clone, Insertable, Queryable, Selectable)]
#[diesel(table_name = alerts)]
pub struct StagedAlert {
    pub seq: i64,
    pub alert_id: String,
    /// As risk levels are stored (`RiskLevel::to_i16`).
    pub level: i16,
    /// The last update, or else the creation, in Unix milliseconds.
    pub updated_ms: Option<i64>,
    pub title: String,
}

/// Rows per INSERT and ids per lookup: well under both engines' limits on bound parameters.
const ROWS_PER_STATEMENT: usize = 500;

/// Empties the staging tables. (PostgreSQL would otherwise leave millions of dead rows of a
/// full sync to vacuum; SQLite empties a table without a WHERE clause at once.)
pub fn clear(conn: &mut AnyConnection) -> QueryResult<()> {
    match conn {
        AnyConnection::Sqlite(c) => {
            diesel::delete(vulns::table).execute(c)?;
            diesel::delete(alerts::table).execute(c)?;
            diesel::delete(staged::table).execute(c)?;
        }
        AnyConnection::Postgresql(c) => {
            diesel::sql_query("TRUNCATE defender_sync_vulnerabilities, defender_sync_alerts, defender_sync_staging")
                .execute(c)?;
        }
    }
    Ok(())
}

/// Holds the staging tables against [`clear`] until the transaction ends (PostgreSQL; SQLite's
/// writers take turns anyway): a fenced write takes this before it checks its fence, so that a
/// new holder of the sync cannot empty the tables between that check and the write — the old
/// holder's write then either finds the fence gone or finishes before the emptying. A mode that
/// conflicts with itself, so that two of them never hold it together and then both wait to
/// empty the tables (`clear` runs fenced too); the same table order as `clear`.
pub fn hold_against_clearing(conn: &mut AnyConnection) -> QueryResult<()> {
    if let AnyConnection::Postgresql(c) = conn {
        diesel::sql_query(
            "LOCK TABLE defender_sync_vulnerabilities, defender_sync_alerts, defender_sync_staging \
             IN SHARE ROW EXCLUSIVE MODE",
        )
        .execute(c)?;
    }
    Ok(())
}

/// Multi-row INSERTs of `$rows` into `$table`, skipping rows already there (a machine or an
/// alert that a shifting listing showed twice keeps its first arrival); how many were added.
/// The multi-engine connection has no multi-row INSERT of its own, so each engine's runs it.
macro_rules! insert_new {
    ($conn:expr, $table:expr, $rows:expr) => {{
        let mut added = 0;
        for chunk in $rows.chunks(ROWS_PER_STATEMENT) {
            added += match &mut *$conn {
                AnyConnection::Sqlite(c) => diesel::insert_or_ignore_into($table).values(chunk).execute(c)?,
                AnyConnection::Postgresql(c) => {
                    diesel::insert_into($table).values(chunk).on_conflict_do_nothing().execute(c)?
                }
            };
        }
        Ok(added)
    }};
}

/// Stages fetched machines: a page of 10,000 in 20 statements. Returns how many were new.
pub fn insert(conn: &mut AnyConnection, machines: &[StagedMachine]) -> QueryResult<usize> {
    insert_new!(conn, staged::table, machines)
}

pub fn insert_vulnerabilities(conn: &mut AnyConnection, rows: &[StagedVulnerability]) -> QueryResult<usize> {
    insert_new!(conn, vulns::table, rows)
}

pub fn insert_alerts(conn: &mut AnyConnection, rows: &[StagedAlert]) -> QueryResult<usize> {
    insert_new!(conn, alerts::table, rows)
}

/// The staged number of each of `machine_ids` that was staged.
pub fn seqs_of(conn: &mut AnyConnection, machine_ids: &[&str]) -> QueryResult<HashMap<String, i64>> {
    let mut found = HashMap::with_capacity(machine_ids.len());
    for chunk in machine_ids.chunks(ROWS_PER_STATEMENT) {
        let rows: Vec<(String, i64)> = staged::table
            .filter(staged::machine_id.eq_any(chunk))
            .select((staged::machine_id, staged::seq))
            .load(conn)?;
        found.extend(rows);
    }
    Ok(found)
}

/// The staged machines with `from <= seq < to`, in order.
/// The staged machines of one import batch (staging sequence numbers `from..to`) with
/// everything staged of them, each list ordered by machine.
pub struct StagedBatch {
    pub machines: Vec<StagedMachine>,
    pub vulnerabilities: Vec<StagedVulnerability>,
    pub alerts: Vec<StagedAlert>,
    /// On a delta sync, the machines' rows as the last import stored them.
    pub stored: Vec<(i64, String)>,
}

/// Reads one import batch in one transaction (one snapshot of all four lists).
pub fn read_batch(conn: &mut AnyConnection, from: i64, to: i64, delta: bool) -> QueryResult<StagedBatch> {
    conn.transaction(|c| {
        Ok(StagedBatch {
            machines: range(c, from, to)?,
            vulnerabilities: vulnerabilities(c, from, to)?,
            alerts: alerts(c, from, to)?,
            stored: if delta { stored_rows(c, from, to)? } else { Vec::new() },
        })
    })
}

pub fn range(conn: &mut AnyConnection, from: i64, to: i64) -> QueryResult<Vec<StagedMachine>> {
    staged::table
        .filter(staged::seq.ge(from).and(staged::seq.lt(to)))
        .order(staged::seq.asc())
        .select(StagedMachine::as_select())
        .load(conn)
}

/// The staged CVEs and changes of the machines with `from <= seq < to`, by machine in order of
/// arrival.
pub fn vulnerabilities(conn: &mut AnyConnection, from: i64, to: i64) -> QueryResult<Vec<StagedVulnerability>> {
    vulns::table
        .filter(vulns::seq.ge(from).and(vulns::seq.lt(to)))
        .order((vulns::seq.asc(), vulns::ord.asc()))
        .select(StagedVulnerability::as_select())
        .load(conn)
}

/// The staged alerts of the machines with `from <= seq < to`, by machine.
pub fn alerts(conn: &mut AnyConnection, from: i64, to: i64) -> QueryResult<Vec<StagedAlert>> {
    alerts::table
        .filter(alerts::seq.ge(from).and(alerts::seq.lt(to)))
        .order((alerts::seq.asc(), alerts::alert_id.asc()))
        .select(StagedAlert::as_select())
        .load(conn)
}

/// The vulnerability rows stored by the last import for the staged machines with
/// `from <= seq < to` that have any, in order: where a delta sync's changes apply.
pub fn stored_rows(conn: &mut AnyConnection, from: i64, to: i64) -> QueryResult<Vec<(i64, String)>> {
    use crate::db::schema::defender_machines as machines;
    staged::table
        .inner_join(machines::table.on(machines::machine_id.eq(staged::machine_id)))
        .filter(staged::seq.ge(from).and(staged::seq.lt(to)))
        .filter(machines::vuln_rows.ne(""))
        .order(staged::seq.asc())
        .select((staged::seq, machines::vuln_rows))
        .load(conn)
}

/// The staged machines that may be older records of another one: merged by Defender, or
/// sharing their first MAC or their DNS name with another staged machine. A small share of a
/// tenant, found by the database rather than by holding every machine in memory.
pub fn duplicate_candidates(conn: &mut AnyConnection) -> QueryResult<Vec<DeviceKeys>> {
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
        .select(DeviceKeys::as_select())
        .load(conn)
}
