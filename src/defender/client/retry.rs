//! The client's one retry policy, for token requests and API requests alike: how many tries,
//! how long between them (exponential backoff with jitter, or what the server asked for), when
//! a new token is worth a try, and the statistics of it all. Each kind of call says only what
//! one try came to ([`Try`]).

use super::*;

/// What one try of a call came to.
pub(super) enum Try<T> {
    Done(T),
    /// Worth another try, after `wait` (`None`: the policy's backoff).
    Again {
        wait: Option<Duration>,
        last: DefenderError,
    },
    /// The API refused the token of this generation (401): a new token is worth one more try.
    NewToken {
        generation: u64,
    },
    Fail(DefenderError),
}

impl DefenderClient {
    /// Tries `once` until it is done or fails, or the budget of retries is spent (then the last
    /// error is the answer). `once` gets the generation of a token the API refused, for it to
    /// ask for a new one.
    pub(super) async fn retrying<T, Fut: Future<Output = Try<T>>>(
        &self,
        api: Api,
        mut once: impl FnMut(Option<u64>) -> Fut,
    ) -> Result<T, DefenderError> {
        let (mut retries, mut stale, mut refreshed) = (0u32, None, false);
        loop {
            let (wait, last) = match once(stale.take()).await {
                Try::Done(value) => return Ok(value),
                Try::Fail(e) => {
                    self.stat(api, |a, _| a.errors += 1);
                    return Err(e);
                }
                Try::NewToken { generation } if !refreshed => {
                    refreshed = true;
                    stale = Some(generation);
                    self.stat(api, |a, s| {
                        a.retries += 1;
                        s.retries += 1;
                        s.token_refreshes_after_401 += 1;
                    });
                    continue;
                }
                Try::NewToken { .. } => {
                    self.stat(api, |a, _| a.errors += 1);
                    return Err(DefenderError::Api {
                        status: 401,
                        code: "Unauthorized".into(),
                        message: "the API rejected a freshly issued token".into(),
                    });
                }
                Try::Again { wait, last } => (wait, last),
            };
            if retries >= self.inner.options.max_retries {
                self.stat(api, |a, _| a.errors += 1);
                return Err(last);
            }
            retries += 1;
            self.stat(api, |a, s| {
                a.retries += 1;
                s.retries += 1;
            });
            let wait = wait.unwrap_or_else(|| self.backoff(retries));
            tracing::debug!(api = api.as_str(), retries, ?wait, error = %last, "retrying");
            tokio::time::sleep(wait).await;
        }
    }
}
