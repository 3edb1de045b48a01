//! Machine actions on every platform Microsoft documents, over HTTP against the simulator: what
//! the Endpoint Summary offers (servers, macOS, Linux, client versions), what happens when the
//! machine does not say (no `onboardingStatus`, no `agentVersion`: Defender decides), and
//! Defender's refusals (`OsPlatformNotSupported`, `ClientVersionNotSupported`) in plain words.
//! Sources: `src/defender/platforms.rs`, `crates/defender-sim/src/support.rs`.

use std::time::Duration;

use defender_sim::{Faults, IsolationState, RunningSimulator, SimConfig};
use diesel::prelude::*;
use endpoint_analytics::auth::Role;
use endpoint_analytics::db::models::defender_machines::DefenderMachine;
use endpoint_analytics::db::schema::defender_machines;
use scraper::Html;
use serde_json::json;

use crate::actions::{act, action_id, calls, wait_final};
use crate::helpers::*;

/// An app synced with a simulated tenant of `machines` machines, with these faults from the start.
async fn synced_with(machines: usize, faults: Faults) -> (TestApp, RunningSimulator) {
    let app = spawn_app().await;
    let sim = defender_sim::start(SimConfig {
        machines,
        action_pending_ms: 200,
        action_inprogress_ms: 200,
        ..SimConfig::default()
    })
    .await
    .unwrap();
    sim.set_faults(faults);
    let token = app.token(Role::Admin).await;
    let body = json!({
        "tenant_id": sim.tenant_id, "client_id": sim.client_id, "client_secret": sim.client_secret,
        "login_base_url": sim.base_url, "api_base_url": sim.base_url, "enabled": true,
    });
    let res = reqwest::Client::new()
        .put(app.url("/api/v1/integrations/defender"))
        .bearer_auth(&token)
        .json(&body)
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 200);
    for _ in 0..600 {
        let s = app.api_get(&token, "/api/v1/integrations/defender/status").await;
        if s["running"].is_null() && s["last_run"]["status"] == "succeeded" {
            return (app, sim);
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!("the first sync did not finish");
}

/// Every live machine the product stored with an endpoint.
async fn stored(app: &TestApp) -> Vec<DefenderMachine> {
    app.db
        .run(|c| {
            Ok(defender_machines::table
                .filter(defender_machines::stale.eq(false))
                .filter(defender_machines::endpoint_id.is_not_null())
                .order(defender_machines::machine_id)
                .select(DefenderMachine::as_select())
                .load(c)?)
        })
        .await
        .unwrap()
}

/// The Endpoint Summary as an operator sees it.
async fn page(app: &TestApp, operator: &reqwest::Client, endpoint: i64) -> Html {
    doc(&operator.get(app.url(&format!("/endpoints/{endpoint}"))).send().await.unwrap().text().await.unwrap())
}

/// What the page offers: (actions, isolation types).
fn offered(page: &Html) -> (Vec<String>, Vec<String>) {
    let sel = scraper::Selector::parse("form.machine-action-form").unwrap();
    let actions = page.select(&sel).filter_map(|f| f.value().attr("data-action")).map(str::to_owned).collect();
    (actions, select_all(page, "form[data-action=isolate] option"))
}

fn old_client(m: &DefenderMachine) -> bool {
    m.agent_version.starts_with("101.98.")
}

#[tokio::test]
async fn servers_macs_and_linux_are_offered_what_microsoft_documents() {
    let (app, sim) = synced_with(400, Faults::default()).await;
    let operator = app.login_as("olga", Role::Operator).await;
    let machines = stored(&app).await;
    let onboarded = |p: &dyn Fn(&DefenderMachine) -> bool| {
        machines.iter().filter(|m| m.onboarding_status == "Onboarded" && p(m)).cloned().collect::<Vec<_>>()
    };
    let both = vec!["Full".to_string(), "Selective".to_string()];
    let names = |n: &[&str]| n.iter().map(|s| s.to_string()).collect::<Vec<_>>();
    let scan_isolate_collect = names(&["scan", "isolate", "collect"]);

    // Windows servers: scan, full and selective isolation (2012 R2 and later), investigation
    // packages; restricting app execution from Windows Server 2019.
    let servers = onboarded(&|m| m.os_platform.starts_with("WindowsServer"));
    let platforms: std::collections::BTreeSet<&str> = servers.iter().map(|m| m.os_platform.as_str()).collect();
    assert!(platforms.len() >= 4, "the tenant has servers of several versions: {platforms:?}");
    for s in &servers {
        let restriction = !matches!(s.os_platform.as_str(), "WindowsServer2012R2" | "WindowsServer2016");
        let expected = if restriction {
            names(&["scan", "isolate", "restrict", "unrestrict", "collect"])
        } else {
            scan_isolate_collect.clone()
        };
        assert_eq!(
            offered(&page(&app, &operator, s.endpoint_id.unwrap()).await),
            (expected, both.clone()),
            "{}",
            s.os_platform
        );
    }
    // Restricting an older server is refused without a request.
    let old_server = servers
        .iter()
        .find(|s| matches!(s.os_platform.as_str(), "WindowsServer2012R2" | "WindowsServer2016"))
        .expect("a Windows Server 2012 R2 or 2016");
    let form = [("action", "restrict"), ("comment", "x"), ("confirm", "on"), ("key", "old-server-restrict-0123456789")];
    let res = act(&app, &operator, old_server.endpoint_id.unwrap(), &form).await;
    assert_eq!(res.status(), 400);
    let text = res.text().await.unwrap();
    assert!(text.contains("Restricting app execution is not supported on WindowsServer20"), "{text}");
    assert_eq!(calls(&sim, "RestrictCodeExecution"), 0);
    // Selective isolation of a server goes through to Defender and succeeds.
    let server = &servers[0];
    let key = format!("server-selective-{}", &server.machine_id[..12]);
    let form = [
        ("action", "isolate"),
        ("scope", "Selective"),
        ("comment", "lateral movement"),
        ("confirm", "on"),
        ("key", key.as_str()),
    ];
    let res = act(&app, &operator, server.endpoint_id.unwrap(), &form).await;
    assert_eq!(res.status(), 200);
    assert_eq!(wait_final(&app, &operator, &action_id(&res.text().await.unwrap())).await, "Succeeded");
    assert_eq!(sim.isolation_state(&server.machine_id), Some(IsolationState::Isolated("Selective")));

    // macOS with a current client: scan, full and selective isolation; a scan succeeds.
    let mac = onboarded(&|m| m.os_platform == "macOS" && !old_client(m)).into_iter().next().expect("a current Mac");
    assert!(mac.agent_version.starts_with("101."), "the client version is kept: {}", mac.agent_version);
    assert_eq!(
        offered(&page(&app, &operator, mac.endpoint_id.unwrap()).await),
        (scan_isolate_collect.clone(), both.clone())
    );
    let form = [("action", "scan"), ("scope", "Quick"), ("comment", "check"), ("key", "mac-scan-0123456789")];
    let res = act(&app, &operator, mac.endpoint_id.unwrap(), &form).await;
    assert_eq!(wait_final(&app, &operator, &action_id(&res.text().await.unwrap())).await, "Succeeded");

    // Linux with a current client: scan and full isolation only, and investigation packages,
    // which Defender collects.
    let linux = onboarded(&|m| m.os_platform == "Linux" && !old_client(m)).into_iter().next().expect("a current Linux");
    assert_eq!(
        offered(&page(&app, &operator, linux.endpoint_id.unwrap()).await),
        (scan_isolate_collect.clone(), vec!["Full".to_string()])
    );
    let form = [("action", "collect"), ("comment", "forensics"), ("key", "linux-collect-0123456789")];
    let res = act(&app, &operator, linux.endpoint_id.unwrap(), &form).await;
    assert_eq!(wait_final(&app, &operator, &action_id(&res.text().await.unwrap())).await, "Succeeded");

    // A client below 101.98.84: no scan (and no isolation on macOS); refused without a request.
    // Packages name no client version.
    let old = onboarded(&|m| m.os_platform == "macOS" && old_client(m));
    let old = old.first().expect("a Mac with an old client");
    assert_eq!(offered(&page(&app, &operator, old.endpoint_id.unwrap()).await), (names(&["collect"]), vec![]));
    let before = calls(&sim, "RunAntiVirusScan");
    let form = [("action", "scan"), ("scope", "Quick"), ("comment", "x"), ("key", "old-mac-scan-0123456789")];
    let res = act(&app, &operator, old.endpoint_id.unwrap(), &form).await;
    assert_eq!(res.status(), 400);
    let text = res.text().await.unwrap();
    assert!(text.contains("101.98.84") && text.contains(&old.agent_version), "{text}");
    assert_eq!(calls(&sim, "RunAntiVirusScan"), before, "nothing sent");
}

#[tokio::test]
async fn when_the_machine_does_not_say_defender_decides_and_its_refusals_are_in_plain_words() {
    // Microsoft's examples of the Machine entity never contain onboardingStatus; a tenant may
    // send neither it nor agentVersion.
    let faults =
        Faults { omit_machine_fields: vec!["onboardingStatus".into(), "agentVersion".into()], ..Faults::default() };
    let (app, sim) = synced_with(400, faults).await;
    let operator = app.login_as("olga", Role::Operator).await;
    let machines = stored(&app).await;
    assert!(machines.iter().all(|m| m.onboarding_status.is_empty() && m.agent_version.is_empty()));
    let tenant = sim.tenant();
    let in_defender = |m: &DefenderMachine| tenant.machines().iter().find(|t| t.id == m.machine_id).unwrap().clone();

    // An onboarded Windows machine without onboardingStatus: offered, sent, done.
    let win = machines
        .iter()
        .find(|m| m.os_platform == "Windows11" && in_defender(m).is_onboarded())
        .expect("an onboarded Windows 11 machine");
    let page_now = page(&app, &operator, win.endpoint_id.unwrap()).await;
    assert_eq!(
        offered(&page_now).0,
        vec!["scan", "isolate", "restrict", "unrestrict", "collect"],
        "not refused for a missing onboardingStatus"
    );
    let form = [("action", "scan"), ("scope", "Quick"), ("comment", "check"), ("key", "win-scan-0123456789")];
    let res = act(&app, &operator, win.endpoint_id.unwrap(), &form).await;
    assert_eq!(wait_final(&app, &operator, &action_id(&res.text().await.unwrap())).await, "Succeeded");

    // A device Defender does not act on (here: not onboarded): Defender's 400
    // OsPlatformNotSupported, in plain words on the action.
    let off = machines
        .iter()
        .find(|m| m.os_platform == "Windows10" && !in_defender(m).is_onboarded())
        .expect("a Windows 10 machine that is not onboarded");
    let form = [("action", "scan"), ("scope", "Quick"), ("comment", "check"), ("key", "off-scan-0123456789")];
    let html = act(&app, &operator, off.endpoint_id.unwrap(), &form).await.text().await.unwrap();
    let shown = doc(&html);
    assert_eq!(attr(&shown, ".action-status", "data-status").as_deref(), Some("Failed"), "{html}");
    let error = select_all(&shown, "#action-error").join(" ");
    assert!(
        error.contains("Microsoft Defender does not support this action on this device's operating system"),
        "{error}"
    );
    assert!(error.contains("Defender says: OS Platform Windows10 isn't supported for this action."), "{error}");

    // A macOS client below 101.98.84 that the product could not know about: Defender's 400
    // ClientVersionNotSupported, in plain words.
    let old = machines
        .iter()
        .find(|m| {
            let t = in_defender(m);
            m.os_platform == "macOS" && t.is_onboarded() && t.agent_version.is_some_and(|v| v.starts_with("101.98."))
        })
        .expect("a Mac with an old client");
    let form = [("action", "scan"), ("scope", "Quick"), ("comment", "check"), ("key", "old-mac-0123456789")];
    let html = act(&app, &operator, old.endpoint_id.unwrap(), &form).await.text().await.unwrap();
    let shown = doc(&html);
    assert_eq!(attr(&shown, ".action-status", "data-status").as_deref(), Some("Failed"), "{html}");
    let error = select_all(&shown, "#action-error").join(" ");
    assert!(error.contains("needs a newer Defender client on the device"), "{error}");
    assert!(error.contains("supported on client version 101.98.84 and above"), "{error}");
}
