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

/// The longest text kept per field: a refused request may carry megabytes.
const MAX_FIELD: usize = 2_000;

/// Audit text comes partly from callers (a user name typed at sign-in, a machine id in a form):
/// control characters — NUL, which PostgreSQL cannot store, escape sequences, line breaks that
/// would fake entries in an export — and layout controls (bidirectional overrides, Unicode line
/// separators) become U+FFFD, and each field is capped.
fn clean(s: &str) -> String {
    s.chars()
        .take(MAX_FIELD)
        .map(|c| if c.is_control() || crate::domain::text::is_layout_control(c) { '\u{fffd}' } else { c })
        .collect()
}

pub fn record(conn: &mut AnyConnection, e: NewAudit<'_>) -> QueryResult<usize> {
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
