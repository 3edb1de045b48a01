//! The Defender client secret and bearer tokens (the product's API tokens and Defender's
//! access tokens) never appear in a page, an API response, a log line, an error message, an
//! audit entry or the database in plain text. The real binary runs with debug logging to a
//! file; after a full run (configure, Test Connection, sync, every page, a wrong and an expired
//! secret, an action) everything it said and stored is searched.

use std::time::Duration;

use defender_sim::SimConfig;
use diesel::prelude::*;
use endpoint_analytics::auth::{Role, hash_api_token, new_api_token};
use endpoint_analytics::db::Db;
use endpoint_analytics::db::models::api_tokens;
use endpoint_analytics::web::ROUTES;
use serde_json::{Value, json};

use crate::helpers::*;
use crate::process::{Proc, open_db};

/// Everything the product said or stored, with where it came from.
#[derive(Default)]
struct Seen(Vec<(String, Vec<u8>)>);

impl Seen {
    fn add(&mut self, what: impl Into<String>, bytes: impl Into<Vec<u8>>) {
        self.0.push((what.into(), bytes.into()));
    }

    fn assert_absent(&self, needle: &str, name: &str) {
        assert!(needle.len() >= 8, "{name} is too short to search for");
        for (what, bytes) in &self.0 {
            assert!(!bytes.windows(needle.len()).any(|w| w == needle.as_bytes()), "{what} contains the {name}");
        }
    }
}

async fn text(res: reqwest::Response) -> String {
    res.text().await.unwrap()
}

/// Every text column of every table on PostgreSQL, as one blob per column.
async fn postgres_text(db: &Db) -> Vec<(String, Vec<u8>)> {
    #[derive(QueryableByName)]
    struct Col {
        #[diesel(sql_type = diesel::sql_types::Text)]
        table_name: String,
        #[diesel(sql_type = diesel::sql_types::Text)]
        column_name: String,
    }
    #[derive(QueryableByName)]
    struct Blob {
        #[diesel(sql_type = diesel::sql_types::Text)]
        all: String,
    }
    db.run(|c| {
        let cols: Vec<Col> = diesel::sql_query(
            "SELECT table_name::text AS table_name, column_name::text AS column_name FROM information_schema.columns \
             WHERE table_schema = 'public' AND data_type IN ('text', 'character varying', 'bytea')",
        )
        .load(c)?;
        let mut out = Vec::new();
        for col in cols {
            let q = format!(
                "SELECT coalesce(string_agg(encode(convert_to(\"{c}\"::text, 'UTF8'), 'escape'), ' '), '') AS all FROM \"{t}\"",
                c = col.column_name,
                t = col.table_name
            );
            let blob: Blob = diesel::sql_query(q).get_result(c)?;
            out.push((format!("the column {}.{}", col.table_name, col.column_name), blob.all.into_bytes()));
        }
        Ok(out)
    })
    .await
    .unwrap()
}

#[tokio::test]
async fn the_secret_and_bearer_tokens_appear_nowhere_after_a_full_run() {
    let dir = tempfile::tempdir().unwrap();
    let database = TestDatabase::new(dir.path());
    let sim = defender_sim::start(SimConfig {
        machines: 80,
        hostile: true,
        action_pending_ms: 100,
        action_inprogress_ms: 100,
        ..SimConfig::default()
    })
    .await
    .unwrap();
    let p = Proc::start_on(dir.path(), &database.url).await;
    let db = open_db(&database.url).await;
    let admin_token = new_api_token();
    let operator_token = new_api_token();
    let (a, o) = (hash_api_token(&admin_token), hash_api_token(&operator_token));
    db.run(move |c| {
        for (name, role) in [("ada", Role::Admin), ("otto", Role::Operator)] {
            endpoint_analytics::accounts::create_user(c, name, PASSWORD, role).map_err(|e| anyhow::anyhow!("{e}"))?;
        }
        api_tokens::create(c, "admin-script", &a, Role::Admin, api_tokens::Creator::CommandLine, None)?;
        api_tokens::create(c, "operator-script", &o, Role::Operator, api_tokens::Creator::CommandLine, None)?;
        Ok(())
    })
    .await
    .unwrap();
    let mut seen = Seen::default();
    let api = |method: reqwest::Method, path: &str, token: &str, body: Option<Value>| {
        let mut r = reqwest::Client::new().request(method, p.url(path)).bearer_auth(token);
        if let Some(b) = body {
            r = r.json(&b);
        }
        r.send()
    };

    // Configure through the API with the secret, test, sync.
    let settings = json!({
        "tenant_id": sim.tenant_id, "client_id": sim.client_id, "client_secret": sim.client_secret,
        "login_base_url": sim.base_url, "api_base_url": sim.base_url, "enabled": true,
    });
    let put = api(reqwest::Method::PUT, "/api/v1/integrations/defender", &admin_token, Some(settings.clone()));
    seen.add("PUT /api/v1/integrations/defender", text(put.await.unwrap()).await);
    let mut last_run = Value::Null;
    for _ in 0..600 {
        let s: Value = api(reqwest::Method::GET, "/api/v1/integrations/defender/status", &admin_token, None)
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        if s["running"].is_null() && !s["last_run"].is_null() {
            last_run = s["last_run"].clone();
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(last_run["status"], "succeeded", "{last_run}");
    let test = api(reqwest::Method::POST, "/api/v1/integrations/defender/test", &operator_token, None);
    seen.add("POST /api/v1/integrations/defender/test", text(test.await.unwrap()).await);
    for path in ["/api/v1/integrations/defender/status", "/api/v1/endpoints?limit=500", "/api/v1/endpoints/1"] {
        seen.add(format!("GET {path}"), text(api(reqwest::Method::GET, path, &admin_token, None).await.unwrap()).await);
    }

    // Every page an admin can open, with the ids filled in.
    let admin = crate::helpers::browser();
    let login = text(admin.get(p.url("/login")).send().await.unwrap()).await;
    let csrf = attr(&doc(&login), "input[name=csrf_token]", "value").unwrap();
    let res = admin
        .post(p.url("/login"))
        .form(&[("username", "ada"), ("password", PASSWORD), ("csrf_token", &csrf), ("next", "/")])
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 303);
    for (method, pattern) in ROUTES.iter().filter(|(m, p)| *m == "get" && !p.starts_with("/api/")) {
        for tab in ["summary", "risk", "history", "defender"] {
            let path = pattern.replace("{id}", "1").replace("{tab}", tab).replace("{file}", "app.js");
            let res = admin.get(p.url(&path)).send().await.unwrap();
            seen.add(format!("{method} {path}"), text(res).await);
            if !pattern.contains("{tab}") {
                break;
            }
        }
    }
    // Test Connection from the form with the stored secret, then with a wrong one typed in.
    let page = text(admin.get(p.url("/config/integrations/defender")).send().await.unwrap()).await;
    let csrf = attr(&doc(&page), "body", "hx-headers")
        .and_then(|h| serde_json::from_str::<Value>(&h).ok()?["X-CSRF-Token"].as_str().map(str::to_owned))
        .unwrap();
    let wrong = "Wr0ng~s3cret.value-typed-by-someone";
    for secret in ["", wrong] {
        let res = admin
            .post(p.url("/config/integrations/defender/test"))
            .header("x-csrf-token", &csrf)
            .form(&[
                ("tenant_id", sim.tenant_id.as_str()),
                ("client_id", sim.client_id.as_str()),
                ("client_secret", secret),
                ("login_base_url", &sim.base_url),
                ("api_base_url", &sim.base_url),
            ])
            .send()
            .await
            .unwrap();
        seen.add(format!("Test Connection with {secret:?}"), text(res).await);
    }
    // An expired secret: the failed sync's reason, on the page, in the API, in the log.
    sim.expire_client_secret(&sim.client_id);
    sim.invalidate_tokens();
    let res = api(reqwest::Method::POST, "/api/v1/integrations/defender/sync", &operator_token, None).await.unwrap();
    assert_eq!(res.status(), 202);
    tokio::time::sleep(Duration::from_secs(2)).await;
    let status = api(reqwest::Method::GET, "/api/v1/integrations/defender/status", &admin_token, None).await.unwrap();
    let status = text(status).await;
    assert!(status.contains("expired"), "{status}");
    seen.add("the status after an expired secret", status);
    seen.add("the sync page", text(admin.get(p.url("/config/integrations/defender/sync")).send().await.unwrap()).await);
    // A token created on the page is shown once, in that answer only.
    let tokens_page = text(admin.get(p.url("/tokens")).send().await.unwrap()).await;
    let csrf = attr(&doc(&tokens_page), "input[name=csrf_token]", "value").unwrap();
    let created = admin
        .post(p.url("/tokens"))
        .form(&[("name", "shown-once"), ("role", "analyst"), ("csrf_token", &csrf)])
        .send()
        .await
        .unwrap();
    let created = text(created).await;
    let shown =
        select_all(&doc(&created), "#new-token code.token").into_iter().next().expect("the new token is shown once");
    let res = reqwest::Client::new().get(p.url("/api/v1/endpoints")).bearer_auth(&shown).send().await.unwrap();
    assert_eq!(res.status(), 200, "the shown token works");
    for path in ["/tokens", "/audit"] {
        seen.add(
            format!("GET {path} after the token was created"),
            text(admin.get(p.url(path)).send().await.unwrap()).await,
        );
    }

    // What the process wrote and stored.
    tokio::time::sleep(Duration::from_millis(300)).await;
    let log = p.log();
    assert!(log.lines().count() > 50, "the log was captured");
    seen.add("the log", log.into_bytes());
    drop(p);
    match db.target() {
        endpoint_analytics::db::DatabaseTarget::Sqlite { path } => {
            for suffix in ["", "-wal"] {
                let file = format!("{}{suffix}", path.display());
                seen.add(format!("the database file {file}"), std::fs::read(&file).unwrap_or_default());
            }
        }
        endpoint_analytics::db::DatabaseTarget::Postgres { .. } => {
            for (what, blob) in postgres_text(&db).await {
                seen.add(what, blob);
            }
        }
    }
    let audit: Vec<(String, String, String)> = db
        .run(|c| {
            use endpoint_analytics::db::schema::audit_log;
            Ok(audit_log::table.select((audit_log::action, audit_log::target, audit_log::details)).load(c)?)
        })
        .await
        .unwrap();
    assert!(audit.iter().any(|a| a.0 == "defender.sync"), "the audit log was written");
    seen.add("the audit log", format!("{audit:?}"));

    seen.assert_absent(&sim.client_secret, "client secret");
    seen.assert_absent(wrong, "typed wrong secret");
    seen.assert_absent(&admin_token, "admin API token");
    seen.assert_absent(&operator_token, "operator API token");
    seen.assert_absent(&shown, "token shown once");
    // Defender's access tokens are JWTs: base64 of '{"' starts every one of them.
    seen.assert_absent("eyJhbGciOi", "Defender access token");
}
