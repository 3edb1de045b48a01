//! What the web pages and the JSON API do with the integration, in one place: save settings
//! (with the enable/disable consequences), test a connection, start a sync, report status.

use super::ConnectionReport;
use super::import::OWNER;
use super::settings::{self, SecretNeeded, Settings};
use super::sync;
use super::{ClientOptions, Credentials, DefenderClient, DefenderError, Secret, Target};
use crate::background::Background;
use crate::coverage::CoveragePolicy;
use crate::db::Db;
use crate::db::models::integration::{self, RunCounts, SyncRun};
use crate::db::models::{audit, defender_machines, jobs};
use crate::db::now;
use crate::modeling::Modeler;
use crate::secrets::SecretBox;

/// The Defender integration as the rest of the product uses it: pages, the JSON API and the
/// background jobs call these methods. It owns the one client of the saved configuration (its
/// token and its share of the API's rate limits) and what a sync, a test or a machine action
/// needs of the application. Cheap to clone; clones share the client.
#[derive(Clone)]
pub struct DefenderService {
    pub(super) db: Db,
    pub(super) modeler: Modeler,
    pub(super) secrets: SecretBox,
    /// Client settings (timeouts, limiter) — the tests shorten them — and the application's
    /// metrics, where the client's calls and the syncs are counted.
    pub(super) client_options: ClientOptions,
    clients: ClientCache,
    /// Stops the sync at a unit boundary on shutdown, and lets shutdown wait for its record.
    pub(super) background: Background,
    /// The share (percent) of known machines a sync may mark stale without an admin's
    /// confirmation (see `sync::stale_guard`).
    pub(super) stale_guard_percent: u8,
    /// How coverage gaps are judged, refreshed at the end of each sync.
    coverage: CoveragePolicy,
}

/// One client per saved configuration, shared by syncs, actions and polls, so that they share
/// the token and stay together under the API's rate limits.
#[derive(Clone, Default)]
struct ClientCache(std::sync::Arc<tokio::sync::Mutex<Option<(String, DefenderClient)>>>);

impl DefenderService {
    pub fn new(
        db: Db,
        modeler: Modeler,
        secrets: SecretBox,
        client_options: ClientOptions,
        background: Background,
    ) -> Self {
        Self {
            db,
            modeler,
            secrets,
            client_options,
            clients: ClientCache::default(),
            background,
            stale_guard_percent: sync::DEFAULT_STALE_GUARD_PERCENT,
            coverage: CoveragePolicy::default(),
        }
    }

    /// With another coverage policy (the settings').
    pub fn with_coverage(self, coverage: CoveragePolicy) -> Self {
        Self { coverage, ..self }
    }

    /// How coverage gaps are judged.
    pub fn coverage(&self) -> CoveragePolicy {
        self.coverage
    }

    /// With another share of known machines a sync may mark stale unconfirmed (1–100; 100: any).
    pub fn with_stale_guard(self, percent: u8) -> Self {
        Self { stale_guard_percent: percent.clamp(1, 100), ..self }
    }

    /// The client for the saved configuration, or why there is none.
    pub async fn client(&self) -> Result<DefenderClient, Unavailable> {
        let config = self
            .db
            .run(|c| Ok(settings::load(c)?))
            .await
            .map_err(|e| Unavailable::Unreadable(e.to_string()))?
            .ok_or(Unavailable::NotConfigured)?;
        // Everything the client is made of: a change of any of them makes a new client.
        let version = format!(
            "{}|{}|{}|{}|{}|{}|{}",
            config.tenant_id,
            config.client_id,
            hex::encode(config.secret_ciphertext.as_deref().unwrap_or_default()),
            config.cloud,
            config.region,
            config.login_base_url,
            config.api_base_url
        );
        let mut cached = self.clients.0.lock().await;
        if let Some((v, client)) = cached.as_ref()
            && *v == version
        {
            return Ok(client.clone());
        }
        let s = Settings::from_config(&config).map_err(|e| Unavailable::InvalidSaved(e.to_string()))?;
        let secret = settings::stored_secret(&self.secrets, &config)
            .map_err(|e| Unavailable::SecretUnusable(e.to_string()))?
            .ok_or(Unavailable::SecretNeeded(SecretNeeded::NoneStored))?;
        let client = client_for(&s, &secret, self.client_options.clone()).map_err(Unavailable::Defender)?;
        *cached = Some((version, client.clone()));
        Ok(client)
    }
}

/// Why the integration cannot be used as asked, each in words for the page, the API and the
/// sync's record.
#[derive(Debug, thiserror::Error)]
pub enum Unavailable {
    #[error("Microsoft Defender is not configured yet.")]
    NotConfigured,
    #[error("{}", .0.message())]
    SecretNeeded(SecretNeeded),
    #[error("The saved settings are not valid: {0}")]
    InvalidSaved(String),
    /// The stored secret does not open for these settings (or the master key changed).
    #[error("{0}.")]
    SecretUnusable(String),
    #[error("The configuration could not be read: {0}")]
    Unreadable(String),
    #[error("{}", .0.plain_words())]
    Defender(super::DefenderError),
}

/// The outcome of a save.
pub enum Saved {
    Ok {
        message: String,
    },
    /// The stored secret cannot be kept for these settings: nothing was saved.
    SecretNeeded(SecretNeeded),
}

impl DefenderService {
    /// Records a settings form that was refused (the form's messages in the audit log).
    pub async fn refused(&self, by: &str, summary: &str, secret_typed: bool) -> anyhow::Result<Option<SecretNeeded>> {
        let (by, summary) = (by.to_owned(), summary.to_owned());
        self.db
            .run(move |c| {
                // Said with the other fields' messages, so that one attempt shows every mistake.
                let needed = (!secret_typed && settings::load(c)?.is_none_or(|s| s.secret_ciphertext.is_none()))
                    .then_some(SecretNeeded::NoneStored);
                audit::entry(&by, "defender.configure")
                    .target("Microsoft Defender")
                    .outcome("refused")
                    .details(&summary)
                    .record(c)?;
                Ok(needed)
            })
            .await
    }

    /// Saves settings checked by the form, in one write transaction with the decision whether
    /// the stored secret may be kept: what is checked is what is saved over, even when two admins
    /// save at once.
    pub async fn save(&self, s: Settings, by: &str) -> anyhow::Result<Saved> {
        let ctx = self;
        let (secrets, modeler, by_owned) = (ctx.secrets.clone(), ctx.modeler.clone(), by.to_owned());
        let enabled = s.enabled;
        let outcome = ctx
            .db
            .run(move |c| {
                c.write_transaction(|c| {
                    let existing = settings::load(c)?;
                    if let Err(why) = s.keeps_secret_of(existing.as_ref()) {
                        audit::entry(&by_owned, "defender.configure")
                            .target("Microsoft Defender")
                            .outcome("refused")
                            .details(&format!("client_secret: {}", why.message()))
                            .record(c)?;
                        return Ok(Err(why));
                    }
                    let was_enabled = existing.as_ref().is_some_and(|c| c.enabled);
                    let details = settings::describe_change(existing.as_ref(), &s);
                    settings::save(c, &secrets, &s, &by_owned)?;
                    let removed = if was_enabled && !s.enabled { disable(c, &modeler)? } else { 0 };
                    audit::entry(&by_owned, "defender.configure")
                        .target("Microsoft Defender")
                        .outcome("success")
                        .details(&details)
                        .record(c)?;
                    Ok(Ok((was_enabled, removed)))
                })
            })
            .await?;
        let (was_enabled, removed) = match outcome {
            Ok(saved) => saved,
            Err(why) => return Ok(Saved::SecretNeeded(why)),
        };
        let mut message = "Saved.".to_owned();
        if enabled && !was_enabled {
            sync::start(self, "enabled", by).await?;
            message = "Saved and enabled: the first sync has started.".into();
        } else if was_enabled && !enabled {
            message = format!(
                "Saved and disabled: the integration's profiles were deleted and {removed} endpoints re-modeled with the standard profiles; imported endpoints are kept."
            );
        }
        Ok(Saved::Ok { message })
    }
}

/// Disabling: the integration's profiles go (their endpoints are re-modeled with the standard
/// profiles), Defender's risk factors go, imported endpoints stay. The stored machines forget
/// what they last wrote, so that re-enabling brings everything back.
fn disable(c: &mut crate::db::AnyConnection, modeler: &crate::modeling::Modeler) -> anyhow::Result<usize> {
    use crate::db::models::risk;
    risk::delete_sources(c, &[super::import::EXPOSURE_SOURCE, super::import::ALERTS_SOURCE])?;
    defender_machines::forget_content_hashes(c)?;
    Ok(modeler.delete_owner(c, OWNER)?)
}

/// Test Connection. `typed`: settings an admin typed, tested as typed (the stored secret only
/// where it was saved for); `None`: the saved settings, for everyone else — what a non-admin
/// could type is never used, so nobody but an admin chooses where a request goes. The audit
/// entry names the hosts contacted.
impl DefenderService {
    pub async fn test(
        &self,
        typed: Option<Settings>,
        by: &str,
    ) -> anyhow::Result<Result<ConnectionReport, Unavailable>> {
        let ctx = self;
        let existing = ctx.db.run(|c| Ok(settings::load(c)?)).await?;
        let s: Settings = match (typed, &existing) {
            (Some(s), _) => match s.keeps_secret_of(existing.as_ref()) {
                Ok(()) => s,
                Err(why) => return Ok(Err(Unavailable::SecretNeeded(why))),
            },
            (None, Some(config)) => match Settings::from_config(config) {
                Ok(s) => s,
                Err(e) => return Ok(Err(Unavailable::InvalidSaved(e.to_string()))),
            },
            (None, None) => return Ok(Err(Unavailable::NotConfigured)),
        };
        let secret = match (&s.new_secret, &existing) {
            (Some(typed), _) => typed.clone(),
            (None, Some(config)) => match settings::stored_secret(&ctx.secrets, config) {
                Ok(secret) => secret.unwrap_or_default(),
                // Sealed for another destination: nothing is sent anywhere.
                Err(e) => return Ok(Err(Unavailable::SecretUnusable(e.to_string()))),
            },
            (None, None) => String::new(),
        };
        let outcome = match client_for(&s, &secret, ctx.client_options.clone()) {
            Ok(client) => client.test_connection().await.map_err(Unavailable::Defender),
            Err(e) => Err(Unavailable::Defender(e)),
        };
        let details = match &outcome {
            Ok(_) => format!("{}: success", s.hosts_contacted()),
            Err(e) => format!("{}: {e}", s.hosts_contacted()),
        };
        let outcome_word = if outcome.is_ok() { "success" } else { "failure" };
        let by = by.to_owned();
        ctx.db
            .run(move |c| {
                Ok(audit::entry(&by, "defender.test")
                    .target("Microsoft Defender")
                    .outcome(outcome_word)
                    .details(&details)
                    .record(c)?)
            })
            .await?;
        Ok(outcome)
    }
}

/// What `GET /api/v1/integrations/defender/status` and the page show.
#[derive(Debug)]
pub struct Status {
    pub configured: bool,
    pub enabled: bool,
    pub secret_configured: bool,
    pub cloud: String,
    pub sync_interval_minutes: i32,
    pub running: Option<SyncRun>,
    pub last_run: Option<SyncRun>,
    pub last_success: Option<SyncRun>,
    /// UTC Unix seconds of the next scheduled sync, when enabled.
    pub next_run_at: Option<i64>,
    pub machines: i64,
    pub stale_machines: i64,
    pub recent_runs: Vec<SyncRun>,
    /// The last sync stopped because it would have marked this many of the known machines stale
    /// (missing, known): an admin may confirm it.
    pub stale_hold: Option<(i64, i64)>,
}

impl DefenderService {
    /// What the integration's page, the dashboard and `GET /api/v1/integrations/defender/status` show.
    pub async fn status(&self) -> anyhow::Result<Status> {
        self.db
            .run(|c| {
                let config = settings::load(c)?;
                let last_run = integration::latest(c, settings::NAME)?;
                let last_success = integration::last_success(c, settings::NAME)?;
                let recent_runs = integration::recent(c, settings::NAME, 10)?;
                let enabled = config.as_ref().is_some_and(|c| c.enabled);
                let interval =
                    config.as_ref().map(|c| c.sync_interval_minutes).unwrap_or(settings::DEFAULT_INTERVAL_MINUTES);
                let next_run_at = enabled
                    .then(|| last_run.as_ref().map(|r| r.started_at + i64::from(interval) * 60).unwrap_or_else(now));
                Ok(Status {
                    configured: config.is_some(),
                    enabled,
                    secret_configured: config.as_ref().is_some_and(|c| c.secret_ciphertext.is_some()),
                    cloud: config.as_ref().map(|c| c.cloud.clone()).unwrap_or_default(),
                    sync_interval_minutes: interval,
                    running: last_run.clone().filter(SyncRun::is_running),
                    last_run,
                    last_success,
                    next_run_at,
                    machines: defender_machines::count(c, false)?,
                    stale_machines: defender_machines::count(c, true)?,
                    recent_runs,
                    stale_hold: jobs::get_setting(c, sync::STALE_HOLD_KEY)?.as_deref().and_then(sync::parse_hold),
                })
            })
            .await
    }

    /// Whether the scheduler should start a sync: enabled, and none yet, or the interval passed
    /// since the last one started, or one left "running" (here or by an instance that died:
    /// starting takes over when its lease is free).
    pub async fn sync_due(&self) -> anyhow::Result<bool> {
        self.db
            .run(|c| {
                let Some(config) = settings::load(c)? else { return Ok(false) };
                if !config.enabled {
                    return Ok(false);
                }
                Ok(match integration::latest(c, settings::NAME)? {
                    None => true,
                    Some(r) if r.is_running() => true,
                    Some(r) => now() >= r.started_at + i64::from(config.sync_interval_minutes) * 60,
                })
            })
            .await
    }

    /// Sync now: starts one unless one runs (then `None`).
    pub async fn sync_now(&self, by: &str) -> anyhow::Result<Option<i64>> {
        let config = self.db.run(|c| Ok(settings::load(c)?)).await?;
        anyhow::ensure!(config.is_some_and(|c| c.enabled), "Enable and save the integration before syncing.");
        sync::start(self, "manual", by).await
    }

    /// An admin confirms that the machines the last sync held back really left Defender: the next
    /// sync (started now) marks them stale once, whatever their share.
    pub async fn confirm_stale(&self, by: &str) -> anyhow::Result<Option<i64>> {
        let by_owned = by.to_owned();
        let held = self
            .db
            .run(move |c| {
                let held = jobs::get_setting(c, sync::STALE_HOLD_KEY)?;
                if let Some(h) = held.as_deref().and_then(sync::parse_hold) {
                    jobs::set_setting(c, sync::STALE_CONFIRMED_KEY, &by_owned)?;
                    audit::entry(&by_owned, "defender.stale_confirmed")
                        .target("Microsoft Defender")
                        .outcome("confirmed")
                        .details(&format!("{} of {} known machines may be marked stale", h.0, h.1))
                        .record(c)?;
                }
                Ok(held.is_some())
            })
            .await?;
        anyhow::ensure!(held, "No sync is waiting for a confirmation.");
        sync::start(self, "confirmed", by).await
    }

    /// Starts a sync in the background unless one runs here or on another instance (the
    /// scheduler, or saving the settings enabled); its run id.
    pub async fn start_sync(&self, trigger: &str, by: &str) -> anyhow::Result<Option<i64>> {
        sync::start(self, trigger, by).await
    }

    /// Runs a sync already recorded as `run` to its end, here and now (the benchmarks time it);
    /// what it did, also when it failed (with why).
    pub async fn run_sync(&self, run: i64) -> Result<RunCounts, (RunCounts, String)> {
        sync::run_sync(self, run).await.map_err(|(counts, e)| (counts, e.to_string()))
    }

    /// Checks, records the intent, sends one request to Defender: the action (new, or the one an
    /// earlier submission with the same key started), or why not.
    pub async fn submit_action(
        &self,
        endpoint_id: i64,
        request: super::actions::ActionRequest,
        by: &str,
    ) -> anyhow::Result<Result<crate::db::models::actions::ActionRow, super::actions::Refusal>> {
        super::actions::submit(self, endpoint_id, request, by).await
    }

    /// An action by id, asked of Defender again while it is open; `None` when there is none.
    pub async fn action(&self, id: i64) -> anyhow::Result<Option<crate::db::models::actions::ActionRow>> {
        super::actions::find_refreshed(self, id).await
    }

    /// The short-lived link to the investigation package of the product's action `id`, asked of
    /// Defender now (never stored).
    pub async fn package_link(&self, id: i64, by: &str) -> anyhow::Result<Result<url::Url, super::package::NoPackage>> {
        super::package::link(self, id, by).await
    }

    /// Follows the open actions nobody watches, and settles intents never sent (the scheduler).
    pub async fn follow_open_actions(&self) -> anyhow::Result<()> {
        super::actions::follow_open(self).await
    }

    /// Defender's list of a machine's actions.
    pub async fn machine_actions(&self, machine_id: &str) -> Result<Vec<super::MachineAction>, Unavailable> {
        let client = self.client().await?;
        client.machine_actions(machine_id).await.map_err(Unavailable::Defender)
    }
}

/// Builds a client for settings; `secret` is the typed one or, when empty, the stored one.
fn client_for(s: &Settings, secret: &str, options: ClientOptions) -> Result<DefenderClient, DefenderError> {
    let (login_base_url, api_base_url, scope) = s.hosts();
    DefenderClient::new(
        Credentials {
            tenant_id: s.tenant_id.clone(),
            client_id: s.client_id.clone(),
            client_secret: Secret::new(secret),
        },
        Target { login_base_url, api_base_url, scope },
        options,
    )
}
