//! Event destinations for admins: `/api/v1/destinations` (list, create), `/{id}` (update with
//! PUT or PATCH: fields left out stay as they are; delete), `POST /{id}/test` (send a test
//! event now) and `GET /{id}/deliveries` (the delivery log). A webhook's secret is write-only:
//! answers say whether one is set, never what it is, and the audit log does not record it.

use actix_web::{HttpResponse, web};
use serde::Serialize;
use serde_json::json;

use crate::db::models::destinations::{self, Delivery, Destination};
use crate::domain::risk::RiskLevel;
use crate::error::AppError;
use crate::notify::settings::{self, DestinationInput};
use crate::web::auth::ApiAdmin;
use crate::web::filters::rfc3339;
use crate::web::{AppState, Input, input};

/// A destination as the API shows it.
#[derive(Serialize)]
struct DestinationJson {
    id: i64,
    name: String,
    kind: String,
    url: String,
    secret_configured: bool,
    event_types: Vec<String>,
    min_level: &'static str,
    enabled: bool,
    format: String,
    ca_configured: bool,
    created_at: Option<String>,
    updated_at: Option<String>,
}

impl From<Destination> for DestinationJson {
    fn from(d: Destination) -> Self {
        Self {
            id: d.id,
            name: d.name,
            kind: d.kind,
            url: d.url,
            secret_configured: d.secret_ciphertext.is_some(),
            event_types: d.event_types.split(',').filter(|k| !k.is_empty()).map(str::to_owned).collect(),
            min_level: RiskLevel::label_of(d.min_level),
            enabled: d.enabled,
            format: d.format,
            ca_configured: !d.ca_pem.is_empty(),
            created_at: rfc3339(d.created_at),
            updated_at: rfc3339(d.updated_at),
        }
    }
}

#[derive(Serialize)]
struct DeliveryJson {
    id: i64,
    event_id: Option<i64>,
    at: Option<String>,
    attempt: i32,
    status: String,
    detail: String,
}

impl From<Delivery> for DeliveryJson {
    fn from(d: Delivery) -> Self {
        Self {
            id: d.id,
            event_id: d.event_id,
            at: rfc3339(d.at),
            attempt: d.attempt,
            status: d.status,
            detail: d.detail,
        }
    }
}

fn parse(body: &[u8]) -> Result<DestinationInput, AppError> {
    serde_json::from_slice(body).map_err(|e| {
        AppError::bad_request(format!("The body must be a JSON object of the destination's settings: {e}"))
    })
}

pub async fn list(_caller: ApiAdmin, state: web::Data<AppState>) -> Result<HttpResponse, AppError> {
    let all = state.db.run(|c| Ok(destinations::list(c)?)).await?;
    let items: Vec<DestinationJson> = all.into_iter().map(Into::into).collect();
    Ok(HttpResponse::Ok().json(json!({ "items": items })))
}

pub async fn create(
    caller: ApiAdmin,
    state: web::Data<AppState>,
    body: Input<web::Bytes>,
) -> Result<HttpResponse, AppError> {
    let values = parse(&input(body)?)?;
    let fields = settings::check(&state.secrets, values, None).map_err(AppError::bad_request)?;
    let id = settings::create(&state.db, &caller.actor(), fields).await??;
    Ok(HttpResponse::Created().json(DestinationJson::from(settings::find(&state.db, id).await??)))
}

pub async fn update(
    caller: ApiAdmin,
    state: web::Data<AppState>,
    id: Input<web::Path<i64>>,
    body: Input<web::Bytes>,
) -> Result<HttpResponse, AppError> {
    let id = input(id)?.into_inner();
    let values = parse(&input(body)?)?;
    settings::update(&state.db, &state.secrets, &caller.actor(), id, values).await??;
    Ok(HttpResponse::Ok().json(DestinationJson::from(settings::find(&state.db, id).await??)))
}

pub async fn delete(
    caller: ApiAdmin,
    state: web::Data<AppState>,
    id: Input<web::Path<i64>>,
) -> Result<HttpResponse, AppError> {
    let stored = settings::find(&state.db, input(id)?.into_inner()).await??;
    settings::delete(&state.db, &caller.actor(), stored).await?;
    Ok(HttpResponse::NoContent().finish())
}

pub async fn test(
    _caller: ApiAdmin,
    state: web::Data<AppState>,
    id: Input<web::Path<i64>>,
) -> Result<HttpResponse, AppError> {
    let d = settings::find(&state.db, input(id)?.into_inner()).await??;
    let outcome = state.notifier.send_test(&d).await?;
    Ok(HttpResponse::Ok().json(match outcome {
        Ok(detail) => json!({ "ok": true, "detail": detail }),
        Err(detail) => json!({ "ok": false, "detail": detail }),
    }))
}

pub async fn deliveries(
    _caller: ApiAdmin,
    state: web::Data<AppState>,
    id: Input<web::Path<i64>>,
) -> Result<HttpResponse, AppError> {
    let id = settings::find(&state.db, input(id)?.into_inner()).await??.id;
    let log = state.db.run(move |c| Ok(destinations::deliveries_of(c, id, 200)?)).await?;
    let items: Vec<DeliveryJson> = log.into_iter().map(Into::into).collect();
    Ok(HttpResponse::Ok().json(json!({ "items": items })))
}
