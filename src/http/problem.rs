//! The error answer every handler returns: JSON `{"error", "accepted"}` with its status,
//! and how engine errors map to statuses (bad input 400, shutting down 503, never a 500 for
//! bad input).

use actix_web::http::StatusCode;
use actix_web::{HttpResponse, ResponseError};
use serde::Serialize;

/// An error answer.
#[derive(Debug, Serialize)]
pub(super) struct Problem {
    #[serde(skip)]
    pub(super) status: StatusCode,
    pub(super) error: String,
    pub(super) accepted: String,
}

impl Problem {
    pub(super) fn new(
        status: StatusCode,
        error: impl Into<String>,
        accepted: impl Into<String>,
    ) -> Self {
        Problem {
            status,
            error: error.into(),
            accepted: accepted.into(),
        }
    }
    pub(super) fn bad(error: impl Into<String>, accepted: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, error, accepted)
    }
    pub(super) fn not_found(error: impl Into<String>) -> Self {
        Self::new(StatusCode::NOT_FOUND, error, "an existing resource")
    }
}

impl std::fmt::Display for Problem {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.error)
    }
}

impl ResponseError for Problem {
    fn status_code(&self) -> StatusCode {
        self.status
    }
    fn error_response(&self) -> HttpResponse {
        HttpResponse::build(self.status).json(self)
    }
}

impl From<crate::Error> for Problem {
    fn from(e: crate::Error) -> Self {
        match e {
            crate::Error::NotRunning => Problem::new(
                StatusCode::SERVICE_UNAVAILABLE,
                e.to_string(),
                "a running perfvisor",
            ),
            crate::Error::Silence(crate::SilenceError::Unavailable { .. }) => Problem::new(
                StatusCode::SERVICE_UNAVAILABLE,
                e.to_string(),
                "the same call again once the alert dispatcher has restarted",
            ),
            crate::Error::InvalidDaemon { .. } | crate::Error::Silence(_) => {
                Problem::bad(e.to_string(), "see the message")
            }
            crate::Error::Storage(ref s)
                if matches!(s, crate::StorageError::InvalidQuery { .. }) =>
            {
                Problem::bad(e.to_string(), "see the message")
            }
            other => Problem::new(
                StatusCode::INTERNAL_SERVER_ERROR,
                other.to_string(),
                "a working perfvisor",
            ),
        }
    }
}

pub(super) type Answer = Result<HttpResponse, Problem>;
