//! Endpoint Analytics: every endpoint on the network, what it is, how risky it is, and what to do
//! about it. The binary in `main.rs` is a thin command line over this library; the integration
//! tests build the same application through [`app::Application`].

pub mod accounts;
pub mod app;
pub mod auth;
pub mod background;
pub mod cli;
pub mod config;
pub mod coverage;
pub mod db;
pub mod defender;
pub mod demo;
pub mod domain;
pub mod error;
pub mod fuzz;
pub mod inventory;
pub mod jobs;
pub mod logging;
pub mod metrics;
pub mod modeling;
pub mod notify;
pub mod outbound;
pub mod packaging;
pub mod risk_history;
pub mod rules;
pub mod secrets;
pub mod sso;
pub mod web;
