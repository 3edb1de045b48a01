//! EDR coverage gaps (issue 21): network observations and a synced simulated tenant give real
//! gaps of each kind; each is a risk factor, an Endpoints filter (page, API, CSV), a Coverage
//! page and dashboard card, and `GET /api/v1/coverage`; gaps close when their cause goes.

use std::collections::BTreeMap;
use std::time::Duration;

use diesel::prelude::*;
use endpoint_analytics::auth::Role;
use endpoint_analytics::coverage::{COVERAGE_SOURCE, CoveragePolicy, refresh};
use endpoint_analytics::db::schema::{coverage_gaps, defender_machines as dm, endpoints, risk_factors};
use endpoint_analytics::domain::risk::RiskLevel;
use serde_json::{Value, json};

use crate::helpers::{TestApp, attr, doc, select_all, spawn_app_with};

/// A Windows PC by its DHCP fingerprint, an HP printer, and a PC with an unknown fingerprint.
fn network() -> Value {
    let windows = "1,3,6,15,31,33,43,44,46,47,119,121,249,252";
    json!([
        {"mac": "00:1a:2b:00:00:01", "ip": "10.50.0.1", "hostname": "finance-pc-07",
         "dhcp_vendor_class": "MSFT 5.0", "dhcp_params": windows},
        {"mac": "00:1a:2b:00:00:02", "ip": "10.50.0.2", "hostname": "hp-printer-3f",
         "user_agent": "HP HTTP Server; HP LaserJet Pro M404"},
        {"mac": "00:1a:2b:00:00:03", "ip": "10.50.0.3", "hostname": "mystery-box"},
    ])
}

async fn synced_with_network(customize: impl FnOnce(&mut endpoint_analytics::config::Settings)) -> (TestApp, String) {
    let app = spawn_app_with(customize).await;
    let token = app.token(Role::Admin).await;
    assert_eq!(app.ingest(&token, &network()).await.status(), 200);
    let sim = defender_sim::start(defender_sim::SimConfig { machines: 120, ..Default::default() }).await.unwrap();
    app.enable_defender(&sim).await;
    let run = app.wait_for_sync(Duration::from_secs(60)).await;
    assert_eq!(run.status, "succeeded", "{}", run.error);
    (app, token)
}

async fn id_of(app: &TestApp, host: &'static str) -> i64 {
    app.db
        .run(move |c| Ok(endpoints::table.filter(endpoints::hostname.eq(host)).select(endpoints::id).first(c)?))
        .await
        .unwrap()
}

/// The stored gaps, by kind.
async fn gaps(app: &TestApp) -> BTreeMap<String, Vec<i64>> {
    let rows: Vec<(String, i64)> = app
        .db
        .run(|c| Ok(coverage_gaps::table.select((coverage_gaps::kind, coverage_gaps::endpoint_id)).load(c)?))
        .await
        .unwrap();
    let mut out: BTreeMap<String, Vec<i64>> = BTreeMap::new();
    for (k, id) in rows {
        out.entry(k).or_default().push(id);
    }
    out
}

#[tokio::test]
async fn a_synced_tenant_and_the_network_show_every_kind_of_coverage_gap() {
    let (app, token) = synced_with_network(|_| {}).await;
    let pc = id_of(&app, "finance-pc-07").await;
    let printer = id_of(&app, "hp-printer-3f").await;
    let found = gaps(&app).await;

    // Not onboarded: the Windows PC the network sees and Defender does not; not the printer.
    let not_onboarded = found.get("not_onboarded").cloned().unwrap_or_default();
    assert!(not_onboarded.contains(&pc), "{found:?}");
    assert!(!found.values().flatten().any(|id| *id == printer), "a printer cannot run Defender");

    // Blind spots and flagged machines, against the machines as stored (an oracle of its own).
    let machines: Vec<(i64, String, String)> = app
        .db
        .run(|c| {
            Ok(dm::table
                .filter(dm::stale.eq(false))
                .filter(dm::endpoint_id.is_not_null())
                .select((dm::endpoint_id.assume_not_null(), dm::onboarding_status, dm::health_status))
                .load(c)?)
        })
        .await
        .unwrap();
    // A sensor that reports but is impaired is a blind spot; an Inactive machine the network does
    // not see (switched off, retired) is not. Statuses in any case, as Microsoft spells them.
    let impaired: Vec<i64> = machines
        .iter()
        .filter(|m| m.1.eq_ignore_ascii_case("Onboarded"))
        .filter(|m| !["active", "inactive", "unknown", ""].contains(&m.2.to_ascii_lowercase().as_str()))
        .map(|m| m.0)
        .collect();
    let network_seen: Vec<i64> = app
        .db
        .run(|c| {
            use endpoint_analytics::db::schema::endpoint_sources as s;
            Ok(s::table.filter(s::source.ne("defender")).select(s::endpoint_id).load(c)?)
        })
        .await
        .unwrap();
    let quiet_unseen: Vec<i64> = machines
        .iter()
        .filter(|m| m.1.eq_ignore_ascii_case("Onboarded") && m.2.eq_ignore_ascii_case("Inactive"))
        .filter(|m| !network_seen.contains(&m.0))
        .map(|m| m.0)
        .collect();
    let flagged: Vec<i64> = machines
        .iter()
        .filter(|m| ["canbeonboarded", "unsupported"].contains(&m.1.to_ascii_lowercase().as_str()))
        .map(|m| m.0)
        .collect();
    assert!(
        !impaired.is_empty() && !flagged.is_empty() && !quiet_unseen.is_empty(),
        "the simulator makes each: {machines:?}"
    );
    let blind = found.get("blind_spot").cloned().unwrap_or_default();
    for id in &impaired {
        assert!(blind.contains(id), "endpoint {id} has an impaired sensor: {found:?}");
    }
    for id in &quiet_unseen {
        assert!(!blind.contains(id), "endpoint {id} is switched off, not blind: {found:?}");
    }
    let mut listed = found.get("defender_flagged").cloned().unwrap_or_default();
    listed.sort_unstable();
    let mut expected = flagged.clone();
    expected.sort_unstable();
    assert_eq!(listed, expected, "exactly the machines Defender can onboard or does not support");

    // Each gap is a risk factor at the default level, and the endpoint's risk follows.
    let detail = app.api_get(&token, &format!("/api/v1/endpoints/{pc}")).await;
    let factor = detail["risk_factors"].as_array().unwrap().iter().find(|f| f["source"] == COVERAGE_SOURCE).cloned();
    let factor = factor.unwrap_or_else(|| panic!("a coverage factor: {detail}"));
    assert_eq!(factor["level"], "Medium");
    assert_eq!(factor["summary"], "No EDR coverage: not onboarded");
    assert_eq!(detail["coverage"]["kind"], "not_onboarded");
    assert!(["Medium", "High", "Critical"].contains(&detail["risk"].as_str().unwrap()), "{detail}");

    // The API: counts and the endpoints of a kind, paged.
    let api = app.api_get(&token, "/api/v1/coverage?coverage=defender_flagged&limit=2").await;
    assert_eq!(api["counts"]["defender_flagged"], json!(flagged.len()));
    assert_eq!(api["counts"]["blind_spot"], json!(blind.len()));
    assert_eq!(api["total"], json!(flagged.len()));
    assert!(api["items"].as_array().unwrap().iter().all(|e| e["coverage"]["kind"] == "defender_flagged"));
    let all = app.api_get(&token, "/api/v1/coverage").await;
    assert_eq!(all["total"], json!(found.values().map(Vec::len).sum::<usize>()));

    // The page, the dashboard card and the Endpoints filter with its CSV.
    let analyst = app.login_as("ana", Role::Analyst).await;
    let get = |path: &str| {
        let (c, url) = (analyst.clone(), app.url(path));
        async move { doc(&c.get(url).send().await.unwrap().text().await.unwrap()) }
    };
    let page = get("/coverage").await;
    assert_eq!(select_all(&page, "#coverage-not_onboarded .coverage-count").join(""), not_onboarded.len().to_string());
    assert_eq!(select_all(&page, "#coverage-defender_flagged .coverage-count").join(""), flagged.len().to_string());
    let link = attr(&page, "#coverage-not_onboarded a", "href").unwrap();
    assert_eq!(link, "/endpoints?coverage=not_onboarded");
    let dashboard = get("/").await;
    assert_eq!(select_all(&dashboard, "#coverage-card a.coverage-blind_spot").join(""), blind.len().to_string());
    let list = get(&link).await;
    assert!(!select_all(&list, &format!("a[href=\"/endpoints/{pc}\"]")).is_empty(), "the PC is listed");
    assert!(select_all(&list, &format!("a[href=\"/endpoints/{printer}\"]")).is_empty());
    let csv = analyst.get(app.url("/endpoints.csv?coverage=not_onboarded")).send().await.unwrap().text().await.unwrap();
    assert_eq!(csv.lines().count(), not_onboarded.len() + 1, "{csv}");
    let bad = analyst.get(app.url("/endpoints?coverage=everything")).send().await.unwrap();
    assert_eq!(bad.status(), 400);
}

#[tokio::test]
async fn gaps_close_when_their_cause_goes_and_follow_the_level_setting() {
    let (app, _token) = synced_with_network(|s| s.coverage_risk_level = "High".into()).await;
    let policy = CoveragePolicy { blind_after_days: 7, level: RiskLevel::High };
    let level_of = |id: i64| {
        let db = app.db.clone();
        async move {
            db.run(move |c| {
                Ok(risk_factors::table
                    .filter(risk_factors::endpoint_id.eq(id))
                    .filter(risk_factors::source.eq(COVERAGE_SOURCE))
                    .select(risk_factors::level)
                    .first::<i16>(c)
                    .optional()?)
            })
            .await
            .unwrap()
        }
    };
    let blind = gaps(&app).await.get("blind_spot").cloned().unwrap_or_default();
    let healed = blind[0];
    assert_eq!(level_of(healed).await, Some(RiskLevel::High.to_i16()), "the setting's level");
    let since: i64 = app
        .db
        .run(move |c| Ok(coverage_gaps::table.find(healed).select(coverage_gaps::since).first(c)?))
        .await
        .unwrap();

    // Nothing changed: a refresh writes nothing and keeps when the gaps opened.
    let now = chrono::Utc::now().timestamp() + 60;
    let again = app.db.run(move |c| Ok(refresh(c, policy, now)?)).await.unwrap();
    assert_eq!((again.opened, again.closed, again.changed), (0, 0, 0));

    // The sensor reports healthy again (as the next sync would store it): the gap closes and
    // the factor goes with it.
    app.db
        .run(move |c| {
            Ok(diesel::update(dm::table.filter(dm::endpoint_id.eq(healed)))
                .set((dm::health_status.eq("Active"), dm::last_seen.eq(now)))
                .execute(c)?)
        })
        .await
        .unwrap();
    let after = app.db.run(move |c| Ok(refresh(c, policy, now)?)).await.unwrap();
    assert_eq!(after.closed, 1, "{after:?}");
    assert!(!gaps(&app).await.values().flatten().any(|id| *id == healed));
    assert_eq!(level_of(healed).await, None, "the factor is gone");

    // Another level for every open gap at the next refresh; when the gaps opened is kept.
    let other = blind[1];
    let lower = CoveragePolicy { level: RiskLevel::Low, ..policy };
    app.db.run(move |c| Ok(refresh(c, lower, now)?)).await.unwrap();
    assert_eq!(level_of(other).await, Some(RiskLevel::Low.to_i16()));
    assert!(since <= now);
}
