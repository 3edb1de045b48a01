//! The profile library's unit tests: the format, each kind of condition, scoring and
//! tie-breaking, and the standard profiles against real device fingerprints.
//!
//! Long because each test spells out its devices' attributes (DHCP options, vendor, user agent)
//! as they are seen on networks; the data is the point of the test.

use super::*;

const WINDOWS_10_11: &str = "1,3,6,15,31,33,43,44,46,47,119,121,249,252";
const MACOS: &str = "1,121,3,6,15,108,114,119,252,95,44,46";
const IOS: &str = "1,121,3,6,15,108,114,119,252";
const ANDROID: &str = "1,3,6,15,26,28,51,58,59,43,114";
const DHCLIENT: &str = "1,28,2,3,15,6,119,12,44,47,26,121,42";

fn standard() -> ProfileLibrary {
    ProfileLibrary::standard().expect("the standard library loads")
}

fn all_enabled(_: usize) -> bool {
    true
}

/// The name and score of the winning profile.
fn classify(lib: &ProfileLibrary, attrs: &Attributes) -> Option<(String, MatchScore)> {
    let evaluation = lib.evaluate(attrs, |i| lib.profiles()[i].enabled_by_default);
    evaluation.best.map(|m| (lib.profiles()[m.profile].name.clone(), m.score))
}

fn names(lib: &ProfileLibrary, matches: &[ProfileMatch]) -> Vec<String> {
    matches.iter().map(|m| lib.profiles()[m.profile].name.clone()).collect()
}

fn observed() -> Attributes<'static> {
    Attributes::default()
}

#[test]
fn realistic_observations_get_the_expected_profile_and_score() {
    use MatchScore::*;
    let lib = standard();
    #[rustfmt::skip]
    let table: Vec<(&str, Attributes, &str, MatchScore)> = vec![
        ("an HP printer's MAC and its JetDirect vendor class",
         Attributes { mac: Some("3c:d9:2b:11:22:33"), dhcp_vendor_class: Some("Hewlett-Packard JetDirect"), ..observed() },
         "HP Printer", VeryHigh),
        ("an HP Inc. printer answering to its default NPI hostname",
         Attributes { mac: Some("64:4e:d7:11:22:33"), hostname: Some("NPI8A3B2C"), ..observed() },
         "HP Printer", VeryHigh),
        ("an \"HP LaserJet\" vendor class alone",
         Attributes { dhcp_vendor_class: Some("HP LaserJet M507"), ..observed() },
         "HP Printer", High),
        ("an iPhone's hostname and an Apple MAC",
         Attributes { mac: Some("f0:b3:ec:01:02:03"), hostname: Some("Johns-iPhone"), ..observed() },
         "Apple iPhone", High),
        ("an iPhone's hostname and the iOS DHCP request, behind a private MAC",
         Attributes { mac: Some("da:a1:19:01:02:03"), hostname: Some("Johns-iPhone"), dhcp_params: Some(IOS), ..observed() },
         "Apple iPhone", VeryHigh),
        ("the iOS DHCP request from an Apple MAC without a hostname",
         Attributes { mac: Some("f0:b3:ec:01:02:03"), dhcp_params: Some(IOS), ..observed() },
         "Apple Mobile Device", High),
        ("an iPad's user agent",
         Attributes { user_agent: Some("Mozilla/5.0 (iPad; CPU OS 17_4 like Mac OS X) AppleWebKit/605.1.15"), ..observed() },
         "Apple iPad", High),
        ("the macOS DHCP request from an Apple MAC",
         Attributes { mac: Some("f0:b3:ec:0a:0b:0c"), hostname: Some("Annas-MacBook-Pro"), dhcp_params: Some(MACOS), ..observed() },
         "Apple Mac", VeryHigh),
        ("the Windows 10/11 DHCP request with the MSFT 5.0 vendor class",
         Attributes { mac: Some("10:e7:c6:01:02:03"), hostname: Some("PC-0042"), dhcp_vendor_class: Some("MSFT 5.0"), dhcp_params: Some(WINDOWS_10_11), ..observed() },
         "Windows Workstation", VeryHigh),
        ("the Windows 10/11 DHCP request written with spaces",
         Attributes { dhcp_params: Some("1, 3, 6, 15, 31, 33, 43, 44, 46, 47, 119, 121, 249, 252"), ..observed() },
         "Windows Workstation", High),
        ("Defender reporting Windows11",
         Attributes { os_name: Some("Windows11"), os_version: Some("23H2"), ..observed() },
         "Windows Workstation", VeryHigh),
        ("Defender reporting WindowsServer2022",
         Attributes { os_name: Some("WindowsServer2022"), ..observed() },
         "Windows Server", VeryHigh),
        ("Defender reporting WindowsServer2012R2",
         Attributes { os_name: Some("WindowsServer2012R2"), ..observed() },
         "Windows Server 2012", VeryHigh),
        ("Defender reporting Windows7",
         Attributes { os_name: Some("Windows7"), ..observed() },
         "Windows 7", VeryHigh),
        ("the Windows XP DHCP request with MSFT 5.0",
         Attributes { dhcp_vendor_class: Some("MSFT 5.0"), dhcp_params: Some("1,15,3,6,44,46,47,31,33,249,43"), ..observed() },
         "Windows XP", High),
        ("a QEMU/KVM virtual NIC",
         Attributes { mac: Some("52:54:00:ab:cd:ef"), ..observed() },
         "QEMU/KVM Virtual Machine", High),
        ("a VMware virtual NIC",
         Attributes { mac: Some("00:50:56:ab:cd:ef"), ..observed() },
         "VMware Virtual Machine", High),
        ("a Hyper-V virtual NIC",
         Attributes { mac: Some("00-15-5D-01-02-03"), ..observed() },
         "Hyper-V Virtual Machine", High),
        ("a VirtualBox virtual NIC",
         Attributes { mac: Some("080027aabbcc"), ..observed() },
         "VirtualBox Virtual Machine", High),
        ("a Raspberry Pi 3 (Foundation OUI)",
         Attributes { mac: Some("b8:27:eb:12:34:56"), ..observed() },
         "Raspberry Pi", VeryHigh),
        ("a Raspberry Pi 4 (Trading OUI)",
         Attributes { mac: Some("dc:a6:32:12:34:56"), ..observed() },
         "Raspberry Pi", VeryHigh),
        ("a Raspberry Pi 400 (Trading OUI)",
         Attributes { mac: Some("e4:5f:01:12:34:56"), ..observed() },
         "Raspberry Pi", VeryHigh),
        ("Raspberry Pi OS's dhcpcd vendor class",
         Attributes { dhcp_vendor_class: Some("dhcpcd-9.4.1:Linux-6.1.21-v8+:aarch64:BCM2835"), ..observed() },
         "Raspberry Pi", High),
        ("a Cisco IP phone's vendor class",
         Attributes { dhcp_vendor_class: Some("Cisco Systems, Inc. IP Phone CP-8845"), ..observed() },
         "Cisco IP Phone", VeryHigh),
        ("a Cisco MAC and the phone's SEP hostname",
         Attributes { mac: Some("0c:11:67:a2:b3:c4"), hostname: Some("SEP0C1167A2B3C4"), ..observed() },
         "Cisco IP Phone", VeryHigh),
        ("a Poly VVX vendor class",
         Attributes { dhcp_vendor_class: Some("Polycom-VVX411"), ..observed() },
         "Poly IP Phone", VeryHigh),
        ("a Yealink MAC",
         Attributes { mac: Some("80:5e:c0:11:22:33"), ..observed() },
         "Yealink IP Phone", High),
        ("an Avaya phone's vendor class",
         Attributes { mac: Some("00:04:0d:11:22:33"), dhcp_vendor_class: Some("ccp.avaya.com"), ..observed() },
         "Avaya IP Phone", VeryHigh),
        ("an Axis camera MAC",
         Attributes { mac: Some("00:40:8c:12:34:56"), ..observed() },
         "Axis Camera", High),
        ("an Axis camera MAC and its default hostname",
         Attributes { mac: Some("00:40:8c:12:34:56"), hostname: Some("axis-00408c123456"), ..observed() },
         "Axis Camera", VeryHigh),
        ("a Hikvision MAC",
         Attributes { mac: Some("0c:75:d2:12:34:56"), ..observed() },
         "Hikvision Camera", High),
        ("a Brother MAC and the BRN hostname",
         Attributes { mac: Some("3c:2a:f4:11:22:33"), hostname: Some("BRN3C2AF4112233"), ..observed() },
         "Brother Printer", VeryHigh),
        ("an Epson MAC",
         Attributes { mac: Some("a4:d7:3c:11:22:33"), hostname: Some("EPSON112233"), ..observed() },
         "Epson Printer", VeryHigh),
        ("an Android phone's vendor class and DHCP request",
         Attributes { mac: Some("64:1b:2f:11:22:33"), hostname: Some("Galaxy-S23"), dhcp_vendor_class: Some("android-dhcp-13"), dhcp_params: Some(ANDROID), ..observed() },
         "Android Device", VeryHigh),
        ("a Chromebook's user agent",
         Attributes { user_agent: Some("Mozilla/5.0 (X11; CrOS x86_64 15633.69.0) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/119.0 Safari/537.36"), ..observed() },
         "Chromebook", VeryHigh),
        ("Defender reporting Ubuntu",
         Attributes { os_name: Some("Ubuntu"), os_version: Some("22.4"), ..observed() },
         "Linux Server", High),
        ("Defender reporting CentOS 7",
         Attributes { os_name: Some("CentOS"), os_version: Some("7.9"), ..observed() },
         "CentOS Linux", VeryHigh),
        ("a server hostname with the dhclient DHCP request",
         Attributes { hostname: Some("web01.corp.example"), dhcp_params: Some(DHCLIENT), ..observed() },
         "Linux Server", Medium),
        ("BusyBox's udhcp vendor class",
         Attributes { dhcp_vendor_class: Some("udhcp 1.36.1"), ..observed() },
         "Embedded Linux Device", Medium),
        ("a Cisco switch asking for Plug and Play",
         Attributes { mac: Some("00:1b:54:11:22:33"), dhcp_vendor_class: Some("ciscopnp"), ..observed() },
         "Cisco Network Device", VeryHigh),
        ("an Aruba Instant AP",
         Attributes { dhcp_vendor_class: Some("ArubaInstantAP"), ..observed() },
         "Aruba Access Point", VeryHigh),
        ("a UniFi device",
         Attributes { mac: Some("f0:9f:c2:11:22:33"), dhcp_vendor_class: Some("ubnt"), ..observed() },
         "Ubiquiti Device", VeryHigh),
        ("a MikroTik RouterBOARD",
         Attributes { mac: Some("08:55:31:11:22:33"), ..observed() },
         "MikroTik Router", VeryHigh),
        ("a FortiGate",
         Attributes { mac: Some("74:78:a6:11:22:33"), hostname: Some("FGT60F-HQ"), ..observed() },
         "Fortinet Network Device", VeryHigh),
        ("an LG TV by its default hostname",
         Attributes { hostname: Some("LGwebOSTV"), ..observed() },
         "LG Smart TV", VeryHigh),
        ("a PlayStation MAC",
         Attributes { mac: Some("f4:64:12:11:22:33"), ..observed() },
         "Sony PlayStation", VeryHigh),
        ("an Xbox user agent",
         Attributes { user_agent: Some("Mozilla/5.0 (Windows NT 10.0; Win64; x64; Xbox; Xbox One) AppleWebKit/537.36"), ..observed() },
         "Microsoft Xbox", VeryHigh),
        ("an APC network management card",
         Attributes { mac: Some("00:c0:b7:11:22:33"), hostname: Some("apc8a3b2c"), ..observed() },
         "APC UPS", VeryHigh),
        ("a Sonos speaker",
         Attributes { mac: Some("00:0e:58:11:22:33"), ..observed() },
         "Sonos Speaker", VeryHigh),
        ("an ecobee thermostat",
         Attributes { mac: Some("44:61:32:11:22:33"), ..observed() },
         "ecobee Thermostat", VeryHigh),
        ("a Synology NAS",
         Attributes { mac: Some("90:09:d0:11:22:33"), ..observed() },
         "Synology NAS", VeryHigh),
        ("a vendor given by the caller instead of looked up",
         Attributes { mac_vendor: Some("Raspberry Pi Trading Ltd"), ..observed() },
         "Raspberry Pi", VeryHigh),
    ];
    assert!(table.len() >= 15);
    let mut wrong = Vec::new();
    for (what, attrs, profile, score) in &table {
        let got = classify(&lib, attrs);
        if got.as_ref() != Some(&(profile.to_string(), *score)) {
            wrong.push(format!("{what}: expected {profile} ({score}), got {got:?}"));
        }
    }
    assert!(wrong.is_empty(), "misclassified:\n{}", wrong.join("\n"));
}

#[test]
fn a_windows_vm_is_a_windows_workstation_with_the_hypervisor_among_the_other_profiles() {
    let lib = standard();
    let attrs = Attributes {
        mac: Some("00:50:56:01:02:03"),
        dhcp_vendor_class: Some("MSFT 5.0"),
        dhcp_params: Some(WINDOWS_10_11),
        ..observed()
    };
    let evaluation = lib.evaluate(&attrs, all_enabled);
    let best = evaluation.best.expect("profiled");
    assert_eq!(lib.profiles()[best.profile].name, "Windows Workstation");
    assert_eq!(best.score, MatchScore::VeryHigh);
    assert_eq!(names(&lib, &evaluation.others), ["VMware Virtual Machine"]);
}

#[test]
fn the_reported_rule_explains_the_match() {
    let lib = standard();
    let attrs = Attributes {
        mac: Some("3c:d9:2b:11:22:33"),
        dhcp_vendor_class: Some("Hewlett-Packard JetDirect"),
        ..observed()
    };
    let best = lib.evaluate(&attrs, all_enabled).best.unwrap();
    let rule = &lib.profiles()[best.profile].rules[best.rule];
    assert_eq!(
        rule.description,
        "MAC vendor contains \"Hewlett Packard\" or \"HP Inc.\" and DHCP vendor class starts \
         with \"Hewlett-Packard\" or \"HP \" → Very High"
    );
    assert_eq!(rule.score, best.score);
    let fields: Vec<Field> = rule.conditions().iter().map(Condition::field).collect();
    assert!(fields.contains(&Field::MacVendor) && fields.contains(&Field::DhcpVendorClass));
}

#[test]
fn nothing_matching_is_not_profiled() {
    let lib = standard();
    assert_eq!(lib.evaluate(&observed(), all_enabled), Evaluation::default());
    let random_phone = Attributes { mac: Some("da:a1:19:01:02:03"), hostname: Some("localhost"), ..observed() };
    let evaluation = lib.evaluate(&random_phone, all_enabled);
    assert_eq!(evaluation.best, None);
    assert!(evaluation.others.is_empty());
}

const TIES: &str = r#"
[[profile]]
name = "Zeta Printer"
category = "Printer"
[[profile.rule]]
score = "High"
mac_vendor = { contains = "Acme" }
hostname = { prefix = "prn" }

[[profile]]
name = "Alpha Device"
category = "Other"
[[profile.rule]]
score = "High"
mac_vendor = { contains = "Acme" }

[[profile]]
name = "Beta Device"
category = "Other"
[[profile.rule]]
score = "High"
mac_vendor = { contains = "Acme" }
[[profile.rule]]
score = "Low"
hostname = { prefix = "prn" }

[[profile]]
name = "Gamma Device"
category = "Other"
[[profile.rule]]
score = "Medium"
hostname = { contains = "prn" }
"#;

#[test]
fn on_equal_scores_the_more_specific_rule_wins_then_the_first_name() {
    let lib = ProfileLibrary::from_toml(TIES).unwrap();
    let acme_printer = Attributes { mac_vendor: Some("Acme Corp"), hostname: Some("prn-01"), ..observed() };
    let evaluation = lib.evaluate(&acme_printer, all_enabled);
    let best = evaluation.best.unwrap();
    assert_eq!(lib.profiles()[best.profile].name, "Zeta Printer", "two conditions beat one");
    assert_eq!(
        names(&lib, &evaluation.others),
        ["Alpha Device", "Beta Device", "Gamma Device"],
        "others by score, then name"
    );

    let acme_other = Attributes { mac_vendor: Some("ACME CORP"), hostname: Some("host-01"), ..observed() };
    let evaluation = lib.evaluate(&acme_other, all_enabled);
    assert_eq!(
        lib.profiles()[evaluation.best.unwrap().profile].name,
        "Alpha Device",
        "same score and specificity: the first name"
    );
    assert_eq!(names(&lib, &evaluation.others), ["Beta Device"]);
}

#[test]
fn a_profile_scores_its_best_matching_rule() {
    let lib = ProfileLibrary::from_toml(TIES).unwrap();
    let beta = lib.find("Beta Device").unwrap();
    let attrs = Attributes { mac_vendor: Some("Acme"), hostname: Some("prn-7"), ..observed() };
    let m = lib.evaluate(&attrs, |i| i == beta).best.expect("Beta matches");
    assert_eq!((m.profile, m.score, m.rule), (beta, MatchScore::High, 0));
    let only_hostname = Attributes { hostname: Some("prn-7"), ..observed() };
    let m = lib.evaluate(&only_hostname, |i| i == beta).best.unwrap();
    assert_eq!((m.score, m.rule), (MatchScore::Low, 1));
}

#[test]
fn a_disabled_profile_is_skipped_and_the_next_best_wins() {
    let lib = standard();
    let hp = lib.find("HP Printer").unwrap();
    let attrs = Attributes {
        mac: Some("3c:d9:2b:11:22:33"),
        dhcp_vendor_class: Some("MSFT 5.0"),
        dhcp_params: Some(WINDOWS_10_11),
        hostname: Some("NPI112233"),
        ..observed()
    };
    let with_hp = lib.evaluate(&attrs, all_enabled);
    assert_eq!(with_hp.best.map(|m| m.profile), Some(hp));
    let without_hp = lib.evaluate(&attrs, |i| i != hp);
    let best = without_hp.best.unwrap();
    assert_eq!(lib.profiles()[best.profile].name, "Windows Workstation");
    assert!(without_hp.others.iter().all(|m| m.profile != hp));
}

#[test]
fn profiles_shipped_disabled_do_not_match_with_the_defaults() {
    let lib = ProfileLibrary::from_toml(
        r#"
        [[profile]]
        name = "Noisy"
        category = "Other"
        enabled = false
        [[profile.rule]]
        score = "Very High"
        hostname = { contains = "a" }
        "#,
    )
    .unwrap();
    assert!(!lib.profiles()[0].enabled_by_default);
    let attrs = Attributes { hostname: Some("abc"), ..observed() };
    assert_eq!(classify(&lib, &attrs), None);
    assert!(lib.evaluate(&attrs, all_enabled).best.is_some());
}

fn load_error(text: &str) -> String {
    ProfileLibrary::from_toml(text).expect_err("the library is refused").to_string()
}

fn one_profile(rules: &str) -> String {
    format!(
        "[[profile]]\nname = \"Good\"\ncategory = \"C\"\n[[profile.rule]]\nscore = \"Low\"\n\
         hostname = {{ prefix = \"good\" }}\n\n[[profile]]\nname = \"Broken Printer\"\n\
         category = \"Printer\"\n{rules}"
    )
}

#[test]
fn a_broken_library_is_refused_with_an_error_naming_the_profile_and_rule() {
    let cases = [
        (
            "[[profile.rule]]\nscore = \"High\"\nhostname = { prefix = \"prn\" }\n[[profile.rule]]\nscore = \"High\"\nhostname = { regex = \"^prn(\" }\n",
            "rule 2",
            "not a valid regex",
        ),
        ("[[profile.rule]]\nscore = \"High\"\nhostnme = { prefix = \"prn\" }\n", "rule 1", "hostnme"),
        ("[[profile.rule]]\nscore = \"High\"\n", "rule 1", "no conditions"),
        ("[[profile.rule]]\nscore = \"Super High\"\nhostname = { prefix = \"prn\" }\n", "rule 1", "Super High"),
        (
            "[[profile.rule]]\nscore = \"High\"\nhostname = { prefix = \"prn\", contains = \"x\" }\n",
            "rule 1",
            "exactly one of",
        ),
        ("[[profile.rule]]\nscore = \"High\"\nhostname = { starts = \"prn\" }\n", "rule 1", "starts"),
        ("[[profile.rule]]\nscore = \"High\"\nmac_prefix = \"zz:00\"\n", "rule 1", "zz:00"),
        ("[[profile.rule]]\nscore = \"High\"\nmac_vendor = { contains = [] }\n", "rule 1", "empty"),
        ("[[profile.rule]]\nscore = \"High\"\nmac_vendor = { contains = \"\" }\n", "rule 1", "empty"),
        ("colour = \"red\"\n[[profile.rule]]\nscore = \"High\"\nhostname = { prefix = \"p\" }\n", "", "colour"),
        ("", "", "no rules"),
        (
            "[[profile.rule]]\nscore = \"High\"\nhostname = { prefix = 3 }\n",
            "rule 1",
            "hostname: invalid type: integer `3`, expected a string or a list of strings",
        ),
        ("[[profile.rule]]\nhostname = { prefix = \"prn\" }\n", "rule 1", "no score"),
    ];
    for (rules, rule, detail) in cases {
        let message = load_error(&one_profile(rules));
        assert!(
            message.contains("\"Broken Printer\"") && message.contains(rule) && message.contains(detail),
            "{message:?} should name the profile, {rule:?} and {detail:?}"
        );
    }
}

#[test]
fn a_duplicate_name_or_a_nameless_profile_is_refused() {
    let twice = format!(
        "{}\n{}",
        one_profile("[[profile.rule]]\nscore = \"High\"\nhostname = { prefix = \"p\" }\n"),
        "[[profile]]\nname = \"Good\"\ncategory = \"C\"\n[[profile.rule]]\nscore = \"Low\"\nhostname = { prefix = \"g\" }\n"
    );
    assert_eq!(load_error(&twice), "profile \"Good\" is defined more than once");
    assert_eq!(load_error("[[profile]]\ncategory = \"C\"\n"), "profile #1 in the library has no name");
}

#[test]
fn a_syntax_error_names_the_profile_it_is_in() {
    let message = load_error(&one_profile("[[profile.rule]]\nscore = \"High\"\nhostname = { prefix = \"prn }\n"));
    assert!(
        message.starts_with("profile library is not valid TOML at line 13 (in profile \"Broken Printer\")"),
        "{message}"
    );
}

#[test]
fn the_standard_library_loads_with_at_least_sixty_described_profiles() {
    let lib = standard();
    let profiles = lib.profiles();
    assert!(profiles.len() >= 60, "only {} profiles", profiles.len());
    for p in profiles {
        assert!(!p.description.is_empty(), "{} has no description", p.name);
        assert!(!p.category.is_empty());
        assert!(!p.rules.is_empty());
        for rule in &p.rules {
            assert!(rule.description.ends_with(rule.score.as_str()), "{}", rule.description);
        }
    }
    for category in [
        "Workstation",
        "Server",
        "Mobile Device",
        "Printer",
        "IP Phone",
        "Camera",
        "Network Device",
        "Virtual Machine",
        "Media Device",
        "Game Console",
        "Power Device",
        "IoT Device",
    ] {
        assert!(profiles.iter().any(|p| p.category == category), "no {category} profile");
    }
}

#[test]
fn end_of_life_systems_are_flagged_risky_and_current_ones_are_not() {
    let lib = standard();
    let risky = |name: &str| lib.profiles()[lib.find(name).unwrap()].risky.is_some();
    for name in
        ["Windows 7", "Windows XP", "Windows Server 2008", "Windows Server 2003", "Windows Server 2012", "CentOS Linux"]
    {
        assert!(risky(name), "{name} should be risky");
    }
    for name in ["Windows Workstation", "Windows Server", "Apple Mac", "HP Printer"] {
        assert!(!risky(name), "{name} should not be risky");
    }
}

#[test]
fn mac_prefix_conditions_accept_any_spelling_and_partial_octets() {
    let lib = ProfileLibrary::from_toml(
        r#"
        [[profile]]
        name = "Blum"
        category = "Other"
        [[profile.rule]]
        score = "High"
        mac_prefix = ["B8-4C-87-4", "0050.56"]
        "#,
    )
    .unwrap();
    assert_eq!(lib.profiles()[0].rules[0].description, "MAC address starts with b8:4c:87:4 or 00:50:56 → High");
    for (mac, expected) in
        [("b8:4c:87:41:22:33", true), ("B84C87412233", true), ("b8:4c:87:51:22:33", false), ("00:50:56:00:00:01", true)]
    {
        let attrs = Attributes { mac: Some(mac), ..observed() };
        assert_eq!(classify(&lib, &attrs).is_some(), expected, "{mac}");
    }
}

#[test]
fn regexes_are_prefiltered_only_by_literals_every_match_contains() {
    let cases: [(&str, Option<&[&str]>); 21] = [
        ("iphone", Some(&["iphone"])),
        ("^sep[0-9a-f]{12}\\b", Some(&["sep"])),
        ("(macbook|imac|mac-?mini|\\bmbp\\b)", Some(&["imac", "macbook", "mbp", "mini"])),
        ("Web0S|webOS.TV", Some(&["web0s", "webos"])),
        ("^(srv|svr|dc)[-_]?[0-9]", Some(&["dc", "srv", "svr"])),
        ("^(ap|wap|x)-", None),
        ("a|bc", None),
        ("(ab|)cd", Some(&["cd"])),
        ("ab?cd", Some(&["cd"])),
        ("xy*z", None),
        ("Windows NT 10\\.0", Some(&["windows nt 10.0"])),
        ("abc+de", Some(&["abc"])),
        ("abc+?de", Some(&["abc"])),
        ("x{2}yy", Some(&["yy"])),
        ("[0-9]{12}", None),
        ("[]ab]cd", Some(&["cd"])),
        ("(?i)abc", None),
        ("(?:abc|abd)e", Some(&["abc", "abd"])),
        ("\\x41bc", None),
        ("(ab)?cd", Some(&["cd"])),
        ("^dhcpcd-[0-9.]+:linux-.*:bcm2[0-9]{3}$", Some(&[":linux-"])),
    ];
    for (pattern, literals) in cases {
        let expected = literals.map(|l| l.iter().map(|s| s.to_string()).collect::<Vec<_>>());
        assert_eq!(required_literals(pattern), expected, "{pattern}");
    }
}

#[test]
fn match_scores_are_ordered_labelled_and_stored_as_small_integers() {
    use MatchScore::*;
    assert!(VeryLow < Low && Low < Medium && Medium < High && High < VeryHigh);
    assert_eq!(VeryHigh.to_string(), "Very High");
    assert_eq!(VeryLow.as_str(), "Very Low");
    for score in MatchScore::ALL {
        assert_eq!(MatchScore::from_i16(score.to_i16()), Some(score));
        assert_eq!(score.as_str().parse(), Ok(score));
        assert_eq!(score.as_str().to_lowercase().parse(), Ok(score));
    }
    assert_eq!("veryhigh".parse(), Ok(VeryHigh));
    assert_eq!("very_low".parse(), Ok(VeryLow));
    assert!("".parse::<MatchScore>().is_err());
    assert!("Extreme".parse::<MatchScore>().is_err());
    assert_eq!((VeryLow.to_i16(), VeryHigh.to_i16()), (1, 5));
    assert_eq!(MatchScore::from_i16(0), None);
    assert_eq!(serde_json::to_string(&High).unwrap(), "\"High\"");
    assert_eq!(serde_json::from_str::<MatchScore>("\"Very High\"").unwrap(), VeryHigh);
}

/// Endpoint attributes as they arrive: a mix of the kinds of device the library knows, with
/// varying hosts and MACs, and some that match nothing.
fn generated_observations(count: usize) -> Vec<[Option<String>; 7]> {
    let templates: [[Option<&str>; 7]; 12] = [
        // mac prefix, hostname, vendor class, params, user agent, os name, os version
        [Some("3c:d9:2b"), Some("NPI{}"), Some("Hewlett-Packard JetDirect"), None, None, None, None],
        [Some("f0:b3:ec"), Some("Johns-iPhone-{}"), None, Some(IOS), None, None, None],
        [
            Some("10:e7:c6"),
            Some("PC-{}"),
            Some("MSFT 5.0"),
            Some(WINDOWS_10_11),
            Some(
                "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/120.0 Safari/537.36",
            ),
            None,
            None,
        ],
        [Some("52:54:00"), Some("vm-{}.lab.example"), None, Some(DHCLIENT), None, None, None],
        [Some("0c:11:67"), Some("SEP0C1167{}"), Some("Cisco Systems, Inc. IP Phone CP-8845"), None, None, None, None],
        [Some("da:a1:19"), Some("host-{}"), None, None, None, None, None],
        [
            Some("64:1b:2f"),
            Some("Galaxy-S23-{}"),
            Some("android-dhcp-13"),
            Some(ANDROID),
            Some("Mozilla/5.0 (Linux; Android 13; SM-S911B) AppleWebKit/537.36"),
            None,
            None,
        ],
        [None, Some("srv-{}.corp.example"), None, None, None, Some("WindowsServer2022"), Some("21H2")],
        [
            Some("b8:27:eb"),
            Some("raspberrypi-{}"),
            Some("dhcpcd-9.4.1:Linux-6.1.21-v8+:aarch64:BCM2835"),
            None,
            None,
            None,
            None,
        ],
        [Some("00:40:8c"), Some("axis-00408c{}"), Some("udhcp 1.36.1"), None, None, None, None],
        [
            Some("f0:b3:ec"),
            Some("Annas-MacBook-Pro-{}"),
            None,
            Some(MACOS),
            Some("Mozilla/5.0 (Macintosh; Intel Mac OS X 14_2) AppleWebKit/605.1.15"),
            Some("macOS"),
            Some("14.2"),
        ],
        [
            Some("00:1b:54"),
            Some("unknown-{}"),
            Some("some vendor class"),
            Some("1,3,6"),
            Some("curl/8.5.0"),
            None,
            None,
        ],
    ];
    (0..count)
        .map(|i| {
            let t = &templates[i % templates.len()];
            let tail = format!("{:06x}", (i * 7919) % 0x100_0000);
            let mac = t[0].map(|p| format!("{p}:{}:{}:{}", &tail[0..2], &tail[2..4], &tail[4..6]));
            let host = t[1].map(|h| h.replace("{}", &tail));
            [
                mac,
                host,
                t[2].map(String::from),
                t[3].map(String::from),
                t[4].map(String::from),
                t[5].map(String::from),
                t[6].map(String::from),
            ]
        })
        .collect()
}

/// Run with `cargo test --release --lib evaluation_throughput -- --ignored --nocapture`.
#[test]
#[ignore = "micro-benchmark: run explicitly, ideally in release mode"]
fn evaluation_throughput() {
    let lib = standard();
    let observations = generated_observations(1000);
    let attrs: Vec<Attributes> = observations
        .iter()
        .map(|o| Attributes {
            mac: o[0].as_deref(),
            mac_vendor: None,
            hostname: o[1].as_deref(),
            dhcp_vendor_class: o[2].as_deref(),
            dhcp_params: o[3].as_deref(),
            user_agent: o[4].as_deref(),
            os_name: o[5].as_deref(),
            os_version: o[6].as_deref(),
        })
        .collect();
    let enabled = |i: usize| lib.profiles()[i].enabled_by_default;
    // Warm up, and check the generated endpoints are mostly profiled.
    let profiled = attrs.iter().filter(|a| lib.evaluate(a, enabled).best.is_some()).count();
    assert!(profiled * 10 >= attrs.len() * 8, "{profiled} profiled");

    let rounds = 100;
    let start = std::time::Instant::now();
    let mut best = 0usize;
    for _ in 0..rounds {
        for a in &attrs {
            best += lib.evaluate(a, enabled).best.map_or(0, |m| m.profile);
        }
    }
    let elapsed = start.elapsed();
    let evaluations = rounds * attrs.len();
    println!(
        "{evaluations} evaluations against {} profiles in {elapsed:?}: {:.0} evaluations/s, {:.2} µs each (checksum {best})",
        lib.profiles().len(),
        evaluations as f64 / elapsed.as_secs_f64(),
        elapsed.as_secs_f64() * 1e6 / evaluations as f64,
    );
}
