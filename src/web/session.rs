//! Sessions: actix-session over a store in our own database, so that a session is valid on
//! every instance, ends on the server at logout (an old cookie is useless), and expires there.
//!
//! The cookie holds a random 256-bit key; the database holds only its SHA-256, so a copy of
//! the database hands out no live sessions.

use std::collections::HashMap;

use actix_session::Session;
use actix_session::storage::{LoadError, SaveError, SessionKey, SessionStore, UpdateError};
use actix_web::cookie::time::Duration;

use crate::auth::{hash_api_token, random_token};
use crate::db::{Db, models::sessions, now};

type State = HashMap<String, String>;

#[derive(Clone)]
pub struct DbSessionStore {
    db: Db,
}

impl DbSessionStore {
    pub fn new(db: Db) -> Self {
        Self { db }
    }
}

fn storage_id(key: &SessionKey) -> String {
    hash_api_token(key.as_ref())
}

fn expiry(ttl: &Duration) -> i64 {
    now() + ttl.whole_seconds().max(1)
}

impl SessionStore for DbSessionStore {
    async fn load(&self, key: &SessionKey) -> Result<Option<State>, LoadError> {
        let id = storage_id(key);
        let state = self.db.run(move |c| Ok(sessions::load(c, &id)?)).await.map_err(LoadError::Other)?;
        match state {
            None => Ok(None),
            Some(text) => serde_json::from_str(&text).map(Some).map_err(|e| LoadError::Deserialization(e.into())),
        }
    }

    async fn save(&self, state: State, ttl: &Duration) -> Result<SessionKey, SaveError> {
        let text = serde_json::to_string(&state).map_err(|e| SaveError::Serialization(e.into()))?;
        let key = random_token(32);
        let id = hash_api_token(&key);
        let expires = expiry(ttl);
        self.db.run(move |c| Ok(sessions::insert(c, &id, &text, expires)?)).await.map_err(SaveError::Other)?;
        SessionKey::try_from(key).map_err(|e| SaveError::Other(e.into()))
    }

    async fn update(&self, key: SessionKey, state: State, ttl: &Duration) -> Result<SessionKey, UpdateError> {
        let text = serde_json::to_string(&state).map_err(|e| UpdateError::Serialization(e.into()))?;
        let id = storage_id(&key);
        let expires = expiry(ttl);
        let updated =
            self.db.run(move |c| Ok(sessions::update(c, &id, &text, expires)?)).await.map_err(UpdateError::Other)?;
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
        self.db.run(move |c| Ok(sessions::touch(c, &id, expires)?)).await.map(|_| ())
    }

    async fn delete(&self, key: &SessionKey) -> Result<(), anyhow::Error> {
        let id = storage_id(key);
        self.db.run(move |c| Ok(sessions::delete(c, &id)?)).await.map(|_| ())
    }
}

/// Keys of the values we keep in a session.
pub mod keys {
    pub const USER_ID: &str = "uid";
    pub const LOGIN_AT: &str = "login_at";
    pub const LAST_ACTIVE: &str = "active";
    pub const CSRF: &str = "csrf";
    /// Why a sign-in elsewhere (Entra) failed, shown once by the sign-in page.
    pub const LOGIN_ERROR: &str = "login_error";
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
