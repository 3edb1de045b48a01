//! The background supervisor: starts the Defender sync when the integration is enabled and
//! then every interval (hourly by default), and follows open machine actions to their final
//! state when no page is watching. It logs and carries on; it never stops the app.
//!
//! Every instance runs it; database leases (`db::lease`) make sure that one instance at a time
//! runs a sync, a re-model or the action poll, and that another takes over a sync or re-model
//! left "running" by an instance that died.

use std::time::Duration;

use crate::db::lease;
use crate::db::models::integration;
use crate::db::now;
use crate::defender::settings;
use crate::defender::sync::{self, SyncContext};

/// How often the supervisor looks whether a sync is due.
const TICK: Duration = Duration::from_secs(15);

pub async fn supervise(ctx: SyncContext) {
    let mut every = tokio::time::interval(TICK);
    loop {
        every.tick().await;
        let due = ctx
            .db
            .run(|c| {
                let Some(config) = settings::load(c)? else { return Ok(false) };
                if !config.enabled {
                    return Ok(false);
                }
                Ok(match integration::latest(c, settings::NAME)? {
                    None => true,
                    // Running here or elsewhere: starting fails on the lease. Left running by an
                    // instance that died: the lease is free and the start takes over.
                    Some(r) if r.is_running() => true,
                    Some(r) => now() >= r.started_at + i64::from(config.sync_interval_minutes) * 60,
                })
            })
            .await;
        match due {
            Ok(true) => {
                if let Err(e) = sync::start(&ctx, "schedule", "system").await {
                    tracing::warn!(error = %e, "could not start the scheduled Defender sync");
                }
            }
            Ok(false) => {}
            Err(e) => tracing::warn!(error = %e, "the scheduler could not read the integration state"),
        }
        if let Err(e) = crate::modeling::take_over_orphaned(&ctx.db, &ctx.modeler, &ctx.background).await {
            tracing::warn!(error = %e, "could not check for an interrupted re-model");
        }
        // One instance polls Defender for the open actions; the others skip this round.
        match ctx.db.try_lease(lease::ACTION_POLL).await {
            Ok(Some(_poll)) => {
                if let Err(e) = crate::defender::actions::follow_open(&ctx).await {
                    tracing::warn!(error = %e, "could not follow the open machine actions");
                }
            }
            Ok(None) => {}
            Err(e) => tracing::warn!(error = %e, "could not take the action-poll lease"),
        }
    }
}
