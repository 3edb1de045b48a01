//! The rest of Defender's device actions over real HTTP against the simulator: Restrict app
//! execution, Remove app restriction and Collect investigation package, from the client up to
//! the Endpoint Summary, the Microsoft Defender subtab and the package download (issue 22).
//! What Microsoft documents for them is cited in `crates/defender-sim/src/package.rs`,
//! `crates/defender-sim/src/support.rs` and `src/defender/platforms.rs`.

use std::time::Duration;

use defender_sim::{RunningSimulator, SimConfig};
use endpoint_analytics::auth::Role;
use endpoint_analytics::db::models::events;
use endpoint_analytics::defender::{ClientOptions, Credentials, DefenderClient, DefenderError, Secret, Target};

use crate::actions::{act, action_id, calls, endpoint_of, synced, wait_final};
use crate::helpers::*;

async fn sim(package_link_secs: u64) -> RunningSimulator {
    defender_sim::start(SimConfig {
        machines: 120,
        seed: 22,
        action_pending_ms: 100,
        action_inprogress_ms: 100,
        package_link_secs,
        ..Default::default()
    })
    .await
    .expect("simulator starts")
}

pub fn client(sim: &RunningSimulator) -> DefenderClient {
    let creds = Credentials {
        tenant_id: sim.tenant_id.clone(),
        client_id: sim.client_id.clone(),
        client_secret: Secret::new(sim.client_secret.clone()),
    };
    let options = ClientOptions { backoff_base: Duration::from_millis(20), ..Default::default() };
    DefenderClient::new(creds, Target::custom(&sim.base_url, &sim.base_url, None).unwrap(), options).unwrap()
}

/// An onboarded machine of this platform in the simulated tenant.
fn machine(sim: &RunningSimulator, platform: &str) -> String {
    let t = sim.tenant();
    t.machines()
        .iter()
        .find(|m| m.os_platform == platform && m.is_onboarded())
        .unwrap_or_else(|| panic!("an onboarded {platform} machine"))
        .id
        .clone()
}

async fn final_status(c: &DefenderClient, id: &str) -> String {
    for _ in 0..100 {
        let a = c.machine_action(id).await.unwrap();
        if a.is_final() {
            return a.status.unwrap();
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("action {id} never finished");
}

#[tokio::test]
async fn the_client_restricts_unrestricts_and_collects_as_documented() {
    let sim = sim(600).await;
    let c = client(&sim);
    let win = machine(&sim, "Windows11");

    let r = c.restrict_code_execution(&win, "alert 1234").await.unwrap();
    assert_eq!((r.kind.as_deref(), r.status.as_deref()), (Some("RestrictCodeExecution"), Some("Pending")));
    assert_eq!(r.requestor_comment.as_deref(), Some("alert 1234"));
    assert_eq!(r.scope, None, "no scope but for isolation and scans");
    // "HTTP 400 with the message "Action is already in progress"".
    assert_eq!(c.restrict_code_execution(&win, "again").await.unwrap_err(), DefenderError::ActionAlreadyPending);
    assert_eq!(final_status(&c, &r.id).await, "Succeeded");
    let u = c.unrestrict_code_execution(&win, "cleaned").await.unwrap();
    assert_eq!(u.kind.as_deref(), Some("UnrestrictCodeExecution"));
    assert_eq!(final_status(&c, &u.id).await, "Succeeded");
    assert_eq!(sim.counters().api("RestrictCodeExecution").calls, 2, "one request per call");

    let p = c.collect_investigation_package(&win, "forensics for incident 7").await.unwrap();
    assert_eq!(p.kind.as_deref(), Some("CollectInvestigationPackage"));
    // "If a collection is already running, this returns 400 Bad Request."
    assert_eq!(c.collect_investigation_package(&win, "again").await.unwrap_err(), DefenderError::ActionAlreadyPending);
    // "If the machine action for the collection exists but isn't complete, this returns 404."
    assert_eq!(c.package_uri(&p.id).await.unwrap_err(), DefenderError::NotFound);
    assert_eq!(final_status(&c, &p.id).await, "Succeeded");
    let link = c.package_uri(&p.id).await.unwrap();
    assert_eq!(sim.counters().api("GetPackageUri").calls, 2);
    assert!(link.as_str().starts_with(&format!("{}/_sim/blob/investigation-package/", sim.base_url)), "{link}");
    assert!(!link.as_str().contains('"'), "the escaped quotes of Microsoft's example are taken off: {link}");
    let res = reqwest::get(link.clone()).await.unwrap();
    assert_eq!(res.status(), 200);
    assert!(res.headers()["content-disposition"].to_str().unwrap().contains("WDATP_Investigation_Package.zip"));
    let zip = res.bytes().await.unwrap();
    assert_eq!(&zip[..4], b"PK\x03\x04");
    assert!(String::from_utf8_lossy(&zip).contains("forensics for incident 7"));
    // The link is signed: changed, it opens nothing.
    let forged = link.as_str().replace(&p.id, &r.id);
    assert_eq!(reqwest::get(forged).await.unwrap().status(), 403);

    // Platforms: no restriction on macOS, Linux or Windows Server 2016; no package from a phone.
    for platform in ["macOS", "Linux"] {
        let e = c.restrict_code_execution(&machine(&sim, platform), "x").await.unwrap_err();
        assert!(matches!(e, DefenderError::OsNotSupported(_)), "{platform}: {e:?}");
        let ok = c.collect_investigation_package(&machine(&sim, platform), "x").await;
        assert!(ok.is_ok(), "{platform} packages are documented: {ok:?}");
    }
    let phone = sim.tenant().machines().iter().find(|m| m.os_platform == "iOS" && m.is_onboarded()).unwrap().id.clone();
    let e = c.collect_investigation_package(&phone, "x").await.unwrap_err();
    assert!(e.plain_words().contains("does not support this action on this device's operating system"), "{e:?}");

    // Without the permissions the pages name, 403 in plain words.
    sim.set_client_roles(&sim.client_id, &["Machine.ReadWrite.All", "Machine.Isolate", "Machine.Scan"]);
    let c = client(&sim);
    let e = c.restrict_code_execution(&win, "x").await.unwrap_err();
    assert_eq!(e, DefenderError::MissingPermission { permission: "Machine.RestrictExecution".into() });
    let e = c.collect_investigation_package(&win, "x").await.unwrap_err();
    assert_eq!(e, DefenderError::MissingPermission { permission: "Machine.CollectForensics".into() });
}

#[tokio::test]
async fn a_package_link_expires() {
    let sim = sim(1).await;
    let c = client(&sim);
    let p = c.collect_investigation_package(&machine(&sim, "Windows11"), "forensics").await.unwrap();
    assert_eq!(final_status(&c, &p.id).await, "Succeeded");
    let link = c.package_uri(&p.id).await.unwrap();
    assert_eq!(reqwest::get(link.clone()).await.unwrap().status(), 200, "used at once");
    tokio::time::sleep(Duration::from_millis(2100)).await;
    let late = reqwest::get(link).await.unwrap();
    assert_eq!(late.status(), 403);
    assert!(late.text().await.unwrap().contains("expired"));
}

/// The status fragment of an action as `client` sees it.
async fn fragment(app: &TestApp, client: &reqwest::Client, id: &str) -> scraper::Html {
    let res = client.get(app.url(&format!("/actions/{id}"))).header("hx-request", "true").send().await.unwrap();
    doc(&res.text().await.unwrap())
}

async fn page(app: &TestApp, client: &reqwest::Client, path: &str) -> scraper::Html {
    doc(&client.get(app.url(path)).send().await.unwrap().text().await.unwrap())
}

#[tokio::test]
async fn an_operator_restricts_collects_and_downloads_the_package() {
    let (app, sim, _) = synced().await;
    let (endpoint, _) = endpoint_of(&app, &["Windows11"], true).await;
    let operator = app.login_as("olga", Role::Operator).await;
    let analyst = app.login_as("ann", Role::Analyst).await;

    // Offered on the Summary and in the Microsoft Defender subtab, to operators only.
    let summary = page(&app, &operator, &format!("/endpoints/{endpoint}")).await;
    let subtab = page(&app, &operator, &format!("/endpoints/{endpoint}?tab=risk")).await;
    for action in ["restrict", "unrestrict", "collect"] {
        assert_eq!(select_all(&summary, &format!("form[data-action={action}]")).len(), 1, "{action}");
        assert_eq!(select_all(&subtab, &format!("#defender-subtab form[data-action={action}]")).len(), 1, "{action}");
    }
    assert!(attr(&summary, "form[data-action=restrict]", "hx-confirm").unwrap().contains("signed by Microsoft"));
    let seen_by_analyst = page(&app, &analyst, &format!("/endpoints/{endpoint}?tab=risk")).await;
    assert!(select_all(&seen_by_analyst, "form.machine-action-form").is_empty());

    // Restricting needs a comment and a confirmation, like isolating; refused, nothing is sent.
    let restrict = |confirm: &'static str| {
        [("action", "restrict"), ("comment", "alert 1234"), ("confirm", confirm), ("key", "restrict-key-0123456789")]
    };
    let res = act(&app, &operator, endpoint, &restrict("")).await;
    assert_eq!(res.status(), 400);
    assert!(res.text().await.unwrap().contains("signed by Microsoft"));
    let res = act(&app, &analyst, endpoint, &restrict("on")).await;
    assert_eq!(res.status(), 403, "analysts may not");
    assert_eq!(calls(&sim, "RestrictCodeExecution"), 0);
    let res = act(&app, &operator, endpoint, &restrict("on")).await;
    assert_eq!(res.status(), 200);
    assert_eq!(wait_final(&app, &operator, &action_id(&res.text().await.unwrap())).await, "Succeeded");
    let form = [("action", "unrestrict"), ("comment", "cleaned"), ("key", "unrestrict-key-0123456789")];
    let res = act(&app, &operator, endpoint, &form).await;
    assert_eq!(wait_final(&app, &operator, &action_id(&res.text().await.unwrap())).await, "Succeeded");
    assert_eq!((calls(&sim, "RestrictCodeExecution"), calls(&sim, "UnrestrictCodeExecution")), (1, 1));

    // Collect: no package to download until the collection succeeded, and Defender is not asked.
    let form = [("action", "collect"), ("comment", "forensics for incident 7"), ("key", "collect-key-0123456789")];
    let res = act(&app, &operator, endpoint, &form).await;
    assert_eq!(res.status(), 200);
    let html = res.text().await.unwrap();
    let id = action_id(&html);
    assert!(select_all(&doc(&html), ".package-link").is_empty());
    let early = operator.get(app.url(&format!("/actions/{id}/package"))).send().await.unwrap();
    assert_eq!(early.status(), 409);
    assert!(early.text().await.unwrap().contains("once its collection has succeeded"));
    assert_eq!(calls(&sim, "GetPackageUri"), 0);
    assert_eq!(wait_final(&app, &operator, &id).await, "Succeeded");

    // Succeeded: the live status offers the download to operators, not to analysts.
    let shown = fragment(&app, &operator, &id).await;
    assert_eq!(attr(&shown, ".package-link", "href"), Some(format!("/actions/{id}/package")));
    assert!(select_all(&fragment(&app, &analyst, &id).await, ".package-link").is_empty());
    assert_eq!(analyst.get(app.url(&format!("/actions/{id}/package"))).send().await.unwrap().status(), 403);
    assert_eq!(calls(&sim, "GetPackageUri"), 0, "a refused request asks Defender nothing");

    // The click asks Defender for the link then, and sends the browser there.
    let res = operator.get(app.url(&format!("/actions/{id}/package"))).send().await.unwrap();
    assert_eq!(res.status(), 303);
    assert_eq!(res.headers()["cache-control"], "no-store");
    let link = res.headers()["location"].to_str().unwrap().to_owned();
    assert!(link.starts_with(&format!("{}/_sim/blob/investigation-package/", sim.base_url)), "{link}");
    assert_eq!(calls(&sim, "GetPackageUri"), 1);
    let zip = reqwest::get(&link).await.unwrap().bytes().await.unwrap();
    assert_eq!(&zip[..4], b"PK\x03\x04");

    // The Actions tab and the subtab link to it too.
    let tab = page(&app, &operator, &format!("/endpoints/{endpoint}?tab=actions")).await;
    assert_eq!(attr(&tab, "#product-actions .package-link", "href"), Some(format!("/actions/{id}/package")));
    let subtab = page(&app, &operator, &format!("/endpoints/{endpoint}?tab=risk")).await;
    assert_eq!(attr(&subtab, "#defender-packages .package-link", "href"), Some(format!("/actions/{id}/package")));

    // Audited and announced like the other actions; the link itself is kept nowhere.
    let admin = app.login_as("adam", Role::Admin).await;
    let audit = admin.get(app.url("/audit")).send().await.unwrap().text().await.unwrap();
    let rows = select_all(&doc(&audit), "#audit tbody tr");
    for (what, outcome) in
        [("defender.action", "requested"), ("defender.action", "Succeeded"), ("defender.package", "link issued")]
    {
        assert!(
            rows.iter().any(|r| r.contains("olga") && r.contains(what) && r.contains(outcome)),
            "{what} {outcome}: {rows:?}"
        );
    }
    assert!(!audit.contains("investigation-package/") && !audit.contains("sig="), "the link is not in the audit log");
    let (requested, finished) = app
        .db
        .run(|c| {
            Ok((
                events::recent(c, events::kinds::ACTION_REQUESTED, 50)?,
                events::recent(c, events::kinds::ACTION_FINISHED, 50)?,
            ))
        })
        .await
        .unwrap();
    for list in [&requested, &finished] {
        let types: Vec<String> = list
            .iter()
            .map(|e| {
                serde_json::from_str::<serde_json::Value>(&e.data).unwrap()["type"]
                    .as_str()
                    .unwrap_or_default()
                    .to_owned()
            })
            .collect();
        for t in ["RestrictCodeExecution", "UnrestrictCodeExecution", "CollectInvestigationPackage"] {
            assert!(types.iter().any(|x| x == t), "{t}: {types:?}");
        }
    }
    assert!(finished.iter().all(|e| !e.data.contains("investigation-package/")));
}

#[tokio::test]
async fn a_collection_already_running_in_defender_is_followed_not_sent_twice() {
    let (app, sim, _) = synced().await;
    let (endpoint, machine_id) = endpoint_of(&app, &["Windows11"], true).await;
    let operator = app.login_as("olga", Role::Operator).await;
    // Someone collects from the portal (here: another client of the same tenant), just before.
    let elsewhere = client(&sim).collect_investigation_package(&machine_id, "from the portal").await.unwrap();
    let form = [("action", "collect"), ("comment", "forensics"), ("key", "collect-twice-0123456789")];
    let res = act(&app, &operator, endpoint, &form).await;
    assert_eq!(res.status(), 200);
    let html = res.text().await.unwrap();
    // Defender answered 400 ActiveRequestAlreadyExists; the product follows the running one.
    assert!(html.contains(&elsewhere.id), "the action shown is Defender's running collection: {html}");
    assert_eq!(calls(&sim, "CollectInvestigationPackage"), 2, "the portal's and ours, refused");
    assert_eq!(wait_final(&app, &operator, &action_id(&html)).await, "Succeeded");

    // While one action is open on the machine, the product sends no other.
    let form = [("action", "collect"), ("comment", "again"), ("key", "collect-again-0123456789")];
    let open = act(&app, &operator, endpoint, &form).await;
    let form = [("action", "unrestrict"), ("comment", "x"), ("key", "unrestrict-busy-0123456789")];
    let busy = act(&app, &operator, endpoint, &form).await;
    assert_eq!(busy.status(), 409);
    assert!(busy.text().await.unwrap().contains("Another action is still open"));
    assert_eq!(calls(&sim, "UnrestrictCodeExecution"), 0);
    assert_eq!(wait_final(&app, &operator, &action_id(&open.text().await.unwrap())).await, "Succeeded");
}

/// Clicks arriving together with the same form are one action and one request, on PostgreSQL
/// too, where the losing insert's unique violation used to abort its transaction (a 500).
#[tokio::test]
async fn simultaneous_clicks_are_one_collection() {
    let (app, sim, _) = synced().await;
    let (endpoint, _) = endpoint_of(&app, &["Windows11"], true).await;
    let operator = app.login_as("olga", Role::Operator).await;
    let form = [("action", "collect"), ("comment", "forensics"), ("key", "collect-clicks-0123456789")];
    let csrf = app.csrf(&operator, &format!("/endpoints/{endpoint}")).await;
    let clicks = (0..6).map(|_| {
        operator
            .post(app.url(&format!("/endpoints/{endpoint}/actions")))
            .header("x-csrf-token", &csrf)
            .header("hx-request", "true")
            .form(&form)
            .send()
    });
    let mut ids = Vec::new();
    for res in futures_util::future::join_all(clicks).await {
        let res = res.unwrap();
        assert_eq!(res.status(), 200);
        ids.push(action_id(&res.text().await.unwrap()));
    }
    ids.dedup();
    assert_eq!(ids.len(), 1, "{ids:?}");
    assert_eq!(calls(&sim, "CollectInvestigationPackage"), 1);
}
