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
pub const KINDS: &[&str] = &[WEBHOOK, SYSLOG_UDP, SYSLOG_TCP];

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
            SYSLOG_UDP | SYSLOG_TCP => syslog::send(&d.kind, &d.url, e).await,
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
        if let Err(e) = self.deliver(id).await {
            tracing::warn!(destination = id, error = %e, "event delivery stopped; it resumes shortly");
        }
        drop(lease);
    }

    async fn deliver(&self, id: i64) -> anyhow::Result<()> {
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
                        // Read again before each try: an edited URL or secret applies at once,
                        // and a deleted or disabled destination stops here.
                        let Some(d) = self.current(id).await? else { return Ok(()) };
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

/// What an admin sends to create or change a destination (the API's body; every field is
/// optional on a change, where what is missing stays as stored).
/// Not `Debug`: it may hold the secret, which must not reach a log line by accident.
#[derive(Default, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DestinationInput {
    pub name: Option<String>,
    pub kind: Option<String>,
    pub url: Option<String>,
    /// Write-only: never shown, logged or returned.
    pub secret: Option<String>,
    pub event_types: Option<Vec<String>>,
    pub min_level: Option<String>,
    pub enabled: Option<bool>,
}

/// A destination's settings, checked.
pub struct Checked {
    pub name: String,
    pub kind: String,
    pub url: String,
    pub secret_ciphertext: Option<Vec<u8>>,
    pub event_types: String,
    pub min_level: i16,
    pub enabled: bool,
}

impl Checked {
    pub fn fields(&self) -> destinations::DestinationFields<'_> {
        destinations::DestinationFields {
            name: &self.name,
            kind: &self.kind,
            url: &self.url,
            secret_ciphertext: self.secret_ciphertext.clone(),
            event_types: &self.event_types,
            min_level: self.min_level,
            enabled: self.enabled,
        }
    }
}

fn plain(text: &str) -> bool {
    !text.chars().any(char::is_control)
}

/// Checks the input over what is stored (`None` when creating); `Err` says what is wrong, for
/// a 400. A webhook's secret is sealed bound to its URL, so a new URL needs the secret again.
pub fn check(secrets: &SecretBox, input: DestinationInput, stored: Option<&Destination>) -> Result<Checked, String> {
    let name = input.name.or(stored.map(|d| d.name.clone())).unwrap_or_default().trim().to_owned();
    if name.is_empty() || name.chars().count() > 100 || !plain(&name) {
        return Err("name: 1 to 100 characters, no control characters.".into());
    }
    let kind = input.kind.or(stored.map(|d| d.kind.clone())).unwrap_or_default();
    if !KINDS.contains(&kind.as_str()) {
        return Err(format!("kind: one of {}.", KINDS.join(", ")));
    }
    let url = input.url.or(stored.map(|d| d.url.clone())).unwrap_or_default().trim().to_owned();
    if kind == WEBHOOK {
        check_webhook_url(&url)?;
    } else {
        check_syslog_address(&url)?;
    }
    let secret_ciphertext = if kind == WEBHOOK {
        let typed = input.secret.as_deref().filter(|s| !s.is_empty());
        if let Some(s) = typed
            && (s.chars().count() < 16 || s.chars().count() > 256 || !plain(s))
        {
            return Err("secret: 16 to 256 characters, no control characters.".into());
        }
        let kept = stored.filter(|d| d.url == url && d.kind == WEBHOOK).and_then(|d| d.secret_ciphertext.clone());
        match (typed, kept) {
            (Some(s), _) => Some(secrets.seal_for(SECRET_PURPOSE, &url, s).map_err(|_| "secret: cannot be sealed.")?),
            (None, Some(sealed)) => Some(sealed),
            (None, None) => return Err("secret: required for a webhook (and again when its URL changes).".into()),
        }
    } else {
        None
    };
    let event_types = match input.event_types {
        Some(list) => {
            if let Some(bad) = list.iter().find(|k| !crate::db::models::events::kinds::ALL.contains(&k.as_str())) {
                return Err(format!(
                    "event_types: {bad:?} is not an event type; the types are {}.",
                    crate::db::models::events::kinds::ALL.join(", ")
                ));
            }
            list.join(",")
        }
        None => stored.map(|d| d.event_types.clone()).unwrap_or_default(),
    };
    let min_level = match input.min_level {
        Some(l) => l
            .parse::<crate::domain::risk::RiskLevel>()
            .map_err(|_| "min_level: one of none, low, medium, high, critical.")?
            .to_i16(),
        None => stored.map_or(0, |d| d.min_level),
    };
    let enabled = input.enabled.or(stored.map(|d| d.enabled)).unwrap_or(true);
    Ok(Checked { name, kind, url, secret_ciphertext, event_types, min_level, enabled })
}

/// A webhook URL: http or https with a host, no user name or password (they would be shown and
/// logged with the URL; the signature is what authenticates). Private and loopback addresses
/// are allowed on purpose: the receivers of a self-hosted product (a SIEM, a chat relay) are
/// usually on the local network, and only an admin sets destinations. What such a URL can
/// learn is limited: redirects are not followed and the answer's body is never read or shown.
fn check_webhook_url(url: &str) -> Result<(), String> {
    let parsed = url::Url::parse(url).map_err(|e| format!("url: not a URL ({e})."))?;
    if !matches!(parsed.scheme(), "http" | "https") || parsed.host_str().is_none_or(str::is_empty) {
        return Err("url: an http:// or https:// URL with a host.".into());
    }
    if !parsed.username().is_empty() || parsed.password().is_some() {
        return Err("url: no user name or password in the URL; the signature authenticates the requests.".into());
    }
    if url.len() > 2048 {
        return Err("url: at most 2048 characters.".into());
    }
    Ok(())
}

/// A syslog receiver: `host:port`.
fn check_syslog_address(address: &str) -> Result<(), String> {
    let ok = address.rsplit_once(':').is_some_and(|(host, port)| {
        !host.is_empty()
            && host.len() <= 255
            && host.chars().all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '-' | '[' | ']' | ':'))
            && port.parse::<u16>().is_ok_and(|p| p > 0)
    });
    if ok { Ok(()) } else { Err("url: a syslog receiver is host:port (for example siem.example.com:514).".into()) }
}
