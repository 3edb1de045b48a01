//! The Microsoft Defender for Endpoint integration: the API client, and the product's side —
//! settings, sync, import into the inventory.
//!
//! * [`cloud`] – clouds (commercial, GCC, GCC High, DoD) and their sign-in, API and portal hosts.
//! * [`links`] – portal deep links for a device.
//! * [`dto`] – permissive mirrors of the API entities.
//! * [`client`] – [`DefenderClient`]: token cache, rate limiter, retries, paging, actions.
//! * [`auth`], [`limiter`], [`error`] – credentials and token handling, the client-side rate
//!   limiter, typed errors with plain-words explanations.
//!
//! Behaviour and choices: `docs/defender-client.md`.

pub mod actions;
pub mod auth;
pub mod client;
pub mod cloud;
pub mod dto;
pub mod error;
pub mod import;
pub mod limiter;
pub mod links;
pub mod review;
pub mod service;
pub mod settings;
pub mod sync;

pub use auth::{Credentials, Secret};
pub use client::{
    Api, ApiStats, CallStats, ClientOptions, ConnectionReport, DefenderClient, IsolationType, Pager, PermissionCheck,
    REQUIRED_PERMISSIONS, ScanType, Target,
};
pub use cloud::Cloud;
pub use dto::{
    ActionStatus, Alert, ExportVulnerability, IpAddress, Machine, MachineAction, MachineVulnerability, Vulnerability,
};
pub use error::DefenderError;
pub use limiter::RateLimit;
pub use links::{DeviceTab, PortalLinks, device_link};
