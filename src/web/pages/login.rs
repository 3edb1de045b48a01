//! Sign-in and sign-out, with throttling against password guessing.

use actix_session::Session;
use actix_web::http::StatusCode;
use actix_web::{HttpRequest, HttpResponse, http::header, web};
use askama::Template;
use serde::Deserialize;

use super::audit;
use crate::auth::verify_password;
use crate::db::models::users;
use crate::db::now;
use crate::error::AppError;
use crate::web::login_guard::Attempt;
use crate::web::refusals::Refusal;
use crate::web::session::keys;
use crate::web::{AppState, html};

#[derive(Template)]
#[template(path = "login.html")]
struct LoginPage {
    csrf: String,
    next: String,
    error: Option<String>,
    username: String,
    /// Offer "Sign in with Microsoft".
    sso_enabled: bool,
}

/// How a sign-in page is answered.
pub struct LoginAnswer {
    pub status: StatusCode,
    pub error: Option<String>,
    /// Seconds to tell the client to wait (`Retry-After`).
    pub retry_after: Option<i64>,
}

impl LoginAnswer {
    fn ok(error: Option<String>) -> Self {
        Self { status: StatusCode::OK, error, retry_after: None }
    }
    fn refused(status: StatusCode, error: impl Into<String>) -> Self {
        Self { status, error: Some(error.into()), retry_after: None }
    }
}

/// The sign-in page. A browser with a session uses its CSRF token; one without gets a token
/// bound to a cookie of its own, so that showing the page stores nothing on the server.
async fn login_page(
    req: &HttpRequest,
    state: &AppState,
    session: &Session,
    next: String,
    username: String,
    answer: LoginAnswer,
) -> Result<HttpResponse, AppError> {
    let sso_enabled = state.db.run(|c| Ok(crate::sso::settings::load(c)?.is_some_and(|s| s.enabled))).await?;
    let (csrf, cookie) = match session.get::<String>(keys::CSRF).ok().flatten() {
        Some(t) => (t, None),
        None => state.login_csrf.token(req),
    };
    let mut res = html(&LoginPage { csrf, next, error: answer.error, username, sso_enabled })?;
    *res.status_mut() = answer.status;
    if let Some(c) = cookie {
        res.add_cookie(&c).map_err(|e| AppError::Internal(e.into()))?;
    }
    if let Some(secs) = answer.retry_after {
        res.headers_mut().insert(header::RETRY_AFTER, header::HeaderValue::from(secs.max(1)));
    }
    Ok(res)
}

/// Starts the session of a person who just proved who they are (password or Entra alike): a
/// new session id, so that a session fixed before sign-in is worthless, and nothing kept from
/// the anonymous session (a new CSRF token is made on first use).
pub fn start_session(session: &Session, user_id: i64) -> Result<(), AppError> {
    session.renew();
    session.clear();
    let t = now();
    let internal = |e: actix_session::SessionInsertError| AppError::Internal(anyhow::anyhow!("{e}"));
    session.insert(keys::USER_ID, user_id).map_err(internal)?;
    session.insert(keys::LOGIN_AT, t).map_err(internal)?;
    session.insert(keys::LAST_ACTIVE, t).map_err(internal)?;
    Ok(())
}

#[derive(Deserialize)]
pub struct NextQuery {
    pub next: Option<String>,
}

/// A cookie that carries what the sign-in pages need between two requests of one browser —
/// a message to show once, an Entra sign-in under way — sealed with AES-GCM under the master
/// key (bound to its purpose), so that nothing is stored on the server for a visitor who has not
/// signed in, and nothing in it can be read or forged by anyone else.
pub struct SealedCookie {
    pub name: &'static str,
    /// Also the associated data of the seal: a value made for one cookie opens in no other.
    pub path: &'static str,
    pub max_age: actix_web::cookie::time::Duration,
}

impl SealedCookie {
    /// Set on the way to the sign-in page, shown once by it.
    pub const NOTICE: SealedCookie =
        SealedCookie { name: "ea_notice", path: "/login", max_age: actix_web::cookie::time::Duration::minutes(2) };

    pub fn seal(&self, state: &AppState, value: &str) -> Result<actix_web::cookie::Cookie<'static>, AppError> {
        use base64::Engine;
        let sealed = state.secrets.seal(&self.purpose(), value)?;
        let text = base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(sealed);
        Ok(self.cookie(state, text, Some(self.max_age)))
    }

    /// The value this browser carries, if it opens.
    pub fn open(&self, state: &AppState, req: &HttpRequest) -> Option<String> {
        use base64::Engine;
        let c = req.cookie(self.name)?;
        let sealed = base64::engine::general_purpose::URL_SAFE_NO_PAD.decode(c.value()).ok()?;
        state.secrets.open(&self.purpose(), &sealed).ok()
    }

    /// The cookie's removal (a one-use value is removed when used).
    pub fn removal(&self, state: &AppState) -> actix_web::cookie::Cookie<'static> {
        let mut c = self.cookie(state, String::new(), None);
        c.make_removal();
        c
    }

    fn purpose(&self) -> String {
        format!("cookie:{}:{}", self.name, self.path)
    }

    fn cookie(
        &self,
        state: &AppState,
        value: String,
        max_age: Option<actix_web::cookie::time::Duration>,
    ) -> actix_web::cookie::Cookie<'static> {
        let mut c = actix_web::cookie::Cookie::build(self.name, value)
            .path(self.path)
            .http_only(true)
            .secure(state.settings.cookies_secure())
            // Lax: the way back from Entra is a top-level navigation from another site.
            .same_site(actix_web::cookie::SameSite::Lax)
            .finish();
        if let Some(age) = max_age {
            c.set_max_age(age);
        }
        c
    }
}

/// Only a path on this site may be a destination after sign-in: no `//host`, no scheme.
///
/// Browsers drop tabs and line breaks from a URL and read a backslash as a slash, so that
/// `/<TAB>/evil.example` would become `//evil.example`, another site: a path with a control
/// character or a backslash anywhere is refused.
pub fn safe_next(next: Option<&str>) -> String {
    match next {
        Some(n) if n.starts_with('/') && !n.starts_with("//") && !n.chars().any(|c| c.is_control() || c == '\\') => {
            n.to_owned()
        }
        _ => "/".to_owned(),
    }
}

fn login_address(next: &str) -> String {
    format!("/login?next={}", url::form_urlencoded::byte_serialize(next.as_bytes()).collect::<String>())
}

/// Sends the browser to the sign-in page, which shows `error` once: a failure elsewhere (the way
/// back from Entra) is read on `/login`, and reloading it cannot replay anything. The message
/// travels in a sealed cookie: nothing is stored on the server.
pub fn back_to_login(state: &AppState, next: &str, error: &str) -> Result<HttpResponse, AppError> {
    Ok(HttpResponse::SeeOther()
        .insert_header((header::LOCATION, login_address(next)))
        .cookie(SealedCookie::NOTICE.seal(state, error)?)
        .finish())
}

pub async fn show(
    req: HttpRequest,
    session: Session,
    state: web::Data<AppState>,
    q: web::Query<NextQuery>,
) -> Result<HttpResponse, AppError> {
    let next = safe_next(q.next.as_deref());
    let notice = SealedCookie::NOTICE.open(&state, &req);
    let shown = notice.is_some();
    let mut res = login_page(&req, &state, &session, next, String::new(), LoginAnswer::ok(notice)).await?;
    if shown {
        res.add_cookie(&SealedCookie::NOTICE.removal(&state)).map_err(|e| AppError::Internal(e.into()))?;
    }
    Ok(res)
}

#[derive(Deserialize)]
pub struct LoginForm {
    username: String,
    password: String,
    next: Option<String>,
}

pub async fn submit(
    req: HttpRequest,
    session: Session,
    state: web::Data<AppState>,
    form: web::Form<LoginForm>,
) -> Result<HttpResponse, AppError> {
    let LoginForm { username, password, next } = form.into_inner();
    let username = username.trim().to_owned();
    let next = safe_next(next.as_deref());
    let address = state.client_address(&req);
    let answer =
        async |answer: LoginAnswer| login_page(&req, &state, &session, next.clone(), username.clone(), answer).await;

    // Checked before anything is looked up: no user name holds a control character, and
    // PostgreSQL cannot even compare text with a NUL.
    if username.is_empty()
        || password.is_empty()
        || password.len() > 1024
        || username.len() > 64
        || username.chars().any(char::is_control)
    {
        return answer(LoginAnswer::refused(StatusCode::BAD_REQUEST, "Enter your user name and password.")).await;
    }

    // A browser in which this user signed in before is recognised by its device cookie: its
    // attempts are counted on their own, so a guesser elsewhere cannot make it wait, and its
    // checks have their own permits, so a flood of guesses cannot crowd it out.
    let device = state.login_devices.recognise(&req, &username);

    // The attempt is counted before its password is checked: a hundred guesses sent at once are
    // counted like a hundred sent one after the other.
    let throttle = state.login_throttle;
    let attempt = Attempt { username: username.clone(), address: address.clone(), device: device.clone() };
    let claimed = attempt.clone();
    if let Err((key, wait)) = state.db.run(move |c| Ok(throttle.claim(c, &claimed)?)).await? {
        state.metrics.observe_sign_in_refused("waiting");
        // Counted per waiting key, not per typed name: new names from a waiting address add
        // no rows.
        let refusal = Refusal { actor: key, action: "login", target: address.clone(), details: "waiting".into() };
        state.refusals.record(&state.db, refusal).await;
        let mut a = LoginAnswer::refused(
            StatusCode::TOO_MANY_REQUESTS,
            format!("Too many failed sign-ins. Try again in {}.", crate::web::pages::fmt_duration(wait)),
        );
        a.retry_after = Some(wait);
        return answer(a).await;
    }

    let lookup = username.clone();
    let user = state.db.run(move |c| Ok(users::find_by_name(c, &lookup)?)).await?;
    // An account without a password (made by Entra sign-in) can never pass this form; it is
    // checked against the dummy hash anyway, so that it takes as long to refuse as any other.
    let hash = user.as_ref().map(|u| u.password_hash.clone()).filter(|h| !h.is_empty());
    let pw = password.clone();
    let Some(verified) = state
        .password_checks
        .run(device.is_some(), move || match hash {
            Some(h) => verify_password(&pw, &h),
            None => {
                verify_password(&pw, crate::auth::dummy_password_hash());
                false
            }
        })
        .await?
    else {
        // Not checked: the attempt is given back.
        let given_back = attempt.clone();
        state.db.run(move |c| Ok(throttle.give_back(c, &given_back)?)).await?;
        state.metrics.observe_sign_in_refused("busy");
        let mut a = LoginAnswer::refused(
            StatusCode::SERVICE_UNAVAILABLE,
            "Too many sign-ins at this moment. Try again in a few seconds.",
        );
        a.retry_after = Some(2);
        return answer(a).await;
    };
    state.metrics.observe_password_check();

    match user {
        Some(u) if verified && !u.disabled => {
            state.db.run(move |c| Ok(throttle.succeeded(c, &attempt)?)).await?;
            start_session(&session, u.id)?;
            audit(&state.db, &u.username, "login", &address, "success", "").await?;
            Ok(HttpResponse::SeeOther()
                .insert_header((header::LOCATION, next.clone()))
                .cookie(state.login_devices.issue(&username))
                .finish())
        }
        _ => {
            let why = match &user {
                Some(u) if u.disabled && verified => "account disabled",
                Some(u) if u.password_hash.is_empty() => "no password: the account signs in with Microsoft",
                Some(_) => "wrong password",
                None => "unknown user",
            };
            audit(&state.db, &username, "login", &address, "failure", why).await?;
            answer(LoginAnswer::refused(StatusCode::UNAUTHORIZED, "The user name or password is not correct.")).await
        }
    }
}

pub async fn logout(session: Session, state: web::Data<AppState>) -> Result<HttpResponse, AppError> {
    if let Ok(Some(uid)) = session.get::<i64>(keys::USER_ID) {
        let user = state.db.run(move |c| Ok(users::find(c, uid)?)).await?;
        if let Some(u) = user {
            audit(&state.db, &u.username, "logout", "", "success", "").await?;
        }
    }
    // Deletes the session on the server too: the old cookie is useless from now on.
    session.purge();
    Ok(HttpResponse::SeeOther().insert_header((header::LOCATION, "/login")).finish())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_local_paths_are_followed_after_sign_in() {
        assert_eq!(safe_next(Some("/endpoints?x=1")), "/endpoints?x=1");
        for bad in [
            "https://evil.example",
            "//evil.example",
            "/\\evil.example",
            "/\t/evil.example",
            "/\n/evil.example",
            "/x\\..\\\\evil.example",
            "evil",
            "",
        ] {
            assert_eq!(safe_next(Some(bad)), "/", "{bad}");
        }
        assert_eq!(safe_next(None), "/");
    }
}
