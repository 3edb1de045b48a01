//! Sign-in and sign-out, with throttling against password guessing.

use std::collections::HashMap;
use std::sync::Mutex;

use actix_session::Session;
use actix_web::{HttpRequest, HttpResponse, http::header, web};
use askama::Template;
use serde::Deserialize;

use super::audit;
use crate::auth::verify_password;
use crate::db::models::users;
use crate::db::now;
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
}

#[derive(Deserialize)]
pub struct NextQuery {
    next: Option<String>,
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

pub async fn show(session: Session, q: web::Query<NextQuery>) -> Result<HttpResponse, AppError> {
    html(&LoginPage {
        csrf: csrf_token(&session),
        next: safe_next(q.next.as_deref()),
        error: None,
        username: String::new(),
    })
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
    let refuse = |msg: String, session: &Session, status: actix_web::http::StatusCode| {
        let page =
            LoginPage { csrf: csrf_token(session), next: next.clone(), error: Some(msg), username: username.clone() };
        html(&page).map(|mut r| {
            *r.status_mut() = status;
            r
        })
    };

    if let Some(wait) = state.login_throttle.locked(&username, &address) {
        audit(&state.db, &username, "login", &address, "refused", "too many failed attempts").await?;
        let minutes = ((wait + 59) / 60).max(1);
        return refuse(
            format!("Too many failed sign-ins. Try again in {minutes} minute(s)."),
            &session,
            actix_web::http::StatusCode::TOO_MANY_REQUESTS,
        );
    }
    // No user name holds a control character (PostgreSQL cannot even compare one with NUL).
    if username.is_empty()
        || password.is_empty()
        || password.len() > 1024
        || username.len() > 64
        || username.chars().any(char::is_control)
    {
        return refuse("Enter your user name and password.".into(), &session, actix_web::http::StatusCode::BAD_REQUEST);
    }

    let lookup = username.clone();
    let user = state.db.run(move |c| Ok(users::find_by_name(c, &lookup)?)).await?;
    // Verify even for unknown users so that timing does not tell which names exist.
    let hash = user.as_ref().map(|u| u.password_hash.clone());
    let pw = password.clone();
    let verified =
        web::block(move || verify_password(&pw, hash.as_deref().unwrap_or(crate::auth::dummy_password_hash())))
            .await
            .map_err(|e| AppError::Internal(e.into()))?;

    match user {
        Some(u) if verified && !u.disabled => {
            state.login_throttle.succeeded(&username, &address);
            // A new session id at sign-in, so that a session fixed before it is worthless.
            session.renew();
            session.clear();
            let t = now();
            session.insert(keys::USER_ID, u.id).map_err(|e| AppError::Internal(anyhow::anyhow!("{e}")))?;
            session.insert(keys::LOGIN_AT, t).map_err(|e| AppError::Internal(anyhow::anyhow!("{e}")))?;
            session.insert(keys::LAST_ACTIVE, t).map_err(|e| AppError::Internal(anyhow::anyhow!("{e}")))?;
            audit(&state.db, &u.username, "login", &address, "success", "").await?;
            Ok(HttpResponse::SeeOther().insert_header((header::LOCATION, next)).finish())
        }
        _ => {
            state.login_throttle.failed(&username, &address);
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
/// peer's: a client-supplied `X-Forwarded-For` is not believed.
pub struct LoginThrottle {
    max_failures: u32,
    lockout_secs: i64,
    entries: Mutex<HashMap<String, (u32, i64)>>,
}

impl LoginThrottle {
    pub fn new(max_failures: u32, lockout_minutes: i64) -> Self {
        Self { max_failures, lockout_secs: lockout_minutes * 60, entries: Mutex::new(HashMap::new()) }
    }

    fn keys(username: &str, address: &str) -> [(String, u32); 3] {
        let user = username.to_lowercase();
        [(format!("{user}|{address}"), 1), (format!("{user}|*"), 4), (format!("*|{address}"), 4)]
    }

    /// Seconds left of a lock-out, if any.
    pub fn locked(&self, username: &str, address: &str) -> Option<i64> {
        let t = now();
        let entries = self.entries.lock().unwrap_or_else(|e| e.into_inner());
        Self::keys(username, address)
            .iter()
            .filter_map(|(k, factor)| {
                let (count, last) = entries.get(k)?;
                let left = last + self.lockout_secs - t;
                (*count >= self.max_failures * factor && left > 0).then_some(left)
            })
            .max()
    }

    pub fn failed(&self, username: &str, address: &str) {
        let t = now();
        let mut entries = self.entries.lock().unwrap_or_else(|e| e.into_inner());
        // Forget old entries so the map cannot grow without bound under a flood of names.
        if entries.len() > 100_000 {
            entries.retain(|_, (_, last)| t - *last < self.lockout_secs);
        }
        for (k, _) in Self::keys(username, address) {
            let e = entries.entry(k).or_insert((0, t));
            if t - e.1 > self.lockout_secs {
                *e = (0, t);
            }
            e.0 += 1;
            e.1 = t;
        }
    }

    pub fn succeeded(&self, username: &str, address: &str) {
        let mut entries = self.entries.lock().unwrap_or_else(|e| e.into_inner());
        let [(pair, _), ..] = Self::keys(username, address);
        entries.remove(&pair);
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

    #[test]
    fn the_throttle_locks_after_the_limit() {
        let t = LoginThrottle::new(3, 15);
        for _ in 0..3 {
            assert!(t.locked("alice", "1.2.3.4").is_none());
            t.failed("alice", "1.2.3.4");
        }
        assert!(t.locked("alice", "1.2.3.4").is_some());
        assert!(t.locked("alice", "5.6.7.8").is_none(), "another address is not locked yet");
    }

    #[test]
    fn many_names_from_one_address_lock_that_address() {
        let t = LoginThrottle::new(3, 15);
        for i in 0..12 {
            assert!(t.locked(&format!("user{i}"), "1.2.3.4").is_none(), "attempt {i}");
            t.failed(&format!("user{i}"), "1.2.3.4");
        }
        assert!(t.locked("someone-else", "1.2.3.4").is_some());
        assert!(t.locked("someone-else", "5.6.7.8").is_none());
    }
}
