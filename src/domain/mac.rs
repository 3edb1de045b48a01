//! MAC addresses in the one canonical form the product stores: lower-case `aa:bb:cc:dd:ee:ff`.

/// Accepts `aa:bb:cc:dd:ee:ff`, `AA-BB-CC-DD-EE-FF`, `aabb.ccdd.eeff` and Defender's
/// `AABBCCDDEEFF`; refuses anything else, and the all-zero and broadcast addresses, which
/// identify no device.
pub fn normalize_mac(s: &str) -> Option<String> {
    let hex: String = s
        .trim()
        .chars()
        .filter(|c| !matches!(c, ':' | '-' | '.'))
        .collect();
    if hex.len() != 12 || !hex.chars().all(|c| c.is_ascii_hexdigit()) {
        return None;
    }
    let hex = hex.to_ascii_lowercase();
    if hex == "000000000000" || hex == "ffffffffffff" {
        return None;
    }
    let mut out = String::with_capacity(17);
    for (i, pair) in hex.as_bytes().chunks(2).enumerate() {
        if i > 0 {
            out.push(':');
        }
        out.push(pair[0] as char);
        out.push(pair[1] as char);
    }
    Some(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mac_forms_normalize_to_one() {
        for s in [
            "AA:BB:CC:DD:EE:01",
            "aa-bb-cc-dd-ee-01",
            "aabb.ccdd.ee01",
            "AABBCCDDEE01",
        ] {
            assert_eq!(
                normalize_mac(s).as_deref(),
                Some("aa:bb:cc:dd:ee:01"),
                "{s}"
            );
        }
        for s in [
            "",
            "aa:bb",
            "zz:bb:cc:dd:ee:ff",
            "00:00:00:00:00:00",
            "ff:ff:ff:ff:ff:ff",
        ] {
            assert_eq!(normalize_mac(s), None, "{s}");
        }
    }
}
