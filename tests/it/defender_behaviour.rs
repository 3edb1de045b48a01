//! Defender as it really behaves (issue 19), over real HTTP against the simulator: a delta sync
//! leaves what a full sync gives although records come in any order and machines move between
//! device groups; isolation is read from Defender's machine actions in bulk, wherever it was
//! asked for; only Defender's own 404 is an empty listing; a listing that would mark most
//! machines stale is held for an admin; an address is paired with the MAC of its adapter.
//!
//! Long because each test is one behaviour of a real tenant replayed end to end, with the
//! simulator's own account of it to check against.

use std::collections::{BTreeMap, HashSet};
use std::time::Duration;

use defender_sim::tenant::Machine;
use defender_sim::{FaultEffect, Faults, RunningSimulator, SimConfig};
use diesel::prelude::*;
use endpoint_analytics::auth::Role;
use endpoint_analytics::db::schema::{app_settings, defender_machines, endpoints};
use endpoint_analytics::defender::{ClientOptions, Credentials, DefenderClient, Secret, Target};
use endpoint_analytics::domain::mac::normalize_mac;
use serde_json::json;

use crate::defender_sync::{put_settings, settings_for, sync_now, synced, synced_with, wait_for_sync};
use crate::helpers::*;

/// What a machine's stored vulnerabilities come to: its rows, how many CVEs, the worst one.
async fn vulnerability_state(app: &TestApp) -> BTreeMap<String, (String, i32, String)> {
    app.db
        .run(|c| {
            Ok(defender_machines::table
                .select((
                    defender_machines::machine_id,
                    defender_machines::vuln_rows,
                    defender_machines::vuln_count,
                    defender_machines::top_vuln_cve,
                ))
                .load::<(String, String, i32, String)>(c)?
                .into_iter()
                .map(|(id, rows, count, top)| (id, (rows, count, top)))
                .collect())
        })
        .await
        .unwrap()
}

fn calls(sim: &RunningSimulator, api: &str) -> u64 {
    sim.counters().per_api.get(api).map(|a| a.calls).unwrap_or(0)
}

#[tokio::test]
async fn a_delta_sync_leaves_what_a_full_sync_gives_whatever_the_order_of_its_records() {
    let (app, sim, token, _) = synced(200).await;
    // Two rounds of changes, each followed by a delta sync.
    for round in 1..=2 {
        assert_eq!(sim.advance(), round);
        let rows_calls = calls(&sim, "MachinesVulnerabilities");
        let run = sync_now(&app, &token).await;
        assert_eq!(run["status"], "succeeded", "{run}");
        assert_eq!(calls(&sim, "MachinesVulnerabilities"), rows_calls, "round {round} was a delta sync");
    }
    // The changes were of every kind the export documents.
    let t = sim.tenant();
    let events: Vec<_> = (0..t.machines().len()).flat_map(|m| t.change_events(m).iter().map(move |e| (m, e))).collect();
    let pair = |same: &dyn Fn(&defender_sim::tenant::RowEvent, &defender_sim::tenant::RowEvent) -> bool| {
        events.iter().any(|(m, fixed)| {
            fixed.status == "Fixed" && events.iter().any(|(n, new)| m == n && new.status == "New" && same(fixed, new))
        })
    };
    assert!(
        pair(&|a, b| a.vuln == b.vuln && a.version != b.version),
        "an upgrade: Fixed on one version, New on the next"
    );
    assert!(pair(&|a, b| a.vuln == b.vuln && a.version == b.version && a.group != b.group), "a device-group move");
    assert!(events.iter().any(|(_, e)| e.status == "Fixed") && events.iter().any(|(_, e)| e.status == "New"));
    let after_delta = vulnerability_state(&app).await;

    // The same tenant fetched whole.
    app.db
        .run(|c| {
            diesel::delete(app_settings::table.find("defender.vulnerability_snapshot")).execute(c)?;
            Ok(())
        })
        .await
        .unwrap();
    let rows_calls = calls(&sim, "MachinesVulnerabilities");
    let run = sync_now(&app, &token).await;
    assert_eq!(run["status"], "succeeded", "{run}");
    assert!(calls(&sim, "MachinesVulnerabilities") > rows_calls, "a full sync");
    let after_full = vulnerability_state(&app).await;
    let differing: Vec<&String> = after_full.keys().filter(|id| after_delta.get(*id) != after_full.get(*id)).collect();
    assert!(
        differing.is_empty(),
        "the delta left {} machines unlike a full fetch, e.g. {}: after the delta {:?}, fetched whole {:?}; its changes {:?}",
        differing.len(),
        differing[0],
        after_delta.get(differing[0]),
        after_full.get(differing[0]),
        t.machines().iter().position(|m| &m.id == differing[0]).map(|i| t.change_events(i).to_vec())
    );

    // And both are what the simulator holds: every live machine's distinct CVEs.
    for (i, m) in t.machines().iter().enumerate().filter(|(_, m)| m.is_onboarded() && m.duplicate_of.is_none()) {
        let cves: HashSet<u32> = t.rows_of(i).iter().map(|r| r.vuln).collect();
        assert_eq!(after_full[&m.id].1 as usize, cves.len(), "machine {}", m.id);
    }
}

/// The machines the simulator gave an isolation history (`actions::outside_history`): isolated,
/// isolated then released, and one still pending.
fn outside_isolations(sim: &RunningSimulator) -> [Machine; 3] {
    let t = sim.tenant();
    let mut eligible =
        t.machines().iter().rev().filter(|m| m.is_onboarded() && m.duplicate_of.is_none() && m.group <= 7);
    [(); 3].map(|_| eligible.next().expect("the tenant has three machines that can be isolated").clone())
}

async fn endpoint_of(app: &TestApp, machine_id: &str) -> i64 {
    let id = machine_id.to_owned();
    app.db
        .run(move |c| {
            Ok(defender_machines::table.find(id).select(defender_machines::endpoint_id).first::<Option<i64>>(c)?)
        })
        .await
        .unwrap()
        .expect("the machine is linked to an endpoint")
}

/// The Summary's isolation line and the actions it offers; the Defender subtab's line.
async fn isolation_shown(app: &TestApp, client: &reqwest::Client, endpoint: i64) -> (String, Vec<String>, String) {
    let summary = client.get(app.url(&format!("/endpoints/{endpoint}"))).send().await.unwrap().text().await.unwrap();
    let risk =
        client.get(app.url(&format!("/endpoints/{endpoint}/tabs/risk"))).send().await.unwrap().text().await.unwrap();
    let squash = |s: String| s.split_whitespace().collect::<Vec<_>>().join(" ");
    let line = squash(select_all(&doc(&summary), "#summary-isolation").join(" "));
    let offered = select_all(&doc(&summary), "form.machine-action-form button").into_iter().map(squash).collect();
    (line, offered, squash(select_all(&doc(&risk), "#defender-isolation").join(" ")))
}

#[tokio::test]
async fn isolation_made_outside_the_product_is_read_in_bulk_and_decides_the_buttons() {
    let (app, sim, admin, _) = synced_with(SimConfig {
        machines: 150,
        action_pending_ms: 100,
        action_inprogress_ms: 100,
        ..SimConfig::default()
    })
    .await;
    assert_eq!(
        calls(&sim, "ListMachineActions"),
        2,
        "one listing of isolations and one of releases, whatever the size"
    );

    let [isolated, released, pending] = outside_isolations(&sim);
    let client = app.login_as("olivia", Role::Operator).await;
    let (line, offered, subtab) = isolation_shown(&app, &client, endpoint_of(&app, &isolated.id).await).await;
    assert!(line.starts_with("Isolated") && line.contains(" since ") && line.contains(", by "), "{line}");
    assert!(line.contains(&format!("@{}", sim.tenant_domain)), "{line}");
    assert_eq!(subtab, line, "the Defender subtab says the same");
    assert!(
        offered.contains(&"Unisolate Machine".to_owned()) && !offered.contains(&"Isolate Machine".to_owned()),
        "{offered:?}"
    );

    let (line, offered, _) = isolation_shown(&app, &client, endpoint_of(&app, &released.id).await).await;
    assert!(line.starts_with("Not isolated: released"), "{line}");
    assert!(
        offered.contains(&"Isolate Machine".to_owned()) && !offered.contains(&"Unisolate Machine".to_owned()),
        "{offered:?}"
    );

    let (line, offered, _) = isolation_shown(&app, &client, endpoint_of(&app, &pending.id).await).await;
    assert!(line.contains("Isolation pending in Microsoft Defender since"), "{line}");
    assert!(
        !offered.contains(&"Isolate Machine".to_owned()) && !offered.contains(&"Unisolate Machine".to_owned()),
        "no second isolation is offered while one is pending: {offered:?}"
    );

    // Released by another tool: the next sync says so.
    let other_tool = DefenderClient::new(
        Credentials {
            tenant_id: sim.tenant_id.clone(),
            client_id: sim.client_id.clone(),
            client_secret: Secret::new(sim.client_secret.clone()),
        },
        Target::custom(&sim.base_url, &sim.base_url, None).unwrap(),
        ClientOptions::default(),
    )
    .unwrap();
    let action = other_tool.unisolate(&isolated.id, "released by the SOAR playbook").await.unwrap();
    for _ in 0..50 {
        if other_tool.machine_action(&action.id).await.unwrap().is_final() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let run = sync_now(&app, &admin).await;
    assert_eq!(run["status"], "succeeded", "{run}");
    let (line, offered, _) = isolation_shown(&app, &client, endpoint_of(&app, &isolated.id).await).await;
    assert!(line.starts_with("Not isolated: released"), "{line}");
    assert!(offered.contains(&"Isolate Machine".to_owned()), "{offered:?}");
}

#[tokio::test]
async fn a_404_that_is_not_defenders_fails_the_sync_and_changes_nothing() {
    let (app, sim, token, first) = synced(60).await;
    let before = vulnerability_state(&app).await;
    sim.set_faults(Faults::every("ListMachines", FaultEffect::ProxyPage { status: 404 }));
    let run = sync_now(&app, &token).await;
    assert_eq!(run["status"], "failed", "{run}");
    let error = run["error"].as_str().unwrap_or_default();
    assert!(error.contains("without Microsoft Defender's own error"), "{error}");
    assert!(error.contains("text/html"), "{error}");
    assert_eq!(vulnerability_state(&app).await, before);
    let stale: i64 = app
        .db
        .run(|c| Ok(defender_machines::table.filter(defender_machines::stale.eq(true)).count().get_result(c)?))
        .await
        .unwrap();
    assert_eq!(stale, first["stale"].as_i64().unwrap(), "no machine was marked stale");
}

#[tokio::test]
async fn a_listing_that_would_mark_most_machines_stale_waits_for_an_admin() {
    let (app, sim, token, _) = synced(60).await;
    let live = |app: &TestApp| {
        let db = app.db.clone();
        async move {
            db.run(|c| {
                Ok(defender_machines::table.filter(defender_machines::stale.eq(false)).count().get_result::<i64>(c)?)
            })
            .await
            .unwrap()
        }
    };
    let known = live(&app).await;
    // Defender's own "nothing found" for the listing: believable, but it would empty the inventory.
    sim.set_faults(Faults::every("ListMachines", FaultEffect::Status { status: 404 }));
    let run = sync_now(&app, &token).await;
    assert_eq!(run["status"], "failed", "{run}");
    assert!(run["error"].as_str().unwrap().starts_with("Held back"), "{run}");
    assert_eq!(live(&app).await, known, "nothing was marked stale");

    // An operator sees why, and cannot confirm; an admin can.
    let operator = app.login_as("oscar", Role::Operator).await;
    let page = operator.get(app.url("/config/integrations/defender")).send().await.unwrap().text().await.unwrap();
    let hold = select_all(&doc(&page), "#stale-hold").join(" ");
    assert!(hold.contains(&format!("left out {known} of the {known} known machines")), "{hold}");
    assert!(select_all(&doc(&page), "#confirm-stale").is_empty());
    let res = app.post_form(&operator, "/config/integrations/defender/confirm-stale", &[]).await;
    assert_eq!(res.status(), 403);
    assert_eq!(live(&app).await, known);

    let admin = app.login_as("ada", Role::Admin).await;
    let res = app.post_form(&admin, "/config/integrations/defender/confirm-stale", &[]).await;
    assert_eq!(res.status(), 200);
    let run = wait_for_sync(&app, &token).await;
    assert_eq!(run["status"], "succeeded", "{run}");
    assert_eq!(live(&app).await, 0, "confirmed: the machines Defender no longer lists are stale");
    // The confirmation was used up: the next such listing is held again.
    sim.set_faults(Faults::default());
    assert_eq!(sync_now(&app, &token).await["status"], "succeeded");
    let page = admin.get(app.url("/config/integrations/defender")).send().await.unwrap().text().await.unwrap();
    assert!(select_all(&doc(&page), "#stale-hold").is_empty(), "the hold is gone once a sync passed");
}

#[tokio::test]
async fn an_address_is_paired_with_its_adapters_mac_and_down_adapters_match_nothing() {
    let app = spawn_app().await;
    let sim = crate::defender_sync::simulator(300).await;
    let admin = app.token(Role::Admin).await;
    let t = sim.tenant();
    let live = |m: &&Machine| m.is_onboarded() && m.duplicate_of.is_none();
    // A machine whose first adapter is another one (a virtual switch, up) than the address's.
    let first_other = t
        .machines()
        .iter()
        .filter(live)
        .find(|m| {
            m.ip_addresses.len() > 1
                && m.ip_addresses[0].operational_status == "Up"
                && m.ip_addresses[0].ip_address != m.last_ip_address
        })
        .expect("the tenant has a machine with another adapter listed first");
    // A machine with a docking station's adapter, down: its MAC is on a network device already.
    let (docked, down_mac) = t
        .machines()
        .iter()
        .filter(live)
        .find_map(|m| {
            let down = m.ip_addresses.iter().find(|a| a.operational_status == "Down")?;
            Some((m, normalize_mac(down.mac_address.as_deref()?)?))
        })
        .expect("the tenant has a machine with an adapter that is down");
    let printer = json!([{"mac": down_mac, "ip": "10.250.0.9", "hostname": "printer-7f"}]);
    assert_eq!(app.ingest(&admin, &printer).await.status(), 200);
    assert_eq!(put_settings(&app, &admin, &settings_for(&sim, true)).await.status(), 200);
    assert_eq!(wait_for_sync(&app, &admin).await["status"], "succeeded");

    let mac_of = |endpoint: i64| {
        let db = app.db.clone();
        async move {
            db.run(move |c| Ok(endpoints::table.find(endpoint).select(endpoints::mac).first::<Option<String>>(c)?))
                .await
                .unwrap()
        }
    };
    let endpoint = endpoint_of(&app, &first_other.id).await;
    assert_eq!(mac_of(endpoint).await, first_other.mac_colon(), "the MAC of the adapter that holds lastIpAddress");
    let endpoint = endpoint_of(&app, &docked.id).await;
    assert_ne!(
        mac_of(endpoint).await.as_deref(),
        Some(down_mac.as_str()),
        "not merged into the printer by a down adapter"
    );
}
