//! The Coverage page: the endpoints Microsoft Defender for Endpoint does not protect as it could
//! (`domain::coverage`), each kind a count, its longest-open gaps, and a filter of the Endpoints
//! list (with its paging and CSV export). The dashboard shows the counts as a card.

use actix_web::{HttpResponse, web};
use askama::Template;

use crate::db::AnyConnection;
use crate::db::models::coverage::{self, GapRow};
use crate::domain::coverage::GapKind;
use crate::error::AppError;
use crate::web::auth::AnyUser;
use crate::web::filters;
use crate::web::{AppState, Layout, html};

/// How many gaps of each kind the page lists (the Endpoints list has them all).
const SHOWN: i64 = 10;

/// One kind of gap with its count and where to see all of them.
pub struct KindCount {
    pub kind: &'static str,
    pub label: &'static str,
    pub explanation: &'static str,
    pub count: i64,
    /// The Endpoints list filtered to this kind.
    pub href: String,
}

/// The gaps per kind, for the page and the dashboard card.
pub fn kind_counts(c: &mut AnyConnection) -> crate::db::DbResult<Vec<KindCount>> {
    let counts = coverage::counts(c)?;
    Ok(GapKind::ALL
        .into_iter()
        .map(|k| KindCount {
            kind: k.as_str(),
            label: k.label(),
            explanation: k.explanation(),
            count: counts.get(k.as_str()).copied().unwrap_or(0),
            href: format!("/endpoints?coverage={}", k.as_str()),
        })
        .collect())
}

struct KindSection {
    count: KindCount,
    /// The longest-open gaps: (gap, host name, IP).
    oldest: Vec<(GapRow, String, String)>,
}

#[derive(Template)]
#[template(path = "coverage.html")]
struct CoveragePage {
    layout: Layout,
    total: i64,
    sections: Vec<KindSection>,
    blind_after_days: i64,
    level: &'static str,
}

/// `GET /coverage`.
pub async fn show(user: AnyUser, state: web::Data<AppState>) -> Result<HttpResponse, AppError> {
    let sections = state
        .db
        .run(|c| {
            let mut out = Vec::new();
            for count in kind_counts(c)? {
                let oldest = coverage::oldest(c, count.kind, SHOWN)?;
                out.push(KindSection { count, oldest });
            }
            Ok(out)
        })
        .await?;
    let policy = state.defender.coverage();
    html(&CoveragePage {
        layout: Layout::new(&user, "coverage"),
        total: sections.iter().map(|s| s.count.count).sum(),
        sections,
        blind_after_days: policy.blind_after_days,
        level: policy.level.as_str(),
    })
}
