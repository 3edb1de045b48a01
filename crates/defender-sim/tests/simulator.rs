//! The Defender/Entra simulator over real HTTP: token endpoint, every API's JSON shape against
//! defender-api.md, paging, filters, the action lifecycle, auth failures, rate limits and each
//! fault knob. Tenants are small so the whole file stays fast.
//!
//! Long because it checks every documented behaviour of the simulator, one test per behaviour.

use std::collections::HashSet;
use std::io::Read;
use std::time::{Duration, Instant};

use base64::Engine;
use defender_sim::{
    self, ActionOutcome, ClientSpec, FaultEffect, FaultRule, Faults, IsolationState, RunningSimulator, SimConfig,
    Tenant,
};
use reqwest::StatusCode;
use serde_json::{Value, json};

const MDE_SCOPE: &str = "https://api.securitycenter.microsoft.com/.default";
const ODATA_CT: &str = "application/json; odata.metadata=minimal; odata.streaming=true; charset=utf-8";

fn config(machines: usize) -> SimConfig {
    SimConfig { machines, seed: 7, action_pending_ms: 150, action_inprogress_ms: 150, ..Default::default() }
}

async fn start(machines: usize) -> RunningSimulator {
    defender_sim::start(config(machines)).await.expect("simulator starts")
}

fn http() -> reqwest::Client {
    reqwest::Client::builder().timeout(Duration::from_secs(30)).build().unwrap()
}

async fn token_for(sim: &RunningSimulator, client: &str, secret: &str, scope: &str) -> reqwest::Response {
    http()
        .post(sim.token_url())
        .form(&[
            ("client_id", client),
            ("client_secret", secret),
            ("scope", scope),
            ("grant_type", "client_credentials"),
        ])
        .send()
        .await
        .unwrap()
}

async fn token(sim: &RunningSimulator) -> String {
    let r = token_for(sim, &sim.client_id, &sim.client_secret, MDE_SCOPE).await;
    assert_eq!(r.status(), 200);
    r.json::<Value>().await.unwrap()["access_token"].as_str().unwrap().to_string()
}

fn claims(token: &str) -> Value {
    let payload = token.split('.').nth(1).unwrap();
    let bytes = base64::engine::general_purpose::URL_SAFE_NO_PAD.decode(payload).unwrap();
    serde_json::from_slice(&bytes).unwrap()
}

struct Resp {
    status: StatusCode,
    headers: reqwest::header::HeaderMap,
    body: Value,
    text: String,
}

async fn call(method: reqwest::Method, url: &str, tok: Option<&str>, body: Option<Value>) -> Resp {
    let mut rb = http().request(method, url);
    if let Some(t) = tok {
        rb = rb.bearer_auth(t);
    }
    if let Some(b) = body {
        rb = rb.json(&b);
    }
    let r = rb.send().await.unwrap();
    let status = r.status();
    let headers = r.headers().clone();
    let text = r.text().await.unwrap_or_default();
    let body = serde_json::from_str(&text).unwrap_or(Value::Null);
    Resp { status, headers, body, text }
}

async fn get(sim: &RunningSimulator, tok: &str, path: &str) -> Resp {
    call(reqwest::Method::GET, &format!("{}{path}", sim.base_url), Some(tok), None).await
}

async fn post(sim: &RunningSimulator, tok: &str, path: &str, body: Value) -> Resp {
    call(reqwest::Method::POST, &format!("{}{path}", sim.base_url), Some(tok), Some(body)).await
}

fn assert_error(r: &Resp, status: u16, code: &str) {
    assert_eq!(r.status.as_u16(), status, "{}", r.text);
    assert_eq!(r.body["error"]["code"], code, "{}", r.text);
    assert!(r.body["error"]["message"].is_string(), "{}", r.text);
    assert!(r.body["error"]["target"].is_string(), "{}", r.text);
}

fn is_guid(s: &str) -> bool {
    let p: Vec<&str> = s.split('-').collect();
    p.len() == 5
        && p.iter().zip([8, 4, 4, 4, 12]).all(|(x, n)| x.len() == n && x.chars().all(|c| c.is_ascii_hexdigit()))
}

fn is_iso(s: &Value) -> bool {
    s.as_str().is_some_and(|s| chrono::DateTime::parse_from_rfc3339(s).is_ok() && s.ends_with('Z') && s.contains('T'))
}

fn one_of(v: &Value, allowed: &[&str]) -> bool {
    v.as_str().is_some_and(|s| allowed.contains(&s))
}

/// Follow `@odata.nextLink` from `first` to the end, collecting `value` items.
async fn follow(tok: &str, first: &str) -> (Vec<Value>, usize) {
    let mut url = first.to_string();
    let mut out = Vec::new();
    let mut pages = 0;
    loop {
        let r = call(reqwest::Method::GET, &url, Some(tok), None).await;
        assert_eq!(r.status, 200, "{}", r.text);
        pages += 1;
        out.extend(r.body["value"].as_array().unwrap().iter().cloned());
        match r.body["@odata.nextLink"].as_str() {
            Some(n) => url = n.to_string(),
            None => break,
        }
        assert!(pages < 1000, "nextLink loop");
    }
    (out, pages)
}

/// Page with `$top/$skip` until a short page.
async fn top_skip(sim: &RunningSimulator, tok: &str, path: &str, top: usize) -> Vec<Value> {
    let sep = if path.contains('?') { '&' } else { '?' };
    let mut out = Vec::new();
    let mut skip = 0;
    loop {
        let r = get(sim, tok, &format!("{path}{sep}$top={top}&$skip={skip}")).await;
        assert_eq!(r.status, 200, "{}", r.text);
        assert!(r.body.get("@odata.nextLink").is_none(), "no nextLink when $top is given");
        let page = r.body["value"].as_array().unwrap().clone();
        let n = page.len();
        out.extend(page);
        if n < top {
            return out;
        }
        skip += top;
    }
}

fn ids(items: &[Value], key: &str) -> Vec<String> {
    items.iter().map(|v| v[key].as_str().unwrap().to_string()).collect()
}

fn assert_unique(v: &[String]) {
    let set: HashSet<&String> = v.iter().collect();
    assert_eq!(set.len(), v.len(), "duplicates in paging");
}

// ---------------------------------------------------------------------------------------------
// Token endpoint

#[tokio::test]
async fn token_v2_and_v1_success() {
    let sim = start(50).await;
    let r = token_for(&sim, &sim.client_id, &sim.client_secret, MDE_SCOPE).await;
    assert_eq!(r.status(), 200);
    let b: Value = r.json().await.unwrap();
    assert_eq!(b["token_type"], "Bearer");
    assert_eq!(b["expires_in"], 3599);
    assert!(b["ext_expires_in"].is_number());
    assert!(b.get("refresh_token").is_none());
    let c = claims(b["access_token"].as_str().unwrap());
    assert_eq!(c["aud"], "https://api.securitycenter.microsoft.com");
    assert_eq!(c["tid"], sim.tenant_id.as_str());
    assert_eq!(c["azp"], sim.client_id.as_str());
    assert_eq!(c["ver"], "2.0");
    assert_eq!(c["idtyp"], "app");
    assert!(c["iss"].as_str().unwrap().contains(&sim.tenant_id));
    assert!(is_guid(c["oid"].as_str().unwrap()) && c["sub"] == c["oid"]);
    for k in ["iat", "nbf", "exp"] {
        assert!(c[k].is_i64(), "{k}");
    }
    assert_eq!(c["exp"].as_i64().unwrap() - c["iat"].as_i64().unwrap(), 3599);
    let roles: Vec<&str> = c["roles"].as_array().unwrap().iter().map(|r| r.as_str().unwrap()).collect();
    assert_eq!(roles, defender_sim::ALL_ROLES);

    // Domain instead of GUID, HTTP Basic, and the windowsatpservice scope.
    let r = http()
        .post(format!("{}/{}/oauth2/v2.0/token", sim.base_url, sim.tenant_domain))
        .basic_auth(&sim.client_id, Some(&sim.client_secret))
        .form(&[
            ("scope", "https://securitycenter.onmicrosoft.com/windowsatpservice/.default"),
            ("grant_type", "client_credentials"),
        ])
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let b: Value = r.json().await.unwrap();
    assert_eq!(claims(b["access_token"].as_str().unwrap())["aud"], "https://api.securitycenter.microsoft.com");

    // v1 with resource: string expires_in / expires_on, appid, ver 1.0.
    let r = http()
        .post(format!("{}/{}/oauth2/token", sim.base_url, sim.tenant_id))
        .form(&[
            ("resource", "https://api.securitycenter.microsoft.com"),
            ("client_id", sim.client_id.as_str()),
            ("client_secret", sim.client_secret.as_str()),
            ("grant_type", "client_credentials"),
        ])
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let b: Value = r.json().await.unwrap();
    assert_eq!(b["expires_in"], "3599");
    assert!(b["expires_on"].as_str().unwrap().parse::<i64>().is_ok());
    assert!(b["not_before"].as_str().unwrap().parse::<i64>().is_ok());
    assert_eq!(b["resource"], "https://api.securitycenter.microsoft.com");
    let c = claims(b["access_token"].as_str().unwrap());
    assert_eq!((c["ver"].as_str(), c["appid"].as_str()), (Some("1.0"), Some(sim.client_id.as_str())));
    assert!(c["iss"].as_str().unwrap().starts_with("https://sts.windows.net/"));

    // A client without roles gets a token without the roles claim.
    sim.add_client(ClientSpec::new("11111111-2222-3333-4444-555555555555", "s").with_roles(&[]));
    let r = token_for(&sim, "11111111-2222-3333-4444-555555555555", "s", MDE_SCOPE).await;
    let b: Value = r.json().await.unwrap();
    assert!(claims(b["access_token"].as_str().unwrap()).get("roles").is_none());
    sim.stop().await;
}

/// (name, tenant in the URL, form, HTTP status, `error`, AADSTS code)
type TokenCase<'a> = (&'a str, &'a str, Vec<(String, String)>, u16, &'a str, u64);

#[tokio::test]
async fn token_error_bodies() {
    let sim = start(50).await;
    sim.add_client(ClientSpec::new("aaaaaaaa-0000-0000-0000-000000000001", "old"));
    assert!(sim.expire_client_secret("aaaaaaaa-0000-0000-0000-000000000001"));
    let id = sim.client_id.clone();
    let sec = sim.client_secret.clone();
    let good = |over: &[(&str, Option<&str>)]| {
        let mut f: Vec<(String, String)> = vec![
            ("client_id".into(), id.clone()),
            ("client_secret".into(), sec.clone()),
            ("scope".into(), MDE_SCOPE.into()),
            ("grant_type".into(), "client_credentials".into()),
        ];
        for (k, v) in over {
            f.retain(|(x, _)| x != k);
            if let Some(v) = v {
                f.push((k.to_string(), v.to_string()));
            }
        }
        f
    };
    let cases: Vec<TokenCase> = vec![
        ("unknown tenant", "0f0f0f0f-1111-2222-3333-444444444444", good(&[]), 400, "invalid_request", 90002),
        ("unknown domain", "fabrikam.onmicrosoft.com", good(&[]), 400, "invalid_request", 90002),
        ("malformed tenant", "not_a_tenant", good(&[]), 400, "invalid_request", 900023),
        (
            "unknown client",
            &sim.tenant_id,
            good(&[("client_id", Some("99999999-9999-9999-9999-999999999999"))]),
            400,
            "unauthorized_client",
            700016,
        ),
        ("wrong secret", &sim.tenant_id, good(&[("client_secret", Some("nope"))]), 401, "invalid_client", 7000215),
        (
            "expired secret",
            &sim.tenant_id,
            good(&[("client_id", Some("aaaaaaaa-0000-0000-0000-000000000001")), ("client_secret", Some("old"))]),
            401,
            "invalid_client",
            7000222,
        ),
        ("missing secret", &sim.tenant_id, good(&[("client_secret", None)]), 401, "invalid_client", 7000218),
        ("bad scope", &sim.tenant_id, good(&[("scope", Some("Machine.Read.All"))]), 400, "invalid_scope", 70011),
        ("missing grant_type", &sim.tenant_id, good(&[("grant_type", None)]), 400, "invalid_request", 900144),
        ("missing scope", &sim.tenant_id, good(&[("scope", None)]), 400, "invalid_request", 900144),
        (
            "unsupported grant",
            &sim.tenant_id,
            good(&[("grant_type", Some("password"))]),
            400,
            "unsupported_grant_type",
            70003,
        ),
        (
            "resource on v2",
            &sim.tenant_id,
            good(&[("resource", Some("https://api.securitycenter.microsoft.com"))]),
            400,
            "invalid_request",
            901002,
        ),
    ];
    for (name, tenant, form, status, error, code) in cases {
        let r = http()
            .post(format!("{}/{tenant}/oauth2/v2.0/token", sim.base_url))
            .header("client-request-id", "12345678-1234-1234-1234-123456789abc")
            .form(&form)
            .send()
            .await
            .unwrap();
        assert_eq!(r.status().as_u16(), status, "{name}");
        let b: Value = r.json().await.unwrap();
        assert_eq!(b["error"], error, "{name}: {b}");
        assert_eq!(b["error_codes"], json!([code]), "{name}");
        let d = b["error_description"].as_str().unwrap();
        assert!(d.starts_with(&format!("AADSTS{code}: ")), "{name}: {d}");
        assert!(
            d.contains("\r\nTrace ID: ") && d.contains("\r\nCorrelation ID: ") && d.contains("\r\nTimestamp: "),
            "{name}"
        );
        let ts = b["timestamp"].as_str().unwrap();
        assert!(chrono::NaiveDateTime::parse_from_str(ts, "%Y-%m-%d %H:%M:%SZ").is_ok(), "{name}: {ts}");
        assert!(d.ends_with(&format!("Timestamp: {ts}")), "{name}");
        assert!(is_guid(b["trace_id"].as_str().unwrap()));
        assert_eq!(b["correlation_id"], "12345678-1234-1234-1234-123456789abc");
        assert_eq!(b["error_uri"], format!("https://login.microsoftonline.com/error?code={code}"));
    }
    // Wrong method on the token endpoint.
    let r = http().get(sim.token_url()).send().await.unwrap();
    assert_eq!(r.status(), 405);
    sim.stop().await;
}

// ---------------------------------------------------------------------------------------------
// Authentication and authorisation of API calls

#[tokio::test]
async fn api_401_and_403() {
    let sim = start(60).await;
    let url = format!("{}/api/machines", sim.base_url);
    let r = call(reqwest::Method::GET, &url, None, None).await;
    assert_error(&r, 401, "Unauthorized");
    let r = call(reqwest::Method::GET, &url, Some("not.a.token"), None).await;
    assert_error(&r, 401, "Unauthorized");

    // Expired: a token issued with lifetime 0 is expired at once.
    sim.set_faults(Faults { token_lifetime_secs: Some(0), ..Default::default() });
    let r = token_for(&sim, &sim.client_id, &sim.client_secret, MDE_SCOPE).await;
    let b: Value = r.json().await.unwrap();
    assert_eq!(b["expires_in"], 0);
    let expired = b["access_token"].as_str().unwrap().to_string();
    assert_error(&get(&sim, &expired, "/api/machines").await, 401, "Unauthorized");
    sim.set_faults(Faults::default());

    // Foreign audience → 403; the XDR audience is accepted by default.
    let r = token_for(&sim, &sim.client_id, &sim.client_secret, "https://graph.microsoft.com/.default").await;
    let graph = r.json::<Value>().await.unwrap()["access_token"].as_str().unwrap().to_string();
    assert_error(&get(&sim, &graph, "/api/machines").await, 403, "Forbidden");
    let r = token_for(&sim, &sim.client_id, &sim.client_secret, "https://api.security.microsoft.com/.default").await;
    let xdr = r.json::<Value>().await.unwrap()["access_token"].as_str().unwrap().to_string();
    assert_eq!(claims(&xdr)["aud"], "https://api.security.microsoft.com");
    assert_eq!(get(&sim, &xdr, "/api/machines?$top=1").await.status, 200);

    // Missing role → 403 for that API only; granting it later applies to new tokens.
    sim.add_client(ClientSpec::new("bbbbbbbb-0000-0000-0000-000000000002", "x").with_roles(&["Alert.Read.All"]));
    let r = token_for(&sim, "bbbbbbbb-0000-0000-0000-000000000002", "x", MDE_SCOPE).await;
    let alerts_only = r.json::<Value>().await.unwrap()["access_token"].as_str().unwrap().to_string();
    assert_error(&get(&sim, &alerts_only, "/api/machines").await, 403, "Forbidden");
    assert_eq!(get(&sim, &alerts_only, "/api/alerts?$top=1").await.status, 200);
    let m = sim.tenant().machines()[0].id.clone();
    let r = post(&sim, &alerts_only, &format!("/api/machines/{m}/isolate"), json!({"Comment": "x"})).await;
    assert_error(&r, 403, "Forbidden");
    assert!(sim.set_client_roles("bbbbbbbb-0000-0000-0000-000000000002", &["Machine.Read.All"]));
    let r = token_for(&sim, "bbbbbbbb-0000-0000-0000-000000000002", "x", MDE_SCOPE).await;
    let machines_only = r.json::<Value>().await.unwrap()["access_token"].as_str().unwrap().to_string();
    assert_eq!(get(&sim, &machines_only, "/api/machines?$top=1").await.status, 200);

    // Invalidate every issued token.
    let tok = token(&sim).await;
    assert_eq!(get(&sim, &tok, "/api/machines?$top=1").await.status, 200);
    sim.invalidate_tokens();
    assert_error(&get(&sim, &tok, "/api/machines?$top=1").await, 401, "Unauthorized");
    let fresh = token(&sim).await;
    assert_eq!(get(&sim, &fresh, "/api/machines?$top=1").await.status, 200);
    sim.stop().await;

    // Refusing the XDR audience is configurable.
    let sim = defender_sim::start(SimConfig { machines: 50, accept_xdr_audience: false, ..Default::default() })
        .await
        .unwrap();
    let r = token_for(&sim, &sim.client_id, &sim.client_secret, "https://api.security.microsoft.com/.default").await;
    let xdr = r.json::<Value>().await.unwrap()["access_token"].as_str().unwrap().to_string();
    assert_error(&get(&sim, &xdr, "/api/machines").await, 403, "Forbidden");
    sim.stop().await;
}

// ---------------------------------------------------------------------------------------------
// Machines

fn check_machine_shape(m: &Value) {
    let s = |k: &str| assert!(m[k].is_string(), "{k} string: {m}");
    let ns = |k: &str| assert!(m[k].is_string() || m[k].is_null(), "{k} nullable string: {m}");
    for k in [
        "id",
        "computerDnsName",
        "osPlatform",
        "osProcessor",
        "version",
        "lastIpAddress",
        "lastExternalIpAddress",
        "defenderAvStatus",
        "managedBy",
        "osArchitecture",
    ] {
        s(k);
    }
    for k in ["agentVersion", "rbacGroupName", "aadDeviceId", "osVersion", "mergedIntoMachineId", "exclusionReason"] {
        ns(k);
    }
    let id = m["id"].as_str().unwrap();
    assert!(id.len() == 40 && id.chars().all(|c| c.is_ascii_hexdigit()));
    assert!(is_iso(&m["firstSeen"]) && is_iso(&m["lastSeen"]));
    assert!(m["osBuild"].is_i64() || m["osBuild"].is_null());
    assert!(m["rbacGroupId"].is_i64(), "rbacGroupId is a number");
    assert!(one_of(
        &m["healthStatus"],
        &[
            "Active",
            "Inactive",
            "ImpairedCommunication",
            "NoSensorData",
            "NoSensorDataImpairedCommunication",
            "Unknown"
        ]
    ));
    assert!(one_of(&m["riskScore"], &["None", "Informational", "Low", "Medium", "High"]));
    assert!(one_of(&m["exposureLevel"], &["None", "Low", "Medium", "High"]));
    assert!(one_of(&m["deviceValue"], &["Normal", "Low", "High"]));
    assert!(one_of(&m["onboardingStatus"], &["Onboarded", "CanBeOnboarded", "Unsupported", "InsufficientInfo"]));
    assert!(one_of(&m["osArchitecture"], &["32-bit", "64-bit"]));
    assert!(m["isAadJoined"].is_boolean() && m["isPotentialDuplication"].is_boolean() && m["isExcluded"].is_boolean());
    assert!(m["machineTags"].as_array().unwrap().iter().all(Value::is_string));
    for ip in m["ipAddresses"].as_array().unwrap() {
        assert!(ip["ipAddress"].is_string());
        assert!(ip["type"].is_string() && one_of(&ip["operationalStatus"], &["Up", "Down"]));
        match ip["macAddress"].as_str() {
            Some(mac) => {
                assert!(mac.len() == 12 && mac.chars().all(|c| c.is_ascii_digit() || ('A'..='F').contains(&c)), "{mac}")
            }
            None => assert_eq!(ip["type"], "SoftwareLoopback"),
        }
    }
}

#[tokio::test]
async fn machines_list_get_filter_and_paging() {
    let sim = start(230).await;
    let tok = token(&sim).await;
    let t = sim.tenant();
    let r = get(&sim, &tok, "/api/machines").await;
    assert_eq!(r.status, 200);
    assert_eq!(r.headers["content-type"], ODATA_CT);
    assert_eq!(r.headers["odata-version"], "4.0");
    assert_eq!(r.body["@odata.context"], format!("{}/api/$metadata#Machines", sim.base_url));
    let all = r.body["value"].as_array().unwrap();
    assert_eq!(all.len(), 230);
    assert!(r.body.get("@odata.nextLink").is_none());
    all.iter().for_each(check_machine_shape);
    assert!(all.iter().any(|m| { m["ipAddresses"].as_array().unwrap().iter().any(|i| i["macAddress"].is_null()) }));

    // The versioned prefix and the host the caller used.
    let r = http()
        .get(format!("{}/api/v1.0/machines?$top=1", sim.base_url))
        .bearer_auth(&tok)
        .header("Host", "api.securitycenter.microsoft.com")
        .send()
        .await
        .unwrap();
    let b: Value = r.json().await.unwrap();
    assert_eq!(b["@odata.context"], "http://api.securitycenter.microsoft.com/api/$metadata#Machines");

    // $top/$skip to the end without loss or duplicates.
    let paged = top_skip(&sim, &tok, "/api/machines", 17).await;
    let paged_ids = ids(&paged, "id");
    assert_unique(&paged_ids);
    assert_eq!(paged_ids, t.machines().iter().map(|m| m.id.clone()).collect::<Vec<_>>());

    // Get by id and by computer name; 404 otherwise.
    let m0 = &t.machines()[3];
    let r = get(&sim, &tok, &format!("/api/machines/{}", m0.id)).await;
    assert_eq!(r.body["@odata.context"], format!("{}/api/$metadata#Machines/$entity", sim.base_url));
    assert_eq!(r.body["computerDnsName"], m0.computer_dns_name.as_str());
    check_machine_shape(&r.body);
    let newest = t.machine_by_name(&m0.computer_dns_name).unwrap();
    let r = get(&sim, &tok, &format!("/api/machines/{}", m0.computer_dns_name.to_uppercase())).await;
    assert_eq!(r.body["id"], newest.id.as_str());
    assert_error(
        &get(&sim, &tok, "/api/machines/0000000000000000000000000000000000000000").await,
        404,
        "ResourceNotFound",
    );

    // Filters.
    let count = |f: &dyn Fn(&defender_sim::Machine) -> bool| t.machines().iter().filter(|m| f(m)).count();
    let cases: Vec<(&str, usize)> = vec![
        ("healthStatus eq 'Active'", count(&|m| m.health_status == "Active")),
        ("HealthStatus ne 'active'", count(&|m| m.health_status != "Active")),
        (
            "riskScore eq 'High' or exposureLevel eq 'Low'",
            count(&|m| m.risk_score == "High" || m.exposure_level == "Low"),
        ),
        (
            "osPlatform eq 'Windows11' and onboardingStatus eq 'Onboarded'",
            count(&|m| m.os_platform == "Windows11" && m.onboarding_status == "Onboarded"),
        ),
        ("startswith(computerDnsName,'desktop-')", count(&|m| m.computer_dns_name.starts_with("desktop-"))),
        ("lastSeen gt 2000-01-01Z", 230),
        ("lastSeen lt 2000-01-01T00:00:00Z", 0),
        ("rbacGroupId eq 103", count(&|m| m.rbac_group_id == 103)),
        ("machineTags/any(tag: tag eq 'VIP')", count(&|m| m.machine_tags.iter().any(|x| x == "VIP"))),
        (
            "not (osPlatform eq 'Windows10') and (deviceValue eq 'High' or deviceValue eq 'Low')",
            count(&|m| m.os_platform != "Windows10" && m.device_value != "Normal"),
        ),
    ];
    for (f, expected) in cases {
        let r = get(&sim, &tok, &format!("/api/machines?$filter={}", urlencode(f))).await;
        assert_eq!(r.status, 200, "{f}: {}", r.text);
        assert_eq!(r.body["value"].as_array().unwrap().len(), expected, "{f}");
    }
    // `+` for spaces as in the docs.
    let r = get(&sim, &tok, "/api/machines?$filter=healthStatus+eq+'Active'").await;
    assert_eq!(r.body["value"].as_array().unwrap().len(), count(&|m| m.health_status == "Active"));
    assert_error(&get(&sim, &tok, "/api/machines?$filter=bogus eq 1").await, 400, "ODataError");
    assert_error(&get(&sim, &tok, "/api/machines?$filter=healthStatus eq").await, 400, "ODataError");
    assert_error(&get(&sim, &tok, "/api/machines?$top=10001").await, 400, "ODataError");
    assert_error(&get(&sim, &tok, "/api/machines?$skip=x").await, 400, "ODataError");

    // Empty list: 200 with [] by default, 404 on request.
    let r = get(&sim, &tok, "/api/machines?$filter=computerDnsName eq 'nope'").await;
    assert_eq!((r.status.as_u16(), r.body["value"].as_array().unwrap().len()), (200, 0));
    sim.set_faults(Faults { empty_list_404: true, ..Default::default() });
    assert_error(&get(&sim, &tok, "/api/machines?$filter=computerDnsName eq 'nope'").await, 404, "ResourceNotFound");
    sim.stop().await;
}

fn urlencode(s: &str) -> String {
    url::form_urlencoded::byte_serialize(s.as_bytes()).collect()
}

#[tokio::test]
async fn machines_next_link_over_ten_thousand() {
    let sim = start(10_050).await;
    let tok = token(&sim).await;
    let r = get(&sim, &tok, "/api/machines").await;
    assert_eq!(r.body["value"].as_array().unwrap().len(), 10_000);
    let next = r.body["@odata.nextLink"].as_str().unwrap();
    assert!(next.starts_with(&sim.base_url) && next.contains("$skip=10000"), "{next}");
    let (all, pages) = follow(&tok, &format!("{}/api/machines", sim.base_url)).await;
    assert_eq!(pages, 2);
    let all_ids = ids(&all, "id");
    assert_eq!(all_ids.len(), 10_050);
    assert_unique(&all_ids);
    // The filter survives into the nextLink.
    let r = get(&sim, &tok, "/api/machines?$filter=lastSeen gt 2000-01-01Z").await;
    let next = r.body["@odata.nextLink"].as_str().unwrap();
    assert!(next.contains("$filter=lastSeen%20gt%202000-01-01Z"), "{next}");
    sim.stop().await;
}

#[tokio::test]
async fn tenant_is_consistent_and_deterministic() {
    let cfg = config(400);
    let a = Tenant::generate(cfg.tenant_params());
    let b = Tenant::generate(cfg.tenant_params());
    assert_eq!(
        a.machines().iter().map(|m| &m.id).collect::<Vec<_>>(),
        b.machines().iter().map(|m| &m.id).collect::<Vec<_>>()
    );
    assert_eq!(a.total_machine_vulnerabilities(), b.total_machine_vulnerabilities());
    for m in a.machines() {
        // riskScore from the worst active alert.
        let worst = a
            .alerts_of(m.index as usize)
            .iter()
            .filter(|x| x.is_active())
            .map(|x| ["Informational", "Low", "Medium", "High"].iter().position(|s| *s == x.severity).unwrap() + 1)
            .max()
            .unwrap_or(0);
        assert_eq!(m.risk_score, ["None", "Informational", "Low", "Medium", "High"][worst], "{}", m.id);
        // exposureLevel from the worst vulnerability.
        let vulns: Vec<_> = a.machine_vulnerabilities(m.index as usize).collect();
        assert_eq!(vulns.len() as u32, m.vuln_count);
        let worst = vulns.iter().map(|v| v.severity).max();
        let expected = match worst {
            None => "None",
            Some(defender_sim::Severity::Low) => "Low",
            Some(defender_sim::Severity::Medium) => "Medium",
            _ => "High",
        };
        assert_eq!(m.exposure_level, expected, "{}", m.id);
        let distinct: HashSet<_> = vulns.iter().map(|v| &v.id).collect();
        assert_eq!(distinct.len(), vulns.len());
        assert_eq!(a.machine_by_id(&m.id.to_uppercase()).map(|x| x.index), Some(m.index));
    }
    // Re-imaged duplicates: same MAC or name, the older record seen earlier.
    let dups: Vec<_> = a.machines().iter().filter(|m| m.duplicate_of.is_some()).collect();
    assert!(!dups.is_empty());
    for d in dups {
        let p = &a.machines()[d.duplicate_of.unwrap() as usize];
        assert!(d.mac == p.mac || d.computer_dns_name == p.computer_dns_name);
        assert!(d.last_seen < p.last_seen && d.is_potential_duplication);
    }
    // Offsets map to rows.
    let total = a.total_machine_vulnerabilities();
    let (m, r) = a.locate_row(total - 1).unwrap();
    assert_eq!(r as u32 + 1, a.machines()[m].vuln_count);
    assert!(a.locate_row(total).is_none());
}

#[tokio::test]
async fn network_observations_match_machines() {
    let sim = start(300).await;
    let t = sim.tenant();
    let obs = t.network_observations();
    let by_mac: std::collections::HashMap<String, &defender_sim::Machine> = t
        .machines()
        .iter()
        .filter(|m| m.duplicate_of.is_none())
        .filter_map(|m| m.mac_colon().map(|mac| (mac, m)))
        .collect();
    let mut matching = 0;
    for o in &obs {
        let mac = o.mac.as_deref().unwrap();
        assert_eq!(mac.len(), 17);
        assert_eq!(mac, mac.to_lowercase());
        assert!(o.seen_at.as_deref().is_some_and(|s| chrono::DateTime::parse_from_rfc3339(s).is_ok()));
        if let Some(m) = by_mac.get(mac) {
            matching += 1;
            assert_eq!(o.ip.as_deref(), Some(m.last_ip_address.as_str()));
            assert_eq!(o.hostname.as_deref(), Some(m.short_name()));
            // Same MAC as the API shows for the adapter holding the address (not always the first
            // one listed), in the other notation.
            let holder = m.ip_addresses.iter().find(|a| a.ip_address == m.last_ip_address).unwrap();
            let api_mac = holder.mac_address.clone().unwrap();
            assert_eq!(api_mac.to_lowercase(), mac.replace(':', ""));
        }
    }
    let expected = t.machines().iter().filter(|m| m.in_network).count();
    assert_eq!(matching, expected);
    assert!(expected > 100 && expected < 200, "about half of 300: {expected}");
    assert!(obs.len() > matching, "network-only devices too");
    assert!(obs.iter().any(|o| o.dhcp_vendor_class.as_deref() == Some("MSFT 5.0")));

    // Over HTTP too.
    let r = call(reqwest::Method::GET, &format!("{}/_sim/observations", sim.base_url), None, None).await;
    assert_eq!(r.body.as_array().unwrap().len(), obs.len());
    sim.stop().await;
}

// ---------------------------------------------------------------------------------------------
// Machine actions

fn machine_of(t: &Tenant, pred: impl Fn(&defender_sim::Machine) -> bool) -> String {
    t.machines()
        .iter()
        .find(|m| m.duplicate_of.is_none() && m.onboarding_status == "Onboarded" && pred(m))
        .expect("such a machine")
        .id
        .clone()
}

async fn wait_status(sim: &RunningSimulator, tok: &str, action: &str, want: &str) -> Vec<String> {
    let mut seen = Vec::new();
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let r = get(sim, tok, &format!("/api/machineactions/{action}")).await;
        assert_eq!(r.status, 200, "{}", r.text);
        let s = r.body["status"].as_str().unwrap().to_string();
        if seen.last() != Some(&s) {
            seen.push(s.clone());
        }
        if s == want {
            return seen;
        }
        assert!(Instant::now() < deadline, "stuck in {seen:?}");
        tokio::time::sleep(Duration::from_millis(40)).await;
    }
}

fn check_action_shape(a: &Value) {
    assert!(is_guid(a["id"].as_str().unwrap()));
    assert!(one_of(&a["type"], &["Isolate", "Unisolate", "RunAntiVirusScan"]));
    assert!(one_of(&a["status"], &["Pending", "InProgress", "Succeeded", "Failed", "TimeOut", "Cancelled"]));
    assert!(is_iso(&a["creationDateTimeUtc"]) && is_iso(&a["lastUpdateDateTimeUtc"]));
    for k in ["requestor", "requestorComment", "machineId", "computerDnsName", "requestSource", "title"] {
        assert!(a[k].is_string(), "{k}");
    }
    assert!(a["errorHResult"].is_i64() && a["commands"].is_array());
}

/// Every platform and version Microsoft documents for each action, and the documented 400s
/// elsewhere (respond-machine-alerts, run-av-scan, isolate-machine, common-errors).
#[tokio::test]
async fn actions_follow_the_documented_platforms_and_client_versions() {
    let sim = start(3000).await;
    let tok = token(&sim).await;
    let t = sim.tenant();
    let old = |m: &defender_sim::Machine| m.agent_version.is_some_and(|v| v.starts_with("101.98."));
    let current = |m: &defender_sim::Machine| m.agent_version.is_some_and(|v| !v.starts_with("101.98."));
    let scan = json!({"Comment": "x", "ScanType": "Quick"});
    let full = json!({"Comment": "x", "IsolationType": "Full"});
    let selective = json!({"Comment": "x", "IsolationType": "Selective"});
    // (which machine, action path, body, expected: None = 201, else the error code)
    type Pick = Box<dyn Fn(&defender_sim::Machine) -> bool>;
    let cases: Vec<(&str, Pick, &str, &Value, Option<&str>)> = vec![
        ("server 2012 R2 scan", Box::new(|m| m.os_platform == "WindowsServer2012R2"), "runAntiVirusScan", &scan, None),
        ("server 2016 selective", Box::new(|m| m.os_platform == "WindowsServer2016"), "isolate", &selective, None),
        ("server 2019 full", Box::new(|m| m.os_platform == "WindowsServer2019"), "isolate", &full, None),
        ("server 2022 scan", Box::new(|m| m.os_platform == "WindowsServer2022"), "runAntiVirusScan", &scan, None),
        ("server 2025 selective", Box::new(|m| m.os_platform == "WindowsServer2025"), "isolate", &selective, None),
        ("server 2025 scan", Box::new(|m| m.os_platform == "WindowsServer2025"), "runAntiVirusScan", &scan, None),
        (
            "windows 10 1809 selective",
            Box::new(|m| m.os_platform == "Windows10" && m.version == "1809"),
            "isolate",
            &selective,
            None,
        ),
        (
            "windows 10 1607 full",
            Box::new(|m| m.os_platform == "Windows10" && m.version == "1607"),
            "isolate",
            &full,
            Some("OsPlatformNotSupported"),
        ),
        (
            "windows 10 1607 scan",
            Box::new(|m| m.os_platform == "Windows10" && m.version == "1607"),
            "runAntiVirusScan",
            &scan,
            Some("OsPlatformNotSupported"),
        ),
        ("macOS selective", Box::new(move |m| m.os_platform == "macOS" && current(m)), "isolate", &selective, None),
        (
            "macOS old client scan",
            Box::new(move |m| m.os_platform == "macOS" && old(m)),
            "runAntiVirusScan",
            &scan,
            Some("ClientVersionNotSupported"),
        ),
        (
            "macOS old client full",
            Box::new(move |m| m.os_platform == "macOS" && old(m)),
            "isolate",
            &full,
            Some("ClientVersionNotSupported"),
        ),
        ("linux scan", Box::new(move |m| m.os_platform == "Linux" && current(m)), "runAntiVirusScan", &scan, None),
        (
            "linux old client scan",
            Box::new(move |m| m.os_platform == "Linux" && old(m)),
            "runAntiVirusScan",
            &scan,
            Some("ClientVersionNotSupported"),
        ),
        ("linux old client full", Box::new(move |m| m.os_platform == "Linux" && old(m)), "isolate", &full, None),
        (
            "linux selective",
            Box::new(|m| m.os_platform == "Linux"),
            "isolate",
            &selective,
            Some("OsPlatformNotSupported"),
        ),
        ("iOS full", Box::new(|m| m.os_platform == "iOS"), "isolate", &full, Some("OsPlatformNotSupported")),
        (
            "Android scan",
            Box::new(|m| m.os_platform == "Android"),
            "runAntiVirusScan",
            &scan,
            Some("OsPlatformNotSupported"),
        ),
    ];
    for (what, pick, path, body, want) in cases {
        let id = machine_of(&t, pick);
        let r = post(&sim, &tok, &format!("/api/machines/{id}/{path}"), body.clone()).await;
        match want {
            None => assert_eq!(r.status, 201, "{what}: {}", r.text),
            Some(code) => assert_error(&r, 400, code),
        }
    }
    // The documented messages (common-errors).
    let id = machine_of(&t, |m| m.os_platform == "iOS");
    let r = post(&sim, &tok, &format!("/api/machines/{id}/runAntiVirusScan"), scan.clone()).await;
    assert_eq!(r.body["error"]["message"], "OS Platform iOS isn't supported for this action.");
    let id = machine_of(&t, |m| m.os_platform == "macOS" && old(m));
    let r = post(&sim, &tok, &format!("/api/machines/{id}/runAntiVirusScan"), scan.clone()).await;
    assert_eq!(r.body["error"]["message"], "RunAntiVirusScan is supported on client version 101.98.84 and above.");
    // Not onboarded: refused.
    let off = t.machines().iter().find(|m| m.os_platform == "Windows11" && !m.is_onboarded()).unwrap();
    let r = post(&sim, &tok, &format!("/api/machines/{}/runAntiVirusScan", off.id), scan.clone()).await;
    assert_error(&r, 400, "OsPlatformNotSupported");
}

/// Linux releases belong to their distribution; Windows Server 2025 exists; client versions per
/// platform, a few macOS/Linux ones below 101.98.84.
#[tokio::test]
async fn operating_systems_and_client_versions_exist() {
    let sim = start(3000).await;
    let t = sim.tenant();
    let real = [
        ("Ubuntu", &["20.04", "22.04", "24.04"][..]),
        ("RedHatEnterpriseLinux", &["8.10", "9.4"][..]),
        ("Debian", &["11", "12"][..]),
        ("SuseLinuxEnterpriseServer", &["15 SP5", "15 SP6"][..]),
    ];
    let mut seen = std::collections::BTreeSet::new();
    for m in t.machines().iter().filter(|m| m.os_platform == "Linux") {
        let d = m.os_distribution.expect("a Linux machine names its distribution");
        let ok = real.iter().any(|(name, versions)| *name == d && versions.contains(&m.version));
        assert!(ok, "{d} {} does not exist", m.version);
        seen.insert(d);
    }
    assert_eq!(seen.len(), 4, "{seen:?}");
    assert!(t.machines().iter().all(|m| m.os_platform == "Linux" || m.os_distribution.is_none()));
    let s2025: Vec<_> = t.machines().iter().filter(|m| m.os_platform == "WindowsServer2025").collect();
    assert!(!s2025.is_empty());
    assert!(s2025.iter().all(|m| m.version == "24H2" && m.os_build == Some(26100)));
    for m in t.machines().iter().filter(|m| m.is_onboarded()) {
        let v = m.agent_version.expect("onboarded machines report a client version");
        let windows = m.os_platform.starts_with("Windows");
        let unix = m.os_platform == "macOS" || m.os_platform == "Linux";
        assert!(!windows || v.starts_with("10.8"), "{} {v}", m.os_platform);
        assert!(!unix || v.starts_with("101."), "{} {v}", m.os_platform);
    }
    for p in ["macOS", "Linux"] {
        let of = |old: bool| {
            t.machines()
                .iter()
                .filter(|m| m.os_platform == p && m.is_onboarded() && m.duplicate_of.is_none())
                .filter(|m| m.agent_version.unwrap().starts_with("101.98.") == old)
                .count()
        };
        assert!(of(true) > 0 && of(true) < of(false), "{p}: a few below 101.98.84");
    }
    // Names and networks of the 2025 servers are those of servers.
    assert!(s2025.iter().all(|m| m.rbac_group_name.is_none_or(|g| g.starts_with("Servers"))));
}

#[tokio::test]
async fn machine_action_lifecycle_and_errors() {
    let sim = start(120).await;
    let tok = token(&sim).await;
    let t = sim.tenant();
    let win = machine_of(&t, |m| m.os_platform == "Windows11" || m.os_platform == "Windows10");
    let linux = machine_of(&t, |m| m.os_platform == "Linux");
    let mac =
        machine_of(&t, |m| m.os_platform == "macOS" && m.agent_version.is_some_and(|v| !v.starts_with("101.98.")));

    let r =
        post(&sim, &tok, &format!("/api/machines/{win}/isolate"), json!({"Comment": "test", "IsolationType": "Full"}))
            .await;
    assert_eq!(r.status, 201, "{}", r.text);
    assert_eq!(r.body["@odata.context"], format!("{}/api/$metadata#MachineActions/$entity", sim.base_url));
    check_action_shape(&r.body);
    assert_eq!(
        (r.body["type"].as_str(), r.body["status"].as_str(), r.body["scope"].as_str()),
        (Some("Isolate"), Some("Pending"), Some("Full"))
    );
    assert_eq!(r.body["machineId"], win.as_str());
    assert_eq!(r.body["requestorComment"], "test");
    let action = r.body["id"].as_str().unwrap().to_string();
    let dup = post(&sim, &tok, &format!("/api/machines/{win}/isolate"), json!({"Comment": "again"})).await;
    assert_error(&dup, 400, "ActiveRequestAlreadyExists");
    assert_eq!(dup.body["error"]["message"], "Action is already in progress");
    // The other documented answer, opt-in: 201 with the action already pending (L:unisolate-machine).
    sim.set_faults(Faults { repeat_returns_pending: true, ..Faults::default() });
    let dup = post(
        &sim,
        &tok,
        &format!("/api/machines/{win}/isolate"),
        json!({"Comment": "again", "IsolationType": "Selective"}),
    )
    .await;
    assert_eq!(
        (dup.status.as_u16(), dup.body["id"].as_str(), dup.body["scope"].as_str()),
        (201, Some(action.as_str()), Some("Full"))
    );
    sim.set_faults(Faults::default());
    assert_eq!(sim.isolation_state(&win), Some(IsolationState::NotIsolated));
    let seen = wait_status(&sim, &tok, &action, "Succeeded").await;
    assert_eq!(seen.first().map(String::as_str), Some("Pending"));
    assert!(seen.contains(&"InProgress".to_string()), "{seen:?}");
    assert_eq!(sim.isolation_state(&win), Some(IsolationState::Isolated("Full")));
    let r = call(reqwest::Method::GET, &format!("{}/_sim/machines/{win}", sim.base_url), None, None).await;
    assert_eq!(r.body["isolation"], json!({"Isolated": "Full"}));

    let r = post(&sim, &tok, &format!("/api/machines/{win}/unisolate"), json!({"Comment": "release"})).await;
    assert_eq!(r.status, 201);
    wait_status(&sim, &tok, r.body["id"].as_str().unwrap(), "Succeeded").await;
    assert_eq!(sim.isolation_state(&win), Some(IsolationState::NotIsolated));

    let r = post(
        &sim,
        &tok,
        &format!("/api/machines/{win}/runAntiVirusScan"),
        json!({"Comment": "scan", "ScanType": "Quick"}),
    )
    .await;
    assert_eq!(
        (r.status.as_u16(), r.body["type"].as_str(), r.body["scope"].as_str()),
        (201, Some("RunAntiVirusScan"), Some("Quick"))
    );
    let quick_scan = r.body["id"].as_str().unwrap().to_string();

    // OS support.
    let r = post(
        &sim,
        &tok,
        &format!("/api/machines/{linux}/isolate"),
        json!({"Comment": "x", "IsolationType": "Selective"}),
    )
    .await;
    assert_error(&r, 400, "OsPlatformNotSupported");
    let r =
        post(&sim, &tok, &format!("/api/machines/{linux}/isolate"), json!({"Comment": "x", "IsolationType": "Full"}))
            .await;
    assert_eq!(r.status, 201);
    // macOS with a current client: scans and isolation (respond-machine-alerts).
    let r =
        post(&sim, &tok, &format!("/api/machines/{mac}/runAntiVirusScan"), json!({"Comment": "x", "ScanType": "Full"}))
            .await;
    assert_eq!(r.status, 201, "{}", r.text);
    let r = post(&sim, &tok, &format!("/api/machines/{mac}/isolate"), json!({"Comment": "x"})).await;
    assert_eq!(r.status, 201, "{}", r.text);

    // Body rules: PascalCase, case-sensitive values, JSON content type on isolate.
    let r = post(
        &sim,
        &tok,
        &format!("/api/machines/{win}/runAntiVirusScan"),
        json!({"Comment": "x", "ScanType": "quick"}),
    )
    .await;
    assert_error(&r, 400, "InvalidRequestBody");
    let r = post(&sim, &tok, &format!("/api/machines/{win}/isolate"), json!({"comment": "x"})).await;
    assert_error(&r, 400, "MissingRequiredParameter");
    let r = http()
        .post(format!("{}/api/machines/{win}/isolate", sim.base_url))
        .bearer_auth(&tok)
        .body(r#"{"Comment":"x"}"#)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 415);
    let r = post(&sim, &tok, "/api/machines/ffffffffffffffffffffffffffffffffffffffff/isolate", json!({"Comment": "x"}))
        .await;
    assert_error(&r, 404, "ResourceNotFound");
    let r = call(reqwest::Method::GET, &format!("{}/api/machines/{win}/isolate", sim.base_url), Some(&tok), None).await;
    assert_eq!(r.status, 405);
    assert_eq!(r.headers["allow"], "POST");
    assert!(r.text.is_empty());

    // Lookups.
    assert_error(&get(&sim, &tok, "/api/machineactions/not-a-guid").await, 400, "BadRequest");
    assert_error(
        &get(&sim, &tok, "/api/machineactions/00000000-0000-4000-8000-000000000000").await,
        404,
        "ResourceNotFound",
    );
    let r = get(&sim, &tok, &format!("/api/machineactions?$filter=machineId eq '{win}' and type eq 'Isolate'")).await;
    let list = r.body["value"].as_array().unwrap();
    assert_eq!(list.len(), 1);
    assert_eq!(list[0]["id"], action.as_str());
    let r = get(&sim, &tok, "/api/machineactions").await;
    assert_eq!(r.body["@odata.context"], format!("{}/api/$metadata#MachineActions", sim.base_url));
    let all = r.body["value"].as_array().unwrap();
    all.iter().for_each(check_action_shape);
    let times: Vec<&str> = all.iter().map(|a| a["creationDateTimeUtc"].as_str().unwrap()).collect();
    assert!(times.windows(2).all(|w| w[0] >= w[1]), "newest first");
    let r = get(&sim, &tok, "/api/machineactions?$filter=status eq 'Succeeded'&$top=1").await;
    assert_eq!(r.body["value"].as_array().unwrap().len(), 1);

    // Outcome knobs.
    wait_status(&sim, &tok, &quick_scan, "Succeeded").await;
    for (outcome, want) in [(ActionOutcome::Failed, "Failed"), (ActionOutcome::TimeOut, "TimeOut")] {
        sim.set_faults(Faults { action_outcome: Some(outcome), ..Default::default() });
        let r = post(
            &sim,
            &tok,
            &format!("/api/machines/{win}/runAntiVirusScan"),
            json!({"Comment": "x", "ScanType": "Full"}),
        )
        .await;
        assert_eq!(r.status, 201, "{}", r.text);
        wait_status(&sim, &tok, r.body["id"].as_str().unwrap(), want).await;
    }
    sim.stop().await;
}

// ---------------------------------------------------------------------------------------------
// Alerts

fn check_alert_shape(a: &Value) {
    for k in [
        "id",
        "title",
        "description",
        "category",
        "detectionSource",
        "machineId",
        "computerDnsName",
        "aadTenantId",
        "detectorId",
        "investigationState",
    ] {
        assert!(a[k].is_string(), "{k}: {a}");
    }
    assert!(one_of(&a["severity"], &["UnSpecified", "Informational", "Low", "Medium", "High"]));
    assert!(one_of(&a["status"], &["Unknown", "New", "InProgress", "Resolved"]));
    assert!(
        a["classification"].is_null()
            || one_of(&a["classification"], &["TruePositive", "FalsePositive", "InformationalExpectedActivity"])
    );
    assert!(a["incidentId"].is_i64() && (a["investigationId"].is_i64() || a["investigationId"].is_null()));
    for k in ["alertCreationTime", "firstEventTime", "lastEventTime", "lastUpdateTime"] {
        assert!(is_iso(&a[k]), "{k}");
    }
    assert!(a["resolvedTime"].is_null() || is_iso(&a["resolvedTime"]));
    assert!(a["mitreTechniques"].as_array().unwrap().iter().all(Value::is_string));
    assert!(
        a["relatedUser"].is_null()
            || (a["relatedUser"]["userName"].is_string() && a["relatedUser"]["domainName"].is_string())
    );
    assert!(a["comments"].is_array() && a["evidence"].is_array());
}

#[tokio::test]
async fn alerts_list_filter_expand_and_get() {
    let sim = start(400).await;
    let tok = token(&sim).await;
    let t = sim.tenant();
    let r = get(&sim, &tok, "/api/alerts").await;
    assert_eq!(r.body["@odata.context"], format!("{}/api/$metadata#Alerts", sim.base_url));
    let all = r.body["value"].as_array().unwrap();
    assert_eq!(all.len(), t.alerts().len());
    assert!(all.len() > 20);
    all.iter().for_each(check_alert_shape);
    assert!(all.iter().all(|a| a["evidence"].as_array().unwrap().is_empty()));
    let paged = top_skip(&sim, &tok, "/api/alerts", 9).await;
    assert_eq!(ids(&paged, "id"), ids(all, "id"));

    let expected = t.alerts().iter().filter(|a| a.status == "New" && a.severity == "High").count();
    let r = get(&sim, &tok, "/api/alerts?$filter=status eq 'New' and severity eq 'High'").await;
    assert_eq!(r.body["value"].as_array().unwrap().len(), expected);
    let r = get(&sim, &tok, "/api/alerts?$filter=alertCreationTime ge 2000-01-01T00:00:00Z and incidentId gt 0").await;
    assert_eq!(r.body["value"].as_array().unwrap().len(), t.alerts().len());
    assert_error(&get(&sim, &tok, "/api/alerts?$filter=title eq 'x'").await, 400, "ODataError");

    let r = get(&sim, &tok, "/api/alerts?$expand=evidence&$top=5").await;
    for a in r.body["value"].as_array().unwrap() {
        let ev = a["evidence"].as_array().unwrap();
        assert!(!ev.is_empty());
        for e in ev {
            for k in [
                "entityType",
                "evidenceCreationTime",
                "sha1",
                "sha256",
                "fileName",
                "filePath",
                "processId",
                "processCommandLine",
                "parentProcessId",
                "ipAddress",
                "url",
                "registryKey",
                "accountName",
                "userSid",
                "userPrincipalName",
                "detectionStatus",
            ] {
                assert!(e.get(k).is_some(), "evidence field {k}");
            }
        }
    }
    assert_error(&get(&sim, &tok, "/api/alerts?$expand=machine").await, 400, "ODataError");

    let a0 = &t.alerts()[0];
    let r = get(&sim, &tok, &format!("/api/alerts/{}", a0.id)).await;
    assert_eq!(r.body["@odata.context"], format!("{}/api/$metadata#Alerts/$entity", sim.base_url));
    assert_eq!(r.body["title"], a0.title.as_str());
    check_alert_shape(&r.body);
    assert_error(&get(&sim, &tok, "/api/alerts/da000_1").await, 404, "ResourceNotFound");

    let m = &t.machines()[a0.machine_index as usize];
    let r = get(&sim, &tok, &format!("/api/machines/{}/alerts", m.id)).await;
    let got = ids(r.body["value"].as_array().unwrap(), "id");
    assert_eq!(got, t.alerts_for(&m.id).iter().map(|a| a.id.clone()).collect::<Vec<_>>());

    // `$count` path segment: a bare number.
    let r = get(&sim, &tok, &format!("/api/machines/{}/alerts/$count?$filter=status ne 'Resolved'", m.id)).await;
    let active = t.alerts_for(&m.id).iter().filter(|a| a.is_active()).count();
    assert_eq!(r.text, active.to_string());
    assert_eq!(get(&sim, &tok, "/api/alerts/$count").await.text, t.alerts().len().to_string());
    assert_eq!(
        get(&sim, &tok, "/api/machines/$count?$filter=healthStatus eq 'Active'").await.text,
        t.machines().iter().filter(|m| m.health_status == "Active").count().to_string()
    );
    sim.stop().await;
}

// ---------------------------------------------------------------------------------------------
// Vulnerabilities and software

fn check_vuln_shape(v: &Value) {
    for k in ["id", "name", "description", "cvssVector", "cveSupportability"] {
        assert!(v[k].is_string(), "{k}");
    }
    assert!(v["id"].as_str().unwrap().starts_with("CVE-"));
    assert!(one_of(&v["severity"], &["Low", "Medium", "High", "Critical"]));
    assert!(v["cvssV3"].is_f64() && v["epss"].is_number() && v["exposedMachines"].is_u64());
    assert!(is_iso(&v["publishedOn"]) && is_iso(&v["updatedOn"]));
    for k in ["publicExploit", "exploitVerified", "exploitInKit"] {
        assert!(v[k].is_boolean(), "{k}");
    }
    assert!(v["exploitTypes"].is_array() && v["exploitUris"].is_array() && v["tags"].is_array());
}

#[tokio::test]
async fn vulnerabilities_and_software() {
    let sim = start(500).await;
    let tok = token(&sim).await;
    let t = sim.tenant();
    let r = get(&sim, &tok, "/api/vulnerabilities").await;
    assert_eq!(r.body["@odata.context"], format!("{}/api/$metadata#Vulnerabilities", sim.base_url));
    let all = r.body["value"].as_array().unwrap();
    assert_eq!(all.len(), t.vulnerabilities().len());
    all.iter().for_each(check_vuln_shape);
    assert_error(&get(&sim, &tok, "/api/vulnerabilities?$top=8001").await, 400, "ODataError");
    assert_eq!(get(&sim, &tok, "/api/vulnerabilities?$top=8000").await.status, 200);
    let crit = t
        .vulnerabilities()
        .iter()
        .filter(|v| v.severity == defender_sim::Severity::Critical && v.cvss_v3 >= 9.5)
        .count();
    let r = get(&sim, &tok, "/api/vulnerabilities?$filter=severity eq 'Critical' and cvssV3 ge 9.5").await;
    assert_eq!(r.body["value"].as_array().unwrap().len(), crit);

    // One machine's vulnerabilities; a CVE's machines; the counts agree.
    let m = t.machines().iter().find(|m| m.vuln_count > 3).unwrap();
    let r = get(&sim, &tok, &format!("/api/machines/{}/vulnerabilities", m.id)).await;
    assert_eq!(
        r.body["@odata.context"],
        format!("{}/api/$metadata#Collection(Analytics.Contracts.PublicAPI.PublicVulnerabilityDto)", sim.base_url)
    );
    let mv = r.body["value"].as_array().unwrap();
    assert_eq!(ids(mv, "id"), t.machine_vulnerabilities(m.index as usize).map(|v| v.id.clone()).collect::<Vec<_>>());
    let cve = mv[0]["id"].as_str().unwrap();
    let r = get(&sim, &tok, &format!("/api/vulnerabilities/{cve}")).await;
    assert_eq!(r.body["@odata.context"], format!("{}/api/$metadata#Vulnerabilities/$entity", sim.base_url));
    check_vuln_shape(&r.body);
    let exposed = r.body["exposedMachines"].as_u64().unwrap() as usize;
    let r = get(&sim, &tok, &format!("/api/vulnerabilities/{cve}/machineReferences")).await;
    assert_eq!(r.body["@odata.context"], format!("{}/api/$metadata#MachineReferences", sim.base_url));
    let refs = r.body["value"].as_array().unwrap();
    assert_eq!(refs.len(), exposed);
    assert!(refs.iter().any(|x| x["id"] == m.id.as_str()));
    for x in refs {
        assert!(x["id"].is_string() && x["computerDnsName"].is_string() && x["osPlatform"].is_string());
    }
    assert_error(&get(&sim, &tok, "/api/vulnerabilities/CVE-1900-0001").await, 404, "ResourceNotFound");

    // Bulk machinesVulnerabilities: nextLink and $top/$skip both cover every row once.
    let total = t.total_machine_vulnerabilities() as usize;
    assert!(total > 10_000, "{total}");
    let (rows, pages) = follow(&tok, &format!("{}/api/vulnerabilities/machinesVulnerabilities", sim.base_url)).await;
    assert!(pages >= 2);
    let row_ids = ids(&rows, "id");
    assert_eq!(row_ids.len(), total);
    assert_unique(&row_ids);
    let r0 = &rows[0];
    for k in ["id", "cveId", "machineId", "productName", "productVendor", "productVersion"] {
        assert!(r0[k].is_string(), "{k}");
    }
    assert!(one_of(&r0["severity"], &["Low", "Medium", "High", "Critical"]));
    assert!(r0["fixingKbId"].is_string() || r0["fixingKbId"].is_null());
    let paged = top_skip(&sim, &tok, "/api/vulnerabilities/machinesVulnerabilities", 3_000).await;
    assert_eq!(ids(&paged, "id"), row_ids);
    let r =
        get(&sim, &tok, &format!("/api/vulnerabilities/machinesVulnerabilities?$filter=machineId eq '{}'", m.id)).await;
    assert_eq!(r.body["value"].as_array().unwrap().len(), m.vuln_count as usize);
    let r = get(&sim, &tok, &format!("/api/vulnerabilities/machinesVulnerabilities?$filter=cveId eq '{cve}'")).await;
    assert_eq!(r.body["value"].as_array().unwrap().len(), exposed);
    let sev = rows.iter().filter(|r| r["severity"] == "Critical" && r["productVendor"] == "microsoft").count();
    let r = get(
        &sim,
        &tok,
        "/api/vulnerabilities/machinesVulnerabilities?$filter=severity eq 'Critical' and productVendor eq 'microsoft'",
    )
    .await;
    assert_eq!(r.body["value"].as_array().unwrap().len(), sev);

    // Software.
    let r = get(&sim, &tok, "/api/Software/microsoft-_-edge_chromium-based").await;
    assert_eq!(r.body["@odata.context"], format!("{}/api/$metadata#Software/$entity", sim.base_url));
    for k in ["id", "name", "vendor"] {
        assert!(r.body[k].is_string());
    }
    assert!(r.body["weaknesses"].is_u64() && r.body["exposedMachines"].is_u64() && r.body["impactScore"].is_f64());
    assert!(r.body["publicExploit"].is_boolean() && r.body["activeAlert"].is_boolean());
    let exposed = r.body["exposedMachines"].as_u64().unwrap() as usize;
    let r = get(&sim, &tok, "/api/Software/microsoft-_-edge_chromium-based/machineReferences").await;
    assert!(r.body["value"].as_array().unwrap().len() >= exposed);
    assert_error(&get(&sim, &tok, "/api/Software/nobody-_-nothing").await, 404, "ResourceNotFound");
    sim.stop().await;
}

// ---------------------------------------------------------------------------------------------
// Export assessment

fn check_export_record(r: &Value) {
    for k in [
        "id",
        "deviceId",
        "rbacGroupName",
        "deviceName",
        "osPlatform",
        "osVersion",
        "osArchitecture",
        "softwareVendor",
        "softwareName",
        "softwareVersion",
        "cveId",
        "vulnerabilitySeverityLevel",
        "recommendedSecurityUpdate",
        "recommendationReference",
    ] {
        assert!(r[k].is_string(), "{k}: {r}");
    }
    for k in ["lastSeenTimestamp", "firstSeenTimestamp"] {
        let s = r[k].as_str().unwrap();
        assert!(chrono::NaiveDateTime::parse_from_str(s, "%Y-%m-%d %H:%M:%S").is_ok(), "{k}: {s}");
    }
    assert!(one_of(
        &r["exploitabilityLevel"],
        &["NoExploit", "ExploitIsPublic", "ExploitIsVerified", "ExploitIsInKit"]
    ));
    assert!(r["diskPaths"].is_array() && r["registryPaths"].is_array());
    assert!(r["securityUpdateAvailable"].is_boolean() && r["cvssScore"].is_f64());
    assert!(r["recommendationReference"].as_str().unwrap().starts_with("va-_-"));
}

#[tokio::test]
async fn export_assessment_json_files_and_delta() {
    let sim = start(150).await;
    let tok = token(&sim).await;
    let t = sim.tenant();
    let total = t.total_machine_vulnerabilities() as usize;
    let first = format!("{}/api/machines/SoftwareVulnerabilitiesByMachine?pageSize=700", sim.base_url);
    let r = get(&sim, &tok, "/api/machines/SoftwareVulnerabilitiesByMachine?pageSize=700").await;
    assert_eq!(
        r.body["@odata.context"],
        format!("{}/api/$metadata#Collection(microsoft.windowsDefenderATP.api.AssetVulnerability)", sim.base_url)
    );
    assert!(r.body["@odata.nextLink"].as_str().unwrap().contains("$skiptoken="));
    let (recs, pages) = follow(&tok, &first).await;
    assert_eq!(recs.len(), total);
    assert_eq!(pages, total.div_ceil(700));
    assert_unique(&ids(&recs, "id"));
    recs.iter().take(50).for_each(check_export_record);
    let r = get(&sim, &tok, "/api/machines/SoftwareVulnerabilitiesByMachine?pageSize=700&$top=10").await;
    assert_eq!(r.body["value"].as_array().unwrap().len(), 10);
    assert!(r.body.get("@odata.nextLink").is_none());
    assert_eq!(get(&sim, &tok, "/api/machines/SoftwareVulnerabilitiesByMachine?pageSize=200001").await.status, 400);
    assert_eq!(get(&sim, &tok, "/api/machines/SoftwareVulnerabilitiesByMachine?$skiptoken=garbage").await.status, 400);

    // Files.
    let r = get(&sim, &tok, "/api/machines/SoftwareVulnerabilitiesExport?sasValidHours=2").await;
    assert_eq!(r.status, 200, "{}", r.text);
    assert!(is_iso(&r.body["generatedTime"]));
    let files: Vec<String> =
        r.body["exportFiles"].as_array().unwrap().iter().map(|u| u.as_str().unwrap().to_string()).collect();
    assert!(files.len() >= 2);
    let mut lines = 0;
    for f in &files {
        let bytes = http().get(f).send().await.unwrap().bytes().await.unwrap();
        let mut text = String::new();
        flate2::read::GzDecoder::new(&bytes[..]).read_to_string(&mut text).unwrap();
        for line in text.lines() {
            check_export_record(&serde_json::from_str(line).unwrap());
            lines += 1;
        }
    }
    assert_eq!(lines, total);
    let tampered = files[0].replace("sig=", "sig=00");
    assert_eq!(http().get(&tampered).send().await.unwrap().status(), 403);
    assert_eq!(get(&sim, &tok, "/api/machines/SoftwareVulnerabilitiesExport?sasValidHours=7").await.status, 400);

    // Delta.
    let since = (chrono::Utc::now() - chrono::Duration::days(13)).format("%Y-%m-%dT%H:%M:%SZ");
    let (delta, _) = follow(
        &tok,
        &format!("{}/api/machines/SoftwareVulnerabilityChangesByMachine?sinceTime={since}&pageSize=50", sim.base_url),
    )
    .await;
    assert!(!delta.is_empty());
    for d in &delta {
        check_export_record(d);
        assert!(one_of(&d["status"], &["New", "Fixed", "Updated"]));
        assert!(d["isOnboarded"].is_boolean() && d["eventTimestamp"].is_string());
    }
    assert!(delta.iter().any(|d| d["status"] == "Fixed") && delta.iter().any(|d| d["status"] == "New"));
    assert_error(
        &get(&sim, &tok, "/api/machines/SoftwareVulnerabilityChangesByMachine").await,
        400,
        "MissingRequiredParameter",
    );
    let old = (chrono::Utc::now() - chrono::Duration::days(20)).format("%Y-%m-%dT%H:%M:%SZ");
    assert_eq!(
        get(&sim, &tok, &format!("/api/machines/SoftwareVulnerabilityChangesByMachine?sinceTime={old}")).await.status,
        400
    );
    sim.stop().await;
}

// ---------------------------------------------------------------------------------------------
// Advanced hunting

#[tokio::test]
async fn advanced_hunting_subset() {
    let sim = start(60).await;
    let tok = token(&sim).await;
    let t = sim.tenant();
    let m = t.machines().iter().find(|m| m.vuln_count > 2).unwrap();
    let run = |q: String| {
        let sim = &sim;
        let tok = &tok;
        async move { post(sim, tok, "/api/advancedqueries/run", json!({ "Query": q })).await }
    };
    let r = run("DeviceInfo | take 3".into()).await;
    assert_eq!(r.status, 200, "{}", r.text);
    assert_eq!(r.body["Results"].as_array().unwrap().len(), 3);
    let schema = r.body["Schema"].as_array().unwrap();
    assert!(schema.iter().all(|c| c["Name"].is_string() && c["Type"].is_string()));
    assert!(schema.iter().any(|c| c["Name"] == "Timestamp" && c["Type"] == "DateTime"));
    let r = run(format!("DeviceInfo | where DeviceId == \"{}\"", m.id)).await;
    let rows = r.body["Results"].as_array().unwrap();
    assert_eq!(rows.len(), 1);
    assert_eq!(rows[0]["DeviceName"], m.computer_dns_name.as_str());
    let r = run(format!("DeviceNetworkInfo | where DeviceId == '{}'", m.id)).await;
    assert!(!r.body["Results"].as_array().unwrap().is_empty());
    let r = run(format!("DeviceTvmSoftwareVulnerabilities | where DeviceId == \"{}\" | take 2", m.id)).await;
    let rows = r.body["Results"].as_array().unwrap();
    assert_eq!(rows.len(), 2);
    assert!(rows[0]["CveId"].as_str().unwrap().starts_with("CVE-"));
    let r = run("DeviceInfo | summarize count() by OSPlatform".into()).await;
    assert_error(&r, 400, "BadRequest");
    assert!(r.body["error"]["message"].as_str().unwrap().contains("supports only"));
    assert_error(&run("DeviceEvents | take 1".into()).await, 400, "BadRequest");
    let r = post(&sim, &tok, "/api/advancedqueries/run", json!({"query": "DeviceInfo | take 1"})).await;
    assert_error(&r, 400, "MissingRequiredParameter");
    sim.stop().await;
}

// ---------------------------------------------------------------------------------------------
// Rate limits

#[tokio::test]
async fn rate_limits_per_api() {
    let sim = start(50).await;
    let tok = token(&sim).await;
    for i in 0..100 {
        let r = get(&sim, &tok, "/api/machines?$top=1").await;
        assert_eq!(r.status, 200, "call {}", i + 1);
    }
    let r = get(&sim, &tok, "/api/machines?$top=1").await;
    assert_error(&r, 429, "TooManyRequests");
    let retry: u64 = r.headers["retry-after"].to_str().unwrap().parse().unwrap();
    assert!((1..=60).contains(&retry));
    // Another API has its own budget.
    assert_eq!(get(&sim, &tok, "/api/alerts?$top=1").await.status, 200);
    let m = sim.tenant().machines()[0].id.clone();
    for _ in 0..50 {
        assert_eq!(get(&sim, &tok, &format!("/api/machines/{m}/vulnerabilities")).await.status, 200);
    }
    assert_error(&get(&sim, &tok, &format!("/api/machines/{m}/vulnerabilities")).await, 429, "TooManyRequests");
    for _ in 0..45 {
        let r = post(&sim, &tok, "/api/advancedqueries/run", json!({"Query": "DeviceInfo | take 1"})).await;
        assert_eq!(r.status, 200);
    }
    let r = post(&sim, &tok, "/api/advancedqueries/run", json!({"Query": "DeviceInfo | take 1"})).await;
    assert_error(&r, 429, "429");
    assert_eq!(r.body["error"]["message"], "API calls quota exceeded! maximum allowed 45 per 00:01:00");
    assert!(r.headers.contains_key("retry-after"));
    for _ in 0..5 {
        assert_eq!(get(&sim, &tok, "/api/machines/SoftwareVulnerabilitiesExport").await.status, 200);
    }
    assert_eq!(get(&sim, &tok, "/api/machines/SoftwareVulnerabilitiesExport").await.status, 429);
    let c = sim.counters();
    assert_eq!(c.api("ListMachines").calls, 101);
    assert_eq!(c.api("ListMachines").by_status.get("429"), Some(&1));
    assert_eq!(c.throttled, 4);
    // Reset clears the windows.
    let r = http().post(format!("{}/_sim/reset", sim.base_url)).send().await.unwrap();
    assert_eq!(r.status(), 204);
    assert_eq!(get(&sim, &tok, "/api/machines?$top=1").await.status, 200);
    assert_eq!(sim.counters().api("ListMachines").calls, 1);
    sim.stop().await;

    let sim = defender_sim::start(SimConfig { machines: 50, rate_limits: false, ..Default::default() }).await.unwrap();
    let tok = token(&sim).await;
    for _ in 0..101 {
        assert_eq!(get(&sim, &tok, "/api/machines/SoftwareVulnerabilitiesExport").await.status, 200);
    }
    sim.stop().await;
}

// ---------------------------------------------------------------------------------------------
// Faults

fn rule(api: Option<&str>, effect: FaultEffect) -> FaultRule {
    FaultRule { api: api.map(String::from), nth: None, fraction: None, times: None, effect }
}

fn faults(rules: Vec<FaultRule>) -> Faults {
    Faults { rules, ..Default::default() }
}

#[tokio::test]
async fn fault_status_throttle_delay_and_counters() {
    let sim = start(60).await;
    let tok = token(&sim).await;
    sim.set_faults(faults(vec![FaultRule {
        nth: Some(2),
        ..rule(Some("ListMachines"), FaultEffect::Status { status: 503 })
    }]));
    assert_eq!(get(&sim, &tok, "/api/machines?$top=1").await.status, 200);
    assert_error(&get(&sim, &tok, "/api/machines?$top=1").await, 503, "ServiceUnavailable");
    assert_eq!(get(&sim, &tok, "/api/machines?$top=1").await.status, 200);
    assert_eq!(get(&sim, &tok, "/api/alerts?$top=1").await.status, 200);

    sim.set_faults(faults(vec![FaultRule { fraction: Some(0.5), ..rule(None, FaultEffect::Status { status: 500 }) }]));
    let mut failed = 0;
    for _ in 0..40 {
        let r = get(&sim, &tok, "/api/alerts?$top=1").await;
        if r.status == 500 {
            assert_eq!(r.body["error"]["code"], "InternalServerError");
            failed += 1;
        }
    }
    assert!((8..=32).contains(&failed), "{failed} of 40");

    sim.set_faults(faults(vec![FaultRule {
        times: Some(1),
        ..rule(Some("GetMachine"), FaultEffect::Throttle { retry_after: Some(7) })
    }]));
    let m = sim.tenant().machines()[0].id.clone();
    let r = get(&sim, &tok, &format!("/api/machines/{m}")).await;
    assert_eq!((r.status.as_u16(), r.headers["retry-after"].to_str().unwrap()), (429, "7"));
    assert_eq!(get(&sim, &tok, &format!("/api/machines/{m}")).await.status, 200);
    sim.set_faults(faults(vec![rule(None, FaultEffect::Throttle { retry_after: None })]));
    let r = get(&sim, &tok, &format!("/api/machines/{m}")).await;
    assert_eq!(r.status, 429);
    assert!(!r.headers.contains_key("retry-after"));

    sim.set_faults(faults(vec![rule(Some("ListAlerts"), FaultEffect::Delay { ms: 300 })]));
    let t0 = Instant::now();
    assert_eq!(get(&sim, &tok, "/api/alerts?$top=1").await.status, 200);
    assert!(t0.elapsed() >= Duration::from_millis(300));

    // The token endpoint can fail too.
    sim.set_faults(faults(vec![rule(Some("Token"), FaultEffect::Status { status: 503 })]));
    let r = token_for(&sim, &sim.client_id, &sim.client_secret, MDE_SCOPE).await;
    assert_eq!(r.status(), 503);
    let b: Value = r.json().await.unwrap();
    assert_eq!(b["error"], "temporarily_unavailable");
    sim.set_faults(Faults::default());

    // Counters over HTTP equal the in-process snapshot.
    let c = sim.counters();
    let over_http: defender_sim::Counters =
        http().get(format!("{}/_sim/counters", sim.base_url)).send().await.unwrap().json().await.unwrap();
    assert_eq!(c, over_http);
    assert_eq!(c.api("ListMachines").by_status.get("503"), Some(&1));
    assert_eq!(c.api("Token").by_status.get("503"), Some(&1));
    assert!(c.throttled >= 2 && c.faults_injected >= 5 && c.tokens_issued >= 1);
    sim.stop().await;
}

#[tokio::test]
async fn fault_body_and_paging_knobs() {
    let sim = start(500).await;
    let tok = token(&sim).await;
    let bulk = "/api/vulnerabilities/machinesVulnerabilities";

    // Stall: headers arrive, the body hangs.
    sim.set_faults(faults(vec![rule(Some("ListMachines"), FaultEffect::Stall { ms: Some(5_000) })]));
    let client = reqwest::Client::builder().timeout(Duration::from_millis(800)).build().unwrap();
    let r = client.get(format!("{}/api/machines", sim.base_url)).bearer_auth(&tok).send().await.unwrap();
    assert_eq!(r.status(), 200);
    assert!(r.text().await.is_err(), "body must not complete");

    for effect in [FaultEffect::Truncate, FaultEffect::Corrupt] {
        sim.set_faults(faults(vec![rule(Some("ListMachines"), effect.clone())]));
        let r = get(&sim, &tok, "/api/machines?$top=20").await;
        assert_eq!(r.status, 200);
        assert!(serde_json::from_str::<Value>(&r.text).is_err(), "{effect:?} gives invalid JSON");
    }

    sim.set_faults(faults(vec![rule(Some("ListMachines"), FaultEffect::WrongTypes)]));
    let r = get(&sim, &tok, "/api/machines?$top=2").await;
    let m = &r.body["value"][0];
    assert!(m["id"].is_number() && m["rbacGroupId"].is_string() && m["isAadJoined"].is_string());

    sim.set_faults(faults(vec![rule(None, FaultEffect::ForeignNextLink)]));
    let r = get(&sim, &tok, bulk).await;
    let next = r.body["@odata.nextLink"].as_str().unwrap();
    assert!(!next.starts_with(&sim.base_url) && next.starts_with("https://"), "{next}");

    sim.set_faults(faults(vec![rule(None, FaultEffect::MalformedNextLink)]));
    let r = get(&sim, &tok, &format!("{bulk}?$filter=severity ne 'x'")).await;
    let next = r.body["@odata.nextLink"].as_str().unwrap();
    assert!(!next.contains("$filter=") && next.ends_with("$skip=10000=10000"), "{next}");

    sim.set_faults(faults(vec![rule(None, FaultEffect::DuplicateIds)]));
    let p1 = get(&sim, &tok, "/api/machines?$top=10&$skip=0").await;
    let p2 = get(&sim, &tok, "/api/machines?$top=10&$skip=10").await;
    assert_eq!(p1.body["value"][9]["id"], p2.body["value"][0]["id"]);
    let e1 = get(&sim, &tok, "/api/machines/SoftwareVulnerabilitiesByMachine?pageSize=100").await;
    let next = e1.body["@odata.nextLink"].as_str().unwrap();
    let e2 = call(reqwest::Method::GET, next, Some(&tok), None).await;
    assert_eq!(e1.body["value"][99]["id"], e2.body["value"][0]["id"]);
    sim.stop().await;
}

#[tokio::test]
async fn admin_endpoints() {
    let sim = start(50).await;
    let base = sim.base_url.clone();
    let f = json!({"rules": [{"api": "ListAlerts", "nth": 1, "effect": {"type": "status", "status": 500}}],
                   "token_lifetime_secs": 120});
    let r = http().post(format!("{base}/_sim/faults")).json(&f).send().await.unwrap();
    assert_eq!(r.status(), 200);
    let got: Value = http().get(format!("{base}/_sim/faults")).send().await.unwrap().json().await.unwrap();
    assert_eq!(got["rules"][0]["api"], "ListAlerts");
    assert_eq!(sim.faults().token_lifetime_secs, Some(120));
    let r = http().post(format!("{base}/_sim/faults")).json(&json!({"nope": 1})).send().await.unwrap();
    assert_eq!(r.status(), 400);

    let tok = token(&sim).await;
    assert_eq!(claims(&tok)["exp"].as_i64().unwrap() - claims(&tok)["iat"].as_i64().unwrap(), 120);
    assert_eq!(get(&sim, &tok, "/api/alerts").await.status, 500);

    // Add a client over HTTP, use it, then expire its secret.
    let r = http()
        .post(format!("{base}/_sim/clients"))
        .json(&json!({"client_id": "cccccccc-0000-0000-0000-000000000003", "secret": "pw", "roles": ["Machine.Read.All"]}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let r = token_for(&sim, "cccccccc-0000-0000-0000-000000000003", "pw", MDE_SCOPE).await;
    assert_eq!(r.status(), 200);
    http()
        .post(format!("{base}/_sim/clients"))
        .json(&json!({"client_id": "cccccccc-0000-0000-0000-000000000003", "secret_expired": true}))
        .send()
        .await
        .unwrap();
    let r = token_for(&sim, "cccccccc-0000-0000-0000-000000000003", "pw", MDE_SCOPE).await;
    assert_eq!(r.status(), 401);

    let r = http().post(format!("{base}/_sim/tokens/invalidate")).send().await.unwrap();
    assert_eq!(r.status(), 204);
    assert_eq!(get(&sim, &tok, "/api/machines").await.status, 401);

    let summary: Value = http().get(format!("{base}/_sim/tenant")).send().await.unwrap().json().await.unwrap();
    assert_eq!(summary["machines"], 50);
    let r = http().post(format!("{base}/_sim/reset")).send().await.unwrap();
    assert_eq!(r.status(), 204);
    assert_eq!(sim.counters().total_calls, 0);
    assert_eq!(sim.faults(), Faults::default());
    sim.stop().await;
}

#[tokio::test]
async fn hostile_tenant_contains_markup() {
    let sim = defender_sim::start(SimConfig { machines: 50, hostile: true, ..Default::default() }).await.unwrap();
    let tok = token(&sim).await;
    let r = get(&sim, &tok, "/api/machines").await;
    assert!(r.text.contains("<script>alert(1)</script>"));
    assert!(r.text.contains("onerror=alert(1)"));
    assert!(r.text.contains("hx-get"));
    let r = get(&sim, &tok, "/api/vulnerabilities").await;
    assert!(r.text.contains("javascript:"));
    let r = get(&sim, &tok, "/api/alerts").await;
    assert!(r.text.contains("<script>") || r.text.contains("<img") || r.text.contains("hx-get"));
    sim.stop().await;
}

/// A tenant change raises one new High alert on a Windows workstation that was below High: its
/// `riskScore` and alert level rise between two syncs, and the alert is listed and found over
/// the API like the generated ones, with its machine's alerts.
#[tokio::test]
async fn a_tenant_change_raises_a_high_alert_on_one_workstation() {
    let sim = start(300).await;
    let tok = token(&sim).await;
    let before = sim.tenant();
    let asked = chrono::Utc::now();
    let advanced = http().post(format!("{}/_sim/tenant/advance", sim.base_url)).json(&json!({})).send().await.unwrap();
    assert_eq!(advanced.status(), 200);
    let after = sim.tenant();
    assert_eq!(after.alerts().len(), before.alerts().len() + 1);
    let risen: Vec<_> = after
        .machines()
        .iter()
        .zip(before.machines())
        .filter(|(a, b)| a.risk_score == "High" && b.risk_score != "High")
        .map(|(a, _)| a)
        .collect();
    assert_eq!(risen.len(), 1, "one machine's riskScore rose to High");
    let m = risen[0];
    assert!(matches!(m.os_platform, "Windows10" | "Windows11"), "{}", m.os_platform);
    let raised: Vec<_> = after.alerts_for(&m.id).iter().filter(|a| a.alert_creation_time >= asked).collect();
    assert_eq!(raised.len(), 1);
    let a = raised[0];
    assert_eq!((a.severity, a.status), ("High", "New"));
    assert_eq!(after.alert(&a.id).map(|x| x.machine_index), Some(m.index));
    // Every other machine keeps its alerts.
    for (x, y) in after.machines().iter().zip(before.machines()) {
        if x.index != m.index {
            let ids = |t: &Tenant| t.alerts_of(x.index as usize).iter().map(|a| a.id.clone()).collect::<Vec<_>>();
            assert_eq!(ids(&after), ids(&before), "machine {}", y.id);
        }
    }
    let r = get(&sim, &tok, &format!("/api/alerts/{}", a.id)).await;
    assert_eq!(r.status, 200, "{}", r.text);
    assert_eq!(r.body["machineId"], m.id.as_str());
    assert_eq!(r.body["severity"], "High");
    let listed = get(&sim, &tok, "/api/alerts").await;
    assert!(listed.body["value"].as_array().unwrap().iter().any(|x| x["id"] == a.id.as_str()));
    let machine = get(&sim, &tok, &format!("/api/machines/{}", m.id)).await;
    assert_eq!(machine.body["riskScore"], "High");
    sim.stop().await;
}

/// Generation speed and volume at 100,000 machines (times printed, not asserted tightly).
#[tokio::test]
async fn large_tenant_generates_quickly() {
    let params = SimConfig { machines: 100_000, ..Default::default() }.tenant_params();
    let t0 = Instant::now();
    let t = Tenant::generate(params);
    let took = t0.elapsed();
    let rows = t.total_machine_vulnerabilities();
    println!(
        "100,000 machines generated in {took:.2?}: {} vulnerabilities, {rows} machine-vulnerability rows, {} alerts",
        t.vulnerabilities().len(),
        t.alerts().len()
    );
    assert_eq!(t.machines().len(), 100_000);
    assert!(rows >= 2_000_000, "{rows}");
    let mean = rows as f64 / 100_000.0;
    assert!((18.0..=30.0).contains(&mean), "mean {mean}");
    // Random access into the middle of the bulk listing is cheap.
    let t1 = Instant::now();
    for k in 0..1000u64 {
        let (m, r) = t.locate_row(k * (rows / 1000)).unwrap();
        assert!(r < t.machines()[m].vuln_count as usize);
        assert!(t.machine_vulnerability_indices(m).len() > r);
    }
    println!("1,000 random row lookups in {:.2?}", t1.elapsed());
    assert!(took < Duration::from_secs(60));
}

/// "Add or Remove Tag for Machine"
/// (<https://learn.microsoft.com/en-us/defender-endpoint/api/add-or-remove-machine-tags>): one tag
/// per call, 200 with the updated Machine, later listings and `advance` keep it; 404 for an
/// unknown machine, 400 for a bad body, 403 without `Machine.ReadWrite.All`, 429 after 100 calls
/// in a minute.
#[tokio::test]
async fn machine_tags_are_added_and_removed_one_at_a_time() {
    let sim = start(12).await;
    let tok = token(&sim).await;
    let m = sim.tenant().machines()[0].clone();
    let path = format!("/api/machines/{}/tags", m.id);

    let r = post(&sim, &tok, &path, json!({"Value": "EA:IP-Camera", "Action": "Add"})).await;
    assert_eq!(r.status, 200, "{}", r.text);
    assert_eq!(r.body["id"], m.id.as_str());
    assert!(r.body["@odata.context"].as_str().unwrap().ends_with("#Machines/$entity"), "{}", r.text);
    let tags: Vec<String> = serde_json::from_value(r.body["machineTags"].clone()).unwrap();
    let mut expected = m.machine_tags.clone();
    expected.push("EA:IP-Camera".into());
    assert_eq!(tags, expected, "added to the list, nothing else changed");
    // Adding it again changes nothing.
    let again = post(&sim, &tok, &path, json!({"Value": "EA:IP-Camera", "Action": "Add"})).await;
    assert_eq!(again.body["machineTags"], r.body["machineTags"]);
    // Later listings carry it, filters find it, and it outlives a change of the tenant.
    let listed = get(&sim, &tok, &format!("/api/machines/{}", m.id)).await;
    assert_eq!(listed.body["machineTags"], r.body["machineTags"]);
    let filtered = get(&sim, &tok, "/api/machines?$filter=machineTags/any(t:%20t%20eq%20'EA:IP-Camera')").await;
    assert_eq!(filtered.status, 200, "{}", filtered.text);
    let ids: Vec<&str> = filtered.body["value"].as_array().unwrap().iter().map(|v| v["id"].as_str().unwrap()).collect();
    assert_eq!(ids, [m.id.as_str()]);
    sim.advance();
    let after = get(&sim, &tok, &format!("/api/machines/{}", m.id)).await;
    assert!(after.body["machineTags"].as_array().unwrap().iter().any(|t| t == "EA:IP-Camera"), "{}", after.text);

    // Remove takes away that one tag only.
    let r = post(&sim, &tok, &path, json!({"Value": "EA:IP-Camera", "Action": "Remove"})).await;
    assert_eq!(r.status, 200, "{}", r.text);
    let tags: Vec<String> = serde_json::from_value(r.body["machineTags"].clone()).unwrap();
    assert!(!tags.contains(&"EA:IP-Camera".to_string()));
    for t in &m.machine_tags {
        assert!(tags.contains(t), "{t} was not touched");
    }

    // Errors: unknown machine, bad bodies (keys are case-sensitive), wrong role.
    let unknown = format!("/api/machines/{}/tags", "0".repeat(40));
    assert_error(&post(&sim, &tok, &unknown, json!({"Value": "x", "Action": "Add"})).await, 404, "ResourceNotFound");
    assert_error(&post(&sim, &tok, &path, json!({"Value": "x", "Action": "Replace"})).await, 400, "InvalidRequestBody");
    assert_error(
        &post(&sim, &tok, &path, json!({"value": "x", "action": "Add"})).await,
        400,
        "MissingRequiredParameter",
    );
    assert_error(&post(&sim, &tok, &path, json!({"Value": " ", "Action": "Add"})).await, 400, "InvalidRequestBody");
    assert_error(&post(&sim, &tok, &path, json!(["EA"])).await, 400, "InvalidRequestBody");
    sim.add_client(ClientSpec::new("bbbbbbbb-0000-0000-0000-000000000077", "x").with_roles(&["Machine.Read.All"]));
    let r = token_for(&sim, "bbbbbbbb-0000-0000-0000-000000000077", "x", MDE_SCOPE).await;
    let read_only = r.json::<Value>().await.unwrap()["access_token"].as_str().unwrap().to_string();
    assert_error(&post(&sim, &read_only, &path, json!({"Value": "x", "Action": "Add"})).await, 403, "Forbidden");

    // 100 calls a minute (the calls above count too), then 429 with Retry-After.
    sim.reset();
    for i in 0..100 {
        let r = post(&sim, &tok, &path, json!({"Value": format!("t{i}"), "Action": "Add"})).await;
        assert_eq!(r.status, 200, "call {i}: {}", r.text);
    }
    let r = post(&sim, &tok, &path, json!({"Value": "one-too-many", "Action": "Add"})).await;
    assert_error(&r, 429, "TooManyRequests");
    assert!(r.headers.contains_key("retry-after"));
    sim.stop().await;
}
