//! Entra ID sign-in for people (OpenID Connect, authorization code + PKCE):
//!
//! * `GET /{tenant}/v2.0/.well-known/openid-configuration` – discovery;
//! * `GET /{tenant}/oauth2/v2.0/authorize` – a tiny sign-in page listing the simulator's users
//!   (`POST` to the same address signs the chosen one in, or cancels);
//! * the `authorization_code` grant of `POST /{tenant}/oauth2/v2.0/token` ([`redeem`], called by
//!   `token.rs` after it has authenticated the client), with PKCE (`S256` or `plain`);
//! * `GET /{tenant}/discovery/v2.0/keys` – the JWKS.
//!
//! ID tokens are RS256-signed with the simulator's embedded test key (`oidc-signing-key.pem`,
//! public on purpose). The issuer is `{scheme}://{host}/{tenant id}/v2.0` as the caller addressed
//! the simulator, the way Entra's is `https://login.microsoftonline.com/{tenant id}/v2.0`.

use std::sync::OnceLock;
use std::time::{Duration, Instant};

use actix_web::http::header;
use actix_web::{HttpRequest, HttpResponse, web};
use askama::Template;
use base64::Engine;
use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use chrono::Utc;
use jsonwebtoken::{Algorithm, EncodingKey, Header};
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};
use sha2::{Digest, Sha256};

use super::faults::IdTokenFault;
use super::rng::{Rng, mix64, random_guid};
use super::token::{AadError, err};
use super::{ClientSpec, SimState, jwt, lock};

/// The `kid` of the simulator's signing key in ID token headers and the JWKS.
pub const KEY_ID: &str = "simulator-oidc-1";
/// How long an authorization code may wait to be redeemed (Entra: about ten minutes).
const CODE_LIFETIME: Duration = Duration::from_secs(600);
const ID_TOKEN_LIFETIME_SECS: i64 = 3600;

/// A person of the simulated directory who can sign in at the authorize page.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct SimUser {
    /// `preferred_username` (the UPN), also what the sign-in page lists.
    pub username: String,
    /// Display name (`name`).
    #[serde(default)]
    pub name: String,
    /// Object id (`oid`); derived from the tenant and user name when empty.
    #[serde(default)]
    pub oid: String,
    /// App roles assigned to the user (`roles`).
    #[serde(default)]
    pub roles: Vec<String>,
    /// Group object ids (`groups`).
    #[serde(default)]
    pub groups: Vec<String>,
}

impl SimUser {
    pub fn new(username: &str, name: &str) -> Self {
        SimUser { username: username.into(), name: name.into(), oid: String::new(), roles: vec![], groups: vec![] }
    }
    pub fn with_roles(mut self, roles: &[&str]) -> Self {
        self.roles = roles.iter().map(|r| r.to_string()).collect();
        self
    }
    pub fn with_groups(mut self, groups: &[&str]) -> Self {
        self.groups = groups.iter().map(|g| g.to_string()).collect();
        self
    }
}

/// App role values the default users carry (an admin maps them in the product).
pub const ADMIN_APP_ROLE: &str = "EndpointAnalytics.Admin";
pub const OPERATOR_APP_ROLE: &str = "EndpointAnalytics.Operator";
/// Object id of the default "Security analysts" group.
pub const ANALYSTS_GROUP: &str = "7f3e2a10-5c4b-4e8d-9a61-2b0c8d4f6e35";

/// The directory's people unless configured otherwise: one per product role (the analyst by
/// group membership), and one with no role at all.
pub fn default_users(domain: &str) -> Vec<SimUser> {
    vec![
        SimUser::new(&format!("adele.admin@{domain}"), "Adele Admin").with_roles(&[ADMIN_APP_ROLE]),
        SimUser::new(&format!("omar.operator@{domain}"), "Omar Operator").with_roles(&[OPERATOR_APP_ROLE]),
        SimUser::new(&format!("ana.analyst@{domain}"), "Ana Analyst").with_groups(&[ANALYSTS_GROUP]),
        SimUser::new(&format!("gus.guest@{domain}"), "Gus Guest"),
    ]
}

/// Fills in a missing object id: stable for a tenant and user name.
pub(super) fn with_oid(mut u: SimUser, tenant_id: &str) -> SimUser {
    if u.oid.trim().is_empty() {
        let h = format!("{tenant_id}|{}", u.username.to_ascii_lowercase())
            .bytes()
            .fold(0u64, |h, b| h.wrapping_mul(31).wrapping_add(b as u64));
        u.oid = Rng::for_item(0x51D0, mix64(h), 0).guid();
    }
    u
}

/// An authorization code waiting for the token request.
pub(crate) struct AuthCode {
    client_id: String,
    redirect_uri: String,
    /// (challenge, method)
    challenge: Option<(String, String)>,
    nonce: Option<String>,
    username: String,
    scope: String,
    expires: Instant,
}

struct SigningKey {
    encoding: EncodingKey,
    n: String,
    e: String,
}

fn signing_key() -> &'static SigningKey {
    static KEY: OnceLock<SigningKey> = OnceLock::new();
    KEY.get_or_init(|| {
        let pem = include_str!("oidc-signing-key.pem");
        let b64: String = pem
            .lines()
            .skip_while(|l| !l.starts_with("-----BEGIN"))
            .skip(1)
            .take_while(|l| !l.starts_with("-----END"))
            .collect();
        let der = STANDARD.decode(b64).expect("the embedded simulator key is base64");
        let pair = ring::signature::RsaKeyPair::from_der(&der).expect("the embedded simulator key is an RSA key");
        let public: ring::signature::RsaPublicKeyComponents<Vec<u8>> = pair.public().into();
        SigningKey {
            encoding: EncodingKey::from_rsa_der(&der),
            n: URL_SAFE_NO_PAD.encode(&public.n),
            e: URL_SAFE_NO_PAD.encode(&public.e),
        }
    })
}

pub fn configure(cfg: &mut web::ServiceConfig) {
    cfg.route("/{tenant}/v2.0/.well-known/openid-configuration", web::get().to(discovery));
    cfg.route("/{tenant}/discovery/v2.0/keys", web::get().to(keys));
    cfg.service(
        web::resource("/{tenant}/oauth2/v2.0/authorize")
            .route(web::get().to(authorize_get))
            .route(web::post().to(authorize_post)),
    );
}

fn tenant_known(st: &SimState, tenant: &str) -> bool {
    let current = st.tenant();
    let t = &current.params;
    tenant.eq_ignore_ascii_case(&t.tenant_id) || tenant.eq_ignore_ascii_case(&t.tenant_domain)
}

fn issuer(req: &HttpRequest, st: &SimState) -> String {
    format!("{}/{}/v2.0", super::api::base_of(req), st.tenant().params.tenant_id)
}

fn json_ok(v: Value) -> HttpResponse {
    HttpResponse::Ok().content_type("application/json; charset=utf-8").body(v.to_string())
}

async fn discovery(st: web::Data<SimState>, req: HttpRequest, tenant: web::Path<String>) -> HttpResponse {
    if !tenant_known(&st, &tenant) {
        return HttpResponse::BadRequest().json(json!({"error": "invalid_tenant", "error_description":
            format!("AADSTS90002: Tenant '{tenant}' not found.")}));
    }
    let base = super::api::base_of(&req);
    let tid = &st.tenant().params.tenant_id;
    json_ok(json!({
        "issuer": issuer(&req, &st),
        "authorization_endpoint": format!("{base}/{tid}/oauth2/v2.0/authorize"),
        "token_endpoint": format!("{base}/{tid}/oauth2/v2.0/token"),
        "jwks_uri": format!("{base}/{tid}/discovery/v2.0/keys"),
        "end_session_endpoint": format!("{base}/{tid}/oauth2/v2.0/logout"),
        "response_types_supported": ["code", "id_token", "code id_token", "id_token token"],
        "response_modes_supported": ["query", "fragment", "form_post"],
        "subject_types_supported": ["pairwise"],
        "id_token_signing_alg_values_supported": ["RS256"],
        "scopes_supported": ["openid", "profile", "email", "offline_access"],
        "token_endpoint_auth_methods_supported": ["client_secret_post", "private_key_jwt", "client_secret_basic"],
        "code_challenge_methods_supported": ["plain", "S256"],
        "claims_supported": ["sub", "iss", "aud", "exp", "iat", "nbf", "nonce", "name", "oid", "tid",
            "preferred_username", "roles", "groups", "ver"],
        "tenant_region_scope": "EU",
        "cloud_instance_name": "microsoftonline.com",
    }))
}

async fn keys(st: web::Data<SimState>, req: HttpRequest, tenant: web::Path<String>) -> HttpResponse {
    if !tenant_known(&st, &tenant) {
        return HttpResponse::BadRequest().json(json!({"error": "invalid_tenant"}));
    }
    let k = signing_key();
    json_ok(json!({"keys": [{
        "kty": "RSA", "use": "sig", "alg": "RS256", "kid": KEY_ID, "x5t": KEY_ID,
        "n": k.n, "e": k.e, "issuer": issuer(&req, &st),
    }]}))
}

/// What the authorize endpoint was asked, after the checks that decide where errors go.
struct Authorize {
    client: ClientSpec,
    redirect_uri: String,
    state: Option<String>,
    nonce: Option<String>,
    scope: String,
    challenge: Option<(String, String)>,
    login_hint: String,
}

/// Entra shows its own error page (no redirect) while it cannot trust the redirect URI.
fn error_page(code: u32, message: &str) -> HttpResponse {
    let page = ErrorPage { code, message };
    HttpResponse::BadRequest().content_type("text/html; charset=utf-8").body(page.render().unwrap_or_default())
}

/// Back to the application with `error`, `error_description` and `state`.
fn redirect_error(redirect_uri: &str, state: Option<&str>, error: &str, code: u32, message: &str) -> HttpResponse {
    let description = format!(
        "AADSTS{code}: {message}\r\nTrace ID: {}\r\nCorrelation ID: {}\r\nTimestamp: {}",
        random_guid(),
        random_guid(),
        Utc::now().format("%Y-%m-%d %H:%M:%SZ")
    );
    let mut pairs = vec![("error", error.to_owned()), ("error_description", description)];
    if let Some(s) = state {
        pairs.push(("state", s.to_owned()));
    }
    redirect_to(redirect_uri, &pairs)
}

fn redirect_to(redirect_uri: &str, pairs: &[(&str, String)]) -> HttpResponse {
    let mut url = url::Url::parse(redirect_uri).expect("checked before");
    {
        let mut q = url.query_pairs_mut();
        for (k, v) in pairs {
            q.append_pair(k, v);
        }
    }
    HttpResponse::Found().insert_header((header::LOCATION, url.to_string())).finish()
}

fn check(st: &SimState, tenant: &str, field: &dyn Fn(&str) -> Option<String>) -> Result<Authorize, Box<HttpResponse>> {
    if !tenant_known(st, tenant) {
        return Err(Box::new(error_page(90002, &format!("Tenant '{tenant}' not found."))));
    }
    let Some(client_id) = field("client_id").filter(|c| !c.is_empty()) else {
        return Err(Box::new(error_page(
            900144,
            "The request body must contain the following parameter: 'client_id'.",
        )));
    };
    let Some(client) = st.client(&client_id) else {
        return Err(Box::new(error_page(
            700016,
            &format!("Application with identifier '{client_id}' was not found in the directory."),
        )));
    };
    let redirect_uri = field("redirect_uri").unwrap_or_default();
    let redirect_ok = url::Url::parse(&redirect_uri).is_ok_and(|u| matches!(u.scheme(), "http" | "https"))
        && (client.redirect_uris.is_empty() || client.redirect_uris.contains(&redirect_uri));
    if !redirect_ok {
        return Err(Box::new(error_page(
            50011,
            &format!(
                "The redirect URI '{redirect_uri}' specified in the request does not match the redirect URIs configured for the application '{}'.",
                client.client_id
            ),
        )));
    }
    let state = field("state");
    let fail =
        |error: &str, code: u32, message: &str| redirect_error(&redirect_uri, state.as_deref(), error, code, message);
    if field("response_type").as_deref() != Some("code") {
        return Err(Box::new(fail(
            "unsupported_response_type",
            700054,
            "response_type must be 'code' for the authorization code flow.",
        )));
    }
    if field("response_mode").is_some_and(|m| m != "query") {
        return Err(Box::new(fail("invalid_request", 900144, "The simulator supports response_mode=query only.")));
    }
    let scope = field("scope").unwrap_or_default();
    if !scope.split_whitespace().any(|s| s == "openid") {
        return Err(Box::new(fail("invalid_scope", 70011, "The scope must include 'openid' for an ID token.")));
    }
    let challenge = match (field("code_challenge"), field("code_challenge_method")) {
        (None, _) => None,
        (Some(c), m) => {
            let m = m.unwrap_or_else(|| "plain".into());
            if m != "S256" && m != "plain" {
                return Err(Box::new(fail("invalid_request", 501491, "Invalid code_challenge_method.")));
            }
            Some((c, m))
        }
    };
    Ok(Authorize {
        client,
        redirect_uri: redirect_uri.clone(),
        state: state.clone(),
        nonce: field("nonce"),
        scope,
        challenge,
        login_hint: field("login_hint").unwrap_or_default(),
    })
}

#[derive(Template)]
#[template(path = "simulator/authorize.html")]
struct SignInPage<'a> {
    app: String,
    users: Vec<SimUser>,
    selected: &'a str,
    params: Vec<(String, String)>,
    error: Option<&'a str>,
}

#[derive(Template)]
#[template(path = "simulator/error.html")]
struct ErrorPage<'a> {
    code: u32,
    message: &'a str,
}

/// The query parameters a POST of the sign-in page carries back (the rest is the person's choice).
const FLOW_PARAMS: &[&str] = &[
    "client_id",
    "response_type",
    "redirect_uri",
    "scope",
    "state",
    "nonce",
    "code_challenge",
    "code_challenge_method",
    "response_mode",
    "login_hint",
];

fn pairs(bytes: &[u8]) -> Vec<(String, String)> {
    url::form_urlencoded::parse(bytes).map(|(k, v)| (k.into_owned(), v.into_owned())).collect()
}

fn sign_in_page(st: &SimState, a: &Authorize, all: &[(String, String)], error: Option<&str>) -> HttpResponse {
    let users = st.users();
    let params = all.iter().filter(|(k, _)| FLOW_PARAMS.contains(&k.as_str())).cloned().collect();
    let page = SignInPage {
        app: a.client.display_name.clone().unwrap_or_else(|| a.client.client_id.clone()),
        selected: &a.login_hint,
        users,
        params,
        error,
    };
    let status =
        if error.is_some() { actix_web::http::StatusCode::BAD_REQUEST } else { actix_web::http::StatusCode::OK };
    HttpResponse::build(status)
        .content_type("text/html; charset=utf-8")
        .insert_header(("Cache-Control", "no-store"))
        .body(page.render().unwrap_or_default())
}

async fn authorize_get(st: web::Data<SimState>, req: HttpRequest, tenant: web::Path<String>) -> HttpResponse {
    lock(&st.counters).record_call("Authorize");
    let all = pairs(req.query_string().as_bytes());
    let field = |k: &str| all.iter().find(|(n, _)| n == k).map(|(_, v)| v.clone());
    match check(&st, &tenant, &field) {
        Ok(a) => sign_in_page(&st, &a, &all, None),
        Err(r) => *r,
    }
}

/// The sign-in page's answer: `action=cancel`, or `username` signs that person in.
async fn authorize_post(st: web::Data<SimState>, tenant: web::Path<String>, body: web::Bytes) -> HttpResponse {
    let all = pairs(&body);
    let field = |k: &str| all.iter().find(|(n, _)| n == k).map(|(_, v)| v.clone());
    let a = match check(&st, &tenant, &field) {
        Ok(a) => a,
        Err(r) => return *r,
    };
    if field("action").as_deref() == Some("cancel") {
        return redirect_error(
            &a.redirect_uri,
            a.state.as_deref(),
            "access_denied",
            65004,
            "User declined to consent to access the app.",
        );
    }
    let chosen = field("username").unwrap_or_default();
    let Some(user) = st.user(&chosen) else {
        return sign_in_page(
            &st,
            &a,
            &all,
            Some("This user does not exist in the directory. Choose one from the list."),
        );
    };
    let code = URL_SAFE_NO_PAD.encode(rand::random::<[u8; 32]>());
    {
        let mut codes = lock(&st.codes);
        let now = Instant::now();
        codes.retain(|_, c| c.expires > now);
        codes.insert(
            code.clone(),
            AuthCode {
                client_id: a.client.client_id.clone(),
                redirect_uri: a.redirect_uri.clone(),
                challenge: a.challenge.clone(),
                nonce: a.nonce.clone(),
                username: user.username,
                scope: a.scope.clone(),
                expires: now + CODE_LIFETIME,
            },
        );
    }
    let mut back = vec![("code", code)];
    if let Some(s) = a.state {
        back.push(("state", s));
    }
    back.push(("session_state", random_guid()));
    redirect_to(&a.redirect_uri, &back)
}

fn invalid_grant(code: u32, message: &str) -> AadError {
    err(400, "invalid_grant", code, message)
}

/// The `authorization_code` grant, for a client already authenticated by the token endpoint.
pub(super) fn redeem(
    st: &SimState,
    req: &HttpRequest,
    client: &ClientSpec,
    field: &dyn Fn(&str) -> Option<String>,
) -> Result<HttpResponse, AadError> {
    let Some(code) = field("code").filter(|c| !c.is_empty()) else {
        return Err(err(
            400,
            "invalid_request",
            900144,
            "The request body must contain the following parameter: 'code'.",
        ));
    };
    // A code is good for one attempt, whatever its outcome.
    let Some(grant) = lock(&st.codes).remove(&code).filter(|g| g.expires > Instant::now()) else {
        return Err(invalid_grant(
            70008,
            "The provided authorization code or refresh token has expired due to inactivity or was already redeemed. Send a new interactive authorization request for this user and resource.",
        ));
    };
    if !grant.client_id.eq_ignore_ascii_case(&client.client_id) {
        return Err(invalid_grant(70000, "The provided authorization code was issued to another application."));
    }
    if field("redirect_uri").as_deref() != Some(grant.redirect_uri.as_str()) {
        return Err(invalid_grant(70000, "The redirect_uri does not match the one used in the authorization request."));
    }
    if let Some((challenge, method)) = &grant.challenge {
        let verifier = field("code_verifier").unwrap_or_default();
        let computed =
            if method == "S256" { URL_SAFE_NO_PAD.encode(Sha256::digest(verifier.as_bytes())) } else { verifier };
        if computed != *challenge {
            return Err(invalid_grant(
                501481,
                "The Code_Verifier does not match the code_challenge supplied in the authorization request.",
            ));
        }
    }
    let Some(user) = st.user(&grant.username) else {
        return Err(invalid_grant(50034, "The user account does not exist in the directory."));
    };
    let fault = lock(&st.faults).faults.id_token;
    let id_token = id_token(st, &issuer(req, st), client, &user, grant.nonce.as_deref(), fault);
    let now = Utc::now().timestamp();
    let access = jwt::sign(
        &st.key,
        &json!({
            "aud": "00000003-0000-0000-c000-000000000000",
            "iss": format!("https://sts.windows.net/{}/", st.tenant().params.tenant_id),
            "iat": now, "nbf": now, "exp": now + ID_TOKEN_LIFETIME_SECS,
            "tid": st.tenant().params.tenant_id, "oid": user.oid, "upn": user.username,
            "scp": "openid profile email User.Read", "appid": client.client_id, "ver": "1.0",
        }),
    );
    lock(&st.counters).tokens_issued += 1;
    Ok(HttpResponse::Ok()
        .insert_header(("Cache-Control", "no-store, no-cache"))
        .insert_header(("Pragma", "no-cache"))
        .content_type("application/json; charset=utf-8")
        .body(
            json!({
                "token_type": "Bearer",
                "scope": grant.scope,
                "expires_in": ID_TOKEN_LIFETIME_SECS,
                "ext_expires_in": ID_TOKEN_LIFETIME_SECS,
                "access_token": access,
                "id_token": id_token,
            })
            .to_string(),
        ))
}

fn id_token(
    st: &SimState,
    issuer: &str,
    client: &ClientSpec,
    user: &SimUser,
    nonce: Option<&str>,
    fault: Option<IdTokenFault>,
) -> String {
    let tid = st.tenant().params.tenant_id.clone();
    let now = Utc::now().timestamp();
    // `sub` is pairwise in Entra: the same person has another `sub` in every application.
    let sub = URL_SAFE_NO_PAD.encode(Sha256::digest(format!("{}|{}", client.client_id, user.oid).as_bytes()));
    let (iat, nbf, exp) = match fault {
        Some(IdTokenFault::Expired) => {
            (now - 2 * ID_TOKEN_LIFETIME_SECS, now - 2 * ID_TOKEN_LIFETIME_SECS, now - ID_TOKEN_LIFETIME_SECS)
        }
        Some(IdTokenFault::NotYetValid) => (now, now + ID_TOKEN_LIFETIME_SECS, now + 2 * ID_TOKEN_LIFETIME_SECS),
        _ => (now, now, now + ID_TOKEN_LIFETIME_SECS),
    };
    let mut claims = json!({
        "aud": if fault == Some(IdTokenFault::WrongAudience) { random_guid() } else { client.client_id.clone() },
        "iss": if fault == Some(IdTokenFault::WrongIssuer) { format!("https://sts.windows.net/{tid}/") } else { issuer.to_owned() },
        "iat": iat, "nbf": nbf, "exp": exp,
        "name": user.name,
        "oid": user.oid,
        "preferred_username": user.username,
        "sub": sub,
        "tid": if fault == Some(IdTokenFault::WrongTenant) { random_guid() } else { tid },
        "ver": "2.0",
        "rh": "0.simulator.",
        "uti": URL_SAFE_NO_PAD.encode(rand::random::<[u8; 16]>()),
    });
    if let Some(n) = nonce {
        claims["nonce"] =
            json!(if fault == Some(IdTokenFault::WrongNonce) { "not-the-nonce-that-was-sent" } else { n });
    }
    if !user.roles.is_empty() {
        claims["roles"] = json!(user.roles);
    }
    if !user.groups.is_empty() {
        claims["groups"] = json!(user.groups);
    }
    let mut header = Header::new(Algorithm::RS256);
    header.kid = Some(if fault == Some(IdTokenFault::UnknownKid) { "rotated-away".into() } else { KEY_ID.into() });
    let token =
        jsonwebtoken::encode(&header, &claims, &signing_key().encoding).expect("RS256 signing with a valid key");
    if fault != Some(IdTokenFault::BadSignature) {
        return token;
    }
    let (content, sig) = token.rsplit_once('.').expect("a compact JWT");
    let mut bytes = URL_SAFE_NO_PAD.decode(sig).expect("our own signature");
    bytes[0] ^= 0x01;
    format!("{content}.{}", URL_SAFE_NO_PAD.encode(bytes))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_embedded_key_signs_what_its_published_numbers_verify() {
        let k = signing_key();
        let mut header = Header::new(Algorithm::RS256);
        header.kid = Some(KEY_ID.into());
        let token = jsonwebtoken::encode(&header, &json!({"aud": "x", "exp": 4_000_000_000u64}), &k.encoding).unwrap();
        let key = jsonwebtoken::DecodingKey::from_rsa_components(&k.n, &k.e).unwrap();
        let mut v = jsonwebtoken::Validation::new(Algorithm::RS256);
        v.set_audience(&["x"]);
        assert!(jsonwebtoken::decode::<Value>(&token, &key, &v).is_ok());
    }
}
