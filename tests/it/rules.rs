//! Response rules (issue 22) over real HTTP, against the simulator: a dry run before enabling,
//! approval by a second person (never the author), approvals that expire, the cooldown, the
//! hourly cap, the kill switch, and a decision sent once even when sending is tried again.

use std::time::Duration;

use diesel::prelude::*;
use endpoint_analytics::auth::Role;
use endpoint_analytics::db::schema::{defender_machines, machine_actions, rule_decisions};
use serde_json::{Value, json};

use crate::defender_sync::synced;
use crate::helpers::*;

pub(crate) async fn api(
    app: &TestApp,
    token: &str,
    method: reqwest::Method,
    path: &str,
    body: Option<Value>,
) -> (u16, Value) {
    let mut req = reqwest::Client::new().request(method, app.url(path)).bearer_auth(token);
    if let Some(b) = body {
        req = req.json(&b);
    }
    let res = req.send().await.unwrap();
    let status = res.status().as_u16();
    let text = res.text().await.unwrap();
    (status, serde_json::from_str(&text).unwrap_or(Value::String(text)))
}

pub(crate) async fn post(app: &TestApp, token: &str, path: &str, body: Value) -> (u16, Value) {
    api(app, token, reqwest::Method::POST, path, Some(body)).await
}

/// Decisions of a rule, oldest first: (endpoint, state).
async fn decisions(app: &TestApp, rule: i64) -> Vec<(i64, String)> {
    app.db
        .run(move |c| {
            Ok(rule_decisions::table
                .filter(rule_decisions::rule_id.eq(rule))
                .order(rule_decisions::id.asc())
                .select((rule_decisions::endpoint_id, rule_decisions::state))
                .load(c)?)
        })
        .await
        .unwrap()
}

/// Creates a rule through the API, dry-runs and enables it; returns its id and the dry run.
async fn enabled_rule(app: &TestApp, admin: &str, rule: Value) -> (i64, Value) {
    let (status, made) = post(app, admin, "/api/v1/rules", rule).await;
    assert_eq!(status, 201, "{made}");
    let id = made["id"].as_i64().unwrap();
    let (status, run) = post(app, admin, &format!("/api/v1/rules/{id}/dry-run"), json!({})).await;
    assert_eq!(status, 200, "{run}");
    let (status, on) = post(app, admin, &format!("/api/v1/rules/{id}/enable"), json!({})).await;
    assert_eq!(status, 200, "{on}");
    assert_eq!(on["matching_now"], run["matching"], "enabling shows the count again");
    (id, run)
}

/// Endpoints whose live Defender machine's alert level is at least `level` (3 = High).
async fn alerted(app: &TestApp, level: i16) -> Vec<i64> {
    let mut ids: Vec<i64> = app
        .db
        .run(move |c| {
            Ok(defender_machines::table
                .filter(defender_machines::stale.eq(false))
                .filter(defender_machines::top_alert_severity.ge(level))
                .select(defender_machines::endpoint_id)
                .load::<Option<i64>>(c)?)
        })
        .await
        .unwrap()
        .into_iter()
        .flatten()
        .collect();
    ids.sort();
    ids
}

#[tokio::test]
async fn a_rule_is_dry_run_before_it_is_enabled_and_the_dry_run_is_what_it_meets() {
    let (app, _sim, admin, _) = synced(120).await;
    let condition = json!({"min_alert": "High"});
    let expected = alerted(&app, 3).await;
    assert!(!expected.is_empty(), "the tenant has machines with High alerts");

    // Unsaved: the matching endpoints and their count.
    let (status, run) = post(&app, &admin, "/api/v1/rules/dry-run", json!({"condition": condition})).await;
    assert_eq!(status, 200, "{run}");
    assert_eq!(run["matching"], expected.len());
    let mut listed: Vec<i64> = run["endpoints"].as_array().unwrap().iter().map(|e| e["id"].as_i64().unwrap()).collect();
    listed.sort();
    assert_eq!(listed, expected[..expected.len().min(50)].to_vec());
    for e in run["endpoints"].as_array().unwrap() {
        assert!(["High", "Critical"].contains(&e["alert"].as_str().unwrap()), "{e}");
    }

    // Bad conditions and actions are refused, field by field.
    for (body, words) in [
        (json!({"name": "x", "condition": {}, "action": {"type": "send_event"}}), "at least one part"),
        (json!({"name": "x", "condition": {"min_risk": "None"}, "action": {"type": "send_event"}}), "Low, Medium"),
        (
            json!({"name": "x", "condition": condition, "action": {"type": "isolate", "scope": "Everything"}}),
            "Full or Selective",
        ),
        (
            json!({"name": "x", "condition": condition, "action": {"type": "send_event"}, "requires_approval": true}),
            "device action",
        ),
        (
            json!({"name": "x", "condition": {"coverage": "nowhere"}, "action": {"type": "send_event"}}),
            "Unknown coverage",
        ),
        (json!({"name": "x", "condition": condition, "action": {"type": "reboot"}}), "body must be"),
    ] {
        let (status, answer) = post(&app, &admin, "/api/v1/rules", body.clone()).await;
        assert_eq!(status, 400, "{body} → {answer}");
        assert!(answer.to_string().contains(words), "{body} → {answer}");
    }

    // Saved: not enabled without a dry run of it as it is now.
    let rule = json!({"name": "High alerts out", "condition": condition, "action": {"type": "send_event"}});
    let (status, made) = post(&app, &admin, "/api/v1/rules", rule.clone()).await;
    assert_eq!(status, 201, "{made}");
    assert_eq!(made["enabled"], false);
    let id = made["id"].as_i64().unwrap();
    let (status, _) = post(&app, &admin, &format!("/api/v1/rules/{id}/enable"), json!({})).await;
    assert_eq!(status, 409, "enabling before a dry run is refused");
    let (status, again) = post(&app, &admin, "/api/v1/rules", rule).await;
    assert_eq!(status, 409, "names are unique: {again}");
    let (_, run) = post(&app, &admin, &format!("/api/v1/rules/{id}/dry-run"), json!({})).await;
    assert_eq!(run["matching"], expected.len());
    let (status, on) = post(&app, &admin, &format!("/api/v1/rules/{id}/enable"), json!({})).await;
    assert_eq!((status, &on["matching_now"]), (200, &json!(expected.len())), "{on}");
    // A change disables it and asks for a dry run again.
    let changed =
        json!({"name": "High alerts out", "condition": {"min_alert": "Critical"}, "action": {"type": "send_event"}});
    let (status, after) = api(&app, &admin, reqwest::Method::PUT, &format!("/api/v1/rules/{id}"), Some(changed)).await;
    assert_eq!(status, 200, "{after}");
    assert_eq!((after["enabled"].clone(), after["dry_run"].clone()), (json!(false), Value::Null));

    // Operators and analysts do not write rules.
    for role in [Role::Operator, Role::Analyst] {
        let token = app.token(role).await;
        let (status, _) = post(&app, &token, "/api/v1/rules/dry-run", json!({"condition": condition})).await;
        assert_eq!(status, 403, "{role:?}");
    }
}

#[tokio::test]
async fn an_approved_isolation_is_sent_once_and_followed_and_the_author_cannot_approve_it() {
    let (app, sim, admin_token, _) = synced(120).await;
    // The rule's author and the approver are people, each calling with a token of their own.
    let author_token = token_of(&app, "author", Role::Admin).await;
    let targets = alerted(&app, 3).await;
    let rule = json!({
        "name": "Isolate on High alerts", "condition": {"min_alert": "High", "source": "defender"},
        "action": {"type": "isolate", "scope": "Full"}, "requires_approval": true, "cooldown_minutes": 60,
    });
    let (rule_id, _) = enabled_rule(&app, &author_token, rule).await;
    app.state.rules.run_once().await;
    let waiting = decisions(&app, rule_id).await;
    assert!(!waiting.is_empty() && waiting.iter().all(|(_, s)| s == "awaiting_approval"), "{waiting:?}");
    assert!(waiting.iter().all(|(e, _)| targets.contains(e)));
    let counters_before = sim.counters();

    // Nothing is sent while it waits, however often the rules run.
    app.state.rules.run_once().await;
    assert_eq!(decisions(&app, rule_id).await.len(), waiting.len(), "no second decision while one is open");
    assert_eq!(sim.counters().api("Isolate").calls, counters_before.api("Isolate").calls);

    let (_, list) = api(&app, &admin_token, reqwest::Method::GET, "/api/v1/approvals", None).await;
    let first = &list["items"][0];
    let decision = first["id"].as_i64().unwrap();
    assert_eq!(first["rule"], "Isolate on High alerts");
    assert!(["High", "Critical"].contains(&first["matched"]["alert"].as_str().unwrap()), "{first}");

    // The author may not approve; an operator other than the author may.
    let (status, why) = post(&app, &author_token, &format!("/api/v1/approvals/{decision}/approve"), json!({})).await;
    assert_eq!(status, 403, "{why}");
    let approver = token_of(&app, "approver", Role::Operator).await;
    let (status, done) =
        post(&app, &approver, &format!("/api/v1/approvals/{decision}/approve"), json!({"reason": "confirmed"})).await;
    assert_eq!(status, 200, "{done}");
    let (status, _) = post(&app, &approver, &format!("/api/v1/approvals/{decision}/approve"), json!({})).await;
    assert_eq!(status, 409, "decided once");

    // Sent right after the approval, once; the action is followed to its final status.
    let endpoint = first["endpoint_id"].as_i64().unwrap();
    let action_id = wait_for(|| async {
        let (_, d) = api(&app, &admin_token, reqwest::Method::GET, "/api/v1/approvals?state=all", None).await;
        d["items"]
            .as_array()
            .unwrap()
            .iter()
            .find(|x| x["id"] == decision && x["state"] == "sent")
            .map(|x| x["action_id"].as_i64().unwrap())
    })
    .await;
    assert_eq!(sim.counters().api("Isolate").calls, counters_before.api("Isolate").calls + 1);
    // Sending again (a crash before the decision was marked, a second instance) sends nothing.
    app.db
        .run(move |c| {
            diesel::update(rule_decisions::table.find(decision))
                .set(rule_decisions::state.eq("approved"))
                .execute(c)?;
            Ok(())
        })
        .await
        .unwrap();
    app.state.rules.run_once().await;
    assert_eq!(
        sim.counters().api("Isolate").calls,
        counters_before.api("Isolate").calls + 1,
        "the same idempotency key: no second isolate"
    );
    let status = wait_for(|| async {
        let (_, a) = api(&app, &admin_token, reqwest::Method::GET, &format!("/api/v1/actions/{action_id}"), None).await;
        Some(a["status"].as_str()?.to_owned()).filter(|s| s == "Succeeded")
    })
    .await;
    assert_eq!(status, "Succeeded");
    let requested_by: String = app
        .db
        .run(move |c| Ok(machine_actions::table.find(action_id).select(machine_actions::requested_by).first(c)?))
        .await
        .unwrap();
    assert_eq!(requested_by, format!("rule {rule_id}"));
    // The audit log names the rule, what matched and the approver.
    let audit: Vec<AuditRow> = app
        .db
        .run(|c| {
            use endpoint_analytics::db::schema::audit_log;
            Ok(audit_log::table
                .filter(audit_log::action.like("rule.%"))
                .select((audit_log::actor, audit_log::action, audit_log::target, audit_log::details))
                .load(c)?)
        })
        .await
        .unwrap();
    let has = |action: &str, f: &dyn Fn(&AuditRow) -> bool| audit.iter().any(|a| a.1 == action && f(a));
    assert!(
        has("rule.matched", &|a| a.2 == "Isolate on High alerts"
            && a.3.contains(&format!("\"endpoint_id\":{endpoint}"))),
        "{audit:?}"
    );
    assert!(has("rule.approve", &|a| a.0 == "approver" && a.3.contains(&format!("decision {decision}"))), "{audit:?}");
    assert!(has("rule.act", &|a| a.3.contains("approved by approver")), "{audit:?}");

    // Declining needs a reason; an expired approval cannot be given.
    if let Some(other) = list["items"].as_array().unwrap().get(1) {
        let other = other["id"].as_i64().unwrap();
        let (status, _) = post(&app, &approver, &format!("/api/v1/approvals/{other}/decline"), json!({})).await;
        assert_eq!(status, 400);
        app.db
            .run(move |c| {
                diesel::update(rule_decisions::table.find(other)).set(rule_decisions::expires_at.eq(1)).execute(c)?;
                Ok(())
            })
            .await
            .unwrap();
        let (status, _) = post(&app, &approver, &format!("/api/v1/approvals/{other}/approve"), json!({})).await;
        assert_eq!(status, 409, "expired");
        let state: String = app
            .db
            .run(move |c| Ok(rule_decisions::table.find(other).select(rule_decisions::state).first(c)?))
            .await
            .unwrap();
        assert_eq!(state, "expired");
    }
}

#[tokio::test]
async fn the_cooldown_the_hourly_cap_and_the_kill_switch_hold() {
    let (app, sim, admin, _) = synced(150).await;
    let targets = alerted(&app, 2).await;
    assert!(targets.len() >= 4, "enough machines with Medium+ alerts: {}", targets.len());

    // The kill switch: nothing is decided while paused.
    let (status, _) =
        api(&app, &admin, reqwest::Method::PUT, "/api/v1/rules/pause", Some(json!({"paused": true}))).await;
    assert_eq!(status, 200);
    let (events_rule, _) = enabled_rule(
        &app,
        &admin,
        json!({"name": "Tell the SIEM", "condition": {"min_alert": "Medium"}, "action": {"type": "send_event"}, "cooldown_minutes": 30}),
    )
    .await;
    app.state.rules.run_once().await;
    assert!(decisions(&app, events_rule).await.is_empty(), "paused: nothing decided");
    api(&app, &admin, reqwest::Method::PUT, "/api/v1/rules/pause", Some(json!({"paused": false}))).await;

    // Cooldown: one decision per endpoint, not again within it, again after it.
    app.state.rules.run_once().await;
    let first = decisions(&app, events_rule).await;
    assert_eq!(first.len(), targets.len(), "one each");
    assert!(first.iter().all(|(_, s)| s == "sent"), "an event needs no approval: {first:?}");
    app.state.rules.run_once().await;
    assert_eq!(decisions(&app, events_rule).await.len(), targets.len(), "within the cooldown: nothing new");
    app.db
        .run(|c| {
            diesel::update(rule_decisions::table)
                .set(rule_decisions::created_at.eq(rule_decisions::created_at - 31 * 60))
                .execute(c)?;
            Ok(())
        })
        .await
        .unwrap();
    app.state.rules.run_once().await;
    assert_eq!(decisions(&app, events_rule).await.len(), 2 * targets.len(), "after the cooldown: again");
    let sent_events: i64 = app
        .db
        .run(|c| {
            use endpoint_analytics::db::schema::events;
            Ok(events::table.filter(events::kind.eq("rule.matched")).count().get_result(c)?)
        })
        .await
        .unwrap();
    assert_eq!(sent_events, 2 * targets.len() as i64, "a rule.matched event per decision");
    post(&app, &admin, &format!("/api/v1/rules/{events_rule}/disable"), json!({})).await;

    // The cap: at most rules_actions_per_hour device actions in an hour (the test app's is the
    // default, 30; here the scan rule meets fewer, so the cap is lowered by what was sent).
    let before = sim.counters().api("RunAntiVirusScan").calls;
    let (scan_rule, _) = enabled_rule(
        &app,
        &admin,
        json!({"name": "Scan on alerts", "condition": {"min_alert": "Medium"}, "action": {"type": "run_scan", "scope": "Quick"}}),
    )
    .await;
    // Fill the hour up to 2 below the cap with a rule's earlier actions (finished, so that none
    // is open on a machine).
    let cap = endpoint_analytics::config::Settings::default().rules_actions_per_hour;
    app.db
        .run(move |c| {
            let now = chrono::Utc::now().timestamp();
            for i in 0..cap - 2 {
                diesel::insert_into(machine_actions::table)
                    .values((
                        machine_actions::idempotency_key.eq(format!("earlier-{i}")),
                        machine_actions::endpoint_id.eq(targets[0]),
                        machine_actions::machine_id.eq("earlier"),
                        machine_actions::action_type.eq("RunAntiVirusScan"),
                        machine_actions::scope.eq("Quick"),
                        machine_actions::comment.eq("earlier"),
                        machine_actions::requested_by.eq(format!("rule {events_rule}")),
                        machine_actions::status.eq("Succeeded"),
                        machine_actions::created_at.eq(now - 600),
                        machine_actions::updated_at.eq(now - 600),
                    ))
                    .execute(c)?;
            }
            Ok(())
        })
        .await
        .unwrap();
    app.state.rules.run_once().await;
    assert_eq!(sim.counters().api("RunAntiVirusScan").calls, before + 2, "two under the cap, then none");
    let states = decisions(&app, scan_rule).await;
    assert_eq!(states.iter().filter(|(_, s)| s == "sent").count(), 2, "{states:?}");
    assert!(states.iter().filter(|(_, s)| s == "approved").count() >= 2, "the rest wait for room: {states:?}");
}

/// An audit entry: actor, action, target, details.
type AuditRow = (String, String, String, String);

/// A new user and an API token of theirs.
pub(crate) async fn token_of(app: &TestApp, name: &'static str, role: Role) -> String {
    use endpoint_analytics::auth::{hash_api_token, new_api_token};
    use endpoint_analytics::db::models::{api_tokens, users};
    app.add_user(name, role).await;
    let token = new_api_token();
    let hash = hash_api_token(&token);
    app.db
        .run(move |c| {
            let id = users::find_by_name(c, name)?.expect("the user").id;
            Ok(api_tokens::create(c, name, &hash, role, api_tokens::Creator::User { id, name }, None)?)
        })
        .await
        .unwrap();
    token
}

#[tokio::test]
async fn a_rule_restricts_app_execution_where_defender_offers_it() {
    let (app, sim, admin, _) = synced(120).await;
    let before = sim.counters().api("RestrictCodeExecution").calls;
    let (rule, run) = enabled_rule(
        &app,
        &admin,
        json!({"name": "Restrict on Critical", "condition": {"min_alert": "High", "source": "defender"},
               "action": {"type": "restrict_app_execution"}}),
    )
    .await;
    assert!(run["matching"].as_i64().unwrap() > 0, "{run}");
    app.state.rules.run_once().await;
    let states = decisions(&app, rule).await;
    let sent = states.iter().filter(|(_, s)| s == "sent").count() as u64;
    assert!(sent > 0, "{states:?}");
    assert_eq!(sim.counters().api("RestrictCodeExecution").calls - before, sent, "one request per decision sent");
    // Where Defender does not offer it (the platforms Microsoft documents), the decision says so.
    assert!(states.iter().all(|(_, s)| s == "sent" || s == "refused"), "{states:?}");
}

/// Polls `probe` until it answers, at most 30 s.
async fn wait_for<T, F, Fut>(probe: F) -> T
where
    F: Fn() -> Fut,
    Fut: std::future::Future<Output = Option<T>>,
{
    for _ in 0..300 {
        if let Some(v) = probe().await {
            return v;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!("not within 30 s");
}

#[tokio::test]
async fn a_rule_adds_a_defender_tag_through_the_tag_api_and_the_profiles_writer_leaves_it() {
    let (app, sim, admin, _) = synced(120).await;
    // Refused: an empty tag, one too long, control characters.
    for tag in ["", &"x".repeat(201), "a\nb"] {
        let (status, body) = post(
            &app,
            &admin,
            "/api/v1/rules",
            json!({"name": "Bad tag", "condition": {"min_alert": "High"}, "action": {"type": "add_tag", "tag": tag}}),
        )
        .await;
        assert_eq!(status, 400, "{tag:?}: {body}");
    }
    let (rule, run) = enabled_rule(
        &app,
        &admin,
        json!({"name": "Tag the alerted", "condition": {"min_alert": "High", "source": "defender"},
               "action": {"type": "add_tag", "tag": "EA:Alerted"}}),
    )
    .await;
    let matching = run["matching"].as_i64().unwrap();
    assert!(matching > 0, "{run}");
    // The hour's budget of tag calls is spent (300 by default): the decisions wait, approved.
    use endpoint_analytics::db::models::defender_tags;
    use endpoint_analytics::db::schema::defender_tag_calls;
    app.db
        .run(|c| {
            for i in 0..300 {
                defender_tags::record_call(c, &format!("m{i}"), "earlier", "Add", "done")?;
            }
            Ok(())
        })
        .await
        .unwrap();
    app.state.rules.run_once().await;
    assert!(decisions(&app, rule).await.iter().all(|(_, s)| s == "approved"), "they wait for room");
    assert_eq!(sim.counters().api("MachineTags").calls, 0);
    app.db.run(|c| Ok(diesel::delete(defender_tag_calls::table).execute(c)?)).await.unwrap();
    // With room again (20 a round), every decision is sent in the next rounds.
    for _ in 0..(matching / 20 + 1) {
        app.state.rules.run_once().await;
    }
    let states = decisions(&app, rule).await;
    assert!(states.iter().all(|(_, s)| s == "sent"), "{states:?}");
    assert_eq!(states.len() as i64, matching);
    assert_eq!(sim.counters().api("MachineTags").calls, matching as u64, "one call per decision");
    let tenant = sim.tenant();
    for id in alerted(&app, 3).await {
        let machine: Option<String> = app
            .db
            .run(move |c| {
                Ok(defender_machines::table
                    .filter(defender_machines::endpoint_id.eq(id))
                    .filter(defender_machines::stale.eq(false))
                    .select(defender_machines::machine_id)
                    .first(c)
                    .optional()?)
            })
            .await
            .unwrap();
        let m = tenant.machine_by_id(&machine.unwrap()).expect("the machine");
        assert!(m.machine_tags.iter().any(|t| t == "EA:Alerted"), "{:?}", m.machine_tags);
    }
    // The profiles' writer does not take back a rule's tag (unless the supervisor's round has
    // the writer's lease just now: then it did the same).
    let round = app.state.rules.tags().run_once().await;
    assert!(round.is_none_or(|r| r == Default::default()), "{round:?}");
    let before = sim.counters().api("MachineTags").calls;
    assert_eq!(before, matching as u64, "no removal");
    let (_, listed) = api(&app, &admin, reqwest::Method::GET, &format!("/api/v1/rules/{rule}"), None).await;
    assert_eq!(listed["action"], json!({"type": "add_tag", "tag": "EA:Alerted"}));
    assert!(listed["summary"].as_str().unwrap().contains("add the Defender tag EA:Alerted"), "{listed}");
    // The page's form, filled with the rule to change it, carries the action and its tag.
    let ada = app.login_as("ada", Role::Admin).await;
    let html = ada.get(app.url(&format!("/rules/{rule}/edit"))).send().await.unwrap().text().await.unwrap();
    assert_eq!(attr(&doc(&html), "input[name=add_tag]", "value").as_deref(), Some("EA:Alerted"));
    assert_eq!(attr(&doc(&html), "select[name=action] option[selected]", "value").as_deref(), Some("add_tag"));
}

/// The rules page changes a rule in the form filled with it: the change is saved as a new
/// version by its editor and disables the rule; a refused change keeps what was typed and
/// changes nothing; only admins reach the form.
#[tokio::test]
async fn a_rule_is_changed_on_the_page_and_the_change_disables_it() {
    let app = spawn_app().await;
    let admin = app.token(Role::Admin).await;
    let (id, _) = enabled_rule(
        &app,
        &admin,
        json!({"name": "Scan exposed", "condition": {"min_exposure": "High"}, "action": {"type": "run_scan", "scope": "Quick"}}),
    )
    .await;
    let ada = app.login_as("ada", Role::Admin).await;
    let form = ada.get(app.url(&format!("/rules/{id}/edit"))).send().await.unwrap();
    assert_eq!(form.status(), 200);
    let page = form.text().await.unwrap();
    assert!(page.contains(&format!("action=\"/rules/{id}\"")), "the form saves to the rule");
    assert!(page.contains("value=\"Scan exposed\""), "the form is filled with the rule");
    assert!(page.contains("<option value=\"High\" selected>"), "its condition too");
    assert!(page.contains("<option value=\"scan_quick\" selected>"), "and its action");

    let refused = app
        .post_form(
            &ada,
            &format!("/rules/{id}"),
            &[("name", "Scan exposed"), ("action", "scan_quick"), ("cooldown_minutes", "soon")],
        )
        .await;
    assert_eq!(refused.status(), 400);
    let page = refused.text().await.unwrap();
    assert!(page.contains("Cooldown: a number of minutes."), "the reason is shown");
    assert!(page.contains("value=\"soon\""), "what was typed is kept");
    let (_, rule) = api(&app, &admin, reqwest::Method::GET, &format!("/api/v1/rules/{id}"), None).await;
    assert_eq!(rule["enabled"], true, "a refused change changes nothing: {rule}");

    let saved = app
        .post_form(
            &ada,
            &format!("/rules/{id}"),
            &[
                ("name", "Scan critical"),
                ("min_exposure", "Critical"),
                ("action", "scan_full"),
                ("cooldown_minutes", "60"),
            ],
        )
        .await;
    assert_eq!(saved.status(), 200);
    assert!(saved.text().await.unwrap().contains("Rule Scan critical changed, and disabled"));
    let (_, rule) = api(&app, &admin, reqwest::Method::GET, &format!("/api/v1/rules/{id}"), None).await;
    assert_eq!(rule["enabled"], false, "{rule}");
    assert_eq!(rule["condition"]["min_exposure"], "Critical");
    assert_eq!(rule["action"], json!({"type": "run_scan", "scope": "Full"}));
    assert_eq!(rule["cooldown_minutes"], 60);
    let editors = app
        .db
        .run(move |c| {
            use endpoint_analytics::db::schema::response_rules;
            Ok(response_rules::table.find(id).select(response_rules::editors).first::<String>(c)?)
        })
        .await
        .unwrap();
    assert!(editors.contains("ada"), "whoever changed it is one of its editors: {editors}");

    let olga = app.login_as("olga", Role::Operator).await;
    assert_eq!(olga.get(app.url(&format!("/rules/{id}/edit"))).send().await.unwrap().status(), 403);
    let tried = app.post_form(&olga, &format!("/rules/{id}"), &[("name", "x"), ("action", "send_event")]).await;
    assert_eq!(tried.status(), 403);
}
