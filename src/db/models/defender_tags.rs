//! Tags the product writes to Defender (issue 22, tags both ways): which profile maps to which
//! tag, which tags the product added to which machine (only those it ever removes), and each
//! call to Defender's tag API (the hourly budget).

use std::collections::{HashMap, HashSet};

use diesel::prelude::*;

use super::lower;
use crate::db::schema::{
    defender_machine_tags, defender_machines, defender_tag_calls, defender_tags_written, endpoints,
    profile_defender_tags,
};
use crate::db::{AnyConnection, now};
use crate::domain::tag;

/// Where a written tag came from.
pub mod source {
    /// A profile's mapping: removed again when the endpoint leaves the profile or the mapping goes.
    pub const PROFILE: &str = "profile";
    /// A response rule's "add a Defender tag": kept.
    pub const RULE: &str = "rule";
}

#[derive(Debug, Clone, Queryable, Selectable)]
#[diesel(table_name = profile_defender_tags)]
pub struct Mapping {
    pub profile: String,
    pub tag: String,
    pub updated_by: String,
    pub updated_at: i64,
}

#[derive(Debug, Clone, Queryable, Selectable)]
#[diesel(table_name = defender_tags_written)]
pub struct Written {
    pub machine_id: String,
    pub tag: String,
    pub source: String,
    pub written_by: String,
    pub written_at: i64,
}

pub fn mappings(conn: &mut AnyConnection) -> QueryResult<Vec<Mapping>> {
    profile_defender_tags::table.order(profile_defender_tags::profile).select(Mapping::as_select()).load(conn)
}

pub fn mapping(conn: &mut AnyConnection, profile: &str) -> QueryResult<Option<Mapping>> {
    profile_defender_tags::table.find(profile).select(Mapping::as_select()).first(conn).optional()
}

/// Maps `profile` to `tag` (replacing its earlier tag). Run in the caller's transaction.
pub fn set_mapping(conn: &mut AnyConnection, profile: &str, tag: &str, by: &str) -> QueryResult<()> {
    diesel::delete(profile_defender_tags::table.find(profile)).execute(conn)?;
    diesel::insert_into(profile_defender_tags::table)
        .values((
            profile_defender_tags::profile.eq(profile),
            profile_defender_tags::tag.eq(tag),
            profile_defender_tags::updated_by.eq(by),
            profile_defender_tags::updated_at.eq(now()),
        ))
        .execute(conn)?;
    Ok(())
}

/// Removes `profile`'s mapping; how many there were (0 or 1).
pub fn remove_mapping(conn: &mut AnyConnection, profile: &str) -> QueryResult<usize> {
    diesel::delete(profile_defender_tags::table.find(profile)).execute(conn)
}

/// The live (not stale) Defender machines of the endpoints that have `profile`.
pub fn machines_of_profile(conn: &mut AnyConnection, profile: &str) -> QueryResult<Vec<String>> {
    defender_machines::table
        .inner_join(endpoints::table)
        .filter(endpoints::profile.eq(profile))
        .filter(defender_machines::stale.eq(false))
        .select(defender_machines::machine_id)
        .order(defender_machines::machine_id)
        .load(conn)
}

/// The machines that carried `tag` at the last sync, in any case: a person's `ea:watch` is the
/// mapping's `EA:Watch` (as [`crate::domain::tag::same`] compares them).
pub fn synced_with_tag(conn: &mut AnyConnection, tag: &str) -> QueryResult<HashSet<String>> {
    let rows: Vec<(String, String)> = defender_machine_tags::table
        // Both sides through the same `lower()`: PostgreSQL's folds more than ASCII, so an
        // ASCII-only fold of the argument would miss a tag like `Équipe` in its own spelling.
        .filter(lower(defender_machine_tags::tag).eq(lower(tag)))
        .select((defender_machine_tags::machine_id, defender_machine_tags::tag))
        .load(conn)?;
    Ok(rows.into_iter().filter(|(_, t)| tag::same(t, tag)).map(|(m, _)| m).collect())
}

/// Whether `machine_id` carried `tag` (in any case) at the last sync.
pub fn synced_has(conn: &mut AnyConnection, machine_id: &str, tag: &str) -> QueryResult<bool> {
    let tags: Vec<String> = defender_machine_tags::table
        .filter(defender_machine_tags::machine_id.eq(machine_id))
        .select(defender_machine_tags::tag)
        .load(conn)?;
    Ok(tags.iter().any(|t| tag::same(t, tag)))
}

/// Records that Defender showed `tag` on the machine just now (read before adding it): it is
/// then someone else's, as if the last sync had seen it, and is neither added nor ever removed.
/// The next sync replaces the machine's tags with what Defender lists.
pub fn observed(conn: &mut AnyConnection, machine_id: &str, tag: &str) -> QueryResult<()> {
    if !synced_has(conn, machine_id, tag)? {
        diesel::insert_into(defender_machine_tags::table)
            .values((defender_machine_tags::machine_id.eq(machine_id), defender_machine_tags::tag.eq(tag)))
            .execute(conn)?;
    }
    Ok(())
}

/// What the product wrote, oldest first (`source` one of [`source`], or all).
pub fn written(conn: &mut AnyConnection, from: Option<&str>) -> QueryResult<Vec<Written>> {
    let mut q = defender_tags_written::table.select(Written::as_select()).into_boxed();
    if let Some(s) = from {
        q = q.filter(defender_tags_written::source.eq(s.to_owned()));
    }
    q.order((defender_tags_written::written_at, defender_tags_written::machine_id, defender_tags_written::tag))
        .load(conn)
}

/// What the product wrote to `machine_id` that is `tag` in any case ([`tag::same`]).
pub fn find_written(conn: &mut AnyConnection, machine_id: &str, tag: &str) -> QueryResult<Option<Written>> {
    let mine: Vec<Written> = defender_tags_written::table
        .filter(defender_tags_written::machine_id.eq(machine_id))
        .select(Written::as_select())
        .load(conn)?;
    Ok(mine.into_iter().find(|w| tag::same(&w.tag, tag)))
}

/// Records that the product added `tag` to `machine_id` (kept as first recorded when it was
/// already).
pub fn record_written(conn: &mut AnyConnection, machine_id: &str, tag: &str, from: &str, by: &str) -> QueryResult<()> {
    if find_written(conn, machine_id, tag)?.is_some() {
        return Ok(());
    }
    diesel::insert_into(defender_tags_written::table)
        .values((
            defender_tags_written::machine_id.eq(machine_id),
            defender_tags_written::tag.eq(tag),
            defender_tags_written::source.eq(from),
            defender_tags_written::written_by.eq(by),
            defender_tags_written::written_at.eq(now()),
        ))
        .execute(conn)?;
    Ok(())
}

pub fn forget_written(conn: &mut AnyConnection, machine_id: &str, tag: &str) -> QueryResult<usize> {
    diesel::delete(defender_tags_written::table.find((machine_id, tag))).execute(conn)
}

/// Records one call to Defender's tag API (`action` Add or Remove) and how it ended.
pub fn record_call(
    conn: &mut AnyConnection,
    machine_id: &str,
    tag: &str,
    action: &str,
    outcome: &str,
) -> QueryResult<()> {
    diesel::insert_into(defender_tag_calls::table)
        .values((
            defender_tag_calls::machine_id.eq(machine_id),
            defender_tag_calls::tag.eq(tag),
            defender_tag_calls::action.eq(action),
            defender_tag_calls::outcome.eq(outcome),
            defender_tag_calls::at.eq(now()),
        ))
        .execute(conn)?;
    Ok(())
}

/// Calls made since `since` (Unix seconds).
pub fn calls_since(conn: &mut AnyConnection, since: i64) -> QueryResult<i64> {
    defender_tag_calls::table.filter(defender_tag_calls::at.ge(since)).count().get_result(conn)
}

/// Outcomes of calls: how a call that did its work is recorded, and the prefix of one that
/// failed for every call (the round stopped: sign-in, permission, throttling, Defender down).
pub const DONE: &str = "done";
pub const STOPPED: &str = "failed, round stopped: ";

/// A call's (machine, tag, action).
pub type CallKey = (String, String, String);

/// Per (machine, tag, action), the failures since its last call that worked, and when the last
/// one was: what the writer backs off from (calls since `since`).
pub fn failing(conn: &mut AnyConnection, since: i64) -> QueryResult<HashMap<CallKey, (u32, i64)>> {
    let calls: Vec<(String, String, String, String, i64)> = defender_tag_calls::table
        .filter(defender_tag_calls::at.ge(since))
        .order((defender_tag_calls::at, defender_tag_calls::id))
        .select((
            defender_tag_calls::machine_id,
            defender_tag_calls::tag,
            defender_tag_calls::action,
            defender_tag_calls::outcome,
            defender_tag_calls::at,
        ))
        .load(conn)?;
    let mut out: HashMap<CallKey, (u32, i64)> = HashMap::new();
    for (machine_id, tag, action, outcome, at) in calls {
        let key = (machine_id, tag, action);
        if outcome.starts_with(DONE) {
            out.remove(&key);
        } else {
            let e = out.entry(key).or_insert((0, at));
            *e = (e.0 + 1, at);
        }
    }
    Ok(out)
}

/// When the last call that stopped a round was made, if the latest call is one.
pub fn last_stop(conn: &mut AnyConnection) -> QueryResult<Option<i64>> {
    let last: Option<(String, i64)> = defender_tag_calls::table
        .order((defender_tag_calls::at.desc(), defender_tag_calls::id.desc()))
        .select((defender_tag_calls::outcome, defender_tag_calls::at))
        .first(conn)
        .optional()?;
    Ok(last.filter(|(o, _)| o.starts_with(STOPPED)).map(|(_, at)| at))
}

/// Makes a tag the profiles' writer added one a rule wants too: it then stays.
pub fn claim_for_rule(conn: &mut AnyConnection, machine_id: &str, tag: &str, by: &str) -> QueryResult<usize> {
    let Some(written) = find_written(conn, machine_id, tag)? else { return Ok(0) };
    diesel::update(defender_tags_written::table.find((machine_id, written.tag)))
        .set((defender_tags_written::source.eq(source::RULE), defender_tags_written::written_by.eq(by)))
        .execute(conn)
}

/// Forgets the calls before `before`: the hour's count and the back-off need no more.
pub fn prune_calls(conn: &mut AnyConnection, before: i64) -> QueryResult<usize> {
    diesel::delete(defender_tag_calls::table.filter(defender_tag_calls::at.lt(before))).execute(conn)
}
