//! The dashboard: the inventory at a glance.

use actix_web::{HttpResponse, web};
use askama::Template;

use crate::db::models::endpoints;
use crate::error::AppError;
use crate::web::auth::AnyUser;
use crate::web::{AppState, Layout, html};

#[derive(Template)]
#[template(path = "dashboard.html")]
struct DashboardPage {
    layout: Layout,
    total: i64,
    sources: Vec<String>,
}

pub async fn show(user: AnyUser, state: web::Data<AppState>) -> Result<HttpResponse, AppError> {
    let (total, sources) = state
        .db
        .run(|c| Ok((endpoints::count_all(c)?, endpoints::distinct_sources(c)?)))
        .await?;
    html(&DashboardPage {
        layout: Layout::new(&user, "dashboard"),
        total,
        sources,
    })
}
