//! The Entra sign-in settings form (Configuration ▸ Entra ID sign-in).

use url::Url;

use super::{FieldErrors, checked, secret_address};
use crate::db::models::sso::SsoConfig;
use crate::domain::ids::is_guid;
use crate::sso::settings::{CALLBACK_PATH, DEFAULT_AUTHORITY, RoleMapping, SsoSettings};

/// The form, as typed. An empty secret keeps the stored one.
#[derive(Debug, Default, Clone, serde::Deserialize)]
pub struct SsoInput {
    #[serde(default)]
    pub tenant_id: String,
    #[serde(default)]
    pub client_id: String,
    #[serde(default)]
    pub client_secret: String,
    #[serde(default)]
    pub authority: String,
    #[serde(default)]
    pub redirect_uri: String,
    #[serde(default)]
    pub admin_values: String,
    #[serde(default)]
    pub operator_values: String,
    #[serde(default)]
    pub analyst_values: String,
    #[serde(default)]
    pub enabled: bool,
}

impl SsoInput {
    /// The form as stored, to show again (never with the secret).
    pub fn from_config(c: &SsoConfig) -> Self {
        Self {
            tenant_id: c.tenant_id.clone(),
            client_id: c.client_id.clone(),
            client_secret: String::new(),
            authority: c.authority.clone(),
            redirect_uri: c.redirect_uri.clone(),
            admin_values: c.admin_values.clone(),
            operator_values: c.operator_values.clone(),
            analyst_values: c.analyst_values.clone(),
            enabled: c.enabled,
        }
    }
}

/// The fields of the page's form (pairs in order).
pub fn from_pairs(pairs: Vec<(String, String)>) -> SsoInput {
    let mut i = SsoInput::default();
    for (k, v) in pairs {
        match k.as_str() {
            "tenant_id" => i.tenant_id = v,
            "client_id" => i.client_id = v,
            "client_secret" => i.client_secret = v,
            "authority" => i.authority = v,
            "redirect_uri" => i.redirect_uri = v,
            "admin_values" => i.admin_values = v,
            "operator_values" => i.operator_values = v,
            "analyst_values" => i.analyst_values = v,
            "enabled" => i.enabled = checked(&v),
            _ => {}
        }
    }
    i
}

/// App role values and group ids typed one a line (commas and spaces also separate: neither
/// may appear in an app role value).
fn parse_values(field: &'static str, text: &str, errors: &mut FieldErrors) -> Vec<String> {
    let mut out: Vec<String> = Vec::new();
    for v in text.split(|c: char| c == ',' || c.is_whitespace()).filter(|v| !v.is_empty()) {
        if v.len() > 120 || v.chars().any(|c| c.is_control()) {
            errors.push(field, "An app role value or group object id has at most 120 characters.");
            return out;
        }
        if !out.iter().any(|o| o.eq_ignore_ascii_case(v)) {
            out.push(v.to_owned());
        }
    }
    out
}

/// The settings typed, checked field by field.
pub fn validate(input: &SsoInput) -> Result<SsoSettings, FieldErrors> {
    let mut errors = FieldErrors::default();
    let tenant_id = input.tenant_id.trim().to_lowercase();
    if !is_guid(&tenant_id) {
        errors.push(
            "tenant_id",
            "Enter the directory (tenant) ID as a GUID such as 72f988bf-86f1-41af-91ab-2d7cd011db47: ID tokens name the tenant by it.",
        );
    }
    let client_id = errors.client_id(&input.client_id);
    let new_secret = errors.new_secret(&input.client_secret);
    let authority = if input.authority.trim().is_empty() {
        Url::parse(DEFAULT_AUTHORITY).ok()
    } else {
        secret_address("authority", &input.authority, &mut errors)
    };
    let redirect_uri = if input.redirect_uri.trim().is_empty() {
        None
    } else {
        match secret_address("redirect_uri", &input.redirect_uri, &mut errors) {
            Some(u) if u.path() == CALLBACK_PATH => Some(u),
            Some(_) => {
                errors.push("redirect_uri", format!("The redirect URI ends with {CALLBACK_PATH}."));
                None
            }
            None => None,
        }
    };
    let mapping = RoleMapping {
        admin: parse_values("admin_values", &input.admin_values, &mut errors),
        operator: parse_values("operator_values", &input.operator_values, &mut errors),
        analyst: parse_values("analyst_values", &input.analyst_values, &mut errors),
    };
    if input.enabled && mapping.is_empty() {
        errors.push(
            "admin_values",
            "Map at least one Entra app role or group to a role before enabling: otherwise nobody can sign in.",
        );
    }
    match authority {
        Some(authority) if errors.is_empty() => Ok(SsoSettings {
            tenant_id,
            client_id,
            new_secret,
            authority,
            redirect_uri,
            mapping,
            enabled: input.enabled,
        }),
        _ => Err(errors),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::auth::Role;

    fn input() -> SsoInput {
        SsoInput {
            tenant_id: "4D1F9C2E-8B3A-4F6D-9E21-7C5A0B3D2E18".into(),
            client_id: "9b2c4e61-3f5a-4d8b-a7c9-1e0f2d3c4b5a".into(),
            client_secret: "s3cret".into(),
            admin_values: "EA.Admin, other\nEA.Admin".into(),
            analyst_values: "7f3e2a10-5c4b-4e8d-9a61-2b0c8d4f6e35".into(),
            enabled: true,
            ..Default::default()
        }
    }

    #[test]
    fn valid_settings_pass_and_normalize() {
        let s = validate(&input()).unwrap();
        assert_eq!(s.tenant_id, "4d1f9c2e-8b3a-4f6d-9e21-7c5a0b3d2e18");
        assert_eq!(s.authority.as_str(), "https://login.microsoftonline.com/");
        assert_eq!(s.mapping.admin, ["EA.Admin", "other"], "split and de-duplicated");
    }

    #[test]
    fn each_bad_field_gets_its_own_message() {
        let bad = SsoInput {
            tenant_id: "contoso.onmicrosoft.com".into(),
            client_id: "x".into(),
            client_secret: String::new(),
            authority: "http://login.example.com".into(),
            redirect_uri: "https://ea.example.com/elsewhere".into(),
            admin_values: String::new(),
            analyst_values: String::new(),
            enabled: true,
            ..Default::default()
        };
        let e = validate(&bad).unwrap_err();
        for f in ["tenant_id", "client_id", "authority", "redirect_uri", "admin_values"] {
            assert!(e.get(f).is_some(), "{f}: {}", e.summary());
        }
        let local = SsoInput { authority: "http://127.0.0.1:9090".into(), ..input() };
        assert!(validate(&local).is_ok(), "plain http is fine on loopback");
    }

    #[test]
    fn the_highest_mapped_role_wins_and_no_match_is_none() {
        let m = RoleMapping {
            admin: vec!["EA.Admin".into()],
            operator: vec!["EA.Operator".into()],
            analyst: vec!["7f3e2a10-5c4b-4e8d-9a61-2b0c8d4f6e35".into()],
        };
        assert_eq!(m.role_for(["ea.operator", "EA.Admin"]), Some(Role::Admin));
        assert_eq!(m.role_for(["7F3E2A10-5C4B-4E8D-9A61-2B0C8D4F6E35"]), Some(Role::Analyst));
        assert_eq!(m.role_for(["Something.Else"]), None);
        assert_eq!(m.role_for(std::iter::empty()), None);
    }
}
