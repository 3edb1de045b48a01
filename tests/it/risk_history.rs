//! Risk over time (issue 21): a sync records every endpoint's day; only changes are written;
//! the day after, a changed endpoint gets a row of its own; the API, the dashboard's trend and
//! risers, and the Risk tab's timeline show them; retention keeps each endpoint's state at the
//! cutoff. Later days are recorded by calling the snapshot with a later clock, the one thing a
//! test cannot wait for.

use std::time::Duration;

use diesel::prelude::*;
use endpoint_analytics::auth::Role;
use endpoint_analytics::db::models::risk;
use endpoint_analytics::db::schema::{endpoints, risk_history};
use endpoint_analytics::domain::risk::RiskLevel;
use endpoint_analytics::risk_history::{day_of, prune, snapshot};
use serde_json::json;

use crate::helpers::{TestApp, doc, select_all, spawn_app};

const DAY: i64 = 86_400;

async fn rows(app: &TestApp) -> i64 {
    app.db.run(|c| Ok(risk_history::table.count().get_result(c)?)).await.unwrap()
}

async fn endpoint_count(app: &TestApp) -> i64 {
    app.db.run(|c| Ok(endpoints::table.count().get_result(c)?)).await.unwrap()
}

#[tokio::test]
async fn risk_history_records_each_change_once_and_shows_it_everywhere() {
    let app = spawn_app().await;
    let sim = defender_sim::start(defender_sim::SimConfig { machines: 60, ..Default::default() }).await.unwrap();
    app.enable_defender(&sim).await;
    let run = app.wait_for_sync(Duration::from_secs(60)).await;
    assert_eq!(run.status, "succeeded", "{}", run.error);
    let token = app.token(Role::Analyst).await;

    // The sync recorded today for every endpoint; again with nothing changed writes nothing.
    let endpoints = endpoint_count(&app).await;
    assert_eq!(rows(&app).await, endpoints);
    let now = chrono::Utc::now().timestamp();
    assert_eq!(app.db.run(move |c| Ok(snapshot(c, now)?)).await.unwrap(), 0);

    // A calm endpoint turns Critical (a factor set as an integration sets it); tomorrow's
    // snapshot writes one row, for it alone.
    let calm: i64 = app
        .db
        .run(|c| {
            Ok(endpoints::table
                .filter(endpoints::risk_level.eq(0))
                .select(endpoints::id)
                .order(endpoints::id)
                .first(c)?)
        })
        .await
        .unwrap();
    let critical = RiskLevel::Critical.to_i16();
    app.db
        .run(move |c| Ok(risk::set(c, calm, "Test scanner", Some((critical, "Ransomware beacon", "")))?))
        .await
        .unwrap();
    let tomorrow = now + DAY;
    assert_eq!(app.db.run(move |c| Ok(snapshot(c, tomorrow)?)).await.unwrap(), 1);
    assert_eq!(rows(&app).await, endpoints + 1);

    // Its history, newest first, with the reason.
    let history = app.api_get(&token, &format!("/api/v1/endpoints/{calm}/risk-history")).await;
    let items = history["items"].as_array().unwrap();
    assert_eq!(items.len(), 2, "{history}");
    assert_eq!((items[0]["risk"].as_str(), items[1]["risk"].as_str()), (Some("Critical"), Some("None")));
    assert_eq!(items[0]["why"], "Test scanner: Ransomware beacon");
    let today = chrono::DateTime::from_timestamp(now, 0).unwrap().date_naive();
    assert_eq!(items[1]["date"], today.to_string());

    // The summary moves one endpoint from None to Critical between the two days.
    let next = today.succ_opt().unwrap();
    let summary = app.api_get(&token, &format!("/api/v1/risk/summary?from={today}&to={next}")).await;
    let days = summary["days"].as_array().unwrap();
    assert_eq!(days.len(), 2, "{summary}");
    assert_eq!(days[1]["Critical"].as_i64().unwrap(), days[0]["Critical"].as_i64().unwrap() + 1);
    assert_eq!(days[1]["None"].as_i64().unwrap(), days[0]["None"].as_i64().unwrap() - 1);
    let total: i64 = ["None", "Low", "Medium", "High", "Critical"].iter().map(|l| days[0][l].as_i64().unwrap()).sum();
    assert_eq!(total, endpoints, "every endpoint is counted once a day");
    for bad in ["from=yesterday", "from=2026-12-06&to=2026-12-01", "from=2020-01-01&to=2026-01-01"] {
        let res = reqwest::Client::new()
            .get(app.url(&format!("/api/v1/risk/summary?{bad}")))
            .bearer_auth(&token)
            .send()
            .await
            .unwrap();
        assert_eq!(res.status(), 400, "{bad}");
    }

    // The Risk tab's timeline and the dashboard's trend.
    let analyst = app.login_as("ana", Role::Analyst).await;
    let page =
        doc(&analyst.get(app.url(&format!("/endpoints/{calm}?tab=risk"))).send().await.unwrap().text().await.unwrap());
    let timeline = select_all(&page, "#risk-history li");
    assert_eq!(timeline.len(), 2, "{timeline:?}");
    assert!(timeline[0].contains("Critical") && timeline[0].contains("Ransomware beacon"), "{timeline:?}");
    let dashboard = doc(&analyst.get(app.url("/?days=90")).send().await.unwrap().text().await.unwrap());
    assert!(!select_all(&dashboard, "#risk-trend svg rect").is_empty(), "the trend has columns");
    assert_eq!(analyst.get(app.url("/?days=7")).send().await.unwrap().status(), 400);

    // Retention: 400 days later, pruning keeps what each endpoint was at the cutoff.
    let later = now + 500 * DAY;
    app.db.run(move |c| Ok(prune(c, later, 400)?)).await.unwrap();
    assert_eq!(rows(&app).await, endpoints, "one row per endpoint: its state at the cutoff");
    let kept: i16 = app
        .db
        .run(move |c| {
            Ok(risk_history::table.filter(risk_history::endpoint_id.eq(calm)).select(risk_history::risk).first(c)?)
        })
        .await
        .unwrap();
    assert_eq!(kept, critical);
    assert!(day_of(later) > day_of(now));
}

#[tokio::test]
async fn the_dashboard_lists_the_endpoints_whose_risk_rose_this_week() {
    let app = spawn_app().await;
    let token = app.token(Role::Operator).await;
    let batch = json!([{"hostname": "riser-1", "ip": "10.60.0.1"}, {"hostname": "steady-1", "ip": "10.60.0.2"}]);
    assert_eq!(app.ingest(&token, &batch).await.status(), 200);
    let ids: Vec<(i64, String)> =
        app.db.run(|c| Ok(endpoints::table.select((endpoints::id, endpoints::hostname)).load(c)?)).await.unwrap();
    let riser = ids.iter().find(|(_, h)| h == "riser-1").unwrap().0;
    // Ten days ago both were recorded calm (what the supervisor may have recorded at start is
    // set aside first: history is written forward in time); today one of them is High.
    let now = chrono::Utc::now().timestamp();
    app.db.run(|c| Ok(diesel::delete(risk_history::table).execute(c)?)).await.unwrap();
    app.db.run(move |c| Ok(snapshot(c, now - 10 * DAY)?)).await.unwrap();
    let high = RiskLevel::High.to_i16();
    app.db.run(move |c| Ok(risk::set(c, riser, "Test scanner", Some((high, "Open RDP", "")))?)).await.unwrap();
    app.db.run(move |c| Ok(snapshot(c, now)?)).await.unwrap();
    let analyst = app.login_as("ana", Role::Analyst).await;
    let dashboard = doc(&analyst.get(app.url("/")).send().await.unwrap().text().await.unwrap());
    let rows = select_all(&dashboard, "#risers tbody tr");
    assert_eq!(rows.len(), 1, "{rows:?}");
    assert!(rows[0].contains("riser-1") && rows[0].contains("High"), "{rows:?}");
}

/// The whole-inventory passes (the day's snapshot, the coverage refresh) go through the
/// inventory a slice of endpoints at a time (`endpoints::in_slices`, 20,000 each), so that a
/// million endpoints are never all in memory at once. Over 45,000 endpoints (three slices, the
/// last a short one), each endpoint is recorded exactly once, a second pass finds nothing to
/// change, and a change at the very end of the last slice is seen.
#[tokio::test]
async fn the_whole_inventory_passes_go_slice_by_slice_and_miss_nothing() {
    use endpoint_analytics::coverage::{CoveragePolicy, refresh};
    use endpoint_analytics::db::lease;
    use endpoint_analytics::db::schema::{coverage_gaps, risk_day_counts};
    const N: i64 = 45_000;
    let app = spawn_app().await;
    // The app's supervisor runs the same passes from its second tick (7.5 s after the start): on
    // a loaded machine it could run them before the test does and leave it nothing to write.
    // Holding their leases keeps it out.
    let mut leases = Vec::new();
    for name in [lease::COVERAGE, lease::RISK_HISTORY] {
        leases.push(app.db.try_lease(name).await.unwrap().expect("free at the start"));
    }
    let now = chrono::Utc::now().timestamp();
    app.db
        .run(move |c| {
            diesel::sql_query(format!(
                "INSERT INTO profiles (name, owner, category, created_at) VALUES ('Slice PC', 'test', 'Workstation', {now})"
            ))
            .execute(c)?;
            diesel::sql_query(format!(
                "WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < {N}) \
                 INSERT INTO endpoints (hostname, os_name, profile, risk_level, first_seen, last_seen, created_at, \
                 updated_at) SELECT 'slice-' || i, 'Windows 11', 'Slice PC', i % 5, {now}, {now}, {now}, {now} FROM n"
            ))
            .execute(c)?;
            diesel::sql_query(format!(
                "INSERT INTO endpoint_sources (endpoint_id, source, first_seen, last_seen) \
                 SELECT id, 'network', {now}, {now} FROM endpoints"
            ))
            .execute(c)?;
            Ok(())
        })
        .await
        .unwrap();

    let policy = CoveragePolicy::default();
    let first = app.db.run(move |c| Ok(refresh(c, policy, now)?)).await.unwrap();
    assert_eq!(first.opened as i64, N, "every endpoint's gap, once");
    let again = app.db.run(move |c| Ok(refresh(c, policy, now)?)).await.unwrap();
    assert_eq!((again.opened, again.closed, again.changed), (0, 0, 0), "the second pass finds its gaps");
    let gaps: i64 = app.db.run(|c| Ok(coverage_gaps::table.count().get_result(c)?)).await.unwrap();
    assert_eq!(gaps, N);

    let written = app.db.run(move |c| Ok(snapshot(c, now)?)).await.unwrap();
    assert_eq!(written as i64, N, "one row per endpoint");
    assert_eq!(rows(&app).await, N);
    let counts: (i64, i64, i64, i64, i64) = app
        .db
        .run(|c| {
            use risk_day_counts as d;
            Ok(d::table
                .select((d::none_count, d::low_count, d::medium_count, d::high_count, d::critical_count))
                .first(c)?)
        })
        .await
        .unwrap();
    // Every level has a fifth of the endpoints (`i % 5`), the coverage factor (Medium) raising
    // None and Low to Medium.
    assert_eq!(counts.0 + counts.1 + counts.2 + counts.3 + counts.4, N, "{counts:?}");
    assert_eq!(app.db.run(move |c| Ok(snapshot(c, now)?)).await.unwrap(), 0, "nothing changed");

    // The last endpoint of the last slice changes.
    app.db
        .run(|c| {
            let last: i64 = endpoints::table.select(diesel::dsl::max(endpoints::id)).first::<Option<i64>>(c)?.unwrap();
            risk::set_many(c, &[(last, "Slice scanner", Some((4, "critical".to_owned(), String::new())))])?;
            Ok(())
        })
        .await
        .unwrap();
    assert_eq!(app.db.run(move |c| Ok(snapshot(c, now)?)).await.unwrap(), 1);
}
