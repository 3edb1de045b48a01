//! Sign-in with Microsoft Entra ID against the simulator's OpenID Connect endpoints, over real
//! HTTP: the happy path per role, the link by object id, and every refusal (state, nonce,
//! signature, audience, issuer, tenant, lifetime, unmapped roles, disabled accounts, Entra's
//! own errors). The browser journey is in `journeys.rs`.

use defender_sim::oidc::{ADMIN_APP_ROLE, ANALYSTS_GROUP, OPERATOR_APP_ROLE};
use defender_sim::{Faults, IdTokenFault, RunningSimulator, SimConfig, SimUser};
use diesel::prelude::*;
use endpoint_analytics::auth::Role;
use endpoint_analytics::db::models::users;
use endpoint_analytics::web::forms::sso::SsoInput;
use serde_json::Value;

use crate::helpers::*;

pub async fn sso_simulator() -> RunningSimulator {
    defender_sim::start(SimConfig { machines: 50, ..Default::default() }).await.expect("the simulator starts")
}

/// The product's Entra sign-in settings for `sim`, mapping the simulator's default app roles
/// and analysts group, enabled.
pub fn sso_input(sim: &RunningSimulator) -> SsoInput {
    let info = sim.service_info();
    SsoInput {
        tenant_id: info.tenant_id,
        client_id: info.client_id,
        client_secret: info.client_secret,
        authority: info.base_url,
        admin_values: info.admin_app_role,
        operator_values: info.operator_app_role,
        analyst_values: info.analysts_group,
        enabled: true,
        ..Default::default()
    }
}

/// Saves Entra sign-in settings as an admin saving the form would (they must be accepted).
pub async fn configure_sso(
    db: &endpoint_analytics::db::Db,
    secrets: &endpoint_analytics::secrets::SecretBox,
    input: SsoInput,
) {
    let checked = endpoint_analytics::web::forms::sso::validate(&input)
        .unwrap_or_else(|e| panic!("the sign-in settings were refused: {}", e.summary()));
    let saved =
        endpoint_analytics::sso::configure(db, secrets, checked, "test").await.expect("the settings are stored");
    if let Err(why) = saved {
        panic!("the sign-in settings were refused: {}", why.message());
    }
}

impl TestApp {
    /// Configures and enables Entra sign-in against `sim`, as an admin saving the form would.
    pub async fn enable_sso(&self, sim: &RunningSimulator) {
        configure_sso(&self.db, &self.state.secrets, sso_input(sim)).await;
    }
}

pub(crate) fn location(res: &reqwest::Response) -> String {
    res.headers().get("location").expect("a redirect").to_str().unwrap().to_owned()
}

pub(crate) fn query(url: &str) -> Vec<(String, String)> {
    url::Url::parse(url).unwrap().query_pairs().map(|(k, v)| (k.into_owned(), v.into_owned())).collect()
}

pub(crate) fn param(url: &str, name: &str) -> Option<String> {
    query(url).into_iter().find(|(k, _)| k == name).map(|(_, v)| v)
}

/// Clicks "Sign in with Microsoft" (following to the simulator's page) and returns the
/// authorize address the product sent the browser to.
pub(crate) async fn start(app: &TestApp, client: &reqwest::Client) -> String {
    let res = client.get(app.url("/login/entra?next=/endpoints")).send().await.unwrap();
    assert_eq!(res.status(), 303, "off to Entra");
    location(&res)
}

/// Signs `username` in at the simulator's page (or cancels): the address Entra sends back to.
pub(crate) async fn at_simulator(authorize: &str, username: &str, action: &str) -> String {
    let sim = browser();
    let page = sim.get(authorize).send().await.unwrap();
    assert_eq!(page.status(), 200, "the simulator's sign-in page");
    let mut form = query(authorize);
    form.push(("username".into(), username.into()));
    form.push(("action".into(), action.into()));
    let post_to = authorize.split('?').next().unwrap();
    let res = sim.post(post_to).form(&form).send().await.unwrap();
    assert_eq!(res.status(), 302, "the simulator sends the browser back");
    location(&res)
}

/// The whole way: start, sign in at the simulator, come back. Returns the callback's answer.
pub(crate) async fn sign_in_through_entra(
    app: &TestApp,
    client: &reqwest::Client,
    username: &str,
) -> reqwest::Response {
    let authorize = start(app, client).await;
    let back = at_simulator(&authorize, username, "sign_in").await;
    client.get(back).send().await.unwrap()
}

/// A refused sign-in goes back to `/login`, which shows why (once); returns that text.
async fn refusal(app: &TestApp, client: &reqwest::Client, res: reqwest::Response) -> String {
    assert_eq!(res.status(), 303, "back to the sign-in page");
    let to = location(&res);
    assert!(to.starts_with("/login?next="), "{to}");
    let page = client.get(app.url(&to)).send().await.unwrap();
    assert_eq!(page.status(), 200);
    let html = doc(&page.text().await.unwrap());
    assert_eq!(select_all(&html, "#sign-in-microsoft").len(), 1, "a new attempt is one click away");
    let error = select_all(&html, "#login-form .form-error").concat();
    let again = doc(&client.get(app.url(&to)).send().await.unwrap().text().await.unwrap());
    assert!(select_all(&again, "#login-form .form-error").is_empty(), "the reason is shown once");
    error
}

async fn signed_in_as(app: &TestApp, client: &reqwest::Client) -> Option<(String, String)> {
    let res = client.get(app.url("/")).send().await.unwrap();
    if res.status() != 200 {
        return None;
    }
    let html = doc(&res.text().await.unwrap());
    Some((select_all(&html, "#current-user").concat(), select_all(&html, "header .role").concat()))
}

async fn user_named(app: &TestApp, name: &str) -> Option<users::User> {
    let name = name.to_owned();
    app.db.run(move |c| Ok(users::find_by_name(c, &name)?)).await.unwrap()
}

async fn audit_details(app: &TestApp, action: &str) -> Vec<(String, String, String)> {
    use endpoint_analytics::db::schema::audit_log as a;
    let action = action.to_owned();
    app.db
        .run(move |c| {
            Ok(a::table
                .filter(a::action.eq(action))
                .order(a::id.asc())
                .select((a::actor, a::outcome, a::details))
                .load::<(String, String, String)>(c)?)
        })
        .await
        .unwrap()
}

#[tokio::test]
async fn people_sign_in_through_entra_with_the_role_their_app_roles_or_groups_map_to() {
    let sim = sso_simulator().await;
    let app = spawn_app().await;
    app.enable_sso(&sim).await;
    let login = browser().get(app.url("/login")).send().await.unwrap().text().await.unwrap();
    let href = attr(&doc(&login), "#sign-in-microsoft", "href").expect("a Sign in with Microsoft link");
    assert!(href == "/login/entra?next=/" || href == "/login/entra?next=%2F", "{href}");

    let authorize = {
        let client = browser();
        start(&app, &client).await
    };
    // The authorize request is the authorization code flow with PKCE S256, state and nonce.
    assert!(authorize.starts_with(&format!("{}/{}/oauth2/v2.0/authorize?", sim.base_url, sim.tenant_id)));
    assert_eq!(param(&authorize, "response_type").as_deref(), Some("code"));
    assert_eq!(param(&authorize, "code_challenge_method").as_deref(), Some("S256"));
    assert_eq!(param(&authorize, "client_id").as_deref(), Some(sim.client_id.as_str()));
    assert!(param(&authorize, "scope").unwrap().split(' ').any(|s| s == "openid"));
    assert!(param(&authorize, "state").is_some_and(|s| s.len() >= 16));
    assert!(param(&authorize, "nonce").is_some_and(|s| s.len() >= 16));
    assert_eq!(param(&authorize, "redirect_uri").unwrap(), app.url("/login/entra/callback"));

    for (who, role) in [
        ("adele.admin@contoso.onmicrosoft.com", "Admin"),
        ("omar.operator@contoso.onmicrosoft.com", "Operator"),
        ("ana.analyst@contoso.onmicrosoft.com", "Analyst"),
    ] {
        let client = browser();
        let res = sign_in_through_entra(&app, &client, who).await;
        assert_eq!(res.status(), 303, "{who} is signed in");
        assert_eq!(location(&res), "/endpoints", "back where the sign-in started");
        assert_eq!(signed_in_as(&app, &client).await, Some((who.to_owned(), role.to_owned())));
        let users_page = client.get(app.url("/users")).send().await.unwrap().status();
        assert_eq!(users_page == 200, role == "Admin", "{who} may manage users only as an admin");
        // Signed in like a local sign-in: the page's CSRF token works for a state change.
        let out = app.post_form(&client, "/logout", &[]).await;
        assert_eq!(out.status(), 303);
        assert_eq!(signed_in_as(&app, &client).await, None, "signed out");
    }
    let logins = audit_details(&app, "login").await;
    assert!(
        logins.iter().any(|(a, o, d)| a == "adele.admin@contoso.onmicrosoft.com"
            && o == "success"
            && d.contains("via Entra ID")
            && d.contains("account created as Admin")),
        "{logins:?}"
    );
    // The accounts have no password: the login form does not open them.
    let res = app.login(&browser(), "adele.admin@contoso.onmicrosoft.com", "").await;
    assert_eq!(res.status(), 400);
    let res = app.login(&browser(), "adele.admin@contoso.onmicrosoft.com", PASSWORD).await;
    assert_eq!(res.status(), 401);
}

#[tokio::test]
async fn the_account_is_linked_by_object_id_and_its_role_follows_entra_at_each_sign_in() {
    let sim = sso_simulator().await;
    let app = spawn_app().await;
    app.enable_sso(&sim).await;
    // A local account that happens to carry the Entra user's name is not taken over.
    app.add_user("omar.operator@contoso.onmicrosoft.com", Role::Admin).await;

    let client = browser();
    assert_eq!(sign_in_through_entra(&app, &client, "omar.operator@contoso.onmicrosoft.com").await.status(), 303);
    let (name, role) = signed_in_as(&app, &client).await.unwrap();
    assert_eq!((name.as_str(), role.as_str()), ("omar.operator@contoso.onmicrosoft.com-2", "Operator"));
    let local = user_named(&app, "omar.operator@contoso.onmicrosoft.com").await.unwrap();
    assert_eq!(local.role(), Role::Admin, "the local account is untouched");

    // Renamed in Entra, promoted to admin: the same account, with the new role.
    let mut omar = sim.users().into_iter().find(|u| u.username.starts_with("omar")).unwrap();
    let oid = omar.oid.clone();
    sim.add_user(SimUser {
        username: "omar.o@contoso.onmicrosoft.com".into(),
        roles: vec![ADMIN_APP_ROLE.into()],
        ..omar.clone()
    });
    let client = browser();
    assert_eq!(sign_in_through_entra(&app, &client, "omar.o@contoso.onmicrosoft.com").await.status(), 303);
    assert_eq!(
        signed_in_as(&app, &client).await,
        Some(("omar.operator@contoso.onmicrosoft.com-2".into(), "Admin".into())),
        "linked by object id {oid}, not by name"
    );
    let logins = audit_details(&app, "login").await;
    assert!(logins.iter().any(|(_, _, d)| d.contains("role Operator → Admin")), "{logins:?}");
    // The Users page tells Entra accounts apart.
    let page = doc(&client.get(app.url("/users")).send().await.unwrap().text().await.unwrap());
    assert_eq!(select_all(&page, "tr[data-user='omar.operator@contoso.onmicrosoft.com-2'] .entra"), ["Entra ID"]);
    assert!(select_all(&page, "tr[data-user='omar.operator@contoso.onmicrosoft.com'] .entra").is_empty());

    // The same name with another object id (someone else) gets an account of its own.
    omar.oid = "0a0b0c0d-0000-4000-8000-000000000001".into();
    omar.username = "omar.o@contoso.onmicrosoft.com".into();
    omar.roles = vec![OPERATOR_APP_ROLE.into()];
    sim.add_user(omar);
    let client = browser();
    assert_eq!(sign_in_through_entra(&app, &client, "omar.o@contoso.onmicrosoft.com").await.status(), 303);
    assert_eq!(signed_in_as(&app, &client).await, Some(("omar.o@contoso.onmicrosoft.com".into(), "Operator".into())));
}

#[tokio::test]
async fn a_person_without_a_mapped_role_or_with_a_disabled_account_is_refused() {
    let sim = sso_simulator().await;
    let app = spawn_app().await;
    app.enable_sso(&sim).await;

    let client = browser();
    let res = sign_in_through_entra(&app, &client, "gus.guest@contoso.onmicrosoft.com").await;
    let error = refusal(&app, &client, res).await;
    assert!(error.contains("no role in Endpoint Analytics"), "{error}");
    assert_eq!(signed_in_as(&app, &client).await, None);
    assert!(user_named(&app, "gus.guest@contoso.onmicrosoft.com").await.is_none(), "no account was made");

    // A linked account an admin disabled stays shut, whatever Entra says.
    let ana = "ana.analyst@contoso.onmicrosoft.com";
    assert_eq!(sign_in_through_entra(&app, &browser(), ana).await.status(), 303);
    let id = user_named(&app, ana).await.unwrap().id;
    app.db.run(move |c| Ok(users::set_disabled(c, id, true)?)).await.unwrap();
    let client = browser();
    let res = sign_in_through_entra(&app, &client, ana).await;
    assert!(refusal(&app, &client, res).await.contains("This account is disabled"));
    assert_eq!(signed_in_as(&app, &client).await, None);
    let logins = audit_details(&app, "login").await;
    assert!(logins.iter().any(|(a, o, d)| a == ana && o == "failure" && d.contains("disabled")), "{logins:?}");
}

#[tokio::test]
async fn an_answer_that_does_not_carry_the_sessions_state_is_refused() {
    let sim = sso_simulator().await;
    let app = spawn_app().await;
    app.enable_sso(&sim).await;

    let client = browser();
    let authorize = start(&app, &client).await;
    let back = at_simulator(&authorize, "adele.admin@contoso.onmicrosoft.com", "sign_in").await;
    let forged = back.replace(&param(&back, "state").unwrap(), "forged-state");
    let res = client.get(&forged).send().await.unwrap();
    assert!(refusal(&app, &client, res).await.contains("state mismatch"));
    assert_eq!(signed_in_as(&app, &client).await, None);
    // The pending sign-in was used up by the failed attempt: the right state is no good now.
    let res = client.get(&back).send().await.unwrap();
    assert!(refusal(&app, &client, res).await.contains("expired or was started in another window"));

    // A callback in another browser (no pending sign-in), e.g. a link someone was sent, with an
    // error text of its own: refused, and the text is not shown.
    let other = browser();
    let res = other
        .get(app.url("/login/entra/callback?error=access_denied&error_description=Call%20555-0100%20now&state=x"))
        .send()
        .await
        .unwrap();
    let error = refusal(&app, &other, res).await;
    assert!(error.contains("expired or was started in another window") && !error.contains("555-0100"), "{error}");
}

#[tokio::test]
async fn id_tokens_that_fail_a_check_sign_nobody_in() {
    let sim = sso_simulator().await;
    let app = spawn_app().await;
    app.enable_sso(&sim).await;
    for (fault, reason) in [
        (IdTokenFault::WrongNonce, "nonce mismatch"),
        (IdTokenFault::BadSignature, "signature does not verify"),
        (IdTokenFault::WrongAudience, "issued to another application"),
        (IdTokenFault::Expired, "has expired"),
        (IdTokenFault::NotYetValid, "not valid yet"),
        (IdTokenFault::WrongIssuer, "another issuer"),
        (IdTokenFault::WrongTenant, "another tenant"),
        (IdTokenFault::UnknownKid, "key the tenant does not publish"),
    ] {
        sim.set_faults(Faults { id_token: Some(fault), ..Default::default() });
        let client = browser();
        let res = sign_in_through_entra(&app, &client, "adele.admin@contoso.onmicrosoft.com").await;
        let error = refusal(&app, &client, res).await;
        assert!(error.contains(reason) && error.contains("Nobody was signed in"), "{fault:?}: {error}");
        assert_eq!(signed_in_as(&app, &client).await, None, "{fault:?}");
    }
    assert!(user_named(&app, "adele.admin@contoso.onmicrosoft.com").await.is_none(), "no account was made");
    // The same sign-in with a sound token works.
    sim.set_faults(Faults::default());
    assert_eq!(sign_in_through_entra(&app, &browser(), "adele.admin@contoso.onmicrosoft.com").await.status(), 303);
}

#[tokio::test]
async fn entras_errors_are_shown_in_plain_words_on_the_sign_in_page() {
    let sim = sso_simulator().await;
    let app = spawn_app().await;
    app.enable_sso(&sim).await;
    let client = browser();
    let authorize = start(&app, &client).await;
    let back = at_simulator(&authorize, "", "cancel").await;
    assert_eq!(param(&back, "error").as_deref(), Some("access_denied"));
    let res = client.get(&back).send().await.unwrap();
    let error = refusal(&app, &client, res).await;
    assert!(error.contains("Microsoft did not sign you in: AADSTS65004: User declined to consent"), "{error}");
    assert!(!error.contains("Trace ID"), "only the first line: {error}");
}

#[tokio::test]
async fn disabled_sign_in_is_not_offered_and_refused() {
    let sim = sso_simulator().await;
    let app = spawn_app().await;
    let client = browser();
    let res = client.get(app.url("/login/entra")).send().await.unwrap();
    assert_eq!(res.status(), 303);
    let page = client.get(app.url(&location(&res))).send().await.unwrap().text().await.unwrap();
    let error = select_all(&doc(&page), "#login-form .form-error").concat();
    assert!(error.contains("not enabled"), "not configured: {error}");

    app.enable_sso(&sim).await;
    let client = browser();
    let authorize = start(&app, &client).await;
    let back = at_simulator(&authorize, "adele.admin@contoso.onmicrosoft.com", "sign_in").await;
    // Disabled between leaving for Entra and coming back.
    let off = SsoInput { enabled: false, client_secret: String::new(), ..sso_input(&sim) };
    crate::sso::configure_sso(&app.db, &app.state.secrets, off).await;
    let res = client.get(&back).send().await.unwrap();
    assert_eq!(res.status(), 303);
    let page = client.get(app.url(&location(&res))).send().await.unwrap().text().await.unwrap();
    assert!(select_all(&doc(&page), "#login-form .form-error").concat().contains("not enabled"));
    assert_eq!(signed_in_as(&app, &client).await, None);
    let login = browser().get(app.url("/login")).send().await.unwrap().text().await.unwrap();
    assert!(select_all(&doc(&login), "#sign-in-microsoft").is_empty(), "no button while disabled");
}

#[tokio::test]
async fn only_admins_configure_sign_in_and_the_secret_never_comes_back() {
    let sim = sso_simulator().await;
    let app = spawn_app().await;
    let operator = app.login_as("olga", Role::Operator).await;
    assert_eq!(operator.get(app.url("/config/sso")).send().await.unwrap().status(), 403);
    let res = app.post_form(&operator, "/config/sso", &[("tenant_id", "x")]).await;
    assert_eq!(res.status(), 403);

    let admin = app.login_as("alice", Role::Admin).await;
    let page = admin.get(app.url("/config/sso")).send().await.unwrap().text().await.unwrap();
    assert_eq!(select_all(&doc(&page), "#redirect-uri").concat(), app.url("/login/entra/callback"));

    // Bad input: 400, a message per field, nothing stored.
    let res =
        app.post_form(&admin, "/config/sso", &[("tenant_id", "contoso"), ("client_id", "x"), ("enabled", "on")]).await;
    assert_eq!(res.status(), 400);
    let html = doc(&res.text().await.unwrap());
    assert!(select_all(&html, ".field-error").len() >= 4, "{:?}", select_all(&html, ".field-error"));
    let stored = app.db.run(|c| Ok(endpoint_analytics::sso::settings::load(c)?)).await.unwrap();
    assert!(stored.is_none());

    let i = sso_input(&sim);
    let res = app
        .post_form(
            &admin,
            "/config/sso",
            &[
                ("tenant_id", &i.tenant_id),
                ("client_id", &i.client_id),
                ("client_secret", &i.client_secret),
                ("authority", &i.authority),
                ("admin_values", "EndpointAnalytics.Admin"),
                ("analyst_values", ANALYSTS_GROUP),
                ("enabled", "on"),
            ],
        )
        .await;
    assert_eq!(res.status(), 200);
    let body = res.text().await.unwrap();
    assert!(body.contains("Sign-in with Microsoft is enabled"), "{body}");
    assert!(!body.contains(&sim.client_secret), "the secret is not sent back");
    assert!(body.contains("id=\"secret-configured\""));
    let stored = app.db.run(|c| Ok(endpoint_analytics::sso::settings::load(c)?)).await.unwrap().unwrap();
    let sealed = stored.secret_ciphertext.unwrap();
    assert!(!sealed.windows(sim.client_secret.len()).any(|w| w == sim.client_secret.as_bytes()), "sealed at rest");
    let audit = audit_details(&app, "sso.configure").await;
    assert!(audit.iter().any(|(a, o, d)| a == "alice" && o == "success" && d.contains("secret set")), "{audit:?}");
    assert!(audit.iter().all(|(_, _, d)| !d.contains(&sim.client_secret)));
    // Saved through the page, it works.
    assert_eq!(sign_in_through_entra(&app, &browser(), "adele.admin@contoso.onmicrosoft.com").await.status(), 303);
}

/// The simulator's side of the protocol, spoken directly.
#[tokio::test]
async fn the_simulator_checks_pkce_and_redeems_a_code_once() {
    use base64::Engine;
    use sha2::Digest;
    let sim = sso_simulator().await;
    let http = browser();
    let discovery: Value = http
        .get(format!("{}/{}/v2.0/.well-known/openid-configuration", sim.base_url, sim.tenant_id))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(discovery["issuer"], format!("{}/{}/v2.0", sim.base_url, sim.tenant_id));
    let jwks: Value = http.get(discovery["jwks_uri"].as_str().unwrap()).send().await.unwrap().json().await.unwrap();
    assert_eq!(jwks["keys"][0]["kty"], "RSA");
    assert!(jwks["keys"][0]["kid"].is_string() && jwks["keys"][0]["n"].is_string());

    let verifier = "a-verifier-of-enough-length-0123456789-abcdefghij";
    let challenge = base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(sha2::Sha256::digest(verifier));
    let redirect = "http://127.0.0.1:1/cb";
    let mut authorize = url::Url::parse(discovery["authorization_endpoint"].as_str().unwrap()).unwrap();
    authorize
        .query_pairs_mut()
        .append_pair("client_id", &sim.client_id)
        .append_pair("response_type", "code")
        .append_pair("redirect_uri", redirect)
        .append_pair("scope", "openid profile")
        .append_pair("state", "s1")
        .append_pair("nonce", "n1")
        .append_pair("code_challenge", &challenge)
        .append_pair("code_challenge_method", "S256");
    let token = |code: String, verifier: &'static str| {
        let http = http.clone();
        let url = discovery["token_endpoint"].as_str().unwrap().to_owned();
        let (id, secret) = (sim.client_id.clone(), sim.client_secret.clone());
        async move {
            http.post(url)
                .form(&[
                    ("grant_type", "authorization_code"),
                    ("client_id", &id),
                    ("client_secret", &secret),
                    ("code", &code),
                    ("redirect_uri", redirect),
                    ("code_verifier", verifier),
                ])
                .send()
                .await
                .unwrap()
        }
    };

    let back = at_simulator(authorize.as_str(), "omar.operator@contoso.onmicrosoft.com", "sign_in").await;
    assert_eq!(param(&back, "state").as_deref(), Some("s1"));
    let res = token(param(&back, "code").unwrap(), "the-wrong-verifier-of-enough-length-0123456789").await;
    assert_eq!(res.status(), 400, "a wrong PKCE verifier is refused");
    let body: Value = res.json().await.unwrap();
    assert_eq!(body["error"], "invalid_grant");
    assert!(body["error_description"].as_str().unwrap().starts_with("AADSTS501481"), "{body}");

    let back = at_simulator(authorize.as_str(), "omar.operator@contoso.onmicrosoft.com", "sign_in").await;
    let code = param(&back, "code").unwrap();
    let res = token(code.clone(), verifier).await;
    assert_eq!(res.status(), 200);
    let body: Value = res.json().await.unwrap();
    let id_token = body["id_token"].as_str().unwrap();
    let claims: Value = serde_json::from_slice(
        &base64::engine::general_purpose::URL_SAFE_NO_PAD.decode(id_token.split('.').nth(1).unwrap()).unwrap(),
    )
    .unwrap();
    assert_eq!(claims["aud"], sim.client_id.as_str());
    assert_eq!(claims["nonce"], "n1");
    assert_eq!(claims["tid"], sim.tenant_id.as_str());
    assert_eq!(claims["roles"][0], OPERATOR_APP_ROLE);
    assert_eq!(claims["preferred_username"], "omar.operator@contoso.onmicrosoft.com");
    let res = token(code, verifier).await;
    assert_eq!(res.status(), 400, "a code is redeemed once");
    assert!(res.text().await.unwrap().contains("AADSTS70008"));
}
