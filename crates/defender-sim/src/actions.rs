//! Machine actions (isolate, unisolate, antivirus scan, restrict and unrestrict app execution,
//! collect investigation package) and the isolation state they leave.
//!
//! Statuses are not advanced by a timer: an action stores its creation time and the
//! durations that were configured then, and its status is computed from the clock whenever it
//! is read (Pending → InProgress → Succeeded/Failed/TimeOut). A machine's isolation state is
//! likewise the effect of its most recently *completed* successful isolate/unisolate.

use std::collections::HashMap;

use chrono::{DateTime, Duration, Utc};
use serde::Serialize;

use super::faults::ActionOutcome;
use super::rng::Rng;
use super::tenant::Tenant;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ActionType {
    Isolate,
    Unisolate,
    RunAntiVirusScan,
    /// <https://learn.microsoft.com/en-us/defender-endpoint/api/restrict-code-execution>
    RestrictCodeExecution,
    /// <https://learn.microsoft.com/en-us/defender-endpoint/api/unrestrict-code-execution>
    UnrestrictCodeExecution,
    /// <https://learn.microsoft.com/en-us/defender-endpoint/api/collect-investigation-package>
    CollectInvestigationPackage,
}

impl ActionType {
    /// The `type` values of the MachineAction entity
    /// (<https://learn.microsoft.com/en-us/defender-endpoint/api/machineaction>).
    pub fn as_str(self) -> &'static str {
        match self {
            ActionType::Isolate => "Isolate",
            ActionType::Unisolate => "Unisolate",
            ActionType::RunAntiVirusScan => "RunAntiVirusScan",
            ActionType::RestrictCodeExecution => "RestrictCodeExecution",
            ActionType::UnrestrictCodeExecution => "UnrestrictCodeExecution",
            ActionType::CollectInvestigationPackage => "CollectInvestigationPackage",
        }
    }
}

#[derive(Debug, Clone)]
pub struct Action {
    pub id: String,
    pub kind: ActionType,
    pub scope: Option<&'static str>,
    pub machine_index: u32,
    pub machine_id: String,
    pub computer_dns_name: String,
    pub requestor: String,
    pub comment: String,
    pub external_id: Option<String>,
    pub created: DateTime<Utc>,
    pub pending: Duration,
    pub in_progress: Duration,
    pub outcome: ActionOutcome,
}

impl Action {
    /// (status, time of the last status change) at `now`.
    pub fn status_at(&self, now: DateTime<Utc>) -> (&'static str, DateTime<Utc>) {
        let started = self.created + self.pending;
        let done = started + self.in_progress;
        if now < started {
            ("Pending", self.created)
        } else if now < done {
            ("InProgress", started)
        } else {
            (self.outcome.as_str(), done)
        }
    }
    pub fn is_active(&self, now: DateTime<Utc>) -> bool {
        matches!(self.status_at(now).0, "Pending" | "InProgress")
    }
}

/// A machine's network isolation as completed actions left it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub enum IsolationState {
    NotIsolated,
    /// Isolated, with the isolation type (`Full` or `Selective`).
    Isolated(&'static str),
}

impl IsolationState {
    /// Read back from its JSON (`"NotIsolated"`, `{"Isolated": "Full"}`).
    pub fn from_json(v: &serde_json::Value) -> Self {
        match v.get("Isolated").and_then(|t| t.as_str()) {
            Some("Selective") => IsolationState::Isolated("Selective"),
            Some(_) => IsolationState::Isolated("Full"),
            None => IsolationState::NotIsolated,
        }
    }
}

/// Isolations made outside the product, as a real tenant has them when the product is first
/// connected: by analysts in the portal or by another tool, some released since, one still
/// waiting for its device. The Machine entity has no isolation property
/// (<https://learn.microsoft.com/en-us/defender-endpoint/api/machine>); these actions in the
/// listing (<https://learn.microsoft.com/en-us/defender-endpoint/api/get-machineactions-collection>)
/// are the only trace of them, which is what a client must read. The last eligible machines get
/// one of each (the first ones are what tests act on); a few others at random. Times count back
/// from the tenant's anchor, so that a reset brings back the same history.
pub fn outside_history(t: &Tenant) -> Vec<Action> {
    let now = t.anchor();
    let domain = &t.params.tenant_domain;
    let analysts = [format!("secops@{domain}"), format!("soc.lead@{domain}")];
    let mut out = Vec::new();
    let eligible = t.machines().iter().rev().filter(|m| m.is_onboarded() && m.duplicate_of.is_none() && m.group <= 7);
    for (n, m) in eligible.enumerate() {
        let mut r = Rng::for_item(t.seed(), 13, m.index as u64);
        let scenario = if n < 3 {
            n as u64
        } else if r.chance(0.02) {
            r.below(3)
        } else {
            continue;
        };
        let by = analysts[r.below(2) as usize].clone();
        let hours = |r: &mut Rng, lo: i64, hi: i64| Duration::minutes(r.range(lo * 60, hi * 60));
        let selective = m.group <= 1 && r.chance(0.3);
        let isolate = |created, pending: Duration, by: String| Action {
            id: r_guid(t.seed(), m.index, created),
            kind: ActionType::Isolate,
            scope: Some(if selective { "Selective" } else { "Full" }),
            machine_index: m.index,
            machine_id: m.id.clone(),
            computer_dns_name: m.computer_dns_name.clone(),
            requestor: by,
            comment: "Isolated while the incident is investigated".into(),
            external_id: None,
            created,
            pending,
            in_progress: Duration::seconds(40),
            outcome: ActionOutcome::Succeeded,
        };
        match scenario {
            // Isolated in the portal a while ago, still isolated.
            0 => out.push(isolate(now - hours(&mut r, 2, 72), Duration::seconds(20), by)),
            // Isolated, then released.
            1 => {
                let isolated = now - hours(&mut r, 30, 240);
                out.push(isolate(isolated, Duration::seconds(20), by.clone()));
                let released = isolated + hours(&mut r, 2, 24);
                out.push(Action {
                    id: r_guid(t.seed(), m.index, released),
                    kind: ActionType::Unisolate,
                    scope: None,
                    comment: "Released after remediation".into(),
                    created: released,
                    ..isolate(released, Duration::seconds(20), by)
                });
            }
            // Asked for just before the anchor; the device has not picked it up (Defender retries for up to
            // three days: <https://learn.microsoft.com/en-us/defender-endpoint/respond-machine-alerts>).
            _ => out.push(isolate(now - Duration::minutes(1), Duration::days(3), by)),
        }
    }
    out.sort_by_key(|a| a.created);
    out
}

/// A stable action id for the history (the product sees the same ids after a restart).
fn r_guid(seed: u64, machine: u32, at: DateTime<Utc>) -> String {
    let mut r = Rng::for_item(seed ^ at.timestamp() as u64, 14, machine as u64);
    r.guid()
}

#[derive(Debug, Default)]
pub struct ActionStore {
    /// In creation order; listings reverse it (newest first).
    pub actions: Vec<Action>,
    by_id: HashMap<String, usize>,
}

impl ActionStore {
    /// A store holding the tenant's history of isolations made outside the product.
    pub fn with_history(t: &Tenant) -> Self {
        let mut store = ActionStore::default();
        for a in outside_history(t) {
            store.add(a);
        }
        store
    }
    pub fn add(&mut self, a: Action) {
        self.by_id.insert(a.id.clone(), self.actions.len());
        self.actions.push(a);
    }
    pub fn get(&self, id: &str) -> Option<&Action> {
        self.by_id.get(&id.to_ascii_lowercase()).map(|i| &self.actions[*i])
    }
    /// An action of `kind` still Pending/InProgress for the machine.
    pub fn active(&self, machine_index: u32, kind: ActionType, now: DateTime<Utc>) -> Option<&Action> {
        self.actions.iter().rev().find(|a| a.machine_index == machine_index && a.kind == kind && a.is_active(now))
    }
    pub fn isolation_state(&self, machine_index: u32, now: DateTime<Utc>) -> IsolationState {
        let mut latest: Option<(DateTime<Utc>, &Action)> = None;
        for a in self.actions.iter().filter(|a| {
            a.machine_index == machine_index && matches!(a.kind, ActionType::Isolate | ActionType::Unisolate)
        }) {
            let (status, at) = a.status_at(now);
            if status == "Succeeded" && latest.is_none_or(|(t, _)| at >= t) {
                latest = Some((at, a));
            }
        }
        match latest {
            Some((_, a)) if a.kind == ActionType::Isolate => IsolationState::Isolated(a.scope.unwrap_or("Full")),
            _ => IsolationState::NotIsolated,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn action(kind: ActionType, created: DateTime<Utc>) -> Action {
        Action {
            id: super::super::rng::random_guid(),
            kind,
            scope: Some("Full"),
            machine_index: 1,
            machine_id: "m".into(),
            computer_dns_name: "n".into(),
            requestor: "r".into(),
            comment: "c".into(),
            external_id: None,
            created,
            pending: Duration::milliseconds(100),
            in_progress: Duration::milliseconds(100),
            outcome: ActionOutcome::Succeeded,
        }
    }

    #[test]
    fn lifecycle_and_isolation() {
        let t0 = Utc::now();
        let mut s = ActionStore::default();
        s.add(action(ActionType::Isolate, t0));
        assert_eq!(s.actions[0].status_at(t0).0, "Pending");
        assert_eq!(s.actions[0].status_at(t0 + Duration::milliseconds(150)).0, "InProgress");
        assert_eq!(s.actions[0].status_at(t0 + Duration::milliseconds(250)).0, "Succeeded");
        assert!(s.active(1, ActionType::Isolate, t0).is_some());
        assert_eq!(s.isolation_state(1, t0), IsolationState::NotIsolated);
        let later = t0 + Duration::seconds(1);
        assert_eq!(s.isolation_state(1, later), IsolationState::Isolated("Full"));
        s.add(action(ActionType::Unisolate, later));
        assert_eq!(s.isolation_state(1, later + Duration::seconds(1)), IsolationState::NotIsolated);
    }
}
