//! The Microsoft Defender for Endpoint integration, in two layers:
//!
//! * [`client`] – Microsoft's API as Microsoft documents it (`docs/defender-api.md`), knowing
//!   nothing of the product: [`DefenderClient`] (tokens, requests under one retry policy, paging,
//!   machine actions, Test Connection), the client-side rate limiter, the clouds and their hosts,
//!   the entities (`dto`) and typed errors with plain-words explanations.
//! * the product's side, which uses the client: [`service::DefenderService`] (what pages, the
//!   JSON API and background jobs call), the saved [`settings`], the [`sync`] and its [`import`]
//!   into the inventory, machine [`actions`] as the product records them (offered on the [`platforms`] Microsoft documents), the [`review`] of
//!   machines the matching could not settle, and portal [`links`] for a device.
//!
//! Behaviour and choices: `docs/defender-client.md`.

pub mod actions;
pub mod client;
pub mod import;
pub mod links;
pub mod machine;
pub mod package;
pub mod platforms;
pub mod review;
pub mod service;
pub mod settings;
pub mod sync;
pub mod tags;

pub use client::cloud::Cloud;
pub use client::credentials::{Credentials, Secret};
pub use client::dto::{
    ActionStatus, Alert, ExportVulnerability, IpAddress, Machine, MachineAction, MachineVulnerability, Vulnerability,
};
pub use client::error::DefenderError;
pub use client::limiter::RateLimit;
pub use client::{
    Api, ApiStats, CallStats, ClientOptions, ConnectionReport, DefenderClient, IsolationType, PERMISSIONS, Pager,
    Permission, PermissionCheck, ScanType, Target,
};
pub use links::{DeviceTab, PortalLinks, device_link};
