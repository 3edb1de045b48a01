//! The Endpoints list, the Endpoint Summary page with its tabs, and the CSV upload.

use actix_multipart::Multipart;
use actix_web::{HttpRequest, HttpResponse, web};
use askama::Template;
use futures_util::StreamExt;
use serde::Deserialize;

use std::sync::Arc;

use super::audit;
use crate::db::models::defender_machines::{self, DefenderMachine};
use crate::db::models::endpoint_list::{EndpointPage, SortKey};
use crate::db::models::endpoints::{self, Endpoint, EndpointIp, HistoryEntry};
use crate::db::models::risk::{self, RiskFactorRow};
use crate::defender::actions::Offered;
use crate::domain::coverage::GapKind;
use crate::domain::observations::MAX_BATCH;
use crate::domain::risk::RiskLevel;
use crate::error::AppError;
use crate::inventory::{self, IngestReport, RawBatch};
use crate::web::auth::{AnyUser, CurrentUser, OperatorUser};
use crate::web::cache::{PerView, Rendered, UntilChanged};
use crate::web::filters;
use crate::web::htmx::Htmx;
use crate::web::pages::actions::ActionButtons;

mod list_view;
mod params;
use crate::web::{AppState, Input, Layout, html, html_text, input};
pub use list_view::{Facets, ListCache, list_view};
pub use params::ListParams;

#[derive(Template)]
#[template(path = "endpoints/list.html", blocks = ["results"])]
struct ListPage {
    layout: Layout,
    params: ListParams,
    page: Arc<EndpointPage>,
    total: i64,
    next_link: Option<String>,
    first_link: Option<String>,
    /// The same filters as CSV.
    csv_link: String,
    facets: Arc<Facets>,
    sorts: [SortKey; 5],
    risks: [&'static str; 5],
    /// The coverage filter's choices: (value, label).
    coverages: [(&'static str, &'static str); 4],
}

/// The Endpoints list's coverage filter: any gap, or one kind (`domain::coverage`).
pub fn coverage_choices() -> [(&'static str, &'static str); 4] {
    let [a, b, c] = GapKind::ALL.map(|k| (k.as_str(), k.label()));
    [("any", "Any coverage gap"), a, b, c]
}

/// `GET /endpoints.csv`: the list's filtered endpoints as CSV (the page's "Export CSV").
pub async fn export_csv(
    _user: AnyUser,
    state: web::Data<AppState>,
    params: Input<web::Query<ListParams>>,
) -> Result<HttpResponse, AppError> {
    let query = input(params)?.to_query(50)?;
    Ok(crate::web::export::endpoints_csv(state.db.clone(), query))
}

pub async fn list(
    user: AnyUser,
    req: HttpRequest,
    state: web::Data<AppState>,
    params: Input<web::Query<ListParams>>,
) -> Result<HttpResponse, AppError> {
    let params = input(params)?;
    let params = params.into_inner();
    let query = params.to_query(50)?;
    let (page, total, facets) = list_view(&state, query.clone(), true).await?;
    let next_link = page.next.as_ref().map(|c| format!("/endpoints?{}", params.with_after(Some(&c.encode()))));
    let first_link = query.after.is_some().then(|| format!("/endpoints?{}", params.with_after(None)));
    let csv_link = format!("/endpoints.csv?{}", params.with_after(None));
    let view = ListPage {
        layout: Layout::new(&user, "endpoints"),
        params,
        page,
        total,
        next_link,
        first_link,
        csv_link,
        facets: facets.unwrap_or_default(),
        sorts: SortKey::ALL,
        risks: RiskLevel::ALL.map(RiskLevel::as_str),
        coverages: coverage_choices(),
    };
    if Htmx::of(&req).wants_fragment() {
        return html(&view.as_results());
    }
    html(&view)
}

const TABS: [(&str, &str); 4] =
    [("summary", "Summary"), ("risk", "Risk"), ("profile", "Profile data"), ("actions", "Actions")];

/// What the Endpoint Summary page and its tabs show of one endpoint from the database, read in
/// one snapshot and reused while the database is unchanged (`AppState::endpoint_pages`).
#[derive(Debug)]
pub struct EndpointData {
    e: Endpoint,
    factors: Vec<RiskFactorRow>,
    others: Vec<crate::modeling::OtherProfile>,
    ips: Vec<EndpointIp>,
    history: Vec<HistoryEntry>,
    defender: Option<DefenderView>,
    actions: Vec<crate::db::models::actions::ActionRow>,
    /// Its risk over time, newest first (the Risk tab's timeline).
    risk_history: Vec<crate::db::models::risk_history::HistoryRow>,
    /// The Defender actions its machine supports as stored (for the people who may act): worked
    /// out once per read, not at every view.
    offered: Offered,
}

/// Endpoint pages read since the last commit (see [`UntilChanged`]).
pub type EndpointPages = UntilChanged<i64, Arc<EndpointData>>;
/// How many endpoints' pages are kept: about 32 MiB at most ([`EndpointData::KEPT_AT_MOST`] of debug text each).
pub const ENDPOINT_PAGES_KEPT: usize = 512;

impl EndpointData {
    /// The most an endpoint's data may hold to be kept. Most hold a few kilobytes; one whose
    /// fifty history rows each carry a long user agent, or whose Defender machine has huge
    /// fields, can hold hundreds and is read at each view rather than kept.
    pub const KEPT_AT_MOST: usize = 64 * 1024;
}

/// The endpoint's data as the database holds it now: kept from an earlier view when nothing
/// was committed since, else read (and kept).
async fn endpoint_data(state: &AppState, id: i64) -> Result<Arc<EndpointData>, AppError> {
    let version = crate::web::cache::data_version(&state.db).await;
    let turn = match state.endpoint_pages.get_or_turn(&id, version).await {
        Ok(kept) => return Ok(kept),
        Err(turn) => turn,
    };
    let data = state
        .db
        .read(move |c| {
            let Some(e) = endpoints::find(c, id)? else {
                return Ok(None);
            };
            let defender = defender_view(c, id)?;
            Ok(Some(EndpointData {
                others: serde_json::from_str(&e.other_profiles).unwrap_or_default(),
                offered: defender.as_ref().map(|d| crate::defender::actions::offered(&d.m)).unwrap_or_default(),
                defender,
                actions: crate::db::models::actions::of_endpoint(c, id, 50)?,
                ips: endpoints::ips(c, id)?,
                history: endpoints::history(c, id, 50)?,
                factors: risk::of(c, id)?,
                risk_history: crate::db::models::risk_history::of_endpoint(c, id, 30)?,
                e,
            }))
        })
        .await?
        .ok_or(AppError::NotFound)?;
    let data = Arc::new(data);
    let keep = |_: &i64, data: &Arc<EndpointData>| crate::web::cache::debug_fits(data, EndpointData::KEPT_AT_MOST);
    state.endpoint_pages.end_read(id, version, data.clone(), keep, turn);
    Ok(data)
}

#[derive(Template)]
#[template(path = "endpoints/detail.html", blocks = ["tab_content"])]
struct DetailPage {
    layout: Layout,
    /// The endpoint's data; the template reaches its fields through `Deref`.
    data: Arc<EndpointData>,
    tab: &'static str,
    tabs: [(&'static str, &'static str); 4],
    /// The machine actions this person may start here (none without a Defender machine).
    buttons: crate::web::pages::actions::ActionButtons,
    /// Defender's own list of the machine's actions (Actions tab), or why it could not be read.
    defender_actions: Option<Result<Vec<crate::defender::MachineAction>, String>>,
}

/// The endpoint's Defender machine with its portal links (built for the configured cloud).
#[derive(Debug)]
pub struct DefenderView {
    pub m: DefenderMachine,
    /// What Defender's machine actions say of its isolation.
    pub isolation: crate::defender::machine::Isolation,
    pub overview: String,
    pub alerts: String,
    pub vulnerabilities: String,
}

/// A day of the Risk tab's timeline as `2026-12-06`.
pub fn history_day(day: &i32) -> String {
    crate::web::filters::format_utc(i64::from(*day) * 86_400).get(..10).unwrap_or_default().to_owned()
}

impl DefenderView {
    pub fn exposure(&self) -> &'static str {
        RiskLevel::label_of(self.m.top_vuln_severity)
    }
    pub fn alert_level(&self) -> &'static str {
        RiskLevel::label_of(self.m.top_alert_severity)
    }
    /// Risk factors reported by Defender exist (the Summary tab then links to the overview too).
    pub fn has_risk(&self) -> bool {
        self.m.top_vuln_severity > 0 || self.m.top_alert_severity > 0
    }
}

/// The Defender view of an endpoint, when it is linked to a machine.
pub fn defender_view(c: &mut crate::db::AnyConnection, endpoint_id: i64) -> anyhow::Result<Option<DefenderView>> {
    Ok(defender_views(c, &[endpoint_id])?.pop().flatten())
}

/// [`defender_view`] of several endpoints, in their order: one query for the machines, the
/// settings read once.
pub fn defender_views(
    c: &mut crate::db::AnyConnection,
    endpoint_ids: &[i64],
) -> anyhow::Result<Vec<Option<DefenderView>>> {
    use crate::defender::Cloud;
    use crate::defender::links::{DeviceTab, PortalLinks};
    let machines = defender_machines::of_endpoints(c, endpoint_ids)?;
    if machines.iter().all(Option::is_none) {
        return Ok(machines.into_iter().map(|_| None).collect());
    }
    let config = crate::defender::settings::load(c)?;
    let cloud = config.as_ref().and_then(|c| Cloud::parse(&c.cloud)).unwrap_or_default();
    let tenant = config.as_ref().map(|c| c.tenant_id.clone());
    let links = PortalLinks::for_cloud(cloud);
    Ok(machines
        .into_iter()
        .map(|m| {
            let m = m?;
            let link = |tab| links.device(&m.machine_id, tab, tenant.as_deref()).unwrap_or_default();
            Some(DefenderView {
                isolation: crate::defender::machine::Isolation::stored(&m),
                overview: link(DeviceTab::Overview),
                alerts: link(DeviceTab::Alerts),
                vulnerabilities: link(DeviceTab::Vulnerabilities),
                m,
            })
        })
        .collect())
}

impl std::ops::Deref for DetailPage {
    type Target = EndpointData;
    fn deref(&self) -> &EndpointData {
        &self.data
    }
}

impl DetailPage {
    /// The risk factors shown as subtabs of their own: all but the two Defender reports, which
    /// the Microsoft Defender subtab shows (once) when the endpoint has a machine.
    fn shown_factors(&self) -> Vec<&RiskFactorRow> {
        use crate::defender::import::{ALERTS_SOURCE, EXPOSURE_SOURCE};
        let in_subtab = |f: &&RiskFactorRow| {
            self.defender.is_some() && [EXPOSURE_SOURCE, ALERTS_SOURCE].contains(&f.source.as_str())
        };
        self.factors.iter().filter(|f| !in_subtab(f)).collect()
    }
    fn open_action(&self) -> Option<&crate::db::models::actions::ActionRow> {
        self.actions.iter().find(|a| a.is_open())
    }
    /// Investigation packages were collected from here (the Microsoft Defender subtab lists them).
    fn has_packages(&self) -> bool {
        self.actions.iter().any(|a| a.has_package())
    }
    fn score(&self) -> &'static str {
        crate::domain::profiles::MatchScore::from_i16(self.e.match_score).map(|s| s.as_str()).unwrap_or("")
    }
    fn title(&self) -> String {
        self.e.title()
    }
}

/// The longest an Actions tab waits for Defender's list of the device's actions.
const ACTIONS_LISTING_WAIT: std::time::Duration = std::time::Duration::from_secs(3);

async fn load_detail(user: &CurrentUser, state: &AppState, id: i64, tab: &'static str) -> Result<DetailPage, AppError> {
    let data = endpoint_data(state, id).await?;
    // Buttons only for roles allowed to act, on supported, onboarded machines.
    let can_act = user.can(crate::auth::Role::Operator);
    let offered = if can_act { data.offered.clone() } else { Vec::new() };
    let buttons = ActionButtons::offering(id, data.e.title(), offered);
    let defender_actions = match (&data.defender, tab) {
        // A page does not wait on the client's rate limiter (up to a minute when the listing's
        // budget is used up): it shows what it has and says why.
        (Some(d), "actions") => Some(
            match tokio::time::timeout(ACTIONS_LISTING_WAIT, state.defender.machine_actions(&d.m.machine_id)).await {
                Ok(listed) => listed.map_err(|e| e.to_string()),
                Err(_) => Err("Microsoft Defender's actions for this device could not be listed right now: the \
                               integration's rate limit for that call is used up, or Defender is slow. Reload in a \
                               minute; the actions requested here are shown above."
                    .into()),
            },
        ),
        _ => None,
    };
    Ok(DetailPage { layout: Layout::new(user, "endpoints"), data, tab, tabs: TABS, buttons, defender_actions })
}

#[derive(Deserialize)]
pub struct TabQuery {
    tab: Option<String>,
}

pub async fn detail(
    user: AnyUser,
    state: web::Data<AppState>,
    id: Input<web::Path<i64>>,
    q: Input<web::Query<TabQuery>>,
) -> Result<HttpResponse, AppError> {
    let id = input(id)?;
    let q = input(q)?;
    view(&user, &state, id.into_inner(), q.tab.as_deref().unwrap_or("summary"), true).await
}

pub async fn tab(
    user: AnyUser,
    state: web::Data<AppState>,
    path: Input<web::Path<(i64, String)>>,
) -> Result<HttpResponse, AppError> {
    let path = input(path)?;
    let (id, tab) = path.into_inner();
    view(&user, &state, id, &tab, false).await
}

/// Endpoint pages as rendered for a person, whole or one tab's content (see [`Rendered`]).
pub type EndpointViews = UntilChanged<ViewKey, Arc<Rendered>>;
/// How many renderings are kept: 16 MiB at most ([`Rendered::KEPT_AT_MOST`] each).
pub const ENDPOINT_VIEWS_KEPT: usize = 256;

/// Whose view of which page: it shows the person's name and role, and the actions their role
/// may start.
#[derive(Clone, PartialEq, Eq, Hash)]
pub struct ViewKey {
    endpoint: i64,
    tab: &'static str,
    /// The whole page, or only the tab's content.
    whole: bool,
    user: i64,
    role: crate::auth::Role,
}

/// The Endpoint Summary page (`whole`) or one tab's content, for this person: kept from an
/// earlier view while the database is unchanged, with this view's own CSRF token and form key
/// put in, else rendered (and kept). The Actions tab asks Defender at every view: never kept.
async fn view(user: &CurrentUser, state: &AppState, id: i64, tab: &str, whole: bool) -> Result<HttpResponse, AppError> {
    let tab = TABS.iter().find(|(t, _)| *t == tab).map(|(t, _)| *t).ok_or(AppError::NotFound)?;
    let render = |page: &DetailPage| {
        let text = if whole { page.render() } else { page.as_tab_content().render() };
        text.map_err(|e| AppError::Internal(e.into()))
    };
    let version = crate::web::cache::data_version(&state.db).await.filter(|_| tab != "actions");
    let Some(version) = version else {
        let page = load_detail(user, state, id, tab).await?;
        return Ok(html_text(render(&page)?));
    };
    let key = ViewKey { endpoint: id, tab, whole, user: user.id, role: user.role };
    let kept = match state.endpoint_views.get(&key, version) {
        Some(kept) => kept,
        None => {
            let stand_ins = CurrentUser { csrf: PerView::CsrfToken.stand_in().to_owned(), ..user.clone() };
            let mut page = load_detail(&stand_ins, state, id, tab).await?;
            page.buttons.key = PerView::FormKey.stand_in().to_owned();
            let kept = Arc::new(Rendered::new(&render(&page)?));
            if kept.bytes() <= Rendered::KEPT_AT_MOST {
                state.endpoint_views.put(key, version, kept.clone());
            }
            kept
        }
    };
    Ok(html_text(kept.fill(&user.csrf, &ActionButtons::new_key())))
}

/// The CSV header the upload expects (the same fields as the JSON observations).
pub const CSV_COLUMNS: [&str; 7] =
    ["mac", "ip", "hostname", "dhcp_vendor_class", "dhcp_params", "user_agent", "seen_at"];
const MAX_CSV_BYTES: usize = 8 * 1024 * 1024;

#[derive(Template)]
#[template(path = "endpoints/_import_report.html")]
struct ImportReport {
    report: Option<IngestReport>,
    error: Option<String>,
}

/// CSV upload (htmx, multipart): valid rows are imported, each bad row is reported with its
/// line number; a file that cannot be read at all changes nothing.
pub async fn import_csv(
    user: OperatorUser,
    state: web::Data<AppState>,
    form: Input<Multipart>,
) -> Result<HttpResponse, AppError> {
    let mut form = input(form)?;
    let mut data = Vec::new();
    let mut found = false;
    while let Some(field) = form.next().await {
        let mut field = field.map_err(|e| AppError::bad_request(format!("The upload could not be read: {e}")))?;
        if field.name() != Some("file") {
            continue;
        }
        found = true;
        while let Some(chunk) = field.next().await {
            let chunk = chunk.map_err(|e| AppError::bad_request(format!("The upload could not be read: {e}")))?;
            if data.len() + chunk.len() > MAX_CSV_BYTES {
                return Err(AppError::PayloadTooLarge);
            }
            data.extend_from_slice(&chunk);
        }
    }
    let outcome =
        if !found || data.is_empty() { Err("Choose a CSV file to upload.".to_owned()) } else { parse_csv(&data) };
    let items = match outcome {
        Ok(items) => items,
        Err(error) => {
            audit(&state.db, &user.username, "endpoints.import_csv", "", "refused", &error).await?;
            let mut res = html(&ImportReport { report: None, error: Some(error) })?;
            *res.status_mut() = actix_web::http::StatusCode::BAD_REQUEST;
            return Ok(res);
        }
    };
    let report = inventory::ingest(&state.db, &state.modeler, items, "csv").await?;
    let details = format!(
        "{} rows: {} created, {} updated, {} rejected",
        report.received,
        report.created,
        report.updated,
        report.rejected.len()
    );
    audit(&state.db, &user.username, "endpoints.import_csv", "", "success", &details).await?;
    html(&ImportReport { report: Some(report), error: None })
}

/// Reads the CSV: a header naming some of [`CSV_COLUMNS`], then one observation per line.
pub(crate) fn parse_csv(data: &[u8]) -> Result<RawBatch, String> {
    let text = std::str::from_utf8(data).map_err(|_| "The file is not UTF-8 text.".to_owned())?;
    let text = text.strip_prefix('\u{feff}').unwrap_or(text);
    let mut reader = csv::ReaderBuilder::new().flexible(true).trim(csv::Trim::All).from_reader(text.as_bytes());
    let headers = reader.headers().map_err(|e| format!("The header line could not be read: {e}"))?.clone();
    let columns: Vec<Option<usize>> =
        headers.iter().map(|h| CSV_COLUMNS.iter().position(|c| c.eq_ignore_ascii_case(h))).collect();
    if let Some(unknown) = headers.iter().zip(&columns).find(|(_, c)| c.is_none()).map(|(h, _)| h) {
        return Err(format!("Unknown column {unknown:?}. The columns are: {}.", CSV_COLUMNS.join(", ")));
    }
    if !columns.iter().any(|c| matches!(c, Some(0) | Some(1))) {
        return Err("The header must name a mac or an ip column.".into());
    }
    let mut items = Vec::new();
    for (n, record) in reader.records().enumerate() {
        let line = n + 2;
        if items.len() >= MAX_BATCH {
            return Err(format!("The file has more than {MAX_BATCH} rows; split it into several uploads."));
        }
        let item = match record {
            Err(e) => Err(format!("line could not be read: {e}")),
            Ok(r) if r.len() != headers.len() => {
                Err(format!("has {} fields, the header has {}", r.len(), headers.len()))
            }
            Ok(r) => {
                let mut fields: [Option<String>; 7] = Default::default();
                for (value, col) in r.iter().zip(&columns) {
                    if let Some(c) = col {
                        fields[*c] = Some(value.to_owned()).filter(|v| !v.is_empty());
                    }
                }
                let [mac, ip, hostname, dhcp_vendor_class, dhcp_params, user_agent, seen_at] = fields;
                Ok(crate::domain::observations::RawObservation {
                    mac,
                    ip,
                    hostname,
                    dhcp_vendor_class,
                    dhcp_params,
                    user_agent,
                    seen_at,
                })
            }
        };
        items.push((line, item));
    }
    if items.is_empty() {
        return Err("The file has a header but no rows.".into());
    }
    Ok(items)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn csv_rows_are_read_by_header_name() {
        let items = parse_csv(b"ip,mac,hostname\n10.0.0.1,aa:bb:cc:dd:ee:01,pc1\n,,\n").unwrap();
        assert_eq!(items.len(), 2);
        let first = items[0].1.as_ref().unwrap();
        assert_eq!(first.mac.as_deref(), Some("aa:bb:cc:dd:ee:01"));
        assert_eq!(items[1].0, 3);
    }

    #[test]
    fn csv_with_unknown_columns_is_refused_whole() {
        assert!(parse_csv(b"mac,colour\naa:bb:cc:dd:ee:01,red\n").unwrap_err().contains("colour"));
        assert!(parse_csv(b"hostname\npc1\n").unwrap_err().contains("mac or an ip"));
    }
}
