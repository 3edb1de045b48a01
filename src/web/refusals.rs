//! Refusals in the audit log without one row per refused request: the first refusal of an actor
//! and kind is written at once, repeats within a minute are counted in memory and written as one
//! row ("… and N more") when the minute is over (by the housekeeping task, or at shutdown). A
//! client hammering a forbidden page, a locked sign-in or a stale Entra callback costs a row a
//! minute, not a row a request, and nobody can fill the database that way.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use crate::db::Db;
use crate::db::models::audit;

/// How long repeats are counted before their row is written.
const WINDOW: Duration = Duration::from_secs(60);
/// Actors and kinds tracked at once; past it, new ones are still written but not coalesced
/// until the next flush (memory stays bounded whatever the traffic).
const TRACKED: usize = 10_000;

/// What a refusal row says.
#[derive(Debug, Clone)]
pub struct Refusal {
    pub actor: String,
    pub action: &'static str,
    pub target: String,
    pub details: String,
}

struct Counted {
    since: Instant,
    first: Refusal,
    more: u64,
    last_target: String,
}

#[derive(Default)]
pub struct Refusals {
    counting: Mutex<HashMap<(String, &'static str), Counted>>,
}

impl Refusals {
    /// Records a refusal: written now when it is the first of its actor and kind this minute,
    /// counted otherwise.
    pub async fn record(&self, db: &Db, r: Refusal) {
        let ended = {
            let mut counting = self.counting.lock().unwrap_or_else(|e| e.into_inner());
            let key = (r.actor.clone(), r.action);
            if let Some(c) = counting.get_mut(&key).filter(|c| c.since.elapsed() < WINDOW) {
                c.more += 1;
                c.last_target.clone_from(&r.target);
                return;
            }
            let ended = counting.remove(&key);
            if counting.len() < TRACKED {
                let since = Instant::now();
                counting.insert(key, Counted { since, first: r.clone(), more: 0, last_target: String::new() });
            }
            ended
        };
        if let Some(c) = ended {
            write_counted(db, c).await;
        }
        write(db, r).await;
    }

    /// Writes the counts of minutes that are over (every minute, from housekeeping).
    pub async fn flush_finished(&self, db: &Db) {
        self.flush_where(db, |c| c.since.elapsed() >= WINDOW).await;
    }

    /// Writes every count now (shutdown, tests).
    pub async fn flush(&self, db: &Db) {
        self.flush_where(db, |_| true).await;
    }

    async fn flush_where(&self, db: &Db, done: impl Fn(&Counted) -> bool) {
        let finished: Vec<Counted> = {
            let mut counting = self.counting.lock().unwrap_or_else(|e| e.into_inner());
            let keys: Vec<_> = counting.iter().filter(|(_, c)| done(c)).map(|(k, _)| k.clone()).collect();
            keys.into_iter().filter_map(|k| counting.remove(&k)).collect()
        };
        for c in finished {
            write_counted(db, c).await;
        }
    }
}

/// The row that stands for a minute's repeats (none when there were none).
async fn write_counted(db: &Db, c: Counted) {
    if c.more == 0 {
        return;
    }
    let details =
        format!("{} (and {} more like it within a minute; the last for {})", c.first.details, c.more, c.last_target);
    write(db, Refusal { details, ..c.first }).await;
}

async fn write(db: &Db, r: Refusal) {
    let written = db
        .run(move |c| {
            Ok(audit::entry(&r.actor, r.action).target(&r.target).outcome("refused").details(&r.details).record(c)?)
        })
        .await;
    if let Err(e) = written {
        tracing::warn!(error = %e, "could not write a refusal to the audit log");
    }
}
