//! Optional sign-in with Microsoft Entra ID (OpenID Connect, authorization code with PKCE).
//!
//! * `settings` – what an administrator configures (tenant, client, secret, authority, the
//!   mapping of app roles and groups to our roles), validated and stored with the secret sealed.
//! * `oidc` – the protocol: discovery, the authorize address with state, nonce and PKCE (the
//!   `oauth2` crate), the code exchange, and the ID token's signature (JWKS, RS256) and claims.
//! * `accounts` – the local user an Entra identity signs in as: linked by tenant id + object id,
//!   created on first sign-in, its role set from the mapping at every sign-in.
//!
//! The web side (`web::pages::sso`) keeps the pending sign-in in the session and starts the
//! session exactly as a password sign-in does.

pub mod accounts;
pub mod oidc;
pub mod settings;

pub use oidc::{Identity, Pending, Sso};

use crate::db::Db;
use crate::db::models::audit;
use crate::defender::settings::SecretNeeded;
use crate::secrets::SecretBox;
use settings::SsoSettings;

/// Stores settings checked by the form, with an audit entry, in one write transaction with
/// the decision whether the stored secret may be kept (only for the authority, tenant and client
/// it was saved for, even when two admins save at once): the message to show, or why the secret
/// must be typed again.
pub async fn configure(
    db: &Db,
    secrets: &SecretBox,
    s: SsoSettings,
    by: &str,
) -> anyhow::Result<Result<String, SecretNeeded>> {
    let (secrets, by) = (secrets.clone(), by.to_owned());
    db.run(move |c| {
        c.write_transaction(|c| {
            let old = settings::load(c)?;
            if let Err(why) = s.keeps_secret_of(old.as_ref()) {
                let details = format!("client_secret: {}", why.message());
                audit::entry(&by, "sso.configure")
                    .target(settings::NAME)
                    .outcome("refused")
                    .details(&details)
                    .record(c)?;
                return Ok(Err(why));
            }
            let details = settings::describe_change(old.as_ref(), &s);
            settings::save(c, &secrets, &s, &by)?;
            audit::entry(&by, "sso.configure").target(settings::NAME).outcome("success").details(&details).record(c)?;
            Ok(Ok(if s.enabled {
                "Saved. Sign-in with Microsoft is enabled.".to_owned()
            } else {
                "Saved. Sign-in with Microsoft is disabled.".to_owned()
            }))
        })
    })
    .await
}

/// Records a settings form that was refused (the form's messages in the audit log).
pub async fn refused(db: &Db, by: &str, summary: &str, secret_typed: bool) -> anyhow::Result<Option<SecretNeeded>> {
    let (by, summary) = (by.to_owned(), summary.to_owned());
    db.run(move |c| {
        // Said with the other fields' messages, so that one attempt shows every mistake.
        let needed = (!secret_typed && settings::load(c)?.is_none_or(|s| s.secret_ciphertext.is_none()))
            .then_some(SecretNeeded::NoneStored);
        audit::entry(&by, "sso.configure").target(settings::NAME).outcome("refused").details(&summary).record(c)?;
        Ok(needed)
    })
    .await
}

/// Why a sign-in with Microsoft did not succeed, in words for the person at the login page.
#[derive(Debug, thiserror::Error)]
pub enum SignInError {
    #[error("Sign-in with Microsoft is not enabled. Sign in with your user name and password.")]
    NotEnabled,
    #[error("The sign-in with Microsoft expired or was started in another window. Please try again.")]
    NoPendingSignIn,
    #[error("The answer from Microsoft did not belong to this sign-in (state mismatch). Please try again.")]
    StateMismatch,
    #[error("Microsoft did not sign you in: {0}")]
    Provider(String),
    #[error("Microsoft's sign-in service could not be used: {0}")]
    Unreachable(String),
    #[error("The sign-in could not be verified: {0}. Nobody was signed in.")]
    InvalidToken(String),
    #[error(
        "Your Microsoft account has no role in Endpoint Analytics: none of your app roles or groups is mapped to Admin, Operator or Analyst. Ask an administrator to assign you one.{0}"
    )]
    NoRole(&'static str),
    #[error("This account is disabled. Ask an administrator.")]
    AccountDisabled,
    #[error(transparent)]
    Internal(#[from] anyhow::Error),
}

impl From<crate::db::DbError> for SignInError {
    fn from(e: crate::db::DbError) -> Self {
        SignInError::Internal(e.into())
    }
}
