//! Account rules shared by the web pages and the command line: who may be created, with which
//! password, and what may not happen to the last administrator.

use crate::auth::{Role, check_password_strength, check_username, hash_password};
use crate::db::AnyConnection;
use crate::db::models::{sessions, users};

/// Why an account change was refused, in words for the person who asked.
#[derive(Debug, thiserror::Error)]
pub enum AccountError {
    #[error("{0}")]
    Invalid(String),
    #[error(transparent)]
    Internal(#[from] anyhow::Error),
}

impl From<crate::db::DbError> for AccountError {
    fn from(e: crate::db::DbError) -> Self {
        AccountError::Internal(e.into())
    }
}

pub fn create_user(conn: &mut AnyConnection, name: &str, password: &str, role: Role) -> Result<(), AccountError> {
    check_username(name).map_err(AccountError::Invalid)?;
    check_password_strength(name, password).map_err(AccountError::Invalid)?;
    let hash = hash_password(password)?;
    if users::create(conn, name, &hash, role)? {
        Ok(())
    } else {
        Err(AccountError::Invalid(format!("A user named {name:?} already exists.")))
    }
}

pub fn reset_password(conn: &mut AnyConnection, id: i64, password: &str) -> Result<String, AccountError> {
    let user = users::find(conn, id)?.ok_or_else(|| AccountError::Invalid("No such user.".into()))?;
    check_password_strength(&user.username, password).map_err(AccountError::Invalid)?;
    let hash = hash_password(password)?;
    conn.write_transaction(|c| {
        users::set_password(c, id, &hash)?;
        // Whoever knew the old password is signed out with it.
        sessions::delete_of_user(c, id)
    })?;
    Ok(user.username)
}

/// Changing the role of, or disabling, the last active admin would lock everyone out.
pub fn ensure_not_last_admin(conn: &mut AnyConnection, id: i64) -> Result<(), AccountError> {
    let user = users::find(conn, id)?.ok_or_else(|| AccountError::Invalid("No such user.".into()))?;
    if user.role() == Role::Admin && !user.disabled && users::count_active_admins_except(conn, id)? == 0 {
        return Err(AccountError::Invalid("This is the last active administrator; make another one first.".into()));
    }
    Ok(())
}
