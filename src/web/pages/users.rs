//! Users (admins): create, change role, disable or enable, reset password.

use actix_web::{HttpResponse, web};
use askama::Template;
use serde::Deserialize;

use super::audit;
use crate::accounts::{self, AccountError};
use crate::auth::Role;
use crate::db::models::users::{self, User};
use crate::error::AppError;
use crate::web::auth::AdminUser;
use crate::web::filters;
use crate::web::{AppState, Input, Layout, html, input};

#[derive(Template)]
#[template(path = "users.html")]
struct UsersPage {
    layout: Layout,
    users: Vec<User>,
    message: Option<String>,
    error: Option<String>,
    roles: [Role; 3],
    /// Users who sign in with Entra ID: their role follows Entra at each sign-in.
    entra: Vec<i64>,
}

impl UsersPage {
    fn is_entra(&self, id: &i64) -> bool {
        self.entra.contains(id)
    }
}

async fn render(user: &AdminUser, state: &AppState, outcome: Result<String, String>) -> Result<HttpResponse, AppError> {
    let (list, entra) = state.db.run(|c| Ok((users::list(c)?, crate::db::models::sso::linked_user_ids(c)?))).await?;
    let (message, error) = match outcome {
        Ok(m) if m.is_empty() => (None, None),
        Ok(m) => (Some(m), None),
        Err(e) => (None, Some(e)),
    };
    let status =
        if error.is_some() { actix_web::http::StatusCode::BAD_REQUEST } else { actix_web::http::StatusCode::OK };
    let mut res =
        html(&UsersPage { layout: Layout::new(user, "users"), users: list, message, error, roles: Role::ALL, entra })?;
    *res.status_mut() = status;
    Ok(res)
}

/// Shows a refused change as a form message, an internal failure as an error.
async fn finish(
    user: &AdminUser,
    state: &AppState,
    action: &str,
    target: &str,
    result: Result<String, AccountError>,
) -> Result<HttpResponse, AppError> {
    match result {
        Ok(message) => {
            audit(&state.db, &user.username, action, target, "success", "").await?;
            render(user, state, Ok(message)).await
        }
        Err(AccountError::Invalid(why)) => {
            audit(&state.db, &user.username, action, target, "refused", &why).await?;
            render(user, state, Err(why)).await
        }
        Err(AccountError::Internal(e)) => Err(AppError::Internal(e)),
    }
}

pub async fn list(user: AdminUser, state: web::Data<AppState>) -> Result<HttpResponse, AppError> {
    render(&user, &state, Ok(String::new())).await
}

#[derive(Deserialize)]
pub struct NewUserForm {
    username: String,
    password: String,
    role: String,
}

pub async fn create(
    user: AdminUser,
    state: web::Data<AppState>,
    form: Input<web::Form<NewUserForm>>,
) -> Result<HttpResponse, AppError> {
    let form = input(form)?;
    let NewUserForm { username, password, role } = form.into_inner();
    let username = username.trim().to_owned();
    let Some(role) = Role::parse(&role) else {
        return render(&user, &state, Err("Choose a role.".into())).await;
    };
    let name = username.clone();
    let result = state
        .db
        .run(move |c| Ok(accounts::create_user(c, &name, &password, role).map(|_| format!("User {name} created."))))
        .await?;
    finish(&user, &state, "user.create", &username, result).await
}

#[derive(Deserialize)]
pub struct RoleForm {
    role: String,
}

async fn target_name(state: &AppState, id: i64) -> Result<String, AppError> {
    let u = state.db.run(move |c| Ok(users::find(c, id)?)).await?.ok_or(AppError::NotFound)?;
    Ok(u.username)
}

pub async fn set_role(
    user: AdminUser,
    state: web::Data<AppState>,
    id: Input<web::Path<i64>>,
    form: Input<web::Form<RoleForm>>,
) -> Result<HttpResponse, AppError> {
    let id = input(id)?;
    let form = input(form)?;
    let id = id.into_inner();
    let name = target_name(&state, id).await?;
    let Some(role) = Role::parse(&form.role) else {
        return render(&user, &state, Err("Choose a role.".into())).await;
    };
    let result = state
        .db
        .run(move |c| {
            Ok((|| {
                if role != Role::Admin {
                    accounts::ensure_not_last_admin(c, id)?;
                }
                users::set_role(c, id, role)?;
                Ok(format!("Role changed to {}.", role.label()))
            })())
        })
        .await?;
    finish(&user, &state, "user.role", &name, result.map(|m: String| m)).await
}

#[derive(Deserialize)]
pub struct DisabledForm {
    /// `true` or `false`; anything else is a 400.
    disabled: bool,
}

pub async fn set_disabled(
    user: AdminUser,
    state: web::Data<AppState>,
    id: Input<web::Path<i64>>,
    form: Input<web::Form<DisabledForm>>,
) -> Result<HttpResponse, AppError> {
    let id = input(id)?;
    let form = input(form)?;
    let id = id.into_inner();
    let name = target_name(&state, id).await?;
    let disabled = form.disabled;
    if disabled && id == user.id {
        return render(&user, &state, Err("You cannot disable your own account.".into())).await;
    }
    let result = state
        .db
        .run(move |c| {
            Ok((|| {
                if disabled {
                    accounts::ensure_not_last_admin(c, id)?;
                }
                users::set_disabled(c, id, disabled)?;
                Ok(if disabled { "Account disabled.".to_owned() } else { "Account enabled.".to_owned() })
            })())
        })
        .await?;
    let action = if disabled { "user.disable" } else { "user.enable" };
    finish(&user, &state, action, &name, result).await
}

#[derive(Deserialize)]
pub struct PasswordForm {
    password: String,
}

pub async fn reset_password(
    user: AdminUser,
    state: web::Data<AppState>,
    id: Input<web::Path<i64>>,
    form: Input<web::Form<PasswordForm>>,
) -> Result<HttpResponse, AppError> {
    let id = input(id)?;
    let form = input(form)?;
    let id = id.into_inner();
    let name = target_name(&state, id).await?;
    let password = form.into_inner().password;
    let result = state
        .db
        .run(move |c| Ok(accounts::reset_password(c, id, &password).map(|n| format!("Password of {n} reset."))))
        .await?;
    finish(&user, &state, "user.password", &name, result).await
}
