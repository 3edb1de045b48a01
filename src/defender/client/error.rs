//! Typed errors of the Defender client, each with an explanation in plain words for the UI.
//!
//! No variant ever carries the client secret or an access token: texts that come from the
//! network are scrubbed by the client before they are put into an error.

/// Everything that can go wrong talking to Entra ID and the Defender API.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DefenderError {
    /// AADSTS90002 / 900023: the tenant (directory) id or domain does not exist.
    #[error("unknown tenant")]
    UnknownTenant,
    /// AADSTS700016: no application with this client id in the tenant.
    #[error("unknown client (application) id")]
    UnknownClient,
    /// AADSTS7000215 (or 7000218): the client secret is wrong or missing.
    #[error("wrong client secret")]
    WrongSecret,
    /// AADSTS7000222: the client secret has expired.
    #[error("client secret expired")]
    ExpiredSecret,
    /// AADSTS70011 / 700022: the token scope is not valid.
    #[error("invalid scope")]
    InvalidScope,
    /// AADSTS500011 / 65001: the WindowsDefenderATP API is not consented or not in the tenant.
    #[error("API permissions not consented")]
    ConsentMissing,
    /// 403 from the API and the token lacks the role the call needs.
    #[error("missing permission {permission}")]
    MissingPermission { permission: String },
    /// 429 persisted through the retry budget (or `Retry-After` was longer than allowed).
    #[error("throttled (retry after {retry_after_secs:?} s)")]
    Throttled { retry_after_secs: Option<u64> },
    /// Could not connect (DNS, refused, TLS, reset).
    #[error("unreachable: {0}")]
    Unreachable(String),
    /// The connection broke after the request went out, before its answer arrived whole: the
    /// service may have acted on it.
    #[error("answer lost: {0}")]
    AnswerLost(String),
    /// A request did not complete within the configured time.
    #[error("timed out")]
    Timeout,
    /// Defender's own `ResourceNotFound` (HTTP 404): the entity does not exist, or a listing has
    /// nothing to list ("If there are no recent machines, you see 404 Not Found",
    /// <https://learn.microsoft.com/en-us/defender-endpoint/api/get-machines>).
    #[error("not found")]
    NotFound,
    /// A 404 without Defender's error body (an HTML page from a proxy, a wrong API address):
    /// never taken for an empty listing. The answer's content type. (A 404 in Defender's envelope
    /// with another code than `ResourceNotFound` is `Api`.)
    #[error("HTTP 404 that is not Defender's: a {0} answer")]
    ForeignNotFound(String),
    /// An action of the same type is already pending for the machine.
    #[error("an action of this type is already in progress for the machine")]
    ActionAlreadyPending,
    /// 400 `OsPlatformNotSupported`: the action is not offered for the device's operating system
    /// (`https://learn.microsoft.com/en-us/defender-endpoint/api/common-errors`).
    #[error("not supported on this device's operating system: {0}")]
    OsNotSupported(String),
    /// 400 `ClientVersionNotSupported`: the device's Defender client is too old for the action
    /// (same page: "{The requested action} is supported on client version {…} and above.").
    #[error("needs a newer Defender client on the device: {0}")]
    ClientVersionNotSupported(String),
    /// The answer could not be understood (malformed/truncated JSON, wrong types, no ids).
    #[error("bad response: {0}")]
    BadResponse(String),
    /// An answer larger than the client reads (1 MiB from the sign-in host, 64 MiB from the
    /// API): not read further, nothing changed.
    #[error("answer larger than {limit_mib} MiB")]
    TooLarge { limit_mib: usize },
    /// A link pointed to a host other than the configured API host; nothing was fetched.
    #[error("refused link to foreign host {0}")]
    ForeignHost(String),
    /// Paging made no progress (a page repeated the previous one, or a link repeated).
    #[error("paging loop detected")]
    PagingLoop,
    /// More pages than [`super::ClientOptions::max_pages`].
    #[error("more than {0} pages")]
    PageLimit(usize),
    /// A caller-supplied value is invalid (machine id, comment, URL, ...); nothing was sent.
    #[error("invalid argument: {0}")]
    InvalidArgument(String),
    /// Any other error answer.
    #[error("HTTP {status} {code}: {message}")]
    Api { status: u16, code: String, message: String },
}

impl DefenderError {
    /// One or two sentences for an administrator: what happened and what to do.
    pub fn plain_words(&self) -> String {
        match self {
            DefenderError::UnknownTenant => "Microsoft Entra ID does not know this tenant (AADSTS90002): check the Directory (tenant) ID on the app registration's overview page.".into(),
            DefenderError::UnknownClient => "No application with this client ID exists in the tenant (AADSTS700016): check the Application (client) ID, and that the app is registered in this tenant.".into(),
            DefenderError::WrongSecret => "The client secret is wrong (AADSTS7000215): paste the secret's Value (not its Secret ID) from Certificates & secrets, or create a new secret.".into(),
            DefenderError::ExpiredSecret => "The client secret has expired (AADSTS7000222): create a new secret in Entra ID and save it here.".into(),
            DefenderError::InvalidScope => "Microsoft Entra ID rejected the requested API scope (AADSTS70011): check the cloud selection or the custom scope setting.".into(),
            DefenderError::ConsentMissing => "The Defender API (WindowsDefenderATP) is not available to this app (AADSTS500011): add its API permissions and click \"Grant admin consent\".".into(),
            DefenderError::MissingPermission { permission } => format!("The app lacks the permission {permission}: add it under API permissions (APIs my organization uses > WindowsDefenderATP > Application permissions) and grant admin consent."),
            DefenderError::Throttled { retry_after_secs } => match retry_after_secs {
                Some(s) => format!("Defender is throttling this app (HTTP 429); it asked to wait {s} seconds. The next sync will continue."),
                None => "Defender is throttling this app (HTTP 429) and kept refusing after several retries. The next sync will continue.".into(),
            },
            DefenderError::Unreachable(why) => format!("Could not connect to Microsoft ({why}). Check the network, proxy and firewall, and the cloud/URL settings."),
            DefenderError::AnswerLost(why) => format!("The request may have reached Microsoft, but the connection broke before its answer arrived ({why})."),
            DefenderError::Timeout => "Microsoft did not answer in time. Try again later; if it persists, check the network or raise the timeout.".into(),
            DefenderError::NotFound => "Defender does not know this item (HTTP 404); it may have been removed or merged.".into(),
            DefenderError::ForeignNotFound(kind) => format!("The API address answered 404 Not Found without Microsoft Defender's own error (a {kind} answer): the API base URL may be wrong, or a proxy in between answered. Nothing was changed; check the API address and the proxy."),
            DefenderError::ActionAlreadyPending => "An action of this kind is already in progress for this device; wait until it finishes.".into(),
            DefenderError::OsNotSupported(msg) => format!("Microsoft Defender does not support this action on this device's operating system (Defender says: {msg})."),
            DefenderError::ClientVersionNotSupported(msg) => format!("Microsoft Defender needs a newer Defender client on the device for this action (Defender says: {msg}). Update Defender on the device, then try again."),
            DefenderError::BadResponse(what) => format!("Defender sent an answer that could not be understood ({what}). Nothing was changed; the next sync will try again."),
            DefenderError::TooLarge { limit_mib } => format!("The answer was more than {limit_mib} MiB, far larger than Defender or Entra ID send; it was not read and nothing was changed. Check the sign-in and API addresses."),
            DefenderError::ForeignHost(host) => format!("Defender's answer pointed to another host ({host}); the link was not followed for safety."),
            DefenderError::PagingLoop => "Defender returned the same page twice; paging was stopped to avoid an endless loop. The next sync will try again.".into(),
            DefenderError::PageLimit(n) => format!("The listing had more than {n} pages and was stopped."),
            DefenderError::InvalidArgument(what) => what.clone(),
            DefenderError::Api { status, code, message } => {
                let base = match *status {
                    401 => "Defender rejected the access token (HTTP 401) even after getting a new one".to_string(),
                    403 => "Defender refused the call (HTTP 403)".to_string(),
                    404 => "Defender answered 404 Not Found without its \"ResourceNotFound\", which is what it says of \
                            an empty listing, so nothing was taken for empty and nothing changed; if it persists, check \
                            the API address (cloud and region)"
                        .to_string(),
                    s if s >= 500 => format!("Defender had an internal problem (HTTP {s}); it kept failing after retries"),
                    s => format!("Defender answered HTTP {s}"),
                };
                if message.is_empty() && code.is_empty() {
                    format!("{base}.")
                } else if message.is_empty() {
                    format!("{base} ({code}).")
                } else {
                    format!("{base} ({code}): {message}")
                }
            }
        }
    }

    /// Worth trying again later without changing the configuration.
    pub fn is_transient(&self) -> bool {
        match self {
            DefenderError::Throttled { .. }
            | DefenderError::Unreachable(_)
            | DefenderError::AnswerLost(_)
            | DefenderError::Timeout
            | DefenderError::BadResponse(_)
            | DefenderError::PagingLoop => true,
            DefenderError::Api { status, .. } => *status >= 500,
            _ => false,
        }
    }

    /// A request that changes something may have been carried out although this error came
    /// back: the request went out and its answer was lost, late, cut or failed on the service's
    /// side (`L:common-errors`: 5xx). Only a listing of what the service did can tell.
    pub fn may_have_acted(&self) -> bool {
        match self {
            DefenderError::AnswerLost(_)
            | DefenderError::Timeout
            | DefenderError::BadResponse(_)
            | DefenderError::TooLarge { .. } => true,
            DefenderError::Api { status, .. } => *status >= 500,
            _ => false,
        }
    }

    /// The configuration (tenant, client, secret, permissions, cloud) needs fixing.
    pub fn is_configuration(&self) -> bool {
        matches!(
            self,
            DefenderError::UnknownTenant
                | DefenderError::UnknownClient
                | DefenderError::WrongSecret
                | DefenderError::ExpiredSecret
                | DefenderError::InvalidScope
                | DefenderError::ConsentMissing
                | DefenderError::MissingPermission { .. }
        )
    }
}
