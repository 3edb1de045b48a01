//! The modeling engine over HTTP: observations are profiled on ingest, risk follows, profiles
//! can be disabled and re-modeled, and integrations own profiles of their own.

use endpoint_analytics::auth::Role;
use endpoint_analytics::domain::profiles::MatchScore;
use endpoint_analytics::modeling::{self, Modeler};
use serde_json::{Value, json};

use crate::helpers::*;

async fn endpoint_by_mac(app: &TestApp, token: &str, mac: &str) -> Value {
    let list = app.api_get(token, &format!("/api/v1/endpoints?q={mac}")).await;
    assert_eq!(list["total"], 1, "one endpoint has {mac}");
    list["items"][0].clone()
}

#[tokio::test]
async fn realistic_observations_are_classified_on_ingest() {
    let app = spawn_app().await;
    let token = app.token(Role::Operator).await;
    let cases = [
        (
            json!({"mac": "3c:d9:2b:11:22:33", "ip": "10.0.0.1", "dhcp_vendor_class": "Hewlett-Packard JetDirect"}),
            "HP Printer",
            5,
        ),
        (json!({"mac": "f0:b3:ec:01:02:03", "ip": "10.0.0.2", "hostname": "Johns-iPhone"}), "Apple iPhone", 4),
        (
            json!({"mac": "10:e7:c6:01:02:03", "ip": "10.0.0.3", "hostname": "PC-0042", "dhcp_vendor_class": "MSFT 5.0",
                "dhcp_params": "1,3,6,15,31,33,43,44,46,47,119,121,249,252"}),
            "Windows Workstation",
            5,
        ),
        (json!({"mac": "52:54:00:ab:cd:ef", "ip": "10.0.0.4"}), "QEMU/KVM Virtual Machine", 0),
        (json!({"mac": "b8:27:eb:12:34:56", "ip": "10.0.0.5"}), "Raspberry Pi", 0),
    ];
    let body = Value::Array(cases.iter().map(|c| c.0.clone()).collect());
    assert_eq!(app.ingest(&token, &body).await.status(), 200);
    for (obs, profile, score) in &cases {
        let e = endpoint_by_mac(&app, &token, obs["mac"].as_str().unwrap()).await;
        let got = e["profile"]["name"].as_str().unwrap();
        assert!(
            got.starts_with(profile.split('/').next().unwrap()) || got == *profile,
            "{obs} → {got}, expected {profile}"
        );
        if *score > 0 {
            let name = endpoint_analytics::domain::profiles::MatchScore::from_i16(*score).unwrap().as_str();
            assert_eq!(e["profile"]["match_score"], name, "{obs}");
        }
    }
    // Vendors come from the IEEE registry.
    let hp = endpoint_by_mac(&app, &token, "3c:d9:2b:11:22:33").await;
    assert!(hp["mac_vendor"].as_str().unwrap().to_lowercase().contains("hewlett"), "{hp}");
}

#[tokio::test]
async fn an_unknown_device_is_not_profiled_and_that_is_a_risk() {
    let app = spawn_app().await;
    let token = app.token(Role::Operator).await;
    app.ingest(&token, &json!([{"ip": "10.9.9.9"}])).await;
    let list = app.api_get(&token, "/api/v1/endpoints").await;
    let e = &list["items"][0];
    assert!(e["profile"].is_null(), "not profiled: {e}");
    assert_eq!(e["risk"], "Low");
    let analyst = app.login_as("ann", Role::Analyst).await;
    let id = e["id"].as_i64().unwrap();
    let page =
        doc(&analyst.get(app.url(&format!("/endpoints/{id}?tab=risk"))).send().await.unwrap().text().await.unwrap());
    assert_eq!(select_all(&page, "section.factor .factor-summary"), vec!["Not Profiled"]);
    assert_eq!(select_all(&page, "#overall-risk"), vec!["Low"]);
    // Filtering the list by risk finds it.
    assert_eq!(app.api_get(&token, "/api/v1/endpoints?risk=Low").await["total"], 1);
    assert_eq!(app.api_get(&token, "/api/v1/endpoints?risk=High").await["total"], 0);
}

#[tokio::test]
async fn one_mac_with_conflicting_names_is_a_duplicate_mac_risk() {
    let app = spawn_app().await;
    let token = app.token(Role::Operator).await;
    app.ingest(&token, &json!([{"mac": "3c:d9:2b:00:00:01", "hostname": "alpha", "seen_at": "2026-11-25T10:00:00Z"}]))
        .await;
    app.ingest(&token, &json!([{"mac": "3c:d9:2b:00:00:01", "hostname": "bravo"}])).await;
    let e = endpoint_by_mac(&app, &token, "3c:d9:2b:00:00:01").await;
    assert_eq!(e["risk"], "Medium", "{e}");
}

#[tokio::test]
async fn disabling_a_profile_changes_the_result_after_a_re_model_with_live_progress() {
    let app = spawn_app().await;
    let token = app.token(Role::Operator).await;
    app.ingest(&token, &json!([{"mac": "b8:27:eb:12:34:56", "ip": "10.0.0.5"}])).await;
    let before = endpoint_by_mac(&app, &token, "b8:27:eb:12:34:56").await;
    assert_eq!(before["profile"]["name"], "Raspberry Pi");

    let admin = app.login_as("adam", Role::Admin).await;
    let page = doc(&admin.get(app.url("/config/profiles")).send().await.unwrap().text().await.unwrap());
    let rows = select_all(&page, "#profiles tbody tr");
    assert!(rows.len() >= 60, "the standard library is listed");
    let form = attr(&page, "tr[data-profile=\"Raspberry Pi\"] form", "action").unwrap();
    let res = app.post_form(&admin, &form, &[("enabled", "false")]).await;
    assert_eq!(res.status(), 303);
    let page = doc(&admin.get(app.url("/config/profiles")).send().await.unwrap().text().await.unwrap());
    assert_eq!(select_all(&page, "#model-stale").len(), 1, "the model is marked stale");
    assert_eq!(
        endpoint_by_mac(&app, &token, "b8:27:eb:12:34:56").await["profile"]["name"],
        "Raspberry Pi",
        "nothing changes before the re-model"
    );

    let csrf = app.csrf(&admin, "/config/profiles").await;
    let res = admin
        .post(app.url("/config/profiles/remodel"))
        .header("x-csrf-token", &csrf)
        .header("hx-request", "true")
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 200);
    assert!(res.text().await.unwrap().contains("remodel-progress"));
    let mut status = String::new();
    for _ in 0..100 {
        let frag = doc(&admin
            .get(app.url("/config/profiles/remodel"))
            .header("hx-request", "true")
            .send()
            .await
            .unwrap()
            .text()
            .await
            .unwrap());
        if let Some(s) = attr(&frag, "#remodel-progress", "data-status") {
            status = s;
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    assert_eq!(status, "succeeded");
    let after = endpoint_by_mac(&app, &token, "b8:27:eb:12:34:56").await;
    assert_ne!(after["profile"]["name"], "Raspberry Pi", "a disabled profile is not assigned");
    // An analyst may watch but not start a re-model.
    let analyst = app.login_as("ann", Role::Analyst).await;
    assert_eq!(app.post_form(&analyst, "/config/profiles/remodel", &[]).await.status(), 403);
    let audit = doc(&admin.get(app.url("/audit")).send().await.unwrap().text().await.unwrap());
    let rows = select_all(&audit, "#audit tbody tr");
    assert!(rows.iter().any(|r| r.contains("profiles.remodel") && r.contains("succeeded")), "{rows:?}");
    assert!(rows.iter().any(|r| r.contains("profile.disable") && r.contains("Raspberry Pi")));
}

#[tokio::test]
async fn integration_profiles_are_created_assigned_and_deleted_with_a_re_model() {
    let app = spawn_app().await;
    let token = app.token(Role::Operator).await;
    app.ingest(&token, &json!([{"mac": "10:e7:c6:01:02:03", "ip": "10.0.0.3", "dhcp_vendor_class": "MSFT 5.0"}])).await;
    let e = endpoint_by_mac(&app, &token, "10:e7:c6:01:02:03").await;
    let id = e["id"].as_i64().unwrap();
    let standard = e["profile"]["name"].as_str().unwrap().to_owned();
    assert!(!standard.is_empty());

    let modeler = Modeler::standard().unwrap();
    let m = modeler.clone();
    app.db
        .run(move |c| {
            let p =
                m.integration_profile(c, "defender", "Windows11_23H2", "Windows 11 23H2 as reported by Defender")?;
            modeling::assign(c, id, p.id, MatchScore::VeryHigh)?;
            m.model_ids(c, &[id])?;
            Ok(())
        })
        .await
        .unwrap();
    let e = endpoint_by_mac(&app, &token, "10:e7:c6:01:02:03").await;
    assert_eq!(e["profile"]["name"], "Windows11_23H2");
    assert_eq!(e["profile"]["match_score"], "Very High");
    assert!(
        e["profile"]["others"].as_array().unwrap().iter().any(|o| o["name"] == standard.as_str()),
        "the standard profile is kept as another profile: {e}"
    );

    let m = modeler.clone();
    let affected = app.db.run(move |c| Ok(m.delete_owner(c, "defender")?)).await.unwrap();
    assert_eq!(affected, 1);
    let e = endpoint_by_mac(&app, &token, "10:e7:c6:01:02:03").await;
    assert_eq!(e["profile"]["name"], standard.as_str(), "back to the standard profile");
    let history = app.api_get(&token, &format!("/api/v1/endpoints/{id}")).await["history"].clone();
    assert!(history.as_array().unwrap().iter().filter(|h| h["field"] == "profile").count() >= 2, "{history}");
}

#[tokio::test]
async fn the_dashboard_charts_real_data_with_links_to_the_filtered_list() {
    let app = spawn_app().await;
    let token = app.token(Role::Operator).await;
    app.ingest(
        &token,
        &json!([
            {"mac": "b8:27:eb:00:00:01", "ip": "10.0.0.1"},
            {"mac": "b8:27:eb:00:00:02", "ip": "10.0.0.2"},
            {"ip": "10.0.0.3"}
        ]),
    )
    .await;
    let analyst = app.login_as("ann", Role::Analyst).await;
    let page = doc(&analyst.get(app.url("/")).send().await.unwrap().text().await.unwrap());
    assert_eq!(select_all(&page, "#endpoint-total"), vec!["3"]);
    let pi = attr(&page, "#chart-profiles svg a[href=\"/endpoints?profile=Raspberry+Pi\"] text.chart-value", "class");
    assert!(pi.is_some(), "the Raspberry Pi bar links to the filtered list");
    let values = select_all(&page, "#chart-risk text.chart-value");
    assert_eq!(values.len(), 5, "one bar per risk level");
    assert_eq!(select_all(&page, "#chart-sources a title"), vec!["network: 3"]);
    assert!(select_all(&page, "#profile-changes td").iter().any(|t| t.contains("Raspberry Pi")));
}

/// A full re-model beside other writers (ingests, audit entries, sessions) completes, and so do
/// they: on SQLite a transaction that read before it wrote used to fail at once with "database
/// is locked" when another connection committed in between.
#[tokio::test]
async fn a_re_model_completes_beside_concurrent_ingests_and_they_all_complete() {
    let app = spawn_app_with(|s| s.db_pool_size = 8).await;
    let token = app.token(Role::Operator).await;
    let batch = |round: usize| {
        json!(
            (0..500)
                .map(|i| json!({
                    "mac": format!("3c:52:{:02x}:{:02x}:{:02x}:01", round, i / 256, i % 256),
                    "hostname": format!("pc-{round}-{i}"),
                    "dhcp_vendor_class": "MSFT 5.0",
                }))
                .collect::<Vec<_>>()
        )
    };
    for round in 0..4 {
        assert_eq!(app.ingest(&token, &batch(round)).await.status(), 200);
    }
    let admin = app.login_as("ada", Role::Admin).await;
    for attempt in 0..3 {
        let ingests = (0..6).map(|k| {
            let (app, token, body) = (&app, &token, batch(10 + attempt * 10 + k));
            async move { app.ingest(token, &body).await.status().as_u16() }
        });
        let started = app.post_form(&admin, "/config/profiles/remodel", &[]);
        let (started, statuses) = tokio::join!(started, futures_util::future::join_all(ingests));
        assert_eq!(started.status(), 303, "attempt {attempt}");
        assert!(statuses.iter().all(|s| *s == 200), "attempt {attempt}: ingests answered {statuses:?}");
        let mut status = String::new();
        for _ in 0..600 {
            let job = app.db.run(|c| Ok(endpoint_analytics::db::models::jobs::latest(c, "remodel")?)).await.unwrap();
            if let Some(j) = job.filter(|j| !j.is_running()) {
                status = format!("{} {}", j.status, j.message);
                break;
            }
            tokio::time::sleep(std::time::Duration::from_millis(50)).await;
        }
        assert!(status.starts_with("succeeded"), "attempt {attempt}: the re-model ended {status:?}");
    }
}
