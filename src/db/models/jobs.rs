//! Background jobs (e.g. a full re-model): their progress, readable by every instance, and
//! small key-value settings the application keeps (e.g. whether the model is stale).

use diesel::prelude::*;

use crate::db::schema::{app_settings, jobs};
use crate::db::{AnyConnection, now};

#[derive(Debug, Clone, Queryable, Selectable, serde::Serialize)]
#[diesel(table_name = jobs)]
pub struct Job {
    pub id: i64,
    pub kind: String,
    pub status: String,
    pub done: i64,
    pub total: i64,
    pub started_at: i64,
    pub finished_at: Option<i64>,
    pub requested_by: String,
    pub message: String,
}

impl Job {
    pub fn is_running(&self) -> bool {
        self.status == "running"
    }

    pub fn percent(&self) -> i64 {
        if self.total <= 0 { if self.is_running() { 0 } else { 100 } } else { (self.done * 100 / self.total).min(100) }
    }
}

/// Starts a job unless one of the same kind is running; returns the new job's id, or `None`.
pub fn start(conn: &mut AnyConnection, kind: &str, requested_by: &str, total: i64) -> QueryResult<Option<i64>> {
    conn.write_transaction(|conn| {
        interrupt_abandoned(conn, kind)?;
        if latest(conn, kind)?.is_some_and(|j| j.is_running()) {
            return Ok(None);
        }
        diesel::insert_into(jobs::table)
            .values((
                jobs::kind.eq(kind),
                jobs::status.eq("running"),
                jobs::total.eq(total),
                jobs::started_at.eq(now()),
                jobs::heartbeat_at.eq(now()),
                jobs::requested_by.eq(requested_by),
            ))
            .execute(conn)?;
        Ok(latest(conn, kind)?.map(|j| j.id))
    })
}

pub fn progress(conn: &mut AnyConnection, id: i64, done: i64) -> QueryResult<usize> {
    diesel::update(jobs::table.find(id)).set((jobs::done.eq(done), jobs::heartbeat_at.eq(now()))).execute(conn)
}

/// The running job's process is alive.
pub fn heartbeat(conn: &mut AnyConnection, id: i64) -> QueryResult<usize> {
    diesel::update(jobs::table.find(id)).set(jobs::heartbeat_at.eq(now())).execute(conn)
}

pub fn finish(conn: &mut AnyConnection, id: i64, status: &str, message: &str) -> QueryResult<usize> {
    diesel::update(jobs::table.find(id))
        .set((jobs::status.eq(status), jobs::message.eq(message), jobs::finished_at.eq(Some(now()))))
        .execute(conn)
}

pub fn latest(conn: &mut AnyConnection, kind: &str) -> QueryResult<Option<Job>> {
    jobs::table.filter(jobs::kind.eq(kind)).order(jobs::id.desc()).select(Job::as_select()).first(conn).optional()
}

const INTERRUPTED: &str = "The process stopped before the job finished.";

/// Jobs left "running" by a process that died are marked interrupted at start (SQLite: one
/// process owns the file).
pub fn interrupt_running(conn: &mut AnyConnection) -> QueryResult<usize> {
    diesel::update(jobs::table.filter(jobs::status.eq("running")))
        .set((jobs::status.eq("interrupted"), jobs::message.eq(INTERRUPTED), jobs::finished_at.eq(Some(now()))))
        .execute(conn)
}

/// Jobs of this kind whose heartbeat stopped (their process died) are marked interrupted.
pub fn interrupt_abandoned(conn: &mut AnyConnection, kind: &str) -> QueryResult<usize> {
    let limit = now() - crate::jobs::ABANDONED_AFTER_SECS;
    diesel::update(
        jobs::table.filter(jobs::kind.eq(kind)).filter(jobs::status.eq("running")).filter(jobs::heartbeat_at.lt(limit)),
    )
    .set((jobs::status.eq("interrupted"), jobs::message.eq(INTERRUPTED), jobs::finished_at.eq(Some(now()))))
    .execute(conn)
}

pub fn get_setting(conn: &mut AnyConnection, key: &str) -> QueryResult<Option<String>> {
    app_settings::table.find(key).select(app_settings::value).first(conn).optional()
}

pub fn set_setting(conn: &mut AnyConnection, key: &str, value: &str) -> QueryResult<()> {
    let n = diesel::update(app_settings::table.find(key)).set(app_settings::value.eq(value)).execute(conn)?;
    if n == 0 {
        diesel::insert_into(app_settings::table)
            .values((app_settings::key.eq(key), app_settings::value.eq(value)))
            .execute(conn)?;
    }
    Ok(())
}
