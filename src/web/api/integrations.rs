//! The Defender integration for automation: `PUT /api/v1/integrations/defender` (admin),
//! `POST .../test` and `POST .../sync` (operator), `GET .../status` (any role). The client
//! secret is write-only here too.

use actix_web::{HttpResponse, web};
use serde::Serialize;
use serde_json::json;

use crate::db::models::integration::SyncRun;

use crate::defender::service::{Saved, Status};
use crate::defender::settings;
use crate::error::AppError;
use crate::web::auth::{ApiAdmin, ApiAnalyst, ApiOperator};
use crate::web::filters::rfc3339;
use crate::web::forms::FieldErrors;
use crate::web::forms::defender::{self as form, SettingsInput};
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
    let outcome = match form::validate(&values) {
        Err(errors) => {
            let secret_typed = !values.client_secret.trim().is_empty();
            let needed = state.defender.refused(&caller.actor(), &errors.summary(), secret_typed).await?;
            Err(errors.and_secret(needed))
        }
        Ok(s) => match state.defender.save(s, &caller.actor()).await? {
            Saved::Ok { message } => Ok(message),
            Saved::SecretNeeded(why) => Err(FieldErrors::secret_needed(why)),
        },
    };
    match outcome {
        Ok(message) => Ok(HttpResponse::Ok().json(json!({ "saved": true, "message": message }))),
        Err(errors) => {
            let fields: serde_json::Map<String, serde_json::Value> =
                errors.0.iter().map(|(f, m)| ((*f).to_owned(), json!(m))).collect();
            let detail = "The settings were not saved.";
            Ok(crate::web::errors::problem(
                actix_web::http::StatusCode::BAD_REQUEST,
                "invalid_settings",
                detail,
                json!({ "errors": fields.clone(), "error": { "code": "invalid_settings", "message": detail, "fields": fields } }),
            ))
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
            "permissions": r.permissions.iter().map(|p| json!({
                "permission": p.permission, "granted": p.granted(), "required": p.required, "used_for": p.used_for,
            })).collect::<Vec<_>>(),
            // Required permissions not granted (optional ones never make the test fail).
            "missing": r.missing,
            "optional_missing": r.optional_missing,
            "token_audience": r.token_audience,
            "requested_audience": r.requested_audience,
            "api_host": r.api_host,
            "audience_matches": r.audience_matches(),
            "api_call": match &r.api_call { Ok(n) => json!({"ok": true, "machines": n}), Err(e) => json!({"ok": false, "error": e.plain_words()}) },
        }),
        Err(e) => json!({ "ok": false, "error": e.to_string() }),
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
    Ok(HttpResponse::Ok().json(StatusJson::from(state.defender.status().await?)))
}

/// The integration's state as the API shows it.
#[derive(Serialize)]
struct StatusJson {
    configured: bool,
    enabled: bool,
    secret_configured: bool,
    cloud: String,
    sync_interval_minutes: i32,
    running: Option<RunJson>,
    last_run: Option<RunJson>,
    last_success: Option<RunJson>,
    /// When the next scheduled sync runs, when enabled.
    next_run_at: Option<String>,
    machines: i64,
    stale_machines: i64,
    recent_runs: Vec<RunJson>,
}

impl From<Status> for StatusJson {
    fn from(s: Status) -> Self {
        Self {
            configured: s.configured,
            enabled: s.enabled,
            secret_configured: s.secret_configured,
            cloud: s.cloud,
            sync_interval_minutes: s.sync_interval_minutes,
            running: s.running.map(RunJson::from),
            last_run: s.last_run.map(RunJson::from),
            last_success: s.last_success.map(RunJson::from),
            next_run_at: s.next_run_at.and_then(rfc3339),
            machines: s.machines,
            stale_machines: s.stale_machines,
            recent_runs: s.recent_runs.into_iter().map(RunJson::from).collect(),
        }
    }
}

/// One sync run: what it did, how far it got, and how it ended.
#[derive(Serialize)]
struct RunJson {
    id: i64,
    integration: String,
    trigger: String,
    requested_by: String,
    status: String,
    phase: String,
    items_done: i64,
    items_total: i64,
    machines: i64,
    created: i64,
    updated: i64,
    merged: i64,
    stale: i64,
    api_calls: i64,
    throttled: i64,
    error: String,
    started_at: Option<String>,
    finished_at: Option<String>,
}

impl From<SyncRun> for RunJson {
    fn from(r: SyncRun) -> Self {
        Self {
            id: r.id,
            integration: r.integration,
            trigger: r.trigger,
            requested_by: r.requested_by,
            status: r.status,
            phase: r.phase,
            items_done: r.items_done,
            items_total: r.items_total,
            machines: r.machines,
            created: r.created,
            updated: r.updated,
            merged: r.merged,
            stale: r.stale,
            api_calls: r.api_calls,
            throttled: r.throttled,
            error: r.error,
            started_at: rfc3339(r.started_at),
            finished_at: r.finished_at.and_then(rfc3339),
        }
    }
}
