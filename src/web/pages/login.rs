//! Sign-in and sign-out, with throttling against password guessing.

use actix_session::Session;
use actix_web::{HttpRequest, HttpResponse, http::header, web};
use askama::Template;
use serde::Deserialize;

use super::audit;
use crate::auth::verify_password;
use diesel::QueryResult;

use crate::db::models::{login_failures, users};
use crate::db::{AnyConnection, now};
use crate::error::AppError;
use crate::web::session::{csrf_token, keys};
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

/// The sign-in page, with an error to show and the status to answer with.
pub async fn login_page(
    state: &AppState,
    session: &Session,
    next: String,
    error: Option<String>,
    username: String,
    status: actix_web::http::StatusCode,
) -> Result<HttpResponse, AppError> {
    let sso_enabled = state.db.run(|c| Ok(crate::sso::settings::load(c)?.is_some_and(|s| s.enabled))).await?;
    let mut res = html(&LoginPage { csrf: csrf_token(session), next, error, username, sso_enabled })?;
    *res.status_mut() = status;
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

/// Sends the browser to the sign-in page, which shows `error` once: a failure elsewhere (the way
/// back from Entra) is read on `/login`, and reloading it cannot replay anything.
pub fn back_to_login(session: &Session, next: &str, error: &str) -> Result<HttpResponse, AppError> {
    session.insert(keys::LOGIN_ERROR, error).map_err(|e| AppError::Internal(anyhow::anyhow!("{e}")))?;
    let to = format!("/login?next={}", url::form_urlencoded::byte_serialize(next.as_bytes()).collect::<String>());
    Ok(HttpResponse::SeeOther().insert_header((header::LOCATION, to)).finish())
}

pub async fn show(
    session: Session,
    state: web::Data<AppState>,
    q: web::Query<NextQuery>,
) -> Result<HttpResponse, AppError> {
    let next = safe_next(q.next.as_deref());
    let error = session.remove_as::<String>(keys::LOGIN_ERROR).and_then(Result::ok);
    login_page(&state, &session, next, error, String::new(), actix_web::http::StatusCode::OK).await
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
    let address = req.peer_addr().map(|a| a.ip().to_string()).unwrap_or_default();
    let refuse = async |msg: String, session: &Session, status: actix_web::http::StatusCode| {
        login_page(&state, session, next.clone(), Some(msg), username.clone(), status).await
    };

    // Checked before anything is looked up: no user name holds a control character, and
    // PostgreSQL cannot even compare text with a NUL.
    if username.is_empty()
        || password.is_empty()
        || password.len() > 1024
        || username.len() > 64
        || username.chars().any(char::is_control)
    {
        return refuse("Enter your user name and password.".into(), &session, actix_web::http::StatusCode::BAD_REQUEST)
            .await;
    }

    let throttle = state.login_throttle;
    let (u, a) = (username.clone(), address.clone());
    if let Some(wait) = state.db.run(move |c| Ok(throttle.locked(c, &u, &a)?)).await? {
        audit(&state.db, &username, "login", &address, "refused", "too many failed attempts").await?;
        let minutes = ((wait + 59) / 60).max(1);
        return refuse(
            format!("Too many failed sign-ins. Try again in {minutes} minute(s)."),
            &session,
            actix_web::http::StatusCode::TOO_MANY_REQUESTS,
        )
        .await;
    }

    let lookup = username.clone();
    let user = state.db.run(move |c| Ok(users::find_by_name(c, &lookup)?)).await?;
    // Verify even for unknown users (and Entra-only ones, whose hash is empty) so that timing does
    // not tell which names exist.
    let hash = user.as_ref().map(|u| u.password_hash.clone()).filter(|h| !h.is_empty());
    let pw = password.clone();
    let verified =
        web::block(move || verify_password(&pw, hash.as_deref().unwrap_or(crate::auth::dummy_password_hash())))
            .await
            .map_err(|e| AppError::Internal(e.into()))?;

    match user {
        Some(u) if verified && !u.disabled => {
            let (name, a) = (username.clone(), address.clone());
            state.db.run(move |c| Ok(throttle.succeeded(c, &name, &a)?)).await?;
            start_session(&session, u.id)?;
            audit(&state.db, &u.username, "login", &address, "success", "").await?;
            Ok(HttpResponse::SeeOther().insert_header((header::LOCATION, next)).finish())
        }
        _ => {
            let (u, a) = (username.clone(), address.clone());
            state.db.run(move |c| Ok(throttle.failed(c, &u, &a)?)).await?;
            let why = match &user {
                Some(u) if u.disabled && verified => "account disabled",
                Some(_) => "wrong password",
                None => "unknown user",
            };
            audit(&state.db, &username, "login", &address, "failure", why).await?;
            refuse(
                "The user name or password is not correct.".into(),
                &session,
                actix_web::http::StatusCode::UNAUTHORIZED,
            )
            .await
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

/// Counts failed sign-ins per user name and address, and with a higher limit per user name
/// alone (guessing one password from many addresses) and per address alone (trying many user
/// names from one address), and locks out for a while past the limit. The address is the
/// peer's: a client-supplied `X-Forwarded-For` is not believed. The counts live in the
/// database, so the lock-out holds on every instance.
#[derive(Debug, Clone, Copy)]
pub struct LoginThrottle {
    max_failures: u32,
    lockout_secs: i64,
}

impl LoginThrottle {
    pub fn new(max_failures: u32, lockout_minutes: i64) -> Self {
        Self { max_failures, lockout_secs: lockout_minutes * 60 }
    }

    pub fn lockout_secs(&self) -> i64 {
        self.lockout_secs
    }

    fn keys(username: &str, address: &str) -> [(String, u32); 3] {
        let user = username.to_lowercase();
        [(format!("{user}|{address}"), 1), (format!("{user}|*"), 4), (format!("*|{address}"), 4)]
    }

    /// Seconds left of a lock-out, if any.
    pub fn locked(&self, conn: &mut AnyConnection, username: &str, address: &str) -> QueryResult<Option<i64>> {
        let t = now();
        let keys = Self::keys(username, address);
        let names: Vec<String> = keys.iter().map(|(k, _)| k.clone()).collect();
        let counts = login_failures::get(conn, &names)?;
        Ok(keys
            .iter()
            .filter_map(|(k, factor)| {
                let (_, count, last) = counts.iter().find(|(key, _, _)| key == k)?;
                let left = last + self.lockout_secs - t;
                (*count as u32 >= self.max_failures * factor && left > 0).then_some(left)
            })
            .max())
    }

    pub fn failed(&self, conn: &mut AnyConnection, username: &str, address: &str) -> QueryResult<()> {
        let t = now();
        for (k, _) in Self::keys(username, address) {
            login_failures::record(conn, &k, t, self.lockout_secs)?;
        }
        Ok(())
    }

    pub fn succeeded(&self, conn: &mut AnyConnection, username: &str, address: &str) -> QueryResult<()> {
        let [(pair, _), ..] = Self::keys(username, address);
        login_failures::clear(conn, &pair).map(|_| ())
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
    fn the_throttle_locks_after_the_limit() {
        let (_dir, db) = migrated_db();
        let mut conn = db.conn().unwrap();
        let c = &mut *conn;
        let t = LoginThrottle::new(3, 15);
        for _ in 0..3 {
            assert!(t.locked(c, "alice", "1.2.3.4").unwrap().is_none());
            t.failed(c, "alice", "1.2.3.4").unwrap();
        }
        assert!(t.locked(c, "Alice", "1.2.3.4").unwrap().is_some());
        assert!(t.locked(c, "alice", "5.6.7.8").unwrap().is_none(), "another address is not locked yet");
        t.succeeded(c, "alice", "1.2.3.4").unwrap();
        assert!(t.locked(c, "alice", "1.2.3.4").unwrap().is_none(), "a success clears the address's count");
    }

    #[test]
    fn old_failures_stop_counting() {
        let (_dir, db) = migrated_db();
        let mut conn = db.conn().unwrap();
        let c = &mut *conn;
        let long_ago = now() - 3600;
        for _ in 0..3 {
            login_failures::record(c, "bob|1.2.3.4", long_ago, 900).unwrap();
        }
        login_failures::record(c, "bob|1.2.3.4", now(), 900).unwrap();
        let rows = login_failures::get(c, &["bob|1.2.3.4".to_owned()]).unwrap();
        assert_eq!(rows[0].1, 1, "a count past the window starts again");
        assert_eq!(login_failures::purge(c, now() + 1).unwrap(), 1);
    }

    #[test]
    fn many_names_from_one_address_lock_that_address() {
        let (_dir, db) = migrated_db();
        let mut conn = db.conn().unwrap();
        let c = &mut *conn;
        let t = LoginThrottle::new(3, 15);
        for i in 0..12 {
            assert!(t.locked(c, &format!("user{i}"), "1.2.3.4").unwrap().is_none(), "attempt {i}");
            t.failed(c, &format!("user{i}"), "1.2.3.4").unwrap();
        }
        assert!(t.locked(c, "someone-else", "1.2.3.4").unwrap().is_some());
        assert!(t.locked(c, "someone-else", "5.6.7.8").unwrap().is_none());
    }
}
