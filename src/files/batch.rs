//! Many files placed before one commit and kept or undone together: the
//! upload committer's batches and the worker's alert stamps.
//!
//! A batch may write the same file twice (two alerts of one object): only
//! the last write of each file is placed, which leaves the same file as
//! placing both in order, and an undo puts back what was there before the
//! batch. The files, all different then, go into place concurrently (a
//! bucket's writes are network round trips).

use std::collections::HashMap;

use futures_util::{stream, StreamExt};

use super::beside::{FitsApplied, FitsWrite};
use super::error::FileError;
use super::staged::{Placed, Staged};

/// Bucket writes in flight at once for one batch.
const CONCURRENT: usize = 64;

/// One stamp's or upload's files: its PNG and what becomes of the FITS
/// beside it.
#[derive(Debug)]
pub struct Write {
    pub png: Staged,
    pub fits: Option<FitsWrite>,
}

/// A batch's files in place, pending the commit.
#[derive(Debug, Default)]
pub struct Applied {
    done: Vec<(Placed, Option<FitsApplied>)>,
}

impl Write {
    /// The write of a file whose row is new: nothing was there before
    /// (an object left without a row is overwritten, and removed if the
    /// commit fails), so a bucket reads nothing back for an undo and
    /// clears no stale FITS (two requests a stamp saved). A folder's checks
    /// cost next to nothing and stay.
    pub fn into_new(self) -> Self {
        let remote = self.png.is_remote();
        Write {
            png: self.png.into_new(),
            fits: match self.fits {
                Some(FitsWrite::Put(staged)) => Some(FitsWrite::Put(staged.into_new())),
                Some(FitsWrite::Clear(_)) if remote => None,
                other => other,
            },
        }
    }

    async fn apply(self) -> Result<(Placed, Option<FitsApplied>), FileError> {
        let png = self.png.place().await?;
        match self.fits {
            None => Ok((png, None)),
            Some(fits) => match fits.apply().await {
                Ok(fits) => Ok((png, Some(fits))),
                Err(e) => {
                    png.undo().await;
                    Err(e)
                }
            },
        }
    }
}

/// Places every write (the last one of each file, see the module doc). On
/// an error, what was placed is undone and the first error returned.
pub async fn apply_all(writes: Vec<Write>) -> Result<Applied, FileError> {
    let mut last: HashMap<String, usize> = HashMap::with_capacity(writes.len());
    for (i, w) in writes.iter().enumerate() {
        last.insert(w.png.file_uri(), i);
    }
    let writes: Vec<Write> = writes
        .into_iter()
        .enumerate()
        .filter(|(i, w)| last.get(&w.png.file_uri()) == Some(i))
        .map(|(_, w)| w)
        .collect();
    let concurrent = if writes.iter().any(|w| w.png.is_remote()) {
        CONCURRENT
    } else {
        1
    };
    let results: Vec<_> = stream::iter(writes)
        .map(Write::apply)
        .buffer_unordered(concurrent)
        .collect()
        .await;
    let mut applied = Applied::default();
    let mut failure = None;
    for r in results {
        match r {
            Ok(done) => applied.done.push(done),
            Err(e) => {
                failure.get_or_insert(e);
            }
        }
    }
    match failure {
        None => Ok(applied),
        Some(e) => {
            applied.undo().await;
            Err(e)
        }
    }
}

impl Applied {
    /// The commit succeeded: the previous files go.
    pub async fn keep(self) {
        for (png, fits) in self.done {
            png.keep();
            if let Some(f) = fits {
                f.keep().await;
            }
        }
    }

    /// The commit failed: every file as it was before the batch.
    pub async fn undo(self) {
        let concurrent = CONCURRENT;
        stream::iter(self.done)
            .for_each_concurrent(concurrent, |(png, fits)| async move {
                if let Some(f) = fits {
                    f.undo().await;
                }
                png.undo().await;
            })
            .await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::files::{FileStore, RelPath};
    use crate::surveys::ThumbnailType;

    #[tokio::test]
    async fn the_last_write_of_a_file_wins_and_undo_restores_the_first() {
        let tmp = tempfile::tempdir().expect("tempdir");
        let files = FileStore::new(tmp.path(), 2);
        let rel = RelPath::new("ZTF1", ThumbnailType::New, 2);
        let other = RelPath::new("ZTF2", ThumbnailType::New, 2);
        let path = rel.path_under(files.root());
        let write = |rel: &RelPath, bytes: &[u8]| Write {
            png: files.stage_blocking(rel, bytes).expect("staged"),
            fits: None,
        };
        apply_all(vec![write(&rel, b"before")])
            .await
            .expect("applied")
            .keep()
            .await;
        let batch = vec![
            write(&rel, b"one"),
            write(&other, b"x"),
            write(&rel, b"two"),
        ];
        let applied = apply_all(batch).await.expect("applied");
        assert_eq!(std::fs::read(&path).expect("file"), b"two");
        applied.undo().await;
        assert_eq!(std::fs::read(&path).expect("file"), b"before");
        assert!(!other.path_under(files.root()).exists());
        let names: Vec<_> = std::fs::read_dir(path.parent().expect("dir"))
            .expect("dir")
            .flatten()
            .map(|e| e.file_name())
            .collect();
        assert_eq!(names.len(), 1, "no temp or backup left: {names:?}");
    }
}
