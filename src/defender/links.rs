//! Defender portal deep links for a device (and an alert / CVE).
//!
//! Microsoft documents no URL formats for portal pages (defender-api.md §6). What public
//! integrations generate:
//! * **Overview** `…/machines/v2/{id}/overview` (optionally `?tid={tenant}`) – widely used,
//!   the established form ("confirmed" as far as anything is).
//! * **Alerts** `…/machines/v2/{id}/alerts` and **Discovered vulnerabilities**
//!   `…/machines/v2/{id}/vulnerabilities` – best-known tab paths, **unconfirmed**.
//!
//! Because two of the three are unconfirmed, [`PortalLinks`] keeps the tab paths in a small
//! table that configuration may override (a change on Microsoft's side is then a setting, not
//! a release). Templates contain `{id}`; the machine id is validated (40 hex digits) before it
//! is placed in a URL, and the tenant id is percent-encoded as a query value.

use url::Url;

use super::client::cloud::Cloud;

/// Which device page.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum DeviceTab {
    Overview,
    Alerts,
    Vulnerabilities,
}

impl DeviceTab {
    pub const ALL: [DeviceTab; 3] = [DeviceTab::Overview, DeviceTab::Alerts, DeviceTab::Vulnerabilities];

    /// Default path template under the portal base.
    pub fn default_template(self) -> &'static str {
        match self {
            DeviceTab::Overview => "/machines/v2/{id}/overview",
            DeviceTab::Alerts => "/machines/v2/{id}/alerts",
            DeviceTab::Vulnerabilities => "/machines/v2/{id}/vulnerabilities",
        }
    }

    /// Whether the default path is the established one (only the overview is).
    pub fn confirmed(self) -> bool {
        self == DeviceTab::Overview
    }
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum LinkError {
    #[error("not a Defender machine id (expected 40 hexadecimal digits)")]
    InvalidMachineId,
    #[error("invalid portal base URL: {0}")]
    InvalidBase(String),
    #[error("invalid path template (must start with '/' and contain {{id}} once): {0}")]
    InvalidTemplate(String),
}

/// A Defender machine id: 40 hexadecimal digits.
pub fn is_machine_id(id: &str) -> bool {
    id.len() == 40 && id.bytes().all(|b| b.is_ascii_hexdigit())
}

/// Builds portal links for one cloud (or an explicit portal base).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PortalLinks {
    base: Url,
    overview: String,
    alerts: String,
    vulnerabilities: String,
}

impl PortalLinks {
    pub fn for_cloud(cloud: Cloud) -> PortalLinks {
        Self::with_base(cloud.portal_base_url()).expect("built-in portal bases are valid")
    }

    /// An explicit portal base (`https://…`, no query or fragment).
    pub fn with_base(base: &str) -> Result<PortalLinks, LinkError> {
        let mut url = Url::parse(base.trim()).map_err(|e| LinkError::InvalidBase(e.to_string()))?;
        if url.scheme() != "https" && url.scheme() != "http" {
            return Err(LinkError::InvalidBase("scheme must be https".into()));
        }
        if url.host_str().is_none() || url.query().is_some() || url.fragment().is_some() {
            return Err(LinkError::InvalidBase("needs a host and no query or fragment".into()));
        }
        let path = url.path().trim_end_matches('/').to_string();
        url.set_path(&path);
        Ok(PortalLinks {
            base: url,
            overview: DeviceTab::Overview.default_template().into(),
            alerts: DeviceTab::Alerts.default_template().into(),
            vulnerabilities: DeviceTab::Vulnerabilities.default_template().into(),
        })
    }

    /// Override a tab's path template (e.g. from configuration).
    pub fn with_template(mut self, tab: DeviceTab, template: &str) -> Result<Self, LinkError> {
        let t = template.trim();
        if !t.starts_with('/') || t.matches("{id}").count() != 1 || t.contains(['?', '#']) {
            return Err(LinkError::InvalidTemplate(t.to_string()));
        }
        let slot = match tab {
            DeviceTab::Overview => &mut self.overview,
            DeviceTab::Alerts => &mut self.alerts,
            DeviceTab::Vulnerabilities => &mut self.vulnerabilities,
        };
        *slot = t.to_string();
        Ok(self)
    }

    pub fn template(&self, tab: DeviceTab) -> &str {
        match tab {
            DeviceTab::Overview => &self.overview,
            DeviceTab::Alerts => &self.alerts,
            DeviceTab::Vulnerabilities => &self.vulnerabilities,
        }
    }

    /// Link to a device page; `tenant_id` adds `?tid=` (makes the portal switch tenant).
    pub fn device(&self, machine_id: &str, tab: DeviceTab, tenant_id: Option<&str>) -> Result<String, LinkError> {
        let id = machine_id.trim();
        if !is_machine_id(id) {
            return Err(LinkError::InvalidMachineId);
        }
        let id = id.to_ascii_lowercase();
        let path = self.template(tab).replace("{id}", &id);
        Ok(self.finish(&path, tenant_id))
    }

    /// Link to an alert page (`/alerts/{alertId}`, observed form).
    pub fn alert(&self, alert_id: &str, tenant_id: Option<&str>) -> String {
        let path = format!("/alerts/{}", encode_segment(alert_id.trim()));
        self.finish(&path, tenant_id)
    }

    /// Link to a CVE page (`/vulnerabilities/vulnerability/{cve}/overview`, observed form).
    pub fn vulnerability(&self, cve_id: &str, tenant_id: Option<&str>) -> String {
        let path = format!("/vulnerabilities/vulnerability/{}/overview", encode_segment(cve_id.trim()));
        self.finish(&path, tenant_id)
    }

    fn finish(&self, path: &str, tenant_id: Option<&str>) -> String {
        let mut url = self.base.clone();
        let full = format!("{}{}", self.base.path().trim_end_matches('/'), path);
        url.set_path(&full);
        if let Some(t) = tenant_id.map(str::trim).filter(|t| !t.is_empty()) {
            url.query_pairs_mut().append_pair("tid", t);
        }
        url.to_string()
    }
}

/// Device link for a cloud with the default templates.
pub fn device_link(
    cloud: Cloud,
    machine_id: &str,
    tab: DeviceTab,
    tenant_id: Option<&str>,
) -> Result<String, LinkError> {
    PortalLinks::for_cloud(cloud).device(machine_id, tab, tenant_id)
}

fn encode_segment(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b'~') {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    const ID: &str = "1e5bc9d7e413ddd7902c2932e418702b84d0cc07";

    #[test]
    fn device_links_per_cloud() {
        assert_eq!(
            device_link(Cloud::Commercial, ID, DeviceTab::Overview, None).unwrap(),
            format!("https://security.microsoft.com/machines/v2/{ID}/overview")
        );
        assert_eq!(
            device_link(Cloud::GccHigh, ID, DeviceTab::Alerts, None).unwrap(),
            format!("https://security.microsoft.us/machines/v2/{ID}/alerts")
        );
        assert_eq!(
            device_link(Cloud::Dod, ID, DeviceTab::Vulnerabilities, Some("4d1f9c2e-8b3a-4f6d-9e21-7c5a0b3d2e18"))
                .unwrap(),
            format!(
                "https://security.apps.mil/machines/v2/{ID}/vulnerabilities?tid=4d1f9c2e-8b3a-4f6d-9e21-7c5a0b3d2e18"
            )
        );
        assert!(DeviceTab::Overview.confirmed());
        assert!(!DeviceTab::Alerts.confirmed());
        assert!(!DeviceTab::Vulnerabilities.confirmed());
    }

    #[test]
    fn rejects_bad_ids_and_encodes_tid() {
        for bad in [
            "",
            "abc",
            "../../admin",
            "1e5bc9d7e413ddd7902c2932e418702b84d0cc0g",
            "1e5bc9d7e413ddd7902c2932e418702b84d0cc07/x",
        ] {
            assert_eq!(
                device_link(Cloud::Commercial, bad, DeviceTab::Overview, None),
                Err(LinkError::InvalidMachineId),
                "{bad}"
            );
        }
        let upper = ID.to_ascii_uppercase();
        let l = device_link(Cloud::Commercial, &upper, DeviceTab::Overview, Some("a b&c=<d>")).unwrap();
        assert_eq!(l, format!("https://security.microsoft.com/machines/v2/{ID}/overview?tid=a+b%26c%3D%3Cd%3E"));
    }

    #[test]
    fn overrides_and_other_pages() {
        let links = PortalLinks::with_base("https://portal.example.org/defender/")
            .unwrap()
            .with_template(DeviceTab::Alerts, "/devices/{id}/alerts-tab")
            .unwrap();
        assert_eq!(
            links.device(ID, DeviceTab::Alerts, None).unwrap(),
            format!("https://portal.example.org/defender/devices/{ID}/alerts-tab")
        );
        assert!(links.clone().with_template(DeviceTab::Overview, "no-slash/{id}").is_err());
        assert!(links.clone().with_template(DeviceTab::Overview, "/x/{id}?a={id}").is_err());
        assert!(PortalLinks::with_base("javascript:alert(1)").is_err());
        let c = PortalLinks::for_cloud(Cloud::Commercial);
        assert_eq!(
            c.alert("da637472900382838869_1364969609", None),
            "https://security.microsoft.com/alerts/da637472900382838869_1364969609"
        );
        assert_eq!(
            c.vulnerability("CVE-2024-1234", Some("t")),
            "https://security.microsoft.com/vulnerabilities/vulnerability/CVE-2024-1234/overview?tid=t"
        );
        assert_eq!(c.alert("a/../b", None), "https://security.microsoft.com/alerts/a%2F..%2Fb");
    }
}
