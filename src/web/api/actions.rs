//! Machine actions for automation: `POST /api/v1/endpoints/{id}/actions` (operator) starts one
//! through the same checks, intent record and single Defender request as the Endpoint Summary's
//! form; `GET /api/v1/actions/{id}` (any role) follows it, asking Defender while it is open;
//! `GET /api/v1/endpoints/{id}/actions` (any role) lists an endpoint's latest actions, whoever
//! started them; `GET /api/v1/actions/{id}/package` (operator) answers 303 to the short-lived
//! link of a succeeded collection's investigation package, asked of Defender then.

use actix_web::{HttpResponse, web};
use serde::{Deserialize, Serialize};
use serde_json::json;

use crate::db::models::actions::{self, ActionRow, ActionStatus};
use crate::defender::actions::{self as service, Refusal};
use crate::error::AppError;
use crate::web::auth::{ApiAnalyst, ApiOperator};
use crate::web::filters::rfc3339;
use crate::web::{AppState, Input, input};

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct ActionBody {
    action: String,
    #[serde(default)]
    scope: String,
    #[serde(default)]
    comment: String,
    /// Isolation must be confirmed, as on the page.
    #[serde(default)]
    confirm: bool,
    /// Makes a retried request safe: the same key answers with the first request's action.
    #[serde(default)]
    idempotency_key: Option<String>,
}

/// An action as the API shows it (its own type: the database row also keeps the caller's
/// idempotency key and when Defender was last asked, neither of which is the caller's business).
#[derive(Serialize)]
pub struct ActionJson {
    id: i64,
    endpoint_id: i64,
    machine_id: String,
    action_type: String,
    scope: String,
    comment: String,
    requested_by: String,
    status: ActionStatus,
    defender_action_id: String,
    error: String,
    created_at: Option<String>,
    sent_at: Option<String>,
    updated_at: Option<String>,
    /// Whether Defender may still change the status (Requested, Pending, InProgress).
    open: bool,
}

impl From<ActionRow> for ActionJson {
    fn from(a: ActionRow) -> Self {
        Self {
            open: a.is_open(),
            id: a.id,
            endpoint_id: a.endpoint_id,
            machine_id: a.machine_id,
            action_type: a.action_type,
            scope: a.scope,
            comment: a.comment,
            requested_by: a.requested_by,
            status: a.status,
            defender_action_id: a.defender_action_id,
            error: a.error,
            created_at: rfc3339(a.created_at),
            sent_at: a.sent_at.and_then(rfc3339),
            updated_at: rfc3339(a.updated_at),
        }
    }
}

pub async fn submit(
    caller: ApiOperator,
    state: web::Data<AppState>,
    id: Input<web::Path<i64>>,
    body: Input<web::Bytes>,
) -> Result<HttpResponse, AppError> {
    let id = input(id)?.into_inner();
    let body = input(body)?;
    let b: ActionBody = serde_json::from_slice(&body)
        .map_err(|e| AppError::bad_request(format!("The body must be a JSON object describing the action: {e}")))?;
    // Without a key of the caller's, every request is a new one.
    let key = b.idempotency_key.unwrap_or_else(|| hex::encode(rand::random::<[u8; 16]>()));
    let mut req = service::parse(&b.action, &b.scope, &b.comment, b.confirm, &key).map_err(AppError::BadRequest)?;
    // Token names need not be unique: a key belongs to the token that sent it.
    req.idempotency_key = format!("token{}:{}", caller.token_id, req.idempotency_key);
    match state.defender.submit_action(id, req, &caller.actor()).await? {
        Ok(a) => Ok(HttpResponse::Accepted().json(ActionJson::from(a))),
        Err(Refusal::NotFound) => Err(AppError::bad_request(Refusal::NOT_A_MACHINE)),
        Err(Refusal::Invalid(why)) => Err(AppError::BadRequest(why)),
        Err(Refusal::Busy(open)) => Ok(crate::web::errors::problem(
            actix_web::http::StatusCode::CONFLICT,
            "conflict",
            Refusal::ANOTHER_OPEN,
            json!({ "action": ActionJson::from(*open) }),
        )),
    }
}

pub async fn status(
    _caller: ApiAnalyst,
    state: web::Data<AppState>,
    id: Input<web::Path<i64>>,
) -> Result<HttpResponse, AppError> {
    let id = input(id)?.into_inner();
    let a = state.defender.action(id).await?.ok_or(AppError::NotFound)?;
    Ok(HttpResponse::Ok().json(ActionJson::from(a)))
}

/// `GET /api/v1/actions/{id}/package`: 303 to Defender's link to the package (never stored).
pub async fn package(
    caller: ApiOperator,
    state: web::Data<AppState>,
    id: Input<web::Path<i64>>,
) -> Result<HttpResponse, AppError> {
    crate::web::pages::actions::package_redirect(&state, input(id)?.into_inner(), &caller.actor()).await
}

/// How many of an endpoint's actions the list shows, newest first.
const LIST_LIMIT: i64 = 50;

pub async fn list(
    _caller: ApiAnalyst,
    state: web::Data<AppState>,
    id: Input<web::Path<i64>>,
) -> Result<HttpResponse, AppError> {
    let id = input(id)?.into_inner();
    let rows = super::of_endpoint(&state, id, |c, id| actions::of_endpoint(c, id, LIST_LIMIT)).await?;
    let items: Vec<ActionJson> = rows.into_iter().map(ActionJson::from).collect();
    Ok(HttpResponse::Ok().json(json!({ "items": items })))
}
