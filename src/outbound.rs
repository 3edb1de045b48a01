//! Reading answers from other hosts (Defender, Entra ID, a key set) with a size cap: a hostile
//! or broken host, or one the settings point at by mistake, cannot make the product hold more
//! than the cap in memory.

/// The largest answer from a sign-in host, an OpenID configuration or a key set (real ones
/// are a few KiB).
pub const MAX_SMALL_ANSWER: usize = 1 << 20;

#[derive(Debug, thiserror::Error)]
pub enum BodyError {
    #[error(transparent)]
    Transport(reqwest::Error),
    /// More than this many bytes.
    #[error("the answer was more than {} MiB", .0 >> 20)]
    TooLarge(usize),
}

/// Reads a response body of at most `limit` bytes: a declared length over it is refused before
/// anything is read, and a body that keeps coming is cut off at the limit.
pub async fn read_capped(mut resp: reqwest::Response, limit: usize) -> Result<Vec<u8>, BodyError> {
    if resp.content_length().is_some_and(|n| n > limit as u64) {
        return Err(BodyError::TooLarge(limit));
    }
    let mut body = Vec::with_capacity(resp.content_length().map_or(0, |n| n as usize));
    while let Some(chunk) = resp.chunk().await.map_err(BodyError::Transport)? {
        if body.len() + chunk.len() > limit {
            return Err(BodyError::TooLarge(limit));
        }
        body.extend_from_slice(&chunk);
    }
    Ok(body)
}

type OAuthFuture = std::pin::Pin<Box<dyn Future<Output = Result<oauth2::HttpResponse, OAuthHttpError>> + Send>>;

/// An HTTP client for the `oauth2` crate that reads answers with [`read_capped`].
pub fn oauth2_client(http: &reqwest::Client) -> impl Fn(oauth2::HttpRequest) -> OAuthFuture {
    let http = http.clone();
    move |request: oauth2::HttpRequest| {
        let http = http.clone();
        Box::pin(async move {
            let request = reqwest::Request::try_from(request).map_err(BodyError::Transport)?;
            let response = http.execute(request).await.map_err(BodyError::Transport)?;
            let mut builder = oauth2::http::Response::builder().status(response.status()).version(response.version());
            for (name, value) in response.headers() {
                builder = builder.header(name, value);
            }
            let body = read_capped(response, MAX_SMALL_ANSWER).await?;
            Ok(builder.body(body)?)
        })
    }
}

/// What the `oauth2` crate reports when [`oauth2_client`] could not complete a request.
#[derive(Debug, thiserror::Error)]
pub enum OAuthHttpError {
    #[error(transparent)]
    Body(#[from] BodyError),
    #[error("the answer could not be read: {0}")]
    Http(#[from] oauth2::http::Error),
}
