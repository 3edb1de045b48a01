//! Crashes: the real binary (`endpoint-analytics serve`, a child process on a SQLite file) is
//! killed with SIGKILL at seeded random moments during a large Defender sync, during a full
//! re-model, and just after an operator clicked a machine action; then it is restarted.
//!
//! After every kill: the database passes `PRAGMA integrity_check`; each unit (a Defender
//! machine with its endpoint, source and risk; an endpoint's profile with its risk factor and
//! history) holds its old or its new state, never a mix; after the restart no run is left
//! "running", the next sync completes, and the clicked action reached Defender at most once,
//! also when the operator clicks again after the restart.
//!
//! A few iterations run by default; `EA_LONG_TESTS=1` runs 30 (`EA_CRASH_ITERATIONS=N` for
//! another number) and then also waits for the background reconciliation of actions that
//! were recorded but not sent. `EA_CRASH_SEED` picks the seed (printed on failure).
//! SQLite only: PostgreSQL's crash safety is the server's, and the binary's own state on
//! PostgreSQL is covered by the same transactions.

use std::collections::{BTreeMap, HashMap};
use std::path::Path;
use std::time::{Duration, Instant};

use defender_sim::{RunningSimulator, SimConfig};
use diesel::prelude::*;
use endpoint_analytics::auth::{Role, hash_api_token, new_api_token};
use endpoint_analytics::db::Db;
use endpoint_analytics::db::models::api_tokens;
use endpoint_analytics::db::schema::{
    defender_machines as dm, endpoint_history, endpoint_sources, endpoints, jobs, machine_actions, profiles,
    risk_factors, sync_runs,
};
use rand::{Rng, SeedableRng};
use serde_json::{Value, json};

use crate::helpers::{PASSWORD, attr, backend, doc};
use crate::process::{DB_FILE, Proc, copy_db, db_url, long_tests, open_db};

/// Machines in the tenant: several import batches of 500 and re-model batches of 2,000.
const MACHINES: usize = 2_500;

async fn open(dir: &Path) -> Db {
    open_db(&db_url(dir)).await
}

async fn api(p: &Proc, token: &str, method: reqwest::Method, path: &str, body: Option<Value>) -> reqwest::Response {
    let mut r = reqwest::Client::new().request(method, p.url(path)).bearer_auth(token);
    if let Some(b) = body {
        r = r.json(&b);
    }
    r.send().await.unwrap()
}

/// Waits for the running sync to end; returns the last run.
async fn wait_sync(p: &Proc, token: &str) -> Value {
    let deadline = Instant::now() + Duration::from_secs(180);
    loop {
        let s: Value = api(p, token, reqwest::Method::GET, "/api/v1/integrations/defender/status", None)
            .await
            .json()
            .await
            .unwrap();
        if s["running"].is_null() && !s["last_run"].is_null() {
            return s["last_run"].clone();
        }
        assert!(Instant::now() < deadline, "no end of the sync: {s}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

async fn wait_remodel(db: &Db) -> String {
    let deadline = Instant::now() + Duration::from_secs(180);
    loop {
        let status: Option<String> = db
            .run(|c| {
                Ok(jobs::table
                    .filter(jobs::kind.eq("remodel"))
                    .order(jobs::id.desc())
                    .select(jobs::status)
                    .first(c)
                    .optional()?)
            })
            .await
            .unwrap();
        if let Some(s) = status.filter(|s| s != "running") {
            return s;
        }
        assert!(Instant::now() < deadline, "no end of the re-model");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// The state of one endpoint's model: profile, score, others, reason, the profile's risk
/// factor, and how many profile changes its history holds. Written in one transaction.
type ModelUnit = (String, i16, String, String, Option<(i16, String)>, i64);

async fn model_units(db: &Db) -> BTreeMap<i64, ModelUnit> {
    db.run(|c| {
        let rows: Vec<(i64, String, i16, String, String)> = endpoints::table
            .select((
                endpoints::id,
                endpoints::profile,
                endpoints::match_score,
                endpoints::other_profiles,
                endpoints::profile_reason,
            ))
            .load(c)?;
        let factors: HashMap<i64, (i16, String)> = risk_factors::table
            .filter(risk_factors::source.eq("Profile"))
            .select((risk_factors::endpoint_id, risk_factors::level, risk_factors::summary))
            .load::<(i64, i16, String)>(c)?
            .into_iter()
            .map(|(id, l, s)| (id, (l, s)))
            .collect();
        let history: HashMap<i64, i64> = endpoint_history::table
            .filter(endpoint_history::field.eq("profile"))
            .group_by(endpoint_history::endpoint_id)
            .select((endpoint_history::endpoint_id, diesel::dsl::count_star()))
            .load::<(i64, i64)>(c)?
            .into_iter()
            .collect();
        Ok(rows
            .into_iter()
            .map(|(id, p, s, o, r)| {
                (id, (p, s, o, r, factors.get(&id).cloned(), history.get(&id).copied().unwrap_or(0)))
            })
            .collect())
    })
    .await
    .unwrap()
}

/// `PRAGMA integrity_check` and `foreign_key_check` on the file of a dead process.
async fn integrity(dir: &Path) {
    let url = dir.join(DB_FILE).display().to_string();
    let (check, fk) = tokio::task::spawn_blocking(move || {
        let mut c = diesel::SqliteConnection::establish(&url).unwrap();
        #[derive(QueryableByName)]
        struct Check {
            #[diesel(sql_type = diesel::sql_types::Text)]
            integrity_check: String,
        }
        #[derive(QueryableByName)]
        struct Fk {
            #[diesel(sql_type = diesel::sql_types::Text)]
            table: String,
        }
        let check: Vec<Check> = diesel::sql_query("PRAGMA integrity_check").load(&mut c).unwrap();
        let fk: Vec<Fk> = diesel::sql_query("PRAGMA foreign_key_check").load(&mut c).unwrap();
        (check.into_iter().map(|c| c.integrity_check).collect::<Vec<_>>(), fk.into_iter().map(|f| f.table).collect())
    })
    .await
    .unwrap();
    assert_eq!(check, vec!["ok".to_owned()], "PRAGMA integrity_check");
    let fk: Vec<String> = fk;
    assert!(fk.is_empty(), "foreign key violations in {fk:?}");
}

/// Every Defender machine is imported whole or not at all: in whole batches, each linked
/// machine with its endpoint, its `defender` source and its two risk factors.
async fn machines_whole(db: &Db, total: usize) {
    type M = (String, Option<i64>, bool, i16, i16);
    let (machines, defender_endpoints, exposure, alerts): (Vec<M>, Vec<i64>, Vec<i64>, Vec<i64>) = db
        .run(|c| {
            let machines = dm::table
                .select((dm::machine_id, dm::endpoint_id, dm::stale, dm::top_vuln_severity, dm::top_alert_severity))
                .load(c)?;
            let sources = endpoint_sources::table
                .filter(endpoint_sources::source.eq("defender"))
                .select(endpoint_sources::endpoint_id)
                .load(c)?;
            let factor = |c: &mut _, source: &str| -> QueryResult<Vec<i64>> {
                risk_factors::table
                    .filter(risk_factors::source.eq(source.to_owned()))
                    .select(risk_factors::endpoint_id)
                    .load(c)
            };
            let exposure = factor(c, endpoint_analytics::defender::import::EXPOSURE_SOURCE)?;
            let alerts = factor(c, endpoint_analytics::defender::import::ALERTS_SOURCE)?;
            Ok((machines, sources, exposure, alerts))
        })
        .await
        .unwrap();
    let n = machines.len();
    assert!(n == total || n % 500 == 0, "{n} machines: not whole import batches of 500 (of {total})");
    let endpoints_of_machines: std::collections::HashSet<i64> =
        machines.iter().filter(|m| !m.2).filter_map(|m| m.1).collect();
    let with_source: std::collections::HashSet<i64> = defender_endpoints.into_iter().collect();
    assert_eq!(endpoints_of_machines, with_source, "machines and their endpoints' defender source disagree");
    let exposure: std::collections::HashSet<i64> = exposure.into_iter().collect();
    let alerts: std::collections::HashSet<i64> = alerts.into_iter().collect();
    for (id, endpoint, stale, vuln, alert) in machines.iter().filter(|m| !m.2) {
        let e = endpoint.unwrap_or_else(|| panic!("machine {id} without an endpoint"));
        assert_eq!(exposure.contains(&e), *vuln > 0, "machine {id} (stale {stale}): exposure factor");
        assert_eq!(alerts.contains(&e), *alert > 0, "machine {id}: alerts factor");
    }
}

/// No run or job is left "running" once the app is back.
async fn nothing_running(db: &Db) {
    let (runs, job_count): (i64, i64) = db
        .run(|c| {
            Ok((
                sync_runs::table.filter(sync_runs::status.eq("running")).count().get_result(c)?,
                jobs::table.filter(jobs::status.eq("running")).count().get_result(c)?,
            ))
        })
        .await
        .unwrap();
    assert_eq!((runs, job_count), (0, 0), "a run or job is still marked running after the restart");
}

struct Templates {
    /// Users and tokens, network observations, the integration configured but disabled.
    empty: tempfile::TempDir,
    /// After a complete sync, with one widely used standard profile disabled (model stale).
    synced: tempfile::TempDir,
    admin_token: String,
    /// The integration's settings, enabled.
    settings: Value,
    /// Rows of the complete sync.
    machines: usize,
    endpoints: usize,
    sync_time: Duration,
    remodel_time: Duration,
    /// Model before and after the complete re-model of `synced`.
    old_model: BTreeMap<i64, ModelUnit>,
    new_model: BTreeMap<i64, ModelUnit>,
}

async fn templates(sim: &RunningSimulator) -> Templates {
    let dir = tempfile::tempdir().unwrap();
    // The first start creates the database; users and a token go in through the library.
    let p = Proc::start(dir.path()).await;
    let db = open(dir.path()).await;
    let admin_token = new_api_token();
    let hash = hash_api_token(&admin_token);
    db.run(move |c| {
        for (name, role) in [("ada", Role::Admin), ("otto", Role::Operator)] {
            endpoint_analytics::accounts::create_user(c, name, PASSWORD, role).map_err(|e| anyhow::anyhow!("{e}"))?;
        }
        api_tokens::create(c, "crash-admin", &hash, Role::Admin, api_tokens::Creator::CommandLine, None)?;
        Ok(())
    })
    .await
    .unwrap();
    let obs = serde_json::to_value(sim.tenant().network_observations()).unwrap();
    assert_eq!(api(&p, &admin_token, reqwest::Method::POST, "/api/v1/observations", Some(obs)).await.status(), 200);
    let mut settings = json!({
        "tenant_id": sim.tenant_id, "client_id": sim.client_id, "client_secret": sim.client_secret,
        "login_base_url": sim.base_url, "api_base_url": sim.base_url, "enabled": false,
    });
    let res =
        api(&p, &admin_token, reqwest::Method::PUT, "/api/v1/integrations/defender", Some(settings.clone())).await;
    assert_eq!(res.status(), 200);
    p.kill();
    // Copy only what no connection of ours holds open (see `copy_db`).
    drop(db);
    let empty = copy_db(dir.path());

    // The complete sync, timed.
    let p = Proc::start(dir.path()).await;
    settings["enabled"] = json!(true);
    let started = Instant::now();
    let res =
        api(&p, &admin_token, reqwest::Method::PUT, "/api/v1/integrations/defender", Some(settings.clone())).await;
    assert_eq!(res.status(), 200);
    let run = wait_sync(&p, &admin_token).await;
    let sync_time = started.elapsed();
    assert_eq!(run["status"], "succeeded", "{run}");
    p.kill();
    let db = open(dir.path()).await;
    let (machines, endpoint_count) = db
        .run(|c| {
            let m: i64 = dm::table.count().get_result(c)?;
            let e: i64 = endpoints::table.count().get_result(c)?;
            Ok((m as usize, e as usize))
        })
        .await
        .unwrap();
    machines_whole(&db, machines).await;

    // Disable the standard profile most endpoints have: a re-model changes them.
    db.run(|c| {
        let (id, name): (i64, String) = profiles::table
            .filter(profiles::owner.eq("standard"))
            .filter(profiles::name.eq_any(endpoints::table.select(endpoints::profile)))
            .select((profiles::id, profiles::name))
            .first(c)?;
        endpoint_analytics::db::models::profiles::set_enabled(c, id, false)?;
        endpoint_analytics::modeling::mark_stale(c, true)?;
        let n: i64 = endpoints::table.filter(endpoints::profile.eq(name)).count().get_result(c)?;
        anyhow::ensure!(n > 0, "the disabled profile is in use");
        Ok(())
    })
    .await
    .unwrap();
    let old_model = model_units(&db).await;
    drop(db);
    let synced = copy_db(dir.path());

    // The complete re-model, timed, on a copy.
    let copy = copy_db(synced.path());
    let p = Proc::start(copy.path()).await;
    let admin = p.sign_in("ada").await;
    let started = Instant::now();
    remodel(&p, &admin).await;
    let db = open(copy.path()).await;
    assert_eq!(wait_remodel(&db).await, "succeeded");
    let remodel_time = started.elapsed();
    let new_model = model_units(&db).await;
    assert_ne!(old_model, new_model, "the re-model changes something");
    drop(p);
    Templates {
        empty,
        synced,
        admin_token,
        settings,
        machines,
        endpoints: endpoint_count,
        sync_time,
        remodel_time,
        old_model,
        new_model,
    }
}

async fn remodel(p: &Proc, admin: &reqwest::Client) {
    let html = admin.get(p.url("/config/profiles")).send().await.unwrap().text().await.unwrap();
    let csrf = attr(&doc(&html), "body", "hx-headers")
        .and_then(|h| serde_json::from_str::<Value>(&h).ok()?["X-CSRF-Token"].as_str().map(str::to_owned))
        .unwrap();
    let res = admin.post(p.url("/config/profiles/remodel")).header("x-csrf-token", csrf).send().await.unwrap();
    assert!(res.status() == 303 || res.status() == 200, "{}", res.status());
}

/// A form's fields.
type Fields = Vec<(String, String)>;

#[derive(Debug, Clone, Copy)]
enum Scenario {
    Sync,
    Remodel,
    Action,
}

#[tokio::test]
async fn killed_at_random_moments_the_app_loses_nothing_and_sends_no_action_twice() {
    if backend() != "sqlite" {
        eprintln!("skipped: the crash test runs on SQLite files");
        return;
    }
    let iterations: usize = std::env::var("EA_CRASH_ITERATIONS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(if long_tests() { 30 } else { 3 });
    let seed: u64 = std::env::var("EA_CRASH_SEED").ok().and_then(|v| v.parse().ok()).unwrap_or(20261126);
    let mut rng = rand::rngs::StdRng::seed_from_u64(seed);
    let sim = defender_sim::start(SimConfig {
        machines: MACHINES,
        action_pending_ms: 200,
        action_inprogress_ms: 200,
        ..SimConfig::default()
    })
    .await
    .unwrap();
    let t = templates(&sim).await;
    eprintln!(
        "crash test: seed {seed}, {iterations} iterations; sync {:?}, re-model {:?}",
        t.sync_time, t.remodel_time
    );
    let mut clicks = 0u64;
    let mut last_action_dir = None;
    for i in 0..iterations {
        let scenario = [Scenario::Sync, Scenario::Remodel, Scenario::Action][i % 3];
        let what = format!("iteration {i} (seed {seed}), {scenario:?}");
        let template = match scenario {
            Scenario::Sync => t.empty.path(),
            _ => t.synced.path(),
        };
        let dir = copy_db(template);
        let p = Proc::start(dir.path()).await;
        let db = open(dir.path()).await;
        let scans_before = sim.counters().api("RunAntiVirusScan").calls;
        // The clicked endpoint and the form that was sent.
        let mut action: Option<(i64, Fields)> = None;
        let delay = match scenario {
            Scenario::Sync => {
                let body = Some(t.settings.clone());
                let res = api(&p, &t.admin_token, reqwest::Method::PUT, "/api/v1/integrations/defender", body);
                assert_eq!(res.await.status(), 200, "{what}");
                rng.random_range(0..t.sync_time.as_millis() as u64)
            }
            Scenario::Remodel => {
                let admin = p.sign_in("ada").await;
                remodel(&p, &admin).await;
                rng.random_range(0..t.remodel_time.as_millis() as u64)
            }
            Scenario::Action => {
                // A Windows machine not scanned yet in this run of the test.
                let endpoint: i64 = db
                    .run(move |c| {
                        Ok(dm::table
                            .filter(dm::os_platform.eq_any(["Windows10", "Windows11"]))
                            .filter(dm::onboarding_status.eq("Onboarded"))
                            .filter(dm::stale.eq(false))
                            .filter(dm::endpoint_id.is_not_null())
                            .order(dm::machine_id)
                            .select(dm::endpoint_id)
                            .offset(i as i64)
                            .first::<Option<i64>>(c)?
                            .unwrap())
                    })
                    .await
                    .unwrap();
                let operator = p.sign_in("otto").await;
                let html =
                    operator.get(p.url(&format!("/endpoints/{endpoint}"))).send().await.unwrap().text().await.unwrap();
                let page = doc(&html);
                let key = attr(&page, "form[data-action=scan] input[name=key]", "value").expect("Run Scan is offered");
                let csrf = attr(&page, "body", "hx-headers")
                    .and_then(|h| serde_json::from_str::<Value>(&h).ok()?["X-CSRF-Token"].as_str().map(str::to_owned))
                    .unwrap();
                let fields: Vec<(String, String)> = [
                    ("action", "scan"),
                    ("scope", "Quick"),
                    ("comment", "crash test"),
                    ("key", key.as_str()),
                    ("csrf_token", csrf.as_str()),
                ]
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect();
                let click = operator.post(p.url(&format!("/endpoints/{endpoint}/actions"))).form(&fields).send();
                // The click is in flight when the process dies (or just answered).
                tokio::spawn(click);
                clicks += 1;
                action = Some((endpoint, fields));
                rng.random_range(0..150)
            }
        };
        tokio::time::sleep(Duration::from_millis(delay)).await;
        p.kill();
        drop(db);

        integrity(dir.path()).await;
        let db = open(dir.path()).await;
        match scenario {
            Scenario::Sync => machines_whole(&db, t.machines).await,
            Scenario::Remodel => {
                let now = model_units(&db).await;
                assert_eq!(now.len(), t.old_model.len(), "{what}");
                for (id, unit) in &now {
                    assert!(
                        unit == &t.old_model[id] || unit == &t.new_model[id],
                        "{what}: endpoint {id} is neither old nor new: {unit:?}\nold {:?}\nnew {:?}",
                        t.old_model[id],
                        t.new_model[id]
                    );
                }
            }
            Scenario::Action => {}
        }

        // Back up: nothing left running, the next sync completes, the model can be finished.
        let p = Proc::start(dir.path()).await;
        nothing_running(&db).await;
        let res = api(&p, &t.admin_token, reqwest::Method::POST, "/api/v1/integrations/defender/sync", None).await;
        assert_eq!(res.status(), 202, "{what}: {}", res.text().await.unwrap());
        let run = wait_sync(&p, &t.admin_token).await;
        assert_eq!(run["status"], "succeeded", "{what}: {run}");
        machines_whole(&db, t.machines).await;
        let (m, e): (i64, i64) =
            db.run(|c| Ok((dm::table.count().get_result(c)?, endpoints::table.count().get_result(c)?))).await.unwrap();
        assert_eq!((m as usize, e as usize), (t.machines, t.endpoints), "{what}: after the recovering sync");
        if let Scenario::Remodel = scenario {
            let admin = p.sign_in("ada").await;
            remodel(&p, &admin).await;
            assert_eq!(wait_remodel(&db).await, "succeeded", "{what}");
            assert_eq!(model_units(&db).await, t.new_model, "{what}: the re-model after the restart");
        }
        if let Some((endpoint, fields)) = action {
            // The operator, unsure whether it went out, clicks the same form again.
            let operator = p.sign_in("otto").await;
            let html =
                operator.get(p.url(&format!("/endpoints/{endpoint}"))).send().await.unwrap().text().await.unwrap();
            let csrf = attr(&doc(&html), "body", "hx-headers")
                .and_then(|h| serde_json::from_str::<Value>(&h).ok()?["X-CSRF-Token"].as_str().map(str::to_owned))
                .unwrap();
            let mut again = fields.clone();
            again.retain(|(k, _)| k != "csrf_token");
            again.push(("csrf_token".into(), csrf));
            let res =
                operator.post(p.url(&format!("/endpoints/{endpoint}/actions"))).form(&again).send().await.unwrap();
            assert!(res.status().is_success() || res.status().is_client_error(), "{what}: {}", res.status());
            tokio::time::sleep(Duration::from_millis(500)).await;
            let sent = sim.counters().api("RunAntiVirusScan").calls - scans_before;
            let recorded: Vec<(String, String)> = db
                .run(move |c| {
                    Ok(machine_actions::table
                        .select((machine_actions::defender_action_id, machine_actions::status))
                        .load(c)?)
                })
                .await
                .unwrap();
            let with_id = recorded.iter().filter(|(id, _)| !id.is_empty()).count() as u64;
            assert!(sent <= 1, "{what}: the click reached Defender {sent} times");
            assert_eq!(recorded.len(), 1, "{what}: one recorded action per click, not {recorded:?}");
            // Sent but killed before it was marked sent: the supervisor finds it in Defender later.
            assert!(with_id <= sent, "{what}: recorded as sent {with_id}, Defender received {sent}");
            last_action_dir = Some((dir, p));
            continue;
        }
        drop(p);
    }
    let total = sim.counters().api("RunAntiVirusScan").calls;
    assert!(total <= clicks, "{total} scans sent for {clicks} clicks");

    if long_tests()
        && let Some((dir, p)) = last_action_dir
    {
        // The supervisor settles an intent that was never sent after its grace period (60 s).
        let db = open(dir.path()).await;
        tokio::time::sleep(Duration::from_secs(80)).await;
        let open_rows: i64 = db
            .run(|c| {
                Ok(machine_actions::table
                    .filter(machine_actions::defender_action_id.eq(""))
                    .filter(machine_actions::status.ne("Failed"))
                    .count()
                    .get_result(c)?)
            })
            .await
            .unwrap();
        assert_eq!(open_rows, 0, "an intent was neither sent nor settled");
        drop(p);
    }
}
