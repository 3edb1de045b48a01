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
    /// Every (software, CVE) row, encoded by [`encode_rows`] (stored for the next delta sync).
    #[serde(skip)]
    pub vuln_rows: String,
    /// What Defender's machine actions say of its isolation; `None` when they could not be read
    /// (what was stored stays).
    #[serde(skip)]
    pub isolation: Option<Isolation>,
    #[serde(skip)]
    pub top_vuln: Option<TopVulnerability>,
    #[serde(skip)]
    pub top_alert: Option<TopAlert>,
    /// The alert listing could not be read this sync: the stored top alert stays.
    #[serde(skip)]
    pub alerts_unread: bool,
    /// Set when this record is an older duplicate of another machine (re-imaged, re-onboarded).
    #[serde(skip)]
    pub duplicate_of: Option<String>,
}

/// A machine's isolation as Defender's machine actions tell it. The Machine entity has no
/// isolation property (<https://learn.microsoft.com/en-us/defender-endpoint/api/machine>); the
/// latest completed Isolate or Unisolate action is the state, wherever it was asked for (the
/// portal, another tool, automatic attack disruption, this product).
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(default)]
pub struct Isolation {
    #[serde(skip)]
    pub isolated: bool,
    /// When the latest completed isolation or release took effect (Unix seconds; 0: none).
    pub at: i64,
    pub by: String,
    /// `Full` or `Selective` while isolated.
    pub scope: String,
    /// `Isolate` or `Unisolate` when one was asked for after it and has not completed.
    pub pending: String,
    pub pending_at: i64,
    pub pending_by: String,
    /// The last sync could not read the machine actions (the rest is what was known before):
    /// the state is not shown as a fact.
    pub unread: bool,
}

impl Isolation {
    /// The isolation a machine's stored row holds.
    pub fn stored(m: &crate::db::models::defender_machines::DefenderMachine) -> Isolation {
        let details = serde_json::from_str(&m.isolation).unwrap_or_default();
        Isolation { isolated: m.isolated, ..details }
    }

    /// What is known when the machine actions could not be read: the stored state, marked unread.
    pub fn unread(stored: Option<Isolation>) -> Isolation {
        Isolation { unread: true, ..stored.unwrap_or_default() }
    }

    /// The details as they are stored beside `isolated`.
    pub fn details(&self) -> String {
        if *self == Isolation::default() { String::new() } else { serde_json::to_string(self).unwrap_or_default() }
    }

    /// An isolation or release this product's action completed just now.
    pub fn completed_now(isolated: bool, by: &str, scope: &str) -> Isolation {
        Isolation {
            isolated,
            at: crate::db::now(),
            by: by.to_owned(),
            scope: if isolated { scope.to_owned() } else { String::new() },
            ..Default::default()
        }
    }
}

/// The isolation of every machine named by a listing of Isolate and Unisolate actions. The
/// newest succeeded action of a machine decides; one still Pending or InProgress that was asked
/// for after it is pending. Failed, timed-out and cancelled actions change nothing.
pub fn isolation_by_machine(actions: &[dto::MachineAction]) -> std::collections::HashMap<String, Isolation> {
    use crate::domain::action::ActionStatus;
    let mut by_machine: std::collections::HashMap<String, Vec<&dto::MachineAction>> = Default::default();
    for a in actions {
        if let Some(m) = a.machine_id.as_deref().filter(|m| !m.is_empty()) {
            by_machine.entry(m.to_ascii_lowercase()).or_default().push(a);
        }
    }
    let isolate = |a: &dto::MachineAction| a.kind.as_deref().is_some_and(|k| k.eq_ignore_ascii_case("Isolate"));
    let created = |a: &dto::MachineAction| a.creation_date_time_utc.map(|t| t.timestamp()).unwrap_or(0);
    by_machine
        .into_iter()
        .map(|(machine, list)| {
            let done = list
                .iter()
                .filter(|a| a.status() == Some(ActionStatus::Succeeded))
                .max_by_key(|a| (a.last_update_date_time_utc.or(a.creation_date_time_utc), created(a)));
            let mut state = Isolation::default();
            if let Some(a) = done {
                state.isolated = isolate(a);
                state.at = a.last_update_date_time_utc.or(a.creation_date_time_utc).map(|t| t.timestamp()).unwrap_or(0);
                state.by = a.requestor.clone().unwrap_or_default();
                state.scope =
                    if state.isolated { a.scope.clone().unwrap_or_else(|| "Full".into()) } else { String::new() };
            }
            let after = done.map(|a| created(a)).unwrap_or(i64::MIN);
            let open = list
                .iter()
                .filter(|a| a.status().is_some_and(|s| !s.is_final()) && created(a) >= after)
                .max_by_key(|a| created(a));
            if let Some(a) = open {
                state.pending = if isolate(a) { "Isolate" } else { "Unisolate" }.into();
                state.pending_at = created(a);
                state.pending_by = a.requestor.clone().unwrap_or_default();
            }
            (machine, state)
        })
        .collect()
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

impl TopAlert {
    /// What the last sync that read the alerts stored for the machine.
    pub fn stored(m: &crate::db::models::defender_machines::DefenderMachine) -> Option<TopAlert> {
        let level = RiskLevel::from_i16(m.top_alert_severity).filter(|_| m.top_alert_severity > 0)?;
        Some(TopAlert { id: m.top_alert_id.clone(), level, title: m.top_alert_title.clone() })
    }
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

/// Whether an adapter may stand for the device: not one reported as down. Microsoft documents
/// no values for `ipAddresses[].operationalStatus` (its examples show `Up`); the values seen are
/// the names of .NET's `OperationalStatus`
/// (<https://learn.microsoft.com/en-us/dotnet/api/system.net.networkinformation.operationalstatus>),
/// of which `Down`, `LowerLayerDown` and `NotPresent` carry no traffic. An adapter without a
/// status is taken as up.
fn adapter_up(a: &dto::IpAddress) -> bool {
    !a.operational_status
        .as_deref()
        .is_some_and(|s| ["Down", "LowerLayerDown", "NotPresent"].iter().any(|d| s.trim().eq_ignore_ascii_case(d)))
}

/// The MACs a machine is matched by, from `ipAddresses`, each adapter's own: the adapter that
/// holds `lastIpAddress` first (the endpoint's address is that pair), then the other adapters that
/// are up. Adapters reported as down (a docking station's, a disabled one) are left out: their MAC
/// is not on the network and could match another device.
fn macs_of(m: &dto::Machine) -> Vec<String> {
    let up: Vec<&dto::IpAddress> = m.ip_addresses.iter().filter(|a| adapter_up(a)).collect();
    let last_ip = m.last_ip_address.as_deref().map(str::trim).unwrap_or("");
    let holder = up.iter().find(|a| {
        !last_ip.is_empty() && a.ip_address.as_deref().map(str::trim) == Some(last_ip) && a.mac_address.is_some()
    });
    let mut macs: Vec<String> = holder
        .into_iter()
        .chain(up.iter())
        .filter_map(|a| a.mac_address.as_deref())
        .filter_map(normalize_mac)
        .collect();
    let mut seen = HashSet::new();
    macs.retain(|m| seen.insert(m.clone()));
    macs
}

/// The record of a machine as the machine listing describes it.
pub fn record_of(m: &dto::Machine) -> MachineRecord {
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
        macs: macs_of(m),
        first_seen: ts(m.first_seen),
        last_seen: ts(m.last_seen),
        rbac_group: m.rbac_group_name.clone().unwrap_or_default(),
        tags: tags_of(&m.machine_tags),
        ..Default::default()
    }
}

/// Defender's tags as kept: trimmed, without empty ones or repeats (Defender's own tag rules are
/// not checked), each at most [`MAX_TAG_CHARS`] characters and at most [`MAX_TAGS`] of them, so
/// that a hostile tenant cannot make one machine's row or filter choices huge.
fn tags_of(tags: &[String]) -> Vec<String> {
    let mut kept: Vec<String> = Vec::new();
    for tag in tags {
        let tag: String = tag.trim().chars().take(MAX_TAG_CHARS).collect();
        if !tag.is_empty() && !kept.contains(&tag) && kept.len() < MAX_TAGS {
            kept.push(tag);
        }
    }
    kept
}

pub const MAX_TAG_CHARS: usize = crate::domain::tag::MAX_CHARS;
pub const MAX_TAGS: usize = 50;

/// One software version a machine has vulnerabilities on: (vendor, product, version), in lower
/// case (the listings spell them so; a key must not split on case).
pub type SoftwareVersion = (String, String, String);

/// The key of a software version as a listing names it.
pub fn software_version(vendor: Option<&str>, product: Option<&str>, version: Option<&str>) -> SoftwareVersion {
    let norm = |s: Option<&str>| s.unwrap_or("").trim().to_lowercase();
    (norm(vendor), norm(product), norm(version))
}

/// A machine's vulnerabilities as they are stored: `[[vendor, product, version, [CVE, …]], …]`
/// (JSON), one entry per software version. Empty without any.
pub fn encode_rows(rows: &[(&SoftwareVersion, Vec<&str>)]) -> String {
    if rows.is_empty() {
        return String::new();
    }
    let list: Vec<(&str, &str, &str, &[&str])> = rows
        .iter()
        .map(|((vendor, product, version), cves)| {
            (vendor.as_str(), product.as_str(), version.as_str(), cves.as_slice())
        })
        .collect();
    serde_json::to_string(&list).unwrap_or_default()
}

/// What [`encode_rows`] stored; nothing from text it did not write.
pub fn decode_rows(stored: &str) -> Vec<(SoftwareVersion, Vec<String>)> {
    serde_json::from_str::<Vec<(String, String, String, Vec<String>)>>(stored)
        .map(|list| list.into_iter().map(|(a, b, c, cves)| ((a, b, c), cves)).collect())
        .unwrap_or_default()
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

    fn adapter(ip: &str, mac: Option<&str>, status: &str) -> dto::IpAddress {
        dto::IpAddress {
            ip_address: Some(ip.into()),
            mac_address: mac.map(Into::into),
            operational_status: Some(status.into()),
            ..Default::default()
        }
    }

    #[test]
    fn the_address_is_paired_with_the_mac_of_its_adapter_and_down_adapters_are_left_out() {
        let m = dto::Machine {
            id: "m1".into(),
            last_ip_address: Some("10.0.0.7".into()),
            ip_addresses: vec![
                adapter("169.254.3.4", Some("AABBCC000001"), "Down"),
                adapter("172.20.1.1", Some("00155D000002"), "Up"),
                adapter("10.0.0.7", Some("AABBCC000003"), "Up"),
                adapter("fe80::1", Some("AABBCC000003"), "Up"),
                adapter("127.0.0.1", None, "Up"),
            ],
            ..Default::default()
        };
        assert_eq!(record_of(&m).macs, vec!["aa:bb:cc:00:00:03", "00:15:5d:00:00:02"]);
    }

    #[test]
    fn stored_rows_read_back() {
        let a = software_version(Some("Microsoft"), Some("Edge"), Some("1.0"));
        let b = software_version(Some("google"), Some("chrome"), Some("2.0"));
        let stored = encode_rows(&[(&a, vec!["CVE-1", "CVE-2"]), (&b, vec!["CVE-1"])]);
        assert_eq!(
            decode_rows(&stored),
            vec![(a.clone(), vec!["CVE-1".to_owned(), "CVE-2".to_owned()]), (b, vec!["CVE-1".to_owned()])]
        );
        assert_eq!(a.0, "microsoft");
        assert!(decode_rows("CVE-1,CVE-2").is_empty());
    }
}
