//! MAC addresses as endpoint identities.
//!
//! Every source spells MAC addresses its own way; the app stores and compares one canonical
//! form: six lower-case hex pairs separated by colons, `aa:bb:cc:dd:ee:ff`.
//!
//! Accepted spellings (surrounding whitespace is ignored, hex digits in either case):
//!
//! | form                | example             | typical source               |
//! |---------------------|---------------------|------------------------------|
//! | colon-separated     | `aa:bb:cc:dd:ee:ff` | Linux, macOS, most tools     |
//! | hyphen-separated    | `AA-BB-CC-DD-EE-FF` | Windows                      |
//! | Cisco dotted        | `aabb.ccdd.eeff`    | Cisco IOS                    |
//! | bare                | `AABBCCDDEEFF`      | Microsoft Defender           |
//!
//! Everything else is rejected: other lengths (e.g. Defender's 16-digit tunnel adapter
//! addresses), mixed separators, single-digit groups.
//!
//! Addresses that are well-formed but cannot identify one endpoint are rejected as well, because
//! accepting them would merge unrelated devices into one endpoint:
//! - the all-zero address `00:00:00:00:00:00` (reported for adapters without a hardware address);
//! - group (multicast) addresses — the least significant bit of the first octet is set — which
//!   includes the broadcast address `ff:ff:ff:ff:ff:ff`. A network interface never uses one as
//!   its own source address.

/// Parses any accepted spelling into the six octets, or `None`.
///
/// Unlike [`normalize_mac`] this does not reject the all-zero or group addresses: it only
/// checks the spelling.
pub fn parse_mac(s: &str) -> Option<[u8; 6]> {
    let s = s.trim().as_bytes();
    let mut digits = [0u8; 12];
    let ok = match s.len() {
        // AABBCCDDEEFF
        12 => copy_hex(s, &mut digits),
        // aa:bb:cc:dd:ee:ff or aa-bb-cc-dd-ee-ff (one separator throughout)
        17 => {
            let sep = s[2];
            (sep == b':' || sep == b'-')
                && (0..5).all(|i| s[2 + 3 * i] == sep)
                && (0..6).all(|i| copy_hex(&s[3 * i..3 * i + 2], &mut digits[2 * i..2 * i + 2]))
        }
        // aabb.ccdd.eeff
        14 => {
            s[4] == b'.'
                && s[9] == b'.'
                && (0..3).all(|i| copy_hex(&s[5 * i..5 * i + 4], &mut digits[4 * i..4 * i + 4]))
        }
        _ => false,
    };
    if !ok {
        return None;
    }
    let mut octets = [0u8; 6];
    for (i, octet) in octets.iter_mut().enumerate() {
        *octet = (digits[2 * i] << 4) | digits[2 * i + 1];
    }
    Some(octets)
}

/// Copies the hex digits of `src` as nibble values into `dst` (same length); false when a
/// character is not a hex digit.
fn copy_hex(src: &[u8], dst: &mut [u8]) -> bool {
    debug_assert_eq!(src.len(), dst.len());
    for (d, &c) in dst.iter_mut().zip(src) {
        *d = match c {
            b'0'..=b'9' => c - b'0',
            b'a'..=b'f' => c - b'a' + 10,
            b'A'..=b'F' => c - b'A' + 10,
            _ => return false,
        };
    }
    true
}

/// Formats six octets in the canonical form `aa:bb:cc:dd:ee:ff`.
pub fn format_mac(octets: [u8; 6]) -> String {
    const HEX: &[u8; 16] = b"0123456789abcdef";
    let mut out = String::with_capacity(17);
    for (i, o) in octets.iter().enumerate() {
        if i > 0 {
            out.push(':');
        }
        out.push(HEX[usize::from(o >> 4)] as char);
        out.push(HEX[usize::from(o & 0x0f)] as char);
    }
    out
}

/// The canonical form `aa:bb:cc:dd:ee:ff` of a MAC address in any accepted spelling, or `None`
/// when it is malformed or cannot identify an endpoint (all-zero, multicast, broadcast); see the
/// module documentation.
pub fn normalize_mac(s: &str) -> Option<String> {
    let octets = parse_mac(s)?;
    if octets == [0; 6] || is_group(octets) {
        return None;
    }
    Some(format_mac(octets))
}

fn is_group(octets: [u8; 6]) -> bool {
    octets[0] & 0x01 != 0
}

/// Whether the address is locally administered (the U/L bit, `0x02` of the first octet, is
/// set): not assigned by a manufacturer from the IEEE registry. Phones, tablets and laptops use
/// such randomized "private" addresses on Wi-Fi, and hypervisors use them for virtual NICs (QEMU's
/// `52:54:00`). Such an address has no vendor, and one device may show up under several of them.
///
/// Accepts any spelling [`parse_mac`] accepts; false for a malformed address.
pub fn is_locally_administered(mac: &str) -> bool {
    parse_mac(mac).is_some_and(|o| o[0] & 0x02 != 0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_common_spelling_normalizes_to_lower_case_colon_form() {
        for input in [
            "aa:bb:cc:dd:ee:f0",
            "AA:BB:CC:DD:EE:F0",
            "AA-BB-CC-DD-EE-F0",
            "aa-bb-cc-dd-ee-f0",
            "aabb.ccdd.eef0",
            "AABB.CCDD.EEF0",
            "AABBCCDDEEF0",
            "aabbccddeef0",
            "  aa:bb:cc:dd:ee:f0\n",
        ] {
            assert_eq!(normalize_mac(input).as_deref(), Some("aa:bb:cc:dd:ee:f0"), "{input:?}");
        }
    }

    #[test]
    fn malformed_addresses_are_rejected() {
        for input in [
            "",
            "aa:bb:cc:dd:ee",
            "aa:bb:cc:dd:ee:ff:00",
            "aa:bb-cc:dd:ee:f0",
            "aa:bb:cc:dd:ee:g0",
            "a:b:c:d:e:f",
            "aabb.ccdd-eef0",
            "aabbccddeef",
            "aabbccddeef00",
            "00000000000000E0", // Defender's tunnel adapters
            "aa:bb:cc:dd:ee:f0:",
            "aa::bb:cc:dd:ee:f0",
            "aa:bb:cc:dd:ee:fé",
        ] {
            assert_eq!(normalize_mac(input), None, "{input:?}");
        }
    }

    #[test]
    fn addresses_that_cannot_identify_one_endpoint_are_rejected() {
        assert_eq!(normalize_mac("00:00:00:00:00:00"), None);
        assert_eq!(normalize_mac("000000000000"), None);
        assert_eq!(normalize_mac("FF-FF-FF-FF-FF-FF"), None);
        assert_eq!(normalize_mac("01:00:5e:00:00:fb"), None, "IPv4 multicast");
        assert_eq!(normalize_mac("33:33:00:00:00:01"), None, "IPv6 multicast");
        // ...but parse_mac only checks the spelling.
        assert_eq!(parse_mac("ff:ff:ff:ff:ff:ff"), Some([0xff; 6]));
    }

    #[test]
    fn randomized_and_virtual_addresses_are_locally_administered() {
        assert!(is_locally_administered("52:54:00:12:34:56"), "QEMU");
        assert!(is_locally_administered("da:a1:19:00:11:22"), "iOS private address");
        assert!(is_locally_administered("DAA119001122"));
        assert!(!is_locally_administered("00:50:56:01:02:03"), "VMware OUI");
        assert!(!is_locally_administered("b8:27:eb:01:02:03"), "Raspberry Pi OUI");
        assert!(!is_locally_administered("not a mac"));
    }

    #[test]
    fn format_mac_round_trips() {
        assert_eq!(format_mac(parse_mac("0A1B2C3D4E5F").unwrap()), "0a:1b:2c:3d:4e:5f");
    }
}
