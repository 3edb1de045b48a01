//! The audit log: who did what, when (UTC), to what, and how it ended. Rows are only ever added.

use diesel::prelude::*;

use crate::db::schema::audit_log;
use crate::db::{AnyConnection, now};

#[derive(Debug, Clone, Queryable, Selectable)]
#[diesel(table_name = audit_log)]
pub struct AuditEntry {
    pub id: i64,
    pub at: i64,
    pub actor: String,
    pub action: String,
    pub target: String,
    pub outcome: String,
    pub details: String,
}

/// What happened, as recorded. `actor` is a user name, `token:NAME`, or `system`.
pub struct NewAudit<'a> {
    pub actor: &'a str,
    pub action: &'a str,
    pub target: &'a str,
    pub outcome: &'a str,
    pub details: &'a str,
}

pub fn record(conn: &mut AnyConnection, e: NewAudit<'_>) -> QueryResult<usize> {
    diesel::insert_into(audit_log::table)
        .values((
            audit_log::at.eq(now()),
            audit_log::actor.eq(e.actor),
            audit_log::action.eq(e.action),
            audit_log::target.eq(e.target),
            audit_log::outcome.eq(e.outcome),
            audit_log::details.eq(e.details),
        ))
        .execute(conn)
}

/// Newest first, `before` an id for paging.
pub fn page(conn: &mut AnyConnection, before: Option<i64>, limit: i64) -> QueryResult<Vec<AuditEntry>> {
    let mut q = audit_log::table.select(AuditEntry::as_select()).order(audit_log::id.desc()).limit(limit).into_boxed();
    if let Some(b) = before {
        q = q.filter(audit_log::id.lt(b));
    }
    q.load(conn)
}
