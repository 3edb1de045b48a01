//! Local user accounts.

use diesel::prelude::*;

use crate::auth::Role;
use crate::db::schema::users;
use crate::db::{AnyConnection, engine_query, now};

#[derive(Debug, Clone, Queryable, Selectable)]
#[diesel(table_name = users)]
pub struct User {
    pub id: i64,
    pub username: String,
    pub password_hash: String,
    pub role: String,
    pub disabled: bool,
    pub created_at: i64,
    pub updated_at: i64,
}

impl User {
    /// An unknown role string in the database grants the least.
    pub fn role(&self) -> Role {
        Role::parse(&self.role).unwrap_or(Role::Analyst)
    }
}

pub fn find_by_name(conn: &mut AnyConnection, name: &str) -> QueryResult<Option<User>> {
    users::table.filter(users::username.eq(name)).select(User::as_select()).first(conn).optional()
}

pub fn find(conn: &mut AnyConnection, id: i64) -> QueryResult<Option<User>> {
    engine_query!(conn, |c| users::table.find(id).select(User::as_select()).first(c).optional())
}

pub fn list(conn: &mut AnyConnection) -> QueryResult<Vec<User>> {
    users::table.order(users::username.asc()).select(User::as_select()).load(conn)
}

/// Creates the account; `Ok(false)` when the name is taken.
pub fn create(conn: &mut AnyConnection, name: &str, password_hash: &str, role: Role) -> QueryResult<bool> {
    if find_by_name(conn, name)?.is_some() {
        return Ok(false);
    }
    let t = now();
    diesel::insert_into(users::table)
        .values((
            users::username.eq(name),
            users::password_hash.eq(password_hash),
            users::role.eq(role.as_str()),
            users::disabled.eq(false),
            users::created_at.eq(t),
            users::updated_at.eq(t),
        ))
        .execute(conn)?;
    Ok(true)
}

pub fn set_role(conn: &mut AnyConnection, id: i64, role: Role) -> QueryResult<usize> {
    diesel::update(users::table.find(id))
        .set((users::role.eq(role.as_str()), users::updated_at.eq(now())))
        .execute(conn)
}

pub fn set_disabled(conn: &mut AnyConnection, id: i64, disabled: bool) -> QueryResult<usize> {
    diesel::update(users::table.find(id)).set((users::disabled.eq(disabled), users::updated_at.eq(now()))).execute(conn)
}

pub fn set_password(conn: &mut AnyConnection, id: i64, password_hash: &str) -> QueryResult<usize> {
    diesel::update(users::table.find(id))
        .set((users::password_hash.eq(password_hash), users::updated_at.eq(now())))
        .execute(conn)
}

/// Active admins other than `except`: the last admin may not be demoted or disabled.
pub fn count_active_admins_except(conn: &mut AnyConnection, except: i64) -> QueryResult<i64> {
    users::table
        .filter(users::role.eq(Role::Admin.as_str()))
        .filter(users::disabled.eq(false))
        .filter(users::id.ne(except))
        .count()
        .get_result(conn)
}
