//! Events out (issue 21): the outbox delivered to a loopback webhook receiver and to loopback
//! syslog listeners, over real HTTP, UDP and TCP, on either backend.
//!
//! The receiver checks each request's HMAC signature (over the timestamp and the body), the
//! order of each endpoint's events, that a 500 is retried with the same event id, and, with the
//! real binary killed mid-delivery, that no event is lost (duplicates carry the same id).

use std::collections::{BTreeMap, BTreeSet};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use endpoint_analytics::auth::{Role, hash_api_token, new_api_token};
use endpoint_analytics::db::models::api_tokens;
use hmac::{Hmac, Mac};
use serde_json::{Value, json};
use sha2::Sha256;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use crate::helpers::*;
use crate::process::{Proc, db_url, open_db};

const SECRET: &str = "a-webhook-secret-of-32-characters";

/// One request the receiver got: headers (lower-case names) and body.
#[derive(Clone, Debug)]
pub(crate) struct Received {
    headers: BTreeMap<String, String>,
    body: Vec<u8>,
}

/// A loopback webhook receiver: answers 500 to the first `fail_first` requests, then 200
/// (after `delay`).
#[derive(Clone)]
pub(crate) struct Receiver {
    pub(crate) url: String,
    got: Arc<Mutex<Vec<Received>>>,
}

impl Receiver {
    pub(crate) async fn start(fail_first: usize, delay: Duration) -> Receiver {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}/hook?x=1", listener.local_addr().unwrap());
        let got: Arc<Mutex<Vec<Received>>> = Arc::default();
        let seen = got.clone();
        tokio::spawn(async move {
            loop {
                let (mut sock, _) = listener.accept().await.unwrap();
                let seen = seen.clone();
                tokio::spawn(async move {
                    let Some(r) = read_request(&mut sock).await else { return };
                    tokio::time::sleep(delay).await;
                    let n = {
                        let mut all = seen.lock().unwrap();
                        all.push(r);
                        all.len()
                    };
                    let status = if n <= fail_first { "500 Internal Server Error" } else { "200 OK" };
                    let answer = format!("HTTP/1.1 {status}\r\ncontent-length: 0\r\nconnection: close\r\n\r\n");
                    let _ = sock.write_all(answer.as_bytes()).await;
                });
            }
        });
        Receiver { url, got }
    }

    pub(crate) fn got(&self) -> Vec<Received> {
        self.got.lock().unwrap().clone()
    }

    /// The bodies received, as JSON.
    pub(crate) fn events(&self) -> Vec<Value> {
        self.got().iter().map(|r| serde_json::from_slice(&r.body).unwrap()).collect()
    }
}

async fn read_request(sock: &mut tokio::net::TcpStream) -> Option<Received> {
    let mut buf = Vec::new();
    let mut chunk = [0u8; 4096];
    let head_end = loop {
        let n = sock.read(&mut chunk).await.ok()?;
        if n == 0 {
            return None;
        }
        buf.extend_from_slice(&chunk[..n]);
        if let Some(i) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            break i + 4;
        }
    };
    let head = String::from_utf8_lossy(&buf[..head_end]).to_string();
    let headers: BTreeMap<String, String> = head
        .lines()
        .skip(1)
        .filter_map(|l| l.split_once(':'))
        .map(|(k, v)| (k.trim().to_ascii_lowercase(), v.trim().to_owned()))
        .collect();
    let len: usize = headers.get("content-length").and_then(|l| l.parse().ok()).unwrap_or(0);
    while buf.len() < head_end + len {
        let n = sock.read(&mut chunk).await.ok()?;
        if n == 0 {
            return None;
        }
        buf.extend_from_slice(&chunk[..n]);
    }
    Some(Received { headers, body: buf[head_end..head_end + len].to_vec() })
}

/// Checks the request's signature as a receiver would.
pub(crate) fn signed(r: &Received, secret: &str) -> bool {
    let (Some(ts), Some(sig)) = (r.headers.get("x-ea-timestamp"), r.headers.get("x-ea-signature")) else {
        return false;
    };
    let Some(hex_sig) = sig.strip_prefix("sha256=") else { return false };
    let mut mac = Hmac::<Sha256>::new_from_slice(secret.as_bytes()).unwrap();
    mac.update(format!("{ts}.").as_bytes());
    mac.update(&r.body);
    mac.verify_slice(&hex::decode(hex_sig).unwrap_or_default()).is_ok()
}

pub(crate) fn observations(n: usize, prefix: &str) -> Value {
    Value::Array(
        (0..n)
            .map(|i| {
                json!({
                    "mac": format!("02:00:00:00:{:02x}:{:02x}", i >> 8 & 0xff, i & 0xff),
                    "ip": format!("10.0.{}.{}", i >> 8 & 0xff, i & 0xff),
                    "hostname": format!("{prefix}-{i:04}.corp.example"),
                    "dhcp_vendor_class": "MSFT 5.0",
                    "seen_at": "2026-11-01T10:00:00Z",
                })
            })
            .collect(),
    )
}

async fn call(base: &str, token: &str, method: reqwest::Method, path: &str, body: Option<Value>) -> reqwest::Response {
    let mut r = reqwest::Client::new().request(method, format!("{base}{path}")).bearer_auth(token);
    if let Some(b) = body {
        r = r.json(&b);
    }
    r.send().await.unwrap()
}

async fn wait_until(what: &str, timeout: Duration, mut done: impl FnMut() -> bool) {
    let deadline = Instant::now() + timeout;
    while !done() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test]
async fn a_webhook_gets_signed_events_in_order_and_a_500_is_retried_under_the_same_id() {
    let app = spawn_app().await;
    let admin = app.token(Role::Admin).await;
    let operator = app.token(Role::Operator).await;
    let hook = Receiver::start(2, Duration::ZERO).await;
    let post = |body: Value| call(&app.base, &admin, reqwest::Method::POST, "/api/v1/destinations", Some(body));

    // Bad input is a 400 that says why; nothing is created.
    for (bad, why) in [
        (json!({"name": "x", "kind": "webhook", "url": hook.url, "secret": "short"}), "secret"),
        (json!({"name": "x", "kind": "webhook", "url": "http://user:pw@127.0.0.1/", "secret": SECRET}), "url"),
        (json!({"name": "x", "kind": "webhook", "url": "ftp://127.0.0.1/", "secret": SECRET}), "url"),
        (json!({"name": "x", "kind": "webhook", "url": hook.url}), "secret"),
        (
            json!({"name": "x", "kind": "webhook", "url": hook.url, "secret": SECRET, "event_types": ["nope"]}),
            "event_types",
        ),
        (json!({"name": "x", "kind": "syslog-udp", "url": "no port"}), "url"),
        (json!({"name": "x", "kind": "pager"}), "kind"),
    ] {
        let res = post(bad.clone()).await;
        assert_eq!(res.status(), 400, "{bad}");
        assert!(res.headers()["content-type"].to_str().unwrap().starts_with("application/problem+json"));
        let problem: Value = res.json().await.unwrap();
        assert!(problem["detail"].as_str().unwrap().contains(why), "{bad}: {problem}");
    }

    let res = post(json!({
        "name": "SIEM hook", "kind": "webhook", "url": hook.url, "secret": SECRET,
        "event_types": ["endpoint.created", "profile.changed"],
    }))
    .await;
    assert_eq!(res.status(), 201);
    let text = res.text().await.unwrap();
    assert!(!text.contains(SECRET), "the secret is never returned: {text}");
    let dest: Value = serde_json::from_str(&text).unwrap();
    assert_eq!(dest["secret_configured"], true);
    let id = dest["id"].as_i64().unwrap();
    assert_eq!(post(json!({"name": "SIEM hook", "kind": "syslog-udp", "url": "127.0.0.1:514"})).await.status(), 409);

    assert_eq!(app.ingest(&operator, &observations(20, "hook")).await.status(), 200);
    // Two 500s first: the first event arrives three times, then everything once.
    wait_until("20 endpoints", Duration::from_secs(60), || {
        hook.events()
            .iter()
            .filter(|e| e["type"] == "endpoint.created")
            .map(|e| e["id"].to_string())
            .collect::<BTreeSet<_>>()
            .len()
            == 20
    })
    .await;
    let got = hook.got();
    assert!(got.iter().all(|r| signed(r, SECRET)), "every request carries a valid signature");
    assert!(!got.iter().any(|r| signed(r, "another secret of some length")));
    assert!(got.iter().all(|r| r.headers["x-ea-event-id"] == serde_json::from_slice::<Value>(&r.body).unwrap()["id"]));
    let events = hook.events();
    assert_eq!(events[0]["id"], events[1]["id"], "a retry carries the same event id");
    assert_eq!(events[1]["id"], events[2]["id"]);
    assert!(events.iter().all(|e| ["endpoint.created", "profile.changed"].contains(&e["type"].as_str().unwrap())));
    // Each endpoint's events arrive in the order they happened (ids rise, retries aside).
    let mut last: BTreeMap<i64, i64> = BTreeMap::new();
    for e in &events[2..] {
        let (ep, eid) = (e["endpoint"].as_i64().unwrap(), e["id"].as_str().unwrap().parse::<i64>().unwrap());
        assert!(last.get(&ep).is_none_or(|&prev| prev < eid), "endpoint {ep}: {eid} after {:?}", last.get(&ep));
        last.insert(ep, eid);
        assert!(chrono::DateTime::parse_from_rfc3339(e["time"].as_str().unwrap()).is_ok());
    }

    // The delivery log shows the two failures and the delivery of the same event.
    let log = app.api_get(&admin, &format!("/api/v1/destinations/{id}/deliveries")).await;
    let items = log["items"].as_array().unwrap();
    let first = events[0]["id"].as_str().unwrap().parse::<i64>().unwrap();
    let of_first: Vec<&Value> = items.iter().filter(|d| d["event_id"] == first).collect();
    assert_eq!(of_first.len(), 3, "{log}");
    assert_eq!(of_first.iter().filter(|d| d["status"] == "failed" && d["detail"] == "HTTP 500").count(), 2);

    // "Send test event".
    let res = call(&app.base, &admin, reqwest::Method::POST, &format!("/api/v1/destinations/{id}/test"), None).await;
    assert_eq!(res.status(), 200);
    assert_eq!(res.json::<Value>().await.unwrap()["ok"], true);
    // (Other events may still be arriving beside it.)
    let tests: Vec<Received> = hook
        .got()
        .into_iter()
        .filter(|r| serde_json::from_slice::<Value>(&r.body).unwrap()["type"] == "test")
        .collect();
    assert_eq!(tests.len(), 1);
    assert!(signed(&tests[0], SECRET));

    // Changing the URL needs the secret again; the rest can change alone.
    let path = format!("/api/v1/destinations/{id}");
    let res =
        call(&app.base, &admin, reqwest::Method::PATCH, &path, Some(json!({"url": "http://127.0.0.1:9/x"}))).await;
    assert_eq!(res.status(), 400);
    let res = call(&app.base, &admin, reqwest::Method::PATCH, &path, Some(json!({"min_level": "High"}))).await;
    assert_eq!(res.status(), 200);
    assert_eq!(res.json::<Value>().await.unwrap()["min_level"], "High");
    // The secret is in no answer and no audit entry.
    let list = call(&app.base, &admin, reqwest::Method::GET, "/api/v1/destinations", None).await.text().await.unwrap();
    assert!(list.contains("SIEM hook") && !list.contains(SECRET));
    let audit =
        app.login_as("auditor", Role::Admin).await.get(app.url("/audit")).send().await.unwrap().text().await.unwrap();
    assert!(audit.contains("destination.create") && !audit.contains(SECRET));
    assert_eq!(call(&app.base, &admin, reqwest::Method::DELETE, &path, None).await.status(), 204);
    assert_eq!(call(&app.base, &admin, reqwest::Method::GET, &format!("{path}/deliveries"), None).await.status(), 404);
}

/// RFC 5424: `<PRI>1 TIMESTAMP HOST APP PROCID MSGID [SD] MSG`.
fn well_formed_5424(line: &str) -> bool {
    let Some(rest) = line.strip_prefix('<') else { return false };
    let Some((pri, rest)) = rest.split_once(">1 ") else { return false };
    let parts: Vec<&str> = rest.splitn(6, ' ').collect();
    pri.parse::<u8>().is_ok_and(|p| p < 192)
        && parts.len() == 6
        && chrono::DateTime::parse_from_rfc3339(parts[0]).is_ok()
        && parts[2] == "endpoint-analytics"
        && parts[3].parse::<u32>().is_ok()
        && parts[5].starts_with("[ea@32473 id=\"")
        && !line.contains('\n')
}

#[tokio::test]
async fn syslog_listeners_get_well_formed_rfc5424_messages_over_udp_and_tcp() {
    let app = spawn_app().await;
    let admin = app.token(Role::Admin).await;
    let operator = app.token(Role::Operator).await;
    let udp = tokio::net::UdpSocket::bind("127.0.0.1:0").await.unwrap();
    let tcp = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    for (name, kind, addr) in [
        ("udp", "syslog-udp", udp.local_addr().unwrap().to_string()),
        ("tcp", "syslog-tcp", tcp.local_addr().unwrap().to_string()),
    ] {
        let body = json!({"name": name, "kind": kind, "url": addr, "event_types": ["endpoint.created"]});
        assert_eq!(
            call(&app.base, &admin, reqwest::Method::POST, "/api/v1/destinations", Some(body)).await.status(),
            201
        );
    }
    assert_eq!(app.ingest(&operator, &observations(3, "sys\"log]")).await.status(), 200);

    let mut lines = Vec::new();
    let mut buf = [0u8; 4096];
    while lines.len() < 3 {
        let n = tokio::time::timeout(Duration::from_secs(30), udp.recv(&mut buf)).await.expect("a datagram").unwrap();
        lines.push(String::from_utf8(buf[..n].to_vec()).unwrap());
    }
    let mut framed = Vec::new();
    while framed.len() < 3 {
        let (mut sock, _) =
            tokio::time::timeout(Duration::from_secs(30), tcp.accept()).await.expect("a connection").unwrap();
        let mut all = Vec::new();
        sock.read_to_end(&mut all).await.unwrap();
        // Octet-counted framing (RFC 6587): LEN SP MSG.
        let text = String::from_utf8(all).unwrap();
        let (len, msg) = text.split_once(' ').unwrap();
        assert_eq!(len.parse::<usize>().unwrap(), msg.len(), "{text}");
        framed.push(msg.to_owned());
    }
    for line in lines.iter().chain(&framed) {
        assert!(well_formed_5424(line), "not RFC 5424: {line}");
        assert!(line.contains(" endpoint.created [ea@32473 id=\""), "{line}");
        // local0, informational.
        assert!(line.starts_with("<134>1 "), "{line}");
    }
}

/// The real binary is killed while a slow receiver is taking events, then started again: every
/// event arrives, some perhaps twice, under the same id. On the SQLite file of the process (the
/// PostgreSQL run of this suite covers the same code through the other tests).
#[tokio::test]
async fn a_crash_mid_delivery_loses_no_event() {
    let dir = tempfile::tempdir().unwrap();
    let hook = Receiver::start(0, Duration::from_millis(150)).await;
    let p = Proc::start(dir.path()).await;
    let db = open_db(&db_url(dir.path())).await;
    let token = new_api_token();
    let hash = hash_api_token(&token);
    db.run(move |c| {
        api_tokens::create(c, "events-admin", &hash, Role::Admin, api_tokens::Creator::CommandLine, None)?;
        Ok(())
    })
    .await
    .unwrap();
    let body = json!({"name": "slow", "kind": "webhook", "url": hook.url, "secret": SECRET, "event_types": ["endpoint.created"]});
    assert_eq!(call(&p.base, &token, reqwest::Method::POST, "/api/v1/destinations", Some(body)).await.status(), 201);
    let res =
        call(&p.base, &token, reqwest::Method::POST, "/api/v1/observations", Some(observations(30, "crash"))).await;
    assert_eq!(res.status(), 200);
    wait_until("a few deliveries", Duration::from_secs(60), || hook.got().len() >= 5).await;
    p.kill();
    let before = hook.got().len();
    assert!(before < 30, "the kill came mid-delivery ({before} of 30)");

    let p = Proc::start(dir.path()).await;
    let ids = || hook.events().iter().map(|e| e["id"].as_str().unwrap().to_owned()).collect::<BTreeSet<_>>();
    wait_until("all 30 events after the restart", Duration::from_secs(60), || ids().len() == 30).await;
    assert!(hook.got().iter().all(|r| signed(r, SECRET)));
    // Every event of the outbox arrived, and nothing else.
    let stored: BTreeSet<String> = db
        .run(|c| {
            Ok(endpoint_analytics::db::models::events::recent(c, "endpoint.created", 1000)?
                .into_iter()
                .map(|e| e.id.to_string())
                .collect())
        })
        .await
        .unwrap();
    assert_eq!(ids(), stored);
    drop(p);
}

/// Disabling the integration deletes Defender's factors: each level that falls because of it
/// is announced with Defender's sources as its cause, not with the factor that remains.
#[tokio::test]
async fn a_level_that_falls_when_defender_is_disabled_names_defender_as_the_cause() {
    use diesel::prelude::*;
    use endpoint_analytics::db::models::{events, risk};
    use endpoint_analytics::db::schema::{endpoints, events as events_table};
    use endpoint_analytics::defender::import::{ALERTS_SOURCE, EXPOSURE_SOURCE};
    let (app, sim, admin, _) = crate::defender_sync::synced(40).await;
    // An endpoint at risk through Defender, with a lower factor of another source beside it.
    let id: i64 = app
        .db
        .run(|c| {
            Ok(endpoints::table
                .filter(endpoints::risk_level.ge(2))
                .select(endpoints::id)
                .order(endpoints::id)
                .first(c)?)
        })
        .await
        .unwrap();
    app.db.run(move |c| Ok(risk::set(c, id, "Test scanner", Some((1, "An old finding", "")))?)).await.unwrap();
    let before: i64 = app
        .db
        .run(|c| {
            Ok(events_table::table.select(diesel::dsl::max(events_table::id)).first::<Option<i64>>(c)?.unwrap_or(0))
        })
        .await
        .unwrap();

    let res = crate::defender_sync::put_settings(&app, &admin, &crate::defender_sync::settings_for(&sim, false)).await;
    assert_eq!(res.status(), 200, "{}", res.text().await.unwrap());
    let fell: Vec<String> = app
        .db
        .run(move |c| {
            Ok(events_table::table
                .filter(events_table::id.gt(before))
                .filter(events_table::kind.eq(events::kinds::RISK_CHANGED))
                .filter(events_table::endpoint_id.eq(id))
                .select(events_table::data)
                .load(c)?)
        })
        .await
        .unwrap();
    assert_eq!(fell.len(), 1, "{fell:?}");
    let data: Value = serde_json::from_str(&fell[0]).unwrap();
    assert_eq!(data["new"], "Low", "{data}");
    let factor = data["factor"].as_str().unwrap();
    assert!(factor.contains(EXPOSURE_SOURCE) && factor.contains(ALERTS_SOURCE), "the cause is {factor:?}");
    assert!(!factor.contains("Test scanner"), "the remaining factor is named as the cause: {factor:?}");
}

/// A loopback syslog receiver over TLS (RFC 5425) whose certificate a private CA signed; that
/// CA's certificate (PEM) for the destination.
async fn tls_receiver() -> (tokio::net::TcpListener, tokio_rustls::TlsAcceptor, String) {
    use rcgen::{BasicConstraints, CertificateParams, CertifiedIssuer, IsCa, KeyPair};
    use tokio_rustls::rustls;
    let mut ca_params = CertificateParams::new(Vec::<String>::new()).unwrap();
    ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    let ca = CertifiedIssuer::self_signed(ca_params, KeyPair::generate().unwrap()).unwrap();
    let key = KeyPair::generate().unwrap();
    let leaf = CertificateParams::new(vec!["localhost".to_owned()]).unwrap().signed_by(&key, &ca).unwrap();
    let config =
        rustls::ServerConfig::builder_with_provider(std::sync::Arc::new(rustls::crypto::ring::default_provider()))
            .with_safe_default_protocol_versions()
            .unwrap()
            .with_no_client_auth()
            .with_single_cert(
                vec![leaf.der().clone()],
                rustls::pki_types::PrivateKeyDer::Pkcs8(key.serialize_der().into()),
            )
            .unwrap();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    (listener, tokio_rustls::TlsAcceptor::from(std::sync::Arc::new(config)), ca.pem())
}

/// Syslog over TLS: the receiver's certificate is checked (against the destination's CA, and
/// refused without it), and the CEF format arrives as the RFC 5424 message, one line.
#[tokio::test]
async fn syslog_over_tls_checks_the_receiver_and_carries_cef() {
    let app = spawn_app().await;
    let admin = app.token(Role::Admin).await;
    let operator = app.token(Role::Operator).await;
    let (listener, acceptor, ca_pem) = tls_receiver().await;
    let addr = format!("localhost:{}", listener.local_addr().unwrap().port());
    let create = |name: &str, ca: Option<&str>| {
        let mut body = json!({"name": name, "kind": "syslog-tls", "url": addr, "format": "cef",
            "event_types": ["endpoint.created"]});
        if let Some(ca) = ca {
            body["ca_pem"] = json!(ca);
        }
        call(&app.base, &admin, reqwest::Method::POST, "/api/v1/destinations", Some(body))
    };
    // A CA field must hold certificates; CEF is for syslog only.
    assert_eq!(create("bad", Some("-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----")).await.status(), 400);
    let webhook_cef =
        json!({"name": "w", "kind": "webhook", "url": "http://127.0.0.1:9/", "secret": SECRET, "format": "cef"});
    assert_eq!(
        call(&app.base, &admin, reqwest::Method::POST, "/api/v1/destinations", Some(webhook_cef)).await.status(),
        400
    );
    let trusted = create("siem-tls", Some(&ca_pem)).await;
    assert_eq!(trusted.status(), 201);
    let trusted: Value = trusted.json().await.unwrap();
    assert_eq!((trusted["ca_configured"].as_bool(), trusted["format"].as_str()), (Some(true), Some("cef")));
    assert!(!trusted.to_string().contains("BEGIN CERTIFICATE"), "the CA is not echoed: {trusted}");
    let untrusted = create("siem-public-roots", None).await;
    assert_eq!(untrusted.status(), 201);
    let untrusted: Value = untrusted.json().await.unwrap();

    assert_eq!(app.ingest(&operator, &observations(2, "tls|cef=")).await.status(), 200);
    // The receiver answers every connection for the rest of the test, so that the untrusting
    // destination, whenever it comes, gets a handshake to refuse (not a silent socket).
    let (sender, mut received) = tokio::sync::mpsc::unbounded_channel::<String>();
    tokio::spawn(async move {
        while let Ok((sock, _)) = listener.accept().await {
            let (acceptor, sender) = (acceptor.clone(), sender.clone());
            tokio::spawn(async move {
                // The untrusting destination's handshake fails on its side; only complete ones count.
                let Ok(mut tls) = acceptor.accept(sock).await else { return };
                let mut all = Vec::new();
                let _ = tls.read_to_end(&mut all).await;
                if !all.is_empty() {
                    let _ = sender.send(String::from_utf8(all).unwrap());
                }
            });
        }
    });
    let mut got = Vec::new();
    while got.len() < 2 {
        let text = tokio::time::timeout(Duration::from_secs(30), received.recv()).await.expect("a message").unwrap();
        let (len, msg) = text.split_once(' ').unwrap();
        assert_eq!(len.parse::<usize>().unwrap(), msg.len(), "{text}");
        got.push(msg.to_owned());
    }
    for line in &got {
        assert!(well_formed_5424(line), "not RFC 5424: {line}");
        let cef = line.split_once("] ").unwrap().1;
        assert!(cef.starts_with("CEF:0|Endpoint Analytics|Endpoint Analytics|"), "{cef}");
        assert!(cef.contains("|endpoint.created|") && cef.contains(" externalId="), "{cef}");
    }
    // The destination that trusts only the public roots refused the private certificate.
    let path = format!("/api/v1/destinations/{}/deliveries", untrusted["id"]);
    let mut failed = false;
    for _ in 0..100 {
        let log: Value = call(&app.base, &admin, reqwest::Method::GET, &path, None).await.json().await.unwrap();
        if let Some(d) = log["items"].as_array().and_then(|a| a.first()) {
            assert_eq!(d["status"], "failed", "{log}");
            assert!(d["detail"].as_str().unwrap().starts_with("TLS failed"), "{log}");
            failed = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(failed, "no delivery attempt was logged for the untrusting destination");
}
