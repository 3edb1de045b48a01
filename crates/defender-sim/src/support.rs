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
    // (Windows 10 release from which it is documented, needs client 101.98.84 on macOS/Linux)
    let (win10_from, client_gated) = match kind {
        ActionType::RunAntiVirusScan => (1709, true),
        ActionType::Isolate | ActionType::Unisolate => (1703, platform == "macOS"),
    };
    let platform_ok = match platform {
        "Windows11"
        | "WindowsServer2012R2"
        | "WindowsServer2016"
        | "WindowsServer2019"
        | "WindowsServer2022"
        | "WindowsServer2025"
        | "macOS" => true,
        "Windows10" => windows10_release(m.version).is_some_and(|r| r >= win10_from),
        "Linux" => !selective,
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
    fn releases_and_versions() {
        assert_eq!(windows10_release("1607"), Some(1607));
        assert_eq!(windows10_release("22H2"), Some(2209));
        assert!(client_version("101.98.30").unwrap().as_slice() < &MIN_MAC_LINUX_CLIENT[..]);
        assert!(client_version("101.23122.0007").unwrap().as_slice() > &MIN_MAC_LINUX_CLIENT[..]);
    }
}
