//! Kept FITS cutouts in `thumbnails files`: no row names one, so a FITS
//! follows its PNG. A repair that moves a PNG (to the current depth, or
//! back from where a hand put it) moves the FITS beside it along, both or
//! neither; a FITS is ours while a row of its stamp `(obj_id, type,
//! survey)` exists, and an orphan (removed after the same grace period as
//! any file) once none does.

use std::fs;
use std::io;
use std::path::{Path, PathBuf};

use crate::files::fits_beside;

/// A kept FITS moved along with its PNG: `(from, to)`.
pub type FitsMove = (PathBuf, PathBuf);

/// Moves the kept FITS beside `from_png` (if there is one) to beside
/// `to_png`. With `replace` false a FITS already beside `to_png` stays and
/// nothing moves.
pub fn move_along(from_png: &Path, to_png: &Path, replace: bool) -> io::Result<Option<FitsMove>> {
    let (Some(from), Some(to)) = (fits_beside(from_png), fits_beside(to_png)) else {
        return Ok(None);
    };
    let is_file = |p: &Path| p.symlink_metadata().is_ok_and(|m| m.is_file());
    if from == to || !is_file(&from) || (!replace && to.symlink_metadata().is_ok()) {
        return Ok(None);
    }
    if let Some(dir) = to.parent() {
        fs::create_dir_all(dir)?;
    }
    fs::rename(&from, &to)?;
    Ok(Some((from, to)))
}

/// Puts a moved FITS back (its commit failed).
pub fn move_back(moved: &FitsMove) {
    let (from, to) = moved;
    if let Err(e) = fs::rename(to, from) {
        tracing::error!(path = %to.display(), error = %e, "cannot move a kept FITS back after a failed commit");
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::files::RelPath;
    use crate::surveys::ThumbnailType;

    #[test]
    fn a_fits_moves_with_its_png_and_back() {
        let tmp = tempfile::tempdir().expect("tempdir");
        let at = |depth| {
            RelPath::stamp("ZTF1", ThumbnailType::New, Some("ZTF"), depth).path_under(tmp.path())
        };
        let (old, new) = (at(1), at(2));
        let (old_fits, new_fits) = (
            fits_beside(&old).expect("stamp"),
            fits_beside(&new).expect("stamp"),
        );
        // No FITS: nothing to move.
        assert_eq!(move_along(&old, &new, true).expect("none"), None);
        fs::create_dir_all(old_fits.parent().expect("dir")).expect("mkdir");
        fs::write(&old_fits, b"gz").expect("write");
        let moved = move_along(&old, &new, true)
            .expect("moved")
            .expect("a move");
        assert_eq!(moved, (old_fits.clone(), new_fits.clone()));
        assert!(new_fits.is_file() && !old_fits.exists());
        move_back(&moved);
        assert!(old_fits.is_file() && !new_fits.exists());
        // Without replace, a FITS already at the destination stays.
        fs::write(&new_fits, b"there").expect("write");
        assert_eq!(move_along(&old, &new, false).expect("kept"), None);
        assert_eq!(fs::read(&new_fits).expect("read"), b"there");
        // An archival PNG has no FITS.
        let archival = RelPath::new("ZTF1", ThumbnailType::Sdss, 1).path_under(tmp.path());
        assert_eq!(move_along(&archival, &new, true).expect("none"), None);
    }
}
