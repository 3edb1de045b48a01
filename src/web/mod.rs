//! The web layer: one routing table, the state handlers share, the page chrome, and static
//! files. Handlers extract, call one function of the library, and pick a template; no SQL and
//! no business rules here.

pub mod api;
pub mod auth;
pub mod cache;
pub mod client;
pub mod errors;
pub mod export;
pub mod filters;
pub mod forms;
pub mod health;
pub mod htmx;
pub mod login_guard;
pub mod metrics;
pub mod pages;
pub mod refusals;
pub mod security;
pub mod session;

use std::sync::Arc;

use actix_web::{HttpResponse, web};

use crate::config::Settings;
use crate::db::Db;
use crate::error::AppError;
use auth::CurrentUser;

/// What every handler can reach.
pub struct AppState {
    pub db: Db,
    pub modeler: crate::modeling::Modeler,
    /// Seals and opens stored secrets (the Defender client secret).
    pub secrets: crate::secrets::SecretBox,
    /// The Defender integration: what pages, the API and the jobs ask of it.
    pub defender: crate::defender::service::DefenderService,
    /// Delivers events to the destinations (webhooks, syslog); sends test events.
    pub notifier: crate::notify::Notifier,
    /// Evaluates the response rules and sends what they decided (`crate::rules`).
    pub rules: crate::rules::Runner,
    pub settings: Arc<Settings>,
    pub login_throttle: login_guard::LoginThrottle,
    /// Password checks that may run at once (each Argon2 check holds about 19 MiB).
    pub password_checks: login_guard::PasswordChecks,
    /// Browsers in which a user signed in before (device cookies).
    pub login_devices: login_guard::LoginDevices,
    /// The sign-in form's CSRF token for browsers without a session.
    pub login_csrf: security::LoginCsrf,
    /// Refusals written to the audit log once per actor, kind and minute.
    pub refusals: refusals::Refusals,
    /// Reverse proxies whose `X-Forwarded-*` (or `Forwarded`) headers are believed.
    pub proxies: client::Proxies,
    /// Entra sign-in's HTTP client and its discovery and key caches.
    pub sso: crate::sso::Sso,
    /// This instance's Prometheus metrics (`/metrics`).
    pub metrics: crate::metrics::Metrics,
    /// Background work (sync, re-model) that shutdown stops and waits for.
    pub background: crate::background::Background,
    /// The Endpoints list's filter choices and match counts, briefly kept.
    pub list_cache: pages::endpoints::ListCache,
    /// Endpoint pages' data, reused until the next commit.
    pub endpoint_pages: pages::endpoints::EndpointPages,
    /// Endpoint pages as rendered for a person, reused until the next commit.
    pub endpoint_views: pages::endpoints::EndpointViews,
    /// Sessions whose activity time was just written (one write per session and minute).
    pub activity_writes: session::ActivityWrites,
}

impl AppState {
    /// The client's address as the audit log and throttling see it.
    pub fn client_address(&self, req: &actix_web::HttpRequest) -> String {
        client::client_address(req, &self.proxies)
    }
}

/// The parts of the page every template shows: who is signed in, the CSRF token for forms and
/// htmx, and which navigation entry is current.
pub struct Layout {
    pub user: Option<CurrentUser>,
    pub csrf: String,
    pub nav: &'static str,
}

impl Layout {
    pub fn new(user: &CurrentUser, nav: &'static str) -> Self {
        Self { csrf: user.csrf.clone(), user: Some(user.clone()), nav }
    }

    pub fn is_admin(&self) -> bool {
        self.user.as_ref().is_some_and(|u| u.can(crate::auth::Role::Admin))
    }

    pub fn is_operator(&self) -> bool {
        self.user.as_ref().is_some_and(|u| u.can(crate::auth::Role::Operator))
    }
}

/// Form and path extractors are taken as `Result`s so that they cannot fail before the role
/// check: a caller without the role gets 403 whatever the body, and the input is validated after.
pub type Input<T> = Result<T, actix_web::Error>;

/// The input of a request whose caller was already checked, or a 400 saying what was wrong.
pub fn input<T>(i: Input<T>) -> Result<T, AppError> {
    i.map_err(|e| AppError::BadRequest(format!("The request was not understood: {e}")))
}

/// Renders an askama template into an HTML response.
pub fn html(t: &impl askama::Template) -> Result<HttpResponse, AppError> {
    Ok(html_text(t.render().map_err(|e| AppError::Internal(e.into()))?))
}

/// An HTML response of a page rendered earlier.
pub fn html_text(page: String) -> HttpResponse {
    HttpResponse::Ok().content_type("text/html; charset=utf-8").body(page)
}

/// Declares the routing table once: `routes` registers it with actix-web and `ROUTES` lists it,
/// so the tests that check every route (against every role, against the OpenAPI document) can
/// never miss one that was added later.
macro_rules! route_table {
    ($($method:ident $path:literal => $handler:path;)*) => {
        /// Every route of the application as (method, path pattern), in registration order.
        pub const ROUTES: &[(&str, &str)] = &[$((stringify!($method), $path)),*];

        pub fn routes(cfg: &mut web::ServiceConfig) {
            $(cfg.route($path, web::$method().to($handler));)*
        }
    };
}

route_table! {
    get "/static/{file}"                        => static_file;
    get "/healthz"                              => health::healthz;
    get "/readyz"                               => health::readyz;
    get "/metrics"                              => metrics::scrape;
    get "/login"                                => pages::login::show;
    post "/login"                               => pages::login::submit;
    post "/logout"                              => pages::login::logout;
    get "/login/entra"                          => pages::sso::start;
    get "/login/entra/callback"                 => pages::sso::callback;
    get "/"                                     => pages::dashboard::show;
    get "/endpoints"                            => pages::endpoints::list;
    get "/coverage"                             => pages::coverage::show;
    get "/endpoints.csv"                        => pages::endpoints::export_csv;
    post "/endpoints/import"                    => pages::endpoints::import_csv;
    get "/endpoints/{id}"                       => pages::endpoints::detail;
    get "/endpoints/{id}/tabs/{tab}"            => pages::endpoints::tab;
    post "/endpoints/{id}/actions"              => pages::actions::submit;
    get "/actions/{id}"                         => pages::actions::status;
    get "/actions/{id}/package"                 => pages::actions::package;
    get "/config/integrations"                  => pages::config::integrations;
    get "/config/integrations/defender"         => pages::defender::show;
    post "/config/integrations/defender"        => pages::defender::save;
    post "/config/integrations/defender/test"   => pages::defender::test;
    post "/config/integrations/defender/review" => pages::defender::review;
    get "/config/integrations/defender/sync"    => pages::defender::sync_status;
    post "/config/integrations/defender/sync"   => pages::defender::sync_now;
    post "/config/integrations/defender/confirm-stale" => pages::defender::confirm_stale;
    get "/config/sso"                           => pages::sso::show;
    post "/config/sso"                          => pages::sso::save;
    get "/config/profiles"                      => pages::config::profiles;
    get "/config/profiles/remodel"              => pages::config::remodel_progress;
    post "/config/profiles/remodel"             => pages::config::start_remodel;
    post "/config/profiles/{id}/enabled"        => pages::config::set_enabled;
    post "/config/profiles/{id}/defender-tag"   => pages::config::set_defender_tag;
    get "/users"                                => pages::users::list;
    post "/users"                               => pages::users::create;
    post "/users/{id}/role"                     => pages::users::set_role;
    post "/users/{id}/disabled"                 => pages::users::set_disabled;
    post "/users/{id}/password"                 => pages::users::reset_password;
    get "/tokens"                               => pages::tokens::list;
    post "/tokens"                              => pages::tokens::create;
    post "/tokens/{id}/revoke"                  => pages::tokens::revoke;
    get "/notifications"                        => pages::notifications::list;
    post "/notifications"                       => pages::notifications::create;
    get "/notifications/{id}"                   => pages::notifications::show;
    post "/notifications/{id}"                  => pages::notifications::update;
    post "/notifications/{id}/test"             => pages::notifications::test;
    post "/notifications/{id}/delete"           => pages::notifications::delete;
    get "/rules"                                => pages::rules::list;
    post "/rules"                               => pages::rules::create;
    post "/rules/dry-run"                       => pages::rules::dry_run_unsaved;
    post "/rules/pause"                         => pages::rules::pause;
    post "/rules/{id}/dry-run"                  => pages::rules::dry_run;
    post "/rules/{id}/enable"                   => pages::rules::enable;
    post "/rules/{id}/disable"                  => pages::rules::disable;
    post "/rules/{id}/delete"                   => pages::rules::delete;
    get "/rules/{id}/edit"                      => pages::rules::edit;
    post "/rules/{id}"                          => pages::rules::update;
    get "/approvals"                            => pages::rules::approvals;
    post "/approvals/{id}/approve"              => pages::rules::approve;
    post "/approvals/{id}/decline"              => pages::rules::decline;
    get "/audit"                                => pages::audit::list;
    post "/api/v1/observations"                 => api::observations::ingest;
    put "/api/v1/integrations/defender"         => api::integrations::put;
    post "/api/v1/integrations/defender/test"   => api::integrations::test;
    post "/api/v1/integrations/defender/sync"   => api::integrations::sync;
    get "/api/v1/integrations/defender/status"  => api::integrations::status;
    get "/api/v1/endpoints"                     => api::endpoints::list;
    get "/api/v1/endpoints.csv"                 => api::endpoints::export_csv;
    get "/api/v1/endpoints/{id}"                => api::endpoints::get;
    get "/api/v1/endpoints/{id}/risk-history"   => api::risk::endpoint_history;
    get "/api/v1/coverage"                      => api::endpoints::coverage_list;
    get "/api/v1/risk/summary"                  => api::risk::summary;
    get "/api/v1/endpoints/{id}/actions"        => api::actions::list;
    post "/api/v1/endpoints/{id}/actions"       => api::actions::submit;
    get "/api/v1/actions/{id}"                  => api::actions::status;
    get "/api/v1/actions/{id}/package"          => api::actions::package;
    get "/api/v1/destinations"                  => api::destinations::list;
    post "/api/v1/destinations"                 => api::destinations::create;
    put "/api/v1/destinations/{id}"             => api::destinations::update;
    patch "/api/v1/destinations/{id}"           => api::destinations::update;
    delete "/api/v1/destinations/{id}"          => api::destinations::delete;
    post "/api/v1/destinations/{id}/test"       => api::destinations::test;
    get "/api/v1/destinations/{id}/deliveries"  => api::destinations::deliveries;
    get "/api/v1/rules"                         => api::rules::list;
    post "/api/v1/rules"                        => api::rules::create;
    post "/api/v1/rules/dry-run"                => api::rules::dry_run_unsaved;
    get "/api/v1/rules/pause"                   => api::rules::pause_state;
    put "/api/v1/rules/pause"                   => api::rules::set_pause;
    get "/api/v1/rules/{id}"                    => api::rules::show;
    put "/api/v1/rules/{id}"                    => api::rules::update;
    delete "/api/v1/rules/{id}"                 => api::rules::delete;
    post "/api/v1/rules/{id}/dry-run"           => api::rules::dry_run;
    post "/api/v1/rules/{id}/enable"            => api::rules::enable;
    post "/api/v1/rules/{id}/disable"           => api::rules::disable;
    get "/api/v1/approvals"                     => api::rules::approvals;
    post "/api/v1/approvals/{id}/approve"       => api::rules::approve;
    post "/api/v1/approvals/{id}/decline"       => api::rules::decline;
    get "/api/v1/profiles/defender-tags"        => api::profiles::list;
    put "/api/v1/profiles/{id}/defender-tag"    => api::profiles::put;
    delete "/api/v1/profiles/{id}/defender-tag" => api::profiles::delete;
    get "/api/v1/openapi.json"                  => api::openapi::document;
}

/// Static assets are compiled into the binary, so the product runs from one file, offline.
const STATIC_FILES: &[(&str, &str, &[u8])] = &[
    ("htmx-2.0.11.min.js", "text/javascript; charset=utf-8", include_bytes!("../../static/vendor/htmx-2.0.11.min.js")),
    ("app.css", "text/css; charset=utf-8", include_bytes!("../../static/app.css")),
    ("app.js", "text/javascript; charset=utf-8", include_bytes!("../../static/app.js")),
];

async fn static_file(name: web::Path<String>) -> Result<HttpResponse, AppError> {
    let (_, content_type, bytes) =
        STATIC_FILES.iter().find(|(n, _, _)| *n == name.as_str()).ok_or(AppError::NotFound)?;
    Ok(HttpResponse::Ok()
        .content_type(*content_type)
        .insert_header(("Cache-Control", "public, max-age=3600"))
        .body(*bytes))
}

/// Anything not in the routing table.
pub async fn not_found() -> Result<HttpResponse, AppError> {
    Err(AppError::NotFound)
}

/// One log line per request, with an id that is also returned as `X-Request-Id`, and the
/// request's count and latency in the metrics. The id is the one a load balancer or proxy sent
/// in `X-Request-Id` when it is a plain token (so one request can be followed across the proxy
/// and the instance), else a new one; everything logged while handling the request carries it
/// (a `request` span). The query string is not logged: it may hold search terms.
pub async fn log_requests(
    req: actix_web::dev::ServiceRequest,
    next: actix_web::middleware::Next<impl actix_web::body::MessageBody + 'static>,
) -> Result<actix_web::dev::ServiceResponse<impl actix_web::body::MessageBody>, actix_web::Error> {
    use tracing::Instrument;
    let id = req
        .headers()
        .get("x-request-id")
        .and_then(|v| v.to_str().ok())
        .filter(|v| is_request_id(v))
        .map(str::to_owned)
        .unwrap_or_else(|| hex::encode(rand::random::<[u8; 8]>()));
    let (method, path) = (req.method().clone(), req.path().to_owned());
    let started = std::time::Instant::now();
    let span = tracing::info_span!("request", request_id = %id);
    let mut res = next.call(req).instrument(span).await?;
    let took = started.elapsed();
    if let Some(state) = res.request().app_data::<web::Data<AppState>>() {
        // The matched pattern, not the path: one series per route, whatever the ids.
        let route = res.request().match_pattern();
        state.metrics.observe_request(&method, route, res.status().as_u16(), took);
    }
    if let Ok(v) = actix_web::http::header::HeaderValue::from_str(&id) {
        res.headers_mut().insert(actix_web::http::header::HeaderName::from_static("x-request-id"), v);
    }
    tracing::info!(
        request_id = %id,
        method = %method,
        path = %path,
        status = res.status().as_u16(),
        ms = took.as_millis() as u64,
        "request"
    );
    Ok(res)
}

/// A request id taken from a client: short, and nothing that could forge a log line.
fn is_request_id(v: &str) -> bool {
    (1..=64).contains(&v.len()) && v.bytes().all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.'))
}
