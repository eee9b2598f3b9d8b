//! The one place errors become HTTP responses. 4xx carry their message to
//! the client; 5xx carry a short public message and are logged with their
//! cause chain.

use axum::extract::rejection::{BytesRejection, PathRejection};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde_json::json;

use crate::store::committer::CommitError;
use crate::store::retry;

#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    #[error("{0}")]
    BadRequest(String),
    #[error("{0}")]
    Unauthorized(String),
    #[error("{0}")]
    Forbidden(String),
    #[error("{0}")]
    NotFound(String),
    #[error("{0}")]
    TooLarge(String),
    /// A failure of ours or of a dependency: `public` goes to the client,
    /// `cause` to the log.
    #[error("{public}")]
    Internal {
        public: String,
        #[source]
        cause: anyhow::Error,
    },
    #[error("{0}")]
    Unavailable(String),
    /// 507: the file storage is full.
    #[error("{0}")]
    InsufficientStorage(String),
}

/// A database error behind a request: 503 when the database cannot be
/// reached (the component's outage line says so, once, not each request),
/// else 500 with its cause logged.
pub fn db_down(e: sea_orm::DbErr) -> ApiError {
    if retry::is_connection(&e) {
        database_unavailable()
    } else {
        ApiError::internal("the database is unavailable", e)
    }
}

/// An upload the committer did not record: 503 when the database cannot be
/// reached, else 500 with `public` and the cause logged.
pub fn commit_failed(e: CommitError, public: &str) -> ApiError {
    if e.is_unavailable() {
        database_unavailable()
    } else {
        ApiError::internal(public.to_owned(), e)
    }
}

fn database_unavailable() -> ApiError {
    ApiError::Unavailable("The database is unavailable; try again later".into())
}

/// A file that could not be stored: 507 when the storage is full, 503 when
/// it is read-only or (a bucket) does not answer or refuses (the cause is
/// logged), else 500.
pub fn storage_failed(e: std::sync::Arc<crate::files::FileError>) -> ApiError {
    use crate::files::health::StorageFault;
    let Some(fault) = StorageFault::of(&e) else {
        return ApiError::internal("cannot write the file to storage", e);
    };
    tracing::warn!(error = %crate::telemetry::cause_chain(&*e), "file storage refuses writes");
    match fault {
        StorageFault::Full => ApiError::InsufficientStorage(
            "The file storage is full; try again once space is freed".into(),
        ),
        StorageFault::ReadOnly => {
            ApiError::Unavailable("The file storage is read-only; try again later".into())
        }
        StorageFault::Unavailable => {
            ApiError::Unavailable("The file storage does not answer; try again later".into())
        }
    }
}

impl ApiError {
    pub fn internal(public: impl Into<String>, cause: impl Into<anyhow::Error>) -> Self {
        Self::Internal {
            public: public.into(),
            cause: cause.into(),
        }
    }

    pub fn status(&self) -> StatusCode {
        match self {
            Self::BadRequest(_) => StatusCode::BAD_REQUEST,
            Self::Unauthorized(_) => StatusCode::UNAUTHORIZED,
            Self::Forbidden(_) => StatusCode::FORBIDDEN,
            Self::NotFound(_) => StatusCode::NOT_FOUND,
            Self::TooLarge(_) => StatusCode::PAYLOAD_TOO_LARGE,
            Self::Internal { .. } => StatusCode::INTERNAL_SERVER_ERROR,
            Self::Unavailable(_) => StatusCode::SERVICE_UNAVAILABLE,
            Self::InsufficientStorage(_) => StatusCode::INSUFFICIENT_STORAGE,
        }
    }

    /// Adds SkyPortal's prefix (e.g. "Thumbnail failed to post: ") to the
    /// client-facing message.
    pub fn prefixed(self, prefix: &str) -> Self {
        match self {
            Self::BadRequest(m) => Self::BadRequest(format!("{prefix}{m}")),
            Self::TooLarge(m) => Self::TooLarge(format!("{prefix}{m}")),
            Self::Internal { public, cause } => Self::Internal {
                public: format!("{prefix}{public}"),
                cause,
            },
            Self::Unavailable(m) => Self::Unavailable(format!("{prefix}{m}")),
            Self::InsufficientStorage(m) => Self::InsufficientStorage(format!("{prefix}{m}")),
            other => other,
        }
    }
}

pub use crate::telemetry::cause_chain;

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let status = self.status();
        if let Self::Internal { public, cause } = &self {
            tracing::error!(status = status.as_u16(), message = %public, cause = %format!("{cause:#}"), "request failed");
        } else if status.is_server_error() {
            tracing::warn!(status = status.as_u16(), message = %self, "request failed");
        }
        let body = json!({"status": "error", "message": self.to_string()});
        (status, Json(body)).into_response()
    }
}

fn body_rejection(status: StatusCode, text: String) -> ApiError {
    if status == StatusCode::PAYLOAD_TOO_LARGE {
        ApiError::TooLarge(format!("Request body too large: {text}"))
    } else if status.is_server_error() {
        ApiError::internal("cannot read the request body", anyhow::anyhow!(text))
    } else {
        ApiError::BadRequest(text)
    }
}

impl From<BytesRejection> for ApiError {
    fn from(r: BytesRejection) -> Self {
        body_rejection(r.status(), r.body_text())
    }
}

impl From<PathRejection> for ApiError {
    fn from(r: PathRejection) -> Self {
        ApiError::BadRequest(format!("Invalid path: {}", r.body_text()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn statuses_and_prefixes() {
        let cases = [
            (ApiError::BadRequest("b".into()), 400, "P: b"),
            (ApiError::Unauthorized("u".into()), 401, "u"),
            (ApiError::Forbidden("f".into()), 403, "f"),
            (ApiError::NotFound("n".into()), 404, "n"),
            (ApiError::TooLarge("t".into()), 413, "P: t"),
            (
                ApiError::internal("public", anyhow::anyhow!("secret cause")),
                500,
                "P: public",
            ),
            (ApiError::Unavailable("d".into()), 503, "P: d"),
        ];
        for (e, status, message) in cases {
            let e = e.prefixed("P: ");
            assert_eq!(e.status().as_u16(), status);
            // The client sees the public message only, never the cause.
            assert_eq!(e.to_string(), message);
        }
    }

    #[test]
    fn cause_chain_is_one_line() {
        let e = std::io::Error::other("disk on fire");
        let outer = crate::files::FileError::Write {
            path: "/x".into(),
            source: e,
        };
        assert_eq!(cause_chain(&outer), "cannot write /x: disk on fire");
    }
}
