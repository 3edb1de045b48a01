//! Observations into the inventory (JSON API and CSV), and browsing it (pages and API).

use endpoint_analytics::auth::Role;
use serde_json::{Value, json};

use crate::helpers::*;

/// `n` observations; every tenth shares its MAC with the one before it (so it merges).
fn observations(n: usize) -> Value {
    let items: Vec<Value> = (0..n)
        .map(|i| {
            let dev = if i % 10 == 9 { i - 1 } else { i };
            json!({
                "mac": format!("02:00:00:{:02x}:{:02x}:{:02x}", dev >> 16 & 0xff, dev >> 8 & 0xff, dev & 0xff),
                "ip": format!("10.{}.{}.{}", dev >> 16 & 0xff, dev >> 8 & 0xff, dev & 0xff),
                "hostname": format!("host-{dev:05}.corp.example"),
                "dhcp_vendor_class": "MSFT 5.0",
                "seen_at": "2026-11-01T10:00:00Z",
            })
        })
        .collect();
    Value::Array(items)
}

#[tokio::test]
async fn a_thousand_observations_become_endpoints_on_the_page_and_in_the_api() {
    let app = spawn_app().await;
    let token = app.token(Role::Operator).await;
    let res = app.ingest(&token, &observations(1000)).await;
    assert_eq!(res.status(), 200);
    let report: Value = res.json().await.unwrap();
    assert_eq!(report["received"], 1000);
    assert_eq!(report["created"], 900, "{report}");
    assert_eq!(report["updated"], 100);
    assert_eq!(report["rejected"].as_array().unwrap().len(), 0);

    let list = app.api_get(&token, "/api/v1/endpoints?limit=5").await;
    assert_eq!(list["total"], 900);
    assert_eq!(list["items"].as_array().unwrap().len(), 5);
    assert_eq!(list["items"][0]["sources"], json!(["network"]));

    let analyst = app.login_as("ann", Role::Analyst).await;
    let page = doc(&analyst.get(app.url("/endpoints")).send().await.unwrap().text().await.unwrap());
    assert_eq!(select_all(&page, "#match-count"), vec!["900"]);
    assert_eq!(select_all(&page, "#endpoint-table tbody tr.endpoint-row").len(), 50);
    let dashboard = doc(&analyst.get(app.url("/")).send().await.unwrap().text().await.unwrap());
    assert_eq!(select_all(&dashboard, "#endpoint-total"), vec!["900"]);
}

#[tokio::test]
async fn a_malformed_body_gets_a_400_and_changes_nothing() {
    let app = spawn_app().await;
    let token = app.token(Role::Operator).await;
    let client = reqwest::Client::new();
    for body in ["{not json", "{\"mac\": \"aa:bb:cc:dd:ee:ff\"}", "[{\"mac\":\"aa:bb:cc:dd:ee:ff\"}", ""] {
        let res = client.post(app.url("/api/v1/observations")).bearer_auth(&token).body(body).send().await.unwrap();
        assert_eq!(res.status(), 400, "{body}");
        let err: Value = res.json().await.unwrap();
        assert!(err["error"]["message"].as_str().unwrap().contains("JSON array"), "{err}");
    }
    let too_many = observations(10_001);
    let res = app.ingest(&token, &too_many).await;
    assert_eq!(res.status(), 400);
    assert_eq!(app.api_get(&token, "/api/v1/endpoints").await["total"], 0);
}

#[tokio::test]
async fn a_partly_bad_batch_keeps_the_good_items_and_explains_the_bad_ones() {
    let app = spawn_app().await;
    let token = app.token(Role::Operator).await;
    let body = json!([
        {"mac": "AA-BB-CC-00-00-01", "ip": "192.168.1.10", "hostname": "printer-1"},
        {"hostname": "no-address"},
        {"mac": "not-a-mac"},
        {"mac": 42},
        "a string",
        {"ip": "192.168.1.11", "dhcp_params": "1,3,6,15"},
    ]);
    let report: Value = app.ingest(&token, &body).await.json().await.unwrap();
    assert_eq!(report["created"], 2);
    let rejected: Vec<(u64, String)> = report["rejected"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| (r["index"].as_u64().unwrap(), r["reason"].as_str().unwrap().to_owned()))
        .collect();
    assert_eq!(rejected.iter().map(|r| r.0).collect::<Vec<_>>(), vec![1, 2, 3, 4]);
    assert!(rejected[0].1.contains("needs a mac or an ip"));
    assert!(rejected[1].1.contains("not a MAC"));
    let found = app.api_get(&token, "/api/v1/endpoints?q=aa:bb:cc:00:00:01").await;
    assert_eq!(found["items"][0]["hostname"], "printer-1");
}

#[tokio::test]
async fn the_api_requires_a_token_of_the_right_role() {
    let app = spawn_app().await;
    let client = reqwest::Client::new();
    let res = client.post(app.url("/api/v1/observations")).json(&json!([])).send().await.unwrap();
    assert_eq!(res.status(), 401);
    let res = client.get(app.url("/api/v1/endpoints")).bearer_auth("ea_not-a-token").send().await.unwrap();
    assert_eq!(res.status(), 401);
    let analyst = app.token(Role::Analyst).await;
    let res = app.ingest(&analyst, &observations(1)).await;
    assert_eq!(res.status(), 403, "an analyst token may read but not write");
    assert_eq!(app.api_get(&analyst, "/api/v1/endpoints").await["total"], 0);
    // A browser session is not an API credential.
    let session = app.login_as("ann", Role::Admin).await;
    assert_eq!(session.get(app.url("/api/v1/endpoints")).send().await.unwrap().status(), 401);
}

#[tokio::test]
async fn newer_observations_update_an_endpoint_and_leave_history() {
    let app = spawn_app().await;
    let token = app.token(Role::Operator).await;
    let first =
        json!([{"mac": "02:00:00:00:00:01", "ip": "10.0.0.1", "hostname": "pc-1", "seen_at": "2026-11-01T10:00:00Z"}]);
    let second = json!([{"mac": "02:00:00:00:00:01", "ip": "10.0.0.2", "seen_at": "2026-11-02T10:00:00Z"}]);
    let older = json!([{"mac": "02:00:00:00:00:01", "ip": "10.0.0.9", "seen_at": "2026-10-01T10:00:00Z"}]);
    for body in [&first, &second, &older] {
        assert_eq!(app.ingest(&token, body).await.status(), 200);
    }
    let list = app.api_get(&token, "/api/v1/endpoints").await;
    let id = list["items"][0]["id"].as_i64().unwrap();
    let e = app.api_get(&token, &format!("/api/v1/endpoints/{id}")).await;
    assert_eq!(e["ip"], "10.0.0.2", "an older observation does not roll the IP back");
    assert_eq!(e["hostname"], "pc-1", "a missing field keeps what we knew");
    assert_eq!(e["ip_addresses"].as_array().unwrap().len(), 3);
    assert_eq!(e["history"][0]["field"], "ip");
    assert_eq!(e["history"][0]["old_value"], "10.0.0.1");
    // Searching by an IP the endpoint held before finds it too.
    assert_eq!(app.api_get(&token, "/api/v1/endpoints?q=10.0.0.1").await["total"], 1);
}

#[tokio::test]
async fn the_list_filters_sorts_and_pages_without_loss() {
    let app = spawn_app().await;
    let token = app.token(Role::Operator).await;
    app.ingest(&token, &observations(250)).await;
    // Host-name prefix search.
    assert_eq!(app.api_get(&token, "/api/v1/endpoints?q=host-0001").await["total"], 9);
    // Source filter.
    assert_eq!(app.api_get(&token, "/api/v1/endpoints?source=network").await["total"], 225);
    assert_eq!(app.api_get(&token, "/api/v1/endpoints?source=csv").await["total"], 0);
    // Keyset paging by host name visits every endpoint once, in order.
    let mut seen = Vec::new();
    let mut after = String::new();
    loop {
        let page =
            app.api_get(&token, &format!("/api/v1/endpoints?sort=hostname&limit=40&after={}", urlencode(&after))).await;
        seen.extend(page["items"].as_array().unwrap().iter().map(|e| e["hostname"].as_str().unwrap().to_owned()));
        match page["next"].as_str() {
            Some(n) => after = n.to_owned(),
            None => break,
        }
    }
    assert_eq!(seen.len(), 225);
    let mut sorted = seen.clone();
    sorted.sort();
    sorted.dedup();
    assert_eq!(seen, sorted, "ascending, no duplicates");
    // Sort keys with many ties (one risk level, one last-seen second for the whole batch) page
    // through every endpoint once too: the cursor breaks ties by id.
    for sort in ["sort=risk&dir=desc", "sort=last_seen", "sort=last_seen&dir=asc", "sort=risk&dir=asc"] {
        let mut ids = Vec::new();
        let mut after = String::new();
        loop {
            let page =
                app.api_get(&token, &format!("/api/v1/endpoints?{sort}&limit=40&after={}", urlencode(&after))).await;
            ids.extend(page["items"].as_array().unwrap().iter().map(|e| e["id"].as_i64().unwrap()));
            match page["next"].as_str() {
                Some(n) => after = n.to_owned(),
                None => break,
            }
        }
        let mut unique = ids.clone();
        unique.sort_unstable();
        unique.dedup();
        assert_eq!((ids.len(), unique.len()), (225, 225), "{sort}: every endpoint once");
    }
    // Bad parameters are a 400 with the reason, not a 500.
    for bad in ["sort=colour", "dir=up", "risk=extreme", "limit=0", "limit=100000", "after=garbage", "limit=abc"] {
        let res = reqwest::Client::new()
            .get(app.url(&format!("/api/v1/endpoints?{bad}")))
            .bearer_auth(&token)
            .send()
            .await
            .unwrap();
        assert_eq!(res.status(), 400, "{bad}");
    }
    // The page's next link works the same way.
    let analyst = app.login_as("ann", Role::Analyst).await;
    let first = doc(&analyst.get(app.url("/endpoints?sort=hostname")).send().await.unwrap().text().await.unwrap());
    let next = attr(&first, "#next-page", "href").expect("a next page");
    let second = doc(&analyst.get(app.url(&next)).send().await.unwrap().text().await.unwrap());
    let a = select_all(&first, "#endpoint-table tbody tr.endpoint-row td:first-child");
    let b = select_all(&second, "#endpoint-table tbody tr.endpoint-row td:first-child");
    assert_eq!(a.len(), 50);
    assert!(a.last() < b.first(), "the second page continues after the first");
    // htmx asks for the results fragment only.
    let frag = analyst
        .get(app.url("/endpoints?q=host-0000"))
        .header("hx-request", "true")
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(!frag.contains("<html") && frag.contains("endpoint-table"));
}

fn urlencode(s: &str) -> String {
    url::form_urlencoded::byte_serialize(s.as_bytes()).collect()
}

#[tokio::test]
async fn the_endpoint_summary_has_tabs_as_pages_and_as_fragments() {
    let app = spawn_app().await;
    let token = app.token(Role::Operator).await;
    app.ingest(
        &token,
        &json!([{"mac": "02:00:00:00:00:07", "ip": "10.0.0.7", "hostname": "<script>alert(1)</script>"}]),
    )
    .await;
    let id = app.api_get(&token, "/api/v1/endpoints").await["items"][0]["id"].as_i64().unwrap();
    let analyst = app.login_as("ann", Role::Analyst).await;
    let page = analyst.get(app.url(&format!("/endpoints/{id}"))).send().await.unwrap().text().await.unwrap();
    assert!(!page.contains("<script>alert(1)</script>"), "hostile host names are escaped");
    let html = doc(&page);
    assert_eq!(select_all(&html, "nav.tabs a").len(), 4);
    assert_eq!(select_all(&html, "#endpoint-title"), vec!["<script>alert(1)</script>"]);
    let tab = analyst.get(app.url(&format!("/endpoints/{id}?tab=profile"))).send().await.unwrap().text().await.unwrap();
    assert!(doc(&tab).select(&scraper::Selector::parse("#history").unwrap()).next().is_some());
    let frag =
        analyst.get(app.url(&format!("/endpoints/{id}/tabs/risk"))).header("hx-request", "true").send().await.unwrap();
    assert_eq!(frag.status(), 200);
    let frag = frag.text().await.unwrap();
    assert!(!frag.contains("<html") && !frag.contains("class=\"tabs\"") && frag.contains("Overall risk"));
    assert_eq!(analyst.get(app.url(&format!("/endpoints/{id}/tabs/nope"))).send().await.unwrap().status(), 404);
}

#[tokio::test]
async fn a_csv_upload_imports_good_rows_and_reports_bad_ones_by_line() {
    let app = spawn_app().await;
    let operator = app.login_as("olga", Role::Operator).await;
    let csrf = app.csrf(&operator, "/endpoints").await;
    let csv = "mac,ip,hostname,seen_at\n\
               02:00:00:00:01:01,10.1.0.1,cam-1,2026-11-01T00:00:00Z\n\
               bad-mac,10.1.0.2,cam-2,\n\
               02:00:00:00:01:03,10.1.0.3,cam-3,yesterday\n\
               ,10.1.0.4,cam-4,\n";
    let form = reqwest::multipart::Form::new().part("file", reqwest::multipart::Part::text(csv).file_name("obs.csv"));
    let res = operator
        .post(app.url("/endpoints/import"))
        .header("x-csrf-token", &csrf)
        .header("hx-request", "true")
        .multipart(form)
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 200);
    let report = doc(&res.text().await.unwrap());
    assert!(select_all(&report, ".import-summary")[0].contains("2 created"));
    let errors = select_all(&report, ".import-errors tbody tr");
    assert_eq!(errors.len(), 2);
    assert!(errors[0].starts_with('3') && errors[0].contains("not a MAC"), "{errors:?}");
    assert!(errors[1].starts_with('4') && errors[1].contains("RFC 3339"));
    // A file that cannot be read at all changes nothing.
    let form = reqwest::multipart::Form::new()
        .part("file", reqwest::multipart::Part::text("colour\nred\n").file_name("x.csv"));
    let res =
        operator.post(app.url("/endpoints/import")).header("x-csrf-token", &csrf).multipart(form).send().await.unwrap();
    assert_eq!(res.status(), 400);
    assert!(res.text().await.unwrap().contains("Unknown column"));
    let token = app.token(Role::Analyst).await;
    assert_eq!(app.api_get(&token, "/api/v1/endpoints?source=csv").await["total"], 2);
}
