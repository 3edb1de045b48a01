//! The JSON API for automation, under `/api/v1`, described in `openapi.json` (served at
//! `/api/v1/openapi.json`). Authenticated by API tokens only.

pub mod actions;
pub mod destinations;
pub mod endpoints;
pub mod integrations;
pub mod observations;
pub mod openapi;
