//! The askama filters the templates share: times are stored as UTC Unix seconds and shown as
//! `2026-11-27 03:14 UTC`; risk levels are stored as numbers and shown by name. A template
//! module brings them in with `use crate::web::filters;`.

use chrono::{DateTime, Datelike, Timelike, Utc};

/// UTC Unix seconds as `2026-11-27 03:14 UTC`. Written out field by field: a strftime pattern
/// is parsed again on every call, and a list page formats fifty times.
pub fn format_utc(t: i64) -> String {
    let Some(d) = DateTime::from_timestamp(t, 0) else { return String::new() };
    format!("{:04}-{:02}-{:02} {:02}:{:02} UTC", d.year(), d.month(), d.day(), d.hour(), d.minute())
}

/// UTC Unix seconds as the API and the CSV export write times: RFC 3339 in UTC, to the second
/// (`2026-11-27T03:14:00Z`). Zero, the stored "never", is `None`.
pub fn rfc3339(t: i64) -> Option<String> {
    (t > 0)
        .then(|| DateTime::from_timestamp(t, 0))
        .flatten()
        .map(|t| t.to_rfc3339_opts(chrono::SecondsFormat::Secs, true))
}

/// `{{ level|risk }}`: a stored risk level's name (`High`).
#[askama::filter_fn]
pub fn risk(level: &i16, _: &dyn askama::Values) -> askama::Result<&'static str> {
    Ok(crate::domain::risk::RiskLevel::label_of(*level))
}

/// `{{ t|utc }}`: a stored time.
#[askama::filter_fn]
pub fn utc(t: &i64, _: &dyn askama::Values) -> askama::Result<String> {
    Ok(format_utc(*t))
}

/// `{{ t|utc_or_dash }}`: a stored time that may be missing ("—").
#[askama::filter_fn]
pub fn utc_or_dash(t: &Option<i64>, _: &dyn askama::Values) -> askama::Result<String> {
    Ok(t.map(format_utc).unwrap_or_else(|| "—".into()))
}

/// `{{ t|utc_datetime }}`: a time Defender reported, which may be missing (empty then).
#[askama::filter_fn]
pub fn utc_datetime(t: &Option<DateTime<Utc>>, _: &dyn askama::Values) -> askama::Result<String> {
    Ok(t.map(|t| format_utc(t.timestamp())).unwrap_or_default())
}
