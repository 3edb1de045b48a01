//! The collecting half of a sync: every page fetched from Defender is staged in the database
//! as it arrives (machines, their vulnerabilities or the changes to them, active alerts), with
//! the CVE catalog in memory; then, batch by batch, the staged rows become the machine records
//! the import writes.

use std::collections::HashMap;

use chrono::{DateTime, Utc};

use super::{Running, SNAPSHOT_KEY, Stopped};
use crate::db::models::defender_sync_staging::{
    self, DeviceKeys, StagedAlert, StagedBatch, StagedMachine, StagedVulnerability,
};
use crate::db::models::jobs;
use crate::defender::DefenderClient;
use crate::defender::client::dto;
use crate::defender::machine::{MachineRecord, TopAlert, TopVulnerability, record_of};
use crate::defender::service::DefenderService;
use crate::defender::settings;
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
    Ok(format!("{}|{}|{}", config.tenant_id, config.client_id, config.api_base_url))
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
    /// A delta sync: the staged vulnerabilities are changes to the machines' stored lists.
    pub(super) delta: bool,
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
            let mut list: Vec<u32> = take_rows_of(&mut stored, staged.seq, |s| s.0)
                .iter()
                .flat_map(|(_, cves)| cves.split(','))
                .filter(|c| !c.is_empty())
                .map(|c| self.catalog.intern(c, None))
                .collect();
            // In order of arrival: a machine that changed device group shows Fixed, then New.
            for v in take_rows_of(&mut vulns, staged.seq, |v| v.seq) {
                let cve = v.cve as u32;
                if v.fixed {
                    list.retain(|&c| c != cve);
                } else {
                    list.push(cve);
                }
            }
            list.sort_unstable();
            list.dedup();
            let catalog = &self.catalog.vulns;
            r.vuln_count = list.len() as i32;
            let mut cves: Vec<&str> = list.iter().map(|&i| catalog[i as usize].2.as_str()).collect();
            cves.sort_unstable();
            r.vuln_cves = cves.join(",");
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
            r.duplicate_of = self.duplicates.remove(&staged.seq);
            records.push(r);
        }
        Ok(records)
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
    // Defender's changes since, which the import applies to the machines' stored lists.
    let place = |v: &mut StagedVulnerability, seq| v.seq = seq;
    let (mut rows, mut ord) = (0i64, 0i64);
    let mut staged_row = |machine: &str, cve: u32, fixed: bool| {
        ord += 1;
        (machine.to_owned(), StagedVulnerability { seq: 0, ord, cve: cve as i32, fixed })
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
                        Some(staged_row(machine, catalog.intern(cve, r.severity.as_deref()), false))
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
                        let fixed = r.status.as_deref().is_some_and(|s| s.eq_ignore_ascii_case("Fixed"));
                        Some(staged_row(machine, catalog.intern(cve, r.vulnerability_severity_level.as_deref()), fixed))
                    })
                    .collect();
                run.stage_facts("vulnerability changes", staged, place, defender_sync_staging::insert_vulnerabilities)
                    .await?;
                run.progress("vulnerability changes", rows, 0).await?;
            }
        }
    }

    // Active alerts (the import keeps the most severe of each machine).
    let mut seen_alerts = 0i64;
    let mut pages = client.alerts();
    while let Some(page) = run.page(pages.next_page()).await? {
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
    Ok(Collected { machines, seq_end, catalog, delta: delta.is_some(), duplicates })
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
