//! MAC vendor lookup in the IEEE registration authority's registries (MA-L, MA-M, MA-S, CID
//! and IAB), compiled into the binary by the `oui-data` crate: no file to ship, no network.
//!
//! The longest registered prefix wins (a 36-bit MA-S block inside an IEEE-owned 24-bit
//! block names the real manufacturer).

use std::borrow::Cow;

use super::mac::parse_mac;

/// The organization the IEEE registered the address's prefix to, e.g. `"Apple, Inc."`, or `None`
/// when the address is malformed, unregistered, registered as "Private" (the owner asked the
/// IEEE to withhold its name), or locally administered: randomized and virtual addresses have no
/// manufacturer, even when their prefix happens to collide with a CID assignment.
///
/// Accepts any spelling [`parse_mac`] accepts. Cheap (no allocation for almost every vendor,
/// a few hash lookups): it is called for every endpoint on ingest.
pub fn vendor_for_mac(mac: &str) -> Option<Cow<'static, str>> {
    let octets = parse_mac(mac)?;
    if octets[0] & 0x02 != 0 {
        return None;
    }
    const HEX: &[u8; 16] = b"0123456789ABCDEF";
    let mut digits = [0u8; 12];
    for (i, o) in octets.iter().enumerate() {
        digits[2 * i] = HEX[usize::from(o >> 4)];
        digits[2 * i + 1] = HEX[usize::from(o & 0x0f)];
    }
    // Upper-case hex without separators is the form the crate looks up without allocating.
    let key = std::str::from_utf8(&digits).ok()?;
    let name = oui_data::lookup(key)?.organization().trim();
    if name.is_empty() || name.eq_ignore_ascii_case("private") {
        return None;
    }
    // The crate turns runs of spaces in the registry's names into line breaks; show them as
    // the single space they stand for.
    if name.contains('\n') {
        let cleaned: Vec<&str> = name.split_whitespace().collect();
        return Some(Cow::Owned(cleaned.join(" ")));
    }
    Some(Cow::Borrowed(name))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn vendor(mac: &str) -> Option<String> {
        vendor_for_mac(mac).map(Cow::into_owned)
    }

    #[test]
    fn well_known_prefixes_name_their_manufacturer() {
        assert_eq!(vendor("b8:27:eb:12:34:56").as_deref(), Some("Raspberry Pi Foundation"));
        assert_eq!(vendor("DC-A6-32-12-34-56").as_deref(), Some("Raspberry Pi Trading Ltd"));
        assert_eq!(vendor("005056abcdef").as_deref(), Some("VMware, Inc."));
        assert_eq!(vendor("0040.8c12.3456").as_deref(), Some("Axis Communications AB"));
        assert_eq!(vendor("00:15:5d:01:02:03").as_deref(), Some("Microsoft Corporation"));
        assert_eq!(vendor("f0:b3:ec:01:02:03").as_deref(), Some("Apple, Inc."));
    }

    #[test]
    fn the_longest_registered_prefix_wins() {
        // 8C:1F:64 is the IEEE's own MA-L block, split into MA-S (36-bit) assignments.
        assert_eq!(vendor("8c:1f:64:af:a0:01").as_deref(), Some("DATA ELECTRONIC DEVICES, INC"));
    }

    #[test]
    fn locally_administered_malformed_and_unknown_addresses_have_no_vendor() {
        assert_eq!(vendor("52:54:00:12:34:56"), None, "QEMU virtual NIC");
        assert_eq!(vendor("ea:27:01:00:00:01"), None, "CID space is locally administered");
        assert_eq!(vendor("not-a-mac"), None);
        assert_eq!(vendor("9c:93:e4:00:00:01"), None, "registered as Private");
    }

    #[test]
    fn names_with_runs_of_spaces_come_back_single_spaced() {
        // The registry spells this one "Shenzhen Skyworth Digital  Technology  CO., Ltd".
        assert_eq!(vendor("c0:8f:20:00:00:01").as_deref(), Some("Shenzhen Skyworth Digital Technology CO., Ltd"));
    }
}
