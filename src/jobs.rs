//! The background supervisor: starts the Defender sync when the integration is enabled and
//! then every interval (hourly by default), and follows open machine actions to their final
//! state when no page is watching. It logs and carries on; it never stops the app.
//!
//! Every instance runs it; database leases (`db::lease`) make sure that one instance at a time
//! runs a sync, a re-model, the response rules, the profiles' Defender tags or the action poll,
//! and that another takes over a sync or re-model left "running" by an instance that died.

use std::time::Duration;

use tokio::time::Instant;

use crate::background::Background;
use crate::db::{Db, lease};
use crate::defender::service::DefenderService;
use crate::modeling::Modeler;

/// How often the supervisor looks whether a sync is due.
const TICK: Duration = Duration::from_secs(15);
/// How often the supervisor recomputes the EDR coverage gaps.
const COVERAGE_EVERY: Duration = Duration::from_secs(300);
/// How often the supervisor records the day's risk history (a sync also does, when it ends)
/// and forgets what is past the retentions.
const RISK_HISTORY_EVERY: Duration = Duration::from_secs(3600);

/// How long what piles up is kept, in days.
#[derive(Debug, Clone, Copy)]
pub struct Retention {
    pub risk_history_days: i64,
    /// Sent events and the delivery log.
    pub events_days: i64,
}

pub async fn supervise(
    defender: DefenderService,
    rules: crate::rules::Runner,
    db: Db,
    modeler: Modeler,
    background: Background,
    retention: Retention,
) {
    let mut every = tokio::time::interval(TICK);
    // The day's risk history and the coverage gaps read the whole inventory: their first round
    // comes at the second tick, so that a start (a million endpoints) serves its first pages
    // before it does this bookkeeping.
    let second_tick = Instant::now() + TICK / 2;
    let (mut coverage_due, mut history_due) = (second_tick, second_tick);
    loop {
        every.tick().await;
        if Instant::now() >= history_due {
            history_due = Instant::now() + RISK_HISTORY_EVERY;
            record_risk_history(&db, retention.risk_history_days).await;
            prune_events(&db, retention.events_days).await;
        }
        // Coverage gaps also open with time alone (a machine Defender stops hearing from), and
        // with network observations: refreshed every few minutes by one instance.
        if Instant::now() >= coverage_due {
            coverage_due = Instant::now() + COVERAGE_EVERY;
            refresh_coverage(&db, defender.coverage()).await;
        }
        match defender.sync_due().await {
            Ok(true) => {
                if let Err(e) = defender.start_sync("schedule", "system").await {
                    tracing::warn!(error = %e, "could not start the scheduled Defender sync");
                }
            }
            Ok(false) => {}
            Err(e) => tracing::warn!(error = %e, "the scheduler could not read the integration state"),
        }
        // Every round, so that a rule acts within a round of a sync or a change of risk, and
        // approvals expire on time.
        rules.run_once().await;
        // The profiles' Defender tags, within their own hourly budget (one instance).
        rules.tags().run_once().await;
        if let Err(e) = crate::modeling::take_over_orphaned(&db, &modeler, &background).await {
            tracing::warn!(error = %e, "could not check for an interrupted re-model");
        }
        // One instance polls Defender for the open actions; the others skip this round.
        match db.try_lease(lease::ACTION_POLL).await {
            Ok(Some(_poll)) => {
                if let Err(e) = defender.follow_open_actions().await {
                    tracing::warn!(error = %e, "could not follow the open machine actions");
                }
            }
            Ok(None) => {}
            Err(e) => tracing::warn!(error = %e, "could not take the action-poll lease"),
        }
    }
}

/// Recomputes the coverage gaps, unless another instance is doing it.
async fn refresh_coverage(db: &Db, policy: crate::coverage::CoveragePolicy) {
    match db.try_lease(lease::COVERAGE).await {
        Ok(Some(_lease)) => {
            let now = chrono::Utc::now().timestamp();
            if let Err(e) = db.run(move |c| Ok(crate::coverage::refresh(c, policy, now)?)).await {
                tracing::warn!(error = %e, "could not refresh the EDR coverage gaps");
            }
        }
        Ok(None) => {}
        Err(e) => tracing::warn!(error = %e, "could not take the coverage lease"),
    }
}

/// Records the day's risk history and forgets what is past the retention, unless another
/// instance is doing it.
async fn record_risk_history(db: &Db, keep_days: i64) {
    match db.try_lease(lease::RISK_HISTORY).await {
        Ok(Some(_lease)) => {
            let now = chrono::Utc::now().timestamp();
            let done = db
                .run(move |c| {
                    crate::risk_history::snapshot(c, now)?;
                    Ok(crate::risk_history::prune(c, now, keep_days)?)
                })
                .await;
            if let Err(e) = done {
                tracing::warn!(error = %e, "could not record the risk history");
            }
        }
        Ok(None) => {}
        Err(e) => tracing::warn!(error = %e, "could not take the risk-history lease"),
    }
}

/// Forgets the events every enabled destination has dealt with and the delivery attempts,
/// once older than the retention, unless another instance is doing it.
async fn prune_events(db: &Db, keep_days: i64) {
    match db.try_lease(lease::EVENTS_PRUNE).await {
        Ok(Some(_lease)) => {
            let cutoff = chrono::Utc::now().timestamp() - keep_days * 86_400;
            match db.run(move |c| Ok(crate::notify::prune(c, cutoff)?)).await {
                Ok((events, deliveries)) if events + deliveries > 0 => {
                    tracing::info!(events, deliveries, "forgot sent events and delivery attempts past the retention");
                }
                Ok(_) => {}
                Err(e) => tracing::warn!(error = %e, "could not prune the sent events"),
            }
        }
        Ok(None) => {}
        Err(e) => tracing::warn!(error = %e, "could not take the events-prune lease"),
    }
}
