//! Work that outlives the request that started it (a Defender sync, a full re-model): spawned
//! here so that shutdown can tell it to stop at its next unit boundary and wait until it has
//! recorded how it ended. Without this, stopping the process would drop a sync mid-way and
//! leave its run "running" in the database.

use std::future::Future;
use std::time::Duration;

use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

#[derive(Clone)]
pub struct Background {
    stop: CancellationToken,
    tasks: TaskTracker,
    /// The runtime this was made on (the application's own, which runs until shutdown has
    /// waited for the work), rather than that of the HTTP worker that asked for the work: a
    /// worker's runtime ends with the server, and with it any work still on its way to record
    /// how it ended.
    runtime: Option<tokio::runtime::Handle>,
}

impl Default for Background {
    fn default() -> Self {
        Background {
            stop: CancellationToken::new(),
            tasks: TaskTracker::new(),
            runtime: tokio::runtime::Handle::try_current().ok(),
        }
    }
}

impl Background {
    /// Runs `work` in the background; shutdown waits for it.
    pub fn spawn<F>(&self, work: F)
    where
        F: Future<Output = ()> + Send + 'static,
    {
        match &self.runtime {
            Some(runtime) => self.tasks.spawn_on(work, runtime),
            None => self.tasks.spawn(work),
        };
    }

    /// Whether shutdown has begun: background work stops at its next unit boundary and no new
    /// work starts.
    pub fn stopping(&self) -> bool {
        self.stop.is_cancelled()
    }

    /// Resolves when shutdown begins (to race a long wait, e.g. a Defender API page, against it).
    pub async fn stopped(&self) {
        self.stop.cancelled().await
    }

    /// Asks every background task to stop and waits for them, at most `grace`. Returns whether
    /// all of them ended in time.
    pub async fn shutdown(&self, grace: Duration) -> bool {
        self.stop.cancel();
        self.tasks.close();
        tokio::time::timeout(grace, self.tasks.wait()).await.is_ok()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn shutdown_waits_for_work_that_stops_at_its_boundary() {
        let bg = Background::default();
        let done = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
        let (b, d) = (bg.clone(), done.clone());
        bg.spawn(async move {
            b.stopped().await;
            tokio::time::sleep(Duration::from_millis(50)).await;
            d.store(true, std::sync::atomic::Ordering::SeqCst);
        });
        assert!(!bg.stopping());
        assert!(bg.shutdown(Duration::from_secs(5)).await);
        assert!(bg.stopping());
        assert!(done.load(std::sync::atomic::Ordering::SeqCst), "shutdown returned before the work recorded its end");
    }
}
