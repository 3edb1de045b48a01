//! Credentials, the secret wrapper, and Entra token responses/errors (defender-api.md §1).

use std::fmt;

use base64::Engine;
use serde::Deserialize;
use serde_json::Value;

use super::error::DefenderError;

/// A client secret. `Debug` and `Display` print `***`; read it with [`Secret::expose`].
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(String);

impl Secret {
    pub fn new(value: impl Into<String>) -> Secret {
        Secret(value.into())
    }
    /// The secret value, for the token request only.
    pub fn expose(&self) -> &str {
        &self.0
    }
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

impl From<String> for Secret {
    fn from(s: String) -> Self {
        Secret(s)
    }
}

impl From<&str> for Secret {
    fn from(s: &str) -> Self {
        Secret(s.to_string())
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("***")
    }
}

impl fmt::Display for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("***")
    }
}

/// App registration credentials (client-credentials flow).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Credentials {
    /// Directory (tenant) id – a GUID – or a verified domain name.
    pub tenant_id: String,
    /// Application (client) id.
    pub client_id: String,
    pub client_secret: Secret,
}

/// Tenant ids are GUIDs or DNS names; anything else is refused before a request is made.
pub(crate) fn valid_tenant(t: &str) -> bool {
    !t.is_empty()
        && t.len() <= 253
        && t.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'.')
        && !t.starts_with(['.', '-'])
        && !t.ends_with(['.', '-'])
}

/// Successful token response; `expires_in` is a number (v2) or a string (v1).
#[derive(Deserialize)]
pub(crate) struct TokenResponse {
    pub access_token: String,
    #[serde(default)]
    pub expires_in: Option<Value>,
}

impl TokenResponse {
    pub fn expires_in_secs(&self) -> Option<u64> {
        let secs: u64 = match self.expires_in.as_ref()? {
            Value::Number(n) => n.as_u64().or_else(|| n.as_f64().map(|f| f.max(0.0) as u64))?,
            Value::String(s) => s.trim().parse().ok()?,
            _ => return None,
        };
        // Entra's access tokens live 60 to 90 minutes; a day bounds what a broken or hostile
        // sign-in host can claim (a lifetime near u64::MAX would overflow the refresh time).
        Some(secs.min(MAX_TOKEN_LIFETIME_SECS))
    }
}

/// The longest token lifetime the client believes.
pub const MAX_TOKEN_LIFETIME_SECS: u64 = 86_400;

/// Entra error body.
#[derive(Deserialize, Default)]
#[serde(default)]
pub(crate) struct TokenErrorBody {
    pub error: Option<String>,
    pub error_description: Option<String>,
    pub error_codes: Vec<u64>,
}

impl TokenErrorBody {
    /// The AADSTS number: `error_codes[0]`, else parsed from the description.
    pub fn aadsts(&self) -> Option<u64> {
        if let Some(c) = self.error_codes.first() {
            return Some(*c);
        }
        let d = self.error_description.as_deref()?;
        let rest = &d[d.find("AADSTS")? + 6..];
        let digits: String = rest.chars().take_while(|c| c.is_ascii_digit()).collect();
        digits.parse().ok()
    }

    /// First line of the description (drops trace/correlation ids and timestamps), whole: the
    /// client's `tidy` scrubs it before cutting it, so that a secret echoed across the cut
    /// cannot leave its head behind.
    pub fn summary(&self) -> String {
        self.error_description.as_deref().unwrap_or_default().lines().next().unwrap_or_default().trim().to_owned()
    }
}

/// What a token-endpoint error means: a typed configuration error, or `None` when it is
/// transient and worth retrying.
pub(crate) fn classify_token_error(status: u16, body: &TokenErrorBody) -> Option<DefenderError> {
    let error = body.error.as_deref().unwrap_or_default();
    match body.aadsts() {
        Some(90002) | Some(900023) | Some(90092) => return Some(DefenderError::UnknownTenant),
        Some(700016) => return Some(DefenderError::UnknownClient),
        Some(7000215) | Some(7000218) => return Some(DefenderError::WrongSecret),
        Some(7000222) => return Some(DefenderError::ExpiredSecret),
        Some(70011) | Some(700022) => return Some(DefenderError::InvalidScope),
        Some(500011) | Some(65001) => return Some(DefenderError::ConsentMissing),
        _ => {}
    }
    match error {
        "unauthorized_client" => Some(DefenderError::UnknownClient),
        "invalid_client" => Some(DefenderError::WrongSecret),
        "invalid_scope" => Some(DefenderError::InvalidScope),
        "invalid_resource" => Some(DefenderError::ConsentMissing),
        "temporarily_unavailable" => None,
        _ if status == 429 || status >= 500 => None,
        _ => Some(DefenderError::Api {
            status,
            // Scrubbed and cut by the caller (`tidy`), like every sign-in error.
            code: if error.is_empty() { "token_error".into() } else { error.to_owned() },
            message: body.summary(),
        }),
    }
}

/// The payload of a JWT (base64url JSON between the first two dots); no signature check – the
/// API checks the token, we only read the `roles` claim to explain permissions.
pub(crate) fn jwt_claims(token: &str) -> Option<Value> {
    let payload = token.split('.').nth(1)?;
    let bytes = base64::engine::general_purpose::URL_SAFE_NO_PAD.decode(payload.trim_end_matches('=')).ok()?;
    serde_json::from_slice(&bytes).ok()
}

/// The `roles` claim (empty when absent: Entra omits it when nothing is granted).
pub(crate) fn roles_of(claims: Option<&Value>) -> Vec<String> {
    claims
        .and_then(|c| c.get("roles"))
        .and_then(Value::as_array)
        .map(|a| a.iter().filter_map(|v| v.as_str().map(str::to_string)).collect())
        .unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    /// A lifetime near u64::MAX from a broken or hostile sign-in host overflowed the refresh time
    /// and panicked the task that asked for the token (red-team review).
    #[test]
    fn an_absurd_token_lifetime_is_capped() {
        for expires_in in [json!(1e19), json!("18446744073709551615"), json!(u64::MAX)] {
            let tr: TokenResponse =
                serde_json::from_value(json!({"access_token": "x", "expires_in": expires_in})).unwrap();
            assert_eq!(tr.expires_in_secs(), Some(MAX_TOKEN_LIFETIME_SECS));
        }
        let tr: TokenResponse = serde_json::from_value(json!({"access_token": "x", "expires_in": 3599})).unwrap();
        assert_eq!(tr.expires_in_secs(), Some(3599));
    }

    #[test]
    fn secret_is_never_printed() {
        let c =
            Credentials { tenant_id: "t".into(), client_id: "c".into(), client_secret: Secret::new("s3cr3t-value") };
        let dbg = format!("{c:?} {}", c.client_secret);
        assert!(!dbg.contains("s3cr3t"), "{dbg}");
        assert!(dbg.contains("***"));
    }

    #[test]
    fn token_errors() {
        let body = |v: Value| serde_json::from_value::<TokenErrorBody>(v).unwrap();
        let e = body(
            json!({"error": "invalid_client", "error_description": "AADSTS7000222: The provided client secret keys are expired.\r\nTrace ID: x", "error_codes": [7000222]}),
        );
        assert_eq!(classify_token_error(401, &e), Some(DefenderError::ExpiredSecret));
        assert_eq!(e.summary(), "AADSTS7000222: The provided client secret keys are expired.");
        let e = body(json!({"error": "invalid_request", "error_description": "AADSTS90002: Tenant 'x' not found."}));
        assert_eq!(e.aadsts(), Some(90002));
        assert_eq!(classify_token_error(400, &e), Some(DefenderError::UnknownTenant));
        let e = body(json!({"error": "unauthorized_client", "error_codes": [700016]}));
        assert_eq!(classify_token_error(400, &e), Some(DefenderError::UnknownClient));
        let e = body(json!({"error": "temporarily_unavailable", "error_codes": [90033]}));
        assert_eq!(classify_token_error(503, &e), None);
        assert_eq!(classify_token_error(500, &TokenErrorBody::default()), None);
    }

    #[test]
    fn expires_in_number_or_string() {
        let t: TokenResponse = serde_json::from_value(json!({"access_token": "a", "expires_in": 3599})).unwrap();
        assert_eq!(t.expires_in_secs(), Some(3599));
        let t: TokenResponse = serde_json::from_value(json!({"access_token": "a", "expires_in": "3599"})).unwrap();
        assert_eq!(t.expires_in_secs(), Some(3599));
    }

    #[test]
    fn claims_and_tenants() {
        let payload = base64::engine::general_purpose::URL_SAFE_NO_PAD
            .encode(br#"{"roles":["Machine.Read.All","Machine.Isolate"],"tid":"t"}"#);
        let tok = format!("eyJhbGciOiJIUzI1NiJ9.{payload}.sig");
        let roles = roles_of(jwt_claims(&tok).as_ref());
        assert_eq!(roles, vec!["Machine.Read.All", "Machine.Isolate"]);
        assert!(roles_of(None).is_empty());
        assert!(valid_tenant("4d1f9c2e-8b3a-4f6d-9e21-7c5a0b3d2e18"));
        assert!(valid_tenant("contoso.onmicrosoft.com"));
        assert!(!valid_tenant("../x"));
        assert!(!valid_tenant("a/b"));
        assert!(!valid_tenant(""));
    }
}
