//! Response rules (`crate::rules`) for admins: `/api/v1/rules` (list, create), `/{id}` (update,
//! delete), `POST /{id}/dry-run` and `POST /api/v1/rules/dry-run` (an unsaved condition),
//! `POST /{id}/enable` and `/disable`, the kill switch `GET`/`PUT /api/v1/rules/pause`; and the
//! approvals, for operators: `GET /api/v1/approvals`, `POST /api/v1/approvals/{id}/approve` and
//! `/decline`.

use actix_web::{HttpResponse, web};
use serde::{Deserialize, Serialize};
use serde_json::json;

use crate::db::models::rules::state;
use crate::domain::rules::Condition;
use crate::error::AppError;
use crate::rules::{self, DecisionView, DryRun, RuleInput, RuleView};
use crate::web::auth::{ApiAdmin, ApiOperator};
use crate::web::filters::rfc3339;
use crate::web::{AppState, Input, input};

/// A rule as the API shows it.
#[derive(Serialize)]
struct RuleJson {
    id: i64,
    name: String,
    condition: Condition,
    action: crate::domain::rules::RuleAction,
    requires_approval: bool,
    cooldown_minutes: i32,
    enabled: bool,
    author: String,
    summary: String,
    /// The last dry run since the rule's last change (enabling needs one).
    dry_run: Option<serde_json::Value>,
    created_at: Option<String>,
    updated_at: Option<String>,
}

impl From<RuleView> for RuleJson {
    fn from(v: RuleView) -> Self {
        let summary = v.summary();
        let r = v.rule;
        RuleJson {
            id: r.id,
            summary,
            name: r.name,
            condition: v.condition,
            action: v.action,
            requires_approval: r.requires_approval,
            cooldown_minutes: r.cooldown_minutes,
            enabled: r.enabled,
            author: r.author,
            dry_run: r.dry_run_at.map(|at| json!({"at": rfc3339(at), "matching": r.dry_run_count})),
            created_at: rfc3339(r.created_at),
            updated_at: rfc3339(r.updated_at),
        }
    }
}

#[derive(Serialize)]
struct DecisionJson {
    id: i64,
    rule_id: i64,
    rule: String,
    action: String,
    endpoint_id: i64,
    hostname: String,
    state: String,
    /// What the rule saw when it met the endpoint.
    matched: serde_json::Value,
    created_at: Option<String>,
    expires_at: Option<String>,
    decided_at: Option<String>,
    decided_by: String,
    reason: String,
    /// The machine action it started, once sent.
    action_id: Option<i64>,
}

impl From<DecisionView> for DecisionJson {
    fn from(v: DecisionView) -> Self {
        let d = v.decision;
        DecisionJson {
            id: d.id,
            rule_id: d.rule_id,
            rule: v.rule_name,
            action: v.action,
            endpoint_id: d.endpoint_id,
            hostname: v.hostname,
            state: d.state,
            matched: serde_json::from_str(&d.matched).unwrap_or_default(),
            created_at: rfc3339(d.created_at),
            expires_at: d.expires_at.and_then(rfc3339),
            decided_at: d.decided_at.and_then(rfc3339),
            decided_by: d.decided_by,
            reason: d.reason,
            action_id: d.action_id,
        }
    }
}

fn dry_run_json(run: DryRun) -> serde_json::Value {
    let endpoints: Vec<serde_json::Value> = run
        .endpoints
        .into_iter()
        .map(|m| {
            json!({
                "id": m.endpoint_id, "hostname": m.hostname, "ip": m.ip, "profile": m.profile, "risk": m.risk,
                "exposure": m.exposure, "alert": m.alert, "tags": m.tags, "last_seen": rfc3339(m.last_seen),
            })
        })
        .collect();
    json!({ "matching": run.total, "endpoints": endpoints })
}

fn parse<T: serde::de::DeserializeOwned>(body: &[u8], what: &str) -> Result<T, AppError> {
    serde_json::from_slice(body).map_err(|e| AppError::bad_request(format!("The body must be {what}: {e}")))
}

pub async fn list(_caller: ApiAdmin, state: web::Data<AppState>) -> Result<HttpResponse, AppError> {
    let (all, paused) = state.db.run(|c| Ok((rules::list(c)?, rules::paused(c)?))).await?;
    let items: Vec<RuleJson> = all.into_iter().map(Into::into).collect();
    Ok(HttpResponse::Ok().json(json!({ "items": items, "paused": paused })))
}

pub async fn create(
    caller: ApiAdmin,
    state: web::Data<AppState>,
    body: Input<web::Bytes>,
) -> Result<HttpResponse, AppError> {
    let rule: RuleInput = parse(&input(body)?, "a JSON object of the rule")?;
    let author = caller.person();
    let made = state.db.run(move |c| rules::create(c, &rule, &author)).await??;
    Ok(HttpResponse::Created().json(RuleJson::from(made)))
}

pub async fn show(
    _caller: ApiAdmin,
    state: web::Data<AppState>,
    id: Input<web::Path<i64>>,
) -> Result<HttpResponse, AppError> {
    let id = input(id)?.into_inner();
    let found = state.db.run(move |c| rules::find(c, id)).await?.ok_or(AppError::NotFound)?;
    Ok(HttpResponse::Ok().json(RuleJson::from(found)))
}

pub async fn update(
    caller: ApiAdmin,
    state: web::Data<AppState>,
    id: Input<web::Path<i64>>,
    body: Input<web::Bytes>,
) -> Result<HttpResponse, AppError> {
    let id = input(id)?.into_inner();
    let rule: RuleInput = parse(&input(body)?, "a JSON object of the rule")?;
    let by = caller.person();
    let changed = state.db.run(move |c| rules::update(c, id, &rule, &by)).await??;
    Ok(HttpResponse::Ok().json(RuleJson::from(changed)))
}

pub async fn delete(
    caller: ApiAdmin,
    state: web::Data<AppState>,
    id: Input<web::Path<i64>>,
) -> Result<HttpResponse, AppError> {
    let id = input(id)?.into_inner();
    let by = caller.person();
    state.db.run(move |c| rules::delete(c, id, &by)).await??;
    Ok(HttpResponse::NoContent().finish())
}

pub async fn dry_run(
    _caller: ApiAdmin,
    state: web::Data<AppState>,
    id: Input<web::Path<i64>>,
) -> Result<HttpResponse, AppError> {
    let id = input(id)?.into_inner();
    let run = state.db.run(move |c| rules::dry_run(c, id)).await??;
    Ok(HttpResponse::Ok().json(dry_run_json(run)))
}

/// `POST /api/v1/rules/dry-run` with `{"condition": {...}}` (or a whole rule: only its condition
/// counts).
pub async fn dry_run_unsaved(
    _caller: ApiAdmin,
    state: web::Data<AppState>,
    body: Input<web::Bytes>,
) -> Result<HttpResponse, AppError> {
    #[derive(Deserialize)]
    struct Body {
        condition: Condition,
    }
    let body = input(body)?;
    let condition = match serde_json::from_slice::<Body>(&body) {
        Ok(b) => b.condition,
        Err(_) => parse::<RuleInput>(&body, "a JSON object with the rule's condition")?.condition,
    };
    let run = state.db.run(move |c| rules::dry_run_unsaved(c, &condition)).await??;
    Ok(HttpResponse::Ok().json(dry_run_json(run)))
}

async fn set_enabled(
    caller: ApiAdmin,
    state: web::Data<AppState>,
    id: Input<web::Path<i64>>,
    enabled: bool,
) -> Result<HttpResponse, AppError> {
    let id = input(id)?.into_inner();
    let by = caller.person();
    let (rule, matching) = state.db.run(move |c| rules::set_enabled(c, id, enabled, &by)).await??;
    let mut body = serde_json::to_value(RuleJson::from(rule)).map_err(anyhow::Error::from)?;
    body["matching_now"] = json!(matching);
    Ok(HttpResponse::Ok().json(body))
}

pub async fn enable(
    caller: ApiAdmin,
    state: web::Data<AppState>,
    id: Input<web::Path<i64>>,
) -> Result<HttpResponse, AppError> {
    set_enabled(caller, state, id, true).await
}

pub async fn disable(
    caller: ApiAdmin,
    state: web::Data<AppState>,
    id: Input<web::Path<i64>>,
) -> Result<HttpResponse, AppError> {
    set_enabled(caller, state, id, false).await
}

pub async fn pause_state(_caller: ApiAdmin, state: web::Data<AppState>) -> Result<HttpResponse, AppError> {
    let paused = state.db.run(rules::paused).await?;
    Ok(HttpResponse::Ok().json(json!({ "paused": paused })))
}

/// `PUT /api/v1/rules/pause` with `{"paused": true}`: the kill switch.
pub async fn set_pause(
    caller: ApiAdmin,
    state: web::Data<AppState>,
    body: Input<web::Bytes>,
) -> Result<HttpResponse, AppError> {
    #[derive(Deserialize)]
    #[serde(deny_unknown_fields)]
    struct Body {
        paused: bool,
    }
    let Body { paused } = parse(&input(body)?, r#"{"paused": true} or {"paused": false}"#)?;
    let by = caller.person();
    state.db.run(move |c| rules::set_paused(c, paused, &by)).await?;
    Ok(HttpResponse::Ok().json(json!({ "paused": paused })))
}

#[derive(Deserialize)]
pub struct ApprovalsQuery {
    /// `awaiting_approval` (the default) or `all` (the latest decisions of every state).
    #[serde(default)]
    state: String,
}

pub async fn approvals(
    _caller: ApiOperator,
    state: web::Data<AppState>,
    query: Input<web::Query<ApprovalsQuery>>,
) -> Result<HttpResponse, AppError> {
    let which = match input(query)?.state.as_str() {
        "" | "awaiting_approval" => Some(state::AWAITING_APPROVAL),
        "all" => None,
        other => return Err(AppError::bad_request(format!("Unknown state {other:?}: use awaiting_approval or all."))),
    };
    let found = state.db.run(move |c| rules::decisions(c, which, 200)).await?;
    let items: Vec<DecisionJson> = found.into_iter().map(Into::into).collect();
    Ok(HttpResponse::Ok().json(json!({ "items": items })))
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct Reason {
    #[serde(default)]
    reason: String,
}

async fn decide(
    caller: ApiOperator,
    state: web::Data<AppState>,
    id: Input<web::Path<i64>>,
    body: Input<web::Bytes>,
    approve: bool,
) -> Result<HttpResponse, AppError> {
    let id = input(id)?.into_inner();
    let body = input(body)?;
    let Reason { reason } = if body.is_empty() { Reason::default() } else { parse(&body, r#"{"reason": "..."}"#)? };
    let by = caller.person();
    state.db.run(move |c| rules::decide(c, id, approve, &by, &reason)).await??;
    if approve {
        // Sent now rather than at the supervisor's next round.
        state.rules.send_soon();
    }
    let decision = state.db.run(move |c| rules::decision(c, id)).await?.ok_or(AppError::NotFound)?;
    Ok(HttpResponse::Ok().json(DecisionJson::from(decision)))
}

pub async fn approve(
    caller: ApiOperator,
    state: web::Data<AppState>,
    id: Input<web::Path<i64>>,
    body: Input<web::Bytes>,
) -> Result<HttpResponse, AppError> {
    decide(caller, state, id, body, true).await
}

pub async fn decline(
    caller: ApiOperator,
    state: web::Data<AppState>,
    id: Input<web::Path<i64>>,
    body: Input<web::Bytes>,
) -> Result<HttpResponse, AppError> {
    decide(caller, state, id, body, false).await
}
