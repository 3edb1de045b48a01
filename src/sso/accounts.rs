//! The local user an Entra identity signs in as. The link is the identity's tenant id and
//! object id, which never change; a name could be reused by someone else, so it is never used
//! to find an account. The role comes from the mapping at every sign-in, so a change in Entra
//! takes effect at the person's next sign-in.

use super::settings::RoleMapping;
use super::{Identity, SignInError};
use crate::auth::{Role, check_username};
use crate::db::AnyConnection;
use crate::db::models::sso;
use crate::db::models::users::{self, User};

pub const PROVIDER: &str = "entra";

/// What a sign-in did to the account, for the audit log.
#[derive(Debug)]
pub struct SignedIn {
    pub user: User,
    pub created: bool,
    pub previous_role: Option<Role>,
}

/// The role the identity's app roles and groups map to, or why there is none.
pub fn role_of(identity: &Identity, mapping: &RoleMapping) -> Result<Role, SignInError> {
    let values = identity.roles.iter().chain(&identity.groups).map(String::as_str);
    mapping.role_for(values).ok_or(SignInError::NoRole(if identity.groups_overage {
        " (Entra left your groups out of the sign-in because there are too many; an app role assignment works.)"
    } else {
        ""
    }))
}

/// A user name for a new account: the Entra user name as far as our rules allow, made unique.
fn new_username(conn: &mut AnyConnection, identity: &Identity) -> crate::db::DbResult<String> {
    let cleaned: String =
        identity.username.chars().filter(|c| c.is_ascii_alphanumeric() || "._-@".contains(*c)).take(56).collect();
    let base = if cleaned.is_empty() {
        format!("entra-{}", &identity.object_id[..8.min(identity.object_id.len())])
    } else {
        cleaned
    };
    for n in 1..100 {
        let candidate = if n == 1 { base.clone() } else { format!("{base}-{n}") };
        if check_username(&candidate).is_ok() && users::find_by_name(conn, &candidate)?.is_none() {
            return Ok(candidate);
        }
    }
    Ok(format!("entra-{}", identity.object_id))
}

/// Finds (or creates) the linked user, refuses a disabled one, and applies the mapped role.
pub fn sign_in(conn: &mut AnyConnection, identity: &Identity, role: Role) -> Result<SignedIn, SignInError> {
    conn.write_transaction(|c| {
        let (tid, oid) = (identity.tenant_id.as_str(), identity.object_id.as_str());
        if let Some(uid) = sso::linked_user(c, PROVIDER, tid, oid)? {
            let user = users::find(c, uid)?.ok_or_else(|| anyhow::anyhow!("a linked user is missing"))?;
            if user.disabled {
                return Err(SignInError::AccountDisabled);
            }
            let previous = user.role();
            if previous != role {
                users::set_role(c, uid, role)?;
            }
            sso::touch(c, PROVIDER, tid, oid)?;
            let user = users::find(c, uid)?.ok_or_else(|| anyhow::anyhow!("a linked user is missing"))?;
            return Ok(SignedIn { user, created: false, previous_role: (previous != role).then_some(previous) });
        }
        let name = new_username(c, identity)?;
        // An empty password hash never verifies: the account signs in through Entra only.
        if !users::create(c, &name, "", role)? {
            return Err(anyhow::anyhow!("the user name {name:?} was taken meanwhile").into());
        }
        let user = users::find_by_name(c, &name)?.ok_or_else(|| anyhow::anyhow!("the new user is missing"))?;
        sso::link(c, PROVIDER, tid, oid, user.id)?;
        Ok(SignedIn { user, created: true, previous_role: None })
    })
}
