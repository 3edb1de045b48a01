//! Static tables the generator draws from: operating systems, software products, alert
//! templates, device groups, name parts, network-only device kinds and the hostile strings.
//! Keeping them here leaves `tenant.rs` about *how* a tenant is built, not *what* it contains.
//!
//! Long because it is data: one line per operating system, product, alert or name part.

/// Platform groups: which OS a machine runs, used to keep software and vulnerabilities
/// plausible (no Windows KBs on a Mac). Bit positions in [`Product::groups`].
pub const G_WIN10: u16 = 1 << 0;
pub const G_WIN11: u16 = 1 << 1;
pub const G_SRV2012: u16 = 1 << 2;
pub const G_SRV2016: u16 = 1 << 3;
pub const G_SRV2019: u16 = 1 << 4;
pub const G_SRV2022: u16 = 1 << 5;
pub const G_MAC: u16 = 1 << 6;
pub const G_LINUX: u16 = 1 << 7;
pub const G_IOS: u16 = 1 << 8;
pub const G_ANDROID: u16 = 1 << 9;
/// Added after the others so that the groups of existing machines keep their numbers.
pub const G_SRV2025: u16 = 1 << 10;
pub const GROUP_COUNT: usize = 11;
pub const G_WIN_CLIENT: u16 = G_WIN10 | G_WIN11;
pub const G_WIN_SERVER: u16 = G_SRV2012 | G_SRV2016 | G_SRV2019 | G_SRV2022 | G_SRV2025;

/// The group whose names, network and management a machine of `group` shares: Windows Server
/// 2025 (group 10) is named, addressed and managed like the other Windows servers (group 5);
/// only its software and vulnerabilities are its own.
pub fn behaves_like(group: usize) -> usize {
    if group == 10 { 5 } else { group }
}
pub const G_WINDOWS: u16 = G_WIN_CLIENT | G_WIN_SERVER;
pub const G_DESKTOP: u16 = G_WINDOWS | G_MAC | G_LINUX;

#[derive(Debug)]
pub struct OsDef {
    pub platform: &'static str,
    pub group: usize,
    /// (version, build, weight)
    pub versions: &'static [(&'static str, Option<i64>, u32)],
    pub weight: u32,
    /// For Linux, the distribution of each entry of `versions` (same index), shown in osVersion
    /// and DeviceInfo.OSDistribution: each version is a release of that distribution.
    pub distributions: &'static [&'static str],
}

pub const OSES: &[OsDef] = &[
    OsDef {
        platform: "Windows10",
        group: 0,
        versions: &[
            ("22H2", Some(19045), 70),
            ("21H2", Some(19044), 20),
            ("1809", Some(17763), 7),
            ("1607", Some(14393), 3),
        ],
        weight: 400,
        distributions: &[],
    },
    OsDef {
        platform: "Windows11",
        group: 1,
        versions: &[("23H2", Some(22631), 60), ("22H2", Some(22621), 25), ("24H2", Some(26100), 15)],
        weight: 300,
        distributions: &[],
    },
    OsDef {
        platform: "WindowsServer2012R2",
        group: 2,
        versions: &[("6.3", Some(9600), 1)],
        weight: 10,
        distributions: &[],
    },
    OsDef {
        platform: "WindowsServer2016",
        group: 3,
        versions: &[("1607", Some(14393), 1)],
        weight: 30,
        distributions: &[],
    },
    OsDef {
        platform: "WindowsServer2019",
        group: 4,
        versions: &[("1809", Some(17763), 1)],
        weight: 45,
        distributions: &[],
    },
    OsDef {
        platform: "WindowsServer2022",
        group: 5,
        versions: &[("21H2", Some(20348), 1)],
        weight: 28,
        distributions: &[],
    },
    // Right after 2022 and out of its former weight (40), so that every other machine of a seed
    // keeps its platform. `version` 24H2, build 26100 (Windows Server 2025's release).
    OsDef {
        platform: "WindowsServer2025",
        group: 10,
        versions: &[("24H2", Some(26100), 1)],
        weight: 12,
        distributions: &[],
    },
    OsDef {
        platform: "macOS",
        group: 6,
        versions: &[("14.4", None, 50), ("13.6", None, 35), ("12.7", None, 15)],
        weight: 70,
        distributions: &[],
    },
    OsDef {
        platform: "Linux",
        group: 7,
        // Releases that exist, each with its own distribution (supported by Defender for
        // Endpoint on Linux: https://learn.microsoft.com/en-us/defender-endpoint/mde-linux-prerequisites).
        versions: &[
            ("22.04", None, 26),
            ("24.04", None, 10),
            ("20.04", None, 14),
            ("9.4", None, 12),
            ("8.10", None, 8),
            ("12", None, 8),
            ("11", None, 5),
            ("15 SP5", None, 10),
            ("15 SP6", None, 7),
        ],
        weight: 60,
        distributions: &[
            "Ubuntu",
            "Ubuntu",
            "Ubuntu",
            "RedHatEnterpriseLinux",
            "RedHatEnterpriseLinux",
            "Debian",
            "Debian",
            "SuseLinuxEnterpriseServer",
            "SuseLinuxEnterpriseServer",
        ],
    },
    OsDef {
        platform: "iOS",
        group: 8,
        versions: &[("17.4", None, 70), ("16.7", None, 30)],
        weight: 25,
        distributions: &[],
    },
    OsDef {
        platform: "Android",
        group: 9,
        versions: &[("14", None, 50), ("13", None, 35), ("12", None, 15)],
        weight: 25,
        distributions: &[],
    },
];

/// A software product. Vulnerabilities always belong to one product; the software id is
/// `{vendor}-_-{name}` as on `L:get-software-by-id`.
#[derive(Debug)]
pub struct Product {
    pub vendor: &'static str,
    pub name: &'static str,
    pub display: &'static str,
    pub groups: u16,
    pub versions: &'static [&'static str],
    /// Windows OS products are fixed by a KB; everything else by an application update.
    pub kb: bool,
    /// Relative share of the vulnerability catalogue.
    pub weight: u32,
    /// Percent of the machines of a matching group that have it installed without a vuln.
    pub install_pct: u64,
    pub disk_path: &'static str,
    pub registry_path: &'static str,
}

macro_rules! product {
    ($v:expr, $n:expr, $d:expr, $g:expr, [$($ver:expr),*], $kb:expr, $w:expr, $pct:expr, $disk:expr, $reg:expr) => {
        Product { vendor: $v, name: $n, display: $d, groups: $g, versions: &[$($ver),*], kb: $kb, weight: $w,
                  install_pct: $pct, disk_path: $disk, registry_path: $reg }
    };
}

pub const PRODUCTS: &[Product] = &[
    product!(
        "microsoft",
        "windows_10",
        "Windows 10",
        G_WIN10,
        ["10.0.19045.4046", "10.0.19044.3930", "10.0.17763.5329"],
        true,
        30,
        100,
        "",
        ""
    ),
    product!(
        "microsoft",
        "windows_11",
        "Windows 11",
        G_WIN11,
        ["10.0.22631.3155", "10.0.22621.3007", "10.0.26100.1742"],
        true,
        30,
        100,
        "",
        ""
    ),
    product!(
        "microsoft",
        "windows_server_2012_r2",
        "Windows Server 2012 R2",
        G_SRV2012,
        ["6.3.9600.21620"],
        true,
        10,
        100,
        "",
        ""
    ),
    product!(
        "microsoft",
        "windows_server_2016",
        "Windows Server 2016",
        G_SRV2016,
        ["10.0.14393.6709"],
        true,
        15,
        100,
        "",
        ""
    ),
    product!(
        "microsoft",
        "windows_server_2019",
        "Windows Server 2019",
        G_SRV2019,
        ["10.0.17763.5458"],
        true,
        15,
        100,
        "",
        ""
    ),
    product!(
        "microsoft",
        "windows_server_2022",
        "Windows Server 2022",
        G_SRV2022,
        ["10.0.20348.2322"],
        true,
        15,
        100,
        "",
        ""
    ),
    product!(
        "microsoft",
        "edge_chromium-based",
        "Microsoft Edge (Chromium-based)",
        G_WINDOWS | G_MAC,
        ["121.0.2277.128", "120.0.2210.144"],
        false,
        12,
        90,
        "C:\\Program Files (x86)\\Microsoft\\Edge\\Application\\msedge.exe",
        "HKEY_LOCAL_MACHINE\\SOFTWARE\\WOW6432Node\\Microsoft\\Windows\\CurrentVersion\\Uninstall\\Microsoft Edge"
    ),
    product!(
        "microsoft",
        "office",
        "Microsoft Office",
        G_WIN_CLIENT | G_MAC,
        ["16.0.17231.20236", "16.0.16731.20550"],
        false,
        10,
        70,
        "C:\\Program Files\\Microsoft Office\\root\\Office16\\WINWORD.EXE",
        "HKEY_LOCAL_MACHINE\\SOFTWARE\\Microsoft\\Office\\ClickToRun"
    ),
    product!(
        "microsoft",
        ".net_framework",
        ".NET Framework",
        G_WINDOWS,
        ["4.8.9181.0", "4.7.3190.0"],
        true,
        6,
        95,
        "C:\\Windows\\Microsoft.NET\\Framework64\\v4.0.30319\\clr.dll",
        "HKEY_LOCAL_MACHINE\\SOFTWARE\\Microsoft\\NET Framework Setup\\NDP\\v4\\Full"
    ),
    product!(
        "google",
        "chrome",
        "Google Chrome",
        G_WIN_CLIENT | G_MAC | G_LINUX | G_ANDROID,
        ["122.0.6261.95", "121.0.6167.185", "119.0.6045.199"],
        false,
        14,
        60,
        "C:\\Program Files\\Google\\Chrome\\Application\\chrome.exe",
        "HKEY_LOCAL_MACHINE\\SOFTWARE\\Microsoft\\Windows\\CurrentVersion\\Uninstall\\Google Chrome"
    ),
    product!(
        "mozilla",
        "firefox",
        "Mozilla Firefox",
        G_WIN_CLIENT | G_MAC | G_LINUX,
        ["123.0", "115.8.0"],
        false,
        8,
        25,
        "C:\\Program Files\\Mozilla Firefox\\firefox.exe",
        "HKEY_LOCAL_MACHINE\\SOFTWARE\\Mozilla\\Mozilla Firefox"
    ),
    product!(
        "oracle",
        "jre",
        "Oracle Java SE Runtime",
        G_WINDOWS | G_LINUX,
        ["1.8.0_401", "1.8.0_351"],
        false,
        6,
        20,
        "C:\\Program Files\\Java\\jre1.8.0_401\\bin\\java.exe",
        "HKEY_LOCAL_MACHINE\\SOFTWARE\\JavaSoft\\Java Runtime Environment"
    ),
    product!(
        "adobe",
        "acrobat_reader_dc",
        "Adobe Acrobat Reader DC",
        G_WIN_CLIENT | G_MAC,
        ["23.008.20470", "22.003.20322"],
        false,
        7,
        45,
        "C:\\Program Files\\Adobe\\Acrobat DC\\Acrobat\\Acrobat.exe",
        "HKEY_LOCAL_MACHINE\\SOFTWARE\\Adobe\\Adobe Acrobat\\DC"
    ),
    product!(
        "7-zip",
        "7-zip",
        "7-Zip",
        G_WINDOWS,
        ["23.01", "19.00"],
        false,
        2,
        30,
        "C:\\Program Files\\7-Zip\\7z.exe",
        "HKEY_LOCAL_MACHINE\\SOFTWARE\\7-Zip"
    ),
    product!(
        "zoom",
        "zoom",
        "Zoom Workplace",
        G_WIN_CLIENT | G_MAC,
        ["5.17.5", "5.16.10"],
        false,
        3,
        40,
        "C:\\Program Files\\Zoom\\bin\\Zoom.exe",
        "HKEY_LOCAL_MACHINE\\SOFTWARE\\Zoom"
    ),
    product!(
        "vmware",
        "tools",
        "VMware Tools",
        G_WIN_SERVER | G_LINUX,
        ["12.3.5", "11.3.5"],
        false,
        3,
        40,
        "C:\\Program Files\\VMware\\VMware Tools\\vmtoolsd.exe",
        "HKEY_LOCAL_MACHINE\\SOFTWARE\\VMware, Inc.\\VMware Tools"
    ),
    product!(
        "microsoft",
        "sql_server",
        "Microsoft SQL Server",
        G_WIN_SERVER,
        ["15.0.4345.5", "16.0.4105.2"],
        true,
        5,
        25,
        "C:\\Program Files\\Microsoft SQL Server\\MSSQL15.MSSQLSERVER\\MSSQL\\Binn\\sqlservr.exe",
        "HKEY_LOCAL_MACHINE\\SOFTWARE\\Microsoft\\Microsoft SQL Server"
    ),
    product!(
        "apple",
        "macos",
        "macOS",
        G_MAC,
        ["14.4.1", "13.6.6", "12.7.4"],
        false,
        25,
        100,
        "/System/Library/CoreServices/SystemVersion.plist",
        ""
    ),
    product!("apple", "safari", "Safari", G_MAC, ["17.4.1", "16.6"], false, 6, 100, "/Applications/Safari.app", ""),
    product!(
        "linux",
        "linux_kernel",
        "Linux kernel",
        G_LINUX,
        ["5.15.0-97", "6.5.0-21", "4.18.0-513"],
        false,
        25,
        100,
        "/boot/vmlinuz",
        ""
    ),
    product!(
        "openssl",
        "openssl",
        "OpenSSL",
        G_LINUX | G_MAC,
        ["3.0.2", "1.1.1w"],
        false,
        8,
        100,
        "/usr/lib/x86_64-linux-gnu/libssl.so.3",
        ""
    ),
    product!(
        "gnu",
        "glibc",
        "GNU C Library",
        G_LINUX,
        ["2.35", "2.31"],
        false,
        6,
        100,
        "/usr/lib/x86_64-linux-gnu/libc.so.6",
        ""
    ),
    product!("openbsd", "openssh", "OpenSSH", G_LINUX | G_MAC, ["8.9p1", "9.6p1"], false, 5, 100, "/usr/sbin/sshd", ""),
    product!("sudo_project", "sudo", "sudo", G_LINUX | G_MAC, ["1.9.9", "1.8.31"], false, 3, 100, "/usr/bin/sudo", ""),
    product!(
        "haxx",
        "curl",
        "curl",
        G_LINUX | G_MAC | G_WIN_SERVER,
        ["7.81.0", "8.5.0"],
        false,
        4,
        80,
        "/usr/bin/curl",
        ""
    ),
    product!(
        "apache",
        "http_server",
        "Apache HTTP Server",
        G_LINUX,
        ["2.4.52", "2.4.57"],
        false,
        4,
        20,
        "/usr/sbin/apache2",
        ""
    ),
    product!("apple", "ios", "iOS", G_IOS, ["17.4", "16.7.6"], false, 20, 100, "", ""),
    product!("google", "android", "Android", G_ANDROID, ["14", "13", "12"], false, 20, 100, "", ""),
];

pub const VULN_KINDS: &[(&str, &[&str])] = &[
    ("Remote Code Execution", &["Remote"]),
    ("Elevation of Privilege", &["Local privilege escalation", "Local"]),
    ("Information Disclosure", &[]),
    ("Denial of Service", &["Denial of service"]),
    ("Security Feature Bypass", &["Local"]),
    ("Spoofing", &["Remote"]),
    ("Memory Corruption", &["Remote", "Denial of service"]),
];

pub struct AlertTemplate {
    pub title: &'static str,
    pub description: &'static str,
    pub category: &'static str,
    pub detection_source: &'static str,
    pub mitre: &'static [&'static str],
    pub threat_family: Option<&'static str>,
}

pub const ALERTS: &[AlertTemplate] = &[
    AlertTemplate {
        title: "Suspicious PowerShell command line",
        description: "A suspicious PowerShell activity was observed on the machine.\nThis behavior may indicate that PowerShell was used during installation, exploration, or in some cases in lateral movement activities.",
        category: "Execution",
        detection_source: "WindowsDefenderAtp",
        mitre: &["T1059.001"],
        threat_family: None,
    },
    AlertTemplate {
        title: "'Mimikatz' credential theft tool",
        description: "The credential theft tool Mimikatz was detected on this device.",
        category: "CredentialAccess",
        detection_source: "WindowsDefenderAv",
        mitre: &["T1003.001"],
        threat_family: Some("Mimikatz"),
    },
    AlertTemplate {
        title: "Suspicious process injection observed",
        description: "A process abnormally injected code into another process.",
        category: "DefenseEvasion",
        detection_source: "WindowsDefenderAtp",
        mitre: &["T1055", "T1055.002"],
        threat_family: None,
    },
    AlertTemplate {
        title: "'Wacatac' malware was detected",
        description: "Malware was detected and blocked by Microsoft Defender Antivirus.",
        category: "Malware",
        detection_source: "WindowsDefenderAv",
        mitre: &[],
        threat_family: Some("Wacatac"),
    },
    AlertTemplate {
        title: "Suspicious scheduled task",
        description: "A scheduled task was created that runs a script from a user-writable folder.",
        category: "Persistence",
        detection_source: "WindowsDefenderAtp",
        mitre: &["T1053.005"],
        threat_family: None,
    },
    AlertTemplate {
        title: "Possible lateral movement using remote services",
        description: "Remote service creation from an unusual account was observed.",
        category: "LateralMovement",
        detection_source: "WindowsDefenderAtp",
        mitre: &["T1021.002", "T1569.002"],
        threat_family: None,
    },
    AlertTemplate {
        title: "Unwanted software was detected",
        description: "Potentially unwanted application (PUA) was detected.",
        category: "SuspiciousActivity",
        detection_source: "WindowsDefenderAv",
        mitre: &[],
        threat_family: Some("BrowserModifier"),
    },
    AlertTemplate {
        title: "Anomalous account lookups",
        description: "An unusual number of account enumeration queries was made.",
        category: "Discovery",
        detection_source: "WindowsDefenderAtp",
        mitre: &["T1087.002"],
        threat_family: None,
    },
    AlertTemplate {
        title: "Suspicious connection to a known C2 server",
        description: "The device communicated with an IP address known to host command and control infrastructure.",
        category: "CommandAndControl",
        detection_source: "WindowsDefenderAtp",
        mitre: &["T1071.001"],
        threat_family: None,
    },
    AlertTemplate {
        title: "Ransomware behavior detected in the file system",
        description: "Files were encrypted in rapid succession by one process.",
        category: "Ransomware",
        detection_source: "WindowsDefenderAtp",
        mitre: &["T1486"],
        threat_family: None,
    },
];

/// Device groups: (rbacGroupId, name, platform groups it is used for).
pub const RBAC_GROUPS: &[(i64, &str, u16)] = &[
    (101, "Workstations - EMEA", G_WIN_CLIENT | G_MAC),
    (102, "Workstations - Americas", G_WIN_CLIENT | G_MAC),
    (103, "Servers - Production", G_WIN_SERVER | G_LINUX),
    (104, "Servers - Non-Production", G_WIN_SERVER | G_LINUX),
    (105, "Mobile Devices", G_IOS | G_ANDROID),
    (106, "Executives", G_WIN_CLIENT | G_MAC | G_IOS),
];

pub const TAGS: &[&str] =
    &["VIP", "Finance", "PCI", "Kiosk", "Lab", "Legacy", "Azure", "HR", "Developer", "Break-glass"];

pub const FIRST_NAMES: &[&str] = &[
    "anna", "ben", "carla", "david", "emma", "felix", "greta", "hugo", "ines", "jonas", "karin", "luca", "mia", "noah",
    "olga", "paul", "quinn", "rosa", "sven", "tara", "ugo", "vera", "willem", "xenia", "yusuf", "zoe",
];
pub const LAST_NAMES: &[&str] = &[
    "smith",
    "mueller",
    "garcia",
    "rossi",
    "dubois",
    "nowak",
    "jensen",
    "tanaka",
    "kim",
    "silva",
    "novak",
    "berg",
    "costa",
    "fischer",
    "moreau",
    "horvat",
    "lindqvist",
    "okafor",
    "patel",
    "schmidt",
];
pub const SERVER_ROLES: &[&str] =
    &["sql", "web", "app", "dc", "file", "print", "exch", "build", "jump", "backup", "mon", "k8s"];
pub const SITES: &[&str] = &["fra", "ams", "nyc", "sea", "sgp", "lon", "par", "tok"];

/// Network adapter vendors (OUI prefix, typical for).
pub const OUI_DELL: [u8; 3] = [0xD4, 0x81, 0xD7];
pub const OUI_LENOVO: [u8; 3] = [0x8C, 0xEC, 0x4B];
pub const OUI_HP: [u8; 3] = [0x3C, 0x52, 0x82];
pub const OUI_INTEL: [u8; 3] = [0x48, 0x51, 0xC5];
pub const OUI_HYPERV: [u8; 3] = [0x00, 0x15, 0x5D];
pub const OUI_VMWARE: [u8; 3] = [0x00, 0x50, 0x56];
pub const OUI_APPLE: [u8; 3] = [0xA4, 0x83, 0xE7];
pub const OUI_SAMSUNG: [u8; 3] = [0x5C, 0x49, 0x7D];

/// Network-only devices (never in Defender): (kind, hostname prefix, OUI, DHCP vendor class,
/// DHCP parameter request list, weight).
/// (kind, hostname prefix, OUI, DHCP vendor class, DHCP parameter request list, weight)
pub type NetworkOnlyDevice = (&'static str, &'static str, [u8; 3], Option<&'static str>, &'static str, u32);

pub const NETWORK_ONLY: &[NetworkOnlyDevice] = &[
    (
        "printer",
        "hp-laserjet",
        [0x00, 0x1E, 0x0B],
        Some("Hewlett-Packard JetDirect"),
        "1,3,6,12,15,44,51,54,58,59,81,119",
        30,
    ),
    ("printer", "brother-mfc", [0x00, 0x80, 0x77], Some("Brother"), "1,3,6,15,44,46,47,12", 10),
    ("ip-phone", "sep", [0x00, 0x1B, 0xD4], Some("Cisco Systems, Inc. IP Phone CP-8841"), "1,3,6,15,42,66,150", 25),
    ("camera", "axis-cam", [0xAC, 0xCC, 0x8E], Some("AXIS,Network Camera"), "1,3,6,12,15,28,42", 15),
    ("smart-tv", "lg-webos-tv", [0x64, 0x95, 0x6C], Some("udhcp 1.29.3"), "1,3,6,12,15,28,42", 5),
    ("phone", "android", [0x5C, 0x49, 0x7D], Some("android-dhcp-14"), "1,3,6,15,26,28,51,58,59,43,114", 10),
    ("access-point", "ap", [0x00, 0x0B, 0x86], Some("ArubaAP"), "1,3,6,12,15,28,43", 5),
    // Computers the network sees that were never onboarded to Defender: a contractor's Windows
    // laptop, a lab Linux box. What an EDR coverage report is for.
    ("laptop", "contractor-pc", [0x3C, 0x52, 0x82], Some("MSFT 5.0"), "1,3,6,15,31,33,43,44,46,47,119,121,249,252", 6),
    (
        "server",
        "lab-linux",
        [0x52, 0x54, 0x00],
        Some("dhcpcd-9.4.1:Linux-5.15.0:x86_64"),
        "1,28,2,3,15,6,119,12,44,47,26,121,42",
        3,
    ),
];

/// DHCP fingerprints of Defender-managed platforms: (vendor class, parameter request list).
pub fn dhcp_fingerprint(group: usize) -> (Option<&'static str>, &'static str) {
    match behaves_like(group) {
        0..=5 => (Some("MSFT 5.0"), "1,3,6,15,31,33,43,44,46,47,119,121,249,252"),
        6 => (None, "1,121,3,6,15,108,114,119,252,95,44,46"),
        7 => (Some("dhcpcd-9.4.1:Linux-5.15.0:x86_64"), "1,28,2,3,15,6,119,12,44,47,26,121,42"),
        8 => (None, "1,121,3,6,15,108,114,119,252"),
        _ => (Some("android-dhcp-14"), "1,3,6,15,26,28,51,58,59,43,114,108"),
    }
}

/// Defender client (sensor) versions per platform group, newest first; the last is the oldest,
/// which old duplicate records keep. Windows reports the MsSense version
/// (`10.{sense}.{OS build}.{revision}`); macOS and Linux `101.{YYMMx}.{build}` since mid-2023 and
/// `101.{minor}.{build}` before. One macOS and one Linux version are below 101.98.84, the client
/// that Microsoft requires for scans and macOS isolation
/// (https://learn.microsoft.com/en-us/defender-endpoint/respond-machine-alerts), so that the
/// refusal (`ClientVersionNotSupported`) can be seen.
pub fn agent_versions(group: usize) -> &'static [&'static str] {
    match group {
        0 => &["10.8760.19041.4046", "10.8750.19041.3930", "10.8735.19041.3803", "10.8560.19041.3636"],
        1 => &["10.8760.22621.3155", "10.8760.26100.1742", "10.8750.22621.3007", "10.8560.22621.2506"],
        2 => &["10.8760.9600.21620", "10.8750.9600.21563", "10.8560.9600.21503"],
        3 => &["10.8760.14393.6709", "10.8750.14393.6614", "10.8560.14393.6452"],
        4 => &["10.8760.17763.5458", "10.8750.17763.5329", "10.8560.17763.5122"],
        5 => &["10.8760.20348.2322", "10.8750.20348.2227", "10.8560.20348.2031"],
        10 => &["10.8760.26100.2314", "10.8750.26100.2033"],
        6 => &["101.24022.0005", "101.24012.0001", "101.23122.0007", "101.23102.0003", "101.98.30"],
        7 => &["101.24022.0001", "101.24012.0001", "101.23122.0005", "101.23082.0006", "101.98.30"],
        _ => &["1.0.6125.0102", "1.0.5913.0101"],
    }
}

/// Strings that must never be rendered as markup by the product (`--hostile`).
pub const HOSTILE: &[&str] = &[
    "<script>alert(1)</script>",
    "\"><img src=x onerror=alert(1)>",
    "<div hx-get=\"/admin/settings\" hx-trigger=\"load\" hx-swap=\"outerHTML\">x</div>",
    "javascript:alert(document.cookie)",
    "'><svg onload=alert(2)>",
    "{{7*7}}${7*7}<%= 7*7 %>",
];
