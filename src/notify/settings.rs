//! A destination's settings as an admin gives them (the API's JSON body, the Notifications
//! page's form): checked here, then created, changed or deleted with an audit entry, in one
//! place for both.

use crate::db::Db;
use crate::db::models::audit;
use crate::db::models::destinations::{self, Destination, DestinationFields};
use crate::secrets::SecretBox;

use super::{FORMATS, KINDS, RFC5424, SECRET_PURPOSE, SYSLOG_TLS, WEBHOOK};

/// Why a change of destinations was not made: what the admin can correct.
#[derive(Debug, PartialEq, Eq)]
pub enum Refused {
    /// The check's words (`field: what is wrong.`).
    Invalid(String),
    NameTaken,
    NotFound,
}

impl std::fmt::Display for Refused {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Refused::Invalid(why) => f.write_str(why),
            Refused::NameTaken => f.write_str("Another destination has this name."),
            Refused::NotFound => f.write_str("There is no such destination."),
        }
    }
}

/// A change's outcome: done, refused (for the admin), or failed (`Err`, for the log).
pub type Outcome<T> = anyhow::Result<Result<T, Refused>>;

/// What an admin sends to create or change a destination (every field is optional on a change,
/// where what is missing stays as stored).
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
    /// Syslog: `rfc5424` (the default) or `cef`.
    pub format: Option<String>,
    /// Syslog over TLS: certificate authorities (PEM) to trust besides the public roots.
    pub ca_pem: Option<String>,
}

fn plain(text: &str) -> bool {
    !text.chars().any(char::is_control)
}

/// Checks the input over what is stored (`None` when creating); `Err` says what is wrong, for
/// a 400 or the form. A webhook's secret is sealed bound to its URL, so a new URL needs the
/// secret again.
pub fn check(
    secrets: &SecretBox,
    input: DestinationInput,
    stored: Option<&Destination>,
) -> Result<DestinationFields, String> {
    let name = input.name.or(stored.map(|d| d.name.clone())).unwrap_or_default().trim().to_owned();
    if name.is_empty() || name.chars().count() > 100 || !plain(&name) {
        return Err("name: 1 to 100 characters, no control characters.".into());
    }
    let kind = input.kind.or(stored.map(|d| d.kind.clone())).unwrap_or_default();
    if !KINDS.contains(&kind.as_str()) {
        return Err(format!("kind: one of {}.", KINDS.join(", ")));
    }
    let url = input.url.or(stored.map(|d| d.url.clone())).unwrap_or_default().trim().to_owned();
    // The URL parser drops or encodes control characters it meets, so the raw text must not
    // hold any: it is what is stored (PostgreSQL refuses a NUL in text) and shown.
    if !plain(&url) {
        return Err("url: no control characters.".into());
    }
    if kind == WEBHOOK {
        check_webhook_url(&url)?;
    } else {
        check_syslog_address(&url)?;
        // Syslog over UDP or TCP is clear text, like http://: on the local network only. (Read
        // as an http URL's host, so that addresses parse as addresses.)
        let local = url::Url::parse(&format!("http://{url}")).is_ok_and(|u| local_host(&u));
        if kind != SYSLOG_TLS && !local {
            return Err("url: syslog over UDP or TCP (clear text) only to a loopback or private address or a \
                        local name; use syslog-tls for a receiver beyond the local network."
                .into());
        }
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
    let format = input.format.or(stored.map(|d| d.format.clone())).unwrap_or_else(|| RFC5424.to_owned());
    if !FORMATS.contains(&format.as_str()) || (kind == WEBHOOK && format != RFC5424) {
        return Err(format!("format: one of {} (syslog only).", FORMATS.join(", ")));
    }
    let ca_pem = input.ca_pem.or(stored.map(|d| d.ca_pem.clone())).unwrap_or_default().trim().to_owned();
    if !ca_pem.is_empty() {
        if kind != SYSLOG_TLS {
            return Err("ca_pem: only for syslog over TLS.".into());
        }
        super::syslog::check_ca_pem(&ca_pem)?;
    }
    Ok(DestinationFields { name, kind, url, secret_ciphertext, event_types, min_level, enabled, ca_pem, format })
}

/// A webhook URL: https with a host (http only on the local network), no user name or password
/// (they would be shown and logged with the URL; the signature is what authenticates). Private
/// and loopback addresses are allowed on purpose: the receivers of a self-hosted product (a SIEM, a chat relay) are
/// usually on the local network, and only an admin sets destinations. What such a URL can
/// learn is limited: redirects are not followed and the answer's body is never read or shown.
fn check_webhook_url(url: &str) -> Result<(), String> {
    let parsed = url::Url::parse(url).map_err(|e| format!("url: not a URL ({e})."))?;
    if !matches!(parsed.scheme(), "http" | "https") || parsed.host_str().is_none_or(str::is_empty) {
        return Err("url: an http:// or https:// URL with a host.".into());
    }
    if parsed.scheme() == "http" && !local_host(&parsed) {
        return Err("url: https:// for a receiver beyond the local network (events name hosts, addresses and users); \
                    http:// only to a loopback or private address or a local name."
            .into());
    }
    if !parsed.username().is_empty() || parsed.password().is_some() {
        return Err("url: no user name or password in the URL; the signature authenticates the requests.".into());
    }
    if url.len() > 2048 {
        return Err("url: at most 2048 characters.".into());
    }
    Ok(())
}

/// Whether a URL's host is on the local network: a loopback, private or link-local address,
/// or a name without a dot or under a suffix kept for local use (.local, .internal, .lan,
/// .home.arpa, localhost).
fn local_host(url: &url::Url) -> bool {
    match url.host() {
        Some(url::Host::Ipv4(a)) => a.is_loopback() || a.is_private() || a.is_link_local(),
        Some(url::Host::Ipv6(a)) => {
            a.is_loopback() || (a.segments()[0] & 0xfe00) == 0xfc00 || (a.segments()[0] & 0xffc0) == 0xfe80
        }
        Some(url::Host::Domain(name)) => {
            // A fully qualified name (`com.`) is not a local one, however short.
            let name = name.to_ascii_lowercase();
            !name.contains('.')
                || [".local", ".internal", ".lan", ".home.arpa", ".localhost"].iter().any(|s| name.ends_with(s))
        }
        None => false,
    }
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

/// The stored destination.
pub async fn find(db: &Db, id: i64) -> Outcome<Destination> {
    Ok(db.run(move |c| Ok(destinations::find(c, id)?)).await?.ok_or(Refused::NotFound))
}

/// Creates a checked destination and audits it; its id.
pub async fn create(db: &Db, actor: &str, fields: DestinationFields) -> Outcome<i64> {
    let actor = actor.to_owned();
    db.run(move |c| {
        c.write_transaction(|c| {
            if destinations::name_taken(c, &fields.name, None)? {
                return Ok(Err(Refused::NameTaken));
            }
            let id = destinations::create(c, &fields)?;
            audit::entry(&actor, "destination.create")
                .target(&fields.name)
                .outcome("success")
                .details(&described(id, &fields))
                .record(c)?;
            Ok::<_, anyhow::Error>(Ok(id))
        })
    })
    .await
    .or_else(name_race)
}

/// Two admins giving two destinations one name at the same moment: the database's unique name
/// refuses the second (on PostgreSQL both may pass the check first), refused like the check's.
fn name_race<T>(e: anyhow::Error) -> Outcome<T> {
    if crate::db::is_unique_violation(&e) { Ok(Err(Refused::NameTaken)) } else { Err(e) }
}

/// Changes a destination: the input checked over what is stored, and written, in one
/// transaction (two changes at once apply one after the other, neither undoing the other), and
/// audited. The outbox cursor stays: events already dealt with are not sent again.
pub async fn update(db: &Db, secrets: &SecretBox, actor: &str, id: i64, input: DestinationInput) -> Outcome<()> {
    let (actor, secrets) = (actor.to_owned(), secrets.clone());
    db.run(move |c| {
        c.write_transaction(|c| {
            let Some(stored) = destinations::find_for_update(c, id)? else { return Ok(Err(Refused::NotFound)) };
            let fields = match check(&secrets, input, Some(&stored)) {
                Ok(f) => f,
                Err(e) => return Ok(Err(Refused::Invalid(e))),
            };
            if destinations::name_taken(c, &fields.name, Some(id))? {
                return Ok(Err(Refused::NameTaken));
            }
            destinations::update(c, id, &fields)?;
            audit::entry(&actor, "destination.update")
                .target(&fields.name)
                .outcome("success")
                .details(&described(id, &fields))
                .record(c)?;
            Ok::<_, anyhow::Error>(Ok(()))
        })
    })
    .await
    .or_else(name_race)
}

/// What the audit log says of a destination's settings: its kind and where events go.
fn described(id: i64, f: &DestinationFields) -> String {
    let state = if f.enabled { "enabled" } else { "disabled" };
    format!("{} destination {id} to {}, {state}", f.kind, target_of(&f.kind, &f.url))
}

/// Where a destination sends, for the audit log: a webhook URL's scheme, host and port only (a
/// token in its path or query stays out of the log); a syslog receiver's host:port.
fn target_of(kind: &str, url: &str) -> String {
    match url::Url::parse(url) {
        Ok(u) if kind == WEBHOOK => {
            let port = u.port().map_or(String::new(), |p| format!(":{p}"));
            format!("{}://{}{port}", u.scheme(), u.host_str().unwrap_or(""))
        }
        _ => url.to_owned(),
    }
}

/// Deletes a destination (its delivery log goes with it) and audits it.
pub async fn delete(db: &Db, actor: &str, stored: Destination) -> anyhow::Result<()> {
    let actor = actor.to_owned();
    db.run(move |c| {
        c.write_transaction(|c| {
            destinations::delete(c, stored.id)?;
            audit::entry(&actor, "destination.delete")
                .target(&stored.name)
                .outcome("success")
                .details(&format!(
                    "{} destination {} to {}",
                    stored.kind,
                    stored.id,
                    target_of(&stored.kind, &stored.url)
                ))
                .record(c)?;
            Ok(())
        })
    })
    .await?;
    Ok(())
}
