//! Background jobs (e.g. a full re-model): their progress, readable by every instance, and
//! small key-value settings the application keeps (e.g. whether the model is stale).

use diesel::prelude::*;

use crate::db::schema::{app_settings, jobs};
use crate::db::{AnyConnection, now};

#[derive(Debug, Clone, Queryable, Selectable)]
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
        if latest(conn, kind)?.is_some_and(|j| j.is_running()) {
            return Ok(None);
        }
        diesel::insert_into(jobs::table)
            .values((
                jobs::kind.eq(kind),
                jobs::status.eq("running"),
                jobs::total.eq(total),
                jobs::started_at.eq(now()),
                jobs::requested_by.eq(requested_by),
            ))
            .execute(conn)?;
        Ok(latest(conn, kind)?.map(|j| j.id))
    })
}

pub fn progress(conn: &mut AnyConnection, id: i64, done: i64) -> QueryResult<usize> {
    diesel::update(jobs::table.find(id)).set(jobs::done.eq(done)).execute(conn)
}

pub fn finish(conn: &mut AnyConnection, id: i64, status: &str, message: &str) -> QueryResult<usize> {
    diesel::update(jobs::table.find(id))
        .set((jobs::status.eq(status), jobs::message.eq(message), jobs::finished_at.eq(Some(now()))))
        .execute(conn)
}

pub fn latest(conn: &mut AnyConnection, kind: &str) -> QueryResult<Option<Job>> {
    jobs::table.filter(jobs::kind.eq(kind)).order(jobs::id.desc()).select(Job::as_select()).first(conn).optional()
}

/// Jobs left "running" by a process that died (of one kind, or of all) are marked interrupted:
/// on SQLite at start, elsewhere by the holder of the kind's lease.
pub fn interrupt_running(conn: &mut AnyConnection, kind: Option<&str>) -> QueryResult<usize> {
    let mut running = jobs::table.filter(jobs::status.eq("running")).into_boxed();
    if let Some(kind) = kind {
        running = running.filter(jobs::kind.eq(kind));
    }
    let ids: Vec<i64> = running.select(jobs::id).load(conn)?;
    diesel::update(jobs::table.filter(jobs::id.eq_any(ids)))
        .set((
            jobs::status.eq("interrupted"),
            jobs::message.eq("The process stopped before the job finished."),
            jobs::finished_at.eq(Some(now())),
        ))
        .execute(conn)
}

pub fn get_setting(conn: &mut AnyConnection, key: &str) -> QueryResult<Option<String>> {
    app_settings::table.find(key).select(app_settings::value).first(conn).optional()
}

/// Reads a setting and removes it (a one-time decision, such as a confirmation).
pub fn take_setting(conn: &mut AnyConnection, key: &str) -> QueryResult<Option<String>> {
    let value = get_setting(conn, key)?;
    if value.is_some() {
        diesel::delete(app_settings::table.find(key)).execute(conn)?;
    }
    Ok(value)
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
