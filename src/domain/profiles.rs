//! Endpoint profiling: what an endpoint is ("Windows Workstation", "Apple iPhone", "HP
//! Printer"...), decided by rules over its observed [`Attributes`].
//!
//! Profiles ship as data: `profiles/standard.toml` (embedded, see [`ProfileLibrary::standard`];
//! its header documents the format). A profile has rules; a rule is a set of conditions that
//! must all hold and yields a [`MatchScore`]. A profile's score is the highest score among its
//! matching rules; the profile with the highest score wins ([`ProfileLibrary::evaluate`]), the
//! other matching profiles are kept as "other profiles", and no match at all is "Not Profiled".
//!
//! Ties between profiles with the same score are broken deterministically:
//! 1. the more specific matching rule wins (more conditions: "Apple vendor and hostname contains
//!    iPhone" beats "Apple vendor");
//! 2. then the profile whose name sorts first (byte order, case-sensitive).
//!
//! Within one profile, when several rules match, the reported rule is the one with the highest
//! score, then the most conditions, then the first in the file.
//!
//! Performance: everything is compiled once when the library is loaded (values lower-cased,
//! regexes built, a required literal extracted from each regex so that most regexes are rejected
//! by a substring test without running). [`ProfileLibrary::evaluate`] copies the attributes
//! lower-cased into a stack buffer once per call, checks cheap conditions (equals, prefix,
//! contains) before regexes, and allocates only for its result.

use std::collections::HashMap;
use std::fmt::{self, Write as _};
use std::str::FromStr;

use regex_lite::{Regex, RegexBuilder};
use serde::{Deserialize, Deserializer, Serialize, Serializer};

use super::mac::parse_mac;
use super::oui::vendor_for_mac;

mod loading;
#[cfg(test)]
use loading::required_literals;
use loading::{LibrarySpec, compile_profile, profile_near};

// ---------------------------------------------------------------------------------------------
// Match score
// ---------------------------------------------------------------------------------------------

/// How sure a profile's match is, ordered `VeryLow < Low < Medium < High < VeryHigh`.
///
/// Labels are "Very Low" … "Very High" (also the serde form); stored as a small integer
/// ([`MatchScore::to_i16`]: 1 = Very Low … 5 = Very High).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum MatchScore {
    VeryLow = 1,
    Low = 2,
    Medium = 3,
    High = 4,
    VeryHigh = 5,
}

impl MatchScore {
    /// Every score, lowest first.
    pub const ALL: [MatchScore; 5] =
        [MatchScore::VeryLow, MatchScore::Low, MatchScore::Medium, MatchScore::High, MatchScore::VeryHigh];

    /// The label: "Very Low", "Low", "Medium", "High", "Very High".
    pub fn as_str(self) -> &'static str {
        match self {
            MatchScore::VeryLow => "Very Low",
            MatchScore::Low => "Low",
            MatchScore::Medium => "Medium",
            MatchScore::High => "High",
            MatchScore::VeryHigh => "Very High",
        }
    }

    /// The storage value: 1 = Very Low … 5 = Very High.
    pub fn to_i16(self) -> i16 {
        self as i16
    }

    /// The score stored as [`MatchScore::to_i16`], or `None` for any other value.
    pub fn from_i16(value: i16) -> Option<MatchScore> {
        MatchScore::ALL.into_iter().find(|s| s.to_i16() == value)
    }
}

impl fmt::Display for MatchScore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.pad(self.as_str())
    }
}

/// The error for a string that names no match score.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown match score {0:?} (expected Very Low, Low, Medium, High or Very High)")]
pub struct ParseMatchScoreError(pub String);

impl FromStr for MatchScore {
    type Err = ParseMatchScoreError;

    /// Case-insensitive, and spaces, `_` and `-` are ignored: "Very High", "very high",
    /// "VeryHigh" and "very_high" are all Very High.
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let squeezed = |t: &str| {
            t.chars().filter(|c| !matches!(c, ' ' | '_' | '-')).flat_map(char::to_lowercase).collect::<String>()
        };
        let wanted = squeezed(s);
        MatchScore::ALL
            .into_iter()
            .find(|score| !wanted.is_empty() && squeezed(score.as_str()) == wanted)
            .ok_or_else(|| ParseMatchScoreError(s.to_owned()))
    }
}

impl Serialize for MatchScore {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(self.as_str())
    }
}

impl<'de> Deserialize<'de> for MatchScore {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let s = <std::borrow::Cow<'de, str>>::deserialize(deserializer)?;
        s.parse().map_err(serde::de::Error::custom)
    }
}

// ---------------------------------------------------------------------------------------------
// Attributes and fields
// ---------------------------------------------------------------------------------------------

/// What is known about an endpoint, as observed; every field is optional.
#[derive(Debug, Clone, Copy, Default)]
pub struct Attributes<'a> {
    /// The MAC address, canonical (`aa:bb:cc:dd:ee:ff`; other spellings are accepted too).
    pub mac: Option<&'a str>,
    /// The organization the MAC's prefix is registered to. When `None` and `mac` is set,
    /// [`ProfileLibrary::evaluate`] looks it up itself ([`vendor_for_mac`]).
    pub mac_vendor: Option<&'a str>,
    /// Host name or FQDN, as reported (DHCP option 12, DNS, an integration).
    pub hostname: Option<&'a str>,
    /// DHCP option 60, vendor class identifier, e.g. "MSFT 5.0".
    pub dhcp_vendor_class: Option<&'a str>,
    /// DHCP option 55, parameter request list, as a comma-separated list of decimal option
    /// codes in request order, e.g. "1,3,6,15" (spaces are ignored).
    pub dhcp_params: Option<&'a str>,
    /// An HTTP user agent seen from the endpoint.
    pub user_agent: Option<&'a str>,
    /// OS name reported by an integration, e.g. Defender's `osPlatform` "Windows11".
    pub os_name: Option<&'a str>,
    /// OS version reported by an integration, e.g. "23H2".
    pub os_version: Option<&'a str>,
}

/// An endpoint attribute a rule condition can test.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Field {
    MacPrefix,
    MacVendor,
    Hostname,
    DhcpVendorClass,
    DhcpParams,
    UserAgent,
    OsName,
    OsVersion,
}

const FIELD_COUNT: usize = 8;

impl Field {
    /// Every field, in the order conditions are described.
    pub const ALL: [Field; FIELD_COUNT] = [
        Field::MacPrefix,
        Field::MacVendor,
        Field::Hostname,
        Field::DhcpVendorClass,
        Field::DhcpParams,
        Field::UserAgent,
        Field::OsName,
        Field::OsVersion,
    ];

    /// The key in the library file, e.g. "dhcp_vendor_class".
    pub fn key(self) -> &'static str {
        match self {
            Field::MacPrefix => "mac_prefix",
            Field::MacVendor => "mac_vendor",
            Field::Hostname => "hostname",
            Field::DhcpVendorClass => "dhcp_vendor_class",
            Field::DhcpParams => "dhcp_params",
            Field::UserAgent => "user_agent",
            Field::OsName => "os_name",
            Field::OsVersion => "os_version",
        }
    }

    /// The words used in rule descriptions, e.g. "DHCP vendor class".
    pub fn label(self) -> &'static str {
        match self {
            Field::MacPrefix => "MAC address",
            Field::MacVendor => "MAC vendor",
            Field::Hostname => "hostname",
            Field::DhcpVendorClass => "DHCP vendor class",
            Field::DhcpParams => "DHCP parameter list",
            Field::UserAgent => "user agent",
            Field::OsName => "OS name",
            Field::OsVersion => "OS version",
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Compiled library
// ---------------------------------------------------------------------------------------------

/// One profile of the library.
#[derive(Debug, Clone, Serialize)]
pub struct ProfileDef {
    /// Unique name, e.g. "HP Printer".
    pub name: String,
    /// Grouping for the Profiles page, e.g. "Printer".
    pub category: String,
    pub description: String,
    /// Why endpoints with this profile are risky (e.g. an end-of-life OS); `None` when not.
    pub risky: Option<String>,
    /// Whether the profile is enabled until an admin says otherwise.
    pub enabled_by_default: bool,
    pub rules: Vec<RuleDef>,
    /// Indices into `rules`, best first (score, then specificity, then file order).
    #[serde(skip)]
    rule_order: Box<[u16]>,
    /// Position of `name` in the library's names sorted in byte order (for tie-breaks).
    #[serde(skip)]
    name_rank: u32,
}

/// One rule: conditions that must all hold, and the score they yield.
#[derive(Debug, Clone, Serialize)]
pub struct RuleDef {
    pub score: MatchScore,
    /// Human-readable, e.g. `MAC vendor contains "Hewlett Packard" and DHCP vendor class
    /// starts with "Hewlett-Packard" → High`.
    pub description: String,
    /// Conditions in evaluation order (cheapest first).
    #[serde(skip)]
    conditions: Vec<Condition>,
}

impl RuleDef {
    /// The number of conditions: the tie-break between equally scored profiles.
    pub fn specificity(&self) -> usize {
        self.conditions.len()
    }

    /// The rule's conditions, cheapest first (the description keeps the file's field order).
    pub fn conditions(&self) -> &[Condition] {
        &self.conditions
    }
}

/// One condition of a rule: a field and a test, holding when any of the test's values matches.
#[derive(Debug, Clone)]
pub struct Condition {
    field: Field,
    test: Test,
    description: String,
}

impl Condition {
    /// The attribute the condition tests (to show which observations led to a profile).
    pub fn field(&self) -> Field {
        self.field
    }

    /// E.g. `DHCP vendor class starts with "Hewlett-Packard"`.
    pub fn description(&self) -> &str {
        &self.description
    }

    fn cost(&self) -> u8 {
        match self.test {
            Test::Equals(_) => 0,
            Test::Prefix(_) => 1,
            Test::Contains(_) => 2,
            Test::Regex(_) => 3,
        }
    }

    #[inline]
    fn holds(&self, fields: &[Option<&str>; FIELD_COUNT]) -> bool {
        let Some(text) = fields[self.field as usize] else {
            return false;
        };
        let value = text.as_bytes();
        match &self.test {
            Test::Equals(vs) => vs.iter().any(|v| same_bytes(value, v.as_bytes())),
            Test::Prefix(vs) => {
                vs.iter().any(|v| value.len() >= v.len() && same_bytes(&value[..v.len()], v.as_bytes()))
            }
            Test::Contains(vs) => vs.iter().any(|v| contains_bytes(value, v.as_bytes())),
            Test::Regex(rs) => rs.iter().any(|r| {
                (r.required.is_empty() || r.required.iter().any(|l| contains_bytes(value, l.as_bytes())))
                    && r.regex.is_match(text)
            }),
        }
    }
}

/// Byte equality written out: the inputs are short, and a call to `memcmp` costs more than the
/// comparison itself.
#[inline]
fn same_bytes(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).all(|(x, y)| x == y)
}

/// Substring search for short haystacks and needles: scan for the first byte, then compare.
/// (`str::contains` prepares a Two-Way searcher on every call, which costs more here.)
#[inline]
fn contains_bytes(haystack: &[u8], needle: &[u8]) -> bool {
    let Some((&first, rest)) = needle.split_first() else {
        return true;
    };
    let Some(last_start) = haystack.len().checked_sub(needle.len()) else {
        return false;
    };
    haystack[..=last_start]
        .iter()
        .enumerate()
        .any(|(i, &b)| b == first && same_bytes(&haystack[i + 1..i + needle.len()], rest))
}

/// Values are lower-cased at load time (and inputs at evaluation time).
#[derive(Debug, Clone)]
enum Test {
    Equals(Box<[Box<str>]>),
    Prefix(Box<[Box<str>]>),
    Contains(Box<[Box<str>]>),
    Regex(Box<[CompiledRegex]>),
}

#[derive(Debug, Clone)]
struct CompiledRegex {
    regex: Regex,
    /// Lower-case literals of which every match contains one: when none is in the input,
    /// the regex cannot match (empty: no such literals known).
    required: Box<[Box<str>]>,
}

/// A loaded, validated and compiled set of profiles.
#[derive(Debug, Clone)]
pub struct ProfileLibrary {
    profiles: Vec<ProfileDef>,
}

/// Why a library file was refused. Every variant about one profile names it; rule numbers
/// count from 1 in the order the rules appear in the file (`rule` itself is the 0-based index).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum LibraryError {
    #[error(
        "profile library is not valid TOML{}{}: {message}",
        line.map(|l| format!(" at line {l}")).unwrap_or_default(),
        near.as_ref().map(|n| format!(" (in profile {n:?})")).unwrap_or_default()
    )]
    Syntax {
        message: String,
        /// The line of the error, counting from 1, when known.
        line: Option<usize>,
        /// The profile the error is in, when it can be told.
        near: Option<String>,
    },
    #[error("profile library: {0}")]
    Library(String),
    #[error("profile #{number} in the library has no name")]
    Unnamed { number: usize },
    #[error("profile {name:?}: {message}")]
    Profile { name: String, message: String },
    #[error("profile {name:?}, rule {}: {message}", rule + 1)]
    Rule { name: String, rule: usize, message: String },
    #[error("profile {name:?} is defined more than once")]
    Duplicate { name: String },
}

/// The result of [`ProfileLibrary::evaluate`].
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize)]
pub struct Evaluation {
    /// The winning profile, or `None`: "Not Profiled".
    pub best: Option<ProfileMatch>,
    /// The other matching profiles, sorted by score (highest first), then name.
    pub others: Vec<ProfileMatch>,
}

/// A matching profile and why it matched.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct ProfileMatch {
    /// Index into [`ProfileLibrary::profiles`].
    pub profile: usize,
    pub score: MatchScore,
    /// Index into that profile's `rules`: the rule that gave the score.
    pub rule: usize,
}

/// The standard library, as shipped.
pub const STANDARD_PROFILES_TOML: &str = include_str!("../../profiles/standard.toml");

/// Inputs longer than this in total are copied to the heap instead of the stack.
const STACK_BUFFER: usize = 1024;

impl ProfileLibrary {
    /// The standard profiles shipped with the product (`profiles/standard.toml`, embedded).
    pub fn standard() -> Result<ProfileLibrary, LibraryError> {
        ProfileLibrary::from_toml(STANDARD_PROFILES_TOML)
    }

    /// Loads, validates and compiles a library file. Any broken profile or rule (bad regex,
    /// unknown key, rule without conditions, bad score, duplicate name...) refuses the whole
    /// file with an error naming the profile and, where it applies, the rule.
    pub fn from_toml(text: &str) -> Result<ProfileLibrary, LibraryError> {
        let file: toml::Table = text.parse().map_err(|e: toml::de::Error| {
            let start = e.span().map(|span| span.start);
            LibraryError::Syntax {
                message: e.message().trim().to_owned(),
                line: start.and_then(|at| Some(text.get(..at)?.matches('\n').count() + 1)),
                near: start.and_then(|at| profile_near(text, at)),
            }
        })?;
        let spec: LibrarySpec = toml::Value::Table(file)
            .try_into()
            .map_err(|e: toml::de::Error| LibraryError::Library(e.message().trim().to_owned()))?;

        let mut profiles = Vec::with_capacity(spec.profile.len());
        let mut seen = HashMap::new();
        for (i, table) in spec.profile.into_iter().enumerate() {
            let name = match table.get("name") {
                Some(toml::Value::String(n)) if !n.trim().is_empty() => n.clone(),
                _ => return Err(LibraryError::Unnamed { number: i + 1 }),
            };
            if seen.insert(name.clone(), i).is_some() {
                return Err(LibraryError::Duplicate { name });
            }
            profiles.push(compile_profile(name, table)?);
        }

        let mut by_name: Vec<usize> = (0..profiles.len()).collect();
        by_name.sort_by(|&a, &b| profiles[a].name.cmp(&profiles[b].name));
        for (rank, i) in by_name.into_iter().enumerate() {
            profiles[i].name_rank = u32::try_from(rank).unwrap_or(u32::MAX);
        }
        Ok(ProfileLibrary { profiles })
    }

    /// The profiles, in file order; [`ProfileMatch::profile`] indexes this slice.
    pub fn profiles(&self) -> &[ProfileDef] {
        &self.profiles
    }

    /// The index of the profile with this exact name.
    pub fn find(&self, name: &str) -> Option<usize> {
        self.profiles.iter().position(|p| p.name == name)
    }

    /// Profiles the endpoint with these attributes: every enabled profile (`is_enabled(index)`)
    /// with a matching rule is a match; the best one (see the module documentation for the
    /// tie-break) is `best`, the others follow sorted by score, then name.
    ///
    /// To use the shipped defaults: `lib.evaluate(&attrs, |i| lib.profiles()[i].enabled_by_default)`.
    pub fn evaluate(&self, attrs: &Attributes, is_enabled: impl Fn(usize) -> bool) -> Evaluation {
        // The vendor is looked up here when the caller did not (cheap, usually no allocation).
        let looked_up = match (attrs.mac_vendor, attrs.mac) {
            (None, Some(mac)) => vendor_for_mac(mac),
            _ => None,
        };
        let mac_octets = attrs.mac.and_then(parse_mac);
        let mut mac_text = [0u8; 17];
        let mac = mac_octets.map(|o| canonical_mac(o, &mut mac_text));
        let raw: [Option<&str>; FIELD_COUNT] = [
            mac,
            attrs.mac_vendor.or(looked_up.as_deref()),
            attrs.hostname,
            attrs.dhcp_vendor_class,
            attrs.dhcp_params,
            attrs.user_agent,
            attrs.os_name,
            attrs.os_version,
        ];

        let total: usize = raw.iter().flatten().map(|s| s.len()).sum();
        let mut stack = [0u8; STACK_BUFFER];
        let mut heap = Vec::new();
        let buffer: &mut [u8] = if total <= STACK_BUFFER {
            &mut stack[..total]
        } else {
            heap.resize(total, 0);
            &mut heap
        };
        let fields = lower_case_fields(&raw, buffer);

        let mut matches: Vec<ProfileMatch> = Vec::new();
        for (index, profile) in self.profiles.iter().enumerate() {
            if !is_enabled(index) {
                continue;
            }
            // The first matching rule in `rule_order` is the profile's best.
            let Some(&rule) = profile.rule_order.iter().find(|&&r| profile.rules[usize::from(r)].matches(&fields))
            else {
                continue;
            };
            let rule = usize::from(rule);
            matches.push(ProfileMatch { profile: index, score: profile.rules[rule].score, rule });
        }

        let Some(best_at) = (0..matches.len()).max_by(|&a, &b| {
            let (ma, mb) = (&matches[a], &matches[b]);
            let (pa, pb) = (&self.profiles[ma.profile], &self.profiles[mb.profile]);
            ma.score
                .cmp(&mb.score)
                .then_with(|| pa.rules[ma.rule].specificity().cmp(&pb.rules[mb.rule].specificity()))
                .then_with(|| pb.name_rank.cmp(&pa.name_rank))
        }) else {
            return Evaluation::default();
        };
        let best = matches.swap_remove(best_at);
        matches.sort_by(|a, b| {
            b.score
                .cmp(&a.score)
                .then_with(|| self.profiles[a.profile].name_rank.cmp(&self.profiles[b.profile].name_rank))
        });
        Evaluation { best: Some(best), others: matches }
    }
}

impl RuleDef {
    #[inline]
    fn matches(&self, fields: &[Option<&str>; FIELD_COUNT]) -> bool {
        self.conditions.iter().all(|c| c.holds(fields))
    }
}

/// Writes the canonical `aa:bb:cc:dd:ee:ff` into `out` and returns it as text.
fn canonical_mac(octets: [u8; 6], out: &mut [u8; 17]) -> &str {
    const HEX: &[u8; 16] = b"0123456789abcdef";
    for (i, o) in octets.iter().enumerate() {
        out[3 * i] = HEX[usize::from(o >> 4)];
        out[3 * i + 1] = HEX[usize::from(o & 0x0f)];
        if i < 5 {
            out[3 * i + 2] = b':';
        }
    }
    std::str::from_utf8(out).unwrap_or_default()
}

/// Copies every present field lower-cased (ASCII) into `buffer` (exactly their total length);
/// the DHCP parameter list also loses its whitespace.
fn lower_case_fields<'b>(raw: &[Option<&str>; FIELD_COUNT], buffer: &'b mut [u8]) -> [Option<&'b str>; FIELD_COUNT] {
    let mut fields: [Option<&'b str>; FIELD_COUNT] = [None; FIELD_COUNT];
    let mut rest: &'b mut [u8] = buffer;
    for (i, value) in raw.iter().enumerate() {
        let Some(value) = value else { continue };
        let (head, tail) = std::mem::take(&mut rest).split_at_mut(value.len());
        rest = tail;
        let mut len = 0;
        for &b in value.as_bytes() {
            if i == Field::DhcpParams as usize && b.is_ascii_whitespace() {
                continue;
            }
            head[len] = b.to_ascii_lowercase();
            len += 1;
        }
        let head: &'b [u8] = head;
        // Lower-casing ASCII bytes (and dropping ASCII spaces) keeps UTF-8 valid.
        fields[i] = std::str::from_utf8(&head[..len]).ok();
    }
    fields
}

#[cfg(test)]
mod tests;
