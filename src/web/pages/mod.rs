//! One module per page; each declares its template structs next to its handlers.

pub mod actions;
pub mod audit;
pub mod config;
pub mod dashboard;
pub mod defender;
pub mod endpoints;
pub mod login;
pub mod sso;
pub mod tokens;
pub mod users;

use crate::db::Db;
use crate::db::models::audit::{NewAudit, record};

/// Writes one audit entry from a handler.
pub async fn audit(
    db: &Db,
    actor: &str,
    action: &str,
    target: &str,
    outcome: &str,
    details: &str,
) -> anyhow::Result<()> {
    let (actor, action, target, outcome, details) =
        (actor.to_owned(), action.to_owned(), target.to_owned(), outcome.to_owned(), details.to_owned());
    db.run(move |c| {
        record(c, NewAudit { actor: &actor, action: &action, target: &target, outcome: &outcome, details: &details })?;
        Ok(())
    })
    .await
}

/// Formats a stored time (UTC Unix seconds) for people.
pub fn fmt_time(t: i64) -> String {
    chrono::DateTime::from_timestamp(t, 0).map(|d| d.format("%Y-%m-%d %H:%M UTC").to_string()).unwrap_or_default()
}
