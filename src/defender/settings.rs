//! The integration's settings: validation of what an administrator typed (messages per field),
//! storage with the client secret sealed (never returned), and the hosts the client may talk to.

pub use crate::domain::ids::{is_dns_name as is_domain, is_guid};
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

/// The form (or the JSON of `PUT /api/v1/integrations/defender`), as typed. An empty secret
/// keeps the stored one.
#[derive(Debug, Default, Clone, serde::Deserialize)]
pub struct SettingsInput {
    #[serde(default)]
    pub tenant_id: String,
    #[serde(default)]
    pub client_id: String,
    #[serde(default)]
    pub client_secret: String,
    #[serde(default)]
    pub cloud: String,
    #[serde(default)]
    pub region: String,
    #[serde(default)]
    pub login_base_url: String,
    #[serde(default)]
    pub api_base_url: String,
    #[serde(default)]
    pub enabled: bool,
    pub sync_interval_minutes: Option<i32>,
}

impl SettingsInput {
    /// The form as stored, to show again (never with the secret).
    pub fn from_config(c: &IntegrationConfig) -> Self {
        Self {
            tenant_id: c.tenant_id.clone(),
            client_id: c.client_id.clone(),
            client_secret: String::new(),
            cloud: c.cloud.clone(),
            region: c.region.clone(),
            login_base_url: c.login_base_url.clone(),
            api_base_url: c.api_base_url.clone(),
            enabled: c.enabled,
            sync_interval_minutes: Some(c.sync_interval_minutes),
        }
    }
}

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

/// Messages beside the fields: (field name, message).
#[derive(Debug, Default, Clone)]
pub struct FieldErrors(pub Vec<(&'static str, String)>);

impl FieldErrors {
    pub fn get(&self, field: &str) -> Option<&str> {
        self.0.iter().find(|(f, _)| *f == field).map(|(_, m)| m.as_str())
    }
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
    pub fn summary(&self) -> String {
        self.0.iter().map(|(f, m)| format!("{f}: {m}")).collect::<Vec<_>>().join("; ")
    }

    /// The application (client) ID of an Entra app registration (Defender's and sign-in's).
    pub fn client_id(&mut self, input: &str) -> String {
        let client_id = input.trim().to_lowercase();
        if !is_guid(&client_id) {
            self.0.push((
                "client_id",
                "Enter the application (client) ID: a GUID shown on the app registration's overview.".into(),
            ));
        }
        client_id
    }

    /// A new client secret of an Entra app registration, or `None` to keep the stored one: an
    /// empty field is refused when none is stored, and when the secret would go somewhere else
    /// than where it was saved for (a stored secret never follows a new host, tenant or client).
    pub fn client_secret(&mut self, input: &str, stored: StoredSecret) -> Option<String> {
        let secret = input.trim();
        if secret.is_empty() {
            match stored {
                StoredSecret::None => {
                    self.0.push(("client_secret", "Enter the client secret value (not its ID).".into()))
                }
                StoredSecret::SavedElsewhere => self.0.push((
                    "client_secret",
                    "Enter the client secret again: the sign-in host, API host, tenant, client or cloud changed, \
                     and a saved secret is only ever sent where it was saved for."
                        .into(),
                )),
                StoredSecret::SavedForThis => {}
            }
            None
        } else if secret.len() > 1024 || secret.chars().any(char::is_control) {
            self.0.push(("client_secret", "This does not look like a client secret value.".into()));
            None
        } else {
            Some(secret.to_owned())
        }
    }
}

/// Whether a stored client secret may be kept for the settings being saved or tested.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StoredSecret {
    /// No secret is stored.
    None,
    /// One is stored for exactly these hosts, tenant and client.
    SavedForThis,
    /// One is stored, for another host, tenant, client or cloud.
    SavedElsewhere,
}

/// A server's address as settings take it: a host, and no credentials, query or fragment (they
/// would leak into logs or change every request).
pub fn is_plain_address(u: &Url) -> bool {
    u.host_str().is_some()
        && u.username().is_empty()
        && u.password().is_none()
        && u.query().is_none()
        && u.fragment().is_none()
}

fn is_loopback(u: &Url) -> bool {
    match u.host() {
        Some(url::Host::Ipv4(a)) => a.is_loopback(),
        Some(url::Host::Ipv6(a)) => a.is_loopback(),
        Some(url::Host::Domain(d)) => d.eq_ignore_ascii_case("localhost"),
        None => false,
    }
}

/// An address a secret or a token may travel to: absolute, without credentials, query or
/// fragment, and `https` (plain `http` only to this machine: the simulator, a local proxy).
/// Shared by the Defender and Entra sign-in settings.
pub fn secret_address(field: &'static str, s: &str, errors: &mut FieldErrors) -> Option<Url> {
    match Url::parse(s.trim()) {
        Ok(u) if (u.scheme() == "https" || (u.scheme() == "http" && is_loopback(&u))) && is_plain_address(&u) => {
            Some(u)
        }
        _ => {
            errors.0.push((
                field,
                "Enter an absolute https address without credentials or query (plain http only for localhost).".into(),
            ));
            None
        }
    }
}

fn base_url(field: &'static str, s: &str, errors: &mut FieldErrors) -> Option<Url> {
    if s.trim().is_empty() { None } else { secret_address(field, s, errors) }
}

/// Validates what an administrator typed against what is stored: a new secret is needed when
/// none is stored, or when the secret would go to another sign-in host, API host, tenant, client
/// or cloud than the stored one was saved for.
pub fn validate(input: &SettingsInput, stored: Option<&IntegrationConfig>) -> Result<Settings, FieldErrors> {
    let mut errors = FieldErrors::default();
    let mut s = parse(input, &mut errors);
    let kept = match (stored, &s) {
        (Some(c), Some(new)) if c.secret_ciphertext.is_some() => match Settings::from_config(c) {
            Ok(old) if old.destination() == new.destination() => StoredSecret::SavedForThis,
            _ => StoredSecret::SavedElsewhere,
        },
        (Some(c), None) if c.secret_ciphertext.is_some() => StoredSecret::SavedForThis,
        _ => StoredSecret::None,
    };
    let new_secret = errors.client_secret(&input.client_secret, kept);
    match s.as_mut() {
        Some(s) if errors.is_empty() => {
            s.new_secret = new_secret;
            Ok(s.clone())
        }
        _ => Err(errors),
    }
}

/// Every field but the secret; `None` when one is wrong (the message is in `errors`).
fn parse(input: &SettingsInput, errors: &mut FieldErrors) -> Option<Settings> {
    let tenant_id = input.tenant_id.trim().to_lowercase();
    if !(is_guid(&tenant_id) || is_domain(&tenant_id)) {
        errors.0.push(("tenant_id", "Enter the directory (tenant) ID, a GUID such as 72f988bf-86f1-41af-91ab-2d7cd011db47, or a verified domain such as contoso.onmicrosoft.com.".into()));
    }
    let client_id = errors.client_id(&input.client_id);
    let cloud = match Cloud::parse(if input.cloud.trim().is_empty() { "commercial" } else { &input.cloud }) {
        Some(c) => c,
        None => {
            errors.0.push(("cloud", "Choose Commercial, GCC, GCC High or DoD.".into()));
            Cloud::Commercial
        }
    };
    let region = input.region.trim().to_lowercase();
    if !region.is_empty() && cloud.regional_api_base_url(&region).is_none() {
        errors
            .0
            .push(("region", "Regional hosts exist for the commercial cloud only: us, eu, uk, au, swa or ina.".into()));
    }
    let login_base_url = base_url("login_base_url", &input.login_base_url, errors);
    let api_base_url = base_url("api_base_url", &input.api_base_url, errors);
    let sync_interval_minutes = input.sync_interval_minutes.unwrap_or(DEFAULT_INTERVAL_MINUTES);
    if !(5..=1440).contains(&sync_interval_minutes) {
        errors.0.push(("sync_interval_minutes", "The interval is between 5 and 1440 minutes.".into()));
    }
    if !errors.is_empty() {
        return None;
    }
    Some(Settings {
        tenant_id,
        client_id,
        new_secret: None,
        cloud,
        region,
        login_base_url,
        api_base_url,
        enabled: input.enabled,
        sync_interval_minutes,
    })
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
    pub fn from_config(c: &IntegrationConfig) -> Result<Settings, FieldErrors> {
        let mut errors = FieldErrors::default();
        parse(&SettingsInput::from_config(c), &mut errors).ok_or(errors)
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
        .map_err(|e| anyhow::anyhow!("the saved settings are not valid: {}", e.summary()))?
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

#[cfg(test)]
mod tests {
    use super::*;

    fn input() -> SettingsInput {
        SettingsInput {
            tenant_id: "72F988BF-86F1-41AF-91AB-2D7CD011DB47".into(),
            client_id: "9b2c4e61-3f5a-4d8b-a7c9-1e0f2d3c4b5a".into(),
            client_secret: "abc~secret".into(),
            ..Default::default()
        }
    }

    #[test]
    fn valid_settings_pass_and_normalize() {
        let s = validate(&input(), None).unwrap();
        assert_eq!(s.tenant_id, "72f988bf-86f1-41af-91ab-2d7cd011db47");
        assert_eq!(s.cloud, Cloud::Commercial);
        let (login, api, scope) = s.hosts();
        assert_eq!(login.as_str(), "https://login.microsoftonline.com/");
        assert_eq!(api.as_str(), "https://api.security.microsoft.com/");
        assert_eq!(scope, "https://api.securitycenter.microsoft.com/.default");
        let domain = SettingsInput { tenant_id: "contoso.onmicrosoft.com".into(), region: "eu".into(), ..input() };
        assert_eq!(validate(&domain, None).unwrap().hosts().1.as_str(), "https://eu.api.security.microsoft.com/");
    }

    #[test]
    fn each_bad_field_gets_its_own_message() {
        let bad = SettingsInput {
            tenant_id: "not a tenant".into(),
            client_id: "123".into(),
            client_secret: String::new(),
            cloud: "mars".into(),
            api_base_url: "ftp://x".into(),
            sync_interval_minutes: Some(0),
            ..Default::default()
        };
        let e = validate(&bad, None).unwrap_err();
        for f in ["tenant_id", "client_id", "client_secret", "cloud", "api_base_url", "sync_interval_minutes"] {
            assert!(e.get(f).is_some(), "{f}: {e:?}");
        }
    }

    #[test]
    fn a_stored_secret_is_kept_only_for_where_it_was_saved() {
        let saved = validate(&input(), None).unwrap();
        let stored = IntegrationConfig {
            name: NAME.into(),
            tenant_id: saved.tenant_id.clone(),
            client_id: saved.client_id.clone(),
            secret_ciphertext: Some(vec![1, 2, 3]),
            cloud: saved.cloud.as_str().into(),
            region: String::new(),
            login_base_url: String::new(),
            api_base_url: String::new(),
            enabled: true,
            sync_interval_minutes: 60,
            updated_at: 0,
            updated_by: "test".into(),
        };
        let keep = SettingsInput { client_secret: String::new(), sync_interval_minutes: Some(30), ..input() };
        assert!(validate(&keep, Some(&stored)).unwrap().new_secret.is_none(), "same destination: kept");
        for moved in [
            SettingsInput { login_base_url: "https://login.example.com".into(), ..keep.clone() },
            SettingsInput { api_base_url: "https://api.example.com".into(), ..keep.clone() },
            SettingsInput { region: "eu".into(), ..keep.clone() },
            SettingsInput { cloud: "gcc".into(), ..keep.clone() },
            SettingsInput { tenant_id: "contoso.onmicrosoft.com".into(), ..keep.clone() },
            SettingsInput { client_id: "11111111-2222-3333-4444-555555555555".into(), ..keep.clone() },
        ] {
            let e = validate(&moved, Some(&stored)).unwrap_err();
            assert!(e.get("client_secret").unwrap().contains("again"), "{moved:?}");
        }
        let bad = SettingsInput { login_base_url: "http://login.example.com".into(), ..input() };
        assert!(validate(&bad, None).unwrap_err().get("login_base_url").is_some(), "plain http only to loopback");
        let local = SettingsInput { login_base_url: "http://127.0.0.1:9/".into(), ..input() };
        assert!(validate(&local, None).is_ok());
    }
}
