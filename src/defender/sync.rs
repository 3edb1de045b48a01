//! One sync: collect the machine inventory, the vulnerabilities (catalog plus the bulk
//! machine×vulnerability listing, never one call per machine) and the alerts, aggregate them per
//! machine, then import in short batch transactions. Everything is fetched before anything is
//! written to the inventory (what was fetched waits in staging tables of its own, so that
//! memory does not grow with the tenant), so a failed or interrupted collection leaves the
//! previous data as it was; each machine is written whole or not at all. One sync runs at a time
//! across all instances: the instance holding the database lease runs it (see `db::lease`), and
//! the run record says so.

use std::collections::HashMap;

use chrono::Utc;

use super::import::{self, ImportCounts};
use super::service::DefenderService;
use super::settings;
use super::{DefenderClient, DefenderError};
use crate::db::AnyConnection;
use crate::db::lease::{self, Lease};
use crate::db::models::defender_sync_staging::{self, StagedMachine};
use crate::db::models::integration::{self, RunCounts};
use crate::db::models::{audit, defender_machines, events, jobs};

mod collect;

use collect::{collect, delta_base, duplicates_among, snapshot_identity};

/// The share (percent) of known machines a sync may mark stale without an admin's confirmation.
pub const DEFAULT_STALE_GUARD_PERCENT: u8 = 50;
/// Set when a sync stopped at the guard: `<missing> <known>`.
pub const STALE_HOLD_KEY: &str = "defender.stale_hold";
/// Set by an admin's confirmation (who); the next sync takes it, used or not.
pub const STALE_CONFIRMED_KEY: &str = "defender.stale_confirmed";

/// (missing, known) from [`STALE_HOLD_KEY`]'s value.
pub fn parse_hold(v: &str) -> Option<(i64, i64)> {
    let (missing, known) = v.split_once(' ')?;
    Some((missing.parse().ok()?, known.parse().ok()?))
}

/// Machines per import transaction: short enough that pages stay responsive meanwhile.
const IMPORT_BATCH: usize = 500;

/// Starts a sync in the background unless one is running (here or on another instance);
/// returns the run id.
pub async fn start(ctx: &DefenderService, trigger: &str, requested_by: &str) -> anyhow::Result<Option<i64>> {
    if ctx.background.stopping() {
        return Ok(None);
    }
    // Only the holder of the lease runs a sync. Holding it, a run still marked running was left
    // by an instance that died: it is marked interrupted and this instance takes over.
    let Some(lease) = ctx.db.try_lease(lease::DEFENDER_SYNC).await? else { return Ok(None) };
    let (t, by) = (trigger.to_owned(), requested_by.to_owned());
    let (orphans, run) = ctx
        .db
        .run(move |c| {
            let orphans = integration::interrupt_running(c, Some(settings::NAME))?;
            Ok((orphans, integration::start_run(c, settings::NAME, &t, &by)?))
        })
        .await?;
    if orphans > 0 {
        tracing::warn!(run = ?run, "took over the Defender sync from an instance that stopped during it");
    }
    if let Some(id) = run {
        let ctx = ctx.clone();
        let by = requested_by.to_owned();
        ctx.background.clone().spawn(async move {
            let started = std::time::Instant::now();
            let outcome = run_held(&ctx, id, Some(&lease)).await;
            if let Some(m) = &ctx.client_options.metrics {
                m.observe_sync(outcome.is_ok(), started.elapsed());
            }
            let (status, counts, error) = match outcome {
                Ok(counts) => ("succeeded", counts, String::new()),
                Err((counts, Stopped::Failed(e))) => ("failed", counts, e),
                Err((counts, Stopped::Interrupted(e))) => ("interrupted", counts, e),
            };
            // Whatever an error quotes from outside, the run's record keeps it as plain text.
            let error = crate::domain::text::inert(&error, 2000);
            let details = format!(
                "{} machines: {} created, {} updated, {} merged, {} stale; {} API calls{}",
                counts.machines,
                counts.created,
                counts.updated,
                counts.merged,
                counts.stale,
                counts.api_calls,
                if error.is_empty() { String::new() } else { format!("; {error}") }
            );
            // The run's end, its audit entry and (when it failed) its event commit together, so
            // that a crash cannot keep the event from a failure on record. Should the event be
            // refused, the end is recorded without it: how the run ended must never be lost.
            let record = move |c: &mut crate::db::AnyConnection, with_event: bool| {
                c.write_transaction(|c| {
                    integration::finish_run(c, id, status, counts, &error)?;
                    audit::entry(&by, "defender.sync")
                        .target("Microsoft Defender")
                        .outcome(status)
                        .details(&details)
                        .record(c)?;
                    if with_event && status == "failed" {
                        let data = serde_json::json!({ "run": id, "error": error });
                        let message = format!("The Defender sync failed: {error}");
                        events::record_with(c, events::kinds::SYNC_FAILED, &[(None, message, data)])?;
                    }
                    Ok::<_, anyhow::Error>(())
                })
            };
            let result = ctx
                .db
                .run(move |c| {
                    if let Err(e) = record(c, true) {
                        tracing::error!(error = %e, "could not record a Defender sync's end with its event; recording the end alone");
                        record(c, false)?;
                    }
                    Ok(())
                })
                .await;
            if let Err(e) = result {
                tracing::error!(error = %e, "could not record the end of a Defender sync");
            }
            tracing::info!(run = id, status, "Defender sync ended");
            // Given up only now that the run's end is recorded.
            drop(lease);
        });
    }
    Ok(run)
}

/// Why a sync ended early, in plain words.
#[derive(Debug)]
pub enum Stopped {
    /// Something went wrong (Defender, the database): the run failed.
    Failed(String),
    /// The application is shutting down, or this instance lost its lease: the run stopped at a
    /// unit boundary and the next sync (here or elsewhere) completes it.
    Interrupted(String),
}

impl std::fmt::Display for Stopped {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Failed(e) | Self::Interrupted(e) => f.write_str(e),
        }
    }
}

impl From<DefenderError> for Stopped {
    fn from(e: DefenderError) -> Self {
        Self::Failed(e.plain_words())
    }
}

type Failure = (RunCounts, Stopped);

/// One sync under way: where its progress goes and what may stop it.
struct Running<'a> {
    ctx: &'a DefenderService,
    id: i64,
    lease: Option<&'a Lease>,
}

impl Running<'_> {
    /// A unit boundary (a page read, a batch written): records progress, and stops the run if
    /// the application is shutting down or this instance no longer holds the lease.
    async fn progress(&self, phase: &'static str, done: i64, total: i64) -> Result<(), Stopped> {
        self.record(phase, done, total).await;
        self.check().await
    }

    async fn record(&self, phase: &'static str, done: i64, total: i64) {
        let run = self.id;
        let _ = self.ctx.db.run(move |c| Ok(integration::progress(c, run, phase, done, total)?)).await;
    }

    async fn check(&self) -> Result<(), Stopped> {
        if self.ctx.background.stopping() {
            return Err(shutdown());
        }
        if let Some(lease) = self.lease
            && !lease.still_held().await
        {
            return Err(lost_lease());
        }
        Ok(())
    }

    /// A write of the sync to what a run owns only while it holds the lease (the staging
    /// tables, the machines' stale marks), in one transaction that first checks the lease is
    /// still this run's: between two [`Running::check`]s its session may have died and another
    /// instance taken the sync over, whose staged machines this run must not empty or judge.
    async fn fenced<T: Send + 'static>(
        &self,
        doing: &str,
        background: bool,
        write: impl FnOnce(&mut AnyConnection) -> anyhow::Result<T> + Send + 'static,
    ) -> Result<T, Stopped> {
        let fence = self.lease.and_then(Lease::fence);
        let fenced = move |c: &mut AnyConnection| {
            c.write_transaction(|c| {
                defender_sync_staging::hold_against_clearing(c)?;
                if !lease::hold_fence(c, fence)? {
                    return Ok(Err(lost_lease()));
                }
                Ok(Ok(write(c)?))
            })
        };
        let done = if background { self.ctx.db.run_background(fenced).await } else { self.ctx.db.run(fenced).await };
        done.map_err(|e| Stopped::Failed(format!("{doing} failed: {e}")))?
    }

    /// Adds a page of fetched machines to the staging table (see [`Collected`]); how many were
    /// new.
    async fn stage(&self, machines: Vec<StagedMachine>) -> Result<usize, Stopped> {
        self.fenced("Keeping the fetched machines", true, move |c| Ok(defender_sync_staging::insert(c, &machines)?))
            .await
    }

    /// Stages what a later page says of machines it names by id. Rows of a machine that was not
    /// staged (it joined Defender after the machine listing was read) are left out.
    async fn stage_facts<T: Send + 'static>(
        &self,
        what: &'static str,
        rows: Vec<(String, T)>,
        place: fn(&mut T, i64),
        insert: fn(&mut AnyConnection, &[T]) -> crate::db::DbResult<usize>,
    ) -> Result<(), Stopped> {
        if rows.is_empty() {
            return Ok(());
        }
        let doing = format!("Keeping the fetched {what}");
        self.fenced(&doing, true, move |c| {
            let seqs = {
                let mut ids: Vec<&str> = rows.iter().map(|(m, _)| m.as_str()).collect();
                ids.sort_unstable();
                ids.dedup();
                defender_sync_staging::seqs_of(c, &ids)?
            };
            let placed: Vec<T> = rows
                .into_iter()
                .filter_map(|(machine, mut row)| {
                    place(&mut row, *seqs.get(&machine)?);
                    Some(row)
                })
                .collect();
            insert(c, &placed)?;
            Ok(())
        })
        .await
    }

    /// The staged machines that are older records of another one (see [`duplicates_among`]),
    /// looked for among the few that share a MAC or a name or were merged by Defender.
    async fn duplicates(&self) -> Result<HashMap<i64, String>, Stopped> {
        let candidates = self
            .ctx
            .db
            .run(|c| Ok(defender_sync_staging::duplicate_candidates(c)?))
            .await
            .map_err(|e| Stopped::Failed(format!("Looking for duplicate machines failed: {e}")))?;
        let duplicate_of = duplicates_among(&candidates);
        Ok(candidates.iter().zip(duplicate_of).filter_map(|(c, d)| Some((c.seq, d?))).collect())
    }

    /// The safety valve, once the machine listing is staged: a listing that would mark more than
    /// the configured share of the known machines stale is not believed without an admin's
    /// word (a proxy, a wrong tenant or region, or a partial answer looks just like machines
    /// that left). The run stops with nothing changed; a confirmation lets the next one through
    /// once.
    async fn stale_guard(&self) -> Result<(), Stopped> {
        let percent = i64::from(self.ctx.stale_guard_percent);
        let outcome = self
            .ctx
            .db
            .run(move |c| {
                c.write_transaction(|c| {
                    let (known, missing) = defender_machines::missing_from_staged(c)?;
                    let confirmed = jobs::take_setting(c, STALE_CONFIRMED_KEY)?;
                    if percent < 100 && missing * 100 > known * percent && confirmed.is_none() {
                        jobs::set_setting(c, STALE_HOLD_KEY, &format!("{missing} {known}"))?;
                        return Ok(Some((missing, known)));
                    }
                    jobs::take_setting(c, STALE_HOLD_KEY)?;
                    Ok(None)
                })
            })
            .await
            .map_err(|e| Stopped::Failed(format!("Checking which machines left Defender failed: {e}")))?;
        match outcome {
            None => Ok(()),
            Some((missing, known)) => Err(Stopped::Failed(format!(
                "Held back: Defender's machine listing leaves out {missing} of the {known} known machines ({}%), more \
                 than the {percent}% this sync may mark stale on its own. Nothing was changed. If these machines really \
                 left Defender, an administrator can confirm on the Defender page (Import anyway); otherwise check the \
                 tenant, region and API address.",
                missing * 100 / known.max(1)
            ))),
        }
    }

    async fn clear_staged(&self) -> Result<(), Stopped> {
        self.fenced("Emptying what the sync staged", false, |c| Ok(defender_sync_staging::clear(c)?)).await.map(|_| ())
    }

    /// Waits for one Defender API page, unless the application starts shutting down meanwhile
    /// (nothing but the staging table is written while collecting, so dropping the request is safe).
    async fn page<T>(&self, next: impl Future<Output = Result<T, DefenderError>>) -> Result<T, Stopped> {
        tokio::select! {
            page = next => Ok(page?),
            _ = self.ctx.background.stopped() => Err(shutdown()),
        }
    }
}

fn lost_lease() -> Stopped {
    Stopped::Interrupted(
        "This instance lost its database connection during the sync and stopped; another instance takes over.".into(),
    )
}

fn shutdown() -> Stopped {
    Stopped::Interrupted(
        "The application was stopped during the sync: machines imported so far were written whole, the others keep \
         their previous data, and the next sync completes it."
            .into(),
    )
}

/// The whole sync; on failure, the counts so far and why it stopped.
pub async fn run_sync(ctx: &DefenderService, run: i64) -> Result<RunCounts, Failure> {
    run_held(ctx, run, None).await
}

async fn run_held(ctx: &DefenderService, run: i64, lease: Option<&Lease>) -> Result<RunCounts, Failure> {
    let run = Running { ctx, id: run, lease };
    // What an earlier sync staged is left over only if its process ended mid-sync.
    run.clear_staged().await.map_err(|e| (RunCounts::default(), e))?;
    let outcome = fetch_and_import(&run).await;
    // What was staged served this run only: its space is freed whatever happened.
    if let Err(e) = run.clear_staged().await {
        tracing::warn!(error = %e, "could not empty what the sync staged");
    }
    outcome
}

async fn fetch_and_import(run: &Running<'_>) -> Result<RunCounts, Failure> {
    let ctx = run.ctx;
    let mut counts = RunCounts::default();
    let fail = |counts: RunCounts, msg: String| (counts, Stopped::Failed(msg));
    let client = ctx.client().await.map_err(|e| fail(counts, e.to_string()))?;
    let calls_before = client.stats();
    let with_stats = |mut counts: RunCounts, client: &DefenderClient| {
        // The client is shared with actions: count this sync's calls only.
        let stats = client.stats();
        counts.api_calls = (stats.calls - calls_before.calls) as i64;
        counts.throttled = (stats.throttled - calls_before.throttled) as i64;
        counts
    };

    // A delta sync when the stored per-machine CVE lists are complete as of a recent time for
    // this tenant and API; otherwise every machine×vulnerability row is fetched.
    let identity = snapshot_identity(ctx).await.map_err(|e| fail(counts, e))?;
    let delta = delta_base(ctx, &identity).await.map_err(|e| fail(counts, e))?;
    let fetch_started = Utc::now();
    let collected = collect(run, &client, delta).await;
    counts = with_stats(counts, &client);
    let mut collected = collected.map_err(|e| (counts, e))?;
    counts.machines = collected.machines as i64;
    let duplicates = collected.duplicates.len() as i64;

    // Import: short transactions of whole machines, in the order they were staged.
    let total = collected.machines as i64;
    let mut imported = ImportCounts::default();
    let mut profile_ids = HashMap::new();
    let mut done = 0i64;
    let mut optimized_at = IMPORT_BATCH as i64 / 2;
    let imported_so_far = |mut counts: RunCounts, imported: &ImportCounts| {
        counts.created = imported.created;
        counts.updated = imported.updated;
        counts.merged = imported.merged;
        counts
    };
    for from in (0..collected.seq_end).step_by(IMPORT_BATCH) {
        run.check().await.map_err(|e| (imported_so_far(counts, &imported), e))?;
        let (lo, hi, delta) = (from, from + IMPORT_BATCH as i64, collected.delta);
        let batch = match ctx.db.run(move |c| Ok(defender_sync_staging::read_batch(c, lo, hi, delta)?)).await {
            Ok(staged) => collected.complete(staged),
            Err(e) => Err(e),
        };
        let batch = batch.map_err(|e| {
            fail(imported_so_far(counts, &imported), format!("Reading the fetched machines back failed: {e}"))
        })?;
        let (size, modeler, id) = (batch.len() as i64, ctx.modeler.clone(), run.id);
        let mut ids = std::mem::take(&mut profile_ids);
        // The progress goes in with the batch: one commit for both (each commit waits for the
        // database to flush its log), and the count shown is always what is written.
        let outcome = ctx
            .db
            .run_background(move |c| {
                let n = c.write_transaction(|c| {
                    let n = import::import_batch(c, &modeler, &batch, &mut ids)?;
                    integration::progress(c, id, "import", done + size, total)?;
                    Ok::<_, crate::db::DbError>(n)
                })?;
                Ok((n, ids))
            })
            .await;
        match outcome {
            Ok((n, ids)) => {
                imported += n;
                profile_ids = ids;
            }
            Err(e) => {
                let counts = imported_so_far(counts, &imported);
                return Err(fail(counts, format!("Writing the imported machines failed: {e}")));
            }
        }
        done += size;
        // The planner's statistics, each time the import has doubled what it wrote (an
        // unchanged re-sync writes nothing and needs none).
        let written = imported.created + imported.updated + imported.merged;
        if written >= 2 * optimized_at {
            if let Err(e) = ctx.db.optimize_while_writing().await {
                tracing::warn!(error = %e, "could not refresh the database statistics");
            }
            optimized_at = written;
        }
    }
    counts = imported_so_far(counts, &imported);
    // Machines that left Defender are marked stale only after a complete import.
    run.check().await.map_err(|e| (counts, e))?;
    let gone = run
        .fenced("Marking machines that left Defender", false, |c| Ok(defender_machines::mark_missing_stale(c)?))
        .await
        .map_err(|e| (counts, e))?;
    counts.stale = duplicates + gone;
    // Every machine's CVE list is now current as of the start of this fetch: the next sync
    // asks Defender for the changes since then.
    let value = format!("{} {identity}", fetch_started.timestamp());
    ctx.db
        .run(move |c| Ok(jobs::set_setting(c, SNAPSHOT_KEY, &value)?))
        .await
        .map_err(|e| fail(counts, format!("Recording the vulnerability snapshot failed: {e}")))?;
    // Then what follows from the import: the coverage gaps (recomputed every few minutes as
    // well) and the day's risk history (hourly as well), so that a sync's changes show at
    // once. Neither undoes a complete import: a failure is logged and the next round retries.
    let policy = ctx.coverage();
    if let Err(e) = ctx.db.run(move |c| Ok(crate::coverage::refresh(c, policy, Utc::now().timestamp())?)).await {
        tracing::error!(error = %e, "could not refresh the EDR coverage gaps after a sync");
    }
    if let Err(e) = ctx.db.run(move |c| Ok(crate::risk_history::snapshot(c, Utc::now().timestamp())?)).await {
        tracing::error!(error = %e, "could not record the risk history after a sync");
    }
    if let Err(e) = ctx.db.optimize().await {
        tracing::warn!(error = %e, "could not refresh the database statistics");
    }
    Ok(counts)
}

/// The setting that remembers when the stored per-machine CVE lists were last complete (Unix
/// seconds), and for which tenant and API (`<seconds> <identity>`).
pub const SNAPSHOT_KEY: &str = "defender.vulnerability_snapshot";
