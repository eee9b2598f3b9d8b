//! The I/O of kept FITS cutouts: a stamp write either puts a new FITS
//! beside the PNG or clears a stale one, with the PNG's guarantees: staged
//! before the transaction, applied before the commit, kept after it or
//! undone (the previous file back, or none) if it fails.
//!
//! A stamp written without a FITS (`cutouts.keep_fits` off, or a custom
//! PNG upload over an alert stamp) clears the FITS beside it: a kept FITS
//! always belongs to the PNG next to it, never to an older drawing.

use super::error::FileError;
use super::fits::gzip_fits;
use super::layout::RelPath;
use super::staged::{Clear, Placed, SetAside, Staged};
use super::store::FileStore;
use crate::surveys::ThumbnailType;

impl FileStore {
    /// Gzips `cutout` (unless it is gzip already) and stages it as the kept
    /// FITS of the stamp `(obj_id, ttype, survey)`, fsynced. For callers on
    /// a blocking thread that stage one stamp at a time (the HTTP routes).
    pub fn stage_fits_blocking(
        &self,
        obj_id: &str,
        ttype: ThumbnailType,
        survey: &str,
        cutout: &[u8],
    ) -> Result<Staged, FileError> {
        let gz = gzip_fits(cutout).map_err(FileError::Gzip)?;
        let rel = RelPath::stamp_fits(obj_id, ttype, survey, self.depth());
        self.stage_blocking(&rel, &gz)
    }
}

/// What a stamp write does to the kept FITS beside its PNG.
#[derive(Debug)]
pub enum FitsWrite {
    /// Put this staged FITS in place (replacing any there).
    Put(Staged),
    /// Remove the FITS beside the PNG, if there is one.
    Clear(Clear),
}

impl FitsWrite {
    /// For a stamp whose PNG is `png`: put `fits` if given, else clear a
    /// stale one. `None` (nothing to do) for a PNG that is not an alert
    /// stamp's (archival uploads have no FITS).
    pub fn for_stamp(png: &Staged, fits: Option<Staged>) -> Option<Self> {
        match fits {
            Some(staged) => Some(FitsWrite::Put(staged)),
            None => png.fits_clear().map(FitsWrite::Clear),
        }
    }

    /// Before the commit, after the PNG is placed.
    pub async fn apply(self) -> Result<FitsApplied, FileError> {
        Ok(match self {
            FitsWrite::Put(staged) => FitsApplied::Placed(staged.place().await?),
            FitsWrite::Clear(clear) => match clear.apply().await? {
                Some(aside) => FitsApplied::Cleared(aside),
                None => FitsApplied::Nothing,
            },
        })
    }
}

/// A [`FitsWrite`] applied, pending the commit. Dropped without
/// [`FitsApplied::keep`], it is undone.
#[derive(Debug)]
pub enum FitsApplied {
    Placed(Placed),
    Cleared(SetAside),
    Nothing,
}

impl FitsApplied {
    /// The commit succeeded.
    pub async fn keep(self) {
        match self {
            FitsApplied::Placed(p) => p.keep(),
            FitsApplied::Cleared(a) => a.remove().await,
            FitsApplied::Nothing => {}
        }
    }

    /// The commit failed: the previous FITS (or none) is back.
    pub async fn undo(self) {
        match self {
            FitsApplied::Placed(p) => p.undo().await,
            FitsApplied::Cleared(a) => a.undo(),
            FitsApplied::Nothing => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use std::fs;

    use std::path::Path;

    use super::*;
    use crate::files::fits_beside;

    #[tokio::test]
    async fn put_replaces_and_clear_removes_with_undo() {
        let tmp = tempfile::tempdir().expect("tempdir");
        let store = FileStore::new(tmp.path(), 2);
        let png =
            RelPath::stamp("ZTF1", ThumbnailType::New, Some("ZTF"), 2).path_under(store.root());
        let fits = fits_beside(&png).expect("a stamp");
        let png_rel = RelPath::stamp("ZTF1", ThumbnailType::New, Some("ZTF"), 2);
        let png_staged = || store.stage_blocking(&png_rel, b"png").expect("staged");
        let put = |bytes: &'static [u8]| {
            let staged = store
                .stage_fits_blocking("ZTF1", ThumbnailType::New, "ZTF", bytes)
                .expect("staged");
            assert_eq!(Path::new(&staged.file_uri()), fits);
            let write = FitsWrite::for_stamp(&png_staged(), Some(staged)).expect("put");
            async move { write.apply().await.expect("applied") }
        };
        let gunzip = |p: &Path| {
            use std::io::Read;
            let mut out = Vec::new();
            flate2::read::GzDecoder::new(fs::File::open(p).expect("open"))
                .read_to_end(&mut out)
                .expect("gunzip");
            out
        };
        // A new FITS undone leaves none; kept, it is there.
        put(b"SIMPLE one").await.undo().await;
        assert!(!fits.exists());
        put(b"SIMPLE one").await.keep().await;
        assert_eq!(gunzip(&fits), b"SIMPLE one");
        // Replaced then undone: the previous one is back.
        put(b"SIMPLE two").await.undo().await;
        assert_eq!(gunzip(&fits), b"SIMPLE one");
        // Cleared then undone: back; cleared and kept: gone.
        let clear = || {
            let write = FitsWrite::for_stamp(&png_staged(), None).expect("a stamp");
            async move { write.apply().await.expect("applied") }
        };
        let cleared = clear().await;
        assert!(matches!(cleared, FitsApplied::Cleared(_)) && !fits.exists());
        cleared.undo().await;
        assert_eq!(gunzip(&fits), b"SIMPLE one");
        clear().await.keep().await;
        assert!(!fits.exists());
        assert!(matches!(clear().await, FitsApplied::Nothing));
        // Only the FITS was ever in the folder: no temp file left behind.
        let dir = fits.parent().expect("folder");
        assert_eq!(fs::read_dir(dir).expect("dir").count(), 0);
        // An archival PNG has no FITS to clear.
        let archival = store
            .stage_blocking(&RelPath::new("ZTF1", ThumbnailType::Sdss, 2), b"png")
            .expect("staged");
        assert!(FitsWrite::for_stamp(&archival, None).is_none());
    }
}
