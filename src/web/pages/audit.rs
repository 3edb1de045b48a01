//! The audit log page (admins).

use actix_web::{HttpResponse, web};
use askama::Template;
use serde::Deserialize;

use crate::db::models::audit::{self, AuditEntry};
use crate::error::AppError;
use crate::web::auth::AdminUser;
use crate::web::filters;
use crate::web::{AppState, Input, Layout, html, input};

const PAGE: i64 = 100;

#[derive(Template)]
#[template(path = "audit.html")]
struct AuditPage {
    layout: Layout,
    entries: Vec<AuditEntry>,
    next_before: Option<i64>,
}

#[derive(Deserialize)]
pub struct AuditQuery {
    before: Option<i64>,
}

pub async fn list(
    user: AdminUser,
    state: web::Data<AppState>,
    q: Input<web::Query<AuditQuery>>,
) -> Result<HttpResponse, AppError> {
    let q = input(q)?;
    let before = q.before.filter(|b| *b > 0);
    let entries = state.db.run(move |c| Ok(audit::page(c, before, PAGE)?)).await?;
    let next_before = (entries.len() as i64 == PAGE).then(|| entries.last().map(|e| e.id)).flatten();
    html(&AuditPage { layout: Layout::new(&user, "audit"), entries, next_before })
}
