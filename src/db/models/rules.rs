//! Response rules and their decisions (`crate::rules`): the rules as an admin wrote them, which
//! endpoints a rule's condition meets, and each time it met one (awaiting approval, approved,
//! sent, declined, expired, refused).

use diesel::prelude::*;

use super::endpoint_list;
use crate::db::schema::{endpoints, response_rules, rule_decisions};
use crate::db::{AnyConnection, now};
use crate::domain::rules::Checked;

type Backend = <AnyConnection as diesel::Connection>::Backend;

#[derive(Debug, Clone, Queryable, Selectable)]
#[diesel(table_name = response_rules)]
pub struct Rule {
    pub id: i64,
    pub name: String,
    /// `domain::rules::Condition` as JSON.
    pub condition: String,
    /// `domain::rules::RuleAction` as JSON.
    pub action: String,
    pub requires_approval: bool,
    pub cooldown_minutes: i32,
    pub enabled: bool,
    pub author: String,
    /// Who wrote a version of it or enabled it, one per line (see [`Rule::edited_by`]).
    pub editors: String,
    /// Moved on by every change and every enabling.
    pub version: i32,
    pub dry_run_at: Option<i64>,
    pub dry_run_count: Option<i64>,
    pub created_at: i64,
    pub updated_at: i64,
}

/// What an admin sets of a rule (the rest is the product's).
#[derive(Debug, Clone, Insertable, AsChangeset)]
#[diesel(table_name = response_rules)]
pub struct RuleFields {
    pub name: String,
    pub condition: String,
    pub action: String,
    pub requires_approval: bool,
    pub cooldown_minutes: i32,
}

impl Rule {
    /// Whether `person` wrote a version of the rule or enabled it.
    pub fn edited_by(&self, person: &str) -> bool {
        self.author == person || self.editors.lines().any(|e| e == person)
    }
}

/// `editors` with `person` added.
fn with_editor(editors: &str, person: &str) -> String {
    if editors.lines().any(|e| e == person) {
        editors.to_owned()
    } else if editors.is_empty() {
        person.to_owned()
    } else {
        format!("{editors}\n{person}")
    }
}

pub fn create(conn: &mut AnyConnection, fields: &RuleFields, author: &str) -> QueryResult<Rule> {
    let at = now();
    diesel::insert_into(response_rules::table)
        .values((
            fields,
            response_rules::author.eq(author),
            response_rules::editors.eq(author),
            response_rules::enabled.eq(false),
            response_rules::created_at.eq(at),
            response_rules::updated_at.eq(at),
        ))
        .execute(conn)?;
    response_rules::table.filter(response_rules::name.eq(&fields.name)).select(Rule::as_select()).first(conn)
}

pub fn list(conn: &mut AnyConnection) -> QueryResult<Vec<Rule>> {
    response_rules::table.order(response_rules::name.asc()).select(Rule::as_select()).load(conn)
}

pub fn enabled(conn: &mut AnyConnection) -> QueryResult<Vec<Rule>> {
    response_rules::table
        .filter(response_rules::enabled.eq(true))
        .order(response_rules::id.asc())
        .select(Rule::as_select())
        .load(conn)
}

pub fn find(conn: &mut AnyConnection, id: i64) -> QueryResult<Option<Rule>> {
    response_rules::table.find(id).select(Rule::as_select()).first(conn).optional()
}

/// Changes a rule, as `by`. A changed rule is disabled and its dry run forgotten: it meets other
/// endpoints now, which its admin sees again before enabling it.
pub fn update(conn: &mut AnyConnection, id: i64, fields: &RuleFields, by: &str) -> QueryResult<usize> {
    let Some(rule) = find(conn, id)? else { return Ok(0) };
    diesel::update(response_rules::table.find(id))
        .set((
            fields,
            response_rules::editors.eq(with_editor(&rule.editors, by)),
            response_rules::version.eq(rule.version + 1),
            response_rules::enabled.eq(false),
            response_rules::dry_run_at.eq(None::<i64>),
            response_rules::dry_run_count.eq(None::<i64>),
            response_rules::updated_at.eq(now()),
        ))
        .execute(conn)
}

pub fn delete(conn: &mut AnyConnection, id: i64) -> QueryResult<usize> {
    diesel::delete(response_rules::table.find(id)).execute(conn)
}

/// Enables or disables a rule, as `by`; either moves its version on (a decision made before
/// acts no more), and whoever enables it becomes one of its editors.
pub fn set_enabled(conn: &mut AnyConnection, id: i64, enabled: bool, by: &str) -> QueryResult<usize> {
    let Some(rule) = find(conn, id)? else { return Ok(0) };
    let editors = if enabled { with_editor(&rule.editors, by) } else { rule.editors };
    diesel::update(response_rules::table.find(id))
        .set((
            response_rules::enabled.eq(enabled),
            response_rules::editors.eq(editors),
            response_rules::version.eq(rule.version + 1),
        ))
        .execute(conn)
}

pub fn record_dry_run(conn: &mut AnyConnection, id: i64, count: i64) -> QueryResult<usize> {
    diesel::update(response_rules::table.find(id))
        .set((response_rules::dry_run_at.eq(now()), response_rules::dry_run_count.eq(count)))
        .execute(conn)
}

/// The endpoints a condition meets: sorted by risk, most at risk first.
fn matching_query(c: &Checked, at: i64) -> endpoints::BoxedQuery<'static, Backend> {
    let mut q = endpoints::table.into_boxed::<Backend>();
    if let Some(level) = c.min_risk {
        q = q.filter(endpoints::risk_level.ge(level));
    }
    for (column, level) in [("top_vuln_severity", c.min_exposure), ("top_alert_severity", c.min_alert)] {
        if let Some(level) = level {
            use diesel::sql_types::{Bool, SmallInt};
            q = q.filter(
                diesel::dsl::sql::<Bool>(&format!(
                    "EXISTS (SELECT 1 FROM defender_machines d WHERE d.endpoint_id = endpoints.id AND NOT d.stale \
                     AND d.{column} >= "
                ))
                .bind::<SmallInt, _>(level)
                .sql(")"),
            );
        }
    }
    if !c.profiles.is_empty() {
        q = q.filter(endpoints::profile.eq_any(c.profiles.clone()));
    }
    if let Some(source) = &c.source {
        q = endpoint_list::with_source(q, source);
    }
    if let Some(kind) = c.coverage {
        q = endpoint_list::with_coverage_gap(q, kind);
    }
    if let Some(days) = c.not_seen_days {
        q = q.filter(endpoints::last_seen.lt(at - i64::from(days) * 86_400));
    }
    if let Some(tag) = &c.tag {
        q = endpoint_list::with_tag(q, tag);
    }
    q
}

/// Whether the condition meets this endpoint now (checked again before a decision acts).
pub fn still_matches(conn: &mut AnyConnection, c: &Checked, endpoint_id: i64) -> QueryResult<bool> {
    let n: i64 = matching_query(c, now()).filter(endpoints::id.eq(endpoint_id)).count().get_result(conn)?;
    Ok(n > 0)
}

/// The ids of the endpoints a condition meets now, at most `limit` (the most at risk first),
/// and how many there are in all.
pub fn matching(conn: &mut AnyConnection, c: &Checked, limit: i64) -> QueryResult<(Vec<i64>, i64)> {
    let at = now();
    let total = matching_query(c, at).count().get_result(conn)?;
    let ids = matching_query(c, at)
        .order((endpoints::risk_level.desc(), endpoints::id.asc()))
        .limit(limit)
        .select(endpoints::id)
        .load(conn)?;
    Ok((ids, total))
}

/// Where a decision stands.
pub mod state {
    pub const AWAITING_APPROVAL: &str = "awaiting_approval";
    pub const APPROVED: &str = "approved";
    pub const SENT: &str = "sent";
    pub const DECLINED: &str = "declined";
    pub const EXPIRED: &str = "expired";
    /// Defender or the product refused to act (unsupported, another action open, no longer a
    /// Defender machine).
    pub const REFUSED: &str = "refused";
    /// The rule changed (a new version, enabled or disabled) before it was acted on: the new
    /// version decides for itself.
    pub const SUPERSEDED: &str = "superseded";
    /// Still to be acted on: a rule does not decide again for the endpoint meanwhile.
    pub const OPEN: [&str; 2] = [AWAITING_APPROVAL, APPROVED];
}

#[derive(Debug, Clone, Queryable, Selectable)]
#[diesel(table_name = rule_decisions)]
pub struct Decision {
    pub id: i64,
    pub rule_id: i64,
    /// The rule's version that decided.
    pub rule_version: i32,
    pub endpoint_id: i64,
    pub state: String,
    /// What the rule saw when it matched, JSON.
    pub matched: String,
    pub created_at: i64,
    pub expires_at: Option<i64>,
    pub decided_at: Option<i64>,
    pub decided_by: String,
    pub reason: String,
    pub sent_at: Option<i64>,
    pub action_id: Option<i64>,
}

/// Of `endpoint_ids`, those the rule must leave alone now: an open decision, or one made within
/// the cooldown (`since`) and not superseded (an older version of the rule decided it, and it
/// never acted).
pub fn held_back(conn: &mut AnyConnection, rule_id: i64, endpoint_ids: &[i64], since: i64) -> QueryResult<Vec<i64>> {
    rule_decisions::table
        .filter(rule_decisions::rule_id.eq(rule_id))
        .filter(rule_decisions::endpoint_id.eq_any(endpoint_ids))
        .filter(
            rule_decisions::created_at
                .ge(since)
                .and(rule_decisions::state.ne(state::SUPERSEDED))
                .or(rule_decisions::state.eq_any(state::OPEN)),
        )
        .select(rule_decisions::endpoint_id)
        .distinct()
        .load(conn)
}

pub fn insert(
    conn: &mut AnyConnection,
    rule: &Rule,
    endpoint_id: i64,
    state: &str,
    matched: &str,
    expires_at: Option<i64>,
) -> QueryResult<Decision> {
    diesel::insert_into(rule_decisions::table)
        .values((
            rule_decisions::rule_id.eq(rule.id),
            rule_decisions::rule_version.eq(rule.version),
            rule_decisions::endpoint_id.eq(endpoint_id),
            rule_decisions::state.eq(state),
            rule_decisions::matched.eq(matched),
            rule_decisions::created_at.eq(now()),
            rule_decisions::expires_at.eq(expires_at),
        ))
        .execute(conn)?;
    rule_decisions::table
        .filter(rule_decisions::rule_id.eq(rule.id))
        .filter(rule_decisions::endpoint_id.eq(endpoint_id))
        .order(rule_decisions::id.desc())
        .select(Decision::as_select())
        .first(conn)
}

pub fn find_decision(conn: &mut AnyConnection, id: i64) -> QueryResult<Option<Decision>> {
    rule_decisions::table.find(id).select(Decision::as_select()).first(conn).optional()
}

/// Decisions in a state, oldest first.
pub fn in_state(conn: &mut AnyConnection, state: &str, limit: i64) -> QueryResult<Vec<Decision>> {
    rule_decisions::table
        .filter(rule_decisions::state.eq(state))
        .order(rule_decisions::id.asc())
        .limit(limit)
        .select(Decision::as_select())
        .load(conn)
}

/// The latest decisions, of one rule or all, newest first.
pub fn recent(conn: &mut AnyConnection, rule_id: Option<i64>, limit: i64) -> QueryResult<Vec<Decision>> {
    let mut q = rule_decisions::table.into_boxed::<Backend>();
    if let Some(id) = rule_id {
        q = q.filter(rule_decisions::rule_id.eq(id));
    }
    q.order(rule_decisions::id.desc()).limit(limit).select(Decision::as_select()).load(conn)
}

/// Moves a decision from `from` to `to` (by a person, with a reason); 0 when it was no longer
/// in `from` (someone else decided first, or it expired).
pub fn decide(conn: &mut AnyConnection, id: i64, from: &str, to: &str, by: &str, reason: &str) -> QueryResult<usize> {
    diesel::update(rule_decisions::table.find(id).filter(rule_decisions::state.eq(from)))
        .set((
            rule_decisions::state.eq(to),
            rule_decisions::decided_at.eq(now()),
            rule_decisions::decided_by.eq(by),
            rule_decisions::reason.eq(reason),
        ))
        .execute(conn)
}

/// Records how sending an approved decision went.
pub fn mark_done(
    conn: &mut AnyConnection,
    id: i64,
    to: &str,
    action_id: Option<i64>,
    reason: &str,
) -> QueryResult<usize> {
    diesel::update(rule_decisions::table.find(id).filter(rule_decisions::state.eq(state::APPROVED)))
        .set((
            rule_decisions::state.eq(to),
            rule_decisions::sent_at.eq(now()),
            rule_decisions::action_id.eq(action_id),
            rule_decisions::reason.eq(reason),
        ))
        .execute(conn)
}

/// A decision marked sent whose machine action `action_id` turned out never to have reached
/// Defender (its answer was lost, then Defender's listing had no such action): refused, with
/// `reason`, so that it counts as what it was.
pub fn action_never_sent(conn: &mut AnyConnection, action_id: i64, reason: &str) -> QueryResult<usize> {
    diesel::update(
        rule_decisions::table
            .filter(rule_decisions::action_id.eq(action_id))
            .filter(rule_decisions::state.eq(state::SENT)),
    )
    .set((rule_decisions::state.eq(state::REFUSED), rule_decisions::reason.eq(reason)))
    .execute(conn)
}

/// Approvals nobody gave in time: expired. Returns them.
/// Closes the rule's decisions still to be acted on, as superseded by its version `version`:
/// a decision of an older version acts no more, and must not hold the new one back.
pub fn supersede_open(conn: &mut AnyConnection, rule_id: i64, version: i32, at: i64) -> QueryResult<usize> {
    diesel::update(rule_decisions::table)
        .filter(rule_decisions::rule_id.eq(rule_id))
        .filter(rule_decisions::rule_version.lt(version))
        .filter(rule_decisions::state.eq_any(state::OPEN))
        .set((
            rule_decisions::state.eq(state::SUPERSEDED),
            rule_decisions::decided_at.eq(at),
            rule_decisions::reason.eq(format!("the rule changed (version {version}) before this was acted on")),
        ))
        .execute(conn)
}

pub fn expire(conn: &mut AnyConnection, at: i64) -> QueryResult<Vec<Decision>> {
    let due: Vec<Decision> = rule_decisions::table
        .filter(rule_decisions::state.eq(state::AWAITING_APPROVAL))
        .filter(rule_decisions::expires_at.lt(at))
        .select(Decision::as_select())
        .load(conn)?;
    let ids: Vec<i64> = due.iter().map(|d| d.id).collect();
    diesel::update(rule_decisions::table.filter(rule_decisions::id.eq_any(&ids)))
        .filter(rule_decisions::state.eq(state::AWAITING_APPROVAL))
        .set((rule_decisions::state.eq(state::EXPIRED), rule_decisions::decided_at.eq(at)))
        .execute(conn)?;
    Ok(due)
}

/// Device actions rules asked Defender for since `since` (the hourly cap): counted among the
/// machine actions, which outlive a deleted rule and its decisions; those Defender refused
/// outright do not count.
pub fn sent_since(conn: &mut AnyConnection, since: i64) -> QueryResult<i64> {
    use crate::db::schema::machine_actions;
    machine_actions::table
        .filter(machine_actions::requested_by.like(format!("{RULE_CALLER}%")))
        .filter(machine_actions::created_at.ge(since))
        .filter(machine_actions::status.ne(crate::domain::action::ActionStatus::Failed.as_str()))
        .count()
        .get_result(conn)
}

/// How a rule's machine actions name who asked for them: `rule {id}`.
pub const RULE_CALLER: &str = "rule ";
