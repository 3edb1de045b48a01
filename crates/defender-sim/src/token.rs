//! Microsoft Entra ID client-credentials token endpoint (defender-api.md §1):
//! `POST /{tenant}/oauth2/v2.0/token` (scope) and the v1 `POST /{tenant}/oauth2/token`
//! (resource), with the documented AADSTS error bodies and status codes.
//!
//! Checks run in this order: tenant, grant type, `resource` on v2, client id, scope/resource
//! present, client known, secret present, secret right, secret not expired, scope valid.

use crate::ids::{is_dns_name, is_guid};
use std::sync::atomic::Ordering;

use actix_web::http::StatusCode;
use actix_web::{HttpRequest, HttpResponse, web};
use base64::Engine;
use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use chrono::Utc;
use serde_json::json;

use super::rng::{Rng, random_guid};
use super::{MDE_AUDIENCE, SimState, XDR_AUDIENCE, jwt, lock};

pub fn configure(cfg: &mut web::ServiceConfig) {
    cfg.service(
        web::resource("/{tenant}/oauth2/v2.0/token")
            .route(web::post().to(token_v2))
            .default_service(web::to(super::api::method_not_allowed_post)),
    );
    cfg.service(
        web::resource("/{tenant}/oauth2/token")
            .route(web::post().to(token_v1))
            .default_service(web::to(super::api::method_not_allowed_post)),
    );
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Version {
    V1,
    V2,
}

async fn token_v2(
    st: web::Data<SimState>,
    req: HttpRequest,
    tenant: web::Path<String>,
    body: web::Bytes,
) -> HttpResponse {
    issue(&st, &req, &tenant, &body, Version::V2).await
}

async fn token_v1(
    st: web::Data<SimState>,
    req: HttpRequest,
    tenant: web::Path<String>,
    body: web::Bytes,
) -> HttpResponse {
    issue(&st, &req, &tenant, &body, Version::V1).await
}

/// An Entra error: HTTP status, `error`, AADSTS code and message.
pub(super) struct AadError {
    status: u16,
    error: &'static str,
    code: u32,
    message: String,
}

pub(super) fn err(status: u16, error: &'static str, code: u32, message: impl Into<String>) -> AadError {
    AadError { status, error, code, message: message.into() }
}

fn aad_response(e: &AadError, req: &HttpRequest) -> HttpResponse {
    let trace = random_guid();
    // Entra echoes the caller's client-request-id as the correlation id.
    let correlation = req
        .headers()
        .get("client-request-id")
        .and_then(|v| v.to_str().ok())
        .map(str::to_string)
        .unwrap_or_else(random_guid);
    let ts = Utc::now().format("%Y-%m-%d %H:%M:%SZ").to_string();
    let body = json!({
        "error": e.error,
        "error_description": format!(
            "AADSTS{}: {}\r\nTrace ID: {trace}\r\nCorrelation ID: {correlation}\r\nTimestamp: {ts}",
            e.code, e.message
        ),
        "error_codes": [e.code],
        "timestamp": ts,
        "trace_id": trace,
        "correlation_id": correlation,
        "error_uri": format!("https://login.microsoftonline.com/error?code={}", e.code),
    });
    HttpResponse::build(StatusCode::from_u16(e.status).unwrap_or(StatusCode::BAD_REQUEST))
        .insert_header(("Cache-Control", "no-store, no-cache"))
        .insert_header(("Pragma", "no-cache"))
        .insert_header(("x-ms-request-id", trace))
        .content_type("application/json; charset=utf-8")
        .body(body.to_string())
}

/// Resource identifier → token audience. `None` = unknown to this directory.
fn audience_for(resource: &str) -> Option<&'static str> {
    let r = resource.trim_end_matches('/').to_ascii_lowercase();
    match r.as_str() {
        "https://api.securitycenter.microsoft.com"
        | "https://securitycenter.onmicrosoft.com/windowsatpservice"
        | "https://api.securitycenter.windows.com"
        | "fc780465-2017-40d4-a0c5-307022471b92" => Some(MDE_AUDIENCE),
        "https://api.security.microsoft.com" => Some(XDR_AUDIENCE),
        // A real, different resource: yields a token the MDE API refuses with 403.
        "https://graph.microsoft.com" | "00000003-0000-0000-c000-000000000000" => Some("https://graph.microsoft.com"),
        _ => None,
    }
}

fn basic_credentials(req: &HttpRequest) -> Option<(String, String)> {
    let h = req.headers().get("authorization")?.to_str().ok()?;
    let (scheme, rest) = h.split_once(' ')?;
    if !scheme.eq_ignore_ascii_case("basic") {
        return None;
    }
    let decoded = String::from_utf8(STANDARD.decode(rest.trim()).ok()?).ok()?;
    let (id, secret) = decoded.split_once(':')?;
    let dec = |s: &str| {
        url::form_urlencoded::parse(format!("x={s}").as_bytes()).next().map(|(_, v)| v.into_owned()).unwrap_or_default()
    };
    Some((dec(id), dec(secret)))
}

async fn issue(st: &SimState, req: &HttpRequest, tenant: &str, body: &[u8], version: Version) -> HttpResponse {
    lock(&st.counters).record_call("Token");
    let fired = lock(&st.faults).evaluate("Token");
    if fired.any() {
        lock(&st.counters).faults_injected += 1;
    }
    if fired.delay_ms > 0 {
        tokio::time::sleep(std::time::Duration::from_millis(fired.delay_ms)).await;
    }
    let result = if let Some(retry) = fired.throttle {
        let mut r = aad_response(
            &err(429, "temporarily_unavailable", 90055, "The request has been throttled. Please retry later."),
            req,
        );
        if let Some(s) = retry {
            r.headers_mut().insert(actix_web::http::header::RETRY_AFTER, actix_web::http::header::HeaderValue::from(s));
        }
        r
    } else if let Some(status) = fired.status {
        aad_response(
            &err(status, "temporarily_unavailable", 90033, "A transient error has occurred. Please try again."),
            req,
        )
    } else {
        match check_and_issue(st, req, tenant, body, version) {
            Ok(r) => r,
            Err(e) => aad_response(&e, req),
        }
    };
    lock(&st.counters).record_status("Token", result.status().as_u16());
    result
}

fn check_and_issue(
    st: &SimState,
    req: &HttpRequest,
    tenant: &str,
    body: &[u8],
    version: Version,
) -> Result<HttpResponse, AadError> {
    let current = st.tenant();
    let t = &current.params;
    if !is_guid(tenant) && !is_dns_name(tenant) {
        return Err(err(
            400,
            "invalid_request",
            900023,
            format!("Specified tenant identifier '{tenant}' is neither a valid DNS name, nor a valid external domain."),
        ));
    }
    if !tenant.eq_ignore_ascii_case(&t.tenant_id) && !tenant.eq_ignore_ascii_case(&t.tenant_domain) {
        return Err(err(
            400,
            "invalid_request",
            90002,
            format!(
                "Tenant '{tenant}' not found. Check to make sure you have the correct tenant ID and are signing into the correct cloud. Check with your subscription administrator, this may happen if there are no active subscriptions for the tenant."
            ),
        ));
    }
    let form: Vec<(String, String)> =
        url::form_urlencoded::parse(body).map(|(k, v)| (k.into_owned(), v.into_owned())).collect();
    let field = |name: &str| form.iter().find(|(k, _)| k == name).map(|(_, v)| v.clone());
    let missing = |name: &str| {
        err(400, "invalid_request", 900144, format!("The request body must contain the following parameter: '{name}'."))
    };
    let grant = field("grant_type").ok_or_else(|| missing("grant_type"))?;
    // People sign in with the authorization code grant (v2 only); apps use client credentials.
    let sign_in = grant == "authorization_code" && version == Version::V2;
    if grant != "client_credentials" && !sign_in {
        return Err(err(
            400,
            "unsupported_grant_type",
            70003,
            format!("The app requested an unsupported grant type '{grant}'."),
        ));
    }
    if version == Version::V2 && field("resource").is_some() {
        return Err(err(400, "invalid_request", 901002, "The 'resource' request parameter is not supported."));
    }
    let basic = basic_credentials(req);
    let client_id =
        field("client_id").or_else(|| basic.as_ref().map(|b| b.0.clone())).ok_or_else(|| missing("client_id"))?;
    let requested = match version {
        Version::V2 if sign_in => String::new(),
        Version::V2 => field("scope").ok_or_else(|| missing("scope"))?,
        Version::V1 => field("resource").ok_or_else(|| missing("resource"))?,
    };
    let Some(client) = st.client(&client_id) else {
        return Err(err(
            400,
            "unauthorized_client",
            700016,
            format!(
                "Application with identifier '{client_id}' was not found in the directory '{}'. This can happen if the application has not been installed by the administrator of the tenant or consented to by any user in the tenant. You may have sent your authentication request to the wrong tenant.",
                t.tenant_domain
            ),
        ));
    };
    let secret = field("client_secret").or_else(|| basic.as_ref().map(|b| b.1.clone()));
    let Some(secret) = secret.filter(|s| !s.is_empty()) else {
        return Err(err(
            401,
            "invalid_client",
            7000218,
            "The request body must contain the following parameter: 'client_assertion' or 'client_secret'.",
        ));
    };
    if !constant_time_eq(secret.as_bytes(), client.secret.as_bytes()) {
        return Err(err(
            401,
            "invalid_client",
            7000215,
            format!(
                "Invalid client secret provided. Ensure the secret being sent in the request is the client secret value, not the client secret ID, for a secret added to app '{}'.",
                client.client_id
            ),
        ));
    }
    if client.secret_expired {
        return Err(err(
            401,
            "invalid_client",
            7000222,
            format!(
                "The provided client secret keys for app '{}' are expired. Visit the Azure portal to create new keys for your app: https://aka.ms/NewClientSecret, or consider using certificate credentials for added security: https://aka.ms/certCreds.",
                client.client_id
            ),
        ));
    }
    if sign_in {
        return super::oidc::redeem(st, req, &client, &field);
    }
    let (audience, resource) = match version {
        Version::V2 => {
            let mut aud: Option<&'static str> = None;
            for s in requested.split_whitespace() {
                let Some(res) = s.strip_suffix("/.default") else {
                    return Err(err(
                        400,
                        "invalid_scope",
                        70011,
                        format!(
                            "The provided request must include a 'scope' input parameter. The provided value for the input parameter 'scope' is not valid. The scope {requested} is not valid."
                        ),
                    ));
                };
                let Some(a) = audience_for(res) else {
                    return Err(err(
                        400,
                        "invalid_resource",
                        500011,
                        format!(
                            "The resource principal named {res} was not found in the tenant named {}. This can happen if the application has not been installed by the administrator of the tenant or consented to by any user in the tenant. You might have sent your authentication request to the wrong tenant.",
                            t.tenant_domain
                        ),
                    ));
                };
                if aud.is_some_and(|x| x != a) {
                    return Err(err(
                        400,
                        "invalid_scope",
                        700022,
                        format!(
                            "The provided value for the input parameter scope is not valid because it contains more than one resource. Scope {requested} is not valid."
                        ),
                    ));
                }
                aud = Some(a);
            }
            let Some(a) = aud else {
                return Err(err(
                    400,
                    "invalid_scope",
                    70011,
                    "The provided request must include a 'scope' input parameter. The provided value for the input parameter 'scope' is not valid. The scope  is not valid.",
                ));
            };
            (a, a.to_string())
        }
        Version::V1 => match audience_for(&requested) {
            Some(a) => (a, requested.clone()),
            None => {
                return Err(err(
                    400,
                    "invalid_resource",
                    500011,
                    format!(
                        "The resource principal named {requested} was not found in the tenant named {}. This can happen if the application has not been installed by the administrator of the tenant or consented to by any user in the tenant. You might have sent your authentication request to the wrong tenant.",
                        t.tenant_domain
                    ),
                ));
            }
        },
    };

    let lifetime = lock(&st.faults).faults.token_lifetime_secs.unwrap_or(st.config.token_lifetime_secs);
    let audience = lock(&st.faults).faults.access_token_audience.clone().unwrap_or_else(|| audience.to_string());
    let now = Utc::now().timestamp();
    let exp = now + lifetime as i64;
    let serial = st.token_serial.fetch_add(1, Ordering::SeqCst);
    let mut uti = serial.to_be_bytes().to_vec();
    uti.extend_from_slice(&rand::random::<[u8; 8]>());
    let oid = Rng::for_item(
        0x0B1D,
        super::rng::mix64(
            client.client_id.to_ascii_lowercase().bytes().fold(0u64, |h, b| h.wrapping_mul(31).wrapping_add(b as u64)),
        ),
        0,
    )
    .guid();
    let mut claims = json!({
        "aud": audience,
        "tid": t.tenant_id,
        "iat": now,
        "nbf": now,
        "exp": exp,
        "idtyp": "app",
        "oid": oid,
        "sub": oid,
        "uti": URL_SAFE_NO_PAD.encode(&uti),
        "rh": "0.simulator.",
    });
    match version {
        Version::V1 => {
            claims["ver"] = json!("1.0");
            claims["iss"] = json!(format!("https://sts.windows.net/{}/", t.tenant_id));
            claims["appid"] = json!(client.client_id);
            claims["appidacr"] = json!("1");
        }
        Version::V2 => {
            claims["ver"] = json!("2.0");
            claims["iss"] = json!(format!("https://login.microsoftonline.com/{}/v2.0", t.tenant_id));
            claims["azp"] = json!(client.client_id);
            claims["azpacr"] = json!("1");
        }
    }
    if !client.roles.is_empty() {
        claims["roles"] = json!(client.roles);
    }
    if let Some(name) = &client.display_name {
        claims["app_displayname"] = json!(name);
    }
    let token = jwt::sign(&st.key, &claims);
    lock(&st.counters).tokens_issued += 1;
    let body = match version {
        Version::V2 => json!({
            "token_type": "Bearer",
            "expires_in": lifetime,
            "ext_expires_in": lifetime,
            "access_token": token,
        }),
        Version::V1 => json!({
            "token_type": "Bearer",
            "expires_in": lifetime.to_string(),
            "ext_expires_in": lifetime.to_string(),
            "expires_on": exp.to_string(),
            "not_before": now.to_string(),
            "resource": resource,
            "access_token": token,
        }),
    };
    Ok(HttpResponse::Ok()
        .insert_header(("Cache-Control", "no-store, no-cache"))
        .insert_header(("Pragma", "no-cache"))
        .content_type("application/json; charset=utf-8")
        .body(body.to_string()))
}

fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    if a.len() != b.len() {
        return false;
    }
    a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}
