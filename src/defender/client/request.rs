//! One API request with its token, the rate limiter, retries and the mapping of answers to
//! errors.

use super::*;

/// A successful HTTP answer.
pub(super) struct Answer {
    pub(super) status: StatusCode,
    pub(super) body: Vec<u8>,
    /// The service's clock less this host's, in seconds, from the answer's `Date` header (RFC
    /// 9110 §6.6.1: an origin server with a clock sends it); `None` without one.
    pub(super) clock_offset: Option<i64>,
}

/// One API request as `attempt` sends it.
#[derive(Clone, Copy)]
pub(super) struct Req<'a> {
    api: Api,
    method: &'a Method,
    url: &'a Url,
    body: Option<&'a Value>,
    idempotent: bool,
}

impl DefenderClient {
    /// Send one API request with token, limiter, retries and error mapping. `idempotent`
    /// requests are retried on 5xx and timeouts; others only when the request cannot have
    /// been executed (429, connection refused, 401 before refresh).
    pub(super) async fn request(
        &self,
        api: Api,
        method: Method,
        url: Url,
        body: Option<&Value>,
        idempotent: bool,
    ) -> Result<Answer, DefenderError> {
        let req = Req { api, method: &method, url: &url, body, idempotent };
        let this = self;
        self.retrying(api, move |stale| async move {
            let token = match this.token(stale).await {
                Ok(t) => t,
                Err(e) => return Try::Fail(e),
            };
            match this.attempt(&req, &token).await {
                Try::Fail(e @ (DefenderError::MissingPermission { .. } | DefenderError::Api { status: 403, .. })) => {
                    // A token carries the roles granted when it was issued: once an admin grants
                    // the permission, only a new token has it.
                    this.forget_token(token.generation).await;
                    Try::Fail(e)
                }
                other => other,
            }
        })
        .await
    }

    /// One try of a request: what its answer (or its absence) means.
    pub(super) async fn attempt(&self, req: &Req<'_>, token: &CachedToken) -> Try<Answer> {
        let Req { api, method, url, body, idempotent } = *req;
        let inner = &self.inner;
        let waited = inner.limiter.acquire(api).await;
        self.stat(api, |a, s| {
            a.calls += 1;
            s.calls += 1;
            a.limiter_wait_ms += waited.as_millis() as u64;
            s.limiter_wait_ms += waited.as_millis() as u64;
        });
        let mut rb = inner
            .http
            .request(method.clone(), url.clone())
            .bearer_auth(&token.value)
            .header(header::ACCEPT, "application/json");
        if let Some(b) = body {
            rb = rb.json(b);
        }
        let sent = rb.send().await;
        self.observe(api, sent.as_ref().ok().map(|r| r.status()));
        let resp = match sent {
            Ok(r) => r,
            Err(e) => {
                let err = self.transport_error(&e);
                // A refused connection never reached the service: safe to retry anything.
                let retry = e.is_connect() || (idempotent && !e.is_builder());
                return if retry { Try::Again { wait: None, last: err } } else { Try::Fail(err) };
            }
        };
        let status = resp.status();
        let headers = resp.headers().clone();
        let bytes = match read_capped(resp, MAX_API_ANSWER).await {
            Ok(b) => b,
            Err(BodyError::TooLarge(limit)) => {
                return Try::Fail(DefenderError::TooLarge { limit_mib: limit >> 20 });
            }
            Err(BodyError::Transport(e)) => {
                let err = self.transport_error(&e);
                return if idempotent { Try::Again { wait: None, last: err } } else { Try::Fail(err) };
            }
        };
        if status.is_success() {
            let clock_offset = headers
                .get(header::DATE)
                .and_then(|d| d.to_str().ok())
                .and_then(|d| chrono::DateTime::parse_from_rfc2822(d).ok())
                .map(|d| d.timestamp() - chrono::Utc::now().timestamp())
                // A day off is no clock but a stale or rewritten header: not trusted.
                .filter(|offset| offset.abs() <= 86_400);
            return Try::Done(Answer { status, body: without_nul(bytes), clock_offset });
        }
        let env = serde_json::from_slice::<ErrorEnvelope>(&bytes).ok();
        // Scrubbed, then cut short (a cut would leave a secret's head unmatched): they travel
        // into the run's error, the audit log and a sync-failed event, and the answer is
        // whoever's is on the line (a proxy, too).
        let text = |s: Option<&str>, max| excerpt(&self.scrub_with(s.unwrap_or_default(), Some(&token.value)), max);
        let code = text(env.as_ref().and_then(|e| e.error.code.as_deref()), 100);
        let message = text(env.as_ref().and_then(|e| e.error.message.as_deref()), 300);
        if let Some(t) = env.as_ref().and_then(|e| e.error.target.as_deref()) {
            tracing::debug!(
                api = api.as_str(),
                status = status.as_u16(),
                code,
                target = text(Some(t), 200),
                "API error"
            );
        }
        match status.as_u16() {
            401 => Try::NewToken { generation: token.generation },
            429 => {
                self.stat(api, |a, s| {
                    a.throttled += 1;
                    s.throttled += 1;
                });
                let ra = retry_after(&headers);
                if let Some(w) = ra {
                    if w > inner.options.max_retry_after {
                        return Try::Fail(DefenderError::Throttled { retry_after_secs: Some(w.as_secs()) });
                    }
                    inner.limiter.block_until(api, Instant::now() + w);
                }
                Try::Again {
                    // With Retry-After the limiter holds the call back; add a little jitter.
                    wait: ra.map(|_| Duration::from_millis(rand::random::<u64>() % 50)),
                    last: DefenderError::Throttled { retry_after_secs: ra.map(|d| d.as_secs()) },
                }
            }
            403 => {
                let needed = api.roles();
                if !needed.is_empty() && !needed.iter().any(|r| token.roles.iter().any(|t| t == r)) {
                    Try::Fail(DefenderError::MissingPermission { permission: needed.join(" or ") })
                } else {
                    Try::Fail(DefenderError::Api { status: 403, code, message })
                }
            }
            // Only Defender's own error means "nothing there" (common errors,
            // https://learn.microsoft.com/en-us/defender-endpoint/api/common-errors); anything else
            // answering 404 is not Defender and proves nothing about the tenant.
            404 if code.eq_ignore_ascii_case("ResourceNotFound") => Try::Fail(DefenderError::NotFound),
            404 if code.is_empty() => Try::Fail(DefenderError::ForeignNotFound({
                let kind = headers.get(header::CONTENT_TYPE).and_then(|v| v.to_str().ok()).unwrap_or("untyped");
                excerpt(kind.split(';').next().unwrap_or(kind).trim(), 60)
            })),
            // Defender's envelope with another code (e.g. the general `NotFound`): Defender
            // answered, but did not say "nothing there"; a wrong path gets such answers too.
            404 => Try::Fail(DefenderError::Api { status: 404, code, message }),
            400 if code.eq_ignore_ascii_case("ActiveRequestAlreadyExists")
                || message.to_ascii_lowercase().contains("already in progress") =>
            {
                Try::Fail(DefenderError::ActionAlreadyPending)
            }
            400 if code.eq_ignore_ascii_case("OsPlatformNotSupported") => {
                Try::Fail(DefenderError::OsNotSupported(if message.is_empty() { code } else { message }))
            }
            400 if code.eq_ignore_ascii_case("ClientVersionNotSupported") => {
                Try::Fail(DefenderError::ClientVersionNotSupported(if message.is_empty() { code } else { message }))
            }
            s if s >= 500 => {
                let err = DefenderError::Api { status: s, code, message };
                if idempotent { Try::Again { wait: None, last: err } } else { Try::Fail(err) }
            }
            s => Try::Fail(DefenderError::Api { status: s, code, message }),
        }
    }

    pub(super) async fn get_json<T: DeserializeOwned>(&self, api: Api, url: Url) -> Result<T, DefenderError> {
        let a = self.request(api, Method::GET, url, None, true).await?;
        decode_entity(api, &a.body)
    }
}

/// A JSON answer with the escapes that would fail it turned into U+FFFD (`\ufffd`), all else
/// byte for byte: an escaped NUL (`\u0000`: JSON can only carry a NUL escaped, and PostgreSQL
/// refuses one in text), and a UTF-16 surrogate escape that is not half of a pair (`\ud800`
/// alone: serde_json refuses to decode it into a string). Either, in one machine's name or tag,
/// would fail every sync for as long as Defender lists it. An escape is one only after an even
/// number of backslashes before its own (`\\u0000` is a backslash and the text `u0000`).
fn without_nul(body: Vec<u8>) -> Vec<u8> {
    let suspect = |w: &[u8]| w[0] == b'\\' && w[1] == b'u' && (w[2] == b'0' || w[2] == b'd' || w[2] == b'D');
    let Some(first) = body.windows(3).position(suspect) else { return body };
    let hex = |at: usize| -> Option<u16> {
        let digits = std::str::from_utf8(body.get(at..at + 4)?).ok()?;
        u16::from_str_radix(digits, 16).ok()
    };
    let escape_at = |at: usize| -> Option<u16> { (body.get(at..at + 2)? == b"\\u").then(|| hex(at + 2)).flatten() };
    let mut out = Vec::with_capacity(body.len());
    out.extend_from_slice(&body[..first]);
    let mut i = first;
    while i < body.len() {
        if body[i] != b'\\' {
            out.push(body[i]);
            i += 1;
            continue;
        }
        // A backslash escaped by the one before it starts nothing.
        let escaped = out.iter().rev().take_while(|b| **b == b'\\').count() % 2 == 1;
        match (escaped, escape_at(i)) {
            (false, Some(0)) | (false, Some(0xDC00..=0xDFFF)) => {
                out.extend_from_slice(b"\\ufffd");
                i += 6;
            }
            (false, Some(0xD800..=0xDBFF)) => match escape_at(i + 6) {
                Some(0xDC00..=0xDFFF) => {
                    out.extend_from_slice(&body[i..i + 12]);
                    i += 12;
                }
                _ => {
                    out.extend_from_slice(b"\\ufffd");
                    i += 6;
                }
            },
            _ => {
                out.push(b'\\');
                i += 1;
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::without_nul;

    #[test]
    fn an_escaped_nul_or_lone_surrogate_becomes_a_replacement_character_and_nothing_else_changes() {
        let cases: [(&[u8], &[u8]); 10] = [
            (br#"{"n":"a\u0000b"}"#, br#"{"n":"a\ufffdb"}"#),
            (br#"{"n":"a\\u0000b"}"#, br#"{"n":"a\\u0000b"}"#),
            (br#"{"n":"a\\\u0000"}"#, br#"{"n":"a\\\ufffd"}"#),
            (br#"{"n":"plain"}"#, br#"{"n":"plain"}"#),
            // Surrogates: a pair is kept, either half alone is replaced.
            (br#"{"n":"\ud83d\ude00"}"#, br#"{"n":"\ud83d\ude00"}"#),
            (br#"{"n":"a\uD800b"}"#, br#"{"n":"a\ufffdb"}"#),
            (br#"{"n":"a\udc00"}"#, br#"{"n":"a\ufffd"}"#),
            (br#"{"n":"\ud800\ud800\udc00"}"#, br#"{"n":"\ufffd\ud800\udc00"}"#),
            (br#"{"n":"\\ud800 \u00e9 \u0041"}"#, br#"{"n":"\\ud800 \u00e9 \u0041"}"#),
            (br#"{"n":"end\ud800"}"#, br#"{"n":"end\ufffd"}"#),
        ];
        for (input, expected) in cases {
            let out = without_nul(input.to_vec());
            assert_eq!(&out[..], expected, "{}", String::from_utf8_lossy(input));
            let parsed: serde_json::Value = serde_json::from_slice(&out).unwrap();
            assert!(!parsed["n"].as_str().unwrap().contains('\0'));
            let _: std::collections::HashMap<String, String> = serde_json::from_slice(&out).unwrap();
        }
    }
}
