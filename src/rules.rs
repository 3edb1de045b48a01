//! Response rules (issue 22): the product acting on policy. Long because a rule's whole life is
//! here, each step with the guard rail that belongs to it: writing and checking, dry run and
//! enabling, approvals, evaluation, and sending with its checks just before each action.
//!
//! An admin writes a rule (a condition over the endpoint, an action), sees which endpoints it
//! meets now (dry run) and enables it;
//! the background supervisor evaluates the enabled rules after each sync and each risk change
//! (`crate::jobs`), one instance at a time.
//!
//! Each time a rule meets an endpoint it records a **decision**. A device action that asks for
//! approval waits for a second person (an Operator or Admin other than the rule's author) until
//! it expires; then it is sent once: the decision's id is the machine action's idempotency key,
//! so a crash between deciding and sending, or two instances sending, sends nothing twice
//! (`defender::actions::submit`). Guard rails: a cooldown per rule and endpoint, a global cap
//! of device actions per hour (well under Defender's documented 100 calls a minute and 1,500 an
//! hour per action API), no new decision while one is open, no action while another is open on
//! the machine, and a kill switch that pauses every rule. Every decision that acts is audited
//! with the rule, what matched and the approver.

use serde::{Deserialize, Serialize};

use crate::db::lease::Fence;
use crate::db::models::rules::{self as store, Decision, Rule, RuleFields, state};
use crate::db::models::{audit, defender_machines, endpoints, events, jobs};
use crate::db::{AnyConnection, Db, is_unique_violation, now};
use crate::defender::actions::{self as device_actions, ActionKind, ActionRequest};
use crate::defender::service::DefenderService;
use crate::defender::tags;
use crate::defender::{IsolationType, ScanType};
use crate::domain::risk::RiskLevel;
use crate::domain::rules::{Condition, RuleAction};

/// The `app_settings` key of the kill switch.
const PAUSED: &str = "rules.paused";
/// How many endpoints one evaluation of a rule decides for at most (the most at risk first);
/// the next evaluation takes the rest.
const PER_EVALUATION: i64 = 500;
/// How many matching endpoints a dry run lists (it counts them all).
pub const DRY_RUN_LISTED: i64 = 50;
/// The kind of event the `send_event` action records.
pub const RULE_MATCHED: &str = "rule.matched";

/// The guard rails an operator sets (`config`).
#[derive(Debug, Clone, Copy)]
pub struct RulesPolicy {
    /// Device actions that all rules together may send in an hour.
    pub actions_per_hour: i64,
    /// How long a decision waits for its approval before it expires.
    pub approval_hours: i64,
    /// Calls to Defender's tag API in an hour, profiles' tags and rules' together
    /// (`crate::defender::tags`).
    pub tag_writes_per_hour: i64,
}

/// A rule as an admin writes it (the form and the API).
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RuleInput {
    pub name: String,
    pub condition: Condition,
    pub action: RuleAction,
    #[serde(default)]
    pub requires_approval: bool,
    /// Minutes before the rule may act on the same endpoint again.
    #[serde(default = "default_cooldown")]
    pub cooldown_minutes: i32,
}

fn default_cooldown() -> i32 {
    1440
}

/// Why a change was not made, or a decision not taken: what the person can correct.
#[derive(Debug, PartialEq, Eq)]
pub enum Refused {
    Invalid(String),
    NameTaken,
    NotFound,
    /// Not now: a dry run is missing, the decision was already taken or expired.
    Conflict(String),
    /// Not by this person (the author approving their own rule's decision).
    NotAllowed(String),
}

impl std::fmt::Display for Refused {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Refused::Invalid(why) | Refused::Conflict(why) | Refused::NotAllowed(why) => f.write_str(why),
            Refused::NameTaken => f.write_str("Another rule has this name."),
            Refused::NotFound => f.write_str("There is no such rule or decision."),
        }
    }
}

/// What a change answers: done, refused for a reason the person can correct, or failed.
pub type Outcome<T> = anyhow::Result<Result<T, Refused>>;

/// Whether `who` (a user name, or `token:NAME` for a token no user made) is a person: only
/// people approve, and a rule that waits for a second person has a person as its author, so
/// that "second" means something.
fn is_person(who: &str) -> bool {
    !who.starts_with("token:")
}

impl RuleInput {
    fn fields_by(&self, who: &str) -> Result<RuleFields, Refused> {
        let fields = self.fields()?;
        if self.requires_approval && !is_person(who) {
            return Err(Refused::Invalid(
                "A rule that waits for a second person's approval is written by a person: use a token a user made, \
                 or the Response rules page."
                    .into(),
            ));
        }
        Ok(fields)
    }

    fn fields(&self) -> Result<RuleFields, Refused> {
        let name = self.name.trim();
        if name.is_empty() || name.chars().count() > 100 || name.chars().any(char::is_control) {
            return Err(Refused::Invalid("Name: 1 to 100 characters of text.".into()));
        }
        let checked = self.condition.check().map_err(Refused::Invalid)?;
        self.action.check().map_err(Refused::Invalid)?;
        if !(1..=525_600).contains(&self.cooldown_minutes) {
            return Err(Refused::Invalid("Cooldown: between 1 minute and 365 days.".into()));
        }
        if self.requires_approval && !self.action.changes_the_machine() {
            return Err(Refused::Invalid("Only a device action can wait for an approval.".into()));
        }
        Ok(RuleFields {
            name: name.to_owned(),
            condition: serde_json::to_string(&checked.canonical()).unwrap_or_default(),
            action: serde_json::to_string(&self.action).unwrap_or_default(),
            requires_approval: self.requires_approval,
            cooldown_minutes: self.cooldown_minutes,
        })
    }
}

/// A stored rule, read back.
#[derive(Debug, Clone)]
pub struct RuleView {
    pub rule: Rule,
    pub condition: Condition,
    pub action: RuleAction,
}

impl RuleView {
    fn of(rule: Rule) -> anyhow::Result<Self> {
        let condition = serde_json::from_str(&rule.condition)?;
        let action = serde_json::from_str(&rule.action)?;
        Ok(RuleView { rule, condition, action })
    }

    pub fn summary(&self) -> String {
        format!("When {}: {}", self.condition.describe(), self.action.describe())
    }
}

pub fn list(c: &mut AnyConnection) -> anyhow::Result<Vec<RuleView>> {
    store::list(c)?.into_iter().map(RuleView::of).collect()
}

pub fn find(c: &mut AnyConnection, id: i64) -> anyhow::Result<Option<RuleView>> {
    store::find(c, id)?.map(RuleView::of).transpose()
}

pub fn create(c: &mut AnyConnection, input: &RuleInput, author: &str) -> Outcome<RuleView> {
    let fields = match input.fields_by(author) {
        Ok(f) => f,
        Err(r) => return Ok(Err(r)),
    };
    let made = c.write_transaction(|c| {
        let rule = store::create(c, &fields, author)?;
        audit::entry(author, "rule.create").target(&rule.name).details(&summary_of(input)).record(c)?;
        Ok::<_, anyhow::Error>(rule)
    });
    match made {
        Ok(rule) => Ok(Ok(RuleView::of(rule)?)),
        Err(e) if is_unique_violation(&e) => Ok(Err(Refused::NameTaken)),
        Err(e) => Err(e),
    }
}

fn summary_of(input: &RuleInput) -> String {
    format!(
        "When {}: {}{}; cooldown {} min",
        input.condition.describe(),
        input.action.describe(),
        if input.requires_approval { ", after approval" } else { "" },
        input.cooldown_minutes
    )
}

/// Changes a rule: it is disabled until dry-run and enabled again.
pub fn update(c: &mut AnyConnection, id: i64, input: &RuleInput, by: &str) -> Outcome<RuleView> {
    let fields = match input.fields_by(by) {
        Ok(f) => f,
        Err(r) => return Ok(Err(r)),
    };
    let changed = c.write_transaction(|c| {
        if store::update(c, id, &fields, by)? == 0 {
            return Ok(None);
        }
        supersede_decisions(c, id)?;
        audit::entry(by, "rule.update").target(&fields.name).details(&summary_of(input)).record(c)?;
        Ok::<_, anyhow::Error>(store::find(c, id)?)
    });
    match changed {
        Ok(Some(rule)) => Ok(Ok(RuleView::of(rule)?)),
        Ok(None) => Ok(Err(Refused::NotFound)),
        Err(e) if is_unique_violation(&e) => Ok(Err(Refused::NameTaken)),
        Err(e) => Err(e),
    }
}

pub fn delete(c: &mut AnyConnection, id: i64, by: &str) -> Outcome<()> {
    c.write_transaction(|c| {
        let Some(rule) = store::find(c, id)? else { return Ok(Err(Refused::NotFound)) };
        store::delete(c, id)?;
        audit::entry(by, "rule.delete").target(&rule.name).record(c)?;
        Ok(Ok(()))
    })
}

/// An endpoint a condition meets, with what the rule looked at.
#[derive(Debug, Clone, Serialize)]
pub struct Matched {
    pub endpoint_id: i64,
    pub hostname: String,
    pub ip: String,
    pub profile: String,
    pub risk: &'static str,
    /// Defender's exposure and alert levels, and tags, when it is a live Defender machine.
    pub exposure: Option<&'static str>,
    pub alert: Option<&'static str>,
    pub tags: Vec<String>,
    pub last_seen: i64,
}

/// Which endpoints a condition meets now: how many, and the first ones (most at risk first).
#[derive(Debug, Clone, Serialize)]
pub struct DryRun {
    pub total: i64,
    pub endpoints: Vec<Matched>,
}

fn matched(c: &mut AnyConnection, ids: &[i64]) -> anyhow::Result<Vec<Matched>> {
    let found = endpoints::find_many(c, ids)?;
    let machines = defender_machines::of_endpoints(c, ids)?;
    let by_id: std::collections::HashMap<i64, _> = found.into_iter().map(|e| (e.id, e)).collect();
    Ok(ids
        .iter()
        .zip(machines)
        .filter_map(|(id, m)| {
            let e = by_id.get(id)?;
            let live = m.filter(|m| !m.stale);
            Some(Matched {
                endpoint_id: e.id,
                hostname: e.hostname.clone(),
                ip: e.ip.clone(),
                profile: e.profile.clone(),
                risk: RiskLevel::label_of(e.risk_level),
                exposure: live.as_ref().map(|m| RiskLevel::label_of(m.top_vuln_severity)),
                alert: live.as_ref().map(|m| RiskLevel::label_of(m.top_alert_severity)),
                tags: live.as_ref().map(|m| m.tag_list()).unwrap_or_default(),
                last_seen: e.last_seen,
            })
        })
        .collect())
}

/// The dry run of a condition not saved (yet).
pub fn dry_run_unsaved(c: &mut AnyConnection, condition: &Condition) -> Outcome<DryRun> {
    let checked = match condition.check() {
        Ok(checked) => checked,
        Err(why) => return Ok(Err(Refused::Invalid(why))),
    };
    let (ids, total) = store::matching(c, &checked, DRY_RUN_LISTED)?;
    Ok(Ok(DryRun { total, endpoints: matched(c, &ids)? }))
}

/// The dry run of a saved rule, remembered: enabling needs one since its last change.
pub fn dry_run(c: &mut AnyConnection, id: i64) -> Outcome<DryRun> {
    let Some(rule) = find(c, id)? else { return Ok(Err(Refused::NotFound)) };
    let run = match dry_run_unsaved(c, &rule.condition)? {
        Ok(run) => run,
        Err(r) => return Ok(Err(r)),
    };
    store::record_dry_run(c, id, run.total)?;
    Ok(Ok(run))
}

/// Enables (after a dry run of the rule as it is) or disables a rule; answers it with how many
/// endpoints it meets now.
pub fn set_enabled(c: &mut AnyConnection, id: i64, enabled: bool, by: &str) -> Outcome<(RuleView, i64)> {
    c.write_transaction(|c| {
        let Some(rule) = find(c, id)? else { return Ok(Err(Refused::NotFound)) };
        if enabled && rule.rule.dry_run_at.is_none() {
            return Ok(Err(Refused::Conflict(
                "Dry-run the rule first: see which endpoints it meets before it acts on them.".into(),
            )));
        }
        let checked = rule.condition.check().map_err(anyhow::Error::msg)?;
        let (_, total) = store::matching(c, &checked, 0)?;
        store::set_enabled(c, id, enabled, by)?;
        supersede_decisions(c, id)?;
        audit::entry(by, if enabled { "rule.enable" } else { "rule.disable" })
            .target(&rule.rule.name)
            .details(&format!("{} endpoints meet it now", total))
            .record(c)?;
        Ok(Ok((find(c, id)?.ok_or_else(|| anyhow::anyhow!("rule {id} vanished"))?, total)))
    })
}

/// After a rule's version moved on: its decisions not yet acted on are superseded (each is
/// checked again before it acts anyway; closing them lets the new version decide at once and
/// takes them off the approvals list).
fn supersede_decisions(c: &mut AnyConnection, id: i64) -> anyhow::Result<()> {
    if let Some(rule) = store::find(c, id)? {
        store::supersede_open(c, id, rule.version, now())?;
    }
    Ok(())
}

pub fn paused(c: &mut AnyConnection) -> anyhow::Result<bool> {
    Ok(jobs::get_setting(c, PAUSED)?.as_deref() == Some("true"))
}

/// The kill switch: while paused no rule decides or sends anything.
pub fn set_paused(c: &mut AnyConnection, paused: bool, by: &str) -> anyhow::Result<()> {
    c.write_transaction(|c| {
        jobs::set_setting(c, PAUSED, if paused { "true" } else { "false" })?;
        audit::entry(by, if paused { "rules.pause" } else { "rules.resume" }).record(c)?;
        Ok(())
    })
}

/// A decision with its rule's name and its endpoint's, for the approvals list.
#[derive(Debug, Clone)]
pub struct DecisionView {
    pub decision: Decision,
    pub rule_name: String,
    pub rule_author: String,
    pub action: String,
    pub hostname: String,
}

/// The decisions in a state (oldest first), or the latest of all (newest first).
pub fn decisions(c: &mut AnyConnection, in_state: Option<&str>, limit: i64) -> anyhow::Result<Vec<DecisionView>> {
    let found = match in_state {
        Some(s) => store::in_state(c, s, limit)?,
        None => store::recent(c, None, limit)?,
    };
    views(c, found)
}

/// A decision as the approvals list shows it.
pub fn decision(c: &mut AnyConnection, id: i64) -> anyhow::Result<Option<DecisionView>> {
    let found = store::find_decision(c, id)?.into_iter().collect();
    Ok(views(c, found)?.pop())
}

/// Decisions with their rules' and endpoints' names.
fn views(c: &mut AnyConnection, found: Vec<Decision>) -> anyhow::Result<Vec<DecisionView>> {
    let rules: std::collections::HashMap<i64, RuleView> = list(c)?.into_iter().map(|r| (r.rule.id, r)).collect();
    let ids: Vec<i64> = found.iter().map(|d| d.endpoint_id).collect();
    let hosts: std::collections::HashMap<i64, String> =
        endpoints::find_many(c, &ids)?.into_iter().map(|e| (e.id, e.hostname)).collect();
    Ok(found
        .into_iter()
        .map(|d| {
            let rule = rules.get(&d.rule_id);
            DecisionView {
                rule_name: rule.map(|r| r.rule.name.clone()).unwrap_or_default(),
                rule_author: rule.map(|r| r.rule.author.clone()).unwrap_or_default(),
                action: rule.map(|r| r.action.describe()).unwrap_or_default(),
                hostname: hosts.get(&d.endpoint_id).cloned().unwrap_or_default(),
                decision: d,
            }
        })
        .collect())
}

/// Approves (`approve`) or declines a decision awaiting approval, as `by`: never the rule's
/// author; a decline needs a reason.
pub fn decide(c: &mut AnyConnection, id: i64, approve: bool, by: &str, reason: &str) -> Outcome<Decision> {
    let reason = reason.trim();
    if reason.chars().count() > 1000 || reason.chars().any(|ch| ch.is_control() && ch != '\n') {
        return Ok(Err(Refused::Invalid("The reason has at most 1000 characters of text.".into())));
    }
    if !approve && reason.is_empty() {
        return Ok(Err(Refused::Invalid("Say why the action is declined.".into())));
    }
    c.write_transaction(|c| {
        let Some(d) = store::find_decision(c, id)? else { return Ok(Err(Refused::NotFound)) };
        let Some(rule) = find(c, d.rule_id)? else { return Ok(Err(Refused::NotFound)) };
        if !is_person(by) {
            return Ok(Err(Refused::NotAllowed(
                "Approvals are a person's: sign in, or use an API token a user made.".into(),
            )));
        }
        if rule.rule.edited_by(by) {
            return Ok(Err(Refused::NotAllowed(
                "A second person approves or declines: not someone who wrote or enabled the rule.".into(),
            )));
        }
        if d.state == state::AWAITING_APPROVAL && d.rule_version != rule.rule.version {
            return Ok(Err(Refused::Conflict("The rule changed since this decision; it decides again.".into())));
        }
        if d.state == state::AWAITING_APPROVAL && d.expires_at.is_some_and(|at| at < now()) {
            store::expire(c, now())?;
            return Ok(Err(Refused::Conflict("This approval expired; the rule will decide again.".into())));
        }
        let to = if approve { state::APPROVED } else { state::DECLINED };
        if store::decide(c, id, state::AWAITING_APPROVAL, to, by, reason)? == 0 {
            return Ok(Err(Refused::Conflict(format!("This decision is no longer awaiting approval ({}).", d.state))));
        }
        audit::entry(by, if approve { "rule.approve" } else { "rule.decline" })
            .target(&rule.rule.name)
            .details(&format!(
                "decision {id} for endpoint {}: {}{}",
                d.endpoint_id,
                rule.action.describe(),
                if reason.is_empty() { String::new() } else { format!(" — {reason}") }
            ))
            .record(c)?;
        Ok(Ok(store::find_decision(c, id)?.ok_or_else(|| anyhow::anyhow!("decision {id} vanished"))?))
    })
}

/// What one evaluation did.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Evaluation {
    pub decided: usize,
    pub sent: usize,
    pub refused: usize,
    pub expired: usize,
    /// Approved decisions left for later by the hourly cap.
    pub capped: usize,
}

/// Evaluates every enabled rule and sends what is approved (unless paused). Run by one
/// instance at a time (`crate::jobs`).
pub async fn evaluate(
    db: &Db,
    defender: &DefenderService,
    policy: RulesPolicy,
    fence: Option<Fence>,
) -> anyhow::Result<Evaluation> {
    let decided = db.run(move |c| decide_all(c, policy, fence)).await?;
    let Some(mut evaluation) = decided else { return Ok(Evaluation::default()) };
    let sent = send_approved(db, defender, policy).await?;
    evaluation.sent = sent.sent;
    evaluation.refused = sent.refused;
    evaluation.capped = sent.capped;
    Ok(evaluation)
}

/// Expires what waited too long, and records a decision for each endpoint an enabled rule meets
/// and may act on. `None` when paused.
fn decide_all(c: &mut AnyConnection, policy: RulesPolicy, fence: Option<Fence>) -> anyhow::Result<Option<Evaluation>> {
    if paused(c)? {
        return Ok(None);
    }
    let mut evaluation = Evaluation::default();
    c.write_transaction(|c| {
        // Decided only while this instance still holds the rules' lease (its session may have
        // died since it was taken, and another instance be deciding now).
        if !crate::db::lease::hold_fence(c, fence)? {
            return Ok(());
        }
        for d in store::expire(c, now())? {
            let rule = store::find(c, d.rule_id)?.map(|r| r.name).unwrap_or_default();
            audit::entry("system", "rule.expire")
                .target(&rule)
                .details(&format!("decision {} for endpoint {}: nobody approved it in time", d.id, d.endpoint_id))
                .record(c)?;
            evaluation.expired += 1;
        }
        for rule in store::enabled(c)? {
            evaluation.decided += decide_for_rule(c, RuleView::of(rule)?, policy)?;
        }
        Ok::<_, anyhow::Error>(())
    })?;
    Ok(Some(evaluation))
}

fn decide_for_rule(c: &mut AnyConnection, rule: RuleView, policy: RulesPolicy) -> anyhow::Result<usize> {
    let Ok(checked) = rule.condition.check() else { return Ok(0) };
    let (ids, _) = store::matching(c, &checked, PER_EVALUATION)?;
    if ids.is_empty() {
        return Ok(0);
    }
    let at = now();
    let since = at - i64::from(rule.rule.cooldown_minutes) * 60;
    let held: std::collections::HashSet<i64> = store::held_back(c, rule.rule.id, &ids, since)?.into_iter().collect();
    let fresh: Vec<i64> = ids.into_iter().filter(|id| !held.contains(id)).collect();
    let seen = matched(c, &fresh)?;
    for m in &seen {
        let values = serde_json::to_string(m)?;
        let (first_state, expires) = if rule.rule.requires_approval {
            (state::AWAITING_APPROVAL, Some(at + policy.approval_hours * 3600))
        } else {
            (state::APPROVED, None)
        };
        let d = store::insert(c, &rule.rule, m.endpoint_id, first_state, &values, expires)?;
        audit::entry("system", "rule.matched")
            .target(&rule.rule.name)
            .details(&format!(
                "decision {} for {} ({}): {}; matched {values}",
                d.id,
                m.hostname,
                m.endpoint_id,
                if rule.rule.requires_approval { "awaiting approval" } else { "no approval needed" }
            ))
            .record(c)?;
        if rule.action == RuleAction::SendEvent {
            let data =
                serde_json::json!({"rule": rule.rule.name, "rule_id": rule.rule.id, "decision": d.id, "matched": m});
            let message = format!("Response rule {} met {}", rule.rule.name, m.hostname);
            events::record_with(c, RULE_MATCHED, &[(Some(m.endpoint_id), message, data)])?;
            store::mark_done(c, d.id, state::SENT, None, "event recorded")?;
        }
    }
    Ok(seen.len())
}

/// Whether a decision may still act, read just before it is sent: rules not paused, its rule
/// unchanged and enabled since it decided, the endpoint still meeting the condition.
enum Standing {
    Paused,
    Stands(Box<RuleView>),
    No(&'static str),
}

fn standing(c: &mut AnyConnection, d: &Decision) -> anyhow::Result<Standing> {
    if paused(c)? {
        return Ok(Standing::Paused);
    }
    let Some(rule) = find(c, d.rule_id)? else { return Ok(Standing::No("The rule was deleted after it decided.")) };
    if !rule.rule.enabled || rule.rule.version != d.rule_version {
        return Ok(Standing::No("The rule was disabled or changed after it decided."));
    }
    let Ok(checked) = rule.condition.check() else { return Ok(Standing::No("The rule's condition is not valid.")) };
    if !store::still_matches(c, &checked, d.endpoint_id)? {
        return Ok(Standing::No("The endpoint no longer meets the rule."));
    }
    Ok(Standing::Stands(Box::new(rule)))
}

/// Sends the approved decisions' device actions, oldest first, within the hourly cap; each one
/// checked again just before it goes ([`standing`]), so that the kill switch stops a round on
/// its way and nothing acts for a rule or a match that no longer holds.
async fn send_approved(db: &Db, defender: &DefenderService, policy: RulesPolicy) -> anyhow::Result<Evaluation> {
    let mut done = Evaluation::default();
    // Tags added this round: at most as many as the profiles' writer makes in a round.
    let mut tagged = 0;
    let approved = db.run(|c| Ok(store::in_state(c, state::APPROVED, 200)?)).await?;
    for d in approved {
        let check = d.clone();
        let (standing, sent) = db.run(move |c| Ok((standing(c, &check)?, store::sent_since(c, now() - 3600)?))).await?;
        let rule = match standing {
            Standing::Paused => break,
            Standing::No(why) => {
                finish(db, &d, None, state::REFUSED, None, why).await?;
                done.refused += 1;
                continue;
            }
            Standing::Stands(rule) => rule,
        };
        // A tag is not a device action: it has its own hourly budget, not the actions' cap.
        if let RuleAction::AddTag { tag } = &rule.action {
            if tagged >= tags::PER_ROUND {
                done.capped += 1;
                continue;
            }
            tagged += 1;
            let caller = format!("{}{}", store::RULE_CALLER, rule.rule.id);
            let added =
                tags::add_for_rule(db, defender, d.endpoint_id, tag, &caller, policy.tag_writes_per_hour).await?;
            match added {
                tags::RuleTag::Done(how) => {
                    done.sent += 1;
                    finish(db, &d, Some(&rule), state::SENT, None, &how).await?;
                }
                tags::RuleTag::Refused(why) => {
                    done.refused += 1;
                    finish(db, &d, Some(&rule), state::REFUSED, None, &why).await?;
                }
                // Stays approved: the next round tries again.
                tags::RuleTag::Later | tags::RuleTag::Retry(_) => done.capped += 1,
            }
            continue;
        }
        if sent >= policy.actions_per_hour {
            done.capped += 1;
            continue;
        }
        let kind = match &rule.action {
            RuleAction::RunScan { scope } => ActionKind::Scan(ScanType::parse(scope).unwrap_or(ScanType::Quick)),
            RuleAction::Isolate { scope } => {
                ActionKind::Isolate(IsolationType::parse(scope).unwrap_or(IsolationType::Full))
            }
            RuleAction::RestrictAppExecution => ActionKind::RestrictAppExecution,
            RuleAction::SendEvent | RuleAction::AddTag { .. } => continue,
        };
        let approver = if d.decided_by.is_empty() {
            "no approval needed".to_owned()
        } else {
            format!("approved by {}", d.decided_by)
        };
        let request = ActionRequest {
            kind,
            comment: device_actions::within_comment_limit(format!(
                "Response rule \"{}\" (decision {}): {}; {approver}",
                rule.rule.name,
                d.id,
                rule.condition.describe()
            )),
            idempotency_key: format!("response-rule-decision-{:012}", d.id),
        };
        // The caller names the rule and stays the same for every attempt at this decision, so
        // that the idempotency key finds an earlier attempt's intent.
        let caller = format!("{}{}", store::RULE_CALLER, rule.rule.id);
        match device_actions::submit(defender, d.endpoint_id, request, &caller).await? {
            Ok(action) if action.status == crate::domain::action::ActionStatus::Failed => {
                done.refused += 1;
                let why = format!("Defender refused the action: {}", action.error);
                finish(db, &d, Some(&rule), state::REFUSED, Some(action.id), &why).await?;
            }
            Ok(action) => {
                done.sent += 1;
                finish(db, &d, Some(&rule), state::SENT, Some(action.id), &approver).await?;
            }
            Err(refusal) => {
                let why = match refusal {
                    device_actions::Refusal::NotFound => device_actions::Refusal::NOT_A_MACHINE.to_owned(),
                    device_actions::Refusal::Invalid(why) => why,
                    device_actions::Refusal::Busy(_) => device_actions::Refusal::ANOTHER_OPEN.to_owned(),
                };
                done.refused += 1;
                finish(db, &d, Some(&rule), state::REFUSED, None, &why).await?;
            }
        }
    }
    if done.capped > 0 {
        tracing::warn!(
            waiting = done.capped,
            cap = policy.actions_per_hour,
            "response rules reached their hourly cap of device actions"
        );
    }
    Ok(done)
}

/// Records how acting on a decision ended, with its audit entry: the rule, the endpoint, what
/// matched, the approver and the machine action.
async fn finish(
    db: &Db,
    d: &Decision,
    rule: Option<&RuleView>,
    to: &'static str,
    action_id: Option<i64>,
    why: &str,
) -> anyhow::Result<()> {
    let (id, why) = (d.id, why.to_owned());
    let target = rule.map(|r| r.rule.name.clone()).unwrap_or_else(|| format!("rule {}", d.rule_id));
    let details = format!(
        "decision {id} for endpoint {}: {}{}; matched {}; {}",
        d.endpoint_id,
        rule.map(|r| r.action.describe()).unwrap_or_default(),
        action_id.map(|a| format!(" (machine action {a})")).unwrap_or_default(),
        d.matched,
        why
    );
    db.run(move |c| {
        c.write_transaction(|c| {
            if store::mark_done(c, id, to, action_id, &why)? > 0 {
                audit::entry("system", "rule.act").target(&target).outcome(to).details(&details).record(c)?;
            }
            Ok(())
        })
    })
    .await
}

/// Runs the evaluations: the supervisor's round (`crate::jobs`), and right after an approval so
/// that an approved action goes out at once. One instance at a time (a lease).
#[derive(Clone)]
pub struct Runner {
    pub db: Db,
    pub defender: DefenderService,
    pub policy: RulesPolicy,
    pub background: crate::background::Background,
}

impl Runner {
    /// One evaluation, unless another instance is running one (it then sends what was approved).
    pub async fn run_once(&self) {
        match self.db.try_lease(crate::db::lease::RESPONSE_RULES).await {
            Ok(Some(lease)) => match evaluate(&self.db, &self.defender, self.policy, lease.fence()).await {
                Ok(e) if e != Evaluation::default() => tracing::info!(
                    decided = e.decided,
                    sent = e.sent,
                    refused = e.refused,
                    expired = e.expired,
                    capped = e.capped,
                    "response rules evaluated"
                ),
                Ok(_) => {}
                Err(e) => tracing::warn!(error = %e, "could not evaluate the response rules"),
            },
            Ok(None) => {}
            Err(e) => tracing::warn!(error = %e, "could not take the response-rules lease"),
        }
    }

    /// The profiles' tag writer, under the same policy (`crate::jobs` runs it every round).
    pub fn tags(&self) -> tags::Writer {
        tags::Writer { db: self.db.clone(), defender: self.defender.clone(), per_hour: self.policy.tag_writes_per_hour }
    }

    /// [`Runner::run_once`] in the background, now.
    pub fn send_soon(&self) {
        let runner = self.clone();
        self.background.spawn(async move { runner.run_once().await });
    }
}
