//! Events out: delivers the outbox (`db::models::events`) to the destinations an admin set up
//! (`db::models::destinations`): webhooks (`webhook.rs`) and syslog receivers (`syslog.rs`).
//!
//! Every instance runs [`supervise`]. Each enabled destination has a worker of its own,
//! elected through a database lease named after it (`db::lease`): on PostgreSQL exactly one
//! instance delivers a destination's events, and another takes over when that one dies. A
//! worker reads events after its destination's cursor, in outbox order, sends each one (or
//! skips it when the destination's filter does not want it) and moves the cursor only after;
//! a failed send is retried with backoff, holding that destination's later events back (so
//! each receiver sees an endpoint's events in order) and no other destination's: one slow or
//! unreachable receiver delays nobody else. A crash between a send and the cursor's move
//! sends that event again, under the same id: at-least-once, duplicates recognisable.

pub mod settings;
pub mod syslog;
pub mod webhook;

use std::collections::HashMap;
use std::time::Duration;

use crate::db::models::destinations::{self, Destination};
use crate::db::models::events::Event;
use crate::db::{Db, lease};
use crate::secrets::SecretBox;

/// How often a worker with nothing to send looks for new events, and the supervisor for new
/// destinations.
const POLL: Duration = Duration::from_millis(500);
/// The first retry's wait; each next one doubles, up to [`MAX_BACKOFF`].
const FIRST_BACKOFF: Duration = Duration::from_secs(1);
const MAX_BACKOFF: Duration = Duration::from_secs(300);
/// How long a worker whose destination another instance holds waits before asking again.
const LEASE_RETRY: Duration = Duration::from_secs(15);
/// Events read from the outbox at a time.
const BATCH: i64 = 100;
/// The sealing purpose of webhook secrets (bound to the URL, like the Defender secret).
pub const SECRET_PURPOSE: &str = "destination-secret";

/// The kinds of destination.
pub const WEBHOOK: &str = "webhook";
pub const SYSLOG_UDP: &str = "syslog-udp";
pub const SYSLOG_TCP: &str = "syslog-tcp";
/// Syslog over TLS (RFC 5425).
pub const SYSLOG_TLS: &str = "syslog-tls";
pub const KINDS: &[&str] = &[WEBHOOK, SYSLOG_UDP, SYSLOG_TCP, SYSLOG_TLS];

/// A syslog message's formats: RFC 5424 with our structured data, or ArcSight's Common Event
/// Format as the RFC 5424 message.
pub const RFC5424: &str = "rfc5424";
pub const CEF: &str = "cef";
pub const FORMATS: &[&str] = &[RFC5424, CEF];

/// What delivering needs: the database, the secrets' box and an HTTP client that follows no
/// redirect (a receiver cannot bounce the signed body somewhere else).
#[derive(Clone)]
pub struct Notifier {
    db: Db,
    secrets: SecretBox,
    http: reqwest::Client,
}

/// One event as it leaves the product.
pub struct Outgoing {
    /// Stable across retries: the outbox id (`test-…` for a test event).
    pub id: String,
    pub kind: String,
    pub at: i64,
    pub endpoint_id: Option<i64>,
    pub message: String,
    pub data: serde_json::Value,
}

impl Outgoing {
    pub fn of(e: &Event) -> Self {
        Self {
            id: e.id.to_string(),
            kind: e.kind.clone(),
            at: e.at,
            endpoint_id: e.endpoint_id,
            message: e.message.clone(),
            data: serde_json::from_str(&e.data).unwrap_or_else(|_| serde_json::json!({})),
        }
    }

    /// The risk level the event carries, if any (`data.level`, stored as `RiskLevel::to_i16`).
    fn level(&self) -> Option<i16> {
        self.data.get("level").and_then(|l| l.as_i64()).and_then(|l| i16::try_from(l).ok())
    }
}

/// Whether the destination wants this event: its kind is listed (or none is), and an event that
/// carries a risk level has at least the destination's minimum. Events without a level (a
/// sync that failed, an endpoint created) pass the level filter.
pub fn wanted(d: &Destination, e: &Outgoing) -> bool {
    let kinds_ok = d.event_types.is_empty() || d.event_types.split(',').any(|k| k == e.kind);
    kinds_ok && e.level().is_none_or(|l| l >= d.min_level)
}

impl Notifier {
    pub fn new(db: Db, secrets: SecretBox) -> anyhow::Result<Self> {
        let http = reqwest::Client::builder()
            .redirect(reqwest::redirect::Policy::none())
            .connect_timeout(Duration::from_secs(5))
            .timeout(Duration::from_secs(10))
            .user_agent(concat!("endpoint-analytics/", env!("CARGO_PKG_VERSION")))
            .build()?;
        Ok(Self { db, secrets, http })
    }

    /// Sends one event to one destination once; `Err` says why it did not arrive, in words fit
    /// for the delivery log (never the secret).
    pub async fn send(&self, d: &Destination, e: &Outgoing) -> Result<String, String> {
        match d.kind.as_str() {
            WEBHOOK => {
                let secret = match &d.secret_ciphertext {
                    Some(sealed) => self
                        .secrets
                        .open_for(SECRET_PURPOSE, &d.url, sealed)
                        .map_err(|_| "the stored secret does not open: enter it again".to_owned())?,
                    None => return Err("the webhook has no secret".into()),
                };
                webhook::post(&self.http, &d.url, &secret, e).await
            }
            SYSLOG_UDP | SYSLOG_TCP | SYSLOG_TLS => syslog::send(d, e).await,
            other => Err(format!("unknown destination kind {other}")),
        }
    }

    /// Sends a test event to the destination now and logs the attempt; what the log says.
    pub async fn send_test(&self, d: &Destination) -> anyhow::Result<Result<String, String>> {
        let at = crate::db::now();
        let e = Outgoing {
            id: format!("test-{}", chrono::Utc::now().timestamp_millis()),
            kind: "test".into(),
            at,
            endpoint_id: None,
            message: format!("Test event for destination {}", d.name),
            data: serde_json::json!({}),
        };
        let outcome = self.send(d, &e).await;
        let (status, detail) = status_of(&outcome);
        let id = d.id;
        self.db.run(move |c| Ok(destinations::log(c, id, None, 1, status, &detail)?)).await?;
        Ok(outcome)
    }

    /// Delivers one destination's events while this task holds its lease and the destination
    /// stays enabled; returns when it is gone, disabled, or another holder has it.
    async fn work(self, id: i64) {
        let lease = match self.db.try_lease(&lease_name(id)).await {
            Ok(Some(l)) => l,
            // Another instance delivers this destination: ask again a while later, not at
            // every round (each ask is a PostgreSQL connection of its own).
            Ok(None) => return tokio::time::sleep(LEASE_RETRY).await,
            Err(e) => {
                tracing::warn!(destination = id, error = %e, "could not take a destination's lease");
                return;
            }
        };
        if let Err(e) = self.deliver(id, &lease).await {
            tracing::warn!(destination = id, error = %e, "event delivery stopped; it resumes shortly");
        }
        drop(lease);
    }

    async fn deliver(&self, id: i64, lease: &lease::Lease) -> anyhow::Result<()> {
        loop {
            let Some(d) = self.current(id).await? else { return Ok(()) };
            let (cursor, since) = ((d.cursor_txid, d.cursor_id), d.created_at);
            let batch = self.db.run(move |c| Ok(crate::db::models::events::pending(c, cursor, since, BATCH)?)).await?;
            if batch.is_empty() {
                tokio::time::sleep(POLL).await;
                continue;
            }
            for event in batch {
                let out = Outgoing::of(&event);
                if wanted(&d, &out) {
                    let mut attempt = 1;
                    loop {
                        // Read again before each try: an edited URL, secret or filter applies
                        // at once, and a deleted or disabled destination stops here.
                        let Some(d) = self.current(id).await? else { return Ok(()) };
                        if !wanted(&d, &out) {
                            break;
                        }
                        // On PostgreSQL the lease dies with its session: once it is gone,
                        // another instance may be delivering, and this one stops before sending.
                        anyhow::ensure!(lease.still_held().await, "lost the lease of destination {id}");
                        let outcome = self.send(&d, &out).await;
                        let (status, detail) = status_of(&outcome);
                        let event_id = event.id;
                        self.db
                            .run(move |c| Ok(destinations::log(c, id, Some(event_id), attempt, status, &detail)?))
                            .await?;
                        if outcome.is_ok() {
                            break;
                        }
                        tokio::time::sleep(backoff(attempt)).await;
                        attempt += 1;
                    }
                }
                let next = (event.txid, event.id);
                self.db.run(move |c| Ok(destinations::advance(c, id, next)?)).await?;
            }
        }
    }

    /// The destination if it still exists and is enabled.
    async fn current(&self, id: i64) -> anyhow::Result<Option<Destination>> {
        Ok(self.db.run(move |c| Ok(destinations::find(c, id)?)).await?.filter(|d| d.enabled))
    }
}

fn status_of(outcome: &Result<String, String>) -> (&'static str, String) {
    match outcome {
        Ok(detail) => ("delivered", detail.clone()),
        Err(why) => ("failed", why.clone()),
    }
}

/// The wait after the `attempt`th failure: 1 s, 2 s, 4 s… up to five minutes.
fn backoff(attempt: i32) -> Duration {
    FIRST_BACKOFF.saturating_mul(1u32 << attempt.clamp(1, 16).saturating_sub(1)).min(MAX_BACKOFF)
}

/// Keeps a worker running for every enabled destination on this instance (each worker gives up
/// at once when another instance holds its destination's lease, and is tried again next round).
/// Dropping the returned future (the app aborts it at shutdown) stops every worker.
pub async fn supervise(notifier: Notifier) {
    let mut workers: HashMap<i64, tokio::task::AbortHandle> = HashMap::new();
    let mut set = tokio::task::JoinSet::new();
    loop {
        while let Some(done) = set.try_join_next_with_id() {
            let id = match done {
                Ok((id, ())) => id,
                Err(e) => e.id(),
            };
            workers.retain(|_, h| h.id() != id);
        }
        match notifier.db.run(|c| Ok(destinations::list(c)?)).await {
            Ok(list) => {
                for d in list.into_iter().filter(|d| d.enabled) {
                    workers.entry(d.id).or_insert_with(|| set.spawn(notifier.clone().work(d.id)));
                }
            }
            Err(e) => tracing::warn!(error = %e, "could not read the event destinations"),
        }
        tokio::time::sleep(POLL).await;
    }
}

/// A lease name per destination, so that instances split the work destination by destination.
fn lease_name(id: i64) -> String {
    format!("{}-{id}", lease::DESTINATION)
}

/// Forgets what is older than `cutoff` (Unix seconds): events that every enabled destination
/// has dealt with (an event still owed to one is kept however old; a disabled destination
/// holds nothing back), and delivery attempts. Slice by slice, each its own transaction, so
/// that a large backlog never holds the write lock long. Returns (events, attempts) deleted.
pub fn prune(conn: &mut crate::db::AnyConnection, cutoff: i64) -> crate::db::DbResult<(usize, usize)> {
    const SLICE: i64 = 5_000;
    let mut totals = (0, 0);
    loop {
        let n = conn.write_transaction(|c| crate::db::models::events::prune_delivered(c, cutoff, SLICE))?;
        totals.0 += n;
        if (n as i64) < SLICE {
            break;
        }
    }
    loop {
        let n = conn.write_transaction(|c| destinations::prune_deliveries(c, cutoff, SLICE))?;
        totals.1 += n;
        if (n as i64) < SLICE {
            break;
        }
    }
    Ok(totals)
}
