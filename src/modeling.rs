//! The modeling engine at work on the inventory: profiles each endpoint from its stored
//! attributes (standard library rules plus integration-owned assignments), keeps the
//! profile-based and duplicate-MAC risk factors, records profile changes, and runs the full
//! re-model in the background with progress. Integrations create, assign and delete their own
//! profiles through [`Modeler::integration_profile`], [`assign`] and [`Modeler::delete_owner`].

use std::collections::{HashMap, HashSet};
use std::sync::Arc;

use serde::{Deserialize, Serialize};

use crate::background::Background;
use crate::db::lease;
use crate::db::models::endpoints::{self, Change, Endpoint};
use crate::db::models::{audit, events, jobs, profiles, risk};
use crate::db::{AnyConnection, Db, DbError, DbResult as QueryResult, now};
use crate::domain::profiles::{Attributes, LibraryError, MatchScore, ProfileLibrary};
use crate::domain::risk::RiskLevel;

pub const REMODEL_JOB: &str = "remodel";
const STALE_KEY: &str = "model_stale";
/// The risk sources this module owns.
pub const PROFILE_SOURCE: &str = "Profile";
pub const DUPLICATE_MAC_SOURCE: &str = "Duplicate MAC";
/// The kind of the event recorded when an endpoint's profile changes.
pub const PROFILE_CHANGED: &str = events::kinds::PROFILE_CHANGED;
/// How far back a host-name change under one MAC counts as a conflicting identity.
const DUPLICATE_WINDOW_SECS: i64 = 7 * 86_400;
const BATCH: i64 = 2_000;

/// One of an endpoint's "other profiles", as stored with it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct OtherProfile {
    pub name: String,
    pub score: String,
}

#[derive(Clone)]
pub struct Modeler {
    library: Arc<ProfileLibrary>,
}

/// The enabled state of every profile, read once per batch or run.
pub struct Enabled {
    /// The library's profiles, in its order.
    standard: Vec<bool>,
    /// Integrations' profiles, by name.
    owned: HashMap<String, bool>,
}

/// An integration's assignments decided but not stored yet: for each endpoint, the owner's
/// profile names and scores, standing in for those of the owner that are stored.
pub struct PendingAssignments<'a> {
    pub owner: &'a str,
    pub by_endpoint: &'a HashMap<i64, Vec<(String, i16)>>,
}

/// A candidate profile for one endpoint.
struct Candidate {
    name: String,
    score: MatchScore,
    /// Integration assignments outrank library rules of the same score: the integration saw the OS.
    from_integration: bool,
    reason: String,
    risky: Option<String>,
}

/// What modeling a batch writes, in a few multi-row statements: the endpoints whose profile
/// outcome changed, their history and events, and every endpoint's profile-based factors.
#[derive(Default)]
pub struct ModelWrites {
    pub profiles: Vec<endpoints::ProfileOutcome>,
    pub history: Vec<Change<'static>>,
    pub events: Vec<(Option<i64>, String)>,
    pub factors: Vec<(i64, &'static str, Option<risk::FactorValue>)>,
}

impl ModelWrites {
    /// Writes it all; returns how many endpoints' profile outcome changed.
    pub fn apply(self, conn: &mut AnyConnection) -> QueryResult<usize> {
        endpoints::set_profiles_many(conn, &self.profiles)?;
        endpoints::record_history_many(conn, &self.history)?;
        events::record_many(conn, PROFILE_CHANGED, &self.events)?;
        risk::set_many(conn, &self.factors)?;
        Ok(self.profiles.len())
    }
}

impl Modeler {
    pub fn standard() -> Result<Self, LibraryError> {
        Ok(Self { library: Arc::new(ProfileLibrary::standard()?) })
    }

    pub fn library(&self) -> &ProfileLibrary {
        &self.library
    }

    /// Makes sure every shipped profile has its row (keeping an admin's enabled choice).
    pub fn sync_standard_profiles(&self, conn: &mut AnyConnection) -> QueryResult<()> {
        let known: HashSet<String> = profiles::all(conn)?.into_iter().map(|p| p.name).collect();
        for p in self.library.profiles().iter().filter(|p| !known.contains(&p.name)) {
            profiles::ensure(conn, &p.name, profiles::STANDARD, &p.category, &p.description, p.enabled_by_default)?;
        }
        Ok(())
    }

    pub fn enabled(&self, conn: &mut AnyConnection) -> QueryResult<Enabled> {
        let (standard, owned): (Vec<_>, Vec<_>) =
            profiles::all(conn)?.into_iter().partition(|p| p.owner == profiles::STANDARD);
        let rows: HashMap<String, bool> = standard.into_iter().map(|p| (p.name, p.enabled)).collect();
        let standard = self
            .library
            .profiles()
            .iter()
            .map(|p| rows.get(&p.name).copied().unwrap_or(p.enabled_by_default))
            .collect();
        Ok(Enabled { standard, owned: owned.into_iter().map(|p| (p.name, p.enabled)).collect() })
    }

    /// Re-evaluates these endpoints from their stored attributes; returns how many changed.
    /// Runs inside the caller's transaction.
    pub fn model(&self, conn: &mut AnyConnection, list: &[Endpoint], enabled: &Enabled) -> QueryResult<usize> {
        self.plan(conn, list, enabled, None)?.apply(conn)
    }

    /// What modeling these endpoints, as given, would write. An integration's import plans
    /// with the endpoints and assignments it has decided and not yet written, so that each
    /// endpoint is written once with its profile and overall risk.
    pub fn plan(
        &self,
        conn: &mut AnyConnection,
        list: &[Endpoint],
        enabled: &Enabled,
        pending: Option<PendingAssignments<'_>>,
    ) -> QueryResult<ModelWrites> {
        if list.is_empty() {
            return Ok(ModelWrites::default());
        }
        let ids: Vec<i64> = list.iter().map(|e| e.id).collect();
        let mut assigned: HashMap<i64, Vec<(String, String, i16)>> = HashMap::new();
        for (id, name, owner, score) in profiles::assignments_of(conn, &ids)? {
            if pending.as_ref().is_none_or(|p| p.owner != owner) {
                assigned.entry(id).or_default().push((name, owner, score));
            }
        }
        if let Some(p) = &pending {
            for (id, list) in p.by_endpoint {
                let enabled_ones = list.iter().filter(|(name, _)| enabled.owned.get(name).copied().unwrap_or(false));
                assigned.entry(*id).or_default().extend(enabled_ones.map(|(n, s)| (n.clone(), p.owner.to_owned(), *s)));
            }
        }
        let conflicts = hostname_conflicts(conn, &ids)?;
        let mut writes = ModelWrites::default();
        for e in list {
            let mut candidates = self.candidates(e, enabled);
            for (name, owner, score) in assigned.remove(&e.id).unwrap_or_default() {
                if let Some(score) = MatchScore::from_i16(score) {
                    candidates.push(Candidate {
                        name,
                        score,
                        from_integration: true,
                        reason: format!("assigned by the {owner} integration"),
                        risky: None,
                    });
                }
            }
            // Highest score first; on a tie an integration's assignment, then the library's order.
            candidates.sort_by(|a, b| b.score.cmp(&a.score).then(b.from_integration.cmp(&a.from_integration)));
            let factor = self.apply(e, &candidates, &mut writes);
            writes.factors.push((e.id, PROFILE_SOURCE, factor));
            let duplicate = conflicts.get(&e.id).map(|names| {
                let listed = names.iter().map(String::as_str).collect::<Vec<_>>().join(", ");
                (
                    RiskLevel::Medium.to_i16(),
                    format!("MAC seen as {listed}"),
                    format!(
                        "The MAC address {} was reported with different host names within the last 7 days: {listed}. \
                     It may be spoofed, or shared by cloned machines.",
                        e.mac.as_deref().unwrap_or("")
                    ),
                )
            });
            writes.factors.push((e.id, DUPLICATE_MAC_SOURCE, duplicate));
        }
        Ok(writes)
    }

    fn candidates(&self, e: &Endpoint, enabled: &Enabled) -> Vec<Candidate> {
        let host = if e.fqdn.is_empty() { e.hostname.as_str() } else { e.fqdn.as_str() };
        let attrs = Attributes {
            mac: e.mac.as_deref(),
            mac_vendor: Some(e.mac_vendor.as_str()).filter(|v| !v.is_empty()),
            hostname: Some(host).filter(|h| !h.is_empty()),
            dhcp_vendor_class: Some(e.dhcp_vendor_class.as_str()).filter(|v| !v.is_empty()),
            dhcp_params: Some(e.dhcp_params.as_str()).filter(|v| !v.is_empty()),
            user_agent: Some(e.user_agent.as_str()).filter(|v| !v.is_empty()),
            os_name: Some(e.os_name.as_str()).filter(|v| !v.is_empty()),
            os_version: Some(e.os_version.as_str()).filter(|v| !v.is_empty()),
        };
        let ev = self.library.evaluate(&attrs, |i| enabled.standard.get(i).copied().unwrap_or(false));
        ev.best
            .into_iter()
            .chain(ev.others)
            .map(|m| {
                let def = &self.library.profiles()[m.profile];
                Candidate {
                    name: def.name.clone(),
                    score: m.score,
                    from_integration: false,
                    reason: def.rules[m.rule].description.clone(),
                    risky: def.risky.clone(),
                }
            })
            .collect()
    }

    /// The profile outcome for one endpoint, added to the writes when it changed; returns the
    /// profile-based risk factor it implies.
    fn apply(&self, e: &Endpoint, candidates: &[Candidate], writes: &mut ModelWrites) -> Option<risk::FactorValue> {
        let (profile, score, reason) = match candidates.first() {
            Some(c) => (c.name.clone(), c.score.to_i16(), c.reason.clone()),
            None => (String::new(), 0, String::new()),
        };
        let others: Vec<OtherProfile> = candidates
            .iter()
            .skip(1)
            .map(|c| OtherProfile { name: c.name.clone(), score: c.score.as_str().to_owned() })
            .collect();
        let others = if others.is_empty() { String::new() } else { serde_json::to_string(&others).unwrap_or_default() };
        let factor = match candidates.first() {
            None => Some((
                RiskLevel::Low.to_i16(),
                "Not Profiled".to_owned(),
                "No profile rule matched what was observed of this endpoint.".to_owned(),
            )),
            Some(Candidate { risky: Some(why), name, .. }) => {
                Some((RiskLevel::High.to_i16(), format!("Risky profile: {name}"), why.clone()))
            }
            Some(_) => None,
        };
        if profile == e.profile && score == e.match_score && others == e.other_profiles && reason == e.profile_reason {
            return factor;
        }
        if profile != e.profile {
            let label = |p: &str| {
                if p.is_empty() { "Not Profiled".to_owned() } else { p.to_owned() }
            };
            writes.history.push(Change {
                endpoint_id: e.id,
                field: "profile",
                old: label(&e.profile),
                new: label(&profile),
                source: "modeling",
            });
            let name = if e.hostname.is_empty() { &e.ip } else { &e.hostname };
            writes.events.push((Some(e.id), format!("{name}: {} → {}", label(&e.profile), label(&profile))));
        }
        writes.profiles.push(endpoints::ProfileOutcome { id: e.id, profile, score, others, reason });
        factor
    }

    /// Models the endpoints with these ids (after ingest or an integration's import).
    pub fn model_ids(&self, conn: &mut AnyConnection, ids: &[i64]) -> QueryResult<usize> {
        let enabled = self.enabled(conn)?;
        let mut changed = 0;
        for chunk in ids.chunks(BATCH as usize) {
            let list = endpoints::find_many(conn, chunk)?;
            changed += self.model(conn, &list, &enabled)?;
        }
        Ok(changed)
    }

    /// Creates (or finds) an integration-owned profile, e.g. `Windows11_23H2` owned by `defender`.
    pub fn integration_profile(
        &self,
        conn: &mut AnyConnection,
        owner: &str,
        name: &str,
        description: &str,
    ) -> QueryResult<profiles::ProfileRow> {
        profiles::ensure(conn, name, owner, "Operating system", description, true)
    }

    /// Deletes all of an owner's profiles and re-models the endpoints that had one.
    pub fn delete_owner(&self, conn: &mut AnyConnection, owner: &str) -> QueryResult<usize> {
        let affected = profiles::delete_owner(conn, owner)?;
        conn.write_transaction(|conn| self.model_ids(conn, &affected))?;
        Ok(affected.len())
    }
}

/// Gives an endpoint an integration-owned profile with a score (Very High for Defender's OS).
pub fn assign(conn: &mut AnyConnection, endpoint_id: i64, profile_id: i64, score: MatchScore) -> QueryResult<()> {
    profiles::assign(conn, endpoint_id, profile_id, score.to_i16())
}

/// For each endpoint with a MAC, the distinct host names it had within the window, when more
/// than one: one MAC seen with conflicting identities.
fn hostname_conflicts(conn: &mut AnyConnection, ids: &[i64]) -> QueryResult<HashMap<i64, Vec<String>>> {
    let since = now() - DUPLICATE_WINDOW_SECS;
    let rows = endpoints::hostname_changes_since(conn, ids, since)?;
    let mut out: HashMap<i64, Vec<String>> = HashMap::new();
    for (id, old, new) in rows {
        let names = out.entry(id).or_default();
        for n in [old, new] {
            if !n.is_empty() && !names.contains(&n) {
                names.push(n);
            }
        }
    }
    out.retain(|_, v| v.len() > 1);
    Ok(out)
}

pub fn is_stale(conn: &mut AnyConnection) -> QueryResult<bool> {
    Ok(jobs::get_setting(conn, STALE_KEY)?.as_deref() == Some("true"))
}

pub fn mark_stale(conn: &mut AnyConnection, stale: bool) -> QueryResult<()> {
    jobs::set_setting(conn, STALE_KEY, if stale { "true" } else { "false" })
}

/// Starts a full re-model in the background unless one is running (here or on another
/// instance); returns its job id.
pub async fn start_remodel(
    db: &Db,
    modeler: &Modeler,
    background: &Background,
    requested_by: &str,
) -> anyhow::Result<Option<i64>> {
    if background.stopping() {
        return Ok(None);
    }
    // As with the sync: the lease holder runs it, and a job still "running" without a holder
    // was left by an instance that died.
    let Some(lease) = db.try_lease(lease::REMODEL).await? else { return Ok(None) };
    let by = requested_by.to_owned();
    let (orphans, job) = db
        .run(move |c| {
            let orphans = jobs::interrupt_running(c, Some(REMODEL_JOB))?;
            let total = endpoints::count_all(c)?;
            Ok((orphans, jobs::start(c, REMODEL_JOB, &by, total)?))
        })
        .await?;
    if orphans > 0 {
        tracing::warn!(job = ?job, "took over the re-model from an instance that stopped during it");
    }
    if let Some(id) = job {
        let (db, modeler, by, bg) = (db.clone(), modeler.clone(), requested_by.to_owned(), background.clone());
        background.spawn(async move {
            let outcome = remodel(&db, &modeler, id, &bg).await;
            let (status, message) = match &outcome {
                Ok((n, changed, secs)) => {
                    ("succeeded", format!("{n} endpoints re-modeled in {secs:.1} s; {changed} changed"))
                }
                Err(_) if bg.stopping() => (
                    "interrupted",
                    "The application was stopped during the re-model: endpoints re-modeled so far keep their new \
                     profile, and the model stays marked stale until a re-model completes."
                        .to_owned(),
                ),
                Err(e) => ("failed", format!("The re-model stopped: {e}")),
            };
            if let Err(e) = outcome {
                tracing::error!(error = %format!("{e:#}"), "full re-model failed");
            }
            let _ = db
                .run(move |c| {
                    jobs::finish(c, id, status, &message)?;
                    audit::entry(&by, "profiles.remodel")
                        .target("all endpoints")
                        .outcome(status)
                        .details(&message)
                        .record(c)?;
                    Ok(())
                })
                .await;
            // Given up only now that the job's end is recorded.
            drop(lease);
        });
    }
    Ok(job)
}

/// Restarts a re-model left running by an instance that died (called by the supervisor; a
/// no-op while its holder lives).
pub async fn take_over_orphaned(db: &Db, modeler: &Modeler, background: &Background) -> anyhow::Result<()> {
    let running = db.run(|c| Ok(jobs::latest(c, REMODEL_JOB)?)).await?.is_some_and(|j| j.is_running());
    if running {
        start_remodel(db, modeler, background, "system").await?;
    }
    Ok(())
}

/// Re-evaluates every endpoint from stored data, in batches of short transactions so that pages
/// and ingest keep working meanwhile. Returns (endpoints, changed, seconds).
pub async fn run_remodel(db: &Db, modeler: &Modeler, job: i64) -> anyhow::Result<(i64, usize, f64)> {
    remodel(db, modeler, job, &Background::default()).await
}

/// As [`run_remodel`], stopping between batches when the application shuts down.
async fn remodel(db: &Db, modeler: &Modeler, job: i64, background: &Background) -> anyhow::Result<(i64, usize, f64)> {
    let started = std::time::Instant::now();
    let m = modeler.clone();
    let enabled = Arc::new(db.run(move |c| Ok(m.enabled(c)?)).await?);
    let (mut after, mut done, mut changed) = (0i64, 0i64, 0usize);
    loop {
        anyhow::ensure!(!background.stopping(), "the application is shutting down");
        let (m, en) = (modeler.clone(), enabled.clone());
        let (count, last, n) = db
            .run_background(move |c| {
                c.write_transaction(|c| {
                    let list = endpoints::page_after(c, after, BATCH)?;
                    let n = m.model(c, &list, &en)?;
                    Ok::<_, DbError>((list.len() as i64, list.last().map(|e| e.id), n))
                })
                .map_err(Into::into)
            })
            .await?;
        done += count;
        changed += n;
        db.run(move |c| Ok(jobs::progress(c, job, done)?)).await?;
        match last {
            Some(id) if count == BATCH => after = id,
            _ => break,
        }
    }
    db.run(|c| Ok(mark_stale(c, false)?)).await?;
    Ok((done, changed, started.elapsed().as_secs_f64()))
}
