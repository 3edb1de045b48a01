//! `GET /api/v1/endpoints` (paged, the same filters as the Endpoints page) and
//! `GET /api/v1/endpoints/{id}` (with the risk factors behind its level, its addresses and history).

use actix_web::{HttpResponse, web};
use serde::Serialize;

use crate::db::models::endpoints::{self, Endpoint, EndpointIp, HistoryEntry};
use crate::db::models::risk::{self, RiskFactorRow};
use crate::error::AppError;
use crate::web::auth::ApiAnalyst;
use crate::web::pages::endpoints::{ListParams, list_view, risk_label};
use crate::web::{AppState, Input, input};

#[derive(Serialize)]
struct EndpointJson {
    #[serde(flatten)]
    endpoint: Endpoint,
    risk: &'static str,
    sources_list: Vec<String>,
}

impl From<Endpoint> for EndpointJson {
    fn from(endpoint: Endpoint) -> Self {
        let sources_list = endpoint.sources.split(',').filter(|s| !s.is_empty()).map(str::to_owned).collect();
        Self { risk: risk_label(endpoint.risk_level), sources_list, endpoint }
    }
}

#[derive(Serialize)]
struct ListJson {
    items: Vec<EndpointJson>,
    total: i64,
    /// Pass as `after` to get the next page; null on the last page.
    next: Option<String>,
}

pub async fn list(
    _caller: ApiAnalyst,
    state: web::Data<AppState>,
    params: Input<web::Query<ListParams>>,
) -> Result<HttpResponse, AppError> {
    let params = input(params)?;
    let query = params.to_query(100)?;
    let (page, total, _) = list_view(&state, query, false).await?;
    Ok(HttpResponse::Ok().json(ListJson {
        next: page.next.as_ref().map(|c| c.encode()),
        items: page.items.iter().cloned().map(EndpointJson::from).collect(),
        total,
    }))
}

/// One assessment's contribution to the endpoint's risk (the highest level is the endpoint's).
#[derive(Serialize)]
struct RiskFactorJson {
    source: String,
    level: &'static str,
    summary: String,
    details: String,
    updated_at: i64,
}

impl From<RiskFactorRow> for RiskFactorJson {
    fn from(f: RiskFactorRow) -> Self {
        Self {
            level: risk_label(f.level),
            source: f.source,
            summary: f.summary,
            details: f.details,
            updated_at: f.updated_at,
        }
    }
}

#[derive(Serialize)]
struct DetailJson {
    #[serde(flatten)]
    endpoint: EndpointJson,
    risk_factors: Vec<RiskFactorJson>,
    ip_addresses: Vec<EndpointIp>,
    history: Vec<HistoryEntry>,
}

pub async fn get(
    _caller: ApiAnalyst,
    state: web::Data<AppState>,
    id: Input<web::Path<i64>>,
) -> Result<HttpResponse, AppError> {
    let id = input(id)?;
    let id = id.into_inner();
    let found = state
        .db
        .run(move |c| {
            let Some(e) = endpoints::find(c, id)? else {
                return Ok(None);
            };
            Ok(Some((e, risk::of(c, id)?, endpoints::ips(c, id)?, endpoints::history(c, id, 100)?)))
        })
        .await?;
    let (e, factors, ips, history) = found.ok_or(AppError::NotFound)?;
    Ok(HttpResponse::Ok().json(DetailJson {
        endpoint: e.into(),
        risk_factors: factors.into_iter().map(RiskFactorJson::from).collect(),
        ip_addresses: ips,
        history,
    }))
}
