//! The Defender integration end to end, over real HTTP between the app and the simulator:
//! configuration through the JSON API, Test Connection, full and unchanged syncs whose results
//! match what the simulator holds, faults, the secret never leaving the server, disabling.
//!
//! Long because each test is one journey of the integration with its own tenant, checked
//! against what the simulator holds.

use std::collections::{HashMap, HashSet};
use std::time::Duration;

use defender_sim::{RunningSimulator, SimConfig};
use diesel::prelude::*;
use endpoint_analytics::auth::Role;
use endpoint_analytics::db::schema::{defender_machines, endpoint_history, endpoints, profiles};
use endpoint_analytics::defender::machine::{
    SoftwareVersion, decode_rows, encode_rows, profile_name, software_version,
};
use endpoint_analytics::domain::mac::normalize_mac;
use serde_json::{Value, json};

use crate::helpers::*;

pub(crate) async fn simulator(machines: usize) -> RunningSimulator {
    defender_sim::start(SimConfig { machines, ..SimConfig::default() }).await.expect("the simulator starts")
}

pub(crate) fn settings_for(sim: &RunningSimulator, enabled: bool) -> Value {
    json!({
        "tenant_id": sim.tenant_id, "client_id": sim.client_id, "client_secret": sim.client_secret,
        "cloud": "commercial", "login_base_url": sim.base_url, "api_base_url": sim.base_url, "enabled": enabled,
    })
}

pub(crate) async fn put_settings(app: &TestApp, token: &str, body: &Value) -> reqwest::Response {
    reqwest::Client::new()
        .put(app.url("/api/v1/integrations/defender"))
        .bearer_auth(token)
        .json(body)
        .send()
        .await
        .unwrap()
}

/// Waits for the running sync to end; returns the last run.
pub(crate) async fn wait_for_sync(app: &TestApp, token: &str) -> Value {
    for _ in 0..600 {
        let status = app.api_get(token, "/api/v1/integrations/defender/status").await;
        if status["running"].is_null() && !status["last_run"].is_null() {
            return status["last_run"].clone();
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!("the sync did not finish within a minute");
}

pub(crate) async fn sync_now(app: &TestApp, token: &str) -> Value {
    let res = reqwest::Client::new()
        .post(app.url("/api/v1/integrations/defender/sync"))
        .bearer_auth(token)
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 202, "{}", res.text().await.unwrap());
    wait_for_sync(app, token).await
}

pub(crate) async fn ingest_network(app: &TestApp, token: &str, sim: &RunningSimulator) -> usize {
    let obs = serde_json::to_value(sim.tenant().network_observations()).unwrap();
    let n = obs.as_array().unwrap().len();
    assert_eq!(app.ingest(token, &obs).await.status(), 200);
    n
}

/// A configured, enabled integration after its first sync, with network observations ingested first.
/// Machines, vulnerabilities and alerts a sync staged and did not clear (see
/// `defender_sync_staging`).
async fn staged_rows(app: &TestApp) -> (i64, i64, i64) {
    use endpoint_analytics::db::schema::{defender_sync_alerts, defender_sync_staging, defender_sync_vulnerabilities};
    app.db
        .run(|c| {
            Ok((
                defender_sync_staging::table.count().get_result(c)?,
                defender_sync_vulnerabilities::table.count().get_result(c)?,
                defender_sync_alerts::table.count().get_result(c)?,
            ))
        })
        .await
        .unwrap()
}

pub(crate) async fn synced(machines: usize) -> (TestApp, RunningSimulator, String, Value) {
    synced_with(SimConfig { machines, ..SimConfig::default() }).await
}

/// [`synced`] against a simulator of this configuration.
pub(crate) async fn synced_with(config: SimConfig) -> (TestApp, RunningSimulator, String, Value) {
    let app = spawn_app().await;
    let sim = defender_sim::start(config).await.expect("the simulator starts");
    let admin = app.token(Role::Admin).await;
    ingest_network(&app, &admin, &sim).await;
    let res = put_settings(&app, &admin, &settings_for(&sim, true)).await;
    assert_eq!(res.status(), 200, "{}", res.text().await.unwrap());
    let run = wait_for_sync(&app, &admin).await;
    assert_eq!(run["status"], "succeeded", "{run}");
    (app, sim, admin, run)
}

/// More machines than one import batch (500): what is stored is what the tenant holds, as with
/// one batch (each batch matches against the endpoints the batches before it wrote).
#[tokio::test]
async fn a_sync_of_several_import_batches_imports_what_the_simulator_holds() {
    let (app, sim, _, run) = synced(1_300).await;
    imported_as_the_tenant_holds(&app, &sim, &run).await;
}

/// Every machine of the tenant as the import stored it: linked to one endpoint each, merged with
/// the network endpoint it was seen as, with its CVE count, worst exposure and alert level.
async fn imported_as_the_tenant_holds(app: &TestApp, sim: &RunningSimulator, run: &Value) {
    let tenant = sim.tenant();
    let live: Vec<_> = tenant.machines().iter().filter(|m| m.duplicate_of.is_none()).collect();

    // Every live machine is one endpoint; re-imaged duplicates are stale records without one.
    // (machine, endpoint, stale, vulnerabilities, top CVE, exposure, alert level)
    type Row = (String, Option<i64>, bool, i32, String, i16, i16);
    let rows: Vec<Row> = app
        .db
        .run(|c| {
            Ok(defender_machines::table
                .select((
                    defender_machines::machine_id,
                    defender_machines::endpoint_id,
                    defender_machines::stale,
                    defender_machines::vuln_count,
                    defender_machines::top_vuln_cve,
                    defender_machines::top_vuln_severity,
                    defender_machines::top_alert_severity,
                ))
                .load(c)?)
        })
        .await
        .unwrap();
    assert_eq!(rows.len(), tenant.machines().len());
    let by_id: HashMap<&str, _> = rows.iter().map(|r| (r.0.as_str(), r)).collect();
    let linked: HashSet<i64> = rows.iter().filter(|r| !r.2).filter_map(|r| r.1).collect();
    assert_eq!(linked.len(), live.len(), "one endpoint per live machine, none shared");
    assert_eq!(run["machines"], tenant.machines().len());
    assert_eq!(run["stale"], tenant.machines().len() - live.len());
    assert_eq!(staged_rows(app).await, (0, 0, 0), "what was staged while fetching is gone");

    // Machines seen on the network merged with their network endpoint (MAC first).
    let observed_macs: HashSet<String> =
        tenant.network_observations().iter().filter_map(|o| o.mac.as_deref().and_then(normalize_mac)).collect();
    let merged_expected = live
        .iter()
        .filter(|m| m.mac.is_some_and(|mac| observed_macs.contains(&normalize_mac(&hex::encode(mac)).unwrap())))
        .count();
    assert!(merged_expected > 0);
    assert_eq!(run["merged"], merged_expected, "{run}");
    let both: i64 = app
        .db
        .run(|c| Ok(endpoints::table.filter(endpoints::sources.eq("defender,network")).count().get_result(c)?))
        .await
        .unwrap();
    assert_eq!(both as usize, merged_expected);

    // Per machine: the distinct CVE count, the most severe vulnerability, the most severe active alert.
    let level = |s: &str| ["None", "Low", "Medium", "High", "Critical"].iter().position(|l| *l == s).unwrap() as i16;
    let alert_level = |s: &str| match s {
        "High" => 3,
        "Medium" => 2,
        _ => 1,
    };
    for m in &live {
        let r = by_id[m.id.as_str()];
        let cves: HashSet<&str> = tenant.machine_vulnerabilities(m.index as usize).map(|v| v.id.as_str()).collect();
        assert_eq!(r.3 as usize, cves.len(), "vulnerability count of {}", m.id);
        let worst =
            tenant.machine_vulnerabilities(m.index as usize).map(|v| level(v.severity.as_str())).max().unwrap_or(0);
        assert_eq!(r.5, worst, "exposure of {}", m.id);
        if worst > 0 {
            assert!(cves.contains(r.4.as_str()), "the top CVE is one of the machine's");
        }
        let alert = tenant
            .alerts_of(m.index as usize)
            .iter()
            .filter(|a| a.status != "Resolved")
            .map(|a| alert_level(a.severity))
            .max()
            .unwrap_or(0);
        assert_eq!(r.6, alert, "alert level of {}", m.id);
    }
}

#[tokio::test]
async fn a_full_sync_imports_what_the_simulator_holds() {
    let (app, sim, token, run) = synced(150).await;
    imported_as_the_tenant_holds(&app, &sim, &run).await;
    let tenant = sim.tenant();
    let live: Vec<_> = tenant.machines().iter().filter(|m| m.duplicate_of.is_none()).collect();

    // Dynamic profiles OS / OS_VERSION with a Very High score.
    let sample: Vec<(String, String, String)> = live
        .iter()
        .filter(|m| !m.os_platform.is_empty())
        .take(30)
        .map(|m| {
            // Defender reports Linux as the platform and "distribution version" in osVersion.
            let version = match m.os_distribution {
                Some(d) if m.os_platform == "Linux" => format!("{d} {}", m.version),
                _ => m.version.to_owned(),
            };
            (m.id.clone(), m.os_platform.to_owned(), version)
        })
        .collect();
    for (id, platform, version) in sample {
        let expected = profile_name(&platform, &version).unwrap();
        let mid = id.clone();
        let (profile, score): (String, i16) = app
            .db
            .run(move |c| {
                Ok(endpoints::table
                    .inner_join(defender_machines::table)
                    .filter(defender_machines::machine_id.eq(mid))
                    .select((endpoints::profile, endpoints::match_score))
                    .first(c)?)
            })
            .await
            .unwrap();
        assert_eq!((profile.as_str(), score), (expected.as_str(), 5), "profile of {id}");
    }
    let owned: i64 = app
        .db
        .run(|c| Ok(profiles::table.filter(profiles::owner.eq("defender")).count().get_result(c)?))
        .await
        .unwrap();
    assert!(owned > 3);
    // And the API counts the calls it made: one page each at this size (the two listings of
    // isolations and releases included), plus nothing wasted.
    assert!(run["api_calls"].as_i64().unwrap() <= 7, "{run}");
    let _ = token;
}

#[tokio::test]
async fn a_second_unchanged_sync_writes_nothing() {
    let (app, _sim, token, _) = synced(120).await;
    let snapshot = |app: &TestApp| {
        let db = app.db.clone();
        async move {
            db.run(|c| {
                let updated: Option<i64> = endpoints::table.select(diesel::dsl::max(endpoints::updated_at)).first(c)?;
                let machines: Option<i64> =
                    defender_machines::table.select(diesel::dsl::max(defender_machines::updated_at)).first(c)?;
                let history: i64 = endpoint_history::table.count().get_result(c)?;
                Ok((updated, machines, history))
            })
            .await
            .unwrap()
        }
    };
    let before = snapshot(&app).await;
    tokio::time::sleep(Duration::from_millis(1100)).await;
    let run = sync_now(&app, &token).await;
    assert_eq!(run["status"], "succeeded");
    assert_eq!(
        (run["created"].as_i64(), run["updated"].as_i64(), run["merged"].as_i64()),
        (Some(0), Some(0), Some(0)),
        "{run}"
    );
    assert_eq!(snapshot(&app).await, before, "nothing was rewritten");
}

/// A re-sync applies Defender's vulnerability delta to the stored per-machine CVE lists instead
/// of fetching every machine×vulnerability row again: here the stored state of one machine still
/// holds a CVE the delta reports Fixed, and the re-sync removes it, using the delta export only.
#[tokio::test]
async fn a_re_sync_applies_the_vulnerability_delta() {
    let (app, sim, token, _) = synced(150).await;
    let tenant = sim.tenant();
    let since = chrono::Utc::now() - chrono::Duration::days(12);
    let (machine, cve, software) = (0..tenant.machines().len())
        .find_map(|m| {
            let fixed = tenant.delta_events(m, since).into_iter().find(|e| e.status == "Fixed")?;
            let v = &tenant.vulnerabilities()[fixed.vuln as usize];
            let sw = &tenant.software()[v.product as usize];
            Some((
                tenant.machines()[m].id.clone(),
                v.id.clone(),
                software_version(Some(sw.vendor), Some(sw.name), Some(fixed.version)),
            ))
        })
        .expect("the simulated tenant has a Fixed change in the last 12 days");
    let stored = |app: &TestApp, id: String| {
        let db = app.db.clone();
        async move {
            db.run(move |c| {
                Ok(defender_machines::table
                    .find(id)
                    .select((defender_machines::vuln_rows, defender_machines::vuln_count))
                    .first::<(String, i32)>(c)?)
            })
            .await
            .unwrap()
        }
    };
    let (rows, count) = stored(&app, machine.clone()).await;
    let cves: HashSet<String> = decode_rows(&rows).into_iter().flat_map(|(_, cves)| cves).collect();
    assert!(!cves.contains(&cve), "the fixed CVE is not current");
    assert_eq!(cves.len() as i32, count);

    // The stored state as it was before the fix: the CVE still on its software version, the
    // snapshot 12 days old.
    let mut before: Vec<(SoftwareVersion, Vec<String>)> = decode_rows(&rows);
    before.push((software, vec![cve.clone()]));
    let before =
        encode_rows(&before.iter().map(|(s, c)| (s, c.iter().map(String::as_str).collect())).collect::<Vec<_>>());
    let (id, at) = (machine.clone(), since.timestamp());
    app.db
        .run(move |c| {
            diesel::update(defender_machines::table.find(id))
                .set((defender_machines::vuln_rows.eq(before), defender_machines::content_hash.eq("")))
                .execute(c)?;
            let key = "defender.vulnerability_snapshot";
            let value = endpoint_analytics::db::models::jobs::get_setting(c, key)?.expect("a snapshot is recorded");
            let (_, identity) = value.split_once(' ').unwrap();
            endpoint_analytics::db::models::jobs::set_setting(c, key, &format!("{at} {identity}"))?;
            Ok(())
        })
        .await
        .unwrap();
    let api = |name: &str| sim.counters().per_api.get(name).map(|a| a.calls).unwrap_or(0);
    let rows_calls = api("MachinesVulnerabilities");
    let run = sync_now(&app, &token).await;
    assert_eq!(run["status"], "succeeded", "{run}");
    assert_eq!(run["updated"].as_i64(), Some(1), "only the machine whose state differed is written: {run}");
    assert_eq!(api("MachinesVulnerabilities"), rows_calls, "no machine×vulnerability row was fetched again");
    assert!(api("ExportAssessmentDelta") >= 1);
    assert_eq!(stored(&app, machine).await, (rows, count), "the Fixed CVE left the machine");
}

#[tokio::test]
async fn test_connection_reports_permissions_and_failures_in_plain_words() {
    let app = spawn_app().await;
    let sim = simulator(60).await;
    let admin = app.token(Role::Admin).await;
    let operator = app.token(Role::Operator).await;
    let test = |token: String| {
        let url = app.url("/api/v1/integrations/defender/test");
        async move {
            reqwest::Client::new().post(url).bearer_auth(token).send().await.unwrap().json::<Value>().await.unwrap()
        }
    };
    assert_eq!(put_settings(&app, &admin, &settings_for(&sim, false)).await.status(), 200);
    let r = test(operator.clone()).await;
    assert_eq!(r["ok"], true, "{r}");
    assert_eq!(r["permissions"].as_array().unwrap().len(), 10);
    assert!(r["permissions"].as_array().unwrap().iter().all(|p| p["granted"] == true));
    assert_eq!(r["api_call"]["ok"], true);

    sim.set_client_roles(&sim.client_id, &["Machine.Read.All", "Alert.Read.All", "Vulnerability.Read.All"]);
    let r = test(operator.clone()).await;
    assert_eq!(r["ok"], false);
    let missing: Vec<&str> = r["missing"].as_array().unwrap().iter().map(|m| m.as_str().unwrap()).collect();
    assert!(missing.contains(&"Machine.Isolate") && missing.contains(&"Machine.Scan"), "{r}");

    let mut wrong = settings_for(&sim, false);
    wrong["client_secret"] = json!("not-the-secret");
    put_settings(&app, &admin, &wrong).await;
    let r = test(operator.clone()).await;
    assert!(r["error"].as_str().unwrap().contains("client secret is wrong"), "{r}");

    put_settings(&app, &admin, &settings_for(&sim, false)).await;
    sim.expire_client_secret(&sim.client_id);
    let r = test(operator.clone()).await;
    assert!(r["error"].as_str().unwrap().contains("expired"), "{r}");

    let mut unknown = settings_for(&sim, false);
    unknown["tenant_id"] = json!("11111111-2222-3333-4444-555555555555");
    put_settings(&app, &admin, &unknown).await;
    let r = test(operator.clone()).await;
    assert!(r["error"].as_str().unwrap().contains("does not know this tenant"), "{r}");

    // Analysts cannot test, operators cannot configure.
    let analyst = app.token(Role::Analyst).await;
    let res = reqwest::Client::new()
        .post(app.url("/api/v1/integrations/defender/test"))
        .bearer_auth(&analyst)
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 403);
    assert_eq!(put_settings(&app, &operator, &settings_for(&sim, false)).await.status(), 403);
}

#[tokio::test]
async fn bad_settings_are_refused_field_by_field_and_change_nothing() {
    let app = spawn_app().await;
    let admin = app.token(Role::Admin).await;
    let res =
        put_settings(&app, &admin, &json!({"tenant_id": "x", "client_id": "y", "api_base_url": "ftp://nope"})).await;
    assert_eq!(res.status(), 400);
    let body: Value = res.json().await.unwrap();
    for f in ["tenant_id", "client_id", "client_secret", "api_base_url"] {
        assert!(body["error"]["fields"][f].is_string(), "{f}: {body}");
    }
    let res = reqwest::Client::new()
        .put(app.url("/api/v1/integrations/defender"))
        .bearer_auth(&admin)
        .body("{\"enabled\": \"yes\"")
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 400);
    assert_eq!(app.api_get(&admin, "/api/v1/integrations/defender/status").await["configured"], false);
}

#[tokio::test]
async fn the_client_secret_never_leaves_the_server() {
    let (app, sim, token, _) = synced(60).await;
    let secret = sim.client_secret.clone();
    let admin = app.login_as("adam", Role::Admin).await;
    let mut seen = Vec::new();
    for path in ["/config/integrations/defender", "/config/integrations/defender/sync", "/audit", "/"] {
        seen.push(admin.get(app.url(path)).send().await.unwrap().text().await.unwrap());
    }
    let csrf = app.csrf(&admin, "/config/integrations/defender").await;
    seen.push(
        admin
            .post(app.url("/config/integrations/defender/test"))
            .header("x-csrf-token", &csrf)
            .form(&[
                ("tenant_id", sim.tenant_id.as_str()),
                ("client_id", sim.client_id.as_str()),
                ("client_secret", ""),
                ("login_base_url", &sim.base_url),
                ("api_base_url", &sim.base_url),
            ])
            .send()
            .await
            .unwrap()
            .text()
            .await
            .unwrap(),
    );
    seen.push(app.api_get(&token, "/api/v1/integrations/defender/status").await.to_string());
    let test = reqwest::Client::new()
        .post(app.url("/api/v1/integrations/defender/test"))
        .bearer_auth(&token)
        .send()
        .await
        .unwrap();
    seen.push(test.text().await.unwrap());
    for (i, text) in seen.iter().enumerate() {
        assert!(!text.contains(&secret), "response {i} leaks the secret");
    }
    assert!(seen[0].contains("secret-configured"), "the form says the secret is configured");
    assert!(seen[4].contains("permissions"), "the stored secret was used by Test Connection");
    if let endpoint_analytics::db::DatabaseTarget::Sqlite { path } = app.db.target() {
        let bytes = std::fs::read(path).unwrap();
        let wal = std::fs::read(path.with_extension("db-wal")).unwrap_or_default();
        for b in [bytes, wal] {
            assert!(
                !b.windows(secret.len()).any(|w| w == secret.as_bytes()),
                "the database holds the secret in plain text"
            );
        }
    }
}

#[tokio::test]
async fn faults_end_in_a_complete_sync_or_a_reported_failure_with_nothing_lost() {
    use defender_sim::{FaultEffect, FaultRule, Faults};
    let always_500 = |api: &str| Faults {
        rules: vec![FaultRule {
            api: Some(api.into()),
            nth: None,
            fraction: None,
            times: None,
            effect: FaultEffect::Status { status: 500 },
        }],
        ..Default::default()
    };
    let (app, sim, token, _) = synced(80).await;
    let count = |app: &TestApp| {
        let db = app.db.clone();
        async move {
            db.run(|c| {
                let e: i64 = endpoints::table.count().get_result(c)?;
                let m: i64 =
                    defender_machines::table.filter(defender_machines::stale.eq(false)).count().get_result(c)?;
                Ok((e, m))
            })
            .await
            .unwrap()
        }
    };
    let before = count(&app).await;

    // A permanent 500 on the machine list: a reported failure, the last good data untouched.
    sim.set_faults(always_500("ListMachines"));
    let run = sync_now(&app, &token).await;
    assert_eq!(run["status"], "failed", "{run}");
    assert!(!run["error"].as_str().unwrap().is_empty());
    assert_eq!(count(&app).await, before, "nothing lost");
    let status = app.api_get(&token, "/api/v1/integrations/defender/status").await;
    assert_eq!(status["last_success"]["id"].as_i64().unwrap() + 1, status["last_run"]["id"].as_i64().unwrap());

    // A failure after the machines and their vulnerabilities were fetched and staged: the same,
    // and nothing stays staged.
    sim.set_faults(always_500("ListAlerts"));
    let run = sync_now(&app, &token).await;
    assert_eq!(run["status"], "failed", "{run}");
    assert_eq!(count(&app).await, before, "nothing lost");
    assert_eq!(staged_rows(&app).await, (0, 0, 0));

    // Throttling with Retry-After and a token that stops working mid-sync: the sync completes.
    sim.set_faults(Faults {
        rules: vec![FaultRule {
            api: Some("ListAlerts".into()),
            nth: Some(1),
            fraction: None,
            times: None,
            effect: FaultEffect::Throttle { retry_after: Some(1) },
        }],
        ..Default::default()
    });
    sim.invalidate_tokens();
    let run = sync_now(&app, &token).await;
    assert_eq!(run["status"], "succeeded", "{run}");
    assert_eq!(count(&app).await, before);
    sim.set_faults(Faults::default());
}

#[tokio::test]
async fn disabling_deletes_the_profiles_and_keeps_the_endpoints_with_standard_profiles() {
    let (app, sim, token, _) = synced(80).await;
    let owned = |app: &TestApp| {
        let db = app.db.clone();
        async move {
            db.run(|c| {
                let p: i64 = profiles::table.filter(profiles::owner.eq("defender")).count().get_result(c)?;
                let e: i64 = endpoints::table.count().get_result(c)?;
                let with_defender_profile: i64 = endpoints::table
                    .filter(
                        endpoints::profile
                            .eq_any(profiles::table.filter(profiles::owner.eq("defender")).select(profiles::name)),
                    )
                    .count()
                    .get_result(c)?;
                Ok((p, e, with_defender_profile))
            })
            .await
            .unwrap()
        }
    };
    let (profiles_before, endpoints_before, assigned_before) = owned(&app).await;
    assert!(profiles_before > 0 && assigned_before > 0);
    let res = put_settings(&app, &token, &settings_for(&sim, false)).await;
    assert_eq!(res.status(), 200);
    let (profiles_after, endpoints_after, _) = owned(&app).await;
    assert_eq!(profiles_after, 0, "the integration's profiles are deleted");
    assert_eq!(endpoints_after, endpoints_before, "imported endpoints are kept");
    let with_windows_profile: i64 = app
        .db
        .run(|c| {
            Ok(endpoints::table.filter(endpoints::profile.like("Windows1%\\_%").escape('\\')).count().get_result(c)?)
        })
        .await
        .unwrap();
    assert_eq!(with_windows_profile, 0, "no endpoint keeps a Defender profile");
    let exposure = app.api_get(&token, "/api/v1/endpoints?risk=Critical").await["total"].as_i64().unwrap();
    // Re-enabling brings everything back.
    assert_eq!(put_settings(&app, &token, &settings_for(&sim, true)).await.status(), 200);
    let run = wait_for_sync(&app, &token).await;
    assert_eq!(run["status"], "succeeded");
    assert_eq!(owned(&app).await.0, profiles_before);
    assert!(app.api_get(&token, "/api/v1/endpoints?risk=Critical").await["total"].as_i64().unwrap() >= exposure);
}

#[tokio::test]
async fn two_instances_on_one_database_never_sync_at_once() {
    let app = spawn_app().await;
    let sim = simulator(400).await;
    let token = app.token(Role::Admin).await;
    put_settings(&app, &token, &settings_for(&sim, false)).await;
    let url = match app.db.target() {
        endpoint_analytics::db::DatabaseTarget::Postgres { url } => url.clone(),
        endpoint_analytics::db::DatabaseTarget::Sqlite { path } => format!("sqlite://{}", path.display()),
    };
    let second = endpoint_analytics::app::Application::build(endpoint_analytics::config::Settings {
        database_url: url,
        bind: "127.0.0.1:0".into(),
        master_key: None,
        data_dir: std::env::temp_dir().join(format!("ea-second-{}", std::process::id())),
        ..endpoint_analytics::config::Settings::default()
    })
    .await
    .unwrap();
    let second_base = format!("http://{}", second.addr());
    tokio::spawn(second.run_until_stopped());
    let mut body = settings_for(&sim, true);
    body["enabled"] = json!(false);
    put_settings(&app, &token, &json!({"enabled": true, "tenant_id": sim.tenant_id, "client_id": sim.client_id, "login_base_url": sim.base_url, "api_base_url": sim.base_url})).await;
    // Both instances are asked at the same moment: exactly one sync starts.
    let a = reqwest::Client::new().post(app.url("/api/v1/integrations/defender/sync")).bearer_auth(&token).send();
    let b = reqwest::Client::new()
        .post(format!("{second_base}/api/v1/integrations/defender/sync"))
        .bearer_auth(&token)
        .send();
    let (a, b) = tokio::join!(a, b);
    let mut codes = vec![a.unwrap().status().as_u16(), b.unwrap().status().as_u16()];
    codes.sort();
    // The first PUT above already started one when it enabled the integration: then both refuse.
    assert!(codes == vec![202, 409] || codes == vec![409, 409], "{codes:?}");
    wait_for_sync(&app, &token).await;
    let running: i64 = app
        .db
        .run(|c| {
            use endpoint_analytics::db::schema::sync_runs;
            Ok(sync_runs::table.filter(sync_runs::status.eq("running")).count().get_result(c)?)
        })
        .await
        .unwrap();
    assert_eq!(running, 0);
    let _ = body;
}

#[tokio::test]
async fn an_admin_merges_and_splits_machines_and_syncs_keep_the_decision() {
    let (app, _sim, token, _) = synced(100).await;
    let admin = app.login_as("adam", Role::Admin).await;
    // An unmatched machine, and a network-only endpoint to merge it into.
    let (machine, own): (String, i64) = app
        .db
        .run(|c| {
            let r: (String, Option<i64>) = defender_machines::table
                .filter(defender_machines::match_note.like("unmatched%"))
                .select((defender_machines::machine_id, defender_machines::endpoint_id))
                .first(c)?;
            Ok((r.0, r.1.unwrap()))
        })
        .await
        .unwrap();
    let target: i64 = app
        .db
        .run(|c| Ok(endpoints::table.filter(endpoints::sources.eq("network")).select(endpoints::id).first(c)?))
        .await
        .unwrap();
    // Matching nothing is normal: the machine is not queued for review but counted, with a link to
    // the endpoints it made, and its endpoint's Defender subtab offers an admin the merge.
    let page = doc(&admin.get(app.url("/config/integrations/defender")).send().await.unwrap().text().await.unwrap());
    assert!(select_all(&page, &format!("#review tr[data-machine=\"{machine}\"]")).is_empty(), "not queued");
    assert_eq!(attr(&page, "#unmatched a", "href").as_deref(), Some("/endpoints?defender=unmatched"));
    let list =
        doc(&admin.get(app.url("/endpoints?defender=unmatched&limit=500")).send().await.unwrap().text().await.unwrap());
    assert!(!select_all(&list, &format!("a[href=\"/endpoints/{own}\"]")).is_empty(), "its endpoint is in the filter");
    let risk =
        doc(&admin.get(app.url(&format!("/endpoints/{own}/tabs/risk"))).send().await.unwrap().text().await.unwrap());
    assert_eq!(select_all(&risk, "#merge-form").len(), 1, "the subtab offers the merge");
    let t = target.to_string();
    let res = app
        .post_form(
            &admin,
            "/config/integrations/defender/review",
            &[("machine_id", &machine), ("decision", "merge"), ("endpoint_id", &t)],
        )
        .await;
    assert_eq!(res.status(), 200);
    let linked = |app: &TestApp, machine: String| {
        let db = app.db.clone();
        async move {
            db.run(move |c| {
                Ok(defender_machines::table
                    .filter(defender_machines::machine_id.eq(machine))
                    .select(defender_machines::endpoint_id)
                    .first::<Option<i64>>(c)?)
            })
            .await
            .unwrap()
        }
    };
    assert_eq!(linked(&app, machine.clone()).await, Some(target));
    let gone = app.api_get(&token, "/api/v1/endpoints?limit=500").await;
    assert!(
        !gone["items"].as_array().unwrap().iter().any(|e| e["id"] == own),
        "the Defender-only endpoint it had is gone"
    );
    assert_eq!(sync_now(&app, &token).await["status"], "succeeded");
    assert_eq!(linked(&app, machine.clone()).await, Some(target), "a sync keeps the merge");
    let merged = app.api_get(&token, &format!("/api/v1/endpoints/{target}")).await;
    assert_eq!(merged["sources"], json!(["defender", "network"]));
    assert!(!merged["os"]["name"].as_str().unwrap().is_empty(), "the sync brought the machine's OS onto the endpoint");
    assert_eq!(
        merged["defender"]["machine_id"],
        machine.as_str(),
        "the endpoint carries its Defender machine: {merged}"
    );

    // Split it off again: a new endpoint of its own, kept by the next sync.
    let res = app
        .post_form(&admin, "/config/integrations/defender/review", &[("machine_id", &machine), ("decision", "split")])
        .await;
    assert_eq!(res.status(), 200);
    let split = linked(&app, machine.clone()).await.unwrap();
    assert_ne!(split, target);
    assert_eq!(sync_now(&app, &token).await["status"], "succeeded");
    assert_eq!(linked(&app, machine.clone()).await, Some(split));
    assert_eq!(
        app.api_get(&token, &format!("/api/v1/endpoints/{target}")).await["sources"],
        json!(["network"]),
        "Defender let go of it"
    );
    // Operators may not make these decisions.
    let operator = app.login_as("olga", Role::Operator).await;
    let res = app
        .post_form(
            &operator,
            "/config/integrations/defender/review",
            &[("machine_id", &machine), ("decision", "split")],
        )
        .await;
    assert_eq!(res.status(), 403);
}

/// One import batch is decided machine by machine in memory and written with a few statements:
/// the outcome must be what writing the machines one by one gave. A machine matches the
/// endpoint an earlier machine of the same batch created, MAC goes before name, a name that
/// several endpoints share is ambiguous, and new endpoints never reuse a deleted one's id.
#[tokio::test]
async fn one_import_batch_matches_as_if_its_machines_were_written_one_by_one() {
    use endpoint_analytics::db::schema::{endpoint_sources, risk_factors};
    use endpoint_analytics::defender::import::{ImportCounts, import_batch};
    use endpoint_analytics::defender::machine::{MachineRecord, TopVulnerability};
    use endpoint_analytics::domain::risk::RiskLevel;

    let app = spawn_app().await;
    let token = app.token(Role::Operator).await;
    let seen = "2026-11-01T10:00:00Z";
    let observations = json!([
        {"mac": "02:00:00:00:00:01", "ip": "10.1.0.1", "hostname": "shared", "seen_at": seen},
        {"mac": "02:00:00:00:00:02", "ip": "10.1.0.2", "hostname": "shared", "seen_at": seen},
        {"mac": "02:00:00:00:00:03", "ip": "10.1.0.3", "hostname": "deleted", "seen_at": seen},
    ]);
    assert_eq!(app.ingest(&token, &observations).await.status(), 200);
    let deleted: i64 = app
        .db
        .run(|c| {
            let id: i64 = endpoints::table.filter(endpoints::hostname.eq("deleted")).select(endpoints::id).first(c)?;
            diesel::delete(endpoints::table.find(id)).execute(c)?;
            Ok(id)
        })
        .await
        .unwrap();

    let at = 1_793_000_000; // 2026-10-26
    let machine = |id: &str, name: &str, macs: &[&str], ip: &str| MachineRecord {
        machine_id: id.into(),
        computer_dns_name: name.into(),
        os_platform: "Windows11".into(),
        os_version: "23H2".into(),
        last_ip: ip.into(),
        macs: macs.iter().map(|m| normalize_mac(m).unwrap()).collect(),
        first_seen: at,
        last_seen: at,
        vuln_count: 1,
        vuln_rows: r#"[["contoso","agent","1.0",["CVE-2026-0001"]]]"#.into(),
        top_vuln: Some(TopVulnerability {
            cve: "CVE-2026-0001".into(),
            level: RiskLevel::High,
            description: "<b>inert</b>".into(),
        }),
        ..Default::default()
    };
    let records = vec![
        machine("m-new", "laptop-9.corp.example", &[], "10.9.9.9"),
        machine("m-again", "laptop-9.corp.example", &[], "10.9.9.10"),
        machine("m-mac", "renamed", &["02:00:00:00:00:02"], "10.1.0.2"),
        machine("m-shared", "shared", &[], "10.7.7.7"),
    ];
    let import = |records: Vec<MachineRecord>| {
        let modeler = app.state.modeler.clone();
        app.db.run(move |c| {
            let mut profile_ids = HashMap::new();
            Ok(c.write_transaction(|c| import_batch(c, &modeler, &records, &mut profile_ids))?)
        })
    };
    let counts = import(records.clone()).await.unwrap();
    assert_eq!(counts, ImportCounts { created: 2, updated: 0, merged: 2, unchanged: 0 });

    type Linked = (String, Option<i64>, String);
    let linked: HashMap<String, (Option<i64>, String)> = app
        .db
        .run(|c| {
            let rows: Vec<Linked> = defender_machines::table
                .select((defender_machines::machine_id, defender_machines::endpoint_id, defender_machines::match_note))
                .load(c)?;
            Ok(rows.into_iter().map(|(m, e, n)| (m, (e, n))).collect())
        })
        .await
        .unwrap();
    let endpoint_of = |m: &str| linked[m].0.unwrap();
    assert_eq!(endpoint_of("m-new"), endpoint_of("m-again"), "the second machine matched the first's new endpoint");
    let by_mac: i64 = app
        .db
        .run(|c| Ok(endpoints::table.filter(endpoints::ip.eq("10.1.0.2")).select(endpoints::id).first(c)?))
        .await
        .unwrap();
    assert_eq!(endpoint_of("m-mac"), by_mac, "MAC before name");
    assert!(linked["m-shared"].1.starts_with("ambiguous: 2 endpoints"), "{:?}", linked["m-shared"]);
    for created in [endpoint_of("m-new"), endpoint_of("m-shared")] {
        assert!(created > deleted, "new endpoint {created} after the deleted {deleted}");
    }
    assert_ne!(endpoint_of("m-new"), endpoint_of("m-shared"));

    // Everything of an imported machine is there: profile, risk, source, history.
    let id = endpoint_of("m-new");
    type Written = ((String, i16, i16, String, String), Vec<String>, i64, Vec<String>);
    let (endpoint, factors, sources, history): Written = app
        .db
        .run(move |c| {
            Ok((
                endpoints::table
                    .find(id)
                    .select((
                        endpoints::profile,
                        endpoints::match_score,
                        endpoints::risk_level,
                        endpoints::sources,
                        endpoints::ip,
                    ))
                    .first(c)?,
                risk_factors::table
                    .filter(risk_factors::endpoint_id.eq(id))
                    .select(risk_factors::source)
                    .order(risk_factors::source)
                    .load(c)?,
                endpoint_sources::table.filter(endpoint_sources::endpoint_id.eq(id)).count().get_result(c)?,
                endpoint_history::table
                    .filter(endpoint_history::endpoint_id.eq(id))
                    .select(endpoint_history::field)
                    .order(endpoint_history::id)
                    .load(c)?,
            ))
        })
        .await
        .unwrap();
    assert_eq!(
        endpoint,
        ("Windows11_23H2".into(), 5, RiskLevel::High.to_i16(), "defender".into(), "10.9.9.10".into()),
        "the later machine's address"
    );
    assert_eq!(factors, ["Microsoft Defender Exposure"]);
    assert_eq!(sources, 1);
    assert_eq!(history, ["os", "ip", "profile"], "modeled after the batch's machines");

    // The same batch again changes nothing.
    let counts = import(records).await.unwrap();
    assert_eq!(counts, ImportCounts { created: 0, updated: 0, merged: 0, unchanged: 4 }, "{counts:?}");
}

/// The machines' rows are written by PostgreSQL's COPY there and by multi-row INSERTs on
/// SQLite: either way, what is read back is what was given, byte for byte, across the
/// statements' chunks (1,000 rows on SQLite), with and without an endpoint, hostile text and all;
/// a second write replaces the first; and a batch that cannot be stored (the same machine twice)
/// fails whole, leaving what was stored before.
#[tokio::test]
async fn machines_are_stored_exactly_as_given_and_a_failed_batch_leaves_the_last_one() {
    use endpoint_analytics::db::models::defender_machines::{self as machines, DefenderMachine};
    let app = spawn_app().await;
    let token = app.token(Role::Admin).await;
    assert_eq!(app.ingest(&token, &json!([{"hostname": "linked-1", "ip": "10.9.0.1"}])).await.status(), 200);
    let linked: i64 = app
        .db
        .run(|c| Ok(endpoints::table.filter(endpoints::hostname.eq("linked-1")).select(endpoints::id).first(c)?))
        .await
        .unwrap();
    let hostile =
        ["<script>alert(1)</script>", "tab\there", "line\nbreak\r\n", "back\\slash \\N", "", "\"quoted\" 'x'"];
    let rows = |version: i64| -> Vec<DefenderMachine> {
        (0..1_201)
            .map(|i| DefenderMachine {
                machine_id: format!("{i:040x}"),
                endpoint_id: (i % 3 == 0).then_some(linked),
                computer_dns_name: format!("{}-{i}-{version}", hostile[i % hostile.len()]),
                os_platform: hostile[(i + 1) % hostile.len()].into(),
                rbac_group: "ünïcødé ✓".into(),
                first_seen: -1,
                last_seen: i64::MAX - i as i64,
                vuln_count: i as i32,
                top_vuln_severity: (i % 5) as i16,
                isolated: i % 2 == 0,
                stale: i % 7 == 0,
                top_alert_title: if i == 600 { "x".repeat(100_000) } else { String::new() },
                vuln_rows: format!("v{version}"),
                updated_at: version,
                ..Default::default()
            })
            .collect()
    };
    let read = |app: &TestApp| {
        let db = app.db.clone();
        async move {
            db.run(|c| {
                Ok(defender_machines::table
                    .order(defender_machines::machine_id)
                    .select(DefenderMachine::as_select())
                    .load::<DefenderMachine>(c)?)
            })
            .await
            .unwrap()
        }
    };
    for version in [1, 2] {
        let written = rows(version);
        let given = written.clone();
        app.db.run(move |c| Ok(c.write_transaction(|c| machines::replace_many(c, &given))?)).await.unwrap();
        assert!(read(&app).await == written, "version {version} must be read back exactly as written");
    }

    // The same machine twice in one batch: nothing of the batch is stored.
    let mut twice = rows(3);
    twice.push(twice[5].clone());
    let failed = app.db.run(move |c| Ok(c.write_transaction(|c| machines::replace_many(c, &twice))?)).await;
    assert!(failed.is_err(), "a batch with one machine twice must fail");
    assert!(read(&app).await == rows(2), "a failed batch must leave the rows stored before");
}
