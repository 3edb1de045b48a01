//! The JSON API for automation, under `/api/v1`, described in `openapi.json` (served at
//! `/api/v1/openapi.json`). Authenticated by API tokens only.

pub mod actions;
pub mod destinations;
pub mod endpoints;
pub mod integrations;
pub mod observations;
pub mod openapi;
pub mod profiles;
pub mod risk;
pub mod rules;

/// Reads what `read` reads of the endpoint `id`, or fails with 404 when there is no such
/// endpoint (the endpoint's sub-resources: its actions, its risk history).
pub(crate) async fn of_endpoint<T, F>(
    state: &crate::web::AppState,
    id: i64,
    read: F,
) -> Result<T, crate::error::AppError>
where
    F: FnOnce(&mut crate::db::AnyConnection, i64) -> crate::db::DbResult<T> + Send + 'static,
    T: Send + 'static,
{
    state
        .db
        .run(move |c| match crate::db::models::endpoints::find(c, id)? {
            None => Ok(None),
            Some(_) => Ok(Some(read(c, id)?)),
        })
        .await?
        .ok_or(crate::error::AppError::NotFound)
}
