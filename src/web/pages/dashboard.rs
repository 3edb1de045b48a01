//! The dashboard: the inventory at a glance, as bar charts drawn on the server (SVG, no
//! script), each bar a link to the Endpoints list filtered to it.

use actix_web::{HttpResponse, web};
use askama::Template;

use crate::db::models::events::{self, Event};
use crate::db::models::{endpoints, profiles, risk, risk_history};
use crate::error::AppError;
use crate::web::auth::AnyUser;
use crate::web::filters;
use crate::web::{AppState, Layout, html};

/// Width of the longest bar, in SVG units.
const BAR_MAX: i64 = 360;
const NEW_DAYS: i64 = 14;

pub struct Bar {
    pub label: String,
    pub count: i64,
    pub width: i64,
    pub href: String,
    pub class: String,
}

fn bars(items: Vec<(String, i64, String, String)>) -> Vec<Bar> {
    let max = items.iter().map(|i| i.1).max().unwrap_or(0).max(1);
    items
        .into_iter()
        .map(|(label, count, href, class)| Bar {
            width: (count * BAR_MAX / max).max(i64::from(count > 0)),
            label,
            count,
            href,
            class,
        })
        .collect()
}

/// One block of the stacked risk chart: a level's count on a day, in SVG units.
pub struct Segment {
    pub x: i64,
    pub y: i64,
    pub w: i64,
    pub h: i64,
    pub class: String,
    pub title: String,
}

/// Risk levels per day as stacked columns (Critical on top), drawn on the server.
pub struct Stacked {
    pub segments: Vec<Segment>,
    /// The highest column's total, for the axis.
    pub max: i64,
    pub first_day: String,
    pub last_day: String,
}

/// The plot area of the stacked chart, in SVG units (the viewBox is 620 × 190).
const PLOT: (i64, i64, i64, i64) = (44, 8, 570, 150);

fn date(day: i32) -> String {
    chrono::DateTime::from_timestamp(i64::from(day) * 86_400, 0)
        .map(|t| t.format("%Y-%m-%d").to_string())
        .unwrap_or_default()
}

fn stacked(days: &[(i32, [i64; 5])]) -> Stacked {
    let (left, top, width, height) = PLOT;
    let max = days.iter().map(|(_, c)| c.iter().sum::<i64>()).max().unwrap_or(0).max(1);
    let column = (width / days.len().max(1) as i64).max(1);
    let mut segments = Vec::new();
    for (i, (day, counts)) in days.iter().enumerate() {
        let x = left + i as i64 * column;
        let mut y = top + height;
        for (level, n) in counts.iter().enumerate() {
            if *n == 0 {
                continue;
            }
            let h = (n * height / max).max(1);
            y -= h;
            let label = crate::domain::risk::RiskLevel::label_of(level as i16);
            segments.push(Segment {
                x,
                y,
                w: (column - 1).max(1),
                h,
                class: format!("risk-{}", label.to_lowercase()),
                title: format!("{}: {n} {label}", date(*day)),
            });
        }
    }
    Stacked {
        segments,
        max,
        first_day: days.first().map(|d| date(d.0)).unwrap_or_default(),
        last_day: days.last().map(|d| date(d.0)).unwrap_or_default(),
    }
}

fn q(s: &str) -> String {
    url::form_urlencoded::byte_serialize(s.as_bytes()).collect()
}

#[derive(Template)]
#[template(path = "dashboard.html")]
struct DashboardPage {
    layout: Layout,
    total: i64,
    by_risk: Vec<Bar>,
    by_profile: Vec<Bar>,
    by_source: Vec<Bar>,
    new_per_day: Vec<Bar>,
    changes: Vec<Event>,
    defender: crate::defender::service::Status,
    coverage: Vec<crate::web::pages::coverage::KindCount>,
    /// Risk levels per day over `trend_days`.
    trend: Stacked,
    trend_days: i32,
    /// The endpoints whose risk rose most in the last 7 days: (id, host, then, now).
    risers: Vec<(i64, String, i16, i16)>,
}

#[derive(serde::Deserialize)]
pub struct DashboardQuery {
    /// The risk trend's span: 30 (default) or 90 days.
    days: Option<i32>,
}

pub async fn show(
    user: AnyUser,
    state: web::Data<AppState>,
    query: crate::web::Input<web::Query<DashboardQuery>>,
) -> Result<HttpResponse, AppError> {
    let trend_days = crate::web::input(query)?.days.unwrap_or(30);
    if ![30, 90].contains(&trend_days) {
        return Err(AppError::bad_request("The risk trend shows 30 or 90 days."));
    }
    let today = crate::db::now() / 86_400;
    let day = today as i32;
    let (total, risk_counts, profile_counts, sources, new_days, changes, coverage, trend, risers) = state
        .db
        .run(move |c| {
            let since = (today - NEW_DAYS + 1) * 86_400;
            Ok((
                endpoints::count_all(c)?,
                risk::level_counts(c)?,
                profiles::endpoint_counts(c)?,
                endpoints::count_by_source(c)?,
                endpoints::first_seen_per_day(c, since, NEW_DAYS)?,
                events::recent(c, crate::modeling::PROFILE_CHANGED, 10)?,
                crate::web::pages::coverage::kind_counts(c)?,
                risk_history::level_counts_per_day(c, day - trend_days + 1, day)?,
                risk_history::risers(c, day - 7, 10)?,
            ))
        })
        .await?;
    let by_risk = bars(
        (0..5i16)
            .rev()
            .map(|l| {
                let label = crate::domain::risk::RiskLevel::label_of(l);
                let n = risk_counts.iter().find(|(x, _)| *x == l).map(|x| x.1).unwrap_or(0);
                (label.to_owned(), n, format!("/endpoints?risk={label}"), format!("risk-{}", label.to_lowercase()))
            })
            .collect(),
    );
    let mut profile_counts: Vec<(String, i64)> = profile_counts;
    profile_counts.sort_by(|a, b| b.1.cmp(&a.1).then(a.0.cmp(&b.0)));
    let by_profile = bars(
        profile_counts
            .into_iter()
            .take(10)
            .map(|(p, n)| {
                let label = if p.is_empty() { "Not Profiled".to_owned() } else { p.clone() };
                let href = if p.is_empty() {
                    "/endpoints?risk=Low".to_owned()
                } else {
                    format!("/endpoints?profile={}", q(&p))
                };
                (label, n, href, "bar".to_owned())
            })
            .collect(),
    );
    let by_source = bars(
        sources
            .into_iter()
            .map(|(s, n)| (s.clone(), n, format!("/endpoints?source={}", q(&s)), "bar".into()))
            .collect(),
    );
    let new_per_day = bars(
        (0..NEW_DAYS)
            .zip(new_days)
            .map(|(d, n)| {
                let day = today - NEW_DAYS + 1 + d;
                let label = chrono::DateTime::from_timestamp(day * 86_400, 0)
                    .map(|t| t.format("%b %d").to_string())
                    .unwrap_or_default();
                (label, n, "/endpoints?sort=first_seen".to_owned(), "bar".to_owned())
            })
            .collect(),
    );
    let defender = state.defender.status().await?;
    html(&DashboardPage {
        layout: Layout::new(&user, "dashboard"),
        total,
        by_risk,
        by_profile,
        by_source,
        new_per_day,
        changes,
        defender,
        coverage,
        trend: stacked(&trend),
        trend_days,
        risers,
    })
}
