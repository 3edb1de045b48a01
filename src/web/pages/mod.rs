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

/// A wait in words: "1 second", "40 seconds", "3 minutes".
pub fn fmt_duration(secs: i64) -> String {
    match secs.max(1) {
        1 => "1 second".into(),
        s if s < 120 => format!("{s} seconds"),
        s => format!("{} minutes", (s + 59) / 60),
    }
}

/// Formats a stored time (UTC Unix seconds) for people, as `2026-11-27 03:14 UTC`. Written
/// out field by field: a strftime pattern is parsed again on every call, and a list page
/// formats fifty times (it was a seventh of the page's CPU).
pub fn fmt_time(t: i64) -> String {
    use chrono::{Datelike, Timelike};
    let Some(d) = chrono::DateTime::from_timestamp(t, 0) else { return String::new() };
    format!("{:04}-{:02}-{:02} {:02}:{:02} UTC", d.year(), d.month(), d.day(), d.hour(), d.minute())
}

#[cfg(test)]
mod tests {
    #[test]
    fn times_read_as_utc_minutes() {
        assert_eq!(super::fmt_time(0), "1970-01-01 00:00 UTC");
        assert_eq!(super::fmt_time(1_795_746_686), "2026-11-27 02:31 UTC");
        assert_eq!(super::fmt_time(i64::MAX), "");
    }
}
