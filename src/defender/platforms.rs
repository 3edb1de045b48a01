//! Where Microsoft documents each machine action as supported: the one table the product offers
//! actions from (`docs/defender-client.md` ▸ Platforms and versions).
//!
//! Sources (read in `docs/defender-behaviour-research.md` §3):
//! * "Take response actions on a device",
//!   <https://learn.microsoft.com/en-us/defender-endpoint/respond-machine-alerts> (ms.date
//!   12/31/2025): full isolation on "Windows 11, Windows 10, version 1703 or later, Windows Server
//!   2012 R2 and later", macOS ("client version 101.98.84 and above") and "all supported
//!   Microsoft Defender for Endpoint on Linux"; selective isolation on "Windows 11, Windows 10
//!   version 1703 or later, Windows Server 2012 R2 and later, … and macOS"; antivirus scan "for
//!   macOS and Linux for client version 101.98.84 and above".
//! * The API pages: <https://learn.microsoft.com/en-us/defender-endpoint/api/isolate-machine>
//!   (Linux full isolation, no version), <https://learn.microsoft.com/en-us/defender-endpoint/api/unisolate-machine>
//!   and <https://learn.microsoft.com/en-us/defender-endpoint/api/run-av-scan> ("Windows 10,
//!   version 1709 or later, and on Windows 11", "Linux Servers", "macOS").
//! * Restrict app execution: "available for devices on Windows 10, version 1709 or later, Windows
//!   11, and Windows Server 2019 or later" (respond-machine-alerts; the API page
//!   <https://learn.microsoft.com/en-us/defender-endpoint/api/restrict-code-execution> names only
//!   Windows 10 1709+ and Windows 11), with Microsoft Defender Antivirus. Removing it
//!   (<https://learn.microsoft.com/en-us/defender-endpoint/api/unrestrict-code-execution>) is
//!   offered wherever the restriction is, without the Windows 10 minimum, like a release.
//! * Collect investigation package: no OS section on
//!   <https://learn.microsoft.com/en-us/defender-endpoint/api/collect-investigation-package>;
//!   respond-machine-alerts lists the package's contents for Windows devices and for "Mac and
//!   Linux devices" (no client version), and
//!   <https://learn.microsoft.com/en-us/defender-endpoint/api/get-package-sas-uri> says "Windows 10,
//!   version 1703 or later, and … Windows 11": offered on Windows 11, Windows 10 1703+, the Windows
//!   servers, macOS and Linux. Downloading a package is offered for every succeeded collection
//!   (Defender answers for the link).
//!
//! Windows servers and the antivirus scan: the API page names only Windows 10 1709+/11 among
//! Windows versions, but it also names "Linux Servers", and the portal page's "Run antivirus scan"
//! sets no Windows restriction at all (it only adds the macOS/Linux client version and allows
//! Microsoft Defender Antivirus in passive mode). Microsoft Defender Antivirus is part of every
//! Windows Server from 2016 and of the unified agent on 2012 R2, the servers Defender for Endpoint
//! onboards, so the scan is offered on Windows Server 2012 R2 and later; if a server's Defender
//! disagrees it answers `OsPlatformNotSupported`, which the action shows in plain words.
//!
//! Where the machine does not report what a minimum needs (no `version`, no `agentVersion`, or a
//! form that does not parse) the action is offered and Defender decides: the product never
//! refuses on a guess. Release (unisolate) is offered wherever isolation is, without a client
//! version: a release is never held back by the product.

/// What an action needs of the machine's platform.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Need {
    FullIsolation,
    SelectiveIsolation,
    Release,
    AntivirusScan,
    RestrictAppExecution,
    RemoveAppRestriction,
    InvestigationPackage,
}

impl Need {
    fn label(self) -> &'static str {
        match self {
            Need::FullIsolation => "Full isolation",
            Need::SelectiveIsolation => "Selective isolation",
            Need::Release => "Release from isolation",
            Need::AntivirusScan => "An antivirus scan",
            Need::RestrictAppExecution => "Restricting app execution",
            Need::RemoveAppRestriction => "Removing an app restriction",
            Need::InvestigationPackage => "Collecting an investigation package",
        }
    }
}

/// Support of one action on one platform.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Support {
    No,
    Yes,
    /// Windows 10 from this release (`YYMM`, e.g. 1703).
    FromWindows10(u32),
    /// From Defender client (agent) version [`MIN_MAC_LINUX_CLIENT`] (macOS and Linux).
    FromClient,
}

/// The macOS/Linux client version the portal page names for scans and macOS isolation.
pub const MIN_MAC_LINUX_CLIENT: &str = "101.98.84";

use Support::*;

/// `osPlatform` (compared case-insensitively) → (full isolation, selective isolation, antivirus
/// scan, restrict app execution, investigation package). Release follows full isolation's
/// platforms, removing an app restriction the restriction's. Platforms not listed (iOS, Android, Windows
/// 7/8.1, Windows Server 2008 R2/2012, …) get no action. Azure Stack HCI OS 23H2+ is documented
/// too, but Microsoft names no `osPlatform` value for it, so it is not listed.
const TABLE: &[(&str, Support, Support, Support, Support, Support)] = &[
    ("Windows11", Yes, Yes, Yes, Yes, Yes),
    (
        "Windows10",
        FromWindows10(1703),
        FromWindows10(1703),
        FromWindows10(1709),
        FromWindows10(1709),
        FromWindows10(1703),
    ),
    ("WindowsServer2012R2", Yes, Yes, Yes, No, Yes),
    ("WindowsServer2016", Yes, Yes, Yes, No, Yes),
    ("WindowsServer2019", Yes, Yes, Yes, Yes, Yes),
    ("WindowsServer2022", Yes, Yes, Yes, Yes, Yes),
    ("WindowsServer2025", Yes, Yes, Yes, Yes, Yes),
    ("macOS", FromClient, FromClient, FromClient, No, Yes),
    ("Linux", Yes, No, FromClient, No, Yes),
];

/// Linux devices are reported as `Linux`, and in real tenants also under their distribution's
/// name (observed, not documented: `docs/defender-behaviour-research.md` §6.2 finds `osPlatform`
/// open-ended); these are read as `Linux`.
const LINUX_NAMES: &[&str] = &[
    "Ubuntu",
    "Debian",
    "RedHatEnterpriseLinux",
    "CentOS",
    "SuseLinuxEnterpriseServer",
    "OracleLinux",
    "AmazonLinux",
    "Fedora",
];

/// Whether Microsoft documents `need` on this machine: `Err` says why not, in words for the page.
pub fn check(platform: &str, os_version: &str, agent_version: &str, need: Need) -> Result<(), String> {
    let p = platform.trim();
    let linux = LINUX_NAMES.iter().any(|n| n.eq_ignore_ascii_case(p));
    let row = TABLE.iter().find(|(name, ..)| name.eq_ignore_ascii_case(p) || (linux && *name == "Linux"));
    // A release and a removal are never held back by a version: what was done can be undone.
    let undo = |s: Support| if s == No { No } else { Yes };
    let support = match (row, need) {
        (None, _) => No,
        (Some(&(_, full, ..)), Need::FullIsolation) => full,
        (Some(&(_, _, selective, ..)), Need::SelectiveIsolation) => selective,
        (Some(&(_, full, ..)), Need::Release) => undo(full),
        (Some(&(_, _, _, scan, ..)), Need::AntivirusScan) => scan,
        (Some(&(_, _, _, _, restrict, _)), Need::RestrictAppExecution) => restrict,
        (Some(&(_, _, _, _, restrict, _)), Need::RemoveAppRestriction) => undo(restrict),
        (Some(&(.., package)), Need::InvestigationPackage) => package,
    };
    let shown = if p.is_empty() { "unknown" } else { p };
    match support {
        Yes => Ok(()),
        No => Err(format!(
            "{} is not supported on {shown} devices: Microsoft Defender does not offer it for this operating system.",
            need.label()
        )),
        FromWindows10(min) => match windows10_release(os_version) {
            Some(release) if release < min => Err(format!(
                "{} is not supported on Windows 10 version {}: Microsoft documents it from version {min}.",
                need.label(),
                os_version.trim()
            )),
            _ => Ok(()),
        },
        FromClient => match client_version(agent_version) {
            Some(v) if v < client_version(MIN_MAC_LINUX_CLIENT).expect("the minimum parses") => Err(format!(
                "{} is not supported on {shown} devices with Defender client {}: Microsoft documents it from client \
                 version {MIN_MAC_LINUX_CLIENT}. Update Defender on the device.",
                need.label(),
                agent_version.trim()
            )),
            _ => Ok(()),
        },
    }
}

/// A Windows 10 release as `YYMM`: `1703`, `1809`; the half-year names (`20H2`, `22H2`) as the
/// month of their half (H1 → 03, H2 → 09). `None` for anything else (then Defender decides).
fn windows10_release(version: &str) -> Option<u32> {
    let v = version.trim();
    if v.len() != 4 || !v.is_ascii() {
        return None;
    }
    let (year, rest) = v.split_at(2);
    let year: u32 = year.parse().ok()?;
    match rest.to_ascii_uppercase().as_str() {
        "H1" => Some(year * 100 + 3),
        "H2" => Some(year * 100 + 9),
        month => month.parse::<u32>().ok().filter(|m| (1..=12).contains(m)).map(|m| year * 100 + m),
    }
}

/// A client version's numeric parts (`101.24022.0005` → [101, 24022, 5]); `None` when it is not
/// a dotted version (then Defender decides).
fn client_version(v: &str) -> Option<Vec<u64>> {
    let v = v.trim();
    if v.is_empty() {
        return None;
    }
    v.split('.').map(|p| p.parse::<u64>().ok()).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Restriction and investigation package, per platform: what the pages cited at the top say.
    #[test]
    fn restriction_and_package() {
        // (platform, version, agent, restrict, remove restriction, package)
        let rows: &[(&str, &str, &str, bool, bool, bool)] = &[
            ("Windows11", "23H2", "", true, true, true),
            ("Windows10", "22H2", "", true, true, true),
            ("Windows10", "1709", "", true, true, true),
            ("Windows10", "1703", "", false, true, true),
            ("Windows10", "1607", "", false, true, false),
            ("WindowsServer2012R2", "", "", false, false, true),
            ("WindowsServer2016", "1607", "", false, false, true),
            ("WindowsServer2019", "1809", "", true, true, true),
            ("WindowsServer2022", "21H2", "", true, true, true),
            ("WindowsServer2025", "24H2", "", true, true, true),
            ("macOS", "14.4", "101.98.30", false, false, true),
            ("Linux", "Ubuntu 22.04", "101.98.30", false, false, true),
            ("Ubuntu", "22.04", "", false, false, true),
            ("iOS", "17.4", "", false, false, false),
            ("Android", "14", "", false, false, false),
            ("", "", "", false, false, false),
        ];
        for &(platform, version, agent, restrict, remove, package) in rows {
            let got = |n| check(platform, version, agent, n).is_ok();
            assert_eq!(
                (got(Need::RestrictAppExecution), got(Need::RemoveAppRestriction), got(Need::InvestigationPackage)),
                (restrict, remove, package),
                "{platform} {version} {agent}"
            );
        }
        let mac = check("macOS", "14.4", "101.24022.0005", Need::RestrictAppExecution).unwrap_err();
        assert!(mac.starts_with("Restricting app execution is not supported on macOS"), "{mac}");
    }

    /// Each row is what the pages cited at the top of this file say, per platform and action.
    #[test]
    fn the_documented_table() {
        // (platform, version, agent, full, selective, release, scan)
        let rows: &[(&str, &str, &str, bool, bool, bool, bool)] = &[
            ("Windows11", "23H2", "10.8760.22621.3155", true, true, true, true),
            ("Windows10", "22H2", "", true, true, true, true),
            ("Windows10", "1709", "", true, true, true, true),
            ("Windows10", "1703", "", true, true, true, false),
            ("Windows10", "1607", "", false, false, true, false),
            ("Windows10", "", "", true, true, true, true),
            ("WindowsServer2012R2", "6.3", "", true, true, true, true),
            ("WindowsServer2016", "1607", "", true, true, true, true),
            ("WindowsServer2019", "1809", "", true, true, true, true),
            ("WindowsServer2022", "21H2", "", true, true, true, true),
            ("WindowsServer2025", "24H2", "", true, true, true, true),
            ("macOS", "14.4", "101.24022.0005", true, true, true, true),
            ("macOS", "14.4", "101.98.84", true, true, true, true),
            ("macOS", "13.6", "101.98.30", false, false, true, false),
            ("macOS", "13.6", "", true, true, true, true),
            ("Linux", "Ubuntu 22.04", "101.24012.0001", true, false, true, true),
            ("Linux", "Debian 12", "101.98.30", true, false, true, false),
            ("Linux", "", "", true, false, true, true),
            ("Ubuntu", "22.04", "101.24012.0001", true, false, true, true),
            ("iOS", "17.4", "1.0.6125.0102", false, false, false, false),
            ("Android", "14", "1.0.6125.0102", false, false, false, false),
            ("WindowsServer2008R2", "", "", false, false, false, false),
            ("", "", "", false, false, false, false),
        ];
        for &(platform, version, agent, full, selective, release, scan) in rows {
            let got = |n| check(platform, version, agent, n).is_ok();
            assert_eq!(
                (got(Need::FullIsolation), got(Need::SelectiveIsolation), got(Need::Release), got(Need::AntivirusScan)),
                (full, selective, release, scan),
                "{platform} {version} {agent}"
            );
        }
        assert!(check("MACOS", "", "101.24022.0005", Need::FullIsolation).is_ok(), "case-insensitive");
    }

    #[test]
    fn refusals_say_why() {
        let old_mac = check("macOS", "13.6", "101.98.30", Need::AntivirusScan).unwrap_err();
        assert!(old_mac.contains("101.98.84") && old_mac.contains("101.98.30"), "{old_mac}");
        let old_win = check("Windows10", "1607", "", Need::FullIsolation).unwrap_err();
        assert!(old_win.contains("1703") && old_win.contains("not supported"), "{old_win}");
        let phone = check("iOS", "17.4", "", Need::FullIsolation).unwrap_err();
        assert!(phone.contains("not supported on iOS"), "{phone}");
    }

    #[test]
    fn versions_parse_or_leave_it_to_defender() {
        assert_eq!(windows10_release("1703"), Some(1703));
        assert_eq!(windows10_release("21h2"), Some(2109));
        assert_eq!(windows10_release("22H1"), Some(2203));
        assert_eq!(windows10_release("10.0.19045"), None);
        assert_eq!(windows10_release("17 3"), None);
        assert_eq!(windows10_release("1799"), None);
        assert_eq!(client_version("101.98.84"), Some(vec![101, 98, 84]));
        assert!(client_version("101.23122.0007") > client_version("101.98.84"));
        assert!(client_version("101.98") < client_version("101.98.84"));
        assert_eq!(client_version("101.x"), None);
        assert_eq!(client_version(""), None);
    }
}
