//! A destination's settings as an admin gives them (the API's JSON body, the Notifications
//! page's form): checked here, then created, changed or deleted with an audit entry, in one
//! place for both.

use crate::db::Db;
use crate::db::models::audit;
use crate::db::models::destinations::{self, Destination, DestinationFields};
use crate::error::AppError;
use crate::secrets::SecretBox;

use super::{FORMATS, KINDS, RFC5424, SECRET_PURPOSE, SYSLOG_TLS, WEBHOOK};

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

/// The stored destination, or 404.
pub async fn find(db: &Db, id: i64) -> Result<Destination, AppError> {
    db.run(move |c| Ok(destinations::find(c, id)?)).await?.ok_or(AppError::NotFound)
}

/// Creates a checked destination and audits it; its id. 409 when the name is taken.
pub async fn create(db: &Db, actor: &str, fields: DestinationFields) -> Result<i64, AppError> {
    let actor = actor.to_owned();
    db.run(move |c| {
        c.write_transaction(|c| {
            if destinations::name_taken(c, &fields.name, None)? {
                return Ok(Err(AppError::Conflict("Another destination has this name.".into())));
            }
            let id = destinations::create(c, &fields)?;
            audit::entry(&actor, "destination.create")
                .target(&fields.name)
                .outcome("success")
                .details(&format!("{} destination {id}", fields.kind))
                .record(c)?;
            Ok::<_, anyhow::Error>(Ok(id))
        })
    })
    .await?
}

/// Changes a destination to checked settings and audits it (the outbox cursor stays: events
/// already dealt with are not sent again). 404 when it is gone, 409 when the name is taken.
pub async fn update(db: &Db, actor: &str, id: i64, fields: DestinationFields) -> Result<(), AppError> {
    let actor = actor.to_owned();
    db.run(move |c| {
        c.write_transaction(|c| {
            if destinations::name_taken(c, &fields.name, Some(id))? {
                return Ok(Err(AppError::Conflict("Another destination has this name.".into())));
            }
            if !destinations::update(c, id, &fields)? {
                return Ok(Err(AppError::NotFound));
            }
            audit::entry(&actor, "destination.update")
                .target(&fields.name)
                .outcome("success")
                .details(&format!("{} destination {id}", fields.kind))
                .record(c)?;
            Ok::<_, anyhow::Error>(Ok(()))
        })
    })
    .await?
}

/// Deletes a destination (its delivery log goes with it) and audits it.
pub async fn delete(db: &Db, actor: &str, stored: Destination) -> Result<(), AppError> {
    let actor = actor.to_owned();
    db.run(move |c| {
        c.write_transaction(|c| {
            destinations::delete(c, stored.id)?;
            audit::entry(&actor, "destination.delete")
                .target(&stored.name)
                .outcome("success")
                .details(&format!("{} destination {}", stored.kind, stored.id))
                .record(c)?;
            Ok(())
        })
    })
    .await?;
    Ok(())
}
