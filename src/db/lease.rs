//! Leases: which instance runs a given piece of background work (the Defender sync, a full
//! re-model, the machine-action poll), elected through the database.
//!
//! On PostgreSQL a lease is a session-level advisory lock taken with `pg_try_advisory_lock` on a
//! connection of its own (outside the pool), held for as long as the work runs. When the
//! holder's process dies, PostgreSQL ends its session and the lock is free again, so another
//! instance can take the work over; nothing has to expire first. On SQLite one process owns the
//! database file, and a lease is a lock inside that process.
//!
//! Whoever holds a lease knows that any run of that work still marked "running" in the database
//! was left by a holder that is gone (see the callers).

use std::collections::HashSet;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};

use anyhow::Context;
use diesel::sql_types::{BigInt, Bool};
use diesel::{Connection, PgConnection, RunQueryDsl};
use sha2::{Digest, Sha256};

use super::{DatabaseTarget, Db, redact_url};

/// The names of the work elected this way.
pub const DEFENDER_SYNC: &str = "defender-sync";
pub const REMODEL: &str = "remodel";
pub const ACTION_POLL: &str = "action-poll";
pub const COVERAGE: &str = "coverage";
pub const RISK_HISTORY: &str = "risk-history";
pub const EVENTS_PRUNE: &str = "events-prune";
/// Evaluating the response rules and sending what they decided (`crate::rules`).
pub const RESPONSE_RULES: &str = "response-rules";
/// Writing the profiles' tags to Defender (`crate::defender::tags`).
pub const DEFENDER_TAGS: &str = "defender-tags";
/// Followed by a destination's id: who delivers that destination's events (`notify`).
pub const DESTINATION: &str = "destination";
/// Not a lease of background work: held while an instance migrates the database at start.
pub const MIGRATIONS: &str = "migrations";

/// Leases held in this process on SQLite files: (database file, lease name).
static LOCAL: Mutex<Option<HashSet<(PathBuf, String)>>> = Mutex::new(None);

/// A held lease; dropping it gives it up.
pub struct Lease {
    name: String,
    holder: Holder,
}

enum Holder {
    /// The connection whose session holds the advisory lock, and that session's process id.
    Postgres(Arc<Mutex<PgConnection>>, i32),
    Local(PathBuf),
}

/// What a write checks, in its own transaction, to be sure the lease is still its writer's
/// ([`Lease::fence`], [`hold_fence`]): the advisory lock's key and the session that must hold it.
/// A holder whose session died may not have noticed yet, while another instance has already
/// taken the work over; its writes must then change nothing.
#[derive(Debug, Clone, Copy)]
pub struct Fence {
    key: i64,
    pid: i32,
}

/// Whether the fenced lease is still held by its session (always, without a fence: SQLite, where
/// one process owns the file). Run it inside the write's transaction.
pub fn hold_fence(conn: &mut super::AnyConnection, fence: Option<Fence>) -> diesel::QueryResult<bool> {
    use diesel::sql_types::Integer;
    let (Some(f), super::AnyConnection::Postgresql(c)) = (fence, conn) else { return Ok(true) };
    // A one-key advisory lock is listed with the key's high half as classid, its low half as
    // objid and objsubid 1 (PostgreSQL's pg_locks documentation).
    diesel::select(
        diesel::dsl::sql::<Bool>(
            "EXISTS (SELECT 1 FROM pg_locks WHERE locktype = 'advisory' AND granted AND objsubid = 1 AND pid = ",
        )
        .bind::<Integer, _>(f.pid)
        .sql(" AND classid::bigint = ")
        .bind::<BigInt, _>((f.key >> 32) & 0xffff_ffff)
        .sql(" AND objid::bigint = ")
        .bind::<BigInt, _>(f.key & 0xffff_ffff)
        .sql(")"),
    )
    .get_result(c)
}

/// The advisory-lock key of a lease name: stable across versions and instances.
pub(crate) fn key(name: &str) -> i64 {
    let digest = Sha256::digest(format!("endpoint-analytics lease {name}").as_bytes());
    i64::from_be_bytes(digest[..8].try_into().expect("a SHA-256 digest has 8 bytes"))
}

impl Db {
    /// Takes the lease `name` unless another holder (instance, or task of this one) has it.
    pub async fn try_lease(&self, name: &str) -> anyhow::Result<Option<Lease>> {
        let name = name.to_owned();
        match self.target() {
            DatabaseTarget::Postgres { url } => {
                let url = url.clone();
                tokio::task::spawn_blocking(move || -> anyhow::Result<Option<Lease>> {
                    // A connection of its own: a pooled one would go back to the pool still
                    // holding the lock, and holding it for a long run would take a pool slot.
                    let mut conn = PgConnection::establish(&url)
                        .with_context(|| format!("cannot connect to PostgreSQL at {}", redact_url(&url)))?;
                    let (got, pid) = diesel::select((
                        diesel::dsl::sql::<Bool>("pg_try_advisory_lock(").bind::<BigInt, _>(key(&name)).sql(")"),
                        diesel::dsl::sql::<diesel::sql_types::Integer>("pg_backend_pid()"),
                    ))
                    .get_result::<(bool, i32)>(&mut conn)
                    .context("cannot ask PostgreSQL for an advisory lock")?;
                    Ok(got.then(|| Lease { name, holder: Holder::Postgres(Arc::new(Mutex::new(conn)), pid) }))
                })
                .await
                .context("the lease task panicked")?
            }
            DatabaseTarget::Sqlite { path } => {
                let mut held = LOCAL.lock().unwrap_or_else(|e| e.into_inner());
                let entry = (path.clone(), name.clone());
                Ok(held
                    .get_or_insert_default()
                    .insert(entry)
                    .then(|| Lease { name, holder: Holder::Local(path.clone()) }))
            }
        }
    }
}

impl Lease {
    pub fn name(&self) -> &str {
        &self.name
    }

    /// What a write checks to be sure this lease is still held ([`hold_fence`]); `None` on SQLite.
    pub fn fence(&self) -> Option<Fence> {
        match &self.holder {
            Holder::Postgres(_, pid) => Some(Fence { key: key(&self.name), pid: *pid }),
            Holder::Local(_) => None,
        }
    }

    /// Whether the lease is still ours. On PostgreSQL the lock lives as long as its session: if
    /// the connection broke, another instance may already have taken the work over, and the
    /// holder must stop.
    pub async fn still_held(&self) -> bool {
        match &self.holder {
            Holder::Local(_) => true,
            Holder::Postgres(conn, _) => {
                let conn = conn.clone();
                tokio::task::spawn_blocking(move || {
                    let mut conn = conn.lock().unwrap_or_else(|e| e.into_inner());
                    diesel::sql_query("SELECT 1").execute(&mut *conn).is_ok()
                })
                .await
                .unwrap_or(false)
            }
        }
    }
}

impl Drop for Lease {
    fn drop(&mut self) {
        // PostgreSQL: closing the connection ends the session and releases the lock.
        if let Holder::Local(path) = &self.holder {
            let mut held = LOCAL.lock().unwrap_or_else(|e| e.into_inner());
            if let Some(set) = held.as_mut() {
                set.remove(&(path.clone(), self.name.clone()));
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_lease_has_one_holder_until_it_is_dropped() {
        let dir = tempfile::tempdir().unwrap();
        let url = format!("sqlite://{}", dir.path().join("lease.db").display());
        let (a, b) = (Db::connect(&url, 2).unwrap(), Db::connect(&url, 2).unwrap());
        let lease = a.try_lease(DEFENDER_SYNC).await.unwrap().expect("the first asks and gets it");
        assert!(b.try_lease(DEFENDER_SYNC).await.unwrap().is_none(), "a second holder of the same database");
        assert!(b.try_lease(REMODEL).await.unwrap().is_some(), "another lease is independent");
        assert!(lease.still_held().await);
        drop(lease);
        assert!(b.try_lease(DEFENDER_SYNC).await.unwrap().is_some(), "free again once dropped");
    }

    #[test]
    fn keys_differ_by_name() {
        assert_ne!(key(DEFENDER_SYNC), key(REMODEL));
        assert_eq!(key(ACTION_POLL), key(ACTION_POLL));
    }
}
