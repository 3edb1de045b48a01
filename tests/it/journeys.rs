//! Journeys through the product in a real browser (see `browser.rs`): each one against its own
//! application and its own Defender simulator, on the suite's database backend.
//!
//! Long because each journey is one story from a person's first click to the outcome they
//! wanted, told in the browser step by step.

use std::collections::BTreeSet;
use std::time::Duration;

use defender_sim::{RunningSimulator, SimConfig};
use diesel::prelude::*;
use endpoint_analytics::auth::Role;
use endpoint_analytics::db::models::defender_machines::DefenderMachine;
use endpoint_analytics::db::schema::defender_machines as dm;
use fantoccini::{Client, Locator};
use serde_json::json;

use crate::browser::*;
use crate::helpers::{TestApp, spawn_app};

const SYNC_TIMEOUT: Duration = Duration::from_secs(20);

async fn simulator(hostile: bool) -> RunningSimulator {
    defender_sim::start(SimConfig { machines: 60, hostile, ..Default::default() }).await.expect("the simulator starts")
}

/// An app whose Defender integration points at a simulator and finished its first sync.
async fn synced_app(sim: &RunningSimulator) -> TestApp {
    let app = spawn_app().await;
    app.enable_defender(sim).await;
    let run = app.wait_for_sync(SYNC_TIMEOUT).await;
    assert_eq!(run.status, "succeeded", "the first sync: {}", run.error);
    app
}

/// The first live Defender machine (linked to an endpoint) that `filter` accepts, in a stable
/// order: the most alarming first.
async fn machine_where(
    app: &TestApp,
    filter: impl Fn(&DefenderMachine) -> bool + Send + 'static,
) -> Option<DefenderMachine> {
    app.db
        .run(move |c| {
            let all: Vec<DefenderMachine> = dm::table
                .filter(dm::endpoint_id.is_not_null())
                .filter(dm::stale.eq(false))
                .order((dm::top_alert_severity.desc(), dm::top_vuln_severity.desc(), dm::machine_id.asc()))
                .select(DefenderMachine::as_select())
                .load(c)?;
            Ok(all.into_iter().find(|m| filter(m)))
        })
        .await
        .unwrap()
}

/// The Risk tab, opened by clicking it (htmx swaps the tab in place); returns the subtab.
async fn open_risk_tab(c: &Client) -> fantoccini::elements::Element {
    mark_document(c).await;
    click(c, "nav.tabs a[data-tab=risk]").await;
    let subtab = wait_for(c, "#tab-content #defender-subtab").await;
    assert_same_document(c, "opening the Risk tab").await;
    assert!(c.current_url().await.unwrap().as_str().ends_with("?tab=risk"), "the Risk tab's address is pushed");
    subtab
}

/// No dialog is open and nothing set the canary a successful injection would set.
async fn assert_no_script_ran(c: &Client, what: &str) {
    if let Ok(text) = c.get_alert_text().await {
        panic!("{what}: an alert dialog is open ({text:?}): hostile data ran as script");
    }
    assert_eq!(js(c, "return window.__xss === undefined;").await, json!(true), "{what}: window.__xss was set");
    let scripts = js(c, "return Array.from(document.scripts).map(s => s.getAttribute('src') || 'inline');").await;
    for s in scripts.as_array().expect("a list") {
        let src = s.as_str().unwrap_or_default();
        let allowed = src == "/static/app.js" || (src.starts_with("/static/htmx-") && src.ends_with(".js"));
        assert!(allowed, "{what}: unexpected <script> {src:?} on the page");
    }
    // The dashboard draws its charts as <svg class="chart">; any other svg is injected.
    for css in ["main img[src=x]", "main svg:not(.chart)", "main [onerror]", "main [onload]", "[hx-get^='/admin']"] {
        assert!(!exists(c, css).await, "{what}: hostile markup became an element ({css})");
    }
}

/// Journey 1: an admin connects the product to Defender through the pages, and watches the first
/// sync finish without reloading.
#[tokio::test]
async fn an_admin_connects_defender_and_watches_the_first_sync() {
    journey("admin_connects_defender", |c| async move {
        let sim = simulator(false).await;
        let app = spawn_app().await;
        app.add_user("alice", Role::Admin).await;
        sign_in(&c, &app, "alice").await;

        // Configuration ▸ Integrations ▸ Microsoft Defender, by the links.
        click(&c, "nav a[href='/config/integrations']").await;
        wait_for(&c, "#defender-link").await.click().await.unwrap();
        wait_for(&c, "#defender-form").await;
        type_into(&c, "#defender-form input[name=tenant_id]", &sim.tenant_id).await;
        type_into(&c, "#defender-form input[name=client_id]", &sim.client_id).await;
        type_into(&c, "#defender-form input[name=client_secret]", &sim.client_secret).await;
        click(&c, "#defender-form details summary").await;
        type_into(&c, "#defender-form input[name=login_base_url]", &sim.base_url).await;
        type_into(&c, "#defender-form input[name=api_base_url]", &sim.base_url).await;

        // Test Connection: every permission the product needs is granted.
        click(&c, "#test-connection").await;
        let report = wait_for(&c, "#test-report").await;
        let rows = c.find_all(Locator::Css("#permissions tbody tr")).await.unwrap();
        assert!(!rows.is_empty(), "the report lists permissions");
        for row in &rows {
            let line = row.text().await.unwrap();
            assert!(row.find(Locator::Css("td.granted")).await.is_ok(), "not granted: {line}");
        }
        assert!(!exists(&c, "#permissions td.missing").await, "no permission is missing");
        assert_eq!(attr(&report, "data-all-good").await.as_deref(), Some("true"));
        assert!(text(&c, "#api-call").await.contains("succeeded"), "the API call succeeded");

        // Enable and save: the first sync starts at once.
        click(&c, "#defender-form input[name=enabled]").await;
        assert!(find(&c, "#defender-form input[name=enabled]").await.is_selected().await.unwrap());
        click(&c, "#save").await;
        let message = wait_for(&c, "#save-message").await.text().await.unwrap();
        assert!(message.contains("Saved and enabled"), "{message}");
        assert_eq!(text(&c, "#integration-state").await, "enabled");
        mark_document(&c).await;
        if !exists(&c, "#sync-progress").await {
            // The first sync finished before the page was drawn: run another to watch.
            click(&c, "#sync-now").await;
            let said = wait_for(&c, "#sync-status .flash").await.text().await.unwrap();
            assert!(said == "Sync started." || said == "A sync is already running.", "{said}");
        }

        // htmx polls #sync-status until the run ends; the page itself stays.
        let deadline = std::time::Instant::now() + SYNC_TIMEOUT;
        loop {
            if exists(&c, "#sync-result[data-status=succeeded]").await {
                break;
            }
            if exists(&c, "#sync-result[data-status=failed]").await {
                panic!("the sync failed: {}", text(&c, "#sync-result").await);
            }
            assert!(std::time::Instant::now() < deadline, "no sync result within {SYNC_TIMEOUT:?}");
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
        assert_same_document(&c, "waiting for the sync").await;
        let machines: i64 = text(&c, "#machine-count").await.parse().expect("a machine count");
        assert!(machines > 0 && machines <= sim.tenant().machines().len() as i64, "{machines} machines");
        assert!(!exists(&c, "#sync-now[disabled]").await, "Sync now is offered again");
    })
    .await;
}

/// Journey 2: an analyst reads an endpoint's Microsoft Defender risk, with links into the portal,
/// and is offered no machine actions.
#[tokio::test]
async fn an_analyst_reads_the_defender_risk_of_an_endpoint() {
    journey("analyst_reads_defender_risk", |c| async move {
        let sim = simulator(false).await;
        let app = synced_app(&sim).await;
        app.add_user("ann", Role::Analyst).await;
        let m = machine_where(&app, |m| m.vuln_count > 0).await.expect("a synced machine with vulnerabilities");
        let endpoint = m.endpoint_id.unwrap();

        // What the simulator holds for it.
        let tenant = sim.tenant();
        let sm = tenant.machine_by_id(&m.machine_id).expect("the machine is the simulator's");
        let vulns: Vec<_> = tenant.machine_vulnerabilities(sm.index as usize).collect();
        let cves: BTreeSet<&str> = vulns.iter().map(|v| v.id.as_str()).collect();
        let exposure = vulns.iter().map(|v| v.severity).max().map(|s| s.as_str()).unwrap_or("None");
        let alert_rank = |s: &str| match s.to_ascii_lowercase().as_str() {
            "informational" | "unspecified" | "low" => 1,
            "medium" => 2,
            "high" => 3,
            _ => 0,
        };
        let worst_alert = tenant.alerts_of(sm.index as usize).iter().filter(|a| a.is_active()).map(|a| alert_rank(a.severity)).max();
        let risk_level = ["None", "Low", "Medium", "High"][worst_alert.unwrap_or(0)];

        sign_in(&c, &app, "ann").await;
        c.goto(&app.url(&format!("/endpoints/{endpoint}"))).await.unwrap();
        wait_for(&c, "#summary").await;
        assert!(!text(&c, "#endpoint-title").await.is_empty());
        assert!(
            !exists(&c, "[data-action], button.machine-action").await,
            "an analyst is offered no machine actions on the Summary tab"
        );

        let subtab = open_risk_tab(&c).await;
        let within = |css: &'static str| {
            let subtab = subtab.clone();
            async move { subtab.find(Locator::Css(css)).await.unwrap_or_else(|e| panic!("no {css} in the subtab: {e}")) }
        };
        assert_eq!(within("#defender-exposure").await.text().await.unwrap(), exposure, "Exposure Risk Level");
        let count = within("#defender-vuln-count").await;
        assert_eq!(count.text().await.unwrap(), cves.len().to_string(), "distinct CVEs of {}", m.computer_dns_name);
        assert_eq!(within("#defender-risk").await.text().await.unwrap(), risk_level, "Risk Level");

        let portal = format!("https://security.microsoft.com/machines/v2/{}", m.machine_id);
        let tid = format!("?tid={}", sim.tenant_id);
        for (css, page) in
            [("#defender-overview-link", "overview"), ("#defender-alerts-link", "alerts"), ("#defender-vuln-count", "vulnerabilities")]
        {
            let link = within(css).await;
            assert_eq!(attr(&link, "href").await.unwrap(), format!("{portal}/{page}{tid}"), "{css}");
            assert_eq!(attr(&link, "target").await.as_deref(), Some("_blank"), "{css}");
            assert_eq!(attr(&link, "rel").await.as_deref(), Some("noopener noreferrer"), "{css}");
        }
    })
    .await;
}

/// Journey 4: markup in Defender's data (machine names, vulnerability descriptions) is shown as
/// text on the endpoint pages, and nothing of it runs.
#[tokio::test]
async fn hostile_defender_data_is_shown_as_text() {
    journey("hostile_defender_data", |c| async move {
        let sim = simulator(true).await;
        let app = synced_app(&sim).await;
        app.add_user("ann", Role::Analyst).await;
        let named = machine_where(&app, |m| m.computer_dns_name.contains("<script>"))
            .await
            .expect("a machine whose name holds a <script> element");
        let described = machine_where(&app, |m| m.top_vuln_description.contains('<'))
            .await
            .expect("a machine whose most severe vulnerability's description holds markup");

        sign_in(&c, &app, "ann").await;

        c.goto(&app.url(&format!("/endpoints/{}", named.endpoint_id.unwrap()))).await.unwrap();
        wait_for(&c, "#summary").await;
        assert_no_script_ran(&c, "the Summary of the machine named with markup").await;
        let title = text(&c, "#endpoint-title").await;
        assert!(title.contains("<script>"), "the host name is shown as text: {title}");
        let subtab = open_risk_tab(&c).await;
        assert_no_script_ran(&c, "the Risk tab of the machine named with markup").await;
        let shown = subtab.text().await.unwrap();
        assert!(shown.contains(&named.computer_dns_name), "the name is shown as text: {shown}");
        assert!(shown.contains("<script>"), "{shown}");

        c.goto(&app.url(&format!("/endpoints/{}", described.endpoint_id.unwrap()))).await.unwrap();
        wait_for(&c, "#summary").await;
        assert_no_script_ran(&c, "the Summary of the machine with a hostile vulnerability").await;
        open_risk_tab(&c).await;
        assert_no_script_ran(&c, "the Risk tab of the machine with a hostile vulnerability").await;
        let description = text(&c, "#defender-top-vuln .vuln-description").await;
        assert_eq!(description, described.top_vuln_description.trim(), "the description is shown as text");
    })
    .await;
}

/// Journey 3: an operator isolates a machine with a comment, confirms, watches Pending turn into
/// Succeeded without reloading, then releases it. Defender receives one request for each.
#[tokio::test]
async fn an_operator_isolates_and_releases_a_machine() {
    journey("operator_isolates_machine", |c| async move {
        let sim = defender_sim::start(SimConfig {
            machines: 60,
            action_pending_ms: 1500,
            action_inprogress_ms: 1000,
            ..Default::default()
        })
        .await
        .expect("the simulator starts");
        let app = synced_app(&sim).await;
        app.add_user("olga", Role::Operator).await;
        let m = machine_where(&app, |m| {
            matches!(m.os_platform.as_str(), "Windows10" | "Windows11")
                && m.onboarding_status == "Onboarded"
                && !m.isolated
        })
        .await
        .expect("an onboarded Windows machine");
        let endpoint = m.endpoint_id.unwrap();
        let calls = |api: &str| sim.counters().per_api.get(api).map(|c| c.calls).unwrap_or(0);

        sign_in(&c, &app, "olga").await;
        c.goto(&app.url(&format!("/endpoints/{endpoint}"))).await.unwrap();
        wait_for(&c, "form.machine-action-form[data-action=isolate]").await;
        mark_document(&c).await;
        type_into(&c, "form[data-action=isolate] input[name=comment]", "Suspicious beaconing, isolating").await;
        click(&c, "form[data-action=isolate] input[name=confirm]").await;
        click(&c, "#action-isolate").await;
        // htmx asks for confirmation: the device loses its network connectivity.
        let mut asked = String::new();
        for _ in 0..50 {
            if let Ok(t) = c.get_alert_text().await {
                asked = t;
                break;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        assert!(asked.contains("loses its network connectivity"), "the confirmation says what happens: {asked:?}");
        c.accept_alert().await.unwrap();

        let status = wait_for(&c, "#action-area #action-status").await;
        let first = status.text().await.unwrap();
        assert!(first == "Pending" || first == "InProgress", "the action starts Pending: {first}");
        let deadline = std::time::Instant::now() + Duration::from_secs(20);
        while !exists(&c, "#action-area .action-status[data-status=Succeeded]").await {
            assert!(std::time::Instant::now() < deadline, "the isolation did not succeed in time");
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
        assert_same_document(&c, "following the isolation").await;
        assert_eq!(calls("Isolate"), 1, "one click, one isolate request");

        // Without a reload, the buttons follow the machine: Unisolate instead of Isolate, with an
        // empty comment.
        wait_for(&c, "form.machine-action-form[data-action=unisolate]").await;
        assert!(!exists(&c, "form.machine-action-form[data-action=isolate]").await, "no second isolation");
        let comment = c.find(Locator::Css("form[data-action=unisolate] input[name=comment]")).await.unwrap();
        assert_eq!(comment.prop("value").await.unwrap().as_deref(), Some(""), "the comment field is cleared");
        assert_same_document(&c, "the buttons changed in place").await;
        type_into(&c, "form[data-action=unisolate] input[name=comment]", "Cleaned, releasing").await;
        click(&c, "#action-unisolate").await;
        wait_for(&c, "#action-area #action-status").await;
        let deadline = std::time::Instant::now() + Duration::from_secs(20);
        while !exists(&c, "#action-area .action-status[data-status=Succeeded]").await {
            assert!(std::time::Instant::now() < deadline, "the release did not succeed in time");
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
        assert_same_document(&c, "following the release").await;
        wait_for(&c, "form.machine-action-form[data-action=isolate]").await;
        assert!(!exists(&c, "form.machine-action-form[data-action=unisolate]").await, "released: Isolate again");
        assert_eq!((calls("Isolate"), calls("Unisolate")), (1, 1), "exactly one isolate and one unisolate request");
    })
    .await;
}

/// Journey 5: hostile texts everywhere they can come from — Defender's machine names,
/// vulnerability descriptions and alert titles (the simulator's `hostile` tenant), and network
/// observations' host names, DHCP and user-agent fields — are inert on every page that shows
/// them: no script runs, no markup becomes an element, no `javascript:` link, no injected htmx
/// attribute comes alive, the page title stays the product's.
#[tokio::test]
async fn hostile_texts_are_inert_on_every_page_that_shows_them() {
    journey("hostile_texts_everywhere", |c| async move {
        let sim = simulator(true).await;
        let app = synced_app(&sim).await;
        app.add_user("ada", Role::Admin).await;
        const PAYLOADS: &[&str] = &[
            "<script>window.__xss=1;document.title='pwned'</script>",
            "\"><img src=x onerror=\"window.__xss=2\">",
            "'><svg onload='window.__xss=3'>",
            "javascript:window.__xss=4",
            "<div hx-get=\"/admin/pwn\" hx-trigger=\"load\" hx-swap=\"outerHTML\">x</div>",
            "<a href=\"javascript:window.__xss=5\" id=\"evil-link\">click</a>",
            "{{7*7}}<!--",
        ];
        let token = app.token(Role::Operator).await;
        let observations: Vec<serde_json::Value> = PAYLOADS
            .iter()
            .enumerate()
            .map(|(i, p)| {
                json!({
                    "mac": format!("3c:52:82:00:99:{i:02x}"), "ip": format!("10.66.0.{}", i + 1),
                    "hostname": p, "dhcp_vendor_class": p, "dhcp_params": "1,3,6", "user_agent": p,
                })
            })
            .collect();
        let res = app.ingest(&token, &json!(observations)).await;
        assert_eq!(res.status(), 200);
        let report: serde_json::Value = res.json().await.unwrap();
        let observed: Vec<i64> = {
            let list = app.api_get(&token, "/api/v1/endpoints?q=10.66.0.&limit=50").await;
            list["items"].as_array().unwrap().iter().map(|e| e["id"].as_i64().unwrap()).collect()
        };
        assert!(!observed.is_empty(), "hostile observations were stored as endpoints: {report}");

        // Defender machines with hostile names, vulnerability descriptions, alert titles.
        let mut hostile_endpoints = observed.clone();
        for filter in [
            (|m: &DefenderMachine| m.computer_dns_name.contains('<')) as fn(&DefenderMachine) -> bool,
            |m| m.top_vuln_description.contains('<'),
            |m| m.top_alert_title.contains('<'),
        ] {
            let m = machine_where(&app, filter).await.expect("the hostile tenant has such a machine");
            hostile_endpoints.push(m.endpoint_id.unwrap());
        }

        sign_in(&c, &app, "ada").await;
        let title = c.title().await.unwrap();
        let mut pages = vec![
            "/".to_owned(),
            "/endpoints".to_owned(),
            "/endpoints?q=10.66.0.".to_owned(),
            format!("/endpoints?q={}", "%3Cscript%3Ewindow.__xss%3D9%3C%2Fscript%3E"),
            "/endpoints?sort=risk&dir=desc".to_owned(),
            "/config/integrations/defender".to_owned(),
            "/config/profiles".to_owned(),
            "/audit".to_owned(),
        ];
        for id in &hostile_endpoints {
            for tab in ["summary", "risk", "profile", "actions"] {
                pages.push(format!("/endpoints/{id}?tab={tab}"));
            }
        }
        for page in &pages {
            c.goto(&app.url(page)).await.unwrap();
            wait_for(&c, "main").await;
            // Give htmx and any injected handler time to act.
            tokio::time::sleep(Duration::from_millis(150)).await;
            assert_no_script_ran(&c, page).await;
            assert_eq!(c.title().await.unwrap().split(" · ").last(), title.split(" · ").last(), "{page}: title");
            assert!(!exists(&c, "a[href^='javascript:' i], [src^='javascript:' i], #evil-link").await, "{page}");
            assert!(!exists(&c, "main [hx-get^='/admin'], main [hx-trigger='load'][hx-get*='pwn']").await, "{page}");
        }
        // The texts are there, as text, not evaluated as templates either.
        let mut shown = String::new();
        for id in &observed {
            c.goto(&app.url(&format!("/endpoints/{id}"))).await.unwrap();
            shown.push_str(&text(&c, "main").await);
        }
        for p in ["<script>", "<img src=x", "hx-get=\"/admin/pwn\"", "{{7*7}}"] {
            assert!(shown.contains(p), "{p} is not shown as text: {shown}");
        }
    })
    .await;
}

/// Journey: people sign in with Microsoft through the simulator's Entra sign-in page and land
/// with the role their Entra app role maps to: the operator without the admin navigation, the
/// admin with it.
#[tokio::test]
async fn people_sign_in_with_microsoft_and_land_with_their_mapped_role() {
    journey("entra_sign_in", |c| async move {
        let sim = crate::sso::sso_simulator().await;
        let app = spawn_app().await;
        app.enable_sso(&sim).await;
        let domain = &sim.tenant_domain;
        for (who, role, admin) in
            [(format!("omar.operator@{domain}"), "Operator", false), (format!("adele.admin@{domain}"), "Admin", true)]
        {
            c.goto(&app.url("/endpoints")).await.expect("the app opens");
            wait_for(&c, "#login-form").await;
            click(&c, "#sign-in-microsoft").await;
            // The simulator's Entra page: pick the account and sign in.
            wait_for(&c, "#sign-in-form").await;
            assert!(c.current_url().await.unwrap().as_str().starts_with(&sim.base_url), "at the identity provider");
            click(&c, &format!("#username option[value='{who}']")).await;
            click(&c, "#sign-in").await;
            let me = wait_for(&c, "#current-user").await;
            assert_eq!(me.text().await.unwrap(), who, "signed in as the Entra user");
            assert_eq!(text(&c, "header .role").await, role, "with the mapped role");
            assert!(c.current_url().await.unwrap().path() == "/endpoints", "back on the page that asked for sign-in");
            assert_eq!(exists(&c, "nav a[href='/users']").await, admin, "{role}: the admin navigation");
            assert_eq!(exists(&c, "nav a[href='/audit']").await, admin, "{role}: the admin navigation");
            click(&c, "form.whoami button[type=submit]").await;
            wait_for(&c, "#login-form").await;
        }
    })
    .await;
}

/// Journey 7: a response rule from its writing to the isolation it causes. An admin writes
/// "isolate any Defender machine whose alert level is High, after approval" on the Response
/// rules page, dry-runs it (the count and the machines, in place), saves and enables it (the
/// count again); the rules run; an operator approves the first decision on the Approvals page,
/// and the endpoint's page shows the isolation Defender carried out.
#[tokio::test]
async fn a_response_rule_isolates_after_a_second_person_approves() {
    journey("response_rule_isolates", |c| async move {
        let sim = defender_sim::start(SimConfig {
            machines: 60,
            action_pending_ms: 500,
            action_inprogress_ms: 500,
            ..Default::default()
        })
        .await
        .expect("the simulator starts");
        let app = synced_app(&sim).await;
        app.add_user("ada", Role::Admin).await;
        app.add_user("olga", Role::Operator).await;
        let high: i64 = app
            .db
            .run(|c| {
                Ok(dm::table
                    .filter(dm::stale.eq(false))
                    .filter(dm::endpoint_id.is_not_null())
                    .filter(dm::top_alert_severity.ge(3))
                    .count()
                    .get_result(c)?)
            })
            .await
            .unwrap();
        assert!(high > 0, "machines with High alerts");

        sign_in(&c, &app, "ada").await;
        click(&c, "nav a[href='/rules']").await;
        wait_for(&c, "#rule-form").await;
        type_into(&c, "#rule-form input[name=name]", "Isolate High alerts").await;
        c.find(Locator::Css("#rule-form select[name=min_alert] option[value=High]"))
            .await
            .unwrap()
            .click()
            .await
            .unwrap();
        c.find(Locator::Css("#rule-form select[name=source] option[value=defender]"))
            .await
            .unwrap()
            .click()
            .await
            .unwrap();
        c.find(Locator::Css("#rule-form select[name=action] option[value=isolate_full]"))
            .await
            .unwrap()
            .click()
            .await
            .unwrap();
        click(&c, "#rule-form input[name=requires_approval]").await;
        mark_document(&c).await;
        click(&c, "#dry-run-unsaved").await;
        let count = wait_for(&c, "#dry-run-new .dry-run-count").await;
        assert_eq!(count.text().await.unwrap(), high.to_string(), "the dry run counts the machines with High alerts");
        assert_same_document(&c, "the dry run is shown in place").await;
        click(&c, "#rule-form button[type=submit]").await;
        let notice = wait_for(&c, "#rules-notice").await.text().await.unwrap();
        assert!(notice.contains("dry-run it"), "{notice}");
        // Changed in the same form, filled with it.
        click(&c, "#rules a.edit").await;
        let heading = wait_for(&c, "#rule-form h2").await.text().await.unwrap();
        assert_eq!(heading, "Change the rule");
        let name = c.find(Locator::Css("#rule-form input[name=name]")).await.unwrap();
        assert_eq!(name.prop("value").await.unwrap().as_deref(), Some("Isolate High alerts"));
        let cooldown = c.find(Locator::Css("#rule-form input[name=cooldown_minutes]")).await.unwrap();
        cooldown.clear().await.unwrap();
        cooldown.send_keys("720").await.unwrap();
        click(&c, "#rule-form button[type=submit]").await;
        let notice = wait_for(&c, "#rules-notice").await.text().await.unwrap();
        assert!(notice.contains("changed, and disabled"), "{notice}");
        assert!(text(&c, "#rules tbody tr[data-id]").await.contains("720 min"));
        // Not enabled before its own dry run.
        click(&c, "#rules button.toggle").await;
        let refused = wait_for(&c, "#form-error").await.text().await.unwrap();
        assert!(refused.contains("Dry-run the rule first"), "{refused}");
        click(&c, "#rules button.dry-run").await;
        wait_for(&c, "#rules .dry-run-result .dry-run-count").await;
        click(&c, "#rules button.toggle").await;
        let notice = wait_for(&c, "#rules-notice").await.text().await.unwrap();
        assert!(notice.contains(&format!("{high} endpoints meet it now")), "{notice}");

        // The supervisor's round (every 15 s), now: the machines already at High wait for approval.
        app.state.rules.run_once().await;
        assert_eq!(sim.counters().api("Isolate").calls, 0, "nothing is sent before the approval");

        // Between two syncs, one more workstation's alert rises to High (the simulated tenant
        // changes as a real one would); the next sync and round ask to isolate it too.
        let before = sim.tenant();
        sim.advance();
        let after = sim.tenant();
        let risen: Vec<String> = after
            .machines()
            .iter()
            .zip(before.machines())
            .filter(|(a, b)| a.risk_score == "High" && b.risk_score != "High")
            .map(|(a, _)| a.id.clone())
            .collect();
        assert_eq!(risen.len(), 1, "one machine's alert rose to High");
        let risen_id = risen[0].clone();
        app.state.defender.start_sync("schedule", "test").await.expect("the second sync starts");
        let run = app.wait_for_sync(SYNC_TIMEOUT).await;
        assert_eq!(run.status, "succeeded", "the second sync: {}", run.error);
        let endpoint = app
            .db
            .run(move |c| {
                Ok(dm::table
                    .filter(dm::machine_id.eq(risen_id))
                    .filter(dm::top_alert_severity.ge(3))
                    .select(dm::endpoint_id)
                    .first::<Option<i64>>(c)?)
            })
            .await
            .unwrap()
            .expect("the risen machine is an endpoint at alert level High after the second sync");
        app.state.rules.run_once().await;
        assert_eq!(sim.counters().api("Isolate").calls, 0, "nothing is sent before the approval");

        c.delete_all_cookies().await.unwrap();
        sign_in(&c, &app, "olga").await;
        click(&c, "nav a[href='/approvals']").await;
        let row = format!("#awaiting tbody tr[data-endpoint='{endpoint}']");
        wait_for(&c, &row).await;
        let waiting = c.find_all(Locator::Css("#awaiting tbody tr[data-id]")).await.unwrap().len() as i64;
        assert_eq!(waiting, high + 1, "the machines at High before, and the one that rose since");
        let endpoint_link = format!("/endpoints/{endpoint}");
        type_into(&c, &format!("{row} form.approve input[name=reason]"), "Confirmed with the SOC").await;
        click(&c, &format!("{row} form.approve button")).await;
        wait_for(&c, "#decisions").await;
        let deadline = std::time::Instant::now() + Duration::from_secs(20);
        while sim.counters().api("Isolate").calls == 0 {
            assert!(std::time::Instant::now() < deadline, "the approved isolation was not sent");
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        // The endpoint's Actions tab follows the rule's isolation to Defender's final status.
        c.goto(&app.url(&format!("{endpoint_link}?tab=actions"))).await.unwrap();
        let deadline = std::time::Instant::now() + Duration::from_secs(20);
        while !exists(&c, "#product-actions tr[data-status=Succeeded]").await {
            assert!(std::time::Instant::now() < deadline, "the rule's isolation did not succeed in time");
            tokio::time::sleep(Duration::from_millis(300)).await;
            c.refresh().await.unwrap();
        }
        let row = text(&c, "#product-actions tr[data-status=Succeeded]").await;
        assert!(row.contains("Isolate Full") && row.contains("Isolate High alerts") && row.contains("olga"), "{row}");
        assert_eq!(sim.counters().api("Isolate").calls, 1, "one decision, one isolate request");
    })
    .await;
}
