//! The Microsoft Defender for Endpoint integration: clouds and portal links, its settings, the
//! import of machines into the inventory.

pub mod cloud;
pub mod import;
pub mod links;
pub mod settings;
