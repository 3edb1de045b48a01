//! `GET /api/v1/openapi.json`: the OpenAPI 3.1 description of this API, written by hand next to
//! the handlers and compiled in. It is public like this project's README: it describes the API,
//! not its data. A test checks it against the routing table and against live answers.

use actix_web::HttpResponse;

pub const DOCUMENT: &str = include_str!("openapi.json");

pub async fn document() -> HttpResponse {
    HttpResponse::Ok().content_type("application/json").body(DOCUMENT)
}
