//! The integration's settings: validation of what an administrator typed (messages per field),
//! storage with the client secret sealed (never returned), and the hosts the client may talk to.

pub use crate::domain::ids::{is_dns_name as is_domain, is_guid};
use url::Url;

use super::cloud::Cloud;
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

    /// A new client secret of an Entra app registration, or `None` to keep the stored one (an
    /// empty field is refused when none is stored).
    pub fn client_secret(&mut self, input: &str, has_stored_secret: bool) -> Option<String> {
        let secret = input.trim();
        if secret.is_empty() {
            if !has_stored_secret {
                self.0.push(("client_secret", "Enter the client secret value (not its ID).".into()));
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

/// A server's address as settings take it: a host, and no credentials, query or fragment (they
/// would leak into logs or change every request).
pub fn is_plain_address(u: &Url) -> bool {
    u.host_str().is_some()
        && u.username().is_empty()
        && u.password().is_none()
        && u.query().is_none()
        && u.fragment().is_none()
}

fn base_url(field: &'static str, s: &str, errors: &mut FieldErrors) -> Option<Url> {
    let s = s.trim();
    if s.is_empty() {
        return None;
    }
    match Url::parse(s) {
        Ok(u) if matches!(u.scheme(), "http" | "https") && is_plain_address(&u) => Some(u),
        _ => {
            errors.0.push((field, "Enter an absolute http(s) address such as https://api.security.microsoft.com, without credentials or query.".into()));
            None
        }
    }
}

pub fn validate(input: &SettingsInput, has_stored_secret: bool) -> Result<Settings, FieldErrors> {
    let mut errors = FieldErrors::default();
    let tenant_id = input.tenant_id.trim().to_lowercase();
    if !(is_guid(&tenant_id) || is_domain(&tenant_id)) {
        errors.0.push(("tenant_id", "Enter the directory (tenant) ID, a GUID such as 72f988bf-86f1-41af-91ab-2d7cd011db47, or a verified domain such as contoso.onmicrosoft.com.".into()));
    }
    let client_id = errors.client_id(&input.client_id);
    let new_secret = errors.client_secret(&input.client_secret, has_stored_secret);
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
    let login_base_url = base_url("login_base_url", &input.login_base_url, &mut errors);
    let api_base_url = base_url("api_base_url", &input.api_base_url, &mut errors);
    let sync_interval_minutes = input.sync_interval_minutes.unwrap_or(DEFAULT_INTERVAL_MINUTES);
    if !(5..=1440).contains(&sync_interval_minutes) {
        errors.0.push(("sync_interval_minutes", "The interval is between 5 and 1440 minutes.".into()));
    }
    if !errors.is_empty() {
        return Err(errors);
    }
    Ok(Settings {
        tenant_id,
        client_id,
        new_secret,
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

    /// Reads settings back from storage (they were valid when saved).
    pub fn from_config(c: &IntegrationConfig) -> Result<Settings, FieldErrors> {
        validate(&SettingsInput::from_config(c), true)
    }
}

pub fn load(conn: &mut AnyConnection) -> diesel::QueryResult<Option<IntegrationConfig>> {
    integration::get(conn, NAME)
}

/// Saves; a new secret is sealed, otherwise the stored ciphertext is kept.
pub fn save(conn: &mut AnyConnection, secrets: &SecretBox, s: &Settings, by: &str) -> anyhow::Result<()> {
    let stored = load(conn)?.and_then(|e| e.secret_ciphertext);
    let secret_ciphertext = secrets.seal_or_keep(SECRET_PURPOSE, s.new_secret.as_deref(), stored)?;
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

/// The stored secret, decrypted for one use.
pub fn stored_secret(secrets: &SecretBox, c: &IntegrationConfig) -> anyhow::Result<Option<String>> {
    c.secret_ciphertext.as_deref().map(|ct| secrets.open(SECRET_PURPOSE, ct)).transpose()
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
        let s = validate(&input(), false).unwrap();
        assert_eq!(s.tenant_id, "72f988bf-86f1-41af-91ab-2d7cd011db47");
        assert_eq!(s.cloud, Cloud::Commercial);
        let (login, api, scope) = s.hosts();
        assert_eq!(login.as_str(), "https://login.microsoftonline.com/");
        assert_eq!(api.as_str(), "https://api.security.microsoft.com/");
        assert_eq!(scope, "https://api.securitycenter.microsoft.com/.default");
        let domain = SettingsInput { tenant_id: "contoso.onmicrosoft.com".into(), region: "eu".into(), ..input() };
        assert_eq!(validate(&domain, false).unwrap().hosts().1.as_str(), "https://eu.api.security.microsoft.com/");
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
        let e = validate(&bad, false).unwrap_err();
        for f in ["tenant_id", "client_id", "client_secret", "cloud", "api_base_url", "sync_interval_minutes"] {
            assert!(e.get(f).is_some(), "{f}: {e:?}");
        }
        let keep = SettingsInput { client_secret: String::new(), ..input() };
        assert!(validate(&keep, true).unwrap().new_secret.is_none(), "an empty secret keeps the stored one");
    }
}
