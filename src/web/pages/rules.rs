//! Response rules (admins) and their approvals (operators): the pages over `crate::rules`, with
//! the same checks and writes as `/api/v1/rules` and `/api/v1/approvals`. A rule is dry-run
//! before it can be enabled (an htmx fragment lists what it meets now), enabling says again how
//! many endpoints it meets, and the kill switch pauses every rule. A rule is changed in the same
//! form, filled with it (`/rules/{id}/edit`); a change disables it until it is dry-run again.

use actix_web::{HttpResponse, web};
use askama::Template;

use crate::db::models::rules::state;
use crate::domain::rules::{Condition, RuleAction};
use crate::error::AppError;
use crate::rules::{self, DecisionView, DryRun, Refused, RuleInput, RuleView};
use crate::web::auth::{AdminUser, OperatorUser};
use crate::web::filters;
use crate::web::{AppState, Input, Layout, html, input};

/// What the rule form holds: as typed, so that a refused form keeps it.
#[derive(Debug, Clone, Default)]
pub struct FormValues {
    /// The rule being changed; `None` for a new one.
    editing: Option<i64>,
    name: String,
    min_risk: String,
    min_exposure: String,
    min_alert: String,
    profiles: String,
    source: String,
    coverage: String,
    not_seen_days: String,
    tag: String,
    action: String,
    /// The tag the `add_tag` action adds.
    add_tag: String,
    requires_approval: bool,
    cooldown_minutes: String,
}

/// The form's action choices: (value, label).
const ACTIONS: [(&str, &str); 7] = [
    ("send_event", "Send a rule.matched event to the destinations that take it"),
    ("scan_quick", "Run a Quick antivirus scan"),
    ("scan_full", "Run a Full antivirus scan"),
    ("isolate_full", "Isolate (Full)"),
    ("isolate_selective", "Isolate (Selective)"),
    ("restrict_app_execution", "Restrict app execution"),
    ("add_tag", "Add a Defender tag (below)"),
];

/// The action a choice of the form stands for.
fn action_of(value: &str, add_tag: &str) -> Option<RuleAction> {
    Some(match value {
        "send_event" => RuleAction::SendEvent,
        "scan_quick" => RuleAction::RunScan { scope: "Quick".into() },
        "scan_full" => RuleAction::RunScan { scope: "Full".into() },
        "isolate_full" => RuleAction::Isolate { scope: "Full".into() },
        "isolate_selective" => RuleAction::Isolate { scope: "Selective".into() },
        "restrict_app_execution" => RuleAction::RestrictAppExecution,
        "add_tag" => RuleAction::AddTag { tag: add_tag.trim().to_owned() },
        _ => return None,
    })
}

/// The levels a condition may ask for (at least Low).
const LEVELS: [&str; 4] = ["Low", "Medium", "High", "Critical"];

impl FormValues {
    fn new() -> Self {
        FormValues { action: "send_event".into(), cooldown_minutes: "1440".into(), ..Default::default() }
    }

    fn of(pairs: Vec<(String, String)>) -> Self {
        let mut v = FormValues::default();
        for (k, value) in pairs {
            match k.as_str() {
                "name" => v.name = value,
                "min_risk" => v.min_risk = value,
                "min_exposure" => v.min_exposure = value,
                "min_alert" => v.min_alert = value,
                "profiles" => v.profiles = value,
                "source" => v.source = value,
                "coverage" => v.coverage = value,
                "not_seen_days" => v.not_seen_days = value,
                "tag" => v.tag = value,
                "action" => v.action = value,
                "add_tag" => v.add_tag = value,
                "requires_approval" => v.requires_approval = true,
                "cooldown_minutes" => v.cooldown_minutes = value,
                _ => {}
            }
        }
        v
    }

    fn condition(&self) -> Result<Condition, String> {
        let some = |s: &str| Some(s.trim().to_owned()).filter(|s| !s.is_empty());
        let not_seen_days = match self.not_seen_days.trim() {
            "" => None,
            d => Some(d.parse().map_err(|_| "Not seen for: a number of days.".to_owned())?),
        };
        Ok(Condition {
            min_risk: some(&self.min_risk),
            min_exposure: some(&self.min_exposure),
            min_alert: some(&self.min_alert),
            profiles: self.profiles.split(',').filter_map(some).collect(),
            source: some(&self.source),
            coverage: some(&self.coverage),
            not_seen_days,
            tag: some(&self.tag),
        })
    }

    /// The form filled with a saved rule, to change it.
    fn of_rule(r: &RuleView) -> Self {
        // Rules stored before conditions were kept canonical may differ in case or spaces.
        let c = &r.condition.check().map(|c| c.canonical()).unwrap_or_else(|_| r.condition.clone());
        let text = |v: &Option<String>| v.clone().unwrap_or_default();
        let add_tag = match &r.action {
            RuleAction::AddTag { tag } => tag.clone(),
            _ => String::new(),
        };
        FormValues {
            editing: Some(r.rule.id),
            name: r.rule.name.clone(),
            min_risk: text(&c.min_risk),
            min_exposure: text(&c.min_exposure),
            min_alert: text(&c.min_alert),
            profiles: c.profiles.join(", "),
            source: text(&c.source),
            coverage: text(&c.coverage),
            not_seen_days: c.not_seen_days.map(|d| d.to_string()).unwrap_or_default(),
            tag: text(&c.tag),
            action: ACTIONS
                .iter()
                .map(|(v, _)| *v)
                .find(|v| action_of(v, &add_tag).as_ref() == Some(&r.action))
                .unwrap_or_default()
                .to_owned(),
            add_tag,
            requires_approval: r.rule.requires_approval,
            cooldown_minutes: r.rule.cooldown_minutes.to_string(),
        }
    }

    fn input(&self) -> Result<RuleInput, String> {
        let action =
            action_of(&self.action, &self.add_tag).ok_or_else(|| format!("Unknown action {:?}.", self.action))?;
        let cooldown_minutes =
            self.cooldown_minutes.trim().parse().map_err(|_| "Cooldown: a number of minutes.".to_owned())?;
        Ok(RuleInput {
            name: self.name.clone(),
            condition: self.condition()?,
            action,
            requires_approval: self.requires_approval,
            cooldown_minutes,
        })
    }
}

#[derive(Template)]
#[template(path = "rules/list.html")]
struct ListPage {
    layout: Layout,
    rules: Vec<RuleView>,
    paused: bool,
    form: FormValues,
    error: Option<String>,
    notice: Option<String>,
    actions: [(&'static str, &'static str); 7],
    levels: [&'static str; 4],
    coverages: [(&'static str, &'static str); 4],
}

#[derive(Template)]
#[template(path = "rules/_dry_run.html")]
struct DryRunFragment {
    run: Result<DryRun, String>,
    listed: i64,
}

#[derive(Template)]
#[template(path = "rules/approvals.html")]
struct ApprovalsPage {
    layout: Layout,
    awaiting: Vec<DecisionView>,
    recent: Vec<DecisionView>,
    error: Option<String>,
}

async fn render_list(
    user: &AdminUser,
    state: &AppState,
    form: FormValues,
    error: Option<String>,
    notice: Option<String>,
) -> Result<HttpResponse, AppError> {
    let (rules, paused) = state.db.run(|c| Ok((rules::list(c)?, rules::paused(c)?))).await?;
    let page = ListPage {
        layout: Layout::new(user, "rules"),
        rules,
        paused,
        form,
        error,
        notice,
        actions: ACTIONS,
        levels: LEVELS,
        coverages: crate::web::pages::endpoints::coverage_choices(),
    };
    let mut res = html(&page)?;
    if page.error.is_some() {
        *res.status_mut() = actix_web::http::StatusCode::BAD_REQUEST;
    }
    Ok(res)
}

fn see_other(to: &str) -> HttpResponse {
    HttpResponse::SeeOther().insert_header(("Location", to.to_owned())).finish()
}

pub async fn list(user: AdminUser, state: web::Data<AppState>) -> Result<HttpResponse, AppError> {
    render_list(&user, &state, FormValues::new(), None, None).await
}

pub async fn create(
    user: AdminUser,
    state: web::Data<AppState>,
    form: Input<web::Form<Vec<(String, String)>>>,
) -> Result<HttpResponse, AppError> {
    save(user, &state, FormValues::of(input(form)?.into_inner())).await
}

/// Saves the form: a new rule, or a change to the one it edits; both leave the rule disabled
/// until it is dry-run and enabled.
async fn save(user: AdminUser, state: &AppState, values: FormValues) -> Result<HttpResponse, AppError> {
    let typed = match values.input() {
        Ok(typed) => typed,
        Err(why) => return render_list(&user, state, values, Some(why), None).await,
    };
    let (by, editing) = (user.username.clone(), values.editing);
    let saved = state
        .db
        .run(move |c| match editing {
            Some(id) => rules::update(c, id, &typed, &by),
            None => rules::create(c, &typed, &by),
        })
        .await?;
    match saved {
        Ok(rule) => {
            let done = if editing.is_some() { "changed, and disabled" } else { "saved, disabled" };
            let notice = format!("Rule {} {done}: dry-run it, then enable it.", rule.rule.name);
            render_list(&user, state, FormValues::new(), None, Some(notice)).await
        }
        Err(Refused::NotFound) => Err(AppError::NotFound),
        Err(refused) => render_list(&user, state, values, Some(refused.to_string()), None).await,
    }
}

/// The form filled with rule `id`, to change it.
pub async fn edit(
    user: AdminUser,
    state: web::Data<AppState>,
    id: Input<web::Path<i64>>,
) -> Result<HttpResponse, AppError> {
    let id = input(id)?.into_inner();
    let rule = state.db.run(move |c| rules::find(c, id)).await?.ok_or(AppError::NotFound)?;
    render_list(&user, &state, FormValues::of_rule(&rule), None, None).await
}

/// Saves a change to rule `id`; the rule is disabled until it is dry-run and enabled again.
pub async fn update(
    user: AdminUser,
    state: web::Data<AppState>,
    id: Input<web::Path<i64>>,
    form: Input<web::Form<Vec<(String, String)>>>,
) -> Result<HttpResponse, AppError> {
    let id = input(id)?.into_inner();
    save(user, &state, FormValues { editing: Some(id), ..FormValues::of(input(form)?.into_inner()) }).await
}

/// The dry run of the form's condition, unsaved (an htmx fragment).
pub async fn dry_run_unsaved(
    _user: AdminUser,
    state: web::Data<AppState>,
    form: Input<web::Form<Vec<(String, String)>>>,
) -> Result<HttpResponse, AppError> {
    let values = FormValues::of(input(form)?.into_inner());
    let run = match values.condition() {
        Err(why) => Err(why),
        Ok(condition) => state.db.run(move |c| rules::dry_run_unsaved(c, &condition)).await?.map_err(|r| r.to_string()),
    };
    html(&DryRunFragment { run, listed: rules::DRY_RUN_LISTED })
}

/// The dry run of a saved rule, remembered for enabling (an htmx fragment).
pub async fn dry_run(
    _user: AdminUser,
    state: web::Data<AppState>,
    id: Input<web::Path<i64>>,
) -> Result<HttpResponse, AppError> {
    let id = input(id)?.into_inner();
    let run = match state.db.run(move |c| rules::dry_run(c, id)).await? {
        Err(Refused::NotFound) => return Err(AppError::NotFound),
        other => other.map_err(|r| r.to_string()),
    };
    html(&DryRunFragment { run, listed: rules::DRY_RUN_LISTED })
}

async fn set_enabled(user: AdminUser, state: &AppState, id: i64, enabled: bool) -> Result<HttpResponse, AppError> {
    let by = user.username.clone();
    match state.db.run(move |c| rules::set_enabled(c, id, enabled, &by)).await? {
        Ok((rule, matching)) => {
            let notice = if enabled {
                format!("Rule {} enabled: {matching} endpoints meet it now.", rule.rule.name)
            } else {
                format!("Rule {} disabled.", rule.rule.name)
            };
            render_list(&user, state, FormValues::new(), None, Some(notice)).await
        }
        Err(Refused::NotFound) => Err(AppError::NotFound),
        Err(refused) => render_list(&user, state, FormValues::new(), Some(refused.to_string()), None).await,
    }
}

pub async fn enable(
    user: AdminUser,
    state: web::Data<AppState>,
    id: Input<web::Path<i64>>,
) -> Result<HttpResponse, AppError> {
    set_enabled(user, &state, input(id)?.into_inner(), true).await
}

pub async fn disable(
    user: AdminUser,
    state: web::Data<AppState>,
    id: Input<web::Path<i64>>,
) -> Result<HttpResponse, AppError> {
    set_enabled(user, &state, input(id)?.into_inner(), false).await
}

pub async fn delete(
    user: AdminUser,
    state: web::Data<AppState>,
    id: Input<web::Path<i64>>,
) -> Result<HttpResponse, AppError> {
    let id = input(id)?.into_inner();
    let by = user.username.clone();
    state.db.run(move |c| rules::delete(c, id, &by)).await??;
    Ok(see_other("/rules"))
}

/// The kill switch: `paused` present pauses every rule, absent resumes them.
pub async fn pause(
    user: AdminUser,
    state: web::Data<AppState>,
    form: Input<web::Form<Vec<(String, String)>>>,
) -> Result<HttpResponse, AppError> {
    let paused = input(form)?.iter().any(|(k, v)| k == "paused" && v == "true");
    let by = user.username.clone();
    state.db.run(move |c| rules::set_paused(c, paused, &by)).await?;
    Ok(see_other("/rules"))
}

async fn render_approvals(
    user: &OperatorUser,
    state: &AppState,
    error: Option<String>,
) -> Result<HttpResponse, AppError> {
    let (awaiting, recent) = state
        .db
        .run(|c| Ok((rules::decisions(c, Some(state::AWAITING_APPROVAL), 200)?, rules::decisions(c, None, 50)?)))
        .await?;
    let page = ApprovalsPage { layout: Layout::new(user, "approvals"), awaiting, recent, error };
    let mut res = html(&page)?;
    if page.error.is_some() {
        *res.status_mut() = actix_web::http::StatusCode::BAD_REQUEST;
    }
    Ok(res)
}

pub async fn approvals(user: OperatorUser, state: web::Data<AppState>) -> Result<HttpResponse, AppError> {
    render_approvals(&user, &state, None).await
}

async fn decide(
    user: OperatorUser,
    state: &AppState,
    id: i64,
    form: Vec<(String, String)>,
    approve: bool,
) -> Result<HttpResponse, AppError> {
    let reason = form.into_iter().find(|(k, _)| k == "reason").map(|(_, v)| v).unwrap_or_default();
    let by = user.username.clone();
    match state.db.run(move |c| rules::decide(c, id, approve, &by, &reason)).await? {
        Ok(_) => {
            if approve {
                state.rules.send_soon();
            }
            Ok(see_other("/approvals"))
        }
        Err(Refused::NotFound) => Err(AppError::NotFound),
        Err(Refused::NotAllowed(why)) => {
            let mut res = render_approvals(&user, state, Some(why)).await?;
            *res.status_mut() = actix_web::http::StatusCode::FORBIDDEN;
            Ok(res)
        }
        Err(refused) => render_approvals(&user, state, Some(refused.to_string())).await,
    }
}

pub async fn approve(
    user: OperatorUser,
    state: web::Data<AppState>,
    id: Input<web::Path<i64>>,
    form: Input<web::Form<Vec<(String, String)>>>,
) -> Result<HttpResponse, AppError> {
    decide(user, &state, input(id)?.into_inner(), input(form)?.into_inner(), true).await
}

pub async fn decline(
    user: OperatorUser,
    state: web::Data<AppState>,
    id: Input<web::Path<i64>>,
    form: Input<web::Form<Vec<(String, String)>>>,
) -> Result<HttpResponse, AppError> {
    decide(user, &state, input(id)?.into_inner(), input(form)?.into_inner(), false).await
}

/// What a decision's matched values say, for the approver: `risk High · alert High · …`.
pub fn matched_summary(d: &DecisionView) -> String {
    let v: serde_json::Value = serde_json::from_str(&d.decision.matched).unwrap_or_default();
    let mut parts = Vec::new();
    for (key, label) in [("risk", "risk"), ("exposure", "exposure"), ("alert", "alert"), ("profile", "profile")] {
        if let Some(s) = v[key].as_str().filter(|s| !s.is_empty()) {
            parts.push(format!("{label} {s}"));
        }
    }
    if let Some(tags) = v["tags"].as_array().filter(|t| !t.is_empty()) {
        let tags: Vec<&str> = tags.iter().filter_map(|t| t.as_str()).collect();
        parts.push(format!("tags {}", tags.join(", ")));
    }
    parts.join(" · ")
}
