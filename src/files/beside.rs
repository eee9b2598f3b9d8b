//! The I/O of kept FITS cutouts: a stamp write either puts a new FITS
//! beside the PNG or clears a stale one, with the PNG's guarantees: staged
//! before the transaction, applied before the commit, kept after it or
//! undone (the previous file back, or none) if it fails.
//!
//! A stamp written without a FITS (`cutouts.keep_fits` off, or a custom
//! PNG upload over an alert stamp) clears the FITS beside it: a kept FITS
//! always belongs to the PNG next to it, never to an older drawing.

use std::path::{Path, PathBuf};

use super::fits::{fits_beside, gzip_fits};
use super::layout::RelPath;
use super::store::{FileError, FileStore, Placed, SetAside, Staged};
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
    /// Remove the FITS at this path, if there is one.
    Clear(PathBuf),
}

impl FitsWrite {
    /// For a stamp whose PNG goes to `png`: put `fits` if given, else clear
    /// a stale one. `None` (nothing to do) for a PNG that is not an alert
    /// stamp's (archival uploads have no FITS).
    pub fn for_stamp(png: &Path, fits: Option<Staged>) -> Option<Self> {
        match fits {
            Some(staged) => Some(FitsWrite::Put(staged)),
            None => fits_beside(png).map(FitsWrite::Clear),
        }
    }

    /// Before the commit, after the PNG is placed.
    pub fn apply(self) -> Result<FitsApplied, FileError> {
        match self {
            FitsWrite::Put(staged) => staged.place().map(FitsApplied::Placed),
            FitsWrite::Clear(path) => Ok(match SetAside::rename_if_present(&path)? {
                Some(aside) => FitsApplied::Cleared(aside),
                None => FitsApplied::Nothing,
            }),
        }
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
    pub fn keep(self) {
        match self {
            FitsApplied::Placed(p) => p.keep(),
            FitsApplied::Cleared(a) => a.remove(),
            FitsApplied::Nothing => {}
        }
    }

    /// The commit failed: the previous FITS (or none) is back.
    pub fn undo(self) {
        match self {
            FitsApplied::Placed(p) => p.undo(),
            FitsApplied::Cleared(a) => a.undo(),
            FitsApplied::Nothing => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use std::fs;

    use super::*;

    #[test]
    fn put_replaces_and_clear_removes_with_undo() {
        let tmp = tempfile::tempdir().expect("tempdir");
        let store = FileStore::new(tmp.path(), 2);
        let png =
            RelPath::stamp("ZTF1", ThumbnailType::New, Some("ZTF"), 2).path_under(store.root());
        let fits = fits_beside(&png).expect("a stamp");
        let put = |bytes: &[u8]| {
            let staged = store
                .stage_fits_blocking("ZTF1", ThumbnailType::New, "ZTF", bytes)
                .expect("staged");
            assert_eq!(staged.target(), fits);
            FitsWrite::for_stamp(&png, Some(staged))
                .expect("put")
                .apply()
                .expect("applied")
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
        put(b"SIMPLE one").undo();
        assert!(!fits.exists());
        put(b"SIMPLE one").keep();
        assert_eq!(gunzip(&fits), b"SIMPLE one");
        // Replaced then undone: the previous one is back.
        put(b"SIMPLE two").undo();
        assert_eq!(gunzip(&fits), b"SIMPLE one");
        // Cleared then undone: back; cleared and kept: gone.
        let clear = || {
            FitsWrite::for_stamp(&png, None)
                .expect("a stamp")
                .apply()
                .expect("applied")
        };
        let cleared = clear();
        assert!(matches!(cleared, FitsApplied::Cleared(_)) && !fits.exists());
        cleared.undo();
        assert_eq!(gunzip(&fits), b"SIMPLE one");
        clear().keep();
        assert!(!fits.exists());
        assert!(matches!(clear(), FitsApplied::Nothing));
        // Only the FITS was ever in the folder: no temp file left behind.
        let dir = fits.parent().expect("folder");
        assert_eq!(fs::read_dir(dir).expect("dir").count(), 0);
        // An archival PNG has no FITS to clear.
        let archival = RelPath::new("ZTF1", ThumbnailType::Sdss, 2).path_under(store.root());
        assert!(FitsWrite::for_stamp(&archival, None).is_none());
    }
}
