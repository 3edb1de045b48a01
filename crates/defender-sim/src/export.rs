//! Export assessment of software vulnerabilities (`L:get-assessment-software-vulnerabilities`):
//! the JSON pages with an opaque `$skiptoken`, the export via files (signed download links
//! served by the simulator itself, gzip JSON lines), and the delta since a time.
//!
//! Records are produced straight from the derived machine × vulnerability rows; a skip token
//! is a global row offset (JSON) or a (machine, event) cursor (delta), plus a check value so a
//! mangled token is refused instead of silently restarting.

use std::io::Write;

use actix_web::http::StatusCode;
use actix_web::http::header;
use actix_web::{HttpRequest, HttpResponse, web};
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use chrono::Duration;
use hmac::{Hmac, Mac};
use sha2::Sha256;

use super::SimState;
use super::api::{Api, Ctx, Reply, RowIter, collection, serve, write_json};
use super::odata::{decode_query, parse_date_literal};
use super::rng::mix64;
use super::tenant::DeltaEvent;
use super::tenant::Tenant;
use super::views::{ExportRecord, event_time, iso7};

const DEFAULT_PAGE: usize = 50_000;
const MAX_PAGE: usize = 200_000;

pub fn configure_files(cfg: &mut web::ServiceConfig) {
    cfg.service(
        web::resource("/_sim/blob/tvm-export/{stamp}/{file}")
            .route(web::get().to(download))
            .default_service(web::to(super::api::method_not_allowed_get)),
    );
}

fn param<'a>(params: &'a [(String, String)], name: &str) -> Option<&'a str> {
    params.iter().find(|(k, _)| k.eq_ignore_ascii_case(name)).map(|(_, v)| v.as_str())
}

fn check(seed: u64, parts: &[u64]) -> u32 {
    parts.iter().fold(mix64(seed ^ 0x5417), |h, p| mix64(h ^ p)) as u32
}

fn encode_token(seed: u64, parts: &[u64]) -> String {
    let mut s: Vec<String> = parts.iter().map(|p| p.to_string()).collect();
    s.push(format!("{:x}", check(seed, parts)));
    URL_SAFE_NO_PAD.encode(s.join(":"))
}

fn decode_token(seed: u64, token: &str, n: usize) -> Option<Vec<u64>> {
    let raw = String::from_utf8(URL_SAFE_NO_PAD.decode(token.trim()).ok()?).ok()?;
    let fields: Vec<&str> = raw.split(':').collect();
    if fields.len() != n + 1 {
        return None;
    }
    let parts: Vec<u64> = fields[..n].iter().map(|f| f.parse().ok()).collect::<Option<_>>()?;
    (format!("{:x}", check(seed, &parts)) == fields[n]).then_some(parts)
}

fn page_size(params: &[(String, String)]) -> Result<usize, Reply> {
    match param(params, "pageSize") {
        None => Ok(DEFAULT_PAGE),
        Some(v) => match v.trim().parse::<usize>() {
            Ok(n) if (1..=MAX_PAGE).contains(&n) => Ok(n),
            _ => Err(Reply::bad_request(
                "InvalidInput",
                format!("pageSize must be an integer between 1 and {MAX_PAGE}; got '{v}'"),
            )),
        },
    }
}

fn top(params: &[(String, String)]) -> Result<Option<usize>, Reply> {
    match param(params, "$top") {
        None => Ok(None),
        Some(v) => match v.trim().parse::<usize>() {
            Ok(n) if n <= MAX_PAGE => Ok(Some(n)),
            _ => Err(Reply::odata_error(format!(
                "The limit of '{MAX_PAGE}' for Top query has been exceeded or the value '{v}' is not valid."
            ))),
        },
    }
}

const EXPORT_CONTEXT: &str = "Collection(microsoft.windowsDefenderATP.api.AssetVulnerability)";

pub async fn export_json(st: web::Data<SimState>, req: HttpRequest) -> HttpResponse {
    serve(&st, &req, Api::ExportAssessmentJson, |ctx| {
        let params = decode_query(ctx.query());
        let size = match page_size(&params) {
            Ok(s) => s,
            Err(r) => return r,
        };
        let top = match top(&params) {
            Ok(t) => t,
            Err(r) => return r,
        };
        let t = ctx.tenant();
        let seed = t.seed();
        let offset = match param(&params, "$skiptoken") {
            None => 0,
            Some(tok) => match decode_token(seed, tok, 1) {
                Some(p) => p[0],
                None => return Reply::bad_request("InvalidInput", "The $skiptoken is not valid"),
            },
        };
        let start = if ctx.fired.duplicate_ids && offset > 0 { offset - 1 } else { offset };
        let size = top.unwrap_or(size);
        let mut items: Vec<(usize, u32)> = RowIter::from_offset(t, start).take(size + 1).collect();
        let more = items.len() > size;
        items.truncate(size);
        let next = (top.is_none() && more)
            .then(|| ctx.link_with(&params, "$skiptoken", &encode_token(seed, &[offset + size as u64])));
        let (machines, vulns) = (t.machines(), t.vulnerabilities());
        collection(ctx, EXPORT_CONTEXT, items, next, |b, (m, v)| {
            write_json(b, &ExportRecord::new(t, &machines[m], &vulns[v as usize]))
        })
    })
    .await
}

pub async fn export_delta(st: web::Data<SimState>, req: HttpRequest) -> HttpResponse {
    serve(&st, &req, Api::ExportAssessmentDelta, delta).await
}

fn delta(ctx: &Ctx) -> Reply {
    let params = decode_query(ctx.query());
    let size = match page_size(&params) {
        Ok(s) => s,
        Err(r) => return r,
    };
    let Some(since_raw) = param(&params, "sinceTime") else {
        return Reply::bad_request("MissingRequiredParameter", "Parameter 'sinceTime' is missing");
    };
    let Some(since) = parse_date_literal(since_raw) else {
        return Reply::bad_request("InvalidInput", format!("sinceTime '{since_raw}' is not a valid date time"));
    };
    if since < ctx.now - Duration::days(14) - Duration::minutes(5) {
        return Reply::bad_request("InvalidInput", "sinceTime must be within the last 14 days");
    }
    if since > ctx.now + Duration::minutes(5) {
        return Reply::bad_request("InvalidInput", "sinceTime must not be in the future");
    }
    let t = ctx.tenant();
    let seed = t.seed();
    let (mut machine, mut event) = match param(&params, "$skiptoken") {
        None => (0usize, 0usize),
        Some(tok) => match decode_token(seed, tok, 3) {
            Some(p) if p[2] == since.timestamp() as u64 => (p[0] as usize, p[1] as usize),
            _ => return Reply::bad_request("InvalidInput", "The $skiptoken is not valid"),
        },
    };
    if ctx.fired.duplicate_ids && (machine, event) != (0, 0) {
        event = event.saturating_sub(1);
    }
    let mut items: Vec<(usize, DeltaEvent<'_>)> = Vec::new();
    let mut next: Option<(usize, usize)> = None;
    'outer: while machine < t.machines().len() {
        let events = t.delta_events(machine, since);
        for (i, e) in events.into_iter().enumerate().skip(event) {
            if items.len() == size {
                next = Some((machine, i));
                break 'outer;
            }
            items.push((machine, e));
        }
        machine += 1;
        event = 0;
    }
    let next = next.map(|(m, e)| {
        ctx.link_with(&params, "$skiptoken", &encode_token(seed, &[m as u64, e as u64, since.timestamp() as u64]))
    });
    let (machines, vulns) = (t.machines(), t.vulnerabilities());
    collection(ctx, EXPORT_CONTEXT, items, next, |b, (m, e)| {
        let mut r = ExportRecord::new(t, &machines[m], &vulns[e.vuln as usize]);
        r.set_version(&machines[m], &vulns[e.vuln as usize], e.version);
        r.rbac_group_name = e.group.unwrap_or("Unassigned");
        r.is_onboarded = Some(machines[m].is_onboarded());
        r.status = Some(e.status);
        r.event_timestamp = Some(event_time(e.at));
        write_json(b, &r)
    })
}

/// How many export files a tenant is split into (contiguous machine ranges).
fn file_count(t: &Tenant) -> usize {
    let rows = t.total_machine_vulnerabilities() as usize;
    rows.div_ceil(MAX_PAGE).clamp(2, 64).min(t.machines().len().max(1))
}

fn sign(key: &[u8], path: &str, expiry: &str) -> String {
    let mut mac = Hmac::<Sha256>::new_from_slice(key).expect("HMAC accepts any key length");
    mac.update(path.as_bytes());
    mac.update(b"\n");
    mac.update(expiry.as_bytes());
    hex::encode(mac.finalize().into_bytes())
}

/// A link to `path` on the simulator, signed like an Azure Storage SAS URL and valid until
/// `expiry` (`%Y-%m-%dT%H:%M:%SZ`): the export files, and the investigation packages.
pub(crate) fn signed_link(ctx: &Ctx, path: &str, expiry: &str) -> String {
    let sig = sign(&ctx.st.key, path, expiry);
    format!("{}{path}?sv=2020-08-04&sr=b&sp=r&se={}&sig={sig}", ctx.base, expiry.replace(':', "%3A"))
}

/// Whether the query of a request for `path` carries a valid signature that has not expired;
/// otherwise the storage service's 403.
pub(crate) fn check_signed(ctx: &Ctx, path: &str) -> Result<(), Reply> {
    let params = decode_query(ctx.query());
    let (Some(expiry), Some(sig)) = (param(&params, "se"), param(&params, "sig")) else {
        return Err(blob_error(StatusCode::FORBIDDEN, "AuthenticationFailed", "Signature fields not well formed."));
    };
    let expected = sign(&ctx.st.key, path, expiry);
    if expected.len() != sig.len() || expected.bytes().zip(sig.bytes()).fold(0, |a, (x, y)| a | (x ^ y)) != 0 {
        return Err(blob_error(StatusCode::FORBIDDEN, "AuthenticationFailed", "Signature did not match."));
    }
    match parse_date_literal(expiry) {
        Some(e) if e > ctx.now => Ok(()),
        _ => Err(blob_error(StatusCode::FORBIDDEN, "AuthenticationFailed", "Signed expiry time has expired.")),
    }
}

pub async fn export_files(st: web::Data<SimState>, req: HttpRequest) -> HttpResponse {
    serve(&st, &req, Api::ExportAssessmentFiles, |ctx| {
        let params = decode_query(ctx.query());
        let hours = match param(&params, "sasValidHours") {
            None => 1,
            Some(v) => match v.trim().parse::<i64>() {
                Ok(h) if (1..=6).contains(&h) => h,
                _ => {
                    return Reply::bad_request(
                        "InvalidInput",
                        format!("sasValidHours must be an integer between 1 and 6; got '{v}'"),
                    );
                }
            },
        };
        let t = ctx.tenant();
        let count = file_count(t);
        let stamp = ctx.now.format("%Y-%m-%d-%H-%M-%S").to_string();
        let expiry = (ctx.now + Duration::hours(hours)).format("%Y-%m-%dT%H:%M:%SZ").to_string();
        let files: Vec<String> = (0..count)
            .map(|k| {
                let path = format!("/_sim/blob/tvm-export/{stamp}/part-{k:05}-of-{count:05}.json.gz");
                signed_link(ctx, &path, &expiry)
            })
            .collect();
        let body = serde_json::json!({
            "@odata.context": ctx.context("microsoft.windowsDefenderATP.api.ExportFilesResponse"),
            "exportFiles": files,
            "generatedTime": iso7(ctx.now),
        });
        Reply::ok_json(&body)
    })
    .await
}

pub(crate) fn blob_error(status: StatusCode, code: &str, message: &str) -> Reply {
    Reply {
        status,
        content_type: "application/xml",
        headers: Vec::new(),
        body: format!(
            "<?xml version=\"1.0\" encoding=\"utf-8\"?><Error><Code>{code}</Code><Message>{message}</Message></Error>"
        )
        .into_bytes(),
    }
}

async fn download(st: web::Data<SimState>, req: HttpRequest, path: web::Path<(String, String)>) -> HttpResponse {
    serve(&st, &req, Api::ExportFile, |ctx| {
        let (stamp, file) = path.into_inner();
        if let Err(refused) = check_signed(ctx, &format!("/_sim/blob/tvm-export/{stamp}/{file}")) {
            return refused;
        }
        // part-KKKKK-of-NNNNN.json.gz
        let parsed = file
            .strip_prefix("part-")
            .and_then(|r| r.strip_suffix(".json.gz"))
            .and_then(|r| r.split_once("-of-"))
            .and_then(|(k, n)| Some((k.parse::<usize>().ok()?, n.parse::<usize>().ok()?)));
        let Some((k, n)) = parsed.filter(|(k, n)| k < n) else {
            return blob_error(StatusCode::NOT_FOUND, "BlobNotFound", "The specified blob does not exist.");
        };
        let t = ctx.tenant();
        let total = t.machines().len();
        let (lo, hi) = (k * total / n, (k + 1) * total / n);
        let mut enc = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
        let vulns = t.vulnerabilities();
        for mi in lo..hi {
            let m = &t.machines()[mi];
            for v in t.machine_vulnerability_indices(mi) {
                let rec = ExportRecord::new(t, m, &vulns[v as usize]);
                let _ = serde_json::to_writer(&mut enc, &rec);
                let _ = enc.write_all(b"\n");
            }
        }
        let body = enc.finish().unwrap_or_default();
        Reply {
            status: StatusCode::OK,
            content_type: "application/octet-stream",
            headers: vec![(header::HeaderName::from_static("x-ms-blob-type"), "BlockBlob".into())],
            body,
        }
    })
    .await
}
