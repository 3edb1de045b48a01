//! Machine tags written through the API: `POST /api/machines/{id}/tags`.
//!
//! As Microsoft documents "Add or Remove Tag for Machine"
//! (<https://learn.microsoft.com/en-us/defender-endpoint/api/add-or-remove-machine-tags>):
//! * "Adds or removes a tag for a specific device": one tag per call, never the whole list.
//! * Request body `{"Value": <the tag name>, "Action": "Add" | "Remove"}`, both required;
//!   `Content-Type: application/json` required. Body keys are case-sensitive (`L:common-errors`);
//!   a body without them, or another Action, is `400` (`InvalidRequestBody` /
//!   `MissingRequiredParameter`, the codes of `L:common-errors`).
//! * "If successful, this method returns 200 - Ok response code and the updated Machine in the
//!   response body."
//! * Application permission `Machine.ReadWrite.All` (no read-only role suffices: 403 otherwise).
//! * "Rate limitations for this API are 100 calls per minute and 1500 calls per hour"
//!   (`Api::MachineTags` in `api.rs`).
//! * An unknown machine is `404 ResourceNotFound` ("Machine … was not found", `L:common-errors`).
//!
//! Not documented, so chosen here: adding a tag the machine already carries, or removing one it
//! does not, answers 200 with the machine unchanged; an empty or blank `Value` is a 400. The
//! change shows in every later listing (`machineTags`, advanced hunting) and outlives
//! `POST /_sim/tenant/advance`.

use actix_web::http::StatusCode;
use actix_web::http::header;
use actix_web::{HttpRequest, HttpResponse, web};
use serde_json::Value;

use super::SimState;
use super::api::{Api, Ctx, Reply, entity, serve};
use super::views::MachineView;

pub async fn machine_tags(
    st: web::Data<SimState>,
    req: HttpRequest,
    id: web::Path<String>,
    body: web::Bytes,
) -> HttpResponse {
    serve(&st, &req, Api::MachineTags, |ctx| write(ctx, &id, &body)).await
}

fn write(ctx: &Ctx, id: &str, body: &[u8]) -> Reply {
    let ct = ctx.req.headers().get(header::CONTENT_TYPE).and_then(|v| v.to_str().ok()).unwrap_or("");
    if !ct.to_ascii_lowercase().starts_with("application/json") {
        return Reply::error(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "UnsupportedMediaType",
            "Content-Type must be application/json",
        );
    }
    let Ok(Value::Object(body)) = serde_json::from_slice::<Value>(body) else {
        return Reply::bad_request("InvalidRequestBody", "The request body is not a valid JSON object");
    };
    let tag = match body.get("Value") {
        Some(Value::String(s)) if !s.trim().is_empty() => s.clone(),
        Some(_) => return Reply::bad_request("InvalidRequestBody", "Value must be a non-empty string"),
        None => return Reply::bad_request("MissingRequiredParameter", "Parameter 'Value' is missing"),
    };
    let add = match body.get("Action") {
        Some(Value::String(s)) if s == "Add" => true,
        Some(Value::String(s)) if s == "Remove" => false,
        Some(other) => {
            return Reply::bad_request(
                "InvalidRequestBody",
                format!("Action {other} is not valid; allowed values are 'Add' or 'Remove'"),
            );
        }
        None => return Reply::bad_request("MissingRequiredParameter", "Parameter 'Action' is missing"),
    };
    let Some(index) = ctx.tenant().machine_by_id_or_name(id).map(|m| m.index) else {
        return Reply::not_found(format!("Machine {id} was not found"));
    };
    match ctx.st.write_tag(index, &tag, add) {
        Some(m) => entity(ctx, "Machines/$entity", StatusCode::OK, &MachineView::new(&m)),
        None => Reply::not_found(format!("Machine {id} was not found")),
    }
}
