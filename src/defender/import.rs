//! Defender machines into the inventory: each machine becomes or updates an endpoint (matched by
//! MAC, then host name, then IP seen in the same time window), gets its dynamic OS profile with
//! a Very High score, and its Defender Exposure and Alerts risk factors. Re-imaged duplicates
//! are kept as stale records and never create endpoints. A machine whose derived facts did not
//! change writes nothing.

use std::collections::{HashMap, HashSet};

use sha2::{Digest, Sha256};

use super::machine::{Isolation, MachineRecord, TopAlert, profile_name};
use crate::db::DbResult as QueryResult;
use crate::db::models::defender_machines::{self, AMBIGUOUS, DefenderMachine, UNMATCHED};
use crate::db::models::endpoints::{self, Change, Endpoint};
use crate::db::models::{events, profiles, risk};
use crate::db::{AnyConnection, now};
use crate::domain::observations::host_and_fqdn;
use crate::domain::profiles::MatchScore;
use crate::modeling::{self, ModelWrites, Modeler, PendingAssignments};

/// The owner name of the integration's profiles, and its endpoint source.
pub const OWNER: &str = "defender";
pub const EXPOSURE_SOURCE: &str = "Microsoft Defender Exposure";
pub const ALERTS_SOURCE: &str = "Microsoft Defender Alerts";
/// The score of the dynamic OS profile the integration assigns.
const PROFILE_SCORE: MatchScore = MatchScore::VeryHigh;
/// How close in time an IP address must have been seen for an IP-only match.
const IP_WINDOW_SECS: i64 = 24 * 3600;

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

fn content_hash(r: &MachineRecord, endpoint_id: Option<i64>) -> String {
    let mut h = Sha256::new();
    h.update(format!("{r:?}|{endpoint_id:?}").as_bytes());
    hex::encode(&h.finalize()[..16])
}

/// Imports one batch (run it inside a transaction); `profile_ids` caches the integration's
/// profile ids across batches of one sync.
///
/// Set-based: the batch's stored machines, their endpoints and every endpoint they may match
/// are read in a few queries, each machine is then decided in memory in order (a machine can
/// match an endpoint that an earlier one in the batch created or changed, as if they had been
/// written one by one), and every table is written with a few multi-row statements.
pub fn import_batch(
    conn: &mut AnyConnection,
    modeler: &Modeler,
    records: &[MachineRecord],
    profile_ids: &mut HashMap<String, i64>,
) -> QueryResult<ImportCounts> {
    let machine_ids: Vec<&str> = records.iter().map(|r| r.machine_id.as_str()).collect();
    let existing: HashMap<String, DefenderMachine> =
        defender_machines::find_many(conn, &machine_ids)?.into_iter().map(|m| (m.machine_id.clone(), m)).collect();
    // When the alerts could not be read, each machine keeps the top alert stored for it.
    let with_stored_alerts: Vec<MachineRecord>;
    let records = if records.iter().any(|r| r.alerts_unread) {
        with_stored_alerts = records
            .iter()
            .map(|r| MachineRecord {
                top_alert: if r.alerts_unread {
                    existing.get(&r.machine_id).and_then(TopAlert::stored)
                } else {
                    r.top_alert.clone()
                },
                ..r.clone()
            })
            .collect();
        &with_stored_alerts[..]
    } else {
        records
    };
    let linked_ids: Vec<i64> = existing.values().filter_map(|m| m.endpoint_id).collect();
    let mut inventory = Inventory::default();
    inventory.add_stored(endpoints::find_many(conn, &linked_ids)?);
    let linked_to = |r: &MachineRecord, inventory: &Inventory| {
        existing.get(&r.machine_id).and_then(|m| m.endpoint_id).filter(|id| inventory.endpoints.contains_key(id))
    };
    let to_match: Vec<&MachineRecord> =
        records.iter().filter(|r| r.duplicate_of.is_none() && linked_to(r, &inventory).is_none()).collect();
    inventory.add_stored(endpoints::match_candidates(conn, &match_keys(&to_match))?);
    let mut new_ids = endpoints::reserve_ids(conn, to_match.len())?.into_iter();

    let mut counts = ImportCounts::default();
    let mut writes = Writes::default();
    for r in records {
        let existing = existing.get(&r.machine_id);
        let linked = linked_to(r, &inventory);
        if r.duplicate_of.is_some() {
            writes.store(r, existing, None, "");
            counts.unchanged += 1;
            continue;
        }
        if let (Some(m), Some(id)) = (existing, linked)
            && m.content_hash == content_hash(r, Some(id))
            && !m.stale
        {
            counts.unchanged += 1;
            continue;
        }
        let mut create = |inventory: &mut Inventory| {
            let id = new_ids.next().expect("an id was reserved for every machine to match");
            inventory.create(id, r);
            id
        };
        let (endpoint_id, note, kind) = match linked {
            Some(id) => (id, existing.map(|m| m.match_note.clone()).unwrap_or_default(), Link::Known),
            None => match inventory.find_match(r) {
                Match::One(id) => (id, String::new(), Link::Merged),
                Match::Ambiguous(n) => {
                    (create(&mut inventory), format!("{AMBIGUOUS} {n} endpoints share this name"), Link::Created)
                }
                Match::None => (
                    create(&mut inventory),
                    format!("{UNMATCHED} no network endpoint with its MAC, name or IP"),
                    Link::Created,
                ),
            },
        };
        match kind {
            Link::Created => counts.created += 1,
            Link::Merged => counts.merged += 1,
            Link::Known => counts.updated += 1,
        }
        inventory.update(endpoint_id, r, &mut writes.history);
        let seen = writes.seen.entry(endpoint_id).or_insert(0);
        *seen = (*seen).max(r.last_seen.max(1));
        let profile = integration_profile(conn, modeler, r, profile_ids)?;
        writes.profiles.insert(endpoint_id, profile);
        writes.risk.insert(endpoint_id, risk_factors(r));
        writes.store(r, existing, Some(endpoint_id), &note);
    }
    // Modeled as decided, before anything is written: each endpoint is then written once, with
    // its profile and overall risk.
    let assigned: HashMap<i64, Vec<(String, i16)>> = writes
        .profiles
        .iter()
        .map(|(&id, profile)| (id, profile.iter().map(|(_, name)| (name.clone(), PROFILE_SCORE.to_i16())).collect()))
        .collect();
    // Every endpoint the batch reached has its entry in `profiles` (None without OS details).
    let mut reached: Vec<i64> = writes.profiles.keys().copied().collect();
    reached.sort_unstable();
    let list: Vec<Endpoint> = reached.iter().filter_map(|id| inventory.endpoints.get(id).cloned()).collect();
    let pending = PendingAssignments { owner: OWNER, by_endpoint: &assigned };
    let enabled = modeler.enabled(conn)?;
    let modeled = modeler.plan(conn, &list, &enabled, Some(pending))?;
    writes.apply(conn, &mut inventory, modeled)?;
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

/// What the batch's machines to match may match: their MACs, names and addresses.
fn match_keys(records: &[&MachineRecord]) -> endpoints::MatchKeys {
    let mut keys = endpoints::MatchKeys { seen: (i64::MAX, i64::MIN), ..Default::default() };
    for r in records {
        keys.macs.extend(r.macs.iter().cloned());
        let (short, fqdn) = host_and_fqdn(&r.computer_dns_name);
        keys.hostnames.push(short);
        keys.fqdns.push(fqdn);
        if !r.last_ip.is_empty() && r.last_seen > 0 {
            keys.ips.push(r.last_ip.clone());
            keys.seen = (keys.seen.0.min(r.last_seen - IP_WINDOW_SECS), keys.seen.1.max(r.last_seen + IP_WINDOW_SECS));
        }
    }
    for list in [&mut keys.macs, &mut keys.fqdns, &mut keys.hostnames, &mut keys.ips] {
        list.retain(|k| !k.is_empty());
        list.sort_unstable();
        list.dedup();
    }
    keys
}

/// The endpoints a batch reads and writes, as they stand after each machine, with the keys
/// that find them. An index entry may be out of date (the endpoint changed since); matching
/// checks the endpoint's current values.
#[derive(Default)]
struct Inventory {
    endpoints: HashMap<i64, Endpoint>,
    /// Endpoints this batch creates, in order; the others it changed.
    created: Vec<i64>,
    /// `created` as a set, for the lookups by id (up to a batch's size each).
    is_created: HashSet<i64>,
    changed: HashSet<i64>,
    by_mac: HashMap<String, Vec<i64>>,
    by_fqdn: HashMap<String, Vec<i64>>,
    by_hostname: HashMap<String, Vec<i64>>,
    by_ip: HashMap<String, Vec<i64>>,
}

impl Inventory {
    fn add_stored(&mut self, list: Vec<Endpoint>) {
        for e in list {
            if !self.endpoints.contains_key(&e.id) {
                self.index(&e);
                self.endpoints.insert(e.id, e);
            }
        }
    }

    fn index(&mut self, e: &Endpoint) {
        let keys = [
            (&mut self.by_mac, e.mac.as_deref().unwrap_or("")),
            (&mut self.by_fqdn, e.fqdn.as_str()),
            (&mut self.by_hostname, e.hostname.as_str()),
            (&mut self.by_ip, e.ip.as_str()),
        ];
        for (map, key) in keys {
            if !key.is_empty() {
                let ids = map.entry(key.to_owned()).or_default();
                if !ids.contains(&e.id) {
                    ids.push(e.id);
                }
            }
        }
    }

    /// The endpoints under `key` in `map` that `keep` accepts as they are now.
    fn lookup<'a>(
        &'a self,
        map: &'a HashMap<String, Vec<i64>>,
        key: &str,
        keep: impl Fn(&Endpoint) -> bool + 'a,
    ) -> impl Iterator<Item = i64> + 'a {
        map.get(key)
            .into_iter()
            .flatten()
            .filter_map(move |id| self.endpoints.get(id))
            .filter(move |e| keep(e))
            .map(|e| e.id)
    }

    /// MAC first, then FQDN / host name, then the IP address seen in the same time window.
    fn find_match(&self, r: &MachineRecord) -> Match {
        for mac in &r.macs {
            if let Some(id) = self.lookup(&self.by_mac, mac, |e| e.mac.as_deref() == Some(mac.as_str())).next() {
                return Match::One(id);
            }
        }
        let (short, fqdn) = host_and_fqdn(&r.computer_dns_name);
        if !short.is_empty() {
            let by_name: Vec<i64> = if fqdn.is_empty() {
                self.lookup(&self.by_hostname, &short, |e| e.hostname == short).take(5).collect()
            } else {
                let exact: Vec<i64> = self.lookup(&self.by_fqdn, &fqdn, |e| e.fqdn == fqdn).take(5).collect();
                if exact.is_empty() {
                    // By host name, keeping those without a conflicting FQDN.
                    self.lookup(&self.by_hostname, &short, |e| e.hostname == short && e.fqdn.is_empty())
                        .take(5)
                        .collect()
                } else {
                    exact
                }
            };
            match by_name.len() {
                0 => {}
                1 => return Match::One(by_name[0]),
                n => return Match::Ambiguous(n),
            }
        }
        if !r.last_ip.is_empty() && r.last_seen > 0 {
            let near: Vec<i64> = self
                .lookup(&self.by_ip, &r.last_ip, |e| {
                    e.ip == r.last_ip && (e.last_seen - r.last_seen).abs() <= IP_WINDOW_SECS
                })
                .take(2)
                .collect();
            if near.len() == 1 {
                return Match::One(near[0]);
            }
        }
        Match::None
    }

    /// A new endpoint for a machine that matched none.
    fn create(&mut self, id: i64, r: &MachineRecord) {
        // A MAC already held by another endpoint would have matched; take the first.
        let mac = r.macs.first().cloned();
        let mac_vendor =
            mac.as_deref().and_then(crate::domain::oui::vendor_for_mac).map(|v| v.into_owned()).unwrap_or_default();
        let (hostname, fqdn) = host_and_fqdn(&r.computer_dns_name);
        let t = now();
        let seen = if r.last_seen > 0 { r.last_seen } else { t };
        let e = Endpoint {
            id,
            mac,
            mac_vendor,
            ip: r.last_ip.clone(),
            hostname,
            fqdn,
            os_name: String::new(),
            os_version: String::new(),
            os_build: String::new(),
            dhcp_vendor_class: String::new(),
            dhcp_params: String::new(),
            user_agent: String::new(),
            profile: String::new(),
            match_score: 0,
            risk_level: 0,
            sources: OWNER.to_owned(),
            custom_data: "{}".to_owned(),
            first_seen: if r.first_seen > 0 { r.first_seen } else { seen },
            last_seen: seen,
            created_at: t,
            updated_at: t,
            other_profiles: String::new(),
            profile_reason: String::new(),
        };
        self.index(&e);
        self.endpoints.insert(id, e);
        self.created.push(id);
        self.is_created.insert(id);
    }

    /// Brings Defender's facts into the endpoint: OS, names and addresses it lacks, last seen.
    fn update(&mut self, endpoint_id: i64, r: &MachineRecord, history: &mut Vec<Change<'static>>) {
        let Some(e) = self.endpoints.get(&endpoint_id) else { return };
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
        let unchanged = updated.os_name == e.os_name
            && updated.os_version == e.os_version
            && updated.os_build == e.os_build
            && updated.hostname == e.hostname
            && updated.fqdn == e.fqdn
            && updated.ip == e.ip
            && updated.last_seen == e.last_seen
            && updated.sources == e.sources;
        if unchanged {
            return;
        }
        let change = |field, old: String, new: String| Change { endpoint_id, field, old, new, source: OWNER };
        if updated.ip != e.ip && !e.ip.is_empty() {
            history.push(change("ip", e.ip.clone(), updated.ip.clone()));
        }
        if updated.os_name != e.os_name || updated.os_version != e.os_version {
            let old = format!("{} {}", e.os_name, e.os_version);
            history.push(change("os", old.trim().to_owned(), format!("{} {}", updated.os_name, updated.os_version)));
        }
        let updated = Endpoint { updated_at: now(), ..updated };
        self.index(&updated);
        self.endpoints.insert(endpoint_id, updated);
        if !self.is_created.contains(&endpoint_id) {
            self.changed.insert(endpoint_id);
        }
    }
}

/// Everything a batch writes besides its endpoints, the last machine's word for an endpoint
/// that several machines reached.
#[derive(Default)]
struct Writes {
    history: Vec<Change<'static>>,
    /// When Defender last saw each endpoint.
    seen: HashMap<i64, i64>,
    /// Each endpoint's integration profile, id and name (none without OS details).
    profiles: HashMap<i64, Option<(i64, String)>>,
    risk: HashMap<i64, [Option<risk::FactorValue>; 2]>,
    machines: Vec<DefenderMachine>,
}

impl Writes {
    fn apply(mut self, conn: &mut AnyConnection, inventory: &mut Inventory, modeled: ModelWrites) -> QueryResult<()> {
        // The profile outcomes and overall risk go into the endpoints before they are written.
        for o in modeled.profiles {
            if let Some(e) = inventory.endpoints.get_mut(&o.id) {
                (e.profile, e.match_score, e.other_profiles, e.profile_reason) =
                    (o.profile, o.score, o.others, o.reason);
                if !inventory.is_created.contains(&o.id) {
                    inventory.changed.insert(o.id);
                }
            }
        }
        let mut factors: Vec<(i64, &str, Option<risk::FactorValue>)> = self
            .risk
            .drain()
            .flat_map(|(id, [exposure, alerts])| [(id, EXPOSURE_SOURCE, exposure), (id, ALERTS_SOURCE, alerts)])
            .collect();
        factors.extend(modeled.factors);
        // A new endpoint has no other factors; an existing one's level is refreshed with them.
        for (id, level) in factors.iter().filter_map(|(id, _, f)| Some((*id, f.as_ref()?.0))) {
            if let Some(e) = inventory.endpoints.get_mut(&id).filter(|e| inventory.is_created.contains(&e.id)) {
                e.risk_level = e.risk_level.max(level);
            }
        }

        let created: Vec<&Endpoint> = inventory.created.iter().filter_map(|id| inventory.endpoints.get(id)).collect();
        endpoints::insert_many(conn, &created)?;
        let changed: Vec<&Endpoint> = inventory.changed.iter().filter_map(|id| inventory.endpoints.get(id)).collect();
        endpoints::update_imported_many(conn, &changed)?;
        self.history.extend(modeled.history);
        endpoints::record_history_many(conn, &self.history)?;
        events::record_many(conn, modeling::PROFILE_CHANGED, &modeled.events)?;
        let seen: Vec<(i64, i64, i64)> = self.seen.into_iter().map(|(id, at)| (id, at, at)).collect();
        endpoints::upsert_sources(conn, OWNER, &seen)?;

        // The dynamic OS profile, owned by the integration, assigned with a Very High score;
        // machines without OS details keep the standard profiles.
        let score = PROFILE_SCORE.to_i16();
        let stored: Vec<i64> = self.profiles.keys().copied().filter(|id| !inventory.is_created.contains(id)).collect();
        let mut current: HashSet<(i64, i64, i16)> = HashSet::new();
        let mut unassign = Vec::new();
        for (endpoint_id, profile_id, s) in profiles::owner_assignments(conn, &stored, OWNER)? {
            if self.profiles.get(&endpoint_id).is_some_and(|p| p.as_ref().map(|p| p.0) == Some(profile_id)) {
                current.insert((endpoint_id, profile_id, s));
            } else {
                unassign.push((endpoint_id, profile_id));
            }
        }
        let assign: Vec<(i64, i64, i16)> = self
            .profiles
            .iter()
            .filter_map(|(&e, p)| p.as_ref().map(|p| (e, p.0, score)))
            .filter(|a| !current.contains(a))
            .collect();
        profiles::unassign_many(conn, &unassign)?;
        profiles::assign_many(conn, &assign)?;

        risk::set_many(conn, &factors)?;
        defender_machines::replace_many(conn, &self.machines)
    }

    /// The machine's row as it is to be stored, unless it is stored so already.
    fn store(&mut self, r: &MachineRecord, existing: Option<&DefenderMachine>, endpoint_id: Option<i64>, note: &str) {
        // What the machine actions said; when they could not be read, what was stored, marked so.
        let isolation = r.isolation.clone().unwrap_or_else(|| Isolation::unread(existing.map(Isolation::stored)));
        let row = DefenderMachine {
            machine_id: r.machine_id.clone(),
            endpoint_id,
            computer_dns_name: r.computer_dns_name.clone(),
            os_platform: r.os_platform.clone(),
            os_version: r.os_version.clone(),
            os_build: r.os_build.clone(),
            agent_version: r.agent_version.clone(),
            onboarding_status: r.onboarding_status.clone(),
            health_status: r.health_status.clone(),
            risk_score: r.risk_score.clone(),
            exposure_level: r.exposure_level.clone(),
            last_ip: r.last_ip.clone(),
            macs: r.macs.join(","),
            first_seen: r.first_seen,
            last_seen: r.last_seen,
            rbac_group: r.rbac_group.clone(),
            tags: serde_json::to_string(&r.tags).unwrap_or_default(),
            vuln_count: r.vuln_count,
            top_vuln_cve: r.top_vuln.as_ref().map(|v| v.cve.clone()).unwrap_or_default(),
            top_vuln_severity: r.top_vuln.as_ref().map(|v| v.level.to_i16()).unwrap_or(0),
            top_vuln_description: r.top_vuln.as_ref().map(|v| v.description.clone()).unwrap_or_default(),
            top_alert_id: r.top_alert.as_ref().map(|a| a.id.clone()).unwrap_or_default(),
            top_alert_severity: r.top_alert.as_ref().map(|a| a.level.to_i16()).unwrap_or(0),
            top_alert_title: r.top_alert.as_ref().map(|a| a.title.clone()).unwrap_or_default(),
            isolated: isolation.isolated,
            stale: r.duplicate_of.is_some(),
            stale_reason: r
                .duplicate_of
                .as_ref()
                .map(|d| format!("older record of the device now reported as {d}"))
                .unwrap_or_default(),
            match_note: note.to_owned(),
            content_hash: content_hash(r, endpoint_id),
            updated_at: now(),
            vuln_rows: r.vuln_rows.clone(),
            isolation: isolation.details(),
        };
        if !existing.is_some_and(|m| DefenderMachine { updated_at: row.updated_at, ..m.clone() } == row) {
            self.machines.push(row);
        }
    }
}

/// The integration's profile for the machine's OS, id and name, created on first use.
fn integration_profile(
    conn: &mut AnyConnection,
    modeler: &Modeler,
    r: &MachineRecord,
    profile_ids: &mut HashMap<String, i64>,
) -> QueryResult<Option<(i64, String)>> {
    let Some(name) = profile_name(&r.os_platform, &r.os_version) else { return Ok(None) };
    if let Some(id) = profile_ids.get(&name) {
        return Ok(Some((*id, name)));
    }
    let description = format!(
        "Created by the Microsoft Defender integration for machines reporting {} {}",
        r.os_platform, r.os_version
    );
    let id = modeler.integration_profile(conn, OWNER, &name, description.trim())?.id;
    profile_ids.insert(name.clone(), id);
    Ok(Some((id, name)))
}

/// The machine's Defender Exposure and Alerts factors.
fn risk_factors(r: &MachineRecord) -> [Option<risk::FactorValue>; 2] {
    let exposure = r.top_vuln.as_ref().map(|v| {
        (v.level.to_i16(), format!("{} ({} vulnerabilities in all)", v.cve, r.vuln_count), v.description.clone())
    });
    let alerts = r
        .top_alert
        .as_ref()
        .map(|a| (a.level.to_i16(), a.title.clone(), format!("Most severe active alert: {}", a.id)));
    [exposure, alerts]
}
