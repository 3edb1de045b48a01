//! Permissive mirrors of the Defender API entities the product reads (defender-api.md §5).
//!
//! Rules: unknown fields are ignored; almost every field is `Option` (the service omits or
//! nulls fields freely); documented spelling variants are accepted (`onboardingStatus` /
//! `onboardingstatus`, `lastUpdateDateTimeUtc` / `lastUpdateTimeUtc`, `cveSupportability` /
//! `CveSupportability`, `externalId` / `externalID`); enum-like values stay open strings with
//! case-insensitive helpers (the service's value lists are not closed). `rbacGroupId` is a
//! number in JSON although documented as a string: both are accepted. Timestamps accept ISO
//! 8601 with up to 7 fractional digits (`Z` or an offset, or none = UTC) and the export form
//! `yyyy-MM-dd HH:mm:ss[.fffffff]`.
//!
//! A record whose field has the wrong JSON type is *not* skipped: the client rejects the whole
//! page with [`super::DefenderError::BadResponse`] naming the record and the field, so a sync
//! never commits a silently partial inventory.

pub use crate::domain::action::ActionStatus;
use chrono::{DateTime, NaiveDateTime, Utc};
use serde::{Deserialize, Deserializer};

/// Items the pager can de-duplicate.
pub trait HasId {
    fn id(&self) -> &str;
    /// What makes a record of a listing one record: its id, unless the listing repeats ids on
    /// purpose (see [`ExportVulnerability`]). Paging drops a record whose key it already saw.
    fn record_key(&self) -> std::borrow::Cow<'_, str> {
        self.id().into()
    }
}

fn de_time<'de, D: Deserializer<'de>>(d: D) -> Result<Option<DateTime<Utc>>, D::Error> {
    let s: Option<String> = Option::deserialize(d)?;
    match s {
        None => Ok(None),
        Some(s) if s.trim().is_empty() => Ok(None),
        Some(s) => parse_time(&s).map(Some).ok_or_else(|| serde::de::Error::custom(format!("invalid timestamp {s:?}"))),
    }
}

/// Parse a Defender timestamp (see module docs).
pub fn parse_time(s: &str) -> Option<DateTime<Utc>> {
    let s = s.trim();
    if let Ok(t) = DateTime::parse_from_rfc3339(s) {
        return Some(t.with_timezone(&Utc));
    }
    // `2018-08-01Z` style date-only values and zone-less forms.
    let t = s.trim_end_matches('Z');
    for f in ["%Y-%m-%dT%H:%M:%S%.f", "%Y-%m-%d %H:%M:%S%.f"] {
        if let Ok(n) = NaiveDateTime::parse_from_str(t, f) {
            return Some(n.and_utc());
        }
    }
    chrono::NaiveDate::parse_from_str(t, "%Y-%m-%d").ok().and_then(|d| d.and_hms_opt(0, 0, 0)).map(|n| n.and_utc())
}

/// A string, or a number rendered as a string (`rbacGroupId`).
fn de_string_or_number<'de, D: Deserializer<'de>>(d: D) -> Result<Option<String>, D::Error> {
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum V {
        S(String),
        N(serde_json::Number),
    }
    Ok(Option::<V>::deserialize(d)?.map(|v| match v {
        V::S(s) => s,
        V::N(n) => n.to_string(),
    }))
}

/// `null` and absent both mean "empty list".
fn de_null_vec<'de, D: Deserializer<'de>, T: Deserialize<'de>>(d: D) -> Result<Vec<T>, D::Error> {
    Ok(Option::<Vec<T>>::deserialize(d)?.unwrap_or_default())
}

fn eq_ci(a: Option<&str>, b: &str) -> bool {
    a.is_some_and(|a| a.trim().eq_ignore_ascii_case(b))
}

/// A network address of a machine (`ipAddresses[]`).
#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
#[serde(default, rename_all = "camelCase")]
pub struct IpAddress {
    pub ip_address: Option<String>,
    /// 12 upper-case hex digits without separators; `null` for loopback.
    pub mac_address: Option<String>,
    #[serde(rename = "type")]
    pub kind: Option<String>,
    pub operational_status: Option<String>,
}

/// `GET /api/machines` item.
#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
#[serde(default, rename_all = "camelCase")]
pub struct Machine {
    pub id: String,
    pub computer_dns_name: Option<String>,
    #[serde(deserialize_with = "de_time")]
    pub first_seen: Option<DateTime<Utc>>,
    #[serde(deserialize_with = "de_time")]
    pub last_seen: Option<DateTime<Utc>>,
    pub os_platform: Option<String>,
    pub os_version: Option<String>,
    pub os_processor: Option<String>,
    pub os_architecture: Option<String>,
    pub version: Option<String>,
    pub os_build: Option<i64>,
    #[serde(alias = "onboardingstatus")]
    pub onboarding_status: Option<String>,
    pub health_status: Option<String>,
    pub device_value: Option<String>,
    pub risk_score: Option<String>,
    pub exposure_level: Option<String>,
    pub last_ip_address: Option<String>,
    pub last_external_ip_address: Option<String>,
    pub agent_version: Option<String>,
    #[serde(deserialize_with = "de_null_vec")]
    pub ip_addresses: Vec<IpAddress>,
    #[serde(deserialize_with = "de_null_vec")]
    pub machine_tags: Vec<String>,
    #[serde(deserialize_with = "de_string_or_number")]
    pub rbac_group_id: Option<String>,
    pub rbac_group_name: Option<String>,
    pub is_aad_joined: Option<bool>,
    pub aad_device_id: Option<String>,
    pub defender_av_status: Option<String>,
    pub managed_by: Option<String>,
    pub managed_by_status: Option<String>,
    pub merged_into_machine_id: Option<String>,
    pub is_potential_duplication: Option<bool>,
    pub is_excluded: Option<bool>,
    pub exclusion_reason: Option<String>,
}

impl Machine {
    /// `onboardingStatus` is `Onboarded` (any case).
    pub fn is_onboarded(&self) -> bool {
        eq_ci(self.onboarding_status.as_deref(), "onboarded")
    }
    /// `healthStatus` is `Active` (any case).
    pub fn is_active(&self) -> bool {
        eq_ci(self.health_status.as_deref(), "active")
    }
}

impl HasId for Machine {
    fn id(&self) -> &str {
        &self.id
    }
}

/// `GET /api/vulnerabilities` item.
#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
#[serde(default, rename_all = "camelCase")]
pub struct Vulnerability {
    pub id: String,
    pub name: Option<String>,
    pub description: Option<String>,
    /// `Low`, `Medium`, `High`, `Critical`.
    pub severity: Option<String>,
    pub cvss_v3: Option<f64>,
    pub cvss_vector: Option<String>,
    pub exposed_machines: Option<i64>,
    #[serde(deserialize_with = "de_time")]
    pub published_on: Option<DateTime<Utc>>,
    #[serde(deserialize_with = "de_time")]
    pub updated_on: Option<DateTime<Utc>>,
    #[serde(deserialize_with = "de_time")]
    pub first_detected: Option<DateTime<Utc>>,
    #[serde(deserialize_with = "de_time")]
    pub patch_first_available: Option<DateTime<Utc>>,
    pub public_exploit: Option<bool>,
    pub exploit_verified: Option<bool>,
    pub exploit_in_kit: Option<bool>,
    #[serde(deserialize_with = "de_null_vec")]
    pub exploit_types: Vec<String>,
    #[serde(deserialize_with = "de_null_vec")]
    pub exploit_uris: Vec<String>,
    #[serde(alias = "CveSupportability")]
    pub cve_supportability: Option<String>,
    #[serde(alias = "EPSS")]
    pub epss: Option<f64>,
    #[serde(deserialize_with = "de_null_vec")]
    pub tags: Vec<String>,
}

impl Vulnerability {
    /// Any of the exploit flags is set.
    pub fn has_exploit(&self) -> bool {
        self.public_exploit == Some(true) || self.exploit_verified == Some(true) || self.exploit_in_kit == Some(true)
    }
}

impl HasId for Vulnerability {
    fn id(&self) -> &str {
        &self.id
    }
}

/// Record of the bulk listing `GET /api/vulnerabilities/machinesVulnerabilities`: one per
/// (machine, CVE, product version).
#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
#[serde(default, rename_all = "camelCase")]
pub struct MachineVulnerability {
    /// `{machineId}-_-{cveId}-_-{vendor}-_-{product}-_-{version}-_-{kbId or empty}`.
    pub id: String,
    pub cve_id: Option<String>,
    pub machine_id: Option<String>,
    pub severity: Option<String>,
    pub product_name: Option<String>,
    pub product_vendor: Option<String>,
    pub product_version: Option<String>,
    /// KB number without "KB".
    pub fixing_kb_id: Option<String>,
}

impl HasId for MachineVulnerability {
    fn id(&self) -> &str {
        &self.id
    }
}

/// Record of the export-assessment JSON (`GET /api/machines/SoftwareVulnerabilitiesByMachine`).
#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
#[serde(default, rename_all = "camelCase")]
pub struct ExportVulnerability {
    pub id: String,
    pub device_id: Option<String>,
    pub device_name: Option<String>,
    pub rbac_group_name: Option<String>,
    pub os_platform: Option<String>,
    pub os_version: Option<String>,
    pub os_architecture: Option<String>,
    pub software_vendor: Option<String>,
    pub software_name: Option<String>,
    pub software_version: Option<String>,
    pub cve_id: Option<String>,
    pub vulnerability_severity_level: Option<String>,
    pub cvss_score: Option<f64>,
    pub recommended_security_update: Option<String>,
    pub recommended_security_update_id: Option<String>,
    pub exploitability_level: Option<String>,
    pub security_update_available: Option<bool>,
    #[serde(deserialize_with = "de_time")]
    pub first_seen_timestamp: Option<DateTime<Utc>>,
    #[serde(deserialize_with = "de_time")]
    pub last_seen_timestamp: Option<DateTime<Utc>>,
    /// Delta export only: `New`, `Fixed` or `Updated`.
    pub status: Option<String>,
    /// Delta export only: when the change was found. Microsoft's page shows both
    /// `2020-11-03 10:13:34.8476880` (current) and `2021-01-11T11:06:08.291Z` (earlier).
    #[serde(deserialize_with = "de_time")]
    pub event_timestamp: Option<DateTime<Utc>>,
}

impl HasId for ExportVulnerability {
    fn id(&self) -> &str {
        &self.id
    }
    /// The delta export repeats ids on purpose: a machine that moved between device groups is
    /// reported "once under its previous group with status "Fixed" and once under its current
    /// group with status "New"", and a delta spans every 6-hour window since `sinceTime`, so one
    /// record can be New, Fixed and New again
    /// (<https://learn.microsoft.com/en-us/defender-endpoint/api/get-assessment-software-vulnerabilities>).
    /// Every one of them is kept; only the very same event repeated by a shifting page is one.
    fn record_key(&self) -> std::borrow::Cow<'_, str> {
        format!(
            "{}\u{1f}{}\u{1f}{}\u{1f}{}",
            self.id,
            self.status.as_deref().unwrap_or(""),
            self.rbac_group_name.as_deref().unwrap_or(""),
            self.event_timestamp.map(|t| t.timestamp_nanos_opt().unwrap_or_default()).unwrap_or_default()
        )
        .into()
    }
}

/// `GET /api/alerts` item.
#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
#[serde(default, rename_all = "camelCase")]
pub struct Alert {
    pub id: String,
    pub title: Option<String>,
    pub description: Option<String>,
    /// `UnSpecified`, `Informational`, `Low`, `Medium`, `High`.
    pub severity: Option<String>,
    /// `Unknown`, `New`, `InProgress`, `Resolved`.
    pub status: Option<String>,
    pub classification: Option<String>,
    pub determination: Option<String>,
    pub category: Option<String>,
    pub detection_source: Option<String>,
    pub threat_family_name: Option<String>,
    pub machine_id: Option<String>,
    pub computer_dns_name: Option<String>,
    pub rbac_group_name: Option<String>,
    pub incident_id: Option<i64>,
    pub investigation_id: Option<i64>,
    pub investigation_state: Option<String>,
    pub assigned_to: Option<String>,
    #[serde(deserialize_with = "de_time")]
    pub alert_creation_time: Option<DateTime<Utc>>,
    #[serde(deserialize_with = "de_time")]
    pub first_event_time: Option<DateTime<Utc>>,
    #[serde(deserialize_with = "de_time")]
    pub last_event_time: Option<DateTime<Utc>>,
    #[serde(deserialize_with = "de_time")]
    pub last_update_time: Option<DateTime<Utc>>,
    #[serde(deserialize_with = "de_time")]
    pub resolved_time: Option<DateTime<Utc>>,
    #[serde(deserialize_with = "de_null_vec")]
    pub mitre_techniques: Vec<String>,
}

impl Alert {
    /// Not `Resolved` (any case).
    pub fn is_active(&self) -> bool {
        !eq_ci(self.status.as_deref(), "resolved")
    }
}

impl HasId for Alert {
    fn id(&self) -> &str {
        &self.id
    }
}

/// A machine action (isolate, unisolate, AV scan, ...).
#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
#[serde(default, rename_all = "camelCase")]
pub struct MachineAction {
    pub id: String,
    /// `Isolate`, `Unisolate`, `RunAntiVirusScan`, ...
    #[serde(rename = "type")]
    pub kind: Option<String>,
    /// `Full`/`Selective` (isolation), `Quick`/`Full` (scan).
    pub scope: Option<String>,
    pub title: Option<String>,
    pub requestor: Option<String>,
    pub requestor_comment: Option<String>,
    pub request_source: Option<String>,
    #[serde(alias = "externalID")]
    pub external_id: Option<String>,
    /// `Pending`, `InProgress`, `Succeeded`, `Failed`, `TimeOut`, `Cancelled`.
    pub status: Option<String>,
    pub machine_id: Option<String>,
    pub computer_dns_name: Option<String>,
    #[serde(deserialize_with = "de_time")]
    pub creation_date_time_utc: Option<DateTime<Utc>>,
    #[serde(alias = "lastUpdateTimeUtc", deserialize_with = "de_time")]
    pub last_update_date_time_utc: Option<DateTime<Utc>>,
    pub cancellation_requestor: Option<String>,
    pub cancellation_comment: Option<String>,
    #[serde(deserialize_with = "de_time")]
    pub cancellation_date_time_utc: Option<DateTime<Utc>>,
    pub error_h_result: Option<i64>,
    /// Not Defender's: its clock less this host's (seconds) when the answer carrying this action
    /// came, from the answer's `Date` header, so that its times can be compared with ours.
    #[serde(skip)]
    pub clock_offset: Option<i64>,
}

impl MachineAction {
    /// Parsed [`MachineAction::status`] (`None` for an unknown value).
    pub fn status(&self) -> Option<ActionStatus> {
        self.status.as_deref().and_then(ActionStatus::parse)
    }
    /// Succeeded, Failed, TimeOut or Cancelled.
    pub fn is_final(&self) -> bool {
        self.status().is_some_and(ActionStatus::is_final)
    }
}

impl HasId for MachineAction {
    fn id(&self) -> &str {
        &self.id
    }
}

/// `{"error": {"code", "message", "target"}}`.
#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
pub struct ErrorEnvelope {
    pub error: ApiErrorBody,
}

#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
#[serde(default)]
pub struct ApiErrorBody {
    /// A name (`BadRequest`, `TooManyRequests`, ...) or digits (`"429"`).
    #[serde(deserialize_with = "de_string_or_number")]
    pub code: Option<String>,
    pub message: Option<String>,
    /// Tracking id (log it; not a field path).
    pub target: Option<String>,
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn machine_variants() {
        let m: Machine = serde_json::from_value(json!({
            "id": "1e5bc9d7e413ddd7902c2932e418702b84d0cc07",
            "onboardingstatus": "onboarded",
            "rbacGroupId": 140,
            "osBuild": null,
            "firstSeen": "2018-08-02T14:55:03.7791856Z",
            "lastSeen": "2018-08-02T14:55:03Z",
            "ipAddresses": [{"ipAddress": "127.0.0.1", "macAddress": null, "type": "SoftwareLoopback", "operationalStatus": "Up"}],
            "machineTags": null,
            "vmMetadata": null,
            "somethingNew": {"x": 1},
        }))
        .unwrap();
        assert!(m.is_onboarded());
        assert_eq!(m.rbac_group_id.as_deref(), Some("140"));
        assert_eq!(m.os_build, None);
        assert_eq!(m.ip_addresses[0].mac_address, None);
        assert_eq!(m.ip_addresses[0].kind.as_deref(), Some("SoftwareLoopback"));
        assert!(m.machine_tags.is_empty());
        assert_eq!(m.first_seen.unwrap().to_rfc3339(), "2018-08-02T14:55:03.779185600+00:00");
        let m: Machine =
            serde_json::from_value(json!({"id": "x", "onboardingStatus": "Onboarded", "rbacGroupId": "7"})).unwrap();
        assert!(m.is_onboarded());
        assert_eq!(m.rbac_group_id.as_deref(), Some("7"));
    }

    #[test]
    fn action_spellings_and_status() {
        let a: MachineAction = serde_json::from_value(json!({
            "id": "a", "type": "Isolate", "status": "inprogress",
            "lastUpdateTimeUtc": "2019-01-01T00:00:00.1234567Z", "externalID": "e"
        }))
        .unwrap();
        assert_eq!(a.status(), Some(ActionStatus::InProgress));
        assert!(!a.is_final());
        assert!(a.last_update_date_time_utc.is_some());
        assert_eq!(a.external_id.as_deref(), Some("e"));
        let a: MachineAction = serde_json::from_value(json!({
            "id": "a", "status": "Succeeded", "lastUpdateDateTimeUtc": "2019-01-01T00:00:00Z"
        }))
        .unwrap();
        assert!(a.is_final());
        assert!(a.last_update_date_time_utc.is_some());
    }

    #[test]
    fn vulnerability_and_export_times() {
        let v: Vulnerability = serde_json::from_value(json!({
            "id": "CVE-1", "CveSupportability": "supported", "cvssV3": null, "publicExploit": true
        }))
        .unwrap();
        assert_eq!(v.cve_supportability.as_deref(), Some("supported"));
        assert!(v.has_exploit());
        let e: ExportVulnerability = serde_json::from_value(json!({
            "id": "x", "lastSeenTimestamp": "2024-03-05 07:08:09.1234567", "firstSeenTimestamp": "2024-03-05 07:08:09"
        }))
        .unwrap();
        assert!(e.last_seen_timestamp.is_some() && e.first_seen_timestamp.is_some());
        assert!(parse_time("2018-08-01Z").is_some());
        assert!(parse_time("yesterday").is_none());
    }

    #[test]
    fn wrong_types_error_instead_of_panic() {
        assert!(serde_json::from_value::<Machine>(json!({"id": "x", "osBuild": "abc"})).is_err());
        assert!(serde_json::from_value::<Machine>(json!({"id": 5})).is_err());
        let e: ErrorEnvelope = serde_json::from_value(json!({"error": {"code": 429, "message": "m"}})).unwrap();
        assert_eq!(e.error.code.as_deref(), Some("429"));
    }
}
