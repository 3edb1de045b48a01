//! The Defender integration for automation: `PUT /api/v1/integrations/defender` (admin),
//! `POST .../test` and `POST .../sync` (operator), `GET .../status` (any role). The client
//! secret is write-only here too.

use actix_web::{HttpResponse, web};
use serde_json::json;

use crate::defender::service::Saved;
use crate::defender::settings::{self, SettingsInput};
use crate::error::AppError;
use crate::web::auth::{ApiAdmin, ApiAnalyst, ApiOperator};
use crate::web::{AppState, Input, input};

pub async fn put(
    caller: ApiAdmin,
    state: web::Data<AppState>,
    body: Input<web::Bytes>,
) -> Result<HttpResponse, AppError> {
    let body = input(body)?;
    let values: SettingsInput = serde_json::from_slice(&body).map_err(|e| {
        AppError::bad_request(format!("The body must be a JSON object of the integration's settings: {e}"))
    })?;
    match state.defender.save(values, &caller.actor()).await? {
        Saved::Ok { message } => Ok(HttpResponse::Ok().json(json!({ "saved": true, "message": message }))),
        Saved::Invalid(errors) => {
            let fields: serde_json::Map<String, serde_json::Value> =
                errors.0.iter().map(|(f, m)| ((*f).to_owned(), json!(m))).collect();
            Ok(HttpResponse::BadRequest().json(json!({
                "error": { "code": "invalid_settings", "message": "The settings were not saved.", "fields": fields }
            })))
        }
    }
}

/// Tests the saved settings.
pub async fn test(caller: ApiOperator, state: web::Data<AppState>) -> Result<HttpResponse, AppError> {
    let configured = state.db.run(|c| Ok(settings::load(c)?.is_some())).await?;
    if !configured {
        return Err(AppError::bad_request("Microsoft Defender is not configured yet."));
    }
    let outcome = state.defender.test(None, &caller.actor()).await?;
    Ok(HttpResponse::Ok().json(match outcome {
        Ok(r) => json!({
            "ok": r.all_good(),
            "roles": r.roles,
            "permissions": r.permissions.iter().map(|p| json!({"permission": p.permission, "granted": p.granted()})).collect::<Vec<_>>(),
            "missing": r.missing,
            "api_call": match &r.api_call { Ok(n) => json!({"ok": true, "machines": n}), Err(e) => json!({"ok": false, "error": e.plain_words()}) },
        }),
        Err(e) => json!({ "ok": false, "error": e }),
    }))
}

pub async fn sync(caller: ApiOperator, state: web::Data<AppState>) -> Result<HttpResponse, AppError> {
    match state.defender.sync_now(&caller.actor()).await {
        Ok(Some(run)) => Ok(HttpResponse::Accepted().json(json!({ "run_id": run }))),
        Ok(None) => Err(AppError::Conflict("A sync is already running.".into())),
        Err(e) => Err(AppError::bad_request(e.to_string())),
    }
}

pub async fn status(_caller: ApiAnalyst, state: web::Data<AppState>) -> Result<HttpResponse, AppError> {
    Ok(HttpResponse::Ok().json(state.defender.status().await?))
}
