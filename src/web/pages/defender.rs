//! Configuration ▸ Integrations ▸ Microsoft Defender: the settings form (admins save; operators
//! view and test), Test Connection, Sync now with live progress, recent runs, and the machines
//! that need a look (unmatched, ambiguous).

use actix_web::{HttpResponse, web};
use askama::Template;

use crate::db::models::defender_machines::{self, DefenderMachine};
use crate::defender::ConnectionReport;
use crate::defender::client::cloud::{COMMERCIAL_REGIONS, Cloud};
use crate::defender::service::{Saved, Status};
use crate::defender::settings;
use crate::error::AppError;
use crate::web::auth::{AdminUser, OperatorUser};
use crate::web::filters;
use crate::web::forms::FieldErrors;
use crate::web::forms::defender::{self as form, SettingsInput};
use crate::web::{AppState, Input, Layout, html, input};

#[derive(Template)]
#[template(path = "config/defender.html")]
struct DefenderPage {
    layout: Layout,
    form: SettingsInput,
    errors: FieldErrors,
    message: Option<String>,
    secret_configured: bool,
    status: Status,
    review: Review,
    clouds: [Cloud; 4],
    regions: &'static [&'static str],
    layout_is_operator: bool,
    layout_is_admin: bool,
    sync_message: Option<String>,
}

impl DefenderPage {
    fn err(&self, field: &str) -> Option<&str> {
        self.errors.get(field)
    }
}

#[derive(Template)]
#[template(path = "config/_defender_sync.html")]
struct SyncStatus {
    status: Status,
    layout_is_operator: bool,
    layout_is_admin: bool,
    sync_message: Option<String>,
}

/// Test Connection of a form an admin filled in wrongly: nothing was contacted.
#[derive(Template)]
#[template(
    source = "<p class=\"form-error\" id=\"test-error\" role=\"alert\">Fix the form first: {{ summary }}</p>",
    ext = "html"
)]
struct FormRefused {
    summary: String,
}

#[derive(Template)]
#[template(path = "config/_defender_test.html")]
struct TestResult {
    outcome: Result<ConnectionReport, crate::defender::service::Unavailable>,
}

/// The machines a person must decide about (ambiguous matches), a page of them, and the count of
/// those that matched nothing (normal, not queued: a link to them in the Endpoints list).
pub struct Review {
    pub machines: Vec<DefenderMachine>,
    pub total: i64,
    pub page: i64,
    pub pages: i64,
    pub search: String,
    pub unmatched: i64,
}

impl Review {
    /// The query string of another page of the queue.
    fn link(&self, page: i64) -> String {
        let mut s = url::form_urlencoded::Serializer::new(String::new());
        if !self.search.is_empty() {
            s.append_pair("review_q", &self.search);
        }
        s.append_pair("review_page", &page.to_string());
        s.finish()
    }
}

/// Rows of the review queue per page.
const REVIEW_PAGE: i64 = 50;

/// The Defender page's query: the review queue's search and page.
#[derive(Debug, Default, serde::Deserialize)]
pub struct ReviewParams {
    #[serde(default)]
    review_q: String,
    review_page: Option<i64>,
}

async fn render(
    user: &OperatorUser,
    state: &AppState,
    form: Option<SettingsInput>,
    errors: FieldErrors,
    message: Option<String>,
) -> Result<HttpResponse, AppError> {
    render_with(user, state, form, errors, message, ReviewParams::default()).await
}

async fn render_with(
    user: &OperatorUser,
    state: &AppState,
    form: Option<SettingsInput>,
    errors: FieldErrors,
    message: Option<String>,
    params: ReviewParams,
) -> Result<HttpResponse, AppError> {
    let status = state.defender.status().await?;
    let search: String = params.review_q.trim().chars().filter(|c| !c.is_control()).take(128).collect();
    let page = params.review_page.unwrap_or(1).max(1);
    let q = search.clone();
    let (config, (machines, total), unmatched) = state
        .db
        .run(move |c| {
            Ok((
                settings::load(c)?,
                defender_machines::review_queue(c, &q, (page - 1).saturating_mul(REVIEW_PAGE), REVIEW_PAGE)?,
                defender_machines::count_unmatched(c)?,
            ))
        })
        .await?;
    let review = Review { machines, total, page, pages: (total + REVIEW_PAGE - 1) / REVIEW_PAGE, search, unmatched };
    let secret_configured = config.as_ref().is_some_and(|c| c.secret_ciphertext.is_some());
    let form = form.unwrap_or_else(|| {
        config.as_ref().map(SettingsInput::from_config).unwrap_or_else(|| SettingsInput {
            sync_interval_minutes: Some(settings::DEFAULT_INTERVAL_MINUTES),
            ..Default::default()
        })
    });
    let bad = !errors.is_empty();
    let mut res = html(&DefenderPage {
        layout: Layout::new(user, "integrations"),
        form,
        errors,
        message,
        secret_configured,
        status,
        review,
        clouds: Cloud::ALL,
        regions: COMMERCIAL_REGIONS,
        layout_is_operator: true,
        layout_is_admin: user.can(crate::auth::Role::Admin),
        sync_message: None,
    })?;
    if bad {
        *res.status_mut() = actix_web::http::StatusCode::BAD_REQUEST;
    }
    Ok(res)
}

pub async fn show(
    user: OperatorUser,
    state: web::Data<AppState>,
    params: Input<web::Query<ReviewParams>>,
) -> Result<HttpResponse, AppError> {
    let params = input(params)?.into_inner();
    render_with(&user, &state, None, FieldErrors::default(), None, params).await
}

pub async fn save(
    user: AdminUser,
    state: web::Data<AppState>,
    form: Input<web::Form<Vec<(String, String)>>>,
) -> Result<HttpResponse, AppError> {
    let mut typed = form::from_pairs(input(form)?.into_inner());
    let outcome = match form::validate(&typed) {
        Err(errors) => {
            let secret_typed = !typed.client_secret.trim().is_empty();
            let needed = state.defender.refused(&user.username, &errors.summary(), secret_typed).await?;
            Err(errors.and_secret(needed))
        }
        Ok(s) => match state.defender.save(s, &user.username).await? {
            Saved::Ok { message } => Ok(message),
            Saved::SecretNeeded(why) => Err(FieldErrors::secret_needed(why)),
        },
    };
    let as_operator = OperatorUser(user.0.clone());
    // The secret is never sent back, not even after a failed save.
    typed.client_secret.clear();
    match outcome {
        Ok(message) => render(&as_operator, &state, None, FieldErrors::default(), Some(message)).await,
        Err(errors) => render(&as_operator, &state, Some(typed), errors, None).await,
    }
}

pub async fn test(
    user: OperatorUser,
    state: web::Data<AppState>,
    form: Input<web::Form<Vec<(String, String)>>>,
) -> Result<HttpResponse, AppError> {
    let typed = form::from_pairs(input(form)?.into_inner());
    // Only an admin (who may save settings) tests settings of their own choosing; anyone else
    // tests the saved ones, whatever the form says.
    let outcome = if user.can(crate::auth::Role::Admin) {
        match form::validate(&typed) {
            Ok(s) => state.defender.test(Some(s), &user.username).await?,
            Err(e) => {
                let report = html(&FormRefused { summary: e.summary() })?;
                return Ok(report);
            }
        }
    } else {
        state.defender.test(None, &user.username).await?
    };
    html(&TestResult { outcome })
}

pub async fn sync_now(user: OperatorUser, state: web::Data<AppState>) -> Result<HttpResponse, AppError> {
    let message = match state.defender.sync_now(&user.username).await {
        Ok(Some(_)) => "Sync started.".to_owned(),
        Ok(None) => "A sync is already running.".to_owned(),
        Err(e) => e.to_string(),
    };
    let status = state.defender.status().await?;
    let layout_is_admin = user.can(crate::auth::Role::Admin);
    html(&SyncStatus { status, layout_is_operator: true, layout_is_admin, sync_message: Some(message) })
}

/// An admin confirms that the machines a sync held back really left Defender, and a sync starts.
pub async fn confirm_stale(user: AdminUser, state: web::Data<AppState>) -> Result<HttpResponse, AppError> {
    let message = match state.defender.confirm_stale(&user.username).await {
        Ok(Some(_)) => "Confirmed: a sync has started and will mark the missing machines stale.".to_owned(),
        Ok(None) => "Confirmed; a sync is already running, so the next one will mark them stale.".to_owned(),
        Err(e) => e.to_string(),
    };
    let status = state.defender.status().await?;
    html(&SyncStatus { status, layout_is_operator: true, layout_is_admin: true, sync_message: Some(message) })
}

pub async fn sync_status(user: OperatorUser, state: web::Data<AppState>) -> Result<HttpResponse, AppError> {
    let status = state.defender.status().await?;
    html(&SyncStatus {
        status,
        layout_is_operator: user.can(crate::auth::Role::Operator),
        layout_is_admin: user.can(crate::auth::Role::Admin),
        sync_message: None,
    })
}

#[derive(serde::Deserialize)]
pub struct ReviewForm {
    machine_id: String,
    #[serde(default)]
    decision: String,
    #[serde(default)]
    endpoint_id: String,
}

/// Merge a machine into a chosen endpoint, or split it into its own (admins).
pub async fn review(
    user: AdminUser,
    state: web::Data<AppState>,
    form: Input<web::Form<ReviewForm>>,
) -> Result<HttpResponse, AppError> {
    let f = input(form)?.into_inner();
    // Defender's machine ids are short ASCII; anything else names no machine.
    if f.machine_id.len() > 100 || !f.machine_id.chars().all(|c| c.is_ascii_graphic()) {
        return Err(AppError::bad_request("No such Defender machine."));
    }
    let modeler = state.modeler.clone();
    let (machine, decision, target) = (f.machine_id.clone(), f.decision.clone(), f.endpoint_id.trim().to_owned());
    let outcome = state
        .db
        .run(move |c| {
            Ok(match decision.as_str() {
                "merge" => match target.parse::<i64>() {
                    Ok(t) => crate::defender::review::merge(c, &modeler, &machine, t).map_err(|e| e.to_string()),
                    Err(_) => Err("Give the id of the endpoint to merge into (the number in its address).".to_owned()),
                },
                "split" => crate::defender::review::split(c, &modeler, &machine)
                    .map(|id| format!("Split into endpoint {id}."))
                    .map_err(|e| e.to_string()),
                _ => Err("Choose merge or split.".to_owned()),
            })
        })
        .await?;
    let (result, details) = match &outcome {
        Ok(m) => ("success", m.clone()),
        Err(e) => ("refused", e.clone()),
    };
    super::audit(&state.db, &user.username, &format!("defender.{}", f.decision), &f.machine_id, result, &details)
        .await?;
    let as_operator = OperatorUser(user.0.clone());
    match outcome {
        Ok(message) => render(&as_operator, &state, None, FieldErrors::default(), Some(message)).await,
        Err(e) => Err(AppError::BadRequest(e)),
    }
}
