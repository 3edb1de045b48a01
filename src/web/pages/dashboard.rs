//! The dashboard: the inventory at a glance, as bar charts drawn on the server (SVG, no
//! script), each bar a link to the Endpoints list filtered to it.

use actix_web::{HttpResponse, web};
use askama::Template;

use crate::db::models::events::{self, Event};
use crate::db::models::{endpoints, profiles, risk};
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
}

pub async fn show(user: AnyUser, state: web::Data<AppState>) -> Result<HttpResponse, AppError> {
    let today = crate::db::now() / 86_400;
    let (total, risk_counts, profile_counts, sources, new_days, changes, coverage) = state
        .db
        .run(move |c| {
            let since = (today - NEW_DAYS + 1) * 86_400;
            Ok((
                endpoints::count_all(c)?,
                risk::level_counts(c)?,
                profiles::endpoint_counts(c)?,
                endpoints::count_by_source(c)?,
                endpoints::first_seen_since(c, since)?,
                events::recent(c, crate::modeling::PROFILE_CHANGED, 10)?,
                crate::web::pages::coverage::kind_counts(c)?,
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
            .map(|d| {
                let day = today - NEW_DAYS + 1 + d;
                let n = new_days.iter().filter(|t| **t / 86_400 == day).count() as i64;
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
    })
}
