//! The Defender API surface under `/api` and `/api/v1.0`: the request pipeline every call goes
//! through, OData envelopes and paging, and the machine, machine-action, alert, vulnerability
//! and software routes. Export assessment lives in `export.rs`, advanced hunting in
//! `hunting.rs`.
//!
//! Pipeline (in [`serve`]): count the call → bearer token (401) → audience and role (403) →
//! documented rate limit for (client, API) (429 + `Retry-After`) → fault rules (delay, 429,
//! 5xx) → handler → body faults (wrong types, corruption, truncation, stall) → count status.
//!
//! Long because every route is written against the one request pipeline at its top (token,
//! roles, rate limits, faults, OData options); each route's own part is short.

use crate::ids::is_guid;
use std::sync::Arc;
use std::time::Duration;

use actix_web::http::StatusCode;
use actix_web::http::header::{self, HeaderValue};
use actix_web::web::Bytes;
use actix_web::{HttpRequest, HttpResponse, web};
use chrono::{DateTime, Utc};
use serde::Serialize;
use serde_json::Value;

use super::actions::{Action, ActionType};
use super::faults::{self, Fired};
use super::limits::{Period, Verdict};
use super::odata::{self, Field, QueryOptions};
use super::rng::random_guid;
use super::tenant::{Alert, Machine, Tenant, Vulnerability};
use super::views::{
    ActionView, AlertView, AssetVulnerabilityView, LeftOut, MachineReferenceView, MachineView, SoftwareView,
    VulnerabilityView,
};
use super::{MDE_AUDIENCE, SimState, XDR_AUDIENCE, jwt, lock};

pub const ODATA_CONTENT_TYPE: &str = "application/json; odata.metadata=minimal; odata.streaming=true; charset=utf-8";

const MACHINE_READ: &[&str] = &["Machine.Read.All", "Machine.ReadWrite.All"];
const ALERT_READ: &[&str] = &["Alert.Read.All", "Alert.ReadWrite.All"];
const VULN_READ: &[&str] = &["Vulnerability.Read.All"];
const SOFTWARE_READ: &[&str] = &["Software.Read.All"];

/// Every API the simulator serves, with its documented roles and rate limits.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Api {
    ListMachines,
    GetMachine,
    ListMachineActions,
    GetMachineAction,
    Isolate,
    Unisolate,
    RunAntiVirusScan,
    RestrictCodeExecution,
    UnrestrictCodeExecution,
    CollectInvestigationPackage,
    /// Add or Remove Tag for Machine (`tags.rs`).
    MachineTags,
    GetPackageUri,
    /// The investigation package a GetPackageUri link points to (signed, no token).
    PackageFile,
    ListAlerts,
    GetAlert,
    MachineAlerts,
    ListVulnerabilities,
    GetVulnerability,
    VulnerabilityMachineReferences,
    MachineVulnerabilities,
    MachinesVulnerabilities,
    ExportAssessmentJson,
    ExportAssessmentFiles,
    ExportAssessmentDelta,
    ExportFile,
    ListSoftware,
    GetSoftware,
    SoftwareMachineReferences,
    AdvancedQuery,
}

impl Api {
    pub fn name(self) -> &'static str {
        match self {
            Api::ListMachines => "ListMachines",
            Api::GetMachine => "GetMachine",
            Api::ListMachineActions => "ListMachineActions",
            Api::GetMachineAction => "GetMachineAction",
            Api::Isolate => "Isolate",
            Api::Unisolate => "Unisolate",
            Api::RunAntiVirusScan => "RunAntiVirusScan",
            Api::RestrictCodeExecution => "RestrictCodeExecution",
            Api::UnrestrictCodeExecution => "UnrestrictCodeExecution",
            Api::CollectInvestigationPackage => "CollectInvestigationPackage",
            Api::MachineTags => "MachineTags",
            Api::GetPackageUri => "GetPackageUri",
            Api::PackageFile => "PackageFile",
            Api::ListAlerts => "ListAlerts",
            Api::GetAlert => "GetAlert",
            Api::MachineAlerts => "MachineAlerts",
            Api::ListVulnerabilities => "ListVulnerabilities",
            Api::GetVulnerability => "GetVulnerability",
            Api::VulnerabilityMachineReferences => "VulnerabilityMachineReferences",
            Api::MachineVulnerabilities => "MachineVulnerabilities",
            Api::MachinesVulnerabilities => "MachinesVulnerabilities",
            Api::ExportAssessmentJson => "ExportAssessmentJson",
            Api::ExportAssessmentFiles => "ExportAssessmentFiles",
            Api::ExportAssessmentDelta => "ExportAssessmentDelta",
            Api::ExportFile => "ExportFile",
            Api::ListSoftware => "ListSoftware",
            Api::GetSoftware => "GetSoftware",
            Api::SoftwareMachineReferences => "SoftwareMachineReferences",
            Api::AdvancedQuery => "AdvancedQuery",
        }
    }

    fn roles(self) -> &'static [&'static str] {
        match self {
            Api::ListMachines | Api::GetMachine | Api::ListMachineActions | Api::GetMachineAction => MACHINE_READ,
            Api::Isolate | Api::Unisolate => &["Machine.Isolate"],
            Api::RunAntiVirusScan => &["Machine.Scan"],
            // The permission tables of restrict-code-execution, unrestrict-code-execution,
            // collect-investigation-package and get-package-sas-uri (application permissions).
            Api::RestrictCodeExecution | Api::UnrestrictCodeExecution => &["Machine.RestrictExecution"],
            Api::CollectInvestigationPackage => &["Machine.CollectForensics"],
            // The permission table of add-or-remove-machine-tags (application permission).
            Api::MachineTags => &["Machine.ReadWrite.All"],
            Api::GetPackageUri => MACHINE_READ,
            Api::ListAlerts | Api::GetAlert | Api::MachineAlerts => ALERT_READ,
            Api::ListVulnerabilities
            | Api::GetVulnerability
            | Api::VulnerabilityMachineReferences
            | Api::MachineVulnerabilities
            | Api::MachinesVulnerabilities
            | Api::ExportAssessmentJson
            | Api::ExportAssessmentFiles
            | Api::ExportAssessmentDelta => VULN_READ,
            Api::ListSoftware | Api::GetSoftware | Api::SoftwareMachineReferences => SOFTWARE_READ,
            Api::AdvancedQuery => &["AdvancedQuery.Read.All"],
            Api::ExportFile | Api::PackageFile => &[],
        }
    }

    /// (per minute, per hour); `None` where the docs state no limit.
    fn limits(self) -> (Option<u32>, Option<u32>) {
        match self {
            Api::MachineVulnerabilities => (Some(50), Some(1500)),
            Api::AdvancedQuery => (Some(45), Some(1500)),
            Api::ExportAssessmentJson | Api::ExportAssessmentDelta => (Some(30), Some(1000)),
            Api::ExportAssessmentFiles => (Some(5), Some(20)),
            // "2 calls per minute and 120 calls per hour" (get-package-sas-uri).
            Api::GetPackageUri => (Some(2), Some(120)),
            Api::ListVulnerabilities
            | Api::GetVulnerability
            | Api::VulnerabilityMachineReferences
            | Api::MachinesVulnerabilities
            | Api::ListSoftware
            | Api::GetSoftware
            | Api::SoftwareMachineReferences
            | Api::ExportFile
            | Api::PackageFile => (None, None),
            // Everything else, Api::MachineTags included: "100 calls per minute and 1500 calls
            // per hour" (add-or-remove-machine-tags and each of the others' pages).
            _ => (Some(100), Some(1500)),
        }
    }
}

/// What a handler sees.
pub struct Ctx<'a> {
    pub st: &'a SimState,
    pub req: &'a HttpRequest,
    /// `scheme://host` as the caller addressed us (for `@odata.context` and links).
    pub base: String,
    pub client_id: String,
    pub now: DateTime<Utc>,
    pub fired: Fired,
    /// The tenant as it stood when the request came (a change meanwhile does not tear a page).
    pub tenant: Arc<Tenant>,
}

impl Ctx<'_> {
    pub fn tenant(&self) -> &Tenant {
        &self.tenant
    }
    pub fn context(&self, fragment: &str) -> String {
        format!("{}/api/$metadata#{fragment}", self.base)
    }
    pub fn query(&self) -> &str {
        self.req.query_string()
    }

    /// nextLink for the same path and query with `$skip` replaced, bent by link faults.
    pub fn next_link(&self, opts: &QueryOptions, skip: usize) -> String {
        self.link_with(&opts.params, "$skip", &skip.to_string())
    }

    pub fn link_with(&self, params: &[(String, String)], name: &str, value: &str) -> String {
        let base = if self.fired.foreign_next_link {
            lock(&self.st.faults)
                .faults
                .foreign_host
                .clone()
                .unwrap_or_else(|| faults::DEFAULT_FOREIGN_HOST.to_string())
        } else {
            self.base.clone()
        };
        if self.fired.malformed_next_link {
            // As reported in MicrosoftDocs/microsoft-365-docs#8316: the `$filter=` name is
            // lost and an `=N` fragment is appended.
            let mut parts: Vec<String> = params
                .iter()
                .filter(|(k, _)| !k.eq_ignore_ascii_case(name))
                .map(|(k, v)| {
                    if k.eq_ignore_ascii_case("$filter") {
                        odata::encode_component(v)
                    } else {
                        format!("{}={}", odata::encode_component(k), odata::encode_component(v))
                    }
                })
                .collect();
            parts.push(format!("{name}={value}={value}"));
            return format!("{base}{}?{}", self.req.path(), parts.join("&"));
        }
        format!("{base}{}?{}", self.req.path(), odata::with_param(params, name, value))
    }
}

/// A response before body faults are applied.
pub struct Reply {
    pub status: StatusCode,
    pub content_type: &'static str,
    pub headers: Vec<(header::HeaderName, String)>,
    pub body: Vec<u8>,
}

impl Reply {
    pub fn odata(status: StatusCode, body: Vec<u8>) -> Reply {
        Reply {
            status,
            content_type: ODATA_CONTENT_TYPE,
            headers: vec![(header::HeaderName::from_static("odata-version"), "4.0".into())],
            body,
        }
    }
    pub fn ok_json<T: Serialize>(value: &T) -> Reply {
        Reply::odata(StatusCode::OK, serde_json::to_vec(value).unwrap_or_default())
    }
    /// The documented error envelope `{"error":{"code","message","target"}}`.
    pub fn error(status: StatusCode, code: &str, message: impl Into<String>) -> Reply {
        let body = serde_json::json!({
            "error": { "code": code, "message": message.into(), "target": random_guid() }
        });
        Reply {
            status,
            content_type: "application/json; charset=utf-8",
            headers: vec![(header::HeaderName::from_static("odata-version"), "4.0".into())],
            body: body.to_string().into_bytes(),
        }
    }
    pub fn bad_request(code: &str, message: impl Into<String>) -> Reply {
        Reply::error(StatusCode::BAD_REQUEST, code, message)
    }
    pub fn not_found(message: impl Into<String>) -> Reply {
        Reply::error(StatusCode::NOT_FOUND, "ResourceNotFound", message)
    }
    pub fn odata_error(message: impl Into<String>) -> Reply {
        Reply::error(StatusCode::BAD_REQUEST, "ODataError", message)
    }
    pub fn with_header(mut self, name: header::HeaderName, value: String) -> Reply {
        self.headers.push((name, value));
        self
    }
}

/// `{"@odata.context": ..., "value": [...], "@odata.nextLink": ...}` written item by item.
pub fn collection<T>(
    ctx: &Ctx,
    fragment: &str,
    items: impl IntoIterator<Item = T>,
    next_link: Option<String>,
    mut write: impl FnMut(&mut Vec<u8>, T),
) -> Reply {
    let mut buf = Vec::with_capacity(4096);
    buf.extend_from_slice(b"{\"@odata.context\":");
    let _ = serde_json::to_writer(&mut buf, &ctx.context(fragment));
    buf.extend_from_slice(b",\"value\":[");
    for (i, it) in items.into_iter().enumerate() {
        if i > 0 {
            buf.push(b',');
        }
        write(&mut buf, it);
    }
    buf.push(b']');
    if let Some(link) = next_link {
        buf.extend_from_slice(b",\"@odata.nextLink\":");
        let _ = serde_json::to_writer(&mut buf, &link);
    }
    buf.push(b'}');
    Reply::odata(StatusCode::OK, buf)
}

/// A single entity with `@odata.context` first.
pub fn entity<T: Serialize>(ctx: &Ctx, fragment: &str, status: StatusCode, value: &T) -> Reply {
    let mut buf = Vec::with_capacity(1024);
    buf.extend_from_slice(b"{\"@odata.context\":");
    let _ = serde_json::to_writer(&mut buf, &ctx.context(fragment));
    let body = serde_json::to_vec(value).unwrap_or_default();
    // Splice the entity's fields after the context (the entity serialises as an object).
    if body.len() > 2 {
        buf.push(b',');
        buf.extend_from_slice(&body[1..]);
    } else {
        buf.push(b'}');
    }
    Reply::odata(status, buf)
}

pub fn write_json<T: Serialize>(buf: &mut Vec<u8>, v: &T) {
    let _ = serde_json::to_writer(buf, v);
}

/// Where a page starts and how large it is; a page after the first starts one early when the
/// duplicate-ids fault fired.
pub fn page_window(opts: &QueryOptions, max: usize, fired: &Fired) -> (usize, usize) {
    let size = opts.top.unwrap_or(max);
    let start = if fired.duplicate_ids && opts.skip > 0 { opts.skip - 1 } else { opts.skip };
    (start, size)
}

/// Whether a page gets an `@odata.nextLink`: only without `$top`, as the service does, unless
/// the `foreign_next_link` fault fired (a broken or hostile service may add one anyway).
fn link_due(opts: &QueryOptions, fired: &Fired, more: bool) -> bool {
    more && (opts.top.is_none() || fired.foreign_next_link)
}

/// Take one page from an iterator of all matching items; returns the items and the `$skip` of
/// the next page when a nextLink is due (see [`link_due`]).
pub fn paginate<T>(
    iter: impl Iterator<Item = T>,
    opts: &QueryOptions,
    max: usize,
    fired: &Fired,
) -> (Vec<T>, Option<usize>) {
    let (start, size) = page_window(opts, max, fired);
    let mut items: Vec<T> = iter.skip(start).take(size + 1).collect();
    let more = items.len() > size;
    items.truncate(size);
    (items, link_due(opts, fired, more).then_some(opts.skip + size))
}

fn bearer(req: &HttpRequest) -> Option<&str> {
    let h = req.headers().get(header::AUTHORIZATION)?.to_str().ok()?;
    let (scheme, token) = h.split_once(' ')?;
    scheme.eq_ignore_ascii_case("bearer").then(|| token.trim())
}

struct Caller {
    client_id: String,
    roles: Vec<String>,
}

fn unauthorized(message: &str) -> Reply {
    Reply::error(StatusCode::UNAUTHORIZED, "Unauthorized", message)
        .with_header(header::WWW_AUTHENTICATE, "Bearer".into())
}

fn authenticate(st: &SimState, req: &HttpRequest) -> Result<Caller, Reply> {
    let Some(token) = bearer(req) else {
        return Err(unauthorized("Authorization header is missing or is not a Bearer token"));
    };
    let claims = jwt::verify(&st.key, token).map_err(|_| unauthorized("The access token is invalid"))?;
    let now = Utc::now().timestamp();
    if claims.get("exp").and_then(Value::as_i64).is_none_or(|e| e <= now) {
        return Err(unauthorized("The access token has expired"));
    }
    if claims.get("nbf").and_then(Value::as_i64).is_some_and(|n| n > now + 300) {
        return Err(unauthorized("The access token is not yet valid"));
    }
    if claims.get("tid").and_then(Value::as_str) != Some(st.tenant().tenant_id()) {
        return Err(unauthorized("The access token was issued for another tenant"));
    }
    let serial = claims
        .get("uti")
        .and_then(Value::as_str)
        .and_then(|u| {
            use base64::Engine;
            base64::engine::general_purpose::URL_SAFE_NO_PAD.decode(u).ok()
        })
        .and_then(|b| b.get(..8).and_then(|s| <[u8; 8]>::try_from(s).ok()))
        .map(u64::from_be_bytes)
        .unwrap_or(0);
    if serial < st.valid_from_serial.load(std::sync::atomic::Ordering::SeqCst) {
        return Err(unauthorized("The access token has been revoked"));
    }
    let aud = claims.get("aud").and_then(Value::as_str).unwrap_or("");
    let aud_ok = aud == MDE_AUDIENCE || (aud == XDR_AUDIENCE && st.config.accept_xdr_audience);
    if !aud_ok {
        return Err(Reply::error(
            StatusCode::FORBIDDEN,
            "Forbidden",
            format!("The access token audience '{aud}' is not valid for this API"),
        ));
    }
    let client_id = claims.get("appid").or_else(|| claims.get("azp")).and_then(Value::as_str).unwrap_or("").to_string();
    let roles = claims
        .get("roles")
        .and_then(Value::as_array)
        .map(|a| a.iter().filter_map(|r| r.as_str().map(String::from)).collect())
        .unwrap_or_default();
    Ok(Caller { client_id, roles })
}

pub fn base_of(req: &HttpRequest) -> String {
    let ci = req.connection_info();
    format!("{}://{}", ci.scheme(), ci.host())
}

fn throttled_reply(api: Api, retry_after: Option<u64>, period: Period, limit: u32) -> Reply {
    let reply = if api == Api::AdvancedQuery {
        let per = if period == Period::Minute { "00:01:00" } else { "01:00:00" };
        Reply::error(
            StatusCode::TOO_MANY_REQUESTS,
            "429",
            format!("API calls quota exceeded! maximum allowed {limit} per {per}"),
        )
    } else {
        let per = if period == Period::Minute { "minute" } else { "hour" };
        Reply::error(
            StatusCode::TOO_MANY_REQUESTS,
            "TooManyRequests",
            format!("Rate limit is exceeded: {limit} calls per {per} for this API and application. Try again later."),
        )
    };
    match retry_after {
        Some(s) => reply.with_header(header::RETRY_AFTER, s.to_string()),
        None => reply,
    }
}

fn fault_status_reply(status: u16) -> Reply {
    let s = StatusCode::from_u16(status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    match status {
        500 => Reply::error(s, "InternalServerError", ""),
        503 => Reply::error(s, "ServiceUnavailable", "The service is temporarily unavailable. Try again later."),
        // The service's own 404 (common errors): "nothing found" for a listing.
        404 => Reply::not_found("Resource wasn't found"),
        _ => Reply::error(s, s.canonical_reason().unwrap_or("Error").replace(' ', "").as_str(), "Injected fault"),
    }
}

/// A page from something in front of the service (see `FaultEffect::ProxyPage`).
fn proxy_page(status: u16) -> Reply {
    let s = StatusCode::from_u16(status).unwrap_or(StatusCode::NOT_FOUND);
    let reason = s.canonical_reason().unwrap_or("Error");
    Reply {
        status: s,
        content_type: "text/html",
        headers: Vec::new(),
        body: format!("<html><head><title>{status} {reason}</title></head><body><center><h1>{status} {reason}</h1></center><hr><center>nginx</center></body></html>\n").into_bytes(),
    }
}

/// Run one API call through the pipeline.
pub async fn serve<F>(st: &SimState, req: &HttpRequest, api: Api, handler: F) -> HttpResponse
where
    F: FnOnce(&Ctx) -> Reply,
{
    lock(&st.counters).record_call(api.name());
    let caller = if matches!(api, Api::ExportFile | Api::PackageFile) {
        Caller { client_id: String::new(), roles: Vec::new() }
    } else {
        match authenticate(st, req) {
            Ok(c) => c,
            Err(r) => return finish(st, api, r, &Fired::default()).await,
        }
    };
    if !api.roles().is_empty() && !api.roles().iter().any(|r| caller.roles.iter().any(|c| c == r)) {
        let r = Reply::error(
            StatusCode::FORBIDDEN,
            "Forbidden",
            format!(
                "Missing application roles. API required roles: {}. Application roles: {}.",
                api.roles().join(","),
                caller.roles.join(",")
            ),
        );
        return finish(st, api, r, &Fired::default()).await;
    }
    if st.config.rate_limits && !matches!(api, Api::ExportFile | Api::PackageFile) {
        let (m, h) = api.limits();
        if let Verdict::Limited { retry_after_secs, period, limit } =
            st.limiter.check(&caller.client_id, api.name(), m, h)
        {
            let r = throttled_reply(api, Some(retry_after_secs), period, limit);
            return finish(st, api, r, &Fired::default()).await;
        }
    }
    let fired = lock(&st.faults).evaluate(api.name());
    if fired.any() {
        lock(&st.counters).faults_injected += 1;
    }
    if fired.delay_ms > 0 {
        tokio::time::sleep(Duration::from_millis(fired.delay_ms)).await;
    }
    if let Some(retry) = fired.throttle {
        let (m, _) = api.limits();
        let r = throttled_reply(api, retry, Period::Minute, m.unwrap_or(100));
        return finish(st, api, r, &fired).await;
    }
    if let Some(status) = fired.status {
        let reply = if fired.proxy_page { proxy_page(status) } else { fault_status_reply(status) };
        return finish(st, api, reply, &fired).await;
    }
    let ctx = Ctx {
        st,
        req,
        base: base_of(req),
        client_id: caller.client_id,
        now: Utc::now(),
        fired: fired.clone(),
        tenant: st.tenant(),
    };
    let reply = handler(&ctx);
    finish(st, api, reply, &fired).await
}

async fn finish(st: &SimState, api: Api, mut reply: Reply, fired: &Fired) -> HttpResponse {
    lock(&st.counters).record_status(api.name(), reply.status.as_u16());
    if fired.wrong_types
        && reply.status.is_success()
        && let Some(b) = faults::scramble_types(&reply.body)
    {
        reply.body = b;
    }
    if fired.corrupt && reply.body.len() > 2 {
        faults::corrupt(&mut reply.body);
    }
    let mut b = HttpResponse::build(reply.status);
    b.insert_header((header::CONTENT_TYPE, reply.content_type));
    for (k, v) in &reply.headers {
        if let Ok(v) = HeaderValue::from_str(v) {
            b.insert_header((k.clone(), v));
        }
    }
    if fired.stall_ms.is_some() || fired.truncate {
        let half = Bytes::from(reply.body[..reply.body.len() / 2].to_vec());
        let stall = fired.stall_ms;
        let first = futures_util::stream::once(async move { Ok::<_, std::io::Error>(half) });
        let tail = futures_util::stream::once(async move {
            match stall {
                Some(ms) => {
                    tokio::time::sleep(Duration::from_millis(ms)).await;
                    Err(std::io::Error::other("stalled response aborted"))
                }
                None => Ok(Bytes::new()),
            }
        });
        use futures_util::StreamExt;
        return b.streaming(first.chain(tail));
    }
    b.body(reply.body)
}

pub async fn not_found(req: HttpRequest) -> HttpResponse {
    let r = Reply::error(StatusCode::NOT_FOUND, "NotFound", format!("No route for {} {}", req.method(), req.path()));
    HttpResponse::build(r.status).content_type(r.content_type).body(r.body)
}

pub async fn method_not_allowed_post() -> HttpResponse {
    HttpResponse::MethodNotAllowed().insert_header((header::ALLOW, "POST")).finish()
}

pub async fn method_not_allowed_get() -> HttpResponse {
    HttpResponse::MethodNotAllowed().insert_header((header::ALLOW, "GET")).finish()
}

fn get_resource<F, Args>(path: &str, handler: F) -> actix_web::Resource
where
    F: actix_web::Handler<Args>,
    Args: actix_web::FromRequest + 'static,
    F::Output: actix_web::Responder + 'static,
{
    web::resource(path).route(web::get().to(handler)).default_service(web::to(method_not_allowed_get))
}

fn post_resource<F, Args>(path: &str, handler: F) -> actix_web::Resource
where
    F: actix_web::Handler<Args>,
    Args: actix_web::FromRequest + 'static,
    F::Output: actix_web::Responder + 'static,
{
    web::resource(path).route(web::post().to(handler)).default_service(web::to(method_not_allowed_post))
}

pub fn configure(cfg: &mut web::ServiceConfig) {
    cfg.service(get_resource("/machines", list_machines))
        .service(get_resource("/machines/SoftwareVulnerabilitiesByMachine", super::export::export_json))
        .service(get_resource("/machines/SoftwareVulnerabilitiesExport", super::export::export_files))
        .service(get_resource("/machines/SoftwareVulnerabilityChangesByMachine", super::export::export_delta))
        .service(get_resource("/machines/$count", count_machines))
        .service(get_resource("/machines/{id}", get_machine))
        .service(get_resource("/machines/{id}/alerts/$count", count_machine_alerts))
        .service(get_resource("/machines/{id}/alerts", machine_alerts))
        .service(get_resource("/machines/{id}/vulnerabilities", machine_vulnerabilities))
        .service(post_resource("/machines/{id}/isolate", isolate))
        .service(post_resource("/machines/{id}/unisolate", unisolate))
        .service(post_resource("/machines/{id}/runAntiVirusScan", run_av_scan))
        .service(post_resource("/machines/{id}/restrictCodeExecution", restrict))
        .service(post_resource("/machines/{id}/unrestrictCodeExecution", unrestrict))
        .service(post_resource("/machines/{id}/collectInvestigationPackage", collect_package))
        .service(post_resource("/machines/{id}/tags", super::tags::machine_tags))
        .service(get_resource("/machineactions", list_actions))
        .service(get_resource("/machineactions/{id}", get_action))
        // The page's HTTP request writes `getPackageUri`, its example `GetPackageUri`.
        .service(get_resource("/machineactions/{id}/getPackageUri", super::package::get_package_uri))
        .service(get_resource("/machineactions/{id}/GetPackageUri", super::package::get_package_uri))
        .service(get_resource("/alerts", list_alerts))
        .service(get_resource("/alerts/$count", count_alerts))
        .service(get_resource("/alerts/{id}", get_alert))
        .service(get_resource("/vulnerabilities", list_vulnerabilities))
        .service(get_resource("/vulnerabilities/machinesVulnerabilities", machines_vulnerabilities))
        .service(get_resource("/vulnerabilities/{id}", get_vulnerability))
        .service(get_resource("/vulnerabilities/{id}/machineReferences", vulnerability_machine_refs))
        .service(get_resource("/Software", list_software))
        .service(get_resource("/software", list_software))
        .service(get_resource("/Software/{id}", get_software))
        .service(get_resource("/software/{id}", get_software))
        .service(get_resource("/Software/{id}/machineReferences", software_machine_refs))
        .service(get_resource("/software/{id}/machineReferences", software_machine_refs))
        .service(post_resource("/advancedqueries/run", super::hunting::run_query))
        .default_service(web::to(not_found));
}

// ---------------------------------------------------------------------------------------------
// Machines

pub const MACHINE_FILTER: &[&str] = &[
    "computerDnsName",
    "id",
    "version",
    "deviceValue",
    "aadDeviceId",
    "machineTags",
    "lastSeen",
    "exposureLevel",
    "onboardingStatus",
    "lastIpAddress",
    "healthStatus",
    "osPlatform",
    "riskScore",
    "rbacGroupId",
];

fn machine_field<'a>(m: &'a Machine, p: &str) -> Field<'a> {
    match p {
        "computerdnsname" => Field::Str(&m.computer_dns_name),
        "id" => Field::Str(&m.id),
        "version" => Field::Str(m.version),
        "devicevalue" => Field::Str(m.device_value),
        "aaddeviceid" => m.aad_device_id.as_deref().map_or(Field::Null, Field::Str),
        "machinetags" => Field::List(&m.machine_tags),
        "lastseen" => Field::Date(m.last_seen),
        "exposurelevel" => Field::Str(m.exposure_level),
        "onboardingstatus" => Field::Str(m.onboarding_status),
        "lastipaddress" => Field::Str(&m.last_ip_address),
        "healthstatus" => Field::Str(m.health_status),
        "osplatform" => Field::Str(m.os_platform),
        "riskscore" => Field::Str(m.risk_score),
        "rbacgroupid" => Field::Num(m.rbac_group_id as f64),
        _ => Field::Null,
    }
}

fn options(ctx: &Ctx, allowed: &[&str], max: usize) -> Result<QueryOptions, Reply> {
    odata::parse_options(ctx.query(), allowed, max).map_err(Reply::odata_error)
}

async fn list_machines(st: web::Data<SimState>, req: HttpRequest) -> HttpResponse {
    serve(&st, &req, Api::ListMachines, |ctx| {
        let opts = match options(ctx, MACHINE_FILTER, 10_000) {
            Ok(o) => o,
            Err(r) => return r,
        };
        let t = ctx.tenant();
        let iter =
            t.machines().iter().filter(|m| opts.filter.as_ref().is_none_or(|f| f.matches(&|p| machine_field(m, p))));
        let (items, next) = paginate(iter, &opts, 10_000, &ctx.fired);
        if items.is_empty() && opts.skip == 0 && lock(&ctx.st.faults).faults.empty_list_404 {
            return Reply::not_found("No machines found");
        }
        let next = next.map(|s| ctx.next_link(&opts, s));
        let omit = lock(&ctx.st.faults).faults.omit_machine_fields.clone();
        collection(ctx, "Machines", items, next, |b, m| {
            if omit.is_empty() {
                write_json(b, &MachineView::new(m))
            } else {
                write_json(b, &machine_without(m, &omit))
            }
        })
    })
    .await
}

/// `…/$count`: the number of matching items as a bare number (`$top`/`$skip` ignored).
fn count_reply(n: usize) -> Reply {
    Reply {
        status: StatusCode::OK,
        content_type: "text/plain; charset=utf-8",
        headers: vec![(header::HeaderName::from_static("odata-version"), "4.0".into())],
        body: n.to_string().into_bytes(),
    }
}

async fn count_machines(st: web::Data<SimState>, req: HttpRequest) -> HttpResponse {
    serve(&st, &req, Api::ListMachines, |ctx| {
        let opts = match options(ctx, MACHINE_FILTER, usize::MAX) {
            Ok(o) => o,
            Err(r) => return r,
        };
        let n = ctx
            .tenant()
            .machines()
            .iter()
            .filter(|m| opts.filter.as_ref().is_none_or(|f| f.matches(&|p| machine_field(m, p))))
            .count();
        count_reply(n)
    })
    .await
}

fn count_alert_list(ctx: &Ctx, alerts: &[Alert]) -> Reply {
    let opts = match options(ctx, ALERT_FILTER, usize::MAX) {
        Ok(o) => o,
        Err(r) => return r,
    };
    count_reply(
        alerts.iter().filter(|a| opts.filter.as_ref().is_none_or(|f| f.matches(&|p| alert_field(a, p)))).count(),
    )
}

async fn count_alerts(st: web::Data<SimState>, req: HttpRequest) -> HttpResponse {
    serve(&st, &req, Api::ListAlerts, |ctx| count_alert_list(ctx, ctx.tenant().alerts())).await
}

async fn count_machine_alerts(st: web::Data<SimState>, req: HttpRequest, id: web::Path<String>) -> HttpResponse {
    serve(&st, &req, Api::MachineAlerts, |ctx| {
        let t = ctx.tenant();
        match t.machine_by_id_or_name(&id) {
            Some(m) => count_alert_list(ctx, t.alerts_of(m.index as usize)),
            None => machine_not_found(&id),
        }
    })
    .await
}

/// A machine without the properties the `omit_machine_fields` knob names.
fn machine_without(m: &Machine, omit: &[String]) -> Value {
    let mut v = serde_json::to_value(MachineView::new(m)).unwrap_or_default();
    if let Some(o) = v.as_object_mut() {
        for k in omit {
            o.remove(k);
        }
    }
    v
}

fn machine_not_found(id: &str) -> Reply {
    Reply::not_found(format!("Machine {id} was not found"))
}

async fn get_machine(st: web::Data<SimState>, req: HttpRequest, id: web::Path<String>) -> HttpResponse {
    serve(&st, &req, Api::GetMachine, |ctx| match ctx.tenant().machine_by_id_or_name(&id) {
        Some(m) => {
            let omit = lock(&ctx.st.faults).faults.omit_machine_fields.clone();
            entity(ctx, "Machines/$entity", StatusCode::OK, &machine_without(m, &omit))
        }
        None => machine_not_found(&id),
    })
    .await
}

// ---------------------------------------------------------------------------------------------
// Machine actions

fn machine_action(ctx: &Ctx, id: &str, body: &[u8], kind: ActionType) -> Reply {
    if kind != ActionType::RunAntiVirusScan {
        let ct = ctx.req.headers().get(header::CONTENT_TYPE).and_then(|v| v.to_str().ok()).unwrap_or("");
        if !ct.to_ascii_lowercase().starts_with("application/json") {
            return Reply::error(
                StatusCode::UNSUPPORTED_MEDIA_TYPE,
                "UnsupportedMediaType",
                "Content-Type must be application/json",
            );
        }
    }
    let Ok(Value::Object(body)) = serde_json::from_slice::<Value>(body) else {
        return Reply::bad_request("InvalidRequestBody", "The request body is not a valid JSON object");
    };
    // Body keys are case-sensitive (documented).
    let comment = match body.get("Comment") {
        Some(Value::String(s)) => s.clone(),
        Some(_) => return Reply::bad_request("InvalidRequestBody", "Comment must be a string"),
        None => {
            return Reply::bad_request("MissingRequiredParameter", "Parameter 'Comment' is missing");
        }
    };
    let scope: Option<&'static str> = match kind {
        ActionType::Isolate => match body.get("IsolationType") {
            None | Some(Value::Null) => Some("Full"),
            Some(Value::String(s)) if s == "Full" => Some("Full"),
            Some(Value::String(s)) if s == "Selective" => Some("Selective"),
            Some(Value::String(s)) if s == "UnManagedDevice" => Some("UnManagedDevice"),
            Some(other) => {
                return Reply::bad_request(
                    "InvalidRequestBody",
                    format!("IsolationType {other} is not valid; expected Full, Selective or UnManagedDevice"),
                );
            }
        },
        ActionType::RunAntiVirusScan => match body.get("ScanType") {
            Some(Value::String(s)) if s == "Quick" => Some("Quick"),
            Some(Value::String(s)) if s == "Full" => Some("Full"),
            Some(other) => {
                return Reply::bad_request(
                    "InvalidRequestBody",
                    format!("ScanType {other} is not valid; expected Quick or Full"),
                );
            }
            None => {
                return Reply::bad_request("MissingRequiredParameter", "Parameter 'ScanType' is missing");
            }
        },
        // Their bodies carry only `Comment`.
        ActionType::Unisolate
        | ActionType::RestrictCodeExecution
        | ActionType::UnrestrictCodeExecution
        | ActionType::CollectInvestigationPackage => None,
    };
    let t = ctx.tenant();
    let Some(m) = t.machine_by_id_or_name(id) else {
        return machine_not_found(id);
    };
    // Platforms, Windows 10 releases and client versions as Microsoft documents them.
    if let Err((code, message)) = super::support::check(m, kind, scope) {
        return Reply::bad_request(code, message);
    }
    let mut store = lock(&ctx.st.actions);
    // Restrict and unrestrict: "HTTP 400 with the message \"Action is already in progress\""
    // (restrict-code-execution, unrestrict-code-execution); collect: "If a collection is already
    // running, this returns 400 Bad Request" (collect-investigation-package).
    let (repeat_returns_pending, outcome, left_out) = {
        let f = &lock(&ctx.st.faults).faults;
        (f.repeat_returns_pending, f.action_outcome.unwrap_or_default(), LeftOut::by(f))
    };
    if let Some(open) = store.active(m.index, kind, ctx.now) {
        // Isolate, unisolate and scan: "returns either the already pending machine action or
        // HTTP 400" (run-av-scan, unisolate-machine); the 201 answer is opt-in.
        let documented_either =
            matches!(kind, ActionType::Isolate | ActionType::Unisolate | ActionType::RunAntiVirusScan);
        if documented_either && repeat_returns_pending {
            return entity(
                ctx,
                "MachineActions/$entity",
                StatusCode::CREATED,
                &ActionView::shown(open, ctx.now, left_out),
            );
        }
        return Reply::bad_request("ActiveRequestAlreadyExists", "Action is already in progress");
    }
    let action = Action {
        id: random_guid(),
        kind,
        scope,
        machine_index: m.index,
        machine_id: m.id.clone(),
        computer_dns_name: m.computer_dns_name.clone(),
        requestor: ctx.client_id.clone(),
        comment,
        external_id: body.get("ExternalId").and_then(Value::as_str).map(String::from),
        created: ctx.now,
        pending: chrono::Duration::milliseconds(ctx.st.config.action_pending_ms as i64),
        in_progress: chrono::Duration::milliseconds(ctx.st.config.action_inprogress_ms as i64),
        outcome,
    };
    let view = ActionView::shown(&action, ctx.now, left_out);
    let reply = entity(ctx, "MachineActions/$entity", StatusCode::CREATED, &view);
    store.add(action);
    reply
}

async fn isolate(st: web::Data<SimState>, req: HttpRequest, id: web::Path<String>, body: web::Bytes) -> HttpResponse {
    serve(&st, &req, Api::Isolate, |ctx| machine_action(ctx, &id, &body, ActionType::Isolate)).await
}

async fn unisolate(st: web::Data<SimState>, req: HttpRequest, id: web::Path<String>, body: web::Bytes) -> HttpResponse {
    serve(&st, &req, Api::Unisolate, |ctx| machine_action(ctx, &id, &body, ActionType::Unisolate)).await
}

/// `POST /api/machines/{id}/restrictCodeExecution` `{"Comment"}` → 201 + MachineAction
/// (<https://learn.microsoft.com/en-us/defender-endpoint/api/restrict-code-execution>).
async fn restrict(st: web::Data<SimState>, req: HttpRequest, id: web::Path<String>, body: web::Bytes) -> HttpResponse {
    serve(&st, &req, Api::RestrictCodeExecution, |ctx| {
        machine_action(ctx, &id, &body, ActionType::RestrictCodeExecution)
    })
    .await
}

/// `POST /api/machines/{id}/unrestrictCodeExecution` `{"Comment"}` → 201 + MachineAction
/// (<https://learn.microsoft.com/en-us/defender-endpoint/api/unrestrict-code-execution>).
async fn unrestrict(
    st: web::Data<SimState>,
    req: HttpRequest,
    id: web::Path<String>,
    body: web::Bytes,
) -> HttpResponse {
    serve(&st, &req, Api::UnrestrictCodeExecution, |ctx| {
        machine_action(ctx, &id, &body, ActionType::UnrestrictCodeExecution)
    })
    .await
}

/// `POST /api/machines/{id}/collectInvestigationPackage` `{"Comment"}` → 201 + MachineAction
/// (<https://learn.microsoft.com/en-us/defender-endpoint/api/collect-investigation-package>).
async fn collect_package(
    st: web::Data<SimState>,
    req: HttpRequest,
    id: web::Path<String>,
    body: web::Bytes,
) -> HttpResponse {
    serve(&st, &req, Api::CollectInvestigationPackage, |ctx| {
        machine_action(ctx, &id, &body, ActionType::CollectInvestigationPackage)
    })
    .await
}

async fn run_av_scan(
    st: web::Data<SimState>,
    req: HttpRequest,
    id: web::Path<String>,
    body: web::Bytes,
) -> HttpResponse {
    serve(&st, &req, Api::RunAntiVirusScan, |ctx| machine_action(ctx, &id, &body, ActionType::RunAntiVirusScan)).await
}

const ACTION_FILTER: &[&str] = &["id", "status", "machineId", "type", "requestor", "creationDateTimeUtc"];

async fn list_actions(st: web::Data<SimState>, req: HttpRequest) -> HttpResponse {
    serve(&st, &req, Api::ListMachineActions, |ctx| {
        let opts = match options(ctx, ACTION_FILTER, 10_000) {
            Ok(o) => o,
            Err(r) => return r,
        };
        let store = lock(&ctx.st.actions);
        let now = ctx.now;
        let iter = store.actions.iter().rev().filter(|a| {
            opts.filter.as_ref().is_none_or(|f| {
                f.matches(&|p| match p {
                    "id" => Field::Str(&a.id),
                    "status" => Field::Str(a.status_at(now).0),
                    "machineid" => Field::Str(&a.machine_id),
                    "type" => Field::Str(a.kind.as_str()),
                    "requestor" => Field::Str(&a.requestor),
                    "creationdatetimeutc" => Field::Date(a.created),
                    _ => Field::Null,
                })
            })
        });
        let (items, next) = paginate(iter, &opts, 10_000, &ctx.fired);
        let next = next.map(|s| ctx.next_link(&opts, s));
        let left_out = LeftOut::by(&lock(&ctx.st.faults).faults);
        collection(ctx, "MachineActions", items, next, |b, a| write_json(b, &ActionView::shown(a, now, left_out)))
    })
    .await
}

async fn get_action(st: web::Data<SimState>, req: HttpRequest, id: web::Path<String>) -> HttpResponse {
    serve(&st, &req, Api::GetMachineAction, |ctx| {
        if !is_guid(&id) {
            return Reply::bad_request(
                "BadRequest",
                format!(
                    "The key value ({id}) from request is not valid. The key value should be format of type 'Edm.Guid'."
                ),
            );
        }
        let left_out = LeftOut::by(&lock(&ctx.st.faults).faults);
        let store = lock(&ctx.st.actions);
        match store.get(&id) {
            Some(a) => entity(ctx, "MachineActions/$entity", StatusCode::OK, &ActionView::shown(a, ctx.now, left_out)),
            None => Reply::not_found(format!("Machine action {id} was not found")),
        }
    })
    .await
}

// ---------------------------------------------------------------------------------------------
// Alerts

const ALERT_FILTER: &[&str] = &[
    "alertCreationTime",
    "lastUpdateTime",
    "incidentId",
    "InvestigationId",
    "id",
    "assignedTo",
    "asssignedTo",
    "detectionSource",
    "lastEventTime",
    "status",
    "severity",
    "category",
];

fn alert_field<'a>(a: &'a Alert, p: &str) -> Field<'a> {
    match p {
        "alertcreationtime" => Field::Date(a.alert_creation_time),
        "lastupdatetime" => Field::Date(a.last_update_time),
        "incidentid" => Field::Num(a.incident_id as f64),
        "investigationid" => a.investigation_id.map_or(Field::Null, |i| Field::Num(i as f64)),
        "id" => Field::Str(&a.id),
        "assignedto" | "asssignedto" => a.assigned_to.as_deref().map_or(Field::Null, Field::Str),
        "detectionsource" => Field::Str(a.detection_source),
        "lasteventtime" => Field::Date(a.last_event_time),
        "status" => Field::Str(a.status),
        "severity" => Field::Str(a.severity),
        "category" => Field::Str(a.category),
        _ => Field::Null,
    }
}

fn expand_evidence(opts: &QueryOptions) -> Result<bool, Reply> {
    match &opts.expand {
        None => Ok(false),
        Some(e) if e.trim().eq_ignore_ascii_case("evidence") => Ok(true),
        Some(e) => Err(Reply::odata_error(format!("Property '{e}' cannot be expanded; only 'evidence' is supported"))),
    }
}

fn alert_list(ctx: &Ctx, alerts: &[Alert]) -> Reply {
    let opts = match options(ctx, ALERT_FILTER, 10_000) {
        Ok(o) => o,
        Err(r) => return r,
    };
    let expand = match expand_evidence(&opts) {
        Ok(e) => e,
        Err(r) => return r,
    };
    let iter = alerts.iter().filter(|a| opts.filter.as_ref().is_none_or(|f| f.matches(&|p| alert_field(a, p))));
    let (items, next) = paginate(iter, &opts, 10_000, &ctx.fired);
    let next = next.map(|s| ctx.next_link(&opts, s));
    let t = ctx.tenant();
    collection(ctx, "Alerts", items, next, |b, a| write_json(b, &AlertView::new(t, a, expand)))
}

async fn list_alerts(st: web::Data<SimState>, req: HttpRequest) -> HttpResponse {
    serve(&st, &req, Api::ListAlerts, |ctx| alert_list(ctx, ctx.tenant().alerts())).await
}

async fn machine_alerts(st: web::Data<SimState>, req: HttpRequest, id: web::Path<String>) -> HttpResponse {
    serve(&st, &req, Api::MachineAlerts, |ctx| {
        let t = ctx.tenant();
        match t.machine_by_id_or_name(&id) {
            Some(m) => alert_list(ctx, t.alerts_of(m.index as usize)),
            None => machine_not_found(&id),
        }
    })
    .await
}

async fn get_alert(st: web::Data<SimState>, req: HttpRequest, id: web::Path<String>) -> HttpResponse {
    serve(&st, &req, Api::GetAlert, |ctx| {
        let opts = odata::parse_options(ctx.query(), &[], 0).unwrap_or_default();
        let expand = match expand_evidence(&opts) {
            Ok(e) => e,
            Err(r) => return r,
        };
        let t = ctx.tenant();
        match t.alert(&id) {
            Some(a) => entity(ctx, "Alerts/$entity", StatusCode::OK, &AlertView::new(t, a, expand)),
            None => Reply::not_found(format!("Alert {id} was not found")),
        }
    })
    .await
}

// ---------------------------------------------------------------------------------------------
// Vulnerabilities

const VULN_FILTER: &[&str] = &["id", "name", "description", "cvssV3", "publishedOn", "severity", "updatedOn"];

fn vuln_field<'a>(v: &'a Vulnerability, p: &str) -> Field<'a> {
    match p {
        "id" => Field::Str(&v.id),
        "name" => Field::Str(&v.name),
        "description" => Field::Str(&v.description),
        "cvssv3" => Field::Num(v.cvss_v3),
        "publishedon" => Field::Date(v.published_on),
        "severity" => Field::Str(v.severity.as_str()),
        "updatedon" => Field::Date(v.updated_on),
        _ => Field::Null,
    }
}

async fn list_vulnerabilities(st: web::Data<SimState>, req: HttpRequest) -> HttpResponse {
    serve(&st, &req, Api::ListVulnerabilities, |ctx| {
        let opts = match options(ctx, VULN_FILTER, 8_000) {
            Ok(o) => o,
            Err(r) => return r,
        };
        let t = ctx.tenant();
        let iter = t
            .vulnerabilities()
            .iter()
            .filter(|v| opts.filter.as_ref().is_none_or(|f| f.matches(&|p| vuln_field(v, p))));
        let (items, next) = paginate(iter, &opts, 8_000, &ctx.fired);
        let next = next.map(|s| ctx.next_link(&opts, s));
        collection(ctx, "Vulnerabilities", items, next, |b, v| write_json(b, &VulnerabilityView::new(t, v)))
    })
    .await
}

async fn get_vulnerability(st: web::Data<SimState>, req: HttpRequest, id: web::Path<String>) -> HttpResponse {
    serve(&st, &req, Api::GetVulnerability, |ctx| {
        let t = ctx.tenant();
        match t.vulnerability(&id) {
            Some(v) => entity(ctx, "Vulnerabilities/$entity", StatusCode::OK, &VulnerabilityView::new(t, v)),
            None => Reply::not_found(format!("Vulnerability {id} was not found")),
        }
    })
    .await
}

fn machine_refs(ctx: &Ctx, machines: &[u32]) -> Reply {
    let opts = match options(ctx, &[], 10_000) {
        Ok(o) => o,
        Err(r) => return r,
    };
    let t = ctx.tenant();
    let (items, next) = paginate(machines.iter(), &opts, 10_000, &ctx.fired);
    let next = next.map(|s| ctx.next_link(&opts, s));
    collection(ctx, "MachineReferences", items, next, |b, i| {
        write_json(b, &MachineReferenceView::new(&t.machines()[*i as usize]))
    })
}

async fn vulnerability_machine_refs(st: web::Data<SimState>, req: HttpRequest, id: web::Path<String>) -> HttpResponse {
    serve(&st, &req, Api::VulnerabilityMachineReferences, |ctx| {
        let t = ctx.tenant();
        match t.vulnerability(&id) {
            Some(v) => machine_refs(ctx, t.machines_with_vulnerability(v.index as usize)),
            None => Reply::not_found(format!("Vulnerability {id} was not found")),
        }
    })
    .await
}

async fn machine_vulnerabilities(st: web::Data<SimState>, req: HttpRequest, id: web::Path<String>) -> HttpResponse {
    serve(&st, &req, Api::MachineVulnerabilities, |ctx| {
        let t = ctx.tenant();
        let Some(m) = t.machine_by_id_or_name(&id) else {
            return machine_not_found(&id);
        };
        let items: Vec<&Vulnerability> = t.machine_vulnerabilities(m.index as usize).collect();
        collection(ctx, "Collection(Analytics.Contracts.PublicAPI.PublicVulnerabilityDto)", items, None, |b, v| {
            write_json(b, &VulnerabilityView::new(t, v))
        })
    })
    .await
}

const ASSET_VULN_FILTER: &[&str] =
    &["id", "cveId", "machineId", "fixingKbId", "productName", "productVersion", "severity", "productVendor"];

/// (machine index, vulnerability index) rows starting at a global offset, in machine order.
pub struct RowIter<'a> {
    t: &'a Tenant,
    machine: usize,
    rows: Vec<u32>,
    pos: usize,
}

impl<'a> RowIter<'a> {
    pub fn from_offset(t: &'a Tenant, offset: u64) -> Self {
        match t.locate_row(offset) {
            Some((m, r)) => RowIter { t, machine: m, rows: t.machine_vulnerability_indices(m), pos: r },
            None => RowIter { t, machine: t.machines().len(), rows: Vec::new(), pos: 0 },
        }
    }
}

impl Iterator for RowIter<'_> {
    type Item = (usize, u32);
    fn next(&mut self) -> Option<(usize, u32)> {
        while self.pos >= self.rows.len() {
            if self.machine + 1 >= self.t.machines().len() {
                self.machine = self.t.machines().len();
                return None;
            }
            self.machine += 1;
            self.rows = self.t.machine_vulnerability_indices(self.machine);
            self.pos = 0;
        }
        let v = self.rows[self.pos];
        self.pos += 1;
        Some((self.machine, v))
    }
}

async fn machines_vulnerabilities(st: web::Data<SimState>, req: HttpRequest) -> HttpResponse {
    serve(&st, &req, Api::MachinesVulnerabilities, |ctx| {
        let opts = match options(ctx, ASSET_VULN_FILTER, 10_000) {
            Ok(o) => o,
            Err(r) => return r,
        };
        let t = ctx.tenant();
        let machines = t.machines();
        let vulns = t.vulnerabilities();
        let write = |b: &mut Vec<u8>, (m, v): (usize, u32)| {
            write_json(b, &AssetVulnerabilityView::new(t, &machines[m], &vulns[v as usize]))
        };
        let Some(filter) = &opts.filter else {
            // No filter: jump straight to the offset through the prefix sums.
            let (start, size) = page_window(&opts, 10_000, &ctx.fired);
            let mut items: Vec<(usize, u32)> = RowIter::from_offset(t, start as u64).take(size + 1).collect();
            let more = items.len() > size;
            items.truncate(size);
            let next = link_due(&opts, &ctx.fired, more).then(|| ctx.next_link(&opts, opts.skip + size));
            return collection(
                ctx,
                "Collection(microsoft.windowsDefenderATP.api.PublicAssetVulnerabilityDto)",
                items,
                next,
                write,
            );
        };
        let matches = |&(m, v): &(usize, u32)| {
            let mach = &machines[m];
            let vu = &vulns[v as usize];
            let p = &super::catalog::PRODUCTS[vu.product as usize];
            let id_cell = std::cell::OnceCell::new();
            filter.matches(&|name| match name {
                "id" => Field::Str(id_cell.get_or_init(|| AssetVulnerabilityView::new(t, mach, vu).id)),
                "cveid" => Field::Str(&vu.id),
                "machineid" => Field::Str(&mach.id),
                "fixingkbid" => vu.fixing_kb_id.as_deref().map_or(Field::Null, Field::Str),
                "productname" => Field::Str(p.name),
                "productversion" => Field::Str(vu.product_version),
                "severity" => Field::Str(vu.severity.as_str()),
                "productvendor" => Field::Str(p.vendor),
                _ => Field::Null,
            })
        };
        // Narrow the scan when the filter pins a machine or a CVE.
        let candidates: Box<dyn Iterator<Item = (usize, u32)>> = if let Some(mid) = filter.required_eq("machineid") {
            match t.machine_by_id(mid) {
                Some(m) => {
                    let mi = m.index as usize;
                    Box::new(t.machine_vulnerability_indices(mi).into_iter().map(move |v| (mi, v)))
                }
                None => Box::new(std::iter::empty()),
            }
        } else if let Some(cve) = filter.required_eq("cveid") {
            match t.vulnerability(cve) {
                Some(v) => {
                    let vi = v.index;
                    Box::new(t.machines_with_vulnerability(vi as usize).iter().map(move |m| (*m as usize, vi)))
                }
                None => Box::new(std::iter::empty()),
            }
        } else {
            Box::new(RowIter::from_offset(t, 0))
        };
        let (items, next) = paginate(candidates.filter(matches), &opts, 10_000, &ctx.fired);
        let next = next.map(|s| ctx.next_link(&opts, s));
        collection(ctx, "Collection(microsoft.windowsDefenderATP.api.PublicAssetVulnerabilityDto)", items, next, write)
    })
    .await
}

// ---------------------------------------------------------------------------------------------
// Software

async fn list_software(st: web::Data<SimState>, req: HttpRequest) -> HttpResponse {
    serve(&st, &req, Api::ListSoftware, |ctx| {
        let opts = match options(ctx, &["id", "name", "vendor"], 10_000) {
            Ok(o) => o,
            Err(r) => return r,
        };
        let t = ctx.tenant();
        let iter = t.software().iter().filter(|s| {
            opts.filter.as_ref().is_none_or(|f| {
                f.matches(&|p| match p {
                    "id" => Field::Str(&s.id),
                    "name" => Field::Str(s.name),
                    "vendor" => Field::Str(s.vendor),
                    _ => Field::Null,
                })
            })
        });
        let (items, next) = paginate(iter, &opts, 10_000, &ctx.fired);
        let next = next.map(|s| ctx.next_link(&opts, s));
        collection(ctx, "Software", items, next, |b, s| write_json(b, &SoftwareView::new(t, s)))
    })
    .await
}

async fn get_software(st: web::Data<SimState>, req: HttpRequest, id: web::Path<String>) -> HttpResponse {
    serve(&st, &req, Api::GetSoftware, |ctx| {
        let t = ctx.tenant();
        match t.software_by_id(&id) {
            Some(s) => entity(ctx, "Software/$entity", StatusCode::OK, &SoftwareView::new(t, s)),
            None => Reply::not_found(format!("Software {id} was not found")),
        }
    })
    .await
}

async fn software_machine_refs(st: web::Data<SimState>, req: HttpRequest, id: web::Path<String>) -> HttpResponse {
    serve(&st, &req, Api::SoftwareMachineReferences, |ctx| {
        let t = ctx.tenant();
        match t.software_by_id(&id) {
            Some(s) => machine_refs(ctx, t.machines_with_software(s.index as usize)),
            None => Reply::not_found(format!("Software {id} was not found")),
        }
    })
    .await
}
