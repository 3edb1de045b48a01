//! Test Connection: a fresh token, its roles against the permissions the product uses, and one
//! real API call.

use super::*;

/// One permission of the Defender API, whether the product needs it, and whether the token grants it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct PermissionCheck {
    /// e.g. `Machine.Read.All or Machine.ReadWrite.All`.
    pub permission: String,
    /// Roles any one of which satisfies it.
    pub accepted: Vec<String>,
    /// What the product uses it for.
    pub used_for: String,
    /// Used by the sync or by the machine actions (which are always offered): without it
    /// something fails. An optional one is used by no feature of this version.
    pub required: bool,
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
    /// The resource the token was requested for: the scope without `/.default`.
    pub requested_audience: String,
    /// The API host the client calls (`scheme://host[:port]`).
    pub api_host: String,
    pub token_expires_in_secs: Option<u64>,
    /// Every permission of the API the product knows, required or optional, granted or not.
    pub permissions: Vec<PermissionCheck>,
    /// Labels of the missing *required* ones (e.g. `Machine.Scan`).
    pub missing: Vec<String>,
    /// Labels of the optional ones that are not granted (nothing of this version needs them).
    pub optional_missing: Vec<String>,
    /// The one real API call (`GET /api/machines?$top=1`): number of machines returned, or
    /// why it failed.
    pub api_call: Result<usize, DefenderError>,
}

impl ConnectionReport {
    /// Token obtained, the API call worked and no required permission is missing.
    pub fn all_good(&self) -> bool {
        self.api_call.is_ok() && self.missing.is_empty()
    }

    /// Whether the token's `aud` is the resource it was requested for (`None`: the token does
    /// not say). Microsoft does not document the Gov clouds' resource, so a token for another
    /// audience is the first thing to look at when a Gov tenant's calls are refused.
    pub fn audience_matches(&self) -> Option<bool> {
        let norm = |s: &str| s.trim().trim_end_matches('/').to_ascii_lowercase();
        self.token_audience.as_deref().map(|aud| norm(aud) == norm(&self.requested_audience))
    }
}

/// A permission of the Defender API: label, roles any one of which grants it, what it is used
/// for, and whether the product needs it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Permission {
    pub label: &'static str,
    pub accepted: &'static [&'static str],
    pub used_for: &'static str,
    pub required: bool,
}

/// The permissions `docs/defender-api.md` lists. Required: what the sync calls (machines,
/// machine actions' status, alerts, vulnerabilities) and the machine actions, which the product
/// always offers (there is no setting that turns them off). Optional: advanced hunting and
/// software inventory, which no feature of this version calls (no `Api` needs them, checked by a
/// test), so a tenant that does not grant them loses nothing.
pub const PERMISSIONS: &[Permission] = &[
    Permission {
        label: "Machine.Read.All or Machine.ReadWrite.All",
        accepted: &["Machine.Read.All", "Machine.ReadWrite.All"],
        used_for: "machine inventory (sync) and machine action status",
        required: true,
    },
    // Isolation is read from the machine-actions listing on every sync, and Microsoft's current
    // page for that listing names only this permission
    // (https://learn.microsoft.com/en-us/defender-endpoint/api/get-machineactions-collection).
    Permission {
        label: "Machine.ReadWrite.All",
        accepted: &["Machine.ReadWrite.All"],
        used_for: "isolation state (sync: Microsoft's page for the machine-actions listing names only this permission), \
                   and the tags the product writes (profiles' tags, rules' tags)",
        required: true,
    },
    Permission {
        label: "Alert.Read.All or Alert.ReadWrite.All",
        accepted: &["Alert.Read.All", "Alert.ReadWrite.All"],
        used_for: "alerts (sync, risk level)",
        required: true,
    },
    Permission {
        label: "Machine.Isolate",
        accepted: &["Machine.Isolate"],
        used_for: "isolate and release devices",
        required: true,
    },
    Permission { label: "Machine.Scan", accepted: &["Machine.Scan"], used_for: "antivirus scans", required: true },
    Permission {
        label: "Machine.RestrictExecution",
        accepted: &["Machine.RestrictExecution"],
        used_for: "restrict app execution and remove the restriction",
        required: true,
    },
    Permission {
        label: "Machine.CollectForensics",
        accepted: &["Machine.CollectForensics"],
        used_for: "collect investigation packages",
        required: true,
    },
    Permission {
        label: "Vulnerability.Read.All",
        accepted: &["Vulnerability.Read.All"],
        used_for: "vulnerabilities (sync, exposure level)",
        required: true,
    },
    Permission {
        label: "AdvancedQuery.Read.All",
        accepted: &["AdvancedQuery.Read.All"],
        used_for: "advanced hunting queries, which no feature of this version runs",
        required: false,
    },
    Permission {
        label: "Software.Read.All",
        accepted: &["Software.Read.All"],
        used_for: "software inventory, which no feature of this version reads",
        required: false,
    },
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
        let permissions: Vec<PermissionCheck> = PERMISSIONS
            .iter()
            .map(|p| PermissionCheck {
                permission: p.label.to_string(),
                accepted: p.accepted.iter().map(|s| s.to_string()).collect(),
                used_for: p.used_for.to_string(),
                required: p.required,
                granted_by: p.accepted.iter().find(|r| token.roles.iter().any(|t| t == *r)).map(|s| s.to_string()),
            })
            .collect();
        let not_granted = |required: bool| {
            permissions
                .iter()
                .filter(|p| p.required == required && !p.granted())
                .map(|p| p.permission.clone())
                .collect()
        };
        let (missing, optional_missing) = (not_granted(true), not_granted(false));
        let api = &self.inner.target.api_base_url;
        let api_host = api[..url::Position::AfterPort].to_owned();
        let requested_audience = self.inner.target.scope.trim_end_matches("/.default").to_owned();
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
            requested_audience,
            api_host,
            token_expires_in_secs: token.expires_in_secs,
            permissions,
            missing,
            optional_missing,
            api_call,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every role an API the client calls needs is in a required permission, and nothing the
    /// client calls needs an optional one: "required" is what is used.
    #[test]
    fn required_is_what_the_client_calls() {
        let used = [
            Api::ListMachines,
            Api::GetMachine,
            Api::ListMachineActions,
            Api::GetMachineAction,
            Api::Isolate,
            Api::Unisolate,
            Api::RunAntiVirusScan,
            Api::RestrictCodeExecution,
            Api::UnrestrictCodeExecution,
            Api::CollectInvestigationPackage,
            Api::GetPackageUri,
            Api::ListAlerts,
            Api::ListVulnerabilities,
            Api::MachineVulnerabilities,
            Api::MachinesVulnerabilities,
            Api::ExportAssessmentJson,
            Api::ExportAssessmentDelta,
        ];
        for api in used {
            let p = PERMISSIONS.iter().find(|p| p.accepted == api.roles()).unwrap_or_else(|| panic!("{api}"));
            assert!(p.required, "{api} needs {}", p.label);
        }
        for p in PERMISSIONS.iter().filter(|p| !p.required) {
            assert!(!used.iter().any(|a| a.roles().iter().any(|r| p.accepted.contains(r))), "{}", p.label);
        }
        assert_eq!(PERMISSIONS.iter().filter(|p| !p.required).count(), 2);
    }
}
