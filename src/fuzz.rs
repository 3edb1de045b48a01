//! Fuzz targets: the parsers that read what others send — Defender's JSON, observations as JSON
//! and CSV, the profile rule library. Each function takes arbitrary bytes and must return
//! without panicking (errors are fine, they are what bad input should give).
//!
//! `cargo test` runs each target on a few thousand seeded, mutated inputs (see the tests
//! below); `fuzz/` holds the same targets for `cargo fuzz` on a nightly toolchain, for long runs
//! (see `docs/security.md`).

use crate::defender::client::dto;
use crate::defender::client::{Api, decode_entity, decode_page};
use crate::domain::profiles::{Attributes, ProfileLibrary};

/// A listing page or an entity from the Defender API, decoded as every type the product reads,
/// and the machines turned into import records.
pub fn defender_json(data: &[u8]) {
    if let Ok(page) = decode_page::<dto::Machine>(Api::ListMachines, data) {
        for m in &page.items {
            let _ = crate::defender::machine::record_of(m);
            let _ = (m.is_onboarded(), m.is_active());
        }
    }
    if let Ok(page) = decode_page::<dto::Vulnerability>(Api::ListVulnerabilities, data) {
        let _ = page.items.iter().filter(|v| v.has_exploit()).count();
    }
    let _ = decode_page::<dto::MachineVulnerability>(Api::MachinesVulnerabilities, data);
    let _ = decode_page::<dto::ExportVulnerability>(Api::ExportAssessmentJson, data);
    if let Ok(page) = decode_page::<dto::Alert>(Api::ListAlerts, data) {
        let _ = page.items.iter().filter(|a| a.is_active()).count();
    }
    let _ = decode_page::<dto::MachineAction>(Api::ListMachineActions, data);
    if let Ok(a) = decode_entity::<dto::MachineAction>(Api::GetMachineAction, data) {
        let _ = (a.status(), a.is_final());
    }
    if let Ok(text) = std::str::from_utf8(data) {
        let _ = dto::parse_time(text);
    }
}

/// `POST /api/v1/observations`: read the batch, validate every item.
pub fn observations_json(data: &[u8]) {
    if let Ok(batch) = crate::inventory::parse_json_batch(data) {
        validate(batch);
    }
}

/// The CSV upload of the Endpoints page: read the file, validate every line.
pub fn observations_csv(data: &[u8]) {
    if let Ok(batch) = crate::web::pages::endpoints::parse_csv(data) {
        validate(batch);
    }
}

fn validate(batch: crate::inventory::RawBatch) {
    let now = chrono::Utc::now();
    for (_, item) in batch {
        if let Ok(raw) = item
            && let Ok(o) = raw.validate(now)
            && let Some(h) = o.hostname.as_deref()
        {
            let _ = crate::domain::observations::host_and_fqdn(h);
        }
    }
}

/// A profile library in TOML: load it, then evaluate an endpoint against it.
pub fn profile_rules(data: &[u8]) {
    let Ok(text) = std::str::from_utf8(data) else { return };
    if let Ok(lib) = ProfileLibrary::from_toml(text) {
        let attrs = Attributes {
            mac: Some("00:1b:78:11:22:33"),
            mac_vendor: None,
            hostname: Some("npi1a2b3c.corp.example"),
            dhcp_vendor_class: Some("Hewlett-Packard JetDirect"),
            dhcp_params: Some("1,3,6,15,44,47"),
            user_agent: Some("Mozilla/5.0"),
            os_name: Some("Windows"),
            os_version: Some("10"),
        };
        let _ = lib.evaluate(&attrs, |_| true);
    }
}

/// Valid inputs the mutations start from.
pub mod seeds {
    pub const DEFENDER: &[&str] = &[
        r#"{"@odata.context":"x","value":[{"id":"1e5e2c0f5b2a4c1d9e8f7a6b5c4d3e2f1a0b9c8d","computerDnsName":"pc-1.corp.example","firstSeen":"2026-01-02T03:04:05.123Z","lastSeen":"2026-11-26T00:00:00Z","osPlatform":"Windows11","version":"23H2","osBuild":22631,"lastIpAddress":"10.0.0.5","healthStatus":"Active","onboardingStatus":"Onboarded","riskScore":"High","exposureLevel":"Medium","isAadJoined":true,"machineTags":["VIP","lab"],"ipAddresses":[{"ipAddress":"10.0.0.5","macAddress":"3C5282112233","type":"Ethernet","operationalStatus":"Up"}]}],"@odata.nextLink":"https://api.securitycenter.microsoft.com/api/machines?$skip=1"}"#,
        r#"{"value":[{"id":"CVE-2024-1234","name":"CVE-2024-1234","description":"A flaw <b>","severity":"Critical","cvssV3":9.8,"exposedMachines":3,"publicExploit":true,"exploitVerified":false}]}"#,
        r#"{"value":[{"id":"m_CVE-2024-1234_x","cveId":"CVE-2024-1234","machineId":"1e5e2c0f5b2a4c1d9e8f7a6b5c4d3e2f1a0b9c8d","severity":"High","productName":"edge","productVersion":"1.0"}]}"#,
        r#"{"value":[{"id":"da637_1","severity":"High","status":"New","title":"Suspicious","machineId":"1e5e2c0f5b2a4c1d9e8f7a6b5c4d3e2f1a0b9c8d","alertCreationTime":"2026-11-25T10:00:00Z","lastUpdateTime":"2026-11-25T11:00:00.1234567Z"}]}"#,
        r#"{"id":"5382f7ea-7557-4ab7-9782-d50480024a4e","type":"Isolate","status":"Pending","machineId":"1e5e","requestor":"app","requestorComment":"why","creationDateTimeUtc":"2026-11-26T09:00:00Z"}"#,
    ];
    pub const OBSERVATIONS_JSON: &[&str] = &[
        r#"[{"mac":"3c:52:82:11:22:33","ip":"10.0.0.20","hostname":"printer-2f.corp.example","dhcp_vendor_class":"Hewlett-Packard JetDirect","dhcp_params":"1,3,6,15,44,47","user_agent":null,"seen_at":"2026-11-26T09:00:00Z"}]"#,
        r#"[{"ip":"fe80::1"},{"mac":"3C-52-82-11-22-34"}]"#,
    ];
    pub const OBSERVATIONS_CSV: &[&str] = &[
        "mac,ip,hostname,dhcp_vendor_class,dhcp_params,user_agent,seen_at\n3c:52:82:11:22:33,10.0.0.20,printer.corp.example,MSFT 5.0,\"1,3,6\",Mozilla/5.0,2026-11-26T09:00:00Z\n",
        "\u{feff}ip\n10.0.0.1\n10.0.0.2\n",
    ];
    pub const PROFILES: &str = include_str!("../profiles/standard.toml");
}

#[cfg(test)]
mod tests {
    use rand::rngs::StdRng;
    use rand::{Rng, SeedableRng};

    /// Fragments that tend to break parsers.
    const TOKENS: &[&[u8]] = &[
        b"\"",
        b"{",
        b"}",
        b"[",
        b"]",
        b",",
        b":",
        b"\\",
        b"\\u0000",
        b"\\ud800",
        b"\0",
        b"\xff\xfe",
        b"\xe2\x80\xae",
        b"null",
        b"true",
        b"-1",
        b"1e999",
        b"18446744073709551616",
        b"-9223372036854775809",
        b"0.0000000000000000000001",
        b"9999-99-99T99:99:99Z",
        b"\n",
        b"\r\n",
        b"=",
        b"'''",
        b"[[profile]]",
        b"regex = \"(\"",
        b"(a+)+$",
        b"::",
        b"ff:ff:ff:ff:ff:ff:ff",
    ];

    fn mutate(rng: &mut StdRng, seed: &[u8]) -> Vec<u8> {
        let mut v = seed.to_vec();
        for _ in 0..rng.random_range(1..6) {
            let at = if v.is_empty() { 0 } else { rng.random_range(0..=v.len()) };
            match rng.random_range(0..6) {
                0 if !v.is_empty() => {
                    let i = rng.random_range(0..v.len());
                    v[i] = rng.random();
                }
                1 => {
                    let t = TOKENS[rng.random_range(0..TOKENS.len())];
                    v.splice(at..at, t.iter().copied());
                }
                2 if !v.is_empty() => v.truncate(at),
                3 if at < v.len() => {
                    let end = rng.random_range(at..=v.len());
                    v.drain(at..end);
                }
                4 => {
                    // Repeat a stretch: long strings, deep nesting.
                    let end = (at + rng.random_range(1..64)).min(v.len());
                    let piece = v[at.min(v.len())..end].to_vec();
                    for _ in 0..rng.random_range(1..50) {
                        v.splice(at..at, piece.iter().copied());
                    }
                }
                _ => {
                    let n = rng.random_range(0..32);
                    v.splice(at..at, (0..n).map(|_| rng.random::<u8>()));
                }
            }
        }
        v
    }

    /// Runs `target` on the seeds, on random bytes and on `runs` mutated seeds (`EA_FUZZ_RUNS`
    /// overrides the number).
    fn run(name: &str, seeds: &[&[u8]], runs: usize, target: fn(&[u8])) {
        let runs: usize = std::env::var("EA_FUZZ_RUNS").ok().and_then(|v| v.parse().ok()).unwrap_or(runs);
        let mut rng = StdRng::seed_from_u64(0x5eed ^ name.len() as u64);
        for s in seeds {
            target(s);
        }
        for i in 0..runs {
            let input = if i % 10 == 0 {
                (0..rng.random_range(0..256)).map(|_| rng.random::<u8>()).collect()
            } else {
                mutate(&mut rng, seeds[i % seeds.len()])
            };
            let outcome = std::panic::catch_unwind(|| target(&input));
            assert!(outcome.is_ok(), "{name} panicked on input {i}: {:?}", String::from_utf8_lossy(&input));
        }
    }

    fn bytes(list: &[&'static str]) -> Vec<&'static [u8]> {
        list.iter().map(|s| s.as_bytes()).collect()
    }

    #[test]
    fn defender_json_never_panics() {
        run("defender_json", &bytes(super::seeds::DEFENDER), 3_000, super::defender_json);
    }

    #[test]
    fn observations_json_never_panics() {
        run("observations_json", &bytes(super::seeds::OBSERVATIONS_JSON), 3_000, super::observations_json);
    }

    #[test]
    fn observations_csv_never_panics() {
        run("observations_csv", &bytes(super::seeds::OBSERVATIONS_CSV), 3_000, super::observations_csv);
    }

    #[test]
    fn profile_rules_never_panic() {
        // The library is large: fewer, cheaper runs by default.
        run("profile_rules", &[super::seeds::PROFILES.as_bytes()], 500, super::profile_rules);
    }
}
