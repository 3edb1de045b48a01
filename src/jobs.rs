//! The background supervisor: starts the Defender sync when the integration is enabled and
//! then every interval (hourly by default), and follows open machine actions to their final
//! state when no page is watching. It logs and carries on; it never stops the app.

use std::time::Duration;

use crate::db::models::integration;
use crate::db::{AnyConnection, Db, now};
use crate::defender::settings;
use crate::defender::sync::{self, SyncContext};

/// How often the supervisor looks whether a sync is due.
const TICK: Duration = Duration::from_secs(15);

/// How often a running sync or job writes its heartbeat.
const HEARTBEAT: Duration = Duration::from_secs(30);
/// A "running" sync or job whose heartbeat is older than this was left by a process that died:
/// the next start (by any instance) marks it interrupted and takes over.
pub const ABANDONED_AFTER_SECS: i64 = 300;

/// Runs `work` while `beat` records a heartbeat every [`HEARTBEAT`] (a sync's collection can
/// wait minutes on a throttled API without any progress to write).
pub async fn with_heartbeat<T>(
    db: &Db,
    beat: impl Fn(&mut AnyConnection) -> diesel::QueryResult<usize> + Clone + Send + 'static,
    work: impl std::future::Future<Output = T>,
) -> T {
    let db = db.clone();
    let ticker = tokio::spawn(async move {
        let mut every = tokio::time::interval(HEARTBEAT);
        every.tick().await;
        loop {
            every.tick().await;
            let beat = beat.clone();
            if let Err(e) = db.run(move |c| Ok(beat(c)?)).await {
                tracing::warn!(error = %e, "could not write a heartbeat");
            }
        }
    });
    let out = work.await;
    ticker.abort();
    out
}

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
                    // An abandoned run is taken over by the start.
                    Some(r) if r.is_running() => r.is_abandoned(now()),
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
