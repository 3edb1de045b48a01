//! A bounded load test on loopback against the real binary: many analysts reading pages at
//! once, while observations are imported, Defender syncs run and an operator runs machine
//! actions. It asserts zero errors, no unbounded memory growth of the process, and that every
//! action was recorded and sent once. About 20 s by default; `EA_LONG_TESTS=1` runs three
//! minutes (`EA_LOAD_SECS=N` for another length).

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use defender_sim::SimConfig;
use diesel::prelude::*;
use endpoint_analytics::auth::{Role, hash_api_token, new_api_token};
use endpoint_analytics::db::models::api_tokens;
use endpoint_analytics::db::schema::{defender_machines as dm, machine_actions};
use serde_json::{Value, json};
use tokio::sync::Mutex;

use crate::helpers::*;
use crate::process::{Proc, long_tests, open_db};

const ANALYSTS: usize = 8;

fn rss_kib(pid: u32) -> u64 {
    status_kib(pid, "VmRSS:")
}

/// A size line of `/proc/PID/status` (`VmRSS:`, or `VmHWM:` for the peak), in KiB.
pub fn status_kib(pid: u32, field: &str) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    status
        .lines()
        .find_map(|l| l.strip_prefix(field))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap_or(0)
}

#[derive(Default)]
struct Tally {
    requests: AtomicU64,
    errors: Mutex<Vec<String>>,
    latencies_ms: Mutex<Vec<u64>>,
}

impl Tally {
    async fn record(&self, what: &str, started: Instant, ok: bool, detail: impl FnOnce() -> String) {
        self.requests.fetch_add(1, Ordering::Relaxed);
        self.latencies_ms.lock().await.push(started.elapsed().as_millis() as u64);
        if !ok {
            self.errors.lock().await.push(format!("{what}: {}", detail()));
        }
    }
}

#[tokio::test]
async fn many_analysts_an_import_and_actions_at_once_without_errors_or_growth() {
    let secs: u64 =
        std::env::var("EA_LOAD_SECS").ok().and_then(|v| v.parse().ok()).unwrap_or(if long_tests() { 180 } else { 20 });
    let dir = tempfile::tempdir().unwrap();
    let database = TestDatabase::new(dir.path());
    let sim = defender_sim::start(SimConfig {
        machines: 600,
        action_pending_ms: 300,
        action_inprogress_ms: 300,
        ..SimConfig::default()
    })
    .await
    .unwrap();
    let p = Proc::start_on(dir.path(), &database.url).await;
    let db = open_db(&database.url).await;
    let token = new_api_token();
    let hash = hash_api_token(&token);
    db.run(move |c| {
        for i in 0..ANALYSTS {
            endpoint_analytics::accounts::create_user(c, &format!("analyst{i}"), PASSWORD, Role::Analyst)
                .map_err(|e| anyhow::anyhow!("{e}"))?;
        }
        endpoint_analytics::accounts::create_user(c, "otto", PASSWORD, Role::Operator)
            .map_err(|e| anyhow::anyhow!("{e}"))?;
        api_tokens::create(c, "load", &hash, Role::Admin, api_tokens::Creator::CommandLine, None)?;
        Ok(())
    })
    .await
    .unwrap();
    let client = reqwest::Client::new();
    let settings = json!({
        "tenant_id": sim.tenant_id, "client_id": sim.client_id, "client_secret": sim.client_secret,
        "login_base_url": sim.base_url, "api_base_url": sim.base_url, "enabled": true,
    });
    let res =
        client.put(p.url("/api/v1/integrations/defender")).bearer_auth(&token).json(&settings).send().await.unwrap();
    assert_eq!(res.status(), 200);
    let status_url = p.url("/api/v1/integrations/defender/status");
    for _ in 0..600 {
        let s: Value = client.get(&status_url).bearer_auth(&token).send().await.unwrap().json().await.unwrap();
        if s["running"].is_null() && !s["last_run"].is_null() {
            assert_eq!(s["last_run"]["status"], "succeeded", "{s}");
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    // Machines an operator can scan, one scan each.
    let targets: Vec<i64> = db
        .run(|c| {
            Ok(dm::table
                .filter(dm::os_platform.eq_any(["Windows10", "Windows11"]))
                .filter(dm::onboarding_status.eq("Onboarded"))
                .filter(dm::stale.eq(false))
                .filter(dm::endpoint_id.is_not_null())
                .select(dm::endpoint_id)
                .load::<Option<i64>>(c)?
                .into_iter()
                .flatten()
                .collect())
        })
        .await
        .unwrap();
    assert!(targets.len() >= 20, "{} machines to scan", targets.len());
    let pages: Vec<String> = {
        let mut v: Vec<String> = [
            "/",
            "/endpoints",
            "/endpoints?q=10.",
            "/endpoints?sort=risk&dir=desc",
            "/config/profiles",
            "/config/integrations",
        ]
        .iter()
        .map(|s| s.to_string())
        .collect();
        for id in targets.iter().take(10) {
            v.push(format!("/endpoints/{id}"));
            v.push(format!("/endpoints/{id}/tabs/risk"));
        }
        v
    };

    let stop = Arc::new(AtomicBool::new(false));
    let tally = Arc::new(Tally::default());
    let p = Arc::new(p);
    let mut tasks = Vec::new();
    for i in 0..ANALYSTS {
        let (p, stop, tally, pages) = (p.clone(), stop.clone(), tally.clone(), pages.clone());
        tasks.push(tokio::spawn(async move {
            let c = p.sign_in(&format!("analyst{i}")).await;
            let mut n = i;
            while !stop.load(Ordering::Relaxed) {
                let page = &pages[n % pages.len()];
                n += 7;
                let started = Instant::now();
                let res = c.get(p.url(page)).send().await;
                let status = res.as_ref().map(|r| r.status().as_u16()).unwrap_or(0);
                let body = match res {
                    Ok(r) => r.bytes().await.map(|b| b.len()).unwrap_or(0),
                    Err(_) => 0,
                };
                tally.record(page, started, status == 200 && body > 0, || format!("status {status}")).await;
            }
        }));
    }
    // The import: observation batches and Defender syncs, over and over.
    {
        let (p, stop, tally, token) = (p.clone(), stop.clone(), tally.clone(), token.clone());
        let obs = sim.tenant().network_observations();
        tasks.push(tokio::spawn(async move {
            let c = reqwest::Client::new();
            let mut round = 0usize;
            while !stop.load(Ordering::Relaxed) {
                let batch = serde_json::to_value(
                    obs.iter().skip((round * 100) % obs.len().max(1)).take(100).collect::<Vec<_>>(),
                )
                .unwrap();
                let started = Instant::now();
                let res = c.post(p.url("/api/v1/observations")).bearer_auth(&token).json(&batch).send().await;
                let status = res.map(|r| r.status().as_u16()).unwrap_or(0);
                tally.record("ingest", started, status == 200, || format!("status {status}")).await;
                if round.is_multiple_of(5) {
                    let started = Instant::now();
                    let res = c.post(p.url("/api/v1/integrations/defender/sync")).bearer_auth(&token).send().await;
                    let status = res.map(|r| r.status().as_u16()).unwrap_or(0);
                    // 409: a sync is already running, as it should be while one runs.
                    tally.record("sync", started, status == 202 || status == 409, || format!("status {status}")).await;
                }
                round += 1;
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
        }));
    }
    // Actions: the operator scans one machine after another.
    let clicks = Arc::new(AtomicU64::new(0));
    {
        let (p, stop, tally, clicks, targets) =
            (p.clone(), stop.clone(), tally.clone(), clicks.clone(), targets.clone());
        tasks.push(tokio::spawn(async move {
            let c = p.sign_in("otto").await;
            for endpoint in targets {
                if stop.load(Ordering::Relaxed) {
                    break;
                }
                let html = c.get(p.url(&format!("/endpoints/{endpoint}"))).send().await.unwrap().text().await.unwrap();
                // The parsed page is not Send: read what is needed, then drop it.
                let (key, csrf) = {
                    let page = doc(&html);
                    let key = attr(&page, "form[data-action=scan] input[name=key]", "value");
                    let csrf = attr(&page, "body", "hx-headers").and_then(|h| {
                        serde_json::from_str::<Value>(&h).ok()?["X-CSRF-Token"].as_str().map(str::to_owned)
                    });
                    (key, csrf.unwrap())
                };
                let Some(key) = key else { continue };
                let started = Instant::now();
                let res = c
                    .post(p.url(&format!("/endpoints/{endpoint}/actions")))
                    .header("x-csrf-token", csrf)
                    .header("hx-request", "true")
                    .form(&[("action", "scan"), ("scope", "Quick"), ("comment", "load test"), ("key", &key)])
                    .send()
                    .await;
                let status = res.map(|r| r.status().as_u16()).unwrap_or(0);
                clicks.fetch_add(1, Ordering::SeqCst);
                tally.record("action", started, status == 200, || format!("status {status}")).await;
                tokio::time::sleep(Duration::from_millis(500)).await;
            }
        }));
    }

    // Memory, sampled while the load runs.
    let started = Instant::now();
    let mut samples: Vec<(f64, u64)> = Vec::new();
    while started.elapsed() < Duration::from_secs(secs) {
        samples.push((started.elapsed().as_secs_f64(), rss_kib(p.pid())));
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    stop.store(true, Ordering::Relaxed);
    for t in tasks {
        t.await.unwrap();
    }

    let errors = tally.errors.lock().await.clone();
    let mut lat = tally.latencies_ms.lock().await.clone();
    lat.sort_unstable();
    let pct =
        |q: f64| lat.get(((lat.len() as f64 * q) as usize).min(lat.len().saturating_sub(1))).copied().unwrap_or(0);
    let requests = tally.requests.load(Ordering::Relaxed);
    let quarter = samples.len() / 4;
    let early = samples[quarter..2 * quarter].iter().map(|s| s.1).max().unwrap_or(0);
    let late = samples[3 * quarter..].iter().map(|s| s.1).max().unwrap_or(0);
    eprintln!(
        "load: {secs} s, {requests} requests ({:.0}/s), p50 {} ms, p95 {} ms, p99 {} ms; RSS {} → {} MiB (max {} MiB); {} actions",
        requests as f64 / secs as f64,
        pct(0.5),
        pct(0.95),
        pct(0.99),
        samples.first().map(|s| s.1 / 1024).unwrap_or(0),
        samples.last().map(|s| s.1 / 1024).unwrap_or(0),
        samples.iter().map(|s| s.1).max().unwrap_or(0) / 1024,
        clicks.load(Ordering::SeqCst)
    );
    assert!(errors.is_empty(), "{} errors, e.g. {:?}", errors.len(), &errors[..errors.len().min(10)]);
    assert!(requests > 100, "only {requests} requests");
    assert!(early > 0 && late > 0, "RSS was measured");
    assert!(
        late <= early + early / 2 + 32 * 1024,
        "memory grows: {} MiB in the second quarter, {} MiB in the last",
        early / 1024,
        late / 1024
    );
    // Every click recorded, and sent once.
    let clicked = clicks.load(Ordering::SeqCst);
    assert!(clicked >= 5, "only {clicked} actions");
    // A click still on its way to Defender when the load stopped is sent within moments: wait
    // for it (up to 10 s) rather than a fixed time, which a busy machine overran.
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    let (recorded, sent) = loop {
        let (recorded, sent): (i64, i64) = db
            .run(|c| {
                Ok((
                    machine_actions::table.count().get_result(c)?,
                    machine_actions::table.filter(machine_actions::defender_action_id.ne("")).count().get_result(c)?,
                ))
            })
            .await
            .unwrap();
        if sent as u64 >= clicked || std::time::Instant::now() > deadline {
            break (recorded, sent);
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    assert_eq!(recorded as u64, clicked, "every action was recorded");
    assert_eq!(sent as u64, clicked, "every action was sent");
    assert_eq!(sim.counters().api("RunAntiVirusScan").calls, clicked, "and reached Defender once");
}
