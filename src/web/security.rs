//! Protections that apply to every request: security headers on every response, and the CSRF
//! check on every state-changing request.

use actix_session::SessionExt;
use actix_web::HttpMessage;
use actix_web::body::MessageBody;
use actix_web::dev::{Payload, ServiceRequest, ServiceResponse};
use actix_web::http::{Method, header};
use actix_web::middleware::Next;
use actix_web::web::{Bytes, BytesMut};
use futures_util::StreamExt;

use super::session::keys;
use crate::error::AppError;
use crate::web::AppState;

/// No inline script anywhere (htmx runs from a file, configured from a meta tag), nothing
/// from another origin, and the product may not be framed.
pub const CONTENT_SECURITY_POLICY: &str = "default-src 'none'; script-src 'self'; style-src 'self'; \
     img-src 'self' data:; connect-src 'self'; font-src 'self'; form-action 'self'; \
     frame-ancestors 'none'; base-uri 'none'";

pub async fn security_headers(
    req: ServiceRequest,
    next: Next<impl MessageBody + 'static>,
) -> Result<ServiceResponse<impl MessageBody>, actix_web::Error> {
    let is_static = req.path().starts_with("/static/");
    // Inner layers answer errors as responses (never `Err`), so error pages get these headers too.
    let mut res = next.call(req).await?;
    let h = res.headers_mut();
    let set = |h: &mut header::HeaderMap, k: header::HeaderName, v: &'static str| {
        h.insert(k, header::HeaderValue::from_static(v));
    };
    set(h, header::CONTENT_SECURITY_POLICY, CONTENT_SECURITY_POLICY);
    set(h, header::X_CONTENT_TYPE_OPTIONS, "nosniff");
    set(h, header::X_FRAME_OPTIONS, "DENY");
    set(h, header::REFERRER_POLICY, "no-referrer");
    set(h, header::STRICT_TRANSPORT_SECURITY, "max-age=31536000; includeSubDomains");
    set(h, header::HeaderName::from_static("cross-origin-opener-policy"), "same-origin");
    set(h, header::HeaderName::from_static("cross-origin-resource-policy"), "same-origin");
    set(h, header::HeaderName::from_static("permissions-policy"), "camera=(), microphone=(), geolocation=()");
    if !is_static {
        // Pages carry inventory and risk data: never keep them in a shared or browser cache.
        set(h, header::CACHE_CONTROL, "no-store");
    }
    Ok(res)
}

/// The largest form body the CSRF check will read to find the token field.
const MAX_FORM_BODY: usize = 1024 * 1024;

/// Refuses a state-changing request that does not carry the session's CSRF token (header
/// `X-CSRF-Token`, sent by htmx from the page's `hx-headers`, or form field `csrf_token`), or
/// that a browser says came from another site.
///
/// The JSON API under `/api/` is exempt: it authenticates with bearer tokens only and never
/// reads the session cookie, so a cross-site page cannot act through it.
pub async fn csrf_protect(
    req: ServiceRequest,
    next: Next<impl MessageBody + 'static>,
) -> Result<ServiceResponse<impl MessageBody>, actix_web::Error> {
    let safe = matches!(*req.method(), Method::GET | Method::HEAD | Method::OPTIONS);
    if safe || req.path().starts_with("/api/") {
        return next.call(req).await.map(ServiceResponse::map_into_boxed_body);
    }
    if cross_site(&req) {
        return Ok(csrf_refusal(req, "The request came from another site and was refused."));
    }
    let expected = req.get_session().get::<String>(keys::CSRF).ok().flatten();
    // The sign-in form of a browser without a session carries a token bound to its cookie.
    let login_form = (req.path() == "/login")
        .then(|| req.app_data::<actix_web::web::Data<AppState>>().map(|s| s.login_csrf.expected(req.request())))
        .flatten()
        .flatten();
    let from_header = req.headers().get("x-csrf-token").and_then(|v| v.to_str().ok()).map(str::to_owned);
    let (req, presented) = match from_header {
        Some(t) => (req, Some(t)),
        None if is_form(&req) => match read_form_token(req).await {
            Ok(read) => read,
            Err((req, e)) => return Ok(ServiceResponse::from_err(e, req.into_parts().0)),
        },
        None => (req, None),
    };
    let matches = |e: &Option<String>| {
        e.as_ref().zip(presented.as_ref()).is_some_and(|(e, p)| constant_time_eq(e.as_bytes(), p.as_bytes()))
    };
    match matches(&expected) || matches(&login_form) {
        true => next.call(req).await.map(ServiceResponse::map_into_boxed_body),
        false => {
            Ok(csrf_refusal(req, "The form has expired or did not come from this site. Reload the page and try again."))
        }
    }
}

fn csrf_refusal(req: ServiceRequest, msg: &str) -> ServiceResponse {
    tracing::warn!(path = req.path(), "CSRF check refused a request");
    ServiceResponse::from_err(AppError::Refused(msg.to_owned()), req.into_parts().0)
}

fn is_form(req: &ServiceRequest) -> bool {
    req.headers()
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.starts_with("application/x-www-form-urlencoded"))
}

/// `Sec-Fetch-Site` and `Origin`, when the browser sends them, must say "this site".
///
/// A browser that sends `Sec-Fetch-Site: same-origin` has vouched for the request: its `Origin`
/// is then not looked at, because under this product's `Referrer-Policy: no-referrer` browsers
/// send `Origin: null` with every plain form POST (the sign-in form included).
fn cross_site(req: &ServiceRequest) -> bool {
    let h = req.headers();
    match h.get("sec-fetch-site").and_then(|v| v.to_str().ok()) {
        Some("same-origin") => return false,
        Some("none") | None => {}
        Some(_) => return true,
    }
    if let Some(origin) = h.get(header::ORIGIN).and_then(|v| v.to_str().ok()) {
        let host = match req.app_data::<actix_web::web::Data<AppState>>() {
            Some(state) => crate::web::client::public_host(req.request(), &state.proxies),
            None => crate::web::client::public_host(req.request(), &crate::web::client::Proxies::none()),
        };
        let origin_host = origin.split_once("://").map(|(_, rest)| rest).unwrap_or("");
        return origin == "null" || !origin_host.eq_ignore_ascii_case(&host);
    }
    false
}

/// Reads the urlencoded body to find `csrf_token`, then puts the body back for the handler.
async fn read_form_token(
    mut req: ServiceRequest,
) -> Result<(ServiceRequest, Option<String>), (ServiceRequest, actix_web::Error)> {
    let mut payload = req.take_payload();
    let mut body = BytesMut::new();
    while let Some(chunk) = payload.next().await {
        let chunk = match chunk {
            Ok(c) => c,
            Err(e) => return Err((req, e.into())),
        };
        if body.len() + chunk.len() > MAX_FORM_BODY {
            return Err((req, AppError::PayloadTooLarge.into()));
        }
        body.extend_from_slice(&chunk);
    }
    let body: Bytes = body.freeze();
    let token = url::form_urlencoded::parse(&body).find(|(k, _)| k == "csrf_token").map(|(_, v)| v.into_owned());
    req.set_payload(Payload::from(body));
    Ok((req, token))
}

/// The CSRF token of the sign-in form for a browser that has no session: an HMAC of a random
/// nonce kept in a cookie of its own. Showing the sign-in page (to anyone, as often as they
/// like) then stores nothing on the server; a session starts only when someone signs in. The
/// token is bound to the cookie by a key derived from the master key, so a cookie planted by
/// another site (or a sibling subdomain) comes without a token that matches it.
pub struct LoginCsrf {
    key: [u8; 32],
    secure: bool,
}

impl LoginCsrf {
    pub fn new(key: [u8; 32], secure: bool) -> Self {
        Self { key, secure }
    }

    /// `__Host-` over HTTPS: only this host, path `/`, `Secure`.
    fn cookie_name(&self) -> &'static str {
        if self.secure { "__Host-ea_login" } else { "ea_login" }
    }

    fn mac(&self, nonce: &str) -> String {
        use base64::Engine;
        use hmac::{Hmac, Mac};
        let mut mac = <Hmac<sha2::Sha256> as Mac>::new_from_slice(&self.key).expect("HMAC takes any key length");
        mac.update(b"login-form\0");
        mac.update(nonce.as_bytes());
        base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(mac.finalize().into_bytes())
    }

    fn nonce(&self, req: &actix_web::HttpRequest) -> Option<String> {
        let c = req.cookie(self.cookie_name())?;
        let v = c.value();
        (v.len() == 43 && v.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')).then(|| v.to_owned())
    }

    /// The token a sign-in form posted from this browser must carry, if it has the cookie.
    fn expected(&self, req: &actix_web::HttpRequest) -> Option<String> {
        self.nonce(req).map(|n| self.mac(&n))
    }

    /// The token for the sign-in form, and the cookie to set when the browser has none yet.
    pub fn token(&self, req: &actix_web::HttpRequest) -> (String, Option<actix_web::cookie::Cookie<'static>>) {
        if let Some(n) = self.nonce(req) {
            return (self.mac(&n), None);
        }
        let n = crate::auth::random_token(32);
        let cookie = actix_web::cookie::Cookie::build(self.cookie_name(), n.clone())
            .path("/")
            .http_only(true)
            .secure(self.secure)
            .same_site(actix_web::cookie::SameSite::Strict)
            .finish();
        (self.mac(&n), Some(cookie))
    }
}

pub(crate) fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}
