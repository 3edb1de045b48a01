//! API tokens for automation. Only a hash of each token is stored.

use diesel::prelude::*;

use crate::auth::Role;
use crate::db::schema::api_tokens;
use crate::db::{AnyConnection, now};

#[derive(Debug, Clone, Queryable, Selectable)]
#[diesel(table_name = api_tokens)]
pub struct ApiToken {
    pub id: i64,
    pub name: String,
    pub token_hash: String,
    pub role: String,
    pub created_by: String,
    pub created_at: i64,
    pub expires_at: Option<i64>,
    pub last_used_at: Option<i64>,
    pub revoked: bool,
    /// The person the token acts for (`None`: made on the command line, by whoever runs the
    /// server).
    pub creator_id: Option<i64>,
}

impl ApiToken {
    pub fn role(&self) -> Role {
        Role::parse(&self.role).unwrap_or(Role::Analyst)
    }

    pub fn is_usable(&self, at: i64) -> bool {
        !self.revoked && self.expires_at.is_none_or(|e| e > at)
    }
}

/// Who makes a token: a signed-in person (by id and name), or the command line.
pub enum Creator<'a> {
    User { id: i64, name: &'a str },
    CommandLine,
}

pub fn create(
    conn: &mut AnyConnection,
    name: &str,
    token_hash: &str,
    role: Role,
    creator: Creator<'_>,
    expires_at: Option<i64>,
) -> QueryResult<usize> {
    let (creator_id, created_by) = match creator {
        Creator::User { id, name } => (Some(id), name),
        Creator::CommandLine => (None, "cli"),
    };
    diesel::insert_into(api_tokens::table)
        .values((
            api_tokens::name.eq(name),
            api_tokens::token_hash.eq(token_hash),
            api_tokens::role.eq(role.as_str()),
            api_tokens::created_by.eq(created_by),
            api_tokens::creator_id.eq(creator_id),
            api_tokens::created_at.eq(now()),
            api_tokens::expires_at.eq(expires_at),
            api_tokens::revoked.eq(false),
        ))
        .execute(conn)
}

pub fn find_by_hash(conn: &mut AnyConnection, token_hash: &str) -> QueryResult<Option<ApiToken>> {
    api_tokens::table.filter(api_tokens::token_hash.eq(token_hash)).select(ApiToken::as_select()).first(conn).optional()
}

pub fn list(conn: &mut AnyConnection) -> QueryResult<Vec<ApiToken>> {
    api_tokens::table.order(api_tokens::id.desc()).select(ApiToken::as_select()).load(conn)
}

pub fn find(conn: &mut AnyConnection, id: i64) -> QueryResult<Option<ApiToken>> {
    api_tokens::table.find(id).select(ApiToken::as_select()).first(conn).optional()
}

pub fn revoke(conn: &mut AnyConnection, id: i64) -> QueryResult<usize> {
    diesel::update(api_tokens::table.find(id)).set(api_tokens::revoked.eq(true)).execute(conn)
}

/// Records use at most once a minute, so that reads by automation do not turn into writes.
pub fn mark_used(conn: &mut AnyConnection, id: i64) -> QueryResult<usize> {
    let t = now();
    diesel::update(
        api_tokens::table.find(id).filter(api_tokens::last_used_at.is_null().or(api_tokens::last_used_at.lt(t - 60))),
    )
    .set(api_tokens::last_used_at.eq(t))
    .execute(conn)
}
