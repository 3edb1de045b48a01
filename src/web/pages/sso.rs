//! Sign-in with Microsoft Entra ID: the way there (`/login/entra`), the way back
//! (`/login/entra/callback`), and its settings page (Configuration ▸ Entra ID sign-in, admins).
//! The pending sign-in (state, nonce, PKCE verifier) lives in the server-side session; it is
//! used once, and any failure lands on `/login` with the reason in plain words.

use actix_session::Session;
use actix_web::http::{StatusCode, header};
use actix_web::{HttpRequest, HttpResponse, web};
use askama::Template;
use serde::Deserialize;

use super::audit;
use super::login::{NextQuery, SealedCookie, back_to_login, safe_next, start_session};
use crate::db::models::sso::SsoConfig;
use crate::db::now;
use crate::error::AppError;
use crate::sso::accounts::{self, SignedIn};
use crate::sso::oidc::PENDING_LIFETIME_SECS;
use crate::sso::settings::{self, CALLBACK_PATH, RoleMapping};
use crate::sso::{Pending, SignInError};
use crate::web::auth::AdminUser;
use crate::web::forms::FieldErrors;
use crate::web::forms::sso::{self as form, SsoInput};
use crate::web::refusals::Refusal;
use crate::web::{AppState, Input, Layout, html, input};

/// The sign-in between the redirect to Entra and the way back (state, nonce, PKCE verifier),
/// carried by the browser, sealed: starting a sign-in stores nothing on the server.
const PENDING: SealedCookie = SealedCookie {
    name: "ea_entra",
    path: "/login/entra",
    max_age: actix_web::cookie::time::Duration::seconds(PENDING_LIFETIME_SECS),
};

/// The redirect URI registered in Entra: configured, or this site's address as the browser
/// reached it (through a trusted proxy's headers, else the request's own).
fn redirect_uri(req: &HttpRequest, state: &AppState, config: &SsoConfig) -> String {
    if !config.redirect_uri.is_empty() {
        return config.redirect_uri.clone();
    }
    format!("{}{CALLBACK_PATH}", crate::web::client::public_origin(req, &state.proxies))
}

async fn enabled_config(state: &AppState) -> Result<SsoConfig, SignInError> {
    state.db.run(|c| Ok(settings::load(c)?)).await?.filter(|c| c.enabled).ok_or(SignInError::NotEnabled)
}

/// "Sign in with Microsoft": off to the tenant's authorize endpoint.
pub async fn start(
    req: HttpRequest,
    state: web::Data<AppState>,
    q: web::Query<NextQuery>,
) -> Result<HttpResponse, AppError> {
    let next = safe_next(q.next.as_deref());
    let outcome = async {
        let config = enabled_config(&state).await?;
        state.sso.begin(&config, &redirect_uri(&req, &state, &config), next.clone()).await
    }
    .await;
    match outcome {
        Ok((url, pending)) => {
            let pending = serde_json::to_string(&pending).map_err(|e| AppError::Internal(e.into()))?;
            Ok(HttpResponse::SeeOther()
                .insert_header((header::LOCATION, url.to_string()))
                .cookie(PENDING.seal(&state, &pending)?)
                .finish())
        }
        Err(SignInError::Internal(e)) => Err(AppError::Internal(e)),
        Err(e) => {
            tracing::warn!(error = %e, "Entra sign-in could not start");
            back_to_login(&state, &next, &e.to_string())
        }
    }
}

#[derive(Deserialize)]
pub struct CallbackQuery {
    code: Option<String>,
    state: Option<String>,
    error: Option<String>,
    error_description: Option<String>,
}

/// The way back from Entra: the state must be this session's, then the code is redeemed and
/// the ID token verified, and the person signed in with the mapped role.
pub async fn callback(
    req: HttpRequest,
    session: Session,
    state: web::Data<AppState>,
    q: Input<web::Query<CallbackQuery>>,
) -> Result<HttpResponse, AppError> {
    let q = input(q)?.into_inner();
    let from = state.client_address(&req);
    let pending = PENDING.open(&state, &req).and_then(|p| serde_json::from_str::<Pending>(&p).ok());
    let Some(pending) = pending else {
        // Nothing was started in this browser: a stale bookmark, a second tab, or noise. Counted
        // in the metrics, and answered without storing anything.
        state.metrics.observe_sign_in_refused("no_pending_sign_in");
        return back_to_login(&state, "/", &SignInError::NoPendingSignIn.to_string());
    };
    let next = pending.next.clone();
    let (who, outcome) = complete(&state, Some(pending), q).await;
    // One use: whatever happened, the next attempt starts over.
    let mut res = match outcome {
        Ok(SignedIn { user, created, previous_role }) => {
            start_session(&session, user.id)?;
            let mut details = "via Entra ID".to_owned();
            if created {
                details.push_str(&format!("; account created as {}", user.role().label()));
            }
            if let Some(old) = previous_role {
                details.push_str(&format!("; role {} → {} from the mapping", old.label(), user.role().label()));
            }
            audit(&state.db, &user.username, "login", &from, "success", &details).await?;
            HttpResponse::SeeOther().insert_header((header::LOCATION, next)).finish()
        }
        Err(SignInError::Internal(e)) => return Err(AppError::Internal(e)),
        Err(e) => {
            tracing::warn!(error = %e, "Entra sign-in refused");
            let details = format!("via Entra ID: {e}");
            match who {
                // Refused before anyone was identified (Entra's error, a forged state or token):
                // anyone can cause that, so it is counted per address and minute.
                None => {
                    let refusal = Refusal { actor: from.clone(), action: "login", target: "Entra ID".into(), details };
                    state.refusals.record(&state.db, refusal).await;
                }
                Some(who) => audit(&state.db, &who, "login", &from, "failure", &details).await?,
            }
            back_to_login(&state, &next, &e.to_string())?
        }
    };
    res.add_cookie(&PENDING.removal(&state)).map_err(|e| AppError::Internal(e.into()))?;
    Ok(res)
}

/// Who tried, once Entra's ID token named them (for the audit log), and what came of it.
async fn complete(
    state: &AppState,
    pending: Option<Pending>,
    q: CallbackQuery,
) -> (Option<String>, Result<SignedIn, SignInError>) {
    let mut who = None;
    let result = async {
        let pending =
            pending.filter(|p| now() - p.started_at <= PENDING_LIFETIME_SECS).ok_or(SignInError::NoPendingSignIn)?;
        // An answer that does not carry this session's state is not ours to act on, nor to
        // show: its error text could be anyone's.
        if q.state.as_deref() != Some(pending.state.as_str()) {
            return Err(SignInError::StateMismatch);
        }
        if let Some(error) = q.error {
            let description = q.error_description.as_deref().map(crate::sso::oidc::first_line).unwrap_or_default();
            return Err(SignInError::Provider(if description.is_empty() {
                error
            } else {
                format!("{description} ({error})")
            }));
        }
        let code = q.code.filter(|c| !c.is_empty()).ok_or_else(|| SignInError::Provider("no code came back".into()))?;
        let config = enabled_config(state).await?;
        let secret =
            settings::stored_secret(&state.secrets, &config).map_err(|e| SignInError::Unreachable(e.to_string()))?;
        let identity = state.sso.finish(&config, secret, &pending, code).await?;
        who = Some(if identity.username.is_empty() {
            format!("entra:{}", identity.object_id)
        } else {
            identity.username.clone()
        });
        let role = accounts::role_of(&identity, &RoleMapping::from_config(&config))?;
        state.db.run(move |c| Ok(accounts::sign_in(c, &identity, role))).await?
    }
    .await;
    (who, result)
}

#[derive(Template)]
#[template(path = "config/sso.html")]
struct SsoPage {
    layout: Layout,
    form: SsoInput,
    errors: FieldErrors,
    message: Option<String>,
    secret_configured: bool,
    redirect_uri: String,
    default_authority: &'static str,
}

impl SsoPage {
    fn err(&self, field: &str) -> Option<&str> {
        self.errors.get(field)
    }
}

async fn render(
    req: &HttpRequest,
    user: &AdminUser,
    state: &AppState,
    form: Option<SsoInput>,
    errors: FieldErrors,
    message: Option<String>,
) -> Result<HttpResponse, AppError> {
    let config = state.db.run(|c| Ok(settings::load(c)?)).await?;
    let secret_configured = config.as_ref().is_some_and(|c| c.secret_ciphertext.is_some());
    let form = form.unwrap_or_else(|| config.as_ref().map(SsoInput::from_config).unwrap_or_default());
    let redirect_uri = if form.redirect_uri.trim().is_empty() {
        format!("{}{CALLBACK_PATH}", crate::web::client::public_origin(req, &state.proxies))
    } else {
        form.redirect_uri.trim().to_owned()
    };
    let bad = !errors.is_empty();
    let mut res = html(&SsoPage {
        layout: Layout::new(user, "integrations"),
        form,
        errors,
        message,
        secret_configured,
        redirect_uri,
        default_authority: settings::DEFAULT_AUTHORITY,
    })?;
    if bad {
        *res.status_mut() = StatusCode::BAD_REQUEST;
    }
    Ok(res)
}

pub async fn show(req: HttpRequest, user: AdminUser, state: web::Data<AppState>) -> Result<HttpResponse, AppError> {
    render(&req, &user, &state, None, FieldErrors::default(), None).await
}

pub async fn save(
    req: HttpRequest,
    user: AdminUser,
    state: web::Data<AppState>,
    form: Input<web::Form<Vec<(String, String)>>>,
) -> Result<HttpResponse, AppError> {
    let mut typed = form::from_pairs(input(form)?.into_inner());
    let outcome = match form::validate(&typed) {
        Err(errors) => {
            let secret_typed = !typed.client_secret.trim().is_empty();
            let needed = crate::sso::refused(&state.db, &user.username, &errors.summary(), secret_typed).await?;
            Err(errors.and_secret(needed))
        }
        Ok(s) => crate::sso::configure(&state.db, &state.secrets, s, &user.username)
            .await?
            .map_err(FieldErrors::secret_needed),
    };
    // The secret is never sent back, not even after a failed save.
    typed.client_secret.clear();
    match outcome {
        Ok(message) => render(&req, &user, &state, None, FieldErrors::default(), Some(message)).await,
        Err(errors) => render(&req, &user, &state, Some(typed), errors, None).await,
    }
}
