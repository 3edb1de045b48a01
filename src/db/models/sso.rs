//! Entra ID sign-in: its configuration (one row; the client secret only as ciphertext) and the
//! links from Entra identities to local users.

use diesel::prelude::*;

use crate::db::schema::{sso_config, user_identities};
use crate::db::{AnyConnection, now};

#[derive(Debug, Clone, Queryable, Selectable, Insertable, AsChangeset)]
#[diesel(table_name = sso_config)]
pub struct SsoConfig {
    pub name: String,
    pub tenant_id: String,
    pub client_id: String,
    pub secret_ciphertext: Option<Vec<u8>>,
    pub authority: String,
    pub redirect_uri: String,
    /// Entra app role values or group object ids, one a line, that make a person an Admin.
    pub admin_values: String,
    pub operator_values: String,
    pub analyst_values: String,
    pub enabled: bool,
    pub updated_at: i64,
    pub updated_by: String,
}

pub fn get(conn: &mut AnyConnection, name: &str) -> QueryResult<Option<SsoConfig>> {
    sso_config::table.find(name).select(SsoConfig::as_select()).first(conn).optional()
}

pub fn save(conn: &mut AnyConnection, config: &SsoConfig) -> QueryResult<()> {
    let n = diesel::update(sso_config::table.find(&config.name)).set(config).execute(conn)?;
    if n == 0 {
        diesel::insert_into(sso_config::table).values(config).execute(conn)?;
    }
    Ok(())
}

/// The local user an external identity signs in as.
pub fn linked_user(
    conn: &mut AnyConnection,
    provider: &str,
    tenant_id: &str,
    object_id: &str,
) -> QueryResult<Option<i64>> {
    user_identities::table
        .find((provider, tenant_id, object_id))
        .select(user_identities::user_id)
        .first(conn)
        .optional()
}

pub fn link(
    conn: &mut AnyConnection,
    provider: &str,
    tenant_id: &str,
    object_id: &str,
    user_id: i64,
) -> QueryResult<()> {
    let t = now();
    diesel::insert_into(user_identities::table)
        .values((
            user_identities::provider.eq(provider),
            user_identities::tenant_id.eq(tenant_id),
            user_identities::object_id.eq(object_id),
            user_identities::user_id.eq(user_id),
            user_identities::created_at.eq(t),
            user_identities::last_login_at.eq(t),
        ))
        .execute(conn)?;
    Ok(())
}

pub fn touch(conn: &mut AnyConnection, provider: &str, tenant_id: &str, object_id: &str) -> QueryResult<usize> {
    diesel::update(user_identities::table.find((provider, tenant_id, object_id)))
        .set(user_identities::last_login_at.eq(now()))
        .execute(conn)
}

/// Users that sign in through an external identity (the Users page marks them).
pub fn linked_user_ids(conn: &mut AnyConnection) -> QueryResult<Vec<i64>> {
    user_identities::table.select(user_identities::user_id).distinct().load(conn)
}
