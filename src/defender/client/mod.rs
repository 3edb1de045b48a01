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

use crate::outbound::{BodyError, MAX_SMALL_ANSWER, read_capped};
use cloud::Cloud;
use credentials::{
    self as auth, Credentials, TokenErrorBody, TokenResponse, classify_token_error, jwt_claims, roles_of,
};
use dto::{
    Alert, ErrorEnvelope, ExportVulnerability, HasId, Machine, MachineAction, MachineVulnerability, Vulnerability,
};
use error::DefenderError;
use limiter::{Limiter, RateLimit};

mod api;
pub mod cloud;
mod connection;
pub mod credentials;
pub mod dto;
pub mod error;
pub mod limiter;
mod machine_actions;
mod paging;
mod request;
mod retry;
mod token;

use retry::Try;

pub use api::{Api, Target};
pub use connection::{ConnectionReport, PERMISSIONS, Permission, PermissionCheck};
pub use machine_actions::{IsolationType, ScanType};
pub use paging::Pager;
#[cfg(test)]
use paging::encode_query_value;
pub(crate) use paging::{decode_entity, decode_page};

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

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

fn check_machine_id(id: &str) -> Result<&str, DefenderError> {
    let id = id.trim();
    if crate::defender::links::is_machine_id(id) {
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
/// `encoded` with the hex digits of its percent-escapes in lower case (`%7E` → `%7e`).
fn lower_case_escapes(encoded: &str) -> String {
    let mut out = String::with_capacity(encoded.len());
    let mut escape_left = 0u8;
    for c in encoded.chars() {
        out.push(if escape_left > 0 { c.to_ascii_lowercase() } else { c });
        escape_left = if c == '%' { 2 } else { escape_left.saturating_sub(1) };
    }
    out
}

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
        self.scrub_with(s, None)
    }

    /// [`Self::scrub`], also of `sent` (the token a request carried: the cached one may have
    /// changed since, or be locked by a refresh). The secret is looked for as sent in the
    /// sign-in form too (URL-encoded, with upper- or lower-case hex digits: RFC 3986 §2.1 makes
    /// them equivalent), where an echoing host would quote it.
    fn scrub_with(&self, s: &str, sent: Option<&str>) -> String {
        let mut out = s.to_string();
        let secret = self.inner.creds.client_secret.expose();
        if secret.len() >= 4 {
            let encoded: String = url::form_urlencoded::byte_serialize(secret.as_bytes()).collect();
            out = out.replace(secret, "***").replace(&encoded, "***").replace(&lower_case_escapes(&encoded), "***");
        }
        if let Some(t) = sent.filter(|t| t.len() >= 8) {
            out = out.replace(t, "***");
        }
        if let Ok(guard) = self.inner.token.try_lock()
            && let Some(t) = guard.as_ref()
        {
            out = out.replace(&t.value, "***");
        }
        out
    }

    /// A sign-in error as the client keeps it: its texts scrubbed, then cut, like an API error's.
    fn tidy(&self, e: DefenderError) -> DefenderError {
        match e {
            DefenderError::Api { status, code, message } => DefenderError::Api {
                status,
                code: excerpt(&self.scrub(&code), 100),
                message: excerpt(&self.scrub(&message), 300),
            },
            other => other,
        }
    }

    fn backoff(&self, attempt: u32) -> Duration {
        let o = &self.inner.options;
        let exp = o.backoff_base.saturating_mul(1u32 << attempt.saturating_sub(1).min(16));
        let capped = exp.min(o.backoff_max);
        capped.mul_f64(0.5 + rand::random::<f64>() * 0.5)
    }

    fn transport_error(&self, e: &reqwest::Error) -> DefenderError {
        // A connection that timed out while being made never carried the request: it is
        // `Unreachable`, not a `Timeout` after which the service may have acted.
        if e.is_timeout() && !e.is_connect() {
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
        let why = excerpt(&self.scrub(&format!("{what}: {cause}")), 300);
        // Only a connection never made is certain not to have reached the service.
        if e.is_connect() { DefenderError::Unreachable(why) } else { DefenderError::AnswerLost(why) }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn target() -> Target {
        Target::custom("https://login.example.net", "https://api.example.net:8443/prefix", None).unwrap()
    }

    #[test]
    fn lower_case_escapes_change_only_the_escapes_hex() {
        assert_eq!(lower_case_escapes("Ab%7E~C%2Fd%3DE"), "Ab%7e~C%2fd%3dE");
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

    /// GetPackageUri's `value` as Microsoft's example writes it (in escaped quotes), and what is
    /// never sent to a browser: another scheme, credentials, http from an https API.
    #[test]
    fn package_links_are_unquoted_and_checked() {
        let client = |api: &str| {
            let creds = Credentials {
                tenant_id: "contoso.onmicrosoft.com".into(),
                client_id: "c".into(),
                client_secret: "s".into(),
            };
            DefenderClient::new(
                creds,
                Target::custom("https://login.example.net", api, None).unwrap(),
                ClientOptions::default(),
            )
            .unwrap()
        };
        let c = client("https://api.example.net");
        let quoted = "\"https://userrequests-us.securitycenter.windows.com:443/safedownload/WDATP_Investigation_Package.zip?token=a%2fb\"";
        assert_eq!(
            c.package_link(quoted).unwrap().as_str(),
            "https://userrequests-us.securitycenter.windows.com/safedownload/WDATP_Investigation_Package.zip?token=a%2fb"
        );
        assert!(c.package_link("https://blob.example.net/p.zip").is_ok(), "without quotes too");
        for bad in [
            "javascript:alert(1)",
            "\"http://blob.example.net/p.zip\"",
            "https://u:p@blob.example.net/p",
            "",
            "\"\"",
            "/relative",
        ] {
            match c.package_link(bad) {
                Err(DefenderError::BadResponse(m)) => {
                    assert!(!m.contains("blob.example"), "the link is never echoed: {m}")
                }
                other => panic!("{bad}: {other:?}"),
            }
        }
        assert!(client("http://127.0.0.1:9090").package_link("http://127.0.0.1:9090/_sim/blob/x.zip").is_ok());
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
