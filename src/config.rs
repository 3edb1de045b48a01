//! Boot settings: an optional TOML file, then environment variables, which win. Settings an
//! administrator edits in the web interface (integrations, profiles) live in the database.
//!
//! Every setting, its variable and its default is listed in README.md ("Settings"), and
//! `config.example.toml` shows each one; a test below keeps both complete.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use anyhow::Context;
use base64::Engine;
use hmac::{Hmac, Mac};
use serde::Deserialize;
use sha2::Sha256;

#[derive(Debug, Clone, Deserialize, serde::Serialize)]
#[serde(default, deny_unknown_fields)]
pub struct Settings {
    /// `sqlite://PATH` (default `sqlite://data/endpoint-analytics.db`) or `postgres://...`.
    pub database_url: String,
    /// Where to listen (default `127.0.0.1:8080`).
    pub bind: String,
    /// Where the master key file is kept when `master_key` is not given.
    pub data_dir: PathBuf,
    /// Base64 of 32 random bytes. Encrypts stored secrets and signs session cookies. When
    /// absent it is generated on first start into `data_dir/master.key`. Instances sharing one
    /// PostgreSQL database must share this key.
    pub master_key: Option<String>,
    /// Mark cookies `Secure` and name them with the `__Host-` prefix. Unset, it is on unless the
    /// server listens on a loopback address only (a browser on this machine, or a local proxy):
    /// anything reachable from the network is expected behind HTTPS.
    pub cookie_secure: Option<bool>,
    /// A session unused for this long ends.
    pub session_idle_minutes: i64,
    /// A session ends this long after sign-in, used or not.
    pub session_absolute_hours: i64,
    /// Failed sign-ins per user name and address before a lock-out.
    pub login_max_failures: u32,
    pub login_lockout_minutes: i64,
    /// HTTP worker threads (default: one per core).
    pub workers: usize,
    pub db_pool_size: u32,
    /// `text` or `json`.
    pub log_format: String,
    /// Addresses (`10.0.0.5`) and networks (`10.0.0.0/24`, `fd00::/8`) that may read `/metrics`
    /// without a token (a Prometheus server). Empty by default: only Admin API tokens may. The
    /// address is the client's (see `trusted_proxies`).
    pub metrics_allow: Vec<String>,
    /// Reverse proxies (addresses or networks) whose client-address headers are believed.
    /// Empty by default: the TCP peer is the client, and such headers from anyone are ignored
    /// (they could name any address).
    pub trusted_proxies: Vec<String>,
    /// Which headers those proxies write: `x-forwarded-for` (with `X-Forwarded-Proto`) or
    /// `forwarded` (RFC 7239). Only that family is read: the other could be the client's own,
    /// passed on by the proxy unchanged.
    pub proxy_header: String,
    /// A Defender sync whose machine listing would mark more than this share (percent) of the
    /// known machines stale stops with the previous data kept, unless an admin confirms it
    /// (default 50; 100 turns the check off).
    pub defender_stale_guard_percent: u8,
    /// A Defender machine the network still sees but Defender has not for this many days is a
    /// coverage blind spot.
    pub coverage_blind_spot_days: i64,
    /// The level of the "No EDR coverage" risk factor: Low, Medium, High or Critical.
    pub coverage_risk_level: String,
    /// How many days of risk history are kept (each endpoint's state at the cutoff stays).
    pub risk_history_days: i64,
    /// How many days sent events and the delivery log are kept (an event some enabled
    /// destination has not dealt with yet is kept until it has).
    pub events_retention_days: i64,
    /// Device actions that response rules together may send in an hour (Defender allows 100
    /// calls a minute and 1,500 an hour per action API).
    pub rules_actions_per_hour: i64,
    /// How long a response rule's decision waits for its approval before it expires.
    pub rules_approval_hours: i64,
    /// Calls to Defender's tag API (profile tags and response rules' tags) the product makes in
    /// an hour at most (Defender allows 100 calls a minute and 1,500 an hour).
    pub defender_tag_writes_per_hour: i64,
}

impl Default for Settings {
    fn default() -> Self {
        Self {
            database_url: "sqlite://data/endpoint-analytics.db".into(),
            bind: "127.0.0.1:8080".into(),
            data_dir: "data".into(),
            master_key: None,
            cookie_secure: None,
            session_idle_minutes: 30,
            session_absolute_hours: 12,
            login_max_failures: 5,
            login_lockout_minutes: 15,
            workers: std::thread::available_parallelism().map(|n| n.get()).unwrap_or(2),
            db_pool_size: 16,
            log_format: "text".into(),
            metrics_allow: Vec::new(),
            trusted_proxies: Vec::new(),
            proxy_header: "x-forwarded-for".into(),
            defender_stale_guard_percent: 50,
            coverage_blind_spot_days: 7,
            coverage_risk_level: "Medium".into(),
            risk_history_days: 400,
            events_retention_days: 30,
            rules_actions_per_hour: 30,
            rules_approval_hours: 24,
            defender_tag_writes_per_hour: 300,
        }
    }
}

/// Environment variables and the setting each one sets.
const ENV: &[(&str, &str)] = &[
    ("DATABASE_URL", "database_url"),
    ("EA_BIND", "bind"),
    ("EA_DATA_DIR", "data_dir"),
    ("EA_MASTER_KEY", "master_key"),
    ("EA_COOKIE_SECURE", "cookie_secure"),
    ("EA_SESSION_IDLE_MINUTES", "session_idle_minutes"),
    ("EA_SESSION_ABSOLUTE_HOURS", "session_absolute_hours"),
    ("EA_LOGIN_MAX_FAILURES", "login_max_failures"),
    ("EA_LOGIN_LOCKOUT_MINUTES", "login_lockout_minutes"),
    ("EA_WORKERS", "workers"),
    ("EA_DB_POOL_SIZE", "db_pool_size"),
    ("EA_LOG_FORMAT", "log_format"),
    ("EA_METRICS_ALLOW", "metrics_allow"),
    ("EA_TRUSTED_PROXIES", "trusted_proxies"),
    ("EA_PROXY_HEADER", "proxy_header"),
    ("EA_DEFENDER_STALE_GUARD_PERCENT", "defender_stale_guard_percent"),
    ("EA_COVERAGE_BLIND_SPOT_DAYS", "coverage_blind_spot_days"),
    ("EA_COVERAGE_RISK_LEVEL", "coverage_risk_level"),
    ("EA_RISK_HISTORY_DAYS", "risk_history_days"),
    ("EA_EVENTS_RETENTION_DAYS", "events_retention_days"),
    ("EA_RULES_ACTIONS_PER_HOUR", "rules_actions_per_hour"),
    ("EA_RULES_APPROVAL_HOURS", "rules_approval_hours"),
    ("EA_DEFENDER_TAG_WRITES_PER_HOUR", "defender_tag_writes_per_hour"),
];

/// Every environment variable and the setting it sets (for the man page).
pub fn variables() -> &'static [(&'static str, &'static str)] {
    ENV
}

/// The settings a configuration file's text does not show (as `name = …`, commented or not):
/// the example file and the packaged one must explain every setting.
#[cfg(test)]
pub(crate) fn settings_not_shown(text: &str) -> Vec<String> {
    let value = serde_json::to_value(Settings::default()).unwrap();
    let names = value.as_object().unwrap().keys();
    names
        .filter(|name| {
            !text.lines().any(|l| {
                let l = l.trim_start_matches('#').trim_start();
                l.strip_prefix(name.as_str()).is_some_and(|rest| rest.trim_start().starts_with('='))
            })
        })
        .cloned()
        .collect()
}

impl Settings {
    /// Reads the file (when given, or `EA_CONFIG`), then the environment.
    pub fn load(file: Option<&Path>) -> anyhow::Result<Self> {
        let file = file.map(Path::to_path_buf).or_else(|| std::env::var_os("EA_CONFIG").map(PathBuf::from));
        let mut table = match &file {
            Some(path) => {
                let text = std::fs::read_to_string(path)
                    .with_context(|| format!("cannot read the configuration file {}", path.display()))?;
                text.parse::<toml::Table>()
                    .with_context(|| format!("the configuration file {} is not valid TOML", path.display()))?
            }
            None => toml::Table::new(),
        };
        for (var, key) in ENV {
            if let Ok(value) = std::env::var(var) {
                table.insert((*key).into(), env_value(key, &value)?);
            }
        }
        let settings: Settings =
            table.try_into().map_err(|e: toml::de::Error| anyhow::anyhow!("invalid setting: {}", e.message()))?;
        settings.validate()?;
        Ok(settings)
    }

    fn validate(&self) -> anyhow::Result<()> {
        self.bind
            .parse::<SocketAddr>()
            .with_context(|| format!("EA_BIND {:?} is not an address:port such as 127.0.0.1:8080", self.bind))?;
        anyhow::ensure!(self.session_idle_minutes > 0, "session_idle_minutes must be positive");
        anyhow::ensure!(self.session_absolute_hours > 0, "session_absolute_hours must be positive");
        anyhow::ensure!(self.workers > 0, "workers must be positive");
        anyhow::ensure!(self.db_pool_size > 0, "db_pool_size must be positive");
        anyhow::ensure!(matches!(self.log_format.as_str(), "text" | "json"), "log_format must be text or json");
        self.metrics_allow_nets()?;
        self.trusted_proxy_nets()?;
        self.proxy_header()?;
        anyhow::ensure!((1..=100).contains(&self.login_max_failures), "login_max_failures must be between 1 and 100");
        anyhow::ensure!(
            (1..=1440).contains(&self.login_lockout_minutes),
            "login_lockout_minutes must be between 1 and 1440 (a day)"
        );
        anyhow::ensure!(
            (1..=100).contains(&self.defender_stale_guard_percent),
            "defender_stale_guard_percent must be between 1 and 100 (100 turns the check off)"
        );
        anyhow::ensure!(
            (2..=365).contains(&self.coverage_blind_spot_days),
            "coverage_blind_spot_days must be between 2 and 365 (Defender's lastSeen is the last full report, about daily)"
        );
        self.coverage_policy()?;
        anyhow::ensure!(
            (30..=3650).contains(&self.risk_history_days),
            "risk_history_days must be between 30 and 3650 (ten years)"
        );
        anyhow::ensure!(
            (1..=3650).contains(&self.events_retention_days),
            "events_retention_days must be between 1 and 3650 (ten years)"
        );
        anyhow::ensure!(
            (1..=500).contains(&self.rules_actions_per_hour),
            "rules_actions_per_hour must be between 1 and 500 (Defender allows 1,500 calls an hour per action)"
        );
        anyhow::ensure!(
            (1..=168).contains(&self.rules_approval_hours),
            "rules_approval_hours must be between 1 and 168 (a week)"
        );
        anyhow::ensure!(
            (1..=750).contains(&self.defender_tag_writes_per_hour),
            "defender_tag_writes_per_hour must be between 1 and 750 (Defender allows 1,500 tag calls an hour)"
        );
        Ok(())
    }

    /// How EDR coverage gaps are judged and weighed.
    pub fn coverage_policy(&self) -> anyhow::Result<crate::coverage::CoveragePolicy> {
        let level = crate::domain::risk::RiskLevel::ALL
            .into_iter()
            .filter(|l| *l != crate::domain::risk::RiskLevel::None)
            .find(|l| l.as_str().eq_ignore_ascii_case(self.coverage_risk_level.trim()))
            .ok_or_else(|| {
                anyhow::anyhow!(
                    "coverage_risk_level {:?} is not a risk level: use Low, Medium, High or Critical",
                    self.coverage_risk_level
                )
            })?;
        Ok(crate::coverage::CoveragePolicy { blind_after_days: self.coverage_blind_spot_days, level })
    }

    /// `metrics_allow` parsed; a bare address is a network of one.
    pub fn metrics_allow_nets(&self) -> anyhow::Result<Vec<ipnet::IpNet>> {
        networks("metrics_allow", &self.metrics_allow)
    }

    /// `trusted_proxies` parsed; a bare address is a network of one.
    pub fn trusted_proxy_nets(&self) -> anyhow::Result<Vec<ipnet::IpNet>> {
        networks("trusted_proxies", &self.trusted_proxies)
    }

    /// `proxy_header` parsed.
    pub fn proxy_header(&self) -> anyhow::Result<ProxyHeader> {
        ProxyHeader::parse(&self.proxy_header)
            .ok_or_else(|| anyhow::anyhow!("proxy_header must be x-forwarded-for or forwarded"))
    }

    /// Whether cookies are `Secure`: as set, else unless the server listens on loopback only.
    pub fn cookies_secure(&self) -> bool {
        self.cookie_secure.unwrap_or_else(|| !self.bind.parse::<SocketAddr>().is_ok_and(|a| a.ip().is_loopback()))
    }

    /// The master key: from the settings, or from `data_dir/master.key`, created on first use.
    pub fn master_key(&self) -> anyhow::Result<MasterKey> {
        let b64 = base64::engine::general_purpose::STANDARD;
        if let Some(k) = &self.master_key {
            let bytes = b64.decode(k.trim()).context("EA_MASTER_KEY is not base64")?;
            return MasterKey::from_bytes(&bytes).context("EA_MASTER_KEY must be 32 bytes of base64");
        }
        let path = self.data_dir.join("master.key");
        if path.exists() {
            let text = std::fs::read_to_string(&path)
                .with_context(|| format!("cannot read the master key {}", path.display()))?;
            let bytes = b64.decode(text.trim()).with_context(|| format!("{} is not base64", path.display()))?;
            return MasterKey::from_bytes(&bytes).with_context(|| format!("{} must hold 32 bytes", path.display()));
        }
        std::fs::create_dir_all(&self.data_dir)
            .with_context(|| format!("cannot create the data folder {}", self.data_dir.display()))?;
        let key = MasterKey::generate();
        write_private(&path, &b64.encode(key.0))?;
        tracing::info!(path = %path.display(), "generated a new master key; back it up with the database");
        Ok(key)
    }
}

/// Which headers the trusted proxies write.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ProxyHeader {
    /// `X-Forwarded-For` (appended to by nginx, HAProxy, Caddy, Traefik, cloud load balancers)
    /// and `X-Forwarded-Proto`.
    XForwardedFor,
    /// `Forwarded` (RFC 7239): `for=` and `proto=`.
    Forwarded,
}

impl ProxyHeader {
    pub fn parse(s: &str) -> Option<Self> {
        match s.trim().to_ascii_lowercase().as_str() {
            "x-forwarded-for" => Some(Self::XForwardedFor),
            "forwarded" => Some(Self::Forwarded),
            _ => None,
        }
    }
}

/// Addresses (`10.0.0.5`) and networks (`10.0.0.0/24`, `fd00::/8`) of a setting.
fn networks(setting: &str, entries: &[String]) -> anyhow::Result<Vec<ipnet::IpNet>> {
    entries
        .iter()
        .map(|entry| {
            let e = entry.trim();
            e.parse::<ipnet::IpNet>()
                .or_else(|_| e.parse::<std::net::IpAddr>().map(ipnet::IpNet::from))
                .map(|net| net.trunc())
                .map_err(|_| anyhow::anyhow!("{setting}: {e:?} is not an IP address or network such as 10.0.0.0/24"))
        })
        .collect()
}

fn env_value(key: &str, value: &str) -> anyhow::Result<toml::Value> {
    let int = |v: &str| -> anyhow::Result<toml::Value> {
        v.trim()
            .parse::<i64>()
            .map(toml::Value::Integer)
            .with_context(|| format!("{key} must be a whole number, not {v:?}"))
    };
    Ok(match key {
        "cookie_secure" => {
            toml::Value::Boolean(matches!(value.trim().to_ascii_lowercase().as_str(), "1" | "true" | "yes" | "on"))
        }
        "session_idle_minutes"
        | "session_absolute_hours"
        | "login_max_failures"
        | "login_lockout_minutes"
        | "workers"
        | "db_pool_size"
        | "defender_stale_guard_percent"
        | "coverage_blind_spot_days"
        | "risk_history_days"
        | "events_retention_days"
        | "rules_actions_per_hour"
        | "rules_approval_hours"
        | "defender_tag_writes_per_hour" => int(value)?,
        // A comma-separated list.
        "metrics_allow" | "trusted_proxies" => toml::Value::Array(
            value.split(',').map(str::trim).filter(|v| !v.is_empty()).map(|v| toml::Value::String(v.into())).collect(),
        ),
        _ => toml::Value::String(value.to_owned()),
    })
}

#[cfg(unix)]
fn write_private(path: &Path, text: &str) -> anyhow::Result<()> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)
        .with_context(|| format!("cannot create {}", path.display()))?;
    f.write_all(text.as_bytes())?;
    Ok(())
}

#[cfg(not(unix))]
fn write_private(path: &Path, text: &str) -> anyhow::Result<()> {
    std::fs::write(path, text).with_context(|| format!("cannot create {}", path.display()))
}

/// The one secret the product keeps outside its database. Purpose-specific keys are derived
/// from it, so that a leak of one use does not expose another.
#[derive(Clone)]
pub struct MasterKey([u8; 32]);

impl std::fmt::Debug for MasterKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("MasterKey(..)")
    }
}

impl MasterKey {
    pub fn generate() -> Self {
        let mut k = [0u8; 32];
        rand::RngCore::fill_bytes(&mut rand::rng(), &mut k);
        Self(k)
    }

    fn from_bytes(bytes: &[u8]) -> Option<Self> {
        <[u8; 32]>::try_from(bytes).ok().map(Self)
    }

    /// HMAC-SHA256(master, purpose): a 32-byte key for one purpose.
    pub fn derive(&self, purpose: &str) -> [u8; 32] {
        let mut mac = <Hmac<Sha256> as Mac>::new_from_slice(&self.0).expect("HMAC takes any key length");
        mac.update(purpose.as_bytes());
        mac.finalize().into_bytes().into()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn derived_keys_differ_by_purpose() {
        let k = MasterKey::generate();
        assert_ne!(k.derive("a"), k.derive("b"));
        assert_eq!(k.derive("a"), k.derive("a"));
    }

    /// The names of every setting, from the struct itself.
    fn setting_names() -> Vec<String> {
        let value = serde_json::to_value(Settings::default()).unwrap();
        value.as_object().unwrap().keys().cloned().collect()
    }

    #[test]
    fn the_example_file_parses_and_shows_every_setting() {
        let text = include_str!("../config.example.toml");
        let settings: Settings = toml::from_str(text).expect("config.example.toml is a valid configuration");
        settings.validate().expect("config.example.toml holds valid values");
        assert_eq!(settings_not_shown(text), Vec::<String>::new(), "config.example.toml does not show these settings");
    }

    #[test]
    fn every_setting_has_a_variable_and_a_row_in_the_readme() {
        let readme = include_str!("../README.md");
        for name in setting_names() {
            let (var, _) = ENV
                .iter()
                .find(|(_, key)| *key == name)
                .unwrap_or_else(|| panic!("the setting {name} has no environment variable in ENV"));
            let row = format!("| `{name}` | `{var}` |");
            assert!(readme.contains(&row), "README.md's settings table has no row starting {row}");
        }
    }

    #[test]
    fn metrics_allow_takes_addresses_and_networks_and_refuses_the_rest() {
        let s = Settings {
            metrics_allow: vec!["10.0.0.5".into(), " 192.168.1.77/24".into(), "fd00::/8".into()],
            ..Settings::default()
        };
        let nets = s.metrics_allow_nets().unwrap();
        assert!(nets[0].contains(&"10.0.0.5".parse::<std::net::IpAddr>().unwrap()));
        assert!(!nets[0].contains(&"10.0.0.6".parse::<std::net::IpAddr>().unwrap()));
        assert!(nets[1].contains(&"192.168.1.3".parse::<std::net::IpAddr>().unwrap()));
        assert!(nets[2].contains(&"fd12::1".parse::<std::net::IpAddr>().unwrap()));
        for bad in ["10.0.0.0/33", "example.com", "*"] {
            assert!(Settings { metrics_allow: vec![bad.into()], ..Settings::default() }.validate().is_err(), "{bad}");
        }
        assert_eq!(
            env_value("metrics_allow", "10.0.0.1, 10.1.0.0/16,").unwrap(),
            toml::Value::Array(vec!["10.0.0.1".into(), "10.1.0.0/16".into()])
        );
    }

    #[test]
    fn master_key_is_created_once_and_reused() {
        let dir = tempfile::tempdir().unwrap();
        let s = Settings { data_dir: dir.path().into(), ..Settings::default() };
        let a = s.master_key().unwrap();
        let b = s.master_key().unwrap();
        assert_eq!(a.derive("x"), b.derive("x"));
    }
}
