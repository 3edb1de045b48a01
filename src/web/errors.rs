//! How an error is shown, decided here because only here the request is visible: JSON for the
//! API, a message swapped into the page's message area for htmx requests (never a blank swap),
//! a readable page with the right status for everything else.

use actix_web::body::{BoxBody, EitherBody, MessageBody};
use actix_web::dev::{ServiceRequest, ServiceResponse};
use actix_web::http::{StatusCode, header};
use actix_web::middleware::Next;
use actix_web::{HttpRequest, HttpResponse};
use askama::Template;

use crate::error::AppError;
use crate::web::htmx::Htmx;

#[derive(Template)]
#[template(path = "error.html")]
struct ErrorPage<'a> {
    status: u16,
    title: &'a str,
    message: &'a str,
}

#[derive(Template)]
#[template(path = "_flash.html")]
pub struct Flash<'a> {
    pub kind: &'a str,
    pub message: &'a str,
}

pub async fn render_errors(
    req: ServiceRequest,
    next: Next<impl MessageBody + 'static>,
) -> Result<ServiceResponse<EitherBody<impl MessageBody>>, actix_web::Error> {
    let res = next.call(req).await?;
    let status = res.status();
    let is_error = status.is_client_error() || status.is_server_error();
    // A page a handler rendered on purpose with an error status (a form with its messages)
    // stays as it is; errors and empty error responses get presented.
    let empty =
        matches!(res.response().body().size(), actix_web::body::BodySize::Sized(0) | actix_web::body::BodySize::None);
    if !is_error || (res.response().error().is_none() && !empty) {
        return Ok(res.map_into_left_body());
    }
    let message = match res.response().error() {
        Some(e) => match e.as_error::<AppError>() {
            Some(app) => app.to_string(),
            // Errors made by actix itself (bad JSON, wrong method...) explain themselves, but
            // a 5xx from anywhere says nothing about the inside.
            None if status.is_server_error() => AppError::Internal(anyhow::anyhow!("")).to_string(),
            None => e.to_string(),
        },
        None => default_message(status).to_owned(),
    };
    let (req, res) = res.into_parts();
    let replacement = present(&req, status, &message, res.headers());
    Ok(ServiceResponse::new(req, replacement).map_into_right_body())
}

/// An API error as RFC 9457 "Problem Details" (`application/problem+json`): a stable `type`
/// (`urn:endpoint-analytics:problem:<code>`), the HTTP reason as `title`, the `status`, the
/// `detail` in plain words, and the same facts as `error` (`code`, `message`), the shape API
/// clients of the first versions read. `extra` adds members (field errors, the open action).
pub fn problem(status: StatusCode, code: &str, detail: &str, extra: serde_json::Value) -> HttpResponse {
    let mut body = serde_json::json!({
        "type": format!("urn:endpoint-analytics:problem:{code}"),
        "title": status.canonical_reason().unwrap_or("Error"),
        "status": status.as_u16(),
        "detail": detail,
        "error": {"code": code, "message": detail},
    });
    if let (Some(b), serde_json::Value::Object(more)) = (body.as_object_mut(), extra) {
        b.extend(more);
    }
    HttpResponse::build(status).content_type("application/problem+json").body(body.to_string())
}

fn default_message(status: StatusCode) -> &'static str {
    match status {
        StatusCode::NOT_FOUND => "The page or item was not found.",
        StatusCode::METHOD_NOT_ALLOWED => "This address does not accept that kind of request.",
        StatusCode::FORBIDDEN => "You do not have permission to do this.",
        StatusCode::UNAUTHORIZED => "Please sign in.",
        StatusCode::PAYLOAD_TOO_LARGE => "The request body is too large.",
        s if s.is_server_error() => "Something went wrong on our side. Please try again.",
        _ => "The request could not be handled.",
    }
}

fn present(
    req: &HttpRequest,
    status: StatusCode,
    message: &str,
    original: &header::HeaderMap,
) -> HttpResponse<BoxBody> {
    // Machines (automation, scrapers) get JSON errors, never the login page.
    let mut res = if req.path().starts_with("/api/") || req.path() == "/metrics" {
        let code = status.canonical_reason().unwrap_or("error").to_ascii_lowercase().replace(' ', "_");
        problem(status, &code, message, serde_json::Value::Null)
    } else if status == StatusCode::UNAUTHORIZED {
        login_redirect(req)
    } else if Htmx::of(req).request {
        let html = Flash { kind: "error", message }.render().unwrap_or_default();
        // Keep the status (so htmx treats it as an error) but show the message in place.
        HttpResponse::build(status)
            .insert_header(("HX-Retarget", "#flash"))
            .insert_header(("HX-Reswap", "innerHTML"))
            .content_type("text/html; charset=utf-8")
            .body(html)
    } else {
        let title = status.canonical_reason().unwrap_or("Error");
        let html = ErrorPage { status: status.as_u16(), title, message }.render().unwrap_or_default();
        HttpResponse::build(status).content_type("text/html; charset=utf-8").body(html)
    };
    for name in [header::ALLOW, header::RETRY_AFTER, header::WWW_AUTHENTICATE] {
        if let Some(v) = original.get(&name) {
            res.headers_mut().insert(name, v.clone());
        }
    }
    res
}

/// Sends a signed-out visitor to the login page, back to where they were afterwards.
fn login_redirect(req: &HttpRequest) -> HttpResponse {
    let next = if req.method() == actix_web::http::Method::GET && !Htmx::of(req).request {
        req.uri().path_and_query().map(|p| p.as_str()).unwrap_or("/")
    } else {
        "/"
    };
    let location = format!("/login?next={}", url::form_urlencoded::byte_serialize(next.as_bytes()).collect::<String>());
    if Htmx::of(req).request {
        // A redirect inside an htmx request would swap the login page into a fragment.
        HttpResponse::Unauthorized().insert_header(("HX-Redirect", location)).finish()
    } else {
        HttpResponse::SeeOther().insert_header((header::LOCATION, location)).finish()
    }
}

/// Turns actix's own extractor errors (bad JSON, bad query string, bad path) into 400s that
/// say what was wrong.
pub fn bad_input(err: impl std::fmt::Display) -> actix_web::Error {
    AppError::BadRequest(format!("The request was not understood: {err}")).into()
}
