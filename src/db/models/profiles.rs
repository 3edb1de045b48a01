//! Profiles as the database knows them: the standard ones (mirroring the shipped library, with
//! their enabled state) and those integrations create, with the endpoints they are assigned to.

use diesel::prelude::*;

use crate::db::batch::{delete_pairs, execute_values, row};
use crate::db::schema::{endpoints, profile_assignments, profiles};
use crate::db::{AnyConnection, now};

/// The owner of the profiles shipped with the product.
pub const STANDARD: &str = "standard";

#[derive(Debug, Clone, Queryable, Selectable)]
#[diesel(table_name = profiles)]
pub struct ProfileRow {
    pub id: i64,
    pub name: String,
    pub owner: String,
    pub category: String,
    pub description: String,
    pub enabled: bool,
    pub created_at: i64,
}

pub fn all(conn: &mut AnyConnection) -> QueryResult<Vec<ProfileRow>> {
    profiles::table.order((profiles::owner.asc(), profiles::name.asc())).select(ProfileRow::as_select()).load(conn)
}

pub fn find_by_name(conn: &mut AnyConnection, name: &str) -> QueryResult<Option<ProfileRow>> {
    profiles::table.filter(profiles::name.eq(name)).select(ProfileRow::as_select()).first(conn).optional()
}

/// Creates the profile if no profile has that name; returns its row either way.
pub fn ensure(
    conn: &mut AnyConnection,
    name: &str,
    owner: &str,
    category: &str,
    description: &str,
    enabled: bool,
) -> QueryResult<ProfileRow> {
    if let Some(p) = find_by_name(conn, name)? {
        return Ok(p);
    }
    diesel::insert_into(profiles::table)
        .values((
            profiles::name.eq(name),
            profiles::owner.eq(owner),
            profiles::category.eq(category),
            profiles::description.eq(description),
            profiles::enabled.eq(enabled),
            profiles::created_at.eq(now()),
        ))
        .execute(conn)?;
    find_by_name(conn, name)?.ok_or(diesel::result::Error::NotFound)
}

pub fn set_enabled(conn: &mut AnyConnection, id: i64, enabled: bool) -> QueryResult<usize> {
    diesel::update(profiles::table.find(id)).set(profiles::enabled.eq(enabled)).execute(conn)
}

pub fn find(conn: &mut AnyConnection, id: i64) -> QueryResult<Option<ProfileRow>> {
    profiles::table.find(id).select(ProfileRow::as_select()).first(conn).optional()
}

/// Gives an endpoint an integration-owned profile with a score (replacing an earlier score).
pub fn assign(conn: &mut AnyConnection, endpoint_id: i64, profile_id: i64, score: i16) -> QueryResult<()> {
    assign_many(conn, &[(endpoint_id, profile_id, score)]).map(drop)
}

/// Removes every assignment of an owner's profiles from one endpoint except `keep`.
pub fn unassign_owner_except(
    conn: &mut AnyConnection,
    endpoint_id: i64,
    owner: &str,
    keep: &[i64],
) -> QueryResult<usize> {
    let owned = profiles::table.filter(profiles::owner.eq(owner.to_owned())).select(profiles::id);
    diesel::delete(
        profile_assignments::table
            .filter(profile_assignments::endpoint_id.eq(endpoint_id))
            .filter(profile_assignments::profile_id.eq_any(owned))
            .filter(profile_assignments::profile_id.ne_all(keep.to_vec())),
    )
    .execute(conn)
}

/// An owner's assignments on these endpoints: (endpoint, profile, score).
pub fn owner_assignments(
    conn: &mut AnyConnection,
    endpoint_ids: &[i64],
    owner: &str,
) -> QueryResult<Vec<(i64, i64, i16)>> {
    if endpoint_ids.is_empty() {
        return Ok(Vec::new());
    }
    let owned = profiles::table.filter(profiles::owner.eq(owner.to_owned())).select(profiles::id);
    profile_assignments::table
        .filter(profile_assignments::endpoint_id.eq_any(endpoint_ids))
        .filter(profile_assignments::profile_id.eq_any(owned))
        .select((profile_assignments::endpoint_id, profile_assignments::profile_id, profile_assignments::score))
        .load(conn)
}

/// Assigns profiles with scores: (endpoint, profile, score), each pair at most once.
pub fn assign_many(conn: &mut AnyConnection, assignments: &[(i64, i64, i16)]) -> QueryResult<usize> {
    let rows: Vec<_> = assignments.iter().map(|&(e, p, score)| row![e, p, score]).collect();
    execute_values(
        conn,
        "INSERT INTO profile_assignments (endpoint_id, profile_id, score)",
        "ON CONFLICT (endpoint_id, profile_id) DO UPDATE SET score = excluded.score \
         WHERE profile_assignments.score <> excluded.score",
        &rows,
    )
}

/// Removes these (endpoint, profile) assignments.
pub fn unassign_many(conn: &mut AnyConnection, pairs: &[(i64, i64)]) -> QueryResult<usize> {
    let rows: Vec<_> = pairs.iter().map(|&(e, p)| row![e, p]).collect();
    delete_pairs(
        conn,
        "profile_assignments",
        (profile_assignments::endpoint_id, profile_assignments::profile_id),
        &rows,
    )
}

/// An endpoint's integration-assigned profiles: (name, owner, score), enabled ones only.
pub fn assignments_of(conn: &mut AnyConnection, endpoint_ids: &[i64]) -> QueryResult<Vec<(i64, String, String, i16)>> {
    profile_assignments::table
        .inner_join(profiles::table)
        .filter(profile_assignments::endpoint_id.eq_any(endpoint_ids.to_vec()))
        .filter(profiles::enabled.eq(true))
        .select((profile_assignments::endpoint_id, profiles::name, profiles::owner, profile_assignments::score))
        .load(conn)
}

/// Deletes an owner's profiles (their assignments go with them); returns the endpoints that had one.
pub fn delete_owner(conn: &mut AnyConnection, owner: &str) -> QueryResult<Vec<i64>> {
    conn.write_transaction(|conn| {
        let owned: Vec<i64> = profiles::table.filter(profiles::owner.eq(owner)).select(profiles::id).load(conn)?;
        let affected: Vec<i64> = profile_assignments::table
            .filter(profile_assignments::profile_id.eq_any(owned.clone()))
            .select(profile_assignments::endpoint_id)
            .distinct()
            .load(conn)?;
        diesel::delete(profile_assignments::table.filter(profile_assignments::profile_id.eq_any(owned.clone())))
            .execute(conn)?;
        diesel::delete(profiles::table.filter(profiles::id.eq_any(owned))).execute(conn)?;
        Ok(affected)
    })
}

/// Endpoints per profile name (the profile each endpoint currently has).
pub fn endpoint_counts(conn: &mut AnyConnection) -> QueryResult<Vec<(String, i64)>> {
    endpoints::table.group_by(endpoints::profile).select((endpoints::profile, diesel::dsl::count_star())).load(conn)
}
