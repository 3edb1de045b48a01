//! Pure rules of the product: no HTTP, no SQL. What an endpoint is (its profile, from rules over
//! observed attributes), how risky it is, and what an observation must look like. The web app,
//! the database layer and the integrations call into these rules; everything is unit-tested in
//! place.

pub mod action;
pub mod coverage;
pub mod ids;
pub mod mac;
pub mod observations;
pub mod oui;
pub mod profiles;
pub mod risk;
pub mod rules;
pub mod tag;
pub mod text;
