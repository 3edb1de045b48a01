//! The filtered inventory as CSV (`GET /endpoints.csv` for a signed-in person, `GET
//! /api/v1/endpoints.csv` for an API token): the same filters as the Endpoints list, streamed page
//! by page in the list's order, so that memory does not grow with the inventory.
//!
//! Cells a spreadsheet would take for a formula (starting with `=`, `+`, `-`, `@`, a tab or a
//! carriage return) are made inert with a leading `'`, as OWASP's "CSV Injection" page
//! recommends: host names, user agents and DHCP fields come from the network and from Defender.

use actix_web::HttpResponse;
use actix_web::web::Bytes;

use crate::db::Db;
use crate::db::models::endpoint_list::{self, EndpointQuery};
use crate::db::models::endpoints::Endpoint;
use crate::domain::profiles::MatchScore;
use crate::domain::risk::RiskLevel;

/// Rows read per page while streaming.
const PAGE: i64 = 500;

const HEADER: [&str; 15] = [
    "id",
    "hostname",
    "fqdn",
    "ip",
    "mac",
    "mac_vendor",
    "os_name",
    "os_version",
    "os_build",
    "profile",
    "match_score",
    "risk",
    "sources",
    "first_seen",
    "last_seen",
];

/// A cell as a spreadsheet may open it: never a formula.
fn inert(cell: &str) -> std::borrow::Cow<'_, str> {
    match cell.chars().next() {
        Some('=' | '+' | '-' | '@' | '\t' | '\r') => format!("'{cell}").into(),
        _ => cell.into(),
    }
}

fn time(t: i64) -> String {
    crate::web::filters::rfc3339(t).unwrap_or_default()
}

/// The CSV lines of some endpoints (and the header first).
fn lines(endpoints: &[Endpoint], header: bool) -> Result<Bytes, csv::Error> {
    let mut w = csv::Writer::from_writer(Vec::with_capacity(endpoints.len() * 160));
    if header {
        w.write_record(HEADER)?;
    }
    for e in endpoints {
        let score = MatchScore::from_i16(e.match_score).map(|s| s.as_str()).unwrap_or("");
        let row = [
            e.id.to_string(),
            e.hostname.clone(),
            e.fqdn.clone(),
            e.ip.clone(),
            e.mac.clone().unwrap_or_default(),
            e.mac_vendor.clone(),
            e.os_name.clone(),
            e.os_version.clone(),
            e.os_build.clone(),
            e.profile.clone(),
            score.to_owned(),
            RiskLevel::label_of(e.risk_level).to_owned(),
            e.sources.replace(',', ";"),
            time(e.first_seen),
            time(e.last_seen),
        ];
        w.write_record(row.iter().map(|c| inert(c).into_owned()))?;
    }
    w.into_inner().map(Bytes::from).map_err(|e| e.into_error().into())
}

/// The response: every endpoint the query's filters match, in its order, from its position on.
pub fn endpoints_csv(db: Db, query: EndpointQuery) -> HttpResponse {
    let first = EndpointQuery { limit: PAGE, ..query };
    let pages = futures_util::stream::unfold(Some((first, true)), move |next| {
        let db = db.clone();
        async move {
            let (q, header) = next?;
            let read = q.clone();
            let page = match db.run(move |c| Ok(endpoint_list::list(c, &read)?)).await {
                Ok(page) => page,
                Err(e) => return Some((Err(std::io::Error::other(e.to_string())), None)),
            };
            let after = page.next.clone();
            let chunk = lines(&page.items, header).map_err(std::io::Error::other);
            Some((chunk, after.map(|a| (EndpointQuery { after: Some(a), ..q }, false))))
        }
    });
    HttpResponse::Ok()
        .content_type("text/csv; charset=utf-8")
        .insert_header(("Content-Disposition", "attachment; filename=\"endpoints.csv\""))
        .streaming(pages)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn formulas_are_made_inert() {
        assert_eq!(inert("=HYPERLINK(\"http://x\")"), "'=HYPERLINK(\"http://x\")");
        assert_eq!(inert("+1"), "'+1");
        assert_eq!(inert("-2"), "'-2");
        assert_eq!(inert("@SUM(A1)"), "'@SUM(A1)");
        assert_eq!(inert("\tx"), "'\tx");
        assert_eq!(inert("desktop-1"), "desktop-1");
        assert_eq!(inert(""), "");
    }
}
