//! EDR coverage: which endpoints Microsoft Defender for Endpoint does not protect as it could.
//! Pure rules over what the inventory knows of an endpoint; `crate::coverage` applies them.
//!
//! Three kinds of gap, each a list of its own (and an Endpoints filter):
//! - **not onboarded**: seen on the network, profiled as an operating system Defender runs on
//!   (Windows, macOS, Linux workstations and servers), and no Defender machine;
//! - **blind spot**: an onboarded machine whose sensor reports but is impaired (`healthStatus`
//!   `ImpairedCommunication`, `NoSensorData`…), or is `Inactive`/`Unknown` while the network still
//!   sees the device, or that Defender has not seen for N days while the network has;
//! - **Defender flagged**: a machine Defender itself reports as `CanBeOnboarded` or `Unsupported`
//!   (`onboardingStatus` of the Machine entity,
//!   https://learn.microsoft.com/en-us/defender-endpoint/api/machine; `InsufficientInfo` means
//!   "seen only briefly" and is left out).
//!
//! Statuses are compared without regard to case: Microsoft's pages spell them both ways.

use chrono::DateTime;

/// One kind of coverage gap.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum GapKind {
    NotOnboarded,
    BlindSpot,
    DefenderFlagged,
}

impl GapKind {
    pub const ALL: [GapKind; 3] = [GapKind::NotOnboarded, GapKind::BlindSpot, GapKind::DefenderFlagged];

    /// As stored, in filters and in the API.
    pub fn as_str(self) -> &'static str {
        match self {
            GapKind::NotOnboarded => "not_onboarded",
            GapKind::BlindSpot => "blind_spot",
            GapKind::DefenderFlagged => "defender_flagged",
        }
    }

    pub fn parse(s: &str) -> Option<GapKind> {
        Self::ALL.into_iter().find(|k| k.as_str() == s)
    }

    /// As people read it.
    pub fn label(self) -> &'static str {
        match self {
            GapKind::NotOnboarded => "Not onboarded",
            GapKind::BlindSpot => "Defender blind spot",
            GapKind::DefenderFlagged => "Flagged by Defender",
        }
    }

    /// What the list holds, in a sentence.
    pub fn explanation(self) -> &'static str {
        match self {
            GapKind::NotOnboarded => {
                "Seen on the network and profiled as Windows, macOS or Linux, but Defender does not know the device."
            }
            GapKind::BlindSpot => {
                "Onboarded to Defender, but its sensor is not healthy, or Defender has not heard from it for days while the network still sees it."
            }
            GapKind::DefenderFlagged => {
                "Defender discovered the device and reports it as not onboarded: it can be onboarded, is unsupported, or Defender lacks the information to tell."
            }
        }
    }
}

/// The Defender machine of an endpoint, as far as coverage is concerned.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MachineState {
    pub onboarding_status: String,
    pub health_status: String,
    /// When Defender last saw it (Unix seconds; 0 when it did not say).
    pub last_seen: i64,
}

/// What the inventory knows of an endpoint.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EndpointFacts {
    pub endpoint_id: i64,
    pub profile: String,
    /// The profile's category (`Workstation`, `Server`, `Operating system`, `Camera`, ...).
    pub profile_category: String,
    pub os_name: String,
    /// When a source other than Defender (network observations, a CSV upload) last saw it.
    pub network_last_seen: Option<i64>,
    /// Its live Defender machine, when it has one (the most recently seen if several).
    pub machine: Option<MachineState>,
}

/// A gap found: its kind and why, in words.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Gap {
    pub kind: GapKind,
    pub detail: String,
}

/// Whether a device profiled this way could run Defender for Endpoint: a workstation or server
/// (or an operating-system profile) of Windows, macOS or Linux, the platforms of Microsoft's
/// minimum requirements (https://learn.microsoft.com/en-us/defender-endpoint/minimum-requirements).
/// Windows releases no Defender client ever supported (XP, 2000, Server 2003, CE and phones)
/// are left out: an old kiosk on Windows XP is a risk of another kind, not a missing onboarding.
pub fn could_run_defender(profile: &str, category: &str, os_name: &str) -> bool {
    let category = category.to_ascii_lowercase();
    if !matches!(category.as_str(), "workstation" | "server" | "operating system") {
        return false;
    }
    let text = format!("{profile} {os_name}").to_ascii_lowercase();
    // Releases whose only route to Defender was the Microsoft Monitoring Agent, retired in
    // August 2024, count as never supported too (Windows 7, 8 and 8.1, Vista, Server 2008).
    const NEVER: [&str; 11] = [
        "windows xp",
        "windows 2000",
        "server 2003",
        "windows ce",
        "mobile",
        "phone",
        "nt 4",
        "windows 7",
        "windows 8",
        "vista",
        "server 2008",
    ];
    if NEVER.iter().any(|n| text.contains(n)) {
        return false;
    }
    const FAMILIES: [&str; 12] =
        ["windows", "mac", "macos", "os x", "linux", "ubuntu", "debian", "centos", "red hat", "rhel", "suse", "fedora"];
    FAMILIES.iter().any(|f| text.contains(f))
}

fn day(t: i64) -> String {
    DateTime::from_timestamp(t, 0).map(|d| d.format("%Y-%m-%d").to_string()).unwrap_or_else(|| "never".into())
}

/// The endpoint's coverage gap at `now`, if it has one. `blind_after_days`: how long Defender may
/// go without seeing a machine the network still sees.
pub fn gap_of(f: &EndpointFacts, blind_after_days: i64, now: i64) -> Option<Gap> {
    let window = blind_after_days * 86_400;
    // Only a device the network saw within the window is "still seen": a PC retired last year,
    // or a laptop switched off for a month, is not a gap today.
    let network_recent = f.network_last_seen.is_some_and(|t| now - t <= window);
    let capable = could_run_defender(&f.profile, &f.profile_category, &f.os_name);
    let gap = |kind, detail: String| Some(Gap { kind, detail });
    let Some(m) = &f.machine else {
        return (network_recent && capable).then(|| Gap {
            kind: GapKind::NotOnboarded,
            detail: format!("Profiled as {}; Defender has no machine for it.", f.profile),
        });
    };
    // Microsoft documents these values in varying case (`onboarded`, `Onboarded`):
    // https://learn.microsoft.com/en-us/defender-endpoint/api/machine
    let onboarding = m.onboarding_status.to_ascii_lowercase();
    let health = m.health_status.to_ascii_lowercase();
    match onboarding.as_str() {
        "onboarded" => {
            // Inactive (or Unknown) is also what a machine switched off, re-imaged or retired
            // looks like: a blind spot only while the network still sees the device. A sensor
            // that reports but is impaired (ImpairedCommunication, NoSensorData…) is one anyway.
            let quiet = matches!(health.as_str(), "inactive" | "unknown" | "");
            if health != "active" && (!quiet || network_recent) {
                return gap(
                    GapKind::BlindSpot,
                    format!(
                        "Defender reports its sensor as {}; last seen by Defender {}.",
                        if m.health_status.is_empty() { "of unknown health" } else { &m.health_status },
                        day(m.last_seen)
                    ),
                );
            }
            // A machine without a last-seen time (0) is not judged on silence.
            (m.last_seen > 0 && now - m.last_seen > window && network_recent).then(|| Gap {
                kind: GapKind::BlindSpot,
                detail: format!(
                    "Defender has not seen it since {} (over {blind_after_days} days); the network saw it {}.",
                    day(m.last_seen),
                    day(f.network_last_seen.unwrap_or_default())
                ),
            })
        }
        "canbeonboarded" => gap(GapKind::DefenderFlagged, "Defender reports it can be onboarded.".into()),
        "unsupported" => gap(GapKind::DefenderFlagged, "Defender reports it as unsupported.".into()),
        // InsufficientInfo: "only briefly seen on the network" (Microsoft's device inventory
        // reference): not a finding by itself. Missing: judge by the profile.
        "insufficientinfo" => None,
        _ => (network_recent && capable).then(|| Gap {
            kind: GapKind::NotOnboarded,
            detail: "Defender lists it without an onboarding status.".into(),
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const NOW: i64 = 1_800_000_000;
    const DAY: i64 = 86_400;

    fn facts(profile: &str, category: &str, network: Option<i64>, machine: Option<(&str, &str, i64)>) -> EndpointFacts {
        EndpointFacts {
            endpoint_id: 1,
            profile: profile.into(),
            profile_category: category.into(),
            os_name: String::new(),
            network_last_seen: network,
            machine: machine.map(|(o, h, t)| MachineState {
                onboarding_status: o.into(),
                health_status: h.into(),
                last_seen: t,
            }),
        }
    }

    fn kind(f: &EndpointFacts) -> Option<GapKind> {
        gap_of(f, 7, NOW).map(|g| g.kind)
    }

    #[test]
    fn devices_that_could_run_defender() {
        assert!(could_run_defender("Windows Workstation", "Workstation", ""));
        assert!(could_run_defender("Windows11_23H2", "Operating system", "Windows11"));
        assert!(could_run_defender("Apple Mac", "Workstation", ""));
        assert!(could_run_defender("Linux Server", "Server", ""));
        assert!(could_run_defender("CentOS Linux", "Server", ""));
        assert!(!could_run_defender("Windows XP", "Workstation", ""));
        assert!(!could_run_defender("Windows Server 2003", "Server", ""));
        assert!(!could_run_defender("Windows 7", "Workstation", ""), "only through the retired agent");
        assert!(!could_run_defender("Windows Server 2008", "Server", ""));
        assert!(!could_run_defender("Windows 8.1", "Workstation", ""));
        assert!(could_run_defender("Windows Server 2012", "Server", ""), "2012 R2 runs the unified agent");
        assert!(!could_run_defender("Axis Camera", "Camera", "Linux"), "an IP camera runs Linux but no Defender");
        assert!(!could_run_defender("Chromebook", "Workstation", ""));
        assert!(!could_run_defender("", "", ""));
    }

    #[test]
    fn not_onboarded_needs_the_network_and_a_capable_profile() {
        assert_eq!(kind(&facts("Windows Workstation", "Workstation", Some(NOW), None)), Some(GapKind::NotOnboarded));
        assert_eq!(kind(&facts("Windows Workstation", "Workstation", None, None)), None, "known only to Defender");
        let retired = facts("Windows Workstation", "Workstation", Some(NOW - 300 * DAY), None);
        assert_eq!(kind(&retired), None, "not seen on the network for months");
        assert_eq!(kind(&facts("HP Printer", "Printer", Some(NOW), None)), None);
    }

    #[test]
    fn blind_spots_are_unhealthy_sensors_and_silent_machines_the_network_sees() {
        let w = ("Windows Workstation", "Workstation");
        assert_eq!(kind(&facts(w.0, w.1, None, Some(("Onboarded", "Active", NOW)))), None);
        assert_eq!(kind(&facts(w.0, w.1, None, Some(("Onboarded", "Inactive", NOW)))), None, "switched off");
        let seen = Some(NOW - DAY);
        assert_eq!(kind(&facts(w.0, w.1, seen, Some(("Onboarded", "Inactive", NOW)))), Some(GapKind::BlindSpot));
        assert_eq!(kind(&facts(w.0, w.1, seen, Some(("onboarded", "inactive", NOW)))), Some(GapKind::BlindSpot));
        assert_eq!(kind(&facts(w.0, w.1, seen, Some(("onboarded", "active", NOW)))), None, "any case");
        assert_eq!(kind(&facts(w.0, w.1, seen, Some(("Onboarded", "Active", 0)))), None, "no last-seen time");
        assert_eq!(
            kind(&facts(w.0, w.1, None, Some(("Onboarded", "ImpairedCommunication", NOW)))),
            Some(GapKind::BlindSpot)
        );
        let silent = Some(("Onboarded", "Active", NOW - 8 * DAY));
        assert_eq!(kind(&facts(w.0, w.1, Some(NOW - DAY), silent)), Some(GapKind::BlindSpot));
        assert_eq!(kind(&facts(w.0, w.1, Some(NOW - 9 * DAY), silent)), None, "gone from the network too");
        assert_eq!(kind(&facts(w.0, w.1, None, silent)), None, "not seen on the network");
        let recent = Some(("Onboarded", "Active", NOW - 6 * DAY));
        assert_eq!(kind(&facts(w.0, w.1, Some(NOW), recent)), None, "within the days allowed");
        let detail = gap_of(&facts(w.0, w.1, Some(NOW - DAY), silent), 7, NOW).unwrap().detail;
        assert!(detail.contains("over 7 days"), "{detail}");
    }

    #[test]
    fn defender_flags_what_it_did_not_onboard() {
        for status in ["CanBeOnboarded", "Unsupported", "canbeonboarded"] {
            let f = facts("Network Switch", "Network Device", Some(NOW), Some((status, "", 0)));
            assert_eq!(kind(&f), Some(GapKind::DefenderFlagged), "{status}");
        }
        let brief = facts("Network Switch", "Network Device", Some(NOW), Some(("InsufficientInfo", "", 0)));
        assert_eq!(kind(&brief), None, "seen only briefly: not a finding");
    }

    #[test]
    fn kinds_round_trip() {
        for k in GapKind::ALL {
            assert_eq!(GapKind::parse(k.as_str()), Some(k));
        }
        assert_eq!(GapKind::parse("any"), None);
    }
}
