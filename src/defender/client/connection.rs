//! Test Connection: a fresh token, its roles against the permissions the product uses, and one
//! real API call.

use super::*;

/// One permission the product needs, and whether the token grants it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct PermissionCheck {
    /// e.g. `Machine.Read.All or Machine.ReadWrite.All`.
    pub permission: String,
    /// Roles any one of which satisfies it.
    pub accepted: Vec<String>,
    /// What the product uses it for.
    pub used_for: String,
    /// The role that grants it, if any.
    pub granted_by: Option<String>,
}

impl PermissionCheck {
    pub fn granted(&self) -> bool {
        self.granted_by.is_some()
    }
}

/// Outcome of [`DefenderClient::test_connection`] once a token was obtained.
#[derive(Debug, Clone, PartialEq)]
pub struct ConnectionReport {
    /// The token's `roles` claim.
    pub roles: Vec<String>,
    /// Tenant (`tid`) and audience (`aud`) of the token, when present.
    pub token_tenant: Option<String>,
    pub token_audience: Option<String>,
    pub token_expires_in_secs: Option<u64>,
    /// Every permission of the spec, granted or not.
    pub permissions: Vec<PermissionCheck>,
    /// Labels of the missing ones (e.g. `Machine.Scan`).
    pub missing: Vec<String>,
    /// The one real API call (`GET /api/machines?$top=1`): number of machines returned, or
    /// why it failed.
    pub api_call: Result<usize, DefenderError>,
}

impl ConnectionReport {
    /// Token obtained, the API call worked and nothing is missing.
    pub fn all_good(&self) -> bool {
        self.api_call.is_ok() && self.missing.is_empty()
    }
}

/// The permissions the spec lists: (label, accepted roles, used for).
pub const REQUIRED_PERMISSIONS: &[(&str, &[&str], &str)] = &[
    (
        "Machine.Read.All or Machine.ReadWrite.All",
        &["Machine.Read.All", "Machine.ReadWrite.All"],
        "machine inventory and machine action status",
    ),
    ("Alert.Read.All or Alert.ReadWrite.All", &["Alert.Read.All", "Alert.ReadWrite.All"], "alerts (risk level)"),
    ("Machine.Isolate", &["Machine.Isolate"], "isolate and release devices"),
    ("Machine.Scan", &["Machine.Scan"], "antivirus scans"),
    ("Vulnerability.Read.All", &["Vulnerability.Read.All"], "vulnerabilities (exposure level)"),
    ("AdvancedQuery.Read.All", &["AdvancedQuery.Read.All"], "advanced hunting queries"),
    ("Software.Read.All", &["Software.Read.All"], "software and devices by software"),
];

impl DefenderClient {
    /// Get a fresh token, report its roles against the spec's permissions, and make one real
    /// API call (`GET /api/machines?$top=1`). Token failures are `Err`; an API failure is
    /// reported in [`ConnectionReport::api_call`].
    pub async fn test_connection(&self) -> Result<ConnectionReport, DefenderError> {
        let token = {
            let mut guard = self.inner.token.lock().await;
            let t = Arc::new(self.fetch_token().await?);
            *guard = Some(t.clone());
            t
        };
        let permissions: Vec<PermissionCheck> = REQUIRED_PERMISSIONS
            .iter()
            .map(|(label, accepted, used_for)| PermissionCheck {
                permission: label.to_string(),
                accepted: accepted.iter().map(|s| s.to_string()).collect(),
                used_for: used_for.to_string(),
                granted_by: accepted.iter().find(|r| token.roles.iter().any(|t| t == *r)).map(|s| s.to_string()),
            })
            .collect();
        let missing = permissions.iter().filter(|p| !p.granted()).map(|p| p.permission.clone()).collect();
        let api_call = match self.inner.target.api_url("/api/machines", "$top=1&$skip=0") {
            Ok(url) => self
                .request(Api::ListMachines, Method::GET, url, None, true)
                .await
                .and_then(|a| decode_page::<Machine>(Api::ListMachines, &a.body))
                .map(|p| p.items.len())
                .or_else(|e| match e {
                    DefenderError::NotFound => Ok(0),
                    e => Err(e),
                }),
            Err(e) => Err(e),
        };
        let claim = |k: &str| token.claims.as_ref().and_then(|c| c.get(k)).and_then(Value::as_str).map(str::to_string);
        Ok(ConnectionReport {
            roles: token.roles.clone(),
            token_tenant: claim("tid"),
            token_audience: claim("aud"),
            token_expires_in_secs: token.expires_in_secs,
            permissions,
            missing,
            api_call,
        })
    }
}
