//! Which machine actions Defender accepts on which devices, and the 400 it answers otherwise.
//!
//! Each rule cites the Microsoft page it follows:
//! * "Take response actions on a device",
//!   <https://learn.microsoft.com/en-us/defender-endpoint/respond-machine-alerts> (ms.date
//!   12/31/2025): full isolation on Windows 11, Windows 10 1703+, Windows Server 2012 R2 and later,
//!   macOS (client 101.98.84+) and every supported Linux; selective isolation on Windows 11,
//!   Windows 10 1703+, Windows Server 2012 R2 and later and macOS; antivirus scan "for macOS and
//!   Linux for client version 101.98.84 and above".
//! * <https://learn.microsoft.com/en-us/defender-endpoint/api/run-av-scan>: Windows 10 1709+,
//!   Windows 11, "Linux Servers", "macOS". Windows servers scan too (the portal page sets no
//!   Windows restriction on the scan; Microsoft Defender Antivirus runs on every server Defender
//!   for Endpoint onboards).
//! * <https://learn.microsoft.com/en-us/defender-endpoint/api/isolate-machine>: `UnManagedDevice`
//!   "targets unmanaged devices only".
//! * Restrict app execution: "available for devices on Windows 10, version 1709 or later,
//!   Windows 11, and Windows Server 2019 or later" (respond-machine-alerts; the API page
//!   <https://learn.microsoft.com/en-us/defender-endpoint/api/restrict-code-execution> names only
//!   Windows 10 1709+ and Windows 11). Removing the restriction
//!   (<https://learn.microsoft.com/en-us/defender-endpoint/api/unrestrict-code-execution>, whose OS
//!   section repeats the isolation page's text by mistake) is taken on the same devices.
//! * Collect investigation package: the API page
//!   (<https://learn.microsoft.com/en-us/defender-endpoint/api/collect-investigation-package>) has no
//!   OS section; respond-machine-alerts documents the package's contents "for Windows devices" and
//!   "for Mac and Linux devices", and <https://learn.microsoft.com/en-us/defender-endpoint/api/get-package-sas-uri>
//!   "Windows 10, version 1703 or later, and … Windows 11". The simulator collects on Windows 11,
//!   Windows 10 1703+, the Windows servers Defender onboards, macOS and Linux, with no client version.
//! * <https://learn.microsoft.com/en-us/defender-endpoint/api/common-errors>: the answers,
//!   400 `OsPlatformNotSupported` "OS Platform {the client OS Platform} isn't supported for this
//!   action." and 400 `ClientVersionNotSupported` "{The requested action} is supported on client
//!   version {supported client version} and above." Which action answers which code for which
//!   platform is not documented; the simulator answers the platform code for a platform (or
//!   Windows 10 release) outside the lists and the version code for a macOS/Linux client below
//!   101.98.84.
//!
//! iOS and Android devices get no action; neither do devices that are not onboarded (the pages
//! describe actions on onboarded devices only).

use super::actions::ActionType;
use super::tenant::Machine;

/// The macOS/Linux client version from which scans and macOS isolation are documented.
pub const MIN_MAC_LINUX_CLIENT: [u64; 3] = [101, 98, 84];

/// Why Defender refuses an action: (error code, message).
pub type Refusal = (&'static str, String);

/// `Ok` when Defender accepts `kind` (with its `scope`) on `m`.
pub fn check(m: &Machine, kind: ActionType, scope: Option<&str>) -> Result<(), Refusal> {
    let platform = m.os_platform;
    let os_refused = || ("OsPlatformNotSupported", format!("OS Platform {platform} isn't supported for this action."));
    if scope == Some("UnManagedDevice") {
        return if m.is_onboarded() { Err(os_refused()) } else { Ok(()) };
    }
    if !m.is_onboarded() {
        return Err(os_refused());
    }
    let selective = kind == ActionType::Isolate && scope == Some("Selective");
    let restriction = matches!(kind, ActionType::RestrictCodeExecution | ActionType::UnrestrictCodeExecution);
    // (Windows 10 release from which it is documented, needs client 101.98.84 on macOS/Linux)
    let (win10_from, client_gated) = match kind {
        ActionType::RunAntiVirusScan => (1709, true),
        ActionType::Isolate | ActionType::Unisolate => (1703, platform == "macOS"),
        ActionType::RestrictCodeExecution | ActionType::UnrestrictCodeExecution => (1709, false),
        ActionType::CollectInvestigationPackage => (1703, false),
    };
    let platform_ok = match platform {
        "Windows11" | "WindowsServer2019" | "WindowsServer2022" | "WindowsServer2025" => true,
        "WindowsServer2012R2" | "WindowsServer2016" | "macOS" => !restriction,
        "Windows10" => windows10_release(m.version).is_some_and(|r| r >= win10_from),
        "Linux" => !selective && !restriction,
        _ => false,
    };
    if !platform_ok {
        return Err(os_refused());
    }
    if client_gated && (platform == "macOS" || platform == "Linux") {
        let below = m.agent_version.and_then(client_version).is_some_and(|v| v.as_slice() < &MIN_MAC_LINUX_CLIENT[..]);
        if below {
            let [a, b, c] = MIN_MAC_LINUX_CLIENT;
            return Err((
                "ClientVersionNotSupported",
                format!("{} is supported on client version {a}.{b}.{c} and above.", kind.as_str()),
            ));
        }
    }
    Ok(())
}

/// `1703` → 1703; `22H2` → 2209 (H1 → 03, H2 → 09).
fn windows10_release(v: &str) -> Option<u32> {
    if v.len() != 4 || !v.is_ascii() {
        return None;
    }
    let (year, rest) = v.split_at(2);
    let year: u32 = year.parse().ok()?;
    match rest {
        "H1" => Some(year * 100 + 3),
        "H2" => Some(year * 100 + 9),
        m => m.parse::<u32>().ok().map(|m| year * 100 + m),
    }
}

fn client_version(v: &str) -> Option<Vec<u64>> {
    v.split('.').map(|p| p.parse().ok()).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn restriction_and_package_follow_the_documentation() {
        let t =
            crate::tenant::Tenant::generate(crate::SimConfig { machines: 400, ..Default::default() }.tenant_params());
        let ok = |m, k| check(m, k, None).is_ok();
        use ActionType::*;
        let mut seen = std::collections::BTreeSet::new();
        for m in t.machines().iter().filter(|m| m.is_onboarded()) {
            let p = m.os_platform;
            let win10 = windows10_release(m.version);
            let restrict = matches!(p, "Windows11" | "WindowsServer2019" | "WindowsServer2022" | "WindowsServer2025")
                || (p == "Windows10" && win10.is_some_and(|r| r >= 1709));
            assert_eq!(ok(m, RestrictCodeExecution), restrict, "{p} {}", m.version);
            assert_eq!(ok(m, UnrestrictCodeExecution), restrict, "{p} {}", m.version);
            if !restrict {
                assert_eq!(check(m, RestrictCodeExecution, None).unwrap_err().0, "OsPlatformNotSupported");
            }
            let collect = matches!(p, "Windows11" | "macOS" | "Linux")
                || p.starts_with("WindowsServer20")
                || (p == "Windows10" && win10.is_some_and(|r| r >= 1703));
            assert_eq!(
                ok(m, CollectInvestigationPackage),
                collect,
                "{p} {}: no client version is documented",
                m.version
            );
            seen.insert(p);
        }
        for p in ["Windows11", "Windows10", "macOS", "Linux", "iOS"] {
            assert!(seen.contains(p), "the tenant has {p} machines: {seen:?}");
        }
    }

    #[test]
    fn releases_and_versions() {
        assert_eq!(windows10_release("1607"), Some(1607));
        assert_eq!(windows10_release("22H2"), Some(2209));
        assert!(client_version("101.98.30").unwrap().as_slice() < &MIN_MAC_LINUX_CLIENT[..]);
        assert!(client_version("101.23122.0007").unwrap().as_slice() > &MIN_MAC_LINUX_CLIENT[..]);
    }
}
