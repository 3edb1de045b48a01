//! Sign-in and sign-out, with throttling against password guessing.

use actix_session::Session;
use actix_web::http::StatusCode;
use actix_web::{HttpRequest, HttpResponse, http::header, web};
use askama::Template;
use serde::Deserialize;

use super::audit;
use crate::auth::verify_password;
use crate::db::models::login_failures::{self, Growth};
use crate::db::models::users;
use crate::db::{AnyConnection, DbError, DbResult as QueryResult, now};
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

/// How long a sign-in waits for a free password check before it is told to come back.
const CHECK_QUEUE_WAIT: std::time::Duration = std::time::Duration::from_secs(2);

/// Password checks (Argon2: about 19 MiB and tens of milliseconds of CPU each) that may run at
/// once: one per core for anyone, and as many again for browsers recognised by their device
/// cookie, so that a flood of guesses from unknown browsers cannot crowd out the people who
/// signed in there before. A check that waited [`CHECK_QUEUE_WAIT`] for a permit is not run.
pub struct PasswordChecks {
    anyone: tokio::sync::Semaphore,
    known_devices: tokio::sync::Semaphore,
}

impl PasswordChecks {
    pub fn new(at_once: usize) -> Self {
        Self { anyone: tokio::sync::Semaphore::new(at_once), known_devices: tokio::sync::Semaphore::new(at_once) }
    }

    /// Runs `check` on a blocking thread once a permit is free (`None`: none was in time).
    pub async fn run(
        &self,
        known_device: bool,
        check: impl FnOnce() -> bool + Send + 'static,
    ) -> Result<Option<bool>, AppError> {
        let pool = if known_device { &self.known_devices } else { &self.anyone };
        let Ok(Ok(_permit)) = tokio::time::timeout(CHECK_QUEUE_WAIT, pool.acquire()).await else { return Ok(None) };
        web::block(check).await.map(Some).map_err(|e| AppError::Internal(e.into()))
    }
}

/// Browsers in which a user signed in with a password before (OWASP's "device cookie"): a
/// cookie naming the user, a random nonce and an HMAC of both under a key derived from the
/// master key. A sign-in from such a browser is throttled on the device's own count instead of
/// the user name's and the address's, so that an attacker who keeps an account waiting (or
/// everyone behind one proxy address) does not lock its owner out.
pub struct LoginDevices {
    key: [u8; 32],
    secure: bool,
}

impl LoginDevices {
    const LIFETIME: actix_web::cookie::time::Duration = actix_web::cookie::time::Duration::days(180);

    pub fn new(key: [u8; 32], secure: bool) -> Self {
        Self { key, secure }
    }

    fn cookie_name(&self) -> &'static str {
        if self.secure { "__Host-ea_device" } else { "ea_device" }
    }

    fn mac(&self, username: &str, nonce: &str) -> String {
        use base64::Engine;
        use hmac::{Hmac, Mac};
        let mut mac = <Hmac<sha2::Sha256> as Mac>::new_from_slice(&self.key).expect("HMAC takes any key length");
        mac.update(username.to_lowercase().as_bytes());
        mac.update(b"\0");
        mac.update(nonce.as_bytes());
        base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(mac.finalize().into_bytes())
    }

    /// The device's nonce, when this browser carries a cookie issued for `username`.
    pub fn recognise(&self, req: &HttpRequest, username: &str) -> Option<String> {
        let cookie = req.cookie(self.cookie_name())?;
        let (nonce, mac) = cookie.value().split_once('.')?;
        let expected = self.mac(username, nonce);
        (nonce.len() == 22 && crate::web::security::constant_time_eq(mac.as_bytes(), expected.as_bytes()))
            .then(|| nonce.to_owned())
    }

    /// A new device cookie for `username`, set at each password sign-in.
    pub fn issue(&self, username: &str) -> actix_web::cookie::Cookie<'static> {
        let nonce = crate::auth::random_token(16);
        let value = format!("{nonce}.{}", self.mac(username, &nonce));
        actix_web::cookie::Cookie::build(self.cookie_name(), value)
            .path("/")
            .http_only(true)
            .secure(self.secure)
            .same_site(actix_web::cookie::SameSite::Strict)
            .max_age(Self::LIFETIME)
            .finish()
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

/// One sign-in attempt, as the throttle counts it.
#[derive(Debug, Clone)]
pub struct Attempt {
    pub username: String,
    /// The client's address.
    pub address: String,
    /// The nonce of the browser's device cookie, when it was issued for this user name.
    pub device: Option<String>,
}

/// Throttles password guessing with growing waits, counted in the database so that they hold on
/// every instance. An attempt counts on the user name (guessing one account from many
/// addresses) and on the client's address (trying many names from one address, four times as
/// many free attempts; an IPv6 address by its /64, which one subscriber usually holds whole);
/// an attempt from a browser recognised by its device cookie counts on that device alone. Past
/// the free attempts each further attempt makes the next one wait, doubling from one second up
/// to the longest wait: an attacker gets a handful of guesses an hour per account, and an
/// account's owner signs in from a browser they used before whatever the guessers do.
/// Attempts made while waiting are refused unchecked and cost nothing.
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

    /// The keys an attempt counts on (a device's, or the user name's and the address's).
    fn keys(&self, a: &Attempt) -> Vec<(String, Growth)> {
        match &a.device {
            Some(nonce) => vec![(format!("device:{nonce}"), self.per_user)],
            None => vec![
                (format!("user:{}", a.username.to_lowercase()), self.per_user),
                (format!("address:{}", address_key(&a.address)), self.per_address),
            ],
        }
    }

    /// Counts an attempt on all its keys, or on none: `Err((key, seconds))` when one must wait.
    pub fn claim(&self, conn: &mut AnyConnection, a: &Attempt) -> QueryResult<Result<(), (String, i64)>> {
        let now_ms = chrono::Utc::now().timestamp_millis();
        let outcome = conn.write_transaction(|c| {
            for (key, growth) in self.keys(a) {
                if let Err(until_ms) = login_failures::claim(c, &key, now_ms, growth, Self::FORGET_AFTER_SECS)? {
                    return Err(Claim::Wait(key, until_ms - now_ms));
                }
            }
            Ok(())
        });
        match outcome {
            Ok(()) => Ok(Ok(())),
            // Whole seconds, rounded up: a client that waits as told is not refused again.
            Err(Claim::Wait(key, ms)) => Ok(Err((key, ((ms + 999) / 1000).max(1)))),
            Err(Claim::Db(e)) => Err(e),
        }
    }

    /// An attempt counted but never checked (no password check was free) is given back.
    pub fn give_back(&self, conn: &mut AnyConnection, a: &Attempt) -> QueryResult<()> {
        for (key, _) in self.keys(a) {
            login_failures::refund(conn, &key)?;
        }
        Ok(())
    }

    /// The password was right: the user name and the device start over, and the address gets
    /// its attempt back.
    pub fn succeeded(&self, conn: &mut AnyConnection, a: &Attempt) -> QueryResult<()> {
        match &a.device {
            // The user name's count is the guessers' elsewhere: it stays.
            Some(nonce) => login_failures::clear(conn, &format!("device:{nonce}"))?,
            None => {
                login_failures::clear(conn, &format!("user:{}", a.username.to_lowercase()))?;
                login_failures::refund(conn, &format!("address:{}", address_key(&a.address)))?
            }
        };
        Ok(())
    }
}

/// The address as a throttling key: an IPv6 address by its /64 (a subscriber's usual share, of
/// which one client can use any address), an IPv4 address as it is.
fn address_key(address: &str) -> String {
    match address.parse::<std::net::IpAddr>() {
        Ok(std::net::IpAddr::V6(v6)) => match ipnet::Ipv6Net::new(v6, 64) {
            Ok(net) => net.trunc().to_string(),
            Err(_) => address.to_owned(),
        },
        _ => address.to_owned(),
    }
}

/// Why counting an attempt stopped (a wait rolls the transaction back: nothing is counted).
enum Claim {
    Wait(String, i64),
    Db(DbError),
}

impl From<DbError> for Claim {
    fn from(e: DbError) -> Self {
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

    fn attempt(user: &str, address: &str) -> Attempt {
        Attempt { username: user.into(), address: address.into(), device: None }
    }

    #[test]
    fn attempts_past_the_free_ones_wait_and_waiting_ones_are_not_counted() {
        let (_dir, db) = migrated_db();
        let mut conn = db.conn().unwrap();
        let c = &mut *conn;
        let t = LoginThrottle::new(3, 15);
        for i in 0..3 {
            assert_eq!(t.claim(c, &attempt("alice", "1.2.3.4")).unwrap(), Ok(()), "free attempt {i}");
        }
        let waiting = t.claim(c, &attempt("Alice", "5.6.7.8")).unwrap();
        assert_eq!(waiting, Err(("user:alice".to_owned(), 1)), "the user name waits, from any address");
        let rows = login_failures::get(c, &["user:alice".to_owned(), "address:5.6.7.8".to_owned()]).unwrap();
        assert_eq!(rows.iter().find(|r| r.0 == "user:alice").unwrap().1, 3);
        assert!(
            rows.iter().all(|r| r.0 != "address:5.6.7.8" || r.1 == 0),
            "a refused attempt counts nowhere: {rows:?}"
        );
        // The owner's browser, recognised by its device cookie, is not held up by the guessers.
        let owner = Attempt { device: Some("n".repeat(22)), ..attempt("alice", "5.6.7.8") };
        assert_eq!(t.claim(c, &owner).unwrap(), Ok(()));
        t.succeeded(c, &owner).unwrap();
        assert!(t.claim(c, &attempt("alice", "1.2.3.4")).unwrap().is_err(), "the guessers' count stays");
        t.succeeded(c, &attempt("alice", "1.2.3.4")).unwrap();
        assert_eq!(t.claim(c, &attempt("alice", "1.2.3.4")).unwrap(), Ok(()), "a password success starts over");
    }

    #[test]
    fn an_ipv6_client_is_counted_by_its_64() {
        assert_eq!(address_key("2001:db8:1:1::17"), "2001:db8:1:1::/64");
        assert_eq!(address_key("2001:db8:1:1:ffff::1"), "2001:db8:1:1::/64");
        assert_eq!(address_key("203.0.113.7"), "203.0.113.7");
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
            assert_eq!(t.claim(c, &attempt(&format!("user{i}"), "1.2.3.4")).unwrap(), Ok(()), "attempt {i}");
        }
        assert!(t.claim(c, &attempt("someone-else", "1.2.3.4")).unwrap().is_err());
        assert_eq!(t.claim(c, &attempt("someone-else", "5.6.7.8")).unwrap(), Ok(()));
    }
}
