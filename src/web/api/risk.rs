//! Risk over time in the API: `GET /api/v1/endpoints/{id}/risk-history` (an endpoint's rows,
//! newest first) and `GET /api/v1/risk/summary` (endpoints per risk level, day by day).

use actix_web::{HttpResponse, web};
use chrono::NaiveDate;
use serde::{Deserialize, Serialize};

use crate::db::models::risk_history::{self, HistoryRow};
use crate::domain::risk::RiskLevel;
use crate::error::AppError;
use crate::web::auth::ApiAnalyst;
use crate::web::{AppState, Input, input};

/// The longest span a summary covers.
const MAX_DAYS: i64 = 400;
/// The most rows of one endpoint's history an answer holds.
const MAX_ROWS: i64 = 1_000;

fn date(day: i32) -> String {
    (NaiveDate::from_ymd_opt(1970, 1, 1).unwrap() + chrono::Days::new(day.max(0) as u64)).to_string()
}

fn day_of(d: NaiveDate) -> i32 {
    (d - NaiveDate::from_ymd_opt(1970, 1, 1).unwrap()).num_days() as i32
}

/// One day of an endpoint's history: its values from that day until the next row's.
#[derive(Serialize)]
struct HistoryJson {
    date: String,
    risk: &'static str,
    exposure: &'static str,
    alert: &'static str,
    vulnerabilities: i32,
    /// The highest risk factor then: its source and summary.
    why: String,
}

impl From<HistoryRow> for HistoryJson {
    fn from(h: HistoryRow) -> Self {
        Self {
            date: date(h.day),
            risk: RiskLevel::label_of(h.risk),
            exposure: RiskLevel::label_of(h.exposure),
            alert: RiskLevel::label_of(h.alert),
            vulnerabilities: h.vulns,
            why: h.why,
        }
    }
}

#[derive(Serialize)]
struct HistoryListJson {
    items: Vec<HistoryJson>,
}

pub async fn endpoint_history(
    _caller: ApiAnalyst,
    state: web::Data<AppState>,
    id: Input<web::Path<i64>>,
) -> Result<HttpResponse, AppError> {
    let id = input(id)?.into_inner();
    let rows = super::of_endpoint(&state, id, |c, id| risk_history::of_endpoint(c, id, MAX_ROWS)).await?;
    Ok(HttpResponse::Ok().json(HistoryListJson { items: rows.into_iter().map(HistoryJson::from).collect() }))
}

#[derive(Deserialize)]
pub struct SummaryQuery {
    from: Option<String>,
    to: Option<String>,
}

/// Endpoints per overall risk level at the end of one day.
#[derive(Serialize)]
struct DayJson {
    date: String,
    #[serde(rename = "None")]
    none: i64,
    #[serde(rename = "Low")]
    low: i64,
    #[serde(rename = "Medium")]
    medium: i64,
    #[serde(rename = "High")]
    high: i64,
    #[serde(rename = "Critical")]
    critical: i64,
}

#[derive(Serialize)]
struct SummaryJson {
    from: String,
    to: String,
    days: Vec<DayJson>,
}

fn parse_date(name: &str, value: &Option<String>) -> Result<Option<NaiveDate>, AppError> {
    value
        .as_deref()
        .map(str::trim)
        .filter(|v| !v.is_empty())
        .map(|v| {
            NaiveDate::parse_from_str(v, "%Y-%m-%d")
                .map_err(|_| AppError::bad_request(format!("{name} must be a date such as 2026-12-06.")))
        })
        .transpose()
}

pub async fn summary(
    _caller: ApiAnalyst,
    state: web::Data<AppState>,
    query: Input<web::Query<SummaryQuery>>,
) -> Result<HttpResponse, AppError> {
    let query = input(query)?.into_inner();
    let today = crate::risk_history::day_of(crate::db::now());
    let to = parse_date("to", &query.to)?.map_or(today, day_of);
    let from = parse_date("from", &query.from)?.map_or(to - 29, day_of);
    if from < 0 {
        return Err(AppError::bad_request("from must not be before 1970-01-01."));
    }
    if from > to {
        return Err(AppError::bad_request("from must not be after to."));
    }
    if i64::from(to - from) >= MAX_DAYS {
        return Err(AppError::bad_request(format!("A summary covers at most {MAX_DAYS} days.")));
    }
    let days = state.db.run(move |c| Ok(risk_history::level_counts_per_day(c, from, to)?)).await?;
    Ok(HttpResponse::Ok().json(SummaryJson {
        from: date(from),
        to: date(to),
        days: days
            .into_iter()
            .map(|(d, [none, low, medium, high, critical])| DayJson {
                date: date(d),
                none,
                low,
                medium,
                high,
                critical,
            })
            .collect(),
    }))
}
