//! Starting the application for a test, and talking to it like a browser or a script would.

use std::sync::atomic::{AtomicU32, Ordering};

use diesel::{Connection, PgConnection, RunQueryDsl};
use endpoint_analytics::app::Application;
use endpoint_analytics::auth::{Role, hash_api_token, new_api_token};
use endpoint_analytics::config::{MasterKey, Settings};
use endpoint_analytics::db::Db;
use endpoint_analytics::db::models::api_tokens;
use endpoint_analytics::web::AppState;
use scraper::{Html, Selector};

pub const PASSWORD: &str = "correct horse battery staple";

/// Which database the suite runs on: `EA_TEST_BACKEND=postgres` uses `TEST_DATABASE_URL`
/// (default `postgres://postgres@127.0.0.1:5432/postgres`) to create one database per test.
pub fn backend() -> String {
    std::env::var("EA_TEST_BACKEND").unwrap_or_else(|_| "sqlite".into())
}

/// A database of its own for one test; a PostgreSQL one is dropped when the test ends.
pub struct TestDatabase {
    pub url: String,
    pg_admin: Option<(String, String)>,
}

impl TestDatabase {
    pub fn new(dir: &std::path::Path) -> Self {
        if backend() != "postgres" {
            return Self { url: format!("sqlite://{}", dir.join("test.db").display()), pg_admin: None };
        }
        static N: AtomicU32 = AtomicU32::new(0);
        let admin =
            std::env::var("TEST_DATABASE_URL").unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/postgres".into());
        let name =
            format!("ea_test_{}_{}_{}", std::process::id(), N.fetch_add(1, Ordering::SeqCst), rand::random::<u32>());
        let mut c = PgConnection::establish(&admin).expect("TEST_DATABASE_URL must reach PostgreSQL");
        diesel::sql_query(format!("CREATE DATABASE {name}")).execute(&mut c).expect("create test database");
        let mut url = url::Url::parse(&admin).unwrap();
        url.set_path(&format!("/{name}"));
        Self { url: url.to_string(), pg_admin: Some((admin, name)) }
    }
}

impl Drop for TestDatabase {
    fn drop(&mut self) {
        if let Some((admin, name)) = &self.pg_admin
            && let Ok(mut c) = PgConnection::establish(admin)
        {
            let _ = diesel::sql_query(format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)")).execute(&mut c);
        }
    }
}

pub struct TestApp {
    pub base: String,
    pub db: Db,
    /// What the handlers share: for setting the app up faster than through its pages.
    pub state: actix_web::web::Data<AppState>,
    // Dropped last: the database outlives the server's use of it.
    _database: TestDatabase,
    _dir: tempfile::TempDir,
}

pub async fn spawn_app() -> TestApp {
    spawn_app_with(|_| {}).await
}

pub async fn spawn_app_with(customize: impl FnOnce(&mut Settings)) -> TestApp {
    spawn_app_with_client(customize, Default::default()).await
}

/// As [`spawn_app_with`], with the Defender client's timeouts, retries and backoff given.
pub async fn spawn_app_with_client(
    customize: impl FnOnce(&mut Settings),
    client: endpoint_analytics::defender::ClientOptions,
) -> TestApp {
    let dir = tempfile::tempdir().unwrap();
    let database = TestDatabase::new(dir.path());
    let mut settings = Settings {
        database_url: database.url.clone(),
        bind: "127.0.0.1:0".into(),
        data_dir: dir.path().join("data"),
        master_key: Some(base64_key()),
        workers: 2,
        db_pool_size: 4,
        ..Settings::default()
    };
    customize(&mut settings);
    let app = Application::build_with(settings, client).await.expect("the app builds");
    let base = format!("http://{}", app.addr());
    let db = app.db().clone();
    let state = app.state();
    tokio::spawn(app.run_until_stopped());
    TestApp { base, db, state, _database: database, _dir: dir }
}

fn base64_key() -> String {
    use base64::Engine;
    let _ = MasterKey::generate();
    base64::engine::general_purpose::STANDARD.encode(rand::random::<[u8; 32]>())
}

/// A browser-like client: keeps cookies, does not follow redirects (tests look at them).
pub fn browser() -> reqwest::Client {
    http_client().cookie_store(true).build().unwrap()
}

/// A script's client: no cookie jar, redirects not followed.
pub fn script_client() -> reqwest::Client {
    http_client().build().unwrap()
}

/// Redirects are the answers under test, so they are not followed. An idle pooled connection
/// is dropped before the server's keep-alive (actix-web's 5 s) can close it: reusing one just as
/// the server closes it fails the next request with `IncompleteMessage`, and unlike a browser
/// reqwest does not retry it.
fn http_client() -> reqwest::ClientBuilder {
    reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .pool_idle_timeout(std::time::Duration::from_secs(2))
}

pub fn doc(html: &str) -> Html {
    Html::parse_document(html)
}

pub fn select_all(html: &Html, css: &str) -> Vec<String> {
    let sel = Selector::parse(css).unwrap();
    html.select(&sel).map(|e| e.text().collect::<String>().trim().to_owned()).collect()
}

pub fn attr(html: &Html, css: &str, name: &str) -> Option<String> {
    let sel = Selector::parse(css).unwrap();
    html.select(&sel).next().and_then(|e| e.value().attr(name)).map(str::to_owned)
}

impl TestApp {
    pub fn url(&self, path: &str) -> String {
        format!("{}{}", self.base, path)
    }

    pub async fn add_user(&self, name: &str, role: Role) {
        let name = name.to_owned();
        self.db
            .run(move |c| {
                endpoint_analytics::accounts::create_user(c, &name, PASSWORD, role).map_err(|e| anyhow::anyhow!("{e}"))
            })
            .await
            .unwrap();
    }

    pub async fn token(&self, role: Role) -> String {
        let token = new_api_token();
        let hash = hash_api_token(&token);
        self.db
            .run(move |c| {
                let name = format!("test-{}", role.as_str());
                Ok(api_tokens::create(c, &name, &hash, role, api_tokens::Creator::CommandLine, None)?)
            })
            .await
            .unwrap();
        token
    }

    /// The CSRF token of the page at `path` for this client's session.
    pub async fn csrf(&self, client: &reqwest::Client, path: &str) -> String {
        let html = client.get(self.url(path)).send().await.unwrap().text().await.unwrap();
        attr(&doc(&html), "input[name=csrf_token]", "value")
            .or_else(|| {
                attr(&doc(&html), "body", "hx-headers").and_then(|h| {
                    serde_json::from_str::<serde_json::Value>(&h).ok()?["X-CSRF-Token"].as_str().map(str::to_owned)
                })
            })
            .expect("the page carries a CSRF token")
    }

    /// Signs in through the login form; returns the signed-in client.
    pub async fn login_as(&self, name: &str, role: Role) -> reqwest::Client {
        self.add_user(name, role).await;
        let client = browser();
        let res = self.login(&client, name, PASSWORD).await;
        assert_eq!(res.status(), 303, "sign-in of {name} succeeds");
        client
    }

    pub async fn login(&self, client: &reqwest::Client, name: &str, password: &str) -> reqwest::Response {
        let csrf = self.csrf(client, "/login").await;
        client
            .post(self.url("/login"))
            .form(&[("username", name), ("password", password), ("csrf_token", &csrf), ("next", "/")])
            .send()
            .await
            .unwrap()
    }

    /// POSTs an urlencoded form with the session's CSRF token, as the pages do.
    pub async fn post_form(&self, client: &reqwest::Client, path: &str, fields: &[(&str, &str)]) -> reqwest::Response {
        let csrf = self.csrf(client, "/").await;
        let mut all: Vec<(&str, &str)> = fields.to_vec();
        all.push(("csrf_token", &csrf));
        client.post(self.url(path)).form(&all).send().await.unwrap()
    }

    pub async fn ingest(&self, token: &str, body: &serde_json::Value) -> reqwest::Response {
        reqwest::Client::new()
            .post(self.url("/api/v1/observations"))
            .bearer_auth(token)
            .json(body)
            .send()
            .await
            .unwrap()
    }

    pub async fn api_get(&self, token: &str, path: &str) -> serde_json::Value {
        let res = reqwest::Client::new().get(self.url(path)).bearer_auth(token).send().await.unwrap();
        assert_eq!(res.status(), 200, "GET {path}");
        res.json().await.unwrap()
    }
}

/// The product's Defender settings that point at `sim`, enabled, as an administrator would type
/// them from what the simulator says about itself.
pub fn defender_settings(
    sim: &defender_sim::RunningSimulator,
) -> endpoint_analytics::web::forms::defender::SettingsInput {
    endpoint_analytics::web::forms::defender::SettingsInput {
        tenant_id: sim.tenant_id.clone(),
        client_id: sim.client_id.clone(),
        client_secret: sim.client_secret.clone(),
        cloud: "commercial".into(),
        login_base_url: sim.base_url.clone(),
        api_base_url: sim.base_url.clone(),
        enabled: true,
        sync_interval_minutes: Some(60),
        ..Default::default()
    }
}

impl TestApp {
    /// Configures the Defender integration for `sim` and enables it, as an admin saving the form
    /// would (faster than the page): the first sync starts at once.
    pub async fn enable_defender(&self, sim: &defender_sim::RunningSimulator) {
        self.enable_defender_with(defender_settings(sim)).await;
    }

    /// Saves these Defender settings as an admin would (enabled or not, as they say).
    pub async fn enable_defender_with(&self, input: endpoint_analytics::web::forms::defender::SettingsInput) {
        use endpoint_analytics::defender::service::Saved;
        let checked = endpoint_analytics::web::forms::defender::validate(&input)
            .unwrap_or_else(|e| panic!("the simulator's settings were refused: {}", e.summary()));
        match self.state.defender.save(checked, "test").await.expect("the settings are saved") {
            Saved::Ok { .. } => {}
            Saved::SecretNeeded(why) => panic!("the simulator's settings were refused: {}", why.message()),
        }
    }

    /// Waits until no Defender sync runs (at most `timeout`) and returns the last run.
    pub async fn wait_for_sync(
        &self,
        timeout: std::time::Duration,
    ) -> endpoint_analytics::db::models::integration::SyncRun {
        let deadline = std::time::Instant::now() + timeout;
        loop {
            let status = self.state.defender.status().await.expect("the sync status");
            if status.running.is_none()
                && let Some(run) = status.last_run
            {
                return run;
            }
            assert!(std::time::Instant::now() < deadline, "the Defender sync did not finish within {timeout:?}");
            tokio::time::sleep(std::time::Duration::from_millis(100)).await;
        }
    }
}

/// Ends the PostgreSQL sessions holding this app's leases (as a dead connection would) and
/// starts a second instance on the same database, which may then take the work over.
pub async fn lose_leases_to_another_instance(app: &TestApp) -> TestApp {
    use diesel::prelude::*;
    let url = app.state.settings.database_url.clone();
    let killer = url.clone();
    let killed = tokio::task::spawn_blocking(move || {
        #[derive(QueryableByName)]
        struct N {
            #[diesel(sql_type = diesel::sql_types::BigInt)]
            n: i64,
        }
        let mut c = diesel::PgConnection::establish(&killer).unwrap();
        diesel::sql_query(
            "SELECT count(pg_terminate_backend(pid))::bigint AS n FROM pg_locks WHERE locktype = 'advisory' \
             AND database = (SELECT oid FROM pg_database WHERE datname = current_database())",
        )
        .get_result::<N>(&mut c)
        .unwrap()
        .n
    })
    .await
    .unwrap();
    assert!(killed >= 1, "no lease session to end");
    let key = app.state.settings.master_key.clone();
    spawn_app_with(move |s| {
        s.database_url = url;
        s.master_key = key;
    })
    .await
}
