//! What can go wrong writing or reading stored files, on either backend.

use std::path::PathBuf;
use std::sync::Arc;

#[derive(Debug, thiserror::Error)]
pub enum FileError {
    #[error("cannot create folder {path}")]
    CreateDir {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("cannot write {path}")]
    Write {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("cannot rename {from} to {to}")]
    Rename {
        from: PathBuf,
        to: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("cannot remove {path}")]
    Remove {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("cannot gzip a FITS cutout")]
    Gzip(#[source] std::io::Error),
    #[error("file task failed: {0}")]
    Join(String),
    /// The bucket refused or did not answer (after the client's retries).
    /// `reason` is the store's answer in short (`403 AccessDenied: ...`);
    /// `cause` the whole error, for debugging.
    #[error("cannot {op} {key} in the {at}: {reason}")]
    Bucket {
        op: &'static str,
        key: String,
        /// `bucket B at ENDPOINT`.
        at: String,
        reason: String,
        cause: Arc<object_store::Error>,
    },
}

impl FileError {
    /// The storage itself is failing (a bucket that does not answer or
    /// refuses), not this write: an upload gets 503, a delivery waits.
    pub fn is_unavailable(&self) -> bool {
        matches!(self, FileError::Bucket { .. })
    }
}
