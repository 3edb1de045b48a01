//! The JSON API for automation, under `/api/v1`. Authenticated by API tokens only.

pub mod endpoints;
pub mod integrations;
pub mod observations;
