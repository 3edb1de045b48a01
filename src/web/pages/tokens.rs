//! API tokens (admins): create with a name, role and optional expiry (the token is shown
//! once), list with when each was last used and whether it is still accepted, revoke.

use actix_web::{HttpResponse, web};
use askama::Template;
use serde::Deserialize;

use super::audit;
use crate::auth::{Role, hash_api_token, new_api_token};
use crate::db::models::api_tokens::{self, ApiToken};
use crate::db::now;
use crate::error::AppError;
use crate::web::auth::AdminUser;
use crate::web::filters;
use crate::web::{AppState, Input, Layout, html, input};

#[derive(Template)]
#[template(path = "tokens.html")]
struct TokensPage {
    layout: Layout,
    tokens: Vec<ApiToken>,
    created: Option<String>,
    error: Option<String>,
    roles: [Role; 3],
}

impl TokensPage {
    /// `active`, `revoked` or `expired`: whether the API still accepts the token.
    fn state(&self, t: &ApiToken) -> &'static str {
        if t.revoked {
            "revoked"
        } else if !t.is_usable(now()) {
            "expired"
        } else {
            "active"
        }
    }
}

async fn render(
    user: &AdminUser,
    state: &AppState,
    created: Option<String>,
    error: Option<String>,
) -> Result<HttpResponse, AppError> {
    let tokens = state.db.run(|c| Ok(api_tokens::list(c)?)).await?;
    let status =
        if error.is_some() { actix_web::http::StatusCode::BAD_REQUEST } else { actix_web::http::StatusCode::OK };
    let mut res = html(&TokensPage { layout: Layout::new(user, "tokens"), tokens, created, error, roles: Role::ALL })?;
    *res.status_mut() = status;
    Ok(res)
}

pub async fn list(user: AdminUser, state: web::Data<AppState>) -> Result<HttpResponse, AppError> {
    render(&user, &state, None, None).await
}

#[derive(Deserialize)]
pub struct NewTokenForm {
    name: String,
    role: String,
    expires_days: Option<String>,
}

/// Validates a token name: what an administrator will recognise in the audit log.
pub fn check_token_name(name: &str) -> Result<(), String> {
    if name.is_empty() || name.chars().count() > 64 || name.chars().any(char::is_control) {
        return Err("A token name has 1 to 64 characters.".into());
    }
    Ok(())
}

pub async fn create(
    user: AdminUser,
    state: web::Data<AppState>,
    form: Input<web::Form<NewTokenForm>>,
) -> Result<HttpResponse, AppError> {
    let form = input(form)?;
    let name = form.name.trim().to_owned();
    if let Err(e) = check_token_name(&name) {
        return render(&user, &state, None, Some(e)).await;
    }
    let Some(role) = Role::parse(&form.role) else {
        return render(&user, &state, None, Some("Choose a role.".into())).await;
    };
    let expires_at = match form.expires_days.as_deref().map(str::trim).filter(|s| !s.is_empty()) {
        None => None,
        Some(d) => match d.parse::<i64>() {
            Ok(days) if (1..=3650).contains(&days) => Some(now() + days * 86_400),
            _ => {
                return render(
                    &user,
                    &state,
                    None,
                    Some("Expiry is a number of days from 1 to 3650, or empty.".into()),
                )
                .await;
            }
        },
    };
    let token = new_api_token();
    let hash = hash_api_token(&token);
    let (n, by, by_id) = (name.clone(), user.username.clone(), user.id);
    state
        .db
        .run(move |c| {
            Ok(api_tokens::create(c, &n, &hash, role, api_tokens::Creator::User { id: by_id, name: &by }, expires_at)?)
        })
        .await?;
    audit(&state.db, &user.username, "token.create", &name, "success", &format!("role {}", role.as_str())).await?;
    render(&user, &state, Some(token), None).await
}

pub async fn revoke(
    user: AdminUser,
    state: web::Data<AppState>,
    id: Input<web::Path<i64>>,
) -> Result<HttpResponse, AppError> {
    let id = input(id)?;
    let id = id.into_inner();
    let token = state.db.run(move |c| Ok(api_tokens::find(c, id)?)).await?.ok_or(AppError::NotFound)?;
    state.db.run(move |c| Ok(api_tokens::revoke(c, id)?)).await?;
    audit(&state.db, &user.username, "token.revoke", &token.name, "success", "").await?;
    Ok(HttpResponse::SeeOther().insert_header(("Location", "/tokens")).finish())
}
