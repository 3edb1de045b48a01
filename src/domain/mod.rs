//! The pure modeling domain: what an endpoint is (its profile, from rules over observed
//! attributes) and how risky it is. No I/O here: the web app, the database layer and the
//! integrations call into these rules, and everything is unit-tested in place.

pub mod mac;
pub mod oui;
pub mod profiles;
pub mod risk;
