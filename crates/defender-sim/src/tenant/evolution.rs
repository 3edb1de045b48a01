//! A tenant that changes between syncs, as real ones do, so that a product's delta sync can be
//! checked against a full one: each change (`TenantParams::changes`, one per
//! `POST /_sim/tenant/advance`) upgrades software, moves machines between device groups, fixes
//! vulnerabilities and finds new ones on some machines, and records the events the
//! software-vulnerability delta export reports for them.
//!
//! What the events look like follows Microsoft's page on the export
//! (<https://learn.microsoft.com/en-us/defender-endpoint/api/get-assessment-software-vulnerabilities>):
//! * "Clarifications": an upgrade from version 1.0 to 2.0 that is exposed to the same CVE is two
//!   events, "Fixed: CVE-A on version 1.0" and "New: CVE-A on version 2.0", and the new record
//!   keeps the original `FirstSeenTimestamp`;
//! * "RBAC-scoped duplicates": a device that moves from one device group to another "will appear
//!   twice in a Delta export …: once under its previous group with status "Fixed" and once under
//!   its current group with status "New"", under the same record id;
//! * the page documents no order between records, so the export serves each machine's events in
//!   a shuffled order (see `Tenant::delta_events`).
//!
//! Each change also raises a new High-severity alert on one Windows workstation that had no
//! active High alert (`raise_alert`): the machine's alert level, and Defender's `riskScore` for
//! it, rise to High between two syncs, as when an attack starts — what response rules act on.
//!
//! A change is a pure function of (seed, its number, its time): the same history gives the same
//! tenant.

use std::collections::HashMap;

use chrono::{DateTime, Utc};

use super::{Rng, Tenant, catalog};

const STREAM_CHANGES: u64 = 11;
const STREAM_RAISED_ALERTS: u64 = 15;
/// The share of live onboarded machines that one change touches.
const TOUCHED: f64 = 0.3;

/// One software vulnerability of a machine: the vulnerability and the product version it is
/// found on (the catalog's version until an upgrade changes it).
#[derive(Debug, Clone, PartialEq)]
pub struct Row {
    pub vuln: u32,
    pub version: String,
}

/// One record a change adds to the delta export.
#[derive(Debug, Clone)]
pub struct RowEvent {
    pub vuln: u32,
    pub version: String,
    /// `New` or `Fixed`.
    pub status: &'static str,
    /// The device group the record is reported under (`None`: unassigned).
    pub group: Option<&'static str>,
    pub at: DateTime<Utc>,
}

/// What the changes so far did.
#[derive(Debug, Default, Clone)]
pub struct Evolution {
    /// The rows, as they stand now, of the machines whose rows a change touched (by vuln).
    pub rows: HashMap<u32, Vec<Row>>,
    /// Each touched machine's events, in the order they happened.
    pub events: HashMap<u32, Vec<RowEvent>>,
}

impl Tenant {
    /// Applies every change of `params.changes`, then brings the row counts (and the offsets
    /// that page the bulk listings) up to date.
    pub(super) fn evolve(&mut self) {
        let changes = self.params.changes.clone();
        for (g, at) in changes.iter().enumerate() {
            self.change(g as u64, *at);
            self.raise_alert(g as u64, *at);
        }
        if !changes.is_empty() {
            self.index_alerts();
        }
        if self.evolution.rows.is_empty() {
            return;
        }
        for (mi, rows) in &self.evolution.rows {
            self.machines[*mi as usize].vuln_count = rows.len() as u32;
        }
        let mut prefix = Vec::with_capacity(self.machines.len() + 1);
        prefix.push(0u64);
        for m in &self.machines {
            prefix.push(prefix[prefix.len() - 1] + m.vuln_count as u64);
        }
        self.vuln_prefix = prefix;
    }

    /// Change number `g`, made at `at`: each touched machine gets one of an upgrade, a move to
    /// another device group, a fix or a new vulnerability.
    fn change(&mut self, g: u64, at: DateTime<Utc>) {
        let mut rng = Rng::for_item(self.params.seed, STREAM_CHANGES, g);
        for mi in 0..self.machines.len() {
            let m = &self.machines[mi];
            if !m.is_onboarded() || m.duplicate_of.is_some() || !rng.chance(TOUCHED) {
                continue;
            }
            let mut rows = self.rows_of(mi);
            let group = m.rbac_group_name;
            let mut events = Vec::new();
            let event = |row: &Row, status: &'static str, group: Option<&'static str>| RowEvent {
                vuln: row.vuln,
                version: row.version.clone(),
                status,
                group,
                at,
            };
            match rng.below(4) {
                // An upgrade to a version that is still exposed: Fixed on the old, New on the new.
                0 if !rows.is_empty() => {
                    let i = rng.below(rows.len() as u64) as usize;
                    events.push(event(&rows[i], "Fixed", group));
                    rows[i].version = self.upgraded(&rows[i]);
                    events.push(event(&rows[i], "New", group));
                }
                // A move to another device group: every row Fixed under the old, New under the new.
                1 => {
                    let Some(to) = self.other_group(mi, &mut rng) else { continue };
                    for row in &rows {
                        events.push(event(row, "Fixed", group));
                        events.push(event(row, "New", to.1));
                    }
                    let m = &mut self.machines[mi];
                    (m.rbac_group_id, m.rbac_group_name) = to;
                }
                // A fix.
                2 if !rows.is_empty() => {
                    let row = rows.remove(rng.below(rows.len() as u64) as usize);
                    events.push(event(&row, "Fixed", group));
                }
                // A new vulnerability of the machine's platform.
                _ => {
                    let list = &self.group_lists[m.group as usize];
                    let fresh: Vec<u32> =
                        list.iter().copied().filter(|v| !rows.iter().any(|r| r.vuln == *v)).take(64).collect();
                    if fresh.is_empty() {
                        continue;
                    }
                    let vuln = fresh[rng.below(fresh.len() as u64) as usize];
                    let row = Row { vuln, version: self.vulnerabilities[vuln as usize].product_version.to_owned() };
                    events.push(event(&row, "New", group));
                    rows.push(row);
                    rows.sort_by_key(|r| r.vuln);
                }
            }
            self.evolution.rows.insert(mi as u32, rows);
            self.evolution.events.entry(mi as u32).or_default().extend(events);
        }
    }

    /// Change number `g`'s new alert: High, New, created at `at`, on a Windows 10/11 machine
    /// (every device action is offered there) that is live, onboarded and not yet at High.
    fn raise_alert(&mut self, g: u64, at: DateTime<Utc>) {
        let mut rng = Rng::for_item(self.params.seed, STREAM_RAISED_ALERTS, g);
        let candidates: Vec<usize> = (0..self.machines.len())
            .filter(|&mi| {
                let m = &self.machines[mi];
                m.is_onboarded()
                    && m.duplicate_of.is_none()
                    && matches!(m.os_platform, "Windows10" | "Windows11")
                    && m.risk_score != "High"
            })
            .collect();
        if candidates.is_empty() {
            return;
        }
        let mi = candidates[rng.below(candidates.len() as u64) as usize];
        let incident = self.alerts.iter().map(|a| a.incident_id).max().unwrap_or(0) + 1;
        let alert = super::raised_alert(&mut rng, self.alerts.len() as u32, mi as u32, at, incident);
        self.alerts.push(alert);
        let m = &mut self.machines[mi];
        m.risk_score = "High";
        m.last_seen = m.last_seen.max(at);
    }

    /// Orders the alerts by machine again after changes added some, and rebuilds what finds
    /// them (`alerts_of`, `alert`).
    fn index_alerts(&mut self) {
        self.alerts.sort_by_key(|a| a.machine_index);
        let mut start = Vec::with_capacity(self.machines.len() + 1);
        let mut next = 0usize;
        for mi in 0..=self.machines.len() {
            while next < self.alerts.len() && (self.alerts[next].machine_index as usize) < mi {
                next += 1;
            }
            start.push(next as u32);
        }
        self.alert_start = start;
        self.alert_ids.clear();
        for (i, a) in self.alerts.iter_mut().enumerate() {
            a.index = i as u32;
            self.alert_ids.insert(a.id.clone(), a.index);
        }
    }

    /// A machine's rows as they stand now.
    pub fn rows_of(&self, machine_index: usize) -> Vec<Row> {
        match self.evolution.rows.get(&(machine_index as u32)) {
            Some(rows) => rows.clone(),
            None => self
                .derived_indices(machine_index)
                .into_iter()
                .map(|v| Row { vuln: v, version: self.vulnerabilities[v as usize].product_version.to_owned() })
                .collect(),
        }
    }

    /// The product version a machine's vulnerability is found on now.
    pub fn row_version(&self, machine_index: usize, vuln: u32) -> &str {
        self.evolution
            .rows
            .get(&(machine_index as u32))
            .and_then(|rows| rows.iter().find(|r| r.vuln == vuln))
            .map(|r| r.version.as_str())
            .unwrap_or(self.vulnerabilities[vuln as usize].product_version)
    }

    /// The events the changes made for a machine.
    pub fn change_events(&self, machine_index: usize) -> &[RowEvent] {
        self.evolution.events.get(&(machine_index as u32)).map(Vec::as_slice).unwrap_or(&[])
    }

    /// The next version of the product a row is on: the catalog's next one, else a patch level.
    fn upgraded(&self, row: &Row) -> String {
        let versions = catalog::PRODUCTS[self.vulnerabilities[row.vuln as usize].product as usize].versions;
        match versions.iter().position(|v| *v == row.version) {
            Some(i) if i + 1 < versions.len() => versions[i + 1].to_owned(),
            _ => format!("{}.1", row.version),
        }
    }

    /// Another device group for the machine's platform, or unassigned.
    fn other_group(&self, machine_index: usize, rng: &mut Rng) -> Option<(i64, Option<&'static str>)> {
        let m = &self.machines[machine_index];
        let others: Vec<(i64, Option<&'static str>)> = catalog::RBAC_GROUPS
            .iter()
            .filter(|g| g.2 & (1 << m.group) != 0 && Some(g.1) != m.rbac_group_name)
            .map(|g| (g.0, Some(g.1)))
            .collect();
        match (others.is_empty(), m.rbac_group_name) {
            (false, _) => Some(*rng.pick(&others)),
            (true, Some(_)) => Some((0, None)),
            (true, None) => None,
        }
    }
}
