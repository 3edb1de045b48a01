//! `/metrics`: what a Prometheus server scrapes after a Defender sync against the simulator, and
//! who may scrape at all.

use std::collections::HashMap;
use std::time::Duration;

use defender_sim::{FaultEffect, FaultRule, Faults, SimConfig};
use endpoint_analytics::auth::Role;

use crate::helpers::*;

/// The samples of an OpenMetrics text: `name{labels}` → value.
pub(crate) fn samples(text: &str) -> HashMap<String, f64> {
    assert!(text.ends_with("# EOF\n"), "an OpenMetrics exposition ends with # EOF");
    text.lines()
        .filter(|l| !l.starts_with('#') && !l.is_empty())
        .map(|l| {
            let (key, value) = l.rsplit_once(' ').unwrap_or_else(|| panic!("not a sample line: {l}"));
            (key.to_owned(), value.parse::<f64>().unwrap_or_else(|_| panic!("not a number in {l}")))
        })
        .collect()
}

/// The sum of the samples of `name` whose labels include every one of `labels`.
pub(crate) fn sum(samples: &HashMap<String, f64>, name: &str, labels: &[&str]) -> f64 {
    samples
        .iter()
        .filter(|(k, _)| {
            k.split_once('{').map_or(k.as_str(), |(n, _)| n) == name && labels.iter().all(|l| k.contains(l))
        })
        .map(|(_, v)| v)
        .sum()
}

async fn scrape(app: &TestApp, token: Option<&str>) -> reqwest::Response {
    let mut req = reqwest::Client::new().get(app.url("/metrics"));
    if let Some(t) = token {
        req = req.bearer_auth(t);
    }
    req.send().await.unwrap()
}

#[tokio::test]
async fn a_scrape_after_a_sync_finds_the_sync_the_api_calls_the_429s_and_the_inventory() {
    let app = spawn_app().await;
    let sim =
        defender_sim::start(SimConfig { machines: 40, ..SimConfig::default() }).await.expect("the simulator starts");
    // One 429 on the alerts listing: the client waits a second and goes on.
    sim.set_faults(Faults {
        rules: vec![FaultRule {
            api: Some("ListAlerts".into()),
            nth: None,
            fraction: None,
            times: Some(1),
            effect: FaultEffect::Throttle { retry_after: Some(1) },
        }],
        ..Faults::default()
    });
    let admin = app.token(Role::Admin).await;
    app.enable_defender(&sim).await;
    let run = app.wait_for_sync(Duration::from_secs(60)).await;
    assert_eq!(run.status, "succeeded", "{}", run.error);
    let detail = reqwest::Client::new().get(app.url("/api/v1/endpoints/1")).bearer_auth(&admin).send().await.unwrap();
    assert_eq!(detail.status(), 200);

    let res = scrape(&app, Some(&admin)).await;
    assert_eq!(res.status(), 200);
    let content_type = res.headers()["content-type"].to_str().unwrap().to_owned();
    assert!(content_type.starts_with("application/openmetrics-text"), "{content_type}");
    assert!(res.headers().contains_key("content-security-policy"), "security headers on /metrics too");
    let text = res.text().await.unwrap();
    assert!(!text.contains(&sim.client_secret) && !text.contains(&admin), "no secret or token in the metrics");
    let s = samples(&text);

    // The sync, once, successful, with its duration.
    assert_eq!(sum(&s, "ea_defender_sync_runs_total", &[r#"outcome="succeeded""#]), 1.0, "{text}");
    assert_eq!(sum(&s, "ea_defender_sync_runs_total", &[r#"outcome="failed""#]), 0.0);
    assert_eq!(sum(&s, "ea_defender_sync_duration_seconds_count", &[r#"outcome="succeeded""#]), 1.0);
    assert!(sum(&s, "ea_defender_sync_duration_seconds_sum", &[]) > 0.0);

    // Every call the simulator received is counted, by API and status.
    let counters = sim.counters();
    for api in ["Token", "ListMachines", "ListVulnerabilities", "ListAlerts"] {
        let received = counters.api(api).calls as f64;
        assert!(received >= 1.0, "the sync called {api}");
        let label = format!(r#"api="{api}""#);
        assert_eq!(sum(&s, "ea_defender_api_calls_total", &[&label]), received, "{api} calls\n{text}");
    }
    assert!(sum(&s, "ea_defender_api_calls_total", &[r#"api="ListMachines""#, r#"status="200""#]) >= 1.0);
    assert_eq!(sum(&s, "ea_defender_api_calls_total", &[r#"api="ListAlerts""#, r#"status="429""#]), 1.0);
    assert_eq!(sum(&s, "ea_defender_api_throttled_total", &[r#"api="ListAlerts""#]), 1.0);
    assert_eq!(sum(&s, "ea_defender_api_throttled_total", &[]), 1.0);

    // The inventory by risk, every level present, adding up to the endpoints the API lists.
    let total = app.api_get(&admin, "/api/v1/endpoints?limit=1").await["total"].as_f64().unwrap();
    assert!(total > 0.0);
    for level in ["None", "Low", "Medium", "High", "Critical"] {
        assert!(s.contains_key(&format!(r#"ea_endpoints{{risk="{level}"}}"#)), "risk {level}\n{text}");
    }
    assert_eq!(sum(&s, "ea_endpoints", &[]), total);

    // Requests by route pattern (not by path), with latencies.
    let route = r#"route="/api/v1/endpoints/{id}""#;
    assert_eq!(sum(&s, "ea_http_requests_total", &[route, r#"method="GET""#, r#"status="200""#]), 1.0, "{text}");
    assert_eq!(sum(&s, "ea_http_request_duration_seconds_count", &[route]), 1.0);
    assert!(!text.contains("/api/v1/endpoints/1\""), "raw paths are not labels");
}

#[tokio::test]
async fn actions_are_counted_by_type_and_status() {
    let (app, _sim, admin) = crate::actions::synced().await;
    let (endpoint, _) = crate::actions::endpoint_of(&app, &["Windows10", "Windows11"], true).await;
    let res = reqwest::Client::new()
        .post(app.url(&format!("/api/v1/endpoints/{endpoint}/actions")))
        .bearer_auth(&admin)
        .json(&serde_json::json!({"action": "scan", "scope": "Quick", "comment": "metrics test"}))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 202, "{}", res.text().await.unwrap());
    let text = scrape(&app, Some(&admin)).await.text().await.unwrap();
    let s = samples(&text);
    assert_eq!(sum(&s, "ea_machine_actions", &[r#"action_type="RunAntiVirusScan""#]), 1.0, "{text}");
    assert_eq!(sum(&s, "ea_machine_actions", &[r#"action_type="Isolate""#]), 0.0);
    assert_eq!(sum(&s, "ea_defender_api_calls_total", &[r#"api="RunAntiVirusScan""#]), 1.0, "{text}");
}

#[tokio::test]
async fn only_admin_tokens_and_allowed_addresses_may_scrape() {
    let app = spawn_app().await;
    let res = scrape(&app, None).await;
    assert_eq!(res.status(), 401, "no token: 401, not the login page");
    let body = res.text().await.unwrap();
    assert!(body.contains("\"error\"") && !body.contains("ea_"), "{body}");
    for role in [Role::Analyst, Role::Operator] {
        let token = app.token(role).await;
        assert_eq!(scrape(&app, Some(&token)).await.status(), 403, "{role:?}");
    }
    assert_eq!(scrape(&app, Some("not-a-token")).await.status(), 401);
    let admin = app.token(Role::Admin).await;
    assert_eq!(scrape(&app, Some(&admin)).await.status(), 200);

    // Allowed by address: the test's client comes from 127.0.0.1.
    let allowed = spawn_app_with(|s| s.metrics_allow = vec!["127.0.0.0/8".into()]).await;
    let res = scrape(&allowed, None).await;
    assert_eq!(res.status(), 200);
    assert!(res.text().await.unwrap().contains("ea_endpoints{risk=\"None\"} 0"));
    let elsewhere = spawn_app_with(|s| s.metrics_allow = vec!["10.0.0.0/8".into(), "::1".into()]).await;
    assert_eq!(scrape(&elsewhere, None).await.status(), 401);
}
