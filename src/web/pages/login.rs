//! Sign-in and sign-out, with throttling against password guessing.

use actix_session::Session;
use actix_web::http::StatusCode;
use actix_web::{HttpRequest, HttpResponse, http::header, web};
use askama::Template;
use diesel::QueryResult;
use serde::Deserialize;

use super::audit;
use crate::auth::verify_password;
use crate::db::models::login_failures::{self, Growth};
use crate::db::models::users;
use crate::db::{AnyConnection, now};
use crate::error::AppError;
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

/// A notice for the sign-in page that the browser carries (a cookie of a fixed code, shown
/// once): for answers that must store nothing on the server.
pub enum Notice {
    /// A way back from Entra that this browser did not start (or started too long ago).
    NoPendingSignIn,
}

impl Notice {
    const COOKIE: &str = "ea_notice";

    fn code(&self) -> &'static str {
        match self {
            Notice::NoPendingSignIn => "sso-expired",
        }
    }

    fn text(code: &str) -> Option<String> {
        (code == Notice::NoPendingSignIn.code()).then(|| crate::sso::SignInError::NoPendingSignIn.to_string())
    }

    fn cookie(value: &str, secure: bool) -> actix_web::cookie::Cookie<'static> {
        let mut c = actix_web::cookie::Cookie::build(Self::COOKIE, value.to_owned())
            .path("/login")
            .http_only(true)
            .secure(secure)
            .same_site(actix_web::cookie::SameSite::Lax)
            .finish();
        if value.is_empty() {
            c.make_removal();
        } else {
            c.set_max_age(actix_web::cookie::time::Duration::minutes(2));
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
/// back from Entra) is read on `/login`, and reloading it cannot replay anything. Only for a
/// browser whose session already holds a pending sign-in: nothing new is stored for strangers.
pub fn back_to_login(session: &Session, next: &str, error: &str) -> Result<HttpResponse, AppError> {
    session.insert(keys::LOGIN_ERROR, error).map_err(|e| AppError::Internal(anyhow::anyhow!("{e}")))?;
    Ok(HttpResponse::SeeOther().insert_header((header::LOCATION, login_address(next))).finish())
}

/// Sends the browser to the sign-in page, which shows `notice` once; nothing is stored.
pub fn to_login_with_notice(next: &str, notice: Notice, secure: bool) -> HttpResponse {
    HttpResponse::SeeOther()
        .insert_header((header::LOCATION, login_address(next)))
        .cookie(Notice::cookie(notice.code(), secure))
        .finish()
}

pub async fn show(
    req: HttpRequest,
    session: Session,
    state: web::Data<AppState>,
    q: web::Query<NextQuery>,
) -> Result<HttpResponse, AppError> {
    let next = safe_next(q.next.as_deref());
    let notice = req.cookie(Notice::COOKIE).map(|c| c.value().to_owned());
    let error = session
        .remove_as::<String>(keys::LOGIN_ERROR)
        .and_then(Result::ok)
        .or_else(|| notice.as_deref().and_then(Notice::text));
    let mut res = login_page(&req, &state, &session, next, String::new(), LoginAnswer::ok(error)).await?;
    if notice.is_some() {
        // Shown once.
        res.add_cookie(&Notice::cookie("", state.settings.cookies_secure()))
            .map_err(|e| AppError::Internal(e.into()))?;
    }
    Ok(res)
}

#[derive(Deserialize)]
pub struct LoginForm {
    username: String,
    password: String,
    next: Option<String>,
}

/// How long a sign-in waits for a free password check before it is told to come back.
const CHECK_QUEUE_WAIT: std::time::Duration = std::time::Duration::from_secs(2);

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

    // A bounded number of checks at once: a burst of guesses waits here (holding only its
    // form) or is turned away, instead of holding Argon2's memory each.
    let Ok(Ok(_permit)) = tokio::time::timeout(CHECK_QUEUE_WAIT, state.password_checks.acquire()).await else {
        state.metrics.observe_sign_in_refused("busy");
        let mut a = LoginAnswer::refused(
            StatusCode::SERVICE_UNAVAILABLE,
            "Too many sign-ins at this moment. Try again in a few seconds.",
        );
        a.retry_after = Some(2);
        return answer(a).await;
    };

    // The attempt is counted before its password is checked: a hundred guesses sent at once are
    // counted like a hundred sent one after the other.
    let throttle = state.login_throttle;
    let (u, a) = (username.clone(), address.clone());
    if let Err(wait) = state.db.run(move |c| Ok(throttle.claim(c, &u, &a)?)).await? {
        state.metrics.observe_sign_in_refused("waiting");
        state
            .refusals
            .record(
                &state.db,
                Refusal {
                    actor: username.clone(),
                    action: "login",
                    target: address.clone(),
                    details: "too many failed attempts: waiting".into(),
                },
            )
            .await;
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
    let verified = web::block(move || match hash {
        Some(h) => verify_password(&pw, &h),
        None => {
            verify_password(&pw, crate::auth::dummy_password_hash());
            false
        }
    })
    .await
    .map_err(|e| AppError::Internal(e.into()))?;
    state.metrics.observe_password_check();

    match user {
        Some(u) if verified && !u.disabled => {
            let (name, a) = (username.clone(), address.clone());
            state.db.run(move |c| Ok(throttle.succeeded(c, &name, &a)?)).await?;
            start_session(&session, u.id)?;
            audit(&state.db, &u.username, "login", &address, "success", "").await?;
            Ok(HttpResponse::SeeOther().insert_header((header::LOCATION, next.clone())).finish())
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

/// Throttles password guessing with growing waits, counted in the database so that they hold on
/// every instance. Two counts per attempt: the user name's (guessing one account from many
/// addresses) and the client address's (trying many names from one address, four times as many
/// free attempts). Past the free attempts each further attempt makes the next one wait, doubling
/// from one second up to the longest wait: an attacker gets a handful of guesses an hour per
/// account, while the account's owner is never locked out for longer than the longest wait
/// after the last guess. Attempts made while waiting are refused unchecked and cost nothing.
#[derive(Debug, Clone, Copy)]
pub struct LoginThrottle {
    per_user: Growth,
    per_address: Growth,
}

impl LoginThrottle {
    /// A key quiet for this long starts again from zero.
    pub const FORGET_AFTER_SECS: i64 = 24 * 3600;

    pub fn new(free_attempts: u32, longest_wait_minutes: i64) -> Self {
        let max_wait_secs = (longest_wait_minutes * 60).max(1);
        Self {
            per_user: Growth { free: free_attempts, max_wait_secs },
            per_address: Growth { free: free_attempts.saturating_mul(4), max_wait_secs },
        }
    }

    fn keys(&self, username: &str, address: &str) -> [(String, Growth); 2] {
        [(format!("user:{}", username.to_lowercase()), self.per_user), (format!("address:{address}"), self.per_address)]
    }

    /// Counts an attempt on both keys, or neither: `Err(seconds)` when one of them must wait.
    pub fn claim(&self, conn: &mut AnyConnection, username: &str, address: &str) -> QueryResult<Result<(), i64>> {
        let now_ms = chrono::Utc::now().timestamp_millis();
        let outcome = conn.write_transaction(|c| {
            for (key, growth) in self.keys(username, address) {
                if let Err(until_ms) = login_failures::claim(c, &key, now_ms, growth, Self::FORGET_AFTER_SECS)? {
                    return Err(Claim::Wait(until_ms - now_ms));
                }
            }
            Ok(())
        });
        match outcome {
            Ok(()) => Ok(Ok(())),
            // Whole seconds, rounded up: a client that waits as told is not refused again.
            Err(Claim::Wait(ms)) => Ok(Err(((ms + 999) / 1000).max(1))),
            Err(Claim::Db(e)) => Err(e),
        }
    }

    /// The password was right: the user name starts over, and the address gets its attempt back.
    pub fn succeeded(&self, conn: &mut AnyConnection, username: &str, address: &str) -> QueryResult<()> {
        let [(user, _), (addr, _)] = self.keys(username, address);
        login_failures::clear(conn, &user)?;
        login_failures::refund(conn, &addr)?;
        Ok(())
    }
}

/// Why counting an attempt stopped (a wait rolls the transaction back: nothing is counted).
enum Claim {
    Wait(i64),
    Db(diesel::result::Error),
}

impl From<diesel::result::Error> for Claim {
    fn from(e: diesel::result::Error) -> Self {
        Claim::Db(e)
    }
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

    /// A fresh, migrated SQLite file (kept while the directory lives).
    fn migrated_db() -> (tempfile::TempDir, crate::db::Db) {
        let dir = tempfile::tempdir().unwrap();
        let db = crate::db::Db::connect(&format!("sqlite://{}", dir.path().join("t.db").display()), 1).unwrap();
        db.migrate().unwrap();
        (dir, db)
    }

    #[test]
    fn attempts_past_the_free_ones_wait_and_waiting_ones_are_not_counted() {
        let (_dir, db) = migrated_db();
        let mut conn = db.conn().unwrap();
        let c = &mut *conn;
        let t = LoginThrottle::new(3, 15);
        for i in 0..3 {
            assert_eq!(t.claim(c, "alice", "1.2.3.4").unwrap(), Ok(()), "free attempt {i}");
        }
        assert_eq!(t.claim(c, "Alice", "5.6.7.8").unwrap(), Err(1), "the user name waits, from any address");
        let rows = login_failures::get(c, &["user:alice".to_owned(), "address:5.6.7.8".to_owned()]).unwrap();
        assert_eq!(rows.len(), 1, "a refused attempt counts on neither key: {rows:?}");
        assert_eq!(rows[0].1, 3);
        t.succeeded(c, "alice", "1.2.3.4").unwrap();
        assert_eq!(t.claim(c, "alice", "1.2.3.4").unwrap(), Ok(()), "a success starts the user name over");
    }

    #[test]
    fn old_attempts_stop_counting() {
        let (_dir, db) = migrated_db();
        let mut conn = db.conn().unwrap();
        let c = &mut *conn;
        let g = Growth { free: 3, max_wait_secs: 900 };
        let long_ago = (now() - 2 * LoginThrottle::FORGET_AFTER_SECS) * 1000;
        for i in 0..3 {
            login_failures::claim(c, "user:bob", long_ago + i * 2000, g, LoginThrottle::FORGET_AFTER_SECS)
                .unwrap()
                .unwrap();
        }
        login_failures::claim(c, "user:bob", now() * 1000, g, LoginThrottle::FORGET_AFTER_SECS).unwrap().unwrap();
        let rows = login_failures::get(c, &["user:bob".to_owned()]).unwrap();
        assert_eq!(rows[0].1, 1, "a count quiet for longer than the window starts again");
        assert_eq!(login_failures::purge(c, now() + 1).unwrap(), 1);
    }

    #[test]
    fn many_names_from_one_address_make_that_address_wait() {
        let (_dir, db) = migrated_db();
        let mut conn = db.conn().unwrap();
        let c = &mut *conn;
        let t = LoginThrottle::new(3, 15);
        for i in 0..12 {
            assert_eq!(t.claim(c, &format!("user{i}"), "1.2.3.4").unwrap(), Ok(()), "attempt {i}");
        }
        assert!(t.claim(c, "someone-else", "1.2.3.4").unwrap().is_err());
        assert_eq!(t.claim(c, "someone-else", "5.6.7.8").unwrap(), Ok(()));
    }
}
