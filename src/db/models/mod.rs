//! One file per table: its row type and its queries.

pub mod api_tokens;
pub mod audit;
pub mod endpoints;
pub mod sessions;
pub mod users;
