//! Bad input on every form and JSON endpoint: oversized bodies, overlong fields, wrong types,
//! NUL bytes, invalid UTF-8, unusual Unicode, negative and huge numbers, bad pagination. Each
//! case gets a 4xx with a message a person can read (never a 500, never a panic), and nothing
//! is written: the inventory's checksum and the users, tokens, profiles and settings are the
//! same after all of them.

use diesel::prelude::*;
use endpoint_analytics::auth::Role;
use endpoint_analytics::db::schema::{api_tokens, integration_config, profiles, users};
use serde_json::Value;

use crate::consistency::snapshot;
use crate::helpers::*;

/// Who sends a case.
#[derive(Debug, Clone, Copy)]
enum As {
    /// The operator's API token.
    Operator,
    /// The admin's API token.
    Admin,
    /// The admin's browser session, with its CSRF token.
    AdminPage,
    /// The operator's browser session, with its CSRF token.
    OperatorPage,
}

/// What a case must get.
#[derive(Debug, Clone, Copy)]
enum Want {
    /// A 4xx with a message.
    Refused,
    /// 200 with every item rejected, each with a reason (batch endpoints report per item).
    AllItemsRejected,
}

struct Case {
    name: String,
    who: As,
    method: &'static str,
    path: String,
    content_type: &'static str,
    body: Vec<u8>,
    want: Want,
}

fn case(
    name: impl Into<String>,
    who: As,
    method: &'static str,
    path: impl Into<String>,
    body: impl Into<Vec<u8>>,
) -> Case {
    let path = path.into();
    let content_type = if path.starts_with("/api/") { "application/json" } else { "application/x-www-form-urlencoded" };
    Case { name: name.into(), who, method, path, content_type, body: body.into(), want: Want::Refused }
}

fn items(name: impl Into<String>, body: impl Into<Vec<u8>>) -> Case {
    Case { want: Want::AllItemsRejected, ..case(name, As::Operator, "POST", "/api/v1/observations", body) }
}

fn long(n: usize) -> String {
    "x".repeat(n)
}

fn cases(endpoint: i64, user: i64) -> Vec<Case> {
    use As::*;
    let mac = "3c:52:82:11:22:33";
    let mut v = vec![
        // POST /api/v1/observations
        case("observations: not JSON", Operator, "POST", "/api/v1/observations", "[{\"mac\":"),
        case("observations: an object", Operator, "POST", "/api/v1/observations", "{\"mac\":\"aa\"}"),
        case(
            "observations: invalid UTF-8",
            Operator,
            "POST",
            "/api/v1/observations",
            b"[{\"mac\":\"\xff\xfe\"}]".to_vec(),
        ),
        case("observations: a NUL byte outside a string", Operator, "POST", "/api/v1/observations", "[\0]"),
        case(
            "observations: 10,001 items",
            Operator,
            "POST",
            "/api/v1/observations",
            format!("[{}]", vec![format!("{{\"mac\":\"{mac}\"}}"); 10_001].join(",")),
        ),
        case("observations: 17 MB", Operator, "POST", "/api/v1/observations", format!("[\"{}\"]", long(17 << 20))),
        items(
            "observations: wrong types",
            format!("[{{\"mac\":5}},{{\"ip\":[1]}},{{\"mac\":\"{mac}\",\"seen_at\":7}}]"),
        ),
        items("observations: no mac and no ip", "[{\"hostname\":\"a\"},{}]"),
        items("observations: a NUL byte in a field", format!("[{{\"mac\":\"{mac}\",\"hostname\":\"a\\u0000b\"}}]")),
        items(
            "observations: an overlong host name",
            format!("[{{\"mac\":\"{mac}\",\"hostname\":\"{}\"}}]", long(100_000)),
        ),
        items(
            "observations: an overlong user agent",
            format!("[{{\"mac\":\"{mac}\",\"user_agent\":\"{}\"}}]", long(100_000)),
        ),
        items(
            "observations: a bad MAC and IP",
            "[{\"mac\":\"zz:zz\"},{\"ip\":\"999.1.1.1\"},{\"mac\":\"\\u202e33:22\"}]",
        ),
        items(
            "observations: dates out of range",
            format!(
                "[{{\"mac\":\"{mac}\",\"seen_at\":\"-99999-01-01T00:00:00Z\"}},{{\"mac\":\"{mac}\",\"seen_at\":\"+275760-09-13T00:00:00Z\"}}]"
            ),
        ),
        // PUT /api/v1/integrations/defender
        case("settings: not JSON", Admin, "PUT", "/api/v1/integrations/defender", "{\"enabled\": tru"),
        case("settings: an array", Admin, "PUT", "/api/v1/integrations/defender", "[]"),
        case(
            "settings: invalid UTF-8",
            Admin,
            "PUT",
            "/api/v1/integrations/defender",
            b"{\"tenant_id\":\"\xc3\x28\"}".to_vec(),
        ),
        case(
            "settings: wrong types",
            Admin,
            "PUT",
            "/api/v1/integrations/defender",
            "{\"enabled\":\"yes\",\"tenant_id\":7}",
        ),
        case(
            "settings: a negative interval",
            Admin,
            "PUT",
            "/api/v1/integrations/defender",
            "{\"sync_interval_minutes\":-5}",
        ),
        case(
            "settings: a huge interval",
            Admin,
            "PUT",
            "/api/v1/integrations/defender",
            "{\"sync_interval_minutes\":99999999999999999999}",
        ),
        case(
            "settings: a NUL byte",
            Admin,
            "PUT",
            "/api/v1/integrations/defender",
            "{\"tenant_id\":\"4d1f9c2e-8b3a-4f6d-9e21-7c5a0b3d2e1\\u0000\"}",
        ),
        case(
            "settings: an overlong secret",
            Admin,
            "PUT",
            "/api/v1/integrations/defender",
            format!(
                "{{\"tenant_id\":\"4d1f9c2e-8b3a-4f6d-9e21-7c5a0b3d2e18\",\"client_id\":\"9b2c4e61-3f5a-4d8b-a7c9-1e0f2d3c4b5a\",\"client_secret\":\"{}\"}}",
                long(100_000)
            ),
        ),
        case(
            "settings: a URL with odd Unicode",
            Admin,
            "PUT",
            "/api/v1/integrations/defender",
            "{\"tenant_id\":\"4d1f9c2e-8b3a-4f6d-9e21-7c5a0b3d2e18\",\"client_id\":\"9b2c4e61-3f5a-4d8b-a7c9-1e0f2d3c4b5a\",\"client_secret\":\"s\",\"api_base_url\":\"https://\\u202eevil\\u200b.example\"}",
        ),
        // POST /api/v1/endpoints/{id}/actions
        case("API action: not JSON", Operator, "POST", format!("/api/v1/endpoints/{endpoint}/actions"), "{\"action\":"),
        case(
            "API action: wrong types",
            Operator,
            "POST",
            format!("/api/v1/endpoints/{endpoint}/actions"),
            "{\"action\":7,\"comment\":[],\"confirm\":\"yes\"}",
        ),
        case(
            "API action: NUL in the comment",
            Operator,
            "POST",
            format!("/api/v1/endpoints/{endpoint}/actions"),
            "{\"action\":\"scan\",\"scope\":\"Quick\",\"comment\":\"a\\u0000b\"}",
        ),
        case(
            "API action: overlong comment",
            Operator,
            "POST",
            format!("/api/v1/endpoints/{endpoint}/actions"),
            format!("{{\"action\":\"scan\",\"scope\":\"Quick\",\"comment\":\"{}\"}}", long(5000)),
        ),
        case(
            "API action: a bad idempotency key",
            Operator,
            "POST",
            format!("/api/v1/endpoints/{endpoint}/actions"),
            "{\"action\":\"scan\",\"scope\":\"Quick\",\"comment\":\"x\",\"idempotency_key\":\"<script>\"}",
        ),
        case(
            "API action: a huge endpoint id",
            Operator,
            "POST",
            "/api/v1/endpoints/99999999999999999999/actions",
            "{\"action\":\"scan\",\"scope\":\"Quick\",\"comment\":\"x\"}",
        ),
        case("API action status: a word for an id", Operator, "GET", "/api/v1/actions/abc", ""),
        // Forms.
        case("sign-in: overlong", AdminPage, "POST", "/login", format!("username={}&password=x", long(100_000))),
        case("sign-in: NUL byte", AdminPage, "POST", "/login", "username=ad%00a&password=x"),
        case("sign-in: invalid UTF-8", AdminPage, "POST", "/login", b"username=%FF%FE&password=x".to_vec()),
        case(
            "new user: overlong name",
            AdminPage,
            "POST",
            "/users",
            format!("username={}&password=x&role=analyst", long(5000)),
        ),
        case(
            "new user: NUL byte",
            AdminPage,
            "POST",
            "/users",
            "username=a%00b&password=correct+horse+battery+staple&role=analyst",
        ),
        case(
            "new user: odd Unicode name",
            AdminPage,
            "POST",
            "/users",
            "username=%E2%80%AEnimda&password=correct+horse+battery+staple&role=analyst",
        ),
        case(
            "new user: unknown role",
            AdminPage,
            "POST",
            "/users",
            "username=bob&password=correct+horse+battery+staple&role=root",
        ),
        case(
            "new user: invalid UTF-8",
            AdminPage,
            "POST",
            "/users",
            b"username=%C3%28&password=x&role=analyst".to_vec(),
        ),
        case("new user: 2 MB body", AdminPage, "POST", "/users", format!("username=bob&password={}", long(2 << 20))),
        case("role: a word for an id", AdminPage, "POST", "/users/abc/role", "role=admin"),
        case("role: a huge id", AdminPage, "POST", "/users/99999999999999999999/role", "role=admin"),
        case("role: a negative id", AdminPage, "POST", "/users/-1/role", "role=admin"),
        case("role: unknown role", AdminPage, "POST", format!("/users/{user}/role"), "role=superuser"),
        case("disabled: not a boolean", AdminPage, "POST", format!("/users/{user}/disabled"), "disabled=%00"),
        case("password: too short", AdminPage, "POST", format!("/users/{user}/password"), "password=x"),
        case(
            "password: overlong",
            AdminPage,
            "POST",
            format!("/users/{user}/password"),
            format!("password={}", long(100_000)),
        ),
        case("token: overlong name", AdminPage, "POST", "/tokens", format!("name={}&role=analyst", long(1000))),
        case("token: NUL in the name", AdminPage, "POST", "/tokens", "name=a%00b&role=analyst"),
        case("token: unknown role", AdminPage, "POST", "/tokens", "name=ok&role=god"),
        case("token: negative expiry", AdminPage, "POST", "/tokens", "name=ok&role=analyst&expires_days=-3"),
        case("token: huge expiry", AdminPage, "POST", "/tokens", "name=ok&role=analyst&expires_days=99999999999999"),
        case("revoke: a word for an id", AdminPage, "POST", "/tokens/x/revoke", ""),
        case("profile: a word for an id", AdminPage, "POST", "/config/profiles/x/enabled", "enabled=false"),
        case("profile: not a boolean", AdminPage, "POST", "/config/profiles/1/enabled", "enabled=yes"),
        case("profile: a missing id", AdminPage, "POST", "/config/profiles/-7/enabled", "enabled=false"),
        case(
            "defender form: bad values",
            AdminPage,
            "POST",
            "/config/integrations/defender",
            "tenant_id=%00&client_id=x&sync_interval_minutes=-1",
        ),
        case(
            "review: a word for an id",
            AdminPage,
            "POST",
            "/config/integrations/defender/review",
            "machine_id=x&decision=merge&endpoint_id=abc",
        ),
        case(
            "review: unknown decision",
            AdminPage,
            "POST",
            "/config/integrations/defender/review",
            "machine_id=x&decision=explode",
        ),
        case(
            "action: unknown action",
            OperatorPage,
            "POST",
            format!("/endpoints/{endpoint}/actions"),
            "action=reboot&comment=x&key=0123456789abcdef0",
        ),
        case(
            "action: NUL in the comment",
            OperatorPage,
            "POST",
            format!("/endpoints/{endpoint}/actions"),
            "action=scan&scope=Quick&comment=a%00b&key=0123456789abcdef1",
        ),
        case(
            "action: overlong comment",
            OperatorPage,
            "POST",
            format!("/endpoints/{endpoint}/actions"),
            format!("action=scan&scope=Quick&comment={}&key=0123456789abcdef2", long(5000)),
        ),
        case(
            "action: a bad key",
            OperatorPage,
            "POST",
            format!("/endpoints/{endpoint}/actions"),
            "action=scan&scope=Quick&comment=x&key=%3Cscript%3E",
        ),
        case(
            "action: a huge endpoint id",
            OperatorPage,
            "POST",
            "/endpoints/99999999999999999999/actions",
            "action=scan&scope=Quick&comment=x&key=0123456789abcdef3",
        ),
        Case {
            content_type: "text/csv",
            ..case("CSV upload: not multipart", OperatorPage, "POST", "/endpoints/import", "mac\naa")
        },
    ];
    // Bad pagination and filters, on the API and the pages.
    for q in [
        "limit=-1",
        "limit=0",
        "limit=100000",
        "limit=abc",
        "limit=99999999999999999999",
        "after=garbage",
        "after=%00",
        "q=a%00b",
        "source=%00",
        "os=%00",
        "profile=%00",
        "sort=evil",
        "dir=sideways",
        "risk=Purple",
    ] {
        v.push(case(format!("API list: {q}"), Operator, "GET", format!("/api/v1/endpoints?{q}"), ""));
    }
    for path in ["/api/v1/endpoints/abc", "/api/v1/endpoints/99999999999999999999", "/api/v1/endpoints/-1"] {
        v.push(case(format!("API endpoint: {path}"), Operator, "GET", path, ""));
    }
    for q in ["limit=-1", "sort=evil", "after=%FF", "risk=Purple", "q=%00", "profile=a%00"] {
        v.push(case(format!("endpoints page: {q}"), AdminPage, "GET", format!("/endpoints?{q}"), ""));
    }
    for path in ["/endpoints/abc", "/endpoints/-1", "/endpoints/1/tabs/%00", "/audit?before=abc", "/actions/abc"] {
        v.push(case(format!("page: {path}"), AdminPage, "GET", path, ""));
    }
    v
}

/// CSV uploads: each refused whole, or each line rejected with its reason.
fn csv_cases() -> Vec<(&'static str, Vec<u8>)> {
    vec![
        ("invalid UTF-8", b"mac,hostname\n3c:52:82:11:22:34,\xff\xfe\n".to_vec()),
        ("NUL bytes", b"mac,hostname\n3c:52:82:11:22:35,a\0b\n".to_vec()),
        ("no known column", b"colour,taste\nred,sweet\n".to_vec()),
        ("an overlong field", format!("mac,hostname\n3c:52:82:11:22:36,{}\n", long(100_000)).into_bytes()),
        ("a bad MAC", b"mac\nnot-a-mac\n".to_vec()),
        ("an empty file", Vec::new()),
        ("ragged lines", b"mac,ip\n3c:52:82:11:22:37\n\"unterminated,\n".to_vec()),
    ]
}

async fn counts(app: &TestApp) -> (i64, i64, i64, i64, Vec<bool>) {
    app.db
        .run(|c| {
            Ok((
                users::table.count().get_result(c)?,
                api_tokens::table.count().get_result(c)?,
                integration_config::table.count().get_result(c)?,
                profiles::table.count().get_result(c)?,
                profiles::table.order(profiles::id).select(profiles::enabled).load(c)?,
            ))
        })
        .await
        .unwrap()
}

fn has_message(body: &[u8], json: bool) -> bool {
    if json {
        serde_json::from_slice::<Value>(body)
            .ok()
            .and_then(|v| v["error"]["message"].as_str().map(|m| m.len() > 5))
            .unwrap_or(false)
    } else {
        let html = String::from_utf8_lossy(body);
        let d = doc(&html);
        let words = select_all(&d, "main, .flash-error, .form-error, .error, p").join(" ");
        words.split_whitespace().count() >= 3
    }
}

#[tokio::test]
async fn bad_input_gets_a_clear_4xx_and_writes_nothing() {
    let app = spawn_app().await;
    let operator_token = app.token(Role::Operator).await;
    let admin_token = app.token(Role::Admin).await;
    // Something to protect: an endpoint, a user.
    let obs = serde_json::json!([{"mac": "3c:52:82:aa:bb:01", "ip": "10.1.1.1", "hostname": "keep-me"}]);
    assert_eq!(app.ingest(&operator_token, &obs).await.status(), 200);
    let endpoint = app.api_get(&operator_token, "/api/v1/endpoints").await["items"][0]["id"].as_i64().unwrap();
    let admin = app.login_as("ada", Role::Admin).await;
    let operator = app.login_as("otto", Role::Operator).await;
    let user: i64 =
        app.db.run(|c| Ok(users::table.filter(users::username.eq("otto")).select(users::id).first(c)?)).await.unwrap();
    let before = (snapshot(&app.db).await, counts(&app).await);

    let mut failures = Vec::new();
    for c in cases(endpoint, user) {
        let (client, bearer) = match c.who {
            As::Operator => (reqwest::Client::new(), Some(&operator_token)),
            As::Admin => (reqwest::Client::new(), Some(&admin_token)),
            As::AdminPage => (admin.clone(), None),
            As::OperatorPage => (operator.clone(), None),
        };
        let mut req = client.request(reqwest::Method::from_bytes(c.method.as_bytes()).unwrap(), app.url(&c.path));
        if let Some(t) = bearer {
            req = req.bearer_auth(t);
        } else if c.method != "GET" {
            req = req.header("x-csrf-token", app.csrf(&client, "/").await);
        }
        if c.method != "GET" {
            req = req.header("content-type", c.content_type).body(c.body.clone());
        }
        let res = req.send().await.unwrap();
        let status = res.status().as_u16();
        let json = c.path.starts_with("/api/");
        let body = res.bytes().await.unwrap();
        let ok = match c.want {
            Want::Refused => (400..500).contains(&status) && has_message(&body, json),
            Want::AllItemsRejected => {
                let v: Value = serde_json::from_slice(&body).unwrap_or_default();
                let sent = serde_json::from_slice::<Vec<Value>>(&c.body).map(|a| a.len()).unwrap_or(0);
                status == 200
                    && v["created"] == 0
                    && v["updated"] == 0
                    && v["rejected"].as_array().is_some_and(|r| {
                        r.len() == sent && r.iter().all(|i| i["reason"].as_str().is_some_and(|s| !s.is_empty()))
                    })
            }
        };
        if !ok {
            let shown = String::from_utf8_lossy(&body[..body.len().min(300)]).into_owned();
            failures.push(format!("{}: {} {} → {status} {shown}", c.name, c.method, c.path));
        }
    }
    for (name, csv) in csv_cases() {
        let part = reqwest::multipart::Part::bytes(csv).file_name("obs.csv").mime_str("text/csv").unwrap();
        let res = operator
            .post(app.url("/endpoints/import"))
            .header("x-csrf-token", app.csrf(&operator, "/endpoints").await)
            .multipart(reqwest::multipart::Form::new().part("file", part))
            .send()
            .await
            .unwrap();
        let status = res.status().as_u16();
        let html = res.text().await.unwrap();
        let report = doc(&html);
        // Refused whole (400 with the reason) or every line rejected with its reason.
        let rejected_lines = select_all(&report, "table.import-errors tbody tr").len();
        let ok = (status == 400 && has_message(html.as_bytes(), false)) || (status == 200 && rejected_lines > 0);
        if !ok {
            failures.push(format!("CSV upload with {name}: {status} {}", &html[..html.len().min(300)]));
        }
    }
    assert!(failures.is_empty(), "{} cases failed:\n{}", failures.len(), failures.join("\n"));
    assert_eq!((snapshot(&app.db).await, counts(&app).await), before, "bad input changed something");
}
