//! The background supervisor: starts the Defender sync when the integration is enabled and
//! then every interval (hourly by default), and follows open machine actions to their final
//! state when no page is watching. It logs and carries on; it never stops the app.

use std::time::Duration;

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
                    Some(r) if r.is_running() => false,
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
        if let Err(e) = crate::defender::actions::follow_open(&ctx).await {
            tracing::warn!(error = %e, "could not follow the open machine actions");
        }
    }
}
