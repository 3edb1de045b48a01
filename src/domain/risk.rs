//! Risk: each endpoint has one [`RiskFactor`] per assessment source (profile, duplicate MAC,
//! Defender exposure, Defender alerts...), each with a [`RiskLevel`]; the endpoint's overall risk
//! level is the highest of them ([`overall`]).

use std::fmt;
use std::str::FromStr;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// How risky an endpoint is, ordered `None < Low < Medium < High < Critical`.
///
/// Stored as a small integer ([`RiskLevel::to_i16`]: 0 = None … 4 = Critical) so that the
/// database can sort and filter on it; serialized (JSON API) as its name, e.g. `"High"`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub enum RiskLevel {
    #[default]
    None,
    Low,
    Medium,
    High,
    Critical,
}

impl RiskLevel {
    /// Every level, lowest first.
    pub const ALL: [RiskLevel; 5] =
        [RiskLevel::None, RiskLevel::Low, RiskLevel::Medium, RiskLevel::High, RiskLevel::Critical];

    /// The display name: `"None"`, `"Low"`, `"Medium"`, `"High"`, `"Critical"`.
    pub fn as_str(self) -> &'static str {
        match self {
            RiskLevel::None => "None",
            RiskLevel::Low => "Low",
            RiskLevel::Medium => "Medium",
            RiskLevel::High => "High",
            RiskLevel::Critical => "Critical",
        }
    }

    /// The storage value: 0 = None, 1 = Low, 2 = Medium, 3 = High, 4 = Critical.
    pub fn to_i16(self) -> i16 {
        self as i16
    }

    /// The display name of a stored level (an unknown value shows as `"None"`).
    pub fn label_of(stored: i16) -> &'static str {
        RiskLevel::from_i16(stored).unwrap_or_default().as_str()
    }

    /// The level stored as [`RiskLevel::to_i16`], or `None` for any other value.
    pub fn from_i16(value: i16) -> Option<RiskLevel> {
        usize::try_from(value).ok().and_then(|i| RiskLevel::ALL.get(i).copied())
    }

    /// Defender's vulnerability severity (`Low`, `Medium`, `High`, `Critical`; any case) maps to
    /// the same level. Anything else is `None` (unknown: let the caller log it).
    pub fn from_defender_vulnerability_severity(severity: &str) -> Option<RiskLevel> {
        match severity.trim().parse() {
            Ok(RiskLevel::None) | Err(_) => None,
            Ok(level) => Some(level),
        }
    }

    /// Defender's alert severity (any case): `Informational` and `Low` → Low, `Medium` →
    /// Medium, `High` → High. `UnSpecified` (an alert Defender did not grade) → Low: an active
    /// alert is never "no risk", but without a grade it is not evidence of more. Anything else is
    /// `None` (unknown: let the caller log it).
    pub fn from_defender_alert_severity(severity: &str) -> Option<RiskLevel> {
        let s = severity.trim();
        if s.eq_ignore_ascii_case("informational") || s.eq_ignore_ascii_case("unspecified") {
            return Some(RiskLevel::Low);
        }
        match s.parse() {
            Ok(level @ (RiskLevel::Low | RiskLevel::Medium | RiskLevel::High)) => Some(level),
            _ => None,
        }
    }
}

impl fmt::Display for RiskLevel {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.pad(self.as_str())
    }
}

/// The error for a string that names no risk level.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown risk level {0:?} (expected None, Low, Medium, High or Critical)")]
pub struct ParseRiskLevelError(pub String);

impl FromStr for RiskLevel {
    type Err = ParseRiskLevelError;

    /// Case-insensitive: `"high"`, `"High"` and `"HIGH"` are all High.
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        RiskLevel::ALL
            .into_iter()
            .find(|level| level.as_str().eq_ignore_ascii_case(s))
            .ok_or_else(|| ParseRiskLevelError(s.to_owned()))
    }
}

impl Serialize for RiskLevel {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(self.as_str())
    }
}

impl<'de> Deserialize<'de> for RiskLevel {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let s = <std::borrow::Cow<'de, str>>::deserialize(deserializer)?;
        s.parse().map_err(serde::de::Error::custom)
    }
}

/// One source's assessment of an endpoint.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RiskFactor {
    /// The assessment source, e.g. "Profile", "Duplicate MAC", "Microsoft Defender Exposure".
    pub source: String,
    pub level: RiskLevel,
    /// One line for lists, e.g. "Not Profiled" or the most severe vulnerability's name.
    pub summary: String,
    /// The longer explanation for the Risk tab (may be empty).
    pub details: String,
    pub updated_at: DateTime<Utc>,
}

/// The overall risk level: the highest level among the factors, `None` when there are none.
pub fn overall<'a>(factors: impl IntoIterator<Item = &'a RiskFactor>) -> RiskLevel {
    factors.into_iter().map(|f| f.level).max().unwrap_or(RiskLevel::None)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn factor(source: &str, level: RiskLevel) -> RiskFactor {
        RiskFactor {
            source: source.into(),
            level,
            summary: String::new(),
            details: String::new(),
            updated_at: DateTime::UNIX_EPOCH,
        }
    }

    #[test]
    fn levels_are_ordered_from_none_to_critical() {
        use RiskLevel::*;
        assert!(None < Low && Low < Medium && Medium < High && High < Critical);
        assert_eq!(RiskLevel::default(), None);
    }

    #[test]
    fn names_parse_in_any_case_and_display_as_written() {
        for level in RiskLevel::ALL {
            assert_eq!(level.as_str().parse(), Ok(level));
            assert_eq!(level.as_str().to_uppercase().parse(), Ok(level));
            assert_eq!(level.to_string(), level.as_str());
        }
        assert_eq!("critical".parse(), Ok(RiskLevel::Critical));
        assert!("severe".parse::<RiskLevel>().is_err());
        assert!("".parse::<RiskLevel>().is_err());
    }

    #[test]
    fn storage_values_round_trip_and_keep_the_order() {
        for level in RiskLevel::ALL {
            assert_eq!(RiskLevel::from_i16(level.to_i16()), Some(level));
        }
        assert_eq!(RiskLevel::None.to_i16(), 0);
        assert_eq!(RiskLevel::Critical.to_i16(), 4);
        assert_eq!(RiskLevel::from_i16(5), None);
        assert_eq!(RiskLevel::from_i16(-1), None);
    }

    #[test]
    fn serde_uses_the_names() {
        assert_eq!(serde_json::to_string(&RiskLevel::Medium).unwrap(), "\"Medium\"");
        assert_eq!(serde_json::from_str::<RiskLevel>("\"high\"").unwrap(), RiskLevel::High);
        assert!(serde_json::from_str::<RiskLevel>("\"bad\"").is_err());
    }

    #[test]
    fn defender_vulnerability_severity_maps_to_the_same_level() {
        use RiskLevel::*;
        for (severity, level) in
            [("Low", Low), ("Medium", Medium), ("High", High), ("Critical", Critical), ("critical", Critical)]
        {
            assert_eq!(RiskLevel::from_defender_vulnerability_severity(severity), Some(level));
        }
        assert_eq!(RiskLevel::from_defender_vulnerability_severity("None"), Option::None);
        assert_eq!(RiskLevel::from_defender_vulnerability_severity("Severe"), Option::None);
    }

    #[test]
    fn defender_alert_severity_maps_informational_and_unspecified_to_low() {
        use RiskLevel::*;
        for (severity, level) in [
            ("Informational", Low),
            ("Low", Low),
            ("Medium", Medium),
            ("High", High),
            ("UnSpecified", Low),
            ("unspecified", Low),
        ] {
            assert_eq!(RiskLevel::from_defender_alert_severity(severity), Some(level), "{severity}");
        }
        assert_eq!(RiskLevel::from_defender_alert_severity("Critical"), Option::None);
        assert_eq!(RiskLevel::from_defender_alert_severity(""), Option::None);
    }

    #[test]
    fn overall_risk_is_the_highest_factor_and_none_without_factors() {
        assert_eq!(overall(&[]), RiskLevel::None);
        let factors = vec![
            factor("Profile", RiskLevel::Low),
            factor("Microsoft Defender Exposure", RiskLevel::Critical),
            factor("Microsoft Defender Alerts", RiskLevel::Medium),
        ];
        assert_eq!(overall(&factors), RiskLevel::Critical);
        assert_eq!(overall(&factors[..1]), RiskLevel::Low);
    }
}
