//! The Endpoints list's query string, shared by the page, its CSV export and the JSON API.

use serde::Deserialize;

use crate::db::models::endpoint_list::{CoverageFilter, Cursor, EndpointQuery, SortKey};
use crate::domain::coverage::GapKind;
use crate::domain::risk::RiskLevel;
use crate::error::AppError;

/// The list's query string. Everything is optional; unknown values are refused with a 400.
#[derive(Debug, Default, Deserialize)]
pub struct ListParams {
    #[serde(default)]
    pub q: String,
    #[serde(default)]
    pub source: String,
    #[serde(default)]
    pub os: String,
    #[serde(default)]
    pub risk: String,
    #[serde(default)]
    pub profile: String,
    /// `unmatched`: the endpoints Defender machines created because they matched nothing.
    #[serde(default)]
    pub defender: String,
    /// `any`, or a kind of EDR coverage gap (`not_onboarded`, `blind_spot`, `defender_flagged`).
    #[serde(default)]
    pub coverage: String,
    /// A Defender machine tag, matched exactly.
    #[serde(default)]
    pub tag: String,
    #[serde(default)]
    pub sort: String,
    #[serde(default)]
    pub dir: String,
    #[serde(default)]
    pub after: String,
    pub limit: Option<i64>,
}

fn opt(s: &str) -> Option<String> {
    Some(s.trim()).filter(|s| !s.is_empty()).map(str::to_owned)
}

impl ListParams {
    /// The same query for the HTML list and the JSON API.
    pub fn to_query(&self, default_limit: i64) -> Result<EndpointQuery, AppError> {
        if self.q.len() > 256 || self.after.len() > 600 {
            return Err(AppError::bad_request("The search text is too long."));
        }
        if self.tag.chars().count() > crate::defender::machine::MAX_TAG_CHARS {
            return Err(AppError::bad_request("The tag is too long."));
        }
        let texts = [&self.q, &self.source, &self.os, &self.profile, &self.after, &self.coverage, &self.tag];
        if texts.iter().any(|t| t.chars().any(char::is_control)) {
            return Err(AppError::bad_request("The search holds control characters."));
        }
        let sort = match opt(&self.sort) {
            None => SortKey::default(),
            Some(s) => SortKey::parse(&s).ok_or_else(|| {
                AppError::bad_request(format!("Unknown sort {s:?}: use last_seen, first_seen, hostname, ip or risk."))
            })?,
        };
        let descending = match self.dir.as_str() {
            "" => matches!(sort, SortKey::LastSeen | SortKey::FirstSeen | SortKey::Risk),
            "desc" => true,
            "asc" => false,
            d => {
                return Err(AppError::bad_request(format!("Unknown direction {d:?}: use asc or desc.")));
            }
        };
        let risk = match opt(&self.risk) {
            None => None,
            Some(r) => Some(
                RiskLevel::ALL
                    .iter()
                    .position(|l| l.as_str().eq_ignore_ascii_case(&r))
                    .map(|p| p as i16)
                    .ok_or_else(|| AppError::bad_request(format!("Unknown risk level {r:?}.")))?,
            ),
        };
        let after = match opt(&self.after) {
            None => None,
            Some(a) => {
                Some(Cursor::decode(&a, sort).ok_or_else(|| AppError::bad_request("The page position is not valid."))?)
            }
        };
        let defender_unmatched = match self.defender.trim() {
            "" => false,
            "unmatched" => true,
            d => return Err(AppError::bad_request(format!("Unknown defender filter {d:?}: use unmatched."))),
        };
        let coverage = match self.coverage.trim() {
            "" => None,
            "any" => Some(CoverageFilter::AnyGap),
            k => Some(CoverageFilter::Kind(GapKind::parse(k).ok_or_else(|| {
                AppError::bad_request(format!(
                    "Unknown coverage filter {k:?}: use any, not_onboarded, blind_spot or defender_flagged."
                ))
            })?)),
        };
        let limit = self.limit.unwrap_or(default_limit);
        if !(1..=500).contains(&limit) {
            return Err(AppError::bad_request("limit must be between 1 and 500."));
        }
        Ok(EndpointQuery {
            search: opt(&self.q),
            source: opt(&self.source),
            os: opt(&self.os),
            risk,
            profile: opt(&self.profile),
            defender_unmatched,
            coverage,
            tag: opt(&self.tag),
            sort,
            descending,
            after,
            limit,
        })
    }

    /// The query string of this list with another page position, for links.
    pub fn with_after(&self, after: Option<&str>) -> String {
        let mut s = url::form_urlencoded::Serializer::new(String::new());
        for (k, v) in [
            ("q", &self.q),
            ("source", &self.source),
            ("os", &self.os),
            ("risk", &self.risk),
            ("profile", &self.profile),
            ("defender", &self.defender),
            ("coverage", &self.coverage),
            ("tag", &self.tag),
            ("sort", &self.sort),
            ("dir", &self.dir),
        ] {
            if !v.is_empty() {
                s.append_pair(k, v);
            }
        }
        if let Some(limit) = self.limit {
            s.append_pair("limit", &limit.to_string());
        }
        if let Some(a) = after {
            s.append_pair("after", a);
        }
        s.finish()
    }
}
