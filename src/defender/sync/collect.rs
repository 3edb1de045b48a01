//! The collecting half of a sync: every page fetched from Defender is staged in the database
//! as it arrives (machines, their vulnerabilities or the changes to them, active alerts), with
//! the CVE catalog in memory; then, batch by batch, the staged rows become the machine records
//! the import writes.

use std::collections::{HashMap, HashSet};

use chrono::{DateTime, Utc};

use super::{Running, SNAPSHOT_KEY, Stopped};
use crate::db::models::defender_sync_staging::{
    self, DeviceKeys, StagedAlert, StagedBatch, StagedMachine, StagedVulnerability,
};
use crate::db::models::jobs;
use crate::defender::client::dto;
use crate::defender::machine::{
    Isolation, MachineRecord, SoftwareVersion, TopAlert, TopVulnerability, decode_rows, encode_rows,
    isolation_by_machine, record_of, software_version,
};
use crate::defender::service::DefenderService;
use crate::defender::settings;
use crate::defender::{DefenderClient, DefenderError};
use crate::domain::risk::RiskLevel;
/// Defender keeps 14 days of vulnerability changes; a day less leaves room for slow syncs.
const DELTA_MAX_AGE_SECS: i64 = 13 * 86_400;

/// What the stored CVE lists belong to: another tenant, client or API host means a full fetch.
pub(super) async fn snapshot_identity(ctx: &DefenderService) -> Result<String, String> {
    let config = ctx
        .db
        .run(|c| Ok(settings::load(c)?))
        .await
        .map_err(|e| format!("The configuration could not be read: {e}"))?
        .ok_or("Microsoft Defender is not configured.")?;
    // `rows`: the stored lists are per software version (a list stored before is not one).
    Ok(format!("rows|{}|{}|{}", config.tenant_id, config.client_id, config.api_base_url))
}

/// The time to ask for changes since, when a delta sync is possible (the machines' stored CVE
/// lists are read page by page while collecting).
pub(super) async fn delta_base(ctx: &DefenderService, identity: &str) -> Result<Option<DateTime<Utc>>, String> {
    let previous = ctx
        .db
        .run(|c| Ok(jobs::get_setting(c, SNAPSHOT_KEY)?))
        .await
        .map_err(|e| format!("The vulnerability snapshot could not be read: {e}"))?;
    Ok(previous.as_deref().and_then(|v| {
        let (secs, id) = v.split_once(' ')?;
        let at = DateTime::from_timestamp(secs.parse().ok()?, 0)?;
        (id == identity && (Utc::now() - at).num_seconds() < DELTA_MAX_AGE_SECS).then_some(at)
    }))
}

/// The vulnerability catalog of one sync: (level, CVSS, CVE, description) by index.
#[derive(Default)]
struct Catalog {
    index: HashMap<String, u32>,
    vulns: Vec<(RiskLevel, f64, String, String)>,
}

impl Catalog {
    /// The index of a CVE, added with the given severity when the catalog did not list it.
    fn intern(&mut self, cve: &str, severity: Option<&str>) -> u32 {
        if let Some(&i) = self.index.get(cve) {
            return i;
        }
        let level = severity.and_then(RiskLevel::from_defender_vulnerability_severity).unwrap_or(RiskLevel::None);
        self.vulns.push((level, 0.0, cve.to_owned(), String::new()));
        let i = (self.vulns.len() - 1) as u32;
        self.index.insert(cve.to_owned(), i);
        i
    }
}

/// The software versions of one sync, by index (as the staged rows name them).
#[derive(Default)]
struct SoftwareVersions {
    index: HashMap<SoftwareVersion, u32>,
    list: Vec<SoftwareVersion>,
}

impl SoftwareVersions {
    fn intern(&mut self, key: SoftwareVersion) -> u32 {
        if let Some(&i) = self.index.get(&key) {
            return i;
        }
        self.list.push(key.clone());
        self.index.insert(key, self.list.len() as u32 - 1);
        self.list.len() as u32 - 1
    }
}

/// Applies a machine's staged records to its rows, keyed by (software version, CVE) and
/// independent of the order they came in. On a full sync every record is a row. On a delta sync
/// the records of one key decide it together (Microsoft's page on the export,
/// <https://learn.microsoft.com/en-us/defender-endpoint/api/get-assessment-software-vulnerabilities>):
/// an upgrade is "Fixed" on the old version and "New" on the new one, two keys that never cancel;
/// a machine that moved between device groups is reported "Fixed" under its previous group and
/// "New" under its current one with the same record id, so the records under the machine's
/// current group are the ones that count; among those the latest event decides, and on a tie
/// the row stays (a live vulnerability is never dropped on a guess).
fn apply_records(rows: &mut HashSet<(u32, u32)>, records: &[StagedVulnerability], current_group: &str) {
    let mut by_key: HashMap<(u32, u32), Vec<&StagedVulnerability>> = HashMap::new();
    for r in records {
        by_key.entry((r.software as u32, r.cve as u32)).or_default().push(r);
    }
    for (key, list) in by_key {
        let here: Vec<&StagedVulnerability> =
            list.iter().copied().filter(|r| same_group(&r.rbac_group, current_group)).collect();
        let pool = if here.is_empty() { list } else { here };
        let Some(decisive) = pool.into_iter().max_by_key(|r| (r.event_ms, !r.fixed)) else { continue };
        if decisive.fixed {
            rows.remove(&key);
        } else {
            rows.insert(key);
        }
    }
}

/// Whether a record's device group is the machine's. Microsoft spells "no group" several ways:
/// an empty or absent `rbacGroupName`, "Unassigned" (the delta export's table), "None" (the full
/// export's, when the organisation has no groups) and "UnassignedGroup" (its device examples,
/// e.g. <https://learn.microsoft.com/en-us/defender-endpoint/api/get-remediation-exposed-devices-activities>).
fn same_group(reported: &str, current: &str) -> bool {
    fn norm(g: &str) -> &str {
        let g = g.trim();
        let none = ["Unassigned", "UnassignedGroup", "None"].iter().any(|n| g.eq_ignore_ascii_case(n));
        if g.is_empty() || none { "" } else { g }
    }
    norm(reported).eq_ignore_ascii_case(norm(current))
}

/// What a fetch leaves for the import. Everything per machine is staged in the database as its
/// page arrives (`defender_sync_staging`: the machines numbered in order of arrival, their
/// vulnerabilities and active alerts); memory holds the CVE catalog, whose size does not follow
/// the tenant's, and the few older records of re-imaged devices.
pub(super) struct Collected {
    /// How many machines were staged.
    pub(super) machines: usize,
    /// One past the highest staged number (a machine listed twice leaves a gap).
    pub(super) seq_end: i64,
    catalog: Catalog,
    software: SoftwareVersions,
    /// Each machine's isolation by lower-case machine id, when the machine actions could be
    /// read (a machine they do not name was never isolated, as far as they remember).
    isolation: Option<HashMap<String, Isolation>>,
    /// A delta sync: the staged vulnerabilities are changes to the machines' stored lists.
    pub(super) delta: bool,
    /// Whether the alerts were read (else each machine keeps its stored top alert).
    alerts_read: bool,
    /// Older records of a device: the staged machine and the machine it duplicates.
    pub(super) duplicates: HashMap<i64, String>,
}

/// The rows of a list ordered by machine that belong to machine `seq`, taken off its front.
fn take_rows_of<'a, T>(rows: &mut &'a [T], seq: i64, seq_of: impl Fn(&T) -> i64) -> &'a [T] {
    while rows.first().is_some_and(|r| seq_of(r) < seq) {
        *rows = &rows[1..];
    }
    let n = rows.iter().take_while(|r| seq_of(r) == seq).count();
    let (mine, rest) = rows.split_at(n);
    *rows = rest;
    mine
}

impl Collected {
    /// The staged machines of a batch with what the later pages said of them: their records for
    /// the import.
    pub(super) fn complete(&mut self, batch: StagedBatch) -> anyhow::Result<Vec<MachineRecord>> {
        let (mut vulns, mut alerts, mut stored) =
            (batch.vulnerabilities.as_slice(), batch.alerts.as_slice(), batch.stored.as_slice());
        let mut records = Vec::with_capacity(batch.machines.len());
        for staged in batch.machines {
            let mut r: MachineRecord = serde_json::from_str(&staged.record)?;
            let mut rows: HashSet<(u32, u32)> = HashSet::new();
            for (_, stored) in take_rows_of(&mut stored, staged.seq, |s| s.0) {
                for (software, cves) in decode_rows(stored) {
                    let sw = self.software.intern(software);
                    rows.extend(cves.iter().map(|c| (sw, self.catalog.intern(c, None))));
                }
            }
            apply_records(&mut rows, take_rows_of(&mut vulns, staged.seq, |v| v.seq), &r.rbac_group);
            let mut list: Vec<u32> = rows.iter().map(|&(_, cve)| cve).collect();
            list.sort_unstable();
            list.dedup();
            r.vuln_rows = self.encode(&rows);
            r.isolation =
                self.isolation.as_ref().map(|i| i.get(&r.machine_id.to_ascii_lowercase()).cloned().unwrap_or_default());
            let catalog = &self.catalog.vulns;
            r.vuln_count = list.len() as i32;
            r.top_vuln = list
                .iter()
                .map(|&i| &catalog[i as usize])
                .max_by(|a, b| a.0.cmp(&b.0).then(a.1.total_cmp(&b.1)).then(b.2.cmp(&a.2)))
                .map(|(level, _, cve, description)| TopVulnerability {
                    cve: cve.clone(),
                    level: *level,
                    description: description.clone(),
                });
            // The most severe active alert, the newest among equals.
            r.top_alert = take_rows_of(&mut alerts, staged.seq, |a| a.seq)
                .iter()
                .max_by_key(|a| (a.level, a.updated_ms))
                .map(|a| TopAlert {
                    id: a.alert_id.clone(),
                    level: RiskLevel::from_i16(a.level).unwrap_or(RiskLevel::Low),
                    title: a.title.clone(),
                });
            r.alerts_unread = !self.alerts_read;
            r.duplicate_of = self.duplicates.remove(&staged.seq);
            records.push(r);
        }
        Ok(records)
    }

    /// A machine's rows as they are stored: by software version, the CVEs of each sorted.
    fn encode(&self, rows: &HashSet<(u32, u32)>) -> String {
        let mut by_software: Vec<(&SoftwareVersion, Vec<&str>)> = Vec::new();
        let mut sorted: Vec<&(u32, u32)> = rows.iter().collect();
        sorted.sort_unstable_by(|a, b| {
            self.software.list[a.0 as usize].cmp(&self.software.list[b.0 as usize]).then(a.1.cmp(&b.1))
        });
        for &(sw, cve) in sorted {
            let software = &self.software.list[sw as usize];
            let cve = self.catalog.vulns[cve as usize].2.as_str();
            match by_software.last_mut() {
                Some((s, cves)) if *s == software => cves.push(cve),
                _ => by_software.push((software, vec![cve])),
            }
        }
        for (_, cves) in &mut by_software {
            cves.sort_unstable();
        }
        encode_rows(&by_software)
    }
}

/// Fetches everything, staging it as it arrives; writes nothing else.
pub(super) async fn collect(
    run: &Running<'_>,
    client: &DefenderClient,
    delta: Option<DateTime<Utc>>,
) -> Result<Collected, Stopped> {
    // Machines, staged page by page and numbered in order of arrival.
    let (mut machines, mut seq_end) = (0usize, 0i64);
    let mut pages = client.machines();
    while let Some(page) = run.page(pages.next_page()).await? {
        let mut staged = Vec::with_capacity(page.len());
        for m in page.iter().filter(|m| !m.id.is_empty()) {
            staged.push(
                stage_of(seq_end, m)
                    .map_err(|e| Stopped::Failed(format!("A fetched machine could not be kept: {e}")))?,
            );
            seq_end += 1;
        }
        machines += run.stage(staged).await?;
        run.progress("machines", machines as i64, 0).await?;
    }
    run.stale_guard().await?;
    let duplicates = run.duplicates().await?;

    // The vulnerability catalog: severity, score and description by CVE.
    let mut catalog = Catalog::default();
    let mut pages = client.vulnerabilities();
    while let Some(page) = run.page(pages.next_page()).await? {
        for v in page {
            if catalog.index.contains_key(&v.id) {
                continue;
            }
            let level = v
                .severity
                .as_deref()
                .and_then(RiskLevel::from_defender_vulnerability_severity)
                .unwrap_or(RiskLevel::None);
            catalog.index.insert(v.id.clone(), catalog.vulns.len() as u32);
            catalog.vulns.push((level, v.cvss_v3.unwrap_or(0.0), v.id, v.description.unwrap_or_default()));
        }
        run.progress("vulnerabilities", catalog.vulns.len() as i64, 0).await?;
    }

    // Machine × vulnerability rows: every one from the bulk listing, or on a delta sync
    // Defender's changes since, which the import applies to the machines' stored rows.
    let place = |v: &mut StagedVulnerability, seq| v.seq = seq;
    let mut software = SoftwareVersions::default();
    let (mut rows, mut ord) = (0i64, 0i64);
    let mut staged_row = |machine: &str, row: StagedVulnerability| {
        ord += 1;
        (machine.to_owned(), StagedVulnerability { ord, ..row })
    };
    match delta {
        None => {
            let mut pages = client.machine_vulnerabilities();
            while let Some(page) = run.page(pages.next_page()).await? {
                rows += page.len() as i64;
                let staged: Vec<_> = page
                    .iter()
                    .filter_map(|r| {
                        let (machine, cve) = (r.machine_id.as_deref()?, r.cve_id.as_deref()?);
                        let sw = software.intern(software_version(
                            r.product_vendor.as_deref(),
                            r.product_name.as_deref(),
                            r.product_version.as_deref(),
                        ));
                        let cve = catalog.intern(cve, r.severity.as_deref()) as i32;
                        Some(staged_row(
                            machine,
                            StagedVulnerability { cve, software: sw as i32, ..Default::default() },
                        ))
                    })
                    .collect();
                run.stage_facts("vulnerabilities", staged, place, defender_sync_staging::insert_vulnerabilities)
                    .await?;
                run.progress("machine vulnerabilities", rows, 0).await?;
            }
        }
        Some(since) => {
            let mut pages = client.export_machine_vulnerability_changes(since);
            while let Some(page) = run.page(pages.next_page()).await? {
                rows += page.len() as i64;
                let staged: Vec<_> = page
                    .iter()
                    .filter_map(|r| {
                        let (machine, cve) = (r.device_id.as_deref()?, r.cve_id.as_deref()?);
                        let sw = software.intern(software_version(
                            r.software_vendor.as_deref(),
                            r.software_name.as_deref(),
                            r.software_version.as_deref(),
                        ));
                        let row = StagedVulnerability {
                            cve: catalog.intern(cve, r.vulnerability_severity_level.as_deref()) as i32,
                            fixed: r.status.as_deref().is_some_and(|s| s.trim().eq_ignore_ascii_case("Fixed")),
                            software: sw as i32,
                            event_ms: r.event_timestamp.map(|t| t.timestamp_millis()).unwrap_or(0),
                            rbac_group: r.rbac_group_name.clone().unwrap_or_default(),
                            ..Default::default()
                        };
                        Some(staged_row(machine, row))
                    })
                    .collect();
                run.stage_facts("vulnerability changes", staged, place, defender_sync_staging::insert_vulnerabilities)
                    .await?;
                run.progress("vulnerability changes", rows, 0).await?;
            }
        }
    }

    // Active alerts (the import keeps the most severe of each machine). Microsoft documents
    // only 200 with a collection for the listing
    // (https://learn.microsoft.com/en-us/defender-endpoint/api/get-alerts): a 404 as its first
    // answer is not taken for "no alerts" (that cleared every machine's alert level), nor fails
    // every sync of a tenant that might answer so: the stored alert levels stay, with a warning.
    let mut seen_alerts = 0i64;
    let mut alerts_read = true;
    let mut pages = client.alerts();
    let mut first = true;
    loop {
        let page = run
            .page(async {
                match pages.next_page().await {
                    Err(DefenderError::NotFound) if first => Ok(None),
                    other => other.map(Some),
                }
            })
            .await?;
        let Some(page) = page else {
            tracing::warn!("Defender answered 404 to the alert listing: alert levels stay as stored");
            alerts_read = false;
            break;
        };
        first = false;
        let Some(page) = page else { break };
        seen_alerts += page.len() as i64;
        let staged: Vec<_> = page
            .into_iter()
            .filter(|a| a.is_active())
            .filter_map(|a| {
                let level =
                    a.severity.as_deref().and_then(RiskLevel::from_defender_alert_severity).unwrap_or(RiskLevel::Low);
                let updated = a.last_update_time.or(a.alert_creation_time);
                let alert = StagedAlert {
                    seq: 0,
                    level: level.to_i16(),
                    updated_ms: updated.map(|t| t.timestamp_millis()),
                    title: a.title.unwrap_or_default(),
                    alert_id: a.id,
                };
                Some((a.machine_id?, alert))
            })
            .collect();
        run.stage_facts("alerts", staged, |a, seq| a.seq = seq, defender_sync_staging::insert_alerts).await?;
        run.progress("alerts", seen_alerts, 0).await?;
    }
    let isolation = isolation_actions(run, client).await?.map(|actions| isolation_by_machine(&actions));
    Ok(Collected { machines, seq_end, catalog, software, isolation, delta: delta.is_some(), alerts_read, duplicates })
}

/// Every Isolate and Unisolate action in the tenant, two listings whatever the tenant's size
/// (never one call per machine): where a machine's isolation is read from, wherever it was asked
/// for. `None` when the app may not read machine actions (Microsoft's current page lists only
/// `Machine.ReadWrite.All` for the listing): the sync goes on and the stored isolation stays.
async fn isolation_actions(
    run: &Running<'_>,
    client: &DefenderClient,
) -> Result<Option<Vec<dto::MachineAction>>, Stopped> {
    let mut all = Vec::new();
    for kind in ["Isolate", "Unisolate"] {
        let mut pages = client.machine_actions_of_type(kind);
        loop {
            let page = run
                .page(async {
                    match pages.next_page().await {
                        // A 404 too: Microsoft documents only 200 with a collection for this
                        // listing (get-machineactions-collection), and taking it for "none"
                        // released every isolated machine on the product's pages.
                        Err(
                            e @ (DefenderError::MissingPermission { .. }
                            | DefenderError::Api { status: 403, .. }
                            | DefenderError::NotFound),
                        ) => Ok(Err(e)),
                        other => other.map(Ok),
                    }
                })
                .await?;
            match page {
                Ok(Some(list)) => all.extend(list),
                Ok(None) => break,
                Err(e) => {
                    tracing::warn!(error = %e.plain_words(), "machine actions could not be read: isolation states stay as stored");
                    return Ok(None);
                }
            }
        }
        run.progress("machine actions", all.len() as i64, 0).await?;
    }
    Ok(Some(all))
}

/// A fetched machine as it is staged: its record, and the keys that find a device's older
/// records.
fn stage_of(seq: i64, m: &dto::Machine) -> serde_json::Result<StagedMachine> {
    let r = record_of(m);
    Ok(StagedMachine {
        seq,
        mac_key: r.macs.first().cloned().unwrap_or_default(),
        name_key: device_name_key(&r.computer_dns_name),
        merged_into: m.merged_into_machine_id.clone().unwrap_or_default(),
        last_seen: r.last_seen,
        record: serde_json::to_string(&r)?,
        machine_id: r.machine_id,
    })
}

/// The DNS name as it identifies a device across its records: no final dot, lower case.
fn device_name_key(dns_name: &str) -> String {
    dns_name.trim_end_matches('.').to_lowercase()
}

/// Several records of one device (re-imaged, re-onboarded): the newest is the device, the
/// others are kept as stale duplicates (or of the machine Defender merged them into). Records
/// are grouped by first MAC and by DNS name. Per machine, the machine it duplicates.
pub(super) fn duplicates_among(machines: &[DeviceKeys]) -> Vec<Option<String>> {
    let mut groups: HashMap<(&str, &str), Vec<usize>> = HashMap::new();
    for (i, m) in machines.iter().enumerate() {
        for key in [("mac", m.mac_key.as_str()), ("name", m.name_key.as_str())].into_iter().filter(|k| !k.1.is_empty())
        {
            groups.entry(key).or_default().push(i);
        }
    }
    let mut duplicate_of: Vec<Option<String>> =
        machines.iter().map(|m| Some(m.merged_into.clone()).filter(|d| !d.is_empty())).collect();
    for members in groups.values().filter(|m| m.len() > 1) {
        let newest = *members
            .iter()
            .max_by(|&&a, &&b| {
                machines[a]
                    .last_seen
                    .cmp(&machines[b].last_seen)
                    .then(machines[b].machine_id.cmp(&machines[a].machine_id))
            })
            .expect("a group has members");
        for &i in members.iter().filter(|&&i| i != newest) {
            duplicate_of[i].get_or_insert_with(|| machines[newest].machine_id.clone());
        }
    }
    duplicate_of
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Microsoft spells "no device group" three ways: "Unassigned" in the delta export's table,
    /// "None" in the full export's, and "UnassignedGroup" in its API examples of devices
    /// (<https://learn.microsoft.com/en-us/defender-endpoint/api/get-remediation-exposed-devices-activities>,
    /// `"rbacGroupName": "UnassignedGroup"`; also the software/browser-extension inventory exports).
    #[test]
    fn red19_unassigned_group_spellings_are_one_group() {
        assert!(same_group("Unassigned", "UnassignedGroup"), "delta \"Unassigned\" vs listing \"UnassignedGroup\"");
    }

    /// A machine moved from device group "Servers" to no group: the delta reports it New under its
    /// current group and Fixed under the previous one (here stamped later; Microsoft documents no
    /// order). The records under the current group decide (the rule `apply_records` states) – but
    /// only when the listing's spelling of "no group" is recognised.
    #[test]
    fn red19_a_move_out_of_every_group_keeps_the_live_row() {
        let rec = |fixed: bool, ms: i64, group: &str| StagedVulnerability {
            fixed,
            event_ms: ms,
            rbac_group: group.into(),
            ..Default::default()
        };
        let records = [rec(false, 1_000, "Unassigned"), rec(true, 2_000, "Servers")];
        let mut as_empty: HashSet<(u32, u32)> = [(0, 0)].into();
        apply_records(&mut as_empty, &records, "");
        assert!(as_empty.contains(&(0, 0)), "listing group empty: kept");
        let mut as_listed: HashSet<(u32, u32)> = [(0, 0)].into();
        apply_records(&mut as_listed, &records, "UnassignedGroup");
        assert!(as_listed.contains(&(0, 0)), "listing group \"UnassignedGroup\": the live CVE was dropped");
    }

    #[test]
    fn the_newest_record_of_a_device_wins() {
        let keys = |id: &str, mac: &str, name: &str, seen: i64| DeviceKeys {
            seq: 0,
            machine_id: id.into(),
            mac_key: mac.into(),
            name_key: name.into(),
            merged_into: String::new(),
            last_seen: seen,
        };
        let machines = vec![
            keys("old", "aa:aa:aa:aa:aa:01", "pc1", 10),
            keys("new", "aa:aa:aa:aa:aa:01", "pc1", 20),
            keys("other", "aa:aa:aa:aa:aa:02", "pc2", 5),
        ];
        assert_eq!(duplicates_among(&machines), vec![Some("new".to_owned()), None, None]);
    }
}
