//! Pages without rough edges (issue 20, first part): the Integrations page shows each
//! integration's state on its card under a plain-text title; the Risk tab shows what Defender
//! reported once, in its subtab; the review queue holds only what needs a person, with a total,
//! pages and search, and the machines that matched nothing are a filter of the Endpoints list.

use diesel::prelude::*;
use endpoint_analytics::auth::Role;
use endpoint_analytics::db::models::defender_machines::{self as machines, DefenderMachine};
use endpoint_analytics::db::schema::{defender_machines, endpoints};
use serde_json::json;

use crate::defender_sync::synced;
use crate::helpers::*;

#[tokio::test]
async fn the_integrations_page_shows_each_state_under_a_plain_title() {
    let app = spawn_app().await;
    let analyst = app.login_as("ana", Role::Analyst).await;
    let page = doc(&analyst.get(app.url("/config/integrations")).send().await.unwrap().text().await.unwrap());
    assert_eq!(select_all(&page, "title"), vec!["Integrations · Endpoint Analytics"], "no markup in the title");
    assert_eq!(attr(&page, "#defender-card", "data-state").as_deref(), Some("not-configured"));
    assert_eq!(attr(&page, "#sso-card", "data-state").as_deref(), Some("not-configured"));

    let (app, _sim, token, _) = synced(40).await;
    let status = app.api_get(&token, "/api/v1/integrations/defender/status").await;
    let analyst = app.login_as("ana", Role::Analyst).await;
    let page = doc(&analyst.get(app.url("/config/integrations")).send().await.unwrap().text().await.unwrap());
    assert_eq!(attr(&page, "#defender-card", "data-state").as_deref(), Some("enabled"));
    assert_eq!(attr(&page, "#defender-card .last-sync", "data-status").as_deref(), Some("succeeded"));
    let machines = select_all(&page, "#defender-card .machine-count").join(" ");
    assert_eq!(machines, format!("{} ({} stale)", status["machines"], status["stale_machines"]), "{status}");
    assert_eq!(select_all(&page, "#defender-card .next-sync").len(), 1);
}

#[tokio::test]
async fn the_risk_tab_shows_defenders_findings_once() {
    let (app, _sim, _token, _) = synced(80).await;
    let (endpoint, cve): (i64, String) = app
        .db
        .run(|c| {
            Ok(defender_machines::table
                .filter(defender_machines::stale.eq(false))
                .filter(defender_machines::top_vuln_cve.ne(""))
                .filter(defender_machines::endpoint_id.is_not_null())
                .select((defender_machines::endpoint_id.assume_not_null(), defender_machines::top_vuln_cve))
                .first(c)?)
        })
        .await
        .unwrap();
    let analyst = app.login_as("ana", Role::Analyst).await;
    let html =
        analyst.get(app.url(&format!("/endpoints/{endpoint}/tabs/risk"))).send().await.unwrap().text().await.unwrap();
    let page = doc(&html);
    assert_eq!(select_all(&page, "#defender-subtab").len(), 1);
    // Above the timeline of the endpoint's risk over time (which says why the level was what it
    // was, day by day), the findings are shown once.
    let findings = html.split("id=\"risk-history\"").next().unwrap();
    assert_eq!(findings.matches(cve.as_str()).count(), 1, "the most severe vulnerability is shown once: {html}");
    let subtabs = select_all(&page, "nav.subtabs a");
    assert!(!subtabs.iter().any(|s| s.starts_with("Microsoft Defender ")), "{subtabs:?}");
    assert!(subtabs.contains(&"Microsoft Defender".to_owned()), "{subtabs:?}");
}

/// A Defender machine row as an import leaves it, with its note.
fn machine(id: &str, name: &str, endpoint_id: Option<i64>, note: &str) -> DefenderMachine {
    DefenderMachine {
        machine_id: id.into(),
        endpoint_id,
        computer_dns_name: name.into(),
        os_platform: "Windows11".into(),
        onboarding_status: "Onboarded".into(),
        last_ip: "10.0.0.1".into(),
        match_note: note.into(),
        ..Default::default()
    }
}

#[tokio::test]
async fn the_review_queue_holds_only_what_needs_a_person_with_a_total_pages_and_search() {
    let app = spawn_app().await;
    let token = app.token(Role::Admin).await;
    // Three endpoints Defender machines made because they matched nothing.
    let observed: Vec<_> =
        (0..3).map(|i| json!({"hostname": format!("lone-{i}"), "ip": format!("10.7.0.{i}")})).collect();
    assert_eq!(app.ingest(&token, &json!(observed)).await.status(), 200);
    let lone: Vec<i64> = app
        .db
        .run(|c| Ok(endpoints::table.filter(endpoints::hostname.like("lone-%")).select(endpoints::id).load(c)?))
        .await
        .unwrap();
    assert_eq!(lone.len(), 3);
    let mut rows: Vec<DefenderMachine> = (0..120)
        .map(|i| {
            machine(&format!("{i:040x}"), &format!("amb-{i:03}.corp"), None, "ambiguous: 2 endpoints share this name")
        })
        .collect();
    rows.extend(lone.iter().enumerate().map(|(i, id)| {
        machine(
            &format!("f{i:039x}"),
            &format!("lone-{i}"),
            Some(*id),
            "unmatched: no network endpoint with its MAC, name or IP",
        )
    }));
    app.db.run(move |c| Ok(machines::replace_many(c, &rows)?)).await.unwrap();

    let operator = app.login_as("olivia", Role::Operator).await;
    let get = |path: String| {
        let (operator, url) = (operator.clone(), app.url(&path));
        async move { doc(&operator.get(url).send().await.unwrap().text().await.unwrap()) }
    };
    let page = get("/config/integrations/defender".into()).await;
    let total = select_all(&page, "#review-total").join(" ");
    assert!(total.starts_with("120 machines to review") && total.contains("page 1 of 3"), "{total}");
    assert_eq!(select_all(&page, "#review tbody tr").len(), 50);
    assert!(select_all(&page, "#review tr[data-machine^=\"f\"]").is_empty(), "unmatched machines are not queued");
    assert_eq!(select_all(&page, "#unmatched a").join(" "), "3 machines matched no network endpoint");
    let next = attr(&page, "#review-pager a[rel=next]", "href").expect("a next page");
    let last = get(attr(&get(next).await, "#review-pager a[rel=next]", "href").expect("a third page")).await;
    assert_eq!(select_all(&last, "#review tbody tr").len(), 20, "the queue no longer stops at 100 rows");
    assert!(select_all(&last, "#review-pager a[rel=next]").is_empty());

    let found = get("/config/integrations/defender?review_q=AMB-11".into()).await;
    assert!(select_all(&found, "#review-total").join(" ").starts_with("10 machines to review matching"));
    let none = get("/config/integrations/defender?review_q=%25".into()).await;
    assert!(
        select_all(&none, "#review-total").join(" ").starts_with("0 machines"),
        "a % is a character, not a wildcard"
    );

    // The unmatched ones, as a filter of the Endpoints list (the page and the API).
    let list = get("/endpoints?defender=unmatched".into()).await;
    for id in &lone {
        assert!(!select_all(&list, &format!("a[href=\"/endpoints/{id}\"]")).is_empty(), "endpoint {id} is listed");
    }
    assert_eq!(select_all(&list, "#filter-defender-unmatched").len(), 1, "the filter is shown and can be cleared");
    let api = app.api_get(&token, "/api/v1/endpoints?defender=unmatched").await;
    assert_eq!(api["items"].as_array().map(Vec::len), Some(3), "{api}");
    let res = operator.get(app.url("/endpoints?defender=whatever")).send().await.unwrap();
    assert_eq!(res.status(), 400);
}

#[tokio::test]
async fn the_filtered_inventory_exports_as_csv_with_inert_cells() {
    let app = spawn_app().await;
    let token = app.token(Role::Admin).await;
    // More than one page of the export (500 rows), and names a spreadsheet would run.
    let mut observed: Vec<_> = (0..1100)
        .map(|i| json!({"hostname": format!("csv-{i:04}"), "ip": format!("10.8.{}.{}", i / 250, i % 250)}))
        .collect();
    observed.push(json!({"hostname": "=HYPERLINK(\"http://evil\",\"x\")", "ip": "10.9.0.1"}));
    observed.push(json!({"hostname": "@SUM(A1)", "ip": "10.9.0.2", "user_agent": "+cmd"}));
    assert_eq!(app.ingest(&token, &json!(observed)).await.status(), 200);

    let analyst = app.login_as("ana", Role::Analyst).await;
    let list = doc(&analyst.get(app.url("/endpoints?q=csv-00")).send().await.unwrap().text().await.unwrap());
    let link = attr(&list, "#export-csv", "href").expect("the list offers its CSV");
    assert_eq!(link, "/endpoints.csv?q=csv-00", "the export carries the list's filters");
    let res = analyst.get(app.url(&link)).send().await.unwrap();
    assert_eq!(res.status(), 200);
    assert!(res.headers()["content-type"].to_str().unwrap().starts_with("text/csv"));
    assert!(res.headers()["content-disposition"].to_str().unwrap().contains("endpoints.csv"));
    let text = res.text().await.unwrap();
    let mut rows = csv::Reader::from_reader(text.as_bytes());
    assert_eq!(rows.headers().unwrap().get(1), Some("hostname"));
    let names: Vec<String> = rows.records().map(|r| r.unwrap()[1].to_owned()).collect();
    assert_eq!(names.len(), 100, "csv-0000 to csv-0099");
    assert!(names.iter().all(|n| n.starts_with("csv-00")));

    let api = reqwest::Client::new().get(app.url("/api/v1/endpoints.csv")).bearer_auth(&token).send().await.unwrap();
    assert_eq!(api.status(), 200);
    let text = api.text().await.unwrap();
    let mut rows = csv::Reader::from_reader(text.as_bytes());
    let records: Vec<csv::StringRecord> = rows.records().map(Result::unwrap).collect();
    assert_eq!(records.len(), 1102, "every endpoint, across pages of the export");
    let ids: std::collections::HashSet<&str> = records.iter().map(|r| r.get(0).unwrap()).collect();
    assert_eq!(ids.len(), 1102, "no endpoint twice");
    let hostile: Vec<&str> = records.iter().map(|r| r.get(1).unwrap()).filter(|n| !n.starts_with("csv-")).collect();
    assert_eq!(hostile.len(), 2, "{hostile:?}");
    assert!(hostile.iter().any(|n| n.starts_with("'=")) && hostile.iter().any(|n| n.starts_with("'@")), "{hostile:?}");
    let res = reqwest::Client::new()
        .get(app.url("/api/v1/endpoints.csv?risk=Purple"))
        .bearer_auth(&token)
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 400);
    assert_eq!(reqwest::Client::new().get(app.url("/api/v1/endpoints.csv")).send().await.unwrap().status(), 401);
}
