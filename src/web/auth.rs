//! Who is asking: the signed-in user of a page request, or the API token of an automation
//! request, and the role each route demands. Every handler names its caller type in its
//! signature (`AnyUser`, `OperatorUser`, `AdminUser`, `ApiAnalyst`, `ApiOperator`, `ApiAdmin`), so
//! the role check cannot be forgotten and is visible where the route is written.

use std::future::Future;
use std::pin::Pin;

use actix_session::SessionExt;
use actix_web::{FromRequest, HttpRequest, dev::Payload, web};

use super::session::{ACTIVITY_WRITE_SECS, SessionAccount, csrf_token, keys};
use crate::auth::{Role, hash_api_token};
use crate::db::models::{api_tokens, users};
use crate::db::now;
use crate::error::AppError;
use crate::web::AppState;
use crate::web::refusals::Refusal;

/// A signed-in person.
#[derive(Debug, Clone)]
pub struct CurrentUser {
    pub id: i64,
    pub username: String,
    pub role: Role,
    /// The session's CSRF token, for the forms and htmx requests of the page.
    pub csrf: String,
}

impl CurrentUser {
    async fn from_request(req: HttpRequest) -> Result<Self, AppError> {
        let state = req.app_data::<web::Data<AppState>>().ok_or_else(|| anyhow::anyhow!("no state"))?.clone();
        let session = req.get_session();
        let uid = session.get::<i64>(keys::USER_ID).ok().flatten().ok_or(AppError::LoginRequired)?;
        let t = now();
        let login_at = session.get::<i64>(keys::LOGIN_AT).ok().flatten().unwrap_or(0);
        let last_active = session.get::<i64>(keys::LAST_ACTIVE).ok().flatten().unwrap_or(0);
        let s = &state.settings;
        if t - login_at > s.session_absolute_hours * 3600 || t - last_active > s.session_idle_minutes * 60 {
            session.purge();
            return Err(AppError::LoginRequired);
        }
        // Writing the activity time once a minute keeps the idle timeout honest without a
        // database write on every request.
        if t - last_active >= ACTIVITY_WRITE_SECS && state.activity_writes.claim((uid, login_at), t) {
            let _ = session.insert(keys::LAST_ACTIVE, t);
        }
        // The session store read the account with the session; only a session whose user
        // changed during this request (a sign-in) needs another look.
        let account = match session.get::<SessionAccount>(keys::ACCOUNT).ok().flatten().filter(|a| a.id == uid) {
            Some(account) => Some(account),
            None => state.db.read(move |c| Ok(users::find(c, uid)?)).await?.map(SessionAccount::from),
        };
        match account {
            Some(a) if !a.disabled => {
                Ok(CurrentUser { id: a.id, role: a.role, username: a.username, csrf: csrf_token(&session) })
            }
            _ => {
                session.purge();
                Err(AppError::LoginRequired)
            }
        }
    }

    pub fn can(&self, role: Role) -> bool {
        self.role.allows(role)
    }
}

/// An API token presented as `Authorization: Bearer ...`.
#[derive(Debug, Clone)]
pub struct ApiCaller {
    pub token_id: i64,
    pub name: String,
    pub role: Role,
    /// The user who made the token (none for one made on the command line).
    pub creator: Option<String>,
}

impl ApiCaller {
    /// How the caller appears in the audit log.
    pub fn actor(&self) -> String {
        format!("token:{}", self.name)
    }

    /// The person behind the call: the token's creator, else the token. A response rule's author
    /// and its approver are compared so, whichever way each came in.
    pub fn person(&self) -> String {
        self.creator.clone().unwrap_or_else(|| self.actor())
    }

    async fn from_request(req: HttpRequest) -> Result<Self, AppError> {
        let state = req.app_data::<web::Data<AppState>>().ok_or_else(|| anyhow::anyhow!("no state"))?.clone();
        let header = req.headers().get(actix_web::http::header::AUTHORIZATION).and_then(|v| v.to_str().ok());
        let token = header
            .and_then(|h| h.strip_prefix("Bearer ").or_else(|| h.strip_prefix("bearer ")))
            .map(str::trim)
            .filter(|t| !t.is_empty() && t.len() <= 200)
            .ok_or(AppError::LoginRequired)?;
        let hash = hash_api_token(token);
        let found = state
            .db
            .run(move |c| {
                let Some(t) = api_tokens::find_by_hash(c, &hash)?.filter(|t| t.is_usable(now())) else {
                    return Ok(None);
                };
                // A token acts for its creator: never above the creator's current role, and not
                // at all once the creator is disabled (or gone).
                let (role, creator) = match t.creator_id {
                    None => (t.role(), None),
                    Some(id) => match users::find(c, id)? {
                        Some(u) if !u.disabled => (t.role().min(u.role()), Some(u.username)),
                        _ => return Ok(None),
                    },
                };
                api_tokens::mark_used(c, t.id)?;
                Ok(Some(ApiCaller { token_id: t.id, role, name: t.name, creator }))
            })
            .await?;
        found.ok_or(AppError::LoginRequired)
    }
}

/// Records a refused request in the audit log, so that probing shows up there (counted per
/// caller and minute: hammering a forbidden page writes a row a minute, not one per request).
fn audit_refusal(req: &HttpRequest, actor: String, needed: Role) {
    if let Some(state) = req.app_data::<web::Data<AppState>>() {
        let state = state.clone();
        let target = format!("{} {}", req.method(), req.path());
        actix_web::rt::spawn(async move {
            let details = format!("requires {}", needed.label());
            state.refusals.record(&state.db, Refusal { actor, action: "access.denied", target, details }).await;
        });
    }
}

macro_rules! role_extractor {
    ($(#[$doc:meta])* $name:ident, $inner:ty, $role:expr, $actor:expr) => {
        $(#[$doc])*
        #[derive(Debug, Clone)]
        pub struct $name(pub $inner);

        impl std::ops::Deref for $name {
            type Target = $inner;
            fn deref(&self) -> &$inner {
                &self.0
            }
        }

        impl FromRequest for $name {
            type Error = AppError;
            type Future = Pin<Box<dyn Future<Output = Result<Self, AppError>>>>;

            fn from_request(req: &HttpRequest, _: &mut Payload) -> Self::Future {
                let req = req.clone();
                Box::pin(async move {
                    let who = <$inner>::from_request(req.clone()).await?;
                    if who.role.allows($role) {
                        Ok($name(who))
                    } else {
                        audit_refusal(&req, $actor(&who), $role);
                        Err(AppError::Forbidden)
                    }
                })
            }
        }
    };
}

role_extractor!(
    /// Any signed-in person (Analyst or above).
    AnyUser, CurrentUser, Role::Analyst, |u: &CurrentUser| u.username.clone()
);
role_extractor!(
    /// An Operator or Admin.
    OperatorUser, CurrentUser, Role::Operator, |u: &CurrentUser| u.username.clone()
);
role_extractor!(
    /// An Admin.
    AdminUser, CurrentUser, Role::Admin, |u: &CurrentUser| u.username.clone()
);
role_extractor!(
    /// Any valid API token.
    ApiAnalyst, ApiCaller, Role::Analyst, ApiCaller::actor
);
role_extractor!(
    /// An API token of an Operator or Admin.
    ApiOperator, ApiCaller, Role::Operator, ApiCaller::actor
);
role_extractor!(
    /// An API token of an Admin.
    ApiAdmin, ApiCaller, Role::Admin, ApiCaller::actor
);

/// Who may read `/metrics`: a scraper at an address the configuration allows
/// (`metrics_allow`), or anyone with an Admin API token.
#[derive(Debug, Clone)]
pub struct MetricsReader;

impl FromRequest for MetricsReader {
    type Error = AppError;
    type Future = Pin<Box<dyn Future<Output = Result<Self, AppError>>>>;

    fn from_request(req: &HttpRequest, payload: &mut Payload) -> Self::Future {
        let allowed = req.app_data::<web::Data<AppState>>().is_some_and(|state| {
            let Some(ip) = crate::web::client::client_ip(req, &state.proxies) else { return false };
            match state.settings.metrics_allow_nets() {
                Ok(nets) => nets.iter().any(|n| n.contains(&ip)),
                Err(e) => {
                    tracing::warn!(error = %e, "metrics_allow is invalid; only Admin API tokens may read /metrics");
                    false
                }
            }
        });
        if allowed {
            return Box::pin(std::future::ready(Ok(MetricsReader)));
        }
        let admin = ApiAdmin::from_request(req, payload);
        Box::pin(async move { admin.await.map(|_| MetricsReader) })
    }
}
