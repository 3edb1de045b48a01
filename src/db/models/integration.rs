//! Integration configuration (one row per integration; the client secret only as ciphertext)
//! and the record of each sync run.

use diesel::prelude::*;

use crate::db::schema::{integration_config, sync_runs};
use crate::db::{AnyConnection, engine_query, now};

#[derive(Debug, Clone, Queryable, Selectable, Insertable, AsChangeset)]
#[diesel(table_name = integration_config)]
pub struct IntegrationConfig {
    pub name: String,
    pub tenant_id: String,
    pub client_id: String,
    pub secret_ciphertext: Option<Vec<u8>>,
    pub cloud: String,
    pub region: String,
    pub login_base_url: String,
    pub api_base_url: String,
    pub enabled: bool,
    pub sync_interval_minutes: i32,
    pub updated_at: i64,
    pub updated_by: String,
}

pub fn get(conn: &mut AnyConnection, name: &str) -> QueryResult<Option<IntegrationConfig>> {
    engine_query!(conn, |c| integration_config::table
        .find(name)
        .select(IntegrationConfig::as_select())
        .first(c)
        .optional())
}

pub fn save(conn: &mut AnyConnection, config: &IntegrationConfig) -> QueryResult<()> {
    let n = diesel::update(integration_config::table.find(&config.name)).set(config).execute(conn)?;
    if n == 0 {
        diesel::insert_into(integration_config::table).values(config).execute(conn)?;
    }
    Ok(())
}

#[derive(Debug, Clone, Queryable, Selectable)]
#[diesel(table_name = sync_runs)]
pub struct SyncRun {
    pub id: i64,
    pub integration: String,
    pub trigger: String,
    pub requested_by: String,
    pub status: String,
    pub phase: String,
    pub items_done: i64,
    pub items_total: i64,
    pub machines: i64,
    pub created: i64,
    pub updated: i64,
    pub merged: i64,
    pub stale: i64,
    pub api_calls: i64,
    pub throttled: i64,
    pub error: String,
    pub started_at: i64,
    pub finished_at: Option<i64>,
}

impl SyncRun {
    pub fn is_running(&self) -> bool {
        self.status == "running"
    }

    pub fn percent(&self) -> i64 {
        if self.items_total <= 0 { 0 } else { (self.items_done * 100 / self.items_total).min(100) }
    }

    pub fn duration_secs(&self) -> i64 {
        self.finished_at.unwrap_or_else(now) - self.started_at
    }
}

/// Starts a run unless one is running for the integration; returns the new run's id. A unique
/// index on running runs makes this hold across instances: a concurrent start loses the race.
pub fn start_run(
    conn: &mut AnyConnection,
    integration: &str,
    trigger: &str,
    requested_by: &str,
) -> QueryResult<Option<i64>> {
    let started = conn.write_transaction(|conn| {
        let running: i64 = sync_runs::table
            .filter(sync_runs::integration.eq(integration))
            .filter(sync_runs::status.eq("running"))
            .count()
            .get_result(conn)?;
        if running > 0 {
            return Ok(None);
        }
        diesel::insert_into(sync_runs::table)
            .values((
                sync_runs::integration.eq(integration),
                sync_runs::trigger.eq(trigger),
                sync_runs::requested_by.eq(requested_by),
                sync_runs::status.eq("running"),
                sync_runs::phase.eq("starting"),
                sync_runs::started_at.eq(now()),
            ))
            .execute(conn)?;
        Ok(latest(conn, integration)?.map(|r| r.id))
    });
    match started {
        Err(diesel::result::Error::DatabaseError(diesel::result::DatabaseErrorKind::UniqueViolation, _)) => Ok(None),
        other => other,
    }
}

pub fn progress(conn: &mut AnyConnection, id: i64, phase: &str, done: i64, total: i64) -> QueryResult<usize> {
    diesel::update(sync_runs::table.find(id))
        .set((sync_runs::phase.eq(phase), sync_runs::items_done.eq(done), sync_runs::items_total.eq(total)))
        .execute(conn)
}

/// The figures a finished run reports.
#[derive(Debug, Default, Clone, Copy)]
pub struct RunCounts {
    pub machines: i64,
    pub created: i64,
    pub updated: i64,
    pub merged: i64,
    pub stale: i64,
    pub api_calls: i64,
    pub throttled: i64,
}

pub fn finish_run(
    conn: &mut AnyConnection,
    id: i64,
    status: &str,
    counts: RunCounts,
    error: &str,
) -> QueryResult<usize> {
    diesel::update(sync_runs::table.find(id))
        .set((
            sync_runs::status.eq(status),
            sync_runs::phase.eq("done"),
            sync_runs::machines.eq(counts.machines),
            sync_runs::created.eq(counts.created),
            sync_runs::updated.eq(counts.updated),
            sync_runs::merged.eq(counts.merged),
            sync_runs::stale.eq(counts.stale),
            sync_runs::api_calls.eq(counts.api_calls),
            sync_runs::throttled.eq(counts.throttled),
            sync_runs::error.eq(error),
            sync_runs::finished_at.eq(Some(now())),
        ))
        .execute(conn)
}

pub fn latest(conn: &mut AnyConnection, integration: &str) -> QueryResult<Option<SyncRun>> {
    sync_runs::table
        .filter(sync_runs::integration.eq(integration))
        .order(sync_runs::id.desc())
        .select(SyncRun::as_select())
        .first(conn)
        .optional()
}

pub fn recent(conn: &mut AnyConnection, integration: &str, limit: i64) -> QueryResult<Vec<SyncRun>> {
    sync_runs::table
        .filter(sync_runs::integration.eq(integration))
        .order(sync_runs::id.desc())
        .limit(limit)
        .select(SyncRun::as_select())
        .load(conn)
}

/// The latest run that finished well: the data the product shows comes from it.
pub fn last_success(conn: &mut AnyConnection, integration: &str) -> QueryResult<Option<SyncRun>> {
    sync_runs::table
        .filter(sync_runs::integration.eq(integration))
        .filter(sync_runs::status.eq("succeeded"))
        .order(sync_runs::id.desc())
        .select(SyncRun::as_select())
        .first(conn)
        .optional()
}

/// Runs left "running" by a process that died (of one integration, or of all) are reported as
/// interrupted. Only the holder of the sync lease, or a SQLite process at start, may call this.
pub fn interrupt_running(conn: &mut AnyConnection, integration: Option<&str>) -> QueryResult<usize> {
    let mut running = sync_runs::table.filter(sync_runs::status.eq("running")).into_boxed();
    if let Some(name) = integration {
        running = running.filter(sync_runs::integration.eq(name));
    }
    let ids: Vec<i64> = running.select(sync_runs::id).load(conn)?;
    diesel::update(sync_runs::table.filter(sync_runs::id.eq_any(ids)))
        .set((
            sync_runs::status.eq("interrupted"),
            sync_runs::error.eq(
                "The application stopped during the sync; the previous data was kept and the next sync completes it.",
            ),
            sync_runs::finished_at.eq(Some(now())),
        ))
        .execute(conn)
}
