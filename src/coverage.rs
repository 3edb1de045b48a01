//! EDR coverage gaps kept current: the rules of `domain::coverage` applied to the whole
//! inventory after each Defender sync and every few minutes by the supervisor (a gap also opens
//! with time alone: a machine Defender stops hearing from). Each gap is a row of
//! `coverage_gaps` (the Coverage page, the Endpoints filter, the API) and a risk factor of its
//! own, so that coverage gaps sort and alert like any other risk.

use crate::db::models::coverage::{self, GapRow};
use crate::db::models::endpoints;
use crate::db::models::events::{self, kinds};
use crate::db::models::risk::{self, FactorValue};
use crate::db::{AnyConnection, DbResult as QueryResult};
use crate::domain::coverage::{GapKind, gap_of};
use crate::domain::risk::RiskLevel;

/// The risk source of coverage gaps.
pub const COVERAGE_SOURCE: &str = "EDR coverage";

/// How gaps are judged and weighed (settings `coverage_blind_spot_days`, `coverage_risk_level`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CoveragePolicy {
    /// How long Defender may go without seeing a machine the network still sees.
    pub blind_after_days: i64,
    /// The level of the "No EDR coverage" risk factor.
    pub level: RiskLevel,
}

impl Default for CoveragePolicy {
    fn default() -> Self {
        Self { blind_after_days: 7, level: RiskLevel::Medium }
    }
}

/// What a refresh changed.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Refreshed {
    pub opened: usize,
    pub closed: usize,
    pub changed: usize,
}

/// Factors are written in slices of this many endpoints (bound values stay under the engines'
/// limits).
const FACTOR_CHUNK: usize = 5_000;

/// Recomputes every endpoint's coverage gap at `now`, a slice of the inventory per transaction
/// (`endpoints::in_slices`): new gaps open (since now), gaps that changed kind reopen, resolved
/// gaps close, and the risk factors follow, including a new `level` for every open gap. Writes
/// nothing when nothing changed.
pub fn refresh(conn: &mut AnyConnection, policy: CoveragePolicy, now: i64) -> QueryResult<Refreshed> {
    let level = policy.level.to_i16();
    let mut done = Refreshed::default();
    endpoints::in_slices(conn, |c, slice| {
        let facts = coverage::facts(c, slice)?;
        let known = coverage::all(c, slice)?;
        let levels = risk::levels_of_source(c, COVERAGE_SOURCE, slice)?;
        let (mut upserts, mut closed, mut factors) = (Vec::new(), Vec::new(), Vec::new());
        let (mut opened_events, mut closed_events) = (Vec::new(), Vec::new());
        for f in &facts {
            let id = f.endpoint_id;
            let gap = gap_of(f, policy.blind_after_days, now);
            match (known.get(&id), gap) {
                (None, None) => {}
                (Some(_), None) => {
                    closed.push(id);
                    factors.push((id, None));
                    let was = known.get(&id).map_or("", |o| o.kind.as_str());
                    closed_events.push((
                        Some(id),
                        "EDR coverage gap closed".to_owned(),
                        serde_json::json!({ "gap": was }),
                    ));
                    done.closed += 1;
                }
                (old, Some(g)) => {
                    let same_kind = old.is_some_and(|o| o.kind == g.kind.as_str());
                    if !(same_kind && old.is_some_and(|o| o.detail == g.detail)) {
                        let since = old.filter(|_| same_kind).map_or(now, |o| o.since);
                        upserts.push(GapRow {
                            endpoint_id: id,
                            kind: g.kind.as_str().into(),
                            detail: g.detail.clone(),
                            since,
                        });
                        if !same_kind {
                            opened_events.push((
                                Some(id),
                                format!("EDR coverage gap opened: {}", g.kind.label().to_lowercase()),
                                serde_json::json!({ "gap": g.kind.as_str(), "detail": g.detail, "level": level }),
                            ));
                        }
                        if old.is_none() {
                            done.opened += 1;
                        } else {
                            done.changed += 1;
                        }
                    } else if levels.get(&id) == Some(&level) {
                        continue;
                    }
                    factors.push((id, Some(factor(g.kind, &g.detail, level))));
                }
            }
        }
        // Endpoints deleted since took their gap with them (ON DELETE CASCADE).
        coverage::apply(c, &upserts, &closed)?;
        // In this transaction: the outbox (`db::models::events`).
        events::record_with(c, kinds::GAP_OPENED, &opened_events)?;
        events::record_with(c, kinds::GAP_CLOSED, &closed_events)?;
        for chunk in factors.chunks(FACTOR_CHUNK) {
            let rows: Vec<(i64, &str, Option<FactorValue>)> =
                chunk.iter().map(|(id, f)| (*id, COVERAGE_SOURCE, f.clone())).collect();
            risk::set_many(c, &rows)?;
        }
        Ok(())
    })?;
    Ok(done)
}

/// The risk factor of a gap: level, summary, details.
fn factor(kind: GapKind, detail: &str, level: i16) -> FactorValue {
    (level, format!("No EDR coverage: {}", kind.label().to_lowercase()), detail.to_owned())
}
