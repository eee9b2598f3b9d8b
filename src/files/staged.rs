//! A write's steps as values, on either backend: a [`Staged`] file goes
//! into place before the commit ([`Placed`]: kept after it, undone if it
//! fails); a stored file to delete is [`SetAside`] until the commit; a
//! stale kept FITS is [`Clear`]ed. Folder: temp files and renames; bucket:
//! bytes held in memory, PUT and DELETE.

use std::fs;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use bytes::Bytes;
use object_store::path::Path as Key;

use super::bucket::Bucket;
use super::error::FileError;
use super::fits::fits_beside;

/// A stored file set aside, pending a commit. Dropping it restores it.
#[derive(Debug)]
pub struct SetAside {
    pub(super) inner: AsideInner,
}

#[derive(Debug)]
pub(super) enum AsideInner {
    /// Renamed to `aside` (until removed or restored).
    Folder {
        original: PathBuf,
        aside: Option<PathBuf>,
    },
    /// Untouched until [`SetAside::remove`].
    Bucket { bucket: Arc<Bucket>, key: Key },
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
                inner: AsideInner::Folder {
                    original: path.to_path_buf(),
                    aside: Some(aside),
                },
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

    /// The commit succeeded: the file goes for good. A failure is logged
    /// (the object is then an orphan for `files audit`).
    pub async fn remove(mut self) {
        match &mut self.inner {
            AsideInner::Folder { aside, .. } => {
                if let Some(aside) = aside.take() {
                    if let Err(e) = fs::remove_file(&aside) {
                        tracing::warn!(path = %aside.display(), error = %e, "cannot remove a deleted thumbnail's file");
                    }
                }
            }
            AsideInner::Bucket { bucket, key } => {
                if let Err(e) = bucket.delete(key).await {
                    tracing::warn!(error = %crate::telemetry::cause_chain(&e), "cannot remove a deleted thumbnail's object");
                }
            }
        }
    }

    /// The commit failed: the file returns.
    pub fn undo(self) {}
}

impl Drop for SetAside {
    fn drop(&mut self) {
        if let AsideInner::Folder { original, aside } = &mut self.inner {
            if let Some(aside) = aside.take() {
                if let Err(e) = fs::rename(&aside, &*original) {
                    tracing::error!(path = %original.display(), error = %e, "cannot restore a file set aside");
                }
            }
        }
    }
}

/// A file to remove before a commit (a stale kept FITS beside a stamp), at
/// a place the service computed itself.
#[derive(Debug)]
pub struct Clear {
    inner: ClearInner,
}

#[derive(Debug)]
enum ClearInner {
    Folder(PathBuf),
    Bucket(Arc<Bucket>, Key),
}

impl Clear {
    /// Folder: renames the file aside (no link followed). Bucket: the
    /// object goes at [`SetAside::remove`]. `None`: nothing there.
    pub(super) async fn apply(self) -> Result<Option<SetAside>, FileError> {
        match self.inner {
            ClearInner::Folder(path) => SetAside::rename_if_present(&path),
            ClearInner::Bucket(bucket, key) => Ok(Some(SetAside {
                inner: AsideInner::Bucket { bucket, key },
            })),
        }
    }
}

/// A file ready to go into place. Dropping it removes its temp file.
#[derive(Debug)]
pub struct Staged {
    pub(super) inner: StagedInner,
}

#[derive(Debug)]
pub(super) enum StagedInner {
    Folder {
        temp: Option<PathBuf>,
        target: PathBuf,
    },
    Bucket {
        bucket: Arc<Bucket>,
        key: Key,
        bytes: Bytes,
        /// Nothing is there before (see [`Staged::into_new`]).
        new: bool,
    },
}

impl Staged {
    /// A file known to be new (its row did not exist): a bucket does not
    /// read what is there before placing it. A folder's rename costs
    /// nothing more either way and is unchanged.
    pub fn into_new(mut self) -> Self {
        if let StagedInner::Bucket { new, .. } = &mut self.inner {
            *new = true;
        }
        self
    }

    /// The `file_uri` the row stores: the file's absolute path, or
    /// `s3://BUCKET/KEY`.
    pub fn file_uri(&self) -> String {
        match &self.inner {
            StagedInner::Folder { target, .. } => target.to_string_lossy().into_owned(),
            StagedInner::Bucket { bucket, key, .. } => bucket.uri(key),
        }
    }

    /// The removal of the kept FITS beside this PNG, if it is an alert
    /// stamp's (see `FitsWrite`).
    pub(super) fn fits_clear(&self) -> Option<Clear> {
        let inner = match &self.inner {
            StagedInner::Folder { target, .. } => ClearInner::Folder(fits_beside(target)?),
            StagedInner::Bucket { bucket, key, .. } => {
                let fits = fits_beside(Path::new(key.as_ref()))?;
                ClearInner::Bucket(bucket.clone(), Key::from(fits.to_string_lossy().as_ref()))
            }
        };
        Some(Clear { inner })
    }

    /// Whether the file goes to a bucket (placed with network round trips).
    pub fn is_remote(&self) -> bool {
        matches!(self.inner, StagedInner::Bucket { .. })
    }

    /// The temporary file of a folder staging (its target once placed).
    pub(super) fn temp_path(&self) -> &Path {
        match &self.inner {
            StagedInner::Folder { temp, target } => temp.as_deref().unwrap_or(target),
            StagedInner::Bucket { .. } => Path::new(""),
        }
    }

    /// Puts the file in place. What was there before is kept (folder: a
    /// hidden file; bucket: its bytes) so that [`Placed::undo`] can restore
    /// it.
    pub async fn place(mut self) -> Result<Placed, FileError> {
        match &mut self.inner {
            StagedInner::Folder { temp, target } => {
                let Some(temp) = temp.take() else {
                    return Err(FileError::Join("staged file already placed".into()));
                };
                place_file(temp, target.clone())
            }
            StagedInner::Bucket {
                bucket,
                key,
                bytes,
                new,
            } => {
                let previous = if *new { None } else { bucket.get(key).await? };
                let put = bucket.put(key, bytes.clone()).await;
                super::health::record(&bucket.describe(), &put);
                put?;
                Ok(Placed {
                    inner: PlacedInner::Bucket {
                        bucket: bucket.clone(),
                        key: key.clone(),
                        previous,
                    },
                    settled: false,
                })
            }
        }
    }
}

/// Renames `temp` into `target`, an existing file there renamed aside first.
fn place_file(temp: PathBuf, target: PathBuf) -> Result<Placed, FileError> {
    let backup = target.with_file_name(format!(".replaced-{}.tmp", uuid::Uuid::new_v4().simple()));
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
        inner: PlacedInner::Folder {
            target,
            backup: had_old.then_some(backup),
        },
        settled: false,
    })
}

impl Drop for Staged {
    fn drop(&mut self) {
        if let StagedInner::Folder { temp, .. } = &mut self.inner {
            if let Some(temp) = temp.take() {
                let _ = fs::remove_file(temp);
            }
        }
    }
}

/// A file in place whose database commit is pending. Dropping it without
/// [`Placed::keep`] undoes the placement (a bucket's in a task).
#[derive(Debug)]
pub struct Placed {
    inner: PlacedInner,
    settled: bool,
}

#[derive(Debug)]
enum PlacedInner {
    Folder {
        target: PathBuf,
        backup: Option<PathBuf>,
    },
    Bucket {
        bucket: Arc<Bucket>,
        key: Key,
        /// The object's bytes before the placement (`None`: there was none).
        previous: Option<Bytes>,
    },
}

impl Placed {
    /// The commit succeeded: drop the previous file.
    pub fn keep(mut self) {
        self.settled = true;
        if let PlacedInner::Folder { backup, .. } = &mut self.inner {
            if let Some(backup) = backup.take() {
                if let Err(e) = fs::remove_file(&backup) {
                    tracing::warn!(path = %backup.display(), error = %e, "cannot remove the replaced file");
                }
            }
        }
    }

    /// The commit failed: restore the previous file, or remove the new one.
    pub async fn undo(mut self) {
        self.settled = true;
        match &mut self.inner {
            PlacedInner::Folder { target, backup } => restore_file(target, backup.take()),
            PlacedInner::Bucket {
                bucket,
                key,
                previous,
            } => restore_object(bucket, key, previous.take()).await,
        }
    }
}

fn restore_file(target: &Path, backup: Option<PathBuf>) {
    let result = match backup {
        Some(backup) => fs::rename(&backup, target),
        None => fs::remove_file(target),
    };
    if let Err(e) = result {
        tracing::error!(path = %target.display(), error = %e, "cannot undo a file placement");
    }
}

async fn restore_object(bucket: &Bucket, key: &Key, previous: Option<Bytes>) {
    let result = match previous {
        Some(bytes) => bucket.put(key, bytes).await,
        None => bucket.delete(key).await,
    };
    if let Err(e) = result {
        tracing::error!(error = %crate::telemetry::cause_chain(&e), "cannot undo an object placement");
    }
}

impl Drop for Placed {
    fn drop(&mut self) {
        if self.settled {
            return;
        }
        match &mut self.inner {
            PlacedInner::Folder { target, backup } => restore_file(target, backup.take()),
            PlacedInner::Bucket {
                bucket,
                key,
                previous,
            } => {
                let (bucket, key, previous) = (bucket.clone(), key.clone(), previous.take());
                match tokio::runtime::Handle::try_current() {
                    Ok(rt) => {
                        rt.spawn(async move { restore_object(&bucket, &key, previous).await });
                    }
                    Err(_) => {
                        tracing::error!(key = %key, "cannot undo an object placement outside the runtime");
                    }
                }
            }
        }
    }
}
