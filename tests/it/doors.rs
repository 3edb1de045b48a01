//! The doors an attacker tried (docs/security.md, "Attacks tried"): each test replays one attack
//! over real HTTP against the running application (and the simulator, or a hostile server of
//! the test's own) and shows that it no longer works.
//!
//! Long because each attack is replayed whole, from the attacker's first request to the proof
//! that it fails.

use std::io::{Read, Write};
use std::net::TcpListener;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use diesel::prelude::*;
use endpoint_analytics::auth::Role;
use endpoint_analytics::db::schema::{audit_log, sessions};
use serde_json::{Value, json};

use crate::helpers::*;

/// A plain TCP listener that records what reaches it and answers every request with an Entra-
/// like error: a stand-in for an attacker's host. Returns its base URL, how many connections it
/// took, and the bytes it received.
fn listener() -> (String, Arc<AtomicUsize>, Arc<std::sync::Mutex<Vec<u8>>>) {
    let l = TcpListener::bind("127.0.0.1:0").unwrap();
    let base = format!("http://{}", l.local_addr().unwrap());
    let (hits, seen) = (Arc::new(AtomicUsize::new(0)), Arc::new(std::sync::Mutex::new(Vec::new())));
    let (h, s) = (hits.clone(), seen.clone());
    std::thread::spawn(move || {
        for conn in l.incoming() {
            let Ok(mut conn) = conn else { continue };
            h.fetch_add(1, Ordering::SeqCst);
            conn.set_read_timeout(Some(Duration::from_millis(500))).ok();
            let mut buf = [0u8; 16384];
            if let Ok(n) = conn.read(&mut buf) {
                s.lock().unwrap().extend_from_slice(&buf[..n]);
            }
            let body =
                r#"{"error":"invalid_client","error_description":"AADSTS7000215: Invalid client secret provided."}"#;
            let _ = write!(
                conn,
                "HTTP/1.1 401 Unauthorized\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
                body.len()
            );
        }
    });
    (base, hits, seen)
}

/// An HTTP server that answers every request with 200 and a body of `len` bytes of JSON-looking
/// text, sent in chunks without a length (or announcing it, when `announce`).
async fn hostile_server(len: usize, announce: bool) -> String {
    let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = format!("http://{}", l.local_addr().unwrap());
    tokio::spawn(async move {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        loop {
            let Ok((mut conn, _)) = l.accept().await else { return };
            tokio::spawn(async move {
                let mut buf = vec![0u8; 16384];
                let _ = conn.read(&mut buf).await;
                let head = if announce {
                    format!("HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: {len}\r\n\r\n")
                } else {
                    "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nConnection: close\r\n\r\n".to_owned()
                };
                if conn.write_all(head.as_bytes()).await.is_err() {
                    return;
                }
                let chunk = vec![b' '; 64 * 1024];
                let mut sent = 0;
                while sent < len {
                    let n = chunk.len().min(len - sent);
                    if conn.write_all(&chunk[..n]).await.is_err() {
                        return;
                    }
                    sent += n;
                }
            });
        }
    });
    base
}

async fn count(app: &TestApp, table: &'static str) -> i64 {
    app.db
        .run(move |c| {
            Ok(match table {
                "sessions" => sessions::table.count().get_result::<i64>(c)?,
                _ => audit_log::table.count().get_result::<i64>(c)?,
            })
        })
        .await
        .unwrap()
}

async fn audit_rows(app: &TestApp, action: &str) -> Vec<(String, String, String, String)> {
    let action = action.to_owned();
    app.db
        .run(move |c| {
            Ok(audit_log::table
                .filter(audit_log::action.eq(action))
                .order(audit_log::id.asc())
                .select((audit_log::actor, audit_log::target, audit_log::outcome, audit_log::details))
                .load(c)?)
        })
        .await
        .unwrap()
}

// ------------------------------------------------------------------ the two confirmed holes

/// Hole 1: accounts made by Entra sign-in have no password; the password form swapped their
/// empty hash for the timing dummy, whose phrase was a constant in the source, and let it in.
#[tokio::test]
async fn a_password_never_opens_an_account_made_by_entra() {
    let sim = crate::sso::sso_simulator().await;
    let app = spawn_app().await;
    app.enable_sso(&sim).await;
    let entra_users = [
        "adele.admin@contoso.onmicrosoft.com",
        "omar.operator@contoso.onmicrosoft.com",
        "ana.analyst@contoso.onmicrosoft.com",
    ];
    for who in entra_users {
        let client = browser();
        assert_eq!(crate::sso::sign_in_through_entra(&app, &client, who).await.status(), 303, "{who} via Entra");
        assert_eq!(app.post_form(&client, "/logout", &[]).await.status(), 303);
    }
    // The phrase the dummy hash was made of until this fix, an empty and a blank password, and
    // the test suite's password.
    let guesses = ["not a real password, only for timing", "", " ", PASSWORD];
    let try_all = async |when: &str| {
        for who in entra_users {
            for guess in guesses {
                let client = browser();
                let res = app.login(&client, who, guess).await;
                assert_ne!(res.status(), 303, "{when}: {who} with {guess:?} must not sign in");
                assert!(client.get(app.url("/")).send().await.unwrap().status() != 200, "{when}: not signed in");
            }
        }
    };
    try_all("sign-in with Microsoft enabled").await;
    let mut off = crate::sso::sso_input(&sim);
    off.enabled = false;
    off.client_secret.clear();
    crate::sso::configure_sso(&app.db, &app.state.secrets, off).await;
    try_all("sign-in with Microsoft disabled").await;
}

/// Hole 2: an Operator's Test Connection took every address from the form and sent the stored
/// secret to it.
#[tokio::test]
async fn an_operator_tests_only_the_saved_settings_and_the_secret_goes_nowhere_else() {
    let sim = defender_sim::start(defender_sim::SimConfig { machines: 20, ..Default::default() }).await.unwrap();
    let app = spawn_app().await;
    app.enable_defender(&sim).await;
    app.wait_for_sync(Duration::from_secs(60)).await;
    let (evil, hits, seen) = listener();
    let operator = app.login_as("olga", Role::Operator).await;
    let attack = [
        ("tenant_id", sim.tenant_id.as_str()),
        ("client_id", sim.client_id.as_str()),
        ("cloud", "commercial"),
        ("login_base_url", evil.as_str()),
        ("api_base_url", evil.as_str()),
        ("client_secret", ""),
    ];
    let res = app.post_form(&operator, "/config/integrations/defender/test", &attack).await;
    assert_eq!(res.status(), 200);
    let body = res.text().await.unwrap();
    std::thread::sleep(Duration::from_millis(300));
    assert_eq!(hits.load(Ordering::SeqCst), 0, "the operator's addresses are never contacted");
    assert!(!String::from_utf8_lossy(&seen.lock().unwrap()).contains(&sim.client_secret));
    assert!(body.contains("Token acquired") || body.contains("granted"), "the saved settings were tested: {body}");
    let tests = audit_rows(&app, "defender.test").await;
    let (actor, _, _, details) = tests.last().expect("the test is audited");
    assert_eq!(actor, "olga");
    let sim_host = sim.base_url.trim_start_matches("http://").trim_end_matches('/');
    assert!(details.contains(sim_host), "the audit entry names the hosts contacted: {details}");

    // An admin may test unsaved settings, but the stored secret never follows a new host.
    let admin = app.login_as("alice", Role::Admin).await;
    let res = app.post_form(&admin, "/config/integrations/defender/test", &attack).await;
    let body = res.text().await.unwrap();
    assert!(body.contains("Enter the client secret"), "{body}");
    std::thread::sleep(Duration::from_millis(300));
    assert_eq!(hits.load(Ordering::SeqCst), 0, "nothing is sent to a new host without a new secret");
    // With the secret typed again, the test goes where the admin said (and only that secret).
    let mut typed = attack.to_vec();
    typed.retain(|(k, _)| *k != "client_secret");
    typed.push(("client_secret", "typed-by-the-admin"));
    let res = app.post_form(&admin, "/config/integrations/defender/test", &typed).await;
    assert_eq!(res.status(), 200);
    std::thread::sleep(Duration::from_millis(300));
    assert!(hits.load(Ordering::SeqCst) >= 1);
    let got = String::from_utf8_lossy(&seen.lock().unwrap()).into_owned();
    assert!(got.contains("typed-by-the-admin") && !got.contains(&sim.client_secret), "{got}");
}

// ------------------------------------------------------------------ the doors beside them

/// Changing where the secret goes (sign-in host, tenant, client, cloud, API host) needs the
/// secret again, on the page and in the API, for Defender and for Entra sign-in; plain http
/// only to loopback.
#[tokio::test]
async fn moving_a_secret_needs_the_secret() {
    let sim = defender_sim::start(defender_sim::SimConfig { machines: 5, ..Default::default() }).await.unwrap();
    let app = spawn_app().await;
    let mut saved = defender_settings(&sim);
    saved.enabled = false;
    app.enable_defender_with(saved.clone()).await;
    let (evil, hits, _) = listener();
    let admin = app.login_as("alice", Role::Admin).await;
    let token = app.token(Role::Admin).await;
    let base = |changed: (&'static str, String)| {
        let mut f: Vec<(&'static str, String)> = vec![
            ("tenant_id", saved.tenant_id.clone()),
            ("client_id", saved.client_id.clone()),
            ("cloud", "commercial".into()),
            ("login_base_url", saved.login_base_url.clone()),
            ("api_base_url", saved.api_base_url.clone()),
            ("client_secret", String::new()),
            ("sync_interval_minutes", "60".into()),
        ];
        f.retain(|(k, _)| *k != changed.0);
        f.push(changed);
        f
    };
    for change in [
        ("login_base_url", evil.clone()),
        ("api_base_url", evil.clone()),
        ("tenant_id", "11111111-2222-3333-4444-555555555555".to_owned()),
        ("client_id", "11111111-2222-3333-4444-666666666666".to_owned()),
        ("cloud", "gcc".to_owned()),
    ] {
        let what = change.0;
        let fields = base(change);
        let pairs: Vec<(&str, &str)> = fields.iter().map(|(k, v)| (*k, v.as_str())).collect();
        let res = app.post_form(&admin, "/config/integrations/defender", &pairs).await;
        assert_eq!(res.status(), 400, "page: changing {what} without the secret");
        assert!(res.text().await.unwrap().contains("Enter the client secret again"), "{what}");
        let body: serde_json::Map<String, Value> = fields
            .iter()
            .map(|(k, v)| ((*k).to_owned(), json!(v)))
            .filter(|(k, _)| k != "sync_interval_minutes")
            .collect();
        let res = reqwest::Client::new()
            .put(app.url("/api/v1/integrations/defender"))
            .bearer_auth(&token)
            .json(&body)
            .send()
            .await
            .unwrap();
        assert_eq!(res.status(), 400, "API: changing {what} without the secret");
        let v: Value = res.json().await.unwrap();
        assert!(v.to_string().contains("client_secret"), "{v}");
    }
    let stored = app.db.run(|c| Ok(endpoint_analytics::defender::settings::load(c)?)).await.unwrap().unwrap();
    assert_eq!(stored.login_base_url, saved.login_base_url.trim_end_matches('/').to_owned() + "/");
    assert_eq!(hits.load(Ordering::SeqCst), 0);

    // Plain http only to a loopback host, on both integrations.
    let fields = base(("login_base_url", "http://login.example.com".into()));
    let mut fields: Vec<(&str, &str)> = fields.iter().map(|(k, v)| (*k, v.as_str())).collect();
    fields.retain(|(k, _)| *k != "client_secret");
    fields.push(("client_secret", "a-new-secret"));
    let res = app.post_form(&admin, "/config/integrations/defender", &fields).await;
    assert_eq!(res.status(), 400, "plain http to another host");

    // Entra sign-in: authority, tenant or client changed without the secret.
    app.enable_sso(&sim).await;
    let i = crate::sso::sso_input(&sim);
    for (what, tenant, client, authority) in [
        ("authority", i.tenant_id.clone(), i.client_id.clone(), evil.clone()),
        ("tenant", "11111111-2222-3333-4444-555555555555".into(), i.client_id.clone(), i.authority.clone()),
        ("client", i.tenant_id.clone(), "11111111-2222-3333-4444-666666666666".into(), i.authority.clone()),
    ] {
        let res = app
            .post_form(
                &admin,
                "/config/sso",
                &[
                    ("tenant_id", &tenant),
                    ("client_id", &client),
                    ("authority", &authority),
                    ("admin_values", "EndpointAnalytics.Admin"),
                    ("enabled", "on"),
                ],
            )
            .await;
        assert_eq!(res.status(), 400, "Entra: changing the {what} without the secret");
        assert!(res.text().await.unwrap().contains("Enter the client secret again"), "{what}");
    }
    assert_eq!(hits.load(Ordering::SeqCst), 0);
}

/// 200 wrong guesses at once cost the attacker as much as 200 in a row: each attempt is counted
/// before its password is checked, and no more Argon2 checks run at once than allowed.
#[tokio::test]
async fn a_parallel_burst_of_guesses_checks_no_more_than_the_limit() {
    let dir = tempfile::tempdir().unwrap();
    let database = TestDatabase::new(dir.path());
    let p = crate::process::Proc::start_with(dir.path(), &database.url, &[("EA_METRICS_ALLOW", "127.0.0.1")]).await;
    let db = crate::process::open_db(&database.url).await;
    db.run(|c| {
        endpoint_analytics::accounts::create_user(c, "alice", PASSWORD, Role::Admin).map_err(|e| anyhow::anyhow!("{e}"))
    })
    .await
    .unwrap();
    let peak = || crate::load::status_kib(p.pid(), "VmHWM:");
    let before = peak();
    let client = browser();
    let html = client.get(p.url("/login")).send().await.unwrap().text().await.unwrap();
    let csrf = attr(&doc(&html), "input[name=csrf_token]", "value").unwrap();
    let mut burst = Vec::new();
    for i in 0..200 {
        let (c, url, csrf) = (client.clone(), p.url("/login"), csrf.clone());
        burst.push(tokio::spawn(async move {
            let guess = format!("wrong guess number {i}");
            c.post(url)
                .form(&[("username", "alice"), ("password", &guess), ("csrf_token", &csrf)])
                .send()
                .await
                .map(|r| r.status().as_u16())
        }));
    }
    let mut statuses = std::collections::BTreeMap::new();
    for b in burst {
        *statuses.entry(b.await.unwrap().expect("an answer")).or_insert(0) += 1;
    }
    assert!(statuses.keys().all(|s| [401, 429, 503].contains(s)), "{statuses:?}");
    let metrics = reqwest::get(p.url("/metrics")).await.unwrap().text().await.unwrap();
    let checks = crate::metrics::sum(&crate::metrics::samples(&metrics), "ea_password_checks_total", &[]);
    assert!(checks <= 5.0, "at most login_max_failures (5) guesses were checked, not {checks} ({statuses:?})");
    let grown = peak().saturating_sub(before);
    assert!(grown < 100 * 1024, "peak memory stayed bounded: grew {grown} KiB");
    // The wait grows from about a second: the right password works again within seconds.
    let started = Instant::now();
    loop {
        let res = client
            .post(p.url("/login"))
            .form(&[("username", "alice"), ("password", PASSWORD), ("csrf_token", &csrf)])
            .send()
            .await
            .unwrap();
        if res.status() == 303 {
            break;
        }
        assert_eq!(res.status(), 429, "refused only while the wait runs");
        let retry: u64 = res.headers().get("retry-after").expect("Retry-After").to_str().unwrap().parse().unwrap();
        assert!((1..=4).contains(&retry), "the first waits are short: {retry} s");
        assert!(started.elapsed() < Duration::from_secs(10), "the admin is not locked out for long");
        tokio::time::sleep(Duration::from_secs(retry) + Duration::from_millis(200)).await;
    }
}

/// Growing waits per user name: each failure past the free ones doubles the wait, attempts
/// during a wait are refused without being checked, and a success starts over.
#[tokio::test]
async fn failed_sign_ins_make_the_next_attempt_wait_longer_and_longer() {
    let app = spawn_app().await;
    app.add_user("bob", Role::Analyst).await;
    let client = browser();
    for _ in 0..5 {
        assert_eq!(app.login(&client, "bob", "wrong password!").await.status(), 401);
    }
    let mut waits = Vec::new();
    for _ in 0..3 {
        let res = app.login(&client, "bob", "wrong password!").await;
        assert_eq!(res.status(), 429);
        let wait: u64 = res.headers()["retry-after"].to_str().unwrap().parse().unwrap();
        waits.push(wait);
        tokio::time::sleep(Duration::from_secs(wait) + Duration::from_millis(200)).await;
        assert_eq!(app.login(&client, "bob", "wrong password!").await.status(), 401, "after the wait: checked");
    }
    assert!(waits[1] >= waits[0] * 2 - 1 && waits[2] >= waits[1] * 2 - 1, "doubling: {waits:?}");
    let res = app.login(&client, "bob", PASSWORD).await;
    assert_eq!(res.status(), 429, "even the right password waits");
    let wait: u64 = res.headers()["retry-after"].to_str().unwrap().parse().unwrap();
    tokio::time::sleep(Duration::from_secs(wait) + Duration::from_millis(200)).await;
    assert_eq!(app.login(&client, "bob", PASSWORD).await.status(), 303);
    assert_eq!(app.login(&browser(), "bob", "wrong password!").await.status(), 401, "a success starts over");
}

/// `X-Forwarded-For` and `Forwarded` are believed only from the proxies in `trusted_proxies`;
/// throttling, the audit log and the `/metrics` allow-list use the client behind them.
#[tokio::test]
async fn forwarded_addresses_are_believed_only_from_trusted_proxies() {
    let untrusted = spawn_app_with(|s| s.metrics_allow = vec!["203.0.113.7".into()]).await;
    untrusted.add_user("carol", Role::Analyst).await;
    let via = |ip: &'static str| {
        reqwest::Client::builder()
            .redirect(reqwest::redirect::Policy::none())
            .cookie_store(true)
            .default_headers(
                [(reqwest::header::HeaderName::from_static("x-forwarded-for"), ip.parse().unwrap())]
                    .into_iter()
                    .collect(),
            )
            .build()
            .unwrap()
    };
    assert_eq!(untrusted.login(&via("203.0.113.7"), "carol", "wrong password!").await.status(), 401);
    let rows = audit_rows(&untrusted, "login").await;
    assert_eq!(rows.last().unwrap().1, "127.0.0.1", "a client's X-Forwarded-For is not believed");
    let m = via("203.0.113.7").get(untrusted.url("/metrics")).send().await.unwrap();
    assert_eq!(m.status(), 401, "nor for /metrics");

    let app = spawn_app_with(|s| {
        s.trusted_proxies = vec!["127.0.0.1/32".into()];
        s.metrics_allow = vec!["203.0.113.7".into()];
    })
    .await;
    app.add_user("carol", Role::Analyst).await;
    assert_eq!(app.login(&via("198.51.100.1, 203.0.113.7"), "carol", "wrong password!").await.status(), 401);
    let rows = audit_rows(&app, "login").await;
    assert_eq!(rows.last().unwrap().1, "203.0.113.7", "the proxy's word is taken: the nearest untrusted hop");
    assert_eq!(via("203.0.113.7").get(app.url("/metrics")).send().await.unwrap().status(), 200);
    assert_eq!(via("198.51.100.1").get(app.url("/metrics")).send().await.unwrap().status(), 401);
    // A client's own Forwarded header, passed on by a proxy that appends X-Forwarded-For: only
    // the family the proxies are configured to write is read (red-team finding).
    let spoofed = via("198.51.100.1").get(app.url("/metrics")).header("forwarded", "for=203.0.113.7").send().await;
    assert_eq!(spoofed.unwrap().status(), 401, "the other header family is the client's");
    let rfc = spawn_app_with(|s| {
        s.trusted_proxies = vec!["127.0.0.1/32".into()];
        s.proxy_header = "forwarded".into();
        s.metrics_allow = vec!["203.0.113.7".into()];
    })
    .await;
    let forwarded = reqwest::Client::new()
        .get(rfc.url("/metrics"))
        .header("forwarded", "for=203.0.113.7;proto=https")
        .header("x-forwarded-for", "198.51.100.1")
        .send()
        .await
        .unwrap();
    assert_eq!(forwarded.status(), 200, "Forwarded, when the proxies are configured to write it");
    // Many user names from one client behind the proxy: that client waits, another does not.
    for i in 0..20 {
        let res = app.login(&via("192.0.2.10"), &format!("nobody{i}"), "wrong password!").await;
        assert_eq!(res.status(), 401, "attempt {i}");
    }
    assert_eq!(app.login(&via("192.0.2.10"), "nobody-else", "wrong password!").await.status(), 429);
    assert_eq!(app.login(&via("192.0.2.11"), "nobody-else", "wrong password!").await.status(), 401);
}

/// Anonymous requests that start nothing write nothing: the sign-in page, a stray way back
/// from Entra, and repeated refusals (counted, one row per burst).
#[tokio::test]
async fn anonymous_noise_writes_no_rows() {
    let sim = crate::sso::sso_simulator().await;
    let app = spawn_app().await;
    let analyst = app.login_as("ann", Role::Analyst).await;
    let (sessions_before, audit_before) = (count(&app, "sessions").await, count(&app, "audit").await);
    for _ in 0..20 {
        assert_eq!(browser().get(app.url("/login")).send().await.unwrap().status(), 200);
        let stray = browser().get(app.url("/login/entra/callback?code=abc&state=def")).send().await.unwrap();
        assert_eq!(stray.status(), 303);
        assert_eq!(browser().get(app.url("/login/entra/callback")).send().await.unwrap().status(), 303);
    }
    app.enable_sso(&sim).await;
    let audit_before = audit_before + 1;
    for _ in 0..20 {
        let stray = browser().get(app.url("/login/entra/callback?code=abc&state=def")).send().await.unwrap();
        assert_eq!(stray.status(), 303);
    }
    // Starting a sign-in with Microsoft, and Entra's own errors coming back, store nothing
    // either (the pending sign-in travels in a sealed cookie; red-team finding).
    for _ in 0..10 {
        let client = browser();
        let authorize = crate::sso::start(&app, &client).await;
        let state = crate::sso::param(&authorize, "state").unwrap();
        let back = format!("/login/entra/callback?state={state}&error=access_denied&error_description=no");
        assert_eq!(client.get(app.url(&back)).send().await.unwrap().status(), 303);
    }
    assert_eq!(count(&app, "sessions").await, sessions_before, "no session rows");
    assert!(count(&app, "audit").await <= audit_before + 1, "Entra's refusals: one row per address and minute");
    // The sign-in form still works from a page that stored nothing.
    assert_eq!(app.login(&browser(), "ann", PASSWORD).await.status(), 303);
    // A waiting address trying new user names: counted per waiting key, not per typed name.
    for i in 0..20 {
        app.login(&browser(), &format!("guess{i}"), "wrong password!").await;
    }
    let mut refused = 0;
    for i in 0..40 {
        let res = app.login(&browser(), &format!("fresh-name-{i}"), "wrong password!").await;
        refused += usize::from(res.status() == 429);
    }
    assert!(refused >= 20, "the address waits ({refused} of 40 refused)");
    let waiting = audit_rows(&app, "login").await.into_iter().filter(|(_, _, _, d)| d == "waiting").count();
    assert!(waiting <= 2, "{waiting} rows for {refused} refusals of a waiting address");

    // An analyst hammering an admin page: counted, not one row each.
    let before = audit_rows(&app, "access.denied").await.len();
    for _ in 0..50 {
        assert_eq!(analyst.get(app.url("/users")).send().await.unwrap().status(), 403);
    }
    tokio::time::sleep(Duration::from_millis(300)).await;
    let rows = audit_rows(&app, "access.denied").await;
    assert!(rows.len() - before <= 1, "{} rows for 50 refusals", rows.len() - before);
    app.state.refusals.flush(&app.db).await;
    let rows = audit_rows(&app, "access.denied").await;
    assert!(rows.len() - before <= 2);
    assert!(rows.iter().any(|(_, _, _, d)| d.contains("49 more")), "{rows:?}");
}

/// Every answer read from Defender, Entra and a key set has a size cap, and past it the
/// operation fails cleanly, in words.
#[tokio::test]
async fn outbound_answers_are_size_capped() {
    let sim = defender_sim::start(defender_sim::SimConfig { machines: 5, ..Default::default() }).await.unwrap();
    let app = spawn_app().await;
    let admin = app.login_as("alice", Role::Admin).await;
    let fields = |login: &str, api: &str| {
        vec![
            ("tenant_id", sim.tenant_id.clone()),
            ("client_id", sim.client_id.clone()),
            ("client_secret", sim.client_secret.clone()),
            ("login_base_url", login.to_owned()),
            ("api_base_url", api.to_owned()),
        ]
    };
    // A sign-in host that answers the token request with 2 MiB (cap: 1 MiB), with and without
    // announcing the length.
    for announce in [false, true] {
        let huge_login = hostile_server(2 << 20, announce).await;
        let f = fields(&huge_login, &sim.base_url);
        let pairs: Vec<(&str, &str)> = f.iter().map(|(k, v)| (*k, v.as_str())).collect();
        let res = app.post_form(&admin, "/config/integrations/defender/test", &pairs).await;
        let body = res.text().await.unwrap();
        assert!(body.contains("more than 1 MiB"), "token answer too large (announced {announce}): {body}");
    }
    // An API host that answers with 80 MiB (cap: 64 MiB).
    let huge_api = hostile_server(80 << 20, false).await;
    let f = fields(&sim.base_url, &huge_api);
    let pairs: Vec<(&str, &str)> = f.iter().map(|(k, v)| (*k, v.as_str())).collect();
    let started = Instant::now();
    let body = app.post_form(&admin, "/config/integrations/defender/test", &pairs).await.text().await.unwrap();
    assert!(body.contains("more than 64 MiB"), "API answer too large: {body}");
    assert!(started.elapsed() < Duration::from_secs(60));
    // Entra: a discovery document of 2 MiB.
    let huge = hostile_server(2 << 20, false).await;
    let mut sso = crate::sso::sso_input(&sim);
    sso.authority = huge;
    crate::sso::configure_sso(&app.db, &app.state.secrets, sso).await;
    let client = browser();
    let res = client.get(app.url("/login/entra")).send().await.unwrap();
    assert_eq!(res.status(), 303);
    let to = crate::sso::location(&res);
    let page = client.get(app.url(&to)).send().await.unwrap().text().await.unwrap();
    assert!(page.contains("more than 1 MiB"), "{page}");
}

// ------------------------------------------------------------------ smaller items

/// Line breaks and bidirectional overrides from a caller end up escaped in the log and the
/// audit log, never as a forged line or reordered text.
#[tokio::test]
async fn control_characters_and_bidi_overrides_are_escaped_in_logs_and_the_audit_log() {
    let sim = crate::sso::sso_simulator().await;
    let dir = tempfile::tempdir().unwrap();
    let database = TestDatabase::new(dir.path());
    let p = crate::process::Proc::start_with(dir.path(), &database.url, &[("EA_LOG_FORMAT", "text")]).await;
    let db = crate::process::open_db(&database.url).await;
    let input = crate::sso::sso_input(&sim);
    let key = endpoint_analytics::config::Settings {
        master_key: Some(crate::process::MASTER_KEY.into()),
        ..Default::default()
    }
    .master_key()
    .unwrap();
    let secrets = endpoint_analytics::secrets::SecretBox::new(&key);
    crate::sso::configure_sso(&db, &secrets, input).await;
    let client = browser();
    let res = client.get(p.url("/login/entra")).send().await.unwrap();
    let authorize = crate::sso::location(&res);
    let state = crate::sso::param(&authorize, "state").unwrap();
    let forged = "access_denied\r\n2026-12-06T00:00:00Z  INFO forged: admin signed in\u{202e}txt.exe\u{1b}[8m\u{2028}";
    let mut url = url::Url::parse(&p.url("/login/entra/callback")).unwrap();
    url.query_pairs_mut().append_pair("state", &state).append_pair("error", forged);
    assert_eq!(client.get(url).send().await.unwrap().status(), 303);
    // The sign-in form with a bidi override in the user name.
    let html = client.get(p.url("/login")).send().await.unwrap().text().await.unwrap();
    let csrf = attr(&doc(&html), "input[name=csrf_token]", "value").unwrap();
    client
        .post(p.url("/login"))
        .form(&[("username", "mallory\u{202e}nimda"), ("password", "wrong password!"), ("csrf_token", &csrf)])
        .send()
        .await
        .unwrap();
    tokio::time::sleep(Duration::from_millis(300)).await;
    let log = p.log();
    assert!(log.contains("access_denied"), "the refusal is logged: {log}");
    assert!(!log.lines().any(|l| l.starts_with("2026-12-06T00:00:00Z")), "no forged line: {log}");
    assert!(log.contains("access_denied\\u000d\\u000a2026-12-06T00:00:00Z"), "the line break is shown escaped");
    assert!(!log.contains('\u{202e}'), "no raw bidi override in the log");
    assert!(!log.contains('\u{1b}') && !log.contains('\u{2028}'), "no raw ESC or line separator in a file log");
    let audit: Vec<(String, String)> =
        db.run(|c| Ok(audit_log::table.select((audit_log::actor, audit_log::details)).load(c)?)).await.unwrap();
    assert!(audit.iter().any(|(a, _)| a.starts_with("mallory")), "{audit:?}");
    for (a, d) in &audit {
        assert!(!a.contains('\u{202e}') && !d.contains('\u{202e}') && !d.contains('\n'), "{a:?} {d:?}");
    }
}

/// An admin's password reset ends the sessions the user had.
#[tokio::test]
async fn a_password_reset_ends_the_users_sessions() {
    let app = spawn_app().await;
    let admin = app.login_as("alice", Role::Admin).await;
    let bob = app.login_as("bob", Role::Analyst).await;
    assert_eq!(bob.get(app.url("/")).send().await.unwrap().status(), 200);
    let id =
        app.db.run(|c| Ok(endpoint_analytics::db::models::users::find_by_name(c, "bob")?.unwrap().id)).await.unwrap();
    let res =
        app.post_form(&admin, &format!("/users/{id}/password"), &[("password", "a brand new passphrase 7")]).await;
    assert_eq!(res.status(), 200);
    assert_eq!(bob.get(app.url("/")).send().await.unwrap().status(), 303, "bob's old session is over");
    assert_eq!(admin.get(app.url("/")).send().await.unwrap().status(), 200, "the admin's own is not");
}

/// Weak passwords are judged by a real estimator with a large list of common passwords.
#[tokio::test]
async fn common_and_guessable_passwords_are_refused() {
    let app = spawn_app().await;
    let admin = app.login_as("alice", Role::Admin).await;
    for (i, weak) in [
        "Password2024!",
        "qwertyuiop123",
        "iloveyou1234",
        "Welcome2026!",
        "Passw0rd1234",
        "trustno1trustno1",
        "P@ssw0rd2026!!",
        "Summer2026!Summer",
        "endpointanalytics1",
    ]
    .iter()
    .enumerate()
    {
        let name = format!("user{i}");
        let res =
            app.post_form(&admin, "/users", &[("username", &name), ("password", weak), ("role", "analyst")]).await;
        assert_eq!(res.status(), 400, "{weak} is refused");
    }
    let res =
        app.post_form(&admin, "/users", &[("username", "dave"), ("password", PASSWORD), ("role", "analyst")]).await;
    assert_eq!(res.status(), 200, "a passphrase is fine");
}

/// An API token acts for its creator: never above the creator's current role, and not at all
/// once the creator is disabled.
#[tokio::test]
async fn api_tokens_follow_their_creator() {
    let app = spawn_app().await;
    let root = app.login_as("root", Role::Admin).await;
    let alice = app.login_as("alice", Role::Admin).await;
    let res = app.post_form(&alice, "/tokens", &[("name", "automation"), ("role", "admin")]).await;
    assert_eq!(res.status(), 200);
    let html = doc(&res.text().await.unwrap());
    let token = select_all(&html, "#new-token code.token").concat();
    assert!(token.starts_with("ea_"), "the new token is shown once");
    let admin_route = async |t: &str| {
        reqwest::Client::new()
            .put(app.url("/api/v1/integrations/defender"))
            .bearer_auth(t)
            .json(&json!({}))
            .send()
            .await
            .unwrap()
            .status()
            .as_u16()
    };
    assert_eq!(admin_route(&token).await, 400, "an admin token reaches admin routes");
    let id =
        app.db.run(|c| Ok(endpoint_analytics::db::models::users::find_by_name(c, "alice")?.unwrap().id)).await.unwrap();
    assert_eq!(app.post_form(&root, &format!("/users/{id}/role"), &[("role", "analyst")]).await.status(), 200);
    assert_eq!(admin_route(&token).await, 403, "no more than the creator's current role");
    let read = reqwest::Client::new().get(app.url("/api/v1/endpoints")).bearer_auth(&token).send().await.unwrap();
    assert_eq!(read.status(), 200, "what the creator may still do");
    assert_eq!(app.post_form(&root, &format!("/users/{id}/disabled"), &[("disabled", "true")]).await.status(), 200);
    let read = reqwest::Client::new().get(app.url("/api/v1/endpoints")).bearer_auth(&token).send().await.unwrap();
    assert_eq!(read.status(), 401, "a disabled creator's tokens stop working");
}

/// An idempotency key answers with the earlier action only for the same caller and endpoint.
#[tokio::test]
async fn idempotency_keys_belong_to_their_caller_and_endpoint() {
    let (app, _sim, _admin) = crate::actions::synced().await;
    let a = app.token(Role::Operator).await;
    let b = app.token(Role::Admin).await;
    let (e1, _) = crate::actions::endpoint_of(&app, &["Windows10", "Windows11"], true).await;
    let e2 = app
        .db
        .run(move |c| {
            use endpoint_analytics::db::schema::defender_machines as dm;
            Ok(dm::table
                .filter(dm::os_platform.eq_any(["Windows10", "Windows11"]))
                .filter(dm::onboarding_status.eq("Onboarded"))
                .filter(dm::stale.eq(false))
                .filter(dm::endpoint_id.is_not_null())
                .filter(dm::endpoint_id.ne(e1))
                .select(dm::endpoint_id)
                .first::<Option<i64>>(c)?
                .unwrap())
        })
        .await
        .unwrap();
    let post = async |token: &str, endpoint: i64| {
        let body = json!({"action": "scan", "scope": "Quick", "comment": "playbook", "idempotency_key": "shared-key-000000001"});
        let res = reqwest::Client::new()
            .post(app.url(&format!("/api/v1/endpoints/{endpoint}/actions")))
            .bearer_auth(token)
            .json(&body)
            .send()
            .await
            .unwrap();
        (res.status().as_u16(), res.json::<Value>().await.unwrap())
    };
    let (status, first) = post(&a, e1).await;
    assert_eq!(status, 202);
    let (status, again) = post(&a, e1).await;
    assert_eq!((status, &again["id"]), (202, &first["id"]), "the same caller and endpoint: the same action");
    let (_, other_endpoint) = post(&a, e2).await;
    assert_ne!(other_endpoint["id"], first["id"], "another endpoint: not the first endpoint's action");
    assert_eq!(other_endpoint["endpoint_id"], json!(e2));
    let (status, other_caller) = post(&b, e1).await;
    assert!(other_caller["id"] != first["id"], "another caller does not get the first caller's action ({status})");
}

/// A batch over the item cap is refused while it is parsed, before it is built.
#[tokio::test]
async fn an_observation_batch_over_the_cap_is_refused_while_it_is_parsed() {
    let app = spawn_app().await;
    let token = app.token(Role::Operator).await;
    let mut body = String::from("[");
    for i in 0..10_001 {
        body.push_str(&format!("{{\"ip\":\"10.0.{}.{}\"}},", i / 250, i % 250 + 1));
    }
    // The array never ends well: only a parser that stops at the cap says why it was refused.
    body.push_str("{\"ip\": this is not JSON");
    let res = reqwest::Client::new()
        .post(app.url("/api/v1/observations"))
        .bearer_auth(&token)
        .header("content-type", "application/json")
        .body(body)
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 400);
    let text = res.text().await.unwrap();
    assert!(text.contains("at most 10000") || text.contains("at most 10,000"), "{text}");
}

/// The Actions tab does not wait on Defender's rate limiter without bound.
#[tokio::test]
async fn the_actions_tab_answers_promptly_when_defender_is_rate_limited() {
    let sim = defender_sim::start(defender_sim::SimConfig { machines: 10, ..Default::default() }).await.unwrap();
    let options = endpoint_analytics::defender::ClientOptions {
        rate_limit_overrides: vec![(
            endpoint_analytics::defender::Api::ListMachineActions,
            // The sync reads isolations and releases with two calls of this budget; the tab's
            // first view takes the third.
            endpoint_analytics::defender::RateLimit::new(3, 60),
        )],
        connect_timeout: Duration::from_secs(2),
        request_timeout: Duration::from_secs(20),
        ..Default::default()
    };
    let app = spawn_app_with_client(|_| {}, options).await;
    app.enable_defender(&sim).await;
    app.wait_for_sync(Duration::from_secs(60)).await;
    let (endpoint, _) = crate::actions::endpoint_of(&app, &["Windows10", "Windows11"], true).await;
    let analyst = app.login_as("ann", Role::Analyst).await;
    let tab = format!("/endpoints/{endpoint}/tabs/actions");
    assert_eq!(analyst.get(app.url(&tab)).send().await.unwrap().status(), 200);
    let started = Instant::now();
    let res = analyst.get(app.url(&tab)).send().await.unwrap();
    assert_eq!(res.status(), 200);
    let body = res.text().await.unwrap();
    assert!(started.elapsed() < Duration::from_secs(6), "answered in {:?}", started.elapsed());
    assert!(body.contains("rate limit") || body.contains("busy"), "{body}");
}

/// Cookies are `Secure` (and the session cookie `__Host-`) unless the server listens on loopback.
#[tokio::test]
async fn cookies_are_secure_unless_the_server_listens_on_loopback() {
    let app = spawn_app_with(|s| s.bind = "0.0.0.0:0".into()).await;
    app.add_user("alice", Role::Admin).await;
    let port = app.base.rsplit(':').next().unwrap().to_owned();
    let base = format!("http://127.0.0.1:{port}");
    // reqwest keeps no Secure cookie over plain http: the test carries the cookies itself.
    let set_cookies = |res: &reqwest::Response| -> Vec<String> {
        res.headers().get_all("set-cookie").iter().map(|v| v.to_str().unwrap().to_owned()).collect()
    };
    let client = script_client();
    let page = client.get(format!("{base}/login")).send().await.unwrap();
    let mut cookies = set_cookies(&page);
    let html = page.text().await.unwrap();
    let csrf = attr(&doc(&html), "input[name=csrf_token]", "value").unwrap();
    let jar: Vec<String> = cookies.iter().map(|c| c.split(';').next().unwrap().to_owned()).collect();
    let res = client
        .post(format!("{base}/login"))
        .header("cookie", jar.join("; "))
        .form(&[("username", "alice"), ("password", PASSWORD), ("csrf_token", &csrf)])
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 303, "signed in");
    cookies.extend(set_cookies(&res));
    assert!(cookies.iter().any(|c| c.starts_with("__Host-ea_session=")), "{cookies:?}");
    assert!(cookies.iter().all(|c| c.contains("Secure")), "{cookies:?}");
    let local = spawn_app().await;
    let res = browser().get(local.url("/login")).send().await.unwrap();
    assert!(res.headers().get_all("set-cookie").iter().all(|c| !c.to_str().unwrap().contains("Secure")));
}

/// Red-team finding: two admins saving at once could leave the stored secret beside another
/// admin's hosts. Saving is now one transaction, and a secret is sealed with its destination:
/// a row whose hosts changed beside the secret (however it came about) never opens it there.
#[tokio::test]
async fn a_secret_beside_hosts_it_was_not_saved_for_never_goes_there() {
    let sim = defender_sim::start(defender_sim::SimConfig { machines: 5, ..Default::default() }).await.unwrap();
    let app = spawn_app().await;
    let mut saved = defender_settings(&sim);
    saved.enabled = false;
    app.enable_defender_with(saved).await;
    let (evil, hits, seen) = listener();
    let evil_url = format!("{evil}/");
    app.db
        .run(move |c| {
            use endpoint_analytics::db::schema::integration_config as ic;
            Ok(diesel::update(ic::table)
                .set((ic::login_base_url.eq(&evil_url), ic::api_base_url.eq(&evil_url)))
                .execute(c)?)
        })
        .await
        .unwrap();
    let operator = app.login_as("olga", Role::Operator).await;
    let body = app.post_form(&operator, "/config/integrations/defender/test", &[]).await.text().await.unwrap();
    assert!(body.contains("enter it again"), "{body}");
    let token = app.token(Role::Admin).await;
    let res = reqwest::Client::new()
        .post(app.url("/api/v1/integrations/defender/test"))
        .bearer_auth(&token)
        .send()
        .await
        .unwrap();
    assert!(res.text().await.unwrap().contains("enter it again"));
    std::thread::sleep(Duration::from_millis(300));
    assert_eq!(hits.load(Ordering::SeqCst), 0, "nothing went to the hosts the secret was not saved for");
    assert!(!String::from_utf8_lossy(&seen.lock().unwrap()).contains(&sim.client_secret));
}

/// Red-team finding: a guesser who keeps an account waiting must not lock its owner out. A
/// browser in which the owner signed in before (its device cookie) is throttled on its own.
#[tokio::test]
async fn the_owners_browser_signs_in_while_a_guesser_keeps_the_account_waiting() {
    let app = spawn_app().await;
    app.add_user("bob", Role::Admin).await;
    let owner = browser();
    assert_eq!(app.login(&owner, "bob", PASSWORD).await.status(), 303, "bob signs in once in his browser");
    assert_eq!(app.post_form(&owner, "/logout", &[]).await.status(), 303);
    let guesser = browser();
    let mut waited = false;
    for _ in 0..12 {
        let status = app.login(&guesser, "bob", "wrong password!").await.status();
        waited |= status == 429;
        if waited {
            break;
        }
    }
    assert!(waited, "the guesser is made to wait");
    assert_eq!(app.login(&browser(), "bob", PASSWORD).await.status(), 429, "an unknown browser waits too");
    assert_eq!(app.login(&owner, "bob", PASSWORD).await.status(), 303, "bob's browser is not held up");
    assert_eq!(app.login(&guesser, "bob", "wrong password!").await.status(), 429, "the guesser still waits");
}
