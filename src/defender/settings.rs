//! The integration's settings: the hosts the client may talk to, whether a stored secret may be
//! kept, and storage with the client secret sealed (never returned). The form is checked in
//! `web::forms::defender`.

use url::Url;

use super::client::cloud::Cloud;
use crate::db::AnyConnection;
use crate::db::models::integration::{self, IntegrationConfig};
use crate::db::now;
use crate::secrets::SecretBox;

pub const NAME: &str = "defender";
/// Associated data of the sealed secret: a ciphertext made for another use does not open here.
const SECRET_PURPOSE: &str = "integration:defender:client_secret";
pub const DEFAULT_INTERVAL_MINUTES: i32 = 60;

/// Settings that passed validation.
#[derive(Debug, Clone)]
pub struct Settings {
    pub tenant_id: String,
    pub client_id: String,
    /// A new secret typed in this request; `None` keeps the stored one.
    pub new_secret: Option<String>,
    pub cloud: Cloud,
    pub region: String,
    pub login_base_url: Option<Url>,
    pub api_base_url: Option<Url>,
    pub enabled: bool,
    pub sync_interval_minutes: i32,
}

impl Settings {
    /// The sign-in base, the API base and the token scope the client uses (and the only hosts it
    /// talks to).
    pub fn hosts(&self) -> (Url, Url, String) {
        let fixed = |s: &str| Url::parse(s).expect("built-in URLs parse");
        let login = self.login_base_url.clone().unwrap_or_else(|| fixed(self.cloud.login_base_url()));
        let api = self.api_base_url.clone().unwrap_or_else(|| {
            self.cloud
                .regional_api_base_url(&self.region)
                .map(|u| fixed(&u))
                .unwrap_or_else(|| fixed(self.cloud.api_base_url()))
        });
        (login, api, self.cloud.scope().to_owned())
    }

    /// Where the client secret and the tokens it buys travel: the sign-in and API hosts, the
    /// tenant, the client and the cloud (whose scope names the API).
    pub fn destination(&self) -> (String, String, Cloud, Url, Url) {
        let (login, api, _) = self.hosts();
        (self.tenant_id.clone(), self.client_id.clone(), self.cloud, login, api)
    }

    /// [`Settings::destination`] as the text a sealed secret is bound to.
    pub fn destination_key(&self) -> String {
        let (tenant, client, cloud, login, api) = self.destination();
        format!("{tenant}|{client}|{}|{login}|{api}", cloud.as_str())
    }

    /// The hosts a test or sync of these settings contacts, for the audit log.
    pub fn hosts_contacted(&self) -> String {
        let (login, api, _) = self.hosts();
        let host = |u: &Url| u[url::Position::BeforeHost..url::Position::AfterPort].to_owned();
        format!("sign-in host {}, API host {}", host(&login), host(&api))
    }

    /// Reads settings back from storage (they were valid when saved; the secret stays stored).
    pub fn from_config(c: &IntegrationConfig) -> anyhow::Result<Settings> {
        let url =
            |s: &str| -> anyhow::Result<Option<Url>> { if s.is_empty() { Ok(None) } else { Ok(Some(Url::parse(s)?)) } };
        Ok(Settings {
            tenant_id: c.tenant_id.clone(),
            client_id: c.client_id.clone(),
            new_secret: None,
            cloud: Cloud::parse(&c.cloud).ok_or_else(|| anyhow::anyhow!("unknown cloud {:?}", c.cloud))?,
            region: c.region.clone(),
            login_base_url: url(&c.login_base_url)?,
            api_base_url: url(&c.api_base_url)?,
            enabled: c.enabled,
            sync_interval_minutes: c.sync_interval_minutes,
        })
    }

    /// Whether these settings may keep the stored secret (none typed): only when one is stored
    /// for exactly these hosts, tenant, client and cloud — it is never sent anywhere else.
    pub fn keeps_secret_of(&self, stored: Option<&IntegrationConfig>) -> Result<(), SecretNeeded> {
        match stored {
            _ if self.new_secret.is_some() => Ok(()),
            Some(c) if c.secret_ciphertext.is_some() => match Settings::from_config(c) {
                Ok(old) if old.destination() == self.destination() => Ok(()),
                _ => Err(SecretNeeded::SavedElsewhere),
            },
            _ => Err(SecretNeeded::NoneStored),
        }
    }
}

/// Why the secret must be typed (a stored one cannot be kept for these settings).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SecretNeeded {
    /// None is stored.
    NoneStored,
    /// One is stored, for another host, tenant, client or cloud.
    SavedElsewhere,
}

impl SecretNeeded {
    pub fn message(self) -> &'static str {
        match self {
            SecretNeeded::NoneStored => "Enter the client secret value (not its ID).",
            SecretNeeded::SavedElsewhere => {
                "Enter the client secret again: the sign-in host, API host, tenant, client or cloud changed, and a \
                 saved secret is only ever sent where it was saved for."
            }
        }
    }
}

pub fn load(conn: &mut AnyConnection) -> crate::db::DbResult<Option<IntegrationConfig>> {
    integration::get(conn, NAME)
}

/// Saves; a new secret is sealed, otherwise the stored ciphertext is kept.
pub fn save(conn: &mut AnyConnection, secrets: &SecretBox, s: &Settings, by: &str) -> anyhow::Result<()> {
    let stored = load(conn)?.and_then(|e| e.secret_ciphertext);
    let secret_ciphertext =
        secrets.seal_or_keep(SECRET_PURPOSE, &s.destination_key(), s.new_secret.as_deref(), stored)?;
    integration::save(
        conn,
        &IntegrationConfig {
            name: NAME.into(),
            tenant_id: s.tenant_id.clone(),
            client_id: s.client_id.clone(),
            secret_ciphertext,
            cloud: s.cloud.as_str().into(),
            region: s.region.clone(),
            login_base_url: s.login_base_url.as_ref().map(Url::to_string).unwrap_or_default(),
            api_base_url: s.api_base_url.as_ref().map(Url::to_string).unwrap_or_default(),
            enabled: s.enabled,
            sync_interval_minutes: s.sync_interval_minutes,
            updated_at: now(),
            updated_by: by.into(),
        },
    )?;
    Ok(())
}

/// The stored secret, decrypted for one use: only for the destination it was saved for (a
/// row whose hosts, tenant, client or cloud changed beside the secret does not open it).
pub fn stored_secret(secrets: &SecretBox, c: &IntegrationConfig) -> anyhow::Result<Option<String>> {
    let Some(sealed) = c.secret_ciphertext.as_deref() else { return Ok(None) };
    let destination = Settings::from_config(c)
        .map_err(|e| anyhow::anyhow!("the saved settings are not valid: {e}"))?
        .destination_key();
    secrets.open_for(SECRET_PURPOSE, &destination, sealed).map(Some).map_err(|_| {
        anyhow::anyhow!(
            "The stored client secret was not saved for these settings (or the master key changed): enter it again"
        )
    })
}

/// What changed, for the audit log (never the secret itself).
pub fn describe_change(old: Option<&IntegrationConfig>, s: &Settings) -> String {
    let mut parts = vec![
        format!("tenant {}", s.tenant_id),
        format!("client {}", s.client_id),
        format!("cloud {}", s.cloud.as_str()),
    ];
    if !s.region.is_empty() {
        parts.push(format!("region {}", s.region));
    }
    if let Some(u) = &s.api_base_url {
        parts.push(format!("api {u}"));
    }
    if let Some(u) = &s.login_base_url {
        parts.push(format!("login {u}"));
    }
    parts.push(if s.enabled { "enabled".into() } else { "disabled".into() });
    parts.push(format!("every {} min", s.sync_interval_minutes));
    if s.new_secret.is_some() {
        parts.push(if old.and_then(|o| o.secret_ciphertext.as_ref()).is_some() {
            "secret replaced".into()
        } else {
            "secret set".into()
        });
    }
    parts.join(", ")
}
