//! Machine actions from the Endpoint Summary and the Microsoft Defender subtab (htmx): submit,
//! the live status fragment that polls itself until the action reaches a final state, and the
//! download of a collected investigation package.

use actix_web::{HttpResponse, web};
use askama::Template;
use serde::Deserialize;

use crate::db::models::actions::ActionRow;
use crate::defender::actions::{self as service, Offered, Refusal};
use crate::error::AppError;
use crate::web::auth::{AnyUser, OperatorUser};
use crate::web::filters;
use crate::web::{AppState, Input, html, input};

#[derive(Template)]
#[template(path = "endpoints/_action_status.html")]
pub struct ActionFragment {
    pub a: ActionRow,
    pub note: Option<String>,
    /// Whether the person may download an investigation package (Operator and Admin).
    pub can_download: bool,
    /// When the action has just ended: the endpoint's buttons for the machine's new state, sent
    /// out of band (the page then offers Unisolate after an isolation, with empty comments).
    pub ended_buttons: Option<ActionButtons>,
}

/// The machine actions a person may start on an endpoint (`endpoints/_machine_actions.html`).
pub struct ActionButtons {
    pub endpoint_id: i64,
    /// What the isolation's confirmation calls the endpoint.
    pub title: String,
    /// (action, scopes), as `defender::actions::offered` gives them.
    pub offered: Offered,
    /// A fresh idempotency key for the forms of this rendering.
    pub key: String,
    /// Replaces the page's buttons out of band.
    pub oob: bool,
}

impl ActionButtons {
    /// The buttons for a machine as it is stored now, for a person of `role`: none below Operator.
    pub fn for_machine(
        endpoint_id: i64,
        title: String,
        machine: &crate::db::models::defender_machines::DefenderMachine,
        can_act: bool,
    ) -> Self {
        Self::offering(endpoint_id, title, if can_act { service::offered(machine) } else { Vec::new() })
    }

    /// The buttons of these offered actions (none for a person who may not act).
    pub fn offering(endpoint_id: i64, title: String, offered: Offered) -> Self {
        ActionButtons { endpoint_id, title, offered, key: Self::new_key(), oob: false }
    }

    /// A fresh idempotency key for the forms of one rendering.
    pub fn new_key() -> String {
        crate::auth::random_token(18)
    }
}

#[derive(Deserialize)]
pub struct ActionForm {
    action: String,
    #[serde(default)]
    scope: String,
    #[serde(default)]
    comment: String,
    #[serde(default)]
    confirm: Option<String>,
    #[serde(default)]
    key: String,
}

/// `POST /endpoints/{id}/actions` (Operator, Admin).
pub async fn submit(
    user: OperatorUser,
    state: web::Data<AppState>,
    id: Input<web::Path<i64>>,
    form: Input<web::Form<ActionForm>>,
) -> Result<HttpResponse, AppError> {
    let id = input(id)?.into_inner();
    let f = input(form)?.into_inner();
    let confirmed = f.confirm.as_deref().is_some_and(|c| matches!(c, "on" | "true" | "yes"));
    let req = service::parse(&f.action, &f.scope, &f.comment, confirmed, &f.key).map_err(AppError::BadRequest)?;
    match state.defender.submit_action(id, req, &user.username).await? {
        // An action that ended at once (Defender refused it) comes with fresh buttons, so that
        // trying again is a new request, not a repeat of this one.
        Ok(a) => {
            let ended_buttons = buttons_after(&state, true, &a).await?;
            html(&ActionFragment { a, note: None, can_download: true, ended_buttons })
        }
        Err(Refusal::NotFound) => Err(AppError::BadRequest(Refusal::NOT_A_MACHINE.into())),
        Err(Refusal::Invalid(why)) => Err(AppError::BadRequest(why)),
        Err(Refusal::Busy(open)) => {
            let note = Some(Refusal::ANOTHER_OPEN.into());
            Ok(html(&ActionFragment { a: *open, note, can_download: true, ended_buttons: None })?
                .customize_status(actix_web::http::StatusCode::CONFLICT))
        }
    }
}

/// `GET /actions/{id}`: the action's status, refreshed from Defender while it is open. Once it
/// has ended, the endpoint's buttons come with it (out of band), for the machine's new state.
pub async fn status(
    user: AnyUser,
    state: web::Data<AppState>,
    id: Input<web::Path<i64>>,
) -> Result<HttpResponse, AppError> {
    let id = input(id)?.into_inner();
    let a = state.defender.action(id).await?.ok_or(AppError::NotFound)?;
    let can_act = user.can(crate::auth::Role::Operator);
    let ended_buttons = buttons_after(&state, can_act, &a).await?;
    html(&ActionFragment { a, note: None, can_download: can_act, ended_buttons })
}

/// `GET /actions/{id}/package` (Operator, Admin): asks Defender for the link to the investigation
/// package this action collected, now, and sends the browser there (303). The link is Defender's
/// short-lived one; the product neither keeps nor logs it. A GET, since it changes nothing.
pub async fn package(
    user: OperatorUser,
    state: web::Data<AppState>,
    id: Input<web::Path<i64>>,
) -> Result<HttpResponse, AppError> {
    package_redirect(&state, input(id)?.into_inner(), &user.username).await
}

/// The page's and the API's answer alike: 303 to the package's link, or why there is none.
pub async fn package_redirect(state: &AppState, id: i64, by: &str) -> Result<HttpResponse, AppError> {
    use crate::defender::package::NoPackage;
    match state.defender.package_link(id, by).await? {
        Ok(url) => Ok(HttpResponse::SeeOther()
            .insert_header((actix_web::http::header::LOCATION, url.as_str()))
            .insert_header((actix_web::http::header::CACHE_CONTROL, "no-store"))
            .finish()),
        Err(NoPackage::NotFound) => Err(AppError::NotFound),
        Err(NoPackage::NotReady(why) | NoPackage::Failed(why)) => Err(AppError::Conflict(why)),
        Err(NoPackage::Throttled(why)) => Err(AppError::TooManyRequests(why)),
    }
}

/// Once an action has ended: the endpoint's buttons for the machine's new state, to be sent out
/// of band (none while it is open).
async fn buttons_after(state: &AppState, can_act: bool, a: &ActionRow) -> Result<Option<ActionButtons>, AppError> {
    if a.is_open() {
        return Ok(None);
    }
    let endpoint_id = a.endpoint_id;
    let found = state
        .db
        .run(move |c| {
            let machine = crate::db::models::defender_machines::of_endpoint(c, endpoint_id)?;
            let endpoint = crate::db::models::endpoints::find(c, endpoint_id)?;
            Ok(machine.zip(endpoint))
        })
        .await?;
    Ok(found
        .map(|(m, e)| ActionButtons { oob: true, ..ActionButtons::for_machine(endpoint_id, e.title(), &m, can_act) }))
}

trait WithStatus {
    fn customize_status(self, status: actix_web::http::StatusCode) -> Self;
}

impl WithStatus for HttpResponse {
    fn customize_status(mut self, status: actix_web::http::StatusCode) -> Self {
        *self.status_mut() = status;
        self
    }
}
