//! Red-team tests for issue 21's events out, from a fresh-context review: each failed on the
//! code it was written against (a lost lease delivering twice, an oversized event blocking a
//! feed, an IPv6 syslog receiver, concurrent edits undoing each other, a narrowed filter
//! applied late, plain http across the internet, an audit log that did not say where events
//! go).

use std::time::{Duration, Instant};

use diesel::prelude::*;
use endpoint_analytics::auth::Role;
use endpoint_analytics::db::models::{destinations, events};
use serde_json::{Value, json};

use crate::events::{Receiver, observations};
use crate::helpers::*;

const SECRET: &str = "a-webhook-secret-of-32-characters";

async fn call(
    app: &TestApp,
    token: &str,
    method: reqwest::Method,
    path: &str,
    body: Option<Value>,
) -> reqwest::Response {
    let mut r = reqwest::Client::new().request(method, app.url(path)).bearer_auth(token);
    if let Some(b) = body {
        r = r.json(&b);
    }
    r.send().await.unwrap()
}

async fn create(app: &TestApp, admin: &str, body: Value) -> i64 {
    let res = call(app, admin, reqwest::Method::POST, "/api/v1/destinations", Some(body)).await;
    assert_eq!(res.status(), 201);
    res.json::<Value>().await.unwrap()["id"].as_i64().unwrap()
}

async fn statuses(app: &TestApp, id: i64) -> Vec<String> {
    let log = app.db.run(move |c| Ok(destinations::deliveries_of(c, id, 1000)?)).await.unwrap();
    log.into_iter().map(|d| format!("{} {}", d.status, d.detail)).collect()
}

/// A webhook receiver that answers 200 after `delay`; what it got, as the `field` of each body.
async fn receiver(delay: Duration, field: &'static str) -> (String, impl Fn() -> Vec<String>) {
    let r = Receiver::start(0, delay).await;
    let url = r.url.clone();
    (url, move || r.events().iter().map(|e| e[field].as_str().unwrap_or_default().to_owned()).collect())
}

/// An event whose texts are far over a datagram (Defender's error code of a hostile answer)
/// neither blocks a UDP syslog destination nor the events after it.
#[tokio::test]
async fn an_oversized_event_does_not_block_a_udp_syslog_destination() {
    let app = spawn_app().await;
    let admin = app.token(Role::Admin).await;
    let operator = app.token(Role::Operator).await;
    let udp = tokio::net::UdpSocket::bind("127.0.0.1:0").await.unwrap();
    create(&app, &admin, json!({"name": "siem", "kind": "syslog-udp", "url": udp.local_addr().unwrap().to_string()}))
        .await;
    let huge = "A".repeat(70_000);
    app.db
        .run(move |c| {
            let data = json!({ "run": 1, "error": huge });
            Ok(events::record_with(c, events::kinds::SYNC_FAILED, &[(None, format!("The sync failed: {huge}"), data)])?)
        })
        .await
        .unwrap();
    assert_eq!(app.ingest(&operator, &observations(1, "after")).await.status(), 200);
    let mut buf = vec![0u8; 70_000];
    let mut got = Vec::new();
    while got.len() < 2 {
        let n = tokio::time::timeout(Duration::from_secs(15), udp.recv(&mut buf)).await.expect("a datagram").unwrap();
        assert!(n <= 2048, "a datagram of {n} bytes");
        got.push(String::from_utf8_lossy(&buf[..n]).to_string());
    }
    assert!(got[0].contains(" defender.sync_failed "), "{}", &got[0][..200]);
    assert!(got[1].contains(" endpoint.created "), "{}", got[1]);
    // And the stored event is bounded too (what a webhook would carry).
    let longest: i64 = app
        .db
        .run(|c| {
            use endpoint_analytics::db::schema::events as e;
            let rows: Vec<(String, String)> = e::table.select((e::message, e::data)).load(c)?;
            Ok(rows.iter().map(|(m, d)| m.len().max(d.len()) as i64).max().unwrap_or(0))
        })
        .await
        .unwrap();
    assert!(longest < 8_000, "an event of {longest} bytes was stored");
}

/// A UDP syslog receiver on an IPv6 address gets its events.
#[tokio::test]
async fn a_udp_syslog_receiver_on_ipv6_gets_its_events() {
    let Ok(udp) = tokio::net::UdpSocket::bind("[::1]:0").await else {
        eprintln!("no IPv6 loopback here; skipped");
        return;
    };
    let app = spawn_app().await;
    let admin = app.token(Role::Admin).await;
    let operator = app.token(Role::Operator).await;
    let id =
        create(&app, &admin, json!({"name": "v6", "kind": "syslog-udp", "url": udp.local_addr().unwrap().to_string()}))
            .await;
    assert_eq!(app.ingest(&operator, &observations(1, "v6")).await.status(), 200);
    let mut buf = vec![0u8; 4096];
    let got = tokio::time::timeout(Duration::from_secs(15), udp.recv(&mut buf)).await;
    assert!(got.is_ok(), "no datagram; the log says {:?}", statuses(&app, id).await);
}

/// Two changes of one destination at once (a disable, a rename) both apply.
#[tokio::test]
async fn concurrent_changes_of_a_destination_both_apply() {
    let app = spawn_app().await;
    let admin = app.token(Role::Admin).await;
    let id = create(&app, &admin, json!({"name": "d", "kind": "syslog-udp", "url": "127.0.0.1:9"})).await;
    let path = format!("/api/v1/destinations/{id}");
    for round in 0..15 {
        let r = call(&app, &admin, reqwest::Method::PATCH, &path, Some(json!({"enabled": true}))).await;
        assert_eq!(r.status(), 200);
        let (disable, rename) = tokio::join!(
            call(&app, &admin, reqwest::Method::PATCH, &path, Some(json!({"enabled": false}))),
            call(&app, &admin, reqwest::Method::PATCH, &path, Some(json!({"name": format!("r{round}")}))),
        );
        assert_eq!((disable.status().as_u16(), rename.status().as_u16()), (200, 200));
        let now: Value =
            call(&app, &admin, reqwest::Method::GET, "/api/v1/destinations", None).await.json().await.unwrap();
        let d = &now["items"][0];
        assert_eq!(
            (d["enabled"].clone(), d["name"].clone()),
            (json!(false), json!(format!("r{round}"))),
            "round {round}"
        );
    }
}

/// Narrowing a destination's event types applies to the events still waiting, at once.
#[tokio::test]
async fn a_narrowed_filter_applies_to_the_waiting_events_at_once() {
    let app = spawn_app().await;
    let admin = app.token(Role::Admin).await;
    let operator = app.token(Role::Operator).await;
    let (url, got) = receiver(Duration::from_millis(200), "type").await;
    let id = create(
        &app,
        &admin,
        json!({"name": "hook", "kind": "webhook", "url": url, "secret": SECRET, "event_types": ["endpoint.created"]}),
    )
    .await;
    assert_eq!(app.ingest(&operator, &observations(30, "narrow")).await.status(), 200);
    let deadline = Instant::now() + Duration::from_secs(30);
    while got().is_empty() {
        assert!(Instant::now() < deadline, "nothing delivered");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let body = json!({"event_types": ["defender.sync_failed"]});
    let r = call(&app, &admin, reqwest::Method::PATCH, &format!("/api/v1/destinations/{id}"), Some(body)).await;
    assert_eq!(r.status(), 200);
    let at_change = got().len();
    tokio::time::sleep(Duration::from_secs(3)).await;
    let after = got().len() - at_change;
    assert!(after <= 1, "{after} events sent against the new filter");
}

/// Plain http only on the local network; the audit log says where events go (host only).
#[tokio::test]
async fn plain_http_stays_local_and_the_audit_log_says_where_events_go() {
    let app = spawn_app().await;
    let admin = app.token(Role::Admin).await;
    let refused = call(
        &app,
        &admin,
        reqwest::Method::POST,
        "/api/v1/destinations",
        Some(json!({"name": "far", "kind": "webhook", "url": "http://siem.example.com/h", "secret": SECRET})),
    )
    .await;
    assert_eq!(refused.status(), 400);
    // Second review: a fully qualified public name is not local; a NUL (which PostgreSQL cannot
    // store) or a line break in the URL is refused, not a 500; a CA field holding a private key
    // is refused (it would be stored and shown again).
    for (url, kind, ca) in [
        ("http://com./h", "webhook", None),
        ("https://siem.example.com/\u{0}", "webhook", None),
        ("https://siem.example.com/a\nb", "webhook", None),
        ("siem.example.com:6514", "syslog-tls", Some("-----BEGIN PRIVATE KEY-----\nAAAA\n-----END PRIVATE KEY-----\n")),
        ("siem.example.com:514", "syslog-tcp", None),
        ("203.0.113.7:514", "syslog-udp", None),
    ] {
        let mut body = json!({"name": "bad", "kind": kind, "url": url, "secret": SECRET});
        if let Some(ca) = ca {
            body["ca_pem"] = json!(ca);
        }
        let res = call(&app, &admin, reqwest::Method::POST, "/api/v1/destinations", Some(body)).await;
        assert_eq!(res.status(), 400, "{url:?}: {}", res.text().await.unwrap());
    }
    for url in
        ["http://10.1.2.3/h", "http://siem/h", "http://siem.corp.internal/h", "https://siem.example.com/h?token=abc"]
    {
        let name = url.replace(['/', ':', '?', '='], "-");
        create(&app, &admin, json!({"name": name, "kind": "webhook", "url": url, "secret": SECRET})).await;
    }
    let audit = app.db.run(|c| Ok(endpoint_analytics::db::models::audit::page(c, None, 50)?)).await.unwrap();
    let details: Vec<String> =
        audit.into_iter().filter(|a| a.action == "destination.create").map(|a| a.details).collect();
    assert!(details.iter().any(|d| d.contains("to https://siem.example.com")), "{details:?}");
    assert!(!details.iter().any(|d| d.contains("token=abc")), "the URL's query reached the audit log: {details:?}");
}

/// Concurrent creates of one name answer 201 or 409, never 500.
#[tokio::test]
async fn concurrent_creates_of_one_name_answer_201_or_409() {
    let app = spawn_app().await;
    let admin = app.token(Role::Admin).await;
    let mut tasks = Vec::new();
    for i in 0..40 {
        let (base, admin) = (app.base.clone(), admin.clone());
        tasks.push(tokio::spawn(async move {
            let body = json!({"name": format!("same{}", i / 4), "kind": "syslog-udp", "url": "127.0.0.1:514"});
            let r = reqwest::Client::new().post(format!("{base}/api/v1/destinations")).bearer_auth(&admin).json(&body);
            r.send().await.unwrap().status().as_u16()
        }));
    }
    for t in tasks {
        let s = t.await.unwrap();
        assert!(s == 201 || s == 409, "{s}");
    }
}

/// PostgreSQL: the session that holds a destination's lease dies (a restart, a timeout, a
/// firewall) and another instance takes the destination over: the first stops before sending,
/// so each event is delivered once.
#[tokio::test]
async fn a_lost_lease_stops_the_worker_before_it_sends_again() {
    if backend() != "postgres" {
        return;
    }
    let app1 = spawn_app().await;
    let admin = app1.token(Role::Admin).await;
    let operator = app1.token(Role::Operator).await;
    let (url, got) = receiver(Duration::from_millis(200), "id").await;
    let body =
        json!({"name": "hook", "kind": "webhook", "url": url, "secret": SECRET, "event_types": ["endpoint.created"]});
    create(&app1, &admin, body).await;
    // One endpoint of its own (the MAC and address are not among the 20 below).
    let warm = json!([{"mac": "02:00:00:02:00:00", "ip": "10.2.0.1", "hostname": "warm.corp.example",
        "seen_at": "2026-11-01T10:00:00Z"}]);
    assert_eq!(app1.ingest(&operator, &warm).await.status(), 200);
    let deadline = Instant::now() + Duration::from_secs(30);
    while got().is_empty() {
        assert!(Instant::now() < deadline, "the first event was not delivered");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    // The lease's session dies; a second instance starts on the same database.
    let _app2 = lose_leases_to_another_instance(&app1).await;
    tokio::time::sleep(Duration::from_secs(2)).await;
    let already = got().len();
    assert_eq!(app1.ingest(&operator, &observations(20, "dup")).await.status(), 200);
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let mut unique = got()[already..].to_vec();
        unique.sort();
        unique.dedup();
        if unique.len() >= 20 {
            break;
        }
        assert!(Instant::now() < deadline, "only {} of 20 events arrived", unique.len());
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    tokio::time::sleep(Duration::from_secs(1)).await;
    let ids = got()[already..].to_vec();
    let mut unique = ids.clone();
    unique.sort();
    unique.dedup();
    assert_eq!(ids.len(), unique.len(), "events delivered twice: {ids:?}");
}
