//! `GET /metrics`: the instance's Prometheus metrics, for a scraper at an allowed address or an
//! Admin API token. The inventory figures are counted in the database at each scrape (two
//! grouped counts over indexed columns), so they are current and the same on every instance.

use actix_web::{HttpResponse, web};

use super::AppState;
use super::auth::MetricsReader;
use crate::db::models::{actions, risk};
use crate::domain::risk::RiskLevel;
use crate::error::AppError;
use crate::metrics::{CONTENT_TYPE, InventoryFigures};

pub async fn scrape(_reader: MetricsReader, state: web::Data<AppState>) -> Result<HttpResponse, AppError> {
    let (levels, actions) = state.db.run(|c| Ok((risk::level_counts(c)?, actions::status_counts(c)?))).await?;
    // Every level is reported, those without endpoints as 0, so that a dashboard's series
    // do not appear and vanish.
    let endpoints_by_risk = RiskLevel::ALL
        .iter()
        .map(|level| {
            let n = levels.iter().filter(|(l, _)| *l == level.to_i16()).map(|(_, n)| n).sum();
            (level.as_str(), n)
        })
        .collect();
    let body = state.metrics.render(&InventoryFigures { endpoints_by_risk, actions_by_status: actions });
    Ok(HttpResponse::Ok().content_type(CONTENT_TYPE).body(body))
}
