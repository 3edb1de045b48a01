//! What the client talks to: the APIs it calls (for the limiter, the statistics and the
//! permissions each needs) and the hosts (`Target`).

use super::*;

/// The APIs the client calls; names match the simulator's counters.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Api {
    Token,
    ListMachines,
    /// One machine, `GET /api/machines/{id}`.
    GetMachine,
    ListMachineActions,
    GetMachineAction,
    Isolate,
    Unisolate,
    RunAntiVirusScan,
    RestrictCodeExecution,
    UnrestrictCodeExecution,
    CollectInvestigationPackage,
    /// Add or Remove Tag for Machine.
    MachineTags,
    GetPackageUri,
    ListAlerts,
    ListVulnerabilities,
    MachineVulnerabilities,
    MachinesVulnerabilities,
    ExportAssessmentJson,
    ExportAssessmentDelta,
    AdvancedQuery,
}

impl Api {
    /// Whether a 404 `ResourceNotFound` as the first answer means "nothing found" rather than
    /// a failure (see the pager): documented for the machine listing, and taken so for one
    /// machine's own records. The alert and machine-action listings document only 200; the
    /// sync keeps what it stored when they answer 404 (`sync::collect`).
    pub fn may_answer_none_with_404(self) -> bool {
        matches!(self, Api::ListMachines | Api::MachineVulnerabilities)
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Api::Token => "Token",
            Api::ListMachines => "ListMachines",
            Api::GetMachine => "GetMachine",
            Api::ListMachineActions => "ListMachineActions",
            Api::GetMachineAction => "GetMachineAction",
            Api::Isolate => "Isolate",
            Api::Unisolate => "Unisolate",
            Api::RunAntiVirusScan => "RunAntiVirusScan",
            Api::RestrictCodeExecution => "RestrictCodeExecution",
            Api::UnrestrictCodeExecution => "UnrestrictCodeExecution",
            Api::CollectInvestigationPackage => "CollectInvestigationPackage",
            Api::MachineTags => "MachineTags",
            Api::GetPackageUri => "GetPackageUri",
            Api::ListAlerts => "ListAlerts",
            Api::ListVulnerabilities => "ListVulnerabilities",
            Api::MachineVulnerabilities => "MachineVulnerabilities",
            Api::MachinesVulnerabilities => "MachinesVulnerabilities",
            Api::ExportAssessmentJson => "ExportAssessmentJson",
            Api::ExportAssessmentDelta => "ExportAssessmentDelta",
            Api::AdvancedQuery => "AdvancedQuery",
        }
    }

    /// Roles any one of which allows the call.
    pub fn roles(self) -> &'static [&'static str] {
        match self {
            Api::Token => &[],
            // GetPackageUri: the application permissions of
            // https://learn.microsoft.com/en-us/defender-endpoint/api/get-package-sas-uri.
            // https://learn.microsoft.com/en-us/defender-endpoint/api/get-machine-by-id
            Api::ListMachines | Api::GetMachine | Api::GetMachineAction | Api::GetPackageUri => {
                &["Machine.Read.All", "Machine.ReadWrite.All"]
            }
            // Microsoft's current page for the listing names only this one
            // (https://learn.microsoft.com/en-us/defender-endpoint/api/get-machineactions-collection).
            Api::ListMachineActions => &["Machine.ReadWrite.All"],
            Api::Isolate | Api::Unisolate => &["Machine.Isolate"],
            Api::RunAntiVirusScan => &["Machine.Scan"],
            // https://learn.microsoft.com/en-us/defender-endpoint/api/restrict-code-execution,
            // .../unrestrict-code-execution and .../collect-investigation-package.
            Api::RestrictCodeExecution | Api::UnrestrictCodeExecution => &["Machine.RestrictExecution"],
            Api::CollectInvestigationPackage => &["Machine.CollectForensics"],
            // https://learn.microsoft.com/en-us/defender-endpoint/api/add-or-remove-machine-tags
            // (application permission).
            Api::MachineTags => &["Machine.ReadWrite.All"],
            Api::ListAlerts => &["Alert.Read.All", "Alert.ReadWrite.All"],
            Api::ListVulnerabilities
            | Api::MachineVulnerabilities
            | Api::MachinesVulnerabilities
            | Api::ExportAssessmentJson
            | Api::ExportAssessmentDelta => &["Vulnerability.Read.All"],
            Api::AdvancedQuery => &["AdvancedQuery.Read.All"],
        }
    }
}

impl fmt::Display for Api {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Where to sign in and which API host to call.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Target {
    /// e.g. `https://login.microsoftonline.com` (the token URL is
    /// `{login}/{tenant}/oauth2/v2.0/token`).
    pub login_base_url: Url,
    /// e.g. `https://api.security.microsoft.com` (calls go to `{api}/api/...`).
    pub api_base_url: Url,
    /// e.g. `https://api.securitycenter.microsoft.com/.default`.
    pub scope: String,
}

impl Target {
    /// The cloud's standard hosts and scope.
    pub fn cloud(cloud: Cloud) -> Target {
        Target {
            login_base_url: Url::parse(cloud.login_base_url()).expect("static URL"),
            api_base_url: Url::parse(cloud.api_base_url()).expect("static URL"),
            scope: cloud.scope().to_string(),
        }
    }

    /// Commercial cloud with a geo API host (`us`, `eu`, `uk`, `au`, `swa`, `ina`); `None`
    /// region = the global host. Other clouds have no regional hosts.
    pub fn cloud_region(cloud: Cloud, region: Option<&str>) -> Result<Target, DefenderError> {
        let mut t = Target::cloud(cloud);
        if let Some(r) = region.map(str::trim).filter(|r| !r.is_empty()) {
            let base = cloud.regional_api_base_url(r).ok_or_else(|| {
                DefenderError::InvalidArgument(format!(
                    "Unknown API region '{r}' for the {} cloud (allowed: {}).",
                    cloud.label(),
                    if cloud == Cloud::Commercial {
                        super::cloud::COMMERCIAL_REGIONS.join(", ")
                    } else {
                        "none".into()
                    }
                ))
            })?;
            t.api_base_url = Url::parse(&base).expect("static URL");
        }
        Ok(t)
    }

    /// Explicit URLs (tests, simulator, private deployments). `scope` defaults to the
    /// commercial MDE scope. URLs must be http(s) with a host and no query/fragment.
    pub fn custom(login_base_url: &str, api_base_url: &str, scope: Option<&str>) -> Result<Target, DefenderError> {
        let parse = |what: &str, s: &str| -> Result<Url, DefenderError> {
            let u = Url::parse(s.trim())
                .map_err(|e| DefenderError::InvalidArgument(format!("The {what} URL is not valid: {e}.")))?;
            if !matches!(u.scheme(), "http" | "https")
                || u.host_str().is_none()
                || u.query().is_some()
                || u.fragment().is_some()
                || !u.username().is_empty()
                || u.password().is_some()
            {
                return Err(DefenderError::InvalidArgument(format!(
                    "The {what} URL must be http(s)://host[:port][/path] without credentials, query or fragment."
                )));
            }
            Ok(u)
        };
        let scope = scope.map(str::trim).filter(|s| !s.is_empty()).unwrap_or(super::cloud::COMMERCIAL_SCOPE);
        Ok(Target {
            login_base_url: parse("sign-in", login_base_url)?,
            api_base_url: parse("API", api_base_url)?,
            scope: scope.to_string(),
        })
    }

    pub(super) fn token_url(&self, tenant: &str) -> Result<Url, DefenderError> {
        let mut u = self.login_base_url.clone();
        {
            let mut seg = u
                .path_segments_mut()
                .map_err(|_| DefenderError::InvalidArgument("The sign-in URL cannot be a base.".into()))?;
            seg.pop_if_empty().push(tenant).push("oauth2").push("v2.0").push("token");
        }
        Ok(u)
    }

    /// `{api base}{path}?{query}`; `query` is already encoded.
    pub(super) fn api_url(&self, path: &str, query: &str) -> Result<Url, DefenderError> {
        let base = self.api_base_url.as_str().trim_end_matches('/');
        let s = if query.is_empty() { format!("{base}{path}") } else { format!("{base}{path}?{query}") };
        Url::parse(&s).map_err(|e| DefenderError::InvalidArgument(format!("bad API URL: {e}")))
    }

    /// Same scheme, host and port as the API base, and under its path.
    pub(super) fn same_origin(&self, link: &Url) -> bool {
        let b = &self.api_base_url;
        link.scheme() == b.scheme()
            && link.host_str().map(str::to_ascii_lowercase) == b.host_str().map(str::to_ascii_lowercase)
            && link.port_or_known_default() == b.port_or_known_default()
            && link.path().starts_with(b.path().trim_end_matches('/'))
            && link.username().is_empty()
            && link.password().is_none()
    }
}
