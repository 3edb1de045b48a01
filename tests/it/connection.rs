//! Test Connection over HTTP against the simulator: permissions shown as required (used by the
//! sync or the actions) or optional (used by no feature), so that a tenant granting exactly what
//! is used sees nothing missing; and the audience the token actually carried, flagged when it is
//! not the resource requested (`src/defender/client/connection.rs`, `docs/defender-client.md`).

use defender_sim::{Faults, RunningSimulator, SimConfig};
use endpoint_analytics::auth::Role;
use scraper::Html;
use serde_json::{Value, json};

use crate::helpers::*;

/// The roles the product uses: the sync's reads (the machine-actions listing needs
/// Machine.ReadWrite.All, which also reads machines) and the machine actions.
const USED: &[&str] = &[
    "Machine.ReadWrite.All",
    "Alert.Read.All",
    "Vulnerability.Read.All",
    "Machine.Isolate",
    "Machine.RestrictExecution",
    "Machine.CollectForensics",
    "Machine.Scan",
];

async fn configured() -> (TestApp, RunningSimulator) {
    let app = spawn_app().await;
    let sim = defender_sim::start(SimConfig { machines: 20, ..SimConfig::default() }).await.unwrap();
    let admin = app.token(Role::Admin).await;
    let body = json!({
        "tenant_id": sim.tenant_id, "client_id": sim.client_id, "client_secret": sim.client_secret,
        "cloud": "commercial", "login_base_url": sim.base_url, "api_base_url": sim.base_url, "enabled": false,
    });
    let res = reqwest::Client::new()
        .put(app.url("/api/v1/integrations/defender"))
        .bearer_auth(&admin)
        .json(&body)
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 200);
    (app, sim)
}

/// `POST /api/v1/integrations/defender/test` as an operator.
async fn api_test(app: &TestApp) -> Value {
    let operator = app.token(Role::Operator).await;
    let res = reqwest::Client::new()
        .post(app.url("/api/v1/integrations/defender/test"))
        .bearer_auth(operator)
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 200);
    res.json().await.unwrap()
}

/// The Test Connection result on the integration page, as an operator (who tests the saved settings).
async fn page_test(app: &TestApp, operator: &reqwest::Client) -> Html {
    let csrf = app.csrf(operator, "/config/integrations/defender").await;
    let res = operator
        .post(app.url("/config/integrations/defender/test"))
        .header("x-csrf-token", csrf)
        .form(&[("tenant_id", "")])
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 200);
    doc(&res.text().await.unwrap())
}

fn names(v: &Value) -> Vec<&str> {
    v.as_array().unwrap().iter().map(|m| m.as_str().unwrap()).collect()
}

#[tokio::test]
async fn a_tenant_granting_exactly_what_is_used_sees_nothing_missing() {
    let (app, sim) = configured().await;
    let operator = app.login_as("olga", Role::Operator).await;
    sim.set_client_roles(&sim.client_id, USED);
    let r = api_test(&app).await;
    assert_eq!(r["ok"], true, "{r}");
    assert!(names(&r["missing"]).is_empty(), "{r}");
    assert_eq!(names(&r["optional_missing"]), vec!["AdvancedQuery.Read.All", "Software.Read.All"]);
    let perms = r["permissions"].as_array().unwrap();
    assert_eq!(perms.len(), 10, "every permission is still listed (the field names are unchanged)");
    for p in perms {
        let optional = ["AdvancedQuery.Read.All", "Software.Read.All"].contains(&p["permission"].as_str().unwrap());
        assert_eq!(p["required"], !optional, "{p}");
        assert_eq!(p["granted"], !optional, "{p}");
        assert!(p["used_for"].is_string(), "{p}");
    }

    let page = page_test(&app, &operator).await;
    assert_eq!(attr(&page, "#test-report", "data-all-good").as_deref(), Some("true"));
    assert!(select_all(&page, "#permissions td.missing").is_empty(), "nothing is missing");
    let optional = select_all(&page, "#permissions td.optional");
    assert_eq!(optional.len(), 2, "{optional:?}");
    assert!(optional.iter().all(|t| t.starts_with("not granted (optional: ")), "{optional:?}");
    assert_eq!(
        select_all(&page, "#permissions tr[data-required=false] td:first-child"),
        vec!["AdvancedQuery.Read.All", "Software.Read.All"]
    );

    // Without a permission the product uses, the test says so.
    sim.set_client_roles(&sim.client_id, &USED[..USED.len() - 1]);
    let r = api_test(&app).await;
    assert_eq!((r["ok"].clone(), names(&r["missing"])), (json!(false), vec!["Machine.Scan"]), "{r}");
    let page = page_test(&app, &operator).await;
    assert_eq!(attr(&page, "#test-report", "data-all-good").as_deref(), Some("false"));
    assert_eq!(select_all(&page, "#permissions tr[data-permission='Machine.Scan'] td.missing").len(), 1);
}

#[tokio::test]
async fn test_connection_shows_the_audience_the_token_carried() {
    let (app, sim) = configured().await;
    let operator = app.login_as("olga", Role::Operator).await;
    let r = api_test(&app).await;
    assert_eq!(r["token_audience"], "https://api.securitycenter.microsoft.com", "{r}");
    assert_eq!(r["requested_audience"], "https://api.securitycenter.microsoft.com");
    assert_eq!(r["api_host"], sim.base_url.trim_end_matches('/'));
    assert_eq!(r["audience_matches"], true);
    let page = page_test(&app, &operator).await;
    let shown = select_all(&page, "#token-audience").join(" ");
    assert!(shown.starts_with("Token audience: https://api.securitycenter.microsoft.com"), "{shown}");
    assert!(select_all(&page, "#audience-differs").is_empty(), "{shown}");

    // A directory that issues the token for another resource (here the GCC High API's): the
    // audience is shown and flagged, and Defender's refusal of the token is explained.
    let gov = "https://api-gov.securitycenter.microsoft.us";
    sim.set_faults(Faults { access_token_audience: Some(gov.into()), ..Faults::default() });
    let r = api_test(&app).await;
    assert_eq!((r["token_audience"].as_str(), r["audience_matches"].clone()), (Some(gov), json!(false)), "{r}");
    assert_eq!(r["api_call"]["ok"], false, "{r}");
    let page = page_test(&app, &operator).await;
    let shown = select_all(&page, "#token-audience").join(" ");
    assert!(shown.starts_with(&format!("Token audience: {gov}")), "{shown}");
    let flag = select_all(&page, "#audience-differs").join(" ");
    assert!(flag.contains("differs from the resource requested (https://api.securitycenter.microsoft.com)"), "{flag}");
}
