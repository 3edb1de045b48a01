//! Tokens: the cached one, a new one when it is old or was refused, and the token request to
//! Entra ID.

use super::*;

impl DefenderClient {
    /// The cached token, or a new one. `stale` = the generation that got a 401: refresh only
    /// if the cache still holds it (so concurrent 401s cause one refresh).
    pub(super) async fn token(&self, stale: Option<u64>) -> Result<Arc<CachedToken>, DefenderError> {
        let mut guard = self.inner.token.lock().await;
        if let Some(t) = guard.as_ref() {
            let fresh = Instant::now() < t.refresh_at;
            match stale {
                None if fresh => return Ok(t.clone()),
                Some(g) if g != t.generation && fresh => return Ok(t.clone()),
                _ => {}
            }
        }
        let t = Arc::new(self.fetch_token().await?);
        *guard = Some(t.clone());
        Ok(t)
    }

    /// Drops the cached token if it is still this generation: the next call gets a new one.
    pub(super) async fn forget_token(&self, generation: u64) {
        let mut guard = self.inner.token.lock().await;
        if guard.as_ref().is_some_and(|t| t.generation == generation) {
            *guard = None;
        }
    }

    /// A new token from Entra ID (client credentials), through the client's one retry policy.
    pub(super) async fn fetch_token(&self) -> Result<CachedToken, DefenderError> {
        let inner = &self.inner;
        let url = inner.target.token_url(&inner.creds.tenant_id)?;
        let form = [
            ("grant_type", "client_credentials"),
            ("client_id", inner.creds.client_id.as_str()),
            ("client_secret", inner.creds.client_secret.expose()),
            ("scope", inner.target.scope.as_str()),
        ];
        self.retrying(Api::Token, |_| self.token_request(&url, &form)).await
    }

    /// One token request, and what its answer means.
    async fn token_request(&self, url: &Url, form: &[(&str, &str)]) -> Try<CachedToken> {
        let inner = &self.inner;
        let waited = inner.limiter.acquire(Api::Token).await;
        self.stat(Api::Token, |a, s| {
            a.calls += 1;
            a.limiter_wait_ms += waited.as_millis() as u64;
            s.token_requests += 1;
            s.limiter_wait_ms += waited.as_millis() as u64;
        });
        let res = inner.http.post(url.clone()).header(header::ACCEPT, "application/json").form(form).send().await;
        self.observe(Api::Token, res.as_ref().ok().map(|r| r.status()));
        let resp = match res {
            Ok(resp) => resp,
            Err(e) => return Try::Again { wait: None, last: self.transport_error(&e) },
        };
        let status = resp.status();
        let ra = retry_after(resp.headers());
        let body = match read_capped(resp, MAX_SMALL_ANSWER).await {
            Ok(b) => b,
            Err(BodyError::TooLarge(limit)) => return Try::Fail(DefenderError::TooLarge { limit_mib: limit >> 20 }),
            Err(BodyError::Transport(e)) => return Try::Again { wait: None, last: self.transport_error(&e) },
        };
        if status.is_success() {
            return match serde_json::from_slice::<TokenResponse>(&body) {
                Ok(tr) => Try::Done(self.cache_entry(tr)),
                Err(e) => {
                    Try::Fail(DefenderError::BadResponse(format!("token endpoint answer is not a token response: {e}")))
                }
            };
        }
        // A Retry-After longer than the client waits for is not honoured: the backoff applies.
        let wait = ra.filter(|w| *w <= inner.options.max_retry_after);
        if status == StatusCode::TOO_MANY_REQUESTS {
            self.stat(Api::Token, |a, _| a.throttled += 1);
            return Try::Again { wait, last: DefenderError::Throttled { retry_after_secs: ra.map(|d| d.as_secs()) } };
        }
        match serde_json::from_slice::<TokenErrorBody>(&body) {
            Ok(b) if b.error.is_some() || !b.error_codes.is_empty() => {
                match classify_token_error(status.as_u16(), &b) {
                    Some(e) => Try::Fail(self.tidy(e)),
                    None => Try::Again {
                        wait,
                        last: self.tidy(DefenderError::Api {
                            status: status.as_u16(),
                            code: b.error.clone().unwrap_or_default(),
                            message: b.summary(),
                        }),
                    },
                }
            }
            _ if status.is_server_error() => Try::Again {
                wait,
                last: DefenderError::Api { status: status.as_u16(), code: String::new(), message: String::new() },
            },
            _ => Try::Fail(DefenderError::BadResponse(format!(
                "the sign-in URL answered HTTP {} without an Entra error; check the cloud or sign-in URL",
                status.as_u16()
            ))),
        }
    }

    pub(super) fn cache_entry(&self, tr: TokenResponse) -> CachedToken {
        let lifetime = tr.expires_in_secs();
        let life = Duration::from_secs(lifetime.unwrap_or(3599));
        let margin = self.inner.options.token_refresh_margin.min(life / 2);
        let claims = jwt_claims(&tr.access_token);
        let generation = self.inner.generation.fetch_add(1, std::sync::atomic::Ordering::SeqCst) + 1;
        CachedToken {
            roles: roles_of(claims.as_ref()),
            claims,
            value: tr.access_token,
            generation,
            refresh_at: Instant::now() + life - margin,
            expires_in_secs: lifetime,
        }
    }
}
