//! JSON shapes of the API entities (camelCase, as on the Learn entity pages plus the observed
//! extra fields listed in defender-api.md §5). Views borrow from the tenant and serialise
//! straight into the response buffer; no intermediate `serde_json::Value`.
//!
//! Long because each entity's JSON is written out field by field, in Microsoft's casing, as on
//! its Learn page: a reader checks them against `docs/defender-api.md` line by line.

use chrono::{DateTime, Utc};
use serde::Serialize;

use super::actions::Action;
use super::catalog::PRODUCTS;
use super::rng::Rng;
use super::tenant::{Alert, IpAddress, Machine, STREAM_EVIDENCE, Software, Tenant, Vulnerability};

// Timestamps are formatted by hand: chrono's strftime machinery dominates the cost of large
// export pages in debug builds, and these three layouts are fixed.

fn push_num(out: &mut String, n: u32, width: usize) {
    let mut buf = [b'0'; 10];
    let mut i = buf.len();
    let mut n = n;
    loop {
        i -= 1;
        buf[i] = b'0' + (n % 10) as u8;
        n /= 10;
        if n == 0 {
            break;
        }
    }
    let digits = buf.len() - i;
    for _ in digits..width {
        out.push('0');
    }
    out.extend(buf[i..].iter().map(|b| *b as char));
}

fn push_date_time(out: &mut String, t: DateTime<Utc>, sep: char) {
    use chrono::{Datelike, Timelike};
    let n = t.naive_utc();
    push_num(out, n.year().max(0) as u32, 4);
    out.push('-');
    push_num(out, n.month(), 2);
    out.push('-');
    push_num(out, n.day(), 2);
    out.push(sep);
    push_num(out, n.hour(), 2);
    out.push(':');
    push_num(out, n.minute(), 2);
    out.push(':');
    push_num(out, n.second(), 2);
}

/// ISO-8601 with seven fractional digits and `Z`, as the service writes DateTimeOffset.
pub fn iso7(t: DateTime<Utc>) -> String {
    let mut s = String::with_capacity(28);
    push_date_time(&mut s, t, 'T');
    s.push('.');
    push_num(&mut s, t.timestamp_subsec_nanos() / 100, 7);
    s.push('Z');
    s
}

/// ISO-8601 with trailing fractional zeros trimmed (alerts show `…59.2Z`).
pub fn iso_trim(t: DateTime<Utc>) -> String {
    let mut s = iso7(t);
    s.pop();
    while s.ends_with('0') {
        s.pop();
    }
    if s.ends_with('.') {
        s.pop();
    }
    s.push('Z');
    s
}

/// Export records: `yyyy-MM-dd HH:mm:ss`, no `T`, no zone.
/// A delta record's `eventTimestamp`, with the seven fractional digits of Microsoft's example
/// (`2020-11-03 10:13:34.8476880`, page on the export's delta).
pub fn event_time(t: DateTime<Utc>) -> String {
    format!("{}.{:07}", export_time(t), t.timestamp_subsec_nanos() / 100)
}

pub fn export_time(t: DateTime<Utc>) -> String {
    let mut s = String::with_capacity(19);
    push_date_time(&mut s, t, ' ');
    s
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
pub struct MachineView<'a> {
    id: &'a str,
    computer_dns_name: &'a str,
    first_seen: String,
    last_seen: String,
    os_platform: &'a str,
    os_version: Option<String>,
    os_processor: &'a str,
    version: &'a str,
    last_ip_address: &'a str,
    last_external_ip_address: &'a str,
    agent_version: Option<&'a str>,
    os_build: Option<i64>,
    health_status: &'a str,
    device_value: &'a str,
    rbac_group_id: i64,
    rbac_group_name: Option<&'a str>,
    risk_score: &'a str,
    exposure_level: &'a str,
    is_aad_joined: bool,
    aad_device_id: Option<&'a str>,
    machine_tags: &'a [String],
    defender_av_status: &'a str,
    onboarding_status: &'a str,
    os_architecture: &'a str,
    managed_by: &'a str,
    managed_by_status: &'a str,
    ip_addresses: &'a [IpAddress],
    vm_metadata: Option<()>,
    is_potential_duplication: bool,
    merged_into_machine_id: Option<&'a str>,
    is_excluded: bool,
    exclusion_reason: Option<&'a str>,
}

impl<'a> MachineView<'a> {
    pub fn new(m: &'a Machine) -> Self {
        MachineView {
            id: &m.id,
            computer_dns_name: &m.computer_dns_name,
            first_seen: iso7(m.first_seen),
            last_seen: iso7(m.last_seen),
            os_platform: m.os_platform,
            os_version: m.os_distribution.map(|d| format!("{d} {}", m.version)),
            os_processor: m.os_processor,
            version: m.version,
            last_ip_address: &m.last_ip_address,
            last_external_ip_address: &m.last_external_ip_address,
            agent_version: m.agent_version,
            os_build: m.os_build,
            health_status: m.health_status,
            device_value: m.device_value,
            rbac_group_id: m.rbac_group_id,
            rbac_group_name: m.rbac_group_name,
            risk_score: m.risk_score,
            exposure_level: m.exposure_level,
            is_aad_joined: m.is_aad_joined,
            aad_device_id: m.aad_device_id.as_deref(),
            machine_tags: &m.machine_tags,
            defender_av_status: m.defender_av_status,
            onboarding_status: m.onboarding_status,
            os_architecture: m.os_architecture,
            managed_by: m.managed_by,
            managed_by_status: "Unknown",
            ip_addresses: &m.ip_addresses,
            vm_metadata: None,
            is_potential_duplication: m.is_potential_duplication,
            merged_into_machine_id: None,
            is_excluded: false,
            exclusion_reason: None,
        }
    }
}

/// The properties of a machine action the faults make Defender leave out.
#[derive(Clone, Copy)]
pub struct LeftOut {
    pub scope: bool,
    pub comment: bool,
}

impl LeftOut {
    pub fn by(faults: &crate::faults::Faults) -> Self {
        LeftOut { scope: faults.action_scope_null, comment: faults.action_comment_null }
    }
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
pub struct ActionView<'a> {
    id: &'a str,
    #[serde(rename = "type")]
    kind: &'a str,
    title: String,
    requestor: &'a str,
    requestor_comment: Option<&'a str>,
    status: &'a str,
    machine_id: &'a str,
    computer_dns_name: &'a str,
    creation_date_time_utc: String,
    last_update_date_time_utc: String,
    cancellation_requestor: Option<&'a str>,
    cancellation_comment: Option<&'a str>,
    cancellation_date_time_utc: Option<&'a str>,
    error_h_result: i64,
    scope: Option<&'a str>,
    external_id: Option<&'a str>,
    request_source: &'a str,
    related_file_info: Option<()>,
    commands: [(); 0],
    troubleshoot_info: Option<()>,
}

impl<'a> ActionView<'a> {
    /// The action as listed and returned, with what the faults leave out (the
    /// `action_scope_null` and `action_comment_null` knobs) null.
    pub fn shown(a: &'a Action, now: DateTime<Utc>, left_out: LeftOut) -> Self {
        let mut view = ActionView::new(a, now);
        if left_out.scope {
            view.scope = None;
        }
        if left_out.comment {
            view.requestor_comment = None;
        }
        view
    }

    pub fn new(a: &'a Action, now: DateTime<Utc>) -> Self {
        let (status, at) = a.status_at(now);
        ActionView {
            id: &a.id,
            kind: a.kind.as_str(),
            title: match a.kind.as_str() {
                "Isolate" => format!("Isolate device {}", a.computer_dns_name),
                "Unisolate" => format!("Release device {} from isolation", a.computer_dns_name),
                "RestrictCodeExecution" => format!("Restrict app execution on {}", a.computer_dns_name),
                "UnrestrictCodeExecution" => format!("Remove app restriction on {}", a.computer_dns_name),
                "CollectInvestigationPackage" => format!("Collect investigation package from {}", a.computer_dns_name),
                _ => format!("Run antivirus scan on {}", a.computer_dns_name),
            },
            requestor: &a.requestor,
            requestor_comment: Some(&a.comment),
            status,
            machine_id: &a.machine_id,
            computer_dns_name: &a.computer_dns_name,
            creation_date_time_utc: iso7(a.created),
            last_update_date_time_utc: iso7(at),
            cancellation_requestor: None,
            cancellation_comment: None,
            cancellation_date_time_utc: None,
            error_h_result: if status == "Failed" { -2147024891 } else { 0 },
            scope: a.scope,
            external_id: a.external_id.as_deref(),
            request_source: "PublicApi",
            related_file_info: None,
            commands: [],
            troubleshoot_info: None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;

    #[test]
    fn time_formats() {
        let t = Utc.with_ymd_and_hms(2024, 3, 5, 7, 8, 9).unwrap() + chrono::Duration::nanoseconds(120_000_000);
        assert_eq!(iso7(t), "2024-03-05T07:08:09.1200000Z");
        assert_eq!(iso_trim(t), "2024-03-05T07:08:09.12Z");
        assert_eq!(export_time(t), "2024-03-05 07:08:09");
        let whole = Utc.with_ymd_and_hms(2024, 12, 31, 23, 59, 59).unwrap();
        assert_eq!(iso_trim(whole), "2024-12-31T23:59:59Z");
    }
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
pub struct RelatedUser<'a> {
    user_name: &'a str,
    domain_name: &'a str,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
pub struct AlertView<'a> {
    id: &'a str,
    incident_id: i64,
    investigation_id: Option<i64>,
    assigned_to: Option<&'a str>,
    severity: &'a str,
    status: &'a str,
    classification: Option<&'a str>,
    determination: Option<&'a str>,
    investigation_state: &'a str,
    detection_source: &'a str,
    detector_id: &'a str,
    category: &'a str,
    threat_family_name: Option<&'a str>,
    threat_name: Option<&'a str>,
    title: &'a str,
    description: &'a str,
    alert_creation_time: String,
    first_event_time: String,
    last_event_time: String,
    last_update_time: String,
    resolved_time: Option<String>,
    machine_id: &'a str,
    computer_dns_name: &'a str,
    rbac_group_name: Option<&'a str>,
    aad_tenant_id: &'a str,
    related_user: Option<RelatedUser<'a>>,
    mitre_techniques: &'a [&'a str],
    comments: [(); 0],
    evidence: Vec<EvidenceView>,
}

impl<'a> AlertView<'a> {
    pub fn new(t: &'a Tenant, a: &'a Alert, expand_evidence: bool) -> Self {
        let m = &t.machines()[a.machine_index as usize];
        AlertView {
            id: &a.id,
            incident_id: a.incident_id,
            investigation_id: a.investigation_id,
            assigned_to: a.assigned_to.as_deref(),
            severity: a.severity,
            status: a.status,
            classification: a.classification,
            determination: a.determination,
            investigation_state: a.investigation_state,
            detection_source: a.detection_source,
            detector_id: &a.detector_id,
            category: a.category,
            threat_family_name: a.threat_family_name,
            threat_name: a.threat_family_name,
            title: &a.title,
            description: &a.description,
            alert_creation_time: iso_trim(a.alert_creation_time),
            first_event_time: iso_trim(a.first_event_time),
            last_event_time: iso_trim(a.last_event_time),
            last_update_time: iso_trim(a.last_update_time),
            resolved_time: a.resolved_time.map(iso_trim),
            machine_id: &m.id,
            computer_dns_name: &m.computer_dns_name,
            rbac_group_name: m.rbac_group_name,
            aad_tenant_id: t.tenant_id(),
            related_user: a.related_user.as_ref().map(|(u, d)| RelatedUser { user_name: u, domain_name: d }),
            mitre_techniques: a.mitre_techniques,
            comments: [],
            evidence: if expand_evidence { evidence(t, a) } else { Vec::new() },
        }
    }
}

/// Evidence item: every documented field present, unused ones null.
#[derive(Serialize, Default)]
#[serde(rename_all = "camelCase")]
pub struct EvidenceView {
    entity_type: &'static str,
    evidence_creation_time: String,
    sha1: Option<String>,
    sha256: Option<String>,
    file_name: Option<String>,
    file_path: Option<String>,
    process_id: Option<i64>,
    process_command_line: Option<String>,
    process_creation_time: Option<String>,
    parent_process_id: Option<i64>,
    parent_process_creation_time: Option<String>,
    parent_process_file_name: Option<String>,
    parent_process_file_path: Option<String>,
    ip_address: Option<String>,
    url: Option<String>,
    registry_key: Option<String>,
    registry_hive: Option<String>,
    registry_value_type: Option<String>,
    registry_value: Option<String>,
    account_name: Option<String>,
    domain_name: Option<String>,
    user_sid: Option<String>,
    aad_user_id: Option<String>,
    user_principal_name: Option<String>,
    detection_status: Option<&'static str>,
}

fn evidence(t: &Tenant, a: &Alert) -> Vec<EvidenceView> {
    let mut r = Rng::for_item(t.seed(), STREAM_EVIDENCE, a.index as u64);
    let created = iso_trim(a.alert_creation_time);
    let file = ["powershell.exe", "rundll32.exe", "invoice.pdf.exe", "mimikatz.exe", "update.ps1"][r.below(5) as usize];
    let mut out = vec![EvidenceView {
        entity_type: "File",
        evidence_creation_time: created.clone(),
        sha1: Some(r.hex(40)),
        sha256: Some(r.hex(64)),
        file_name: Some(file.into()),
        file_path: Some("C:\\Users\\Public\\Downloads".into()),
        detection_status: Some(if a.status == "Resolved" { "Prevented" } else { "Detected" }),
        ..Default::default()
    }];
    if r.chance(0.7) {
        out.push(EvidenceView {
            entity_type: "Process",
            evidence_creation_time: created.clone(),
            sha1: Some(r.hex(40)),
            sha256: Some(r.hex(64)),
            file_name: Some(file.into()),
            file_path: Some("C:\\Windows\\System32".into()),
            process_id: Some(r.range(400, 20000)),
            process_command_line: Some(format!("{file} -nop -w hidden -enc {}", r.hex(24))),
            process_creation_time: Some(iso_trim(a.first_event_time)),
            parent_process_id: Some(r.range(400, 20000)),
            parent_process_creation_time: Some(iso_trim(a.first_event_time)),
            parent_process_file_name: Some("explorer.exe".into()),
            parent_process_file_path: Some("C:\\Windows".into()),
            detection_status: Some("Detected"),
            ..Default::default()
        });
    }
    if let Some((user, domain)) = &a.related_user {
        out.push(EvidenceView {
            entity_type: "User",
            evidence_creation_time: created,
            account_name: Some(user.clone()),
            domain_name: Some(domain.clone()),
            user_sid: Some(format!(
                "S-1-5-21-{}-{}-{}-{}",
                r.range(1_000_000, 9_999_999),
                r.range(1_000_000, 9_999_999),
                r.range(1_000_000, 9_999_999),
                r.range(1000, 9999)
            )),
            aad_user_id: Some(r.guid()),
            user_principal_name: Some(format!("{user}@contoso.com")),
            ..Default::default()
        });
    }
    out
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
pub struct VulnerabilityView<'a> {
    id: &'a str,
    name: &'a str,
    description: &'a str,
    severity: &'a str,
    cvss_v3: f64,
    cvss_vector: &'a str,
    exposed_machines: usize,
    published_on: String,
    updated_on: String,
    first_detected: String,
    patch_first_available: Option<String>,
    public_exploit: bool,
    exploit_verified: bool,
    exploit_in_kit: bool,
    exploit_types: &'a [&'a str],
    exploit_uris: &'a [String],
    cve_supportability: &'a str,
    epss: f64,
    tags: Vec<&'a str>,
}

impl<'a> VulnerabilityView<'a> {
    pub fn new(t: &'a Tenant, v: &'a Vulnerability) -> Self {
        VulnerabilityView {
            id: &v.id,
            name: &v.name,
            description: &v.description,
            severity: v.severity.as_str(),
            cvss_v3: v.cvss_v3,
            cvss_vector: &v.cvss_vector,
            exposed_machines: t.machines_with_vulnerability(v.index as usize).len(),
            published_on: iso7(v.published_on),
            updated_on: iso7(v.updated_on),
            first_detected: iso7(v.first_detected),
            patch_first_available: v.patch_first_available.map(iso7),
            public_exploit: v.public_exploit,
            exploit_verified: v.exploit_verified,
            exploit_in_kit: v.exploit_in_kit,
            exploit_types: &v.exploit_types,
            exploit_uris: &v.exploit_uris,
            cve_supportability: "Supported",
            epss: v.epss,
            tags: if v.zero_day { vec!["ZeroDay", "NoSecurityUpdate"] } else { vec![] },
        }
    }
}

/// `machinesVulnerabilities` record.
#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
pub struct AssetVulnerabilityView<'a> {
    pub id: String,
    pub cve_id: &'a str,
    pub machine_id: &'a str,
    pub fixing_kb_id: Option<&'a str>,
    pub product_name: &'a str,
    pub product_vendor: &'a str,
    pub product_version: &'a str,
    pub severity: &'a str,
}

impl<'a> AssetVulnerabilityView<'a> {
    pub fn new(t: &'a Tenant, m: &'a Machine, v: &'a Vulnerability) -> Self {
        let p = &PRODUCTS[v.product as usize];
        let version = t.row_version(m.index as usize, v.index);
        AssetVulnerabilityView {
            id: format!(
                "{}-_-{}-_-{}-_-{}-_-{}-_-{}",
                m.id,
                v.id,
                p.vendor,
                p.name,
                version,
                v.fixing_kb_id.as_deref().unwrap_or("")
            ),
            cve_id: &v.id,
            machine_id: &m.id,
            fixing_kb_id: v.fixing_kb_id.as_deref(),
            product_name: p.name,
            product_vendor: p.vendor,
            product_version: version,
            severity: v.severity.as_str(),
        }
    }
}

/// Export-assessment record (JSON pages, files and delta).
#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
pub struct ExportRecord<'a> {
    pub id: String,
    pub device_id: &'a str,
    pub rbac_group_name: &'a str,
    pub device_name: &'a str,
    pub os_platform: &'a str,
    pub os_version: &'a str,
    pub os_architecture: &'a str,
    pub software_vendor: &'a str,
    pub software_name: &'a str,
    pub software_version: &'a str,
    pub cve_id: Option<&'a str>,
    pub vulnerability_severity_level: Option<&'a str>,
    pub recommended_security_update: &'a str,
    pub recommended_security_update_id: Option<String>,
    pub recommended_security_update_url: Option<String>,
    pub disk_paths: Vec<&'a str>,
    pub registry_paths: Vec<&'a str>,
    pub last_seen_timestamp: String,
    pub first_seen_timestamp: String,
    pub exploitability_level: &'a str,
    pub recommendation_reference: String,
    pub security_update_available: bool,
    pub cvss_score: f64,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub is_onboarded: Option<bool>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub status: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub event_timestamp: Option<String>,
}

impl<'a> ExportRecord<'a> {
    pub fn new(t: &'a Tenant, m: &'a Machine, v: &'a Vulnerability) -> Self {
        let p = &PRODUCTS[v.product as usize];
        let version = t.row_version(m.index as usize, v.index);
        ExportRecord {
            id: export_id(m, v, version),
            device_id: &m.id,
            rbac_group_name: m.rbac_group_name.unwrap_or("Unassigned"),
            device_name: &m.computer_dns_name,
            os_platform: m.os_platform,
            os_version: m.version,
            os_architecture: if m.os_architecture == "64-bit" { "x64" } else { "x86" },
            software_vendor: p.vendor,
            software_name: p.name,
            software_version: version,
            cve_id: Some(&v.id),
            vulnerability_severity_level: Some(v.severity.as_str()),
            recommended_security_update: &v.recommended_update,
            recommended_security_update_id: v.fixing_kb_id.as_ref().map(|k| format!("KB{k}")),
            recommended_security_update_url: v
                .fixing_kb_id
                .as_ref()
                .map(|k| format!("https://catalog.update.microsoft.com/v7/site/Search.aspx?q=KB{k}")),
            disk_paths: if p.disk_path.is_empty() { vec![] } else { vec![p.disk_path] },
            registry_paths: if p.registry_path.is_empty() { vec![] } else { vec![p.registry_path] },
            last_seen_timestamp: export_time(m.last_seen),
            first_seen_timestamp: export_time(t.row_first_seen(m.index as usize, v.index)),
            exploitability_level: v.exploitability_level(),
            recommendation_reference: format!("va-_-{}-_-{}", p.vendor, p.name),
            security_update_available: v.patch_first_available.is_some(),
            cvss_score: v.cvss_v3,
            is_onboarded: None,
            status: None,
            event_timestamp: None,
        }
    }
}

impl<'a> ExportRecord<'a> {
    /// The record as it is about another version of the product (a delta event's).
    pub fn set_version(&mut self, m: &Machine, v: &Vulnerability, version: &'a str) {
        self.id = export_id(m, v, version);
        self.software_version = version;
    }
}

/// The record id: machine, software, version and CVE, so that a machine's record of one CVE on
/// two versions are two records, and a device-group move repeats the same one (Microsoft's page
/// on the export, "RBAC-scoped duplicates").
fn export_id(m: &Machine, v: &Vulnerability, version: &str) -> String {
    let p = &PRODUCTS[v.product as usize];
    format!("{}_{}_{}_{}_{}", m.id, p.vendor, p.name, version, v.id)
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
pub struct SoftwareView<'a> {
    id: &'a str,
    name: &'a str,
    vendor: &'a str,
    weaknesses: usize,
    public_exploit: bool,
    active_alert: bool,
    exposed_machines: u32,
    impact_score: f64,
}

impl<'a> SoftwareView<'a> {
    pub fn new(t: &'a Tenant, s: &'a Software) -> Self {
        let vulns = t.vulnerabilities();
        let exposed = t.software_exposed_machines(s.index as usize);
        let public = s.vulnerabilities.iter().any(|v| vulns[*v as usize].public_exploit);
        let total = t.machines().len().max(1) as f64;
        SoftwareView {
            id: &s.id,
            name: s.name,
            vendor: s.vendor,
            weaknesses: s.vulnerabilities.len(),
            public_exploit: public,
            active_alert: false,
            exposed_machines: exposed,
            impact_score: ((exposed as f64 / total) * s.vulnerabilities.len().min(50) as f64 * 100.0).round() / 100.0,
        }
    }
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
pub struct MachineReferenceView<'a> {
    id: &'a str,
    computer_dns_name: &'a str,
    os_platform: &'a str,
    rbac_group_name: Option<&'a str>,
    rbac_group_id: i64,
}

impl<'a> MachineReferenceView<'a> {
    pub fn new(m: &'a Machine) -> Self {
        MachineReferenceView {
            id: &m.id,
            computer_dns_name: &m.computer_dns_name,
            os_platform: m.os_platform,
            rbac_group_name: m.rbac_group_name,
            rbac_group_id: m.rbac_group_id,
        }
    }
}
