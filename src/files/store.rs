//! File I/O for uploads and stamps, on either backend: a folder
//! (`storage.root`, or `storage.url: file://...`) or an S3-compatible bucket
//! (`storage.url: s3://...`, see [`super::bucket`]).
//!
//! The sequence a write follows:
//! `stage` (folder: write + fsync a temp file; bucket: hold the bytes) ->
//! database work -> `place` (folder: rename into place, the old file kept
//! as a backup; bucket: read the old object, PUT the new) -> commit ->
//! `Placed::keep`; if the commit fails, `Placed::undo` puts the old bytes
//! back (or removes the new file). Dropping a `Staged` removes its temp
//! file. Removal is the same in two steps: `set_aside` before the commit,
//! `SetAside::remove` after it.

use std::fs;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use bytes::Bytes;

use super::bucket::Bucket;
pub use super::error::FileError;
use super::layout::{RelPath, SUBDIR};
use super::staged::{AsideInner, SetAside, Staged, StagedInner};
use crate::config::{Location, StorageConfig};

/// Where the files go.
#[derive(Debug, Clone)]
enum Backend {
    /// Absolute; files under `<root>/thumbnails/`.
    Folder(PathBuf),
    Bucket(Arc<Bucket>),
}

/// The files of the layout (`thumbnails/<aa>/<bb>/<name>`) in a folder or a
/// bucket.
#[derive(Debug, Clone)]
pub struct FileStore {
    backend: Backend,
    depth: u8,
    /// `storage.public_base_url` without its trailing `/`.
    public_base: Option<Arc<str>>,
}

impl FileStore {
    /// A folder store. `root` is made absolute (against the working
    /// directory) so that the stored `file_uri` is an absolute path.
    pub fn new(root: &Path, depth: u8) -> Self {
        let root = std::path::absolute(root).unwrap_or_else(|_| root.to_path_buf());
        Self {
            backend: Backend::Folder(root),
            depth,
            public_base: None,
        }
    }

    /// The store `storage` names, without touching it (a bucket's client is
    /// built; [`FileStore::check`] makes the first request).
    pub fn from_config(storage: &StorageConfig) -> Result<Self, FileError> {
        let mut store = match storage.location() {
            Ok(Location::Bucket { bucket, prefix }) => Self {
                backend: Backend::Bucket(Arc::new(Bucket::open(storage, &bucket, &prefix)?)),
                depth: storage.depth,
                public_base: None,
            },
            Ok(Location::Folder(root)) => Self::new(&root, storage.depth),
            // A bad URL was refused when the config was loaded.
            Err(_) => Self::new(&storage.root, storage.depth),
        };
        store.public_base = storage.public_base().map(Arc::from);
        Ok(store)
    }

    /// That files can be written: a probe file (folder) or object (bucket:
    /// it exists and this key may write and delete in it) is written and
    /// removed.
    pub async fn check(&self) -> Result<(), FileError> {
        match &self.backend {
            Backend::Folder(_) => {
                let rel = RelPath::from_parts(
                    vec![SUBDIR.to_string()],
                    format!(".thumbnails-probe-{}", uuid::Uuid::new_v4().simple()),
                );
                // Dropping the staged probe removes it.
                self.stage(&rel, b"probe".to_vec()).await.map(drop)
            }
            Backend::Bucket(b) => b.check().await,
        }
    }

    /// The folder, for a folder store.
    pub fn folder(&self) -> Option<&Path> {
        match &self.backend {
            Backend::Folder(root) => Some(root),
            Backend::Bucket(_) => None,
        }
    }

    /// The bucket, for a bucket store.
    pub fn bucket(&self) -> Option<&Arc<Bucket>> {
        match &self.backend {
            Backend::Folder(_) => None,
            Backend::Bucket(b) => Some(b),
        }
    }

    /// The folder of a folder store (`""` for a bucket: use
    /// [`FileStore::folder`] where both can occur).
    pub fn root(&self) -> &Path {
        self.folder().unwrap_or(Path::new(""))
    }

    /// `folder /abs/path` or `bucket B at ENDPOINT`, for messages.
    pub fn describe(&self) -> String {
        match &self.backend {
            Backend::Folder(root) => format!("folder {}", root.display()),
            Backend::Bucket(b) => b.describe(),
        }
    }

    pub fn depth(&self) -> u8 {
        self.depth
    }

    /// `<root>/thumbnails`, the folder served under `/static/thumbnails`.
    pub fn uploads_dir(&self) -> PathBuf {
        self.root().join(SUBDIR)
    }

    /// The `file_uri` a row stores for `rel`: the absolute path, or
    /// `s3://BUCKET/KEY`.
    pub fn file_uri(&self, rel: &RelPath) -> String {
        match &self.backend {
            Backend::Folder(root) => rel.path_under(root).to_string_lossy().into_owned(),
            Backend::Bucket(b) => b.uri(&b.key(rel)),
        }
    }

    /// The `public_url` a row stores for `rel`: under
    /// `storage.public_base_url` when set, else the sidecar's `/static/`.
    pub fn public_url(&self, rel: &RelPath) -> String {
        match &self.public_base {
            Some(base) => format!("{base}/{}", rel.as_url_path()),
            None => rel.public_url(),
        }
    }

    /// Stages `bytes` for `rel` (folder: a temporary file beside its place).
    pub async fn stage(&self, rel: &RelPath, bytes: Vec<u8>) -> Result<Staged, FileError> {
        let store = self.clone();
        let rel = rel.clone();
        blocking(move || store.stage_blocking(&rel, &bytes)).await
    }

    /// [`FileStore::stage`] for callers already on a blocking thread (the
    /// upload path stages in the same hop that checks the image).
    pub fn stage_blocking(&self, rel: &RelPath, bytes: &[u8]) -> Result<Staged, FileError> {
        let staged = self.stage_blocking_unrecorded(rel, bytes);
        if self.folder().is_some() {
            super::health::record(&self.describe(), &staged);
        }
        staged
    }

    fn stage_blocking_unrecorded(&self, rel: &RelPath, bytes: &[u8]) -> Result<Staged, FileError> {
        match &self.backend {
            Backend::Folder(root) => {
                let (staged, file) = write_temp(root, rel, bytes)?;
                file.sync_all().map_err(|source| FileError::Write {
                    path: staged.temp_path().to_path_buf(),
                    source,
                })?;
                Ok(staged)
            }
            Backend::Bucket(b) => Ok(self.hold(b, rel, bytes)),
        }
    }

    /// Stages many files, flushing them together (folder: each file's data
    /// synced by a pool of threads, so that the filesystem journal commits
    /// them in a few groups instead of once a file: the worker's alert
    /// stamps, three files an alert, hundreds of alerts per transaction; a
    /// `syncfs` would also flush everything else on the filesystem). On
    /// error, nothing staged is left behind.
    pub fn stage_many_blocking(
        &self,
        files: &[(RelPath, &[u8])],
    ) -> Result<Vec<Staged>, FileError> {
        match &self.backend {
            Backend::Folder(root) => {
                let staged = files
                    .iter()
                    .map(|(rel, bytes)| write_temp(root, rel, bytes))
                    .collect::<Result<Vec<_>, _>>()
                    .and_then(|written| {
                        sync_all_data(&written)?;
                        Ok(written.into_iter().map(|(staged, _)| staged).collect())
                    });
                super::health::record(&self.describe(), &staged);
                staged
            }
            Backend::Bucket(b) => Ok(files
                .iter()
                .map(|(rel, bytes)| self.hold(b, rel, bytes))
                .collect()),
        }
    }

    fn hold(&self, bucket: &Arc<Bucket>, rel: &RelPath, bytes: &[u8]) -> Staged {
        Staged {
            inner: StagedInner::Bucket {
                bucket: bucket.clone(),
                key: bucket.key(rel),
                bytes: Bytes::copy_from_slice(bytes),
                new: false,
            },
        }
    }

    /// Sets a stored file aside until the caller's commit:
    /// [`SetAside::remove`] after it, [`SetAside::undo`] (or drop) if it
    /// fails. Only a file of the layout is touched: a `file_uri` edited to
    /// point elsewhere gives `None`. Folder: the file is renamed to a hidden
    /// name now; bucket: the object is removed by `remove`.
    pub async fn set_aside(&self, file_uri: &str) -> Result<Option<SetAside>, FileError> {
        match &self.backend {
            Backend::Folder(_) => {
                let uploads = self.uploads_dir();
                let path = PathBuf::from(file_uri);
                blocking(move || {
                    let Some(real) = stored_file(&uploads, &path) else {
                        return Ok(None);
                    };
                    SetAside::rename_if_present(&real)
                })
                .await
            }
            Backend::Bucket(b) => Ok(b.key_of_uri(file_uri).map(|key| SetAside {
                inner: AsideInner::Bucket {
                    bucket: b.clone(),
                    key,
                },
            })),
        }
    }

    /// The real path (links resolved) of `path` if it is a file inside
    /// `<root>/thumbnails`: the only files the service serves or removes.
    pub async fn resolve_stored(&self, path: PathBuf) -> Result<Option<PathBuf>, FileError> {
        let uploads = self.uploads_dir();
        blocking(move || Ok(stored_file(&uploads, &path))).await
    }
}

/// Files addressed by their path under `thumbnails/` (`aa/bb/name`, the
/// part a row's `file_uri` and `public_url` share): what moving files from
/// one store to another needs (`thumbnails files migrate`).
impl FileStore {
    /// `aa/bb/name` if `file_uri` names a file of this store's layout.
    pub fn layout_path_of(&self, file_uri: &str) -> Option<String> {
        let path = match &self.backend {
            Backend::Folder(root) => {
                let top = format!("{}/", root.join(SUBDIR).to_string_lossy());
                file_uri.strip_prefix(top.as_str())?.to_string()
            }
            Backend::Bucket(b) => b.layout_path(&b.key_of_uri(file_uri)?)?.to_string(),
        };
        super::layout::safe_segments(&path)
            .is_some()
            .then_some(path)
    }

    /// The `file_uri` of `aa/bb/name` here.
    pub fn uri_of_layout(&self, path: &str) -> String {
        match &self.backend {
            Backend::Folder(root) => root.join(SUBDIR).join(path).to_string_lossy().into_owned(),
            Backend::Bucket(b) => b.uri(&b.key_of_segments(&path.split('/').collect::<Vec<_>>())),
        }
    }

    /// The `public_url` of `aa/bb/name` here.
    pub fn public_url_of_layout(&self, path: &str) -> String {
        match &self.public_base {
            Some(base) => format!("{base}/{SUBDIR}/{path}"),
            None => format!("/static/{SUBDIR}/{path}"),
        }
    }

    /// The bytes of `aa/bb/name`, `None` if there is no such file.
    pub async fn read_layout(&self, path: &str) -> Result<Option<Bytes>, FileError> {
        match &self.backend {
            Backend::Folder(root) => {
                let file = root.join(SUBDIR).join(path);
                match tokio::fs::read(&file).await {
                    Ok(b) => Ok(Some(Bytes::from(b))),
                    Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
                    Err(source) => Err(FileError::Write { path: file, source }),
                }
            }
            Backend::Bucket(b) => {
                b.get(&b.key_of_segments(&path.split('/').collect::<Vec<_>>()))
                    .await
            }
        }
    }

    /// Writes `aa/bb/name` whole (folder: a synced temp file renamed into
    /// place; bucket: one PUT), replacing what is there.
    pub async fn write_layout(&self, path: &str, bytes: Bytes) -> Result<(), FileError> {
        match &self.backend {
            Backend::Folder(_) => {
                let segments: Vec<String> = path.split('/').map(str::to_owned).collect();
                let Some((name, dirs)) = segments.split_last() else {
                    return Err(FileError::Join(format!("no file name in {path:?}")));
                };
                let rel = RelPath::from_parts(
                    std::iter::once(SUBDIR.to_string())
                        .chain(dirs.iter().cloned())
                        .collect(),
                    name.clone(),
                );
                let staged = self.stage(&rel, bytes.to_vec()).await?;
                staged.place().await?.keep();
                Ok(())
            }
            Backend::Bucket(b) => {
                b.put(
                    &b.key_of_segments(&path.split('/').collect::<Vec<_>>()),
                    bytes,
                )
                .await
            }
        }
    }
}

/// Writes `bytes` to a new temporary file beside `rel`'s place under
/// `root`, unsynced; the open file is returned for the caller to sync.
fn write_temp(root: &Path, rel: &RelPath, bytes: &[u8]) -> Result<(Staged, fs::File), FileError> {
    let dir = rel.dir_under(root);
    let target = rel.path_under(root);
    fs::create_dir_all(&dir).map_err(|source| FileError::CreateDir {
        path: dir.clone(),
        source,
    })?;
    let temp = dir.join(format!(".upload-{}.tmp", uuid::Uuid::new_v4().simple()));
    // The Staged guard exists before the first byte, so any failure below
    // removes the partial file.
    let staged = Staged {
        inner: StagedInner::Folder {
            temp: Some(temp.clone()),
            target,
        },
    };
    let write = |path: &Path| -> std::io::Result<fs::File> {
        let mut f = fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .open(path)?;
        f.write_all(bytes)?;
        Ok(f)
    };
    let file = write(&temp).map_err(|source| FileError::Write { path: temp, source })?;
    Ok((staged, file))
}

/// Threads that sync one batch's files: enough for the journal to gather
/// their flushes into a few commits.
const SYNC_THREADS: usize = 16;

/// `fdatasync` of every file, spread over up to [`SYNC_THREADS`] threads.
fn sync_all_data(files: &[(Staged, fs::File)]) -> Result<(), FileError> {
    if files.is_empty() {
        return Ok(());
    }
    let per_thread = files.len().div_ceil(SYNC_THREADS);
    std::thread::scope(|scope| {
        let workers: Vec<_> = files
            .chunks(per_thread)
            .map(|chunk| {
                scope.spawn(move || {
                    for (staged, file) in chunk {
                        file.sync_data().map_err(|source| FileError::Write {
                            path: staged.temp_path().to_path_buf(),
                            source,
                        })?;
                    }
                    Ok(())
                })
            })
            .collect();
        workers.into_iter().try_for_each(|w| {
            w.join()
                .map_err(|_| FileError::Join("a sync thread panicked".into()))?
        })
    })
}

/// See [`FileStore::resolve_stored`].
fn stored_file(uploads: &Path, path: &Path) -> Option<PathBuf> {
    let (Ok(base), Ok(real)) = (fs::canonicalize(uploads), fs::canonicalize(path)) else {
        return None;
    };
    (real.starts_with(&base) && real.is_file()).then_some(real)
}

async fn blocking<T: Send + 'static>(
    f: impl FnOnce() -> Result<T, FileError> + Send + 'static,
) -> Result<T, FileError> {
    tokio::task::spawn_blocking(f)
        .await
        .map_err(|e| FileError::Join(e.to_string()))?
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

    #[tokio::test]
    async fn many_files_are_staged_synced_together_and_left_nowhere_when_dropped() {
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
        let targets: Vec<PathBuf> = staged.iter().map(|s| PathBuf::from(s.file_uri())).collect();
        for s in staged {
            s.place().await.expect("placed").keep();
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
            .await
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
            .await
            .expect("place");
        assert_eq!(fs::read(&target).expect("read"), b"two");
        placed.undo().await;
        assert_eq!(fs::read(&target).expect("read"), b"one");
        assert_eq!(files_in(tmp.path()), vec![target.clone()]);

        // Replaced and kept: no backup left.
        let placed = store
            .stage(&rel, b"three".to_vec())
            .await
            .expect("stage")
            .place()
            .await
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
            .await
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
        aside.remove().await;
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
