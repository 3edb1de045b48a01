//! Defender machines into the inventory: each machine becomes or updates an endpoint (matched by
//! MAC, then host name, then IP seen in the same time window), gets its dynamic OS profile with
//! a Very High score, and its Defender Exposure and Alerts risk factors. Re-imaged duplicates
//! are kept as stale records and never create endpoints. A machine whose derived facts did not
//! change writes nothing.

use std::collections::HashMap;

use diesel::prelude::*;
use sha2::{Digest, Sha256};

use crate::db::models::defender_machines::{self, DefenderMachine};
use crate::db::models::endpoints::{self, Endpoint};
use crate::db::models::{profiles, risk};
use crate::db::schema::endpoints as ep;
use crate::db::{AnyConnection, now};
use crate::domain::observations::host_and_fqdn;
use crate::domain::profiles::MatchScore;
use crate::domain::risk::RiskLevel;
use crate::modeling::{self, Modeler};

/// The owner name of the integration's profiles, and its endpoint source.
pub const OWNER: &str = "defender";
pub const EXPOSURE_SOURCE: &str = "Microsoft Defender Exposure";
pub const ALERTS_SOURCE: &str = "Microsoft Defender Alerts";
/// How close in time an IP address must have been seen for an IP-only match.
const IP_WINDOW_SECS: i64 = 24 * 3600;

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

/// What a batch did.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct ImportCounts {
    pub created: i64,
    pub updated: i64,
    pub merged: i64,
    pub unchanged: i64,
}

impl std::ops::AddAssign for ImportCounts {
    fn add_assign(&mut self, o: Self) {
        self.created += o.created;
        self.updated += o.updated;
        self.merged += o.merged;
        self.unchanged += o.unchanged;
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

fn content_hash(r: &MachineRecord, endpoint_id: Option<i64>) -> String {
    let mut h = Sha256::new();
    h.update(format!("{r:?}|{endpoint_id:?}").as_bytes());
    hex::encode(&h.finalize()[..16])
}

/// Imports one batch (run it inside a transaction); `profile_ids` caches the integration's
/// profile ids across batches of one sync.
pub fn import_batch(
    conn: &mut AnyConnection,
    modeler: &Modeler,
    records: &[MachineRecord],
    profile_ids: &mut HashMap<String, i64>,
) -> QueryResult<ImportCounts> {
    let mut counts = ImportCounts::default();
    let mut to_model = Vec::new();
    for r in records {
        let existing = defender_machines::find(conn, &r.machine_id)?;
        let linked = match &existing {
            Some(m) => match m.endpoint_id {
                Some(id) if endpoints::find(conn, id)?.is_some() => Some(id),
                _ => None,
            },
            None => None,
        };
        if r.duplicate_of.is_some() {
            store(conn, r, existing.as_ref(), None, "")?;
            counts.unchanged += 1;
            continue;
        }
        if let (Some(m), Some(id)) = (&existing, linked)
            && m.content_hash == content_hash(r, Some(id))
            && !m.stale
        {
            counts.unchanged += 1;
            continue;
        }
        let (endpoint_id, note, kind) = match linked {
            Some(id) => (id, existing.as_ref().map(|m| m.match_note.clone()).unwrap_or_default(), Link::Known),
            None => match find_match(conn, r)? {
                Match::One(id) => (id, String::new(), Link::Merged),
                Match::Ambiguous(n) => {
                    (create_endpoint(conn, r)?, format!("ambiguous: {n} endpoints share this name"), Link::Created)
                }
                Match::None => (
                    create_endpoint(conn, r)?,
                    "unmatched: no network endpoint with its MAC, name or IP".into(),
                    Link::Created,
                ),
            },
        };
        match kind {
            Link::Created => counts.created += 1,
            Link::Merged => counts.merged += 1,
            Link::Known => counts.updated += 1,
        }
        update_endpoint(conn, endpoint_id, r)?;
        assign_profile(conn, modeler, endpoint_id, r, profile_ids)?;
        set_risk(conn, endpoint_id, r)?;
        store(conn, r, existing.as_ref(), Some(endpoint_id), &note)?;
        to_model.push(endpoint_id);
    }
    modeler.model_ids(conn, &to_model)?;
    Ok(counts)
}

enum Link {
    Known,
    Merged,
    Created,
}

enum Match {
    One(i64),
    Ambiguous(usize),
    None,
}

/// MAC first, then FQDN / host name, then the IP address seen in the same time window.
fn find_match(conn: &mut AnyConnection, r: &MachineRecord) -> QueryResult<Match> {
    for mac in &r.macs {
        let found: Option<i64> = ep::table.filter(ep::mac.eq(mac)).select(ep::id).first(conn).optional()?;
        if let Some(id) = found {
            return Ok(Match::One(id));
        }
    }
    let (short, fqdn) = host_and_fqdn(&r.computer_dns_name);
    if !short.is_empty() {
        let by_name: Vec<i64> = if !fqdn.is_empty() {
            let exact: Vec<i64> = ep::table.filter(ep::fqdn.eq(&fqdn)).select(ep::id).limit(5).load(conn)?;
            if exact.is_empty() {
                // By host name, keeping those without a conflicting FQDN. Filtered here rather than
                // in SQL: an `fqdn = ''` condition can make SQLite walk every endpoint without one.
                let named: Vec<(i64, String)> =
                    ep::table.filter(ep::hostname.eq(&short)).select((ep::id, ep::fqdn)).limit(20).load(conn)?;
                named.into_iter().filter(|(_, f)| f.is_empty()).map(|(id, _)| id).take(5).collect()
            } else {
                exact
            }
        } else {
            ep::table.filter(ep::hostname.eq(&short)).select(ep::id).limit(5).load(conn)?
        };
        match by_name.len() {
            0 => {}
            1 => return Ok(Match::One(by_name[0])),
            n => return Ok(Match::Ambiguous(n)),
        }
    }
    if !r.last_ip.is_empty() && r.last_seen > 0 {
        let near: Vec<i64> = ep::table
            .filter(ep::ip.eq(&r.last_ip))
            .filter(ep::last_seen.ge(r.last_seen - IP_WINDOW_SECS))
            .filter(ep::last_seen.le(r.last_seen + IP_WINDOW_SECS))
            .select(ep::id)
            .limit(2)
            .load(conn)?;
        if near.len() == 1 {
            return Ok(Match::One(near[0]));
        }
    }
    Ok(Match::None)
}

fn create_endpoint(conn: &mut AnyConnection, r: &MachineRecord) -> QueryResult<i64> {
    // A MAC already held by another endpoint would have matched; take the first free one.
    let mac = r.macs.first().cloned();
    let vendor =
        mac.as_deref().and_then(crate::domain::oui::vendor_for_mac).map(|v| v.into_owned()).unwrap_or_default();
    let (short, fqdn) = host_and_fqdn(&r.computer_dns_name);
    let t = now();
    let seen = if r.last_seen > 0 { r.last_seen } else { t };
    let values = (
        ep::mac.eq(mac),
        ep::mac_vendor.eq(vendor),
        ep::ip.eq(&r.last_ip),
        ep::hostname.eq(short),
        ep::fqdn.eq(fqdn),
        ep::sources.eq(OWNER),
        ep::first_seen.eq(if r.first_seen > 0 { r.first_seen } else { seen }),
        ep::last_seen.eq(seen),
        ep::created_at.eq(t),
        ep::updated_at.eq(t),
    );
    crate::db::insert_returning_id!(conn, ep::table, values, ep::id)
}

/// Brings Defender's facts into the endpoint: OS, names and addresses it lacks, last seen.
fn update_endpoint(conn: &mut AnyConnection, endpoint_id: i64, r: &MachineRecord) -> QueryResult<()> {
    let Some(e) = endpoints::find(conn, endpoint_id)? else { return Ok(()) };
    let (short, fqdn) = host_and_fqdn(&r.computer_dns_name);
    let newer = r.last_seen >= e.last_seen;
    let pick = |new: &str, old: &str| {
        if !new.is_empty() && (newer || old.is_empty()) { new.to_owned() } else { old.to_owned() }
    };
    let updated = Endpoint {
        os_name: pick(&r.os_platform, &e.os_name),
        os_version: pick(&r.os_version, &e.os_version),
        os_build: pick(&r.os_build, &e.os_build),
        hostname: if e.hostname.is_empty() { short } else { e.hostname.clone() },
        fqdn: if e.fqdn.is_empty() { fqdn } else { e.fqdn.clone() },
        ip: pick(&r.last_ip, &e.ip),
        last_seen: e.last_seen.max(r.last_seen),
        sources: endpoints::merged_sources(&e.sources, OWNER),
        ..e.clone()
    };
    if updated.os_name != e.os_name
        || updated.os_version != e.os_version
        || updated.os_build != e.os_build
        || updated.hostname != e.hostname
        || updated.fqdn != e.fqdn
        || updated.ip != e.ip
        || updated.last_seen != e.last_seen
        || updated.sources != e.sources
    {
        if updated.ip != e.ip && !e.ip.is_empty() {
            endpoints::record_history(conn, e.id, "ip", &e.ip, &updated.ip, OWNER)?;
        }
        if updated.os_name != e.os_name || updated.os_version != e.os_version {
            let old = format!("{} {}", e.os_name, e.os_version);
            endpoints::record_history(
                conn,
                e.id,
                "os",
                old.trim(),
                &format!("{} {}", updated.os_name, updated.os_version),
                OWNER,
            )?;
        }
        diesel::update(ep::table.find(e.id))
            .set((
                ep::os_name.eq(&updated.os_name),
                ep::os_version.eq(&updated.os_version),
                ep::os_build.eq(&updated.os_build),
                ep::hostname.eq(&updated.hostname),
                ep::fqdn.eq(&updated.fqdn),
                ep::ip.eq(&updated.ip),
                ep::last_seen.eq(updated.last_seen),
                ep::sources.eq(&updated.sources),
                ep::updated_at.eq(now()),
            ))
            .execute(conn)?;
    }
    endpoints::upsert_source(conn, e.id, OWNER, r.last_seen.max(1))?;
    Ok(())
}

/// The dynamic OS profile, owned by the integration, assigned with a Very High score; machines
/// without OS details keep the standard profiles.
fn assign_profile(
    conn: &mut AnyConnection,
    modeler: &Modeler,
    endpoint_id: i64,
    r: &MachineRecord,
    profile_ids: &mut HashMap<String, i64>,
) -> QueryResult<()> {
    let keep: Vec<i64> = match profile_name(&r.os_platform, &r.os_version) {
        None => Vec::new(),
        Some(name) => {
            let id = match profile_ids.get(&name) {
                Some(id) => *id,
                None => {
                    let description = format!(
                        "Created by the Microsoft Defender integration for machines reporting {} {}",
                        r.os_platform, r.os_version
                    );
                    let id = modeler.integration_profile(conn, OWNER, &name, description.trim())?.id;
                    profile_ids.insert(name, id);
                    id
                }
            };
            modeling::assign(conn, endpoint_id, id, MatchScore::VeryHigh)?;
            vec![id]
        }
    };
    profiles::unassign_owner_except(conn, endpoint_id, OWNER, &keep)?;
    Ok(())
}

fn set_risk(conn: &mut AnyConnection, endpoint_id: i64, r: &MachineRecord) -> QueryResult<()> {
    let exposure = r.top_vuln.as_ref().map(|v| {
        let summary = format!("{} ({} vulnerabilities in all)", v.cve, r.vuln_count);
        (v.level.to_i16(), summary, v.description.clone())
    });
    risk::set(conn, endpoint_id, EXPOSURE_SOURCE, exposure.as_ref().map(|(l, s, d)| (*l, s.as_str(), d.as_str())))?;
    let alerts = r
        .top_alert
        .as_ref()
        .map(|a| (a.level.to_i16(), a.title.clone(), format!("Most severe active alert: {}", a.id)));
    risk::set(conn, endpoint_id, ALERTS_SOURCE, alerts.as_ref().map(|(l, s, d)| (*l, s.as_str(), d.as_str())))?;
    Ok(())
}

fn store(
    conn: &mut AnyConnection,
    r: &MachineRecord,
    existing: Option<&DefenderMachine>,
    endpoint_id: Option<i64>,
    note: &str,
) -> QueryResult<()> {
    let row = DefenderMachine {
        machine_id: r.machine_id.clone(),
        endpoint_id,
        computer_dns_name: r.computer_dns_name.clone(),
        os_platform: r.os_platform.clone(),
        os_version: r.os_version.clone(),
        os_build: r.os_build.clone(),
        onboarding_status: r.onboarding_status.clone(),
        health_status: r.health_status.clone(),
        risk_score: r.risk_score.clone(),
        exposure_level: r.exposure_level.clone(),
        last_ip: r.last_ip.clone(),
        macs: r.macs.join(","),
        first_seen: r.first_seen,
        last_seen: r.last_seen,
        rbac_group: r.rbac_group.clone(),
        tags: r.tags.join(", "),
        vuln_count: r.vuln_count,
        top_vuln_cve: r.top_vuln.as_ref().map(|v| v.cve.clone()).unwrap_or_default(),
        top_vuln_severity: r.top_vuln.as_ref().map(|v| v.level.to_i16()).unwrap_or(0),
        top_vuln_description: r.top_vuln.as_ref().map(|v| v.description.clone()).unwrap_or_default(),
        top_alert_id: r.top_alert.as_ref().map(|a| a.id.clone()).unwrap_or_default(),
        top_alert_severity: r.top_alert.as_ref().map(|a| a.level.to_i16()).unwrap_or(0),
        top_alert_title: r.top_alert.as_ref().map(|a| a.title.clone()).unwrap_or_default(),
        isolated: existing.is_some_and(|m| m.isolated),
        stale: r.duplicate_of.is_some(),
        stale_reason: r
            .duplicate_of
            .as_ref()
            .map(|d| format!("older record of the device now reported as {d}"))
            .unwrap_or_default(),
        match_note: note.to_owned(),
        content_hash: content_hash(r, endpoint_id),
        updated_at: now(),
        vuln_cves: r.vuln_cves.clone(),
    };
    if existing.is_some_and(|m| DefenderMachine { updated_at: row.updated_at, ..m.clone() } == row) {
        return Ok(());
    }
    defender_machines::upsert(conn, &row)
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
