//! One Defender machine as the product keeps it: the record a sync builds from the machine
//! listing and completes from the later pages (its most severe vulnerability and alert), and the
//! name of the OS profile it gets.

use std::collections::HashSet;

use chrono::{DateTime, Utc};

use super::client::dto;
use crate::domain::mac::normalize_mac;
use crate::domain::risk::RiskLevel;

/// What the product keeps of one Defender machine after a sync's aggregation. A sync stages the
/// fetched part as JSON (`defender_sync_staging`); the rest is added from the later pages.
#[derive(Debug, Clone, Default, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct MachineRecord {
    pub machine_id: String,
    pub computer_dns_name: String,
    pub os_platform: String,
    /// The OS version as Defender names it (`version`, e.g. `23H2`; for Linux the distribution in `osVersion`).
    pub os_version: String,
    pub os_build: String,
    /// `agentVersion` (the Defender client), which decides some actions on macOS and Linux.
    #[serde(default)]
    pub agent_version: String,
    pub onboarding_status: String,
    pub health_status: String,
    pub risk_score: String,
    pub exposure_level: String,
    pub last_ip: String,
    /// Normalized, without duplicates.
    pub macs: Vec<String>,
    pub first_seen: i64,
    pub last_seen: i64,
    pub rbac_group: String,
    pub tags: Vec<String>,
    #[serde(skip)]
    pub vuln_count: i32,
    /// The distinct CVEs, sorted, comma-separated (stored for the next delta sync).
    #[serde(skip)]
    pub vuln_cves: String,
    #[serde(skip)]
    pub top_vuln: Option<TopVulnerability>,
    #[serde(skip)]
    pub top_alert: Option<TopAlert>,
    /// Set when this record is an older duplicate of another machine (re-imaged, re-onboarded).
    #[serde(skip)]
    pub duplicate_of: Option<String>,
}

#[derive(Debug, Clone, Default, PartialEq)]
pub struct TopVulnerability {
    pub cve: String,
    pub level: RiskLevel,
    pub description: String,
}

#[derive(Debug, Clone, Default, PartialEq)]
pub struct TopAlert {
    pub id: String,
    pub level: RiskLevel,
    pub title: String,
}

/// The dynamic profile name for Defender's OS details: `OS_VERSION` when a version is known,
/// else `OS` (e.g. `Windows11_23H2`, `WindowsServer2022`, `Ubuntu_22.04`). None without an OS.
pub fn profile_name(platform: &str, version: &str) -> Option<String> {
    let clean = |s: &str| s.chars().filter(|c| c.is_ascii_alphanumeric() || *c == '.').collect::<String>();
    let platform = platform.trim();
    let version = version.trim();
    if platform.is_empty() || platform.eq_ignore_ascii_case("unknown") {
        return None;
    }
    // Defender reports Linux as the platform and the distribution in the version ("Ubuntu 22.04").
    if platform.eq_ignore_ascii_case("linux") && !version.is_empty() {
        let mut parts = version.split_whitespace();
        let distro = clean(parts.next().unwrap_or(""));
        let ver = clean(&parts.collect::<Vec<_>>().join(""));
        return match (distro.is_empty(), ver.is_empty()) {
            (true, _) => Some("Linux".into()),
            (false, true) => Some(distro),
            (false, false) => Some(format!("{distro}_{ver}")),
        };
    }
    let os = clean(platform);
    let ver = clean(version);
    if os.is_empty() {
        None
    } else if ver.is_empty() {
        Some(os)
    } else {
        Some(format!("{os}_{ver}"))
    }
}

fn ts(t: Option<DateTime<Utc>>) -> i64 {
    t.map(|t| t.timestamp()).unwrap_or(0)
}

/// The record of a machine as the machine listing describes it.
pub fn record_of(m: &dto::Machine) -> MachineRecord {
    let mut macs: Vec<String> =
        m.ip_addresses.iter().filter_map(|a| a.mac_address.as_deref()).filter_map(normalize_mac).collect();
    macs.dedup();
    let mut seen = HashSet::new();
    macs.retain(|m| seen.insert(m.clone()));
    let is_linux = m.os_platform.as_deref().is_some_and(|p| p.eq_ignore_ascii_case("linux"));
    // Windows reports its release in `version` (e.g. 23H2); Linux the distribution in `osVersion`.
    let os_version =
        if is_linux { m.os_version.clone().or(m.version.clone()) } else { m.version.clone().or(m.os_version.clone()) };
    MachineRecord {
        machine_id: m.id.clone(),
        computer_dns_name: m.computer_dns_name.clone().unwrap_or_default(),
        os_platform: m.os_platform.clone().unwrap_or_default(),
        os_version: os_version.unwrap_or_default(),
        os_build: m.os_build.map(|b| b.to_string()).unwrap_or_default(),
        agent_version: m.agent_version.clone().unwrap_or_default(),
        onboarding_status: m.onboarding_status.clone().unwrap_or_default(),
        health_status: m.health_status.clone().unwrap_or_default(),
        risk_score: m.risk_score.clone().unwrap_or_default(),
        exposure_level: m.exposure_level.clone().unwrap_or_default(),
        last_ip: m.last_ip_address.clone().unwrap_or_default(),
        macs,
        first_seen: ts(m.first_seen),
        last_seen: ts(m.last_seen),
        rbac_group: m.rbac_group_name.clone().unwrap_or_default(),
        tags: m.machine_tags.clone(),
        ..Default::default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dynamic_profiles_are_named_os_or_os_version() {
        assert_eq!(profile_name("Windows11", "23H2").as_deref(), Some("Windows11_23H2"));
        assert_eq!(profile_name("WindowsServer2022", "").as_deref(), Some("WindowsServer2022"));
        assert_eq!(profile_name("Linux", "Ubuntu 22.04").as_deref(), Some("Ubuntu_22.04"));
        assert_eq!(profile_name("macOS", "14.5").as_deref(), Some("macOS_14.5"));
        assert_eq!(profile_name("<script>", "1").as_deref(), Some("script_1"));
        assert_eq!(profile_name("", "23H2"), None);
        assert_eq!(profile_name("Unknown", ""), None);
    }
}
