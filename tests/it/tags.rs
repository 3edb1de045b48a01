//! Defender's machine tags in the product (issue 22, tags both ways): imported with each
//! machine, shown on the Microsoft Defender subtab, and a filter of the Endpoints list, its CSV
//! and the JSON API that matches a tag exactly. Over real HTTP against the simulator.

use std::collections::HashMap;

use defender_sim::SimConfig;
use serde_json::Value;

use crate::defender_sync::synced_with;
use crate::helpers::*;

#[tokio::test]
async fn machine_tags_are_imported_shown_and_filter_the_list_the_csv_and_the_api() {
    let (app, sim, token, _) = synced_with(SimConfig { machines: 200, hostile: true, ..SimConfig::default() }).await;
    let tenant = sim.tenant();
    let mut live_by_tag: HashMap<&str, Vec<&str>> = HashMap::new();
    for m in tenant.machines().iter().filter(|m| m.duplicate_of.is_none()) {
        for tag in &m.machine_tags {
            live_by_tag.entry(tag.as_str()).or_default().push(m.id.as_str());
        }
    }
    let (tag, holders) = live_by_tag
        .iter()
        .filter(|(t, _)| t.chars().all(|c| c.is_ascii_alphanumeric()))
        .max_by_key(|(t, h)| (h.len(), *t))
        .expect("the tenant tags some machines");
    assert!(holders.len() >= 2, "a tag on several machines: {tag} on {holders:?}");

    // The API: exactly the live machines carrying the tag, each showing it.
    let list = app.api_get(&token, &format!("/api/v1/endpoints?tag={tag}&limit=500")).await;
    assert_eq!(list["total"], holders.len(), "{tag}");
    let mut listed: Vec<&str> =
        list["items"].as_array().unwrap().iter().map(|e| e["defender"]["machine_id"].as_str().unwrap()).collect();
    listed.sort();
    let mut expected = holders.clone();
    expected.sort();
    assert_eq!(listed, expected);
    for e in list["items"].as_array().unwrap() {
        let tags: Vec<&str> = e["defender"]["tags"].as_array().unwrap().iter().map(|t| t.as_str().unwrap()).collect();
        assert!(tags.contains(tag), "{e}");
    }
    // Exact: another case, or a part of the tag, matches nothing.
    for near in [tag.to_lowercase(), tag[..tag.len() - 1].to_owned()] {
        if near != *tag {
            let none = app.api_get(&token, &format!("/api/v1/endpoints?tag={near}")).await;
            assert_eq!(none["total"], 0, "{near}");
        }
    }
    let res = reqwest::Client::new()
        .get(app.url(&format!("/api/v1/endpoints?tag={}", "x".repeat(201))))
        .bearer_auth(&token)
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 400, "a tag longer than Defender's is refused");

    // The page: the tag is a choice of the filter, and filtering by it gives the same count;
    // the CSV of the filter has as many rows.
    let analyst = app.login_as("ann", endpoint_analytics::auth::Role::Analyst).await;
    let html = analyst.get(app.url("/endpoints")).send().await.unwrap().text().await.unwrap();
    let choices = select_all(&doc(&html), "select[name=tag] option");
    assert!(choices.iter().any(|c| c == tag), "{choices:?}");
    let html = analyst.get(app.url(&format!("/endpoints?tag={tag}"))).send().await.unwrap().text().await.unwrap();
    assert_eq!(select_all(&doc(&html), "#match-count"), [holders.len().to_string()], "the page counts them");
    let csv = analyst.get(app.url(&format!("/endpoints.csv?tag={tag}"))).send().await.unwrap().text().await.unwrap();
    assert_eq!(csv.lines().count(), holders.len() + 1, "a header and a row per tagged endpoint");

    // The subtab shows every tag of the machine, hostile ones as text, each a link to the filter.
    let hostile = tenant
        .machines()
        .iter()
        .find(|m| m.duplicate_of.is_none() && m.machine_tags.iter().any(|t| t.contains('<')))
        .expect("a hostile tenant tags a machine with markup");
    let found = app.api_get(&token, &format!("/api/v1/endpoints?q={}", hostile.last_ip_address)).await;
    let endpoint: &Value = found["items"]
        .as_array()
        .unwrap()
        .iter()
        .find(|e| e["defender"]["machine_id"] == hostile.id)
        .expect("the machine's endpoint");
    let risk = analyst
        .get(app.url(&format!("/endpoints/{}/tabs/risk", endpoint["id"])))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    let shown = select_all(&doc(&risk), "#defender-tags a");
    assert_eq!(shown, hostile.machine_tags, "every tag, as text");
    assert!(!risk.contains("<script>alert(1)</script>") && !risk.contains("<img src=x"), "markup stays text");
}
