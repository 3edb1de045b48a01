//! `GET /api/v1/endpoints` (paged, the same filters as the Endpoints page), its CSV form, and
//! `GET /api/v1/endpoints/{id}` (with the risk factors behind its level, its addresses and history).

use actix_web::{HttpResponse, web};
use serde::Serialize;

use crate::db::models::coverage::{self, GapRow};
use crate::db::models::endpoints::{self, Endpoint, EndpointIp, HistoryEntry};
use crate::db::models::risk::{self, RiskFactorRow};
use crate::domain::coverage::GapKind;
use crate::domain::profiles::MatchScore;
use crate::domain::risk::RiskLevel;
use crate::error::AppError;
use crate::web::auth::ApiAnalyst;
use crate::web::filters::rfc3339;
use crate::web::pages::endpoints::{ListParams, list_view};
use crate::web::{AppState, Input, input};

/// An endpoint as the API shows it: one field per fact, names for levels and scores, lists as
/// arrays, times in RFC 3339, and its Defender machine when it has one.
#[derive(Serialize)]
struct EndpointJson {
    id: i64,
    hostname: String,
    fqdn: String,
    ip: String,
    mac: Option<String>,
    mac_vendor: String,
    os: OsJson,
    dhcp: DhcpJson,
    user_agent: String,
    /// What the endpoint is; `null` when not profiled.
    profile: Option<ProfileJson>,
    risk: &'static str,
    sources: Vec<String>,
    custom_data: serde_json::Value,
    first_seen: Option<String>,
    last_seen: Option<String>,
    created_at: Option<String>,
    updated_at: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    defender: Option<DefenderJson>,
    /// Its EDR coverage gap, when it has one.
    #[serde(skip_serializing_if = "Option::is_none")]
    coverage: Option<CoverageJson>,
}

/// An endpoint's EDR coverage gap (`domain::coverage`).
#[derive(Serialize)]
struct CoverageJson {
    kind: String,
    label: &'static str,
    detail: String,
    since: Option<String>,
}

impl From<GapRow> for CoverageJson {
    fn from(g: GapRow) -> Self {
        Self {
            label: GapKind::parse(&g.kind).map_or("", GapKind::label),
            kind: g.kind,
            detail: g.detail,
            since: rfc3339(g.since),
        }
    }
}

#[derive(Serialize)]
struct OsJson {
    name: String,
    version: String,
    build: String,
}

#[derive(Serialize)]
struct DhcpJson {
    vendor_class: String,
    /// The parameter request list (option numbers), in the order the device asked.
    parameters: Vec<String>,
}

#[derive(Serialize)]
struct ProfileJson {
    name: String,
    match_score: Option<&'static str>,
    reason: String,
    /// The other profiles that matched, with their scores.
    others: serde_json::Value,
}

/// The endpoint's Microsoft Defender machine.
#[derive(Serialize)]
struct DefenderJson {
    machine_id: String,
    links: LinksJson,
    onboarding_status: String,
    health_status: String,
    exposure: ExposureJson,
    alerts: AlertsJson,
    isolation: IsolationJson,
    /// Defender's machine tags.
    tags: Vec<String>,
    last_seen: Option<String>,
    stale: bool,
}

#[derive(Serialize)]
struct LinksJson {
    overview: String,
    alerts: String,
    vulnerabilities: String,
}

#[derive(Serialize)]
struct ExposureJson {
    level: &'static str,
    vulnerabilities: i32,
    /// The most severe vulnerability: CVE and description; `null` without any.
    top_vulnerability: Option<serde_json::Value>,
}

#[derive(Serialize)]
struct AlertsJson {
    level: &'static str,
    /// The title of the most severe active alert; `null` without any.
    top_alert_title: Option<String>,
}

#[derive(Serialize)]
struct IsolationJson {
    /// `isolated`, `not_isolated`, or `unknown` (the machine actions could not be read).
    state: &'static str,
    /// Full or Selective while isolated.
    scope: Option<String>,
    /// When the latest isolation or release took effect, and who asked for it.
    since: Option<String>,
    by: Option<String>,
    /// An isolation (`isolate`) or release (`unisolate`) waiting for the device.
    pending: Option<&'static str>,
}

impl DefenderJson {
    fn of(view: crate::web::pages::endpoints::DefenderView) -> Self {
        let i = view.isolation;
        let m = view.m;
        let text = |s: String| Some(s).filter(|s| !s.is_empty());
        let tags = m.tag_list();
        DefenderJson {
            tags,
            links: LinksJson { overview: view.overview, alerts: view.alerts, vulnerabilities: view.vulnerabilities },
            onboarding_status: m.onboarding_status,
            health_status: m.health_status,
            exposure: ExposureJson {
                level: RiskLevel::label_of(m.top_vuln_severity),
                vulnerabilities: m.vuln_count,
                top_vulnerability: (!m.top_vuln_cve.is_empty())
                    .then(|| serde_json::json!({"cve": m.top_vuln_cve, "description": m.top_vuln_description})),
            },
            alerts: AlertsJson {
                level: RiskLevel::label_of(m.top_alert_severity),
                top_alert_title: text(m.top_alert_title),
            },
            isolation: IsolationJson {
                state: if i.unread {
                    "unknown"
                } else if i.isolated {
                    "isolated"
                } else {
                    "not_isolated"
                },
                scope: text(i.scope),
                since: rfc3339(i.at),
                by: text(i.by),
                pending: match i.pending.as_str() {
                    "Isolate" => Some("isolate"),
                    "Unisolate" => Some("unisolate"),
                    _ => None,
                },
            },
            last_seen: rfc3339(m.last_seen),
            stale: m.stale,
            machine_id: m.machine_id,
        }
    }
}

impl EndpointJson {
    fn of(e: Endpoint, defender: Option<crate::web::pages::endpoints::DefenderView>, gap: Option<GapRow>) -> Self {
        let json_or = |s: &str, empty: serde_json::Value| serde_json::from_str(s).unwrap_or(empty);
        Self {
            risk: RiskLevel::label_of(e.risk_level),
            sources: e.sources.split(',').filter(|s| !s.is_empty()).map(str::to_owned).collect(),
            profile: (!e.profile.is_empty()).then(|| ProfileJson {
                match_score: MatchScore::from_i16(e.match_score).map(MatchScore::as_str),
                reason: e.profile_reason.clone(),
                others: json_or(&e.other_profiles, serde_json::json!([])),
                name: e.profile.clone(),
            }),
            custom_data: json_or(&e.custom_data, serde_json::json!({})),
            os: OsJson { name: e.os_name, version: e.os_version, build: e.os_build },
            dhcp: DhcpJson {
                vendor_class: e.dhcp_vendor_class,
                parameters: e
                    .dhcp_params
                    .split(',')
                    .map(str::trim)
                    .filter(|p| !p.is_empty())
                    .map(str::to_owned)
                    .collect(),
            },
            first_seen: rfc3339(e.first_seen),
            last_seen: rfc3339(e.last_seen),
            created_at: rfc3339(e.created_at),
            updated_at: rfc3339(e.updated_at),
            defender: defender.map(DefenderJson::of),
            coverage: gap.map(CoverageJson::from),
            id: e.id,
            mac: e.mac,
            mac_vendor: e.mac_vendor,
            ip: e.ip,
            hostname: e.hostname,
            fqdn: e.fqdn,
            user_agent: e.user_agent,
        }
    }
}

/// An address the endpoint was seen with.
#[derive(Serialize)]
struct IpJson {
    endpoint_id: i64,
    ip: String,
    first_seen: Option<String>,
    last_seen: Option<String>,
}

impl From<EndpointIp> for IpJson {
    fn from(a: EndpointIp) -> Self {
        Self {
            endpoint_id: a.endpoint_id,
            ip: a.ip,
            first_seen: rfc3339(a.first_seen),
            last_seen: rfc3339(a.last_seen),
        }
    }
}

/// One recorded change of a field.
#[derive(Serialize)]
struct HistoryJson {
    id: i64,
    endpoint_id: i64,
    at: Option<String>,
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
            at: rfc3339(h.at),
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
    let params = input(params)?.into_inner();
    let (list, link) = page_of(&state, &params, "/api/v1/endpoints").await?;
    Ok(with_link(link).json(list))
}

/// One page of the list as JSON, and the `Link` to the next page at `path`.
async fn page_of(state: &AppState, params: &ListParams, path: &str) -> Result<(ListJson, Option<String>), AppError> {
    let query = params.to_query(100)?;
    let (page, total, _) = list_view(state, query, false).await?;
    let ids: Vec<i64> = page.items.iter().map(|e| e.id).collect();
    let (views, mut gaps) = state
        .db
        .run(move |c| Ok((crate::web::pages::endpoints::defender_views(c, &ids)?, coverage::of_many(c, &ids)?)))
        .await?;
    let mut views = views.into_iter();
    let next = page.next.as_ref().map(|c| c.encode());
    let link = next.as_ref().map(|n| format!("<{path}?{}>; rel=\"next\"", params.with_after(Some(n))));
    let items = (page.items.iter().cloned())
        .map(|e| {
            let gap = gaps.remove(&e.id);
            EndpointJson::of(e, views.next().flatten(), gap)
        })
        .collect();
    Ok((ListJson { next, items, total }, link))
}

fn with_link(link: Option<String>) -> actix_web::HttpResponseBuilder {
    let mut res = HttpResponse::Ok();
    if let Some(l) = link {
        res.insert_header(("Link", l));
    }
    res
}

/// The gaps per kind.
#[derive(Serialize)]
struct CoverageCountsJson {
    not_onboarded: i64,
    blind_spot: i64,
    defender_flagged: i64,
}

#[derive(Serialize)]
struct CoverageListJson {
    counts: CoverageCountsJson,
    #[serde(flatten)]
    list: ListJson,
}

/// `GET /api/v1/coverage`: the gap counts per kind, and the endpoints with a gap (`coverage`:
/// `any` by default, or one kind), paged and filtered like `GET /api/v1/endpoints`.
pub async fn coverage_list(
    _caller: ApiAnalyst,
    state: web::Data<AppState>,
    params: Input<web::Query<ListParams>>,
) -> Result<HttpResponse, AppError> {
    let mut params = input(params)?.into_inner();
    if params.coverage.trim().is_empty() {
        params.coverage = "any".into();
    }
    let counts = state.db.run(|c| Ok(coverage::counts(c)?)).await?;
    let count = |k: GapKind| counts.get(k.as_str()).copied().unwrap_or(0);
    let (list, link) = page_of(&state, &params, "/api/v1/coverage").await?;
    Ok(with_link(link).json(CoverageListJson {
        counts: CoverageCountsJson {
            not_onboarded: count(GapKind::NotOnboarded),
            blind_spot: count(GapKind::BlindSpot),
            defender_flagged: count(GapKind::DefenderFlagged),
        },
        list,
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
    updated_at: Option<String>,
}

impl From<RiskFactorRow> for RiskFactorJson {
    fn from(f: RiskFactorRow) -> Self {
        Self {
            level: RiskLevel::label_of(f.level),
            source: f.source,
            summary: f.summary,
            details: f.details,
            updated_at: rfc3339(f.updated_at),
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
            let defender = crate::web::pages::endpoints::defender_view(c, id)?;
            let gap = coverage::of_many(c, &[id])?.remove(&id);
            Ok(Some((e, risk::of(c, id)?, endpoints::ips(c, id)?, endpoints::history(c, id, 100)?, defender, gap)))
        })
        .await?;
    let (e, factors, ips, history, defender, gap) = found.ok_or(AppError::NotFound)?;
    Ok(HttpResponse::Ok().json(DetailJson {
        endpoint: EndpointJson::of(e, defender, gap),
        risk_factors: factors.into_iter().map(RiskFactorJson::from).collect(),
        ip_addresses: ips.into_iter().map(IpJson::from).collect(),
        history: history.into_iter().map(HistoryJson::from).collect(),
    }))
}
