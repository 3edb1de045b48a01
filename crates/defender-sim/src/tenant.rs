//! The deterministic tenant: machines, vulnerabilities, software, alerts and the network
//! observations that match them, all derived from (seed, size).
//!
//! Machines, the vulnerability catalogue, software and alerts are materialised (they are at
//! most a few hundred thousand records). Machine × vulnerability rows are not: at 500,000
//! machines there are over ten million of them. Each machine stores only how many rows it has
//! and the severity bucket its worst vulnerability falls in (which fixes `exposureLevel`);
//! [`Tenant::machine_vulnerability_indices`] re-derives the rows from a per-machine RNG
//! whenever they are needed, and a prefix-sum array maps a global row offset to
//! (machine, row) by binary search so that `$skip` over the bulk listings is O(log n).
//!
//! Long because the parts of a tenant derive from one another in one deterministic order
//! (machines, then their software, vulnerabilities, alerts and observations); the same seed must
//! give the same tenant, and keeping the derivation in one file keeps that order visible.

use std::collections::HashMap;
use std::sync::OnceLock;

use chrono::{DateTime, Duration, TimeZone, Utc};
use serde::{Deserialize, Serialize};

use super::catalog::{self, GROUP_COUNT, OSES, PRODUCTS};
use super::rng::{Permutation, Rng, hash3, mix64};

mod evolution;
pub use evolution::{Row, RowEvent};

const STREAM_MACHINE: u64 = 1;
const STREAM_VULNS: u64 = 2;
const STREAM_ALERTS: u64 = 3;
const STREAM_CATALOG: u64 = 4;
const STREAM_NETONLY: u64 = 5;
pub(crate) const STREAM_EVIDENCE: u64 = 6;
pub(crate) const STREAM_DELTA: u64 = 7;
const STREAM_ADAPTERS: u64 = 12;

/// One record of the delta export for a machine.
#[derive(Debug, Clone)]
pub struct DeltaEvent<'a> {
    pub vuln: u32,
    /// The product version the record is about.
    pub version: &'a str,
    /// `New`, `Fixed` or `Updated`.
    pub status: &'static str,
    /// The device group it is reported under (`None`: unassigned).
    pub group: Option<&'a str>,
    pub at: DateTime<Utc>,
}

/// What the generator needs; built from [`super::SimConfig`].
#[derive(Debug, Clone)]
pub struct TenantParams {
    pub seed: u64,
    pub machines: usize,
    pub tenant_id: String,
    pub tenant_domain: String,
    pub match_fraction: f64,
    pub duplicate_fraction: f64,
    pub hostile: bool,
    /// "Now" of the generated data; every timestamp lies before it.
    pub anchor: DateTime<Utc>,
    /// When each change to the tenant was made (see `evolution`), oldest first.
    pub changes: Vec<DateTime<Utc>>,
}

/// Vulnerability severity, ordered from least to most severe.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Severity {
    Low = 0,
    Medium = 1,
    High = 2,
    Critical = 3,
}

impl Severity {
    pub fn as_str(self) -> &'static str {
        match self {
            Severity::Low => "Low",
            Severity::Medium => "Medium",
            Severity::High => "High",
            Severity::Critical => "Critical",
        }
    }
    fn from_index(i: usize) -> Self {
        [Severity::Low, Severity::Medium, Severity::High, Severity::Critical][i.min(3)]
    }
}

/// One entry of a machine's `ipAddresses`.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct IpAddress {
    pub ip_address: String,
    /// Twelve upper-case hex digits without separators; `None` on loopback (documented quirk).
    pub mac_address: Option<String>,
    #[serde(rename = "type")]
    pub kind: &'static str,
    pub operational_status: &'static str,
}

#[derive(Debug, Clone)]
pub struct Machine {
    pub index: u32,
    pub id: String,
    pub computer_dns_name: String,
    pub first_seen: DateTime<Utc>,
    pub last_seen: DateTime<Utc>,
    pub os_platform: &'static str,
    pub version: &'static str,
    pub os_build: Option<i64>,
    pub os_distribution: Option<&'static str>,
    pub os_architecture: &'static str,
    pub os_processor: &'static str,
    /// Platform group index (see `catalog::G_*`).
    pub group: u8,
    pub onboarding_status: &'static str,
    pub health_status: &'static str,
    pub last_ip_address: String,
    pub last_external_ip_address: String,
    pub agent_version: Option<&'static str>,
    pub rbac_group_id: i64,
    pub rbac_group_name: Option<&'static str>,
    pub risk_score: &'static str,
    pub exposure_level: &'static str,
    pub device_value: &'static str,
    pub is_aad_joined: bool,
    pub aad_device_id: Option<String>,
    pub machine_tags: Vec<String>,
    pub ip_addresses: Vec<IpAddress>,
    pub defender_av_status: &'static str,
    pub managed_by: &'static str,
    pub is_potential_duplication: bool,
    /// For an older record of a re-imaged device: index of the newer record of that device.
    pub duplicate_of: Option<u32>,
    /// Whether [`Tenant::network_observations`] emits a matching observation for it.
    pub in_network: bool,
    /// MAC of the primary adapter.
    pub mac: Option<[u8; 6]>,
    pub vuln_count: u32,
    /// Severity bucket of the worst vulnerability (High covers High and Critical).
    worst_bucket: Option<Severity>,
}

impl Machine {
    /// `aa:bb:cc:dd:ee:ff`, the product's ingest format.
    pub fn mac_colon(&self) -> Option<String> {
        self.mac.map(|m| m.iter().map(|b| format!("{b:02x}")).collect::<Vec<_>>().join(":"))
    }
    /// First label of `computerDnsName`.
    pub fn short_name(&self) -> &str {
        self.computer_dns_name.split('.').next().unwrap_or(&self.computer_dns_name)
    }
    pub fn is_onboarded(&self) -> bool {
        self.onboarding_status == "Onboarded"
    }
}

#[derive(Debug, Clone)]
pub struct Vulnerability {
    pub index: u32,
    pub id: String,
    pub name: String,
    pub description: String,
    pub severity: Severity,
    pub cvss_v3: f64,
    pub cvss_vector: String,
    pub published_on: DateTime<Utc>,
    pub updated_on: DateTime<Utc>,
    pub first_detected: DateTime<Utc>,
    pub patch_first_available: Option<DateTime<Utc>>,
    pub public_exploit: bool,
    pub exploit_verified: bool,
    pub exploit_in_kit: bool,
    pub exploit_types: Vec<&'static str>,
    pub exploit_uris: Vec<String>,
    pub epss: f64,
    pub zero_day: bool,
    /// Index into the software list (and `catalog::PRODUCTS`).
    pub product: u16,
    pub product_version: &'static str,
    pub fixing_kb_id: Option<String>,
    pub recommended_update: String,
    /// Platform groups this vulnerability can appear on.
    groups: u16,
}

impl Vulnerability {
    pub fn exploitability_level(&self) -> &'static str {
        if self.exploit_in_kit {
            "ExploitIsInKit"
        } else if self.exploit_verified {
            "ExploitIsVerified"
        } else if self.public_exploit {
            "ExploitIsPublic"
        } else {
            "NoExploit"
        }
    }
}

#[derive(Debug, Clone)]
pub struct Software {
    pub index: u16,
    /// `{vendor}-_-{name}`
    pub id: String,
    pub name: &'static str,
    pub vendor: &'static str,
    pub vulnerabilities: Vec<u32>,
}

#[derive(Debug, Clone)]
pub struct Alert {
    pub index: u32,
    pub id: String,
    pub machine_index: u32,
    pub title: String,
    pub description: String,
    pub severity: &'static str,
    pub status: &'static str,
    pub category: &'static str,
    pub detection_source: &'static str,
    pub mitre_techniques: &'static [&'static str],
    pub threat_family_name: Option<&'static str>,
    pub alert_creation_time: DateTime<Utc>,
    pub first_event_time: DateTime<Utc>,
    pub last_event_time: DateTime<Utc>,
    pub last_update_time: DateTime<Utc>,
    pub resolved_time: Option<DateTime<Utc>>,
    pub incident_id: i64,
    pub investigation_id: Option<i64>,
    pub investigation_state: &'static str,
    pub assigned_to: Option<String>,
    pub classification: Option<&'static str>,
    pub determination: Option<&'static str>,
    pub detector_id: String,
    pub related_user: Option<(String, String)>,
}

impl Alert {
    pub fn is_active(&self) -> bool {
        self.status != "Resolved"
    }
}

/// A device as Endpoint Analytics' network sensors would report it, in the JSON of its public
/// ingest API (`POST /api/v1/observations`): what the simulator emits is what a sensor would post.
#[derive(Debug, Default, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct NetworkObservation {
    pub mac: Option<String>,
    pub ip: Option<String>,
    pub hostname: Option<String>,
    pub dhcp_vendor_class: Option<String>,
    pub dhcp_params: Option<String>,
    pub user_agent: Option<String>,
    pub seen_at: Option<String>,
}

/// Who references what; built on first use because it needs every machine's rows.
struct ReverseIndex {
    machines_by_vuln: Vec<Vec<u32>>,
    machines_by_software: Vec<Vec<u32>>,
    exposed_by_software: Vec<u32>,
}

pub struct Tenant {
    pub params: TenantParams,
    machines: Vec<Machine>,
    vulnerabilities: Vec<Vulnerability>,
    software: Vec<Software>,
    alerts: Vec<Alert>,
    /// `vuln_prefix[i]` = rows of machines `0..i`; length machines + 1.
    vuln_prefix: Vec<u64>,
    /// `alert_start[i]` = first alert of machine i; length machines + 1.
    alert_start: Vec<u32>,
    /// Per platform group: vulnerability indices sorted by severity, and where each severity
    /// bucket ends in that list.
    group_lists: Vec<Vec<u32>>,
    group_bounds: Vec<[usize; 4]>,
    perm: Permutation,
    names: Vec<(u64, u32)>,
    alert_ids: HashMap<String, u32>,
    vuln_ids: HashMap<String, u32>,
    reverse: OnceLock<ReverseIndex>,
    evolution: evolution::Evolution,
}

fn base36(mut n: u64, min_len: usize) -> String {
    const DIGITS: &[u8] = b"0123456789abcdefghijklmnopqrstuvwxyz";
    let mut out = Vec::new();
    while n > 0 || out.len() < min_len {
        out.push(DIGITS[(n % 36) as usize]);
        n /= 36;
    }
    out.reverse();
    String::from_utf8(out).unwrap_or_default()
}

fn name_hash(name: &str) -> u64 {
    let mut h = 0xCBF2_9CE4_8422_2325u64;
    for b in name.bytes() {
        h ^= b.to_ascii_lowercase() as u64;
        h = h.wrapping_mul(0x0100_0000_01B3);
    }
    h
}

fn mac_plain(m: &[u8; 6]) -> String {
    m.iter().map(|b| format!("{b:02X}")).collect()
}

/// A random span in [lo, hi] seconds with a random fraction (100 ns ticks), so timestamps
/// carry the seven fractional digits real ones have.
fn seconds(rng: &mut Rng, lo: i64, hi: i64) -> Duration {
    Duration::seconds(rng.range(lo, hi)) + Duration::nanoseconds(rng.below(10_000_000) as i64 * 100)
}

const DAY: i64 = 86_400;

impl Tenant {
    /// Build the tenant. Cost is linear in the number of machines with a small constant.
    pub fn generate(params: TenantParams) -> Tenant {
        let n = params.machines;
        let seed = params.seed;
        let perm = Permutation::new(seed);
        let (vulnerabilities, software) = build_catalog(&params);
        let (group_lists, group_bounds) = group_lists(&vulnerabilities);
        let org = params.tenant_domain.split('.').next().unwrap_or("contoso").to_ascii_lowercase();
        let ad_domain = format!("corp.{org}.com");
        let anchor = params.anchor;

        let mut machines: Vec<Machine> = Vec::with_capacity(n);
        let mut alerts: Vec<Alert> = Vec::new();
        let mut alert_start = Vec::with_capacity(n + 1);
        let mut vuln_prefix = Vec::with_capacity(n + 1);
        vuln_prefix.push(0u64);
        let nic_key = (mix64(seed ^ 0xAC) & 0xFF_FFFF) as u32;
        let mut incident = 1000 + (seed % 5000) as i64;

        for i in 0..n {
            alert_start.push(alerts.len() as u32);
            let mut rng = Rng::for_item(seed, STREAM_MACHINE, i as u64);
            let idx = i as u32;
            // Older record of a re-imaged device: copies identity from a newer record.
            let dup_primary = if i > 0 && rng.chance(params.duplicate_fraction) {
                let back = 1 + rng.below(i.min(64) as u64) as usize;
                let p = i - back;
                let p = machines[p].duplicate_of.map(|x| x as usize).unwrap_or(p);
                Some(p)
            } else {
                None
            };
            let dup_variant = rng.below(10); // 0..7 name+mac, 7..9 name only, 9 mac only

            let os_weights: Vec<u32> = OSES.iter().map(|o| o.weight).collect();
            let os = match dup_primary {
                Some(p) => OSES.iter().find(|o| o.group == machines[p].group as usize).unwrap_or(&OSES[0]),
                None => &OSES[rng.weighted(&os_weights)],
            };
            let group = catalog::behaves_like(os.group);
            let vweights: Vec<u32> = os.versions.iter().map(|v| v.2).collect();
            let vi = rng.weighted(&vweights);
            let (version, os_build, _) = os.versions[vi];
            // Each Linux release belongs to its own distribution (no "Debian 22.04").
            let os_distribution = os.distributions.get(vi).copied();
            let mobile = group >= 8;
            let windows = group <= 5;

            let onboarding_status = if dup_primary.is_some() {
                "Onboarded"
            } else if mobile {
                ["Onboarded", "Unsupported", "CanBeOnboarded"][rng.weighted(&[70, 20, 10])]
            } else if group == 2 {
                ["Onboarded", "CanBeOnboarded", "InsufficientInfo"][rng.weighted(&[60, 30, 10])]
            } else {
                ["Onboarded", "CanBeOnboarded", "Unsupported", "InsufficientInfo"][rng.weighted(&[88, 7, 2, 3])]
            };
            let onboarded = onboarding_status == "Onboarded";

            // Name.
            let first = *rng.pick(catalog::FIRST_NAMES);
            let last = *rng.pick(catalog::LAST_NAMES);
            let site = *rng.pick(catalog::SITES);
            let suffix = base36(i as u64, 2);
            let mut short = match group {
                0 | 1 => {
                    if rng.chance(0.4) {
                        format!("desktop-{}", base36(perm.forward(idx) as u64, 7))
                    } else {
                        format!("{}{}-lt-{suffix}", &first[..1], last)
                    }
                }
                2..=5 => format!("{site}-{}-{suffix}", rng.pick(catalog::SERVER_ROLES)),
                6 => format!("{first}s-macbook-pro-{suffix}"),
                7 => format!("{}-{site}-{suffix}", rng.pick(catalog::SERVER_ROLES)),
                8 => format!("iphone-{first}-{suffix}"),
                _ => format!("galaxy-{first}-{suffix}"),
            };
            if params.hostile && i < catalog::HOSTILE.len() {
                short = format!("{}{}", catalog::HOSTILE[i], suffix);
            }
            let fqdn = match group {
                0..=5 if rng.chance(0.85) => format!("{short}.{ad_domain}"),
                7 if rng.chance(0.6) => format!("{short}.prod.{org}.com"),
                _ => short,
            };
            let computer_dns_name = match dup_primary {
                Some(p) if dup_variant < 9 => machines[p].computer_dns_name.clone(),
                _ => fqdn,
            };

            // Times and health.
            let (first_seen, last_seen, health_status) = match dup_primary {
                Some(p) => {
                    let last = machines[p].first_seen - seconds(&mut rng, 3600, 10 * DAY);
                    let first = last - seconds(&mut rng, 30 * DAY, 700 * DAY);
                    (first, last, "Inactive")
                }
                None => {
                    let h = if onboarded {
                        [
                            "Active",
                            "Inactive",
                            "ImpairedCommunication",
                            "NoSensorData",
                            "NoSensorDataImpairedCommunication",
                            "Unknown",
                        ][rng.weighted(&[85, 8, 3, 2, 1, 1])]
                    } else {
                        ["Inactive", "Unknown"][rng.weighted(&[60, 40])]
                    };
                    let last = if h == "Inactive" {
                        anchor - seconds(&mut rng, 8 * DAY, 90 * DAY)
                    } else {
                        anchor - seconds(&mut rng, 300, DAY - 3600)
                    };
                    let first = last - seconds(&mut rng, 30 * DAY, 900 * DAY);
                    (first, last, h)
                }
            };

            // Network.
            let oui = match group {
                0 | 1 => *rng.pick(&[catalog::OUI_DELL, catalog::OUI_LENOVO, catalog::OUI_HP, catalog::OUI_INTEL]),
                2..=5 | 7 => *rng.pick(&[catalog::OUI_HYPERV, catalog::OUI_VMWARE, catalog::OUI_DELL]),
                6 | 8 => catalog::OUI_APPLE,
                _ => catalog::OUI_SAMSUNG,
            };
            let nic = (idx.wrapping_mul(0x9E37_79B1) ^ nic_key) & 0xFF_FFFF;
            let own_mac = [oui[0], oui[1], oui[2], (nic >> 16) as u8, (nic >> 8) as u8, nic as u8];
            let mac = match dup_primary {
                Some(p) if dup_variant < 7 || dup_variant == 9 => machines[p].mac,
                _ => Some(own_mac),
            };
            let net = i / 250;
            let ipv4 = format!("10.{}.{}.{}", 1 + net / 256, net % 256, 5 + i % 250);
            let laptop = (group <= 1 && rng.chance(0.6)) || group == 6 || mobile;
            let primary_kind = if laptop { "Wireless80211" } else { "Ethernet" };
            let mut ip_addresses = Vec::with_capacity(4);
            let mac_s = mac.as_ref().map(mac_plain);
            ip_addresses.push(IpAddress {
                ip_address: ipv4.clone(),
                mac_address: mac_s.clone(),
                kind: primary_kind,
                operational_status: "Up",
            });
            if onboarded && !mobile {
                let m = mac.unwrap_or(own_mac);
                ip_addresses.push(IpAddress {
                    ip_address: format!(
                        "fe80::{:x}:{:x}ff:fe{:x}:{:x}",
                        m[0] as u16 ^ 2,
                        m[2],
                        m[3],
                        (m[4] as u16) << 8 | m[5] as u16
                    ),
                    mac_address: mac_s.clone(),
                    kind: primary_kind,
                    operational_status: "Up",
                });
                if laptop && group <= 1 && rng.chance(0.3) {
                    let mut dock = own_mac;
                    dock[2] ^= 0x40;
                    ip_addresses.push(IpAddress {
                        ip_address: format!("169.254.{}.{}", rng.range(1, 254), rng.range(1, 254)),
                        mac_address: Some(mac_plain(&dock)),
                        kind: "Ethernet",
                        operational_status: "Down",
                    });
                }
                if windows || group == 7 {
                    ip_addresses.push(IpAddress {
                        ip_address: "127.0.0.1".into(),
                        mac_address: None,
                        kind: "SoftwareLoopback",
                        operational_status: "Up",
                    });
                }
            }
            // On some machines another adapter is listed first: Hyper-V's virtual switch on
            // Windows and Linux hosts (up, with its own MAC and address), a docking station's
            // wired adapter on laptops (down). `lastIpAddress` stays on the primary adapter: a
            // client must pair it with that adapter's MAC, not with the first one listed.
            let mut ar = Rng::for_item(seed, STREAM_ADAPTERS, i as u64);
            if onboarded && !mobile && ar.chance(0.25) {
                let mut other = own_mac;
                other[3] ^= 0x5A;
                let adapter = if laptop {
                    IpAddress {
                        ip_address: format!("169.254.{}.{}", ar.range(1, 254), ar.range(1, 254)),
                        mac_address: Some(mac_plain(&other)),
                        kind: "Ethernet",
                        operational_status: "Down",
                    }
                } else {
                    other[..3].copy_from_slice(&catalog::OUI_HYPERV);
                    IpAddress {
                        ip_address: format!("172.{}.{}.1", ar.range(17, 30), ar.range(0, 255)),
                        mac_address: Some(mac_plain(&other)),
                        kind: "Ethernet",
                        operational_status: "Up",
                    }
                };
                ip_addresses.insert(0, adapter);
            }
            let site_idx = catalog::SITES.iter().position(|s| *s == site).unwrap_or(0);
            let last_external_ip_address = if site_idx % 2 == 0 {
                format!("203.0.113.{}", 10 + site_idx)
            } else {
                format!("198.51.100.{}", 20 + site_idx)
            };

            // Groups, tags, misc.
            let groups_for: Vec<&(i64, &str, u16)> =
                catalog::RBAC_GROUPS.iter().filter(|g| g.2 & (1 << os.group) != 0).collect();
            let (rbac_group_id, rbac_group_name) = if groups_for.is_empty() || rng.chance(0.1) {
                (0, None)
            } else {
                let g = rng.pick(&groups_for);
                (g.0, Some(g.1))
            };
            let mut machine_tags = Vec::new();
            if rng.chance(0.25) {
                machine_tags.push(rng.pick(catalog::TAGS).to_string());
                if rng.chance(0.2) {
                    let t = rng.pick(catalog::TAGS).to_string();
                    if !machine_tags.contains(&t) {
                        machine_tags.push(t);
                    }
                }
            }
            if params.hostile && i < catalog::HOSTILE.len() {
                machine_tags.push(catalog::HOSTILE[(i + 1) % catalog::HOSTILE.len()].to_string());
            }
            let device_value = if machine_tags.iter().any(|t| t == "VIP") {
                "High"
            } else {
                ["Normal", "High", "Low"][rng.weighted(&[90, 7, 3])]
            };
            let is_aad_joined = group <= 1 && rng.chance(0.8);
            let aad_device_id = is_aad_joined.then(|| rng.guid());
            let agent_version = onboarded.then(|| *rng.pick(catalog::agent_versions(os.group)));
            let defender_av_status =
                if !onboarded { "Unknown" } else { ["Updated", "NotUpdated", "Unknown"][rng.weighted(&[85, 10, 5])] };
            let managed_by =
                if group <= 1 || mobile { ["Intune", "Unknown"][rng.weighted(&[70, 30])] } else { "Unknown" };
            let (os_architecture, os_processor) = if mobile || (group == 6 && rng.chance(0.6)) {
                ("64-bit", "arm64")
            } else if group <= 1 && rng.chance(0.03) {
                ("32-bit", "x86")
            } else {
                ("64-bit", "x64")
            };

            // Vulnerabilities: count and worst bucket now, rows on demand.
            let (vuln_count, worst_bucket) = if onboarded {
                let mut vr = Rng::for_item(seed, STREAM_VULNS ^ 0x100, i as u64);
                choose_vuln_profile(&mut vr, &group_lists[os.group], &group_bounds[os.group], mobile)
            } else {
                (0, None)
            };
            vuln_prefix.push(vuln_prefix[i] + vuln_count as u64);
            let exposure_level = match (onboarded, worst_bucket) {
                (false, _) | (true, None) => "None",
                (_, Some(Severity::Low)) => "Low",
                (_, Some(Severity::Medium)) => "Medium",
                _ => "High",
            };

            // Alerts (only for live onboarded records); riskScore follows the worst active one.
            let mut risk = 0usize; // 0 None, 1 Informational, 2 Low, 3 Medium, 4 High
            if onboarded && dup_primary.is_none() {
                let mut ar = Rng::for_item(seed, STREAM_ALERTS, i as u64);
                let r = ar.f64();
                let count = if r < 0.80 {
                    0
                } else if r < 0.92 {
                    1
                } else if r < 0.97 {
                    2
                } else {
                    3 + ar.below(4) as usize
                };
                for j in 0..count {
                    if j == 0 || ar.chance(0.5) {
                        incident += 1 + ar.below(3) as i64;
                    }
                    let a = make_alert(
                        &mut ar,
                        alerts.len() as u32,
                        idx,
                        first_seen,
                        last_seen,
                        anchor,
                        incident,
                        &ad_domain,
                        params.hostile,
                    );
                    if a.is_active() {
                        let s = match a.severity {
                            "Informational" => 1,
                            "Low" => 2,
                            "Medium" => 3,
                            "High" => 4,
                            _ => 0,
                        };
                        risk = risk.max(s);
                    }
                    alerts.push(a);
                }
            }
            let risk_score = ["None", "Informational", "Low", "Medium", "High"][risk];

            let in_network = dup_primary.is_none() && mac.is_some() && rng.chance(params.match_fraction);

            // 8 hex of the permuted index make the id reversible; the rest is noise.
            let id = format!("{:08x}{}", perm.forward(idx), Rng::for_item(seed, 99, i as u64).hex(32));

            let mut m = Machine {
                index: idx,
                id,
                computer_dns_name,
                first_seen,
                last_seen,
                os_platform: os.platform,
                version,
                os_build,
                os_distribution,
                os_architecture,
                os_processor,
                group: os.group as u8,
                onboarding_status,
                health_status,
                last_ip_address: ipv4,
                last_external_ip_address,
                agent_version,
                rbac_group_id,
                rbac_group_name,
                risk_score,
                exposure_level,
                device_value,
                is_aad_joined,
                aad_device_id,
                machine_tags,
                ip_addresses,
                defender_av_status,
                managed_by,
                is_potential_duplication: dup_primary.is_some(),
                duplicate_of: dup_primary.map(|p| p as u32),
                in_network,
                mac,
                vuln_count,
                worst_bucket,
            };
            if dup_primary.is_some() {
                // An old record keeps the sensor version it had when it stopped reporting.
                m.agent_version = catalog::agent_versions(os.group).last().copied();
            }
            if let Some(p) = dup_primary {
                machines[p].is_potential_duplication = true;
            }
            machines.push(m);
        }
        alert_start.push(alerts.len() as u32);

        // Name index: lower-case name hash → newest record with that name.
        let mut names: Vec<(u64, u32)> = machines.iter().map(|m| (name_hash(&m.computer_dns_name), m.index)).collect();
        names.sort_unstable_by(|a, b| {
            a.0.cmp(&b.0).then_with(|| machines[b.1 as usize].last_seen.cmp(&machines[a.1 as usize].last_seen))
        });
        let mut alert_ids = HashMap::with_capacity(alerts.len());
        for a in &mut alerts {
            while alert_ids.contains_key(&a.id) {
                a.id.push('0');
            }
            alert_ids.insert(a.id.clone(), a.index);
        }
        let vuln_ids = vulnerabilities.iter().map(|v| (v.id.to_ascii_uppercase(), v.index)).collect();

        let mut tenant = Tenant {
            params,
            machines,
            vulnerabilities,
            software,
            alerts,
            vuln_prefix,
            alert_start,
            group_lists,
            group_bounds,
            perm,
            names,
            alert_ids,
            vuln_ids,
            reverse: OnceLock::new(),
            evolution: Default::default(),
        };
        tenant.evolve();
        tenant
    }

    /// Adds or removes one tag of one machine, as "Add or Remove Tag for Machine" does
    /// (<https://learn.microsoft.com/en-us/defender-endpoint/api/add-or-remove-machine-tags>):
    /// one tag, never the whole list. Adding a tag the machine has, or removing one it has not,
    /// changes nothing. Returns whether the list changed.
    pub fn apply_tag(&mut self, index: u32, tag: &str, add: bool) -> bool {
        let Some(m) = self.machines.get_mut(index as usize) else { return false };
        let has = m.machine_tags.iter().position(|t| t == tag);
        match (add, has) {
            (true, None) => m.machine_tags.push(tag.to_owned()),
            (false, Some(i)) => {
                m.machine_tags.remove(i);
            }
            _ => return false,
        }
        true
    }

    /// A copy to change (a tag write): what is derived lazily is derived again when asked.
    pub fn copy(&self) -> Tenant {
        Tenant {
            params: self.params.clone(),
            machines: self.machines.clone(),
            vulnerabilities: self.vulnerabilities.clone(),
            software: self.software.clone(),
            alerts: self.alerts.clone(),
            vuln_prefix: self.vuln_prefix.clone(),
            alert_start: self.alert_start.clone(),
            group_lists: self.group_lists.clone(),
            group_bounds: self.group_bounds.clone(),
            perm: self.perm,
            names: self.names.clone(),
            alert_ids: self.alert_ids.clone(),
            vuln_ids: self.vuln_ids.clone(),
            reverse: OnceLock::new(),
            evolution: self.evolution.clone(),
        }
    }

    pub fn tenant_id(&self) -> &str {
        &self.params.tenant_id
    }
    pub fn seed(&self) -> u64 {
        self.params.seed
    }
    pub fn anchor(&self) -> DateTime<Utc> {
        self.params.anchor
    }
    pub fn machines(&self) -> &[Machine] {
        &self.machines
    }
    pub fn vulnerabilities(&self) -> &[Vulnerability] {
        &self.vulnerabilities
    }
    pub fn software(&self) -> &[Software] {
        &self.software
    }
    pub fn alerts(&self) -> &[Alert] {
        &self.alerts
    }

    /// Lookup by machine id (case-insensitive hex).
    pub fn machine_by_id(&self, id: &str) -> Option<&Machine> {
        if id.len() != 40 || !id.is_ascii() {
            return None;
        }
        let head = u32::from_str_radix(&id[..8], 16).ok()?;
        let idx = self.perm.inverse(head) as usize;
        let m = self.machines.get(idx)?;
        m.id.eq_ignore_ascii_case(id).then_some(m)
    }

    /// Lookup by computer DNS name (case-insensitive); the newest record wins for duplicates.
    pub fn machine_by_name(&self, name: &str) -> Option<&Machine> {
        let h = name_hash(name);
        let start = self.names.partition_point(|(x, _)| *x < h);
        self.names[start..]
            .iter()
            .take_while(|(x, _)| *x == h)
            .map(|(_, i)| &self.machines[*i as usize])
            .find(|m| m.computer_dns_name.eq_ignore_ascii_case(name))
    }

    /// `GET /api/machines/{id}` accepts a machine id or a computer name.
    pub fn machine_by_id_or_name(&self, key: &str) -> Option<&Machine> {
        self.machine_by_id(key).or_else(|| self.machine_by_name(key))
    }

    pub fn vulnerability(&self, cve: &str) -> Option<&Vulnerability> {
        self.vuln_ids.get(&cve.to_ascii_uppercase()).map(|i| &self.vulnerabilities[*i as usize])
    }

    pub fn software_by_id(&self, id: &str) -> Option<&Software> {
        self.software.iter().find(|s| s.id.eq_ignore_ascii_case(id))
    }

    pub fn alert(&self, id: &str) -> Option<&Alert> {
        self.alert_ids.get(id).map(|i| &self.alerts[*i as usize])
    }

    /// Alerts of one machine, by index.
    pub fn alerts_of(&self, machine_index: usize) -> &[Alert] {
        let a = self.alert_start[machine_index] as usize;
        let b = self.alert_start[machine_index + 1] as usize;
        &self.alerts[a..b]
    }

    /// Alerts of one machine, by machine id (empty for unknown ids).
    pub fn alerts_for(&self, machine_id: &str) -> &[Alert] {
        match self.machine_by_id(machine_id) {
            Some(m) => self.alerts_of(m.index as usize),
            None => &[],
        }
    }

    /// Total machine × vulnerability rows.
    pub fn total_machine_vulnerabilities(&self) -> u64 {
        *self.vuln_prefix.last().unwrap_or(&0)
    }

    /// Rows of machines `0..machine_index`.
    pub fn rows_before(&self, machine_index: usize) -> u64 {
        self.vuln_prefix[machine_index]
    }

    /// Map a global row offset to (machine index, row within the machine).
    pub fn locate_row(&self, offset: u64) -> Option<(usize, usize)> {
        if offset >= self.total_machine_vulnerabilities() {
            return None;
        }
        // First i with prefix[i] > offset, minus one.
        let i = self.vuln_prefix.partition_point(|p| *p <= offset) - 1;
        Some((i, (offset - self.vuln_prefix[i]) as usize))
    }

    /// The vulnerability indices of one machine, sorted.
    pub fn machine_vulnerability_indices(&self, machine_index: usize) -> Vec<u32> {
        match self.evolution.rows.get(&(machine_index as u32)) {
            Some(rows) => rows.iter().map(|r| r.vuln).collect(),
            None => self.derived_indices(machine_index),
        }
    }

    /// The vulnerability indices a machine had before any change, sorted; derived from (seed,
    /// machine index).
    fn derived_indices(&self, machine_index: usize) -> Vec<u32> {
        let m = &self.machines[machine_index];
        let k = m.vuln_count as usize;
        let Some(bucket) = m.worst_bucket else {
            return Vec::new();
        };
        if k == 0 {
            return Vec::new();
        }
        let list = &self.group_lists[m.group as usize];
        let b = &self.group_bounds[m.group as usize];
        let (first_lo, first_hi, end) = bucket_range(b, bucket);
        let mut rng = Rng::for_item(self.params.seed, STREAM_VULNS, machine_index as u64);
        let mut out: Vec<u32> = Vec::with_capacity(k);
        out.push(list[first_lo + rng.below((first_hi - first_lo) as u64) as usize]);
        while out.len() < k {
            let mut pos = 0usize;
            let mut found = false;
            for _ in 0..8 {
                // Pick a bucket in proportion to its size, then skew towards the front of the
                // bucket so that some CVEs are on many machines and most on few.
                let p = rng.below(end as u64) as usize;
                let bi = b.iter().position(|e| p < *e).unwrap_or(3);
                let lo = if bi == 0 { 0 } else { b[bi - 1] };
                let len = b[bi] - lo;
                let u = rng.f64();
                pos = lo + ((len as f64) * u * u) as usize;
                if !out.contains(&list[pos]) {
                    found = true;
                    break;
                }
            }
            if !found {
                while out.contains(&list[pos]) {
                    pos = (pos + 1) % end;
                }
            }
            out.push(list[pos]);
        }
        out.sort_unstable();
        out
    }

    /// The vulnerabilities of one machine.
    pub fn machine_vulnerabilities(&self, machine_index: usize) -> impl Iterator<Item = &Vulnerability> + '_ {
        self.machine_vulnerability_indices(machine_index).into_iter().map(|v| &self.vulnerabilities[v as usize])
    }

    /// When a (machine, vulnerability) row was first seen; derived, stable.
    pub fn row_first_seen(&self, machine_index: usize, vuln: u32) -> DateTime<Utc> {
        let m = &self.machines[machine_index];
        let span = (m.last_seen - m.first_seen).num_seconds().max(1) as u64;
        let h = hash3(self.params.seed ^ 0xF5, machine_index as u64, vuln as u64);
        m.first_seen + Duration::seconds((h % span) as i64)
    }

    /// Changes of one machine's vulnerabilities since `since` for the delta export: rows first
    /// seen after `since` are `New`; a few derived extra CVEs are `Fixed` and a few current rows
    /// `Updated`; then the events of the tenant's changes since (see `evolution`). In a shuffled
    /// order: Microsoft documents none, so a client must not depend on one.
    pub fn delta_events(&self, machine_index: usize, since: DateTime<Utc>) -> Vec<DeltaEvent<'_>> {
        let m = &self.machines[machine_index];
        if !m.is_onboarded() {
            return Vec::new();
        }
        let current = self.machine_vulnerability_indices(machine_index);
        let event = |vuln: u32, version: &'static str, status: &'static str, at: DateTime<Utc>| DeltaEvent {
            vuln,
            version: if version.is_empty() { self.row_version(machine_index, vuln) } else { version },
            status,
            group: m.rbac_group_name,
            at,
        };
        let mut out: Vec<DeltaEvent<'_>> = Vec::new();
        for v in &current {
            let t = self.row_first_seen(machine_index, *v);
            if t >= since {
                out.push(event(*v, "", "New", t));
            }
        }
        let mut r = Rng::for_item(self.params.seed, STREAM_DELTA, machine_index as u64);
        let window = 14 * DAY;
        let list = &self.group_lists[m.group as usize];
        if !list.is_empty() && r.chance(0.3) {
            for _ in 0..1 + r.below(2) {
                let v = list[r.below(list.len() as u64) as usize];
                let t = self.params.anchor - seconds(&mut r, 60, window);
                if !current.contains(&v) && t >= since && !out.iter().any(|e| e.vuln == v) {
                    out.push(event(v, self.vulnerabilities[v as usize].product_version, "Fixed", t));
                }
            }
        }
        if !current.is_empty() && r.chance(0.1) {
            let v = current[r.below(current.len() as u64) as usize];
            let t = self.params.anchor - seconds(&mut r, 60, window);
            if t >= since && !out.iter().any(|e| e.vuln == v) {
                out.push(event(v, "", "Updated", t));
            }
        }
        out.extend(self.change_events(machine_index).iter().filter(|e| e.at >= since).map(|e| DeltaEvent {
            vuln: e.vuln,
            version: &e.version,
            status: e.status,
            group: e.group,
            at: e.at,
        }));
        // Fisher–Yates, seeded by the machine and the request, so that every page agrees.
        let mut r =
            Rng::for_item(self.params.seed ^ since.timestamp() as u64, STREAM_DELTA ^ 0x5A, machine_index as u64);
        for i in (1..out.len()).rev() {
            out.swap(i, r.below(i as u64 + 1) as usize);
        }
        out
    }

    fn reverse(&self) -> &ReverseIndex {
        self.reverse.get_or_init(|| {
            let mut by_vuln = vec![Vec::new(); self.vulnerabilities.len()];
            let mut by_sw = vec![Vec::new(); self.software.len()];
            let mut exposed = vec![0u32; self.software.len()];
            let mut vulnerable_products: Vec<u16> = Vec::new();
            for m in &self.machines {
                vulnerable_products.clear();
                for v in self.machine_vulnerability_indices(m.index as usize) {
                    by_vuln[v as usize].push(m.index);
                    let p = self.vulnerabilities[v as usize].product;
                    if !vulnerable_products.contains(&p) {
                        vulnerable_products.push(p);
                    }
                }
                if !m.is_onboarded() {
                    continue;
                }
                for (pi, p) in PRODUCTS.iter().enumerate() {
                    if p.groups & (1 << m.group) == 0 {
                        continue;
                    }
                    let vulnerable = vulnerable_products.contains(&(pi as u16));
                    let installed =
                        vulnerable || hash3(self.params.seed ^ 0x5F, m.index as u64, pi as u64) % 100 < p.install_pct;
                    if installed {
                        by_sw[pi].push(m.index);
                    }
                    if vulnerable {
                        exposed[pi] += 1;
                    }
                }
            }
            ReverseIndex { machines_by_vuln: by_vuln, machines_by_software: by_sw, exposed_by_software: exposed }
        })
    }

    /// Machines exposed to a vulnerability (ascending machine index).
    pub fn machines_with_vulnerability(&self, vuln_index: usize) -> &[u32] {
        &self.reverse().machines_by_vuln[vuln_index]
    }

    /// Machines that have a software installed (ascending machine index).
    pub fn machines_with_software(&self, software_index: usize) -> &[u32] {
        &self.reverse().machines_by_software[software_index]
    }

    /// Number of machines with at least one vulnerability in the software.
    pub fn software_exposed_machines(&self, software_index: usize) -> u32 {
        self.reverse().exposed_by_software[software_index]
    }

    /// Observations for the product's network ingest: one per machine that is set to match
    /// (same MAC as `aa:bb:cc:dd:ee:ff`, same IP, the short host name), then network-only
    /// devices (printers, phones, cameras...) that match nothing in Defender.
    pub fn network_observations(&self) -> Vec<NetworkObservation> {
        let mut out = Vec::new();
        for m in self.machines.iter().filter(|m| m.in_network) {
            let (vendor_class, params) = catalog::dhcp_fingerprint(m.group as usize);
            let mut r = Rng::for_item(self.params.seed, STREAM_NETONLY ^ 0x77, m.index as u64);
            let user_agent = match m.group {
                0 | 1 if r.chance(0.3) => Some(format!(
                    "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/122.0.0.0 Safari/537.36 Edg/122.0.{}.0",
                    r.range(1000, 2400)
                )),
                6 if r.chance(0.3) => Some("Mozilla/5.0 (Macintosh; Intel Mac OS X 10_15_7) AppleWebKit/605.1.15 (KHTML, like Gecko) Version/17.4 Safari/605.1.15".into()),
                _ => None,
            };
            let seen = m.last_seen - Duration::seconds(r.range(0, 1800));
            out.push(NetworkObservation {
                mac: m.mac_colon(),
                ip: Some(m.last_ip_address.clone()),
                hostname: Some(m.short_name().to_string()),
                dhcp_vendor_class: vendor_class.map(String::from),
                dhcp_params: Some(params.to_string()),
                user_agent,
                seen_at: Some(seen.to_rfc3339_opts(chrono::SecondsFormat::Secs, true)),
            });
        }
        let extra = (self.machines.len() / 10).max(5);
        let weights: Vec<u32> = catalog::NETWORK_ONLY.iter().map(|d| d.5).collect();
        for j in 0..extra {
            let mut r = Rng::for_item(self.params.seed, STREAM_NETONLY, j as u64);
            let (_, prefix, oui, vendor_class, params, _) = catalog::NETWORK_ONLY[r.weighted(&weights)];
            let nic = ((j as u32).wrapping_mul(0x0019_660D) ^ 0x5A5A5A) & 0xFF_FFFF;
            let mac = [oui[0], oui[1], oui[2], (nic >> 16) as u8, (nic >> 8) as u8, nic as u8];
            let hostname = if prefix == "sep" {
                Some(format!("SEP{}", mac_plain(&mac)))
            } else if r.chance(0.8) {
                Some(format!("{prefix}-{}", base36(j as u64, 3)))
            } else {
                None
            };
            let seen = self.params.anchor - Duration::seconds(r.range(60, 3 * DAY));
            out.push(NetworkObservation {
                mac: Some(mac.iter().map(|b| format!("{b:02x}")).collect::<Vec<_>>().join(":")),
                ip: Some(format!("10.200.{}.{}", j / 250, 5 + j % 250)),
                hostname,
                dhcp_vendor_class: vendor_class.map(String::from),
                dhcp_params: Some(params.to_string()),
                user_agent: None,
                seen_at: Some(seen.to_rfc3339_opts(chrono::SecondsFormat::Secs, true)),
            });
        }
        out
    }
}

fn bucket_range(b: &[usize; 4], bucket: Severity) -> (usize, usize, usize) {
    match bucket {
        Severity::Low => (0, b[0], b[0]),
        Severity::Medium => (b[0], b[1], b[1]),
        _ => (b[1], b[3], b[3]),
    }
}

/// How many vulnerabilities a machine has and in which bucket its worst one is. Counts are
/// exponential (mean ~25) with a 4 % tail of heavily exposed machines.
fn choose_vuln_profile(rng: &mut Rng, list: &[u32], b: &[usize; 4], mobile: bool) -> (u32, Option<Severity>) {
    if list.is_empty() {
        return (0, None);
    }
    let mut want = rng.exp(if mobile { 6.0 } else { 25.0 }).round() as usize;
    if rng.chance(0.04) {
        want *= 4;
    }
    if want == 0 {
        return (0, None);
    }
    let preferred = [Severity::Low, Severity::Medium, Severity::High][rng.weighted(&[8, 30, 62])];
    // Fall back to another bucket if the platform has no vulnerability of that severity.
    let order: [Severity; 3] = match preferred {
        Severity::Low => [Severity::Low, Severity::Medium, Severity::High],
        Severity::Medium => [Severity::Medium, Severity::High, Severity::Low],
        _ => [Severity::High, Severity::Medium, Severity::Low],
    };
    for s in order {
        let (lo, hi, end) = bucket_range(b, s);
        if hi > lo {
            return ((want.min(end).min(600)) as u32, Some(s));
        }
    }
    (0, None)
}

fn group_lists(vulns: &[Vulnerability]) -> (Vec<Vec<u32>>, Vec<[usize; 4]>) {
    let mut lists = Vec::with_capacity(GROUP_COUNT);
    let mut bounds = Vec::with_capacity(GROUP_COUNT);
    for g in 0..GROUP_COUNT {
        let mut l: Vec<u32> = vulns.iter().filter(|v| v.groups & (1 << g) != 0).map(|v| v.index).collect();
        l.sort_by_key(|v| (vulns[*v as usize].severity, *v));
        let mut b = [0usize; 4];
        for (s, slot) in b.iter_mut().enumerate() {
            *slot = l.iter().filter(|v| vulns[**v as usize].severity as usize <= s).count();
        }
        lists.push(l);
        bounds.push(b);
    }
    (lists, bounds)
}

fn build_catalog(params: &TenantParams) -> (Vec<Vulnerability>, Vec<Software>) {
    let n = params.machines;
    let count = (300 + n / 25).clamp(300, 8000);
    let weights: Vec<u32> = PRODUCTS.iter().map(|p| p.weight).collect();
    let mut software: Vec<Software> = PRODUCTS
        .iter()
        .enumerate()
        .map(|(i, p)| Software {
            index: i as u16,
            id: format!("{}-_-{}", p.vendor, p.name),
            name: p.name,
            vendor: p.vendor,
            vulnerabilities: Vec::new(),
        })
        .collect();
    let mut vulns = Vec::with_capacity(count);
    let months = [
        "January",
        "February",
        "March",
        "April",
        "May",
        "June",
        "July",
        "August",
        "September",
        "October",
        "November",
        "December",
    ];
    for v in 0..count {
        let mut r = Rng::for_item(params.seed, STREAM_CATALOG, v as u64);
        let pi = r.weighted(&weights);
        let p = &PRODUCTS[pi];
        let severity = Severity::from_index(r.weighted(&[12, 40, 38, 10]));
        let cvss = match severity {
            Severity::Low => r.range(10, 39),
            Severity::Medium => r.range(40, 69),
            Severity::High => r.range(70, 89),
            Severity::Critical => r.range(90, 100),
        } as f64
            / 10.0;
        let year = 2019 + r.below(7) as i64;
        let published = Utc
            .with_ymd_and_hms(year as i32, 1 + r.below(12) as u32, 1 + r.below(28) as u32, r.below(24) as u32, 0, 0)
            .single()
            .unwrap_or(params.anchor);
        let published = published.min(params.anchor - Duration::days(2));
        let updated = (published + seconds(&mut r, 0, 200 * DAY)).min(params.anchor - Duration::days(1));
        let (kind, exploit_kinds) = *r.pick(catalog::VULN_KINDS);
        let public_exploit = r.chance(0.2);
        let exploit_verified = public_exploit && r.chance(0.4);
        let exploit_in_kit = exploit_verified && r.chance(0.3);
        let id = format!("CVE-{year}-{}", 1000 + v * 3 + (r.below(3) as usize));
        let mut description = format!(
            "{} {} vulnerability. An attacker who successfully exploited this vulnerability could {}.",
            p.display,
            kind,
            match kind {
                "Remote Code Execution" => "run arbitrary code in the context of the current user",
                "Elevation of Privilege" => "gain SYSTEM privileges",
                "Information Disclosure" => "read memory contents of the affected process",
                "Denial of Service" => "cause the affected component to stop responding",
                _ => "bypass security checks of the affected component",
            }
        );
        let mut exploit_uris = Vec::new();
        if public_exploit {
            exploit_uris.push(format!("https://www.exploit-db.com/exploits/{}", 40000 + v));
        }
        if params.hostile && v < catalog::HOSTILE.len() {
            description.push(' ');
            description.push_str(catalog::HOSTILE[v]);
            exploit_uris.push("javascript:alert(document.domain)".into());
        }
        let (av, ac, pr) = match kind {
            "Remote Code Execution" | "Spoofing" | "Memory Corruption" => ("N", "L", "N"),
            "Elevation of Privilege" => ("L", "L", "L"),
            _ => ("N", "H", "N"),
        };
        let imp = match severity {
            Severity::Low => "L",
            Severity::Medium => "L",
            _ => "H",
        };
        let cvss_vector = format!(
            "CVSS:3.1/AV:{av}/AC:{ac}/PR:{pr}/UI:R/S:U/C:{imp}/I:{imp}/A:{imp}/E:{}/RL:O/RC:C",
            if exploit_verified {
                "F"
            } else if public_exploit {
                "P"
            } else {
                "U"
            }
        );
        let fixing_kb_id = p.kb.then(|| format!("50{}", 30000 + r.below(9000)));
        let recommended_update = if p.kb {
            format!(
                "{} {} Security Updates",
                months[(published.format("%m").to_string().parse::<usize>().unwrap_or(1)) - 1],
                year
            )
        } else {
            format!("Update {} to a fixed version", p.display)
        };
        let zero_day = r.chance(0.01);
        let patch_first_available = (!zero_day).then(|| published + seconds(&mut r, 0, 20 * DAY));
        let first_detected = (published + seconds(&mut r, DAY, 60 * DAY)).min(params.anchor - Duration::days(1));
        software[pi].vulnerabilities.push(v as u32);
        let mut exploit_types: Vec<&'static str> = Vec::new();
        if public_exploit {
            exploit_types.extend_from_slice(exploit_kinds);
        }
        vulns.push(Vulnerability {
            index: v as u32,
            name: id.clone(),
            id,
            description,
            severity,
            cvss_v3: cvss,
            cvss_vector,
            published_on: published,
            updated_on: updated,
            first_detected,
            patch_first_available,
            public_exploit,
            exploit_verified,
            exploit_in_kit,
            exploit_types,
            exploit_uris,
            epss: (r.f64() * r.f64() * 1000.0).round() / 1000.0,
            zero_day,
            product: pi as u16,
            product_version: p.versions[r.below(p.versions.len() as u64) as usize],
            fixing_kb_id,
            recommended_update,
            groups: p.groups,
        });
    }
    (vulns, software)
}

/// An alert id as Defender writes them: `da` and the creation time in .NET ticks, then a number.
fn alert_id(r: &mut Rng, created: DateTime<Utc>) -> String {
    let ticks =
        (created.timestamp() + 62_135_596_800) as i128 * 10_000_000 + (created.timestamp_subsec_nanos() / 100) as i128;
    format!("da{ticks}_{}", (r.next_u64() as u32 as i32))
}

/// A new alert raised at `at` by a tenant change (see `evolution`): High, New, not yet
/// investigated or assigned, its template drawn like the generated ones'.
fn raised_alert(r: &mut Rng, index: u32, machine: u32, at: DateTime<Utc>, incident: i64) -> Alert {
    let t = &catalog::ALERTS[r.below(catalog::ALERTS.len() as u64) as usize];
    let template_no = catalog::ALERTS.iter().position(|x| std::ptr::eq(x, t)).unwrap_or(0);
    let first_event = at - seconds(r, 60, 600);
    Alert {
        index,
        id: alert_id(r, at),
        machine_index: machine,
        title: t.title.to_string(),
        description: t.description.to_string(),
        severity: "High",
        status: "New",
        category: t.category,
        detection_source: t.detection_source,
        mitre_techniques: t.mitre,
        threat_family_name: t.threat_family,
        alert_creation_time: at,
        first_event_time: first_event,
        last_event_time: at,
        last_update_time: at,
        resolved_time: None,
        incident_id: incident,
        investigation_id: None,
        investigation_state: "UnsupportedAlertType",
        assigned_to: None,
        classification: None,
        determination: None,
        detector_id: Rng::for_item(0xDE7EC7, template_no as u64, 0).guid(),
        related_user: None,
    }
}

#[allow(clippy::too_many_arguments)]
fn make_alert(
    r: &mut Rng,
    index: u32,
    machine: u32,
    first_seen: DateTime<Utc>,
    last_seen: DateTime<Utc>,
    anchor: DateTime<Utc>,
    incident: i64,
    ad_domain: &str,
    hostile: bool,
) -> Alert {
    let t = &catalog::ALERTS[r.below(catalog::ALERTS.len() as u64) as usize];
    let template_no = catalog::ALERTS.iter().position(|x| std::ptr::eq(x, t)).unwrap_or(0);
    let severity = ["Informational", "Low", "Medium", "High"][r.weighted(&[20, 30, 32, 18])];
    let status = ["New", "InProgress", "Resolved"][r.weighted(&[35, 15, 50])];
    let span = (last_seen - first_seen).num_seconds().clamp(1, 60 * DAY);
    let created =
        last_seen - Duration::seconds(r.below(span as u64) as i64) + Duration::milliseconds(r.below(1000) as i64);
    let first_event = created - seconds(r, 1, 600);
    let last_event = first_event + seconds(r, 0, 3600);
    let last_update = (created + seconds(r, 60, 5 * DAY)).min(anchor);
    let resolved = (status == "Resolved").then_some(last_update);
    let (classification, determination) = if status == "Resolved" {
        match r.below(3) {
            0 => (Some("TruePositive"), Some("Malware")),
            1 => (Some("FalsePositive"), Some("Clean")),
            _ => (Some("InformationalExpectedActivity"), Some("SecurityTesting")),
        }
    } else {
        (None, None)
    };
    let investigated = r.chance(0.7);
    let investigation_state = if !investigated {
        "UnsupportedAlertType"
    } else {
        match status {
            "Resolved" => "SuccessfullyRemediated",
            "InProgress" => "Running",
            _ => "PendingApproval",
        }
    };
    let first = *r.pick(catalog::FIRST_NAMES);
    let last = *r.pick(catalog::LAST_NAMES);
    let assigned_to = (status != "New").then(|| format!("secops-{first}@{ad_domain}"));
    let related_user = r.chance(0.6).then(|| (format!("{first}.{last}"), "CONTOSO".to_string()));
    let id = alert_id(r, created);
    let mut title = t.title.to_string();
    let mut description = t.description.to_string();
    if hostile && (index as usize) < catalog::HOSTILE.len() {
        title.push(' ');
        title.push_str(catalog::HOSTILE[index as usize]);
        description.push('\n');
        description.push_str(catalog::HOSTILE[(index as usize + 2) % catalog::HOSTILE.len()]);
    }
    Alert {
        index,
        id,
        machine_index: machine,
        title,
        description,
        severity,
        status,
        category: t.category,
        detection_source: t.detection_source,
        mitre_techniques: t.mitre,
        threat_family_name: t.threat_family,
        alert_creation_time: created,
        first_event_time: first_event,
        last_event_time: last_event,
        last_update_time: last_update,
        resolved_time: resolved,
        incident_id: incident,
        investigation_id: investigated.then(|| 5000 + index as i64 * 3),
        investigation_state,
        assigned_to,
        classification,
        determination,
        detector_id: Rng::for_item(0xDE7EC7, template_no as u64, 0).guid(),
        related_user,
    }
}
