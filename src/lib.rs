//! Endpoint Analytics: every endpoint on the network, what it is, how risky it is, and what to do
//! about it. The binary in `main.rs` is a thin command line over this library; the integration
//! tests build the same application through [`app`].

pub mod simulator;
