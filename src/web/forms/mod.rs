//! Settings forms, checked in one place for the Defender integration and Entra sign-in alike:
//! what an administrator typed (on a page or as the JSON of the API) becomes validated settings,
//! or a message beside each field that is wrong. Whether a stored secret may be kept is the
//! services' decision (it depends on what is stored), told back as [`FieldErrors::secret_needed`].

pub mod defender;
pub mod sso;

use url::Url;

use crate::defender::settings::SecretNeeded;
use crate::domain::ids::is_guid;

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
    pub fn push(&mut self, field: &'static str, message: impl Into<String>) {
        self.0.push((field, message.into()));
    }

    /// The services refused to keep the stored secret: the message goes beside the secret.
    pub fn secret_needed(why: SecretNeeded) -> Self {
        FieldErrors(vec![("client_secret", why.message().to_owned())])
    }

    /// These errors, and the secret's when the services say one must be typed.
    pub fn and_secret(mut self, needed: Option<SecretNeeded>) -> Self {
        if let Some(why) = needed
            && self.get("client_secret").is_none()
        {
            self.push("client_secret", why.message());
        }
        self
    }

    /// The application (client) ID of an Entra app registration (Defender's and sign-in's).
    fn client_id(&mut self, input: &str) -> String {
        let client_id = input.trim().to_lowercase();
        if !is_guid(&client_id) {
            self.push(
                "client_id",
                "Enter the application (client) ID: a GUID shown on the app registration's overview.",
            );
        }
        client_id
    }

    /// A newly typed client secret, or `None` for an empty field (keep the stored one, if the
    /// services may).
    fn new_secret(&mut self, input: &str) -> Option<String> {
        let secret = input.trim();
        if secret.is_empty() {
            None
        } else if secret.len() > 1024 || secret.chars().any(char::is_control) {
            self.push("client_secret", "This does not look like a client secret value.");
            None
        } else {
            Some(secret.to_owned())
        }
    }
}

/// A server's address as settings take it: a host, and no credentials, query or fragment (they
/// would leak into logs or change every request).
fn is_plain_address(u: &Url) -> bool {
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
fn secret_address(field: &'static str, s: &str, errors: &mut FieldErrors) -> Option<Url> {
    match Url::parse(s.trim()) {
        Ok(u) if (u.scheme() == "https" || (u.scheme() == "http" && is_loopback(&u))) && is_plain_address(&u) => {
            Some(u)
        }
        _ => {
            errors.push(
                field,
                "Enter an absolute https address without credentials or query (plain http only for localhost).",
            );
            None
        }
    }
}

/// An HTML form's fields in order; a checkbox is sent only when ticked (`on`).
fn checked(v: &str) -> bool {
    matches!(v, "on" | "true" | "1")
}
