//! Network observations: what a sensor, a DHCP log or a CSV file tells us about one device at
//! one time. This module turns the untrusted input (JSON or CSV) into a validated
//! [`Observation`] or a reason a person can act on.

use std::net::IpAddr;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use super::mac::normalize_mac;

/// The most observations one request or one CSV upload may carry.
pub const MAX_BATCH: usize = 10_000;

const MAX_HOSTNAME: usize = 253;
const MAX_VENDOR_CLASS: usize = 255;
const MAX_USER_AGENT: usize = 1024;

/// An observation as it arrives: every field optional text, validated by [`RawObservation::validate`].
#[derive(Debug, Default, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RawObservation {
    pub mac: Option<String>,
    pub ip: Option<String>,
    pub hostname: Option<String>,
    pub dhcp_vendor_class: Option<String>,
    pub dhcp_params: Option<String>,
    pub user_agent: Option<String>,
    pub seen_at: Option<String>,
}

/// A validated observation, in the forms the inventory stores.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Observation {
    pub mac: Option<String>,
    pub ip: Option<String>,
    /// The short host name (first label), lower-case.
    pub hostname: Option<String>,
    /// The fully qualified name when the reported name had a domain, lower-case.
    pub fqdn: Option<String>,
    pub dhcp_vendor_class: Option<String>,
    pub dhcp_params: Option<String>,
    pub user_agent: Option<String>,
    /// UTC Unix seconds.
    pub seen_at: i64,
}

impl RawObservation {
    pub fn validate(&self, now: DateTime<Utc>) -> Result<Observation, String> {
        let mac =
            match non_empty(&self.mac) {
                Some(m) => Some(normalize_mac(m).ok_or_else(|| {
                    format!("mac {:?} is not a MAC address (expected e.g. aa:bb:cc:dd:ee:ff)", clip(m))
                })?),
                None => None,
            };
        let ip = match non_empty(&self.ip) {
            Some(s) => Some(
                s.parse::<IpAddr>()
                    .map_err(|_| format!("ip {:?} is not an IPv4 or IPv6 address", clip(s)))?
                    .to_string(),
            ),
            None => None,
        };
        if mac.is_none() && ip.is_none() {
            return Err("an observation needs a mac or an ip".into());
        }
        let (hostname, fqdn) = match non_empty(&self.hostname) {
            Some(h) => split_hostname(h)?,
            None => (None, None),
        };
        let dhcp_vendor_class = text_field("dhcp_vendor_class", &self.dhcp_vendor_class, MAX_VENDOR_CLASS)?;
        let user_agent = text_field("user_agent", &self.user_agent, MAX_USER_AGENT)?;
        let dhcp_params = match non_empty(&self.dhcp_params) {
            Some(p) => Some(normalize_dhcp_params(p)?),
            None => None,
        };
        let seen_at = match non_empty(&self.seen_at) {
            Some(s) => {
                let t = DateTime::parse_from_rfc3339(s)
                    .map_err(|_| format!("seen_at {:?} is not an RFC 3339 time (e.g. 2026-11-26T10:00:00Z)", clip(s)))?
                    .with_timezone(&Utc);
                if t > now + chrono::Duration::days(1) {
                    return Err(format!("seen_at {s} is in the future"));
                }
                t.timestamp()
            }
            None => now.timestamp(),
        };
        Ok(Observation { mac, ip, hostname, fqdn, dhcp_vendor_class, dhcp_params, user_agent, seen_at })
    }
}

fn non_empty(v: &Option<String>) -> Option<&str> {
    v.as_deref().map(str::trim).filter(|s| !s.is_empty())
}

/// Shortens hostile or huge input before it is echoed back in an error message.
fn clip(s: &str) -> String {
    if s.chars().count() > 64 { format!("{}…", s.chars().take(64).collect::<String>()) } else { s.to_owned() }
}

fn has_control(s: &str) -> bool {
    s.chars().any(|c| c.is_control())
}

fn text_field(name: &str, v: &Option<String>, max: usize) -> Result<Option<String>, String> {
    match non_empty(v) {
        None => Ok(None),
        Some(s) if s.chars().count() > max => Err(format!("{name} is longer than {max} characters")),
        Some(s) if has_control(s) => Err(format!("{name} contains control characters")),
        Some(s) => Ok(Some(s.to_owned())),
    }
}

/// Splits a reported name into the short host name and, when it has a domain, the FQDN.
fn split_hostname(h: &str) -> Result<(Option<String>, Option<String>), String> {
    if h.chars().count() > MAX_HOSTNAME {
        return Err(format!("hostname is longer than {MAX_HOSTNAME} characters"));
    }
    if has_control(h) {
        return Err("hostname contains control characters".into());
    }
    let (short, fqdn) = host_and_fqdn(h);
    Ok((Some(short), Some(fqdn).filter(|f| !f.is_empty())))
}

/// A reported name as the inventory stores it: the short host name (first label) and, when the
/// name has a domain, the FQDN (else empty); both lower-case.
pub fn host_and_fqdn(name: &str) -> (String, String) {
    let lower = name.trim_end_matches('.').to_lowercase();
    match lower.split_once('.') {
        Some((short, _)) if !short.is_empty() => (short.to_owned(), lower.clone()),
        _ => (lower, String::new()),
    }
}

/// DHCP option 55 as a comma list of option numbers, e.g. `1,3,6,15,31,33,43,44,46,47,119,121,249,252`.
fn normalize_dhcp_params(p: &str) -> Result<String, String> {
    let mut out = Vec::new();
    for part in p.split(',') {
        let n: u8 = part
            .trim()
            .parse()
            .map_err(|_| format!("dhcp_params {:?} is not a comma-separated list of option numbers 0-255", clip(p)))?;
        out.push(n.to_string());
    }
    if out.len() > 255 {
        return Err("dhcp_params lists more than 255 options".into());
    }
    Ok(out.join(","))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn raw(mac: &str, ip: &str) -> RawObservation {
        RawObservation { mac: Some(mac.into()), ip: Some(ip.into()), ..Default::default() }
    }

    #[test]
    fn a_full_observation_is_normalized() {
        let now = Utc::now();
        let o = RawObservation {
            mac: Some("AA-BB-CC-00-11-22".into()),
            ip: Some(" 10.0.0.7 ".into()),
            hostname: Some("Laptop-42.Corp.Example.com".into()),
            dhcp_vendor_class: Some("MSFT 5.0".into()),
            dhcp_params: Some("1, 3,6,15".into()),
            user_agent: None,
            seen_at: Some("2026-01-02T03:04:05Z".into()),
        }
        .validate(now)
        .unwrap();
        assert_eq!(o.mac.as_deref(), Some("aa:bb:cc:00:11:22"));
        assert_eq!(o.ip.as_deref(), Some("10.0.0.7"));
        assert_eq!(o.hostname.as_deref(), Some("laptop-42"));
        assert_eq!(o.fqdn.as_deref(), Some("laptop-42.corp.example.com"));
        assert_eq!(o.dhcp_params.as_deref(), Some("1,3,6,15"));
        assert_eq!(o.seen_at, 1767323045);
    }

    #[test]
    fn bad_fields_are_refused_with_the_reason() {
        let now = Utc::now();
        assert!(RawObservation::default().validate(now).unwrap_err().contains("needs a mac or an ip"));
        assert!(raw("nope", "10.0.0.1").validate(now).unwrap_err().contains("not a MAC"));
        assert!(raw("aa:bb:cc:dd:ee:ff", "10.0.0.300").validate(now).unwrap_err().contains("not an IPv4"));
        let mut o = raw("aa:bb:cc:dd:ee:ff", "10.0.0.1");
        o.dhcp_params = Some("1,3,999".into());
        assert!(o.validate(now).unwrap_err().contains("dhcp_params"));
        o.dhcp_params = None;
        o.hostname = Some("bad\u{0}name".into());
        assert!(o.validate(now).unwrap_err().contains("control"));
        o.hostname = Some("x".repeat(300));
        assert!(o.validate(now).unwrap_err().contains("longer"));
        o.hostname = None;
        o.seen_at = Some("yesterday".into());
        assert!(o.validate(now).unwrap_err().contains("RFC 3339"));
    }
}
