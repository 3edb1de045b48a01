//! Response rules as the product understands them: a condition over an endpoint and an action
//! to take on the endpoints that meet it (issue 22). Pure: checking what an admin typed, and
//! what a rule's action means; matching is SQL (`db::models::rules`), acting is `crate::rules`.

use serde::{Deserialize, Serialize};

use crate::domain::coverage::GapKind;
use crate::domain::risk::RiskLevel;

/// What an endpoint must meet, every part that is set (an empty condition is refused: it would
/// match the whole inventory).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Condition {
    /// The endpoint's overall risk is at least this level.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub min_risk: Option<String>,
    /// Its live Defender machine's exposure level (most severe vulnerability) is at least this.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub min_exposure: Option<String>,
    /// Its live Defender machine's alert level (most severe active alert) is at least this.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub min_alert: Option<String>,
    /// Its profile is one of these.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub profiles: Vec<String>,
    /// It was reported by this source (`network`, `defender`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub source: Option<String>,
    /// It has an EDR coverage gap: `any`, or a kind.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub coverage: Option<String>,
    /// Nothing has seen it for at least this many days.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub not_seen_days: Option<u32>,
    /// Its live Defender machine carries this tag.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tag: Option<String>,
}

/// A condition as the matching query takes it: levels as numbers, the coverage as a kind.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Checked {
    pub min_risk: Option<i16>,
    pub min_exposure: Option<i16>,
    pub min_alert: Option<i16>,
    pub profiles: Vec<String>,
    pub source: Option<String>,
    /// `Some(None)`: any gap; `Some(Some(kind))`: a gap of that kind.
    pub coverage: Option<Option<GapKind>>,
    pub not_seen_days: Option<u32>,
    pub tag: Option<String>,
}

const MAX_TEXT: usize = 200;
const MAX_PROFILES: usize = 50;

fn level(field: &str, value: &Option<String>) -> Result<Option<i16>, String> {
    let Some(v) = value.as_deref().map(str::trim).filter(|v| !v.is_empty()) else { return Ok(None) };
    match RiskLevel::ALL.iter().position(|l| l.as_str().eq_ignore_ascii_case(v)) {
        // "at least None" would be every endpoint.
        Some(0) | None => Err(format!("{field} must be Low, Medium, High or Critical.")),
        Some(p) => Ok(Some(p as i16)),
    }
}

fn text(field: &str, value: &Option<String>) -> Result<Option<String>, String> {
    let Some(v) = value.as_deref().map(str::trim).filter(|v| !v.is_empty()) else { return Ok(None) };
    if v.chars().count() > MAX_TEXT || v.chars().any(char::is_control) {
        return Err(format!("{field} has at most {MAX_TEXT} characters of text."));
    }
    Ok(Some(v.to_owned()))
}

impl Checked {
    /// The condition written the one way the product writes it (levels and coverage kinds by
    /// their names, text trimmed, profiles once each): what is stored, so that the form that
    /// changes a rule shows every part of it as chosen, whatever case or spaces it was sent with.
    pub fn canonical(&self) -> Condition {
        let level = |l: Option<i16>| l.and_then(RiskLevel::from_i16).map(|l| l.as_str().to_owned());
        Condition {
            min_risk: level(self.min_risk),
            min_exposure: level(self.min_exposure),
            min_alert: level(self.min_alert),
            profiles: self.profiles.clone(),
            source: self.source.clone(),
            coverage: self.coverage.map(|k| k.map_or("any", GapKind::as_str).to_owned()),
            not_seen_days: self.not_seen_days,
            tag: self.tag.clone(),
        }
    }
}

impl Condition {
    /// Checks what was typed; the message names the field at fault.
    pub fn check(&self) -> Result<Checked, String> {
        // Counted before anything else is done with them: a huge list is refused at once.
        if self.profiles.len() > MAX_PROFILES {
            return Err(format!("At most {MAX_PROFILES} profiles."));
        }
        let mut profiles = Vec::new();
        for p in &self.profiles {
            if let Some(p) = text("A profile", &Some(p.clone()))?
                && !profiles.contains(&p)
            {
                profiles.push(p);
            }
        }
        let coverage = match self.coverage.as_deref().map(str::trim).filter(|c| !c.is_empty()) {
            None => None,
            Some("any") => Some(None),
            Some(k) => Some(Some(GapKind::parse(k).ok_or_else(|| {
                format!("Unknown coverage {k:?}: use any, not_onboarded, blind_spot or defender_flagged.")
            })?)),
        };
        let source = text("The source", &self.source)?;
        if let Some(s) = &source
            && !["network", "defender"].contains(&s.as_str())
        {
            return Err(format!("Unknown source {s:?}: use network or defender."));
        }
        if self.not_seen_days.is_some_and(|d| !(1..=3650).contains(&d)) {
            return Err("Not seen for: between 1 and 3650 days.".into());
        }
        let checked = Checked {
            min_risk: level("The overall risk", &self.min_risk)?,
            min_exposure: level("The Defender exposure level", &self.min_exposure)?,
            min_alert: level("The Defender alert level", &self.min_alert)?,
            profiles,
            source,
            coverage,
            not_seen_days: self.not_seen_days,
            tag: text("The Defender tag", &self.tag)?,
        };
        if checked == Checked::default() {
            return Err("Set at least one part of the condition: a rule must not match every endpoint.".into());
        }
        Ok(checked)
    }

    /// The condition in words, for the rules list and the audit log.
    pub fn describe(&self) -> String {
        let mut parts = Vec::new();
        let some = |o: &Option<String>| o.as_deref().map(str::trim).filter(|v| !v.is_empty()).map(str::to_owned);
        if let Some(v) = some(&self.min_risk) {
            parts.push(format!("overall risk ≥ {v}"));
        }
        if let Some(v) = some(&self.min_exposure) {
            parts.push(format!("Defender exposure ≥ {v}"));
        }
        if let Some(v) = some(&self.min_alert) {
            parts.push(format!("Defender alert level ≥ {v}"));
        }
        if !self.profiles.is_empty() {
            parts.push(format!("profile in {}", self.profiles.join(", ")));
        }
        if let Some(v) = some(&self.source) {
            parts.push(format!("source {v}"));
        }
        if let Some(v) = some(&self.coverage) {
            parts.push(format!("coverage gap {v}"));
        }
        if let Some(d) = self.not_seen_days {
            parts.push(format!("not seen for {d} days"));
        }
        if let Some(v) = some(&self.tag) {
            parts.push(format!("Defender tag {v}"));
        }
        parts.join(" and ")
    }
}

/// What a rule does to each endpoint that meets its condition.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case", deny_unknown_fields)]
pub enum RuleAction {
    /// Records a `rule.matched` event, which the destinations that take it send on.
    SendEvent,
    /// Defender's Run Antivirus Scan, `Quick` or `Full`.
    RunScan { scope: String },
    /// Defender's Isolate, `Full` or `Selective`.
    Isolate { scope: String },
    /// Defender's Restrict app execution.
    RestrictAppExecution,
    /// Adds a tag to the machine in Defender (one tag, the machine's others untouched; see
    /// `crate::defender::tags`).
    AddTag { tag: String },
}

impl RuleAction {
    /// Whether it changes the machine (Defender's device actions): only those can ask for an
    /// approval, count against the hourly cap and wait for an open action to finish.
    pub fn changes_the_machine(&self) -> bool {
        !matches!(self, RuleAction::SendEvent)
    }

    pub fn check(&self) -> Result<(), String> {
        match self {
            RuleAction::SendEvent => Ok(()),
            RuleAction::RunScan { scope } if ["Quick", "Full"].contains(&scope.as_str()) => Ok(()),
            RuleAction::RunScan { .. } => Err("A scan is Quick or Full.".into()),
            RuleAction::Isolate { scope } if ["Full", "Selective"].contains(&scope.as_str()) => Ok(()),
            RuleAction::Isolate { .. } => Err("An isolation is Full or Selective.".into()),
            RuleAction::RestrictAppExecution => Ok(()),
            RuleAction::AddTag { tag } => crate::domain::tag::check(tag).map(|_| ()),
        }
    }

    pub fn describe(&self) -> String {
        match self {
            RuleAction::SendEvent => "send a rule.matched event".into(),
            RuleAction::RunScan { scope } => format!("run a {scope} antivirus scan"),
            RuleAction::Isolate { scope } => format!("isolate ({scope})"),
            RuleAction::RestrictAppExecution => "restrict app execution".into(),
            RuleAction::AddTag { tag } => format!("add the Defender tag {tag}"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_condition_must_say_something_and_say_it_right() {
        assert!(Condition::default().check().unwrap_err().contains("at least one part"));
        let c = Condition { min_alert: Some("high".into()), ..Default::default() };
        assert_eq!(c.check().unwrap().min_alert, Some(3));
        let sent = Condition {
            min_alert: Some(" high".into()),
            source: Some(" defender ".into()),
            coverage: Some("any ".into()),
            profiles: vec![" Printers".into(), "Printers".into()],
            ..Default::default()
        };
        let canonical = sent.check().unwrap().canonical();
        assert_eq!(
            canonical,
            Condition {
                min_alert: Some("High".into()),
                source: Some("defender".into()),
                coverage: Some("any".into()),
                profiles: vec!["Printers".into()],
                ..Default::default()
            }
        );
        assert_eq!(canonical.check(), sent.check(), "the canonical form means the same");
        let none = Condition { min_risk: Some("None".into()), ..Default::default() };
        assert!(none.check().is_err(), "at least None would match everything");
        let bad = Condition { coverage: Some("blind".into()), ..Default::default() };
        assert!(bad.check().unwrap_err().contains("Unknown coverage"));
        let days = Condition { not_seen_days: Some(0), ..Default::default() };
        assert!(days.check().is_err());
        let tag = Condition { tag: Some("a\u{0}b".into()), ..Default::default() };
        assert!(tag.check().is_err());
        assert!(serde_json::from_str::<Condition>(r#"{"min_risk":"High","everything":true}"#).is_err());
        let both = Condition { min_alert: Some("High".into()), profiles: vec!["Windows".into()], ..Default::default() };
        assert_eq!(both.describe(), "Defender alert level ≥ High and profile in Windows");
    }

    #[test]
    fn actions_are_checked_and_only_device_actions_change_the_machine() {
        assert!(RuleAction::Isolate { scope: "Full".into() }.check().is_ok());
        assert!(RuleAction::Isolate { scope: "UnManagedDevice".into() }.check().is_err());
        assert!(RuleAction::RunScan { scope: "Deep".into() }.check().is_err());
        assert!(!RuleAction::SendEvent.changes_the_machine());
        assert!(RuleAction::RunScan { scope: "Quick".into() }.changes_the_machine());
        let json = serde_json::to_string(&RuleAction::Isolate { scope: "Full".into() }).unwrap();
        assert_eq!(json, r#"{"type":"isolate","scope":"Full"}"#);
        let tag = RuleAction::AddTag { tag: "EA:Watch".into() };
        assert!(tag.check().is_ok() && tag.changes_the_machine());
        assert_eq!(serde_json::to_string(&tag).unwrap(), r#"{"type":"add_tag","tag":"EA:Watch"}"#);
        assert!(RuleAction::AddTag { tag: " ".into() }.check().is_err());
        assert!(RuleAction::AddTag { tag: "x".repeat(201) }.check().is_err());
    }
}
