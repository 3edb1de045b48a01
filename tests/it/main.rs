//! The one integration-test binary: every test starts the real application on a random
//! loopback port with its own database (a temporary SQLite file, or a fresh PostgreSQL database
//! when `EA_TEST_BACKEND=postgres`), and talks HTTP to it.

mod browser;
mod connection;
mod consistency;
mod coverage;
mod helpers;
mod process;

mod actions;
mod api;
mod architecture;
mod auth;
mod bad_input;
mod crash;
mod defender_behaviour;
mod defender_client;
mod defender_sync;
mod doors;
mod events;
mod faults;
mod freshness;
mod inventory;
mod journeys;
mod load;
mod metrics;
mod modeling;
mod notifications;
mod pages;
mod platforms;
mod red19;
mod red21;
mod red23;
mod red_door;
mod red_rules;
mod response_actions;
mod risk_history;
mod routes;
mod rules;
mod scaleout;
mod screens;
mod secrets;
mod sso;
mod tags;
mod tokens;
