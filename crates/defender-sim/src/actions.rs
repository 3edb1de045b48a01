//! Machine actions (isolate, unisolate, antivirus scan) and the isolation state they leave.
//!
//! Statuses are not advanced by a timer: an action stores its creation time and the
//! durations that were configured then, and its status is computed from the clock whenever it
//! is read (Pending → InProgress → Succeeded/Failed/TimeOut). A machine's isolation state is
//! likewise the effect of its most recently *completed* successful isolate/unisolate.

use std::collections::HashMap;

use chrono::{DateTime, Duration, Utc};
use serde::Serialize;

use super::faults::ActionOutcome;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ActionType {
    Isolate,
    Unisolate,
    RunAntiVirusScan,
}

impl ActionType {
    pub fn as_str(self) -> &'static str {
        match self {
            ActionType::Isolate => "Isolate",
            ActionType::Unisolate => "Unisolate",
            ActionType::RunAntiVirusScan => "RunAntiVirusScan",
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

#[derive(Debug, Default)]
pub struct ActionStore {
    /// In creation order; listings reverse it (newest first).
    pub actions: Vec<Action>,
    by_id: HashMap<String, usize>,
}

impl ActionStore {
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
