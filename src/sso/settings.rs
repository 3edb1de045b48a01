//! Entra sign-in settings: the mapping of Entra app roles and groups to our roles, whether a
//! stored secret may be kept, and storage with the client secret sealed (never returned). The
//! form is checked in `web::forms::sso`.

use url::Url;

use crate::auth::Role;
use crate::db::AnyConnection;
use crate::db::models::sso::{self, SsoConfig};
use crate::db::now;
use crate::defender::settings::SecretNeeded;
use crate::secrets::SecretBox;

pub const NAME: &str = "entra";
/// Associated data of the sealed secret: a ciphertext made for another use does not open here.
const SECRET_PURPOSE: &str = "sso:entra:client_secret";
pub const DEFAULT_AUTHORITY: &str = "https://login.microsoftonline.com";
/// Where Entra sends people back; the redirect URI registered in Entra ends with it.
pub const CALLBACK_PATH: &str = "/login/entra/callback";

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

    /// Whether these settings may keep the stored secret (none typed): only when one is stored
    /// for exactly this authority, tenant and client — it is never sent anywhere else.
    pub fn keeps_secret_of(&self, stored: Option<&SsoConfig>) -> Result<(), SecretNeeded> {
        match stored {
            _ if self.new_secret.is_some() => Ok(()),
            Some(c) if c.secret_ciphertext.is_some() => {
                let saved_for = (c.tenant_id.as_str(), c.client_id.as_str(), c.authority.trim_end_matches('/'));
                if saved_for == self.destination() { Ok(()) } else { Err(SecretNeeded::SavedElsewhere) }
            }
            _ => Err(SecretNeeded::NoneStored),
        }
    }
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
