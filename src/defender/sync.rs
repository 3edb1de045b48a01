//! One sync: collect the machine inventory, the vulnerabilities (catalog plus the bulk
//! machine×vulnerability listing, never one call per machine) and the alerts, aggregate them per
//! machine, then import in short batch transactions. Everything is fetched before anything is
//! written to the inventory (what was fetched waits in staging tables of its own, so that
//! memory does not grow with the tenant), so a failed or interrupted collection leaves the
//! previous data as it was; each machine is written whole or not at all. One sync runs at a time
//! across all instances: the instance holding the database lease runs it (see `db::lease`), and
//! the run record says so.

use std::collections::{HashMap, HashSet};

use chrono::{DateTime, Utc};

use super::client::dto;
use super::import::{self, ImportCounts, MachineRecord, TopAlert, TopVulnerability};
use super::service::DefenderService;
use super::settings::{self, Settings};
use super::{ClientOptions, Credentials, DefenderClient, DefenderError, Secret, Target};
use crate::db::AnyConnection;
use crate::db::lease::{self, Lease};
use crate::db::models::defender_sync_staging::{
    self, DeviceKeys, StagedAlert, StagedBatch, StagedMachine, StagedVulnerability,
};
use crate::db::models::integration::{self, RunCounts};
use crate::db::models::{audit, defender_machines, jobs};
use crate::domain::mac::normalize_mac;
use crate::domain::risk::RiskLevel;

/// Machines per import transaction: short enough that pages stay responsive meanwhile.
const IMPORT_BATCH: usize = 500;

/// Builds a client for settings; `secret` is the typed one or, when empty, the stored one.
pub fn client_for(s: &Settings, secret: &str, options: ClientOptions) -> Result<DefenderClient, DefenderError> {
    let (login_base_url, api_base_url, scope) = s.hosts();
    DefenderClient::new(
        Credentials {
            tenant_id: s.tenant_id.clone(),
            client_id: s.client_id.clone(),
            client_secret: Secret::new(secret),
        },
        Target { login_base_url, api_base_url, scope },
        options,
    )
}

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
            let result = ctx
                .db
                .run(move |c| {
                    integration::finish_run(c, id, status, counts, &error)?;
                    audit::record(
                        c,
                        audit::NewAudit {
                            actor: &by,
                            action: "defender.sync",
                            target: "Microsoft Defender",
                            outcome: status,
                            details: &details,
                        },
                    )?;
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
            return Err(Stopped::Interrupted(
                "This instance lost its database connection during the sync and stopped; another instance takes over."
                    .into(),
            ));
        }
        Ok(())
    }

    /// Adds a page of fetched machines to the staging table (see [`Collected`]); how many were
    /// new.
    async fn stage(&self, machines: Vec<StagedMachine>) -> Result<usize, Stopped> {
        self.ctx
            .db
            .run_background(move |c| c.write_transaction(|c| Ok(defender_sync_staging::insert(c, &machines)?)))
            .await
            .map_err(|e| Stopped::Failed(format!("Keeping the fetched machines failed: {e}")))
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
        self.ctx
            .db
            .run_background(move |c| {
                c.write_transaction(|c| {
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
            })
            .await
            .map_err(|e| Stopped::Failed(format!("Keeping the fetched {what} failed: {e}")))
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

    async fn clear_staged(&self) -> Result<(), Stopped> {
        self.ctx
            .db
            .run(|c| c.write_transaction(|c| Ok(defender_sync_staging::clear(c)?)))
            .await
            .map(|_| ())
            .map_err(|e| Stopped::Failed(format!("Emptying what the sync staged failed: {e}")))
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
    let client = ctx.client().await.map_err(|e| fail(counts, e))?;
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
        let (size, modeler) = (batch.len() as i64, ctx.modeler.clone());
        let mut ids = std::mem::take(&mut profile_ids);
        let outcome = ctx
            .db
            .run_background(move |c| {
                let n = c.write_transaction(|c| import::import_batch(c, &modeler, &batch, &mut ids))?;
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
        run.record("import", done, total).await;
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
    let gone = ctx
        .db
        .run(move |c| Ok(defender_machines::mark_missing_stale(c)?))
        .await
        .map_err(|e| fail(counts, format!("Marking machines that left Defender failed: {e}")))?;
    counts.stale = duplicates + gone;
    // Every machine's CVE list is now current as of the start of this fetch: the next sync
    // asks Defender for the changes since then.
    let value = format!("{} {identity}", fetch_started.timestamp());
    ctx.db
        .run(move |c| Ok(jobs::set_setting(c, SNAPSHOT_KEY, &value)?))
        .await
        .map_err(|e| fail(counts, format!("Recording the vulnerability snapshot failed: {e}")))?;
    if let Err(e) = ctx.db.optimize().await {
        tracing::warn!(error = %e, "could not refresh the database statistics");
    }
    Ok(counts)
}

/// The setting that remembers when the stored per-machine CVE lists were last complete (Unix
/// seconds), and for which tenant and API (`<seconds> <identity>`).
pub const SNAPSHOT_KEY: &str = "defender.vulnerability_snapshot";
/// Defender keeps 14 days of vulnerability changes; a day less leaves room for slow syncs.
const DELTA_MAX_AGE_SECS: i64 = 13 * 86_400;

/// What the stored CVE lists belong to: another tenant, client or API host means a full fetch.
async fn snapshot_identity(ctx: &DefenderService) -> Result<String, String> {
    let config = ctx
        .db
        .run(|c| Ok(settings::load(c)?))
        .await
        .map_err(|e| format!("The configuration could not be read: {e}"))?
        .ok_or("Microsoft Defender is not configured.")?;
    Ok(format!("{}|{}|{}", config.tenant_id, config.client_id, config.api_base_url))
}

/// The time to ask for changes since, when a delta sync is possible (the machines' stored CVE
/// lists are read page by page while collecting).
async fn delta_base(ctx: &DefenderService, identity: &str) -> Result<Option<DateTime<Utc>>, String> {
    let previous = ctx
        .db
        .run(|c| Ok(jobs::get_setting(c, SNAPSHOT_KEY)?))
        .await
        .map_err(|e| format!("The vulnerability snapshot could not be read: {e}"))?;
    Ok(previous.as_deref().and_then(|v| {
        let (secs, id) = v.split_once(' ')?;
        let at = DateTime::from_timestamp(secs.parse().ok()?, 0)?;
        (id == identity && (Utc::now() - at).num_seconds() < DELTA_MAX_AGE_SECS).then_some(at)
    }))
}

/// The vulnerability catalog of one sync: (level, CVSS, CVE, description) by index.
#[derive(Default)]
struct Catalog {
    index: HashMap<String, u32>,
    vulns: Vec<(RiskLevel, f64, String, String)>,
}

impl Catalog {
    /// The index of a CVE, added with the given severity when the catalog did not list it.
    fn intern(&mut self, cve: &str, severity: Option<&str>) -> u32 {
        if let Some(&i) = self.index.get(cve) {
            return i;
        }
        let level = severity.and_then(RiskLevel::from_defender_vulnerability_severity).unwrap_or(RiskLevel::None);
        self.vulns.push((level, 0.0, cve.to_owned(), String::new()));
        let i = (self.vulns.len() - 1) as u32;
        self.index.insert(cve.to_owned(), i);
        i
    }
}

/// What a fetch leaves for the import. Everything per machine is staged in the database as its
/// page arrives (`defender_sync_staging`: the machines numbered in order of arrival, their
/// vulnerabilities and active alerts); memory holds the CVE catalog, whose size does not follow
/// the tenant's, and the few older records of re-imaged devices.
struct Collected {
    /// How many machines were staged.
    machines: usize,
    /// One past the highest staged number (a machine listed twice leaves a gap).
    seq_end: i64,
    catalog: Catalog,
    /// A delta sync: the staged vulnerabilities are changes to the machines' stored lists.
    delta: bool,
    /// Older records of a device: the staged machine and the machine it duplicates.
    duplicates: HashMap<i64, String>,
}

/// The rows of a list ordered by machine that belong to machine `seq`, taken off its front.
fn take_rows_of<'a, T>(rows: &mut &'a [T], seq: i64, seq_of: impl Fn(&T) -> i64) -> &'a [T] {
    while rows.first().is_some_and(|r| seq_of(r) < seq) {
        *rows = &rows[1..];
    }
    let n = rows.iter().take_while(|r| seq_of(r) == seq).count();
    let (mine, rest) = rows.split_at(n);
    *rows = rest;
    mine
}

impl Collected {
    /// The staged machines of a batch with what the later pages said of them: their records for
    /// the import.
    fn complete(&mut self, batch: StagedBatch) -> anyhow::Result<Vec<MachineRecord>> {
        let (mut vulns, mut alerts, mut stored) =
            (batch.vulnerabilities.as_slice(), batch.alerts.as_slice(), batch.stored.as_slice());
        let mut records = Vec::with_capacity(batch.machines.len());
        for staged in batch.machines {
            let mut r: MachineRecord = serde_json::from_str(&staged.record)?;
            let mut list: Vec<u32> = take_rows_of(&mut stored, staged.seq, |s| s.0)
                .iter()
                .flat_map(|(_, cves)| cves.split(','))
                .filter(|c| !c.is_empty())
                .map(|c| self.catalog.intern(c, None))
                .collect();
            // In order of arrival: a machine that changed device group shows Fixed, then New.
            for v in take_rows_of(&mut vulns, staged.seq, |v| v.seq) {
                let cve = v.cve as u32;
                if v.fixed {
                    list.retain(|&c| c != cve);
                } else {
                    list.push(cve);
                }
            }
            list.sort_unstable();
            list.dedup();
            let catalog = &self.catalog.vulns;
            r.vuln_count = list.len() as i32;
            let mut cves: Vec<&str> = list.iter().map(|&i| catalog[i as usize].2.as_str()).collect();
            cves.sort_unstable();
            r.vuln_cves = cves.join(",");
            r.top_vuln = list
                .iter()
                .map(|&i| &catalog[i as usize])
                .max_by(|a, b| a.0.cmp(&b.0).then(a.1.total_cmp(&b.1)).then(b.2.cmp(&a.2)))
                .map(|(level, _, cve, description)| TopVulnerability {
                    cve: cve.clone(),
                    level: *level,
                    description: description.clone(),
                });
            // The most severe active alert, the newest among equals.
            r.top_alert = take_rows_of(&mut alerts, staged.seq, |a| a.seq)
                .iter()
                .max_by_key(|a| (a.level, a.updated_ms))
                .map(|a| TopAlert {
                    id: a.alert_id.clone(),
                    level: RiskLevel::from_i16(a.level).unwrap_or(RiskLevel::Low),
                    title: a.title.clone(),
                });
            r.duplicate_of = self.duplicates.remove(&staged.seq);
            records.push(r);
        }
        Ok(records)
    }
}

/// Fetches everything, staging it as it arrives; writes nothing else.
async fn collect(
    run: &Running<'_>,
    client: &DefenderClient,
    delta: Option<DateTime<Utc>>,
) -> Result<Collected, Stopped> {
    // Machines, staged page by page and numbered in order of arrival.
    let (mut machines, mut seq_end) = (0usize, 0i64);
    let mut pages = client.machines();
    while let Some(page) = run.page(pages.next_page()).await? {
        let mut staged = Vec::with_capacity(page.len());
        for m in page.iter().filter(|m| !m.id.is_empty()) {
            staged.push(
                stage_of(seq_end, m)
                    .map_err(|e| Stopped::Failed(format!("A fetched machine could not be kept: {e}")))?,
            );
            seq_end += 1;
        }
        machines += run.stage(staged).await?;
        run.progress("machines", machines as i64, 0).await?;
    }
    let duplicates = run.duplicates().await?;

    // The vulnerability catalog: severity, score and description by CVE.
    let mut catalog = Catalog::default();
    let mut pages = client.vulnerabilities();
    while let Some(page) = run.page(pages.next_page()).await? {
        for v in page {
            if catalog.index.contains_key(&v.id) {
                continue;
            }
            let level = v
                .severity
                .as_deref()
                .and_then(RiskLevel::from_defender_vulnerability_severity)
                .unwrap_or(RiskLevel::None);
            catalog.index.insert(v.id.clone(), catalog.vulns.len() as u32);
            catalog.vulns.push((level, v.cvss_v3.unwrap_or(0.0), v.id, v.description.unwrap_or_default()));
        }
        run.progress("vulnerabilities", catalog.vulns.len() as i64, 0).await?;
    }

    // Machine × vulnerability rows: every one from the bulk listing, or on a delta sync
    // Defender's changes since, which the import applies to the machines' stored lists.
    let place = |v: &mut StagedVulnerability, seq| v.seq = seq;
    let (mut rows, mut ord) = (0i64, 0i64);
    let mut staged_row = |machine: &str, cve: u32, fixed: bool| {
        ord += 1;
        (machine.to_owned(), StagedVulnerability { seq: 0, ord, cve: cve as i32, fixed })
    };
    match delta {
        None => {
            let mut pages = client.machine_vulnerabilities();
            while let Some(page) = run.page(pages.next_page()).await? {
                rows += page.len() as i64;
                let staged: Vec<_> = page
                    .iter()
                    .filter_map(|r| {
                        let (machine, cve) = (r.machine_id.as_deref()?, r.cve_id.as_deref()?);
                        Some(staged_row(machine, catalog.intern(cve, r.severity.as_deref()), false))
                    })
                    .collect();
                run.stage_facts("vulnerabilities", staged, place, defender_sync_staging::insert_vulnerabilities)
                    .await?;
                run.progress("machine vulnerabilities", rows, 0).await?;
            }
        }
        Some(since) => {
            let mut pages = client.export_machine_vulnerability_changes(since);
            while let Some(page) = run.page(pages.next_page()).await? {
                rows += page.len() as i64;
                let staged: Vec<_> = page
                    .iter()
                    .filter_map(|r| {
                        let (machine, cve) = (r.device_id.as_deref()?, r.cve_id.as_deref()?);
                        let fixed = r.status.as_deref().is_some_and(|s| s.eq_ignore_ascii_case("Fixed"));
                        Some(staged_row(machine, catalog.intern(cve, r.vulnerability_severity_level.as_deref()), fixed))
                    })
                    .collect();
                run.stage_facts("vulnerability changes", staged, place, defender_sync_staging::insert_vulnerabilities)
                    .await?;
                run.progress("vulnerability changes", rows, 0).await?;
            }
        }
    }

    // Active alerts (the import keeps the most severe of each machine).
    let mut seen_alerts = 0i64;
    let mut pages = client.alerts();
    while let Some(page) = run.page(pages.next_page()).await? {
        seen_alerts += page.len() as i64;
        let staged: Vec<_> = page
            .into_iter()
            .filter(|a| a.is_active())
            .filter_map(|a| {
                let level =
                    a.severity.as_deref().and_then(RiskLevel::from_defender_alert_severity).unwrap_or(RiskLevel::Low);
                let updated = a.last_update_time.or(a.alert_creation_time);
                let alert = StagedAlert {
                    seq: 0,
                    level: level.to_i16(),
                    updated_ms: updated.map(|t| t.timestamp_millis()),
                    title: a.title.unwrap_or_default(),
                    alert_id: a.id,
                };
                Some((a.machine_id?, alert))
            })
            .collect();
        run.stage_facts("alerts", staged, |a, seq| a.seq = seq, defender_sync_staging::insert_alerts).await?;
        run.progress("alerts", seen_alerts, 0).await?;
    }
    Ok(Collected { machines, seq_end, catalog, delta: delta.is_some(), duplicates })
}

/// A fetched machine as it is staged: its record, and the keys that find a device's older
/// records.
fn stage_of(seq: i64, m: &dto::Machine) -> serde_json::Result<StagedMachine> {
    let r = record_of(m);
    Ok(StagedMachine {
        seq,
        mac_key: r.macs.first().cloned().unwrap_or_default(),
        name_key: device_name_key(&r.computer_dns_name),
        merged_into: m.merged_into_machine_id.clone().unwrap_or_default(),
        last_seen: r.last_seen,
        record: serde_json::to_string(&r)?,
        machine_id: r.machine_id,
    })
}

/// The DNS name as it identifies a device across its records: no final dot, lower case.
fn device_name_key(dns_name: &str) -> String {
    dns_name.trim_end_matches('.').to_lowercase()
}

fn ts(t: Option<DateTime<Utc>>) -> i64 {
    t.map(|t| t.timestamp()).unwrap_or(0)
}

pub(crate) fn record_of(m: &dto::Machine) -> MachineRecord {
    let mut macs: Vec<String> =
        m.ip_addresses.iter().filter_map(|a| a.mac_address.as_deref()).filter_map(normalize_mac).collect();
    macs.dedup();
    let mut seen = HashSet::new();
    macs.retain(|m| seen.insert(m.clone()));
    let is_linux = m.os_platform.as_deref().is_some_and(|p| p.eq_ignore_ascii_case("linux"));
    // Windows reports its release in `version` (e.g. 23H2); Linux the distribution in `osVersion`.
    let os_version =
        if is_linux { m.os_version.clone().or(m.version.clone()) } else { m.version.clone().or(m.os_version.clone()) };
    MachineRecord {
        machine_id: m.id.clone(),
        computer_dns_name: m.computer_dns_name.clone().unwrap_or_default(),
        os_platform: m.os_platform.clone().unwrap_or_default(),
        os_version: os_version.unwrap_or_default(),
        os_build: m.os_build.map(|b| b.to_string()).unwrap_or_default(),
        onboarding_status: m.onboarding_status.clone().unwrap_or_default(),
        health_status: m.health_status.clone().unwrap_or_default(),
        risk_score: m.risk_score.clone().unwrap_or_default(),
        exposure_level: m.exposure_level.clone().unwrap_or_default(),
        last_ip: m.last_ip_address.clone().unwrap_or_default(),
        macs,
        first_seen: ts(m.first_seen),
        last_seen: ts(m.last_seen),
        rbac_group: m.rbac_group_name.clone().unwrap_or_default(),
        tags: m.machine_tags.clone(),
        ..Default::default()
    }
}

/// Several records of one device (re-imaged, re-onboarded): the newest is the device, the
/// others are kept as stale duplicates (or of the machine Defender merged them into). Records
/// are grouped by first MAC and by DNS name. Per machine, the machine it duplicates.
fn duplicates_among(machines: &[DeviceKeys]) -> Vec<Option<String>> {
    let mut groups: HashMap<(&str, &str), Vec<usize>> = HashMap::new();
    for (i, m) in machines.iter().enumerate() {
        for key in [("mac", m.mac_key.as_str()), ("name", m.name_key.as_str())].into_iter().filter(|k| !k.1.is_empty())
        {
            groups.entry(key).or_default().push(i);
        }
    }
    let mut duplicate_of: Vec<Option<String>> =
        machines.iter().map(|m| Some(m.merged_into.clone()).filter(|d| !d.is_empty())).collect();
    for members in groups.values().filter(|m| m.len() > 1) {
        let newest = *members
            .iter()
            .max_by(|&&a, &&b| {
                machines[a]
                    .last_seen
                    .cmp(&machines[b].last_seen)
                    .then(machines[b].machine_id.cmp(&machines[a].machine_id))
            })
            .expect("a group has members");
        for &i in members.iter().filter(|&&i| i != newest) {
            duplicate_of[i].get_or_insert_with(|| machines[newest].machine_id.clone());
        }
    }
    duplicate_of
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_newest_record_of_a_device_wins() {
        let keys = |id: &str, mac: &str, name: &str, seen: i64| DeviceKeys {
            seq: 0,
            machine_id: id.into(),
            mac_key: mac.into(),
            name_key: name.into(),
            merged_into: String::new(),
            last_seen: seen,
        };
        let machines = vec![
            keys("old", "aa:aa:aa:aa:aa:01", "pc1", 10),
            keys("new", "aa:aa:aa:aa:aa:01", "pc1", 20),
            keys("other", "aa:aa:aa:aa:aa:02", "pc2", 5),
        ];
        assert_eq!(duplicates_among(&machines), vec![Some("new".to_owned()), None, None]);
    }
}
