//! Event destinations for admins: `/api/v1/destinations` (list, create), `/{id}` (update with
//! PUT or PATCH: fields left out stay as they are; delete), `POST /{id}/test` (send a test
//! event now) and `GET /{id}/deliveries` (the delivery log). A webhook's secret is write-only:
//! answers say whether one is set, never what it is, and the audit log does not record it.

use actix_web::{HttpResponse, web};
use serde::Serialize;
use serde_json::json;

use crate::db::models::audit;
use crate::db::models::destinations::{self, Delivery, Destination};
use crate::domain::risk::RiskLevel;
use crate::error::AppError;
use crate::notify::{self, DestinationInput};
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

async fn find(state: &AppState, id: i64) -> Result<Destination, AppError> {
    state.db.run(move |c| Ok(destinations::find(c, id)?)).await?.ok_or(AppError::NotFound)
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
    let checked = notify::check(&state.secrets, values, None).map_err(AppError::bad_request)?;
    let actor = caller.actor();
    let id = state
        .db
        .run(move |c| {
            c.write_transaction(|c| {
                if destinations::name_taken(c, &checked.name, None)? {
                    return Ok(Err(AppError::Conflict("Another destination has this name.".into())));
                }
                let id = destinations::create(c, &checked.fields())?;
                audit::entry(&actor, "destination.create")
                    .target(&checked.name)
                    .outcome("success")
                    .details(&format!("{} destination {id}", checked.kind))
                    .record(c)?;
                Ok::<_, anyhow::Error>(Ok(id))
            })
        })
        .await??;
    Ok(HttpResponse::Created().json(DestinationJson::from(find(&state, id).await?)))
}

pub async fn update(
    caller: ApiAdmin,
    state: web::Data<AppState>,
    id: Input<web::Path<i64>>,
    body: Input<web::Bytes>,
) -> Result<HttpResponse, AppError> {
    let id = input(id)?.into_inner();
    let values = parse(&input(body)?)?;
    let stored = find(&state, id).await?;
    let checked = notify::check(&state.secrets, values, Some(&stored)).map_err(AppError::bad_request)?;
    let actor = caller.actor();
    state
        .db
        .run(move |c| {
            c.write_transaction(|c| {
                if destinations::name_taken(c, &checked.name, Some(id))? {
                    return Ok(Err(AppError::Conflict("Another destination has this name.".into())));
                }
                if !destinations::update(c, id, &checked.fields())? {
                    return Ok(Err(AppError::NotFound));
                }
                audit::entry(&actor, "destination.update")
                    .target(&checked.name)
                    .outcome("success")
                    .details(&format!("{} destination {id}", checked.kind))
                    .record(c)?;
                Ok::<_, anyhow::Error>(Ok(()))
            })
        })
        .await??;
    Ok(HttpResponse::Ok().json(DestinationJson::from(find(&state, id).await?)))
}

pub async fn delete(
    caller: ApiAdmin,
    state: web::Data<AppState>,
    id: Input<web::Path<i64>>,
) -> Result<HttpResponse, AppError> {
    let id = input(id)?.into_inner();
    let stored = find(&state, id).await?;
    let actor = caller.actor();
    state
        .db
        .run(move |c| {
            c.write_transaction(|c| {
                destinations::delete(c, id)?;
                audit::entry(&actor, "destination.delete")
                    .target(&stored.name)
                    .outcome("success")
                    .details(&format!("{} destination {id}", stored.kind))
                    .record(c)?;
                Ok(())
            })
        })
        .await?;
    Ok(HttpResponse::NoContent().finish())
}

pub async fn test(
    _caller: ApiAdmin,
    state: web::Data<AppState>,
    id: Input<web::Path<i64>>,
) -> Result<HttpResponse, AppError> {
    let d = find(&state, input(id)?.into_inner()).await?;
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
    let id = find(&state, input(id)?.into_inner()).await?.id;
    let log = state.db.run(move |c| Ok(destinations::deliveries_of(c, id, 200)?)).await?;
    let items: Vec<DeliveryJson> = log.into_iter().map(Into::into).collect();
    Ok(HttpResponse::Ok().json(json!({ "items": items })))
}
