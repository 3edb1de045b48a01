//! Every route of the application against every kind of caller: anonymous, a signed-in
//! analyst, operator and admin, and an API token of each role. The routes come from
//! `web::ROUTES`, so a route added later without a row in [`expectation`] fails the test.
//!
//! Each refused request is also checked to have caused no request to Defender (the simulator's
//! counters do not move) and to carry the security headers; every state-changing browser route
//! is checked to refuse a missing or wrong CSRF token and a cross-site request.

use defender_sim::{RunningSimulator, SimConfig};
use endpoint_analytics::auth::Role;
use endpoint_analytics::web::ROUTES;

use crate::helpers::*;

/// Who may use a route.
#[derive(Debug, Clone, Copy, PartialEq)]
enum Access {
    /// Anyone, signed in or not.
    Public,
    /// A signed-in person of at least this role (pages; the session cookie).
    Page(Role),
    /// An API token of at least this role (`Authorization: Bearer`; never the cookie).
    Api(Role),
}

/// What a route is called with in this test, and what a caller who may use it gets.
struct Expect {
    /// The path with its parameters filled in.
    path: String,
    access: Access,
    /// The status an allowed caller gets with `body`. Bodies of state-changing routes are
    /// deliberately incomplete or aim at a missing id, so that an allowed call changes nothing
    /// and the same request can be repeated for every role.
    ok: u16,
    /// An urlencoded form (pages) or JSON (API) body.
    body: &'static str,
}

/// An id that exists in no table.
const MISSING: i64 = 987_654;

/// One row per route. New routes need a row here (the test names the ones missing).
fn expectation(method: &str, pattern: &str, endpoint: i64) -> Option<Expect> {
    use Access::*;
    let e = |path: String, access, ok, body| Some(Expect { path, access, ok, body });
    let p = |s: &str| s.to_owned();
    match (method, pattern) {
        ("get", "/static/{file}") => e(p("/static/app.css"), Public, 200, ""),
        ("get", "/healthz") => e(p("/healthz"), Public, 200, ""),
        ("get", "/readyz") => e(p("/readyz"), Public, 200, ""),
        ("get", "/login") => e(p("/login"), Public, 200, ""),
        // The form lacks its fields: 400, and nobody is signed in or out.
        ("post", "/login") => e(p("/login"), Public, 400, "username="),
        // Sign-in with Microsoft is not configured here: back to the sign-in page with the reason.
        ("get", "/login/entra") => e(p("/login/entra"), Public, 303, ""),
        ("get", "/login/entra/callback") => e(p("/login/entra/callback?code=x&state=forged"), Public, 303, ""),
        // Checked last, separately: it ends the session.
        ("post", "/logout") => None,
        ("get", "/") => e(p("/"), Page(Role::Analyst), 200, ""),
        ("get", "/endpoints") => e(p("/endpoints"), Page(Role::Analyst), 200, ""),
        ("get", "/coverage") => e(p("/coverage"), Page(Role::Analyst), 200, ""),
        ("get", "/endpoints.csv") => e(p("/endpoints.csv"), Page(Role::Analyst), 200, ""),
        // Not multipart: 400 once the role is known.
        ("post", "/endpoints/import") => e(p("/endpoints/import"), Page(Role::Operator), 400, "file=x"),
        ("get", "/endpoints/{id}") => e(format!("/endpoints/{endpoint}"), Page(Role::Analyst), 200, ""),
        ("get", "/endpoints/{id}/tabs/{tab}") => {
            e(format!("/endpoints/{endpoint}/tabs/risk"), Page(Role::Analyst), 200, "")
        }
        ("post", "/endpoints/{id}/actions") => {
            e(format!("/endpoints/{endpoint}/actions"), Page(Role::Operator), 400, "action=isolate")
        }
        ("get", "/actions/{id}") => e(format!("/actions/{MISSING}"), Page(Role::Analyst), 404, ""),
        // No such action: 404, Defender is not asked.
        ("get", "/actions/{id}/package") => e(format!("/actions/{MISSING}/package"), Page(Role::Operator), 404, ""),
        ("get", "/config/integrations") => e(p("/config/integrations"), Page(Role::Analyst), 200, ""),
        ("get", "/config/integrations/defender") => {
            e(p("/config/integrations/defender"), Page(Role::Operator), 200, "")
        }
        // Invalid settings: the form comes back with its messages, nothing saved.
        ("post", "/config/integrations/defender") => {
            e(p("/config/integrations/defender"), Page(Role::Admin), 400, "tenant_id=x")
        }
        ("post", "/config/integrations/defender/test") => {
            e(p("/config/integrations/defender/test"), Page(Role::Operator), 200, "tenant_id=x")
        }
        ("post", "/config/integrations/defender/review") => {
            e(p("/config/integrations/defender/review"), Page(Role::Admin), 400, "decision=merge")
        }
        ("get", "/config/integrations/defender/sync") => {
            e(p("/config/integrations/defender/sync"), Page(Role::Operator), 200, "")
        }
        // The integration is disabled: the page says so, no sync starts.
        ("post", "/config/integrations/defender/sync") => {
            e(p("/config/integrations/defender/sync"), Page(Role::Operator), 200, "")
        }
        // Nothing is held: the page says so, no sync starts.
        ("post", "/config/integrations/defender/confirm-stale") => {
            e(p("/config/integrations/defender/confirm-stale"), Page(Role::Admin), 200, "")
        }
        ("get", "/config/profiles") => e(p("/config/profiles"), Page(Role::Analyst), 200, ""),
        ("get", "/config/profiles/remodel") => e(p("/config/profiles/remodel"), Page(Role::Analyst), 200, ""),
        // Starts a re-model (harmless here) and sends the admin back to the Profiles page.
        ("post", "/config/profiles/remodel") => e(p("/config/profiles/remodel"), Page(Role::Admin), 303, ""),
        ("post", "/config/profiles/{id}/enabled") => {
            e(format!("/config/profiles/{MISSING}/enabled"), Page(Role::Admin), 400, "")
        }
        // An empty tag clears the mapping of a profile that does not exist.
        ("post", "/config/profiles/{id}/defender-tag") => {
            e(format!("/config/profiles/{MISSING}/defender-tag"), Page(Role::Admin), 404, "")
        }
        ("get", "/config/sso") => e(p("/config/sso"), Page(Role::Admin), 200, ""),
        // Invalid settings: the form comes back with its messages, nothing saved.
        ("post", "/config/sso") => e(p("/config/sso"), Page(Role::Admin), 400, "tenant_id=x"),
        ("get", "/users") => e(p("/users"), Page(Role::Admin), 200, ""),
        ("post", "/users") => e(p("/users"), Page(Role::Admin), 400, "username=x"),
        ("post", "/users/{id}/role") => e(format!("/users/{MISSING}/role"), Page(Role::Admin), 400, ""),
        ("post", "/users/{id}/disabled") => e(format!("/users/{MISSING}/disabled"), Page(Role::Admin), 400, ""),
        ("post", "/users/{id}/password") => e(format!("/users/{MISSING}/password"), Page(Role::Admin), 400, ""),
        ("get", "/tokens") => e(p("/tokens"), Page(Role::Admin), 200, ""),
        ("post", "/tokens") => e(p("/tokens"), Page(Role::Admin), 400, "name="),
        ("post", "/tokens/{id}/revoke") => e(format!("/tokens/{MISSING}/revoke"), Page(Role::Admin), 404, ""),
        ("get", "/notifications") => e(p("/notifications"), Page(Role::Admin), 200, ""),
        ("post", "/notifications") => e(p("/notifications"), Page(Role::Admin), 400, "name="),
        ("get", "/notifications/{id}") => e(format!("/notifications/{MISSING}"), Page(Role::Admin), 404, ""),
        ("post", "/notifications/{id}") => e(format!("/notifications/{MISSING}"), Page(Role::Admin), 404, "name=x"),
        ("post", "/notifications/{id}/test") => e(format!("/notifications/{MISSING}/test"), Page(Role::Admin), 404, ""),
        ("post", "/notifications/{id}/delete") => {
            e(format!("/notifications/{MISSING}/delete"), Page(Role::Admin), 404, "")
        }
        ("get", "/audit") => e(p("/audit"), Page(Role::Admin), 200, ""),
        ("post", "/api/v1/observations") => e(p("/api/v1/observations"), Api(Role::Operator), 400, "{}"),
        ("get", "/rules") => e(p("/rules"), Page(Role::Admin), 200, ""),
        ("post", "/rules") => e(p("/rules"), Page(Role::Admin), 400, "name="),
        // An empty condition: the fragment says what is missing.
        ("post", "/rules/dry-run") => e(p("/rules/dry-run"), Page(Role::Admin), 200, ""),
        // Resumes the rules (they are not paused): back to the page.
        ("post", "/rules/pause") => e(p("/rules/pause"), Page(Role::Admin), 303, ""),
        ("post", "/rules/{id}/dry-run") => e(format!("/rules/{MISSING}/dry-run"), Page(Role::Admin), 404, ""),
        ("post", "/rules/{id}/enable") => e(format!("/rules/{MISSING}/enable"), Page(Role::Admin), 404, ""),
        ("post", "/rules/{id}/disable") => e(format!("/rules/{MISSING}/disable"), Page(Role::Admin), 404, ""),
        ("post", "/rules/{id}/delete") => e(format!("/rules/{MISSING}/delete"), Page(Role::Admin), 404, ""),
        ("get", "/rules/{id}/edit") => e(format!("/rules/{MISSING}/edit"), Page(Role::Admin), 404, ""),
        // A valid change of a rule that is not there.
        ("post", "/rules/{id}") => e(
            format!("/rules/{MISSING}"),
            Page(Role::Admin),
            404,
            "name=x&min_alert=High&action=send_event&cooldown_minutes=60",
        ),
        ("get", "/approvals") => e(p("/approvals"), Page(Role::Operator), 200, ""),
        ("post", "/approvals/{id}/approve") => {
            e(format!("/approvals/{MISSING}/approve"), Page(Role::Operator), 404, "")
        }
        ("post", "/approvals/{id}/decline") => {
            e(format!("/approvals/{MISSING}/decline"), Page(Role::Operator), 404, "reason=x")
        }
        ("get", "/api/v1/rules") => e(p("/api/v1/rules"), Api(Role::Admin), 200, ""),
        ("get", "/api/v1/profiles/defender-tags") => e(p("/api/v1/profiles/defender-tags"), Api(Role::Admin), 200, ""),
        ("put", "/api/v1/profiles/{id}/defender-tag") => {
            e(format!("/api/v1/profiles/{MISSING}/defender-tag"), Api(Role::Admin), 400, "{}")
        }
        ("delete", "/api/v1/profiles/{id}/defender-tag") => {
            e(format!("/api/v1/profiles/{MISSING}/defender-tag"), Api(Role::Admin), 404, "")
        }
        ("post", "/api/v1/rules") => e(p("/api/v1/rules"), Api(Role::Admin), 400, "{}"),
        ("post", "/api/v1/rules/dry-run") => e(p("/api/v1/rules/dry-run"), Api(Role::Admin), 400, "{}"),
        ("get", "/api/v1/rules/pause") => e(p("/api/v1/rules/pause"), Api(Role::Admin), 200, ""),
        ("put", "/api/v1/rules/pause") => e(p("/api/v1/rules/pause"), Api(Role::Admin), 400, "{}"),
        ("get", "/api/v1/rules/{id}") => e(format!("/api/v1/rules/{MISSING}"), Api(Role::Admin), 404, ""),
        ("put", "/api/v1/rules/{id}") => e(format!("/api/v1/rules/{MISSING}"), Api(Role::Admin), 400, "{}"),
        ("delete", "/api/v1/rules/{id}") => e(format!("/api/v1/rules/{MISSING}"), Api(Role::Admin), 404, ""),
        ("post", "/api/v1/rules/{id}/dry-run") => {
            e(format!("/api/v1/rules/{MISSING}/dry-run"), Api(Role::Admin), 404, "")
        }
        ("post", "/api/v1/rules/{id}/enable") => {
            e(format!("/api/v1/rules/{MISSING}/enable"), Api(Role::Admin), 404, "")
        }
        ("post", "/api/v1/rules/{id}/disable") => {
            e(format!("/api/v1/rules/{MISSING}/disable"), Api(Role::Admin), 404, "")
        }
        ("get", "/api/v1/approvals") => e(p("/api/v1/approvals"), Api(Role::Operator), 200, ""),
        ("post", "/api/v1/approvals/{id}/approve") => {
            e(format!("/api/v1/approvals/{MISSING}/approve"), Api(Role::Operator), 404, "")
        }
        ("post", "/api/v1/approvals/{id}/decline") => {
            e(format!("/api/v1/approvals/{MISSING}/decline"), Api(Role::Operator), 404, r#"{"reason":"x"}"#)
        }
        ("get", "/api/v1/destinations") => e(p("/api/v1/destinations"), Api(Role::Admin), 200, ""),
        // Settings missing: 400, nothing created.
        ("post", "/api/v1/destinations") => e(p("/api/v1/destinations"), Api(Role::Admin), 400, "{}"),
        ("put", "/api/v1/destinations/{id}") => {
            e(format!("/api/v1/destinations/{MISSING}"), Api(Role::Admin), 404, "{}")
        }
        ("patch", "/api/v1/destinations/{id}") => {
            e(format!("/api/v1/destinations/{MISSING}"), Api(Role::Admin), 404, "{}")
        }
        ("delete", "/api/v1/destinations/{id}") => {
            e(format!("/api/v1/destinations/{MISSING}"), Api(Role::Admin), 404, "")
        }
        ("post", "/api/v1/destinations/{id}/test") => {
            e(format!("/api/v1/destinations/{MISSING}/test"), Api(Role::Admin), 404, "")
        }
        ("get", "/api/v1/destinations/{id}/deliveries") => {
            e(format!("/api/v1/destinations/{MISSING}/deliveries"), Api(Role::Admin), 404, "")
        }
        ("put", "/api/v1/integrations/defender") => {
            e(p("/api/v1/integrations/defender"), Api(Role::Admin), 400, "{\"tenant_id\": \"x\"}")
        }
        ("post", "/api/v1/integrations/defender/test") => {
            e(p("/api/v1/integrations/defender/test"), Api(Role::Operator), 200, "")
        }
        // Disabled: 400 "enable and save first".
        ("post", "/api/v1/integrations/defender/sync") => {
            e(p("/api/v1/integrations/defender/sync"), Api(Role::Operator), 400, "")
        }
        ("get", "/api/v1/integrations/defender/status") => {
            e(p("/api/v1/integrations/defender/status"), Api(Role::Analyst), 200, "")
        }
        ("get", "/api/v1/endpoints") => e(p("/api/v1/endpoints"), Api(Role::Analyst), 200, ""),
        ("get", "/api/v1/coverage") => e(p("/api/v1/coverage"), Api(Role::Analyst), 200, ""),
        ("get", "/api/v1/endpoints/{id}/risk-history") => {
            e(format!("/api/v1/endpoints/{endpoint}/risk-history"), Api(Role::Analyst), 200, "")
        }
        ("get", "/api/v1/risk/summary") => e(p("/api/v1/risk/summary"), Api(Role::Analyst), 200, ""),
        ("get", "/api/v1/endpoints.csv") => e(p("/api/v1/endpoints.csv"), Api(Role::Analyst), 200, ""),
        ("get", "/api/v1/endpoints/{id}") => e(format!("/api/v1/endpoints/{endpoint}"), Api(Role::Analyst), 200, ""),
        ("get", "/api/v1/endpoints/{id}/actions") => {
            e(format!("/api/v1/endpoints/{endpoint}/actions"), Api(Role::Analyst), 200, "")
        }
        // Not an action: 400, nothing sent.
        ("post", "/api/v1/endpoints/{id}/actions") => {
            e(format!("/api/v1/endpoints/{endpoint}/actions"), Api(Role::Operator), 400, "{\"action\": \"reboot\"}")
        }
        ("get", "/api/v1/actions/{id}") => e(format!("/api/v1/actions/{MISSING}"), Api(Role::Analyst), 404, ""),
        ("get", "/api/v1/actions/{id}/package") => {
            e(format!("/api/v1/actions/{MISSING}/package"), Api(Role::Operator), 404, "")
        }
        ("get", "/api/v1/openapi.json") => e(p("/api/v1/openapi.json"), Public, 200, ""),
        // No scraper address is allowed here: only an Admin API token reads the metrics.
        ("get", "/metrics") => e(p("/metrics"), Api(Role::Admin), 200, ""),
        _ => None,
    }
}

/// A kind of caller.
#[derive(Debug, Clone, Copy, PartialEq)]
enum Caller {
    Anonymous,
    Person(Role),
    Token(Role),
}

const CALLERS: [Caller; 7] = [
    Caller::Anonymous,
    Caller::Person(Role::Analyst),
    Caller::Person(Role::Operator),
    Caller::Person(Role::Admin),
    Caller::Token(Role::Analyst),
    Caller::Token(Role::Operator),
    Caller::Token(Role::Admin),
];

/// What `caller` gets from a route of this access and method.
fn expected_status(access: Access, method: &str, ok: u16, caller: Caller) -> u16 {
    let safe = method == "get";
    match (access, caller) {
        // A script has no session, so it has no CSRF token to send with a state change.
        (Access::Public | Access::Page(_), Caller::Token(_)) if !safe => 403,
        (Access::Public, _) => ok,
        // A visitor without a session has a CSRF token for the sign-in form only.
        (Access::Page(_), Caller::Anonymous) if !safe => 403,
        // Pages know only the session: a visitor without one is sent to sign in.
        (Access::Page(_), Caller::Anonymous | Caller::Token(_)) => 303,
        (Access::Page(need), Caller::Person(r)) => {
            if r.allows(need) {
                ok
            } else {
                403
            }
        }
        // The API knows only bearer tokens: the cookie is not a credential there.
        (Access::Api(_), Caller::Anonymous | Caller::Person(_)) => 401,
        (Access::Api(need), Caller::Token(r)) => {
            if r.allows(need) {
                ok
            } else {
                403
            }
        }
    }
}

struct Callers {
    anonymous: reqwest::Client,
    people: Vec<(Role, reqwest::Client)>,
    tokens: Vec<(Role, String)>,
}

impl Callers {
    async fn new(app: &TestApp) -> Self {
        let anonymous = browser();
        let mut people = Vec::new();
        for (name, role) in [("ann", Role::Analyst), ("otto", Role::Operator), ("ada", Role::Admin)] {
            people.push((role, app.login_as(name, role).await));
        }
        let mut tokens = Vec::new();
        for role in [Role::Analyst, Role::Operator, Role::Admin] {
            tokens.push((role, app.token(role).await));
        }
        Callers { anonymous, people, tokens }
    }

    fn person(&self, role: Role) -> &reqwest::Client {
        &self.people.iter().find(|(r, _)| *r == role).unwrap().1
    }

    /// Sends the request as `caller` would: a browser with its session and its CSRF token (as
    /// htmx sends it), or a script with its bearer token and no cookie.
    async fn send(&self, app: &TestApp, caller: Caller, method: &str, e: &Expect) -> reqwest::Response {
        let api = e.path.starts_with("/api/");
        let m = reqwest::Method::from_bytes(method.to_ascii_uppercase().as_bytes()).unwrap();
        let mut req = match caller {
            Caller::Anonymous => self.anonymous.request(m.clone(), app.url(&e.path)),
            Caller::Person(r) => self.person(r).request(m.clone(), app.url(&e.path)),
            Caller::Token(r) => {
                let token = &self.tokens.iter().find(|(t, _)| *t == r).unwrap().1;
                script_client().request(m.clone(), app.url(&e.path)).bearer_auth(token)
            }
        };
        if m != reqwest::Method::GET {
            let session = match caller {
                Caller::Anonymous => Some(&self.anonymous),
                Caller::Person(r) => Some(self.person(r)),
                Caller::Token(_) => None,
            };
            if let Some(client) = session
                && !api
            {
                req = req.header("x-csrf-token", app.csrf(client, "/login").await);
            }
            let content_type = if api { "application/json" } else { "application/x-www-form-urlencoded" };
            req = req.header("content-type", content_type).body(e.body);
        }
        req.send().await.unwrap()
    }
}

fn assert_security_headers(res: &reqwest::Response, what: &str) {
    let h = res.headers();
    for name in [
        "content-security-policy",
        "x-content-type-options",
        "x-frame-options",
        "referrer-policy",
        "strict-transport-security",
    ] {
        assert!(h.contains_key(name), "{what}: no {name} header");
    }
    assert!(h["content-security-policy"].to_str().unwrap().contains("frame-ancestors 'none'"), "{what}");
}

/// An app with a configured but disabled integration (nothing syncs on its own) and one
/// endpoint from Defender, plus the callers.
async fn setup() -> (TestApp, RunningSimulator, Callers, i64) {
    let app = spawn_app().await;
    let sim = defender_sim::start(SimConfig { machines: 50, ..SimConfig::default() }).await.unwrap();
    app.enable_defender(&sim).await;
    let run = app.wait_for_sync(std::time::Duration::from_secs(30)).await;
    assert_eq!(run.status, "succeeded", "{}", run.error);
    let mut off = defender_settings(&sim);
    off.enabled = false;
    app.enable_defender_with(off).await;
    let callers = Callers::new(&app).await;
    let admin = &callers.tokens.iter().find(|(r, _)| *r == Role::Admin).unwrap().1;
    let list = app.api_get(admin, "/api/v1/endpoints?limit=1").await;
    let endpoint = list["items"][0]["id"].as_i64().expect("an endpoint");
    (app, sim, callers, endpoint)
}

#[tokio::test]
async fn every_route_answers_every_kind_of_caller_as_its_role_allows() {
    let (app, sim, callers, endpoint) = setup().await;
    let missing: Vec<String> = ROUTES
        .iter()
        .filter(|(m, p)| expectation(m, p, endpoint).is_none() && (*m, *p) != ("post", "/logout"))
        .map(|(m, p)| format!("{m} {p}"))
        .collect();
    assert!(missing.is_empty(), "routes without an expectation in tests/it/routes.rs: {missing:?}");

    let mut failures = Vec::new();
    for (method, pattern) in ROUTES.iter().filter(|r| **r != ("post", "/logout")) {
        let e = expectation(method, pattern, endpoint).unwrap();
        for caller in CALLERS {
            let want = expected_status(e.access, method, e.ok, caller);
            let before = sim.counters().total_calls;
            let res = callers.send(&app, caller, method, &e).await;
            let what = format!("{} {} as {caller:?}", method.to_uppercase(), e.path);
            assert_security_headers(&res, &what);
            let got = res.status().as_u16();
            if got != want {
                failures.push(format!("{what}: {got}, expected {want}"));
            }
            if want == 303 && got == 303 && e.ok != 303 {
                let to = res.headers()["location"].to_str().unwrap_or_default().to_owned();
                assert!(to.starts_with("/login"), "{what} redirects to {to}");
            }
            if matches!(want, 401 | 403 | 303) && !matches!(e.access, Access::Public) {
                // A refused request never reaches Defender.
                assert_eq!(sim.counters().total_calls, before, "{what} was refused yet reached Defender");
            }
        }
    }
    assert!(failures.is_empty(), "{} unexpected statuses:\n{}", failures.len(), failures.join("\n"));

    // Signing out works for everyone who is signed in, and leaves the others as they were.
    for (role, client) in &callers.people {
        let res = app.post_form(client, "/logout", &[]).await;
        assert_eq!(res.status(), 303, "{role:?} signs out");
        assert_eq!(client.get(app.url("/")).send().await.unwrap().status(), 303, "{role:?} is signed out");
    }
}

#[tokio::test]
async fn every_state_changing_page_route_refuses_forged_and_cross_site_requests() {
    let (app, sim, callers, endpoint) = setup().await;
    // The admin may do everything: only the CSRF check can refuse.
    let admin = callers.person(Role::Admin);
    let csrf = app.csrf(admin, "/").await;
    let state_changing = ROUTES.iter().filter(|(m, p)| *m != "get" && !p.starts_with("/api/"));
    let mut checked = 0;
    for (method, pattern) in state_changing {
        let path = match expectation(method, pattern, endpoint) {
            Some(e) => e.path,
            None => pattern.to_string(),
        };
        let form = "csrf_token=";
        let attempts: Vec<(&str, reqwest::RequestBuilder)> = vec![
            ("no token", admin.post(app.url(&path)).header("content-type", "application/x-www-form-urlencoded")),
            (
                "a wrong token in the form",
                admin
                    .post(app.url(&path))
                    .header("content-type", "application/x-www-form-urlencoded")
                    .body(format!("{form}forged")),
            ),
            ("a wrong token in the header", admin.post(app.url(&path)).header("x-csrf-token", "forged")),
            (
                "a cross-site origin",
                admin.post(app.url(&path)).header("x-csrf-token", &csrf).header("origin", "https://evil.example"),
            ),
            (
                "a cross-site fetch",
                admin.post(app.url(&path)).header("x-csrf-token", &csrf).header("sec-fetch-site", "cross-site"),
            ),
            (
                "a same-site fetch from another origin",
                admin.post(app.url(&path)).header("x-csrf-token", &csrf).header("sec-fetch-site", "same-site"),
            ),
        ];
        for (what, req) in attempts {
            let before = sim.counters().total_calls;
            let res = req.send().await.unwrap();
            assert_eq!(res.status(), 403, "{method} {path} with {what}");
            assert_security_headers(&res, &format!("{method} {path}"));
            assert_eq!(sim.counters().total_calls, before, "{method} {path} with {what} reached Defender");
        }
        checked += 1;
    }
    assert!(checked >= 15, "only {checked} state-changing routes");
    // The admin is still signed in: none of the refused sign-outs took effect.
    assert_eq!(admin.get(app.url("/users")).send().await.unwrap().status(), 200);
}
