//! The one integration-test binary: every test starts the real application on a random
//! loopback port with its own database (a temporary SQLite file, or a fresh PostgreSQL database
//! when `EA_TEST_BACKEND=postgres`), and talks HTTP to it.

mod browser;
mod helpers;

mod actions;
mod api;
mod auth;
mod defender_client;
mod defender_sync;
mod inventory;
mod journeys;
mod metrics;
mod modeling;
mod scaleout;
mod simulator;
mod sso;
