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

/// An entry being made: `audit::entry(actor, action).target(t).outcome(o).details(d).record(c)`.
/// `actor` is a user name, `token:NAME`, `cli` or `system`; what is not given is empty.
#[derive(Debug, Clone, Copy)]
pub struct Entry<'a> {
    actor: &'a str,
    action: &'a str,
    target: &'a str,
    outcome: &'a str,
    details: &'a str,
}

/// Who did what: the start of an [`Entry`].
pub fn entry<'a>(actor: &'a str, action: &'a str) -> Entry<'a> {
    Entry { actor, action, target: "", outcome: "", details: "" }
}

impl<'a> Entry<'a> {
    /// To what.
    pub fn target(self, target: &'a str) -> Self {
        Self { target, ..self }
    }
    /// How it ended: success, failure, refused, requested, sent, or an action's final status.
    pub fn outcome(self, outcome: &'a str) -> Self {
        Self { outcome, ..self }
    }
    pub fn details(self, details: &'a str) -> Self {
        Self { details, ..self }
    }
    pub fn record(self, conn: &mut AnyConnection) -> QueryResult<usize> {
        record(conn, self)
    }
}

/// The longest text kept per field: a refused request may carry megabytes.
const MAX_FIELD: usize = 2_000;

/// Audit text comes partly from callers (a user name typed at sign-in, a machine id in a form):
/// control characters — NUL, which PostgreSQL cannot store, escape sequences, line breaks that
/// would fake entries in an export — and layout controls (bidirectional overrides, Unicode line
/// separators) become U+FFFD, and each field is capped.
fn clean(s: &str) -> String {
    crate::domain::text::inert(s, MAX_FIELD)
}

fn record(conn: &mut AnyConnection, e: Entry<'_>) -> QueryResult<usize> {
    diesel::insert_into(audit_log::table)
        .values((
            audit_log::at.eq(now()),
            audit_log::actor.eq(clean(e.actor)),
            audit_log::action.eq(clean(e.action)),
            audit_log::target.eq(clean(e.target)),
            audit_log::outcome.eq(clean(e.outcome)),
            audit_log::details.eq(clean(e.details)),
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

#[cfg(test)]
mod tests {
    #[test]
    fn control_characters_never_reach_the_log() {
        assert_eq!(super::clean("a\0b\u{1b}[31m\nc"), "a\u{fffd}b\u{fffd}[31m\u{fffd}c");
        assert_eq!(super::clean("mallory\u{202e}nimda"), "mallory\u{fffd}nimda");
        assert_eq!(super::clean(&"x".repeat(5000)).len(), super::MAX_FIELD);
    }
}
