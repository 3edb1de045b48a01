//! Notifications (admins): the destinations events leave the product for — webhooks and
//! syslog receivers — with their event filter, a "Send test event" button and each one's
//! delivery log. The same checks and writes as `/api/v1/destinations` (`notify::settings`);
//! a webhook's secret is write-only here too: the form says whether one is set, never what.

use actix_web::{HttpResponse, web};
use askama::Template;

use crate::db::models::destinations::{self, Delivery, Destination};
use crate::db::models::events::kinds;
use crate::domain::risk::RiskLevel;
use crate::error::AppError;
use crate::notify::settings::{self, DestinationInput, Refused};
use crate::notify::{FORMATS, KINDS};
use crate::web::auth::AdminUser;
use crate::web::filters;
use crate::web::htmx::Htmx;
use crate::web::{AppState, Input, Layout, html, input};

/// Delivery attempts shown on a destination's page.
const LOG_ROWS: i64 = 50;

/// What the form shows: the stored destination's settings, or what was typed (a refused form
/// keeps everything but the secret, which is never sent back to the browser).
pub struct FormValues {
    name: String,
    kind: String,
    url: String,
    event_types: Vec<String>,
    min_level: String,
    enabled: bool,
    format: String,
    ca_pem: String,
    secret_configured: bool,
}

impl FormValues {
    fn new() -> Self {
        Self {
            name: String::new(),
            kind: crate::notify::WEBHOOK.into(),
            url: String::new(),
            event_types: Vec::new(),
            min_level: RiskLevel::None.as_str().into(),
            enabled: true,
            format: crate::notify::RFC5424.into(),
            ca_pem: String::new(),
            secret_configured: false,
        }
    }

    fn of(d: &Destination) -> Self {
        Self {
            name: d.name.clone(),
            kind: d.kind.clone(),
            url: d.url.clone(),
            event_types: d.event_types.split(',').filter(|k| !k.is_empty()).map(str::to_owned).collect(),
            min_level: RiskLevel::label_of(d.min_level).into(),
            enabled: d.enabled,
            format: d.format.clone(),
            ca_pem: d.ca_pem.clone(),
            secret_configured: d.secret_ciphertext.is_some(),
        }
    }

    fn wants(&self, kind: &str) -> bool {
        self.event_types.iter().any(|k| k == kind)
    }
}

/// The form's fields as the API's input: an unticked box is "off", no ticked event type is
/// "every type", and an empty secret keeps the stored one.
fn input_of(pairs: Vec<(String, String)>) -> (DestinationInput, FormValues) {
    let mut values = FormValues { enabled: false, ..FormValues::new() };
    let mut secret = None;
    for (k, v) in pairs {
        match k.as_str() {
            "name" => values.name = v,
            "kind" => values.kind = v,
            "url" => values.url = v,
            "secret" => secret = Some(v).filter(|s| !s.is_empty()),
            "event_types" => values.event_types.push(v),
            "min_level" => values.min_level = v,
            "enabled" => values.enabled = true,
            "format" => values.format = v,
            "ca_pem" => values.ca_pem = v,
            _ => {}
        }
    }
    let input = DestinationInput {
        name: Some(values.name.clone()),
        kind: Some(values.kind.clone()),
        url: Some(values.url.clone()),
        secret,
        event_types: Some(values.event_types.clone()),
        min_level: Some(values.min_level.clone()),
        enabled: Some(values.enabled),
        format: Some(values.format.clone()),
        ca_pem: Some(values.ca_pem.clone()),
    };
    (input, values)
}

/// A destination in the list, with its latest attempt.
pub struct Row {
    d: Destination,
    last: Option<Delivery>,
}

impl Row {
    fn min_level(&self) -> &'static str {
        RiskLevel::label_of(self.d.min_level)
    }
}

/// What the form offers to choose from.
pub struct Choices {
    kinds: &'static [&'static str],
    event_kinds: &'static [&'static str],
    formats: &'static [&'static str],
    levels: [RiskLevel; 5],
}

const CHOICES: Choices = Choices { kinds: KINDS, event_kinds: kinds::ALL, formats: FORMATS, levels: RiskLevel::ALL };

#[derive(Template)]
#[template(path = "notifications/list.html")]
struct ListPage {
    layout: Layout,
    rows: Vec<Row>,
    form: FormValues,
    error: Option<String>,
    choices: Choices,
}

#[derive(Template)]
#[template(path = "notifications/edit.html")]
struct EditPage {
    layout: Layout,
    id: i64,
    form: FormValues,
    error: Option<String>,
    saved: bool,
    log: Vec<Delivery>,
    choices: Choices,
}

#[derive(Template)]
#[template(path = "notifications/_test_result.html")]
struct TestResult {
    outcome: Result<String, String>,
}

/// 400 for a refused form (its message shown on the page), 200 otherwise.
fn with_status(mut res: HttpResponse, error: &Option<String>) -> HttpResponse {
    if error.is_some() {
        *res.status_mut() = actix_web::http::StatusCode::BAD_REQUEST;
    }
    res
}

async fn render_list(
    user: &AdminUser,
    state: &AppState,
    form: FormValues,
    error: Option<String>,
) -> Result<HttpResponse, AppError> {
    let (list, last) = state.db.run(|c| Ok((destinations::list(c)?, destinations::latest_deliveries(c)?))).await?;
    let mut last = last;
    let rows = list.into_iter().map(|d| Row { last: last.remove(&d.id), d }).collect();
    let page = ListPage { layout: Layout::new(user, "notifications"), rows, form, choices: CHOICES, error };
    Ok(with_status(html(&page)?, &page.error))
}

async fn render_edit(
    user: &AdminUser,
    state: &AppState,
    id: i64,
    form: Option<FormValues>,
    error: Option<String>,
    saved: bool,
) -> Result<HttpResponse, AppError> {
    let stored = settings::find(&state.db, id).await??;
    let log = state.db.run(move |c| Ok(destinations::deliveries_of(c, id, LOG_ROWS)?)).await?;
    let mut form = form.unwrap_or_else(|| FormValues::of(&stored));
    form.secret_configured = stored.secret_ciphertext.is_some();
    let page = EditPage { layout: Layout::new(user, "notifications"), id, form, error, saved, log, choices: CHOICES };
    Ok(with_status(html(&page)?, &page.error))
}

pub async fn list(user: AdminUser, state: web::Data<AppState>) -> Result<HttpResponse, AppError> {
    render_list(&user, &state, FormValues::new(), None).await
}

pub async fn create(
    user: AdminUser,
    state: web::Data<AppState>,
    form: Input<web::Form<Vec<(String, String)>>>,
) -> Result<HttpResponse, AppError> {
    let (typed, values) = input_of(input(form)?.into_inner());
    let fields = match settings::check(&state.secrets, typed, None) {
        Ok(f) => f,
        Err(e) => return render_list(&user, &state, values, Some(e)).await,
    };
    match settings::create(&state.db, &user.username, fields).await? {
        Ok(id) => Ok(HttpResponse::SeeOther().insert_header(("Location", format!("/notifications/{id}"))).finish()),
        Err(refused) => render_list(&user, &state, values, Some(refused.to_string())).await,
    }
}

pub async fn show(
    user: AdminUser,
    state: web::Data<AppState>,
    id: Input<web::Path<i64>>,
) -> Result<HttpResponse, AppError> {
    render_edit(&user, &state, input(id)?.into_inner(), None, None, false).await
}

pub async fn update(
    user: AdminUser,
    state: web::Data<AppState>,
    id: Input<web::Path<i64>>,
    form: Input<web::Form<Vec<(String, String)>>>,
) -> Result<HttpResponse, AppError> {
    let id = input(id)?.into_inner();
    let (typed, values) = input_of(input(form)?.into_inner());
    match settings::update(&state.db, &state.secrets, &user.username, id, typed).await? {
        Ok(()) => render_edit(&user, &state, id, None, None, true).await,
        Err(Refused::NotFound) => Err(AppError::NotFound),
        Err(refused) => render_edit(&user, &state, id, Some(values), Some(refused.to_string()), false).await,
    }
}

pub async fn delete(
    user: AdminUser,
    state: web::Data<AppState>,
    id: Input<web::Path<i64>>,
) -> Result<HttpResponse, AppError> {
    let stored = settings::find(&state.db, input(id)?.into_inner()).await??;
    settings::delete(&state.db, &user.username, stored).await?;
    Ok(HttpResponse::SeeOther().insert_header(("Location", "/notifications")).finish())
}

/// Sends a test event now: the outcome as a fragment for htmx, or the destination's page (with
/// the attempt in its log) without it.
pub async fn test(
    user: AdminUser,
    state: web::Data<AppState>,
    id: Input<web::Path<i64>>,
    htmx: Htmx,
) -> Result<HttpResponse, AppError> {
    let d = settings::find(&state.db, input(id)?.into_inner()).await??;
    let outcome = state.notifier.send_test(&d).await?;
    if htmx.wants_fragment() {
        return html(&TestResult { outcome });
    }
    render_edit(&user, &state, d.id, None, None, false).await
}
