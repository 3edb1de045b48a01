//! The one integration-test binary: every test starts real servers on loopback.

mod simulator;
