//! `POST /api/v1/observations`: a JSON array of network observations.

use actix_web::{HttpResponse, web};

use crate::domain::observations::{MAX_BATCH, RawObservation};
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
    let values: Vec<serde_json::Value> = serde_json::from_slice(&body)
        .map_err(|e| AppError::bad_request(format!("The body must be a JSON array of observations: {e}")))?;
    if values.len() > MAX_BATCH {
        return Err(AppError::bad_request(format!(
            "A batch holds at most {MAX_BATCH} observations; this one has {}.",
            values.len()
        )));
    }
    let items = values
        .into_iter()
        .enumerate()
        .map(|(i, v)| (i, serde_json::from_value::<RawObservation>(v).map_err(|e| format!("not an observation: {e}"))))
        .collect();
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
