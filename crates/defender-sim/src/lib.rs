//! A local stand-in for Microsoft Entra ID's token endpoint and sign-in, and for the Microsoft
//! Defender for Endpoint API, as Microsoft documents them (`docs/defender-api.md`). It knows
//! nothing of Endpoint Analytics: the product, its tests, the demo and the benchmarks reach it
//! over HTTP only, as they would reach Microsoft.
//!
//! Long because it holds the command line (one option per behaviour the tests switch, each
//! documented in `docs/simulator.md`), the start-up, and the typed admin calls of a running
//! simulator that tests and benchmarks use.
//!
//! Layout:
//! * `lib.rs` – public API: [`SimulateArgs`] (CLI of the `defender-sim` binary), [`SimConfig`],
//!   [`start`]/[`run`], [`RunningSimulator`], and the shared server state; `main.rs` – the binary.
//! * `tenant.rs` – the deterministic tenant generator (machines, vulnerabilities, software,
//!   alerts, network observations); `catalog.rs` – its static tables; `rng.rs` – SplitMix64.
//! * `token.rs` – Entra v1/v2 client-credentials token endpoint and its error bodies;
//!   `jwt.rs` – HS256 signing; `oidc.rs` – Entra sign-in for people (OpenID Connect discovery,
//!   authorize page, authorization-code grant with PKCE, RS256 ID tokens, JWKS) and its users.
//! * `api.rs` – request pipeline (auth, roles, rate limits, faults, counters), envelopes,
//!   paging, and the machine/action/alert/vulnerability/software routes; `views.rs` – JSON
//!   shapes of the entities; `actions.rs` – machine action lifecycle and isolation state;
//!   `export.rs` – the export-assessment endpoints and files; `hunting.rs` – advanced hunting;
//!   `tags.rs` – adding and removing one machine tag.
//! * `odata.rs` – `$filter`/`$top`/`$skip`; `limits.rs` – rate limiter; `faults.rs` – fault
//!   knobs and counters; `admin.rs` – the `/_sim/*` admin endpoints.
//!
//! See `docs/simulator.md` for what is covered and how it differs from the real service.

mod actions;
mod admin;
mod admin_client;
mod api;
pub mod catalog;
mod export;
pub mod faults;
mod hunting;
mod ids;
pub mod jwt;
pub mod limits;
pub mod odata;
pub mod oidc;
mod package;
pub mod rng;
mod support;
mod tags;
pub mod tenant;
mod token;
mod views;

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, RwLock};

use actix_web::{App, HttpServer, web};
use anyhow::Context;
use chrono::{DateTime, DurationRound, TimeDelta, Utc};
use serde::{Deserialize, Serialize};

pub use actions::IsolationState;
pub use faults::{ActionOutcome, ApiCounters, Counters, FaultEffect, FaultRule, Faults, IdTokenFault};
pub use oidc::SimUser;
pub use tenant::{
    Alert, IpAddress, Machine, NetworkObservation, Severity, Software, Tenant, TenantParams, Vulnerability,
};

pub const DEFAULT_TENANT_ID: &str = "4d1f9c2e-8b3a-4f6d-9e21-7c5a0b3d2e18";
pub const DEFAULT_TENANT_DOMAIN: &str = "contoso.onmicrosoft.com";
pub const DEFAULT_CLIENT_ID: &str = "9b2c4e61-3f5a-4d8b-a7c9-1e0f2d3c4b5a";
pub const DEFAULT_CLIENT_SECRET: &str = "SimQ~d3f3nd3r.s1mulat0r-Secret_Value.0001";

/// The MDE resource and the audience of its tokens.
pub const MDE_AUDIENCE: &str = "https://api.securitycenter.microsoft.com";
/// Resource of the Defender XDR APIs; whether MDE accepts its tokens is configurable.
pub const XDR_AUDIENCE: &str = "https://api.security.microsoft.com";

/// Every application permission defender-api.md lists.
pub const ALL_ROLES: &[&str] = &[
    "Machine.Read.All",
    "Machine.ReadWrite.All",
    "Alert.Read.All",
    "Alert.ReadWrite.All",
    "Machine.Isolate",
    "Machine.Scan",
    "Machine.RestrictExecution",
    "Machine.CollectForensics",
    "Vulnerability.Read.All",
    "AdvancedQuery.Read.All",
    "Software.Read.All",
];

/// Command-line flags of the `defender-sim` binary.
#[derive(clap::Args, Debug, Clone)]
pub struct SimulateArgs {
    /// Address to serve the token endpoint and the API on.
    #[arg(long, default_value = "127.0.0.1:9090", env = "SIM_BIND")]
    pub bind: String,
    /// Number of machines in the tenant (50 to 1,000,000; a million take about 1.7 GiB).
    #[arg(long, default_value_t = 200, value_parser = clap::value_parser!(u32).range(50..=1_000_000))]
    pub machines: u32,
    /// Seed of the generated tenant; the same seed and size give the same tenant.
    #[arg(long, default_value_t = 1)]
    pub seed: u64,
    /// Tenant id (GUID).
    #[arg(long, default_value = DEFAULT_TENANT_ID)]
    pub tenant: String,
    /// Verified domain of the tenant; accepted in token URLs like the GUID.
    #[arg(long, default_value = DEFAULT_TENANT_DOMAIN)]
    pub tenant_domain: String,
    /// Application (client) id of the configured app.
    #[arg(long, default_value = DEFAULT_CLIENT_ID)]
    pub client: String,
    /// Client secret value of the configured app.
    #[arg(long, default_value = DEFAULT_CLIENT_SECRET, env = "SIM_CLIENT_SECRET")]
    pub secret: String,
    /// Application roles granted to the app (comma list); default: every documented one.
    #[arg(long, value_delimiter = ',')]
    pub roles: Option<Vec<String>>,
    /// Share of machines that also appear as network observations.
    #[arg(long, default_value_t = 0.5)]
    pub match_fraction: f64,
    /// Share of machine records that are older duplicates of re-imaged devices.
    #[arg(long, default_value_t = 0.02)]
    pub duplicate_fraction: f64,
    /// Add machines, vulnerabilities and alerts whose texts contain markup and script.
    #[arg(long)]
    pub hostile: bool,
    /// How long a new machine action stays Pending.
    #[arg(long, default_value_t = 3000)]
    pub action_pending_ms: u64,
    /// How long a machine action stays InProgress before its final status.
    #[arg(long, default_value_t = 7000)]
    pub action_inprogress_ms: u64,
    /// How long a link from GetPackageUri stays valid (Microsoft: "a short time").
    #[arg(long, default_value_t = 600)]
    pub package_link_secs: u64,
    /// Write the network observations matching this tenant to PATH as a JSON array.
    #[arg(long)]
    pub emit_observations: Option<PathBuf>,
    /// Exit after writing --emit-observations instead of serving.
    #[arg(long, requires = "emit_observations")]
    pub exit_after_emit: bool,
    /// Print what a client of the simulated service needs (addresses, tenant, app registration,
    /// people who can sign in) as one JSON line on standard output once listening; the banner
    /// then goes to standard error. The product's demo reads it.
    #[arg(long)]
    pub print_json: bool,
    /// Lifetime of issued access tokens.
    #[arg(long, default_value_t = 3599)]
    pub token_lifetime_secs: u64,
    /// Disable the documented per-API rate limits.
    #[arg(long)]
    pub no_rate_limits: bool,
    /// Refuse (403) tokens issued for https://api.security.microsoft.com/.default.
    #[arg(long)]
    pub reject_xdr_audience: bool,
    /// Faults to install at start: JSON as accepted by POST /_sim/faults, or @FILE.
    #[arg(long)]
    pub faults: Option<String>,
    /// HTTP worker threads (default: 2).
    #[arg(long, default_value_t = 2)]
    pub workers: usize,
    /// People who can sign in at the Entra sign-in page: a JSON array of `{username, name,
    /// oid, roles, groups}`, or @FILE. Default: one user per product role and one without.
    #[arg(long)]
    pub sso_users: Option<String>,
    /// Redirect URIs registered for the app (comma list); default: any http(s) address.
    #[arg(long, value_delimiter = ',')]
    pub redirect_uris: Option<Vec<String>>,
}

/// An app registration: client id, secret and the application roles it was granted.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct ClientSpec {
    pub client_id: String,
    pub secret: String,
    #[serde(default)]
    pub roles: Vec<String>,
    /// The secret has expired (token requests get AADSTS7000222).
    #[serde(default)]
    pub secret_expired: bool,
    #[serde(default)]
    pub display_name: Option<String>,
    /// Redirect URIs registered for sign-in; empty accepts any http(s) address.
    #[serde(default)]
    pub redirect_uris: Vec<String>,
}

impl ClientSpec {
    /// A client with every documented role.
    pub fn new(client_id: &str, secret: &str) -> Self {
        ClientSpec {
            client_id: client_id.to_string(),
            secret: secret.to_string(),
            roles: ALL_ROLES.iter().map(|r| r.to_string()).collect(),
            secret_expired: false,
            display_name: None,
            redirect_uris: vec![],
        }
    }
    pub fn with_roles(mut self, roles: &[&str]) -> Self {
        self.roles = roles.iter().map(|r| r.to_string()).collect();
        self
    }
}

/// Everything the simulator needs to run; `Default` is a small tenant on a free port.
#[derive(Debug, Clone)]
pub struct SimConfig {
    /// `127.0.0.1:0` picks a free port.
    pub bind: String,
    pub machines: usize,
    pub seed: u64,
    pub tenant_id: String,
    pub tenant_domain: String,
    /// The first client is the one reported by [`RunningSimulator::client_id`].
    pub clients: Vec<ClientSpec>,
    pub match_fraction: f64,
    pub duplicate_fraction: f64,
    pub hostile: bool,
    pub action_pending_ms: u64,
    pub action_inprogress_ms: u64,
    /// How long a link from GetPackageUri stays valid.
    pub package_link_secs: u64,
    pub token_lifetime_secs: u64,
    pub rate_limits: bool,
    /// Accept tokens whose audience is https://api.security.microsoft.com.
    pub accept_xdr_audience: bool,
    pub faults: Faults,
    /// "Now" of the generated data; default: today 00:00 UTC (so a seed gives the same
    /// tenant all day).
    pub anchor: Option<DateTime<Utc>>,
    pub workers: usize,
    /// The people of the directory, for sign-in (see [`oidc::default_users`]).
    pub users: Vec<SimUser>,
}

impl Default for SimConfig {
    fn default() -> Self {
        SimConfig {
            bind: "127.0.0.1:0".into(),
            machines: 200,
            seed: 1,
            tenant_id: DEFAULT_TENANT_ID.into(),
            tenant_domain: DEFAULT_TENANT_DOMAIN.into(),
            clients: vec![ClientSpec::new(DEFAULT_CLIENT_ID, DEFAULT_CLIENT_SECRET)],
            match_fraction: 0.5,
            duplicate_fraction: 0.02,
            hostile: false,
            action_pending_ms: 3000,
            action_inprogress_ms: 7000,
            package_link_secs: 600,
            token_lifetime_secs: 3599,
            rate_limits: true,
            accept_xdr_audience: true,
            faults: Faults::default(),
            anchor: None,
            workers: 2,
            users: oidc::default_users(DEFAULT_TENANT_DOMAIN),
        }
    }
}

impl From<&SimulateArgs> for SimConfig {
    fn from(a: &SimulateArgs) -> Self {
        let mut client = ClientSpec::new(&a.client, &a.secret);
        if let Some(r) = &a.roles {
            client.roles = r.iter().map(|s| s.trim().to_string()).filter(|s| !s.is_empty()).collect();
        }
        client.redirect_uris = a.redirect_uris.clone().unwrap_or_default();
        SimConfig {
            bind: a.bind.clone(),
            machines: a.machines as usize,
            seed: a.seed,
            tenant_id: a.tenant.to_ascii_lowercase(),
            tenant_domain: a.tenant_domain.to_ascii_lowercase(),
            clients: vec![client],
            match_fraction: a.match_fraction.clamp(0.0, 1.0),
            duplicate_fraction: a.duplicate_fraction.clamp(0.0, 0.5),
            hostile: a.hostile,
            action_pending_ms: a.action_pending_ms,
            action_inprogress_ms: a.action_inprogress_ms,
            package_link_secs: a.package_link_secs,
            token_lifetime_secs: a.token_lifetime_secs,
            rate_limits: !a.no_rate_limits,
            accept_xdr_audience: !a.reject_xdr_audience,
            faults: Faults::default(),
            anchor: None,
            workers: a.workers.max(1),
            users: oidc::default_users(&a.tenant_domain.to_ascii_lowercase()),
        }
    }
}

impl SimConfig {
    pub fn tenant_params(&self) -> TenantParams {
        let anchor =
            self.anchor.unwrap_or_else(|| Utc::now().duration_trunc(TimeDelta::days(1)).unwrap_or_else(|_| Utc::now()));
        TenantParams {
            seed: self.seed,
            machines: self.machines.max(1),
            tenant_id: self.tenant_id.to_ascii_lowercase(),
            tenant_domain: self.tenant_domain.to_ascii_lowercase(),
            match_fraction: self.match_fraction,
            duplicate_fraction: self.duplicate_fraction,
            hostile: self.hostile,
            anchor,
            changes: Vec::new(),
        }
    }
}

/// Shared state of one simulator instance.
pub(crate) struct SimState {
    pub config: SimConfig,
    /// The tenant as of its latest change (`POST /_sim/tenant/advance` replaces it whole).
    pub tenant: RwLock<Arc<Tenant>>,
    pub clients: RwLock<HashMap<String, ClientSpec>>,
    pub faults: Mutex<faults::FaultState>,
    pub counters: Mutex<Counters>,
    pub limiter: limits::RateLimiter,
    pub actions: Mutex<actions::ActionStore>,
    /// HMAC key of access tokens and export-file links; random per instance.
    pub key: Vec<u8>,
    pub token_serial: AtomicU64,
    /// Tokens with a serial below this were invalidated.
    pub valid_from_serial: AtomicU64,
    /// People who can sign in, in the order the sign-in page lists them.
    pub users: RwLock<Vec<SimUser>>,
    /// Authorization codes not yet redeemed.
    pub codes: Mutex<HashMap<String, oidc::AuthCode>>,
    /// Tags added (`true`) and removed through the API, in order, by machine index: applied
    /// again to the tenant each change makes, so that a write outlives `advance`.
    pub tag_writes: Mutex<Vec<(u32, String, bool)>>,
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

impl SimState {
    fn new(config: SimConfig) -> SimState {
        let tenant = Arc::new(Tenant::generate(config.tenant_params()));
        let history = actions::ActionStore::with_history(&tenant);
        let clients = config.clients.iter().map(|c| (c.client_id.to_ascii_lowercase(), c.clone())).collect();
        let key: [u8; 32] = rand::random();
        let users = config.users.iter().map(|u| oidc::with_oid(u.clone(), &config.tenant_id)).collect();
        SimState {
            users: RwLock::new(users),
            codes: Mutex::new(HashMap::new()),
            tag_writes: Mutex::new(Vec::new()),
            faults: Mutex::new(faults::FaultState::new(config.faults.clone())),
            config,
            tenant: RwLock::new(tenant),
            clients: RwLock::new(clients),
            counters: Mutex::new(Counters::default()),
            limiter: limits::RateLimiter::default(),
            actions: Mutex::new(history),
            key: key.to_vec(),
            token_serial: AtomicU64::new(1),
            valid_from_serial: AtomicU64::new(0),
        }
    }

    /// The tenant as it stands now.
    pub fn tenant(&self) -> Arc<Tenant> {
        self.tenant.read().unwrap_or_else(|e| e.into_inner()).clone()
    }
    /// Changes the tenant as time in a real one would between two syncs (see
    /// `tenant::evolution`): the same seed with one more change, made now. Returns how many
    /// changes the tenant has had.
    pub fn advance(&self) -> usize {
        let mut params = self.tenant().params.clone();
        params.changes.push(Utc::now());
        let n = params.changes.len();
        let mut next = Tenant::generate(params);
        let writes = lock(&self.tag_writes);
        for (index, tag, add) in writes.iter() {
            next.apply_tag(*index, tag, *add);
        }
        *self.tenant.write().unwrap_or_else(|e| e.into_inner()) = Arc::new(next);
        n
    }
    /// Adds or removes one tag of machine `index` (`tags.rs`): the tenant is replaced by a copy
    /// with the change, so that requests already reading the tenant see it whole. Answers the
    /// machine as it is now.
    pub fn write_tag(&self, index: u32, tag: &str, add: bool) -> Option<tenant::Machine> {
        let mut writes = lock(&self.tag_writes);
        let mut current = self.tenant.write().unwrap_or_else(|e| e.into_inner());
        let mut next = current.copy();
        if next.apply_tag(index, tag, add) {
            writes.push((index, tag.to_owned(), add));
            *current = Arc::new(next);
        }
        current.machines().get(index as usize).cloned()
    }
    pub fn set_faults(&self, f: Faults) {
        *lock(&self.faults) = faults::FaultState::new(f);
    }
    pub fn faults(&self) -> Faults {
        lock(&self.faults).faults.clone()
    }
    pub fn counters(&self) -> Counters {
        lock(&self.counters).clone()
    }
    pub fn invalidate_tokens(&self) {
        let s = self.token_serial.load(Ordering::SeqCst);
        self.valid_from_serial.store(s, Ordering::SeqCst);
    }
    pub fn upsert_client(&self, c: ClientSpec) {
        self.clients.write().unwrap_or_else(|e| e.into_inner()).insert(c.client_id.to_ascii_lowercase(), c);
    }
    pub fn client(&self, id: &str) -> Option<ClientSpec> {
        self.clients.read().unwrap_or_else(|e| e.into_inner()).get(&id.to_ascii_lowercase()).cloned()
    }
    pub fn users(&self) -> Vec<SimUser> {
        self.users.read().unwrap_or_else(|e| e.into_inner()).clone()
    }
    pub fn user(&self, username: &str) -> Option<SimUser> {
        self.users
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .iter()
            .find(|u| u.username.eq_ignore_ascii_case(username))
            .cloned()
    }
    /// Adds a user, or replaces the one with the same user name.
    pub fn upsert_user(&self, u: SimUser) -> SimUser {
        let u = oidc::with_oid(u, &self.tenant().params.tenant_id);
        let mut users = self.users.write().unwrap_or_else(|e| e.into_inner());
        match users.iter_mut().find(|x| x.username.eq_ignore_ascii_case(&u.username)) {
            Some(x) => *x = u.clone(),
            None => users.push(u.clone()),
        }
        u
    }
    /// Counters, rate-limit windows, faults (back to the configured ones), actions and
    /// isolation state; tokens stay valid.
    pub fn reset(&self) {
        *lock(&self.counters) = Counters::default();
        self.limiter.reset();
        self.set_faults(self.config.faults.clone());
        *lock(&self.actions) = actions::ActionStore::with_history(&self.tenant());
    }
}

fn configure(cfg: &mut web::ServiceConfig) {
    token::configure(cfg);
    oidc::configure(cfg);
    // Before the admin scope, which would otherwise claim every `/_sim/...` path.
    export::configure_files(cfg);
    package::configure_files(cfg);
    admin::configure(cfg);
    // The versioned prefix first: the `/api` scope would otherwise claim `/api/v1.0/...`.
    cfg.service(web::scope("/api/v1.0").configure(api::configure));
    cfg.service(web::scope("/api").configure(api::configure));
    cfg.default_service(web::to(api::not_found));
}

/// A simulator serving in the background of the current tokio runtime.
pub struct RunningSimulator {
    /// `http://127.0.0.1:PORT` – both the login base URL and the API base URL.
    pub base_url: String,
    pub tenant_id: String,
    pub tenant_domain: String,
    pub client_id: String,
    pub client_secret: String,
    state: Arc<SimState>,
    handle: actix_web::dev::ServerHandle,
    join: tokio::task::JoinHandle<std::io::Result<()>>,
}

/// What a client of the simulated service needs: where it is, the tenant and app registration,
/// the app roles and group its people carry, and who can sign in.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ServiceInfo {
    pub base_url: String,
    pub tenant_id: String,
    pub tenant_domain: String,
    pub client_id: String,
    pub client_secret: String,
    pub admin_app_role: String,
    pub operator_app_role: String,
    pub analysts_group: String,
    pub users: Vec<String>,
}

/// Generate the tenant, bind, and serve in the background; returns once listening.
pub async fn start(config: SimConfig) -> anyhow::Result<RunningSimulator> {
    let bind = config.bind.clone();
    let workers = config.workers.max(1);
    let first =
        config.clients.first().cloned().unwrap_or_else(|| ClientSpec::new(DEFAULT_CLIENT_ID, DEFAULT_CLIENT_SECRET));
    let tenant_id = config.tenant_id.to_ascii_lowercase();
    let tenant_domain = config.tenant_domain.to_ascii_lowercase();
    // Generation is CPU work; keep it off the async executor.
    let state = Arc::new(
        tokio::task::spawn_blocking(move || SimState::new(config)).await.context("tenant generation panicked")?,
    );
    // Build the who-has-what index (exposedMachines, machineReferences) in the background so
    // the first vulnerability call does not pay for a scan of every machine's rows.
    let warm = state.clone();
    std::thread::spawn(move || {
        let _ = warm.tenant().machines_with_vulnerability(0);
    });
    let data = web::Data::from(state.clone());
    let server = HttpServer::new(move || App::new().app_data(data.clone()).configure(configure))
        .workers(workers)
        .shutdown_timeout(1)
        .disable_signals()
        .bind(&bind)
        .with_context(|| format!("binding {bind}"))?;
    let addr = server.addrs().first().copied().context("server has no address")?;
    let server = server.run();
    let handle = server.handle();
    let join = tokio::spawn(server);
    wait_until_serving(addr).await?;
    Ok(RunningSimulator {
        base_url: format!("http://{addr}"),
        tenant_id,
        tenant_domain,
        client_id: first.client_id,
        client_secret: first.secret,
        state,
        handle,
        join,
    })
}

/// Waits (yielding to the runtime, which starts the server's workers) until the server answers,
/// so that a caller may then use it from blocking code too.
async fn wait_until_serving(addr: std::net::SocketAddr) -> anyhow::Result<()> {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    loop {
        if let Ok(mut conn) = tokio::net::TcpStream::connect(addr).await {
            let probe = "GET /_sim/counters HTTP/1.1\r\nHost: sim\r\nConnection: close\r\n\r\n";
            let mut answer = Vec::new();
            if conn.write_all(probe.as_bytes()).await.is_ok()
                && conn.read_to_end(&mut answer).await.is_ok()
                && answer.starts_with(b"HTTP/1.1 200")
            {
                return Ok(());
            }
        }
        anyhow::ensure!(std::time::Instant::now() < deadline, "the simulator did not start serving");
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
}

impl RunningSimulator {
    /// What a client of the simulated service needs to know, as `--print-json` prints it.
    pub fn service_info(&self) -> ServiceInfo {
        ServiceInfo {
            base_url: self.base_url.clone(),
            tenant_id: self.tenant_id.clone(),
            tenant_domain: self.tenant_domain.clone(),
            client_id: self.client_id.clone(),
            client_secret: self.client_secret.clone(),
            admin_app_role: oidc::ADMIN_APP_ROLE.into(),
            operator_app_role: oidc::OPERATOR_APP_ROLE.into(),
            analysts_group: oidc::ANALYSTS_GROUP.into(),
            users: self.state.users().into_iter().map(|u| u.username).collect(),
        }
    }

    pub fn tenant(&self) -> Arc<Tenant> {
        self.state.tenant()
    }
    /// v2 token URL for the configured tenant.
    pub fn token_url(&self) -> String {
        format!("{}/{}/oauth2/v2.0/token", self.base_url, self.tenant_id)
    }
    // Control and inspection go through the admin endpoints, over HTTP (see `admin_client`).
    // They panic when the simulator cannot be reached: they are for tests and benchmarks, which
    // cannot go on without it.

    fn post_admin(&self, path: &str, body: &impl Serialize) -> (u16, Vec<u8>) {
        admin_client::post(&self.base_url, path, body).unwrap_or_else(|e| panic!("POST {path}: {e:#}"))
    }

    fn get_admin<T: serde::de::DeserializeOwned>(&self, path: &str) -> T {
        admin_client::get(&self.base_url, path).unwrap_or_else(|e| panic!("GET {path}: {e:#}"))
    }

    /// Replace the installed faults (`POST /_sim/faults`).
    pub fn set_faults(&self, faults: Faults) {
        let (status, body) = self.post_admin("/_sim/faults", &faults);
        assert_eq!(status, 200, "faults refused: {}", String::from_utf8_lossy(&body));
    }
    pub fn faults(&self) -> Faults {
        self.get_admin("/_sim/faults")
    }
    /// Make every token issued so far invalid (401 from now on).
    pub fn invalidate_tokens(&self) {
        self.post_admin("/_sim/tokens/invalidate", &serde_json::json!({}));
    }
    pub fn counters(&self) -> Counters {
        self.get_admin("/_sim/counters")
    }
    /// Changes the tenant as a real one changes between syncs (`POST /_sim/tenant/advance`);
    /// returns how many changes it has had.
    pub fn advance(&self) -> usize {
        let (status, body) = self.post_admin("/_sim/tenant/advance", &serde_json::json!({}));
        assert_eq!(status, 200, "advance refused: {}", String::from_utf8_lossy(&body));
        let v: serde_json::Value = serde_json::from_slice(&body).expect("the simulator answers with JSON");
        v["changes"].as_u64().unwrap_or(0) as usize
    }
    /// See `POST /_sim/reset`.
    pub fn reset(&self) {
        self.post_admin("/_sim/reset", &serde_json::json!({}));
    }
    /// Add or replace an app registration.
    pub fn add_client(&self, spec: ClientSpec) {
        let (status, body) = self.post_admin("/_sim/clients", &spec);
        assert_eq!(status, 200, "client refused: {}", String::from_utf8_lossy(&body));
    }
    /// Change the roles granted to a client (affects tokens issued afterwards); false when
    /// there is no such client.
    pub fn set_client_roles(&self, client_id: &str, roles: &[&str]) -> bool {
        self.post_admin("/_sim/clients", &serde_json::json!({"client_id": client_id, "roles": roles})).0 == 200
    }
    /// Add a person who can sign in, or replace the one with the same user name; returns it
    /// with its object id.
    pub fn add_user(&self, user: SimUser) -> SimUser {
        let (status, body) = self.post_admin("/_sim/users", &user);
        assert_eq!(status, 200, "user refused: {}", String::from_utf8_lossy(&body));
        serde_json::from_slice(&body).expect("the simulator answers with the user")
    }
    pub fn users(&self) -> Vec<SimUser> {
        self.get_admin("/_sim/users")
    }
    /// Mark a client's secret expired (AADSTS7000222 from now on); false when there is no such
    /// client.
    pub fn expire_client_secret(&self, client_id: &str) -> bool {
        self.post_admin("/_sim/clients", &serde_json::json!({"client_id": client_id, "secret_expired": true})).0 == 200
    }
    /// Isolation state of a machine as changed by completed isolate/unisolate actions.
    pub fn isolation_state(&self, machine_id: &str) -> Option<IsolationState> {
        let path = format!("/_sim/machines/{machine_id}");
        let v: serde_json::Value = admin_client::get(&self.base_url, &path).ok()?;
        Some(IsolationState::from_json(&v["isolation"]))
    }
    /// Stop serving and wait for the server to finish.
    pub async fn stop(self) {
        self.handle.stop(true).await;
        let _ = self.join.await;
    }
}

fn print_banner(sim: &RunningSimulator, machines: usize) {
    let t = sim.tenant();
    println!("Defender for Endpoint simulator listening");
    println!("  tenant id:        {}", sim.tenant_id);
    println!("  tenant domain:    {}", sim.tenant_domain);
    println!("  client id:        {}", sim.client_id);
    println!("  client secret:    {}", sim.client_secret);
    println!("  login base URL:   {}", sim.base_url);
    println!("  API base URL:     {}", sim.base_url);
    println!("  token URL (v2):   {}", sim.token_url());
    println!("  token URL (v1):   {}/{}/oauth2/token", sim.base_url, sim.tenant_id);
    println!("  scope:            {MDE_AUDIENCE}/.default");
    println!(
        "  tenant:           {machines} machines, {} vulnerabilities, {} machine-vulnerability rows, {} alerts",
        t.vulnerabilities().len(),
        t.total_machine_vulnerabilities(),
        t.alerts().len()
    );
    println!("  sign-in (OIDC):   {}/{}/v2.0/.well-known/openid-configuration", sim.base_url, sim.tenant_id);
    for u in sim.state.users() {
        let what = u.roles.iter().chain(&u.groups).cloned().collect::<Vec<_>>().join(", ");
        println!("    user:           {} ({})", u.username, if what.is_empty() { "no role" } else { &what });
    }
    println!(
        "  admin:            {}/_sim/counters, /_sim/faults, /_sim/reset, /_sim/clients, /_sim/users",
        sim.base_url
    );
}

/// Run the simulator until Ctrl-C (the `simulate` subcommand).
pub async fn run(args: SimulateArgs) -> anyhow::Result<()> {
    let mut config = SimConfig::from(&args);
    if let Some(f) = &args.faults {
        let text = match f.strip_prefix('@') {
            Some(path) => std::fs::read_to_string(path).with_context(|| format!("reading {path}"))?,
            None => f.clone(),
        };
        config.faults = serde_json::from_str(&text).context("parsing --faults")?;
    }
    if let Some(u) = &args.sso_users {
        let text = match u.strip_prefix('@') {
            Some(path) => std::fs::read_to_string(path).with_context(|| format!("reading {path}"))?,
            None => u.clone(),
        };
        config.users = serde_json::from_str(&text).context("parsing --sso-users")?;
    }
    if let Some(path) = &args.emit_observations {
        let params = config.tenant_params();
        let tenant = tokio::task::spawn_blocking(move || Tenant::generate(params)).await?;
        let obs = tenant.network_observations();
        std::fs::write(path, serde_json::to_vec_pretty(&obs)?)
            .with_context(|| format!("writing {}", path.display()))?;
        eprintln!("wrote {} network observations to {}", obs.len(), path.display());
        if args.exit_after_emit {
            return Ok(());
        }
    }
    let machines = config.machines;
    let started = std::time::Instant::now();
    let sim = start(config).await?;
    if args.print_json {
        println!("{}", serde_json::to_string(&sim.service_info())?);
        eprintln!("Defender for Endpoint simulator listening at {} ({machines} machines)", sim.base_url);
    } else {
        print_banner(&sim, machines);
        println!("  generated in:     {:.2?}", started.elapsed());
    }
    tokio::signal::ctrl_c().await.context("waiting for Ctrl-C")?;
    sim.stop().await;
    Ok(())
}
