//! Building the application: the database, the HTTP server with its middleware, and the
//! background tasks. Shared by `main` and the integration tests, which bind port 0.

use std::net::{SocketAddr, TcpListener};
use std::sync::Arc;
use std::time::Duration;

use actix_session::SessionMiddleware;
use actix_session::config::{PersistentSession, TtlExtensionPolicy};
use actix_web::cookie::{Key, SameSite};
use actix_web::dev::Server;
use actix_web::middleware::from_fn;
use actix_web::{App, HttpServer};
use anyhow::Context;

use crate::config::Settings;
use crate::db::{
    Db,
    models::{login_failures, sessions},
};
use crate::modeling::Modeler;
use crate::web::errors::bad_input;
use crate::web::login_guard::LoginThrottle;
use crate::web::session::DbSessionStore;
use crate::web::{self, AppState};
use actix_web::web::{Data, FormConfig, JsonConfig, PathConfig, PayloadConfig, QueryConfig};

/// How long shutdown waits for in-flight requests, and for background work to reach a unit
/// boundary and record how it ended.
const SHUTDOWN_GRACE: Duration = Duration::from_secs(30);

/// The largest request body (a batch of 10,000 observations is about 3 MB).
const MAX_BODY: usize = 16 * 1024 * 1024;

/// Password checks at once: one per core keeps the CPU busy without queueing Argon2's memory
/// (about 19 MiB per check) behind a burst of guesses.
static PASSWORD_CHECKS_AT_ONCE: std::sync::LazyLock<std::num::NonZeroUsize> =
    std::sync::LazyLock::new(|| std::thread::available_parallelism().unwrap_or(std::num::NonZeroUsize::MIN));

pub struct Application {
    server: Server,
    addr: SocketAddr,
    db: Db,
    state: Data<AppState>,
    /// Days of risk history kept (the supervisor prunes the rest).
    retention: crate::jobs::Retention,
}

impl Application {
    /// Opens and migrates the database, binds the listener, and prepares the server.
    pub async fn build(settings: Settings) -> anyhow::Result<Self> {
        Self::build_with(settings, crate::defender::ClientOptions::default()).await
    }

    /// As [`Application::build`], with the Defender client's behaviour given (tests shorten
    /// its timeouts and backoff).
    pub async fn build_with(
        settings: Settings,
        defender_client: crate::defender::ClientOptions,
    ) -> anyhow::Result<Self> {
        let settings = Arc::new(settings);
        let modeler = Modeler::standard().context("the standard profile library is broken")?;
        let s = settings.clone();
        let m = modeler.clone();
        let db = tokio::task::spawn_blocking(move || -> anyhow::Result<Db> {
            let db = Db::connect(&s.database_url, s.db_pool_size)?;
            let (applied, ()) = db.migrate_then(|c| Ok(m.sync_standard_profiles(c)?))?;
            if applied > 0 {
                tracing::info!(applied, backend = db.target().backend_name(), "database migrations applied");
            }
            let mut conn = db.conn()?;
            if matches!(db.target(), crate::db::DatabaseTarget::Sqlite { .. }) {
                // One process owns a SQLite file: a job still "running" there died with its process.
                crate::db::models::jobs::interrupt_running(&mut conn, None)?;
                crate::db::models::integration::interrupt_running(&mut conn, None)?;
            }
            Ok(db)
        })
        .await??;
        let master = settings.master_key()?;
        let session_key = Key::derive_from(&master.derive("session-cookie-v1"));
        let secure = settings.cookies_secure();
        let listener =
            TcpListener::bind(&settings.bind).with_context(|| format!("cannot listen on {}", settings.bind))?;
        let addr = listener.local_addr()?;
        let metrics = crate::metrics::Metrics::new();
        let defender_client = crate::defender::ClientOptions { metrics: Some(metrics.clone()), ..defender_client };
        let secrets = crate::secrets::SecretBox::new(&master);
        let background = crate::background::Background::default();
        let defender = crate::defender::service::DefenderService::new(
            db.clone(),
            modeler.clone(),
            secrets.clone(),
            defender_client,
            background.clone(),
        )
        .with_stale_guard(settings.defender_stale_guard_percent)
        .with_coverage(settings.coverage_policy()?);
        let rules = crate::rules::Runner {
            db: db.clone(),
            defender: defender.clone(),
            policy: crate::rules::RulesPolicy {
                actions_per_hour: settings.rules_actions_per_hour,
                approval_hours: settings.rules_approval_hours,
                tag_writes_per_hour: settings.defender_tag_writes_per_hour,
            },
            background: background.clone(),
        };
        let state = Data::new(AppState {
            db: db.clone(),
            modeler: modeler.clone(),
            secrets: secrets.clone(),
            notifier: crate::notify::Notifier::new(db.clone(), secrets.clone())?,
            defender,
            rules,
            login_throttle: LoginThrottle::new(settings.login_max_failures, settings.login_lockout_minutes),
            password_checks: crate::web::login_guard::PasswordChecks::new(PASSWORD_CHECKS_AT_ONCE.get()),
            login_devices: crate::web::login_guard::LoginDevices::new(master.derive("login-device-v1"), secure),
            login_csrf: crate::web::security::LoginCsrf::new(master.derive("login-form-csrf-v1"), secure),
            refusals: Default::default(),
            proxies: crate::web::client::Proxies {
                trusted: settings.trusted_proxy_nets()?,
                header: settings.proxy_header()?,
            },
            settings: settings.clone(),
            sso: crate::sso::Sso::new(),
            metrics,
            background: background.clone(),
            list_cache: Default::default(),
            endpoint_pages: crate::web::cache::UntilChanged::new(crate::web::pages::endpoints::ENDPOINT_PAGES_KEPT),
            endpoint_views: crate::web::cache::UntilChanged::new(crate::web::pages::endpoints::ENDPOINT_VIEWS_KEPT),
            activity_writes: Default::default(),
        });

        let state_for_jobs = state.clone();
        let store = DbSessionStore::new(db.clone());
        // The `__Host-` prefix makes the browser refuse the cookie unless it is Secure, host-only
        // and for path `/`; it is only possible over HTTPS.
        let cookie_name = if secure { "__Host-ea_session" } else { "ea_session" };
        let absolute = actix_web::cookie::time::Duration::hours(settings.session_absolute_hours);
        let server = HttpServer::new(move || {
            App::new()
                .app_data(state.clone())
                .app_data(PayloadConfig::new(MAX_BODY))
                .app_data(JsonConfig::default().limit(MAX_BODY).error_handler(|e, _| bad_input(e)))
                .app_data(FormConfig::default().limit(1024 * 1024).error_handler(|e, _| bad_input(e)))
                .app_data(QueryConfig::default().error_handler(|e, _| bad_input(e)))
                .app_data(PathConfig::default().error_handler(|e, _| bad_input(e)))
                .configure(web::routes)
                .default_service(actix_web::web::to(web::not_found))
                .wrap(from_fn(web::security::csrf_protect))
                .wrap(
                    // Links from tickets and SIEM alerts into the product should arrive signed
                    // in (Lax); the CSRF token guards every state change.
                    SessionMiddleware::builder(store.clone(), session_key.clone())
                        .cookie_name(cookie_name.to_owned())
                        .cookie_secure(secure)
                        .cookie_http_only(true)
                        .cookie_same_site(SameSite::Lax)
                        .cookie_path("/".to_owned())
                        .session_lifecycle(
                            PersistentSession::default()
                                .session_ttl(absolute)
                                .session_ttl_extension_policy(TtlExtensionPolicy::OnStateChanges),
                        )
                        .build(),
                )
                // Outside the session middleware: the session's load uses the version it reads.
                .wrap(from_fn(web::cache::read_data_version_once))
                .wrap(from_fn(web::errors::render_errors))
                .wrap(from_fn(web::security::security_headers))
                .wrap(from_fn(web::log_requests))
        })
        .workers(settings.workers)
        // Signals are handled in `run_until_stopped`, which also stops the background work.
        .disable_signals()
        .shutdown_timeout(SHUTDOWN_GRACE.as_secs())
        .listen(listener)?
        .run();
        let retention = crate::jobs::Retention {
            risk_history_days: settings.risk_history_days,
            events_days: settings.events_retention_days,
        };
        Ok(Self { server, addr, db, state: state_for_jobs, retention })
    }

    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    pub fn db(&self) -> &Db {
        &self.db
    }

    /// The state handlers share (for the demo and the tests).
    pub fn state(&self) -> Data<AppState> {
        self.state.clone()
    }

    /// Serves until SIGTERM or Ctrl-C, then shuts down gracefully: stops accepting connections,
    /// finishes the requests in flight, and meanwhile stops a running sync or re-model at its
    /// next unit boundary and waits until it has recorded how it ended.
    pub async fn run_until_stopped(self) -> anyhow::Result<()> {
        let housekeeping = tokio::spawn(housekeeping(self.state.clone()));
        let scheduler = tokio::spawn(crate::jobs::supervise(
            self.state.defender.clone(),
            self.state.rules.clone(),
            self.db.clone(),
            self.state.modeler.clone(),
            self.state.background.clone(),
            self.retention,
        ));
        let notifier = tokio::spawn(crate::notify::supervise(self.state.notifier.clone()));
        let (handle, background) = (self.server.handle(), self.state.background.clone());
        let on_signal = tokio::spawn(async move {
            shutdown_signal().await;
            tracing::info!("shutting down: finishing requests in flight and stopping background work");
            let ((), stopped) = tokio::join!(handle.stop(true), background.shutdown(SHUTDOWN_GRACE));
            if !stopped {
                tracing::warn!("background work did not stop in time; the next start marks it interrupted");
            }
        });
        let result = self.server.await.context("the web server failed");
        scheduler.abort();
        notifier.abort();
        housekeeping.abort();
        // Also when the server ended for another reason than a signal.
        self.state.background.shutdown(SHUTDOWN_GRACE).await;
        self.state.refusals.flush(&self.db).await;
        on_signal.abort();
        tracing::info!("stopped");
        result
    }
}

/// SIGTERM (service managers, container runtimes) or Ctrl-C.
async fn shutdown_signal() {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{SignalKind, signal};
        match signal(SignalKind::terminate()) {
            Ok(mut term) => {
                tokio::select! {
                    _ = term.recv() => {}
                    _ = tokio::signal::ctrl_c() => {}
                }
            }
            Err(e) => {
                tracing::warn!(error = %e, "cannot listen for SIGTERM; only Ctrl-C stops the server gracefully");
                let _ = tokio::signal::ctrl_c().await;
            }
        }
    }
    #[cfg(not(unix))]
    let _ = tokio::signal::ctrl_c().await;
}

/// Periodic clean-up that no request should wait for: every minute the counted refusals, every
/// ten minutes expired sessions and forgotten sign-in attempts.
async fn housekeeping(state: Data<AppState>) {
    let db = &state.db;
    let mut every = tokio::time::interval(Duration::from_secs(60));
    for minute in 0u64.. {
        every.tick().await;
        state.refusals.flush_finished(db).await;
        if minute % 10 != 0 {
            continue;
        }
        match db.run(|c| Ok(sessions::purge_expired(c)?)).await {
            Ok(n) if n > 0 => tracing::debug!(removed = n, "expired sessions purged"),
            Ok(_) => {}
            Err(e) => tracing::warn!(error = %e, "could not purge expired sessions"),
        }
        let before = crate::db::now() - LoginThrottle::FORGET_AFTER_SECS;
        if let Err(e) = db.run(move |c| Ok(login_failures::purge(c, before)?)).await {
            tracing::warn!(error = %e, "could not purge old sign-in attempts");
        }
    }
}
