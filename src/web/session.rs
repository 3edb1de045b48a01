//! Sessions: actix-session over a store in our own database, so that a session is valid on
//! every instance, ends on the server at logout (an old cookie is useless), and expires there.
//!
//! The cookie holds a random 256-bit key; the database holds only its SHA-256, so a copy of
//! the database hands out no live sessions.

use std::collections::HashMap;

use actix_session::Session;
use actix_session::storage::{LoadError, SaveError, SessionKey, SessionStore, UpdateError};
use actix_web::cookie::time::Duration;

use serde::{Deserialize, Serialize};

use crate::auth::{Role, hash_api_token, random_token};
use crate::db::models::{sessions, users};
use crate::db::{Db, now};
use crate::web::cache::UntilChanged;

type State = HashMap<String, String>;

#[derive(Clone)]
pub struct DbSessionStore {
    db: Db,
    /// Sessions as loaded (with the account, and when they expire), reused until the next
    /// commit: a sign-out, a disabled user or a changed role is a commit, so they count at once.
    loaded: std::sync::Arc<UntilChanged<String, (State, i64)>>,
}

/// How many sessions' loaded state is kept (a few hundred bytes each).
const SESSIONS_KEPT: usize = 4096;

impl DbSessionStore {
    pub fn new(db: Db) -> Self {
        Self { db, loaded: std::sync::Arc::new(UntilChanged::new(SESSIONS_KEPT)) }
    }
}

fn storage_id(key: &SessionKey) -> String {
    hash_api_token(key.as_ref())
}

/// The user a session's state says is signed in (stored beside it, so that the user's sessions
/// can be ended together).
fn signed_in(state: &State) -> Option<i64> {
    state.get(keys::USER_ID).and_then(|v| v.parse().ok())
}

fn expiry(ttl: &Duration) -> i64 {
    now() + ttl.whole_seconds().max(1)
}

impl SessionStore for DbSessionStore {
    /// Loads the session and, in the same trip to the database, the account of its signed-in
    /// user (see [`SessionAccount`]).
    async fn load(&self, key: &SessionKey) -> Result<Option<State>, LoadError> {
        let id = storage_id(key);
        let version = crate::web::cache::data_version(&self.db).await;
        // A page's requests at once (its fragments, the polls) read it once after a commit.
        let turn = match self.loaded.get_or_turn(&id, version).await {
            // Unchanged since it was read; it may have expired meanwhile.
            Ok((state, expires)) => return Ok((expires > now()).then_some(state)),
            Err(turn) => turn,
        };
        let key_id = id.clone();
        let loaded = self
            .db
            .read(move |c| {
                let Some((text, expires)) = sessions::load(c, &key_id)? else { return Ok(None) };
                let mut state = match serde_json::from_str::<State>(&text) {
                    Ok(state) => state,
                    Err(e) => return Ok(Some(Err(e))),
                };
                let uid = state.get(keys::USER_ID).and_then(|v| v.parse::<i64>().ok());
                if let Some(user) = uid.map(|uid| users::find(c, uid)).transpose()?.flatten() {
                    state.insert(keys::ACCOUNT.to_owned(), serde_json::to_string(&SessionAccount::from(user))?);
                }
                Ok(Some(Ok((state, expires))))
            })
            .await
            .map_err(LoadError::Other)?;
        let loaded = loaded.transpose().map_err(|e| LoadError::Deserialization(e.into()))?;
        if let Some(found) = &loaded {
            self.loaded.end_read(id, version, found.clone(), |_, _| true, turn);
        }
        Ok(loaded.map(|(state, _)| state))
    }

    async fn save(&self, mut state: State, ttl: &Duration) -> Result<SessionKey, SaveError> {
        state.remove(keys::ACCOUNT);
        let user = signed_in(&state);
        let text = serde_json::to_string(&state).map_err(|e| SaveError::Serialization(e.into()))?;
        let key = random_token(32);
        let id = hash_api_token(&key);
        let expires = expiry(ttl);
        self.db.write(move |c| Ok(sessions::insert(c, &id, &text, expires, user)?)).await.map_err(SaveError::Other)?;
        SessionKey::try_from(key).map_err(|e| SaveError::Other(e.into()))
    }

    async fn update(&self, key: SessionKey, mut state: State, ttl: &Duration) -> Result<SessionKey, UpdateError> {
        state.remove(keys::ACCOUNT);
        let user = signed_in(&state);
        let text = serde_json::to_string(&state).map_err(|e| UpdateError::Serialization(e.into()))?;
        let id = storage_id(&key);
        let expires = expiry(ttl);
        let updated = self
            .db
            .write(move |c| Ok(sessions::update(c, &id, &text, expires, user)?))
            .await
            .map_err(UpdateError::Other)?;
        if updated == 1 {
            return Ok(key);
        }
        // The session ended meanwhile (expired, or logged out by another request): start an
        // empty one rather than bring the signed-out identity back to life.
        drop(state);
        self.save(State::new(), ttl).await.map_err(|e| UpdateError::Other(anyhow::anyhow!("{e}")))
    }

    async fn update_ttl(&self, key: &SessionKey, ttl: &Duration) -> Result<(), anyhow::Error> {
        let id = storage_id(key);
        let expires = expiry(ttl);
        self.db.write(move |c| Ok(sessions::touch(c, &id, expires)?)).await.map(|_| ())
    }

    async fn delete(&self, key: &SessionKey) -> Result<(), anyhow::Error> {
        let id = storage_id(key);
        self.db.write(move |c| Ok(sessions::delete(c, &id)?)).await.map(|_| ())
    }
}

/// Keys of the values we keep in a session.
pub mod keys {
    pub const USER_ID: &str = "uid";
    pub const LOGIN_AT: &str = "login_at";
    pub const LAST_ACTIVE: &str = "active";
    pub const CSRF: &str = "csrf";
    /// The signed-in user's account, read with the session; in memory only, never stored.
    pub const ACCOUNT: &str = "account";
}

/// The signed-in user's account as it is in the database when the request's session is
/// loaded: read in the same trip as the session, so that a page costs one trip fewer while a
/// disabled user or a changed role still counts from the next request on. The store adds it to
/// the loaded state under [`keys::ACCOUNT`] and removes it before every write.
#[derive(Debug, Serialize, Deserialize)]
pub struct SessionAccount {
    pub id: i64,
    pub username: String,
    pub role: Role,
    pub disabled: bool,
}

impl From<users::User> for SessionAccount {
    fn from(u: users::User) -> Self {
        SessionAccount { id: u.id, role: u.role(), username: u.username, disabled: u.disabled }
    }
}

/// How often the activity time behind the idle timeout is written, at most.
pub const ACTIVITY_WRITE_SECS: i64 = 60;

/// The sessions whose activity time this instance wrote within the last
/// [`ACTIVITY_WRITE_SECS`], keyed by (user id, sign-in time). Concurrent requests of one session
/// all see the old time; without this each of them wrote it, and while a sync held the write
/// lock all of them waited for it (seconds at the 99th percentile).
#[derive(Default)]
pub struct ActivityWrites(std::sync::Mutex<HashMap<(i64, i64), i64>>);

impl ActivityWrites {
    /// True for the one request that should write the session's activity time `now`.
    pub fn claim(&self, session: (i64, i64), now: i64) -> bool {
        let mut written = self.0.lock().unwrap_or_else(|e| e.into_inner());
        if written.get(&session).is_some_and(|&at| now - at < ACTIVITY_WRITE_SECS) {
            return false;
        }
        if written.len() >= 10_000 {
            written.retain(|_, at| now - *at < ACTIVITY_WRITE_SECS);
        }
        written.insert(session, now);
        true
    }
}

/// The session's CSRF token, created on first use.
pub fn csrf_token(session: &Session) -> String {
    match session.get::<String>(keys::CSRF) {
        Ok(Some(t)) => t,
        _ => {
            let t = random_token(32);
            let _ = session.insert(keys::CSRF, &t);
            t
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_request_per_session_and_minute_writes_the_activity_time() {
        let writes = ActivityWrites::default();
        let (alice, bob) = ((1, 100), (2, 100));
        assert!(writes.claim(alice, 1_000));
        assert!(!writes.claim(alice, 1_000), "a concurrent request of the same session");
        assert!(writes.claim(bob, 1_000), "another session");
        assert!(!writes.claim(alice, 1_000 + ACTIVITY_WRITE_SECS - 1));
        assert!(writes.claim(alice, 1_000 + ACTIVITY_WRITE_SECS));
        assert!(writes.claim((1, 200), 1_000), "the same user signed in again is another session");
    }
}
