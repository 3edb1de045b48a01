//! One module per page; each declares its template structs next to its handlers.

pub mod actions;
pub mod audit;
pub mod config;
pub mod coverage;
pub mod dashboard;
pub mod defender;
pub mod endpoints;
pub mod login;
pub mod notifications;
pub mod rules;
pub mod sso;
pub mod tokens;
pub mod users;

use crate::db::Db;
use crate::db::models::audit as audit_log;

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
        audit_log::entry(&actor, &action).target(&target).outcome(&outcome).details(&details).record(c)?;
        Ok(())
    })
    .await
}

/// A wait in words: "1 second", "40 seconds", "3 minutes".
pub fn fmt_duration(secs: i64) -> String {
    match secs.max(1) {
        1 => "1 second".into(),
        s if s < 120 => format!("{s} seconds"),
        s => format!("{} minutes", (s + 59) / 60),
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn times_read_as_utc_minutes() {
        use crate::web::filters::format_utc;
        assert_eq!(format_utc(0), "1970-01-01 00:00 UTC");
        assert_eq!(format_utc(1_795_746_686), "2026-11-27 02:31 UTC");
        assert_eq!(format_utc(i64::MAX), "");
    }
}
