//! The Microsoft Defender for Endpoint integration.

pub mod import;
