//! Machine actions' kinds and states, as the product records them and Defender reports them.

use std::fmt;

/// Defender's type of the action that collects an investigation package (the MachineAction
/// entity's `type`), the one action whose success leaves something to download.
pub const COLLECT_INVESTIGATION_PACKAGE: &str = "CollectInvestigationPackage";

/// Where a machine action stands. `Requested` is the product's own: the intent is recorded,
/// the request to Defender not yet answered; the others are Defender's (machine action
/// entity, `status`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ActionStatus {
    Requested,
    Pending,
    InProgress,
    Succeeded,
    Failed,
    TimeOut,
    Cancelled,
}

impl ActionStatus {
    pub const ALL: [ActionStatus; 7] = [
        ActionStatus::Requested,
        ActionStatus::Pending,
        ActionStatus::InProgress,
        ActionStatus::Succeeded,
        ActionStatus::Failed,
        ActionStatus::TimeOut,
        ActionStatus::Cancelled,
    ];

    /// The states in which Defender may still change the status.
    pub const OPEN: [ActionStatus; 3] = [ActionStatus::Requested, ActionStatus::Pending, ActionStatus::InProgress];

    /// Defender's (and the database's) spelling, read without regard to case.
    pub fn parse(s: &str) -> Option<ActionStatus> {
        let s = s.trim();
        Self::ALL.into_iter().find(|a| a.as_str().eq_ignore_ascii_case(s))
    }

    pub const fn as_str(self) -> &'static str {
        match self {
            ActionStatus::Requested => "Requested",
            ActionStatus::Pending => "Pending",
            ActionStatus::InProgress => "InProgress",
            ActionStatus::Succeeded => "Succeeded",
            ActionStatus::Failed => "Failed",
            ActionStatus::TimeOut => "TimeOut",
            ActionStatus::Cancelled => "Cancelled",
        }
    }

    pub fn is_open(self) -> bool {
        Self::OPEN.contains(&self)
    }

    pub fn is_final(self) -> bool {
        !self.is_open()
    }
}

impl fmt::Display for ActionStatus {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl serde::Serialize for ActionStatus {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(self.as_str())
    }
}

/// A stored status the product does not know (a row written by a newer version).
#[derive(Debug, thiserror::Error)]
#[error("unknown machine action status {0:?}")]
pub struct UnknownStatus(pub String);

impl TryFrom<String> for ActionStatus {
    type Error = UnknownStatus;
    fn try_from(s: String) -> Result<Self, UnknownStatus> {
        ActionStatus::parse(&s).ok_or(UnknownStatus(s))
    }
}

#[cfg(test)]
mod tests {
    use super::ActionStatus;

    #[test]
    fn statuses_round_trip_and_open_ones_are_known() {
        for s in ActionStatus::ALL {
            assert_eq!(ActionStatus::parse(s.as_str()), Some(s));
            assert_eq!(ActionStatus::try_from(s.to_string()).unwrap(), s);
        }
        assert_eq!(ActionStatus::parse("inprogress"), Some(ActionStatus::InProgress));
        assert!(ActionStatus::Requested.is_open() && ActionStatus::TimeOut.is_final());
        assert!(ActionStatus::try_from("Exploded".to_owned()).is_err());
    }
}
