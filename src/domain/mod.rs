//! Pure rules of the product: no HTTP, no SQL. Unit-tested in place.

pub mod mac;
pub mod observations;

/// The MAC vendor from the IEEE registry. (Filled in by the OUI lookup of the modeling engine.)
pub fn vendor_for_mac(_mac: &str) -> Option<String> {
    None
}
