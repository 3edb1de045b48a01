//! Machine actions as the product records them: the intent first, then what Defender says.

use diesel::prelude::*;

use crate::db::schema::machine_actions;
use crate::db::{AnyConnection, database_now, engine_query, now};
pub use crate::domain::action::ActionStatus;

/// The open statuses as stored.
const OPEN: [&str; 3] =
    [ActionStatus::OPEN[0].as_str(), ActionStatus::OPEN[1].as_str(), ActionStatus::OPEN[2].as_str()];

#[derive(Debug, Clone, Queryable, Selectable)]
#[diesel(table_name = machine_actions)]
pub struct ActionRow {
    pub id: i64,
    pub idempotency_key: String,
    pub endpoint_id: i64,
    pub machine_id: String,
    pub action_type: String,
    pub scope: String,
    pub comment: String,
    pub requested_by: String,
    #[diesel(deserialize_as = String)]
    pub status: ActionStatus,
    pub defender_action_id: String,
    pub error: String,
    pub created_at: i64,
    pub sent_at: Option<i64>,
    pub updated_at: i64,
    pub polled_at: i64,
    /// Defender's id in an answer that could not tell whose action it was (see
    /// `note_unsent`); empty otherwise.
    pub answered_action_id: String,
}

impl ActionRow {
    pub fn is_open(&self) -> bool {
        self.status.is_open()
    }

    /// Its type and scope as the audit log and events name it (`Isolate Full`, `Unisolate`).
    pub fn described(&self) -> String {
        if self.scope.is_empty() { self.action_type.clone() } else { format!("{} {}", self.action_type, self.scope) }
    }

    /// A collection of an investigation package that succeeded: Defender has a package to download.
    pub fn has_package(&self) -> bool {
        self.action_type == crate::domain::action::COLLECT_INVESTIGATION_PACKAGE
            && self.status == ActionStatus::Succeeded
    }
}

/// A new intent, before anything is sent.
pub struct NewAction<'a> {
    pub idempotency_key: &'a str,
    pub endpoint_id: i64,
    pub machine_id: &'a str,
    pub action_type: &'a str,
    pub scope: &'a str,
    pub comment: &'a str,
    pub requested_by: &'a str,
}

/// How recording an intent went.
pub enum Recorded {
    New(ActionRow),
    /// The same form was submitted before (double click, retried request).
    Repeat(ActionRow),
    /// Another action is open for the machine.
    Busy(ActionRow),
}

pub fn record_intent(conn: &mut AnyConnection, a: &NewAction<'_>) -> QueryResult<Recorded> {
    if let Some(existing) = by_key(conn, a.idempotency_key)? {
        return Ok(Recorded::Repeat(existing));
    }
    if let Some(open) = open_for_machine(conn, a.machine_id)? {
        // On PostgreSQL each statement sees what was committed before it: the same form,
        // submitted at the same moment, may have committed between the two reads.
        let same = open.idempotency_key == a.idempotency_key;
        return Ok(if same { Recorded::Repeat(open) } else { Recorded::Busy(open) });
    }
    // `updated_at` by the database's clock, as the sender's beats (see [`still_sending`]).
    let (t, beat) = (now(), database_now(conn)?);
    // In a savepoint of its own: inside the caller's transaction, PostgreSQL refuses every
    // statement after a failed one, so the race below could not be looked at (a double click
    // answered 500 for one of its two requests).
    let inserted = conn.write_transaction(|conn| {
        diesel::insert_into(machine_actions::table)
            .values((
                machine_actions::idempotency_key.eq(a.idempotency_key),
                machine_actions::endpoint_id.eq(a.endpoint_id),
                machine_actions::machine_id.eq(a.machine_id),
                machine_actions::action_type.eq(a.action_type),
                machine_actions::scope.eq(a.scope),
                machine_actions::comment.eq(a.comment),
                machine_actions::requested_by.eq(a.requested_by),
                machine_actions::status.eq(ActionStatus::Requested.as_str()),
                machine_actions::created_at.eq(t),
                machine_actions::updated_at.eq(beat),
            ))
            .execute(conn)
    });
    match inserted {
        Ok(_) => by_key(conn, a.idempotency_key)?.map(Recorded::New).ok_or(diesel::result::Error::NotFound),
        // A concurrent request won the race (same key, or another action for the machine).
        Err(diesel::result::Error::DatabaseError(diesel::result::DatabaseErrorKind::UniqueViolation, _)) => {
            match (by_key(conn, a.idempotency_key)?, open_for_machine(conn, a.machine_id)?) {
                (Some(r), _) => Ok(Recorded::Repeat(r)),
                (None, Some(o)) => Ok(Recorded::Busy(o)),
                (None, None) => Err(diesel::result::Error::NotFound),
            }
        }
        Err(e) => Err(e),
    }
}

pub fn by_key(conn: &mut AnyConnection, key: &str) -> QueryResult<Option<ActionRow>> {
    machine_actions::table
        .filter(machine_actions::idempotency_key.eq(key))
        .select(ActionRow::as_select())
        .first(conn)
        .optional()
}

pub fn find(conn: &mut AnyConnection, id: i64) -> QueryResult<Option<ActionRow>> {
    machine_actions::table.find(id).select(ActionRow::as_select()).first(conn).optional()
}

pub fn open_for_machine(conn: &mut AnyConnection, machine_id: &str) -> QueryResult<Option<ActionRow>> {
    machine_actions::table
        .filter(machine_actions::machine_id.eq(machine_id))
        .filter(machine_actions::status.eq_any(OPEN))
        .select(ActionRow::as_select())
        .first(conn)
        .optional()
}

pub fn of_endpoint(conn: &mut AnyConnection, endpoint_id: i64, limit: i64) -> QueryResult<Vec<ActionRow>> {
    engine_query!(conn, |c| machine_actions::table
        .filter(machine_actions::endpoint_id.eq(endpoint_id))
        .order(machine_actions::id.desc())
        .limit(limit)
        .select(ActionRow::as_select())
        .load(c))
}

/// Open actions to follow (sent ones), and intents older than `before` (possibly never sent).
pub fn open_actions(conn: &mut AnyConnection) -> QueryResult<Vec<ActionRow>> {
    machine_actions::table.filter(machine_actions::status.eq_any(OPEN)).select(ActionRow::as_select()).load(conn)
}

/// Records that Defender accepted the intent `id` (still unsent: 0 when it was settled
/// meanwhile, e.g. declared never sent).
pub fn mark_sent(conn: &mut AnyConnection, id: i64, defender_id: &str, status: ActionStatus) -> QueryResult<usize> {
    let t = now();
    diesel::update(unsent(id))
        .set((
            machine_actions::defender_action_id.eq(defender_id),
            // A note that its answer was lost no longer holds.
            machine_actions::error.eq(""),
            machine_actions::status.eq(status.as_str()),
            machine_actions::sent_at.eq(Some(t)),
            machine_actions::updated_at.eq(t),
            machine_actions::polled_at.eq(t),
        ))
        .execute(conn)
}

/// Moves action `id` from `from` to `to`: 1 when it did, 0 when something else moved it first
/// (two refreshes at once, an instance beside this one), so that only one records the change.
pub fn change_status(
    conn: &mut AnyConnection,
    id: i64,
    from: ActionStatus,
    to: ActionStatus,
    error: &str,
) -> QueryResult<usize> {
    let t = now();
    diesel::update(machine_actions::table.find(id).filter(machine_actions::status.eq(from.as_str())))
        .set((
            machine_actions::status.eq(to.as_str()),
            machine_actions::error.eq(error),
            machine_actions::updated_at.eq(t),
            machine_actions::polled_at.eq(t),
        ))
        .execute(conn)
}

/// Tells the background follower that the intent `id` is still on its way to Defender: its
/// `updated_at` by the database's clock, the one the follower reads it by (the two may run on
/// different hosts).
pub fn still_sending(conn: &mut AnyConnection, id: i64) -> QueryResult<usize> {
    let t = database_now(conn)?;
    diesel::update(unsent(id)).set(machine_actions::updated_at.eq(t)).execute(conn)
}

/// Declares the intent `id` never sent, when it is still unsent and its sender has not said
/// otherwise since `quiet_since` (database clock): 0 when it was sent or beat meanwhile.
pub fn settle_unsent(conn: &mut AnyConnection, id: i64, quiet_since: i64, why: &str) -> QueryResult<usize> {
    let t = now();
    diesel::update(unsent(id).filter(machine_actions::updated_at.le(quiet_since)))
        .set((
            machine_actions::status.eq(ActionStatus::Failed.as_str()),
            machine_actions::error.eq(why),
            machine_actions::updated_at.eq(t),
            machine_actions::polled_at.eq(t),
        ))
        .execute(conn)
}

/// Notes on the intent `id`, still unsent, why its fate is not known yet, and the id of the
/// action Defender answered with when it gave one (empty when its answer was lost).
pub fn note_unsent(conn: &mut AnyConnection, id: i64, note: &str, answered_id: &str) -> QueryResult<usize> {
    diesel::update(unsent(id))
        .set((machine_actions::error.eq(note), machine_actions::answered_action_id.eq(answered_id)))
        .execute(conn)
}

/// Whether Defender's action `defender_id` is already one of our records' other than `id` (on
/// any endpoint: a machine linked to another endpoint keeps its earlier actions where they were).
pub fn recorded_elsewhere(conn: &mut AnyConnection, id: i64, defender_id: &str) -> QueryResult<bool> {
    diesel::select(diesel::dsl::exists(
        machine_actions::table
            .filter(machine_actions::defender_action_id.eq(defender_id))
            .filter(machine_actions::id.ne(id)),
    ))
    .get_result(conn)
}

/// Action `id` while it is an intent not yet sent.
type Unsent = diesel::dsl::Filter<
    diesel::dsl::Filter<
        diesel::dsl::Find<machine_actions::table, i64>,
        diesel::dsl::Eq<machine_actions::status, &'static str>,
    >,
    diesel::dsl::Eq<machine_actions::defender_action_id, &'static str>,
>;

fn unsent(id: i64) -> Unsent {
    machine_actions::table
        .find(id)
        .filter(machine_actions::status.eq(ActionStatus::Requested.as_str()))
        .filter(machine_actions::defender_action_id.eq(""))
}

pub fn touch_polled(conn: &mut AnyConnection, id: i64) -> QueryResult<usize> {
    diesel::update(machine_actions::table.find(id)).set(machine_actions::polled_at.eq(now())).execute(conn)
}

/// Actions per (type, status), for the metrics.
pub fn status_counts(conn: &mut AnyConnection) -> QueryResult<Vec<(String, String, i64)>> {
    machine_actions::table
        .group_by((machine_actions::action_type, machine_actions::status))
        .select((machine_actions::action_type, machine_actions::status, diesel::dsl::count_star()))
        .load(conn)
}
