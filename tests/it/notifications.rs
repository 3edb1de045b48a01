//! The Notifications page (issue 21): an admin adds, changes, tests and deletes event
//! destinations through its forms, with the same checks as the API; a refused form keeps what
//! was typed except the secret, which no page ever shows.

use std::time::Duration;

use endpoint_analytics::auth::Role;

use crate::events::{Receiver, signed};
use crate::helpers::*;

const SECRET: &str = "a-notification-secret-of-32-chars";

#[tokio::test]
async fn an_admin_manages_destinations_on_the_notifications_page() {
    let app = spawn_app().await;
    let hook = Receiver::start(0, Duration::ZERO).await;
    let admin = app.login_as("ada", Role::Admin).await;

    // The page and its nav link, for admins only.
    let page = admin.get(app.url("/notifications")).send().await.unwrap();
    assert_eq!(page.status(), 200);
    let page = doc(&page.text().await.unwrap());
    assert_eq!(select_all(&page, "nav a[aria-current=page]"), vec!["Notifications"]);
    assert_eq!(select_all(&page, "#destinations tbody td"), vec!["No destinations yet."]);
    let operator = app.login_as("otto", Role::Operator).await;
    assert_eq!(operator.get(app.url("/notifications")).send().await.unwrap().status(), 403);
    let operator_page = operator.get(app.url("/")).send().await.unwrap().text().await.unwrap();
    assert!(!operator_page.contains("href=\"/notifications\""), "an operator is not offered the page");

    // A refused form: 400, its message, what was typed kept, the secret not sent back.
    let refused = app
        .post_form(
            &admin,
            "/notifications",
            &[
                ("name", "SIEM <b>hook</b>"),
                ("kind", "webhook"),
                ("url", "ftp://siem.example.com/"),
                ("secret", SECRET),
                ("event_types", "risk.level_changed"),
                ("min_level", "High"),
                ("enabled", "on"),
            ],
        )
        .await;
    assert_eq!(refused.status(), 400);
    let text = refused.text().await.unwrap();
    assert!(!text.contains(SECRET), "the secret came back in the page");
    let refused = doc(&text);
    assert!(select_all(&refused, "#form-error")[0].starts_with("url:"), "{:?}", select_all(&refused, "#form-error"));
    assert_eq!(attr(&refused, "input[name=name]", "value").as_deref(), Some("SIEM <b>hook</b>"));
    assert_eq!(select_all(&refused, "input[name=event_types][checked]").len(), 1);
    assert_eq!(attr(&refused, "select[name=min_level] option[selected]", "value").as_deref(), Some("High"));

    // Added: the destination's own page, the secret said to be set, never shown.
    let created = app
        .post_form(
            &admin,
            "/notifications",
            &[
                ("name", "SIEM <b>hook</b>"),
                ("kind", "webhook"),
                ("url", &hook.url),
                ("secret", SECRET),
                ("event_types", "risk.level_changed"),
                ("event_types", "endpoint.created"),
                ("min_level", "High"),
                ("enabled", "on"),
            ],
        )
        .await;
    assert_eq!(created.status(), 303);
    let location = created.headers()["location"].to_str().unwrap().to_owned();
    assert!(location.starts_with("/notifications/"), "{location}");
    let text = admin.get(app.url(&location)).send().await.unwrap().text().await.unwrap();
    assert!(!text.contains(SECRET) && !text.contains("<b>hook"), "the secret or markup leaked into the page");
    let edit = doc(&text);
    assert_eq!(select_all(&edit, "#secret-configured").len(), 1);
    assert_eq!(select_all(&edit, "input[name=event_types][checked]").len(), 2);

    // A second destination of the same name is refused on the form.
    let twin = app
        .post_form(
            &admin,
            "/notifications",
            &[("name", "SIEM <b>hook</b>"), ("kind", "syslog-udp"), ("url", "127.0.0.1:514")],
        )
        .await;
    assert_eq!(twin.status(), 400);
    assert_eq!(
        select_all(&doc(&twin.text().await.unwrap()), "#form-error"),
        vec!["Another destination has this name."]
    );

    // "Send test event" (htmx): delivered, signed with the kept secret, and in the log.
    let test = admin
        .post(app.url(&format!("{location}/test")))
        .header("HX-Request", "true")
        .form(&[("csrf_token", app.csrf(&admin, &location).await)])
        .send()
        .await
        .unwrap();
    assert_eq!(test.status(), 200);
    let fragment = doc(&test.text().await.unwrap());
    assert_eq!(attr(&fragment, "#test-outcome", "data-ok").as_deref(), Some("true"));
    let got = hook.got();
    assert_eq!(got.len(), 1);
    assert!(signed(&got[0], SECRET), "the test event is signed with the stored secret");

    // Saved with the secret field empty: the secret stays; the change shows; the log too.
    let saved = app
        .post_form(
            &admin,
            &location,
            &[("name", "SIEM hook"), ("kind", "webhook"), ("url", &hook.url), ("secret", ""), ("min_level", "Medium")],
        )
        .await;
    assert_eq!(saved.status(), 200);
    let saved = doc(&saved.text().await.unwrap());
    assert_eq!(select_all(&saved, "#saved").len(), 1);
    assert_eq!(select_all(&saved, "#secret-configured").len(), 1, "the secret was kept");
    assert_eq!(select_all(&saved, "input[name=enabled][checked]").len(), 0, "unticked: disabled");
    assert_eq!(select_all(&saved, "#deliveries tbody tr").len(), 1);
    let list = doc(&admin.get(app.url("/notifications")).send().await.unwrap().text().await.unwrap());
    let row = select_all(&list, "#destinations tbody td");
    assert_eq!(row[0], "SIEM hook");
    assert_eq!((row[3].as_str(), row[4].as_str(), row[5].as_str()), ("all", "Medium", "no"));
    assert!(row[6].starts_with("delivered"), "{row:?}");

    // Deleted, and audited without the secret.
    let deleted = app.post_form(&admin, &format!("{location}/delete"), &[]).await;
    assert_eq!(deleted.status(), 303);
    assert_eq!(admin.get(app.url(&location)).send().await.unwrap().status(), 404);
    let audit = admin.get(app.url("/audit")).send().await.unwrap().text().await.unwrap();
    for action in ["destination.create", "destination.update", "destination.delete"] {
        assert!(audit.contains(action), "{action} not audited");
    }
    assert!(!audit.contains(SECRET));
}

/// In a real browser: an admin opens Notifications from the menu, adds a webhook (a refused
/// URL first), sends a test event with htmx and sees it delivered and in the delivery log.
#[tokio::test]
async fn an_admin_adds_a_webhook_and_sends_a_test_event_in_the_browser() {
    use crate::browser::*;
    journey("admin_adds_webhook", |c| async move {
        let app = spawn_app().await;
        let hook = Receiver::start(0, Duration::ZERO).await;
        app.add_user("ada", Role::Admin).await;
        sign_in(&c, &app, "ada").await;
        click(&c, "nav a[href='/notifications']").await;
        wait_for(&c, "#new-destination").await;
        type_into(&c, "#new-destination input[name=name]", "Chat relay").await;
        type_into(&c, "#new-destination input[name=url]", "not a url").await;
        type_into(&c, "#new-destination input[name=secret]", SECRET).await;
        click(&c, "#new-destination button[type=submit]").await;
        let error = wait_for(&c, "#form-error").await.text().await.unwrap();
        assert!(error.starts_with("url:"), "{error}");
        // What was typed is still there, except the secret.
        let name = c.find(fantoccini::Locator::Css("#new-destination input[name=name]")).await.unwrap();
        assert_eq!(name.prop("value").await.unwrap().as_deref(), Some("Chat relay"));
        let url = c.find(fantoccini::Locator::Css("#new-destination input[name=url]")).await.unwrap();
        url.clear().await.unwrap();
        url.send_keys(&hook.url).await.unwrap();
        type_into(&c, "#new-destination input[name=secret]", SECRET).await;
        click(&c, "#new-destination input[value='risk.level_changed']").await;
        click(&c, "#new-destination button[type=submit]").await;
        wait_for(&c, "#send-test").await;
        assert!(exists(&c, "#secret-configured").await);
        mark_document(&c).await;
        click(&c, "#send-test").await;
        let outcome = wait_for(&c, "#test-outcome").await;
        assert_eq!(attr(&outcome, "data-ok").await.as_deref(), Some("true"), "{}", outcome.text().await.unwrap());
        assert_same_document(&c, "the test result came in place").await;
        assert_eq!(hook.got().len(), 1);
        assert!(signed(&hook.got()[0], SECRET));
        c.refresh().await.unwrap();
        let log = wait_for(&c, "#deliveries tbody tr").await.text().await.unwrap();
        assert!(log.contains("test") && log.contains("delivered"), "{log}");
    })
    .await;
}

/// Sent events and the delivery log do not pile up: past the retention, an event every
/// enabled destination has dealt with is forgotten, one still owed to an enabled destination
/// (a receiver that keeps failing) is kept, and delivery attempts go.
#[tokio::test]
async fn past_the_retention_only_what_every_enabled_destination_has_dealt_with_is_forgotten() {
    use diesel::prelude::*;
    use endpoint_analytics::db::schema::{deliveries, events};
    let app = spawn_app().await;
    let admin = app.token(Role::Admin).await;
    let operator = app.token(Role::Operator).await;
    let good = Receiver::start(0, Duration::ZERO).await;
    let failing = Receiver::start(usize::MAX, Duration::ZERO).await;
    let create = |name: &str, url: &str| {
        let body = serde_json::json!({"name": name, "kind": "webhook", "url": url, "secret": SECRET});
        reqwest::Client::new().post(app.url("/api/v1/destinations")).bearer_auth(&admin).json(&body).send()
    };
    assert_eq!(create("good", &good.url).await.unwrap().status(), 201);
    let stuck = create("stuck", &failing.url).await.unwrap();
    assert_eq!(stuck.status(), 201);
    let stuck: serde_json::Value = stuck.json().await.unwrap();
    let obs = serde_json::json!([
        {"mac": "02:00:00:03:00:01", "ip": "10.3.0.1", "hostname": "a.corp.example", "seen_at": "2026-11-01T10:00:00Z"},
        {"mac": "02:00:00:03:00:02", "ip": "10.3.0.2", "hostname": "b.corp.example", "seen_at": "2026-11-01T10:00:00Z"},
    ]);
    assert_eq!(app.ingest(&operator, &obs).await.status(), 200);
    // The good destination is done when its cursor is past the last event (it moves just after
    // the receiver answered).
    let good_is_done = || {
        let db = app.db.clone();
        async move {
            use endpoint_analytics::db::schema::destinations as d;
            db.run(|c| {
                let last: Option<i64> = events::table.select(diesel::dsl::max(events::id)).first(c)?;
                let cursor: i64 = d::table.filter(d::name.eq("good")).select(d::cursor_id).first(c)?;
                Ok(last.is_some_and(|l| cursor >= l))
            })
            .await
            .unwrap()
        }
    };
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    while good.got().len() < 2 || failing.got().is_empty() || !good_is_done().await {
        assert!(std::time::Instant::now() < deadline, "the events were not sent");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let count = |app: &TestApp| {
        let db = app.db.clone();
        async move {
            db.run(|c| {
                Ok((events::table.count().get_result::<i64>(c)?, deliveries::table.count().get_result::<i64>(c)?))
            })
            .await
            .unwrap()
        }
    };
    let (events_before, deliveries_before) = count(&app).await;
    assert!(events_before >= 2 && deliveries_before >= 3, "{events_before} {deliveries_before}");
    // Everything is past a retention that ends now; the failing receiver still owes both.
    let cutoff = chrono::Utc::now().timestamp() + 1;
    let pruned = app.db.run(move |c| Ok(endpoint_analytics::notify::prune(c, cutoff)?)).await.unwrap();
    assert_eq!(pruned.0, 0, "events still owed to an enabled destination were forgotten");
    assert!(pruned.1 >= 3, "{pruned:?}");
    // Disabled, it holds nothing back.
    let path = format!("/api/v1/destinations/{}", stuck["id"]);
    let off = reqwest::Client::new()
        .patch(app.url(&path))
        .bearer_auth(&admin)
        .json(&serde_json::json!({"enabled": false}))
        .send()
        .await
        .unwrap();
    assert_eq!(off.status(), 200);
    let pruned = app.db.run(move |c| Ok(endpoint_analytics::notify::prune(c, cutoff)?)).await.unwrap();
    assert_eq!(pruned.0 as i64, events_before, "{pruned:?}");
    assert_eq!(count(&app).await.0, 0);
}
