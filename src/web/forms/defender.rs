//! The Defender integration's settings form (Configuration ▸ Integrations ▸ Microsoft Defender,
//! and `PUT /api/v1/integrations/defender`).

use url::Url;

use super::{FieldErrors, checked, secret_address};
use crate::db::models::integration::IntegrationConfig;
use crate::defender::Cloud;
use crate::defender::settings::{DEFAULT_INTERVAL_MINUTES, Settings};
use crate::domain::ids::{is_dns_name, is_guid};

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

/// The fields of the page's form (pairs in order).
pub fn from_pairs(pairs: Vec<(String, String)>) -> SettingsInput {
    let mut i = SettingsInput::default();
    for (k, v) in pairs {
        match k.as_str() {
            "tenant_id" => i.tenant_id = v,
            "client_id" => i.client_id = v,
            "client_secret" => i.client_secret = v,
            "cloud" => i.cloud = v,
            "region" => i.region = v,
            "login_base_url" => i.login_base_url = v,
            "api_base_url" => i.api_base_url = v,
            "enabled" => i.enabled = checked(&v),
            "sync_interval_minutes" => i.sync_interval_minutes = Some(v.trim().parse().unwrap_or(-1)),
            _ => {}
        }
    }
    i
}

/// The settings typed, checked field by field.
pub fn validate(input: &SettingsInput) -> Result<Settings, FieldErrors> {
    let mut errors = FieldErrors::default();
    let errors = &mut errors;
    let tenant_id = input.tenant_id.trim().to_lowercase();
    if !(is_guid(&tenant_id) || is_dns_name(&tenant_id)) {
        errors.push("tenant_id", "Enter the directory (tenant) ID, a GUID such as 72f988bf-86f1-41af-91ab-2d7cd011db47, or a verified domain such as contoso.onmicrosoft.com.".to_owned());
    }
    let client_id = errors.client_id(&input.client_id);
    let cloud = match Cloud::parse(if input.cloud.trim().is_empty() { "commercial" } else { &input.cloud }) {
        Some(c) => c,
        None => {
            errors.push("cloud", "Choose Commercial, GCC, GCC High or DoD.");
            Cloud::Commercial
        }
    };
    let region = input.region.trim().to_lowercase();
    if !region.is_empty() && cloud.regional_api_base_url(&region).is_none() {
        errors.push("region", "Regional hosts exist for the commercial cloud only: us, eu, uk, au, swa or ina.");
    }
    let login_base_url = base_url("login_base_url", &input.login_base_url, errors);
    let api_base_url = base_url("api_base_url", &input.api_base_url, errors);
    let sync_interval_minutes = input.sync_interval_minutes.unwrap_or(DEFAULT_INTERVAL_MINUTES);
    if !(5..=1440).contains(&sync_interval_minutes) {
        errors.push("sync_interval_minutes", "The interval is between 5 and 1440 minutes.");
    }
    let new_secret = errors.new_secret(&input.client_secret);
    if !errors.is_empty() {
        return Err(std::mem::take(errors));
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

fn base_url(field: &'static str, s: &str, errors: &mut FieldErrors) -> Option<Url> {
    if s.trim().is_empty() { None } else { secret_address(field, s, errors) }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::defender::settings::SecretNeeded;

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
        let s = validate(&input()).unwrap();
        assert_eq!(s.tenant_id, "72f988bf-86f1-41af-91ab-2d7cd011db47");
        assert_eq!(s.cloud, Cloud::Commercial);
        let (login, api, scope) = s.hosts();
        assert_eq!(login.as_str(), "https://login.microsoftonline.com/");
        assert_eq!(api.as_str(), "https://api.security.microsoft.com/");
        assert_eq!(scope, "https://api.securitycenter.microsoft.com/.default");
        let domain = SettingsInput { tenant_id: "contoso.onmicrosoft.com".into(), region: "eu".into(), ..input() };
        assert_eq!(validate(&domain).unwrap().hosts().1.as_str(), "https://eu.api.security.microsoft.com/");
    }

    #[test]
    fn each_bad_field_gets_its_own_message() {
        let bad = SettingsInput {
            tenant_id: "not a tenant".into(),
            client_id: "123".into(),
            client_secret: "a\u{7}b".into(),
            cloud: "mars".into(),
            api_base_url: "ftp://x".into(),
            sync_interval_minutes: Some(0),
            ..Default::default()
        };
        let e = validate(&bad).unwrap_err();
        for f in ["tenant_id", "client_id", "client_secret", "cloud", "api_base_url", "sync_interval_minutes"] {
            assert!(e.get(f).is_some(), "{f}: {e:?}");
        }
        let plain = SettingsInput { login_base_url: "http://login.example.com".into(), ..input() };
        assert!(validate(&plain).unwrap_err().get("login_base_url").is_some(), "plain http only to loopback");
        let local = SettingsInput { login_base_url: "http://127.0.0.1:9/".into(), ..input() };
        assert!(validate(&local).is_ok());
    }

    #[test]
    fn a_stored_secret_is_kept_only_for_where_it_was_saved() {
        let saved = validate(&input()).unwrap();
        let stored = IntegrationConfig {
            name: crate::defender::settings::NAME.into(),
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
        assert_eq!(validate(&keep).unwrap().keeps_secret_of(Some(&stored)), Ok(()), "same destination: kept");
        assert_eq!(validate(&keep).unwrap().keeps_secret_of(None), Err(SecretNeeded::NoneStored));
        for moved in [
            SettingsInput { login_base_url: "https://login.example.com".into(), ..keep.clone() },
            SettingsInput { api_base_url: "https://api.example.com".into(), ..keep.clone() },
            SettingsInput { region: "eu".into(), ..keep.clone() },
            SettingsInput { cloud: "gcc".into(), ..keep.clone() },
            SettingsInput { tenant_id: "contoso.onmicrosoft.com".into(), ..keep.clone() },
            SettingsInput { client_id: "11111111-2222-3333-4444-555555555555".into(), ..keep.clone() },
        ] {
            let s = validate(&moved).unwrap();
            assert_eq!(s.keeps_secret_of(Some(&stored)), Err(SecretNeeded::SavedElsewhere), "{moved:?}");
        }
    }
}
