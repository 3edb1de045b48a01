//! Health checks for load balancers and orchestrators: unauthenticated and cheap.
//! `/healthz`: the process answers. `/readyz`: the database is reachable and its migrations are
//! current (503 otherwise, with the reason).

use actix_web::{HttpResponse, web};
use serde_json::json;

use super::AppState;

pub async fn healthz() -> HttpResponse {
    HttpResponse::Ok().content_type("text/plain; charset=utf-8").body("ok")
}

pub async fn readyz(state: web::Data<AppState>) -> HttpResponse {
    let db = state.db.clone();
    let checked = tokio::task::spawn_blocking(move || db.migrations_current()).await.unwrap_or_else(|e| Err(e.into()));
    match checked {
        Ok(true) => {
            HttpResponse::Ok().json(json!({ "status": "ready", "database": "reachable", "migrations": "current" }))
        }
        Ok(false) => HttpResponse::ServiceUnavailable()
            .json(json!({ "status": "not ready", "database": "reachable", "migrations": "pending" })),
        Err(e) => {
            tracing::warn!(error = %format!("{e:#}"), "readiness check failed");
            HttpResponse::ServiceUnavailable().json(json!({ "status": "not ready", "database": "unreachable" }))
        }
    }
}
