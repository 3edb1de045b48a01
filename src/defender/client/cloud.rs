//! Microsoft clouds the Defender for Endpoint API is offered in, and their hosts.
//!
//! Sources (see `docs/defender-api.md` §1.3, §2, §6 and `docs/defender-behaviour-research.md` §4):
//! * Commercial: sign-in `https://login.microsoftonline.com`, API `https://api.security.microsoft.com`
//!   (current base; `api.securitycenter.microsoft.com` still works), scope
//!   `https://api.securitycenter.microsoft.com/.default` (the documented MDE resource), portal
//!   `https://security.microsoft.com`. Geo hosts `https://{us,eu,uk,au,swa,ina,aea}.api.security.microsoft.com`
//!   (the API pages' geo-host tip; `aea` is the newest).
//! * US Government, <https://learn.microsoft.com/en-us/defender-endpoint/gov> (ms.date 01/05/2026),
//!   section "API": GCC signs in at `login.microsoftonline.com` and calls
//!   `api-gcc.securitycenter.microsoft.us`; GCC High and DoD sign in at `login.microsoftonline.us`
//!   and call `api-gov.securitycenter.microsoft.us`. Portals (same page): GCC
//!   `security.microsoft.com`, GCC High `security.microsoft.us`, DoD `security.apps.mil`.
//!
//! **Unconfirmed**: Microsoft does not state the token scope for the Gov clouds. We use the Gov
//! API host + `/.default` (`https://api-gcc.securitycenter.microsoft.us/.default`,
//! `https://api-gov.securitycenter.microsoft.us/.default`), as the most widely used integrations
//! send it: Microsoft's own msticpy (`msticpy/auth/cloud_mappings.py`, `scopes =
//! [f"{resource_base}/.default"]`) and Splunk SOAR's Defender connector
//! (`windowsdefenderatp_consts.py`, v1 `resource=` the Gov API host). The alternative seen in
//! demisto/content (`MicrosoftApiModule.py`) is the App ID URI form
//! `https://securitycenter.onmicrosoft.{com|us}/windowsatpservice/.default`. If a Gov tenant
//! rejects ours, use an explicit [`super::Target`] with the scope that works; Test Connection
//! shows the audience the token carried.

use std::fmt;

/// The cloud a tenant lives in.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub enum Cloud {
    #[default]
    Commercial,
    Gcc,
    GccHigh,
    Dod,
}

/// Commercial geo regions with their own API host (`https://{region}.api.security.microsoft.com`).
/// Source: the geo-host tip of the API pages (e.g. `L:get-machines`), which now also lists `aea`
/// (`docs/defender-behaviour-research.md` §6.5).
pub const COMMERCIAL_REGIONS: &[&str] = &["us", "eu", "uk", "au", "swa", "ina", "aea"];

/// The documented MDE token scope (commercial cloud).
pub const COMMERCIAL_SCOPE: &str = "https://api.securitycenter.microsoft.com/.default";

impl Cloud {
    pub const ALL: [Cloud; 4] = [Cloud::Commercial, Cloud::Gcc, Cloud::GccHigh, Cloud::Dod];

    /// Stable identifier for configuration files and databases.
    pub fn as_str(self) -> &'static str {
        match self {
            Cloud::Commercial => "commercial",
            Cloud::Gcc => "gcc",
            Cloud::GccHigh => "gcc-high",
            Cloud::Dod => "dod",
        }
    }

    /// Name to show people.
    pub fn label(self) -> &'static str {
        match self {
            Cloud::Commercial => "Commercial",
            Cloud::Gcc => "US Government (GCC)",
            Cloud::GccHigh => "US Government (GCC High)",
            Cloud::Dod => "US Government (DoD)",
        }
    }

    /// Parse [`Cloud::as_str`] values, case-insensitively, also accepting `_`/space for `-`
    /// and the labels' short forms (`GCC High`, `gcchigh`, `DoD`, `public`).
    pub fn parse(s: &str) -> Option<Cloud> {
        let norm: String =
            s.trim().chars().filter(|c| !matches!(c, '-' | '_' | ' ')).collect::<String>().to_ascii_lowercase();
        match norm.as_str() {
            "commercial" | "public" | "global" | "worldwide" => Some(Cloud::Commercial),
            "gcc" | "usgovernmentgcc" | "usgovgcc" => Some(Cloud::Gcc),
            "gcchigh" | "usgovernmentgcchigh" | "usgovgcchigh" => Some(Cloud::GccHigh),
            "dod" | "usgovernmentdod" | "usgovdod" => Some(Cloud::Dod),
            _ => None,
        }
    }

    /// Entra sign-in host (token endpoint base).
    pub fn login_base_url(self) -> &'static str {
        match self {
            Cloud::Commercial | Cloud::Gcc => "https://login.microsoftonline.com",
            Cloud::GccHigh | Cloud::Dod => "https://login.microsoftonline.us",
        }
    }

    /// Token scope (resource + `/.default`). Gov values are **unconfirmed** (see module docs).
    pub fn scope(self) -> &'static str {
        match self {
            Cloud::Commercial => COMMERCIAL_SCOPE,
            Cloud::Gcc => "https://api-gcc.securitycenter.microsoft.us/.default",
            Cloud::GccHigh | Cloud::Dod => "https://api-gov.securitycenter.microsoft.us/.default",
        }
    }

    /// Whether [`Cloud::scope`] is documented by Microsoft (only the commercial one is).
    pub fn scope_confirmed(self) -> bool {
        self == Cloud::Commercial
    }

    /// API base URL (without `/api`).
    pub fn api_base_url(self) -> &'static str {
        match self {
            Cloud::Commercial => "https://api.security.microsoft.com",
            Cloud::Gcc => "https://api-gcc.securitycenter.microsoft.us",
            Cloud::GccHigh | Cloud::Dod => "https://api-gov.securitycenter.microsoft.us",
        }
    }

    /// Defender portal base URL (device pages etc.).
    pub fn portal_base_url(self) -> &'static str {
        match self {
            Cloud::Commercial | Cloud::Gcc => "https://security.microsoft.com",
            Cloud::GccHigh => "https://security.microsoft.us",
            Cloud::Dod => "https://security.apps.mil",
        }
    }

    /// Geo API host of a commercial region (`us`, `eu`, `uk`, `au`, `swa`, `ina`, `aea`); `None` for
    /// other clouds or unknown regions.
    pub fn regional_api_base_url(self, region: &str) -> Option<String> {
        let r = region.trim().to_ascii_lowercase();
        (self == Cloud::Commercial && COMMERCIAL_REGIONS.contains(&r.as_str()))
            .then(|| format!("https://{r}.api.security.microsoft.com"))
    }
}

impl fmt::Display for Cloud {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.label())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip_and_aliases() {
        for c in Cloud::ALL {
            assert_eq!(Cloud::parse(c.as_str()), Some(c));
        }
        assert_eq!(Cloud::parse("GCC High"), Some(Cloud::GccHigh));
        assert_eq!(Cloud::parse("gcc_high"), Some(Cloud::GccHigh));
        assert_eq!(Cloud::parse("DoD"), Some(Cloud::Dod));
        assert_eq!(Cloud::parse(" Commercial "), Some(Cloud::Commercial));
        assert_eq!(Cloud::parse("china"), None);
    }

    /// One row per cloud. Sources per column:
    /// * login, API and portal hosts: Microsoft's "Microsoft Defender for Endpoint for US
    ///   Government customers", https://learn.microsoft.com/en-us/defender-endpoint/gov (ms.date
    ///   01/05/2026), tables "Portal URLs" and "API"; commercial: `docs/defender-api.md` §1.3.
    /// * token scope: commercial, Microsoft's API pages (`https://api.securitycenter.microsoft.com/.default`);
    ///   Gov, not stated by Microsoft: `{API host}/.default` as in microsoft/msticpy
    ///   `msticpy/auth/cloud_mappings.py` and Splunk SOAR `windowsdefenderatp_consts.py`
    ///   (demisto's `MicrosoftApiModule.py` sends `https://securitycenter.onmicrosoft.us/windowsatpservice/.default`
    ///   instead; `Target::custom` takes it if a tenant needs it).
    #[test]
    fn every_cloud_as_documented() {
        let table = [
            (
                Cloud::Commercial,
                "https://login.microsoftonline.com",
                "https://api.security.microsoft.com",
                "https://security.microsoft.com",
                "https://api.securitycenter.microsoft.com/.default",
            ),
            (
                Cloud::Gcc,
                "https://login.microsoftonline.com",
                "https://api-gcc.securitycenter.microsoft.us",
                "https://security.microsoft.com",
                "https://api-gcc.securitycenter.microsoft.us/.default",
            ),
            (
                Cloud::GccHigh,
                "https://login.microsoftonline.us",
                "https://api-gov.securitycenter.microsoft.us",
                "https://security.microsoft.us",
                "https://api-gov.securitycenter.microsoft.us/.default",
            ),
            (
                Cloud::Dod,
                "https://login.microsoftonline.us",
                "https://api-gov.securitycenter.microsoft.us",
                "https://security.apps.mil",
                "https://api-gov.securitycenter.microsoft.us/.default",
            ),
        ];
        assert_eq!(table.len(), Cloud::ALL.len());
        for (cloud, login, api, portal, scope) in table {
            assert_eq!(
                (cloud.login_base_url(), cloud.api_base_url(), cloud.portal_base_url(), cloud.scope()),
                (login, api, portal, scope),
                "{cloud}"
            );
            // Gov: the scope names the API host the client calls.
            if cloud != Cloud::Commercial {
                assert_eq!(cloud.scope(), format!("{}/.default", cloud.api_base_url()));
            }
        }
        for region in ["us", "eu", "uk", "au", "swa", "ina", "aea"] {
            assert_eq!(
                Cloud::Commercial.regional_api_base_url(region),
                Some(format!("https://{region}.api.security.microsoft.com"))
            );
        }
    }

    #[test]
    fn hosts() {
        assert_eq!(Cloud::Commercial.scope(), "https://api.securitycenter.microsoft.com/.default");
        assert_eq!(Cloud::Gcc.api_base_url(), "https://api-gcc.securitycenter.microsoft.us");
        assert_eq!(Cloud::Gcc.login_base_url(), "https://login.microsoftonline.com");
        assert_eq!(Cloud::Dod.login_base_url(), "https://login.microsoftonline.us");
        assert_eq!(Cloud::Dod.portal_base_url(), "https://security.apps.mil");
        assert_eq!(Cloud::GccHigh.portal_base_url(), "https://security.microsoft.us");
        assert_eq!(
            Cloud::Commercial.regional_api_base_url("EU").as_deref(),
            Some("https://eu.api.security.microsoft.com")
        );
        assert_eq!(Cloud::Commercial.regional_api_base_url("xx"), None);
        assert_eq!(Cloud::Gcc.regional_api_base_url("us"), None);
        assert!(!Cloud::Dod.scope_confirmed());
    }
}
