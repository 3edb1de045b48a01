//! The JSON API against its OpenAPI document, served by the running app: the document is sound,
//! it lists exactly the API routes of the routing table, and real answers match its schemas.
//! Machine actions through the API. (API tokens managed on their page: `tokens.rs`.)

use std::collections::BTreeSet;
use std::time::Duration;

use endpoint_analytics::auth::Role;
use endpoint_analytics::web::ROUTES;
use serde_json::{Value, json};

use crate::helpers::*;

const METHODS: [&str; 5] = ["get", "put", "post", "delete", "patch"];

async fn openapi(app: &TestApp) -> Value {
    let res = reqwest::get(app.url("/api/v1/openapi.json")).await.unwrap();
    assert_eq!(res.status(), 200, "the document is public");
    assert!(res.headers()["content-type"].to_str().unwrap().starts_with("application/json"));
    res.json().await.expect("the document is JSON")
}

/// Follows a local `$ref` (`#/components/schemas/X`, or deeper).
fn resolve<'a>(doc: &'a Value, reference: &str) -> Option<&'a Value> {
    doc.pointer(reference.strip_prefix('#')?)
}

fn collect_refs(v: &Value, out: &mut Vec<String>) {
    match v {
        Value::Object(m) => {
            if let Some(Value::String(r)) = m.get("$ref") {
                out.push(r.clone());
            }
            m.values().for_each(|x| collect_refs(x, out));
        }
        Value::Array(a) => a.iter().for_each(|x| collect_refs(x, out)),
        _ => {}
    }
}

fn type_matches(t: &str, v: &Value) -> bool {
    match t {
        "object" => v.is_object(),
        "array" => v.is_array(),
        "string" => v.is_string(),
        "integer" => v.is_i64() || v.is_u64(),
        "number" => v.is_number(),
        "boolean" => v.is_boolean(),
        "null" => v.is_null(),
        _ => false,
    }
}

/// A small JSON Schema check of what this document uses: `$ref`, `allOf`, `anyOf`, `type` (one
/// or several), `enum`, `required`, `properties` (an undocumented property is an error unless
/// `additionalProperties` allows it), `items`.
fn check(doc: &Value, schema: &Value, v: &Value, at: &str, errors: &mut Vec<String>) {
    if let Some(r) = schema["$ref"].as_str() {
        match resolve(doc, r) {
            Some(s) => check(doc, s, v, at, errors),
            None => errors.push(format!("{at}: unresolved {r}")),
        }
        return;
    }
    if let Some(all) = schema["allOf"].as_array() {
        // The parts describe one object together: each part's own properties are checked, and
        // a property is undocumented only when no part has it.
        let known: BTreeSet<String> = all.iter().flat_map(|p| properties_of(doc, p)).collect();
        for part in all {
            check_object(doc, part, v, at, errors, Some(&known));
        }
        return;
    }
    if let Some(any) = schema["anyOf"].as_array() {
        if !any.iter().any(|s| {
            let mut e = Vec::new();
            check(doc, s, v, at, &mut e);
            e.is_empty()
        }) {
            errors.push(format!("{at}: matches none of anyOf: {v}"));
        }
        return;
    }
    check_object(doc, schema, v, at, errors, None);
}

fn properties_of(doc: &Value, schema: &Value) -> Vec<String> {
    let s = schema["$ref"].as_str().and_then(|r| resolve(doc, r)).unwrap_or(schema);
    s["properties"].as_object().map(|p| p.keys().cloned().collect()).unwrap_or_default()
}

fn check_object(
    doc: &Value,
    schema: &Value,
    v: &Value,
    at: &str,
    errors: &mut Vec<String>,
    known: Option<&BTreeSet<String>>,
) {
    let schema = schema["$ref"].as_str().and_then(|r| resolve(doc, r)).unwrap_or(schema);
    let ok_type = match &schema["type"] {
        Value::String(t) => type_matches(t, v),
        Value::Array(ts) => ts.iter().any(|t| t.as_str().is_some_and(|t| type_matches(t, v))),
        _ => true,
    };
    if !ok_type {
        errors.push(format!("{at}: {v} is not of type {}", schema["type"]));
        return;
    }
    if schema["format"] == "date-time"
        && let Some(t) = v.as_str()
        && chrono::DateTime::parse_from_rfc3339(t).is_err()
    {
        errors.push(format!("{at}: {t:?} is not an RFC 3339 time"));
    }
    if let Some(allowed) = schema["enum"].as_array()
        && !allowed.contains(v)
    {
        errors.push(format!("{at}: {v} is not one of {allowed:?}"));
    }
    if let (Some(obj), true) = (v.as_object(), schema.get("properties").is_some() || schema.get("required").is_some()) {
        let props = schema["properties"].as_object().cloned().unwrap_or_default();
        for r in schema["required"].as_array().into_iter().flatten() {
            if !obj.contains_key(r.as_str().unwrap()) {
                errors.push(format!("{at}: required property {r} is missing"));
            }
        }
        for (k, val) in obj {
            match props.get(k) {
                Some(p) => check(doc, p, val, &format!("{at}.{k}"), errors),
                None if schema.get("additionalProperties").is_some() => {}
                None if known.is_some_and(|k2| k2.contains(k)) => {}
                None => errors.push(format!("{at}: property {k:?} is not documented")),
            }
        }
    }
    if let (Some(items), Some(arr)) = (schema.get("items"), v.as_array()) {
        for (i, x) in arr.iter().enumerate() {
            check(doc, items, x, &format!("{at}[{i}]"), errors);
        }
    }
}

/// Checks an answer against the document: its status is documented for the operation, and its
/// body matches that response's schema.
async fn conforms(doc: &Value, method: &str, template: &str, res: reqwest::Response) -> Value {
    let status = res.status().as_u16().to_string();
    let content_type = res.headers().get("content-type").and_then(|v| v.to_str().ok()).unwrap_or("").to_owned();
    let media = content_type.split(';').next().unwrap_or("").trim().to_owned();
    if !res.status().is_success() {
        assert_eq!(media, "application/problem+json", "errors are RFC 9457 problem details");
    }
    let body: Value = res.json().await.expect("a JSON answer");
    let op = &doc["paths"][template][method];
    assert!(op.is_object(), "{method} {template} is documented");
    let response = &op["responses"][&status];
    assert!(response.is_object(), "{method} {template} answered {status}, which is not documented: {body}");
    let response = response["$ref"].as_str().and_then(|r| resolve(doc, r)).unwrap_or(response);
    let schema = &response["content"][media.as_str()]["schema"];
    assert!(schema.is_object(), "{method} {template} {status} documents its JSON body");
    let mut errors = Vec::new();
    check(doc, schema, &body, "body", &mut errors);
    assert!(errors.is_empty(), "{method} {template} {status} does not match its schema:\n{}", errors.join("\n"));
    body
}

#[tokio::test]
async fn the_openapi_document_is_sound_and_lists_exactly_the_api_routes() {
    let app = spawn_app().await;
    let doc = openapi(&app).await;
    assert!(doc["openapi"].as_str().unwrap().starts_with("3.1."), "OpenAPI 3.1");
    assert!(doc["info"]["title"].is_string() && doc["info"]["version"].is_string());
    let schemes = doc["components"]["securitySchemes"].as_object().expect("security schemes");
    assert!(!schemes.is_empty());
    for s in schemes.values() {
        assert_eq!((s["type"].as_str(), s["scheme"].as_str()), (Some("http"), Some("bearer")));
    }
    let uses_known_schemes = |security: &Value| {
        security.as_array().unwrap().iter().all(|req| req.as_object().unwrap().keys().all(|k| schemes.contains_key(k)))
    };
    assert!(uses_known_schemes(&doc["security"]) && !doc["security"].as_array().unwrap().is_empty());

    // Every reference points at something.
    let mut refs = Vec::new();
    collect_refs(&doc, &mut refs);
    assert!(refs.len() > 20);
    for r in &refs {
        assert!(resolve(&doc, r).is_some(), "unresolved $ref {r}");
    }

    let mut documented = BTreeSet::new();
    let mut operation_ids = BTreeSet::new();
    for (path, item) in doc["paths"].as_object().unwrap() {
        let placeholders: BTreeSet<&str> =
            path.split('/').filter_map(|s| s.strip_prefix('{')?.strip_suffix('}')).collect();
        for (method, op) in item.as_object().unwrap() {
            assert!(METHODS.contains(&method.as_str()), "{method} {path}: unknown method");
            documented.insert((method.to_ascii_uppercase(), path.clone()));
            let id = op["operationId"].as_str().unwrap_or_else(|| panic!("{method} {path}: operationId"));
            assert!(operation_ids.insert(id.to_owned()), "operationId {id} is used twice");
            let responses = op["responses"].as_object().unwrap_or_else(|| panic!("{method} {path}: responses"));
            assert!(!responses.is_empty(), "{method} {path} documents its responses");
            // A success, or the redirect that is one (303 to an investigation package's link).
            let success = |s: &String| s.starts_with('2') || s == "303";
            assert!(responses.keys().any(success), "{method} {path} documents a success");
            for (status, r) in responses {
                assert!(r["description"].is_string(), "{method} {path} {status}: description");
            }
            if let Some(sec) = op.get("security") {
                assert!(uses_known_schemes(sec), "{method} {path}: unknown security scheme");
            } else {
                assert!(responses.contains_key("401"), "{method} {path} needs a token and documents 401");
            }
            let declared: BTreeSet<&str> = op["parameters"]
                .as_array()
                .into_iter()
                .flatten()
                .filter(|p| p["in"] == "path")
                .map(|p| {
                    assert_eq!(p["required"], true, "{method} {path}: path parameters are required");
                    p["name"].as_str().unwrap()
                })
                .collect();
            assert_eq!(declared, placeholders, "{method} {path}: path parameters");
        }
    }

    // Every time in every schema is an RFC 3339 string: a property named for a moment
    // (`…_at`, `…_seen`, `at`, `since`) is documented with the date-time format.
    let mut times = Vec::new();
    for (name, schema) in doc["components"]["schemas"].as_object().unwrap() {
        for (prop, p) in schema["properties"].as_object().into_iter().flatten() {
            if prop.ends_with("_at") || prop.ends_with("_seen") || prop == "at" || prop == "since" {
                times.push(format!("{name}.{prop}"));
                assert_eq!(p["format"], "date-time", "{name}.{prop} is a time: an RFC 3339 string");
                assert!(!p["type"].to_string().contains("integer"), "{name}.{prop}: no Unix seconds");
            }
        }
    }
    assert!(times.len() >= 12, "the times found: {times:?}");

    // The document and the routing table agree on the API, both ways.
    let routed: BTreeSet<(String, String)> = ROUTES
        .iter()
        .filter(|(_, path)| path.starts_with("/api/"))
        .map(|(method, path)| (method.to_ascii_uppercase(), (*path).to_owned()))
        .collect();
    assert!(routed.len() >= 10);
    let undocumented: Vec<_> = routed.difference(&documented).collect();
    let unrouted: Vec<_> = documented.difference(&routed).collect();
    assert!(undocumented.is_empty(), "API routes missing from openapi.json: {undocumented:?}");
    assert!(unrouted.is_empty(), "openapi.json documents routes that do not exist: {unrouted:?}");
}

#[tokio::test]
async fn real_answers_match_the_documented_schemas() {
    let (app, sim, admin) = crate::actions::synced().await;
    let doc = openapi(&app).await;
    let client = reqwest::Client::new();
    let operator = app.token(Role::Operator).await;

    // Observations: accepted, rejected, and a malformed body.
    let batch = json!([{"mac": "3c:52:82:11:22:33", "ip": "10.0.0.20", "hostname": "printer-2f.corp.example"},
                       {"mac": "not a mac"}, 17]);
    let res = client.post(app.url("/api/v1/observations")).bearer_auth(&operator).json(&batch).send().await.unwrap();
    let report = conforms(&doc, "post", "/api/v1/observations", res).await;
    assert_eq!((report["created"].as_i64(), report["rejected"].as_array().unwrap().len()), (Some(1), 2));
    let res = client.post(app.url("/api/v1/observations")).bearer_auth(&operator).body("{").send().await.unwrap();
    conforms(&doc, "post", "/api/v1/observations", res).await;

    // Endpoints: a page, one with its risk factors, a missing one, no token, a bad filter.
    let res = client.get(app.url("/api/v1/endpoints?limit=5&sort=risk&dir=desc")).bearer_auth(&admin).send().await;
    let page = conforms(&doc, "get", "/api/v1/endpoints", res.unwrap()).await;
    assert_eq!(page["items"].as_array().unwrap().len(), 5);
    assert!(page["next"].is_string());
    let riskiest = page["items"][0]["id"].as_i64().unwrap();
    let res = client.get(app.url(&format!("/api/v1/endpoints/{riskiest}"))).bearer_auth(&admin).send().await;
    let detail = conforms(&doc, "get", "/api/v1/endpoints/{id}", res.unwrap()).await;
    assert!(!detail["risk_factors"].as_array().unwrap().is_empty(), "the riskiest endpoint has a factor");
    assert_eq!(detail["risk_factors"][0]["level"], detail["risk"], "the highest factor is the endpoint's level");
    let res = client.get(app.url("/api/v1/endpoints/99999999")).bearer_auth(&admin).send().await.unwrap();
    assert_eq!(res.status(), 404);
    conforms(&doc, "get", "/api/v1/endpoints/{id}", res).await;
    let res = client.get(app.url("/api/v1/endpoints")).send().await.unwrap();
    assert_eq!(res.status(), 401);
    conforms(&doc, "get", "/api/v1/endpoints", res).await;
    let res = client.get(app.url("/api/v1/endpoints?sort=colour")).bearer_auth(&admin).send().await.unwrap();
    assert_eq!(res.status(), 400);
    conforms(&doc, "get", "/api/v1/endpoints", res).await;

    // Coverage gaps: the counts and a page of endpoints, each with its gap.
    let res = client.get(app.url("/api/v1/coverage?limit=5")).bearer_auth(&admin).send().await.unwrap();
    let gaps = conforms(&doc, "get", "/api/v1/coverage", res).await;
    assert!(gaps["total"].as_i64().unwrap() > 0, "a synced tenant has gaps: {gaps}");
    assert!(gaps["items"].as_array().unwrap().iter().all(|e| e["coverage"]["kind"].is_string()), "{gaps}");
    let res = client.get(app.url("/api/v1/coverage?coverage=everything")).bearer_auth(&admin).send().await.unwrap();
    assert_eq!(res.status(), 400);
    conforms(&doc, "get", "/api/v1/coverage", res).await;

    // The integration.
    let res = client.get(app.url("/api/v1/integrations/defender/status")).bearer_auth(&admin).send().await;
    let status = conforms(&doc, "get", "/api/v1/integrations/defender/status", res.unwrap()).await;
    assert_eq!(status["last_run"]["status"], "succeeded");
    let res = client.post(app.url("/api/v1/integrations/defender/test")).bearer_auth(&operator).send().await;
    let test = conforms(&doc, "post", "/api/v1/integrations/defender/test", res.unwrap()).await;
    assert_eq!(test["ok"], true, "{test}");
    let res = client
        .put(app.url("/api/v1/integrations/defender"))
        .bearer_auth(&admin)
        .json(&json!({"tenant_id": "not a guid", "client_id": sim.client_id}))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 400);
    let refused = conforms(&doc, "put", "/api/v1/integrations/defender", res).await;
    assert!(refused["error"]["fields"]["tenant_id"].is_string(), "{refused}");
    let res = client.put(app.url("/api/v1/integrations/defender")).bearer_auth(&operator).json(&json!({})).send();
    let res = res.await.unwrap();
    assert_eq!(res.status(), 403);
    conforms(&doc, "put", "/api/v1/integrations/defender", res).await;

    let res = client.post(app.url("/api/v1/integrations/defender/sync")).bearer_auth(&operator).send().await;
    let started = conforms(&doc, "post", "/api/v1/integrations/defender/sync", res.unwrap()).await;
    let run = app.wait_for_sync(Duration::from_secs(60)).await;
    assert_eq!((run.id, run.status.as_str()), (started["run_id"].as_i64().unwrap(), "succeeded"));

    // The document describes itself.
    conforms(&doc, "get", "/api/v1/openapi.json", reqwest::get(app.url("/api/v1/openapi.json")).await.unwrap()).await;
}

fn scans_sent(sim: &defender_sim::RunningSimulator) -> u64 {
    sim.counters().api("RunAntiVirusScan").calls
}

async fn start_action(app: &TestApp, token: &str, endpoint: i64, body: &Value) -> reqwest::Response {
    reqwest::Client::new()
        .post(app.url(&format!("/api/v1/endpoints/{endpoint}/actions")))
        .bearer_auth(token)
        .json(body)
        .send()
        .await
        .unwrap()
}

#[tokio::test]
async fn automation_runs_a_machine_action_once_and_follows_it_to_the_end() {
    let (app, sim, admin) = crate::actions::synced().await;
    let doc = openapi(&app).await;
    let operator = app.token(Role::Operator).await;
    let analyst = app.token(Role::Analyst).await;
    let (endpoint, machine) = crate::actions::endpoint_of(&app, &["Windows10", "Windows11"], true).await;
    let path = "/api/v1/endpoints/{id}/actions";
    let scan = json!({"action": "scan", "scope": "Quick", "comment": "SOAR playbook 12", "idempotency_key": "soar-run-0000000012"});

    // Refusals send nothing.
    let res = start_action(&app, &analyst, endpoint, &scan).await;
    assert_eq!(res.status(), 403);
    conforms(&doc, "post", path, res).await;
    let res = reqwest::Client::new()
        .post(app.url(&format!("/api/v1/endpoints/{endpoint}/actions")))
        .json(&scan)
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 401);
    for bad in [
        json!({"action": "isolate", "scope": "Full", "comment": "no confirmation"}),
        json!({"action": "scan", "scope": "Quick", "comment": ""}),
        json!({"action": "reboot", "comment": "x"}),
        json!({"action": "scan", "scope": "Quick", "comment": "x", "idempotency_key": "short"}),
        json!({"action": "scan", "scope": "Quick", "comment": "x", "comments": "typo"}),
        json!(["scan"]),
    ] {
        let res = start_action(&app, &operator, endpoint, &bad).await;
        assert_eq!(res.status(), 400, "{bad}");
        conforms(&doc, "post", path, res).await;
    }
    assert_eq!(scans_sent(&sim), 0);

    // One request to Defender, also when the automation retries with the same key.
    let res = start_action(&app, &operator, endpoint, &scan).await;
    assert_eq!(res.status(), 202);
    let action = conforms(&doc, "post", path, res).await;
    assert_eq!(
        (action["action_type"].as_str(), action["machine_id"].as_str()),
        (Some("RunAntiVirusScan"), Some(machine.as_str()))
    );
    assert_eq!(action["requested_by"], "token:test-operator");
    let again = conforms(&doc, "post", path, start_action(&app, &operator, endpoint, &scan).await).await;
    assert_eq!(again["id"], action["id"], "the same key answers with the same action");
    assert_eq!(scans_sent(&sim), 1);

    // Another action while this one is open: 409 with the open one.
    let other = json!({"action": "scan", "scope": "Full", "comment": "second"});
    let res = start_action(&app, &operator, endpoint, &other).await;
    if res.status() == 409 {
        let conflict = conforms(&doc, "post", path, res).await;
        assert_eq!(conflict["action"]["id"], action["id"]);
        assert_eq!(scans_sent(&sim), 1);
    } else {
        // The simulator finished the first one already (its actions last 400 ms).
        assert_eq!(res.status(), 202);
    }

    // Followed to its end with any role's token.
    let id = action["id"].as_i64().unwrap();
    let mut last = Value::Null;
    for _ in 0..100 {
        let res = reqwest::Client::new().get(app.url(&format!("/api/v1/actions/{id}"))).bearer_auth(&analyst).send();
        last = conforms(&doc, "get", "/api/v1/actions/{id}", res.await.unwrap()).await;
        if last["open"] == false {
            break;
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    assert_eq!(last["status"], "Succeeded", "{last}");
    let res =
        reqwest::Client::new().get(app.url(&format!("/api/v1/endpoints/{endpoint}/actions"))).bearer_auth(&analyst);
    let listed = conforms(&doc, "get", path, res.send().await.unwrap()).await;
    let items = listed["items"].as_array().unwrap();
    let ids: Vec<i64> = items.iter().map(|a| a["id"].as_i64().unwrap()).collect();
    assert!(ids.windows(2).all(|w| w[0] > w[1]), "newest first: {ids:?}");
    let first = items.iter().find(|a| a["id"] == action["id"]).expect("the action is listed");
    assert_eq!(first["status"], "Succeeded");
    let res = reqwest::Client::new().get(app.url("/api/v1/endpoints/424242/actions")).bearer_auth(&analyst).send();
    let res = res.await.unwrap();
    assert_eq!(res.status(), 404);
    conforms(&doc, "get", path, res).await;
    let res = reqwest::Client::new().get(app.url("/api/v1/actions/424242")).bearer_auth(&admin).send().await.unwrap();
    assert_eq!(res.status(), 404);
    conforms(&doc, "get", "/api/v1/actions/{id}", res).await;
}

/// Every API error is RFC 9457 Problem Details, the same shape on every route: a stable `type`,
/// the reason as `title`, the `status`, a plain-words `detail` (and `errors` per field).
#[tokio::test]
async fn errors_are_problem_details_on_every_route() {
    let app = spawn_app().await;
    let token = app.token(Role::Admin).await;
    let client = reqwest::Client::new();
    let answers = [
        (client.get(app.url("/api/v1/endpoints/999999")).bearer_auth(&token), 404, "not_found"),
        (client.get(app.url("/api/v1/endpoints")), 401, "unauthorized"),
        (client.get(app.url("/api/v1/no-such-route")).bearer_auth(&token), 404, "not_found"),
        (client.get(app.url("/api/v1/endpoints?risk=Purple")).bearer_auth(&token), 400, "bad_request"),
        (
            client.put(app.url("/api/v1/integrations/defender")).bearer_auth(&token).json(&json!({"tenant_id": "x"})),
            400,
            "invalid_settings",
        ),
    ];
    for (request, status, code) in answers {
        let res = request.send().await.unwrap();
        assert_eq!(res.status().as_u16(), status);
        let kind = res.headers()["content-type"].to_str().unwrap().to_owned();
        assert_eq!(kind, "application/problem+json", "{code}");
        let body: Value = res.json().await.unwrap();
        assert_eq!(body["type"], format!("urn:endpoint-analytics:problem:{code}"), "{body}");
        assert_eq!(body["status"], status, "{body}");
        assert!(body["title"].as_str().is_some_and(|t| !t.is_empty()), "{body}");
        assert!(body["detail"].as_str().is_some_and(|t| !t.is_empty()), "{body}");
        assert_eq!(body["error"]["code"], code, "the first versions' shape stays: {body}");
        if code == "invalid_settings" {
            assert!(body["errors"].as_object().is_some_and(|e| !e.is_empty()), "field errors: {body}");
        }
    }
}

/// The endpoint resources are a contract, not database rows: no JSON hidden inside a string,
/// times in RFC 3339, the Defender machine as an object, and the next page in a `Link` header.
#[tokio::test]
async fn endpoints_carry_no_json_in_strings_and_link_their_next_page() {
    fn strings_with_json(v: &Value, at: &str, found: &mut Vec<String>) {
        match v {
            Value::String(s)
                if (s.starts_with('{') || s.starts_with('[')) && serde_json::from_str::<Value>(s).is_ok() =>
            {
                found.push(format!("{at}: {s}"))
            }
            Value::Array(a) => {
                a.iter().enumerate().for_each(|(i, x)| strings_with_json(x, &format!("{at}[{i}]"), found))
            }
            Value::Object(o) => o.iter().for_each(|(k, x)| strings_with_json(x, &format!("{at}.{k}"), found)),
            _ => {}
        }
    }
    let (app, _sim, token, _) = crate::defender_sync::synced(30).await;
    let res =
        reqwest::Client::new().get(app.url("/api/v1/endpoints?limit=5")).bearer_auth(&token).send().await.unwrap();
    let link = res.headers().get("link").map(|v| v.to_str().unwrap().to_owned()).expect("a Link header");
    let list: Value = res.json().await.unwrap();
    let next = list["next"].as_str().unwrap();
    assert!(
        link.starts_with("</api/v1/endpoints?") && link.ends_with(">; rel=\"next\"") && link.contains("limit=5"),
        "{link}"
    );
    assert!(
        link.contains(&format!("after={}", url::form_urlencoded::byte_serialize(next.as_bytes()).collect::<String>())),
        "{link}"
    );
    let with_machine = list["items"].as_array().unwrap().iter().find(|e| e["defender"].is_object());
    let id = with_machine.map(|e| e["id"].as_i64().unwrap()).unwrap_or(list["items"][0]["id"].as_i64().unwrap());
    let detail = app.api_get(&token, &format!("/api/v1/endpoints/{id}")).await;
    let mut found = Vec::new();
    strings_with_json(&list, "list", &mut found);
    strings_with_json(&detail, "detail", &mut found);
    assert!(found.is_empty(), "JSON inside strings: {found:?}");
    let seen = detail["last_seen"].as_str().unwrap();
    assert!(chrono::DateTime::parse_from_rfc3339(seen).is_ok(), "{seen}");
    if with_machine.is_some() {
        assert!(detail["defender"]["links"]["overview"].as_str().unwrap().starts_with("https://"), "{detail}");
        assert!(
            ["isolated", "not_isolated", "unknown"]
                .contains(&detail["defender"]["isolation"]["state"].as_str().unwrap())
        );
    }
}

#[tokio::test]
async fn automation_restricts_collects_and_is_sent_to_the_package() {
    let (app, sim, _) = crate::actions::synced().await;
    let doc = openapi(&app).await;
    let (operator, analyst) = (app.token(Role::Operator).await, app.token(Role::Analyst).await);
    let (endpoint, _) = crate::actions::endpoint_of(&app, &["Windows11"], true).await;
    let path = "/api/v1/endpoints/{id}/actions";
    let package = "/api/v1/actions/{id}/package";
    let get = |token: &str, id: i64| {
        script_client().get(app.url(&format!("/api/v1/actions/{id}/package"))).bearer_auth(token).send()
    };

    // Restricting needs the confirmation isolating needs; an analyst may not.
    let restrict = json!({"action": "restrict", "comment": "alert 1234"});
    let res = start_action(&app, &operator, endpoint, &restrict).await;
    assert_eq!(res.status(), 400);
    assert!(conforms(&doc, "post", path, res).await["detail"].as_str().unwrap().contains("signed by Microsoft"));
    let confirmed = json!({"action": "restrict", "comment": "alert 1234", "confirm": true});
    let res = start_action(&app, &analyst, endpoint, &confirmed).await;
    assert_eq!(res.status(), 403);
    conforms(&doc, "post", path, res).await;
    assert_eq!(sim.counters().api("RestrictCodeExecution").calls, 0);
    let res = start_action(&app, &operator, endpoint, &confirmed).await;
    assert_eq!(res.status(), 202);
    let restricted = conforms(&doc, "post", path, res).await;
    assert_eq!(restricted["action_type"], "RestrictCodeExecution");
    let wait = |id: i64| {
        let (app, analyst) = (&app, analyst.clone());
        async move {
            for _ in 0..100 {
                let a = app.api_get(&analyst, &format!("/api/v1/actions/{id}")).await;
                if a["open"] == false {
                    return a["status"].as_str().unwrap().to_owned();
                }
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
            panic!("action {id} stayed open");
        }
    };
    assert_eq!(wait(restricted["id"].as_i64().unwrap()).await, "Succeeded");

    // Collect, then the package: 409 while the collection runs, 403 for an analyst, then 303.
    let res = start_action(&app, &operator, endpoint, &json!({"action": "collect", "comment": "forensics"})).await;
    assert_eq!(res.status(), 202);
    let collected = conforms(&doc, "post", path, res).await;
    assert_eq!(collected["action_type"], "CollectInvestigationPackage");
    let id = collected["id"].as_i64().unwrap();
    let res = get(&operator, id).await.unwrap();
    assert_eq!(res.status(), 409);
    conforms(&doc, "get", package, res).await;
    let res = get(&analyst, id).await.unwrap();
    assert_eq!(res.status(), 403);
    conforms(&doc, "get", package, res).await;
    assert_eq!(wait(id).await, "Succeeded");
    let res = get(&operator, id).await.unwrap();
    assert_eq!(res.status(), 303);
    assert!(doc["paths"][package]["get"]["responses"]["303"]["headers"]["Location"].is_object());
    let link = res.headers()["location"].to_str().unwrap().to_owned();
    assert_eq!(&reqwest::get(&link).await.unwrap().bytes().await.unwrap()[..4], b"PK\x03\x04");
    // A restriction collected nothing: 404.
    let res = get(&operator, restricted["id"].as_i64().unwrap()).await.unwrap();
    assert_eq!(res.status(), 404);
    conforms(&doc, "get", package, res).await;
    assert_eq!(sim.counters().api("GetPackageUri").calls, 1, "Defender was asked once, for the one download");
}
