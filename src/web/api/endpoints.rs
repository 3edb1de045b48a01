//! `GET /api/v1/endpoints` (paged, the same filters as the Endpoints page), its CSV form, and
//! `GET /api/v1/endpoints/{id}` (with the risk factors behind its level, its addresses and history).

use actix_web::{HttpResponse, web};
use serde::Serialize;

use crate::db::models::endpoints::{self, Endpoint, EndpointIp, HistoryEntry};
use crate::db::models::risk::{self, RiskFactorRow};
use crate::domain::risk::RiskLevel;
use crate::error::AppError;
use crate::web::auth::ApiAnalyst;
use crate::web::pages::endpoints::{ListParams, list_view};
use crate::web::{AppState, Input, input};

/// An endpoint as the API shows it: the inventory's fields, its risk by name and its sources as a list.
#[derive(Serialize)]
struct EndpointJson {
    id: i64,
    mac: Option<String>,
    mac_vendor: String,
    ip: String,
    hostname: String,
    fqdn: String,
    os_name: String,
    os_version: String,
    os_build: String,
    dhcp_vendor_class: String,
    dhcp_params: String,
    user_agent: String,
    profile: String,
    match_score: i16,
    risk_level: i16,
    risk: &'static str,
    sources: String,
    sources_list: Vec<String>,
    custom_data: String,
    first_seen: i64,
    last_seen: i64,
    created_at: i64,
    updated_at: i64,
    other_profiles: String,
    profile_reason: String,
}

impl From<Endpoint> for EndpointJson {
    fn from(e: Endpoint) -> Self {
        Self {
            risk: RiskLevel::label_of(e.risk_level),
            sources_list: e.sources.split(',').filter(|s| !s.is_empty()).map(str::to_owned).collect(),
            id: e.id,
            mac: e.mac,
            mac_vendor: e.mac_vendor,
            ip: e.ip,
            hostname: e.hostname,
            fqdn: e.fqdn,
            os_name: e.os_name,
            os_version: e.os_version,
            os_build: e.os_build,
            dhcp_vendor_class: e.dhcp_vendor_class,
            dhcp_params: e.dhcp_params,
            user_agent: e.user_agent,
            profile: e.profile,
            match_score: e.match_score,
            risk_level: e.risk_level,
            sources: e.sources,
            custom_data: e.custom_data,
            first_seen: e.first_seen,
            last_seen: e.last_seen,
            created_at: e.created_at,
            updated_at: e.updated_at,
            other_profiles: e.other_profiles,
            profile_reason: e.profile_reason,
        }
    }
}

/// An address the endpoint was seen with.
#[derive(Serialize)]
struct IpJson {
    endpoint_id: i64,
    ip: String,
    first_seen: i64,
    last_seen: i64,
}

impl From<EndpointIp> for IpJson {
    fn from(a: EndpointIp) -> Self {
        Self { endpoint_id: a.endpoint_id, ip: a.ip, first_seen: a.first_seen, last_seen: a.last_seen }
    }
}

/// One recorded change of a field.
#[derive(Serialize)]
struct HistoryJson {
    id: i64,
    endpoint_id: i64,
    at: i64,
    field: String,
    old_value: String,
    new_value: String,
    source: String,
}

impl From<HistoryEntry> for HistoryJson {
    fn from(h: HistoryEntry) -> Self {
        Self {
            id: h.id,
            endpoint_id: h.endpoint_id,
            at: h.at,
            field: h.field,
            old_value: h.old_value,
            new_value: h.new_value,
            source: h.source,
        }
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

/// `GET /api/v1/endpoints.csv`: the filtered endpoints as CSV, streamed (see `web::export`).
pub async fn export_csv(
    _caller: ApiAnalyst,
    state: web::Data<AppState>,
    params: Input<web::Query<ListParams>>,
) -> Result<HttpResponse, AppError> {
    let query = input(params)?.to_query(100)?;
    Ok(crate::web::export::endpoints_csv(state.db.clone(), query))
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
            level: RiskLevel::label_of(f.level),
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
    ip_addresses: Vec<IpJson>,
    history: Vec<HistoryJson>,
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
        ip_addresses: ips.into_iter().map(IpJson::from).collect(),
        history: history.into_iter().map(HistoryJson::from).collect(),
    }))
}
