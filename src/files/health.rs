//! Whether the file storage takes writes: a failed write of the storage's
//! own making (a full disk, a read-only filesystem, a bucket that does not
//! answer) is counted (`thumbnails_storage_errors_total{kind}`) and kept
//! until the next write succeeds, for `/readyz`.

use std::collections::BTreeMap;
use std::sync::{Mutex, OnceLock};

use super::error::FileError;

/// What went wrong with the storage itself, as the metric's `kind`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StorageFault {
    /// No space (or quota) left.
    Full,
    ReadOnly,
    /// A bucket that refuses or does not answer.
    Unavailable,
}

impl StorageFault {
    pub fn as_str(self) -> &'static str {
        match self {
            StorageFault::Full => "full",
            StorageFault::ReadOnly => "read_only",
            StorageFault::Unavailable => "unavailable",
        }
    }

    /// The fault behind `e`, if it is the storage's rather than one write's.
    pub fn of(e: &FileError) -> Option<Self> {
        let io = match e {
            FileError::Bucket { .. } => return Some(StorageFault::Unavailable),
            FileError::CreateDir { source, .. }
            | FileError::Write { source, .. }
            | FileError::Rename { source, .. }
            | FileError::Remove { source, .. } => source,
            FileError::Gzip(_) | FileError::Join(_) => return None,
        };
        match io.kind() {
            std::io::ErrorKind::StorageFull | std::io::ErrorKind::QuotaExceeded => {
                Some(StorageFault::Full)
            }
            std::io::ErrorKind::ReadOnlyFilesystem => Some(StorageFault::ReadOnly),
            _ => None,
        }
    }
}

fn table() -> &'static Mutex<BTreeMap<String, String>> {
    static TABLE: OnceLock<Mutex<BTreeMap<String, String>>> = OnceLock::new();
    TABLE.get_or_init(|| Mutex::new(BTreeMap::new()))
}

/// Records how a write to `storage` (a [`super::FileStore::describe`])
/// went.
pub fn record<T>(storage: &str, result: &Result<T, FileError>) {
    match result {
        Ok(_) => {
            if let Ok(mut t) = table().lock() {
                if !t.is_empty() {
                    t.remove(storage);
                }
            }
        }
        Err(e) => {
            let Some(fault) = StorageFault::of(e) else {
                return;
            };
            metrics::counter!("thumbnails_storage_errors_total", "kind" => fault.as_str())
                .increment(1);
            if let Ok(mut t) = table().lock() {
                let cause = crate::telemetry::cause_chain(e);
                t.insert(
                    storage.to_string(),
                    format!(
                        "the {storage} is {}: {cause}",
                        match fault {
                            StorageFault::Full => "full",
                            StorageFault::ReadOnly => "read-only",
                            StorageFault::Unavailable => "unavailable",
                        }
                    ),
                );
            }
        }
    }
}

/// The fault in force for `storage`, if its last write failed so.
pub fn problem(storage: &str) -> Option<String> {
    table().lock().ok()?.get(storage).cloned()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_full_disk_is_recorded_until_a_write_succeeds() {
        let full = FileError::Write {
            path: "/x".into(),
            source: std::io::Error::from(std::io::ErrorKind::StorageFull),
        };
        assert_eq!(StorageFault::of(&full), Some(StorageFault::Full));
        let ro = FileError::CreateDir {
            path: "/x".into(),
            source: std::io::Error::from(std::io::ErrorKind::ReadOnlyFilesystem),
        };
        assert_eq!(StorageFault::of(&ro), Some(StorageFault::ReadOnly));
        let other = FileError::Join("x".into());
        assert_eq!(StorageFault::of(&other), None);
        record::<()>("folder /health-test", &Err(full));
        assert!(problem("folder /health-test").is_some_and(|p| p.contains("is full")));
        record("folder /health-test", &Ok(()));
        assert_eq!(problem("folder /health-test"), None);
    }
}
