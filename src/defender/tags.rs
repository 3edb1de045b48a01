//! Tags the product writes to Defender (issue 22, tags both ways): an admin maps a profile to a
//! tag (every live Defender machine whose endpoint has the profile gets it), and a response rule
//! can add a tag to the machine it met. Both go through Microsoft's "Add or Remove Tag for
//! Machine" (<https://learn.microsoft.com/en-us/defender-endpoint/api/add-or-remove-machine-tags>):
//! one tag per call, never the whole list, so a machine's other tags are never touched.
//!
//! * **What is there** is what the last sync imported (`defender_machine_tags`) and what the
//!   product wrote since (`defender_tags_written`). A tag already there is not added, and not
//!   recorded, so it is never removed: the product removes only tags it wrote itself, from a
//!   profile's mapping, when the endpoint left the profile or the mapping went. Tags a rule added
//!   stay.
//! * **Budget:** Defender allows 100 calls a minute and 1,500 an hour; the product makes at most
//!   `defender_tag_writes_per_hour` (300 by default) and [`PER_ROUND`] per supervisor round
//!   (15 s: 80 a minute at most), counting every call, answered or not.
//! * **Nothing is lost:** what a round could not do (budget, Defender failing) a later round
//!   computes again; adding a tag twice or removing one that is gone changes nothing at
//!   Defender, so a repeat after a crash is harmless.
//! * **Failing calls back off**, so that one machine Defender keeps refusing (gone since the
//!   last sync, past its retention, a device that cannot be tagged) does not spend the budget
//!   of every other write: a (machine, tag, action) that failed waits [`BACKOFF_FIRST`], doubled
//!   at each failure up to [`BACKOFF_MAX`]. A failure that every call would meet (sign-in,
//!   permission, throttling, Defender down) stops the round, and no round starts for
//!   [`AFTER_STOP`].
//! * One instance at a time (lease `defender-tags`): each call is recorded, with its audit
//!   entry, only while the lease is still this instance's (fenced on PostgreSQL).

use std::collections::HashSet;

use super::service::DefenderService;
use crate::db::Db;
use crate::db::lease::Fence;
use crate::db::models::defender_tags::{self as store, source};
use crate::db::models::{audit, defender_machines, profiles};
use crate::db::now;
use crate::domain::tag;

/// Calls one round makes at most.
pub const PER_ROUND: i64 = 20;
/// How long a write that failed waits before it is tried again; doubled at each failure.
pub const BACKOFF_FIRST: i64 = 15 * 60;
pub const BACKOFF_MAX: i64 = 6 * 3600;
/// How long the writer waits after a failure that stopped a round.
pub const AFTER_STOP: i64 = 5 * 60;

/// Whether a failure is the machine's own (it would not happen to another machine's call).
fn machine_specific(e: &super::DefenderError) -> bool {
    use super::DefenderError as E;
    match e {
        E::NotFound | E::ForeignNotFound(_) | E::InvalidArgument(_) => true,
        E::Api { status, .. } => (400..500).contains(status) && ![401, 403, 408, 429].contains(status),
        _ => false,
    }
}

/// Whether a write that failed `failures` times, the last at `last`, may be tried again now.
fn backed_off(failures: u32, last: i64, at: i64) -> bool {
    let wait = BACKOFF_FIRST.saturating_mul(1 << failures.saturating_sub(1).min(16)).min(BACKOFF_MAX);
    at < last + wait
}

/// Why a mapping was not changed: what the admin can correct.
#[derive(Debug, PartialEq, Eq)]
pub enum Refused {
    Invalid(String),
    NoSuchProfile,
}

impl std::fmt::Display for Refused {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Refused::Invalid(why) => f.write_str(why),
            Refused::NoSuchProfile => f.write_str("There is no such profile."),
        }
    }
}

/// A profile's mapping as pages and the API show it.
#[derive(Debug, Clone, serde::Serialize)]
pub struct ProfileTag {
    pub profile_id: i64,
    pub profile: String,
    pub tag: String,
    pub updated_by: String,
    pub updated_at: i64,
}

/// Every mapping, by profile name.
pub async fn mappings(db: &Db) -> anyhow::Result<Vec<ProfileTag>> {
    db.run(|c| {
        let ids: std::collections::HashMap<String, i64> =
            profiles::all(c)?.into_iter().map(|p| (p.name, p.id)).collect();
        Ok(store::mappings(c)?
            .into_iter()
            .map(|m| ProfileTag {
                profile_id: ids.get(&m.profile).copied().unwrap_or(0),
                profile: m.profile,
                tag: m.tag,
                updated_by: m.updated_by,
                updated_at: m.updated_at,
            })
            .collect())
    })
    .await
}

/// Maps profile `profile_id` to `tag`, or removes its mapping (`tag` empty or `None`), as `by`
/// (an admin), with its audit entry. The writer does the rest in the background.
pub async fn set_mapping(
    db: &Db,
    profile_id: i64,
    tag: Option<&str>,
    by: &str,
) -> anyhow::Result<Result<Option<ProfileTag>, Refused>> {
    let tag = match tag.map(str::trim).filter(|t| !t.is_empty()) {
        None => None,
        Some(t) => match crate::domain::tag::check(t) {
            Ok(t) => Some(t),
            Err(why) => return Ok(Err(Refused::Invalid(why))),
        },
    };
    let by = by.to_owned();
    db.run(move |c| {
        c.write_transaction(|c| {
            let Some(profile) = profiles::find(c, profile_id)? else { return Ok(Err(Refused::NoSuchProfile)) };
            let before = store::mapping(c, &profile.name)?.map(|m| m.tag);
            match &tag {
                Some(t) => {
                    store::set_mapping(c, &profile.name, t, &by)?;
                    audit::entry(&by, "profile.defender_tag")
                        .target(&profile.name)
                        .details(&match &before {
                            Some(b) if b != t => format!("Defender tag {t} (was {b})"),
                            _ => format!("Defender tag {t}"),
                        })
                        .record(c)?;
                }
                None => {
                    if store::remove_mapping(c, &profile.name)? > 0 {
                        audit::entry(&by, "profile.defender_tag")
                            .target(&profile.name)
                            .details(&format!(
                                "no Defender tag (was {}): the tags it wrote are removed",
                                before.unwrap_or_default()
                            ))
                            .record(c)?;
                    }
                }
            }
            Ok::<_, anyhow::Error>(Ok(store::mapping(c, &profile.name)?.map(|m| ProfileTag {
                profile_id,
                profile: m.profile,
                tag: m.tag,
                updated_by: m.updated_by,
                updated_at: m.updated_at,
            })))
        })
    })
    .await
}

/// One call to make.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Write {
    machine_id: String,
    tag: String,
    add: bool,
    /// For the audit: the profile the tag is for (adds).
    why: String,
}

/// A tag call's `Action`, as Defender's body and our record name it.
fn action_name(add: bool) -> &'static str {
    if add { "Add" } else { "Remove" }
}

/// What the mappings want that is not there, and what the product wrote that they no longer
/// want, adds first.
fn plan(c: &mut crate::db::AnyConnection) -> anyhow::Result<Vec<Write>> {
    // Tags are compared as Defender's reader would see them (`tag::same`): a spelling the
    // machine already carries is not added again, nor one of ours removed for a re-cased mapping.
    let mut writes = Vec::new();
    let mut wanted: HashSet<(String, String)> = HashSet::new();
    let written: HashSet<(String, String)> =
        store::written(c, None)?.into_iter().map(|w| (w.machine_id, tag::folded(&w.tag))).collect();
    for m in store::mappings(c)? {
        let synced = store::synced_with_tag(c, &m.tag)?;
        for machine_id in store::machines_of_profile(c, &m.profile)? {
            let key = (machine_id, tag::folded(&m.tag));
            if !synced.contains(&key.0) && !written.contains(&key) && !wanted.contains(&key) {
                writes.push(Write {
                    machine_id: key.0.clone(),
                    tag: m.tag.clone(),
                    add: true,
                    why: format!("profile {}", m.profile),
                });
            }
            wanted.insert(key);
        }
    }
    for w in store::written(c, Some(source::PROFILE))? {
        if !wanted.contains(&(w.machine_id.clone(), tag::folded(&w.tag))) {
            writes.push(Write {
                machine_id: w.machine_id,
                tag: w.tag,
                add: false,
                why: "its endpoint left the profile, or the profile's mapping changed".into(),
            });
        }
    }
    Ok(writes)
}

/// What one round did.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Round {
    pub added: usize,
    pub removed: usize,
    pub failed: usize,
    /// Left for a later round by the budget.
    pub waiting: usize,
}

/// Calls left in the hour.
fn budget(c: &mut crate::db::AnyConnection, per_hour: i64) -> anyhow::Result<i64> {
    Ok((per_hour - store::calls_since(c, now() - 3600)?).max(0))
}

/// Brings Defender's tags in line with the mappings, within the budget. Run by one instance at
/// a time ([`Writer::run_once`]).
pub async fn write_round(
    db: &Db,
    defender: &DefenderService,
    per_hour: i64,
    fence: Option<Fence>,
) -> anyhow::Result<Round> {
    let planned = db
        .run(move |c| {
            // Planned only while the lease is this instance's: one that lost it calls nothing.
            if !crate::db::lease::hold_fence(c, fence)? {
                return Ok(None);
            }
            let at = now();
            store::prune_calls(c, at - BACKOFF_MAX - 3600)?;
            if store::last_stop(c)?.is_some_and(|stopped| at < stopped + AFTER_STOP) {
                return Ok(Some((Vec::new(), 0, 0)));
            }
            let failing = store::failing(c, at - BACKOFF_MAX - 3600)?;
            let (ready, waiting): (Vec<Write>, Vec<Write>) = plan(c)?.into_iter().partition(|w| {
                let key = (w.machine_id.clone(), w.tag.clone(), action_name(w.add).to_owned());
                !failing.get(&key).is_some_and(|&(n, last)| backed_off(n, last, at))
            });
            Ok(Some((ready, waiting.len(), budget(c, per_hour)?)))
        })
        .await?;
    let mut round = Round::default();
    let Some((writes, backing_off, left)) = planned else { return Ok(round) };
    round.waiting = backing_off;
    if writes.is_empty() {
        return Ok(round);
    }
    let allowed = left.clamp(0, PER_ROUND) as usize;
    round.waiting += writes.len().saturating_sub(allowed);
    let client = match defender.client().await {
        Ok(c) => c,
        Err(e) => {
            tracing::debug!(error = %e, "Defender tags wait: no client");
            round.waiting += writes.len();
            return Ok(round);
        }
    };
    let mut writes = writes.into_iter().take(allowed);
    while let Some(w) = writes.next() {
        // `Ok(None)`: the machine carries the tag already (put there since the last sync).
        let answer = if w.add {
            add_unless_there(&client, &w.machine_id, &w.tag).await
        } else {
            client.remove_machine_tag(&w.machine_id, &w.tag).await.map(Some)
        };
        let found_there = matches!(answer, Ok(None));
        let ok = match &answer {
            Ok(_) => true,
            // The machine is gone from Defender: nothing to remove there any more.
            Err(super::DefenderError::NotFound) => !w.add,
            Err(_) => false,
        };
        let stop = answer.as_ref().is_err_and(|e| !machine_specific(e));
        let outcome = match &answer {
            Ok(None) => format!("{}: it carried the tag already, left as someone else's", store::DONE),
            Ok(Some(_)) => store::DONE.to_owned(),
            Err(super::DefenderError::NotFound) if ok => store::DONE.to_owned(),
            Err(e) if stop => format!("{}{}", store::STOPPED, e.plain_words()),
            Err(e) => format!("failed: {}", e.plain_words()),
        };
        let call = Call {
            machine_id: w.machine_id.clone(),
            tag: w.tag.clone(),
            add: w.add,
            found_there,
            ok,
            source: source::PROFILE,
            by: "system".into(),
            details: format!("tag {} ({}): {outcome}", w.tag, w.why),
            outcome,
        };
        let recorded = db
            .run(move |c| {
                c.write_transaction(|c| {
                    if !crate::db::lease::hold_fence(c, fence)? {
                        return Ok(false);
                    }
                    call.record(c)?;
                    Ok::<_, anyhow::Error>(true)
                })
            })
            .await?;
        if !recorded {
            // Another instance holds the work now; it will find what is left.
            break;
        }
        match (ok, w.add) {
            (true, true) if found_there => {}
            (true, true) => round.added += 1,
            (true, false) => round.removed += 1,
            (false, _) => round.failed += 1,
        }
        if stop {
            // Every other call would fail the same way: they wait for a later round.
            round.waiting += writes.count();
            break;
        }
    }
    Ok(round)
}

/// One answered call to Defender's tag API, as it is recorded.
struct Call {
    machine_id: String,
    tag: String,
    add: bool,
    /// An add found the machine carrying the tag already (someone else's).
    found_there: bool,
    /// The machine carries (an add) or no longer carries (a removal) the tag.
    ok: bool,
    /// What asked for it ([`source`]) and who, for the record and the audit.
    source: &'static str,
    by: String,
    outcome: String,
    details: String,
}

impl Call {
    /// The call (counted against the hour's budget, and its failures backed off), what it
    /// means for the tags the product wrote, and its audit entry: in the caller's transaction.
    fn record(&self, c: &mut crate::db::AnyConnection) -> anyhow::Result<()> {
        store::record_call(c, &self.machine_id, &self.tag, action_name(self.add), &self.outcome)?;
        if self.found_there {
            store::observed(c, &self.machine_id, &self.tag)?;
        } else if self.ok && self.add {
            store::record_written(c, &self.machine_id, &self.tag, self.source, &self.by)?;
        } else if self.ok {
            store::forget_written(c, &self.machine_id, &self.tag)?;
        }
        let host = defender_machines::find(c, &self.machine_id)?
            .map(|m| m.computer_dns_name)
            .unwrap_or_else(|| self.machine_id.clone());
        audit::entry(&self.by, if self.add { "defender.tag.add" } else { "defender.tag.remove" })
            .target(&host)
            .outcome(if self.ok { "success" } else { "failed" })
            .details(&self.details)
            .record(c)?;
        Ok(())
    }
}

/// Adds `tag` to the machine unless Defender shows it there already (in any case: Microsoft
/// documents no rule for comparing tags, so a person's `ea:watch` counts as `EA:Watch`), read
/// just before: "already there" is otherwise what the last sync saw, which misses a tag put
/// there since (or beyond the 50 a machine's import keeps), and a tag we did not add must never
/// be recorded as ours, for we remove what we recorded. `Ok(None)` when it was there.
async fn add_unless_there(
    client: &super::DefenderClient,
    machine_id: &str,
    tag: &str,
) -> Result<Option<Vec<String>>, super::DefenderError> {
    let now = client.machine_tags_now(machine_id).await?;
    if now.iter().any(|t| tag::same(t, tag)) {
        return Ok(None);
    }
    client.add_machine_tag(machine_id, tag).await.map(Some)
}

/// How adding a rule's tag ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RuleTag {
    /// Added now, or the machine carried it already.
    Done(String),
    /// The hour's budget is spent: try again later.
    Later,
    /// Defender failed in a way that may pass (throttled, unreachable, 5xx): try again later.
    Retry(String),
    /// Will not work as it is (no live Defender machine, refused by Defender).
    Refused(String),
}

/// Adds `tag` to the live Defender machine of `endpoint_id` for a response rule (`caller`),
/// within the same budget as the profiles' tags, with its audit entry. The tag is recorded as
/// written by a rule: the profiles' writer never removes it.
pub async fn add_for_rule(
    db: &Db,
    defender: &DefenderService,
    endpoint_id: i64,
    tag: &str,
    caller: &str,
    per_hour: i64,
) -> anyhow::Result<RuleTag> {
    let tag = match crate::domain::tag::check(tag) {
        Ok(t) => t,
        Err(why) => return Ok(RuleTag::Refused(why)),
    };
    let (t, who) = (tag.clone(), caller.to_owned());
    let (machine, there, left) = db
        .run(move |c| {
            let m = defender_machines::of_endpoint(c, endpoint_id)?.filter(|m| !m.stale);
            let there = match &m {
                Some(m) => {
                    // A tag the profiles' writer added is the rule's now too: it stays when the
                    // endpoint leaves the profile.
                    store::claim_for_rule(c, &m.machine_id, &t, &who)?;
                    store::synced_has(c, &m.machine_id, &t)? || store::find_written(c, &m.machine_id, &t)?.is_some()
                }
                None => false,
            };
            Ok((m, there, budget(c, per_hour)?))
        })
        .await?;
    let Some(machine) = machine else {
        return Ok(RuleTag::Refused("The endpoint is not a live Microsoft Defender machine.".into()));
    };
    if there {
        return Ok(RuleTag::Done(format!("{} already carries the tag {tag}", machine.computer_dns_name)));
    }
    if left <= 0 {
        return Ok(RuleTag::Later);
    }
    let client = match defender.client().await {
        Ok(c) => c,
        Err(e) => return Ok(RuleTag::Retry(e.to_string())),
    };
    let answer = add_unless_there(&client, &machine.machine_id, &tag).await;
    let found_there = matches!(answer, Ok(None));
    let outcome = match &answer {
        Ok(None) => format!("{}: it carried the tag already", store::DONE),
        Ok(Some(_)) => store::DONE.to_owned(),
        Err(e) => format!("failed: {}", e.plain_words()),
    };
    let call = Call {
        machine_id: machine.machine_id.clone(),
        tag: tag.clone(),
        add: true,
        found_there,
        ok: answer.is_ok(),
        source: source::RULE,
        by: caller.to_owned(),
        details: format!("tag {tag}: {outcome}"),
        outcome,
    };
    db.run(move |c| c.write_transaction(|c| call.record(c))).await?;
    Ok(match answer {
        Ok(_) => RuleTag::Done(format!("tag {tag} added to {}", machine.computer_dns_name)),
        Err(e) if e.is_transient() => RuleTag::Retry(e.plain_words()),
        Err(e) => RuleTag::Refused(format!("Defender refused the tag: {}", e.plain_words())),
    })
}

/// Runs the profiles' tag writing every supervisor round (`crate::jobs`), one instance at a
/// time (lease `defender-tags`).
#[derive(Clone)]
pub struct Writer {
    pub db: Db,
    pub defender: DefenderService,
    pub per_hour: i64,
}

impl Writer {
    pub async fn run_once(&self) -> Option<Round> {
        match self.db.try_lease(crate::db::lease::DEFENDER_TAGS).await {
            Ok(Some(lease)) => match write_round(&self.db, &self.defender, self.per_hour, lease.fence()).await {
                Ok(r) => {
                    if r.added + r.removed + r.failed > 0 {
                        tracing::info!(
                            added = r.added,
                            removed = r.removed,
                            failed = r.failed,
                            waiting = r.waiting,
                            "Defender tags written"
                        );
                    } else if r.waiting > 0 {
                        tracing::debug!(waiting = r.waiting, "Defender tags wait for room or for the integration");
                    }
                    Some(r)
                }
                Err(e) => {
                    tracing::warn!(error = %e, "could not write the profiles' Defender tags");
                    None
                }
            },
            Ok(None) => None,
            Err(e) => {
                tracing::warn!(error = %e, "could not take the defender-tags lease");
                None
            }
        }
    }
}
