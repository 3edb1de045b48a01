//! One file per table (or small group of tables): its row type and its queries; and one per
//! read model that a page reads across rows (`endpoint_list`).

pub mod actions;
pub mod api_tokens;
pub mod audit;
pub mod coverage;
pub mod defender_machines;
pub mod defender_sync_staging;
pub mod defender_tags;
pub mod destinations;
pub mod endpoint_list;
pub mod endpoints;
pub mod events;
pub mod integration;
pub mod jobs;
pub mod login_failures;
pub mod profiles;
pub mod risk;
pub mod risk_history;
pub mod rules;
pub mod sessions;
pub mod sso;
pub mod users;

// SQL's `lower()`: ASCII letters on SQLite (without ICU) and at least those on PostgreSQL, so
// queries that compare with it check the answer with `eq_ignore_ascii_case`.
diesel::define_sql_function!(fn lower(x: diesel::sql_types::Text) -> diesel::sql_types::Text);
