//! The Defender for Endpoint API client: token handling, rate limiting, retries, paging and
//! machine actions. See `docs/defender-client.md` for the behaviour and the choices made.

use crate::domain::ids::is_guid;
use std::collections::{BTreeMap, HashSet};
use std::fmt;
use std::marker::PhantomData;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use reqwest::header::{self, HeaderMap};
use reqwest::{Method, StatusCode};
use serde::Serialize;
use serde::de::DeserializeOwned;
use serde_json::Value;
use tokio::time::Instant;
use url::Url;

use super::auth::{self, Credentials, TokenErrorBody, TokenResponse, classify_token_error, jwt_claims, roles_of};
use super::cloud::Cloud;
use super::dto::{
    Alert, ErrorEnvelope, ExportVulnerability, HasId, Machine, MachineAction, MachineVulnerability, Vulnerability,
};
use super::error::DefenderError;
use super::limiter::{Limiter, RateLimit};
use crate::outbound::{BodyError, MAX_SMALL_ANSWER, read_capped};

/// The APIs the client calls; names match the simulator's counters.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Api {
    Token,
    ListMachines,
    ListMachineActions,
    GetMachineAction,
    Isolate,
    Unisolate,
    RunAntiVirusScan,
    ListAlerts,
    ListVulnerabilities,
    MachineVulnerabilities,
    MachinesVulnerabilities,
    ExportAssessmentJson,
    ExportAssessmentDelta,
    AdvancedQuery,
}

impl Api {
    pub fn as_str(self) -> &'static str {
        match self {
            Api::Token => "Token",
            Api::ListMachines => "ListMachines",
            Api::ListMachineActions => "ListMachineActions",
            Api::GetMachineAction => "GetMachineAction",
            Api::Isolate => "Isolate",
            Api::Unisolate => "Unisolate",
            Api::RunAntiVirusScan => "RunAntiVirusScan",
            Api::ListAlerts => "ListAlerts",
            Api::ListVulnerabilities => "ListVulnerabilities",
            Api::MachineVulnerabilities => "MachineVulnerabilities",
            Api::MachinesVulnerabilities => "MachinesVulnerabilities",
            Api::ExportAssessmentJson => "ExportAssessmentJson",
            Api::ExportAssessmentDelta => "ExportAssessmentDelta",
            Api::AdvancedQuery => "AdvancedQuery",
        }
    }

    /// Roles any one of which allows the call.
    pub fn roles(self) -> &'static [&'static str] {
        match self {
            Api::Token => &[],
            Api::ListMachines | Api::ListMachineActions | Api::GetMachineAction => {
                &["Machine.Read.All", "Machine.ReadWrite.All"]
            }
            Api::Isolate | Api::Unisolate => &["Machine.Isolate"],
            Api::RunAntiVirusScan => &["Machine.Scan"],
            Api::ListAlerts => &["Alert.Read.All", "Alert.ReadWrite.All"],
            Api::ListVulnerabilities
            | Api::MachineVulnerabilities
            | Api::MachinesVulnerabilities
            | Api::ExportAssessmentJson
            | Api::ExportAssessmentDelta => &["Vulnerability.Read.All"],
            Api::AdvancedQuery => &["AdvancedQuery.Read.All"],
        }
    }
}

impl fmt::Display for Api {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Where to sign in and which API host to call.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Target {
    /// e.g. `https://login.microsoftonline.com` (the token URL is
    /// `{login}/{tenant}/oauth2/v2.0/token`).
    pub login_base_url: Url,
    /// e.g. `https://api.security.microsoft.com` (calls go to `{api}/api/...`).
    pub api_base_url: Url,
    /// e.g. `https://api.securitycenter.microsoft.com/.default`.
    pub scope: String,
}

impl Target {
    /// The cloud's standard hosts and scope.
    pub fn cloud(cloud: Cloud) -> Target {
        Target {
            login_base_url: Url::parse(cloud.login_base_url()).expect("static URL"),
            api_base_url: Url::parse(cloud.api_base_url()).expect("static URL"),
            scope: cloud.scope().to_string(),
        }
    }

    /// Commercial cloud with a geo API host (`us`, `eu`, `uk`, `au`, `swa`, `ina`); `None`
    /// region = the global host. Other clouds have no regional hosts.
    pub fn cloud_region(cloud: Cloud, region: Option<&str>) -> Result<Target, DefenderError> {
        let mut t = Target::cloud(cloud);
        if let Some(r) = region.map(str::trim).filter(|r| !r.is_empty()) {
            let base = cloud.regional_api_base_url(r).ok_or_else(|| {
                DefenderError::InvalidArgument(format!(
                    "Unknown API region '{r}' for the {} cloud (allowed: {}).",
                    cloud.label(),
                    if cloud == Cloud::Commercial {
                        super::cloud::COMMERCIAL_REGIONS.join(", ")
                    } else {
                        "none".into()
                    }
                ))
            })?;
            t.api_base_url = Url::parse(&base).expect("static URL");
        }
        Ok(t)
    }

    /// Explicit URLs (tests, simulator, private deployments). `scope` defaults to the
    /// commercial MDE scope. URLs must be http(s) with a host and no query/fragment.
    pub fn custom(login_base_url: &str, api_base_url: &str, scope: Option<&str>) -> Result<Target, DefenderError> {
        let parse = |what: &str, s: &str| -> Result<Url, DefenderError> {
            let u = Url::parse(s.trim())
                .map_err(|e| DefenderError::InvalidArgument(format!("The {what} URL is not valid: {e}.")))?;
            if !matches!(u.scheme(), "http" | "https")
                || u.host_str().is_none()
                || u.query().is_some()
                || u.fragment().is_some()
                || !u.username().is_empty()
                || u.password().is_some()
            {
                return Err(DefenderError::InvalidArgument(format!(
                    "The {what} URL must be http(s)://host[:port][/path] without credentials, query or fragment."
                )));
            }
            Ok(u)
        };
        let scope = scope.map(str::trim).filter(|s| !s.is_empty()).unwrap_or(super::cloud::COMMERCIAL_SCOPE);
        Ok(Target {
            login_base_url: parse("sign-in", login_base_url)?,
            api_base_url: parse("API", api_base_url)?,
            scope: scope.to_string(),
        })
    }

    fn token_url(&self, tenant: &str) -> Result<Url, DefenderError> {
        let mut u = self.login_base_url.clone();
        {
            let mut seg = u
                .path_segments_mut()
                .map_err(|_| DefenderError::InvalidArgument("The sign-in URL cannot be a base.".into()))?;
            seg.pop_if_empty().push(tenant).push("oauth2").push("v2.0").push("token");
        }
        Ok(u)
    }

    /// `{api base}{path}?{query}`; `query` is already encoded.
    fn api_url(&self, path: &str, query: &str) -> Result<Url, DefenderError> {
        let base = self.api_base_url.as_str().trim_end_matches('/');
        let s = if query.is_empty() { format!("{base}{path}") } else { format!("{base}{path}?{query}") };
        Url::parse(&s).map_err(|e| DefenderError::InvalidArgument(format!("bad API URL: {e}")))
    }

    /// Same scheme, host and port as the API base, and under its path.
    fn same_origin(&self, link: &Url) -> bool {
        let b = &self.api_base_url;
        link.scheme() == b.scheme()
            && link.host_str().map(str::to_ascii_lowercase) == b.host_str().map(str::to_ascii_lowercase)
            && link.port_or_known_default() == b.port_or_known_default()
            && link.path().starts_with(b.path().trim_end_matches('/'))
            && link.username().is_empty()
            && link.password().is_none()
    }
}

/// Tunables. `Default` is what production uses; tests shorten timeouts and backoff.
#[derive(Debug, Clone)]
pub struct ClientOptions {
    /// TCP/TLS connect timeout of every request.
    pub connect_timeout: Duration,
    /// Total time of one request including reading the body.
    pub request_timeout: Duration,
    /// Retries after the first attempt (429, 5xx, timeouts, connection failures).
    pub max_retries: u32,
    /// First backoff delay (doubles per retry, with jitter: 50–100 % of the value).
    pub backoff_base: Duration,
    /// Largest backoff delay.
    pub backoff_max: Duration,
    /// A `Retry-After` longer than this is not waited for: `Throttled` is returned.
    pub max_retry_after: Duration,
    /// Stop a listing after this many pages (`PageLimit`).
    pub max_pages: usize,
    /// Client-side rate limiting (documented per-API budgets). On by default.
    pub rate_limiting: bool,
    /// Replace the documented budget of some APIs (tests, or a more careful operator).
    pub rate_limit_overrides: Vec<(Api, RateLimit)>,
    /// Length of the limiter's "minute" (the "hour" is 60 of them). 60 s; tests shrink it.
    pub rate_window: Duration,
    /// Added to both windows to absorb network jitter.
    pub rate_margin: Duration,
    /// Refresh a cached token this long before it expires (capped at half its lifetime).
    pub token_refresh_margin: Duration,
    /// `pageSize` of the export-assessment pager.
    pub export_page_size: usize,
    /// Where every request is counted for `/metrics` (the application's); none for a client
    /// used on its own (tests, benchmarks).
    pub metrics: Option<crate::metrics::Metrics>,
}

impl Default for ClientOptions {
    fn default() -> Self {
        ClientOptions {
            connect_timeout: Duration::from_secs(10),
            request_timeout: Duration::from_secs(120),
            max_retries: 5,
            backoff_base: Duration::from_secs(1),
            backoff_max: Duration::from_secs(60),
            max_retry_after: Duration::from_secs(300),
            max_pages: 5_000,
            rate_limiting: true,
            rate_limit_overrides: Vec::new(),
            rate_window: Duration::from_secs(60),
            rate_margin: Duration::from_secs(1),
            token_refresh_margin: Duration::from_secs(300),
            export_page_size: 20_000,
            metrics: None,
        }
    }
}

/// Counters of one API.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct ApiStats {
    /// Requests sent (including retries).
    pub calls: u64,
    /// 429 answers received.
    pub throttled: u64,
    /// Retries (after 429, 5xx, timeouts, connection failures, or a 401 refresh).
    pub retries: u64,
    /// Calls that ended in an error returned to the caller.
    pub errors: u64,
    /// Time spent waiting in the client-side rate limiter.
    pub limiter_wait_ms: u64,
}

/// Counters since the client was created (all clones share them).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct CallStats {
    /// Keyed by [`Api::as_str`] (`Token` = token requests).
    pub per_api: BTreeMap<String, ApiStats>,
    /// API requests sent (token requests not included).
    pub calls: u64,
    /// 429 answers received from the API.
    pub throttled: u64,
    pub retries: u64,
    /// Token requests sent to Entra (including retries).
    pub token_requests: u64,
    /// Tokens refreshed because the API answered 401.
    pub token_refreshes_after_401: u64,
    /// Total time spent in the client-side rate limiter.
    pub limiter_wait_ms: u64,
}

impl CallStats {
    pub fn api(&self, api: Api) -> ApiStats {
        self.per_api.get(api.as_str()).cloned().unwrap_or_default()
    }
}

/// How to isolate.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum IsolationType {
    Full,
    Selective,
    /// "Contain device" for unmanaged (discovered, not onboarded) devices.
    UnManagedDevice,
}

impl IsolationType {
    pub fn as_str(self) -> &'static str {
        match self {
            IsolationType::Full => "Full",
            IsolationType::Selective => "Selective",
            IsolationType::UnManagedDevice => "UnManagedDevice",
        }
    }
    pub fn parse(s: &str) -> Option<Self> {
        [IsolationType::Full, IsolationType::Selective, IsolationType::UnManagedDevice]
            .into_iter()
            .find(|t| t.as_str().eq_ignore_ascii_case(s.trim()))
    }
}

/// Antivirus scan kind.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ScanType {
    Quick,
    Full,
}

impl ScanType {
    pub fn as_str(self) -> &'static str {
        match self {
            ScanType::Quick => "Quick",
            ScanType::Full => "Full",
        }
    }
    pub fn parse(s: &str) -> Option<Self> {
        [ScanType::Quick, ScanType::Full].into_iter().find(|t| t.as_str().eq_ignore_ascii_case(s.trim()))
    }
}

/// One permission the product needs, and whether the token grants it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct PermissionCheck {
    /// e.g. `Machine.Read.All or Machine.ReadWrite.All`.
    pub permission: String,
    /// Roles any one of which satisfies it.
    pub accepted: Vec<String>,
    /// What the product uses it for.
    pub used_for: String,
    /// The role that grants it, if any.
    pub granted_by: Option<String>,
}

impl PermissionCheck {
    pub fn granted(&self) -> bool {
        self.granted_by.is_some()
    }
}

/// Outcome of [`DefenderClient::test_connection`] once a token was obtained.
#[derive(Debug, Clone, PartialEq)]
pub struct ConnectionReport {
    /// The token's `roles` claim.
    pub roles: Vec<String>,
    /// Tenant (`tid`) and audience (`aud`) of the token, when present.
    pub token_tenant: Option<String>,
    pub token_audience: Option<String>,
    pub token_expires_in_secs: Option<u64>,
    /// Every permission of the spec, granted or not.
    pub permissions: Vec<PermissionCheck>,
    /// Labels of the missing ones (e.g. `Machine.Scan`).
    pub missing: Vec<String>,
    /// The one real API call (`GET /api/machines?$top=1`): number of machines returned, or
    /// why it failed.
    pub api_call: Result<usize, DefenderError>,
}

impl ConnectionReport {
    /// Token obtained, the API call worked and nothing is missing.
    pub fn all_good(&self) -> bool {
        self.api_call.is_ok() && self.missing.is_empty()
    }
}

/// The permissions the spec lists: (label, accepted roles, used for).
pub const REQUIRED_PERMISSIONS: &[(&str, &[&str], &str)] = &[
    (
        "Machine.Read.All or Machine.ReadWrite.All",
        &["Machine.Read.All", "Machine.ReadWrite.All"],
        "machine inventory and machine action status",
    ),
    ("Alert.Read.All or Alert.ReadWrite.All", &["Alert.Read.All", "Alert.ReadWrite.All"], "alerts (risk level)"),
    ("Machine.Isolate", &["Machine.Isolate"], "isolate and release devices"),
    ("Machine.Scan", &["Machine.Scan"], "antivirus scans"),
    ("Vulnerability.Read.All", &["Vulnerability.Read.All"], "vulnerabilities (exposure level)"),
    ("AdvancedQuery.Read.All", &["AdvancedQuery.Read.All"], "advanced hunting queries"),
    ("Software.Read.All", &["Software.Read.All"], "software and devices by software"),
];

struct CachedToken {
    value: String,
    generation: u64,
    roles: Vec<String>,
    claims: Option<Value>,
    refresh_at: Instant,
    expires_in_secs: Option<u64>,
}

struct Inner {
    creds: Credentials,
    target: Target,
    options: ClientOptions,
    http: reqwest::Client,
    token: tokio::sync::Mutex<Option<Arc<CachedToken>>>,
    generation: std::sync::atomic::AtomicU64,
    limiter: Limiter,
    stats: Mutex<CallStats>,
}

/// Client for one app registration and one API host. Cheap to clone; clones share the
/// token cache, the rate limiter and the statistics – use one client for a whole sync and
/// the action poller so the limits hold across them.
#[derive(Clone)]
pub struct DefenderClient {
    inner: Arc<Inner>,
}

impl fmt::Debug for DefenderClient {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("DefenderClient")
            .field("tenant_id", &self.inner.creds.tenant_id)
            .field("client_id", &self.inner.creds.client_id)
            .field("client_secret", &"***")
            .field("login", &self.inner.target.login_base_url.as_str())
            .field("api", &self.inner.target.api_base_url.as_str())
            .finish()
    }
}

/// A successful HTTP answer.
struct Answer {
    status: StatusCode,
    body: Vec<u8>,
}

/// One API request as `attempt` sends it.
#[derive(Clone, Copy)]
struct Req<'a> {
    api: Api,
    method: &'a Method,
    url: &'a Url,
    body: Option<&'a Value>,
    idempotent: bool,
}

enum Attempt {
    Done(Answer),
    Retry { wait: Duration, last: DefenderError },
    Refresh { generation: u64 },
    Fail(DefenderError),
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

fn check_machine_id(id: &str) -> Result<&str, DefenderError> {
    let id = id.trim();
    if super::links::is_machine_id(id) {
        Ok(id)
    } else {
        Err(DefenderError::InvalidArgument("Not a Defender machine id (expected 40 hexadecimal digits).".into()))
    }
}

fn check_comment(comment: &str) -> Result<&str, DefenderError> {
    let c = comment.trim();
    if c.is_empty() {
        return Err(DefenderError::InvalidArgument("A comment is required for machine actions.".into()));
    }
    if c.chars().count() > 1000 {
        return Err(DefenderError::InvalidArgument("The comment is too long (at most 1000 characters).".into()));
    }
    Ok(c)
}

/// The largest answer read from the API: a page of 10,000 machines or 200,000 export rows is
/// well under it.
pub const MAX_API_ANSWER: usize = 64 << 20;

/// Short, printable excerpt of untrusted text.
fn excerpt(s: &str, max: usize) -> String {
    let mut out: String = s.chars().filter(|c| !c.is_control()).take(max).collect();
    if s.chars().count() > max {
        out.push('…');
    }
    out
}

fn retry_after(headers: &HeaderMap) -> Option<Duration> {
    let v = headers.get(header::RETRY_AFTER)?.to_str().ok()?.trim();
    if let Ok(secs) = v.parse::<u64>() {
        return Some(Duration::from_secs(secs));
    }
    let at = chrono::DateTime::parse_from_rfc2822(v).ok()?;
    let secs = (at.timestamp() - chrono::Utc::now().timestamp()).max(0) as u64;
    Some(Duration::from_secs(secs))
}

impl DefenderClient {
    /// Build a client; validates the tenant id and the URLs, makes no request.
    pub fn new(creds: Credentials, target: Target, options: ClientOptions) -> Result<Self, DefenderError> {
        let tenant = creds.tenant_id.trim().to_string();
        if !auth::valid_tenant(&tenant) {
            return Err(DefenderError::InvalidArgument(
                "The tenant ID must be a GUID or a domain name such as contoso.onmicrosoft.com.".into(),
            ));
        }
        if creds.client_id.trim().is_empty() {
            return Err(DefenderError::InvalidArgument("The client (application) ID is empty.".into()));
        }
        if creds.client_secret.is_empty() {
            return Err(DefenderError::InvalidArgument("The client secret is empty.".into()));
        }
        // Validate the URLs the same way as Target::custom (fields are public).
        let target = Target {
            scope: target.scope.clone(),
            ..Target::custom(target.login_base_url.as_str(), target.api_base_url.as_str(), Some(&target.scope))?
        };
        let http = reqwest::Client::builder()
            .connect_timeout(options.connect_timeout)
            .timeout(options.request_timeout)
            // Never follow redirects: the client talks to the configured hosts only.
            .redirect(reqwest::redirect::Policy::none())
            .user_agent(concat!("endpoint-analytics/", env!("CARGO_PKG_VERSION")))
            .build()
            .map_err(|e| DefenderError::Unreachable(format!("HTTP client: {e}")))?;
        let limiter = Limiter::new(
            options.rate_limiting,
            options.rate_window,
            options.rate_margin,
            &options.rate_limit_overrides,
        );
        Ok(DefenderClient {
            inner: Arc::new(Inner {
                creds: Credentials {
                    tenant_id: tenant,
                    client_id: creds.client_id.trim().to_string(),
                    client_secret: creds.client_secret,
                },
                target,
                options,
                http,
                token: tokio::sync::Mutex::new(None),
                generation: std::sync::atomic::AtomicU64::new(0),
                limiter,
                stats: Mutex::new(CallStats::default()),
            }),
        })
    }

    pub fn target(&self) -> &Target {
        &self.inner.target
    }

    /// A snapshot of the call counters.
    pub fn stats(&self) -> CallStats {
        lock(&self.inner.stats).clone()
    }

    fn stat(&self, api: Api, f: impl FnOnce(&mut ApiStats, &mut CallStats)) {
        let mut s = lock(&self.inner.stats);
        let mut a = s.per_api.remove(api.as_str()).unwrap_or_default();
        f(&mut a, &mut s);
        s.per_api.insert(api.as_str().to_string(), a);
    }

    /// Counts one request for `/metrics`: its HTTP status, or `None` when no answer came.
    fn observe(&self, api: Api, status: Option<StatusCode>) {
        if let Some(m) = &self.inner.options.metrics {
            m.observe_api_call(api, status.map(|s| s.as_u16()));
        }
    }

    /// Remove the secret and any cached token from text that came from the network.
    fn scrub(&self, s: &str) -> String {
        let mut out = s.to_string();
        let secret = self.inner.creds.client_secret.expose();
        if secret.len() >= 4 {
            out = out.replace(secret, "***");
        }
        if let Ok(guard) = self.inner.token.try_lock()
            && let Some(t) = guard.as_ref()
        {
            out = out.replace(&t.value, "***");
        }
        out
    }

    fn backoff(&self, attempt: u32) -> Duration {
        let o = &self.inner.options;
        let exp = o.backoff_base.saturating_mul(1u32 << attempt.saturating_sub(1).min(16));
        let capped = exp.min(o.backoff_max);
        capped.mul_f64(0.5 + rand::random::<f64>() * 0.5)
    }

    fn transport_error(&self, e: &reqwest::Error) -> DefenderError {
        if e.is_timeout() {
            return DefenderError::Timeout;
        }
        // Walk the source chain for a useful cause, without the URL.
        let mut cause = String::new();
        let mut src: Option<&dyn std::error::Error> = std::error::Error::source(e);
        while let Some(s) = src {
            cause = s.to_string();
            src = s.source();
        }
        if cause.is_empty() {
            cause = e.to_string();
        }
        let what = if e.is_connect() {
            "connection failed"
        } else if e.is_body() || e.is_decode() {
            "connection broken while reading the answer"
        } else {
            "request failed"
        };
        DefenderError::Unreachable(self.scrub(&excerpt(&format!("{what}: {cause}"), 300)))
    }

    // ---------------------------------------------------------------- tokens

    /// The cached token, or a new one. `stale` = the generation that got a 401: refresh only
    /// if the cache still holds it (so concurrent 401s cause one refresh).
    async fn token(&self, stale: Option<u64>) -> Result<Arc<CachedToken>, DefenderError> {
        let mut guard = self.inner.token.lock().await;
        if let Some(t) = guard.as_ref() {
            let fresh = Instant::now() < t.refresh_at;
            match stale {
                None if fresh => return Ok(t.clone()),
                Some(g) if g != t.generation && fresh => return Ok(t.clone()),
                _ => {}
            }
        }
        let t = Arc::new(self.fetch_token().await?);
        *guard = Some(t.clone());
        Ok(t)
    }

    /// Drops the cached token if it is still this generation: the next call gets a new one.
    async fn forget_token(&self, generation: u64) {
        let mut guard = self.inner.token.lock().await;
        if guard.as_ref().is_some_and(|t| t.generation == generation) {
            *guard = None;
        }
    }

    async fn fetch_token(&self) -> Result<CachedToken, DefenderError> {
        let inner = &self.inner;
        let url = inner.target.token_url(&inner.creds.tenant_id)?;
        let form = [
            ("grant_type", "client_credentials"),
            ("client_id", inner.creds.client_id.as_str()),
            ("client_secret", inner.creds.client_secret.expose()),
            ("scope", inner.target.scope.as_str()),
        ];
        let mut attempt = 0u32;
        loop {
            let waited = inner.limiter.acquire(Api::Token).await;
            self.stat(Api::Token, |a, s| {
                a.calls += 1;
                a.limiter_wait_ms += waited.as_millis() as u64;
                s.token_requests += 1;
                s.limiter_wait_ms += waited.as_millis() as u64;
            });
            let res = inner.http.post(url.clone()).header(header::ACCEPT, "application/json").form(&form).send().await;
            self.observe(Api::Token, res.as_ref().ok().map(|r| r.status()));
            let (err, wait) = match res {
                Err(e) => (self.transport_error(&e), None),
                Ok(resp) => {
                    let status = resp.status();
                    let ra = retry_after(resp.headers());
                    let body = match read_capped(resp, MAX_SMALL_ANSWER).await {
                        Ok(b) => b,
                        Err(BodyError::TooLarge(limit)) => {
                            self.stat(Api::Token, |a, _| a.errors += 1);
                            return Err(DefenderError::TooLarge { limit_mib: limit >> 20 });
                        }
                        Err(BodyError::Transport(e)) => {
                            let err = self.transport_error(&e);
                            if attempt >= inner.options.max_retries {
                                self.stat(Api::Token, |a, _| a.errors += 1);
                                return Err(err);
                            }
                            attempt += 1;
                            self.stat(Api::Token, |a, s| {
                                a.retries += 1;
                                s.retries += 1;
                            });
                            tokio::time::sleep(self.backoff(attempt)).await;
                            continue;
                        }
                    };
                    if status.is_success() {
                        let tr: TokenResponse = serde_json::from_slice(&body).map_err(|e| {
                            DefenderError::BadResponse(format!("token endpoint answer is not a token response: {e}"))
                        })?;
                        return Ok(self.cache_entry(tr));
                    }
                    if status == StatusCode::TOO_MANY_REQUESTS {
                        self.stat(Api::Token, |a, _| a.throttled += 1);
                    }
                    match serde_json::from_slice::<TokenErrorBody>(&body) {
                        Ok(b) if b.error.is_some() || !b.error_codes.is_empty() => {
                            match classify_token_error(status.as_u16(), &b) {
                                Some(e) => {
                                    self.stat(Api::Token, |a, _| a.errors += 1);
                                    return Err(e);
                                }
                                None => (
                                    DefenderError::Api {
                                        status: status.as_u16(),
                                        code: b.error.clone().unwrap_or_default(),
                                        message: self.scrub(&b.summary()),
                                    },
                                    ra,
                                ),
                            }
                        }
                        _ if status.is_server_error() || status == StatusCode::TOO_MANY_REQUESTS => (
                            DefenderError::Api { status: status.as_u16(), code: String::new(), message: String::new() },
                            ra,
                        ),
                        _ => {
                            self.stat(Api::Token, |a, _| a.errors += 1);
                            return Err(DefenderError::BadResponse(format!(
                                "the sign-in URL answered HTTP {} without an Entra error; check the cloud or sign-in URL",
                                status.as_u16()
                            )));
                        }
                    }
                }
            };
            if attempt >= inner.options.max_retries {
                self.stat(Api::Token, |a, _| a.errors += 1);
                return Err(match (&err, wait) {
                    (DefenderError::Api { status: 429, .. }, w) => {
                        DefenderError::Throttled { retry_after_secs: w.map(|d| d.as_secs()) }
                    }
                    _ => err,
                });
            }
            attempt += 1;
            self.stat(Api::Token, |a, s| {
                a.retries += 1;
                s.retries += 1;
            });
            let wait = wait.filter(|w| *w <= inner.options.max_retry_after).unwrap_or_else(|| self.backoff(attempt));
            tracing::debug!(attempt, ?wait, error = %err, "token request failed; retrying");
            tokio::time::sleep(wait).await;
        }
    }

    fn cache_entry(&self, tr: TokenResponse) -> CachedToken {
        let lifetime = tr.expires_in_secs();
        let life = Duration::from_secs(lifetime.unwrap_or(3599));
        let margin = self.inner.options.token_refresh_margin.min(life / 2);
        let claims = jwt_claims(&tr.access_token);
        let generation = self.inner.generation.fetch_add(1, std::sync::atomic::Ordering::SeqCst) + 1;
        CachedToken {
            roles: roles_of(claims.as_ref()),
            claims,
            value: tr.access_token,
            generation,
            refresh_at: Instant::now() + life - margin,
            expires_in_secs: lifetime,
        }
    }

    // ---------------------------------------------------------------- requests

    /// Send one API request with token, limiter, retries and error mapping. `idempotent`
    /// requests are retried on 5xx and timeouts; others only when the request cannot have
    /// been executed (429, connection refused, 401 before refresh).
    async fn request(
        &self,
        api: Api,
        method: Method,
        url: Url,
        body: Option<&Value>,
        idempotent: bool,
    ) -> Result<Answer, DefenderError> {
        let mut attempt = 0u32;
        let mut refreshed = false;
        let mut stale: Option<u64> = None;
        loop {
            let token = self.token(stale.take()).await?;
            let req = Req { api, method: &method, url: &url, body, idempotent };
            let outcome = self.attempt(&req, &token, attempt + 1).await;
            match outcome {
                Attempt::Done(a) => return Ok(a),
                Attempt::Fail(e) => {
                    self.stat(api, |a, _| a.errors += 1);
                    if matches!(e, DefenderError::MissingPermission { .. } | DefenderError::Api { status: 403, .. }) {
                        // A token carries the roles granted when it was issued: once an admin
                        // grants the permission, only a new token has it.
                        self.forget_token(token.generation).await;
                    }
                    return Err(e);
                }
                Attempt::Refresh { generation } => {
                    if refreshed {
                        self.stat(api, |a, _| a.errors += 1);
                        return Err(DefenderError::Api {
                            status: 401,
                            code: "Unauthorized".into(),
                            message: "the API rejected a freshly issued token".into(),
                        });
                    }
                    refreshed = true;
                    stale = Some(generation);
                    self.stat(api, |a, s| {
                        a.retries += 1;
                        s.retries += 1;
                        s.token_refreshes_after_401 += 1;
                    });
                }
                Attempt::Retry { wait, last } => {
                    if attempt >= self.inner.options.max_retries {
                        self.stat(api, |a, _| a.errors += 1);
                        return Err(last);
                    }
                    attempt += 1;
                    self.stat(api, |a, s| {
                        a.retries += 1;
                        s.retries += 1;
                    });
                    tracing::debug!(api = api.as_str(), attempt, ?wait, error = %last, "retrying");
                    tokio::time::sleep(wait).await;
                }
            }
        }
    }

    async fn attempt(&self, req: &Req<'_>, token: &CachedToken, next_retry: u32) -> Attempt {
        let Req { api, method, url, body, idempotent } = *req;
        let inner = &self.inner;
        let waited = inner.limiter.acquire(api).await;
        self.stat(api, |a, s| {
            a.calls += 1;
            s.calls += 1;
            a.limiter_wait_ms += waited.as_millis() as u64;
            s.limiter_wait_ms += waited.as_millis() as u64;
        });
        let mut rb = inner
            .http
            .request(method.clone(), url.clone())
            .bearer_auth(&token.value)
            .header(header::ACCEPT, "application/json");
        if let Some(b) = body {
            rb = rb.json(b);
        }
        let sent = rb.send().await;
        self.observe(api, sent.as_ref().ok().map(|r| r.status()));
        let resp = match sent {
            Ok(r) => r,
            Err(e) => {
                let err = self.transport_error(&e);
                // A refused connection never reached the service: safe to retry anything.
                let retry = e.is_connect() || (idempotent && !e.is_builder());
                return if retry {
                    Attempt::Retry { wait: self.backoff(next_retry), last: err }
                } else {
                    Attempt::Fail(err)
                };
            }
        };
        let status = resp.status();
        let headers = resp.headers().clone();
        let bytes = match read_capped(resp, MAX_API_ANSWER).await {
            Ok(b) => b,
            Err(BodyError::TooLarge(limit)) => {
                return Attempt::Fail(DefenderError::TooLarge { limit_mib: limit >> 20 });
            }
            Err(BodyError::Transport(e)) => {
                let err = self.transport_error(&e);
                return if idempotent {
                    Attempt::Retry { wait: self.backoff(next_retry), last: err }
                } else {
                    Attempt::Fail(err)
                };
            }
        };
        if status.is_success() {
            return Attempt::Done(Answer { status, body: bytes });
        }
        let env = serde_json::from_slice::<ErrorEnvelope>(&bytes).ok();
        let code = env.as_ref().and_then(|e| e.error.code.clone()).unwrap_or_default();
        let message =
            self.scrub(&excerpt(env.as_ref().and_then(|e| e.error.message.as_deref()).unwrap_or_default(), 300));
        if let Some(t) = env.as_ref().and_then(|e| e.error.target.as_deref()) {
            tracing::debug!(api = api.as_str(), status = status.as_u16(), code, target = t, "API error");
        }
        match status.as_u16() {
            401 => Attempt::Refresh { generation: token.generation },
            429 => {
                self.stat(api, |a, s| {
                    a.throttled += 1;
                    s.throttled += 1;
                });
                let ra = retry_after(&headers);
                if let Some(w) = ra {
                    if w > inner.options.max_retry_after {
                        return Attempt::Fail(DefenderError::Throttled { retry_after_secs: Some(w.as_secs()) });
                    }
                    inner.limiter.block_until(api, Instant::now() + w);
                }
                Attempt::Retry {
                    // With Retry-After the limiter holds the call back; add a little jitter.
                    wait: match ra {
                        Some(_) => Duration::from_millis(rand::random::<u64>() % 50),
                        None => self.backoff(next_retry),
                    },
                    last: DefenderError::Throttled { retry_after_secs: ra.map(|d| d.as_secs()) },
                }
            }
            403 => {
                let needed = api.roles();
                if !needed.is_empty() && !needed.iter().any(|r| token.roles.iter().any(|t| t == r)) {
                    Attempt::Fail(DefenderError::MissingPermission { permission: needed.join(" or ") })
                } else {
                    Attempt::Fail(DefenderError::Api { status: 403, code, message })
                }
            }
            404 => Attempt::Fail(DefenderError::NotFound),
            400 if code.eq_ignore_ascii_case("ActiveRequestAlreadyExists")
                || message.to_ascii_lowercase().contains("already in progress") =>
            {
                Attempt::Fail(DefenderError::ActionAlreadyPending)
            }
            400 if code.eq_ignore_ascii_case("OsPlatformNotSupported")
                || code.eq_ignore_ascii_case("ClientVersionNotSupported") =>
            {
                Attempt::Fail(DefenderError::OsNotSupported(if message.is_empty() { code } else { message }))
            }
            s if s >= 500 => {
                let err = DefenderError::Api { status: s, code, message };
                if idempotent {
                    Attempt::Retry { wait: self.backoff(next_retry), last: err }
                } else {
                    Attempt::Fail(err)
                }
            }
            s => Attempt::Fail(DefenderError::Api { status: s, code, message }),
        }
    }

    async fn get_json<T: DeserializeOwned>(&self, api: Api, url: Url) -> Result<T, DefenderError> {
        let a = self.request(api, Method::GET, url, None, true).await?;
        decode_entity(api, &a.body)
    }

    // ---------------------------------------------------------------- public API

    /// Get a fresh token, report its roles against the spec's permissions, and make one real
    /// API call (`GET /api/machines?$top=1`). Token failures are `Err`; an API failure is
    /// reported in [`ConnectionReport::api_call`].
    pub async fn test_connection(&self) -> Result<ConnectionReport, DefenderError> {
        let token = {
            let mut guard = self.inner.token.lock().await;
            let t = Arc::new(self.fetch_token().await?);
            *guard = Some(t.clone());
            t
        };
        let permissions: Vec<PermissionCheck> = REQUIRED_PERMISSIONS
            .iter()
            .map(|(label, accepted, used_for)| PermissionCheck {
                permission: label.to_string(),
                accepted: accepted.iter().map(|s| s.to_string()).collect(),
                used_for: used_for.to_string(),
                granted_by: accepted.iter().find(|r| token.roles.iter().any(|t| t == *r)).map(|s| s.to_string()),
            })
            .collect();
        let missing = permissions.iter().filter(|p| !p.granted()).map(|p| p.permission.clone()).collect();
        let api_call = match self.inner.target.api_url("/api/machines", "$top=1&$skip=0") {
            Ok(url) => self
                .request(Api::ListMachines, Method::GET, url, None, true)
                .await
                .and_then(|a| decode_page::<Machine>(Api::ListMachines, &a.body))
                .map(|p| p.items.len())
                .or_else(|e| match e {
                    DefenderError::NotFound => Ok(0),
                    e => Err(e),
                }),
            Err(e) => Err(e),
        };
        let claim = |k: &str| token.claims.as_ref().and_then(|c| c.get(k)).and_then(Value::as_str).map(str::to_string);
        Ok(ConnectionReport {
            roles: token.roles.clone(),
            token_tenant: claim("tid"),
            token_audience: claim("aud"),
            token_expires_in_secs: token.expires_in_secs,
            permissions,
            missing,
            api_call,
        })
    }

    /// All machines: `GET /api/machines?$top=10000&$skip=k·10000`.
    pub fn machines(&self) -> Pager<Machine> {
        Pager::skip_top(self.clone(), Api::ListMachines, "/api/machines", 10_000, None, false)
    }

    /// All vulnerabilities of the organisation: `GET /api/vulnerabilities`, `$top=8000`.
    pub fn vulnerabilities(&self) -> Pager<Vulnerability> {
        Pager::skip_top(self.clone(), Api::ListVulnerabilities, "/api/vulnerabilities", 8_000, None, true)
    }

    /// Every (machine, CVE, product version) row: the bulk listing
    /// `GET /api/vulnerabilities/machinesVulnerabilities`, `$top=10000`. Chosen over the
    /// export JSON (see docs/defender-client.md): 10,000-row pages keep memory small and the
    /// call count is the minimum for this endpoint (⌈rows/10,000⌉, +1 when rows is a multiple).
    pub fn machine_vulnerabilities(&self) -> Pager<MachineVulnerability> {
        Pager::skip_top(
            self.clone(),
            Api::MachinesVulnerabilities,
            "/api/vulnerabilities/machinesVulnerabilities",
            10_000,
            None,
            false,
        )
    }

    /// The export-assessment JSON (`GET /api/machines/SoftwareVulnerabilitiesByMachine`)
    /// with `pageSize` = [`ClientOptions::export_page_size`], following `@odata.nextLink`
    /// (only to the configured API host). 30 calls/min, 1,000/h.
    pub fn export_machine_vulnerabilities(&self) -> Pager<ExportVulnerability> {
        let size = self.inner.options.export_page_size.clamp(1, 200_000);
        Pager::next_link(
            self.clone(),
            Api::ExportAssessmentJson,
            "/api/machines/SoftwareVulnerabilitiesByMachine",
            &format!("pageSize={size}"),
        )
    }

    /// The delta export (`GET /api/machines/SoftwareVulnerabilityChangesByMachine`): the
    /// machine×vulnerability rows that changed since `since` (at most 14 days back), each with
    /// `status` New, Fixed or Updated; `pageSize` as the export. 30 calls/min, 1,000/h.
    pub fn export_machine_vulnerability_changes(
        &self,
        since: chrono::DateTime<chrono::Utc>,
    ) -> Pager<ExportVulnerability> {
        let size = self.inner.options.export_page_size.clamp(1, 200_000);
        let since = since.to_rfc3339_opts(chrono::SecondsFormat::Secs, true);
        Pager::next_link(
            self.clone(),
            Api::ExportAssessmentDelta,
            "/api/machines/SoftwareVulnerabilityChangesByMachine",
            &format!("sinceTime={since}&pageSize={size}"),
        )
    }

    /// All alerts: `GET /api/alerts`, `$top=10000`.
    pub fn alerts(&self) -> Pager<Alert> {
        Pager::skip_top(self.clone(), Api::ListAlerts, "/api/alerts", 10_000, None, false)
    }

    async fn action(
        &self,
        api: Api,
        machine_id: &str,
        verb: &str,
        body: Value,
    ) -> Result<MachineAction, DefenderError> {
        let url = self.inner.target.api_url(&format!("/api/machines/{machine_id}/{verb}"), "")?;
        let a = self.request(api, Method::POST, url, Some(&body), false).await?;
        if a.status != StatusCode::CREATED && a.status != StatusCode::OK {
            tracing::debug!(status = a.status.as_u16(), "unexpected success status for an action");
        }
        let action: MachineAction = decode_entity(api, &a.body)?;
        if action.id.is_empty() {
            return Err(DefenderError::BadResponse(format!("{api}: the machine action has no id")));
        }
        Ok(action)
    }

    /// `POST /api/machines/{id}/isolate` `{Comment, IsolationType}` → the new (Pending) action.
    /// Sent exactly once unless the service refused it with 429 (or a connection could not be
    /// made); 5xx and timeouts are not retried (the action may have been created).
    pub async fn isolate(
        &self,
        machine_id: &str,
        comment: &str,
        kind: IsolationType,
    ) -> Result<MachineAction, DefenderError> {
        let id = check_machine_id(machine_id)?;
        let c = check_comment(comment)?;
        self.action(Api::Isolate, id, "isolate", serde_json::json!({"Comment": c, "IsolationType": kind.as_str()}))
            .await
    }

    /// `POST /api/machines/{id}/unisolate` `{Comment}`.
    pub async fn unisolate(&self, machine_id: &str, comment: &str) -> Result<MachineAction, DefenderError> {
        let id = check_machine_id(machine_id)?;
        let c = check_comment(comment)?;
        self.action(Api::Unisolate, id, "unisolate", serde_json::json!({"Comment": c})).await
    }

    /// `POST /api/machines/{id}/runAntiVirusScan` `{Comment, ScanType}`.
    pub async fn run_av_scan(
        &self,
        machine_id: &str,
        comment: &str,
        kind: ScanType,
    ) -> Result<MachineAction, DefenderError> {
        let id = check_machine_id(machine_id)?;
        let c = check_comment(comment)?;
        self.action(
            Api::RunAntiVirusScan,
            id,
            "runAntiVirusScan",
            serde_json::json!({"Comment": c, "ScanType": kind.as_str()}),
        )
        .await
    }

    /// `GET /api/machineactions/{id}` (the id must be a GUID).
    pub async fn machine_action(&self, action_id: &str) -> Result<MachineAction, DefenderError> {
        let id = action_id.trim();
        if !is_guid(id) {
            return Err(DefenderError::InvalidArgument("Not a machine action id (expected a GUID).".into()));
        }
        let url = self.inner.target.api_url(&format!("/api/machineactions/{id}"), "")?;
        self.get_json(Api::GetMachineAction, url).await
    }

    /// The machine's actions, newest first (one call:
    /// `GET /api/machineactions?$filter=machineId eq '{id}'&$top=10000`).
    pub async fn machine_actions(&self, machine_id: &str) -> Result<Vec<MachineAction>, DefenderError> {
        let id = check_machine_id(machine_id)?;
        let query = format!("$filter=machineId%20eq%20%27{id}%27&$top=10000");
        let url = self.inner.target.api_url("/api/machineactions", &query)?;
        let a = match self.request(Api::ListMachineActions, Method::GET, url, None, true).await {
            Ok(a) => a,
            Err(DefenderError::NotFound) => return Ok(Vec::new()),
            Err(e) => return Err(e),
        };
        let mut items = decode_page::<MachineAction>(Api::ListMachineActions, &a.body)?.items;
        items.sort_by_key(|a| std::cmp::Reverse(a.creation_date_time_utc));
        Ok(items)
    }
}

// -------------------------------------------------------------------- decoding

pub(crate) struct PageBody<T> {
    pub(crate) items: Vec<T>,
    pub(crate) next_link: Option<String>,
}

#[derive(serde::Deserialize)]
struct RawPage<T> {
    value: Option<Vec<T>>,
    #[serde(rename = "@odata.nextLink")]
    next_link: Option<String>,
}

fn syntax_error(api: Api, e: &serde_json::Error) -> DefenderError {
    DefenderError::BadResponse(format!("{api}: malformed or truncated JSON at line {} column {}", e.line(), e.column()))
}

/// Decode a collection page; on a type error, say which record and field. Also a fuzz target
/// (`crate::fuzz::defender_json`).
pub(crate) fn decode_page<T: DeserializeOwned + HasId>(api: Api, body: &[u8]) -> Result<PageBody<T>, DefenderError> {
    match serde_json::from_slice::<RawPage<T>>(body) {
        Ok(p) => {
            let items = p
                .value
                .ok_or_else(|| DefenderError::BadResponse(format!("{api}: the answer has no \"value\" array")))?;
            if let Some(i) = items.iter().position(|it| it.id().is_empty()) {
                return Err(DefenderError::BadResponse(format!("{api}: record {i} has no field `id`")));
            }
            Ok(PageBody { items, next_link: p.next_link })
        }
        Err(e) if e.is_data() => Err(locate_type_error::<T>(api, body, &e)),
        Err(e) => Err(syntax_error(api, &e)),
    }
}

pub(crate) fn decode_entity<T: DeserializeOwned>(api: Api, body: &[u8]) -> Result<T, DefenderError> {
    match serde_json::from_slice::<T>(body) {
        Ok(t) => Ok(t),
        Err(e) if e.is_data() => {
            let v: Value = serde_json::from_slice(body).map_err(|e| syntax_error(api, &e))?;
            Err(DefenderError::BadResponse(format!(
                "{api}: {}",
                field_error::<T>(&v).unwrap_or_else(|| excerpt(&e.to_string(), 200))
            )))
        }
        Err(e) => Err(syntax_error(api, &e)),
    }
}

/// Which field of an object fails to deserialize as `T` (all fields of the DTOs are
/// optional, so an object with just that field reproduces the error).
fn field_error<T: DeserializeOwned>(v: &Value) -> Option<String> {
    let obj = v.as_object()?;
    for (k, val) in obj {
        let mut one = serde_json::Map::new();
        one.insert(k.clone(), val.clone());
        if let Err(e) = serde_json::from_value::<T>(Value::Object(one)) {
            return Some(format!("field `{}`: {}", excerpt(k, 60), excerpt(&e.to_string(), 160)));
        }
    }
    None
}

fn locate_type_error<T: DeserializeOwned>(api: Api, body: &[u8], e: &serde_json::Error) -> DefenderError {
    let Ok(v) = serde_json::from_slice::<Value>(body) else {
        return syntax_error(api, e);
    };
    let Some(items) = v.get("value").and_then(Value::as_array) else {
        return DefenderError::BadResponse(format!("{api}: the answer has no \"value\" array of records"));
    };
    for (i, item) in items.iter().enumerate() {
        if serde_json::from_value::<T>(item.clone()).is_err() {
            let id = item.get("id").map(|v| excerpt(&v.to_string(), 80)).unwrap_or_else(|| "?".into());
            let what = field_error::<T>(item).unwrap_or_else(|| "not an object".into());
            return DefenderError::BadResponse(format!("{api}: record {i} (id {id}): {what}"));
        }
    }
    DefenderError::BadResponse(format!("{api}: {}", excerpt(&e.to_string(), 200)))
}

// -------------------------------------------------------------------- paging

enum Mode {
    /// `$top`/`$skip`.
    SkipTop { top: usize, skip: usize, filter: Option<String> },
    /// Follow `@odata.nextLink`.
    NextLink { next: Option<Url>, visited: HashSet<String> },
}

/// Pages of a listing. Call [`Pager::next_page`] until it returns `Ok(None)`.
///
/// Duplicates: an item whose id was already returned (by the whole listing for the
/// vulnerability catalog, whose size does not follow the tenant's; by the previous page for
/// the listings that do — machines, alerts, machine × vulnerability rows — so that memory stays
/// bounded) is dropped and counted in [`Pager::duplicates_dropped`]. An inventory that changes
/// while it is listed shifts `$skip` pages by a few items, which repeats them on the next page;
/// the sync's staging tables keep one of each id across the whole listing in any case. A
/// non-empty page made only of such items is a paging loop (`PagingLoop`).
pub struct Pager<T> {
    client: DefenderClient,
    api: Api,
    path: &'static str,
    extra_query: String,
    mode: Mode,
    done: bool,
    pages: usize,
    /// All ids so far (`Some`) or only the previous page's.
    seen_all: Option<HashSet<String>>,
    previous: HashSet<String>,
    duplicates: u64,
    items: u64,
    _t: PhantomData<fn() -> T>,
}

impl<T: DeserializeOwned + HasId> Pager<T> {
    fn skip_top(
        client: DefenderClient,
        api: Api,
        path: &'static str,
        top: usize,
        filter: Option<String>,
        dedupe_all: bool,
    ) -> Self {
        Pager {
            client,
            api,
            path,
            extra_query: String::new(),
            mode: Mode::SkipTop { top, skip: 0, filter },
            done: false,
            pages: 0,
            seen_all: dedupe_all.then(HashSet::new),
            previous: HashSet::new(),
            duplicates: 0,
            items: 0,
            _t: PhantomData,
        }
    }

    fn next_link(client: DefenderClient, api: Api, path: &'static str, query: &str) -> Self {
        Pager {
            client,
            api,
            path,
            extra_query: query.to_string(),
            mode: Mode::NextLink { next: None, visited: HashSet::new() },
            done: false,
            pages: 0,
            seen_all: None,
            previous: HashSet::new(),
            duplicates: 0,
            items: 0,
            _t: PhantomData,
        }
    }

    /// Restrict the listing with an OData `$filter` (`$top`/`$skip` listings only; the
    /// expression is sent as given, percent-encoded).
    pub fn with_filter(mut self, filter: &str) -> Self {
        if let Mode::SkipTop { filter: f, .. } = &mut self.mode {
            *f = Some(filter.to_string());
        }
        self
    }

    /// Pages fetched so far.
    pub fn pages(&self) -> usize {
        self.pages
    }
    /// Items returned so far (after de-duplication).
    pub fn items(&self) -> u64 {
        self.items
    }
    /// Items dropped because their id was already returned.
    pub fn duplicates_dropped(&self) -> u64 {
        self.duplicates
    }

    /// The next page, `Ok(None)` at the end. After an error the pager is finished.
    pub async fn next_page(&mut self) -> Result<Option<Vec<T>>, DefenderError> {
        if self.done {
            return Ok(None);
        }
        let r = self.fetch().await;
        if r.is_err() {
            self.done = true;
        }
        r
    }

    /// Every remaining item (convenience for small listings and tests).
    pub async fn collect_all(mut self) -> Result<Vec<T>, DefenderError> {
        let mut all = Vec::new();
        while let Some(p) = self.next_page().await? {
            all.extend(p);
        }
        Ok(all)
    }

    async fn fetch(&mut self) -> Result<Option<Vec<T>>, DefenderError> {
        let max_pages = self.client.inner.options.max_pages;
        if self.pages >= max_pages {
            return Err(DefenderError::PageLimit(max_pages));
        }
        let target = &self.client.inner.target;
        let url = match &mut self.mode {
            Mode::SkipTop { top, skip, filter } => {
                let mut q = String::new();
                if let Some(f) = filter {
                    q.push_str("$filter=");
                    q.push_str(&encode_query_value(f));
                    q.push('&');
                }
                q.push_str(&format!("$top={top}&$skip={skip}"));
                target.api_url(self.path, &q)?
            }
            Mode::NextLink { next, visited } => {
                let url = match next.take() {
                    Some(u) => u,
                    None => target.api_url(self.path, &self.extra_query)?,
                };
                if !visited.insert(url.as_str().to_string()) {
                    return Err(DefenderError::PagingLoop);
                }
                url
            }
        };
        let answer = self.client.request(self.api, Method::GET, url, None, true).await;
        let answer = match answer {
            Ok(a) => a,
            // Documented: list endpoints may answer 404 for "nothing found".
            Err(DefenderError::NotFound) => {
                self.done = true;
                return Ok(None);
            }
            Err(e) => return Err(e),
        };
        let page = decode_page::<T>(self.api, &answer.body)?;
        self.pages += 1;
        let raw = page.items.len();
        // Validate any link before anything else: a foreign link is refused, never fetched.
        let link = match page.next_link.as_deref().map(str::trim) {
            Some(l) if !l.is_empty() => {
                let u = Url::parse(l)
                    .map_err(|_| DefenderError::BadResponse(format!("{}: @odata.nextLink is not a URL", self.api)))?;
                if !target.same_origin(&u) {
                    let host = match (u.host_str(), u.port()) {
                        (Some(h), Some(p)) => format!("{}://{h}:{p}", u.scheme()),
                        (Some(h), None) => format!("{}://{h}", u.scheme()),
                        _ => u.scheme().to_string(),
                    };
                    return Err(DefenderError::ForeignHost(excerpt(&host, 200)));
                }
                Some(u)
            }
            _ => None,
        };
        // De-duplicate and detect loops.
        let ids: HashSet<String> = page.items.iter().map(|i| i.id().to_string()).collect();
        let mut kept = Vec::with_capacity(raw);
        let mut repeated = 0usize;
        let mut this_page: HashSet<String> = HashSet::with_capacity(raw);
        for it in page.items {
            let id = it.id();
            let dup = self.previous.contains(id)
                || self.seen_all.as_ref().is_some_and(|s| s.contains(id))
                || !this_page.insert(id.to_string());
            if dup {
                repeated += 1;
                continue;
            }
            kept.push(it);
        }
        if raw > 0 && repeated == raw {
            return Err(DefenderError::PagingLoop);
        }
        self.duplicates += repeated as u64;
        if let Some(all) = self.seen_all.as_mut() {
            all.extend(ids.iter().cloned());
        }
        self.previous = ids;
        self.items += kept.len() as u64;
        match &mut self.mode {
            Mode::SkipTop { top, skip, .. } => {
                if raw < *top {
                    self.done = true;
                } else {
                    *skip += *top;
                }
            }
            Mode::NextLink { next, .. } => match link {
                Some(u) if raw > 0 => *next = Some(u),
                Some(_) => return Err(DefenderError::PagingLoop),
                None => self.done = true,
            },
        }
        if kept.is_empty() && self.done {
            return Ok(None);
        }
        Ok(Some(kept))
    }
}

/// Percent-encode an OData query value (spaces as `%20`, quotes as `%27`).
fn encode_query_value(s: &str) -> String {
    let mut out = String::with_capacity(s.len() * 3);
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b'~' | b'(' | b')' | b',' | b':') {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn target() -> Target {
        Target::custom("https://login.example.net", "https://api.example.net:8443/prefix", None).unwrap()
    }

    #[test]
    fn urls() {
        let t = target();
        assert_eq!(
            t.token_url("contoso.onmicrosoft.com").unwrap().as_str(),
            "https://login.example.net/contoso.onmicrosoft.com/oauth2/v2.0/token"
        );
        assert_eq!(
            t.api_url("/api/machines", "$top=1&$skip=0").unwrap().as_str(),
            "https://api.example.net:8443/prefix/api/machines?$top=1&$skip=0"
        );
        assert!(t.same_origin(&Url::parse("https://api.example.net:8443/prefix/api/x?a=1").unwrap()));
        assert!(!t.same_origin(&Url::parse("https://api.example.net/prefix/api/x").unwrap()));
        assert!(!t.same_origin(&Url::parse("http://api.example.net:8443/prefix/api/x").unwrap()));
        assert!(!t.same_origin(&Url::parse("https://evil.example.net:8443/prefix/api").unwrap()));
        assert!(!t.same_origin(&Url::parse("https://api.example.net:8443/other").unwrap()));
        assert!(Target::custom("ftp://x", "https://y", None).is_err());
        assert!(Target::custom("https://u:p@x", "https://y", None).is_err());
        assert_eq!(
            Target::cloud_region(Cloud::Commercial, Some("eu")).unwrap().api_base_url.as_str(),
            "https://eu.api.security.microsoft.com/"
        );
        assert!(Target::cloud_region(Cloud::Gcc, Some("eu")).is_err());
        assert_eq!(encode_query_value("machineId eq 'ab'"), "machineId%20eq%20%27ab%27");
    }

    #[test]
    fn page_decoding_names_the_field() {
        let body = br#"{"value":[{"id":"a"},{"id":"b","osBuild":"x"}]}"#;
        match decode_page::<Machine>(Api::ListMachines, body) {
            Err(DefenderError::BadResponse(m)) => {
                assert!(m.contains("record 1") && m.contains("osBuild"), "{m}")
            }
            _ => panic!("expected BadResponse"),
        }
        match decode_page::<Machine>(Api::ListMachines, br#"{"value":[{"id":"a"},"#) {
            Err(DefenderError::BadResponse(m)) => assert!(m.contains("malformed"), "{m}"),
            _ => panic!("expected BadResponse"),
        }
        assert!(matches!(
            decode_page::<Machine>(Api::ListMachines, br#"{"value":[{"name":"x"}]}"#),
            Err(DefenderError::BadResponse(_))
        ));
        assert!(matches!(
            decode_page::<Machine>(Api::ListMachines, br#"{"values":[]}"#),
            Err(DefenderError::BadResponse(_))
        ));
    }

    #[test]
    fn options_and_enums() {
        assert_eq!(IsolationType::parse("selective"), Some(IsolationType::Selective));
        assert_eq!(ScanType::parse("FULL"), Some(ScanType::Full));
        let c = DefenderClient::new(
            Credentials { tenant_id: "bad/tenant".into(), client_id: "c".into(), client_secret: "s".into() },
            target(),
            ClientOptions::default(),
        );
        assert!(matches!(c, Err(DefenderError::InvalidArgument(_))));
    }
}
