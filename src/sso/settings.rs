//! Entra sign-in settings: validation of what an administrator typed (messages per field),
//! the mapping of Entra app roles and groups to our roles, and storage with the client secret
//! sealed (never returned).

use url::Url;

use crate::auth::Role;
use crate::db::AnyConnection;
use crate::db::models::sso::{self, SsoConfig};
use crate::db::now;
pub use crate::defender::settings::FieldErrors;
use crate::defender::settings::{StoredSecret, secret_address};
use crate::domain::ids::is_guid;
use crate::secrets::SecretBox;

pub const NAME: &str = "entra";
/// Associated data of the sealed secret: a ciphertext made for another use does not open here.
const SECRET_PURPOSE: &str = "sso:entra:client_secret";
pub const DEFAULT_AUTHORITY: &str = "https://login.microsoftonline.com";
/// Where Entra sends people back; the redirect URI registered in Entra ends with it.
pub const CALLBACK_PATH: &str = "/login/entra/callback";

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

/// Which Entra app role values or group object ids give which role. Compared without regard
/// to case (group ids are GUIDs; app role values are unique per app anyway).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct RoleMapping {
    pub admin: Vec<String>,
    pub operator: Vec<String>,
    pub analyst: Vec<String>,
}

impl RoleMapping {
    pub fn from_config(c: &SsoConfig) -> Self {
        let list = |s: &str| s.lines().map(str::to_owned).filter(|l| !l.is_empty()).collect();
        Self { admin: list(&c.admin_values), operator: list(&c.operator_values), analyst: list(&c.analyst_values) }
    }

    /// The highest role any of the person's app roles or groups maps to.
    pub fn role_for<'a>(&self, values: impl IntoIterator<Item = &'a str> + Clone) -> Option<Role> {
        let has = |list: &[String]| values.clone().into_iter().any(|v| list.iter().any(|m| m.eq_ignore_ascii_case(v)));
        [(Role::Admin, &self.admin), (Role::Operator, &self.operator), (Role::Analyst, &self.analyst)]
            .into_iter()
            .find(|(_, list)| has(list))
            .map(|(r, _)| r)
    }

    pub fn is_empty(&self) -> bool {
        self.admin.is_empty() && self.operator.is_empty() && self.analyst.is_empty()
    }
}

/// App role values and group ids typed one a line (commas and spaces also separate: neither
/// may appear in an app role value).
fn parse_values(field: &'static str, text: &str, errors: &mut FieldErrors) -> Vec<String> {
    let mut out: Vec<String> = Vec::new();
    for v in text.split(|c: char| c == ',' || c.is_whitespace()).filter(|v| !v.is_empty()) {
        if v.len() > 120 || v.chars().any(|c| c.is_control()) {
            errors.0.push((field, "An app role value or group object id has at most 120 characters.".into()));
            return out;
        }
        if !out.iter().any(|o| o.eq_ignore_ascii_case(v)) {
            out.push(v.to_owned());
        }
    }
    out
}

/// Settings that passed validation.
#[derive(Debug, Clone)]
pub struct SsoSettings {
    pub tenant_id: String,
    pub client_id: String,
    /// A new secret typed in this request; `None` keeps the stored one.
    pub new_secret: Option<String>,
    pub authority: Url,
    pub redirect_uri: Option<Url>,
    pub mapping: RoleMapping,
    pub enabled: bool,
}

impl SsoSettings {
    /// Where the client secret travels: the tenant and client at the authority.
    fn destination(&self) -> (&str, &str, &str) {
        (&self.tenant_id, &self.client_id, self.authority.as_str().trim_end_matches('/'))
    }
}

/// Validates what an administrator typed against what is stored: a new secret is needed when
/// none is stored, or when the authority, tenant or client differ from those the stored secret
/// was saved for (it is never sent anywhere else).
pub fn validate(input: &SsoInput, stored: Option<&SsoConfig>) -> Result<SsoSettings, FieldErrors> {
    let mut errors = FieldErrors::default();
    let tenant_id = input.tenant_id.trim().to_lowercase();
    if !is_guid(&tenant_id) {
        errors.0.push((
            "tenant_id",
            "Enter the directory (tenant) ID as a GUID such as 72f988bf-86f1-41af-91ab-2d7cd011db47: ID tokens name the tenant by it.".into(),
        ));
    }
    let client_id = errors.client_id(&input.client_id);
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
                errors.0.push(("redirect_uri", format!("The redirect URI ends with {CALLBACK_PATH}.")));
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
        errors.0.push((
            "admin_values",
            "Map at least one Entra app role or group to a role before enabling: otherwise nobody can sign in.".into(),
        ));
    }
    let Some(authority) = authority else {
        errors.client_secret(&input.client_secret, StoredSecret::None);
        return Err(errors);
    };
    let mut s = SsoSettings {
        tenant_id,
        client_id,
        new_secret: None,
        authority,
        redirect_uri,
        mapping,
        enabled: input.enabled,
    };
    let kept = match stored {
        Some(c) if c.secret_ciphertext.is_some() => {
            if (c.tenant_id.as_str(), c.client_id.as_str(), c.authority.trim_end_matches('/')) == s.destination() {
                StoredSecret::SavedForThis
            } else {
                StoredSecret::SavedElsewhere
            }
        }
        _ => StoredSecret::None,
    };
    s.new_secret = errors.client_secret(&input.client_secret, kept);
    if errors.is_empty() { Ok(s) } else { Err(errors) }
}

pub fn load(conn: &mut AnyConnection) -> crate::db::DbResult<Option<SsoConfig>> {
    sso::get(conn, NAME)
}

pub fn save(conn: &mut AnyConnection, secrets: &SecretBox, s: &SsoSettings, by: &str) -> anyhow::Result<()> {
    let stored = load(conn)?.and_then(|o| o.secret_ciphertext);
    let secret_ciphertext =
        secrets.seal_or_keep(SECRET_PURPOSE, &destination_key(s.destination()), s.new_secret.as_deref(), stored)?;
    let join = |v: &[String]| v.join("\n");
    sso::save(
        conn,
        &SsoConfig {
            name: NAME.into(),
            tenant_id: s.tenant_id.clone(),
            client_id: s.client_id.clone(),
            secret_ciphertext,
            authority: s.authority.as_str().trim_end_matches('/').to_owned(),
            redirect_uri: s.redirect_uri.as_ref().map(|u| u.to_string()).unwrap_or_default(),
            admin_values: join(&s.mapping.admin),
            operator_values: join(&s.mapping.operator),
            analyst_values: join(&s.mapping.analyst),
            enabled: s.enabled,
            updated_at: now(),
            updated_by: by.to_owned(),
        },
    )?;
    Ok(())
}

/// The text a sealed secret is bound to: it opens only for the authority, tenant and client it
/// was saved for.
fn destination_key((tenant, client, authority): (&str, &str, &str)) -> String {
    format!("{tenant}|{client}|{authority}")
}

pub fn stored_secret(secrets: &SecretBox, c: &SsoConfig) -> anyhow::Result<String> {
    let sealed = c.secret_ciphertext.as_deref().ok_or_else(|| anyhow::anyhow!("no client secret is stored"))?;
    let destination = destination_key((&c.tenant_id, &c.client_id, c.authority.trim_end_matches('/')));
    secrets.open_for(SECRET_PURPOSE, &destination, sealed).map_err(|_| {
        anyhow::anyhow!(
            "the stored client secret was not saved for these settings (or the master key changed): an administrator \
             must enter it again"
        )
    })
}

/// What changed, for the audit log (never the secret itself).
pub fn describe_change(old: Option<&SsoConfig>, s: &SsoSettings) -> String {
    let mut parts = vec![
        format!("tenant {}", s.tenant_id),
        format!("client {}", s.client_id),
        format!("authority {}", s.authority.as_str().trim_end_matches('/')),
        format!(
            "mapping admin [{}] operator [{}] analyst [{}]",
            s.mapping.admin.join(", "),
            s.mapping.operator.join(", "),
            s.mapping.analyst.join(", ")
        ),
        if s.enabled { "enabled".into() } else { "disabled".into() },
    ];
    if s.new_secret.is_some() {
        parts.push(
            if old.is_some_and(|o| o.secret_ciphertext.is_some()) { "secret replaced" } else { "secret set" }.into(),
        );
    }
    parts.join("; ")
}

#[cfg(test)]
mod tests {
    use super::*;

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
        let s = validate(&input(), None).unwrap();
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
        let e = validate(&bad, None).unwrap_err();
        for f in ["tenant_id", "client_id", "client_secret", "authority", "redirect_uri", "admin_values"] {
            assert!(e.get(f).is_some(), "{f}: {}", e.summary());
        }
        let local = SsoInput { authority: "http://127.0.0.1:9090".into(), ..input() };
        assert!(validate(&local, None).is_ok(), "plain http is fine on loopback");
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
