//! `POST /api/v1/observations`: a JSON array of network observations.

use actix_web::{HttpResponse, web};

use crate::error::AppError;
use crate::inventory;
use crate::web::auth::ApiOperator;
use crate::web::pages::audit;
use crate::web::{AppState, Input, input};

/// A body is read whole before anything is written, so a malformed one changes nothing. Items
/// of the wrong shape are rejected one by one, with their index and the reason.
pub async fn ingest(
    caller: ApiOperator,
    state: web::Data<AppState>,
    body: Input<web::Bytes>,
) -> Result<HttpResponse, AppError> {
    let body = input(body)?;
    let items = inventory::parse_json_batch(&body).map_err(AppError::BadRequest)?;
    let report = inventory::ingest(&state.db, &state.modeler, items, "network").await?;
    let details = format!(
        "{} received: {} created, {} updated, {} rejected",
        report.received,
        report.created,
        report.updated,
        report.rejected.len()
    );
    audit(&state.db, &caller.actor(), "observations.ingest", "", "success", &details).await?;
    Ok(HttpResponse::Ok().json(report))
}
