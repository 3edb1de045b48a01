//! Machine actions from the Endpoint Summary (htmx): submit, and the live status fragment that
//! polls itself until the action reaches a final state.

use actix_web::{HttpResponse, web};
use askama::Template;
use serde::Deserialize;

use crate::db::models::actions::ActionRow;
use crate::defender::actions::{self as service, Refusal};
use crate::error::AppError;
use crate::web::auth::{AnyUser, OperatorUser};
use crate::web::filters;
use crate::web::{AppState, Input, html, input};

#[derive(Template)]
#[template(path = "endpoints/_action_status.html")]
pub struct ActionFragment {
    pub a: ActionRow,
    pub note: Option<String>,
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
        Ok(a) => html(&ActionFragment { a, note: None }),
        Err(Refusal::NotFound) => Err(AppError::BadRequest(Refusal::NOT_A_MACHINE.into())),
        Err(Refusal::Invalid(why)) => Err(AppError::BadRequest(why)),
        Err(Refusal::Busy(open)) => Ok(html(&ActionFragment { a: *open, note: Some(Refusal::ANOTHER_OPEN.into()) })?
            .customize_status(actix_web::http::StatusCode::CONFLICT)),
    }
}

/// `GET /actions/{id}`: the action's status, refreshed from Defender while it is open.
pub async fn status(
    _user: AnyUser,
    state: web::Data<AppState>,
    id: Input<web::Path<i64>>,
) -> Result<HttpResponse, AppError> {
    let id = input(id)?.into_inner();
    let a = state.defender.action(id).await?.ok_or(AppError::NotFound)?;
    html(&ActionFragment { a, note: None })
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
