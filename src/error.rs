//! The one error type at the HTTP edge.
//!
//! Handlers return `Result<_, AppError>`. Inside the library, use `anyhow::Error` for failures
//! nobody can act on (they become a 500 with a generic message; the detail goes to the log
//! only) and the specific variants for what a person or a client can correct. How an error is
//! shown — full page, htmx fragment or JSON — is decided by `web::errors`, which can see the
//! request.

use actix_web::http::StatusCode;
use actix_web::{HttpResponse, ResponseError};

#[derive(Debug, thiserror::Error)]
pub enum AppError {
    #[error("{0}")]
    BadRequest(String),
    /// Not signed in (pages) or no valid API token (API).
    #[error("Please sign in.")]
    LoginRequired,
    #[error("You do not have permission to do this.")]
    Forbidden,
    /// Refused for a reason the person should read (e.g. a failed CSRF check).
    #[error("{0}")]
    Refused(String),
    #[error("The page or item was not found.")]
    NotFound,
    #[error("{0}")]
    Conflict(String),
    #[error("{0}")]
    TooManyRequests(String),
    #[error("The request body is too large.")]
    PayloadTooLarge,
    #[error("Something went wrong on our side. It has been logged; please try again.")]
    Internal(#[from] anyhow::Error),
}

impl AppError {
    pub fn bad_request(msg: impl Into<String>) -> Self {
        Self::BadRequest(msg.into())
    }

    /// A short machine-readable code for JSON clients.
    pub fn code(&self) -> &'static str {
        match self {
            AppError::BadRequest(_) => "bad_request",
            AppError::LoginRequired => "unauthorized",
            AppError::Forbidden | AppError::Refused(_) => "forbidden",
            AppError::NotFound => "not_found",
            AppError::Conflict(_) => "conflict",
            AppError::TooManyRequests(_) => "too_many_requests",
            AppError::PayloadTooLarge => "payload_too_large",
            AppError::Internal(_) => "internal_error",
        }
    }
}

/// A response rule or decision refused for a reason the person can correct: 400, 409, 403 or 404.
impl From<crate::rules::Refused> for AppError {
    fn from(r: crate::rules::Refused) -> Self {
        use crate::rules::Refused;
        match r {
            Refused::Invalid(why) => AppError::BadRequest(why),
            Refused::NameTaken => AppError::Conflict(r.to_string()),
            Refused::Conflict(why) => AppError::Conflict(why),
            Refused::NotAllowed(why) => AppError::Refused(why),
            Refused::NotFound => AppError::NotFound,
        }
    }
}

/// A profile's Defender tag the admin can correct: 400 or 404.
impl From<crate::defender::tags::Refused> for AppError {
    fn from(r: crate::defender::tags::Refused) -> Self {
        use crate::defender::tags::Refused;
        match r {
            Refused::Invalid(why) => AppError::BadRequest(why),
            Refused::NoSuchProfile => AppError::NotFound,
        }
    }
}

/// A change of event destinations the admin can correct: 400, 409 or 404.
impl From<crate::notify::settings::Refused> for AppError {
    fn from(r: crate::notify::settings::Refused) -> Self {
        use crate::notify::settings::Refused;
        match r {
            Refused::Invalid(why) => AppError::BadRequest(why),
            Refused::NameTaken => AppError::Conflict(r.to_string()),
            Refused::NotFound => AppError::NotFound,
        }
    }
}

impl From<crate::db::DbError> for AppError {
    fn from(e: crate::db::DbError) -> Self {
        AppError::Internal(e.into())
    }
}

impl ResponseError for AppError {
    fn status_code(&self) -> StatusCode {
        match self {
            AppError::BadRequest(_) => StatusCode::BAD_REQUEST,
            AppError::LoginRequired => StatusCode::UNAUTHORIZED,
            AppError::Forbidden | AppError::Refused(_) => StatusCode::FORBIDDEN,
            AppError::NotFound => StatusCode::NOT_FOUND,
            AppError::Conflict(_) => StatusCode::CONFLICT,
            AppError::TooManyRequests(_) => StatusCode::TOO_MANY_REQUESTS,
            AppError::PayloadTooLarge => StatusCode::PAYLOAD_TOO_LARGE,
            AppError::Internal(_) => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }

    /// A plain response; `web::errors` replaces it with the right presentation.
    fn error_response(&self) -> HttpResponse {
        if let AppError::Internal(e) = self {
            tracing::error!(error = %format!("{e:#}"), "internal error");
        }
        HttpResponse::build(self.status_code()).content_type("text/plain; charset=utf-8").body(self.to_string())
    }
}
