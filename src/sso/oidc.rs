//! The OpenID Connect side of Entra sign-in: discovery (checked against the tenant's v2
//! issuer), the authorize address with state, nonce and PKCE S256, the code exchange (both
//! through the `oauth2` crate), and the ID token's signature (JWKS, RS256, by `kid`) and
//! claims (iss, aud, exp/nbf with a small skew, nonce, tid).

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use jsonwebtoken::jwk::JwkSet;
use jsonwebtoken::{Algorithm, DecodingKey, Validation};
use oauth2::basic::{
    BasicErrorResponse, BasicRevocationErrorResponse, BasicTokenIntrospectionResponse, BasicTokenType,
};
use oauth2::{
    AuthType, AuthUrl, AuthorizationCode, ClientId, ClientSecret, CsrfToken, EndpointNotSet, EndpointSet,
    ExtraTokenFields, PkceCodeChallenge, PkceCodeVerifier, RedirectUrl, RequestTokenError, Scope,
    StandardRevocableToken, StandardTokenResponse, TokenUrl,
};
use serde::{Deserialize, Serialize};
use url::Url;

use super::SignInError;
use crate::db::models::sso::SsoConfig;
use crate::db::now;

/// How long a started sign-in may take (Entra's authorization codes live about as long).
pub const PENDING_LIFETIME_SECS: i64 = 600;
/// Clock skew tolerated on `exp` and `nbf`.
const LEEWAY_SECS: u64 = 120;
const CACHE_FOR: Duration = Duration::from_secs(3600);
/// A `kid` not in the cached key set fetches the set again, at most this often (key rollover
/// without letting forged tokens make us hammer the endpoint).
const JWKS_REFETCH_AFTER: Duration = Duration::from_secs(60);

/// The `id_token` of the token response (OpenID Connect adds it to OAuth's fields).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct IdTokenField {
    #[serde(default)]
    pub id_token: Option<String>,
}
impl ExtraTokenFields for IdTokenField {}

type EntraClient = oauth2::Client<
    BasicErrorResponse,
    StandardTokenResponse<IdTokenField, BasicTokenType>,
    BasicTokenIntrospectionResponse,
    StandardRevocableToken,
    BasicRevocationErrorResponse,
    EndpointSet,
    EndpointNotSet,
    EndpointNotSet,
    EndpointNotSet,
    EndpointSet,
>;

/// A sign-in between the redirect to Entra and the way back, kept in the (server-side) session.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Pending {
    pub state: String,
    pub nonce: String,
    pub pkce_verifier: String,
    pub redirect_uri: String,
    /// Where to go after signing in (already checked to be a local path).
    pub next: String,
    pub started_at: i64,
}

/// Who Entra says signed in, from a verified ID token.
#[derive(Debug, Clone)]
pub struct Identity {
    pub tenant_id: String,
    pub object_id: String,
    pub username: String,
    pub name: String,
    pub roles: Vec<String>,
    pub groups: Vec<String>,
    /// Entra left the groups out (too many) and only pointed at Graph.
    pub groups_overage: bool,
}

#[derive(Debug, Deserialize)]
struct Claims {
    #[serde(default)]
    tid: String,
    #[serde(default)]
    oid: String,
    #[serde(default)]
    nonce: Option<String>,
    #[serde(default)]
    preferred_username: String,
    #[serde(default)]
    name: String,
    #[serde(default)]
    roles: Vec<String>,
    #[serde(default)]
    groups: Vec<String>,
    #[serde(default, rename = "_claim_names")]
    claim_names: Option<serde_json::Value>,
}

#[derive(Debug, Clone, Deserialize)]
struct Discovery {
    issuer: String,
    authorization_endpoint: Url,
    token_endpoint: Url,
    jwks_uri: Url,
}

/// The HTTP client and the caches of discovery documents and key sets, shared by every request.
pub struct Sso {
    http: reqwest::Client,
    discovery: Mutex<HashMap<String, (Instant, Discovery)>>,
    jwks: Mutex<HashMap<String, (Instant, JwkSet)>>,
}

impl Default for Sso {
    fn default() -> Self {
        Self::new()
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

/// `https://login.microsoftonline.com/{tenant id}/v2.0` for the public cloud.
pub fn expected_issuer(config: &SsoConfig) -> String {
    format!("{}/{}/v2.0", config.authority.trim_end_matches('/'), config.tenant_id)
}

fn same_origin(a: &Url, b: &Url) -> bool {
    a.origin() == b.origin()
}

impl Sso {
    pub fn new() -> Self {
        let http = reqwest::Client::builder()
            // Never follow redirects: the oauth2 crate's advice against SSRF, and the sign-in
            // talks to the configured authority only.
            .redirect(reqwest::redirect::Policy::none())
            .timeout(Duration::from_secs(15))
            .build()
            .expect("a TLS backend is compiled in");
        Self { http, discovery: Mutex::default(), jwks: Mutex::default() }
    }

    async fn get_json<T: serde::de::DeserializeOwned>(&self, url: &Url, what: &str) -> Result<T, SignInError> {
        let res = self
            .http
            .get(url.clone())
            .send()
            .await
            .map_err(|e| SignInError::Unreachable(format!("the {what} at {url} could not be fetched ({e})")))?;
        if !res.status().is_success() {
            return Err(SignInError::Unreachable(format!("the {what} at {url} answered {}", res.status())));
        }
        let body = crate::outbound::read_capped(res, crate::outbound::MAX_SMALL_ANSWER)
            .await
            .map_err(|e| SignInError::Unreachable(format!("the {what} at {url} could not be read: {e}")))?;
        serde_json::from_slice(&body)
            .map_err(|e| SignInError::Unreachable(format!("the {what} at {url} is not what was expected ({e})")))
    }

    /// The tenant's OpenID configuration, whose issuer must be the tenant's v2 issuer and whose
    /// endpoints must be on the configured authority.
    async fn discover(&self, config: &SsoConfig) -> Result<Discovery, SignInError> {
        let issuer = expected_issuer(config);
        if let Some((at, d)) = lock(&self.discovery).get(&issuer)
            && at.elapsed() < CACHE_FOR
        {
            return Ok(d.clone());
        }
        let url = Url::parse(&format!("{issuer}/.well-known/openid-configuration"))
            .map_err(|e| SignInError::Internal(anyhow::anyhow!("bad authority: {e}")))?;
        let d: Discovery = self.get_json(&url, "OpenID configuration").await?;
        if d.issuer != issuer {
            return Err(SignInError::Unreachable(format!(
                "the OpenID configuration names the issuer {:?}, not the tenant's {issuer:?}",
                d.issuer
            )));
        }
        if ![&d.authorization_endpoint, &d.token_endpoint, &d.jwks_uri].iter().all(|u| same_origin(u, &url)) {
            return Err(SignInError::Unreachable("the OpenID configuration points at another host".into()));
        }
        lock(&self.discovery).insert(issuer, (Instant::now(), d.clone()));
        Ok(d)
    }

    fn client(
        &self,
        config: &SsoConfig,
        d: &Discovery,
        secret: Option<String>,
        redirect_uri: &str,
    ) -> Result<EntraClient, SignInError> {
        let redirect = RedirectUrl::new(redirect_uri.to_owned())
            .map_err(|e| SignInError::Internal(anyhow::anyhow!("bad redirect URI: {e}")))?;
        let mut c = oauth2::Client::new(ClientId::new(config.client_id.clone()))
            .set_auth_uri(AuthUrl::from_url(d.authorization_endpoint.clone()))
            .set_token_uri(TokenUrl::from_url(d.token_endpoint.clone()))
            .set_redirect_uri(redirect)
            // client_secret_post: what Entra documents for web apps.
            .set_auth_type(AuthType::RequestBody);
        if let Some(s) = secret {
            c = c.set_client_secret(ClientSecret::new(s));
        }
        Ok(c)
    }

    /// The address to send the person to, and what to keep until they come back.
    pub async fn begin(
        &self,
        config: &SsoConfig,
        redirect_uri: &str,
        next: String,
    ) -> Result<(Url, Pending), SignInError> {
        let d = self.discover(config).await?;
        let client = self.client(config, &d, None, redirect_uri)?;
        let (challenge, verifier) = PkceCodeChallenge::new_random_sha256();
        let nonce = crate::auth::random_token(32);
        let (url, state) = client
            .authorize_url(CsrfToken::new_random)
            .add_scope(Scope::new("openid".into()))
            .add_scope(Scope::new("profile".into()))
            .add_extra_param("nonce", &nonce)
            .add_extra_param("response_mode", "query")
            .set_pkce_challenge(challenge)
            .url();
        let pending = Pending {
            state: state.secret().clone(),
            nonce,
            pkce_verifier: verifier.secret().clone(),
            redirect_uri: redirect_uri.to_owned(),
            next,
            started_at: now(),
        };
        Ok((url, pending))
    }

    /// Redeems the code (with the PKCE verifier) and verifies the ID token it brings.
    pub async fn finish(
        &self,
        config: &SsoConfig,
        secret: String,
        pending: &Pending,
        code: String,
    ) -> Result<Identity, SignInError> {
        let d = self.discover(config).await?;
        let client = self.client(config, &d, Some(secret), &pending.redirect_uri)?;
        let response = client
            .exchange_code(AuthorizationCode::new(code))
            .set_pkce_verifier(PkceCodeVerifier::new(pending.pkce_verifier.clone()))
            .request_async(&crate::outbound::oauth2_client(&self.http))
            .await
            .map_err(|e| match e {
                RequestTokenError::ServerResponse(r) => SignInError::Provider(format!(
                    "{} ({})",
                    r.error_description().map(|d| first_line(d)).unwrap_or_default(),
                    r.error()
                )),
                RequestTokenError::Request(e) => {
                    SignInError::Unreachable(format!("the token endpoint could not be reached ({e})"))
                }
                other => SignInError::Unreachable(format!("the token endpoint answered unexpectedly ({other})")),
            })?;
        let id_token = response
            .extra_fields()
            .id_token
            .clone()
            .ok_or_else(|| SignInError::InvalidToken("the token response carries no ID token".into()))?;
        self.verify(config, &d, &id_token, &pending.nonce).await
    }

    async fn key_set(&self, d: &Discovery, refresh: bool) -> Result<JwkSet, SignInError> {
        let key = d.jwks_uri.to_string();
        if let Some((at, set)) = lock(&self.jwks).get(&key)
            && at.elapsed() < CACHE_FOR
            && !(refresh && at.elapsed() >= JWKS_REFETCH_AFTER)
        {
            return Ok(set.clone());
        }
        let set: JwkSet = self.get_json(&d.jwks_uri, "signing key set").await?;
        lock(&self.jwks).insert(key, (Instant::now(), set.clone()));
        Ok(set)
    }

    async fn verify(
        &self,
        config: &SsoConfig,
        d: &Discovery,
        token: &str,
        nonce: &str,
    ) -> Result<Identity, SignInError> {
        let bad = |m: &str| SignInError::InvalidToken(m.to_owned());
        let header = jsonwebtoken::decode_header(token).map_err(|_| bad("the ID token is malformed"))?;
        if header.alg != Algorithm::RS256 {
            return Err(bad("the ID token is not signed with RS256"));
        }
        let kid = header.kid.ok_or_else(|| bad("the ID token names no signing key"))?;
        let mut set = self.key_set(d, false).await?;
        if set.find(&kid).is_none() {
            set = self.key_set(d, true).await?;
        }
        let jwk = set.find(&kid).ok_or_else(|| bad("the ID token is signed with a key the tenant does not publish"))?;
        let key = DecodingKey::from_jwk(jwk).map_err(|_| bad("the tenant's signing key cannot be used"))?;
        let mut v = Validation::new(Algorithm::RS256);
        v.set_audience(&[&config.client_id]);
        v.set_issuer(&[expected_issuer(config)]);
        v.set_required_spec_claims(&["exp", "nbf", "iss", "aud"]);
        v.validate_nbf = true;
        v.leeway = LEEWAY_SECS;
        let data = jsonwebtoken::decode::<Claims>(token, &key, &v).map_err(|e| {
            use jsonwebtoken::errors::ErrorKind as K;
            bad(match e.kind() {
                K::InvalidSignature => "the ID token's signature does not verify",
                K::ExpiredSignature => "the ID token has expired (are the clocks right?)",
                K::ImmatureSignature => "the ID token is not valid yet (are the clocks right?)",
                K::InvalidAudience => "the ID token was issued to another application",
                K::InvalidIssuer => "the ID token was issued by another issuer than the configured tenant",
                K::MissingRequiredClaim(_) => "the ID token lacks a required claim",
                _ => "the ID token is not valid",
            })
        })?;
        let c = data.claims;
        if c.nonce.as_deref() != Some(nonce) {
            return Err(bad("the ID token does not belong to this sign-in (nonce mismatch)"));
        }
        if !c.tid.eq_ignore_ascii_case(&config.tenant_id) {
            return Err(bad("the ID token is for another tenant"));
        }
        if c.oid.trim().is_empty() {
            return Err(bad("the ID token names no object id"));
        }
        let groups_overage = c.claim_names.as_ref().is_some_and(|n| n.get("groups").is_some());
        Ok(Identity {
            tenant_id: c.tid.to_lowercase(),
            object_id: c.oid.to_lowercase(),
            username: c.preferred_username,
            name: c.name,
            roles: c.roles,
            groups: c.groups,
            groups_overage,
        })
    }
}

/// Entra's descriptions carry trace and correlation ids on further lines; people need the first.
pub fn first_line(s: &str) -> String {
    let line = s.lines().next().unwrap_or_default().trim();
    line.chars().take(300).collect()
}
