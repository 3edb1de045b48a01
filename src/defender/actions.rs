//! Machine actions: Run Scan (Quick/Full), Isolate (Full/Selective), Unisolate, Restrict app
//! execution and Remove app restriction, Collect investigation package. The server checks
//! support again (onboarding, OS, isolation state), records the intent before sending (so a
//! double submit sends one request and a crash never sends twice), sends exactly one request,
//! then follows the action to a final state — on demand for a watching page, and in the
//! background for everyone else. Long because an action's one life is told here, from the
//! support check to its end, with each of the races it must lose gracefully (a double click, a
//! crash before sending, Defender's own pending action, two refreshes at once).

use super::machine::Isolation;
use super::platforms::{self, Need};
use super::service::DefenderService;
use super::{DefenderError, IsolationType, MachineAction, ScanType};
use crate::db::models::actions::{self, ActionRow, NewAction, Recorded};
use crate::db::models::audit;
use crate::db::models::defender_machines::{self, DefenderMachine};
use crate::db::models::events;
use crate::db::{AnyConnection, DbResult, now};
use crate::domain::action::ActionStatus;

/// Seconds between two polls of one action by a watching page.
const POLL_EVERY: i64 = 2;
/// An intent not marked sent whose sender has not beaten for this long: the process stopped in
/// between.
const SEND_GRACE: i64 = 60;
/// How often a sender says its intent is still on its way (well within [`SEND_GRACE`]).
const SEND_BEAT: std::time::Duration = std::time::Duration::from_secs(5);
/// How long before its intent an action may have been created (by Defender's clock) and still
/// be the intent's: the intent's time comes from the host that recorded it, the offset to
/// Defender's clock from the host that read the answer, and instances' clocks may differ by this
/// much between them (and the `Date` header has whole seconds).
const CLOCK_SKEW: i64 = 300;
/// An intent whose answer was lost waits this long before Defender's listing may declare it never
/// created: an action created late, or a listing that lags, must not be recorded "not sent".
const UNCONFIRMED_GRACE: i64 = 300;
/// How long before its intent the action in Defender's answer to that intent's own request may
/// have been created (by Defender's clock, through that answer's `Date`): the host that recorded
/// the intent reads the answer, so only whole seconds and the trip separate the two clocks.
const ANSWER_MARGIN: i64 = 10;
const MAX_COMMENT: usize = 1000;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ActionKind {
    Scan(ScanType),
    Isolate(IsolationType),
    Unisolate,
    RestrictAppExecution,
    RemoveAppRestriction,
    CollectInvestigationPackage,
}

impl ActionKind {
    /// Defender's type name, as stored.
    pub fn type_name(self) -> &'static str {
        match self {
            ActionKind::Scan(_) => "RunAntiVirusScan",
            ActionKind::Isolate(_) => "Isolate",
            ActionKind::Unisolate => "Unisolate",
            ActionKind::RestrictAppExecution => "RestrictCodeExecution",
            ActionKind::RemoveAppRestriction => "UnrestrictCodeExecution",
            ActionKind::CollectInvestigationPackage => crate::domain::action::COLLECT_INVESTIGATION_PACKAGE,
        }
    }

    pub fn scope(self) -> &'static str {
        match self {
            ActionKind::Scan(s) => s.as_str(),
            ActionKind::Isolate(i) => i.as_str(),
            ActionKind::Unisolate
            | ActionKind::RestrictAppExecution
            | ActionKind::RemoveAppRestriction
            | ActionKind::CollectInvestigationPackage => "",
        }
    }

    /// An open Defender action of this type with Defender's scope, as [`ActionKind::label`]
    /// names it ("a Quick antivirus scan"); a scope the product does not know is shown as sent.
    fn running_label(self, scope: Option<&str>) -> String {
        let scope = scope.unwrap_or_default();
        let same_type = match self {
            ActionKind::Scan(_) => ScanType::parse(scope).map(ActionKind::Scan),
            ActionKind::Isolate(_) => IsolationType::parse(scope).map(ActionKind::Isolate),
            other => Some(other),
        };
        match same_type {
            Some(kind) => format!("a {}", kind.label()),
            None if scope.is_empty() => match self {
                ActionKind::Scan(_) => "another antivirus scan".into(),
                ActionKind::Isolate(_) => "another isolation".into(),
                other => format!("another {}", other.type_name()),
            },
            None => format!("another {} ({scope})", self.type_name()),
        }
    }

    pub fn label(self) -> String {
        match self {
            ActionKind::Scan(s) => format!("{} antivirus scan", s.as_str()),
            ActionKind::Isolate(i) => format!("{} isolation", i.as_str()),
            ActionKind::Unisolate => "Release from isolation".into(),
            ActionKind::RestrictAppExecution => "Restrict app execution".into(),
            ActionKind::RemoveAppRestriction => "Remove app restriction".into(),
            ActionKind::CollectInvestigationPackage => "Collect investigation package".into(),
        }
    }
}

/// A validated request from the form or the API.
#[derive(Debug, Clone)]
pub struct ActionRequest {
    pub kind: ActionKind,
    pub comment: String,
    pub idempotency_key: String,
}

/// A comment the product writes itself (a response rule's), cut to the length Defender takes
/// and the form allows ([`MAX_COMMENT`] characters), so that a long condition never has its
/// action refused before it is sent.
pub fn within_comment_limit(comment: String) -> String {
    if comment.chars().count() <= MAX_COMMENT {
        return comment;
    }
    let mut cut: String = comment.chars().take(MAX_COMMENT - 1).collect();
    cut.push('…');
    cut
}

/// Reads the form: `action` (scan, isolate, unisolate, restrict, unrestrict, collect), `scope`,
/// `comment`, `confirm`, `key`.
pub fn parse(action: &str, scope: &str, comment: &str, confirm: bool, key: &str) -> Result<ActionRequest, String> {
    let kind = match action {
        "scan" => ActionKind::Scan(ScanType::parse(scope).ok_or("Choose a Quick or Full scan.")?),
        "isolate" => match IsolationType::parse(scope) {
            Some(t @ (IsolationType::Full | IsolationType::Selective)) => ActionKind::Isolate(t),
            _ => return Err("Choose Full or Selective isolation.".into()),
        },
        "unisolate" => ActionKind::Unisolate,
        "restrict" => ActionKind::RestrictAppExecution,
        "unrestrict" => ActionKind::RemoveAppRestriction,
        "collect" => ActionKind::CollectInvestigationPackage,
        _ => return Err("Unknown action.".into()),
    };
    let comment = comment.trim();
    if comment.is_empty() {
        return Err("A comment is required: say why, for the audit trail and for Defender.".into());
    }
    if comment.chars().count() > MAX_COMMENT || comment.chars().any(|c| c.is_control() && c != '\n') {
        return Err(format!("The comment has at most {MAX_COMMENT} characters of text."));
    }
    if matches!(kind, ActionKind::Isolate(_)) && !confirm {
        return Err("Confirm the isolation: the device loses its network connectivity until it is released.".into());
    }
    if kind == ActionKind::RestrictAppExecution && !confirm {
        return Err("Confirm the restriction: only applications signed by Microsoft run on the device until the \
                    restriction is removed."
            .into());
    }
    let key = key.trim();
    if key.len() < 16 || key.len() > 64 || !key.chars().all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_') {
        // The page's form always carries a valid key; an API caller may have sent a bad one.
        return Err("The idempotency key is missing or malformed (16 to 64 letters, digits, - or _): \
                    reload the page and try again."
            .into());
    }
    Ok(ActionRequest { kind, comment: comment.to_owned(), idempotency_key: key.to_owned() })
}

/// Onboarding states that Defender documents as "not onboarded" (`L:machine`, `onboardingStatus`).
/// A machine without the field (Microsoft's own examples never show it) is not refused on that
/// ground: Defender answers for it.
const NOT_ONBOARDED: &[&str] = &["CanBeOnboarded", "Unsupported", "InsufficientInfo"];

/// Whether Defender supports the action on this machine, as documented: not explicitly
/// non-onboarded, and on the platforms and versions of [`platforms`]. Isolate is offered only
/// when the machine is not isolated, Unisolate only when it is (as far as the product knows).
pub fn check_supported(m: &DefenderMachine, kind: ActionKind) -> Result<(), String> {
    check_with(m, &Isolation::stored(m), kind)
}

/// [`check_supported`] with the machine's stored isolation already read (once per page).
fn check_with(m: &DefenderMachine, state: &Isolation, kind: ActionKind) -> Result<(), String> {
    if m.stale {
        return Err("This Defender record is stale; act on the machine's current record.".into());
    }
    if NOT_ONBOARDED.iter().any(|s| m.onboarding_status.trim().eq_ignore_ascii_case(s)) {
        return Err(format!("The machine is not onboarded in Microsoft Defender ({}).", m.onboarding_status));
    }
    let need = match kind {
        ActionKind::Scan(_) => Need::AntivirusScan,
        ActionKind::Isolate(IsolationType::Selective) => Need::SelectiveIsolation,
        ActionKind::Isolate(_) => Need::FullIsolation,
        ActionKind::Unisolate => Need::Release,
        ActionKind::RestrictAppExecution => Need::RestrictAppExecution,
        ActionKind::RemoveAppRestriction => Need::RemoveAppRestriction,
        ActionKind::CollectInvestigationPackage => Need::InvestigationPackage,
    };
    platforms::check(&m.os_platform, &m.os_version, &m.agent_version, need)?;
    // The state as Defender's machine actions tell it (read by every sync), wherever it was
    // asked for: a pending isolation or release started elsewhere is not asked for twice.
    match kind {
        ActionKind::Isolate(_) | ActionKind::Unisolate if !state.pending.is_empty() => Err(format!(
            "{} is already pending in Microsoft Defender{}; wait for the device to carry it out.",
            if state.pending == "Isolate" { "An isolation" } else { "A release from isolation" },
            if state.pending_by.is_empty() { String::new() } else { format!(" (asked for by {})", state.pending_by) }
        )),
        ActionKind::Isolate(_) if m.isolated => Err("The machine is already isolated.".into()),
        ActionKind::Unisolate if !m.isolated => Err("The machine is not isolated.".into()),
        _ => Ok(()),
    }
}

/// The actions offered for a machine, each with its scopes (none for actions without one).
pub type Offered = Vec<(&'static str, Vec<&'static str>)>;

/// The actions to offer for a machine (each with the scopes to choose from).
pub fn offered(m: &DefenderMachine) -> Offered {
    let state = Isolation::stored(m);
    let check_supported = |m, kind| check_with(m, &state, kind);
    let mut out = Vec::new();
    if check_supported(m, ActionKind::Scan(ScanType::Quick)).is_ok() {
        out.push(("scan", vec!["Quick", "Full"]));
    }
    let mut iso = Vec::new();
    for t in [IsolationType::Full, IsolationType::Selective] {
        if check_supported(m, ActionKind::Isolate(t)).is_ok() {
            iso.push(t.as_str());
        }
    }
    if !iso.is_empty() {
        out.push(("isolate", iso));
    }
    if check_supported(m, ActionKind::Unisolate).is_ok() {
        out.push(("unisolate", vec![]));
    }
    // Defender's Machine entity says nothing of a restriction, so both are offered where
    // documented (the portal's button says which one applies).
    for (name, kind) in [
        ("restrict", ActionKind::RestrictAppExecution),
        ("unrestrict", ActionKind::RemoveAppRestriction),
        ("collect", ActionKind::CollectInvestigationPackage),
    ] {
        if check_supported(m, kind).is_ok() {
            out.push((name, vec![]));
        }
    }
    out
}

/// Why an action was not started, for the page.
#[derive(Debug)]
pub enum Refusal {
    NotFound,
    Invalid(String),
    Busy(Box<ActionRow>),
}

impl Refusal {
    /// What the caller is told for `NotFound` and `Busy`: the same words on the page and in the API.
    pub const NOT_A_MACHINE: &str = "This endpoint is not a Microsoft Defender machine.";
    pub const ANOTHER_OPEN: &str = "Another action is still open for this machine; wait for it to finish.";
}

/// Checks, records the intent, sends one request. Returns the action (new or the repeated one).
pub async fn submit(
    ctx: &DefenderService,
    endpoint_id: i64,
    req: ActionRequest,
    user: &str,
) -> anyhow::Result<Result<ActionRow, Refusal>> {
    let (key, user_owned, r) = (scoped_key(user, endpoint_id, &req.idempotency_key), user.to_owned(), req.clone());
    let recorded = ctx
        .db
        // One transaction: the intent and its `action.requested` event (the outbox).
        .run(move |c| {
            c.write_transaction(|c| {
            let Some(m) = defender_machines::of_endpoint(c, endpoint_id)? else { return Ok(Err(Refusal::NotFound)) };
            // A repeat of an earlier submission is answered with it, whatever changed since; a
            // key reused for another action is refused (the IETF Idempotency-Key draft: another
            // payload under a used key is an error), never taken for the earlier one.
            if let Some(existing) = actions::by_key(c, &key)? {
                if existing.action_type != r.kind.type_name() || existing.scope != r.kind.scope() {
                    return Ok(Err(Refusal::Invalid(format!(
                        "This request's idempotency key was already used for another action ({} {}): send a new key.",
                        existing.action_type, existing.scope
                    ))));
                }
                return Ok(Ok(Recorded::Repeat(existing)));
            }
            if let Err(why) = check_supported(&m, r.kind) {
                audit::entry(&user_owned, "defender.action")
                    .target(&m.computer_dns_name)
                    .outcome("refused")
                    .details(&format!("{}: {why}", r.kind.label()))
                    .record(c)?;
                return Ok(Err(Refusal::Invalid(why)));
            }
            let rec = actions::record_intent(
                c,
                &NewAction {
                    idempotency_key: &key,
                    endpoint_id,
                    machine_id: &m.machine_id,
                    action_type: r.kind.type_name(),
                    scope: r.kind.scope(),
                    comment: &r.comment,
                    requested_by: &user_owned,
                },
            )?;
            if let Recorded::New(row) = &rec {
                audit::entry(&user_owned, "defender.action")
                    .target(&m.computer_dns_name)
                    .outcome("requested")
                    .details(&format!("{} (action {}): {}", r.kind.label(), row.id, r.comment))
                    .record(c)?;
                let data = serde_json::json!({
                    "action": row.id, "type": row.action_type, "scope": row.scope,
                    "requested_by": row.requested_by, "machine": m.computer_dns_name,
                });
                let message = format!("{} requested by {}", r.kind.label(), row.requested_by);
                events::record_with(c, events::kinds::ACTION_REQUESTED, &[(Some(endpoint_id), message, data)])?;
            }
            Ok(Ok(rec))
        })
        })
        .await?;
    let row = match recorded {
        Err(refusal) => return Ok(Err(refusal)),
        Ok(Recorded::Repeat(row)) => return Ok(Ok(row)),
        Ok(Recorded::Busy(open)) => return Ok(Err(Refusal::Busy(Box::new(open)))),
        Ok(Recorded::New(row)) => row,
    };
    let outcome = while_sending(ctx, row.id, send(ctx, &row, &req)).await;
    record_outcome(ctx, &row, outcome, user).await
}

/// Sends the recorded intent `row` to Defender once.
async fn send(ctx: &DefenderService, row: &ActionRow, req: &ActionRequest) -> Sent {
    let client = match ctx.client().await {
        Ok(client) => client,
        Err(why) => return Sent::Failed(why.to_string()),
    };
    let (machine, comment) = (row.machine_id.as_str(), req.comment.as_str());
    let answer = match req.kind {
        ActionKind::Scan(t) => client.run_av_scan(machine, comment, t).await,
        ActionKind::Isolate(t) => client.isolate(machine, comment, t).await,
        ActionKind::Unisolate => client.unisolate(machine, comment).await,
        ActionKind::RestrictAppExecution => client.restrict_code_execution(machine, comment).await,
        ActionKind::RemoveAppRestriction => client.unrestrict_code_execution(machine, comment).await,
        ActionKind::CollectInvestigationPackage => client.collect_investigation_package(machine, comment).await,
    };
    match answer {
        Ok(action) => answered(row, req.kind, action),
        Err(DefenderError::ActionAlreadyPending) => match client.machine_actions(machine).await {
            Ok(list) => already_running(row, req.kind, list),
            Err(e) => Sent::Failed(e.plain_words()),
        },
        // The request went out and its answer was lost: the follower asks Defender's listing.
        Err(e) if e.may_have_acted() => Sent::Unconfirmed { why: e.plain_words(), answered_id: String::new() },
        Err(e) => Sent::Failed(e.plain_words()),
    }
}

/// Defender's answer to the request: a new action, or the one already pending ("returns either
/// the already pending machine action or HTTP 400", run-av-scan, unisolate-machine). Without a
/// scope (a nullable property Microsoft's own examples leave out), its creation time and comment
/// tell: an action created before the request ([`created_for_this_request`]) is someone else's
/// pending action, named, whatever its words; Defender echoes our comment on ours; another
/// comment is someone else's; an answer without either cannot tell, and Defender's listing
/// settles it (the follower).
fn answered(row: &ActionRow, kind: ActionKind, a: MachineAction) -> Sent {
    if scope_unsaid(row, &a) && a.kind.as_deref().is_none_or(|t| t == row.action_type) {
        if older_than_the_request(row, &a) {
            return busy_with(kind, &a);
        }
        match a.requestor_comment.as_deref().filter(|c| !c.trim().is_empty()) {
            Some(c) if same_comment(c, &row.comment) => return Sent::Accepted(Box::new(a)),
            None => {
                return Sent::Unconfirmed {
                    why: "Defender accepted the request, but its answer says neither the action's scope nor its \
                          comment."
                        .into(),
                    answered_id: a.id,
                };
            }
            Some(_) => {}
        }
    }
    taken_if_asked_for(row, kind, a)
}

/// Defender refused the action because one of its type is open on the machine: that one is
/// followed when it is what was asked for (see [`taken_if_asked_for`]).
fn already_running(row: &ActionRow, kind: ActionKind, listed: Vec<MachineAction>) -> Sent {
    match listed.into_iter().find(|a| a.kind.as_deref() == Some(kind.type_name()) && !a.is_final()) {
        // Without its scope, an action older than the request is someone else's, whatever its
        // words (the listing was read by the host that sent the request).
        Some(open) if scope_unsaid(row, &open) && older_than_the_request(row, &open) => busy_with(kind, &open),
        Some(open) => taken_if_asked_for(row, kind, open),
        None => Sent::Failed("Defender says an action of this type is already in progress for the machine.".into()),
    }
}

/// Defender's action `open` is followed as the intent `row` when it stands for it (see
/// [`stands_for`]); one of another scope (a Quick scan for a Full one, Selective isolation for
/// Full) is named instead, never shown as this one.
fn taken_if_asked_for(row: &ActionRow, kind: ActionKind, open: MachineAction) -> Sent {
    if stands_for(row, &open) {
        return Sent::Accepted(Box::new(open));
    }
    busy_with(kind, &open)
}

/// This request was not started: Defender is carrying out `open`, named.
fn busy_with(kind: ActionKind, open: &MachineAction) -> Sent {
    Sent::Failed(format!(
        "Defender is already carrying out {} on this device{}; this {} was not started. Ask again when it has \
         finished.",
        kind.running_label(open.scope.as_deref()),
        open.requestor.as_deref().map(|r| format!(" (asked for by {r})")).unwrap_or_default(),
        kind.label(),
    ))
}

/// Whether Defender's action `a` stands for the intent `row`: the one rule for an answer to the
/// request, Defender's pending action when it refused a second one, and an intent a stopped
/// process left unsent. Its type and scope are those asked for. When Defender leaves the scope
/// out (a nullable property), its comment and creation time must be this intent's instead: an
/// action someone else started, or started earlier, does not stand for this one.
fn stands_for(row: &ActionRow, a: &MachineAction) -> bool {
    let same_type = a.kind.as_deref().is_none_or(|t| t == row.action_type);
    // Actions without a scope of their own (release, restrict, collect) match whatever scope
    // Defender reports.
    same_type
        && match a.scope.as_deref().filter(|s| !s.is_empty()) {
            Some(scope) => row.scope.is_empty() || scope.eq_ignore_ascii_case(&row.scope),
            None => row.scope.is_empty() || is_this_request(row, a),
        }
}

/// Whether `a` carries this intent's comment (Defender echoes it as `requestorComment`) and was
/// created after it ([`created_since`]).
fn is_this_request(row: &ActionRow, a: &MachineAction) -> bool {
    a.requestor_comment.as_deref().is_some_and(|c| same_comment(c, &row.comment)) && created_since(row, a)
}

/// Whether Defender created `a` after the intent `row` was recorded, allowing [`CLOCK_SKEW`]:
/// compared by Defender's clock when its answer said what that was (a host minutes off must
/// neither refuse its own action nor take an older one).
fn created_since(row: &ActionRow, a: &MachineAction) -> bool {
    let intent_by_defenders_clock = row.created_at + a.clock_offset.unwrap_or(0);
    a.creation_date_time_utc.is_some_and(|t| t.timestamp() >= intent_by_defenders_clock - CLOCK_SKEW)
}

/// Whether `a` is the action Defender answered the intent `row` with when that answer could not
/// tell whose it was ([`answered`]), and nothing Defender lists contradicts it being this one:
/// not another type or scope, not another comment, not created before the intent.
fn is_the_answered(row: &ActionRow, a: &MachineAction) -> bool {
    let unsaid_or = |said: Option<&str>, ours: &str, same: fn(&str, &str) -> bool| {
        said.filter(|s| !s.is_empty()).is_none_or(|s| ours.is_empty() || same(s, ours))
    };
    !row.answered_action_id.is_empty()
        && a.id == row.answered_action_id
        && unsaid_or(a.kind.as_deref(), &row.action_type, |s, o| s == o)
        && unsaid_or(a.scope.as_deref(), &row.scope, str::eq_ignore_ascii_case)
        && a.requestor_comment.as_deref().filter(|c| !c.trim().is_empty()).is_none_or(|c| same_comment(c, &row.comment))
        && (a.creation_date_time_utc.is_none() || created_since(row, a))
}

/// Whether the intent `row` asked for a scope that Defender's action `a` does not say.
fn scope_unsaid(row: &ActionRow, a: &MachineAction) -> bool {
    !row.scope.is_empty() && a.scope.as_deref().is_none_or(str::is_empty)
}

/// Whether Defender's action `a`, as answered or listed to the host that sent the request of
/// intent `row`, says it was created before that request ([`created_for_this_request`]).
fn older_than_the_request(row: &ActionRow, a: &MachineAction) -> bool {
    a.creation_date_time_utc.is_some() && !created_for_this_request(row, a)
}

/// Whether `a`, in Defender's answer to the request of intent `row` (sent from the host that
/// recorded it), was created since that request: within [`ANSWER_MARGIN`] when the answer said
/// Defender's time, else as [`created_since`] allows.
fn created_for_this_request(row: &ActionRow, a: &MachineAction) -> bool {
    match (a.clock_offset, a.creation_date_time_utc) {
        (Some(offset), Some(t)) => t.timestamp() >= row.created_at + offset - ANSWER_MARGIN,
        _ => created_since(row, a),
    }
}

/// The same words, however the spaces and line ends between them came back.
fn same_comment(echoed: &str, sent: &str) -> bool {
    echoed.split_whitespace().eq(sent.split_whitespace())
}

/// Runs `send`, telling the background follower every [`SEND_BEAT`] that the intent is still on
/// its way: waiting out Defender's throttling may take minutes, and only an intent whose beat
/// stopped for [`SEND_GRACE`] is one a stopped process left unsent.
async fn while_sending<T>(ctx: &DefenderService, id: i64, send: impl std::future::Future<Output = T>) -> T {
    let beat = async {
        let mut every = tokio::time::interval(SEND_BEAT);
        every.tick().await;
        loop {
            every.tick().await;
            if let Err(e) = ctx.db.run(move |c| Ok(actions::still_sending(c, id)?)).await {
                tracing::warn!(action = id, error = %e, "could not record that an action is still being sent");
            }
        }
    };
    tokio::select! {
        sent = send => sent,
        () = beat => unreachable!("the beat never ends"),
    }
}

/// Records the `action.finished` event of an action that reached a final status (in the
/// caller's transaction: the outbox).
fn action_finished(c: &mut AnyConnection, row: &ActionRow, status: ActionStatus) -> DbResult<usize> {
    let data = serde_json::json!({
        "action": row.id, "type": row.action_type, "scope": row.scope,
        "requested_by": row.requested_by, "status": status.as_str(),
    });
    let message = format!("{} ended {status}", row.described());
    events::record_with(c, events::kinds::ACTION_FINISHED, &[(Some(row.endpoint_id), message, data)])
}

/// The idempotency key as stored: the caller's key within the caller and the endpoint, so that
/// the same key from another caller, or for another endpoint, is another request (and never
/// answers with someone else's action).
fn scoped_key(caller: &str, endpoint_id: i64, key: &str) -> String {
    use sha2::Digest;
    hex::encode(sha2::Sha256::digest(format!("{caller}\n{endpoint_id}\n{key}").as_bytes()))
}

enum Sent {
    Accepted(Box<MachineAction>),
    Failed(String),
    /// The request went out and its answer was lost, or said too little to tell whose action it
    /// was: Defender may have created the action. The intent stays unsent with `why` noted, and
    /// the follower settles it from Defender's listing, where the action Defender answered with
    /// (`answered_id`, empty when no answer came) is taken unless the listing says it is another.
    Unconfirmed {
        why: String,
        answered_id: String,
    },
}

async fn record_outcome(
    ctx: &DefenderService,
    row: &ActionRow,
    sent: Sent,
    user: &str,
) -> anyhow::Result<Result<ActionRow, Refusal>> {
    let (id, user, label) = (row.id, user.to_owned(), row.described());
    let machine = row.machine_id.clone();
    let finished = row.clone();
    let updated = ctx
        .db
        // One transaction: the new status and its event (the outbox) commit together.
        .run(move |c| {
            Ok(c.write_transaction(|c| {
                match &sent {
                    Sent::Accepted(a) if actions::recorded_elsewhere(c, id, &a.id)? => {
                        // Defender answered with an action an earlier request of ours follows.
                        let why = format!(
                            "Defender is already carrying out this {label} for an earlier request (Defender action \
                             {}); this one was not started.",
                            a.id
                        );
                        return refused(c, &finished, &user, &why);
                    }
                    Sent::Accepted(a) => {
                        let status = a.status().unwrap_or(ActionStatus::Pending);
                        // Settled meanwhile (declared never sent after its beat stopped): the
                        // record stays as it ended, and the audit says what Defender did.
                        let late = actions::mark_sent(c, id, &a.id, status)? == 0;
                        audit::entry(&user, "defender.action")
                            .target(&machine)
                            .outcome(if late { "sent late" } else { "sent" })
                            .details(&format!("{label} (action {id}); Defender action {}", a.id))
                            .record(c)?;
                        if !late && status.is_final() {
                            record_end(c, &finished, status)?;
                        }
                    }
                    Sent::Unconfirmed { why, answered_id } => {
                        let note = format!("{why} Checking with Defender whether the action was created.");
                        actions::note_unsent(c, id, &note, answered_id)?;
                        audit::entry(&user, "defender.action")
                            .target(&machine)
                            .outcome("unconfirmed")
                            .details(&format!("{label} (action {id}): {why}"))
                            .record(c)?;
                    }
                    Sent::Failed(why) => return refused(c, &finished, &user, why),
                }
                actions::find(c, id)
            })?)
        })
        .await?;
    Ok(updated.ok_or(Refusal::NotFound))
}

/// Records that Defender did not start the intent `row`, with its event and audit entry (unless
/// something settled it meanwhile); the row as it now is.
fn refused(c: &mut AnyConnection, row: &ActionRow, user: &str, why: &str) -> DbResult<Option<ActionRow>> {
    if actions::change_status(c, row.id, ActionStatus::Requested, ActionStatus::Failed, why)? == 1 {
        action_finished(c, row, ActionStatus::Failed)?;
        audit::entry(user, "defender.action")
            .target(&row.machine_id)
            .outcome("failure")
            .details(&format!("{} (action {}): {why}", row.described(), row.id))
            .record(c)?;
    }
    actions::find(c, row.id)
}

/// Records that the action `row` ended with `status`, in the transaction that moved it there:
/// the isolation a success implies, its `action.finished` event (the outbox), the audit entry.
fn record_end(c: &mut AnyConnection, row: &ActionRow, status: ActionStatus) -> DbResult<()> {
    let isolated = match row.action_type.as_str() {
        "Isolate" => Some(true),
        "Unisolate" => Some(false),
        _ => None,
    };
    if let (ActionStatus::Succeeded, Some(isolated)) = (status, isolated) {
        let state = Isolation::completed_now(isolated, &row.requested_by, &row.scope);
        defender_machines::set_isolated(c, &row.machine_id, isolated, &state.details())?;
    }
    action_finished(c, row, status)?;
    audit::entry(&row.requested_by, "defender.action")
        .target(&row.machine_id)
        .outcome(status.as_str())
        .details(&format!("{} (action {}) ended {status}", row.described(), row.id))
        .record(c)?;
    Ok(())
}

/// Asks Defender for the action's status when it is open and was not asked recently; records
/// the change, the isolation state it implies, and the final outcome in the audit log.
/// An action by id, refreshed from Defender while it is open; `None` when there is no such action.
pub async fn find_refreshed(ctx: &DefenderService, id: i64) -> anyhow::Result<Option<ActionRow>> {
    match ctx.db.run(move |c| Ok(actions::find(c, id)?)).await? {
        Some(row) => Ok(Some(refresh(ctx, row).await?)),
        None => Ok(None),
    }
}

pub async fn refresh(ctx: &DefenderService, row: ActionRow) -> anyhow::Result<ActionRow> {
    if !row.is_open() || row.defender_action_id.is_empty() || now() - row.polled_at < POLL_EVERY {
        return Ok(row);
    }
    let client = match ctx.client().await {
        Ok(c) => c,
        Err(_) => return Ok(row),
    };
    let answer = client.machine_action(&row.defender_action_id).await;
    let id = row.id;
    let db_row = row.clone();
    ctx.db
        .run(move |c| c.write_transaction(|c| {
            match answer {
                Ok(a) => {
                    // A status the product does not know is logged, and the stored one kept.
                    let status = a.status().unwrap_or_else(|| {
                        if let Some(unknown) = &a.status {
                            tracing::warn!(action = id, status = %unknown, "Defender reported an unknown action status");
                        }
                        db_row.status
                    });
                    // Only the refresh that moves the stored status records the change: two at
                    // once (a page polling and the follower) must not both record its end.
                    if status != db_row.status
                        && actions::change_status(c, id, db_row.status, status, "")? == 1
                    {
                        if status.is_final() {
                            record_end(c, &db_row, status)?;
                        }
                    } else if status == db_row.status {
                        actions::touch_polled(c, id)?;
                    }
                }
                Err(e) => {
                    tracing::warn!(action = id, error = %e.plain_words(), "could not poll a machine action");
                    actions::touch_polled(c, id)?;
                }
            }
            Ok(actions::find(c, id)?.unwrap_or(db_row))
        }))
        .await
}

/// The background follower: polls open actions nobody watches, and settles intents that were
/// recorded but never sent (the process stopped in between): if Defender has no such action,
/// it was not sent — it is marked failed, never sent again.
pub async fn follow_open(ctx: &DefenderService) -> anyhow::Result<()> {
    // Senders beat by the database's clock, and are judged by it (see `while_sending`).
    let (open, database_now) = ctx.db.run(|c| Ok((actions::open_actions(c)?, crate::db::database_now(c)?))).await?;
    for row in open {
        if row.defender_action_id.is_empty() {
            // Still on its way (its sender beats), or too recent to tell; an answer lost (the
            // sender's note) waits longer.
            let grace = if row.error.is_empty() { SEND_GRACE } else { UNCONFIRMED_GRACE };
            let quiet_since = database_now - grace;
            if row.updated_at > quiet_since {
                continue;
            }
            // Only a listing Defender answered can tell that the intent was never sent: when it
            // cannot be read now (no client, throttled, Defender failing), the intent waits for
            // the next round rather than being declared unsent.
            let listed = match ctx.client().await {
                Ok(client) => client.machine_actions(&row.machine_id).await,
                Err(why) => {
                    tracing::warn!(action = row.id, %why, "cannot settle an unsent intent now");
                    continue;
                }
            };
            let list = match listed {
                Ok(list) => list,
                Err(e) => {
                    tracing::warn!(action = row.id, error = %e.plain_words(), "cannot settle an unsent intent now");
                    continue;
                }
            };
            // Ours is one that stands for it, with its comment, created since, and not an earlier
            // request's: the portal's Quick scan with the same comment is not the Full scan this
            // intent asked for, nor is the isolation an operator asked for with the same words
            // before releasing the machine. Or the one Defender answered with, unless listed as
            // another's.
            let candidates: Vec<MachineAction> = list
                .into_iter()
                .filter(|a| (stands_for(&row, a) && is_this_request(&row, a)) || is_the_answered(&row, a))
                .collect();
            let unsent = row.clone();
            ctx.db
                .run(move |c| {
                    c.write_transaction(|c| {
                    let (mut found, mut earlier) = (None, None);
                    for a in candidates {
                        if !actions::recorded_elsewhere(c, unsent.id, &a.id)? {
                            found = Some(a);
                            break;
                        }
                        earlier.get_or_insert(a.id);
                    }
                    match found {
                        Some(a) => {
                            let status = a.status().unwrap_or(ActionStatus::Pending);
                            // Ended meanwhile (the follower waits a minute at least): recorded as ended.
                            if actions::mark_sent(c, unsent.id, &a.id, status)? == 1 {
                                audit::entry(&unsent.requested_by, "defender.action")
                                    .target(&unsent.machine_id)
                                    .outcome("sent")
                                    .details(&format!(
                                        "action {} found in Defender's listing as Defender action {}{}",
                                        unsent.id,
                                        a.id,
                                        if a.id == unsent.answered_action_id { " (the one it answered with)" } else { "" }
                                    ))
                                    .record(c)?;
                                if status.is_final() {
                                    record_end(c, &unsent, status)?;
                                }
                            }
                        }
                        None => {
                            let why = match earlier {
                                None => "Not sent: Defender has no record of this request (the application stopped, or \
                                         the request was lost, before it reached Defender). Nothing was changed; \
                                         request it again if still needed."
                                    .to_owned(),
                                Some(theirs) => format!(
                                    "Not started: the only such action Defender lists (Defender action {theirs}) is an \
                                     earlier request's, already recorded. Nothing new was changed; request it again if \
                                     still needed."
                                ),
                            };
                            let why = why.as_str();
                            // Not if it was sent, or its sender beat, while Defender was asked.
                            if actions::settle_unsent(c, unsent.id, quiet_since, why)? == 0 {
                                return Ok(());
                            }
                            action_finished(c, &unsent, ActionStatus::Failed)?;
                            crate::db::models::rules::action_never_sent(c, unsent.id, why)?;
                            audit::entry(&unsent.requested_by, "defender.action")
                                .target(&unsent.machine_id)
                                .outcome("failure")
                                .details(&format!("action {} was never sent", unsent.id))
                                .record(c)?;
                        }
                    }
                    Ok(())
                })
                })
                .await?;
        } else {
            refresh(ctx, row).await?;
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn machine(platform: &str, onboarding: &str, isolated: bool) -> DefenderMachine {
        DefenderMachine {
            machine_id: "a".repeat(40),
            endpoint_id: Some(1),
            computer_dns_name: "pc".into(),
            os_platform: platform.into(),
            onboarding_status: onboarding.into(),
            health_status: "Active".into(),
            isolated,
            ..Default::default()
        }
    }

    #[test]
    fn support_follows_the_documentation() {
        let scan = ("scan", vec!["Quick", "Full"]);
        let both = ("isolate", vec!["Full", "Selective"]);
        let restriction = [("restrict", vec![]), ("unrestrict", vec![])];
        let collect = ("collect", vec![]);
        let all: Vec<_> =
            [scan.clone(), both.clone()].into_iter().chain(restriction.clone()).chain([collect.clone()]).collect();
        for platform in ["Windows11", "Windows10", "WindowsServer2019", "WindowsServer2022", "WindowsServer2025"] {
            assert_eq!(offered(&machine(platform, "Onboarded", false)), all, "{platform}");
        }
        for platform in ["WindowsServer2012R2", "WindowsServer2016"] {
            let got = offered(&machine(platform, "Onboarded", false));
            assert_eq!(
                got,
                vec![scan.clone(), both.clone(), collect.clone()],
                "no restriction before 2019: {platform}"
            );
        }
        let linux = machine("Linux", "Onboarded", false);
        assert_eq!(offered(&linux), vec![scan.clone(), ("isolate", vec!["Full"]), collect.clone()]);
        let mac = vec![scan.clone(), both.clone(), collect.clone()];
        assert_eq!(offered(&machine("macOS", "Onboarded", false)), mac, "unknown client version: Defender decides");
        let old_mac = DefenderMachine { agent_version: "101.98.30".into(), ..machine("macOS", "Onboarded", false) };
        assert_eq!(offered(&old_mac), vec![collect.clone()], "below client 101.98.84: no scan, no isolation");
        let old_mac_isolated = DefenderMachine { isolated: true, ..old_mac };
        assert_eq!(
            offered(&old_mac_isolated),
            vec![("unisolate", vec![]), collect.clone()],
            "a release is never held back"
        );
        assert!(offered(&machine("iOS", "Onboarded", false)).is_empty());
        for status in ["CanBeOnboarded", "Unsupported", "InsufficientInfo", "canbeonboarded"] {
            assert!(offered(&machine("Windows10", status, false)).is_empty(), "{status}");
        }
        assert_eq!(offered(&machine("Windows10", "", false)), all, "no onboardingStatus: Defender decides");
        let isolated = machine("Windows10", "onboarded", true);
        let expected: Vec<_> =
            [scan.clone(), ("unisolate", vec![])].into_iter().chain(restriction).chain([collect]).collect();
        assert_eq!(offered(&isolated), expected);
    }

    fn intent(scope: &str, comment: &str) -> ActionRow {
        ActionRow {
            id: 1,
            idempotency_key: "k".into(),
            endpoint_id: 1,
            machine_id: "a".repeat(40),
            action_type: "Isolate".into(),
            scope: scope.into(),
            comment: comment.into(),
            requested_by: "olga".into(),
            status: ActionStatus::Requested,
            defender_action_id: String::new(),
            error: String::new(),
            created_at: now(),
            sent_at: None,
            updated_at: now(),
            polled_at: 0,
            answered_action_id: String::new(),
        }
    }

    fn defenders(answer: serde_json::Value) -> MachineAction {
        serde_json::from_value(answer).unwrap()
    }

    /// Red-team review (third, fresh context): a 201 answer without a scope and without a
    /// comment was recorded Failed ("already carrying out another isolation") while Defender
    /// isolated the machine; a comment echoed with other line ends was not recognised.
    #[test]
    fn an_answer_without_scope_is_told_apart_by_its_comment_or_left_to_the_listing() {
        let row = intent("Full", "contain\nnow");
        let kind = ActionKind::Isolate(IsolationType::Full);
        let a = |extra: serde_json::Value| {
            let mut v = serde_json::json!({"id": "x", "type": "Isolate", "status": "Pending"});
            v.as_object_mut().unwrap().extend(extra.as_object().unwrap().clone());
            defenders(v)
        };
        // Fifth review's last finding: the id of such an answer is kept for the follower.
        match answered(&row, kind, a(serde_json::json!({}))) {
            Sent::Unconfirmed { answered_id, .. } => assert_eq!(answered_id, "x"),
            _ => panic!("an answer without scope or comment is left to the listing"),
        }
        let ours = a(serde_json::json!({"requestorComment": "contain\r\nnow"}));
        assert!(matches!(answered(&row, kind, ours), Sent::Accepted(_)));
        let theirs = a(serde_json::json!({"requestorComment": "from the portal"}));
        assert!(matches!(answered(&row, kind, theirs), Sent::Failed(_)));
        let selective = a(serde_json::json!({"requestorComment": "contain now", "scope": "Selective"}));
        assert!(matches!(answered(&row, kind, selective), Sent::Failed(_)));
        let full = a(serde_json::json!({"scope": "full"}));
        assert!(matches!(answered(&row, kind, full), Sent::Accepted(_)));

        // Fourth review: someone's pending Selective isolation with the same words, created two
        // hours before (by Defender's clock, read from its answer's `Date`), is not this one.
        let at = |secs_ago: i64| {
            let t = chrono::DateTime::from_timestamp(now() - secs_ago, 0).unwrap();
            let mut older = a(serde_json::json!({"requestorComment": "contain now", "creationDateTimeUtc": t}));
            older.clock_offset = Some(0);
            older
        };
        assert!(matches!(answered(&row, kind, at(7200)), Sent::Failed(_)));
        assert!(matches!(answered(&row, kind, at(0)), Sent::Accepted(_)));
        // Final review (medium): the same words, created three minutes before the request by
        // the clock read from this very answer, are someone's pending action; so too in the
        // listing read after Defender refused a second one.
        assert!(matches!(answered(&row, kind, at(180)), Sent::Failed(_)));
        assert!(matches!(already_running(&row, kind, vec![at(180)]), Sent::Failed(_)));
        assert!(matches!(already_running(&row, kind, vec![at(0)]), Sent::Accepted(_)));
        // Fifth review: without a `Date`, the age still counts; without a creation time, the
        // words decide.
        let mut undated = at(7200);
        undated.clock_offset = None;
        assert!(matches!(answered(&row, kind, undated), Sent::Failed(_)));
        let mut timeless = at(0);
        timeless.creation_date_time_utc = None;
        assert!(matches!(answered(&row, kind, timeless), Sent::Accepted(_)));

        // Review of the kept id (medium): an answer without scope or comment created three
        // minutes before the request, by the clock this host read from that answer, is
        // someone's pending action: refused and named, its id not kept for the follower.
        let unsaid = |secs_ago: i64, comment: &str| {
            let t = chrono::DateTime::from_timestamp(now() - secs_ago, 0).unwrap();
            let mut v = a(serde_json::json!({"creationDateTimeUtc": t, "requestorComment": comment}));
            v.clock_offset = Some(0);
            v
        };
        assert!(matches!(answered(&row, kind, unsaid(180, "")), Sent::Failed(_)));
        assert!(matches!(answered(&row, kind, unsaid(0, "")), Sent::Unconfirmed { .. }));
        // An empty comment says nothing, as a null one (the same review, low).
        let mut blank = unsaid(0, " ");
        blank.creation_date_time_utc = None;
        assert!(matches!(answered(&row, kind, blank), Sent::Unconfirmed { .. }));
    }

    /// The fifth review's last finding: an answer with an id but neither scope nor comment, and a
    /// listing that leaves the comment out too, made the follower record "not sent" while
    /// Defender acted. The answered action is taken unless the listing says it is another's.
    #[test]
    fn the_action_defender_answered_with_is_taken_from_the_listing_unless_it_is_anothers() {
        let row = ActionRow { answered_action_id: "x".into(), ..intent("Full", "contain now") };
        let listed = |extra: serde_json::Value| {
            let mut v = serde_json::json!({"id": "x", "type": "Isolate", "status": "Pending"});
            v.as_object_mut().unwrap().extend(extra.as_object().unwrap().clone());
            let mut a = defenders(v);
            a.clock_offset = Some(0);
            a
        };
        assert!(is_the_answered(&row, &listed(serde_json::json!({}))));
        assert!(is_the_answered(&row, &listed(serde_json::json!({"requestorComment": ""}))), "an empty comment");
        assert!(is_the_answered(
            &row,
            &listed(serde_json::json!({"scope": "Full", "requestorComment": "contain  now"}))
        ));
        assert!(!is_the_answered(&row, &listed(serde_json::json!({"id": "y"}))), "another id");
        assert!(!is_the_answered(&row, &listed(serde_json::json!({"requestorComment": "from the portal"}))));
        assert!(!is_the_answered(&row, &listed(serde_json::json!({"scope": "Selective"}))));
        assert!(!is_the_answered(&row, &listed(serde_json::json!({"type": "Unisolate"}))));
        let hours_ago = chrono::DateTime::from_timestamp(now() - 7200, 0).unwrap();
        assert!(!is_the_answered(&row, &listed(serde_json::json!({"creationDateTimeUtc": hours_ago}))));
        let never_answered = intent("Full", "contain now");
        assert!(!is_the_answered(&never_answered, &listed(serde_json::json!({}))));
    }

    #[test]
    fn a_long_comment_of_the_products_own_is_cut_to_what_defender_takes() {
        let long = "é".repeat(MAX_COMMENT + 50);
        let cut = within_comment_limit(long);
        assert_eq!(cut.chars().count(), MAX_COMMENT);
        assert!(cut.ends_with('…'));
        assert!(parse("scan", "Quick", &cut, false, &"k".repeat(20)).is_ok());
        assert_eq!(within_comment_limit("short".into()), "short");
    }

    #[test]
    fn a_comment_and_a_confirmation_are_required() {
        let key = "k".repeat(20);
        assert!(parse("scan", "Quick", "  ", false, &key).unwrap_err().contains("comment is required"));
        assert!(parse("isolate", "Full", "infected", false, &key).unwrap_err().contains("loses its network"));
        assert!(parse("isolate", "Full", "infected", true, &key).is_ok());
        assert!(parse("isolate", "UnManagedDevice", "x", true, &key).is_err());
        assert!(parse("reboot", "", "x", false, &key).is_err());
        assert!(parse("restrict", "", "malware", false, &key).unwrap_err().contains("signed by Microsoft"));
        assert_eq!(parse("restrict", "", "malware", true, &key).unwrap().kind, ActionKind::RestrictAppExecution);
        assert_eq!(parse("unrestrict", "", "clean", false, &key).unwrap().kind, ActionKind::RemoveAppRestriction);
        assert_eq!(
            parse("collect", "", "forensics", false, &key).unwrap().kind,
            ActionKind::CollectInvestigationPackage
        );
        assert!(parse("collect", "", "", false, &key).unwrap_err().contains("comment is required"));
        assert!(parse("scan", "Quick", "x", false, "short").is_err());
    }
}
