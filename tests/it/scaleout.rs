//! Real `endpoint-analytics serve` processes: several on one PostgreSQL database (sessions,
//! sign-in lock-outs and settings shared, one sync at a time, a survivor taking over the sync of
//! an instance that is killed), and graceful shutdown on SIGTERM (on both backends).

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use defender_sim::faults::{FaultEffect, FaultRule, Faults};
use defender_sim::{RunningSimulator, SimConfig};
use diesel::prelude::*;
use endpoint_analytics::auth::{Role, hash_api_token, new_api_token};
use endpoint_analytics::db::Db;
use endpoint_analytics::db::models::api_tokens;
use endpoint_analytics::db::models::integration::SyncRun;
use endpoint_analytics::db::schema::sync_runs;
use serde_json::{Value, json};

use crate::helpers::*;

/// One `endpoint-analytics serve` process; killed when dropped.
struct Instance {
    name: &'static str,
    child: Child,
    base: String,
    log: PathBuf,
}

impl Instance {
    /// Starts the binary on a free loopback port; waits until it listens and is ready.
    async fn start(name: &'static str, database_url: &str, master_key: &str, dir: &Path) -> Self {
        let log = dir.join(format!("{name}.log"));
        let mut child = Command::new(env!("CARGO_BIN_EXE_endpoint-analytics"))
            .arg("serve")
            .env("DATABASE_URL", database_url)
            .env("EA_BIND", "127.0.0.1:0")
            .env("EA_MASTER_KEY", master_key)
            .env("EA_DATA_DIR", dir.join(name))
            .env("EA_WORKERS", "2")
            .env("EA_DB_POOL_SIZE", "4")
            .env("EA_LOG_FORMAT", "json")
            .env("RUST_LOG", "info,actix_server=warn")
            .env_remove("EA_CONFIG")
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(std::fs::File::create(&log).unwrap())
            .spawn()
            .expect("the endpoint-analytics binary starts");
        // It prints its address once it listens (port 0 picks a free one).
        let stdout = child.stdout.take().unwrap();
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                if let Some(addr) = line.strip_prefix("Endpoint Analytics is listening on ") {
                    let _ = tx.send(addr.to_owned());
                }
            }
        });
        let deadline = Instant::now() + Duration::from_secs(60);
        let base = loop {
            if let Ok(base) = rx.try_recv() {
                break base;
            }
            if let Ok(Some(status)) = child.try_wait() {
                panic!("{name} exited ({status}): {}", std::fs::read_to_string(&log).unwrap_or_default());
            }
            assert!(Instant::now() < deadline, "{name} did not start: {}", std::fs::read_to_string(&log).unwrap());
            tokio::time::sleep(Duration::from_millis(50)).await;
        };
        let instance = Self { name, child, base, log };
        let ready = reqwest::get(instance.url("/readyz")).await.unwrap();
        assert_eq!(ready.status(), 200, "{name} is ready once it listens");
        instance
    }

    fn url(&self, path: &str) -> String {
        format!("{}{}", self.base, path)
    }

    fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// The first log line containing `needle`, waiting a moment for it: lines are written
    /// in batches, a few milliseconds after they were logged (`endpoint_analytics::logging`).
    async fn logged(&self, needle: &str) -> Option<String> {
        let deadline = Instant::now() + Duration::from_secs(5);
        loop {
            if let Some(line) = self.log().lines().find(|l| l.contains(needle)) {
                return Some(line.to_owned());
            }
            if Instant::now() > deadline {
                return None;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    async fn status(&self, token: &str) -> Value {
        let res = reqwest::Client::new()
            .get(self.url("/api/v1/integrations/defender/status"))
            .bearer_auth(token)
            .send()
            .await
            .unwrap();
        assert_eq!(res.status(), 200, "status on {}", self.name);
        res.json().await.unwrap()
    }

    /// Waits for the process to end by itself; returns whether it exited successfully.
    async fn wait_exit(&mut self, timeout: Duration) -> bool {
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(status) = self.child.try_wait().unwrap() {
                return status.success();
            }
            assert!(Instant::now() < deadline, "{} did not stop within {timeout:?}: {}", self.name, self.log());
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
}

impl Drop for Instance {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn master_key() -> String {
    use base64::Engine;
    base64::engine::general_purpose::STANDARD.encode(rand::random::<[u8; 32]>())
}

/// An admin account and an admin API token, written straight into the (migrated) database.
async fn admin(db: &Db) -> String {
    let token = new_api_token();
    let hash = hash_api_token(&token);
    db.run(move |c| {
        endpoint_analytics::accounts::create_user(c, "admin", PASSWORD, Role::Admin)
            .map_err(|e| anyhow::anyhow!("{e}"))?;
        Ok(api_tokens::create(c, "scale-out", &hash, Role::Admin, api_tokens::Creator::CommandLine, None)?)
    })
    .await
    .unwrap();
    token
}

/// A Defender simulator whose every answer takes `delay_ms`, so that a sync is still running
/// when the test stops its instance.
async fn slow_simulator(delay_ms: u64) -> RunningSimulator {
    let sim =
        defender_sim::start(SimConfig { machines: 300, ..SimConfig::default() }).await.expect("the simulator starts");
    sim.set_faults(slow(delay_ms));
    sim
}

fn slow(ms: u64) -> Faults {
    Faults {
        rules: vec![FaultRule { api: None, nth: None, fraction: None, times: None, effect: FaultEffect::Delay { ms } }],
        ..Faults::default()
    }
}

fn settings_for(sim: &RunningSimulator) -> Value {
    json!({
        "tenant_id": sim.tenant_id, "client_id": sim.client_id, "client_secret": sim.client_secret,
        "cloud": "commercial", "login_base_url": sim.base_url, "api_base_url": sim.base_url, "enabled": true,
    })
}

async fn put_settings(instance: &Instance, token: &str, body: &Value) {
    let res = reqwest::Client::new()
        .put(instance.url("/api/v1/integrations/defender"))
        .bearer_auth(token)
        .json(body)
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 200, "{}", res.text().await.unwrap());
}

/// Waits until `instance` reports a sync running that has read at least one Defender page.
async fn wait_until_running(instance: &Instance, token: &str) -> i64 {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let status = instance.status(token).await;
        let running = &status["running"];
        if !running.is_null() && running["phase"] != "starting" {
            return running["id"].as_i64().unwrap();
        }
        assert!(Instant::now() < deadline, "no sync got under way: {status}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

async fn runs(db: &Db) -> Vec<SyncRun> {
    db.run(|c| Ok(sync_runs::table.order(sync_runs::id.asc()).select(SyncRun::as_select()).load(c)?)).await.unwrap()
}

/// Signs in as the admin through `instance`'s form (the cookie passed by hand).
async fn sign_in(http: &reqwest::Client, instance: &Instance, password: &str) -> reqwest::Response {
    let page = http.get(instance.url("/login")).send().await.unwrap();
    let pre = page
        .headers()
        .get_all("set-cookie")
        .iter()
        .filter_map(|v| v.to_str().ok())
        .find(|c| c.starts_with("ea_login="))
        .map(|c| c.split(';').next().unwrap().to_owned())
        .expect("the sign-in page sets its form cookie");
    let token = csrf_of(&page.text().await.unwrap());
    http.post(instance.url("/login"))
        .header("Cookie", &pre)
        .form(&[("username", "admin"), ("password", password), ("csrf_token", &token), ("next", "/")])
        .send()
        .await
        .unwrap()
}

/// The session cookie a response sets, as a `Cookie` header value.
fn session_cookie(res: &reqwest::Response) -> Option<String> {
    res.headers()
        .get_all("set-cookie")
        .iter()
        .filter_map(|v| v.to_str().ok())
        .find(|v| v.starts_with("ea_session="))
        .map(|v| v.split(';').next().unwrap().to_owned())
}

fn csrf_of(html: &str) -> String {
    attr(&doc(html), "input[name=csrf_token]", "value")
        .or_else(|| {
            attr(&doc(html), "body", "hx-headers")
                .and_then(|h| serde_json::from_str::<Value>(&h).ok()?["X-CSRF-Token"].as_str().map(str::to_owned))
        })
        .expect("the page carries a CSRF token")
}

#[tokio::test]
async fn instances_on_one_postgresql_database_share_sessions_settings_and_the_sync() {
    if backend() != "postgres" {
        eprintln!("skipped: several instances need PostgreSQL (EA_TEST_BACKEND=postgres)");
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let database = TestDatabase::new(dir.path());
    let key = master_key();
    let sim = slow_simulator(1_500).await;

    // Three instances start together on the empty database: they take turns migrating it.
    let (a, b, c) = tokio::join!(
        Instance::start("a", &database.url, &key, dir.path()),
        Instance::start("b", &database.url, &key, dir.path()),
        Instance::start("c", &database.url, &key, dir.path()),
    );
    let mut a = a;
    let db = Db::connect(&database.url, 2).unwrap();
    let token = admin(&db).await;

    // A session made on one instance is valid on the others (the cookie is sent by hand, as a
    // load balancer would pass it to any instance), and signing out on one ends it on all.
    let http = crate::helpers::script_client();
    let res = sign_in(&http, &a, PASSWORD).await;
    assert_eq!(res.status(), 303, "sign-in on a");
    let session = session_cookie(&res).expect("a new session at sign-in");
    let get = |url: String| http.get(url).header("Cookie", &session).send();
    for instance in [&a, &b, &c] {
        let res = get(instance.url("/config/integrations/defender")).await.unwrap();
        assert_eq!(res.status(), 200, "the session from a is valid on {}", instance.name);
    }
    let on_c = csrf_of(&get(c.url("/")).await.unwrap().text().await.unwrap());
    let res =
        http.post(c.url("/logout")).header("Cookie", &session).form(&[("csrf_token", &on_c)]).send().await.unwrap();
    assert_eq!(res.status(), 303, "sign-out on c");
    let res = get(a.url("/config/integrations/defender")).await.unwrap();
    assert_eq!(res.status(), 303, "the session ended on c is no longer valid on a");
    assert!(res.headers()["location"].to_str().unwrap().starts_with("/login"));

    // Failed sign-ins count on every instance: guessing on b locks the account out on c too.
    for _ in 0..5 {
        assert_eq!(sign_in(&http, &b, "not the password").await.status(), 401);
    }
    assert_eq!(sign_in(&http, &c, PASSWORD).await.status(), 429, "locked out on c after failures on b");

    // Settings saved on a are what b and c use. Enabling starts the first sync, on a.
    put_settings(&a, &token, &settings_for(&sim)).await;
    let first = wait_until_running(&a, &token).await;
    for instance in [&b, &c] {
        let status = instance.status(&token).await;
        assert_eq!(status["enabled"], true, "{} sees the integration enabled on a", instance.name);
        assert_eq!(status["running"]["id"], first, "{} sees a's sync", instance.name);
        // A manual sync is refused on another instance: a holds the sync lease.
        let res = reqwest::Client::new()
            .post(instance.url("/api/v1/integrations/defender/sync"))
            .bearer_auth(&token)
            .send()
            .await
            .unwrap();
        assert_eq!(res.status(), 409, "{} does not start a second sync", instance.name);
    }

    // a dies in the middle of the sync (SIGKILL: no chance to record anything).
    a.child.kill().unwrap();
    a.child.wait().unwrap();
    sim.set_faults(Faults::default());

    // b or c notices at its next supervisor round (every 15 s), marks a's run interrupted and
    // syncs anew; the other does not.
    let deadline = Instant::now() + Duration::from_secs(90);
    let takeover = loop {
        let all = runs(&db).await;
        assert!(all.iter().filter(|r| r.is_running()).count() <= 1, "never two syncs at once: {all:?}");
        if let Some(r) = all.iter().find(|r| r.id > first && !r.is_running()) {
            break r.clone();
        }
        assert!(Instant::now() < deadline, "no instance took the sync over: {all:?}\n{}\n{}", b.log(), c.log());
        tokio::time::sleep(Duration::from_millis(250)).await;
    };
    assert_eq!(takeover.status, "succeeded", "{takeover:?}");
    assert_eq!(takeover.trigger, "schedule");
    assert!(takeover.machines > 0);
    let all = runs(&db).await;
    assert_eq!(all.len(), 2, "a's run and the takeover: {all:?}");
    assert_eq!(all[0].status, "interrupted", "a's run does not stay running: {:?}", all[0]);
    assert!(all[0].finished_at.is_some());
    let took_over: Vec<&str> =
        [&b, &c].iter().filter(|i| i.log().contains("took over the Defender sync")).map(|i| i.name).collect();
    assert_eq!(took_over.len(), 1, "exactly one survivor took over: {took_over:?}");

    // A change saved on c is seen by b at once.
    let mut body = settings_for(&sim);
    body["sync_interval_minutes"] = json!(120);
    put_settings(&c, &token, &body).await;
    assert_eq!(b.status(&token).await["sync_interval_minutes"], 120);

    // Logs are JSON lines carrying the request id, the one a proxy sent when it sent one.
    let res = reqwest::Client::new().get(b.url("/healthz")).header("X-Request-Id", "lb-7f3a-42").send().await.unwrap();
    assert_eq!(res.headers()["x-request-id"], "lb-7f3a-42");
    let line = b.logged("lb-7f3a-42").await.expect("the request is logged");
    let entry: Value = serde_json::from_str(&line).expect("a JSON log line");
    assert_eq!(entry["fields"]["request_id"], "lb-7f3a-42", "{entry}");
    assert_eq!(entry["fields"]["path"], "/healthz", "{entry}");
    drop((b, c));
}

/// Pages reuse what they read until the next commit (`src/db/data_version.rs`): on PostgreSQL an
/// instance must learn of another instance's commit before its next page, not from its own
/// writes alone.
#[tokio::test]
async fn a_change_committed_through_one_instance_shows_on_the_others_pages_at_once() {
    if backend() != "postgres" {
        eprintln!("skipped: several instances need PostgreSQL (EA_TEST_BACKEND=postgres)");
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let database = TestDatabase::new(dir.path());
    let key = master_key();
    let (a, b) = tokio::join!(
        Instance::start("a", &database.url, &key, dir.path()),
        Instance::start("b", &database.url, &key, dir.path()),
    );
    let db = Db::connect(&database.url, 2).unwrap();
    let token = admin(&db).await;
    let ingest = |hostname: &'static str| {
        reqwest::Client::new()
            .post(a.url("/api/v1/observations"))
            .bearer_auth(&token)
            .json(&json!([{"mac": "AA-BB-CC-00-00-07", "ip": "10.7.0.7", "hostname": hostname}]))
            .send()
    };
    assert_eq!(ingest("before-a").await.unwrap().status(), 200);
    let id: i64 = db
        .run(|c| {
            use endpoint_analytics::db::schema::endpoints;
            Ok(endpoints::table.select(endpoints::id).first(c)?)
        })
        .await
        .unwrap();

    let http = crate::helpers::script_client();
    let session = session_cookie(&sign_in(&http, &b, PASSWORD).await).expect("signed in on b");
    let view = |path: String| {
        let req = http.get(b.url(&path)).header("Cookie", &session);
        async move {
            let res = req.send().await.unwrap();
            assert_eq!(res.status(), 200, "{path}");
            res.text().await.unwrap()
        }
    };
    let (summary, list) = (format!("/endpoints/{id}"), "/endpoints?search=10.7.0.7".to_owned());
    // Each viewed twice on b: the second view is the kept one.
    for _ in 0..2 {
        assert!(view(summary.clone()).await.contains("before-a"));
        assert!(view(list.clone()).await.contains("before-a"));
    }

    // Committed through a (its answer comes after the commit): b's views show it within Q3's
    // second (b hears of it from PostgreSQL's notification, in milliseconds).
    assert_eq!(ingest("after-a").await.unwrap().status(), 200);
    let committed = Instant::now();
    loop {
        let (html_summary, html_list) = (view(summary.clone()).await, view(list.clone()).await);
        let shown = |html: &str| html.contains("after-a") && !html.contains("before-a");
        if shown(&html_summary) && shown(&html_list) {
            break;
        }
        assert!(committed.elapsed() <= Duration::from_secs(1), "b still shows the old name a second after a's commit");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    eprintln!("seen on b {:?} after the commit", committed.elapsed());
    drop((a, b));
}

/// Every table tells the listening instances of its changes (migration 000042): a table a later
/// migration adds without the trigger would keep other instances' pages on what they read.
#[tokio::test]
async fn every_table_tells_the_listeners_of_its_changes() {
    if backend() != "postgres" {
        eprintln!("skipped: PostgreSQL only (EA_TEST_BACKEND=postgres)");
        return;
    }
    let app = spawn_app().await;
    let silent: Vec<String> = app
        .db
        .run(|c| {
            use diesel::sql_types::Text;
            #[derive(diesel::QueryableByName)]
            struct Table {
                #[diesel(sql_type = Text)]
                tablename: String,
            }
            let rows: Vec<Table> = diesel::sql_query(
                "SELECT tablename FROM pg_tables t WHERE schemaname = current_schema() \
                 AND tablename <> '__diesel_schema_migrations' AND NOT EXISTS ( \
                   SELECT 1 FROM pg_trigger g JOIN pg_class c ON c.oid = g.tgrelid \
                   WHERE c.relname = t.tablename AND g.tgname = 'ea_data_changed')",
            )
            .load(c)?;
            Ok(rows.into_iter().map(|t| t.tablename).collect())
        })
        .await
        .unwrap();
    assert!(silent.is_empty(), "tables without the ea_data_changed trigger: {silent:?}");
}

/// The listener's connection ends (a restarted server, a network cut): until it listens again,
/// pages read the server's snapshot, so a commit by another process still shows at once.
#[tokio::test]
async fn pages_stay_exact_while_the_listener_is_cut_off() {
    if backend() != "postgres" {
        eprintln!("skipped: PostgreSQL only (EA_TEST_BACKEND=postgres)");
        return;
    }
    let app = spawn_app().await;
    let token = app.token(endpoint_analytics::auth::Role::Admin).await;
    let body = json!([{"mac": "AA-BB-CC-00-00-08", "ip": "10.8.0.8", "hostname": "before-cut"}]);
    assert_eq!(app.ingest(&token, &body).await.status(), 200);
    let viewer = app.login_as("vera", endpoint_analytics::auth::Role::Analyst).await;
    let list =
        || async { viewer.get(app.url("/endpoints?search=10.8.0.8")).send().await.unwrap().text().await.unwrap() };
    assert!(list().await.contains("before-cut"));
    assert!(list().await.contains("before-cut"), "kept");
    // Another process (here: a connection of the test's own) ends the listener's session and
    // then renames the endpoint; this process's pool never sees the commit.
    let url = app.state.settings.database_url.clone();
    let other = tokio::task::spawn_blocking(move || {
        use diesel::{Connection, RunQueryDsl};
        let mut c = diesel::PgConnection::establish(&url).unwrap();
        diesel::sql_query(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity \
             WHERE datname = current_database() AND application_name = 'ea-data-listener'",
        )
        .execute(&mut c)
        .unwrap();
        diesel::sql_query("UPDATE endpoints SET hostname = 'after-cut' WHERE hostname = 'before-cut'")
            .execute(&mut c)
            .unwrap();
    });
    other.await.unwrap();
    let committed = std::time::Instant::now();
    loop {
        let html = list().await;
        if html.contains("after-cut") {
            break;
        }
        // Found cut off within a second (its liveness query), then read exactly.
        assert!(committed.elapsed() <= Duration::from_secs(2), "the page still shows the old name: {html}");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

#[tokio::test]
async fn sigterm_finishes_requests_in_flight_and_ends_a_running_sync_as_interrupted() {
    let dir = tempfile::tempdir().unwrap();
    let database = TestDatabase::new(dir.path());
    let sim = slow_simulator(1_500).await;
    let mut app = Instance::start("app", &database.url, &master_key(), dir.path()).await;
    let db = Db::connect(&database.url, 2).unwrap();
    let token = admin(&db).await;
    put_settings(&app, &token, &settings_for(&sim)).await;
    let run = wait_until_running(&app, &token).await;

    // A request that takes a few seconds (Test Connection: two slow Defender calls) is in
    // flight when the signal arrives.
    let in_flight = tokio::spawn(
        reqwest::Client::new().post(app.url("/api/v1/integrations/defender/test")).bearer_auth(&token).send(),
    );
    tokio::time::sleep(Duration::from_millis(1_000)).await;
    let pid = app.child.id().to_string();
    // The shell's kill: no extra crate for one signal, and no dependence on procps.
    assert!(Command::new("sh").args(["-c", &format!("kill -TERM {pid}")]).status().unwrap().success());

    let res = in_flight.await.unwrap().expect("the request in flight is answered");
    assert_eq!(res.status(), 200);
    let body: Value = res.json().await.unwrap();
    assert!(body.get("ok").is_some(), "{body}");
    assert!(app.wait_exit(Duration::from_secs(45)).await, "a clean exit: {}", app.log());
    assert!(reqwest::get(app.url("/healthz")).await.is_err(), "nothing listens any more");

    // The sync stopped at a unit boundary and says so; nothing is left "running".
    let all = runs(&db).await;
    assert_eq!(all.len(), 1, "{all:?}");
    assert_eq!(all[0].id, run);
    assert_eq!(all[0].status, "interrupted", "{:?}", all[0]);
    assert!(all[0].error.contains("stopped during the sync"), "{}", all[0].error);
    assert!(all[0].finished_at.is_some());
    let audited: i64 = db
        .run(|c| {
            use endpoint_analytics::db::schema::audit_log;
            Ok(audit_log::table
                .filter(audit_log::action.eq("defender.sync"))
                .filter(audit_log::outcome.eq("interrupted"))
                .count()
                .get_result(c)?)
        })
        .await
        .unwrap();
    assert_eq!(audited, 1, "the interrupted sync is in the audit log");
}

#[tokio::test]
async fn a_re_model_left_running_by_a_dead_instance_is_taken_over() {
    use endpoint_analytics::db::models::jobs;
    use endpoint_analytics::modeling::REMODEL_JOB;
    let app = spawn_app().await;
    let token = app.token(Role::Operator).await;
    let obs = json!([{"mac": "3c:52:82:11:22:33", "hostname": "printer-2f", "dhcp_vendor_class": "Hewlett-Packard JetDirect"}]);
    assert_eq!(app.ingest(&token, &obs).await.status(), 200);
    // What an instance killed during a re-model leaves behind: a job marked running, no holder.
    let orphan = app.db.run(|c| Ok(jobs::start(c, REMODEL_JOB, "alice", 1)?)).await.unwrap().unwrap();

    // The supervisor (every 15 s) finds it, marks it interrupted and re-models anew.
    let deadline = Instant::now() + Duration::from_secs(40);
    let latest = loop {
        let latest = app.db.run(|c| Ok(jobs::latest(c, REMODEL_JOB)?)).await.unwrap().unwrap();
        if latest.id != orphan && !latest.is_running() {
            break latest;
        }
        assert!(Instant::now() < deadline, "the orphaned re-model was not taken over: {latest:?}");
        tokio::time::sleep(Duration::from_millis(250)).await;
    };
    assert_eq!(latest.status, "succeeded", "{latest:?}");
    assert_eq!(latest.requested_by, "system");
    assert_eq!(latest.done, 1);
    let old = app
        .db
        .run(move |c| {
            use endpoint_analytics::db::schema::jobs as j;
            Ok(j::table.find(orphan).select(j::status).first::<String>(c)?)
        })
        .await
        .unwrap();
    assert_eq!(old, "interrupted");
}
