//! The Defender API client against the simulator over real HTTP: connection tests and their
//! failures, complete paging, rate limits, retries, token refresh, link safety, timeouts,
//! malformed answers, duplicates and machine actions. A tiny scripted HTTP server covers what
//! the simulator cannot produce (a page repeated forever, a link to a watched foreign host).
//!
//! Long because each test replays one behaviour of the client end to end; they share the
//! scripted server and the set-up at the top.

use std::collections::HashSet;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use defender_sim::{self, FaultEffect, FaultRule, Faults, IsolationState, RunningSimulator, SimConfig};
use endpoint_analytics::defender::{
    Api, ClientOptions, Credentials, DefenderClient, DefenderError, IsolationType, Pager, RateLimit, ScanType, Secret,
    Target,
};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

async fn sim(machines: usize) -> RunningSimulator {
    defender_sim::start(SimConfig {
        machines,
        seed: 11,
        action_pending_ms: 100,
        action_inprogress_ms: 100,
        ..Default::default()
    })
    .await
    .expect("simulator starts")
}

fn fast() -> ClientOptions {
    ClientOptions {
        connect_timeout: Duration::from_secs(2),
        request_timeout: Duration::from_secs(20),
        max_retries: 3,
        backoff_base: Duration::from_millis(20),
        backoff_max: Duration::from_millis(200),
        ..Default::default()
    }
}

fn creds(sim: &RunningSimulator) -> Credentials {
    Credentials {
        tenant_id: sim.tenant_id.clone(),
        client_id: sim.client_id.clone(),
        client_secret: Secret::new(sim.client_secret.clone()),
    }
}

fn client_with(sim: &RunningSimulator, creds: Credentials, opts: ClientOptions) -> DefenderClient {
    let target = Target::custom(&sim.base_url, &sim.base_url, None).unwrap();
    DefenderClient::new(creds, target, opts).unwrap()
}

fn client(sim: &RunningSimulator) -> DefenderClient {
    client_with(sim, creds(sim), fast())
}

fn rule(api: Option<&str>, effect: FaultEffect) -> FaultRule {
    FaultRule { api: api.map(str::to_string), nth: None, fraction: None, times: None, effect }
}

fn faults(rules: Vec<FaultRule>) -> Faults {
    Faults { rules, ..Default::default() }
}

async fn all<T: serde::de::DeserializeOwned + endpoint_analytics::defender::client::dto::HasId>(
    mut p: Pager<T>,
) -> Result<(Vec<T>, usize, u64), DefenderError> {
    let mut v = Vec::new();
    while let Some(page) = p.next_page().await? {
        v.extend(page);
    }
    Ok((v, p.pages(), p.duplicates_dropped()))
}

fn assert_no_secret(sim: &RunningSimulator, e: &DefenderError) {
    for text in [format!("{e}"), format!("{e:?}"), e.plain_words()] {
        assert!(!text.contains(&sim.client_secret), "secret leaked: {text}");
    }
}

// ------------------------------------------------------------------ connection

#[tokio::test]
async fn test_connection_with_all_permissions() {
    let sim = sim(60).await;
    let c = client(&sim);
    let r = c.test_connection().await.unwrap();
    assert_eq!(r.roles.len(), defender_sim::ALL_ROLES.len(), "{:?}", r.roles);
    assert!(r.missing.is_empty(), "{:?}", r.missing);
    assert_eq!(r.permissions.len(), 10);
    assert!(r.permissions.iter().all(|p| p.granted()));
    assert_eq!(r.api_call, Ok(1));
    assert_eq!(r.token_tenant.as_deref(), Some(sim.tenant_id.as_str()));
    assert_eq!(r.token_audience.as_deref(), Some("https://api.securitycenter.microsoft.com"));
    assert_eq!(r.requested_audience, "https://api.securitycenter.microsoft.com");
    assert_eq!(r.api_host, sim.base_url.trim_end_matches('/'));
    assert_eq!(r.audience_matches(), Some(true));
    assert!(r.all_good());
    let st = c.stats();
    assert_eq!(st.token_requests, 1);
    assert_eq!(st.api(Api::ListMachines).calls, 1);
    // The secret never shows in Debug output of the client or the credentials.
    let dbg = format!("{c:?} {:?}", creds(&sim));
    assert!(!dbg.contains(&sim.client_secret), "{dbg}");
}

#[tokio::test]
async fn test_connection_reports_missing_permissions() {
    let sim = sim(60).await;
    sim.set_client_roles(&sim.client_id, &["Machine.ReadWrite.All", "Alert.Read.All"]);
    let c = client(&sim);
    let r = c.test_connection().await.unwrap();
    assert_eq!(r.roles, vec!["Machine.ReadWrite.All", "Alert.Read.All"]);
    assert_eq!(
        r.missing,
        vec![
            "Machine.Isolate",
            "Machine.Scan",
            "Machine.RestrictExecution",
            "Machine.CollectForensics",
            "Vulnerability.Read.All"
        ]
    );
    assert_eq!(r.optional_missing, vec!["AdvancedQuery.Read.All", "Software.Read.All"]);
    assert_eq!(r.permissions[0].granted_by.as_deref(), Some("Machine.ReadWrite.All"));
    assert_eq!(r.api_call, Ok(1));
    assert!(!r.all_good());

    // Without any machine permission the API call itself is refused, in plain words.
    sim.set_client_roles(&sim.client_id, &["Alert.Read.All"]);
    let r = c.test_connection().await.unwrap();
    let err = r.api_call.clone().unwrap_err();
    assert_eq!(
        err,
        DefenderError::MissingPermission { permission: "Machine.Read.All or Machine.ReadWrite.All".into() }
    );
    assert!(err.plain_words().contains("Machine.Read.All"));
    // And the same for a vulnerability listing.
    sim.set_client_roles(&sim.client_id, &["Machine.Read.All"]);
    let c = client(&sim);
    let e = c.vulnerabilities().next_page().await.unwrap_err();
    assert_eq!(e, DefenderError::MissingPermission { permission: "Vulnerability.Read.All".into() });
}

#[tokio::test]
async fn test_connection_credential_errors() {
    let sim = sim(60).await;

    let mut wrong = creds(&sim);
    wrong.client_secret = Secret::new("not-the-secret-value");
    let e = client_with(&sim, wrong, fast()).test_connection().await.unwrap_err();
    assert_eq!(e, DefenderError::WrongSecret);
    assert!(e.plain_words().contains("AADSTS7000215"));
    assert_no_secret(&sim, &e);

    let mut unknown_tenant = creds(&sim);
    unknown_tenant.tenant_id = "0f0f0f0f-1111-2222-3333-444444444444".into();
    let e = client_with(&sim, unknown_tenant, fast()).test_connection().await.unwrap_err();
    assert_eq!(e, DefenderError::UnknownTenant);
    assert_no_secret(&sim, &e);

    let mut unknown_client = creds(&sim);
    unknown_client.client_id = "11111111-2222-3333-4444-555555555555".into();
    let e = client_with(&sim, unknown_client, fast()).test_connection().await.unwrap_err();
    assert_eq!(e, DefenderError::UnknownClient);
    assert_no_secret(&sim, &e);

    // The tenant's domain works as well as the GUID.
    let mut by_domain = creds(&sim);
    by_domain.tenant_id = sim.tenant_domain.clone();
    assert!(client_with(&sim, by_domain, fast()).test_connection().await.unwrap().all_good());

    sim.expire_client_secret(&sim.client_id);
    let e = client(&sim).test_connection().await.unwrap_err();
    assert_eq!(e, DefenderError::ExpiredSecret);
    assert_eq!(
        e.plain_words(),
        "The client secret has expired (AADSTS7000222): create a new secret in Entra ID and save it here."
    );
    assert_no_secret(&sim, &e);
    // Configuration errors are not retried.
    assert_eq!(sim.counters().tokens_issued, 1);
}

#[tokio::test]
async fn test_connection_unreachable_host() {
    // Port 9 on loopback: nothing listens there.
    let target = Target::custom("http://127.0.0.1:9", "http://127.0.0.1:9", None).unwrap();
    let c = DefenderClient::new(
        Credentials {
            tenant_id: "contoso.onmicrosoft.com".into(),
            client_id: "c".into(),
            client_secret: Secret::new("s3cret-value"),
        },
        target,
        ClientOptions { max_retries: 2, ..fast() },
    )
    .unwrap();
    let t0 = Instant::now();
    let e = c.test_connection().await.unwrap_err();
    assert!(matches!(e, DefenderError::Unreachable(_)), "{e:?}");
    assert!(t0.elapsed() < Duration::from_secs(5));
    assert!(!e.plain_words().contains("s3cret-value"));
    assert_eq!(c.stats().token_requests, 3, "bounded retries");
}

// ------------------------------------------------------------------ paging

#[tokio::test]
async fn pages_every_listing_completely() {
    let sim = sim(10_500).await;
    let t = sim.tenant();
    let c = client(&sim);

    let (machines, pages, dups) = all(c.machines()).await.unwrap();
    assert_eq!(pages, 2);
    assert_eq!(dups, 0);
    assert_eq!(machines.len(), t.machines().len());
    let ids: HashSet<&str> = machines.iter().map(|m| m.id.as_str()).collect();
    assert_eq!(ids.len(), machines.len());
    let expected: HashSet<&str> = t.machines().iter().map(|m| m.id.as_str()).collect();
    assert_eq!(ids, expected);
    let m0 = &machines[0];
    let s0 = &t.machines()[0];
    assert_eq!(m0.computer_dns_name.as_deref(), Some(s0.computer_dns_name.as_str()));
    assert_eq!(m0.os_platform.as_deref(), Some(s0.os_platform));
    assert_eq!(m0.is_onboarded(), s0.is_onboarded());

    let (vulns, _, _) = all(c.vulnerabilities()).await.unwrap();
    assert_eq!(vulns.len(), t.vulnerabilities().len());
    let ids: HashSet<&str> = vulns.iter().map(|v| v.id.as_str()).collect();
    assert_eq!(ids.len(), vulns.len());

    let (alerts, _, _) = all(c.alerts()).await.unwrap();
    assert_eq!(alerts.len(), t.alerts().len());
    let ids: HashSet<&str> = alerts.iter().map(|a| a.id.as_str()).collect();
    assert_eq!(ids.len(), alerts.len());

    // Machine x vulnerability rows: stream page by page, count and check uniqueness.
    let total = t.total_machine_vulnerabilities();
    let mut p = c.machine_vulnerabilities();
    let mut n = 0u64;
    let mut seen = HashSet::new();
    while let Some(page) = p.next_page().await.unwrap() {
        assert!(page.len() <= 10_000);
        for r in page {
            assert!(r.machine_id.is_some() && r.cve_id.is_some());
            assert!(seen.insert(r.id), "duplicate row");
            n += 1;
        }
    }
    assert_eq!(n, total);
    let minimum = total / 10_000 + 1;
    assert!(p.pages() as u64 <= minimum, "{} pages for {total} rows", p.pages());

    let st = c.stats();
    assert_eq!(st.token_requests, 1, "one cached token for everything");
    assert_eq!(st.throttled, 0);
    assert_eq!(st.retries, 0);
    let counters = sim.counters();
    assert_eq!(counters.api("MachinesVulnerabilities").calls, st.api(Api::MachinesVulnerabilities).calls);
}

#[tokio::test]
async fn export_pager_follows_next_links() {
    let sim = sim(120).await;
    let total = sim.tenant().total_machine_vulnerabilities();
    let c = client_with(&sim, creds(&sim), ClientOptions { export_page_size: 1_000, ..fast() });
    let (rows, pages, dups) = all(c.export_machine_vulnerabilities()).await.unwrap();
    assert_eq!(rows.len() as u64, total);
    assert_eq!(pages as u64, total.div_ceil(1_000));
    assert_eq!(dups, 0);
    assert!(rows[0].device_id.is_some() && rows[0].last_seen_timestamp.is_some());
}

#[tokio::test]
async fn duplicate_ids_across_pages_are_dropped() {
    let sim = sim(10_500).await;
    sim.set_faults(faults(vec![rule(Some("ListMachines"), FaultEffect::DuplicateIds)]));
    let (machines, pages, dups) = all(client(&sim).machines()).await.unwrap();
    assert_eq!(pages, 2);
    assert_eq!(dups, 1);
    let ids: HashSet<&str> = machines.iter().map(|m| m.id.as_str()).collect();
    assert_eq!(ids.len(), machines.len());
    assert_eq!(machines.len(), sim.tenant().machines().len());
}

// ------------------------------------------------------------------ rate limits

/// The documented budget (100/min) with the simulator enforcing it: 105 polls of one action
/// need the client to hold the last five back for a minute. Takes about 61 s.
#[tokio::test]
async fn stays_under_the_documented_limit_without_server_help() {
    let sim = sim(60).await;
    let c = client(&sim);
    let m = sim
        .tenant()
        .machines()
        .iter()
        .find(|m| m.os_platform.starts_with("Windows1") && m.is_onboarded())
        .unwrap()
        .id
        .clone();
    let action = c.run_av_scan(&m, "limit test", ScanType::Quick).await.unwrap();
    let t0 = Instant::now();
    let mut tasks = Vec::new();
    for _ in 0..5 {
        let c = c.clone();
        let id = action.id.clone();
        tasks.push(tokio::spawn(async move {
            for _ in 0..21 {
                c.machine_action(&id).await.unwrap();
            }
        }));
    }
    for t in tasks {
        t.await.unwrap();
    }
    let counters = sim.counters();
    assert_eq!(counters.throttled, 0, "{counters:?}");
    assert_eq!(counters.api("GetMachineAction").calls, 105);
    let st = c.stats();
    assert_eq!(st.throttled, 0);
    assert!(st.api(Api::GetMachineAction).limiter_wait_ms > 0);
    assert!(t0.elapsed() >= Duration::from_secs(60));
}

#[tokio::test]
async fn limiter_waits_with_a_tight_budget() {
    let sim = sim(60).await;
    let c = client_with(
        &sim,
        creds(&sim),
        ClientOptions {
            rate_window: Duration::from_millis(500),
            rate_margin: Duration::from_millis(50),
            rate_limit_overrides: vec![(Api::ListAlerts, RateLimit::new(4, 1_000))],
            ..fast()
        },
    );
    let t0 = Instant::now();
    for _ in 0..9 {
        c.alerts().next_page().await.unwrap();
    }
    // 9 calls at 4 per 0.55 s: two waits.
    assert!(t0.elapsed() >= Duration::from_millis(1_100), "{:?}", t0.elapsed());
    let st = c.stats();
    assert!(st.api(Api::ListAlerts).limiter_wait_ms >= 900);
    assert_eq!(st.api(Api::ListAlerts).calls, 9);
    assert_eq!(sim.counters().throttled, 0);
}

// ------------------------------------------------------------------ retries

#[tokio::test]
async fn honours_429_with_and_without_retry_after() {
    let sim = sim(60).await;
    let c = client(&sim);
    sim.set_faults(faults(vec![FaultRule {
        times: Some(1),
        ..rule(Some("ListMachines"), FaultEffect::Throttle { retry_after: Some(1) })
    }]));
    let t0 = Instant::now();
    let (m, _, _) = all(c.machines()).await.unwrap();
    assert_eq!(m.len(), sim.tenant().machines().len());
    assert!(t0.elapsed() >= Duration::from_millis(950), "waited Retry-After");
    assert_eq!(c.stats().api(Api::ListMachines).throttled, 1);

    sim.set_faults(faults(vec![FaultRule {
        times: Some(2),
        ..rule(Some("ListAlerts"), FaultEffect::Throttle { retry_after: None })
    }]));
    let (a, _, _) = all(c.alerts()).await.unwrap();
    assert_eq!(a.len(), sim.tenant().alerts().len());
    let st = c.stats().api(Api::ListAlerts);
    assert_eq!((st.throttled, st.retries, st.calls), (2, 2, 3));

    // Persistent 429: bounded retries, then a typed error.
    sim.set_faults(faults(vec![rule(Some("ListVulnerabilities"), FaultEffect::Throttle { retry_after: None })]));
    let e = c.vulnerabilities().next_page().await.unwrap_err();
    assert_eq!(e, DefenderError::Throttled { retry_after_secs: None });
    assert_eq!(sim.counters().api("ListVulnerabilities").calls, 4);
}

#[tokio::test]
async fn server_errors_are_retried_then_reported() {
    let sim = sim(60).await;
    let c = client(&sim);
    sim.set_faults(faults(vec![FaultRule {
        times: Some(2),
        ..rule(Some("ListMachines"), FaultEffect::Status { status: 503 })
    }]));
    let (m, _, _) = all(c.machines()).await.unwrap();
    assert_eq!(m.len(), sim.tenant().machines().len());
    assert_eq!(c.stats().api(Api::ListMachines).retries, 2);

    sim.set_faults(faults(vec![rule(Some("ListAlerts"), FaultEffect::Status { status: 500 })]));
    let t0 = Instant::now();
    let e = c.alerts().next_page().await.unwrap_err();
    assert!(matches!(e, DefenderError::Api { status: 500, .. }), "{e:?}");
    assert!(e.is_transient());
    assert!(t0.elapsed() < Duration::from_secs(3));
    assert_eq!(sim.counters().api("ListAlerts").calls, 4, "1 + 3 retries");

    // Token endpoint hiccups are retried as well.
    sim.set_faults(faults(vec![FaultRule {
        times: Some(1),
        ..rule(Some("Token"), FaultEffect::Status { status: 503 })
    }]));
    let c = client(&sim);
    assert!(c.test_connection().await.unwrap().all_good());
    assert_eq!(c.stats().token_requests, 2);
}

#[tokio::test]
async fn refreshes_the_token_once_when_it_expires_mid_paging() {
    let sim = sim(10_500).await;
    let c = client(&sim);
    let mut p = c.machines();
    let first = p.next_page().await.unwrap().unwrap();
    assert_eq!(first.len(), 10_000);
    sim.invalidate_tokens();
    let mut n = first.len();
    while let Some(page) = p.next_page().await.unwrap() {
        n += page.len();
    }
    assert_eq!(n, sim.tenant().machines().len());
    let st = c.stats();
    assert_eq!(st.token_requests, 2);
    assert_eq!(st.token_refreshes_after_401, 1);
    assert_eq!(sim.counters().tokens_issued, 2);
}

#[tokio::test]
async fn short_lived_tokens_are_renewed_before_expiry() {
    let sim = sim(60).await;
    sim.set_faults(Faults { token_lifetime_secs: Some(2), ..Default::default() });
    let c = client(&sim);
    c.alerts().next_page().await.unwrap();
    c.alerts().next_page().await.unwrap();
    assert_eq!(c.stats().token_requests, 1, "cached");
    tokio::time::sleep(Duration::from_millis(1_100)).await;
    c.alerts().next_page().await.unwrap();
    // Renewed ahead of expiry (half of a short lifetime), so no 401 was needed.
    let st = c.stats();
    assert_eq!(st.token_requests, 2);
    assert_eq!(st.token_refreshes_after_401, 0);
}

// ------------------------------------------------------------------ bad answers

#[tokio::test]
async fn timeouts_are_bounded() {
    let sim = sim(60).await;
    let opts = ClientOptions { request_timeout: Duration::from_millis(300), max_retries: 1, ..fast() };
    let c = client_with(&sim, creds(&sim), opts);
    c.test_connection().await.unwrap();
    sim.set_faults(faults(vec![rule(Some("ListMachines"), FaultEffect::Delay { ms: 2_000 })]));
    let t0 = Instant::now();
    let e = c.machines().next_page().await.unwrap_err();
    assert_eq!(e, DefenderError::Timeout);
    assert!(t0.elapsed() < Duration::from_millis(1_500), "{:?}", t0.elapsed());

    sim.set_faults(faults(vec![rule(Some("ListAlerts"), FaultEffect::Stall { ms: Some(2_000) })]));
    let t0 = Instant::now();
    let e = c.alerts().next_page().await.unwrap_err();
    assert_eq!(e, DefenderError::Timeout);
    assert!(t0.elapsed() < Duration::from_millis(1_500), "{:?}", t0.elapsed());
    assert_eq!(c.stats().api(Api::ListAlerts).retries, 1);
}

#[tokio::test]
async fn malformed_answers_are_typed_errors() {
    let sim = sim(60).await;
    let c = client(&sim);
    for (api, effect) in [
        ("ListMachines", FaultEffect::Corrupt),
        ("ListMachines", FaultEffect::Truncate),
        ("ListMachines", FaultEffect::WrongTypes),
    ] {
        sim.set_faults(faults(vec![rule(Some(api), effect.clone())]));
        let e = c.machines().next_page().await.unwrap_err();
        match (&effect, &e) {
            (FaultEffect::WrongTypes, DefenderError::BadResponse(m)) => {
                assert!(m.contains("record 0") && m.contains("field `"), "{m}")
            }
            (_, DefenderError::BadResponse(m)) => assert!(m.contains("JSON"), "{m}"),
            _ => panic!("{effect:?} gave {e:?}"),
        }
        eprintln!("{effect:?}: {}", e.plain_words());
        assert!(e.is_transient());
    }
    sim.set_faults(faults(vec![rule(Some("ListAlerts"), FaultEffect::WrongTypes)]));
    assert!(matches!(c.alerts().next_page().await, Err(DefenderError::BadResponse(_))));
}

#[tokio::test]
async fn foreign_next_link_is_refused_without_fetching() {
    let sim = sim(60).await;
    let c = client_with(&sim, creds(&sim), ClientOptions { export_page_size: 200, ..fast() });
    sim.set_faults(faults(vec![rule(Some("ExportAssessmentJson"), FaultEffect::ForeignNextLink)]));
    let mut p = c.export_machine_vulnerabilities();
    let e = p.next_page().await.unwrap_err();
    assert_eq!(e, DefenderError::ForeignHost("https://api.defender-mirror.example.net".into()));
    assert_eq!(p.next_page().await.unwrap(), None, "finished after an error");
    assert_eq!(sim.counters().api("ExportAssessmentJson").calls, 1);
    assert_eq!(c.stats().calls, 1);
}

// ------------------------------------------------------------------ scripted server

/// A minimal HTTP/1.1 server answering every request with `respond(path_and_query)`;
/// counts connections.
struct Scripted {
    base: String,
    connections: Arc<AtomicUsize>,
}

async fn scripted(respond: impl Fn(&str, &str) -> (u16, String) + Send + Sync + 'static) -> Scripted {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    let connections = Arc::new(AtomicUsize::new(0));
    let count = connections.clone();
    let respond = Arc::new(respond);
    let me = base.clone();
    tokio::spawn(async move {
        while let Ok((mut sock, _)) = listener.accept().await {
            count.fetch_add(1, Ordering::SeqCst);
            let respond = respond.clone();
            let me = me.clone();
            tokio::spawn(async move {
                loop {
                    let mut buf = Vec::new();
                    let mut chunk = [0u8; 4096];
                    let head_end = loop {
                        let n = match sock.read(&mut chunk).await {
                            Ok(0) | Err(_) => return,
                            Ok(n) => n,
                        };
                        buf.extend_from_slice(&chunk[..n]);
                        if let Some(i) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
                            break i + 4;
                        }
                    };
                    let head = String::from_utf8_lossy(&buf[..head_end]).to_string();
                    let len: usize = head
                        .lines()
                        .find_map(|l| {
                            l.to_ascii_lowercase()
                                .strip_prefix("content-length:")
                                .map(|v| v.trim().parse().unwrap_or(0))
                        })
                        .unwrap_or(0);
                    while buf.len() < head_end + len {
                        let n = match sock.read(&mut chunk).await {
                            Ok(0) | Err(_) => return,
                            Ok(n) => n,
                        };
                        buf.extend_from_slice(&chunk[..n]);
                    }
                    let path = head.split_whitespace().nth(1).unwrap_or("/").to_string();
                    let (status, body) = respond(&me, &path);
                    let resp = format!(
                        "HTTP/1.1 {status} X\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}",
                        body.len()
                    );
                    if sock.write_all(resp.as_bytes()).await.is_err() {
                        return;
                    }
                }
            });
        }
    });
    Scripted { base, connections }
}

fn fake_token() -> String {
    use base64::Engine;
    let enc = |s: &str| base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(s);
    let payload = enc(r#"{"roles":["Machine.Read.All","Vulnerability.Read.All"],"tid":"t"}"#);
    format!(
        r#"{{"token_type":"Bearer","expires_in":"3599","access_token":"{}.{payload}.sig"}}"#,
        enc(r#"{"alg":"none"}"#)
    )
}

fn scripted_client(server: &Scripted) -> DefenderClient {
    let target = Target::custom(&server.base, &server.base, None).unwrap();
    DefenderClient::new(
        Credentials {
            tenant_id: "contoso.onmicrosoft.com".into(),
            client_id: "c".into(),
            client_secret: Secret::new("s"),
        },
        target,
        fast(),
    )
    .unwrap()
}

#[tokio::test]
async fn paging_loops_are_detected() {
    let server = scripted(|me, path| {
        if path.contains("/oauth2/") {
            return (200, fake_token());
        }
        if path.starts_with("/api/machines?") {
            // Always the same full page: a server ignoring $skip.
            let items: Vec<String> = (0..10_000).map(|i| format!(r#"{{"id":"{i:040x}"}}"#)).collect();
            return (200, format!(r#"{{"value":[{}]}}"#, items.join(",")));
        }
        // The export's next link points back at the page itself.
        (200, format!(r#"{{"value":[{{"id":"r1"}}],"@odata.nextLink":"{me}{path}"}}"#))
    })
    .await;
    let c = scripted_client(&server);
    let mut p = c.machines();
    assert_eq!(p.next_page().await.unwrap().unwrap().len(), 10_000);
    assert_eq!(p.next_page().await.unwrap_err(), DefenderError::PagingLoop);

    let mut p = c.export_machine_vulnerabilities();
    assert!(p.next_page().await.unwrap().is_some());
    assert_eq!(p.next_page().await.unwrap_err(), DefenderError::PagingLoop);
}

#[tokio::test]
async fn foreign_host_is_never_contacted() {
    // A second server that must never be contacted.
    let foreign = scripted(|_, _| (200, "{}".into())).await;
    let foreign_base = foreign.base.clone();
    let server = scripted(move |_, path| {
        if path.contains("/oauth2/") {
            return (200, fake_token());
        }
        (
            200,
            format!(
                r#"{{"value":[{{"id":"r1"}}],"@odata.nextLink":"{foreign_base}/api/machines/SoftwareVulnerabilitiesByMachine?$skiptoken=x"}}"#
            ),
        )
    })
    .await;
    let c = scripted_client(&server);
    let e = c.export_machine_vulnerabilities().next_page().await.unwrap_err();
    assert!(matches!(&e, DefenderError::ForeignHost(h) if h == &foreign.base), "{e:?}");
    // Even with $top paging, a foreign link in a page is an error, not silently ignored.
    let e = c.alerts().next_page().await.unwrap_err();
    assert!(matches!(&e, DefenderError::ForeignHost(_)), "{e:?}");
    assert_eq!(foreign.connections.load(Ordering::SeqCst), 0);
    assert!(server.connections.load(Ordering::SeqCst) >= 1);
}

// ------------------------------------------------------------------ actions

async fn wait_final(c: &DefenderClient, id: &str) -> String {
    for _ in 0..100 {
        let a = c.machine_action(id).await.unwrap();
        if a.is_final() {
            return a.status.unwrap();
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("action {id} never finished");
}

#[tokio::test]
async fn machine_action_lifecycle() {
    let sim = sim(200).await;
    let t = sim.tenant();
    let c = client(&sim);
    let win = t.machines().iter().find(|m| m.os_platform.starts_with("Windows1") && m.is_onboarded()).unwrap();

    let a = c.isolate(&win.id, "suspicious activity", IsolationType::Full).await.unwrap();
    assert_eq!(a.kind.as_deref(), Some("Isolate"));
    assert_eq!(a.status.as_deref(), Some("Pending"));
    assert_eq!(a.scope.as_deref(), Some("Full"));
    assert_eq!(a.requestor_comment.as_deref(), Some("suspicious activity"));
    assert_eq!(a.machine_id.as_deref(), Some(win.id.as_str()));
    // A second isolate while the first is pending.
    let e = c.isolate(&win.id, "again", IsolationType::Full).await.unwrap_err();
    assert_eq!(e, DefenderError::ActionAlreadyPending);
    assert_eq!(sim.counters().api("Isolate").calls, 2, "one request per call");
    assert_eq!(wait_final(&c, &a.id).await, "Succeeded");
    assert_eq!(sim.isolation_state(&win.id), Some(IsolationState::Isolated("Full")));

    let u = c.unisolate(&win.id, "all clear").await.unwrap();
    assert_eq!(u.kind.as_deref(), Some("Unisolate"));
    assert_eq!(wait_final(&c, &u.id).await, "Succeeded");
    assert_eq!(sim.isolation_state(&win.id), Some(IsolationState::NotIsolated));

    let s = c.run_av_scan(&win.id, "weekly", ScanType::Full).await.unwrap();
    assert_eq!(s.kind.as_deref(), Some("RunAntiVirusScan"));
    assert_eq!(s.scope.as_deref(), Some("Full"));
    assert_eq!(wait_final(&c, &s.id).await, "Succeeded");

    let list = c.machine_actions(&win.id).await.unwrap();
    let ids: Vec<&str> = list.iter().map(|a| a.id.as_str()).collect();
    assert_eq!(ids, vec![s.id.as_str(), u.id.as_str(), a.id.as_str()]);

    // Unsupported platforms (400 OsPlatformNotSupported) and clients (400 ClientVersionNotSupported),
    // each typed and explained in plain words.
    let phone = t.machines().iter().find(|m| matches!(m.os_platform, "iOS" | "Android") && m.is_onboarded()).unwrap();
    let e = c.run_av_scan(&phone.id, "x", ScanType::Quick).await.unwrap_err();
    assert!(matches!(e, DefenderError::OsNotSupported(_)), "{e:?}");
    assert!(e.plain_words().contains("does not support this action on this device's operating system"), "{e:?}");
    let linux = t.machines().iter().find(|m| m.os_platform == "Linux" && m.is_onboarded()).unwrap();
    let e = c.isolate(&linux.id, "x", IsolationType::Selective).await.unwrap_err();
    assert!(matches!(e, DefenderError::OsNotSupported(_)), "{e:?}");
    let old = t
        .machines()
        .iter()
        .find(|m| m.os_platform == "macOS" && m.agent_version.is_some_and(|v| v.starts_with("101.98.")))
        .unwrap();
    let e = c.run_av_scan(&old.id, "x", ScanType::Quick).await.unwrap_err();
    assert_eq!(
        e,
        DefenderError::ClientVersionNotSupported(
            "RunAntiVirusScan is supported on client version 101.98.84 and above.".into()
        )
    );
    assert!(e.plain_words().contains("needs a newer Defender client on the device"), "{e:?}");

    // Refused locally, nothing sent.
    let before = sim.counters().total_calls;
    assert!(matches!(c.isolate(&win.id, "   ", IsolationType::Full).await, Err(DefenderError::InvalidArgument(_))));
    assert!(matches!(
        c.isolate("not-an-id'or'1'='1", "x", IsolationType::Full).await,
        Err(DefenderError::InvalidArgument(_))
    ));
    assert!(matches!(c.machine_action("nope").await, Err(DefenderError::InvalidArgument(_))));
    assert_eq!(sim.counters().total_calls, before);
    assert_eq!(c.machine_action("00000000-0000-0000-0000-000000000000").await, Err(DefenderError::NotFound));
    assert!(c.machine_actions(&"0".repeat(40)).await.unwrap().is_empty(), "unknown machine: no actions");
}

#[tokio::test]
async fn failed_action_outcome_is_reported() {
    let sim = sim(60).await;
    sim.set_faults(Faults { action_outcome: Some(defender_sim::ActionOutcome::Failed), ..Default::default() });
    let c = client(&sim);
    let win = sim
        .tenant()
        .machines()
        .iter()
        .find(|m| m.os_platform.starts_with("Windows1") && m.is_onboarded())
        .unwrap()
        .id
        .clone();
    let a = c.run_av_scan(&win, "x", ScanType::Quick).await.unwrap();
    assert_eq!(wait_final(&c, &a.id).await, "Failed");
    // Action POSTs are not retried on 5xx: one click, one request.
    sim.set_faults(faults(vec![rule(Some("Isolate"), FaultEffect::Status { status: 503 })]));
    let e = c.isolate(&win, "x", IsolationType::Full).await.unwrap_err();
    assert!(matches!(e, DefenderError::Api { status: 503, .. }), "{e:?}");
    assert_eq!(sim.counters().api("Isolate").calls, 1);
}

#[tokio::test]
async fn a_token_the_api_keeps_refusing_is_refreshed_once() {
    let server = scripted(|_, path| {
        if path.contains("/oauth2/") {
            return (200, fake_token());
        }
        (401, r#"{"error":{"code":"Unauthorized","message":"Invalid token","target":"x"}}"#.into())
    })
    .await;
    let c = scripted_client(&server);
    let e = c.machines().next_page().await.unwrap_err();
    assert!(matches!(e, DefenderError::Api { status: 401, .. }), "{e:?}");
    let st = c.stats();
    assert_eq!(st.token_requests, 2);
    assert_eq!(st.token_refreshes_after_401, 1);
    assert_eq!(st.api(Api::ListMachines).calls, 2);
}

#[tokio::test]
async fn list_404_means_empty_and_token_errors_without_entra_body() {
    let server = scripted(|_, path| {
        if path.contains("/oauth2/") {
            return (200, fake_token());
        }
        (404, r#"{"error":{"code":"ResourceNotFound","message":"No machines found","target":"x"}}"#.into())
    })
    .await;
    let c = scripted_client(&server);
    assert_eq!(c.machines().next_page().await.unwrap(), None);

    // A sign-in URL that is not Entra (plain 404 without an error body).
    let not_entra = scripted(|_, _| (404, "not here".into())).await;
    let e = scripted_client(&not_entra).test_connection().await.unwrap_err();
    assert!(matches!(e, DefenderError::BadResponse(_)), "{e:?}");
}
