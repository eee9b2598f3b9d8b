//! File I/O for uploads: stage to a temporary file in the target folder,
//! place it with an atomic rename (keeping the previous file aside until the
//! caller commits), and undo on failure.
//!
//! The sequence an upload follows:
//! `stage` (write + fsync a temp file) -> database work -> `place` (rename
//! into place, the old file kept as a backup) -> commit -> `Placed::keep`;
//! if the commit fails, `Placed::undo` puts the old file back (or removes
//! the new one). Dropping a `Staged` removes its temp file.

use std::fs;
use std::io::Write;
use std::path::{Path, PathBuf};

use super::layout::{RelPath, SUBDIR};

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
}

/// Uploads under `<root>/thumbnails/`.
#[derive(Debug, Clone)]
pub struct FileStore {
    root: PathBuf,
    depth: u8,
}

impl FileStore {
    /// `root` is made absolute (against the working directory) so that the
    /// stored `file_uri` is an absolute path.
    pub fn new(root: &Path, depth: u8) -> Self {
        let root = std::path::absolute(root).unwrap_or_else(|_| root.to_path_buf());
        Self { root, depth }
    }

    pub fn root(&self) -> &Path {
        &self.root
    }

    pub fn depth(&self) -> u8 {
        self.depth
    }

    /// `<root>/thumbnails`, the folder served under `/static/thumbnails`.
    pub fn uploads_dir(&self) -> PathBuf {
        self.root.join(SUBDIR)
    }

    /// Writes `bytes` to a temporary file next to where `rel` will live.
    pub async fn stage(&self, rel: &RelPath, bytes: Vec<u8>) -> Result<Staged, FileError> {
        let store = self.clone();
        let rel = rel.clone();
        blocking(move || store.stage_blocking(&rel, &bytes)).await
    }

    /// [`FileStore::stage`] for callers already on a blocking thread (the
    /// upload path stages in the same hop that checks the image).
    pub fn stage_blocking(&self, rel: &RelPath, bytes: &[u8]) -> Result<Staged, FileError> {
        self.stage_one(rel, bytes, true)
    }

    /// Stages many files with one `syncfs` for all of them instead of an
    /// fsync each (the worker's alert stamps: three files an alert, a batch
    /// of hundreds of alerts per transaction). On error, nothing staged is
    /// left behind.
    pub fn stage_many_blocking(
        &self,
        files: &[(RelPath, &[u8])],
    ) -> Result<Vec<Staged>, FileError> {
        let staged = files
            .iter()
            .map(|(rel, bytes)| self.stage_one(rel, bytes, false))
            .collect::<Result<Vec<_>, _>>()?;
        if let Some(first) = staged.first() {
            let dir = first
                .target
                .parent()
                .map_or_else(|| self.root.clone(), Path::to_path_buf);
            let sync = fs::File::open(&dir)
                .and_then(|d| rustix::fs::syncfs(&d).map_err(std::io::Error::from));
            sync.map_err(|source| FileError::Write { path: dir, source })?;
        }
        Ok(staged)
    }

    fn stage_one(&self, rel: &RelPath, bytes: &[u8], sync: bool) -> Result<Staged, FileError> {
        let dir = rel.dir_under(&self.root);
        let target = rel.path_under(&self.root);
        fs::create_dir_all(&dir).map_err(|source| FileError::CreateDir {
            path: dir.clone(),
            source,
        })?;
        let temp = dir.join(format!(".upload-{}.tmp", uuid::Uuid::new_v4().simple()));
        // The Staged guard exists before the first byte, so any failure
        // below removes the partial file.
        let staged = Staged {
            temp: Some(temp.clone()),
            target,
        };
        let write = |path: &Path| -> std::io::Result<()> {
            let mut f = fs::OpenOptions::new()
                .write(true)
                .create_new(true)
                .open(path)?;
            f.write_all(bytes)?;
            if sync {
                f.sync_all()?;
            }
            Ok(())
        };
        write(&temp).map_err(|source| FileError::Write { path: temp, source })?;
        Ok(staged)
    }

    /// Renames a stored file aside (to a hidden name in its folder) until
    /// the caller's commit: [`SetAside::remove`] after it, [`SetAside::undo`]
    /// (or drop) if it fails. Only a file inside `<root>/thumbnails` is
    /// touched: a `file_uri` edited to point elsewhere gives `None`.
    pub async fn set_aside(&self, file_uri: &str) -> Result<Option<SetAside>, FileError> {
        let uploads = self.uploads_dir();
        let path = PathBuf::from(file_uri);
        blocking(move || {
            let Some(real) = stored_file(&uploads, &path) else {
                return Ok(None);
            };
            let aside =
                real.with_file_name(format!(".deleted-{}.tmp", uuid::Uuid::new_v4().simple()));
            fs::rename(&real, &aside).map_err(|source| FileError::Rename {
                from: real.clone(),
                to: aside.clone(),
                source,
            })?;
            Ok(Some(SetAside {
                original: real,
                aside: Some(aside),
            }))
        })
        .await
    }

    /// The real path (links resolved) of `path` if it is a file inside
    /// `<root>/thumbnails`: the only files the service serves or removes.
    pub async fn resolve_stored(&self, path: PathBuf) -> Result<Option<PathBuf>, FileError> {
        let uploads = self.uploads_dir();
        blocking(move || Ok(stored_file(&uploads, &path))).await
    }
}

/// See [`FileStore::resolve_stored`].
fn stored_file(uploads: &Path, path: &Path) -> Option<PathBuf> {
    let (Ok(base), Ok(real)) = (fs::canonicalize(uploads), fs::canonicalize(path)) else {
        return None;
    };
    (real.starts_with(&base) && real.is_file()).then_some(real)
}

/// A stored file renamed aside, pending a commit. Dropping it restores it.
#[derive(Debug)]
pub struct SetAside {
    original: PathBuf,
    aside: Option<PathBuf>,
}

impl SetAside {
    /// Renames the file at `path` aside, if there is one (`None` if not).
    /// For a path the service computed itself (a stamp's kept FITS), so no
    /// link is followed: a link is renamed, never its target.
    pub(super) fn rename_if_present(path: &Path) -> Result<Option<SetAside>, FileError> {
        match fs::symlink_metadata(path) {
            Ok(m) if m.is_file() || m.is_symlink() => {}
            Ok(_) => return Ok(None),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
            Err(source) => {
                return Err(FileError::Remove {
                    path: path.to_path_buf(),
                    source,
                })
            }
        }
        let aside = path.with_file_name(format!(".deleted-{}.tmp", uuid::Uuid::new_v4().simple()));
        match fs::rename(path, &aside) {
            Ok(()) => Ok(Some(SetAside {
                original: path.to_path_buf(),
                aside: Some(aside),
            })),
            // Gone meanwhile: nothing to set aside.
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(source) => Err(FileError::Rename {
                from: path.to_path_buf(),
                to: aside,
                source,
            }),
        }
    }

    /// The commit succeeded: the file goes for good.
    pub fn remove(mut self) {
        if let Some(aside) = self.aside.take() {
            if let Err(e) = fs::remove_file(&aside) {
                tracing::warn!(path = %aside.display(), error = %e, "cannot remove a deleted thumbnail's file");
            }
        }
    }

    /// The commit failed: the file returns.
    pub fn undo(self) {}
}

impl Drop for SetAside {
    fn drop(&mut self) {
        if let Some(aside) = self.aside.take() {
            if let Err(e) = fs::rename(&aside, &self.original) {
                tracing::error!(path = %self.original.display(), error = %e, "cannot restore a file set aside");
            }
        }
    }
}

async fn blocking<T: Send + 'static>(
    f: impl FnOnce() -> Result<T, FileError> + Send + 'static,
) -> Result<T, FileError> {
    tokio::task::spawn_blocking(f)
        .await
        .map_err(|e| FileError::Join(e.to_string()))?
}

/// A fully written temporary file, not yet in place. Dropping it removes it.
#[derive(Debug)]
pub struct Staged {
    temp: Option<PathBuf>,
    target: PathBuf,
}

impl Staged {
    /// Where the file will live.
    pub fn target(&self) -> &Path {
        &self.target
    }

    /// Renames the temp file into place. An existing file there is first
    /// renamed aside, so that [`Placed::undo`] can restore it.
    pub fn place(mut self) -> Result<Placed, FileError> {
        let Some(temp) = self.temp.take() else {
            return Err(FileError::Join("staged file already placed".into()));
        };
        let target = self.target.clone();
        let backup =
            target.with_file_name(format!(".replaced-{}.tmp", uuid::Uuid::new_v4().simple()));
        let had_old = match fs::rename(&target, &backup) {
            Ok(()) => true,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => false,
            Err(source) => {
                let _ = fs::remove_file(&temp);
                return Err(FileError::Rename {
                    from: target,
                    to: backup,
                    source,
                });
            }
        };
        if let Err(source) = fs::rename(&temp, &target) {
            let _ = fs::remove_file(&temp);
            if had_old {
                let _ = fs::rename(&backup, &target);
            }
            return Err(FileError::Rename {
                from: temp,
                to: target,
                source,
            });
        }
        Ok(Placed {
            target,
            backup: had_old.then_some(backup),
            settled: false,
        })
    }
}

impl Drop for Staged {
    fn drop(&mut self) {
        if let Some(temp) = self.temp.take() {
            let _ = fs::remove_file(temp);
        }
    }
}

/// A file in place whose database commit is pending. Dropping it without
/// [`Placed::keep`] undoes the placement.
#[derive(Debug)]
pub struct Placed {
    target: PathBuf,
    backup: Option<PathBuf>,
    settled: bool,
}

impl Placed {
    /// The commit succeeded: drop the previous file.
    pub fn keep(mut self) {
        self.settled = true;
        if let Some(backup) = self.backup.take() {
            if let Err(e) = fs::remove_file(&backup) {
                tracing::warn!(path = %backup.display(), error = %e, "cannot remove the replaced file");
            }
        }
    }

    /// The commit failed: restore the previous file, or remove the new one.
    pub fn undo(mut self) {
        self.settled = true;
        self.restore();
    }

    fn restore(&mut self) {
        let result = match self.backup.take() {
            Some(backup) => fs::rename(&backup, &self.target),
            None => fs::remove_file(&self.target),
        };
        if let Err(e) = result {
            tracing::error!(path = %self.target.display(), error = %e, "cannot undo a file placement");
        }
    }
}

impl Drop for Placed {
    fn drop(&mut self) {
        if !self.settled {
            self.restore();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::surveys::ThumbnailType;

    fn files_in(dir: &Path) -> Vec<PathBuf> {
        let mut out = Vec::new();
        if let Ok(rd) = fs::read_dir(dir) {
            for e in rd.flatten() {
                let p = e.path();
                if p.is_dir() {
                    out.extend(files_in(&p));
                } else {
                    out.push(p);
                }
            }
        }
        out
    }

    #[test]
    fn many_files_are_staged_with_one_sync_and_left_nowhere_when_dropped() {
        let tmp = tempfile::tempdir().expect("tempdir");
        let store = FileStore::new(tmp.path(), 2);
        let files = [
            (
                RelPath::stamp("ZTF1", ThumbnailType::New, Some("ZTF"), 2),
                &b"new"[..],
            ),
            (
                RelPath::stamp("ZTF2", ThumbnailType::Sub, Some("ZTF"), 2),
                &b"sub"[..],
            ),
        ];
        let staged = store.stage_many_blocking(&files).expect("staged");
        assert_eq!(staged.len(), 2);
        let targets: Vec<PathBuf> = staged.iter().map(|s| s.target().to_path_buf()).collect();
        for s in staged {
            s.place().expect("placed").keep();
        }
        assert_eq!(std::fs::read(&targets[1]).expect("file"), b"sub");
        let again = store.stage_many_blocking(&files).expect("staged");
        drop(again);
        assert_eq!(
            files_in(tmp.path()).len(),
            2,
            "dropped stagings leave nothing"
        );
    }

    #[tokio::test]
    async fn stage_place_keep_and_undo() {
        let tmp = tempfile::tempdir().expect("tempdir");
        let store = FileStore::new(tmp.path(), 2);
        let rel = RelPath::new("ZTF1", ThumbnailType::New, 2);

        // Dropped staging leaves nothing.
        let staged = store.stage(&rel, b"one".to_vec()).await.expect("stage");
        drop(staged);
        assert!(files_in(tmp.path()).is_empty());

        // Placed and kept.
        let placed = store
            .stage(&rel, b"one".to_vec())
            .await
            .expect("stage")
            .place()
            .expect("place");
        placed.keep();
        let target = rel.path_under(store.root());
        assert_eq!(fs::read(&target).expect("read"), b"one");

        // Replaced, then undone: the old bytes come back.
        let placed = store
            .stage(&rel, b"two".to_vec())
            .await
            .expect("stage")
            .place()
            .expect("place");
        assert_eq!(fs::read(&target).expect("read"), b"two");
        placed.undo();
        assert_eq!(fs::read(&target).expect("read"), b"one");
        assert_eq!(files_in(tmp.path()), vec![target.clone()]);

        // Replaced and kept: no backup left.
        let placed = store
            .stage(&rel, b"three".to_vec())
            .await
            .expect("stage")
            .place()
            .expect("place");
        placed.keep();
        assert_eq!(files_in(tmp.path()), vec![target.clone()]);

        // A new file undone is removed.
        let other = RelPath::new("ZTF2", ThumbnailType::Ref, 2);
        let placed = store
            .stage(&other, b"x".to_vec())
            .await
            .expect("stage")
            .place()
            .expect("place");
        drop(placed);
        assert_eq!(files_in(tmp.path()), vec![target.clone()]);

        // Removal only inside the uploads folder.
        let outside = tmp.path().join("outside.png");
        fs::write(&outside, b"keep me").expect("write");
        let none = store
            .set_aside(&outside.to_string_lossy())
            .await
            .expect("aside");
        assert!(none.is_none());
        assert!(outside.exists());
        // Set aside and undone: back in place.
        let aside = store
            .set_aside(&target.to_string_lossy())
            .await
            .expect("aside")
            .expect("inside");
        assert!(!target.exists());
        aside.undo();
        assert_eq!(fs::read(&target).expect("read"), b"three");
        // Set aside and removed: gone, nothing left.
        let aside = store
            .set_aside(&target.to_string_lossy())
            .await
            .expect("aside")
            .expect("inside");
        aside.remove();
        assert!(!target.exists());
        assert_eq!(files_in(tmp.path()), vec![outside.clone()]);
    }

    #[tokio::test]
    async fn unwritable_root_is_an_error_and_leaves_nothing() {
        let tmp = tempfile::tempdir().expect("tempdir");
        let file = tmp.path().join("a-file");
        fs::write(&file, b"").expect("write");
        let store = FileStore::new(&file, 2);
        let rel = RelPath::new("ZTF1", ThumbnailType::New, 2);
        let e = store
            .stage(&rel, b"x".to_vec())
            .await
            .expect_err("must fail");
        assert!(matches!(e, FileError::CreateDir { .. }), "{e}");
    }
}
