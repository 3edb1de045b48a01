//! What guards the password sign-in: throttling per user name, address and device (with waits
//! that grow and are decided before the password is checked), device cookies for browsers that
//! signed in before, and the pool of password checks that may run at once.

use actix_web::{HttpRequest, web};

use crate::db::models::login_failures::{self, Growth};
use crate::db::{AnyConnection, DbError, DbResult as QueryResult};
use crate::error::AppError;

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
    use crate::db::now;

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
